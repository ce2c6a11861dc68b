//! The tools' loader (`sud-loader`): `--from-start`, and statically linked
//! programs, which the preload cannot reach, seen from their first
//! instruction. Each program runs natively and under sudtrace, syscount
//! and sudfault (same stdout and exit status), and syscount's counts are
//! compared with `strace -f -c`'s of a native run: all of them, the
//! initial execve aside (strace sees it, the loader makes it), and the
//! exits (strace -c does not count calls that do not return).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `tool --from-start ...` for each tool; the sudtrace trace's text.
fn assert_transparent_from_start(dir: &Path, argv: &[&str], stdin: &[u8]) -> String {
    let native = run_in(dir, argv, stdin);
    let trace_file = beside(dir, "loader-trace.txt");
    let trace_arg = trace_file.to_str().unwrap().to_string();
    for (tool, args) in [
        (
            SUDTRACE,
            vec!["--from-start", "-f", "-o", trace_arg.as_str()],
        ),
        (SYSCOUNT, vec!["--from-start", "-o", "/dev/null"]),
        (SUDFAULT, vec!["--from-start", "--fail", "reboot=EPERM"]),
    ] {
        let traced = under(tool, &args, dir, argv, stdin);
        assert_same_output(
            &format!("{argv:?} under {tool} --from-start"),
            &native,
            &traced,
        );
    }
    let trace = std::fs::read_to_string(&trace_file).unwrap_or_default();
    let _ = std::fs::remove_file(&trace_file);
    // `-f -o FILE` starts each line with the pid: dropped.
    trace
        .lines()
        .map(|line| {
            let digits = line.bytes().take_while(u8::is_ascii_digit).count();
            line[digits..].trim_start()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// syscount's counts, with the tool's extra arguments.
fn counts(dir: &Path, tool_args: &[&str], argv: &[&str], stdin: &[u8]) -> BTreeMap<String, u64> {
    let report = beside(dir, "loader-count.json");
    let report_arg = report.to_str().unwrap().to_string();
    let mut args = tool_args.to_vec();
    args.extend(["--json", "-o", &report_arg]);
    let output = under(SYSCOUNT, &args, dir, argv, stdin);
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    parse_json(&text)
        .unwrap_or_else(|| {
            panic!(
                "bad syscount JSON {text:?}, stderr {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
        .0
}

/// Every count equals strace's but the initial execve, the exits, and
/// `timing` (calls whose number depends on scheduling: futex waits, a
/// pipe read that gets its data in one piece or two).
fn assert_counts_equal_strace(
    dir: &Path,
    tool_args: &[&str],
    argv: &[&str],
    stdin: &[u8],
    timing: &[&str],
) {
    let ours = counts(dir, tool_args, argv, stdin);
    let theirs = strace_counts(dir, argv, stdin);
    assert!(!theirs.is_empty(), "strace counted nothing for {argv:?}");
    let mut names: Vec<&String> = ours.keys().chain(theirs.keys()).collect();
    names.sort();
    names.dedup();
    let mut differences = Vec::new();
    for name in names {
        if ["exit", "exit_group"].contains(&name.as_str()) || timing.contains(&name.as_str()) {
            continue;
        }
        let mine = ours.get(name).copied().unwrap_or(0);
        let mut strace = theirs.get(name).copied().unwrap_or(0);
        if name == "execve" {
            strace = strace.saturating_sub(1);
        }
        if mine != strace {
            differences.push(format!("{name}: syscount {mine}, strace {strace}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{argv:?} {tool_args:?}: {differences:?}\nsyscount {ours:?}\nstrace {theirs:?}"
    );
}

/// Whether `program` can be run (found in PATH or as a path).
fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `tests/programs/loader_view.c` built one way, or None (skipped).
fn view_program(dir: &Path, variant: &str) -> Option<PathBuf> {
    match variant {
        "musl" => {
            if !have("musl-gcc") {
                skip("musl-gcc is not installed (apt install musl-tools)");
                return None;
            }
            let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/loader_view.c");
            let binary = dir.join("loader_view-musl");
            let status = Command::new("musl-gcc")
                .args(["-static", "-O1", "-w"])
                .arg(&source)
                .arg("-o")
                .arg(&binary)
                .status()
                .expect("musl-gcc runs");
            assert!(status.success(), "musl-gcc failed");
            Some(binary)
        }
        "static" => Some(compile_with("loader_view", dir, &["-static"])),
        "static-pie" => Some(compile_with("loader_view", dir, &["-static-pie"])),
        _ => Some(compile_with("loader_view", dir, &[])),
    }
}

fn check_view(variant: &str) {
    let dir = scratch(&format!("loader-view-{variant}"));
    let Some(binary) = view_program(&dir, variant) else {
        return;
    };
    let argv = [binary.to_str().unwrap(), "a", "b c"];
    let native = run_in(&dir, &argv, b"");
    let text = String::from_utf8_lossy(&native.stdout);
    // The program checks its own auxv, brk, /proc views; natively all hold.
    assert!(!text.contains("WRONG"), "native run: {text}");
    let trace = assert_transparent_from_start(&dir, &argv, b"");
    assert!(
        trace.starts_with(&format!("execve(\"{}\", [", argv[0])),
        "the first line is the execve: {trace}"
    );
    assert_counts_equal_strace(&dir, &["--from-start"], &argv, b"", &["futex"]);
}

#[test]
fn static_pie_sees_its_loading_as_native() {
    check_view("static-pie");
}

#[test]
fn static_glibc_program_sees_its_loading_as_native() {
    check_view("static");
}

#[test]
fn musl_static_program_sees_its_loading_as_native() {
    check_view("musl");
}

#[test]
fn dynamic_program_from_start_sees_its_loading_as_native() {
    check_view("dynamic");
}

#[test]
fn static_programs_go_through_the_loader_without_asking() {
    let dir = scratch("loader-auto");
    let binary = compile_with("loader_view", &dir, &["-static"]);
    let argv = [binary.to_str().unwrap()];
    // Through the preload the tool would see no call at all.
    assert_counts_equal_strace(&dir, &[], &argv, b"", &["futex"]);
    // Nor of a static program a traced dynamic one starts: its execve
    // starts the loader on it.
    let script = format!("{} one; echo $?", argv[0]);
    let argv = ["sh", "-c", script.as_str()];
    let native = run_in(&dir, &argv, b"");
    let traced = under(SUDTRACE, &["-f"], &dir, &argv, b"");
    assert_same_output("sh starting a static program", &native, &traced);
    let trace = String::from_utf8_lossy(&traced.stderr);
    assert!(
        trace.contains("readlink(\"/proc/self/exe\""),
        "the static child's calls are traced: {trace}"
    );
    // sh's own dynamic loader is not seen without --from-start: the calls
    // only the static child makes are compared.
    let ours = counts(&dir, &[], &argv, b"");
    let theirs = strace_counts(&dir, &argv, b"");
    for name in ["readlink", "clone3", "wait4"] {
        assert_eq!(
            ours.get(name),
            theirs.get(name),
            "{name}: {ours:?} {theirs:?}"
        );
    }
}

#[test]
fn the_first_lines_are_the_dynamic_loaders_as_strace_shows_them() {
    let dir = scratch("loader-first-lines");
    let trace = assert_transparent_from_start(&dir, &["/bin/true"], b"");
    let strace_file = beside(&dir, "strace-true.txt");
    let out = run_in(
        &dir,
        &[
            "strace",
            "-qq",
            "-o",
            strace_file.to_str().unwrap(),
            "/bin/true",
        ],
        b"",
    );
    let theirs = std::fs::read_to_string(&strace_file)
        .unwrap_or_else(|e| panic!("strace is needed ({e}): {out:?}"));
    let names = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with("+++"))
            .map(|l| l.split('(').next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(
        names(&trace),
        names(&theirs),
        "sudtrace:\n{trace}\nstrace:\n{theirs}"
    );
    assert!(
        trace.contains("openat(AT_FDCWD, \"/etc/ld.so.cache\""),
        "{trace}"
    );
}

fn busybox() -> Option<&'static str> {
    let path = "/bin/busybox";
    if !Path::new(path).exists() || !sud_examples::loader::is_static_elf(Path::new(path)) {
        skip("no static /bin/busybox (apt install busybox-static)");
        return None;
    }
    Some(path)
}

#[test]
fn busybox_static_applets_and_pipelines() {
    let Some(busybox) = busybox() else { return };
    let dir = scratch("loader-busybox");
    std::fs::write(dir.join("words"), "pear\napple\nfig\n").unwrap();
    let script = "echo b a c | busybox tr ' ' '\\n' | busybox sort -r; \
                  busybox sort words | busybox head -2; busybox ls -a . | busybox wc -l; \
                  x=$(busybox echo sub); echo $x; exit 3";
    let argv = [busybox, "sh", "-c", script];
    let trace = assert_transparent_from_start(&dir, &argv, b"");
    // busybox runs its applets again through /proc/self/exe: its readlink
    // answers as natively.
    let strace_file = beside(&dir, "strace-busybox.txt");
    let mut full = vec!["strace", "-f", "-qq", "-o", strace_file.to_str().unwrap()];
    full.extend_from_slice(&argv);
    run_in(&dir, &full, b"");
    let theirs = std::fs::read_to_string(&strace_file).unwrap_or_default();
    // The distinct answers (strace -f splits calls that interleave).
    let readlinks = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter(|l| l.contains(") = "))
            .filter_map(|l| l.find("readlink(").map(|at| l[at..].to_string()))
            .collect()
    };
    assert!(
        !readlinks(&theirs).is_empty(),
        "strace saw busybox's readlink: {theirs}"
    );
    assert_eq!(readlinks(&trace), readlinks(&theirs));
    // No --from-start: a static program goes through the loader anyway.
    let plain = under(SYSCOUNT, &["-o", "/dev/null"], &dir, &argv, b"");
    assert_same_output("busybox under syscount", &run_in(&dir, &argv, b""), &plain);
    // Standard signals coalesce: how many SIGCHLD handlers run (and
    // return) depends on how the children's exits interleave; a fork that
    // a SIGCHLD interrupts is restarted by the kernel, which strace counts
    // as two calls.
    assert_counts_equal_strace(&dir, &[], &argv, b"", &["rt_sigreturn", "clone"]);
}

/// A static Go program (CGO_ENABLED=0) with goroutines and os/exec.
const GO_PROGRAM: &str = r#"package main

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
)

func main() {
	var wg sync.WaitGroup
	sums := make([]int, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200000; i++ {
				sums[g] += i % (g + 2)
			}
		}(g)
	}
	wg.Wait()
	fmt.Println("sums", sums)
	if err := exec.Command("/bin/true").Run(); err != nil {
		fmt.Println("exec failed:", err)
		os.Exit(1)
	}
	out, err := exec.Command("/bin/echo", "child", "says", "hi").Output()
	fmt.Printf("child: %q %v\n", out, err)
	os.Exit(7)
}
"#;

#[test]
fn go_static_with_goroutines_and_exec() {
    if !have("go") {
        return skip("go is not installed (apt install golang-go)");
    }
    let dir = scratch("loader-go");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("main.go"), GO_PROGRAM).unwrap();
    std::fs::write(src.join("go.mod"), "module loadertest\n\ngo 1.19\n").unwrap();
    let binary = dir.join("gostatic");
    let built: Output = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(&src)
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("go runs");
    assert!(built.status.success(), "go build: {built:?}");
    assert!(
        sud_examples::loader::is_static_elf(&binary),
        "CGO_ENABLED=0 builds static"
    );
    let argv = [binary.to_str().unwrap()];
    let native = run_in(&dir, &argv, b"");
    assert_eq!(native.status.code(), Some(7));
    assert_transparent_from_start(&dir, &argv, b"");
    // Go's runtime sleeps, spins, preempts with signals and starts
    // threads as the scheduler decides: those counts differ from run to
    // run natively too.
    let timing = [
        "futex",
        "nanosleep",
        "clone",
        "rt_sigprocmask",
        "rt_sigreturn",
        "getpid",
        "gettid",
        "tgkill",
        "epoll_pwait",
        "restart_syscall",
        "sigaltstack",
        "madvise",
        "mmap",
        "sched_yield",
        "read",
        "waitid",
        "set_robust_list",
        "rseq",
        "set_tid_address",
        "arch_prctl",
        "munmap",
        "mprotect",
        "prlimit64",
    ];
    assert_counts_equal_strace(&dir, &[], &argv, b"", &timing);
}

#[test]
fn dynamic_coreutils_scripts_and_exec_from_start() {
    let dir = scratch("loader-coreutils");
    std::fs::write(dir.join("g"), "b\na\nc\n").unwrap();
    let script = dir.join("script.sh");
    std::fs::write(
        &script,
        "#!/bin/sh -e\nsort -r g | head -2\nls -a | wc -l\nexit 4\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let argv = [script.to_str().unwrap()];
    let trace = assert_transparent_from_start(&dir, &argv, b"");
    let first = trace.lines().next().unwrap_or("");
    assert!(
        first.starts_with(&format!("execve(\"{}\", [\"", argv[0]))
            && !first.contains("\"/bin/sh\"")
            && !first.contains("\"-e\""),
        "a script's first line is the execve as given, not as #! expands it: {first}"
    );
    // SIGCHLD handlers of the shell: standard signals coalesce, and a
    // fork one interrupts is restarted (strace counts it twice).
    let timing = ["rt_sigreturn", "clone"];
    assert_counts_equal_strace(&dir, &["--from-start"], &argv, b"", &timing);
}

#[test]
fn python3_threads_and_subprocess_from_start() {
    let python = "/usr/bin/python3";
    if !Path::new(python).exists() {
        return skip("no /usr/bin/python3");
    }
    let dir = scratch("loader-python");
    let code = "import subprocess, threading\n\
                t = threading.Thread(target=print, args=('thread',)); t.start(); t.join()\n\
                print(subprocess.run(['sort'], input=b'b\\na\\n', capture_output=True).stdout)\n\
                raise SystemExit(6)\n";
    let argv = [python, "-c", code];
    assert_transparent_from_start(&dir, &argv, b"");
    // Waits and pipe reads depend on how the threads and the child are
    // scheduled.
    let timing = ["futex", "gettid", "poll", "read"];
    assert_counts_equal_strace(&dir, &["--from-start"], &argv, b"", &timing);
}
