# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``nccl_env``: the NCCL / gloo environment of a node from its RDMA facts."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.cluster.plugins.module_utils._nccl import NcclEnvError, derive_nccl_env

DOCUMENTATION = r"""
name: nccl_env
short_description: NCCL / gloo environment derived from a node's RDMA facts
version_added: 0.1.0
author: inferops maintainers (@inferops)
description:
  - NCCL_IB_HCA (active ports, without the socket interface's HCA when others are active),
    NCCL_IB_GID_INDEX (RoCE v2 IPv4 GID, Ethernet link layer only), NCCL_SOCKET_IFNAME and
    GLOO_SOCKET_IFNAME (one real interface), NCCL_IB_DISABLE; only GLOO_SOCKET_IFNAME on cpu.
    Pinned values win.
options:
  _input:
    description: The C(inferops_rdma) fact (or null).
    type: dict
    required: true
  socket_ifname:
    description: Interface that carries the head address; null uses the fact's C(route.ifname).
    type: str
  device:
    description: V(cuda) or V(cpu).
    type: str
    default: cuda
  overrides:
    description: Pinned variables (C(inferops_nccl_env)).
    type: dict
"""

EXAMPLES = r"""
env: "{{ ansible_facts['inferops_rdma'] | inferops.cluster.nccl_env(device='cuda', overrides=inferops_nccl_env) }}"
"""

RETURN = r"""
_value:
  description: Environment variable names to values.
  type: dict
"""


def nccl_env(rdma, socket_ifname=None, device="cuda", overrides=None):
    try:
        return derive_nccl_env(rdma, socket_ifname, device, overrides)
    except NcclEnvError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {"nccl_env": nccl_env}
