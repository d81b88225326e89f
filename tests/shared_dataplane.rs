//! The shared dataplane (docs/dataplane.md, "One dataplane per node") through
//! the real kernel path, with real traffic: a slot given to a new Pod never
//! carries its last owner's state nor its last owner's stub's packets; a new
//! veth that gets a dead one's ifindex is never touched by the dead one's
//! leftovers; two state layouts serve Pods side by side and GC removes the
//! old one once no Pod uses it; an in-place upgrade of the programs under a
//! live UDP flow loses no datagram and no count; a node out of slots falls
//! back to a private load.
//!
//! Pods are made through libcni (ptp + host-local + natra, tests/common/pod.rs);
//! the test hooks of src/dataplane/faults.rs (NATRA_TEST_LAYOUT_ID,
//! NATRA_TEST_PROGRAM_ID, NATRA_TEST_SLOTS) reach natra through cnitool's
//! environment. Figures are printed (run with --nocapture to see them).
mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::iperf::{client_command, report, IperfServer};
use common::kernel::{self, TcxHook};
use common::plugin::{inspect_all, natra_raw};
use common::pod::{bandwidth, host_veth, net_prefix, pod_ip, run, run_ok, Pod, TestNet};
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use serde_json::{json, Value};

/// Measured rates must land within ±10% of the cap.
const TOLERANCE: f64 = 0.10;
/// The shared maps' geometry (include/natra.h).
const SKETCH_CELLS_PER_DIRECTION: u32 = 512;
const EGRESS: u64 = 1;

// ---------------------------------------------------------------- helpers

/// The Pod interface's entry in `natra inspect --json`.
fn view(pod: &Pod) -> Value {
    let dir = pod.pin_dir();
    inspect_all(&pod.net.pin_root)
        .into_iter()
        .find(|a| a["pinDir"].as_str() == dir.to_str())
        .unwrap_or_else(|| panic!("natra inspect does not show {}", dir.display()))
}

fn num(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what} is not an unsigned number: {v}"))
}

fn int(v: &Value, what: &str) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// (dataplane, slot, generation) as `natra inspect` shows the record.
fn placement(v: &Value) -> (String, u64, u64) {
    let a = &v["attachment"];
    (
        a["dataplane"]
            .as_str()
            .unwrap_or_else(|| panic!("no attachment.dataplane in {v}"))
            .to_owned(),
        num(&a["slot"], "attachment.slot"),
        num(&a["generation"], "attachment.generation"),
    )
}

/// `<pin root>/~dataplane/<layout>` of a view whose dataplane is shared.
fn dataplane_dir(net: &TestNet, v: &Value) -> PathBuf {
    let (dp, _, _) = placement(v);
    let layout = dp
        .strip_prefix("shared ")
        .unwrap_or_else(|| panic!("not on a shared dataplane: {dp}"));
    net.pin_root.join("~dataplane").join(layout)
}

/// The layout directories under `~dataplane`, sorted.
fn layouts(net: &TestNet) -> Vec<String> {
    let mut out: Vec<String> = match std::fs::read_dir(net.pin_root.join("~dataplane")) {
        Ok(e) => e
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Every counter of both directions, as `natra inspect` sums them over CPUs.
fn counters(v: &Value) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for d in ["pod_ingress", "pod_egress"] {
        let c = &v["directions"][d]["counters"];
        let obj = c
            .as_object()
            .unwrap_or_else(|| panic!("{d}: counters are not an object: {v}"));
        for (k, n) in obj {
            out.push((format!("{d}.{k}"), num(n, k)));
        }
    }
    out.sort();
    out
}

fn counter(v: &Value, dir: &str, name: &str) -> u64 {
    num(&v["directions"][dir]["counters"][name], name)
}

/// (passed, dropped) packets of the shared dataplane's `key` (slot x 2 +
/// direction), summed over CPUs, read straight from the pinned map: what a
/// slot holds whoever (if anyone) owns it.
fn raw_counters(dp_dir: &Path, key: u32) -> (u64, u64) {
    let map = MapHandle::from_pinned_path(dp_dir.join("counters")).expect("counters pin");
    let cpus = map
        .lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY)
        .expect("counters lookup")
        .expect("a counters entry");
    let word = |b: &[u8], i: usize| u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
    // struct natra_counters: passed_packets is word 0, dropped_packets word 10.
    cpus.iter()
        .fold((0, 0), |(p, d), b| (p + word(b, 0), d + word(b, 10)))
}

/// Non-zero sketch cells of `slot` (both directions) in the shared sketch.
fn sketch_cells_in_use(dp_dir: &Path, slot: u64) -> usize {
    let map = MapHandle::from_pinned_path(dp_dir.join("sketch")).expect("sketch pin");
    let first = slot as u32 * 2 * SKETCH_CELLS_PER_DIRECTION;
    (first..first + 2 * SKETCH_CELLS_PER_DIRECTION)
        .filter(|k| {
            let v = map
                .lookup(&k.to_ne_bytes(), MapFlags::ANY)
                .expect("sketch lookup")
                .expect("a sketch cell");
            v.iter().any(|&b| b != 0)
        })
        .count()
}

