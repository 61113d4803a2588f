# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Staging weights on every node: who fetches from whom, and the rsync commands that do it.

Every node that already holds verified weights (a *seed*) serves them read-only through an
rsync daemon; every node that lacks files (a *target*) pulls them from its *upstream*, file by
file in the manifest's transfer order, and a file appears under its final name on a node only
after its sha256 matched (so a downstream node never copies a half-written or corrupt file).

Strategies (``upstream_map``):

``chain``  pipelined chain(s): seed -> t1 -> t2 -> ...; t2 pulls file k from t1 while t1 pulls
           file k+1 from the seed, so every link carries the checkpoint once and the total
           time is about ``T + (depth - 1) * T/F`` (T: one checkpoint over one link, F: number
           of files), nearly independent of N. With several seeds, targets are dealt over one
           chain per seed.
``tree``   binomial tree: in round r every node that has the files serves one node that has
           not, so N nodes are done in ceil(log2 N) rounds (time ~ log2(N) * T).
``star``   every target pulls from a seed directly: the seeds' links carry everything (time
           ~ (N-1)/seeds * T); kept as the baseline for the benchmark.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

STRATEGIES = ("chain", "tree", "star")
RSYNC_MODULE = "inferops-weights"

# rsync exit codes (rsync(1) EXIT VALUES) that say "try again later"
_RETRY_CODES = {5, 10, 12, 14, 20, 21, 30, 35}
_FATAL = re.compile(r"(No space left on device|Read-only file system|Disk quota exceeded)")
_REFUSED = re.compile(r"@ERROR: (access denied|Unknown module)")
_MISSING = re.compile(r"(No such file or directory|file has vanished|link_stat .* failed)")


class ScheduleError(ValueError):
    pass


def upstream_map(seeds: Sequence[str], targets: Sequence[str], strategy: str = "chain") -> dict[str, str]:
    """Map every target to the node it pulls from.

    ``seeds`` and ``targets`` are node names in a stable order (inventory order); a node may
    not be both. Raises ScheduleError when targets exist but no seed does.
    """
    if strategy not in STRATEGIES:
        raise ScheduleError(f"distribution strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if set(seeds) & set(targets):
        raise ScheduleError(f"nodes both seed and target: {sorted(set(seeds) & set(targets))}")
    if len(set(targets)) != len(targets) or len(set(seeds)) != len(seeds):
        raise ScheduleError("a node is listed twice")
    if not targets:
        return {}
    if not seeds:
        raise ScheduleError("no node holds verified weights to distribute from")
    up: dict[str, str] = {}
    if strategy == "star":
        for i, t in enumerate(targets):
            up[t] = seeds[i % len(seeds)]
    elif strategy == "chain":
        tails = list(seeds)
        for i, t in enumerate(targets):
            j = i % len(seeds)
            up[t] = tails[j]
            tails[j] = t
    else:  # tree: binomial doubling
        have = list(seeds)
        pending = list(targets)
        while pending:
            for src in list(have):
                if not pending:
                    break
                t = pending.pop(0)
                up[t] = src
                have.append(t)
    return up


def depths(up: Mapping[str, str]) -> dict[str, int]:
    """Hops from a seed for every target (1 = pulls from a seed)."""
    out: dict[str, int] = {}

    def depth(node: str, seen: frozenset[str]) -> int:
        if node in out:
            return out[node]
        if node not in up:
            return 0
        if node in seen:
            raise ScheduleError(f"cycle in the distribution schedule at {node}")
        d = depth(up[node], seen | {node}) + 1
        out[node] = d
        return d

    for node in up:
        depth(node, frozenset())
    return out


def rounds(up: Mapping[str, str], strategy: str) -> list[list[tuple[str, str]]]:
    """The schedule as rounds of ``(source, target)`` pushes.

    For ``tree`` and ``star`` a round is a step in time: a target of round r starts once its
    source completed round r-1 (``star`` has one round). For ``chain`` the rounds are pipeline
    stages that overlap in time: stage r starts one file after stage r-1.
    """
    if not up:
        return []
    if strategy == "star":
        return [sorted((src, t) for t, src in up.items())]
    if strategy == "chain":
        d = depths(up)
        out: list[list[tuple[str, str]]] = [[] for _stage in range(max(d.values()))]
        for t, src in up.items():
            out[d[t] - 1].append((src, t))
        return [sorted(r) for r in out]
    # tree: a node that received in round r serves from round r+1 on, one target per round.
    ready: dict[str, int] = {}
    busy: dict[str, int] = {}
    out = []
    for t, src in up.items():  # insertion order = assignment order of upstream_map
        start = max(ready.get(src, 0), busy.get(src, ready.get(src, 0))) + 1
        ready[t] = start
        busy[src] = start
        while len(out) < start:
            out.append([])
        out[start - 1].append((src, t))
    return [sorted(r) for r in out]


# ---------------------------------------------------------------------------
# rsync
# ---------------------------------------------------------------------------
def rsync_url(address: str, port: int, module: str, relpath: str = "") -> str:
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    return f"rsync://{host}:{int(port)}/{module}/{relpath}"


def rsync_mirror_argv(rsync: str, source: str, dest: str, timeout: int = 0) -> list[str]:
    """argv that mirrors a local/NFS directory or an rsync URL into ``dest`` (download source)."""
    src = source if source.endswith("/") else source + "/"
    argv = [
        rsync,
        "--recursive",
        "--times",
        "--links",
        "--partial",
        "--partial-dir=.rsync-partial",
        "--exclude=/.inferops-*",
        "--exclude=/.cache/",
        "--exclude=/.git/",
    ]
    if timeout:
        argv.append(f"--timeout={int(timeout)}")
    return [*argv, src, dest if dest.endswith("/") else dest + "/"]


def classify_rsync(rc: int, stderr: str) -> str:
    """What an rsync pull's failure means: ``ok``, ``missing`` (the upstream does not have the
    file yet: wait), ``retry`` (network or daemon not answering yet) or ``fatal``."""
    if rc == 0:
        return "ok"
    if _FATAL.search(stderr or ""):
        return "fatal"  # this node cannot write: waiting does not fix it
    if rc in (23, 24) and _MISSING.search(stderr or ""):
        return "missing"
    if _REFUSED.search(stderr or ""):
        return "fatal"  # a configuration error: waiting does not fix it
    if rc in _RETRY_CODES:
        return "retry"
    return "fatal"


def rsync_batch_argv(
    rsync: str,
    address: str,
    port: int,
    module: str,
    dest: str,
    files_from: str,
    timeout: int = 60,
    bwlimit_kbps: int = 0,
) -> list[str]:
    """argv that pulls the files named in ``files_from`` (NUL separated) in one session into ``dest``.

    One session for every file the upstream already has keeps the link busy between files; each
    file appears under its final name in ``dest`` only once rsync has received it whole (rsync
    writes to a temporary name and renames), which is when the module hashes it. ``--partial-dir``
    resumes an interrupted transfer; with ``--ignore-times`` a corrupt file already in ``dest`` is
    compared even when its size and mtime match, and is the basis of the delta transfer.
    """
    argv = [
        rsync,
        "--times",
        "--ignore-times",
        "--partial",
        "--partial-dir=.rsync-partial",
        "--from0",
        f"--files-from={files_from}",
        f"--timeout={int(timeout)}",
        f"--contimeout={min(int(timeout), 30)}",
        "--no-motd",
    ]
    if bwlimit_kbps:
        argv.append(f"--bwlimit={int(bwlimit_kbps)}")
    return [*argv, rsync_url(address, port, module), dest.rstrip("/") + "/"]
