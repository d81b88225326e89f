#!/bin/sh
# natra's checks inside one kernel of the matrix (busybox ash, as root, in a
# qemu guest with no NIC). Pods through libcni (cnitool; ptp + host-local,
# then natra with the bandwidth capability), as a runtime does: "pod"
# limited to CAP both ways, "srv" unlimited, and "bg", limited like "pod",
# as the mice check's baseline. Every check prints one
#   NATRA-CHECK kernel=K name=N result=pass|fail key=value ...
# line (run.sh collects them); the script exits 1 if any check failed.
# Each check asserts what the kernel shows: qdiscs and filters (tc), tcx
# links (bpftool), natra's counters and records (natra inspect, which reads
# the pinned maps), what natra's CNI verbs returned, and rates and
# completion times measured by the receivers (iperf3, miceprobe).
set -eu -o pipefail
# Debian's busybox sh runs its own tiny ip/tc applets even when /usr/sbin
# comes first in PATH; functions win over applets.
ip() { /usr/sbin/ip "$@"; }
tc() { /usr/sbin/tc "$@"; }

K=$(uname -r | cut -d. -f1-2)
KMAJ=${K%%.*} KMIN=${K#*.}
HAS_TCX=0 # tcx came with 6.6; the expectation is the kernel's, not natra's
if [ "$KMAJ" -gt 6 ] || { [ "$KMAJ" -eq 6 ] && [ "$KMIN" -ge 6 ]; }; then HAS_TCX=1; fi
CAP=20000000                 # bit/s, both directions of "pod"
BW="{\"ingressRate\":$CAP,\"ingressBurst\":4294967295,\"egressRate\":$CAP,\"egressBurst\":4294967295}"
MICE_N=${MICE_N:-500} MICE_MS=${MICE_MS:-20} # 500 mice (p99: the 5th worst), one every 20 ms
export NATRA_PIN_ROOT=/sys/fs/bpf/natra NATRA_LOG=${NATRA_LOG:-info}
FAILS=0

# check NAME AWK_CONDITION [key=value ...]: the condition is evaluated by
# awk over the key=value pairs (numbers or words without spaces).
check() {
  _name=$1 _cond=$2
  shift 2
  _args=
  for _kv in "$@"; do _args="$_args -v $_kv"; done
  # shellcheck disable=SC2086 # the -v pairs are meant to split
  if awk $_args "BEGIN { exit !($_cond) }" </dev/null; then _r=pass; else
    _r=fail
    FAILS=$((FAILS + 1))
  fi
  echo "NATRA-CHECK kernel=$K name=$_name result=$_r $*"
  note "($_name)"
}
note() { echo "--- [$(now)s] $*"; }
now() { cut -d' ' -f1 /proc/uptime; }

# --- the network: one conflist for both Pods; natra's extra fields vary.
mkdir -p /tmp/ipam /tmp/cni-cache
conflist() { # NATRA_EXTRA_JSON (e.g. ,"edtPacing":"off")
  cat >/tmp/net.conflist <<EOF
{"cniVersion":"1.0.0","name":"kmatrix","plugins":[
 {"type":"ptp","ipMasq":false,"ipam":{"type":"host-local","subnet":"10.77.0.0/24","dataDir":"/tmp/ipam"}},
 {"type":"natra","capabilities":{"bandwidth":true}$1}]}
EOF
}
# natra alone, under the same network name (natra keys its pins by it) but
# its own libcni cache dir: a DEL through libcni that leaves ptp's veth in
# place, so that what natra left on it (or did not) can be read back before
# ptp removes it.
cat >/tmp/natra-only.conflist <<EOF
{"cniVersion":"1.0.0","name":"kmatrix","plugins":[{"type":"natra","capabilities":{"bandwidth":true}}]}
EOF
mkdir -p /tmp/cni-cache-natra
cni() { # VERB NETNS ID [CONF] [BANDWIDTH]
  _cache=/tmp/cni-cache
  [ "${4:-}" = /tmp/natra-only.conflist ] && _cache=/tmp/cni-cache-natra
  cnitool "$1" --conf "${4:-/tmp/net.conflist}" --netns "/run/netns/$2" --id "$3" \
    --ifname eth0 --cni-path /opt/cni/bin --cache-dir "$_cache" ${5:+--bandwidth "$5"}
}
ip netns add srv
ip netns add pod
ip netns add bg # a second limited Pod: the mice check's unloaded baseline
conflist ''
cni add srv srv >/tmp/srv.json
SRV_IP=$(jq -r '.ips[0].address | split("/")[0]' /tmp/srv.json)
note "srv Pod at $SRV_IP (no limits)"

# peer_of NS: the host veth whose peer is NS's eth0 (empty if there is
# none), read from the kernel, not from a CNI result.
peer_of() {
  _p=$(ip -n "$1" -j link show eth0 2>/dev/null | jq '.[0].link_index' || echo 0)
  ip -j link show | jq -r --argjson i "${_p:-0}" '.[] | select(.ifindex == $i) | .ifname' || true
}
# add ID NATRA_EXTRA_JSON: ADD "pod" limited to CAP both ways; sets POD_IP,
# HV (host veth). Returns cnitool's status; the result/error is in /tmp/add.json.
add() {
  conflist "$2"
  _rc=0
  cni add pod "$1" /tmp/net.conflist "$BW" >/tmp/add.json 2>/tmp/add.err || _rc=1
  # The host veth is the peer of the Pod's eth0 (ptp made it even when
  # natra's ADD then failed); read from the kernel, not from the result.
  HV=$(peer_of pod)
  if [ "$_rc" != 0 ]; then
    note "ADD $1 failed: $(cat /tmp/add.json) $(tail -3 /tmp/add.err)"
    return 1
  fi
  POD_IP=$(jq -r '.ips[0].address | split("/")[0]' /tmp/add.json)
}
# natra inspect's view of attachment ID: prints "MODE EDT DROPS_EGRESS"
# (mode as attachMode names it, EDT 0/1 from the record's list of flags).
record() {
  natra inspect --json | jq -r --arg id "$1" '
    .[] | select(.containerId == $id) |
    [.attachment.mode,
     (if any(.attachment.flags[]?; . == "edt") then 1 else 0 end),
     .directions.pod_egress.counters.dropped_packets] | map(tostring) | join(" ")'
}
prog_id() { # ID DIRECTION
  natra inspect --json | jq -r --arg id "$1" --arg d "$2" '.[] | select(.containerId == $id) | .directions[$d].progId'
}
# pod's eth0 has natra's fq (handle 4e54:) as its root qdisc?
fq_on_pod() { ip netns exec pod tc qdisc show dev eth0 | grep -q '^qdisc fq 4e54: root'; }
# the options of natra's fq on the pod's eth0, as tc prints them
fq_opts() { ip netns exec pod tc qdisc show dev eth0 | sed -n 's/^qdisc fq 4e54: root refcnt [0-9]* //p'; }
# one option's value (its leading number) from fq_opts' line
fq_opt() { echo "$1" | sed -n "s/.* $2 \([0-9]*\).*/\1/p"; }

# hooks MODE ID: both programs sit where MODE puts them (docs/cni.md), as the
# kernel lists them: tcx links via bpftool net, clsact filters via tc.
hooks() {
  _in=$(prog_id "$2" pod_ingress) _eg=$(prog_id "$2" pod_egress)
  case $1 in
    tcx-hostside) bpftool net show dev "$HV" >/tmp/hooks ;;
    tcx-podside) ip netns exec pod bpftool net show dev eth0 >/tmp/hooks ;;
    tcx-split) { bpftool net show dev "$HV"; ip netns exec pod bpftool net show dev eth0; } >/tmp/hooks ;;
    clsact-hostside) { echo "[egress]"; tc filter show dev "$HV" egress; echo "[ingress]"; tc filter show dev "$HV" ingress; } >/tmp/hooks ;;
    clsact-podside) { echo "[ingress]"; ip netns exec pod tc filter show dev eth0 ingress; echo "[egress]"; ip netns exec pod tc filter show dev eth0 egress; } >/tmp/hooks ;;
    *) return 1 ;;
  esac
  sed 's/^/    | /' /tmp/hooks
  case $1 in
    tcx-hostside) grep -qE "tcx/egress .*prog_id $_in( |\$)" /tmp/hooks && grep -qE "tcx/ingress .*prog_id $_eg( |\$)" /tmp/hooks ;;
    tcx-podside) grep -qE "tcx/ingress .*prog_id $_in( |\$)" /tmp/hooks && grep -qE "tcx/egress .*prog_id $_eg( |\$)" /tmp/hooks ;;
    # pod ingress at the host veth's egress, pod egress at eth0's egress
    tcx-split) grep -qE "tcx/egress .*prog_id $_in( |\$)" /tmp/hooks && grep -qE "tcx/egress .*prog_id $_eg( |\$)" /tmp/hooks ;;
    clsact-hostside)
      awk -v a="$_in" -v b="$_eg" '/^\[/ { h = $0 } / handle 0x4e54 / && $0 ~ (" id " (h == "[egress]" ? a : b) " ") { n++ } END { exit n != 2 }' /tmp/hooks ;;
    clsact-podside)
      awk -v a="$_in" -v b="$_eg" '/^\[/ { h = $0 } / handle 0x4e54 / && $0 ~ (" id " (h == "[ingress]" ? a : b) " ") { n++ } END { exit n != 2 }' /tmp/hooks ;;
  esac
}

