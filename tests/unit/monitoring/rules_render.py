"""Render roles/prometheus/templates/inferops-rules.yml.j2 with the role's defaults, as the role does."""

from __future__ import annotations

from pathlib import Path

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "prometheus"
RUNBOOK_BASE = "https://example.invalid/inferops/cluster/blob/main/docs/runbooks/alerts.md"


def render_rules(**overrides: object) -> str:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    values = {
        k: v for k, v in defaults.items() if k.startswith("prometheus_alert_") or k == "prometheus_runbook_base_url"
    }
    values.update(overrides, ansible_managed="Ansible managed")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["comment"] = lambda text: f"#\n# {text}\n#"
    return env.from_string((ROLE / "templates" / "inferops-rules.yml.j2").read_text(encoding="utf-8")).render(values)
