//! The raw libbpf calls natra makes, each behind a safe function: map
//! lookup and update in natra's own types, pinning, tcx links, and reading
//! pinned objects back. The rest of the dataplane speaks through these.
use std::ffi::{c_void, CString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use libbpf_rs::query::LinkTypeInfo;
use libbpf_rs::{Link, MapInfo, Program, TcAttachPoint};
use nix::errno::Errno;

use super::skeleton::types::{natra_attachment, natra_bucket_state, natra_config, natra_counters};
use crate::error::{Context, Error, ErrorKind, Result};

mod sealed {
    pub trait Sealed {}
}

/// A key or value natra keeps in a BPF map: a `#[repr(C)]` type of
/// include/natra.h (or u32) made of integers only, with its padding spelled
/// out as fields, so that every byte pattern the kernel writes is a valid
/// value and every byte natra hands the kernel is initialised. Sealed: only
/// the types below qualify.
pub trait MapValue: Copy + Default + sealed::Sealed {}

macro_rules! map_values {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl MapValue for $t {}
    )*};
}
map_values!(
    u32,
    u64,
    natra_config,
    natra_bucket_state,
    natra_counters,
    natra_attachment
);

/// How a map's values must match natra's type `V`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fit {
    /// Written: exactly `V`.
    Exact,
    /// Read: a value fits in `V`. A shorter one (a map an older natra made,
    /// before a field was appended) fills its prefix; the rest stays
    /// default.
    Within,
    /// Read from a per-CPU map: exactly `V` per CPU, an 8-byte multiple, as
    /// the kernel lays the CPUs' slots out.
    PerCpu,
}

/// The key size of `map` is `K`'s and its value size fits `V` as `fit` says.
fn check_sizes<K: MapValue, V: MapValue>(map: BorrowedFd<'_>, fit: Fit, what: &str) -> Result<()> {
    let info = MapInfo::new(map).context(
        ErrorKind::Dataplane,
        format!("{what}: cannot read the map's info"),
    )?;
    let (key, value) = (size_of::<K>(), size_of::<V>());
    let found = info.info.value_size as usize;
    let fits = info.info.key_size as usize == key
        && match fit {
            Fit::Exact => found == value,
            Fit::Within => found <= value,
            Fit::PerCpu => found == value && value % 8 == 0,
        };
    if !fits {
        return Err(Error::new(ErrorKind::Dataplane, what.to_owned()).with_details(format!(
            "the map holds {}-byte keys and {}-byte values, natra's types are {key} and {value} bytes",
            info.info.key_size, info.info.value_size
        )));
    }
    Ok(())
}

/// `rc` of a libbpf call (0 or -errno) as natra's error.
fn check_rc(rc: i32, what: &str) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Dataplane, what.to_owned())
            .with_details(io::Error::from_raw_os_error(-rc)))
    }
}

/// Looks `key` up into `out`: one value, or one per possible CPU.
fn lookup_into<K: MapValue, V: MapValue>(
    map: BorrowedFd<'_>,
    key: &K,
    out: &mut [V],
    per_cpu: bool,
    what: &str,
) -> Result<()> {
    check_sizes::<K, V>(map, if per_cpu { Fit::PerCpu } else { Fit::Within }, what)?;
    // SAFETY: key and out are live, initialised MapValues whose sizes were
    // just checked against the map's key_size and value_size; out holds one
    // value at least value_size long, or for a per-CPU map one
    // 8-byte-multiple slot per possible CPU, which is what the kernel
    // writes. Any bytes it writes form a valid MapValue (integers only).
    let rc = unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            map.as_raw_fd(),
            (key as *const K).cast::<c_void>(),
            out.as_mut_ptr().cast::<c_void>(),
        )
    };
    check_rc(rc, what)
}

/// The value at `key`; an error when absent. `what` names the map for the
/// error ("cannot read the config map").
pub fn lookup<K: MapValue, V: MapValue>(map: BorrowedFd<'_>, key: &K, what: &str) -> Result<V> {
    let mut out = [V::default()];
    lookup_into(map, key, &mut out, false, what)?;
    Ok(out[0])
}

