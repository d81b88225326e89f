//! BPF_PROG_RUN tests of the real dataplane: the skeleton's `pod_ingress` and
//! `pod_egress` programs are loaded into the kernel, fed hand-built packets,
//! and what the kernel returns (verdict, rewritten packet, maps) is asserted.
//!
//! The bucket is made deterministic by writing its state directly: with
//! `last_ns = u64::MAX` the program's clock is never past it, so nothing is
//! refilled and the level stays exactly where the test put it ("frozen").
//! The sketch's clock lives in the same state: with `epoch_start_ns =
//! u64::MAX` the epoch never advances, and a test moves time on by writing
//! the epoch number (decay is by epochs: a cell counts fully in its epoch,
//! half in the next, not at all later). The program's clock
//! (bpf_ktime_get_coarse_ns()) cannot be faked under BPF_PROG_RUN, so the
//! decay arithmetic itself (in ns) is tested on the host
//! (tests/bucket_arith.rs) and only its wiring here, plus one run on the real
//! clock (an epoch start two epochs back advances by two).
//!
//! Whether a flow is a mouse or heavy is driven either by its own traffic
//! (crossing the threshold) or by writing the sketch: `make_heavy` fills a
//! direction's cells above any threshold, so every flow is heavy.
//!
//! Every test needs root (loading BPF), so each is `#[ignore]`d with a reason
//! and `make test` runs them with `--include-ignored`.
//!
//! One file per concern: `verdicts` (pass, drop, charge, per direction),
//! `ecn` (CE marking), `malformed` (truncated and non-IP packets), `gso`
//! (per-segment charges), `sketch` (mice, heavy flows, the flow key, map
//! sizes), `clock` (the cached coarse clock), `edt` (pacing), `handshake`
//! (SYNs and SYN-ACKs paced past the mice horizon), `verifier`
//! (the verifier's budget); `packets`, `setup` and `counters` hold what they
//! share.
#[path = "../common/mod.rs"]
mod common;

mod counters;
mod packets;
mod setup;

mod clock;
mod ecn;
mod edt;
mod gso;
mod handshake;
mod malformed;
mod sketch;
mod verdicts;
mod verifier;
