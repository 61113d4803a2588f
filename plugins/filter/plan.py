# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters over the cluster plan and argv rendering (the same functions the plan uses)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.cluster.plugins.module_utils._argv import format_argv, redact_argv, render_flags
from ansible_collections.inferops.cluster.plugins.module_utils._plan import plan_table


def engine_argv(args: Any, engine: str | None = None) -> list[str]:
    """``args | inferops.cluster.engine_argv('vllm')``: false renders as the engine's parser takes it."""
    if args is not None and not isinstance(args, dict):
        raise AnsibleFilterError(f"engine_argv expects a mapping of flags, got {type(args).__name__}")
    try:
        return render_flags(args, engine)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from None


def redacted_argv(argv: list[str]) -> list[str]:
    return redact_argv(argv)


def argv_line(argv: list[str]) -> str:
    return format_argv(argv)


def cluster_plan_table(plan: dict[str, Any]) -> list[str]:
    return plan_table(plan)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "engine_argv": engine_argv,
            "redacted_argv": redacted_argv,
            "argv_line": argv_line,
            "plan_table": cluster_plan_table,
        }
