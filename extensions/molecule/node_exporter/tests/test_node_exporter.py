"""What the node_exporter role runs: Debian's node exporter on the node's address, the collector timer, and the
collection's series in node exporter's own /metrics page."""

from __future__ import annotations

import time


def _metrics(host) -> str:
    address = host.interface("eth0").addresses[0]
    return host.check_output(f"curl -sf http://{address}:9100/metrics")


def test_node_exporter_runs_on_the_node_address(host):
    assert host.package("prometheus-node-exporter").is_installed
    assert host.service("prometheus-node-exporter").is_running
    address = host.interface("eth0").addresses[0]
    assert host.socket(f"tcp://{address}:9100").is_listening
    assert not host.socket("tcp://127.0.0.1:9100").is_listening


def test_timer_runs_the_collector(host):
    assert host.service("inferops-textfile.timer").is_enabled
    assert host.service("inferops-textfile.timer").is_running
    unit = host.file("/etc/systemd/system/inferops-textfile.service").content_string
    assert "--rdma /srv/sysfs/ib --nvidia-smi /usr/local/bin/nvidia-smi-replay" in unit
    assert "--unit inferops-engine.service --disk /opt/inferops/models/m" in unit
    first = host.file("/var/lib/prometheus/node-exporter/inferops_rdma.prom").mtime
    time.sleep(8)
    assert host.file("/var/lib/prometheus/node-exporter/inferops_rdma.prom").mtime > first


def test_rdma_counters_in_node_exporter(host):
    text = _metrics(host)
    assert 'inferops_rdma_port_counter{counter="symbol_error",device="mlx5_0",kind="counters",port="1"} 3' in text
    assert 'inferops_rdma_port_counter{counter="out_of_sequence",device="mlx5_0",kind="hw_counters",port="1"} 2' in text
    assert 'inferops_rdma_port_data_bytes_total{device="mlx5_0",direction="xmit",port="1"} 493824' in text
    assert 'inferops_rdma_port_active{device="mlx5_1",port="1"} 0' in text


def test_gpu_fallback_under_dcgm_names(host):
    text = _metrics(host)
    assert 'DCGM_FI_DEV_POWER_USAGE{UUID="GPU-05f4ceb0-8135-9102-a534-3beeeb56aab6",gpu="0"' in text
    assert 'modelName="NVIDIA H200",pci_bus_id="00000000:00:06.0",source="nvidia-smi"} 77.5' in text
    assert "inferops_gpu_smi_up 1" in text


def test_unit_state_and_model_disk(host):
    text = _metrics(host)
    # no engine in this scenario: its unit is inactive, which is what a dead rank looks like
    assert 'inferops_unit_active{state="inactive",unit="inferops-engine.service"} 0' in text
    assert 'inferops_model_disk_avail_bytes{path="/opt/inferops/models/m"}' in text
    assert "node_textfile_scrape_error 0" in text
