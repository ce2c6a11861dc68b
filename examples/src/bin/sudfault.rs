//! sudfault: make chosen system calls of a program fail with a chosen errno,
//! without executing them, to test its error handling. Caught with Syscall
//! User Dispatch inside the program; this injects faults for testing and
//! confines nothing (SUD is not a security boundary).
//!
//! `sudfault [--json] [--no-rewrite] [--from-start] [-o FILE] --fail NAME=ERRNO[@N] [--fail ...] -- PROG [ARGS...]`
//!
//! `@N` counts calls of NAME over all the program's processes and threads,
//! from 1. Each injection is reported on standard error as it happens, and
//! a summary follows when the program ends.

use clap::Parser;
use std::ffi::OsString;
use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use sud_examples::config::{FaultRule, Mode, TraceOptions, MAX_FAULT_RULES};
use sud_examples::launcher::{self, Launch};

#[derive(Parser, Debug)]
#[command(
    name = "sudfault",
    about = "Make chosen system calls of a program fail, for testing (not a sandbox)"
)]
struct Cli {
    /// Report each injection and the summary as JSON lines (schema in
    /// examples/JSON.md).
    #[arg(long)]
    json: bool,
    /// Keep every syscall site trapping (by default a site is rewritten
    /// into a direct call of the hooks after its first trap).
    #[arg(long)]
    no_rewrite: bool,
    /// Write the reports to FILE instead of standard error.
    #[arg(short = 'o', value_name = "FILE")]
    output: Option<std::path::PathBuf>,
    /// Make call N of NAME (every call without @N) fail with ERRNO, e.g.
    /// `openat=ENOENT@2`.
    #[arg(long = "fail", value_name = "NAME=ERRNO[@N]", required = true, value_parser = parse_rule)]
    fail: Vec<FaultRule>,
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

fn parse_rule(text: &str) -> Result<FaultRule, String> {
    let (name, rest) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=ERRNO[@N], got '{text}'"))?;
    let (errno, nth) = match rest.split_once('@') {
        Some((errno, n)) => {
            let n: u64 = n
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("@N needs a call number from 1, got '@{n}'"))?;
            (errno, n)
        }
        None => (rest, 0),
    };
    Ok(FaultRule {
        nr: launcher::parse_syscall(name)?.id() as u64,
        errno: launcher::parse_errno(errno)?.into_raw(),
        nth,
    })
}

fn describe(rule: &FaultRule) -> String {
    let errno = sud_engine::Errno::new(rule.errno);
    let mut text = format!(
        "{}={}",
        launcher::slot_name(rule.nr as usize),
        errno.name().unwrap_or("?")
    );
    if rule.nth != 0 {
        text += &format!("@{}", rule.nth);
    }
    text
}

fn main() {
    let cli = Cli::parse();
    if cli.fail.len() > MAX_FAULT_RULES {
        eprintln!("sudfault: at most {MAX_FAULT_RULES} --fail rules");
        std::process::exit(2);
    }
    let launch = Launch {
        mode: Mode::Fault,
        follow: true,
        rewrite: !cli.no_rewrite,
        trace: None,
        faults: cli.fail.clone(),
        output: cli.output,
        program: cli.program,
        from_start: cli.from_start,
        options: TraceOptions {
            json: cli.json,
            ..TraceOptions::default()
        },
    };
    match launcher::run(&launch) {
        Ok(mut finished) => {
            let mut text = String::new();
            for (i, rule) in cli.fail.iter().enumerate() {
                let calls = finished.shared.rule_calls[i].load(Relaxed);
                let injected = finished.shared.rule_injected[i].load(Relaxed);
                if cli.json {
                    text += &format!(
                        "{{\"type\":\"summary\",\"rule\":\"{}\",\"injected\":{injected},\"calls\":{calls}}}\n",
                        describe(rule)
                    );
                } else {
                    text += &format!(
                        "sudfault: {}: injected {injected} of {calls} calls\n",
                        describe(rule)
                    );
                }
            }
            let _ = finished.report.write_all(text.as_bytes());
            launcher::exit_like(finished.status)
        }
        Err(e) => {
            eprintln!("sudfault: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
