//! natra's BPF dataplane as the control plane sees it: load one skeleton per
//! Pod interface, attach a program per limited direction to the host-side
//! veth with tcx, pin everything, and read it back.
pub mod attach;
pub mod btf_json;
pub mod clsact;
pub mod maps;
pub mod pins;
pub mod skeleton;

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapHandle, ProgramAttachType};

use self::pins::{AttachmentPins, BUCKET_MAP, CONFIG_MAP, COUNTERS_MAP};
use self::skeleton::types::natra_direction;
use self::skeleton::{NatraSkel, NatraSkelBuilder};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::limits::{BucketParams, PodLimits};

/// Test hook: fail ADD after this many links were attached, to prove the
/// rollback. Never set in production.
pub const FAIL_AFTER_ATTACHES_ENV: &str = "NATRA_FAIL_AFTER_ATTACHES";

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

/// Loads, configures, attaches and pins the dataplane for one Pod interface.
/// On failure nothing stays behind: no attached program, no pin.
pub fn install(pins: &AttachmentPins, host_ifindex: u32, limits: &PodLimits) -> Result<()> {
    let mut attached: Vec<Link> = Vec::new();
    let result = install_inner(pins, host_ifindex, limits, &mut attached);
    if let Err(e) = &result {
        log::warn!(
            "install into {} failed ({e}); rolling back",
            pins.dir.display()
        );
        for link in &attached {
            if let Err(e) = link.detach() {
                log::warn!("rollback: detach failed: {e}");
            }
        }
        if let Err(e) = pins.remove_all() {
            log::warn!("rollback: {e}");
        }
    }
    result
}

fn install_inner(
    pins: &AttachmentPins,
    host_ifindex: u32,
    limits: &PodLimits,
    attached: &mut Vec<Link>,
) -> Result<()> {
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
    let mut skel = open
        .load()
        .context(ErrorKind::Dataplane, "cannot load the BPF programs")?;

    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .context(ErrorKind::Dataplane, "cannot read CLOCK_MONOTONIC")?;
    let now_ns = now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64;
    for dir in Direction::ALL {
        if let Some(params) = dir.limit(limits) {
            maps::write_config(skel.maps.natra_cfg.as_fd(), dir, &params)?;
            maps::write_bucket_full(skel.maps.natra_bucket.as_fd(), dir, &params, now_ns)?;
        }
    }
    pins.create()?;
    pin_maps(&mut skel, pins)?;

    let fail_after: Option<usize> = std::env::var(FAIL_AFTER_ATTACHES_ENV)
        .ok()
        .and_then(|v| v.parse().ok());
    for dir in Direction::ALL {
        if dir.limit(limits).is_none() {
            continue;
        }
        let prog = match dir {
            Direction::PodIngress => &skel.progs.pod_ingress,
            Direction::PodEgress => &skel.progs.pod_egress,
        };
        let mut link = attach::attach_tcx(prog, host_ifindex)?;
        let pin = pins.link(dir.program_name());
        let pinned = link.pin(&pin);
        attached.push(link);
        pinned.context(
            ErrorKind::Dataplane,
            format!("cannot pin link {}", pin.display()),
        )?;
        if fail_after == Some(attached.len()) {
            return Err(Error::new(
                ErrorKind::Dataplane,
                format!(
                    "{FAIL_AFTER_ATTACHES_ENV} fault injected after {} attach(es)",
                    attached.len()
                ),
            ));
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

/// Detaches and unpins everything of one Pod interface; absent is fine.
pub fn remove(pins: &AttachmentPins) -> Result<()> {
    for dir in Direction::ALL {
        attach::detach_pinned(&pins.link(dir.program_name()))?;
    }
    pins.remove_all()
}

/// Reads the kernel's state back and compares it with what ADD would make.
pub fn verify(pins: &AttachmentPins, host_ifindex: u32, limits: &PodLimits) -> Result<()> {
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
    for dir in Direction::ALL {
        let link_pin = pins.link(dir.program_name());
        let Some(params) = dir.limit(limits) else {
            if link_pin.exists() {
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
        let target = attach::pinned_tcx_target(&link_pin)?;
        if target.ifindex != host_ifindex || target.attach_type != dir.host_veth_hook() as u32 {
            return Err(Error::new(
                ErrorKind::CheckMismatch,
                format!("{} is attached elsewhere", dir.program_name()),
            )
            .with_details(format!(
                "expected ifindex {host_ifindex} {:?}, found ifindex {} {:?}",
                dir.host_veth_hook(),
                target.ifindex,
                target.attach_type
            )));
        }
        let found = maps::read_config(config.as_fd(), dir)?;
        let expected = maps::config_for(dir, &params);
        if (
            found.rate_bytes_per_sec,
            found.burst_bytes,
            found.ecn_band_bytes,
        ) != (
            expected.rate_bytes_per_sec,
            expected.burst_bytes,
            expected.ecn_band_bytes,
        ) {
            return Err(Error::new(
                ErrorKind::CheckMismatch,
                format!(
                    "{} limits differ from the configuration",
                    dir.program_name()
                ),
            )
            .with_details(format!(
                "expected rate {} B/s burst {} B, found rate {} B/s burst {} B",
                expected.rate_bytes_per_sec,
                expected.burst_bytes,
                found.rate_bytes_per_sec,
                found.burst_bytes
            )));
        }
    }
    Ok(())
}
