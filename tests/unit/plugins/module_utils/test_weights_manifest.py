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


# -- the serving role's weights gate (check_directory: read-only, quick with the cache) -----------------
def _shards(root: Path) -> dict[str, dict]:
    root.mkdir(parents=True, exist_ok=True)
    files = {}
    for i in (1, 2, 3):
        name = f"model-0000{i}-of-00003.safetensors"
        data = hashlib.shake_256(name.encode()).digest(4096)
        (root / name).write_bytes(data)
        files[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return files


def _cache_of(root: Path, files: dict) -> dict:
    return {
        p: {"size": e["size"], "mtime_ns": os.stat(root / p).st_mtime_ns, "sha256": e["sha256"]}
        for p, e in files.items()
    }


def test_gate_names_a_corrupted_shard_with_both_hashes(tmp_path):
    files = _shards(tmp_path)
    bad = "model-00002-of-00003.safetensors"
    data = bytearray((tmp_path / bad).read_bytes())
    data[100] ^= 0xFF  # same size: only the hash can tell
    (tmp_path / bad).write_bytes(bytes(data))
    got = wm.check_directory(str(tmp_path), files, {}, "quick", 2)
    assert got["problems"] == [
        f"{bad}: sha256 {hashlib.sha256(bytes(data)).hexdigest()} differs from the manifest's {files[bad]['sha256']}"
    ]
    assert got["hashed"] == 3 and got["trusted"] == 0


def test_gate_names_missing_and_wrong_sized_files_without_hashing(tmp_path):
    files = _shards(tmp_path)
    cache = _cache_of(tmp_path, files)
    (tmp_path / "model-00001-of-00003.safetensors").unlink()
    with open(tmp_path / "model-00003-of-00003.safetensors", "ab") as fh:
        fh.write(b"x")
    got = wm.check_directory(str(tmp_path), files, cache, "quick", 2)
    assert got["problems"] == [
        "model-00001-of-00003.safetensors: missing (the manifest lists 4096 bytes)",
        "model-00003-of-00003.safetensors: 4097 bytes, the manifest says 4096",
    ]
    assert got["hashed"] == 0  # the middle shard is vouched for by the cache


def test_gate_is_quick_when_the_cache_vouches_and_hashes_what_changed(tmp_path):
    files = _shards(tmp_path)
    cache = _cache_of(tmp_path, files)
    assert wm.check_directory(str(tmp_path), files, cache, "quick") == {"problems": [], "hashed": 0, "trusted": 3}
    # a shard rewritten in place (same size, new mtime) is hashed again, and caught
    bad = tmp_path / "model-00003-of-00003.safetensors"
    bad.write_bytes(b"\0" * 4096)
    os.utime(bad, ns=(cache[bad.name]["mtime_ns"] + 10**9, cache[bad.name]["mtime_ns"] + 10**9))
    got = wm.check_directory(str(tmp_path), files, cache, "quick")
    assert got["hashed"] == 1 and got["trusted"] == 2
    assert [p.split(":")[0] for p in got["problems"]] == [bad.name]
    # full hashes everything, cache or not
    assert wm.check_directory(str(tmp_path), files, cache, "full")["hashed"] == 3


def test_gate_on_a_missing_directory_lists_every_file(tmp_path):
    files = {"a.safetensors": {"size": 1, "sha256": SHA["A"]}}
    got = wm.check_directory(str(tmp_path / "absent"), files, {})
    assert got["problems"] == ["a.safetensors: missing (the manifest lists 1 bytes)"]
