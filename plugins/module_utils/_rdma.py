# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""RDMA facts: HCAs, ports, netdevs and GID tables, read from sysfs or parsed from tool output.

The fact shape (``ansible_facts.inferops_rdma``) is::

    {"present": bool,
     "devices": [{"name": "mlx5_1",
                  "ports": [{"port": 1, "state": "ACTIVE", "phys_state": "LinkUp",
                             "link_layer": "Ethernet", "netdev": "xgbe1",
                             "roce_v2_ipv4_gid_index": 3,
                             "gids": [{"index": 3, "gid": "0000:...:2102:a00f",
                                       "ipv4": "33.2.160.15", "type": "RoCE v2",
                                       "netdev": "xgbe1"}]}]}],
     "route": {"dst": "10.63.65.207", "ifname": "xgbe0", "src": "10.63.65.208", "local": false}}

``read_sysfs`` walks ``/sys/class/infiniband`` (the same source ``ibdev2netdev`` and
``show_gids`` read); ``parse_ibdev2netdev`` / ``parse_show_gids`` / ``facts_from_tools`` turn the
tools' output into the same shape so the two can be compared.
"""

from __future__ import annotations

import ipaddress
import os
import re

ROCE_V2 = "RoCE v2"
ROCE_V1 = "IB/RoCE v1"

_ZERO_GID = "0000:0000:0000:0000:0000:0000:0000:0000"
_V4_MAPPED_PREFIX = "0000:0000:0000:0000:0000:ffff:"


def natural_key(name: str) -> list:
    """Sort key that orders mlx5_2 before mlx5_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def gid_ipv4(gid: str) -> str | None:
    """IPv4 address carried by an IPv4-mapped GID (``::ffff:a.b.c.d``), else None."""
    gid = gid.strip().lower()
    if not gid.startswith(_V4_MAPPED_PREFIX):
        return None
    try:
        mapped = ipaddress.IPv6Address(gid).ipv4_mapped
    except ValueError:
        return None
    return str(mapped) if mapped is not None else None


def normalize_gid_type(raw: str) -> str:
    """Map sysfs gid_attrs/types values and show_gids' VER column to one spelling."""
    value = raw.strip()
    low = value.lower()
    if low in ("v2", "roce v2", "rocev2"):
        return ROCE_V2
    if low in ("v1", "ib/roce v1", "roce v1", "ib"):
        return ROCE_V1
    return value


def _state_name(raw: str) -> str:
    """sysfs port state '4: ACTIVE' -> 'ACTIVE'; phys_state '5: LinkUp' -> 'LinkUp'."""
    raw = raw.strip()
    return raw.split(":", 1)[1].strip() if ":" in raw else raw


def roce_v2_ipv4_gid_index(port: dict) -> int | None:
    """Lowest GID index of a port whose type is RoCE v2 and which carries an IPv4 address."""
    indexes = [g["index"] for g in port.get("gids", []) if g.get("type") == ROCE_V2 and g.get("ipv4")]
    return min(indexes) if indexes else None


def _finish_port(port: dict) -> dict:
    port["gids"].sort(key=lambda g: g["index"])
    if port.get("netdev") is None:
        netdevs = [g["netdev"] for g in port["gids"] if g.get("netdev")]
        port["netdev"] = netdevs[0] if netdevs else None
    port["roce_v2_ipv4_gid_index"] = roce_v2_ipv4_gid_index(port) if port.get("link_layer") == "Ethernet" else None
    return port


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        # Unused GID slots raise EINVAL on read of their attributes: treat as absent.
        return None


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path), key=natural_key)
    except OSError:
        return []


def _netdevs_of_device(dev_path: str) -> dict[int, str]:
    """Netdevs under <dev>/device/net keyed by port (dev_port + 1), as ibdev2netdev does."""
    result: dict[int, str] = {}
    net_dir = os.path.join(dev_path, "device", "net")
    for ifname in _listdir(net_dir):
        dev_port = _read(os.path.join(net_dir, ifname, "dev_port"))
        try:
            port = int(dev_port or "0", 0) + 1
        except ValueError:
            port = 1
        result.setdefault(port, ifname)
    return result


def read_sysfs(root: str = "/sys/class/infiniband") -> dict:
    """Read every HCA under ``root`` into the fact shape (without ``route``)."""
    devices = []
    for name in _listdir(root):
        dev_path = os.path.join(root, name)
        by_port = _netdevs_of_device(dev_path)
        ports = []
        for port_name in _listdir(os.path.join(dev_path, "ports")):
            if not port_name.isdigit():
                continue
            port_path = os.path.join(dev_path, "ports", port_name)
            port = {
                "port": int(port_name),
                "state": _state_name(_read(os.path.join(port_path, "state")) or "UNKNOWN"),
                "phys_state": _state_name(_read(os.path.join(port_path, "phys_state")) or "UNKNOWN"),
                "link_layer": _read(os.path.join(port_path, "link_layer")) or "InfiniBand",
                "netdev": by_port.get(int(port_name)),
                "gids": [],
            }
            for index in _listdir(os.path.join(port_path, "gids")):
                if not index.isdigit():
                    continue
                gid = (_read(os.path.join(port_path, "gids", index)) or "").lower()
                if not gid or gid == _ZERO_GID:
                    continue
                raw_type = _read(os.path.join(port_path, "gid_attrs", "types", index))
                ndev = _read(os.path.join(port_path, "gid_attrs", "ndevs", index))
                port["gids"].append(
                    {
                        "index": int(index),
                        "gid": gid,
                        "ipv4": gid_ipv4(gid),
                        "type": normalize_gid_type(raw_type) if raw_type else None,
                        "netdev": ndev or None,
                    }
                )
            ports.append(_finish_port(port))
        devices.append({"name": name, "ports": ports})
    return {"present": bool(devices), "devices": devices}


