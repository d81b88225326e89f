//! Reading natra's pinned tcx links back, and detaching them. (Attaching is
//! in modes.rs, which creates links inside the right netns.)
use std::path::Path;

use libbpf_rs::query::LinkTypeInfo;
use libbpf_rs::Link;

use crate::error::{Context, Error, ErrorKind, Result};

/// Where a pinned tcx link is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcxTarget {
    pub ifindex: u32,
    /// A `libbpf_sys::BPF_TCX_*` value.
    pub attach_type: u32,
}

pub fn pinned_tcx_target(pin: &Path) -> Result<TcxTarget> {
    let link = Link::open(pin).context(
        ErrorKind::CheckMismatch,
        format!("link pin {} is missing", pin.display()),
    )?;
    let info = link.info().context(
        ErrorKind::Dataplane,
        format!("cannot read link info of {}", pin.display()),
    )?;
    match info.info {
        LinkTypeInfo::Tcx(tcx) => Ok(TcxTarget {
            ifindex: tcx.ifindex,
            attach_type: tcx.attach_type as u32,
        }),
        other => Err(Error::new(
            ErrorKind::CheckMismatch,
            format!("link {} is not a tcx link", pin.display()),
        )
        .with_details(format!("{other:?}"))),
    }
}

/// Detaches a pinned link (even if another process still holds an fd to it)
/// and removes its pin. A missing pin is fine; a defunct link (its device
/// gone) only needs its pin removed.
pub fn detach_pinned(pin: &Path) -> Result<()> {
    if !pin.exists() {
        return Ok(());
    }
    match Link::open(pin) {
        Ok(link) => {
            if let Err(e) = link.detach() {
                log::debug!("detach of {} reported {e}; removing the pin", pin.display());
            }
        }
        Err(e) => log::debug!("no link at {}: {e}", pin.display()),
    }
    super::pins::remove_if_present(pin)
}
