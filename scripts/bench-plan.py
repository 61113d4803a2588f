"""Time `ansible-playbook playbooks/plan.yml` on generated clusters, without connecting to any node.

Each inventory: N nodes, 8 GPUs each, replicas of 2 nodes (vLLM, tp 16), RoCE facts from the seed 003
captures (tests/unit/fixtures/rdma: node01 / node02 alternately, the route towards the replica's head over
xgbe0) and GPU facts built from the captured H100 `nvidia-smi --query-gpu` row, repeated for 8 GPUs.
The facts (tests/integration/plan_facts.py) are saved one JSON file per host and read with -e plan_facts_dir=DIR
(--facts dir, the default), or put in the inventory as host variables (--facts hostvars, for releases without
plan_facts_dir).

    .venv/bin/python scripts/bench-plan.py [--nodes 64 256 1024] [--timeout 600]

Prints a Markdown table: nodes, seconds, ratio to the first size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".build" / "collections"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from plan_facts import write_facts  # noqa: E402


def generate(directory: Path, nodes: int, gpus: int, replica_size: int, facts_mode: str) -> list[str]:
    """Write the inventory (and the facts) under DIRECTORY; return the extra ansible-playbook arguments."""
    hosts = {}
    for i in range(nodes):
        hosts[f"node{i:04d}"] = {"ansible_host": f"10.{64 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}"}
        hosts[f"node{i:04d}"]["inferops_replica"] = f"r{i // replica_size:03d}"
    inventory = directory / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    common = {
        "inferops_engine": "vllm",
        "inferops_device": "cuda",
        "inferops_model_path": "/models/DeepSeek-R1",
        "inferops_api_key": "bench-only-not-a-secret",
    }
    (inventory / "group_vars" / "inferops_nodes.json").write_text(json.dumps(common))
    (inventory / "hosts.json").write_text(json.dumps({"all": {"children": {"inferops_nodes": {"hosts": hosts}}}}))
    facts_dir = directory / "facts"
    heads = {host: hosts[f"node{i - i % replica_size:04d}"]["ansible_host"] for i, host in enumerate(hosts)}
    write_facts(facts_dir, hosts, heads, gpus)
    if facts_mode == "hostvars":  # releases without plan_facts_dir read the facts from host variables
        (inventory / "host_vars").mkdir()
        for saved in facts_dir.iterdir():
            (inventory / "host_vars" / saved.name).write_text(saved.read_text())
    return ["-e", f"plan_facts_dir={facts_dir}"] if facts_mode == "dir" else []


def run(nodes: int, args: argparse.Namespace) -> float | None:
    with tempfile.TemporaryDirectory(prefix=f"bench-plan-{nodes}-") as tmp:
        directory = Path(tmp)
        extra = generate(directory, nodes, args.gpus, args.replica_size, args.facts)
        out = directory / "plan.json"
        env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
        argv = [str(Path(sys.executable).parent / "ansible-playbook"), "playbooks/plan.yml"]
        argv += ["-i", str(directory / "inventory"), *extra, "-e", f"plan_output={out}"]
        start = time.monotonic()
        try:
            done = subprocess.run(
                argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return None
        seconds = time.monotonic() - start
        if done.returncode != 0:
            sys.exit(f"{nodes} nodes: ansible-playbook failed (rc {done.returncode}):\n{done.stdout[-3000:]}")
        plan = json.loads(out.read_text())
        assert len(plan["hosts"]) == nodes, "the plan lacks hosts"
        assert all(n["env"].get("NCCL_IB_DISABLE") == "0" for n in plan["hosts"].values()), "a node is on TCP"
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--replica-size", type=int, default=2)
    parser.add_argument("--facts", choices=("dir", "hostvars"), default="dir")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per run before giving up")
    args = parser.parse_args()
    print("| nodes | seconds | ratio |")
    print("|---:|---:|---:|")
    first = None
    for nodes in args.nodes:
        seconds = run(nodes, args)
        if seconds is None:
            print(f"| {nodes} | > {args.timeout} (stopped) | |", flush=True)
            continue
        first = first or seconds
        print(f"| {nodes} | {seconds:.1f} | {seconds / first:.1f} |", flush=True)


if __name__ == "__main__":
    main()
