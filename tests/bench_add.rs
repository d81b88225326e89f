//! `make bench`: what an ADD and a DEL of the limiter itself cost, natra
//! beside the upstream `bandwidth` plugin (Debian's /usr/lib/cni/bandwidth,
//! TBF + IFB), measured in the same run on the same kind of Pods.
//!
//! Pods are made through libcni with ptp only (no limiter); then each
//! limiter's ADD and DEL is invoked directly with the CNI environment, the
//! Pod's ptp result as prevResult and a 20 Mbit/s runtimeConfig.bandwidth,
//! exactly what libcni would hand it, and timed. It only prints (timings on
//! a shared 2-core VM would make assertions flaky).
mod common;

use std::path::Path;
use std::time::Duration;

use common::plugin::timed_limiter_call as invoke;
use common::pod::TestNet;
use serde_json::{json, Value};

const PODS: usize = 30;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[test]
#[ignore = "benchmark: run via make bench (needs root)"]
fn add_and_del_latency_natra_vs_upstream() {
    common::require_root();
    let net = TestNet::new("bench-add", 191);
    let pods: Vec<_> = (0..PODS).map(|i| net.pod(&format!("b{i}"))).collect();
    let prevs: Vec<Value> = pods.iter().map(|p| p.add(None).ok()).collect();
    let bw = json!({"ingressRate": 20_000_000u64, "ingressBurst": 4_294_967_295u64,
                    "egressRate": 20_000_000u64, "egressBurst": 4_294_967_295u64});
    let upstream = Path::new("/usr/lib/cni/bandwidth");
    let natra = common::natra_bin();
    let mut rows = Vec::new();
    for (name, plugin, mode) in [
        ("natra tcx", natra.as_path(), Some("tcx-hostside")),
        ("natra clsact", natra.as_path(), Some("clsact-hostside")),
        ("upstream bandwidth", upstream, None),
    ] {
        let (mut adds, mut dels) = (Vec::new(), Vec::new());
        for (pod, prev) in pods.iter().zip(&prevs) {
            let mut conf = json!({"cniVersion": "1.0.0", "name": net.net_name,
                              "type": if mode.is_some() { "natra" } else { "bandwidth" },
                              "runtimeConfig": {"bandwidth": bw}, "prevResult": prev});
            if let Some(mode) = mode {
                conf["attachMode"] = json!(mode);
            }
            adds.push(invoke(
                plugin,
                "ADD",
                &pod.id,
                &pod.netns_path,
                &net.pin_root,
                &conf,
            ));
            dels.push(invoke(
                plugin,
                "DEL",
                &pod.id,
                &pod.netns_path,
                &net.pin_root,
                &conf,
            ));
        }
        adds.sort();
        dels.sort();
        rows.push((name, adds, dels));
    }
    println!("\nADD/DEL of the limiter alone, {PODS} Pods, 20 Mbit/s both ways (ms)");
    println!(
        "{:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "plugin", "ADD min", "ADD p50", "ADD p99", "DEL min", "DEL p50", "DEL p99"
    );
    for (name, adds, dels) in &rows {
        println!(
            "{:<20} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            name,
            percentile(adds, 0.0),
            percentile(adds, 0.5),
            percentile(adds, 0.99),
            percentile(dels, 0.0),
            percentile(dels, 0.5),
            percentile(dels, 0.99)
        );
    }
    for row in &rows[..2] {
        let ratio = percentile(&row.1, 0.5) / percentile(&rows[2].1, 0.5);
        println!("{} / upstream ADD p50: {ratio:.2}", row.0);
    }
    net.assert_pin_root_clean();
}
