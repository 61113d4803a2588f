"""module_utils/_secrets.py: which keys an HTTP header carries, the launcher's argv, redaction of every spelling."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils._secrets import (
    LAUNCHER,
    header_value_problem,
    launch_argv,
    redact,
    secret_forms,
)

KEY = 'k"e\\y $x %y z'


@pytest.mark.parametrize("value", [KEY, "sk-abc", "a b", "~!@#$%^&*()_+{}|:<>?`-=[]\\;',./", "", None])
def test_header_carries_printable_ascii(value):
    assert header_value_problem("inferops_api_key", value) is None


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("a\nb", "a newline"),
        ("a\rb", "a carriage return"),
        ("a\tb", "a tab"),
        ("a\x00b", "a NUL character"),
        ("a\x7fb", "a control character"),
        ("clé", "a character outside ASCII"),
        (" lead", "begins or ends with a blank"),
        ("trail ", "begins or ends with a blank"),
    ],
)
def test_header_refuses_naming_the_variable_never_the_value(value, what):
    problem = header_value_problem("inferops_hf_token", value)
    assert problem and problem.startswith("inferops_hf_token ") and what in problem
    assert value.strip() not in problem


def test_launch_argv_wraps_python_module_commands_only_when_a_placeholder_is_there():
    argv = ["/venv/bin/python3", "-m", "sglang.launch_server", "--api-key", "${INFEROPS_API_KEY}", "--port", "8000"]
    launched = launch_argv(argv, ["INFEROPS_API_KEY", "HF_TOKEN"])
    assert launched[:2] == ["/venv/bin/python3", "-c"] and launched[3:] == argv[1:]
    assert "('INFEROPS_API_KEY',)" in launched[2] and "\n" not in launched[2] and "%" not in launched[2]
    assert launch_argv(argv, ["HF_TOKEN"]) == argv  # no placeholder of these names: unchanged
    assert launch_argv(["vllm", "serve", "/m"], ["VLLM_API_KEY"]) == ["vllm", "serve", "/m"]
    assert "{names!r}" in LAUNCHER


def test_launch_argv_refuses_what_it_cannot_keep_off_the_command_line():
    with pytest.raises(ValueError, match=r"INFEROPS_API_KEY.*cannot be launched"):
        launch_argv(["/usr/bin/engine", "--api-key", "${INFEROPS_API_KEY}"], ["INFEROPS_API_KEY"])


def test_redact_replaces_plain_base64_and_url_encoded_forms():
    text = " | ".join(
        [
            f"server_args=ServerArgs(api_key='{KEY}')",
            base64.b64encode(f"Bearer {KEY}".encode()).decode(),
            quote(KEY, safe=""),
            base64.b64encode(KEY.encode()).decode(),
        ]
    )
    out = redact(text, [KEY, ""])
    assert all(form not in out for form in secret_forms(KEY))
    assert out.count("<redacted>") == 4
    assert redact("nothing here", [KEY]) == "nothing here"
