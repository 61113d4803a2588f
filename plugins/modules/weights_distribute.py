#!/usr/bin/python
# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: weights_distribute
short_description: Pull model weights from an upstream node, verifying every file
description:
  - Runs on a node that lacks some files of the weights manifest (C(.inferops-manifest.json),
    already installed by M(inferops.cluster.weights_manifest)). Pulls every missing file from
    the rsync daemon of its O(upstream) node into C(.inferops-incoming/), checks its sha256 and
    only then renames it into place, so the node's own daemon (which serves the directory to
    the next node) never exposes a file that is not verified.
  - Each rsync session asks the upstream for every file still needed; the upstream sends those
    it already serves and reports the others missing. Each file is hashed as soon as rsync has
    received it whole. When the upstream has none of them yet (it is itself receiving them), the
    module waits and asks again; nodes of a chain work as a pipeline, each about one file
    behind its upstream.
  - Resumable, an interrupted file stays in C(.inferops-incoming/) (C(--partial-dir)) and the
    next run continues from it; a corrupt file moved aside there serves as the basis of rsync's
    delta transfer.
  - Ends with every file verified and the ready marker C(.inferops-complete) written, last.
version_added: 0.1.0
author:
  - inferops maintainers (@inferops)
options:
  path:
    description: The weights directory (holds the manifest).
    type: path
    required: true
  upstream:
    description: Address of the node to pull from.
    type: str
    required: true
  port:
    description: Port of the upstream's rsync daemon.
    type: int
    default: 8730
  module_name:
    description: rsync daemon module that serves the weights.
    type: str
    default: inferops-weights
  timeout:
    description: Seconds to wait for the upstream to offer a file before giving up.
    type: int
    default: 3600
  io_timeout:
    description:
      - rsync I/O timeout in seconds, and how long the upstream may stay unreachable (connection
        refused, reset) before the module gives up.
    type: int
    default: 120
  poll_interval:
    description: Seconds between two looks for a file the upstream does not have yet.
    type: float
    default: 0.2
  attempts:
    description: Transfers of one file that may end with a wrong sha256 before the module fails.
    type: int
    default: 3
  workers:
    description: Files hashed at once (hashing overlaps with the next transfer).
    type: int
    default: 2
  bwlimit_kbps:
    description: rsync C(--bwlimit) in KiB/s (0 = none).
    type: int
    default: 0
  rsync:
    description: The C(rsync) executable.
    type: str
    default: rsync
extends_documentation_fragment:
  - inferops.cluster.attributes
  - inferops.cluster.attributes.binary_files
attributes:
  check_mode:
    details: Lists the files that would be pulled.
  idempotent:
    details: Nothing is pulled when every file is present and verified.
"""

EXAMPLES = r"""
- name: Pull the weights from the previous node of the chain
  inferops.cluster.weights_distribute:
    path: /models/DeepSeek-R1
    upstream: 10.0.0.11
    port: 8730
  async: 86400
  poll: 0
  register: __pull
"""

RETURN = r"""
pulled:
  description: Files transferred in this run.
  returned: success
  type: list
  elements: str
bytes:
  description: Bytes of the files transferred.
  returned: success
  type: int
seconds:
  description: Wall time of the transfers, waits included.
  returned: success
  type: float
waits:
  description: Times the module found no needed file at its upstream yet and waited.
  returned: success
  type: int
sessions:
  description: rsync sessions used (each asks for every file still needed).
  returned: success
  type: int
digest:
  description: The manifest digest written to the marker.
  returned: success
  type: str
