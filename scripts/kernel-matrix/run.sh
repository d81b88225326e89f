#!/usr/bin/env bash
# run.sh [KERNEL...]: natra's kernel matrix (`make test-kernels`). For each
# kernel (default: 6.1 6.12, or $KERNELS) boots Debian's own kernel under
# qemu with an initramfs carrying natra's release binary, the libcni driver,
# ptp/host-local, iperf3 and guest/test.sh; collects the guest's
# NATRA-CHECK lines into target/kernel-matrix/results.txt, prints them as a
# table and fails if any check failed or a guest did not finish.
# Logs: target/kernel-matrix/<kernel>/serial.log (the whole console).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$REPO/target/kernel-matrix
if (($#)); then ks=("$@"); else read -ra ks <<<"${KERNELS:-6.1 6.12}"; fi
cd "$REPO"

"$HERE/install-host-deps.sh"
"$HERE/fetch-kernels.sh" "${ks[@]}"

# The guest's binaries: natra (release, as shipped), cnitool (natra's libcni
# driver, as in the host tests) and miceprobe; the Go ones are static.
mkdir -p "$OUT/bin"
cargo build --release --quiet
cp target/release/natra "$OUT/bin/natra"
export GOCACHE=$REPO/target/kernel-matrix/gocache
tests/cnitool/build.sh "$OUT/bin/cnitool"
GO111MODULE=off GOFLAGS= CGO_ENABLED=0 go build -o "$OUT/bin/miceprobe" tests/miceprobe/main.go

: >"$OUT/results.txt"
status=0
for k in "${ks[@]}"; do
  kdir=$REPO/.cache/kernels/$k
  mkdir -p "$OUT/$k"
  "$HERE/build-initramfs.sh" "$kdir" "$OUT/bin" "$OUT/$k/initramfs.cpio.gz" >/dev/null
  t0=$SECONDS
  rc=0
  "$HERE/run-vm.sh" "$kdir" "$OUT/$k/initramfs.cpio.gz" "$OUT/$k/serial.log" || rc=$?
  grep '^NATRA-CHECK ' "$OUT/$k/serial.log" >>"$OUT/results.txt" || true
  n=$(grep -c "^NATRA-CHECK kernel=$k " "$OUT/results.txt" || true)
  echo "kernel-matrix: $k ($(cat "$kdir/kver")): guest exit $rc, $n checks, $((SECONDS - t0)) s"
  if [ "$rc" != 0 ] || [ "$n" = 0 ]; then
    status=1
    # A failure's context: natra's log lines and the checks' own output.
    grep -E '^(--- |    \| |NATRA-CHECK .*result=fail)|natra|panic|BUG' "$OUT/$k/serial.log" | tail -40 >&2 || true
  fi
done

# The table: one row per check and kernel, the figures beside the verdict.
echo
awk '{ k = $2; sub("kernel=", "", k); n = $3; sub("name=", "", n); r = $4; sub("result=", "", r);
       v = ""; for (i = 5; i <= NF; i++) v = v " " $i
       printf "%-6s %-26s %-5s%s\n", k, n, (r == "pass" ? "pass" : "FAIL"), v }' "$OUT/results.txt"
if grep -q 'result=fail' "$OUT/results.txt"; then status=1; fi
echo "kernel-matrix: $( [ $status = 0 ] && echo PASSED || echo FAILED ) ($(grep -c result=pass "$OUT/results.txt" || true) passed, $(grep -c result=fail "$OUT/results.txt" || true) failed; $OUT/results.txt)"
exit $status
