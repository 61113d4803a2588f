# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converging a node from what the collection installed last time to its spec, and why a replica restarts.

The serving role keeps a record of what it installed on each node (runtime kind, units, containers, files)
in a small JSON file. The next run compares it with what the node spec installs now, removes what is no
longer wanted (renamed units or containers, a runtime that changed), and explains each restart. Pure: no
Ansible import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.inferops.cluster.plugins.module_utils._readiness import parse_systemctl_show as parse_show
from ansible_collections.inferops.cluster.plugins.module_utils._spec import DEFAULTS

RECORD_VERSION = 1
UNIT_DIR = "/etc/systemd/system"

_UNIT = str(DEFAULTS["inference_server_unit"])
_CONTAINER = str(DEFAULTS["inference_server_container"])
# What a node deployed before the record existed holds: the default names, of either runtime.
LEGACY_RECORD: dict[str, Any] = {
    "version": RECORD_VERSION,
    "kind": None,
    "units": [f"{_UNIT}.service", f"{_UNIT}-ray.service"],
    "containers": [_CONTAINER, f"{_CONTAINER}-ray"],
    "files": [
        f"{UNIT_DIR}/{_UNIT}.service",
        f"{UNIT_DIR}/{_UNIT}-ray.service",
        f"{DEFAULTS['inference_server_config_dir']}/{_UNIT}-secrets.env",
    ],
}

_ACTIVE_STATES = frozenset({"active", "activating", "deactivating", "reloading", "refreshing"})


def wanted_record(runtime: Mapping[str, Any], runs_engine: bool, runs_ray: bool, has_secrets: bool) -> dict[str, Any]:
    """What the node spec installs on this node: the record the role writes after a run."""
    kind = runtime["kind"]
    names = "container" if kind == "docker" else "unit"
    runs = [name for name, on in ((runtime.get(f"ray_{names}"), runs_ray), (runtime.get(names), runs_engine)) if on]
    units, containers = ([], runs) if kind == "docker" else (runs, [])
    files = [f"{UNIT_DIR}/{u}" for u in units] + ([str(runtime["secrets_file"])] if has_secrets else [])
    return {"version": RECORD_VERSION, "kind": kind, "units": units, "containers": containers, "files": files}


def recorded(state: Any) -> dict[str, Any]:
    """The record read from the node (parsed JSON, or None when absent); the legacy defaults when absent."""
    if not isinstance(state, Mapping):
        return dict(LEGACY_RECORD)
    return {
        "version": state.get("version", RECORD_VERSION),
        "kind": state.get("kind"),
        "units": [str(u) for u in state.get("units") or []],
        "containers": [str(c) for c in state.get("containers") or []],
        "files": [str(f) for f in state.get("files") or [] if str(f).startswith("/")],
    }


def stale(record: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, list[str]]:
    """What the record holds and the spec no longer wants: units, containers and files to remove."""

    def minus(key: str) -> list[str]:
        keep = set(wanted.get(key) or [])
        return [x for x in record.get(key) or [] if x not in keep]

    return {"units": minus("units"), "containers": minus("containers"), "files": minus("files")}


def unit_present(props: Mapping[str, str]) -> bool:
    """A unit systemd knows or that still runs (`systemctl show` properties)."""
    return props.get("LoadState", "not-found") != "not-found" or props.get("ActiveState", "inactive") in _ACTIVE_STATES


def unit_active(props: Mapping[str, str]) -> bool:
    return props.get("ActiveState", "inactive") in _ACTIVE_STATES


def _unit_entries(text: str) -> dict[str, list[str]]:
    """`Section.Key` -> values of a unit file, comments and blank lines left out."""
    entries: dict[str, list[str]] = {}
    section = ""
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if sep:
            entries.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return entries


_ENV_NAME = re.compile(r'^"?([^=" ]+)=')


def _env_names(values: Iterable[str]) -> dict[str, str]:
    names = {}
    for value in values:
        match = _ENV_NAME.match(value)
        if match:
            names[match.group(1)] = value
    return names


def unit_changes(before: str, after: str) -> list[str]:
    """What differs between two unit files, by field: `ExecStart argv`, `Environment NAME`, other keys.

    A unit that did not exist is `new unit`; comment-only differences name nothing.
    """
    if not (before or "").strip():
        return ["new unit"] if (after or "").strip() else []
    old, new = _unit_entries(before), _unit_entries(after)
    changes = []
    for key in sorted(set(old) | set(new), key=lambda k: (k != "Service.ExecStart", k)):
        if old.get(key) == new.get(key):
            continue
        name = key.partition(".")[2]
        if name == "ExecStart":
            changes.append("ExecStart argv")
        elif name == "Environment":
            o, n = _env_names(old.get(key, [])), _env_names(new.get(key, []))
            changes.extend(f"Environment {v}" for v in sorted(set(o) | set(n)) if o.get(v) != n.get(v))
        else:
            changes.append(name)
    return changes


