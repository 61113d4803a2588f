#!/usr/bin/python
# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: wait_for_inference
short_description: Wait until an inference replica serves, phase by phase
version_added: "0.1.0"
description:
  - Runs on a rank host of a replica and waits, phase by phase, each phase under its own timeout,
    until the replica answers a real completion.
  - "Phases: V(alive) (this rank's systemd unit or container runs), V(ready_line) (the engine's ready
    line is in the log of the current run; head only), V(health) (C(GET /health) answers 200),
    V(models) (C(GET /v1/models) lists the served model), V(completion) (one completion of 1 token)."
  - The rank is watched during every phase. When it stops or restarts, the wait fails at once naming
    the phase it was in. On failure the result carries the last log lines of this rank.
  - The API key is sent in an C(Authorization) header and never returned.
  - In check mode nothing is probed (a no-op waiter reports the phases that would run).
author:
  - inferops maintainers (@inferops)
options:
  engine:
    description: Engine of the replica; selects the ready line.
    type: str
    choices: [vllm, sglang]
    required: true
  runtime:
    description: How the rank runs (the node spec's C(inferops_node.runtime.kind)).
    type: str
    choices: [systemd, docker, slurm]
    required: true
  unit:
    description: Systemd unit of the rank (C(inferops_node.runtime.unit)); required with O(runtime=systemd).
    type: str
  container:
    description: Container of the rank (C(inferops_node.runtime.container)); required with O(runtime=docker).
    type: str
  job_id:
    description:
      - Slurm job of the replica (O(runtime=slurm)); the rank is alive while C(squeue) shows the job RUNNING.
    type: str
  log_files:
    description:
      - With O(runtime=slurm), the rank's output files on the shared filesystem (the job's C(%x_%j_node0.out)
        and C(.err)), read for the ready line and shown on failure.
    type: list
    elements: path
    default: []
  is_head:
    description: Whether this rank is the replica's head (only the head's log holds the ready line).
    type: bool
    default: true
  api_url:
    description: Base URL of the replica's API (the head), for example C(http://10.0.0.1:8000).
    type: str
    required: true
  served_model_name:
    description: Model name that C(/v1/models) must list and the completion uses.
    type: str
    required: true
  api_key:
    description: API key of the server, sent in the C(Authorization) header as a bearer token.
    type: str
    default: ""
  phases:
    description:
      - Phases to run (always in the canonical order).
      - V(ready_line) is skipped on followers (O(is_head=false)), whose V(health) phase then also gets
        the V(ready_line) timeout, since they wait out the head's start-up there.
    type: list
    elements: str
    default: [alive, ready_line, health, models, completion]
  timeouts:
    description: Seconds per phase, keyed by phase name; missing phases use O(default_timeout).
    type: dict
    default: {}
  default_timeout:
    description: Timeout of a phase not named in O(timeouts).
    type: int
    default: 300
  interval:
    description: Seconds between two probes.
    type: float
    default: 2.0
  request_timeout:
    description: Timeout of one HTTP request.
    type: int
    default: 30
  log_lines:
    description: Number of log lines of this rank returned (and shown on failure).
    type: int
    default: 40
  host_label:
    description: Name of this rank in messages (the inventory hostname); defaults to the node's hostname.
    type: str
  validate_certs:
    description: Verify the API's TLS certificate (HTTPS endpoints).
    type: bool
    default: true
  ca_path:
    description: CA bundle to verify the API's certificate with.
    type: path
extends_documentation_fragment:
  - inferops.cluster.attributes
  - inferops.cluster.attributes.read_only
attributes:
  check_mode:
    details: Nothing is probed in check mode; the phases are reported as skipped.