# iperf_server PORT: a one-off iperf3 server in srv, listening on return.
iperf_server() {
  ip netns exec srv iperf3 -s -1 -p "$1" >/dev/null 2>&1 &
  IPERF_SRV=$!
  for _ in $(seq 50); do
    ip netns exec srv netstat -ltn 2>/dev/null | grep -q ":$1 " && return 0
    sleep 0.1
  done
  note "iperf3 server on port $1 never listened"
}

# rate DIR WARM WINDOW PORT: one iperf3 TCP run, "pod" -> "srv" (egress) or
# "srv" -> "pod" (ingress, -R), measured over WINDOW seconds after WARM
# omitted ones (slow start and the bucket's initial burst excluded). Prints
# "WIRE_BPS GOODPUT_BPS RETRANSMITS". natra charges frame bytes with every
# GSO segment's headers (bpf/lib/parse.h), so the receiver's goodput is
# scaled to frames: MTU 1500, TCP timestamps -> 1448 payload bytes per 1514
# byte frame. (The veths' rx_bytes cannot serve: they count a GSO packet's
# headers once, and count ingress before natra's verdict at tc.)
rate() {
  _r=
  [ "$1" = ingress ] && _r=-R
  iperf_server "$4"
  ip netns exec pod iperf3 -J -c "$SRV_IP" -p "$4" -O "$2" -t "$3" $_r >/tmp/iperf.json 2>&1 || true
  wait "$IPERF_SRV" || true
  jq -r '[(.end.sum_received.bits_per_second // 0) * 1514 / 1448, .end.sum_received.bits_per_second // 0,
          .end.sum_sent.retransmits // -1] | map(floor | tostring) | join(" ")' /tmp/iperf.json 2>/dev/null ||
    echo "0 0 -1"
}

# pod egress counters of attachment "edt": "MOUSE HEAVY PACED DROPPED" packets.
egress_classes() {
  natra inspect --json | jq -r '.[] | select(.containerId == "edt") | .directions.pod_egress.counters |
    [.passed_mouse_packets, .passed_heavy_packets, .paced_packets, .dropped_packets] | map(tostring) | join(" ")' ||
    echo "0 0 0 0"
}

