// SPDX-License-Identifier: Apache-2.0
/*
 * Host-side tests of bpf/lib/bucket.h: the token bucket is pure arithmetic over
 * (state, config, now), so the very same header the BPF program includes is
 * compiled here with the host compiler and driven with a deterministic clock.
 *
 * Built and run by tests/bucket_arith.rs:
 *   clang -O2 -Wall -Werror -I include -I bpf tests/c/bucket_arith.c
 * Prints one line per failure on stderr and, last, exactly
 *   bucket_arith: N passed, M failed
 * on stdout; exits non-zero when M > 0.
 */
#include <linux/types.h>
#include <linux/bpf.h> /* struct bpf_spin_lock, used by natra.h */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#include "natra.h"
#include "lib/bucket.h"

typedef unsigned __int128 u128;

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

/* A u128 printed as decimal, for failure messages only. */
static const char *u128_str(u128 v, char buf[48])
{
	char tmp[48];
	int i = 0, j = 0;

	do {
		tmp[i++] = (char)('0' + (int)(v % 10));
		v /= 10;
	} while (v);
	while (i)
		buf[j++] = tmp[--i];
	buf[j] = 0;
	return buf;
}

/* ------------------------------------------------------------------------- */
/* BucketParams, computed exactly like src/limits.rs (bucket_params,          */
/* sanitise_burst, refill_full_ns). Keep in step with that file; the first    */
/* test pins the values its own unit tests pin.                               */
/* ------------------------------------------------------------------------- */
/* tests/bucket_arith.rs passes the crate's own constants with -D, so the
 * mirror cannot drift from them; the defaults are only for building by hand. */
#ifndef MIN_RATE_BITS
#define MIN_RATE_BITS 1000ULL
#endif
#ifndef MAX_RATE_BITS
#define MAX_RATE_BITS 1000000000000000ULL
#endif
#ifndef BURST_WINDOW_MS
#define BURST_WINDOW_MS 500ULL
#endif
#ifndef BURST_FLOOR_BYTES
#define BURST_FLOOR_BYTES (128ULL * 1024)
#endif
#ifndef BURST_CEILING_BYTES
#define BURST_CEILING_BYTES (1ULL << 32)
#endif
#ifndef ECN_BAND_DIVISOR
#define ECN_BAND_DIVISOR 4ULL
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

static __u64 refill_full_ns(__u64 burst, __u64 rate)
{
	u128 num = (u128)burst * NATRA_NSEC_PER_SEC;
	u128 ns = (num + rate - 1) / rate; /* div_ceil */

	return ns > UINT64_MAX ? UINT64_MAX : (__u64)ns;
}

/* A config with an explicit burst (used to push past what the clamp allows). */
static struct natra_config config_raw(__u64 rate, __u64 burst)
{
	struct natra_config c;

	memset(&c, 0, sizeof(c));
	c.rate_bytes_per_sec = rate;
	c.burst_bytes = burst;
	c.ecn_band_bytes = burst / ECN_BAND_DIVISOR;
	c.refill_full_ns = refill_full_ns(burst, rate);
	return c;
}

/* bucket_params() of src/limits.rs for a valid, non-zero rate. */
static struct natra_config config_for(__u64 rate_bits, __u64 burst_bits)
{
	__u64 rate = rate_bits / 8;

	return config_raw(rate, sanitise_burst(burst_bits / 8, rate));
}

static __u64 full_of(const struct natra_config *c)
{
	return c->burst_bytes * NATRA_NSEC_PER_SEC;
}

/* What the refill must give, computed in 128 bits so it cannot overflow. */
static u128 ref_refill(__u64 level, __u64 last, __u64 now, const struct natra_config *c)
{
	u128 full = (u128)c->burst_bytes * NATRA_NSEC_PER_SEC;
	u128 l;

	if (now <= last)
		return level;
	if (now - last >= c->refill_full_ns)
		return full;
	l = (u128)level + (u128)(now - last) * c->rate_bytes_per_sec;
	return l < full ? l : full;
}

/* ------------------------------------------------------------------------- */

