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

.PHONY: help host-tools venv collection lab-image wheelhouse engines-venv lint sanity unit molecule integration test-long test demo lab-down clean

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

host-tools: ## install the host tools in scripts/host-tools.txt that are missing; start Docker
	scripts/host-tools.sh

lab-image: host-tools ## build the lab's Debian 12 systemd image locally
	scripts/lab-image.sh $(LAB_IMAGE)

wheelhouse: venv ## wheels of the lab's engine (vLLM for CPU), built once
	scripts/wheelhouse.sh

lint: venv ## yamllint, ansible-lint (production profile), ruff
	$(BIN)/yamllint -s .
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-lint --offline

sanity: venv host-tools ## ansible-test sanity on a copy laid out as ansible_collections/inferops/cluster
	scripts/sanity.sh

engines-venv: wheelhouse ## the real vLLM and sglang argument parsers, for the argv tests
	scripts/engines-venv.sh

unit: venv host-tools engines-venv ## pytest unit tests (plan, parsers, argv checked by the real engine parsers)
	$(BIN)/pytest -q tests/unit

molecule: venv lab-image ## every molecule scenario: converge, idempotence, verify
	scripts/molecule-all.sh

integration: venv lab-image wheelhouse ## end-to-end runs of the playbooks against the lab
	$(BIN)/pytest -q -p no:cacheprovider -m "not long" tests/integration

test-long: venv lab-image wheelhouse ## the longer lab runs: docker runtime, verify/bench, day-2
	$(BIN)/pytest -q -p no:cacheprovider -m long tests/integration

test: host-tools lint sanity unit molecule integration ## everything CI runs
	@echo "make test: all checks passed"

demo: host-tools venv lab-image wheelhouse ## the main job on the embedded default: a 2-node lab serving vLLM
	$(BIN)/ansible-playbook playbooks/lab.yml -e lab_nodes=$(LAB_NODES) -e lab_image=$(LAB_IMAGE)
	$(BIN)/ansible-playbook site.yml -i inventories/lab
	$(BIN)/ansible-playbook playbooks/smoke.yml -i inventories/lab
	@echo
	@echo "The lab serves. What to try next (PATH=.venv/bin:\$$PATH, or prefix .venv/bin/):"
	@echo "  ansible-playbook playbooks/status.yml -i inventories/lab      # every rank, its engine, ready or not"
	@echo "  ansible-playbook site.yml -i inventories/lab                  # again: changed=0, nothing restarts"
	@echo "  ansible-playbook playbooks/bench.yml -i inventories/lab \\"
	@echo "    -e '{\"benchmark_lengths\": [{\"input\": 64, \"output\": 32}], \"benchmark_concurrencies\": [1, 2, 4]}'"
	@echo "                                  # the sweep; table and charts under out/bench/r0/RUN_ID/"
	@echo "  ansible-playbook playbooks/upgrade.yml -i inventories/lab \\"
	@echo "    -e '{\"inferops_engine_args\": {\"max-model-len\": 1024, \"dtype\": \"float32\", \"enforce-eager\": true}}'"
	@echo "                                  # rolling upgrade to new engine flags: one replica at a time, waited"
	@echo "  make lab-down                   # remove the lab nodes and network"

lab-down: venv ## remove the lab nodes, network and inventory
	$(BIN)/ansible-playbook playbooks/lab.yml -e lab_state=absent

clean: lab-down
	rm -rf .build
