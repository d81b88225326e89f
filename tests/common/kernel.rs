//! Reading back what the kernel holds: tcx attachments of a device, pinned
//! links, link IDs, maps, as bpftool and libbpf see them — never natra's own
//! view of its state.
use std::fs;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;

use libbpf_rs::query::{LinkInfoIter, LinkTypeInfo};
use libbpf_rs::Link;
use serde_json::Value;

use super::pod::{run, run_ok};

/// tcx hooks of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcxHook {
    Ingress,
    Egress,
}

impl TcxHook {
    pub fn attach_type(self) -> u32 {
        match self {
            TcxHook::Ingress => libbpf_sys::BPF_TCX_INGRESS,
            TcxHook::Egress => libbpf_sys::BPF_TCX_EGRESS,
        }
    }
}

/// What is attached at one tcx hook of a device, as BPF_PROG_QUERY lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcxAttached {
    pub prog_ids: Vec<u32>,
    pub link_ids: Vec<u32>,
}

/// Programs and links at `hook` of the host-netns device `ifindex`.
pub fn tcx_attached(ifindex: u32, hook: TcxHook) -> io::Result<TcxAttached> {
    const MAX: usize = 64;
    let mut prog_ids = [0u32; MAX];
    let mut link_ids = [0u32; MAX];
    let mut opts = libbpf_sys::bpf_prog_query_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_query_opts>() as libbpf_sys::size_t,
        prog_ids: prog_ids.as_mut_ptr(),
        link_ids: link_ids.as_mut_ptr(),
        ..Default::default()
    };
    opts.__bindgen_anon_1.count = MAX as u32;
    // SAFETY: opts is fully initialised with its size set; prog_ids and
    // link_ids have room for `count` entries and outlive the call.
    let rc =
        unsafe { libbpf_sys::bpf_prog_query_opts(ifindex as i32, hook.attach_type(), &mut opts) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel wrote the number of entries into the union's count.
    let n = (unsafe { opts.__bindgen_anon_1.count } as usize).min(MAX);
    Ok(TcxAttached {
        prog_ids: prog_ids[..n].to_vec(),
        link_ids: link_ids[..n].to_vec(),
    })
}

/// Both hooks of a device; panics if the device cannot be queried.
pub fn tcx_both(ifindex: u32) -> (TcxAttached, TcxAttached) {
    let q = |hook| {
        tcx_attached(ifindex, hook)
            .unwrap_or_else(|e| panic!("tcx query of ifindex {ifindex} {hook:?} failed: {e}"))
    };
    (q(TcxHook::Ingress), q(TcxHook::Egress))
}

/// IDs of every tcx link in the system attached to `ifindex` (what
/// `bpftool link` lists, filtered by device).
pub fn tcx_link_ids_on(ifindex: u32) -> Vec<u32> {
    LinkInfoIter::default()
        .filter(|l| matches!(&l.info, LinkTypeInfo::Tcx(t) if t.ifindex == ifindex))
        .map(|l| l.id)
        .collect()
}

/// A pinned tcx link as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedTcx {
    pub id: u32,
    pub prog_id: u32,
    /// 0 once the device is gone or the link was detached.
    pub ifindex: u32,
    pub attach_type: u32,
}

pub fn pinned_tcx(pin: &Path) -> PinnedTcx {
    let link =
        Link::open(pin).unwrap_or_else(|e| panic!("cannot open link pin {}: {e}", pin.display()));
    let info = link
        .info()
        .unwrap_or_else(|e| panic!("cannot read link info of {}: {e}", pin.display()));
    match info.info {
        LinkTypeInfo::Tcx(t) => PinnedTcx {
            id: info.id,
            prog_id: info.prog_id,
            ifindex: t.ifindex,
            attach_type: t.attach_type as u32,
        },
        other => panic!("{} is not a tcx link: {other:?}", pin.display()),
    }
}

