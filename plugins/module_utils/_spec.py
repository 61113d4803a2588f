# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node spec's runtime: how one node runs its engine, computed once with the plan.

``runtime_spec(node_vars, node_plan)`` turns a host's variables and its planned node (argv, env,
mode, device ...) into the ``runtime`` section every consumer reads (the serving role, the day-2
playbooks, the waits): names of the unit or container, venv or image, the model directory actually
served, container devices, capabilities, ulimits, shm, mounts and the RDMA wiring. Pure: no Ansible
import, no host contacted. docs/plan.md ("Node spec") describes every field.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.inferops.cluster.plugins.module_utils._argv import normalise_key
from ansible_collections.inferops.cluster.plugins.module_utils._slurm import SLURM_VARIABLES

# Inventory variables the runtime spec reads (the plan reads the rest: _plan / cluster_plan).
SPEC_VARIABLES = (
    "inferops_runtime",
    "inferops_engine_image",
    "inferops_engine_package",
    "inferops_engine_version",
    "inferops_convert_fp8_to_bf16",
    "inferops_converted_model_path",
    "inference_server_unit",
    "inference_server_container",
    "inference_server_venv",
    "inference_server_image_pull",
    "inference_server_shm_size",
    "inference_server_ulimits",
    "inference_server_privileged",
    "inference_server_rdma_devices",
    "inference_server_config_dir",
    # a secret: only whether it is set is read (HF_TOKEN in secret_env), never its value
    "inferops_hf_token",
    # the slurm runtime's job (plugins/module_utils/_slurm.py)
    *SLURM_VARIABLES,
)

RUNTIMES = ("docker", "systemd", "slurm")  # slurm: the replica as one sbatch job (_slurm.py)
DEFAULT_RUNTIME = "docker"  # the seeds run Docker; the lab sets systemd explicitly
PULL_POLICIES = ("missing", "always", "never")
DEFAULTS: dict[str, Any] = {
    "inference_server_unit": "inferops-engine",
    "inference_server_container": "inferops-engine",
    "inference_server_venv": "/opt/inferops/engine-venv",
    "inference_server_image_pull": "missing",
    "inference_server_shm_size": "32g",
    "inference_server_ulimits": ["memlock:-1:-1", "nofile:1048576:1048576", "stack:67108864:67108864"],
    "inference_server_privileged": False,
    "inference_server_rdma_devices": ["/dev/infiniband"],
    "inference_server_config_dir": "/etc/inferops",
}
GPU_REQUEST = {"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}

# Engine-arg keys (normalised) whose paths the engine writes: mounted read-write.
WRITABLE_ARG_KEYS = frozenset({"download-dir", "cache-dir", "compile-cache-dir", "torch-compile-cache-dir"})
# Environment variables naming cache directories the engine writes (compile caches, HF cache).
CACHE_ENV = (
    "HF_HOME",
    "HF_HUB_CACHE",
    "TORCHINDUCTOR_CACHE_DIR",
    "TRITON_CACHE_DIR",
    "VLLM_CACHE_ROOT",
    "SGLANG_CACHE_DIR",
    "FLASHINFER_WORKSPACE_BASE",
    "XDG_CACHE_HOME",
)


# Engine-arg keys (normalised; nested JSON keys joined with '.') whose value the engine may fetch from the Hugging
# Face Hub when it is a repository id rather than a path: tokenizer, config, draft model, LoRA adapters.
HUB_ARG_KEYS = frozenset(
    {
        "tokenizer",  # vLLM
        "hf-config-path",  # vLLM
        "speculative-config.model",  # vLLM
        "lora-modules",  # vLLM, name=repo
        "tokenizer-path",  # sglang
        "speculative-draft-model-path",  # sglang
        "lora-paths",  # sglang, name=repo or repo
    }
)
HF_TOKEN_ENV = "HF_TOKEN"
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


def _fail(host: str, variable: str, message: str) -> None:
    # PlanError lives in _plan, which imports this module: import it when needed.
    from ansible_collections.inferops.cluster.plugins.module_utils._plan import PlanError

    raise PlanError(host, variable, message)


def _get(node_vars: Mapping[str, Any], name: str) -> Any:
    value = node_vars.get(name)
    return DEFAULTS.get(name) if value is None else value


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "yes", "1", "on")


def _abs_path(host: str, variable: str, value: Any) -> str:
    text = str(value).strip()
    if not text.startswith("/"):
        _fail(host, variable, f"must be an absolute path, got {value!r}")
    return posixpath.normpath(text)


