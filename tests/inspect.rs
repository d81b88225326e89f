//! `natra inspect --json` and `natra stats --prometheus` on a live Pod made
//! through libcni, cross-checked field by field with Debian's bpftool.
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::pod::{bandwidth, pod_ip, run_ok, TestNet};
use serde_json::Value;

fn natra_cli(pin_root: &Path, args: &[&str]) -> String {
    let out = Command::new(common::natra_bin())
        .env_remove("CNI_COMMAND")
        .env("NATRA_PIN_ROOT", pin_root)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "natra {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `bpftool -j map dump pinned`: per key, the BTF-formatted value (per-CPU
/// values summed).
fn bpftool_dump(path: &Path) -> BTreeMap<u64, Value> {
    let out = run_ok(
        Command::new("bpftool")
            .args(["-j", "map", "dump", "pinned"])
            .arg(path),
    );
    let entries: Vec<Value> = serde_json::from_str(&out).unwrap();
    entries
        .into_iter()
        .map(|e| {
            let e = &e["formatted"];
            let key = e["key"].as_u64().unwrap();
            let value = match e.get("values") {
                Some(per_cpu) => sum_objects(per_cpu.as_array().unwrap()),
                None => e["value"].clone(),
            };
            (key, value)
        })
        .collect()
}

fn sum_objects(per_cpu: &[Value]) -> Value {
    let mut sum = serde_json::Map::new();
    for cpu in per_cpu {
        for (k, v) in cpu["value"].as_object().unwrap() {
            let acc = sum.entry(k.clone()).or_insert(Value::from(0u64));
            *acc = Value::from(acc.as_u64().unwrap() + v.as_u64().unwrap());
        }
    }
    Value::Object(sum)
}

#[test]
#[ignore = "needs root: netns + bpffs (run via make test)"]
fn inspect_and_stats_agree_with_bpftool() {
    common::require_root();
    let net = TestNet::new("inspect", 161);
    let server = net.pod("srv");
    let client = net.pod("cli");
    let server_result = server.add(None).ok();
    client
        .add(Some(&bandwidth(Some(20_000_000), Some(10_000_000))))
        .ok();
    // Some traffic both ways, UDP at 2x the egress cap so natra drops some.
    let ip = pod_ip(&server_result);
    let mut srv = server
        .exec("iperf3")
        .args(["-s", "-1", "-p", "5401"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = client
        .exec("iperf3")
        .args(["-c", &ip, "-p", "5401", "-u", "-b", "20M", "-t", "1"])
        .output();
    let _ = srv.kill();
    let _ = srv.wait();

    let all: Vec<Value> =
        serde_json::from_str(&natra_cli(&net.pin_root, &["inspect", "--json"])).unwrap();
    assert_eq!(all.len(), 1, "one limited Pod interface");
    let a = &all[0];
    assert_eq!(a["containerId"], client.id.as_str());
    assert_eq!(a["ifname"], "eth0");
    assert!(a["bpfMemlockBytes"].as_u64().unwrap() > 0);
    let dir = client.pin_dir();
    for (map, field) in [("config", "config"), ("counters", "counters")] {
        let dump = bpftool_dump(&dir.join(map));
        for (key, direction) in [(0u64, "pod_ingress"), (1, "pod_egress")] {
            assert_eq!(
                a["directions"][direction][field], dump[&key],
                "{map}[{key}]: natra inspect vs bpftool"
            );
        }
    }
    let egress = &a["directions"]["pod_egress"];
    assert_eq!(egress["config"]["rate_bytes_per_sec"], 1_250_000);
    assert_eq!(egress["attach"], "tcx ingress");
    assert!(egress["counters"]["dropped_packets"].as_u64().unwrap() > 0);

    let prom = natra_cli(&net.pin_root, &["stats", "--prometheus"]);
    assert!(prom.contains("# TYPE natra_packets_total counter"));
    let line = prom
        .lines()
        .find(|l| {
            l.starts_with("natra_packets_total{")
                && l.contains("direction=\"pod_egress\"")
                && l.contains("verdict=\"dropped\"")
        })
        .unwrap_or_else(|| panic!("no dropped series:\n{prom}"));
    assert!(line.contains(&format!("container_id=\"{}\"", client.id)));
    let value: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(
        value,
        egress["counters"]["dropped_packets"].as_u64().unwrap()
    );
    let text = natra_cli(&net.pin_root, &["inspect"]);
    assert!(text.contains("pod_egress: tcx ingress"), "{text}");
}
