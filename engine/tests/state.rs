//! What a trapped syscall leaves untouched (registers, vector state), and
//! the dispatch configuration as seen from outside (ptrace) and across fork.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::arch::asm;
use sud_engine::kernel::Region;
use sud_engine::ptrace::{get_task_config, set_task_config, TaskDispatch};
use sud_engine::{selector, Engine, Placement, Selector, SyscallSet, Sysno, Verdict};

/// A hook that scribbles over every vector register it can reach, so a
/// register the engine failed to preserve would show.
fn clobbering_engine() -> &'static Engine {
    Engine::builder()
        .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
        .pre_hook(|_| {
            // SAFETY: writes only vector registers declared clobbered.
            unsafe {
                asm!(
                    "pcmpeqd xmm0, xmm0", "pcmpeqd xmm1, xmm1", "pcmpeqd xmm2, xmm2", "pcmpeqd xmm3, xmm3",
                    "pcmpeqd xmm4, xmm4", "pcmpeqd xmm5, xmm5", "pcmpeqd xmm6, xmm6", "pcmpeqd xmm7, xmm7",
                    "pcmpeqd xmm8, xmm8", "pcmpeqd xmm9, xmm9", "pcmpeqd xmm10, xmm10", "pcmpeqd xmm11, xmm11",
                    "pcmpeqd xmm12, xmm12", "pcmpeqd xmm13, xmm13", "pcmpeqd xmm14, xmm14", "pcmpeqd xmm15, xmm15",
                    out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _, out("xmm5") _,
                    out("xmm6") _, out("xmm7") _, out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
                    out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
                );
                if std::is_x86_feature_detected!("avx") {
                    asm!("vpcmpeqd ymm0, ymm0, ymm0", "vpcmpeqd ymm8, ymm8, ymm8", out("ymm0") _, out("ymm8") _);
                }
            }
            Verdict::Return(-77)
        })
        .install()
        .unwrap()
}

#[test]
fn registers_and_sse_state_survive_a_trapped_syscall() {
    child_passes(|| {
        clobbering_engine();
        let input: [[u8; 16]; 16] = std::array::from_fn(|i| [i as u8 + 1; 16]);
        let mut output = [[0u8; 16]; 16];
        let gprs_in: [u64; 8] = std::array::from_fn(|i| 0x1111_1111_1111_1111 * (i as u64 + 1));
        let mut gprs_out = gprs_in;
        let result: i64;
        {
            let _foreign = selector::enter(Selector::Block);
            // SAFETY: loads and stores through pointers to local arrays of
            // the right size; every register written is declared.
            unsafe {
                asm!(
                    "movdqu xmm0, [r12]", "movdqu xmm1, [r12+16]", "movdqu xmm2, [r12+32]", "movdqu xmm3, [r12+48]",
                    "movdqu xmm4, [r12+64]", "movdqu xmm5, [r12+80]", "movdqu xmm6, [r12+96]", "movdqu xmm7, [r12+112]",
                    "movdqu xmm8, [r12+128]", "movdqu xmm9, [r12+144]", "movdqu xmm10, [r12+160]", "movdqu xmm11, [r12+176]",
                    "movdqu xmm12, [r12+192]", "movdqu xmm13, [r12+208]", "movdqu xmm14, [r12+224]", "movdqu xmm15, [r12+240]",
                    "syscall",
                    "movdqu [r13], xmm0", "movdqu [r13+16], xmm1", "movdqu [r13+32], xmm2", "movdqu [r13+48], xmm3",
                    "movdqu [r13+64], xmm4", "movdqu [r13+80], xmm5", "movdqu [r13+96], xmm6", "movdqu [r13+112], xmm7",
                    "movdqu [r13+128], xmm8", "movdqu [r13+144], xmm9", "movdqu [r13+160], xmm10", "movdqu [r13+176], xmm11",
                    "movdqu [r13+192], xmm12", "movdqu [r13+208], xmm13", "movdqu [r13+224], xmm14", "movdqu [r13+240], xmm15",
                    in("r12") input.as_ptr(),
                    in("r13") output.as_mut_ptr(),
                    inlateout("rax") libc::SYS_getppid => result,
                    inlateout("rdi") gprs_in[0] => gprs_out[0],
                    inlateout("rsi") gprs_in[1] => gprs_out[1],
                    inlateout("rdx") gprs_in[2] => gprs_out[2],
                    inlateout("r10") gprs_in[3] => gprs_out[3],
                    inlateout("r8") gprs_in[4] => gprs_out[4],
                    inlateout("r9") gprs_in[5] => gprs_out[5],
                    inlateout("r14") gprs_in[6] => gprs_out[6],
                    inlateout("r15") gprs_in[7] => gprs_out[7],
                    out("rcx") _, out("r11") _,
                    out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _, out("xmm5") _,
                    out("xmm6") _, out("xmm7") _, out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
                    out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
                );
            }
        }
        assert_eq!(result, -77, "the syscall trapped into the clobbering hook");
        assert_eq!(output, input, "xmm0-15 preserved");
        assert_eq!(gprs_out, gprs_in, "argument and callee registers preserved");
    });
}

