"""The dashboards: valid Grafana JSON on the provisioned data source; every query parses (promtool); the panels that
need GPUs or RDMA (marked ``inferops_requires``: gpu / fabric; the lab has neither) return data on recorded series:
the H200's nvidia-smi capture rendered by the textfile collector under DCGM's names, an XID series under
dcgm-exporter's name, and RDMA counters read from a sysfs tree laid out as the kernel does. (Panels that need
neither are run against the lab's Prometheus in tests/integration/test_monitoring.py.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from rules_render import ROOT, render_rules
from test_textfile import H200, _sysfs

from ansible_collections.inferops.cluster.plugins.module_utils import _textfile as tf

DASHBOARDS = ROOT / "roles" / "grafana" / "files" / "dashboards"
FILES = sorted(DASHBOARDS.glob("*.json"))
SERIES = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)\{(.*)\} (\S+)$")


def _panels():
    for path in FILES:
        for panel in json.loads(path.read_text())["panels"]:
            yield path.name, panel


def test_dashboards_are_grafana_json_on_the_provisioned_data_source():
    assert [p.name for p in FILES] == ["inferops-cluster.json", "inferops-fabric.json", "inferops-nodes.json"]
    configure = yaml.safe_load((ROOT / "roles" / "grafana" / "tasks" / "configure.yml").read_text())
    copied = next(t for t in configure if "dashboards" in t["name"] and "loop" in t)["loop"]
    assert sorted(copied) == [p.name for p in FILES]
    for name, panel in _panels():
        assert panel["datasource"]["uid"] == "inferops-prometheus", (name, panel["title"])
        assert panel["inferops_requires"] in ("", "gpu", "fabric"), (name, panel["title"])
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])
    # the three views the issue asks for
    titles = " | ".join(panel["title"] for _name, panel in _panels())
    for words in ("tokens/s", "Time to first token", "KV cache", "waiting", "GPU utilisation", "GPU memory",
                  "GPU power", "XID", "RDMA error counters"):  # fmt: skip
        assert words in titles


def _input_series(tmp_path: Path) -> list[dict]:
    node = 'job="node",host="g1",replica="r0",node_rank="0",instance="10.0.0.1:9100"'
    pages = [
        tf.render_smi(tf.parse_smi_csv((H200 / "smi_monitoring.csv").read_text())),
        tf.render_rdma(tf.read_rdma(str(_sysfs(tmp_path / "ib")))),
        # dcgm-exporter's XID series (the fallback cannot read XIDs): name and labels as dcgm-exporter writes them
        'DCGM_FI_DEV_XID_ERRORS{gpu="0",UUID="GPU-05f4ceb0-8135-9102-a534-3beeeb56aab6",modelName="NVIDIA H200",'
        'Hostname="g1"} 0',
    ]
    series = []
    for page in pages:
        for line in page.splitlines():
            match = SERIES.match(line)
            if match:
                name, labels, value = match.groups()
                growth = "+4096" if "bytes_total" in name or "counter" in name else "+0"
                series.append({"series": f"{name}{{{labels},{node}}}", "values": f"{float(value)}{growth}x40"})
    # the recording rules the fabric panel reads need the engine's tokens and the node's up
    series.append({"series": f"up{{{node}}}", "values": "1x40"})
    series.append({"series": 'vllm:generation_tokens_total{job="vllm",replica="r0",host="g1"}', "values": "0+100x40"})
    return series


def test_gpu_and_fabric_panels_return_data_on_recorded_series(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool
    (tmp_path / "inferops-rules.yml").write_text(render_rules())
    panels = [(n, p, t["expr"]) for n, p in _panels() if p["inferops_requires"] for t in p["targets"]]
    assert {p["inferops_requires"] for _n, p, _e in panels} == {"gpu", "fabric"}
    # one alert per panel query: count(EXPR) fires (with no labels) exactly when the query returns data
    alerts = [{"alert": f"Panel{i}", "expr": f"count({expr}) >= 0"} for i, (_n, _p, expr) in enumerate(panels)]
    (tmp_path / "panels.yml").write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": alerts}]}))
    test = {
        "rule_files": ["inferops-rules.yml", "panels.yml"],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": _input_series(tmp_path),
                "alert_rule_test": [
                    {"eval_time": "9m", "alertname": a["alert"], "exp_alerts": [{"exp_labels": {}}]} for a in alerts
                ],
            }
        ],
    }
    (tmp_path / "panels_test.yml").write_text(yaml.safe_dump(test))
    proc = subprocess.run(
        [promtool, "test", "rules", "panels_test.yml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    failed = [panels[int(i)][1]["title"] for i in re.findall(r"alertname: Panel(\d+)", proc.stdout + proc.stderr)]
    assert proc.returncode == 0, f"panels without data on the recorded series: {failed}\n{proc.stdout[-3000:]}"
