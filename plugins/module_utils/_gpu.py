# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parsers for ``nvidia-smi`` output and the GPU fact built from them.

Everything here is pure: the module runs the commands (argv lists) and hands the text in.
"""

from __future__ import annotations

import re

# The fields gpu_facts asks ``nvidia-smi --query-gpu`` for, in this order.
QUERY_FIELDS = (
    "index",
    "name",
    "uuid",
    "pci.bus_id",
    "driver_version",
    "memory.total",
    "persistence_mode",
    "mig.mode.current",
    "compute_cap",
)

_NA = {"[N/A]", "N/A", "[Not Supported]", "Not Supported", "[Unknown Error]", ""}
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")

NO_GPU_MARKERS = (
    "No devices were found",
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver",
)

# States of `nvidia-smi -q`'s Fabric section that mean an NVSwitch fabric is there (N/A on
# PCIe boards without one).
FABRIC_STATES = ("Not Started", "In Progress", "Completed")


def _value(raw: str) -> str | None:
    raw = raw.strip()
    return None if raw in _NA else raw


def _int(raw: str | None) -> int | None:
    return int(raw) if raw is not None else None


def _mib(raw: str | None) -> int | None:
    return int(float(raw)) if raw else None


def _enabled(raw: str | None) -> bool:
    return (raw or "").lower() == "enabled"


# --query-gpu field -> (key in the parsed dict, conversion); the other fields keep their text.
_FIELDS = {
    "index": ("index", _int),
    "pci.bus_id": ("pci_bus_id", None),
    "memory.used": ("memory_used_mib", _mib),
    "memory.total": ("memory_total_mib", _mib),
    "persistence_mode": ("persistence_mode", _enabled),
    "mig.mode.current": ("mig_mode", None),
}


def parse_query_gpu(text: str, fields: tuple[str, ...] = QUERY_FIELDS) -> list[dict]:
    """``--query-gpu=FIELDS --format=csv,noheader,nounits`` -> one dict per GPU, keys in FIELDS' order.

    ``[N/A]``, ``[Not Supported]`` and the like become None; memory is in MiB.
    """
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = [_value(v) for v in line.split(",")]
        if len(values) != len(fields):
            raise ValueError(
                f"unexpected nvidia-smi line ({len(values)} columns for {len(fields)} fields): {line.strip()!r}"
            )
        gpu = {}
        for field, value in zip(fields, values, strict=True):
            key, convert = _FIELDS.get(field, (field, None))
            gpu[key] = convert(value) if convert else value
        gpus.append(gpu)
    return gpus


def parse_smi_q(text: str) -> dict:
    """The parts of ``nvidia-smi -q`` the facts need: driver/CUDA versions, GPU count and, per
    GPU (in order), persistence mode, current MIG mode and the fabric state/status."""
    top: dict = {"driver_version": None, "cuda_version": None, "attached_gpus": None, "gpus": []}
    section: list[str] = []
    current: dict | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip() or line.startswith("="):
            continue
        indent = len(line) - len(line.lstrip(" "))
        stripped = line.strip()
        if indent == 0 and stripped.startswith("GPU "):
            current = {"bus_id": stripped[4:].strip(), "persistence_mode": None, "mig_mode": None, "fabric": {}}
            top["gpus"].append(current)
            section = []
            continue
        key, sep, val = stripped.partition(":")
        key = key.strip()
        val = val.strip() if sep else None
        if indent == 0:
            if key == "Driver Version":
                top["driver_version"] = _value(val or "")
            elif key == "CUDA Version":
                top["cuda_version"] = _value(val or "")
            elif key == "Attached GPUs" and val and val.isdigit():
                top["attached_gpus"] = int(val)
            continue
        if current is None:
            continue
        level = indent // 4
        if val in (None, ""):
            section = [*section[: level - 1], key]
            continue
        path = [*section[: level - 1], key]
        if path == ["Persistence Mode"]:
            current["persistence_mode"] = val
        elif path == ["MIG Mode", "Current"]:
            current["mig_mode"] = _value(val)
        elif len(path) == 2 and path[0] == "Fabric":
            current["fabric"][path[1].lower()] = _value(val)
        elif path == ["Product Name"]:
            current["name"] = val
    return top


def parse_topo_matrix(text: str) -> dict[str, dict[str, str]]:
    """``nvidia-smi topo -m`` -> {"GPU0": {"GPU1": "NV18", "NIC0": "SYS", ...}, ...}."""
    lines = [_ANSI_RE.sub("", line) for line in text.splitlines()]
    header: list[str] | None = None
    matrix: dict[str, dict[str, str]] = {}
    for line in lines:
        if not line.strip():
            if header is not None and matrix:
                break
            continue
        cells = [c.strip() for c in line.split("\t")]
        if header is None:
            if cells and cells[0] == "" and any(c.startswith("GPU") for c in cells):
                header = [c for c in cells[1:] if c]
            continue
        name = cells[0]
        if not re.match(r"^(GPU|NIC|mlx)\S*$", name):
            break
        values = [c for c in cells[1:] if c != ""]
        matrix[name] = {
            col: values[i] for i, col in enumerate(header) if i < len(values) and re.match(r"^(GPU|NIC)\d+$", col)
        }
    return matrix


def parse_nvlink_status(text: str) -> dict[int, int]:
    """``nvidia-smi nvlink -s`` -> {gpu index: number of active links}."""
    result: dict[int, int] = {}
    gpu: int | None = None
    for line in text.splitlines():
        match = re.match(r"^GPU (\d+):", line)
        if match:
            gpu = int(match.group(1))
            result[gpu] = 0
            continue
        if gpu is not None and re.match(r"^\s*Link \d+:", line) and "inactive" not in line.lower():
            result[gpu] += 1
    return result


def nvswitch_from(smi_q: dict, nvswitch_pci_devices: list[str], topo: dict[str, dict[str, str]]) -> dict:
    """Decide whether the node has an NVSwitch fabric (and so needs the fabric manager).

    Evidence, any of: NVSwitch bridges on the PCI bus (vendor 0x10de, class 0x0680xx), a GPU
    whose ``nvidia-smi -q`` Fabric state is not N/A, or all of 8+ GPUs connected pairwise by NVLink.
    """
    evidence = []
    if nvswitch_pci_devices:
        evidence.append(f"{len(nvswitch_pci_devices)} NVSwitch PCI device(s)")
    states = sorted({g["fabric"].get("state") for g in smi_q.get("gpus", []) if g.get("fabric", {}).get("state")})
    if any(s in FABRIC_STATES for s in states):
        evidence.append(f"fabric state {'/'.join(states)}")
    gpus = [name for name in topo if name.startswith("GPU")]
    if len(gpus) >= 8 and all(topo[a].get(b, "").startswith("NV") for a in gpus for b in gpus if a != b):
        evidence.append(f"all {len(gpus)} GPUs pairwise NVLink")
    return {"present": bool(evidence), "evidence": evidence, "fabric_states": states}


def no_gpu(reason: str) -> dict:
    """The fact of a node without a usable NVIDIA GPU."""
    return {
        "present": False,
        "reason": reason,
        "driver_version": None,
        "cuda_version": None,
        "count": 0,
        "gpus": [],
        "models": [],
        "persistence_mode": False,
        "mig_enabled": False,
        "nvswitch": {"present": False, "evidence": [], "fabric_states": []},
        "nvlink_active_links": {},
    }


def build_facts(
    query_text: str,
    smi_q_text: str = "",
    topo_text: str = "",
    nvlink_text: str = "",
    nvswitch_pci_devices: list[str] | None = None,
) -> dict:
    """The ``inferops_gpu`` fact from the outputs of the nvidia-smi calls."""
    if any(marker in query_text for marker in NO_GPU_MARKERS) or not query_text.strip():
        return no_gpu("nvidia-smi reports no NVIDIA GPU")
    gpus = parse_query_gpu(query_text)
    smi_q = parse_smi_q(smi_q_text) if smi_q_text else {"gpus": [], "driver_version": None, "cuda_version": None}
    topo = parse_topo_matrix(topo_text) if topo_text else {}
    drivers = sorted({g["driver_version"] for g in gpus if g["driver_version"]})
    return {
        "present": bool(gpus),
        "reason": None if gpus else "nvidia-smi reports no NVIDIA GPU",
        "driver_version": drivers[0] if len(drivers) == 1 else (smi_q.get("driver_version") or None),
        "cuda_version": smi_q.get("cuda_version"),
        "count": len(gpus),
        "gpus": gpus,
        "models": sorted({g["name"] for g in gpus if g["name"]}),
        "memory_total_mib": sum(g["memory_total_mib"] or 0 for g in gpus),
        "persistence_mode": bool(gpus) and all(g["persistence_mode"] for g in gpus),
        "mig_enabled": any((g["mig_mode"] or "").lower() == "enabled" for g in gpus),
        "nvswitch": nvswitch_from(smi_q, nvswitch_pci_devices or [], topo),
        "nvlink_active_links": {str(k): v for k, v in parse_nvlink_status(nvlink_text).items()},
        "topology": topo,
    }


def driver_matches(facts: dict, pin: str) -> bool:
    """True when a GPU is present and its running driver equals the pinned version exactly."""
    return bool(facts.get("present")) and facts.get("driver_version") == pin
