//! natra's BPF dataplane, the control plane's one door to the kernel: the
//! only code that uses libbpf (and `unsafe`). The object is loaded once per
//! node (shared.rs); ADD claims a slot in it, attaches a stub per limited
//! direction in the attach mode the configuration asks for, and pins
//! everything; CHECK reads it back, DEL and GC undo it, `natra inspect`
//! views it.
//!
//! | module | owns |
//! |---|---|
//! | add.rs | ADD from probe to attach, rollback included; STATUS's load probe |
//! | shared.rs | the node's one dataplane: load, in-place upgrade, slots, collection |
//! | placement.rs | a Pod interface's slot, generation and keys |
//! | check.rs | CHECK |
//! | teardown.rs | DEL, GC and the rollback: undo from the record |
//! | view.rs | what `natra inspect` / `natra stats` show, typed |
//! | live.rs | limits changed in place (`natra set`, the agent's overrides) |
//! | repair.rs | the agent's reconciliation: record against kernel, repairs |
//! | modes.rs | attach modes, the ADD options and the plan of stages |
//! | edt.rs | the EDT probe: natra's fq on the Pod's interface |
//! | record.rs | the `attachment` record map |
//! | maps.rs | natra's config, bucket and counters maps |
//! | clsact.rs | natra's cls_bpf filter on clsact |
//! | pins.rs | bpffs layout and every pin name |
//! | sys.rs | the raw libbpf calls behind safe functions |
//! | btf_json.rs | map values as JSON through BTF |
//! | direction.rs, faults.rs, skeleton.rs | directions, test fault hooks, the generated skeleton |
//!
//! Imports run one way (no cycles): add → teardown → edt, record → modes →
//! clsact → direction, faults; check and view beside add; maps, record →
//! sys → pins, skeleton.
mod add;
pub mod btf_json;
mod check;
pub mod clsact;
mod direction;
pub mod edt;
pub mod faults;
mod live;
pub mod maps;
pub mod modes;
pub mod pins;
mod placement;
pub mod record;
mod repair;
pub mod shared;
pub mod skeleton;
mod sys;
mod teardown;
pub mod view;

pub use add::{install, probe_ready};
pub use check::verify;
pub use direction::Direction;
pub use faults::{FAIL_AFTER_ATTACHES_ENV, KILL_AT_ENV};
pub use live::{set_limits, set_view_limits, Changed};
pub use placement::Placement;
pub use repair::{reconcile, reconcile_all, Repair};
pub use teardown::remove;
pub use view::{list_attachments, AttachmentView};

/// GC and the agent, under the node lock: frees the shared dataplane's slots
/// no attachment holds and removes other layouts' dataplanes no Pod uses.
pub fn collect_shared(root: &std::path::Path) -> crate::error::Result<shared::Collected> {
    let ids = view::attachment_dirs(root)?
        .into_iter()
        .filter_map(|(dir, _)| shared::record_id(&pins::AttachmentPins { dir }))
        .collect();
    shared::collect(root, &ids)
}

/// The stub a Pod interface at `place` gets for `dir`, jumping through
/// `programs` (for the benches, which time the path a packet takes).
pub fn load_stub(
    programs: std::os::fd::BorrowedFd<'_>,
    dir: Direction,
    place: &Placement,
) -> crate::error::Result<std::os::fd::OwnedFd> {
    sys::load_stub(
        programs,
        dir.index(),
        place.slot,
        place.generation,
        dir.program_name(),
    )
}

/// BPF_PROG_RUN of a program by fd: its return value and mean ns per run.
pub fn prog_test_run(
    prog: std::os::fd::BorrowedFd<'_>,
    data: &[u8],
    repeat: u32,
) -> crate::error::Result<(u32, std::time::Duration)> {
    sys::prog_test_run(prog, data, repeat)
}

/// The agent at start, under the node lock: the shared dataplane loaded if
/// absent and made this natra's if another natra of the same layout loaded
/// it (live Pods switch to this natra's programs in place).
pub fn prepare_shared(root: &std::path::Path) -> crate::error::Result<shared::Opened> {
    shared::open_or_load(root).map(|(_, opened)| opened)
}

/// Sends libbpf's own messages to natra's log (stderr) at matching levels,
/// so that stdout stays the CNI result alone.
pub fn route_libbpf_logs() {
    fn forward(level: libbpf_rs::PrintLevel, msg: String) {
        let msg = msg.trim_end();
        match level {
            libbpf_rs::PrintLevel::Warn => log::warn!(target: "libbpf", "{msg}"),
            libbpf_rs::PrintLevel::Info => log::info!(target: "libbpf", "{msg}"),
            libbpf_rs::PrintLevel::Debug => log::debug!(target: "libbpf", "{msg}"),
        }
    }
    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Debug, forward)));
}
