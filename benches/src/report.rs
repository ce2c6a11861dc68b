//! `BENCHMARKS.md` and its chart: a table of every measured crossing with
//! ratios to the raw syscall and to the trap floor, the engine's targets
//! with the figures reached, a paragraph per crossing on how it is
//! measured, and a log-scale bar chart (`benchmarks.svg`).

use crate::error::{BenchError, Result};
use crate::probe::{Probe, Role};
use crate::results::Results;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The chart's file name, next to `BENCHMARKS.md`.
pub const CHART_FILE: &str = "benchmarks.svg";
/// The report's file name.
pub const REPORT_FILE: &str = "BENCHMARKS.md";

/// A figure the engine should reach.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The measured crossing.
    pub probe: Probe,
    /// What its median is compared with.
    pub bound: Bound,
    /// The upper bound of the ratio, or of the nanoseconds.
    pub limit: f64,
}

/// How a target compares its crossing.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// The ratio to another crossing's median.
    RatioTo(Probe),
    /// The median itself, in nanoseconds.
    Nanoseconds,
    /// The nanoseconds above another crossing's median.
    ExcessOver(Probe),
}

/// The engine's targets.
pub const TARGETS: [Target; 4] = [
    Target {
        probe: Probe::TrapEngineEmptyHook,
        bound: Bound::RatioTo(Probe::TrapFloor),
        limit: 1.10,
    },
    Target {
        probe: Probe::TrapEngineUnwatched,
        bound: Bound::RatioTo(Probe::TrapFloor),
        limit: 1.03,
    },
    Target {
        probe: Probe::SelectorFlipPair,
        bound: Bound::Nanoseconds,
        limit: 1.0,
    },
    Target {
        probe: Probe::DirectHook,
        bound: Bound::ExcessOver(Probe::ArmedAllowSyscall),
        limit: 15.0,
    },
];

impl Target {
    /// The reached figure: a ratio, or nanoseconds.
    pub fn actual(&self, results: &Results) -> Option<f64> {
        let median = |p| results.get(p).map(|s| s.median);
        match self.bound {
            Bound::RatioTo(base) => results.ratio(self.probe, base),
            Bound::Nanoseconds => median(self.probe),
            Bound::ExcessOver(base) => Some(median(self.probe)? - median(base)?),
        }
    }

    /// The target as text, e.g. `trap_engine_unwatched / trap_floor <= 1.03`.
    pub fn describe(&self) -> String {
        match self.bound {
            Bound::RatioTo(base) => format!(
                "`{} / {}` <= {:.2}",
                self.probe.key(),
                base.key(),
                self.limit
            ),
            Bound::Nanoseconds => format!("`{}` <= {} ns", self.probe.key(), self.limit),
            Bound::ExcessOver(base) => format!(
                "`{} - {}` <= {} ns",
                self.probe.key(),
                base.key(),
                self.limit
            ),
        }
    }
}

fn cell(value: Option<f64>) -> String {
    match value {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
        None => "–".to_owned(),
    }
}

fn table(out: &mut String, results: &Results, role: Role) {
    out.push_str("| crossing | median ns | p90 ns | × raw_syscall | × trap_floor |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: |\n");
    for m in results.measured.iter().filter(|m| m.probe.role() == role) {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            m.probe.key(),
            cell(Some(m.summary.median)),
            cell(Some(m.summary.p90)),
            cell(results.ratio(m.probe, Probe::RawSyscall)),
            cell(results.ratio(m.probe, Probe::TrapFloor)),
        );
    }
    for (probe, why) in results.absent.iter().filter(|(p, _)| p.role() == role) {
        let _ = writeln!(out, "| `{}` | absent | | | | <!-- {why} -->", probe.key());
    }
}

