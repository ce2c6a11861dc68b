//! `syscount --dbi`: real programs run translated by the DBI from the
//! preload's constructor to their exit. Each prints and exits exactly as
//! natively; the counts equal `strace -f -c`'s for the syscalls the
//! dynamic loader does not make (and equal plain `syscount`'s); syscalls
//! arrive by direct call, and the ones that trap in a single process are
//! only the signal-state calls translated code sends through the trap path
//! on purpose (rt_sigaction, sigaltstack).
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;

/// What `syscount --dbi --json` reported.
struct Followed {
    counts: BTreeMap<String, u64>,
    total: u64,
    processes: u64,
    by_trap: u64,
    by_direct: u64,
}

/// Runs `argv` natively and under `syscount --dbi`: same stdout and exit
/// status; returns the report.
fn follow(dir: &Path, argv: &[&str], stdin: &[u8]) -> Followed {
    let native = run_in(dir, argv, stdin);
    let report = beside(dir, "dbi.json");
    let report_arg = report.to_str().unwrap().to_string();
    let translated = under(
        SYSCOUNT,
        &["--dbi", "--json", "-o", &report_arg],
        dir,
        argv,
        stdin,
    );
    assert_same_output(
        &format!("{argv:?} under syscount --dbi"),
        &native,
        &translated,
    );
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    let (counts, total, processes, _) = parse_json(&text).unwrap_or_else(|| {
        panic!(
            "bad syscount --dbi JSON {text:?}, stderr {}",
            String::from_utf8_lossy(&translated.stderr)
        )
    });
    let followed = Followed {
        counts,
        total,
        processes,
        // Inside "entrances"; no site is rewritten under --dbi.
        by_trap: number_after(&text, "trap").expect("entrances.trap"),
        by_direct: number_after(&text, "direct").expect("entrances.direct"),
    };
    assert_eq!(
        followed.by_trap + followed.by_direct,
        followed.total,
        "{text}"
    );
    eprintln!(
        "{argv:?}: {} syscalls, {} by trap ({:.2}%), {} processes",
        followed.total,
        followed.by_trap,
        100.0 * followed.by_trap as f64 / followed.total.max(1) as f64,
        followed.processes
    );
    followed
}

/// The calls translated code makes through the trap path on purpose.
fn signal_state_calls(f: &Followed) -> u64 {
    ["rt_sigaction", "sigaltstack"]
        .iter()
        .map(|n| f.counts.get(*n).copied().unwrap_or(0))
        .sum()
}

/// A single-process program: everything arrived by direct call but the
/// signal-state calls.
fn assert_direct(argv: &[&str], f: &Followed) {
    assert!(f.by_direct > 0, "{argv:?}: nothing arrived by direct call");
    assert!(
        f.by_trap <= signal_state_calls(f),
        "{argv:?}: {} traps, only {} signal-state calls: {:?}",
        f.by_trap,
        signal_state_calls(f),
        f.counts
    );
}

/// `names` counted as strace -f -c counts them (strace also sees the
/// first execve, made before the preload is loaded).
fn assert_counts_like_strace(
    dir: &Path,
    argv: &[&str],
    stdin: &[u8],
    f: &Followed,
    names: &[&str],
) {
    let theirs = strace_counts(dir, argv, stdin);
    let differences = count_differences(&f.counts, &theirs, names);
    assert!(
        differences.is_empty(),
        "{argv:?}: {differences:?}\nsyscount --dbi {:?}\nstrace {theirs:?}",
        f.counts
    );
}

fn check(name: &str, argv: &[&str], stdin: &[u8]) -> Followed {
    let dir = scratch(&format!("dbi-{name}"));
    let f = follow(&dir, argv, stdin);
    assert_counts_like_strace(&dir, argv, stdin, &f, STABLE_COUNTS);
    f
}

#[test]
fn true_echo_and_ls_run_translated_from_start_to_exit() {
    for argv in [
        &["true"][..],
        &["echo", "hello", "world"],
        &["ls", "-la", "/usr/share/doc"],
        &["sort", "-r"],
    ] {
        // Only sort reads its input (the others may exit before it is
        // written).
        let stdin: &[u8] = if argv[0] == "sort" {
            b"pear\napple\nfig\n"
        } else {
            b""
        };
        let f = check(argv[0], argv, stdin);
        assert_direct(argv, &f);
        assert_eq!(f.processes, 1);
    }
}