notes:
  - Collect the logs of every rank of the replica in the playbook when this fails (role
    P(inferops.cluster.inference_server#role) does, and fails naming the phase and host).
"""

EXAMPLES = r"""
- name: Wait for the replica to serve
  inferops.cluster.wait_for_inference:
    engine: "{{ inferops_node.engine }}"
    runtime: "{{ inferops_node.runtime.kind }}"
    unit: "{{ inferops_node.runtime.unit }}"
    container: "{{ inferops_node.runtime.container }}"
    is_head: "{{ inferops_node.is_head }}"
    api_url: "{{ inferops_node.api_url }}"
    served_model_name: "{{ inferops_node.served_model_name }}"
    api_key: "{{ inferops_api_key | default('') }}"
    host_label: "{{ inventory_hostname }}"
    timeouts:
      alive: 60
      ready_line: 600
      health: 60
      models: 60
      completion: 120
"""

RETURN = r"""
phases:
  description: One entry per phase run, in order.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "alive", "ok": true, "seconds": 0.0, "attempts": 1, "detail": "running (active/running)"}]
seconds:
  description: Seconds the wait took.
  returned: always
  type: float
  sample: 71.4
failed_phase:
  description: The phase that failed (null when ready).
  returned: always
  type: str
  sample: completion
ready_line:
  description: The engine's ready line found in the log (head only).
  returned: when found
  type: str
  sample: "INFO:     Application startup complete."
time_to_ready:
  description: Seconds from the start of the head's rank to the engine's ready line (head only).
  returned: when the ready line was found and both carry timestamps
  type: float
  sample: 78.4
rank:
  description: State of this rank at the end (running, status, instance, restarts, started).
  returned: always
  type: dict
  sample: {"running": true, "status": "active/running", "instance": "8c1f...", "restarts": 0}
log_tail:
  description: Last O(log_lines) log lines of this rank's current run.
  returned: always
  type: list
  elements: str
"""

import json
import socket
from typing import Any
from urllib.error import HTTPError, URLError

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.inferops.cluster.plugins.module_utils._readiness import (
    PHASES,
    AliveWatch,
    completion_probe,
    docker_rank_state,
    failure_message,
    get_waiter,
    health_probe,
    models_probe,
    parse_systemctl_show,
    read_text,
    ready_line_probe,
    select_phases,
    slurm_rank_state,
    systemd_rank_state,
    tail,
    time_to_ready,
)

SYSTEMD_PROPS = "ActiveState,SubState,InvocationID,NRestarts,ExecMainStartTimestamp,Result"


class Rank:
    """This host's rank: its state and its log, through systemctl/journalctl or docker."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.runtime = module.params["runtime"]
        self.unit = module.params["unit"]
        self.container = module.params["container"]
        self.job_id = module.params["job_id"]
        self.log_files = module.params["log_files"]
        self.state: dict[str, Any] = {}

    def _run(self, argv: list[str]) -> tuple[int, str, str]:
        return self.module.run_command(argv, check_rc=False)

    def rank_state(self) -> dict[str, Any]:
        if self.runtime == "slurm":
            _rc, out, _err = self._run(["squeue", "-h", "-j", str(self.job_id), "-o", "%T|%S"])
            self.state = slurm_rank_state(self.job_id, out)
        elif self.runtime == "systemd":
            rc, out, _err = self._run(["systemctl", "show", self.unit, "--timestamp=unix", "-p", SYSTEMD_PROPS])
            if rc != 0:  # systemd older than 248 has no --timestamp
                _rc, out, _err = self._run(["systemctl", "show", self.unit, "-p", SYSTEMD_PROPS])
            self.state = systemd_rank_state(parse_systemctl_show(out))
        else:
            rc, out, _err = self._run(["docker", "inspect", "--type", "container", self.container])
            self.state = docker_rank_state(out if rc == 0 else "[]")
        return self.state

    def read_log(self) -> str:
        """The log of the rank's current run only (a ready line from an earlier run must not count)."""
        if self.runtime == "slurm":  # the job's own output files: this run only
            return "".join(read_text(path) for path in self.log_files)
        if self.runtime == "systemd":
            instance = self.state.get("instance") or self.rank_state().get("instance")
            if not instance:
                argv = ["journalctl", "-u", self.unit, "-o", "short-unix", "--no-pager", "-n", "2000"]
            else:
                argv = ["journalctl", f"_SYSTEMD_INVOCATION_ID={instance}", "-o", "short-unix", "--no-pager"]
            _rc, out, _err = self._run(argv)
            return out
        argv = ["docker", "logs", "--timestamps"]
        started = self.state.get("started")
        if started:
            argv += ["--since", started]
        _rc, out, err = self._run([*argv, self.container])
        return out + err


