"""nvidia-smi parsers on output captured on the device machine's H100 (driver 580.159.04)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils import _gpu
from ansible_collections.inferops.cluster.plugins.module_utils._day2 import NVIDIA_SMI_QUERY_FIELDS

H100 = Path(__file__).resolve().parents[2] / "fixtures" / "gpu" / "h100"


def _text(name: str) -> str:
    return (H100 / name).read_text(encoding="utf-8")


def test_query_gpu_h100():
    assert _gpu.parse_query_gpu(_text("query.txt")) == [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": "GPU-9ce0f33b-aa0d-cadd-c10d-2c37d48750fe",
            "pci_bus_id": "00000000:00:06.0",
            "driver_version": "580.159.04",
            "memory_total_mib": 81559,
            "persistence_mode": True,
            "mig_mode": "Disabled",
            "compute_cap": "9.0",
        }
    ]


def test_query_gpu_column_mismatch_is_an_error():
    with pytest.raises(ValueError, match="columns"):
        _gpu.parse_query_gpu("0, NVIDIA H100 80GB HBM3\n")


# The H100 capture with the values nvidia-smi prints for fields a GPU or driver does not report
# (MIG mode on boards without MIG, memory in use under some vGPU/MIG set-ups, persistence mode on WDDM).
NA_LINES = [
    "0, NVIDIA H100 80GB HBM3, GPU-9ce0f33b-aa0d-cadd-c10d-2c37d48750fe, 00000000:00:06.0, 580.159.04, 81559, "
    "[Not Supported], [N/A], 9.0",
    "1, NVIDIA H100 80GB HBM3, GPU-4098c108-fd69-8d43-91b5-d5328ee0e980, 00000000:00:07.0, 580.159.04, [N/A], "
    "Enabled, Disabled, [Not Supported]",
]


def test_query_gpu_not_available_values_are_none():
    gpus = _gpu.parse_query_gpu("\n".join(NA_LINES) + "\n")
    assert [(g["persistence_mode"], g["mig_mode"], g["compute_cap"]) for g in gpus] == [
        (False, None, "9.0"),
        (True, "Disabled", None),
    ]
    assert [g["memory_total_mib"] for g in gpus] == [81559, None]


def test_query_gpu_engine_info_fields_with_not_available_memory():
    """engine_info's query: its former parser raised on `[N/A]` memory."""
    text = (
        "0, NVIDIA H100 80GB HBM3, GPU-4098c108-fd69-8d43-91b5-d5328ee0e980, 580.159.04, [N/A], 81559\n"
        "1, NVIDIA H100 80GB HBM3, GPU-9ce0f33b-aa0d-cadd-c10d-2c37d48750fe, 580.159.04, [Not Supported], [N/A]\n"
    )
    assert _gpu.parse_query_gpu(text, NVIDIA_SMI_QUERY_FIELDS) == [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": "GPU-4098c108-fd69-8d43-91b5-d5328ee0e980",
            "driver_version": "580.159.04",
            "memory_used_mib": None,
            "memory_total_mib": 81559,
        },
        {
            "index": 1,
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": "GPU-9ce0f33b-aa0d-cadd-c10d-2c37d48750fe",
            "driver_version": "580.159.04",
            "memory_used_mib": None,
            "memory_total_mib": None,
        },
    ]


def test_smi_q_h100():
    parsed = _gpu.parse_smi_q(_text("smi_q.txt"))
    assert parsed["driver_version"] == "580.159.04"
    assert parsed["cuda_version"] == "13.0"
    assert parsed["attached_gpus"] == 1
    assert len(parsed["gpus"]) == 1
    gpu = parsed["gpus"][0]
    assert gpu["bus_id"] == "00000000:00:06.0"
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["persistence_mode"] == "Enabled"
    assert gpu["mig_mode"] == "Disabled"  # "MIG Mode / Current", not "Driver Model / Current"
    assert gpu["fabric"] == {"state": None, "status": None, "cliqueid": None, "clusteruuid": None}


def test_topo_matrix_h100_single_gpu():
    # the header carries an ANSI underline and the extra columns must not leak in
    assert _gpu.parse_topo_matrix(_text("topo.txt")) == {"GPU0": {"GPU0": "X"}}


def test_nvlink_status_single_pcie_slot_is_empty():
    assert _text("nvlink.txt") == ""
    assert _gpu.parse_nvlink_status(_text("nvlink.txt")) == {}


def test_build_facts_h100():
    facts = _gpu.build_facts(_text("query.txt"), _text("smi_q.txt"), _text("topo.txt"), _text("nvlink.txt"), [])
    assert facts["present"] is True
    assert facts["driver_version"] == "580.159.04"
    assert facts["cuda_version"] == "13.0"
    assert facts["count"] == 1
    assert facts["models"] == ["NVIDIA H100 80GB HBM3"]
    assert facts["memory_total_mib"] == 81559
    assert facts["persistence_mode"] is True
    assert facts["mig_enabled"] is False
    assert facts["nvswitch"] == {"present": False, "evidence": [], "fabric_states": []}
    assert _gpu.driver_matches(facts, "580.159.04") is True
    assert _gpu.driver_matches(facts, "580.159.03") is False


def test_fabric_state_means_nvswitch():
    # the same real output with the Fabric section as an NVSwitch system reports it
    smi_q = _text("smi_q.txt")
    fabric = smi_q.index("    Fabric\n")
    state = smi_q.index("State", fabric)
    line_end = smi_q.index("\n", state)
    nvswitch_q = smi_q[:state] + smi_q[state:line_end].replace("N/A", "Completed") + smi_q[line_end:]
    facts = _gpu.build_facts(_text("query.txt"), nvswitch_q, _text("topo.txt"), "", [])
    assert facts["nvswitch"]["present"] is True
    assert facts["nvswitch"]["fabric_states"] == ["Completed"]


def test_nvswitch_pci_devices_are_evidence():
    facts = _gpu.build_facts(_text("query.txt"), _text("smi_q.txt"), "", "", ["0000:05:00.0", "0000:06:00.0"])
    assert facts["nvswitch"]["present"] is True
    assert facts["nvswitch"]["evidence"] == ["2 NVSwitch PCI device(s)"]


@pytest.mark.parametrize("text", ["No devices were found\n", ""])
def test_no_device(text):
    facts = _gpu.build_facts(text)
    assert facts["present"] is False and facts["count"] == 0
    assert facts["reason"] == "nvidia-smi reports no NVIDIA GPU"
    assert _gpu.driver_matches(facts, "580.159.04") is False


def test_no_gpu_shape_matches_present_shape():
    present = _gpu.build_facts(_text("query.txt"), _text("smi_q.txt"), _text("topo.txt"), "", [])
    absent = _gpu.no_gpu("x")
    assert set(absent) <= set(present)
