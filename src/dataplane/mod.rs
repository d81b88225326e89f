//! natra's BPF dataplane as the control plane sees it: load one skeleton per
//! Pod interface, attach a program per limited direction to the host-side
//! veth with tcx (or as another attach mode says, modes.rs), pin everything,
//! and read it back.
pub mod attach;
pub mod btf_json;
pub mod clsact;
pub mod edt;
pub mod maps;
pub mod modes;
pub mod pins;
pub mod record;
pub mod skeleton;

use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::path::Path;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapHandle, ProgramAttachType};

use self::pins::{AttachmentPins, BUCKET_MAP, CONFIG_MAP, COUNTERS_MAP};
use self::skeleton::types::natra_direction;
use self::skeleton::{NatraSkel, NatraSkelBuilder};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::limits::{BucketParams, PodLimits};

/// Test hook: fail ADD after this many links were attached, to prove the
/// rollback. Never set in production.
pub const FAIL_AFTER_ATTACHES_ENV: &str = "NATRA_FAIL_AFTER_ATTACHES";
/// Test hook: SIGKILL the plugin at a named point of ADD (`fq-installed`,
/// `clsact-created`), to prove that DEL cleans up after a crash in the
/// windows between making something and recording it. Never set in
/// production.
pub const KILL_AT_ENV: &str = "NATRA_KILL_AT";

/// Dies here, as a crash would, when [`KILL_AT_ENV`] names `point`.
pub(crate) fn kill_point(point: &str) {
    if std::env::var(KILL_AT_ENV).is_ok_and(|v| v == point) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
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

/// A direction of a Pod's traffic, named from the Pod's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Into the Pod: the host-side veth's egress.
    PodIngress,
    /// Out of the Pod: the host-side veth's ingress.
    PodEgress,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::PodIngress, Direction::PodEgress];

    pub fn index(self) -> u32 {
        match self {
            Direction::PodIngress => natra_direction::NATRA_DIR_POD_INGRESS.0,
            Direction::PodEgress => natra_direction::NATRA_DIR_POD_EGRESS.0,
        }
    }

    pub fn program_name(self) -> &'static str {
        match self {
            Direction::PodIngress => "pod_ingress",
            Direction::PodEgress => "pod_egress",
        }
    }

    /// The tcx hook on the host-side veth that sees this direction.
    pub fn host_veth_hook(self) -> ProgramAttachType {
        match self {
            Direction::PodIngress => ProgramAttachType::TcxEgress,
            Direction::PodEgress => ProgramAttachType::TcxIngress,
        }
    }

    pub fn limit(self, limits: &PodLimits) -> Option<BucketParams> {
        match self {
            Direction::PodIngress => limits.pod_ingress,
            Direction::PodEgress => limits.pod_egress,
        }
    }
}

/// Loads, configures, attaches (in the attach mode `opts` asks for, see
/// modes.rs, after the EDT probe of edt.rs) and pins the dataplane for one
/// Pod interface. On failure nothing stays behind: no attached program, no
/// pin, no qdisc natra made.
pub fn install(
    pins: &AttachmentPins,
    target: &modes::Target,
    limits: &PodLimits,
    opts: &modes::Options,
) -> Result<modes::Installed> {
    modes::install(pins, target, opts, |stage| {
        install_inner(pins, target, limits, stage)
    })
}

/// One load of the dataplane, attached in the first of `stage.modes` that
/// works; modes::install cleans up after a failure.
fn install_inner(
    pins: &AttachmentPins,
    target: &modes::Target,
    limits: &PodLimits,
    stage: &modes::Stage,
) -> Result<modes::AttachMode> {
    let mut storage = MaybeUninit::uninit();
    let mut open = NatraSkelBuilder::default()
        .open(&mut storage)
        .context(ErrorKind::Dataplane, "cannot open the BPF object")?;
    for dir in Direction::ALL {
        let prog = match dir {
            Direction::PodIngress => &mut open.progs.pod_ingress,
            Direction::PodEgress => &mut open.progs.pod_egress,
        };
        prog.set_autoload(dir.limit(limits).is_some());
        prog.set_attach_type(dir.host_veth_hook());
    }
    // The sketch map is sized for this pod before load (docs/dataplane.md).
    if let Some(p) = limits.pod_ingress.or(limits.pod_egress) {
        open.maps
            .natra_sketch
            .set_max_entries(maps::sketch_entries(&p))
            .context(ErrorKind::Dataplane, "cannot size the sketch map")?;
    }
    let mut skel = open
        .load()
        .context(ErrorKind::Dataplane, "cannot load the BPF programs")?;

    // the program's clock (bpf_ktime_get_coarse_ns)
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
        .context(ErrorKind::Dataplane, "cannot read CLOCK_MONOTONIC_COARSE")?;
    let now_ns = now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64;
    // EDT pacing is on for this load (fq is the root qdisc of the Pod's
    // interface and the mode is Pod-side): NATRA_CFG_EDT in pod egress's
    // natra_config.flags, with its horizon and debt (limits::with_edt).
    let edt = stage.edt;
    log::debug!(
        "writing the config with EDT {}",
        if edt { "on" } else { "off" }
    );
    let written = limits.with_edt(edt);
    for dir in Direction::ALL {
        if let Some(params) = dir.limit(&written) {
            maps::write_config(skel.maps.natra_cfg.as_fd(), dir, &params)?;
            maps::write_bucket_full(skel.maps.natra_bucket.as_fd(), dir, &params, now_ns)?;
        }
    }
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
    modes::attach_stage(pins, target, &progs, skel.maps.natra_attach.as_fd(), stage)
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

/// Detaches and unpins everything of one Pod interface; absent is fine.
/// `netns`: the Pod's netns if there still is one (Pod-side attach modes and
/// natra's fq are undone inside it).
pub fn remove(pins: &AttachmentPins, netns: Option<&Path>) -> Result<()> {
    modes::remove(pins, netns)?;
    for dir in Direction::ALL {
        attach::detach_pinned(&pins.link(dir.program_name()))?;
    }
    pins.remove_all()
}

/// Reads the kernel's state back and compares it with what ADD would make.
pub fn verify(
    pins: &AttachmentPins,
    target: &modes::Target,
    limits: &PodLimits,
    opts: &modes::Options,
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
    let record = modes::verify_record(pins, target, opts)?;
    for dir in Direction::ALL {
        let Some(params) = dir.limit(limits) else {
            if modes::direction_attached(pins, dir) {
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
        modes::verify_direction(pins, &record, target, dir)?;
        let found = maps::read_config(config.as_fd(), dir)?;
        let params = if record.has(self::record::EDT) {
            params.with_edt()
        } else {
            params
        };
        let expected = maps::config_for(dir, &params);
        let key = |c: &skeleton::types::natra_config| {
            (
                (c.rate_bytes_per_sec, c.burst_bytes, c.ecn_band_bytes),
                (c.refill_full_ns, c.mice_reserve_bytes, c.flags.0),
                (c.edt_debt_bytes, c.edt_horizon_ns, c.heavy_threshold_bytes),
                (c.epoch_ns, c.sketch_depth, c.sketch_width),
                (c.sketch_shift, c.sketch_base),
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