_IBDEV_RE = re.compile(r"^(?P<dev>\S+)\s+port\s+(?P<port>\d+)\s+==>\s+(?P<netdev>\S+)\s+\((?P<link>\w+)\)")


def parse_ibdev2netdev(text: str) -> list[dict]:
    """``mlx5_0 port 1 ==> xgbe0 (Up)`` lines -> [{device, port, netdev, up}]."""
    rows = []
    for line in text.splitlines():
        match = _IBDEV_RE.match(line.strip())
        if match:
            rows.append(
                {
                    "device": match["dev"],
                    "port": int(match["port"]),
                    "netdev": match["netdev"],
                    "up": match["link"].lower() == "up",
                }
            )
    return rows


def parse_show_gids(text: str) -> list[dict]:
    """Rows of Mellanox ``show_gids``: DEV PORT INDEX GID [IPv4] VER DEV."""
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[1].isdigit() or not fields[2].isdigit():
            continue
        rest = fields[4:]
        ipv4 = rest.pop(0) if rest and re.match(r"^\d+\.\d+\.\d+\.\d+$", rest[0]) else None
        if not rest:
            continue
        ver = rest[0]
        ndev = rest[1] if len(rest) > 1 else None
        rows.append(
            {
                "device": fields[0],
                "port": int(fields[1]),
                "index": int(fields[2]),
                "gid": fields[3].lower(),
                "ipv4": ipv4,
                "type": normalize_gid_type(ver),
                "netdev": ndev,
            }
        )
    return rows


def facts_from_tools(ibdev2netdev: str, show_gids: str, link_layer: str = "Ethernet") -> dict:
    """Build the fact from ``ibdev2netdev`` + ``show_gids`` output (neither prints the link
    layer; netdevs named by both mean Ethernet/RoCE, hence the default). ``(Up)`` is the
    netdev's link state; it is mapped to ACTIVE/DOWN."""
    ports: dict[tuple[str, int], dict] = {}
    for row in parse_ibdev2netdev(ibdev2netdev):
        ports[(row["device"], row["port"])] = {
            "port": row["port"],
            "state": "ACTIVE" if row["up"] else "DOWN",
            "phys_state": "LinkUp" if row["up"] else "Disabled",
            "link_layer": link_layer,
            "netdev": row["netdev"],
            "gids": [],
        }
    for row in parse_show_gids(show_gids):
        port = ports.setdefault(
            (row["device"], row["port"]),
            {
                "port": row["port"],
                "state": "UNKNOWN",
                "phys_state": "UNKNOWN",
                "link_layer": link_layer,
                "netdev": row["netdev"],
                "gids": [],
            },
        )
        port["gids"].append({k: row[k] for k in ("index", "gid", "ipv4", "type", "netdev")})
    devices: dict[str, list[dict]] = {}
    for (dev, _num), port in sorted(ports.items(), key=lambda item: (natural_key(item[0][0]), item[0][1])):
        devices.setdefault(dev, []).append(_finish_port(port))
    return {
        "present": bool(devices),
        "devices": [{"name": name, "ports": plist} for name, plist in devices.items()],
    }


def parse_ip_route_get(text: str) -> dict | None:
    """``ip route get ADDR`` -> {dst, ifname, src, local}; None when nothing parses."""
    for line in text.splitlines():
        fields = line.split()
        if not fields or "dev" not in fields:
            continue
        local = fields[0] in ("local", "broadcast")
        dst = fields[1] if local and len(fields) > 1 else fields[0]
        result = {"dst": dst, "ifname": None, "src": None, "local": local}
        for key, name in (("dev", "ifname"), ("src", "src")):
            if key in fields and fields.index(key) + 1 < len(fields):
                result[name] = fields[fields.index(key) + 1]
        return result
    return None


def parse_ip_addr_owner(text: str) -> str | None:
    """``ip -o addr show to ADDR`` -> the interface holding ADDR (first line), else None."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].endswith(":"):
            return fields[1].split("@", 1)[0]
    return None


def port_summary(facts: dict) -> list[str]:
    """``ibdev2netdev``-style one-liners for logs and reports."""
    lines = []
    for dev in facts.get("devices", []):
        for port in dev["ports"]:
            lines.append(
                f"{dev['name']} port {port['port']} ==> {port.get('netdev') or '-'} "
                f"({port['state']}, {port['link_layer']}, gid_index={port.get('roce_v2_ipv4_gid_index')})"
            )
    return lines
