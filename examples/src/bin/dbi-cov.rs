//! dbi-cov: basic-block coverage of a whole program (all its threads, and
//! the images it execs), run translated by sud-codegen's DBI from the
//! preload's constructor to its exit. Writes one drcov file (format
//! version 2, as DynamoRIO's drcov writes and Lighthouse reads) per
//! process: `DIR/drcov.NAME.PID.proc.log`. Syscall User Dispatch stays
//! armed underneath: code the translator leaves native still has its
//! syscalls caught.
//!
//! `dbi-cov [-o DIR] -- PROG [ARGS...]`

#[cfg(target_arch = "x86_64")]
fn main() {
    x86::main();
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("dbi-cov: the translator is x86-64 only");
    std::process::exit(2);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use clap::Parser;
    use std::ffi::OsString;
    use std::path::PathBuf;
    use sud_examples::config::{Mode, TraceOptions, Translate};
    use sud_examples::launcher::{self, Launch};

    #[derive(Parser, Debug)]
    #[command(
        name = "dbi-cov",
        about = "Basic-block coverage of a program in drcov format, translated by the DBI"
    )]
    struct Cli {
        /// The directory for the drcov files (one per process).
        #[arg(short = 'o', value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// The program to run and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            value_name = "PROG [ARGS...]"
        )]
        program: Vec<OsString>,
    }

    pub fn main() {
        let cli = Cli::parse();
        let fail = |msg: String| -> ! {
            eprintln!("dbi-cov: {msg}");
            std::process::exit(2)
        };
        let dir = std::fs::canonicalize(&cli.dir)
            .unwrap_or_else(|e| fail(format!("{}: {e}", cli.dir.display())));
        let dir = dir
            .to_str()
            .unwrap_or_else(|| fail(format!("{}: not UTF-8", dir.display())))
            .to_string();
        let launch = Launch {
            mode: Mode::Count,
            follow: true,
            // The preload does not rewrite sites under the translator.
            rewrite: false,
            from_start: false,
            trace: None,
            faults: Vec::new(),
            output: None,
            program: cli.program,
            options: TraceOptions {
                dbi: Translate::Coverage(dir),
                ..TraceOptions::default()
            },
        };
        match launcher::run(&launch) {
            Ok(finished) => launcher::exit_like(finished.status),
            Err(e) => {
                eprintln!("dbi-cov: {e}");
                std::process::exit(e.exit_code());
            }
        }
    }
}
