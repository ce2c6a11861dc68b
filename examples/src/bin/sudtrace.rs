//! sudtrace: one line per system call of a program, strace style, caught
//! with Syscall User Dispatch inside the program (no ptrace).
//!
//! `sudtrace [-f] [-o FILE] [-e trace=NAME[,NAME...]] -- PROG [ARGS...]`
//!
//! Calls whose result the tracer never sees get `= ?`: exit, exit_group,
//! rt_sigreturn, and clone/clone3 with a new stack (the engine re-issues
//! them; the new thread's own lines carry its tid).

use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;
use sud_examples::config::Mode;
use sud_examples::launcher::{self, Launch};

#[derive(Parser, Debug)]
#[command(
    name = "sudtrace",
    about = "Trace the system calls of a program with Syscall User Dispatch (no ptrace)"
)]
struct Cli {
    /// Follow threads and child processes (without it only the first
    /// process's main thread is shown).
    #[arg(short = 'f')]
    follow: bool,
    /// Write the trace to FILE instead of standard error.
    #[arg(short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Show only these syscalls: `trace=NAME[,NAME...]`.
    #[arg(short = 'e', value_name = "trace=NAME[,NAME...]", value_parser = parse_trace)]
    expr: Option<TraceList>,
    /// The program to run and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "PROG [ARGS...]"
    )]
    program: Vec<OsString>,
}

/// The syscall numbers of `-e trace=`.
#[derive(Debug, Clone)]
struct TraceList(Vec<u64>);

fn parse_trace(text: &str) -> Result<TraceList, String> {
    let list = text
        .strip_prefix("trace=")
        .ok_or_else(|| format!("expected trace=NAME[,NAME...], got '{text}'"))?;
    list.split(',')
        .map(|name| launcher::parse_syscall(name).map(|s| s.id() as u64))
        .collect::<Result<_, _>>()
        .map(TraceList)
}

fn main() {
    let cli = Cli::parse();
    let launch = Launch {
        mode: Mode::Trace,
        follow: cli.follow,
        trace: cli.expr.map(|list| list.0),
        faults: Vec::new(),
        output: cli.output,
        program: cli.program,
    };
    match launcher::run(&launch) {
        Ok(finished) => launcher::exit_like(finished.status),
        Err(e) => {
            eprintln!("sudtrace: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
