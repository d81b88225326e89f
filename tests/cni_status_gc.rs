//! CNI 1.1's STATUS and GC, the verbs' version gating, and concurrent
//! ADD/DEL. libcni 1.1.2 (Debian's) predates STATUS and GC, so those two are
//! called on the binary directly, with the stdin and environment the spec
//! gives them; pods themselves are still made through libcni.
mod common;

use std::process::Command;

use common::kernel;
use common::plugin::{natra_raw, single_json};
use common::pod::{bandwidth, TestNet};
use serde_json::{json, Value};

const RATE_BITS: u64 = 20_000_000;

fn status(pin_root: &std::path::Path, cni_version: &str) -> std::process::Output {
    let conf = json!({"cniVersion": cni_version, "name": "n", "type": "natra"}).to_string();
    natra_raw(&[("CNI_COMMAND", "STATUS")], pin_root, &conf)
}

fn gc(net: &TestNet, valid: &[(&str, &str)]) -> std::process::Output {
    let list: Vec<Value> = valid
        .iter()
        .map(|(id, ifname)| json!({"containerID": id, "ifname": ifname}))
        .collect();
    let conf = json!({"cniVersion": "1.1.0", "name": net.net_name, "type": "natra",
                      "cni.dev/valid-attachments": list});
    natra_raw(&[("CNI_COMMAND", "GC")], &net.pin_root, &conf.to_string())
}

/// Runs natra in a private mount namespace where bpffs is unmounted (the
/// node keeps its own), with `env` and `stdin`.
fn natra_without_bpffs(env: &[(&str, &std::ffi::OsStr)], stdin: &str) -> std::process::Output {
    let script =
        "while grep -q ' /sys/fs/bpf bpf ' /proc/self/mounts; do umount /sys/fs/bpf; done; \
                  exec \"$0\"";
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(common::natra_bin())
        .env("NATRA_PIN_ROOT", "/sys/fs/bpf/natra")
        .envs(env.iter().copied());
    common::plugin::output_with_stdin(&mut cmd, stdin)
}

