"""The engine's secrets file: exact bytes per systemd.exec(5)'s EnvironmentFile= rules, read back by sh."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils._envfile import (
    env_file,
    env_file_problems,
    env_file_value,
    secret_values,
)

# systemd.exec(5), EnvironmentFile=: in a double-quoted value "a backslash followed by any of "\`$ will preserve
# that character"; nothing else is special ($ is not expanded, % is no specifier in the file). POSIX sh reads a
# double-quoted string the same way.
RENDERED = [
    ("plain", "sk-abc123", '"sk-abc123"'),
    ("double-quote", 'a"b', r'"a\"b"'),
    ("backslash", "a\\b", r'"a\\b"'),
    ("trailing-backslash", "ab\\", r'"ab\\"'),
    ("dollar-not-expanded", "$HOME${X}", r'"\$HOME\${X}"'),
    ("backquote", "a`id`", r'"a\`id\`"'),
    ("percent-is-no-specifier", "100%n%%", '"100%n%%"'),
    ("spaces-kept", "  a b  ", '"  a b  "'),
    ("single-quote", "it's", '"it\'s"'),
    ("hash-and-semicolon", "#x;y", '"#x;y"'),
    ("equals", "a=b", '"a=b"'),
    ("tab-kept", "a\tb", '"a\tb"'),
    ("issue-15-key", 'k"e\\y $x %y z', r'"k\"e\\y \$x %y z"'),
    ("unicode", "ключ✓", '"ключ✓"'),
    ("empty", "", '""'),
]


@pytest.mark.parametrize(("case", "value", "want"), RENDERED, ids=[r[0] for r in RENDERED])
def test_value_rendered_byte_for_byte(case: str, value: str, want: str) -> None:
    assert env_file_value(value) == want


def test_file_one_line_per_secret_in_order() -> None:
    text = env_file({"VLLM_API_KEY": 'a"b', "HF_TOKEN": "hf_$x"})
    assert text.encode() == b'VLLM_API_KEY="a\\"b"\nHF_TOKEN="hf_\\$x"\n'


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
@pytest.mark.parametrize(("case", "value", "want"), RENDERED, ids=[r[0] for r in RENDERED])
def test_sh_reads_back_the_value(case: str, value: str, want: str, tmp_path: Path) -> None:
    """The Docker runtime's wrapper sources the file with sh: the engine gets the value unchanged."""
    path = tmp_path / "secrets.env"
    path.write_bytes(env_file({"INFEROPS_API_KEY": value}).encode())
    out = subprocess.run(
        ["sh", "-c", 'set -a; . "$1"; set +a; printf %s "$INFEROPS_API_KEY"', "sh", str(path)],
        capture_output=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.stdout == value.encode()


@pytest.mark.parametrize(
    ("value", "what"),
    [("a\nb", "a newline"), ("a\rb", "a carriage return"), ("a\x00b", "a NUL character"), ("x\r\n", "a carriage")],
)
def test_line_breaks_and_nul_are_refused_naming_the_variable_not_the_value(value: str, what: str) -> None:
    problems = env_file_problems({"VLLM_API_KEY": value})
    assert list(problems) == ["VLLM_API_KEY"]
    assert problems["VLLM_API_KEY"].startswith("inferops_api_key (as VLLM_API_KEY) contains ")
    assert what in problems["VLLM_API_KEY"]
    assert value not in problems["VLLM_API_KEY"]
    with pytest.raises(ValueError, match="inferops_api_key") as info:
        env_file({"VLLM_API_KEY": value})
    assert value not in str(info.value)


def test_other_secrets_are_named_by_their_variable() -> None:
    secrets = {"HF_TOKEN": "hf_\nx"}
    problems = env_file_problems(secret_values(["HF_TOKEN", "VLLM_API_KEY"], secrets, "key"), secrets)
    assert list(problems) == ["HF_TOKEN"]
    assert problems["HF_TOKEN"].startswith("inference_server_secrets['HF_TOKEN'] (as HF_TOKEN) contains")


def test_secret_values_default_to_the_api_key() -> None:
    assert secret_values(["VLLM_API_KEY", "HF_TOKEN"], {"HF_TOKEN": "hf"}, "k") == {
        "VLLM_API_KEY": "k",
        "HF_TOKEN": "hf",
    }
    assert secret_values(["INFEROPS_API_KEY"], None, None) == {"INFEROPS_API_KEY": ""}


def test_a_caller_names_its_own_variable() -> None:
    problems = env_file_problems({"OPENAI_API_KEY": "k\x00"}, variables={"OPENAI_API_KEY": "benchmark_api_key"})
    assert problems["OPENAI_API_KEY"].startswith("benchmark_api_key (as OPENAI_API_KEY) contains a NUL character")