/// The values at `key` of a per-CPU map, one per possible CPU.
pub fn lookup_per_cpu<K: MapValue, V: MapValue>(
    map: BorrowedFd<'_>,
    key: &K,
    what: &str,
) -> Result<Vec<V>> {
    let cpus = libbpf_rs::num_possible_cpus().context(
        ErrorKind::Dataplane,
        format!("{what}: cannot count possible CPUs"),
    )?;
    let mut out = vec![V::default(); cpus];
    lookup_into(map, key, &mut out, true, what)?;
    Ok(out)
}

/// Writes `value` at `key` (BPF_ANY).
pub fn update<K: MapValue, V: MapValue>(
    map: BorrowedFd<'_>,
    key: &K,
    value: &V,
    what: &str,
) -> Result<()> {
    check_sizes::<K, V>(map, Fit::Exact, what)?;
    // SAFETY: key and value are live, initialised MapValues (no implicit
    // padding) whose sizes were just checked against the map's; the kernel
    // only reads them.
    let rc = unsafe {
        libbpf_sys::bpf_map_update_elem(
            map.as_raw_fd(),
            (key as *const K).cast::<c_void>(),
            (value as *const V).cast::<c_void>(),
            libbpf_sys::BPF_ANY as u64,
        )
    };
    check_rc(rc, what)
}

/// Writes one value per possible CPU at `key` of a per-CPU map.
pub fn update_per_cpu<K: MapValue, V: MapValue>(
    map: BorrowedFd<'_>,
    key: &K,
    values: &[V],
    what: &str,
) -> Result<()> {
    check_sizes::<K, V>(map, Fit::PerCpu, what)?;
    let cpus = libbpf_rs::num_possible_cpus().context(
        ErrorKind::Dataplane,
        format!("{what}: cannot count possible CPUs"),
    )?;
    if values.len() != cpus {
        return Err(Error::new(ErrorKind::Dataplane, what.to_owned())
            .with_details(format!("{} values for {cpus} possible CPUs", values.len())));
    }
    // SAFETY: key and values are live, initialised MapValues; the map's value
    // size is V's, an 8-byte multiple (checked), and values holds one per
    // possible CPU, which is what the kernel reads for a per-CPU map.
    let rc = unsafe {
        libbpf_sys::bpf_map_update_elem(
            map.as_raw_fd(),
            (key as *const K).cast::<c_void>(),
            values.as_ptr().cast::<c_void>(),
            libbpf_sys::BPF_ANY as u64,
        )
    };
    check_rc(rc, what)
}

/// A value's bytes, as a map holds them (for rendering through BTF).
pub fn bytes_of<V: MapValue>(value: &V) -> &[u8] {
    // SAFETY: a MapValue is plain integers with no implicit padding, so all
    // size_of::<V>() bytes behind the reference are initialised; the slice
    // borrows value and lives no longer.
    unsafe { std::slice::from_raw_parts((value as *const V).cast::<u8>(), size_of::<V>()) }
}

/// Pins the BPF object behind `fd` at `path` (in the host's bpffs).
pub fn pin_fd(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .context(ErrorKind::Io, format!("bad pin path {}", path.display()))?;
    // SAFETY: fd is a live BPF object fd and c_path a NUL-terminated string;
    // both outlive the call, which only reads them.
    let rc = unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), c_path.as_ptr()) };
    check_rc(rc, &format!("cannot pin {}", path.display()))
}

/// A tcx link of `prog` at `attach_type` (`BPF_TCX_*`) of `ifindex`
/// (calling thread's netns), as an fd; it detaches when its last reference
/// goes.
pub fn tcx_link(
    prog: BorrowedFd<'_>,
    name: &str,
    ifindex: u32,
    attach_type: u32,
) -> Result<OwnedFd> {
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: size_of::<libbpf_sys::bpf_link_create_opts>() as libbpf_sys::size_t,
        ..Default::default()
    };
    // SAFETY: prog is a live program fd; opts is a fully initialised
    // bpf_link_create_opts with its size set (libbpf's OPTS convention) that
    // outlives the call; for tcx the target is the ifindex.
    let fd = unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifindex as i32, attach_type, &opts)
    };
    if fd < 0 {
        return Err(Error::new(
            ErrorKind::Dataplane,
            format!(
                "tcx attach of {name} to ifindex {ifindex} {} failed",
                tcx_hook_name(attach_type)
            ),
        )
        .with_details(io::Error::from_raw_os_error(-fd)));
    }
    // SAFETY: fd is a link fd the kernel just gave us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The per-attachment stub (include/natra.h): stores `slot` and
