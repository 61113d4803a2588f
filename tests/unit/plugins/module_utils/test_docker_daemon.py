"""daemon.json merge: managed keys in, foreign keys kept, no rewrite when nothing changes."""

from __future__ import annotations

import json

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils._docker_daemon import (
    DaemonJsonError,
    merge_settings,
    parse_daemon_json,
    plan_update,
)

# What `nvidia-ctk runtime configure --runtime=docker` writes, plus an operator's own key.
TOOLKIT = {
    "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}},
    "default-runtime": "nvidia",
    "insecure-registries": ["registry.local:5000"],
}

CASES = [
    pytest.param(
        TOOLKIT,
        {"data-root": "/mnt/docker", "registry-mirrors": ["https://m.example"]},
        {**TOOLKIT, "data-root": "/mnt/docker", "registry-mirrors": ["https://m.example"]},
        id="foreign-keys-survive",
    ),
    pytest.param(
        {"log-opts": {"max-size": "10m", "labels": "a"}},
        {"log-opts": {"max-size": "100m", "max-file": "3"}},
        {"log-opts": {"max-size": "100m", "max-file": "3", "labels": "a"}},
        id="nested-merge",
    ),
    pytest.param(
        {"registry-mirrors": ["https://old"], "debug": True},
        {"registry-mirrors": ["https://new"], "debug": None},
        {"registry-mirrors": ["https://new"]},
        id="lists-replace-null-removes",
    ),
    pytest.param({}, {"runtimes": {"nvidia": {"path": "x"}}}, {"runtimes": {"nvidia": {"path": "x"}}}, id="empty"),
]


@pytest.mark.parametrize(("current", "managed", "expected"), CASES)
def test_merge(current, managed, expected):
    snapshot = json.dumps(current, sort_keys=True)
    assert merge_settings(current, managed) == expected
    assert json.dumps(current, sort_keys=True) == snapshot  # input untouched


def test_plan_update_is_idempotent_on_data_not_text():
    text = '{"runtimes":{"nvidia":{"path":"nvidia-container-runtime","args":[]}},"data-root":"/mnt/docker"}'
    changed, before, after, _rendered = plan_update(text, {"data-root": "/mnt/docker"})
    assert changed is False and before == after
    changed, _before, after, rendered = plan_update(text, {"data-root": "/srv/docker"})
    assert changed is True
    assert json.loads(rendered) == after
    assert after["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert rendered.endswith("\n") and rendered.index('"data-root"') < rendered.index('"runtimes"')


@pytest.mark.parametrize("text", [None, "", "  \n"])
def test_missing_or_empty_file(text):
    assert parse_daemon_json(text) == {}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"data-root/graph": "/mnt/docker"  #挂载路径\n}', "not valid JSON"),  # the seed's comment
        ('["a"]', "JSON object"),
    ],
)
def test_bad_file_is_refused(text, match):
    with pytest.raises(DaemonJsonError, match=match):
        parse_daemon_json(text)
