//! The EDT probe: EDT pacing needs fq as the root qdisc of the Pod's
//! interface, where natra's Pod-side egress program stamps departure times
//! that fq then honours. `edtPacing` decides what happens when fq cannot be
//! had: `auto` falls back to policing (one `EDT off: …` log line says why),
//! `on` fails the ADD, `off` never touches a qdisc.
//!
//! fq is installed with natra's handle (`4e54:`, see crate::qdisc), which
//! marks it as natra's: DEL removes only such an fq, never one the operator
//! or the image configured.
use std::path::{Path, PathBuf};

use super::direction::Direction;
use super::faults;
pub use super::modes::Fq;
use super::modes::{EdtPacing, ModeChoice, Options, Target};
use super::record::Record;
use super::skeleton::types::natra_config;
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
            let ifindex = target.host_ifindex;
            let got = qdisc::install_fq_root_sized(ifindex, Some(sizing)).and_then(|outcome| {
                usable(outcome, horizon_of(outcome, ifindex)?, &p, "the host veth")
            });
            match got {
                Ok(outcome) => {
                    fq.host_available = true;
                    fq.host_owned = outcome == RootOutcome::Installed;
                    log::info!(
                        "EDT on for pod ingress: fq is the root qdisc of the host veth ({}, {sizing:?})",
                        if fq.host_owned { "natra's" } else { "already there" }
                    );
                }
                Err(e) => {
                    log::info!("EDT off for pod ingress: fq unusable on the host veth: {e}")
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
    let got = netns::run_in_netns(&target.netns, move || {
        let outcome = qdisc::install_fq_root_sized(ifindex, sizing)?;
        Ok((outcome, horizon_of(outcome, ifindex)?))
    });
    let got = match (got, limits.pod_egress) {
        (Ok((outcome, horizon)), Some(p)) => {
            usable(outcome, horizon, &p, &format!("the Pod's {ifname}"))
        }
        (got, _) => got.map(|(outcome, _)| outcome),
    };
    match got {
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

/// An fq natra found in place (`outcome`) serves a direction paced with `p`
/// only if its horizon (`horizon_ns`, as the kernel reports it) takes every
/// stamp natra may give: fq drops a packet stamped beyond its horizon (or
/// cuts the stamp to it, with horizon_drop off), after natra charged it.
/// natra's own fq is sized for it (FqSizing); an fq that is someone else's
/// is left as it is, and EDT does not use one with a shorter horizon.
fn usable(
    outcome: RootOutcome,
    horizon_ns: Option<u64>,
    p: &crate::limits::BucketParams,
    on: &str,
) -> Result<RootOutcome> {
    let longest = p.longest_edt_delay_ns();
    match horizon_ns {
        Some(h) if outcome == RootOutcome::AlreadyPresent && h < longest => Err(Error::new(
            ErrorKind::Dataplane,
            format!(
                "the fq already on {on} has a horizon of {}, shorter than the {} natra may \
                 delay a packet by: it would drop (or send early) what natra paced",
                crate::units::millis(h),
                crate::units::millis(longest)
            ),
        )),
        _ => Ok(outcome),
    }
}

/// The horizon of the fq found in place at `ifindex` (read only then: the
/// root qdisc is found by a dump of the netns's qdiscs, and natra's own fq
/// is sized by natra).
fn horizon_of(outcome: RootOutcome, ifindex: u32) -> Result<Option<u64>> {
    match outcome {
        RootOutcome::AlreadyPresent => qdisc::root_fq_horizon_ns(ifindex),
        RootOutcome::Installed => Ok(None),
    }
}

/// The fq for a direction paced with `p` (EDT's debts: `with_edt`).
fn sizing_for(p: &crate::limits::BucketParams) -> qdisc::FqSizing {
    qdisc::FqSizing::for_queue(p.with_edt().edt_queue_bytes(), p.longest_edt_delay_ns())
}

/// The fq for a direction whose program runs with `c` (written from
/// `with_edt`'s params, at ADD or by a live change): the sizing ADD gives
/// it (a unit test holds the two to each other).
fn sizing_for_config(c: &natra_config) -> qdisc::FqSizing {
    qdisc::FqSizing::for_queue(
        c.burst_bytes + c.edt_debt_bytes + c.mice_debt_bytes + c.handshake_extra_bytes,
        c.edt_horizon_ns
            .max(c.mice_horizon_ns)
            .max(c.handshake_horizon_ns),
    )
}

/// Where a direction's fq is: the Pod's interface in the Pod's netns (pod
/// egress) or the host veth in the host netns (pod ingress).
fn fq_place(rec: &Record, dir: Direction) -> (Option<PathBuf>, u32) {
    match dir {
        Direction::PodEgress => (Some(PathBuf::from(&rec.netns)), rec.pod_ifindex),
        Direction::PodIngress => (None, rec.host_ifindex),
    }
}

fn in_place<T: Send>(netns: &Option<PathBuf>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    match netns {
        Some(ns) => netns::run_in_netns(ns, f),
        None => f(),
    }
}

/// The agent's repair: makes natra's fq, sized for the running config `c`
/// of `dir`, the root where that direction's EDT needs it, unless fq is the
/// root there (natra's or one the operator put in its place). Returns
/// whether it put one there.
pub fn restore_fq(rec: &Record, dir: Direction, c: &natra_config) -> Result<bool> {
    let (netns, ifindex) = fq_place(rec, dir);
    let sizing = sizing_for_config(c);
    in_place(&netns, move || {
        if qdisc::root_qdisc_kind(ifindex)?.as_deref() == Some("fq") {
            return Ok(false);
        }
        qdisc::replace_root_with_fq(ifindex, sizing)?;
        log::info!("natra's fq is the root qdisc of ifindex {ifindex} again ({sizing:?})");
        Ok(true)
    })
}

/// A live change: natra's own fq of `dir` (its handle), if it is there,
/// changed in place to the sizing of the new config `c`, its queue kept; an
/// fq of someone else's is left as it is.
pub fn resize_fq(rec: &Record, dir: Direction, c: &natra_config) -> Result<()> {
    let (netns, ifindex) = fq_place(rec, dir);
    let sizing = sizing_for_config(c);
    in_place(&netns, move || match qdisc::root_qdisc(ifindex)? {
        Some(root) if root.kind.as_deref() == Some("fq") && root.handle == NATRA_ROOT_HANDLE => {
            qdisc::replace_root_with_fq(ifindex, sizing)
        }
        _ => Ok(()),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{pod_limits, RequestedLimit, Tuning};

    #[test]
    fn an_fq_already_there_serves_only_with_a_horizon_natra_fits_in() {
        let req = RequestedLimit {
            rate_bits: 20_000_000,
            burst_bits: 0,
        };
        let p = pod_limits(req, req, &Tuning::default())
            .unwrap()
            .pod_ingress
            .unwrap();
        let longest = p.longest_edt_delay_ns();
        assert_eq!(longest, 500_000_000, "the handshake horizon");
        let theirs = RootOutcome::AlreadyPresent;
        let e = usable(theirs, Some(50_000_000), &p, "the host veth").unwrap_err();
        assert!(
            e.msg
                .contains("the host veth has a horizon of 50 ms, shorter than the 500 ms"),
            "{}",
            e.msg
        );
        assert!(usable(theirs, Some(longest - 1), &p, "x").is_err());
        assert_eq!(usable(theirs, Some(longest), &p, "x").unwrap(), theirs);
        assert_eq!(
            usable(theirs, Some(10_000_000_000), &p, "x").unwrap(),
            theirs
        );
        // a kernel whose fq has no horizon (before 5.7) takes any stamp
        assert_eq!(usable(theirs, None, &p, "x").unwrap(), theirs);
        // natra's own fq is sized by natra (FqSizing), never refused here
        let ours = RootOutcome::Installed;
        assert_eq!(usable(ours, Some(1), &p, "x").unwrap(), ours);
    }

    #[test]
    fn a_repaired_or_resized_fq_is_sized_as_add_sized_it() {
        // the agent sizes from the running config, ADD from the params
        let place = crate::dataplane::placement::Placement::default();
        for bits in [1_000, 1_000_000, 20_000_000, 10_000_000_000] {
            let req = RequestedLimit {
                rate_bits: bits,
                burst_bits: 0,
            };
            let limits = pod_limits(req, req, &Tuning::default()).unwrap();
            for dir in Direction::ALL {
                let p = dir.limit(&limits).unwrap();
                let c = crate::dataplane::maps::config_for(dir, &p.with_edt(), &place);
                let s = sizing_for_config(&c);
                assert_eq!(s, sizing_for(&p), "{bits} bit/s, {dir:?}");
                assert!(!s.pacing && s.flow_limit >= 100, "{s:?}");
            }
        }
    }
}
