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

use super::faults;
pub use super::modes::Fq;
use super::modes::{EdtPacing, ModeChoice, Options, Target};
use crate::error::{Error, ErrorKind, Result};
use crate::netns;
use crate::qdisc::{self, RootOutcome, NATRA_ROOT_HANDLE};

const NO_FQ: Fq = Fq {
    available: false,
    owned: false,
};

/// Makes sure fq is the root of the Pod's interface when EDT may be used.
pub fn probe(target: &Target, opts: &Options) -> Result<Fq> {
    let ifname = &target.pod_ifname;
    if opts.edt == EdtPacing::Off {
        log::info!("EDT off: edtPacing is off");
        return Ok(NO_FQ);
    }
    if let ModeChoice::Explicit(mode) = opts.mode {
        if !mode.is_pod_side() {
            if opts.edt == EdtPacing::On {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "edtPacing on needs a Pod-side attachMode: fq on the Pod's {ifname} \
                         cannot pace what {mode} polices on the host veth"
                    ),
                ));
            }
            log::info!(
                "EDT off: attachMode {mode} attaches on the host side, where fq cannot pace"
            );
            return Ok(NO_FQ);
        }
    }
    let ifindex = target.pod_ifindex;
    match netns::run_in_netns(&target.netns, move || qdisc::install_fq_root(ifindex)) {
        Ok(RootOutcome::Installed) => {
            faults::kill_point("fq-installed");
            log::info!("EDT on: fq is the root qdisc of the Pod's {ifname} (installed by natra)");
            Ok(Fq {
                available: true,
                owned: true,
            })
        }
        Ok(RootOutcome::AlreadyPresent) => {
            log::info!("EDT on: the Pod's {ifname} already has fq as its root qdisc");
            Ok(Fq {
                available: true,
                owned: false,
            })
        }
        Err(e) if opts.edt == EdtPacing::On => Err(Error::new(
            ErrorKind::Dataplane,
            format!(
                "edtPacing on: fq cannot be installed on the Pod's {ifname}: {}",
                e.msg
            ),
        )
        .with_details(e.details)),
        Err(e) => {
            log::info!("EDT off: fq unavailable: {e}");
            Ok(NO_FQ)
        }
    }
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