/* Values that hold whatever the burst window is; the full comparison with
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
	/* the header's ceiling and the control plane's agree */
	CHECK(NATRA_MAX_BURST_BYTES == BURST_CEILING_BYTES, "ceilings differ: %llu vs %llu",
	      NATRA_MAX_BURST_BYTES, BURST_CEILING_BYTES);
	/* and 2^32 bytes x 1e9 plus the largest refill step fit in 63 bits */
	CHECK((u128)NATRA_MAX_BURST_BYTES * NATRA_NSEC_PER_SEC + MAX_RATE_BITS / 8 <
		  ((u128)1 << 63),
	      "ceiling x 1e9 does not fit in 63 bits");
}

/* An idle time of k ns adds exactly k x rate byte-ns, whether it comes at once
 * or one nanosecond at a time: no rounding is ever lost. */
static void test_refill_exact(void)
{
	static const __u64 rates_bits[] = {1000ULL,	  1000000ULL,	   100000000ULL,
					   1000000000ULL, 100000000000ULL, MAX_RATE_BITS};
	static const __u64 steps[] = {1, 2, 3, 7, 1000, 123457, 1000000, 999999937};
	const __u64 t0 = 5000000000000ULL;

	for (unsigned i = 0; i < sizeof(rates_bits) / sizeof(rates_bits[0]); i++) {
		struct natra_config c = config_for(rates_bits[i], 0);
		__u64 full = full_of(&c);

		for (unsigned j = 0; j < sizeof(steps) / sizeof(steps[0]); j++) {
			__u64 k = steps[j];
			__u64 got = bucket_refilled_level(0, t0, t0 + k, &c);
			__u64 want;

			if (k >= c.refill_full_ns)
				want = full;
			else
				want = k * c.rate_bytes_per_sec < full ? k * c.rate_bytes_per_sec
								       : full;
			CHECK(got == want,
			      "rate %llu B/s, %llu ns from empty: level %llu, want %llu",
			      c.rate_bytes_per_sec, k, got, want);
		}

		/* 10000 refills of 1 ns through bucket_charge (0-byte non-ECT
		 * packets, dropped while below the band: the refill is kept) equal
		 * one refill of 10000 ns. */
		{
			struct natra_bucket_state b;
			__u64 once = bucket_refilled_level(0, t0, t0 + 10000, &c);
			int bad = 0;

			memset(&b, 0, sizeof(b));
			b.last_ns = t0;
			for (__u64 t = 1; t <= 10000; t++) {
				bucket_charge(&b, &c, t0 + t, 0, 0);
				if (b.last_ns != t0 + t)
					bad = 1;
			}
			CHECK(!bad, "rate %llu: last_ns did not follow the clock",
			      c.rate_bytes_per_sec);
			CHECK(b.level == once,
			      "rate %llu: 10000 x 1 ns gives %llu, 1 x 10000 ns %llu",
			      c.rate_bytes_per_sec, b.level, once);
		}
	}

	/* The all-zero state of a new map entry is full at its first packet,
	 * provided the clock is past refill_full_ns. */
	{
		struct natra_config c = config_for(100000000ULL, 0);
		struct natra_bucket_state b;
		enum natra_verdict v;

		memset(&b, 0, sizeof(b));
		v = bucket_charge(&b, &c, c.refill_full_ns, 1500, 0);
		CHECK(v == NATRA_VERDICT_PASS, "first packet verdict %d", v);
		CHECK(b.level == full_of(&c) - 1500 * NATRA_NSEC_PER_SEC, "level %llu", b.level);
		CHECK(b.last_ns == c.refill_full_ns, "last_ns %llu", b.last_ns);
	}
}

