# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where weights come from: input checks, the Hub's file metadata, download tool argv."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SOURCES = ("hf", "modelscope", "local", "rsync", "http")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def is_commit(revision: str | None) -> bool:
    return bool(revision) and bool(_COMMIT.match(str(revision)))


def check_source(params: Mapping[str, Any]) -> list[str]:
    """Problems with the source settings, each naming the role variable to fix (empty: fine).

    Keys: source, repo, revision, url, require_commit, endpoint.
    """
    errors: list[str] = []
    source = params.get("source")
    if source not in SOURCES:
        return [f"model_weights_source must be one of {', '.join(SOURCES)}, not {source!r}"]
    repo = params.get("repo") or ""
    url = params.get("url") or ""
    if source in ("hf", "modelscope"):
        if not _REPO_ID.match(repo):
            errors.append(f"model_weights_repo must be an 'owner/name' repository id for source {source}, not {repo!r}")
        revision = params.get("revision") or ""
        if source == "hf" and params.get("require_commit", True) and not is_commit(revision):
            errors.append(
                "model_weights_revision must be a 40-hex commit id for source hf (a branch or tag can move "
                f"under a running cluster); got {revision!r} (set model_weights_require_commit: false to allow it)"
            )
        endpoint = params.get("endpoint") or ""
        if endpoint and not re.match(r"^https?://[^\s/]+", endpoint):
            errors.append(f"model_weights_hf_endpoint must be an http(s) URL, not {endpoint!r}")
    elif source == "local":
        if not url.startswith("/"):
            errors.append(f"model_weights_url must be an absolute path for source local, not {url!r}")
    elif source == "rsync":
        if not (url.startswith("rsync://") or re.match(r"^[^/\s]+::", url) or re.match(r"^[^/\s]+:/", url)):
            errors.append(f"model_weights_url must be rsync://host/module/path or host::module/path, not {url!r}")
    elif source == "http" and not re.match(r"^https?://[^\s/]+", url):
        errors.append(f"model_weights_url must be an http(s) URL for source http, not {url!r}")
    return errors


def hf_expected(items: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Expected files from the Hub's tree listing (``list_repo_tree(recursive=True)``).

    Each item: ``{"path", "size", "lfs_sha256"}``; LFS files carry their sha256 in the Hub's
    metadata, the others (config, tokenizer; small) get theirs computed once after download.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        sha = item.get("lfs_sha256")
        out[str(item["path"])] = {"size": int(item["size"]), "sha256": sha.lower() if sha else None}
    return dict(sorted(out.items()))


def fill_known(
    expected: Mapping[str, Mapping[str, Any]],
    previous: Mapping[str, Any] | None,
    source: Mapping[str, Any],
) -> dict[str, dict[str, Any]]:
    """Take the hashes of non-LFS files from the previous manifest when it describes the same
    source (same repo and commit: files at a commit never change) and the sizes agree."""
    out = {p: dict(e) for p, e in expected.items()}
    if not previous or previous.get("source") != dict(source):
        return out
    prev_files = previous.get("files") or {}
    for path, entry in out.items():
        old = prev_files.get(path)
        if entry.get("sha256") is None and old and old.get("size") == entry["size"]:
            entry["sha256"] = old.get("sha256")
    return out


def source_identity(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the manifest records about its source (never a token)."""
    source = params["source"]
    ident: dict[str, Any] = {"kind": source}
    if source in ("hf", "modelscope"):
        ident["repo"] = params.get("repo")
        ident["revision"] = params.get("revision") or None
        if params.get("allow_patterns"):
            ident["allow_patterns"] = list(params["allow_patterns"])
        if params.get("ignore_patterns"):
            ident["ignore_patterns"] = list(params["ignore_patterns"])
    else:
        ident["url"] = params.get("url")
    return ident


def modelscope_argv(
    modelscope: str,
    repo: str,
    dest: str,
    revision: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    max_workers: int = 8,
) -> list[str]:
    """``modelscope download`` as operators run it (seeds: ``--model X --local_dir D``)."""
    argv = [modelscope, "download", "--model", repo, "--local_dir", dest]
    if revision:
        argv += ["--revision", revision]
    for pattern in include:
        argv += ["--include", pattern]
    for pattern in exclude:
        argv += ["--exclude", pattern]
    argv += ["--max-workers", str(int(max_workers))]
    return argv


def join_url(base: str, relpath: str) -> str:
    from urllib.parse import quote

    return base.rstrip("/") + "/" + quote(relpath)
