//! Legacy attachment for kernels without tcx (< 6.6): a cls_bpf filter in
//! direct-action mode on the clsact qdisc, through libbpf's TC API.
//!
//! natra's filter is found by a fixed identity, so it can be queried,
//! replaced and removed without touching anyone else's filters on the same
//! hook:
//!
//! * handle [`HANDLE`] = 0x4e54 ("NT" in ASCII),
//! * priority [`PRIORITY`] = 0x4e54 as well, protocol all.
//!
//! The priority is below the kernel's automatic ones (0xc000 counting down),
//! so natra runs before filters added without a priority; natra's programs
//! return TC_ACT_UNSPEC on pass, which hands the packet on to the next
//! filter, so running early never hides traffic from later filters, while
//! running late would let a filter that returns TC_ACT_OK bypass the limit.
//!
//! clsact ownership: [`attach`] reports whether it created the clsact qdisc.
//! The caller must remember that (across ADD and DEL) and pass it to
//! [`detach`], which removes the qdisc only if natra created it *and* no
//! filter of anyone is left on either of its hooks — deleting a clsact takes
//! every filter on it along. A clsact natra did not create is never removed;
//! an empty one left behind costs nothing.
//!
//! Everything acts in the calling thread's netns.
use std::os::fd::BorrowedFd;

use libbpf_rs::{TcAttachPoint, TcHook, TcHookBuilder, TC_EGRESS, TC_INGRESS};
use nix::errno::Errno;

use super::direction::Direction;
use super::sys;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::qdisc::{self, CLSACT_EGRESS_PARENT, CLSACT_INGRESS_PARENT};

/// Handle of natra's cls_bpf filter: "NT".
pub const HANDLE: u32 = 0x4e54;
/// Priority ("pref") of natra's cls_bpf filter.
pub const PRIORITY: u32 = 0x4e54;

/// A hook of the clsact qdisc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Ingress,
    Egress,
}

impl Hook {
    pub const BOTH: [Hook; 2] = [Hook::Ingress, Hook::Egress];

    /// The hook on the host-side veth that sees `dir` (as with tcx).
    pub fn for_host_veth(dir: Direction) -> Hook {
        match dir {
            Direction::PodIngress => Hook::Egress,
            Direction::PodEgress => Hook::Ingress,
        }
    }

    /// The hook on the Pod-side veth (eth0 in the Pod's netns) that sees `dir`.
    pub fn for_pod_veth(dir: Direction) -> Hook {
        match dir {
            Direction::PodIngress => Hook::Ingress,
            Direction::PodEgress => Hook::Egress,
        }
    }

    /// The clsact class whose filters run at this hook.
    pub fn parent(self) -> u32 {
        match self {
            Hook::Ingress => CLSACT_INGRESS_PARENT,
            Hook::Egress => CLSACT_EGRESS_PARENT,
        }
    }

    fn attach_point(self) -> TcAttachPoint {
        match self {
            Hook::Ingress => TC_INGRESS,
            Hook::Egress => TC_EGRESS,
        }
    }

    /// `ingress` / `egress`, as tc names the hook.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Ingress => "ingress",
            Hook::Egress => "egress",
        }
    }
}

/// What [`attach`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attached {
    /// The program the kernel now runs in natra's filter.
    pub prog_id: u32,
    /// This call created the clsact qdisc (remember it for [`detach`]).
    pub created_clsact: bool,
}

/// What [`detach`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detached {
    pub filter_removed: bool,
    pub clsact_removed: bool,
}

/// natra's filter at `hook` of `ifindex`, running `prog`.
fn natra_hook(prog: BorrowedFd<'_>, ifindex: u32, hook: Hook) -> TcHook {
    TcHookBuilder::new(prog)
        .ifindex(ifindex as i32)
        .replace(true)
        .handle(HANDLE)
        .priority(PRIORITY)
        .hook(hook.attach_point())
}

/// Attaches the loaded SCHED_CLS program `prog` as natra's direct-action
/// filter at `hook` of `ifindex`, creating the clsact qdisc if there is
/// none. Attaching again replaces natra's filter in place (same handle and
/// priority), it never adds a second one.
pub fn attach(prog: BorrowedFd<'_>, ifindex: u32, hook: Hook) -> Result<Attached> {
    attach_to(prog, ifindex, hook, qdisc::clsact_slot_kind(ifindex)?)
}

