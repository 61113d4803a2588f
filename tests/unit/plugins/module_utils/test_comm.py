"""Communication check: parsing allreduce.py's output, bandwidth maths, transports, missing ranks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.inferops.cluster.plugins.filter.verify import comm_check_report
from ansible_collections.inferops.cluster.plugins.module_utils._comm import (
    bandwidths,
    bus_factor,
    describe_missing,
    expected_transport,
    format_table,
    message_sizes,
    parse_nccl_transports,
)

FIXTURES = Path(__file__).parent / "fixtures" / "comm"
CASES = yaml.safe_load((FIXTURES / "cases.yml").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_report_from_output(case):
    text = (FIXTURES / case["file"]).read_text()
    report = comm_check_report(
        text,
        expect=case["expect"],
        env=case.get("env", {}),
        nnodes=case["nnodes"],
        peers=case.get("peers", []),
        ranks_per_node=case.get("ranks_per_node", 1),
    )
    assert report["ok"] is case["ok"], report["problems"]
    for needle in case["problems"]:
        assert any(needle in p for p in report["problems"]), (needle, report["problems"])
    if not case["problems"]:
        assert report["problems"] == []
    if "backend" in case:
        assert report["backend"] == case["backend"]
    if "world_size" in case:
        assert report["world_size"] == case["world_size"]
    if "sizes" in case:
        assert [r["bytes"] for r in report["rows"]] == case["sizes"]
        assert all(r["correct"] for r in report["rows"])
    if "missing" in case:
        assert report["missing_ranks"] == case["missing"]
    if "expect_resolved" in case:
        assert report["expect_transport"] == case["expect_resolved"]
    if "networks" in case:
        assert report["transports"]["networks"] == case["networks"]


def test_busbw_follows_nccl_tests_for_every_row():
    text = (FIXTURES / "nccl_ib_2x8_constructed.txt").read_text()
    report = comm_check_report(text, expect="any", nnodes=2)
    big = report["rows"][-1]
    # 1 GiB in 11.5 ms over 16 ranks: algbw = 1073741824 / 0.0115 / 1e9, busbw = algbw * 2 * 15 / 16
    assert big["algbw_gbps"] == pytest.approx(93.369, abs=1e-3)
    assert big["busbw_gbps"] == pytest.approx(93.369 * 30 / 16, abs=1e-2)


@pytest.mark.parametrize(
    ("world", "factor"),
    [(1, 0.0), (2, 1.0), (8, 1.75), (16, 1.875)],
)
def test_bus_factor(world, factor):
    assert bus_factor(world) == pytest.approx(factor)


def test_bandwidths_reject_zero_time():
    with pytest.raises(ValueError):
        bandwidths(1 << 20, 0.0, 2)
    assert bandwidths(2_000_000_000, 1.0, 2) == pytest.approx((2.0, 2.0))


@pytest.mark.parametrize(
    ("lo", "hi", "factor", "expected"),
    [
        (1 << 20, 1 << 30, 2, [1 << n for n in range(20, 31)]),
        (1 << 20, 1 << 22, 4, [1 << 20, 1 << 22]),
        (1 << 20, 3 << 20, 2, [1 << 20, 2 << 20, 3 << 20]),
        (4096, 4096, 2, [4096]),
    ],
)
def test_message_sizes(lo, hi, factor, expected):
    assert message_sizes(lo, hi, factor) == expected


@pytest.mark.parametrize(("lo", "hi", "factor"), [(0, 10, 2), (10, 5, 2), (1, 10, 1)])
def test_message_sizes_reject(lo, hi, factor):
    with pytest.raises(ValueError):
        message_sizes(lo, hi, factor)


@pytest.mark.parametrize(
    ("setting", "backend", "nnodes", "env", "expected"),
    [
        ("auto", "gloo", 2, {"NCCL_IB_HCA": "mlx5_1"}, "any"),
        ("auto", "nccl", 1, {"NCCL_IB_HCA": "mlx5_1"}, "any"),
        ("auto", "nccl", 2, {"NCCL_IB_HCA": "mlx5_1"}, "ib"),
        ("auto", "nccl", 2, {"NCCL_IB_HCA": "mlx5_1", "NCCL_IB_DISABLE": "1"}, "socket"),
        ("auto", "nccl", 2, {}, "any"),
        ("p2p", "nccl", 1, {}, "p2p"),
    ],
)
def test_expected_transport(setting, backend, nnodes, env, expected):
    assert expected_transport(setting, backend, nnodes, env) == expected


def test_expected_transport_rejects_unknown():
    with pytest.raises(ValueError, match="rdma"):
        expected_transport("rdma", "nccl", 2, {})


def test_nccl_transports_from_log():
    seen = parse_nccl_transports((FIXTURES / "nccl_ib_2x8_constructed.txt").read_text())
    assert seen["nccl_version"] == "2.21.5+cuda12.4"
    assert seen["via"] == ["NET/IB", "P2P/CUMEM"]
    assert seen["networks"] == ["IB"]
    assert seen["interfaces"][0].startswith("NET/IB: [0]mlx5_1:1/RoCE")
    assert seen["interfaces"][0].endswith("OOB xgbe0:10.63.65.208<0>")


def test_real_h200_log_single_host_channels_stay_off_the_network():
    seen = parse_nccl_transports((FIXTURES / "nccl_h200x2_p2p.txt").read_text())
    assert seen["nccl_version"] == "2.28.9+cuda13.0"
    assert seen["via"] == ["P2P/CUMEM"]
    assert seen["network"] == "Socket"  # NCCL initialises a network even on one host ...
    assert seen["channel_networks"] == []  # ... but no channel uses it


def test_describe_missing_groups_ranks_by_host():
    peers = [{"host": "a", "node_rank": 0}, {"host": "b", "node_rank": 1}]
    assert describe_missing([9, 8, 15], peers, 8) == "b (ranks 8, 9, 15)"
    assert describe_missing([0, 9], peers, 8) == "a (ranks 0); b (ranks 9)"


def test_table_has_one_line_per_size():
    report = comm_check_report((FIXTURES / "gloo_loopback_rank0.txt").read_text(), nnodes=2)
    lines = format_table(report)
    assert lines[2].startswith("| size | count | type | time (us) | algbw (GB/s) | busbw (GB/s)")
    body = [line for line in lines if line.startswith("| 1 MiB") or line.startswith("| 16 MiB")]
    assert len(body) == 2
    assert any(line.startswith("avg busbw") for line in lines)
