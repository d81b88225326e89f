//! One dataplane per node (docs/dataplane.md, "One dataplane per node").
//!
//! The BPF object is loaded and verified once per state layout, by the first
//! ADD (or `natra dataplane load`, or the agent at start) under the node
//! lock, and pinned at `<root>/~dataplane/<layout>/`:
//!
//! | pin | what |
//! |---|---|
//! | `config`, `bucket`, `counters`, `sketch` | the maps, NATRA_SLOTS slots |
//! | `programs` | the program array the stubs tail-call through |
//! | `record_type` | the object's record map, for its BTF types |
//! | `pod_ingress_<program id>`, `pod_egress_<program id>` | the programs |
//! | `slots/<n>` | slot n's owner: the Pod interface's own record map |
//!
//! A Pod interface claims the lowest free slot: its record map pinned as
//! `slots/<n>` (and as `attachment` in its own directory), the slot's
//! generation moved on, its config, bucket, counters and sketch cells
//! zeroed. Its stubs carry the slot and the generation. DEL unpins
//! `slots/<n>` (only while that pin is its own record). A natra with the same
//! layout and another object swaps the programs in place through the array
//! ([`open_or_load`]); one with another layout loads its own beside it, and
//! [`collect`] removes an old layout's dataplane once no slot of it is held.
use std::collections::HashSet;
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapInfo, MapType};

use super::direction::Direction;
use super::faults;
use super::maps;
use super::pins::{self, AttachmentPins, DATAPLANE_DIR, DIR_MODE};
use super::placement::Placement;
use super::record;
use super::skeleton::types::{natra_attachment, natra_bucket_state, natra_config};
use super::skeleton::NatraSkelBuilder;
use super::sys;
use crate::contract::{NATRA_LAYOUT_ID, NATRA_PROGRAM_ID, NATRA_SLOT_SKETCH_CELLS};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::safefs;

/// `<dataplane>/slots/`: one pin per claimed slot.
pub const SLOTS_DIR: &str = "slots";
const CONFIG: &str = pins::CONFIG_MAP;
const BUCKET: &str = pins::BUCKET_MAP;
const COUNTERS: &str = pins::COUNTERS_MAP;
const SKETCH: &str = pins::SKETCH_MAP;
const PROGRAMS: &str = pins::PROGRAMS_MAP;
/// The object's own (unused) record map, kept for its BTF types: every
/// record map made for a Pod is typed like it, so bpftool shows its fields.
const RECORD_TYPE: &str = "record_type";

/// This natra's state layout id.
pub fn layout_id() -> u64 {
    faults::layout_id().unwrap_or(NATRA_LAYOUT_ID)
}

/// This natra's BPF object id.
pub fn program_id() -> u64 {
    faults::program_id().unwrap_or(NATRA_PROGRAM_ID)
}

/// `<root>/~dataplane/<layout>`.
pub fn dir_of(root: &Path, layout: u64) -> PathBuf {
    root.join(DATAPLANE_DIR).join(format!("{layout:016x}"))
}

fn program_pin(dir: &Path, d: Direction, program: u64) -> PathBuf {
    dir.join(format!("{}_{program:016x}", d.program_name()))
}

/// The shared dataplane of one layout, opened from its pins.
pub struct Dataplane {
    pub dir: PathBuf,
    pub layout: u64,
    pub config: MapHandle,
    pub bucket: MapHandle,
    pub counters: MapHandle,
    pub sketch: MapHandle,
    pub programs: MapHandle,
}

/// What [`open_or_load`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// It was there, with this natra's programs.
    AsItWas,
    /// Loaded and verified now (the first on this node for this layout).
    Loaded,
    /// It was there with other programs: this natra's swapped in.
    Upgraded,
}

impl std::fmt::Display for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Opened::AsItWas => "already loaded with this natra's programs",
            Opened::Loaded => "loaded and verified now",
            Opened::Upgraded => "this natra's programs swapped in for live Pods",
        })
    }
}

