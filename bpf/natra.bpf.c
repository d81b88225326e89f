// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* natra dataplane: one program per limited direction of a Pod's interface. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "natra.h"
#include "lib/parse.h"
#include "lib/bucket.h"
#include "lib/stats.h"
#include "lib/maps.h"

/* Pass without ending the hook's chain: tcx/clsact programs after ours still run. */
#define NATRA_TC_NEXT (-1)
#define NATRA_TC_DROP 2

static __always_inline int limit_direction(struct __sk_buff *skb, __u32 dir)
{
	struct natra_packet pkt;
	struct natra_config *cfg;
	struct natra_bucket_state *bucket;
	struct natra_counters *stats;
	enum natra_parse_result parsed;
	enum natra_verdict verdict;
	__u64 now;

	cfg = bpf_map_lookup_elem(&natra_cfg, &dir);
	bucket = bpf_map_lookup_elem(&natra_bucket, &dir);
	stats = bpf_map_lookup_elem(&natra_stats, &dir);
	if (!cfg || !bucket || !stats || cfg->rate_bytes_per_sec == 0)
		return NATRA_TC_NEXT;

	parsed = parse_packet(skb, &pkt);
	if (parsed == NATRA_PARSED_MALFORMED)
		stats->malformed_packets++;
	else if (parsed == NATRA_PARSED_NON_IP)
		stats->non_ip_packets++;

	now = bpf_ktime_get_ns();
	bpf_spin_lock(&bucket->lock);
	verdict = bucket_charge(bucket, cfg, now, pkt.wire_bytes,
				parsed == NATRA_PARSED_IP && pkt.ecn != 0);
	bpf_spin_unlock(&bucket->lock);

	/* A clone whose header is shared cannot be marked: drop it instead,
	 * and give its charge back, since it never went through. */
	if (verdict == NATRA_VERDICT_PASS_CE && !bpf_skb_ecn_set_ce(skb)) {
		verdict = NATRA_VERDICT_DROP;
		bpf_spin_lock(&bucket->lock);
		bucket_refund(bucket, cfg, pkt.wire_bytes);
		bpf_spin_unlock(&bucket->lock);
	}
	stats_count_verdict(stats, verdict, pkt.wire_bytes);
	return verdict == NATRA_VERDICT_DROP ? NATRA_TC_DROP : NATRA_TC_NEXT;
}

/* Traffic into the Pod: sits on tcx egress of the host-side veth. */
SEC("tc")
int pod_ingress(struct __sk_buff *skb)
{
	return limit_direction(skb, NATRA_DIR_POD_INGRESS);
}

/* Traffic out of the Pod: sits on tcx ingress of the host-side veth. */
SEC("tc")
int pod_egress(struct __sk_buff *skb)
{
	return limit_direction(skb, NATRA_DIR_POD_EGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