# del_clean ID: DEL through libcni, natra alone first (veth still there),
# then the whole chain; asserts nothing of natra is left in the kernel.
del_clean() {
  _ok=1
  cni del pod "$1" /tmp/natra-only.conflist >/dev/null || _ok=0
  # Unpinned links and programs are freed after an RCU grace period: poll.
  # The node's shared dataplane (~dataplane: its maps and the two programs,
  # with BTF) stays; a slot it still holds, or a stub (a pod_* program
  # without BTF), is the Pod's and counts.
  for _ in $(seq 30); do
    _pins=$(
      ls -A "$NATRA_PIN_ROOT" 2>/dev/null | grep -v '^~dataplane$' || true
      ls -A "$NATRA_PIN_ROOT"/~dataplane/*/slots 2>/dev/null || true
    )
    _pins=$(printf '%s' "$_pins" | grep -c . || true)
    _links=$(bpftool link show | grep -c tcx || true)
    _progs=$(bpftool -j prog show | jq '[.[] | select(.name // "" | test("^pod_(in|e)gress")) | select(.btf_id == null)] | length')
    [ "$_pins$_links$_progs" = 000 ] && break
    sleep 0.1
  done
  _qd=$( (ip netns exec pod tc qdisc show dev eth0 || true; tc qdisc show dev "$HV" || true) | grep -cE 'clsact|4e54:' || true)
  # an operator's fq (handle 77:, section 4b) that natra's DEL left alone
  KEPT_FQ=$( (ip netns exec pod tc qdisc show dev eth0 || true; tc qdisc show dev "$HV" || true) | grep -c '^qdisc fq 77: root' || true)
  _filt=$( (for h in ingress egress; do
    ip netns exec pod tc filter show dev eth0 $h 2>/dev/null || true
    tc filter show dev "$HV" $h 2>/dev/null || true
  done) | wc -l)
  cni del pod "$1" >/dev/null || _ok=0
  _veth=0
  ip link show "$HV" >/dev/null 2>&1 && _veth=1
  check "del_clean_$2" 'ok == 1 && pins == 0 && links == 0 && progs == 0 && qdiscs == 0 && filters == 0 && veth == 0' \
    ok=$_ok pins="$_pins" links="$_links" progs="$_progs" qdiscs="$_qd" filters="$_filt" veth=$_veth
}

t_start=$(now)
note "kernel $(uname -r), $(nproc) cpus; tcx expected: $HAS_TCX; cap $CAP bit/s"
# auto with fq on both sides: tcx-split (EDT both ways) where tcx exists;
# without tcx clsact-podside (EDT out of the Pod; docs/cni.md).
if [ "$HAS_TCX" = 1 ]; then POD_MODE=tcx-split HOST_MODE=tcx-hostside; else
  POD_MODE=clsact-podside HOST_MODE=clsact-hostside
fi

# === 1. edtPacing auto, attachMode auto: fq on eth0 (and on the host veth
# for pod ingress with tcx-split), EDT on.
if add edt ',"edtPacing":"auto"'; then
  ck=0
  cni check pod edt /tmp/net.conflist "$BW" >/tmp/check.json 2>&1 || ck=1
  set -- $(record edt) - - -
  mode=$1 edt=$2
  fq=0
  fq_on_pod && fq=1
  ip netns exec pod tc qdisc show dev eth0 | sed 's/^/    | /'
  opts_add=$(fq_opts)
  check edt_auto_on 'check == 0 && edt == 1 && fq == 1' check=$ck edt="$edt" fq=$fq
  check attach_auto_edt "mode == \"$POD_MODE\"" mode="$mode"
  h=0
  hooks "$mode" edt || h=1
  check hooks_auto_edt 'h == 0' h=$h mode="$mode"

  set -- $(rate egress 2 4 5201)
  e_wire=$1 e_gp=$2 e_rt=$3
  e_drops=$(record edt | cut -d' ' -f3 || true)
  check egress_edt_rate 'wire >= 0.95 * cap && wire <= 1.05 * cap' wire="$e_wire" cap=$CAP goodput="$e_gp"

  # Mice: a fresh TCP connection each, 16 KB reply from the limited Pod
  # (its egress), client in srv. Two identical limited Pods are measured at
  # the same time: "pod" under its own elephant (iperf3 to srv filling its
  # cap) and "bg" without one (the unloaded baseline), their mice
  # alternating on one schedule. Under TCG on shared cores the tail of a
  # mouse's completion time swings with the host's load (p99 20 ms-3.5 s
  # between runs of one kernel); interleaved, both see the same stalls, and
  # the ratio is what natra's queueing adds. A run that misses a bound is
  # measured once more (a stall can still land on one Pod's mice only); mice
  # queued behind the elephant miss both runs by far (see docs).
  cni add bg bg /tmp/net.conflist "$BW" >/tmp/bg.json
  BG_IP=$(jq -r '.ips[0].address | split("/")[0]' /tmp/bg.json)
  ip netns exec pod miceprobe serve "$POD_IP:7070" &
  mice_pod=$!
  ip netns exec bg miceprobe serve "$BG_IP:7070" &
  mice_bg=$!
  pct() { sed -n "s/.* $1_ms=\([0-9.]*\) .*/\1/p" "$2"; }
  mice_ok() { # both bounds met by the last mice_run?
    awk -v u99="$(pct p99 /tmp/mice-bg.txt)" -v l99="$(pct p99 /tmp/mice-pod.txt)" \
      -v u50="$(pct p50 /tmp/mice-bg.txt)" -v l50="$(pct p50 /tmp/mice-pod.txt)" \
      'BEGIN { exit !(u99 > 0 && l99 > 0 && l99 <= 1.5 * u99 && u50 > 0 && l50 > 0 && l50 <= 1.5 * u50) }'
  }
  mice_run() { # PORT: one elephant + interleaved mice, results in /tmp/mice-{pod,bg}.txt
    iperf_server "$1"
    ip netns exec pod iperf3 -J -c "$SRV_IP" -p "$1" -t $((MICE_N * MICE_MS / 1000 + 5)) >/tmp/eleph.json 2>&1 &
    el=$!
    sleep 3 # past slow start and the initial burst: the elephant fills the cap
    c0=$(egress_classes)
    ip netns exec srv miceprobe run "$POD_IP:7070,$BG_IP:7070" "$MICE_N" "$MICE_MS" >/tmp/mice.txt || true
    grep -F "addr=$POD_IP:" /tmp/mice.txt >/tmp/mice-pod.txt || true
    grep -F "addr=$BG_IP:" /tmp/mice.txt >/tmp/mice-bg.txt || true
    c1=$(egress_classes)
    wait $el || true
    wait "$IPERF_SRV" || true
    note "mice under pod's elephant: $(cat /tmp/mice-pod.txt)"
    note "mice of bg (no elephant): $(cat /tmp/mice-bg.txt)"
    note "pod egress packets meanwhile: $(echo "$c0 $c1" | awk '{ printf "mouse %d heavy %d paced %d dropped %d", $5 - $1, $6 - $2, $7 - $3, $8 - $4 }')"
  }
  attempt=1
  mice_run 5202
  if ! mice_ok; then
    note "mice bounds missed in run 1: measuring once more"
    attempt=2
    mice_run 5205
  fi
  kill $mice_pod $mice_bg
  wait $mice_pod $mice_bg 2>/dev/null || true
  cni del bg bg >/dev/null
  check mice_p99_edt 'unloaded > 0 && loaded > 0 && loaded <= 1.5 * unloaded' \
    unloaded="$(pct p99 /tmp/mice-bg.txt)" loaded="$(pct p99 /tmp/mice-pod.txt)" \
    elephant="$(jq '.end.sum_received.bits_per_second // 0 | floor' /tmp/eleph.json)" attempt=$attempt
  # The median is far steadier under TCG than the tail, and a mouse queued
  # behind the elephant's departure times (up to the 250 ms EDT horizon)
  # would move it as much: the same bound on it.
  check mice_p50_edt 'unloaded > 0 && loaded > 0 && loaded <= 1.5 * unloaded' \
    unloaded="$(pct p50 /tmp/mice-bg.txt)" loaded="$(pct p50 /tmp/mice-pod.txt)" attempt=$attempt

  set -- $(rate ingress 2 4 5203)
  check ingress_rate 'wire >= 0.90 * cap && wire <= 1.10 * cap' wire="$1" cap=$CAP goodput="$2"
  # A Pod with NET_ADMIN replaces natra's fq: its pacing goes, its limit
  # stays (every stamped packet was charged to the bucket; docs/security.md).
  ip netns exec pod tc qdisc replace dev eth0 root pfifo
  set -- $(rate egress 1 3 5206)
  check edt_fq_replaced 'wire > 0 && wire <= 1.10 * cap' wire="$1" cap=$CAP goodput="$2"
  # The node agent repairs it: natra's fq is the Pod's root again.
  ip link set lo up
  mkdir -p /tmp/agent-net.d /tmp/agent-bin
  cp /tmp/net.conflist /tmp/agent-net.d/10-main.conflist
  natra agent --cni-conf-dir /tmp/agent-net.d --cni-bin-dir /tmp/agent-bin \
    --listen 127.0.0.1:9471 --reconcile-secs 1 >/tmp/agent.log 2>&1 &
  agent=$!
  t0=$(now)
  fixed=0
  for _ in $(seq 100); do
    if fq_on_pod; then fixed=1; break; fi
    sleep 0.1
  done
  took=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
  kill $agent 2>/dev/null || true
  wait $agent 2>/dev/null || true
  grep -E 'repaired|ERROR' /tmp/agent.log | sed 's/^/    | /' || true
  # ... sized as ADD sized it (not fq's defaults: flow_limit 100, pacing on)
  opts_rep=$(fq_opts)
  note "fq at ADD: $opts_add"
  note "fq repaired: $opts_rep"
  same=0
  [ -n "$opts_add" ] && [ "$opts_rep" = "$opts_add" ] && same=1
  check edt_fq_repaired 'fixed == 1 && same == 1' fixed=$fixed same=$same seconds="$took" \
    flow_limit="$(fq_opt "$opts_rep" flow_limit)" nopacing="$(echo "$opts_rep" | grep -c nopacing)"
  # A live change of the rate (natra set) resizes natra's fq in place: the
  # queue it must hold scales with the rate; its counters carry over.
  ip netns exec pod ping -c 2 -q "$SRV_IP" >/dev/null 2>&1 || true # traffic through the repaired fq
  sent0=$(ip netns exec pod tc -s qdisc show dev eth0 | sed -n 's/^ Sent \([0-9]*\) bytes.*/\1/p' | head -1)
  natra set --container-id edt --egress $((2 * CAP)) >/tmp/set.log 2>&1 || true
  opts_2x=$(fq_opts)
  sent1=$(ip netns exec pod tc -s qdisc show dev eth0 | sed -n 's/^ Sent \([0-9]*\) bytes.*/\1/p' | head -1)
  natra set --container-id edt --egress $CAP >>/tmp/set.log 2>&1 || true
  opts_1x=$(fq_opts)
  sed 's/^/    | /' /tmp/set.log
  check edt_fq_resized 'f1 > 0 && f2 >= 1.9 * f1 && f2 <= 2.1 * f1 && back == f1 && kept >= 1' \
    f1="$(fq_opt "$opts_add" flow_limit)" f2="$(fq_opt "$opts_2x" flow_limit)" \
    back="$(fq_opt "$opts_1x" flow_limit)" kept="$([ "${sent1:-0}" -ge "${sent0:-1}" ] && [ "${sent0:-0}" -gt 0 ] && echo 1 || echo 0)"
  del_clean edt edt
else
  check edt_auto_on 0 add=failed
fi

# === 2. edtPacing off, attachMode auto: host side, no qdisc touched.
if add noedt ',"edtPacing":"off"'; then
  set -- $(record noedt) - - -
  mode=$1 edt=$2
  fq=0
  fq_on_pod && fq=1
  check edt_off 'edt == 0 && fq == 0' edt="$edt" fq=$fq
  check attach_auto_noedt "mode == \"$HOST_MODE\"" mode="$mode"
  set -- $(rate egress 2 4 5204)
  o_wire=$1 o_rt=$3
  drops=$(record noedt | cut -d' ' -f3 || true)
  check egress_noedt_rate 'wire >= 0.5 * cap && wire <= 1.10 * cap' wire="$o_wire" cap=$CAP goodput="$2" drops="$drops"
  check retrans_edt_lt_noedt 'edt >= 0 && edt < off' edt="${e_rt:--1}" off="$o_rt"
  # Policing drops about a hundred (GSO) packets of this run; paced by EDT
  # fewer: slow start still outruns the 20 ms heavy horizon for a moment
  # (10-37 seen on 6.12 under TCG; it was 0-5 with the old 250 ms horizon,
  # shortened so that a second stays within ~1.04x the cap: docs/dataplane.md).
  check egress_edt_drops 'edt >= 0 && off > 0 && edt < off' edt="${e_drops:--1}" off="$drops"
  del_clean noedt noedt
else
  check edt_off 0 add=failed
fi

# === 3. every explicit attachMode: works where the kernel has the hook,
# refused with code 100 naming the mode where it has not (tcx before 6.6).
for m in tcx-hostside clsact-hostside tcx-podside clsact-podside; do
  id=m-$m
  case $m in tcx-*) supported=$HAS_TCX ;; *) supported=1 ;; esac
  if [ "$supported" = 0 ]; then
    rc=0
    add "$id" ",\"attachMode\":\"$m\"" || rc=1
    code=$(jq '.code // 0' /tmp/add.json)
    named=0
    jq -r .msg /tmp/add.json | grep -q "$m" && named=1
    check "mode_$m" 'rc == 1 && code == 100 && named == 1' supported=0 rc=$rc code="$code" named=$named
    del_clean "$id" "$m" # the refused ADD left nothing either
    continue
  fi
  if ! add "$id" ",\"attachMode\":\"$m\""; then
    check "mode_$m" 0 supported=1 add=failed
    del_clean "$id" "$m"
    continue
  fi
  ck=0
  cni check pod "$id" /tmp/net.conflist "$BW" >/tmp/check.json 2>&1 || ck=1
  set -- $(record "$id") - - -
  got=$1 edt=$2
  h=0
  hooks "$m" "$id" || h=1
  set -- $(rate egress 1 2 5210)
  check "mode_$m" "check == 0 && mode == \"$m\" && hooks == 0 && wire >= 0.5 * cap && wire <= 1.10 * cap" \
    supported=1 check=$ck mode="$got" hooks=$h edt="$edt" wire="$1" cap=$CAP
  del_clean "$id" "$m"
