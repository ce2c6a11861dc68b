//! What the tools themselves must not change in the program: its
//! descriptors (none taken from it, closed ones stay closed, no SIGPIPE
//! from the tool's output), its environment, its memory over many spawns,
//! and what a tool run under another tool reports. Each runs the program
//! natively and under the tools and compares.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

/// The three tools with their output to `report` (a file), plus whatever
/// each needs to act without changing the program's behaviour.
fn tools(report: &str) -> Vec<(&'static str, Vec<String>)> {
    vec![
        (SUDTRACE, vec!["-f".into(), "-o".into(), report.into()]),
        (SYSCOUNT, vec!["-o".into(), report.into()]),
        (SUDFAULT, vec!["--fail".into(), "reboot=EPERM".into()]),
    ]
}

/// `tool args -- argv`, or `argv` natively when `tool` is `None`.
fn command(tool: Option<(&str, &[String])>, argv: &[&str]) -> Command {
    let mut full: Vec<String> = Vec::new();
    if let Some((tool, args)) = tool {
        full.push(tool.into());
        full.extend(args.iter().cloned());
        full.push("--".into());
    }
    full.extend(argv.iter().map(|s| s.to_string()));
    let mut command = Command::new(&full[0]);
    command.args(&full[1..]);
    command
}

fn output(mut command: Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .expect("cannot run the command")
}

/// A shell that sets the descriptor limits with `ulimit`, then runs `argv`.
fn with_limit(ulimit: &str, argv: &[&str]) -> Vec<String> {
    let mut full = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        format!("{ulimit} && exec \"$@\""),
        "sh".into(),
    ];
    full.extend(argv.iter().map(|s| s.to_string()));
    full
}

/// Compiles `name` into a fresh directory named after the test (`scratch`
/// directories are per process: two tests must not share one).
fn program(name: &str, test: &str) -> (std::path::PathBuf, String) {
    let dir = scratch(test);
    let binary = compile(name, &dir);
    let path = binary.to_str().unwrap().to_string();
    (dir, path)
}

#[test]
fn the_tools_take_no_descriptor_number_from_the_program() {
    let (dir, binary) = program("tool_fds", "descriptors");
    let report = beside(&dir, "report");
    let report_arg = report.to_str().unwrap();
    // The default limits; soft and hard 64 (no room above: the tool's
    // descriptors are among the program's 64); soft 64 under a higher
    // hard limit (the tool's sit above the program's reach).
    for argv in [
        vec![binary.clone()],
        with_limit("ulimit -n 64", &[binary.as_str()]),
        with_limit("ulimit -Sn 64", &[binary.as_str()]),
    ] {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let native = output(command(None, &argv));
        assert!(native.status.success(), "{native:?}");
        for (tool, args) in tools(report_arg) {
            let traced = output(command(Some((tool, &args)), &argv));
            assert_same_output(&format!("{argv:?} under {tool}"), &native, &traced);
            let text = std::fs::read_to_string(&report).unwrap_or_default();
            if tool == SUDTRACE {
                // The tool kept its output: it saw the program's last
                // calls (the shell of the limited case makes one more).
                assert!(text.matches("getppid()").count() >= 7, "{text}");
            }
            if tool == SYSCOUNT {
                assert!(text.contains("getppid"), "{text}");
            }
            let _ = std::fs::remove_file(&report);
        }
    }
}

#[test]
fn closed_standard_descriptors_stay_closed() {
    let (dir, binary) = program("closed_std_fds", "closed-std");
    let report = beside(&dir, "report");
    let report_arg = report.to_str().unwrap();
    let seen = dir.join("seen");
    let argv = [binary.as_str(), seen.to_str().unwrap()];
    for closed in [vec![1], vec![0, 2], vec![0, 1, 2]] {
        let run = |tool: Option<(&str, &[String])>| {
            let mut command = command(tool, &argv);
            let closed = closed.clone();
            // SAFETY: close() only, between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    for &fd in &closed {
                        libc::close(fd);
                    }
                    Ok(())
                });
            }
            let status = command.status().expect("cannot run");
            let text = std::fs::read_to_string(&seen).unwrap_or_default();
            let _ = std::fs::remove_file(&seen);
            (status.code(), text)
        };
        let native = run(None);
        assert!(native.1.contains("opened_at="), "{native:?}");
        for (tool, args) in tools(report_arg) {
            assert_eq!(
                run(Some((tool, &args))),
                native,
                "closed {closed:?} under {tool}"
            );
        }
    }
}