#[test]
#[cfg_attr(not(sud_host_avx), ignore = "this CPU has no AVX")]
fn avx_upper_halves_survive_a_trapped_syscall() {
    child_passes(|| {
        clobbering_engine();
        let input: [[u8; 32]; 2] = [[0x5a; 32], [0xa5; 32]];
        let mut output = [[0u8; 32]; 2];
        {
            let _foreign = selector::enter(Selector::Block);
            // SAFETY: as in the SSE test, with 32-byte loads and stores.
            unsafe {
                asm!(
                    "vmovdqu ymm0, [r12]", "vmovdqu ymm8, [r12+32]",
                    "syscall",
                    "vmovdqu [r13], ymm0", "vmovdqu [r13+32], ymm8",
                    "vzeroupper",
                    in("r12") input.as_ptr(), in("r13") output.as_mut_ptr(),
                    inlateout("rax") libc::SYS_getppid => _,
                    out("rcx") _, out("r11") _, out("ymm0") _, out("ymm8") _,
                );
            }
        }
        assert_eq!(output, input);
    });
}

#[test]
fn a_forked_child_of_foreign_code_is_armed_again() {
    child_passes(|| {
        let engine = engine_answering_getppid();
        let pid = {
            let _foreign = selector::enter(Selector::Block);
            // SAFETY: the child only makes a syscall and _exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: getppid has no preconditions; _exit ends the child.
                unsafe { libc::_exit(if libc::getppid() == -77 { 42 } else { 1 }) };
            }
            pid
        };
        assert!(pid > 0);
        assert_eq!(
            wait_for(pid),
            Ended::Exited(42),
            "the child's getppid trapped"
        );
        assert_eq!(engine.count(Sysno::clone), 1, "glibc's fork is a clone");
    });
}

#[test]
fn threads_and_processes_created_by_foreign_code_run() {
    child_passes(|| {
        let engine = Engine::builder().install().unwrap();
        let _foreign = selector::enter(Selector::Block);
        // pthread_create: clone3 with a new stack, re-issued from the
        // excluded region; both sides continue where they should.
        let answer = std::thread::spawn(|| 6 * 7).join().unwrap();
        assert_eq!(answer, 42);
        // posix_spawn: clone3(CLONE_VM | CLONE_VFORK) with a stack.
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 3"])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(3));
        drop(_foreign);
        assert!(engine.count(Sysno::clone3) >= 2);
    });
}

