//! The node agent's reconciliation: what a Pod with NET_ADMIN, an operator's
//! `bpftool link detach`, or a Pod gone without a DEL did to an attachment
//! is seen and set right within seconds, with the kernel as the judge
//! (CHECK through libcni, the pins, the links).
mod common;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::pod::{bandwidth, run, TestNet};
use serde_json::json;

/// `natra agent` reconciling every second over `net`'s pin root; killed on drop.
struct Agent(Child, PathBuf);

impl Agent {
    fn start(net: &TestNet) -> Agent {
        Self::start_with(net, &[])
    }

    fn start_with(net: &TestNet, extra: &[&str]) -> Agent {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "repair-{}-{}",
            net.test,
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("net.d")).unwrap();
        fs::create_dir_all(dir.join("bin")).unwrap();
        fs::write(
            dir.join("net.d/10-main.conflist"),
            r#"{"cniVersion":"1.0.0","name":"main","plugins":[{"type":"ptp"}]}"#,
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(common::natra_bin())
            .arg("agent")
            .arg("--cni-conf-dir")
            .arg(dir.join("net.d"))
            .arg("--cni-bin-dir")
            .arg(dir.join("bin"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--reconcile-secs",
                "1",
            ])
            .args(extra)
            .env("NATRA_PIN_ROOT", &net.pin_root)
            .stdout(Stdio::null())
            .spawn()
            .expect("cannot start natra agent");
        Agent(child, dir)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = fs::remove_dir_all(&self.1);
    }
}

/// Waits up to 10 s for `ok()`; returns how long it took.
fn within(what: &str, ok: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: not within 10 s"
        );
        thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn a_net_admin_pods_removal_of_natras_filters_is_repaired() {
    common::require_root();
    let net = TestNet::with_natra(
        "repair-pod",
        241,
        json!({"type": "natra", "capabilities": {"bandwidth": true}, "attachMode": "clsact-podside"}),
    );
    let bw = bandwidth(Some(20_000_000), Some(20_000_000));
    let pod = net.pod("p");
    pod.add(Some(&bw)).ok();
    // The Pod, with NET_ADMIN only, deletes the clsact qdisc holding natra.
    let out = run(pod
        .exec("setpriv")
        .args(["--bounding-set=-all,+net_admin,+net_raw", "--inh-caps=-all"])
        .args(["tc", "qdisc", "del", "dev", "eth0", "clsact"]));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(pod.check(Some(&bw)).err().code, 101, "the removal shows");
    let agent = Agent::start(&net);
    let took = within("natra's filters restored", || pod.check(Some(&bw)).success);
    eprintln!("repaired {} ms after the agent started", took.as_millis());
    // And under the running agent: removed again, restored within a round.
    let out = run(pod
        .exec("setpriv")
        .args(["--bounding-set=-all,+net_admin,+net_raw", "--inh-caps=-all"])
        .args(["tc", "qdisc", "del", "dev", "eth0", "clsact"]));
    assert!(out.status.success(), "{out:?}");
    let took = within("natra's filters restored", || pod.check(Some(&bw)).success);
    eprintln!(
        "repaired {} ms after the Pod removed natra's clsact",
        took.as_millis()
    );
    drop(agent);
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn a_detached_tcx_link_is_linked_again_and_a_vanished_pod_is_removed() {
    common::require_root();
    let net = TestNet::new("repair-tcx", 242);
    let bw = bandwidth(Some(20_000_000), Some(20_000_000));
    let pod = net.pod("p");
    pod.add(Some(&bw)).ok();
    let gone = net.pod("gone");
    gone.add(Some(&bw)).ok();
    let pin = pod.pin_dir().join("pod_egress_link");
    let old = common::kernel::pinned_tcx(&pin).id;
    let out = run(Command::new("bpftool").args(["link", "detach", "id", &old.to_string()]));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(pod.check(Some(&bw)).err().code, 101, "the detach shows");
    let agent = Agent::start(&net);
    let took = within("the link attached again", || pod.check(Some(&bw)).success);
    let new = common::kernel::pinned_tcx(&pin).id;
    assert_ne!(new, old, "a new link, pinned in the old one's place");
    eprintln!(
        "relinked {} ms after the agent started (link {old} -> {new})",
        took.as_millis()
    );
    // And under the running agent: detached again, linked again.
    let out = run(Command::new("bpftool").args(["link", "detach", "id", &new.to_string()]));
    assert!(out.status.success(), "{out:?}");
    let took = within("the link attached again", || {
        common::kernel::pinned_tcx(&pin).id != new && pod.check(Some(&bw)).success
    });
    eprintln!(
        "relinked {} ms after a detach under the running agent",
        took.as_millis()
    );

    // A Pod gone without DEL: its netns and veth vanish, natra's state goes.
    gone.delete_netns();
    let took = within("the vanished Pod's attachment removed", || {
        !gone.pin_dir().exists()
    });
    eprintln!("removed {} ms after the Pod vanished", took.as_millis());
    assert!(pod.pin_dir().is_dir(), "the live Pod's attachment went too");
    pod.check(Some(&bw)).ok();
    drop(agent);
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn a_node_local_override_changes_a_running_pods_limit() {
    common::require_root();
    let net = TestNet::new("override", 240);
    let pod = net.pod("p");
    pod.add(Some(&bandwidth(Some(20_000_000), Some(20_000_000))))
        .ok();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("overrides-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let _agent = Agent::start_with(&net, &["--overrides-dir", dir.to_str().unwrap()]);
    let rate = |d: &str| -> u64 {
        common::plugin::inspect_one(&net.pin_root)["directions"][d]["config"]["rate_bytes_per_sec"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(rate("pod_egress"), 2_500_000);
    fs::write(
        dir.join("slow.json"),
        json!({"containerId": pod.id, "egress": "5M"}).to_string(),
    )
    .unwrap();
    let took = within("the override applied", || rate("pod_egress") == 625_000);
    eprintln!(
        "override applied {} ms after the file appeared",
        took.as_millis()
    );
    assert_eq!(rate("pod_ingress"), 2_500_000, "ingress kept");
    let _ = fs::remove_dir_all(&dir);
}
