//! The attachment record: what ADD attached where, kept in the pinned map
//! `attachment` (map `natra_attach`, one `struct natra_attachment` at key 0,
//! include/natra.h) so that DEL, CHECK and GC undo or verify exactly that,
//! whatever the attach mode.
use std::ffi::c_void;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use libbpf_rs::MapHandle;

use super::modes::AttachMode;
use super::pins::AttachmentPins;
use super::skeleton::types::{natra_attach_flags, natra_attach_mode, natra_attachment};
use crate::error::{Context, Error, ErrorKind, Result};

/// Pin name of the record map.
pub const ATTACHMENT_MAP: &str = "attachment";

/// natra created the clsact qdisc it uses.
pub const OWNS_CLSACT: u32 = natra_attach_flags::NATRA_ATTACH_OWNS_CLSACT.0;
/// natra installed fq as the Pod interface's root.
pub const OWNS_FQ: u32 = natra_attach_flags::NATRA_ATTACH_OWNS_FQ.0;
/// EDT pacing is on (fq on the Pod's interface).
pub const EDT: u32 = natra_attach_flags::NATRA_ATTACH_EDT.0;

/// `struct natra_attachment` with a mode that is not NATRA_ATTACH_NONE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub mode: AttachMode,
    pub host_ifindex: u32,
    pub pod_ifindex: u32,
    pub flags: u32,
}

impl Record {
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    fn to_raw(self) -> natra_attachment {
        natra_attachment {
            mode: self.mode.to_raw(),
            host_ifindex: self.host_ifindex,
            pod_ifindex: self.pod_ifindex,
            flags: natra_attach_flags(self.flags),
        }
    }
}

/// Writes `record` (None: NATRA_ATTACH_NONE, "nothing attached") at key 0.
pub fn write(map: BorrowedFd<'_>, record: Option<&Record>) -> Result<()> {
    let key = 0u32;
    let value = record.map(|r| r.to_raw()).unwrap_or_default();
    // SAFETY: key and value are live values of the map's key (u32) and value
    // (struct natra_attachment) types; the kernel copies them.
    let rc = unsafe {
        libbpf_sys::bpf_map_update_elem(
            map.as_raw_fd(),
            (&key as *const u32).cast::<c_void>(),
            (&value as *const natra_attachment).cast::<c_void>(),
            libbpf_sys::BPF_ANY as u64,
        )
    };
    if rc != 0 {
        return Err(
            Error::new(ErrorKind::Dataplane, "cannot write the attachment record")
                .with_details(io::Error::from_raw_os_error(-rc)),
        );
    }
    Ok(())
}

/// The record of `pins`; None when its pin is absent (no ADD got that far,
/// or the state predates the record) or it says NATRA_ATTACH_NONE.
pub fn read(pins: &AttachmentPins) -> Result<Option<Record>> {
    let path = pins.map(ATTACHMENT_MAP);
    if !path.exists() {
        return Ok(None);
    }
    let map = MapHandle::from_pinned_path(&path).context(
        ErrorKind::Dataplane,
        format!("cannot open {}", path.display()),
    )?;
    let key = 0u32;
    let mut value = natra_attachment::default();
    // SAFETY: value is a writable natra_attachment, the map's value type; the
    // kernel writes exactly value_size bytes into it.
    let rc = unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            map.as_fd().as_raw_fd(),
            (&key as *const u32).cast::<c_void>(),
            (&mut value as *mut natra_attachment).cast::<c_void>(),
        )
    };
    if rc != 0 {
        return Err(Error::new(
            ErrorKind::Dataplane,
            format!("cannot read the attachment record {}", path.display()),
        )
        .with_details(io::Error::from_raw_os_error(-rc)));
    }
    Ok(AttachMode::from_raw(value.mode).map(|mode| Record {
        mode,
        host_ifindex: value.host_ifindex,
        pod_ifindex: value.pod_ifindex,
        flags: value.flags.0,
    }))
}

impl AttachMode {
    pub fn to_raw(self) -> natra_attach_mode {
        match self {
            AttachMode::TcxHostside => natra_attach_mode::NATRA_ATTACH_TCX_HOSTSIDE,
            AttachMode::TcxPodside => natra_attach_mode::NATRA_ATTACH_TCX_PODSIDE,
            AttachMode::ClsactHostside => natra_attach_mode::NATRA_ATTACH_CLSACT_HOSTSIDE,
            AttachMode::ClsactPodside => natra_attach_mode::NATRA_ATTACH_CLSACT_PODSIDE,
        }
    }

    pub fn from_raw(raw: natra_attach_mode) -> Option<AttachMode> {
        AttachMode::ALL.into_iter().find(|m| m.to_raw() == raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_none_is_no_mode() {
        for mode in AttachMode::ALL {
            assert_eq!(AttachMode::from_raw(mode.to_raw()), Some(mode));
        }
        assert_eq!(
            AttachMode::from_raw(natra_attach_mode::NATRA_ATTACH_NONE),
            None
        );
    }
}
