//! Raw system calls for the engine's own use. They go straight to the kernel
//! (no libc wrapper, no errno write), so they are safe to make on the trap
//! path, where libc may be in an inconsistent state.

use syscalls::{Errno, Sysno};

/// Executes syscall `nr` with six arguments and returns the kernel's raw
/// answer (a negative errno on failure): no libc wrapper, no errno write,
/// so hooks and code that runs where libc may be mid-update can use it.
/// From a hook it runs directly (the selector is ALLOW while hooks run).
///
/// # Safety
/// The arguments must be valid for `nr`: whatever memory the call reads or
/// writes must be memory the caller may hand to the kernel for that.
#[inline]
pub unsafe fn raw_syscall(nr: u64, a: [u64; 6]) -> i64 {
    // SAFETY: the caller vouches for the arguments; the syscall instruction
    // itself touches only the registers the syscall ABI names.
    unsafe {
        syscalls::raw::syscall6(
            nr as usize,
            a[0] as usize,
            a[1] as usize,
            a[2] as usize,
            a[3] as usize,
            a[4] as usize,
            a[5] as usize,
        ) as i64
    }
}

/// [`raw_syscall`] for the engine's own calls.
///
/// The caller must make sure the call does not trap: the thread's selector
/// is ALLOW, or the thread is not armed.
#[inline]
pub(crate) fn raw6(nr: u64, a: [u64; 6]) -> i64 {
    // SAFETY: every caller in the engine passes arguments valid for `nr`
    // (pointers to live locals or to memory the kernel validates), as its
    // call site says.
    unsafe { raw_syscall(nr, a) }
}

/// [`raw6`] with a typed number and the answer split into value and errno.
#[inline]
pub(crate) fn call(nr: Sysno, a: [u64; 6]) -> Result<u64, Errno> {
    to_result(raw6(nr.id() as u64, a))
}

/// Splits a raw kernel answer into value and errno.
#[inline]
pub(crate) fn to_result(ret: i64) -> Result<u64, Errno> {
    match crate::hooks::errno_of(ret) {
        Some(errno) => Err(errno),
        None => Ok(ret as u64),
    }
}

/// `gettid()`.
pub(crate) fn gettid() -> i32 {
    raw6(Sysno::gettid.id() as u64, [0; 6]) as i32
}

/// Writes all of `bytes` to `fd`, retrying short writes; errors are dropped
/// because the only callers are last-gasp diagnostics.
pub(crate) fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let n = raw6(
            Sysno::write.id() as u64,
            [
                fd as u64,
                bytes.as_ptr() as u64,
                bytes.len() as u64,
                0,
                0,
                0,
            ],
        );
        if n <= 0 {
            if n == -(libc::EINTR as i64) {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Runs `f` and puts the thread's errno back as it was: hooks may call
/// libc, which writes errno, and the interrupted code (or the code at a
/// direct site) must find it unchanged. `__errno_location` is an
/// initial-exec TLS access in libc: no allocation, no lock.
pub(crate) fn with_errno_kept<R>(f: impl FnOnce() -> R) -> R {
    // The errno slot is `fs`-relative: with the program owning `fs` it is
    // not ours to find (and hooks there must not call libc; see
    // `Builder::program_owns_tls`).
    if crate::thread::program_owns_tls() {
        return f();
    }
    // SAFETY: __errno_location returns this thread's errno slot, valid for
    // the thread's life.
    let errno_slot = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    let saved_errno = unsafe { *errno_slot };
    let result = f();
    // SAFETY: as above.
    unsafe { *errno_slot = saved_errno };
    result
}
