//! EDT pacing on pod egress: skb->tstamp from the bucket's debt.
use std::mem::{offset_of, size_of};
use std::os::fd::AsFd;

use libbpf_rs::ProgramInput;
use natra::dataplane::maps::write_config;
use natra::dataplane::skeleton::types::__sk_buff;
use natra::dataplane::skeleton::NatraSkel;
use natra::dataplane::Direction;
use natra::dataplane::Placement;
use natra::limits::{
    pod_limits, RequestedLimit, Tuning, DEFAULT_CE_DELAY_MS, DEFAULT_EDT_HORIZON_MS,
};

use crate::counters::{counted, counters};
use crate::packets::*;
use crate::setup::*;

/// Offset of `tstamp` in the BPF_PROG_RUN context.
const TSTAMP: usize = offset_of!(__sk_buff, tstamp);

/// Runs `pkt` with a zeroed __sk_buff context and returns (verdict, tstamp
/// from the context out, the program's clock (coarse) before and after).
pub fn run_tstamp(skel: &NatraSkel<'_>, dir: Direction, pkt: &[u8]) -> (u32, u64, u64, u64) {
    run_tstamp_repeat(skel, dir, pkt, 1)
}

/// run_tstamp with the program run `repeat` times on the one skb: from the
/// second run on, the packet carries the stamp (and type) the run before
/// it left.
fn run_tstamp_repeat(
    skel: &NatraSkel<'_>,
    dir: Direction,
    pkt: &[u8],
    repeat: u32,
) -> (u32, u64, u64, u64) {
    let mut ctx_in = vec![0u8; size_of::<__sk_buff>()];
    let mut ctx_out = vec![0u8; size_of::<__sk_buff>()];
    let mut out = vec![0u8; pkt.len() + 256];
    let t0 = coarse_ns();
    let o = prog(skel, dir)
        .test_run(ProgramInput {
            data_in: Some(pkt),
            data_out: Some(&mut out),
            context_in: Some(&mut ctx_in),
            context_out: Some(&mut ctx_out),
            repeat,
            ..Default::default()
        })
        .expect("BPF_PROG_RUN with a context");
    let t1 = coarse_ns();
    let ret = o.return_value;
    let ts = u64::from_ne_bytes(ctx_out[TSTAMP..TSTAMP + 8].try_into().unwrap());
    (ret, ts, t0, t1)
}

