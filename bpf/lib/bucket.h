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
 *          |  paced mice (mice horizon)            |  M = mice_debt_bytes
 *   -D-M   +--------------------------------------+
 *          |  paced handshakes only (SYN, SYN-ACK: |  X = handshake_extra_bytes
 *          |  their timer is TCP's initial 1 s)    |
 *   -D-M-X +--------------------------------------+
 *
 * Every byte that passes, mouse or heavy, paced or not, is charged to this
 * one bucket, and only what passes unpaced takes the level below 0 without
 * waiting for it (down to -D), so what passes in any interval t is at most
 * rate x t + burst + D (D = 0 without EDT).
 *
 * Concurrency: atomics, no lock. Packets of one direction run on several
 * CPUs at once; a bpf_spin_lock pair costs ~48 ns per packet here (it saves
 * and restores interrupts), a compare-and-swap ~2 ns. Refill and charge are
 * two CAS steps on two words, each exact on its own:
 *  - time: a CPU whose clock is past last_ns takes the slice (last_ns, now]
 *    with CAS(last_ns, last, now); slices are disjoint and contiguous, so
 *    the refills sum exactly to rate x the time elapsed. A CPU that loses
 *    (another took a slice first) refills nothing now; the time it saw is
 *    left for the next packet.
 *  - level: read, refill by the slice, decide the layer, CAS(level, old,
 *    new); on a lost race, again (NATRA_BUCKET_CAS_TRIES in all); when
 *    every try lost, an atomic add, checked against the level it met (see
 *    bucket_charge): a packet that fits that level is not dropped.
 * With one CPU this is exactly the old locked step, so the host harness
 * checks it against 128-bit references unchanged.
 */
#ifndef NATRA_BUCKET_H
#define NATRA_BUCKET_H

#include "lib/atomics.h"

enum natra_verdict {
	NATRA_VERDICT_PASS = 0,
	NATRA_VERDICT_PASS_CE = 1, /* pass, but mark ECN Congestion Experienced */
	NATRA_VERDICT_DROP = 2,
	NATRA_VERDICT_PACE = 3,	   /* pass, departing no earlier than now + delay (EDT) */
	NATRA_VERDICT_PACE_CE = 4, /* paced, and marked CE: an ECT heavy packet delayed long */
};

/* What the sketch said of the packet's flow. */
enum natra_class {
	NATRA_CLASS_MOUSE = 0,
	NATRA_CLASS_HEAVY = 1,
	/* a mouse's SYN or SYN-ACK: paced on past the mice horizon (bucket
	 * only; counted as a mouse) */
	NATRA_CLASS_HANDSHAKE = 2,
};

/* Attempts at the level's compare-and-swap before the charge is committed
 * with an atomic add instead (see bucket_charge): each failure means another
 * CPU charged in between. Two: losing twice in a row takes three CPUs
 * charging one direction within the same few dozen ns (or a descheduled
 * vCPU), and every try is unrolled, repeating the layer decision for the
 * verifier (4 tries doubled the verification time). One try, with every
 * lost race committed by the add, verified in fewer instructions (9,798
 * against 15,162) but made the add path the common one under contention;
 * two keep the exact CAS for all but the rare give-up. */
#define NATRA_BUCKET_CAS_TRIES 2

/* The host harness (tests/c) plays "another CPU" here, right before the
 * level's CAS, to drive the lost-race and give-up paths deterministically;
 * nothing in the program. */
#ifndef NATRA_BEFORE_LEVEL_CAS
#define NATRA_BEFORE_LEVEL_CAS(b)                                                                  \
	do {                                                                                       \
	} while (0)
#endif

static __always_inline __s64 bucket_full(const struct natra_config *cfg)
{
	return (__s64)(cfg->burst_bytes * NATRA_NSEC_PER_SEC);
}

/* The lowest level a mouse passes unpaced at: 0, or -D with EDT. */
static __always_inline __s64 bucket_mice_floor(const struct natra_config *cfg)
{
	return -(__s64)(cfg->edt_debt_bytes * NATRA_NSEC_PER_SEC);
}

/* The lowest level anything may reach: 0, or -(D + M) with EDT (M: the mice
 * horizon's worth of the rate, where paced mice go). */
static __always_inline __s64 bucket_floor(const struct natra_config *cfg)
{
	return -(__s64)((cfg->edt_debt_bytes + cfg->mice_debt_bytes) * NATRA_NSEC_PER_SEC);
}

/* Bucket level after `now`, in byte-nanoseconds. Never overflows: an idle time
 * of refill_full_ns (lowest floor to full) or more fills the bucket without
 * multiplying; a shorter one multiplies to at most (burst + D) x 1e9 + rate
 * < 2^64, and is compared with the room left before it is added. */
static __always_inline __s64 bucket_refilled_level(__s64 level, __u64 last_ns, __u64 now,
						   const struct natra_config *cfg)
{
	__s64 full = bucket_full(cfg);
	__u64 elapsed, add, room;

	/* another CPU may have refilled with a later clock reading; a refund
	 * may have left the level above full */
	if (now <= last_ns)
		return level < full ? level : full;
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
static __always_inline __u64 bucket_edt_delay(__s64 level, __u64 cost, __s64 at,
					      const struct natra_config *cfg)
{
	/* at + cost - level in u64: the true value is in (0, 2^64) */
	__u64 need = (__u64)at + cost - (__u64)level;
	__u64 rate = cfg->rate_bytes_per_sec;

	return need / rate + (need % rate != 0);
}

/*
 * The fate of a packet of `cost` byte-ns at a (refilled) `level` (see the
 * layers above):
 *  - a mouse passes while the level stays >= its floor (0, -D with EDT);
 *    below, with `edt`, it is charged and paced by the time the bucket takes
 *    to be back at that floor + cost, unless that exceeds the mice horizon
 *    (a handshake: the handshake horizon, down to -(D + M + X)); else (or
 *    without EDT) it is dropped;
 *  - a heavy packet passes while the level stays >= R + E; down to R, an ECT
 *    one passes marked CE (with EDT, a non-ECT one passes unmarked);
 *  - below R, with `edt`, a heavy packet is charged anyway and paced by
 *    *delay_ns, unless that exceeds the horizon or the floor; an ECT one
 *    delayed more than ce_delay_ns (when set) is marked CE too; else dropped.
 * Anything but a drop charges cost. Without EDT the horizons and debts are
 * 0: no pacing at all, the floor is 0.
 */
static __always_inline enum natra_verdict bucket_layer(__s64 level, __s64 cost,
						       const struct natra_config *cfg,
						       enum natra_class cls, int ect, int edt,
						       __u64 *delay_ns)
{
	__s64 reserve = (__s64)(cfg->mice_reserve_bytes * NATRA_NSEC_PER_SEC);
	__s64 band = (__s64)(cfg->ecn_band_bytes * NATRA_NSEC_PER_SEC);
	__s64 after = level - cost;
	__s64 mice_floor = bucket_mice_floor(cfg);
	__u64 delay;

	*delay_ns = 0;
	if (cls != NATRA_CLASS_HEAVY) {
		/* a handshake (cls 2) may go down to -(D + M + X), within its
		 * own horizon; selected without a branch (one verifier state) */
		__u64 hs = -(__u64)(cls >> 1);
		__s64 lowest = bucket_floor(cfg) -
			       (__s64)(cfg->handshake_extra_bytes * NATRA_NSEC_PER_SEC & hs);
		__u64 horizon = cfg->mice_horizon_ns +
				((cfg->handshake_horizon_ns - cfg->mice_horizon_ns) & hs);

		if (after >= mice_floor)
			return NATRA_VERDICT_PASS;
		if (edt && after >= lowest) {
			delay = bucket_edt_delay(level, (__u64)cost, mice_floor, cfg);
			if (delay <= horizon) {
				*delay_ns = delay;
				return NATRA_VERDICT_PACE;
			}
		}
		return NATRA_VERDICT_DROP;
	}
	if (after >= reserve + band)
		return NATRA_VERDICT_PASS;
	if (after >= reserve && (ect || edt))
		return ect ? NATRA_VERDICT_PASS_CE : NATRA_VERDICT_PASS;
	if (edt && after >= bucket_floor(cfg)) {
		delay = bucket_edt_delay(level, (__u64)cost, reserve, cfg);
		if (delay <= cfg->edt_horizon_ns) {
			*delay_ns = delay;
			/* ce_delay_ns 0: never marked for its delay */
			return ect && cfg->ce_delay_ns && delay > cfg->ce_delay_ns
				   ? NATRA_VERDICT_PACE_CE
				   : NATRA_VERDICT_PACE;
		}
	}
	return NATRA_VERDICT_DROP;
}

/* Takes the slice of time (last_ns, now] for this packet's refill and returns
 * its start; `now` (an empty slice) when there is none to take: the clock is
 * not past last_ns (the same jiffy, another CPU's later reading, or a test's
 * frozen U64_MAX), or another CPU moved last_ns first. */
static __always_inline __u64 bucket_take_time(struct natra_bucket_state *b, __u64 now)
{
	__u64 last = NATRA_READ_ONCE(b->last_ns);

	if (now > last && __sync_val_compare_and_swap(&b->last_ns, last, now) == last)
		return last;
	return now;
}

/*
 * Refills, charges one packet of `bytes` and decides its fate
 * (bucket_layer). A dropped packet is not charged. `now` is a parameter so
 * tests drive time. Safe on several CPUs at once (see Concurrency above).
 *
 * When every CAS on the level loses (NATRA_BUCKET_CAS_TRIES other charges
 * landed while this one decided), the last decision is committed with one
 * atomic add (its charge and its slice's refill) and checked against the
 * level that add actually met: decided again there (bucket_layer), so a
 * packet that no longer fits gets its cost back (a second atomic add) and
 * is dropped, and one that still fits departs by the delay of the level it
 * really took. The level is never taken below a floor the decision did not
 * allow; for the moment between a charge and its refund other CPUs see less
 * in the bucket, never more, so every bound holds as with the CAS. A drop
 * decided in the last try stays a drop (its refill still added). The add
 * may leave the level above full for a moment; the next refill clamps it
 * (bucket_refilled_level compares before it adds). Each give-up is counted
 * in cas_giveups (natra inspect, metrics).
 */
static __always_inline enum natra_verdict bucket_charge(struct natra_bucket_state *b,
							const struct natra_config *cfg, __u64 now,
							__u64 bytes, enum natra_class cls, int ect,
							int edt, __u64 *delay_ns)
{
	__s64 cost = (__s64)(bytes * NATRA_NSEC_PER_SEC);
	__u64 last = bucket_take_time(b, now);
	enum natra_verdict v = NATRA_VERDICT_DROP;
	__s64 cur = 0, level = 0, next = 0, old;

#pragma unroll
	for (int i = 0; i < NATRA_BUCKET_CAS_TRIES; i++) {
		cur = NATRA_READ_ONCE(b->level);
		level = bucket_refilled_level(cur, last, now, cfg);
		v = bucket_layer(level, cost, cfg, cls, ect, edt, delay_ns);
		next = v == NATRA_VERDICT_DROP ? level : level - cost;
		/* nothing to write (a drop without refill): no atomic at all */
		if (next == cur)
			return v;
		NATRA_BEFORE_LEVEL_CAS(b);
		if (__sync_val_compare_and_swap(&b->level, cur, next) == cur)
			return v;
	}
	/* every CAS lost: commit with an add, then check what it met */
	__sync_fetch_and_add(&b->cas_giveups, 1);
	old = __sync_fetch_and_add(&b->level, next - cur);
	if (v == NATRA_VERDICT_DROP || old == cur)
		return v;
	/* the level this charge really took, refilled by its slice */
	v = bucket_layer(old + (level - cur), cost, cfg, cls, ect, edt, delay_ns);
	if (v == NATRA_VERDICT_DROP)
		__sync_fetch_and_add(&b->level, cost);
	return v;
}

/* Gives back a charge whose packet was dropped after all (a CE mark that
 * could not be written): an atomic add. It may lift the level above full for
 * a moment (by a few packets' cost at most, far from overflow); the next
 * refill clamps it, so the excess is never spent. */
static __always_inline void bucket_refund(struct natra_bucket_state *b, __u64 bytes)
{
	__sync_fetch_and_add(&b->level, (__s64)(bytes * NATRA_NSEC_PER_SEC));
}

#endif /* NATRA_BUCKET_H */
