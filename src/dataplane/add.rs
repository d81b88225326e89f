//! ADD, top to bottom:
//!
//! 1. [`install`] probes EDT (edt.rs: fq on the Pod's interface, or not) and
//!    plans the stages (modes.rs: which loads, with which attach modes);
//! 2. [`run_stage`], per stage until one works: a slot of the shared
//!    dataplane (shared.rs: loaded once per node, the slot claimed, its
//!    state zeroed under a new generation), or a private load where the
//!    shared one cannot serve; [`place_and_attach`] pins the record and the
//!    maps, writes each limited direction's config and full bucket and makes
//!    a stub per limited direction (sys.rs, a few raw instructions);
//! 3. [`attach_stage`] tries the stage's modes in turn; [`attempt`] writes
//!    the record, then [`attach_all`] attaches each
//!    limited direction (tcx link or clsact filter, on the host veth or
//!    inside the Pod's netns), the fault hooks (faults.rs) firing after each;
//! 4. a failed attempt undoes itself from its record (teardown.rs); a failed
//!    stage is removed with its pins and gives its slot back; fq natra
//!    installed goes once EDT is given up.
//!
//! On failure nothing stays behind: no attached program, no pin, no qdisc
//! natra made.
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::OpenObject;

use super::direction::Direction;
use super::modes::{on_side, plan, AttachMode, Installed, Options, Stage, Target};
use super::pins::{self, AttachmentPins, BUCKET_MAP, CONFIG_MAP, COUNTERS_MAP, PROGRAMS_MAP};
use super::placement::Placement;
use super::record::{self, Record, EDT, EDT_INGRESS, OWNS_CLSACT, OWNS_FQ, OWNS_HOST_FQ};
use super::skeleton::{NatraSkel, NatraSkelBuilder};
use super::{clsact, edt, faults, maps, shared, sys, teardown};
use crate::contract::NATRA_SLOT_SKETCH_CELLS;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::limits::PodLimits;
use crate::qdisc;

/// Loads, configures, attaches (in the attach mode `opts` asks for, after
/// the EDT probe) and pins the dataplane for one Pod interface.
pub fn install(
    pins: &AttachmentPins,
    target: &Target,
    limits: &PodLimits,
    opts: &Options,
) -> Result<Installed> {
    let fq = edt::probe(target, opts, limits)?;
    let mut fq_owned = fq.owned;
    let mut host_fq_owned = fq.host_owned;
    let mut failures = Vec::new();
    // Whether each fq is still there: a stage that does not pace a direction
    // removes the fq natra installed for it, and later stages cannot count
    // on it any more.
    let (mut host_fq, mut pod_fq) = (fq.host_available, fq.available);
    for mut stage in plan(opts, fq) {
        if !stage.edt_ingress && host_fq_owned {
            edt::remove_natra_host_fq(target.host_ifindex)?;
            host_fq_owned = false;
            host_fq = false;
        }
        if !stage.edt && fq_owned {
            log::info!(
                "EDT off for pod egress: removing the fq natra installed on the Pod's {}",
                target.pod_ifname
            );
            edt::remove_natra_fq(&target.netns, target.pod_ifindex)?;
            fq_owned = false;
            pod_fq = false;
        }
        stage.edt_ingress &= host_fq;
        stage.owns_host_fq &= host_fq_owned;
        stage.edt &= pod_fq;
        stage.owns_fq &= fq_owned;
        match run_stage(pins, target, limits, &stage) {
            Ok(mode) => {
                return Ok(Installed {
                    mode,
                    edt: stage.edt,
                    edt_ingress: stage.edt_ingress,
                })
            }
            Err(e) => {
                log::warn!(
                    "install into {} failed ({e}); rolling back",
                    pins.dir.display()
                );
                // Attempts undo themselves; this catches a stage that failed
                // before or between them.
                if let Err(e) = teardown::undo(pins, Some(&target.netns), false) {
                    log::warn!("rollback: {e}");
                }
                if let Err(e) = shared::release(&pins::pin_root(), pins) {
                    log::warn!("rollback: {e}");
                }
                if let Err(e) = pins.remove_all() {
                    log::warn!("rollback: {e}");
                }
                failures.push(e);
            }
        }
    }
    if fq_owned {
        if let Err(e) = edt::remove_natra_fq(&target.netns, target.pod_ifindex) {
            log::warn!("rollback: {e}");
        }
    }
    if host_fq_owned {
        if let Err(e) = edt::remove_natra_host_fq(target.host_ifindex) {
            log::warn!("rollback: {e}");
        }
    }
    Err(combine(failures, |e| e))
}

