"""meta/argument_specs.yml of the node-preparation roles in step with defaults/main.yml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"
NODE_PREP = ["docker", "nvidia_driver", "rdma", "nvidia_container_toolkit"]


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


@pytest.mark.parametrize("role", NODE_PREP)
def test_every_default_is_specified_with_the_same_default(role):
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    options = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options)
    for name, value in defaults.items():
        assert options[name].get("default") == value, name
        assert options[name].get("description"), name


@pytest.mark.parametrize("role", NODE_PREP)
def test_variables_carry_the_role_prefix(role):
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    assert [name for name in defaults if not name.startswith(f"{role}_")] == []


@pytest.mark.parametrize("role", NODE_PREP)
def test_other_entry_points_only_name_known_variables(role):
    specs = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    for entry, spec in specs.items():
        for name, option in (spec.get("options") or {}).items():
            assert name in defaults, f"{entry}: {name}"
            assert option.get("default") == defaults[name], f"{entry}: {name}"
