#!/usr/bin/env bash
# Build the lab's Debian 12 systemd base image locally (no registry is reachable).
# Usage: scripts/lab-image.sh [IMAGE]   (default inferops-lab:bookworm)
set -euo pipefail
image="${1:-inferops-lab:bookworm}"
mirror="${LAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "lab image $image present"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
rootfs="$(mktemp -d /tmp/inferops-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase \
  --include=python3,python3-venv,python3-apt,systemd,systemd-sysv,sudo,ca-certificates,iproute2,procps,curl,rsync,openssh-client,nftables,gnupg,kmod \
  bookworm "$rootfs" "$mirror"
# Clean apt lists and the machine id so every node gets its own.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
: > "$rootfs/etc/machine-id"
tar -C "$rootfs" -c . | docker import -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' - "$image"
echo "built lab image $image"
