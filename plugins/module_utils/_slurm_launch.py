# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inside a Slurm job: one rank's engine command and environment, resolved on its node, then exec'd.

Under ``inferops_runtime: slurm`` Ansible reaches the login node only; the plan's per-node facts that exist only
inside the allocation (the head's address, this node's address, the interface that reaches the head, the HCAs and
their GID index) are resolved here, on each node, by the functions the plan uses elsewhere: ``_rdma.read_sysfs``,
``parse_ip_route_get`` / ``parse_ip_addr_owner`` (as rdma_facts does) and ``_nccl.derive_nccl_env``.

The sbatch script rendered by ``_slurm.render_sbatch`` embeds this module together with ``_rdma`` and ``_nccl``
(their source, registered under their collection names: no second copy of the logic) and runs it once per node
with ``srun --ntasks-per-node=1``. ``SLURM_NODEID`` picks the rank; ``INFEROPS_HEAD_NODE`` (the allocation's first
host, ``scontrol show hostnames``) is the head. Standard library only: it runs with the engine's Python (the
venv on the shared path, or the container image's).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ansible_collections.inferops.cluster.plugins.module_utils._nccl import derive_nccl_env
from ansible_collections.inferops.cluster.plugins.module_utils._rdma import (
    parse_ip_addr_owner,
    parse_ip_route_get,
    read_sysfs,
)

SYSFS_ROOT = "/sys/class/infiniband"
_ENV_LINE = re.compile(r'^([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"$')
_UNESCAPE = re.compile(r"\\(.)")


class LaunchError(RuntimeError):
    """What keeps this rank from starting; printed to the rank's error log."""


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LaunchError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def lookup_ipv4(name: str) -> str:
    """The first non-loopback IPv4 address ``name`` resolves to on this node."""
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        raise LaunchError(f"the head node {name!r} does not resolve on this node: {exc}") from None
    addresses = [info[4][0] for info in infos]
    usable = [a for a in addresses if not a.startswith("127.")]
    if not usable:
        raise LaunchError(f"the head node {name!r} resolves to loopback only ({', '.join(addresses)}); fix /etc/hosts")
    return usable[0]


def route_to(address: str, run: Callable[[list[str]], str] = _run) -> dict[str, Any]:
    """``ip route get ADDRESS`` as rdma_facts reads it; on the head itself the interface that holds ADDRESS."""
    route = parse_ip_route_get(run(["ip", "route", "get", address]))
    if route is None:
        raise LaunchError(f"could not parse 'ip route get {address}'")
    if route["local"] or route["ifname"] == "lo":
        owner = parse_ip_addr_owner(run(["ip", "-o", "addr", "show", "to", address]))
        if owner:
            route["ifname"] = owner
        route["src"] = address
    return route


def substitute(value: str, plan_address: str, address: str) -> str:
    """``value`` with the plan's placeholder address (a slot's) replaced by the address resolved in the job."""
    if value == plan_address:
        return address
    if value.startswith(plan_address + ":"):
        return address + value[len(plan_address) :]
    return value


def resolve(
    spec: Mapping[str, Any],
    node_id: int,
    head_node: str,
    run: Callable[[list[str]], str] = _run,
    lookup: Callable[[str], str] = lookup_ipv4,
    sysfs_root: str = SYSFS_ROOT,
) -> dict[str, Any]:
    """This rank's argv and environment (no secret), with the addresses and NCCL wiring of this node."""
    ranks = spec["ranks"]
    if not 0 <= node_id < len(ranks):
        raise LaunchError(f"SLURM_NODEID {node_id} is outside the plan's {len(ranks)} ranks")
    rank = ranks[node_id]
    head_address = lookup(head_node)
    route = route_to(head_address, run)
    address = str(route.get("src") or head_address)
    rdma = read_sysfs(sysfs_root)
    rdma["route"] = route
    ifname = spec.get("socket_ifname") or route.get("ifname")
    derived = derive_nccl_env(rdma, ifname, spec["device"], spec.get("nccl_pins") or {})
    env = dict(rank["env"])
    env.update({k: v for k, v in derived.items() if k not in (spec.get("extra_env_keys") or [])})
    env = {k: substitute(str(v), rank["plan_address"], address) for k, v in env.items()}
    argv = [substitute(str(a), spec["head_plan_address"], head_address) for a in rank["argv"]]
    return {
        "node_id": node_id,
        "slot": rank["slot"],
        "head_node": head_node,
        "head_address": head_address,
        "address": address,
        "ifname": ifname,
        "hcas": derived.get("NCCL_IB_HCA", ""),
        "argv": argv,
        "env": env,
    }


