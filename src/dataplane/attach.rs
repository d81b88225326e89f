//! tcx attachment of natra's programs, and reading a pinned link back.
use std::io;
use std::path::Path;
use std::ptr::NonNull;

use libbpf_rs::query::LinkTypeInfo;
use libbpf_rs::{AsRawLibbpf, Link, Program};

use crate::error::{Context, Error, ErrorKind, Result};

/// Attaches `prog` with tcx to `ifindex` at the hook its attach type names.
/// The link must be pinned by the caller, or it detaches when dropped.
pub fn attach_tcx(prog: &Program<'_>, ifindex: u32) -> Result<Link> {
    let opts = libbpf_sys::bpf_tcx_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_tcx_opts>() as libbpf_sys::size_t,
        ..Default::default()
    };
    // SAFETY: the program pointer comes from a loaded libbpf object that
    // outlives this call; opts is a fully initialised bpf_tcx_opts with its
    // size set, as libbpf's OPTS convention requires.
    let raw = unsafe {
        libbpf_sys::bpf_program__attach_tcx(prog.as_libbpf_object().as_ptr(), ifindex as i32, &opts)
    };
    let raw = NonNull::new(raw).ok_or_else(|| {
        Error::new(
            ErrorKind::Dataplane,
            format!(
                "tcx attach of {} to ifindex {ifindex} failed",
                prog.name().to_string_lossy()
            ),
        )
        .with_details(io::Error::last_os_error())
    })?;
    // SAFETY: raw is a bpf_link that libbpf just created and nobody else owns.
    Ok(unsafe { Link::from_ptr(raw) })
}

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
