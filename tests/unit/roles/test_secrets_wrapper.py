"""Secrets reach the engine byte for byte and never its command line.

Runtime docker: the wrapper the engine container starts with sources the mounted secrets file (vars/main.yml, run
here with sh); a secret placeholder in argv (sglang's --api-key ${INFEROPS_API_KEY}) is filled inside the Python
process by the launcher (module_utils/_secrets.py), here with sglang's real argument parser from the engines
virtualenv: sglang gets the key unchanged, /proc/PID/cmdline holds only the placeholder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

from ansible_collections.inferops.cluster.plugins.module_utils._envfile import env_file
from ansible_collections.inferops.cluster.plugins.module_utils._secrets import launch_argv

ROOT = Path(__file__).resolve().parents[3]
VARS = yaml.safe_load((ROOT / "roles" / "inference_server" / "vars" / "main.yml").read_text())
KEY = 'k"e\\y $x %y z`id`'  # issue 15's characters
ENGINES_PY = Path(os.environ.get("INFEROPS_ENGINES_VENV", ROOT / ".cache" / "engines-venv")) / "bin" / "python"
# Stands in for `python3 -m sglang.launch_server`: parses argv with sglang's own prepare_server_args, reports what
# the server would use and what the kernel shows as this process's command line.
ENGINE = """
import json, os, sys
from sglang.srt.server_args import prepare_server_args
args = prepare_server_args(sys.argv[1:])
print(json.dumps({"api_key": args.api_key, "hf_token": os.environ.get("HF_TOKEN"),
                  "env_key": os.environ.get("INFEROPS_API_KEY"),
                  "cmdline": open("/proc/self/cmdline", "rb").read().decode("utf-8", "replace")}))
"""


def wrapper(secrets_path: Path) -> str:
    template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(
        VARS["_inference_server_docker_wrapper"]
    )
    return template.render(_inference_server_container_secrets=secrets_path)


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
def test_sglang_gets_the_key_unchanged_and_off_its_command_line(tmp_path: Path) -> None:
    if not ENGINES_PY.exists():
        pytest.fail(f"engines venv missing at {ENGINES_PY}: run scripts/engines-venv.sh (make unit does)")
    (tmp_path / "fake_sglang_server.py").write_text(ENGINE)
    secrets = tmp_path / "secrets.env"
    secrets.write_text(env_file({"INFEROPS_API_KEY": KEY, "HF_TOKEN": "hf_$a b"}))
    plan_argv = [str(ENGINES_PY), "-m", "fake_sglang_server", "--model-path", "/m", "--api-key", "${INFEROPS_API_KEY}"]
    argv = ["/bin/sh", "-c", wrapper(secrets), "inferops-engine", *launch_argv(plan_argv, ["INFEROPS_API_KEY"])]
    out = subprocess.run(
        argv, capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["api_key"] == KEY and seen["hf_token"] == "hf_$a b"
    assert KEY not in seen["cmdline"] and "${INFEROPS_API_KEY}" in seen["cmdline"]
    assert seen["env_key"] is None  # dropped from the environment once used: children do not inherit it
    assert all(KEY not in item for item in argv)


def test_launcher_refuses_a_secret_on_a_non_python_command_line() -> None:
    with pytest.raises(ValueError, match="INFEROPS_API_KEY"):
        launch_argv(["vllm", "serve", "/m", "--api-key", "${INFEROPS_API_KEY}"], ["INFEROPS_API_KEY"])
    assert launch_argv(["vllm", "serve", "/m"], ["VLLM_API_KEY"]) == ["vllm", "serve", "/m"]


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
def test_launcher_fails_clearly_without_the_secret(tmp_path: Path) -> None:
    argv = launch_argv(["python3", "-m", "json.tool", "${INFEROPS_API_KEY}"], ["INFEROPS_API_KEY"])
    out = subprocess.run(argv, capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 1 and "INFEROPS_API_KEY not set" in out.stderr


BENCH_VARS = yaml.safe_load((ROOT / "roles" / "benchmark" / "vars" / "main.yml").read_text())


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
def test_benchmark_tool_gets_the_key_from_the_file_not_argv(tmp_path: Path) -> None:
    """roles/benchmark: the wrapper (on the client, or inside the tool's container) sources the 0600 key file;
    argv holds only the file's path."""
    script = BENCH_VARS["_benchmark_key_script"]
    key_file = tmp_path / ".api-key.env"
    key_file.write_text(env_file({"OPENAI_API_KEY": KEY}))
    tool = ["sh", "-c", 'printf %s "$OPENAI_API_KEY"']
    argv = ["/bin/sh", "-c", script, "inferops-bench", str(key_file), *tool]
    out = subprocess.run(argv, capture_output=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout == KEY.encode()
    assert KEY not in " ".join(argv)
