"""Saved node facts for plans made without connecting to any node (-e plan_facts_dir=DIR), built from real captures:
rdma_facts from the seed 003 RoCE nodes (tests/unit/fixtures/rdma), gpu_facts from the captured H100 nvidia-smi
row (tests/unit/fixtures/gpu/h100), repeated once per GPU. Used by tests/integration/test_plan_step.py and
scripts/bench-plan.py."""

from __future__ import annotations

import json
from pathlib import Path

from ansible_collections.inferops.cluster.plugins.module_utils import _gpu, _rdma

UNIT_FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "fixtures"
SEED003_NODES = ("node01", "node02")


def rdma_fact(capture: str, address: str, head: str) -> dict:
    """What rdma_facts returns (route_to: HEAD) on seed 003's CAPTURE node (node01 or node02), at ADDRESS."""
    text = {
        t: (UNIT_FIXTURES / "rdma" / f"seed003_{capture}_{t}.txt").read_text() for t in ("ibdev2netdev", "show_gids")
    }
    facts = _rdma.facts_from_tools(text["ibdev2netdev"], text["show_gids"])
    facts["active_ports"] = sum(1 for d in facts["devices"] for p in d["ports"] if p["state"].upper() == "ACTIVE")
    facts["summary"] = _rdma.port_summary(facts)
    facts["route"] = {"dst": head, "ifname": "xgbe0", "src": address, "local": address == head}
    return facts


def gpu_fact(gpus: int) -> dict:
    """What gpu_facts returns on an H100 node with GPUS GPUs (the captured row, once per GPU)."""
    h100 = UNIT_FIXTURES / "gpu" / "h100"
    row = (h100 / "query.txt").read_text().strip().split(", ")
    query = "\n".join(", ".join([str(i), *row[1:]]) for i in range(gpus))
    facts = _gpu.build_facts(query, (h100 / "smi_q.txt").read_text(), (h100 / "topo.txt").read_text())
    facts["nvidia_smi"] = "/usr/bin/nvidia-smi"
    return facts


def write_facts(directory: Path, hosts: dict[str, dict], heads: dict[str, str], gpus: int = 8) -> None:
    """DIRECTORY/HOST.json for every host ({host: {ansible_host: ...}}; heads: {host: its head's address})."""
    directory.mkdir(parents=True, exist_ok=True)
    gpu = gpu_fact(gpus)
    for i, (host, hv) in enumerate(hosts.items()):
        rdma = rdma_fact(SEED003_NODES[i % 2], hv["ansible_host"], heads[host])
        (directory / f"{host}.json").write_text(json.dumps({"inferops_gpu": gpu, "inferops_rdma": rdma}))
