//! `Dbi::follow_me` / `unfollow_me`: host code that calls `follow_me`
//! runs translated from its return on (loops, libc, syscalls by direct
//! call, a thread it spawns), with the same results as natively, and runs
//! natively again after `unfollow_me`.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use sud_codegen::dbi::Dbi;
use sud_engine::{Engine, Entrance, Verdict};

/// Syscalls that arrived by trap, other than the two that translated code
/// makes through the trap path on purpose (rt_sigaction, sigaltstack:
/// see the `signals` module of the DBI).
static UNEXPECTED_TRAPS: AtomicU64 = AtomicU64::new(0);
static LAST_UNEXPECTED: AtomicU64 = AtomicU64::new(u64::MAX);

fn engine() -> sud_engine::Builder {
    Engine::builder().pre_hook(|call| {
        let on_purpose = [libc::SYS_rt_sigaction, libc::SYS_sigaltstack];
        if call.entrance == Entrance::Trap && !on_purpose.contains(&(call.nr as i64)) {
            UNEXPECTED_TRAPS.fetch_add(1, Relaxed);
            LAST_UNEXPECTED.store(call.nr, Relaxed);
        }
        Verdict::Run
    })
}

/// Syscalls `work` makes: getpid, pipe2, write, read, close, close.
const WORK_SYSCALLS: u64 = 6;

/// A loop, libc formatting and a few syscalls, folded into one number.
#[inline(never)]
fn work(n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..black_box(n) {
        acc = acc.wrapping_mul(31).wrapping_add(i ^ (acc >> 7));
    }
    let mut text = [0u8; 64];
    // SAFETY: snprintf into a 64-byte buffer, a valid format and arguments.
    let len = unsafe {
        libc::snprintf(
            text.as_mut_ptr().cast(),
            text.len(),
            c"%lu/%d".as_ptr(),
            acc,
            7,
        )
    };
    // SAFETY: getpid has no preconditions; the pipe calls get valid buffers.
    unsafe {
        acc ^= libc::syscall(libc::SYS_getpid) as u64;
        let mut fds = [0; 2];
        assert_eq!(libc::syscall(libc::SYS_pipe2, fds.as_mut_ptr(), 0), 0);
        let wrote = libc::syscall(libc::SYS_write, fds[1], text.as_ptr(), len as usize);
        let mut back = [0u8; 64];
        let got = libc::syscall(libc::SYS_read, fds[0], back.as_mut_ptr(), back.len());
        libc::syscall(libc::SYS_close, fds[0]);
        libc::syscall(libc::SYS_close, fds[1]);
        acc = back[..got.max(0) as usize]
            .iter()
            .fold(acc ^ wrote as u64, |a, &b| {
                a.wrapping_mul(131).wrapping_add(b.into())
            });
    }
    acc
}

#[test]
fn code_after_follow_me_runs_translated_with_native_results() {
    before_fork();
    child_passes(|| {
        let native = work(100_000);
        let (engine, dbi) = Dbi::builder().install_with_engine(engine()).unwrap();
        let (e0, d0) = (engine.counters(), dbi.counters());
        dbi.follow_me().unwrap();
        let translated = work(100_000);
        let following = dbi.is_following();
        dbi.unfollow_me();
        let (e1, d1) = (engine.counters(), dbi.counters());
        assert_eq!(translated, native);
        assert!(following);
        assert!(!dbi.is_following());
        // Every syscall of `work` was a direct call from translated code.
        assert_eq!(e1.traps, e0.traps, "{e0:?} {e1:?}");
        assert!(e1.direct - e0.direct >= WORK_SYSCALLS, "{e0:?} {e1:?}");
        assert!(d1.blocks > d0.blocks, "{d1:?}");
        assert!(d1.direct_sites >= 1, "{d1:?}");
        assert_eq!(d1.native_blocks, 0, "{d1:?}");

        // Native again: the same work adds no blocks and no direct calls.
        let again = work(100_000);
        let (e2, d2) = (engine.counters(), dbi.counters());
        assert_eq!(again, native);
        assert_eq!(e2.direct, e1.direct, "{e1:?} {e2:?}");
        assert_eq!(d2.blocks, d1.blocks);
    });
}

#[test]
fn a_thread_spawned_while_followed_is_followed_from_its_start() {
    before_fork();
    child_passes(|| {
        let native = work(20_000);
        let (engine, dbi) = Dbi::builder().install_with_engine(engine()).unwrap();
        let e0 = engine.counters();
        dbi.follow_me().unwrap();
        let child = std::thread::spawn(move || (dbi.is_following(), work(20_000)));
        let joined = child.join();
        dbi.unfollow_me();
        let e1 = engine.counters();
        let (child_followed, child_result) = joined.unwrap();
        assert!(child_followed);
        assert_eq!(child_result, native);
        // The thread's syscalls (its work, its exit) were direct calls too,
        // but for the signal-stack calls std makes in every thread.
        assert_eq!(
            UNEXPECTED_TRAPS.load(Relaxed),
            0,
            "syscall {} trapped",
            LAST_UNEXPECTED.load(Relaxed)
        );
        assert!(e1.direct - e0.direct >= WORK_SYSCALLS, "{e0:?} {e1:?}");
    });
}

#[test]
fn follow_me_twice_is_once_and_unfollow_without_follow_does_nothing() {
    before_fork();
    child_passes(|| {
        let (_, dbi) = Dbi::builder().install_with_engine(engine()).unwrap();
        dbi.unfollow_me();
        assert!(!dbi.is_following());
        dbi.follow_me().unwrap();
        dbi.follow_me().unwrap();
        let inside = dbi.is_following();
        dbi.unfollow_me();
        assert!(inside);
        assert!(!dbi.is_following());
        assert_eq!(sud_engine::selector::current(), sud_engine::Selector::Allow);
    });
}

#[test]
fn a_followed_thread_that_blocks_every_signal_still_survives_its_traps() {
    before_fork();
    child_passes(|| {
        let (_, dbi) = Dbi::builder().install_with_engine(engine()).unwrap();
        dbi.follow_me().unwrap();
        // SAFETY: plain signal-mask and signal-action calls on valid locals.
        let (blocked, old_action) = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut before: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut before);
            // Goes through the trap path: fatal if SIGSYS were blocked.
            let mut old: libc::sigaction = std::mem::zeroed();
            let got = libc::sigaction(libc::SIGUSR2, std::ptr::null(), &mut old);
            let mut now: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_SETMASK, &before, &mut now);
            (libc::sigismember(&now, libc::SIGUSR1) == 1, got)
        };
        dbi.unfollow_me();
        assert!(blocked);
        assert_eq!(old_action, 0);
    });
}
