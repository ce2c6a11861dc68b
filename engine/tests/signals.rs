//! Signals and SIGSYS: application handlers in the foreign personality,
//! signals arriving while a hook runs, and the virtual SIGSYS state.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::*};
use sud_engine::kernel::{self, Support};
use sud_engine::{selector, Engine, Errno, Error, Selector, SyscallSet, Sysno, Verdict};

static HANDLED: AtomicU64 = AtomicU64::new(0);
static IN_HANDLER_PPID: AtomicI32 = AtomicI32::new(0);

extern "C" fn count_and_getppid(_sig: i32) {
    HANDLED.fetch_add(1, SeqCst);
    // SAFETY: getppid is async-signal-safe.
    IN_HANDLER_PPID.store(unsafe { libc::getppid() }, SeqCst);
}

/// Sends `sig` to thread `tid` of this process.
fn tgkill(tid: i32, sig: i32) {
    // SAFETY: signalling a live thread of our own process.
    assert_eq!(
        unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, sig) },
        0
    );
}

/// Spins in the foreign personality (no syscalls) until `HANDLED` reaches
/// `target`, while another thread signals this one.
fn spin_foreign_until_signalled(target: u64, sig: i32) {
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    let spinning = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !spinning.load(SeqCst) {
                std::hint::spin_loop();
            }
            while HANDLED.load(SeqCst) < target {
                tgkill(me, sig);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        let _foreign = selector::enter(Selector::Block);
        spinning.store(true, SeqCst);
        while HANDLED.load(SeqCst) < target {
            std::hint::spin_loop();
        }
    });
}

#[test]
fn a_handler_of_foreign_code_traps_and_returns_through_rt_sigreturn() {
    child_passes(|| {
        let engine = engine_answering_getppid();
        {
            let _foreign = selector::enter(Selector::Block);
            set_handler(
                libc::SIGUSR1,
                count_and_getppid as *const () as usize,
                0,
                false,
            );
        }
        spin_foreign_until_signalled(1, libc::SIGUSR1);
        assert_eq!(
            IN_HANDLER_PPID.load(SeqCst),
            -77,
            "the handler's syscall trapped"
        );
        // glibc's __restore_rt is outside the excluded region: its
        // rt_sigreturn trapped and was re-issued from the restorer.
        assert!(engine.count(Sysno::rt_sigreturn) >= 1);
        // SAFETY: getppid has no preconditions.
        assert_eq!(selector::current(), Selector::Allow);
        assert!(unsafe { libc::getppid() } > 0);
    });
}

#[test]
fn a_handler_whose_sa_mask_blocks_everything_still_traps() {
    child_passes(|| {
        let engine = engine_answering_getppid();
        // dash installs its SIGCHLD handler with every signal in sa_mask; a
        // blocked SIGSYS would kill the first trapped syscall inside it.
        {
            let _foreign = selector::enter(Selector::Block);
            set_handler(
                libc::SIGUSR2,
                count_and_getppid as *const () as usize,
                0,
                true,
            );
            // The application still sees the mask it asked for.
            let shown = set_handler(
                libc::SIGUSR2,
                count_and_getppid as *const () as usize,
                0,
                true,
            );
            // SAFETY: querying a sigset filled by sigaction.
            assert_eq!(
                unsafe { libc::sigismember(&shown.sa_mask, libc::SIGSYS) },
                1
            );
        }
        spin_foreign_until_signalled(1, libc::SIGUSR2);
        assert_eq!(IN_HANDLER_PPID.load(SeqCst), -77);
        assert!(engine.count(Sysno::getppid) >= 1);
    });
}

#[test]
fn a_signal_arriving_while_a_hook_runs_is_handled_and_the_hook_completes() {
    child_passes(|| {
        static HOOK_RUNNING: AtomicBool = AtomicBool::new(false);
        static SEEN_IN_HOOK: AtomicU64 = AtomicU64::new(0);
        Engine::builder()
            .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
            .pre_hook(|_| {
                HOOK_RUNNING.store(true, SeqCst);
                // Wait (bounded) until the signal handler has run on top of us.
                for _ in 0..2_000 {
                    if HANDLED.load(SeqCst) > 0 {
                        break;
                    }
                    // SAFETY: a plain nanosleep of 1 ms; EINTR is fine.
                    unsafe { libc::usleep(1000) };
                }
                SEEN_IN_HOOK.store(HANDLED.load(SeqCst), SeqCst);
                Verdict::Return(-77)
            })
            .install()
            .unwrap();
        extern "C" fn mark(_: i32) {
            HANDLED.fetch_add(1, SeqCst);
        }
        set_handler(libc::SIGUSR1, mark as *const () as usize, 0, false);
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() };
        let r = std::thread::scope(|s| {
            s.spawn(move || {
                while !HOOK_RUNNING.load(SeqCst) {
                    std::hint::spin_loop();
                }
                tgkill(me, libc::SIGUSR1);
            });
            let _foreign = selector::enter(Selector::Block);
            // SAFETY: getppid has no preconditions.
            unsafe { libc::getppid() }
        });
        assert_eq!(r, -77, "the hook's result survived the nested signal");
        assert_eq!(
            SEEN_IN_HOOK.load(SeqCst),
            1,
            "the handler ran while the hook waited"
        );
    });
}

