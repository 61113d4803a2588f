# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the serving role: the install record, leftovers, why a replica restarts (_converge), the secrets file."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.cluster.plugins.module_utils._converge import (
    container_probes,
    inactive_units,
    rank_reasons,
    recorded,
    replica_line,
    stale,
    unit_probes,
    wanted_record,
)
from ansible_collections.inferops.cluster.plugins.module_utils._envfile import (
    env_file,
    env_file_problems,
    secret_values,
)


def _env_file(values):
    try:
        return env_file(values)
    except ValueError as exc:  # the message names variables only, never a value
        raise AnsibleFilterError(str(exc)) from None


def _rank_reasons(_value, **kwargs):
    return rank_reasons(**kwargs)


def _replica_line(pairs, replica, check_mode=False):
    """`pairs`: [host, reasons] per rank (peers' hosts zipped with their reasons)."""
    return replica_line(replica, [{"host": h, "reasons": r} for h, r in pairs], check_mode)


class FilterModule:
    """inferops.cluster serving filters."""

    def filters(self):
        return {
            "serving_wanted_record": wanted_record,
            "serving_recorded": recorded,
            "serving_stale": stale,
            "serving_unit_probes": unit_probes,
            "serving_container_probes": container_probes,
            "serving_inactive_units": inactive_units,
            "serving_rank_reasons": _rank_reasons,
            "serving_secret_values": secret_values,
            "serving_env_file_problems": env_file_problems,
            "serving_env_file": _env_file,
            "serving_replica_line": _replica_line,
        }
