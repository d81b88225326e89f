//! The side-by-side table (printed, and in the doc as Markdown): one row per
//! figure, one column per limiter, each cell the median with [min–max] over
//! the runs, and natra / upstream (containerd burst) computed run by run.
use crate::bulk::Dir;
use crate::mode::{Mode, KB};
use crate::rate::cap_label;
use crate::results::Results;
use crate::setup::Limiter;
use crate::targets::Target;

pub struct Row {
    pub section: String,
    pub label: String,
    /// Metric key with `{l}` where the limiter's key goes.
    pub key: String,
    pub decimals: usize,
    /// For a natra-only row: upstream's figure its ratio is taken against.
    pub versus: Option<String>,
}

fn row(section: &str, label: impl Into<String>, key: impl Into<String>, decimals: usize) -> Row {
    Row {
        section: section.into(),
        label: label.into(),
        key: key.into(),
        decimals,
        versus: None,
    }
}

/// A natra-only row (its key has no `{l}`) compared with upstream's `versus`.
fn row_vs(section: &str, label: &str, key: &str, versus: &str, decimals: usize) -> Row {
    Row {
        versus: Some(versus.into()),
        ..row(section, label, key, decimals)
    }
}

pub fn rows(mode: &Mode, bpf_paths: &[&str]) -> Vec<Row> {
    let mut r = Vec::new();
    for &cap in &mode.rate_caps {
        let c = cap_label(cap);
        let s = format!("1. rate accuracy, bulk TCP at {c}");
        for dir in Dir::BOTH {
            let (d, dl) = (dir.key(), dir.label());
            r.push(row(
                &s,
                format!("{dl}: wire rate / cap"),
                format!("rate.{c}.{d}.{{l}}.wire_over_cap"),
                3,
            ));
            r.push(row(
                &s,
                format!("{dl}: goodput / cap"),
                format!("rate.{c}.{d}.{{l}}.good_over_cap"),
                3,
            ));
            r.push(row(
                &s,
                format!("{dl}: largest 1 s window / cap"),
                format!("rate.{c}.{d}.{{l}}.peak_over_cap"),
                2,
            ));
        }
    }
    for dir in Dir::BOTH {
        let (d, dl) = (dir.key(), dir.label());
        r.push(row(
            "1. rate accuracy, no limit",
            format!("{dl}: goodput Mbit/s"),
            format!("rate.{d}.{{l}}.goodput_mbit"),
            0,
        ));
    }
    let s = format!(
        "2. mice beside an elephant, cap {}",
        cap_label(mode.mice_cap)
    );
    for dir in Dir::BOTH {
        let (d, dl) = (dir.key(), dir.label());
        for &size in &mode.mice_sizes {
            let k = size / KB;
            for (phase, pl) in [("unloaded", "alone"), ("loaded", "+ elephant")] {
                for q in ["p50", "p90", "p99"] {
                    r.push(row(
                        &s,
                        format!("{dl}: {k} KB mice {q} ms, {pl}"),
                        format!("mice.{d}.{{l}}.{k}k.{phase}.{q}"),
                        2,
                    ));
                }
            }
        }
        r.push(row(
            &s,
            format!("{dl}: mice/s beside the elephant"),
            format!("mice.{d}.{{l}}.mice_per_s"),
            1,
        ));
        r.push(row(
            &s,
            format!("{dl}: elephant goodput / cap"),
            format!("mice.{d}.{{l}}.elephant_over_cap"),
            3,
        ));
    }
    let s = format!(
        "3. {} mice + an elephant, cap {}",
        mode.many_mice,
        cap_label(mode.many_cap)
    );
    for dir in Dir::BOTH {
        let (d, dl) = (dir.key(), dir.label());
        r.push(row(
            &s,
            format!("{dl}: max 1 s aggregate / cap"),
            format!("many.{d}.{{l}}.agg_max_over_cap"),
            3,
        ));
        r.push(row(
            &s,
            format!("{dl}: mean 1 s aggregate / cap"),
            format!("many.{d}.{{l}}.agg_mean_over_cap"),
            3,
        ));
        r.push(row(
            &s,
            format!("{dl}: 16 KB mice p99 ms"),
            format!("many.{d}.{{l}}.mice_p99"),
            1,
        ));
        r.push(row(
            &s,
            format!("{dl}: mice/s"),
            format!("many.{d}.{{l}}.mice_per_s"),
            0,
        ));
    }
    let s = "4. cost";
    let top = cap_label(*mode.rate_caps.last().unwrap());
    for dir in Dir::BOTH {
        r.push(row(
            s,
            format!("softirq ms per GB, bulk TCP {} at {top}", dir.label()),
            format!("cost.softirq.{}.{{l}}", dir.key()),
            0,
        ));
    }
    r.push(row(
        s,
        "BPF pass-through floor ns/packet, IPv4",
        "cost.bpf.pass-through.v4",
        1,
    ));
    for p in bpf_paths {
        let slug = crate::cost::slug(p);
        r.push(row(
            s,
            format!("BPF {p} ns/packet, IPv4"),
            format!("cost.bpf.{slug}.v4"),
            1,
        ));
        r.push(row(
            s,
            format!("BPF {p} ns/packet, IPv6"),
            format!("cost.bpf.{slug}.v6"),
            1,
        ));
    }
    let s = format!("5. scale, {} Pods", mode.scale_pods);
    r.push(row(&s, "ADD p50 ms", "scale.{l}.add_p50", 1));
    r.push(row(&s, "ADD p99 ms", "scale.{l}.add_p99", 1));
    r.push(row(
        &s,
        "ADD p50 last tenth / first tenth",
        "scale.{l}.add_last_over_first",
        2,
    ));
    r.push(row(&s, "DEL p50 ms", "scale.{l}.del_p50", 1));
    r.push(row(&s, "DEL p99 ms", "scale.{l}.del_p99", 1));
    for (fig, what) in [
        ("add_p50", "ADD p50 ms"),
        ("add_p99", "ADD p99 ms"),
        ("del_p50", "DEL p50 ms"),
        ("del_p99", "DEL p99 ms"),
        ("kernel_kib_per_pod", "kernel memory KiB per Pod"),
    ] {
        r.push(row_vs(
            &s,
            &format!("{what}, natra with attachMode clsact-hostside"),
            &format!("scale.natra-clsact.{fig}"),
            &format!("scale.upstream.{fig}"),
            1,
        ));
    }
    r.push(row(
        &s,
        "one RCU grace period ms (membarrier GLOBAL, synchronize_rcu)",
        "scale.natra.grace_period_ms",
        1,
    ));
    r.push(row(
        &s,
        "natra tcx ADD p50 over clsact, in grace periods",
        "scale.natra.tcx_over_clsact_in_gps",
        2,
    ));
    r.push(row(
        &s,
        "node fixed cost: first ADD on the node ms (loads the dataplane)",
        "scale.natra.first_add_ms",
        1,
    ));
    r.push(row(
        &s,
        "node fixed cost: kernel memory KiB (Slab+Percpu+Vmalloc delta)",
        "scale.natra.node_fixed_kib",
        0,
    ));
    r.push(row(
        &s,
        "node fixed cost: shared dataplane BPF memlock KiB (bpftool)",
        "scale.natra.shared_bpf_kib",
        0,
    ));
    r.push(row(
        &s,
        "kernel memory KiB per Pod (Slab+Percpu+Vmalloc delta)",
        "scale.{l}.kernel_kib_per_pod",
        1,
    ));
    r.push(row(
        &s,
        "BPF memlock KiB per Pod (programs + maps, bpftool)",
        "scale.{l}.bpf_kib_per_pod",
        1,
    ));
    r.push(row(
        &s,
        "BPF BTF KiB per Pod (bpftool)",
        "scale.{l}.btf_kib_per_pod",
        1,
    ));
    r
}

