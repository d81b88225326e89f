//! natra's CNI lifecycle driven through libcni (`cnitool`), as a container
//! runtime drives it, asserted against what the kernel holds: pinned links
//! read back with libbpf, tcx attachments of the host veth queried with
//! BPF_PROG_QUERY, maps dumped with bpftool.
//!
//! Every test has its own pin root, netns names, subnet, caches and
//! container IDs (see tests/common/pod.rs), so they run in parallel.
mod common;

use std::fs;
use std::process::Command;

use common::kernel::{self, TcxHook};
use common::pod::{bandwidth, host_veth, net_prefix, pod_ip, run_ok, Pod, TestNet};
use serde_json::Value;

/// 20 Mbit/s = 2 500 000 B/s in natra's config map.
const RATE_BITS: u64 = 20_000_000;
const RATE_BYTES: u64 = RATE_BITS / 8;

fn names(list: &[&str]) -> Option<Vec<String>> {
    Some(list.iter().map(|s| s.to_string()).collect())
}

fn host_ifindex(veth: &str) -> u32 {
    kernel::ifindex(veth).unwrap_or_else(|| panic!("host veth {veth} does not exist"))
}

/// The host veth's ifindex as `ip -j link show` reports it.
fn ip_link_ifindex(veth: &str) -> u32 {
    let out = run_ok(Command::new("ip").args(["-j", "link", "show", "dev", veth]));
    let links: Value = serde_json::from_str(&out).unwrap();
    links[0]["ifindex"].as_u64().expect("ifindex in ip -j link") as u32
}

/// Both links pinned, each on the host veth at the right tcx hook, running
/// the right program, and the only thing at its hook. Returns the link IDs
/// (pod_ingress, pod_egress).
fn assert_both_links_on(pod: &Pod, veth: &str) -> (u32, u32) {
    let ifindex = host_ifindex(veth);
    assert_eq!(
        ifindex,
        ip_link_ifindex(veth),
        "sysfs and rtnetlink disagree"
    );
    let ingress = kernel::pinned_tcx(&pod.pin_dir().join("pod_ingress_link"));
    let egress = kernel::pinned_tcx(&pod.pin_dir().join("pod_egress_link"));
    assert_eq!(
        ingress.ifindex, ifindex,
        "pod_ingress_link is not on {veth}"
    );
    assert_eq!(egress.ifindex, ifindex, "pod_egress_link is not on {veth}");
    assert_eq!(
        ingress.attach_type,
        TcxHook::Egress.attach_type(),
        "traffic into the Pod leaves the host veth: pod_ingress belongs at tcx egress"
    );
    assert_eq!(
        egress.attach_type,
        TcxHook::Ingress.attach_type(),
        "traffic out of the Pod enters the host veth: pod_egress belongs at tcx ingress"
    );
    assert_eq!(kernel::prog_name(ingress.prog_id), "pod_ingress");
    assert_eq!(kernel::prog_name(egress.prog_id), "pod_egress");
    let (at_ingress, at_egress) = kernel::tcx_both(ifindex);
    assert_eq!(
        at_ingress.link_ids,
        vec![egress.id],
        "tcx ingress of {veth} must hold exactly natra's pod_egress link"
    );
    assert_eq!(
        at_egress.link_ids,
        vec![ingress.id],
        "tcx egress of {veth} must hold exactly natra's pod_ingress link"
    );
    (ingress.id, egress.id)
}

fn assert_no_tcx_on(veth: &str) {
    let ifindex = host_ifindex(veth);
    let (at_ingress, at_egress) = kernel::tcx_both(ifindex);
    assert!(
        at_ingress.prog_ids.is_empty() && at_egress.prog_ids.is_empty(),
        "programs still attached to {veth}: ingress {at_ingress:?}, egress {at_egress:?}"
    );
    // bpftool 7.1 predates tcx in `net show`; its tc list still proves no
    // clsact filter took over.
    let net = kernel::bpftool_json(&["net", "show", "dev", veth]);
    assert_eq!(
        net[0]["tc"],
        serde_json::json!([]),
        "tc programs on {veth}: {net}"
    );
    let links = kernel::tcx_link_ids_on(ifindex);
    assert!(
        links.is_empty(),
        "tcx links still on {veth} (ifindex {ifindex}): {links:?}"
    );
}

