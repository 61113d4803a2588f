# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster plan: inventory variables in, per-host serving facts out.

One pure computation (no Ansible import) shared by the ``cluster_plan`` action plugin, the filters
and the tests. Every error names the host and the inventory variable at fault.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.inferops.cluster.plugins.module_utils._argv import (
    SECRET_PLACEHOLDER,
    as_bool,
    format_argv,
    normalise_key,
    render_flags,
)
from ansible_collections.inferops.cluster.plugins.module_utils._healer import (
    VARIABLES as HEALER_VARIABLES,
)
from ansible_collections.inferops.cluster.plugins.module_utils._healer import (
    SettingsError,
    read_settings,
    replica_spec,
)
from ansible_collections.inferops.cluster.plugins.module_utils._healer import node_spec as healer_node_spec
from ansible_collections.inferops.cluster.plugins.module_utils._monitoring import (
    DISABLED as MONITORING_DISABLED,
)
from ansible_collections.inferops.cluster.plugins.module_utils._monitoring import (
    MONITORING_PORT_VARIABLES,
    MONITORING_PORTS,
    MONITORING_VARIABLES,
    monitoring_plan,
    node_listens,
    node_monitoring,
    pick_host,
    uniform_flag,
)
from ansible_collections.inferops.cluster.plugins.module_utils._monitoring import (
    NODE_DISABLED as NODE_MONITORING_DISABLED,
)
from ansible_collections.inferops.cluster.plugins.module_utils._nccl import NcclEnvError, derive_nccl_env
from ansible_collections.inferops.cluster.plugins.module_utils._slurm import slurm_spec
from ansible_collections.inferops.cluster.plugins.module_utils._spec import (
    hub_secret_env,
    runtime_spec,
    served_model_vars,
    spec_table,
    spec_warnings,
)
from ansible_collections.inferops.cluster.plugins.module_utils._tls import (
    MANAGED_FLAGS as _TLS_FLAGS,
)
from ansible_collections.inferops.cluster.plugins.module_utils._tls import (
    TLS_VARIABLES,
    endpoint,
    engine_tls_argv,
    node_tls,
    read_tls,
    tls_files,
)

PLAN_VERSION = 1
ENGINES = {"vllm": ("native", "ray"), "sglang": ("native",)}
DEVICES = ("cuda", "cpu")
DEFAULT_PORTS = {
    "api": 8000,
    "dist_init": 30000,
    "master": 29500,
    "ray": 6379,
    "ray_dashboard": 8265,
    "router": 30000,
    **MONITORING_PORTS,  # node_exporter, dcgm_exporter, prometheus, alertmanager, grafana, router_metrics
    "healer": 8390,
}
# The Ray dashboard accepts job submissions without authentication: the head's loopback unless asked.
DEFAULT_RAY_DASHBOARD_HOST = "127.0.0.1"
DEFAULT_DOCKER_BRIDGES = ("172.17.0.0/16",)
SECRET_ENV_VLLM = "VLLM_API_KEY"
SECRET_ENV_GENERIC = "INFEROPS_API_KEY"
# Engine flags the plan sets unless inferops_engine_args names them (``enable-metrics: false`` drops it).
# sglang serves /metrics only with --enable-metrics: the upgrade's drain and monitoring read it.
# vLLM serves /metrics always.
DEFAULT_ENGINE_ARGS: dict[str, dict[str, Any]] = {"sglang": {"enable-metrics": True}, "vllm": {}}
SSH_PORT = 22
# Strings end up in systemd units, env files, Docker options, nft sets and URLs: one line, no control characters.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
REPLICA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_PLAIN_PREFIX = re.compile(r"[A-Za-z0-9_.-]*")

# Inventory variables the plan reads from each host (the cluster_plan action templates these and nothing else). The
# action adds the facts inferops_gpu / inferops_rdma (under ansible_facts), inferops_api_key as a bool (set or
# not) and inferops_api_key_digest (sha256 hex of the key, "" when unset); the key itself never reaches the plan.
PLAN_VARIABLES = (
    "inferops_api_open",
    "ansible_host",
    "ansible_port",
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
    "inferops_ray_dashboard_host",
    "inferops_ray_dashboard_port",
    "inferops_router_port",
    "inferops_router_host",
    "inferops_api_allowed_networks",
    "inferops_healer_port",
    *HEALER_VARIABLES,
    "inferops_docker_bridge_networks",
    "inferops_rdma",
    "inferops_gpu",
    *MONITORING_VARIABLES,
    # TLS on the public endpoint (_tls.py): the action hands the plan whether each is set, never the PEM text
    *TLS_VARIABLES,
    "inference_server_config_dir",
)
# Facts the plan reads (gpu_facts, rdma_facts), from ansible_facts or from saved facts (plan_facts_dir).
PLAN_FACTS = ("inferops_gpu", "inferops_rdma")

# Flags the plan owns, per engine: setting them in inferops_engine_args would fight the plan.
_MANAGED_FLAGS = {
    "vllm": {
        "tensor-parallel-size": "inferops_tp",
        "tp": "inferops_tp",
        "pipeline-parallel-size": "inferops_pp",
        "pp": "inferops_pp",
        "data-parallel-size": "inferops_dp",
        "dp": "inferops_dp",
        "enable-expert-parallel": "inferops_ep",
        "nnodes": "the inventory (nodes of the replica)",
        "node-rank": "inferops_node_rank",
        "master-addr": "inferops_address of the head",
        "master-port": "inferops_master_port",
        "headless": "the plan (rank > 0)",
        "port": "inferops_api_port",
        "host": "inferops_api_host",
        "model": "inferops_model_path",
        "served-model-name": "inferops_served_model_name",
        "api-key": "inferops_api_key",
        "distributed-executor-backend": "inferops_engine_mode",
        **_TLS_FLAGS,
    },
    "sglang": {
        "tp-size": "inferops_tp",
        "tp": "inferops_tp",
        "tensor-parallel-size": "inferops_tp",
        "dp-size": "inferops_dp",
        "dp": "inferops_dp",
        "data-parallel-size": "inferops_dp",
        "ep-size": "inferops_ep",
        "ep": "inferops_ep",
        "expert-parallel-size": "inferops_ep",
        "pp-size": "inferops_pp",
        "pipeline-parallel-size": "inferops_pp",
        "nnodes": "the inventory (nodes of the replica)",
        "node-rank": "inferops_node_rank",
        "dist-init-addr": "inferops_address of the head and inferops_dist_init_port",
        "port": "inferops_api_port",
        "host": "inferops_api_host",
        "model-path": "inferops_model_path",
        "model": "inferops_model_path",
        "served-model-name": "inferops_served_model_name",
        "api-key": "inferops_api_key",
        **_TLS_FLAGS,
    },
}


