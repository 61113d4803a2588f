"""What the rdma role installed and the facts it read from the fixture trees."""

from __future__ import annotations

import json

import pytest

SEED_ENV = {
    "GLOO_SOCKET_IFNAME": "xgbe0",
    "NCCL_SOCKET_IFNAME": "xgbe0",
    "NCCL_IB_HCA": "mlx5_1:1,mlx5_2:1,mlx5_3:1,mlx5_4:1,mlx5_5:1,mlx5_6:1,mlx5_7:1,mlx5_8:1",
    "NCCL_IB_GID_INDEX": "3",
    "NCCL_IB_DISABLE": "0",
}


def _load(host, name):
    return json.loads(host.file(f"/var/tmp/inferops-rdma-{name}.json").content_string)


@pytest.mark.parametrize("pkg", ["rdma-core", "ibverbs-utils", "infiniband-diags", "perftest"])
def test_inbox_stack_installed(host, pkg):
    assert host.package(pkg).is_installed


@pytest.mark.parametrize("tool", ["ibv_devices", "ibv_devinfo", "ibstat", "ib_write_bw", "rdma"])
def test_verification_tools_present(host, tool):
    # a container has no RDMA kernel support (ibv_devices: "Function not implemented"), so only
    # the tools' presence is checked here
    assert host.exists(tool)


def test_seed_node_facts(host):
    data = _load(host, "seed003_node01")
    rdma = data["rdma"]
    assert rdma["present"] is True and rdma["active_ports"] == 9
    assert [d["name"] for d in rdma["devices"]] == [f"mlx5_{i}" for i in range(9)]
    assert {p["roce_v2_ipv4_gid_index"] for d in rdma["devices"] for p in d["ports"]} == {3}
    assert rdma["summary"][1] == "mlx5_1 port 1 ==> xgbe1 (ACTIVE, Ethernet, gid_index=3)"
    # the route to the node's own address is local: the interface holding it, not lo
    address = host.interface("eth0").addresses[0]
    assert rdma["route"]["dst"] == address
    assert rdma["route"]["local"] is True and rdma["route"]["ifname"] == "eth0"


def test_seed_node_nccl_env(host):
    data = _load(host, "seed003_node01")
    assert data["env_xgbe0"] == SEED_ENV
    # socket on eth0 (no HCA's netdev): every active HCA is used
    assert data["env_route"]["NCCL_IB_HCA"] == ",".join(f"mlx5_{i}:1" for i in range(9))
    assert data["env_route"]["GLOO_SOCKET_IFNAME"] == "eth0"
    assert data["env_cpu"] == {"GLOO_SOCKET_IFNAME": "eth0"}


@pytest.mark.parametrize(
    ("tree", "env"),
    [
        (
            "roce_mixed",
            {"NCCL_IB_HCA": "mlx5_1:1,mlx5_2:1", "NCCL_IB_GID_INDEX": "3", "NCCL_IB_DISABLE": "0"},
        ),
        ("ib_no_ipv4", {"NCCL_IB_HCA": "mlx5_1:1", "NCCL_IB_DISABLE": "0"}),
        ("port_down", {"NCCL_IB_HCA": "mlx5_1:1", "NCCL_IB_GID_INDEX": "3", "NCCL_IB_DISABLE": "0"}),
    ],
)
def test_fixture_trees_nccl_env(host, tree, env):
    got = _load(host, tree)["env"]
    assert {k: v for k, v in got.items() if k.startswith("NCCL_IB")} == env


def test_port_down_fact(host):
    rdma = _load(host, "port_down")["rdma"]
    states = {d["name"]: d["ports"][0]["state"] for d in rdma["devices"]}
    assert states == {"mlx5_0": "ACTIVE", "mlx5_1": "ACTIVE", "mlx5_2": "DOWN"}
    assert rdma["active_ports"] == 2
