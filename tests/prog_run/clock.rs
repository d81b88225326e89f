//! The program's clock: read once per jiffy, cached in the bucket state.
use natra::dataplane::skeleton::types::natra_bucket_state;
use natra::dataplane::Direction;

use crate::packets::*;
use crate::setup::*;

/// The program reads the coarse clock once per jiffy and caches it with its
/// jiffy in the bucket state (bpf/lib/clock.h). Seen through last_ns (set to
/// the program's `now` by a refill from last_ns = 0): a fresh cache holds a
/// coarse reading taken during the run; a planted time is used while its
/// jiffy is current and ignored once the jiffy does not match; a reading
/// equal to the cached time is not cached (the tick's race).
#[test]
#[ignore = "needs root: BPF_PROG_RUN (run via make test)"]
fn the_clock_is_read_once_per_jiffy_and_cached() {
    let skel = loaded();
    let dir = Direction::PodEgress;
    configure(&skel, dir, RATE_BITS);
    let pkt = ipv4_tcp(ECN_NOT_ECT);
    let refill_now = |st: &natra_bucket_state| {
        set_state(
            &skel,
            dir,
            &natra_bucket_state {
                last_ns: 0,
                epoch: FROZEN_EPOCH,
                epoch_start_ns: u64::MAX,
                ..*st
            },
        );
        assert_eq!(run(&skel, dir, &pkt).retval, RET_PASS);
        state(&skel, dir)
    };

    // an empty cache: read, cached, used
    let t0 = coarse_ns();
    let st = refill_now(&natra_bucket_state::default());
    let t1 = coarse_ns();
    assert!(st.clock_jiffies > 0, "nothing cached");
    assert!(
        st.clock_ns >= t0 && st.clock_ns <= t1,
        "cached {} not within [{t0}, {t1}]",
        st.clock_ns
    );
    assert_eq!(
        st.last_ns, st.clock_ns,
        "the packet did not use the reading"
    );

    // a planted time in the current jiffy is used as is (a few tries: the
    // jiffy may move on between two runs, and then the program reads anew)
    let planted = st.clock_ns - 3;
    let used = (0..20).any(|_| {
        let cur = state(&skel, dir);
        let st = refill_now(&natra_bucket_state {
            clock_ns: planted,
            ..cur
        });
        if st.last_ns == planted {
            return true;
        }
        assert!(st.last_ns >= t0 && st.clock_jiffies > cur.clock_jiffies);
        false
    });
    assert!(used, "a cached time of the current jiffy was never used");

    // a planted time under another jiffy is not
    let cur = state(&skel, dir);
    let before = coarse_ns();
    let st = refill_now(&natra_bucket_state {
        clock_jiffies: cur.clock_jiffies - 1,
        clock_ns: planted,
        ..cur
    });
    assert!(st.last_ns >= before, "a stale jiffy's time was used");
    assert_eq!(st.clock_ns, st.last_ns, "the fresh reading was not cached");

    // a fresh reading equal to the cached time is used, not cached
    let mut seen = false;
    for _ in 0..20 {
        let cur = state(&skel, dir);
        let now = coarse_ns();
        let st = refill_now(&natra_bucket_state {
            clock_jiffies: 1,
            clock_ns: now,
            ..cur
        });
        if st.clock_ns == now {
            assert_eq!(
                st.clock_jiffies, 1,
                "a reading equal to the cache was cached"
            );
            assert_eq!(st.last_ns, now);
            seen = true;
            break;
        }
    }
    assert!(seen, "the coarse clock moved on at every try");
}
