//! Delivering signals to the program as the kernel would have delivered
//! them natively: the program's wrapped handlers, SIGSYS that did not come
//! from dispatch (seccomp's `RET_TRAP`, kill), and dying of SIGSYS.
//!
//! On x86-64 the program's handler is entered through a frame the engine
//! builds where the kernel would have put it for the program's own flags
//! and alternate stack (the kernel put the real one on the engine's stack):
//! the same `rt_sigframe` layout, siginfo, context and FPU state, with the
//! program's view of its alternate stack in `uc_stack` and of SIGSYS in
//! `uc_sigmask`. Its return address is a restorer outside the excluded
//! region whose bytes unwinders recognise (`mov rax, 15; syscall`), so
//! `backtrace()` and exceptions thrown from handlers cross the frame. That
//! `rt_sigreturn` traps (the handler runs on BLOCK): the engine then puts
//! its own stack back in the frame, takes the program's view out of it and
//! re-issues the call from its own restorer ([`on_frame_return`]).
//!
//! Everything here runs in signal context: see the rules in `dispatch`.

use crate::altstack;
use crate::engine::Engine;
use crate::selector::Selector;
use crate::sigaction::{
    KernelSigaction, APP_ACTIONS, SIGSET_SIZE, SIGSYS, SIGSYS_BIT, UNBLOCKABLE,
};
use crate::sys::{self, raw6};
#[cfg(target_arch = "x86_64")]
use crate::thread::AltStack;
use crate::thread::{self, ThreadState};
use crate::usermem::{read_user, write_user};
use syscalls::Sysno;

/// The flag the engine adds to the real action of a wrapped handler: on
/// x86-64 the wrapper runs on the engine's stack and moves the frame.
#[cfg(target_arch = "x86_64")]
pub(crate) const WRAPPER_STACK_FLAG: u64 = libc::SA_ONSTACK as u64;
/// On aarch64 the wrapper calls the handler where the kernel put the frame.
#[cfg(target_arch = "aarch64")]
pub(crate) const WRAPPER_STACK_FLAG: u64 = 0;

/// A code translator's part in delivery. A translator that runs foreign
/// code from a cache (sud-codegen's DBI) needs a signal that landed there to
/// show the handler the native state, to run the handler translated, and
/// to resume, at the frame's `rt_sigreturn`, wherever the handler left the
/// context in native terms. Both calls run in signal context (the rules of
/// hooks apply) with the selector on ALLOW, on frames the engine built for
/// a handler that runs on BLOCK (x86-64 only).
#[derive(Debug, Clone, Copy)]
pub struct FrameHooks {
    /// Called with the context of a frame just built for the program's
    /// handler (before it runs; it may rewrite the context), the handler's
    /// address and the frame's restorer (its return address, which must
    /// run native: its `rt_sigreturn` has to trap). Returns the address to
    /// enter the handler at. Not called for a signal that interrupted the
    /// engine itself.
    pub on_deliver: unsafe fn(uc: *mut libc::ucontext_t, handler: u64, restorer: u64) -> u64,
    /// Called at such a frame's `rt_sigreturn` with the context about to
    /// be restored (it may rewrite it).
    pub on_sigreturn: unsafe fn(uc: *mut libc::ucontext_t),
}

static FRAME_HOOKS: std::sync::atomic::AtomicPtr<FrameHooks> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// Registers the translator's [`FrameHooks`] (one per process; a later call
/// replaces them).
pub fn set_frame_hooks(hooks: &'static FrameHooks) {
    FRAME_HOOKS.store(
        hooks as *const FrameHooks as *mut FrameHooks,
        std::sync::atomic::Ordering::Release,
    );
}

fn frame_hooks() -> Option<&'static FrameHooks> {
    let ptr = FRAME_HOOKS.load(std::sync::atomic::Ordering::Acquire);
    // SAFETY: FRAME_HOOKS holds null or a `&'static FrameHooks`.
    unsafe { ptr.as_ref() }
}

