//! Attach modes: where natra's programs sit, how ADD picks a mode, and how
//! DEL / CHECK / GC undo or verify what ADD did in any of them.
//!
//! | mode | pod_ingress (into the Pod) | pod_egress (out of the Pod) |
//! |---|---|---|
//! | `tcx-hostside` | tcx egress of the host veth | tcx ingress of the host veth |
//! | `clsact-hostside` | clsact egress of the host veth | clsact ingress of the host veth |
//! | `tcx-podside` | tcx ingress of the Pod's interface | tcx egress of the Pod's interface |
//! | `clsact-podside` | clsact ingress of the Pod's interface | clsact egress of the Pod's interface |
//!
//! Pod-side attachments are made from inside the Pod's netns (on a thread of
//! their own, [`netns::run_in_netns`]); their pins still live in the host's
//! bpffs, since setns(CLONE_NEWNET) leaves the mount namespace alone.
//!
//! `auto` tries the modes in turn ([`auto_order`]): Pod side first when EDT
//! pacing will be used (fq on the Pod's interface only paces what leaves it
//! after natra stamped it), host side first otherwise. Every failed attempt
//! undoes what it made before the next one starts.
//!
//! What an attempt made is written to the `attachment` record (record.rs)
//! as it goes, and undone from it: the same code serves a failed attempt,
//! DEL and GC. tcx links are pinned as `<prog>_link`; for clsact the
//! programs are pinned as `<prog>_prog`, so DEL and CHECK know natra's
//! program id and never take someone else's filter for natra's (an ifindex
//! can be reused by another Pod's veth once this one died).
use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libbpf_rs::Program;

use super::clsact::{self, Hook};
use super::edt::{self, Fq};
use super::pins::{self, AttachmentPins};
use super::record::{self, PodRef, Record, ATTACHMENT_MAP, EDT, OWNS_CLSACT, OWNS_FQ};
use super::{attach, Direction, FAIL_AFTER_ATTACHES_ENV};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::netns;
use crate::qdisc;

/// Test hook: SIGKILL the plugin itself after this many attaches, to prove
/// that DEL and GC clean up after an ADD that died half-way (no rollback
/// runs, as with a real kill). Never set in production.
pub const KILL_AFTER_ATTACHES_ENV: &str = "NATRA_KILL_AFTER_ATTACHES";

/// Where and how the programs are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    TcxHostside,
    TcxPodside,
    ClsactHostside,
    ClsactPodside,
}

impl AttachMode {
    pub const ALL: [AttachMode; 4] = [
        AttachMode::TcxHostside,
        AttachMode::TcxPodside,
        AttachMode::ClsactHostside,
        AttachMode::ClsactPodside,
    ];

    /// The name `attachMode` / `NATRA_ATTACH_MODE` take.
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::TcxHostside => "tcx-hostside",
            AttachMode::TcxPodside => "tcx-podside",
            AttachMode::ClsactHostside => "clsact-hostside",
            AttachMode::ClsactPodside => "clsact-podside",
        }
    }

    pub fn parse(name: &str) -> Option<AttachMode> {
        AttachMode::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn is_pod_side(self) -> bool {
        matches!(self, AttachMode::TcxPodside | AttachMode::ClsactPodside)
    }

    pub fn is_tcx(self) -> bool {
        matches!(self, AttachMode::TcxHostside | AttachMode::TcxPodside)
    }

    /// The `BPF_TCX_*` attach type that sees `dir` in this mode.
    pub fn tcx_attach_type(self, dir: Direction) -> u32 {
        match self.clsact_hook(dir) {
            Hook::Ingress => libbpf_sys::BPF_TCX_INGRESS,
            Hook::Egress => libbpf_sys::BPF_TCX_EGRESS,
        }
    }

    /// The hook (tcx or clsact) that sees `dir` in this mode.
    pub fn clsact_hook(self, dir: Direction) -> Hook {
        if self.is_pod_side() {
            Hook::for_pod_veth(dir)
        } else {
            Hook::for_host_veth(dir)
        }
    }

    /// The device this mode attaches to, in its own netns.
    fn ifindex(self, host_ifindex: u32, pod_ifindex: u32) -> u32 {
        if self.is_pod_side() {
            pod_ifindex
        } else {
            host_ifindex
        }
    }

    fn side(self) -> &'static str {
        if self.is_pod_side() {
            "the Pod's interface"
        } else {
            "the host veth"
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `attachMode`: one mode, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModeChoice {
    #[default]
    Auto,
    Explicit(AttachMode),
}

impl fmt::Display for ModeChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModeChoice::Auto => f.write_str("auto"),
            ModeChoice::Explicit(m) => m.fmt(f),
        }
    }
}

