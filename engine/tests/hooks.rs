//! What hooks can decide, the filter and the counters, through real
//! trapped syscalls.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use sud_engine::{
    errno_of, selector, Engine, Entrance, Errno, Selector, SyscallSet, Sysno, Verdict,
};

fn foreign<R>(f: impl FnOnce() -> R) -> R {
    let _foreign = selector::enter(Selector::Block);
    f()
}

#[test]
fn emulate_redirect_errno_and_post_hook_change() {
    child_passes(|| {
        let (redirect_r, redirect_w) = pipe();
        let (orig_r, orig_w) = pipe();
        static REDIRECT_TO: AtomicU64 = AtomicU64::new(0);
        static ORIG_FD: AtomicU64 = AtomicU64::new(0);
        REDIRECT_TO.store(redirect_w as u64, Relaxed);
        ORIG_FD.store(orig_w as u64, Relaxed);
        let engine = Engine::builder()
            .watch(SyscallSet::from_sysnos(&[
                Sysno::getpid,
                Sysno::write,
                Sysno::chdir,
                Sysno::getppid,
            ]))
            .pre_hook(|call| match call.sysno() {
                Some(Sysno::getpid) => Verdict::Return(4242),
                Some(Sysno::write) if call.args[0] == ORIG_FD.load(Relaxed) => {
                    let mut args = call.args;
                    args[0] = REDIRECT_TO.load(Relaxed);
                    Verdict::RunWith(args)
                }
                Some(Sysno::chdir) => Verdict::Fail(Errno::EACCES),
                _ => Verdict::Run,
            })
            .post_hook(|call, result| {
                if call.sysno() == Some(Sysno::getppid) {
                    *result += 1_000_000;
                }
            })
            .install()
            .unwrap();
        // SAFETY (all calls below): libc calls with valid arguments.
        let real_ppid = unsafe { libc::getppid() };
        let (pid, written, chdir, chdir_errno, ppid) = foreign(|| unsafe {
            let pid = libc::getpid();
            let written = libc::write(orig_w, b"hello".as_ptr().cast(), 5);
            let chdir = libc::chdir(c"/".as_ptr());
            let chdir_errno = *libc::__errno_location();
            (pid, written, chdir, chdir_errno, libc::getppid())
        });
        assert_eq!(pid, 4242, "emulated");
        assert_ne!(std::process::id(), 4242);
        assert_eq!(written, 5);
        assert_eq!(
            read_available(redirect_r),
            b"hello",
            "redirected to the other pipe"
        );
        // SAFETY: closing our own write end so the read below cannot block.
        unsafe { libc::close(orig_w) };
        assert_eq!(
            read_available(orig_r),
            b"",
            "nothing reached the original fd"
        );
        assert_eq!(
            (chdir, chdir_errno),
            (-1, libc::EACCES),
            "failed with the hook's errno"
        );
        assert_eq!(ppid, real_ppid + 1_000_000, "post-hook changed the result");
        assert_eq!(engine.count(Sysno::getpid), 1);
        assert_eq!(engine.count(Sysno::write), 1);
        assert_eq!(engine.count(Sysno::chdir), 1);
        assert_eq!(engine.count(Sysno::getppid), 1);
    });
}

#[test]
fn pre_hooks_run_in_order_and_see_earlier_changes() {
    child_passes(|| {
        static ORDER: AtomicU64 = AtomicU64::new(0);
        let engine = Engine::builder()
            .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
            .pre_hook(|call| {
                ORDER.store(ORDER.load(Relaxed) * 10 + 1, Relaxed);
                let mut args = call.args;
                args[0] = 99;
                Verdict::RunWith(args)
            })
            .pre_hook(|call| {
                ORDER.store(ORDER.load(Relaxed) * 10 + 2, Relaxed);
                Verdict::Return(call.args[0] as i64)
            })
            .pre_hook(|_| {
                ORDER.store(ORDER.load(Relaxed) * 10 + 3, Relaxed);
                Verdict::Run
            })
            .post_hook(|call, result| {
                assert_eq!(call.args[0], 99);
                *result *= 2;
            })
            .install()
            .unwrap();
        // SAFETY: getppid has no preconditions.
        let r = foreign(|| unsafe { libc::getppid() });
        assert_eq!(
            r, 198,
            "second hook returned the first hook's argument; post-hook doubled it"
        );
        assert_eq!(
            ORDER.load(Relaxed),
            12,
            "the third hook is skipped after Return"
        );
        assert_eq!(engine.counters().hooked, 1);
    });
}

