/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Count-Min Sketch of recent bytes per flow, with conservative update and a
 * lazy per-cell decay. Pure arithmetic over cell pointers and an epoch
 * number, so that tests/c drives it with a deterministic clock; the program
 * looks the cells up and calls these.
 *
 * Concurrency: no lock. The cells are read and raised with plain loads and
 * stores: two CPUs updating the same flow's cells at the same moment can
 * under-count it by one packet (both read the same min, both write it plus
 * their own bytes); a flow's packets normally stay on one CPU (RSS/RPS), and
 * a cell shared with another flow only ever over-counts. The epoch moves on
 * with a compare-and-swap of its start, so one CPU advances it.
 *
 * A cell is (epoch << 40) | bytes. Read in epoch e, a cell written in epoch e
 * counts fully, one written in e-1 counts half, anything older counts 0. An
 * epoch is half the window, so a flow's estimate is what it sent in the
 * current epoch plus half (and, compounded on every update, a quarter, ...)
 * of what it sent before: between 1x and 2x an epoch's worth of a steady
 * flow, i.e. about one window; an idle flow is forgotten within 2 epochs.
 *
 * Rows: column of row i = top log2(width) bits of h x A[i] (multiply-shift
 * with a distinct odd multiplier per row) over one 64-bit flow hash, so rows
 * are independent without hashing the key d times.
 */
#ifndef NATRA_SKETCH_H
#define NATRA_SKETCH_H

#include "lib/atomics.h"

/* Odd multipliers of the rows (digits of well-known hash constants). */
static const __u64 natra_sketch_mult[8] = {
    0x9e3779b97f4a7c15ULL, 0xc2b2ae3d27d4eb4fULL, 0x165667b19e3779f9ULL, 0xd6e8feb86659fd93ULL,
    0xff51afd7ed558ccdULL, 0xc4ceb9fe1a85ec53ULL, 0x87c37b91114253d5ULL, 0x4cf5ad432745937fULL,
};

/* Column of `row` for flow hash h: the top (64 - shift) bits of h x A[row]. */
static __always_inline __u32 sketch_column(__u64 h, __u32 row, __u32 shift)
{
	return (__u32)((h * natra_sketch_mult[row & 7]) >> (shift & 63));
}

/* Index in the sketch map of (row, col) of a direction. */
static __always_inline __u32 sketch_index(const struct natra_config *cfg, __u64 h, __u32 row)
{
	return cfg->sketch_base + row * cfg->sketch_width +
	       sketch_column(h, row, cfg->sketch_shift);
}

/* A cell's bytes as seen in epoch `epoch`: all of them at age 0, half at age
 * 1, none when older. Without branches (as are the min and the raise below):
 * each row then adds instructions, not paths, to the program's verification. */
static __always_inline __u64 sketch_cell_bytes(__u64 cell, __u32 epoch)
{
	__u32 age = (epoch - (__u32)(cell >> NATRA_SKETCH_BYTES_BITS)) & NATRA_SKETCH_EPOCH_MASK;
	__u64 bytes = cell & NATRA_SKETCH_BYTES_MASK;
	/* age >> 1 < 2^23, so this is 0 for age 0 and 1, and 1 for any older */
	__u64 old = ((__u64)(age >> 1) + 0x7fffff) >> 23;

	return (bytes >> (age & 1)) & (old - 1);
}

/* min(a, b) of values below 2^62, without a branch. */
static __always_inline __u64 sketch_min(__u64 a, __u64 b)
{
	__u64 d = b - a;

	return a + (d & (__u64)((__s64)d >> 63));
}

static __always_inline __u64 sketch_cell(__u32 epoch, __u64 bytes)
{
	if (bytes > NATRA_SKETCH_BYTES_MASK)
		bytes = NATRA_SKETCH_BYTES_MASK;
	return ((__u64)(epoch & NATRA_SKETCH_EPOCH_MASK) << NATRA_SKETCH_BYTES_BITS) | bytes;
}

