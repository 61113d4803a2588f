"""roles/open_webui: authentication always on, the admin account from (vaulted) inventory values that the role
refuses to run without, every secret through the 0600 env file and never in the output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "open_webui"
PASSWORD = "s3cret-Admin-pw!"  # a test value
GOOD = {
    "open_webui_api_key": "test-api-key",
    "open_webui_secret_key": "0123456789abcdef0123",
    "open_webui_admin_email": "admin@example.invalid",
    "open_webui_admin_password": PASSWORD,
}


def preflight(tmp_path: Path, extra: dict) -> subprocess.CompletedProcess[str]:
    """The role's preflight alone (--tags preflight) on the controller: no container is touched."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "vars": extra,
                    "roles": [{"role": str(ROLE)}],
                }
            ]
        )
    )
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(playbook), "--tags",
         "preflight", "-v"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("missing", ["open_webui_admin_email", "open_webui_admin_password"])
def test_no_admin_account_is_refused(missing: str, tmp_path: Path) -> None:
    values = {**GOOD, missing: ""}
    run = preflight(tmp_path, values)
    assert run.returncode != 0
    assert "open_webui_admin_email (an e-mail address) and open_webui_admin_password" in run.stdout
    assert PASSWORD not in run.stdout + run.stderr


def test_a_password_with_a_line_break_is_refused_unseen(tmp_path: Path) -> None:
    run = preflight(tmp_path, {**GOOD, "open_webui_admin_password": PASSWORD + "\nEXTRA=1"})
    assert run.returncode != 0
    assert PASSWORD not in run.stdout + run.stderr
    assert "censored" in run.stdout  # no_log


def test_complete_values_pass_without_showing_them(tmp_path: Path) -> None:
    run = preflight(tmp_path, GOOD)
    assert run.returncode == 0, run.stdout[-3000:]
    assert PASSWORD not in run.stdout + run.stderr


def test_auth_is_forced_on_and_the_admin_goes_through_the_env_file() -> None:
    service = yaml.safe_load((ROLE / "tasks" / "service.yml").read_text())[0]
    env_expr = service["vars"]["_open_webui_env"]
    # the last combine sets WEBUI_AUTH: open_webui_extra_env cannot turn it off
    assert env_expr.rstrip().endswith("| combine({'WEBUI_AUTH': 'True'}) }}")
    assert "ADMIN" not in env_expr  # the admin's values come from the env file only, not the task's arguments
    assert service["community.docker.docker_container"]["env_file"] == "{{ open_webui_env_file }}"
    assert service["no_log"] is True
    template = (ROLE / "templates" / "open-webui.env.j2").read_text()
    assert "WEBUI_ADMIN_EMAIL={{ open_webui_admin_email }}" in template
    assert "WEBUI_ADMIN_PASSWORD={{ open_webui_admin_password }}" in template
    configure = yaml.safe_load((ROLE / "tasks" / "configure.yml").read_text())
    env_task = next(t for t in configure if t.get("ansible.builtin.template", {}).get("src") == "open-webui.env.j2")
    assert env_task["ansible.builtin.template"]["mode"] == "0600"
    assert env_task["no_log"] is True
