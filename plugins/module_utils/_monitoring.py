# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The monitoring part of the cluster plan: which host runs Prometheus, what each node exports, what is scraped.

Pure: ``_plan.build_plan`` calls ``monitoring_plan`` with the ranked nodes it already read; roles render the result
(``inferops_plan.monitoring`` and each node's ``inferops_node.monitoring``), they do not re-derive it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Ports of the monitoring phase, with their inventory variables (merged into _plan's DEFAULT_PORTS/_PORT_VARIABLES).
MONITORING_PORTS = {
    "node_exporter": 9100,
    "dcgm_exporter": 9400,
    "prometheus": 9090,
    "alertmanager": 9093,
    "grafana": 3000,
    "router_metrics": 29000,
}
MONITORING_PORT_VARIABLES = {name: f"inferops_{name}_port" for name in MONITORING_PORTS}
# Variables the plan reads for the phase (cluster-wide: the same on every host).
MONITORING_VARIABLES = (
    "inferops_monitoring",
    "inferops_grafana",
    "inferops_dcgm_exporter",
    *MONITORING_PORT_VARIABLES.values(),
)
# node exporter's textfile collector directory (Debian's prometheus-node-exporter reads it by default).
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _flag(errors: type[Exception], host: str, variable: str, value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise errors(host, variable, f"{value!r} is not a boolean")


def uniform_flag(
    errors: type[Exception], hostvars: Mapping[str, Mapping[str, Any]], variable: str, default: bool
) -> bool:
    """A cluster-wide switch: every serving host must agree (it lives in group_vars/all)."""
    values = {h: _flag(errors, h, variable, hv.get(variable), default) for h, hv in hostvars.items()}
    if len(set(values.values())) > 1:
        host = next(h for h, v in values.items() if v != default)
        raise errors(host, variable, f"must be the same on every host (it is {values[host]} here only)")
    return next(iter(values.values()), default)


def pick_host(
    errors: type[Exception], group: Iterable[str] | None, router_hosts: Iterable[str], first_head: str
) -> str:
    """The monitoring host: the one host of the group inferops_monitoring, else the router host, else the first
    replica's head."""
    members = list(group or [])
    if len(members) > 1:
        raise errors(None, "inferops_monitoring", f"the group inferops_monitoring holds one host, not {members}")
    if members:
        return members[0]
    routers = sorted(router_hosts)
    return routers[0] if routers else first_head


def node_listens(
    ports: Mapping[str, int], *, device: str, dcgm: bool, is_monitoring: bool, grafana: bool
) -> dict[str, int]:
    """The monitoring ports one host opens: node exporter everywhere, dcgm-exporter on GPU nodes,
    Prometheus/Alertmanager (and Grafana when asked) on the monitoring host. (The router's metrics port is the
    router's own: _plan puts it in the router host's listens whether monitoring runs or not.)"""
    used = {"node_exporter": ports["node_exporter"]}
    if device == "cuda" and dcgm:
        used["dcgm_exporter"] = ports["dcgm_exporter"]
    if is_monitoring:
        used["prometheus"] = ports["prometheus"]
        used["alertmanager"] = ports["alertmanager"]
        if grafana:
            used["grafana"] = ports["grafana"]
    return used


def monitoring_plan(
    *,
    host: str,
    address: str,
    ports: Mapping[str, int],
    grafana: bool,
    nodes: list[dict[str, Any]],
    routers: Mapping[str, tuple[str, int]],
    api_key: bool,
) -> dict[str, Any]:
    """inferops_plan.monitoring: where Prometheus runs and its scrape targets by job, generated from the plan.

    ``nodes``: the plan's per-host dicts (replica, node_rank, address, device, engine, ports, serves_api);
    ``routers``: {router host: (address, metrics port)}; ``api_key``: the engines want the key (Prometheus sends it
    from a 0600 file, never from its config).
    """
    targets: dict[str, list[dict[str, Any]]] = {"node": [], "rdma": [], "dcgm": [], "vllm": [], "sglang": []}
    for node in nodes:
        labels = {"host": node["host"], "replica": node["replica"], "node_rank": node["node_rank"]}
        node_ports = node["monitoring"]["listens"]
        targets["node"].append({"target": _host_port(node["address"], node_ports["node_exporter"]), **labels})
        # RDMA counters reach Prometheus through node exporter's textfile collector: no port of their own.
        targets["rdma"].append({"via": "textfile", "textfile_dir": TEXTFILE_DIR, **labels})
        if "dcgm_exporter" in node_ports:
            targets["dcgm"].append({"target": _host_port(node["address"], node_ports["dcgm_exporter"]), **labels})
        if node["serves_api"]:
            # a head that terminates TLS itself (no router, inferops_tls_*) is scraped over https with the CA
            scheme = "https" if (node.get("tls") or {}).get("serves") else "http"
            engine_target = {"target": _host_port(node["address"], node["ports"]["api"]), "scheme": scheme, **labels}
            targets[node["engine"]].append(engine_target)
    targets["router"] = [
        {"target": _host_port(addr, port), "host": router} for router, (addr, port) in sorted(routers.items())
    ]
    return {
        "enabled": True,
        "host": host,
        "address": address,
        "ports": {
            "prometheus": ports["prometheus"],
            "alertmanager": ports["alertmanager"],
            "grafana": ports["grafana"] if grafana else None,
        },
        "prometheus_url": f"http://{_host_port(address, ports['prometheus'])}",
        "alertmanager_url": f"http://{_host_port(address, ports['alertmanager'])}",
        "grafana": grafana,
        "engine_auth": api_key,
        "textfile_dir": TEXTFILE_DIR,
        "targets": targets,
    }


def node_monitoring(listens: Mapping[str, int], device: str) -> dict[str, Any]:
    """inferops_node.monitoring: what this node exports (the node_exporter / dcgm_exporter roles read it)."""
    return {
        "enabled": True,
        "listens": dict(listens),
        "node_exporter_port": listens["node_exporter"],
        "dcgm": "dcgm_exporter" in listens,
        "gpu_textfile": device == "cuda" and "dcgm_exporter" not in listens,  # the nvidia-smi fallback
        "textfile_dir": TEXTFILE_DIR,
    }


DISABLED: dict[str, Any] = {"enabled": False, "host": None, "address": None, "targets": {}}
NODE_DISABLED: dict[str, Any] = {"enabled": False, "listens": {}}
