#!/usr/bin/env bash
# On the GPU machine (device tool): the plan takes the GPU count from gpu_facts, with no
# inferops_gpus_per_node in the inventory:
#   1. preflight.yml over a local connection (the plan step gathers gpu_facts, then plans)
#   2. plan.yml with no connection, from the facts saved by gpu_facts (-e plan_facts_dir)
#   3. plan.yml with neither: refused, naming inferops_gpus_per_node
# Usage: tests/device/plan_gpu.sh   (carry .whl: ansible-core and its needs as wheels; files land in $OUT)
set -uo pipefail
out="${OUT:-/tmp/inferops-device}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PATH="/tmp/site/bin:$PATH"
mkdir -p /tmp/coll/ansible_collections/inferops && ln -sfn "$PWD" /tmp/coll/ansible_collections/inferops/cluster
export ANSIBLE_CONFIG="$PWD/ansible.cfg" ANSIBLE_COLLECTIONS_PATH=/tmp/coll ANSIBLE_ROLES_PATH="$PWD/roles" ANSIBLE_NOCOLOR=1
py="$(command -v python3)"
inv=/tmp/inv && mkdir -p "$inv" /tmp/facts
cat >"$inv/hosts.yml" <<YAML
all:
  children:
    inferops_nodes:
      hosts:
        gpu-node:
          ansible_connection: local
          ansible_python_interpreter: $py
          inferops_address: 127.0.0.1
      vars:
        inferops_engine: vllm
        inferops_runtime: systemd
        inferops_model_path: /models/Qwen2.5-0.5B-Instruct
        inferops_api_key: device-test-key
YAML
nvidia-smi --query-gpu=index,name,driver_version --format=csv,noheader | tee "$out/gpus.txt"
ansible-playbook -i "$inv" playbooks/preflight.yml -e plan_output="$out/plan-preflight.json" >"$out/preflight.log" 2>&1
echo "== 1. preflight.yml (gathers gpu_facts): rc=$?"
ansible-playbook -i "$inv" tests/device/save_gpu_facts.yml -e facts_dir=/tmp/facts >"$out/save.log" 2>&1
echo "== saved facts: rc=$?"; cp /tmp/facts/gpu-node.json "$out/gpu-node.facts.json"
ansible-playbook -i "$inv" playbooks/plan.yml -e plan_facts_dir=/tmp/facts -e plan_output="$out/plan-saved.json" >"$out/plan-saved.log" 2>&1
echo "== 2. plan.yml from saved facts: rc=$?"
ansible-playbook -i "$inv" playbooks/plan.yml >"$out/plan-nofacts.log" 2>&1
echo "== 3. plan.yml with neither: rc=$?"
for f in plan-preflight plan-saved; do
  python3 -c "import json,sys; n=json.load(open(sys.argv[1]))['hosts']['gpu-node']; print(sys.argv[1].split('/')[-1], 'gpus_per_node', n['gpus_per_node'], 'tp', n['parallel']['tp'], n['command'])" "$out/$f.json"
done
grep -A3 "PLAY RECAP" "$out/preflight.log" | tail -2
grep -E "inferops_gpus_per_node" "$out/plan-nofacts.log" | head -3