/// Detaches a pinned link behind natra's back (the pin stays).
pub fn detach_pinned(pin: &Path) {
    let link =
        Link::open(pin).unwrap_or_else(|e| panic!("cannot open link pin {}: {e}", pin.display()));
    link.detach()
        .unwrap_or_else(|e| panic!("cannot detach {}: {e}", pin.display()));
}

/// Whether a BPF link with this ID still exists anywhere in the kernel.
pub fn link_exists(id: u32) -> bool {
    // SAFETY: plain syscall wrapper; a non-negative return is an fd we own.
    let fd = unsafe { libbpf_sys::bpf_link_get_fd_by_id(id) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        assert_eq!(
            e.kind(),
            io::ErrorKind::NotFound,
            "bpf_link_get_fd_by_id({id}): {e}"
        );
        return false;
    }
    // SAFETY: fd was just returned to us and nobody else owns it.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    true
}

/// ifindex of a host-netns interface, None if it does not exist.
pub fn ifindex(name: &str) -> Option<u32> {
    match fs::read_to_string(format!("/sys/class/net/{name}/ifindex")) {
        Ok(s) => Some(s.trim().parse().expect("ifindex is a number")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        // A device being unregistered answers ENODEV or EINVAL for a moment.
        Err(e) if matches!(e.raw_os_error(), Some(19 | 22)) => None,
        Err(e) => panic!("cannot read the ifindex of {name}: {e}"),
    }
}

/// `bpftool -j ARGS`, parsed.
pub fn bpftool_json(args: &[&str]) -> Value {
    let out = run_ok(Command::new("bpftool").arg("-j").args(args));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bpftool {args:?}: bad JSON ({e}): {out}"))
}

/// `bpftool map dump pinned PATH` as (key, BTF-formatted value) pairs.
pub fn map_dump_formatted(pin: &Path) -> Vec<(u64, Value)> {
    let dump = bpftool_json(&["map", "dump", "pinned", pin.to_str().unwrap()]);
    dump.as_array()
        .unwrap_or_else(|| panic!("map dump of {} is not a list: {dump}", pin.display()))
        .iter()
        .map(|e| {
            let f = &e["formatted"];
            let key = f["key"]
                .as_u64()
                .unwrap_or_else(|| panic!("no BTF-formatted key in {e}"));
            (key, f["value"].clone())
        })
        .collect()
}

/// A Pod interface's own entries of the pinned map `name` in `pin_dir`, as
/// (direction index, BTF-formatted value): the shared dataplane's maps hold
/// every slot, and the record (`attachment`) says which is this one's.
pub fn slot_dump(pin_dir: &Path, name: &str) -> Vec<(u64, Value)> {
    let slot = placement(pin_dir).1;
    map_dump_formatted(&pin_dir.join(name))
        .into_iter()
        .filter(|(key, _)| key / 2 == slot)
        .map(|(key, value)| (key % 2, value))
        .collect()
}

/// (layout, slot) of the Pod interface pinned at `pin_dir`, as its record
/// (`attachment`) says: layout 0 is a private load (slot 0 of its own maps).
pub fn placement(pin_dir: &Path) -> (u64, u64) {
    let record = map_dump_formatted(&pin_dir.join("attachment"));
    let r = &record
        .first()
        .unwrap_or_else(|| panic!("no record in {}", pin_dir.display()))
        .1;
    (
        r["layout"].as_u64().unwrap_or(0),
        r["slot"].as_u64().unwrap_or(0),
    )
}

/// The slot the Pod interface at `pin_dir` holds in the shared dataplane,
/// spelled as `TestNet::pin_root_entries` lists it:
/// `~dataplane/<layout>/slots/<n>`. Panics for a private load.
pub fn slot_entry(pin_dir: &Path) -> String {
    let (layout, slot) = placement(pin_dir);
    assert_ne!(
        layout,
        0,
        "{} is a private load, not on the shared dataplane",
        pin_dir.display()
    );
    format!("~dataplane/{layout:016x}/slots/{slot}")
}

/// A Pod interface's own entries of the pinned per-CPU map `name` in
/// `pin_dir`, as (direction index, BTF-formatted value of each CPU).
pub fn slot_dump_per_cpu(pin_dir: &Path, name: &str) -> Vec<(u64, Vec<Value>)> {
    let slot = placement(pin_dir).1;
    let pin = pin_dir.join(name);
    let dump = bpftool_json(&["map", "dump", "pinned", pin.to_str().unwrap()]);
    dump.as_array()
        .unwrap_or_else(|| panic!("map dump of {} is not a list: {dump}", pin.display()))
        .iter()
        .filter_map(|e| {
            let f = &e["formatted"];
            let key = f["key"]
                .as_u64()
                .unwrap_or_else(|| panic!("no BTF-formatted key in {e}"));
            let values = f["values"]
                .as_array()
                .unwrap_or_else(|| panic!("no per-CPU values in {e}"))
                .iter()
                .map(|cpu| cpu["value"].clone())
                .collect();
            (key / 2 == slot).then_some((key % 2, values))
        })
        .collect()
}

/// What natra attached for direction `dir` (0 pod ingress, 1 pod egress) of
/// the Pod interface pinned at `pin_dir`, given the program `prog` on the
/// hook: a stub named like its direction's program (a few instructions, no
/// BTF) that tail-calls through the Pod's `programs` array, whose entry
/// `dir` is the shared program (same name, with BTF). Returns the shared
/// program's id. A private load's programs array is its own, same checks.
pub fn behind_stub(pin_dir: &Path, prog: u32, dir: u32) -> u32 {
    let name = ["pod_ingress", "pod_egress"][dir as usize];
    let stub = bpftool_json(&["prog", "show", "id", &prog.to_string()]);
    assert_eq!(stub["name"], name, "the program on the hook: {stub}");
    assert!(
        stub.get("btf_id").is_none(),
        "a stub carries no BTF: {stub}"
    );
    let xlated = stub["bytes_xlated"].as_u64().unwrap_or(0);
    assert!(
        xlated > 0 && xlated <= 32 * 8,
        "a stub is a few instructions: {stub}"
    );
    let array = pin_dir.join("programs");
    let info = bpftool_json(&["map", "show", "pinned", array.to_str().unwrap()]);
    assert_eq!(info["type"], "prog_array", "{}: {info}", array.display());
    let uses = stub["map_ids"]
        .as_array()
        .is_some_and(|ids| ids.contains(&info["id"]));
    assert!(uses, "the stub does not use {}: {stub}", array.display());
    let map = libbpf_rs::MapHandle::from_pinned_path(&array)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", array.display()));
    let value = libbpf_rs::MapCore::lookup(&map, &dir.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
        .unwrap_or_else(|e| panic!("lookup of {}[{dir}]: {e}", array.display()))
        .unwrap_or_else(|| panic!("{}[{dir}] holds no program", array.display()));
    let shared = u32::from_ne_bytes(value[..4].try_into().unwrap());
    assert_ne!(shared, prog, "the stub tail-calls itself");
    let info = bpftool_json(&["prog", "show", "id", &shared.to_string()]);
    assert_eq!(info["name"], name, "{}[{dir}]: {info}", array.display());
    assert!(
        info["btf_id"].as_u64().is_some_and(|id| id > 0),
        "the shared program has BTF: {info}"
    );
    shared
}

/// The name of a loaded program.
pub fn prog_name(id: u32) -> String {
    let info = bpftool_json(&["prog", "show", "id", &id.to_string()]);
    info["name"].as_str().unwrap_or_default().to_owned()
}

/// Whether bpftool still finds a link ID (a second witness to `link_exists`).
pub fn bpftool_knows_link(id: u32) -> bool {
    run(Command::new("bpftool").args(["link", "show", "id", &id.to_string()]))
        .status
        .success()
}
