# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side: compute the cluster plan from the inventory and the nodes' facts; no host is contacted.

Run it once (run_once: true, as playbooks/plan_step.yml does): it reads every host of the group itself, so one
call costs O(nodes). It returns the plan as ``plan`` (not as facts, so no fact cache holds a copy per host).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.inferops.cluster.plugins.module_utils._firewall import FIREWALL_VARIABLES, add_firewall
from ansible_collections.inferops.cluster.plugins.module_utils._plan import (
    PLAN_FACTS,
    PLAN_VARIABLES,
    PlanError,
    build_plan,
    head_addresses,
    replica_sizes,
)
from ansible_collections.inferops.cluster.plugins.module_utils._secrets import header_value_problem
from ansible_collections.inferops.cluster.plugins.module_utils._spec import SPEC_VARIABLES
from ansible_collections.inferops.cluster.plugins.module_utils._tls import TLS_VARIABLES


def read_saved_facts(facts_dir: str, host: str) -> dict[str, Any]:
    """FACTS_DIR/HOST.json: {"inferops_gpu": ..., "inferops_rdma": ...} as the modules return them (an
    ``ansible_facts`` wrapper is accepted too); only PLAN_FACTS are kept."""
    path = os.path.join(facts_dir, f"{host}.json")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise AnsibleActionFail(f"plan_facts_dir: no saved facts for host {host!r} ({path})") from None
    except (OSError, ValueError) as exc:
        raise AnsibleActionFail(f"plan_facts_dir: cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise AnsibleActionFail(f"plan_facts_dir: {path} must hold a JSON object")
    facts = data.get("ansible_facts", data)
    return {name: facts[name] for name in PLAN_FACTS if name in facts}


def write_plan(path: str, plan: dict[str, Any]) -> bool:
    """The plan as JSON at PATH on the controller; True when the file changed."""
    text = json.dumps(plan, indent=2, sort_keys=True) + "\n"
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise AnsibleActionFail(f"plan_output: cannot read {path}: {exc}") from None
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, 0o644)
    except OSError as exc:
        raise AnsibleActionFail(f"plan_output: cannot write {path}: {exc}") from None
    return True


def resolve(name: str) -> list[str]:
    """NAME's addresses as the controller resolves them (the firewall's sources); [] when it does not resolve."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return sorted({info[4][0] for info in infos})


def api_key_digest(key: Any) -> str:
    """sha256 hex of the key ("" when unset): lets the plan compare keys without holding one."""
    return hashlib.sha256(to_text(key).encode("utf-8")).hexdigest() if key else ""


def secret_problems(host: str, values: dict[str, Any]) -> None:
    """Refuse, before any host changes, a key or token that cannot reach the engine and its clients byte for
    byte: they travel in HTTP headers (Authorization: Bearer ...). The message names the variable, never the value."""
    for variable in ("inferops_api_key", "inferops_hf_token"):
        problem = header_value_problem(variable, values.get(variable))
        if problem:
            raise PlanError(host, variable, problem.removeprefix(f"{variable} "))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("group", "hosts", "facts_dir", "heads_only", "output"))
    _requires_connection = False

    def _outside_vars(
        self, hostvars: Any, collected: dict[str, dict[str, Any]], monitoring_group: list[str]
    ) -> dict[str, dict[str, Any]]:
        """Address and port variables of the router / monitoring hosts that are not serving nodes."""
        named = set(monitoring_group)
        named.update(str(v["inferops_router_host"]) for v in collected.values() if v.get("inferops_router_host"))
        outside = {}
        for host in sorted(named - set(collected)):
            if host not in hostvars:
                continue  # the plan names it in its error
            raw = hostvars.raw_get(host)
            templar = self._templar.copy_with_new_env(available_variables=raw)
            names = [n for n in (*PLAN_VARIABLES, "ansible_host") if n not in TLS_VARIABLES]  # never the PEM text
            outside[host] = {name: templar.template(raw[name]) for name in names if name in raw}
        return outside

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
        facts_dir = os.path.expanduser(args["facts_dir"]) if args.get("facts_dir") else None
        heads_only = boolean(args.get("heads_only", False), strict=True)
        hostvars = task_vars["hostvars"]
        collected: dict[str, dict[str, Any]] = {}
        for host in hosts:
            if host not in hostvars:
                raise AnsibleActionFail(f"inventory: host {host!r} is not in the inventory")
            # One untemplated read per host; then template only the variables the plan reads (never every fact).
            raw = hostvars.raw_get(host)
            templar = self._templar.copy_with_new_env(available_variables=raw)
            names = [name for name in PLAN_VARIABLES if name in raw and name not in TLS_VARIABLES]
            if heads_only:
                collected[host] = {name: templar.template(raw[name]) for name in names}
                continue
            values = {
                name: templar.template(raw[name])
                for name in (*names, *SPEC_VARIABLES, *FIREWALL_VARIABLES)
                if name in raw
            }
            key = templar.template(raw["inferops_api_key"]) if "inferops_api_key" in raw else None
            try:
                secret_problems(host, {"inferops_api_key": key, "inferops_hf_token": values.get("inferops_hf_token")})
            except PlanError as exc:
                raise AnsibleActionFail(f"cluster plan: {exc}") from None
            # TLS: whether each is set (the key is a secret; the PEM texts are the roles' business)
            values.update((name, bool(templar.template(raw[name]))) for name in TLS_VARIABLES if name in raw)
            values["inferops_api_key"] = bool(key)
            values["inferops_api_key_digest"] = api_key_digest(key)
            if "inferops_hf_token" in values:  # the plan reads only whether it is set: never hand it the token
                values["inferops_hf_token"] = bool(values["inferops_hf_token"])
            if facts_dir:
                values["ansible_facts"] = read_saved_facts(facts_dir, host)
            else:
                facts = raw.get("ansible_facts") or {}
                values["ansible_facts"] = {name: facts[name] for name in PLAN_FACTS if name in facts}
            collected[host] = values
        try:
            if heads_only:
                result.update(changed=False, heads=head_addresses(collected), nnodes=replica_sizes(collected))
            else:
                # inferops_router_host may name any host of the inventory, not only a serving node
                all_hosts = [*task_vars.get("groups", {}).get("all", []), *hosts]
                monitoring_group = task_vars.get("groups", {}).get("inferops_monitoring") or []
                # router / monitoring hosts outside the serving group: their ports and addresses (firewall sources)
                outside = self._outside_vars(hostvars, collected, monitoring_group)
                plan = build_plan(collected, all_hosts, monitoring_group, outside)
                if plan.get("slurm") is None:
                    add_firewall(plan, collected, outside, resolve)
                else:  # rank slots, no addresses: Slurm's nodes are not Ansible's to firewall (docs/slurm.md)
                    for node in plan["hosts"].values():
                        node["firewall"] = []
                result.update(changed=False, plan=plan)
        except PlanError as exc:
            raise AnsibleActionFail(f"cluster plan: {exc}") from None
        if args.get("output") and not heads_only:
            # A report on the controller, written in check mode too: no node changes.
            result["changed"] = write_plan(os.path.expanduser(args["output"]), result["plan"])
        return result
