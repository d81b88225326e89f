//! Verdicts and charges under and over the rate, per direction.
use natra::dataplane::Direction;

use crate::counters::{counted, counters, Counters};
use crate::packets::*;
use crate::setup::*;

/// A new (all-zero) bucket is full at the first packet; an under-rate IPv4
/// TCP packet passes untouched and is counted once, at its length, and the
/// bucket is charged exactly its length.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn under_rate_ipv4_tcp_passes_and_is_counted() {
    let skel = loaded();
    for dir in Direction::ALL {
        let p = configure(&skel, dir, RATE_BITS);
        // the program's clock is CLOCK_MONOTONIC_COARSE; the all-zero state is full
        // only once it is past refill_full_ns.
        assert!(
            uptime_ns() > p.refill_full_ns,
            "uptime shorter than a refill"
        );
        for tos in [ECN_NOT_ECT, ECN_ECT0, 0xb8 | ECN_ECT1] {
            let before = counters(&skel, dir);
            let (level_before, _) = bucket(&skel, dir);
            let pkt = ipv4_tcp(tos);
            let r = run(&skel, dir, &pkt);
            assert_eq!(r.retval, RET_PASS, "{dir:?} tos {tos:#x}: verdict");
            assert_eq!(
                r.data, pkt,
                "{dir:?} tos {tos:#x}: an under-rate packet is not rewritten"
            );
            let after = counters(&skel, dir);
            let d = after - before;
            assert_eq!(d.passed_packets, 1, "{dir:?} tos {tos:#x}");
            assert_eq!(d.passed_bytes, pkt.len() as u64, "{dir:?} tos {tos:#x}");
            assert_eq!(
                d.passed_mouse_packets, 1,
                "{dir:?} tos {tos:#x}: a new flow is a mouse"
            );
            assert_eq!(after.ce_marked_packets, 0);
            assert_eq!(after.dropped_packets, 0);
            assert_eq!((after.malformed_packets, after.non_ip_packets), (0, 0));
            let (level, last_ns) = bucket(&skel, dir);
            assert!(last_ns > 0, "last_ns not set");
            if level_before == 0 {
                // first packet: full, minus this packet
                assert_eq!(level, full(&p) - byte_ns(pkt.len()));
            } else {
                // later ones: at most the refill since, minus this packet
                assert!(level <= full(&p) - byte_ns(pkt.len()));
            }
        }
    }
}

/// Heavy and over rate (below R + band), a non-ECT packet (IPv4 or IPv6, TCP
/// or UDP) is dropped, counted dropped at its length, and does not touch the
/// bucket.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn over_rate_not_ect_is_dropped_and_bucket_unchanged() {
    let skel = loaded();
    let dir = Direction::PodEgress;
    let p = configure(&skel, dir, RATE_BITS);
    make_heavy(&skel, dir, &p);
    let band = band(&p) + reserve(&p);
    for (name, pkt) in [
        ("IPv4 TCP", ipv4_tcp(ECN_NOT_ECT)),
        ("IPv4 UDP DSCP", ipv4(0xb8, IPPROTO_UDP, &[], &udp(1200))),
        ("IPv6 TCP", ipv6_tcp(ECN_NOT_ECT)),
        ("IPv6 UDP", ipv6(0x20, 1, IPPROTO_UDP, &udp(64))),
    ] {
        let cost = byte_ns(pkt.len());
        for level in [cost + band - 1, cost, cost - 1, 0] {
            freeze_bucket(&skel, dir, level);
            let before = counters(&skel, dir);
            let r = run(&skel, dir, &pkt);
            assert_eq!(r.retval, RET_DROP, "{name} level {level}: verdict");
            let after = counters(&skel, dir);
            let d = after - before;
            assert_eq!(
                (d.dropped_packets, d.dropped_bytes),
                (1, pkt.len() as u64),
                "{name} level {level}: dropped"
            );
            assert_eq!(d.passed_packets, 0, "{name}");
            assert_eq!(after.ce_marked_packets, 0, "{name}");
            assert_eq!(
                bucket(&skel, dir),
                (level, u64::MAX),
                "{name}: bucket moved"
            );
        }
    }
}

/// Heavy: below R + one packet's cost even an ECT packet is dropped (the
/// reserve is the mice's, the band is not credit). A mouse: below one
/// packet's cost, dropped too.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn below_cost_even_ect_is_dropped() {
    let skel = loaded();
    let dir = Direction::PodIngress;
    let p = configure(&skel, dir, RATE_BITS);
    for (name, pkt, heavy) in [
        ("IPv4 ECT(0) heavy", ipv4_tcp(ECN_ECT0), true),
        ("IPv4 CE heavy", ipv4_tcp(ECN_CE), true),
        ("IPv6 ECT(1) heavy", ipv6_tcp(ECN_ECT1), true),
        ("IPv4 ECT(0) mouse", ipv4_tcp(ECN_ECT0), false),
        ("IPv6 ECT(1) mouse", ipv6_tcp(ECN_ECT1), false),
    ] {
        let cost = byte_ns(pkt.len());
        let levels = if heavy {
            make_heavy(&skel, dir, &p);
            vec![cost + reserve(&p) - 1, reserve(&p), cost, 0]
        } else {
            fill_cells(&skel, dir, &p, 0);
            vec![cost - 1, cost / 2, 0]
        };
        for level in levels {
            freeze_bucket(&skel, dir, level);
            let (r, d) = counted(&skel, dir, || run(&skel, dir, &pkt));
            assert_eq!(r.retval, RET_DROP, "{name} level {level}: verdict");
            assert_eq!(d.dropped_packets, 1, "{name}");
            assert_eq!(d.dropped_bytes, pkt.len() as u64, "{name}");
            let after = counters(&skel, dir);
            assert_eq!(after.passed_packets, 0, "{name}");
            assert_eq!(after.ce_marked_packets, 0, "{name}");
            assert_eq!(
                bucket(&skel, dir),
                (level, u64::MAX),
                "{name}: bucket moved"
            );
        }
    }
    // and no drop touched the sketch: only passing bytes are counted
    assert!(nonzero_cells(&skel, dir, &p).is_empty());
}

