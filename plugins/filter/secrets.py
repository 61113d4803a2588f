# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that keep secrets off command lines and out of output (module_utils/_secrets.py)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.cluster.plugins.module_utils._secrets import launch_argv, redact


def _launch_argv(argv, names):
    """The argv the runtime executes: secret placeholders filled inside the process (never on its command line)."""
    try:
        return launch_argv(list(argv or []), list(names or []))
    except ValueError as exc:  # the message names the command and the variable, never a value
        raise AnsibleFilterError(str(exc)) from None


def _redact(text, secrets):
    """TEXT with every spelling of each of SECRETS (plain, base64, URL-encoded) replaced by <redacted>."""
    return redact(text, list(secrets or []))


class FilterModule:
    """inferops.cluster secrets filters."""

    def filters(self):
        return {
            "secret_launch_argv": _launch_argv,
            "secret_redact": _redact,
        }
