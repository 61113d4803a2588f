# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the verify and bench playbooks, over module_utils._comm and module_utils._bench."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.cluster.plugins.module_utils._bench import (
    expand_cases,
    redact_env,
    run_record,
    tool_argv,
)
from ansible_collections.inferops.cluster.plugins.module_utils._comm import (
    build_report,
    expected_transport,
    format_table,
    message_sizes,
    parse_events,
)


def comm_check_report(
    text: str | list[str],
    expect: str = "auto",
    env: dict[str, Any] | None = None,
    nnodes: int = 1,
    peers: list[dict[str, Any]] | None = None,
    ranks_per_node: int = 1,
    backend: str = "",
) -> dict[str, Any]:
    """Parse allreduce.py's output into the check's report; a list (stdout, stderr) is joined by lines."""
    if isinstance(text, (list, tuple)):
        text = "\n".join(str(t or "") for t in text)
    try:
        if not backend:
            start = next((e for e in parse_events(str(text)) if e["event"] == "start"), {})
            backend = str(start.get("backend") or "gloo")
        resolved = expected_transport(expect, backend, int(nnodes), dict(env or {}))
        return build_report(str(text), expect=resolved, peers=list(peers or []), ranks_per_node=int(ranks_per_node))
    except (ValueError, TypeError, KeyError) as exc:
        raise AnsibleFilterError(f"comm_check_report: {exc}") from None


def comm_check_table(report: dict[str, Any]) -> list[str]:
    return format_table(report)


def comm_check_sizes(min_bytes: int, max_bytes: int, factor: int = 2) -> list[int]:
    try:
        return message_sizes(int(min_bytes), int(max_bytes), int(factor))
    except ValueError as exc:
        raise AnsibleFilterError(f"comm_check_sizes: {exc}") from None


def bench_cases(
    lengths: list[dict[str, Any]], concurrencies: list[int], per_concurrency: int = 1, min_prompts: int = 1
) -> list[dict[str, Any]]:
    try:
        return expand_cases(list(lengths), [int(c) for c in concurrencies], int(per_concurrency), int(min_prompts))
    except (ValueError, TypeError) as exc:
        raise AnsibleFilterError(f"bench_cases: {exc}") from None


def bench_argv(case: dict[str, Any], tool: str, **kwargs: Any) -> list[str]:
    try:
        return tool_argv(tool, case, **kwargs)
    except (ValueError, TypeError, KeyError) as exc:
        raise AnsibleFilterError(f"bench_argv: {exc}") from None


def bench_redact_env(env: dict[str, Any]) -> dict[str, str]:
    return redact_env(dict(env or {}))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "comm_check_report": comm_check_report,
            "comm_check_table": comm_check_table,
            "comm_check_sizes": comm_check_sizes,
            "bench_cases": bench_cases,
            "bench_argv": bench_argv,
            "bench_redact_env": bench_redact_env,
            "bench_run_record": run_record,
        }
