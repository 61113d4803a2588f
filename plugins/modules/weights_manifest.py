#!/usr/bin/python
# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: weights_manifest
short_description: Verify model weights against their manifest and keep the ready marker
description:
  - Works on a weights directory that holds (or receives) C(.inferops-manifest.json), the list of
    every file's size and sha256.
  - With O(state=verified), writes the manifest when O(manifest) is given, then checks every
    listed file. Files whose size and mtime match this node's verification cache
    (C(.inferops-verified.json)) are trusted unless O(verify=full); the others are hashed in
    parallel. A corrupt or wrong-sized file is moved to C(.inferops-incoming/) (where the next
    fetch uses it as the basis of a delta transfer) so it is never served. When every file is
    right the marker C(.inferops-complete) is written last, holding the manifest digest;
    otherwise the marker is removed.
  - With O(state=ready), only reads; returns whether the marker equals the manifest's digest.
  - With O(state=checked), only reads, and compares every listed file with the manifest (size always; sha256
    unless this node's verification cache vouches for the file's size and mtime, or O(verify=full)) and
    returns one line per file that is missing, wrong-sized or wrong (RV(problems)). The serving role's
    weights gate runs this before it starts an engine; it moves and writes nothing, so it works on a
    read-only mount.
  - With O(state=recorded), writes the manifest of a directory staged by other means (the lab's tiny
    model, a copy already on shared storage), with every file's size and sha256 (the cache spares unchanged
    files), then the cache and the marker. A directory that already has a manifest is checked against it
    instead, and the module fails when it does not match, so recording never blesses a changed file.
  - Before anything is moved, O(check_space=true) fails when the filesystem lacks room for the
    missing files (plus the BF16 conversion output when O(convert_fp8_to_bf16=true)).
version_added: 0.1.0
author:
  - inferops maintainers (@inferops)
