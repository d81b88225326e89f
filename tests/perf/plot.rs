//! PNG plots of the last run, drawn by gnuplot (Debian's gnuplot-nox,
//! installed by scripts/install-deps.sh): a data file per line, one script
//! per image.
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::bulk::Dir;
use crate::common::pod::run_ok;
use crate::mode::Mode;
use crate::rate::cap_label;
use crate::results::Results;

/// A gnuplot single-quoted string ('' is a literal quote inside one).
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One panel: a title, axes, and the plot series drawn in it.
struct Panel {
    title: String,
    series: String,
    xlabel: &'static str,
    ylabel: &'static str,
    logx: bool,
    logy: bool,
    /// Clip the y axis at this (linear plots whose burst would squash the
    /// steady state into a line).
    ymax: Option<f64>,
    /// A horizontal reference line (the cap), in y units.
    hline: Option<f64>,
}

/// Writes `name`.png into `img` with `panels` in `rows` x `cols`; returns
/// the file name.
fn draw(
    res: &Results,
    data: &Path,
    img: &Path,
    name: &str,
    rows: usize,
    cols: usize,
    panels: &[Panel],
) -> String {
    let png = format!("{name}.png");
    let mut gp = format!(
        "set terminal pngcairo size {},{} font 'sans,10'\nset output '{}'\n\
         set multiplot layout {rows},{cols}\nset grid\nset key below font ',9'\n",
        560 * cols,
        420 * rows,
        img.join(&png).display()
    );
    for p in panels {
        let lines = res.series.get(&p.series).cloned().unwrap_or_default();
        let _ = write!(
            gp,
            "set title {}\nset xlabel {}\nset ylabel {}\n{}\n{}\n",
            quoted(&p.title),
            quoted(p.xlabel),
            quoted(p.ylabel),
            if p.logx {
                "set logscale x"
            } else {
                "unset logscale x"
            },
            if p.logy {
                "set logscale y"
            } else {
                "unset logscale y"
            },
        );
        let _ = writeln!(
            gp,
            "{}",
            p.ymax.map_or("set yrange [*:*]".to_owned(), |m| format!(
                "set yrange [0:{m}]"
            ))
        );
        let mut plots = Vec::new();
        for (i, (label, pts)) in lines.iter().enumerate() {
            let file = data.join(format!("{}-{i}.dat", p.series));
            let body: String = pts.iter().map(|(x, y)| format!("{x} {y}\n")).collect();
            fs::write(&file, body).expect("write plot data");
            plots.push(format!(
                "{} using 1:2 with linespoints pt 7 ps 0.4 lw 2 title {}",
                quoted(&file.display().to_string()),
                quoted(label)
            ));
        }
        if let Some(y) = p.hline {
            plots.push(format!("{y} with lines dt 2 lc 'black' title 'cap'"));
        }
        if plots.is_empty() {
            plots.push("NaN title 'not measured'".into());
        }
        let _ = writeln!(gp, "plot {}", plots.join(", "));
    }
    gp += "unset multiplot\n";
    let script = data.join(format!("{name}.gp"));
    fs::write(&script, gp).expect("write gnuplot script");
    run_ok(Command::new("gnuplot").arg(&script));
    png
}

/// Draws every plot; returns (file name, caption) pairs.
pub fn all(mode: &Mode, res: &Results, data: &Path, img: &Path) -> Vec<(String, String)> {
    fs::create_dir_all(data).expect("create plot data dir");
    fs::create_dir_all(img).expect("create image dir");
    let mut out = Vec::new();
    let mut panels = Vec::new();
    for &cap in &mode.rate_caps {
        for dir in Dir::BOTH {
            panels.push(Panel {
                title: format!(
                    "bulk TCP, cap {}, {} (y clipped at 2x cap)",
                    cap_label(cap),
                    dir.label()
                ),
                series: format!("rate-{}-{}", cap_label(cap), dir.key()),
                xlabel: "s since the flow started (1st interval: not in the means)",
                ylabel: "receiver Mbit/s",
                logx: false,
                logy: false,
                ymax: Some(2.0 * cap as f64 / 1e6),
                hline: Some(cap as f64 / 1e6),
            });
        }
    }
    let png = draw(
        res,
        data,
        img,
        "rate-over-time",
        mode.rate_caps.len(),
        2,
        &panels,
    );
    out.push((
        png,
        "Scenario 1: receiver rate over 1 s windows, per cap and direction".into(),
    ));

    let panels: Vec<Panel> = Dir::BOTH
        .iter()
        .map(|dir| Panel {
            title: format!(
                "16 KB mice, cap {}, {}",
                cap_label(mode.mice_cap),
                dir.label()
            ),
            series: format!("mice-cdf-{}", dir.key()),
            xlabel: "completion time ms (log)",
            ylabel: "fraction of mice",
            logx: true,
            logy: false,
            ymax: Some(1.0),
            hline: None,
        })
        .collect();
    let png = draw(res, data, img, "mice-cdf", 1, 2, &panels);
    out.push((
        png,
        "Scenario 2: mice completion-time CDF, alone and beside an elephant".into(),
    ));

    let panels: Vec<Panel> = Dir::BOTH
        .iter()
        .map(|dir| Panel {
            title: format!(
                "{} mice + elephant, cap {}, {} (y clipped at 2x cap)",
                mode.many_mice,
                cap_label(mode.many_cap),
                dir.label()
            ),
            series: format!("many-{}", dir.key()),
            xlabel: "s since the elephant started (mice from 2 s)",
            ylabel: "aggregate wire Mbit/s",
            logx: false,
            logy: false,
            ymax: Some(2.0 * mode.many_cap as f64 / 1e6),
            hline: Some(mode.many_cap as f64 / 1e6),
        })
        .collect();
    let png = draw(res, data, img, "many-mice", 1, 2, &panels);
    out.push((
        png,
        "Scenario 3: aggregate rate over 1 s windows with 200 concurrent mice".into(),
    ));

    let panels = [Panel {
        title: "ADD latency vs Pods already limited".into(),
        series: "add-vs-pods".into(),
        xlabel: "Pod number",
        ylabel: "ADD ms (log)",
        logx: false,
        logy: true,
        ymax: None,
        hline: None,
    }];
    let png = draw(res, data, img, "add-vs-pods", 1, 1, &panels);
    out.push((
        png,
        "Scenario 5: ADD latency against the number of limited Pods".into(),
    ));
    out
}
