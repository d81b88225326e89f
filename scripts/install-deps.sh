#!/usr/bin/env bash
# Installs what natra's build, tests and demo need on Debian bookworm.
# Idempotent: apt runs only when a package is missing.
set -euo pipefail

PACKAGES=(clang llvm libelf-dev libbpf-dev zlib1g-dev pkg-config make bpftool iperf3 iproute2 jq ethtool bc
  containernetworking-plugins golang-go golang-github-appc-cni-dev clang-format gnuplot-nox
  containerd runc protobuf-compiler gcc libc6-dev python3 file prometheus)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "install-deps: no Rust toolchain: install one >= 1.82 with rustup (https://rustup.rs);" \
    "Debian bookworm's rustc is too old for libbpf-rs" >&2
  exit 1
fi
