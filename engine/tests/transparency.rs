//! What a program must not be able to tell: the engine's stack use, its
//! alternate stack, the program's own alternate stack and signal masks,
//! SIGSYS sent by kill, 32-bit syscalls, vfork, CLONE_CLEAR_SIGHAND,
//! CLONE_VM children without TLS of their own, unwinding through signal
//! frames, and a handler that keeps changing while signals arrive.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use sud_engine::{selector, Engine, Selector, SyscallSet, Sysno, Verdict};

/// Runs `f` in the foreign personality (its syscalls trap).
fn foreign<R>(f: impl FnOnce() -> R) -> R {
    let _foreign = selector::enter(Selector::Block);
    f()
}

/// An engine like the preload's: every syscall of foreign code seen, the
/// program's handlers wrapped.
fn engine_with_wrapped_handlers() -> &'static Engine {
    Engine::builder()
        .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
        .pre_hook(|_| Verdict::Return(GETPPID_MARKER))
        .foreign_signal_handlers(true)
        .install()
        .unwrap()
}

/// Kills the child with SIGALRM after `secs`: a hang fails the test.
fn deadline(secs: u32) {
    // SAFETY: alarm has no preconditions; SIGALRM's default action kills.
    unsafe { libc::alarm(secs) };
}

fn sigaltstack_now() -> libc::stack_t {
    // SAFETY: querying into a zeroed stack_t.
    unsafe {
        let mut ss: libc::stack_t = std::mem::zeroed();
        assert_eq!(libc::sigaltstack(std::ptr::null(), &mut ss), 0);
        ss
    }
}

fn set_sigaltstack(sp: *mut u8, size: usize, flags: i32) -> i32 {
    let ss = libc::stack_t {
        ss_sp: sp.cast(),
        ss_flags: flags,
        ss_size: size,
    };
    // SAFETY: a stack_t naming memory the test owns (or disabling).
    if unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) } == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap()
    }
}

#[test]
fn a_trap_writes_nothing_below_the_red_zone_of_the_interrupted_stack() {
    child_passes(|| {
        engine_answering_getppid();
        const LEN: usize = 64 * 1024;
        let mut stack = vec![0xa5u8; LEN];
        let top = (stack.as_mut_ptr() as usize + LEN - 256) & !15;
        let ret = foreign(|| {
            let ret: i64;
            // SAFETY: runs one getppid on a stack of the test's own; rsp
            // is put back before the block ends, and rcx/r11 are declared.
            unsafe {
                std::arch::asm!(
                    "mov {saved}, rsp",
                    "mov rsp, {top}",
                    "syscall",
                    "mov rsp, {saved}",
                    saved = out(reg) _,
                    top = in(reg) top,
                    inlateout("rax") libc::SYS_getppid => ret,
                    lateout("rcx") _,
                    lateout("r11") _,
                );
            }
            ret
        });
        assert_eq!(ret, GETPPID_MARKER, "the call did not trap");
        let below = top - 128 - stack.as_ptr() as usize;
        let touched = stack[..below].iter().filter(|&&b| b != 0xa5).count();
        assert_eq!(
            touched, 0,
            "the trap wrote {touched} bytes below the red zone"
        );
    });
}