/* Every rate kubelet accepts, every burst up to the 2^32-byte ceiling, idle
 * times from 1 ns to u64 max: the refill equals the 128-bit reference (so
 * nothing wrapped) and never exceeds burst x 1e9; a charge never underflows. */
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
	unsigned long cases = 0, bad_ref = 0, bad_full = 0, bad_charge = 0;
	char b1[48], b2[48];

	for (unsigned r = 0; r < sizeof(rates_bits) / sizeof(rates_bits[0]); r++) {
		/* the configs the control plane makes, plus the ceiling burst at
		 * every rate (larger than the clamp allows at low rates) */
		struct natra_config cfgs[sizeof(req_bursts_bits) / sizeof(req_bursts_bits[0]) + 2];
		unsigned ncfg = 0;

		for (unsigned q = 0; q < sizeof(req_bursts_bits) / sizeof(req_bursts_bits[0]); q++)
			cfgs[ncfg++] = config_for(rates_bits[r], req_bursts_bits[q]);
		cfgs[ncfg++] = config_raw(rates_bits[r] / 8, NATRA_MAX_BURST_BYTES);
		cfgs[ncfg++] = config_raw(rates_bits[r] / 8, BURST_FLOOR_BYTES);

		for (unsigned k = 0; k < ncfg; k++) {
			const struct natra_config *c = &cfgs[k];
			__u64 full = full_of(c);
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
			    7 * day,
			    365 * day,
			    c->refill_full_ns - 1,
			    c->refill_full_ns,
			    c->refill_full_ns + 1,
			    c->refill_full_ns / 2,
			    UINT64_MAX / 2,
			    UINT64_MAX - 1,
			    UINT64_MAX,
			};
			__u64 levels[] = {0,
					  1,
					  c->rate_bytes_per_sec,
					  full / 2,
					  full - c->rate_bytes_per_sec,
					  full - 1,
					  full};

			for (unsigned e = 0; e < sizeof(elapsed) / sizeof(elapsed[0]); e++) {
				__u64 el = elapsed[e];
				__u64 lasts[] = {0, 1, 123456789ULL, UINT64_MAX - el};

				for (unsigned l = 0; l < sizeof(levels) / sizeof(levels[0]); l++) {
					for (unsigned t = 0; t < sizeof(lasts) / sizeof(lasts[0]);
					     t++) {
						__u64 last = lasts[t];
						__u64 now;
						__u64 got;
						u128 want;

						if (el > UINT64_MAX - last)
							continue;
						now = last + el;
						got =
						    bucket_refilled_level(levels[l], last, now, c);
						want = ref_refill(levels[l], last, now, c);
						cases++;
						if ((u128)got != want && bad_ref++ < 5)
							fprintf(stderr,
								"FAIL overflow: rate %llu burst "
								"%llu level %llu last %llu elapsed "
								"%llu: got %s want %s\n",
								c->rate_bytes_per_sec,
								c->burst_bytes, levels[l], last, el,
								u128_str(got, b1),
								u128_str(want, b2));
						if (got > full && bad_full++ < 5)
							fprintf(stderr,
								"FAIL level %llu above burst x 1e9 "
								"%llu\n",
								got, full);

						for (unsigned s = 0;
						     s < sizeof(sizes) / sizeof(sizes[0]); s++) {
							struct natra_bucket_state b;
							enum natra_verdict v;
							u128 cost =
							    (u128)sizes[s] * NATRA_NSEC_PER_SEC;
							u128 band = (u128)c->ecn_band_bytes *
								    NATRA_NSEC_PER_SEC;
							int ect = s & 1;
							enum natra_verdict wantv;
							u128 wantl;

							memset(&b, 0, sizeof(b));
							b.level = levels[l];
							b.last_ns = last;
							v = bucket_charge(&b, c, now, sizes[s],
									  ect);
							if (want >= cost + band) {
								wantv = NATRA_VERDICT_PASS;
								wantl = want - cost;
							} else if (ect && want >= cost) {
								wantv = NATRA_VERDICT_PASS_CE;
								wantl = want - cost;
							} else {
								wantv = NATRA_VERDICT_DROP;
								wantl = want;
							}
							if ((v != wantv || (u128)b.level != wantl ||
							     b.level > full || b.last_ns != now) &&
							    bad_charge++ < 5)
								fprintf(
								    stderr,
								    "FAIL charge: rate %llu burst "
								    "%llu level %llu elapsed %llu "
								    "size %llu ect %d: verdict %d "
								    "want %d, level %llu want %s\n",
								    c->rate_bytes_per_sec,
								    c->burst_bytes, levels[l], el,
								    sizes[s], ect, v, wantv,
								    b.level, u128_str(wantl, b1));
						}
					}
				}
			}
		}
	}
	CHECK(bad_ref == 0, "%lu of %lu refills differ from the 128-bit reference", bad_ref, cases);
	CHECK(bad_full == 0, "%lu of %lu refills went above burst x 1e9", bad_full, cases);
	CHECK(bad_charge == 0, "%lu charges differ from the 128-bit reference", bad_charge);
	CHECK(cases > 10000, "only %lu cases ran", cases);
}

/* A clock that goes backwards (another CPU refilled with a later reading)
 * neither refills nor moves last_ns back; the next forward reading refills
 * from the latest last_ns only. */
