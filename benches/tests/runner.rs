//! The runner's `--quick --json` output is one JSON object with every
//! required key (values in nanoseconds, positive, p90 not below the median)
//! and the machine string. Runs the real binary: about 10-20 s.

use std::process::Command;

const KEYS: [&str; 13] = [
    "raw_syscall",
    "raw_getpid",
    "armed_allow_syscall",
    "excluded_region_syscall",
    "trap_floor",
    "trap_engine_empty_hook",
    "trap_engine_pass_hook",
    "trap_engine_unwatched",
    "selector_flip_pair",
    "guard_enter_exit",
    "prctl_on_off_pair",
    "seccomp_trap",
    "ptrace_syscall",
];

#[test]
fn quick_json_run_has_every_key_with_positive_figures() {
    let out = Command::new(env!("CARGO_BIN_EXE_crossings"))
        .args(["--quick", "--json"])
        .output()
        .expect("runner starts");
    assert!(
        out.status.success(),
        "runner failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    let object = json.as_object().expect("an object");
    for key in KEYS {
        let median = object[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is a number"));
        let p90 = object[&format!("{key}_p90")]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}_p90 is a number"));
        assert!(median > 0.0, "{key} = {median}");
        assert!(p90 >= median, "{key}: p90 {p90} < median {median}");
    }
    // sud-codegen's direct stub exists on x86-64: there the key is required.
    if cfg!(target_arch = "x86_64") {
        let direct = object["direct_hook"]
            .as_f64()
            .expect("direct_hook is a number");
        assert!(direct > 0.0, "direct_hook = {direct}");
        let rewritten = object["rewritten_site"]
            .as_f64()
            .expect("rewritten_site is a number");
        assert!(rewritten > 0.0, "rewritten_site = {rewritten}");
    }
    let machine = object["machine"].as_str().expect("machine is a string");
    assert!(
        machine.contains("Linux") && machine.contains("cores"),
        "{machine}"
    );
    // Nothing else: the required keys, their p90s, machine, and direct_hook
    // and rewritten_site with their p90s on x86-64.
    let extra: Vec<&String> = object
        .keys()
        .filter(|k| {
            let base = k.strip_suffix("_p90").unwrap_or(k);
            !KEYS.contains(&base)
                && *k != "machine"
                && base != "direct_hook"
                && base != "rewritten_site"
        })
        .collect();
    assert!(extra.is_empty(), "unexpected keys {extra:?}");
}
