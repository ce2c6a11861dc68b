//! sudtrace's strace flags: each one changes the lines the way strace's
//! does, and bad command lines get strace's messages.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::path::Path;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// sudtrace `args` on `argv` in `dir`, trace on standard error.
fn trace(dir: &Path, args: &[&str], argv: &[&str]) -> (std::process::Output, String) {
    let mut full = vec![SUDTRACE];
    full.extend_from_slice(args);
    full.extend_from_slice(argv);
    let out = run_in(dir, &full, b"");
    let stderr = text(&out.stderr);
    (out, stderr)
}

/// sudtrace `-o FILE args` on `argv`: the trace apart from the program's
/// own stderr.
fn trace_to_file(dir: &Path, args: &[&str], argv: &[&str]) -> String {
    let file = beside(dir, "flags.txt");
    let mut full = vec![SUDTRACE, "-o", file.to_str().unwrap()];
    full.extend_from_slice(args);
    full.extend_from_slice(argv);
    run_in(dir, &full, b"");
    std::fs::read_to_string(&file).unwrap()
}

fn setup(name: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    std::fs::write(dir.join("f.txt"), "hello\nworld\n").unwrap();
    dir
}

#[test]
fn ff_writes_one_file_per_task_without_prefixes() {
    let dir = setup("flags-ff");
    let base = beside(&dir, "ff");
    let base_arg = base.to_str().unwrap().to_string();
    let (out, stderr) = trace(
        &dir,
        &["-ff", "-o", &base_arg, "-e", "trace=execve,read,exit_group"],
        &["sh", "-c", "cat f.txt; /bin/true"],
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(text(&out.stdout), "hello\nworld\n");
    let parent = base.parent().unwrap();
    let prefix = format!("{}.", base.file_name().unwrap().to_str().unwrap());
    let mut files: Vec<(u32, String)> = std::fs::read_dir(parent)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let tid = name.strip_prefix(&prefix)?.parse().ok()?;
            Some((tid, std::fs::read_to_string(parent.join(&name)).ok()?))
        })
        .collect();
    files.sort();
    for (tid, _) in &files {
        let _ = std::fs::remove_file(parent.join(format!("{prefix}{tid}")));
    }
    assert_eq!(files.len(), 3, "sh, cat, true: {files:?}");
    for (tid, content) in &files {
        assert!(!content.contains("[pid"), "{tid}: {content}");
        assert!(
            content.ends_with("+++ exited with 0 +++\n"),
            "{tid}: {content}"
        );
    }
    assert!(
        files[0].1.starts_with("execve(\"/usr/bin/sh\""),
        "{}",
        files[0].1
    );
    assert!(
        files[1].1.contains("execve(\"/usr/bin/cat\""),
        "{}",
        files[1].1
    );
    assert!(
        files[1].1.contains("read(3, \"hello\\nworld\\n\", "),
        "{}",
        files[1].1
    );
    assert!(
        files[2].1.contains("execve(\"/bin/true\""),
        "{}",
        files[2].1
    );
}

#[test]
fn y_shows_descriptor_paths_s_caps_strings_x_shows_hex() {
    let dir = setup("flags-y");
    let (out, stderr) = trace(
        &dir,
        &["-y", "-s", "4", "-e", "trace=read"],
        &["cat", "f.txt"],
    );
    assert!(out.status.success());
    let path = dir.join("f.txt").canonicalize().unwrap();
    let expected = format!("read(3<{}>, \"hell\"..., ", path.display());
    assert!(stderr.contains(&expected), "{stderr}");
    std::fs::write(dir.join("b.bin"), b"\x01\x32").unwrap();
    let (_, x) = trace(
        &dir,
        &["-x", "-e", "trace=read"],
        &["cat", "f.txt", "b.bin"],
    );
    assert!(x.contains("read(3, \"hello\\nworld\\n\", "), "{x}");
    assert!(x.contains("read(3, \"\\x01\\x32\", "), "{x}");
    let (_, xx) = trace(&dir, &["-xx", "-e", "trace=read"], &["cat", "f.txt"]);
    assert!(xx.contains("read(3, \"\\x68\\x65\\x6c"), "{xx}");
}

