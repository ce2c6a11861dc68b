//! SIGSYS: the trap entrance of the dispatch core, the executor that knows
//! which syscalls cannot simply run inside a signal handler, and the
//! virtual SIGSYS state that keeps the application from breaking
//! interception (a blocked or replaced SIGSYS would kill or silence it).
//!
//! Everything here runs in signal context: see the rules in `dispatch`.

use crate::arch;
use crate::counters::Entrance;
use crate::dispatch::{dispatch, Execution, Executor};
use crate::engine::Engine;
use crate::hooks::Syscall;
use crate::selector::{with_thread, Selector, ThreadState};
use crate::sys::{self, raw6};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use syscalls::{Errno, Sysno};

/// `si_code` of a SIGSYS raised by Syscall User Dispatch.
pub(crate) const SYS_USER_DISPATCH: i32 = 2;

const SIGSYS: u64 = libc::SIGSYS as u64;
const SIGSYS_BIT: u64 = 1 << (SIGSYS - 1);
const UNBLOCKABLE: u64 = (1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1));
const SIGSET_SIZE: u64 = 8;

/// The kernel's `struct sigaction` (not glibc's): handler, flags, restorer, mask.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KernelSigaction {
    pub(crate) handler: usize,
    pub(crate) flags: u64,
    pub(crate) restorer: usize,
    pub(crate) mask: u64,
}

const _: () = assert!(
    std::mem::size_of::<KernelSigaction>()
        == std::mem::size_of::<linux_raw_sys::general::kernel_sigaction>()
);

/// The SIGSYS fields of `siginfo_t` (the kernel's `_sigsys` union member).
#[repr(C)]
struct SigsysInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    call_addr: usize,
    syscall: i32,
    arch: u32,
}

/// Installs `on_sigsys` for SIGSYS with the raw syscall, so the restorer is
/// ours (in the excluded region) rather than glibc's `__restore_rt`, whose
/// `rt_sigreturn` would itself trap. Returns the previous action.
pub(crate) fn install_handler(restorer: usize) -> Result<KernelSigaction, Errno> {
    let act = KernelSigaction {
        handler: on_sigsys as *const () as usize,
        // SA_NODEFER: a seccomp SIGSYS raised by a hook's own syscall must
        // reach the application, not find SIGSYS blocked (forced and
        // blocked means death). No SA_ONSTACK: alternate stacks are small
        // (Rust's own guard-page handler stack is a few KiB) and hooks may
        // run deep, so the handler runs on the interrupted stack, below its
        // red zone, like any signal handler.
        flags: (libc::SA_SIGINFO | libc::SA_NODEFER) as u64
            | linux_raw_sys::general::SA_RESTORER as u64,
        restorer,
        mask: 0,
    };
    let mut old = KernelSigaction::default();
    sys::call(
        Sysno::rt_sigaction,
        [
            SIGSYS,
            &act as *const _ as u64,
            &mut old as *mut _ as u64,
            SIGSET_SIZE,
            0,
            0,
        ],
    )?;
    Ok(old)
}

/// The application's SIGSYS action, kept virtually. A seqlock: readers
/// (the forwarding path) retry while a write is in flight; writers make no
/// syscall while holding it, so a reader on the writer's own thread cannot
/// interrupt it.
pub(crate) struct VirtualSigaction {
    seq: AtomicU32,
    fields: [AtomicU64; 4],
}

impl VirtualSigaction {
    pub(crate) const fn new() -> Self {
        VirtualSigaction {
            seq: AtomicU32::new(0),
            fields: [const { AtomicU64::new(0) }; 4],
        }
    }

    pub(crate) fn load(&self) -> KernelSigaction {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let f: [u64; 4] = std::array::from_fn(|i| self.fields[i].load(Ordering::Relaxed));
            std::sync::atomic::fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return KernelSigaction {
                    handler: f[0] as usize,
                    flags: f[1],
                    restorer: f[2] as usize,
                    mask: f[3],
                };
            }
        }
    }

    pub(crate) fn store(&self, act: KernelSigaction) {
        loop {
            let seq = self.seq.load(Ordering::Relaxed);
            if seq % 2 == 0
                && self
                    .seq
                    .compare_exchange_weak(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break;
            }
            std::hint::spin_loop();
        }
        let f = [act.handler as u64, act.flags, act.restorer as u64, act.mask];
        for (slot, value) in self.fields.iter().zip(f) {
            slot.store(value, Ordering::Relaxed);
        }
        self.seq.fetch_add(1, Ordering::Release);
    }
}

