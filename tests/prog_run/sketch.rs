//! The two stages: mice, heavy flows, the sketch and its flow key.
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::MapCore;
use natra::dataplane::maps::{heavy_flows_estimate, write_config};
use natra::dataplane::skeleton::{NatraSkel, NatraSkelBuilder};
use natra::dataplane::Direction;
use natra::dataplane::Placement;
use natra::limits::{pod_limits, RequestedLimit, Tuning};

use crate::common;
use crate::counters::{counted, counters};
use crate::packets::*;
use crate::setup::*;

/// A mouse may use the whole bucket: above the reserve, inside the heavy
/// flows' ECN band and inside the reserve it passes unmarked (ECT or not),
/// charged and counted as a mouse; only below one packet's cost is it dropped.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn mice_pass_down_to_the_bottom_unmarked() {
    let skel = loaded();
    for dir in Direction::ALL {
        let p = configure(&skel, dir, RATE_BITS);
        for (name, pkt) in [
            ("IPv4 not-ECT", ipv4_tcp(ECN_NOT_ECT)),
            ("IPv4 ECT(0)", ipv4_tcp(ECN_ECT0)),
            ("IPv6 ECT(1)", ipv6_tcp(ECN_ECT1)),
        ] {
            let cost = byte_ns(pkt.len());
            for level in [
                cost + reserve(&p) + band(&p) - 1,
                cost + reserve(&p) - 1,
                cost + 1,
                cost,
            ] {
                fill_cells(&skel, dir, &p, 0);
                freeze_bucket(&skel, dir, level);
                let (r, d) = counted(&skel, dir, || run(&skel, dir, &pkt));
                assert_eq!(r.retval, RET_PASS, "{dir:?} {name} at {level}");
                assert_eq!(r.data, pkt, "{dir:?} {name}: a mouse was rewritten");
                assert_eq!(
                    (
                        d.passed_mouse_packets,
                        d.passed_mouse_bytes,
                        d.passed_heavy_packets,
                        d.ce_marked_packets,
                    ),
                    (1, pkt.len() as u64, 0, 0),
                    "{dir:?} {name} at {level}"
                );
                assert_eq!(bucket(&skel, dir), (level - cost, u64::MAX));
            }
            fill_cells(&skel, dir, &p, 0);
            freeze_bucket(&skel, dir, cost - 1);
            assert_eq!(run(&skel, dir, &pkt).retval, RET_DROP, "{dir:?} {name}");
        }
    }
}

