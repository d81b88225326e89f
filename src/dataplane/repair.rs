//! The node agent's reconciliation of one attachment: its record held
//! against what the kernel runs now.
//!
//! - A tcx link detached behind natra's back (`bpftool link detach`) while
//!   its device lives: a new link of the same program at the same hook, pinned
//!   in the old one's place.
//! - natra's clsact filter gone (in the Pod-side modes a Pod with NET_ADMIN
//!   can delete the clsact qdisc, docs/security.md): the pinned program
//!   attached again (and the clsact qdisc made, recorded as natra's).
//! - With EDT, the fq at the Pod's interface (pod egress) or at the host
//!   veth (pod ingress) removed or replaced: natra's fq made the root again
//!   (recorded as natra's, so DEL removes it).
//! - The Pod gone without a DEL (its netns and its device both gone): the
//!   attachment removed, as DEL would.
//!
//! A filter of someone else's in natra's slot is reported, never replaced.
//! The Pod's netns is found from the record (CNI_NETNS at ADD).
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use libbpf_rs::Program;

use super::clsact;
use super::direction::Direction;
use super::edt;
use super::maps;
use super::modes::on_side;
use super::pins::{self, AttachmentPins, CONFIG_MAP};
use super::record::{self, Record, EDT, EDT_INGRESS, OWNS_CLSACT, OWNS_FQ, OWNS_HOST_FQ};
use super::sys;
use super::teardown;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::{netlink, netns};

/// What reconciliation did to one attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// A new tcx link for a direction whose link had been detached.
    Relinked(Direction),
    /// natra's filter attached again for a direction.
    Refiltered(Direction),
    /// natra's fq made the Pod interface's root qdisc again (EDT).
    Refq,
    /// natra's fq made the host veth's root qdisc again (EDT of pod ingress).
    RefqHost,
    /// The Pod was gone (netns and device): the attachment removed.
    Removed,
}

impl std::fmt::Display for Repair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Repair::Relinked(d) => write!(f, "{}: tcx link attached again", d.program_name()),
            Repair::Refiltered(d) => {
                write!(f, "{}: natra's filter attached again", d.program_name())
            }
            Repair::Refq => f.write_str("fq made the Pod interface's root qdisc again (EDT)"),
            Repair::RefqHost => {
                f.write_str("fq made the host veth's root qdisc again (EDT of pod ingress)")
            }
            Repair::Removed => f.write_str("the Pod is gone (no DEL came): attachment removed"),
        }
    }
}

/// Whether the device the record names is there: the host veth (the same
/// ifindex, still the peer of the Pod's interface) where a program sits on
/// it, the Pod's interface inside its netns for the Pod-side modes.
fn device_alive(rec: &Record, netns: Option<&Path>) -> bool {
    if rec.mode.pod_side(Direction::PodIngress) && rec.mode.pod_side(Direction::PodEgress) {
        let index = rec.pod_ifindex;
        return netns.is_some_and(|ns| {
            netns::run_in_netns(ns, move || netlink::link_by_index(index)).is_ok()
        });
    }
    netlink::link_by_index(rec.host_ifindex)
        .is_ok_and(|l| l.kind.as_deref() == Some("veth") && l.peer_index == Some(rec.pod_ifindex))
}

