#!/usr/bin/env bash
# FP8->BF16 converter benchmark (not a test), run from the repo root on a GPU machine, e.g. the
# device tool's nvidia-h100-x1. Makes the 8-shard DeepSeek-shaped checkpoint with fp8_probe.py,
# times the converter on the local disk and on /dev/shm (GPU and CPU), checks every tensor.
#   PROBE=path/to/fp8_probe.py RUNS=3 scripts/bench-fp8.sh     (logs under $OUT when set)
set -u -o pipefail
export PYTHONUNBUFFERED=1
P=${PROBE:-../shared/tools/fp8_probe.py}
C=roles/fp8_to_bf16/files/fp8_to_bf16.py
D=${BENCH_DIR:-/var/tmp/fp8bench}
S=/dev/shm/fp8bench
RUNS=${RUNS:-2}
LOGS=${OUT:-$(mktemp -d)}
n=0
step() { echo; echo "=== $* ($(date -u +%T))"; }
timed() { # IN OUT ARGS...: one probe-timed run, its summary lines
  local in=$1 out=$2; shift 2; n=$((n + 1)); rm -rf "$out"
  step "run $n: $in -> $out: $*"
  python3 "$P" time "$in" "$out" -- python3 $C --input {in} --output {out} "$@" >"$LOGS/run$n.log" 2>&1 || {
    tail -5 "$LOGS/run$n.log"; exit 1; }
  grep -hE "^converter:|done:" "$LOGS/run$n.log" | sed 's/^/    /'
}
step env
nvidia-smi -L; nproc; python3 -c "import torch, safetensors; print('torch', torch.__version__, 'safetensors', safetensors.__version__, 'cuda', torch.cuda.is_available())"
mkdir -p "$D" "$S"; findmnt -T "$D" | cat
step make 8 shards
python3 "$P" make "$D/in" --shards 8 --experts 32 >/dev/null || exit 1
python3 "$P" disk "$D" --gb 4
for _ in $(seq "$RUNS"); do timed "$D/in" "$D/out" --device cuda; done
python3 "$P" check "$D/in" "$D/out" | tail -1
python3 "$P" disk "$D" --gb 4
cp -r "$D/in" "$S/in"; sync
for _ in $(seq "$RUNS"); do timed "$S/in" "$S/out" --device cuda; done
python3 "$P" check "$S/in" "$S/out" | tail -1
for _ in $(seq "$RUNS"); do timed "$S/in" "$S/out" --device cpu --workers 16; done
python3 "$P" check "$S/in" "$S/out" | tail -1
step rerun on the complete output
python3 $C --input "$S/in" --output "$S/out" --device cpu | tail -2
rm -rf "$D" "$S"
