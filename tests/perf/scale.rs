//! Scenarios 4 and 5, control plane: N Pods (110, kubelet's default
//! maxPods, in full mode) are made through libcni without a limiter; then
//! each limiter's ADD is called directly on all of them in turn (the CNI
//! environment, the Pod's prevResult, 20 Mbit/s both ways), keeping every
//! Pod limited until the last, then its DEL. Reported: ADD latency p50/p99
//! and against the number of Pods already limited, DEL p50/p99, and the
//! memory per limited Pod (see memory.rs).
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::plugin::timed_limiter_call;
use crate::common::stats::percentile_ms;
use crate::memory;
use crate::mode::Mode;
use crate::results::Results;
use crate::setup::{Limiter, Rig};

const CAP: u64 = 20_000_000;
/// natra's BPF memory is read from this many Pods (bpftool is slow).
const BPF_MEMORY_PODS: usize = 10;

pub fn run(rig: &Rig, mode: &Mode, res: &mut Results) {
    let net = rig.plain();
    let pods: Vec<_> = (0..mode.scale_pods)
        .map(|i| net.pod(&format!("k{i}")))
        .collect();
    let prevs: Vec<Value> = pods.iter().map(|p| p.add(None).ok()).collect();
    let natra = crate::common::natra_bin();
    for (limiter, plugin) in [
        (Limiter::Natra, natra.as_path()),
        (Limiter::Upstream, Path::new("/usr/lib/cni/bandwidth")),
    ] {
        let _exclusive = crate::common::quiet::measuring();
        let kind = if limiter == Limiter::Natra {
            "natra"
        } else {
            "bandwidth"
        };
        let mem0 = memory::kernel_kib();
        let call = |verb: &str, i: usize| {
            let conf = json!({"cniVersion": "1.0.0", "name": net.net_name, "type": kind,
                              "runtimeConfig": {"bandwidth": limiter.bandwidth(CAP)},
                              "prevResult": prevs[i]});
            let p = &pods[i];
            timed_limiter_call(plugin, verb, &p.id, &p.netns_path, &net.pin_root, &conf)
        };
        let adds: Vec<Duration> = (0..pods.len()).map(|i| call("ADD", i)).collect();
        let mem_per_pod = (memory::kernel_kib() - mem0) / pods.len() as f64;
        if limiter == Limiter::Natra {
            let sample: Vec<_> = pods.iter().take(BPF_MEMORY_PODS).collect();
            let bpf = memory::bpf_per_pod(&sample);
            res.record("scale.natra.bpf_kib_per_pod", bpf.memlock_kib);
            res.record("scale.natra.btf_kib_per_pod", bpf.btf_kib);
        }
        let dels: Vec<Duration> = (0..pods.len()).map(|i| call("DEL", i)).collect();

        let l = limiter.key();
        res.record(format!("scale.{l}.add_p50"), percentile_ms(&adds, 0.5));
        res.record(format!("scale.{l}.add_p99"), percentile_ms(&adds, 0.99));
        res.record(format!("scale.{l}.del_p50"), percentile_ms(&dels, 0.5));
        res.record(format!("scale.{l}.del_p99"), percentile_ms(&dels, 0.99));
        let tenth = (pods.len() / 10).max(1);
        let first = percentile_ms(&adds[..tenth], 0.5);
        let last = percentile_ms(&adds[pods.len() - tenth..], 0.5);
        res.record(format!("scale.{l}.add_last_over_first"), last / first);
        res.record(format!("scale.{l}.kernel_kib_per_pod"), mem_per_pod);
        let pts = adds
            .iter()
            .enumerate()
            .map(|(i, d)| ((i + 1) as f64, d.as_secs_f64() * 1e3))
            .collect();
        res.line("add-vs-pods", limiter.label(), pts);
        println!(
            "scale {:<28} {} Pods: ADD p50 {:.1} ms p99 {:.1} ms (last/first tenth {:.2}), DEL p50 {:.1} ms, kernel memory {:.1} KiB/Pod",
            limiter.label(),
            pods.len(),
            percentile_ms(&adds, 0.5),
            percentile_ms(&adds, 0.99),
            last / first,
            percentile_ms(&dels, 0.5),
            mem_per_pod
        );
    }
}