/// Marks a frame the engine built (in the context's unused `__reserved1`
/// words, which the kernel neither fills nor reads): the low byte holds the
/// selector the interrupted code gets back.
const FRAME_MAGIC: u64 = 0x5355_4446_5241_4d00; // "SUDFRAM\0"

/// Runs every wrapped program handler. The handler is foreign code, but
/// the signal may have interrupted a hook, or a blocking call the engine was
/// executing for the thread, with the selector on ALLOW: without the
/// wrapper, the handler's syscalls would escape interception. It runs with
/// the selector on BLOCK; the interrupted value comes back at its
/// `rt_sigreturn` (a handler that jumps out instead lands in foreign code,
/// on BLOCK).
///
/// # Safety
/// Called by the kernel only, as an `SA_SIGINFO` handler.
pub(crate) unsafe extern "C" fn on_app_signal(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    let uc = ctx as *mut libc::ucontext_t;
    // SAFETY: the kernel passed this handler's own context.
    let thread = unsafe { thread::in_handler(uc) };
    let Some(act) = APP_ACTIONS.get(sig as usize).map(|a| a.load()) else {
        return;
    };
    if !act.is_handler() {
        // The action changed under a signal already on its way: the kernel
        // would have delivered to the old handler, which is gone; drop it.
        return;
    }
    if act.flags & libc::SA_RESETHAND as u64 != 0 {
        APP_ACTIONS[sig as usize].store(KernelSigaction::default());
    }
    let interrupted = thread.replace_selector(Selector::Allow as u8);
    // SAFETY: the kernel's siginfo for this delivery.
    unsafe { observe(thread, sig, info) };
    thread.replace_selector(Selector::Block as u8);
    // SAFETY: the frame's own siginfo and context.
    unsafe { enter_handler(thread, &act, sig, info, uc, interrupted) };
}

/// Shows a delivery to the signal hooks (with the selector on ALLOW).
///
/// # Safety
/// `info` points to a 128-byte siginfo.
unsafe fn observe(thread: &ThreadState, sig: libc::c_int, info: *const libc::siginfo_t) {
    let Some(engine) = Engine::installed() else {
        return;
    };
    // SAFETY: the caller's contract.
    let siginfo = unsafe { (info as *const [u64; 16]).read_unaligned() };
    let signal = crate::hooks::DeliveredSignal {
        signo: sig,
        code: (siginfo[1] & 0xffff_ffff) as i32,
        tid: thread.armed_tid.get(),
        siginfo,
    };
    crate::dispatch::observe_signal(&engine.core, thread, &signal);
}

/// A SIGSYS that did not come from dispatch: deliver it as the program's
/// virtual action says. seccomp's `RET_TRAP` is forced (blocked or ignored,
/// the process dies of it, as natively); one sent by kill, tgkill or
/// sigqueue is an ordinary signal: ignored, or kept pending while the
/// program blocks it.
///
/// # Safety
/// `info` and `uc` are the running SIGSYS handler's.
pub(crate) unsafe fn forward(
    engine: &Engine,
    thread: &ThreadState,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    uc: *mut libc::ucontext_t,
    interrupted: u8,
) {
    engine.core.counters.forwarded();
    // SAFETY: the caller's contract.
    let code = unsafe { (*info).si_code };
    let sent = code <= 0;
    let act = engine.app_sigsys.load();
    let blocked = thread.app_blocks_sigsys.get();
    if sent {
        if act.handler == libc::SIG_IGN {
            return;
        }
        if blocked {
            // SAFETY: the kernel's siginfo is 128 bytes.
            thread
                .app_sigsys_info
                .set(unsafe { (info as *const [u64; 16]).read_unaligned() });
            thread.app_sigsys_pending.set(true);
            return;
        }
    }
    if blocked || !act.is_handler() {
        // A forced SIGSYS that is blocked, ignored or defaulted, or a sent
        // one with the default action: the process dies of it.
        return die_of_sigsys();
    }
    if act.flags & libc::SA_RESETHAND as u64 != 0 {
        engine.app_sigsys.store(KernelSigaction::default());
    }
    // The program's sa_mask applies while its handler runs; the kernel
    // restores the frame's mask at its rt_sigreturn (or, for a handler
    // called from here, the call below).
    let extra = act.mask & !SIGSYS_BIT & !UNBLOCKABLE;
    let mut previous = 0u64;
    let sigprocmask = |how: i32, set: &u64, old: u64| {
        raw6(
            Sysno::rt_sigprocmask.id() as u64,
            [how as u64, set as *const _ as u64, old, SIGSET_SIZE, 0, 0],
        )
    };
    sigprocmask(libc::SIG_BLOCK, &extra, &mut previous as *mut _ as u64);
    // SAFETY: the caller's contract.
    unsafe { observe(thread, sig, info) };
    let handler_selector = if engine.foreign_signal_handlers {
        Selector::Block as u8
    } else {
        interrupted
    };
    thread.replace_selector(handler_selector);
    // SAFETY: the caller's contract.
    unsafe { enter_handler(thread, &act, sig, info, uc, interrupted) };
    thread.replace_selector(Selector::Allow as u8);
    sigprocmask(libc::SIG_SETMASK, &previous, 0);
}

