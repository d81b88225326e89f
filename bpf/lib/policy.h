/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The two stages of one packet: sketch (is the flow heavy?) then bucket (may
 * it pass, and when?), without a lock (bucket.h and sketch.h say how each
 * stays right on several CPUs at once). Shared
 * by the program and the host harness (tests/c), so that what the harness
 * simulates is exactly what the program runs.
 */
#ifndef NATRA_POLICY_H
#define NATRA_POLICY_H

#include "lib/bucket.h"
#include "lib/sketch.h"

struct natra_decision {
	enum natra_verdict verdict;
	enum natra_class cls;
	__u64 delay_ns; /* NATRA_VERDICT_PACE: departure = now + delay_ns */
	__u64 estimate; /* the flow's sketch estimate, this packet included */
};

/*
 * cells: the flow's NATRA_SKETCH_MAX_DEPTH cells (rows past the depth alias
 * row 0), or NULL when the sketch is unavailable (the flow is then taken as
 * heavy). handshake: the packet is a SYN or SYN-ACK (a mouse's is paced on
 * to the handshake horizon where a mouse's data would be dropped).
 */
static __always_inline void policy_decide(struct natra_bucket_state *b,
					  const struct natra_config *cfg,
					  __u64 *const cells[NATRA_SKETCH_MAX_DEPTH], int sketched,
					  __u64 h, __u64 now, __u64 bytes, int ect, int edt,
					  int handshake, struct natra_decision *d)
{
	__u32 epoch;

	sketch_advance_epoch(b, cfg, now);
	epoch = NATRA_READ_ONCE(b->epoch);
	d->estimate = sketched ? sketch_estimate(cells, epoch, bytes) : 0;
	d->cls = !sketched || d->estimate > cfg->heavy_threshold_bytes ? NATRA_CLASS_HEAVY
								       : NATRA_CLASS_MOUSE;
	/* a mouse's handshake is NATRA_CLASS_HANDSHAKE to the bucket, set
	 * without a branch (handshake is 0..1) */
	d->verdict = bucket_charge(b, cfg, now, bytes,
				   (enum natra_class)(d->cls + ((handshake & ~d->cls & 1) << 1)),
				   ect, edt, &d->delay_ns);
	/* Only bytes that pass are counted, so the sketch's total is bounded by
	 * what the bucket lets through, whatever the offered load. */
	if (d->verdict != NATRA_VERDICT_DROP && sketched) {
		sketch_update(cells, epoch, d->estimate);
		if (d->cls == NATRA_CLASS_HEAVY)
			sketch_note_heavy(b, h);
	}
}

#endif /* NATRA_POLICY_H */