class PlanError(ValueError):
    """Bad input: carries the host and the variable so the message can name both."""

    def __init__(self, host: str | None, variable: str, message: str) -> None:
        self.host = host
        self.variable = variable
        where = f"host {host}: " if host else ""
        super().__init__(f"{where}{variable}: {message}")


@dataclass(frozen=True)
class NodeSpec:
    """One host's serving settings, read and checked from its variables."""

    host: str
    replica: str
    address: str
    engine: str
    mode: str
    device: str
    model_path: str
    served_model_name: str
    gpus_per_node: int
    tp: int | None
    pp: int
    dp: int
    ep: int
    dp_attention: bool
    pinned_rank: int | None
    pinned_head: bool
    ports: dict[str, int]
    api_host: str
    ray_dashboard_host: str
    engine_args: dict[str, Any]
    extra_env: dict[str, str]
    nccl_overrides: dict[str, str]
    rdma: dict[str, Any] | None
    socket_ifname: str | None
    api_key_set: bool
    api_open: bool
    docker_bridges: tuple[str, ...]
    router_host: str | None
    # sha256 hex of inferops_api_key (computed by the action); compared between replicas, never in the plan
    api_key_digest: str | None = field(default=None, repr=False)
    # TLS (_tls.py): certificate and key set, CA set, where the roles write them
    tls: bool = False
    tls_ca: bool = False
    tls_files: dict[str, str] = field(default_factory=dict)


def natural_key(name: str) -> list[Any]:
    """``node2`` < ``node10``: hostnames sort as people read them."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _int(host: str, variable: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool):
        raise PlanError(host, variable, f"must be an integer, got {value!r}")
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise PlanError(host, variable, f"must be an integer, got {value!r}") from None
    if number < minimum:
        raise PlanError(host, variable, f"must be >= {minimum}, got {number}")
    return number


def _bool(host: str, variable: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off", ""):
        return False
    raise PlanError(host, variable, f"must be true or false, got {value!r}")


def _mapping(host: str, variable: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PlanError(host, variable, f"must be a mapping, got {type(value).__name__}")
    return dict(value)


def _port(host: str, variable: str, value: Any) -> int:
    port = _int(host, variable, value)
    if port > 65535:
        raise PlanError(host, variable, f"must be a TCP port (1-65535), got {port}")
    return port


def _text(host: str, variable: str, value: Any, what: str | None = None) -> str:
    """``value`` as one line without control characters; ``what`` names it instead of showing it (secrets)."""
    text = str(value)
    found = _CONTROL.search(text)
    if found:
        raise PlanError(
            host,
            variable,
            f"{what or repr(text)} contains a control character ({found.group()!r} at position {found.start()}); "
            "it would break the unit file, env file or command line it goes into",
        )
    return text


def _name_label(name: str) -> str:
    """How a refused key is shown: up to its first odd character (``api-key=TOKEN`` must not print TOKEN)."""
    shown = _PLAIN_PREFIX.match(name).group()
    return repr(shown) if shown == name else f"{shown!r}..."


def _env(host: str, variable: str, value: Any) -> dict[str, str]:
    env = {}
    for key, item in _mapping(host, variable, value).items():
        name = str(key)
        if not ENV_NAME.fullmatch(name):
            raise PlanError(
                host,
                variable,
                f"{_name_label(name)} is not an environment variable name (letters, digits and '_', "
                "not starting with a digit); systemd would drop it without a word",
            )
        env[name] = _text(host, variable, item, f"the value of {name}")
    return env


def _flag_key(host: str, key: Any, managed: Mapping[str, str]) -> str:
    """One inferops_engine_args key: a bare flag name the plan does not own."""
    name = str(key)
    label = _name_label(name)
    problem = None
    if not name:
        problem = "a flag has an empty name"
    elif "=" in name:
        problem = f"flag name {label} contains '='; write the value as the value (name: value), not name=value"
    elif _CONTROL.search(name):
        problem = f"flag name {label} contains a control character"
    elif any(ch.isspace() for ch in name):
        problem = f"flag name {label} contains whitespace; one flag per key, its value as the value"
    elif name.startswith("-"):
        problem = f"flag name {label} starts with '-'; write it without dashes ({name.lstrip('-')}: ...)"
    if problem:
        raise PlanError(host, "inferops_engine_args", problem)
    norm = normalise_key(name)
    owned = _owned_flag(norm, managed)
    if owned and owned in (norm, norm.removeprefix("no-")):
        raise PlanError(host, "inferops_engine_args", f"flag --{norm} is set by the plan; use {managed[owned]} instead")
    if owned:
        raise PlanError(
            host,
            "inferops_engine_args",
            f"flag --{norm} abbreviates --{owned} (the engines' parsers accept abbreviations), "
            f"which is set by the plan; use {managed[owned]} instead",
        )
    return name


def _owned_flag(norm: str, managed: Mapping[str, str]) -> str:
    """The plan-owned flag that ``norm`` sets: itself, its ``no-`` form, or an abbreviation; "" for none."""
    for candidate in (norm, norm[3:] if norm.startswith("no-") else ""):
        if candidate in managed:
            return candidate
        prefixed = sorted(flag for flag in managed if candidate and flag.startswith(candidate))
        if prefixed:
            return prefixed[0]
    return ""


def _flag_value(host: str, name: str, value: Any) -> Any:
    """Booleans written as strings become booleans; strings are checked (not shown: a value may be a token)."""
    value = as_bool(value)
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, str):
            _text(host, "inferops_engine_args", item, f"the value of {name}")
    return value


def _engine_args(host: str, engine: str, value: Any) -> dict[str, Any]:
    managed = _MANAGED_FLAGS[engine]
    args = {}
    for key, item in _mapping(host, "inferops_engine_args", value).items():
        name = _flag_key(host, key, managed)
        args[name] = _flag_value(host, name, item)
    return args


def _model_path(host: str, value: Any) -> str:
    if not value:
        raise PlanError(host, "inferops_model_path", "is required (the model directory as the engine sees it)")
    path = _text(host, "inferops_model_path", value)
    if not path.startswith("/"):
        raise PlanError(
            host, "inferops_model_path", f"must be an absolute path (the model directory on the node), got {path!r}"
        )
    if ":" in path:
        raise PlanError(
            host,
            "inferops_model_path",
            f"{path!r} contains ':', which splits a Docker volume (SRC:DST:ro); use a path without ':'",
        )
    return path


def _replica(host: str, hv: Mapping[str, Any]) -> str:
    if "inferops_replica" not in hv:
        return "r0"
    raw = hv["inferops_replica"]
    name = "" if raw is None or isinstance(raw, bool) else _text(host, "inferops_replica", raw)
    if not REPLICA_NAME.fullmatch(name):
        raise PlanError(
            host,
            "inferops_replica",
            f"{raw!r} is not a replica name: 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit "
            "(leave the variable out for the default r0)",
        )
    return name


def _ports(host: str, hv: Mapping[str, Any]) -> dict[str, int]:
    """The service ports; none may be SSH's (22 or ansible_port): the firewall would cut the controller off."""
    ssh = {SSH_PORT: "SSH's port"}
    if hv.get("ansible_port") not in (None, ""):
        ssh[_port(host, "ansible_port", hv["ansible_port"])] = "this host's ansible_port (SSH)"
    ports = {}
    for name, variable in _PORT_VARIABLES.items():
        port = _port(host, variable, hv.get(variable, DEFAULT_PORTS[name]))
        if port in ssh:
            raise PlanError(
                host,
                variable,
                f"port {port} is {ssh[port]}; the firewall would cut the controller's SSH, choose another port",
            )
        ports[name] = port
    return ports


