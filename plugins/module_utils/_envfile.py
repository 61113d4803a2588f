# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's secrets file: one ``NAME="value"`` line per secret, read byte for byte by both runtimes.

systemd's EnvironmentFile= (systemd.exec(5)) and a POSIX shell's ``. FILE`` (the Docker runtime's wrapper) read a
double-quoted value the same way: a backslash before ``\\``, ``"``, ``$`` or a backquote keeps that character;
nothing is expanded (EnvironmentFile= expands neither ``$`` nor ``%`` specifiers). A value with a line break or NUL
cannot be written as one line; it is refused, naming the variable and never showing the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPED = re.compile(r'([\\"$`])')
_UNWRITABLE = {"\n": "a newline", "\r": "a carriage return", "\x00": "a NUL character"}
API_KEY_VARIABLE = "inferops_api_key"


def env_file_value(value: str) -> str:
    """``value`` double-quoted for EnvironmentFile= and ``sh``: ``\\``, ``"``, ``$`` and backquote escaped."""
    return '"' + _ESCAPED.sub(r"\\\1", value) + '"'


def secret_values(names: Iterable[str], secrets: Mapping[str, object] | None, api_key: object) -> dict[str, str]:
    """Each secret the engine reads: from ``secrets`` (inference_server_secrets) or else the API key."""
    secrets = secrets or {}
    return {name: str(secrets.get(name, api_key or "")) for name in names}


def _variable(name: str, secrets: Mapping[str, object] | None, variables: Mapping[str, str] | None) -> str:
    if variables and name in variables:
        return variables[name]
    return f"inference_server_secrets['{name}']" if name in (secrets or {}) else API_KEY_VARIABLE


def env_file_problems(
    values: Mapping[str, str],
    secrets: Mapping[str, object] | None = None,
    variables: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What keeps a value out of the file, per name; the message names the variable, never the value.

    The variable named: ``variables[name]``, else ``inference_server_secrets['NAME']`` for a name in ``secrets``,
    else inferops_api_key.
    """
    problems = {}
    for name, value in values.items():
        if not ENV_NAME.fullmatch(name):
            problems[name] = f"{name!r} is not an environment variable name"
            continue
        found = sorted({what for char, what in _UNWRITABLE.items() if char in str(value)})
        if found:
            problems[name] = (
                f"{_variable(name, secrets, variables)} (as {name}) contains {' and '.join(found)}; the secrets "
                "file holds one line per variable and cannot carry it: choose a value without line breaks or NUL"
            )
    return problems


def env_file(values: Mapping[str, str]) -> str:
    """The secrets file's text; ValueError (naming the variable only) for a value it cannot carry."""
    problems = env_file_problems(values)
    if problems:
        raise ValueError("; ".join(problems.values()))
    return "".join(f"{name}={env_file_value(str(value))}\n" for name, value in values.items())