/// Sends SIGSYS to the calling thread (a pending one the program just
/// unblocked). It arrives as soon as the call returns and takes the
/// `forward` path.
pub(crate) fn raise_sigsys() {
    let pid = raw6(Sysno::getpid.id() as u64, [0; 6]) as u64;
    raw6(
        Sysno::tgkill.id() as u64,
        [pid, sys::gettid() as u64, SIGSYS, 0, 0, 0],
    );
}

/// Makes the real SIGSYS action "ignore" (for an execve, whose next image
/// inherits an ignored signal) or the engine's handler again.
pub(crate) fn set_real_sigsys_ignored(ignored: bool, engine: &Engine) {
    if ignored {
        let ign = KernelSigaction {
            handler: libc::SIG_IGN,
            ..KernelSigaction::default()
        };
        raw6(
            Sysno::rt_sigaction.id() as u64,
            [SIGSYS, &ign as *const _ as u64, 0, SIGSET_SIZE, 0, 0],
        );
    } else {
        let _ = engine.reinstall_sigsys_handler();
    }
}

/// Dies of SIGSYS with the default action (core dump), as the kernel would.
pub(crate) fn die_of_sigsys() {
    die_of(libc::SIGSYS)
}

/// Dies of `sig` with its default action, as the kernel's forced exit
/// signals do.
pub(crate) fn die_of(sig: i32) -> ! {
    let sig = sig as u64;
    let dfl = KernelSigaction::default();
    let _ = sys::call(
        Sysno::rt_sigaction,
        [sig, &dfl as *const _ as u64, 0, SIGSET_SIZE, 0, 0],
    );
    let unblock = 1u64 << (sig - 1);
    let _ = sys::call(
        Sysno::rt_sigprocmask,
        [
            libc::SIG_UNBLOCK as u64,
            &unblock as *const _ as u64,
            0,
            SIGSET_SIZE,
            0,
            0,
        ],
    );
    let pid = raw6(Sysno::getpid.id() as u64, [0; 6]) as u64;
    raw6(
        Sysno::tgkill.id() as u64,
        [pid, sys::gettid() as u64, sig, 0, 0, 0],
    );
    let _ = sys::call(Sysno::exit_group, [128 + sig, 0, 0, 0, 0, 0]);
    unreachable!("exit_group returned")
}