/// A flow under the threshold stays a mouse; the packet that takes its
/// estimate past the threshold is heavy, and so are the next ones. Idle one
/// epoch, half its bytes count (here under the threshold again: a mouse);
/// idle two epochs (the window), none: light again. Time is driven through
/// the epoch number in the bucket state; then once on the real clock.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn a_flow_turns_heavy_past_the_threshold_and_light_after_the_window() {
    let skel = loaded();
    let dir = Direction::PodEgress;
    let p = configure(&skel, dir, 20_000_000); // T = 312500 B
    let t = p.heavy_threshold_bytes;
    let pkt = ipv4_flow(40000, 5201);
    let len = pkt.len() as u64;
    let cells = flow_cells(&skel, dir, &p, &pkt);
    // a bucket that never runs out: classification is what is tested
    let mut big = p;
    big.burst_bytes = 1 << 32;
    write_config(
        skel.maps.natra_cfg.as_fd(),
        dir,
        &big,
        &Placement::default(),
    )
    .expect("write config");
    freeze_bucket(&skel, dir, full(&big));

    // class of the next packet of the flow, from the counters
    let send = |skel: &NatraSkel<'_>| -> bool {
        let before = counters(skel, dir);
        assert_eq!(run(skel, dir, &pkt).retval, RET_PASS);
        let after = counters(skel, dir);
        after.passed_heavy_packets > before.passed_heavy_packets
    };
    let mut sent = 0u64;
    let mut first_heavy = None;
    for i in 0..(t / len + 10) {
        let heavy = send(&skel);
        sent += len;
        assert_eq!(heavy, sent > t, "packet {i}, {sent} bytes: heavy {heavy}");
        if heavy && first_heavy.is_none() {
            first_heavy = Some(sent);
        }
        // its cells hold exactly what it sent, in the frozen epoch
        for &c in &cells {
            assert_eq!(read_cell(&skel, c), cell(FROZEN_EPOCH, sent), "cell {c}");
        }
    }
    println!(
        "threshold {t} B: heavy from {} B ({} packets of {len} B)",
        first_heavy.unwrap(),
        first_heavy.unwrap() / len
    );
    let seen = state(&skel, dir).heavy_seen;
    assert_eq!(seen.count_ones(), 1, "one heavy flow in the bitmap");
    assert!((heavy_flows_estimate(seen) - 1.0).abs() < 0.1);

    // one epoch later: half of it counts (sent/2 + len < T: a mouse again)
    let mut st = state(&skel, dir);
    st.epoch = FROZEN_EPOCH + 1;
    set_state(&skel, dir, &st);
    assert!(
        !send(&skel),
        "one epoch later, half of {sent} B is under {t} B"
    );
    for &c in &cells {
        assert_eq!(read_cell(&skel, c), cell(FROZEN_EPOCH + 1, sent / 2 + len));
    }
    // heavy again within that epoch
    while !send(&skel) {}
    // two epochs idle: forgotten
    let mut st = state(&skel, dir);
    st.epoch = FROZEN_EPOCH + 3;
    set_state(&skel, dir, &st);
    assert!(!send(&skel), "two epochs later the flow is light");
    for &c in &cells {
        assert_eq!(read_cell(&skel, c), cell(FROZEN_EPOCH + 3, len));
    }

    // the real clock: an epoch that began two epochs ago moves on by two
    while !send(&skel) {}
    let mut st = state(&skel, dir);
    let epoch = st.epoch;
    st.epoch_start_ns = coarse_ns() - 2 * p.epoch_ns - 1_000_000;
    set_state(&skel, dir, &st);
    let before = coarse_ns();
    assert!(
        !send(&skel),
        "after a window on the real clock the flow is light"
    );
    let st = state(&skel, dir);
    assert_eq!(st.epoch, epoch + 2);
    assert!(st.epoch_start_ns >= before && st.epoch_start_ns <= coarse_ns());
    assert_eq!(st.heavy_seen, 0);
    assert_eq!(st.heavy_seen_prev, 0);
}

/// 10,000 distinct light flows (one packet each, of 100..1400 bytes) at the
/// default sketch size, next to two heavy flows: how many of the light flows
/// does the next packet find heavy? Must be under 1%.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn ten_thousand_light_flows_are_rarely_taken_for_heavy() {
    let skel = loaded();
    let dir = Direction::PodIngress;
    let p = configure(&skel, dir, RATE_BITS); // T = 1.5625 MB
                                              // a bucket that never runs out: classification is what is measured
    let mut big = p;
    big.burst_bytes = 1 << 32;
    write_config(
        skel.maps.natra_cfg.as_fd(),
        dir,
        &big,
        &Placement::default(),
    )
    .expect("write config");
    freeze_bucket(&skel, dir, full(&big));
    fill_cells(&skel, dir, &p, 0);

    let elephant = |n: u16| ipv4(0, IPPROTO_TCP, &[], &tcp_ports(n, 443, 1400));
    for e in [1u16, 2] {
        let pkt = elephant(e);
        for _ in 0..(p.heavy_threshold_bytes / pkt.len() as u64 + 50) {
            run(&skel, dir, &pkt);
        }
    }
    let (_, d) = counted(&skel, dir, || {
        for e in [1u16, 2] {
            run(&skel, dir, &elephant(e));
        }
    });
    assert_eq!(d.passed_heavy_packets, 2, "the elephants are heavy");

    const FLOWS: u32 = 10_000;
    let light = |f: u32, size: usize| {
        let src = [10, 1 + (f >> 16) as u8, (f >> 8) as u8, f as u8];
        let mut pkt = ipv4(
            0,
            IPPROTO_UDP,
            &[],
            &udp(size)[..], // ports fixed: the addresses differ
        );
        pkt[ETH_HLEN + 12..ETH_HLEN + 16].copy_from_slice(&src);
        set_frag4(pkt, 0x4000)
    };
    let mut bytes = 0u64;
    for f in 0..FLOWS {
        let size = 100 + (f as usize * 7919) % 1300;
        let pkt = light(f, size);
        bytes += pkt.len() as u64;
        assert_eq!(run(&skel, dir, &pkt).retval, RET_PASS);
    }
    let (_, d) = counted(&skel, dir, || {
        for f in 0..FLOWS {
            run(&skel, dir, &light(f, 64));
        }
    });
    let heavy = d.passed_heavy_packets;
    let fraction = heavy as f64 / f64::from(FLOWS);
    println!(
        "false-heavy: {heavy} of {FLOWS} light flows ({:.4}%) with sketch {}x{}, threshold {} B, \
         {bytes} B of light traffic + 2 elephants",
        fraction * 100.0,
        p.sketch_depth,
        p.sketch_width,
        p.heavy_threshold_bytes
    );
    assert!(fraction < 0.01, "false-heavy fraction {fraction}");
}

