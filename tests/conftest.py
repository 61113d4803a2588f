"""Make the checkout importable as ansible_collections.inferops.cluster for every test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = ROOT / ".build" / "collections"
LINK = COLLECTIONS / "ansible_collections" / "inferops" / "cluster"

if not LINK.exists():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    os.symlink("../../../..", LINK)
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


def _missing_host_tools() -> list[str]:
    """Commands from scripts/host-tools.txt (the one list make installs from) that are not on PATH."""
    import shutil

    missing = []
    for line in (ROOT / "scripts" / "host-tools.txt").read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#") and shutil.which(fields[0]) is None:
            missing.append(f"{fields[0]} (package {fields[1]})")
    return missing


def pytest_sessionstart(session) -> None:
    """A test run on a machine without a host tool fails at once instead of skipping tests."""
    missing = _missing_host_tools()
    if missing:
        raise SystemExit(f"missing host tools: {', '.join(missing)}; run `make host-tools` (scripts/host-tools.sh)")
