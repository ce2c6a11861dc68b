//! The trap entrance: the SIGSYS handler, and the executor that knows which
//! syscalls cannot simply run inside a signal handler.
//!
//! Everything here runs in signal context, on the thread's engine stack
//! (see `thread`): see the rules in `dispatch`. The handler touches the
//! interrupted code's stack only where the program asked for it (a clone's
//! resume word below the red zone).

use crate::arch;
use crate::clone::{self, CloneRequest, CLONE_ARGS_WORDS, CLONE_SETTLS, CLONE_THREAD, CLONE_VM};
use crate::counters::Entrance;
use crate::dispatch::{dispatch, Execution, Executor};
use crate::engine::Engine;
use crate::hooks::Syscall;
use crate::selector::Selector;
use crate::sigaction::{SIGSET_SIZE, SIGSYS_BIT, UNBLOCKABLE};
use crate::sys::raw6;
use crate::thread::{self, ThreadState};
use crate::usermem::write_user;
use crate::{altstack, deliver, nested};
use std::sync::atomic::Ordering;
use syscalls::Sysno;

/// The SIGSYS fields of `siginfo_t` (the kernel's `_sigsys` union member).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct SigsysInfo {
    pub(crate) signo: i32,
    pub(crate) errno: i32,
    pub(crate) code: i32,
    _pad: i32,
    pub(crate) call_addr: usize,
    pub(crate) syscall: i32,
    pub(crate) arch: u32,
}

