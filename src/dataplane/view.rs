//! What natra has attached on this node, read back from bpffs and the
//! kernel, as `natra inspect` and `natra stats` show it: one
//! [`AttachmentView`] per Pod interface. Map values are rendered through the
//! BTF the kernel holds for them (btf_json.rs), so the JSON's field names
//! are those `bpftool map dump` prints.
use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use libbpf_rs::btf::{Btf, TypeId};
use libbpf_rs::{MapHandle, MapInfo};
use serde::Serialize;
use serde_json::Value;

use super::direction::Direction;
use super::modes::{AttachMode, PodRef};
use super::pins::{self, AttachmentPins, BUCKET_MAP, CONFIG_MAP, COUNTERS_MAP, PROGRAMS_MAP};
use super::skeleton::types::natra_attachment;
use super::{btf_json, maps, record, sys};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::netlink;

/// One Pod interface natra limits.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentView {
    /// The netconf's name; None for a directory of natra before network
    /// keying.
    pub network: Option<String>,
    pub container_id: String,
    pub ifname: String,
    /// The Pod as the runtime named it at ADD (CNI_ARGS); None without a
    /// record.
    pub pod: Option<PodRef>,
    pub pin_dir: PathBuf,
    /// What the kernel charges for the attachment's maps, programs and links.
    pub bpf_memlock_bytes: u64,
    /// The attachment record; None when there is none.
    pub attachment: Option<RecordView>,
    pub directions: Directions,
}

/// The attachment record (record.rs) as the operator spells it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecordView {
    /// The `attachMode` name, or `none` while no attempt holds.
    pub mode: String,
    pub host_ifindex: u32,
    pub pod_ifindex: u32,
    /// Names of the flags set: `owns-clsact`, `owns-fq`, `edt`.
    pub flags: Vec<String>,
    pub pod: PodRef,
    /// `shared <layout id>` (the node's dataplane) or `private` (a load of
    /// its own, docs/dataplane.md).
    pub dataplane: String,
    /// The Pod interface's slot in that dataplane's maps, and the generation
    /// it holds it under.
    pub slot: u32,
    pub generation: u32,
}

/// Both directions, keyed as the programs are named.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Directions {
    pub pod_ingress: DirectionView,
    pub pod_egress: DirectionView,
}

impl Directions {
    pub fn get(&self, dir: Direction) -> &DirectionView {
        match dir {
            Direction::PodIngress => &self.pod_ingress,
            Direction::PodEgress => &self.pod_egress,
        }
    }

    fn get_mut(&mut self, dir: Direction) -> &mut DirectionView {
        match dir {
            Direction::PodIngress => &mut self.pod_ingress,
            Direction::PodEgress => &mut self.pod_egress,
        }
    }

    /// Both, pod_ingress first.
    pub fn iter(&self) -> impl Iterator<Item = (Direction, &DirectionView)> {
        Direction::ALL.into_iter().map(|d| (d, self.get(d)))
    }
}

/// One direction: where its program sits and its maps' values.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectionView {
    /// `tcx ingress`, `clsact egress`, …; None when nothing is attached.
    pub attach: Option<String>,
    /// `host` (the host veth) or `pod` (the Pod's interface, in its netns).
    pub side: Option<&'static str>,
    /// The device's name: the host veth's, or the Pod's interface's.
    pub device: Option<String>,
    /// The device's ifindex, in its own netns.
    pub ifindex: Option<u32>,
    /// The tcx link, for tcx modes.
    pub link_id: Option<u32>,
    pub prog_id: Option<u32>,
    /// `struct natra_config` through BTF.
    pub config: Value,
    /// `struct natra_bucket_state` through BTF.
    pub bucket: Value,
    /// `struct natra_counters` through BTF, summed over the CPUs.
    pub counters: Value,
    /// The limit the config holds; None when the direction is unlimited.
    #[serde(skip)]
    pub limit: Option<Limit>,
}

/// A direction's rate and burst.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limit {
    pub rate_bytes_per_sec: u64,
    pub burst_bytes: u64,
}

/// The real directories (never symlinks) in `dir`, sorted.
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(Error::new(ErrorKind::Io, "cannot list the pin root")
                .with_details(format!("{}: {e}", dir.display())))
        }
    };
    dirs.sort();
    Ok(dirs)
}

/// Every attachment under the pin root: `<root>/<network>/<id>:<if>`, and
/// the legacy `<root>/<id>:<if>` of natra before network keying.
pub fn list_attachments(root: &Path) -> Result<Vec<AttachmentView>> {
    attachment_dirs(root)?
        .iter()
        .map(|(dir, network)| view(dir, network.as_deref()))
        .collect()
}

/// Every attachment directory under the pin root, with its network (None
/// for a legacy one). The shared dataplanes (`~dataplane`) are not one.
pub fn attachment_dirs(root: &Path) -> Result<Vec<(PathBuf, Option<String>)>> {
    if !pins::trusted_root(root)? {
        return Ok(Vec::new());
    }
    let mut all = Vec::new();
    for dir in subdirs(root)? {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with('~') {
            continue;
        }
        if name.contains(':') {
            all.push((dir.clone(), None));
            continue;
        }
        let network = name.replace('~', ".");
        for attachment in subdirs(&dir)? {
            all.push((attachment, Some(network.clone())));
        }
    }
    Ok(all)
}

/// `<id>:<ifname>` with `~` back to `.`.
fn decode_dir_name(dir: &Path) -> (String, String) {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (id, ifname) = name.rsplit_once(':').unwrap_or((&name, ""));
    (id.replace('~', "."), ifname.replace('~', "."))
}