#[test]
fn the_programs_alternate_stack_is_what_it_set_and_the_engines_stays_underneath() {
    child_passes(|| {
        engine_answering_getppid();
        let mut mine = vec![0u8; 64 * 1024];
        let engines = foreign(|| {
            assert_eq!(set_sigaltstack(mine.as_mut_ptr(), mine.len(), 0), 0);
            let seen = sigaltstack_now();
            assert_eq!(seen.ss_sp as usize, mine.as_ptr() as usize);
            assert_eq!(seen.ss_size, mine.len());
            assert_eq!(seen.ss_flags, 0);
            assert_eq!(
                set_sigaltstack(mine.as_mut_ptr(), 1024, 0),
                libc::ENOMEM,
                "a stack below MINSIGSTKSZ"
            );
            assert_eq!(
                set_sigaltstack(mine.as_mut_ptr(), mine.len(), 0x4),
                libc::EINVAL,
                "an unknown mode"
            );
            assert_eq!(
                set_sigaltstack(std::ptr::null_mut(), 0, libc::SS_DISABLE),
                0
            );
            assert_eq!(sigaltstack_now().ss_flags, libc::SS_DISABLE);
            assert_eq!(set_sigaltstack(mine.as_mut_ptr(), mine.len(), 0), 0);
            // SAFETY: getppid has no preconditions; it traps like any call.
            assert_eq!(unsafe { libc::getppid() }, GETPPID_MARKER as i32);
            sigaltstack_now().ss_sp as usize
        });
        assert_eq!(engines, mine.as_ptr() as usize, "the program's view");
        let real = sigaltstack_now();
        assert_ne!(real.ss_sp as usize, mine.as_ptr() as usize);
        assert_eq!(
            real.ss_flags & libc::SS_DISABLE,
            0,
            "the engine's stack is gone"
        );
    });
}

static ONSTACK_SP: AtomicUsize = AtomicUsize::new(0);
static ONSTACK_FLAGS: AtomicUsize = AtomicUsize::new(0);
static ONSTACK_EPERM: AtomicBool = AtomicBool::new(false);
static ONSTACK_UC_SP: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_usr1_onstack(_: i32, _: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let here = 0u8;
    ONSTACK_SP.store(&here as *const u8 as usize, SeqCst);
    let seen = sigaltstack_now();
    ONSTACK_FLAGS.store(seen.ss_flags as usize, SeqCst);
    ONSTACK_EPERM.store(
        set_sigaltstack(seen.ss_sp.cast(), seen.ss_size, 0) == libc::EPERM,
        SeqCst,
    );
    // SAFETY: the kernel-style context of an SA_SIGINFO handler.
    let uc = unsafe { &*(uc as *const libc::ucontext_t) };
    ONSTACK_UC_SP.store(uc.uc_stack.ss_sp as usize, SeqCst);
}

#[test]
fn an_sa_onstack_handler_runs_on_the_programs_stack_which_reports_ss_onstack() {
    child_passes(|| {
        engine_with_wrapped_handlers();
        let mut mine = vec![0u8; 64 * 1024];
        let range = mine.as_ptr() as usize..mine.as_ptr() as usize + mine.len();
        let engines_before = sigaltstack_now();
        foreign(|| {
            assert_eq!(set_sigaltstack(mine.as_mut_ptr(), mine.len(), 0), 0);
            set_handler(
                libc::SIGUSR1,
                on_usr1_onstack as *const () as usize,
                libc::SA_SIGINFO | libc::SA_ONSTACK,
                false,
            );
            // SAFETY: raising a signal with a handler installed.
            unsafe { libc::raise(libc::SIGUSR1) };
        });
        assert!(
            range.contains(&ONSTACK_SP.load(SeqCst)),
            "the handler ran at {:#x}, not on its stack {range:x?}",
            ONSTACK_SP.load(SeqCst)
        );
        assert_eq!(ONSTACK_FLAGS.load(SeqCst), libc::SS_ONSTACK as usize);
        assert!(ONSTACK_EPERM.load(SeqCst), "changing it while on it");
        assert_eq!(ONSTACK_UC_SP.load(SeqCst), range.start, "uc_stack");
        let engines_after = sigaltstack_now();
        assert_eq!(
            engines_after.ss_sp, engines_before.ss_sp,
            "sigreturn kept ours"
        );
    });
}

extern "C" {
    fn backtrace(buffer: *mut *mut libc::c_void, size: libc::c_int) -> libc::c_int;
}

