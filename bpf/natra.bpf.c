// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * natra dataplane: one program per direction, loaded once per node and
 * shared by every limited Pod interface; a Pod interface's tiny stub program
 * gives its slot in skb->cb and tail-calls here (include/natra.h).
 * Two stages per packet (docs/dataplane.md): a Count-Min Sketch says whether
 * the packet's flow is a mouse or heavy, then the one pod bucket of the
 * direction charges it by its layer: mice pass down to the bottom, heavy
 * flows only above the mice reserve, with ECN, EDT pacing (egress, when
 * enabled) or drop beyond it.
 */
/* No CO-RE: the program reads only UAPI (the __sk_buff context)
 * and wire formats (IP headers), whose layouts never change. Without CO-RE
 * relocations libbpf does not parse the kernel's BTF (~5 MB) at every ADD. */
#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "natra.h"
#include "lib/parse.h"
#include "lib/policy.h"
#include "lib/stats.h"
#include "lib/maps.h"
#include "lib/clock.h"

/* Pass without ending the hook's chain: tcx/clsact programs after ours still run. */
#define NATRA_TC_NEXT (-1)
#define NATRA_TC_DROP 2

/* The stubs (src/dataplane/sys.rs) write the slot at this offset. */
_Static_assert(__builtin_offsetof(struct __sk_buff, cb) == NATRA_SKB_CB_OFFSET,
	       "skb->cb moved: NATRA_SKB_CB_OFFSET is wrong");

