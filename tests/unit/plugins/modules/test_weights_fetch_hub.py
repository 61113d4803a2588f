"""inferops_hf_token reaches a gated repository: weights_fetch with the real huggingface_hub client against a
Hub-compatible server on 127.0.0.1 that answers 401 unless the request carries ``Authorization: Bearer TOKEN``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[4]
TOKEN = "hf_unit_gated_token_never_logged"
REPO = "acme/gated-tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FILES = {
    "config.json": b'{"hidden_size": 64}\n',
    "model-00001-of-00002.safetensors": hashlib.shake_256(b"one").digest(6000),
    "model-00002-of-00002.safetensors": hashlib.shake_256(b"two").digest(3000),
}


class FakeHub:
    """The endpoints list_repo_tree and snapshot_download use, for one repository at one commit; gated (401
    without the token); records every request's method, path and Authorization header."""

    def __init__(self, repo: str, commit: str, files: dict[str, bytes], lfs: set[str], token: str) -> None:
        self.repo, self.commit, self.files, self.lfs, self.token = repo, commit, files, lfs, token
        self.seen: list[tuple[str, str, str | None]] = []  # (method, path, Authorization)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                hub.handle(self, head=True)

            def do_GET(self) -> None:
                hub.handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _tree(self) -> list[dict]:
        out = []
        for path, data in sorted(self.files.items()):
            entry = {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
            if path in self.lfs:
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            out.append(entry)
        return out

    def handle(self, req: BaseHTTPRequestHandler, head: bool) -> None:
        url = urlparse(req.path)
        path = unquote(url.path)
        self.seen.append((req.command, path, req.headers.get("Authorization")))
        if req.headers.get("Authorization") != f"Bearer {self.token}":  # a gated repository
            req.send_response(401)
            req.send_header("X-Error-Code", "GatedRepo")
            req.send_header("X-Error-Message", f"Access to model {self.repo} is restricted.")
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        api = f"/api/models/{self.repo}"
        body: bytes
        headers = {}
        if path.startswith(f"{api}/tree/"):
            body, ctype = json.dumps(self._tree()).encode(), "application/json"
        elif path.startswith(f"{api}/revision/") or path == api:
            info = {
                "id": self.repo,
                "sha": self.commit,
                "siblings": [{"rfilename": e["path"], "size": e["size"]} for e in self._tree()],
            }
            body, ctype = json.dumps(info).encode(), "application/json"
        elif path.startswith(f"/{self.repo}/resolve/"):
            name = path.split("/resolve/", 1)[1].split("/", 1)[1]
            if name not in self.files:
                req.send_response(404)
                req.send_header("X-Error-Code", "EntryNotFound")
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
            body, ctype = self.files[name], "application/octet-stream"
            etag = hashlib.sha256(body).hexdigest() if name in self.lfs else hashlib.sha1(body).hexdigest()
            headers = {"X-Repo-Commit": self.commit, "ETag": f'"{etag}"'}
            if name in self.lfs:
                headers["X-Linked-Etag"] = f'"{etag}"'
                headers["X-Linked-Size"] = str(len(body))
        else:
            req.send_response(404)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        req.send_response(200)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            req.send_header(k, v)
        req.end_headers()
        if not head:
            req.wfile.write(body)


@pytest.fixture
def hub():
    server = FakeHub(REPO, COMMIT, FILES, {f for f in FILES if f.endswith(".safetensors")}, TOKEN)
    yield server
    server.close()


def fetch(tmp: Path, hub: FakeHub, **extra) -> tuple[dict, str]:
    args = {"path": str(tmp / "model"), "source": "hf", "repo": REPO, "revision": COMMIT, "endpoint": hub.endpoint}
    argfile = tmp / f"args-{time.monotonic_ns()}.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, **extra}}))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / ".build" / "collections"),
        "HF_HOME": str(tmp / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    env.pop("HF_TOKEN", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "plugins" / "modules" / "weights_fetch.py"), str(argfile)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    return json.loads(proc.stdout), proc.stdout + proc.stderr


def test_the_token_reaches_every_hub_request_and_nothing_else(tmp_path, hub):
    result, output = fetch(tmp_path, hub, token=TOKEN)
    assert result.get("failed") is not True, result
    assert sorted(result["downloaded"]) == sorted(FILES)
    for name, data in FILES.items():
        assert (tmp_path / "model" / name).read_bytes() == data
    # the tree listing and every file download carried the token
    assert {method for method, _path, _auth in hub.seen} >= {"GET", "HEAD"}
    assert any(path.startswith(f"/api/models/{REPO}/tree/") for _m, path, _a in hub.seen)
    assert all(auth == f"Bearer {TOKEN}" for _m, _p, auth in hub.seen), hub.seen
    # never in the module's output nor in the files written beside the weights
    assert TOKEN not in output
    for state in (tmp_path / "model").glob(".inferops-*"):
        assert TOKEN not in state.read_text()


def test_without_the_token_a_gated_repository_fails_naming_it(tmp_path, hub):
    result, _output = fetch(tmp_path, hub)
    assert result["failed"] is True
    assert REPO in result["msg"]
    assert all(auth is None for _m, _p, auth in hub.seen)
    assert not (tmp_path / "model" / "config.json").exists()


def test_a_wrong_token_is_refused_and_not_shown(tmp_path, hub):
    result, output = fetch(tmp_path, hub, token="hf_wrong_token_also_secret")
    assert result["failed"] is True
    assert "hf_wrong_token_also_secret" not in output