/// The shared dataplane of this natra's layout, loaded if absent, its
/// programs made this natra's if another's. Call under the node lock.
pub fn open_or_load(root: &Path) -> Result<(Dataplane, Opened)> {
    let layout = layout_id();
    let base = root.join(DATAPLANE_DIR);
    safefs::own_dir(&base, DIR_MODE)?;
    let dir = dir_of(root, layout);
    let mut opened = Opened::AsItWas;
    if !real_dir(&dir) {
        load_new(&base, &dir, layout)?;
        opened = Opened::Loaded;
    }
    let dp = open(&dir, layout)?;
    if opened == Opened::AsItWas && !program_pin(&dir, Direction::PodIngress, program_id()).exists()
    {
        upgrade(&dp)?;
        opened = Opened::Upgraded;
    }
    Ok((dp, opened))
}

/// The shared dataplane of this natra's layout is loaded, with this
/// natra's programs (STATUS's cheap answer).
pub fn holds_this_natras_programs(root: &Path) -> bool {
    let dir = dir_of(root, layout_id());
    Direction::ALL.iter().all(|&d| {
        sys::pinned_prog_id(&program_pin(&dir, d, program_id())).is_ok_and(|id| id.is_some())
    })
}

fn real_dir(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

fn open(dir: &Path, layout: u64) -> Result<Dataplane> {
    let map = |name: &str| -> Result<MapHandle> {
        let p = dir.join(name);
        MapHandle::from_pinned_path(&p).context(
            ErrorKind::Dataplane,
            format!("cannot open the shared dataplane's {}", p.display()),
        )
    };
    Ok(Dataplane {
        dir: dir.to_path_buf(),
        layout,
        config: map(CONFIG)?,
        bucket: map(BUCKET)?,
        counters: map(COUNTERS)?,
        sketch: map(SKETCH)?,
        programs: map(PROGRAMS)?,
    })
}

/// Loads the object and pins it in a directory of its own, renamed into
/// place once whole: a natra killed half-way leaves only a `~` directory,
/// which [`collect`] and the next load remove.
fn load_new(base: &Path, dir: &Path, layout: u64) -> Result<()> {
    let started = std::time::Instant::now();
    let tmp = base.join(format!("{layout:016x}~{}", std::process::id()));
    remove_tree(&tmp)?;
    safefs::own_dir(&tmp, DIR_MODE)?;
    safefs::own_dir(&tmp.join(SLOTS_DIR), DIR_MODE)?;
    let mut storage = MaybeUninit::uninit();
    let mut skel = NatraSkelBuilder::default()
        .open(&mut storage)
        .context(ErrorKind::Dataplane, "cannot open the BPF object")?
        .load()
        .context(ErrorKind::Dataplane, "cannot load the BPF programs")?;
    for (map, name) in [
        (&mut skel.maps.natra_cfg, CONFIG),
        (&mut skel.maps.natra_bucket, BUCKET),
        (&mut skel.maps.natra_stats, COUNTERS),
        (&mut skel.maps.natra_sketch, SKETCH),
        (&mut skel.maps.natra_progs, PROGRAMS),
        (&mut skel.maps.natra_attach, RECORD_TYPE),
    ] {
        let path = tmp.join(name);
        map.pin(&path).context(
            ErrorKind::Dataplane,
            format!("cannot pin {}", path.display()),
        )?;
    }
    let programs = skel.maps.natra_progs.as_fd();
    for d in Direction::ALL {
        let prog = match d {
            Direction::PodIngress => skel.progs.pod_ingress.as_fd(),
            Direction::PodEgress => skel.progs.pod_egress.as_fd(),
        };
        set_program(programs, d, prog)?;
        sys::pin_fd(prog, &program_pin(&tmp, d, program_id()))?;
    }
    match fs::rename(&tmp, dir) {
        Ok(()) => {
            log::info!(
                "shared dataplane loaded and verified in {:.1} ms: layout {layout:016x}, programs {:016x}, {} slots",
                started.elapsed().as_secs_f64() * 1e3,
                program_id(),
                Placement::SLOTS
            );
            Ok(())
        }
        Err(e) if real_dir(dir) => {
            log::info!("another natra loaded the shared dataplane first ({e})");
            remove_tree(&tmp)
        }
        Err(e) => {
            let _ = remove_tree(&tmp);
            Err(Error::new(
                ErrorKind::Io,
                format!("cannot move the shared dataplane into {}", dir.display()),
            )
            .with_details(e))
        }
    }
}

fn set_program(programs: BorrowedFd<'_>, d: Direction, prog: BorrowedFd<'_>) -> Result<()> {
    let fd = prog.as_raw_fd() as u32;
    sys::update(
        programs,
        &d.index(),
        &fd,
        "cannot put a program in the program array",
    )
}

/// Loads this natra's programs on the dataplane's own maps and swaps them
/// into the program array, one direction at a time: every stub's next
/// tail call runs the new program, packets in flight finish in the old, and
/// no stub, link or filter changes.
fn upgrade(dp: &Dataplane) -> Result<()> {
    let started = std::time::Instant::now();
    let mut storage = MaybeUninit::uninit();
    let mut open = NatraSkelBuilder::default()
        .open(&mut storage)
        .context(ErrorKind::Dataplane, "cannot open the BPF object")?;
    let reuse = |map: &mut libbpf_rs::OpenMapMut<'_>, fd: BorrowedFd<'_>| {
        map.reuse_fd(fd).context(
            ErrorKind::Dataplane,
            "cannot reuse the shared dataplane's maps",
        )
    };
    reuse(&mut open.maps.natra_cfg, dp.config.as_fd())?;
    reuse(&mut open.maps.natra_bucket, dp.bucket.as_fd())?;
    reuse(&mut open.maps.natra_stats, dp.counters.as_fd())?;
    reuse(&mut open.maps.natra_sketch, dp.sketch.as_fd())?;
    reuse(&mut open.maps.natra_progs, dp.programs.as_fd())?;
    let skel = open
        .load()
        .context(ErrorKind::Dataplane, "cannot load the BPF programs")?;
    for d in Direction::ALL {
        let prog = match d {
            Direction::PodIngress => skel.progs.pod_ingress.as_fd(),
            Direction::PodEgress => skel.progs.pod_egress.as_fd(),
        };
        set_program(dp.programs.as_fd(), d, prog)?;
        let pin = program_pin(&dp.dir, d, program_id());
        pins::remove_if_present(&pin)?;
        sys::pin_fd(prog, &pin)?;
    }
    let mine: Vec<String> = Direction::ALL
        .iter()
        .map(|&d| file_name(&program_pin(&dp.dir, d, program_id())))
        .collect();
    for entry in read_names(&dp.dir)? {
        let old = Direction::ALL
            .iter()
            .any(|d| entry.starts_with(&format!("{}_", d.program_name())));
        if old && !mine.contains(&entry) {
            pins::remove_if_present(&dp.dir.join(&entry))?;
        }
    }
    log::info!(
        "shared dataplane {:016x}: programs {:016x} swapped in place for {} Pod interface(s) in {:.1} ms",
        dp.layout,
        program_id(),
        read_names(&dp.dir.join(SLOTS_DIR))?.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_names(dir: &Path) -> Result<Vec<String>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => {
            Err(Error::new(ErrorKind::Io, format!("cannot read {}", dir.display())).with_details(e))
        }
    }
}

/// Unpins everything in `dir` (and in its subdirectories) and removes it;
/// absent is fine. Never follows a symlink.
fn remove_tree(dir: &Path) -> Result<()> {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return Ok(());
    };
    if !meta.is_dir() {
        return pins::remove_if_present(dir);
    }
    for name in read_names(dir)? {
        remove_tree(&dir.join(name))?;
    }
    fs::remove_dir(dir).or_else(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Ok(())
        } else {
            Err(
                Error::new(ErrorKind::Io, format!("cannot remove {}", dir.display()))
                    .with_details(e),
            )
        }
    })
}

