"""status.yml's live numbers: two reads of an engine's /metrics (the vLLM page captured on the lab, and sglang's
metric names) folded into tokens/s, running and waiting requests, KV cache usage; the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils._engine_metrics import live_numbers, live_table

VLLM = (Path(__file__).resolve().parents[1] / "fixtures" / "monitoring" / "vllm-0.32.0-cpu-metrics.txt").read_text()


def _later(page: str, tokens: float, running: float, waiting: float, kv: float) -> str:
    lines = []
    for line in page.splitlines():
        if line.startswith("vllm:generation_tokens_total{"):
            line = f"{line.rsplit(' ', 1)[0]} {tokens}"
        elif line.startswith("vllm:num_requests_running{"):
            line = f"{line.rsplit(' ', 1)[0]} {running}"
        elif line.startswith("vllm:num_requests_waiting{"):
            line = f"{line.rsplit(' ', 1)[0]} {waiting}"
        elif line.startswith("vllm:kv_cache_usage_perc{"):
            line = f"{line.rsplit(' ', 1)[0]} {kv}"
        lines.append(line)
    return "\n".join(lines)


def test_vllm_page_captured_on_the_lab():
    idle = live_numbers(VLLM, VLLM, 3, "vllm")
    assert idle == {"tokens_per_s": 0.0, "running": 0, "waiting": 0, "kv_cache": 0.0}
    busy = live_numbers(VLLM, _later(VLLM, 2.0 + 120, 3, 1, 0.0125), 4, "vllm")
    assert busy == {"tokens_per_s": 30.0, "running": 3, "waiting": 1, "kv_cache": 0.0125}


def test_sglang_names_and_a_page_without_metrics():
    first = 'sglang:generation_tokens_total{model_name="m"} 100\nsglang:num_running_reqs{model_name="m"} 2\n'
    second = (
        'sglang:generation_tokens_total{model_name="m"} 160\nsglang:num_running_reqs{model_name="m"} 2\n'
        'sglang:num_queue_reqs{model_name="m"} 5\nsglang:token_usage{model_name="m"} 0.5\n'
    )
    assert live_numbers(first, second, 2, "sglang") == {
        "tokens_per_s": 30.0,
        "running": 2,
        "waiting": 5,
        "kv_cache": 0.5,
    }
    assert live_numbers("", "", 2, "sglang") == {
        "tokens_per_s": None,
        "running": None,
        "waiting": None,
        "kv_cache": None,
    }
    with pytest.raises(ValueError, match="unknown engine"):
        live_numbers("", "", 2, "tgi")


def test_table():
    lines = live_table(
        {"r1": {"tokens_per_s": None, "running": None, "waiting": None, "kv_cache": None},
         "r0": {"tokens_per_s": 41.25, "running": 3, "waiting": 0, "kv_cache": 0.0021}}
    )  # fmt: skip
    assert lines[0].split() == ["replica", "tokens/s", "running", "waiting", "kv_cache"]
    assert lines[2].split() == ["r0", "41.2", "3", "0", "0.2%"]
    assert lines[3].split() == ["r1", "-", "-", "-", "-"]
