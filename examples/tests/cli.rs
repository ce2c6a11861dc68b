//! The tools' command lines: output formats, following, fault injection,
//! exit statuses and error messages.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs sudtrace with `args` into a trace file; returns (run, trace text
/// with strace's alignment padding before `= ` collapsed to one space).
fn sudtrace(dir: &Path, args: &[&str], argv: &[&str]) -> (std::process::Output, String) {
    let file = beside(dir, "cli-trace.txt");
    let mut all = vec!["-o", file.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = under(SUDTRACE, &all, dir, argv, b"");
    let trace = std::fs::read_to_string(&file).unwrap_or_default();
    (out, unpad(&trace))
}

/// Collapses the spaces strace puts before `= result` (and after a pid
/// column) into one.
fn unpad(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut spaces = 0;
        for c in line.chars() {
            if c == ' ' {
                spaces += 1;
                continue;
            }
            if spaces > 0 {
                out.push(' ');
            }
            spaces = 0;
            out.push(c);
        }
        out.push('\n');
    }
    out
}

#[test]
fn sudtrace_lines_are_strace_style() {
    let dir = scratch("format");
    let (out, trace) = sudtrace(&dir, &[], &["cat", "/etc/hostname"]);
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read("/etc/hostname").unwrap());
    assert!(
        trace.starts_with("execve(\"/usr/bin/cat\", [\"cat\", \"/etc/hostname\"], 0x"),
        "{trace}"
    );
    assert!(
        trace.contains("openat(AT_FDCWD, \"/etc/hostname\", O_RDONLY) = 3\n"),
        "{trace}"
    );
    assert!(trace.contains("mmap(NULL, "), "{trace}");
    assert!(trace.contains("PROT_READ"), "{trace}");
    assert!(
        trace.ends_with("exit_group(0) = ?\n+++ exited with 0 +++\n"),
        "{trace}"
    );
    assert!(
        !trace.contains("[pid "),
        "one process, one thread: no pid prefixes\n{trace}"
    );

    let (out, trace) = sudtrace(
        &dir,
        &["-e", "trace=rmdir"],
        &["rmdir", "/nonexistent-sud-dir"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        trace,
        "rmdir(\"/nonexistent-sud-dir\") = -1 ENOENT (No such file or directory)\n\
         +++ exited with 1 +++\n"
    );
}

#[test]
fn sudtrace_follows_children_only_with_f() {
    let dir = scratch("follow");
    let script = "/bin/echo one; /bin/echo two | /bin/cat";
    let (out, followed) = sudtrace(
        &dir,
        &["-f", "-e", "trace=execve,write,clone,clone3,vfork"],
        &["sh", "-c", script],
    );
    assert_eq!(text(&out.stdout), "one\ntwo\n");
    assert_eq!(
        followed.matches("execve(\"/bin/echo\"").count(),
        2,
        "{followed}"
    );
    assert_eq!(
        followed.matches("execve(\"/bin/cat\"").count(),
        1,
        "{followed}"
    );
    // With -o, strace starts every -f line with the pid.
    let first_pid = followed.split(' ').next().unwrap();
    assert!(
        followed.lines().all(|l| l
            .split(' ')
            .next()
            .is_some_and(|p| p.parse::<u32>().is_ok())),
        "{followed}"
    );
    assert!(
        followed.lines().any(|l| !l.starts_with(first_pid)),
        "{followed}"
    );
    assert!(
        followed.contains("write(1, \"one\\n\", 4) = 4"),
        "{followed}"
    );

    let (out, alone) = sudtrace(&dir, &["-e", "trace=execve,write"], &["sh", "-c", script]);
    assert_eq!(text(&out.stdout), "one\ntwo\n");
    // As strace: the first process's execve and exit, and a SIGCHLD line
    // for its children's exits (dash has a handler; exits close together
    // may arrive as one signal, natively too).
    let (signals, others): (Vec<&str>, Vec<&str>) =
        alone.lines().partition(|l| l.starts_with("--- SIGCHLD "));
    assert_eq!(
        others.len(),
        2,
        "only the first process's execve and exit\n{alone}"
    );
    assert!(!signals.is_empty() && signals.len() <= 3, "{alone}");
    assert!(
        signals
            .iter()
            .all(|l| l.starts_with("--- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=")),
        "{alone}"
    );
    assert!(alone.starts_with("execve(\"/usr/bin/sh\""), "{alone}");
}

#[test]
fn exec_with_a_rewritten_environment_keeps_the_preload() {
    let dir = scratch("env");
    let (out, trace) = sudtrace(
        &dir,
        &["-f", "-e", "trace=openat"],
        &["env", "-i", "/bin/cat", "/etc/hostname"],
    );
    assert!(out.status.success());
    assert!(
        trace.contains("openat(AT_FDCWD, \"/etc/hostname\", O_RDONLY) = 3"),
        "{trace}"
    );
    let counted = syscount(
        &dir,
        &[
            "env",
            "-i",
            "PATH=/bin",
            "sh",
            "-c",
            "cat /etc/hostname; ls /",
        ],
        b"",
    );
    assert_eq!(counted.processes, 3, "sh, cat and ls");
    assert_eq!(counted.counts.get("execve"), Some(&3));
}

