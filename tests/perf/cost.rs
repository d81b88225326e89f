//! Scenario 4, dataplane cost per packet: tests/common/bpf_cost.rs (the
//! BPF_PROG_RUN bench of `make bench-bpf`). Upstream has no equivalent (TBF
//! and IFB run as kernel code); the softirq time per GB of rate.rs is the
//! figure that compares both.
use crate::common::bpf_cost;
use crate::results::Results;

/// "heavy, over rate: drop" -> "heavy-over-rate-drop".
pub fn slug(path: &str) -> String {
    let s: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

pub fn run(repeat: u32, res: &mut Results) -> Vec<&'static str> {
    let _exclusive = crate::common::quiet::measuring();
    let cost = bpf_cost::measure(repeat);
    println!("{}", cost.render());
    res.record("cost.bpf.pass-through.v4", cost.pass[0]);
    res.record("cost.bpf.pass-through.v6", cost.pass[1]);
    for (name, r) in &cost.rows {
        res.record(format!("cost.bpf.{}.v4", slug(name)), r[0]);
        res.record(format!("cost.bpf.{}.v6", slug(name)), r[1]);
    }
    res.record("cost.bpf.heavy_worst", cost.worst_heavy());
    cost.rows.iter().map(|(name, _)| *name).collect()
}