static __always_inline int limit_direction(struct __sk_buff *skb, const __u32 dir)
{
	__u64 *cells[NATRA_SKETCH_MAX_DEPTH], *row;
	struct natra_packet pkt;
	struct natra_config *cfg;
	struct natra_bucket_state *bucket;
	struct natra_counters *stats;
	enum natra_parse_result parsed;
	enum natra_verdict verdict;
	struct natra_decision d;
	__u64 now, h, t;
	__u32 slot = skb->cb[NATRA_CB_SLOT], key, idx;
	int ect, edt, sketched, hs;

	/* The stub's slot; one that is out of range finds no config. A stub
	 * whose generation is not the slot's belongs to a Pod interface whose
	 * slot was given to another: its packets pass, never charged to the
	 * new owner. */
	if (slot >= NATRA_SLOTS)
		return NATRA_TC_NEXT;
	key = slot * NATRA_DIR_COUNT + dir;
	cfg = bpf_map_lookup_elem(&natra_cfg, &key);
	bucket = bpf_map_lookup_elem(&natra_bucket, &key);
	stats = bpf_map_lookup_elem(&natra_stats, &key);
	if (!cfg || !bucket || !stats || cfg->rate_bytes_per_sec == 0 ||
	    cfg->generation != skb->cb[NATRA_CB_GENERATION])
		return NATRA_TC_NEXT;

	parsed = parse_packet(skb, &pkt);
	/* Counted without branches: parsed is 0 (IP), 1 (non-IP) or 2 (malformed). */
	stats->malformed_packets += parsed >> 1;
	stats->non_ip_packets += parsed & 1;

	/* The flow's cells. Rows past the depth alias row 0,
	 * and so does a row missing from a sketch smaller than the config says
	 * (never with natra's control plane): the estimate is then over fewer
	 * rows, still never below the flow's count. Aliasing keeps one verifier
	 * state: every cells[i] is the same kind of pointer on every path. */
	h = flow_hash(&pkt.key);
	idx = sketch_index(cfg, h, 0);
	row = bpf_map_lookup_elem(&natra_sketch, &idx);
	/* no row 0 at all: no estimate, heavy */
	sketched = row != NULL;
	cells[0] = row;
#pragma unroll
	for (int i = 1; i < NATRA_SKETCH_MAX_DEPTH; i++) {
		cells[i] = cells[0];
		if (sketched && i < cfg->sketch_depth) {
			idx = sketch_index(cfg, h, i);
			row = bpf_map_lookup_elem(&natra_sketch, &idx);
			if (row)
				cells[i] = row;
		}
	}

	/* CLOCK_MONOTONIC_COARSE (the time of the last tick, one jiffy of
	 * resolution), read once per jiffy (lib/clock.h): ~30 ns per packet
	 * cheaper than bpf_ktime_get_ns() here, ~15 than reading it each time.
	 * Exact for what the bucket needs, differences of readings (refills sum
	 * to the elapsed time), in the time base of the EDT stamp. Costs: a
	 * departure a jiffy early (two in a rare race), and bounds in real time
	 * widen as much (docs/dataplane.md, "Clock"). */
	now = clock_now(bucket);
	/* 0 or 1 without branches (parse leaves ecn 0 unless parsed as IP): a
	 * flag the verifier knows only as 0..1 keeps one state where a constant
	 * would double the paths through everything after it. */
	ect = (pkt.ecn | (pkt.ecn >> 1)) & 1;
	/* per direction: the control plane sets it where an fq follows */
	edt = cfg->flags & NATRA_CFG_EDT;

	/*
	 * Concurrency: atomics, not a bpf_spin_lock. The lock pair cost ~48 ns
	 * per packet here (it saves and restores interrupts, dear in a VM),
	 * about what all the rest of the program costs. The bucket's refill and
	 * charge are compare-and-swaps on its time and level words, exact (one
	 * CPU: the same arithmetic as before; bucket.h); the sketch is updated
	 * with plain stores, which two CPUs racing on one flow may under-count
	 * by a packet (sketch.h); the epoch moves on by a CAS of its start.
	 */
	/* a SYN or SYN-ACK: waits past the mice horizon rather than being
	 * dropped (its sender's timer is TCP's initial 1 s; bucket.h) */
	hs = tcp_opens_flow(pkt.tcp_flags);
	policy_decide(bucket, cfg, cells, sketched, h, now, pkt.wire_bytes, ect, edt, hs, &d);
	verdict = d.verdict;

	/* A clone whose header is shared cannot be marked: drop it instead,
	 * and give its charge back, since it never went through. (Its bytes stay
	 * in the sketch: a conservative update cannot be undone, and the flow
	 * only looks a packet heavier.) */
	if ((verdict == NATRA_VERDICT_PASS_CE || verdict == NATRA_VERDICT_PACE_CE) &&
	    !bpf_skb_ecn_set_ce(skb)) {
		verdict = NATRA_VERDICT_DROP;
		bucket_refund(bucket, pkt.wire_bytes);
	}
	/* EDT: a monotonic delivery time, which forwarding keeps and sch_fq
	 * honours; never earlier than one the Pod's own stack already set.
	 * TCP's packets arrive already stamped monotonic (their departure
	 * time, kept across the veth): a plain store then moves the stamp and
	 * keeps its type (this program reads tstamp_type, so the kernel does
	 * not clear the type on a write), ~10 ns cheaper than the helper,
	 * which is left for packets stamped otherwise or not at all. */
	if (verdict == NATRA_VERDICT_PACE || verdict == NATRA_VERDICT_PACE_CE) {
		t = now + d.delay_ns;
		if (skb->tstamp_type != BPF_SKB_CLOCK_MONOTONIC)
			bpf_skb_set_tstamp(skb, t, BPF_SKB_CLOCK_MONOTONIC);
		else if (skb->tstamp < t)
			skb->tstamp = t;
	}
	stats_count_verdict(stats, verdict, d.cls, pkt.wire_bytes);
	return verdict == NATRA_VERDICT_DROP ? NATRA_TC_DROP : NATRA_TC_NEXT;
}

/* Traffic into the Pod: reached from a stub on the host-side veth's egress
 * (or the Pod interface's ingress in the Pod-side modes). */
SEC("tc")
int pod_ingress(struct __sk_buff *skb)
{
	return limit_direction(skb, NATRA_DIR_POD_INGRESS);
}

/* Traffic out of the Pod: reached from a stub on the host-side veth's
 * ingress (or the Pod interface's egress in the Pod-side modes). */
SEC("tc")
int pod_egress(struct __sk_buff *skb)
{
	return limit_direction(skb, NATRA_DIR_POD_EGRESS);
}

/* The cost floor of a tc program under BPF_PROG_RUN, for `make bench-bpf`
 * only: `?` keeps it from loading unless a bench asks for it. */
SEC("?tc")
int bench_pass_through(struct __sk_buff *skb)
{
	return NATRA_TC_NEXT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