/// IPv6 flows that differ only in the high 96 bits of an address are
/// different flows: different cells, and one heavy leaves the other a mouse.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn ipv6_flows_differing_in_the_high_96_bits_are_different_flows() {
    let skel = loaded();
    let dir = Direction::PodEgress;
    let p = configure(&skel, dir, RATE_BITS);
    let l4 = tcp_ports(40000, 443, 1000);
    let base = ipv6_addrs(0, 0, IPPROTO_TCP, &V6_SRC, &V6_DST, &l4);
    let base_cells = flow_cells(&skel, dir, &p, &base);
    for (name, byte, src_side) in [
        ("saddr bit in word 0", 1usize, true),
        ("saddr bit in word 1", 6, true),
        ("saddr bit in word 2", 10, true),
        ("daddr bit in word 0", 3, false),
        ("daddr bit in word 2", 11, false),
    ] {
        let (mut src, mut dst) = (V6_SRC, V6_DST);
        if src_side {
            src[byte] ^= 0x10;
        } else {
            dst[byte] ^= 0x01;
        }
        let other = ipv6_addrs(0, 0, IPPROTO_TCP, &src, &dst, &l4);
        let other_cells = flow_cells(&skel, dir, &p, &other);
        let shared = base_cells
            .iter()
            .filter(|c| other_cells.contains(c))
            .count();
        assert!(
            shared < base_cells.len(),
            "{name}: every row maps both flows to the same cell"
        );
        // make `base` heavy through its own cells only: `other` stays a mouse
        fill_cells(&skel, dir, &p, 0);
        for &c in &base_cells {
            write_cell(&skel, c, cell(FROZEN_EPOCH, 1 << 39));
        }
        freeze_bucket(&skel, dir, full(&p));
        for (pkt, heavy) in [(&base, true), (&other, false)] {
            let (r, d) = counted(&skel, dir, || run(&skel, dir, pkt));
            assert_eq!(r.retval, RET_PASS);
            assert_eq!(
                d.passed_heavy_packets,
                u64::from(heavy),
                "{name}: {} heavy {heavy}",
                if heavy { "base" } else { "other" }
            );
        }
    }
}

