"""Pure logic of the communication check (all-reduce over torch.distributed).

The check itself runs ``roles/comm_check/files/allreduce.py`` on every node of a replica. That
script prints one JSON object per line, prefixed with ``INFEROPS_COMM``, interleaved with whatever
NCCL prints when ``NCCL_DEBUG=INFO`` is set. This module turns that output into a report:

* per message size: time, algorithm bandwidth and bus bandwidth, with the nccl-tests conventions
  (``algbw = bytes / time``; for all-reduce ``busbw = algbw * 2 (n - 1) / n``; GB = 1e9 bytes);
* the transports NCCL chose (``via P2P/...``, ``via NET/IB/...``, ``via NET/Socket/...``) and
  whether they match what was expected (RDMA: ``NET/IB``, never ``NET/Socket``);
* the ranks that did not join the rendezvous, with the hosts that should have run them.

No Ansible import: the filter plugin ``inferops.cluster.comm_check_report`` and the unit tests
call these functions directly.
"""

from __future__ import annotations

import json
import re
from typing import Any

PREFIX = "INFEROPS_COMM "
GB = 1e9

# "Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read", "... [send] via NET/IB/0/GDRDMA",
# "... [receive] via NET/Socket/0", "... via SHM/direct/direct"
_VIA = re.compile(r"\bvia\s+([A-Za-z0-9]+(?:/[A-Za-z0-9]+)?)")
# "NCCL INFO NET/IB : Using [0]mlx5_1:1/RoCE ; OOB xgbe0:10.0.0.1<0>"
# "NCCL INFO NET/Socket : Using [0]eth0:172.18.0.2<0>"
_NET_USING = re.compile(r"NCCL INFO NET/(IB|Socket)\s*:\s*Using\s+(.+)$")
# "NCCL INFO Using network IB" / "NCCL INFO Using network Socket"
_USING_NETWORK = re.compile(r"NCCL INFO Using network (\w+)")
_NCCL_VERSION = re.compile(r"NCCL version (\S+)")

TRANSPORT_CHOICES = ("auto", "ib", "socket", "p2p", "any")


def message_sizes(min_bytes: int, max_bytes: int, factor: int = 2) -> list[int]:
    """Sizes from min to max (both included), multiplied by ``factor`` each step."""
    if min_bytes <= 0 or max_bytes < min_bytes:
        raise ValueError(f"need 0 < min_bytes <= max_bytes, got {min_bytes} and {max_bytes}")
    if factor < 2:
        raise ValueError(f"factor must be at least 2, got {factor}")
    sizes = []
    size = min_bytes
    while size <= max_bytes:
        sizes.append(size)
        size *= factor
    if sizes[-1] != max_bytes:
        sizes.append(max_bytes)
    return sizes


def bus_factor(world_size: int) -> float:
    """nccl-tests' bus bandwidth factor for all-reduce: 2 (n - 1) / n."""
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    return 2.0 * (world_size - 1) / world_size


def bandwidths(nbytes: int, seconds: float, world_size: int) -> tuple[float, float]:
    """(algbw, busbw) in GB/s for one all-reduce of ``nbytes`` that took ``seconds``."""
    if seconds <= 0:
        raise ValueError(f"time must be positive, got {seconds}")
    algbw = nbytes / seconds / GB
    return algbw, algbw * bus_factor(world_size)


def human_size(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale} {unit}"
    return f"{nbytes} B"


def parse_events(text: str) -> list[dict[str, Any]]:
    """The JSON events that allreduce.py printed, in order; other lines are ignored."""
    events = []
    for line in text.splitlines():
        idx = line.find(PREFIX)
        if idx < 0:
            continue
        try:
            event = json.loads(line[idx + len(PREFIX) :])
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    return events


