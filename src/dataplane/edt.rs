//! The EDT probe: EDT pacing needs fq as the root qdisc of the Pod's
//! interface, where natra's Pod-side egress program stamps departure times
//! that fq then honours. `edtPacing` decides what happens when fq cannot be
//! had: `auto` falls back to policing (one `EDT off: …` log line says why),
//! `on` fails the ADD, `off` never touches a qdisc.
//!
//! fq is installed with natra's handle (`4e54:`, see crate::qdisc), which
//! marks it as natra's: DEL removes only such an fq, never one the operator
//! or the image configured.
use std::path::Path;

use super::direction::Direction;
use super::faults;
pub use super::modes::Fq;
use super::modes::{EdtPacing, ModeChoice, Options, Target};
use crate::error::{Error, ErrorKind, Result};
use crate::limits::PodLimits;
use crate::netns;
use crate::qdisc::{self, RootOutcome, NATRA_ROOT_HANDLE};

const NO_FQ: Fq = Fq {
    available: false,
    owned: false,
    host_available: false,
    host_owned: false,
};

/// Makes sure fq is the root of the Pod's interface (pod egress's queue,
/// Pod-side modes) and of the host veth (pod ingress's queue, host-side
/// modes) where EDT may be used, the fq natra installs sized for `limits`
/// (qdisc::FqSizing: it never drops what natra already charged).
pub fn probe(target: &Target, opts: &Options, limits: &PodLimits) -> Result<Fq> {
    let ifname = &target.pod_ifname;
    if opts.edt == EdtPacing::Off {
        log::info!("EDT off: edtPacing is off");
        return Ok(NO_FQ);
    }
    let (pod_side, host_side) = match opts.mode {
        ModeChoice::Explicit(mode) => (
            mode.pod_side(Direction::PodEgress),
            !mode.pod_side(Direction::PodIngress),
        ),
        ModeChoice::Auto => (true, true),
    };
    let mut fq = NO_FQ;
    let mut pod_failure = None;
    if pod_side {
        pod_failure = probe_pod(target, opts, limits, &mut fq)?;
    }
    // pod ingress: fq on the host veth, in the host netns: `auto` paces
    // both ways with it and the Pod's fq (the split modes).
    if host_side {
        if let Some(p) = limits.pod_ingress {
            let sizing = sizing_for(&p);
            match qdisc::install_fq_root_sized(target.host_ifindex, Some(sizing)) {
                Ok(outcome) => {
                    fq.host_available = true;
                    fq.host_owned = outcome == RootOutcome::Installed;
                    log::info!(
                        "EDT on for pod ingress: fq is the root qdisc of the host veth ({}, {sizing:?})",
                        if fq.host_owned { "natra's" } else { "already there" }
                    );
                }
                Err(e) => {
                    log::info!("EDT off for pod ingress: fq unavailable on the host veth: {e}")
                }
            }
        }
    }
    if opts.edt == EdtPacing::On && !fq.available && !fq.host_available {
        if let Some(e) = pod_failure {
            return Err(Error::new(
                ErrorKind::Dataplane,
                format!(
                    "edtPacing on: fq cannot be installed on the Pod's {ifname}: {}",
                    e.msg
                ),
            )
            .with_details(e.details));
        }
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "edtPacing on: fq cannot be had on the Pod's {ifname} (pod egress, Pod-side \
                 modes) nor on the host veth (pod ingress, host-side modes) for attachMode {}",
                opts.mode
            ),
        ));
    }
    Ok(fq)
}

/// fq on the Pod's interface (pod egress's queue). Returns why it could not
/// be had, when `edtPacing` leaves that to the caller.
fn probe_pod(
    target: &Target,
    opts: &Options,
    limits: &PodLimits,
    fq: &mut Fq,
) -> Result<Option<Error>> {
    let ifname = &target.pod_ifname;
    let ifindex = target.pod_ifindex;
    let sizing = limits.pod_egress.map(|p| sizing_for(&p));
    match netns::run_in_netns(&target.netns, move || {
        qdisc::install_fq_root_sized(ifindex, sizing)
    }) {
        Ok(RootOutcome::Installed) => {
            faults::kill_point("fq-installed");
            log::info!("EDT on: fq is the root qdisc of the Pod's {ifname} (installed by natra)");
            fq.available = true;
            fq.owned = true;
        }
        Ok(RootOutcome::AlreadyPresent) => {
            log::info!("EDT on: the Pod's {ifname} already has fq as its root qdisc");
            fq.available = true;
        }
        Err(e) if opts.edt == EdtPacing::On && opts.mode != ModeChoice::Auto => {
            return Err(Error::new(
                ErrorKind::Dataplane,
                format!(
                    "edtPacing on: fq cannot be installed on the Pod's {ifname}: {}",
                    e.msg
                ),
            )
            .with_details(e.details))
        }
        Err(e) => {
            log::info!("EDT off: fq unavailable: {e}");
            return Ok(Some(e));
        }
    }
    Ok(None)
}

/// The fq for a direction paced with `p` (EDT's debts: `with_edt`).
fn sizing_for(p: &crate::limits::BucketParams) -> qdisc::FqSizing {
    let e = p.with_edt();
    qdisc::FqSizing::for_queue(e.edt_queue_bytes(), e.edt_horizon_ns.max(e.mice_horizon_ns))
}

/// Removes the root fq of the host veth `host_ifindex` (host netns) if it
/// carries natra's handle.
pub fn remove_natra_host_fq(host_ifindex: u32) -> Result<()> {
    remove_root_fq_if_natras(host_ifindex)
}

/// DEL, whatever the record says: removes the root fq of the Pod's `ifname`
/// if it carries natra's handle. The handle, not the record, marks natra's
/// fq: natra killed between installing it and pinning its record leaves one
/// no record names.
pub fn remove_natra_fq_named(netns: &Path, ifname: &str) -> Result<()> {
    let ifname = ifname.to_owned();
    netns::run_in_netns(netns, move || {
        match nix::net::if_::if_nametoindex(ifname.as_str()) {
            Ok(index) => remove_root_fq_if_natras(index),
            Err(_) => Ok(()),
        }
    })
}

/// Removes the root fq of `pod_ifindex` in `netns` if natra installed it
/// (natra's handle); anything else is left alone.
pub fn remove_natra_fq(netns: &Path, pod_ifindex: u32) -> Result<()> {
    netns::run_in_netns(netns, move || remove_root_fq_if_natras(pod_ifindex))
}

/// In the Pod's netns: removes the root fq of `ifindex` if it is natra's.
fn remove_root_fq_if_natras(ifindex: u32) -> Result<()> {
    match qdisc::root_qdisc(ifindex)? {
        Some(root) if root.kind.as_deref() == Some("fq") && root.handle == NATRA_ROOT_HANDLE => {
            qdisc::remove_root_qdisc(ifindex, "fq")
        }
        other => {
            log::debug!("root qdisc of the Pod's ifindex {ifindex} is {other:?}: not natra's fq");
            Ok(())
        }
    }
}
