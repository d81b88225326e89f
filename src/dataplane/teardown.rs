//! DEL, GC and the rollback of a failed ADD: undo what the attachment
//! record says was made, in whichever attach mode, and unpin.
use std::path::Path;

use super::clsact::{self, Hook};
use super::direction::Direction;
use super::pins::{self, AttachmentPins};
use super::record::{self, Record, OWNS_CLSACT, OWNS_FQ, OWNS_HOST_FQ};
use super::{edt, shared, sys};
use crate::error::Result;
use crate::netns;

/// DEL and GC: detaches and unpins everything of one Pod interface; absent
/// is fine. Undoes what the record says (fq included), then detaches any
/// remaining link pins and removes the pin directory. `netns` is the Pod's
/// netns if the runtime still has one; without it, Pod-side filters and
/// qdiscs are left to vanish with it.
pub fn remove(pins: &AttachmentPins, netns: Option<&Path>) -> Result<()> {
    undo(pins, netns, true)?;
    for dir in Direction::ALL {
        sys::detach_pinned(&pins.link(dir.program_name()))?;
    }
    shared::release(&pins::pin_root(), pins)?;
    pins.remove_all()
}

/// Undoes what the record of `pins` says; fq too with `include_fq`.
pub(super) fn undo(pins: &AttachmentPins, netns: Option<&Path>, include_fq: bool) -> Result<()> {
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

/// Undoes what `rec` says: tcx links, natra's clsact filters (only while they
/// run natra's pinned programs) and the qdiscs natra made.
pub(super) fn undo_record(
    pins: &AttachmentPins,
    rec: &Record,
    netns: Option<&Path>,
    include_fq: bool,
) -> Result<()> {
    let netns = netns.filter(|p| !p.as_os_str().is_empty() && p.exists());
    if rec.mode.is_tcx() {
        // BPF_LINK_DETACH works from anywhere, no netns needed.
        for dir in Direction::ALL {
            sys::detach_pinned(&pins.link(dir.program_name()))?;
        }
    } else {
        // The clsact modes put both directions on one device (no split).
        let ifindex = rec
            .mode
            .ifindex(Direction::PodIngress, rec.host_ifindex, rec.pod_ifindex);
        let mut ours = Vec::new();
        for dir in Direction::ALL {
            match sys::pinned_prog_id(&pins.prog(dir.program_name())) {
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
        match (rec.mode.touches_pod(), netns) {
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
            pins::remove_if_present(&pins.prog(dir.program_name()))?;
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
    // The host veth's fq (pod ingress paced, host-side modes): natra's handle
    // only. Gone with the veth when the runtime removed the pair first.
    if include_fq && rec.has(OWNS_HOST_FQ) {
        if let Err(e) = edt::remove_natra_host_fq(rec.host_ifindex) {
            log::warn!("natra's fq left on the host veth: {e}");
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
