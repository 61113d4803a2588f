# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render structured engine arguments to argv, and print argv safely.

Pure functions shared by the cluster plan, the ``engine_argv`` filter and the roles.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.inferops.cluster.plugins.module_utils._engine_flags import BOOLEAN_OPTIONAL_FLAGS

SECRET_PLACEHOLDER = "${INFEROPS_API_KEY}"
REDACTED = "<redacted>"
# Flags whose value is a secret wherever it appears in an argv.
SECRET_FLAGS = frozenset({"--api-key", "--admin-api-key", "--hf-token", "--token"})
# Booleans written as strings in an inventory (``enable-dp-attention: "false"``): bool("false") is True.
_BOOLEAN_WORDS = {"true": True, "yes": True, "false": False, "no": False}


def flag_name(key: str) -> str:
    """``tensor_parallel_size`` -> ``--tensor-parallel-size``; keys already starting with ``-`` stay."""
    key = str(key).strip()
    if not key:
        raise ValueError("an engine argument has an empty name")
    if key.startswith("-"):
        return key
    return "--" + key.replace("_", "-")


def normalise_key(key: str) -> str:
    """The comparable form of a flag: no leading dashes, dashes for underscores."""
    return str(key).strip().lstrip("-").replace("_", "-")


def as_bool(value: Any) -> Any:
    """``"false"`` / ``"No"`` -> ``False``, ``"TRUE"`` / ``"yes"`` -> ``True``; any other value unchanged."""
    if isinstance(value, str):
        return _BOOLEAN_WORDS.get(value.strip().lower(), value)
    return value


def _scalar(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def render_flags(args: Mapping[str, Any] | None, engine: str | None = None) -> list[str]:
    """Render ``{"max-model-len": 4096, "trust_remote_code": True}`` to argv, in the form ``engine``'s parser takes.

    - ``True`` (or "true"/"yes", any case) -> the bare flag
    - ``False`` (or "false"/"no") -> ``--no-FLAG`` where the engine defines FLAG with argparse's
      BooleanOptionalAction (vLLM: ``--no-enable-chunked-prefill`` turns off a flag that is on by default);
      omitted otherwise (a store_true flag, as all of sglang's: false is its default)
    - ``None`` -> omitted
    - a list -> the flag followed by each item (argparse ``nargs='+'``)
    - a dict -> the flag followed by its JSON (vLLM's ``--hf-overrides``, ``--compilation-config``)
    - anything else -> the flag and its string value

    ``engine`` is ``vllm``, ``sglang`` or None (no engine known: false is omitted).
    Keys the collection does not know pass through unchanged, so a new engine flag needs no code change.
    Order follows the mapping's order (insertion order of the inventory).
    """
    if engine is not None and engine not in BOOLEAN_OPTIONAL_FLAGS:
        raise ValueError(f"unknown engine {engine!r}; choose one of {sorted(BOOLEAN_OPTIONAL_FLAGS)}")
    negatable = BOOLEAN_OPTIONAL_FLAGS.get(engine or "", frozenset())
    argv: list[str] = []
    for key, raw in (args or {}).items():
        name = flag_name(key)
        value = as_bool(raw)
        if value is None:
            continue
        if value is False:
            if name.startswith("--") and normalise_key(key) in negatable:
                argv.append("--no-" + normalise_key(key))
            continue
        if value is True:
            argv.append(name)
        elif isinstance(value, (list, tuple)):
            if not value:
                continue
            argv.append(name)
            argv.extend(_scalar(item) for item in value)
        else:
            argv.extend([name, _scalar(value)])
    return argv


def redact_argv(argv: Iterable[str]) -> list[str]:
    """Replace the value after any secret flag (and ``--flag=value`` forms) by ``<redacted>``."""
    out: list[str] = []
    hide_next = False
    for item in argv:
        item = str(item)
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        head, sep, _value = item.partition("=")
        if sep and head in SECRET_FLAGS:
            out.append(f"{head}={REDACTED}")
            continue
        if item in SECRET_FLAGS:
            hide_next = True
        out.append(item)
    return out


def format_argv(argv: Iterable[str]) -> str:
    """A shell-quoted, redacted one-line rendering for people (never for execution)."""
    return shlex.join(redact_argv(argv))