def make_fetch(module: AnsibleModule):
    base = module.params["api_url"].rstrip("/")
    headers = {"Content-Type": "application/json"}
    if module.params["api_key"]:
        headers["Authorization"] = f"Bearer {module.params['api_key']}"

    def fetch(method: str, path: str, body: dict[str, Any] | None) -> tuple[int, str]:
        data = json.dumps(body).encode() if body is not None else None
        try:
            resp = open_url(
                base + path,
                method=method,
                data=data,
                headers=headers,
                timeout=module.params["request_timeout"],
                validate_certs=module.params["validate_certs"],
                ca_path=module.params["ca_path"],
            )
            return resp.getcode(), resp.read().decode("utf-8", "replace")
        except HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace") if exc.fp else ""
        except (URLError, TimeoutError, ConnectionError) as exc:
            raise OSError(str(getattr(exc, "reason", exc))) from None

    return fetch


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "engine": {"type": "str", "required": True, "choices": ["vllm", "sglang"]},
            "runtime": {"type": "str", "required": True, "choices": ["systemd", "docker", "slurm"]},
            "unit": {"type": "str"},
            "container": {"type": "str"},
            "job_id": {"type": "str"},
            "log_files": {"type": "list", "elements": "path", "default": []},
            "is_head": {"type": "bool", "default": True},
            "api_url": {"type": "str", "required": True},
            "served_model_name": {"type": "str", "required": True},
            "api_key": {"type": "str", "default": "", "no_log": True},
            "phases": {"type": "list", "elements": "str", "default": list(PHASES)},
            "timeouts": {"type": "dict", "default": {}},
            "default_timeout": {"type": "int", "default": 300},
            "interval": {"type": "float", "default": 2.0},
            "request_timeout": {"type": "int", "default": 30},
            "log_lines": {"type": "int", "default": 40},
            "host_label": {"type": "str"},
            "validate_certs": {"type": "bool", "default": True},
            "ca_path": {"type": "path"},
        },
        required_if=[
            ("runtime", "systemd", ("unit",)),
            ("runtime", "docker", ("container",)),
            ("runtime", "slurm", ("job_id",)),
        ],
        supports_check_mode=True,
    )
    params = module.params
    host = params["host_label"] or socket.gethostname()
    try:
        names = select_phases(params["phases"], params["is_head"])
    except ValueError as exc:
        module.fail_json(msg=f"{host}: {exc}")
    unknown = sorted(set(params["timeouts"]) - set(PHASES))
    if unknown:
        module.fail_json(msg=f"{host}: timeouts names unknown phases {unknown}; known: {list(PHASES)}")

    rank = Rank(module)
    alive = AliveWatch(rank.rank_state)
    fetch = make_fetch(module)
    probes = {
        "alive": alive,
        "ready_line": ready_line_probe(params["engine"], rank.read_log),
        "health": health_probe(fetch),
        "models": models_probe(fetch, params["served_model_name"]),
        "completion": completion_probe(fetch, params["served_model_name"]),
    }
    timeouts = {name: float(params["timeouts"].get(name, params["default_timeout"])) for name in PHASES}
    if not params["is_head"] and "ready_line" in params["phases"]:
        # a follower cannot see the head's log: it waits out the head's start-up in the health phase
        timeouts["health"] += timeouts["ready_line"]
    phases = [(name, timeouts[name], probes[name]) for name in names]
    waiter = get_waiter(phases, alive, check_mode=module.check_mode, interval=params["interval"])
    result = waiter.wait()

    out: dict[str, Any] = {"changed": False, **result.as_dict()}
    if module.check_mode:
        module.exit_json(**out, rank={}, log_tail=[])
    rank_now = rank.rank_state()
    log_tail = tail(rank.read_log(), params["log_lines"])
    out["rank"] = rank_now
    out["log_tail"] = log_tail
    for phase in result.phases:
        if phase.name == "ready_line" and phase.ok:
            out["ready_line"] = phase.detail
            out["time_to_ready"] = time_to_ready(str(rank_now.get("started", "")), phase.detail)
    if not result.ok:
        module.fail_json(msg=failure_message(host, result), **out)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
