#!/usr/bin/env bash
# Make sure a Docker engine answers: install Debian's docker.io and start dockerd if needed
# (machines without systemd as PID 1 get dockerd started in the background).
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io debootstrap iproute2 >/dev/null
fi
command -v debootstrap >/dev/null 2>&1 || apt-get install -y -qq debootstrap >/dev/null
if ! docker info >/dev/null 2>&1; then
  if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    systemctl start docker
  else
    nohup dockerd >/var/log/dockerd.log 2>&1 &
  fi
fi
for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done
echo "Docker engine did not start; see /var/log/dockerd.log" >&2
exit 1