done

# === 4. natra killed between installing fq and recording it: DEL still
# removes natra's fq (its handle 4e54: marks it natra's, record or none).
rc=0
export NATRA_KILL_AT=fq-installed
add killfq ',"edtPacing":"on"' || rc=1
unset NATRA_KILL_AT
fq=0
fq_on_pod && fq=1
check kill_fq_window 'rc == 1 && fq == 1' rc=$rc fq=$fq
del_clean killfq kill_fq

# === 4b. An fq already there (an operator's: handle 77:, made by the
# chained `fqpre` below between ptp and natra, on the Pod's eth0 and on the
# host veth) paces natra's stamps only if its horizon takes the longest of
# them (the 500 ms handshake horizon): fq drops a packet stamped beyond it, or
# sends it early. A 50 ms one is refused like a missing fq (EDT off, one
# log line why); a 10 s one is used. natra's DEL leaves both in place.
cat >/opt/cni/bin/fqpre <<'FQPRE'
#!/bin/sh
in=$(cat)
[ "$CNI_COMMAND" = ADD ] || exit 0
h=$(echo "$in" | jq -r .horizon)
ns=${CNI_NETNS##*/}
/usr/sbin/tc -n "$ns" qdisc add dev "$CNI_IFNAME" root handle 77: fq horizon "$h" >&2 || exit 1
p=$(/usr/sbin/ip -n "$ns" -j link show "$CNI_IFNAME" | jq '.[0].link_index')
hv=$(/usr/sbin/ip -j link show | jq -r --argjson i "$p" '.[] | select(.ifindex == $i) | .ifname')
/usr/sbin/tc qdisc add dev "$hv" root handle 77: fq horizon "$h" >&2 || exit 1
echo "$in" | jq .prevResult
FQPRE
chmod 0755 /opt/cni/bin/fqpre
for h in 50ms 10s; do
  id=hz-$h
  cat >/tmp/hz.conflist <<HZ
{"cniVersion":"1.0.0","name":"kmatrix","plugins":[
 {"type":"ptp","ipMasq":false,"ipam":{"type":"host-local","subnet":"10.77.0.0/24","dataDir":"/tmp/ipam"}},
 {"type":"fqpre","horizon":"$h"},
 {"type":"natra","capabilities":{"bandwidth":true}}]}
HZ
  rc=0
  cni add pod "$id" /tmp/hz.conflist "$BW" >/tmp/add.json 2>/tmp/add.err || rc=1
  HV=$(peer_of pod)
  set -- $(natra inspect --json | jq -r --arg id "$id" '.[] | select(.containerId == $id) |
    [.attachment.mode, (.attachment.flags | if length == 0 then "-" else join(",") end)] | join(" ")') - -
  mode=$1 flags=$2
  edt=0 owns=0
  case ",$flags," in *,edt,* | *,edt-ingress,*) edt=1 ;; esac
  case ",$flags," in *,owns-fq,* | *,owns-host-fq,*) owns=1 ;; esac
  said=$(grep -c 'EDT off.*has a horizon of 50 ms, shorter than the 500 ms' /tmp/add.err || true)
  theirs=$( (ip netns exec pod tc qdisc show dev eth0; tc qdisc show dev "$HV") | grep -c '^qdisc fq 77: root' || true)
  grep 'EDT o' /tmp/add.err | sed 's/^/    | /' || true
  [ "$rc" = 0 ] || note "ADD $id failed: $(cat /tmp/add.json) $(tail -3 /tmp/add.err)"
  if [ "$h" = 50ms ]; then
    check fq_horizon_short 'rc == 0 && edt == 0 && owns == 0 && said >= 1 && theirs == 2' \
      rc=$rc edt=$edt owns=$owns mode="$mode" flags="$flags" said="$said" theirs="$theirs"
  else
    check fq_horizon_long 'rc == 0 && edt == 1 && owns == 0 && said == 0 && theirs == 2' \
      rc=$rc edt=$edt owns=$owns said="$said" mode="$mode" flags="$flags" theirs="$theirs"
  fi
  del_clean "$id" "fq_horizon_$h"
  check "fq_horizon_${h}_kept" 'kept == 2' kept="$KEPT_FQ"
