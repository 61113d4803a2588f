# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live numbers of a replica from its engine's /metrics page (status.yml): tokens/s from two reads, running and
waiting requests, KV cache usage. Pure: the playbook fetches the pages, these functions read them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.inferops.cluster.plugins.module_utils._day2 import parse_prometheus

# engine -> (generated tokens counter, running, waiting, KV cache usage 0..1)
ENGINE_METRICS = {
    "vllm": ("vllm:generation_tokens_total", "vllm:num_requests_running", "vllm:num_requests_waiting",
             "vllm:kv_cache_usage_perc"),
    "sglang": ("sglang:generation_tokens_total", "sglang:num_running_reqs", "sglang:num_queue_reqs",
               "sglang:token_usage"),
}  # fmt: skip


def live_numbers(first: str, second: str, seconds: float, engine: str) -> dict[str, Any]:
    """Two reads of one engine's /metrics, SECONDS apart -> {tokens_per_s, running, waiting, kv_cache}.

    A metric the page lacks is None (an engine that serves no metrics, sglang without --enable-metrics)."""
    if engine not in ENGINE_METRICS:
        raise ValueError(f"unknown engine {engine!r}: expected one of {sorted(ENGINE_METRICS)}")
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    tokens, running, waiting, kv = ENGINE_METRICS[engine]
    before, after = parse_prometheus(first or ""), parse_prometheus(second or "")
    rate = None
    if tokens in before and tokens in after:
        rate = round(max(after[tokens] - before[tokens], 0.0) / seconds, 1)
    return {
        "tokens_per_s": rate,
        "running": int(after[running]) if running in after else None,
        "waiting": int(after[waiting]) if waiting in after else None,
        "kv_cache": round(after[kv], 4) if kv in after else None,
    }


def live_table(numbers: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """{replica: live_numbers} -> aligned lines ("-" where the engine did not answer)."""
    columns = ("replica", "tokens/s", "running", "waiting", "kv_cache")
    rows = []
    for name in sorted(numbers):
        n = numbers[name] or {}
        kv = n.get("kv_cache")
        rows.append(
            (
                name,
                "-" if n.get("tokens_per_s") is None else f"{n['tokens_per_s']:.1f}",
                "-" if n.get("running") is None else str(n["running"]),
                "-" if n.get("waiting") is None else str(n["waiting"]),
                "-" if kv is None else f"{kv * 100:.1f}%",
            )
        )
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return lines
