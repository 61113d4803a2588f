#!/usr/bin/env bash
# On the GPU machine (device tool): capture nvidia-smi's outputs as parser fixtures, then run
# gpu_facts + the nvidia_driver role through ansible-playbook over a local connection:
#   1. pin = the running driver, verify-only      -> ok, changed=0
#   2. pin = the running driver, normal mode      -> ok, changed=0 (nothing installed)
#   3. another pin, verify-only                   -> fails with the message
# Usage: tests/device/run.sh RUNNING_VERSION OTHER_VERSION   (files land in $OUT)
set -uo pipefail
running="$1" other="$2" out="${OUT:-/tmp/inferops-device}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PATH="/tmp/site/bin:$PATH"
mkdir -p /tmp/coll/ansible_collections/inferops && ln -sfn "$PWD" /tmp/coll/ansible_collections/inferops/cluster
export ANSIBLE_CONFIG="$PWD/ansible.cfg" ANSIBLE_COLLECTIONS_PATH=/tmp/coll ANSIBLE_ROLES_PATH="$PWD/roles" ANSIBLE_NOCOLOR=1
fields=index,name,uuid,pci.bus_id,driver_version,memory.total,persistence_mode,mig.mode.current,compute_cap
nvidia-smi --query-gpu="$fields" --format=csv,noheader,nounits >"$out/query.txt" 2>&1
nvidia-smi -q >"$out/smi_q.txt" 2>&1
nvidia-smi topo -m >"$out/topo.txt" 2>&1
nvidia-smi nvlink -s >"$out/nvlink.txt" 2>&1
nvidia-smi | head -12
py="$(command -v python3)"
play() {
  ansible-playbook -i localhost, -c local -e "ansible_python_interpreter=$py" tests/device/driver_verify.yml "$@"
}
ansible localhost -i localhost, -c local -e "ansible_python_interpreter=$py" -m inferops.cluster.gpu_facts -a "expected_driver_version=$running" >"$out/facts.json" 2>&1
echo "== gpu_facts: rc=$?"
play -e "nvidia_driver_version=$running" -e nvidia_driver_verify_only=true >"$out/match_verify.log" 2>&1
echo "== 1. pin $running, verify-only: rc=$?"
play -e "nvidia_driver_version=$running" >"$out/match_normal.log" 2>&1
echo "== 2. pin $running, normal mode: rc=$?"
play -e "nvidia_driver_version=$other" -e nvidia_driver_verify_only=true >"$out/mismatch.log" 2>&1
echo "== 3. pin $other, verify-only: rc=$?"
for f in match_verify match_normal mismatch; do
  echo "== $f"; grep -E -A1 "Report the running driver|Report the node's driver state" "$out/$f.log" | grep msg
  grep -E -A12 "TASK \[nvidia_driver : Verify only" "$out/$f.log" | grep -E "ok:|fatal|msg|pins" | head -6
  grep -A1 "PLAY RECAP" "$out/$f.log" | tail -1
done
