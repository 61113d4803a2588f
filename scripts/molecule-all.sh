#!/usr/bin/env bash
# Run every molecule scenario under extensions/molecule/ (molecule test -s NAME), each one to
# the end, and fail if any failed.
#   scripts/molecule-all.sh [NAME ...]   (default: every scenario)
# Molecule 26 finds extensions/molecule/ by itself when it runs from the collection root
# (galaxy.yml there and no ./molecule directory), so this runs from the repository root.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export ANSIBLE_CONFIG="$root/ansible.cfg"
export PATH="$root/.venv/bin:$PATH"
if [ "$#" -gt 0 ]; then
  scenarios=("$@")
else
  scenarios=()
  for f in extensions/molecule/*/molecule.yml; do
    [ -e "$f" ] || continue
    scenarios+=("$(basename "$(dirname "$f")")")
  done
fi
if [ "${#scenarios[@]}" -eq 0 ]; then
  echo "molecule-all: no scenario under extensions/molecule/"
  exit 0
fi
failed=()
for s in "${scenarios[@]}"; do
  start=$(date +%s)
  echo "=== molecule test -s $s"
  if molecule test -s "$s"; then
    echo "=== $s: passed in $(($(date +%s) - start)) s"
  else
    echo "=== $s: FAILED after $(($(date +%s) - start)) s"
    failed+=("$s")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "molecule-all: failed: ${failed[*]}" >&2
  exit 1
fi
echo "molecule-all: ${#scenarios[@]} scenario(s) passed: ${scenarios[*]}"
