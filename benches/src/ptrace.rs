//! A ptrace syscall-stop pair, the out-of-process way of catching
//! syscalls: the parent traces a forked child with `PTRACE_SYSCALL` (an
//! entry stop and an exit stop per call, resumed at once); the child issues
//! [`UNWATCHED_NR`] in a loop and times it. The figure is the cost per
//! syscall as the traced child sees it: both stops, both context switches
//! to the tracer and back (tracer and child share the pinned CPU).

use crate::child::{self, Amount};
use crate::error::Result;
use crate::sys::{self, os, UNWATCHED_NR};
use std::time::{Duration, Instant};

/// `n` traced calls of [`UNWATCHED_NR`].
fn traced_batch(n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(sys::raw0(std::hint::black_box(UNWATCHED_NR)));
    }
    start.elapsed()
}

fn ptrace(request: libc::c_uint, pid: libc::pid_t, data: usize) -> Result<()> {
    // SAFETY: the requests used here take no pointer in `addr` and an
    // integer (options or a signal number) in `data`.
    let r = unsafe { libc::ptrace(request, pid, 0usize, data) };
    if r < 0 {
        return Err(os("ptrace")(child::last_errno()));
    }
    Ok(())
}

/// Resumes the child at every stop until it exits; returns the wait status.
fn trace(pid: libc::pid_t) -> Result<libc::c_int> {
    let status = child::wait_exit(pid)?;
    if !libc::WIFSTOPPED(status) {
        return Ok(status);
    }
    let options = (libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL) as usize;
    ptrace(libc::PTRACE_SETOPTIONS, pid, options)?;
    ptrace(libc::PTRACE_SYSCALL, pid, 0)?;
    loop {
        let status = child::wait_exit(pid)?;
        if !libc::WIFSTOPPED(status) {
            return Ok(status);
        }
        let signal = libc::WSTOPSIG(status);
        // Syscall stops (SIGTRAP | 0x80) resume plainly; real signals go on.
        let deliver = if signal == libc::SIGTRAP | 0x80 {
            0
        } else {
            signal
        };
        ptrace(libc::PTRACE_SYSCALL, pid, deliver as usize)?;
    }
}

/// Measures the traced syscall in a forked child.
pub fn measure(amount: Amount) -> Result<Vec<f64>> {
    let supervise = |pid| {
        let traced = trace(pid);
        if traced.is_err() {
            // SAFETY: killing our own child, whose pid we hold unreaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = child::wait_exit(pid);
        }
        traced
    };
    child::run(
        "ptrace_syscall",
        amount,
        |out| {
            ptrace(libc::PTRACE_TRACEME, 0, 0)?;
            // SAFETY: raise has no preconditions; the tracer resumes us.
            unsafe { libc::raise(libc::SIGSTOP) };
            amount.take(out, traced_batch);
            Ok(())
        },
        supervise,
    )
}
