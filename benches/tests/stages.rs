//! The probes cross where they claim to, and the stages hand the thread
//! back as they found it. One test function: the floor replaces the
//! process's SIGSYS handler while it is entered, so nothing else may trap
//! at the same time.

use sud_benches::floor::Flags;
use sud_benches::rig::{self, Stage};
use sud_benches::sys::{EMPTY_HOOK_NR, PASS_HOOK_NR, UNWATCHED_NR};
use sud_benches::{Probe, Setting};

const N: u64 = 50;

/// Runs `probe` for `N` operations in its stage and returns how the
/// engine's counters moved: (traps, hooked, count of `nr`).
fn run(probe: Probe, nr: u64) -> (u64, u64, u64) {
    let engine = rig::engine().expect("the benches' engine installs");
    let (before, count_before) = (engine.counters(), engine.count_raw(nr));
    let stage = Stage::enter(probe.setting()).expect("stage enters");
    probe.batch(N).expect("probe runs");
    stage.leave().expect("stage leaves");
    let after = engine.counters();
    (
        after.traps - before.traps,
        after.hooked - before.hooked,
        engine.count_raw(nr) - count_before,
    )
}

#[test]
fn probes_cross_where_they_claim_and_stages_restore_the_thread() {
    let engine = rig::engine().expect("the benches' engine installs");
    assert!(engine.is_current_thread_armed());

    // Traps into the engine: watched numbers run the hook, unwatched do not.
    assert_eq!(run(Probe::TrapEngineEmptyHook, EMPTY_HOOK_NR), (N, N, N));
    assert_eq!(run(Probe::TrapEnginePassHook, PASS_HOOK_NR), (N, N, N));
    assert_eq!(run(Probe::TrapEngineUnwatched, UNWATCHED_NR), (N, 0, N));

    // Crossings that must not trap.
    assert_eq!(run(Probe::ArmedAllowSyscall, UNWATCHED_NR), (0, 0, 0));
    assert_eq!(run(Probe::ExcludedRegionSyscall, UNWATCHED_NR), (0, 0, 0));
    assert_eq!(run(Probe::SelectorFlipPair, UNWATCHED_NR), (0, 0, 0));

    // Dispatch off disarms the thread and gives the arming back.
    let stage = Stage::enter(Setting::DispatchOff).expect("disarms");
    assert!(!engine.is_current_thread_armed());
    stage.leave().expect("re-arms");
    assert!(engine.is_current_thread_armed());

    // The floor traps into its own handler, not the engine's, and leaving it
    // gives the engine back its handler and arming.
    for flags in [Flags::Floor, Flags::Deferring, Flags::LikeEngine] {
        let stage = Stage::enter(Setting::Floor(flags)).expect("floor enters");
        let before = engine.counters().traps;
        sud_benches::floor::trap_batch(N);
        assert_eq!(
            engine.counters().traps,
            before,
            "{flags:?} trapped into the engine"
        );
        stage.leave().expect("floor leaves");
        assert_eq!(run(Probe::TrapEngineUnwatched, UNWATCHED_NR), (N, 0, N));
    }

    // The direct entrance is counted as such, with the hook.
    let before = engine.counters();
    Probe::EngineDirectEntrance
        .batch(N)
        .expect("direct entrance runs");
    let after = engine.counters();
    assert_eq!(
        (after.direct - before.direct, after.hooked - before.hooked),
        (N, N)
    );

    // The direct hook enters the engine by call, not by signal, and runs the hook.
    if cfg!(target_arch = "x86_64") {
        let before = engine.counters();
        assert_eq!(run(Probe::DirectHook, EMPTY_HOOK_NR), (0, N, N));
        assert_eq!(engine.counters().direct - before.direct, N);
    }

    // The prctl pair leaves the thread disarmed: its stage arms it again.
    assert_eq!(run(Probe::PrctlOnOffPair, UNWATCHED_NR), (0, 0, 0));
    assert!(engine.is_current_thread_armed());
    assert_eq!(run(Probe::TrapEngineEmptyHook, EMPTY_HOOK_NR), (N, N, N));
}