/// The row's key for limiter `l`; a key without `{l}` is natra's alone.
fn key_for(row: &Row, l: Limiter) -> String {
    if row.key.contains("{l}") {
        row.key.replace("{l}", l.key())
    } else if l == Limiter::Natra {
        row.key.clone()
    } else {
        String::new()
    }
}

fn cell(res: &Results, key: &str, decimals: usize, spread: bool) -> String {
    match res.get(key) {
        None => "–".into(),
        Some((lo, med, hi)) if spread && res.runs(key) > 1 => {
            format!("{med:.decimals$} [{lo:.decimals$}–{hi:.decimals$}]")
        }
        Some((_, med, _)) => format!("{med:.decimals$}"),
    }
}

/// (header, rows of cells) — shared by the text and Markdown renderings.
fn grid(res: &Results, rows: &[Row], spread: bool) -> (Vec<String>, Vec<(String, Vec<String>)>) {
    let mut header = vec!["figure".to_owned()];
    header.extend(Limiter::ALL.iter().map(|l| l.label().to_owned()));
    header.push("natra / upstream".into());
    let mut out = Vec::new();
    for row in rows {
        let mut cells = vec![row.label.clone()];
        let mut any = false;
        for l in Limiter::ALL {
            let c = cell(res, &key_for(row, l), row.decimals, spread);
            any |= c != "–";
            cells.push(c);
        }
        if !any {
            continue;
        }
        let upstream = row
            .versus
            .clone()
            .unwrap_or_else(|| key_for(row, Limiter::Upstream));
        let ratio = res.ratio(&key_for(row, Limiter::Natra), &upstream);
        cells.push(match ratio {
            Some((lo, med, hi)) if spread && lo != hi => format!("{med:.2} [{lo:.2}–{hi:.2}]"),
            Some((_, med, _)) => format!("{med:.2}"),
            None => "–".into(),
        });
        out.push((row.section.clone(), cells));
    }
    (header, out)
}

