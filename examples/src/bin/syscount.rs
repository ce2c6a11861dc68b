//! syscount: how many times a program (all its threads and child
//! processes) made each system call, caught with Syscall User Dispatch.
//!
//! `syscount [--json] [--no-rewrite] [--from-start] [--dbi] [-o FILE] -- PROG [ARGS...]`
//!
//! With `--dbi` the program runs translated by sud-codegen's DBI from the
//! preload's constructor to its exit: its syscalls reach the counters by
//! direct calls from translated code instead of by SIGSYS, and the report
//! says how many arrived each way.
//!
//! Processes killed by a signal still count: every traced process adds to
//! counters in one shared mapping as it goes. Thread and process totals
//! count successful forks, and thread creations as they are attempted.

use clap::Parser;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use sud_examples::config::{Mode, TraceOptions, Translate};
use sud_examples::launcher::{self, Launch};
use sud_examples::report;

#[derive(Parser, Debug)]
#[command(
    name = "syscount",
    about = "Count the system calls of a program with Syscall User Dispatch (no ptrace)"
)]
struct Cli {
    /// Print one JSON object: {"total", "counts", "processes", "threads",
    /// "entrances", "compat", "patched_sites"} (schema in examples/JSON.md).
    #[arg(long)]
    json: bool,
    /// Keep every syscall site trapping (by default a site is rewritten
    /// into a direct call of the hooks after its first trap).
    #[arg(long)]
    no_rewrite: bool,
    /// Run the program translated by the DBI (x86-64): syscalls arrive by
    /// direct call instead of by trap (the JSON's "entrances" say how many
    /// came each way; the table gains a line). Sites are not rewritten.
    #[arg(long)]
    dbi: bool,
    /// Write the counts to FILE instead of standard error.
    #[arg(short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Count from the program's first instruction (its dynamic loader's
    /// calls too), through sud-loader; static programs always are.
    #[arg(long)]
    from_start: bool,
    /// The program to run and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "PROG [ARGS...]"
    )]
    program: Vec<OsString>,
}

fn main() {
    let cli = Cli::parse();
    let launch = Launch {
        mode: Mode::Count,
        follow: true,
        rewrite: !cli.no_rewrite,
        trace: None,
        faults: Vec::new(),
        output: cli.output,
        program: cli.program,
        from_start: cli.from_start,
        options: TraceOptions {
            dbi: if cli.dbi {
                Translate::Follow
            } else {
                Translate::Off
            },
            ..TraceOptions::default()
        },
    };
    match launcher::run(&launch) {
        Ok(mut finished) => {
            let mut text = report::count_report(finished.shared, cli.json, None);
            if cli.dbi && !cli.json {
                text = report::with_entrance_line(text, finished.shared);
            }
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
