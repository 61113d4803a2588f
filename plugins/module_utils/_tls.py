# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS on the public endpoint: who terminates it, where the files live, the URL clients use.

The public endpoint is the router when a replica has one (sglang-router's --tls-cert-path/--tls-key-path), else
the replica's head (the engines' --ssl-certfile/--ssl-keyfile). Replicas behind a router keep plain HTTP between
the router and the heads (inside the firewalled cluster). The certificate, its key and the CA clients verify with
come from the inventory (inferops_tls_cert, inferops_tls_key vaulted, inferops_tls_ca, PEM text); the plan reads
only whether each is set (the action hands it booleans) and names the files the roles write. Pure: no Ansible.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

TLS_VARIABLES = ("inferops_tls_cert", "inferops_tls_key", "inferops_tls_ca")
DEFAULT_CONFIG_DIR = "/etc/inferops"
# Engine flags that take the files: the same spelling in vLLM and sglang.
ENGINE_FLAGS = ("--ssl-certfile", "--ssl-keyfile")
MANAGED_FLAGS = {"ssl-certfile": "inferops_tls_cert", "ssl-keyfile": "inferops_tls_key"}


def _fail(host: str, variable: str, message: str) -> None:
    from ansible_collections.inferops.cluster.plugins.module_utils._plan import PlanError

    raise PlanError(host, variable, message)


def tls_files(hv: Mapping[str, Any]) -> dict[str, str]:
    """Where the roles write the certificate, key and CA on a node (under inference_server_config_dir)."""
    base = str(hv.get("inference_server_config_dir") or DEFAULT_CONFIG_DIR).rstrip("/") or "/"
    tls = posixpath.join(base, "tls")
    return {
        "dir": tls,
        "cert_file": f"{tls}/server.crt",
        "key_file": f"{tls}/server.key",
        "ca_file": f"{tls}/ca.pem",
    }


def read_tls(host: str, hv: Mapping[str, Any]) -> tuple[bool, bool]:
    """(certificate and key set, CA set) for one host; a certificate without its key (or the reverse) is refused."""
    cert, key, ca = (bool(hv.get(name)) for name in TLS_VARIABLES)
    if cert and not key:
        _fail(host, "inferops_tls_key", "is not set but inferops_tls_cert is: give the certificate's key (vaulted)")
    if key and not cert:
        _fail(host, "inferops_tls_cert", "is not set but inferops_tls_key is: give the certificate (PEM)")
    if ca and not cert:
        _fail(host, "inferops_tls_cert", "is not set but inferops_tls_ca is: the CA verifies a certificate")
    return cert, ca


def node_tls(enabled: bool, has_ca: bool, serves: bool, files: Mapping[str, str]) -> dict[str, Any]:
    """The node spec's ``tls``: whether this node terminates TLS (a head without a router) and the files."""
    return {
        "enabled": enabled,
        "serves": serves,
        "cert_file": files["cert_file"] if enabled else None,
        "key_file": files["key_file"] if enabled else None,
        # None: clients verify with the system's trust store (a certificate from a public CA)
        "ca_file": files["ca_file"] if enabled and has_ca else None,
    }


def engine_tls_argv(node_tls_spec: Mapping[str, Any]) -> list[str]:
    """``--ssl-certfile CERT --ssl-keyfile KEY`` for a node that terminates TLS, else nothing."""
    if not node_tls_spec.get("serves"):
        return []
    return [ENGINE_FLAGS[0], str(node_tls_spec["cert_file"]), ENGINE_FLAGS[1], str(node_tls_spec["key_file"])]


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def endpoint(
    replicas: Mapping[str, Mapping[str, Any]],
    hosts: Mapping[str, Mapping[str, Any]],
    routers: Mapping[str, tuple[str, int]],
) -> dict[str, Any]:
    """``inferops_plan.endpoint``: what clients outside the cluster use.

    ``routers``: replica name -> (router host, router port). The first replica's router when it has one (URL on
    the router's address and port; https when the replica's nodes have a certificate), else the first replica's head
    (its api_url, https when it terminates TLS). ``ca_file`` is the CA's path on the nodes (None: the system's
    trust store, or no TLS); ``cert_file``/``key_file`` where the terminating host keeps its certificate.
    """
    name = next(iter(replicas))
    replica = replicas[name]
    head = hosts[replica["head"]]
    tls = head["tls"]
    router, port = routers.get(name, ("", 0))
    if router:
        node = hosts.get(router)
        address = node["address"] if node else router
        scheme = "https" if tls["enabled"] else "http"
        url = f"{scheme}://{_host_port(address, port)}"
        host = router
    else:
        url, host = replica["api_url"], replica["head"]
    return {
        "url": url,
        "host": host,
        "replica": name,
        "via": "router" if router else "head",
        "tls": url.startswith("https://"),
        "ca_file": tls["ca_file"],
        "cert_file": tls["cert_file"],
        "key_file": tls["key_file"],
    }