static FRAMES: AtomicUsize = AtomicUsize::new(0);
static REACHED_RAISER: AtomicBool = AtomicBool::new(false);
static RAISER: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_usr2_backtrace(_: i32) {
    let mut frames = [std::ptr::null_mut(); 32];
    // SAFETY: backtrace writes at most `len` pointers into the array.
    let n = unsafe { backtrace(frames.as_mut_ptr(), frames.len() as i32) };
    FRAMES.store(n as usize, SeqCst);
    let raiser = RAISER.load(SeqCst);
    let hit = frames[..n as usize]
        .iter()
        .any(|&f| (f as usize).wrapping_sub(raiser) < 256);
    REACHED_RAISER.store(hit, SeqCst);
}

#[inline(never)]
extern "C" fn raise_usr2() {
    // SAFETY: raising a signal with a handler installed.
    unsafe { libc::raise(libc::SIGUSR2) };
    std::hint::black_box(());
}

#[test]
fn backtrace_from_a_handler_crosses_the_signal_frame() {
    child_passes(|| {
        engine_with_wrapped_handlers();
        RAISER.store(raise_usr2 as *const () as usize, SeqCst);
        foreign(|| {
            set_handler(
                libc::SIGUSR2,
                on_usr2_backtrace as *const () as usize,
                0,
                false,
            );
            raise_usr2();
        });
        assert!(
            REACHED_RAISER.load(SeqCst),
            "backtrace stopped after {} frames, before the function that raised the signal",
            FRAMES.load(SeqCst)
        );
    });
}

static INSTALLS_DONE: AtomicBool = AtomicBool::new(false);
static DELIVERED: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_usr1(_: i32) {
    DELIVERED.fetch_add(1, SeqCst);
}

#[test]
fn reinstalling_a_handler_while_it_is_signalled_never_hangs() {
    child_passes(|| {
        engine_with_wrapped_handlers();
        deadline(30);
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() };
        foreign(|| set_handler(libc::SIGUSR1, count_usr1 as *const () as usize, 0, false));
        std::thread::scope(|s| {
            s.spawn(|| {
                while !INSTALLS_DONE.load(SeqCst) {
                    // SAFETY: signalling a live thread of this process.
                    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), me, libc::SIGUSR1) };
                }
            });
            foreign(|| {
                for i in 0..20_000 {
                    let flags = if i % 2 == 0 { 0 } else { libc::SA_RESTART };
                    set_handler(
                        libc::SIGUSR1,
                        count_usr1 as *const () as usize,
                        flags,
                        false,
                    );
                }
            });
            INSTALLS_DONE.store(true, SeqCst);
        });
        assert!(
            DELIVERED.load(SeqCst) > 0,
            "no signal arrived during the test"
        );
    });
}

#[test]
fn sigprocmask_reads_the_new_set_before_writing_the_old_one_into_the_same_place() {
    child_passes(|| {
        engine_answering_getppid();
        foreign(|| {
            // SAFETY: sigset operations on local sets.
            unsafe {
                let mut first: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut first);
                libc::sigaddset(&mut first, libc::SIGUSR1);
                assert_eq!(
                    libc::sigprocmask(libc::SIG_BLOCK, &first, std::ptr::null_mut()),
                    0
                );
                let mut both: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut both);
                libc::sigaddset(&mut both, libc::SIGUSR2);
                let p = &mut both as *mut libc::sigset_t;
                assert_eq!(libc::sigprocmask(libc::SIG_BLOCK, p, p), 0);
                assert_eq!(libc::sigismember(&both, libc::SIGUSR1), 1, "old mask");
                assert_eq!(libc::sigismember(&both, libc::SIGUSR2), 0, "old mask");
                let mut now: libc::sigset_t = std::mem::zeroed();
                assert_eq!(
                    libc::sigprocmask(libc::SIG_BLOCK, std::ptr::null(), &mut now),
                    0
                );
                assert_eq!(libc::sigismember(&now, libc::SIGUSR1), 1);
                assert_eq!(
                    libc::sigismember(&now, libc::SIGUSR2),
                    1,
                    "the new set was lost"
                );
            }
        });
    });
}