def parse_nccl_transports(text: str) -> dict[str, Any]:
    """What NCCL_DEBUG=INFO says about the transports in use.

    ``network`` is the network NCCL chose (``Using network IB|Socket``; it initialises one even on a
    single host), ``channel_networks`` the networks channels actually go through (``via NET/IB``),
    ``via`` every channel transport (``P2P/CUMEM``, ``SHM/direct``, ``NET/IB`` ...).
    """
    via: set[str] = set()
    channel_nets: set[str] = set()
    plugins: set[str] = set()
    network = None
    interfaces: list[str] = []
    version = None
    for line in text.splitlines():
        if "NCCL INFO" not in line and "NCCL version" not in line:
            continue
        match = _NCCL_VERSION.search(line)
        if match and version is None:
            version = match.group(1).rstrip(",")
        if "Channel" in line or "via" in line:
            for transport in _VIA.findall(line):
                via.add(transport)
                if transport.startswith("NET/"):
                    channel_nets.add(transport.split("/", 1)[1])
        match = _NET_USING.search(line)
        if match:
            plugins.add(match.group(1))
            using = f"NET/{match.group(1)}: {match.group(2).strip()}"
            if using not in interfaces:
                interfaces.append(using)
        match = _USING_NETWORK.search(line)
        if match:
            network = match.group(1)
    return {
        "nccl_version": version,
        "via": sorted(via),
        "network": network,
        "channel_networks": sorted(channel_nets),
        "networks": sorted(channel_nets | ({network} if network else set()) | plugins),
        "interfaces": interfaces,
    }


def expected_transport(setting: str, backend: str, nnodes: int, env: dict[str, Any]) -> str:
    """Resolve ``auto``: RDMA is expected on multi-node NCCL when the env names IB HCAs.

    Returns one of ``ib``, ``socket``, ``p2p``, ``any``.
    """
    if setting not in TRANSPORT_CHOICES:
        raise ValueError(f"expected transport must be one of {', '.join(TRANSPORT_CHOICES)}, got {setting!r}")
    if setting != "auto":
        return setting
    if backend != "nccl" or nnodes < 2:
        return "any"
    if str(env.get("NCCL_IB_DISABLE", "0")) == "1":
        return "socket"
    if env.get("NCCL_IB_HCA"):
        return "ib"
    return "any"


def transport_problems(expect: str, backend: str, transports: dict[str, Any]) -> list[str]:
    """Why the transports seen do not match ``expect`` (empty list: they match)."""
    if expect == "any":
        return []
    if backend != "nccl":
        return [f"transport {expect!r} can only be asserted with the nccl backend (backend is {backend})"]
    via = transports.get("via") or []
    channel_nets = set(transports.get("channel_networks") or [])
    network = transports.get("network")
    if not via and not network:
        return ["NCCL printed no transport lines: is NCCL_DEBUG=INFO set for the check?"]
    problems = []
    if expect == "ib":
        if "IB" not in channel_nets and network != "IB":
            problems.append(f"RDMA expected but NCCL did not use NET/IB (network: {network or 'none'})")
        if "Socket" in channel_nets or network == "Socket":
            problems.append("RDMA expected but NCCL used NET/Socket (TCP)")
    elif expect == "socket":
        if "Socket" not in channel_nets and network != "Socket":
            problems.append(f"NET/Socket expected but NCCL used {network or 'no network'}")
    elif expect == "p2p":
        if channel_nets:
            problems.append(
                f"intra-node P2P expected but channels went over the network: {', '.join(sorted(channel_nets))}"
            )
        if not any(v.startswith(("P2P", "SHM")) for v in via):
            problems.append("intra-node P2P expected but no channel went via P2P or SHM")
    return problems


def rank_hosts(peers: list[dict[str, Any]], ranks_per_node: int) -> dict[int, str]:
    """Global rank -> host, for ranks laid out node by node (rank = node_rank * ranks_per_node + local)."""
    hosts = {}
    for peer in peers:
        base = int(peer["node_rank"]) * ranks_per_node
        for local in range(ranks_per_node):
            hosts[base + local] = str(peer["host"])
    return hosts


def describe_missing(missing: list[int], peers: list[dict[str, Any]], ranks_per_node: int) -> str:
    hosts = rank_hosts(peers, ranks_per_node)
    by_host: dict[str, list[int]] = {}
    for rank in sorted(missing):
        by_host.setdefault(hosts.get(rank, "unknown host"), []).append(rank)
    parts = [f"{host} (ranks {', '.join(str(r) for r in ranks)})" for host, ranks in by_host.items()]
    return "; ".join(parts)