done

# === 5. Queues both ways (issue 16): natra beside the upstream bandwidth
# plugin (TBF; 500 ms burst: with containerd's 512 MiB it would not limit
# at all in a run this short), same guest, same run, both directions at
# CAP. natra paces pod egress in the Pod-side modes ("qe", attachMode auto:
# fq on eth0) and pod ingress in the host-side ones ("qi": fq on the host
# veth). Per Pod and direction: many mice (MM_CLIENTS closed-loop clients
# fetching 16 KB back to back: mice alone far over the cap) and an elephant
# plus light mice (their p99 under the elephant vs the same mice
# unloaded). The wire is the tx_bytes of the host veth delivering into the
# receiver (after every qdisc), scaled to frames (1514/1448), sampled every
# 0.5 s: the max over 1 s windows and the elephant's steady rate, over CAP.
# Many mice has two regimes, told apart by miceprobe: the first wave (mice
# started in the first 0.5 s; the clients start together and their
# replies, ~290 ms of the rate, bunch as the server runs: where they bunch
# past natra's burst + debt + mice horizon of 220 ms natra drops the tail,
# while upstream's 500 ms burst passes it) and the steady state after it.
# The gate is on all mice and on the steady state alike; the first wave's
# p99, natra's drops in the first second and each client's first mouse
# (start, connected, first and last byte) are printed beside it.
MM_CLIENTS=${MM_CLIENTS:-40} MM_SECS=${MM_SECS:-5} MM_MARGIN=${MM_MARGIN:-1.2}
UPBW="{\"ingressRate\":$CAP,\"ingressBurst\":$((CAP / 2)),\"egressRate\":$CAP,\"egressBurst\":$((CAP / 2))}"
cat >/tmp/up.conflist <<EOF
{"cniVersion":"1.0.0","name":"kmatrix","plugins":[
 {"type":"ptp","ipMasq":false,"ipam":{"type":"host-local","subnet":"10.77.0.0/24","dataDir":"/tmp/ipam"}},
 {"type":"bandwidth","capabilities":{"bandwidth":true}}]}