/// IPv6 packets are charged: the level drops by exactly wire_bytes x 1e9, and
/// successive packets add up.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn ipv6_packets_are_charged_exactly() {
    let skel = loaded();
    let dir = Direction::PodEgress;
    let p = configure(&skel, dir, RATE_BITS);
    let full = full(&p);
    freeze_bucket(&skel, dir, full);
    let mut level = full;
    let mut total = 0usize;
    for pkt in [
        ipv6_tcp(ECN_NOT_ECT),
        ipv6_tcp(ECN_ECT0),
        ipv6(0, 7, IPPROTO_UDP, &udp(0)),
        ipv6(0, 7, IPPROTO_UDP, &udp(1400)),
        ipv6(0, 0, 59, &[]), // no next header: bare 54-byte IPv6 packet
    ] {
        let r = run(&skel, dir, &pkt);
        assert_eq!(r.retval, RET_PASS);
        level -= byte_ns(pkt.len());
        total += pkt.len();
        assert_eq!(
            bucket(&skel, dir),
            (level, u64::MAX),
            "IPv6 packet of {} bytes not charged exactly",
            pkt.len()
        );
    }
    let c = counters(&skel, dir);
    assert_eq!((c.passed_packets, c.passed_bytes), (5, total as u64));
}

/// pod_ingress charges and counts only the ingress direction, pod_egress only
/// the egress one.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn each_program_charges_its_own_direction_only() {
    let skel = loaded();
    let pi = configure(&skel, Direction::PodIngress, RATE_BITS);
    let pe = configure(&skel, Direction::PodEgress, RATE_BITS * 10);
    freeze_bucket(&skel, Direction::PodIngress, full(&pi));
    freeze_bucket(&skel, Direction::PodEgress, full(&pe));
    let mut expect = [
        (Direction::PodIngress, full(&pi), Counters::default()),
        (Direction::PodEgress, full(&pe), Counters::default()),
    ];
    let pkt4 = ipv4_tcp(ECN_NOT_ECT);
    let pkt6 = ipv6(0, 0, IPPROTO_UDP, &udp(333));
    for (dir, pkt) in [
        (Direction::PodIngress, &pkt4),
        (Direction::PodEgress, &pkt6),
        (Direction::PodEgress, &pkt4),
        (Direction::PodIngress, &pkt6),
        (Direction::PodIngress, &pkt6),
    ] {
        let r = run(&skel, dir, pkt);
        assert_eq!(r.retval, RET_PASS, "{dir:?}");
        for e in expect.iter_mut() {
            if e.0 == dir {
                e.1 -= byte_ns(pkt.len());
                e.2.passed_packets += 1;
                e.2.passed_bytes += pkt.len() as u64;
                e.2.passed_mouse_packets += 1;
                e.2.passed_mouse_bytes += pkt.len() as u64;
            }
        }
        for (d, level, c) in expect {
            assert_eq!(
                bucket(&skel, d),
                (level, u64::MAX),
                "after a {dir:?} packet: {d:?} bucket"
            );
            assert_eq!(
                counters(&skel, d),
                c,
                "after a {dir:?} packet: {d:?} counters"
            );
        }
    }

    // and a drop in one direction does not show in the other
    for dir in Direction::ALL {
        freeze_bucket(&skel, dir, 0);
        let before_other = (counters(&skel, other(dir)), bucket(&skel, other(dir)));
        let (r, d) = counted(&skel, dir, || run(&skel, dir, &pkt4));
        assert_eq!(r.retval, RET_DROP, "{dir:?}");
        assert_eq!(d.dropped_packets, 1);
        assert_eq!(
            (counters(&skel, other(dir)), bucket(&skel, other(dir))),
            before_other,
            "a {dir:?} drop touched {:?}",
            other(dir)
        );
    }
}

/// A direction without a config (rate 0: not limited) passes everything
/// untouched, counts nothing and leaves its bucket alone, even when the
/// bucket is empty and the packet is ECT.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn unconfigured_direction_passes_untouched() {
    let skel = loaded();
    configure(&skel, Direction::PodEgress, RATE_BITS);
    let dir = Direction::PodIngress;
    freeze_bucket(&skel, dir, 0);
    let mut malformed = ipv4_tcp(ECN_ECT0);
    malformed[ETH_HLEN] = 0x65; // version 6
    for (name, pkt) in [
        ("IPv4 not-ECT", ipv4_tcp(ECN_NOT_ECT)),
        ("IPv4 ECT(0)", ipv4_tcp(ECN_ECT0)),
        ("IPv6 ECT(1)", ipv6_tcp(ECN_ECT1)),
        ("ARP", arp()),
        ("malformed IPv4", malformed),
    ] {
        for _ in 0..3 {
            let r = run(&skel, dir, &pkt);
            assert_eq!(r.retval, RET_PASS, "{name}: verdict");
            assert_eq!(r.data, pkt, "{name}: rewritten");
        }
        assert_eq!(counters(&skel, dir), Counters::default(), "{name}: counted");
        assert_eq!(bucket(&skel, dir), (0, u64::MAX), "{name}: bucket touched");
    }
    // and the configured direction was not charged for them either
    assert_eq!(counters(&skel, Direction::PodEgress), Counters::default());
    assert_eq!(bucket(&skel, Direction::PodEgress), (0, 0));
}
