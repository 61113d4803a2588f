"""Manifest identity, verification decisions (table in fixtures/weights/verification.yml), space."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml

from ansible_collections.inferops.cluster.plugins.module_utils import _manifest as wm

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "weights"
CASES = yaml.safe_load((FIXTURES / "verification.yml").read_text())
SHA = {k: hashlib.sha256(k.encode()).hexdigest() for k in ("A", "B", "C", "OLD")}
FILES = {
    "a": {"size": 10, "sha256": SHA["A"]},
    "b": {"size": 20, "sha256": SHA["B"]},
    "c": {"size": 30, "sha256": SHA["C"]},
}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_plan_verification_table(case):
    stats = {p: (tuple(s) if s else None) for p, s in case["stats"].items()}
    cache = {p: {"size": c[0], "mtime_ns": c[1], "sha256": SHA[c[2]]} for p, c in case["cache"].items()}
    assert wm.plan_verification(FILES, stats, cache, case["mode"]) == case["want"]


def test_plan_verification_never_trusts_an_unknown_hash():
    files = {"config.json": {"size": 5, "sha256": None}}
    cache = {"config.json": {"size": 5, "mtime_ns": 1, "sha256": SHA["A"]}}
    assert wm.plan_verification(files, {"config.json": (5, 1)}, cache)["hash"] == ["config.json"]


def test_plan_verification_rejects_unknown_mode():
    with pytest.raises(ValueError, match="quick or full"):
        wm.plan_verification(FILES, {}, {}, "fast")


def test_judge_hashes_learns_unknown_and_flags_corrupt():
    files = {**FILES, "config.json": {"size": 5, "sha256": None}}
    good, corrupt, learned = wm.judge_hashes(files, {"a": SHA["A"], "b": SHA["OLD"], "config.json": SHA["C"]})
    assert good == ["a", "config.json"]
    assert corrupt == ["b"]
    assert learned == {"config.json": SHA["C"]}


def test_digest_depends_on_files_only_and_is_order_free():
    m1 = wm.build_manifest(FILES, {"kind": "hf", "repo": "x/y"})
    m2 = wm.build_manifest(dict(reversed(list(FILES.items()))), {"kind": "modelscope", "repo": "x/y"})
    assert m1["digest"] == m2["digest"]
    changed = {**FILES, "c": {"size": 30, "sha256": SHA["OLD"]}}
    assert wm.build_manifest(changed)["digest"] != m1["digest"]
    # the digest is sha256 over the canonical JSON of the files
    canon = json.dumps(FILES, sort_keys=True, separators=(",", ":"))
    assert m1["digest"] == hashlib.sha256(canon.encode()).hexdigest()


def test_parse_manifest_round_trip_and_tamper_detection():
    m = wm.build_manifest(FILES, {"kind": "hf"})
    assert wm.parse_manifest(wm.canonical_json(m)) == m
    tampered = json.loads(wm.canonical_json(m))
    tampered["files"]["a"]["size"] = 11
    with pytest.raises(wm.ManifestError, match="digest does not match"):
        wm.parse_manifest(json.dumps(tampered))


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"../etc/passwd": {"size": 1, "sha256": SHA["A"]}}, r"'\.\.' component"),
        ({"/abs": {"size": 1, "sha256": SHA["A"]}}, "relative"),
        ({"a\nb": {"size": 1, "sha256": SHA["A"]}}, "relative"),
        ({"a//b": {"size": 1, "sha256": SHA["A"]}}, "empty"),
        ({".inferops-complete": {"size": 1, "sha256": SHA["A"]}}, "reserved"),
        ({".cache/huggingface/x": {"size": 1, "sha256": SHA["A"]}}, "reserved"),
        ({"a": {"size": -1, "sha256": SHA["A"]}}, "valid size"),
        ({"a": {"size": True, "sha256": SHA["A"]}}, "valid size"),
        ({"a": {"size": 1, "sha256": "abc"}}, "valid sha256"),
        ({"a": {"size": 1}}, "valid sha256"),
    ],
)
def test_manifest_validation(files, message):
    with pytest.raises(wm.ManifestError, match=message):
        wm.normalize_files(files)


def test_parse_manifest_rejects_garbage():
    for text, message in [("{", "not JSON"), ('{"format": 2, "files": {}}', "format"), ('{"format": 1}', "no files")]:
        with pytest.raises(wm.ManifestError, match=message):
            wm.parse_manifest(text)


def test_transfer_order_small_files_first_then_path():
    files = {
        "model-00002.safetensors": {"size": 5 << 30},
        "config.json": {"size": 700},
        "model-00001.safetensors": {"size": 5 << 30},
        "tokenizer.json": {"size": 9 << 20},
    }
    assert wm.transfer_order(files) == [
        "config.json",
        "tokenizer.json",
        "model-00001.safetensors",
        "model-00002.safetensors",
    ]


GIB = 1 << 30


@pytest.mark.parametrize(
    ("total", "present", "convert", "reserve", "want"),
    [
        (688 * GIB, 0, False, 0, 688 * GIB),  # DeepSeek-R1 FP8, nothing yet
        (688 * GIB, 0, True, 0, 688 * GIB + 1376 * GIB),  # plus the BF16 output, ~2x
        (688 * GIB, 688 * GIB, True, GIB, 1376 * GIB + GIB),  # weights there, conversion still needs room
        (10 * GIB, 4 * GIB, False, GIB, 7 * GIB),
        (10 * GIB, 12 * GIB, False, 0, 0),
    ],
)
def test_space_needed(total, present, convert, reserve, want):
    assert wm.space_needed(total, present, convert, 2.0, reserve) == want


def test_update_cache_drops_bad_and_unlisted_entries():
    cache = {"a": {"size": 10, "mtime_ns": 1, "sha256": SHA["A"]}, "gone": {"size": 1, "mtime_ns": 1, "sha256": "x"}}
    out = wm.update_cache(cache, FILES, {"b": (20, 2, SHA["B"])}, bad=["a"])
    assert out == {"b": {"size": 20, "mtime_ns": 2, "sha256": SHA["B"]}}


def test_marker_ready():
    assert wm.marker_ready("abc\n", "abc")
    assert not wm.marker_ready(None, "abc")
    assert not wm.marker_ready("abd\n", "abc")


def test_io_helpers(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    (tmp_path / "sub" / "b.bin").write_bytes(b"y" * 3)
    (tmp_path / ".inferops-complete").write_text("d")
    (tmp_path / ".inferops-incoming").mkdir()
    (tmp_path / ".inferops-incoming" / "a.bin").write_bytes(b"z")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "meta").write_text("m")
    assert wm.list_tree(str(tmp_path)) == ["a.bin", "sub/b.bin"]
    hashes = wm.hash_files(str(tmp_path), ["a.bin", "sub/b.bin"], workers=2)
    assert hashes == {"a.bin": hashlib.sha256(b"x" * 100).hexdigest(), "sub/b.bin": hashlib.sha256(b"yyy").hexdigest()}
    stats = wm.stat_files(str(tmp_path), ["a.bin", "nope"])
    assert stats["a.bin"][0] == 100 and stats["nope"] is None
    target = str(tmp_path / "m.json")
    assert wm.write_atomic(target, "one") is True
    assert wm.write_atomic(target, "one") is False
    assert wm.read_text(target) == "one"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".inferops-tmp-")]
    assert wm.free_bytes(str(tmp_path / "not" / "yet")) > 0
