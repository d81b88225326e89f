#!/usr/bin/env bash
# fetch-kernels.sh [KERNEL...]   (KERNEL: 6.1, 6.12; default both)
# Downloads Debian's kernel packages with `apt-get download` and unpacks them
# with `dpkg -x` -- never installed on the host -- into $KCACHE/<kernel>/:
#   vmlinux (ELF, booted through PVH: no decompressor under TCG), kver,
#   root/lib/modules/<kver>/.  Also unpacks backports' bpftool 7.5 for the
#   guest (bookworm's 7.1 mis-probes 6.12 and cannot show tcx links).
# Cached (.cache/ is git-ignored): fetched again only when Debian's
# linux-image-amd64 for that suite names another ABI package.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
KCACHE=${KCACHE:-$HERE/../../.cache/kernels}
mkdir -p "$KCACHE/debs"
KCACHE=$(cd "$KCACHE" && pwd)

# Which Debian suite carries each kernel of the matrix. Add a kernel here
# and pass it in KERNELS (run.sh) to grow the matrix.
suites_for() {
  case $1 in
    6.1) echo "bookworm-security bookworm" ;;
    6.12) echo "bookworm-backports" ;;
    *)
      echo "fetch-kernels: unknown kernel $1" >&2
      return 1
      ;;
  esac
}

# linux-image-amd64 is a metapackage; its Depends names the real ABI package.
pkg_for() {
  local s
  for s in $(suites_for "$1"); do
    apt-cache show "linux-image-amd64/$s" 2>/dev/null |
      sed -n 's/^Depends: \(linux-image-[^ ,]*\).*/\1/p' | head -1 | grep . && return 0
  done
  echo "fetch-kernels: no linux-image-amd64 for $1 in: $(suites_for "$1") (apt-get update?)" >&2
  return 1
}

if [ ! -x "$KCACHE/bpftool/usr/sbin/bpftool" ]; then
  (cd "$KCACHE/debs" && apt-get download -q -o APT::Sandbox::User=root bpftool/bookworm-backports >/dev/null)
  rm -rf "$KCACHE/bpftool"
  dpkg -x "$(ls -t "$KCACHE"/debs/bpftool_*bpo*.deb | head -1)" "$KCACHE/bpftool"
fi

if (($#)); then kernels=("$@"); else kernels=(6.1 6.12); fi
for k in "${kernels[@]}"; do
  pkg=$(pkg_for "$k")
  # cached, unless Debian moved the kernel to a new ABI package since
  [ -s "$KCACHE/$k/vmlinux" ] && [ "$(cat "$KCACHE/$k/pkg" 2>/dev/null)" = "$pkg" ] && continue
  echo "fetch-kernels: $k -> $pkg"
  (cd "$KCACHE/debs" && { ls "${pkg}"_*.deb >/dev/null 2>&1 || apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null; })
  rm -rf "$KCACHE/$k"
  mkdir -p "$KCACHE/$k/root"
  dpkg -x "$(ls "$KCACHE"/debs/"${pkg}"_*.deb | head -1)" "$KCACHE/$k/root"
  kver=$(ls "$KCACHE/$k/root/lib/modules")
  python3 "$HERE/extract-vmlinux.py" "$KCACHE/$k/root/boot/vmlinuz-$kver" "$KCACHE/$k/vmlinux.tmp" >/dev/null
  rm -rf "$KCACHE/$k/root/boot" "$KCACHE/$k/root/usr"  # only modules are needed
  echo "$kver" >"$KCACHE/$k/kver"
  echo "$pkg" >"$KCACHE/$k/pkg"
  mv "$KCACHE/$k/vmlinux.tmp" "$KCACHE/$k/vmlinux"
done
