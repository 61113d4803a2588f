# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for day-2 playbooks (status, upgrade, router membership), over module_utils._day2."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.cluster.plugins.module_utils._day2 import (
    SKEW_KEYS,
    healthy_others,
    inflight_requests,
    node_status,
    replica_summary,
    router_membership,
    router_worker_ids,
    skew_errors,
    skew_facts,
    status_table,
)


def _skew_errors(facts, keys=SKEW_KEYS, expected=None):
    return skew_errors(facts, keys=keys, expected=expected)


def _inflight_requests(metrics_text, engine):
    try:
        return inflight_requests(metrics_text, engine)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    """inferops.cluster day-2 filters."""

    def filters(self):
        return {
            "skew_errors": _skew_errors,
            "skew_facts": skew_facts,
            "replica_summary": replica_summary,
            "router_worker_ids": router_worker_ids,
            "router_membership": router_membership,
            "router_healthy_others": healthy_others,
            "inflight_requests": _inflight_requests,
            "node_status": node_status,
            "status_table": status_table,
        }