/// `edtPacing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EdtPacing {
    /// EDT when fq can be had on the Pod's interface, policing otherwise.
    #[default]
    Auto,
    /// EDT or a failed ADD.
    On,
    /// Never EDT; qdiscs are never touched.
    Off,
}

impl EdtPacing {
    pub fn parse(name: &str) -> Option<EdtPacing> {
        match name {
            "auto" => Some(EdtPacing::Auto),
            "on" => Some(EdtPacing::On),
            "off" => Some(EdtPacing::Off),
            _ => None,
        }
    }
}

/// The attach options of one ADD/CHECK (src/cni/options.rs reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    pub mode: ModeChoice,
    pub edt: EdtPacing,
}

/// The two ends of the Pod's veth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The Pod's netns (CNI_NETNS).
    pub netns: PathBuf,
    /// The Pod's interface (CNI_IFNAME), for messages.
    pub pod_ifname: String,
    /// The Pod's interface, in the Pod's netns.
    pub pod_ifindex: u32,
    /// The host-side veth, in the host netns.
    pub host_ifindex: u32,
    /// The Pod, as the runtime names it (CNI_ARGS), for the record.
    pub pod: PodRef,
}

/// One load of the dataplane and the modes tried with it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// EDT pacing: what the dataplane's config must say.
    pub edt: bool,
    /// natra installed the fq that EDT relies on.
    pub owns_fq: bool,
    pub modes: Vec<AttachMode>,
}

impl Stage {
    fn flags(&self) -> u32 {
        (if self.edt { EDT } else { 0 }) | (if self.owns_fq { OWNS_FQ } else { 0 })
    }
}

/// What ADD ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    pub mode: AttachMode,
    pub edt: bool,
}

/// The order `auto` tries the modes in.
pub fn auto_order(edt: bool) -> [AttachMode; 4] {
    use AttachMode::*;
    if edt {
        [TcxPodside, ClsactPodside, TcxHostside, ClsactHostside]
    } else {
        [TcxHostside, ClsactHostside, TcxPodside, ClsactPodside]
    }
}

/// The stages of one ADD. EDT needs a Pod-side mode, and the dataplane's
/// config says whether it paces: so `auto` with fq runs the Pod-side modes
/// with EDT on, then (unless `edtPacing` is `on`) the host-side ones with
/// EDT off, in a second load.
pub fn plan(opts: &Options, fq: Fq) -> Vec<Stage> {
    let edt_stage = |modes: &[AttachMode]| Stage {
        edt: true,
        owns_fq: fq.owned,
        modes: modes.to_vec(),
    };
    let plain = |modes: &[AttachMode]| Stage {
        edt: false,
        owns_fq: false,
        modes: modes.to_vec(),
    };
    match opts.mode {
        ModeChoice::Explicit(mode) if fq.available && mode.is_pod_side() => {
            vec![edt_stage(&[mode])]
        }
        ModeChoice::Explicit(mode) => vec![plain(&[mode])],
        ModeChoice::Auto if fq.available => {
            let order = auto_order(true);
            let mut stages = vec![edt_stage(&order[..2])];
            if opts.edt != EdtPacing::On {
                stages.push(plain(&order[2..]));
            }
            stages
        }
        ModeChoice::Auto => vec![plain(&auto_order(false))],
    }
}

