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
    // A Pod limited otherwise takes slot 0 of the shared dataplane first and
    // leaves: its config stays in slot 0, so reading the wrong slot shows.
    let gone = net.pod("gone");
    let gone_bw = bandwidth(Some(40_000_000), Some(30_000_000));
    gone.add(Some(&gone_bw)).ok();
    client
        .add(Some(&bandwidth(Some(20_000_000), Some(10_000_000))))
        .ok();
    gone.del(Some(&gone_bw)).ok();
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

    let dir = client.pin_dir();
    let (layout, slot) = common::kernel::placement(&dir);
    assert_ne!(layout, 0, "the client is on the shared dataplane");
    assert_ne!(slot, 0, "the client took the next slot");
    let dumps = || ["config", "counters"].map(|map| (map, bpftool_dump(&dir.join(map))));
    // The Pod's own background packets (IPv6 neighbour discovery, MLD) may
    // land between natra's read and bpftool's: compare a natra inspect whose
    // bpftool dumps before and after agree.
    let mut all: Vec<Value> = Vec::new();
    let mut stable = None;
    for _ in 0..5 {
        let before = dumps();
        all = serde_json::from_str(&natra_cli(&net.pin_root, &["inspect", "--json"])).unwrap();
        if dumps() == before {
            stable = Some(before);
            break;
        }
    }
    let stable = stable.expect("the Pod's maps kept changing for 5 reads");
    assert_eq!(all.len(), 1, "one limited Pod interface");
    let a = &all[0];
    assert_eq!(a["containerId"], client.id.as_str());
    assert_eq!(a["ifname"], "eth0");
    assert!(a["bpfMemlockBytes"].as_u64().unwrap() > 0);
    for (map, dump) in &stable {
        for (dir_key, direction) in [(0u64, "pod_ingress"), (1, "pod_egress")] {
            // the client's own keys: slot x 2 + direction
            let key = slot * 2 + dir_key;
            assert_eq!(
                a["directions"][direction][*map], dump[&key],
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
