//! The known traps for syscall-interception tools, each as a small C
//! program run natively and under the tools. Each program makes marker
//! syscalls (getppid) in the tricky place and prints how many it made:
//! syscount must have caught exactly those.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;

/// Compiles and runs the program natively and under every tool (same
/// stdout and status unless `varies`), then under syscount; returns the
/// native output and the counts.
fn run_program(name: &str, varies: bool) -> (std::process::Output, Counted) {
    let dir = scratch(name);
    let binary = compile(name, &dir);
    let argv = [binary.to_str().unwrap()];
    let native = if varies {
        run_in(&dir, &argv, b"")
    } else {
        assert_transparent(&dir, &argv, b"")
    };
    assert!(
        native.status.success(),
        "{name} failed natively: {native:?}"
    );
    let counted = syscount(&dir, &argv, b"");
    assert!(
        counted.output.status.success(),
        "{name} failed under syscount: {:?}",
        counted.output
    );
    (native, counted)
}

fn count(counted: &Counted, name: &str) -> u64 {
    counted.counts.get(name).copied().unwrap_or(0)
}

#[test]
fn handler_whose_mask_blocks_every_signal() {
    // SIGCHLDs coalesce differently from run to run: `marks` varies.
    let (native, counted) = run_program("sigmask_all", true);
    assert_eq!(reported(&native.stdout, "reaped"), 3);
    assert_eq!(reported(&counted.output.stdout, "reaped"), 3);
    assert_eq!(
        count(&counted, "getppid"),
        reported(&counted.output.stdout, "marks")
    );
    assert!(count(&counted, "getppid") >= 1);
}

#[test]
fn sa_onstack_handlers_on_small_alternate_stacks_of_several_threads() {
    let (native, counted) = run_program("onstack", false);
    assert_eq!(reported(&native.stdout, "on_alt"), 12);
    assert_eq!(reported(&counted.output.stdout, "on_alt"), 12);
    assert_eq!(count(&counted, "getppid"), 60);
}

#[test]
fn raw_clone_and_clone3_children_sharing_the_parents_tls() {
    let (_, counted) = run_program("raw_clones", false);
    assert_eq!(
        count(&counted, "getppid"),
        reported(&counted.output.stdout, "marks")
    );
    assert_eq!(count(&counted, "clone3"), 2);
    assert_eq!(count(&counted, "clone"), 1);
}

#[test]
fn vfork_and_posix_spawn_children_are_followed() {
    let (native, counted) = run_program("spawns", false);
    assert_eq!(reported(&native.stdout, "spawned"), 6);
    // Each /bin/true loads the preload again: 6 execve, and the six
    // children's own exit_group calls are counted too.
    assert_eq!(count(&counted, "execve"), 6);
    assert_eq!(count(&counted, "exit_group"), 7);
    assert_eq!(counted.processes, 7);
    let dir = scratch("spawns-strace");
    let binary = compile("spawns", &dir);
    assert_counts_match(
        &dir,
        &[binary.to_str().unwrap()],
        b"",
        &["vfork", "clone3", "execve", "wait4", "rt_sigaction"],
    );
}

#[test]
fn rseq_registering_threads() {
    let (_, counted) = run_program("rseq_threads", false);
    assert_eq!(reported(&counted.output.stdout, "cpu_reads"), 400_000);
    assert_eq!(count(&counted, "getppid"), 40);
    assert_eq!(count(&counted, "clone3"), 4);
    // glibc registers rseq in every new thread (the main thread's was
    // registered before the preload ran).
    assert_eq!(count(&counted, "rseq"), 4);
    assert_eq!(counted.threads, 5);
}

#[test]
fn signals_arriving_while_the_engine_runs_a_call() {
    let (_, counted) = run_program("signal_in_hook", true);
    let marks = reported(&counted.output.stdout, "marks");
    assert!(marks > 0, "the timer never fired");
    assert_eq!(count(&counted, "getppid"), marks);
    assert_eq!(count(&counted, "getpid"), 300);
}

#[test]
fn syscall_instruction_split_across_pages() {
    let (native, counted) = run_program("split_syscall", false);
    assert_eq!(reported(&native.stdout, "same"), 5);
    assert_eq!(reported(&counted.output.stdout, "same"), 5);
    assert_eq!(
        count(&counted, "getpid"),
        reported(&counted.output.stdout, "getpid_calls")
    );
}
