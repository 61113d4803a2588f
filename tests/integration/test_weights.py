"""End to end: the weights phase against 4 lab nodes and a real Hugging Face mirror (olah).

1. playbooks/weights.yml downloads a small model (LFS shards) with the real huggingface_hub
   client on the first node through HF_ENDPOINT, writes the manifest, and stages it on the 3
   other nodes through the pipelined chain; every node ends verified with its marker.
2. A second run changes nothing.
3. A shard corrupted on one node is detected by the next run, moved aside, re-fetched from a
   peer (only that file) and verified; the other nodes are left alone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from weights_lab import Hub, Lab, failures, lfs_objects, make_model_repo, plan_vars, playbook, recap, task_results

pytestmark = pytest.mark.lab

MODEL_PATH = "/srv/models/tiny"
SHARDS = 3
SHARD_BYTES = 3 * 1024 * 1024


def _docker_ok() -> bool:
    return (
        shutil.which("docker") is not None
        and os.system("docker image inspect inferops-lab:bookworm >/dev/null 2>&1") == 0
    )


@pytest.fixture(scope="module")
def lab():
    if not _docker_ok():
        pytest.fail("Docker and the lab image inferops-lab:bookworm are needed (make lab-image)")
    work = Path(tempfile.mkdtemp(prefix="iw-weights-"))
    commit = make_model_repo(work / "mirrors", "acme", "tiny", SHARDS, SHARD_BYTES)
    nodes = Lab(f"iw-t{os.getpid()}", 4, memory="768m")
    hub = None
    try:
        nodes.up()
        hub = Hub(work, nodes.gateway)
        hub.start()
        group_vars = {
            **plan_vars(MODEL_PATH, tp=2),
            "model_weights_source": "hf",
            "model_weights_repo": "acme/tiny",
            "model_weights_revision": commit,
            "model_weights_hf_endpoint": hub.endpoint,
            "model_weights_token": "hf_lab_secret_token_never_logged",
            "model_weights_ca_bundle": "/etc/ssl/certs/ca-certificates.crt",
            "model_weights_reserve_bytes": 0,
            "model_weights_poll_delay": 1,
        }
        inv = nodes.inventory(work / "hosts.json", group_vars, replica_size=2)  # two replicas of 2
        yield {"nodes": nodes, "inv": inv, "work": work, "commit": commit}
    finally:
        if hub:
            hub.stop()
        nodes.down()
        shutil.rmtree(work, ignore_errors=True)


def _sha_on(nodes: Lab, name: str, rel: str) -> str:
    out = nodes.exec(name, "sha256sum", f"{MODEL_PATH}/{rel}").stdout
    return out.split()[0]


def test_weights_download_distribute_verify_repair(lab):
    nodes: Lab = lab["nodes"]
    shards = lfs_objects(lab["work"] / "mirrors", "acme", "tiny")
    want = {name: hashlib.sha256(blob).hexdigest() for name, blob in shards.items()}

    # 1. first run: download on n1, chain to n2..n4
    rc, data, raw = playbook(lab["inv"])
    assert rc == 0, failures(data, raw)
    assert "hf_lab_secret_token_never_logged" not in raw
    # the download task carries the token, so it is no_log: its summary and the manifest come from the next tasks
    fetch = task_results(data, "Show what the download did")
    first = nodes.names[0]
    manifest = task_results(data, "Take the manifest from the node that downloaded")[first]["ansible_facts"][
        "_model_weights_manifest"
    ]
    assert fetch[first]["msg"]["changed"] is True
    assert sorted(fetch[first]["msg"]["downloaded"]) == sorted(manifest["files"])
    for other in nodes.names[1:]:
        assert fetch[other].get("skipped") is True
    # LFS shards carry the Hub's sha256; the others were computed once
    for name, sha in want.items():
        assert manifest["files"][name]["sha256"] == sha
    pulls = task_results(data, "Wait for the transfers")
    assert sorted(h for h, r in pulls.items() if not r.get("skipped")) == sorted(nodes.names[1:])
    for host in nodes.names[1:]:
        assert sorted(pulls[host]["pulled"]) == sorted(manifest["files"])
    for name in nodes.names:
        marker = nodes.exec(name, "cat", f"{MODEL_PATH}/.inferops-complete").stdout.strip()
        assert marker == manifest["digest"]
        for shard, sha in want.items():
            assert _sha_on(nodes, name, shard) == sha
    # the rsync daemon only ran while staging
    for name in nodes.names:
        state = nodes.exec(name, "systemctl", "is-active", "inferops-weights-rsyncd", check=False).stdout.strip()
        assert state == "inactive"

    # 2. second run: nothing to do
    rc, data, raw = playbook(lab["inv"])
    assert rc == 0, failures(data, raw)
    changed = {h: s["changed"] for h, s in recap(data).items() if h in nodes.names}  # not the plan step's localhost
    assert changed == dict.fromkeys(nodes.names, 0), changed

    # 3. corrupt one shard on n3 (same size, new mtime): the next run repairs just that file
    victim, shard = nodes.names[2], sorted(want)[1]
    nodes.exec(
        victim, "dd", "if=/dev/urandom", f"of={MODEL_PATH}/{shard}", "bs=4096", "seek=100", "count=4", "conv=notrunc"
    )
    assert _sha_on(nodes, victim, shard) != want[shard]
    rc, data, raw = playbook(lab["inv"])
    assert rc == 0, failures(data, raw)
    verify = task_results(data, "Verify this node's copy")
    assert verify[victim]["corrupt"] == [shard]
    assert verify[victim]["changed"] is True
    for host in nodes.names:
        if host != victim:
            assert verify[host]["corrupt"] == [] and verify[host]["changed"] is False
    pulls = task_results(data, "Wait for the transfers")
    assert pulls[victim]["pulled"] == [shard]
    assert all(pulls[h].get("skipped") for h in nodes.names if h != victim)
    assert _sha_on(nodes, victim, shard) == want[shard]
    marker = nodes.exec(victim, "cat", f"{MODEL_PATH}/.inferops-complete").stdout.strip()
    assert marker == manifest["digest"]
    # the victim pulled from the first node of the chain, whose daemon was started and stopped;
    # nothing else changed anywhere
    upstream = nodes.names[0]
    changed = {h: s["changed"] for h, s in recap(data).items() if h in nodes.names}  # not the plan step's localhost
    assert changed[victim] > 0 and changed[upstream] == 2, changed
    assert all(changed[h] == 0 for h in nodes.names if h not in (victim, upstream)), changed