def served_model_vars(node_vars: Mapping[str, Any]) -> Mapping[str, Any]:
    """The host's variables with ``inferops_model_path`` set to the directory actually served.

    With ``inferops_convert_fp8_to_bf16`` that is the BF16 copy (``inferops_converted_model_path``,
    default ``<inferops_model_path>-bf16``), so every phase plans the same argv whether or not the
    conversion phase ran in the same ansible-playbook run.
    """
    source = node_vars.get("inferops_model_path")
    if not source or not _truthy(node_vars.get("inferops_convert_fp8_to_bf16", False)):
        return node_vars
    return {**node_vars, "inferops_model_path": _converted_path(node_vars, str(source))}


def _converted_path(node_vars: Mapping[str, Any], source: str) -> str:
    explicit = node_vars.get("inferops_converted_model_path")
    return str(explicit) if explicit else source.rstrip("/") + "-bf16"


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _arg_paths(key: str, value: Any) -> list[tuple[str, str]]:
    """(key, absolute path) for every path in one engine argument, nested JSON and ``name=/path`` included."""
    found: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        for sub_key, sub in value.items():
            found += _arg_paths(f"{key}.{sub_key}", sub)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found += _arg_paths(key, item)
    elif isinstance(value, str):
        text = value.strip()
        if "=" in text and not text.startswith("/"):
            text = text.split("=", 1)[1]  # --lora-modules name=/path
        if text.startswith("/") and "\n" not in text:
            found.append((key, posixpath.normpath(text)))
    return found


