"""The textfile collectors: parsers and renderers on real captured output (nvidia-smi on an H200, through the
device tool), a sysfs tree with the kernel's RDMA counter files, the collector run end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils import _textfile as tf

ROOT = Path(__file__).resolve().parents[3]
H200 = ROOT / "tests" / "unit" / "fixtures" / "monitoring" / "h200"


def test_h200_capture_parses_into_dcgm_names():
    gpus = tf.parse_smi_csv((H200 / "smi_monitoring.csv").read_text())
    assert len(gpus) == 1
    gpu = gpus[0]
    assert gpu["name"] == "NVIDIA H200" and gpu["uuid"].startswith("GPU-05f4ceb0")
    assert gpu["memory.free"] == "143156" and gpu["power.draw"] == "77.50"
    text = tf.render_smi(gpus)
    assert 'DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-05f4ceb0-8135-9102-a534-3beeeb56aab6"' in text
    assert "DCGM_FI_DEV_FB_FREE{" in text and "} 143156.0" in text
    assert "DCGM_FI_DEV_GPU_TEMP{" in text and "} 35.0" in text
    # 0x1: idle, nothing held down
    assert 'reason="gpu_idle",source="nvidia-smi"} 1' not in text  # label order: source before reason
    assert 'source="nvidia-smi",reason="gpu_idle"} 1' in text
    assert 'source="nvidia-smi",reason="hw_slowdown"} 0' in text
    assert "inferops_gpu_smi_up 1" in text


def test_the_capture_used_the_collectors_query():
    # the header of the same query with units (captured beside it) lists the fields in SMI_QUERY's order
    header = (H200 / "smi_monitoring_units.csv").read_text().splitlines()[0]
    names = [h.split(" [")[0].strip() for h in header.split(",")]
    assert names[:4] == ["index", "uuid", "name", "pci.bus_id"]
    assert len(names) == len(tf.SMI_FIELDS)


def test_na_fields_are_left_out_and_a_short_line_is_an_error():
    line = "1, GPU-a, NVIDIA A10, 00000000:01:00.0, 5, 1, 100, 200, [N/A], 40, 1200, [N/A], [N/A], 0x0000000000000028"
    gpus = tf.parse_smi_csv(line)
    text = tf.render_smi(gpus)
    assert "DCGM_FI_DEV_POWER_USAGE" not in text and "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" not in text
    assert 'reason="hw_slowdown"} 1' in text and 'reason="sw_thermal_slowdown"} 1' in text
    with pytest.raises(ValueError, match="columns"):
        tf.parse_smi_csv("0, GPU-a, H200")


def _sysfs(root: Path) -> Path:
    """Two HCAs as the kernel lays them out (ib_core counters in 4-octet words; mlx5 hw_counters)."""
    files = {
        "mlx5_0/ports/1/state": "4: ACTIVE",
        "mlx5_0/ports/1/phys_state": "5: LinkUp",
        "mlx5_0/ports/1/link_layer": "InfiniBand",
        "mlx5_0/ports/1/counters/symbol_error": "3",
        "mlx5_0/ports/1/counters/link_downed": "1",
        "mlx5_0/ports/1/counters/port_rcv_errors": "0",
        "mlx5_0/ports/1/counters/port_xmit_data": "1000",
        "mlx5_0/ports/1/counters/port_rcv_data": "2500",
        "mlx5_0/ports/1/counters/VL15_dropped": "0",
        "mlx5_0/ports/1/hw_counters/out_of_sequence": "7",
        "mlx5_0/ports/1/hw_counters/np_ecn_marked_roce_packets": "11",
        "mlx5_1/ports/1/state": "1: DOWN",
        "mlx5_1/ports/1/phys_state": "3: Disabled",
        "mlx5_1/ports/1/link_layer": "Ethernet",
        "mlx5_1/ports/1/counters/symbol_error": "N/A",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


def test_rdma_counters_from_sysfs(tmp_path):
    ports = tf.read_rdma(str(_sysfs(tmp_path / "ib")))
    assert [(p["device"], p["port"]) for p in ports] == [("mlx5_0", "1"), ("mlx5_1", "1")]
    assert ports[0]["counters"]["symbol_error"] == 3 and ports[0]["hw_counters"]["out_of_sequence"] == 7
    assert ports[1]["counters"] == {}  # unreadable value skipped
    text = tf.render_rdma(ports)
    assert 'inferops_rdma_port_active{device="mlx5_0",port="1"} 1' in text
    assert 'inferops_rdma_port_active{device="mlx5_1",port="1"} 0' in text
    assert 'inferops_rdma_port_state{device="mlx5_1",port="1",link_layer="Ethernet"} 1' in text
    assert 'inferops_rdma_port_counter{device="mlx5_0",port="1",counter="link_downed",kind="counters"} 1' in text
    assert 'counter="np_ecn_marked_roce_packets",kind="hw_counters"} 11' in text
    assert 'inferops_rdma_port_data_bytes_total{device="mlx5_0",port="1",direction="xmit"} 4000' in text
    assert 'inferops_rdma_port_data_bytes_total{device="mlx5_0",port="1",direction="rcv"} 10000' in text
    assert tf.render_rdma(tf.read_rdma(str(tmp_path / "absent"))) == ""


def test_units_and_disk():
    show = "ActiveState=failed\nNRestarts=3\n"
    text = tf.render_units({"inferops-engine.service": tf.parse_systemctl_show(show)})
    assert 'inferops_unit_active{unit="inferops-engine.service",state="failed"} 0' in text
    assert 'inferops_unit_restarts_total{unit="inferops-engine.service"} 3' in text
    disk = tf.render_disk("/opt/m", 10, 100)
    assert 'inferops_model_disk_avail_bytes{path="/opt/m"} 10' in disk


def test_collector_script_runs_as_installed(tmp_path):
    """The file the node_exporter role copies onto a node, run as its timer runs it (stdlib only, no collection)."""
    out = tmp_path / "textfile"
    out.mkdir()
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\ncat {H200 / 'smi_monitoring.csv'}\n")  # replays the captured H200 output
    smi.chmod(0o755)
    script = ROOT / "plugins" / "module_utils" / "_textfile.py"
    argv = [sys.executable, "-I", str(script), "--out", str(out), "--rdma", str(_sysfs(tmp_path / "ib"))]
    proc = subprocess.run([*argv, "--nvidia-smi", str(smi), "--disk", str(tmp_path / "no" / "such")], check=False)
    assert proc.returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["inferops_disk.prom", "inferops_gpu.prom", "inferops_rdma.prom"]
    assert "DCGM_FI_DEV_GPU_UTIL" in (out / "inferops_gpu.prom").read_text()
    assert 'path="' + str(tmp_path / "no" / "such") + '"' in (out / "inferops_disk.prom").read_text()