/// The flow key: ports and protocol count; IPv6 extension headers are
/// skipped to the ports; every fragment of a datagram (the first too, for
/// IPv4 and IPv6) is keyed without ports, so a fragmented datagram is one
/// flow; protocols other than TCP/UDP are keyed by number.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn the_flow_key_is_the_parsed_five_tuple() {
    let skel = loaded();
    let dir = Direction::PodIngress;
    let p = configure(&skel, dir, RATE_BITS);
    let cells = |pkt: &[u8]| flow_cells(&skel, dir, &p, pkt);

    // ports and protocol
    let a = cells(&ipv4_flow(40000, 80));
    assert_ne!(a, cells(&ipv4_flow(40001, 80)), "source port ignored");
    assert_ne!(a, cells(&ipv4_flow(40000, 81)), "destination port ignored");
    assert_eq!(a, cells(&ipv4_flow(40000, 80)), "same 5-tuple, other cells");
    let mut udp_same_ports = udp(1000);
    udp_same_ports[0..2].copy_from_slice(&40000u16.to_be_bytes());
    udp_same_ports[2..4].copy_from_slice(&80u16.to_be_bytes());
    assert_ne!(
        a,
        cells(&ipv4(0, IPPROTO_UDP, &[], &udp_same_ports)),
        "protocol ignored"
    );
    let icmp = cells(&ipv4(0, 1, &[], &[8, 0, 0, 0, 0, 1, 0, 1]));
    assert_ne!(icmp, cells(&ipv4(0, 47, &[], &[0; 8])), "ICMP vs GRE");
    // other protocols have no ports: payload bytes do not split the flow
    assert_eq!(icmp, cells(&ipv4(0, 1, &[], &[8, 0, 0, 0, 0, 2, 0, 9])));

    // IPv4 fragments: first (MF, offset 0) and later ones are one flow,
    // keyed without ports
    let whole = ipv4_flow(40000, 80);
    let first = set_frag4(whole.clone(), 0x2000);
    let later = set_frag4(whole.clone(), 0x00b9);
    let last = set_frag4(whole.clone(), 0x0172);
    let fa = cells(&first);
    assert_eq!(fa, cells(&later), "IPv4 first and middle fragment");
    assert_eq!(fa, cells(&last), "IPv4 first and last fragment");
    assert_ne!(fa, a, "a fragment keyed with ports");
    // ...of any ports: the ports are not read
    assert_eq!(fa, cells(&set_frag4(ipv4_flow(1, 2), 0x2000)));

    // IPv6 extension headers are skipped to the ports
    let l4 = tcp_ports(40000, 80, 1000);
    let plain6 = cells(&ipv6(0, 0, IPPROTO_TCP, &l4));
    let mut chain = ext8(43); // hop-by-hop -> routing
    chain.extend(ext8(60)); // routing -> destination options
    chain.extend(ext8(IPPROTO_TCP));
    chain.extend(&l4);
    assert_eq!(plain6, cells(&ipv6(0, 0, 0, &chain)), "HBH+RH+DO+TCP");
    let mut chain_other = ext8(IPPROTO_TCP);
    chain_other.extend(tcp_ports(40000, 81, 1000));
    assert_ne!(plain6, cells(&ipv6(0, 0, 60, &chain_other)));
    // IPv6 fragments: first and later fragment one flow, without ports
    let mut f1 = ext8(44);
    f1.extend(frag6(IPPROTO_TCP, 0, true));
    f1.extend(&l4);
    let mut f2 = frag6(IPPROTO_TCP, 185, false);
    f2.extend(&l4[..200]);
    let f6 = cells(&ipv6(0, 0, 0, &f1));
    assert_eq!(
        f6,
        cells(&ipv6(0, 0, 44, &f2)),
        "IPv6 first and later fragment"
    );
    assert_ne!(f6, plain6, "an IPv6 fragment keyed with ports");
    // an atomic fragment (offset 0, no M) is a whole datagram: ports count
    let mut atomic = frag6(IPPROTO_TCP, 0, false);
    atomic.extend(&l4);
    assert_eq!(plain6, cells(&ipv6(0, 0, 44, &atomic)), "atomic fragment");
    // more than 6 extension headers: no ports, but still parsed as IP
    let mut long = Vec::new();
    for _ in 0..7 {
        long.extend(ext8(60));
    }
    long.extend(ext8(IPPROTO_TCP));
    long.extend(&l4);
    let (long_cells, d) = counted(&skel, dir, || cells(&ipv6(0, 0, 60, &long)));
    assert_ne!(long_cells, plain6);
    assert_eq!(d.malformed_packets, 0);
}

