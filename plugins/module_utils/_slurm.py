# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan served as a Slurm job (``inferops_runtime: slurm``): ``inferops_plan.slurm`` and its sbatch script.

Under Slurm Ansible reaches the login node only. The hosts of ``inferops_nodes`` are rank slots: rank R of the
plan runs on the allocation's node ``SLURM_NODEID`` = R, the head is the allocation's first node. What exists only
inside the job (addresses, the interface to the head, HCAs) is resolved there by ``_slurm_launch`` with the
plan's own functions (``_rdma``, ``_nccl``), which ``render_sbatch`` embeds into the script.

- ``slurm_spec(hostvars, plan)``: the job the plan describes (``inferops_plan.slurm``; None without the runtime).
- ``render_sbatch(slurm)``: the sbatch script, a pure function of that section.
- ``parse_partition`` / ``parse_sinfo_nodes`` / ``check_partition_fit``: the plan against the partition, refused
  (naming the variable) before submission.
Pure: no Ansible import, no host contacted.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SLURM_RUNTIME = "slurm"
SLURM_VARIABLES = (
    "inferops_slurm_partition",
    "inferops_slurm_account",
    "inferops_slurm_time_limit",
    "inferops_slurm_gres",
    "inferops_slurm_job_name",
    "inferops_slurm_shared_dir",
    "inferops_slurm_cpus_per_task",
    "inferops_slurm_mem",
    "inferops_slurm_sbatch_options",
)
COMMENT_PREFIX = "inferops-plan="
LAUNCHER_END = "INFEROPS_LAUNCHER"
# Embedded into the script in this order: each module is registered before the next one imports it.
_EMBEDDED = ("_rdma", "_nccl", "_slurm_launch")
_PACKAGE = "ansible_collections.inferops.cluster.plugins.module_utils"
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_OPTION = re.compile(r"^[a-z][a-z0-9-]*$")
# sbatch options the plan writes itself: refused in inferops_slurm_sbatch_options.
_OWNED_OPTIONS = {
    "job-name": "inferops_slurm_job_name",
    "J": "inferops_slurm_job_name",
    "partition": "inferops_slurm_partition",
    "p": "inferops_slurm_partition",
    "account": "inferops_slurm_account",
    "A": "inferops_slurm_account",
    "time": "inferops_slurm_time_limit",
    "t": "inferops_slurm_time_limit",
    "gres": "inferops_slurm_gres",
    "nodes": "inferops_nodes (one host per node)",
    "N": "inferops_nodes (one host per node)",
    "ntasks": "inferops_nodes (one task per node)",
    "n": "inferops_nodes (one task per node)",
    "ntasks-per-node": "inferops_nodes (one task per node)",
    "comment": "the plan (its hash)",
    "output": "inferops_slurm_shared_dir",
    "o": "inferops_slurm_shared_dir",
    "error": "inferops_slurm_shared_dir",
    "e": "inferops_slurm_shared_dir",
    "chdir": "inferops_slurm_shared_dir",
    "D": "inferops_slurm_shared_dir",
    "cpus-per-task": "inferops_slurm_cpus_per_task",
    "c": "inferops_slurm_cpus_per_task",
    "mem": "inferops_slurm_mem",
}


def _fail(host: str | None, variable: str, message: str) -> None:
    from ansible_collections.inferops.cluster.plugins.module_utils._plan import PlanError  # _plan imports us

    raise PlanError(host, variable, message)


def is_slurm(node_vars: Mapping[str, Any]) -> bool:
    return str(node_vars.get("inferops_runtime") or "").strip().lower() == SLURM_RUNTIME


def time_minutes(value: str) -> int | None:
    """A Slurm time (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``) in minutes, rounded
    up; None for UNLIMITED / INFINITE; ValueError for anything else."""
    text = str(value).strip()
    if text.upper() in ("UNLIMITED", "INFINITE"):
        return None
    match = _TIME.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a Slurm time (MM, HH:MM:SS, D-HH:MM:SS or UNLIMITED)")
    days, first, second, third = match.groups()
    parts = [int(first), *(int(p) for p in (second, third) if p is not None)]
    if days is not None:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = [*parts, 0, 0][:3]
        total = int(days) * 1440 + hours * 60 + minutes
    elif len(parts) == 1:  # MM
        return parts[0]
    elif len(parts) == 2:  # MM:SS
        total, seconds = parts
    else:  # HH:MM:SS
        total, seconds = parts[0] * 60 + parts[1], parts[2]
    return total + (1 if seconds else 0)