/// A trapped `rt_sigreturn` whose frame (its context at `sp`, the return
/// address popped) is about to be restored: the program's view in it
/// becomes the thread's state again, and the real state the engine needs
/// goes into it: its own alternate stack (the kernel restores `uc_stack`
/// at sigreturn) and an unblocked SIGSYS. Returns the selector the
/// interrupted code must get back, for frames the engine built.
pub(crate) fn on_frame_return(thread: &ThreadState, sp: u64) -> Option<u8> {
    let mut stack = [0u64; 3];
    let mut mask = [0u64];
    let mut marker = [0u64];
    if !read_user(sp + off::STACK, &mut stack)
        || !read_user(sp + off::SIGMASK, &mut mask)
        || !read_user(sp + off::RESERVED, &mut marker)
    {
        // The kernel will fail this sigreturn with SIGSEGV itself.
        return None;
    }
    let ours = marker[0] & !0xff == FRAME_MAGIC;
    if ours {
        // The kernel's restore_altstack: ignored while on the current stack.
        if !thread.app_stack.get().contains(sp) {
            if let Ok(app) = altstack::validated(stack) {
                thread.app_stack.set(app);
            }
        }
        write_user(sp + off::RESERVED, &[0]);
        if let Some(hooks) = frame_hooks() {
            // SAFETY: `sp` is the context of a frame the engine built (its
            // marker is there), readable and writable (just read and
            // written), about to be restored by this rt_sigreturn.
            unsafe { (hooks.on_sigreturn)(sp as *mut libc::ucontext_t) };
        }
    }
    thread.app_blocks_sigsys.set(mask[0] & SIGSYS_BIT != 0);
    write_user(sp + off::SIGMASK, &[mask[0] & !SIGSYS_BIT]);
    if let Some(real) = thread.signal_stack() {
        write_user(sp + off::STACK, &[real.sp, 0, real.size]);
    }
    ours.then_some(marker[0] as u8)
}

/// Offsets in the kernel's `ucontext` (which glibc's `ucontext_t` begins with).
mod off {
    use std::mem::offset_of;
    pub(super) const STACK: u64 = offset_of!(libc::ucontext_t, uc_stack) as u64;
    pub(super) const SIGMASK: u64 = offset_of!(libc::ucontext_t, uc_sigmask) as u64;
    #[cfg(target_arch = "x86_64")]
    pub(super) const FPREGS: u64 = offset_of!(libc::ucontext_t, uc_mcontext.fpregs) as u64;
    /// x86-64: `__reserved1`, right after `fpregs`. aarch64: the tail of
    /// the 128-byte `uc_sigmask` the kernel pads (it uses 8 bytes).
    #[cfg(target_arch = "x86_64")]
    pub(super) const RESERVED: u64 = FPREGS + 8;
    #[cfg(target_arch = "aarch64")]
    pub(super) const RESERVED: u64 = SIGMASK + 120;
    #[cfg(target_arch = "x86_64")]
    pub(super) const RSP: u64 =
        (offset_of!(libc::ucontext_t, uc_mcontext.gregs) + 8 * libc::REG_RSP as usize) as u64;
}

