// SPDX-License-Identifier: Apache-2.0
/*
 * Host-side tests of the dataplane's arithmetic: bpf/lib/bucket.h (the pod
 * bucket, its layers, EDT), bpf/lib/sketch.h (Count-Min Sketch with decay),
 * bpf/lib/flow.h (flow hash) and bpf/lib/policy.h (the two stages together).
 * They are pure functions of (state, config, now), so the very headers the
 * BPF program includes are compiled here with the host compiler and driven
 * with a deterministic clock.
 *
 * Built and run by tests/bucket_arith.rs:
 *   clang -O2 -Wall -Werror -I include -I bpf tests/c/bucket_arith.c -lm
 * Prints one line per failure on stderr and, last, exactly
 *   bucket_arith: N passed, M failed
 * on stdout; exits non-zero when M > 0.
 */
#include <linux/types.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* "Another CPU" charging right before the level's CAS (bucket.h): each of
 * the next `interfere_n` CASes finds the level moved by `interfere_by`. */
static __thread int interfere_n;
static __thread __s64 interfere_by;
static __thread unsigned long cas_tries;
#define NATRA_BEFORE_LEVEL_CAS(b)                                                                  \
	do {                                                                                       \
		cas_tries++;                                                                       \
		if (interfere_n > 0) {                                                             \
			interfere_n--;                                                             \
			__sync_fetch_and_add(&(b)->level, interfere_by);                           \
		}                                                                                  \
	} while (0)

#include "natra.h"
#include "lib/flow.h"
#include "lib/policy.h"

typedef unsigned __int128 u128;
typedef __int128 s128;

static unsigned long n_passed, n_failed;

