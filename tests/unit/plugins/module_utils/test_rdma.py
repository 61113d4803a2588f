"""RDMA parsers and the sysfs reader, on the seeds' real tool output and fixture trees."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils import _rdma

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rdma"
sys.path.insert(0, str(FIXTURES))
import sysfs_tree  # noqa: E402

NODES = ["node01", "node02"]


def _tool_text(node: str, tool: str) -> str:
    return (FIXTURES / f"seed003_{node}_{tool}.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("node", NODES)
def test_ibdev2netdev_seed(node):
    rows = _rdma.parse_ibdev2netdev(_tool_text(node, "ibdev2netdev"))
    assert [(r["device"], r["port"], r["netdev"], r["up"]) for r in rows] == [
        (f"mlx5_{i}", 1, f"xgbe{i}", True) for i in range(9)
    ]


@pytest.mark.parametrize("node", NODES)
def test_show_gids_seed_ipv4_column_matches_gid(node):
    rows = _rdma.parse_show_gids(_tool_text(node, "show_gids"))
    assert len(rows) == 36  # 9 HCAs x 4 GIDs, header and dashes skipped
    for row in rows:
        # the IPv4 column show_gids printed is the address the IPv4-mapped GID carries
        assert _rdma.gid_ipv4(row["gid"]) == row["ipv4"]
        assert row["type"] in (_rdma.ROCE_V1, _rdma.ROCE_V2)
    v2_ipv4 = {(r["device"], r["index"]) for r in rows if r["type"] == _rdma.ROCE_V2 and r["ipv4"]}
    assert v2_ipv4 == {(f"mlx5_{i}", 3) for i in range(9)}


@pytest.mark.parametrize(
    ("node", "head_ipv4"),
    [("node01", "10.63.65.207"), ("node02", "10.63.65.208")],
)
def test_facts_from_tools_seed(node, head_ipv4):
    facts = _rdma.facts_from_tools(_tool_text(node, "ibdev2netdev"), _tool_text(node, "show_gids"))
    assert facts["present"] is True
    assert [d["name"] for d in facts["devices"]] == [f"mlx5_{i}" for i in range(9)]
    mlx5_0 = facts["devices"][0]["ports"][0]
    assert mlx5_0["netdev"] == "xgbe0"
    assert mlx5_0["roce_v2_ipv4_gid_index"] == 3
    assert [g["ipv4"] for g in mlx5_0["gids"] if g["index"] == 3] == [head_ipv4]


@pytest.mark.parametrize("node", NODES)
def test_sysfs_reader_agrees_with_tools(node, tmp_path):
    """A sysfs tree holding what the tools printed reads back as the same fact."""
    ibdev, gids = _tool_text(node, "ibdev2netdev"), _tool_text(node, "show_gids")
    root = sysfs_tree.build(sysfs_tree.spec_from_tools(ibdev, gids), tmp_path / "infiniband")
    assert _rdma.read_sysfs(str(root)) == _rdma.facts_from_tools(ibdev, gids)


SPECS = sysfs_tree.load_specs()

# tree -> {(hca, port): (state, link_layer, netdev, roce_v2_ipv4_gid_index, number of used GIDs)}
EXPECTED = {
    "roce_mixed": {
        ("mlx5_0", 1): ("ACTIVE", "Ethernet", "eth0", 3, 4),
        ("mlx5_1", 1): ("ACTIVE", "Ethernet", "ens1f0", 3, 6),
        ("mlx5_2", 1): ("ACTIVE", "Ethernet", "ens2f0", 3, 4),
    },
    "roce_disagree": {
        ("mlx5_1", 1): ("ACTIVE", "Ethernet", "ens1f0", 3, 4),
        ("mlx5_2", 1): ("ACTIVE", "Ethernet", "ens2f0", 5, 6),
    },
    "ib_no_ipv4": {
        ("mlx5_0", 1): ("ACTIVE", "InfiniBand", "ib0", None, 1),
        ("mlx5_1", 1): ("ACTIVE", "InfiniBand", "ib1", None, 1),
    },
    "port_down": {
        ("mlx5_0", 1): ("ACTIVE", "Ethernet", "eth0", 3, 4),
        ("mlx5_1", 1): ("ACTIVE", "Ethernet", "ens1f0", 3, 4),
        ("mlx5_2", 1): ("DOWN", "Ethernet", "ens2f0", None, 2),
    },
}


@pytest.mark.parametrize("tree", sorted(EXPECTED))
def test_sysfs_fixture_trees(tree, tmp_path):
    facts = _rdma.read_sysfs(str(sysfs_tree.build(SPECS[tree], tmp_path / "ib")))
    got = {
        (d["name"], p["port"]): (p["state"], p["link_layer"], p["netdev"], p["roce_v2_ipv4_gid_index"], len(p["gids"]))
        for d in facts["devices"]
        for p in d["ports"]
    }
    assert got == EXPECTED[tree]


def test_sysfs_unused_gid_slot_and_types(tmp_path):
    facts = _rdma.read_sysfs(str(sysfs_tree.build(SPECS["roce_mixed"], tmp_path / "ib")))
    gids = facts["devices"][0]["ports"][0]["gids"]
    assert [g["index"] for g in gids] == [0, 1, 2, 3]  # the zero GID at 4 is skipped
    assert [g["type"] for g in gids] == [_rdma.ROCE_V1, _rdma.ROCE_V2, _rdma.ROCE_V1, _rdma.ROCE_V2]
    ipv6 = facts["devices"][1]["ports"][0]["gids"][4]
    assert ipv6["ipv4"] is None and ipv6["gid"].startswith("fd00:")


def test_sysfs_missing_root_means_no_rdma(tmp_path):
    assert _rdma.read_sysfs(str(tmp_path / "absent")) == {"present": False, "devices": []}


@pytest.mark.parametrize(
    ("gid", "ipv4"),
    [
        ("0000:0000:0000:0000:0000:ffff:2102:a00f", "33.2.160.15"),
        ("0000:0000:0000:0000:0000:FFFF:0A3F:41CF", "10.63.65.207"),
        ("fe80:0000:0000:0000:a288:c2ff:fe59:b8f8", None),
        ("0000:0000:0000:0000:0000:0000:0000:0000", None),
        ("not-a-gid", None),
    ],
)
def test_gid_ipv4(gid, ipv4):
    assert _rdma.gid_ipv4(gid) == ipv4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "10.63.65.207 dev xgbe0 src 10.63.65.208 uid 0 \n    cache \n",
            {"dst": "10.63.65.207", "ifname": "xgbe0", "src": "10.63.65.208", "local": False},
        ),
        (
            "local 10.63.65.207 dev lo src 10.63.65.207 uid 0 \n    cache <local> \n",
            {"dst": "10.63.65.207", "ifname": "lo", "src": "10.63.65.207", "local": True},
        ),
        (
            "10.1.0.9 via 10.0.0.1 dev eth0 src 10.0.0.5 uid 0 \n    cache \n",
            {"dst": "10.1.0.9", "ifname": "eth0", "src": "10.0.0.5", "local": False},
        ),
        ("", None),
    ],
)
def test_parse_ip_route_get(text, expected):
    assert _rdma.parse_ip_route_get(text) == expected


def test_parse_ip_addr_owner():
    text = "2: xgbe0    inet 10.63.65.207/24 brd 10.63.65.255 scope global xgbe0\\       valid_lft forever\n"
    assert _rdma.parse_ip_addr_owner(text) == "xgbe0"
    assert _rdma.parse_ip_addr_owner("5: eth0@if12    inet 172.18.0.2/16 scope global eth0\n") == "eth0"
    assert _rdma.parse_ip_addr_owner("") is None