/// STATUS: the pin root is on a bpffs and the programs load (which also
/// proves BTF and the verifier are happy on this kernel). Once the node's
/// shared dataplane holds this natra's programs, the kernel has already
/// verified them: that is the answer, without loading them again.
pub fn probe_ready() -> Result<()> {
    let not_ready = |what: &str, cause: &dyn std::fmt::Display| {
        Error::new(ErrorKind::NotReady, format!("natra is not ready: {what}")).with_details(cause)
    };
    let root = pins::pin_root();
    pins::ensure_bpffs(&root).map_err(|e| not_ready("bpffs is not usable", &e))?;
    if shared::holds_this_natras_programs(&root) {
        return Ok(());
    }
    let mut storage = MaybeUninit::uninit();
    NatraSkelBuilder::default()
        .open(&mut storage)
        .and_then(|open| open.load())
        .map_err(|e| not_ready("the BPF programs cannot be loaded", &e))?;
    Ok(())
}

/// The maps a Pod interface's state lives in and its place in them: the
/// shared dataplane's, or a private load's.
struct Slotted<'a> {
    config: BorrowedFd<'a>,
    bucket: BorrowedFd<'a>,
    counters: BorrowedFd<'a>,
    programs: BorrowedFd<'a>,
    record: BorrowedFd<'a>,
    place: Placement,
}

/// One stage: a slot of the shared dataplane (or, where it cannot serve, a
/// private load), its state written, stubs attached in the first of
/// `stage.modes` that works; [`install`] cleans up after a failure.
fn run_stage(
    pins: &AttachmentPins,
    target: &Target,
    limits: &PodLimits,
    stage: &Stage,
) -> Result<AttachMode> {
    let params = limits.pod_ingress.or(limits.pod_egress);
    let fits = params.is_none_or(|p| p.sketch_cells() <= NATRA_SLOT_SKETCH_CELLS as u32);
    if fits {
        let (dp, _) = shared::open_or_load(&pins::pin_root())?;
        if let Some(claim) = shared::claim(&dp)? {
            log::debug!(
                "shared dataplane {:016x}: slot {} generation {}",
                claim.place.layout,
                claim.place.slot,
                claim.place.generation
            );
            let slotted = Slotted {
                config: dp.config.as_fd(),
                bucket: dp.bucket.as_fd(),
                counters: dp.counters.as_fd(),
                programs: dp.programs.as_fd(),
                record: claim.record.as_fd(),
                place: claim.place,
            };
            return place_and_attach(pins, target, limits, stage, &slotted);
        }
        log::warn!(
            "every slot of the shared dataplane is held ({}): loading a private dataplane for this Pod",
            Placement::SLOTS
        );
    } else {
        log::info!(
            "the sketch needs more than a slot's {NATRA_SLOT_SKETCH_CELLS} cells: loading a private dataplane for this Pod"
        );
    }
    let mut storage = MaybeUninit::uninit();
    let skel = load_private(&mut storage, limits)?;
    for d in Direction::ALL {
        let prog = match d {
            Direction::PodIngress => &skel.progs.pod_ingress,
            Direction::PodEgress => &skel.progs.pod_egress,
        };
        if d.limit(limits).is_some() {
            let fd = prog.as_fd().as_raw_fd() as u32;
            sys::update(
                skel.maps.natra_progs.as_fd(),
                &d.index(),
                &fd,
                "cannot put a program in the program array",
            )?;
        }
    }
    record::write_none(skel.maps.natra_attach.as_fd(), &Placement::PRIVATE)?;
    let slotted = Slotted {
        config: skel.maps.natra_cfg.as_fd(),
        bucket: skel.maps.natra_bucket.as_fd(),
        counters: skel.maps.natra_stats.as_fd(),
        programs: skel.maps.natra_progs.as_fd(),
        record: skel.maps.natra_attach.as_fd(),
        place: Placement::PRIVATE,
    };
    place_and_attach(pins, target, limits, stage, &slotted)
}

