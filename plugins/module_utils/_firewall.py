# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each host's firewall rules (``inferops_node.firewall``), computed once with the plan.

Pure: no Ansible import, no socket. Names are turned into addresses by a ``resolve`` callable that the
``cluster_plan`` action passes (``socket.getaddrinfo`` on the controller); the tests pass a mapping.

A rule: ``{"name": <listens key, "ssh" or "ephemeral">, "ports": "8000" | "32768-60999", "from": [IP or CIDR, ...],
"why": "..."}``. ``from`` is empty when only loopback may connect. Every port of a rule other than ``ssh`` is
rejected from any other source; loopback is always accepted (the roles render it first).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ansible_collections.inferops.cluster.plugins.module_utils._plan import PlanError

# Who may connect to each port of ``listens``, by class of source:
#   peers      the nodes of this host's replica
#   router     the router host (inferops_router_host of this host's replica)
#   monitoring the monitoring host (inferops_plan.monitoring.address, when the plan has one)
#   clients    inferops_api_allowed_networks
#   endpoint   clients, but only where this port is the public endpoint (the replica has no router)
#   cluster    every node of the plan
# A port name another part of the plan adds to ``listens`` needs one line here (the plan refuses an unknown name).
PORT_SOURCES: dict[str, tuple[str, ...]] = {
    "api": ("peers", "router", "monitoring", "endpoint"),
    "dist_init": ("peers",),
    "master": ("peers",),
    "ray": ("peers",),
    # the Ray dashboard takes job submissions without authentication: loopback only (it listens there by default)
    "ray_dashboard": (),
    # the cluster too: each replica's healer takes its head out of the router and back in (/workers)
    "router": ("clients", "monitoring", "cluster"),
    "healer": ("peers",),
    "node_exporter": ("monitoring",),
    "dcgm_exporter": ("monitoring",),
    "router_metrics": ("monitoring",),
    # Prometheus and Alertmanager have no authentication: the monitoring host and the cluster only (issue 16);
    # Grafana has its own login and is for people
    "prometheus": ("monitoring", "cluster"),
    "alertmanager": ("monitoring", "cluster"),
    "grafana": ("monitoring", "clients"),
    # Open WebUI (roles/open_webui) on the router host, when open_webui_enabled there
    "open_webui": ("clients",),
}
SOURCE_CLASSES = ("peers", "router", "monitoring", "clients", "endpoint", "cluster")
# NCCL, gloo and the engines' ZMQ sockets listen on the kernel's ephemeral ports: only the replica's nodes reach them.
# The range below is Linux's default; the firewall role replaces it with the node's net.ipv4.ip_local_port_range.
EPHEMERAL_DEFAULT = "32768-60999"
EVERYONE = ("0.0.0.0/0", "::/0")
_WHY = {
    "peers": "the replica's nodes",
    "router": "the router host",
    "monitoring": "the monitoring host",
    "clients": "inferops_api_allowed_networks",
    "endpoint": "inferops_api_allowed_networks (no router: this is the public endpoint)",
    "cluster": "every node of the plan",
}

Resolver = Callable[[str], Iterable[str]]
# Variables of the router host the plan reads for the ports it adds (the cluster_plan action templates them).
FIREWALL_VARIABLES = ("open_webui_enabled", "open_webui_port")
DEFAULT_OPEN_WEBUI_PORT = 8080


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def resolve_address(host: str, variable: str, name: str, resolve: Resolver | None) -> list[str]:
    """The addresses of NAME (an IP literal is its own); a name that does not resolve fails naming host and variable.

    ``resolve`` None: names are refused as well (nothing can resolve them).
    """
    if is_ip(name):
        return [_canonical(name)]
    found: list[str] = []
    if resolve is not None:
        try:
            found = [_canonical(a) for a in resolve(name) if is_ip(str(a))]
        except (OSError, ValueError, UnicodeError):
            found = []
    if not found:
        raise PlanError(
            host,
            variable,
            f"{name!r} does not resolve to an address on the controller; the firewall needs the node's address "
            "(give an IP address, or a name the controller resolves)",
        )
    return sorted(set(found), key=_sort_key)


def _canonical(address: str) -> str:
    ip = ipaddress.ip_address(str(address).split("%", 1)[0])
    return str(getattr(ip, "ipv4_mapped", None) or ip)


def _sort_key(text: str) -> tuple[int, Any]:
    net = ipaddress.ip_network(text, strict=False)
    return (net.version, net.network_address.packed, net.prefixlen)


def networks(host: str, variable: str, value: Any) -> list[str]:
    """inferops_api_allowed_networks: a list of addresses or CIDRs, checked."""
    if value in (None, ""):
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise PlanError(host, variable, f"must be a list of addresses or CIDRs, got {value!r}")
    out = []
    for item in value:
        try:
            net = ipaddress.ip_network(str(item).strip(), strict=False)
        except ValueError:
            raise PlanError(
                host, variable, f"{item!r} is not an address or CIDR (names are not allowed here)"
            ) from None
        out.append(str(net))
    return out


def collapse(addresses: Iterable[str]) -> list[str]:
    """One list without duplicates or overlaps (nft refuses overlapping intervals in a set); hosts without /32."""
    nets: dict[int, list[Any]] = {4: [], 6: []}
    for item in addresses:
        net = ipaddress.ip_network(item, strict=False)
        nets[net.version].append(net)
    out = []
    for version in (4, 6):
        for net in ipaddress.collapse_addresses(nets[version]):
            out.append(str(net.network_address) if net.num_addresses == 1 else str(net))
    return out


def port_variable(name: str) -> str:
    """The inventory variable of a listens port (inferops_<name>_port, but open_webui_port)."""
    return "open_webui_port" if name == "open_webui" else f"inferops_{name}_port"


