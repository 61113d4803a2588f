# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Weights manifest: every file's size and sha256, the verification cache and the ready marker.

Files beside the weights (all hidden, all excluded from what nodes serve to each other):

``.inferops-manifest.json``  ``{"format": 1, "source": {...}, "files": {relpath: {"size", "sha256"}}}``
``.inferops-verified.json``  this node's cache: ``{relpath: {"size", "mtime_ns", "sha256"}}`` of
                             files it hashed and found right; a file whose size and mtime still
                             match its entry is not hashed again (unless verification is ``full``)
``.inferops-complete``       written last, holds the manifest digest; the serving role trusts a
                             directory only when this marker equals the digest of its manifest
``.inferops-incoming/``      files being fetched or repaired; renamed into place once verified

The functions here are pure except the small I/O helpers at the end (stat, hashing, atomic
writes), which take paths and return plain data so the modules stay thin.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

MANIFEST_NAME = ".inferops-manifest.json"
CACHE_NAME = ".inferops-verified.json"
MARKER_NAME = ".inferops-complete"
INCOMING_DIR = ".inferops-incoming"
STATE_PREFIX = ".inferops-"
FORMAT = 1
# Directories that belong to download tools, never part of the weights.
TOOL_DIRS = (".cache", ".git", ".rsync-partial")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
HASH_BUFSIZE = 8 * 1024 * 1024


class ManifestError(ValueError):
    """The manifest (or something claimed about it) is malformed."""


# ---------------------------------------------------------------------------
# validation and identity
# ---------------------------------------------------------------------------
def check_relpath(path: str) -> str:
    """Return ``path`` if it is a safe relative path inside the weights directory.

    Manifest paths become filesystem paths on every node and rsync URLs, so absolute paths,
    ``..`` components, empty components and the collection's own state files are refused.
    """
    if not isinstance(path, str) or not path:
        raise ManifestError(f"empty file path in manifest: {path!r}")
    if path.startswith("/") or any(c in path for c in ("\\", "\x00", "\n", "\r")):
        raise ManifestError(f"file path must be relative and use '/': {path!r}")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ManifestError(f"file path has an empty, '.' or '..' component: {path!r}")
    if parts[0].startswith(STATE_PREFIX) or parts[0] in TOOL_DIRS:
        raise ManifestError(f"file path is reserved for state or tool files: {path!r}")
    return path


def normalize_files(files: Mapping[str, Any], require_sha: bool = True) -> dict[str, dict[str, Any]]:
    """Validate a ``files`` mapping and return it in canonical form (sorted, lowercase sha256)."""
    if not isinstance(files, Mapping):
        raise ManifestError("manifest 'files' must be a mapping of path to {size, sha256}")
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(files):
        entry = files[path]
        check_relpath(path)
        if not isinstance(entry, Mapping):
            raise ManifestError(f"manifest entry for {path} must be a mapping")
        size = entry.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ManifestError(f"manifest entry for {path} has no valid size: {size!r}")
        sha = entry.get("sha256")
        if sha is None and not require_sha:
            out[path] = {"size": size, "sha256": None}
            continue
        if not isinstance(sha, str) or not _SHA256.match(sha.lower()):
            raise ManifestError(f"manifest entry for {path} has no valid sha256: {sha!r}")
        out[path] = {"size": size, "sha256": sha.lower()}
    return out


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def digest(files: Mapping[str, Mapping[str, Any]]) -> str:
    """Digest of the weights' content: sha256 over the canonical ``files`` mapping only.

    The source description is left out on purpose: the same files fetched from a mirror or
    from ModelScope are the same weights.
    """
    canon = {p: {"size": int(e["size"]), "sha256": str(e["sha256"])} for p, e in files.items()}
    return hashlib.sha256(canonical_json(canon).encode("ascii")).hexdigest()