def _one_word(host: str, variable: str, value: Any) -> str:
    text = _text(host, variable, value)
    if any(ch.isspace() for ch in text):
        raise PlanError(host, variable, f"{text!r} contains whitespace; give one address or name")
    return text


def _address(host: str, hv: Mapping[str, Any]) -> str:
    return _one_word(host, "inferops_address", hv.get("inferops_address") or hv.get("ansible_host") or host)


def _bridges(host: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise PlanError(host, "inferops_docker_bridge_networks", "must be a list of CIDRs")
    for cidr in value:
        try:
            ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            raise PlanError(host, "inferops_docker_bridge_networks", f"{cidr!r} is not a CIDR") from None
    return tuple(str(b) for b in value)


def _api_key_digest(host: str, value: Any) -> str | None:
    if value in (None, ""):
        return None
    digest = str(value).strip().lower()
    if not _SHA256_HEX.fullmatch(digest):
        raise PlanError(
            host, "inferops_api_key_digest", "must be the sha256 hex digest of inferops_api_key (64 hex digits)"
        )
    return digest


def read_node(host: str, hv: Mapping[str, Any]) -> NodeSpec:
    """Read one host's variables into a NodeSpec, checking each on its own."""
    engine = str(hv.get("inferops_engine", "vllm")).strip().lower()
    if engine not in ENGINES:
        raise PlanError(host, "inferops_engine", f"unknown engine {engine!r}; choose one of {sorted(ENGINES)}")
    mode = str(hv.get("inferops_engine_mode", "native")).strip().lower()
    if mode not in ENGINES[engine]:
        raise PlanError(
            host, "inferops_engine_mode", f"{engine} has no mode {mode!r}; choose one of {list(ENGINES[engine])}"
        )
    device = str(hv.get("inferops_device", "cuda")).strip().lower()
    if device not in DEVICES:
        raise PlanError(host, "inferops_device", f"unknown device {device!r}; choose one of {list(DEVICES)}")

    model_path = _model_path(host, hv.get("inferops_model_path"))

    gpus = hv.get("inferops_gpus_per_node")
    if gpus is None:
        facts = hv.get("ansible_facts") or {}
        gpu_facts = facts.get("inferops_gpu") or hv.get("inferops_gpu") or {}
        if device == "cpu":
            gpus = 1
        elif gpu_facts.get("count"):
            gpus = gpu_facts["count"]
        else:
            raise PlanError(
                host, "inferops_gpus_per_node", "is required when no gpu_facts were gathered (GPUs on this node)"
            )
    gpus_per_node = _int(host, "inferops_gpus_per_node", gpus)

    tp_raw = hv.get("inferops_tp")
    tp = None if tp_raw in (None, "") else _int(host, "inferops_tp", tp_raw)
    pp = _int(host, "inferops_pp", hv.get("inferops_pp", 1))
    dp = _int(host, "inferops_dp", hv.get("inferops_dp", 1))
    ep = _int(host, "inferops_ep", hv.get("inferops_ep", 1))

    engine_args = _engine_args(host, engine, hv.get("inferops_engine_args"))
    dp_attention = any(normalise_key(k) == "enable-dp-attention" and bool(v) for k, v in engine_args.items())
    ports = _ports(host, hv)

    raw_rank = hv.get("inferops_node_rank")
    pinned_rank = None if raw_rank in (None, "") else _int(host, "inferops_node_rank", raw_rank, minimum=0)

    address = _address(host, hv)
    extra_env = _env(host, "inferops_env", hv.get("inferops_env"))
    nccl_overrides = _env(host, "inferops_nccl_env", hv.get("inferops_nccl_env"))
    facts = hv.get("ansible_facts") or {}
    rdma = facts.get("inferops_rdma") or hv.get("inferops_rdma")
    socket_ifname = hv.get("inferops_socket_ifname") or ((rdma or {}).get("route") or {}).get("ifname")
    if socket_ifname:
        socket_ifname = _text(host, "inferops_socket_ifname", socket_ifname)
    served_model_name = hv.get("inferops_served_model_name") or model_path
    router_host = hv.get("inferops_router_host") or None

    tls, tls_ca = read_tls(host, hv)
    return NodeSpec(
        host=host,
        replica=_replica(host, hv),
        address=address,
        engine=engine,
        mode=mode,
        device=device,
        model_path=model_path,
        served_model_name=_text(host, "inferops_served_model_name", served_model_name),
        gpus_per_node=gpus_per_node,
        tp=tp,
        pp=pp,
        dp=dp,
        ep=ep,
        dp_attention=dp_attention,
        pinned_rank=pinned_rank,
        pinned_head=_bool(host, "inferops_head", hv.get("inferops_head", False)),
        ports=ports,
        api_host=_text(host, "inferops_api_host", hv.get("inferops_api_host", "0.0.0.0")),
        ray_dashboard_host=_one_word(
            host, "inferops_ray_dashboard_host", hv.get("inferops_ray_dashboard_host") or DEFAULT_RAY_DASHBOARD_HOST
        ),
        engine_args=engine_args,
        extra_env=extra_env,
        nccl_overrides=nccl_overrides,
        rdma=rdma,
        socket_ifname=str(socket_ifname) if socket_ifname else None,
        api_key_set=bool(hv.get("inferops_api_key")),
        api_open=_bool(host, "inferops_api_open", hv.get("inferops_api_open", False)),
        docker_bridges=_bridges(host, hv.get("inferops_docker_bridge_networks", DEFAULT_DOCKER_BRIDGES)),
        router_host=_text(host, "inferops_router_host", router_host) if router_host else None,
        api_key_digest=_api_key_digest(host, hv.get("inferops_api_key_digest")),
        tls=tls,
        tls_ca=tls_ca,
        tls_files=tls_files(hv),
    )


def _check_address(node: NodeSpec, is_head: bool, nnodes: int, nreplicas: int) -> None:
    """Every node's address must reach its peers: not loopback (unless alone), link-local, unspecified or a bridge."""
    what = "head address" if is_head else "address"
    alone = nnodes == 1 and nreplicas == 1  # a lone single-node replica may serve on loopback
    try:
        ip = ipaddress.ip_address(node.address)
    except ValueError:
        if node.address.lower() in ("localhost", "localhost.localdomain") and not alone:
            raise PlanError(
                node.host, "inferops_address", f"{what} {node.address!r} is loopback; peers cannot reach it"
            ) from None
        return  # a DNS name: resolved by the nodes themselves
    ip = getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip.is_loopback:
        if alone:
            return
        raise PlanError(node.host, "inferops_address", f"{what} {ip} is loopback; peers cannot reach it")
    if ip.is_link_local:
        raise PlanError(node.host, "inferops_address", f"{what} {ip} is link-local; use a routable address")
    if ip.is_unspecified:
        raise PlanError(node.host, "inferops_address", f"{what} {ip} is unspecified")
    for cidr in node.docker_bridges:
        net = ipaddress.ip_network(cidr, strict=False)
        if ip.version == net.version and ip in net:
            raise PlanError(
                node.host,
                "inferops_address",
                f"{what} {ip} is on the Docker bridge {net}; other nodes cannot reach it "
                "(set inferops_address to the node's cluster-network address)",
            )


def _address_key(address: str) -> str:
    """One spelling per address: fd00:0::1 is fd00::1, ::ffff:10.0.0.1 is 10.0.0.1, names ignore case."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address.lower().rstrip(".")
    return str(getattr(ip, "ipv4_mapped", None) or ip)


def _check_unique_addresses(specs: list[NodeSpec]) -> None:
    """One machine in two places (two inventory hosts, one address) is refused, across replicas too."""
    seen: dict[str, NodeSpec] = {}
    for node in sorted(specs, key=lambda n: natural_key(n.host)):
        key = _address_key(node.address)
        other = seen.setdefault(key, node)
        if other is not node:
            where = "" if other.replica == node.replica else f" (replica {other.replica})"
            raise PlanError(
                node.host,
                "inferops_address",
                f"{node.address} is also the address of {other.host}{where}; one machine cannot be two hosts",
            )


def _check_router_hosts(specs: list[NodeSpec], hosts: Iterable[str]) -> None:
    known = set(hosts)
    for node in sorted(specs, key=lambda n: natural_key(n.host)):
        if node.router_host and node.router_host not in known:
            raise PlanError(
                node.host,
                "inferops_router_host",
                f"{node.router_host!r} is not a host of the inventory group; name the host the router runs on",
            )


def _check_routers(replicas: Mapping[str, list[NodeSpec]]) -> None:
    """Replicas behind one router serve one model with one API key (the router sends any request anywhere)."""
    behind: dict[str, list[tuple[str, NodeSpec]]] = {}
    for name in sorted(replicas, key=natural_key):
        head = replicas[name][0]
        if head.router_host:
            behind.setdefault(head.router_host, []).append((name, head))
    for router, members in behind.items():
        first_name, first = members[0]
        for name, head in members[1:]:
            if head.served_model_name != first.served_model_name:
                raise PlanError(
                    head.host,
                    "inferops_served_model_name",
                    f"replicas behind router {router} serve different models: {first_name}="
                    f"{first.served_model_name!r}, {name}={head.served_model_name!r}; one model per router",
                )
            digests = (first.api_key_digest, head.api_key_digest)
            if head.api_key_set != first.api_key_set or (None not in digests and digests[0] != digests[1]):
                raise PlanError(
                    head.host,
                    "inferops_api_key",
                    f"replicas {first_name} and {name} behind router {router} use different API keys; "
                    "the router and its clients send one key: give them the same inferops_api_key",
                )


def _check_api_keys(replicas: Mapping[str, list[NodeSpec]]) -> None:
    """Closed by default: a node without inferops_api_key is refused unless inferops_api_open says so."""
    for name in sorted(replicas, key=natural_key):
        for node in replicas[name]:
            if not node.api_key_set and not node.api_open:
                raise PlanError(
                    node.host,
                    "inferops_api_key",
                    "is not set: the engine would serve its API to anyone who can reach it; set a vaulted "
                    "inferops_api_key (ansible-vault encrypt_string), or inferops_api_open: true to serve it "
                    "without a key on purpose",
                )


def _api_warnings(node: NodeSpec, serves_api: bool) -> list[str]:
    """Printed by every run (plan table, serving role's preflight) while the API is open on purpose."""
    if node.api_key_set or not serves_api:
        return []
    return [
        f"API open without a key (inferops_api_open: true): anyone who can reach port {node.ports['api']} "
        "may use the engine; set a vaulted inferops_api_key to close it"
    ]


_SAME_IN_REPLICA = (
    ("engine", "inferops_engine"),
    ("mode", "inferops_engine_mode"),
    ("device", "inferops_device"),
    ("model_path", "inferops_model_path"),
    ("served_model_name", "inferops_served_model_name"),
    ("gpus_per_node", "inferops_gpus_per_node"),
    ("tp", "inferops_tp"),
    ("pp", "inferops_pp"),
    ("dp", "inferops_dp"),
    ("ep", "inferops_ep"),
    ("engine_args", "inferops_engine_args"),
    ("router_host", "inferops_router_host"),
    ("tls", "inferops_tls_cert"),
)


def _check_uniform(replica: str, nodes: list[NodeSpec]) -> None:
    first = nodes[0]
    for attr, variable in _SAME_IN_REPLICA:
        values = {n.host: getattr(n, attr) for n in nodes}
        if any(v != getattr(first, attr) for v in values.values()):
            detail = ", ".join(f"{h}={v!r}" for h, v in values.items())
            odd = next(h for h, v in values.items() if v != getattr(first, attr))
            what = "GPU counts differ" if attr == "gpus_per_node" else "differs"
            raise PlanError(odd, variable, f"{what} inside replica {replica}: {detail}")


def assign_ranks(replica: str, nodes: list[NodeSpec]) -> list[NodeSpec]:
    """Rank order: pinned ranks / pinned head first, the rest by natural hostname order.

    Independent of inventory order, so reordering the inventory never moves a rank.
    """
    nnodes = len(nodes)
    heads = [n for n in nodes if n.pinned_head]
    if len(heads) > 1:
        raise PlanError(
            heads[1].host, "inferops_head", f"replica {replica} has several heads: {', '.join(n.host for n in heads)}"
        )
    slots: dict[int, NodeSpec] = {}
    for node in sorted(nodes, key=lambda n: natural_key(n.host)):
        rank = node.pinned_rank
        if node.pinned_head:
            if rank not in (None, 0):
                raise PlanError(node.host, "inferops_node_rank", f"is {rank} but inferops_head is true (the head is 0)")
            rank = 0
        if rank is None:
            continue
        if rank >= nnodes:
            raise PlanError(
                node.host, "inferops_node_rank", f"is {rank} but replica {replica} has {nnodes} nodes (0..{nnodes - 1})"
            )
        if rank in slots:
            raise PlanError(
                node.host,
                "inferops_node_rank",
                f"rank {rank} is also held by {slots[rank].host} in replica {replica}",
            )
        slots[rank] = node
    free = (r for r in range(nnodes) if r not in slots)
    for node in sorted(nodes, key=lambda n: natural_key(n.host)):
        if node not in slots.values():
            slots[next(free)] = node
    return [slots[r] for r in range(nnodes)]


@dataclass(frozen=True)
class _Seat:
    """What rank assignment reads of a host (the fields of NodeSpec that assign_ranks uses)."""

    host: str
    pinned_rank: int | None
    pinned_head: bool
    address: str


def head_addresses(hostvars: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Each host's head address from the inventory alone, before any fact is gathered.

    Ranks depend only on the inventory (pins and host names), never on facts, so the nodes can be asked for their
    route to the head before the plan that reads what they answer. Agrees with build_plan's head_address
    (tests/unit/plugins/module_utils/test_plan.py checks it on every valid fixture).
    """
    replicas: dict[str, list[_Seat]] = {}
    for host, hv in hostvars.items():
        raw_rank = hv.get("inferops_node_rank")
        seat = _Seat(
            host=host,
            pinned_rank=None if raw_rank in (None, "") else _int(host, "inferops_node_rank", raw_rank, minimum=0),
            pinned_head=_bool(host, "inferops_head", hv.get("inferops_head", False)),
            address=str(hv.get("inferops_address") or hv.get("ansible_host") or host),
        )
        replicas.setdefault(str(hv.get("inferops_replica", "r0")), []).append(seat)
    heads: dict[str, str] = {}
    for name, seats in replicas.items():
        ordered = assign_ranks(name, seats)  # type: ignore[arg-type]  # duck-typed: host and the two pins
        heads.update((seat.host, ordered[0].address) for seat in seats)
    return heads


def replica_sizes(hostvars: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Each host's number of nodes in its replica, from the inventory alone (1: no traffic between nodes)."""
    counts: dict[str, int] = {}
    for hv in hostvars.values():
        name = str(hv.get("inferops_replica", "r0"))
        counts[name] = counts.get(name, 0) + 1
    return {host: counts[str(hv.get("inferops_replica", "r0"))] for host, hv in hostvars.items()}


def _parallel(replica: str, head: NodeSpec, nnodes: int) -> dict[str, int]:
    """Check tp/pp/dp/ep against the replica's devices; fill tp when it was left out."""
    world = nnodes * head.gpus_per_node
    dp_factor = 1 if head.dp_attention else head.dp
    if head.engine == "vllm" and head.dp > 1 and nnodes > 1:
        raise PlanError(
            head.host,
            "inferops_dp",
            "vLLM data parallelism across nodes is not planned; "
            "use several replicas (inferops_replica) behind a router",
        )
    tp = head.tp
    if tp is None:
        if world % (head.pp * dp_factor):
            raise PlanError(
                head.host, "inferops_tp", f"cannot be derived: {world} devices not divisible by pp x dp in {replica}"
            )
        tp = world // (head.pp * dp_factor)
    ranks = tp * head.pp * dp_factor
    if ranks != world:
        formula = "tp x pp" if dp_factor == 1 else "tp x pp x dp"
        raise PlanError(
            head.host,
            "inferops_tp",
            f"{formula} = {ranks} but replica {replica} has {nnodes} nodes x {head.gpus_per_node} GPUs = {world}; "
            "they must be equal",
        )
    if head.dp_attention and tp % head.dp:
        raise PlanError(head.host, "inferops_dp", f"dp {head.dp} must divide tp {tp} with enable-dp-attention")
    gpus = head.gpus_per_node
    if tp % gpus and gpus % tp:
        raise PlanError(
            head.host,
            "inferops_tp",
            f"tp {tp} neither fills whole nodes nor fits inside one ({gpus} GPUs per node in {replica})",
        )
    if head.ep > 1:
        if world % head.ep:
            raise PlanError(head.host, "inferops_ep", f"ep {head.ep} does not divide the {world} devices of {replica}")
        if head.engine == "vllm" and head.ep != tp * head.dp:
            raise PlanError(
                head.host,
                "inferops_ep",
                f"vLLM expert parallelism spans tp x dp = {tp * head.dp} ranks; ep {head.ep} must equal it",
            )
    return {"tp": tp, "pp": head.pp, "dp": head.dp, "ep": head.ep}


def engine_args_with_defaults(engine: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The inventory's engine args after the plan's defaults (DEFAULT_ENGINE_ARGS) that it does not name."""
    given = {normalise_key(key) for key in args}
    defaults = {key: value for key, value in DEFAULT_ENGINE_ARGS[engine].items() if key not in given}
    return {**defaults, **args}


def _engine_argv(
    node: NodeSpec, rank: int, nnodes: int, head: NodeSpec, par: dict[str, int], tls: Mapping[str, Any]
) -> list[str]:
    """The engine command line for one rank; the API key only as a placeholder; TLS files where it serves TLS."""
    extra = engine_tls_argv(tls) + render_flags(engine_args_with_defaults(node.engine, node.engine_args), node.engine)
    if node.engine == "sglang":
        argv = ["python3", "-m", "sglang.launch_server", "--model-path", node.model_path]
        if node.served_model_name != node.model_path:
            argv += ["--served-model-name", node.served_model_name]
        argv += ["--tp-size", str(par["tp"])]
        if par["dp"] > 1:
            argv += ["--dp-size", str(par["dp"])]
        if par["ep"] > 1:
            argv += ["--ep-size", str(par["ep"])]
        if par["pp"] > 1:
            argv += ["--pp-size", str(par["pp"])]
        if nnodes > 1:
            argv += [
                "--dist-init-addr",
                f"{_host_port(head.address, head.ports['dist_init'])}",
                "--nnodes",
                str(nnodes),
                "--node-rank",
                str(rank),
            ]
        argv += ["--host", node.api_host, "--port", str(node.ports["api"])]
        if node.api_key_set:
            argv += ["--api-key", SECRET_PLACEHOLDER]
        return argv + extra

    # vLLM
    if node.mode == "ray" and rank > 0:
        return []  # Ray workers run only `ray start`; the API server lives on the head
    argv = ["vllm", "serve", node.model_path]
    if node.served_model_name != node.model_path:
        argv += ["--served-model-name", node.served_model_name]
    argv += ["--tensor-parallel-size", str(par["tp"])]
    if par["pp"] > 1:
        argv += ["--pipeline-parallel-size", str(par["pp"])]
    if par["dp"] > 1:
        argv += ["--data-parallel-size", str(par["dp"])]
    if par["ep"] > 1:
        argv += ["--enable-expert-parallel"]
    if node.mode == "ray":
        argv += ["--distributed-executor-backend", "ray"]
    elif nnodes > 1:
        argv += [
            "--nnodes",
            str(nnodes),
            "--node-rank",
            str(rank),
            "--master-addr",
            head.address,
            "--master-port",
            str(head.ports["master"]),
        ]
        if rank > 0:
            argv.append("--headless")
    argv += ["--host", node.api_host, "--port", str(node.ports["api"])]
    return argv + extra


def _ray_argv(node: NodeSpec, rank: int, head: NodeSpec) -> list[str]:
    argv = ["ray", "start", "--block", f"--node-ip-address={node.address}"]
    if rank == 0:
        return [
            *argv,
            "--head",
            f"--port={node.ports['ray']}",
            f"--dashboard-host={node.ray_dashboard_host}",
            f"--dashboard-port={node.ports['ray_dashboard']}",
        ]
    return [*argv, f"--address={_host_port(head.address, head.ports['ray'])}"]


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _used_ports(node: NodeSpec, rank: int, nnodes: int, hosts_router: bool, healer: bool = False) -> dict[str, int]:
    used = {"api": node.ports["api"]} if rank == 0 else {}  # only rank 0 serves HTTP
    if node.engine == "sglang" and nnodes > 1 and rank == 0:
        used["dist_init"] = node.ports["dist_init"]
    if node.engine == "vllm" and node.mode == "native" and nnodes > 1 and rank == 0:
        used["master"] = node.ports["master"]
    if node.engine == "vllm" and node.mode == "ray" and rank == 0:
        used["ray"] = node.ports["ray"]
        used["ray_dashboard"] = node.ports["ray_dashboard"]
    if hosts_router:
        used["router"] = node.ports["router"]
        used["router_metrics"] = node.ports["router_metrics"]  # the router's Prometheus endpoint
    if healer:
        used["healer"] = node.ports["healer"]  # issue 14: the supervisor (head) or agent (followers)
    return used


_PORT_VARIABLES = {
    "api": "inferops_api_port",
    "dist_init": "inferops_dist_init_port",
    "master": "inferops_master_port",
    "ray": "inferops_ray_port",
    "ray_dashboard": "inferops_ray_dashboard_port",
    "router": "inferops_router_port",
    **MONITORING_PORT_VARIABLES,
    "healer": "inferops_healer_port",
}


def _healer_settings(host: str, hv: Mapping[str, Any]) -> dict[str, Any]:
    """issue 14: the healer's settings of one host (module_utils/_healer.py); the head's inferops_healer
    switches it for its whole replica."""
    try:
        return read_settings(hv)
    except SettingsError as exc:
        raise PlanError(host, exc.variable, str(exc)) from None


def _healer_router(head: NodeSpec, specs: list[NodeSpec], api_url: str) -> dict[str, Any] | None:
    """issue 14: the router the supervisor takes its replica out of (and back into): its API at the router
    host's plan address when the router runs on a node of the plan, else at the host's name."""
    if not head.router_host:
        return None
    address = next((s.address for s in specs if s.host == head.router_host), head.router_host)
    return {"host": head.router_host, "url": f"http://{_host_port(address, head.ports['router'])}", "worker": api_url}


def _check_ports(host: str, used: dict[str, int]) -> None:
    seen: dict[int, str] = {}
    for service, port in used.items():
        if port in seen:
            raise PlanError(
                host,
                _PORT_VARIABLES[service],
                f"port {port} is used by both {seen[port]} and {service} on this host",
            )
        seen[port] = service


def _environment(node: NodeSpec, head: NodeSpec) -> dict[str, str]:
    try:
        env = derive_nccl_env(node.rdma, node.socket_ifname, node.device, node.nccl_overrides)
    except NcclEnvError as exc:
        raise PlanError(node.host, "inferops_nccl_env", str(exc)) from None
    if node.engine == "vllm":
        env["VLLM_HOST_IP"] = node.address
    else:
        env["SGLANG_HOST_IP"] = node.address
    env["HOST_IP"] = node.address
    # issue 14: a crashing rank prints the Python frames of the fault (SIGSEGV, SIGILL, SIGABRT), the
    # cause the healer quotes; the inventory's inferops_env may still override it
    env["PYTHONFAULTHANDLER"] = "1"
    if node.mode == "ray":
        env["RAY_ADDRESS"] = _host_port(head.address, head.ports["ray"])
    env.update(node.extra_env)
    gloo = env.get("GLOO_SOCKET_IFNAME")
    if gloo and any(ch in gloo for ch in "^=,"):
        raise PlanError(
            node.host,
            "inferops_env",
            f"GLOO_SOCKET_IFNAME must be one interface name, got {gloo!r} (gloo does not read NCCL's syntax)",
        )
    return env


def build_plan(
    hostvars: Mapping[str, Mapping[str, Any]],
    all_hosts: Iterable[str] | None = None,
    monitoring_group: Iterable[str] | None = None,
    outside: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Turn ``{hostname: hostvars}`` into the plan: replicas and per-host serving facts.

    ``all_hosts``: the hosts inferops_router_host may name (default: the hosts of ``hostvars``).
    ``monitoring_group``: the hosts of the inventory group inferops_monitoring (one, or none for the default).
    ``outside``: variables (address, ports) of the router and monitoring hosts that are not serving nodes.
    """
    if not hostvars:
        raise PlanError(None, "inventory", "no hosts in the serving group (inferops_nodes)")
    specs = [read_node(h, served_model_vars(hv)) for h, hv in hostvars.items()]
    _check_unique_addresses(specs)
    _check_router_hosts(specs, hostvars if all_hosts is None else all_hosts)

    replicas: dict[str, list[NodeSpec]] = {}
    for spec in specs:
        replicas.setdefault(spec.replica, []).append(spec)

    router_hosts = {s.router_host for s in specs if s.router_host}
    # --- monitoring (issue 16): which host runs Prometheus; every node's exporters go into its listens
    monitoring = uniform_flag(PlanError, hostvars, "inferops_monitoring", True)
    grafana = uniform_flag(PlanError, hostvars, "inferops_grafana", False)
    first_replica = sorted(replicas, key=natural_key)[0]
    monitoring_host = pick_host(
        PlanError, monitoring_group, router_hosts, assign_ranks(first_replica, replicas[first_replica])[0].host
    )
    # --- end monitoring
    plan_hosts: dict[str, dict[str, Any]] = {}
    plan_replicas: dict[str, dict[str, Any]] = {}
    ranked: dict[str, list[NodeSpec]] = {}
    for index, name in enumerate(sorted(replicas, key=natural_key)):
        ordered = assign_ranks(name, replicas[name])
        _check_uniform(name, ordered)
        head = ordered[0]
        nnodes = len(ordered)
        for node in ordered:
            _check_address(node, node is head, nnodes, len(replicas))
        ranked[name] = ordered
        par = _parallel(name, head, nnodes)
        # the head terminates TLS when the replica has a certificate and no router (the router terminates it then)
        head_tls = head.tls and not head.router_host
        api_url = f"{'https' if head_tls else 'http'}://{_host_port(head.address, head.ports['api'])}"
        peers = [{"host": n.host, "address": n.address, "node_rank": r} for r, n in enumerate(ordered)]
        healer_settings = {n.host: _healer_settings(n.host, hostvars[n.host]) for n in ordered}
        for rank, node in enumerate(ordered):
            tls = node_tls(node.tls, node.tls_ca, head_tls and rank == 0, node.tls_files)
            argv = _engine_argv(node, rank, nnodes, head, par, tls)
            runs_engine = bool(argv)
            used = _used_ports(
                node, rank, nnodes, node.host in router_hosts, healer_settings[head.host]["enabled"] and runs_engine
            )
            node_mon = dict(NODE_MONITORING_DISABLED)
            if monitoring:
                mon_used = node_listens(
                    node.ports,
                    device=node.device,
                    dcgm=_bool(
                        node.host, "inferops_dcgm_exporter", hostvars[node.host].get("inferops_dcgm_exporter", True)
                    ),
                    is_monitoring=node.host == monitoring_host,
                    grafana=grafana,
                )
                used = {**used, **mon_used}
                node_mon = node_monitoring(mon_used, node.device)
            _check_ports(node.host, used)
            secret_env: list[str] = []
            if node.api_key_set:
                secret_env = [SECRET_ENV_VLLM] if node.engine == "vllm" else [SECRET_ENV_GENERIC]
            secret_env += hub_secret_env(hostvars[node.host], node.engine_args)
            plan_hosts[node.host] = {
                "host": node.host,
                "replica": name,
                "replica_index": index,
                "node_rank": rank,
                "is_head": rank == 0,
                "head": head.host,
                "head_address": head.address,
                "address": node.address,
                "nnodes": nnodes,
                "gpus_per_node": node.gpus_per_node,
                "world_size": nnodes * node.gpus_per_node,
                "parallel": dict(par),
                "engine": node.engine,
                "mode": node.mode,
                "device": node.device,
                "ports": {
                    "api": node.ports["api"],
                    "dist_init": node.ports["dist_init"] if node.engine == "sglang" else None,
                    "master": node.ports["master"] if node.engine == "vllm" and node.mode == "native" else None,
                    "ray": node.ports["ray"] if node.mode == "ray" else None,
                    "ray_dashboard": node.ports["ray_dashboard"] if node.mode == "ray" else None,
                },
                "listens": used,
                "argv": argv,
                "command": format_argv(argv) if argv else "",
                "ray_argv": _ray_argv(node, rank, head) if node.mode == "ray" else [],
                "env": _environment(node, head),
                "secret_env": secret_env,
                "api_url": api_url,
                "serves_api": bool(argv) and rank == 0,
                "peers": peers,
                "model_path": node.model_path,
                "served_model_name": node.served_model_name,
                "monitoring": node_mon,
                "tls": tls,
            }
            plan_hosts[node.host]["runtime"] = runtime_spec(hostvars[node.host], plan_hosts[node.host])
            plan_hosts[node.host]["healer"] = healer_node_spec(
                {**healer_settings[node.host], "enabled": healer_settings[head.host]["enabled"]},
                plan_hosts[node.host],
                node.ports["healer"],
                _healer_router(head, specs, api_url),
            )
            plan_hosts[node.host]["warnings"] = [
                *spec_warnings(hostvars[node.host], plan_hosts[node.host]),
                *_api_warnings(node, plan_hosts[node.host]["serves_api"]),
            ]
        plan_replicas[name] = {
            "head": head.host,
            "head_address": head.address,
            "hosts": [n.host for n in ordered],
            "api_url": api_url,
            "nnodes": nnodes,
            "parallel": dict(par),
            "engine": head.engine,
            "mode": head.mode,
            "served_model_name": head.served_model_name,
            "healer": replica_spec(plan_hosts[head.host]["healer"]),
        }
    _check_routers(ranked)
    _check_api_keys(ranked)
    plan = {"version": PLAN_VERSION, "replicas": plan_replicas, "hosts": plan_hosts}
    plan["routers"] = _routers(specs, router_hosts, outside or {})
    plan["monitoring"] = MONITORING_DISABLED
    if monitoring:
        plan["monitoring"] = _monitoring(specs, plan, monitoring_host, grafana, outside or {})
    plan["slurm"] = slurm_spec(hostvars, plan)  # None unless inferops_runtime: slurm (_slurm.py)
    replica_routers = {
        name: (nodes[0].router_host, nodes[0].ports["router"]) for name, nodes in ranked.items() if nodes[0].router_host
    }
    plan["endpoint"] = endpoint(plan_replicas, plan_hosts, replica_routers)
    return plan


def _outside_node(host: str, outside: Mapping[str, Mapping[str, Any]]) -> tuple[str, dict[str, int]]:
    """Address and ports of a router or monitoring host that serves no engine, from its own inventory variables
    (none given: its name is its address, the ports their defaults)."""
    hv = outside.get(host, {})
    return _address(host, hv), _ports(host, hv)


def _routers(
    specs: list[NodeSpec], router_hosts: set[str], outside: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """inferops_plan.routers: {host: {address, port, metrics_port}} (the router role and monitoring read it)."""
    by_host = {s.host: s for s in specs}
    routers = {}
    for host in sorted(router_hosts):
        if host in by_host:
            address, ports = by_host[host].address, by_host[host].ports
        else:
            address, ports = _outside_node(host, outside)
        routers[host] = {"address": address, "port": ports["router"], "metrics_port": ports["router_metrics"]}
    return routers


def _monitoring(
    specs: list[NodeSpec], plan: dict[str, Any], host: str, grafana: bool, outside: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    by_host = {s.host: s for s in specs}
    if host in by_host:
        address, ports = by_host[host].address, by_host[host].ports
    else:
        address, ports = _outside_node(host, outside)
    return monitoring_plan(
        host=host,
        address=address,
        ports=ports,
        grafana=grafana,
        nodes=[plan["hosts"][h] for r in plan["replicas"].values() for h in r["hosts"]],
        routers={h: (r["address"], r["metrics_port"]) for h, r in plan["routers"].items()},
        api_key=any(s.api_key_set for s in specs),
    )


def plan_table(plan: Mapping[str, Any]) -> list[str]:
    """A table a person can check at a glance, then each host's full command line."""
    columns = ("replica", "host", "rank", "head", "address", "gpus", "parallel", "listens")
    rows = []
    for name, replica in plan["replicas"].items():
        for host in replica["hosts"]:
            node = plan["hosts"][host]
            par = node["parallel"]
            rows.append(
                (
                    name,
                    host,
                    str(node["node_rank"]),
                    "*" if node["is_head"] else node["head"],
                    node["address"],
                    str(node["gpus_per_node"]),
                    f"tp{par['tp']} pp{par['pp']} dp{par['dp']} ep{par['ep']}",
                    ",".join(f"{k}:{v}" for k, v in node["listens"].items()),
                )
            )
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    lines = [line, "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines.append("")
    for name, replica in plan["replicas"].items():
        lines.append(f"replica {name}: {replica['api_url']}  ({replica['engine']} {replica['mode']})")
        for host in replica["hosts"]:
            node = plan["hosts"][host]
            if node["ray_argv"]:
                lines.append(f"  {host} ray: {format_argv(node['ray_argv'])}")
            lines.append(f"  {host}: {node['command'] or '(no engine process: Ray worker)'}")
    return [*lines, "", *spec_table(plan)]