/*
 * The flow's estimate once this packet's `bytes` are added: min over the rows
 * of the decayed cells, plus bytes. cells[] holds NATRA_SKETCH_MAX_DEPTH
 * pointers; rows past the configured depth point at row 0 again, which
 * changes neither the min nor the update, so no row needs a depth check
 * (and the loops unroll to straight-line code). An alias is skipped by a
 * pointer compare, which is cheaper than its decay (at the default depth 4:
 * ~6-10 ns per packet here) and adds no verifier state (no live value
 * differs between the two sides).
 */
static __always_inline __u64 sketch_estimate(__u64 *const cells[NATRA_SKETCH_MAX_DEPTH],
					     __u32 epoch, __u64 bytes)
{
	__u64 est = sketch_cell_bytes(*cells[0], epoch);

#pragma unroll
	for (int i = 1; i < NATRA_SKETCH_MAX_DEPTH; i++) {
		if (cells[i] != cells[0])
			est = sketch_min(est, sketch_cell_bytes(*cells[i], epoch));
	}
	/* bytes is a packet's wire bytes (< 2^32): the sum stays below 2^62 */
	return sketch_min(est + bytes, NATRA_SKETCH_BYTES_MASK);
}

/* Conservative update: raise each of the flow's cells to the new estimate,
 * never lower one. Cells already at or above it keep their own epoch. */
static __always_inline void sketch_update(__u64 *const cells[NATRA_SKETCH_MAX_DEPTH], __u32 epoch,
					  __u64 est)
{
	__u64 cell = sketch_cell(epoch, est);

	if (sketch_cell_bytes(*cells[0], epoch) < est)
		*cells[0] = cell;
#pragma unroll
	for (int i = 1; i < NATRA_SKETCH_MAX_DEPTH; i++) {
		if (cells[i] != cells[0] && sketch_cell_bytes(*cells[i], epoch) < est)
			*cells[i] = cell;
	}
}

/*
 * Moves the direction's epoch on to `now`. Only whether 0, 1 or 2+ epochs
 * passed matters to the decay, so no division: one epoch on keeps the grid,
 * two or more restart it at now. An epoch_start_ns in the future (tests
 * freeze it at U64_MAX) never advances. Returns 1 when the epoch changed.
 *
 * The CPU whose CAS moves epoch_start_ns on is the one that advances the
 * epoch and rotates the heavy-flow bitmaps, with plain stores: for the few
 * ns in between, other CPUs still use the old epoch (cells already in the
 * new one read as empty to them, what they write as one epoch old: an
 * under-count), and a heavy flow they note may land in the bitmap just
 * rotated out (an estimate either way).
 */
static __always_inline int sketch_advance_epoch(struct natra_bucket_state *b,
						const struct natra_config *cfg, __u64 now)
{
	__u64 start = NATRA_READ_ONCE(b->epoch_start_ns), next, elapsed;
	__u32 step;

	if (now < start)
		return 0;
	elapsed = now - start;
	if (elapsed < cfg->epoch_ns)
		return 0;
	if (elapsed < 2 * cfg->epoch_ns) {
		next = start + cfg->epoch_ns;
		step = 1;
	} else {
		next = now;
		step = 2;
	}
	if (__sync_val_compare_and_swap(&b->epoch_start_ns, start, next) != start)
		return 0; /* another CPU advanced it */
	b->epoch = (b->epoch + step) & NATRA_SKETCH_EPOCH_MASK;
	b->heavy_seen_prev = step == 1 ? b->heavy_seen : 0;
	b->heavy_seen = 0;
	return 1;
}

/* Marks a heavy flow in this epoch's 64-bit bitmap (linear counting: the
 * control plane turns the bits set into a distinct-count estimate). Written
 * only when the bit is clear, so a steady heavy flow costs a read, not a
 * shared cache line bouncing between CPUs; the atomic OR keeps another
 * CPU's bit. */
static __always_inline void sketch_note_heavy(struct natra_bucket_state *b, __u64 h)
{
	__u64 bit = 1ULL << (h >> 58);

	if (!(NATRA_READ_ONCE(b->heavy_seen) & bit))
		__sync_fetch_and_or(&b->heavy_seen, bit);
}

#endif /* NATRA_SKETCH_H */
