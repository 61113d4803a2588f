#!/usr/bin/env bash
# Install every host tool in scripts/host-tools.txt that is missing (Debian packages, one apt-get
# run), then make sure a Docker engine answers (dockerd in the background where PID 1 is not systemd).
#   scripts/host-tools.sh          install what is missing and start Docker
#   scripts/host-tools.sh --check  only list what is missing (exit 1 if anything is)
set -euo pipefail
cd "$(dirname "$0")/.."
list=scripts/host-tools.txt
missing_cmds=()
missing_pkgs=()
while read -r cmd pkg _; do
  case "$cmd" in ''|'#'*) continue ;; esac
  if ! command -v "$cmd" >/dev/null 2>&1; then
    missing_cmds+=("$cmd")
    [[ " ${missing_pkgs[*]-} " == *" $pkg "* ]] || missing_pkgs+=("$pkg")
  fi
done <"$list"

if [ "${1:-}" = --check ]; then
  if [ "${#missing_cmds[@]}" -gt 0 ]; then
    echo "missing host tools: ${missing_cmds[*]} (packages: ${missing_pkgs[*]}); run scripts/host-tools.sh" >&2
    exit 1
  fi
  exit 0
fi

if [ "${#missing_pkgs[@]}" -gt 0 ]; then
  echo "installing host tools: ${missing_cmds[*]} (Debian packages: ${missing_pkgs[*]})"
  if [ "$(id -u)" -ne 0 ]; then
    echo "host-tools: not root; install as root: apt-get install ${missing_pkgs[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null
  scripts/host-tools.sh --check
fi

if ! docker info >/dev/null 2>&1; then
  if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    systemctl start docker
  else
    nohup dockerd >/var/log/dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "Docker engine did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi
