"""Running the collection's playbooks from the tests: the virtualenv's ansible-playbook (or another
of its tools) with the repository's ansible.cfg, and the PLAY RECAP read back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ANSIBLE_PLAYBOOK = BIN / "ansible-playbook"


def ansible(
    *argv: str,
    timeout: float | None = 1800,
    venv_path: bool = False,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """ARGV (ansible-playbook, ansible-vault, ...) in the repository root, output captured, never raising on a
    failed run. venv_path puts the virtualenv's bin first on PATH; env adds or overrides variables; input_text goes
    to its stdin (a secret for ansible-vault encrypt_string, never on a command line)."""
    run_env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    if venv_path:
        run_env["PATH"] = f"{BIN}:{os.environ.get('PATH', '')}"
    run_env.update(env or {})
    return subprocess.run(
        list(argv),
        cwd=ROOT,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        input=input_text,
    )


def ansible_playbook(
    *args: str, timeout: float | None = 1800, venv_path: bool = False, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook ARGS, as ansible() runs it."""
    return ansible(str(ANSIBLE_PLAYBOOK), *args, timeout=timeout, venv_path=venv_path, env=env)


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines -> {host: {ok, changed, failed, ...}} summed over every play."""
    totals: dict[str, dict[str, int]] = {}
    for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, flags=re.M):
        for key, value in re.findall(r"(\w+)=(\d+)", counters):
            totals.setdefault(host, {}).setdefault(key, 0)
            totals[host][key] += int(value)
    return totals


def task_outcomes(output: str, task: str) -> list[list[str]]:
    """Each run of a task (its name contains TASK): the outcome word of each host line the default callback
    printed under it ('ok', 'changed', 'skipping', 'fatal', ...)."""
    runs = []
    for block in output.split("\nTASK [")[1:]:
        header, _sep, body = block.partition("\n")
        if task in header.split("]", 1)[0]:
            runs.append(re.findall(r"^(\w+): \[", body.split("\nTASK [", 1)[0], flags=re.M))
    return runs
