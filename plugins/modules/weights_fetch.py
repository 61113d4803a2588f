#!/usr/bin/python
# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: weights_fetch
short_description: Download model weights once and write their manifest
description:
  - Downloads a model into O(path) from the Hugging Face Hub or a mirror (the real
    C(huggingface_hub) client, C(HF_ENDPOINT) through O(endpoint)), from ModelScope
    (C(modelscope download)), from a local or NFS path or an rsync URL (C(rsync)), or from an
    HTTP(S) directory that serves a C(.inferops-manifest.json).
  - For the Hub, the expected files come from the repository tree at O(revision), with their sizes
    and for LFS files their sha256 from the Hub's LFS metadata. Files already present are
    verified first (size + mtime against the verification cache, else sha256); a corrupt or
    wrong-sized file is deleted and downloaded again. Files without LFS metadata get their sha256
    computed once, here, and recorded.
  - Writes C(.inferops-manifest.json) (every file's size and sha256) beside the weights and
    returns it, so the other nodes verify against the same list. It does not write the ready
    marker; M(inferops.cluster.weights_manifest) does, last.
  - Fails before downloading when the filesystem cannot hold the missing files (plus the BF16
    conversion output when O(convert_fp8_to_bf16=true)).
  - Sources C(hf) and C(modelscope) need C(huggingface_hub) or the C(modelscope) CLI on the node;
    the role installs them into a virtualenv and runs this module with that interpreter.
version_added: 0.1.0
author:
  - inferops maintainers (@inferops)
requirements:
  - huggingface_hub >= 1.0 (source C(hf))
  - modelscope CLI (source C(modelscope))
  - rsync (sources C(local) and C(rsync))
options:
  path:
    description: Destination directory of the weights.
    type: path
    required: true
  source:
    description: Where the weights come from.
    type: str
    choices: [hf, modelscope, local, rsync, http]
    default: hf
  repo:
    description: Repository id (C(owner/name)) for C(hf) and C(modelscope).
    type: str
  revision:
    description: Commit id (C(hf), required unless O(require_commit=false)), or branch/tag/commit.
    type: str
  require_commit:
    description: Refuse a C(hf) revision that is not a 40-hex commit id.
    type: bool
    default: true
  allow_patterns:
    description: Only files matching one of these globs (C(hf), C(modelscope)).
    type: list
    elements: str
    default: []
  ignore_patterns:
    description: Skip files matching these globs (C(hf), C(modelscope)).
    type: list
    elements: str
    default: []
  token:
    description: Hub or ModelScope access token. Never logged; passed to the client, not on a command line.
    type: str
  endpoint:
    description: Hub endpoint (a mirror), what C(HF_ENDPOINT) sets; empty is the client's default.
    type: str
    default: ""
  url:
    description: Absolute path (C(local)), rsync URL (C(rsync)) or base URL (C(http)).
    type: str
    default: ""
  max_workers:
    description: Files downloaded at once.
    type: int
    default: 8
  workers:
    description: Files hashed at once.
    type: int
    default: 4
  verify:
    description: C(quick) trusts the verification cache for unchanged files; C(full) hashes them all.
    type: str
    choices: [quick, full]
    default: quick
  convert_fp8_to_bf16:
    description: Reserve room for the BF16 conversion output too.
    type: bool
    default: false
  convert_factor:
    description: Size of the conversion output relative to the weights.
    type: float
    default: 2.0
  reserve_bytes:
    description: Bytes to keep free on top of what the weights need.
    type: int
    default: 0
  modelscope:
    description: The C(modelscope) executable.
    type: str
    default: modelscope
  rsync:
    description: The C(rsync) executable.
    type: str
    default: rsync
  validate_certs:
    description: Check TLS certificates (source C(http)).
    type: bool
    default: true
  ca_path:
    description: PEM bundle to trust for HTTPS (source C(http)); C(hf) uses the environment (C(SSL_CERT_FILE)).
    type: path
extends_documentation_fragment:
  - inferops.cluster.attributes
  - inferops.cluster.attributes.binary_files
attributes:
  check_mode:
    details: Lists what would be downloaded (for C(hf) and C(http), where the file list is known beforehand).
  idempotent:
    details: Nothing is downloaded when every file is present and verified.
"""

EXAMPLES = r"""
- name: Download DeepSeek-R1 through a Hub mirror
  inferops.cluster.weights_fetch:
    path: /models/DeepSeek-R1
    source: hf
    repo: deepseek-ai/DeepSeek-R1
    revision: 56d4cbbb4d29f4355bab4b9a39ccb717a14ad5ad
    endpoint: https://hf-mirror.example
    token: "{{ vault_hf_token }}"
  vars:
    ansible_python_interpreter: /opt/inferops/weights-venv/bin/python
  register: __fetch

- name: Mirror from an NFS export
  inferops.cluster.weights_fetch:
    path: /models/Qwen3-8B
    source: local
    url: /mnt/nfs/models/Qwen3-8B
"""

RETURN = r"""
manifest:
  description: The manifest written beside the weights (C(format), C(source), C(files), C(digest)).
  returned: success
  type: dict
digest:
  description: sha256 over the manifest's files.
  returned: success
  type: str
downloaded:
  description: Files fetched (or, for C(local)/C(rsync)/C(modelscope), changed) in this run.
  returned: success
  type: list
  elements: str
removed:
  description: Local files found corrupt or wrong-sized and deleted before downloading again.
  returned: success
  type: list
  elements: str
total_bytes:
  description: Size of the weights.
  returned: success
  type: int
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.urls import open_url

from ansible_collections.inferops.cluster.plugins.module_utils import _manifest as wm
from ansible_collections.inferops.cluster.plugins.module_utils import _weights_source as ws
from ansible_collections.inferops.cluster.plugins.module_utils._distribute import rsync_mirror_argv

HF_IMPORT_ERROR = None
try:
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects
except ImportError:
    HF_IMPORT_ERROR = traceback.format_exc()
    huggingface_hub = None


class Fetcher:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.path: str = self.p["path"]
        self.source_ident = ws.source_identity(self.p)
        self.previous = self._previous_manifest()
        cache_doc = wm.read_json(os.path.join(self.path, wm.CACHE_NAME), {}) or {}
        self.cache = cache_doc.get("files", {}) if isinstance(cache_doc, dict) else {}

    def _previous_manifest(self) -> dict | None:
        text = wm.read_text(os.path.join(self.path, wm.MANIFEST_NAME))
        if text is None:
            return None
        try:
            return wm.parse_manifest(text)
        except wm.ManifestError:
            return None

    # -- expected files ---------------------------------------------------
    def expected_hf(self) -> dict:
        if huggingface_hub is None:
            self.module.fail_json(msg=missing_required_lib("huggingface_hub"), exception=HF_IMPORT_ERROR)
        api = huggingface_hub.HfApi(endpoint=self.p["endpoint"] or None, token=self.p["token"] or None)
        entries = [
            e
            for e in api.list_repo_tree(self.p["repo"], revision=self.p["revision"] or None, recursive=True)
            if isinstance(e, huggingface_hub.hf_api.RepoFile)
        ]
        entries = list(
            filter_repo_objects(
                entries,
                allow_patterns=self.p["allow_patterns"] or None,
                ignore_patterns=self.p["ignore_patterns"] or None,
                key=lambda e: e.path,
            )
        )
        items = [{"path": e.path, "size": e.size, "lfs_sha256": e.lfs.sha256 if e.lfs else None} for e in entries]
        if not items:
            self.module.fail_json(msg=f"no file of {self.p['repo']}@{self.p['revision']} matches the patterns")
        return ws.fill_known(ws.hf_expected(items), self.previous, self.source_ident)

    def expected_http(self) -> dict:
        url = ws.join_url(self.p["url"], wm.MANIFEST_NAME)
        try:
            with self._open(url) as resp:
                doc = wm.parse_manifest(resp.read().decode("utf-8"))
        except wm.ManifestError as exc:
            self.module.fail_json(msg=f"manifest at {url} is invalid: {exc}")
        except Exception as exc:
            self.module.fail_json(msg=f"cannot read the manifest at {url}: {exc}")
        return doc["files"]

    def expected_local(self) -> dict | None:
        text = wm.read_text(os.path.join(self.p["url"], wm.MANIFEST_NAME))
        if text is None:
            return None
        try:
            return wm.parse_manifest(text)["files"]
        except wm.ManifestError as exc:
            self.module.fail_json(msg=f"manifest in {self.p['url']} is invalid: {exc}")
        return None

    def _open(self, url: str, headers: dict | None = None):
        return open_url(
            url,
            headers=headers or {},
            validate_certs=self.p["validate_certs"],
            ca_path=self.p["ca_path"],
            timeout=60,
        )

    # -- local state --------------------------------------------------------
    def check_local(self, expected: dict) -> tuple[list[str], list[str], dict]:
        """Verify what is already here against ``expected``: returns (ok, bad, good_entries)."""
        stats = wm.stat_files(self.path, expected) if os.path.isdir(self.path) else dict.fromkeys(expected)
        known = {f: e for f, e in expected.items() if e.get("sha256")}
        plan = wm.plan_verification(known, stats, self.cache, self.p["verify"])
        hashed = wm.hash_files(self.path, plan["hash"], self.p["workers"])
        good, corrupt, _learned = wm.judge_hashes(known, hashed)
        ok = plan["ok"] + good
        bad = sorted(corrupt + plan["wrong_size"])
        # files without a known hash: present with the right size is all we can say before download
        for f, e in expected.items():
            if not e.get("sha256") and stats.get(f) is not None:
                if stats[f][0] == e["size"]:
                    ok.append(f)
                else:
                    bad.append(f)
        good_entries = {f: (*stats[f], known[f]["sha256"]) for f in ok if f in known and stats.get(f)}
        return sorted(ok), sorted(bad), good_entries

    def space_check(self, expected: dict, present_ok: list[str]) -> None:
        total = wm.total_size(expected)
        present = sum(expected[f]["size"] for f in present_ok)
        needed = wm.space_needed(
            total, present, self.p["convert_fp8_to_bf16"], self.p["convert_factor"], self.p["reserve_bytes"]
        )
        if present == total and not self.p["convert_fp8_to_bf16"]:
            return
        free = wm.free_bytes(self.path)
        if free < needed:
            self.module.fail_json(
                msg=(
                    f"not enough free space for the weights in {self.path}: {wm.human_bytes(free)} free, "
                    f"{wm.human_bytes(needed)} needed ({wm.human_bytes(total - present)} to download"
                    + (
                        f", {wm.human_bytes(total * self.p['convert_factor'])} BF16 conversion output"
                        if self.p["convert_fp8_to_bf16"]
                        else ""
                    )
                    + f", reserve {wm.human_bytes(self.p['reserve_bytes'])})"
                ),
                free_bytes=free,
                needed_bytes=needed,
            )

    # -- downloads ----------------------------------------------------------
    def download_hf(self) -> None:
        kwargs = {
            "repo_id": self.p["repo"],
            "revision": self.p["revision"] or None,
            "local_dir": self.path,
            "allow_patterns": self.p["allow_patterns"] or None,
            "ignore_patterns": self.p["ignore_patterns"] or None,
            "token": self.p["token"] or None,
            "max_workers": self.p["max_workers"],
        }
        if self.p["endpoint"]:
            kwargs["endpoint"] = self.p["endpoint"]
        try:
            huggingface_hub.snapshot_download(**kwargs)
        except Exception as exc:
            self.module.fail_json(
                msg=f"download of {self.p['repo']}@{self.p['revision']} failed: {type(exc).__name__}: {exc}"
            )

    def download_http(self, files: list[str], expected: dict) -> None:
        incoming = os.path.join(self.path, wm.INCOMING_DIR)
        for rel in files:
            part = os.path.join(incoming, rel + ".part")
            os.makedirs(os.path.dirname(part), exist_ok=True)
            have = os.path.getsize(part) if os.path.exists(part) else 0
            if have > expected[rel]["size"]:
                os.unlink(part)
                have = 0
            headers = {"Range": f"bytes={have}-"} if have else {}
            url = ws.join_url(self.p["url"], rel)
            try:
                with self._open(url, headers) as resp, open(part, "ab" if have else "wb") as out:
                    if have and getattr(resp, "status", 206) != 206:
                        out.truncate(0)  # the server ignored the range: start over
                    while True:
                        chunk = resp.read(wm.HASH_BUFSIZE)
                        if not chunk:
                            break
                        out.write(chunk)
            except Exception as exc:
                self.module.fail_json(msg=f"download of {url} failed: {exc}")
            sha = wm.sha256_file(part)
            if sha != expected[rel]["sha256"]:
                os.unlink(part)
                self.module.fail_json(msg=f"{url} does not match the manifest (sha256 {sha}); not installed")
            dst = os.path.join(self.path, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.replace(part, dst)

    def run_tool(self, argv: list[str], env: dict | None = None) -> None:
        rc, out, err = self.module.run_command(argv, environ_update=env or {})
        if rc != 0:
            shown = " ".join(a for a in argv)
            self.module.fail_json(msg=f"{shown} failed with rc={rc}", stdout=out[-4000:], stderr=err[-4000:])

    # -- main -----------------------------------------------------------------
    def run(self) -> None:
        p = self.p
        source = p["source"]
        removed: list[str] = []
        downloaded: list[str] = []
        expected: dict | None = None
        if source == "hf":
            expected = self.expected_hf()
        elif source == "http":
            expected = self.expected_http()
        elif source == "local":
            if not os.path.isdir(p["url"]):
                self.module.fail_json(msg=f"model_weights_url {p['url']} is not a directory on this node")
            expected = self.expected_local()

        good_entries: dict = {}
        if expected is not None:
            ok, bad, good_entries = self.check_local(expected)
            missing = sorted(set(expected) - set(ok))
            self.space_check(expected, ok)
            if self.module.check_mode:
                self.module.exit_json(changed=bool(missing), downloaded=missing, removed=bad)
            os.makedirs(self.path, mode=0o755, exist_ok=True)
            for rel in bad:
                os.unlink(os.path.join(self.path, rel))
                removed.append(rel)
            if missing:
                if source == "hf":
                    self.download_hf()
                elif source == "http":
                    self.download_http(missing, expected)
                downloaded = missing
        if source in ("local", "rsync", "modelscope"):
            if self.module.check_mode:
                self.module.exit_json(changed=False, downloaded=[], removed=removed, msg="not checked in check mode")
            os.makedirs(self.path, mode=0o755, exist_ok=True)
            before = wm.stat_files(self.path, wm.list_tree(self.path))
            if source == "modelscope":
                env = {"MODELSCOPE_API_TOKEN": p["token"]} if p["token"] else {}
                self.run_tool(
                    ws.modelscope_argv(
                        p["modelscope"],
                        p["repo"],
                        self.path,
                        p["revision"],
                        p["allow_patterns"],
                        p["ignore_patterns"],
                        p["max_workers"],
                    ),
                    env,
                )
            else:
                self.run_tool(rsync_mirror_argv(p["rsync"], p["url"], self.path))
            after = wm.stat_files(self.path, wm.list_tree(self.path))
            downloaded = sorted(f for f in after if before.get(f) != after[f])
            if expected is None:
                expected = {f: {"size": st[0], "sha256": None} for f, st in after.items() if st}
                # files unchanged since they were hashed keep their cached hash: computed once
                for f, e in expected.items():
                    c = self.cache.get(f)
                    if c and (c.get("size"), c.get("mtime_ns")) == tuple(after[f]):
                        e["sha256"] = c.get("sha256")
                if not expected:
                    self.module.fail_json(msg=f"the {source} source left no file in {self.path}")

        # hash what was downloaded or never hashed; judge against the expected list
        stats = wm.stat_files(self.path, expected)
        absent = sorted(f for f, st in stats.items() if st is None or st[0] != expected[f]["size"])
        if absent:
            self.module.fail_json(msg=f"after the download these files are absent or wrong-sized: {absent[:20]}")
        verified = set(good_entries)
        todo = sorted(f for f in expected if f not in verified)
        hashed = wm.hash_files(self.path, todo, p["workers"])
        good, corrupt, learned = wm.judge_hashes(expected, hashed)
        if corrupt:
            for rel in corrupt:
                os.unlink(os.path.join(self.path, rel))
            self.module.fail_json(
                msg=f"downloaded files do not match their sha256 and were deleted (run again): {corrupt}",
                corrupt=corrupt,
            )
        files = {f: {"size": e["size"], "sha256": learned.get(f, e["sha256"])} for f, e in expected.items()}
        manifest = wm.build_manifest(files, self.source_ident)
        entries = dict(good_entries)
        for f in good:
            entries[f] = (*stats[f], files[f]["sha256"])
        cache = {"digest": manifest["digest"], "files": wm.update_cache(self.cache, files, entries)}
        changed = bool(downloaded or removed)
        if wm.write_atomic(os.path.join(self.path, wm.MANIFEST_NAME), wm.canonical_json(manifest) + "\n"):
            changed = True
        wm.write_atomic(os.path.join(self.path, wm.CACHE_NAME), wm.canonical_json(cache) + "\n")
        self.module.exit_json(
            changed=changed,
            manifest=manifest,
            digest=manifest["digest"],
            downloaded=downloaded,
            removed=removed,
            total_bytes=wm.total_size(files),
        )


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "source": {"type": "str", "choices": list(ws.SOURCES), "default": "hf"},
            "repo": {"type": "str"},
            "revision": {"type": "str"},
            "require_commit": {"type": "bool", "default": True},
            "allow_patterns": {"type": "list", "elements": "str", "default": []},
            "ignore_patterns": {"type": "list", "elements": "str", "default": []},
            "token": {"type": "str", "no_log": True},
            "endpoint": {"type": "str", "default": ""},
            "url": {"type": "str", "default": ""},
            "max_workers": {"type": "int", "default": 8},
            "workers": {"type": "int", "default": 4},
            "verify": {"type": "str", "choices": ["quick", "full"], "default": "quick"},
            "convert_fp8_to_bf16": {"type": "bool", "default": False},
            "convert_factor": {"type": "float", "default": 2.0},
            "reserve_bytes": {"type": "int", "default": 0},
            "modelscope": {"type": "str", "default": "modelscope"},
            "rsync": {"type": "str", "default": "rsync"},
            "validate_certs": {"type": "bool", "default": True},
            "ca_path": {"type": "path"},
        },
        supports_check_mode=True,
    )
    errors = ws.check_source(module.params)
    if errors:
        module.fail_json(msg="; ".join(errors))
    try:
        Fetcher(module).run()
    except OSError as exc:
        module.fail_json(msg=f"weights in {module.params['path']}: {exc}", exception=traceback.format_exc())


if __name__ == "__main__":
    main()