#[test]
fn blocking_sigsys_is_virtual_and_other_signals_are_blocked_for_real() {
    child_passes(|| {
        let engine = engine_answering_getppid();
        // SAFETY (block): sigprocmask with valid sets, from the foreign side.
        let shown_blocked = unsafe {
            let _foreign = selector::enter(Selector::Block);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGSYS);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            assert_eq!(
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
                0
            );
            // Dispatch still works with SIGSYS "blocked".
            assert_eq!(libc::getppid(), -77);
            let mut now: libc::sigset_t = std::mem::zeroed();
            assert_eq!(
                libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut now),
                0
            );
            (
                libc::sigismember(&now, libc::SIGSYS),
                libc::sigismember(&now, libc::SIGUSR1),
            )
        };
        assert_eq!(
            shown_blocked,
            (1, 1),
            "the application sees what it asked for"
        );
        let real = proc_status_mask("SigBlk:");
        assert_eq!(
            real & bit(libc::SIGSYS),
            0,
            "SIGSYS is never really blocked"
        );
        assert_ne!(real & bit(libc::SIGUSR1), 0, "SIGUSR1 is");
        // Unblocking from the foreign side works too.
        // SAFETY: as above.
        unsafe {
            let _foreign = selector::enter(Selector::Block);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigaddset(&mut set, libc::SIGSYS);
            assert_eq!(
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()),
                0
            );
        }
        assert_eq!(proc_status_mask("SigBlk:") & bit(libc::SIGUSR1), 0);
        assert!(engine.count(Sysno::rt_sigprocmask) >= 3);
    });
}

static APP_SIGSYS_CODE: AtomicI32 = AtomicI32::new(0);
static APP_SIGSYS_NR: AtomicI32 = AtomicI32::new(0);
static APP_SIGSYS_CALLS: AtomicU64 = AtomicU64::new(0);

extern "C" fn app_sigsys(_sig: i32, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel (via the engine) passes a valid siginfo; for SIGSYS
    // the syscall number sits at byte 24 (after call_addr).
    unsafe {
        APP_SIGSYS_CODE.store((*info).si_code, SeqCst);
        APP_SIGSYS_NR.store(*((info as *const u8).add(24) as *const i32), SeqCst);
    }
    APP_SIGSYS_CALLS.fetch_add(1, SeqCst);
}

#[test]
fn seccomp_sigsys_reaches_the_application_handler_while_dispatch_keeps_working() {
    child_passes(|| {
        let engine = engine_answering_getppid();
        {
            // The application installs its SIGSYS handler from the foreign
            // side: the engine keeps it virtually.
            let _foreign = selector::enter(Selector::Block);
            set_handler(
                libc::SIGSYS,
                app_sigsys as *const () as usize,
                libc::SA_SIGINFO,
                false,
            );
            let again = set_handler(
                libc::SIGSYS,
                app_sigsys as *const () as usize,
                libc::SA_SIGINFO,
                false,
            );
            assert_eq!(
                again.sa_sigaction, app_sigsys as *const () as usize,
                "the application sees its handler"
            );
        }
        // The real handler is still the engine's.
        // SAFETY: querying the current action with a zeroed struct.
        let real = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGSYS, std::ptr::null(), &mut old);
            old.sa_sigaction
        };
        assert_ne!(real, app_sigsys as *const () as usize);

        let nr = libc::SYS_getpriority as u32;
        seccomp_on(nr, None, SECCOMP_RET_TRAP);
        // From host code: seccomp's SIGSYS goes straight to the application.
        // SAFETY: getpriority with valid arguments.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        assert_eq!(APP_SIGSYS_CALLS.load(SeqCst), 1);
        assert_eq!(APP_SIGSYS_CODE.load(SeqCst), 1, "si_code SYS_SECCOMP");
        assert_eq!(APP_SIGSYS_NR.load(SeqCst), nr as i32);
        // From foreign code: dispatch traps it first, the hook's execution
        // meets seccomp, whose SIGSYS is forwarded as well.
        {
            let _foreign = selector::enter(Selector::Block);
            // SAFETY: as above.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            // SAFETY: getppid has no preconditions.
            assert_eq!(unsafe { libc::getppid() }, -77, "dispatch keeps working");
        }
        assert_eq!(APP_SIGSYS_CALLS.load(SeqCst), 2);
        assert_eq!(engine.counters().forwarded_sigsys, 2);
    });
}

#[test]
fn seccomp_sigsys_without_an_application_handler_kills_with_sigsys() {
    let ended = in_child(|| {
        no_core_dumps();
        engine_answering_getppid();
        seccomp_on(libc::SYS_getpriority as u32, None, SECCOMP_RET_TRAP);
        // SAFETY: getpriority with valid arguments.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    });
    assert_eq!(ended, Ended::Killed(libc::SIGSYS));
}

#[test]
fn a_policy_that_refuses_the_prctl_gives_a_typed_error() {
    child_passes(|| {
        seccomp_on(
            libc::SYS_prctl as u32,
            Some(linux_raw_sys::prctl::PR_SET_SYSCALL_USER_DISPATCH),
            SECCOMP_RET_ERRNO | libc::EPERM as u32,
        );
        assert_eq!(kernel::probe(), Support::Refused(Errno::EPERM));
        let err = Engine::builder().install().map(drop).unwrap_err();
        assert_eq!(err, Error::RefusedByPolicy(Errno::EPERM));
        assert!(err.to_string().contains("seccomp"), "{err}");
        // Refusal leaves the process free to try again.
        assert_eq!(
            Engine::builder().install().map(drop).unwrap_err(),
            Error::RefusedByPolicy(Errno::EPERM)
        );
    });
}
