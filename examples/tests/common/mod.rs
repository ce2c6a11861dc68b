//! Running real programs natively, under the tools, and under `strace -f`,
//! and reading what each reports.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The three tools, built by cargo for this test run.
pub const SUDTRACE: &str = env!("CARGO_BIN_EXE_sudtrace");
pub const SYSCOUNT: &str = env!("CARGO_BIN_EXE_syscount");
pub const SUDFAULT: &str = env!("CARGO_BIN_EXE_sudfault");

/// Scripts the tool suites run natively and under each tool: a dash
/// pipeline with a trap, a background job and exit statuses; bash
/// functions, subshells and an EXIT trap; python3 with a signal handler,
/// threads and subprocesses; perl reading a directory and running a child.
pub const SH_SCRIPT: &str =
    "ls / | sort | head -3; echo a; trap 'echo trapped' USR1; kill -USR1 $$; \
                  sleep 0.01 & wait; false; echo $?; exit 3";
pub const BASH_SCRIPT: &str = "f() { echo \"$1\"; }; for i in 1 2 3; do f $i | cat; done; \
                  x=$(echo sub; ls / | wc -l); echo \"$x\"; trap 'echo bye' EXIT; (exit 4); echo $?";
pub const PYTHON_SCRIPT: &str = r#"
import os, signal, subprocess, threading
got = []
signal.signal(signal.SIGUSR1, lambda s, f: os.write(1, b"handler\n"))
os.kill(os.getpid(), signal.SIGUSR1)
def work(i):
    os.write(1, b"")
    got.append(i)
ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
print(sorted(got), flush=True)
print(subprocess.run(["/bin/echo", "child"], capture_output=True).stdout.decode().strip(), flush=True)
subprocess.run(["sh", "-c", "exit 0"])
"#;
pub const PERL_SCRIPT: &str = r#"opendir(D, "/usr/share/doc") or die; my @f = readdir(D); print scalar(@f) > 2 ? "many\n" : "few\n"; system("true"); print "status $?\n";"#;

/// Syscalls whose number does not depend on the run (no allocator, clock
/// or scheduling in them) and that the dynamic loader does not make: the
/// ones whose counts the suites compare with `strace -f -c`'s.
pub const STABLE_COUNTS: &[&str] = &[
    "getdents64",
    "write",
    "unlinkat",
    "clone",
    "clone3",
    "execve",
    "wait4",
    "vfork",
    "pipe2",
    "dup2",
    "kill",
];

/// A fresh directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A report file next to (not inside) the program's directory, so the
/// program never sees it.
pub fn beside(dir: &Path, name: &str) -> PathBuf {
    let mut file = dir.as_os_str().to_owned();
    file.push(format!(".{name}"));
    PathBuf::from(file)
}

