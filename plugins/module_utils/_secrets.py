# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets kept off command lines, module results and output.

- ``header_value_problem``: whether a key can travel as ``Authorization: Bearer KEY`` byte for byte (printable
  ASCII, no leading or trailing blank); the message names the variable, never the value.
- ``launch_argv``: an engine argv whose secret placeholders (``${INFEROPS_API_KEY}``) are filled *inside* the
  Python process, so ``/proc/PID/cmdline`` holds the placeholder and never the key. sglang reads its API key only
  from ``--api-key`` (no environment variable; ``--config FILE`` exists only from sglang 0.5.3, and the example
  images pin 0.4.6): the argv ``python3 -m MODULE ARGS`` becomes ``python3 -c LAUNCHER -m MODULE ARGS``, where the
  launcher swaps each placeholder for the variable's value from the environment (the runtime fills it from the
  0600 secrets file), drops that variable from the environment, and runs MODULE as ``python3 -m`` would
  (``runpy``; multiprocessing's spawned children get the arguments through a pipe, not their command line).
- ``redact``: a text with the given secrets (plain, base64, URL-encoded) replaced, for log excerpts a failing
  task shows (sglang logs its server_args, the API key among them, at start).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from urllib.parse import quote, quote_plus

REDACTED = "<redacted>"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
_PYTHONS = re.compile(r"(.*/)?python3?(\.\d+)?")

# One line (a systemd ExecStart argument cannot hold a newline), no '%' (systemd specifiers), nothing secret.
LAUNCHER = (
    "import os,runpy,sys;N={names!r};m=sys.argv[2];P=dict(('${{'+n+'}}',n) for n in N);"
    "L=[P[a] for a in sys.argv[3:] if a in P and P[a] not in os.environ];"
    "L and sys.exit('inferops launcher: '+' '.join(L)+' not set: the secrets file is missing or incomplete');"
    "sys.argv=[m]+[os.environ[P[a]] if a in P else a for a in sys.argv[3:]];"
    "[os.environ.pop(n,None) for n in N];"
    "runpy.run_module(m,run_name='__main__',alter_sys=True)"
)


def header_value_problem(variable: str, value: object) -> str | None:
    """Why ``value`` cannot be sent as ``Authorization: Bearer VALUE`` byte for byte (None when it can).

    HTTP header values are printable ASCII and blanks; clients and servers trim blanks at either end, and the
    engines decode the header as latin-1 but compare UTF-8: a key outside printable ASCII never matches.
    """
    text = "" if value is None else str(value)
    if not text:
        return None
    if not _PRINTABLE_ASCII.fullmatch(text):
        bad = next(ch for ch in text if not _PRINTABLE_ASCII.fullmatch(ch))
        what = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\x00": "a NUL character"}.get(
            bad, "a control character" if ord(bad) < 0x20 or ord(bad) == 0x7F else "a character outside ASCII"
        )
        return (
            f"{variable} contains {what}; it travels in an HTTP header (Authorization: Bearer ...), which carries "
            "printable ASCII only: choose a value of printable ASCII characters"
        )
    if text != text.strip():
        return (
            f"{variable} begins or ends with a blank; HTTP trims blanks around a header value, so the server and "
            "its clients would disagree on the key: remove them"
        )
    return None


def placeholders(argv: Iterable[str], names: Iterable[str]) -> list[str]:
    """The names (of ``names``) whose placeholder ``${NAME}`` is an item of ``argv``, in argv order."""
    wanted = set(names)
    found: list[str] = []
    for item in argv:
        match = _PLACEHOLDER.fullmatch(str(item))
        if match and match.group(1) in wanted and match.group(1) not in found:
            found.append(match.group(1))
    return found


def launch_argv(argv: Sequence[str], names: Iterable[str]) -> list[str]:
    """``argv`` unchanged when it holds no placeholder of ``names``; else the launcher form (see the module doc).

    ValueError when a placeholder sits in an argv that is not ``python -m MODULE``: no launcher can keep it off
    that process's command line.
    """
    argv = [str(item) for item in argv]
    used = placeholders(argv, names)
    if not used:
        return argv
    if len(argv) < 3 or not _PYTHONS.fullmatch(argv[0]) or argv[1] != "-m":
        raise ValueError(
            f"the command {argv[0]!r} takes a secret ({', '.join(used)}) on its command line and is not "
            "'python -m MODULE': it cannot be launched without the secret in /proc/PID/cmdline"
        )
    return [argv[0], "-c", LAUNCHER.format(names=tuple(used)), *argv[1:]]


def secret_forms(secret: str) -> list[str]:
    """The spellings a secret may leak in: plain, base64 (of the value and of ``Bearer VALUE``), URL-encoded."""
    forms = [secret]
    for raw in (secret, f"Bearer {secret}", f":{secret}"):
        encoded = base64.b64encode(raw.encode()).decode()
        forms += [encoded, encoded.rstrip("=")]
    forms += [quote(secret, safe=""), quote_plus(secret)]
    return [form for index, form in enumerate(forms) if form and form not in forms[:index]]


def redact(text: object, secrets: Iterable[object]) -> str:
    """``text`` with every spelling (secret_forms) of each non-empty secret replaced by ``<redacted>``."""
    out = "" if text is None else str(text)
    forms = sorted({form for secret in secrets if secret for form in secret_forms(str(secret))}, key=len, reverse=True)
    for form in forms:
        out = out.replace(form, REDACTED)
    return out
