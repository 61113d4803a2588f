# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Merge settings into Docker's daemon.json without losing keys someone else put there.

The roles people use overwrite /etc/docker/daemon.json wholesale, dropping what the
container toolkit (``runtimes.nvidia``) or an operator added. Here the file is parsed, the
managed keys are merged in (dicts recursively, everything else replaced; ``None`` deletes a
key) and the result is written only when it differs as data, not as text.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping


class DaemonJsonError(ValueError):
    """daemon.json cannot be parsed or is not a JSON object."""


def parse_daemon_json(text: str | None) -> dict:
    """The current file's content as a dict; an empty or missing file is ``{}``."""
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DaemonJsonError(f"daemon.json is not valid JSON ({exc}); fix or remove it first") from exc
    if not isinstance(data, dict):
        raise DaemonJsonError(f"daemon.json must hold a JSON object, found {type(data).__name__}")
    return data


def merge_settings(current: Mapping, managed: Mapping) -> dict:
    """``current`` with ``managed`` merged in: nested dicts merge, other values replace,
    a ``None`` value removes the key. ``current`` is not modified."""
    result = copy.deepcopy(dict(current))
    for key, value in managed.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge_settings(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def render_daemon_json(data: Mapping) -> str:
    """Stable text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def plan_update(current_text: str | None, managed: Mapping) -> tuple[bool, dict, dict, str]:
    """(changed, before, after, text to write) for merging ``managed`` into the file's text."""
    before = parse_daemon_json(current_text)
    after = merge_settings(before, managed)
    return before != after, before, after, render_daemon_json(after)
