"""The recording and alert rules: promtool checks them and runs their unit tests (rules_test.yml) on recorded
series: vLLM/sglang series as the engines name them, DCGM's metric names (dcgm-exporter never ran here), the
textfile collector's RDMA series."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml
from rules_render import ROOT, render_rules

HERE = Path(__file__).resolve().parent
RUNBOOK = ROOT / "docs" / "runbooks" / "alerts.md"


def _promtool(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/host-tools.txt lists it (Debian package prometheus)"
    return subprocess.run([promtool, *argv], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_rules_pass_promtool_check(tmp_path):
    (tmp_path / "inferops-rules.yml").write_text(render_rules())
    proc = _promtool("check", "rules", "inferops-rules.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"SUCCESS: \d+ rules found", proc.stdout + proc.stderr)


def test_rules_unit_tests(tmp_path):
    (tmp_path / "inferops-rules.yml").write_text(render_rules())
    shutil.copy(HERE / "rules_test.yml", tmp_path / "rules_test.yml")
    proc = _promtool("test", "rules", "rules_test.yml", cwd=tmp_path)
    print(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_every_alert_is_tested_and_has_a_runbook_section():
    rules = yaml.safe_load(render_rules())
    alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    tests = yaml.safe_load((HERE / "rules_test.yml").read_text())
    tested = {t["alertname"] for case in tests["tests"] for t in case.get("alert_rule_test", []) if t["exp_alerts"]}
    assert sorted(set(alerts) - tested) == []
    anchors = {line[3:].strip().lower() for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")}
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                url = rule["annotations"]["runbook_url"]
                assert url.endswith(f"alerts.md#{rule['alert'].lower()}"), url
                assert rule["alert"].lower() in anchors, rule["alert"]
