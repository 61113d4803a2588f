"""TLS on the public endpoint (module_utils/_tls.py through build_plan): who terminates it and the endpoint."""

from __future__ import annotations

from ansible_collections.inferops.cluster.plugins.module_utils._plan import build_plan

COMMON = {"inferops_api_key": True, "inferops_engine": "vllm", "inferops_gpus_per_node": 8, "inferops_model_path": "/m"}
TLS = {"inferops_tls_cert": True, "inferops_tls_key": True, "inferops_tls_ca": True}


def plan(hosts, **extra):
    return build_plan({h: {**COMMON, **extra, **own} for h, own in hosts.items()})


def test_endpoint_is_the_head_over_https_without_a_router():
    p = plan({"n1": {"ansible_host": "10.0.0.1"}, "n2": {"ansible_host": "10.0.0.2"}}, **TLS)
    assert p["endpoint"] == {
        "url": "https://10.0.0.1:8000",
        "host": "n1",
        "replica": "r0",
        "via": "head",
        "tls": True,
        "ca_file": "/etc/inferops/tls/ca.pem",
        "cert_file": "/etc/inferops/tls/server.crt",
        "key_file": "/etc/inferops/tls/server.key",
    }


def test_endpoint_is_the_router_over_https_and_the_heads_stay_http():
    hosts = {
        "n1": {"ansible_host": "10.0.0.1", "inferops_replica": "r0"},
        "n2": {"ansible_host": "10.0.0.2", "inferops_replica": "r1"},
    }
    p = plan(hosts, inferops_router_host="n2", inferops_router_port=30443, **TLS)
    assert p["endpoint"]["url"] == "https://10.0.0.2:30443"
    assert (p["endpoint"]["host"], p["endpoint"]["via"]) == ("n2", "router")
    assert [r["api_url"] for r in p["replicas"].values()] == ["http://10.0.0.1:8000", "http://10.0.0.2:8000"]
    assert not any(h["tls"]["serves"] for h in p["hosts"].values())


def test_no_certificate_means_plain_http_everywhere():
    p = plan({"n1": {"ansible_host": "10.0.0.1"}})
    assert p["endpoint"]["url"] == "http://10.0.0.1:8000" and p["endpoint"]["tls"] is False
    assert p["endpoint"]["ca_file"] is None and p["hosts"]["n1"]["tls"]["serves"] is False


def test_docker_head_mounts_the_tls_directory_read_only():
    p = plan({"n1": {"ansible_host": "10.0.0.1", "inferops_runtime": "docker"}}, **TLS)
    mounts = p["hosts"]["n1"]["runtime"]["mounts"]
    assert {"source": "/etc/inferops/tls", "target": "/etc/inferops/tls", "read_only": True, "from": "tls"} in mounts
