//! sudtrace: one line per system call of a program, in strace's words,
//! caught with Syscall User Dispatch inside the program (no ptrace).
//!
//! `sudtrace [-cfhqrTtVxy] [-e EXPR]... [-o FILE] [-s STRSIZE] [--json] [--no-rewrite] [--from-start] PROG [ARGS]`
//! (see `sudtrace -h`; the flags are strace's).
//!
//! Calls whose result the tracer never sees get `= ?`: exit, exit_group,
//! rt_sigreturn, and clone/clone3 with a new stack (the engine re-issues
//! them; the new thread's own lines carry its tid).

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use sud_examples::config::Mode;
use sud_examples::launcher::{self, Launch};
use sud_examples::options::{self, USAGE};
use sud_examples::report;
use sud_examples::text::signal_name;

/// The local time zone's offset from UTC now, for `-t`/`-tt`.
fn utc_offset() -> i64 {
    // SAFETY: time and localtime_r with a zeroed tm owned here; the tool
    // is single-threaded at this point.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff
        }
    }
}

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let mut cli = match options::parse(&args) {
        Ok(cli) => cli,
        Err(e) => {
            eprint!("{}", e.render("sudtrace"));
            std::process::exit(1);
        }
    };
    if cli.help {
        print!("{USAGE}");
        return;
    }
    if cli.version {
        println!("sudtrace -- version {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    cli.options.utc_offset = utc_offset();
    let mut output = cli.output.clone();
    if cli.follow == 2 {
        match output.take() {
            Some(path) => {
                let path = std::path::absolute(&path).unwrap_or(path);
                cli.options.per_task = Some(path.to_string_lossy().into_owned());
            }
            // strace too treats -ff without -o as -f.
            None => cli.follow = 1,
        }
    }
    cli.options.pid_column = cli.follow == 1 && output.is_some();
    let launch = Launch {
        mode: if cli.count { Mode::Count } else { Mode::Trace },
        follow: cli.follow > 0 || cli.count,
        rewrite: !cli.no_rewrite,
        trace: cli.trace.clone(),
        faults: Vec::new(),
        output,
        program: cli.program,
        options: cli.options.clone(),
        from_start: cli.from_start,
    };
    match launcher::run(&launch) {
        Ok(mut finished) => {
            let text = if cli.count {
                report::count_report(finished.shared, cli.options.json, cli.trace.as_deref())
            } else {
                match finished.status.signal() {
                    // The program cannot report its own death by a signal.
                    Some(signal) if !cli.options.json => {
                        format!("+++ killed by {} +++\n", signal_name(signal))
                    }
                    Some(signal) => format!(
                        "{{\"type\":\"killed\",\"signal\":\"{}\"}}\n",
                        signal_name(signal)
                    ),
                    None => String::new(),
                }
            };
            if !text.is_empty() && cli.options.per_task.is_none() {
                let _ = finished.report.write_all(text.as_bytes());
            }
            launcher::exit_like(finished.status)
        }
        Err(e) => {
            eprintln!("sudtrace: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
