#!/usr/bin/env bash
# ansible-test sanity needs the collection at .../ansible_collections/inferops/cluster: copy the
# tracked and untracked-but-not-ignored files there (a git repo of its own, so ansible-test sees
# exactly these files) and run the sanity tests for the controller's Python.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
dest=.build/sanity/ansible_collections/inferops/cluster
rm -rf .build/sanity
mkdir -p "$dest"
git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | rsync -a --from0 --files-from=- ./ "$dest/"
# ansible-test bootstraps pip in its venvs with a script from ci-files.testing.ansible.com, which is
# not reachable from every site (nor from CI here): provide the same step from ensurepip + PyPI.
reqs="$("$root/.venv/bin/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py"
pip_version="$(grep -oP "pip='\K[0-9.]+" "$reqs" | head -1)"
bootstrap="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ ! -s "$bootstrap" ]; then
  mkdir -p "$(dirname "$bootstrap")"
  cat > "$bootstrap" <<'PY'
"""Offline stand-in for get-pip.py: ensurepip, then `pip install` of what get-pip was asked for."""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", *args])
PY
fi
cd "$dest"
git init -q && git add -A && git -c user.email=ci@local -c user.name=ci commit -qm sanity
py="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
"$root/.venv/bin/ansible-test" sanity --color no --python "$py" "$@"
