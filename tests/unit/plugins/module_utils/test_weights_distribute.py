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
    ("strategy", "targets", "seeds", "want_t"),
    [
        ("star", 3, 1, 3.0),  # one source link carries three copies
        ("star", 3, 3, 1.0),
        ("chain", 3, 1, 1 + 2 / 16),  # pipeline fill: one file per extra hop
        ("chain", 7, 1, 1 + 6 / 16),
        ("tree", 3, 1, 2.0),
        ("tree", 7, 1, 3.0),
    ],
)
def test_time_model(strategy, targets, seeds, want_t):
    t = wd.estimate_seconds(strategy, targets, seeds, total_bytes=1000, n_files=16, link_bytes_per_s=1000)
    assert t == pytest.approx(want_t)


def test_pull_argv_is_an_argv_list_with_resume_and_delta_options():
    argv = wd.rsync_pull_argv("rsync", "10.0.0.2", 8730, "inferops-weights", "model-00001.safetensors", "/m/x", 90, 0)
    assert argv[0] == "rsync"
    assert "--partial" in argv and "--partial-dir=.rsync-partial" in argv
    assert "--ignore-times" in argv  # a same-size, same-mtime corrupt basis is still compared
    assert "--timeout=90" in argv and not any(a.startswith("--bwlimit") for a in argv)
    assert argv[-2:] == ["rsync://10.0.0.2:8730/inferops-weights/model-00001.safetensors", "/m/x"]
    assert "--bwlimit=1000" in wd.rsync_pull_argv("rsync", "h", 1, "m", "f", "/d", bwlimit_kbps=1000)


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


# Real `rsync --list-only -r` output of a daemon module (rsync 3.5.0, captured on the controller):
# the served tree, state files excluded by the daemon's `exclude`.
LISTING_GROUPED = """\
drwxr-xr-x          4,096 2026/11/21 15:10:36 .
-rw-r--r--      1,234,567 2026/11/21 15:10:36 model-00001-of-00002.safetensors
drwxr-xr-x          4,096 2026/11/21 15:10:36 sub
-rw-r--r--              2 2026/11/21 15:10:36 sub/a.json
"""
LISTING_PLAIN = """\
drwxr-xr-x        4096 2026/11/21 15:10:36 .
-rw-r--r--     1234567 2026/11/21 15:10:36 model-00001-of-00002.safetensors
drwxr-xr-x        4096 2026/11/21 15:10:36 sub
-rw-r--r--           2 2026/11/21 15:10:36 sub/a.json
"""


@pytest.mark.parametrize("text", [LISTING_GROUPED, LISTING_PLAIN], ids=["digit-grouping", "no-h"])
def test_parse_listing(text):
    assert wd.parse_listing(text) == {"model-00001-of-00002.safetensors": 1234567, "sub/a.json": 2}


def test_parse_listing_keeps_spaces_in_names_and_skips_links():
    text = (
        "-rw-r--r--          10 2026/11/21 15:10:36 a name with spaces.json\n"
        "lrwxrwxrwx           9 2026/11/21 15:10:36 link -> target\n"
    )
    assert wd.parse_listing(text) == {"a name with spaces.json": 10}


def test_list_and_batch_argv():
    listing = wd.rsync_list_argv("rsync", "10.0.0.2", 8730, "inferops-weights", 30)
    assert listing[:4] == ["rsync", "--list-only", "--recursive", "--no-human-readable"]
    assert listing[-1] == "rsync://10.0.0.2:8730/inferops-weights/"
    batch = wd.rsync_batch_argv(
        "rsync", "10.0.0.2", 8730, "inferops-weights", "/m/x/.inferops-incoming", "/tmp/list", 30, 500
    )
    assert "--from0" in batch and "--files-from=/tmp/list" in batch and "--partial-dir=.rsync-partial" in batch
    assert "--bwlimit=500" in batch
    assert batch[-2:] == ["rsync://10.0.0.2:8730/inferops-weights/", "/m/x/.inferops-incoming/"]