/// Runs `arm` in a traced child that stops itself, and hands the parent
/// the child's pid and what the child reported about its configuration.
fn traced_child(arm: fn() -> [u64; 3], inspect: impl FnOnce(i32, [u64; 3])) {
    before_fork();
    let mut fds = [0; 2];
    // SAFETY: pipe into a valid array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only arms, reports and stops, then _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: plain syscalls on our own fds; the child never returns.
        unsafe {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            let report = arm();
            libc::write(fds[1], report.as_ptr().cast(), 24);
            libc::raise(libc::SIGSTOP);
            libc::_exit(0);
        }
    }
    let mut report = [0u64; 3];
    // SAFETY: reading 24 bytes into a local array.
    assert_eq!(
        unsafe { libc::read(fds[0], report.as_mut_ptr().cast(), 24) },
        24
    );
    let mut status = 0;
    // SAFETY: waiting for our stopped child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFSTOPPED(status));
    inspect(pid, report);
    // SAFETY: ending our own traced child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
    }
}

fn region_words(region: Region) -> (u64, u64, u64) {
    match region {
        Region::Exclusive { start, len } => (1, start as u64, len as u64),
        Region::Inclusive { start, len } => (2, start as u64, len as u64),
    }
}

fn check_round_trip(pid: i32, report: [u64; 3], mode: u64) {
    let TaskDispatch::On { region, selector } = get_task_config(pid).unwrap() else {
        panic!("the child is armed");
    };
    let (got_mode, start, len) = region_words(region);
    assert_eq!((got_mode, start, len), (mode, report[0], report[1]));
    assert_eq!(selector as u64, report[2]);
    let read = get_task_config(pid).unwrap();
    set_task_config(pid, TaskDispatch::Off).unwrap();
    assert_eq!(get_task_config(pid).unwrap(), TaskDispatch::Off);
    // What was read can be written back, inclusive mode included.
    set_task_config(pid, read).unwrap();
    assert_eq!(get_task_config(pid).unwrap(), read);
}

fn arm_and_report(placement: Placement) -> [u64; 3] {
    let engine = Engine::builder().placement(placement).install().unwrap();
    let (_, start, len) = region_words(engine.region());
    [start, len, selector::selector_location().address as u64]
}

#[test]
fn another_tasks_exclusive_configuration_round_trips_through_ptrace() {
    traced_child(
        || arm_and_report(Placement::GadgetPage),
        |pid, report| check_round_trip(pid, report, 1),
    );
}

#[test]
fn another_tasks_inclusive_configuration_round_trips_through_ptrace() {
    traced_child(
        || {
            arm_and_report(Placement::Inclusive {
                start: 0x7000_0000,
                len: 0x10_0000,
            })
        },
        |pid, report| check_round_trip(pid, report, 2),
    );
}

#[test]
fn the_direct_entrance_forks_but_refuses_clones_that_need_the_call_site() {
    child_passes(|| {
        let engine = engine_answering_getppid();
        // A thread clone with a stack of its own: its child would start in
        // the engine's frames, so the direct entrance refuses it.
        let mut stack = vec![0u8; 64 * 1024];
        let flags = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        let top = stack.as_mut_ptr() as u64 + stack.len() as u64;
        let r = engine.dispatch_direct(Sysno::clone.id() as u64, [flags, top, 0, 0, 0, 0], 0);
        assert_eq!(sud_engine::errno_of(r), Some(sud_engine::Errno::ENOSYS));
        // A fork runs, and its child is armed again.
        let pid = engine.dispatch_direct(
            Sysno::clone.id() as u64,
            [libc::SIGCHLD as u64, 0, 0, 0, 0, 0],
            0,
        );
        if pid == 0 {
            let _foreign = selector::enter(Selector::Block);
            // SAFETY: getppid has no preconditions; _exit ends the child.
            unsafe { libc::_exit(if libc::getppid() == -77 { 42 } else { 1 }) };
        }
        assert!(pid > 0);
        assert_eq!(wait_for(pid as i32), Ended::Exited(42));
        assert_eq!(engine.counters().direct, 2);
    });
}