/// The SIGSYS handler: the trap entrance.
///
/// # Safety
/// Called by the kernel only, as an `SA_SIGINFO` handler.
unsafe extern "C" fn on_sigsys(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid siginfo
    // and ucontext on the signal frame; both outlive this call and nothing
    // else references them while it runs.
    let (sigsys, uc) = unsafe {
        (
            &*(info as *const SigsysInfo),
            &mut *(ctx as *mut libc::ucontext_t),
        )
    };
    let Some(engine) = Engine::installed() else {
        return die_of_sigsys();
    };
    if sigsys.code != SYS_USER_DISPATCH {
        return forward(engine, sig, info, ctx);
    }
    with_thread(|thread| {
        // Hooks may make syscalls: run them in the host personality.
        let at_trap = thread.replace_selector(Selector::Allow as u8);
        // Hooks may call libc, which writes errno; the interrupted code must
        // find its errno unchanged.
        // SAFETY: __errno_location returns this thread's errno slot, valid
        // for the thread's life.
        let errno_slot = unsafe { libc::__errno_location() };
        // SAFETY: as above.
        let saved_errno = unsafe { *errno_slot };

        let regs = arch::SyscallRegs::new(uc);
        let mut call = Syscall {
            nr: regs.nr(),
            args: regs.args(),
            call_addr: sigsys.call_addr as u64,
            tid: thread.armed_tid.get(),
            entrance: Entrance::Trap,
        };
        let mut exec = TrapExecutor { engine, uc, thread };
        if let Execution::Returned(value) = dispatch(engine, &mut call, &mut exec) {
            arch::SyscallRegs::new(exec.uc).set_result(value);
        }

        // SAFETY: as above.
        unsafe { *errno_slot = saved_errno };
        thread.replace_selector(at_trap as u8);
    })
}

/// Executes trapped syscalls. Most run right here; those whose effect is
/// tied to the interrupted context (the signal mask the kernel will restore
/// from the frame, the stack the call returns on) are emulated or re-issued.
struct TrapExecutor<'a> {
    engine: &'static Engine,
    uc: &'a mut libc::ucontext_t,
    thread: &'a ThreadState,
}

impl Executor for TrapExecutor<'_> {
    fn execute(&mut self, call: &Syscall) -> Execution {
        let a = call.args;
        let done = Execution::Returned;
        match call.sysno() {
            Some(Sysno::rt_sigreturn) => {
                // Only the excluded region may issue it while the selector
                // blocks: resume at our restorer, on the same stack.
                let restorer = self.engine.gadgets.restorer;
                arch::SyscallRegs::new(self.uc).set_pc(restorer as u64);
                Execution::Resumes
            }
            Some(Sysno::rt_sigprocmask) => done(self.sigprocmask(a)),
            Some(Sysno::rt_sigaction) => done(self.engine.sigaction(a)),
            Some(Sysno::rt_sigsuspend) => done(with_sigsys_unblocked(call.nr, a, 0)),
            Some(Sysno::ppoll) => done(with_sigsys_unblocked(call.nr, a, 3)),
            Some(Sysno::epoll_pwait) | Some(Sysno::epoll_pwait2) => {
                done(with_sigsys_unblocked(call.nr, a, 4))
            }
            Some(Sysno::pselect6) => done(pselect6(call.nr, a)),
            Some(sysno) if is_clone_family(sysno) => {
                let mut clone3_copy = [0u64; CLONE_ARGS_WORDS];
                match classify_clone(sysno, a, &mut clone3_copy) {
                    CloneRequest::NewStack { flags, stack_top } => {
                        self.reissue_clone(call, flags, stack_top)
                    }
                    CloneRequest::ForkLike { nr, args } => self.fork_like(nr, args),
                    CloneRequest::Fault => done(-(libc::EFAULT as i64)),
                }
            }
            Some(Sysno::execve | Sysno::execveat | Sysno::exit | Sysno::exit_group) => {
                done(self.leaving(call.nr, a))
            }
            _ => done(raw6(call.nr, a)),
        }
    }
}

#[cfg(target_arch = "x86_64")]
const SIGCHLD: u64 = libc::SIGCHLD as u64;
const CLONE_VM: u64 = libc::CLONE_VM as u64;
const CLONE_VFORK: u64 = libc::CLONE_VFORK as u64;
const CLONE_THREAD: u64 = libc::CLONE_THREAD as u64;
const CLONE_SETTLS: u64 = libc::CLONE_SETTLS as u64;

