//! CE marking of ECN-capable heavy packets inside the band.
use natra::dataplane::Direction;

use crate::counters::{counted, counters};
use crate::packets::*;
use crate::setup::*;

/// Heavy and over rate, inside the ECN band (just above the mice reserve R):
/// ECT(0), ECT(1) and CE IPv4 packets pass, leave with CE, and the IPv4
/// header checksum is still right. At exactly cost + R + band the packet
/// passes unmarked (it is not in the band yet).
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn over_rate_ect_ipv4_is_ce_marked_with_a_valid_checksum() {
    let skel = loaded();
    let dir = Direction::PodEgress;
    let p = configure(&skel, dir, RATE_BITS);
    make_heavy(&skel, dir, &p);
    let band = band(&p);
    let res = reserve(&p);
    // with IP options too: the checksum covers them
    let with_opts = |tos| ipv4(tos, IPPROTO_TCP, &[1, 1, 1, 0], &tcp(900, &[]));
    for (name, pkt) in [
        ("ECT(0)", ipv4_tcp(ECN_ECT0)),
        ("ECT(1)", ipv4_tcp(ECN_ECT1)),
        ("DSCP EF + ECT(0)", ipv4_tcp(0xb8 | ECN_ECT0)),
        ("CE", ipv4_tcp(ECN_CE)),
        ("ECT(0) UDP", ipv4(ECN_ECT0, IPPROTO_UDP, &[], &udp(500))),
        ("ECT(1) options", with_opts(ECN_ECT1)),
    ] {
        let cost = byte_ns(pkt.len());
        assert_eq!(
            inet_checksum(ipv4_header(&pkt)),
            0,
            "{name}: test packet checksum"
        );
        for level in [cost + res + band - 1, cost + res + band / 2, cost + res] {
            freeze_bucket(&skel, dir, level);
            let before = counters(&skel, dir);
            let r = run(&skel, dir, &pkt);
            assert_eq!(r.retval, RET_PASS, "{name} level {level}: verdict");
            assert_eq!(r.data.len(), pkt.len());
            let tos = ipv4_tos(&r.data);
            assert_eq!(tos & 3, ECN_CE, "{name} level {level}: tos {tos:#x} not CE");
            assert_eq!(tos & !3, ipv4_tos(&pkt) & !3, "{name}: DSCP changed");
            assert_eq!(
                inet_checksum(ipv4_header(&r.data)),
                0,
                "{name} level {level}: IPv4 header checksum broken after CE marking"
            );
            // nothing but tos and the checksum changed
            let mut expect = pkt.clone();
            expect[ETH_HLEN + 1] = tos;
            expect[ETH_HLEN + 10..ETH_HLEN + 12]
                .copy_from_slice(&r.data[ETH_HLEN + 10..ETH_HLEN + 12]);
            assert_eq!(
                r.data, expect,
                "{name}: bytes other than tos/checksum changed"
            );
            let after = counters(&skel, dir);
            let d = after - before;
            let len = pkt.len() as u64;
            assert_eq!(
                (d.passed_packets, d.passed_bytes),
                (1, len),
                "{name} level {level}: passed"
            );
            assert_eq!(
                (d.ce_marked_packets, d.ce_marked_bytes),
                (1, len),
                "{name} level {level}: CE-marked"
            );
            assert_eq!(after.dropped_packets, 0);
            assert_eq!(d.passed_heavy_packets, 1, "{name}: heavy");
            assert_eq!(
                bucket(&skel, dir),
                (level - cost, u64::MAX),
                "{name}: charged cost"
            );
        }

        // exactly cost + R + band: passes above the band, unmarked
        freeze_bucket(&skel, dir, cost + res + band);
        let (r, d) = counted(&skel, dir, || run(&skel, dir, &pkt));
        assert_eq!(r.retval, RET_PASS);
        assert_eq!(r.data, pkt, "{name}: marked while above the band");
        assert_eq!(d.ce_marked_packets, 0, "{name}");
        assert_eq!(d.passed_packets, 1, "{name}");
        assert_eq!(bucket(&skel, dir), (res + band, u64::MAX));
    }
}

/// Same for IPv6 (heavy, just inside the band above R): the traffic class's
/// ECN bits become 11, DSCP and flow label are kept.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn over_rate_ect_ipv6_is_ce_marked() {
    let skel = loaded();
    let dir = Direction::PodIngress;
    let p = configure(&skel, dir, RATE_BITS);
    make_heavy(&skel, dir, &p);
    let band = band(&p) + reserve(&p);
    for (name, pkt) in [
        ("ECT(0)", ipv6_tcp(ECN_ECT0)),
        ("ECT(1)", ipv6_tcp(ECN_ECT1)),
        ("DSCP AF41 + ECT(0)", ipv6_tcp(0x88 | ECN_ECT0)),
        ("DSCP CS7 + ECT(1)", ipv6_tcp(0xe0 | ECN_ECT1)),
        ("CE", ipv6_tcp(ECN_CE)),
        (
            "ECT(0) UDP",
            ipv6(ECN_ECT0, 0xfffff, IPPROTO_UDP, &udp(300)),
        ),
    ] {
        let cost = byte_ns(pkt.len());
        freeze_bucket(&skel, dir, cost + band - 1);
        let before = counters(&skel, dir);
        let r = run(&skel, dir, &pkt);
        assert_eq!(r.retval, RET_PASS, "{name}: verdict");
        let tc = ipv6_tclass(&r.data);
        assert_eq!(tc & 3, ECN_CE, "{name}: traffic class {tc:#x} not CE");
        assert_eq!(tc & !3, ipv6_tclass(&pkt) & !3, "{name}: DSCP changed");
        assert_eq!(
            ipv6_flow(&r.data),
            ipv6_flow(&pkt),
            "{name}: flow label changed"
        );
        let mut expect = pkt.clone();
        expect[ETH_HLEN..ETH_HLEN + 2].copy_from_slice(&r.data[ETH_HLEN..ETH_HLEN + 2]);
        assert_eq!(
            r.data, expect,
            "{name}: bytes other than the traffic class changed"
        );
        let after = counters(&skel, dir);
        let d = after - before;
        assert_eq!(d.ce_marked_packets, 1, "{name}");
        assert_eq!(d.ce_marked_bytes, pkt.len() as u64, "{name}");
        assert_eq!(d.passed_packets, 1, "{name}");
        assert_eq!(after.dropped_packets, 0, "{name}");
        assert_eq!(
            bucket(&skel, dir),
            (band - 1, u64::MAX),
            "{name}: charged cost"
        );
    }
}