/// The device at `ifindex` on `pod_side` or the host's: the Pod's
/// interface is the attachment's ifname; a host veth is looked up.
fn device(pod_side: bool, ifindex: u32, ifname: &str) -> (Option<&'static str>, Option<String>) {
    if pod_side {
        (Some("pod"), Some(ifname.to_owned()))
    } else {
        let name = netlink::link_by_index(ifindex).ok().map(|l| l.name);
        (Some("host"), name)
    }
}

fn view(dir: &Path, network: Option<&str>) -> Result<AttachmentView> {
    let (container_id, ifname) = decode_dir_name(dir);
    let pins = AttachmentPins {
        dir: dir.to_path_buf(),
    };
    let mut memlock = 0u64;
    // The record says which side a link is on and where clsact filters sit.
    let raw: Option<natra_attachment> = record::open(&pins).ok().flatten().and_then(|map| {
        memlock += sys::fdinfo_memlock(map.as_fd());
        record::read_raw(map.as_fd()).ok()
    });
    let mode = raw.and_then(|r| AttachMode::from_raw(r.mode));
    let place = raw.map(|r| record::placement_of(&r)).unwrap_or_default();
    let mut prog_id = None;
    let mut directions = Directions::default();
    for d in Direction::ALL {
        let pin = pins.link(d.program_name());
        if !pin.exists() {
            continue;
        }
        let link = sys::pinned_link(&pin)?;
        let entry = directions.get_mut(d);
        memlock += link.memlock;
        prog_id.get_or_insert(link.prog_id);
        entry.link_id = Some(link.link_id);
        entry.prog_id = Some(link.prog_id);
        if let Some(tcx) = link.tcx {
            entry.attach = Some(format!("tcx {}", sys::tcx_hook_name(tcx.attach_type)));
            entry.ifindex = Some(tcx.ifindex);
            // Without a record (natra before records): tcx-hostside.
            let pod_side = mode.is_some_and(|m| m.pod_side(d));
            (entry.side, entry.device) = device(pod_side, tcx.ifindex, &ifname);
        }
        memlock += sys::prog_memlock(link.prog_id).unwrap_or(0);
    }
    // clsact modes pin their programs instead of links.
    for d in Direction::ALL {
        let Some(id) = sys::pinned_prog_id(&pins.prog(d.program_name()))
            .ok()
            .flatten()
        else {
            continue;
        };
        let entry = directions.get_mut(d);
        prog_id.get_or_insert(id);
        entry.prog_id = Some(id);
        memlock += sys::prog_memlock(id).unwrap_or(0);
        if let (Some(mode), Some(rec)) = (mode.filter(|m| !m.is_tcx()), raw) {
            let ifindex = mode.ifindex(d, rec.host_ifindex, rec.pod_ifindex);
            entry.attach = Some(format!("clsact {}", mode.clsact_hook(d).name()));
            entry.ifindex = Some(ifindex);
            (entry.side, entry.device) = device(mode.pod_side(d), ifindex, &ifname);
        }
    }
    // The stubs carry no BTF: the types come from the program they jump to.
    let body = MapHandle::from_pinned_path(pins.map(PROGRAMS_MAP))
        .ok()
        .and_then(|m| {
            Direction::ALL
                .iter()
                .find_map(|d| sys::lookup::<u32, u32>(m.as_fd(), &d.index(), "").ok())
        });
    let btf = body.or(prog_id).and_then(|id| Btf::from_prog_id(id).ok());
    for map_name in [CONFIG_MAP, BUCKET_MAP, COUNTERS_MAP] {
        let Ok(map) = MapHandle::from_pinned_path(pins.map(map_name)) else {
            continue;
        };
        let fd = map.as_fd();
        if !place.is_shared() {
            // A shared dataplane's maps are the node's, not this Pod's.
            memlock += sys::fdinfo_memlock(fd);
        }
        let info = MapInfo::new(fd).context(ErrorKind::Dataplane, "cannot read map info")?;
        let ty = TypeId::from(info.info.btf_value_type_id);
        let render = |bytes: &[u8]| match &btf {
            Some(btf) => btf_json::render(btf, ty, bytes),
            None => Value::Null,
        };
        for d in Direction::ALL {
            let entry = directions.get_mut(d);
            let key = place.key(d);
            match map_name {
                CONFIG_MAP => {
                    let Ok(c) = maps::read_config(fd, key) else {
                        continue;
                    };
                    entry.limit = (c.rate_bytes_per_sec != 0).then_some(Limit {
                        rate_bytes_per_sec: c.rate_bytes_per_sec,
                        burst_bytes: c.burst_bytes,
                    });
                    entry.config = render(sys::bytes_of(&c));
                }
                BUCKET_MAP => {
                    if let Ok(b) = maps::read_bucket(fd, key) {
                        entry.bucket = render(sys::bytes_of(&b));
                    }
                }
                _ => {
                    if let Ok(c) = maps::read_counters(fd, key) {
                        entry.counters = render(sys::bytes_of(&c));
                    }
                }
            }
        }
    }
    Ok(AttachmentView {
        network: network.map(str::to_owned),
        container_id,
        ifname,
        pod: raw.map(|r| PodRef::from_raw(&r.pod)),
        pin_dir: dir.to_path_buf(),
        bpf_memlock_bytes: memlock,
        attachment: raw.map(|r| RecordView {
            mode: mode.map_or("none", AttachMode::name).to_owned(),
            host_ifindex: r.host_ifindex,
            pod_ifindex: r.pod_ifindex,
            flags: record::flag_names(r.flags.0),
            pod: PodRef::from_raw(&r.pod),
            dataplane: if place.is_shared() {
                format!("shared {:016x}", place.layout)
            } else {
                "private".to_owned()
            },
            slot: place.slot,
            generation: place.generation,
        }),
        directions,
    })
}
