# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters over the weights logic (the same functions the modules use)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.cluster.plugins.module_utils import _distribute as wd
from ansible_collections.inferops.cluster.plugins.module_utils import _weights_source as ws


def weights_upstreams(seeds: list[str], targets: list[str], strategy: str = "chain") -> dict[str, str]:
    """Map every target node to the node it pulls the weights from."""
    try:
        return wd.upstream_map(list(seeds), list(targets), strategy)
    except wd.ScheduleError as exc:
        raise AnsibleFilterError(f"weights distribution: {exc}") from None


def weights_rounds(upstreams: dict[str, str], strategy: str = "chain") -> list[list[list[str]]]:
    """The schedule as rounds of [source, target] pairs (for display and the docs)."""
    try:
        return [[list(pair) for pair in r] for r in wd.rounds(upstreams, strategy)]
    except wd.ScheduleError as exc:
        raise AnsibleFilterError(f"weights distribution: {exc}") from None


def weights_source_errors(params: dict[str, Any]) -> list[str]:
    """Problems with the weights source settings (empty list: fine)."""
    return ws.check_source(params)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "weights_upstreams": weights_upstreams,
            "weights_rounds": weights_rounds,
            "weights_source_errors": weights_source_errors,
        }
