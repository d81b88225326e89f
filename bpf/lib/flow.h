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

#define NATRA_HASH_C1 0x87c37b91114253d5ULL
#define NATRA_HASH_C2 0x4cf5ad432745937fULL
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

/* MurmurHash3 x64's block mixing, one 64-bit word at a time. */
static __always_inline __u64 natra_hash_word(__u64 h, __u64 k)
{
	k *= NATRA_HASH_C1;
	k = natra_rotl64(k, 31);
	k *= NATRA_HASH_C2;
	h ^= k;
	h = natra_rotl64(h, 27);
	return h * 5 + 0x52dce729;
}

static __always_inline __u64 natra_u64_of(__u32 hi, __u32 lo)
{
	return ((__u64)hi << 32) | lo;
}

/* 64-bit hash of the whole key: all 128 bits of both IPv6 addresses count. */
static __always_inline __u64 flow_hash(const struct natra_flow_key *k)
{
	__u64 h = NATRA_HASH_SEED;

	h = natra_hash_word(h, natra_u64_of(k->saddr[0], k->saddr[1]));
	h = natra_hash_word(h, natra_u64_of(k->saddr[2], k->saddr[3]));
	h = natra_hash_word(h, natra_u64_of(k->daddr[0], k->daddr[1]));
	h = natra_hash_word(h, natra_u64_of(k->daddr[2], k->daddr[3]));
	h = natra_hash_word(h, ((__u64)k->sport << 48) | ((__u64)k->dport << 32) |
				   ((__u64)k->proto << 24) | ((__u64)k->family << 16) |
				   k->ethertype);
	return natra_fmix64(h ^ sizeof(*k));
}

#endif /* NATRA_FLOW_H */
