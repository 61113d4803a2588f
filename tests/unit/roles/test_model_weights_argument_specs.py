"""roles/model_weights: meta/argument_specs.yml in step with defaults/main.yml."""

from __future__ import annotations

from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[3] / "roles" / "model_weights"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def test_every_default_is_specified_with_the_same_default():
    defaults = _load(ROLE / "defaults" / "main.yml")
    options = _load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options)
    for name, value in defaults.items():
        assert options[name].get("default") == value, name
        assert options[name].get("description"), name


def test_variables_carry_the_role_prefix():
    defaults = _load(ROLE / "defaults" / "main.yml")
    assert [name for name in defaults if not name.startswith("model_weights_")] == []
    internal = _load(ROLE / "vars" / "main.yml")
    assert [name for name in internal if not name.startswith("_model_weights_")] == []


def test_ready_entry_point_only_names_known_variables():
    specs = _load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]
    defaults = _load(ROLE / "defaults" / "main.yml")
    for name, option in specs["ready"]["options"].items():
        assert option.get("default") == defaults[name], name


def test_main_only_dispatches():
    tasks = _load(ROLE / "tasks" / "main.yml")
    allowed = {"name", "ansible.builtin.import_tasks", "ansible.builtin.include_tasks", "tags", "when"}
    assert all(set(t) <= allowed for t in tasks)
