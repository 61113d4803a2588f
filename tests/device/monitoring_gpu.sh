#!/usr/bin/env bash
# On the GPU machine (device tool): what the monitoring phase can read there (no Docker, no systemd).
#   1. nvidia-smi with the fallback collector's query (plugins/module_utils/_textfile.py SMI_QUERY), captured
#      as a parser fixture, then the collector itself writing its textfile;
#   2. whether DCGM is there at all (dcgmi, nv-hostengine, the Python bindings, libdcgm);
#   3. the nvidia-smi views that back the rules on recorded series: ECC, clocks events, NVLink error counters.
# Usage: tests/device/monitoring_gpu.sh   (files land in $OUT)
set -uo pipefail
out="${OUT:-/tmp/inferops-device}"
mkdir -p "$out/textfile"
query="$(python3 -c 'import importlib.util as u; s=u.spec_from_file_location("t","plugins/module_utils/_textfile.py"); m=u.module_from_spec(s); s.loader.exec_module(m); print(m.SMI_QUERY)')"
echo "query: $query" | tee "$out/smi_query_fields.txt"
nvidia-smi --query-gpu="$query" --format=csv,noheader,nounits >"$out/smi_monitoring.csv" 2>&1
echo "== nvidia-smi query rc=$?"; cat "$out/smi_monitoring.csv"
python3 plugins/module_utils/_textfile.py --out "$out/textfile" --nvidia-smi "$(command -v nvidia-smi)" --disk /tmp
echo "== collector rc=$?"; cat "$out/textfile/inferops_gpu.prom"
{
  for tool in dcgmi nv-hostengine dcgm-exporter; do printf '%s: %s\n' "$tool" "$(command -v "$tool" || echo absent)"; done
  python3 -c 'import pydcgm' 2>&1 | tail -1 | sed 's/^/python pydcgm: /'
  python3 -c 'import dcgm_structs' 2>&1 | tail -1 | sed 's/^/python dcgm_structs: /'
  ls /usr/local/dcgm /usr/share/datacenter-gpu-manager* 2>&1 | head -3
  ldconfig -p | grep -i dcgm || echo "libdcgm: absent from ldconfig"
  pip list 2>/dev/null | grep -i -E 'dcgm|nvidia-ml|pynvml' || echo "pip: no dcgm / nvml package"
} >"$out/dcgm_presence.txt" 2>&1
cat "$out/dcgm_presence.txt"
nvidia-smi -q -d ECC,PERFORMANCE,POWER,TEMPERATURE,CLOCK >"$out/smi_q_monitoring.txt" 2>&1
nvidia-smi nvlink -e >"$out/nvlink_errors.txt" 2>&1; echo "== nvlink -e rc=$?"
nvidia-smi --help-query-gpu >"$out/help_query_gpu.txt" 2>&1
nvidia-smi -L
