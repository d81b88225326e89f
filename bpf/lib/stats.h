/* SPDX-License-Identifier: Apache-2.0 */
/* Per-CPU counters: each CPU writes its own slot, so no atomics are needed. */
#ifndef NATRA_STATS_H
#define NATRA_STATS_H

static __always_inline void stats_count_verdict(struct natra_counters *c, enum natra_verdict v,
						__u64 bytes)
{
	switch (v) {
	case NATRA_VERDICT_PASS:
		c->passed_packets++;
		c->passed_bytes += bytes;
		break;
	case NATRA_VERDICT_PASS_CE:
		c->passed_packets++;
		c->passed_bytes += bytes;
		c->ce_marked_packets++;
		c->ce_marked_bytes += bytes;
		break;
	default:
		c->dropped_packets++;
		c->dropped_bytes += bytes;
		break;
	}
}

#endif /* NATRA_STATS_H */