/// `generation` in skb->cb, tail-calls `progs[dir]`, and passes the packet
/// on (TC_ACT_UNSPEC, tcx's NEXT) if the jump cannot be made. Eleven raw
/// instructions, no ELF and no BTF: the verifier takes microseconds.
pub fn load_stub(
    progs: BorrowedFd<'_>,
    dir: u32,
    slot: u32,
    generation: u32,
    name: &str,
) -> Result<OwnedFd> {
    use libbpf_sys::bpf_insn;
    fn insn(code: u32, dst: u8, src: u8, off: i16, imm: i32) -> bpf_insn {
        bpf_insn {
            code: code as u8,
            _bitfield_align_1: [],
            _bitfield_1: bpf_insn::new_bitfield_1(dst, src),
            off,
            imm,
        }
    }
    let cb = crate::contract::NATRA_SKB_CB_OFFSET as i16;
    let word = size_of::<u32>() as i16;
    let mov_imm = libbpf_sys::BPF_ALU64 | libbpf_sys::BPF_MOV | libbpf_sys::BPF_K;
    let stx_w = libbpf_sys::BPF_STX | libbpf_sys::BPF_MEM | libbpf_sys::BPF_W;
    let ld_dw = libbpf_sys::BPF_LD | libbpf_sys::BPF_DW | libbpf_sys::BPF_IMM;
    let slot_off = cb + word * crate::contract::NATRA_CB_SLOT as i16;
    let gen_off = cb + word * crate::contract::NATRA_CB_GENERATION as i16;
    let insns = [
        insn(mov_imm, 2, 0, 0, slot as i32),
        insn(stx_w, 1, 2, slot_off, 0),
        insn(mov_imm, 2, 0, 0, generation as i32),
        insn(stx_w, 1, 2, gen_off, 0),
        insn(
            ld_dw,
            2,
            libbpf_sys::BPF_PSEUDO_MAP_FD as u8,
            0,
            progs.as_raw_fd(),
        ),
        insn(0, 0, 0, 0, 0),
        insn(mov_imm, 3, 0, 0, dir as i32),
        insn(
            libbpf_sys::BPF_JMP | libbpf_sys::BPF_CALL,
            0,
            0,
            0,
            libbpf_sys::BPF_FUNC_tail_call as i32,
        ),
        insn(mov_imm, 0, 0, 0, -1),
        insn(libbpf_sys::BPF_JMP | libbpf_sys::BPF_EXIT, 0, 0, 0, 0),
    ];
    let mut opts = libbpf_sys::bpf_prog_load_opts {
        sz: size_of::<libbpf_sys::bpf_prog_load_opts>() as libbpf_sys::size_t,
        ..Default::default()
    };
    let c_name = CString::new(name).context(ErrorKind::Dataplane, "bad stub name")?;
    let license = c"Dual BSD/GPL";
    // SAFETY: name and license are NUL-terminated strings, insns a live
    // array of insns.len() instructions, and opts a fully initialised
    // bpf_prog_load_opts with its size set (libbpf's OPTS convention), which
    // libbpf may write back into; all outlive the call. progs stays open
    // across it.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_SCHED_CLS,
            c_name.as_ptr(),
            license.as_ptr(),
            insns.as_ptr(),
            insns.len() as libbpf_sys::size_t,
            &mut opts,
        )
    };
    if fd < 0 {
        return Err(Error::new(
            ErrorKind::Dataplane,
            format!("cannot load the {name} stub of slot {slot}"),
        )
        .with_details(io::Error::from_raw_os_error(-fd)));
    }
    // SAFETY: fd is a program fd the kernel just gave us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An fd of the BTF object `id` (to make a map typed like one of natra's).
