/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Flow key and its hash. Pure functions: the host harness (tests/c) compiles
 * this header too.
 *
 * The key is the parsed 5-tuple, not skb->hash: the kernel's hash changes
 * when TCP re-hashes a socket (e.g. after an RTO), which would split one
 * flow's bytes over several sketch cells and hide an elephant.
 */
#ifndef NATRA_FLOW_H
#define NATRA_FLOW_H

/* What kind of key: IPv4 and IPv6 keys never equal each other, and packets
 * that are not parsed as IP get a key per ethertype (so ARP is one "flow"). */
enum natra_flow_family {
	NATRA_FLOW_NON_IP = 0,
	NATRA_FLOW_IPV4 = 4,
	NATRA_FLOW_IPV6 = 6,
	NATRA_FLOW_MALFORMED = 0xff,
};

/*
 * Five 64-bit words, always hashed whole: IPv4 addresses sit in the first
 * 32 bits of saddr/daddr, the rest is zero. Ports are 0 for protocols other
 * than TCP and UDP, and for every fragment of a fragmented datagram (the
 * first one included), so that a fragmented datagram is one flow.
 */
struct natra_flow_key {
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport; /* network order, as on the wire */
	__u16 dport;
	__u8 proto;  /* IP protocol after IPv6 extension headers; ethertype low byte otherwise */
	__u8 family; /* enum natra_flow_family */
	__u16 ethertype; /* for non-IP keys only */
};

#define NATRA_HASH_SEED 0x9e3779b97f4a7c15ULL

static __always_inline __u64 natra_rotl64(__u64 x, int r)
{
	return (x << r) | (x >> (64 - r));
}

/* MurmurHash3's 64-bit finalizer: every input bit flips each output bit
 * with probability ~1/2. */
static __always_inline __u64 natra_fmix64(__u64 k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return k;
}

/* One key word through MurmurHash3 x64's block mixing (multiply, rotate,
 * multiply), with constants of its own per position: a bijection of the
 * word, not linear in it, so differences of a few bits in several words do
 * not cancel in the sum (with one multiply per word, flipping the top bit
 * of any two words would). */
static __always_inline __u64 natra_mix_word(__u64 k, __u64 c1, __u64 c2)
{
	return natra_rotl64(k * c1, 31) * c2;
}

static __always_inline __u64 natra_u64_of(__u32 hi, __u32 lo)
{
	return ((__u64)hi << 32) | lo;
}

/* 64-bit hash of the whole key: all 128 bits of both IPv6 addresses count.
 * Each word is mixed on its own (constants from MurmurHash3 and wyhash) and
 * the results summed, so the CPU mixes the words side by side rather than
 * one after the other as MurmurHash3 does (~4 ns per packet here), then the
 * sum is finalized. The second and fourth words (the low 64 bits of each
 * IPv6 address) are zero in every other key (parse.h), and a zero word
 * mixes to 0: they are skipped there (~2 ns). */
static __always_inline __u64 flow_hash(const struct natra_flow_key *k)
{
	__u64 h =
	    natra_mix_word(natra_u64_of(k->saddr[0], k->saddr[1]), 0x87c37b91114253d5ULL,
			   0x4cf5ad432745937fULL) +
	    natra_mix_word(natra_u64_of(k->daddr[0], k->daddr[1]), 0xd6e8feb86659fd93ULL,
			   0x9fb21c651e98df25ULL) +
	    natra_mix_word(((__u64)k->sport << 48) | ((__u64)k->dport << 32) |
			       ((__u64)k->proto << 24) | ((__u64)k->family << 16) | k->ethertype,
			   0x8ebc6af09c88c6e3ULL, 0x589965cc75374cc3ULL);

	if (k->family == NATRA_FLOW_IPV6)
		h += natra_mix_word(natra_u64_of(k->saddr[2], k->saddr[3]), 0xc2b2ae3d27d4eb4fULL,
				    0x165667b19e3779f9ULL) +
		     natra_mix_word(natra_u64_of(k->daddr[2], k->daddr[3]), 0xa0761d6478bd642fULL,
				    0xe7037ed1a0b428dbULL);
	return natra_fmix64(h ^ NATRA_HASH_SEED);
}

#endif /* NATRA_FLOW_H */
