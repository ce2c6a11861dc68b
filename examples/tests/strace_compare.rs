//! sudtrace next to strace: the same deterministic programs traced by
//! `strace -f -o` and `sudtrace -f -o`, lines compared after normalizing
//! what differs between any two runs (addresses, pids, the alignment
//! padding that depends on their widths) and leaving out what changes
//! by itself (random bytes, clocks, memory figures).
//!
//! Compared: every sudtrace line of a syscall strace also shows in the
//! same run. The dynamic loader's calls, made before the preload is
//! loaded, only strace sees; they are not in the comparison. Each
//! sudtrace line must occur in strace's output (as a multiset: each
//! strace line matches once). At least 95% must, and the test prints the
//! ones that do not.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Calls whose text changes from run to run by nature.
const VOLATILE: &[&str] = &[
    "getrandom",
    "sysinfo",
    "clock_nanosleep",
    "clock_gettime",
    "times",
    "getrusage",
];

fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Splits `1234  rest` into (pid, rest).
fn split_pid(line: &str) -> Option<(&str, &str)> {
    let end = line.find(' ')?;
    let (pid, rest) = line.split_at(end);
    pid.parse::<u32>().ok()?;
    Some((pid, rest.trim_start()))
}

/// strace's lines with `<unfinished ...>`/`<... resumed>` pairs joined.
fn join_unfinished(text: &str) -> Vec<(String, String)> {
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut lines = Vec::new();
    for raw in text.lines() {
        let Some((pid, rest)) = split_pid(raw) else {
            continue;
        };
        if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid.to_string(), head.to_string());
            continue;
        }
        if let Some(after) = rest.strip_prefix("<... ") {
            let Some((_, tail)) = after.split_once(" resumed>") else {
                continue;
            };
            let head = pending.remove(pid).unwrap_or_default();
            lines.push((pid.to_string(), format!("{head}{tail}")));
            continue;
        }
        lines.push((pid.to_string(), rest.to_string()));
    }
    lines
}

fn name_of(line: &str) -> &str {
    if line.starts_with("+++") {
        return "+++";
    }
    line.split('(').next().unwrap_or("")
}

/// Addresses, pids and padding made comparable.
fn normalize(line: &str, pids: &BTreeSet<String>) -> String {
    let mut out = String::with_capacity(line.len());
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"0x") && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let mut j = i + 2;
            while j < bytes.len() && bytes[j].is_ascii_hexdigit() {
                j += 1;
            }
            out.push_str("0xADDR");
            i = j;
            continue;
        }
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let mut j = i;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            let number = &line[i..j];
            let word_end = j >= bytes.len() || !bytes[j].is_ascii_alphanumeric();
            if word_end && pids.contains(number) {
                out.push_str("PID");
            } else {
                out.push_str(number);
            }
            i = j;
            continue;
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    // The padding before " = " depends on the widths of what came before.
    let mut collapsed = String::with_capacity(out.len());
    let mut spaces = 0;
    for c in out.chars() {
        if c == ' ' {
            spaces += 1;
            continue;
        }
        if spaces > 0 {
            collapsed.push(' ');
            spaces = 0;
        }
        collapsed.push(c);
    }
    collapsed
}

struct Comparison {
    compared: usize,
    identical: usize,
    differing: Vec<String>,
}

fn compare(dir: &Path, name: &str, argv: &[&str]) -> Comparison {
    let theirs_file = beside(dir, &format!("{name}.strace"));
    let ours_file = beside(dir, &format!("{name}.sudtrace"));
    let mut strace_argv = vec!["strace", "-f", "-o", theirs_file.to_str().unwrap()];
    strace_argv.extend_from_slice(argv);
    let theirs_run = run_in(dir, &strace_argv, b"");
    let ours_run = under(
        SUDTRACE,
        &["-f", "-o", ours_file.to_str().unwrap()],
        dir,
        argv,
        b"",
    );
    assert_same_output(
        &format!("{argv:?} under strace and sudtrace"),
        &theirs_run,
        &ours_run,
    );
    let theirs = join_unfinished(&std::fs::read_to_string(&theirs_file).unwrap());
    let ours = join_unfinished(&std::fs::read_to_string(&ours_file).unwrap());
    let mut pids: BTreeSet<String> = theirs.iter().chain(&ours).map(|(p, _)| p.clone()).collect();
    // Children's pids appear as results before their own lines do.
    for (_, line) in theirs.iter().chain(&ours) {
        let name = name_of(line);
        if matches!(
            name,
            "clone"
                | "clone3"
                | "vfork"
                | "fork"
                | "wait4"
                | "set_tid_address"
                | "getpid"
                | "gettid"
                | "getppid"
        ) {
            if let Some(result) = line.rsplit("= ").next() {
                let digits: String = result.chars().take_while(char::is_ascii_digit).collect();
                if !digits.is_empty() {
                    pids.insert(digits);
                }
            }
        }
    }
    let names_theirs: BTreeSet<&str> = theirs.iter().map(|(_, l)| name_of(l)).collect();
    let mut pool: BTreeMap<String, usize> = BTreeMap::new();
    for (_, line) in &theirs {
        *pool.entry(normalize(line, &pids)).or_default() += 1;
    }
    let mut result = Comparison {
        compared: 0,
        identical: 0,
        differing: Vec::new(),
    };
    for (_, line) in &ours {
        let name = name_of(line);
        if !names_theirs.contains(name) || VOLATILE.contains(&name) {
            continue;
        }
        result.compared += 1;
        let key = normalize(line, &pids);
        match pool.get_mut(&key) {
            Some(n) if *n > 0 => {
                *n -= 1;
                result.identical += 1;
            }
            _ => result.differing.push(key),
        }
    }
    let _ = std::fs::remove_file(&theirs_file);
    let _ = std::fs::remove_file(&ours_file);
    result
}

