/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The program's clock: CLOCK_MONOTONIC_COARSE (bpf_ktime_get_coarse_ns, the
 * monotonic time of the last tick), read once per jiffy and direction and
 * cached in the bucket state under the jiffy it was read in. A packet reads
 * bpf_jiffies64() (~1 ns here, against ~21 ns for the coarse clock) and the
 * cached time while the jiffy matches. Every value used is a real coarse
 * reading, so differences still sum exactly (docs/dataplane.md, "Clock").
 */
#ifndef NATRA_CLOCK_H
#define NATRA_CLOCK_H

#include "lib/atomics.h"

/* clock_jiffies while one CPU writes the cache (never a jiffy number) */
#define NATRA_CLOCK_WRITING (~0ULL)

static __always_inline __u64 clock_now(struct natra_bucket_state *b)
{
	__u64 j = bpf_jiffies64(), cached = NATRA_READ_ONCE(b->clock_jiffies), now;

	if (cached == j)
		return NATRA_READ_ONCE(b->clock_ns);
	now = bpf_ktime_get_coarse_ns();
	/* The tick moves jiffies a moment before the coarse clock: a reading
	 * equal to the cached time is the previous tick's, so it is used but
	 * not cached (the next packet reads again). One CPU writes the cache,
	 * the one whose CAS claims it: the time first, then its jiffy, so that
	 * a CPU that sees the jiffy sees its time (in program order; arm64 may
	 * show the jiffy first, a lag the bounds allow for). */
	if (now != NATRA_READ_ONCE(b->clock_ns) && cached != NATRA_CLOCK_WRITING &&
	    __sync_val_compare_and_swap(&b->clock_jiffies, cached, NATRA_CLOCK_WRITING) == cached) {
		NATRA_WRITE_ONCE(b->clock_ns, now);
		NATRA_WRITE_ONCE(b->clock_jiffies, j);
	}
	return now;
}

#endif /* NATRA_CLOCK_H */
