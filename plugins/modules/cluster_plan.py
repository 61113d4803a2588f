#!/usr/bin/python
# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the cluster_plan action; the work is done on the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_plan
short_description: Compute the serving plan of a multi-node LLM cluster from the inventory and the nodes' facts
version_added: 0.1.0
description:
  - Turns the inventory (the C(inferops_*) variables of the hosts of a group) and the nodes' facts
    (C(inferops_gpu) from M(inferops.cluster.gpu_facts), C(inferops_rdma) from M(inferops.cluster.rdma_facts))
    into the plan - per host the replica, node rank, head host and address, parallelism, ports, the engine argv
    and environment.
  - Runs on the controller only and contacts no host. One call reads every host of the group, so run it once
    (C(run_once=true)); the playbooks do it in their shared plan step (C(playbooks/plan_step.yml)), which also
    gathers the facts and gives each node its own spec C(inferops_node).
  - Ranks are deterministic - pinned ranks or a pinned head first, the other hosts in natural hostname order - so
    reordering the inventory never moves a rank. They never depend on facts, so O(heads_only) can tell each node
    its head's address before any fact is gathered (rdma_facts needs it for the route to the head).
  - Bad input fails before any host is touched, with a message naming the host and the variable.
  - The API key never enters the plan - the argv carries the placeholder C(${INFEROPS_API_KEY}) and the
    environment variable names to fill are listed in C(secret_env). The plan reads whether a key is set and its
    sha256 digest (to compare keys between hosts); neither the key nor the digest is returned.
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
  facts_dir:
    description:
      - Directory of saved facts, one C(HOST.json) per host holding C(inferops_gpu) and C(inferops_rdma) as the
        fact modules return them (an C(ansible_facts) wrapper is accepted). Used instead of the facts the hosts
        hold, so a plan can be made with no connection to any node. A host without its file fails the task.
    type: path
  output:
    description:
      - Write the plan as JSON (sorted keys, indent 2) to this file on the controller; the task reports
        C(changed) when the file's content changed. Written in check mode too - a report, not a change to a node.
    type: path
  heads_only:
    description:
      - Return only each host's head address (RV(heads)) and its replica's size (RV(nnodes)), read from the
        inventory alone; facts are not read.
    type: bool
    default: false
extends_documentation_fragment:
  - inferops.cluster.attributes
  - inferops.cluster.attributes.read_only
attributes:
  check_mode:
    details: Computes only.
  idempotent:
    details: A pure computation of the inventory and the facts.
  action:
    support: full
    description: Runs on the controller.
notes:
  - Inventory variables are documented in docs/variables.md, the plan's JSON and the plan step in docs/plan.md.
"""

EXAMPLES = r"""
# What playbooks/plan_step.yml does, in short.
- name: Compute the cluster plan once, from the facts the nodes hold
  inferops.cluster.cluster_plan:
  run_once: true
  register: __plan

- name: The plan, for every host (one copy shared by all)
  ansible.builtin.set_fact:
    inferops_plan: "{{ __plan.plan }}"
  run_once: true

- name: Each node's own spec
  ansible.builtin.set_fact:
    inferops_node: "{{ inferops_plan.hosts[inventory_hostname] }}"

- name: Plan a cluster from saved facts (no node contacted) and write the plan JSON
  inferops.cluster.cluster_plan:
    facts_dir: /srv/inferops/facts
    output: /tmp/plan.json
  run_once: true
  register: __plan

- name: Each node's head address, before gathering the route to it
  inferops.cluster.cluster_plan:
    heads_only: true
  run_once: true
  register: __heads
"""

RETURN = r"""
plan:
  description: The plan - C(version), C(replicas) and C(hosts) (each host's spec, see docs/plan.md).
  returned: unless O(heads_only)
  type: dict
heads:
  description: Each host's head address, by host name.
  returned: with O(heads_only)
  type: dict
  sample: {node1: 10.0.0.1, node2: 10.0.0.1}
nnodes:
  description: Each host's number of nodes in its replica, by host name (1 = no traffic between nodes).
  returned: with O(heads_only)
  type: dict
  sample: {node1: 2, node2: 2}
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "group": {"type": "str", "default": "inferops_nodes"},
            "hosts": {"type": "list", "elements": "str"},
            "facts_dir": {"type": "path"},
            "heads_only": {"type": "bool", "default": False},
            "output": {"type": "path"},
        },
        supports_check_mode=True,
    )
    module.fail_json(msg="inferops.cluster.cluster_plan runs on the controller as an action; it cannot run on a host")


if __name__ == "__main__":
    main()
