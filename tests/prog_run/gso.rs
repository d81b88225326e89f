//! GSO packets: charged every segment's headers, as the wire carries them.
use natra::dataplane::Direction;

use crate::counters::counted;
use crate::packets::*;
use crate::setup::*;

/// A GSO packet is charged once per segment for its headers (L2 + L3 + TCP,
/// options included), like qdisc_pkt_len() does; __sk_buff.gso_segs comes
/// from the BPF_PROG_RUN context.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn gso_tcp_packets_are_charged_per_segment_headers() {
    let skel = loaded();
    let dir = Direction::PodIngress;
    let p = configure(&skel, dir, RATE_BITS);
    let full = full(&p);
    let ts_opt = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]; // NOP NOP timestamps
    for (name, pkt, hdr) in [
        (
            "IPv4 TCP",
            ipv4(0, IPPROTO_TCP, &[], &tcp(2000, &[])),
            14 + 20 + 20,
        ),
        (
            "IPv4+options TCP+options",
            ipv4(0, IPPROTO_TCP, &[1, 1, 1, 0], &tcp(2000, &ts_opt)),
            14 + 24 + 32,
        ),
        (
            "IPv6 TCP",
            ipv6(0, 0, IPPROTO_TCP, &tcp(2000, &ts_opt)),
            14 + 40 + 32,
        ),
        // extension headers are part of what every segment repeats
        (
            "IPv6 hop-by-hop + dest opts TCP",
            {
                let mut l4 = ext8(60);
                l4.extend(ext8(IPPROTO_TCP));
                l4.extend(tcp(2000, &ts_opt));
                ipv6(0, 0, 0, &l4)
            },
            14 + 40 + 16 + 32,
        ),
        // a TCP header cut short is not read past the end: L2 + L3 only
        (
            "IPv4, 10 bytes of TCP",
            ipv4(0, IPPROTO_TCP, &[], &tcp(0, &[])[..10]),
            14 + 20,
        ),
        // data offset < 5 is not a TCP header length: L2 + L3 only
        (
            "IPv6 TCP doff 4",
            {
                let mut t = tcp(2000, &[]);
                t[12] = 4 << 4;
                ipv6(0, 0, IPPROTO_TCP, &t)
            },
            14 + 40,
        ),
        // a non-first fragment has no TCP header
        (
            "IPv4 TCP fragment",
            {
                let mut f = ipv4(0, IPPROTO_TCP, &[], &tcp(2000, &[]));
                f[ETH_HLEN + 6..ETH_HLEN + 8].copy_from_slice(&0x00b9u16.to_be_bytes());
                let c = {
                    f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&[0, 0]);
                    inet_checksum(&f[ETH_HLEN..ETH_HLEN + 20])
                };
                f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
                f
            },
            14 + 20,
        ),
    ] {
        for segs in [1u32, 2, 3] {
            freeze_bucket(&skel, dir, full);
            // a gso_size that makes `segs` segments of the payload, as the
            // kernel's gso_segs would say (natra charges what gso_size says)
            let gso_size = ((pkt.len() - hdr) as u32).div_ceil(segs);
            let (r, d) = counted(&skel, dir, || run_gso(&skel, dir, &pkt, segs, gso_size));
            assert_eq!(r.retval, RET_PASS, "{name} x{segs}");
            let wire = pkt.len() + (segs as usize - 1) * hdr;
            assert_eq!(
                bucket(&skel, dir),
                (full - byte_ns(wire), u64::MAX),
                "{name}, {segs} segments: expected {wire} wire bytes ({} + {} x {hdr})",
                pkt.len(),
                segs - 1
            );
            assert_eq!(d.passed_bytes, wire as u64, "{name} x{segs}");
        }
    }
}

/// A UDP GSO (USO, SKB_GSO_UDP_L4) packet leaves as gso_segs datagrams, each
/// with its own Ethernet, IP *and UDP* header; qdisc_pkt_len_init() counts
/// the UDP header per segment, and parse.h says it charges like it does.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn gso_udp_packets_are_charged_their_udp_header_per_segment() {
    let skel = loaded();
    let dir = Direction::PodEgress;
    let p = configure(&skel, dir, RATE_BITS);
    let full = full(&p);
    for (name, pkt, hdr) in [
        (
            "IPv4 UDP",
            ipv4(0, IPPROTO_UDP, &[], &udp(2400)),
            14 + 20 + 8,
        ),
        ("IPv6 UDP", ipv6(0, 0, IPPROTO_UDP, &udp(2400)), 14 + 40 + 8),
    ] {
        let segs = 3u32;
        freeze_bucket(&skel, dir, full);
        let r = run_gso(&skel, dir, &pkt, segs, 1200);
        assert_eq!(r.retval, RET_PASS, "{name}");
        let wire = pkt.len() + (segs as usize - 1) * hdr;
        let charged = ((full - bucket(&skel, dir).0) as u64) / NSEC_PER_SEC;
        assert_eq!(
            charged,
            wire as u64,
            "DATAPLANE BUG (bpf/lib/parse.h): {name} GSO packet of {segs} segments charged \
             {charged} bytes, but {wire} leave the wire ({} + {} x {hdr}-byte headers): the \
             UDP header of every segment after the first is not charged, so UDP GSO traffic \
             exceeds the rate by 8 bytes per segment",
            pkt.len(),
            segs - 1
        );
    }
}

