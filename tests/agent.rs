//! The node agent's chain keeper: natra's conflist follows the main CNI's
//! when the main CNI rewrites it, within seconds, and the main file is never
//! edited. Plain files in a temp dir: no root needed.
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use natra::agent::chain::{keep_chained, ChainConfig, Outcome};
use serde_json::{json, Value};

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("agent-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("net.d")).unwrap();
    fs::create_dir_all(dir.join("bin")).unwrap();
    dir
}

/// Writes a main conflist as CNI installers do: temp file, then rename.
fn write_main(conf_dir: &Path, subnet: &str) -> Vec<u8> {
    let main = json!({"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [
        {"type": "ptp", "ipam": {"type": "host-local", "subnet": subnet}},
        {"type": "portmap", "capabilities": {"portMappings": true}}]});
    let bytes = serde_json::to_vec_pretty(&main).unwrap();
    let tmp = conf_dir.join(".10-calico.conflist.tmp");
    fs::write(&tmp, &bytes).unwrap();
    fs::rename(&tmp, conf_dir.join("10-calico.conflist")).unwrap();
    bytes
}

fn chained_subnet(conf_dir: &Path) -> Option<String> {
    let text = fs::read(conf_dir.join("00-natra.conflist")).ok()?;
    let v: Value = serde_json::from_slice(&text).ok()?;
    let plugins = v["plugins"].as_array()?;
    (plugins.last()?["type"] == "natra").then_some(())?;
    plugins[0]["ipam"]["subnet"].as_str().map(str::to_owned)
}