/// The SIGSYS handler: the trap entrance.
///
/// # Safety
/// Called by the kernel only, as an `SA_SIGINFO` handler.
pub(crate) unsafe extern "C" fn on_sigsys(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    let uc = ctx as *mut libc::ucontext_t;
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid siginfo;
    // it is copied out, so no reference to it lives on.
    let sigsys = unsafe { (info as *const SigsysInfo).read() };
    // SAFETY: `uc` is this handler's own context.
    let thread = unsafe { thread::in_handler(uc) };
    let Some(engine) = Engine::installed() else {
        return deliver::die_of_sigsys();
    };
    // Whatever runs now may make syscalls: host personality.
    let at_trap = thread.replace_selector(Selector::Allow as u8);
    if sigsys.code != crate::kernel::SYS_USER_DISPATCH {
        // SAFETY: the frame's own siginfo and context.
        unsafe { deliver::forward(engine, thread, sig, info, uc, at_trap) };
        thread.replace_selector(at_trap);
        return;
    }
    if Some(sigsys.call_addr) == engine.gadgets.vfork_return {
        // SAFETY: the frame's own context.
        unsafe { vfork_returned(engine, thread, uc) };
        thread.replace_selector(at_trap);
        return;
    }
    if sigsys.arch != arch::AUDIT_ARCH {
        // SAFETY: the frame's own context.
        unsafe { compat_syscall(engine, uc) };
        thread.replace_selector(at_trap);
        return;
    }
    // Hooks may call libc, which writes errno; the interrupted code must
    // find its errno unchanged. (`__errno_location` is an initial-exec TLS
    // access in libc: no allocation, no lock.)
    // With the program owning `fs` the slot is not ours to find, and the
    // hooks call no libc there (see `Builder::program_owns_tls`): a dummy
    // slot keeps one path.
    let mut no_errno = 0;
    let errno_slot = if thread::program_owns_tls() {
        &mut no_errno as *mut i32
    } else {
        // SAFETY: __errno_location returns this thread's errno slot, valid
        // for the thread's life.
        unsafe { libc::__errno_location() }
    };
    // SAFETY: as above (or a local of this frame).
    let saved_errno = unsafe { *errno_slot };

    // SAFETY: the frame's context, not otherwise accessed while `regs` lives.
    let regs = unsafe { arch::SyscallRegs::from_raw(uc) };
    let mut call = Syscall {
        nr: regs.nr(),
        args: regs.args(),
        call_addr: sigsys.call_addr as u64,
        tid: thread.armed_tid.get(),
        entrance: Entrance::Trap,
    };
    let mut exec = TrapExecutor {
        engine,
        uc,
        thread,
        resume_selector: at_trap,
        errno: (errno_slot, saved_errno),
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(rewriter) = &engine.rewriter {
        rewriter.on_trap(engine, call.call_addr, call.nr, call.args[0]);
    }
    if let Execution::Returned(value) = dispatch(&engine.core, thread, &mut call, &mut exec) {
        // SAFETY: as above.
        unsafe { arch::SyscallRegs::from_raw(uc) }.set_result(value);
    }

    // SAFETY: as above.
    unsafe { *errno_slot = saved_errno };
    thread.replace_selector(exec.resume_selector);
}

/// The parent of a vfork re-issued by [`TrapExecutor::reissue_vfork`]
/// trapped at the trap-back site once its child exec'd or exited, with the
/// call's result in rax: the post-hooks see it, and the parent resumes
/// where its vfork was, on its own stack.
///
/// # Safety
/// `uc` is the running handler's context.
unsafe fn vfork_returned(engine: &Engine, thread: &ThreadState, uc: *mut libc::ucontext_t) {
    // SAFETY: the caller's contract.
    let mut regs = unsafe { arch::SyscallRegs::from_raw(uc) };
    let (nr, args) = thread.vfork_call.get();
    let call = Syscall {
        nr,
        args,
        call_addr: thread.vfork_resume.get(),
        tid: thread.armed_tid.get(),
        entrance: Entrance::Trap,
    };
    let result = crate::sys::with_errno_kept(|| {
        crate::dispatch::complete(&engine.core, thread, &call, regs.nr() as i64)
    });
    regs.set_result(result);
    let sp = regs.sp();
    regs.set_sp(sp + CLONE_RESUME_BELOW_SP);
    regs.set_pc(call.call_addr);
    thread.lent_to_vfork_child.set(false);
}

#[cfg(target_arch = "x86_64")]
const CLONE_RESUME_BELOW_SP: u64 = arch::CLONE_RESUME_BELOW_SP;
#[cfg(target_arch = "aarch64")]
const CLONE_RESUME_BELOW_SP: u64 = 0;

/// A 32-bit `int 0x80` from a 64-bit process: its number and arguments
/// follow the i386 table, which the hooks (and their `Sysno`) do not speak.
/// It runs as it would natively, uncounted by number, unseen by hooks.
///
/// # Safety
/// `uc` is the running handler's context.
#[cfg(target_arch = "x86_64")]
unsafe fn compat_syscall(engine: &Engine, uc: *mut libc::ucontext_t) {
    engine.core.counters.compat();
    // SAFETY: the caller's contract.
    let g = unsafe { &mut *std::ptr::addr_of_mut!((*uc).uc_mcontext.gregs) };
    let r = |i: libc::c_int| g[i as usize] as u64;
    let mut eax = r(libc::REG_RAX) as u32 as u64;
    // SAFETY: `int 0x80` with the trapped i386 registers, issued with the
    // selector on ALLOW; it reads and writes only what the program's own
    // call would have (pointers are the program's, 32-bit).
    unsafe {
        std::arch::asm!(
            "push rbx", "push rbp",
            "mov ebx, {b:e}", "mov ebp, {bp:e}",
            "int 0x80",
            "pop rbp", "pop rbx",
            b = in(reg) r(libc::REG_RBX),
            bp = in(reg) r(libc::REG_RBP),
            inout("rax") eax,
            in("rcx") r(libc::REG_RCX),
            in("rdx") r(libc::REG_RDX),
            in("rsi") r(libc::REG_RSI),
            in("rdi") r(libc::REG_RDI),
            // Older kernels zero r8-r11 on a compat entry.
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        );
    }
    // int 0x80 returns in eax; the upper half is zeroed as the kernel does.
    g[libc::REG_RAX as usize] = eax as u32 as i64;
}

/// aarch64 has one syscall ABI; another `si_arch` cannot reach us.
#[cfg(target_arch = "aarch64")]
unsafe fn compat_syscall(engine: &Engine, _uc: *mut libc::ucontext_t) {
    engine.core.counters.compat();
}

/// Executes trapped syscalls. Most run right here; those whose effect is
/// tied to the interrupted context (the signal mask and alternate stack the
/// kernel restores from the frame, the stack the call returns on) are
/// emulated or re-issued.
struct TrapExecutor {
    engine: &'static Engine,
    uc: *mut libc::ucontext_t,
    thread: &'static ThreadState,
    /// The selector the interrupted code gets back.
    resume_selector: u8,
    /// The thread's errno slot and the interrupted code's value.
    errno: (*mut i32, i32),
}

impl Executor for TrapExecutor {
    fn execute(&mut self, call: &Syscall) -> Execution {
        if let Some(dispatched) = self.program_dispatches(call) {
            return dispatched;
        }
        let a = call.args;
        let done = Execution::Returned;
        match call.sysno() {
            Some(Sysno::prctl) if a[0] == nested::PR_SET_SYSCALL_USER_DISPATCH => {
                done(nested::prctl(self.thread, a))
            }
            Some(Sysno::prctl) if a[0] == libc::PR_SET_SECCOMP as u64 && a[1] == 1 => {
                done(self.entering_strict_mode(call.nr, a))
            }
            Some(Sysno::seccomp) if a[0] == 0 => done(self.entering_strict_mode(call.nr, a)),
            Some(Sysno::rt_sigreturn) => {
                // SAFETY: the frame's context.
                let sp = unsafe { arch::SyscallRegs::from_raw(self.uc) }.sp();
                if let Some(selector) = deliver::on_frame_return(self.thread, sp) {
                    self.resume_selector = selector;
                }
                // Only the excluded region may issue it while the selector
                // blocks: resume at our restorer, on the same stack.
                // SAFETY: as above.
                unsafe { arch::SyscallRegs::from_raw(self.uc) }
                    .set_pc(self.engine.gadgets.restorer as u64);
                Execution::Resumes
            }
            Some(Sysno::rt_sigprocmask) => done(self.sigprocmask(a)),
            Some(Sysno::rt_sigaction) => done(self.engine.sigaction(a)),
            Some(Sysno::sigaltstack) => {
                // SAFETY: the frame's context.
                let sp = unsafe { arch::SyscallRegs::from_raw(self.uc) }.sp();
                done(altstack::emulate(self.thread, a, sp))
            }
            Some(Sysno::rt_sigpending) => done(self.sigpending(call.nr, a)),
            Some(Sysno::rt_sigtimedwait) => done(self.sigtimedwait(call.nr, a)),
            Some(Sysno::rt_sigsuspend) => done(with_sigsys_unblocked(call.nr, a, 0)),
            Some(Sysno::ppoll) => done(with_sigsys_unblocked(call.nr, a, 3)),
            Some(Sysno::epoll_pwait) | Some(Sysno::epoll_pwait2) => {
                done(with_sigsys_unblocked(call.nr, a, 4))
            }
            Some(Sysno::pselect6) => done(pselect6(call.nr, a)),
            Some(sysno) if clone::is_clone_family(sysno) => {
                let mut clone3_copy = [0u64; CLONE_ARGS_WORDS];
                match clone::classify_clone(sysno, a, &mut clone3_copy) {
                    CloneRequest::NewStack { flags, stack_top } => {
                        self.reissue_clone(call, flags, stack_top)
                    }
                    CloneRequest::ForkLike {
                        nr,
                        args,
                        flags,
                        vfork,
                    } => match (vfork, self.engine.gadgets.vfork) {
                        (Some((nr, args)), Some(gadget)) => {
                            self.reissue_vfork(call, nr, args, gadget)
                        }
                        _ => self.fork_like(nr, args, flags),
                    },
                    CloneRequest::Fault => done(-(libc::EFAULT as i64)),
                }
            }
            Some(Sysno::execve | Sysno::execveat) => done(self.exec(call.nr, a)),
            Some(Sysno::exit | Sysno::exit_group) => done(self.leaving(call.nr, a)),
            _ => done(raw6(call.nr, a)),
        }
    }
}

impl TrapExecutor {
    /// The program's own Syscall User Dispatch (see `nested`): a call its
    /// configuration dispatches goes to its SIGSYS handler instead of
    /// running. Not the `rt_sigreturn` of frames the engine built (their
    /// restorer stands in for the program's, which a working program keeps
    /// from being dispatched).
    fn program_dispatches(&mut self, call: &Syscall) -> Option<Execution> {
        if self
            .engine
            .gadgets
            .app_restorer
            .is_some_and(|page| call.call_addr.wrapping_sub(page as u64) < 4096)
        {
            return None;
        }
        match nested::decide(self.thread, call.call_addr) {
            nested::Decision::Runs => None,
            nested::Decision::Kill(sig) => deliver::die_of(sig),
            nested::Decision::Dispatch => {
                let mut info = nested::siginfo(call.call_addr, call.nr);
                // The handler may never come back here: leave the hooks'
                // bookkeeping and errno as the program had them.
                self.thread.in_hook.set(u64::MAX);
                // SAFETY: the thread's own errno slot.
                unsafe { *self.errno.0 = self.errno.1 };
                // SAFETY: `info` is a siginfo of the kernel's size and
                // layout; the context is this handler's.
                unsafe {
                    deliver::forward(
                        self.engine,
                        self.thread,
                        libc::SIGSYS,
                        info.as_mut_ptr().cast(),
                        self.uc,
                        self.resume_selector,
                    )
                };
                Some(Execution::Resumes)
            }
        }
    }

    /// rt_sigprocmask: the kernel restores the frame's mask at sigreturn, so
    /// the call is applied to the frame (and SIGSYS stays unblocked, with
    /// the program's wish kept per thread).
    fn sigprocmask(&mut self, a: [u64; 6]) -> i64 {
        let [how, set, oldset, size, ..] = a;
        // `set` is read before `oldset` is written: they may be the same.
        let mut requested = None;
        if set != 0 {
            let mut word = [0u64];
            if size != SIGSET_SIZE || !crate::usermem::read_user(set, &mut word) {
                // Let the kernel give its own answer (EINVAL, EFAULT).
                return raw6(Sysno::rt_sigprocmask.id() as u64, a);
            }
            if !matches!(
                how as i32,
                libc::SIG_BLOCK | libc::SIG_UNBLOCK | libc::SIG_SETMASK
            ) {
                return -(libc::EINVAL as i64);
            }
            requested = Some(word[0]);
        } else if size != SIGSET_SIZE {
            return -(libc::EINVAL as i64);
        }
        let frame_mask = self.frame_mask();
        let app_old = if self.thread.app_blocks_sigsys.get() {
            frame_mask | SIGSYS_BIT
        } else {
            frame_mask & !SIGSYS_BIT
        };
        if oldset != 0 && !write_user(oldset, &[app_old]) {
            return -(libc::EFAULT as i64);
        }
        if let Some(requested) = requested {
            let new = match how as i32 {
                libc::SIG_BLOCK => app_old | requested,
                libc::SIG_UNBLOCK => app_old & !requested,
                _ => requested,
            } & !UNBLOCKABLE;
            let blocks = new & SIGSYS_BIT != 0;
            self.thread.app_blocks_sigsys.set(blocks);
            self.set_frame_mask(new & !SIGSYS_BIT);
            if !blocks && self.thread.app_sigsys_pending.replace(false) {
                deliver::raise_sigsys();
            }
        }
        0
    }

    /// Seccomp strict mode (`prctl(PR_SET_SECCOMP, 1)` or
    /// `seccomp(SECCOMP_SET_MODE_STRICT)`): the thread is marked, so that
    /// hooks can avoid calls that would now kill it (see
    /// [`crate::in_strict_mode`]).
    fn entering_strict_mode(&self, nr: u64, a: [u64; 6]) -> i64 {
        let r = raw6(nr, a);
        if r == 0 {
            self.thread.strict.set(true);
        }
        r
    }

    /// rt_sigpending: a SIGSYS the engine keeps pending for the program
    /// is part of the answer.
    fn sigpending(&self, nr: u64, a: [u64; 6]) -> i64 {
        let r = raw6(nr, a);
        let mut set = [0u64];
        if r == 0
            && self.thread.app_sigsys_pending.get()
            && crate::usermem::read_user(a[0], &mut set)
        {
            write_user(a[0], &[set[0] | SIGSYS_BIT]);
        }
        r
    }

    /// rt_sigtimedwait: a SIGSYS the engine keeps pending is taken, with
    /// its siginfo, as the kernel would take a pending signal; one that
    /// arrives during the wait interrupts it and is taken the same way.
    fn sigtimedwait(&self, nr: u64, a: [u64; 6]) -> i64 {
        let mut set = [0u64];
        let wants_sigsys =
            a[0] != 0 && crate::usermem::read_user(a[0], &mut set) && set[0] & SIGSYS_BIT != 0;
        let take = || {
            self.thread.app_sigsys_pending.set(false);
            if a[1] != 0 {
                write_user(a[1], &self.thread.app_sigsys_info.get());
            }
            libc::SIGSYS as i64
        };
        if wants_sigsys && self.thread.app_sigsys_pending.get() {
            return take();
        }
        let r = raw6(nr, a);
        if r == -(libc::EINTR as i64) && wants_sigsys && self.thread.app_sigsys_pending.get() {
            return take();
        }
        r
    }

    fn frame_mask(&self) -> u64 {
        // SAFETY: the kernel's ucontext holds the first 8 bytes of the mask
        // (all the kernel saves on x86-64 and aarch64).
        unsafe { (std::ptr::addr_of!((*self.uc).uc_sigmask) as *const u64).read_unaligned() }
    }

    fn set_frame_mask(&mut self, mask: u64) {
        // SAFETY: as in frame_mask; the frame is this handler's.
        unsafe { (std::ptr::addr_of_mut!((*self.uc).uc_sigmask) as *mut u64).write_unaligned(mask) }
    }

    /// execve: what the program set for SIGSYS (ignored, blocked) is what
    /// the next image must inherit, as a native exec would pass it on; the
    /// engine's own handler and unblocked SIGSYS come back if it fails.
    fn exec(&mut self, nr: u64, a: [u64; 6]) -> i64 {
        let app = self.engine.app_sigsys.load();
        let ignored = app.handler == libc::SIG_IGN;
        let blocked = self.thread.app_blocks_sigsys.get();
        if ignored {
            deliver::set_real_sigsys_ignored(true, self.engine);
        }
        if blocked {
            sigsys_mask(libc::SIG_BLOCK);
        }
        let r = self.leaving(nr, a);
        if ignored {
            deliver::set_real_sigsys_ignored(false, self.engine);
        }
        if blocked {
            sigsys_mask(libc::SIG_UNBLOCK);
        }
        r
    }

    /// A call after which this thread may never run the handler's epilogue
    /// (exit, or an execve that succeeds) runs with the selector back on
    /// BLOCK, from the excluded region. A vfork child (posix_spawn) shares
    /// its parent's selector: leaving it on ALLOW would leave the parent's
    /// syscalls uncaught once it resumes.
    fn leaving(&mut self, nr: u64, a: [u64; 6]) -> i64 {
        // A vfork child runs on its parent's state: that is not its to give
        // back. (No gettid to tell: a thread in seccomp strict mode may
        // make no other call than its exit.)
        if nr == Sysno::exit.id() as u64 && !self.thread.lent_to_vfork_child.get() {
            self.engine
                .core
                .counters
                .release_thread_block(&self.thread.counter_block);
            thread::retire(self.thread);
        }
        // SAFETY: `syscall6` is the engine's gadget with exactly this C
        // signature (see the arch crate), mapped executable for the
        // process's life; the call's own effects are the program's request.
        let syscall6: extern "C" fn(u64, u64, u64, u64, u64, u64, u64) -> i64 =
            unsafe { std::mem::transmute(self.engine.gadgets.syscall6) };
        // The call trapped, so the selector was BLOCK.
        self.thread
            .selector()
            .store(Selector::Block as u8, Ordering::Relaxed);
        let r = syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        self.thread
            .selector()
            .store(Selector::Allow as u8, Ordering::Relaxed);
        r
    }

    /// Runs a fork-like call here; the child (which shares nothing with the
    /// parent but a copy of memory) is armed again when the engine follows
    /// forks, since the kernel disarms every child.
    fn fork_like(&mut self, nr: u64, a: [u64; 6], flags: u64) -> Execution {
        let r = raw6(nr, a);
        if r == 0 {
            if flags & clone::CLONE_CLEAR_SIGHAND != 0 {
                self.engine.after_handlers_cleared();
            }
            self.engine.rearm_forked_child(self.thread);
        }
        Execution::Returned(r)
    }

    /// Re-issues a vfork at its site, through the vfork gadget: the child
    /// runs on its parent's stack while the parent waits, as natively. The
    /// child's words go below the red zone (see `clone_child_entry`; it
    /// resumes through the clone gadget's `ret 128`, which pops the resume
    /// address at the lowered stack pointer); the parent comes back through
    /// the trap-back site ([`vfork_returned`]).
    #[cfg(target_arch = "x86_64")]
    fn reissue_vfork(
        &mut self,
        call: &Syscall,
        nr: u64,
        args: [u64; 6],
        gadget: usize,
    ) -> Execution {
        // SAFETY: the frame's context.
        let mut regs = unsafe { arch::SyscallRegs::from_raw(self.uc) };
        let top = regs.sp() - arch::CLONE_RESUME_BELOW_SP;
        let ret128 = (self.engine.gadgets.clone + arch::CLONE_GADGET_RET_OFFSET) as u64;
        let written = if self.engine.follows_fork() {
            let arm = crate::engine::arm_clone_child_shared_tls as *const () as u64;
            write_user(top - 24, &[arm, ret128, arch::clone_child_entry() as u64])
        } else {
            write_user(top - 8, &[ret128])
        };
        if !written || !write_user(top, &[call.call_addr]) {
            return Execution::Returned(-(libc::EFAULT as i64));
        }
        self.thread.vfork_resume.set(call.call_addr);
        self.thread.vfork_call.set((nr, args));
        self.thread.lent_to_vfork_child.set(true);
        regs.set_sp(top);
        regs.set_nr(nr);
        regs.set_args(args);
        regs.set_pc(gadget as u64);
        Execution::Resumes
    }

    #[cfg(target_arch = "aarch64")]
    fn reissue_vfork(&mut self, _: &Syscall, _: u64, _: [u64; 6], _: usize) -> Execution {
        unreachable!("no vfork gadget on aarch64")
    }

    fn reissue_clone(&mut self, call: &Syscall, flags: u64, child_stack_top: u64) -> Execution {
        let resume = call.call_addr;
        if !self.prepare_child_stack(flags, child_stack_top, resume) {
            return Execution::Returned(-(libc::EFAULT as i64));
        }
        // SAFETY: the frame's context.
        let mut regs = unsafe { arch::SyscallRegs::from_raw(self.uc) };
        if !set_clone_resume(&mut regs, resume) {
            return Execution::Returned(-(libc::EFAULT as i64));
        }
        regs.set_nr(call.nr);
        regs.set_args(call.args);
        regs.set_pc(self.engine.gadgets.clone as u64);
        Execution::Resumes
    }

    /// Writes what the clone gadget's child path needs below the child's
    /// stack top: the child first runs the arch crate's `clone_child_entry`,
    /// which arms it (see `arm_clone_child_*`) before it resumes at
    /// `resume`; a new process the engine does not follow jumps straight to
    /// `resume`.
    fn prepare_child_stack(&self, flags: u64, child_stack_top: u64, resume: u64) -> bool {
        let new_process = flags & CLONE_THREAD == 0;
        let arm: Option<extern "C" fn()> = if new_process && !self.engine.follows_fork() {
            None
        } else if flags & CLONE_VM != 0 && flags & CLONE_SETTLS == 0 {
            Some(crate::engine::arm_clone_child_shared_tls)
        } else if flags & clone::CLONE_CLEAR_SIGHAND != 0 {
            Some(crate::engine::arm_clone_child_cleared_handlers)
        } else {
            Some(crate::engine::arm_clone_child_own_tls)
        };
        match arm {
            Some(arm) => {
                let words = [
                    arm as usize as u64,
                    resume,
                    arch::clone_child_entry() as u64,
                ];
                const _: () = assert!(arch::CLONE_CHILD_WORDS == 3);
                write_user(child_stack_top - 24, &words)
            }
            None => write_user(child_stack_top - 8, &[resume]),
        }
    }
}

/// Points the parent's path of the clone gadget at `resume`.
#[cfg(target_arch = "x86_64")]
fn set_clone_resume(regs: &mut arch::SyscallRegs<'_>, resume: u64) -> bool {
    let slot = regs.sp() - arch::CLONE_RESUME_BELOW_SP;
    if !write_user(slot, &[resume]) {
        return false;
    }
    regs.set_sp(slot);
    true
}

#[cfg(target_arch = "aarch64")]
fn set_clone_resume(regs: &mut arch::SyscallRegs<'_>, resume: u64) -> bool {
    regs.set_clone_resume(resume);
    true
}

/// Blocks or unblocks SIGSYS for real in the calling thread.
fn sigsys_mask(how: i32) {
    let bit = SIGSYS_BIT;
    raw6(
        Sysno::rt_sigprocmask.id() as u64,
        [how as u64, &bit as *const _ as u64, 0, SIGSET_SIZE, 0, 0],
    );
}

/// Runs a call whose argument `index` points to a temporary signal mask,
/// with SIGSYS removed from a copy of that mask.
fn with_sigsys_unblocked(nr: u64, mut a: [u64; 6], index: usize) -> i64 {
    let mut mask = [0u64];
    if a[index] != 0 && crate::usermem::read_user(a[index], &mut mask) {
        mask[0] &= !SIGSYS_BIT;
        a[index] = mask.as_ptr() as u64;
    }
    raw6(nr, a)
}

/// pselect6's sixth argument points to `{ const sigset_t *ss; size_t ss_len; }`.
fn pselect6(nr: u64, mut a: [u64; 6]) -> i64 {
    let mut pair = [0u64; 2];
    let mut mask = [0u64];
    if a[5] != 0
        && crate::usermem::read_user(a[5], &mut pair)
        && pair[0] != 0
        && crate::usermem::read_user(pair[0], &mut mask)
    {
        mask[0] &= !SIGSYS_BIT;
        pair[0] = mask.as_ptr() as u64;
        a[5] = pair.as_ptr() as u64;
    }
    raw6(nr, a)
}