#[test]
fn unwatched_syscalls_skip_the_hooks_but_are_counted_exactly() {
    child_passes(|| {
        static HOOK_CALLS: AtomicU64 = AtomicU64::new(0);
        let engine = Engine::builder()
            .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
            .pre_hook(|_| {
                HOOK_CALLS.fetch_add(1, Relaxed);
                Verdict::Run
            })
            .install()
            .unwrap();
        let before = engine.counters();
        // SAFETY: raw syscalls with no arguments and no preconditions.
        foreign(|| unsafe {
            for _ in 0..100 {
                libc::syscall(libc::SYS_getpid);
            }
            for _ in 0..7 {
                libc::syscall(libc::SYS_getppid);
            }
        });
        let after = engine.counters();
        assert_eq!(HOOK_CALLS.load(Relaxed), 7);
        assert_eq!(engine.count(Sysno::getpid), 100);
        assert_eq!(engine.count(Sysno::getppid), 7);
        assert_eq!(after.traps - before.traps, 107);
        assert_eq!(after.hooked - before.hooked, 7);
        assert_eq!(after.direct, 0);
        // Host code (selector ALLOW) does not trap at all.
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_getpid) };
        assert_eq!(engine.count(Sysno::getpid), 100);
    });
}

#[test]
fn unknown_numbers_reach_hooks_and_the_direct_entrance_counts_apart() {
    child_passes(|| {
        let engine = Engine::builder()
            .pre_hook(|call| match call.nr {
                0x3f0 => Verdict::Return(call.args[0] as i64 + call.args[5] as i64),
                _ => Verdict::Run,
            })
            .install()
            .unwrap();
        // SAFETY: an unknown syscall number; the hook answers it.
        let trapped = foreign(|| unsafe {
            libc::syscall(
                0x3f0,
                40 as libc::c_long,
                0 as libc::c_long,
                0 as libc::c_long,
                0 as libc::c_long,
                0 as libc::c_long,
                2 as libc::c_long,
            )
        });
        assert_eq!(trapped, 42);
        let direct = engine.dispatch_direct(0x3f0, [40, 0, 0, 0, 0, 2], 0);
        assert_eq!(direct, 42);
        let unknown = engine.dispatch_direct(0x3f1, [0; 6], 0);
        assert_eq!(errno_of(unknown), Some(Errno::ENOSYS));
        let c = engine.counters();
        assert_eq!((c.traps, c.direct), (1, 2));
        assert_eq!(engine.count_raw(0x3f0), 2);
    });
    let _ = Entrance::Direct;
}

#[test]
fn a_panicking_hook_aborts_with_a_message_naming_the_syscall() {
    let (r, w) = pipe();
    let ended = in_child(|| {
        no_core_dumps();
        // A hang (the default panic hook allocating inside malloc) fails
        // the test with SIGALRM instead of stalling it.
        // SAFETY: alarm has no preconditions.
        unsafe { libc::alarm(20) };
        // SAFETY: fd juggling in the child: stderr now goes to the pipe.
        unsafe {
            libc::dup2(w, 2);
            libc::close(r);
        }
        Engine::builder()
            .watch(SyscallSet::from_sysnos(&[Sysno::mmap]))
            .pre_hook(|call| {
                if call.args[1] >= 64 << 20 {
                    panic!("deliberate");
                }
                Verdict::Run
            })
            .install()
            .unwrap();
        // Another thread makes malloc take its locks for real (a process
        // that never had a second thread skips them); then a large
        // allocation calls mmap from inside malloc, with the arena locked.
        std::thread::spawn(|| ()).join().unwrap();
        let v = foreign(|| Vec::<u8>::with_capacity(64 << 20));
        std::hint::black_box(v);
    });
    // SAFETY: closing our copy of the write end so reading ends at EOF.
    unsafe { libc::close(w) };
    let mut out = Vec::new();
    loop {
        let chunk = read_available(r);
        if chunk.is_empty() {
            break;
        }
        out.extend(chunk);
    }
    let text = String::from_utf8_lossy(&out);
    assert_eq!(ended, Ended::Killed(libc::SIGABRT), "{text}");
    assert!(
        text.contains("hook panicked while handling syscall mmap (9)"),
        "{text}"
    );
}

static WORDS_MISMATCHES: AtomicU64 = AtomicU64::new(0);
static WORDS_SEEN: AtomicU64 = AtomicU64::new(0);

#[test]
fn hook_words_carry_a_value_from_pre_to_post_hook_per_thread() {
    child_passes(|| {
        Engine::builder()
            .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
            .pre_hook(|call| {
                sud_engine::hook_words(call)[0].set(call.tid as u64 + 1);
                Verdict::Run
            })
            .post_hook(|call, _| {
                WORDS_SEEN.fetch_add(1, Relaxed);
                if sud_engine::hook_words(call)[0].get() != call.tid as u64 + 1 {
                    WORDS_MISMATCHES.fetch_add(1, Relaxed);
                }
            })
            .install()
            .unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    Engine::installed()
                        .unwrap()
                        .arm_current_thread(Selector::Allow)
                        .unwrap();
                    for _ in 0..500 {
                        // SAFETY: getppid has no preconditions.
                        foreign(|| unsafe { libc::getppid() });
                    }
                });
            }
        });
        assert_eq!(WORDS_SEEN.load(Relaxed), 2000);
        assert_eq!(WORDS_MISMATCHES.load(Relaxed), 0);
    });
}