/// EDT on pod egress: a heavy packet over the rate is charged and leaves
/// with skb->tstamp = now + (R + cost - level) / rate. At 1 MB/s (8 Mbit/s)
/// a packet of L bytes is L x 1000 ns: from a bucket at exactly R the n-th
/// packet departs n x L x 1000 ns after now (t_next = t_last + len x 1e9 /
/// rate). Past the horizon: dropped, uncharged. Mice still pass, unstamped,
/// below 0. Pod ingress never paces.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn edt_stamps_tstamp_with_the_delay_for_the_rate() {
    let skel = loaded();
    let dir = Direction::PodEgress;
    let req = RequestedLimit {
        rate_bits: 8_000_000,
        burst_bits: 0,
    };
    let limits = pod_limits(req, req, &Tuning::default()).unwrap();
    let p = limits.pod_egress.unwrap().with_edt();
    assert_eq!(p.rate_bytes_per_sec, 1_000_000);
    assert_eq!(p.edt_horizon_ns, DEFAULT_EDT_HORIZON_MS * 1_000_000);
    write_config(skel.maps.natra_cfg.as_fd(), dir, &p, &Placement::default())
        .expect("write config");
    make_heavy(&skel, dir, &p);
    let pkt = ipv4_flow(40000, 5201);
    let len = pkt.len() as u64;
    let per_packet_ns = len * NSEC_PER_SEC / p.rate_bytes_per_sec;
    assert_eq!(
        per_packet_ns,
        len * 1000,
        "units: bytes and bytes/s give ns"
    );

    freeze_bucket(&skel, dir, reserve(&p));
    let jiffy = jiffy_ns();
    assert!(jiffy > 0 && jiffy <= 10_000_000, "a jiffy of {jiffy} ns");
    for n in 1..=5u64 {
        let before = counters(&skel, dir);
        let mono = monotonic_ns();
        let (ret, ts, t0, t1) = run_tstamp(&skel, dir, &pkt);
        assert_eq!(ret, RET_PASS, "paced packet {n}");
        let delay = n * per_packet_ns;
        assert!(
            ts >= t0 + delay && ts <= t1 + delay,
            "packet {n}: tstamp {ts} not within now + {delay} ns ([{t0}, {t1}] + delay)"
        );
        // At most a jiffy early against the monotonic clock, while the
        // kernel's own coarse clock is (read right after `mono`: t0). A late
        // tick (tickless idle, or this VM's vCPU not run by the host) holds
        // the coarse clock back further, the kernel's and natra's alike
        // (ts >= t0 + delay above still binds): 4.3-5.7 ms behind with a
        // 4 ms jiffy in a third of runs on an idle machine.
        let kernel_lag = mono.saturating_sub(t0);
        if kernel_lag <= jiffy {
            assert!(
                ts + jiffy >= mono + delay,
                "packet {n}: departs more than a jiffy ({jiffy} ns) early"
            );
        } else {
            println!(
                "packet {n}: the kernel's coarse clock was {kernel_lag} ns behind the monotonic one \
                 (a late tick): only the coarse bound applies"
            );
        }
        println!(
            "EDT packet {n}: tstamp - now in [{}, {}] ns, expected {delay} ns",
            ts - t1,
            ts - t0
        );
        let d = counters(&skel, dir) - before;
        assert_eq!(d.paced_packets, 1);
        assert_eq!(d.paced_bytes, len);
        assert_eq!(
            bucket(&skel, dir).0,
            reserve(&p) - n as i64 * byte_ns(pkt.len())
        );
    }
    // the last packet within the horizon, then beyond it: dropped, uncharged
    let horizon_packets = p.edt_horizon_ns / per_packet_ns;
    let level = reserve(&p) - (horizon_packets as i64 - 1) * byte_ns(pkt.len());
    freeze_bucket(&skel, dir, level);
    let (ret, ts, t0, _) = run_tstamp(&skel, dir, &pkt);
    assert_eq!(ret, RET_PASS);
    assert!(ts - t0 <= p.edt_horizon_ns);
    let ((ret, ts, _, _), d) = counted(&skel, dir, || run_tstamp(&skel, dir, &pkt));
    assert_eq!(ret, RET_DROP, "beyond the horizon");
    assert_eq!(ts, 0, "a dropped packet was stamped");
    assert_eq!(d.dropped_packets, 1);
    let debt_level = level - byte_ns(pkt.len());
    assert_eq!(bucket(&skel, dir).0, debt_level);
    // a mouse still passes, unstamped, from the debt
    fill_cells(&skel, dir, &p, 0);
    let (ret, ts, _, _) = run_tstamp(&skel, dir, &pkt);
    assert_eq!((ret, ts), (RET_PASS, 0), "a mouse in the heavy flows' debt");
    assert_eq!(bucket(&skel, dir).0, debt_level - byte_ns(pkt.len()));

    // A packet already stamped monotonic (as TCP's arrive) gets its stamp
    // moved by a plain store, not the helper: run three times on one skb,
    // the first run's helper leaves it stamped monotonic, and the next two
    // must each move the stamp on by a packet's time (a store that did not
    // land would leave the first run's 1 x per_packet_ns).
    make_heavy(&skel, dir, &p);
    freeze_bucket(&skel, dir, reserve(&p));
    let ((ret, ts, t0, t1), d) = counted(&skel, dir, || run_tstamp_repeat(&skel, dir, &pkt, 3));
    assert_eq!(ret, RET_PASS);
    let delay = 3 * per_packet_ns;
    assert!(
        ts >= t0 + delay && ts <= t1 + delay,
        "stamped monotonic already: tstamp {ts} not within now + {delay} ns ([{t0}, {t1}] + delay)"
    );
    assert_eq!(d.paced_packets, 3);

    // pod ingress paces too when its config says EDT (fq on the host
    // veth, host-side modes); without it, ECN-then-drop
    let ing = Direction::PodIngress;
    let pi = limits.pod_ingress.unwrap();
    write_config(skel.maps.natra_cfg.as_fd(), ing, &pi, &Placement::default())
        .expect("write config");
    make_heavy(&skel, ing, &pi);
    freeze_bucket(&skel, ing, reserve(&pi));
    let (ret, ts, _, _) = run_tstamp(&skel, ing, &pkt);
    assert_eq!((ret, ts), (RET_DROP, 0), "pod ingress paced without EDT");
    assert_eq!(counters(&skel, ing).paced_packets, 0);
    write_config(skel.maps.natra_cfg.as_fd(), ing, &p, &Placement::default())
        .expect("write config");
    freeze_bucket(&skel, ing, reserve(&p));
    let (ret, ts, t0, t1) = run_tstamp(&skel, ing, &pkt);
    assert_eq!(ret, RET_PASS, "pod ingress with EDT");
    assert!(ts >= t0 + per_packet_ns && ts <= t1 + per_packet_ns);
    assert_eq!(counters(&skel, ing).paced_packets, 1);
}

