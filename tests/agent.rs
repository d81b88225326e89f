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