def _optional_text(host: str, variable: str, value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = str(value).strip()
    if not text or any(ch.isspace() for ch in text) or any(ord(ch) < 32 for ch in text):
        _fail(host, variable, f"must be one word without whitespace, got {value!r}")
    return text


def _positive(host: str, variable: str, value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number < 1:
        _fail(host, variable, f"must be a positive integer, got {value!r}")
    return number


def _options(host: str, value: Any) -> dict[str, str | None]:
    variable = "inferops_slurm_sbatch_options"
    if value in (None, ""):
        return {}
    if not isinstance(value, Mapping):
        _fail(host, variable, "must be a mapping of sbatch long options, e.g. {exclusive: true, constraint: h20}")
    options: dict[str, str | None] = {}
    for key, item in value.items():
        name = str(key).strip().lstrip("-")
        if not _OPTION.match(name):
            _fail(host, variable, f"{key!r} is not an sbatch long option name")
        if name in _OWNED_OPTIONS:
            _fail(host, variable, f"--{name} is set by the plan; use {_OWNED_OPTIONS[name]} instead")
        if item is False or item is None:
            continue
        text = None if item is True else str(item)
        if text is not None and ("\n" in text or "\r" in text):
            _fail(host, variable, f"--{name}: the value holds a line break")
        options[name] = text
    return options


def _plan_hash(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def slurm_spec(hostvars: Mapping[str, Mapping[str, Any]], plan: Mapping[str, Any]) -> dict[str, Any] | None:
    """``inferops_plan.slurm``: what the sbatch job needs (None when no host has inferops_runtime: slurm).

    One replica per job: the plan's ranks become the allocation's nodes in order.
    """
    slurm_hosts = [h for h, hv in hostvars.items() if is_slurm(hv)]
    if not slurm_hosts:
        return None
    others = sorted(set(hostvars) - set(slurm_hosts))
    if others:
        _fail(others[0], "inferops_runtime", f"every serving host must use slurm when one does ({slurm_hosts[0]})")
    if len(plan["replicas"]) != 1:
        name = sorted(plan["replicas"])[1]
        _fail(plan["replicas"][name]["head"], "inferops_replica", "the slurm runtime serves one replica per job")
    replica_name, replica = next(iter(plan["replicas"].items()))
    head = replica["head"]
    hv = hostvars[head]
    nodes = [plan["hosts"][h] for h in replica["hosts"]]
    first = nodes[0]
    if first["mode"] == "ray":
        _fail(head, "inferops_engine_mode", "vLLM's Ray mode is not planned under slurm; use native")
    for host in replica["hosts"][1:]:
        for variable in SLURM_VARIABLES:
            if hostvars[host].get(variable) != hv.get(variable):
                _fail(host, variable, f"differs from the head {head}'s; one job has one value (set it for the group)")

    shared = hv.get("inferops_slurm_shared_dir")
    if not shared or not str(shared).startswith("/"):
        _fail(
            head,
            "inferops_slurm_shared_dir",
            f"must be an absolute path on the filesystem shared by the login and compute nodes, got {shared!r}",
        )
    shared_dir = posixpath.normpath(str(shared))
    job_name = str(hv.get("inferops_slurm_job_name") or f"inferops-{replica_name}")
    if not _JOB_NAME.match(job_name):
        _fail(head, "inferops_slurm_job_name", f"{job_name!r}: letters, digits, '_', '.', '-' only")
    time_limit = _optional_text(head, "inferops_slurm_time_limit", hv.get("inferops_slurm_time_limit"))
    if time_limit is not None:
        try:
            time_minutes(time_limit)
        except ValueError as exc:
            _fail(head, "inferops_slurm_time_limit", str(exc))
    gpus = int(first["gpus_per_node"])
    cuda = first["device"] == "cuda"
    raw_gres = hv.get("inferops_slurm_gres")
    gres = (f"gpu:{gpus}" if cuda else None) if raw_gres is None else (str(raw_gres).strip() or None)
    if gres is not None:
        _optional_text(head, "inferops_slurm_gres", gres)
    runtime = first["runtime"]
    image = runtime.get("image") or None
    job_dir = f"{shared_dir}/{job_name}"
    mounts = []
    if image:
        mounts = [f"{shared_dir}:{shared_dir}"] + [
            f"{m['source']}:{m['target']}{':ro' if m['read_only'] else ''}" for m in runtime["mounts"]
        ]
    pins = hv.get("inferops_nccl_env") or {}
    extra_env = hv.get("inferops_env") or {}
    ifname = hv.get("inferops_socket_ifname")
    spec: dict[str, Any] = {
        "replica": replica_name,
        "job_name": job_name,
        "partition": _optional_text(head, "inferops_slurm_partition", hv.get("inferops_slurm_partition")),
        "account": _optional_text(head, "inferops_slurm_account", hv.get("inferops_slurm_account")),
        "time_limit": time_limit,
        "gres": gres,
        "nodes": len(nodes),
        "gpus_per_node": gpus if cuda else 0,
        "cpus_per_task": _positive(head, "inferops_slurm_cpus_per_task", hv.get("inferops_slurm_cpus_per_task")),
        "mem": _optional_text(head, "inferops_slurm_mem", hv.get("inferops_slurm_mem")),
        "sbatch_options": _options(head, hv.get("inferops_slurm_sbatch_options")),
        "shared_dir": shared_dir,
        "job_dir": job_dir,
        "log_dir": f"{job_dir}/logs",
        "secrets_file": f"{job_dir}/secrets.env",
        "endpoint_file": f"{job_dir}/endpoint.json",
        "venv": None if image else runtime.get("venv"),
        "image": image,
        "container_mounts": mounts,
        "device": first["device"],
        "engine": first["engine"],
        "api_port": first["ports"]["api"],
        "head_plan_address": first["address"],
        "socket_ifname": str(ifname) if ifname else None,
        "nccl_pins": {str(k): str(v) for k, v in pins.items()},
        "extra_env_keys": sorted(str(k) for k in extra_env),
        "secret_env": list(first["secret_env"]),
        "ranks": [
            {"slot": n["host"], "plan_address": n["address"], "argv": list(n["argv"]), "env": dict(n["env"])}
            for n in nodes
        ],
    }
    spec["hash"] = _plan_hash(spec)
    return spec


def job_comment(slurm: Mapping[str, Any]) -> str:
    """The job's --comment: the plan's hash, read back by squeue to keep or replace the running job."""
    return f"{COMMENT_PREFIX}{slurm['hash']}"


def _module_source(name: str) -> str:
    return (Path(__file__).parent / f"{name}.py").read_text(encoding="utf-8")


def launcher_script(slurm: Mapping[str, Any]) -> str:
    """The Python launcher each srun task runs: _rdma, _nccl and _slurm_launch embedded, then main(spec)."""
    launch_spec = {k: v for k, v in slurm.items() if k not in ("sbatch_options", "container_mounts")}
    lines = [
        "# inferops.cluster rank launcher (rendered with the job; plugins/module_utils/_slurm_launch.py)",
        "import json, sys, types",
        "SOURCES = [",
    ]
    for name in _EMBEDDED:
        source = _module_source(name)
        if LAUNCHER_END in source.splitlines():
            raise ValueError(f"{name}.py holds the heredoc terminator {LAUNCHER_END}")
        lines.append(f"    ({f'{_PACKAGE}.{name}'!r}, {source!r}),")
    lines += [
        "]",
        "for name, source in SOURCES:",
        "    module = types.ModuleType(name)",
        "    module.__file__ = name",
        "    sys.modules[name] = module",
        "    exec(compile(source, name, 'exec'), module.__dict__)",
        f"SPEC = json.loads({json.dumps(launch_spec, sort_keys=True)!r})",
        f"sys.exit(sys.modules[{_PACKAGE + '._slurm_launch'!r}].main(SPEC))",
    ]
    return "\n".join(lines) + "\n"


def sbatch_directives(slurm: Mapping[str, Any]) -> list[str]:
    """The ``#SBATCH`` lines (one task per node; logs, partition, account, time, gres; the hash as comment)."""
    log = slurm["log_dir"]
    directives = [
        f"--job-name={slurm['job_name']}",
        f"--comment={job_comment(slurm)}",
        f"--nodes={slurm['nodes']}",
        f"--ntasks={slurm['nodes']}",
        "--ntasks-per-node=1",
    ]
    for option, key in (
        ("partition", "partition"),
        ("account", "account"),
        ("time", "time_limit"),
        ("gres", "gres"),
        ("cpus-per-task", "cpus_per_task"),
        ("mem", "mem"),
    ):
        if slurm.get(key) not in (None, ""):
            directives.append(f"--{option}={slurm[key]}")
    directives += [
        f"--chdir={slurm['job_dir']}",
        f"--output={log}/%x_%j_batch.out",
        f"--error={log}/%x_%j_batch.err",
    ]
    for name, value in (slurm.get("sbatch_options") or {}).items():
        directives.append(f"--{name}" if value is None else f"--{name}={value}")
    return [f"#SBATCH {d}" for d in directives]


def srun_argv(slurm: Mapping[str, Any]) -> list[str]:
    """srun: one task per node, per-rank logs (%n: the node's index in the job), the engine's Python."""
    log = slurm["log_dir"]
    argv = [
        "srun",
        f"--nodes={slurm['nodes']}",
        f"--ntasks={slurm['nodes']}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        f"--output={log}/%x_%j_node%n.out",
        f"--error={log}/%x_%j_node%n.err",
    ]
    if slurm.get("image"):
        argv += [f"--container-image={slurm['image']}", "--no-container-mount-home"]
        if slurm.get("container_mounts"):
            argv.append(f"--container-mounts={','.join(slurm['container_mounts'])}")
        argv.append("python3")
    else:
        argv.append(f"{slurm['venv']}/bin/python3")
    return [*argv, "$LAUNCHER"]


def command_template(slurm: Mapping[str, Any]) -> str:
    """Rank 0's engine command with the job's values named: ``$INFEROPS_HEAD_ADDR`` (the address of the
    allocation's first node, resolved in the job) and ``$SLURM_NODEID`` (the rank); for the script's reader."""
    argv = list(slurm["ranks"][0]["argv"])
    words = []
    for index, arg in enumerate(argv):
        if index and argv[index - 1] == "--node-rank":
            words.append("$SLURM_NODEID")
            continue
        head = slurm["head_plan_address"]
        if arg == head or arg.startswith(head + ":"):
            words.append("$INFEROPS_HEAD_ADDR" + arg[len(head) :])
            continue
        words.append(arg if arg.startswith("${") else shlex.quote(arg))
    headless = any("--headless" in r["argv"] for r in slurm["ranks"][1:])
    return " ".join(words) + (" [--headless on ranks > 0]" if headless else "")


def render_sbatch(slurm: Mapping[str, Any]) -> str:
    """The sbatch script of the plan's Slurm section (the same plan always renders the same script)."""
    srun = " \\\n    ".join('"$LAUNCHER"' if a == "$LAUNCHER" else shlex.quote(a) for a in srun_argv(slurm))
    engine = (slurm["image"] and f"image {slurm['image']} (pyxis/enroot)") or f"venv {slurm['venv']}"
    lines = [
        "#!/bin/bash",
        f"# inferops.cluster: replica {slurm['replica']} as one Slurm job from the plan (hash {slurm['hash']})",
        "# Re-render it (plan.yml -e plan_sbatch=FILE) rather than edit it. Before sbatch, the directory",
        f"# {slurm['log_dir']} must exist on the shared filesystem"
        + (
            f" and {slurm['secrets_file']} (0600) hold {', '.join(slurm['secret_env'])}."
            if slurm["secret_env"]
            else "."
        ),
        *sbatch_directives(slurm),
        "",
        "set -euo pipefail",
        f"# the engine: {engine}; rank R runs on the allocation's node SLURM_NODEID=R, the head is its first node.",
        "# Each rank runs (the launcher resolves INFEROPS_HEAD_ADDR, this node's address, interface and HCAs):",
        f"#   {command_template(slurm)}",
        'INFEROPS_HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "export INFEROPS_HEAD_NODE",
        'echo "[inferops] job $SLURM_JOB_ID: head $INFEROPS_HEAD_NODE, nodes $SLURM_JOB_NODELIST"',
        f'LAUNCHER={shlex.quote(slurm["job_dir"])}/launch-"$SLURM_JOB_ID".py',
        f"cat > \"$LAUNCHER\" <<'{LAUNCHER_END}'",
        launcher_script(slurm).rstrip("\n"),
        LAUNCHER_END,
        "# one engine rank per node; a rank that exits ends the job (--kill-on-bad-exit)",
        srun,
        "",
    ]
    return "\n".join(lines)


def parse_partition(text: str) -> dict[str, str]:
    """``scontrol show partition NAME -o`` (one line of KEY=VALUE) as a mapping."""
    fields: dict[str, str] = {}
    for token in text.split():
        if "=" in token:
            key, value = token.split("=", 1)
            fields[key] = value
    return fields


def gres_gpus(gres: str) -> int:
    """GPUs in a node's gres (``gpu:8``, ``gpu:h20:8(S:0-1)``, ``gpu:a100:4,nic:1``); 0 for ``(null)``."""
    total = 0
    for item in re.sub(r"\([^)]*\)", "", gres).split(","):
        parts = item.strip().split(":")
        if parts[0] == "gpu" and len(parts) >= 2 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def parse_sinfo_nodes(text: str) -> dict[str, int]:
    """``sinfo -h -N -p PART -o '%N %G'`` lines -> {node: GPUs from its gres}."""
    nodes: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            nodes[fields[0]] = max(nodes.get(fields[0], 0), gres_gpus(fields[1]))
        elif len(fields) == 1:
            nodes.setdefault(fields[0], 0)
    return nodes


def check_partition_fit(
    slurm: Mapping[str, Any], head: str, partition: Mapping[str, str], nodes: Mapping[str, int]
) -> None:
    """Refuse (PlanError naming the variable) a job that this partition can never run."""
    name = slurm.get("partition") or partition.get("PartitionName", "(default)")
    need = int(slurm["nodes"])
    if not nodes:
        _fail(head, "inferops_slurm_partition", f"partition {name} has no nodes (sinfo lists none)")
    if need > len(nodes):
        _fail(
            head,
            "inferops_nodes",
            f"the plan needs {need} nodes (one per host of inferops_nodes) but partition {name} has {len(nodes)}",
        )
    max_nodes = partition.get("MaxNodes", "UNLIMITED")
    if max_nodes.isdigit() and need > int(max_nodes):
        _fail(head, "inferops_nodes", f"the plan needs {need} nodes but partition {name} allows MaxNodes={max_nodes}")
    gpus = int(slurm.get("gpus_per_node") or 0)
    if gpus:
        fit = sorted(n for n, g in nodes.items() if g >= gpus)
        if len(fit) < need:
            most = max(nodes.values())
            _fail(
                head,
                "inferops_gpus_per_node",
                f"{gpus} GPUs per node on {need} nodes, but partition {name} has {len(fit)} node(s) with that many "
                f"(gres: at most gpu:{most} per node)",
            )
    limit = slurm.get("time_limit")
    max_time = partition.get("MaxTime", "UNLIMITED")
    if limit and time_minutes(max_time) is not None:
        wanted = time_minutes(limit)
        if wanted is None or wanted > (time_minutes(max_time) or 0):
            _fail(
                head,
                "inferops_slurm_time_limit",
                f"{limit} exceeds partition {name}'s MaxTime={max_time}; the job would never start",
            )


def queue_state(squeue: str, job_name: str) -> list[dict[str, str]]:
    """``squeue -h -n NAME -o '%i|%T|%k|%N'`` lines -> [{id, state, comment, nodes}] of that job name."""
    jobs = []
    for line in squeue.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 4 and parts[0]:
            jobs.append({"id": parts[0], "state": parts[1], "comment": parts[2], "nodes": parts[3]})
    return jobs


def keep_or_replace(jobs: list[dict[str, str]], slurm: Mapping[str, Any]) -> dict[str, Any]:
    """Which queued jobs to keep (the same plan's, pending or running) and which to cancel (the others)."""
    live = [j for j in jobs if j["state"] in ("PENDING", "RUNNING", "CONFIGURING", "REQUEUED", "RESIZING")]
    same = [j for j in live if j["comment"] == job_comment(slurm)]
    keep = same[0] if same else None
    cancel = [j["id"] for j in jobs if keep is None or j["id"] != keep["id"]]
    return {"keep": keep["id"] if keep else None, "keep_state": keep["state"] if keep else None, "cancel": cancel}
