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
: >"$OUT/queue-rows.txt"
status=0
for k in "${ks[@]}"; do
  kdir=$REPO/.cache/kernels/$k
  mkdir -p "$OUT/$k"
  "$HERE/build-initramfs.sh" "$kdir" "$OUT/bin" "$OUT/$k/initramfs.cpio.gz" >/dev/null
  t0=$SECONDS
  rc=0
  "$HERE/run-vm.sh" "$kdir" "$OUT/$k/initramfs.cpio.gz" "$OUT/$k/serial.log" || rc=$?
  grep '^NATRA-CHECK ' "$OUT/$k/serial.log" >>"$OUT/results.txt" || true
  grep '^NATRA-ROW ' "$OUT/$k/serial.log" >>"$OUT/queue-rows.txt" || true
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
# The figures per kernel, one row each (cap-relative rates; "/" pairs
# EDT on/off or unloaded/loaded).
echo
awk '{ k = $2; sub("kernel=", "", k); n = $3; sub("name=", "", n)
       if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
       if ($4 == "result=pass") pass[k]++; else fail[k]++
       for (i = 5; i <= NF; i++) { split($i, kv, "="); v[k, n, kv[1]] = kv[2] } }
     function r(x) { return x == "" || cap == "" ? "-" : sprintf("%.3f", x / cap) }
     END {
       printf "%-6s %-15s %-16s %-7s %-7s %-7s %-8s %-9s %-17s %-7s %s\n", "kernel", "auto, EDT", "auto, no EDT",
         "EDT", "egr/cap", "no-EDT", "retrans", "drops e/o", "mice p99 ms u/l", "ing/cap", "checks"
       for (j = 1; j <= nk; j++) { k = order[j]; cap = v[k, "egress_edt_rate", "cap"]
         printf "%-6s %-15s %-16s %-7s %-7s %-7s %-8s %-9s %-17s %-7s %d pass, %d fail\n", k,
           v[k, "attach_auto_edt", "mode"], v[k, "attach_auto_noedt", "mode"],
           (v[k, "edt_auto_on", "edt"] == 1 ? "on" : "OFF") "/" (v[k, "edt_off", "edt"] == 0 ? "off" : "ON"),
           r(v[k, "egress_edt_rate", "wire"]), r(v[k, "egress_noedt_rate", "wire"]),
           v[k, "retrans_edt_lt_noedt", "edt"] "/" v[k, "retrans_edt_lt_noedt", "off"],
           v[k, "egress_edt_drops", "edt"] "/" v[k, "egress_edt_drops", "off"],
           v[k, "mice_p99_edt", "unloaded"] "/" v[k, "mice_p99_edt", "loaded"],
           r(v[k, "ingress_rate", "wire"]), pass[k], fail[k] } }' "$OUT/results.txt"
# Queues both ways (guest/test.sh, section 5): natra beside upstream, per
# kernel and direction. mm: many mice (closed-loop clients): p99/p99.9 ms
# of the steady state and p99 of all (the gate: both), p99 of the first
# wave (the clients' synchronised start), TCP retransmissions/timeouts of
# the replies' sender, drops by natra (in the first second) and by the
# qdiscs, max 1 s over the cap; em/eu: light mice's p99 ms under an
# elephant / unloaded; wire: the elephant run's steady rate over the cap.
# A direction whose many-mice gate missed in its first run was measured
# again, up to 3 runs (natra and upstream both, many mice only): every
# run is listed, the last (no elephant figures) decided.
if [ -s "$OUT/queue-rows.txt" ]; then
  echo
  awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
         f = "%-6s %-8s %-7s %-15s %-7s %-8s %-5s %-8s %-13s %-7s %-9s %-9s %-6s %s\n"
         if (!h++) printf f, "kernel", "limiter", "dir", "steady p99/.9", "all", "1st wave", "n",
           "rtx/tmo", "drops n(1s)/q", "mm max", "em p99", "eu p99", "wire", "em max"
         printf f, v["kernel"], v["lim"], v["dir"], v["mm_steady_p99"] "/" v["mm_steady_p999"], v["mm_p99"],
           v["mm_first_p99"], v["mm_n"], v["mm_retrans"] "/" v["mm_timeouts"],
           v["mm_natra_drops"] "(" v["mm_wave_drops"] ")/" v["mm_qdisc_drops"], v["mm_max1s"], v["em_p99"],
           v["eu_p99"], v["em_wire"], v["em_max1s"] }' \
    "$OUT/queue-rows.txt"
fi
if grep -q 'result=fail' "$OUT/results.txt"; then status=1; fi
echo "kernel-matrix: $( [ $status = 0 ] && echo PASSED || echo FAILED ) ($(grep -c result=pass "$OUT/results.txt" || true) passed, $(grep -c result=fail "$OUT/results.txt" || true) failed; $OUT/results.txt)"
exit $status
