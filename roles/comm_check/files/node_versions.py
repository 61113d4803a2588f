#!/usr/bin/env python3
"""Print, as JSON, the node's versions that can change a communication check's result.

Kernel, NVIDIA driver, RDMA stack (mlx5 module / MLNX_OFED), and the torch / NCCL distributions of
the Python environment that runs the check (a virtualenv), or the image id (Docker runtime).
Usage: node_versions.py [--venv DIR] [--image IMAGE]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _run(argv: list[str]) -> str:
    if not shutil.which(argv[0]):
        return ""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--venv", default="")
    ap.add_argument("--image", default="")
    args = ap.parse_args()
    versions = {
        "kernel": os.uname().release,
        "nvidia_driver": _read("/sys/module/nvidia/version"),
        "mlx5_core": _read("/sys/module/mlx5_core/version"),
        "ofed": _run(["ofed_info", "-s"]),
    }
    if args.venv:
        pattern = os.path.join(args.venv, "lib", "python*", "site-packages", "*.dist-info")
        names = sorted(os.path.basename(p) for p in glob.glob(pattern))
        versions["python_packages"] = [n for n in names if n.lower().startswith(("torch-", "nvidia_nccl"))]
    if args.image:
        versions["image"] = _run(["docker", "image", "inspect", "--format", "{{.Id}}", args.image])
    print(json.dumps(versions, sort_keys=True))


if __name__ == "__main__":
    main()