/// `h:m:s` with `micros` digits after a dot when non-zero.
fn is_clock(s: &str, micros: bool) -> bool {
    let (hms, frac) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.parse::<u8>().is_ok())
        && frac.map(|f| f.len() == 6 && f.parse::<u32>().is_ok()) == micros.then_some(true)
}

#[test]
fn t_tt_ttt_r_and_capital_t_print_times_like_strace() {
    let dir = setup("flags-t");
    let argv = ["cat", "f.txt"];
    let (_, t) = trace(&dir, &["-t", "-e", "trace=close"], &argv);
    let (_, tt) = trace(&dir, &["-tt", "-e", "trace=close"], &argv);
    let (_, ttt) = trace(&dir, &["-ttt", "-e", "trace=close"], &argv);
    let (_, r) = trace(&dir, &["-r", "-e", "trace=close"], &argv);
    let (_, big_t) = trace(&dir, &["-T", "-e", "trace=close"], &argv);
    for line in t.lines() {
        assert!(is_clock(line.split(' ').next().unwrap(), false), "{t}");
    }
    for line in tt.lines() {
        assert!(is_clock(line.split(' ').next().unwrap(), true), "{tt}");
    }
    for line in ttt.lines() {
        let stamp = line.split(' ').next().unwrap();
        let (secs, micros) = stamp.split_once('.').unwrap();
        assert!(secs.parse::<u64>().unwrap() > 1_600_000_000, "{ttt}");
        assert_eq!(micros.len(), 6, "{ttt}");
    }
    for line in r.lines() {
        let delta = line.trim_start().split(' ').next().unwrap();
        assert!(delta.parse::<f64>().is_ok_and(|d| d < 10.0), "{r}");
        assert!(line.starts_with("     0."), "{r}");
    }
    let closes: Vec<&str> = big_t.lines().filter(|l| l.starts_with("close(")).collect();
    assert!(!closes.is_empty(), "{big_t}");
    for line in closes {
        let (_, duration) = line.rsplit_once(" <").unwrap();
        let duration = duration.strip_suffix('>').unwrap();
        assert!(duration.parse::<f64>().is_ok_and(|d| d < 10.0), "{big_t}");
    }
}

#[test]
fn e_trace_classes_and_status_filter() {
    let dir = setup("flags-e");
    let argv = ["cat", "f.txt", "/nonexistent"];
    let file = trace_to_file(&dir, &["-e", "trace=%file"], &argv);
    let names = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with("+++"))
            .map(|l| l.split('(').next().unwrap().to_string())
            .collect()
    };
    let file_names = names(&file);
    assert!(file_names.contains(&"openat".to_string()), "{file}");
    assert!(
        file_names
            .iter()
            .all(|n| ["openat", "execve", "newfstatat"].contains(&n.as_str())),
        "{file}"
    );
    let desc = trace_to_file(&dir, &["-e", "trace=%desc"], &argv);
    assert!(names(&desc).contains(&"read".to_string()), "{desc}");
    assert!(!names(&desc).contains(&"execve".to_string()), "{desc}");
    let memory = trace_to_file(&dir, &["-e", "trace=%memory"], &argv);
    assert!(
        names(&memory)
            .iter()
            .all(|n| ["mmap", "munmap", "brk", "mprotect"].contains(&n.as_str())),
        "{memory}"
    );
    let failed = trace_to_file(&dir, &["-e", "status=failed"], &argv);
    let lines: Vec<&str> = failed.lines().filter(|l| l.contains('(')).collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l.contains("= -1 E")), "{failed}");
    let ok = trace_to_file(
        &dir,
        &["-e", "status=successful", "-e", "trace=openat"],
        &argv,
    );
    assert!(
        ok.lines()
            .filter(|l| l.starts_with("openat"))
            .all(|l| !l.contains("= -1")),
        "{ok}"
    );
    assert!(ok.contains("\"f.txt\""), "{ok}");
    let not = trace_to_file(&dir, &["-e", "trace=!openat,read,mmap"], &argv);
    assert!(
        !names(&not)
            .iter()
            .any(|n| ["openat", "read", "mmap"].contains(&n.as_str())),
        "{not}"
    );
    // signal= is accepted.
    let (out, _) = trace(
        &dir,
        &["-e", "signal=none", "-e", "trace=exit_group"],
        &["true"],
    );
    assert!(out.status.success());
}

