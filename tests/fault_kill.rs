//! natra killed (SIGKILL) in the middle of ADD, after its first attach: no
//! rollback runs, so the next DEL — or a GC that no longer lists the Pod —
//! must clean up what was left. Asserted on the kernel: pins, tcx links and
//! tc filters on the host veth.
mod common;

use std::process::Command;

use common::kernel;
use common::plugin::natra_raw;
use common::pod::{bandwidth, run_ok, Pod, TestNet};
use serde_json::{json, Value};

const KILL: (&str, &str) = ("NATRA_KILL_AFTER_ATTACHES", "1");

fn natra_entry(mode: &str) -> Value {
    json!({"type": "natra", "capabilities": {"bandwidth": true}, "attachMode": mode})
}

/// natra's own things left on the host veth: tcx links and tc filters.
fn leftovers_on(veth: &str) -> (Vec<u32>, usize) {
    let links = kernel::ifindex(veth)
        .map(kernel::tcx_link_ids_on)
        .unwrap_or_default();
    let mut filters = 0;
    for hook in ["ingress", "egress"] {
        let out = Command::new("tc")
            .args(["-j", "filter", "show", "dev", veth, hook])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if let Ok(Value::Array(list)) = serde_json::from_str::<Value>(&text) {
            filters += list.iter().filter(|f| f["kind"] == "bpf").count();
        }
    }
    (links, filters)
}

/// ADD through libcni with the kill hook: returns the host veth's name.
fn killed_add(pod: &Pod) -> String {
    // ptp runs first and succeeds, so the host veth exists; natra dies.
    let out = pod.add_with_env(
        Some(&bandwidth(Some(20_000_000), Some(20_000_000))),
        &[KILL],
    );
    assert!(!out.success, "ADD survived its own SIGKILL: {}", out.stdout);
    assert!(pod.pin_dir().is_dir(), "the kill left no state to clean up");
    // The veth is the one ptp made in the Pod's netns: find its peer.
    common::netdev::host_peer(pod)
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn del_cleans_up_after_a_killed_add() {
    common::require_root();
    for (mode, subnet) in [("tcx-hostside", 181u8), ("clsact-hostside", 182)] {
        let net = TestNet::with_natra(
            &format!("kill-del-{}", &mode[..3]),
            subnet,
            natra_entry(mode),
        );
        let pod = net.pod("p");
        let veth = killed_add(&pod);
        let (links, filters) = leftovers_on(&veth);
        assert!(
            links.len() + filters > 0,
            "{mode}: the kill came before any attach"
        );
        // natra's DEL alone (ptp's would delete the veth and hide leftovers).
        let conf = json!({"cniVersion": "1.0.0", "name": net.net_name, "type": "natra"});
        let out = Command::new(common::natra_bin())
            .env("CNI_COMMAND", "DEL")
            .env("CNI_CONTAINERID", &pod.id)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_NETNS", &pod.netns_path)
            .env("NATRA_PIN_ROOT", &net.pin_root)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(conf.to_string().as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success(), "{mode}: DEL failed: {:?}", out);
        assert_eq!(
            leftovers_on(&veth),
            (vec![], 0),
            "{mode}: DEL left programs on {veth}"
        );
        assert!(!pod.pin_dir().exists(), "{mode}: DEL left pins");
        net.assert_pin_root_clean();
    }
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn gc_cleans_up_after_a_killed_add() {
    common::require_root();
    let net = TestNet::with_natra("kill-gc", 183, natra_entry("tcx-hostside"));
    let keep = net.pod("keep");
    keep.add(Some(&bandwidth(Some(20_000_000), None))).ok();
    let pod = net.pod("p");
    let veth = killed_add(&pod);
    assert!(!leftovers_on(&veth).0.is_empty());
    let conf = json!({"cniVersion": "1.1.0", "name": net.net_name, "type": "natra",
                      "cni.dev/valid-attachments": [{"containerID": keep.id, "ifname": "eth0"}]});
    let out = natra_raw(&[("CNI_COMMAND", "GC")], &net.pin_root, &conf.to_string());
    assert!(out.status.success(), "GC failed: {out:?}");
    assert_eq!(
        leftovers_on(&veth),
        (vec![], 0),
        "GC left programs on {veth}"
    );
    assert!(!pod.pin_dir().exists(), "GC left the killed ADD's pins");
    assert!(keep.pin_dir().is_dir(), "GC removed a valid Pod");
}

/// The clsact qdiscs left on `veth`.
fn clsact_on(veth: &str) -> usize {
    let out = run_ok(Command::new("tc").args(["-j", "qdisc", "show", "dev", veth]));
    serde_json::from_str::<Vec<Value>>(&out)
        .unwrap()
        .iter()
        .filter(|q| q["kind"] == "clsact")
        .count()
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn a_kill_between_making_clsact_and_recording_it_leaves_nothing_after_del() {
    common::require_root();
    let net = TestNet::with_natra("kill-clsact", 251, natra_entry("clsact-hostside"));
    let pod = net.pod("p");
    let bw = bandwidth(Some(20_000_000), Some(20_000_000));
    let out = pod.add_with_env(Some(&bw), &[("NATRA_KILL_AT", "clsact-created")]);
    assert!(!out.success, "ADD survived its own SIGKILL: {}", out.stdout);
    let veth = common::netdev::host_peer(&pod);
    assert_eq!(
        clsact_on(&veth),
        1,
        "the kill point came before the clsact qdisc"
    );
    // natra-only DEL (the veth stays, so what natra left on it shows).
    let out = natra_raw(
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", &pod.id),
            ("CNI_NETNS", pod.netns_path.to_str().unwrap()),
            ("CNI_IFNAME", "eth0"),
        ],
        &net.pin_root,
        &json!({"cniVersion": "1.0.0", "name": net.net_name, "type": "natra"}).to_string(),
    );
    assert!(out.status.success(), "DEL: {out:?}");
    assert_eq!(
        clsact_on(&veth),
        0,
        "natra's clsact qdisc outlived DEL: it was made before the record said so"
    );
    assert_eq!(leftovers_on(&veth), (vec![], 0));
    net.assert_pin_root_clean();
}
