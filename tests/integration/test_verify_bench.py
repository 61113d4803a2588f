"""verify.yml and bench.yml for real, on a lab of 2 nodes serving vLLM-CPU with TP2 across them.

The lab comes from playbooks/lab.yml under its own lab_name, the engine from serve.yml; then:

1. verify.yml: a gloo all-reduce across the two nodes with the plan's ranks and interfaces; every
   size is reported with its bus bandwidth and checked; the report lands on the controller.
2. verify.yml limited to the head: the head waits for rank 1, then fails within the join timeout
   naming the missing rank and its host.
3. bench.yml: a short sweep (one length pair, two concurrencies) with `vllm bench serve` from the
   head; raw JSON, run.json, summary.csv, summary.md and the two charts on the controller; the API
   key never in the output nor in run.json.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from playbook_run import ansible

pytestmark = [pytest.mark.lab, pytest.mark.long]

BIN = Path(sys.executable).parent
LAB = f"inferops-vb{os.getpid() % 1000}"
NODES = [f"{LAB}-1", f"{LAB}-2"]


def run(*argv: str, timeout: int = 1500) -> subprocess.CompletedProcess[str]:
    return ansible(*argv, timeout=timeout, venv_path=True)


def playbook(name: str, inv: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(str(BIN / "ansible-playbook"), f"playbooks/{name}", "-i", str(inv), *extra)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"{' '.join(proc.args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def lab():
    if shutil.which("docker") is None or os.system("docker image inspect inferops-lab:bookworm >/dev/null 2>&1"):
        pytest.fail("Docker and the lab image inferops-lab:bookworm are needed (make lab-image)")
    work = Path(tempfile.mkdtemp(prefix="inferops-vb-"))
    inv = work / "inv"
    base = ("-e", f"lab_name={LAB}", "-e", f"lab_inventory_dir={inv}")
    try:
        ok(run(str(BIN / "ansible-playbook"), "playbooks/lab.yml", *base, "-e", "lab_nodes=2"))
        ok(playbook("serve.yml", inv))
        key = yaml.safe_load((inv / "group_vars" / "all" / "secrets.yml").read_text())["inferops_api_key"]
        yield {"inv": inv, "out": work / "out", "key": str(key)}
    finally:
        run(str(BIN / "ansible-playbook"), "playbooks/lab.yml", *base, "-e", "lab_state=absent")
        shutil.rmtree(work, ignore_errors=True)


SMALL = ("-e", "comm_check_max_bytes=16777216", "-e", "comm_check_iters=5", "-e", "comm_check_warmup=2")


def test_gloo_all_reduce_across_the_lab_nodes(lab):
    proc = ok(playbook("verify.yml", lab["inv"], *SMALL, "-e", f"inferops_results_dir={lab['out']}"))
    assert "all_reduce_perf (gloo, 2 ranks, in-place, sum)" in proc.stdout
    assert "| 16 MiB | 4194304 | float32 |" in proc.stdout
    report = json.loads((lab["out"] / "comm_check" / "comm_check-r0.json").read_text())
    assert sorted(report) == NODES
    for node in NODES:
        assert report[node]["ok"] is True and report[node]["backend"] == "gloo"
        assert report[node]["world_size"] == 2
        assert [r["bytes"] for r in report[node]["rows"]] == [1 << n for n in range(20, 25)]
        assert all(r["correct"] and r["busbw_gbps"] > 0 for r in report[node]["rows"])
    # two ranks: busbw = algbw x 2 (n - 1) / n = algbw
    assert all(r["busbw_gbps"] == r["algbw_gbps"] for r in report[NODES[0]]["rows"])
    md = (lab["out"] / "comm_check" / "comm_check-r0.md").read_text()
    assert f"- nodes: {NODES[0]}, {NODES[1]}" in md


def test_missing_node_is_named_within_the_timeout(lab):
    start = time.monotonic()
    proc = playbook("verify.yml", lab["inv"], "--limit", NODES[0], *SMALL, "-e", "comm_check_join_timeout=15")
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    said = " ".join((proc.stdout + proc.stderr).split())  # the YAML callback wraps long messages
    assert f"ranks 1 of 2 did not join: {NODES[1]} (ranks 1)" in said
    assert elapsed < 120, f"the check took {elapsed:.0f}s to give up"


def test_short_sweep_writes_summary_and_charts(lab):
    sweep = {"benchmark_lengths": [{"input": 32, "output": 16}], "benchmark_concurrencies": [1, 2]}
    proc = ok(
        playbook(
            "bench.yml",
            lab["inv"],
            "-e",
            json.dumps(sweep),
            "-e",
            "benchmark_run_id=it",
            "-e",
            f"inferops_results_dir={lab['out']}",
        )
    )
    assert lab["key"] not in proc.stdout + proc.stderr
    run_dir = lab["out"] / "bench" / "r0" / "it"
    assert sorted(p.name for p in (run_dir / "raw").iterdir()) == [
        "serving_benchmark_1_32_16.json",
        "serving_benchmark_2_32_16.json",
    ]
    record = json.loads((run_dir / "run.json").read_text())
    assert lab["key"] not in json.dumps(record)
    assert record["engine_version"].startswith("0.32.0")
    assert record["nodes"] == NODES and record["tool"] == "vllm"
    assert all(case["rc"] == 0 for case in record["cases"].values())
    rows = list(csv.DictReader((run_dir / "summary.csv").open()))
    assert [int(r["concurrency"]) for r in rows] == [1, 2]
    assert all(int(r["completed"]) == int(r["num_prompts"]) and float(r["input_throughput"]) > 0 for r in rows)
    md = (run_dir / "summary.md").read_text()
    assert "| Concurrency | Mean TTFT (ms) | Input Throughput (tokens/s) |" in md
    assert "- nodes: " + ", ".join(NODES) in md
    for png in ("throughput.png", "latency.png"):
        assert (run_dir / png).read_bytes()[:4] == b"\x89PNG"
