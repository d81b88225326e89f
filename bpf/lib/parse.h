/* SPDX-License-Identifier: Apache-2.0 */
/* Packet parsing: reads headers with bpf_skb_load_bytes, which bounds-checks
 * against the whole skb (linear or not), so a short packet can never be read
 * past its end. */
#ifndef NATRA_PARSE_H
#define NATRA_PARSE_H

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP_NUM 6
#define IPPROTO_UDP_NUM 17
#define UDP_HLEN 8
#define ECN_MASK 0x3

enum natra_parse_result {
	NATRA_PARSED_IP = 0,
	NATRA_PARSED_NON_IP = 1,
	NATRA_PARSED_MALFORMED = 2,
};

struct natra_packet {
	__u64 wire_bytes;   /* what the packet costs on the wire, GSO segments' headers included */
	__u32 header_bytes; /* L2 + L3 (+ TCP) header, repeated once per GSO segment */
	__u8 ecn;	    /* the IP header's 2 ECN bits */
	__u8 is_ipv6;
};

static __always_inline int parse_tcp_header_len(struct __sk_buff *skb, __u32 offset, __u32 *len)
{
	__u8 doff_byte;

	/* byte 12 of the TCP header: data offset in 32-bit words, high nibble */
	if (bpf_skb_load_bytes(skb, offset + 12, &doff_byte, 1) < 0)
		return -1;
	*len = (__u32)(doff_byte >> 4) * 4;
	return *len < 20 ? -1 : 0;
}

/* The L4 header a GSO segment repeats: TCP's own length, UDP's 8 bytes (USO),
 * as qdisc_pkt_len_init() counts them. */
static __always_inline int parse_l4_header_len(struct __sk_buff *skb, __u8 proto, __u32 offset,
					       __u32 *len)
{
	if (proto == IPPROTO_TCP_NUM)
		return parse_tcp_header_len(skb, offset, len);
	if (proto == IPPROTO_UDP_NUM && skb->len >= offset + UDP_HLEN) {
		*len = UDP_HLEN;
		return 0;
	}
	return -1;
}

static __always_inline enum natra_parse_result parse_ipv4(struct __sk_buff *skb,
							  struct natra_packet *pkt)
{
	struct iphdr ip;
	__u32 ihl, l4_len = 0;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return NATRA_PARSED_MALFORMED;
	ihl = (__u32)ip.ihl * 4;
	if (ip.version != 4 || ihl < sizeof(ip))
		return NATRA_PARSED_MALFORMED;
	pkt->ecn = ip.tos & ECN_MASK;
	pkt->header_bytes = ETH_HLEN + ihl;
	if (!(ip.frag_off & bpf_htons(0x1fff)) &&
	    parse_l4_header_len(skb, ip.protocol, ETH_HLEN + ihl, &l4_len) == 0)
		pkt->header_bytes += l4_len;
	return NATRA_PARSED_IP;
}

static __always_inline enum natra_parse_result parse_ipv6(struct __sk_buff *skb,
							  struct natra_packet *pkt)
{
	struct ipv6hdr ip6;
	__u32 l4_len = 0;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)) < 0)
		return NATRA_PARSED_MALFORMED;
	if (ip6.version != 6)
		return NATRA_PARSED_MALFORMED;
	/* traffic class straddles the first two bytes: 4 bits each side */
	pkt->ecn = (ip6.flow_lbl[0] >> 4) & ECN_MASK;
	pkt->is_ipv6 = 1;
	pkt->header_bytes = ETH_HLEN + sizeof(ip6);
	if (parse_l4_header_len(skb, ip6.nexthdr, ETH_HLEN + sizeof(ip6), &l4_len) == 0)
		pkt->header_bytes += l4_len;
	return NATRA_PARSED_IP;
}

/* Fills pkt for any packet; the result says how far parsing got. */
static __always_inline enum natra_parse_result parse_packet(struct __sk_buff *skb,
							    struct natra_packet *pkt)
{
	enum natra_parse_result res;
	__u32 segs = skb->gso_segs;

	pkt->wire_bytes = skb->len;
	pkt->header_bytes = 0;
	pkt->ecn = 0;
	pkt->is_ipv6 = 0;

	if (skb->len < ETH_HLEN)
		return NATRA_PARSED_MALFORMED;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		res = parse_ipv4(skb, pkt);
	else if (skb->protocol == bpf_htons(ETH_P_IPV6))
		res = parse_ipv6(skb, pkt);
	else
		return NATRA_PARSED_NON_IP;

	/* A GSO packet leaves as gso_segs frames, each with its own headers:
	 * charge them like qdisc_pkt_len() does, or the cap is exceeded. */
	if (res == NATRA_PARSED_IP && segs > 1)
		pkt->wire_bytes += (__u64)(segs - 1) * pkt->header_bytes;
	return res;
}

#endif /* NATRA_PARSE_H */