/// A slot claimed for one Pod interface: where, and its record map.
pub struct Claim {
    pub place: Placement,
    pub record: MapHandle,
}

/// Claims the lowest free slot: the record map made and pinned as its
/// owner, the generation moved on and the slot's state zeroed before any
/// stub of the new owner exists. None when every slot is held.
pub fn claim(dp: &Dataplane) -> Result<Option<Claim>> {
    let slots = dp.dir.join(SLOTS_DIR);
    let used: HashSet<u32> = read_names(&slots)?
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    let limit = faults::slots()
        .unwrap_or(Placement::SLOTS)
        .min(Placement::SLOTS);
    let Some(slot) = (0..limit).find(|s| !used.contains(s)) else {
        return Ok(None);
    };
    let mut previous = 0;
    for d in Direction::ALL {
        let key = slot * Direction::ALL.len() as u32 + d.index();
        previous = previous.max(maps::read_config(dp.config.as_fd(), key)?.generation);
    }
    let place = Placement {
        layout: dp.layout,
        slot,
        generation: Placement::next_generation(previous),
    };
    // Typed through the object's BTF when it can be had; untyped otherwise.
    let typed = MapHandle::from_pinned_path(dp.dir.join(RECORD_TYPE))
        .ok()
        .and_then(|m| MapInfo::new(m.as_fd()).ok())
        .and_then(|i| Some((sys::btf_fd_by_id(i.info.btf_id).ok()?, i.info)));
    let mut opts = libbpf_sys::bpf_map_create_opts {
        sz: size_of::<libbpf_sys::bpf_map_create_opts>() as libbpf_sys::size_t,
        ..Default::default()
    };
    if let Some((btf, info)) = &typed {
        opts.btf_fd = btf.as_raw_fd() as u32;
        opts.btf_key_type_id = info.btf_key_type_id;
        opts.btf_value_type_id = info.btf_value_type_id;
    }
    let record = MapHandle::create(
        MapType::Array,
        Some("natra_attach"),
        size_of::<u32>() as u32,
        size_of::<natra_attachment>() as u32,
        1,
        &opts,
    )
    .context(ErrorKind::Dataplane, "cannot create the attachment record")?;
    record::write_none(record.as_fd(), &place)?;
    sys::pin_fd(record.as_fd(), &slots.join(slot.to_string()))?;
    if let Err(e) = reset(dp, &place, previous != 0) {
        let _ = pins::remove_if_present(&slots.join(slot.to_string()));
        return Err(e);
    }
    Ok(Some(Claim { place, record }))
}