def build_report(
    text: str,
    *,
    expect: str = "any",
    peers: list[dict[str, Any]] | None = None,
    ranks_per_node: int = 1,
) -> dict[str, Any]:
    """The report of one node's run: rows, transports, missing ranks, problems, ok."""
    events = parse_events(text)
    start = next((e for e in events if e["event"] == "start"), {})
    sized = next((e for e in events if e.get("world_size")), {})
    world_size = int(start.get("world_size") or sized.get("world_size") or 0)
    backend = start.get("backend")
    rows = []
    problems: list[str] = []
    for event in events:
        if event["event"] != "result":
            continue
        nbytes = int(event["bytes"])
        seconds = float(event["time_us"]) / 1e6
        algbw, busbw = bandwidths(nbytes, seconds, world_size or int(event.get("world_size", 1)))
        rows.append(
            {
                "bytes": nbytes,
                "size": human_size(nbytes),
                "count": int(event.get("count", 0)),
                "dtype": event.get("dtype", start.get("dtype")),
                "time_us": round(float(event["time_us"]), 2),
                "algbw_gbps": round(algbw, 3),
                "busbw_gbps": round(busbw, 3),
                "correct": bool(event.get("correct", False)),
            }
        )
        if not event.get("correct", False):
            problems.append(f"wrong all-reduce result at {human_size(nbytes)}")
    missing: list[int] = []
    for event in events:
        if event["event"] in ("missing", "error"):
            missing.extend(int(r) for r in event.get("missing_ranks", []))
            problems.append(event.get("message", event["event"]))
    missing = sorted(set(missing))
    if missing:
        who = describe_missing(missing, peers or [], ranks_per_node) if peers else ""
        problems.append(
            f"ranks {', '.join(str(r) for r in missing)} of {world_size or '?'} did not join"
            + (f": {who}" if who else "")
        )
    done = any(e["event"] == "done" for e in events)
    if not events:
        problems.append("the all-reduce script printed no INFEROPS_COMM lines")
    elif not done and not missing:
        problems.append("the all-reduce script did not finish")
    transports = parse_nccl_transports(text) if backend == "nccl" else {"via": [], "network": None, "networks": []}
    if done and backend:
        problems.extend(transport_problems(expect, backend, transports))
    return {
        "ok": done and not problems,
        "backend": backend,
        "world_size": world_size,
        "rank": start.get("rank"),
        "torch_version": start.get("torch"),
        "devices": start.get("devices"),
        "expect_transport": expect,
        "transports": transports,
        "rows": rows,
        "missing_ranks": missing,
        "problems": problems,
    }


def format_table(report: dict[str, Any]) -> list[str]:
    """The per-size table as lines (Markdown), the way nccl-tests lays out its columns."""
    lines = [
        f"all_reduce_perf ({report.get('backend')}, {report.get('world_size')} ranks, in-place, sum)",
        "",
        "| size | count | type | time (us) | algbw (GB/s) | busbw (GB/s) | correct |",
        "| ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for row in report.get("rows", []):
        lines.append(
            f"| {row['size']} | {row['count']} | {row['dtype']} | {row['time_us']:.1f} | "
            f"{row['algbw_gbps']:.2f} | {row['busbw_gbps']:.2f} | {'yes' if row['correct'] else 'NO'} |"
        )
    rows = report.get("rows", [])
    if rows:
        avg = sum(r["busbw_gbps"] for r in rows) / len(rows)
        lines.append("")
        lines.append(f"avg busbw {avg:.2f} GB/s, peak busbw {max(r['busbw_gbps'] for r in rows):.2f} GB/s")
    transports = report.get("transports") or {}
    if transports.get("via") or transports.get("network"):
        lines.append(
            "channels via: "
            + (", ".join(transports.get("via") or []) or "none")
            + (f"; NCCL network: {transports['network']}" if transports.get("network") else "")
        )
    return lines
