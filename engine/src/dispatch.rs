//! The dispatch core: one function, two entrances (the SIGSYS handler and a
//! direct call from generated code). It runs the filter, the hooks and the
//! execution, and keeps the counters.
//!
//! Rules for everything reachable from here (it runs in signal context,
//! often while the interrupted code holds libc's locks): no allocation, no
//! lock the interrupted code could hold, no unwinding out (a panicking hook
//! aborts), and raw syscalls only.

use crate::counters::Counters;
use crate::filter::SyscallSet;
use crate::hooks::{DeliveredSignal, PostHook, PreHook, SignalHook, Syscall, Verdict};
use crate::thread::ThreadState;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What the dispatch core works with: the hooks, the filter, the counters.
pub(crate) struct Core {
    pub(crate) pre_hooks: Vec<PreHook>,
    pub(crate) post_hooks: Vec<PostHook>,
    pub(crate) filter: SyscallSet,
    pub(crate) counters: Counters,
    pub(crate) signal_hooks: Vec<SignalHook>,
}

/// Marks `in_hook` while signal hooks run (the low bits hold the signal).
const SIGNAL_HOOK: u64 = 1 << 62;

/// Runs the signal hooks for a delivery to a program handler.
pub(crate) fn observe_signal(engine: &Core, thread: &ThreadState, signal: &DeliveredSignal) {
    if engine.signal_hooks.is_empty() {
        return;
    }
    let outer = thread.in_hook.replace(SIGNAL_HOOK | signal.signo as u64);
    let ran = catch_unwind(AssertUnwindSafe(|| {
        for hook in &engine.signal_hooks {
            hook(signal);
        }
    }));
    if ran.is_err() {
        hook_panicked(SIGNAL_HOOK | signal.signo as u64, signal.tid);
    }
    thread.in_hook.set(outer);
}

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
pub(crate) fn dispatch(
    engine: &Core,
    thread: &ThreadState,
    call: &mut Syscall,
    exec: &mut impl Executor,
) -> Execution {
    engine
        .counters
        .entered(&thread.counter_block, call.entrance, call.nr);
    if !engine.filter.contains(call.nr) {
        return exec.execute(call);
    }
    engine.counters.hooked(&thread.counter_block);
    // The panic guard (see `install_panic_guard`) reads which call this is.
    let outer = thread.in_hook.replace(call.nr);
    // Unwinding out of a signal handler is undefined; a hook's panic stops here.
    let execution = match catch_unwind(AssertUnwindSafe(|| run_hooks(engine, call, exec))) {
        Ok(execution) => execution,
        Err(_) => hook_panicked(call.nr, call.tid),
    };
    thread.in_hook.set(outer);
    execution
}

fn run_hooks(engine: &Core, call: &mut Syscall, exec: &mut impl Executor) -> Execution {
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

/// The post-hooks of a call whose result arrives after the entrance
/// handed it back (a vfork re-issued at its site): they see the result and
/// may change it, as for any call.
pub(crate) fn complete(engine: &Core, thread: &ThreadState, call: &Syscall, value: i64) -> i64 {
    if !engine.filter.contains(call.nr) {
        return value;
    }
    let outer = thread.in_hook.replace(call.nr);
    let value = match catch_unwind(AssertUnwindSafe(|| finish(engine, call, value))) {
        Ok(Execution::Returned(value)) => value,
        Ok(Execution::Resumes) => value,
        Err(_) => hook_panicked(call.nr, call.tid),
    };
    thread.in_hook.set(outer);
    value
}

fn finish(engine: &Core, call: &Syscall, mut value: i64) -> Execution {
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

/// Makes a hook's panic abort before std's panic machinery runs: the
/// default panic hook formats the message into a `String` and locks
/// stderr, which deadlocks when the trapped thread holds malloc's lock.
/// The guard is a panic hook that, on a thread inside a hook, writes a
/// fixed message from a stack buffer and aborts; elsewhere it hands over
/// to the hook that was there before.
///
/// [`crate::Builder::install`] calls it; it acts once per process. A host
/// that installs the engine in a child it forks while other threads may
/// be panicking (a test harness) calls it before forking: setting a panic
/// hook takes std's hook lock, which a panicking thread holds at the fork.
pub fn abort_on_hook_panic() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some((nr, tid)) = in_hook_on_this_thread() {
                hook_panicked(nr, tid);
            }
            previous(info)
        }));
    });
}

/// The call the calling thread's hooks are handling, if any. Found from
/// the thread's engine stack, not its TLS: a hook runs in the SIGSYS
/// handler, on that stack.
fn in_hook_on_this_thread() -> Option<(u64, i32)> {
    let here = 0u8;
    let thread = crate::thread::containing(&here as *const u8 as usize)?;
    let nr = thread.in_hook.get();
    (nr != u64::MAX).then(|| (nr, thread.armed_tid.get()))
}