def node_rules(
    host: str,
    listens: Mapping[str, int],
    sources: Mapping[str, Iterable[str]],
    *,
    routed: bool,
    ssh_port: int = 22,
    ephemeral: bool = True,
    table: Mapping[str, tuple[str, ...]] | None = None,
) -> list[dict[str, Any]]:
    """One host's rules from its ``listens`` and the addresses of each class of source.

    ``routed``: a router fronts this host's replica (then ``endpoint`` is empty: clients go through the router).
    The SSH port is never restricted; a listens port equal to it is refused.
    """
    table = PORT_SOURCES if table is None else table
    rules = [
        {
            "name": "ssh",
            "ports": str(ssh_port),
            "from": list(EVERYONE),
            "why": "the controller's connection port (ansible_port): never blocked",
        }
    ]
    for name, port in listens.items():
        if name not in table:
            raise ValueError(f"port {name!r} of host {host} has no entry in _firewall.PORT_SOURCES")
        if int(port) == int(ssh_port):
            raise PlanError(
                host,
                port_variable(name),
                f"port {port} is the controller's connection port (SSH, ansible_port); the firewall would cut it, "
                "choose another port",
            )
        classes = [c for c in table[name] if not (c == "endpoint" and routed)]
        if name == "api" and not routed:
            classes = [c for c in classes if c != "router"]
        for cls in classes:
            if cls not in SOURCE_CLASSES:
                raise ValueError(f"PORT_SOURCES[{name!r}]: unknown source class {cls!r}")
        found = collapse(a for cls in classes for a in sources.get("clients" if cls == "endpoint" else cls, ()))
        why = ", ".join(_WHY[c] for c in classes) if classes else "nobody"
        rules.append({"name": name, "ports": str(port), "from": found, "why": f"{name}: loopback and {why}"})
    if ephemeral:
        rules.append(
            {
                "name": "ephemeral",
                "ports": EPHEMERAL_DEFAULT,
                "from": collapse(sources.get("peers", ())),
                "why": "NCCL, gloo and ZMQ listeners on the kernel's ephemeral ports: loopback and the replica's "
                "nodes (the role fills in the node's net.ipv4.ip_local_port_range)",
            }
        )
    return rules


def _address_of(host: str, hv: Mapping[str, Any]) -> tuple[str, str]:
    """(address or name, the variable it came from) as the plan reads it."""
    for variable in ("inferops_address", "ansible_host"):
        if hv.get(variable):
            return str(hv[variable]), variable
    return host, "inferops_address"


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "yes", "1", "on")


def _add_open_webui(plan: dict[str, Any], hostvars: Mapping[str, Mapping[str, Any]]) -> None:
    """Open WebUI's port in the listens of the router host (a serving node) that runs it (open_webui_enabled)."""
    routers = {hv.get("inferops_router_host") for hv in hostvars.values()} - {None, ""}
    for host in sorted(str(r) for r in routers):
        hv = hostvars.get(host)
        if hv is None or host not in plan["hosts"] or not _truthy(hv.get("open_webui_enabled", False)):
            continue
        raw = hv.get("open_webui_port", DEFAULT_OPEN_WEBUI_PORT)
        try:
            port = int(str(raw).strip())
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise PlanError(host, "open_webui_port", f"must be a TCP port (1-65535), got {raw!r}")
        listens = plan["hosts"][host]["listens"]
        for name, other in listens.items():
            if other == port:
                raise PlanError(
                    host, "open_webui_port", f"port {port} is used by both {name} and open_webui on this host"
                )
        listens["open_webui"] = port


def add_firewall(
    plan: dict[str, Any],
    hostvars: Mapping[str, Mapping[str, Any]],
    others: Mapping[str, Mapping[str, Any]] | None = None,
    resolve: Resolver | None = None,
) -> None:
    """Fill ``plan["hosts"][H]["firewall"]`` for every host, resolving names with ``resolve``.

    ``hostvars``: the serving hosts' variables; ``others``: inferops_address / ansible_host of the router and
    monitoring hosts that are not serving nodes. The monitoring host is read from ``plan["monitoring"]`` (absent:
    no monitoring source).
    """
    others = others or {}
    cache: dict[str, list[str]] = {}

    def addresses(host: str) -> list[str]:
        if host not in cache:
            hv = hostvars.get(host, others.get(host, {}))
            name, variable = _address_of(host, hv)
            cache[host] = resolve_address(host, variable, name, resolve)
        return cache[host]

    _add_open_webui(plan, hostvars)
    cluster = [a for host in plan["hosts"] for a in addresses(host)]
    monitoring: list[str] = []
    mon = plan.get("monitoring") or {}
    if mon.get("host") in hostvars or mon.get("host") in others:
        monitoring = addresses(str(mon["host"]))  # names the variable the address came from
    elif mon.get("address"):
        monitoring = resolve_address(mon.get("host"), "inferops_address", str(mon["address"]), resolve)
    for host, node in plan["hosts"].items():
        hv = hostvars.get(host, {})
        router_host = hv.get("inferops_router_host") or None
        ssh_raw = hv.get("ansible_port")
        sources = {
            "peers": [a for peer in node["peers"] for a in addresses(peer["host"])],
            "router": addresses(str(router_host)) if router_host else [],
            "monitoring": monitoring,
            "clients": networks(host, "inferops_api_allowed_networks", hv.get("inferops_api_allowed_networks")),
            "cluster": cluster,
        }
        node["firewall"] = node_rules(
            host,
            node["listens"],
            sources,
            routed=bool(router_host),
            ssh_port=22 if ssh_raw in (None, "") else int(ssh_raw),
        )
