# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side: compute the cluster plan from the inventory; no host is contacted."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.inferops.cluster.plugins.module_utils._plan import PlanError, build_plan
from ansible_collections.inferops.cluster.plugins.module_utils._spec import SPEC_VARIABLES

# Variables the plan reads from each host; everything else in hostvars is left alone (and never templated).
PLAN_VARIABLES = (
    "ansible_host",
    "inferops_address",
    "inferops_replica",
    "inferops_node_rank",
    "inferops_head",
    "inferops_engine",
    "inferops_engine_mode",
    "inferops_device",
    "inferops_model_path",
    "inferops_served_model_name",
    "inferops_gpus_per_node",
    "inferops_tp",
    "inferops_pp",
    "inferops_dp",
    "inferops_ep",
    "inferops_engine_args",
    "inferops_env",
    "inferops_nccl_env",
    "inferops_socket_ifname",
    "inferops_api_host",
    "inferops_api_port",
    "inferops_dist_init_port",
    "inferops_master_port",
    "inferops_ray_port",
    "inferops_router_port",
    "inferops_router_host",
    "inferops_docker_bridge_networks",
    "inferops_rdma",
    "inferops_gpu",
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("group", "hosts"))
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        hosts = args.get("hosts")
        if hosts is None:
            group = args.get("group", "inferops_nodes")
            hosts = task_vars.get("groups", {}).get(group)
            if not hosts:
                raise AnsibleActionFail(f"inventory: the group {group!r} has no hosts (or does not exist)")
        hostvars = task_vars["hostvars"]
        collected: dict[str, dict[str, Any]] = {}
        for host in hosts:
            if host not in hostvars:
                raise AnsibleActionFail(f"inventory: host {host!r} is not in the inventory")
            hv = hostvars[host]
            values = {name: hv[name] for name in (*PLAN_VARIABLES, *SPEC_VARIABLES) if name in hv}
            values["inferops_api_key"] = bool(hv.get("inferops_api_key")) if "inferops_api_key" in hv else False
            facts = hv.get("ansible_facts") or {}
            values["ansible_facts"] = {k: facts[k] for k in ("inferops_rdma", "inferops_gpu") if k in facts}
            collected[host] = values
        try:
            plan = build_plan(collected)
        except PlanError as exc:
            raise AnsibleActionFail(f"cluster plan: {exc}") from None
        me = task_vars.get("inventory_hostname")
        facts_out: dict[str, Any] = {"inferops_plan": plan}
        if me in plan["hosts"]:
            facts_out["inferops_node"] = plan["hosts"][me]
        result.update(changed=False, ansible_facts=facts_out)
        return result