/// The text of `BENCHMARKS.md`.
pub fn markdown(results: &Results) -> String {
    let mut out = String::new();
    out.push_str("# What each boundary crossing costs\n\n");
    let _ = writeln!(
        out,
        "Measured on {} by `cargo run --release -p sud-benches --bin crossings -- --report` \
         ({}), all in one process so the ratios hold on a noisy machine.\n\n\
         Machine: {}.\n",
        results.date, results.plan, results.machine
    );
    let _ = writeln!(
        out,
        "![median cost per crossing, log scale]({CHART_FILE})\n"
    );
    out.push_str("Figures are nanoseconds per operation: median and 90th percentile over samples, each sample a timed batch of many operations.\n\n");
    table(&mut out, results, Role::Contract);
    out.push_str("\n## The engine's targets\n\n| target | reached | met |\n| --- | ---: | --- |\n");
    for target in TARGETS {
        let actual = target.actual(results);
        let met = match actual {
            Some(v) if v <= target.limit => "yes",
            Some(_) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(out, "| {} | {} | {met} |", target.describe(), cell(actual));
    }
    out.push_str("\n## Diagnostics\n\nNot part of the JSON contract: variants that show where the time goes.\n\n");
    table(&mut out, results, Role::Diagnostic);
    out.push_str("\n## How each crossing is measured\n\n");
    out.push_str("Common to all: the measuring thread is pinned to the CPU it started on; each in-process crossing is calibrated so one sample (a batch of operations between two clock reads) lasts the plan's sample time, a discarded batch warms up each turn, and the rounds visit every crossing in turn. `std::hint::black_box` keeps the compiler from folding the syscall number and results.\n\n");
    for probe in Probe::ALL {
        let _ = writeln!(out, "- **`{}`**: {}", probe.key(), probe.method());
    }
    if !results.absent.is_empty() {
        out.push_str("\n## Absent\n\n");
        for (probe, why) in &results.absent {
            let _ = writeln!(out, "- `{}`: {why}", probe.key());
        }
    }
    out
}

/// Draws the log-scale bar chart of every measured median into `path`.
pub fn chart(results: &Results, path: &Path) -> Result<()> {
    let chart_err = |e: &dyn std::fmt::Display| BenchError::Chart(e.to_string());
    let bars = &results.measured;
    let count = bars.len() as i32;
    let medians = bars.iter().map(|m| m.summary.median.max(0.01));
    let lo = medians.clone().fold(f64::INFINITY, f64::min).min(1.0) / 2.0;
    let hi = medians.fold(1.0, f64::max) * 4.0;
    let height = 90 + 26 * bars.len() as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| chart_err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Median ns per crossing (log scale) — {}", results.machine),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(230)
        .build_cartesian_2d((lo..hi).log_scale(), (0..count).into_segmented())
        .map_err(|e| chart_err(&e))?;
    let names: Vec<&str> = bars.iter().map(|m| m.probe.key()).collect();
    // The first table row is the top bar.
    let row = |i: usize| count - 1 - i as i32;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(bars.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => usize::try_from(count - 1 - i)
                .ok()
                .and_then(|i| names.get(i))
                .map_or(String::new(), |name| (*name).to_owned()),
            SegmentValue::Last => String::new(),
        })
        .x_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        })
        .x_desc("nanoseconds per operation")
        .draw()
        .map_err(|e| chart_err(&e))?;
    let colour = |probe: Probe| match (probe, probe.role()) {
        (Probe::TrapFloor | Probe::RawSyscall, _) => RGBColor(200, 70, 50),
        (_, Role::Diagnostic) => RGBColor(150, 150, 150),
        _ => RGBColor(60, 110, 180),
    };
    chart
        .draw_series(bars.iter().enumerate().map(|(i, m)| {
            let i = row(i);
            let mut bar = Rectangle::new(
                [
                    (lo, SegmentValue::Exact(i)),
                    (m.summary.median.max(lo), SegmentValue::Exact(i + 1)),
                ],
                colour(m.probe).filled(),
            );
            bar.set_margin(3, 3, 0, 0);
            bar
        }))
        .map_err(|e| chart_err(&e))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, m)| {
            Text::new(
                cell(Some(m.summary.median)),
                (
                    m.summary.median.max(lo) * 1.08,
                    SegmentValue::CenterOf(row(i)),
                ),
                ("sans-serif", 12),
            )
        }))
        .map_err(|e| chart_err(&e))?;
    root.present().map_err(|e| chart_err(&e))
}

/// The line after which `BENCHMARKS.md` holds sections measured by other
/// means (whole programs, the DBI, the tools): a new report keeps them.
pub const KEPT_SECTIONS_MARKER: &str =
    "<!-- Sections below are not written by `crossings --report`: it keeps them. -->";

/// Writes `BENCHMARKS.md` and `benchmarks.svg` into `dir`; returns both
/// paths. Whatever the old report holds after [`KEPT_SECTIONS_MARKER`]
/// stays.
pub fn write(results: &Results, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let report = dir.join(REPORT_FILE);
    let svg = dir.join(CHART_FILE);
    chart(results, &svg)?;
    let old = std::fs::read_to_string(&report).unwrap_or_default();
    let kept = old
        .find(KEPT_SECTIONS_MARKER)
        .map_or(KEPT_SECTIONS_MARKER, |at| &old[at..]);
    std::fs::write(
        &report,
        format!("{}\n{}", markdown(results), kept.trim_end()) + "\n",
    )?;
    Ok((report, svg))
}
