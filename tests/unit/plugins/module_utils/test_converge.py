"""Converging a node from the install record to its spec, and the restart lines (module_utils._converge)."""

from __future__ import annotations

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils._converge import (
    LEGACY_RECORD,
    container_changes,
    container_probes,
    inactive_units,
    rank_reasons,
    recorded,
    replica_line,
    stale,
    unit_changes,
    unit_probes,
    wanted_record,
)

SYSTEMD = {
    "kind": "systemd",
    "unit": "inferops-engine.service",
    "ray_unit": None,
    "container": None,
    "ray_container": None,
    "secrets_file": "/etc/inferops/inferops-engine-secrets.env",
}
DOCKER = {
    "kind": "docker",
    "unit": None,
    "ray_unit": None,
    "container": "inferops-engine",
    "ray_container": "inferops-engine-ray",
    "secrets_file": "/etc/inferops/inferops-engine-secrets.env",
}
RENAMED = dict(SYSTEMD, unit="llm.service", ray_unit="llm-ray.service", secrets_file="/etc/inferops/llm-secrets.env")

UNIT = """\
# Ansible managed
[Unit]
Description=inferops vllm rank 0
[Service]
Environment="OMP_NUM_THREADS=1"
Environment="VLLM_CPU_KVCACHE_SPACE=1"
ExecStart="/opt/venv/bin/vllm" "serve" "/m" "--max-model-len" "512"
Restart=no
"""


def test_wanted_record_systemd_engine_only():
    assert wanted_record(SYSTEMD, runs_engine=True, runs_ray=False, has_secrets=True) == {
        "version": 1,
        "kind": "systemd",
        "units": ["inferops-engine.service"],
        "containers": [],
        "files": ["/etc/systemd/system/inferops-engine.service", "/etc/inferops/inferops-engine-secrets.env"],
    }


def test_wanted_record_docker_ray_follower_without_secrets():
    record = wanted_record(DOCKER, runs_engine=False, runs_ray=True, has_secrets=False)
    assert (record["units"], record["containers"], record["files"]) == ([], ["inferops-engine-ray"], [])


def test_recorded_without_a_file_is_the_legacy_defaults():
    assert recorded(None) == LEGACY_RECORD
    assert "inferops-engine.service" in LEGACY_RECORD["units"]
    assert "inferops-engine" in LEGACY_RECORD["containers"]


def test_recorded_drops_relative_paths():
    assert recorded({"kind": "systemd", "units": ["a.service"], "files": ["rel/x", "/etc/x"]})["files"] == ["/etc/x"]


@pytest.mark.parametrize(
    ("record", "spec", "expected"),
    [
        pytest.param(
            wanted_record(SYSTEMD, True, False, True),
            wanted_record(SYSTEMD, True, False, True),
            {"units": [], "containers": [], "files": []},
            id="unchanged",
        ),
        pytest.param(
            wanted_record(SYSTEMD, True, False, True),
            wanted_record(RENAMED, True, False, True),
            {
                "units": ["inferops-engine.service"],
                "containers": [],
                "files": ["/etc/systemd/system/inferops-engine.service", "/etc/inferops/inferops-engine-secrets.env"],
            },
            id="unit-renamed",
        ),
        pytest.param(
            wanted_record(SYSTEMD, True, False, True),
            wanted_record(DOCKER, True, False, True),
            {
                "units": ["inferops-engine.service"],
                "containers": [],
                "files": ["/etc/systemd/system/inferops-engine.service"],
            },
            id="systemd-to-docker-keeps-the-secrets-file",
        ),
        pytest.param(
            wanted_record(DOCKER, True, True, True),
            wanted_record(dict(DOCKER, container="llm", ray_container="llm-ray"), True, True, True),
            {"units": [], "containers": ["inferops-engine-ray", "inferops-engine"], "files": []},
            id="container-renamed",
        ),
        pytest.param(
            wanted_record(DOCKER, True, False, True),
            wanted_record(SYSTEMD, True, False, True),
            {"units": [], "containers": ["inferops-engine"], "files": []},
            id="docker-to-systemd",
        ),
        pytest.param(
            recorded(None),
            wanted_record(SYSTEMD, True, False, True),
            {
                "units": ["inferops-engine-ray.service"],
                "containers": ["inferops-engine", "inferops-engine-ray"],
                "files": ["/etc/systemd/system/inferops-engine-ray.service"],
            },
            id="legacy-node-with-the-defaults",
        ),
    ],
)
def test_stale(record, spec, expected):
    assert stale(record, spec) == expected


