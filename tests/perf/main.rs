//! natra beside the upstream `bandwidth` plugin, same machine, same run,
//! same kind of Pods: rate accuracy, mice beside an elephant, many mice,
//! cost and scale (one file per scenario). Prints one side-by-side table.
//!
//! - `make bench` (NATRA_BENCH=full): 3 runs, rewrites docs/perf-vs-vanilla.md
//!   and docs/img/*.png.
//! - `make bench-quick`, and `make test` (which runs every ignored test):
//!   one short run, table and plots under CARGO_TARGET_TMPDIR/perf.
//!
//! Both fail when a target's gate does not hold (targets.rs).
#[path = "../common/mod.rs"]
mod common;

mod bulk;
mod cost;
mod doc;
mod many_mice;
mod memory;
mod mice_load;
mod mode;
mod plot;
mod rate;
mod report;
mod results;
mod scale;
mod setup;
mod softirq;
mod targets;

use std::path::PathBuf;
use std::time::Instant;

use mode::Mode;
use results::Results;
use setup::Rig;

#[test]
#[ignore = "needs root: netns, bpffs, real traffic (quick in make test, full in make bench)"]
fn natra_vs_upstream_bandwidth() {
    common::require_root();
    let mode = Mode::from_env();
    let started = Instant::now();
    let rig = Rig::new();
    let mut res = Results::default();
    let mut bpf_paths = Vec::new();
    for run in 1..=mode.runs {
        println!("\n== {} mode, run {run}/{}", mode.name(), mode.runs);
        // NATRA_BENCH_ONLY=scale,cost (say) runs only those scenarios, to
        // iterate on one; the doc is only rewritten by a whole run.
        let only = std::env::var("NATRA_BENCH_ONLY").unwrap_or_default();
        let wanted = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
        if wanted("cost") {
            bpf_paths = cost::run(mode.bpf_repeat, &mut res);
        }
        if wanted("rate") {
            rate::run(&rig, &mode, &mut res);
        }
        if wanted("mice") {
            mice_load::run(&rig, &mode, &mut res);
        }
        if wanted("many_mice") {
            many_mice::run(&rig, &mode, &mut res);
        }
        if wanted("scale") {
            scale::run(&rig, &mode, &mut res);
        }
    }
    let targets = targets::all(&mode, &res);
    let rows = report::rows(&mode, &bpf_paths);
    let table = report::text(&res, &rows, &targets);
    println!(
        "\nnatra vs upstream bandwidth ({} mode, {} run(s), {:.1} min): median [min–max]\n{table}",
        mode.name(),
        mode.runs,
        started.elapsed().as_secs_f64() / 60.0
    );

    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("perf");
    std::fs::create_dir_all(&out).expect("create the perf output dir");
    std::fs::write(out.join("table.txt"), &table).expect("write the table");
    let partial = std::env::var_os("NATRA_BENCH_ONLY").is_some();
    let (doc_path, img) = if mode.full && !partial {
        let docs = common::repo_root().join("docs");
        (docs.join("perf-vs-vanilla.md"), docs.join("img"))
    } else {
        (out.join("perf-vs-vanilla.md"), out.join("img"))
    };
    let plots = plot::all(&mode, &res, &out.join("data"), &img);
    let doc = doc::Doc {
        mode: &mode,
        res: &res,
        rows: &rows,
        targets: &targets,
        plots: &plots,
        img_dir: "img",
        took: started.elapsed(),
    };
    std::fs::write(&doc_path, doc.render()).expect("write the doc");
    println!(
        "wrote {} and its plots in {}",
        doc_path.display(),
        img.display()
    );

    let failed: Vec<String> = targets
        .iter()
        // A partial run judges only what it measured.
        .filter(|t| t.gate_passes() != Some(true) && !(partial && t.value.is_none()))
        .map(|t| {
            format!(
                "{} = {:?}: gate {} {} ({})",
                t.name,
                t.value,
                t.sign(),
                t.gate_bound(),
                t.gate_kind()
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "gates failed:\n{}\n{table}",
        failed.join("\n")
    );
}
