//! The targets, judged on the medians of this run, and the looser
//! gates `make test` holds them to (a noisy 2-core machine). A gate is
//! either the target with a margin (the target is met today) or a
//! regression guard at today's level (it is not met yet: the guard keeps it
//! from getting worse, and is tightened when the code improves).
use crate::bulk::Dir;
use crate::mode::{Mode, KB};
use crate::rate::cap_label;
use crate::results::Results;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    AtMost,
    AtLeast,
}

pub enum Gate {
    /// The target itself, with a margin for noise.
    Target(f64),
    /// Not met today: fail only if it gets worse than this.
    RegressionGuard(f64),
}

pub struct Target {
    pub name: String,
    pub value: Option<f64>,
    pub cmp: Cmp,
    pub goal: f64,
    pub gate: Gate,
}

impl Target {
    fn holds(&self, bound: f64) -> Option<bool> {
        self.value.map(|v| match self.cmp {
            Cmp::AtMost => v <= bound,
            Cmp::AtLeast => v >= bound,
        })
    }

    pub fn met(&self) -> Option<bool> {
        self.holds(self.goal)
    }

    pub fn gate_bound(&self) -> f64 {
        match self.gate {
            Gate::Target(b) | Gate::RegressionGuard(b) => b,
        }
    }

    pub fn gate_passes(&self) -> Option<bool> {
        self.holds(self.gate_bound())
    }

    pub fn gate_kind(&self) -> &'static str {
        match self.gate {
            Gate::Target(_) => "target + margin",
            Gate::RegressionGuard(_) => "regression guard: target not reliably met today",
        }
    }

    pub fn sign(&self) -> &'static str {
        match self.cmp {
            Cmp::AtMost => "<=",
            Cmp::AtLeast => ">=",
        }
    }
}