#[test]
fn counts_equal_plain_syscount_for_a_deterministic_program() {
    let dir = scratch("dbi-same-counts");
    let argv = ["ls", "-la", "/usr/share/doc"];
    let f = follow(&dir, &argv, b"");
    let trapped = syscount(&dir, &argv, b"");
    // But the allocator's calls: the translator's own allocations at
    // install (host code, not counted) share the program's heap, and leave
    // it (and glibc's dynamic mmap threshold) in another state, so the
    // program's malloc may need a brk or an mmap more or less.
    let without_allocator = |counts: &BTreeMap<String, u64>| {
        let mut counts = counts.clone();
        for name in ["brk", "mmap", "munmap"] {
            counts.remove(name);
        }
        counts
    };
    assert_eq!(
        without_allocator(&f.counts),
        without_allocator(&trapped.counts)
    );
    // Everything that trapped under plain syscount is a direct call now.
    assert_eq!(f.by_trap, 0, "{:?}", f.counts);
}

#[test]
fn sh_and_bash_pipelines() {
    let f = check("sh", &["sh", "-c", SH_SCRIPT], b"");
    assert!(f.processes > 1);
    check("bash", &["bash", "-c", BASH_SCRIPT], b"");
}

#[test]
fn python_threads_subprocess_and_signal_handlers() {
    check("python", &["/usr/bin/python3", "-c", PYTHON_SCRIPT], b"");
}

#[test]
fn perl_tar_and_xz_with_two_threads() {
    check("perl", &["perl", "-e", PERL_SCRIPT], b"");
    let f = check(
        "tar",
        &["tar", "cf", "-", "-C", "/usr/share/doc", "bash"],
        b"",
    );
    assert_direct(&["tar"], &f);
    // From a file: read from a pipe, xz's reads (and so its writes) follow
    // the pipe's timing.
    let dir = scratch("dbi-xz");
    let input: Vec<u8> = (0..400_000u32)
        .flat_map(|i| format!("{i} {}\n", i.wrapping_mul(2_654_435_761)).into_bytes())
        .collect();
    std::fs::write(dir.join("input.txt"), input).unwrap();
    let argv = ["xz", "-T2", "-c", "input.txt"];
    let f = follow(&dir, &argv, b"");
    // Its writes into the captured stdout pipe are as many as the pipe's
    // reader makes room for: not compared.
    let names: Vec<&str> = STABLE_COUNTS
        .iter()
        .copied()
        .filter(|&n| n != "write")
        .collect();
    assert_counts_like_strace(&dir, &argv, b"", &f, &names);
    assert_eq!(f.counts.get("clone3"), Some(&1), "{:?}", f.counts);
    assert_direct(&argv, &f);
}

fn installed(program: &str) -> bool {
    let probe = format!("command -v {program}");
    run_in(Path::new("/"), &["sh", "-c", &probe], b"")
        .status
        .success()
}

#[test]
fn sqlite3_git_and_node_with_its_jit() {
    if installed("sqlite3") {
        let sql = "create table t(x); insert into t values(1),(2),(3); select sum(x) from t;";
        let f = check("sqlite3", &["sqlite3", ":memory:", sql], b"");
        assert_direct(&["sqlite3"], &f);
    } else {
        skip("sqlite3 is not installed");
    }
    let script = "rm -rf r && git init -q r && cd r && echo x > f && git add f && \
                  git -c user.email=t@example.invalid -c user.name=t commit -qm first && \
                  git log --format=%s && git status --short";
    let dir = scratch("dbi-git");
    let argv = ["sh", "-c", script];
    let f = follow(&dir, &argv, b"");
    assert_counts_like_strace(&dir, &argv, b"", &f, &["execve", "wait4", "unlinkat"]);
    if installed("node") {
        let dir = scratch("dbi-node");
        let argv = [
            "node",
            "-e",
            "console.log([1, 2, 3].map(x => x * 2).join(','))",
        ];
        let f = follow(&dir, &argv, b"");
        assert!(f.by_direct > f.by_trap, "{:?}", f.counts);
    } else {
        skip("node is not installed");
    }
}