impl TrapExecutor<'_> {
    /// rt_sigprocmask: the kernel restores the frame's mask at sigreturn, so
    /// the call is applied to the frame (and SIGSYS stays unblocked, with
    /// the application's wish kept per thread).
    fn sigprocmask(&mut self, a: [u64; 6]) -> i64 {
        let [how, set, oldset, size, ..] = a;
        // The real call validates how, size and both pointers; its effect on
        // this handler's own mask ends at sigreturn.
        let r = raw6(Sysno::rt_sigprocmask.id() as u64, a);
        if r < 0 {
            return r;
        }
        let frame_mask = mask_of(self.uc);
        let app_old = if self.thread.app_blocks_sigsys.get() {
            frame_mask | SIGSYS_BIT
        } else {
            frame_mask & !SIGSYS_BIT
        };
        if oldset != 0 && size == SIGSET_SIZE {
            // SAFETY: the kernel just wrote 8 bytes at `oldset` for this
            // thread, so it is valid, writable memory.
            unsafe { (oldset as *mut u64).write_unaligned(app_old) };
        }
        if set != 0 {
            // SAFETY: the kernel just read 8 bytes at `set` successfully.
            let requested = unsafe { (set as *const u64).read_unaligned() };
            let new = match how as i32 {
                libc::SIG_BLOCK => app_old | requested,
                libc::SIG_UNBLOCK => app_old & !requested,
                _ => requested,
            } & !UNBLOCKABLE;
            self.thread.app_blocks_sigsys.set(new & SIGSYS_BIT != 0);
            set_mask_of(self.uc, new & !SIGSYS_BIT);
        }
        0
    }

    /// A call after which this thread may never run the handler's epilogue
    /// (exit, or an execve that succeeds) runs with the selector back on
    /// BLOCK, from the excluded region. A vfork child (posix_spawn) shares
    /// its parent's TLS, selector included: leaving it on ALLOW would leave
    /// the parent's syscalls uncaught once it resumes.
    fn leaving(&mut self, nr: u64, a: [u64; 6]) -> i64 {
        if nr == Sysno::exit.id() as u64 {
            self.engine.counters.release_thread_block();
        }
        // SAFETY: `syscall6` is the engine's gadget with exactly this C
        // signature (see the arch crate), mapped executable for the
        // process's life; the call's own effects are the program's request.
        let syscall6: extern "C" fn(u64, u64, u64, u64, u64, u64, u64) -> i64 =
            unsafe { std::mem::transmute(self.engine.gadgets.syscall6) };
        // The call trapped, so the selector was BLOCK.
        self.thread
            .selector
            .store(Selector::Block as u8, Ordering::Relaxed);
        let r = syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        self.thread
            .selector
            .store(Selector::Allow as u8, Ordering::Relaxed);
        r
    }

    /// Runs a fork-like call here; the child (which shares nothing with the
    /// parent but a copy of memory) is armed again when the engine follows
    /// forks, since the kernel disarms every child.
    fn fork_like(&mut self, nr: u64, a: [u64; 6]) -> Execution {
        let r = raw6(nr, a);
        if r == 0 {
            self.engine.rearm_forked_child(self.thread);
        }
        Execution::Returned(r)
    }

    fn reissue_clone(&mut self, call: &Syscall, flags: u64, child_stack_top: u64) -> Execution {
        let Some(gadget) = self.engine.gadgets.clone_for_this_thread() else {
            // The engine's TLS is not static here, so the gadget cannot find
            // this thread's resume slot: fail cleanly rather than crash.
            return Execution::Returned(-(libc::ENOSYS as i64));
        };
        let resume = call.call_addr;
        if !self.prepare_child_stack(flags, child_stack_top, resume) {
            return Execution::Returned(-(libc::EFAULT as i64));
        }
        self.thread.resume_pc.set(resume);
        let mut regs = arch::SyscallRegs::new(self.uc);
        regs.set_nr(call.nr);
        regs.set_args(call.args);
        regs.set_pc(gadget as u64);
        Execution::Resumes
    }
}

impl TrapExecutor<'_> {
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

/// Words of `struct clone_args` the engine copies (up to `cgroup`, VER2).
pub(crate) const CLONE_ARGS_WORDS: usize = 11;