static SIGSYS_HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_sigsys(_: i32) {
    SIGSYS_HANDLED.fetch_add(1, SeqCst);
}

fn tgkill_self(sig: i32) {
    // SAFETY: signalling this very thread.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::gettid(), sig) };
}

#[test]
fn a_sigsys_sent_by_tgkill_is_ignored_or_kept_pending_as_the_program_asks() {
    child_passes(|| {
        engine_with_wrapped_handlers();
        foreign(|| {
            set_handler(libc::SIGSYS, libc::SIG_IGN, 0, false);
            tgkill_self(libc::SIGSYS);
            // Alive: an ignored SIGSYS from kill is dropped.
            set_handler(libc::SIGSYS, count_sigsys as *const () as usize, 0, false);
            // SAFETY: sigset operations on a local set.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGSYS);
                assert_eq!(
                    libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
                    0
                );
                tgkill_self(libc::SIGSYS);
                assert_eq!(SIGSYS_HANDLED.load(SeqCst), 0, "delivered while blocked");
                assert_eq!(
                    libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()),
                    0
                );
            }
            // SAFETY: getppid has no preconditions.
            unsafe { libc::getppid() };
        });
        assert_eq!(
            SIGSYS_HANDLED.load(SeqCst),
            1,
            "the pending SIGSYS was lost"
        );
    });
}

#[test]
fn int_0x80_runs_with_the_i386_table() {
    child_passes(|| {
        let engine = engine_answering_getppid();
        let pid = foreign(|| {
            let pid: u64;
            // SAFETY: i386 getpid (20) takes no arguments and touches no memory.
            unsafe {
                std::arch::asm!(
                    "int 0x80",
                    inlateout("rax") 20u64 => pid,
                    lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
                );
            }
            pid
        });
        // SAFETY: getpid has no preconditions.
        assert_eq!(pid as i32, unsafe { libc::getpid() });
        assert_eq!(engine.counters().compat, 1);
        assert_eq!(
            engine.count(Sysno::ioctl),
            0,
            "dispatched as x86-64 number 20"
        );
    });
}

static VFORK_CHILD_WROTE: AtomicU8 = AtomicU8::new(0);

#[test]
fn vfork_shares_memory_with_the_waiting_parent() {
    child_passes(|| {
        let engine = engine_answering_getppid();
        let flag = VFORK_CHILD_WROTE.as_ptr();
        let pid = foreign(|| {
            let pid: i64;
            // SAFETY: the child only stores one byte through `flag` (a
            // static) and exits with a raw syscall, touching no stack; the
            // parent gets the pid in rax, rcx/r11 clobbered.
            unsafe {
                std::arch::asm!(
                    "mov eax, 58",
                    "syscall",
                    "test rax, rax",
                    "jnz 2f",
                    "mov byte ptr [rdi], 1",
                    "mov eax, 60",
                    "xor edi, edi",
                    "syscall",
                    "ud2",
                    "2:",
                    in("rdi") flag,
                    out("rax") pid,
                    lateout("rcx") _,
                    lateout("r11") _,
                );
            }
            pid
        });
        assert!(pid > 0, "vfork failed: {pid}");
        assert_eq!(wait_for(pid as i32), Ended::Exited(0));
        assert_eq!(
            VFORK_CHILD_WROTE.load(SeqCst),
            1,
            "the child's write is not in the parent's memory: vfork ran as fork"
        );
        assert_eq!(engine.count(Sysno::vfork), 1);
    });
}