#[test]
#[ignore = "needs root: bpffs + BPF (run via make test)"]
fn status_is_ready_on_a_node_with_bpffs() {
    common::require_root();
    let out = status(std::path::Path::new("/sys/fs/bpf/natra"), "1.1.0");
    assert!(
        out.status.success(),
        "STATUS failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "STATUS printed {:?}", out.stdout);
}

#[test]
#[ignore = "needs root: a private mount namespace (run via make test)"]
fn status_is_not_ready_without_bpffs() {
    common::require_root();
    let conf = json!({"cniVersion": "1.1.0", "name": "n", "type": "natra"}).to_string();
    let out = natra_without_bpffs(&[("CNI_COMMAND", "STATUS".as_ref())], &conf);
    assert!(!out.status.success(), "STATUS said ready without bpffs");
    let err = single_json(&out);
    assert_eq!(err["code"], 50, "{err}");
    assert!(
        err["msg"].as_str().unwrap().contains("bpffs"),
        "the reason names bpffs: {err}"
    );
    assert!(
        err["details"].as_str().unwrap().contains("mount -t bpf"),
        "the details name the fix: {err}"
    );
    // The node's own bpffs is untouched.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(mounts.contains(" /sys/fs/bpf bpf "));
}

#[test]
fn verbs_exist_only_from_their_spec_version() {
    let root = std::env::temp_dir().join("natra-version-gating");
    for (verb, version) in [("STATUS", "1.0.0"), ("GC", "0.4.0"), ("CHECK", "0.3.1")] {
        let conf = json!({"cniVersion": version, "name": "n", "type": "natra",
                          "prevResult": {"cniVersion": version}})
        .to_string();
        let out = natra_raw(
            &[
                ("CNI_COMMAND", verb),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", "/var/run/netns/none"),
            ],
            &root,
            &conf,
        );
        assert!(!out.status.success(), "{verb} at {version} succeeded");
        let err = single_json(&out);
        assert_eq!(err["code"], 1, "{verb} at {version}: {err}");
    }
    let out = natra_raw(
        &[("CNI_COMMAND", "VERSION")],
        &root,
        r#"{"cniVersion":"1.1.0"}"#,
    );
    let v = single_json(&out);
    assert_eq!(
        v["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn gc_keeps_listed_pods_and_removes_the_rest() {
    common::require_root();
    let net = TestNet::new("gc-keep", 121);
    let bw = bandwidth(Some(RATE_BITS), Some(RATE_BITS));
    let keep = net.pod("keep");
    let drop = net.pod("drop");
    let gone = net.pod("gone");
    keep.add(Some(&bw)).ok();
    drop.add(Some(&bw)).ok();
    gone.add(Some(&bw)).ok();
    let dropped_links: Vec<u32> = ["pod_ingress_link", "pod_egress_link"]
        .iter()
        .map(|l| kernel::pinned_tcx(&drop.pin_dir().join(l)).id)
        .collect();
    // The third Pod's veth vanishes behind natra's back: its links go defunct.
    gone.delete_netns();

    let out = gc(&net, &[(&keep.id, "eth0")]);
    assert!(
        out.status.success(),
        "GC failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(keep.pin_dir().is_dir(), "GC removed a listed pod");
    assert!(!drop.pin_dir().exists(), "GC left an unlisted pod's pins");
    assert!(!gone.pin_dir().exists(), "GC left a defunct pod's pins");
    for id in dropped_links {
        assert!(!kernel::link_exists(id), "link {id} still exists after GC");
    }
    keep.check(Some(&bw)).ok();
    // The kept Pod's attachment and its slot of the shared dataplane; the
    // others' slots are free.
    let mut left = vec![
        format!("{}/{}:eth0", net.net_name, keep.id),
        kernel::slot_entry(&keep.pin_dir()),
    ];
    left.sort();
    assert_eq!(net.pin_root_entries(), left);
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn twenty_concurrent_adds_and_dels() {
    common::require_root();
    let net = TestNet::new("concurrent", 122);
    let bw = bandwidth(Some(RATE_BITS), Some(RATE_BITS));
    let pods: Vec<_> = (0..20).map(|i| net.pod(&format!("p{i}"))).collect();
    std::thread::scope(|s| {
        let adds: Vec<_> = pods.iter().map(|p| s.spawn(|| p.add(Some(&bw)))).collect();
        for (i, a) in adds.into_iter().enumerate() {
            let out = a.join().unwrap();
            assert!(out.success, "ADD {i} failed: {}{}", out.stdout, out.stderr);
        }
    });
    let mut slots = std::collections::HashSet::new();
    for p in &pods {
        // 3 maps, the program array, 2 links and the attachment record.
        assert_eq!(
            p.pins(),
            Some(common::PINS_BOTH_WAYS.map(String::from).to_vec()),
            "{} pins",
            p.id
        );
        p.check(Some(&bw)).ok();
        // each its own slot of the shared dataplane
        let slot = kernel::slot_entry(&p.pin_dir());
        assert!(slots.insert(slot.clone()), "{} shares {slot}", p.id);
    }
    let mut held: Vec<String> = net
        .pin_root_entries()
        .into_iter()
        .filter(|e| e.starts_with("~dataplane/"))
        .collect();
    held.sort();
    let mut claimed: Vec<String> = slots.into_iter().collect();
    claimed.sort();
    assert_eq!(held, claimed, "the slots held are the Pods' own");
    std::thread::scope(|s| {
        let dels: Vec<_> = pods.iter().map(|p| s.spawn(|| p.del(Some(&bw)))).collect();
        for (i, d) in dels.into_iter().enumerate() {
            let out = d.join().unwrap();
            assert!(out.success, "DEL {i} failed: {}{}", out.stdout, out.stderr);
        }
    });
    net.assert_pin_root_clean();
}

#[test]
#[ignore = "needs root: a private mount namespace (run via make test)"]
fn add_without_bpffs_names_the_fix_and_leaves_nothing() {
    common::require_root();
    let net = TestNet::new("nobpffs", 123);
    let pod = net.pod("p");
    let prev = pod.add(None).ok(); // ptp only: natra loads nothing without limits
    let conf = json!({"cniVersion": "1.0.0", "name": net.net_name, "type": "natra",
                      "runtimeConfig": {"bandwidth": {"ingressRate": RATE_BITS}},
                      "prevResult": prev});
    let out = natra_without_bpffs(
        &[
            ("CNI_COMMAND", "ADD".as_ref()),
            ("CNI_CONTAINERID", pod.id.as_ref()),
            ("CNI_IFNAME", "eth0".as_ref()),
            ("CNI_NETNS", pod.netns_path.as_os_str()),
        ],
        &conf.to_string(),
    );
    assert!(!out.status.success(), "ADD succeeded without bpffs");
    let err = single_json(&out);
    assert_eq!(err["code"], 5, "{err}");
    assert!(
        err["details"]
            .as_str()
            .unwrap()
            .contains("mount -t bpf bpf /sys/fs/bpf"),
        "the error names the fix: {err}"
    );
    let veth = common::pod::host_veth(&prev);
    let ifindex = kernel::ifindex(&veth).expect("host veth");
    assert!(
        kernel::tcx_link_ids_on(ifindex).is_empty(),
        "a program was attached without bpffs"
    );
}
