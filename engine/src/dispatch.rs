//! The dispatch core: one function, two entrances (the SIGSYS handler and a
//! direct call from generated code). It runs the filter, the hooks and the
//! execution, and keeps the counters.
//!
//! Rules for everything reachable from here (it runs in signal context,
//! often while the interrupted code holds libc's locks): no allocation, no
//! lock the interrupted code could hold, no unwinding out (a panicking hook
//! aborts), and raw syscalls only.

use crate::engine::Engine;
use crate::hooks::{Syscall, Verdict};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// How a syscall got executed.
pub(crate) enum Execution {
    /// It completed with this raw result.
    Returned(i64),
    /// The interrupted context was redirected to re-issue it from the
    /// excluded region; its result arrives when the foreign code resumes, so
    /// post-hooks do not see it.
    Resumes,
}

/// Executes a syscall for one entrance.
pub(crate) trait Executor {
    fn execute(&mut self, call: &Syscall) -> Execution;
}

/// Runs one syscall through the filter, the hooks and the executor.
#[inline]
pub(crate) fn dispatch(engine: &Engine, call: &mut Syscall, exec: &mut impl Executor) -> Execution {
    engine.counters.entered(call.entrance, call.nr);
    if !engine.filter.contains(call.nr) {
        return exec.execute(call);
    }
    engine.counters.hooked();
    // Unwinding out of a signal handler is undefined; a hook's panic stops here.
    match catch_unwind(AssertUnwindSafe(|| run_hooks(engine, call, exec))) {
        Ok(execution) => execution,
        Err(_) => hook_panicked(call),
    }
}

fn run_hooks(engine: &Engine, call: &mut Syscall, exec: &mut impl Executor) -> Execution {
    for hook in &engine.pre_hooks {
        match hook(call) {
            Verdict::Run => {}
            Verdict::RunWith(args) => call.args = args,
            Verdict::Return(value) => return finish(engine, call, value),
            Verdict::Fail(errno) => return finish(engine, call, -(errno.into_raw() as i64)),
        }
    }
    match exec.execute(call) {
        Execution::Returned(value) => finish(engine, call, value),
        Execution::Resumes => Execution::Resumes,
    }
}

fn finish(engine: &Engine, call: &Syscall, mut value: i64) -> Execution {
    for hook in &engine.post_hooks {
        hook(call, &mut value);
    }
    Execution::Returned(value)
}

/// A fixed buffer for messages written on paths that must not allocate.
pub(crate) struct StackText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    pub(crate) const fn new() -> Self {
        StackText {
            buf: [0; N],
            len: 0,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<const N: usize> std::fmt::Write for StackText<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[cold]
fn hook_panicked(call: &Syscall) -> ! {
    let mut msg = StackText::<200>::new();
    let _ = writeln!(
        msg,
        "sud-engine: a hook panicked while handling syscall {} ({}) on thread {}; aborting, \
         because a panic cannot unwind through a signal frame",
        call.name(),
        call.nr,
        call.tid
    );
    crate::sys::write_all(2, msg.as_bytes());
    std::process::abort()
}