static void test_clock_backwards(void)
{
	struct natra_config c = config_for(1000000000ULL, 0); /* 125 MB/s */
	const __u64 t = 1000000000000ULL;
	__u64 backs[] = {t, t - 1, t - 1000, t / 2, 1, 0};
	struct natra_bucket_state b;

	for (unsigned i = 0; i < sizeof(backs) / sizeof(backs[0]); i++) {
		__u64 lvl = full_of(&c) / 3;
		enum natra_verdict v;

		CHECK(bucket_refilled_level(lvl, t, backs[i], &c) == lvl,
		      "now %llu <= last %llu refilled", backs[i], t);

		memset(&b, 0, sizeof(b));
		b.level = lvl;
		b.last_ns = t;
		v = bucket_charge(&b, &c, backs[i], 1500, 0);
		CHECK(v == NATRA_VERDICT_PASS, "verdict %d", v);
		CHECK(b.level == lvl - 1500 * NATRA_NSEC_PER_SEC,
		      "now %llu: level %llu, want exactly the packet off %llu", backs[i], b.level,
		      lvl);
		CHECK(b.last_ns == t, "now %llu moved last_ns back to %llu", backs[i], b.last_ns);

		/* a drop with an old clock keeps both too */
		b.level = 10;
		v = bucket_charge(&b, &c, backs[i], 1500, 1);
		CHECK(v == NATRA_VERDICT_DROP && b.level == 10 && b.last_ns == t,
		      "old-clock drop: verdict %d level %llu last %llu", v, b.level, b.last_ns);
	}

	/* going forward again refills from t, not from the old reading */
	memset(&b, 0, sizeof(b));
	b.last_ns = t;
	bucket_charge(&b, &c, t - 500, 0, 0);
	bucket_charge(&b, &c, t + 7, 0, 0);
	CHECK(b.level == 7 * c.rate_bytes_per_sec && b.last_ns == t + 7,
	      "level %llu (want %llu) last %llu", b.level, 7 * c.rate_bytes_per_sec, b.last_ns);
}

/* The ECN band: the lowest ecn_band_bytes only ECT packets may spend, and
 * each that does is marked CE; nobody spends below 0. */
static void test_ecn_band(void)
{
	struct natra_config c = config_for(100000000ULL, 0);
	const __u64 now = 42; /* last_ns = max: frozen, no refill */
	const __u64 size = 1500, cost = size * NATRA_NSEC_PER_SEC;
	const __u64 band = c.ecn_band_bytes * NATRA_NSEC_PER_SEC;
	struct {
		__u64 level;
		int ect;
		enum natra_verdict want;
		__u64 want_level;
	} cases[] = {
	    {full_of(&c), 0, NATRA_VERDICT_PASS, full_of(&c) - cost},
	    {cost + band, 0, NATRA_VERDICT_PASS, band},
	    {cost + band, 1, NATRA_VERDICT_PASS, band}, /* above the band: not marked */
	    {cost + band - 1, 0, NATRA_VERDICT_DROP, cost + band - 1},
	    {cost + band - 1, 1, NATRA_VERDICT_PASS_CE, band - 1},
	    {cost + 1, 1, NATRA_VERDICT_PASS_CE, 1},
	    {cost, 1, NATRA_VERDICT_PASS_CE, 0},
	    {cost, 0, NATRA_VERDICT_DROP, cost},
	    {cost - 1, 1, NATRA_VERDICT_DROP, cost - 1},
	    {cost - 1, 0, NATRA_VERDICT_DROP, cost - 1},
	    {0, 1, NATRA_VERDICT_DROP, 0},
	    {0, 0, NATRA_VERDICT_DROP, 0},
	};

	CHECK(c.ecn_band_bytes == c.burst_bytes / 4 && c.ecn_band_bytes > size,
	      "band %llu burst %llu", c.ecn_band_bytes, c.burst_bytes);
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct natra_bucket_state b;
		enum natra_verdict v;

		memset(&b, 0, sizeof(b));
		b.level = cases[i].level;
		b.last_ns = UINT64_MAX;
		v = bucket_charge(&b, &c, now, size, cases[i].ect);
		CHECK(v == cases[i].want && b.level == cases[i].want_level &&
			  b.last_ns == UINT64_MAX,
		      "case %u (level %llu ect %d): verdict %d want %d, level %llu want %llu", i,
		      cases[i].level, cases[i].ect, v, cases[i].want, b.level, cases[i].want_level);
	}

	/* with no band, ECT makes no difference */
	c.ecn_band_bytes = 0;
	for (int ect = 0; ect <= 1; ect++) {
		struct natra_bucket_state b = {.level = cost, .last_ns = UINT64_MAX};
		enum natra_verdict v = bucket_charge(&b, &c, now, size, ect);

		CHECK(v == NATRA_VERDICT_PASS && b.level == 0, "band 0, ect %d: verdict %d", ect,
		      v);
	}
}

