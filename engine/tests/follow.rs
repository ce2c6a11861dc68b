//! Following what foreign code creates: threads made by a trapped clone3
//! are armed before their first instruction, and signal handlers the
//! foreign code installs stay foreign even when the signal arrives while
//! the thread is on ALLOW.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use sud_engine::{selector, Engine, Selector, SyscallSet, Sysno, Verdict};

static GETPPID_SEEN: AtomicU64 = AtomicU64::new(0);

fn install(foreign_signal_handlers: bool) -> &'static Engine {
    Engine::builder()
        .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
        .pre_hook(|_| {
            GETPPID_SEEN.fetch_add(1, Relaxed);
            Verdict::Run
        })
        .foreign_signal_handlers(foreign_signal_handlers)
        .install()
        .expect("install")
}

fn getppid() {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::syscall(libc::SYS_getppid) };
}

static THREAD_ARMED: AtomicBool = AtomicBool::new(false);
static THREAD_BLOCKED: AtomicBool = AtomicBool::new(false);

extern "C" fn foreign_thread(_: *mut libc::c_void) -> *mut libc::c_void {
    let engine = Engine::installed().unwrap();
    THREAD_ARMED.store(engine.is_current_thread_armed(), Relaxed);
    THREAD_BLOCKED.store(selector::current() == Selector::Block, Relaxed);
    for _ in 0..3 {
        getppid();
    }
    std::ptr::null_mut()
}

#[test]
fn threads_made_by_foreign_code_are_armed_on_block() {
    child_passes(|| {
        install(false);
        let mut thread: libc::pthread_t = 0;
        {
            let _foreign = selector::enter(Selector::Block);
            // SAFETY: a plain pthread with a C entry point and no argument;
            // joined below. glibc creates it with clone3, which traps.
            let created = unsafe {
                libc::pthread_create(
                    &mut thread,
                    std::ptr::null(),
                    foreign_thread,
                    std::ptr::null_mut(),
                )
            };
            assert_eq!(created, 0);
            // SAFETY: joining the thread created above.
            assert_eq!(
                unsafe { libc::pthread_join(thread, std::ptr::null_mut()) },
                0
            );
        }
        assert!(THREAD_ARMED.load(Relaxed), "the new thread was not armed");
        assert!(
            THREAD_BLOCKED.load(Relaxed),
            "the new thread did not start on BLOCK"
        );
        assert_eq!(GETPPID_SEEN.load(Relaxed), 3);
        assert!(Engine::installed().unwrap().count(Sysno::clone3) >= 1);
    });
}

static HANDLER_SAW_BLOCK: AtomicBool = AtomicBool::new(false);
static HANDLER_RAN: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    HANDLER_RAN.store(true, Relaxed);
    HANDLER_SAW_BLOCK.store(selector::current() == Selector::Block, Relaxed);
    getppid();
}

/// Installs `on_usr1` for SIGUSR1 from foreign code (the call traps) and
/// returns what a later query reports as the handler.
fn install_handler_as_foreign_code() -> usize {
    let _foreign = selector::enter(Selector::Block);
    // SAFETY: sigaction with valid structs; on_usr1 is a plain handler.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_usr1 as *const () as usize;
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &act, std::ptr::null_mut()),
            0
        );
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, std::ptr::null(), &mut old),
            0
        );
        old.sa_sigaction
    }
}

#[test]
fn foreign_signal_handlers_run_on_block_even_from_allow() {
    child_passes(|| {
        install(true);
        let reported = install_handler_as_foreign_code();
        assert_eq!(
            reported, on_usr1 as *const () as usize,
            "the application must see its own handler"
        );
        // Delivered while this thread is on ALLOW (as during a hook).
        // SAFETY: raising a signal with a handler installed.
        unsafe { libc::raise(libc::SIGUSR1) };
        assert!(HANDLER_SAW_BLOCK.load(Relaxed), "the handler ran on ALLOW");
        assert_eq!(
            GETPPID_SEEN.load(Relaxed),
            1,
            "the handler's syscall was not caught"
        );
        assert_eq!(
            selector::current(),
            Selector::Allow,
            "the interrupted selector must come back"
        );
    });
}

#[test]
fn without_the_option_handlers_run_with_the_interrupted_selector() {
    child_passes(|| {
        install(false);
        install_handler_as_foreign_code();
        // SAFETY: as above.
        unsafe { libc::raise(libc::SIGUSR1) };
        assert!(HANDLER_RAN.load(Relaxed), "the handler never ran");
        assert!(!HANDLER_SAW_BLOCK.load(Relaxed));
        assert_eq!(GETPPID_SEEN.load(Relaxed), 0);
    });
}

/// `clone3` with `CLONE_VM | CLONE_VFORK` and a new stack, as posix_spawn
/// issues it, whose child exits at once with a raw `exit` syscall.
///
/// # Safety
/// `args` must point to a valid `clone_args` naming a fresh stack.
unsafe fn vfork_child_that_exits(args: &[u64; 11]) -> i64 {
    let ret: i64;
    // SAFETY: the parent only gets the syscall's result in rax (rcx and r11
    // are clobbered by `syscall`); the child runs on its own stack and
    // never returns from the asm block.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov eax, 60", // exit(0), in the child
            "xor edi, edi",
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args.as_ptr(),
            in("rsi") std::mem::size_of_val(args),
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[test]
fn a_vfork_child_leaving_keeps_its_parent_on_block() {
    child_passes(|| {
        install(false);
        let mut stack = vec![0u8; 64 * 1024];
        let top = (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15;
        let mut args = [0u64; 11];
        args[0] = (libc::CLONE_VM | libc::CLONE_VFORK) as u64;
        args[4] = libc::SIGCHLD as u64;
        args[5] = top - 32 * 1024;
        args[6] = 32 * 1024;
        let (child, still_blocked) = {
            let _foreign = selector::enter(Selector::Block);
            // SAFETY: args name a fresh 32 KiB stack inside `stack`.
            let child = unsafe { vfork_child_that_exits(&args) };
            (child, selector::current() == Selector::Block)
        };
        assert!(child > 0, "clone3 failed: {child}");
        // The child shared this thread's selector byte and exited from a
        // trapped call: it must not have left the byte on ALLOW.
        assert!(still_blocked, "the parent resumed on ALLOW");
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(
            unsafe { libc::waitpid(child as i32, &mut status, 0) },
            child as i32
        );
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        drop(stack);
    });
}
