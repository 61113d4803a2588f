#!/usr/bin/python
# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the cluster_plan action; the work is done on the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_plan
short_description: Compute the serving plan of a multi-node LLM cluster from the inventory
version_added: 0.1.0
description:
  - Turns the inventory (the C(inferops_*) variables of the hosts of a group) into per-host serving
    facts - replica, node rank, head host and address, parallelism, ports, the engine argv and environment.
  - Runs on the controller only and contacts no host. Every host of the play gets the same plan, so the
    task can run on all hosts at once.
  - Ranks are deterministic - pinned ranks or a pinned head first, the other hosts in natural hostname order - so
    reordering the inventory never moves a rank.
  - Bad input fails before any host is touched, with a message naming the host and the variable.
  - The API key never enters the plan - the argv carries the placeholder C(${INFEROPS_API_KEY}) and the
    environment variable names to fill are listed in C(secret_env).
author:
  - inferops maintainers (@inferops)
options:
  group:
    description: Inventory group whose hosts form the cluster.
    type: str
    default: inferops_nodes
  hosts:
    description: Explicit list of hosts (overrides O(group)).
    type: list
    elements: str
attributes:
  check_mode:
    support: full
    description: Computes facts only.
  diff_mode:
    support: none
    description: Nothing to diff.
  idempotent:
    support: full
    description: A pure computation of the inventory.
  action:
    support: full
    description: Runs on the controller.
notes:
  - Inventory variables are documented in docs/variables.md, the plan's JSON in docs/plan.md.
"""

EXAMPLES = r"""
- name: Compute the cluster plan
  inferops.cluster.cluster_plan:

- name: Plan a second cluster defined by another group
  inferops.cluster.cluster_plan:
    group: staging_nodes
"""

RETURN = r"""
ansible_facts:
  description: The plan.
  returned: always
  type: dict
  contains:
    inferops_node:
      description: This host's slice of the plan (replica, node_rank, head, head_address, nnodes, engine, argv, env...).
      type: dict
      returned: when the host is part of the cluster
    inferops_plan:
      description: The whole plan, C(replicas) and C(hosts).
      type: dict
      returned: always
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "group": {"type": "str", "default": "inferops_nodes"},
            "hosts": {"type": "list", "elements": "str"},
        },
        supports_check_mode=True,
    )
    module.fail_json(msg="inferops.cluster.cluster_plan runs on the controller as an action; it cannot run on a host")


if __name__ == "__main__":
    main()