"""

import os
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.cluster.plugins.module_utils import _distribute as wd
from ansible_collections.inferops.cluster.plugins.module_utils import _manifest as wm


class Puller:
    """Pulls the missing files from the upstream, as many per rsync session as it already has.

    Loop: ask the upstream for every needed file in one session (it serves only verified files;
    the ones it lacks come back as "No such file"), and while that session runs hash each file as
    soon as rsync renames it to its final name, then move it into place (from where this node's
    daemon serves it to the next node). When nothing came, wait and ask again.
    """

    def __init__(self, module: AnsibleModule, manifest: dict) -> None:
        self.module = module
        self.p = module.params
        self.path = self.p["path"]
        self.files = manifest["files"]
        self.incoming = os.path.join(self.path, wm.INCOMING_DIR)
        self.lock = threading.Lock()
        self.verified: dict[str, tuple[int, int, str]] = {}
        self.failed: dict[str, str] = {}
        self.retry: list[str] = []
        self.tries: dict[str, int] = {}
        self.waits = 0
        self.sessions = 0
        self.stderr = ""
        self.files_from = os.path.join(module.tmpdir, "files-from")
        self.pool = ThreadPoolExecutor(max_workers=max(1, self.p["workers"]))
        self.jobs: list = []

    # -- one file ------------------------------------------------------------
    def check_and_install(self, rel: str) -> None:
        src = os.path.join(self.incoming, rel)
        try:
            ok = os.path.getsize(src) == self.files[rel]["size"] and wm.sha256_file(src) == self.files[rel]["sha256"]
            if ok:
                dst = os.path.join(self.path, rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.replace(src, dst)  # only now does this node's daemon serve it
                st = os.stat(dst)
                with self.lock:
                    self.verified[rel] = (st.st_size, st.st_mtime_ns, self.files[rel]["sha256"])
                return
            with self.lock:
                self.tries[rel] = self.tries.get(rel, 0) + 1
                if self.tries[rel] >= self.p["attempts"]:
                    self.failed[rel] = f"sha256 mismatch after {self.tries[rel]} transfers"
                else:
                    self.retry.append(rel)  # stays as the delta basis of the next transfer
        except OSError as exc:
            with self.lock:
                self.failed[rel] = str(exc)

    # -- upstream ------------------------------------------------------------
    def scan(self, remaining: list[str], base: dict[str, int | None]) -> None:
        """Hand every watched file that rsync has renamed to its final name to the hash pool."""
        for rel in list(remaining):
            try:
                st = os.stat(os.path.join(self.incoming, rel))
            except FileNotFoundError:
                continue
            if st.st_ino != base[rel] and st.st_size == self.files[rel]["size"]:
                remaining.remove(rel)
                self.jobs.append(self.pool.submit(self.check_and_install, rel))

    def rsync(self, argv: list[str], watch: list[str]) -> int:
        """Run one rsync session (argv list, no shell) for the files in ``watch``; a watcher
        thread hashes them as they land."""
        with open(self.files_from, "w", encoding="utf-8") as fh:
            fh.write("\0".join(watch) + "\0")
        base: dict[str, int | None] = {}
        for rel in watch:  # an old copy there (the delta basis) is not the new file
            try:
                base[rel] = os.stat(os.path.join(self.incoming, rel)).st_ino
            except FileNotFoundError:
                base[rel] = None
        remaining = list(watch)
        stop = threading.Event()

        def watcher() -> None:
            while not stop.is_set():
                self.scan(remaining, base)
                stop.wait(0.05)

        thread = threading.Thread(target=watcher, daemon=True)
        thread.start()
        try:
            rc, _out, err = self.module.run_command(argv)
        finally:
            stop.set()
            thread.join()
        self.scan(remaining, base)
        with self.lock:
            self.retry.extend(remaining)  # not received in this session
        self.stderr = err
        return rc

    def run(self, todo: list[str]) -> None:
        p = self.p
        pending = list(todo)
        deadline = time.monotonic() + p["timeout"]
        failing_since = None
        batch_argv = wd.rsync_batch_argv(
            p["rsync"],
            p["upstream"],
            p["port"],
            p["module_name"],
            self.incoming,
            self.files_from,
            p["io_timeout"],
            p["bwlimit_kbps"],
        )
        os.makedirs(self.incoming, exist_ok=True)
        while True:
            with self.lock:
                retry, self.retry = self.retry, []
                if self.failed:
                    break
            pending = [f for f in wm.transfer_order(self.files) if f in set(pending) | set(retry)]
            if not pending:
                if all(j.done() for j in self.jobs):
                    with self.lock:
                        if not self.retry:
                            break
                time.sleep(0.05)
                continue
            # ask for every pending file: rsync sends those the upstream already serves and
            # reports the others as missing (it is still receiving them); no separate listing
            self.sessions += 1
            for rel in pending:
                os.makedirs(os.path.dirname(os.path.join(self.incoming, rel)), exist_ok=True)
            before = len(self.jobs)
            rc = self.rsync(batch_argv, watch=pending)
            kind = wd.classify_rsync(rc, self.stderr)
            received = len(self.jobs) - before
            pending = []  # what was not received is back in self.retry (the watcher put it there)
            if kind == "ok" or (kind == "missing" and received):
                failing_since = None
                continue
            now = time.monotonic()
            failing_since = (failing_since or now) if kind == "retry" else None
            if (
                kind == "fatal"
                or now > deadline
                or (failing_since is not None and now - failing_since > p["io_timeout"])
            ):
                with self.lock:
                    for rel in self.retry or ["(all)"]:
                        self.failed.setdefault(
                            rel, f"rsync from {p['upstream']} failed (rc={rc}): {self.stderr.strip()[-500:]}"
                        )
                break
            with self.lock:
                self.waits += 1
            time.sleep(p["poll_interval"])
        for job in self.jobs:
            job.result()
        self.pool.shutdown()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "upstream": {"type": "str", "required": True},
            "port": {"type": "int", "default": 8730},
            "module_name": {"type": "str", "default": wd.RSYNC_MODULE},
            "timeout": {"type": "int", "default": 3600},
            "io_timeout": {"type": "int", "default": 120},
            "poll_interval": {"type": "float", "default": 0.2},
            "attempts": {"type": "int", "default": 3},
            "workers": {"type": "int", "default": 2},
            "bwlimit_kbps": {"type": "int", "default": 0},
            "rsync": {"type": "str", "default": "rsync"},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    text = wm.read_text(os.path.join(path, wm.MANIFEST_NAME))
    if text is None:
        module.fail_json(msg=f"no {wm.MANIFEST_NAME} in {path}: install it with weights_manifest first")
    try:
        manifest = wm.parse_manifest(text)
    except wm.ManifestError as exc:
        module.fail_json(msg=f"invalid manifest in {path}: {exc}")
    files = manifest["files"]
    cache_doc = wm.read_json(os.path.join(path, wm.CACHE_NAME), {}) or {}
    cache = cache_doc.get("files", {}) if isinstance(cache_doc, dict) else {}
    plan = wm.plan_verification(files, wm.stat_files(path, files), cache, "quick")
    have = set(plan["ok"])
    todo = [f for f in wm.transfer_order(files) if f not in have]
    if module.check_mode or not todo:
        marker_ok = wm.marker_ready(wm.read_text(os.path.join(path, wm.MARKER_NAME)), manifest["digest"])
        module.exit_json(
            changed=bool(todo) or not marker_ok, pulled=todo, bytes=0, seconds=0.0, waits=0, digest=manifest["digest"]
        )
    marker = os.path.join(path, wm.MARKER_NAME)
    start = time.monotonic()
    puller = Puller(module, manifest)
    try:
        if os.path.exists(marker):
            os.unlink(marker)
        # a present file that is not verified (wrong size, not in the cache) is moved aside as
        # the delta basis; weights_manifest normally did this already
        for rel in todo:
            cur = os.path.join(path, rel)
            if os.path.isfile(cur):
                dst = os.path.join(puller.incoming, rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.replace(cur, dst)
        puller.run(todo)
    except OSError as exc:
        module.fail_json(msg=f"weights in {path}: {exc}", exception=traceback.format_exc())
    seconds = round(time.monotonic() - start, 3)
    new_cache = {
        "digest": manifest["digest"],
        "files": wm.update_cache(cache, files, puller.verified, puller.failed),
    }
    wm.write_atomic(os.path.join(path, wm.CACHE_NAME), wm.canonical_json(new_cache) + "\n")
    pulled = sorted(puller.verified)
    if puller.failed:
        module.fail_json(
            msg=f"{len(puller.failed)} file(s) could not be staged from {module.params['upstream']}",
            failed_files=puller.failed,
            pulled=pulled,
            seconds=seconds,
        )
    # every file verified: the marker is written last
    final = wm.plan_verification(files, wm.stat_files(path, files), new_cache["files"], "quick")
    if final["hash"] or final["missing"] or final["wrong_size"]:
        module.fail_json(msg="files changed under the transfer; run again", plan=final)
    wm.write_atomic(marker, manifest["digest"] + "\n")
    module.exit_json(
        changed=True,
        pulled=pulled,
        bytes=sum(files[f]["size"] for f in pulled),
        seconds=seconds,
        waits=puller.waits,
        sessions=puller.sessions,
        digest=manifest["digest"],
    )


if __name__ == "__main__":
    main()
