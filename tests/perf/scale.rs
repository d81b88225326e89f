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

/// One RCU grace period, as `membarrier(MEMBARRIER_CMD_GLOBAL)` waits for
/// it (`synchronize_rcu()`, what every tcx attach and detach waits for with
/// rtnl held): the median of `n` calls, ms.
fn grace_period_ms(n: usize) -> f64 {
    const MEMBARRIER_CMD_GLOBAL: nix::libc::c_long = 1;
    let mut took: Vec<Duration> = (0..n)
        .map(|_| {
            let start = std::time::Instant::now();
            // SAFETY: membarrier takes integers only; GLOBAL (1) with flags 0.
            let rc = unsafe {
                nix::libc::syscall(nix::libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0)
            };
            assert_eq!(rc, 0, "membarrier(MEMBARRIER_CMD_GLOBAL) failed");
            start.elapsed()
        })
        .collect();
    took.sort();
    percentile_ms(&took, 0.5)
}

/// natra's attach modes the scale scenario measures: the default (tcx on
/// the host veth, the `natra` column) and clsact on the host veth.
const NATRA_MODES: [(&str, &str); 2] = [
    ("natra", "tcx-hostside"),
    ("natra-clsact", "clsact-hostside"),
];

pub fn run(rig: &Rig, mode: &Mode, res: &mut Results) {
    let net = rig.plain();
    let pods: Vec<_> = (0..mode.scale_pods)
        .map(|i| net.pod(&format!("k{i}")))
        .collect();
    let prevs: Vec<Value> = pods.iter().map(|p| p.add(None).ok()).collect();
    // ADD and DEL are timed on the binary nodes run: `make test` passes the
    // release build it made (NATRA_BENCH_BIN), not its own debug one.
    let natra = std::env::var_os("NATRA_BENCH_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(crate::common::natra_bin);
    println!("scale: natra ADD/DEL timed on {}", natra.display());
    let conf = |kind: &str, attach: Option<&str>, bw: Value, i: usize| {
        let mut c = json!({"cniVersion": "1.0.0", "name": net.net_name, "type": kind,
                           "runtimeConfig": {"bandwidth": bw}, "prevResult": prevs[i]});
        if let Some(m) = attach {
            c["attachMode"] = json!(m);
        }
        c
    };
    {
        // The node's fixed cost: the first ADD on a node loads and verifies
        // the shared dataplane (the agent does it at start); its DEL leaves it.
        let _exclusive = crate::common::quiet::measuring();
        // Every run measures a node's first ADD: the dataplane an earlier
        // run loaded goes first (no Pod is limited here, which makes that
        // safe, docs/pins.md).
        let shared = net.pin_root.join("~dataplane");
        if shared.exists() {
            std::fs::remove_dir_all(&shared).expect("remove the shared dataplane");
            // Its maps are freed after a grace period, by a worker: let that
            // land before the baseline, or it cancels the new load's memory
            // (a run read 168 KiB where the first read 5136).
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
        let mem0 = memory::kernel_kib();
        let bw = Limiter::Natra.bandwidth(CAP).expect("natra limits");
        let c = conf("natra", None, bw, 0);
        let p = &pods[0];
        let first = timed_limiter_call(&natra, "ADD", &p.id, &p.netns_path, &net.pin_root, &c);
        timed_limiter_call(&natra, "DEL", &p.id, &p.netns_path, &net.pin_root, &c);
        let fixed = memory::kernel_kib() - mem0;
        res.record("scale.natra.first_add_ms", first.as_secs_f64() * 1e3);
        res.record("scale.natra.node_fixed_kib", fixed);
        res.record(
            "scale.natra.shared_bpf_kib",
            memory::shared_dataplane_kib(&net.pin_root),
        );
        res.record("scale.natra.grace_period_ms", grace_period_ms(21));
        println!(
            "scale natra: first ADD on the node {:.1} ms (loads the shared dataplane), node fixed cost {fixed:.0} KiB, one RCU grace period {:.1} ms",
            first.as_secs_f64() * 1e3,
            res.median("scale.natra.grace_period_ms").unwrap_or(0.0)
        );
    }
    let runs: Vec<(Limiter, &str, &Path, Option<&str>)> = NATRA_MODES
        .iter()
        .map(|&(key, m)| (Limiter::Natra, key, natra.as_path(), Some(m)))
        .chain([(
            Limiter::Upstream,
            "upstream",
            Path::new("/usr/lib/cni/bandwidth"),
            None,
        )])
        .collect();
    for (limiter, l, plugin, attach) in runs {
        let _exclusive = crate::common::quiet::measuring();
        let kind = if limiter == Limiter::Natra {
            "natra"
        } else {
            "bandwidth"
        };
        let mem0 = memory::kernel_kib();
        let call = |verb: &str, i: usize| {
            let bw = limiter.bandwidth(CAP).expect("limits");
            let p = &pods[i];
            let c = conf(kind, attach, bw, i);
            timed_limiter_call(plugin, verb, &p.id, &p.netns_path, &net.pin_root, &c)
        };
        let adds: Vec<Duration> = (0..pods.len()).map(|i| call("ADD", i)).collect();
        let mem_per_pod = (memory::kernel_kib() - mem0) / pods.len() as f64;
        if l == "natra" {
            let sample: Vec<_> = pods.iter().take(BPF_MEMORY_PODS).collect();
            let bpf = memory::bpf_per_pod(&sample, &net.pin_root);
            res.record("scale.natra.bpf_kib_per_pod", bpf.memlock_kib);
            res.record("scale.natra.btf_kib_per_pod", bpf.btf_kib);
        }
        let dels: Vec<Duration> = (0..pods.len()).map(|i| call("DEL", i)).collect();

        res.record(format!("scale.{l}.add_p50"), percentile_ms(&adds, 0.5));
        res.record(format!("scale.{l}.add_p99"), percentile_ms(&adds, 0.99));
        res.record(format!("scale.{l}.del_p50"), percentile_ms(&dels, 0.5));
        res.record(format!("scale.{l}.del_p99"), percentile_ms(&dels, 0.99));
        let tenth = (pods.len() / 10).max(1);
        let first = percentile_ms(&adds[..tenth], 0.5);
        let last = percentile_ms(&adds[pods.len() - tenth..], 0.5);
        res.record(format!("scale.{l}.add_last_over_first"), last / first);
        res.record(format!("scale.{l}.kernel_kib_per_pod"), mem_per_pod);
        let label = match attach {
            Some(m) => format!("natra ({m})"),
            None => limiter.label().to_owned(),
        };
        let pts = adds
            .iter()
            .enumerate()
            .map(|(i, d)| ((i + 1) as f64, d.as_secs_f64() * 1e3))
            .collect();
        if attach != Some("clsact-hostside") {
            res.line("add-vs-pods", limiter.label(), pts);
        }
        println!(
            "scale {label:<28} {} Pods: ADD p50 {:.1} ms p99 {:.1} ms (last/first tenth {:.2}), DEL p50 {:.1} ms p99 {:.1} ms, kernel memory {:.1} KiB/Pod",
            pods.len(),
            percentile_ms(&adds, 0.5),
            percentile_ms(&adds, 0.99),
            last / first,
            percentile_ms(&dels, 0.5),
            percentile_ms(&dels, 0.99),
            mem_per_pod
        );
    }
    // What tcx costs over clsact per ADD, in grace periods (two attaches
    // wait for one each; the rest of an ADD is the same in both modes).
    if let (Some(t), Some(c), Some(gp)) = (
        res.last("scale.natra.add_p50"),
        res.last("scale.natra-clsact.add_p50"),
        res.last("scale.natra.grace_period_ms"),
    ) {
        res.record("scale.natra.tcx_over_clsact_in_gps", (t - c) / gp);
    }
}