#[test]
fn a_closed_output_pipe_never_raises_sigpipe_in_the_program() {
    let (_dir, binary) = program("pipe_out", "sigpipe");
    let mut fds = [0; 2];
    // SAFETY: pipe fills two descriptors; the read end is closed at once,
    // so the write end has no reader.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::close(fds[0]);
    }
    let run = |tool: Option<(&str, &[String])>| {
        let mut command = command(tool, &[binary.as_str()]);
        let write_end = fds[1];
        // SAFETY: dup2 only, between fork and exec: stderr is the pipe.
        unsafe {
            command.pre_exec(move || {
                libc::dup2(write_end, 2);
                Ok(())
            });
        }
        output(command)
    };
    let native = run(None);
    assert!(native.status.success());
    // sudtrace's trace goes to stderr: the pipe without a reader.
    let traced = run(Some((SUDTRACE, &["-f".to_string()])));
    assert_same_output("pipe_out under sudtrace", &native, &traced);
    assert_eq!(
        String::from_utf8_lossy(&traced.stdout),
        "pending_while_blocked=0\nalive=1\n"
    );
    // SAFETY: closing our write end.
    unsafe { libc::close(fds[1]) };
}

#[test]
fn the_program_sees_its_own_environment() {
    let dir = scratch("environment");
    let report = beside(&dir, "report");
    let report_arg = report.to_str().unwrap();
    let user_preload = "/lib/x86_64-linux-gnu/libc.so.6";
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            vec![("B", "2"), ("A", "1"), ("C", "3")],
            vec!["/usr/bin/env"],
        ),
        (vec![("A", "1")], vec!["/usr/bin/env", "-i", "/usr/bin/env"]),
        (
            vec![("Z", "1"), ("LD_PRELOAD", user_preload), ("A", "2")],
            vec!["/usr/bin/env"],
        ),
        // A child of a traced shell.
        (
            vec![("Q", "1"), ("P", "2")],
            vec![
                "/bin/sh",
                "-c",
                "/usr/bin/env; /usr/bin/env -i /usr/bin/env",
            ],
        ),
    ];
    for (vars, argv) in cases {
        let run = |tool: Option<(&str, &[String])>| {
            let mut command = command(tool, &argv);
            command.env_clear().envs(vars.iter().copied());
            String::from_utf8_lossy(&output(command).stdout).into_owned()
        };
        let native = run(None);
        for (tool, args) in tools(report_arg) {
            let traced = run(Some((tool, &args)));
            // Under a tool the shell's `_` and PWD bookkeeping is the same:
            // the whole output must be identical, order included.
            assert_eq!(traced, native, "{argv:?} with {vars:?} under {tool}");
        }
    }
}

#[test]
fn posix_spawn_with_its_own_environment_leaks_no_memory() {
    let (dir, binary) = program("spawn_env", "spawn-leak");
    let argv = [binary.as_str()];
    let native = assert_transparent(&dir, &argv, b"");
    assert_eq!(String::from_utf8_lossy(&native.stdout), "grew_kb=0\n");
}

#[test]
fn a_tool_under_another_tool_reports_its_own_results() {
    let (dir, binary) = program("markers", "nested");
    let argv = [binary.as_str(), "25"];
    let trace = beside(&dir, "trace");
    let trace_arg = trace.to_str().unwrap();
    let count = beside(&dir, "count.json");
    let count_arg = count.to_str().unwrap();
    let inner_count = [SYSCOUNT, "--json", "-o", count_arg, "--", argv[0], argv[1]];
    let inner_trace = [SUDTRACE, "-f", "-o", trace_arg, "--", argv[0], argv[1]];
    for (outer, inner) in [
        (vec![SUDTRACE, "-f", "-o", trace_arg], &inner_count),
        (vec![SYSCOUNT, "--json", "-o", count_arg], &inner_trace),
    ] {
        let mut full = outer.clone();
        full.push("--");
        full.extend_from_slice(inner);
        let out = run_in(&dir, &full, b"");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "marks=25\n",
            "{out:?}"
        );
        assert!(out.status.success());
        let counted = std::fs::read_to_string(&count).unwrap();
        let (counts, ..) = parse_json(&counted).unwrap();
        assert_eq!(counts.get("getppid"), Some(&25), "{full:?}: {counted}");
        let traced = std::fs::read_to_string(&trace).unwrap();
        assert_eq!(traced.matches("getppid()").count(), 25, "{full:?}");
        let _ = std::fs::remove_file(&count);
        let _ = std::fs::remove_file(&trace);
    }
}

