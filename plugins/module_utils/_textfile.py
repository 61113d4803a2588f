# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's textfile collectors for node exporter: RDMA port counters, nvidia-smi (GPU nodes without DCGM),
the engine units' state and the model disk.

Pure parsers and renderers (tested on captured output in tests/unit) plus a small ``main`` so that the node_exporter
role can install this very file on a node and run it from a systemd timer (stdlib only, Python 3.8+):

    python3 inferops_textfile.py --out DIR [--rdma SYSFS] [--nvidia-smi] [--unit NAME ...] [--disk PATH]

Each collector writes DIR/inferops_<name>.prom atomically (write, then rename), as node exporter wants. No series
carries a host label: Prometheus adds the target's (host, replica, node_rank).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

# RDMA: every file under <hca>/ports/<n>/counters and hw_counters becomes one series; the names are the kernel's
# (InfiniBand PMA counters: symbol_error, link_downed, port_rcv_errors, port_xmit_data ...; mlx5 hw_counters:
# out_of_sequence, packet_seq_err, np_ecn_marked_roce_packets, rp_cnp_handled ...).
# port_xmit_data / port_rcv_data count 4-octet words (IBTA PortCounters): also exported in bytes.
_WORD_COUNTERS = {"port_xmit_data": "xmit", "port_rcv_data": "rcv"}
_STATE = re.compile(r"^\s*(\d+)\s*:")
_NAME_OK = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _label_value(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _series(name: str, labels: dict[str, object], value: float | int) -> str:
    body = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
    return f"{name}{{{body}}} {value}"


def _block(name: str, kind: str, help_text: str, lines: list[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *lines] if lines else []


def read_rdma(sysfs_root: str) -> list[dict]:
    """Walk SYSFS_ROOT (/sys/class/infiniband): one dict per port with its state and every readable counter."""
    ports = []
    try:
        devices = sorted(os.listdir(sysfs_root))
    except OSError:
        return ports
    for device in devices:
        pdir = os.path.join(sysfs_root, device, "ports")
        try:
            numbers = sorted(os.listdir(pdir), key=lambda p: int(p) if p.isdigit() else 0)
        except OSError:
            continue
        for port in numbers:
            base = os.path.join(pdir, port)
            entry: dict = {"device": device, "port": port, "counters": {}, "hw_counters": {}}
            for attr in ("state", "phys_state", "link_layer"):
                entry[attr] = _read(os.path.join(base, attr))
            for group in ("counters", "hw_counters"):
                gdir = os.path.join(base, group)
                try:
                    names = sorted(os.listdir(gdir))
                except OSError:
                    continue
                for name in names:
                    value = parse_counter(_read(os.path.join(gdir, name)))
                    if value is not None and _NAME_OK.fullmatch(name):
                        entry[group][name] = value
            ports.append(entry)
    return ports


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:  # unreadable attributes exist (EINVAL on some hw_counters): skip them
        return None


def parse_counter(text: str | None) -> int | None:
    """A sysfs counter file's text -> int (decimal; None when unreadable or not a number)."""
    if text is None:
        return None
    try:
        return int(text.split()[0], 0) if text else None
    except (ValueError, IndexError):
        return None


def state_code(text: str | None) -> int | None:
    """'4: ACTIVE' -> 4 (None when absent)."""
    match = _STATE.match(text or "")
    return int(match.group(1)) if match else None


def render_rdma(ports: list[dict]) -> str:
    """The RDMA ports as Prometheus text: state, active flag, every counter (labels device, port, counter, kind)."""
    active, state, counters, data = [], [], [], []
    for entry in ports:
        labels = {"device": entry["device"], "port": entry["port"]}
        code = state_code(entry.get("state"))
        if code is not None:
            state.append(
                _series("inferops_rdma_port_state", {**labels, "link_layer": entry.get("link_layer") or ""}, code)
            )
            active.append(_series("inferops_rdma_port_active", labels, 1 if code == 4 else 0))
        for group in ("counters", "hw_counters"):
            for name, value in entry[group].items():
                counters.append(
                    _series("inferops_rdma_port_counter", {**labels, "counter": name, "kind": group}, value)
                )
                if group == "counters" and name in _WORD_COUNTERS:
                    data.append(
                        _series(
                            "inferops_rdma_port_data_bytes_total",
                            {**labels, "direction": _WORD_COUNTERS[name]},
                            value * 4,
                        )
                    )
    lines = [
        *_block("inferops_rdma_port_state", "gauge", "RDMA port state (4 = ACTIVE) from sysfs.", state),
        *_block("inferops_rdma_port_active", "gauge", "1 when the RDMA port is ACTIVE.", active),
        *_block(
            "inferops_rdma_port_counter",
            "counter",
            "RDMA port counters from /sys/class/infiniband/*/ports/*/{counters,hw_counters}.",
            counters,
        ),
        *_block("inferops_rdma_port_data_bytes_total", "counter", "RDMA port data (port_*_data x 4 octets).", data),
    ]
    return "\n".join(lines) + "\n" if lines else ""


# nvidia-smi fallback: the fields asked for, and the DCGM metric each one stands in for (same names as
# dcgm-exporter, label source="nvidia-smi", so rules and dashboards read either).
SMI_FIELDS = (
    ("index", None),
    ("uuid", None),
    ("name", None),
    ("pci.bus_id", None),
    ("utilization.gpu", "DCGM_FI_DEV_GPU_UTIL"),
    ("utilization.memory", "DCGM_FI_DEV_MEM_COPY_UTIL"),
    ("memory.used", "DCGM_FI_DEV_FB_USED"),
    ("memory.free", "DCGM_FI_DEV_FB_FREE"),
    ("power.draw", "DCGM_FI_DEV_POWER_USAGE"),
    ("temperature.gpu", "DCGM_FI_DEV_GPU_TEMP"),
    ("clocks.sm", "DCGM_FI_DEV_SM_CLOCK"),
    ("ecc.errors.corrected.volatile.total", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"),
    ("ecc.errors.uncorrected.volatile.total", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"),
    ("clocks_event_reasons.active", None),
)
SMI_QUERY = ",".join(field for field, _metric in SMI_FIELDS)
# Bits of clocks_event_reasons (nvml.h, nvmlClocksEventReason*): the ones that mean the GPU slows itself down.
CLOCK_EVENT_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
_NA = {"[N/A]", "N/A", "[Not Supported]", "Not Supported", "[Unknown Error]", ""}


def parse_smi_csv(text: str) -> list[dict]:
    """``nvidia-smi --query-gpu=SMI_QUERY --format=csv,noheader,nounits`` -> one dict per GPU (None for N/A)."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(SMI_FIELDS):
            raise ValueError(f"unexpected nvidia-smi line ({len(values)} columns for {len(SMI_FIELDS)}): {line!r}")
        gpus.append({SMI_FIELDS[i][0]: (None if v in _NA else v) for i, v in enumerate(values)})
    return gpus


def render_smi(gpus: list[dict]) -> str:
    """The GPUs as Prometheus text under DCGM's metric names, plus the clock event reasons one per series."""
    by_metric: dict[str, list[str]] = {}
    reasons = []
    for gpu in gpus:
        labels = {
            "gpu": gpu["index"],
            "UUID": gpu["uuid"],
            "modelName": gpu["name"],
            "pci_bus_id": gpu["pci.bus_id"],
            "source": "nvidia-smi",
        }
        for field, metric in SMI_FIELDS:
            if metric and gpu.get(field) is not None:
                by_metric.setdefault(metric, []).append(_series(metric, labels, float(gpu[field])))
        mask_text = gpu.get("clocks_event_reasons.active")
        if mask_text is not None:
            mask = int(mask_text, 16)
            for bit, reason in CLOCK_EVENT_REASONS.items():
                reasons.append(
                    _series("inferops_gpu_clocks_event_active", {**labels, "reason": reason}, int(bool(mask & bit)))
                )
    lines = []
    for metric, series in by_metric.items():
        lines += _block(metric, "gauge", f"{metric} read with nvidia-smi (no DCGM on this node).", series)
    lines += _block(
        "inferops_gpu_clocks_event_active", "gauge", "1 while the clock event reason holds (nvidia-smi).", reasons
    )
    lines += ["# TYPE inferops_gpu_smi_up gauge", f"inferops_gpu_smi_up {1 if gpus else 0}"]
    return "\n".join(lines) + "\n"


def parse_systemctl_show(text: str) -> dict[str, str]:
    """``systemctl show -p ActiveState -p NRestarts UNIT`` -> {"ActiveState": ..., "NRestarts": ...}."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def render_units(units: dict[str, dict[str, str]]) -> str:
    """One gauge per unit (1 when active) and its restart count: a dead rank shows even where it serves no HTTP."""
    active = [
        _series(
            "inferops_unit_active",
            {"unit": u, "state": s.get("ActiveState", "")},
            int(s.get("ActiveState") == "active"),
        )
        for u, s in units.items()
    ]
    restarts = [
        _series("inferops_unit_restarts_total", {"unit": u}, int(s["NRestarts"]))
        for u, s in units.items()
        if (s.get("NRestarts") or "").isdigit()
    ]
    lines = [
        *_block("inferops_unit_active", "gauge", "1 while the systemd unit is active.", active),
        *_block("inferops_unit_restarts_total", "counter", "Restarts systemd made of the unit.", restarts),
    ]
    return "\n".join(lines) + "\n" if lines else ""


def render_disk(path: str, avail: int, size: int) -> str:
    labels = {"path": path}
    lines = [
        *_block(
            "inferops_model_disk_avail_bytes",
            "gauge",
            "Bytes free to users on the model's filesystem.",
            [_series("inferops_model_disk_avail_bytes", labels, avail)],
        ),
        *_block(
            "inferops_model_disk_size_bytes",
            "gauge",
            "Size of the model's filesystem.",
            [_series("inferops_model_disk_size_bytes", labels, size)],
        ),
    ]
    return "\n".join(lines) + "\n"


def write_atomic(directory: str, name: str, text: str) -> None:
    """DIR/NAME replaced in one rename: node exporter never reads half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(directory, name))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="inferops textfile collectors for node exporter")
    parser.add_argument("--out", required=True, help="node exporter's textfile directory")
    parser.add_argument("--rdma", metavar="SYSFS", help="/sys/class/infiniband (RDMA port counters)")
    parser.add_argument("--nvidia-smi", dest="smi", metavar="PATH", help="nvidia-smi to read the GPUs with")
    parser.add_argument("--unit", action="append", default=[], help="systemd unit whose state to export")
    parser.add_argument("--disk", metavar="PATH", help="path on the model's filesystem")
    args = parser.parse_args(argv)
    failed = 0
    if args.rdma:
        write_atomic(args.out, "inferops_rdma.prom", render_rdma(read_rdma(args.rdma)))
    if args.smi:
        try:
            gpus = parse_smi_csv(_run([args.smi, f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits"]))
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            sys.stderr.write(f"nvidia-smi: {exc}\n")
            gpus, failed = [], 1
        write_atomic(args.out, "inferops_gpu.prom", render_smi(gpus))
    if args.unit:
        units = {}
        for unit in args.unit:
            units[unit] = parse_systemctl_show(
                _run(["systemctl", "show", "-p", "ActiveState", "-p", "NRestarts", unit])
            )
        write_atomic(args.out, "inferops_units.prom", render_units(units))
    if args.disk:
        path = args.disk
        while not os.path.exists(path) and path not in ("", "/"):
            path = os.path.dirname(path)
        stat = os.statvfs(path or "/")
        write_atomic(
            args.out,
            "inferops_disk.prom",
            render_disk(args.disk, stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize),
        )
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