/// Runs `argv` in `dir` with `stdin` and collects everything.
pub fn run_in(dir: &Path, argv: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// `tool tool_args -- argv`.
pub fn under(tool: &str, tool_args: &[&str], dir: &Path, argv: &[&str], stdin: &[u8]) -> Output {
    let mut full = vec![tool];
    full.extend_from_slice(tool_args);
    full.push("--");
    full.extend_from_slice(argv);
    run_in(dir, &full, stdin)
}

/// Counts as `syscount --json` reports them, with the run's output.
pub struct Counted {
    pub output: Output,
    pub counts: BTreeMap<String, u64>,
    pub total: u64,
    pub processes: u64,
    pub threads: u64,
    /// Calls per entrance: `trap`, `rewritten`, `direct`.
    pub entrances: BTreeMap<String, u64>,
    pub patched_sites: u64,
}

/// Runs `argv` under `syscount --json -o FILE` (sites rewritten, the
/// tools' default) and parses the object.
pub fn syscount(dir: &Path, argv: &[&str], stdin: &[u8]) -> Counted {
    syscount_with(dir, &[], argv, stdin)
}

/// [`syscount`] with more options (`--no-rewrite`). Checks what holds for
/// every run: the entrances sum to the total, and nothing is rewritten
/// with `--no-rewrite`.
pub fn syscount_with(dir: &Path, options: &[&str], argv: &[&str], stdin: &[u8]) -> Counted {
    let report = beside(dir, "syscount.json");
    let report_arg = report.to_str().unwrap().to_string();
    let mut args = vec!["--json", "-o", &report_arg];
    args.extend_from_slice(options);
    let output = under(SYSCOUNT, &args, dir, argv, stdin);
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    let parsed = parse_json(&text).and_then(|p| {
        Some((
            p,
            object_after(&text, "entrances")?,
            number_after(&text, "patched_sites")?,
        ))
    });
    let Some(((counts, total, processes, threads), entrances, patched_sites)) = parsed else {
        panic!(
            "bad syscount JSON {text:?}, stderr {}",
            String::from_utf8_lossy(&output.stderr)
        )
    };
    assert_eq!(
        entrances.values().sum::<u64>(),
        total,
        "{argv:?}: the entrances do not sum to the total: {text}"
    );
    if options.contains(&"--no-rewrite") {
        assert_eq!(entrances.get("rewritten"), Some(&0), "{argv:?}: {text}");
        assert_eq!(patched_sites, 0, "{argv:?}: {text}");
    }
    Counted {
        output,
        counts,
        total,
        processes,
        threads,
        entrances,
        patched_sites,
    }
}

/// The number after `"key": ` in a JSON text.
pub fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(&format!("\"{key}\": "))? + key.len() + 4;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The flat `{"name": n, ...}` object after `"key": `.
fn object_after(text: &str, key: &str) -> Option<BTreeMap<String, u64>> {
    let head = format!("\"{key}\": {{");
    let start = text.find(&head)? + head.len();
    let end = start + text[start..].find('}')?;
    let mut map = BTreeMap::new();
    for pair in text[start..end].split(", ").filter(|p| !p.is_empty()) {
        let (name, n) = pair.split_once(": ")?;
        map.insert(name.trim_matches('"').to_string(), n.parse().ok()?);
    }
    Some(map)
}

type Parsed = (BTreeMap<String, u64>, u64, u64, u64);

/// Parses `{"total": N, "counts": {"NAME": n, ...}, "processes": P, "threads": T, ...}`.
pub fn parse_json(text: &str) -> Option<Parsed> {
    Some((
        object_after(text, "counts")?,
        number_after(text, "total")?,
        number_after(text, "processes")?,
        number_after(text, "threads")?,
    ))
}

/// Per-syscall counts from `strace -f -c` of the same run.
pub fn strace_counts(dir: &Path, argv: &[&str], stdin: &[u8]) -> BTreeMap<String, u64> {
    let report = beside(dir, "strace.txt");
    let report_arg = report.to_str().unwrap().to_string();
    let mut full = vec!["strace", "-f", "-qq", "-c", "-o", &report_arg];
    full.extend_from_slice(argv);
    let out = run_in(dir, &full, stdin);
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "strace is needed for this test ({e}); stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let _ = std::fs::remove_file(&report);
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "% time seconds usecs/call calls [errors] syscall"
        if fields.len() >= 5 && fields[0].parse::<f64>().is_ok() && fields.last() != Some(&"total")
        {
            if let Ok(calls) = fields[3].parse::<u64>() {
                counts.insert(fields.last().unwrap().to_string(), calls);
            }
        }
    }
    counts
}

/// Asserts that the tool's run printed and exited like the native run.
pub fn assert_same_output(what: &str, native: &Output, traced: &Output) {
    assert_eq!(
        String::from_utf8_lossy(&native.stdout),
        String::from_utf8_lossy(&traced.stdout),
        "{what}: stdout differs; tool stderr: {}",
        String::from_utf8_lossy(&traced.stderr)
    );
    assert_eq!(
        native.status.code(),
        traced.status.code(),
        "{what}: exit status differs; tool stderr: {}",
        String::from_utf8_lossy(&traced.stderr)
    );
}