def test_unit_changes_names_argv_and_env_names():
    after = UNIT.replace('"512"', '"256"').replace("OMP_NUM_THREADS=1", "OMP_NUM_THREADS=2").replace("no", "on-failure")
    assert unit_changes(UNIT, after) == ["ExecStart argv", "Environment OMP_NUM_THREADS", "Restart"]


def test_unit_changes_ignores_comments_and_reports_new_units():
    assert unit_changes(UNIT, UNIT.replace("# Ansible managed", "# other")) == []
    assert unit_changes("", UNIT) == ["new unit"]


def test_file_and_container_changes_from_registered_results():
    template = {"changed": True, "diff": [{"before": UNIT, "after": UNIT.replace('"512"', '"256"')}]}
    assert rank_reasons(units=[{"name": "inferops-engine.service", "result": template}]) == [
        "unit inferops-engine.service changed (ExecStart argv)"
    ]
    no_diff = {"changed": True}
    assert rank_reasons(units=[{"name": "u.service", "result": no_diff}]) == ["unit u.service changed (content)"]
    docker = {
        "changed": True,
        "diff": {"before": {"command": ["a"], "image": "x"}, "after": {"command": ["b"], "image": "x"}},
    }
    assert container_changes(docker) == ["command"]
    assert container_changes({"changed": True, "diff": {"before": {"exists": False}, "after": {"exists": True}}}) == [
        "new container"
    ]
    assert container_changes({"changed": False, "diff": {"before": {"a": 1}, "after": {"a": 2}}}) == []


def test_rank_reasons_every_cause():
    reasons = rank_reasons(
        runtime_from="systemd",
        runtime_to="docker",
        software=True,
        secrets=True,
        not_running=[{"name": "inferops-engine.service", "state": "failed"}],
        leftovers=["old.service"],
    )
    assert reasons == [
        "runtime changed (systemd -> docker)",
        "engine software changed",
        "secrets file changed",
        "inferops-engine.service not running (failed)",
        "old.service of the previous deploy still runs",
    ]
    assert rank_reasons(runtime_from=None, runtime_to="systemd") == []


@pytest.mark.parametrize(
    ("ranks", "check_mode", "line"),
    [
        ([{"host": "a", "reasons": []}, {"host": "b", "reasons": []}], True, "replica r0: no change, no restart"),
        (
            [
                {"host": "inferops-lab-1", "reasons": ["unit inferops-engine.service changed (ExecStart argv)"]},
                {"host": "inferops-lab-2", "reasons": ["unit inferops-engine.service changed (ExecStart argv)"]},
            ],
            True,
            "replica r0 would restart: inferops-lab-1 unit inferops-engine.service changed (ExecStart argv); "
            "inferops-lab-2 unit inferops-engine.service changed (ExecStart argv)",
        ),
        (
            [{"host": "a", "reasons": []}, {"host": "b", "reasons": ["x not running (inactive)", "y"]}],
            False,
            "replica r0 restarts: b x not running (inactive), y",
        ),
    ],
)
def test_replica_line(ranks, check_mode, line):
    assert replica_line("r0", ranks, check_mode) == line


def test_probes_from_registered_loops():
    shows = [
        {"item": "gone.service", "stdout": "LoadState=not-found\nActiveState=inactive\nUnitFileState=\n"},
        {"item": "old.service", "stdout": "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\n"},
        {"item": "off.service", "stdout": "LoadState=loaded\nActiveState=inactive\nUnitFileState=disabled\n"},
        {"item": "skip.service", "skipped": True},
    ]
    assert unit_probes(shows) == [
        {"name": "old.service", "active": True, "enabled": True, "busy": True, "state": "active"},
        {"name": "off.service", "active": False, "enabled": False, "busy": False, "state": "inactive"},
    ]
    infos = [
        {"item": "old", "exists": True, "container": {"State": {"Running": True}}},
        {"item": "none", "exists": False, "container": None},
    ]
    assert container_probes(infos) == [{"name": "old", "running": True}]
    actives = [
        {"item": "a.service", "rc": 0, "stdout": "active"},
        {"item": "b.service", "rc": 3, "stdout": "inactive\n"},
        {"item": "c.service", "skipped": True},
    ]
    assert inactive_units(actives) == [{"name": "b.service", "state": "inactive"}]