/// [`attach`] where the caller just read the kind of qdisc at `ffff:`
/// (`slot`, as `qdisc::clsact_slot_kind` gives it).
pub fn attach_to(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    hook: Hook,
    slot: Option<String>,
) -> Result<Attached> {
    let created_clsact = match slot {
        Some(kind) if kind == "clsact" => false,
        Some(kind) => {
            return Err(Error::new(
                ErrorKind::Dataplane,
                format!("ifindex {ifindex} has an {kind} qdisc where clsact is needed"),
            ))
        }
        None => {
            natra_hook(prog, ifindex, hook).create().context(
                ErrorKind::Dataplane,
                format!("cannot create the clsact qdisc on ifindex {ifindex}"),
            )?;
            super::faults::kill_point("clsact-created");
            true
        }
    };
    let attached = natra_hook(prog, ifindex, hook)
        .attach()
        .context(
            ErrorKind::Dataplane,
            format!(
                "cls_bpf attach at {} of ifindex {ifindex} failed",
                hook.name()
            ),
        )
        .and_then(|_| {
            // The clsact qdisc is there (natra just used it): one query of
            // natra's handle and priority says whether the filter stayed.
            sys::tc_query(ifindex, hook.attach_point(), HANDLE, PRIORITY)
                .ok()
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Dataplane,
                        format!(
                        "natra's filter is missing at {} of ifindex {ifindex} right after attach",
                        hook.name()
                    ),
                    )
                })
        });
    match attached {
        Ok(prog_id) => Ok(Attached {
            prog_id,
            created_clsact,
        }),
        Err(e) => {
            if created_clsact {
                if let Err(e) = qdisc::remove_clsact(ifindex) {
                    log::warn!("rollback: {e}");
                }
            }
            Err(e)
        }
    }
}

/// The id of the program in natra's filter at `hook` of `ifindex`, None if
/// natra has no filter there.
pub fn query(ifindex: u32, hook: Hook) -> Result<Option<u32>> {
    if !natra_filter_present(ifindex, hook)? {
        return Ok(None);
    }
    match sys::tc_query(ifindex, hook.attach_point(), HANDLE, PRIORITY) {
        Ok(prog_id) => Ok(Some(prog_id)),
        Err(Errno::ENOENT) => Ok(None),
        Err(errno) => Err(Error::new(
            ErrorKind::Dataplane,
            format!(
                "cannot query natra's filter at {} of ifindex {ifindex}",
                hook.name()
            ),
        )
        .with_details(errno)),
    }
}

/// Removes natra's filter at `hook` of `ifindex` (absent is Ok), then the
/// clsact qdisc if `natra_created_clsact` and no filter is left on either
/// hook. Call it for each hook natra used; the last one takes the qdisc.
pub fn detach(ifindex: u32, hook: Hook, natra_created_clsact: bool) -> Result<Detached> {
    let mut done = Detached {
        filter_removed: false,
        clsact_removed: false,
    };
    if !qdisc::has_clsact(ifindex)? {
        return Ok(done);
    }
    if natra_filter_present(ifindex, hook)? {
        match sys::tc_detach(ifindex, hook.attach_point(), HANDLE, PRIORITY) {
            Ok(()) => done.filter_removed = true,
            // Gone since the dump: what the caller wanted.
            Err(Errno::ENOENT) => {}
            Err(errno) => {
                return Err(Error::new(
                    ErrorKind::Dataplane,
                    format!(
                        "cannot detach natra's filter at {} of ifindex {ifindex}",
                        hook.name()
                    ),
                )
                .with_details(errno))
            }
        }
    }
    if natra_created_clsact && clsact_is_empty(ifindex)? {
        qdisc::remove_clsact(ifindex)?;
        done.clsact_removed = true;
    }
    Ok(done)
}

/// Whether natra's filter (kind bpf at natra's handle and priority) is at
/// `hook` of `ifindex`, read from a filter dump. libbpf cannot tell this
/// apart from a failure: a hook without any filter has no chain 0, and the
/// kernel answers a query there with EINVAL ("Cannot find specified filter
/// chain"), not ENOENT.
fn natra_filter_present(ifindex: u32, hook: Hook) -> Result<bool> {
    if !qdisc::has_clsact(ifindex)? {
        return Ok(false);
    }
    Ok(qdisc::list_filters(ifindex, hook.parent())?
        .iter()
        .any(|f| {
            f.handle == HANDLE && f.info >> 16 == PRIORITY && f.kind.as_deref() == Some("bpf")
        }))
}

/// No filter of anyone on either hook of the clsact qdisc.
fn clsact_is_empty(ifindex: u32) -> Result<bool> {
    for hook in Hook::BOTH {
        if !qdisc::list_filters(ifindex, hook.parent())?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}
