//! `Builder::program_owns_tls`: the engine inside a loader that hands the
//! process to a program with a libc (and `fs`) of its own. The trap path
//! must reach nothing through the engine's TLS: with `fs` pointing at
//! nothing, trapped calls still reach the hooks, and threads and forks
//! made while foreign are armed on a selector byte of their own.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use sud_engine::{selector, Engine, Selector, SyscallSet, Sysno, Verdict};

static SEEN: AtomicU64 = AtomicU64::new(0);

fn install() -> &'static Engine {
    Engine::builder()
        .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
        .pre_hook(|_| {
            SEEN.fetch_add(1, Relaxed);
            Verdict::Run
        })
        .program_owns_tls(true)
        .install()
        .expect("install")
}

/// A raw syscall with two arguments: no libc, no TLS.
fn raw2(nr: i64, a0: u64, a1: u64) -> i64 {
    let r: i64;
    // SAFETY: the callers pass calls that touch only what their arguments
    // name (arch_prctl on this thread's fs base, getppid).
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr => r,
            in("rdi") a0,
            in("rsi") a1,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        )
    };
    r
}

fn byte(engine: &Engine) -> &'static AtomicU8 {
    // SAFETY: the thread's selector byte lives in its thread block, which
    // is never unmapped.
    unsafe { &*engine.current_thread_selector() }
}

#[test]
fn the_selector_is_the_thread_blocks_byte() {
    child_passes(|| {
        let engine = install();
        let block = byte(engine);
        assert_ne!(
            block as *const AtomicU8 as usize,
            selector::selector_location().address,
            "not the thread-local byte"
        );
        block.store(Selector::Block as u8, Relaxed);
        raw2(libc::SYS_getppid, 0, 0);
        block.store(Selector::Allow as u8, Relaxed);
        assert_eq!(SEEN.load(Relaxed), 1);
        assert_eq!(selector::current(), Selector::Allow, "TLS byte untouched");
    });
}

#[test]
fn traps_with_fs_pointing_at_nothing_reach_the_hooks() {
    child_passes(|| {
        let engine = install();
        let block = byte(engine);
        let mut old_fs = 0u64;
        raw2(libc::SYS_arch_prctl, 0x1003, &mut old_fs as *mut u64 as u64);
        block.store(Selector::Block as u8, Relaxed);
        // Trapped and executed by the engine: from now on every trap runs
        // with fs 0, where any TLS access of the engine would fault.
        raw2(libc::SYS_arch_prctl, 0x1002, 0);
        for _ in 0..3 {
            raw2(libc::SYS_getppid, 0, 0);
        }
        raw2(libc::SYS_arch_prctl, 0x1002, old_fs);
        block.store(Selector::Allow as u8, Relaxed);
        assert_eq!(SEEN.load(Relaxed), 3);
    });
}

static THREAD_SEEN_TLS_ALLOW: AtomicU64 = AtomicU64::new(0);

extern "C" fn foreign_thread(_: *mut libc::c_void) -> *mut libc::c_void {
    // Its TLS selector says ALLOW (fresh TLS), yet its calls trap: the
    // thread runs on its block's byte, set to BLOCK before its first
    // instruction.
    if selector::current() == Selector::Allow {
        THREAD_SEEN_TLS_ALLOW.store(1, Relaxed);
    }
    raw2(libc::SYS_getppid, 0, 0);
    raw2(libc::SYS_getppid, 0, 0);
    std::ptr::null_mut()
}

#[test]
fn threads_and_forks_made_while_foreign_are_armed_on_their_own_byte() {
    child_passes(|| {
        let engine = install();
        let block = byte(engine);
        block.store(Selector::Block as u8, Relaxed);
        let mut thread: libc::pthread_t = 0;
        // SAFETY: a plain pthread with a function that takes no argument.
        let created = unsafe {
            libc::pthread_create(
                &mut thread,
                std::ptr::null(),
                foreign_thread,
                std::ptr::null_mut(),
            )
        };
        // SAFETY: joining the thread just created.
        let joined = unsafe { libc::pthread_join(thread, std::ptr::null_mut()) };
        // SAFETY: fork in a single-threaded child of the harness (the
        // thread has been joined); the grandchild only makes raw calls.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let before = SEEN.load(Relaxed);
            raw2(libc::SYS_getppid, 0, 0);
            let code = if SEEN.load(Relaxed) == before + 1 {
                0
            } else {
                1
            };
            // SAFETY: ends the grandchild at once.
            unsafe { libc::_exit(code) };
        }
        block.store(Selector::Allow as u8, Relaxed);
        assert_eq!((created, joined), (0, 0));
        assert_eq!(SEEN.load(Relaxed), 2, "the thread's two calls trapped");
        assert_eq!(THREAD_SEEN_TLS_ALLOW.load(Relaxed), 1);
        assert_eq!(wait_for(pid), Ended::Exited(0), "the forked child is armed");
    });
}