fn check(name: &str, argv: &[&str], setup: impl Fn(&Path)) -> Comparison {
    let dir = scratch(&format!("compare-{name}"));
    setup(&dir);
    let c = compare(&dir, name, argv);
    println!(
        "{name}: {} of {} lines identical ({:.1}%)",
        c.identical,
        c.compared,
        100.0 * c.identical as f64 / c.compared.max(1) as f64
    );
    for line in &c.differing {
        println!("  differs: {line}");
    }
    assert!(c.compared > 10, "{name}: too few lines compared");
    c
}

fn fixed_files(dir: &Path) {
    std::fs::write(dir.join("f.txt"), "pear\napple\nfig\n").unwrap();
    std::fs::write(dir.join("bin.dat"), b"\x7fELF\x02\x01\x00\x001\t\"q\\\xff").unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/g.txt"), "x".repeat(100)).unwrap();
}

#[test]
fn sudtrace_lines_match_strace_lines() {
    if !have("strace") {
        skip("strace is not installed");
        return;
    }
    let mut total = (0, 0);
    let mut add = |c: Comparison| {
        total.0 += c.identical;
        total.1 += c.compared;
    };
    add(check(
        "coreutils",
        &[
            "sh",
            "-c",
            "cat f.txt bin.dat >/dev/null; sort f.txt; wc -l f.txt; ls -l sub; cp f.txt h.txt; \
             rm h.txt; mkdir d; rmdir d; head -c 10 sub/g.txt; stat -c %s f.txt; \
             ln -s f.txt l; readlink l; rm l; touch -d @0 t; rm t; test -r f.txt",
        ],
        fixed_files,
    ));
    add(check(
        "sh-script",
        &[
            "sh",
            "-c",
            "echo a | tr a b; for i in 1 2 3; do echo $i; done | sort -r; x=$(cat f.txt); \
             echo \"$x\" > out.txt; cat out.txt; rm out.txt; exit 0",
        ],
        fixed_files,
    ));
    if have("python3") {
        add(check(
            "python",
            &[
                "/usr/bin/python3",
                "-S",
                "-c",
                "import os\nprint(sorted(os.listdir('.')))\nprint(open('f.txt').read().upper())\nos.stat('sub')\n",
            ],
            fixed_files,
        ));
    } else {
        skip("python: python3 is not installed");
    }
    if have("python3") {
        add(check(
            "python-threads-subprocess",
            &[
                "/usr/bin/python3",
                "-S",
                "-c",
                "import subprocess, threading, os\n\
                 t = threading.Thread(target=lambda: os.stat('f.txt')); t.start(); t.join()\n\
                 r, w = os.pipe(); os.write(w, b'abc'); os.close(w); print(os.read(r, 10)); os.close(r)\n\
                 print(subprocess.run(['cat', 'f.txt'], capture_output=True).stdout)\n",
            ],
            fixed_files,
        ));
    }
    if have("git") {
        add(check(
            "git",
            &[
                "sh",
                "-c",
                "rm -rf r && git init -q r && cd r && cp ../f.txt . && git add f.txt && \
                 git -c user.email=t@example.invalid -c user.name=t commit -qm first && \
                 git log --format=%s && cd .. && rm -rf r",
            ],
            fixed_files,
        ));
    } else {
        skip("git: git is not installed");
    }
    add(check(
        "bash",
        &[
            "bash",
            "-c",
            "f() { echo \"$1\"; }; for i in 1 2; do f $i | cat; done; x=$(ls sub); echo $x; (exit 3); echo $?",
        ],
        fixed_files,
    ));
    if have("node") {
        add(check(
            "node",
            &[
                "node",
                "-e",
                "const fs = require('fs'); console.log(fs.readFileSync('f.txt', 'utf8').length, fs.readdirSync('.').length)",
            ],
            fixed_files,
        ));
    } else {
        skip("node: node is not installed");
    }
    if have("sqlite3") {
        add(check(
            "sqlite3",
            &[
                "sh",
                "-c",
                "rm -f db; sqlite3 db 'create table t(x); insert into t values (1),(2); select sum(x) from t;'; rm db",
            ],
            fixed_files,
        ));
    } else {
        skip("sqlite3: sqlite3 is not installed");
    }
    let share = total.0 as f64 / total.1.max(1) as f64;
    println!(
        "all: {} of {} lines identical ({:.1}%)",
        total.0,
        total.1,
        100.0 * share
    );
    assert!(
        share >= 0.95,
        "only {:.1}% of the lines are identical",
        100.0 * share
    );
}