def _hub_values(key: str, value: Any) -> list[tuple[str, str]]:
    """(key, string) for every string of one engine argument, nested JSON (a dict or a JSON string) included."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            return [(key, value)]
    if isinstance(value, Mapping):
        return [pair for sub_key, sub in value.items() for pair in _hub_values(f"{key}.{normalise_key(sub_key)}", sub)]
    if isinstance(value, (list, tuple)):
        return [pair for item in value for pair in _hub_values(key, item)]
    return [(key, value)] if isinstance(value, str) else []


def hub_repositories(engine_args: Mapping[str, Any] | None) -> list[str]:
    """Hub repository ids the engine args make the engine fetch (``tokenizer: org/name``); paths are not."""
    found: list[str] = []
    for key, value in (engine_args or {}).items():
        for where, text in _hub_values(normalise_key(key), value):
            if where not in HUB_ARG_KEYS:
                continue
            text = text.strip()
            if "=" in text and "lora" in where:
                text = text.split("=", 1)[1]  # name=repo
            if _REPO_ID.fullmatch(text) and text not in found:
                found.append(text)
    return found


def hub_secret_env(node_vars: Mapping[str, Any], engine_args: Mapping[str, Any] | None) -> list[str]:
    """``["HF_TOKEN"]`` when inferops_hf_token is set and the engine fetches from the Hub (else ``[]``).

    Only whether the token is set is read; the role writes its value into the 0600 secrets file.
    """
    token = node_vars.get("inferops_hf_token")
    return [HF_TOKEN_ENV] if token and hub_repositories(engine_args) else []


def _mounts(node_vars: Mapping[str, Any], node_plan: Mapping[str, Any], model_dir: str) -> list[dict[str, Any]]:
    """The model read-only, then every other path the engine args and cache variables point at."""
    mounts = [{"source": model_dir, "target": model_dir, "read_only": True, "from": "model"}]
    args = node_vars.get("inferops_engine_args") or {}
    candidates: list[tuple[str, str, bool]] = []
    if isinstance(args, Mapping):
        for key, value in args.items():
            norm = normalise_key(key)
            for where, path in _arg_paths(norm, value):
                leaf = where.rsplit(".", 1)[-1].replace("_", "-")
                candidates.append((f"inferops_engine_args.{where}", path, leaf not in WRITABLE_ARG_KEYS))
    env = node_plan.get("env") or {}
    for name in CACHE_ENV:
        value = str(env.get(name, "")).strip()
        if value.startswith("/"):
            candidates.append((f"env.{name}", posixpath.normpath(value), False))
    tls = node_plan.get("tls") or {}
    if tls.get("serves"):  # the certificate and key the head serves TLS with (written by the serving role)
        candidates.append(("tls", posixpath.dirname(str(tls["cert_file"])), True))
    for origin, path, read_only in candidates:
        if any(_under(path, m["source"]) for m in mounts):
            continue  # inside the model directory or a path already mounted
        mounts.append({"source": path, "target": path, "read_only": read_only, "from": origin})
    return mounts


def _rdma(node_vars: Mapping[str, Any], node_plan: Mapping[str, Any]) -> dict[str, Any]:
    env = node_plan.get("env") or {}
    pins = node_vars.get("inferops_nccl_env") or {}
    hca = str(env.get("NCCL_IB_HCA", "")).strip()
    enabled = node_plan.get("device") == "cuda" and bool(hca) and str(env.get("NCCL_IB_DISABLE", "0")) != "1"
    if not enabled:
        source = "none"
    elif "NCCL_IB_HCA" in pins:
        source = "inventory"
    else:
        source = "facts"
    return {
        "enabled": enabled,
        "hcas": [h for h in hca.split(",") if h] if enabled else [],
        "gid_index": env.get("NCCL_IB_GID_INDEX") if enabled else None,
        "source": source,
    }


def _rdma_facts(node_vars: Mapping[str, Any]) -> Mapping[str, Any] | None:
    facts = node_vars.get("ansible_facts") or {}
    return facts.get("inferops_rdma") or node_vars.get("inferops_rdma")


def spec_warnings(node_vars: Mapping[str, Any], node_plan: Mapping[str, Any]) -> list[str]:
    """What the plan accepts but a person must see: a GPU node of a multi-node replica on TCP."""
    rdma = (node_plan.get("runtime") or {}).get("rdma") or {}
    pins = node_vars.get("inferops_nccl_env") or {}
    if (node_plan.get("runtime") or {}).get("kind") == "slurm":
        return []  # resolved inside the job, on each node, from sysfs (_slurm_launch)
    if node_plan.get("device") != "cuda" or node_plan.get("nnodes", 1) < 2 or rdma.get("enabled"):
        return []  # not a GPU node, one node (NVLink/P2P only), or RDMA wired
    if "NCCL_IB_DISABLE" in pins:
        return []  # TCP chosen on purpose in inferops_nccl_env
    why = (
        "its RDMA facts show no ACTIVE HCA port"
        if _rdma_facts(node_vars)
        else "no RDMA facts (rdma_facts not gathered)"
    )
    return [
        f"NCCL between nodes over TCP sockets (NCCL_IB_DISABLE=1): {why}; gather rdma_facts "
        "(playbooks/serve.yml does) or pin NCCL_IB_DISABLE: '1' in inferops_nccl_env if TCP is intended"
    ]


def runtime_spec(node_vars: Mapping[str, Any], node_plan: Mapping[str, Any]) -> dict[str, Any]:
    """The runtime section of one node's spec (see docs/plan.md, "Node spec")."""
    host = str(node_plan["host"])
    kind = str(_get(node_vars, "inferops_runtime") or DEFAULT_RUNTIME).strip().lower()
    if kind not in RUNTIMES:
        _fail(host, "inferops_runtime", f"unknown runtime {kind!r}; choose one of {list(RUNTIMES)}")
    docker = kind == "docker"
    slurm = kind == "slurm"  # no unit, no container: srun runs the engine from the venv or the image (pyxis)
    ray = node_plan.get("mode") == "ray"
    cuda = node_plan.get("device") == "cuda"

    source = _abs_path(host, "inferops_model_path", node_vars.get("inferops_model_path"))
    convert = _truthy(node_vars.get("inferops_convert_fp8_to_bf16", False))
    model_dir = _abs_path(host, "inferops_model_path", node_plan["model_path"])
    if convert:
        model_dir = _abs_path(host, "inferops_converted_model_path", model_dir)
        if _under(model_dir, source):
            _fail(host, "inferops_converted_model_path", f"{model_dir} lies inside the FP8 checkpoint {source}")

    unit = str(_get(node_vars, "inference_server_unit")).removesuffix(".service")
    container = str(_get(node_vars, "inference_server_container"))
    pull = str(_get(node_vars, "inference_server_image_pull")).strip().lower()
    if docker and pull not in PULL_POLICIES:
        _fail(host, "inference_server_image_pull", f"must be one of {list(PULL_POLICIES)}, got {pull!r}")
    image = node_vars.get("inferops_engine_image")
    package = node_vars.get("inferops_engine_package") or node_plan.get("engine")
    ulimits = _get(node_vars, "inference_server_ulimits")
    if isinstance(ulimits, str) or not isinstance(ulimits, (list, tuple)):
        _fail(host, "inference_server_ulimits", "must be a list such as ['memlock:-1:-1']")
    rdma = _rdma(node_vars, node_plan)
    wire_rdma = docker and rdma["enabled"]
    config_dir = _abs_path(host, "inference_server_config_dir", _get(node_vars, "inference_server_config_dir"))
    return {
        "kind": kind,
        "unit": None if docker or slurm else f"{unit}.service",
        "ray_unit": f"{unit}-ray.service" if ray and not (docker or slurm) else None,
        "container": container if docker else None,
        "ray_container": f"{container}-ray" if ray and docker else None,
        "venv": None if docker else str(_get(node_vars, "inference_server_venv")),
        "package": None if docker else str(package),
        "version": None if docker else str(node_vars.get("inferops_engine_version") or ""),
        "image": (str(image) if image else "") if docker else (str(image) if slurm and image else None),
        "image_pull": pull if docker else None,
        "model_dir": model_dir,
        "model_source": source,
        "convert_fp8_to_bf16": convert,
        "secrets_file": f"{config_dir}/{unit}-secrets.env",
        "device_requests": [dict(GPU_REQUEST)] if docker and cuda else [],
        "devices": [str(d) for d in _get(node_vars, "inference_server_rdma_devices")] if wire_rdma else [],
        "capabilities": ["IPC_LOCK"] if wire_rdma else [],
        "ulimits": [str(u) for u in ulimits],
        "shm_size": str(_get(node_vars, "inference_server_shm_size")) if docker else None,
        "mounts": _mounts(node_vars, node_plan, model_dir),
        "privileged": _truthy(_get(node_vars, "inference_server_privileged")),
        "rdma": rdma,
    }


