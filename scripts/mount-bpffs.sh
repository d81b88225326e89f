#!/usr/bin/env bash
# Mounts bpffs at /sys/fs/bpf when it is not mounted (a fresh VM often lacks it).
set -euo pipefail
if ! mount | grep -q ' /sys/fs/bpf type bpf '; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "mount-bpffs: bpffs is not mounted at /sys/fs/bpf and we are not root" >&2
    exit 0
  fi
  mount -t bpf bpf /sys/fs/bpf
  echo "mount-bpffs: mounted bpffs at /sys/fs/bpf"
fi
