"""Every role: meta/argument_specs.yml in step with defaults/main.yml, prefixed variables, a dispatching main.yml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES_DIR = Path(__file__).resolve().parents[3] / "roles"
# Known gap, not yet mended: these roles' argument specs state templated defaults
# ("{{ inferops_router_port }}" ...) in prose instead of as `default:`.
NOT_YET_IN_STEP = {"firewall", "open_webui", "router"}
ROLES = sorted(
    p.name for p in ROLES_DIR.iterdir() if (p / "defaults" / "main.yml").is_file() and p.name not in NOT_YET_IN_STEP
)


def _load(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_specified_with_the_same_default(role):
    defaults = _load(ROLES_DIR / role / "defaults" / "main.yml")
    options = _load(ROLES_DIR / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options)
    for name, value in defaults.items():
        assert options[name].get("default") == value, name
        assert options[name].get("description"), name


@pytest.mark.parametrize("role", ROLES)
def test_variables_carry_the_role_prefix(role):
    defaults = _load(ROLES_DIR / role / "defaults" / "main.yml")
    assert [name for name in defaults if not name.startswith(f"{role}_")] == []


@pytest.mark.parametrize("role", ROLES)
def test_tasks_main_only_dispatches(role):
    for task in _load(ROLES_DIR / role / "tasks" / "main.yml"):
        module = next(k for k in task if k.startswith("ansible.builtin."))
        assert module in {"ansible.builtin.import_tasks", "ansible.builtin.include_tasks"}, task["name"]