enum traffic { NOT_ECT, ALL_ECT, MIXED };
static const char *const traffic_name[] = {"not-ECT", "ECT", "mixed"};

/* Offers twice the rate in 1500-byte packets, evenly spaced on a deterministic
 * clock, from a new (all-zero) bucket; checks that what passes is the rate
 * within one packet: rate x t + burst at most, and at least rate x t plus the
 * part of the burst the traffic may spend minus one packet (minus the band
 * for non-ECT traffic, which may never spend it). */
static void simulate(__u64 rate_bits, enum traffic tr)
{
	const __u64 size = 1500;
	struct natra_config c = config_for(rate_bits, 0);
	__u64 rate = c.rate_bytes_per_sec;
	/* long enough to drain the burst 4 times over (offered - rate = rate), at least 1 s */
	u128 dur_ns = (u128)c.burst_bytes * NATRA_NSEC_PER_SEC * 4 / rate;
	u128 n;
	__u64 t0 = c.refill_full_ns + 12345; /* all-zero state: first packet fills */
	struct natra_bucket_state b;
	u128 passed = 0, ce = 0, dropped = 0;
	u128 q_passed[4] = {0}, q_ce[4] = {0}, q_plain_pass_non_ect[4] = {0};
	__u64 t_last = t0;
	int bad_order = 0;
	char b1[48], b2[48], b3[48];

	if (dur_ns < NATRA_NSEC_PER_SEC)
		dur_ns = NATRA_NSEC_PER_SEC;
	n = dur_ns * 2 * rate / ((u128)size * NATRA_NSEC_PER_SEC);
	memset(&b, 0, sizeof(b));

	for (u128 i = 0; i < n; i++) {
		/* arrival i at t0 + i x size / (2 rate), exact to the ns */
		__u64 now = t0 + (__u64)(i * size * NATRA_NSEC_PER_SEC / (2 * (u128)rate));
		/* mixed: 3 of 4 packets ECT, so ECT alone is offered above the rate */
		int ect = tr == ALL_ECT || (tr == MIXED && (i & 3));
		unsigned q = (unsigned)(i * 4 / n);
		enum natra_verdict v = bucket_charge(&b, &c, now, size, ect);

		if (b.level > full_of(&c) || b.last_ns != now)
			bad_order = 1;
		t_last = now;
		if (v == NATRA_VERDICT_DROP) {
			dropped += size;
			continue;
		}
		passed += size;
		q_passed[q] += size;
		if (v == NATRA_VERDICT_PASS_CE) {
			ce += size;
			q_ce[q] += size;
		}
		if (!ect)
			q_plain_pass_non_ect[q] += size;
	}

	{
		u128 t = (u128)(t_last - t0);
		u128 got = passed * NATRA_NSEC_PER_SEC;	   /* byte-ns */
		u128 upper = (u128)rate * t + full_of(&c); /* rate x t + burst */
		/* What is left in the bucket at the end: below one packet plus
		 * the band for non-ECT traffic (it may not spend the band), below
		 * one packet for ECT traffic, and below one packet plus the half
		 * packet refilled between two arrivals for mixed traffic (the last
		 * arrival may be a non-ECT packet dropped at a level an ECT one
		 * would have spent). */
		u128 left = tr == NOT_ECT   ? c.ecn_band_bytes + size
			    : tr == ALL_ECT ? size
					    : 2 * size;
		u128 lower = (u128)rate * t + (c.burst_bytes - left) * NATRA_NSEC_PER_SEC;
		u128 loose_lower = (u128)rate * t - (u128)size * NATRA_NSEC_PER_SEC;

		CHECK(!bad_order, "rate %llu %s: level above burst or last_ns off the clock", rate,
		      traffic_name[tr]);
		CHECK(got <= upper, "rate %llu B/s %s: passed %s byte-ns > rate x t + burst %s",
		      rate, traffic_name[tr], u128_str(got, b1), u128_str(upper, b2));
		CHECK(got >= loose_lower,
		      "rate %llu B/s %s: passed %s byte-ns < rate x t - 1 packet %s", rate,
		      traffic_name[tr], u128_str(got, b1), u128_str(loose_lower, b2));
		CHECK(got >= lower,
		      "rate %llu B/s %s: passed %s byte-ns < rate x t + burst - what may stay %s",
		      rate, traffic_name[tr], u128_str(got, b1), u128_str(lower, b2));
		CHECK(dropped > 0 && passed + dropped == n * size, "rate %llu %s: dropped %s of %s",
		      rate, traffic_name[tr], u128_str(dropped, b1), u128_str(n * size, b3));

		/* each quarter: no more than rate x quarter + burst */
		for (unsigned q = 0; q < 4; q++) {
			u128 qlen = (u128)t / 4 + 1;

			CHECK(q_passed[q] * NATRA_NSEC_PER_SEC <=
				  (u128)rate * qlen + full_of(&c) + size * NATRA_NSEC_PER_SEC,
			      "rate %llu %s quarter %u: %s bytes", rate, traffic_name[tr], q,
			      u128_str(q_passed[q], b1));
		}

		/* ECN: non-ECT traffic is never marked; once the burst is spent
		 * (last quarter), every ECT packet that passes uses the band and
		 * is marked, and with mixed traffic no non-ECT packet passes. */
		if (tr == NOT_ECT) {
			CHECK(ce == 0, "rate %llu: %s CE bytes on non-ECT traffic", rate,
			      u128_str(ce, b1));
		} else {
			CHECK(ce >= (u128)c.ecn_band_bytes - size,
			      "rate %llu %s: only %s CE bytes, band %llu", rate, traffic_name[tr],
			      u128_str(ce, b1), c.ecn_band_bytes);
			CHECK(q_ce[3] == q_passed[3] && q_passed[3] > 0,
			      "rate %llu %s: last quarter passed %s, CE-marked %s", rate,
			      traffic_name[tr], u128_str(q_passed[3], b1), u128_str(q_ce[3], b2));
			if (tr == MIXED)
				CHECK(q_plain_pass_non_ect[3] == 0,
				      "rate %llu: %s non-ECT bytes passed in the last quarter",
				      rate, u128_str(q_plain_pass_non_ect[3], b1));
		}
		printf("  sim %-16llu B/s %-7s: %10s pkts over %.3f s, passed %.6f of rate x t + "
		       "burst, CE %.1f%%\n",
		       rate, traffic_name[tr], u128_str(n, b1), (double)t / 1e9,
		       (double)got / (double)upper,
		       passed ? 100.0 * (double)ce / (double)passed : 0.0);
	}
}

