//! dbi-run and dbi-bbcount on the DBI corpus (codegen/tests/corpus): the
//! output contract (`--json`: one object per function per line with
//! native, translated, blocks, instructions, direct_syscalls, traps), and
//! the figures it reports.
#![cfg(target_arch = "x86_64")]

#[path = "../../codegen/tests/corpus/compile.rs"]
mod corpus;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const DBI_RUN: &str = env!("CARGO_BIN_EXE_dbi-run");
const DBI_BBCOUNT: &str = env!("CARGO_BIN_EXE_dbi-bbcount");

fn corpus() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let lib = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("libdbi_corpus-{}.so", std::process::id()));
        corpus::compile_shared_library(&corpus::corpus_source(env!("CARGO_MANIFEST_DIR")), &lib);
        lib
    })
}

fn run(tool: &str, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .output()
        .expect("running the tool")
}

/// The integer after `"key": ` in a JSON line.
fn field(line: &str, key: &str) -> i64 {
    let at = line
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + key.len()
        + 4;
    line[at..]
        .split([',', '}'])
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not an integer in {line}"))
}

#[test]
fn dbi_run_json_reports_equal_results_direct_syscalls_and_no_traps() {
    let lib = corpus().to_str().unwrap();
    let functions = [
        ("recursion", false),
        ("qsort_callback", false),
        ("syscall_getpid", true),
        ("syscall_pipe_write", true),
        ("thread_create", true),
    ];
    let mut args = vec!["--json", lib];
    args.extend(functions.iter().map(|f| f.0));
    let out = run(DBI_RUN, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), functions.len(), "{stdout}");
    for (line, (name, makes_syscalls)) in lines.iter().zip(functions) {
        assert!(
            line.starts_with(&format!("{{\"func\": \"{name}\", ")),
            "{line}"
        );
        assert_eq!(field(line, "native"), field(line, "translated"), "{line}");
        assert_eq!(field(line, "traps"), 0, "{line}");
        assert!(field(line, "blocks") > 0, "{line}");
        assert!(
            field(line, "instructions") >= field(line, "blocks"),
            "{line}"
        );
        assert_eq!(field(line, "direct_syscalls") > 0, makes_syscalls, "{line}");
    }
    // fib(22) makes 57313 calls, each at least one block.
    assert!(field(lines[0], "blocks") > 57_313, "{}", lines[0]);
}

#[test]
fn dbi_run_plain_lines_and_errors() {
    let lib = corpus().to_str().unwrap();
    let out = run(DBI_RUN, &[lib, "leaf_arith"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("leaf_arith native=357003 translated=357003 blocks=1 "),
        "{stdout}"
    );
    let missing = run(DBI_RUN, &[lib, "no_such_function"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no_such_function"));
}

#[test]
fn dbi_bbcount_counts_the_blocks_of_a_whole_call() {
    let lib = corpus().to_str().unwrap();
    let out = run(DBI_BBCOUNT, &["--top", "3", "--call", lib, "switch_table"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("switch_table() = 1011969032"), "{stdout}");
    // 1000 calls of classify: its entry block runs 1000 times.
    let hottest: u64 = stdout
        .lines()
        .nth(3)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(hottest >= 1000, "{stdout}");
    assert!(stdout.contains("traps: 0"), "{stdout}");
}