/// Enters the program's handler `act` for `sig` as the kernel would have.
///
/// # Safety
/// `info` and `uc` are the running handler's frame.
#[cfg(target_arch = "x86_64")]
unsafe fn enter_handler(
    thread: &ThreadState,
    act: &KernelSigaction,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    uc: *mut libc::ucontext_t,
    interrupted: u8,
) {
    let Some(engine) = Engine::installed() else {
        return;
    };
    // The built frame returns through a restorer whose rt_sigreturn must
    // trap; a handler that runs on ALLOW (a host thread's, in a library
    // engine) is called from here instead.
    let runs_foreign =
        thread.selector().load(std::sync::atomic::Ordering::Relaxed) == Selector::Block as u8;
    let restorer = match engine.gadgets.app_restorer {
        Some(restorer) if runs_foreign => restorer,
        _ => {
            // SAFETY: the caller's contract.
            unsafe { call_app_handler(act, sig, info, uc.cast()) };
            thread.replace_selector(interrupted);
            return;
        }
    };
    let base = uc as u64;
    // SAFETY: the kernel's context holds the interrupted registers.
    let sp = unsafe { ((base + off::RSP) as *const u64).read() };
    let app = thread.app_stack.get();
    let onstack = act.flags & libc::SA_ONSTACK as u64 != 0 && app.is_enabled() && !app.contains(sp);
    // The signal interrupted the engine itself (a hook, or a blocking call
    // it runs for the program): its frames on the engine's stack are live.
    // Below everything live here: this function's frame and the frames of
    // the copies it makes below (a generous 4 KiB for those).
    let below_us = stack_pointer() - 4096;
    let engine_stack = thread.signal_stack();
    let nested = engine_stack.is_some_and(|s| s.contains(sp));
    // The kernel's get_sigframe: the top of the program's alternate stack,
    // or below the interrupted code's red zone; when that code is the
    // engine's, below this wrapper (the program cannot see the difference
    // in its own stack, only in the context, which is the engine's).
    let top = if onstack {
        app.sp + app.size
    } else if nested {
        below_us
    } else {
        sp - 128
    };
    // A handler that runs off the engine's stack while engine frames on it
    // are live must not have its traps delivered over them: the kernel's
    // stack shrinks to what lies below this wrapper until its sigreturn
    // puts the whole stack back (see `on_frame_return`).
    let shrunk = match engine_stack {
        Some(stack) if nested && onstack => Some(libc::stack_t {
            ss_sp: stack.sp as *mut libc::c_void,
            ss_flags: 0,
            ss_size: (below_us - stack.sp) as usize,
        }),
        _ => None,
    };

    // SAFETY: the frame's context; fpregs is null or points at the FPU
    // state the kernel saved on this frame.
    let fp_src = unsafe { ((base + off::FPREGS) as *const u64).read() };
    let fp_len = fpu_state_len(fp_src);
    let fp_dst = (top - fp_len) & !63;
    let frame = ((fp_dst - FRAME_LEN) & !15) - 8;
    let new_uc = frame + 8;
    let new_info = new_uc + KERNEL_UC_LEN;
    // SAFETY: the destination is where the kernel would have written this
    // frame for the program (its alternate stack, or below the red zone of
    // the interrupted stack; a bad stack faults here as the kernel's own
    // write would have faulted), or, for a signal that interrupted the
    // engine, the engine's stack 4 KiB below this function's frame, which
    // nothing live uses. The sources are this delivery's context, siginfo
    // (128 bytes) and FPU state, of the lengths the kernel wrote.
    unsafe {
        std::ptr::copy(base as *const u8, new_uc as *mut u8, KERNEL_UC_LEN as usize);
        std::ptr::copy(info as *const u8, new_info as *mut u8, SIGINFO_LEN as usize);
        if fp_src != 0 {
            std::ptr::copy(fp_src as *const u8, fp_dst as *mut u8, fp_len as usize);
        }
        ((new_uc + off::FPREGS) as *mut u64).write(if fp_src != 0 { fp_dst } else { 0 });
        ((new_uc + off::STACK) as *mut [u64; 3]).write_unaligned(altstack::in_frame(app));
        let mask = ((new_uc + off::SIGMASK) as *const u64).read_unaligned();
        let app_mask = if thread.app_blocks_sigsys.get() {
            mask | SIGSYS_BIT
        } else {
            mask
        };
        ((new_uc + off::SIGMASK) as *mut u64).write_unaligned(app_mask);
        ((new_uc + off::RESERVED) as *mut u64).write(FRAME_MAGIC | interrupted as u64);
        (frame as *mut u64).write(restorer as u64);
    }
    if onstack && app.flags & altstack::SS_AUTODISARM != 0 {
        thread.app_stack.set(AltStack::DISABLED);
    }
    if sig == libc::SIGSYS && act.flags & libc::SA_NODEFER as u64 == 0 {
        // Blocked for the program while its SIGSYS handler runs; the
        // frame's mask gives the interrupted view back at sigreturn.
        thread.app_blocks_sigsys.set(true);
    }
    let selector = thread.selector().as_ptr();
    let shrunk_ptr = shrunk
        .as_ref()
        .map_or(0, |ss| ss as *const libc::stack_t as u64);
    // The handler's selector (BLOCK) is stored only after the sigaltstack
    // call, which must run on ALLOW: it is issued off the engine's stack
    // (on the new frame), as the kernel refuses a change while on it.
    thread.replace_selector(Selector::Allow as u8);
    let handler = match frame_hooks() {
        // SAFETY: `new_uc` is the context of the frame just built (written
        // above), which nothing else uses until the handler runs.
        Some(hooks) if !nested => unsafe {
            (hooks.on_deliver)(
                new_uc as *mut libc::ucontext_t,
                act.handler as u64,
                restorer as u64,
            )
        },
        _ => act.handler as u64,
    };
    // SAFETY: jumps to the program's handler on the frame just built, with
    // the arguments of an SA_SIGINFO handler (a plain handler ignores the
    // extra two); it returns through the restorer in the frame, never
    // here. Abandoning this handler's frames is what a handler that
    // longjmps out of a signal does; they hold nothing to release (a
    // shrunk stack keeps the ones still live). `shrunk`, read by the
    // kernel before the jump, lives in this frame, below nothing the
    // handler writes (the handler's frame is above it or on another stack).
    unsafe {
        std::arch::asm!(
            "mov rsp, r9",
            "test rdi, rdi",
            "jz 2f",
            "mov eax, {sigaltstack}",
            "xor esi, esi",
            "syscall",
            "2:",
            "mov byte ptr [r8], {block}",
            "mov edi, r12d",
            "mov rsi, r13",
            "mov rdx, r14",
            "xor eax, eax",
            "jmp r15",
            sigaltstack = const libc::SYS_sigaltstack,
            in("r9") frame,
            in("r8") selector,
            block = const Selector::Block as u8,
            in("rdi") shrunk_ptr,
            in("r12") sig as i64,
            in("r13") new_info,
            in("r14") new_uc,
            in("r15") handler,
            options(noreturn)
        )
    }
}

