# inferops.cluster — developer and CI entry points.
#   make demo   set everything up and run the main job on the local lab cluster
#   make test   set everything up and run every check (what CI runs)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
COLLECTION_LINK := .build/collections/ansible_collections/inferops/cluster
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)
LAB_IMAGE ?= inferops-lab:bookworm
LAB_NODES ?= 2

.PHONY: help venv collection docker lab-image wheelhouse engines-venv lint sanity unit molecule integration test-long test demo lab-down clean

help:
	@grep -E '^[a-z-]+:.*?## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/.installed: requirements.txt requirements-test.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-test.txt
	touch $@

venv: $(BIN)/.installed collection ## create or reuse the local virtualenv

collection: ## make this checkout loadable as inferops.cluster
	mkdir -p $(dir $(COLLECTION_LINK))
	ln -sfn ../../../.. $(COLLECTION_LINK)

docker: ## install and start a Docker engine if none answers
	scripts/ensure-docker.sh

lab-image: docker ## build the lab's Debian 12 systemd image locally
	scripts/lab-image.sh $(LAB_IMAGE)

wheelhouse: venv ## wheels of the lab's engine (vLLM for CPU), built once
	scripts/wheelhouse.sh

lint: venv ## yamllint, ansible-lint (production profile), ruff
	$(BIN)/yamllint -s .
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-lint --offline

sanity: venv ## ansible-test sanity on a copy laid out as ansible_collections/inferops/cluster
	scripts/sanity.sh

engines-venv: wheelhouse ## the real vLLM and sglang argument parsers, for the argv tests
	scripts/engines-venv.sh

unit: venv engines-venv ## pytest unit tests (plan, parsers, argv checked by the real engine parsers)
	$(BIN)/pytest -q tests/unit

molecule: venv lab-image ## every molecule scenario: converge, idempotence, verify
	scripts/molecule-all.sh

integration: venv lab-image wheelhouse ## end-to-end runs of the playbooks against the lab
	$(BIN)/pytest -q -p no:cacheprovider -m "not long" tests/integration

test-long: venv lab-image wheelhouse ## the longer lab runs: docker runtime, verify/bench, day-2
	$(BIN)/pytest -q -p no:cacheprovider -m long tests/integration

test: lint sanity unit molecule integration ## everything CI runs
	@echo "make test: all checks passed"

demo: venv lab-image wheelhouse ## the main job on the embedded default: a 2-node lab serving vLLM
	$(BIN)/ansible-playbook playbooks/lab.yml -e lab_nodes=$(LAB_NODES) -e lab_image=$(LAB_IMAGE)
	$(BIN)/ansible-playbook site.yml -i inventories/lab
	$(BIN)/ansible-playbook playbooks/smoke.yml -i inventories/lab

lab-down: venv ## remove the lab nodes, network and inventory
	$(BIN)/ansible-playbook playbooks/lab.yml -e lab_state=absent

clean: lab-down
	rm -rf .build
