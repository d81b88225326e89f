#!/usr/bin/env bash
# Regenerates include/vmlinux.h from the running kernel's BTF. The committed
# copy is what CO-RE compiles against; regenerate it only to use newer kernel
# types (CO-RE relocations keep the object portable across kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
btf=${1:-/sys/kernel/btf/vmlinux}
bpftool btf dump file "$btf" format c > include/vmlinux.h.tmp
mv include/vmlinux.h.tmp include/vmlinux.h
echo "include/vmlinux.h regenerated from $btf ($(wc -l < include/vmlinux.h) lines)"