/// Pins the record first (teardown finds everything else from it), then the
/// maps, writes the limits, makes the stubs and attaches them.
fn place_and_attach(
    pins: &AttachmentPins,
    target: &Target,
    limits: &PodLimits,
    stage: &Stage,
    s: &Slotted<'_>,
) -> Result<AttachMode> {
    pins.create()?;
    sys::pin_fd(s.record, &pins.map(pins::ATTACHMENT_MAP))?;
    for (fd, name) in [
        (s.config, CONFIG_MAP),
        (s.bucket, BUCKET_MAP),
        (s.counters, COUNTERS_MAP),
        (s.programs, PROGRAMS_MAP),
    ] {
        sys::pin_fd(fd, &pins.map(name))?;
    }
    write_limits(s, limits, stage.edt_ingress, stage.edt)?;
    let mut stubs = Vec::new();
    for dir in Direction::ALL
        .into_iter()
        .filter(|dir| dir.limit(limits).is_some())
    {
        let stub = sys::load_stub(
            s.programs,
            dir.index(),
            s.place.slot,
            s.place.generation,
            dir.program_name(),
        )?;
        stubs.push((dir, stub));
    }
    let progs: Vec<_> = stubs.iter().map(|(d, fd)| (*d, fd.as_fd())).collect();
    attach_stage(pins, target, &progs, s.record, stage, s.place)
}

/// Opens and loads a private copy of the object for one Pod interface: only
/// the limited directions' programs, maps sized for one slot and this Pod's
/// sketch (docs/dataplane.md).
fn load_private<'obj>(
    storage: &'obj mut MaybeUninit<OpenObject>,
    limits: &PodLimits,
) -> Result<NatraSkel<'obj>> {
    let mut open = NatraSkelBuilder::default()
        .open(storage)
        .context(ErrorKind::Dataplane, "cannot open the BPF object")?;
    for dir in Direction::ALL {
        let prog = match dir {
            Direction::PodIngress => &mut open.progs.pod_ingress,
            Direction::PodEgress => &mut open.progs.pod_egress,
        };
        prog.set_autoload(dir.limit(limits).is_some());
    }
    let one_slot = Direction::ALL.len() as u32;
    let sized = |m: &mut libbpf_rs::OpenMapMut<'_>, n: u32| {
        m.set_max_entries(n)
            .context(ErrorKind::Dataplane, "cannot size the maps")
    };
    sized(&mut open.maps.natra_cfg, one_slot)?;
    sized(&mut open.maps.natra_bucket, one_slot)?;
    sized(&mut open.maps.natra_stats, one_slot)?;
    if let Some(p) = limits.pod_ingress.or(limits.pod_egress) {
        sized(&mut open.maps.natra_sketch, maps::sketch_entries(&p))?;
    }
    open.load()
        .context(ErrorKind::Dataplane, "cannot load the BPF programs")
}