/// Reconciles the attachment at `pins`; returns what it repaired.
pub fn reconcile(pins: &AttachmentPins) -> Result<Vec<Repair>> {
    let Some(rec) = record::read(pins)? else {
        // No record: a half-made ADD, DEL's and GC's to clean up.
        return Ok(Vec::new());
    };
    let netns = (!rec.netns.is_empty()).then(|| PathBuf::from(&rec.netns));
    let netns_alive = netns
        .as_deref()
        .is_some_and(|p| netns::open_netns(p).is_ok());
    let netns = netns.filter(|_| netns_alive);
    if !device_alive(&rec, netns.as_deref()) {
        if netns_alive {
            // The Pod is being torn down: its DEL is on the way.
            return Ok(Vec::new());
        }
        teardown::remove(pins, None)?;
        return Ok(vec![Repair::Removed]);
    }
    let ns = netns.unwrap_or_default();
    let mut done = Vec::new();
    for dir in Direction::ALL {
        let name = dir.program_name();
        let ifindex = rec.mode.ifindex(dir, rec.host_ifindex, rec.pod_ifindex);
        if rec.mode.is_tcx() {
            let pin = pins.link(name);
            if !pin.exists() {
                continue; // not limited
            }
            let link = sys::pinned_link(&pin)?;
            let attach_type = rec.mode.tcx_attach_type(dir);
            let in_place = link
                .tcx
                .is_some_and(|t| t.ifindex == ifindex && t.attach_type == attach_type);
            if in_place {
                continue;
            }
            let prog = Program::fd_from_id(link.prog_id).context(
                ErrorKind::Dataplane,
                format!(
                    "cannot open {name} (prog {}) to link it again",
                    link.prog_id
                ),
            )?;
            let fd = prog.as_fd();
            let new = on_side(rec.mode, dir, &ns, move || {
                sys::tcx_link(fd, name, ifindex, attach_type)
            })?;
            pins::remove_if_present(&pin)?;
            sys::pin_fd(new.as_fd(), &pin)?;
            done.push(Repair::Relinked(dir));
        } else {
            let pin = pins.prog(name);
            let Some(ours) = sys::pinned_prog_id(&pin)? else {
                continue; // not limited
            };
            let hook = rec.mode.clsact_hook(dir);
            match on_side(rec.mode, dir, &ns, move || clsact::query(ifindex, hook))? {
                Some(id) if id == ours => continue,
                Some(other) => {
                    return Err(Error::new(
                        ErrorKind::Dataplane,
                        format!(
                            "prog {other}, not natra's {name} (prog {ours}), sits in natra's \
                             slot at {} of ifindex {ifindex}: leaving it",
                            hook.name()
                        ),
                    ))
                }
                None => {}
            }
            let prog = Program::fd_from_pinned_path(&pin).context(
                ErrorKind::Dataplane,
                format!("cannot open {}", pin.display()),
            )?;
            let fd = prog.as_fd();
            let attached = on_side(rec.mode, dir, &ns, move || {
                clsact::attach(fd, ifindex, hook)
            })?;
            if attached.created_clsact && !rec.has(OWNS_CLSACT) {
                add_flag(pins, &rec, OWNS_CLSACT)?;
            }
            done.push(Repair::Refiltered(dir));
        }
    }
    // EDT paces only through fq: at the Pod's interface (pod egress), at the
    // host veth (pod ingress). Put natra's back, sized for the direction's
    // running config as ADD sized it, where it was removed or replaced (a
    // Pod with NET_ADMIN can do that to its own interface).
    if !rec.has(EDT) && !rec.has(EDT_INGRESS) {
        return Ok(done);
    }
    let config = pins.open_map(CONFIG_MAP)?;
    for (dir, edt, owns, repair) in [
        (Direction::PodEgress, EDT, OWNS_FQ, Repair::Refq),
        (
            Direction::PodIngress,
            EDT_INGRESS,
            OWNS_HOST_FQ,
            Repair::RefqHost,
        ),
    ] {
        if !rec.has(edt) || (dir == Direction::PodEgress && ns.as_os_str().is_empty()) {
            continue;
        }
        let c = maps::read_config(config.as_fd(), rec.place.key(dir))?;
        if edt::restore_fq(&rec, dir, &c)? {
            if !rec.has(owns) {
                add_flag(pins, &rec, owns)?;
            }
            done.push(repair);
        }
    }
    Ok(done)
}

/// Sets `flag` in the record of `pins` (as it is now; `rec` if it reads as
/// none): a qdisc the repair made is natra's, so DEL removes it.
fn add_flag(pins: &AttachmentPins, rec: &Record, flag: u32) -> Result<()> {
    let map = record::open(pins)?
        .ok_or_else(|| Error::new(ErrorKind::Dataplane, "the attachment record vanished"))?;
    let mut updated = record::read(pins)?.unwrap_or_else(|| rec.clone());
    updated.flags |= flag;
    record::write(map.as_fd(), &updated)
}

/// [`reconcile`] for every attachment under `root`: each one's
/// `<network>/<id>:<ifname>` (or legacy `<id>:<ifname>`) name and outcome.
pub fn reconcile_all(root: &Path) -> Result<Vec<(String, Result<Vec<Repair>>)>> {
    let mut out = Vec::new();
    for a in super::view::list_attachments(root)? {
        let name = match &a.network {
            Some(net) => format!("{net}/{}:{}", a.container_id, a.ifname),
            None => format!("{}:{}", a.container_id, a.ifname),
        };
        let result = reconcile(&AttachmentPins {
            dir: a.pin_dir.clone(),
        });
        if let (Ok(done), Some(net)) = (&result, &a.network) {
            if done.contains(&Repair::Removed) {
                pins::prune_network_dir(root, net);
            }
        }
        out.push((name, result));
    }
    Ok(out)
}