/// ADD: probes EDT, then runs `run_stage` (load, configure, pin the maps and
/// [`attach_stage`]) for each stage until one attaches. Whatever a failed
/// stage left is removed, and fq natra installed goes when EDT is given up.
pub fn install<F>(
    pins: &AttachmentPins,
    target: &Target,
    opts: &Options,
    mut run_stage: F,
) -> Result<Installed>
where
    F: FnMut(&Stage) -> Result<AttachMode>,
{
    let fq = edt::probe(target, opts)?;
    let mut fq_owned = fq.owned;
    let mut failures = Vec::new();
    for stage in plan(opts, fq) {
        if !stage.edt && fq_owned {
            log::info!(
                "EDT off: no Pod-side attach mode worked; removing the fq natra installed on the Pod's {}",
                target.pod_ifname
            );
            edt::remove_natra_fq(&target.netns, target.pod_ifindex)?;
            fq_owned = false;
        }
        match run_stage(&stage) {
            Ok(mode) => {
                return Ok(Installed {
                    mode,
                    edt: stage.edt,
                })
            }
            Err(e) => {
                log::warn!(
                    "install into {} failed ({e}); rolling back",
                    pins.dir.display()
                );
                // Attempts undo themselves; this catches a stage that failed
                // before or between them.
                if let Err(e) = undo(pins, Some(&target.netns), false) {
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
    Err(combine(failures, |e| e))
}

/// Pins the record map, then tries the stage's modes in order on the loaded
/// programs `progs` (one per limited direction). Returns the mode that
/// worked; a failed attempt leaves nothing attached.
pub fn attach_stage(
    pins: &AttachmentPins,
    target: &Target,
    progs: &[(Direction, BorrowedFd<'_>)],
    record_map: BorrowedFd<'_>,
    stage: &Stage,
) -> Result<AttachMode> {
    pin_fd(record_map, &pins.map(ATTACHMENT_MAP))?;
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
        flags: stage.flags(),
        pod: target.pod.clone(),
    };
    record::write(record_map, Some(&rec))?;
    let result = attach_all(pins, target, progs, record_map, &mut rec);
    if result.is_err() {
        // The fq stays: the next mode of the stage paces with it too.
        if let Err(e) = undo_record(pins, &rec, Some(&target.netns), false) {
            log::warn!("rollback of attachMode {mode}: {e}");
        }
        if let Err(e) = record::write(record_map, None) {
            log::warn!("rollback of attachMode {mode}: {e}");
        }
    }
    result
}

fn attach_all(
    pins: &AttachmentPins,
    target: &Target,
    progs: &[(Direction, BorrowedFd<'_>)],
    record_map: BorrowedFd<'_>,
    rec: &mut Record,
) -> Result<()> {
    let fail_after: Option<usize> = std::env::var(FAIL_AFTER_ATTACHES_ENV)
        .ok()
        .and_then(|v| v.parse().ok());
    let kill_after: Option<usize> = std::env::var(KILL_AFTER_ATTACHES_ENV)
        .ok()
        .and_then(|v| v.parse().ok());
    let mode = rec.mode;
    let ifindex = mode.ifindex(target.host_ifindex, target.pod_ifindex);
    for (n, &(dir, prog)) in progs.iter().enumerate() {
        let name = dir.program_name();
        if mode.is_tcx() {
            let attach_type = mode.tcx_attach_type(dir);
            let link = on_side(mode, &target.netns, move || {
                tcx_link(prog, name, ifindex, attach_type)
            })?;
            // Unpinned, the link goes when `link` is closed.
            pin_fd(link.as_fd(), &pins.link(name))?;
        } else {
            // Pinned before it is attached, so that whoever undoes this
            // knows the program id of natra's filter.
            pin_fd(prog, &prog_pin(pins, dir))?;
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
        if kill_after == Some(n + 1) {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
        if fail_after == Some(n + 1) {
            return Err(Error::new(
                ErrorKind::Dataplane,
                format!(
                    "{FAIL_AFTER_ATTACHES_ENV} fault injected after {} attach(es)",
                    n + 1
                ),
            ));
        }
    }
    Ok(())
}

/// DEL and GC: undoes what the record says (fq included). The caller then
/// detaches any remaining link pins and removes the pin directory. `netns`
/// is the Pod's netns if the runtime still has one; without it, Pod-side
/// filters and qdiscs are left to vanish with it.
pub fn remove(pins: &AttachmentPins, netns: Option<&Path>) -> Result<()> {
    undo(pins, netns, true)
}

fn undo(pins: &AttachmentPins, netns: Option<&Path>, include_fq: bool) -> Result<()> {
    match record::read(pins) {
        Ok(Some(rec)) => undo_record(pins, &rec, netns, include_fq),
        Ok(None) => Ok(()),
        Err(e) => {
            // Links still go by their pins; clsact filters stay.
            log::warn!("cannot read the attachment record: {e}");
            Ok(())
        }
    }
}

fn undo_record(
    pins: &AttachmentPins,
    rec: &Record,
    netns: Option<&Path>,
    include_fq: bool,
) -> Result<()> {
    let netns = netns.filter(|p| !p.as_os_str().is_empty() && p.exists());
    let ifindex = rec.mode.ifindex(rec.host_ifindex, rec.pod_ifindex);
    if rec.mode.is_tcx() {
        // BPF_LINK_DETACH works from anywhere, no netns needed.
        for dir in Direction::ALL {
            attach::detach_pinned(&pins.link(dir.program_name()))?;
        }
    } else {
        let mut ours = Vec::new();
        for dir in Direction::ALL {
            match pinned_prog_id(&prog_pin(pins, dir)) {
                Ok(Some(id)) => ours.push((dir, rec.mode.clsact_hook(dir), id)),
                Ok(None) => {}
                Err(e) => log::warn!("{e}: leaving natra's {} filter", dir.program_name()),
            }
        }
        let owns = rec.has(OWNS_CLSACT);
        let work = move || -> Result<()> {
            for (dir, hook, id) in ours {
                remove_filter_if_ours(ifindex, dir, hook, id, owns)?;
            }
            Ok(())
        };
        match (rec.mode.is_pod_side(), netns) {
            (false, _) => work()?,
            // Best effort: a netns that cannot be entered (a stale file, or
            // one being torn down) takes natra's filters with it, and what
            // natra owns on the host side and in bpffs still goes.
            (true, Some(ns)) => {
                if let Err(e) = netns::run_in_netns(ns, work) {
                    log::warn!("Pod-side clsact filters left to the Pod's netns: {e}");
                }
            }
            (true, None) => log::info!(
                "the Pod's netns is gone: its clsact filters went with it; unpinning only"
            ),
        }
        for dir in Direction::ALL {
            pins::remove_if_present(&prog_pin(pins, dir))?;
        }
    }
    if include_fq && rec.has(OWNS_FQ) {
        match netns {
            Some(ns) => {
                if let Err(e) = edt::remove_natra_fq(ns, rec.pod_ifindex) {
                    log::warn!("natra's fq left to the Pod's netns: {e}");
                }
            }
            None => log::info!("the Pod's netns is gone: its fq went with it"),
        }
    }
    Ok(())
}

/// Removes natra's clsact filter at `hook` of `ifindex` only while it runs
/// natra's program `ours`, and then the clsact qdisc if natra made it and
/// it is empty.
fn remove_filter_if_ours(
    ifindex: u32,
    dir: Direction,
    hook: Hook,
    ours: u32,
    owns_clsact: bool,
) -> Result<()> {
    match clsact::query(ifindex, hook)? {
        Some(id) if id == ours => {
            clsact::detach(ifindex, hook, owns_clsact)?;
        }
        Some(other) => log::warn!(
            "the filter at natra's slot on ifindex {ifindex} runs prog {other}, not natra's {} \
             (prog {ours}): leaving it",
            dir.program_name()
        ),
        None => {
            log::info!(
                "natra's {} filter on ifindex {ifindex} is already gone",
                dir.program_name()
            );
            // A crash between making the clsact qdisc and attaching the
            // filter leaves the qdisc alone: natra's, and empty, it goes.
            clsact::detach(ifindex, hook, owns_clsact)?;
        }
    }
    Ok(())
}

/// CHECK: the record, held against the options. A missing record (state
/// from before records existed) counts as tcx-hostside.
pub fn verify_record(pins: &AttachmentPins, target: &Target, opts: &Options) -> Result<Record> {
    let rec = record::read(pins)
        .map_err(|e| Error::new(ErrorKind::CheckMismatch, e.msg).with_details(e.details))?
        .unwrap_or(Record {
            mode: AttachMode::TcxHostside,
            host_ifindex: target.host_ifindex,
            pod_ifindex: target.pod_ifindex,
            flags: 0,
            pod: target.pod.clone(),
        });
    let mismatch = |msg: String| Error::new(ErrorKind::CheckMismatch, msg);
    if let ModeChoice::Explicit(want) = opts.mode {
        if want != rec.mode {
            return Err(mismatch(format!(
                "attached with attachMode {}, the configuration asks for {want}",
                rec.mode
            )));
        }
    }
    match (opts.edt, rec.has(EDT)) {
        (EdtPacing::On, false) => {
            return Err(mismatch("edtPacing is on but EDT is off".into()));
        }
        (EdtPacing::Off, true) => {
            return Err(mismatch("edtPacing is off but EDT is on".into()));
        }
        _ => {}
    }
    if rec.has(EDT) {
        let ifindex = target.pod_ifindex;
        let kind = netns::run_in_netns(&target.netns, move || qdisc::root_qdisc_kind(ifindex))?;
        if kind.as_deref() != Some("fq") {
            return Err(mismatch(format!(
                "EDT is on but the root qdisc of the Pod's {} is {}, not fq",
                target.pod_ifname,
                kind.as_deref().unwrap_or("none")
            )));
        }
    }
    Ok(rec)
}

/// Whether anything of `dir` is attached (a link or a program pinned).
pub fn direction_attached(pins: &AttachmentPins, dir: Direction) -> bool {
    pins.link(dir.program_name()).exists() || prog_pin(pins, dir).exists()
}

/// CHECK: `dir`'s program sits where the record's mode puts it, on the
/// devices the Pod has now.
pub fn verify_direction(
    pins: &AttachmentPins,
    rec: &Record,
    target: &Target,
    dir: Direction,
) -> Result<()> {
    let name = dir.program_name();
    let mode = rec.mode;
    let ifindex = mode.ifindex(target.host_ifindex, target.pod_ifindex);
    if mode.is_tcx() {
        let want = attach::TcxTarget {
            ifindex,
            attach_type: mode.tcx_attach_type(dir),
        };
        let found = attach::pinned_tcx_target(&pins.link(name))?;
        if found != want {
            return Err(Error::new(
                ErrorKind::CheckMismatch,
                format!("{name} is attached elsewhere"),
            )
            .with_details(format!(
                "{mode}: expected ifindex {} attach type {} on {}, found ifindex {} attach type {}",
                want.ifindex,
                want.attach_type,
                mode.side(),
                found.ifindex,
                found.attach_type
            )));
        }
        return Ok(());
    }
    let pin = prog_pin(pins, dir);
    let ours = pinned_prog_id(&pin)
        .map_err(|e| Error::new(ErrorKind::CheckMismatch, e.msg).with_details(e.details))?
        .ok_or_else(|| {
            Error::new(
                ErrorKind::CheckMismatch,
                format!("{name} program pin {} is missing", pin.display()),
            )
        })?;
    let hook = mode.clsact_hook(dir);
    let found = on_side(mode, &target.netns, move || clsact::query(ifindex, hook))?;
    if found != Some(ours) {
        return Err(Error::new(
            ErrorKind::CheckMismatch,
            format!("{name} is not attached where {mode} puts it"),
        )
        .with_details(format!(
            "natra's clsact filter at {hook:?} of ifindex {ifindex} ({}) runs {}, expected prog {ours}",
            mode.side(),
            found.map_or("nothing".to_owned(), |id| format!("prog {id}"))
        )));
    }
    Ok(())
}

/// `<prog>_prog`: a program pinned for the clsact modes.
pub fn prog_pin(pins: &AttachmentPins, dir: Direction) -> PathBuf {
    pins.dir.join(format!("{}_prog", dir.program_name()))
}

/// Runs `work` in the Pod's netns for a Pod-side mode, here otherwise.
fn on_side<T, F>(mode: AttachMode, netns: &Path, work: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> Result<T> + Send,
{
    if mode.is_pod_side() {
        netns::run_in_netns(netns, work)
    } else {
        work()
    }
}

/// A tcx link of `prog` at `attach_type` of `ifindex` (calling thread's
/// netns), as an fd; it detaches when its last reference goes.
fn tcx_link(prog: BorrowedFd<'_>, name: &str, ifindex: u32, attach_type: u32) -> Result<OwnedFd> {
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as libbpf_sys::size_t,
        ..Default::default()
    };
    // SAFETY: prog is a live program fd; opts is a fully initialised
    // bpf_link_create_opts with its size set (libbpf's OPTS convention) that
    // outlives the call; for tcx the target is the ifindex.
    let fd = unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifindex as i32, attach_type, &opts)
    };
    if fd < 0 {
        let hook = if attach_type == libbpf_sys::BPF_TCX_INGRESS {
            "ingress"
        } else {
            "egress"
        };
        return Err(Error::new(
            ErrorKind::Dataplane,
            format!("tcx attach of {name} to ifindex {ifindex} {hook} failed"),
        )
        .with_details(io::Error::from_raw_os_error(-fd)));
    }
    // SAFETY: fd is a link fd the kernel just gave us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Pins the BPF object behind `fd` at `path` (in the host's bpffs).
fn pin_fd(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .context(ErrorKind::Io, format!("bad pin path {}", path.display()))?;
    // SAFETY: fd is a live BPF object fd and c_path a NUL-terminated string;
    // both outlive the call, which only reads them.
    let rc = unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), c_path.as_ptr()) };
    if rc != 0 {
        return Err(Error::new(
            ErrorKind::Dataplane,
            format!("cannot pin {}", path.display()),
        )
        .with_details(io::Error::from_raw_os_error(-rc)));
    }
    Ok(())
}

/// The id of the program pinned at `path`; None when there is no pin.
fn pinned_prog_id(path: &Path) -> Result<Option<u32>> {
    if !path.exists() {
        return Ok(None);
    }
    let fd = Program::fd_from_pinned_path(path).context(
        ErrorKind::Dataplane,
        format!("cannot open the program pin {}", path.display()),
    )?;
    Program::id_from_fd(fd.as_fd()).map(Some).context(
        ErrorKind::Dataplane,
        format!("cannot read the id of {}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_FQ: Fq = Fq {
        available: false,
        owned: false,
    };
    const OUR_FQ: Fq = Fq {
        available: true,
        owned: true,
    };

    fn opts(mode: ModeChoice, edt: EdtPacing) -> Options {
        Options { mode, edt }
    }

    #[test]
    fn names_round_trip() {
        for mode in AttachMode::ALL {
            assert_eq!(AttachMode::parse(mode.name()), Some(mode));
        }
        assert_eq!(AttachMode::parse("tcx"), None);
    }

    #[test]
    fn hooks_follow_the_side() {
        use AttachMode::*;
        for (mode, dir, hook) in [
            (
                TcxHostside,
                Direction::PodIngress,
                libbpf_sys::BPF_TCX_EGRESS,
            ),
            (
                TcxHostside,
                Direction::PodEgress,
                libbpf_sys::BPF_TCX_INGRESS,
            ),
            (
                TcxPodside,
                Direction::PodIngress,
                libbpf_sys::BPF_TCX_INGRESS,
            ),
            (TcxPodside, Direction::PodEgress, libbpf_sys::BPF_TCX_EGRESS),
        ] {
            assert_eq!(mode.tcx_attach_type(dir), hook, "{mode} {dir:?}");
        }
        assert_eq!(
            ClsactPodside.clsact_hook(Direction::PodEgress),
            Hook::Egress
        );
        assert_eq!(
            ClsactHostside.clsact_hook(Direction::PodEgress),
            Hook::Ingress
        );
    }

    #[test]
    fn auto_without_fq_is_host_side_first_in_one_stage() {
        let stages = plan(&opts(ModeChoice::Auto, EdtPacing::Auto), NO_FQ);
        assert_eq!(stages.len(), 1);
        assert!(!stages[0].edt);
        assert_eq!(stages[0].modes, auto_order(false));
        assert_eq!(stages[0].modes[0], AttachMode::TcxHostside);
    }

    #[test]
    fn auto_with_fq_is_pod_side_with_edt_then_host_side_without() {
        let stages = plan(&opts(ModeChoice::Auto, EdtPacing::Auto), OUR_FQ);
        assert_eq!(stages.len(), 2);
        assert!(stages[0].edt && stages[0].owns_fq);
        assert_eq!(
            stages[0].modes,
            [AttachMode::TcxPodside, AttachMode::ClsactPodside]
        );
        assert!(!stages[1].edt && !stages[1].owns_fq);
        assert_eq!(
            stages[1].modes,
            [AttachMode::TcxHostside, AttachMode::ClsactHostside]
        );
        assert_eq!(stages[0].flags(), EDT | OWNS_FQ);
        assert_eq!(stages[1].flags(), 0);
    }

    #[test]
    fn edt_on_never_falls_back_to_the_host_side() {
        let stages = plan(&opts(ModeChoice::Auto, EdtPacing::On), OUR_FQ);
        assert_eq!(stages.len(), 1);
        assert!(stages[0].modes.iter().all(|m| m.is_pod_side()));
    }

    #[test]
    fn an_explicit_mode_is_tried_alone() {
        for mode in AttachMode::ALL {
            let stages = plan(&opts(ModeChoice::Explicit(mode), EdtPacing::Auto), NO_FQ);
            assert_eq!(stages.len(), 1);
            assert_eq!(stages[0].modes, [mode]);
        }
        let stages = plan(
            &opts(
                ModeChoice::Explicit(AttachMode::ClsactPodside),
                EdtPacing::Auto,
            ),
            OUR_FQ,
        );
        assert!(stages[0].edt);
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
