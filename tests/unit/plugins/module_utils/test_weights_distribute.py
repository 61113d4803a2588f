"""Distribution schedules (table in fixtures/weights/schedule.yml), rsync argv and exit codes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from ansible_collections.inferops.cluster.plugins.module_utils import _distribute as wd

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "weights"
CASES = yaml.safe_load((FIXTURES / "schedule.yml").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_schedule_table(case):
    up = wd.upstream_map(case["seeds"], case["targets"], case["strategy"])
    assert up == case["upstreams"]
    got = [[list(pair) for pair in r] for r in wd.rounds(up, case["strategy"])]
    assert got == case["rounds"]


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 16, 33, 64])
def test_tree_rounds_grow_like_log2(n):
    nodes = [f"n{i}" for i in range(n)]
    up = wd.upstream_map(nodes[:1], nodes[1:], "tree")
    assert len(wd.rounds(up, "tree")) == math.ceil(math.log2(n))
    # every node that has the files serves at most one new node per round
    for r in wd.rounds(up, "tree"):
        sources = [src for src, _dst in r]
        assert len(sources) == len(set(sources))


@pytest.mark.parametrize("n", [2, 4, 8, 32])
def test_chain_every_node_sends_at_most_once(n):
    nodes = [f"n{i}" for i in range(n)]
    up = wd.upstream_map(nodes[:1], nodes[1:], "chain")
    sources = list(up.values())
    assert len(sources) == len(set(sources)) == n - 1
    assert wd.depths(up)[nodes[-1]] == n - 1


@pytest.mark.parametrize(
    ("seeds", "targets", "strategy", "message"),
    [
        ([], ["n2"], "chain", "no node holds verified weights"),
        (["n1"], ["n1"], "chain", "both seed and target"),
        (["n1"], ["n2", "n2"], "star", "listed twice"),
        (["n1"], ["n2"], "ring", "must be one of"),
    ],
)
def test_schedule_errors(seeds, targets, strategy, message):
    with pytest.raises(wd.ScheduleError, match=message):
        wd.upstream_map(seeds, targets, strategy)


def test_cycle_is_refused():
    with pytest.raises(wd.ScheduleError, match="cycle"):
        wd.depths({"a": "b", "b": "a"})


@pytest.mark.parametrize(
    ("address", "want"),
    [("10.0.0.2", "rsync://10.0.0.2:873/m/a/b"), ("fd00::2", "rsync://[fd00::2]:873/m/a/b")],
)
def test_rsync_url(address, want):
    assert wd.rsync_url(address, 873, "m", "a/b") == want


def test_mirror_argv_excludes_state_and_tool_dirs():
    argv = wd.rsync_mirror_argv("rsync", "/mnt/nfs/model", "/models/m")
    assert argv[-2:] == ["/mnt/nfs/model/", "/models/m/"]
    assert "--exclude=/.inferops-*" in argv and "--exclude=/.cache/" in argv


# Real stderr of rsync 3.5.0 pulling from a daemon (captured on the controller against a local daemon).
MISSING_STDERR = (
    'rsync: [sender] link_stat "model-00002-of-00003.safetensors" (in inferops-weights) failed: '
    "No such file or directory (2)\n"
    "rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1956) "
    "[Receiver=3.5.0]\n"
    "rsync: [Receiver] read error: Connection reset by peer (104)\n"
)
REFUSED_STDERR = (
    "rsync: [Receiver] failed to connect to 127.0.0.1 (127.0.0.1): Connection refused (111)\n"
    "rsync error: error in socket IO (code 10) at clientserver.c(165) [Receiver=3.5.0]\n"
)
DENIED_STDERR = (
    "@ERROR: access denied to inferops-weights from localhost (127.0.0.1)\n"
    "rsync error: error starting client-server protocol (code 5) at main.c(1954) [Receiver=3.5.0]\n"
)


@pytest.mark.parametrize(
    ("rc", "stderr", "want"),
    [
        (0, "", "ok"),
        (23, MISSING_STDERR, "missing"),
        (10, REFUSED_STDERR, "retry"),
        (5, DENIED_STDERR, "fatal"),
        (5, "@ERROR: max connections (4) reached -- try again later\n", "retry"),
        (23, "rsync: write failed on /m/x: No space left on device (28)", "fatal"),
        (23, MISSING_STDERR + "rsync: write failed on /m/y: No space left on device (28)\n", "fatal"),
        (11, "rsync: write failed on /m/x: No space left on device (28)", "fatal"),
        (2, "protocol incompatibility", "fatal"),
    ],
)
def test_classify_rsync(rc, stderr, want):
    assert wd.classify_rsync(rc, stderr) == want


def test_batch_argv():
    batch = wd.rsync_batch_argv(
        "rsync", "10.0.0.2", 8730, "inferops-weights", "/m/x/.inferops-incoming", "/tmp/list", 30, 500
    )
    assert "--from0" in batch and "--files-from=/tmp/list" in batch and "--partial-dir=.rsync-partial" in batch
    assert "--ignore-times" in batch  # a same-size, same-mtime corrupt basis is still compared
    assert "--timeout=30" in batch and "--bwlimit=500" in batch
    assert not any(a.startswith("--bwlimit") for a in wd.rsync_batch_argv("rsync", "h", 1, "m", "/d", "/l"))
    assert batch[-2:] == ["rsync://10.0.0.2:8730/inferops-weights/", "/m/x/.inferops-incoming/"]
