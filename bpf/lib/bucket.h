/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pod's token bucket of one direction, its layers, and EDT pacing. Pure
 * functions of (state, config, now) so that the same code runs in the
 * program and in host-side unit tests (tests/c/bucket_arith.c).
 *
 * The level is in byte-nanoseconds (bytes x 1e9), signed:
 *
 *   burst  +--------------------------------------+
 *          |  everyone                            |
 *   R + E  +--------------------------------------+
 *          |  heavy ECT packets (marked CE),      |  E = ecn_band_bytes
 *          |  mice; with EDT heavy non-ECT too    |
 *   R      +--------------------------------------+
 *          |  mice only                           |  R = mice_reserve_bytes
 *   0      +--------------------------------------+
 *          |  EDT debt: paced heavy packets down   |
 *          |  to R - horizon x rate, mice to -D    |  D = edt_debt_bytes
 *   -D     +--------------------------------------+
 *
 * Every byte that passes, mouse or heavy, paced or not, is charged to this
 * one bucket and the level never goes below -D, so what passes in any
 * interval t is at most rate x t + burst + D (D = 0 without EDT).
 */
#ifndef NATRA_BUCKET_H
#define NATRA_BUCKET_H

enum natra_verdict {
	NATRA_VERDICT_PASS = 0,
	NATRA_VERDICT_PASS_CE = 1, /* pass, but mark ECN Congestion Experienced */
	NATRA_VERDICT_DROP = 2,
	NATRA_VERDICT_PACE = 3, /* pass, departing no earlier than now + delay (EDT) */
};

/* What the sketch said of the packet's flow. */
enum natra_class {
	NATRA_CLASS_MOUSE = 0,
	NATRA_CLASS_HEAVY = 1,
};

static __always_inline __s64 bucket_full(const struct natra_config *cfg)
{
	return (__s64)(cfg->burst_bytes * NATRA_NSEC_PER_SEC);
}

/* The lowest level anything may reach: 0, or -D with EDT. */
static __always_inline __s64 bucket_floor(const struct natra_config *cfg)
{
	return -(__s64)(cfg->edt_debt_bytes * NATRA_NSEC_PER_SEC);
}

/* Bucket level after `now`, in byte-nanoseconds. Never overflows: an idle time
 * of refill_full_ns (floor to full) or more fills the bucket without
 * multiplying; a shorter one multiplies to at most (burst + D) x 1e9 + rate
 * < 2^64, and is compared with the room left before it is added. */
static __always_inline __s64 bucket_refilled_level(__s64 level, __u64 last_ns, __u64 now,
						   const struct natra_config *cfg)
{
	__s64 full = bucket_full(cfg);
	__u64 elapsed, add, room;

	/* another CPU may have refilled with a later clock reading */
	if (now <= last_ns)
		return level;
	elapsed = now - last_ns;
	if (elapsed >= cfg->refill_full_ns || level >= full)
		return full;
	add = elapsed * cfg->rate_bytes_per_sec;
	room = (__u64)full - (__u64)level; /* full - level, > 0, wraps right */
	if (add >= room)
		return full;
	return level + (__s64)add;
}

/* EDT: the delay after which the bucket, refilling at the rate, would have
 * R + cost in it, i.e. when this heavy packet would conform: ceil((R + cost -
 * level) / rate) ns. With the bucket empty and a stream of packets this is
 * t_next = max(now, t_last) + len x 1e9 / rate, Cilium's EDT rule. */
static __always_inline __u64 bucket_edt_delay(__s64 level, __u64 cost,
					      const struct natra_config *cfg)
{
	/* R x 1e9 + cost - level in u64: the true value is in (0, 2^64) */
	__u64 need = cfg->mice_reserve_bytes * NATRA_NSEC_PER_SEC + cost - (__u64)level;
	__u64 rate = cfg->rate_bytes_per_sec;

	return need / rate + (need % rate != 0);
}

/*
 * Charges one packet of `bytes` and decides its fate (see the layers above):
 *  - a mouse passes while the level stays >= the floor, else it is dropped;
 *  - a heavy packet passes while the level stays >= R + E; down to R, an ECT
 *    one passes marked CE (with EDT, a non-ECT one passes unmarked);
 *  - below R, with `edt`, a heavy packet is charged anyway and paced by
 *    *delay_ns, unless that exceeds the horizon or the floor; else dropped.
 * A dropped packet is not charged. `now` is a parameter so tests drive time.
 */
static __always_inline enum natra_verdict bucket_charge(struct natra_bucket_state *b,
							const struct natra_config *cfg, __u64 now,
							__u64 bytes, enum natra_class cls, int ect,
							int edt, __u64 *delay_ns)
{
	__s64 cost = (__s64)(bytes * NATRA_NSEC_PER_SEC);
	__s64 reserve = (__s64)(cfg->mice_reserve_bytes * NATRA_NSEC_PER_SEC);
	__s64 band = (__s64)(cfg->ecn_band_bytes * NATRA_NSEC_PER_SEC);
	__s64 level = bucket_refilled_level(b->level, b->last_ns, now, cfg);
	__s64 after = level - cost;
	__u64 delay;

	*delay_ns = 0;
	if (now > b->last_ns)
		b->last_ns = now;
	if (cls == NATRA_CLASS_MOUSE) {
		if (after >= bucket_floor(cfg)) {
			b->level = after;
			return NATRA_VERDICT_PASS;
		}
		b->level = level;
		return NATRA_VERDICT_DROP;
	}
	if (after >= reserve + band) {
		b->level = after;
		return NATRA_VERDICT_PASS;
	}
	if (after >= reserve && (ect || edt)) {
		b->level = after;
		return ect ? NATRA_VERDICT_PASS_CE : NATRA_VERDICT_PASS;
	}
	if (edt && after >= bucket_floor(cfg)) {
		delay = bucket_edt_delay(level, (__u64)cost, cfg);
		if (delay <= cfg->edt_horizon_ns) {
			b->level = after;
			*delay_ns = delay;
			return NATRA_VERDICT_PACE;
		}
	}
	b->level = level;
	return NATRA_VERDICT_DROP;
}

/* Gives back a charge whose packet was dropped after all (a CE mark that
 * could not be written). */
static __always_inline void bucket_refund(struct natra_bucket_state *b,
					  const struct natra_config *cfg, __u64 bytes)
{
	__s64 full = bucket_full(cfg);
	__s64 cost = (__s64)(bytes * NATRA_NSEC_PER_SEC);

	b->level = b->level < full - cost ? b->level + cost : full;
}

#endif /* NATRA_BUCKET_H */