fn assert_links_gone(ids: &[u32]) {
    for &id in ids {
        assert!(
            !kernel::link_exists(id) && !kernel::bpftool_knows_link(id),
            "BPF link {id} outlived DEL"
        );
    }
}

fn config_rates(pod: &Pod) -> Vec<(u64, u64)> {
    kernel::slot_dump(&pod.pin_dir(), "config")
        .into_iter()
        .map(|(key, value)| {
            let rate = value["rate_bytes_per_sec"]
                .as_u64()
                .unwrap_or_else(|| panic!("no rate_bytes_per_sec in config entry {value}"));
            (key, rate)
        })
        .collect()
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn add_check_del_round_trip() {
    common::require_root();
    let net = TestNet::new("lc-roundtrip", 101);
    let pod = net.pod("a");
    let bw = bandwidth(Some(RATE_BITS), Some(RATE_BITS));

    let result = pod.add(Some(&bw)).ok();
    assert_eq!(result["cniVersion"], "1.0.0", "ADD result: {result}");
    let ip = pod_ip(&result);
    assert!(
        ip.starts_with(&format!("{}.101.", net_prefix())),
        "pod IP {ip} is not from the subnet: {result}"
    );
    let in_pod = run_ok(
        pod.exec("ip")
            .args(["-j", "-4", "addr", "show", "dev", "eth0"]),
    );
    assert!(
        in_pod.contains(&format!("\"{ip}\"")),
        "{ip} is not on the Pod's eth0: {in_pod}"
    );
    let veth = host_veth(&result);

    assert_eq!(
        pod.pins(),
        names(&common::PINS_BOTH_WAYS),
        "pins of {}",
        pod.pin_dir().display()
    );
    let (ingress_id, egress_id) = assert_both_links_on(&pod, &veth);
    assert_eq!(
        config_rates(&pod),
        vec![(0, RATE_BYTES), (1, RATE_BYTES)],
        "config map: key 0 = pod ingress, key 1 = pod egress, both at 20 Mbit/s"
    );

    assert_eq!(pod.check(Some(&bw)).ok(), serde_json::json!({"ok": true}));

    pod.del(Some(&bw)).ok();
    assert_eq!(pod.pins(), None, "pin dir outlived DEL");
    assert_eq!(kernel::ifindex(&veth), None, "ptp DEL removes the veth");
    assert_links_gone(&[ingress_id, egress_id]);

    pod.del(Some(&bw)).ok();
    assert_eq!(pod.pins(), None);
    net.assert_pin_root_clean();
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn egress_only_limit_attaches_only_pod_egress() {
    common::require_root();
    let net = TestNet::new("lc-egressonly", 102);
    let pod = net.pod("a");
    let bw = bandwidth(None, Some(RATE_BITS));

    let result = pod.add(Some(&bw)).ok();
    let veth = host_veth(&result);
    assert_eq!(
        pod.pins(),
        names(&[
            "attachment",
            "bucket",
            "config",
            "counters",
            "pod_egress_link",
            "programs"
        ]),
        "only the limited direction gets a link"
    );
    let ifindex = host_ifindex(&veth);
    let egress = kernel::pinned_tcx(&pod.pin_dir().join("pod_egress_link"));
    assert_eq!(
        (egress.ifindex, egress.attach_type),
        (ifindex, TcxHook::Ingress.attach_type())
    );
    let (at_ingress, at_egress) = kernel::tcx_both(ifindex);
    assert_eq!(at_ingress.link_ids, vec![egress.id]);
    assert!(
        at_egress.prog_ids.is_empty(),
        "nothing may sit at tcx egress: {at_egress:?}"
    );
    let rates = config_rates(&pod);
    assert!(
        rates.contains(&(1, RATE_BYTES)),
        "pod egress rate in config: {rates:?}"
    );
    assert!(
        !rates.iter().any(|&(k, r)| k == 0 && r != 0),
        "pod ingress must stay unlimited in config: {rates:?}"
    );

    pod.check(Some(&bw)).ok();
    pod.del(Some(&bw)).ok();
    assert_eq!(pod.pins(), None);
    assert_links_gone(&[egress.id]);
    net.assert_pin_root_clean();
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn add_without_bandwidth_pins_nothing() {
    common::require_root();
    let net = TestNet::new("lc-nobw", 103);
    let pod = net.pod("a");

    let result = pod.add(None).ok();
    assert_eq!(result["cniVersion"], "1.0.0");
    assert!(
        pod_ip(&result).starts_with(&format!("{}.103.", net_prefix())),
        "{result}"
    );
    assert_eq!(pod.pins(), None, "an unlimited Pod must not be pinned");
    let veth = host_veth(&result);
    assert_no_tcx_on(&veth);

    pod.check(None).ok();
    pod.del(None).ok();
    net.assert_pin_root_clean();
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn del_after_the_netns_is_gone() {
    common::require_root();
    let net = TestNet::new("lc-nsgone", 104);
    let bw = bandwidth(Some(RATE_BITS), Some(RATE_BITS));
    // a: the runtime passes the stale netns path; b: it passes none.
    let pod_a = net.pod("a");
    let pod_b = net.pod("b");
    let mut ids = Vec::new();
    for pod in [&pod_a, &pod_b] {
        let result = pod.add(Some(&bw)).ok();
        let (i, e) = assert_both_links_on(pod, &host_veth(&result));
        ids.extend([i, e]);
        pod.delete_netns();
        assert!(!pod.netns_path.exists());
    }

    pod_a.del(Some(&bw)).ok();
    assert_eq!(pod_a.pins(), None, "DEL with a stale netns path left pins");
    pod_b.del_without_netns().ok();
    assert_eq!(pod_b.pins(), None, "DEL without a netns left pins");
    assert_links_gone(&ids);
    net.assert_pin_root_clean();
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn check_notices_a_link_removed_behind_natras_back() {
    common::require_root();
    let net = TestNet::new("lc-chklink", 105);
    let pod = net.pod("a");
    let bw = bandwidth(Some(RATE_BITS), Some(RATE_BITS));
    let result = pod.add(Some(&bw)).ok();
    let veth = host_veth(&result);
    let (ingress_id, egress_id) = assert_both_links_on(&pod, &veth);
    pod.check(Some(&bw)).ok();
    let pin = pod.pin_dir().join("pod_ingress_link");

    // Detached, pin kept: the link no longer sits on the veth.
    kernel::detach_pinned(&pin);
    let (_, at_egress) = kernel::tcx_both(host_ifindex(&veth));
    assert!(
        at_egress.prog_ids.is_empty(),
        "detach did not take effect: {at_egress:?}"
    );
    let e = pod.check(Some(&bw)).err();
    assert_eq!(e.code, 101, "CHECK of a detached link: {e:?}");
    assert!(
        e.msg.contains("pod_ingress"),
        "CHECK must name the direction: {e:?}"
    );

    // Pin removed too.
    fs::remove_file(&pin).unwrap();
    let e = pod.check(Some(&bw)).err();
    assert_eq!(e.code, 101, "CHECK of a missing link pin: {e:?}");
    assert!(
        e.msg.contains("pod_ingress"),
        "CHECK must name the direction: {e:?}"
    );

    pod.del(Some(&bw)).ok();
    assert_eq!(pod.pins(), None);
    assert_links_gone(&[ingress_id, egress_id]);
    net.assert_pin_root_clean();
}

/// libcni's CHECK sends the cached ADD result as prevResult but the
/// runtime config (capability args) of the CHECK call itself, so natra
/// compares the kernel's state with the bandwidth the runtime asks for now.
#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn check_notices_a_rate_that_differs_from_the_kernel() {
    common::require_root();
    let net = TestNet::new("lc-chkrate", 106);
    let pod = net.pod("a");
    let bw = bandwidth(Some(RATE_BITS), Some(RATE_BITS));
    pod.add(Some(&bw)).ok();
    pod.check(Some(&bw)).ok();

    let slower = bandwidth(Some(RATE_BITS / 2), Some(RATE_BITS));
    let e = pod.check(Some(&slower)).err();
    assert_eq!(e.code, 101, "{e:?}");
    assert!(
        e.msg.contains("pod_ingress"),
        "CHECK must name the direction: {e:?}"
    );
    assert!(
        e.details.contains(&(RATE_BYTES / 2).to_string())
            && e.details.contains(&RATE_BYTES.to_string()),
        "details must give the expected and the found rate: {e:?}"
    );

    let slower_egress = bandwidth(Some(RATE_BITS), Some(RATE_BITS / 2));
    let e = pod.check(Some(&slower_egress)).err();
    assert_eq!(e.code, 101, "{e:?}");
    assert!(
        e.msg.contains("pod_egress"),
        "CHECK must name the direction: {e:?}"
    );

    let e = pod.check(None).err();
    assert_eq!(
        e.code, 101,
        "no limit asked for but limited in the kernel: {e:?}"
    );

    // CHECK only reads: the kernel still holds the original rates.
    assert_eq!(config_rates(&pod), vec![(0, RATE_BYTES), (1, RATE_BYTES)]);
    pod.check(Some(&bw)).ok();
    pod.del(Some(&bw)).ok();
    assert_eq!(pod.pins(), None);
    net.assert_pin_root_clean();
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn failed_add_leaves_nothing_behind() {
    common::require_root();
    let net = TestNet::new("lc-failadd", 107);
    let pod = net.pod("a");
    let bw = bandwidth(Some(RATE_BITS), Some(RATE_BITS));

    let e = pod
        .add_with_env(Some(&bw), &[("NATRA_FAIL_AFTER_ATTACHES", "1")])
        .err();
    assert_eq!(e.code, 100, "fault-injected ADD: {e:?}");
    assert!(e.msg.contains("NATRA_FAIL_AFTER_ATTACHES"), "{e:?}");

    assert_eq!(pod.pins(), None, "a failed ADD left its pin dir");
    net.assert_pin_root_clean();
    // No ADD result: find the host veth as the Pod's eth0 peer.
    let veth = common::netdev::host_peer(&pod);
    assert_no_tcx_on(&veth);

    pod.del(Some(&bw)).ok();
    assert_eq!(kernel::ifindex(&veth), None);
    net.assert_pin_root_clean();
}

/// A runtime may ADD again (e.g. after a restart). ptp cannot be ADDed twice
/// into one netns, so the repeat is natra's own ADD, invoked exactly as
/// libcni invokes it: the cached result as prevResult.
#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn repeated_add_keeps_one_link_per_direction() {
    common::require_root();
    let net = TestNet::new("lc-readd", 108);
    let pod = net.pod("a");
    let bw = bandwidth(Some(RATE_BITS), Some(RATE_BITS));
    let result = pod.add(Some(&bw)).ok();
    let veth = host_veth(&result);
    let first = assert_both_links_on(&pod, &veth);

    let faster = bandwidth(Some(RATE_BITS * 2), Some(RATE_BITS * 2));
    for (round, limit) in [&bw, &faster].into_iter().enumerate() {
        let stdin = pod.natra_conf(serde_json::json!({
            "capabilities": {"bandwidth": true},
            "runtimeConfig": {"bandwidth": limit},
            "prevResult": result,
        }));
        let out = pod.natra_alone("ADD", &stdin, &[]);
        assert!(out.status.success(), "repeat ADD {round}: {out:?}");
        let again = assert_both_links_on(&pod, &veth);
        assert_ne!(again, first, "a repeat ADD replaces the links");
    }
    assert_eq!(
        config_rates(&pod),
        vec![(0, RATE_BYTES * 2), (1, RATE_BYTES * 2)]
    );
    pod.check(Some(&faster)).ok();

    // A repeat ADD that asks for no limit clears what the earlier ones made.
    let unlimited = pod.natra_conf(serde_json::json!({
        "capabilities": {"bandwidth": true},
        "prevResult": result,
    }));
    let out = pod.natra_alone("ADD", &unlimited, &[]);
    assert!(out.status.success(), "unlimited repeat ADD: {out:?}");
    assert_eq!(pod.pins(), None, "an unlimited repeat ADD must unpin");
    assert_no_tcx_on(&veth);
    pod.check(None).ok();

    pod.del(None).ok();
    assert_eq!(pod.pins(), None);
    net.assert_pin_root_clean();
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn an_older_natras_unkeyed_pins_are_checked_and_deleted() {
    common::require_root();
    let net = TestNet::new("lc-legacy", 248);
    let pod = net.pod("a");
    let bw = bandwidth(Some(RATE_BITS), Some(RATE_BITS));
    pod.add(Some(&bw)).ok();
    // natra before network keying pinned at <root>/<id>:<ifname>: move this
    // Pod's state there, links and all, as a node upgraded under it has it.
    let legacy = net.pin_root.join(format!("{}:eth0", pod.id));
    fs::rename(pod.pin_dir(), &legacy).unwrap();
    fs::remove_dir(pod.pin_dir().parent().unwrap()).unwrap();
    let links: Vec<u32> = ["pod_ingress_link", "pod_egress_link"]
        .iter()
        .map(|l| kernel::pinned_tcx(&legacy.join(l)).id)
        .collect();
    pod.check(Some(&bw)).ok();
    pod.del(Some(&bw)).ok();
    assert!(!legacy.exists(), "DEL left the legacy pin directory");
    for id in links {
        assert!(!kernel::link_exists(id), "link {id} outlived DEL");
    }
    net.assert_pin_root_clean();
}

/// natra's DEL for `pod`, called directly (not through libcni, whose other
/// plugins judge the netns path their own way), with a watchdog.
fn natra_del_direct(
    pod: &Pod,
    netns: &std::path::Path,
) -> (std::process::Output, std::time::Duration) {
    use std::io::Write;
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let start = Instant::now();
    let mut child = Command::new(common::natra_bin())
        .env("CNI_COMMAND", "DEL")
        .env("CNI_CONTAINERID", &pod.id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", &pod.ifname)
        .env("CNI_PATH", "/usr/lib/cni")
        .env("NATRA_PIN_ROOT", &pod.net.pin_root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"{}","type":"natra"}}"#,
        pod.net.net_name
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "DEL with CNI_NETNS {} hung for 10 s (the node lock held all along): {}",
                netns.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (child.wait_with_output().unwrap(), start.elapsed())
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn del_is_best_effort_whatever_the_netns_path_holds() {
    common::require_root();
    // Pod-side clsact: the mode whose DEL has work to do inside the netns.
    let net = TestNet::with_natra(
        "lc-nsstale",
        249,
        serde_json::json!({"type": "natra", "capabilities": {"bandwidth": true},
                           "attachMode": "clsact-podside"}),
    );
    let bw = bandwidth(Some(RATE_BITS), Some(RATE_BITS));
    let stale = net.pod("stale");
    let fifo = net.pod("fifo");
    for (pod, what) in [(&stale, "a stale regular file"), (&fifo, "a FIFO")] {
        pod.add(Some(&bw)).ok();
        assert!(pod.pins().is_some());
        // The netns goes; the runtime still passes its path, which now
        // holds something that is not a netns.
        pod.delete_netns();
        let path = &pod.netns_path;
        if pod.id == stale.id {
            fs::write(path, b"").unwrap();
        } else {
            run_ok(Command::new("mkfifo").arg(path));
        }
        let (out, took) = natra_del_direct(pod, path);
        eprintln!(
            "DEL with {what} at CNI_NETNS: {} in {} ms",
            out.status,
            took.as_millis()
        );
        assert!(
            out.status.success(),
            "DEL with {what} at CNI_NETNS failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(pod.pins(), None, "DEL with {what} at CNI_NETNS left pins");
        fs::remove_file(path).unwrap();
    }
    net.assert_pin_root_clean();
}