/// Each limited direction's config and a full bucket at the slot's keys.
/// With `edt` (fq is the root qdisc of the Pod's interface and the mode is
/// Pod-side) pod egress's config carries NATRA_CFG_EDT with its horizons and
/// debts, with `edt_ingress` (fq on the host veth, host-side mode) pod
/// ingress's (limits::with_edt_dirs).
fn write_limits(s: &Slotted<'_>, limits: &PodLimits, edt_ingress: bool, edt: bool) -> Result<()> {
    // the program's clock (bpf_ktime_get_coarse_ns)
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
        .context(ErrorKind::Dataplane, "cannot read CLOCK_MONOTONIC_COARSE")?;
    let now_ns = now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64;
    log::debug!(
        "writing the config with EDT {}",
        if edt { "on" } else { "off" }
    );
    let written = limits.with_edt_dirs(edt_ingress, edt);
    for dir in Direction::ALL {
        if let Some(params) = dir.limit(&written) {
            // The bucket first: the config makes the slot live.
            maps::write_bucket_full(s.bucket, s.place.key(dir), &params, now_ns)?;
            maps::write_config(s.config, dir, &params, &s.place)?;
        }
    }
    Ok(())
}

/// Tries the stage's modes in order on the stubs `progs` (one per limited
/// direction). Returns the mode that worked; a failed attempt leaves nothing
/// attached.
fn attach_stage(
    pins: &AttachmentPins,
    target: &Target,
    progs: &[(Direction, BorrowedFd<'_>)],
    record_map: BorrowedFd<'_>,
    stage: &Stage,
    place: Placement,
) -> Result<AttachMode> {
    let mut failures = Vec::new();
    for &mode in &stage.modes {
        match attempt(pins, target, progs, record_map, stage, mode, place) {
            Ok(()) => {
                if !failures.is_empty() {
                    log::info!("attachMode auto: fell back to {mode}");
                }
                return Ok(mode);
            }
            Err(e) => {
                log::info!("attachMode {mode} failed: {e}");
                failures.push((mode, e));
            }
        }
    }
    Err(combine(failures, |(mode, e)| {
        Error::new(e.kind, format!("attachMode {mode} failed: {e}")).with_details(e.details)
    }))
}

/// The record's flags for a stage: EDT, and whether natra installed its fq.
fn stage_flags(stage: &Stage) -> u32 {
    (if stage.edt { EDT } else { 0 })
        | (if stage.owns_fq { OWNS_FQ } else { 0 })
        | (if stage.edt_ingress { EDT_INGRESS } else { 0 })
        | (if stage.owns_host_fq { OWNS_HOST_FQ } else { 0 })
}

/// One mode: recorded first, then attached; undone from the record if any
/// direction fails.
fn attempt(
    pins: &AttachmentPins,
    target: &Target,
    progs: &[(Direction, BorrowedFd<'_>)],
    record_map: BorrowedFd<'_>,
    stage: &Stage,
    mode: AttachMode,
    place: Placement,
) -> Result<()> {
    let mut rec = Record {
        mode,
        host_ifindex: target.host_ifindex,
        pod_ifindex: target.pod_ifindex,
        flags: stage_flags(stage),
        pod: target.pod.clone(),
        netns: target.netns.to_string_lossy().into_owned(),
        place,
    };
    record::write(record_map, &rec)?;
    let result = attach_all(pins, target, progs, record_map, &mut rec);
    if result.is_err() {
        // The fq stays: the next mode of the stage paces with it too.
        if let Err(e) = teardown::undo_record(pins, &rec, Some(&target.netns), false) {
            log::warn!("rollback of attachMode {mode}: {e}");
        }
        if let Err(e) = record::write_none(record_map, &place) {
            log::warn!("rollback of attachMode {mode}: {e}");
        }
    }
    result
}

/// Attaches each of `progs` where `rec.mode` puts it, pinning as it goes.
fn attach_all(
    pins: &AttachmentPins,
    target: &Target,
    progs: &[(Direction, BorrowedFd<'_>)],
    record_map: BorrowedFd<'_>,
    rec: &mut Record,
) -> Result<()> {
    let mode = rec.mode;
    for (n, &(dir, prog)) in progs.iter().enumerate() {
        let name = dir.program_name();
        let ifindex = mode.ifindex(dir, target.host_ifindex, target.pod_ifindex);
        if mode.is_tcx() {
            let attach_type = mode.tcx_attach_type(dir);
            let link = on_side(mode, dir, &target.netns, move || {
                sys::tcx_link(prog, name, ifindex, attach_type)
            })?;
            // Unpinned, the link goes when `link` is closed.
            sys::pin_fd(link.as_fd(), &pins.link(name))?;
        } else {
            // Pinned before it is attached, so that whoever undoes this
            // knows the program id of natra's filter.
            sys::pin_fd(prog, &pins.prog(name))?;
            let hook = mode.clsact_hook(dir);
            // The record says natra owns the clsact qdisc before natra makes
            // it: killed in between, DEL still removes it (only while empty).
            let slot = on_side(mode, dir, &target.netns, move || {
                qdisc::clsact_slot_kind(ifindex)
            })?;
            let intended = slot.is_none() && !rec.has(OWNS_CLSACT);
            if intended {
                rec.flags |= OWNS_CLSACT;
                record::write(record_map, rec)?;
            }
            let attached = on_side(mode, dir, &target.netns, move || {
                clsact::attach_to(prog, ifindex, hook, slot)
            })?;
            if intended && !attached.created_clsact {
                // Someone else made it in between: it is theirs.
                rec.flags &= !OWNS_CLSACT;
                record::write(record_map, rec)?;
            }
        }
        faults::after_attach(n + 1)?;
    }
    Ok(())
}

const AUTO_FAILED: &str = "attachMode auto: every mode failed; ";

/// One error from several: a single failure as it is; several as the
/// first (in the message) and all of them (in the details).
fn combine<T>(failures: Vec<T>, to_error: impl Fn(T) -> Error) -> Error {
    let mut errors: Vec<Error> = failures.into_iter().map(to_error).collect();
    match errors.len() {
        0 => Error::new(ErrorKind::Dataplane, "no attach mode to try"),
        1 => errors.remove(0),
        _ => Error::new(
            ErrorKind::Dataplane,
            format!(
                "{AUTO_FAILED}{}",
                errors[0]
                    .msg
                    .strip_prefix(AUTO_FAILED)
                    .unwrap_or(&errors[0].msg)
            ),
        )
        .with_details(
            errors
                .iter()
                .map(|e| e.msg.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::modes::{EdtPacing, Fq, ModeChoice};
    use super::*;

    #[test]
    fn stage_flags_say_edt_and_natras_fq() {
        let opts = Options {
            mode: ModeChoice::Auto,
            edt: EdtPacing::Auto,
        };
        let fq = Fq {
            available: true,
            owned: true,
            host_available: true,
            host_owned: true,
        };
        let stages = plan(&opts, fq);
        // tcx-split, then the Pod-side modes, then the host-side ones
        assert_eq!(
            stage_flags(&stages[0]),
            EDT | OWNS_FQ | EDT_INGRESS | OWNS_HOST_FQ
        );
        assert_eq!(stage_flags(&stages[1]), EDT | OWNS_FQ);
        assert_eq!(stage_flags(&stages[2]), EDT_INGRESS | OWNS_HOST_FQ);
    }

    #[test]
    fn one_failure_stays_as_it_is_several_name_the_first() {
        let one = combine(vec![Error::new(ErrorKind::Io, "a")], |e| e);
        assert_eq!((one.kind, one.msg.as_str()), (ErrorKind::Io, "a"));
        let two = combine(
            vec![
                Error::new(ErrorKind::Dataplane, "x"),
                Error::new(ErrorKind::Dataplane, "y"),
            ],
            |e| e,
        );
        assert!(two.msg.contains('x') && two.details.contains('y'), "{two}");
    }
}