#define CHECK(cond, fmt, ...)                                                                      \
	do {                                                                                       \
		if (cond) {                                                                        \
			n_passed++;                                                                \
		} else {                                                                           \
			n_failed++;                                                                \
			fprintf(stderr, "FAIL %s:%d: %s: " fmt "\n", __FILE__, __LINE__, #cond,    \
				##__VA_ARGS__);                                                    \
		}                                                                                  \
	} while (0)

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A s128 printed as decimal, for failure messages only. */
static const char *s128_str(s128 v, char buf[48])
{
	char tmp[48];
	int i = 0, j = 0, neg = v < 0;
	u128 u = neg ? (u128)(-v) : (u128)v;

	do {
		tmp[i++] = (char)('0' + (int)(u % 10));
		u /= 10;
	} while (u);
	if (neg)
		buf[j++] = '-';
	while (i)
		buf[j++] = tmp[--i];
	buf[j] = 0;
	return buf;
}

/* Deterministic pseudo-random numbers (xorshift64*). */
static __u64 rng_state = 0x2545f4914f6cdd1dULL;
static __u64 rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

/* ------------------------------------------------------------------------- */
/* The parameters, computed exactly like src/limits.rs. Keep in step with     */
/* that file; tests/bucket_arith.rs compares the two value for value.         */
/* ------------------------------------------------------------------------- */
/* tests/bucket_arith.rs passes src/limits.rs's own constants with -D: they
 * have one home, and this mirror cannot drift from it. */
#if !defined(MIN_RATE_BITS) || !defined(MAX_RATE_BITS) || !defined(BURST_WINDOW_MS) ||             \
    !defined(BURST_FLOOR_BYTES) || !defined(BURST_CEILING_BYTES) || !defined(ECN_BAND_DIVISOR) ||  \
    !defined(MICE_RESERVE_DIVISOR) || !defined(DEFAULT_WINDOW_MS) || !defined(MAX_WINDOW_MS) ||    \
    !defined(MIN_HEAVY_THRESHOLD_BYTES) || !defined(HEAVY_WINDOW_DIVISOR) ||                       \
    !defined(MAX_HEAVY_THRESHOLD_BYTES) || !defined(DEFAULT_SKETCH_DEPTH) ||                       \
    !defined(MIN_DEFAULT_SKETCH_WIDTH) || !defined(MIN_SKETCH_WIDTH) ||                            \
    !defined(MAX_SKETCH_WIDTH) || !defined(SKETCH_BUDGET_BYTES) ||                                 \
    !defined(DEFAULT_EDT_HORIZON_MS) || !defined(MAX_EDT_DEBT_BYTES) ||                            \
    !defined(DEFAULT_MICE_HORIZON_MS) || !defined(DEFAULT_CE_DELAY_MS) ||                          \
    !defined(DEFAULT_HANDSHAKE_HORIZON_MS) || !defined(EDT_BURST_WINDOW_MS) ||                     \
    !defined(EDT_BURST_FLOOR_BYTES) || !defined(EDT_MICE_RESERVE_DIVISOR)
#error                                                                                             \
    "build this harness through tests/bucket_arith.rs: it passes src/limits.rs's constants with -D"
#endif

static __u64 sanitise_burst(__u64 requested, __u64 rate)
{
	/* rate.saturating_mul(BURST_WINDOW_MS) / 1000 */
	__u64 window =
	    rate > UINT64_MAX / BURST_WINDOW_MS ? UINT64_MAX / 1000 : rate * BURST_WINDOW_MS / 1000;
	__u64 upper = window > BURST_FLOOR_BYTES ? window : BURST_FLOOR_BYTES;

	if (upper > BURST_CEILING_BYTES)
		upper = BURST_CEILING_BYTES;
	if (requested == 0)
		return upper;
	if (requested < BURST_FLOOR_BYTES)
		return BURST_FLOOR_BYTES;
	return requested > upper ? upper : requested;
}

static __u64 div_ceil_u64(u128 num, __u64 den)
{
	u128 q = (num + den - 1) / den;

	return q > UINT64_MAX ? UINT64_MAX : (__u64)q;
}

static __u64 default_window_ms(__u64 rate)
{
	__u64 ms = (HEAVY_WINDOW_DIVISOR * MIN_HEAVY_THRESHOLD_BYTES * 1000 + rate - 1) / rate;

	if (ms < DEFAULT_WINDOW_MS)
		return DEFAULT_WINDOW_MS;
	return ms > MAX_WINDOW_MS ? MAX_WINDOW_MS : ms;
}

static __u64 window_bytes(__u64 rate, __u64 window_ms)
{
	u128 n = (u128)rate * window_ms / 1000;

	return n > UINT64_MAX ? UINT64_MAX : (__u64)n;
}

static __u64 default_threshold(__u64 rate, __u64 window_ms)
{
	__u64 t = window_bytes(rate, window_ms) / HEAVY_WINDOW_DIVISOR;

	if (t < MIN_HEAVY_THRESHOLD_BYTES)
		return MIN_HEAVY_THRESHOLD_BYTES;
	return t > MAX_HEAVY_THRESHOLD_BYTES ? MAX_HEAVY_THRESHOLD_BYTES : t;
}

static __u32 pow2_ceil(__u32 x)
{
	__u32 p = 1;

	while (p < x)
		p <<= 1;
	return p;
}

static __u32 default_width(__u64 rate, __u64 window_ms, __u64 threshold, __u32 depth)
{
	double need = ceil(4.0 * M_E * (double)window_bytes(rate, window_ms) / (double)threshold);
	__u32 w = need >= (double)MAX_SKETCH_WIDTH ? MAX_SKETCH_WIDTH
						   : pow2_ceil(need < 1 ? 1 : (__u32)need);
	__u64 budget_cells = SKETCH_BUDGET_BYTES / (2 * 8 * (__u64)depth);
	__u32 cap = 1;

	while ((__u64)cap * 2 <= budget_cells)
		cap <<= 1;
	if (cap < MIN_SKETCH_WIDTH)
		cap = MIN_SKETCH_WIDTH;
	if (w < MIN_DEFAULT_SKETCH_WIDTH)
		w = MIN_DEFAULT_SKETCH_WIDTH;
	return w < cap ? w : cap;
}

static __u32 log2_u32(__u32 x)
{
	__u32 r = 0;

	while (x > 1) {
		x >>= 1;
		r++;
	}
	return r;
}

/* A config with an explicit burst (used to push past what the clamp allows),
 * EDT with `horizon_ms` when non-zero. */
static struct natra_config config_raw(__u64 rate, __u64 burst, __u64 horizon_ms)
{
	struct natra_config c;
	u128 debt = (u128)rate * horizon_ms / 1000;

	memset(&c, 0, sizeof(c));
	c.rate_bytes_per_sec = rate;
	c.burst_bytes = burst;
	c.ecn_band_bytes = burst / ECN_BAND_DIVISOR;
	c.mice_reserve_bytes = burst / MICE_RESERVE_DIVISOR;
	if (horizon_ms) {
		c.flags = NATRA_CFG_EDT;
		c.edt_horizon_ns = horizon_ms * 1000000ULL;
		c.edt_debt_bytes = debt > MAX_EDT_DEBT_BYTES ? MAX_EDT_DEBT_BYTES : (__u64)debt;
	}
	c.refill_full_ns =
	    div_ceil_u64((u128)(burst + c.edt_debt_bytes) * NATRA_NSEC_PER_SEC, rate);
	c.heavy_threshold_bytes = default_threshold(rate, default_window_ms(rate));
	c.epoch_ns = default_window_ms(rate) * 1000000ULL / 2;
	c.sketch_depth = DEFAULT_SKETCH_DEPTH;
	c.sketch_width =
	    default_width(rate, default_window_ms(rate), c.heavy_threshold_bytes, c.sketch_depth);
	c.sketch_shift = 64 - log2_u32(c.sketch_width);
	c.sketch_base = 0;
	return c;
}

/* bucket_params() of src/limits.rs for a valid, non-zero rate. */
static struct natra_config config_for(__u64 rate_bits, __u64 burst_bits)
{
	__u64 rate = rate_bits / 8;

	return config_raw(rate, sanitise_burst(burst_bits / 8, rate), 0);
}

/* BucketParams::with_edt of src/limits.rs: the burst retuned for a queue
 * (EDT_BURST_WINDOW_MS of the rate), the default heavy and mice horizons,
 * the CE delay. */
static struct natra_config config_edt(__u64 rate_bits, __u64 burst_bits)
{
	__u64 rate = rate_bits / 8;
	__u64 burst = sanitise_burst(burst_bits / 8, rate);
	u128 eb = (u128)rate * EDT_BURST_WINDOW_MS / 1000;
	u128 mice = (u128)rate * DEFAULT_MICE_HORIZON_MS / 1000;
	u128 hs = (u128)rate * DEFAULT_HANDSHAKE_HORIZON_MS / 1000;
	struct natra_config c;

	if (eb < EDT_BURST_FLOOR_BYTES)
		eb = EDT_BURST_FLOOR_BYTES;
	if (eb < burst)
		burst = (__u64)eb;
	c = config_raw(rate, burst, DEFAULT_EDT_HORIZON_MS);
	c.mice_reserve_bytes = burst / EDT_MICE_RESERVE_DIVISOR;
	if (mice > MAX_EDT_DEBT_BYTES - c.edt_debt_bytes)
		mice = MAX_EDT_DEBT_BYTES - c.edt_debt_bytes;
	c.mice_debt_bytes = (__u64)mice;
	c.mice_horizon_ns = DEFAULT_MICE_HORIZON_MS * 1000000ULL;
	if (hs > MAX_EDT_DEBT_BYTES - c.edt_debt_bytes)
		hs = MAX_EDT_DEBT_BYTES - c.edt_debt_bytes;
	c.handshake_extra_bytes = hs > mice ? (__u64)(hs - mice) : 0;
	c.handshake_horizon_ns = DEFAULT_HANDSHAKE_HORIZON_MS * 1000000ULL;
	c.ce_delay_ns = DEFAULT_CE_DELAY_MS * 1000000ULL;
	c.refill_full_ns = div_ceil_u64(
	    (u128)(burst + c.edt_debt_bytes + c.mice_debt_bytes + c.handshake_extra_bytes) *
		NATRA_NSEC_PER_SEC,
	    rate);
	return c;
}

static __s64 full_of(const struct natra_config *c)
{
	return (__s64)(c->burst_bytes * NATRA_NSEC_PER_SEC);
}

static __s64 floor_of(const struct natra_config *c)
{
	return -(__s64)((c->edt_debt_bytes + c->mice_debt_bytes) * NATRA_NSEC_PER_SEC);
}

/* The lowest floor: a handshake's, -(D + H), when it is below -(D + M). */
static __s64 lowest_floor_of(const struct natra_config *c)
{
	return floor_of(c) - (__s64)(c->handshake_extra_bytes * NATRA_NSEC_PER_SEC);
}

static __s64 bns(__u64 bytes)
{
	return (__s64)(bytes * NATRA_NSEC_PER_SEC);
}

/* ------------------------------------------------------------------------- */
/* 128-bit references                                                         */

/* What the refill must give, computed in 128 bits so it cannot overflow. */
static s128 ref_refill(__s64 level, __u64 last, __u64 now, const struct natra_config *c)
{
	s128 full = (s128)c->burst_bytes * NATRA_NSEC_PER_SEC;
	s128 l;

	if (now <= last)
		return level;
	if (now - last >= c->refill_full_ns)
		return full;
	l = (s128)level + (s128)(now - last) * c->rate_bytes_per_sec;
	return l < full ? l : full;
}

/* The layered charge, restated in 128 bits (see bucket.h for the rules). */
static enum natra_verdict ref_charge(s128 level, __u64 size, enum natra_class cls, int ect, int edt,
				     const struct natra_config *c, s128 *level_out, __u64 *delay)
{
	s128 cost = (s128)size * NATRA_NSEC_PER_SEC;
	s128 r = (s128)c->mice_reserve_bytes * NATRA_NSEC_PER_SEC;
	s128 e = (s128)c->ecn_band_bytes * NATRA_NSEC_PER_SEC;
	s128 mf = -(s128)c->edt_debt_bytes * NATRA_NSEC_PER_SEC;
	s128 fl = mf - (s128)c->mice_debt_bytes * NATRA_NSEC_PER_SEC;
	s128 hfl = fl - (s128)c->handshake_extra_bytes * NATRA_NSEC_PER_SEC;
	s128 after = level - cost;

	*delay = 0;
	*level_out = level;
	if (cls != NATRA_CLASS_HEAVY) {
		s128 need = mf + cost - level;
		s128 d = (need + c->rate_bytes_per_sec - 1) / c->rate_bytes_per_sec;

		if (after >= mf) {
			*level_out = after;
			return NATRA_VERDICT_PASS;
		}
		/* a mouse: down to -(D + M) within the mice horizon; a
		 * handshake also down to -(D + H) within its own */
		if (edt && ((after >= fl && d <= (s128)c->mice_horizon_ns) ||
			    (cls == NATRA_CLASS_HANDSHAKE && after >= hfl &&
			     d <= (s128)c->handshake_horizon_ns))) {
			*level_out = after;
			*delay = (__u64)d;
			return NATRA_VERDICT_PACE;
		}
		return NATRA_VERDICT_DROP;
	}
	if (after >= r + e) {
		*level_out = after;
		return NATRA_VERDICT_PASS;
	}
	if (after >= r && (ect || edt)) {
		*level_out = after;
		return ect ? NATRA_VERDICT_PASS_CE : NATRA_VERDICT_PASS;
	}
	if (edt && after >= fl) {
		s128 need = r + cost - level;
		s128 d = (need + c->rate_bytes_per_sec - 1) / c->rate_bytes_per_sec;

		if (d <= (s128)c->edt_horizon_ns) {
			*level_out = after;
			*delay = (__u64)d;
			return ect && c->ce_delay_ns && d > (s128)c->ce_delay_ns
				   ? NATRA_VERDICT_PACE_CE
				   : NATRA_VERDICT_PACE;
		}
	}
	return NATRA_VERDICT_DROP;
}

/* ------------------------------------------------------------------------- */
/* A direction as the program holds it: config, bucket, sketch cells.         */

struct sim_dir {
	struct natra_config c;
	struct natra_bucket_state b;
	__u64 *cells;
};

static void sim_init(struct sim_dir *s, struct natra_config c, __u64 t0)
{
	memset(s, 0, sizeof(*s));
	s->c = c;
	s->b.level = full_of(&c);
	s->b.last_ns = t0;
	s->b.epoch_start_ns = t0;
	s->cells = calloc((size_t)c.sketch_depth * c.sketch_width, sizeof(__u64));
	if (!s->cells)
		abort();
}

static void sim_free(struct sim_dir *s)
{
	free(s->cells);
	s->cells = NULL;
}

/* The flow's cells as natra.bpf.c gathers them (rows past depth alias row 0). */
static void sim_cells(struct sim_dir *s, __u64 h, __u64 *cells[NATRA_SKETCH_MAX_DEPTH])
{
	for (__u32 i = 0; i < NATRA_SKETCH_MAX_DEPTH; i++)
		cells[i] = i < s->c.sketch_depth ? &s->cells[sketch_index(&s->c, h, i)] : cells[0];
}

static struct natra_decision sim_packet(struct sim_dir *s, const struct natra_flow_key *k,
					__u64 now, __u64 bytes, int ect)
{
	__u64 *cells[NATRA_SKETCH_MAX_DEPTH];
	struct natra_decision d;
	__u64 h = flow_hash(k);

	sim_cells(s, h, cells);
	policy_decide(&s->b, &s->c, cells, 1, h, now, bytes, ect, (s->c.flags & NATRA_CFG_EDT) != 0,
		      0, &d);
	return d;
}

/* The estimate a flow would get now, without charging anything. */
static __u64 sim_estimate(struct sim_dir *s, const struct natra_flow_key *k)
{
	__u64 *cells[NATRA_SKETCH_MAX_DEPTH];

	sim_cells(s, flow_hash(k), cells);
	return sketch_estimate(cells, s->b.epoch, 0);
}

static struct natra_flow_key key_v4(__u32 saddr, __u32 daddr, __u16 sport, __u16 dport, __u8 proto)
{
	struct natra_flow_key k;

	memset(&k, 0, sizeof(k));
	k.family = NATRA_FLOW_IPV4;
	k.saddr[0] = saddr;
	k.daddr[0] = daddr;
	k.sport = sport;
	k.dport = dport;
	k.proto = proto;
	return k;
}

/* ------------------------------------------------------------------------- */
/* parameters                                                                 */

/* Values that hold whatever the constants are; the full comparison with
 * src/limits.rs is `--params` mode, checked by tests/bucket_arith.rs. */
static void test_params_mirror_limits_rs(void)
{
	struct natra_config c;

	c = config_for(1000, 4294967295ULL);
	CHECK(c.rate_bytes_per_sec == 125 && c.burst_bytes == BURST_FLOOR_BYTES,
	      "1 kbit/s: rate %llu burst %llu", c.rate_bytes_per_sec, c.burst_bytes);
	CHECK(c.refill_full_ns == BURST_FLOOR_BYTES * 8000000, "refill_full_ns %llu",
	      c.refill_full_ns);
	c = config_for(20000000, 8);
	CHECK(c.burst_bytes == BURST_FLOOR_BYTES, "burst %llu", c.burst_bytes);
	c = config_for(MAX_RATE_BITS, UINT64_MAX);
	CHECK(c.burst_bytes == BURST_CEILING_BYTES, "burst %llu", c.burst_bytes);
	CHECK(c.ecn_band_bytes == BURST_CEILING_BYTES / ECN_BAND_DIVISOR, "band %llu",
	      c.ecn_band_bytes);
	/* the header's ceilings and the control plane's agree */
	CHECK(NATRA_MAX_BURST_BYTES == BURST_CEILING_BYTES, "ceilings differ: %llu vs %llu",
	      NATRA_MAX_BURST_BYTES, BURST_CEILING_BYTES);
	CHECK(NATRA_MAX_EDT_DEBT_BYTES == MAX_EDT_DEBT_BYTES, "debt caps differ");
	/* and 2^32 bytes x 1e9 on either side of 0 fit in 63 bits, with a packet
	 * of 2^32 bytes charged from the floor too */
	CHECK((u128)NATRA_MAX_BURST_BYTES * NATRA_NSEC_PER_SEC + MAX_RATE_BITS / 8 <
		  ((u128)1 << 63),
	      "ceiling x 1e9 does not fit in 63 bits");
	CHECK((u128)(NATRA_MAX_EDT_DEBT_BYTES + (1ULL << 32)) * NATRA_NSEC_PER_SEC <=
		  ((u128)1 << 63),
	      "floor - largest packet does not fit in 63 bits");
	/* the threshold stays below the cells' saturation */
	CHECK(MAX_HEAVY_THRESHOLD_BYTES < NATRA_SKETCH_BYTES_MASK, "threshold cap");
	/* EDT: debt = horizon x rate, refill from -debt */
	c = config_edt(20000000, 0);
	CHECK(c.burst_bytes == 50000 && c.edt_debt_bytes == 50000 && c.mice_debt_bytes == 450000 &&
		  c.handshake_extra_bytes == 800000 && c.mice_reserve_bytes == 25000 &&
		  c.refill_full_ns == 540000000ULL,
	      "EDT at 20 Mbit/s: burst %llu debt %llu mice %llu handshake %llu refill %llu",
	      c.burst_bytes, c.edt_debt_bytes, c.mice_debt_bytes, c.handshake_extra_bytes,
	      c.refill_full_ns);
}

/* ------------------------------------------------------------------------- */
/* the bucket                                                                 */

/* An idle time of k ns adds exactly k x rate byte-ns, whether it comes at once
 * or one nanosecond at a time, from 0 or from the EDT floor. */
static void test_refill_exact(void)
{
	static const __u64 rates_bits[] = {1000ULL,	  1000000ULL,	   100000000ULL,
					   1000000000ULL, 100000000000ULL, MAX_RATE_BITS};
	static const __u64 steps[] = {1, 2, 3, 7, 1000, 123457, 1000000, 999999937};
	const __u64 t0 = 5000000000000ULL;

	for (unsigned i = 0; i < ARRAY_LEN(rates_bits); i++) {
		for (int edt = 0; edt <= 1; edt++) {
			struct natra_config c =
			    edt ? config_edt(rates_bits[i], 0) : config_for(rates_bits[i], 0);
			__s64 full = full_of(&c), from = floor_of(&c);

			for (unsigned j = 0; j < ARRAY_LEN(steps); j++) {
				__u64 k = steps[j];
				__s64 got = bucket_refilled_level(from, t0, t0 + k, &c);
				s128 want = ref_refill(from, t0, t0 + k, &c);

				CHECK((s128)got == want,
				      "rate %llu B/s edt %d, %llu ns from the floor: level %lld",
				      c.rate_bytes_per_sec, edt, k, (long long)got);
				CHECK(got <= full, "above full");
			}

			/* 10000 refills of 1 ns through bucket_charge (0-byte
			 * mice: nothing charged) equal one refill of 10000 ns. */
			{
				struct natra_bucket_state b;
				__s64 once = bucket_refilled_level(from, t0, t0 + 10000, &c);
				__u64 delay;
				int bad = 0;

				memset(&b, 0, sizeof(b));
				b.level = from;
				b.last_ns = t0;
				for (__u64 t = 1; t <= 10000; t++) {
					bucket_charge(&b, &c, t0 + t, 0, NATRA_CLASS_MOUSE, 0, edt,
						      &delay);
					if (b.last_ns != t0 + t)
						bad = 1;
				}
				CHECK(!bad, "rate %llu: last_ns did not follow the clock",
				      c.rate_bytes_per_sec);
				CHECK(
				    b.level == once,
				    "rate %llu edt %d: 10000 x 1 ns gives %lld, 1 x 10000 ns %lld",
				    c.rate_bytes_per_sec, edt, (long long)b.level, (long long)once);
			}
		}
	}

	/* The all-zero state of a new map entry is full at its first packet,
	 * provided the clock is past refill_full_ns. */
	{
		struct natra_config c = config_for(100000000ULL, 0);
		struct natra_bucket_state b;
		enum natra_verdict v;
		__u64 delay;

		memset(&b, 0, sizeof(b));
		v = bucket_charge(&b, &c, c.refill_full_ns, 1500, NATRA_CLASS_HEAVY, 0, 0, &delay);
		CHECK(v == NATRA_VERDICT_PASS, "first packet verdict %d", v);
		CHECK(b.level == full_of(&c) - bns(1500), "level %lld", (long long)b.level);
		CHECK(b.last_ns == c.refill_full_ns, "last_ns %llu", b.last_ns);
	}
}

/* Every rate kubelet accepts, every burst up to the 2^32-byte ceiling, with
 * and without EDT, levels from the floor to full, idle times from 1 ns to u64
 * max: refill and charge equal the 128-bit reference (so nothing wrapped) and
 * the level stays within [floor, full]. */
static void test_no_overflow(void)
{
	static const __u64 rates_bits[] = {
	    1000ULL, /* 1 kbit/s = 125 B/s */
	    8000ULL,
	    64000ULL,
	    1000000ULL,
	    10000000ULL,
	    100000000ULL,
	    1000000000ULL,
	    10000000000ULL,
	    100000000000ULL, /* 100 Gbit/s = 12.5e9 B/s */
	    400000000000ULL,
	    1000000000000ULL,
	    100000000000000ULL,
	    MAX_RATE_BITS, /* 1 Pbit/s */
	    1000000007ULL,
	    7ULL * 1000000000000ULL + 3,
	};
	static const __u64 req_bursts_bits[] = {0, 8, 1048576, 4294967295ULL, UINT64_MAX};
	static const __u64 sizes[] = {
	    0, 1, 64, 1500, 9000, 65535, 65536 + 54 * 44, 512 * 1024, 0xffffffffULL};
	const __u64 day = 86400ULL * NATRA_NSEC_PER_SEC;
	unsigned long cases = 0, bad_ref = 0, bad_range = 0, bad_charge = 0;
	char b1[48], b2[48];

	for (unsigned r = 0; r < ARRAY_LEN(rates_bits); r++) {
		struct natra_config cfgs[2 * ARRAY_LEN(req_bursts_bits) + 4];
		unsigned ncfg = 0;
		__u64 rate = rates_bits[r] / 8;

		for (unsigned q = 0; q < ARRAY_LEN(req_bursts_bits); q++) {
			cfgs[ncfg++] = config_for(rates_bits[r], req_bursts_bits[q]);
			cfgs[ncfg++] = config_edt(rates_bits[r], req_bursts_bits[q]);
		}
		/* the ceiling burst at every rate (larger than the clamp allows at
		 * low rates), with the largest debt too */
		cfgs[ncfg++] = config_raw(rate, NATRA_MAX_BURST_BYTES, 0);
		cfgs[ncfg++] = config_raw(rate, BURST_FLOOR_BYTES, 0);
		cfgs[ncfg++] = config_raw(rate, NATRA_MAX_BURST_BYTES, 10000);
		cfgs[ncfg++] = config_raw(rate, NATRA_MAX_BURST_BYTES, 10000000000ULL);

		for (unsigned k = 0; k < ncfg; k++) {
			const struct natra_config *c = &cfgs[k];
			__s64 full = full_of(c), fl = lowest_floor_of(c);
			int edt = (c->flags & NATRA_CFG_EDT) != 0;
			__u64 elapsed[] = {
			    1,
			    2,
			    999,
			    1000,
			    1000000,
			    NATRA_NSEC_PER_SEC,
			    60 * NATRA_NSEC_PER_SEC,
			    3600 * NATRA_NSEC_PER_SEC,
			    day,
			    365 * day,
			    c->refill_full_ns - 1,
			    c->refill_full_ns,
			    c->refill_full_ns + 1,
			    c->refill_full_ns / 2,
			    UINT64_MAX / 2,
			    UINT64_MAX,
			};
			__s64 levels[] = {fl,	       fl + 1,
					  floor_of(c), floor_of(c) + 1,
					  -1,	       0,
					  1,	       (__s64)c->rate_bytes_per_sec,
					  full / 2,    full - (__s64)c->rate_bytes_per_sec,
					  full - 1,    full};

			for (unsigned e = 0; e < ARRAY_LEN(elapsed); e++) {
				__u64 el = elapsed[e];
				__u64 lasts[] = {0, 123456789ULL, UINT64_MAX - el};

				for (unsigned l = 0; l < ARRAY_LEN(levels); l++) {
					if (levels[l] < fl)
						continue;
					for (unsigned t = 0; t < ARRAY_LEN(lasts); t++) {
						__u64 last = lasts[t], now;
						__s64 got;
						s128 want;

						if (el > UINT64_MAX - last)
							continue;
						now = last + el;
						got =
						    bucket_refilled_level(levels[l], last, now, c);
						want = ref_refill(levels[l], last, now, c);
						cases++;
						if ((s128)got != want && bad_ref++ < 5)
							fprintf(
							    stderr,
							    "FAIL refill: rate %llu burst %llu "
							    "debt %llu level %lld elapsed %llu: "
							    "got %lld want %s\n",
							    c->rate_bytes_per_sec, c->burst_bytes,
							    c->edt_debt_bytes, (long long)levels[l],
							    el, (long long)got, s128_str(want, b1));
						if ((got > full || got < fl) && bad_range++ < 5)
							fprintf(stderr,
								"FAIL level %lld outside [%lld, "
								"%lld]\n",
								(long long)got, (long long)fl,
								(long long)full);

						for (unsigned s = 0; s < ARRAY_LEN(sizes); s++) {
							for (int m = 0; m < 6; m++) {
								struct natra_bucket_state b;
								enum natra_class cls = m % 3;
								int ect = m / 3;
								enum natra_verdict v, wantv;
								__u64 delay, wantd;
								s128 wantl;

								memset(&b, 0, sizeof(b));
								b.level = levels[l];
								b.last_ns = last;
								v = bucket_charge(&b, c, now,
										  sizes[s], cls,
										  ect, edt, &delay);
								wantv = ref_charge(want, sizes[s],
										   cls, ect, edt, c,
										   &wantl, &wantd);
								if ((v != wantv ||
								     (s128)b.level != wantl ||
								     delay != wantd ||
								     b.level > full ||
								     b.level < fl ||
								     b.last_ns != now) &&
								    bad_charge++ < 5)
									fprintf(
									    stderr,
									    "FAIL charge: rate "
									    "%llu burst %llu debt "
									    "%llu level %lld "
									    "elapsed %llu size "
									    "%llu cls %d ect %d: "
									    "verdict %d want %d, "
									    "level %lld want %s, "
									    "delay %llu want "
									    "%llu\n",
									    c->rate_bytes_per_sec,
									    c->burst_bytes,
									    c->edt_debt_bytes,
									    (long long)levels[l],
									    el, sizes[s], cls, ect,
									    v, wantv,
									    (long long)b.level,
									    s128_str(wantl, b2),
									    delay, wantd);
							}
						}
					}
				}
			}
		}
	}
	CHECK(bad_ref == 0, "%lu of %lu refills differ from the 128-bit reference", bad_ref, cases);
	CHECK(bad_range == 0, "%lu of %lu refills left [floor, full]", bad_range, cases);
	CHECK(bad_charge == 0, "%lu charges differ from the 128-bit reference", bad_charge);
	CHECK(cases > 10000, "only %lu cases ran", cases);
}

/* A clock that goes backwards (another CPU refilled with a later reading)
 * neither refills nor moves last_ns back. */
static void test_clock_backwards(void)
{
	struct natra_config c = config_for(1000000000ULL, 0); /* 125 MB/s */
	const __u64 t = 1000000000000ULL;
	__u64 backs[] = {t, t - 1, t - 1000, t / 2, 1, 0};
	struct natra_bucket_state b;
	__u64 delay;

	for (unsigned i = 0; i < ARRAY_LEN(backs); i++) {
		__s64 lvl = full_of(&c) / 3;
		enum natra_verdict v;

		CHECK(bucket_refilled_level(lvl, t, backs[i], &c) == lvl,
		      "now %llu <= last %llu refilled", backs[i], t);
		memset(&b, 0, sizeof(b));
		b.level = lvl;
		b.last_ns = t;
		v = bucket_charge(&b, &c, backs[i], 1500, NATRA_CLASS_MOUSE, 0, 0, &delay);
		CHECK(v == NATRA_VERDICT_PASS, "verdict %d", v);
		CHECK(b.level == lvl - bns(1500), "now %llu: level %lld", backs[i],
		      (long long)b.level);
		CHECK(b.last_ns == t, "now %llu moved last_ns back to %llu", backs[i], b.last_ns);

		/* a drop with an old clock keeps both too */
		b.level = 10;
		v = bucket_charge(&b, &c, backs[i], 1500, NATRA_CLASS_MOUSE, 1, 0, &delay);
		CHECK(v == NATRA_VERDICT_DROP && b.level == 10 && b.last_ns == t,
		      "old-clock drop: verdict %d level %lld last %llu", v, (long long)b.level,
		      b.last_ns);
	}
	memset(&b, 0, sizeof(b));
	b.last_ns = t;
	bucket_charge(&b, &c, t - 500, 0, NATRA_CLASS_MOUSE, 0, 0, &delay);
	bucket_charge(&b, &c, t + 7, 0, NATRA_CLASS_MOUSE, 0, 0, &delay);
	CHECK(b.level == (__s64)(7 * c.rate_bytes_per_sec) && b.last_ns == t + 7,
	      "level %lld last %llu", (long long)b.level, b.last_ns);
}

/* Races, one thread: another CPU's charge lands right before the level's
 * CAS. Lost once: decided again on the new level, with the same refill (the
 * time slice is taken once). Lost every time: committed with an atomic add
 * and decided again on the level the add met: still fits, it stays
 * charged, paced by that level; no longer fits, its cost is given back and
 * it is dropped; a drop stays a drop (its refill added). Another CPU took
 * the time slice first: no refill now, and the slice is left for the next
 * packet. */
/* A bucket state at `level` whose refill clock is `last_ns`, with the next
 * `n` level CASes losing to another CPU's charge of `by`. */
static void race_setup(struct natra_bucket_state *b, __s64 level, __u64 last_ns, int n, __s64 by)
{
	memset(b, 0, sizeof(*b));
	b->level = level;
	b->last_ns = last_ns;
	interfere_n = n;
	interfere_by = by;
	cas_tries = 0;
}

static void test_races(void)
{
	struct natra_config c = config_for(100000000ULL, 0); /* 12.5 MB/s */
	struct natra_config e = config_edt(100000000ULL, 0);
	const __u64 t = 1000000000000ULL, el = 1000; /* 1 us: 12.5 B */
	const __s64 other = -bns(100), cost = bns(1500);
	__s64 lvl = full_of(&c) / 2, refill = (__s64)(el * c.rate_bytes_per_sec);
	struct natra_bucket_state b;
	enum natra_verdict v;
	__u64 delay;

	/* lost once: decided again on the new level, with the same refill */
	race_setup(&b, lvl, t, 1, other);
	v = bucket_charge(&b, &c, t + el, 1500, NATRA_CLASS_MOUSE, 0, 0, &delay);
	CHECK(v == NATRA_VERDICT_PASS && cas_tries == 2 && b.last_ns == t + el &&
		  b.level == lvl + other + refill - cost && b.cas_giveups == 0,
	      "lost once: verdict %d after %lu CAS, level %lld want %lld", v, cas_tries,
	      (long long)b.level, (long long)(lvl + other + refill - cost));

	/* a decision that flips on the retry: the other CPU took the last of
	 * the heavy layer */
	lvl = (__s64)(c.mice_reserve_bytes + c.ecn_band_bytes) * (__s64)NATRA_NSEC_PER_SEC + cost;
	race_setup(&b, lvl, UINT64_MAX, 1, -1);
	v = bucket_charge(&b, &c, t, 1500, NATRA_CLASS_HEAVY, 0, 0, &delay);
	CHECK(v == NATRA_VERDICT_DROP && cas_tries == 1 && b.level == lvl - 1 && b.cas_giveups == 0,
	      "flipped: verdict %d after %lu CAS, level %lld", v, cas_tries, (long long)b.level);

	/* Lost every try: committed with an add and decided again on the
	 * level the add met. Still fits: charged, with the refill once. */
	lvl = full_of(&c) / 2;
	race_setup(&b, lvl, t, NATRA_BUCKET_CAS_TRIES, other);
	v = bucket_charge(&b, &c, t + el, 1500, NATRA_CLASS_MOUSE, 0, 0, &delay);
	CHECK(
	    v == NATRA_VERDICT_PASS && cas_tries == NATRA_BUCKET_CAS_TRIES && b.last_ns == t + el &&
		b.level == lvl + NATRA_BUCKET_CAS_TRIES * other + refill - cost &&
		b.cas_giveups == 1,
	    "gave up, still fits: verdict %d after %lu CAS, level %lld want %lld", v, cas_tries,
	    (long long)b.level, (long long)(lvl + NATRA_BUCKET_CAS_TRIES * other + refill - cost));

	/* with EDT: paced by the level the add met (here 1 ms of the rate
	 * lower than the last try saw) */
	lvl = -(__s64)(e.edt_debt_bytes * NATRA_NSEC_PER_SEC) + cost;
	race_setup(&b, lvl, UINT64_MAX, NATRA_BUCKET_CAS_TRIES, -bns(12500)); /* 1 ms of the rate */
	v = bucket_charge(&b, &e, t, 1500, NATRA_CLASS_MOUSE, 0, 1, &delay);
	CHECK(v == NATRA_VERDICT_PACE && delay == NATRA_BUCKET_CAS_TRIES * 1000000ULL &&
		  b.level == lvl - NATRA_BUCKET_CAS_TRIES * bns(12500) - cost && b.cas_giveups == 1,
	      "paced by the level met: verdict %d delay %llu level %lld", v, delay,
	      (long long)b.level);

	/* ... and no longer fitting there (past the mice horizon): its cost
	 * given back, dropped */
	lvl = floor_of(&e) + cost + bns(150);
	race_setup(&b, lvl, UINT64_MAX, NATRA_BUCKET_CAS_TRIES, other);
	v = bucket_charge(&b, &e, t, 1500, NATRA_CLASS_MOUSE, 0, 1, &delay);
	CHECK(v == NATRA_VERDICT_DROP && delay == 0 &&
		  b.level == lvl + NATRA_BUCKET_CAS_TRIES * other && b.cas_giveups == 1,
	      "gave up, past the horizon at the level met: verdict %d level %lld want %lld", v,
	      (long long)b.level, (long long)(lvl + NATRA_BUCKET_CAS_TRIES * other));

	/* a drop decided in the last try stays a drop; its refill is added */
	lvl = cost / 2;
	race_setup(&b, lvl, t, NATRA_BUCKET_CAS_TRIES, other);
	v = bucket_charge(&b, &c, t + el, 1500, NATRA_CLASS_MOUSE, 0, 0, &delay);
	CHECK(v == NATRA_VERDICT_DROP && delay == 0 && cas_tries == NATRA_BUCKET_CAS_TRIES &&
		  b.last_ns == t + el && b.level == lvl + NATRA_BUCKET_CAS_TRIES * other + refill &&
		  b.cas_giveups == 1,
	      "gave up on a drop: verdict %d after %lu CAS, level %lld want %lld", v, cas_tries,
	      (long long)b.level, (long long)(lvl + NATRA_BUCKET_CAS_TRIES * other + refill));
	lvl = full_of(&c) / 2;

	/* the slice was taken: last_ns moved on under us, no refill now */
	memset(&b, 0, sizeof(b));
	b.level = lvl;
	b.last_ns = t + el / 2;
	v = bucket_charge(&b, &c, t + el / 4, 1500, NATRA_CLASS_MOUSE, 0, 0, &delay);
	CHECK(v == NATRA_VERDICT_PASS && b.level == lvl - cost && b.last_ns == t + el / 2,
	      "behind: level %lld last %llu", (long long)b.level, b.last_ns);
	v = bucket_charge(&b, &c, t + el, 0, NATRA_CLASS_MOUSE, 0, 0, &delay);
	CHECK(b.level == lvl - cost + refill / 2 && b.last_ns == t + el,
	      "the rest of the slice: level %lld want %lld", (long long)b.level,
	      (long long)(lvl - cost + refill / 2));

	/* a refund above full is clamped by the next read, refill or not */
	memset(&b, 0, sizeof(b));
	b.level = full_of(&c);
	b.last_ns = UINT64_MAX;
	bucket_refund(&b, 1500);
	CHECK(b.level == full_of(&c) + cost, "refund: level %lld", (long long)b.level);
	v = bucket_charge(&b, &c, t, 1500, NATRA_CLASS_HEAVY, 0, 0, &delay);
	CHECK(v == NATRA_VERDICT_PASS && b.level == full_of(&c) - cost,
	      "after a refund above full: level %lld", (long long)b.level);
	b.level = full_of(&c) + cost;
	b.last_ns = t;
	v = bucket_charge(&b, &c, t + el, 1500, NATRA_CLASS_HEAVY, 0, 0, &delay);
	CHECK(v == NATRA_VERDICT_PASS && b.level == full_of(&c) - cost,
	      "after a refund above full, refilled: level %lld", (long long)b.level);
}

/* Threads charging one bucket at once, for real: every thread draws its
 * clock from one shared counter (so CPUs see each other's times out of
 * order) and offers twice the rate in all. Whatever interleaving the
 * machine produces, what passes stays within rate x t + burst (+ D), the
 * level stays within [floor, full], and the refills add up to exactly the
 * elapsed time when nothing was clamped. */
struct hammer {
	struct natra_bucket_state *b;
	const struct natra_config *c;
	__u64 *clock, step, packets, passed, tries;
	int id;
};

static void *hammer_run(void *arg)
{
	struct hammer *h = arg;
	__u64 delay;

	cas_tries = 0;
	for (__u64 i = 0; i < h->packets; i++) {
		__u64 now = __sync_fetch_and_add(h->clock, h->step);
		enum natra_class cls = (i + (__u64)h->id) % 3 == 0;
		enum natra_verdict v = bucket_charge(h->b, h->c, now, 1500, cls, (int)(i & 1),
						     (h->c->flags & NATRA_CFG_EDT) != 0, &delay);

		if (v != NATRA_VERDICT_DROP)
			h->passed += 1500;
	}
	h->tries = cas_tries;
	return NULL;
}

static void test_threads(void)
{
	enum { THREADS = 4 };

	for (int edt = 0; edt <= 1; edt++) {
		struct natra_config c =
		    edt ? config_edt(1000000000ULL, 0) : config_for(1000000000ULL, 0);
		const __u64 t0 = 7 * NATRA_NSEC_PER_SEC, packets = 300000;
		/* THREADS x 1500 B per THREADS steps at twice the rate */
		const __u64 step = 1500 * NATRA_NSEC_PER_SEC / (2 * c.rate_bytes_per_sec);
		struct natra_bucket_state b;
		struct hammer h[THREADS];
		pthread_t th[THREADS];
		__u64 clock = t0, passed = 0, tries = 0;
		s128 bound;

		memset(&b, 0, sizeof(b));
		b.level = full_of(&c);
		b.last_ns = t0;
		for (int i = 0; i < THREADS; i++) {
			h[i] = (struct hammer){.b = &b,
					       .c = &c,
					       .clock = &clock,
					       .step = step,
					       .packets = packets,
					       .id = i};
			if (pthread_create(&th[i], NULL, hammer_run, &h[i]))
				abort();
		}
		for (int i = 0; i < THREADS; i++) {
			pthread_join(th[i], NULL);
			passed += h[i].passed;
			tries += h[i].tries;
		}
		bound = (s128)c.rate_bytes_per_sec * (clock - t0) + full_of(&c) - floor_of(&c);
		CHECK((s128)passed * NATRA_NSEC_PER_SEC <= bound,
		      "threads, edt %d: %llu bytes passed beyond rate x t + burst (+ D)", edt,
		      passed);
		CHECK(passed * NATRA_NSEC_PER_SEC >= (__u64)(clock - t0) * c.rate_bytes_per_sec / 2,
		      "threads, edt %d: only %llu bytes passed", edt, passed);
		CHECK(b.level >= floor_of(&c) && b.level <= full_of(&c) + bns(1500) * THREADS,
		      "threads, edt %d: level %lld", edt, (long long)b.level);
		printf("  %d threads on one bucket (EDT %d): %.4f of rate x t + burst passed, "
		       "%llu CAS for %llu packets\n",
		       THREADS, edt,
		       (double)passed * 1e9 /
			   ((double)c.rate_bytes_per_sec * (double)(clock - t0) +
			    (double)(full_of(&c) - floor_of(&c))),
		       tries, THREADS * packets);
	}
}

/* The layers, case by case, frozen (no refill): mice down to the floor, heavy
 * non-ECT down to R + E, heavy ECT down to R with CE, EDT below R. */
static void test_layers(void)
{
	struct natra_config c = config_for(100000000ULL, 0);
	struct natra_config ce = config_edt(100000000ULL, 0);
	const __u64 size = 1500;
	const __s64 cost = bns(size), R = bns(c.mice_reserve_bytes), E = bns(c.ecn_band_bytes);
	const __s64 D = bns(ce.edt_debt_bytes), full = full_of(&c);
	const __s64 Re = bns(ce.mice_reserve_bytes), Ee = bns(ce.ecn_band_bytes);
	const __s64 Mi = (__s64)(ce.mice_horizon_ns * ce.rate_bytes_per_sec);
	const enum natra_class M = NATRA_CLASS_MOUSE, H = NATRA_CLASS_HEAVY;
	const enum natra_verdict P = NATRA_VERDICT_PASS, C = NATRA_VERDICT_PASS_CE,
				 X = NATRA_VERDICT_DROP, Z = NATRA_VERDICT_PACE,
				 W = NATRA_VERDICT_PACE_CE;
	struct {
		int edt;
		__s64 level;
		enum natra_class cls;
		int ect;
		enum natra_verdict want;
	} cases[] = {
	    /* mice: anything down to 0, never marked */
	    {0, full, M, 0, P},
	    {0, cost + R + E - 1, M, 1, P},
	    {0, cost + R - 1, M, 0, P},
	    {0, cost, M, 0, P},
	    {0, cost, M, 1, P},
	    {0, cost - 1, M, 1, X},
	    {0, 0, M, 0, X},
	    /* heavy, no EDT */
	    {0, full, H, 0, P},
	    {0, cost + R + E, H, 0, P},
	    {0, cost + R + E, H, 1, P}, /* above the band: not marked */
	    {0, cost + R + E - 1, H, 0, X},
	    {0, cost + R + E - 1, H, 1, C},
	    {0, cost + R, H, 1, C},
	    {0, cost + R - 1, H, 1, X},
	    {0, cost + R - 1, H, 0, X},
	    {0, cost, H, 1, X},
	    {0, 0, H, 1, X},
	    /* EDT on (its own, smaller R and E): heavy non-ECT passes in the
	     * band, is paced below R; ECT paced past the CE delay is marked */
	    {1, cost + Re + Ee - 1, H, 0, P},
	    {1, cost + Re + Ee - 1, H, 1, C},
	    {1, cost + Re, H, 0, P},
	    {1, cost + Re - 1, H, 0, Z},
	    {1, cost + Re - 1, H, 1, Z}, /* 1 ns: under the CE delay */
	    {1, 0, H, 0, Z},
	    {1, 0, H, 1, W},		 /* (R + cost) / rate = 5.12 ms > 5 ms */
	    {1, cost + Re - D, H, 0, Z}, /* the heavy horizon exactly */
	    {1, cost + Re - D - 1, H, 0, X},
	    /* mice go below 0 unpaced with EDT, down to -D; then paced within
	     * the mice horizon; dropped beyond */
	    {1, 0, M, 0, P},
	    {1, cost - D, M, 0, P},
	    {1, cost - D - 1, M, 0, Z},
	    {1, cost - D - Mi, M, 0, Z},
	    {1, cost - D - Mi - 1, M, 0, X},
	};

	CHECK(c.ecn_band_bytes == c.burst_bytes / 4 && c.mice_reserve_bytes == c.burst_bytes / 4 &&
		  c.ecn_band_bytes > size,
	      "band %llu reserve %llu burst %llu", c.ecn_band_bytes, c.mice_reserve_bytes,
	      c.burst_bytes);
	for (unsigned i = 0; i < ARRAY_LEN(cases); i++) {
		const struct natra_config *cfg = cases[i].edt ? &ce : &c;
		struct natra_bucket_state b;
		enum natra_verdict v;
		__s64 want_level = cases[i].want == X ? cases[i].level : cases[i].level - cost;
		__u64 delay;

		memset(&b, 0, sizeof(b));
		b.level = cases[i].level;
		b.last_ns = UINT64_MAX;
		v = bucket_charge(&b, cfg, 42, size, cases[i].cls, cases[i].ect, cases[i].edt,
				  &delay);
		CHECK(v == cases[i].want && b.level == want_level && b.last_ns == UINT64_MAX,
		      "case %u (edt %d level %lld cls %d ect %d): verdict %d want %d, level "
		      "%lld want %lld",
		      i, cases[i].edt, (long long)cases[i].level, cases[i].cls, cases[i].ect, v,
		      cases[i].want, (long long)b.level, (long long)want_level);
		CHECK((v == Z || v == W) == (delay != 0), "case %u: delay %llu with verdict %d", i,
		      delay, v);
	}
}

/* EDT in units: bytes and bytes/s give ns. At 1 MB/s a 1000-byte packet is
 * 1 ms; from a bucket at exactly R the first heavy packet departs 1 ms later,
 * each next one 1 ms after the one before (t_next = t_last + len x 1e9 /
 * rate, Cilium's rule), until the horizon; then drops, uncharged. */
static void test_edt_units_and_horizon(void)
{
	struct natra_config c = config_raw(1000000, 500000, 250); /* 1 MB/s, 500 kB */
	struct natra_bucket_state b;
	__u64 delay, prev = 0;
	int bad = 0, n = 0;
	enum natra_verdict v;

	CHECK(c.edt_horizon_ns == 250000000ULL && c.edt_debt_bytes == 250000,
	      "horizon %llu debt %llu", c.edt_horizon_ns, c.edt_debt_bytes);
	memset(&b, 0, sizeof(b));
	b.level = bns(c.mice_reserve_bytes);
	b.last_ns = UINT64_MAX; /* frozen */
	for (;;) {
		v = bucket_charge(&b, &c, 1000, 1000, NATRA_CLASS_HEAVY, 0, 1, &delay);
		if (v != NATRA_VERDICT_PACE)
			break;
		n++;
		if (delay != (__u64)n * 1000000ULL)
			bad++;
		prev = delay;
	}
	CHECK(!bad, "%d paced delays were not n x 1 ms", bad);
	CHECK(n == 250 && prev == 250000000ULL, "paced %d packets, last delay %llu", n, prev);
	CHECK(v == NATRA_VERDICT_DROP && b.level == bns(c.mice_reserve_bytes) - bns(250 * 1000),
	      "past the horizon: verdict %d, level %lld", v, (long long)b.level);
	/* an odd size rounds the delay up to the next ns */
	b.level = bns(c.mice_reserve_bytes);
	v = bucket_charge(&b, &c, 1000, 1, NATRA_CLASS_HEAVY, 0, 1, &delay);
	CHECK(v == NATRA_VERDICT_PACE && delay == 1000, "1 byte at 1 MB/s: %llu ns", delay);
	b.level = bns(c.mice_reserve_bytes);
	c.rate_bytes_per_sec = 3;
	c.edt_horizon_ns = NATRA_NSEC_PER_SEC;
	v = bucket_charge(&b, &c, 1000, 1, NATRA_CLASS_HEAVY, 0, 1, &delay);
	CHECK(v == NATRA_VERDICT_PACE && delay == 333333334ULL, "1 byte at 3 B/s: %llu ns", delay);

	/* with the clock running, arrivals at twice the rate: departures are
	 * spaced exactly len / rate once pacing starts */
	{
		struct natra_config c2 = config_raw(1000000, 500000, 250);
		const __u64 t0 = 1000000000ULL;
		__u64 last_dep = 0, t;
		int spaced_bad = 0, paced = 0;

		memset(&b, 0, sizeof(b));
		b.level = bns(c2.mice_reserve_bytes);
		b.last_ns = t0;
		for (t = t0; t < t0 + 100000000ULL; t += 500000) {
			v = bucket_charge(&b, &c2, t, 1000, NATRA_CLASS_HEAVY, 0, 1, &delay);
			if (v != NATRA_VERDICT_PACE)
				continue;
			if (paced++ && t + delay - last_dep != 1000000ULL)
				spaced_bad++;
			last_dep = t + delay;
		}
		CHECK(paced > 150 && !spaced_bad, "%d paced, %d not 1 ms apart", paced, spaced_bad);
	}
}

/* Handshakes (a mouse's SYN or SYN-ACK) at 20 Mbit/s with EDT: below the
 * mice floor a data mouse is paced within the 180 ms mice horizon and
 * dropped beyond it; a handshake is paced on to the 500 ms handshake
 * horizon, down to -(D + H), and dropped, uncharged, only past that. The
 * level below -(D + M) it leaves drops mice and heavy packets until the
 * refill brings it back, and an idle refill_full_ns fills the bucket from
 * there. */
static void test_handshakes(void)
{
	struct natra_config c = config_edt(20000000, 0); /* 2.5 MB/s */
	struct natra_bucket_state b;
	const __u64 size = 74, now = 1000;
	const __s64 mf = -bns(c.edt_debt_bytes), cost = bns(size);
	__u64 delay;
	enum natra_verdict v;
	/* a level whose packet waits `ms` past the mice floor: (mf + cost - level) / rate */
	__s64 at_ms[] = {180, 181, 499, 500, 501};
	enum natra_verdict want_mouse[] = {NATRA_VERDICT_PACE, NATRA_VERDICT_DROP,
					   NATRA_VERDICT_DROP, NATRA_VERDICT_DROP,
					   NATRA_VERDICT_DROP};
	enum natra_verdict want_hs[] = {NATRA_VERDICT_PACE, NATRA_VERDICT_PACE, NATRA_VERDICT_PACE,
					NATRA_VERDICT_PACE, NATRA_VERDICT_DROP};

	for (unsigned i = 0; i < ARRAY_LEN(at_ms); i++) {
		__s64 level = mf + cost - at_ms[i] * 1000000LL * (__s64)c.rate_bytes_per_sec;

		for (int hs = 0; hs < 2; hs++) {
			memset(&b, 0, sizeof(b));
			b.level = level;
			b.last_ns = UINT64_MAX; /* frozen */
			v = bucket_charge(&b, &c, now, size,
					  hs ? NATRA_CLASS_HANDSHAKE : NATRA_CLASS_MOUSE, 0, 1,
					  &delay);
			CHECK(v == (hs ? want_hs : want_mouse)[i], "%s waiting %lld ms: verdict %d",
			      hs ? "handshake" : "mouse", (long long)at_ms[i], v);
			if (v == NATRA_VERDICT_PACE)
				CHECK(delay == (__u64)at_ms[i] * 1000000ULL &&
					  b.level == level - cost,
				      "%lld ms: delay %llu, level %lld", (long long)at_ms[i], delay,
				      (long long)b.level);
			else
				CHECK(delay == 0 && b.level == level,
				      "%lld ms: dropped but charged", (long long)at_ms[i]);
		}
	}
	/* left at 499 ms (below -(D + M)): mice and heavy packets drop, uncharged */
	memset(&b, 0, sizeof(b));
	b.level = mf - 499 * 1000000LL * (__s64)c.rate_bytes_per_sec;
	b.last_ns = UINT64_MAX;
	CHECK(b.level < floor_of(&c) && b.level >= lowest_floor_of(&c), "level %lld",
	      (long long)b.level);
	for (int cls = 0; cls < 2; cls++) {
		__s64 before = b.level;

		v = bucket_charge(&b, &c, now, 1500, cls, 0, 1, &delay);
		CHECK(v == NATRA_VERDICT_DROP && b.level == before, "class %d below -(D + M): %d",
		      cls, v);
	}
	/* idle from the lowest floor: 1 ms short of refill_full_ns is 1 ms of
	 * the rate short of full (no shortcut to full from a higher floor) */
	b.level = lowest_floor_of(&c);
	b.last_ns = now;
	v = bucket_charge(&b, &c, now + c.refill_full_ns - 1000000, 0, NATRA_CLASS_MOUSE, 0, 1,
			  &delay);
	CHECK(v == NATRA_VERDICT_PASS &&
		  b.level == full_of(&c) - 1000000LL * (__s64)c.rate_bytes_per_sec,
	      "refilled to %lld of %lld", (long long)b.level, (long long)full_of(&c));
}

enum traffic { NOT_ECT, ALL_ECT, MIXED };
static const char *const traffic_name[] = {"not-ECT", "ECT", "mixed"};

/* One heavy flow offered at twice the rate in 1500-byte packets, evenly
 * spaced, from a full bucket, through the whole policy (so it starts as a
 * mouse): what passes is rate x t + burst at most, and at least rate x t +
 * burst minus what heavy traffic may never spend (R, + E for non-ECT) minus
 * a packet or two. */
static void simulate(__u64 rate_bits, enum traffic tr)
{
	const __u64 size = 1500;
	struct natra_config c = config_for(rate_bits, 0);
	__u64 rate = c.rate_bytes_per_sec;
	u128 dur_ns = (u128)c.burst_bytes * NATRA_NSEC_PER_SEC * 4 / rate;
	u128 n;
	__u64 t0 = 1000000000000ULL;
	struct sim_dir s;
	struct natra_flow_key k = key_v4(0x0a000001, 0x0a000002, 40000, 5201, 6);
	u128 passed = 0, ce = 0, dropped = 0;
	u128 q_passed[4] = {0}, q_ce[4] = {0}, q_plain_pass_non_ect[4] = {0};
	__u64 t_last = t0;
	char b1[48], b2[48], b3[48];

	if (dur_ns < NATRA_NSEC_PER_SEC)
		dur_ns = NATRA_NSEC_PER_SEC;
	if (dur_ns > 20 * NATRA_NSEC_PER_SEC)
		dur_ns = 20 * NATRA_NSEC_PER_SEC;
	n = dur_ns * 2 * rate / ((u128)size * NATRA_NSEC_PER_SEC);
	sim_init(&s, c, t0);

	for (u128 i = 0; i < n; i++) {
		__u64 now = t0 + (__u64)(i * size * NATRA_NSEC_PER_SEC / (2 * (u128)rate));
		int ect = tr == ALL_ECT || (tr == MIXED && (i & 3));
		unsigned q = (unsigned)(i * 4 / n);
		struct natra_decision d = sim_packet(&s, &k, now, size, ect);

		t_last = now;
		if (d.verdict == NATRA_VERDICT_DROP) {
			dropped += size;
			continue;
		}
		passed += size;
		q_passed[q] += size;
		if (d.verdict == NATRA_VERDICT_PASS_CE) {
			ce += size;
			q_ce[q] += size;
		}
		if (!ect)
			q_plain_pass_non_ect[q] += size;
	}

	{
		s128 t = (s128)(t_last - t0);
		s128 got = (s128)passed * NATRA_NSEC_PER_SEC;
		s128 upper = (s128)rate * t + full_of(&c);
		s128 left = tr == NOT_ECT   ? c.mice_reserve_bytes + c.ecn_band_bytes + size
			    : tr == ALL_ECT ? c.mice_reserve_bytes + size
					    : c.mice_reserve_bytes + 2 * size;
		s128 lower = (s128)rate * t + ((s128)c.burst_bytes - left) * NATRA_NSEC_PER_SEC;

		CHECK(got <= upper, "rate %llu B/s %s: passed %s byte-ns > rate x t + burst %s",
		      rate, traffic_name[tr], s128_str(got, b1), s128_str(upper, b2));
		CHECK(got >= lower,
		      "rate %llu B/s %s: passed %s byte-ns < rate x t + burst - what may stay %s",
		      rate, traffic_name[tr], s128_str(got, b1), s128_str(lower, b2));
		CHECK(dropped > 0 && passed + dropped == n * size, "rate %llu %s: dropped %s of %s",
		      rate, traffic_name[tr], s128_str((s128)dropped, b1),
		      s128_str((s128)(n * size), b3));
		if (tr == NOT_ECT) {
			CHECK(ce == 0, "rate %llu: CE bytes on non-ECT traffic", rate);
		} else {
			CHECK(q_ce[3] == q_passed[3] && q_passed[3] > 0,
			      "rate %llu %s: last quarter passed %s, CE-marked %s", rate,
			      traffic_name[tr], s128_str((s128)q_passed[3], b1),
			      s128_str((s128)q_ce[3], b2));
			if (tr == MIXED)
				CHECK(q_plain_pass_non_ect[3] == 0,
				      "rate %llu: non-ECT bytes passed in the last quarter", rate);
		}
		printf(
		    "  heavy-only %-14llu B/s %-7s: passed %.6f of rate x t + burst, CE %.1f%%\n",
		    rate, traffic_name[tr], (double)got / (double)upper,
		    passed ? 100.0 * (double)ce / (double)passed : 0.0);
	}
	sim_free(&s);
}

static void test_simulation(void)
{
	static const __u64 rates_bits[] = {1000000ULL, 20000000ULL, 100000000ULL, 1000000000ULL,
					   10000000000ULL};

	for (unsigned r = 0; r < ARRAY_LEN(rates_bits); r++)
		for (int tr = NOT_ECT; tr <= MIXED; tr++)
			simulate(rates_bits[r], (enum traffic)tr);
}

/* ------------------------------------------------------------------------- */
/* the sketch                                                                 */

/* Epochs: none, one or two+ epochs on; a start in the future freezes it. */
static void test_epochs(void)
{
	struct natra_config c = config_for(20000000ULL, 0);
	struct natra_bucket_state b;
	const __u64 E = c.epoch_ns, t0 = 7 * NATRA_NSEC_PER_SEC;

	CHECK(E == 500000000ULL, "epoch %llu", E);
	memset(&b, 0, sizeof(b));
	b.epoch = 5;
	b.epoch_start_ns = t0;
	b.heavy_seen = 0xf0;
	CHECK(!sketch_advance_epoch(&b, &c, t0 + E - 1) && b.epoch == 5, "advanced early");
	CHECK(sketch_advance_epoch(&b, &c, t0 + E) && b.epoch == 6 && b.epoch_start_ns == t0 + E &&
		  b.heavy_seen == 0 && b.heavy_seen_prev == 0xf0,
	      "one epoch: epoch %u start %llu", b.epoch, b.epoch_start_ns);
	CHECK(sketch_advance_epoch(&b, &c, t0 + 2 * E + E / 2) && b.epoch == 7 &&
		  b.epoch_start_ns == t0 + 2 * E,
	      "one and a half: epoch %u start %llu", b.epoch, b.epoch_start_ns);
	CHECK(sketch_advance_epoch(&b, &c, t0 + 10 * E + 3) && b.epoch == 9 &&
		  b.epoch_start_ns == t0 + 10 * E + 3 && b.heavy_seen_prev == 0,
	      "many: epoch %u start %llu", b.epoch, b.epoch_start_ns);
	b.epoch_start_ns = UINT64_MAX;
	CHECK(!sketch_advance_epoch(&b, &c, UINT64_MAX - 1) && b.epoch == 9, "frozen advanced");
	/* the 24-bit epoch wraps, and ages are taken modulo 2^24 */
	b.epoch = NATRA_SKETCH_EPOCH_MASK;
	b.epoch_start_ns = 0;
	sketch_advance_epoch(&b, &c, E);
	CHECK(b.epoch == 0, "epoch %u after wrap", b.epoch);
	CHECK(sketch_cell_bytes(sketch_cell(NATRA_SKETCH_EPOCH_MASK, 1000), 0) == 500,
	      "age across the wrap");
	/* decay: full, half, none */
	CHECK(sketch_cell_bytes(sketch_cell(40, 1001), 40) == 1001, "same epoch");
	CHECK(sketch_cell_bytes(sketch_cell(40, 1001), 41) == 500, "one later");
	CHECK(sketch_cell_bytes(sketch_cell(40, 1001), 42) == 0, "two later");
	CHECK(sketch_cell_bytes(sketch_cell(40, 1001), 39) == 0, "from the future");
	CHECK(sketch_cell_bytes(sketch_cell(3, UINT64_MAX), 3) == NATRA_SKETCH_BYTES_MASK,
	      "saturates");
}

/* Mouse, heavy, light again: a flow under the threshold stays a mouse; past
 * it, heavy; idle one epoch, half of it is remembered; idle two, none. */
static void test_mouse_heavy_light(void)
{
	struct natra_config c = config_for(20000000ULL, 0); /* T = 312500 B */
	struct sim_dir s;
	struct natra_flow_key k = key_v4(0x0a000001, 0x0a000002, 40000, 80, 6);
	const __u64 t0 = 100 * NATRA_NSEC_PER_SEC, T = c.heavy_threshold_bytes;
	__u64 sent = 0, now = t0;
	struct natra_decision d;
	int first_heavy = -1, i;

	CHECK(T == 312500, "threshold %llu", T);
	sim_init(&s, c, t0);
	s.b.level = full_of(&c) * 0 + bns(c.burst_bytes); /* plenty: nothing drops */
	c.burst_bytes = NATRA_MAX_BURST_BYTES;
	s.c.burst_bytes = NATRA_MAX_BURST_BYTES;
	s.b.level = full_of(&s.c);
	for (i = 0; i < 400; i++) {
		d = sim_packet(&s, &k, now, 1000, 0);
		sent += 1000;
		CHECK(d.verdict == NATRA_VERDICT_PASS, "packet %d dropped", i);
		CHECK(d.estimate == sent, "packet %d: estimate %llu, sent %llu (alone, exact)", i,
		      d.estimate, sent);
		if (d.cls == NATRA_CLASS_HEAVY && first_heavy < 0)
			first_heavy = i;
		CHECK(d.cls == (sent > T ? NATRA_CLASS_HEAVY : NATRA_CLASS_MOUSE),
		      "packet %d at %llu bytes: class %d", i, sent, d.cls);
	}
	CHECK(first_heavy == 312, "heavy from packet %d", first_heavy);
	/* one epoch idle: half remembered, still heavy (200 kB < T < 400 kB?) */
	now = t0 + c.epoch_ns;
	d = sim_packet(&s, &k, now, 1000, 0);
	CHECK(d.estimate == 200000 + 1000 && d.cls == NATRA_CLASS_MOUSE,
	      "one epoch later: estimate %llu class %d", d.estimate, d.cls);
	/* make it heavy again, then two epochs idle: forgotten */
	for (i = 0; i < 200; i++)
		d = sim_packet(&s, &k, now, 1000, 0);
	CHECK(d.cls == NATRA_CLASS_HEAVY && d.estimate == 401000, "heavy again: %llu", d.estimate);
	now += 2 * c.epoch_ns;
	d = sim_packet(&s, &k, now, 1000, 0);
	CHECK(d.estimate == 1000 && d.cls == NATRA_CLASS_MOUSE, "two epochs later: %llu class %d",
	      d.estimate, d.cls);
	/* a steady flow at rate r: its estimate stays within [r x E, 2 r x E] */
	{
		__u64 r = c.rate_bytes_per_sec, lo = UINT64_MAX, hi = 0;

		for (__u64 t = now; t < now + 10 * NATRA_NSEC_PER_SEC; t += 1000000) {
			d = sim_packet(&s, &k, t, r / 1000, 0);
			if (t >= now + 6 * NATRA_NSEC_PER_SEC) {
				lo = d.estimate < lo ? d.estimate : lo;
				hi = d.estimate > hi ? d.estimate : hi;
			}
		}
		CHECK(lo >= r * c.epoch_ns / NATRA_NSEC_PER_SEC - r / 1000 &&
			  hi <= 2 * r * c.epoch_ns / NATRA_NSEC_PER_SEC,
		      "steady flow at %llu B/s: estimate in [%llu, %llu]", r, lo, hi);
		printf("  steady flow at %llu B/s, epoch %llu ms: estimate in [%llu, %llu] B, "
		       "threshold %llu B\n",
		       r, c.epoch_ns / 1000000, lo, hi, T);
	}
	sim_free(&s);
}

/* The exact per-flow counter with the sketch's decay rule. */
struct exact {
	__u32 epoch;
	__u64 bytes;
};

/* Conservative update never underestimates: against an exact decayed count
 * per flow, over random traffic of many flows and a clock that skips
 * epochs, the estimate is never below it. Also reports the mean error. */
static double sketch_never_underestimates(__u32 depth)
{
	struct natra_config c = config_for(100000000ULL, 0);
	enum { FLOWS = 3000 };
	static struct exact ex[FLOWS];
	struct sim_dir s;
	__u64 now = 50 * NATRA_NSEC_PER_SEC;
	unsigned long under = 0, checks = 0;
	double err = 0;

	c.sketch_depth = depth; /* rows past it alias row 0, and are skipped */
	sim_init(&s, c, now);
	s.c.burst_bytes = NATRA_MAX_BURST_BYTES;
	s.b.level = full_of(&s.c);
	memset(ex, 0, sizeof(ex));
	for (int i = 0; i < 400000; i++) {
		/* Zipf-ish: a few flows send a lot */
		__u32 f = (__u32)(rng() % FLOWS);
		__u64 len = 64 + rng() % 1437;
		struct natra_flow_key k;
		struct natra_decision d;
		__u64 exact;

		if (rng() % 4 == 0)
			f %= 10;
		k = key_v4(0x0a000000 + f, 0x0a630001, (__u16)(1024 + f), 443, 6);
		now += rng() % 20000;
		if (rng() % 100000 == 0)
			now += (rng() % 3) * c.epoch_ns; /* skip epochs now and then */
		d = sim_packet(&s, &k, now, len, 0);
		exact = sketch_cell_bytes(sketch_cell(ex[f].epoch, ex[f].bytes), s.b.epoch) + len;
		ex[f].epoch = s.b.epoch;
		ex[f].bytes = exact;
		checks++;
		if (d.estimate < exact && under++ < 5)
			fprintf(stderr, "FAIL flow %u: estimate %llu < exact %llu\n", f, d.estimate,
				exact);
		err += (double)(d.estimate - exact);
	}
	CHECK(under == 0, "%lu of %lu estimates below the exact count", under, checks);
	printf("  sketch %ux%u, %d flows: mean overestimate %.0f B (threshold %llu B)\n",
	       c.sketch_depth, c.sketch_width, FLOWS, err / (double)checks,
	       c.heavy_threshold_bytes);
	sim_free(&s);
	return err / (double)checks;
}

/* Every depth; more rows, each read, must tighten the estimate. */
static void test_sketch_never_underestimates(void)
{
	static const __u32 depths[] = {1, 2, DEFAULT_SKETCH_DEPTH, 7, NATRA_SKETCH_MAX_DEPTH};
	double over[ARRAY_LEN(depths)];

	for (unsigned i = 0; i < ARRAY_LEN(depths); i++)
		over[i] = sketch_never_underestimates(depths[i]);
	CHECK(over[4] < over[2] && over[2] < over[1] && over[1] < over[0],
	      "overestimate by depth 1, 2, 4, 8: %.0f %.0f %.0f %.0f", over[0], over[1], over[2],
	      over[4]);
}

/* Flips every single bit of `a` that `flow_hash` reads, one at a time
 * (skip_low: the low 64 bits of each address, which only IPv6 keys hash);
 * counts hashes left unchanged and output bits flipped. */
static void flip_each_key_bit(const struct natra_flow_key *a, int skip_low, int *same,
			      unsigned long *flips, unsigned long *trials)
{
	const unsigned end = offsetof(struct natra_flow_key, ethertype) + 2;

	for (unsigned byte = 0; byte < end; byte++) {
		int low = (byte >= offsetof(struct natra_flow_key, saddr[2]) &&
			   byte < offsetof(struct natra_flow_key, daddr[0])) ||
			  (byte >= offsetof(struct natra_flow_key, daddr[2]) &&
			   byte < offsetof(struct natra_flow_key, sport));

		if (skip_low && low)
			continue;
		for (int bit = 0; bit < 8; bit++) {
			struct natra_flow_key b = *a;
			__u64 d;

			((unsigned char *)&b)[byte] ^= (unsigned char)(1 << bit);
			d = flow_hash(a) ^ flow_hash(&b);
			*same += !d;
			*flips += (unsigned long)__builtin_popcountll(d);
			(*trials)++;
		}
	}
}

/* The flow hash: all 128 bits of IPv6 addresses count, ports and protocol
 * count, and single-bit changes flip about half the output bits, in IPv6
 * keys and in IPv4 ones (which skip the addresses' low words). */
static void test_flow_hash(void)
{
	struct natra_flow_key a, b, a4 = key_v4(0x0200000a, 0x0100000a, 0x409c, 0x5114, 6);
	unsigned long flips = 0, trials = 0, flips4 = 0, trials4 = 0;
	int same = 0, same4 = 0;

	memset(&a, 0, sizeof(a));
	a.family = NATRA_FLOW_IPV6;
	a.saddr[0] = 0x000080fd;
	a.saddr[3] = 0x01000000;
	a.daddr[0] = 0x000080fd;
	a.daddr[3] = 0x02000000;
	a.sport = 0x409c;
	a.dport = 0x5114;
	a.proto = 6;
	flip_each_key_bit(&a, 0, &same, &flips, &trials);
	CHECK(same == 0, "%d single-bit key changes kept the hash", same);
	CHECK(flips > trials * 28 && flips < trials * 36,
	      "avalanche: %.2f of 64 output bits flip per input bit", (double)flips / trials);
	flip_each_key_bit(&a4, 1, &same4, &flips4, &trials4);
	CHECK(same4 == 0, "IPv4: %d single-bit key changes kept the hash", same4);
	CHECK(flips4 > trials4 * 28 && flips4 < trials4 * 36,
	      "IPv4 avalanche: %.2f of 64 output bits flip per input bit",
	      (double)flips4 / trials4);
	/* the same bit flipped in two address words at once: the words' mixes
	 * are summed, and must not cancel (a linear mix per word would, at the
	 * top bit of each 64-bit word) */
	{
		int cancelled = 0;

		for (int i = 0; i < 8; i++)
			for (int j = i + 1; j < 8; j++)
				for (int bit = 0; bit < 32; bit++) {
					b = a;
					(i < 4 ? b.saddr : b.daddr)[i % 4] ^= 1u << bit;
					(j < 4 ? b.saddr : b.daddr)[j % 4] ^= 1u << bit;
					cancelled += flow_hash(&a) == flow_hash(&b);
				}
		CHECK(cancelled == 0, "%d two-word bit flips kept the hash", cancelled);
	}
	/* high 96 bits of each address */
	for (int w = 0; w < 3; w++) {
		b = a;
		b.saddr[w] ^= 0x00100000;
		CHECK(flow_hash(&a) != flow_hash(&b), "saddr word %d ignored", w);
		b = a;
		b.daddr[w] ^= 0x00000001;
		CHECK(flow_hash(&a) != flow_hash(&b), "daddr word %d ignored", w);
	}
	/* sequential ports spread evenly over a row's columns (chi-square) */
	{
		enum { W = 128, N = 128 * 200 };
		static unsigned hist[NATRA_SKETCH_MAX_DEPTH][W];
		double worst = 0;

		memset(hist, 0, sizeof(hist));
		for (int i = 0; i < N; i++) {
			struct natra_flow_key k = key_v4(0x0a000002, 0x0a000001, (__u16)i, 80, 6);
			__u64 h = flow_hash(&k);

			for (__u32 r = 0; r < NATRA_SKETCH_MAX_DEPTH; r++)
				hist[r][sketch_column(h, r, 64 - 7)]++;
		}
		for (int r = 0; r < NATRA_SKETCH_MAX_DEPTH; r++) {
			double chi = 0, e = (double)N / W;

			for (int j = 0; j < W; j++)
				chi += ((double)hist[r][j] - e) * ((double)hist[r][j] - e) / e;
			worst = chi > worst ? chi : worst;
		}
		/* 127 degrees of freedom: p = 0.001 at ~181 */
		CHECK(worst < 181, "columns not uniform: chi-square %.1f", worst);
	}
	/* rows are independent: two flows sharing a column in row 0 rarely share
	 * one in row 1 */
	{
		int both = 0, first = 0;

		for (int i = 0; i < 20000; i++) {
			struct natra_flow_key k1 = key_v4(0x0a000001, 1, (__u16)i, 80, 17);
			struct natra_flow_key k2 =
			    key_v4(0x0a000001, 1, (__u16)(i + 20000), 80, 17);
			__u64 h1 = flow_hash(&k1), h2 = flow_hash(&k2);

			if (sketch_column(h1, 0, 57) == sketch_column(h2, 0, 57)) {
				first++;
				both += sketch_column(h1, 1, 57) == sketch_column(h2, 1, 57);
			}
		}
		CHECK(first > 60 && both <= 5, "row 0 collisions %d, of which row 1 too %d", first,
		      both);
	}
}

/* 10,000 light flows at the default sketch size on top of two elephants,
 * with as many bytes as the bucket lets through in a window: the fraction
 * of light flows taken for heavy. */
static void test_false_heavy(void)
{
	struct natra_config c = config_for(100000000ULL, 0);
	enum { FLOWS = 10000 };
	struct sim_dir s;
	struct natra_flow_key big1 = key_v4(0x0a000001, 0x0a000063, 1, 2, 6);
	struct natra_flow_key big2 = key_v4(0x0a000001, 0x0a000063, 3, 4, 6);
	__u64 now = 10 * NATRA_NSEC_PER_SEC, light_bytes = 0;
	int heavy = 0;

	sim_init(&s, c, now);
	s.c.burst_bytes = NATRA_MAX_BURST_BYTES;
	s.b.level = full_of(&s.c);
	s.b.epoch_start_ns = UINT64_MAX; /* one epoch */
	/* the elephants: a quarter of the window each */
	for (int i = 0; i < 2 * 2083; i++)
		sim_packet(&s, i & 1 ? &big1 : &big2, now, 1500, 0);
	/* the light flows: (rate x window + burst) / 2 spread over them */
	for (int f = 0; f < FLOWS; f++) {
		struct natra_flow_key k =
		    key_v4(0x0a010000 + f, 0x0a000001, (__u16)(f * 7), 443, 6);
		__u64 bytes = 1 + rng() % (2 * 937);

		sim_packet(&s, &k, now, bytes, 0);
		light_bytes += bytes;
	}
	for (int f = 0; f < FLOWS; f++) {
		struct natra_flow_key k =
		    key_v4(0x0a010000 + f, 0x0a000001, (__u16)(f * 7), 443, 6);

		heavy += sim_estimate(&s, &k) + 1500 > c.heavy_threshold_bytes;
	}
	CHECK(sim_estimate(&s, &big1) > c.heavy_threshold_bytes, "elephant 1 not heavy");
	CHECK(heavy < FLOWS / 100, "%d of %d light flows heavy", heavy, FLOWS);
	printf("  false-heavy (host, sketch %ux%u, 2 elephants + %d light flows, %llu B): "
	       "%d/%d = %.4f%%\n",
	       c.sketch_depth, c.sketch_width, FLOWS, light_bytes, heavy, FLOWS,
	       100.0 * heavy / FLOWS);
	sim_free(&s);
}

/* ------------------------------------------------------------------------- */
/* the honest aggregate                                                       */

/* With clock_lags, one jiffy in 5 reads the previous tick's time throughout
 * (bpf/lib/clock.h's rare race): the clock lags by up to two jiffies. */
static int clock_lags;

/* The program's clock with ticks of `jiffy` ns (0: exact). */
static __u64 coarse(__u64 now, __u64 jiffy)
{
	__u64 tick;

	if (!jiffy)
		return now;
	tick = now - now % jiffy;
	return clock_lags && (now / jiffy) % 5 == 2 ? tick - jiffy : tick;
}

enum elephant_kind { ELE_NOT_ECT, ELE_ECT, ELE_EDT };
static const char *const elephant_name[] = {"not-ECT", "ECT", "EDT"};

/*
 * One elephant offered at twice the cap plus a stream of mice (16 KB replies
 * arriving back to back at 10 Gbit/s, fresh 5-tuple each, `mice_share` of
 * the cap on average), over 10 simulated seconds: no mouse packet is ever
 * dropped or delayed while the mice stay within the cap; everything that
 * passes, mice and elephant, stays within rate x t + burst (+ debt with
 * EDT); and the elephant gets the rest of the cap.
 *
 * With `jiffy` > 0 the program reads a coarse clock, as bpf_ktime_get_coarse_ns()
 * does (real time rounded down to the last tick), while the bound is judged
 * in real time, widened by rate x 1 jiffy (docs/dataplane.md, "Clock").
 */
static void simulate_aggregate(__u64 rate_bits, enum elephant_kind kind, double mice_share,
			       __u64 jiffy)
{
	struct natra_config c =
	    kind == ELE_EDT ? config_edt(rate_bits, 0) : config_for(rate_bits, 0);
	const __u64 rate = c.rate_bytes_per_sec, t0 = 3 * NATRA_NSEC_PER_SEC;
	const __u64 dur = 10 * NATRA_NSEC_PER_SEC, mtu = 1500, reply = 16384;
	const __u64 ele_gap = mtu * NATRA_NSEC_PER_SEC / (2 * rate);
	const __u64 mice_gap = (__u64)((double)reply * NATRA_NSEC_PER_SEC / (mice_share * rate));
	struct natra_flow_key ele = key_v4(0x0a000002, 0x0a000001, 5201, 40000, 6);
	struct sim_dir s;
	__u64 t_ele = t0, t_mouse = t0 + mice_gap / 2, mouse_n = 0, mouse_left = 0;
	__u64 ele_passed = 0, mice_passed = 0, mice_dropped = 0, mice_delayed = 0;
	__u64 mice_offered = 0, ele_dropped = 0, paced = 0, max_delay = 0, now = t0;
	__u64 max_mouse_delay = 0;
	s128 worst = -((s128)1 << 100); /* max over t of passed - (rate x t + burst + D) */
	char b1[48];

	sim_init(&s, c, t0);
	while (now < t0 + dur) {
		struct natra_decision d;
		int mouse = t_mouse <= t_ele;

		now = mouse ? t_mouse : t_ele;
		if (mouse) {
			struct natra_flow_key k =
			    key_v4(0x0a000002, 0x0a000001, (__u16)(8080 + (mouse_n % 2)),
				   (__u16)(10000 + mouse_n % 50000), 6);
			__u64 len = mouse_left > mtu ? mtu : mouse_left;

			k.saddr[0] += (__u32)(mouse_n / 50000);
			if (!mouse_left)
				len = mouse_left = reply, len = mtu;
			d = sim_packet(&s, &k, coarse(now, jiffy), len, 0);
			mice_offered += len;
			mouse_left -= len;
			if (d.verdict == NATRA_VERDICT_DROP)
				mice_dropped += len;
			else
				mice_passed += len;
			if (d.verdict == NATRA_VERDICT_PACE || d.cls != NATRA_CLASS_MOUSE)
				mice_delayed += len;
			if (d.delay_ns > max_mouse_delay)
				max_mouse_delay = d.delay_ns;
			if (mouse_left) {
				t_mouse += 1200; /* 1500 B at 10 Gbit/s */
			} else {
				mouse_n++;
				/* jittered arrivals around the mean gap */
				t_mouse += mice_gap / 2 + rng() % mice_gap;
			}
		} else {
			d = sim_packet(&s, &ele, coarse(now, jiffy), mtu, kind == ELE_ECT);
			if (d.verdict == NATRA_VERDICT_DROP) {
				ele_dropped += mtu;
			} else {
				ele_passed += mtu;
				if (d.verdict == NATRA_VERDICT_PACE) {
					paced++;
					/* as heavy: the heavy horizon (taken for a
					 * mouse at an epoch's start: the mice's) */
					if (d.cls == NATRA_CLASS_HEAVY && d.delay_ns > max_delay)
						max_delay = d.delay_ns;
				}
			}
			t_ele += ele_gap;
		}
		{
			s128 lag = (s128)jiffy * (clock_lags ? 2 : 1);
			s128 bound = (s128)rate * (now - t0 + lag) + full_of(&c) - floor_of(&c);
			s128 over = (s128)(ele_passed + mice_passed) * NATRA_NSEC_PER_SEC - bound;

			worst = over > worst ? over : worst;
		}
	}
	{
		double t = (double)(now - t0) / 1e9, cap = (double)rate * t;
		double total = (double)(ele_passed + mice_passed);

		/* Without EDT no mouse is dropped or delayed. With EDT (a queue,
		 * its burst retuned to 20 ms of the rate) a mouse may be paced,
		 * never dropped, and never by more than the mice horizon. */
		if (kind == ELE_EDT)
			CHECK(mice_dropped == 0 && max_mouse_delay <= c.mice_horizon_ns,
			      "rate %llu EDT jiffy %llu: mice dropped %llu B, max delay %llu ns",
			      rate, jiffy, mice_dropped, max_mouse_delay);
		else
			CHECK(mice_dropped == 0 && mice_delayed == 0,
			      "rate %llu %s jiffy %llu: mice dropped %llu B, delayed/heavy %llu B",
			      rate, elephant_name[kind], jiffy, mice_dropped, mice_delayed);
		CHECK(worst <= 0,
		      "rate %llu %s jiffy %llu: passed exceeded rate x (t + lag) + burst + debt "
		      "by %s byte-ns",
		      rate, elephant_name[kind], jiffy, s128_str(worst, b1));
		/* the elephant takes the rest: the cap is used, within what the
		 * bucket holds back at the end (R + E + a packet) */
		CHECK(total >= cap - (double)(c.mice_reserve_bytes + c.ecn_band_bytes + 2 * mtu),
		      "rate %llu %s: only %.0f of %.0f bytes passed", rate, elephant_name[kind],
		      total, cap);
		CHECK(ele_dropped > 0 || paced > 0, "rate %llu %s: the elephant was never limited",
		      rate, elephant_name[kind]);
		if (kind == ELE_EDT)
			CHECK(paced > 0 && max_delay <= c.edt_horizon_ns,
			      "rate %llu EDT: %llu paced, max delay %llu", rate, paced, max_delay);
		printf("  aggregate %-12llu B/s %-7s jiffy %2llu ms%s: mice %5llu (%.1f%% of cap, "
		       "offered %.1f%%), "
		       "dropped/delayed 0: %s (max delay %.1f ms); elephant %.1f%% of cap; total "
		       "%.4f of cap (%.4f of cap+burst%s)%s\n",
		       rate, elephant_name[kind], jiffy / 1000000, clock_lags ? " lagging" : "",
		       mouse_n, 100.0 * (double)mice_passed / cap,
		       100.0 * (double)mice_offered / cap,
		       mice_dropped == 0 && mice_delayed == 0 ? "yes" : "NO",
		       (double)max_mouse_delay / 1e6, 100.0 * (double)ele_passed / cap, total / cap,
		       total / (cap + (double)c.burst_bytes + (double)c.edt_debt_bytes),
		       kind == ELE_EDT ? "+debt" : "", kind == ELE_EDT ? "" : "");
	}
	sim_free(&s);
}

/* Mice alone above the cap are throttled like anything else, and the bound
 * still holds: the reserve is not extra capacity. */
static void simulate_mice_overload(__u64 rate_bits)
{
	struct natra_config c = config_for(rate_bits, 0);
	const __u64 rate = c.rate_bytes_per_sec, t0 = NATRA_NSEC_PER_SEC;
	const __u64 dur = 5 * NATRA_NSEC_PER_SEC, gap = 1500 * NATRA_NSEC_PER_SEC / (rate * 3 / 2);
	struct sim_dir s;
	__u64 passed = 0, dropped = 0, n = 0, now;

	sim_init(&s, c, t0);
	for (now = t0; now < t0 + dur; now += gap, n++) {
		/* a new flow every 10 packets: 15 kB each, all mice */
		struct natra_flow_key k =
		    key_v4(0x0a000002 + (__u32)(n / 500000), 0x0a000001, 80, (__u16)(n / 10), 6);
		struct natra_decision d = sim_packet(&s, &k, now, 1500, 0);

		CHECK(d.cls == NATRA_CLASS_MOUSE || n < 10, "packet %llu not a mouse", n);
		if (d.verdict == NATRA_VERDICT_DROP)
			dropped += 1500;
		else
			passed += 1500;
	}
	CHECK((s128)passed * NATRA_NSEC_PER_SEC <= (s128)rate * (now - t0) + full_of(&c),
	      "mice at 150%%: %llu bytes passed beyond rate x t + burst", passed);
	CHECK(dropped > 0, "mice at 150%% of the cap were never dropped");
	printf("  mice alone at 150%% of %llu B/s: passed %.3f of the cap, dropped %.1f%%\n", rate,
	       (double)passed / ((double)rate * (double)(now - t0) / 1e9),
	       100.0 * (double)dropped / (double)(passed + dropped));
	sim_free(&s);
}

static void test_honest_aggregate(void)
{
	static const __u64 rates_bits[] = {20000000ULL, 100000000ULL, 1000000000ULL};

	for (unsigned r = 0; r < ARRAY_LEN(rates_bits); r++) {
		/* exact clock, and coarse ones of CONFIG_HZ=250 and 100 */
		for (__u64 jiffy = 0; jiffy <= 10000000; jiffy += jiffy ? 6000000 : 4000000) {
			for (int k = ELE_NOT_ECT; k <= ELE_EDT; k++)
				simulate_aggregate(rates_bits[r], (enum elephant_kind)k, 0.3,
						   jiffy);
			simulate_aggregate(rates_bits[r], ELE_NOT_ECT, 0.8, jiffy);
		}
		/* ticks of 4 ms, lagging by two now and then */
		clock_lags = 1;
		for (int k = ELE_NOT_ECT; k <= ELE_EDT; k++)
			simulate_aggregate(rates_bits[r], (enum elephant_kind)k, 0.3, 4000000);
		simulate_aggregate(rates_bits[r], ELE_NOT_ECT, 0.8, 4000000);
		clock_lags = 0;
		simulate_mice_overload(rates_bits[r]);
	}
}

/* ------------------------------------------------------------------------- */

/* `--params RATE_BITS BURST_BITS`... : prints what the mirror computes, one
 * line per pair, for tests/bucket_arith.rs to compare with src/limits.rs. */
static int print_params(int argc, char **argv)
{
	for (int i = 2; i + 1 < argc; i += 2) {
		__u64 rate_bits = strtoull(argv[i], NULL, 10);
		__u64 burst_bits = strtoull(argv[i + 1], NULL, 10);
		struct natra_config c = config_for(rate_bits, burst_bits);
		struct natra_config e = config_edt(rate_bits, burst_bits);

		printf("%llu %llu %llu %llu %llu %llu %llu %llu %llu %u %u %llu %llu %llu\n",
		       rate_bits, burst_bits, c.rate_bytes_per_sec, c.burst_bytes, c.ecn_band_bytes,
		       c.refill_full_ns, c.mice_reserve_bytes, c.heavy_threshold_bytes, c.epoch_ns,
		       c.sketch_width, c.sketch_depth, e.edt_horizon_ns, e.edt_debt_bytes,
		       e.refill_full_ns);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--params") == 0)
		return print_params(argc, argv);
	test_params_mirror_limits_rs();
	test_refill_exact();
	test_no_overflow();
	test_clock_backwards();
	test_races();
	test_threads();
	test_layers();
	test_edt_units_and_horizon();
	test_handshakes();
	test_simulation();
	test_epochs();
	test_mouse_heavy_light();
	test_sketch_never_underestimates();
	test_flow_hash();
	test_false_heavy();
	test_honest_aggregate();
	printf("bucket_arith: %lu passed, %lu failed\n", n_passed, n_failed);
	return n_failed ? 1 : 0;
}