pub fn all(mode: &Mode, res: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    for cap in [10_000_000u64, 100_000_000] {
        for dir in Dir::BOTH {
            let key = format!("rate.{}.{}.natra.wire_over_cap", cap_label(cap), dir.key());
            t.push(Target {
                name: format!("rate {} {}: |wire/cap - 1|", cap_label(cap), dir.label()),
                value: res.median(&key).map(|v| (v - 1.0).abs()),
                cmp: Cmp::AtMost,
                goal: 0.02,
                gate: Gate::Target(0.06),
            });
        }
    }
    let size = format!(
        "{}k",
        mode.mice_sizes
            .iter()
            .find(|&&s| s == 16 * KB)
            .unwrap_or(&mode.mice_sizes[0])
            / KB
    );
    for dir in Dir::BOTH {
        let d = dir.key();
        let natra = |phase: &str| format!("mice.{d}.natra.{size}.{phase}.p99");
        t.push(Target {
            name: format!(
                "mice {size} p99 {}: beside an elephant / alone",
                dir.label()
            ),
            value: res.ratio(&natra("loaded"), &natra("unloaded")).map(|r| r.1),
            cmp: Cmp::AtMost,
            goal: 1.5,
            // 0.7-4.0 over 6 quick runs on a busy 2-core VM (tests/mice.rs
            // holds 1.5 with 400 mice per phase)
            gate: Gate::RegressionGuard(6.0),
        });
        t.push(Target {
            name: format!(
                "mice {size} p99 {} beside an elephant: upstream / natra",
                dir.label()
            ),
            value: res
                .ratio(
                    &format!("mice.{d}.upstream.{size}.loaded.p99"),
                    &natra("loaded"),
                )
                .map(|r| r.1),
            cmp: Cmp::AtLeast,
            goal: 20.0,
            // 3.7-73 over 6 quick runs on a busy 2-core VM; ~1 if natra's
            // mice waited behind the elephant like upstream's
            gate: Gate::RegressionGuard(2.5),
        });
        t.push(Target {
            name: format!(
                "200 mice + elephant {}: max 1 s aggregate / cap",
                dir.label()
            ),
            value: res.median(&format!("many.{d}.natra.agg_max_over_cap")),
            cmp: Cmp::AtMost,
            goal: 1.02,
            // 1.25-1.32 in the window where the mice start (their fast pass
            // on top of the elephant, within the 500 ms burst) when this was
            // written; upstream's TBF reads 1.02 here (the estimate's bias)
            gate: Gate::RegressionGuard(1.45),
        });
    }
    t.push(Target {
        name: "heavy path, worst ns/packet (BPF_PROG_RUN)".into(),
        value: res.median("cost.bpf.heavy_worst"),
        cmp: Cmp::AtMost,
        goal: 100.0,
        // ~216 ns when this bench was written; ~80-100 on a quiet VM since
        // the bucket went lock-free and the clock coarse (102-137 in a busy
        // full bench); 74-81 since the hash mixes words side by side and a
        // monotonic stamp is moved by a store (best of 25 short rounds).
        // 150: the target with room for this VM's neighbours (make test's
        // quick run read 135 before those changes).
        gate: Gate::Target(150.0),
    });
    // Issue 15: ADD and DEL beside upstream's, run by run in one run.
    let vs = |natra: &str, up: &str| res.ratio(natra, up).map(|(_, m, _)| m);
    for (fig, what) in [("add_p50", "ADD p50"), ("add_p99", "ADD p99")] {
        t.push(Target {
            name: format!("natra clsact-hostside {what} / upstream {what}"),
            value: vs(
                &format!("scale.natra-clsact.{fig}"),
                &format!("scale.upstream.{fig}"),
            ),
            cmp: Cmp::AtMost,
            goal: 1.0,
            // 0.6-0.9 (p50) when the shared dataplane landed; p99 is a
            // single Pod out of 20 in the quick run, hence the margin.
            gate: Gate::Target(if fig == "add_p50" { 1.5 } else { 3.0 }),
        });
    }
    t.push(Target {
        name: "natra tcx-hostside ADD p50 / upstream ADD p50".into(),
        value: vs("scale.natra.add_p50", "scale.upstream.add_p50"),
        cmp: Cmp::AtMost,
        goal: 3.0,
        // Two tcx attaches wait for an RCU grace period each with rtnl held
        // (8-16 ms each on this VM): 7-16 when the shared dataplane landed
        // (~12-20 ms over upstream's ~2), ~40 with a per-Pod load. The guard
        // catches verification coming back into the ADD.
        gate: Gate::RegressionGuard(25.0),
    });
    t.push(Target {
        name: "natra clsact-hostside DEL p50 / upstream DEL p50".into(),
        value: vs("scale.natra-clsact.del_p50", "scale.upstream.del_p50"),
        cmp: Cmp::AtMost,
        goal: 1.0,
        gate: Gate::Target(1.5),
    });
    t.push(Target {
        name: "natra tcx-hostside DEL p50 / upstream DEL p50".into(),
        value: vs("scale.natra.del_p50", "scale.upstream.del_p50"),
        cmp: Cmp::AtMost,
        goal: 1.0,
        gate: Gate::RegressionGuard(4.0),
    });
    t.push(Target {
        name: format!(
            "natra kernel memory per Pod over {} Pods, KiB",
            mode.scale_pods
        ),
        value: res.median("scale.natra.kernel_kib_per_pod"),
        cmp: Cmp::AtMost,
        goal: 40.0,
        // Slab + Percpu + Vmalloc deltas pick up every other allocation on
        // the machine: 20 Pods in the quick run make that noise larger.
        gate: Gate::Target(80.0),
    });
    t.push(Target {
        name: "natra BPF memory per Pod, KiB (memlock)".into(),
        value: res.median("scale.natra.bpf_kib_per_pod"),
        cmp: Cmp::AtMost,
        goal: 256.0,
        gate: Gate::Target(256.0),
    });
    t
}