/// The slot's config (the new generation, no limit yet), bucket, counters
/// and sketch cells (`used`: a slot never held has none), as a fresh
/// load's. The generation goes first: from then on a stub of the slot's
/// last owner passes its packets uncharged.
fn reset(dp: &Dataplane, place: &Placement, used: bool) -> Result<()> {
    for d in Direction::ALL {
        let key = place.key(d);
        let cfg = natra_config {
            generation: place.generation,
            ..Default::default()
        };
        maps::write_config_raw(dp.config.as_fd(), key, &cfg)?;
        maps::write_bucket(dp.bucket.as_fd(), key, &natra_bucket_state::default())?;
        maps::zero_counters(dp.counters.as_fd(), key)?;
    }
    if !used {
        return Ok(());
    }
    let cells = NATRA_SLOT_SKETCH_CELLS as u32 * Direction::ALL.len() as u32;
    let first = place.sketch_base(Direction::PodIngress, 0);
    let keys: Vec<u8> = (first..first + cells).flat_map(u32::to_ne_bytes).collect();
    let values = vec![0u8; cells as usize * size_of::<u64>()];
    dp.sketch
        .update_batch(&keys, &values, cells, MapFlags::ANY, MapFlags::ANY)
        .context(ErrorKind::Dataplane, "cannot zero the slot's sketch cells")
}

fn map_id(fd: BorrowedFd<'_>) -> Option<u32> {
    MapInfo::new(fd).ok().map(|i| i.info.id)
}