#[test]
fn rt_sigreturn_is_counted_as_strace_counts_it() {
    let (dir, binary) = program("handled_signals", "sigreturn");
    let argv = [binary.as_str()];
    assert_transparent(&dir, &argv, b"");
    assert_counts_match(&dir, &argv, b"", &["rt_sigreturn", "rt_sigaction"]);
}

#[test]
fn without_follow_the_first_process_stays_traced_across_execve() {
    let (dir, binary) = program("markers", "exec-root");
    let trace = beside(&dir, "trace");
    let trace_arg = trace.to_str().unwrap();
    let script = format!("/bin/true; exec {binary} 5");
    let out = run_in(
        &dir,
        &[SUDTRACE, "-o", trace_arg, "--", "/bin/sh", "-c", &script],
        b"",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "marks=5\n");
    let traced = std::fs::read_to_string(&trace).unwrap();
    // The exec'd image is traced; /bin/true (a child) is not.
    let after_exec = &traced[traced.rfind("execve(").expect("the exec'd image's line")..];
    assert!(after_exec.contains("marks=5"), "{traced}");
    assert_eq!(after_exec.matches("getppid()").count(), 5, "{traced}");
    assert!(!traced.contains("[pid"), "{traced}");
}

/// What the README tells ASan users: with the link-order check off, an
/// ASan build runs under the tools as it does natively.
#[test]
fn an_asan_build_runs_with_the_documented_option() {
    let dir = scratch("asan");
    let source =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/asan_heap.c");
    let binary = dir.join("asan_heap");
    let built = Command::new("cc")
        .args(["-fsanitize=address", "-O1", "-o"])
        .arg(&binary)
        .arg(&source)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        skip("the C compiler cannot build with -fsanitize=address");
        return;
    }
    let argv = [binary.to_str().unwrap()];
    let report = beside(&dir, "report");
    let run = |tool: Option<(&str, &[String])>| {
        let mut command = command(tool, &argv);
        command.env("ASAN_OPTIONS", "verify_asan_link_order=0");
        output(command)
    };
    let native = run(None);
    assert!(native.status.success(), "{native:?}");
    for (tool, args) in tools(report.to_str().unwrap()) {
        assert_same_output(
            &format!("asan under {tool}"),
            &native,
            &run(Some((tool, &args))),
        );
    }
}

#[test]
fn nested_tools_keep_the_programs_own_environment() {
    let dir = scratch("nested-env");
    let report = beside(&dir, "report");
    let report_arg = report.to_str().unwrap();
    let vars = [
        ("B", "2"),
        ("LD_PRELOAD", "/lib/x86_64-linux-gnu/libc.so.6"),
        ("A", "1"),
    ];
    let run = |argv: &[&str]| {
        let mut command = Command::new(argv[0]);
        command.args(&argv[1..]).env_clear().envs(vars);
        String::from_utf8_lossy(&output(command).stdout).into_owned()
    };
    let native = run(&["/usr/bin/env"]);
    let nested = run(&[
        SUDTRACE,
        "-f",
        "-o",
        report_arg,
        "--",
        SYSCOUNT,
        "-o",
        "/dev/null",
        "--",
        "/usr/bin/env",
    ]);
    assert_eq!(nested, native);
}

#[test]
fn a_first_trap_inside_malloc_is_rewritten_without_corrupting_the_heap() {
    let (dir, binary) = program("malloc_first", "malloc-first");
    let argv = [binary.as_str()];
    let native = assert_transparent(&dir, &argv, b"");
    assert!(native.status.success());
    assert_counts_match(&dir, &argv, b"", &["write"]);
    let counted = syscount(&dir, &argv, b"");
    assert!(counted.patched_sites >= 1, "{:?}", counted.entrances);
    assert!(
        counted.entrances.get("rewritten").copied().unwrap_or(0) > 0,
        "{:?}",
        counted.entrances
    );
}
