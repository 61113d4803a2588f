"""meta/argument_specs.yml of comm_check and benchmark in step with defaults/main.yml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"
MINE = ["comm_check", "benchmark"]


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


@pytest.mark.parametrize("role", MINE)
def test_every_default_is_specified_with_the_same_default(role):
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    options = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options)
    for name, value in defaults.items():
        assert options[name].get("default") == value, name
        assert options[name].get("description"), name


@pytest.mark.parametrize("role", MINE)
def test_variables_carry_the_role_prefix(role):
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    internal = _load(ROLES / role / "vars" / "main.yml")
    assert [name for name in defaults if not name.startswith(f"{role}_")] == []
    assert [name for name in internal if not name.startswith(f"_{role}_")] == []


@pytest.mark.parametrize("role", MINE)
def test_main_only_dispatches(role):
    tasks = _load(ROLES / role / "tasks" / "main.yml")
    assert all(set(task) <= {"name", "ansible.builtin.import_tasks", "tags", "when"} for task in tasks)
    for task in tasks:
        assert (ROLES / role / "tasks" / task["ansible.builtin.import_tasks"]).is_file()