#[test]
fn syscount_json_and_table() {
    let dir = scratch("syscount");
    let counted = syscount(
        &dir,
        &["sh", "-c", "echo a; echo b >&2; ls / >/dev/null"],
        b"",
    );
    assert_eq!(text(&counted.output.stdout), "a\n");
    assert_eq!(
        text(&counted.output.stderr),
        "b\n",
        "the program's stderr only: the report went to -o"
    );
    assert_eq!(counted.total, counted.counts.values().sum::<u64>());
    assert_eq!(counted.processes, 2);
    // echo a, echo b, and ls's listing into /dev/null.
    assert_eq!(counted.counts.get("write"), Some(&3));
    let table = under(SYSCOUNT, &[], &dir, &["ls", "/"], b"");
    let report = text(&table.stderr);
    assert!(report.starts_with("     calls  syscall\n"), "{report}");
    assert!(
        report.lines().any(|l| l.trim() == "2  getdents64"),
        "{report}"
    );
    assert!(
        report
            .trim_end()
            .ends_with("total (1 processes, 1 threads)"),
        "{report}"
    );
    // The JSON is JSON.
    let json = beside(&dir, "check.json");
    let out = under(
        SYSCOUNT,
        &["--json", "-o", json.to_str().unwrap()],
        &dir,
        &["true"],
        b"",
    );
    assert!(out.status.success());
    let check = run_in(&dir, &["python3", "-c", "import json,sys; d=json.load(open(sys.argv[1])); assert set(d)=={'total','counts','processes','threads','entrances','compat','patched_sites'}, d; assert sum(d['entrances'].values())==d['total']==sum(d['counts'].values()), d; assert set(d['entrances'])=={'trap','rewritten','direct'}, d", json.to_str().unwrap()], b"");
    assert!(check.status.success(), "{}", text(&check.stderr));
}

#[test]
fn sudfault_fails_calls_without_running_them() {
    let dir = scratch("fault");
    std::fs::write(dir.join("a"), "").unwrap();
    std::fs::write(dir.join("b"), "").unwrap();
    let out = under(
        SUDFAULT,
        &["--fail", "unlinkat=EPERM"],
        &dir,
        &["rm", "a"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        dir.join("a").exists(),
        "the failed unlinkat must not have run"
    );
    let report = text(&out.stderr);
    assert!(
        report.contains("rm: cannot remove 'a': Operation not permitted"),
        "{report}"
    );
    assert!(
        report.contains(
            "unlinkat(AT_FDCWD, \"a\", 0) = -1 EPERM (Operation not permitted) (injected, call 1)"
        ),
        "{report}"
    );
    assert!(
        report.contains("sudfault: unlinkat=EPERM: injected 1 of 1 calls"),
        "{report}"
    );

    // @2 counts over every process: the second rm's call fails.
    let out = under(
        SUDFAULT,
        &["--fail", "unlinkat=ENOENT@2"],
        &dir,
        &["sh", "-c", "rm a; rm b; echo $?"],
        b"",
    );
    assert_eq!(text(&out.stdout), "1\n");
    assert!(!dir.join("a").exists());
    assert!(dir.join("b").exists());
    assert!(
        text(&out.stderr).contains("unlinkat=ENOENT@2: injected 1 of 2 calls"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn exit_status_and_signals_pass_through() {
    let dir = scratch("status");
    for tool in [SUDTRACE, SYSCOUNT] {
        let out = under(
            tool,
            &["-o", "/dev/null"],
            &dir,
            &["sh", "-c", "exit 7"],
            b"",
        );
        assert_eq!(out.status.code(), Some(7));
        let out = under(
            tool,
            &["-o", "/dev/null"],
            &dir,
            &["sh", "-c", "kill -TERM $$"],
            b"",
        );
        assert_eq!(out.status.signal(), Some(libc::SIGTERM));
    }
    let out = under(
        SUDFAULT,
        &["--fail", "reboot=EPERM"],
        &dir,
        &["sh", "-c", "exit 9"],
        b"",
    );
    assert_eq!(out.status.code(), Some(9));
}

#[test]
fn bad_command_lines_get_clear_errors() {
    let dir = scratch("errors");
    let cases: &[(&str, &[&str], &str)] = &[
        (
            SUDTRACE,
            &["--", "/nonexistent/program"],
            "cannot run /nonexistent/program",
        ),
        (
            SYSCOUNT,
            &["--", "/nonexistent/program"],
            "cannot run /nonexistent/program",
        ),
        (SUDTRACE, &["--bogus", "--", "true"], "--bogus"),
        (
            SUDTRACE,
            &["-e", "trace=nosuchcall", "--", "true"],
            "sudtrace: invalid system call 'nosuchcall'",
        ),
        (
            SUDFAULT,
            &["--fail", "openat=EBOGUS", "--", "true"],
            "unknown errno name 'EBOGUS'",
        ),
        (
            SUDFAULT,
            &["--fail", "nosuchcall=EPERM", "--", "true"],
            "unknown syscall name 'nosuchcall'",
        ),
        (SUDFAULT, &["--", "true"], "--fail"),
        (SYSCOUNT, &[], "PROG"),
    ];
    for (tool, args, message) in cases {
        let out = run_in(&dir, &[&[*tool], *args].concat(), b"");
        assert!(!out.status.success(), "{tool} {args:?} succeeded");
        assert!(
            text(&out.stderr).contains(message),
            "{tool} {args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = run_in(&dir, &[SUDTRACE, "--", "/nonexistent/program"], b"");
    assert_eq!(out.status.code(), Some(127));
}

#[test]
fn a_kernel_without_sud_gets_a_clear_message() {
    let dir = scratch("nosud");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/no_sud.c");
    let binary = dir.join("no_sud");
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .target("x86_64-unknown-linux-gnu")
        .host("x86_64-unknown-linux-gnu")
        .opt_level(1)
        .get_compiler();
    assert!(compiler
        .to_command()
        .arg("-w")
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .status()
        .unwrap()
        .success());
    for tool in [SUDTRACE, SYSCOUNT] {
        let out = run_in(&dir, &[binary.to_str().unwrap(), tool, "--", "true"], b"");
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("this kernel has no Syscall User Dispatch"),
            "{}",
            text(&out.stderr)
        );
    }
}
