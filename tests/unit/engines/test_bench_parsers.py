"""The benchmark role's argv: parsed by the real `vllm bench serve` parser; for sglang.bench_serving
(whose module imports torchvision, which breaks the CPU engines venv) every option rendered is
looked up among the `add_argument` calls of its installed source."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils._bench import expand_cases, tool_argv

ROOT = Path(__file__).resolve().parents[3]
ENGINES_PY = Path(os.environ.get("INFEROPS_ENGINES_VENV", ROOT / ".cache" / "engines-venv")) / "bin" / "python"
COMMANDS = {"vllm": ["vllm", "bench", "serve"], "sglang": ["python3", "-m", "sglang.bench_serving"]}
WARMUP_KEY = {"vllm": "num_warmups", "sglang": "warmup_requests"}


def bench_items(tools=("vllm",)) -> list[dict]:
    items = []
    for tool in tools:
        command = COMMANDS[tool]
        for case in expand_cases([{"input": 64, "output": 32}], [1, 8]):
            argv = tool_argv(
                tool, case, command=command, base_url="http://10.0.0.1:8000", model="m", tokenizer="/models/m",
                result_dir="/tmp/r", warmups=case["concurrency"],
            )  # fmt: skip
            items.append({"id": f"{tool}/{case['name']}", "tool": tool, "case": case, "argv": argv})
    if "vllm" in tools:
        items.append({"id": "negative/vllm", "tool": "vllm", "case": None, "argv": [*COMMANDS["vllm"], "--no-such-x"]})
    return items


ITEMS = bench_items()


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict]:
    if not ENGINES_PY.exists():
        pytest.fail(f"engines venv missing at {ENGINES_PY}: run scripts/engines-venv.sh (make unit does)")
    out = subprocess.run(
        [str(ENGINES_PY), str(Path(__file__).parent / "parse_bench_argv.py")],
        input=json.dumps([{"id": i["id"], "argv": i["argv"]} for i in ITEMS]),
        capture_output=True, text=True, timeout=600, check=True,
        env={**os.environ, "VLLM_LOGGING_LEVEL": "ERROR", "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    return {r["id"]: r for r in json.loads(out.stdout)}


@pytest.mark.parametrize("item", ITEMS, ids=[i["id"] for i in ITEMS])
def test_real_bench_parser_takes_the_warmups(item: dict, parsed: dict[str, dict]) -> None:
    result = parsed[item["id"]]
    if item["case"] is None:
        assert not result["ok"] and "no-such-x" in result["error"]
        return
    assert result["ok"], result["error"]
    assert int(result["args"][WARMUP_KEY[item["tool"]]]) == item["case"]["concurrency"]
    assert int(result["args"]["max_concurrency"]) == item["case"]["concurrency"]


def test_sglang_bench_source_defines_every_option_rendered() -> None:
    if not ENGINES_PY.exists():
        pytest.fail(f"engines venv missing at {ENGINES_PY}: run scripts/engines-venv.sh (make unit does)")
    source = next((ENGINES_PY.parent.parent / "lib").glob("python3*/site-packages/sglang/benchmark/serving.py"))
    defined = set(re.findall(r'add_argument\(\s*"(--[a-z0-9-]+)"', source.read_text()))
    assert len(defined) > 20, f"no options found in {source}"
    for item in bench_items(("sglang",)):
        rendered = {a for a in item["argv"][3:] if a.startswith("--")}
        assert rendered <= defined, f"{item['id']}: not sglang.bench_serving options: {sorted(rendered - defined)}"
        assert "--warmup-requests" in rendered