#[test]
fn c_prints_the_count_table() {
    let dir = setup("flags-c");
    let (out, stderr) = trace(&dir, &["-c"], &["cat", "f.txt"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "hello\nworld\n");
    assert!(stderr.starts_with("     calls  syscall\n"), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.trim() == "1  exit_group"),
        "{stderr}"
    );
    assert!(
        stderr
            .trim_end()
            .ends_with("total (1 processes, 1 threads)"),
        "{stderr}"
    );
    // -e trace= narrows the table, as it does strace's.
    let (_, only) = trace(&dir, &["-c", "-e", "trace=read,close"], &["cat", "f.txt"]);
    let names: Vec<&str> = only
        .lines()
        .skip(1)
        .filter(|l| !l.contains("total"))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert!(
        names.contains(&"read") && names.contains(&"close"),
        "{only}"
    );
    assert_eq!(names.len(), 2, "{only}");
}

#[test]
fn bad_flags_get_strace_messages_and_fail() {
    let dir = setup("flags-bad");
    let cases: &[(&[&str], &str)] = &[
        (&["-X", "true"], "sudtrace: invalid option -- 'X'\nTry 'sudtrace -h' for more information.\n"),
        (&["-fX", "true"], "sudtrace: invalid option -- 'X'\nTry 'sudtrace -h' for more information.\n"),
        (&["--bogus", "true"], "sudtrace: unrecognized option '--bogus'\nTry 'sudtrace -h' for more information.\n"),
        (&["-o"], "sudtrace: option requires an argument -- 'o'\nTry 'sudtrace -h' for more information.\n"),
        (&["-s", "many", "true"], "sudtrace: invalid -s argument: 'many'\n"),
        (&["-e", "trace=nosuchcall", "true"], "sudtrace: invalid system call 'nosuchcall'\n"),
        (&["-e", "status=sometimes", "true"], "sudtrace: invalid status 'sometimes'\n"),
        (&[], "sudtrace: must have PROG [ARGS]\nTry 'sudtrace -h' for more information.\n"),
    ];
    for (args, message) in cases {
        let (out, stderr) = trace(&dir, args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(&stderr, message, "{args:?}");
    }
    let (out, _) = trace(&dir, &["-h"], &[]);
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("Usage: sudtrace"));
}

#[test]
fn f_on_stderr_prefixes_lines_while_several_tasks_live() {
    let dir = setup("flags-pid");
    let (out, stderr) = trace(
        &dir,
        &["-f", "-e", "trace=write,exit_group"],
        &["sh", "-c", "echo one; /bin/echo two; echo three"],
    );
    assert_eq!(text(&out.stdout), "one\ntwo\nthree\n");
    let lines: Vec<&str> = stderr.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{stderr}"))
    };
    // One task: no prefix; the child while it lives: [pid N] (pid padded
    // to five columns, as strace does); the parent alone again: none.
    assert!(at("\"one\\n\"").starts_with("write(1, "), "{stderr}");
    let child = at("\"two\\n\"");
    assert!(child.starts_with("[pid "), "{stderr}");
    let pid = child[5..].split(']').next().unwrap();
    assert!(
        pid.len() >= 5 && pid.trim_start().parse::<u32>().is_ok(),
        "{stderr}"
    );
    assert!(
        lines.contains(&format!("[pid {pid}] +++ exited with 0 +++").as_str()),
        "{stderr}"
    );
    assert!(at("\"three\\n\"").starts_with("write(1, "), "{stderr}");
    assert_eq!(lines.last(), Some(&"+++ exited with 0 +++"), "{stderr}");
}
