/* SPDX-License-Identifier: Apache-2.0 */
/* Packet parsing: reads headers straight from the skb's linear data when they
 * are there, else with bpf_skb_load_bytes (which bounds-checks against the
 * whole skb, linear or not), so a short packet can never be read past its
 * end. Fills the wire cost and the flow key (bpf/lib/flow.h). */
#ifndef NATRA_PARSE_H
#define NATRA_PARSE_H

#include "lib/flow.h"

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP_NUM 6
#define IPPROTO_UDP_NUM 17
#define IPV6_HOPOPTS 0
#define IPV6_ROUTING 43
#define IPV6_FRAGMENT 44
#define IPV6_AH 51
#define IPV6_DSTOPTS 60
#define UDP_HLEN 8
#define ECN_MASK 0x3
/* IPv6 extension headers skipped before giving up on finding ports. */
#ifndef NATRA_IPV6_MAX_EXT
#define NATRA_IPV6_MAX_EXT 6
#endif

enum natra_parse_result {
	NATRA_PARSED_IP = 0,
	NATRA_PARSED_NON_IP = 1,
	NATRA_PARSED_MALFORMED = 2,
};

struct natra_packet {
	__u64 wire_bytes;   /* what the packet costs on the wire, GSO segments' headers included */
	__u32 header_bytes; /* L2 + L3 (+ TCP/UDP) header, repeated once per GSO segment */
	__u8 ecn;	    /* the IP header's 2 ECN bits */
	__u8 is_ipv6;
	__u8 tcp_flags; /* byte 13 of the TCP header (CWR .. FIN); 0 for anything else */
	__u8 pad;
	struct natra_flow_key key;
};

/* Copies `len` bytes at `off`: from the linear data without a helper call
 * (a helper call costs ~20 ns, and the common packet needs three), else
 * through bpf_skb_load_bytes. Returns < 0 if the packet is too short.
 * `helper_only` (a constant) skips the direct read: after IPv6 extension
 * headers the offset depends on a loop, and a direct read would make the
 * verifier track that offset exactly on every path through the loop (tens of
 * thousands of instructions to verify); through the helper it stays an
 * opaque number. */
static __always_inline int natra_load(struct __sk_buff *skb, __u32 off, void *to, const __u32 len,
				      const int helper_only)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	void *p;

	if (!helper_only && off <= 0xfff) {
		p = data + off;
		if (p + len <= end) {
			__builtin_memcpy(to, p, len);
			return 0;
		}
	}
	return bpf_skb_load_bytes(skb, off, to, len);
}

static __always_inline int parse_tcp_header_len(struct __sk_buff *skb, __u32 offset, __u32 *len,
						__u8 *flags, const int helper_only)
{
	__u8 b[2];

	/* bytes 12-13 of the TCP header: data offset in 32-bit words (high
	 * nibble), then the flags */
	if (natra_load(skb, offset + 12, b, 2, helper_only) < 0)
		return -1;
	*len = (__u32)(b[0] >> 4) * 4;
	if (*len < 20)
		return -1;
	*flags = b[1];
	return 0;
}

/* The L4 header a GSO segment repeats: TCP's own length, UDP's 8 bytes (USO),
 * as qdisc_pkt_len_init() counts them. */
static __always_inline int parse_l4_header_len(struct __sk_buff *skb, __u8 proto, __u32 offset,
					       __u32 *len, __u8 *tcp_flags, const int helper_only)
{
	if (proto == IPPROTO_TCP_NUM)
		return parse_tcp_header_len(skb, offset, len, tcp_flags, helper_only);
	if (proto == IPPROTO_UDP_NUM && skb->len >= offset + UDP_HLEN) {
		*len = UDP_HLEN;
		return 0;
	}
	return -1;
}

/* Source and destination port of TCP and UDP; other protocols and
 * fragments keep 0. A header too short for them keeps 0 too. */
static __always_inline void parse_ports(struct __sk_buff *skb, __u8 proto, __u32 offset,
					struct natra_flow_key *key, const int helper_only)
{
	__u16 ports[2];

	if (proto != IPPROTO_TCP_NUM && proto != IPPROTO_UDP_NUM)
		return;
	if (natra_load(skb, offset, ports, sizeof(ports), helper_only) < 0)
		return;
	key->sport = ports[0];
	key->dport = ports[1];
}

static __always_inline enum natra_parse_result parse_ipv4(struct __sk_buff *skb,
							  struct natra_packet *pkt)
{
	struct iphdr ip;
	__u32 ihl, l4_len = 0;