#[test]
fn a_rewritten_main_conflist_is_chained_again_within_seconds() {
    let dir = scratch("rechain");
    let conf_dir = dir.join("net.d");
    write_main(&conf_dir, "10.244.1.0/24");
    let cfg = ChainConfig {
        conf_dir: conf_dir.clone(),
        bin_dir: dir.join("bin"),
        binary: PathBuf::from(env!("CARGO_BIN_EXE_natra")),
        settle: Duration::from_millis(100),
        resync: Duration::from_secs(3600),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let keeper = {
        let (cfg, stop, outcomes) = (cfg.clone(), stop.clone(), outcomes.clone());
        thread::spawn(move || {
            keep_chained(
                &cfg,
                || stop.load(Ordering::Relaxed),
                |o| outcomes.lock().unwrap().push(format!("{o:?}")),
            )
        })
    };
    // Chained at start.
    let start = Instant::now();
    while chained_subnet(&conf_dir).as_deref() != Some("10.244.1.0/24") {
        assert!(start.elapsed() < Duration::from_secs(5), "never chained");
        thread::sleep(Duration::from_millis(20));
    }

    // The main CNI's upgrade rewrites its conflist.
    let t0 = Instant::now();
    let main_bytes = write_main(&conf_dir, "10.244.7.0/24");
    while chained_subnet(&conf_dir).as_deref() != Some("10.244.7.0/24") {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "natra's conflist still chains the old main config after 5 s"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let took = t0.elapsed();
    eprintln!(
        "re-chained {} ms after the main conflist changed",
        took.as_millis()
    );
    assert_eq!(
        fs::read(conf_dir.join("10-calico.conflist")).unwrap(),
        main_bytes,
        "the main conflist was edited"
    );
    assert!(
        dir.join("bin/natra").is_file(),
        "the binary was not installed"
    );
    stop.store(true, Ordering::Relaxed);
    keeper.join().unwrap().unwrap();
    let outcomes = outcomes.lock().unwrap();
    assert!(
        outcomes.iter().all(|o| !o.starts_with("Failed")),
        "{outcomes:?}"
    );
    let _ = fs::remove_dir_all(&dir);
    let _ = Outcome::Unchanged;
}

mod common;

/// `GET path` on 127.0.0.1:`port`: (status, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    common::http::http_get(&format!("127.0.0.1:{port}"), path).ok()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
#[ignore = "needs root: a limited Pod for the metrics (run via make test)"]
fn natra_agent_chains_serves_metrics_promtool_accepts_and_keeps_the_chain_on_sigterm() {
    use common::pod::{bandwidth, TestNet};
    common::require_root();
    let dir = scratch("live");
    let conf_dir = dir.join("net.d");
    write_main(&conf_dir, "10.244.1.0/24");
    let net = TestNet::new("agent", 255);
    let port = free_port();
    /// Killed on drop, so a failed assertion leaves no agent behind.
    struct Agent(std::process::Child);
    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_natra"))
        .args(["agent", "--cni-conf-dir"])
        .arg(&conf_dir)
        .arg("--cni-bin-dir")
        .arg(dir.join("bin"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("NATRA_PIN_ROOT", &net.pin_root)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map(Agent)
        .expect("cannot start natra agent");
    let start = Instant::now();
    let healthy = loop {
        if let Some((200, body)) = http_get(port, "/healthz") {
            break body;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no /healthz");
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(healthy.trim(), "ok");
    // The node's dataplane was loaded at start, before any Pod: the first
    // ADD verifies nothing.
    let dataplanes = fs::read_dir(net.pin_root.join("~dataplane"))
        .expect("the agent loaded no shared dataplane at start")
        .count();
    assert_eq!(dataplanes, 1);
    while chained_subnet(&conf_dir).as_deref() != Some("10.244.1.0/24") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the agent never chained"
        );
        thread::sleep(Duration::from_millis(20));
    }

    // A limited Pod with some traffic through it.
    let pod = net.pod("p");
    pod.add(Some(&bandwidth(Some(20_000_000), Some(10_000_000))))
        .ok();
    let _ = common::pod::run(
        pod.exec("ping")
            .args(["-c", "3", "-i", "0.2", "-W", "1", "10.0.0.1"]),
    );
    let (status, metrics) = http_get(port, "/metrics").expect("no /metrics");
    assert_eq!(status, 200, "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("natra_rate_bytes_per_second{")
                && l.contains(&format!("container_id=\"{}\"", pod.id))
                && l.contains("direction=\"pod_egress\"")
                && l.ends_with(" 1250000")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("natra_dataplane_slots{")
                && l.contains("state=\"held\"")
                && l.ends_with(" 1")),
        "one slot held by the one limited Pod: {metrics}"
    );
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut promtool = match promtool {
        Ok(p) => p,
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "promtool: {e}");
            eprintln!("SKIPPED promtool: {e} (apt-get install prometheus)");
            return;
        }
    };
    {
        use std::io::Write;
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(metrics.as_bytes())
            .unwrap();
    }
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A rolling update's SIGTERM: the agent stops, natra stays chained.
    let (status, _) = common::sigterm_and_wait(&mut agent.0, Duration::from_secs(5));
    assert!(status.success(), "{status}");
    assert_eq!(chained_subnet(&conf_dir).as_deref(), Some("10.244.1.0/24"));
    let _ = fs::remove_dir_all(&dir);
}

/// The ids of a Pod's pinned tcx links, both directions.
fn link_ids(pin_dir: &Path) -> Vec<Value> {
    ["pod_ingress_link", "pod_egress_link"]
        .iter()
        .map(|l| {
            let pin = pin_dir.join(l);
            common::kernel::bpftool_json(&["link", "show", "pinned", pin.to_str().unwrap()])["id"]
                .clone()
        })
        .collect()
}

/// The program ids in a dataplane's (or a Pod's) pinned `programs` array.
fn program_array_ids(pin: &Path) -> Vec<u64> {
    common::kernel::bpftool_json(&["map", "dump", "pinned", pin.to_str().unwrap()])
        .as_array()
        .expect("a dump is a list")
        .iter()
        .map(|e| {
            e["value"]
                .as_u64()
                .or_else(|| e["formatted"]["value"].as_u64())
                .unwrap_or_else(|| panic!("no program id in {e}"))
        })
        .collect()
}

#[test]
#[ignore = "needs root: a limited Pod whose programs are swapped (run via make test)"]
fn a_new_agent_swaps_its_programs_into_live_pods_in_place() {
    use common::pod::{bandwidth, TestNet};
    common::require_root();
    let dir = scratch("upgrade");
    write_main(&dir.join("net.d"), "10.244.2.0/24");
    let net = TestNet::new("agentup", 254);
    let pod = net.pod("p");
    pod.add(Some(&bandwidth(Some(20_000_000), Some(20_000_000))))
        .ok();
    let before = program_array_ids(&pod.pin_dir().join("programs"));
    let links = link_ids(&pod.pin_dir());
    // A rollout: the new natra (another object, the same state layout)
    // starts as the node agent.
    let port = free_port();
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_natra"))
        .args(["agent", "--cni-conf-dir"])
        .arg(dir.join("net.d"))
        .arg("--cni-bin-dir")
        .arg(dir.join("bin"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("NATRA_PIN_ROOT", &net.pin_root)
        .env("NATRA_TEST_PROGRAM_ID", "5eed")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("cannot start natra agent");
    let start = Instant::now();
    while http_get(port, "/healthz").is_none_or(|(s, _)| s != 200) {
        assert!(start.elapsed() < Duration::from_secs(10), "no /healthz");
        thread::sleep(Duration::from_millis(50));
    }
    let after = program_array_ids(&pod.pin_dir().join("programs"));
    let (status, _) = common::sigterm_and_wait(&mut agent, Duration::from_secs(5));
    assert!(status.success(), "{status}");
    assert_eq!(after.len(), 2, "{after:?}");
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(
            b, a,
            "the program array still holds the old programs: {before:?} -> {after:?}"
        );
    }
    let layout_dir = fs::read_dir(net.pin_root.join("~dataplane"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut names: Vec<String> = fs::read_dir(&layout_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pod_"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "pod_egress_0000000000005eed",
            "pod_ingress_0000000000005eed"
        ],
        "the new programs are pinned, the old ones unpinned"
    );
    // Nothing re-attached: the same links, now jumping to the new programs.
    let links_after = link_ids(&pod.pin_dir());
    assert_eq!(links, links_after);
    pod.check(Some(&bandwidth(Some(20_000_000), Some(20_000_000))))
        .ok();
    let _ = fs::remove_dir_all(&dir);
}
