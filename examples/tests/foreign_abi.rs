//! `foreign-abi` runs its ToyOS program natively (one trap per foreign
//! syscall) and translated (no trap, one direct call per foreign syscall),
//! and the program says the same thing both ways.
#![cfg(target_arch = "x86_64")]

use std::collections::HashMap;
use std::process::Command;

const ITERATIONS: u64 = 2000;
/// The program's syscalls besides the clock loop: PUTS x7, CLOCK x1, ALLOC, EXIT.
const OTHER_SYSCALLS: u64 = 10;

struct Run {
    program_output: String,
    summary: HashMap<String, String>,
}

fn run(mode: &str) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_foreign-abi"))
        .args([mode, "--iterations", &ITERATIONS.to_string()])
        .output()
        .expect("run foreign-abi");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    assert!(
        out.status.success(),
        "foreign-abi {mode} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (program_output, summary) = stdout.rsplit_once("summary: ").expect("a summary line");
    let summary = summary
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Run {
        program_output: program_output.to_string(),
        summary,
    }
}

fn number(run: &Run, key: &str) -> u64 {
    run.summary[key]
        .parse()
        .unwrap_or_else(|_| panic!("{key}={} is not a count", run.summary[key]))
}

#[test]
fn native_traps_every_foreign_syscall_and_translated_traps_none() {
    let native = run("--native");
    let translated = run("--translated");

    let expected_output = format!(
        "hello from a ToyOS program\nclock reads: {ITERATIONS}\nclock went backwards: 0 times\nbye\n"
    );
    assert_eq!(native.program_output, expected_output);
    assert_eq!(
        translated.program_output, native.program_output,
        "both modes print the same"
    );

    let calls = ITERATIONS + OTHER_SYSCALLS;
    assert_eq!(native.summary["mode"], "native");
    assert_eq!(number(&native, "foreign_syscalls"), calls);
    assert_eq!(
        number(&native, "traps"),
        calls,
        "one trap per foreign syscall"
    );
    assert_eq!(number(&native, "direct"), 0);

    assert_eq!(translated.summary["mode"], "translated");
    assert_eq!(number(&translated, "foreign_syscalls"), calls);
    assert_eq!(
        number(&translated, "traps"),
        0,
        "the translation never traps"
    );
    assert_eq!(
        number(&translated, "direct"),
        calls,
        "one direct call per foreign syscall"
    );

    for run in [&native, &translated] {
        assert_eq!(run.summary["exit_status"], "0");
        assert_eq!(number(run, "returned"), ITERATIONS);
    }
}
