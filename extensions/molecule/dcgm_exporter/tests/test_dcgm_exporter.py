"""The field list the dcgm_exporter role writes: dcgm-exporter's CSV with every field the alert rules read."""

from __future__ import annotations

RULE_FIELDS = {
    "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE",
    "DCGM_FI_DEV_THERMAL_VIOLATION",
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_POWER_USAGE",
}


def test_field_list(host):
    csv = host.file("/etc/inferops/dcgm-exporter/counters.csv")
    assert csv.mode == 0o644
    rows = [line.split(", ", 2) for line in csv.content_string.splitlines() if line and not line.startswith("#")]
    assert all(len(row) == 3 and row[1] in ("gauge", "counter") for row in rows), rows
    assert {row[0] for row in rows} >= RULE_FIELDS
