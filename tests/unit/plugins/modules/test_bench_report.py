"""bench_report for real: the module run by ansible on localhost over the captured results."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = ROOT / "tests" / "unit" / "plugins" / "module_utils" / "fixtures" / "bench"
ANSIBLE = Path(sys.executable).parent / "ansible"

pytest.importorskip("matplotlib")


def run_module(args: dict, *extra: str) -> dict:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
    }
    argv = [str(ANSIBLE), "localhost", "-c", "local", "-m", "inferops.cluster.bench_report", "-a", json.dumps(args)]
    proc = subprocess.run(
        [*argv, *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = json.loads(proc.stdout)
    return out["plays"][0]["tasks"][0]["hosts"]["localhost"]


@pytest.fixture
def raw(tmp_path):
    src = tmp_path / "raw"
    shutil.copytree(FIXTURES / "vllm", src)
    run = {"engine": "vllm", "engine_version": "0.32.0", "tool": "vllm", "nodes": ["lab-1", "lab-2"], "run_id": "t1"}
    (tmp_path / "run.json").write_text(json.dumps(run))
    return tmp_path


def test_writes_summaries_and_charts_then_is_idempotent(raw):
    args = {"src": str(raw / "raw"), "dest": str(raw / "out"), "run_file": str(raw / "run.json"), "title": "lab"}
    check = run_module(args, "--check")
    assert check["changed"] is True and not (raw / "out").exists()  # check mode writes nothing
    first = run_module(args)
    assert first["changed"] is True, first
    names = sorted(p.name for p in (raw / "out").iterdir())
    assert names == ["latency.png", "summary.csv", "summary.md", "throughput.png"]
    for png in ("latency.png", "throughput.png"):
        assert (raw / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (raw / "out" / "summary.md").read_text()
    assert md.startswith("# lab\n")
    assert "- engine: vllm 0.32.0" in md and "- nodes: lab-1, lab-2" in md
    assert [(r["input_len"], r["concurrency"]) for r in first["rows"]] == [(32, 1), (32, 4), (64, 2)]
    second = run_module(args)
    assert second["changed"] is False, "a second run over the same results must change nothing"


def test_fails_on_a_directory_without_results(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "serving_benchmark_1_8_8.json").write_text("{")
    result = run_module({"src": str(tmp_path / "raw"), "dest": str(tmp_path / "out")})
    assert result["failed"] is True
    assert "no readable benchmark result" in result["msg"]
    assert result["problems"][0].startswith("serving_benchmark_1_8_8.json")