static void test_simulation(void)
{
	static const __u64 rates_bits[] = {1000ULL,	  1000000ULL,	  100000000ULL,
					   1000000000ULL, 10000000000ULL, 100000000000ULL};

	for (unsigned r = 0; r < sizeof(rates_bits) / sizeof(rates_bits[0]); r++)
		for (int tr = NOT_ECT; tr <= MIXED; tr++)
			simulate(rates_bits[r], (enum traffic)tr);
}

/* `--params RATE_BITS BURST_BITS`... : prints what the mirror computes, one
 * line per pair, for tests/bucket_arith.rs to compare with src/limits.rs. */
static int print_params(int argc, char **argv)
{
	for (int i = 2; i + 1 < argc; i += 2) {
		__u64 rate_bits = strtoull(argv[i], NULL, 10);
		__u64 burst_bits = strtoull(argv[i + 1], NULL, 10);
		struct natra_config c = config_for(rate_bits, burst_bits);

		printf("%llu %llu %llu %llu %llu %llu\n", rate_bits, burst_bits,
		       c.rate_bytes_per_sec, c.burst_bytes, c.ecn_band_bytes, c.refill_full_ns);
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
	test_ecn_band();
	test_simulation();
	printf("bucket_arith: %lu passed, %lu failed\n", n_passed, n_failed);
	return n_failed ? 1 : 0;
}
