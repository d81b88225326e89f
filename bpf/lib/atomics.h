/* SPDX-License-Identifier: Apache-2.0 */
/* Shared words without a lock (docs/dataplane.md, Concurrency): the bucket and
 * the sketch read them once per decision and write them with BPF atomics
 * (compare-and-swap, add, or: kernel >= 5.12), which host builds of the same
 * headers (tests/c) get as the compiler's __sync builtins. */
#ifndef NATRA_ATOMICS_H
#define NATRA_ATOMICS_H

/* One read of a word other CPUs write: not torn, not merged with another
 * read by the compiler. */
#define NATRA_READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))

/* One write other CPUs read, kept in program order with the writes around
 * it by the compiler (the CPU keeps it on x86; not on arm64). */
#define NATRA_WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))

#endif /* NATRA_ATOMICS_H */
