"""meta/argument_specs.yml of the serving and lab roles in step with defaults/main.yml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"
SERVING = ["inference_server", "ca_trust", "lab"]


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


@pytest.mark.parametrize("role", SERVING)
def test_every_default_is_specified_with_the_same_default(role):
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    options = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options)
    for name, value in defaults.items():
        assert options[name].get("default") == value, name
        assert options[name].get("description"), name


@pytest.mark.parametrize("role", SERVING)
def test_variables_carry_the_role_prefix(role):
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    assert [name for name in defaults if not name.startswith(f"{role}_")] == []


def test_tasks_main_only_dispatches():
    for role in SERVING:
        for task in _load(ROLES / role / "tasks" / "main.yml"):
            module = next(k for k in task if k.startswith("ansible.builtin."))
            assert module in {"ansible.builtin.import_tasks", "ansible.builtin.include_tasks"}, (role, task["name"])