def read_secrets(path: str) -> dict[str, str]:
    """The 0600 secrets file (``NAME="value"`` lines, _envfile's format) read back byte for byte."""
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise LaunchError(f"cannot read the secrets file {path}: {exc.strerror}") from None
    for line in lines:
        match = _ENV_LINE.match(line)
        if match:
            values[match[1]] = _UNESCAPE.sub(r"\1", match[2])
    return values


def with_secrets(argv: list[str], names: list[str], secrets: Mapping[str, str]) -> list[str]:
    """Each ``${NAME}`` placeholder of argv filled from the secrets file (as systemd fills ExecStart=)."""
    missing = [n for n in names if n not in secrets]
    if missing:
        raise LaunchError(f"the secrets file lacks {', '.join(missing)}")
    placeholders = {f"${{{name}}}": secrets[name] for name in names}
    return [placeholders.get(arg, arg) for arg in argv]


def _write_endpoint(spec: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    path = spec["endpoint_file"]
    api = f"{info['head_address']}:{spec['api_port']}"
    data = {
        "job_id": os.environ.get("SLURM_JOB_ID", ""),
        "head_node": info["head_node"],
        "head_address": info["head_address"],
        "api_url": f"http://{api}",
        "hash": spec["hash"],
    }
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, sort_keys=True)
    os.replace(tmp, path)


def main(spec: Mapping[str, Any]) -> int:
    try:
        node_id = int(os.environ["SLURM_NODEID"])
        head_node = os.environ["INFEROPS_HEAD_NODE"]
    except (KeyError, ValueError):
        sys.stderr.write("[inferops] run me with srun inside the job (SLURM_NODEID, INFEROPS_HEAD_NODE)\n")
        return 2
    try:
        # INFEROPS_SYSFS_ROOT: another /sys/class/infiniband (the unit tests' captured trees)
        info = resolve(spec, node_id, head_node, sysfs_root=os.environ.get("INFEROPS_SYSFS_ROOT", SYSFS_ROOT))
        secrets = read_secrets(spec["secrets_file"]) if spec.get("secret_env") else {}
        argv = with_secrets(info["argv"], list(spec.get("secret_env") or []), secrets)
    except (LaunchError, ValueError) as exc:
        sys.stderr.write(f"[inferops] rank {os.environ.get('SLURM_NODEID')}: {exc}\n")
        return 1
    nccl = " ".join(f"{k}={v}" for k, v in sorted(info["env"].items()) if k.startswith(("NCCL_", "GLOO_")))
    sys.stdout.write(
        f"[inferops] rank {node_id} ({info['slot']}) on {socket.gethostname()}: address {info['address']}, "
        f"head {head_node} ({info['head_address']}), interface {info['ifname'] or '-'}; {nccl}\n"
    )
    sys.stdout.flush()
    if node_id == 0:
        _write_endpoint(spec, info)
    env = {**os.environ, **info["env"], **secrets}
    if spec.get("venv") and not spec.get("image"):
        env["PATH"] = f"{spec['venv']}/bin:{env.get('PATH', '/usr/bin:/bin')}"
        env["VIRTUAL_ENV"] = spec["venv"]
    os.execvpe(argv[0], argv, env)
    return 1  # not reached