/// The current stack pointer.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stack_pointer() -> u64 {
    let sp: u64;
    // SAFETY: reads rsp; no memory access, no side effect.
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    sp
}

/// aarch64: the handler is called from the wrapper, where the kernel put
/// the frame (on the interrupted stack).
#[cfg(target_arch = "aarch64")]
unsafe fn enter_handler(
    thread: &ThreadState,
    act: &KernelSigaction,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    uc: *mut libc::ucontext_t,
    interrupted: u8,
) {
    // SAFETY: the caller's contract.
    unsafe { call_app_handler(act, sig, info, uc.cast()) };
    thread.replace_selector(interrupted);
}

/// The kernel's `struct ucontext` on x86-64: up to the 8-byte signal mask.
#[cfg(target_arch = "x86_64")]
const KERNEL_UC_LEN: u64 = off::SIGMASK + 8;
#[cfg(target_arch = "x86_64")]
const SIGINFO_LEN: u64 = 128;
/// `struct rt_sigframe`: the return address, the context, the siginfo.
#[cfg(target_arch = "x86_64")]
const FRAME_LEN: u64 = 8 + KERNEL_UC_LEN + SIGINFO_LEN;

/// The length of the FPU state at `fp`: the extended (xsave) size the
/// kernel records in the software-reserved bytes, or the legacy 512.
#[cfg(target_arch = "x86_64")]
fn fpu_state_len(fp: u64) -> u64 {
    const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
    if fp == 0 {
        return 0;
    }
    // SAFETY: the kernel saved at least the 512-byte legacy area at `fp`;
    // bytes 464.. are its software-reserved words.
    let (magic, extended) = unsafe {
        (
            ((fp + 464) as *const u32).read(),
            ((fp + 468) as *const u32).read(),
        )
    };
    if magic == FP_XSTATE_MAGIC1 && extended >= 512 {
        u64::from(extended)
    } else {
        512
    }
}

/// Calls the program's handler from `act` from here: with siginfo and
/// context for an SA_SIGINFO handler, with the signal number alone
/// otherwise.
///
/// # Safety
/// `info` and `ctx` are the running handler's frame.
unsafe fn call_app_handler(
    act: &KernelSigaction,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    if act.flags & libc::SA_SIGINFO as u64 != 0 {
        // SAFETY: the program registered this address as an SA_SIGINFO
        // handler for `sig`; it gets this delivery's siginfo and context.
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(act.handler) };
        handler(sig, info, ctx);
    } else {
        // SAFETY: a plain handler the program registered for `sig`.
        let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(act.handler) };
        handler(sig);
    }
}