/// Gives the slot of the attachment at `pins` back (DEL, GC, rollback):
/// unpins `slots/<n>` while it is that attachment's record. Nothing for a
/// private load or a record of natra before the shared dataplane.
pub fn release(root: &Path, pins: &AttachmentPins) -> Result<()> {
    let Ok(Some(map)) = record::open(pins) else {
        return Ok(());
    };
    let Ok(raw) = record::read_raw(map.as_fd()) else {
        return Ok(());
    };
    let place = record::placement_of(&raw);
    if !place.is_shared() {
        return Ok(());
    }
    let pin = dir_of(root, place.layout)
        .join(SLOTS_DIR)
        .join(place.slot.to_string());
    let Ok(owner) = MapHandle::from_pinned_path(&pin) else {
        return Ok(());
    };
    if map_id(owner.as_fd()) == map_id(map.as_fd()) {
        pins::remove_if_present(&pin)
    } else {
        log::warn!(
            "{} belongs to another attachment now: leaving it",
            pin.display()
        );
        Ok(())
    }
}

/// What [`collect`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    /// Slots whose owner has no attachment directory any more (a natra
    /// killed between claiming a slot and pinning its record).
    pub slots: usize,
    /// Dataplanes of other layouts that no slot held any more, and
    /// half-made ones.
    pub dataplanes: usize,
}

/// GC and the agent, under the node lock: frees slots whose record no
/// attachment holds, and removes the dataplanes of other layouts once no
/// slot of theirs is held (and half-made loads). `attachments` are the
/// record maps' ids of every attachment directory.
pub fn collect(root: &Path, attachments: &HashSet<u32>) -> Result<Collected> {
    let base = root.join(DATAPLANE_DIR);
    let mut done = Collected::default();
    let current = format!("{:016x}", layout_id());
    for name in read_names(&base)? {
        let dir = base.join(&name);
        if name.contains('~') {
            remove_tree(&dir)?;
            done.dataplanes += 1;
            continue;
        }
        let slots = dir.join(SLOTS_DIR);
        let mut held = 0;
        for slot in read_names(&slots)? {
            let pin = slots.join(&slot);
            let id = MapHandle::from_pinned_path(&pin)
                .ok()
                .and_then(|m| map_id(m.as_fd()));
            if id.is_some_and(|id| attachments.contains(&id)) {
                held += 1;
            } else {
                log::info!("slot {slot} of dataplane {name} has no attachment: freeing it");
                pins::remove_if_present(&pin)?;
                done.slots += 1;
            }
        }
        if held == 0 && name != current {
            log::info!("dataplane {name} (another natra's layout) serves no Pod: removing it");
            remove_tree(&dir)?;
            done.dataplanes += 1;
        }
    }
    Ok(done)
}

/// The id of the record map pinned at `pins` (for [`collect`]).
pub fn record_id(pins: &AttachmentPins) -> Option<u32> {
    record::open(pins)
        .ok()
        .flatten()
        .and_then(|m| map_id(m.as_fd()))
}

/// The state of the shared dataplanes, for `natra inspect`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DataplaneView {
    pub layout: String,
    pub current: bool,
    pub programs: Vec<String>,
    pub slots_used: usize,
    pub slots: u32,
}

/// Every shared dataplane under `root`.
pub fn list(root: &Path) -> Result<Vec<DataplaneView>> {
    let base = root.join(DATAPLANE_DIR);
    let current = format!("{:016x}", layout_id());
    let mut out = Vec::new();
    for name in read_names(&base)? {
        if name.contains('~') {
            continue;
        }
        let dir = base.join(&name);
        let mut programs: Vec<String> = read_names(&dir)?
            .into_iter()
            .filter(|n| {
                Direction::ALL
                    .iter()
                    .any(|d| n.starts_with(d.program_name()))
            })
            .collect();
        programs.sort();
        out.push(DataplaneView {
            current: name == current,
            layout: name,
            programs,
            slots_used: read_names(&dir.join(SLOTS_DIR))?.len(),
            slots: Placement::SLOTS,
        });
    }
    out.sort_by(|a, b| a.layout.cmp(&b.layout));
    Ok(out)
}
