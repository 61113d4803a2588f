"""Argv rendering and redaction."""

from __future__ import annotations

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils._argv import (
    format_argv,
    redact_argv,
    render_flags,
)


@pytest.mark.parametrize(
    ("args", "argv"),
    [
        ({"max-model-len": 4096}, ["--max-model-len", "4096"]),
        ({"trust_remote_code": True}, ["--trust-remote-code"]),
        ({"enforce-eager": False, "x": None}, []),
        ({"allowed-origins": ["a", "b"]}, ["--allowed-origins", "a", "b"]),
        ({"allowed-origins": []}, []),
        ({"hf-overrides": {"b": 1, "a": [1, 2]}}, ["--hf-overrides", '{"a":[1,2],"b":1}']),
        ({"-O": 3}, ["-O", "3"]),
        (
            {"mem-fraction-static": 0.9, "chunked-prefill-size": -1},
            ["--mem-fraction-static", "0.9", "--chunked-prefill-size", "-1"],
        ),
        (None, []),
    ],
)
def test_render_flags(args, argv) -> None:
    assert render_flags(args) == argv


def test_render_keeps_inventory_order() -> None:
    assert render_flags({"b": 1, "a": 2}) == ["--b", "1", "--a", "2"]


def test_empty_flag_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty name"):
        render_flags({"": 1})


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["serve", "--api-key", "sk-1"], ["serve", "--api-key", "<redacted>"]),
        (["serve", "--api-key=sk-1"], ["serve", "--api-key=<redacted>"]),
        (["--hf-token", "hf_abc", "--port", "8"], ["--hf-token", "<redacted>", "--port", "8"]),
        (["--port", "8000"], ["--port", "8000"]),
    ],
)
def test_redaction(argv, shown) -> None:
    assert redact_argv(argv) == shown
    assert "sk-1" not in format_argv(argv)
    assert "hf_abc" not in format_argv(argv)


def test_format_quotes_for_a_shell() -> None:
    assert format_argv(["--chat-template", "a b"]) == "--chat-template 'a b'"
