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
use super::skeleton::types::{
    natra_attach_flags, natra_attach_mode, natra_attachment, natra_pod_ref,
};
use crate::error::{Context, Error, ErrorKind, Result};

/// Pin name of the record map.
pub const ATTACHMENT_MAP: &str = "attachment";

/// natra created the clsact qdisc it uses.
pub const OWNS_CLSACT: u32 = natra_attach_flags::NATRA_ATTACH_OWNS_CLSACT.0;
/// natra installed fq as the Pod interface's root.
pub const OWNS_FQ: u32 = natra_attach_flags::NATRA_ATTACH_OWNS_FQ.0;
/// EDT pacing is on (fq on the Pod's interface).
pub const EDT: u32 = natra_attach_flags::NATRA_ATTACH_EDT.0;

/// The Pod an attachment serves, as the runtime names it in CNI_ARGS
/// (`struct natra_pod_ref`); empty strings where the runtime passed none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodRef {
    fn to_raw(&self) -> natra_pod_ref {
        let mut raw = natra_pod_ref::default();
        c_chars(&mut raw.namespace, &self.namespace);
        c_chars(&mut raw.name, &self.name);
        c_chars(&mut raw.uid, &self.uid);
        raw
    }

    fn from_raw(raw: &natra_pod_ref) -> PodRef {
        PodRef {
            namespace: from_c_chars(&raw.namespace),
            name: from_c_chars(&raw.name),
            uid: from_c_chars(&raw.uid),
        }
    }
}

/// `text` into a NUL-padded C char array, cut on a character boundary so
/// that at least one NUL stays (Kubernetes' names always fit: include/natra.h).
fn c_chars<C: Copy + From<i8>>(out: &mut [C], text: &str) {
    let mut end = text.len().min(out.len() - 1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    for (slot, &b) in out.iter_mut().zip(&text.as_bytes()[..end]) {
        *slot = C::from(b as i8);
    }
}

fn from_c_chars<C: Copy + Into<i16>>(raw: &[C]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .map(|&c| c.into() as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `struct natra_attachment` with a mode that is not NATRA_ATTACH_NONE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub mode: AttachMode,
    pub host_ifindex: u32,
    pub pod_ifindex: u32,
    pub flags: u32,
    pub pod: PodRef,
}

impl Record {
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    fn to_raw(&self) -> natra_attachment {
        natra_attachment {
            mode: self.mode.to_raw(),
            host_ifindex: self.host_ifindex,
            pod_ifindex: self.pod_ifindex,
            flags: natra_attach_flags(self.flags),
            pod: self.pod.to_raw(),
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
        pod: PodRef::from_raw(&value.pod),
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
    fn pod_refs_round_trip_and_are_cut_on_a_character_boundary() {
        let pod = PodRef {
            namespace: "kube-system".into(),
            name: "web-7d9f".into(),
            uid: "0a1b2c3d-0000-4000-8000-123456789abc".into(),
        };
        assert_eq!(PodRef::from_raw(&pod.to_raw()), pod);
        let long = PodRef {
            namespace: "é".repeat(40),
            ..PodRef::default()
        };
        let back = PodRef::from_raw(&long.to_raw());
        assert_eq!(back.namespace, "é".repeat(31));
        assert_eq!(
            PodRef::from_raw(&PodRef::default().to_raw()),
            PodRef::default()
        );
    }

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
