"""The weights modules run for real on temporary directories, with real rsync daemons on loopback.

A two-hop chain (seed -> b -> c) is staged with c started while b is still empty, so c's files
can only come through b once b has verified them: the pipeline's waiting is exercised, not faked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
MODULES = ROOT / "plugins" / "modules"
COLLECTIONS = ROOT / ".build" / "collections"


def run_module(name: str, args: dict, tmp: Path, check_mode: bool = False) -> dict:
    argfile = tmp / f"args-{name}-{time.monotonic_ns()}.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}}))
    env = {**os.environ, "PYTHONPATH": str(COLLECTIONS)}
    proc = subprocess.run(
        [sys.executable, str(MODULES / f"{name}.py"), str(argfile)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"{name} printed no JSON: {proc.stdout[-2000:]} {proc.stderr[-2000:]}") from None


def make_weights(root: Path, shards: int = 3, size: int = 256 * 1024) -> dict[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    want = {}
    (root / "config.json").write_text('{"hidden_size": 256}\n')
    want["config.json"] = hashlib.sha256(b'{"hidden_size": 256}\n').hexdigest()
    for i in range(1, shards + 1):
        data = hashlib.shake_256(f"shard{i}".encode()).digest(size)
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        (root / name).write_bytes(data)
        want[name] = hashlib.sha256(data).hexdigest()
    return want


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """A read-only rsync daemon like the role's (same module name and excludes)."""

    def __init__(self, tmp: Path, path: Path, name: str) -> None:
        self.port = free_port()
        self.conf = tmp / f"rsyncd-{name}.conf"
        self.log = tmp / f"rsyncd-{name}.log"
        self.conf.write_text(
            f"port = {self.port}\naddress = 127.0.0.1\nuse chroot = no\nreverse lookup = no\nlog file = {self.log}\n"
            f"[inferops-weights]\npath = {path}\nread only = yes\nhosts allow = 127.0.0.1\nhosts deny = *\n"
            "exclude = /.inferops-* /.cache/ /.rsync-partial/ .rsync-partial/\n"
        )
        self.proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={self.conf}"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("rsync daemon did not start")

    def sessions_ended(self) -> int:
        """Client sessions (not bare connections) that the daemon has logged as finished."""
        text = self.log.read_text() if self.log.exists() else ""
        started = set(re.findall(r"\[(\d+)\] rsync on ", text))
        ended = set(re.findall(r"\[(\d+)\] sent \d+ bytes", text))
        return len(started & ended)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def rsync_needed():
    """rsync is a host tool (scripts/host-tools.txt): the session fails at its start without it."""
    assert shutil.which("rsync"), "rsync is not installed (make host-tools)"


def test_local_fetch_manifest_is_idempotent(tmp_path):
    src = tmp_path / "nfs" / "model"
    want = make_weights(src)
    dest = tmp_path / "a"
    args = {"path": str(dest), "source": "local", "url": str(src), "workers": 2}
    first = run_module("weights_fetch", args, tmp_path)
    assert first.get("failed") is not True, first
    assert first["changed"] is True
    assert {p: e["sha256"] for p, e in first["manifest"]["files"].items()} == want
    assert json.loads((dest / ".inferops-manifest.json").read_text())["digest"] == first["digest"]
    second = run_module("weights_fetch", args, tmp_path)
    assert second["changed"] is False and second["digest"] == first["digest"]


