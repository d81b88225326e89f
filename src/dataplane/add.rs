//! ADD, top to bottom:
//!
//! 1. [`install`] probes EDT (edt.rs: fq on the Pod's interface, or not) and
//!    plans the stages (modes.rs: which loads, with which attach modes);
//! 2. [`run_stage`], per stage until one works: [`load`] the skeleton sized
//!    and with the autoloads for these limits, write each limited
//!    direction's config and full bucket, pin the maps;
//! 3. [`attach_stage`] pins the record map and tries the stage's modes in
//!    turn; [`attempt`] writes the record, then [`attach_all`] attaches each
//!    limited direction (tcx link or clsact filter, on the host veth or
//!    inside the Pod's netns), the fault hooks (faults.rs) firing after each;
//! 4. a failed attempt undoes itself from its record (teardown.rs); a failed
//!    stage is removed with its pins; fq natra installed goes once EDT is
//!    given up.
//!
//! On failure nothing stays behind: no attached program, no pin, no qdisc
//! natra made.
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::OpenObject;

use super::direction::Direction;
use super::modes::{on_side, plan, AttachMode, Installed, Options, Stage, Target};
use super::pins::{self, AttachmentPins, BUCKET_MAP, CONFIG_MAP, COUNTERS_MAP};
use super::record::{self, Record, EDT, EDT_INGRESS, OWNS_CLSACT, OWNS_FQ, OWNS_HOST_FQ};
use super::skeleton::{NatraSkel, NatraSkelBuilder};
use super::{clsact, edt, faults, maps, sys, teardown};
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
    for stage in plan(opts, fq) {
        if !stage.edt_ingress && host_fq_owned {
            edt::remove_natra_host_fq(target.host_ifindex)?;
            host_fq_owned = false;
        }
        if !stage.edt && fq_owned {
            log::info!(
                "EDT off: no Pod-side attach mode worked; removing the fq natra installed on the Pod's {}",
                target.pod_ifname
            );
            edt::remove_natra_fq(&target.netns, target.pod_ifindex)?;
            fq_owned = false;
        }
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
/// proves BTF and the verifier are happy on this kernel).
pub fn probe_ready() -> Result<()> {
    let not_ready = |what: &str, cause: &dyn std::fmt::Display| {
        Error::new(ErrorKind::NotReady, format!("natra is not ready: {what}")).with_details(cause)
    };
    pins::ensure_bpffs(&pins::pin_root()).map_err(|e| not_ready("bpffs is not usable", &e))?;
    let mut storage = MaybeUninit::uninit();
    NatraSkelBuilder::default()
        .open(&mut storage)
        .and_then(|open| open.load())
        .map_err(|e| not_ready("the BPF programs cannot be loaded", &e))?;
    Ok(())
}

/// One load of the dataplane, attached in the first of `stage.modes` that
/// works; [`install`] cleans up after a failure.
fn run_stage(
    pins: &AttachmentPins,
    target: &Target,
    limits: &PodLimits,
    stage: &Stage,
) -> Result<AttachMode> {
    let mut storage = MaybeUninit::uninit();
    let mut skel = load(&mut storage, limits)?;
    write_limits(&skel, limits, stage.edt_ingress, stage.edt)?;
    pins.create()?;
    pin_maps(&mut skel, pins)?;
    let progs: Vec<_> = Direction::ALL
        .into_iter()
        .filter(|dir| dir.limit(limits).is_some())
        .map(|dir| match dir {
            Direction::PodIngress => (dir, skel.progs.pod_ingress.as_fd()),
            Direction::PodEgress => (dir, skel.progs.pod_egress.as_fd()),
        })
        .collect();
    attach_stage(pins, target, &progs, skel.maps.natra_attach.as_fd(), stage)
}

/// Opens and loads the skeleton: only the limited directions' programs,
/// each typed for its host-veth hook; the sketch map sized for this Pod
/// before load (docs/dataplane.md).
fn load<'obj>(
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
        prog.set_attach_type(dir.host_veth_hook());
    }
    if let Some(p) = limits.pod_ingress.or(limits.pod_egress) {
        open.maps
            .natra_sketch
            .set_max_entries(maps::sketch_entries(&p))
            .context(ErrorKind::Dataplane, "cannot size the sketch map")?;
    }
    open.load()
        .context(ErrorKind::Dataplane, "cannot load the BPF programs")
}