pub fn text(res: &Results, rows: &[Row], targets: &[Target]) -> String {
    let (header, grid) = grid(res, rows, true);
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for (_, cells) in &grid {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = w - c.chars().count();
            if i == 0 {
                s += &format!("{c}{} ", " ".repeat(pad));
            } else {
                s += &format!(" {}{c}", " ".repeat(pad));
            }
        }
        s + "\n"
    };
    let mut out = line(&header);
    let mut section = String::new();
    for (s, cells) in &grid {
        if *s != section {
            out += &format!("-- {s}\n");
            section = s.clone();
        }
        out += &line(cells);
    }
    out += "\ntargets (medians of this run):\n";
    out += &targets_text(targets);
    out
}

pub fn targets_text(targets: &[Target]) -> String {
    let mut out = String::new();
    for t in targets {
        let v = t.value.map_or("not measured".into(), |v| format!("{v:.3}"));
        let met = match t.met() {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "not measured",
        };
        out += &format!(
            "  {:<62} {:>12}  target {} {:<8} {:<13} make test gate {} {} ({})\n",
            t.name,
            v,
            t.sign(),
            t.goal,
            met,
            t.sign(),
            t.gate_bound(),
            t.gate_kind()
        );
    }
    out
}

pub fn markdown_tables(res: &Results, rows: &[Row], spread: bool) -> String {
    let (header, grid) = grid(res, rows, spread);
    let mut out = String::new();
    let mut section = String::new();
    for (s, cells) in &grid {
        if *s != section {
            out += &format!(
                "\n#### {s}\n\n| {} |\n|{}\n",
                header.join(" | "),
                "---|".repeat(header.len())
            );
            section = s.clone();
        }
        out += &format!("| {} |\n", cells.join(" | "));
    }
    out
}

pub fn markdown_targets(targets: &[Target]) -> String {
    let mut out = String::from(
        "| target | measured (median) | goal | met? | `make test` gate |\n|---|---|---|---|---|\n",
    );
    for t in targets {
        out += &format!(
            "| {} | {} | {} {} | {} | {} {} ({}) |\n",
            t.name,
            t.value.map_or("–".into(), |v| format!("{v:.3}")),
            t.sign(),
            t.goal,
            match t.met() {
                Some(true) => "met",
                Some(false) => "**not met**",
                None => "not measured",
            },
            t.sign(),
            t.gate_bound(),
            t.gate_kind()
        );
    }
    out
}