#[test]
fn a_child_made_with_clone_clear_sighand_keeps_being_dispatched() {
    child_passes(|| {
        engine_answering_getppid();
        // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, ...
        let args: [u64; 11] = [
            0x1_0000_0000, // CLONE_CLEAR_SIGHAND
            0,
            0,
            0,
            libc::SIGCHLD as u64,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        let pid = foreign(|| {
            // SAFETY: clone3 without a stack: a fork whose child returns here.
            let pid = unsafe {
                libc::syscall(
                    libc::SYS_clone3,
                    args.as_ptr(),
                    std::mem::size_of_val(&args),
                )
            };
            if pid == 0 {
                // SAFETY: getppid and _exit have no preconditions.
                unsafe {
                    let code = i32::from(libc::getppid() != GETPPID_MARKER as i32);
                    libc::_exit(code);
                }
            }
            pid
        });
        assert!(pid > 0, "clone3 failed: {pid}");
        assert_eq!(wait_for(pid as i32), Ended::Exited(0));
    });
}

#[test]
fn a_clone_vm_child_without_tls_of_its_own_has_its_own_selector() {
    child_passes(|| {
        let engine = engine_answering_getppid();
        const CALLS: u64 = 20_000;
        let mut stack = vec![0u8; 64 * 1024];
        let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
        let flags = (libc::CLONE_VM | libc::SIGCHLD) as u64;
        let pid = foreign(|| {
            let pid: i64;
            // SAFETY: clone with a fresh stack; the child loops on raw
            // getppid calls, then exits, touching no memory of the parent.
            unsafe {
                std::arch::asm!(
                    "syscall",
                    "test rax, rax",
                    "jnz 3f",
                    "2:",
                    "mov eax, 110",
                    "syscall",
                    "dec r12",
                    "jnz 2b",
                    "mov eax, 60",
                    "xor edi, edi",
                    "syscall",
                    "ud2",
                    "3:",
                    inlateout("rax") libc::SYS_clone => pid,
                    in("rdi") flags,
                    in("rsi") top,
                    in("rdx") 0,
                    in("r10") 0,
                    in("r8") 0,
                    in("r12") CALLS,
                    lateout("rcx") _,
                    lateout("r11") _,
                );
            }
            for _ in 0..CALLS {
                // SAFETY: getppid has no preconditions.
                unsafe { libc::getppid() };
            }
            pid
        });
        assert!(pid > 0, "clone failed: {pid}");
        assert_eq!(wait_for(pid as i32), Ended::Exited(0));
        assert_eq!(
            engine.count(Sysno::getppid),
            2 * CALLS,
            "calls escaped: the two shared one selector"
        );
        drop(stack);
    });
}

static SUD_SIGNALS: AtomicU64 = AtomicU64::new(0);
static SUD_FIELDS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// The program's own SUD handler: records what the kernel would tell it and
/// emulates the call by answering 4242.
extern "C" fn on_own_sigsys(_: i32, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    SUD_SIGNALS.fetch_add(1, SeqCst);
    // SAFETY: an SA_SIGINFO handler's siginfo: si_code at 8, then the
    // _sigsys member (call address, syscall, arch).
    unsafe {
        let words = info as *const u64;
        SUD_FIELDS[0].store(*(info as *const i32).add(2) as u64, SeqCst);
        SUD_FIELDS[1].store(*words.add(2), SeqCst);
        SUD_FIELDS[2].store(*words.add(3) & 0xffff_ffff, SeqCst);
        SUD_FIELDS[3].store(*words.add(3) >> 32, SeqCst);
        let uc = &mut *(uc as *mut libc::ucontext_t);
        uc.uc_mcontext.gregs[libc::REG_RAX as usize] = 4242;
    }
}

fn own_prctl(mode: u64, offset: u64, len: u64, selector: u64) -> i64 {
    // SAFETY: prctl with integer arguments; the selector is the test's byte.
    unsafe { libc::syscall(libc::SYS_prctl, 59, mode, offset, len, selector) }
}

#[test]
fn a_program_that_uses_syscall_user_dispatch_itself_gets_its_own_sigsys() {
    child_passes(|| {
        let engine = engine_with_wrapped_handlers();
        let own_selector = AtomicU8::new(1);
        let sel = own_selector.as_ptr() as u64;
        let code = CodePages::new(1);
        code.write(code.base, &syscall_stub(libc::SYS_getpid as u32));
        // SAFETY: getpid has no preconditions.
        let pid = i64::from(unsafe { libc::getpid() });
        // While its own dispatch is on, a failed assertion could not even
        // print (its write would go to the handler): results are checked
        // after it is off.
        let seen = foreign(|| {
            set_handler(
                libc::SIGSYS,
                on_own_sigsys as *const () as usize,
                libc::SA_SIGINFO,
                false,
            );
            [
                own_prctl(1, 3, u64::MAX, sel),
                own_prctl(0, 1, 0, 0),
                // Exclusive, nothing excluded: every call is dispatched
                // while its selector says BLOCK (this prctl itself ran).
                own_prctl(1, 0, 0, sel),
                call_code(code.base),
                {
                    own_selector.store(0, SeqCst);
                    call_code(code.base)
                },
                // Inclusive over the code page: only calls from there
                // dispatch (the prctl runs: the selector says ALLOW).
                own_prctl(2, code.base as u64, 4096, sel),
                {
                    own_selector.store(1, SeqCst);
                    // SAFETY: getpid has no preconditions; issued from libc.
                    i64::from(unsafe { libc::getpid() })
                },
                call_code(code.base),
                {
                    own_selector.store(0, SeqCst);
                    own_prctl(0, 0, 0, 0)
                },
            ]
        });
        assert_eq!(
            seen,
            [-1, -1, 0, 4242, pid, 0, pid, 4242, 0],
            "bad range, OFF with arguments, exclusive on, dispatched, allowed, \
             inclusive on, outside the range, inside it, off"
        );
        assert_eq!(SUD_SIGNALS.load(SeqCst), 2);
        assert_eq!(SUD_FIELDS[0].load(SeqCst), 2, "si_code SYS_USER_DISPATCH");
        let after_syscall = (code.base + STUB_AFTER_SYSCALL) as u64;
        assert_eq!(SUD_FIELDS[1].load(SeqCst), after_syscall, "si_call_addr");
        assert_eq!(
            SUD_FIELDS[2].load(SeqCst),
            libc::SYS_getpid as u64,
            "si_syscall"
        );
        assert_eq!(SUD_FIELDS[3].load(SeqCst), 0xC000_003E, "si_arch");
        assert!(
            engine.count(Sysno::getpid) >= 4,
            "the engine's hooks saw them all"
        );
    });
}

static SECCOMP_HANDLER_SAW: AtomicU8 = AtomicU8::new(0xff);

extern "C" fn on_seccomp_trap(_: i32) {
    SECCOMP_HANDLER_SAW.store(selector::current() as u8, SeqCst);
}

#[test]
fn the_engine_works_inside_a_seccomp_sandbox_that_refuses_its_helper_calls() {
    child_passes(|| {
        engine_with_wrapped_handlers();
        // A whitelist sandbox without process_vm_readv/writev, as `man`
        // gives `col`: the engine's copies of sigaction structs must not
        // depend on them.
        seccomp_on(
            libc::SYS_process_vm_readv as u32,
            None,
            SECCOMP_RET_ERRNO | libc::EPERM as u32,
        );
        seccomp_on(
            libc::SYS_process_vm_writev as u32,
            None,
            SECCOMP_RET_ERRNO | libc::EPERM as u32,
        );
        let old = foreign(|| {
            set_handler(libc::SIGUSR1, count_usr1 as *const () as usize, 0, false);
            set_handler(libc::SIGUSR1, count_usr1 as *const () as usize, 0, false)
        });
        assert_eq!(old.sa_sigaction, count_usr1 as *const () as usize);
        foreign(|| tgkill_self(libc::SIGUSR1));
        assert_eq!(DELIVERED.load(SeqCst), 1);
    });
}

#[test]
fn a_seccomp_trap_handler_runs_foreign_on_the_programs_selector() {
    child_passes(|| {
        engine_with_wrapped_handlers();
        foreign(|| {
            set_handler(
                libc::SIGSYS,
                on_seccomp_trap as *const () as usize,
                0,
                false,
            )
        });
        seccomp_on(
            libc::SYS_getpgid as u32,
            Some(4242),
            0x0003_0000, /* RET_TRAP */
        );
        let r = foreign(|| {
            // SAFETY: getpgid with a pid that the filter traps on.
            unsafe { libc::syscall(libc::SYS_getpgid, 4242) }
        });
        // RET_TRAP skips the call and rolls rax back to its number.
        assert_eq!(r, libc::SYS_getpgid, "a RET_TRAP call does not run");
        assert_eq!(
            SECCOMP_HANDLER_SAW.load(SeqCst),
            Selector::Block as u8,
            "the program's seccomp handler ran in the host personality"
        );
    });
}

static SAW_STRICT: AtomicU64 = AtomicU64::new(0);

#[test]
fn hooks_know_when_the_thread_is_in_seccomp_strict_mode() {
    let ended = in_child(|| {
        Engine::builder()
            .watch(SyscallSet::from_sysnos(&[Sysno::write]))
            .pre_hook(|call| {
                let bit = if sud_engine::in_strict_mode(call) {
                    2
                } else {
                    1
                };
                SAW_STRICT.fetch_or(bit, SeqCst);
                Verdict::Run
            })
            .install()
            .unwrap();
        foreign(|| {
            // SAFETY: writes of nothing to an invalid descriptor, strict
            // mode, and a raw exit (the only way out it leaves).
            unsafe {
                libc::write(-1, std::ptr::null(), 0);
                libc::prctl(libc::PR_SET_SECCOMP, 1);
                libc::write(-1, std::ptr::null(), 0);
                libc::syscall(libc::SYS_exit, SAW_STRICT.load(SeqCst) as i64);
            }
        });
    });
    assert_eq!(
        ended,
        Ended::Exited(3),
        "before (1) and after (2) strict mode"
    );
}

static OBSERVED: AtomicU64 = AtomicU64::new(0);

#[test]
fn signal_hooks_see_each_delivery_to_a_program_handler_before_it_runs() {
    child_passes(|| {
        Engine::builder()
            .foreign_signal_handlers(true)
            .signal_hook(|signal| {
                // The handler has not run yet; the code is tgkill's.
                if signal.signo == libc::SIGUSR1
                    && signal.code == libc::SI_TKILL
                    && DELIVERED.load(SeqCst) == OBSERVED.load(SeqCst)
                {
                    OBSERVED.fetch_add(1, SeqCst);
                }
            })
            .install()
            .unwrap();
        foreign(|| {
            set_handler(libc::SIGUSR1, count_usr1 as *const () as usize, 0, false);
            for _ in 0..3 {
                tgkill_self(libc::SIGUSR1);
            }
        });
        assert_eq!(DELIVERED.load(SeqCst), 3);
        assert_eq!(OBSERVED.load(SeqCst), 3);
    });
}

#[test]
fn an_actions_mask_reads_back_without_sigkill_and_sigstop_as_the_kernel_keeps_it() {
    child_passes(|| {
        engine_with_wrapped_handlers();
        let old = foreign(|| {
            set_handler(libc::SIGUSR1, count_usr1 as *const () as usize, 0, true);
            set_handler(libc::SIGUSR1, count_usr1 as *const () as usize, 0, true)
        });
        // SAFETY: sigismember on a sigset the kernel (or engine) filled.
        unsafe {
            assert_eq!(libc::sigismember(&old.sa_mask, libc::SIGKILL), 0);
            assert_eq!(libc::sigismember(&old.sa_mask, libc::SIGSTOP), 0);
            assert_eq!(libc::sigismember(&old.sa_mask, libc::SIGTERM), 1);
        }
    });
}
