#!/usr/bin/env bash
# run-vm.sh KERNEL_DIR INITRAMFS LOG
# Boots the kernel's ELF vmlinux (PVH entry: no decompressor to emulate) with
# the initramfs, serial console to LOG (and to stdout when VERBOSE=1), and
# exits with the guest test's status from its "NATRA-GUEST-EXIT=<rc>" line;
# 125 when there is none (timeout, panic).
# Env: TIMEOUT (s, default 900), SMP (2), MEM (2G).
# TCG always: this machine's /dev/kvm is PVM (kvm_pvm), which cannot run stock
# kernels; a real KVM is used only when kvm_intel/kvm_amd back /dev/kvm.
set -euo pipefail
KDIR=$1 INITRD=$2 LOG=$3
accel=(-accel tcg,thread=multi -cpu max)
if [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
  accel=(-accel kvm -cpu host)
fi
mkdir -p "$(dirname "$LOG")"
rc=0
timeout --foreground -k 5 "${TIMEOUT:-900}" qemu-system-x86_64 \
  -nodefaults -no-user-config -machine pc "${accel[@]}" \
  -smp "${SMP:-2}" -m "${MEM:-2G}" -display none -serial stdio -nic none \
  -kernel "$KDIR/vmlinux" -initrd "$INITRD" \
  -append "console=ttyS0 panic=-1 loglevel=4" -no-reboot </dev/null 2>&1 |
  stdbuf -oL tr -d '\r' | if [ "${VERBOSE:-0}" = 1 ]; then tee "$LOG"; else cat >"$LOG"; fi || rc=$?
guest=$(sed -n 's/^NATRA-GUEST-EXIT=\([0-9]*\)$/\1/p' "$LOG" | tail -1)
if [ -z "$guest" ]; then
  echo "run-vm: no NATRA-GUEST-EXIT line from the guest (qemu/timeout status $rc); see $LOG" >&2
  exit 125
fi
exit "$guest"