/// The program ids in the shared dataplane's `programs` array (pod_ingress,
/// pod_egress), as the kernel returns them to user space.
fn program_array(dp_dir: &Path) -> [u32; 2] {
    let map = MapHandle::from_pinned_path(dp_dir.join("programs")).expect("programs pin");
    [0u32, 1].map(|k| {
        let v = map
            .lookup(&k.to_ne_bytes(), MapFlags::ANY)
            .expect("programs lookup")
            .unwrap_or_else(|| panic!("programs[{k}] is empty"));
        u32::from_ne_bytes(v[..4].try_into().unwrap())
    })
}

/// The `pod_ingress_<id>` / `pod_egress_<id>` program pins of a dataplane.
fn program_pins(dp_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dp_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pod_"))
        .collect();
    out.sort();
    out
}

/// Whether program `id` is gone within a few seconds (the kernel frees a
/// program after an RCU grace period once its last reference goes).
fn prog_gone(id: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while prog_fd_by_id(id).is_some() {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
    true
}

fn prog_fd_by_id(id: u32) -> Option<OwnedFd> {
    // SAFETY: plain syscall wrapper; a non-negative return is an fd we own.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    // SAFETY: fd was just returned to us and nobody else owns it.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A tcx link of `prog` at `hook` of the host device `ifindex`, made behind
/// natra's back; detached when the fd is dropped.
fn tcx_attach(prog: &OwnedFd, ifindex: u32, hook: TcxHook) -> OwnedFd {
    // SAFETY: prog is a live program fd; a null opts is allowed.
    let fd = unsafe {
        libbpf_sys::bpf_link_create(
            prog.as_raw_fd(),
            ifindex as i32,
            hook.attach_type(),
            std::ptr::null(),
        )
    };
    assert!(
        fd >= 0,
        "bpf_link_create on ifindex {ifindex}: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd was just returned to us and nobody else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// CNI GC of `net` (called directly: Debian's libcni predates GC) keeping
/// `valid` container ids on eth0, with `env` for natra.
fn gc(net: &TestNet, valid: &[&str], env: &[(&str, &str)]) {
    let list: Vec<Value> = valid
        .iter()
        .map(|id| json!({"containerID": id, "ifname": "eth0"}))
        .collect();
    let conf = json!({"cniVersion": "1.1.0", "name": net.net_name, "type": "natra",
                      "cni.dev/valid-attachments": list});
    let mut all = vec![("CNI_COMMAND", "GC")];
    all.extend_from_slice(env);
    let out = natra_raw(&all, &net.pin_root, &conf.to_string());
    assert!(
        out.status.success(),
        "GC failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One UDP iperf3 run's figures.
#[derive(Debug, Clone, Copy)]
struct Udp {
    sent_bps: f64,
    received_bps: f64,
    /// Datagrams the client sent and the server counted lost (end.sum).
    packets: u64,
    lost: u64,
}

fn udp_figures(r: &Value) -> Udp {
    let end = &r["end"];
    let sum = &end["sum"];
    Udp {
        sent_bps: end["sum_sent"]["bits_per_second"]
            .as_f64()
            .or(sum["bits_per_second"].as_f64())
            .unwrap_or_else(|| panic!("no sent rate in {end}")),
        received_bps: end["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or_else(|| panic!("no end.sum_received in {end}")),
        packets: num(&sum["packets"], "end.sum.packets"),
        lost: num(&sum["lost_packets"], "end.sum.lost_packets"),
    }
}

/// UDP from `client` to an iperf3 server started in `server` on `port`:
/// `offered` (iperf3's -b), `secs` measured after `omit` omitted.
fn udp(
    client: &Pod,
    server: &Pod,
    server_ip: &str,
    port: u16,
    offered: &str,
    secs: u32,
    omit: u32,
) -> Udp {
    let srv = IperfServer::start(server, port);
    let out = run(
        client_command(client, server_ip, port, secs + omit + 20, secs, omit).args([
            "-u",
            "-b",
            offered,
            "-l",
            "1400",
            "--connect-timeout",
            "3000",
        ]),
    );
    let figures = udp_figures(&report(&out));
    srv.finish();
    figures
}

fn mbit(bps: f64) -> f64 {
    bps / 1e6
}

fn assert_limited(what: &str, m: &Udp, cap: f64) {
    eprintln!(
        "{what}: offered {:.2} Mbit/s, received {:.2} Mbit/s = {:.3} of the {:.0} Mbit/s cap",
        mbit(m.sent_bps),
        mbit(m.received_bps),
        m.received_bps / cap,
        mbit(cap)
    );
    assert!(
        m.sent_bps > cap * 1.5,
        "{what}: the offered load ({:.2} Mbit/s) does not exceed the cap",
        mbit(m.sent_bps)
    );
    let ratio = m.received_bps / cap;
    assert!(
        (1.0 - TOLERANCE..=1.0 + TOLERANCE).contains(&ratio),
        "{what}: {:.2} Mbit/s received is {ratio:.3} of the {:.0} Mbit/s cap",
        mbit(m.received_bps),
        mbit(cap)
    );
}

/// No IPv6 in the Pod's netns (its interfaces made later inherit
/// `default`): router solicitations and MLD reports would tick a Pod's
/// counters while a test proves nobody else's packets do.
fn quiet_ipv6(pod: &Pod) {
    for key in ["all", "default"] {
        run_ok(
            pod.exec("sysctl")
                .args(["-qw", &format!("net.ipv6.conf.{key}.disable_ipv6=1")]),
        );
    }
}

// ------------------------------------------------------------------ tests

/// Pod A fills its slot with state (counters, sketch, a drained bucket),
/// vanishes without DEL, GC frees the slot; A's egress stub, kept alive,
/// is re-attached to another Pod's veth. B gets the same slot under a new
/// generation, starts from zero, is limited at its own rate, and the old
/// stub's packets are never charged to it.
#[test]
#[ignore = "needs root: netns + bpffs + traffic (run via make test)"]
fn a_new_pod_in_a_reused_slot_never_sees_the_old_state() {
    common::require_root();
    let net = TestNet::new("sd-reuse", 201);
    let a_cap = 20_000_000u64;
    let b_cap = 10_000_000u64;
    let server = net.pod("srv");
    let ip = pod_ip(&server.add(None).ok());
    // C is unlimited: natra pins nothing for it; it carries A's old stub.
    let c = net.pod("c");
    let c_veth = host_veth(&c.add(None).ok());
    let a = net.pod("a");
    a.add(Some(&bandwidth(Some(a_cap), Some(a_cap)))).ok();

    let a_view = view(&a);
    let (a_dp, a_slot, a_gen) = placement(&a_view);
    assert!(a_dp.starts_with("shared "), "A is not shared: {a_dp}");
    let dp_dir = dataplane_dir(&net, &a_view);
    let a_stub = kernel::pinned_tcx(&a.pin_dir().join("pod_egress_link")).prog_id;
    assert_eq!(kernel::prog_name(a_stub), "pod_egress");

    // A's state made non-trivial: a UDP flow at twice its egress cap.
    let m = {
        let _exclusive = common::quiet::measuring();
        udp(&a, &server, &ip, 58911, "40M", 2, 0)
    };
    eprintln!(
        "A's flow: {:.2} Mbit/s received of {:.2} offered",
        mbit(m.received_bps),
        mbit(m.sent_bps)
    );
    let a_used = view(&a);
    let a_eg = &a_used["directions"]["pod_egress"];
    let a_passed = counter(&a_used, "pod_egress", "passed_packets");
    let a_dropped = counter(&a_used, "pod_egress", "dropped_packets");
    let a_full = num(&a_eg["config"]["burst_bytes"], "burst_bytes") as i64 * 1_000_000_000;
    let a_level = int(&a_eg["bucket"]["level"], "bucket.level");
    let a_cells = sketch_cells_in_use(&dp_dir, a_slot);
    eprintln!(
        "A (slot {a_slot}, generation {a_gen}): {a_passed} passed, {a_dropped} dropped, \
         bucket level {a_level} of {a_full}, epoch {}, {a_cells} sketch cells in use",
        a_eg["bucket"]["epoch"]
    );
    assert!(a_passed > 1000 && a_dropped > 100, "A's counters: {a_eg}");
    assert!(a_level < a_full, "A's bucket was never charged: {a_eg}");
    assert!(
        num(&a_eg["bucket"]["epoch"], "epoch") > 0
            && num(&a_eg["bucket"]["heavy_seen"], "seen") != 0,
        "A's bucket saw no heavy flow: {a_eg}"
    );
    assert!(a_cells > 0, "A's flow left nothing in the sketch");

    // A's egress stub outlives A: a reference held here, as a stale link or
    // a program pinned elsewhere would hold it.
    let old_stub = prog_fd_by_id(a_stub).expect("A's stub");
    // A vanishes as a crashed runtime leaves it: netns and veth gone, no DEL.
    a.delete_netns();
    // The runtime's GC no longer lists A: its attachment and its slot go.
    gc(&net, &[&server.id, &c.id], &[]);
    assert_eq!(a.pins(), None, "GC left A's pins");
    let slot_pin = dp_dir.join("slots").join(a_slot.to_string());
    assert!(!slot_pin.exists(), "GC left A's {}", slot_pin.display());

    // A's old stub on C's host veth (C's egress): it still reaches the
    // shared program and, while nobody claimed the slot again, the slot's
    // counters, which A's generation still owns. This proves the stub is on
    // C's path; what matters is what it does once the slot is B's.
    let c_ifindex = kernel::ifindex(&c_veth).expect("C's host veth");
    let _old_link = tcx_attach(&old_stub, c_ifindex, TcxHook::Ingress);
    let key = a_slot as u32 * 2 + EGRESS as u32;
    let before = raw_counters(&dp_dir, key);
    let m = {
        let _exclusive = common::quiet::measuring();
        udp(&c, &server, &ip, 58912, "40M", 1, 0)
    };
    let after = raw_counters(&dp_dir, key);
    eprintln!(
        "C through A's old stub before the slot is reused: {:.2} Mbit/s, slot counters \
         (passed, dropped) {before:?} -> {after:?}",
        mbit(m.received_bps)
    );
    assert!(
        after.0 + after.1 > before.0 + before.1 + 1000,
        "A's old stub on C's veth is not on C's path: {before:?} -> {after:?}"
    );

    // B: the same slot, a new generation, nothing of A's.
    let b = net.pod("b");
    quiet_ipv6(&b);
    b.add(Some(&bandwidth(None, Some(b_cap)))).ok();
    let b_view = view(&b);
    let (b_dp, b_slot, b_gen) = placement(&b_view);
    eprintln!("B: {b_dp}, slot {b_slot}, generation {b_gen} (A had {a_gen})");
    assert_eq!(
        (b_dp.as_str(), b_slot),
        (a_dp.as_str(), a_slot),
        "B got another slot"
    );
    assert_ne!(b_gen, a_gen, "B holds the slot under A's generation");
    assert!(b_gen > a_gen, "generation went back: {a_gen} -> {b_gen}");
    let nonzero: Vec<_> = counters(&b_view)
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .collect();
    assert!(
        nonzero.is_empty(),
        "B starts with A's counters: {nonzero:?}"
    );
    assert_eq!(
        sketch_cells_in_use(&dp_dir, b_slot),
        0,
        "B's sketch cells hold A's flows"
    );
    let b_eg = &b_view["directions"]["pod_egress"];
    let b_full = num(&b_eg["config"]["burst_bytes"], "burst_bytes") as i64 * 1_000_000_000;
    assert_eq!(
        num(&b_eg["config"]["rate_bytes_per_sec"], "rate"),
        b_cap / 8
    );
    assert_eq!(num(&b_eg["config"]["generation"], "generation"), b_gen);
    assert_eq!(int(&b_eg["bucket"]["level"], "level"), b_full, "{b_eg}");
    for field in ["epoch", "heavy_seen", "heavy_seen_prev", "clock_jiffies"] {
        assert_eq!(
            num(&b_eg["bucket"][field], field),
            0,
            "B's bucket.{field} is A's: {b_eg}"
        );
    }
    // B limits egress only: A's ingress limit is gone from the slot.
    let b_in = &b_view["directions"]["pod_ingress"];
    assert_eq!(
        num(&b_in["config"]["rate_bytes_per_sec"], "rate"),
        0,
        "B's unlimited ingress holds A's config: {b_in}"
    );
    assert_eq!(
        int(&b_in["bucket"]["level"], "level"),
        0,
        "B's ingress bucket holds A's level: {b_in}"
    );

    // B is limited at its own rate, not A's.
    let m = {
        let _exclusive = common::quiet::measuring();
        udp(&b, &server, &ip, 58913, "20M", 3, 1)
    };
    assert_limited("B, UDP egress", &m, b_cap as f64);

    // A's old stub carries C's flow again: not one packet of it is B's.
    let b_before = counters(&view(&b));
    let slot_before = raw_counters(&dp_dir, key);
    let m = {
        let _exclusive = common::quiet::measuring();
        udp(&c, &server, &ip, 58914, "40M", 2, 0)
    };
    let b_after = counters(&view(&b));
    eprintln!(
        "C through A's old stub after B took the slot: {:.2} Mbit/s of {:.2} offered \
         ({} datagrams); B's slot (passed, dropped) {slot_before:?} -> {:?}",
        mbit(m.received_bps),
        mbit(m.sent_bps),
        m.packets,
        raw_counters(&dp_dir, key)
    );
    assert!(m.packets > 5000, "C's flow was too small to tell: {m:?}");
    assert_eq!(
        b_before, b_after,
        "packets through A's old stub were charged to B"
    );
    assert!(
        m.received_bps > m.sent_bps * 0.9,
        "A's old stub limited C's flow at B's rate: {:.2} of {:.2} Mbit/s",
        mbit(m.received_bps),
        mbit(m.sent_bps)
    );
}

/// Runs natra directly (not through libcni) for a Pod whose veth the test
/// made itself; returns its output.
fn natra_direct(
    verb: &str,
    pod: &Pod,
    mode: &str,
    bw: &Value,
    address: &str,
    env: &[(&str, &str)],
) -> Output {
    let netns = pod.netns_path.to_str().unwrap();
    let conf = json!({
        "cniVersion": "1.0.0", "name": pod.net.net_name, "type": "natra",
        "attachMode": mode,
        "runtimeConfig": {"bandwidth": bw},
        "prevResult": {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": netns}],
            "ips": [{"address": address, "interface": 0}],
        },
    });
    let mut all = vec![
        ("CNI_COMMAND", verb),
        ("CNI_CONTAINERID", pod.id.as_str()),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    all.extend_from_slice(env);
    natra_raw(&all, &pod.net.pin_root, &conf.to_string())
}

fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `iperf3 -s -1` in the host netns bound to `ip`; killed on drop.
struct HostIperf(Child);

impl HostIperf {
    fn start(ip: &str, port: u16) -> HostIperf {
        let child = Command::new("iperf3")
            .args(["-s", "-1", "-J", "-B", ip, "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start iperf3 in the host netns");
        let server = HostIperf(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ss = run(Command::new("ss").args(["-Hltn", &format!("sport = :{port}")]));
            if !String::from_utf8_lossy(&ss.stdout).trim().is_empty() {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "iperf3 on {ip}:{port} never listened"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HostIperf {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The host veth the test made for a Pod; deleted on drop.
struct HostVeth(String);

impl Drop for HostVeth {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["link", "del", &self.0]));
    }
}

/// Program ids of natra's cls_bpf filters on a host device's hook.
fn clsact_prog_ids(dev: &str, hook: &str) -> Vec<u64> {
    let out = run_ok(Command::new("tc").args(["-j", "filter", "show", "dev", dev, hook]));
    if out.trim().is_empty() {
        return Vec::new();
    }
    let list: Value = serde_json::from_str(&out).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "bpf")
        .filter_map(|f| f["options"]["prog"]["id"].as_u64())
        .collect()
}

/// What natra has attached for a Pod on a host device: tcx link ids at
/// (ingress, egress), or cls_bpf program ids at (ingress, egress).
fn attached_on(dev: &str, ifindex: u32, tcx: bool) -> (Vec<u64>, Vec<u64>) {
    if tcx {
        let (i, e) = kernel::tcx_both(ifindex);
        let ids = |t: kernel::TcxAttached| t.link_ids.into_iter().map(u64::from).collect();
        (ids(i), ids(e))
    } else {
        (
            clsact_prog_ids(dev, "ingress"),
            clsact_prog_ids(dev, "egress"),
        )
    }
}

/// B's own objects as its pins name them, in the shape of [`attached_on`].
fn pinned_objects(pod: &Pod, tcx: bool) -> (Vec<u64>, Vec<u64>) {
    let dir = pod.pin_dir();
    if tcx {
        let id = |n: &str| vec![u64::from(kernel::pinned_tcx(&dir.join(n)).id)];
        (id("pod_egress_link"), id("pod_ingress_link"))
    } else {
        let id = |n: &str| {
            let p = dir.join(n);
            let info = kernel::bpftool_json(&["prog", "show", "pinned", p.to_str().unwrap()]);
            vec![num(&info["id"], "prog id")]
        };
        (id("pod_egress_prog"), id("pod_ingress_prog"))
    }
}

/// Pod A's veth dies without DEL; a new veth takes its host ifindex and B is
/// ADDed on it. A's leftovers (its DEL) never touch B, in tcx and clsact.
#[test]
#[ignore = "needs root: netns + bpffs + traffic (run via make test)"]
fn an_ifindex_reused_by_a_new_veth() {
    common::require_root();
    let cap = 10_000_000u64;
    let bw = bandwidth(Some(cap), Some(cap));
    for (mode, subnet, manual) in [
        ("tcx-hostside", 202u8, 212u8),
        ("clsact-hostside", 203, 213),
    ] {
        eprintln!("--- {mode}");
        let tcx = mode.starts_with("tcx");
        let net = TestNet::with_natra(
            &format!("sd-ifx-{}", &mode[..3]),
            subnet,
            json!({"type": "natra", "capabilities": {"bandwidth": true}, "attachMode": mode}),
        );
        let a = net.pod("a");
        let a_veth = host_veth(&a.add(Some(&bw)).ok());
        let index = kernel::ifindex(&a_veth).expect("A's host veth");
        assert_eq!(view(&a)["attachment"]["host_ifindex"], index);
        // A's veth dies with its netns; no DEL.
        a.delete_netns();

        // B's veth, made with A's ifindex (freed once the netns is gone).
        let b = net.pod("b");
        let b_veth = HostVeth(format!("nsd{}{}", &mode[..1], std::process::id() % 100_000));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = run(Command::new("ip").args([
                "link",
                "add",
                &b_veth.0,
                "index",
                &index.to_string(),
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &b.netns_name,
            ]));
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cannot make a veth with ifindex {index}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(kernel::ifindex(&b_veth.0), Some(index));
        let host_ip = format!("{}.{manual}.1", net_prefix());
        let b_ip = format!("{}.{manual}.2", net_prefix());
        run_ok(Command::new("ip").args([
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &b_veth.0,
        ]));
        run_ok(Command::new("ip").args(["link", "set", &b_veth.0, "up"]));
        run_ok(
            b.exec("ip")
                .args(["addr", "add", &format!("{b_ip}/30"), "dev", "eth0"]),
        );
        run_ok(b.exec("ip").args(["link", "set", "eth0", "up"]));
        run_ok(b.exec("ip").args(["link", "set", "lo", "up"]));
        let b_addr = format!("{b_ip}/30");
        assert_ok(
            "ADD of B",
            &natra_direct("ADD", &b, mode, &bw, &b_addr, &[]),
        );
        let b_view = view(&b);
        assert_eq!(b_view["attachment"]["host_ifindex"], index);
        let mine = pinned_objects(&b, tcx);
        assert_eq!(
            attached_on(&b_veth.0, index, tcx),
            mine,
            "B's objects are not what is attached to its veth"
        );

        let measure = |port: u16, what: &str| {
            let _exclusive = common::quiet::measuring();
            let srv = HostIperf::start(&host_ip, port);
            let out = run(client_command(&b, &host_ip, port, 30, 3, 1).args([
                "-u",
                "-b",
                "20M",
                "-l",
                "1400",
                "--connect-timeout",
                "3000",
            ]));
            let m = udp_figures(&report(&out));
            drop(srv);
            assert_limited(what, &m, cap as f64);
        };
        measure(
            58921 + u16::from(!tcx) * 2,
            &format!("{mode}: B before A's DEL"),
        );

        // A's leftovers: its DEL (no netns any more), then B's CHECK.
        a.del_without_netns().ok();
        assert_eq!(a.pins(), None, "A's DEL left its pins");
        assert_eq!(
            attached_on(&b_veth.0, index, tcx),
            mine,
            "A's DEL touched what B has on ifindex {index}"
        );
        if !tcx {
            let q = run_ok(Command::new("tc").args(["qdisc", "show", "dev", &b_veth.0]));
            assert!(q.contains("clsact"), "A's DEL removed B's clsact: {q}");
        }
        assert_ok(
            "CHECK of B",
            &natra_direct("CHECK", &b, mode, &bw, &b_addr, &[]),
        );
        measure(
            58922 + u16::from(!tcx) * 2,
            &format!("{mode}: B after A's DEL"),
        );

        assert_ok(
            "DEL of B",
            &natra_direct("DEL", &b, mode, &bw, &b_addr, &[]),
        );
        assert_eq!(attached_on(&b_veth.0, index, tcx), (vec![], vec![]));
        net.assert_pin_root_clean();
    }
}

const LAYOUT_A: &str = "aaaaaaaaaaaaaaaa";
const LAYOUT_B: &str = "bbbbbbbbbbbbbbbb";

/// Two natra versions with two state layouts: each loads its own
/// dataplane; Pods on both are limited at once; GC keeps the old layout
/// while a Pod uses it and removes it (only it) once none does.
#[test]
#[ignore = "needs root: netns + bpffs + traffic (run via make test)"]
fn two_layouts_serve_pods_at_once() {
    common::require_root();
    let net = TestNet::new("sd-layouts", 204);
    let (a_cap, b_cap) = (10_000_000u64, 20_000_000u64);
    let server = net.pod("srv");
    let ip = pod_ip(&server.add(None).ok());
    let a = net.pod("a");
    let b = net.pod("b");
    a.add_with_env(
        Some(&bandwidth(None, Some(a_cap))),
        &[("NATRA_TEST_LAYOUT_ID", LAYOUT_A)],
    )
    .ok();
    b.add_with_env(
        Some(&bandwidth(None, Some(b_cap))),
        &[("NATRA_TEST_LAYOUT_ID", LAYOUT_B)],
    )
    .ok();
    assert_eq!(placement(&view(&a)).0, format!("shared {LAYOUT_A}"));
    assert_eq!(placement(&view(&b)).0, format!("shared {LAYOUT_B}"));
    assert_eq!(layouts(&net), [LAYOUT_A, LAYOUT_B]);
    // Each dataplane's programs are its own.
    let dir = |l: &str| net.pin_root.join("~dataplane").join(l);
    let (pa, pb) = (program_array(&dir(LAYOUT_A)), program_array(&dir(LAYOUT_B)));
    assert!(
        pa.iter().all(|id| !pb.contains(id)),
        "two layouts share programs: {pa:?} {pb:?}"
    );

    // Both Pods at once, each at twice its cap.
    let (ma, mb) = {
        let _exclusive = common::quiet::measuring();
        let sa = IperfServer::start(&server, 58931);
        let sb = IperfServer::start(&server, 58932);
        let flow = |pod: &Pod, port: u16, offered: &str| {
            let mut cmd = client_command(pod, &ip, port, 30, 3, 1);
            cmd.args([
                "-u",
                "-b",
                offered,
                "-l",
                "1400",
                "--connect-timeout",
                "3000",
            ]);
            cmd
        };
        let (mut ca, mut cb) = (flow(&a, 58931, "20M"), flow(&b, 58932, "40M"));
        let (oa, ob) = thread::scope(|s| {
            let ha = s.spawn(|| run(&mut ca));
            let hb = s.spawn(|| run(&mut cb));
            (ha.join().unwrap(), hb.join().unwrap())
        });
        sa.finish();
        sb.finish();
        (udp_figures(&report(&oa)), udp_figures(&report(&ob)))
    };
    assert_limited("A (layout aaaa), at once with B", &ma, a_cap as f64);
    assert_limited("B (layout bbbb), at once with A", &mb, b_cap as f64);

    // GC by the bbbb natra: aaaa still serves A and stays.
    let as_b = [("NATRA_TEST_LAYOUT_ID", LAYOUT_B)];
    gc(&net, &[&server.id, &a.id, &b.id], &as_b);
    assert_eq!(
        layouts(&net),
        [LAYOUT_A, LAYOUT_B],
        "GC removed a live layout"
    );
    b.check(Some(&bandwidth(None, Some(b_cap)))).ok();
    a.check(Some(&bandwidth(None, Some(a_cap)))).ok();

    // A goes: the next GC removes aaaa's dataplane, and only it.
    a.del(Some(&bandwidth(None, Some(a_cap)))).ok();
    let a_progs: Vec<u32> = pa.to_vec();
    gc(&net, &[&server.id, &b.id], &as_b);
    assert_eq!(
        layouts(&net),
        [LAYOUT_B],
        "GC under bbbb kept or removed the wrong layout"
    );
    for id in a_progs {
        assert!(
            prog_gone(id),
            "layout aaaa's program {id} outlived its dataplane"
        );
    }
    b.check(Some(&bandwidth(None, Some(b_cap)))).ok();
    let m = {
        let _exclusive = common::quiet::measuring();
        udp(&b, &server, &ip, 58933, "40M", 3, 1)
    };
    assert_limited("B after aaaa's dataplane went", &m, b_cap as f64);
    b.del(Some(&bandwidth(None, Some(b_cap)))).ok();
    net.assert_pin_root_clean();
}

/// What one flow under swaps saw.
struct UnderSwaps {
    report: Value,
    /// natra's pod_egress (passed packets, passed bytes, dropped packets)
    /// during the flow.
    passed: u64,
    passed_bytes: u64,
    dropped: u64,
}

/// Runs an iperf3 flow (`flow_args`) for 6 s out of `p` while each of
/// `others` is ADDed as a natra with the BPF object `ids[i]` (so each ADD
/// swaps the shared programs in place); asserts the swaps landed inside the
/// flow, each put new programs in the array, and `p`'s own objects stayed.
#[allow(clippy::too_many_arguments)]
fn flow_under_swaps(
    what: &str,
    p: &Pod,
    server: &Pod,
    ip: &str,
    port: u16,
    flow_args: &[&str],
    others: &[Pod],
    ids: &[&str],
) -> UnderSwaps {
    let before = view(p);
    let dp_dir = dataplane_dir(p.net, &before);
    let links = || {
        ["pod_ingress_link", "pod_egress_link"].map(|l| kernel::pinned_tcx(&p.pin_dir().join(l)))
    };
    let p_links = links();
    let mut arrays = vec![program_array(&dp_dir)];
    let egress = |v: &Value, name: &str| counter(v, "pod_egress", name);

    // No common::quiet::measuring() here: the ADDs must run during the flow.
    let srv = IperfServer::start(server, port);
    let mut client = client_command(p, ip, port, 40, 6, 0);
    client.args(flow_args).args(["--connect-timeout", "3000"]);
    let started = Instant::now();
    let flow = client
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut swaps = Vec::new();
    thread::sleep(Duration::from_millis(1000));
    for (q, id) in others.iter().zip(ids) {
        let t = started.elapsed();
        q.add_with_env(
            Some(&bandwidth(None, Some(20_000_000))),
            &[("NATRA_TEST_PROGRAM_ID", id)],
        )
        .ok();
        swaps.push((t, started.elapsed()));
        arrays.push(program_array(&dp_dir));
        thread::sleep(Duration::from_millis(1200));
    }
    let out = flow.wait_with_output().unwrap();
    let flow_took = started.elapsed();
    srv.finish();
    let after = view(p);
    eprintln!(
        "{what}: swaps at (ADD start, end) {swaps:?} of a {:.1} s flow; programs array \
         (pod_ingress, pod_egress) {arrays:?}",
        flow_took.as_secs_f64()
    );
    for (i, (_, end)) in swaps.iter().enumerate() {
        assert!(
            *end + Duration::from_millis(500) < flow_took,
            "{what}: swap {i} ended at {end:?}, not well inside the flow ({flow_took:?})"
        );
    }
    // Every swap put new programs in the array, named by its object id.
    for i in 1..arrays.len() {
        for j in 0..i {
            for d in 0..2 {
                assert_ne!(
                    arrays[i][d], arrays[j][d],
                    "{what}: programs[{d}] did not change at swap {i}: {arrays:?}"
                );
            }
        }
    }
    let last = ids.last().unwrap();
    assert_eq!(
        program_pins(&dp_dir),
        [format!("pod_egress_{last}"), format!("pod_ingress_{last}")]
    );
    for (d, id) in arrays.last().unwrap().iter().enumerate() {
        assert_eq!(
            kernel::prog_name(*id),
            ["pod_ingress", "pod_egress"][d],
            "programs[{d}]"
        );
    }
    // The Pod's own objects never changed.
    assert_eq!(links(), p_links, "{what}: P's links or stubs changed");
    assert_eq!(placement(&after), placement(&before));
    UnderSwaps {
        report: report(&out),
        passed: egress(&after, "passed_packets") - egress(&before, "passed_packets"),
        passed_bytes: egress(&after, "passed_bytes") - egress(&before, "passed_bytes"),
        dropped: egress(&after, "dropped_packets") - egress(&before, "dropped_packets"),
    }
}

/// A UDP flow (then a TCP one) through a Pod limited far above it while
/// ADDs of other Pods, each as a natra with another BPF object, swap the
/// shared programs in place: no datagram lost (no TCP retransmission), the
/// Pod's links and stubs the same objects, the array's programs new each
/// time, every packet counted.
#[test]
#[ignore = "needs root: netns + bpffs + traffic (run via make test)"]
fn an_in_place_upgrade_under_iperf3_loses_nothing() {
    common::require_root();
    let net = TestNet::new("sd-upgrade", 205);
    let cap = 400_000_000u64;
    let server = net.pod("srv");
    let ip = pod_ip(&server.add(None).ok());
    let p = net.pod("p");
    p.add(Some(&bandwidth(Some(cap), Some(cap)))).ok();
    let others: Vec<Pod> = (1..=5).map(|i| net.pod(&format!("q{i}"))).collect();

    let udp_ids = ["1111111111111111", "2222222222222222", "3333333333333333"];
    let u = flow_under_swaps(
        "UDP",
        &p,
        &server,
        &ip,
        58941,
        &["-u", "-b", "50M", "-l", "1400"],
        &others[..3],
        &udp_ids,
    );
    let m = udp_figures(&u.report);
    eprintln!(
        "UDP {:.2} Mbit/s: {} datagrams sent, {} lost; natra passed {}, dropped {}",
        mbit(m.sent_bps),
        m.packets,
        m.lost,
        u.passed,
        u.dropped
    );
    assert!(
        m.packets > 20_000,
        "the flow sent only {} datagrams",
        m.packets
    );
    assert_eq!(m.lost, 0, "datagrams lost across the swaps: {m:?}");
    assert_eq!(u.dropped, 0, "natra dropped under its cap");
    assert!(
        u.passed >= m.packets,
        "natra counted {} passed packets of the {} datagrams sent: counts lost across the swaps",
        u.passed,
        m.packets
    );

    // TCP: two more swaps, back to back with the first three.
    let tcp_ids = ["4444444444444444", "5555555555555555"];
    let t = flow_under_swaps(
        "TCP",
        &p,
        &server,
        &ip,
        58942,
        &["-b", "50M"],
        &others[3..],
        &tcp_ids,
    );
    let sent = &t.report["end"]["sum_sent"];
    let (bytes, retransmits) = (
        num(&sent["bytes"], "bytes"),
        num(&sent["retransmits"], "retransmits"),
    );
    eprintln!(
        "TCP {:.2} Mbit/s: {bytes} B sent, {retransmits} retransmits; natra passed {} packets, \
         {} B, dropped {}",
        mbit(sent["bits_per_second"].as_f64().unwrap_or(0.0)),
        t.passed,
        t.passed_bytes,
        t.dropped
    );
    assert!(bytes > 20_000_000, "the TCP flow sent only {bytes} B");
    assert_eq!(retransmits, 0, "TCP retransmitted across the swaps");
    assert_eq!(t.dropped, 0, "natra dropped under its cap");
    assert!(
        t.passed_bytes >= bytes,
        "natra counted {} B passed of the {bytes} B TCP sent: counts lost across the swaps",
        t.passed_bytes
    );
    p.check(Some(&bandwidth(Some(cap), Some(cap)))).ok();
}

/// With one slot claimable, the second Pod gets a private load of its own,
/// is limited, and DEL leaves nothing of it.
#[test]
#[ignore = "needs root: netns + bpffs + traffic (run via make test)"]
fn slots_exhausted_falls_back_to_a_private_load() {
    common::require_root();
    let net = TestNet::new("sd-private", 206);
    let cap = 10_000_000u64;
    let bw = bandwidth(Some(cap), Some(cap));
    let one = [("NATRA_TEST_SLOTS", "1")];
    let server = net.pod("srv");
    let ip = pod_ip(&server.add(None).ok());
    let a = net.pod("a");
    let b = net.pod("b");
    a.add_with_env(Some(&bw), &one).ok();
    b.add_with_env(Some(&bw), &one).ok();
    let (a_view, b_view) = (view(&a), view(&b));
    assert!(placement(&a_view).0.starts_with("shared "), "{a_view}");
    assert_eq!(placement(&b_view).0, "private", "{b_view}");
    let dp_dir = dataplane_dir(&net, &a_view);
    assert_eq!(
        std::fs::read_dir(dp_dir.join("slots")).unwrap().count(),
        1,
        "the private load holds a slot"
    );
    // B's programs are its own load's, not the shared ones.
    let shared = program_array(&dp_dir);
    let b_programs = MapHandle::from_pinned_path(b.pin_dir().join("programs")).unwrap();
    let mut b_bodies = Vec::new();
    for k in [0u32, 1] {
        let v = b_programs
            .lookup(&k.to_ne_bytes(), MapFlags::ANY)
            .unwrap()
            .expect("B's program");
        b_bodies.push(u32::from_ne_bytes(v[..4].try_into().unwrap()));
    }
    // A user reference to a program array keeps its programs.
    drop(b_programs);
    assert!(
        b_bodies.iter().all(|id| !shared.contains(id)),
        "B runs the shared programs: {b_bodies:?} {shared:?}"
    );
    let b_stubs: Vec<u32> = ["pod_ingress_link", "pod_egress_link"]
        .iter()
        .map(|l| kernel::pinned_tcx(&b.pin_dir().join(l)).prog_id)
        .collect();

    let m = {
        let _exclusive = common::quiet::measuring();
        udp(&b, &server, &ip, 58951, "20M", 3, 1)
    };
    assert_limited("B on a private load, UDP egress", &m, cap as f64);
    assert!(counter(&view(&b), "pod_egress", "dropped_packets") > 0);

    b.del(Some(&bw)).ok();
    a.del(Some(&bw)).ok();
    net.assert_pin_root_clean();
    for id in b_bodies.into_iter().chain(b_stubs) {
        assert!(prog_gone(id), "B's private program {id} outlived its DEL");
    }
}