/// Runs `argv` natively and under each tool: same stdout and status.
pub fn assert_transparent(dir: &Path, argv: &[&str], stdin: &[u8]) -> Output {
    let native = run_in(dir, argv, stdin);
    let trace_file = beside(dir, "trace.txt");
    let trace_arg = trace_file.to_str().unwrap().to_string();
    for (tool, args) in [
        (SUDTRACE, vec!["-f", "-o", trace_arg.as_str()]),
        // The trap path alone, as before sites were rewritten.
        (
            SUDTRACE,
            vec!["-f", "--no-rewrite", "-o", trace_arg.as_str()],
        ),
        (SYSCOUNT, vec!["-o", "/dev/null"]),
        // A rule that never fires: the program must not notice sudfault.
        (SUDFAULT, vec!["--fail", "reboot=EPERM"]),
    ] {
        let traced = under(tool, &args, dir, argv, stdin);
        assert_same_output(&format!("{argv:?} under {tool}"), &native, &traced);
    }
    let _ = std::fs::remove_file(&trace_file);
    native
}

/// The calls of `names` whose count in `ours` (a preload tool's) differs
/// from strace's, described; strace's execve count loses the first
/// execve, which it sees and the preload, loaded by it, does not.
pub fn count_differences(
    ours: &BTreeMap<String, u64>,
    strace: &BTreeMap<String, u64>,
    names: &[&str],
) -> Vec<String> {
    let mut differences = Vec::new();
    for name in names {
        let mine = ours.get(*name).copied().unwrap_or(0);
        let mut theirs = strace.get(*name).copied().unwrap_or(0);
        if *name == "execve" {
            theirs = theirs.saturating_sub(1);
        }
        if mine != theirs {
            differences.push(format!("{name}: ours {mine}, strace {theirs}"));
        }
    }
    differences
}

/// Asserts syscount's counts equal strace's for `names` (execve: strace
/// also sees the first execve, made before the preload is loaded), with
/// sites rewritten (the default) and with `--no-rewrite`.
pub fn assert_counts_match(dir: &Path, argv: &[&str], stdin: &[u8], names: &[&str]) {
    let theirs = strace_counts(dir, argv, stdin);
    for options in [&[][..], &["--no-rewrite"][..]] {
        let ours = syscount_with(dir, options, argv, stdin);
        let differences = count_differences(&ours.counts, &theirs, names);
        assert!(
            differences.is_empty(),
            "{argv:?} {options:?}: {differences:?}\nsyscount {:?}\nstrace {theirs:?}",
            ours.counts
        );
    }
}

/// Compiles `tests/programs/NAME.c` into `dir`.
pub fn compile(name: &str, dir: &Path) -> PathBuf {
    compile_with(name, dir, &[])
}

/// Compiles `tests/programs/NAME.c` (or `.cc`, as C++) into `dir`, with
/// extra compiler arguments.
pub fn compile_with(name: &str, dir: &Path, extra: &[&str]) -> PathBuf {
    let programs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs");
    let cpp = programs.join(format!("{name}.cc"));
    let source = if cpp.exists() {
        cpp
    } else {
        programs.join(format!("{name}.c"))
    };
    let binary = dir.join(name);
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .target("x86_64-unknown-linux-gnu")
        .host("x86_64-unknown-linux-gnu")
        .opt_level(1)
        .cpp(source.extension().is_some_and(|e| e == "cc"))
        .get_compiler();
    let status = compiler
        .to_command()
        .arg("-pthread")
        .arg("-w")
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .args(extra)
        .status()
        .expect("a C compiler");
    assert!(status.success(), "compiling {}", source.display());
    binary
}

/// The number after `key=` in the program's output.
pub fn reported(stdout: &[u8], key: &str) -> u64 {
    let text = String::from_utf8_lossy(stdout);
    let at = text
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key}= in {text:?}"))
        + key.len()
        + 1;
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Runs `argv` in `dir` with `stdin`, killing it (and everything it
/// started, its process group) after `limit`: a hang fails the test
/// instead of stalling it.
pub fn run_limited(dir: &Path, argv: &[&str], stdin: &[u8], limit: Duration) -> Output {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(argv[0]);
    command
        .args(&argv[1..])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            // SAFETY: kill of the child's own process group.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!("{argv:?} did not finish within {limit:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // The program's own children may still hold the pipes: end them too.
    // SAFETY: as above.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A test (or part of one) that cannot run here says so; under CI, which
/// installs everything `.ci/run` lists, that is a failure rather than a
/// skip that would count as a pass.
pub fn skip(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "cannot run under CI: {why}"
    );
    println!("skipped: {why}");
}
