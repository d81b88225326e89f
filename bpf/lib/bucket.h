/* SPDX-License-Identifier: Apache-2.0 */
/* Token bucket arithmetic. Pure functions of (state, config, now) so that the
 * same code runs in the program and in host-side unit tests. */
#ifndef NATRA_BUCKET_H
#define NATRA_BUCKET_H

enum natra_verdict {
	NATRA_VERDICT_PASS = 0,
	NATRA_VERDICT_PASS_CE = 1, /* pass, but mark ECN Congestion Experienced */
	NATRA_VERDICT_DROP = 2,
};

/* Bucket level after `now`, in byte-nanoseconds. Never overflows: an idle time
 * of refill_full_ns or more fills the bucket without multiplying, and a
 * shorter one multiplies to at most burst x 1e9 + rate < 2^63. */
static __always_inline __u64 bucket_refilled_level(__u64 level, __u64 last_ns, __u64 now,
						   const struct natra_config *cfg)
{
	__u64 full = cfg->burst_bytes * NATRA_NSEC_PER_SEC;
	__u64 elapsed;

	/* another CPU may have refilled with a later clock reading */
	if (now <= last_ns)
		return level;
	elapsed = now - last_ns;
	if (elapsed >= cfg->refill_full_ns)
		return full;
	level += elapsed * cfg->rate_bytes_per_sec;
	return level < full ? level : full;
}

/*
 * Charges one packet. The lowest ecn_band_bytes of the bucket are a reserve
 * that only ECT packets may spend, and every packet that does is marked CE:
 * a sender that reacts to ECN slows down before anything is dropped, while
 * the total that passes stays within rate x t + burst_bytes.
 */
static __always_inline enum natra_verdict bucket_charge(struct natra_bucket_state *b,
							const struct natra_config *cfg, __u64 now,
							__u64 bytes, int ect)
{
	__u64 cost = bytes * NATRA_NSEC_PER_SEC;
	__u64 band = cfg->ecn_band_bytes * NATRA_NSEC_PER_SEC;
	__u64 level = bucket_refilled_level(b->level, b->last_ns, now, cfg);

	if (now > b->last_ns)
		b->last_ns = now;
	if (level >= cost + band) {
		b->level = level - cost;
		return NATRA_VERDICT_PASS;
	}
	if (ect && level >= cost) {
		b->level = level - cost;
		return NATRA_VERDICT_PASS_CE;
	}
	b->level = level;
	return NATRA_VERDICT_DROP;
}

/* Gives back a charge whose packet was dropped after all (a CE mark that
 * could not be written). */
static __always_inline void bucket_refund(struct natra_bucket_state *b,
					  const struct natra_config *cfg, __u64 bytes)
{
	__u64 full = cfg->burst_bytes * NATRA_NSEC_PER_SEC;
	__u64 level = b->level + bytes * NATRA_NSEC_PER_SEC;

	b->level = level < full ? level : full;
}

#endif /* NATRA_BUCKET_H */