	if (natra_load(skb, ETH_HLEN, &ip, sizeof(ip), 0) < 0)
		return NATRA_PARSED_MALFORMED;
	ihl = (__u32)ip.ihl * 4;
	if (ip.version != 4 || ihl < sizeof(ip))
		return NATRA_PARSED_MALFORMED;
	pkt->ecn = ip.tos & ECN_MASK;
	pkt->header_bytes = ETH_HLEN + ihl;
	pkt->key.family = NATRA_FLOW_IPV4;
	pkt->key.proto = ip.protocol;
	pkt->key.saddr[0] = ip.saddr;
	pkt->key.daddr[0] = ip.daddr;
	/* MF or a fragment offset: every fragment, the first one too, is keyed
	 * without ports, so that the datagram stays one flow. */
	if (!(ip.frag_off & bpf_htons(0x3fff)))
		parse_ports(skb, ip.protocol, ETH_HLEN + ihl, &pkt->key, 0);
	/* the first fragment does carry the L4 header a GSO segment repeats */
	if (!(ip.frag_off & bpf_htons(0x1fff)) &&
	    parse_l4_header_len(skb, ip.protocol, ETH_HLEN + ihl, &l4_len, &pkt->tcp_flags, 0) == 0)
		pkt->header_bytes += l4_len;
	return NATRA_PARSED_IP;
}

static __always_inline int ipv6_is_ext(__u8 nexthdr)
{
	return nexthdr == IPV6_HOPOPTS || nexthdr == IPV6_ROUTING || nexthdr == IPV6_DSTOPTS ||
	       nexthdr == IPV6_FRAGMENT || nexthdr == IPV6_AH;
}

/*
 * Skips up to NATRA_IPV6_MAX_EXT extension headers (hop-by-hop, routing,
 * destination options, fragment, AH). Leaves *offset at the upper-layer
 * header and *nexthdr naming it (or the extension header where it gave up);
 * *frag is set for a fragment that is part of a fragmented datagram, and
 * *first_frag cleared for a non-first one. Returns -1 on a truncated header.
 */
static __always_inline int parse_ipv6_ext(struct __sk_buff *skb, __u8 *nexthdr, __u32 *offset,
					  __u32 *frag, __u32 *first_frag)
{
	__u8 hdr[4];
	__u32 frag_off;

	for (int i = 0; i < NATRA_IPV6_MAX_EXT; i++) {
		switch (*nexthdr) {
		case IPV6_HOPOPTS:
		case IPV6_ROUTING:
		case IPV6_DSTOPTS:
			if (natra_load(skb, *offset, hdr, 2, 1) < 0)
				return -1;
			*nexthdr = hdr[0];
			*offset += ((__u32)hdr[1] + 1) * 8;
			break;
		case IPV6_AH:
			if (natra_load(skb, *offset, hdr, 2, 1) < 0)
				return -1;
			*nexthdr = hdr[0];
			*offset += ((__u32)hdr[1] + 2) * 4;
			break;
		case IPV6_FRAGMENT:
			if (natra_load(skb, *offset, hdr, 4, 1) < 0)
				return -1;
			*nexthdr = hdr[0];
			*offset += 8;
			frag_off = ((__u32)hdr[2] << 8) | hdr[3];
			/* offset (13 bits) or M flag; an atomic fragment
			 * (both 0, RFC 6946) is a whole datagram. Set without
			 * branches ((x + 0xffff) >> 16 is x != 0 for a 16-bit
			 * x), so that the loop does not fork the verifier's
			 * paths per flag value. */
			*frag |= ((frag_off & 0xfff9) + 0xffff) >> 16;
			*first_frag &= ~(((frag_off & 0xfff8) + 0xffff) >> 16);
			break;
		default:
			return 0;
		}
	}
	return 0;
}

static __always_inline enum natra_parse_result parse_ipv6(struct __sk_buff *skb,
							  struct natra_packet *pkt)
{
	struct ipv6hdr ip6;
	__u32 l4_len = 0, offset = ETH_HLEN + sizeof(ip6);
	__u8 nexthdr;
	__u32 frag = 0, first_frag = 1;