/// Mice are paced, not dropped, where EDT serves the direction: below
/// their floor (-D) a mouse is charged and stamped for when the bucket is
/// back at -D + cost, within the mice horizon; dropped (uncharged) only
/// beyond it. A paced heavy ECT packet is CE-marked too once its delay
/// passes the CE delay (5 ms), not before. Counters: paced (mice in
/// paced_mouse_*), CE-marked.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn edt_paces_mice_within_their_horizon_and_marks_delayed_ect() {
    let skel = loaded();
    for dir in [Direction::PodEgress, Direction::PodIngress] {
        let p = configure_edt(&skel, dir, 8_000_000);
        let pkt = ipv4_flow(40001, 7070);
        let cost = byte_ns(pkt.len());
        let per_packet_ns = pkt.len() as u64 * 1000; // 1 MB/s
        let d_floor = -((p.edt_debt_bytes * NSEC_PER_SEC) as i64);
        let mice_horizon_level = d_floor - (p.mice_horizon_ns * p.rate_bytes_per_sec) as i64;

        // at the mice floor: unpaced
        fill_cells(&skel, dir, &p, 0);
        freeze_bucket(&skel, dir, d_floor + cost);
        let (ret, ts, _, _) = run_tstamp(&skel, dir, &pkt);
        assert_eq!((ret, ts), (RET_PASS, 0), "{dir:?}: a mouse at its floor");
        // one packet below it: paced by one packet's time, charged
        for n in 1..=3u64 {
            fill_cells(&skel, dir, &p, 0);
            let before = counters(&skel, dir);
            let (ret, ts, t0, t1) = run_tstamp(&skel, dir, &pkt);
            assert_eq!(ret, RET_PASS, "{dir:?}: paced mouse {n}");
            let delay = n * per_packet_ns;
            assert!(
                ts >= t0 + delay && ts <= t1 + delay,
                "{dir:?}: mouse {n}: tstamp {ts} not within now + {delay} ns ([{t0}, {t1}])"
            );
            let d = counters(&skel, dir) - before;
            assert_eq!((d.paced_packets, d.paced_mouse_packets), (1, 1));
            assert_eq!(d.passed_mouse_packets, 1);
            assert_eq!(bucket(&skel, dir).0, d_floor - n as i64 * cost);
        }
        // the mice horizon exactly: paced; one byte-ns beyond: dropped, uncharged
        fill_cells(&skel, dir, &p, 0);
        freeze_bucket(&skel, dir, mice_horizon_level + cost);
        let (ret, ts, t0, t1) = run_tstamp(&skel, dir, &pkt);
        assert_eq!(ret, RET_PASS, "{dir:?}: a mouse at the mice horizon");
        assert!(ts >= t0 + p.mice_horizon_ns && ts <= t1 + p.mice_horizon_ns);
        fill_cells(&skel, dir, &p, 0);
        let level = mice_horizon_level + cost - 1;
        freeze_bucket(&skel, dir, level);
        let ((ret, ts, _, _), d) = counted(&skel, dir, || run_tstamp(&skel, dir, &pkt));
        assert_eq!((ret, ts), (RET_DROP, 0), "{dir:?}: beyond the mice horizon");
        assert_eq!(d.dropped_packets, 1);
        assert_eq!(bucket(&skel, dir).0, level, "a dropped mouse was charged");

        // heavy ECT: paced 1 packet's time (under the CE delay): not marked;
        // paced past the CE delay: marked CE, and still paced
        make_heavy(&skel, dir, &p);
        let ect = ipv4_tcp(ECN_ECT0);
        let ect_cost = byte_ns(ect.len());
        let ect_ns = ect.len() as u64 * 1000;
        freeze_bucket(&skel, dir, reserve(&p));
        let (r, d) = counted(&skel, dir, || run(&skel, dir, &ect));
        assert_eq!(r.retval, RET_PASS);
        assert_eq!(
            ipv4_tos(&r.data) & 3,
            ECN_ECT0,
            "{dir:?}: marked under the CE delay"
        );
        assert_eq!((d.paced_packets, d.ce_marked_packets), (1, 0));
        let ce_delay = DEFAULT_CE_DELAY_MS * 1_000_000;
        assert_eq!(p.ce_delay_ns, ce_delay);
        // the delay is (R + cost - level) / rate: past the CE delay by a packet
        let level = reserve(&p) + ect_cost - ((ce_delay + ect_ns) * p.rate_bytes_per_sec) as i64;
        freeze_bucket(&skel, dir, level);
        let (r, d) = counted(&skel, dir, || run(&skel, dir, &ect));
        assert_eq!(r.retval, RET_PASS);
        assert_eq!(
            ipv4_tos(&r.data) & 3,
            ECN_CE,
            "{dir:?}: not marked past the CE delay"
        );
        assert_eq!((d.paced_packets, d.ce_marked_packets), (1, 1));
        assert_eq!(bucket(&skel, dir).0, level - ect_cost);
        // a non-ECT heavy packet as delayed: paced, unmarked
        freeze_bucket(&skel, dir, level);
        let plain = ipv4_tcp(ECN_NOT_ECT);
        let (r, d) = counted(&skel, dir, || run(&skel, dir, &plain));
        assert_eq!(r.retval, RET_PASS);
        assert_eq!(ipv4_tos(&r.data) & 3, ECN_NOT_ECT);
        assert_eq!((d.paced_packets, d.ce_marked_packets), (1, 0));
    }
}
