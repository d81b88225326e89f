//! Handshakes with EDT: a SYN or SYN-ACK (its sender's timer is TCP's
//! initial 1 s RTO, not the 200 ms minimum) is paced on past the mice
//! horizon, to the handshake horizon, where a mouse's data is dropped.
use natra::dataplane::Direction;
use natra::limits::DEFAULT_HANDSHAKE_HORIZON_MS;

use crate::edt::run_tstamp;
use crate::packets::*;
use crate::setup::*;

const TCP_FLAGS: usize = ETH_HLEN + 20 + 13;

/// A bare IPv4 TCP segment (no payload) from port `sport` with `flags`.
fn segment(sport: u16, flags: u8) -> Vec<u8> {
    let mut p = ipv4(0, IPPROTO_TCP, &[], &tcp_ports(sport, 80, 0));
    p[TCP_FLAGS] = flags;
    p
}

const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Where a mouse's data would be dropped (its delay past the 180 ms mice
/// horizon), its SYN or SYN-ACK is paced on, to the 500 ms handshake
/// horizon, and charged; past that it is dropped too, uncharged. A RST with
/// SYN's bit is no handshake.
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn a_handshake_waits_past_the_mice_horizon_where_data_is_dropped() {
    let skel = loaded();
    for dir in [Direction::PodEgress, Direction::PodIngress] {
        let p = configure_edt(&skel, dir, 8_000_000);
        assert_eq!(
            p.handshake_horizon_ns,
            DEFAULT_HANDSHAKE_HORIZON_MS * 1_000_000
        );
        let mice_floor = -((p.edt_debt_bytes * NSEC_PER_SEC) as i64);
        // the level at which a packet of `len` bytes waits `ms` (1 MB/s)
        let at = |len: usize, ms: i64| mice_floor + byte_ns(len) - ms * 1_000_000 * 1_000_000;
        for (name, pkt, hs) in [
            ("SYN-ACK", segment(4000, SYN | ACK), true),
            ("SYN", segment(4001, SYN), true),
            ("RST with SYN", segment(4003, SYN | RST), false),
            ("data", ipv4_flow(4002, 80), false),
        ] {
            for ms in [181i64, 499, 500, 501] {
                fill_cells(&skel, dir, &p, 0);
                let level = at(pkt.len(), ms);
                freeze_bucket(&skel, dir, level);
                let (ret, ts, t0, t1) = run_tstamp(&skel, dir, &pkt);
                if hs && ms <= 500 {
                    let d = ms as u64 * 1_000_000;
                    assert_eq!(ret, RET_PASS, "{dir:?}: {name} waiting {ms} ms");
                    assert!(
                        ts >= t0 + d && ts <= t1 + d,
                        "{dir:?}: {name}: tstamp {ts} not now + {ms} ms ([{t0}, {t1}])"
                    );
                    assert_eq!(bucket(&skel, dir).0, level - byte_ns(pkt.len()));
                } else {
                    assert_eq!((ret, ts), (RET_DROP, 0), "{dir:?}: {name} waiting {ms} ms");
                    assert_eq!(bucket(&skel, dir).0, level, "{dir:?}: {name} charged");
                }
            }
        }
    }
}