def test_manifest_verified_detects_corruption_and_keeps_marker_last(tmp_path):
    src = tmp_path / "src"
    make_weights(src)
    fetched = run_module("weights_fetch", {"path": str(src), "source": "local", "url": str(src)}, tmp_path)
    node = tmp_path / "node"
    shutil.copytree(src, node, ignore=shutil.ignore_patterns(".inferops-*"))
    args = {"path": str(node), "manifest": fetched["manifest"]}
    res = run_module("weights_manifest", args, tmp_path)
    assert res["complete"] is True and res["changed"] is True and res["hashed"] == 4
    assert (node / ".inferops-complete").read_text().strip() == fetched["digest"]
    again = run_module("weights_manifest", args, tmp_path)
    assert again["changed"] is False and again["hashed"] == 0  # trusted from the cache

    victim = node / "model-00002-of-00003.safetensors"
    with open(victim, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\0" * 16)
    check = run_module("weights_manifest", args, tmp_path, check_mode=True)
    assert check["changed"] is True and check["corrupt"] == [victim.name] and victim.exists()
    res = run_module("weights_manifest", args, tmp_path)
    assert res["complete"] is False and res["corrupt"] == [victim.name]
    assert not victim.exists() and (node / ".inferops-incoming" / victim.name).exists()
    assert not (node / ".inferops-complete").exists()
    ready = run_module("weights_manifest", {"path": str(node), "state": "ready"}, tmp_path)
    assert ready["ready"] is False and ready["changed"] is False


def test_recorded_then_checked_is_the_serving_gate(tmp_path):
    """The lab records its tiny model's manifest; the serving role's gate checks it read-only, quick."""
    model = tmp_path / "tiny"
    want = make_weights(model)
    none = run_module("weights_manifest", {"path": str(model), "state": "checked"}, tmp_path)
    assert none["ready"] is False and none["problems"] == [f"no .inferops-manifest.json in {model}"]

    rec = run_module("weights_manifest", {"path": str(model), "state": "recorded"}, tmp_path)
    assert rec["changed"] is True and rec["hashed"] == 4
    manifest = json.loads((model / ".inferops-manifest.json").read_text())
    assert {p: e["sha256"] for p, e in manifest["files"].items()} == want
    assert (model / ".inferops-complete").read_text().strip() == rec["digest"] == manifest["digest"]
    again = run_module("weights_manifest", {"path": str(model), "state": "recorded"}, tmp_path)
    assert again["changed"] is False and again["hashed"] == 0

    model.chmod(0o555)  # the lab mounts the model read-only: the gate writes nothing
    try:
        gate = run_module("weights_manifest", {"path": str(model), "state": "checked"}, tmp_path)
        assert gate == {**gate, "changed": False, "ready": True, "problems": [], "hashed": 0, "trusted": 4}
    finally:
        model.chmod(0o755)

    victim = model / "model-00003-of-00003.safetensors"
    with open(victim, "r+b") as fh:
        fh.seek(2000)
        fh.write(b"\0" * 8)
    gate = run_module("weights_manifest", {"path": str(model), "state": "checked"}, tmp_path)
    assert gate["ready"] is False and gate["hashed"] == 1
    assert len(gate["problems"]) == 1 and gate["problems"][0].startswith(f"{victim.name}: sha256 ")
    refused = run_module("weights_manifest", {"path": str(model), "state": "recorded"}, tmp_path)
    assert refused["failed"] is True and victim.name in refused["msg"]  # recording never blesses a changed file


def test_space_preflight_fails_before_touching_anything(tmp_path):
    src = tmp_path / "src"
    make_weights(src)
    fetched = run_module("weights_fetch", {"path": str(src), "source": "local", "url": str(src)}, tmp_path)
    node = tmp_path / "empty"
    res = run_module(
        "weights_manifest",
        {"path": str(node), "manifest": fetched["manifest"], "reserve_bytes": 1 << 62},
        tmp_path,
    )
    assert res["failed"] is True and "not enough free space" in res["msg"] and str(node) in res["msg"]
    assert not node.exists()


def test_bad_source_is_refused_naming_the_variable(tmp_path):
    res = run_module(
        "weights_fetch", {"path": str(tmp_path / "x"), "source": "hf", "repo": "a/b", "revision": "main"}, tmp_path
    )
    assert res["failed"] is True and "model_weights_revision" in res["msg"]
    assert not (tmp_path / "x").exists()


def test_pipelined_chain_through_real_rsync_daemons(tmp_path, rsync_needed):
    seed = tmp_path / "seed"
    want = make_weights(seed, shards=4, size=512 * 1024)
    fetched = run_module("weights_fetch", {"path": str(seed), "source": "local", "url": str(seed)}, tmp_path)
    b, c = tmp_path / "b", tmp_path / "c"
    for node in (b, c):
        res = run_module("weights_manifest", {"path": str(node), "manifest": fetched["manifest"]}, tmp_path)
        assert res["complete"] is False and len(res["missing"]) == 5
    d_seed, d_b = Daemon(tmp_path, seed, "seed"), Daemon(tmp_path, b, "b")
    results: dict[str, dict] = {}
    try:
        # c starts first, pulling from b, which has nothing yet: c must wait for b's verified files
        def pull(name: str, path: Path, port: int) -> None:
            results[name] = run_module(
                "weights_distribute",
                {"path": str(path), "upstream": "127.0.0.1", "port": port, "poll_interval": 0.1, "timeout": 60},
                tmp_path,
            )

        tc = threading.Thread(target=pull, args=("c", c, d_b.port))
        tc.start()
        # b starts only once a session of c at b has ended (finding nothing): c has to wait for b
        deadline = time.monotonic() + 60
        while not d_b.sessions_ended():
            assert time.monotonic() < deadline, "c never contacted b"
            time.sleep(0.1)
        pull("b", b, d_seed.port)
        tc.join(90)
    finally:
        d_seed.stop()
        d_b.stop()
    for name, node in (("b", b), ("c", c)):
        res = results[name]
        assert res.get("failed") is not True, res
        assert sorted(res["pulled"]) == sorted(want)
        assert (node / ".inferops-complete").read_text().strip() == fetched["digest"]
        for rel, sha in want.items():
            assert hashlib.sha256((node / rel).read_bytes()).hexdigest() == sha
        assert not list((node / ".inferops-incoming").rglob("*.safetensors"))
    assert results["c"]["waits"] > 0  # it found files not yet at b and waited for them

    # repair: one corrupt shard on c is re-fetched (delta on top of the moved-aside copy)
    victim = c / "model-00003-of-00004.safetensors"
    with open(victim, "r+b") as fh:
        fh.seek(4096)
        fh.write(b"\xff" * 64)
    res = run_module("weights_manifest", {"path": str(c), "manifest": fetched["manifest"]}, tmp_path)
    assert res["corrupt"] == [victim.name]
    d_seed = Daemon(tmp_path, seed, "seed2")
    try:
        res = run_module("weights_distribute", {"path": str(c), "upstream": "127.0.0.1", "port": d_seed.port}, tmp_path)
    finally:
        d_seed.stop()
    assert res["pulled"] == [victim.name]
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == want[victim.name]
    again = run_module("weights_distribute", {"path": str(c), "upstream": "127.0.0.1", "port": 1}, tmp_path)
    assert again["changed"] is False and again["pulled"] == []


def test_distribute_gives_up_on_an_unreachable_upstream(tmp_path, rsync_needed):
    seed = tmp_path / "seed"
    make_weights(seed, shards=1)
    fetched = run_module("weights_fetch", {"path": str(seed), "source": "local", "url": str(seed)}, tmp_path)
    node = tmp_path / "n"
    run_module("weights_manifest", {"path": str(node), "manifest": fetched["manifest"]}, tmp_path)
    res = run_module(
        "weights_distribute",
        {"path": str(node), "upstream": "127.0.0.1", "port": free_port(), "io_timeout": 1, "poll_interval": 0.2},
        tmp_path,
    )
    assert res["failed"] is True and "Connection refused" in str(res["failed_files"])
    assert not (node / ".inferops-complete").exists()