def _diffs(result: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    diff = (result or {}).get("diff")
    if isinstance(diff, Mapping):
        return [diff]
    return [d for d in diff or [] if isinstance(d, Mapping)]


def file_changes(result: Mapping[str, Any] | None) -> list[str]:
    """Fields a template task changed in a unit file, read from its diff (the task runs with diff on)."""
    if not (result or {}).get("changed"):
        return []
    fields = [c for d in _diffs(result) for c in unit_changes(str(d.get("before", "")), str(d.get("after", "")))]
    return fields or ["content"]


def container_changes(result: Mapping[str, Any] | None) -> list[str]:
    """Fields community.docker.docker_container would change, from its diff (before/after by option)."""
    if not (result or {}).get("changed"):
        return []
    fields: list[str] = []
    for d in _diffs(result):
        before, after = d.get("before") or {}, d.get("after") or {}
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            if before.get("exists") is False and after.get("exists") is True:
                return ["new container"]
            fields.extend(k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k))
    return fields or ["specification"]


def rank_reasons(
    *,
    software: bool = False,
    secrets: bool = False,
    units: Iterable[Mapping[str, Any]] = (),
    containers: Iterable[Mapping[str, Any]] = (),
    not_running: Iterable[Mapping[str, Any]] = (),
    leftovers: Iterable[str] = (),
    runtime_from: str | None = None,
    runtime_to: str | None = None,
) -> list[str]:
    """Why one rank must restart, one phrase per cause; empty when it keeps running.

    `units` and `containers`: {name, result} with the task's registered result; `not_running`: {name, state};
    `leftovers`: units or containers of an earlier deploy that still run.
    """
    reasons = []
    if runtime_from and runtime_to and runtime_from != runtime_to:
        reasons.append(f"runtime changed ({runtime_from} -> {runtime_to})")
    if software:
        reasons.append("engine software changed")
    for unit in units:
        fields = file_changes(unit.get("result"))
        if fields:
            reasons.append(f"unit {unit['name']} changed ({', '.join(fields)})")
    for container in containers:
        fields = container_changes(container.get("result"))
        if fields:
            reasons.append(f"container {container['name']} changed ({', '.join(fields)})")
    if secrets:
        reasons.append("secrets file changed")
    for item in not_running:
        reasons.append(f"{item['name']} not running ({item.get('state') or 'unknown'})")
    for name in leftovers:
        reasons.append(f"{name} of the previous deploy still runs")
    return reasons


def replica_line(replica: str, ranks: Iterable[Mapping[str, Any]], check_mode: bool = False) -> str:
    """The per-replica restart line: `ranks` is [{host, reasons}] in rank order."""
    changed = [r for r in ranks if r.get("reasons")]
    if not changed:
        return f"replica {replica}: no change, no restart"
    verb = "would restart" if check_mode else "restarts"
    why = "; ".join(f"{r['host']} {', '.join(r['reasons'])}" for r in changed)
    return f"replica {replica} {verb}: {why}"


def _looped(results: Iterable[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
    """The items of a registered loop that ran (skipped items left out)."""
    return [r for r in results or [] if isinstance(r, Mapping) and not r.get("skipped")]


def unit_probes(results: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Units present on the node, from a loop of `systemctl show -p LoadState,ActiveState,UnitFileState UNIT`.

    Each: {name, active, enabled, state}; `busy` when it must be stopped or disabled before removal.
    """
    units = []
    for result in _looped(results):
        props = parse_show(str(result.get("stdout", "")))
        if not unit_present(props):
            continue
        enabled = props.get("UnitFileState", "") in ("enabled", "enabled-runtime", "linked", "linked-runtime")
        active = unit_active(props)
        units.append(
            {
                "name": str(result["item"]),
                "active": active,
                "enabled": enabled,
                "busy": active or enabled,
                "state": props.get("ActiveState", "unknown"),
            }
        )
    return units


def container_probes(results: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Containers present on the node, from a loop of community.docker.docker_container_info: {name, running}."""
    return [
        {"name": str(r["item"]), "running": bool(((r.get("container") or {}).get("State") or {}).get("Running"))}
        for r in _looped(results)
        if r.get("exists")
    ]


def inactive_units(results: Iterable[Mapping[str, Any]] | None) -> list[dict[str, str]]:
    """Units of this rank that do not run, from a loop of `systemctl is-active UNIT`: {name, state}."""
    return [
        {"name": str(r["item"]), "state": str(r.get("stdout", "")).strip() or "unknown"}
        for r in _looped(results)
        if r.get("rc") not in (None, 0)
    ]
