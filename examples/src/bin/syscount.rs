//! syscount: how many times a program (all its threads and child
//! processes) made each system call, caught with Syscall User Dispatch.
//!
//! `syscount [--json] [-o FILE] -- PROG [ARGS...]`
//!
//! Processes killed by a signal still count: every traced process adds to
//! counters in one shared mapping as it goes. Thread and process totals
//! count successful forks, and thread creations as they are attempted.

use clap::Parser;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use sud_examples::config::{Mode, SharedArea};
use sud_examples::launcher::{self, Launch};

#[derive(Parser, Debug)]
#[command(
    name = "syscount",
    about = "Count the system calls of a program with Syscall User Dispatch (no ptrace)"
)]
struct Cli {
    /// Print one JSON object: {"total", "counts", "processes", "threads"}.
    #[arg(long)]
    json: bool,
    /// Write the counts to FILE instead of standard error.
    #[arg(short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// The program to run and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "PROG [ARGS...]"
    )]
    program: Vec<OsString>,
}

/// The counts, biggest first (ties by name).
fn counts(shared: &SharedArea) -> Vec<(String, u64)> {
    let mut counts: Vec<(String, u64)> = shared
        .per_number
        .iter()
        .enumerate()
        .map(|(nr, c)| (nr, c.load(Relaxed)))
        .filter(|&(_, n)| n > 0)
        .map(|(nr, n)| (launcher::slot_name(nr), n))
        .collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

fn report(shared: &SharedArea, json: bool) -> String {
    let counts = counts(shared);
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let processes = shared.processes.load(Relaxed);
    let threads = shared.threads.load(Relaxed);
    if json {
        let fields: Vec<String> = counts
            .iter()
            .map(|(name, n)| format!("\"{name}\": {n}"))
            .collect();
        format!(
            "{{\"total\": {total}, \"counts\": {{{}}}, \"processes\": {processes}, \"threads\": {threads}}}\n",
            fields.join(", ")
        )
    } else {
        let mut text = format!("{:>10}  syscall\n", "calls");
        for (name, n) in &counts {
            text += &format!("{n:>10}  {name}\n");
        }
        text += &format!("{total:>10}  total ({processes} processes, {threads} threads)\n");
        text
    }
}

fn main() {
    let cli = Cli::parse();
    let launch = Launch {
        mode: Mode::Count,
        follow: true,
        trace: None,
        faults: Vec::new(),
        output: cli.output,
        program: cli.program,
    };
    match launcher::run(&launch) {
        Ok(mut finished) => {
            let text = report(finished.shared, cli.json);
            if let Err(e) = finished.report.write_all(text.as_bytes()) {
                eprintln!("syscount: cannot write the report: {e}");
            }
            launcher::exit_like(finished.status)
        }
        Err(e) => {
            eprintln!("syscount: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
