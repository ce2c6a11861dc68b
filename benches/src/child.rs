//! Measuring in a forked child: for crossings that change the process for
//! good (a seccomp filter cannot be removed) or need a second process (a
//! ptrace tracer). The child takes the samples and sends them back through
//! a pipe; the parent waits for it, or traces it while it measures.

use crate::error::{BenchError, Result};
use crate::sample::{calibrate, collect_into, Plan};
use crate::sys::os;
use std::time::Duration;

/// How much the child measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// A whole plan: calibrate, then every sample of every round.
    Plan(Plan),
    /// One batch of this many operations (criterion's `iter_custom`).
    Batch(u64),
}

impl Amount {
    fn capacity(&self) -> usize {
        match self {
            Amount::Plan(plan) => plan.total_samples(),
            Amount::Batch(_) => 1,
        }
    }

    /// Takes the samples, in nanoseconds per operation, into `out` (which
    /// has room for them: no allocation after fork).
    pub fn take(&self, out: &mut Vec<f64>, mut batch: impl FnMut(u64) -> Duration) {
        match *self {
            Amount::Plan(plan) => {
                let n = calibrate(plan.sample_time, &mut batch);
                collect_into(out, n, plan.total_samples(), batch);
            }
            Amount::Batch(n) => {
                let took = batch(n.max(1));
                out.push(took.as_nanos() as f64 / n.max(1) as f64);
            }
        }
    }
}

/// Samples travel through a pipe, whose buffer (64 KiB) must hold them all:
/// the parent reads only once the child has exited.
const MAX_SAMPLES: usize = 4096;

/// Forks; the child runs `body` (which fills the samples) and exits; the
/// parent runs `supervise` with the child's pid until the child has exited
/// and gets its wait status back, then reads the samples.
pub fn run(
    probe: &'static str,
    amount: Amount,
    body: impl FnOnce(&mut Vec<f64>) -> Result<()>,
    supervise: impl FnOnce(libc::pid_t) -> Result<libc::c_int>,
) -> Result<Vec<f64>> {
    let capacity = amount.capacity().min(MAX_SAMPLES);
    let mut samples = Vec::with_capacity(capacity);
    let mut fds = [0; 2];
    // SAFETY: `fds` is a live array of two ints for the kernel to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(os("pipe2")(last_errno()));
    }
    let [read_end, write_end] = fds;
    // SAFETY: the rig forks from its single measuring thread; the child only
    // uses memory allocated before the fork and raw syscalls, then `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        close(read_end);
        close(write_end);
        return Err(os("fork")(last_errno()));
    }
    if pid == 0 {
        close(read_end);
        let code = match body(&mut samples) {
            Ok(()) if write_all(write_end, as_bytes(&samples)) => 0,
            Ok(()) => 3,
            Err(_) => 2,
        };
        // SAFETY: _exit ends the child without running the parent's atexit
        // handlers or destructors twice.
        unsafe { libc::_exit(code) };
    }
    close(write_end);
    let status = supervise(pid);
    let mut bytes = Vec::with_capacity(capacity * 8);
    let read = read_to_end(read_end, &mut bytes);
    close(read_end);
    let status = status?;
    let failed = |problem: String| BenchError::Child { probe, problem };
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(failed(format!("child ended with wait status {status:#x}")));
    }
    read.map_err(|errno| failed(format!("reading the pipe: {errno}")))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| f64::from_ne_bytes(c.try_into().unwrap_or_default()))
        .collect())
}

/// Waits for the child to exit and returns its wait status.
pub fn wait_exit(pid: libc::pid_t) -> Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a live int for the kernel to fill.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(status);
        }
        let errno = last_errno();
        if errno != syscalls::Errno::EINTR {
            return Err(os("waitpid")(errno));
        }
    }
}

pub(crate) fn last_errno() -> syscalls::Errno {
    syscalls::Errno::new(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

fn as_bytes(samples: &[f64]) -> &[u8] {
    // SAFETY: f64 has no padding and any byte view of it is valid; the slice
    // covers exactly the samples' memory.
    unsafe {
        std::slice::from_raw_parts(
            samples.as_ptr().cast::<u8>(),
            std::mem::size_of_val(samples),
        )
    }
}

fn close(fd: libc::c_int) {
    // SAFETY: closing a pipe end this module opened and owns.
    unsafe { libc::close(fd) };
}

fn write_all(fd: libc::c_int, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is live memory of the given length.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            if n < 0 && last_errno() == syscalls::Errno::EINTR {
                continue;
            }
            return false;
        }
        bytes = &bytes[n as usize..];
    }
    true
}

fn read_to_end(fd: libc::c_int, out: &mut Vec<u8>) -> std::result::Result<(), syscalls::Errno> {
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is live writable memory of the given length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => return Ok(()),
            n if n > 0 => out.extend_from_slice(&buf[..n as usize]),
            _ if last_errno() == syscalls::Errno::EINTR => {}
            _ => return Err(last_errno()),
        }
    }
}
