"""roles/prometheus/templates/prometheus.yml.j2 rendered from a real plan: the engines' key only by file, heads
that serve HTTPS themselves scraped over https with the CA; `promtool check config` accepts the result."""

from __future__ import annotations

import shutil
import subprocess

import jinja2
import pytest
import yaml
from rules_render import ROLE

from ansible_collections.inferops.cluster.plugins.module_utils._plan import build_plan

COMMON = {"inferops_model_path": "/m", "inferops_gpus_per_node": 8, "inferops_api_key": "k"}


def render(plan, tmp_path, ca: str) -> str:
    values = {
        "ansible_managed": "Ansible managed",
        "prometheus_scrape_interval": "15s",
        "prometheus_scrape_timeout": "10s",
        "prometheus_evaluation_interval": "15s",
        "prometheus_rules_file": str(tmp_path / "rules.yml"),
        "_prometheus_listen": "10.0.0.1",
        "prometheus_port": 9090,
        "prometheus_alertmanager_port": 9093,
        "prometheus_targets": plan["monitoring"]["targets"],
        "prometheus_engine_key": "k",
        "prometheus_engine_key_file": str(tmp_path / "key"),
        "prometheus_engine_ca": ca,
        "prometheus_engine_ca_file": str(tmp_path / "ca.pem"),
        "inventory_hostname": "a1",
    }
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["comment"] = lambda text: f"#\n# {text}\n#"
    return env.from_string((ROLE / "templates" / "prometheus.yml.j2").read_text(encoding="utf-8")).render(values)


def jobs(text: str) -> dict:
    return {job["job_name"]: job for job in yaml.safe_load(text)["scrape_configs"]}


@pytest.mark.parametrize("tls", [False, True])
def test_engine_jobs_follow_the_heads_scheme(tmp_path, tls):
    extra = {"inferops_tls_cert": True, "inferops_tls_key": True, "inferops_tls_ca": True} if tls else {}
    plan = build_plan(
        {
            "a1": {**COMMON, "ansible_host": "10.0.0.1", "inferops_replica": "a", **extra},
            "a2": {**COMMON, "ansible_host": "10.0.0.2", "inferops_replica": "a", **extra},
        }
    )
    text = render(plan, tmp_path, "PEM" if tls else "")
    assert "k\n" not in text and ": k" not in text  # the key never in the config, only its file
    vllm = jobs(text)["vllm"]
    assert vllm["authorization"] == {"type": "Bearer", "credentials_file": str(tmp_path / "key")}
    labels = vllm["static_configs"][0]["labels"]
    if tls:
        assert labels["__scheme__"] == "https"
        assert vllm["tls_config"] == {"ca_file": str(tmp_path / "ca.pem")}
    else:
        assert "__scheme__" not in labels and "tls_config" not in vllm
    promtool = shutil.which("promtool")
    assert promtool, "promtool is a host tool (scripts/host-tools.txt)"
    for name in ("rules.yml", "key", "ca.pem"):
        (tmp_path / name).write_text("groups: []\n" if name == "rules.yml" else "x\n")
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    check = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
