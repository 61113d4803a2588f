"""Runtime docker: the wrapper the engine container starts with sources the mounted secrets file and fills the
placeholders of argv, so the engine gets each secret byte for byte (vars/main.yml, run here with sh)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

from ansible_collections.inferops.cluster.plugins.module_utils._envfile import env_file

ROOT = Path(__file__).resolve().parents[3]
VARS = yaml.safe_load((ROOT / "roles" / "inference_server" / "vars" / "main.yml").read_text())
KEY = 'k"e\\y $x %y z`id`'  # issue 15's characters


def wrapper(secret_env: list[str], secrets_path: Path) -> str:
    template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(
        VARS["_inference_server_docker_wrapper"]
    )
    return template.render(inferops_node={"secret_env": secret_env}, _inference_server_container_secrets=secrets_path)


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
@pytest.mark.parametrize("engine_env", ["INFEROPS_API_KEY", "VLLM_API_KEY"])
def test_engine_gets_the_key_unchanged(engine_env: str, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text(env_file({engine_env: KEY, "HF_TOKEN": "hf_$a b"}))
    # the engine: prints its argv (the placeholder filled in) and the variables it reads, NUL-separated
    engine = ["sh", "-c", 'printf "%s\\0" "$@" "$' + engine_env + '" "$HF_TOKEN"', "engine", "--api-key"]
    argv = [
        "/bin/sh",
        "-c",
        wrapper([engine_env, "HF_TOKEN"], secrets),
        "inferops-engine",
        *engine,
        f"${{{engine_env}}}",
    ]
    out = subprocess.run(argv, capture_output=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.split(b"\0")[:-1] == [b"--api-key", KEY.encode(), KEY.encode(), b"hf_$a b"]


BENCH_VARS = yaml.safe_load((ROOT / "roles" / "benchmark" / "vars" / "main.yml").read_text())


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
def test_benchmark_tool_gets_the_key_from_the_file_not_argv(tmp_path: Path) -> None:
    """roles/benchmark: the wrapper sources the 0600 key file; argv holds only the file's path."""
    script = re.search(r"\['/bin/sh', '-c', '([^']+)'", BENCH_VARS["_benchmark_wrapper"]).group(1)
    key_file = tmp_path / ".api-key.env"
    key_file.write_text(env_file({"OPENAI_API_KEY": KEY}))
    tool = ["sh", "-c", 'printf %s "$OPENAI_API_KEY"']
    argv = ["/bin/sh", "-c", script, "inferops-bench", str(key_file), *tool]
    out = subprocess.run(argv, capture_output=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout == KEY.encode()
    assert KEY not in " ".join(argv)
