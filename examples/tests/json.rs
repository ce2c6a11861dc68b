//! `--json` output of sudtrace, syscount and sudfault, read line by line
//! with a JSON parser and checked against the schema in examples/JSON.md.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use serde_json::Value;

/// Every line of `text` as JSON; panics naming the first bad line.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
        })
        .collect()
}

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or_else(|| panic!("no {key:?} in {v}"))
}

#[test]
fn sudtrace_json_lines_follow_the_schema() {
    let dir = scratch("json-trace");
    std::fs::write(dir.join("f.txt"), b"a\"b\\c\n\x01\xff").unwrap();
    let file = beside(&dir, "trace.json");
    let out = under(
        SUDTRACE,
        &[
            "--json",
            "-f",
            "-T",
            "-tt",
            "-s",
            "100",
            "-o",
            file.to_str().unwrap(),
        ],
        &dir,
        &["sh", "-c", "cat f.txt; cat /nonexistent; true | cat"],
        b"",
    );
    assert_eq!(out.status.code(), Some(0));
    let lines = json_lines(&std::fs::read_to_string(&file).unwrap());
    assert!(lines.len() > 50, "{} lines", lines.len());
    let mut syscalls = 0;
    let mut exits = 0;
    for v in &lines {
        match field(v, "type").as_str() {
            Some("syscall") => {
                syscalls += 1;
                assert!(field(v, "pid").is_u64() && field(v, "tid").is_u64(), "{v}");
                assert!(
                    field(v, "name").is_string() && field(v, "nr").is_u64(),
                    "{v}"
                );
                assert!(field(v, "args").is_array(), "{v}");
                let ret = field(v, "ret");
                let errno = field(v, "errno");
                assert!(ret.is_i64() || ret.is_null(), "{v}");
                assert!(errno.is_string() == (ret.as_i64() == Some(-1)), "{v}");
                assert!(field(v, "time").is_f64(), "{v}");
                if !ret.is_null() {
                    assert!(field(v, "duration").as_f64().unwrap() >= 0.0, "{v}");
                }
            }
            Some("exit") => {
                exits += 1;
                assert!(field(v, "status").is_i64(), "{v}");
            }
            Some("signal") => {
                assert!(field(v, "pid").is_i64() && field(v, "tid").is_i64(), "{v}");
                assert_eq!(
                    field(v, "signo").as_i64(),
                    Some(libc::SIGCHLD as i64),
                    "{v}"
                );
                assert!(field(v, "code").is_i64(), "{v}");
            }
            other => panic!("unknown type {other:?}: {v}"),
        }
    }
    assert!(syscalls > 50);
    assert_eq!(exits, 5, "sh, cat, cat, the forked sh running true, cat");
    let named = |name: &'static str| lines.iter().filter(move |v| v["name"] == name);
    // Strings are decoded, not strace-quoted; bytes from 0x80 are the
    // code points U+0080..U+00FF.
    let read = named("read")
        .find(|v| v["ret"] == 8)
        .expect("cat read f.txt");
    assert_eq!(read["args"][1], "a\"b\\c\n\u{1}\u{ff}");
    let failed = named("openat")
        .find(|v| v["args"][1] == "/nonexistent")
        .expect("openat of /nonexistent");
    assert_eq!(failed["errno"], "ENOENT");
    assert_eq!(failed["args"][0], "AT_FDCWD");
    assert_eq!(failed["args"][2], "O_RDONLY");
    let exec = named("execve").next().unwrap();
    assert_eq!(
        exec["args"][1],
        serde_json::json!(["sh", "-c", "cat f.txt; cat /nonexistent; true | cat"])
    );
}

#[test]
fn syscount_json_is_one_object() {
    let dir = scratch("json-count");
    let file = beside(&dir, "count.json");
    let tool_args = ["--json", "-o", file.to_str().unwrap()];
    let out = under(
        SYSCOUNT,
        &tool_args,
        &dir,
        &["sh", "-c", "ls / >/dev/null"],
        b"",
    );
    assert!(out.status.success());
    let lines = json_lines(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(lines.len(), 1);
    let v = &lines[0];
    let counts = field(v, "counts").as_object().unwrap();
    let sum: u64 = counts.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(field(v, "total").as_u64(), Some(sum));
    assert_eq!(field(v, "processes").as_u64(), Some(2));
    assert!(field(v, "threads").as_u64() >= Some(2));
    assert!(counts["getdents64"].as_u64() >= Some(2));
    // sudtrace -c --json: the same object.
    let out = under(
        SUDTRACE,
        &["-c", "--json", "-o", file.to_str().unwrap()],
        &dir,
        &["true"],
        b"",
    );
    assert!(out.status.success());
    let lines = json_lines(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["processes"], 1);
}

#[test]
fn sudfault_json_reports_each_injection_and_a_summary() {
    let dir = scratch("json-fault");
    std::fs::write(dir.join("a"), "").unwrap();
    let file = beside(&dir, "fault.json");
    let out = under(
        SUDFAULT,
        &[
            "--json",
            "-o",
            file.to_str().unwrap(),
            "--fail",
            "unlinkat=EPERM",
            "--fail",
            "reboot=EPERM",
        ],
        &dir,
        &["rm", "a"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(lines.len(), 3, "{lines:?}");
    let fault = &lines[0];
    assert_eq!(fault["type"], "fault");
    assert_eq!(fault["name"], "unlinkat");
    assert_eq!(fault["args"], serde_json::json!(["AT_FDCWD", "a", "0"]));
    assert_eq!(fault["errno"], "EPERM");
    assert_eq!(fault["call"], 1);
    assert!(fault["pid"].is_u64() && fault["tid"].is_u64());
    assert_eq!(
        lines[1],
        serde_json::json!({"type": "summary", "rule": "unlinkat=EPERM", "injected": 1, "calls": 1})
    );
    assert_eq!(
        lines[2],
        serde_json::json!({"type": "summary", "rule": "reboot=EPERM", "injected": 0, "calls": 0})
    );
}