def build_manifest(files: Mapping[str, Any], source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    norm = normalize_files(files)
    return {"format": FORMAT, "source": dict(source or {}), "files": norm, "digest": digest(norm)}


def parse_manifest(text: str) -> dict[str, Any]:
    """Parse and check a manifest document; the stored digest must match the files."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"manifest is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ManifestError(f"manifest format must be {FORMAT}")
    files = normalize_files(doc.get("files") or {})
    if not files:
        raise ManifestError("manifest lists no files")
    want = digest(files)
    if doc.get("digest") not in (None, want):
        raise ManifestError("manifest digest does not match its files")
    return {"format": FORMAT, "source": doc.get("source") or {}, "files": files, "digest": want}


def total_size(files: Mapping[str, Mapping[str, Any]]) -> int:
    return sum(int(e["size"]) for e in files.values())


def transfer_order(files: Mapping[str, Any]) -> list[str]:
    """The order every node fetches files in: small files first, then by path.

    All nodes of a chain must use the same order so that a node finds the next file at its
    upstream as early as possible; small files (config, tokenizer) first make the directory
    usable for inspection early and keep them off the tail of the pipeline.
    """
    return sorted(files, key=lambda p: (int(files[p]["size"]) > 16 * 1024 * 1024, p))


# ---------------------------------------------------------------------------
# verification decisions
# ---------------------------------------------------------------------------
def plan_verification(
    files: Mapping[str, Mapping[str, Any]],
    stats: Mapping[str, tuple[int, int] | None],
    cache: Mapping[str, Mapping[str, Any]],
    mode: str = "quick",
) -> dict[str, list[str]]:
    """Decide, per file, what verifying it needs.

    ``files``  manifest entries (``sha256`` may be None for files whose hash is not known yet)
    ``stats``  path -> ``(size, mtime_ns)`` of the local file, or None when it is absent
    ``cache``  the node's verification cache
    ``mode``   ``quick`` trusts a cache entry whose size, mtime and sha256 still match;
               ``full`` hashes every present file of the right size

    Returns ``{"ok": [...], "hash": [...], "missing": [...], "wrong_size": [...]}``.
    """
    if mode not in ("quick", "full"):
        raise ValueError(f"verification mode must be quick or full, not {mode!r}")
    out: dict[str, list[str]] = {"ok": [], "hash": [], "missing": [], "wrong_size": []}
    for path in sorted(files):
        entry = files[path]
        st = stats.get(path)
        if st is None:
            out["missing"].append(path)
            continue
        size, mtime_ns = st
        if size != int(entry["size"]):
            out["wrong_size"].append(path)
            continue
        cached = cache.get(path)
        if (
            mode == "quick"
            and entry.get("sha256")
            and isinstance(cached, Mapping)
            and cached.get("size") == size
            and cached.get("mtime_ns") == mtime_ns
            and cached.get("sha256") == entry["sha256"]
        ):
            out["ok"].append(path)
        else:
            out["hash"].append(path)
    return out


def judge_hashes(
    files: Mapping[str, Mapping[str, Any]], hashed: Mapping[str, str]
) -> tuple[list[str], list[str], dict[str, str]]:
    """Compare computed hashes with the manifest.

    Returns ``(good, corrupt, learned)``: ``learned`` holds the hashes of files whose manifest
    entry had no sha256 yet (computed once, on the node that downloaded them).
    """
    good: list[str] = []
    corrupt: list[str] = []
    learned: dict[str, str] = {}
    for path in sorted(hashed):
        want = files[path].get("sha256")
        if want is None:
            learned[path] = hashed[path]
            good.append(path)
        elif hashed[path] == want:
            good.append(path)
        else:
            corrupt.append(path)
    return good, corrupt, learned


def describe_problems(
    files: Mapping[str, Mapping[str, Any]],
    stats: Mapping[str, tuple[int, int] | None],
    hashed: Mapping[str, str],
) -> list[str]:
    """One line per file that does not match the manifest: missing, wrong size or wrong sha256.

    ``stats`` as for plan_verification; ``hashed`` the sha256 computed for files of the right size.
    """
    problems: list[str] = []
    for path in sorted(files):
        want = files[path]
        st = stats.get(path)
        if st is None:
            problems.append(f"{path}: missing (the manifest lists {int(want['size'])} bytes)")
        elif st[0] != int(want["size"]):
            problems.append(f"{path}: {st[0]} bytes, the manifest says {int(want['size'])}")
        elif path in hashed and want.get("sha256") and hashed[path] != want["sha256"]:
            problems.append(f"{path}: sha256 {hashed[path]} differs from the manifest's {want['sha256']}")
    return problems


def check_directory(
    root: str, files: Mapping[str, Mapping[str, Any]], cache: Mapping[str, Any], mode: str = "quick", workers: int = 4
) -> dict[str, Any]:
    """Read-only check of ``root`` against the manifest's ``files`` (the serving role's weights gate).

    Sizes are always compared; a file is hashed only when this node's verification cache does not vouch
    for it (same size, mtime and sha256) or ``mode`` is ``full``. Nothing is written or moved.
    Returns ``{"problems": [...], "hashed": N, "trusted": N}``.
    """
    stats = stat_files(root, files) if os.path.isdir(root) else dict.fromkeys(files)
    plan = plan_verification(files, stats, cache, mode)
    hashed = hash_files(root, plan["hash"], workers)
    return {"problems": describe_problems(files, stats, hashed), "hashed": len(hashed), "trusted": len(plan["ok"])}


def update_cache(
    cache: Mapping[str, Mapping[str, Any]],
    files: Mapping[str, Mapping[str, Any]],
    good: Mapping[str, tuple[int, int, str]],
    bad: Iterable[str] = (),
) -> dict[str, dict[str, Any]]:
    """New cache: entries for ``good`` (path -> (size, mtime_ns, sha256)), none for ``bad`` or
    for paths the manifest no longer lists."""
    bad_set = set(bad)
    out = {p: dict(e) for p, e in cache.items() if p in files and p not in bad_set}
    for path, (size, mtime_ns, sha) in good.items():
        out[path] = {"size": size, "mtime_ns": mtime_ns, "sha256": sha}
    return dict(sorted(out.items()))


def space_needed(
    total_bytes: int,
    present_bytes: int,
    convert_fp8_to_bf16: bool = False,
    convert_factor: float = 2.0,
    reserve_bytes: int = 0,
) -> int:
    """Bytes that must still be free: what is missing, plus the conversion output when the FP8
    checkpoint is converted to BF16 (about twice its size), plus a reserve."""
    missing = max(0, int(total_bytes) - int(present_bytes))
    converted = int(total_bytes * convert_factor) if convert_fp8_to_bf16 else 0
    return missing + converted + int(reserve_bytes)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def marker_ready(marker_text: str | None, manifest_digest: str) -> bool:
    return marker_text is not None and marker_text.strip() == manifest_digest


# ---------------------------------------------------------------------------
# small I/O helpers (used by the modules; tested on temporary directories)
# ---------------------------------------------------------------------------
def stat_files(root: str, paths: Iterable[str]) -> dict[str, tuple[int, int] | None]:
    out: dict[str, tuple[int, int] | None] = {}
    for path in paths:
        try:
            st = os.stat(os.path.join(root, path))
        except FileNotFoundError:
            out[path] = None
            continue
        out[path] = (st.st_size, st.st_mtime_ns) if os.path.isfile(os.path.join(root, path)) else None
    return out


def sha256_file(path: str, bufsize: int = HASH_BUFSIZE) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(bufsize)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def hash_files(root: str, paths: Iterable[str], workers: int = 4) -> dict[str, str]:
    """sha256 of many files in parallel (hashlib releases the GIL on large buffers)."""
    paths = list(paths)
    if not paths:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(paths)))) as pool:
        sums = pool.map(lambda p: sha256_file(os.path.join(root, p)), paths)
        return dict(zip(paths, sums, strict=True))


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def read_json(path: str, default: Any = None) -> Any:
    text = read_text(path)
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def write_atomic(path: str, text: str, mode: int = 0o644) -> bool:
    """Write ``text`` to ``path`` through a temporary file and a rename; return whether the
    content changed (an identical file is left untouched)."""
    if read_text(path) == text:
        return False
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".inferops-tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def list_tree(root: str) -> list[str]:
    """Relative paths of the regular files under ``root``, without state and tool files."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if not d.startswith(STATE_PREFIX) and d not in TOOL_DIRS]
            names = [f for f in filenames if not f.startswith(STATE_PREFIX)]
        else:
            names = filenames
        for name in names:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if os.path.isfile(os.path.join(root, rel)) and not os.path.islink(os.path.join(root, rel)):
                out.append(rel.replace(os.sep, "/"))
    return sorted(out)


def free_bytes(path: str) -> int:
    """Free bytes on the filesystem that holds ``path`` (or its nearest existing parent)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    st = os.statvfs(probe)
    return st.f_bavail * st.f_frsize