/// Whether `sysno` creates a process or thread.
pub(crate) fn is_clone_family(sysno: Sysno) -> bool {
    #[cfg(target_arch = "x86_64")]
    if matches!(sysno, Sysno::fork | Sysno::vfork) {
        return true;
    }
    matches!(sysno, Sysno::clone | Sysno::clone3)
}

/// Where a process- or thread-creating call may run.
pub(crate) enum CloneRequest {
    /// The child gets a stack of its own (a thread, posix_spawn's child):
    /// it must start at the call site with the caller's registers, so the
    /// call cannot run inside the engine's frames.
    NewStack { flags: u64, stack_top: u64 },
    /// The call can run right here: a fork, or a call whose child would
    /// share the caller's stack (vfork), rewritten with fork semantics,
    /// because that child would return through the engine's frames and
    /// wreck them for the parent.
    ForkLike { nr: u64, args: [u64; 6] },
    /// clone3's argument block could not be read.
    Fault,
}

/// Classifies a clone-family call. A clone3 rewritten with fork semantics
/// points at `clone3_copy`, which must outlive the call.
pub(crate) fn classify_clone(
    sysno: Sysno,
    args: [u64; 6],
    clone3_copy: &mut [u64; CLONE_ARGS_WORDS],
) -> CloneRequest {
    let nr = sysno.id() as u64;
    let shares_stack = |flags: u64| flags & (CLONE_VM | CLONE_VFORK) != 0;
    let fork_flags = |flags: u64| flags & !(CLONE_VM | CLONE_VFORK);
    match sysno {
        Sysno::clone => {
            let (flags, stack) = (args[0], args[1]);
            if stack != 0 {
                CloneRequest::NewStack {
                    flags,
                    stack_top: stack,
                }
            } else if shares_stack(flags) {
                let mut forked = args;
                forked[0] = fork_flags(flags);
                CloneRequest::ForkLike { nr, args: forked }
            } else {
                CloneRequest::ForkLike { nr, args }
            }
        }
        Sysno::clone3 => {
            // struct clone_args: flags, pidfd, child_tid, parent_tid,
            // exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup.
            let size = (args[1] as usize).min(8 * CLONE_ARGS_WORDS);
            if size < 56 {
                // Too small for the kernel as well: let it answer.
                return CloneRequest::ForkLike { nr, args };
            }
            if !read_user(args[0], &mut clone3_copy[..size / 8]) {
                return CloneRequest::Fault;
            }
            let (flags, stack, stack_size) = (clone3_copy[0], clone3_copy[5], clone3_copy[6]);
            if stack != 0 {
                CloneRequest::NewStack {
                    flags,
                    stack_top: stack.wrapping_add(stack_size),
                }
            } else if shares_stack(flags) {
                clone3_copy[0] = fork_flags(flags);
                CloneRequest::ForkLike {
                    nr,
                    args: [clone3_copy.as_ptr() as u64, size as u64, 0, 0, 0, 0],
                }
            } else {
                CloneRequest::ForkLike { nr, args }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Sysno::vfork => CloneRequest::ForkLike {
            nr: Sysno::clone.id() as u64,
            args: [SIGCHLD, 0, 0, 0, 0, 0],
        },
        _ => CloneRequest::ForkLike { nr, args },
    }
}

fn mask_of(uc: &libc::ucontext_t) -> u64 {
    // SAFETY: sigset_t is at least 8 bytes; its first word holds signals 1-64.
    unsafe { (&uc.uc_sigmask as *const libc::sigset_t as *const u64).read_unaligned() }
}

fn set_mask_of(uc: &mut libc::ucontext_t, mask: u64) {
    // SAFETY: as in mask_of; we own the frame's ucontext for this handler.
    unsafe { (&mut uc.uc_sigmask as *mut libc::sigset_t as *mut u64).write_unaligned(mask) }
}

/// Copies `out.len()` words from this process's memory at `addr`, or says
/// it could not (bad pointer) instead of faulting.
pub(crate) fn read_user(addr: u64, out: &mut [u64]) -> bool {
    user_copy(
        Sysno::process_vm_readv,
        addr,
        out.as_mut_ptr().cast(),
        std::mem::size_of_val(out),
    )
}

/// Writes `words` into this process's memory at `addr`, or says it could not.
pub(crate) fn write_user(addr: u64, words: &[u64]) -> bool {
    user_copy(
        Sysno::process_vm_writev,
        addr,
        words.as_ptr() as *mut u8,
        std::mem::size_of_val(words),
    )
}

fn user_copy(nr: Sysno, addr: u64, local: *mut u8, len: usize) -> bool {
    let local = libc::iovec {
        iov_base: local.cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    let pid = raw6(Sysno::getpid.id() as u64, [0; 6]) as u64;
    sys::call(
        nr,
        [
            pid,
            &local as *const _ as u64,
            1,
            &remote as *const _ as u64,
            1,
            0,
        ],
    ) == Ok(len as u64)
}

/// Runs a call whose argument `index` points to a temporary signal mask,
/// with SIGSYS removed from a copy of that mask.
fn with_sigsys_unblocked(nr: u64, mut a: [u64; 6], index: usize) -> i64 {
    let mut mask = [0u64];
    if a[index] != 0 && read_user(a[index], &mut mask) {
        mask[0] &= !SIGSYS_BIT;
        a[index] = mask.as_ptr() as u64;
    }
    raw6(nr, a)
}

/// pselect6's sixth argument points to `{ const sigset_t *ss; size_t ss_len; }`.
fn pselect6(nr: u64, mut a: [u64; 6]) -> i64 {
    let mut pair = [0u64; 2];
    let mut mask = [0u64];
    if a[5] != 0 && read_user(a[5], &mut pair) && pair[0] != 0 && read_user(pair[0], &mut mask) {
        mask[0] &= !SIGSYS_BIT;
        pair[0] = mask.as_ptr() as u64;
        a[5] = pair.as_ptr() as u64;
    }
    raw6(nr, a)
}

impl Engine {
    /// rt_sigaction: SIGSYS's action is kept virtually; for other signals,
    /// SIGSYS is taken out of `sa_mask` (a handler that blocks everything,
    /// like dash's SIGCHLD handler, would otherwise die on its first trapped
    /// syscall) and the application is shown the mask it asked for.
    fn sigaction(&self, a: [u64; 6]) -> i64 {
        let [sig, act, oldact, size, ..] = a;
        let efault = -(libc::EFAULT as i64);
        if size != SIGSET_SIZE || sig == 0 || sig > 64 {
            return raw6(Sysno::rt_sigaction.id() as u64, a);
        }
        let words = std::mem::size_of::<KernelSigaction>() / 8;
        let mut new = KernelSigaction::default();
        // SAFETY: KernelSigaction is four u64-sized plain fields.
        let new_words =
            unsafe { std::slice::from_raw_parts_mut(&mut new as *mut _ as *mut u64, words) };
        if act != 0 && !read_user(act, new_words) {
            return efault;
        }
        let bit = 1u64 << (sig - 1);
        if sig == SIGSYS {
            let old = self.app_sigsys.load();
            if oldact != 0 && !write_user(oldact, &as_words(&old)) {
                return efault;
            }
            if act != 0 {
                self.app_sigsys.store(new);
            }
            return 0;
        }
        let asked_now = new.mask & SIGSYS_BIT != 0;
        let app_new = new;
        let mut real = a;
        if act != 0 {
            new.mask &= !SIGSYS_BIT;
            real[1] = &new as *const _ as u64;
        }
        // Wrapped handlers: the application's action is kept in APP_ACTIONS
        // (before the kernel can deliver to the wrapper) and the wrapper is
        // installed with the same flags, mask and our restorer.
        let app_old = APP_ACTIONS[sig as usize].load();
        let wrapped;
        if act != 0 && self.foreign_signal_handlers && is_handler(new.handler) {
            APP_ACTIONS[sig as usize].store(app_new);
            wrapped = KernelSigaction {
                handler: on_app_signal as *const () as usize,
                flags: new.flags
                    | libc::SA_SIGINFO as u64
                    | linux_raw_sys::general::SA_RESTORER as u64,
                restorer: self.gadgets.restorer,
                mask: new.mask,
            };
            real[1] = &wrapped as *const _ as u64;
        }
        let r = raw6(Sysno::rt_sigaction.id() as u64, real);
        if r != 0 {
            return r;
        }
        if oldact != 0 {
            let mut old = [0u64; 4];
            if read_user(oldact, &mut old) && old[0] == on_app_signal as *const () as u64 {
                // The kernel reported our wrapper: show what the application installed.
                write_user(oldact, &as_words(&app_old));
            }
        }
        let asked_before = self.sa_mask_sigsys.load(Ordering::Relaxed) & bit != 0;
        if oldact != 0 && asked_before {
            let mut old = [0u64; 4];
            if read_user(oldact, &mut old) {
                old[3] |= SIGSYS_BIT;
                write_user(oldact, &old);
            }
        }
        if act != 0 {
            if asked_now {
                self.sa_mask_sigsys.fetch_or(bit, Ordering::Relaxed);
            } else {
                self.sa_mask_sigsys.fetch_and(!bit, Ordering::Relaxed);
            }
        }
        0
    }
}

fn is_handler(handler: usize) -> bool {
    handler != libc::SIG_DFL && handler != libc::SIG_IGN
}

/// The application's actions for the signals whose handlers the engine
/// wraps (`Builder::foreign_signal_handlers`), by signal number.
static APP_ACTIONS: [VirtualSigaction; 65] = [const { VirtualSigaction::new() }; 65];

/// Runs every wrapped application handler. The handler is foreign code, but
/// the signal may have interrupted a hook, or a blocking call the engine was
/// executing for the thread, with the selector on ALLOW: without the
/// wrapper, the handler's syscalls would escape interception. It runs with
/// the selector on BLOCK; the interrupted value comes back when it returns
/// (a handler that jumps out instead lands in foreign code, on BLOCK).
///
/// # Safety
/// Called by the kernel only, as an `SA_SIGINFO` handler.
unsafe extern "C" fn on_app_signal(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    let Some(act) = APP_ACTIONS.get(sig as usize).map(VirtualSigaction::load) else {
        return;
    };
    if !is_handler(act.handler) {
        // The action changed under a signal already on its way: the kernel
        // would have delivered to the old handler, which is gone; drop it.
        return;
    }
    let interrupted = with_thread(|t| t.replace_selector(Selector::Block as u8));
    call_app_handler(&act, sig, info, ctx);
    with_thread(|t| t.replace_selector(interrupted as u8));
}

/// Calls the application's handler from `act` exactly as the kernel would
/// have: with siginfo and context for an SA_SIGINFO handler, with the
/// signal number alone otherwise.
fn call_app_handler(
    act: &KernelSigaction,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    if act.flags & libc::SA_SIGINFO as u64 != 0 {
        // SAFETY: the application registered this address as an SA_SIGINFO
        // handler for `sig`; it gets the kernel's own siginfo and context.
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(act.handler) };
        handler(sig, info, ctx);
    } else {
        // SAFETY: a plain handler the application registered for `sig`.
        let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(act.handler) };
        handler(sig);
    }
}

fn as_words(act: &KernelSigaction) -> [u64; 4] {
    [act.handler as u64, act.flags, act.restorer as u64, act.mask]
}

/// A SIGSYS that did not come from dispatch (seccomp's RET_TRAP, a kill):
/// deliver it as the application's virtual action says.
fn forward(engine: &Engine, sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    engine.counters.forwarded();
    let act = engine.app_sigsys.load();
    let blocked = with_thread(|t| t.app_blocks_sigsys.get());
    if blocked || !is_handler(act.handler) {
        // What the kernel does with a forced SIGSYS that is blocked, ignored
        // or defaulted: the process dies of it.
        return die_of_sigsys();
    }
    if act.flags & libc::SA_RESETHAND as u64 != 0 {
        engine.app_sigsys.store(KernelSigaction::default());
    }
    // The application's sa_mask applies while its handler runs.
    let extra = act.mask & !SIGSYS_BIT & !UNBLOCKABLE;
    let mut previous = 0u64;
    let _ = sys::call(
        Sysno::rt_sigprocmask,
        [
            libc::SIG_BLOCK as u64,
            &extra as *const _ as u64,
            &mut previous as *mut _ as u64,
            SIGSET_SIZE,
            0,
            0,
        ],
    );
    call_app_handler(&act, sig, info, ctx);
    let _ = sys::call(
        Sysno::rt_sigprocmask,
        [
            libc::SIG_SETMASK as u64,
            &previous as *const _ as u64,
            0,
            SIGSET_SIZE,
            0,
            0,
        ],
    );
}

/// Dies of SIGSYS with the default action (core dump), as the kernel would.
pub(crate) fn die_of_sigsys() {
    let dfl = KernelSigaction::default();
    let _ = sys::call(
        Sysno::rt_sigaction,
        [SIGSYS, &dfl as *const _ as u64, 0, SIGSET_SIZE, 0, 0],
    );
    let unblock = SIGSYS_BIT;
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
    let _ = sys::call(Sysno::tgkill, [pid, sys::gettid() as u64, SIGSYS, 0, 0, 0]);
    let _ = sys::call(Sysno::exit_group, [128 + SIGSYS, 0, 0, 0, 0, 0]);
}
