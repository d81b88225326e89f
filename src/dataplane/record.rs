//! The attachment record: what ADD attached where, kept in the pinned map
//! `attachment` (map `natra_attach`, one `struct natra_attachment` at key 0,
//! include/natra.h) so that DEL, CHECK and GC undo or verify exactly that,
//! whatever the attach mode.
use std::os::fd::{AsFd, BorrowedFd};

use libbpf_rs::MapHandle;

use super::modes::AttachMode;
pub use super::modes::PodRef;
use super::pins::{AttachmentPins, ATTACHMENT_MAP};
use super::placement::Placement;
use super::skeleton::types::{
    natra_attach_flags, natra_attach_mode, natra_attachment, natra_pod_ref,
};
use super::sys;
use crate::error::{Context, Error, ErrorKind, Result};

/// natra created the clsact qdisc it uses.
pub const OWNS_CLSACT: u32 = natra_attach_flags::NATRA_ATTACH_OWNS_CLSACT.0;
/// natra installed fq as the Pod interface's root.
pub const OWNS_FQ: u32 = natra_attach_flags::NATRA_ATTACH_OWNS_FQ.0;
/// EDT pacing is on (fq on the Pod's interface).
pub const EDT: u32 = natra_attach_flags::NATRA_ATTACH_EDT.0;

/// EDT pacing of pod ingress is on (fq on the host veth, host-side modes).
pub const EDT_INGRESS: u32 = natra_attach_flags::NATRA_ATTACH_EDT_INGRESS.0;
/// natra installed fq as the host veth's root.
pub const OWNS_HOST_FQ: u32 = natra_attach_flags::NATRA_ATTACH_OWNS_HOST_FQ.0;

/// Every flag with its name as `natra inspect` shows it.
pub const FLAG_NAMES: [(u32, &str); 5] = [
    (OWNS_CLSACT, "owns-clsact"),
    (OWNS_FQ, "owns-fq"),
    (EDT, "edt"),
    (EDT_INGRESS, "edt-ingress"),
    (OWNS_HOST_FQ, "owns-host-fq"),
];

/// Whether the record's flags say `dir` is paced (EDT): pod egress with
/// [`EDT`], pod ingress with [`EDT_INGRESS`].
pub fn edt_for(flags: u32, dir: super::direction::Direction) -> bool {
    match dir {
        super::direction::Direction::PodEgress => flags & EDT != 0,
        super::direction::Direction::PodIngress => flags & EDT_INGRESS != 0,
    }
}

/// The names of the flags set in `flags` (an unknown bit as its number).
pub fn flag_names(flags: u32) -> Vec<String> {
    let mut names = Vec::new();
    for bit in (0..32).map(|i| 1u32 << i).filter(|b| flags & b != 0) {
        match FLAG_NAMES.iter().find(|(f, _)| *f == bit) {
            Some((_, name)) => names.push((*name).to_owned()),
            None => names.push(format!("{bit:#x}")),
        }
    }
    names
}

impl PodRef {
    fn to_raw(&self) -> natra_pod_ref {
        let mut raw = natra_pod_ref::default();
        c_chars(&mut raw.namespace, &self.namespace);
        c_chars(&mut raw.name, &self.name);
        c_chars(&mut raw.uid, &self.uid);
        raw
    }

    pub fn from_raw(raw: &natra_pod_ref) -> PodRef {
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
    /// CNI_NETNS at ADD (empty in records of older natra).
    pub netns: String,
    /// Where the Pod interface's state lives.
    pub place: Placement,
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
            netns: {
                let mut raw = [0; 128];
                c_chars(&mut raw, &self.netns);
                raw
            },
            layout: self.place.layout,
            slot: self.place.slot,
            generation: self.place.generation,
        }
    }
}

/// Writes `record` at key 0.
pub fn write(map: BorrowedFd<'_>, record: &Record) -> Result<()> {
    sys::update(
        map,
        &0u32,
        &record.to_raw(),
        "cannot write the attachment record",
    )
}

/// Writes NATRA_ATTACH_NONE ("nothing attached") at key 0, keeping where
/// the state lives, so that teardown can still give the slot back.
pub fn write_none(map: BorrowedFd<'_>, place: &Placement) -> Result<()> {
    let value = natra_attachment {
        layout: place.layout,
        slot: place.slot,
        generation: place.generation,
        ..Default::default()
    };
    sys::update(map, &0u32, &value, "cannot write the attachment record")
}

/// Where the state of a raw record lives.
pub fn placement_of(raw: &natra_attachment) -> Placement {
    Placement {
        layout: raw.layout,
        slot: raw.slot,
        generation: raw.generation,
    }
}

/// The record map of `pins`, opened; None when its pin is absent (no ADD
/// got that far, or the state predates the record).
pub fn open(pins: &AttachmentPins) -> Result<Option<MapHandle>> {
    let path = pins.map(ATTACHMENT_MAP);
    if !path.exists() {
        return Ok(None);
    }
    MapHandle::from_pinned_path(&path)
        .context(
            ErrorKind::Dataplane,
            format!("cannot open {}", path.display()),
        )
        .map(Some)
}

/// The raw record in `map`, whatever its mode.
pub fn read_raw(map: BorrowedFd<'_>) -> Result<natra_attachment> {
    sys::lookup(map, &0u32, "cannot read the attachment record")
}

/// The record of `pins`; None when its pin is absent or it says
/// NATRA_ATTACH_NONE.
pub fn read(pins: &AttachmentPins) -> Result<Option<Record>> {
    let Some(map) = open(pins)? else {
        return Ok(None);
    };
    let value = read_raw(map.as_fd()).map_err(|e| {
        let path = pins.map(ATTACHMENT_MAP);
        Error::new(
            e.kind,
            format!("cannot read the attachment record {}", path.display()),
        )
        .with_details(e.details)
    })?;
    Ok(Record::from_raw(&value))
}

impl Record {
    /// None for NATRA_ATTACH_NONE.
    pub fn from_raw(value: &natra_attachment) -> Option<Record> {
        AttachMode::from_raw(value.mode).map(|mode| Record {
            mode,
            host_ifindex: value.host_ifindex,
            pod_ifindex: value.pod_ifindex,
            flags: value.flags.0,
            pod: PodRef::from_raw(&value.pod),
            netns: from_c_chars(&value.netns),
            place: placement_of(value),
        })
    }
}

impl AttachMode {
    pub fn to_raw(self) -> natra_attach_mode {
        match self {
            AttachMode::TcxHostside => natra_attach_mode::NATRA_ATTACH_TCX_HOSTSIDE,
            AttachMode::TcxPodside => natra_attach_mode::NATRA_ATTACH_TCX_PODSIDE,
            AttachMode::ClsactHostside => natra_attach_mode::NATRA_ATTACH_CLSACT_HOSTSIDE,
            AttachMode::ClsactPodside => natra_attach_mode::NATRA_ATTACH_CLSACT_PODSIDE,
            AttachMode::TcxSplit => natra_attach_mode::NATRA_ATTACH_TCX_SPLIT,
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
    fn flags_are_named_as_inspect_shows_them() {
        assert_eq!(flag_names(0), Vec::<String>::new());
        assert_eq!(flag_names(EDT | OWNS_FQ), ["owns-fq", "edt"]);
        assert_eq!(
            flag_names(EDT_INGRESS | OWNS_HOST_FQ),
            ["edt-ingress", "owns-host-fq"]
        );
        assert_eq!(flag_names(OWNS_CLSACT | 0x40), ["owns-clsact", "0x40"]);
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