EOF
qpod() { # NS ID CONF BW: ADD, prints "IP HOST_VETH"
  ip netns add "$1"
  if ! cni add "$1" "$2" "$3" "$4" >"/tmp/q-$2.json" 2>"/tmp/q-$2.err"; then
    note "ADD $2: $(cat "/tmp/q-$2.json") $(tail -2 "/tmp/q-$2.err")" >&2
    return 1
  fi
  echo "$(jq -r '.ips[0].address | split("/")[0]' "/tmp/q-$2.json") $(peer_of "$1")"
}
sampler() { # DEV OUT: uptime and tx_bytes every 0.5 s until killed, read
  # with builtins (no fork between the two: the pair is exact under TCG)
  while :; do
    read -r _u _ </proc/uptime
    read -r _b <"/sys/class/net/$1/statistics/tx_bytes"
    echo "$_u $_b"
    sleep 0.5
  done >"$2"
}
wire() { # SAMPLES FROM TO: "MAX1S MEAN" over CAP between uptimes FROM and TO
  awk -v from="$2" -v to="$3" -v cap="$CAP" 'BEGIN { n = 0 } $1 >= from && $1 <= to { t[n] = $1; b[n] = $2; n++ }
    END { k = 8 * 1514 / 1448 / cap; m = 0
      for (i = 0; i < n; i++) for (j = i + 1; j < n; j++)
        if (t[j] - t[i] >= 0.999) { r = (b[j] - b[i]) / (t[j] - t[i]); if (r > m) m = r; break }
      s = n > 1 ? (b[n - 1] - b[0]) / (t[n - 1] - t[0]) : 0
      printf "%.3f %.3f\n", m * k, s * k }' "$1"
}
tcpstat() { # NS: "RETRANS TIMEOUTS" since the last call in NS
  NSTAT_HISTORY=/tmp/nstat-$1 ip netns exec "$1" nstat -z TcpRetransSegs TcpExtTCPTimeouts 2>/dev/null |
    awk '$1 == "TcpRetransSegs" { r = $2 } $1 == "TcpExtTCPTimeouts" { o = $2 } END { print r + 0, o + 0 }'
}
qdrops() { # NS: packets dropped by every qdisc of the host and of NS
  { tc -s qdisc show; ip netns exec "$1" tc -s qdisc show; } |
    sed -n 's/.*(dropped \([0-9]*\),.*/\1/p' | awk '{ s += $1 } END { print s + 0 }'
}
ndrops() { # ID DIRECTION: natra's dropped packets (0 for upstream)
  natra inspect --json | jq -r --arg id "$1" --arg d "$2" \
    '[.[] | select(.containerId == $id) | .directions[$d].counters.dropped_packets // 0] | add // 0'
}
pctl() { sed -n "s/.* $1_ms=\([0-9.]*\).*/\1/p" "$2"; }
# qscen LIM ID NS IP HV DIR: both scenarios for one Pod and direction;
# prints one NATRA-ROW line.
qscen() {
  _lim=$1 _id=$2 _ns=$3 _ip=$4 _hv=$5 _dir=$6
  if [ "$_dir" = egress ]; then # replies out of the Pod: served in it
    _snd=$_ns _rdev=$SRV_HV _sns=$_ns _saddr=$_ip _cns=srv _r=
  else # replies into the Pod: served in srv, fetched from the Pod
    _snd=srv _rdev=$_hv _sns=srv _saddr=$SRV_IP _cns=$_ns _r=-R
  fi
  _nd=pod_$_dir
  # /usr/sbin/ip itself (not the ip() function's subshell), so that $! is
  # what `kill` must reach
  /usr/sbin/ip netns exec "$_sns" miceprobe serve "$_saddr:7071" >/dev/null 2>&1 &
  _srvp=$!
  sleep 0.3
  # many mice
  tcpstat "$_snd" >/dev/null
  _n0=$(ndrops "$_id" "$_nd") _q0=$(qdrops "$_ns")
  sampler "$_rdev" "/tmp/s-$_id-$_dir" >/dev/null 2>&1 &
  _smp=$!
  _t0=$(now)
  # natra's drops by the end of the first second: the clients' synchronised
  # start (an incast) is over by then (see MM_WAVE above)
  (sleep 1; ndrops "$_id" "$_nd" >"/tmp/d1-$_id-$_dir") &
  _d1p=$!
  timeout $((MM_SECS + 30)) /usr/sbin/ip netns exec "$_cns" miceprobe clients "$_saddr:7071" "$MM_CLIENTS" "$MM_SECS" \
    >"/tmp/mm-$_id-$_dir" 2>"/tmp/mmw-$_id-$_dir" || true
  note "$_lim $_dir $(grep -h '^first wave' "/tmp/mmw-$_id-$_dir")" >&2
  _t1=$(now)
  sleep 0.6
  kill $_smp
  set -- $(tcpstat "$_snd")
  _mrt=$1 _mto=$2
  _nd1=$(($(ndrops "$_id" "$_nd") - _n0)) _qd1=$(($(qdrops "$_ns") - _q0))
  wait $_d1p || true
  _ndw=$(($(cat "/tmp/d1-$_id-$_dir") - _n0))
  set -- $(wire "/tmp/s-$_id-$_dir" "$_t0" "$_t1")
  _mmax=$1
  note "$_lim $_dir many mice: $(cat "/tmp/mm-$_id-$_dir"); retrans $_mrt timeouts $_mto natra drops $_nd1 ($_ndw in the first second) qdisc drops $_qd1 max1s $_mmax" >&2
  if [ "$_lim" = natra ]; then
    natra inspect --json | jq -c --arg id "$_id" --arg d "$_nd" \
      '.[] | select(.containerId == $id) | .directions[$d] | .counters + {cas_giveups: .bucket.cas_giveups}' |
      sed 's/^/    | counters: /' >&2
  fi
  _mmrow="mm_p99=$(pctl p99 "/tmp/mm-$_id-$_dir") mm_p999=$(pctl p999 "/tmp/mm-$_id-$_dir")"
  _mmrow="$_mmrow mm_n=$(sed -n 's/.* n=\([0-9]*\).*/\1/p' "/tmp/mm-$_id-$_dir")"
  _mmrow="$_mmrow mm_steady_p99=$(pctl steady_p99 "/tmp/mm-$_id-$_dir") mm_steady_p999=$(pctl steady_p999 "/tmp/mm-$_id-$_dir")"
  _mmrow="$_mmrow mm_first_p99=$(pctl first_p99 "/tmp/mm-$_id-$_dir") mm_first_max=$(pctl first_max "/tmp/mm-$_id-$_dir")"
  _mmrow="$_mmrow mm_retrans=$_mrt mm_timeouts=$_mto mm_natra_drops=$_nd1 mm_wave_drops=$_ndw mm_qdisc_drops=$_qd1 mm_max1s=$_mmax"
  # an elephant plus light mice, then the same mice unloaded; measured
  # again (up to 3 runs) if the loaded p99 misses 1.5x the unloaded one
  # or natra's wire misses the cap's +-2% or its max 1 s 1.05x (TCG
  # stalls land on one run's mice only: see the mice check above). Not
  # when QSCEN_MM_ONLY is set (a many-mice miss measured again: the try).
  if [ -n "${QSCEN_MM_ONLY:-}" ]; then
    kill $_srvp
    wait $_srvp 2>/dev/null || true
    echo "NATRA-ROW kernel=$K lim=$_lim dir=$_dir try=$QSCEN_MM_ONLY $_mmrow"
    return 0
  fi
  for _try in 1 2 3; do
    iperf_server $((5300 + _try)) >&2
    timeout 30 /usr/sbin/ip netns exec "$_ns" iperf3 -J -c "$SRV_IP" -p $((5300 + _try)) -O 2 -t 7 $_r \
      >"/tmp/el-$_id-$_dir.json" 2>/dev/null &
    _el=$!
    sampler "$_rdev" "/tmp/e-$_id-$_dir" >/dev/null 2>&1 &
    _smp=$!
    sleep 2
    _e0=$(now)
    tcpstat "$_snd" >/dev/null
    timeout 40 /usr/sbin/ip netns exec "$_cns" miceprobe run "$_saddr:7071" 100 30 >"/tmp/em-$_id-$_dir" 2>/dev/null || true
    set -- $(tcpstat "$_snd")
    _ert=$1 _eto=$2
    wait $_el || true
    _e1=$(now)
    kill $_smp
    kill "$IPERF_SRV" 2>/dev/null || true # a client that never connected
    wait "$IPERF_SRV" || true
    set -- $(wire "/tmp/e-$_id-$_dir" "$_e0" "$_e1")
    _emax=$1
    # the mean wire while the elephant surely runs (2 s to 6 s of its 7)
    set -- $(wire "/tmp/e-$_id-$_dir" "$_e0" "$(awk -v a="$_e0" 'BEGIN { print a + 4 }')")
    _ewire=$2
    timeout 40 /usr/sbin/ip netns exec "$_cns" miceprobe run "$_saddr:7071" 100 30 >"/tmp/eu-$_id-$_dir" 2>/dev/null || true
    awk -v l="$(pctl p99 "/tmp/em-$_id-$_dir")" -v u="$(pctl p99 "/tmp/eu-$_id-$_dir")" \
      -v w="$_ewire" -v m="$_emax" -v up="$([ "$_lim" = upstream ] && echo 1 || echo 0)" \
      'BEGIN { exit !(l > 0 && u > 0 && l <= 1.5 * u && (up || (w >= 0.98 && w <= 1.02 && m <= 1.05))) }' && break
    note "$_lim $_dir elephant+mice: loaded $(pctl p99 "/tmp/em-$_id-$_dir") ms vs unloaded $(pctl p99 "/tmp/eu-$_id-$_dir") ms, wire $_ewire max1s $_emax in run $_try" >&2
  done
  kill $_srvp
  wait $_srvp 2>/dev/null || true
  note "$_lim $_dir elephant+mice: loaded $(cat "/tmp/em-$_id-$_dir"); unloaded $(cat "/tmp/eu-$_id-$_dir"); wire $_ewire max1s $_emax" >&2
  echo "NATRA-ROW kernel=$K lim=$_lim dir=$_dir $_mmrow" \
    "em_p99=$(pctl p99 "/tmp/em-$_id-$_dir") eu_p99=$(pctl p99 "/tmp/eu-$_id-$_dir")" \
    "em_retrans=$_ert em_timeouts=$_eto em_wire=$_ewire em_max1s=$_emax em_try=$_try"
}
SRV_HV=$(peer_of srv)
qrows=/tmp/qrows
: >$qrows
qok=0
if q=$(qpod qe qe /tmp/net.conflist "$BW"); then
  set -- $q
  QE_IP=$1 QE_HV=$2
  conflist ",\"attachMode\":\"$HOST_MODE\""
  if q=$(qpod qi qi /tmp/net.conflist "$BW"); then
    set -- $q
    QI_IP=$1 QI_HV=$2
    if q=$(qpod up up /tmp/up.conflist "$UPBW"); then
      set -- $q
      UP_IP=$1 UP_HV=$2
      qok=1
    fi
  fi