options:
  path:
    description: The weights directory.
    type: path
    required: true
  state:
    description: C(verified) checks and repairs the marker; C(ready) and C(checked) only read; C(recorded) writes
      the manifest of a directory that has none.
    type: str
    choices: [verified, ready, checked, recorded]
    default: verified
  manifest:
    description:
      - Manifest document to install at O(path) (as returned by M(inferops.cluster.weights_fetch)
        in RV(inferops.cluster.weights_fetch#module:manifest)). Without it the manifest already in
        O(path) is used.
    type: dict
  verify:
    description: C(quick) trusts the cache for unchanged files; C(full) hashes every file.
    type: str
    choices: [quick, full]
    default: quick
  workers:
    description: Files hashed at once.
    type: int
    default: 4
  repair:
    description: Move corrupt or wrong-sized files out of the served tree (into C(.inferops-incoming/)).
    type: bool
    default: true
  check_space:
    description: Fail when the free space cannot hold the missing files (see O(convert_fp8_to_bf16)).
    type: bool
    default: true
  convert_fp8_to_bf16:
    description: Also reserve room for the BF16 conversion output (O(convert_factor) times the weights).
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
extends_documentation_fragment:
  - inferops.cluster.attributes
  - inferops.cluster.attributes.binary_files
attributes:
  check_mode:
    details: Reports what would be moved or written; changes nothing.
  idempotent:
    details: A verified directory with its marker is left unchanged.
"""

EXAMPLES = r"""
- name: Verify the staged weights and write the ready marker
  inferops.cluster.weights_manifest:
    path: /models/DeepSeek-R1
    manifest: "{{ __weights_fetch.manifest }}"
  register: __weights

- name: Is this node's copy ready to serve?
  inferops.cluster.weights_manifest:
    path: /models/DeepSeek-R1
    state: ready
  register: __ready
  failed_when: not __ready.ready

- name: Check every file against the manifest without writing (quick with the verification cache)
  inferops.cluster.weights_manifest:
    path: /models/DeepSeek-R1
    state: checked
  register: __gate
  failed_when: __gate.problems | length > 0
"""

RETURN = r"""
complete:
  description: Every file of the manifest is present and verified.
  returned: state=verified
  type: bool
ready:
  description:
    - The marker equals the manifest digest.
    - For O(state=checked) and O(state=recorded), every file matches the manifest.
  returned: always
  type: bool
problems:
  description:
    - One line per file that does not match the manifest (its path, then missing, both sizes or both sha256).
    - Or one line saying there is no manifest.
  returned: state=checked or state=recorded
  type: list
  elements: str
trusted:
  description: Files the verification cache vouched for (not hashed).
  returned: state=checked
  type: int
digest:
  description: sha256 over the manifest's files (the marker's content).
  returned: when a manifest exists
  type: str
missing:
  description: Files of the manifest that are absent.
  returned: state=verified
  type: list
  elements: str
corrupt:
  description: Files whose size or sha256 was wrong (moved aside when O(repair=true)).
  returned: state=verified
  type: list
  elements: str
hashed:
  description: Number of files hashed in this run (the rest were trusted from the cache).
  returned: state=verified, checked or recorded
  type: int
total_bytes:
  description: Size of all files of the manifest.
  returned: when a manifest exists
  type: int
needed_bytes:
  description: Free bytes needed to complete (missing files, conversion output, reserve).
  returned: state=verified
  type: int
free_bytes:
  description: Free bytes on the weights' filesystem.
  returned: state=verified
  type: int
"""

import os
import shutil
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.cluster.plugins.module_utils import _manifest as wm


def _load_manifest(module: AnsibleModule, path: str) -> dict | None:
    given = module.params["manifest"]
    try:
        if given is not None:
            return wm.parse_manifest(wm.canonical_json(given))
        text = wm.read_text(os.path.join(path, wm.MANIFEST_NAME))
        return None if text is None else wm.parse_manifest(text)
    except wm.ManifestError as exc:
        module.fail_json(msg=f"invalid weights manifest for {path}: {exc}")
    return None


def ready(module: AnsibleModule, path: str) -> None:
    manifest = _load_manifest(module, path)
    if manifest is None:
        module.exit_json(changed=False, ready=False, reason=f"no {wm.MANIFEST_NAME} in {path}")
    marker = wm.read_text(os.path.join(path, wm.MARKER_NAME))
    ok = wm.marker_ready(marker, manifest["digest"])
    module.exit_json(
        changed=False,
        ready=ok,
        digest=manifest["digest"],
        total_bytes=wm.total_size(manifest["files"]),
        reason="" if ok else f"{wm.MARKER_NAME} is missing or does not match the manifest",
    )


def _cache(path: str) -> dict:
    doc = wm.read_json(os.path.join(path, wm.CACHE_NAME), {}) or {}
    return doc.get("files", {}) if isinstance(doc, dict) else {}


def checked(module: AnsibleModule, path: str) -> None:
    manifest = _load_manifest(module, path)
    if manifest is None:
        module.exit_json(changed=False, ready=False, problems=[f"no {wm.MANIFEST_NAME} in {path}"], hashed=0, trusted=0)
    p = module.params
    result = wm.check_directory(path, manifest["files"], _cache(path), p["verify"], p["workers"])
    module.exit_json(
        changed=False,
        ready=not result["problems"],
        digest=manifest["digest"],
        total_bytes=wm.total_size(manifest["files"]),
        **result,
    )


def recorded(module: AnsibleModule, path: str) -> None:
    p = module.params
    if wm.read_text(os.path.join(path, wm.MANIFEST_NAME)) is not None:
        manifest = _load_manifest(module, path)
        result = wm.check_directory(path, manifest["files"], _cache(path), p["verify"], p["workers"])
        if result["problems"]:
            module.fail_json(
                msg=f"{path} has a manifest that its files do not match: {'; '.join(result['problems'][:20])}",
                ready=False,
                **result,
            )
        module.exit_json(changed=False, ready=True, digest=manifest["digest"], **result)
    if not os.path.isdir(path):
        module.fail_json(msg=f"{path} is not a directory")
    names = wm.list_tree(path)
    if not names:
        module.fail_json(msg=f"no file in {path} to record")
    stats = wm.stat_files(path, names)
    cache = _cache(path)
    known = {
        f: c["sha256"]
        for f, c in cache.items()
        if f in stats and isinstance(c, dict) and (c.get("size"), c.get("mtime_ns")) == tuple(stats[f])
    }
    hashed = wm.hash_files(path, [f for f in names if f not in known], p["workers"])
    files = {f: {"size": stats[f][0], "sha256": known.get(f) or hashed[f]} for f in names}
    manifest = wm.build_manifest(files, {"kind": "recorded"})
    result = {"digest": manifest["digest"], "total_bytes": wm.total_size(files), "hashed": len(hashed)}
    if module.check_mode:
        module.exit_json(changed=True, ready=True, problems=[], **result)
    entries = {f: (*stats[f], files[f]["sha256"]) for f in names}
    new_cache = {"digest": manifest["digest"], "files": wm.update_cache({}, files, entries)}
    wm.write_atomic(os.path.join(path, wm.CACHE_NAME), wm.canonical_json(new_cache) + "\n")
    wm.write_atomic(os.path.join(path, wm.MANIFEST_NAME), wm.canonical_json(manifest) + "\n")
    wm.write_atomic(os.path.join(path, wm.MARKER_NAME), manifest["digest"] + "\n")  # last
    module.exit_json(changed=True, ready=True, problems=[], **result)


def verified(module: AnsibleModule, path: str) -> None:
    p = module.params
    manifest = _load_manifest(module, path)
    if manifest is None:
        module.fail_json(msg=f"no manifest given and none at {os.path.join(path, wm.MANIFEST_NAME)}")
    files = manifest["files"]
    changed = False
    changes: list[str] = []

    stats = wm.stat_files(path, files) if os.path.isdir(path) else dict.fromkeys(files)
    cache_doc = wm.read_json(os.path.join(path, wm.CACHE_NAME), {}) or {}
    cache = cache_doc.get("files", {}) if isinstance(cache_doc, dict) else {}
    plan = wm.plan_verification(files, stats, cache, p["verify"])
    hashed = wm.hash_files(path, plan["hash"], p["workers"])
    good, corrupt, _learned = wm.judge_hashes(files, hashed)
    corrupt = sorted(corrupt + plan["wrong_size"])
    missing = plan["missing"]
    complete = not corrupt and not missing

    present_ok = sum(files[f]["size"] for f in plan["ok"] + good)
    total = wm.total_size(files)
    needed = 0 if complete else wm.space_needed(total, present_ok, False, 0, p["reserve_bytes"])
    if p["convert_fp8_to_bf16"]:
        needed += int(total * p["convert_factor"])
    free = wm.free_bytes(path)
    result = {
        "digest": manifest["digest"],
        "total_bytes": total,
        "missing": missing,
        "corrupt": corrupt,
        "hashed": len(hashed),
        "needed_bytes": needed,
        "free_bytes": free,
    }
    # The conversion output is only a concern while the weights are incomplete or the
    # caller asks for it explicitly; a complete copy never fails on space.
    if p["check_space"] and not complete and free < needed:
        module.fail_json(
            msg=(
                f"not enough free space for the weights in {path}: {wm.human_bytes(free)} free, "
                f"{wm.human_bytes(needed)} needed (missing files"
                + (f", BF16 conversion output x{p['convert_factor']}" if p["convert_fp8_to_bf16"] else "")
                + f", reserve {wm.human_bytes(p['reserve_bytes'])})"
            ),
            **result,
        )

    if module.check_mode:
        changed = bool(corrupt) or not wm.marker_ready(
            wm.read_text(os.path.join(path, wm.MARKER_NAME)), manifest["digest"]
        )
        module.exit_json(changed=changed, complete=complete, ready=complete and not changed, **result)

    os.makedirs(path, mode=0o755, exist_ok=True)
    doc = {k: manifest[k] for k in ("format", "source", "files", "digest")}
    if wm.write_atomic(os.path.join(path, wm.MANIFEST_NAME), wm.canonical_json(doc) + "\n"):
        changed = True
        changes.append("manifest")

    marker = os.path.join(path, wm.MARKER_NAME)
    if not complete and os.path.exists(marker):
        os.unlink(marker)  # first: a node that is being repaired is never "ready"
        changed = True
        changes.append("marker removed")

    if corrupt and p["repair"]:
        incoming = os.path.join(path, wm.INCOMING_DIR)
        for rel in corrupt:
            dst = os.path.join(incoming, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.replace(os.path.join(path, rel), dst)
        changed = True
        changes.append(f"moved aside {len(corrupt)} corrupt file(s)")

    new_stats = wm.stat_files(path, good)
    good_entries = {f: (*new_stats[f], files[f]["sha256"]) for f in good if new_stats.get(f)}
    new_cache = {"digest": manifest["digest"], "files": wm.update_cache(cache, files, good_entries, corrupt)}
    wm.write_atomic(os.path.join(path, wm.CACHE_NAME), wm.canonical_json(new_cache) + "\n")

    if complete:
        if wm.write_atomic(marker, manifest["digest"] + "\n"):
            changed = True
            changes.append("marker written")
        incoming = os.path.join(path, wm.INCOMING_DIR)
        if os.path.isdir(incoming):
            shutil.rmtree(incoming)
    module.exit_json(changed=changed, complete=complete, ready=complete, changes=changes, **result)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["verified", "ready", "checked", "recorded"], "default": "verified"},
            "manifest": {"type": "dict"},
            "verify": {"type": "str", "choices": ["quick", "full"], "default": "quick"},
            "workers": {"type": "int", "default": 4},
            "repair": {"type": "bool", "default": True},
            "check_space": {"type": "bool", "default": True},
            "convert_fp8_to_bf16": {"type": "bool", "default": False},
            "convert_factor": {"type": "float", "default": 2.0},
            "reserve_bytes": {"type": "int", "default": 0},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    try:
        {"ready": ready, "checked": checked, "recorded": recorded, "verified": verified}[module.params["state"]](
            module, path
        )
    except OSError as exc:
        module.fail_json(msg=f"weights in {path}: {exc}", exception=traceback.format_exc())


if __name__ == "__main__":
    main()