#[cold]
fn hook_panicked(nr: u64, tid: i32) -> ! {
    let mut msg = StackText::<200>::new();
    if nr & SIGNAL_HOOK != 0 {
        let _ = write!(
            msg,
            "sud-engine: a signal hook panicked while observing signal {}",
            nr & !SIGNAL_HOOK
        );
    } else {
        let name = usize::try_from(nr)
            .ok()
            .and_then(syscalls::Sysno::new)
            .map_or("?", |s| s.name());
        let _ = write!(
            msg,
            "sud-engine: a hook panicked while handling syscall {name} ({nr})"
        );
    }
    let _ = writeln!(
        msg,
        " on thread {tid}; aborting, because a panic cannot unwind through a signal frame",
    );
    crate::sys::write_all(2, msg.as_bytes());
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Entrance;
    use std::cell::RefCell;
    use syscalls::{Errno, Sysno};

    /// Records what it was asked to execute and answers 7.
    #[derive(Default)]
    struct Recorder(RefCell<Vec<(u64, [u64; 6])>>);

    impl Executor for &Recorder {
        fn execute(&mut self, call: &Syscall) -> Execution {
            self.0.borrow_mut().push((call.nr, call.args));
            Execution::Returned(7)
        }
    }

    fn call(nr: Sysno) -> Syscall {
        Syscall {
            nr: nr.id() as u64,
            args: [1, 2, 3, 4, 5, 6],
            call_addr: 0x1000,
            tid: 1,
            entrance: Entrance::Direct,
        }
    }

    fn core(pre: Vec<PreHook>, post: Vec<PostHook>, watched: &[Sysno]) -> Core {
        Core {
            pre_hooks: pre,
            post_hooks: post,
            filter: SyscallSet::from_sysnos(watched),
            counters: Counters::new(),
            signal_hooks: Vec::new(),
        }
    }

    fn returned(e: Execution) -> i64 {
        match e {
            Execution::Returned(v) => v,
            Execution::Resumes => panic!("resumed"),
        }
    }

    #[test]
    fn hooks_run_in_order_and_see_changed_arguments_then_the_call_runs() {
        let core = core(
            vec![
                Box::new(|c| Verdict::RunWith([c.args[0] + 10, 0, 0, 0, 0, 0])),
                Box::new(|c| {
                    assert_eq!(c.args[0], 11);
                    Verdict::Run
                }),
            ],
            vec![Box::new(|_, v| *v *= 3)],
            &[Sysno::getppid],
        );
        let rec = Recorder::default();
        let thread = crate::thread::current();
        let v = dispatch(&core, thread, &mut call(Sysno::getppid), &mut &rec);
        assert_eq!(returned(v), 21, "post-hook saw the executed result");
        let getppid = Sysno::getppid.id() as u64;
        assert_eq!(*rec.0.borrow(), [(getppid, [11, 0, 0, 0, 0, 0])]);
        assert_eq!(core.counters.count(getppid), 1);
        assert_eq!(core.counters.snapshot().hooked, 1);
    }

    #[test]
    fn an_emulated_or_failed_call_never_reaches_the_executor() {
        let core = core(
            vec![Box::new(|c| {
                if c.nr == Sysno::getpid.id() as u64 {
                    Verdict::Return(42)
                } else {
                    Verdict::Fail(Errno::EPERM)
                }
            })],
            vec![],
            &[Sysno::getpid, Sysno::getppid],
        );
        let rec = Recorder::default();
        let thread = crate::thread::current();
        assert_eq!(
            returned(dispatch(&core, thread, &mut call(Sysno::getpid), &mut &rec)),
            42
        );
        assert_eq!(
            returned(dispatch(
                &core,
                thread,
                &mut call(Sysno::getppid),
                &mut &rec
            )),
            -(libc::EPERM as i64)
        );
        assert!(rec.0.borrow().is_empty());
    }

    #[test]
    fn an_unwatched_call_runs_without_hooks_and_is_counted() {
        let core = core(
            vec![Box::new(|_| panic!("hook ran"))],
            vec![],
            &[Sysno::getppid],
        );
        let rec = Recorder::default();
        let thread = crate::thread::current();
        assert_eq!(
            returned(dispatch(&core, thread, &mut call(Sysno::getpid), &mut &rec)),
            7
        );
        assert_eq!(core.counters.count(Sysno::getpid.id() as u64), 1);
        assert_eq!(core.counters.snapshot().hooked, 0);
    }
}
