# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the monitoring phase and status.yml's live numbers, over module_utils._engine_metrics."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.cluster.plugins.module_utils._engine_metrics import live_numbers, live_table


def _live_numbers(first, second, seconds, engine):
    try:
        return live_numbers(first, second, float(seconds), engine)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    """inferops.cluster monitoring filters."""

    def filters(self):
        return {"engine_live_numbers": _live_numbers, "engine_live_table": live_table}