pub fn btf_fd_by_id(id: u32) -> Result<OwnedFd> {
    // SAFETY: a plain syscall wrapper taking an integer id.
    let fd = unsafe { libbpf_sys::bpf_btf_get_fd_by_id(id) };
    if fd < 0 {
        return Err(
            Error::new(ErrorKind::Dataplane, format!("cannot open BTF {id}"))
                .with_details(io::Error::from_raw_os_error(-fd)),
        );
    }
    // SAFETY: fd is a BTF fd the kernel just gave us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// BPF_PROG_RUN of the program behind `prog` on `data`, `repeat` times:
/// its return value and the kernel's mean duration per run.
pub fn prog_test_run(
    prog: BorrowedFd<'_>,
    data: &[u8],
    repeat: u32,
) -> Result<(u32, std::time::Duration)> {
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: size_of::<libbpf_sys::bpf_test_run_opts>() as libbpf_sys::size_t,
        data_in: data.as_ptr().cast::<c_void>(),
        data_size_in: data.len() as u32,
        repeat: repeat as i32,
        ..Default::default()
    };
    // SAFETY: prog is a live program fd; opts is a fully initialised
    // bpf_test_run_opts with its size set whose data_in points at data.len()
    // readable bytes that outlive the call; no output buffers are given, and
    // the kernel writes only retval and duration back into opts.
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    check_rc(rc, "BPF_PROG_RUN failed")?;
    Ok((
        opts.retval,
        std::time::Duration::from_nanos(u64::from(opts.duration)),
    ))
}

/// `ingress` / `egress` for a `BPF_TCX_*` attach type.
pub fn tcx_hook_name(attach_type: u32) -> &'static str {
    if attach_type == libbpf_sys::BPF_TCX_INGRESS {
        "ingress"
    } else {
        "egress"
    }
}

/// The id of the program pinned at `path`; None when there is no pin.
pub fn pinned_prog_id(path: &Path) -> Result<Option<u32>> {
    if !path.exists() {
        return Ok(None);
    }
    let fd = Program::fd_from_pinned_path(path).context(
        ErrorKind::Dataplane,
        format!("cannot open the program pin {}", path.display()),
    )?;
    Program::id_from_fd(fd.as_fd()).map(Some).context(
        ErrorKind::Dataplane,
        format!("cannot read the id of {}", path.display()),
    )
}

/// Where a pinned tcx link is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcxTarget {
    pub ifindex: u32,
    /// A `libbpf_sys::BPF_TCX_*` value.
    pub attach_type: u32,
}

pub fn pinned_tcx_target(pin: &Path) -> Result<TcxTarget> {
    let link = read_link(
        pin,
        ErrorKind::CheckMismatch,
        format!("link pin {} is missing", pin.display()),
    )?;
    link.tcx.ok_or_else(|| {
        Error::new(
            ErrorKind::CheckMismatch,
            format!("link {} is not a tcx link", pin.display()),
        )
        .with_details("natra pins only tcx links under that name")
    })
}

/// What a pinned link says about itself (natra inspect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSummary {
    pub link_id: u32,
    pub prog_id: u32,
    /// Where it is attached, for a tcx link.
    pub tcx: Option<TcxTarget>,
    /// What the kernel charges the link's fd for.
    pub memlock: u64,
}

pub fn pinned_link(pin: &Path) -> Result<LinkSummary> {
    read_link(
        pin,
        ErrorKind::Dataplane,
        format!("cannot open {}", pin.display()),
    )
}

