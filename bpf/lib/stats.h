/* SPDX-License-Identifier: Apache-2.0 */
/* Per-CPU counters: each CPU writes its own slot, so no atomics are needed
 * (a packet's program runs to completion on one CPU, preemption disabled). */
#ifndef NATRA_STATS_H
#define NATRA_STATS_H

static __always_inline void stats_count_verdict(struct natra_counters *c, enum natra_verdict v,
						enum natra_class cls, __u64 bytes)
{
	if (v == NATRA_VERDICT_DROP) {
		c->dropped_packets++;
		c->dropped_bytes += bytes;
		return;
	}
	c->passed_packets++;
	c->passed_bytes += bytes;
	if (cls == NATRA_CLASS_MOUSE) {
		c->passed_mouse_packets++;
		c->passed_mouse_bytes += bytes;
	} else {
		c->passed_heavy_packets++;
		c->passed_heavy_bytes += bytes;
	}
	if (v == NATRA_VERDICT_PASS_CE || v == NATRA_VERDICT_PACE_CE) {
		c->ce_marked_packets++;
		c->ce_marked_bytes += bytes;
	}
	if (v == NATRA_VERDICT_PACE || v == NATRA_VERDICT_PACE_CE) {
		c->paced_packets++;
		c->paced_bytes += bytes;
		if (cls == NATRA_CLASS_MOUSE) {
			c->paced_mouse_packets++;
			c->paced_mouse_bytes += bytes;
		}
	}
}

#endif /* NATRA_STATS_H */