fi
if [ $qok = 1 ]; then
  tc qdisc show dev "$QI_HV" | sed 's/^/    | qi host veth: /'
  ip netns exec qe tc qdisc show dev eth0 | sed 's/^/    | qe eth0: /'
  natra inspect --json | jq -c '.[] | select(.containerId == "qe" or .containerId == "qi") |
    [.containerId, .attachment.mode, .attachment.flags]' | sed 's/^/    | /'
  qscen natra qe qe "$QE_IP" "$QE_HV" egress >>$qrows
  qscen upstream up up "$UP_IP" "$UP_HV" egress >>$qrows
  qscen natra qi qi "$QI_IP" "$QI_HV" ingress >>$qrows
  qscen upstream up up "$UP_IP" "$UP_HV" ingress >>$qrows
  cat $qrows
  g() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
  # the gate: natra's many-mice p99 within MM_MARGIN of upstream's, over
  # the steady state (natra, up) and over all mice (all_p99, up_all_p99)
  mm_gate="natra > 0 && up > 0 && natra <= $MM_MARGIN * up && all_p99 > 0 && up_all_p99 > 0 && all_p99 <= $MM_MARGIN * up_all_p99"
  mm_ok() { # NATRA_ROW UPSTREAM_ROW: the many-mice gate holds?
    awk -v natra="$(g "$1" mm_steady_p99)" -v up="$(g "$2" mm_steady_p99)" \
      -v all_p99="$(g "$1" mm_p99)" -v up_all_p99="$(g "$2" mm_p99)" "BEGIN { exit !($mm_gate) }"
  }
  for d in egress ingress; do
    n=$(grep "lim=natra dir=$d " $qrows || true) u=$(grep "lim=upstream dir=$d " $qrows || true)
    # Under TCG one run in several swings by tens of percent (a stall, a
    # first wave that bunches: about 1 direction-run in 14 here): a miss
    # is measured again, natra and upstream side by side, up to 3 runs,
    # and the last decides. A regression misses all three.
    # (many mice only: the elephant-plus-mice checks keep run 1's rows)
    mm_try=1 mn=$n mu=$u
    while ! mm_ok "$mn" "$mu" && [ $mm_try -lt 3 ]; do
      note "many mice $d: natra p99 $(g "$mn" mm_p99) ms (steady $(g "$mn" mm_steady_p99)) vs upstream $(g "$mu" mm_p99) ($(g "$mu" mm_steady_p99)) in run $mm_try: measuring again"
      mm_try=$((mm_try + 1))
      QSCEN_MM_ONLY=$mm_try
      if [ "$d" = egress ]; then
        qscen natra qe qe "$QE_IP" "$QE_HV" egress >/tmp/qrows2
      else
        qscen natra qi qi "$QI_IP" "$QI_HV" ingress >/tmp/qrows2
      fi
      qscen upstream up up "$UP_IP" "$UP_HV" "$d" >>/tmp/qrows2
      QSCEN_MM_ONLY=
      cat /tmp/qrows2
      mn=$(grep "lim=natra dir=$d " /tmp/qrows2 || true) mu=$(grep "lim=upstream dir=$d " /tmp/qrows2 || true)
    done
    # the gate, on the deciding run (the first wave's figures beside)
    check "many_mice_$d" "$mm_gate" \
      natra="$(g "$mn" mm_steady_p99)" up="$(g "$mu" mm_steady_p99)" natra999="$(g "$mn" mm_steady_p999)" \
      up999="$(g "$mu" mm_steady_p999)" all_p99="$(g "$mn" mm_p99)" up_all_p99="$(g "$mu" mm_p99)" \
      first_p99="$(g "$mn" mm_first_p99)" up_first_p99="$(g "$mu" mm_first_p99)" \
      margin="$MM_MARGIN" natra_rt="$(g "$mn" mm_retrans)" up_rt="$(g "$mu" mm_retrans)" \
      natra_to="$(g "$mn" mm_timeouts)" up_to="$(g "$mu" mm_timeouts)" natra_drops="$(g "$mn" mm_natra_drops)" \
      wave_drops="$(g "$mn" mm_wave_drops)" \
      natra_qdisc_drops="$(g "$mn" mm_qdisc_drops)" up_qdisc_drops="$(g "$mu" mm_qdisc_drops)" \
      natra_max1s="$(g "$mn" mm_max1s)" up_max1s="$(g "$mu" mm_max1s)" attempt=$mm_try
    check "eleph_mice_$d" 'unloaded > 0 && loaded > 0 && loaded <= 1.5 * unloaded' \
      loaded="$(g "$n" em_p99)" unloaded="$(g "$n" eu_p99)" up_loaded="$(g "$u" em_p99)" \
      up_unloaded="$(g "$u" eu_p99)" natra_rt="$(g "$n" em_retrans)" up_rt="$(g "$u" em_retrans)" \
      attempt="$(g "$n" em_try)"
    check "queue_cap_$d" 'max1s > 0 && max1s <= 1.05 && wire >= 0.98 && wire <= 1.02' \
      max1s="$(g "$n" em_max1s)" wire="$(g "$n" em_wire)" mm_max1s="$(g "$n" mm_max1s)" \
      up_max1s="$(g "$u" em_max1s)" up_wire="$(g "$u" em_wire)"
  done
else
  check many_mice_egress 0 add=failed
fi
conflist ''
for q in qe qi up; do
  c=/tmp/net.conflist
  [ $q = up ] && c=/tmp/up.conflist
  cni del $q $q $c >/dev/null 2>&1 || true
done

cni del srv srv >/dev/null
note "test body took $(awk -v a="$t_start" -v b="$(now)" 'BEGIN { print b - a }')s, $FAILS failed"
[ "$FAILS" = 0 ]