/// Bytes of every map of a loaded skeleton (max_entries x value_size, per
/// CPU for the per-CPU ones), with one line per map.
fn map_bytes(skel: &NatraSkel<'_>) -> (u64, Vec<(String, u64)>, String) {
    let cpus = libbpf_rs::num_possible_cpus().unwrap() as u64;
    let mut total = 0u64;
    let mut each = Vec::new();
    let mut rows = Vec::new();
    for m in skel.object().maps() {
        let name = m.name().to_string_lossy().into_owned();
        let per_cpu = m.map_type() == libbpf_rs::MapType::PercpuArray;
        let bytes = u64::from(m.max_entries())
            * u64::from(m.value_size()).next_multiple_of(8)
            * if per_cpu { cpus } else { 1 };
        rows.push(format!(
            "{name}: {} x {} B",
            m.max_entries(),
            m.value_size()
        ));
        each.push((name, bytes));
        total += bytes;
    }
    (total, each, rows.join(", "))
}

/// A private load (one Pod interface) has its ARRAY maps sized by the
/// control plane before load: one slot, and the sketch for the Pod's own
/// geometry (2 directions x depth x width); a default pod stays under
/// 256 KiB of map memory, computed from max_entries x value_size of every
/// map. On the shared dataplane a default pod's sketch fits in its slot's
/// cells, and its share (its slot's entries and its own record map) stays
/// under 256 KiB too.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn the_sketch_is_sized_at_load_and_a_default_pod_stays_under_256k() {
    common::require_root();
    let limits = pod_limits(
        RequestedLimit {
            rate_bits: 20_000_000,
            burst_bits: 0,
        },
        RequestedLimit {
            rate_bits: 20_000_000,
            burst_bits: 0,
        },
        &Tuning::default(),
    )
    .unwrap();
    let p = limits.pod_egress.unwrap();
    let cpus = libbpf_rs::num_possible_cpus().unwrap() as u64;

    // a private load, sized as natra sizes it
    let mut storage = MaybeUninit::uninit();
    let mut open = NatraSkelBuilder::default().open(&mut storage).unwrap();
    let one_slot = Direction::ALL.len() as u32;
    open.maps.natra_cfg.set_max_entries(one_slot).unwrap();
    open.maps.natra_bucket.set_max_entries(one_slot).unwrap();
    open.maps.natra_stats.set_max_entries(one_slot).unwrap();
    open.maps
        .natra_sketch
        .set_max_entries(natra::dataplane::maps::sketch_entries(&p))
        .unwrap();
    let skel = open.load().unwrap();
    let (total, _, rows) = map_bytes(&skel);
    println!("maps of a default 20 Mbit/s pod, private load: {rows} = {total} B");
    assert_eq!(skel.maps.natra_sketch.max_entries(), 2 * 4 * 128);
    let sketch = 2 * 4 * 128 * 8;
    assert!(
        total - sketch < 16 * 1024 + cpus * 128,
        "other maps: {}",
        total - sketch
    );
    assert!(total <= 256 * 1024, "{total} B");
    drop(skel);

    // the shared dataplane: NATRA_SLOTS slots, each with its own keys
    let slots = u64::from(Placement::SLOTS);
    let slot_cells = natra::contract::NATRA_SLOT_SKETCH_CELLS as u32;
    assert!(
        natra::dataplane::maps::sketch_entries(&p) <= 2 * slot_cells,
        "a default pod's sketch fits in its slot's cells"
    );
    let skel = common::skel::loaded();
    let (total, each, rows) = map_bytes(&skel);
    println!("maps of the shared dataplane: {rows} = {total} B");
    assert_eq!(
        u64::from(skel.maps.natra_cfg.max_entries()),
        slots * 2,
        "two keys per slot"
    );
    assert_eq!(
        skel.maps.natra_sketch.max_entries(),
        Placement::SLOTS * 2 * slot_cells
    );
    let mut share = 0u64;
    for (name, bytes) in &each {
        share += match name.as_str() {
            // one record map of this type is made for each pod
            "natra_attach" => *bytes,
            // node-wide: two program ids
            "natra_progs" => 0,
            _ => bytes / slots,
        };
    }
    println!("a pod's share of the shared dataplane: {share} B");
    assert!(
        share < 2 * u64::from(slot_cells) * 8 + 16 * 1024 + cpus * 128,
        "a slot: {share} B"
    );
    assert!(share <= 256 * 1024, "{share} B");
}