/// The link pinned at `pin`; `missing` is the error when it cannot be opened.
fn read_link(pin: &Path, kind: ErrorKind, missing: String) -> Result<LinkSummary> {
    let link = Link::open(pin).context(kind, missing)?;
    let info = link.info().context(
        ErrorKind::Dataplane,
        format!("cannot read link info of {}", pin.display()),
    )?;
    Ok(LinkSummary {
        link_id: info.id,
        prog_id: info.prog_id,
        tcx: match info.info {
            LinkTypeInfo::Tcx(tcx) => Some(TcxTarget {
                ifindex: tcx.ifindex,
                attach_type: tcx.attach_type as u32,
            }),
            _ => None,
        },
        memlock: fdinfo_memlock(link.as_fd()),
    })
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

/// What the kernel charges an object's fd for (`memlock:` in fdinfo).
pub fn fdinfo_memlock(fd: BorrowedFd<'_>) -> u64 {
    fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// What the kernel charges program `prog_id` for; None if it is gone.
pub fn prog_memlock(prog_id: u32) -> Option<u64> {
    let fd = Program::fd_from_id(prog_id).ok()?;
    Some(fdinfo_memlock(fd.as_fd()))
}

/// libbpf's identity of the filter at `handle` and `priority` of
/// `attach_point` of `ifindex`, without a program: what query and detach
/// need (libbpf-rs's TcHook insists on a program fd).
fn tc_filter(
    ifindex: u32,
    attach_point: TcAttachPoint,
    handle: u32,
    priority: u32,
) -> (libbpf_sys::bpf_tc_hook, libbpf_sys::bpf_tc_opts) {
    let tc_hook = libbpf_sys::bpf_tc_hook {
        sz: size_of::<libbpf_sys::bpf_tc_hook>() as libbpf_sys::size_t,
        ifindex: ifindex as i32,
        attach_point,
        ..Default::default()
    };
    let opts = libbpf_sys::bpf_tc_opts {
        sz: size_of::<libbpf_sys::bpf_tc_opts>() as libbpf_sys::size_t,
        handle,
        priority,
        ..Default::default()
    };
    (tc_hook, opts)
}

/// The id of the program in the cls_bpf filter at `handle` and `priority`
/// (calling thread's netns); the errno libbpf reports otherwise.
pub fn tc_query(
    ifindex: u32,
    attach_point: TcAttachPoint,
    handle: u32,
    priority: u32,
) -> std::result::Result<u32, Errno> {
    let (tc_hook, mut opts) = tc_filter(ifindex, attach_point, handle, priority);
    // SAFETY: both structs are fully initialised with their sizes set, as
    // libbpf's OPTS convention requires, and live across the call; libbpf
    // only writes opts.prog_id.
    let rc = unsafe { libbpf_sys::bpf_tc_query(&tc_hook, &mut opts) };
    if rc == 0 {
        Ok(opts.prog_id)
    } else {
        Err(Errno::from_raw(-rc))
    }
}

/// Removes the cls_bpf filter at `handle` and `priority` (calling thread's
/// netns); the errno libbpf reports if it cannot.
pub fn tc_detach(
    ifindex: u32,
    attach_point: TcAttachPoint,
    handle: u32,
    priority: u32,
) -> std::result::Result<(), Errno> {
    let (tc_hook, opts) = tc_filter(ifindex, attach_point, handle, priority);
    // SAFETY: as in tc_query; libbpf only reads both structs.
    let rc = unsafe { libbpf_sys::bpf_tc_detach(&tc_hook, &opts) };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw(-rc))
    }
}

#[cfg(test)]
mod tests {
    use libbpf_rs::{MapHandle, MapType};

    use super::*;

    fn array(value_size: u32) -> MapHandle {
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: size_of::<libbpf_sys::bpf_map_create_opts>() as libbpf_sys::size_t,
            ..Default::default()
        };
        MapHandle::create(MapType::Array, Some("natra_test"), 4, value_size, 1, &opts)
            .expect("BPF_MAP_CREATE (needs root)")
    }

    #[test]
    #[ignore = "needs root: creates BPF maps"]
    fn values_must_fit_the_maps_sizes() {
        let small = array(4);
        update(small.as_fd(), &0u32, &7u32, "write").unwrap();
        assert_eq!(lookup::<u32, u32>(small.as_fd(), &0, "read").unwrap(), 7);
        // A shorter value (an older natra's map) reads into a longer type.
        let cfg: natra_config = lookup(small.as_fd(), &0u32, "read").unwrap();
        assert_eq!(cfg.direction.0, 7);
        // Never written from a type of another size, never read into a
        // shorter one.
        let e = update(small.as_fd(), &0u32, &natra_config::default(), "write").unwrap_err();
        assert!(e.details.contains("4-byte values"), "{e}");
        let big = array(size_of::<natra_config>() as u32);
        assert!(lookup::<u32, u32>(big.as_fd(), &0, "read").is_err());
        // natra_config and natra_counters may be the same size: another one.
        let other = array(size_of::<natra_counters>() as u32 + 8);
        assert!(lookup_per_cpu::<u32, natra_counters>(other.as_fd(), &0, "read").is_err());
    }
}
