"""Argv rendering and redaction."""

from __future__ import annotations

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils._argv import (
    as_bool,
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


# false in the form the engine's parser takes: vLLM's BooleanOptionalAction flags take --no-FLAG (a flag on by
# default can be turned off), a store_true flag is left out; booleans written as strings are booleans.
@pytest.mark.parametrize(
    ("engine", "args", "argv"),
    [
        ("vllm", {"enable-chunked-prefill": False}, ["--no-enable-chunked-prefill"]),
        ("vllm", {"enable_chunked_prefill": "False"}, ["--no-enable-chunked-prefill"]),
        (
            "vllm",
            {"enable-prefix-caching": "no", "enforce-eager": "TRUE"},
            ["--no-enable-prefix-caching", "--enforce-eager"],
        ),
        ("vllm", {"disable-log-stats": False, "some-future-flag": "false"}, []),
        (
            "vllm",
            {"max-model-len": "4096", "tokenizer-mode": "auto"},
            ["--max-model-len", "4096", "--tokenizer-mode", "auto"],
        ),
        ("sglang", {"enable-metrics": False, "disable-radix-cache": "false"}, []),
        ("sglang", {"enable-metrics": "Yes"}, ["--enable-metrics"]),
        ("sglang", {"enable-tf32-matmul": False}, ["--no-enable-tf32-matmul"]),
        ("sglang", {"enable-chunked-prefill": False}, []),
        (None, {"enable-chunked-prefill": False, "x": "False"}, []),
        ("vllm", {"allowed-origins": ["false", "b"]}, ["--allowed-origins", "false", "b"]),
    ],
)
def test_render_false_per_engine(engine, args, argv) -> None:
    assert render_flags(args, engine) == argv


def test_unknown_engine_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown engine 'tgi'"):
        render_flags({"a": 1}, "tgi")


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("true", True),
        (" Yes ", True),
        ("FALSE", False),
        ("no", False),
        ("off", "off"),
        ("0", "0"),
        (0, 0),
        (None, None),
    ],
)
def test_as_bool_reads_only_true_false_yes_no(value, parsed) -> None:
    assert as_bool(value) == parsed and type(as_bool(value)) is type(parsed)


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
