# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The versions on a node that can change a communication check's result (pure reads, no Ansible import)."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable

# Distributions of a Python environment that decide what torch.distributed runs (NCCL comes with torch
# or as nvidia-nccl-cu*).
COMM_PACKAGE_PREFIXES = ("torch-", "nvidia_nccl")


def read_text(path: str) -> str:
    """A sysfs/proc value, stripped; '' when absent."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def venv_packages(venv: str) -> list[str]:
    """The torch / NCCL ``*.dist-info`` names of a virtualenv, sorted (they carry the versions)."""
    pattern = os.path.join(venv, "lib", "python*", "site-packages", "*.dist-info")
    names = sorted(os.path.basename(p) for p in glob.glob(pattern))
    return [n for n in names if n.lower().startswith(COMM_PACKAGE_PREFIXES)]


def node_versions(
    run: Callable[[list[str]], str], venv: str = "", image: str = "", sys_root: str = "/sys"
) -> dict[str, object]:
    """Kernel, NVIDIA driver, mlx5 module / MLNX_OFED, and the venv's torch/NCCL or the image id.

    ``run(argv)`` returns a command's stdout ('' when it is missing or fails).
    """
    versions: dict[str, object] = {
        "kernel": os.uname().release,
        "nvidia_driver": read_text(os.path.join(sys_root, "module/nvidia/version")),
        "mlx5_core": read_text(os.path.join(sys_root, "module/mlx5_core/version")),
        "ofed": run(["ofed_info", "-s"]),
    }
    if venv:
        versions["python_packages"] = venv_packages(venv)
    if image:
        versions["image"] = run(["docker", "image", "inspect", "--format", "{{.Id}}", image])
    return versions