/// Each limited direction's config and a full bucket. With `edt` (fq is the
/// root qdisc of the Pod's interface and the mode is Pod-side) pod egress's
/// config carries NATRA_CFG_EDT with its horizons and debts, with
/// `edt_ingress` (fq on the host veth, host-side mode) pod ingress's
/// (limits::with_edt_dirs).
fn write_limits(
    skel: &NatraSkel<'_>,
    limits: &PodLimits,
    edt_ingress: bool,
    edt: bool,
) -> Result<()> {
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
            maps::write_config(skel.maps.natra_cfg.as_fd(), dir, &params)?;
            maps::write_bucket_full(skel.maps.natra_bucket.as_fd(), dir, &params, now_ns)?;
        }
    }
    Ok(())
}

fn pin_maps(skel: &mut NatraSkel<'_>, pins: &AttachmentPins) -> Result<()> {
    for (map, name) in [
        (&mut skel.maps.natra_cfg, CONFIG_MAP),
        (&mut skel.maps.natra_bucket, BUCKET_MAP),
        (&mut skel.maps.natra_stats, COUNTERS_MAP),
    ] {
        let path = pins.map(name);
        map.pin(&path).context(
            ErrorKind::Dataplane,
            format!("cannot pin {}", path.display()),
        )?;
    }
    Ok(())
}

/// Pins the record map, then tries the stage's modes in order on the loaded
/// programs `progs` (one per limited direction). Returns the mode that
/// worked; a failed attempt leaves nothing attached.
fn attach_stage(
    pins: &AttachmentPins,
    target: &Target,
    progs: &[(Direction, BorrowedFd<'_>)],
    record_map: BorrowedFd<'_>,
    stage: &Stage,
) -> Result<AttachMode> {
    sys::pin_fd(record_map, &pins.map(pins::ATTACHMENT_MAP))?;
    let mut failures = Vec::new();
    for &mode in &stage.modes {
        match attempt(pins, target, progs, record_map, stage, mode) {
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
) -> Result<()> {
    let mut rec = Record {
        mode,
        host_ifindex: target.host_ifindex,
        pod_ifindex: target.pod_ifindex,
        flags: stage_flags(stage),
        pod: target.pod.clone(),
        netns: target.netns.to_string_lossy().into_owned(),
    };
    record::write(record_map, Some(&rec))?;
    let result = attach_all(pins, target, progs, record_map, &mut rec);
    if result.is_err() {
        // The fq stays: the next mode of the stage paces with it too.
        if let Err(e) = teardown::undo_record(pins, &rec, Some(&target.netns), false) {
            log::warn!("rollback of attachMode {mode}: {e}");
        }
        if let Err(e) = record::write(record_map, None) {
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
    let ifindex = mode.ifindex(target.host_ifindex, target.pod_ifindex);
    for (n, &(dir, prog)) in progs.iter().enumerate() {
        let name = dir.program_name();
        if mode.is_tcx() {
            let attach_type = mode.tcx_attach_type(dir);
            let link = on_side(mode, &target.netns, move || {
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
            let absent = on_side(mode, &target.netns, move || {
                qdisc::clsact_slot_kind(ifindex).map(|k| k.is_none())
            })?;
            let intended = absent && !rec.has(OWNS_CLSACT);
            if intended {
                rec.flags |= OWNS_CLSACT;
                record::write(record_map, Some(rec))?;
            }
            let attached = on_side(mode, &target.netns, move || {
                clsact::attach(prog, ifindex, hook)
            })?;
            if intended && !attached.created_clsact {
                // Someone else made it in between: it is theirs.
                rec.flags &= !OWNS_CLSACT;
                record::write(record_map, Some(rec))?;
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
        assert_eq!(stage_flags(&stages[0]), EDT | OWNS_FQ);
        assert_eq!(stage_flags(&stages[1]), EDT_INGRESS | OWNS_HOST_FQ);
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
