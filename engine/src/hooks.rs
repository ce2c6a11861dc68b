//! What a hook sees and what it may decide.

use crate::counters::Entrance;
use syscalls::{Errno, Sysno};

/// One intercepted system call, as the pre- and post-hooks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syscall {
    /// The raw syscall number (foreign ABIs may use numbers Linux does not know).
    pub nr: u64,
    /// The six argument registers, in syscall-ABI order. A pre-hook's
    /// [`Verdict::RunWith`] replaces them for the hooks after it and the call.
    pub args: [u64; 6],
    /// The address just after the syscall instruction that issued the call.
    pub call_addr: u64,
    /// The kernel thread id of the calling thread.
    pub tid: i32,
    /// How the call reached the engine.
    pub entrance: Entrance,
}

impl Syscall {
    /// The syscall as a [`Sysno`] of this architecture, if Linux knows it.
    pub fn sysno(&self) -> Option<Sysno> {
        usize::try_from(self.nr).ok().and_then(Sysno::new)
    }

    /// The syscall's name, or `"?"` for a number Linux does not know.
    pub fn name(&self) -> &'static str {
        self.sysno().map_or("?", |s| s.name())
    }
}

/// A pre-hook's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on: later hooks run, then the call executes as it stands.
    Run,
    /// Go on with these arguments instead.
    RunWith([u64; 6]),
    /// Do not execute: the call returns this value (emulation). Later
    /// pre-hooks are skipped; post-hooks still see the value.
    Return(i64),
    /// Do not execute: the call fails with this errno (`-errno` is returned).
    Fail(Errno),
}

/// A pre-hook. Runs in signal context: see the crate documentation.
pub type PreHook = Box<dyn Fn(&Syscall) -> Verdict + Send + Sync>;

/// A post-hook: sees the call and its raw result (a negative errno on
/// failure) and may change the result. Runs in signal context.
pub type PostHook = Box<dyn Fn(&Syscall, &mut i64) + Send + Sync>;

/// The errno in a raw syscall result, if it is a failure.
pub fn errno_of(result: i64) -> Option<Errno> {
    (-4095..0)
        .contains(&result)
        .then(|| Errno::new(-result as i32))
}

/// A signal the engine is about to deliver to one of the program's own
/// handlers (with [`crate::Builder::foreign_signal_handlers`], or a SIGSYS
/// that did not come from dispatch), as signal hooks see it: strace's
/// `--- SIGCHLD {...} ---` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredSignal {
    /// The signal number.
    pub signo: i32,
    /// `si_code`.
    pub code: i32,
    /// The receiving thread's id (as in [`Syscall::tid`]).
    pub tid: i32,
    /// The kernel's whole `siginfo_t`, for the fields of each kind.
    pub siginfo: [u64; 16],
}

/// A signal hook: sees each delivery to a program handler, before the
/// handler runs; the same rules as for syscall hooks apply.
pub type SignalHook = Box<dyn Fn(&DeliveredSignal) + Send + Sync>;

/// How many words [`hook_words`] gives each thread.
pub const HOOK_WORDS: usize = 8;

/// A thread's hook words.
pub type HookWords = [std::cell::Cell<u64>; HOOK_WORDS];

/// Words a hook can keep per thread between calls (an entry timestamp for
/// the post-hook, a nesting depth), reached without thread-local storage:
/// hooks run where the program's TLS machinery must not be used (inside
/// malloc, or while `__tls_get_addr` would allocate). On the trap path the
/// words live in the thread's engine block, found from where `call` lives;
/// on the direct entrance, in the thread's engine state reached through
/// the engine's own thread-local pointer. They start at 0 and only the
/// owning thread sees them.
pub fn hook_words(call: &Syscall) -> &'static HookWords {
    let state = crate::thread::on_engine_stack(call as *const Syscall as usize)
        .unwrap_or_else(crate::thread::current);
    &state.hook_words
}

/// Whether the calling thread is in seccomp strict mode (the engine saw it
/// enter it): any syscall but `read`, `write`, `exit` and `rt_sigreturn`
/// now kills it, so a hook must make none (read the program's memory
/// directly rather than with `process_vm_readv`, for instance).
pub fn in_strict_mode(call: &Syscall) -> bool {
    crate::thread::on_engine_stack(call as *const Syscall as usize)
        .unwrap_or_else(crate::thread::current)
        .strict
        .get()
}
