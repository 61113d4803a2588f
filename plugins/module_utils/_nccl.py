# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Derive the NCCL / gloo environment of a node from its RDMA facts and socket interface.

Rules (taken from the 2 x H20 RoCE nodes of seed 003, where the operators set
NCCL_IB_HCA=mlx5_1:1,...,mlx5_8:1, NCCL_IB_GID_INDEX=3, NCCL_SOCKET_IFNAME=GLOO_SOCKET_IFNAME=xgbe0):

* NCCL_IB_HCA: every ACTIVE port as ``dev:port``; the HCA whose netdev is the socket interface
  (the one that carries the head address, so the bootstrap/TCP traffic) is left out when other
  active HCAs exist.
* NCCL_IB_GID_INDEX: on Ethernet (RoCE) ports, the index of the RoCE v2 GID that carries an IPv4
  address; every selected HCA must agree, else the inventory has to pin it.
* NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME: the interface of ``ip route get HEAD``.
  GLOO_SOCKET_IFNAME is always one real interface name: gloo does not understand NCCL's
  ``^``/``=``/comma syntax, so such a value is rejected.
* NCCL_IB_DISABLE: ``0`` when RDMA is usable, ``1`` when not (device cuda).
* device cpu: only GLOO_SOCKET_IFNAME is derived.
* ``overrides`` (the inventory's ``inferops_nccl_env``) win over anything derived; a derivation
  error on a variable the inventory pins is not raised.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible_collections.inferops.cluster.plugins.module_utils._rdma import natural_key

DEVICES = ("cuda", "cpu")

# A Linux interface name: 1-15 characters, no '/', no whitespace; we also refuse NCCL's
# selector syntax (^ exclude, = exact match, comma lists) which gloo would take literally.
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.@:-]{1,15}$")


class NcclEnvError(ValueError):
    """The environment cannot be derived; the message says which variable to pin."""


def validate_gloo_ifname(value: str) -> str:
    """Return ``value`` if it is one plain interface name, else raise NcclEnvError."""
    if not isinstance(value, str) or not value:
        raise NcclEnvError("GLOO_SOCKET_IFNAME must be one interface name, got an empty value")
    if value[0] in "^=" or "," in value:
        raise NcclEnvError(
            f"GLOO_SOCKET_IFNAME={value!r} uses NCCL's selector syntax (^, = or a comma list); "
            "gloo needs exactly one real interface name such as 'xgbe0'"
        )
    if not _IFNAME_RE.match(value):
        raise NcclEnvError(f"GLOO_SOCKET_IFNAME={value!r} is not a valid interface name")
    return value


def active_ports(rdma: dict | None) -> list[tuple[str, dict]]:
    """(device name, port) for every ACTIVE port, in natural device order."""
    if not rdma:
        return []
    result = []
    for dev in sorted(rdma.get("devices") or [], key=lambda d: natural_key(d["name"])):
        for port in sorted(dev.get("ports") or [], key=lambda p: p["port"]):
            if str(port.get("state", "")).upper() == "ACTIVE":
                result.append((dev["name"], port))
    return result


def select_hcas(rdma: dict | None, socket_ifname: str | None) -> list[tuple[str, dict]]:
    """Active ports for NCCL, without the socket interface's HCA when others are active."""
    ports = active_ports(rdma)
    if socket_ifname:
        others = [(name, port) for name, port in ports if port.get("netdev") != socket_ifname]
        if others:
            return others
    return ports


def gid_index(selected: list[tuple[str, dict]]) -> int | None:
    """The common RoCE v2 IPv4 GID index of the selected Ethernet ports (None: no RoCE port)."""
    indexes: dict[str, int | None] = {}
    for name, port in selected:
        if port.get("link_layer") != "Ethernet":
            continue
        index = port.get("roce_v2_ipv4_gid_index")
        if index is None:
            candidates = [g["index"] for g in port.get("gids", []) if g.get("type") == "RoCE v2" and g.get("ipv4")]
            index = min(candidates) if candidates else None
        indexes[f"{name}:{port['port']}"] = index
    if not indexes:
        return None
    missing = sorted(k for k, v in indexes.items() if v is None)
    if missing:
        raise NcclEnvError(
            f"no RoCE v2 GID with an IPv4 address on {', '.join(missing)}; give the port an IPv4 address "
            "or pin NCCL_IB_GID_INDEX in inferops_nccl_env"
        )
    values = set(indexes.values())
    if len(values) > 1:
        detail = ", ".join(f"{k}={v}" for k, v in sorted(indexes.items(), key=lambda kv: natural_key(kv[0])))
        raise NcclEnvError(
            f"the HCAs disagree on the RoCE v2 IPv4 GID index ({detail}); NCCL takes one "
            "NCCL_IB_GID_INDEX: pin it (or NCCL_IB_HCA) in inferops_nccl_env"
        )
    return values.pop()


def derive_nccl_env(
    rdma: dict | None,
    socket_ifname: str | None,
    device: str,
    overrides: Mapping[str, str] | None,
) -> dict[str, str]:
    """The NCCL/gloo environment for one node (see the module docstring for the rules)."""
    if device not in DEVICES:
        raise NcclEnvError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    pins = {str(k): str(v) for k, v in (overrides or {}).items()}
    if not socket_ifname and rdma and isinstance(rdma.get("route"), dict):
        socket_ifname = rdma["route"].get("ifname")
    if socket_ifname == "lo":
        socket_ifname = None

    env: dict[str, str] = {}
    if socket_ifname:
        env["GLOO_SOCKET_IFNAME"] = socket_ifname
    if device == "cuda":
        if socket_ifname:
            env["NCCL_SOCKET_IFNAME"] = socket_ifname
        selected = select_hcas(rdma, socket_ifname)
        if selected:
            env["NCCL_IB_DISABLE"] = "0"
            env["NCCL_IB_HCA"] = ",".join(f"{name}:{port['port']}" for name, port in selected)
            try:
                index = gid_index(selected)
            except NcclEnvError:
                if "NCCL_IB_GID_INDEX" not in pins and "NCCL_IB_HCA" not in pins:
                    raise
                index = None
            if index is not None:
                env["NCCL_IB_GID_INDEX"] = str(index)
        else:
            env["NCCL_IB_DISABLE"] = "1"
    env.update(pins)
    if "GLOO_SOCKET_IFNAME" in env:
        validate_gloo_ifname(env["GLOO_SOCKET_IFNAME"])
    return dict(sorted(env.items()))