	if (natra_load(skb, ETH_HLEN, &ip6, sizeof(ip6), 0) < 0)
		return NATRA_PARSED_MALFORMED;
	if (ip6.version != 6)
		return NATRA_PARSED_MALFORMED;
	/* traffic class straddles the first two bytes: 4 bits each side */
	pkt->ecn = (ip6.flow_lbl[0] >> 4) & ECN_MASK;
	pkt->is_ipv6 = 1;
	__builtin_memcpy(pkt->key.saddr, &ip6.saddr, 16);
	__builtin_memcpy(pkt->key.daddr, &ip6.daddr, 16);
	pkt->key.family = NATRA_FLOW_IPV6;
	nexthdr = ip6.nexthdr;
	pkt->key.proto = nexthdr;
	pkt->header_bytes = offset;
	if (!ipv6_is_ext(nexthdr)) {
		/* the common case: the upper layer right after the fixed header */
		parse_ports(skb, nexthdr, offset, &pkt->key, 0);
		if (parse_l4_header_len(skb, nexthdr, offset, &l4_len, &pkt->tcp_flags, 0) == 0)
			pkt->header_bytes += l4_len;
		return NATRA_PARSED_IP;
	}
	if (parse_ipv6_ext(skb, &nexthdr, &offset, &frag, &first_frag) < 0) {
		/* keyed as malformed; the fixed header is still charged */
		return NATRA_PARSED_MALFORMED;
	}
	pkt->key.proto = nexthdr;
	pkt->header_bytes = offset;
	if (!frag)
		parse_ports(skb, nexthdr, offset, &pkt->key, 1);
	if (first_frag &&
	    parse_l4_header_len(skb, nexthdr, offset, &l4_len, &pkt->tcp_flags, 1) == 0)
		pkt->header_bytes += l4_len;
	return NATRA_PARSED_IP;
}

/* 1 for a TCP SYN or SYN-ACK (not a RST): a new connection's handshake,
 * whose sender's timer is TCP's initial RTO (1 s), not the 200 ms minimum;
 * else 0. Without a branch: a flag the verifier knows only as 0..1 keeps
 * one state. */
static __always_inline int tcp_opens_flow(__u8 tcp_flags)
{
	return (tcp_flags >> 1) & ~(tcp_flags >> 2) & 1;
}

/* Fills pkt for any packet; the result says how far parsing got. Packets
 * that are not IP, or not parsable IP, get a key of their ethertype. */
static __always_inline enum natra_parse_result parse_packet(struct __sk_buff *skb,
							    struct natra_packet *pkt)
{
	enum natra_parse_result res;
	__u32 gso_size, segs, hdr, len;
	__u16 ethertype = (__u16)skb->protocol;

	__builtin_memset(pkt, 0, sizeof(*pkt));
	pkt->wire_bytes = skb->len;
	pkt->key.ethertype = ethertype;

	if (skb->len < ETH_HLEN)
		res = NATRA_PARSED_MALFORMED;
	else if (ethertype == bpf_htons(ETH_P_IP))
		res = parse_ipv4(skb, pkt);
	else if (ethertype == bpf_htons(ETH_P_IPV6))
		res = parse_ipv6(skb, pkt);
	else
		res = NATRA_PARSED_NON_IP;

	if (res != NATRA_PARSED_IP) {
		/* one key per ethertype; ECN bits of what was not parsed are
		 * not trusted */
		__builtin_memset(&pkt->key, 0, sizeof(pkt->key));
		pkt->key.ethertype = ethertype;
		pkt->key.family =
		    res == NATRA_PARSED_NON_IP ? NATRA_FLOW_NON_IP : NATRA_FLOW_MALFORMED;
		pkt->ecn = 0;
		return res;
	}

	/* A GSO packet leaves as one frame per gso_size bytes of payload, each
	 * with its own headers: charge them as qdisc_pkt_len_init() does, or
	 * the cap is exceeded. gso_segs cannot be trusted for that: a packet
	 * from an untrusted source (SKB_GSO_DODGY: a packet socket with
	 * PACKET_VNET_HDR, tun/tap) has 0 until the device validates it, after
	 * tc egress. So the payload sets the count, and gso_segs only raises
	 * it. Not GSO (gso_size 0): one frame, nothing more to read. */
	gso_size = skb->gso_size;
	if (!gso_size)
		return res;
	segs = skb->gso_segs;
	hdr = pkt->header_bytes;
	len = skb->len;
	if (len > hdr && (len - hdr + gso_size - 1) / gso_size > segs)
		segs = (len - hdr + gso_size - 1) / gso_size;
	if (segs > 1)
		pkt->wire_bytes += (__u64)(segs - 1) * hdr;
	return res;
}

#endif /* NATRA_PARSE_H */
