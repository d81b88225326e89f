#!/usr/bin/env bash
# natra demo: two local pods made through libcni (ptp + host-local + natra, the
# chain kubelet would run), the client capped at DEMO_RATE bits/s both ways.
# Runs iperf3 each way, prints the measured rate beside the cap, cleans up.
set -euo pipefail

natra=$(realpath "${1:?usage: demo.sh PATH_TO_NATRA_BINARY}")
rate=${DEMO_RATE:-20000000}
secs=${DEMO_SECONDS:-5}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/natra-demo.XXXXXX)
cnitool="$work/cnitool"
conf="$work/demo.conflist"
cache="$work/cache"
mkdir -p "$work/bin"
ln -s "$natra" "$work/bin/natra"

"$repo/tests/cnitool/build.sh" "$cnitool" >/dev/null
cat >"$conf" <<JSON
{"cniVersion":"1.0.0","name":"natra-demo","plugins":[
  {"type":"ptp","ipMasq":false,"ipam":{"type":"host-local",
   "ranges":[[{"subnet":"10.99.250.0/24"}]],"dataDir":"$work/ipam"}},
  {"type":"natra","capabilities":{"bandwidth":true}}]}
JSON

cni() { "$cnitool" "$@" --conf "$conf" --cni-path "$work/bin:/usr/lib/cni" --cache-dir "$cache"; }
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  for pod in demo-server demo-client; do
    cni del --netns "/var/run/netns/$pod" --id "$pod" >/dev/null 2>&1 || true
    ip netns del "$pod" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
[ -n "${DEMO_DEBUG:-}" ] && set -x

ip netns add demo-server
ip netns add demo-client
cni add --netns /var/run/netns/demo-server --id demo-server >/dev/null
bw=$(printf '{"ingressRate":%d,"ingressBurst":4294967295,"egressRate":%d,"egressBurst":4294967295}' "$rate" "$rate")
cni add --netns /var/run/netns/demo-client --id demo-client --bandwidth "$bw" >/dev/null
server_ip=$(ip -n demo-server -j addr show eth0 | jq -r '.[0].addr_info[] | select(.family=="inet") | .local')
echo "pods up: server $server_ip (unlimited), client capped at $((rate / 1000000)) Mbit/s each way (containerd's burst)"

ip netns exec demo-server iperf3 -s -p 5299 >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 50); do
  ip netns exec demo-server ss -Hltn 'sport = :5299' | grep -q . && break
  sleep 0.1
done

measure() { # $1: extra iperf3 flags
  ip netns exec demo-client iperf3 -c "$server_ip" -p 5299 -t "$secs" -O "${DEMO_OMIT:-0}" -J $1 |
    jq '.end.sum_received.bits_per_second'
}

printf '%-22s %12s %14s %8s\n' direction "cap Mbit/s" "measured" "ratio"
for dir in "egress (pod → out)|" "ingress (→ pod)|-R" "egress UDP 2x offered|-u -b $((rate * 2))" "ingress UDP 2x offered|-u -b $((rate * 2)) -R"; do
  name=${dir%%|*}; flags=${dir#*|}
  bps=$(measure "$flags")
  printf '%-22s %12.1f %14.2f %8.3f\n' "$name" "$(echo "$rate/1000000" | bc -l)" "$(echo "$bps/1000000" | bc -l)" "$(echo "$bps/$rate" | bc -l)"
done
