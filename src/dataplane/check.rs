//! CHECK: the kernel's state read back and held against what ADD would
//! make of the configuration — the record, each direction's program where
//! the record's mode puts it, and the limits in the config map.
use std::os::fd::AsFd;

use libbpf_rs::MapHandle;

use super::clsact;
use super::direction::Direction;
use super::maps;
use super::modes::{on_side, AttachMode, EdtPacing, ModeChoice, Options, Target};
use super::pins::{AttachmentPins, CONFIG_MAP};
use super::placement::Placement;
use super::record::{self, Record, EDT, EDT_INGRESS};
use super::skeleton::types::natra_config;
use super::sys;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::limits::PodLimits;
use crate::netns;
use crate::qdisc;

/// Reads the kernel's state back and compares it with what ADD would make.
pub fn verify(
    pins: &AttachmentPins,
    target: &Target,
    limits: &PodLimits,
    opts: &Options,
) -> Result<()> {
    if !pins.exists() {
        return Err(Error::new(
            ErrorKind::CheckMismatch,
            format!("pin directory {} is missing", pins.dir.display()),
        ));
    }
    let config = MapHandle::from_pinned_path(pins.map(CONFIG_MAP)).context(
        ErrorKind::CheckMismatch,
        format!("config map pin in {} is missing", pins.dir.display()),
    )?;
    let record = verify_record(pins, target, opts)?;
    for dir in Direction::ALL {
        let Some(params) = dir.limit(limits) else {
            if direction_attached(pins, dir) {
                return Err(Error::new(
                    ErrorKind::CheckMismatch,
                    format!(
                        "{} is limited but the configuration has no limit",
                        dir.program_name()
                    ),
                ));
            }
            continue;
        };
        verify_direction(pins, &record, target, dir)?;
        let found = maps::read_config(config.as_fd(), record.place.key(dir))?;
        let params = if record::edt_for(record.flags, dir) {
            params.with_edt()
        } else {
            params
        };
        let expected = maps::config_for(dir, &params, &record.place);
        let key = |c: &natra_config| {
            (
                (c.rate_bytes_per_sec, c.burst_bytes, c.ecn_band_bytes),
                (c.refill_full_ns, c.mice_reserve_bytes, c.flags.0),
                (c.edt_debt_bytes, c.edt_horizon_ns, c.heavy_threshold_bytes),
                (c.epoch_ns, c.sketch_depth, c.sketch_width),
                (c.sketch_shift, c.sketch_base, c.generation),
                (c.mice_debt_bytes, c.mice_horizon_ns, c.ce_delay_ns),
                (c.handshake_extra_bytes, c.handshake_horizon_ns),
            )
        };
        if key(&found) != key(&expected) {
            return Err(Error::new(
                ErrorKind::CheckMismatch,
                format!(
                    "{} limits differ from the configuration",
                    dir.program_name()
                ),
            )
            .with_details(format!(
                "expected rate {} B/s burst {} B threshold {} B sketch {}x{} edt {}, \
                 found rate {} B/s burst {} B threshold {} B sketch {}x{} edt {}",
                expected.rate_bytes_per_sec,
                expected.burst_bytes,
                expected.heavy_threshold_bytes,
                expected.sketch_depth,
                expected.sketch_width,
                expected.flags.0,
                found.rate_bytes_per_sec,
                found.burst_bytes,
                found.heavy_threshold_bytes,
                found.sketch_depth,
                found.sketch_width,
                found.flags.0
            )));
        }
    }
    Ok(())
}

/// CHECK: the record, held against the options. A missing record (state
/// from before records existed) counts as tcx-hostside.
fn verify_record(pins: &AttachmentPins, target: &Target, opts: &Options) -> Result<Record> {
    let rec = record::read(pins)
        .map_err(|e| Error::new(ErrorKind::CheckMismatch, e.msg).with_details(e.details))?
        .unwrap_or(Record {
            mode: AttachMode::TcxHostside,
            host_ifindex: target.host_ifindex,
            pod_ifindex: target.pod_ifindex,
            flags: 0,
            pod: target.pod.clone(),
            netns: target.netns.to_string_lossy().into_owned(),
            place: Placement::default(),
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
    if rec.has(EDT_INGRESS) {
        // pod ingress is paced by fq at the host veth's root
        let kind = qdisc::root_qdisc_kind(target.host_ifindex)?;
        if kind.as_deref() != Some("fq") {
            return Err(mismatch(format!(
                "EDT is on for pod ingress but the root qdisc of the host veth (ifindex {}) is {}, not fq",
                target.host_ifindex,
                kind.as_deref().unwrap_or("none")
            )));
        }
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
fn direction_attached(pins: &AttachmentPins, dir: Direction) -> bool {
    pins.link(dir.program_name()).exists() || pins.prog(dir.program_name()).exists()
}

/// CHECK: `dir`'s program sits where the record's mode puts it, on the
/// devices the Pod has now.
fn verify_direction(
    pins: &AttachmentPins,
    rec: &Record,
    target: &Target,
    dir: Direction,
) -> Result<()> {
    let name = dir.program_name();
    let mode = rec.mode;
    let ifindex = mode.ifindex(dir, target.host_ifindex, target.pod_ifindex);
    if mode.is_tcx() {
        let want = sys::TcxTarget {
            ifindex,
            attach_type: mode.tcx_attach_type(dir),
        };
        let found = sys::pinned_tcx_target(&pins.link(name))?;
        if found != want {
            return Err(Error::new(
                ErrorKind::CheckMismatch,
                format!("{name} is attached elsewhere"),
            )
            .with_details(format!(
                "{mode}: expected ifindex {} attach type {} on {}, found ifindex {} attach type {}",
                want.ifindex,
                want.attach_type,
                mode.side(dir),
                found.ifindex,
                found.attach_type
            )));
        }
        return Ok(());
    }
    let pin = pins.prog(name);
    let ours = sys::pinned_prog_id(&pin)
        .map_err(|e| Error::new(ErrorKind::CheckMismatch, e.msg).with_details(e.details))?
        .ok_or_else(|| {
            Error::new(
                ErrorKind::CheckMismatch,
                format!("{name} program pin {} is missing", pin.display()),
            )
        })?;
    let hook = mode.clsact_hook(dir);
    let found = on_side(mode, dir, &target.netns, move || {
        clsact::query(ifindex, hook)
    })?;
    if found != Some(ours) {
        return Err(Error::new(
            ErrorKind::CheckMismatch,
            format!("{name} is not attached where {mode} puts it"),
        )
        .with_details(format!(
            "natra's clsact filter at {} of ifindex {ifindex} ({}) runs {}, expected prog {ours}",
            hook.name(),
            mode.side(dir),
            found.map_or("nothing".to_owned(), |id| format!("prog {id}"))
        )));
    }
    Ok(())
}
