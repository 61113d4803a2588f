"""head_addresses: each host's head address from the inventory alone, the same as the full plan's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.inferops.cluster.plugins.module_utils._plan import (
    PLAN_FACTS,
    PLAN_VARIABLES,
    PlanError,
    build_plan,
    head_addresses,
)

VALID = yaml.safe_load((Path(__file__).parent / "fixtures" / "plan_valid.yml").read_text())


def hostvars(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {host: {**case.get("common", {}), **(own or {})} for host, own in case["hosts"].items()}


@pytest.mark.parametrize("case", VALID, ids=[c["id"] for c in VALID])
def test_heads_agree_with_the_plan(case: dict[str, Any]) -> None:
    hv = hostvars(case)
    plan = build_plan(hv, case.get("all_hosts"))
    assert head_addresses(hv) == {host: node["head_address"] for host, node in plan["hosts"].items()}


@pytest.mark.parametrize("case", VALID, ids=[c["id"] for c in VALID])
def test_heads_need_no_facts(case: dict[str, Any]) -> None:
    """The first pass runs before gathering: no GPU count, no RDMA facts, still every host's head."""
    bare = {
        host: {k: v for k, v in values.items() if k not in ("inferops_gpus_per_node", *PLAN_FACTS, "ansible_facts")}
        for host, values in hostvars(case).items()
    }
    assert set(head_addresses(bare)) == set(bare)


def test_pinned_head_and_addresses() -> None:
    hv = {
        "a1": {"ansible_host": "10.0.0.1", "inferops_replica": "x"},
        "a2": {"ansible_host": "10.0.0.2", "inferops_replica": "x", "inferops_head": True},
        "b1": {"inferops_address": "10.1.0.1", "ansible_host": "192.0.2.1", "inferops_replica": "y"},
        "b2": {"inferops_replica": "y", "inferops_node_rank": 0},
    }
    assert head_addresses(hv) == {"a1": "10.0.0.2", "a2": "10.0.0.2", "b1": "b2", "b2": "b2"}


def test_bad_pin_names_host_and_variable() -> None:
    with pytest.raises(PlanError, match="host n2: inferops_node_rank: rank 0 is also held by n1"):
        head_addresses({"n1": {"inferops_node_rank": 0}, "n2": {"inferops_node_rank": 0}})


def test_plan_variables_is_the_module_constant() -> None:
    """One list, in _plan.py: the action reads it; other checks derive lists from it."""
    from ansible_collections.inferops.cluster.plugins.action import cluster_plan

    assert cluster_plan.PLAN_VARIABLES is PLAN_VARIABLES
    assert len(set(PLAN_VARIABLES)) == len(PLAN_VARIABLES)
    assert "inferops_api_key" not in PLAN_VARIABLES  # read apart: as a bool and a digest only


def test_replica_sizes_count_the_nodes_of_each_hosts_replica():
    from ansible_collections.inferops.cluster.plugins.module_utils._plan import replica_sizes

    hosts = {"a1": {"inferops_replica": "a"}, "a2": {"inferops_replica": "a"}, "solo": {}}
    assert replica_sizes(hosts) == {"a1": 2, "a2": 2, "solo": 1}
