"""The cluster plan: every valid topology of the seeds and every bad input, table-driven from YAML."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.inferops.cluster.plugins.module_utils._plan import PlanError, build_plan, plan_table

FIXTURES = Path(__file__).parent / "fixtures"
VALID = yaml.safe_load((FIXTURES / "plan_valid.yml").read_text())
INVALID = yaml.safe_load((FIXTURES / "plan_invalid.yml").read_text())


def hostvars(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {host: {**case.get("common", {}), **(own or {})} for host, own in case["hosts"].items()}


def contains_run(argv: list[str], run: list[str]) -> bool:
    n = len(run)
    return any(argv[i : i + n] == run for i in range(len(argv) - n + 1))


@pytest.mark.parametrize("case", VALID, ids=[c["id"] for c in VALID])
def test_valid_topologies(case: dict[str, Any]) -> None:
    plan = build_plan(hostvars(case), case.get("all_hosts"))
    expect = case["expect"]
    for name, wanted in expect.get("replicas", {}).items():
        for key, value in wanted.items():
            assert plan["replicas"][name][key] == value, (name, key)
    for host, wanted in expect.get("hosts", {}).items():
        node = plan["hosts"][host]
        for key, value in wanted.items():
            if key == "argv_empty":
                assert (node["argv"] == []) is value
            else:
                assert node[key] == value, (host, key, node[key])
    for host, runs in expect.get("argv_has", {}).items():
        for run in runs:
            assert contains_run(plan["hosts"][host]["argv"], [str(x) for x in run]), (host, run)
    for host, flags in expect.get("argv_lacks", {}).items():
        for flag in flags:
            assert flag not in plan["hosts"][host]["argv"], (host, flag)
    for host, env in expect.get("env", {}).items():
        for key, value in env.items():
            assert plan["hosts"][host]["env"][key] == str(value), (host, key)
    for host, keys in expect.get("env_lacks", {}).items():
        for key in keys:
            assert key not in plan["hosts"][host]["env"], (host, key)
    dumped = json.dumps(plan) + "\n".join(plan_table(plan))
    for secret in expect.get("nowhere", []):
        assert secret not in dumped


@pytest.mark.parametrize(
    ("engine_args", "count"),
    [({}, 1), ({"enable_metrics": True}, 1), ({"enable-metrics": "yes"}, 1), ({"enable-metrics": False}, 0)],
)
def test_sglang_metrics_on_unless_turned_off(engine_args: dict[str, Any], count: int) -> None:
    common = {
        "inferops_engine": "sglang",
        "inferops_gpus_per_node": 1,
        "inferops_model_path": "/m",
        "inferops_api_key": True,
    }
    plan = build_plan({"s1": {**common, "ansible_host": "10.9.0.1", "inferops_engine_args": engine_args}})
    assert plan["hosts"]["s1"]["argv"].count("--enable-metrics") == count


@pytest.mark.parametrize("case", INVALID, ids=[c["id"] for c in INVALID])
def test_bad_input_names_host_and_variable(case: dict[str, Any]) -> None:
    with pytest.raises(PlanError) as info:
        build_plan(hostvars(case), case.get("all_hosts"))
    err = case["error"]
    assert info.value.host == err["host"]
    assert info.value.variable == err["variable"]
    assert err["match"] in str(info.value)
    assert str(info.value).startswith(f"host {err['host']}: {err['variable']}: ")
    for hidden in err.get("lacks", []):
        assert hidden not in str(info.value)


@pytest.mark.parametrize("case", VALID, ids=[c["id"] for c in VALID])
def test_ranks_do_not_depend_on_inventory_order(case: dict[str, Any]) -> None:
    reference = build_plan(hostvars(case), case.get("all_hosts"))
    items = list(hostvars(case).items())
    rng = random.Random(7)
    for _attempt in range(5):
        rng.shuffle(items)
        shuffled = build_plan(dict(items), case.get("all_hosts"))
        assert shuffled["replicas"] == reference["replicas"]
        for host, node in reference["hosts"].items():
            assert shuffled["hosts"][host]["node_rank"] == node["node_rank"]
            assert shuffled["hosts"][host]["argv"] == node["argv"]


def test_head_is_rank_zero_and_every_rank_once() -> None:
    case = next(c for c in VALID if c["id"] == "sglang-tp32-4x8-a100-natural-order")
    plan = build_plan(hostvars(case))
    ranks = sorted(n["node_rank"] for n in plan["hosts"].values())
    assert ranks == [0, 1, 2, 3]
    head = plan["replicas"]["r0"]["head"]
    assert plan["hosts"][head]["node_rank"] == 0
    assert all(n["head"] == head for n in plan["hosts"].values())


def test_table_shows_every_host_and_its_command() -> None:
    case = next(c for c in VALID if c["id"] == "two-replicas-behind-router")
    lines = plan_table(build_plan(hostvars(case)))
    header = lines[0].split()
    assert header[:5] == ["replica", "host", "rank", "head", "address"]
    body = "\n".join(lines)
    for host in case["hosts"]:
        assert f"  {host}: python3 -m sglang.launch_server" in body
    assert "replica b: http://10.20.0.21:8000" in body


def test_loopback_allowed_for_a_lone_single_node_replica() -> None:
    solo = {
        "ansible_host": "127.0.0.1",
        "inferops_gpus_per_node": 1,
        "inferops_model_path": "/m",
        "inferops_api_key": True,
    }
    plan = build_plan({"solo": solo})
    assert plan["hosts"]["solo"]["api_url"] == "http://127.0.0.1:8000"


def test_derived_nccl_env_from_rdma_facts_excludes_the_socket_hca() -> None:
    def port(dev: int, ip: str) -> dict[str, Any]:
        return {
            "name": f"mlx5_{dev}",
            "ports": [
                {
                    "port": 1,
                    "state": "ACTIVE",
                    "link_layer": "Ethernet",
                    "netdev": f"xgbe{dev}",
                    "gids": [
                        {"index": 2, "gid": "::ffff:" + ip, "ipv4": ip, "type": "IB/RoCE v1"},
                        {"index": 3, "gid": "::ffff:" + ip, "ipv4": ip, "type": "RoCE v2"},
                    ],
                }
            ],
        }

    rdma = {"devices": [port(i, f"33.2.160.{i}") for i in range(3)], "route": {"ifname": "xgbe0"}}
    plan = build_plan(
        {
            "n1": {
                "ansible_host": "10.0.0.1",
                "inferops_gpus_per_node": 8,
                "inferops_model_path": "/m",
                "inferops_rdma": rdma,
                "inferops_api_key": True,
            },
        }
    )
    env = plan["hosts"]["n1"]["env"]
    assert env["NCCL_IB_HCA"] == "mlx5_1:1,mlx5_2:1"
    assert env["NCCL_IB_GID_INDEX"] == "3"
    assert env["GLOO_SOCKET_IFNAME"] == "xgbe0"
    assert env["NCCL_SOCKET_IFNAME"] == "xgbe0"
