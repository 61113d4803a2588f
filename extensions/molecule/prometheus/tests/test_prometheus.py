"""What the prometheus role runs: Debian's Prometheus and Alertmanager on the node's address, the plan's targets
scraped (node exporter, an engine serving a captured vLLM page), the rules loaded, the key only in its 0600 file."""

from __future__ import annotations

import json
import time

KEY = "molecule-engine-key-5c1e"


def _api(host, port: int, path: str):
    address = host.interface("eth0").addresses[0]
    return json.loads(host.check_output(f"curl -sf http://{address}:{port}{path}"))


def test_packages_and_flags(host):
    for pkg in ("prometheus", "prometheus-alertmanager"):
        assert host.package(pkg).is_installed
    flags = host.file("/etc/default/prometheus").content_string
    assert "--storage.tsdb.retention.time=3d" in flags and "--storage.tsdb.retention.size=1GB" in flags
    assert "--cluster.listen-address=" in host.file("/etc/default/prometheus-alertmanager").content_string
    address = host.interface("eth0").addresses[0]
    assert host.socket(f"tcp://{address}:9090").is_listening
    assert host.socket(f"tcp://{address}:9093").is_listening
    assert not host.socket("tcp://0.0.0.0:9094").is_listening  # no gossip port


def test_key_only_in_its_file(host):
    key_file = host.file("/etc/prometheus/inferops-engine-key")
    assert key_file.mode == 0o600 and key_file.user == "prometheus"
    assert key_file.content_string == KEY
    config = host.file("/etc/prometheus/prometheus.yml").content_string
    assert KEY not in config and "credentials_file: /etc/prometheus/inferops-engine-key" in config
    assert KEY not in host.check_output("ps -eo args")


def test_targets_up_and_rules_recorded(host):
    deadline = time.monotonic() + 90
    while True:
        targets = _api(host, 9090, "/api/v1/targets")["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        if (set(health.values()) == {"up"} and len(health) == 4) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert health == {"prometheus": "up", "alertmanager": "up", "node": "up", "vllm": "up"}
    rules = _api(host, 9090, "/api/v1/rules")["data"]["groups"]
    names = {r["name"] for g in rules for r in g["rules"]}
    assert {"InferopsReplicaDown", "InferopsRdmaTrafficFlat", "inferops:replica_kv_cache_usage:ratio"} <= names
    while time.monotonic() < deadline:
        result = _api(host, 9090, "/api/v1/query?query=inferops:replica_requests_running")["data"]["result"]
        if result:
            break
        time.sleep(3)
    assert result and result[0]["metric"] == {"__name__": "inferops:replica_requests_running", "replica": "r0"}


def test_alertmanager_has_the_receiver(host):
    status = _api(host, 9093, "/api/v2/status")
    assert "name: oncall" in status["config"]["original"]
    assert "url: http://127.0.0.1:9/alerts" in status["config"]["original"]
    assert host.file("/etc/prometheus/alertmanager.yml").mode == 0o640
