#!/usr/bin/env bash
# build-initramfs.sh KERNEL_DIR BIN_DIR OUT.cpio.gz
# A small initramfs for one kernel of the matrix: busybox-static for the
# basics; natra, cnitool and miceprobe from BIN_DIR; ptp and host-local from
# /usr/lib/cni; iproute2, iperf3, jq and bpftool 7.5 -- each with the shared
# libraries ldd names (so libgcc_s for natra); the kernel's own modules that
# natra's paths need, with their dependencies, decompressed and depmod'ed;
# guest/init as PID 1 and guest/test.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
KDIR=$(cd "$1" && pwd)
BIN=$(cd "$2" && pwd)
OUT=$(realpath -m "$3")
KVER=$(cat "$KDIR/kver")
MDIR=$KDIR/root/lib/modules/$KVER
BPFTOOL=$KDIR/../bpftool/usr/sbin/bpftool
# veth: ptp's Pods; sch_fq: EDT; sch_ingress: clsact (and tcx's core on
# 6.6+); cls_bpf: natra's clsact filters.
# sch_tbf ifb act_mirred cls_u32: the upstream bandwidth plugin beside natra.
MODS="veth sch_fq sch_ingress cls_bpf sch_tbf ifb act_mirred cls_u32"

R=$(mktemp -d "${TMPDIR:-/tmp}/natra-initramfs.XXXXXX")
trap 'rm -rf "$R"' EXIT
mkdir -p "$R"/{bin,sbin,usr/sbin,lib,lib64,proc,sys,dev,tmp,run,etc,root,opt/cni/bin}

# A binary plus every library ldd resolves (bookworm is usr-merged: ldd
# says /lib/..., and /usr/lib links there below).
copy_with_libs() { # SRC DST
  install -D -m 0755 "$1" "$R$2"
  # static Go binaries: ldd fails and names nothing
  { ldd "$1" 2>/dev/null || true; } | { grep -o '/[^ ]*' || true; } | while read -r lib; do
    [ -e "$R$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$R$lib"
  done
}
copy_with_libs "$BIN/natra" /opt/cni/bin/natra
copy_with_libs /usr/lib/cni/ptp /opt/cni/bin/ptp
copy_with_libs /usr/lib/cni/host-local /opt/cni/bin/host-local
# upstream's plugin (Debian's containernetworking-plugins), beside natra
copy_with_libs /usr/lib/cni/bandwidth /opt/cni/bin/bandwidth
for b in "$BIN/cnitool" "$BIN/miceprobe" /usr/sbin/ip /usr/sbin/tc /usr/bin/iperf3 /usr/bin/jq "$BPFTOOL" \
  "$(command -v nstat)"; do
  copy_with_libs "$b" "/usr/sbin/$(basename "$b")"
done
ln -s /opt/cni/bin/natra "$R/usr/sbin/natra"   # natra inspect/stats in the guest
ln -s ../lib "$R/usr/lib"

# busybox for everything else; never shadow iproute2's ip/tc.
install -m 0755 /bin/busybox "$R/bin/busybox"
for app in $(/bin/busybox --list); do
  case $app in ip | tc | busybox) continue ;; esac
  [ -e "$R/bin/$app" ] || [ -e "$R/usr/sbin/$app" ] || ln -s busybox "$R/bin/$app"
done
ln -sf ../bin/busybox "$R/sbin/modprobe" # the kernel's request_module() helper

# Modules: the wanted ones and their `depends` closure; 6.12 ships .ko.xz,
# which busybox modprobe cannot read, so they are stored decompressed.
declare -A seen=()
add_mod() {
  local m=${1//-/_} p d rel
  [ -n "${seen[$m]:-}" ] && return 0
  seen[$m]=1
  p=$(find "$MDIR/kernel" \( -name "$m.ko*" -o -name "${m//_/-}.ko*" \) | head -1)
  if [ -z "$p" ]; then
    grep -q "/$m.ko\$" "$MDIR/modules.builtin" && return 0
    echo "build-initramfs: module $m neither built in nor found in $KVER" >&2
    return 1
  fi
  for d in $(modinfo -F depends "$p" | tr ',' ' '); do add_mod "$d"; done
  rel=${p#"$MDIR"/}
  rel=${rel%.xz}
  rel=${rel%.zst}
  mkdir -p "$(dirname "$R/lib/modules/$KVER/$rel")"
  case $p in
    *.xz) xz -dc "$p" >"$R/lib/modules/$KVER/$rel" ;;
    *.zst) zstd -qdc "$p" >"$R/lib/modules/$KVER/$rel" ;;
    *) cp "$p" "$R/lib/modules/$KVER/$rel" ;;
  esac
}
for m in $MODS; do add_mod "$m"; done
cp "$MDIR"/modules.builtin* "$MDIR"/modules.order "$R/lib/modules/$KVER/"
depmod -b "$R" "$KVER"
echo "$MODS" >"$R/etc/modules-preload"

install -m 0755 "$HERE/guest/init" "$R/init"
install -m 0755 "$HERE/guest/test.sh" "$R/test.sh"
echo "root:x:0:0:root:/root:/bin/sh" >"$R/etc/passwd"
echo "root:x:0:" >"$R/etc/group"
printf '127.0.0.1 localhost\n' >"$R/etc/hosts"

mkdir -p "$(dirname "$OUT")"
(cd "$R" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 >"$OUT"
echo "build-initramfs: $OUT $(du -h "$OUT" | cut -f1), kernel $KVER"
