#!/usr/bin/python
# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rdma_facts
short_description: Gather RDMA (InfiniBand / RoCE) facts from sysfs
description:
  - Reads C(/sys/class/infiniband) (the source C(ibdev2netdev) and C(show_gids) read) - every
    HCA, its ports with state, physical state, link layer, the netdev of each port and the GID
    table with type (C(IB/RoCE v1), C(RoCE v2)) and the IPv4 address an IPv4-mapped GID carries,
    and per Ethernet port the index of the RoCE v2 IPv4 GID (what NCCL_IB_GID_INDEX needs).
  - With O(route_to), also the interface that carries that address, from
    C(ip route get ADDRESS) (and C(ip -o addr show to ADDRESS) when the address is local). A host name
    is resolved by the node first, as the engine will resolve it.
  - Sets the fact C(inferops_rdma). A node without HCAs gets C(present=false) and no devices.
version_added: 0.1.0
author:
  - inferops maintainers (@inferops)
options:
  sysfs_root:
    description: Directory holding the HCAs (a fixture tree in tests).
    type: path
    default: /sys/class/infiniband
  route_to:
    description: Address or host name (usually the replica head's) whose outgoing interface is reported in C(route).
    type: str
  require_active:
    description: Fail when no port is ACTIVE (for nodes that must have RDMA).
    type: bool
    default: false
extends_documentation_fragment:
  - inferops.cluster.attributes
  - inferops.cluster.attributes.read_only
"""

EXAMPLES = r"""
- name: Gather RDMA facts and the interface towards the head
  inferops.cluster.rdma_facts:
    route_to: "{{ inferops_node['head_address'] }}"

- name: Show the ports
  ansible.builtin.debug:
    msg: "{{ ansible_facts['inferops_rdma']['summary'] }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts set on the host.
  returned: always
  type: dict
  contains:
    inferops_rdma:
      description:
        - C(present), C(devices) (name, ports (port, state, phys_state, link_layer, netdev,
          roce_v2_ipv4_gid_index, gids (index, gid, ipv4, type, netdev))), C(active_ports),
          C(summary) (ibdev2netdev-style lines) and C(route) (dst, ifname, src, local) when
          O(route_to) is given.
      type: dict
      returned: always
      sample:
        present: true
        active_ports: 9
        route: {dst: 10.63.65.207, ifname: xgbe0, src: 10.63.65.208, local: false}
"""

import ipaddress
import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.cluster.plugins.module_utils._rdma import (
    parse_ip_addr_owner,
    parse_ip_route_get,
    port_summary,
    read_sysfs,
)


def route_address(module: AnsibleModule, target: str) -> str:
    """`ip route get` takes an address: resolve a host name with the node's own resolver."""
    try:
        return str(ipaddress.ip_address(target))
    except ValueError:
        pass
    try:
        return socket.getaddrinfo(target, None, proto=socket.IPPROTO_TCP)[0][4][0]
    except (OSError, IndexError) as exc:
        module.fail_json(msg=f"route_to {target!r}: this node cannot resolve it ({exc}); set inferops_address")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sysfs_root": {"type": "path", "default": "/sys/class/infiniband"},
            "route_to": {"type": "str"},
            "require_active": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    facts = read_sysfs(module.params["sysfs_root"])
    facts["active_ports"] = sum(
        1 for dev in facts["devices"] for port in dev["ports"] if port["state"].upper() == "ACTIVE"
    )
    facts["summary"] = port_summary(facts)
    facts["route"] = None
    target = module.params["route_to"]
    if target:
        ip = module.get_bin_path("ip", required=True, opt_dirs=["/usr/sbin", "/sbin"])
        target = route_address(module, target)
        rc, out, err = module.run_command([ip, "route", "get", target])
        if rc != 0:
            module.fail_json(msg=f"ip route get {target} failed: {err.strip() or out.strip()}")
        route = parse_ip_route_get(out)
        if route is None:
            module.fail_json(msg=f"could not parse 'ip route get {target}': {out!r}")
        if route["local"] or route["ifname"] == "lo":
            # The address is this node's own: report the interface that holds it, not lo.
            rc, out, _err = module.run_command([ip, "-o", "addr", "show", "to", target])
            owner = parse_ip_addr_owner(out) if rc == 0 else None
            if owner:
                route["ifname"] = owner
        facts["route"] = route
    if module.params["require_active"] and not facts["active_ports"]:
        module.fail_json(
            msg=f"no ACTIVE RDMA port under {module.params['sysfs_root']}: "
            + ("; ".join(facts["summary"]) or "no HCA"),
            ansible_facts={"inferops_rdma": facts},
        )
    module.exit_json(changed=False, ansible_facts={"inferops_rdma": facts})


if __name__ == "__main__":
    main()
