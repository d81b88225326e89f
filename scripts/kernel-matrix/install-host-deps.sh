#!/usr/bin/env bash
# Host packages the kernel matrix needs (Debian bookworm, root). Idempotent:
# apt runs only when something is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# The 6.12 kernel and the guest's bpftool 7.5 come from bookworm-backports.
if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo 'deb http://deb.debian.org/debian bookworm-backports main' >/etc/apt/sources.list.d/bookworm-backports.list
  apt-get update -qq
fi

PACKAGES=(busybox-static kmod cpio xz-utils zstd gzip iproute2 iperf3 python3
  containernetworking-plugins golang-go golang-github-appc-cni-dev)
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "kernel-matrix: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bookworm's qemu-system-x86 (7.2) is refused when qemu-utils already came
# from backports (its Breaks: qemu-system-common << 8.0): take backports' then.
if ! command -v qemu-system-x86_64 >/dev/null; then
  echo "kernel-matrix: installing qemu-system-x86"
  apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null 2>&1 ||
    apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null
fi
