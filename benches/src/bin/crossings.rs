//! The runner: measures every crossing in one process and prints the JSON
//! object (`--json`), writes `BENCHMARKS.md` and `benchmarks.svg` at the
//! repository root (`--report`), or prints a table. `--quick` keeps the whole
//! run under 30 seconds on a 2-core machine.
//!
//! `cargo run --release -p sud-benches --bin crossings -- [--quick] [--json] [--report]`

use std::path::Path;
use std::process::ExitCode;
use sud_benches::{host, report, run, Plan, Probe};

fn main() -> ExitCode {
    let mut quick = false;
    let mut json = false;
    let mut write_report = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "--json" => json = true,
            "--report" => write_report = true,
            other => {
                eprintln!("crossings: unknown argument {other}\nusage: crossings [--quick] [--json] [--report]");
                return ExitCode::from(2);
            }
        }
    }
    let plan = if quick { Plan::quick() } else { Plan::full() };
    match host::pin_to_current_cpu() {
        Some(cpu) => eprintln!("crossings: pinned to CPU {cpu}"),
        None => eprintln!("crossings: could not pin; figures will be noisier"),
    }
    let results = match run::measure(&plan, &Probe::ALL, |line| eprintln!("crossings: {line}")) {
        Ok(results) => results,
        Err(e) => {
            eprintln!("crossings: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (probe, why) in &results.absent {
        eprintln!("crossings: {} absent: {why}", probe.key());
    }
    if json {
        println!("{}", results.to_json());
    }
    if write_report {
        // The repository root: the workspace directory above this crate.
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir.parent().unwrap_or(manifest_dir);
        match report::write(&results, root) {
            Ok((md, svg)) => eprintln!("crossings: wrote {} and {}", md.display(), svg.display()),
            Err(e) => {
                eprintln!("crossings: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if !json {
        print!("{}", report::markdown(&results));
    }
    ExitCode::SUCCESS
}
