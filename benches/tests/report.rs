//! The JSON object and the report are complete and consistent with the
//! figures they are given (synthetic figures: these tests check the
//! writers, not the machine).

use std::collections::BTreeSet;
use sud_benches::report::{self, TARGETS};
use sud_benches::{Measured, Probe, Results, Role, Summary};

/// The keys the contract requires, besides `machine`. `direct_hook` may be
/// absent until sud-codegen offers its stub.
const REQUIRED: [&str; 15] = [
    "raw_syscall",
    "raw_getpid",
    "armed_allow_syscall",
    "excluded_region_syscall",
    "trap_floor",
    "trap_engine_empty_hook",
    "trap_engine_pass_hook",
    "trap_engine_unwatched",
    "direct_hook",
    "selector_flip_pair",
    "guard_enter_exit",
    "prctl_on_off_pair",
    "seccomp_trap",
    "ptrace_syscall",
    "rewritten_site",
];

fn summary(median: f64) -> Summary {
    Summary {
        median,
        p90: median * 1.5,
        samples: 10,
    }
}

/// Every probe measured, at 100 ns times its position (the raw syscall
/// first at 100, the floor fifth at 500), except `direct_hook`, absent.
fn synthetic() -> Results {
    let mut results = Results {
        machine: "Test CPU, Linux 0.0, 2 cores".into(),
        date: "2026-01-01".into(),
        plan: "a test plan".into(),
        ..Results::default()
    };
    for (i, probe) in Probe::ALL.into_iter().enumerate() {
        if probe == Probe::DirectHook {
            results.absent.push((probe, "pending".into()));
        } else {
            let summary = summary(100.0 * (i + 1) as f64);
            results.measured.push(Measured { probe, summary });
        }
    }
    results
}

#[test]
fn contract_probes_are_exactly_the_required_keys() {
    let contract: BTreeSet<&str> = Probe::ALL
        .iter()
        .filter(|p| p.role() == Role::Contract)
        .map(|p| p.key())
        .collect();
    assert_eq!(contract, REQUIRED.into_iter().collect());
}

#[test]
fn json_has_each_measured_key_its_p90_and_the_machine_only() {
    let json = synthetic().to_json();
    let object = json.as_object().expect("one JSON object");
    let mut expected: BTreeSet<String> = REQUIRED
        .iter()
        .filter(|&&k| k != "direct_hook")
        .flat_map(|k| [k.to_string(), format!("{k}_p90")])
        .collect();
    expected.insert("machine".into());
    assert_eq!(object.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(object["trap_floor"].as_f64(), Some(500.0));
    assert_eq!(object["trap_floor_p90"].as_f64(), Some(750.0));
    assert_eq!(object["machine"], "Test CPU, Linux 0.0, 2 cores");
}

#[test]
fn report_has_a_row_per_probe_with_ratios_and_the_targets() {
    let results = synthetic();
    let text = report::markdown(&results);
    for probe in Probe::ALL {
        let rows = text
            .lines()
            .filter(|l| l.starts_with(&format!("| `{}` |", probe.key())))
            .count();
        assert_eq!(rows, 1, "table rows for {}", probe.key());
        assert!(
            text.contains(&format!("- **`{}`**: ", probe.key())),
            "method of {}",
            probe.key()
        );
    }
    // trap_engine_empty_hook is sixth: 600 ns, 6x raw_syscall, 1.20x trap_floor.
    assert!(
        text.contains("| `trap_engine_empty_hook` | 600 | 900 | 6.00 | 1.20 |"),
        "{text}"
    );
    assert!(text.contains("| `direct_hook` | absent |"));
    assert!(text.contains("Test CPU, Linux 0.0, 2 cores"));
    assert!(text.contains("2026-01-01"));
    assert!(text.contains(&format!("]({})", report::CHART_FILE)));
    // 1.20 > 1.10: the target is reported as missed.
    assert!(
        text.contains("| `trap_engine_empty_hook / trap_floor` <= 1.10 | 1.20 | **no** |"),
        "{text}"
    );
    assert_eq!(
        TARGETS.len(),
        text.matches("| **no** |").count()
            + text.matches("| yes |").count()
            + text.matches("| not measured |").count()
    );
}

#[test]
fn report_and_chart_are_written_side_by_side() {
    let dir = std::env::temp_dir().join(format!("sud-benches-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (md, svg) = report::write(&synthetic(), &dir).expect("report written");
    let chart = std::fs::read_to_string(&svg).expect("chart readable");
    assert!(chart.starts_with("<svg"));
    for probe in Probe::ALL.iter().filter(|p| **p != Probe::DirectHook) {
        assert!(chart.contains(probe.key()), "chart labels {}", probe.key());
    }
    let first = std::fs::read_to_string(&md).expect("report readable");
    assert!(first.contains("| `raw_syscall` |"));
    // Sections measured by other means, after the marker, survive a new report.
    let kept = format!(
        "{}\n## Whole programs\nfigures\n",
        report::KEPT_SECTIONS_MARKER
    );
    std::fs::write(&md, first.replace(report::KEPT_SECTIONS_MARKER, &kept)).unwrap();
    report::write(&synthetic(), &dir).expect("report written again");
    let second = std::fs::read_to_string(&md).expect("report readable");
    assert!(second.contains("| `raw_syscall` |"));
    assert!(second.ends_with("## Whole programs\nfigures\n"), "{second}");
    assert_eq!(second.matches(report::KEPT_SECTIONS_MARKER).count(), 1);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
