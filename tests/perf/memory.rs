//! What a limited Pod costs in kernel memory, two ways: the BPF objects
//! natra pinned for it (programs and maps, bytes_memlock as bpftool reports
//! them), and for either limiter the growth of the kernel's own allocations
//! (/proc/meminfo Slab + Percpu + VmallocUsed) over N Pods, which also
//! catches upstream's IFB device, qdiscs and filters. The latter is noisy
//! on a shared machine (any other allocation lands in it too).
use std::collections::BTreeSet;
use std::path::Path;

use crate::common::kernel::bpftool_json;
use crate::common::pod::Pod;

/// Slab + Percpu + VmallocUsed, KiB.
pub fn kernel_kib() -> f64 {
    let info = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            matches!(name, "Slab" | "Percpu" | "VmallocUsed")
                .then(|| rest.split_whitespace().next()?.parse::<f64>().ok())?
        })
        .sum()
}

/// KiB per Pod of natra's BPF objects.
pub struct BpfMemory {
    /// bytes_memlock of programs and maps.
    pub memlock_kib: f64,
    /// The programs' BTF objects (loaded with every program; not memlock).
    pub btf_kib: f64,
}

/// The objects of the node's shared dataplanes under `root`
/// (`~dataplane/*`): (programs, maps).
fn shared_objects(root: &Path) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let (mut progs, mut maps) = (BTreeSet::new(), BTreeSet::new());
    let base = root.join("~dataplane");
    for layout in std::fs::read_dir(&base).into_iter().flatten() {
        for entry in std::fs::read_dir(layout.unwrap().path())
            .into_iter()
            .flatten()
        {
            let path = entry.unwrap().path();
            if path.is_file() {
                collect(&path, &mut progs, &mut maps);
            }
        }
    }
    for &prog in &progs.clone() {
        let info = bpftool_json(&["prog", "show", "id", &prog.to_string()]);
        for m in info["map_ids"].as_array().into_iter().flatten() {
            maps.insert(m.as_u64().expect("map id"));
        }
    }
    (progs, maps)
}

/// KiB of the node's shared dataplane (its programs and maps, memlock).
pub fn shared_dataplane_kib(root: &Path) -> f64 {
    let (progs, maps) = shared_objects(root);
    let field = |kind: &str, id: u64| {
        bpftool_json(&[kind, "show", "id", &id.to_string()])["bytes_memlock"]
            .as_f64()
            .unwrap_or(0.0)
    };
    (progs.iter().map(|&id| field("prog", id)).sum::<f64>()
        + maps.iter().map(|&id| field("map", id)).sum::<f64>())
        / 1024.0
}

/// Every program and map reachable from the pins of `pods` (links ->
/// programs -> their maps and BTF, plus pinned maps), each object once,
/// divided by the number of Pods; the node's shared dataplane under `root`
/// (its maps, programs and their BTF) is the node's, not the Pods'.
pub fn bpf_per_pod(pods: &[&Pod], root: &Path) -> BpfMemory {
    let (shared_progs, shared_maps) = shared_objects(root);
    let (mut progs, mut maps, mut btfs) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for pod in pods {
        let dir = pod.pin_dir();
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            collect(&path, &mut progs, &mut maps);
        }
    }
    for &prog in &progs {
        let info = bpftool_json(&["prog", "show", "id", &prog.to_string()]);
        for m in info["map_ids"].as_array().into_iter().flatten() {
            maps.insert(m.as_u64().expect("map id"));
        }
        if let Some(btf) = info["btf_id"].as_u64() {
            btfs.insert(btf);
        }
    }
    progs.retain(|id| !shared_progs.contains(id));
    maps.retain(|id| !shared_maps.contains(id));
    let field = |kind: &str, id: u64, field: &str| {
        bpftool_json(&[kind, "show", "id", &id.to_string()])[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{kind} {id}: no {field}"))
    };
    let memlock: f64 = progs
        .iter()
        .map(|&id| field("prog", id, "bytes_memlock"))
        .sum::<f64>()
        + maps
            .iter()
            .map(|&id| field("map", id, "bytes_memlock"))
            .sum::<f64>();
    let btf: f64 = btfs.iter().map(|&id| field("btf", id, "size")).sum();
    let per_pod = |bytes: f64| bytes / 1024.0 / pods.len() as f64;
    BpfMemory {
        memlock_kib: per_pod(memlock),
        btf_kib: per_pod(btf),
    }
}

fn collect(pin: &Path, progs: &mut BTreeSet<u64>, maps: &mut BTreeSet<u64>) {
    let pin = pin.to_str().expect("utf-8 pin path");
    let run = |kind: &str| {
        std::process::Command::new("bpftool")
            .args(["-j", kind, "show", "pinned", pin])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
    };
    if let Some(m) = run("map") {
        maps.insert(m["id"].as_u64().expect("map id"));
    } else if let Some(l) = run("link") {
        progs.insert(l["prog_id"].as_u64().expect("link prog_id"));
    } else if let Some(p) = run("prog") {
        progs.insert(p["id"].as_u64().expect("prog id"));
    } else {
        panic!("{pin} is neither a map, a link nor a program");
    }
}