/// A GSO packet from an untrusted source (SKB_GSO_DODGY: a packet socket
/// with PACKET_VNET_HDR, which needs only CAP_NET_RAW, or tun/tap) reaches tc
/// with `gso_segs` 0: the kernel computes it only when it segments (or
/// validates) the packet, after tc. The wire still carries every segment's
/// headers, and qdisc_pkt_len_init() charges them (DIV_ROUND_UP(len -
/// headers, gso_size) segments for DODGY): so must natra, from `gso_size`,
/// whatever `gso_segs` says (0, right, or understated). Issue 12, item 1: a
/// Pod sending gso_size-100 frames this way passed ~1.5x its cap.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn dodgy_gso_packets_are_charged_every_segments_headers() {
    let skel = loaded();
    const GSO_SIZE: usize = 100;
    let ts_opt = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]; // NOP NOP timestamps
    let mut wrong = Vec::new();
    for dir in [Direction::PodIngress, Direction::PodEgress] {
        let p = configure(&skel, dir, RATE_BITS);
        let full = full(&p);
        for (name, pkt, hdr) in [
            // 3000 bytes: 30 full segments
            (
                "IPv4 TCP",
                ipv4(0, IPPROTO_TCP, &[], &tcp(3000, &[])),
                14 + 20 + 20,
            ),
            // 2950 bytes: 29 full segments and a half one
            (
                "IPv4 TCP, last segment short",
                ipv4(0, IPPROTO_TCP, &[], &tcp(2950, &[])),
                14 + 20 + 20,
            ),
            (
                "IPv6 TCP+options",
                ipv6(0, 0, IPPROTO_TCP, &tcp(3000, &ts_opt)),
                14 + 40 + 32,
            ),
            (
                "IPv6 hop-by-hop TCP",
                {
                    let mut l4 = ext8(IPPROTO_TCP);
                    l4.extend(tcp(2950, &[]));
                    ipv6(0, 0, 0, &l4)
                },
                14 + 40 + 8 + 20,
            ),
        ] {
            let segs = (pkt.len() - hdr).div_ceil(GSO_SIZE);
            let wire = pkt.len() + (segs - 1) * hdr;
            // 0: what SKB_GSO_DODGY gives; segs: what the kernel's own GSO
            // gives; 1 and segs / 2: understated
            for gso_segs in [0, segs, 1, segs / 2] {
                freeze_bucket(&skel, dir, full);
                let (r, d) = counted(&skel, dir, || {
                    run_gso(&skel, dir, &pkt, gso_segs as u32, GSO_SIZE as u32)
                });
                assert_eq!(r.retval, RET_PASS, "{dir:?} {name}");
                let charged = ((full - bucket(&skel, dir).0) as u64) / NSEC_PER_SEC;
                let counted = d.passed_bytes;
                println!(
                    "{dir:?} {name}: gso_size {GSO_SIZE}, gso_segs {gso_segs}: charged {charged} \
                     B, counted {counted} B, wire {wire} B ({segs} segments of {hdr} B headers)"
                );
                if (charged, counted) != (wire as u64, wire as u64) {
                    wrong.push(format!(
                        "{dir:?} {name}, {} B in {segs} segments \
                     of gso_size {GSO_SIZE}, gso_segs {gso_segs} in the skb: charged {charged} \
                     B and counted {counted} B, but the wire carries {wire} B ({} + {} x \
                     {hdr}-byte headers)",
                        pkt.len(),
                        pkt.len(),
                        segs - 1
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "DATAPLANE BUG (bpf/lib/parse.h): GSO segments' headers not charged:\n{}",
        wrong.join("\n")
    );
}

/// A gso_size with no more payload than one segment, or no payload at all
/// (a malicious DODGY packet: qdisc_pkt_len_init() gives up on it), is one
/// segment: charged its length, never less, never a wrapped-around count.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn gso_size_without_more_than_a_segment_of_payload_is_one_segment() {
    let skel = loaded();
    for dir in [Direction::PodIngress, Direction::PodEgress] {
        let p = configure(&skel, dir, RATE_BITS);
        let full = full(&p);
        for (name, pkt) in [
            (
                "IPv4 TCP, no payload",
                ipv4(0, IPPROTO_TCP, &[], &tcp(0, &[])),
            ),
            ("IPv4 TCP, 100 B", ipv4(0, IPPROTO_TCP, &[], &tcp(100, &[]))),
            ("IPv6 TCP, 1 B", ipv6(0, 0, IPPROTO_TCP, &tcp(1, &[]))),
            // headers cut short: natra's header is L2 + L3, skb->len below
            // or at it plus the 10 bytes
            (
                "IPv4, 10 bytes of TCP",
                ipv4(0, IPPROTO_TCP, &[], &tcp(0, &[])[..10]),
            ),
            // not IP at all: never multiplied
            ("ARP", arp()),
        ] {
            for gso_segs in [0u32, 1] {
                freeze_bucket(&skel, dir, full);
                let r = run_gso(&skel, dir, &pkt, gso_segs, 100);
                assert_eq!(r.retval, RET_PASS, "{dir:?} {name}");
                assert_eq!(
                    bucket(&skel, dir).0,
                    full - byte_ns(pkt.len()),
                    "{dir:?} {name}, gso_segs {gso_segs}: not charged its {} bytes",
                    pkt.len()
                );
            }
        }
    }
}
