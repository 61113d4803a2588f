"""derive_nccl_env on the seeds' two H20 nodes and on the fixture sysfs trees."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils._nccl import NcclEnvError, derive_nccl_env
from ansible_collections.inferops.cluster.plugins.module_utils._rdma import facts_from_tools, read_sysfs

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rdma"
sys.path.insert(0, str(FIXTURES))
import sysfs_tree  # noqa: E402

SPECS = sysfs_tree.load_specs()

# What the operators exported on both nodes in seed 003 (vLLM over Ray and sglang runs).
SEED003_ENV = {
    "GLOO_SOCKET_IFNAME": "xgbe0",
    "NCCL_SOCKET_IFNAME": "xgbe0",
    "NCCL_IB_HCA": "mlx5_1:1,mlx5_2:1,mlx5_3:1,mlx5_4:1,mlx5_5:1,mlx5_6:1,mlx5_7:1,mlx5_8:1",
    "NCCL_IB_GID_INDEX": "3",
    "NCCL_IB_DISABLE": "0",
}


def seed_node(node: str, route_ifname: str | None = None) -> dict:
    facts = facts_from_tools(
        (FIXTURES / f"seed003_{node}_ibdev2netdev.txt").read_text(encoding="utf-8"),
        (FIXTURES / f"seed003_{node}_show_gids.txt").read_text(encoding="utf-8"),
    )
    if route_ifname:
        facts["route"] = {"dst": "10.63.65.207", "ifname": route_ifname, "src": None, "local": False}
    return facts


def tree(name: str, tmp_path: Path) -> dict:
    return read_sysfs(str(sysfs_tree.build(SPECS[name], tmp_path / name)))


@pytest.mark.parametrize("node", ["node01", "node02"])
def test_seed003_nodes_derive_what_the_operators_set(node):
    assert derive_nccl_env(seed_node(node), "xgbe0", "cuda", None) == SEED003_ENV


@pytest.mark.parametrize("node", ["node01", "node02"])
def test_socket_ifname_falls_back_to_the_route_fact(node):
    assert derive_nccl_env(seed_node(node, route_ifname="xgbe0"), None, "cuda", {}) == SEED003_ENV


def test_socket_on_a_non_rdma_interface_keeps_every_hca():
    env = derive_nccl_env(seed_node("node01"), "bond0", "cuda", None)
    assert env["NCCL_IB_HCA"] == ",".join(f"mlx5_{i}:1" for i in range(9))
    assert env["GLOO_SOCKET_IFNAME"] == env["NCCL_SOCKET_IFNAME"] == "bond0"


def test_the_only_active_hca_is_kept_even_if_it_carries_the_socket(tmp_path):
    facts = tree("port_down", tmp_path)
    # mlx5_1 (ens1f0) carries the socket; mlx5_2 is down; mlx5_0 stays
    assert derive_nccl_env(facts, "ens1f0", "cuda", None)["NCCL_IB_HCA"] == "mlx5_0:1"
    single = {"devices": [facts["devices"][0]]}
    assert derive_nccl_env(single, "eth0", "cuda", None)["NCCL_IB_HCA"] == "mlx5_0:1"


def test_roce_mixed_v1_v2(tmp_path):
    env = derive_nccl_env(tree("roce_mixed", tmp_path), "eth0", "cuda", None)
    assert env == {
        "GLOO_SOCKET_IFNAME": "eth0",
        "NCCL_SOCKET_IFNAME": "eth0",
        "NCCL_IB_DISABLE": "0",
        "NCCL_IB_HCA": "mlx5_1:1,mlx5_2:1",
        "NCCL_IB_GID_INDEX": "3",
    }


def test_port_down_is_left_out(tmp_path):
    env = derive_nccl_env(tree("port_down", tmp_path), "eth0", "cuda", None)
    assert env["NCCL_IB_HCA"] == "mlx5_1:1"


def test_infiniband_has_no_gid_index(tmp_path):
    env = derive_nccl_env(tree("ib_no_ipv4", tmp_path), "eth0", "cuda", None)
    assert env == {
        "GLOO_SOCKET_IFNAME": "eth0",
        "NCCL_SOCKET_IFNAME": "eth0",
        "NCCL_IB_DISABLE": "0",
        "NCCL_IB_HCA": "mlx5_0:1,mlx5_1:1",
    }


def test_hcas_that_disagree_on_the_gid_index_fail(tmp_path):
    with pytest.raises(NcclEnvError, match=r"disagree.*mlx5_1:1=3, mlx5_2:1=5"):
        derive_nccl_env(tree("roce_disagree", tmp_path), "eth0", "cuda", None)


def test_a_pinned_gid_index_resolves_the_disagreement(tmp_path):
    env = derive_nccl_env(tree("roce_disagree", tmp_path), "eth0", "cuda", {"NCCL_IB_GID_INDEX": 5})
    assert env["NCCL_IB_GID_INDEX"] == "5"
    assert env["NCCL_IB_HCA"] == "mlx5_1:1,mlx5_2:1"


def test_roce_port_without_ipv4_gid_fails_with_advice():
    facts = {
        "devices": [
            {
                "name": "mlx5_0",
                "ports": [
                    {
                        "port": 1,
                        "state": "ACTIVE",
                        "link_layer": "Ethernet",
                        "netdev": "ens1",
                        "gids": [{"index": 1, "gid": "fe80::1", "ipv4": None, "type": "RoCE v2"}],
                    }
                ],
            }
        ]
    }
    with pytest.raises(NcclEnvError, match=r"no RoCE v2 GID with an IPv4 address on mlx5_0:1.*NCCL_IB_GID_INDEX"):
        derive_nccl_env(facts, "eth0", "cuda", None)


@pytest.mark.parametrize("rdma", [None, {"present": False, "devices": []}])
def test_no_rdma_disables_ib(rdma):
    assert derive_nccl_env(rdma, "eth0", "cuda", None) == {
        "GLOO_SOCKET_IFNAME": "eth0",
        "NCCL_SOCKET_IFNAME": "eth0",
        "NCCL_IB_DISABLE": "1",
    }


def test_all_ports_down_disables_ib(tmp_path):
    facts = tree("port_down", tmp_path)
    for dev in facts["devices"]:
        for port in dev["ports"]:
            port["state"] = "DOWN"
    assert derive_nccl_env(facts, "eth0", "cuda", None)["NCCL_IB_DISABLE"] == "1"
    assert "NCCL_IB_HCA" not in derive_nccl_env(facts, "eth0", "cuda", None)


@pytest.mark.parametrize("node", ["node01", "node02"])
def test_cpu_device_gets_only_gloo(node):
    assert derive_nccl_env(seed_node(node), "xgbe0", "cpu", None) == {"GLOO_SOCKET_IFNAME": "xgbe0"}


def test_cpu_without_interface_is_empty():
    assert derive_nccl_env(None, None, "cpu", None) == {}


def test_loopback_route_is_not_a_socket_interface():
    assert derive_nccl_env({"devices": [], "route": {"ifname": "lo"}}, None, "cpu", None) == {}


def test_overrides_win():
    pins = {"NCCL_IB_HCA": "=mlx5_1:1", "NCCL_SOCKET_IFNAME": "^docker0,lo", "GLOO_SOCKET_IFNAME": "bond0"}
    env = derive_nccl_env(seed_node("node01"), "xgbe0", "cuda", pins)
    assert env["NCCL_IB_HCA"] == "=mlx5_1:1"
    assert env["NCCL_SOCKET_IFNAME"] == "^docker0,lo"
    assert env["GLOO_SOCKET_IFNAME"] == "bond0"
    assert env["NCCL_IB_GID_INDEX"] == "3"


@pytest.mark.parametrize("bad", ["^docker0,lo", "=xgbe0", "xgbe0,xgbe1", "eth 0", "averyveryverylongname0"])
def test_gloo_override_in_nccl_syntax_is_rejected(bad):
    with pytest.raises(NcclEnvError, match="GLOO_SOCKET_IFNAME"):
        derive_nccl_env(seed_node("node01"), "xgbe0", "cuda", {"GLOO_SOCKET_IFNAME": bad})


def test_unknown_device_is_rejected():
    with pytest.raises(NcclEnvError, match="device must be one of"):
        derive_nccl_env(None, "eth0", "rocm", None)