def spec_table(plan: Mapping[str, Any]) -> list[str]:
    """Each node's runtime spec, one block per host, printed after the plan table."""
    lines = ["node spec:"]
    for replica in plan["replicas"].values():
        for host in replica["hosts"]:
            node = plan["hosts"][host]
            rt = node["runtime"]
            rdma = rt["rdma"]
            docker = rt["kind"] == "docker"
            runs = [rt["container"] if docker else rt["unit"]] if node["argv"] else []
            runs += [rt["ray_container"] if docker else rt["ray_unit"]] if node["ray_argv"] else []
            if rt["kind"] == "slurm":  # a rank slot: srun runs it on the allocation's node SLURM_NODEID
                runs = [f"srun task on node {node['node_rank']} of the job"]
                what = f"image {rt['image']} (pyxis)" if rt["image"] else f"venv {rt['venv']} ({rt['package']})"
            elif docker:
                what = f"image {rt['image'] or '(unset)'} (pull {rt['image_pull']})"
            else:
                what = f"venv {rt['venv']} ({rt['package']}{'==' + rt['version'] if rt['version'] else ''})"
            lines.append(f"  {host}: {rt['kind']} {' + '.join(runs)}; {what}")
            model = rt["model_dir"] + (f" (BF16 of {rt['model_source']})" if rt["convert_fp8_to_bf16"] else "")
            lines.append(f"    model:   {model}")
            gpus = "all GPUs" if rt["device_requests"] else "no GPU request"
            devices = ", ".join(rt["devices"]) or "-"
            caps = ", ".join(rt["capabilities"]) or "-"
            lines.append(
                f"    devices: {gpus}; {devices}  caps: {caps}  privileged: {str(rt['privileged']).lower()}"
                + (f"  shm: {rt['shm_size']}" if rt["shm_size"] else "")
            )
            lines.append(f"    ulimits: {' '.join(rt['ulimits'])}")
            mounts = ", ".join(f"{m['source']}:{m['target']}:{'ro' if m['read_only'] else 'rw'}" for m in rt["mounts"])
            lines.append(f"    mounts:  {mounts}")
            if rdma["enabled"]:
                gid = "-" if rdma["gid_index"] is None else rdma["gid_index"]
                lines.append(f"    rdma:    {','.join(rdma['hcas'])} gid {gid} (from {rdma['source']})")
            else:
                lines.append("    rdma:    off")
            env = node.get("env") or {}
            nccl = " ".join(f"{k}={v}" for k, v in env.items() if k.startswith(("NCCL_", "GLOO_")))
            if nccl:
                lines.append(f"    env:     {nccl}")
            for warning in node.get("warnings") or []:
                lines.append(f"    WARNING: {warning}")
    return lines
