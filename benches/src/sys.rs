//! The raw kernel calls the rig makes itself, without the engine: the
//! syscall numbers the probes issue, `rt_sigaction` with a restorer of our
//! own, the prctl of Syscall User Dispatch and the excluded page that holds
//! the floor's restorer.

use crate::error::{BenchError, Result};
use crate::isa::RESTORER;
use linux_raw_sys::prctl::{
    PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_EXCLUSIVE_ON, PR_SYS_DISPATCH_OFF,
};
use std::sync::OnceLock;
use syscalls::{Errno, Sysno};

/// The number every "plain" probe issues. Linux knows no syscall by this
/// number on any architecture, so the kernel answers ENOSYS at once: what a
/// probe measures is the crossing, not the work of a real syscall.
pub const UNWATCHED_NR: u64 = 1000;
/// The unknown number the engine watches with an empty pre-hook.
pub const EMPTY_HOOK_NR: u64 = 1001;
/// The unknown number the engine watches with a pre-hook that passes
/// (`Verdict::RunWith` the same arguments).
pub const PASS_HOOK_NR: u64 = 1002;

/// Issues syscall `nr` with no arguments and returns the kernel's raw answer.
///
/// The caller is responsible for `nr` being harmless with zeroed arguments;
/// the probes only issue unknown numbers and getpid.
#[inline(always)]
pub fn raw0(nr: u64) -> i64 {
    // SAFETY: a syscall instruction touches only the registers of the
    // syscall ABI; the numbers issued here (unknown numbers, getpid) have no
    // effect on memory.
    unsafe { syscalls::raw::syscall0(nr as usize) as i64 }
}

/// Issues syscall `nr` with six arguments; a negative errno becomes `Err`.
pub(crate) fn call(nr: Sysno, a: [u64; 6]) -> std::result::Result<u64, Errno> {
    // SAFETY: as for `raw0`; every caller in this crate passes arguments
    // that are valid for `nr` (pointers to live locals), as its call site says.
    let ret = unsafe { sud_engine::raw_syscall(nr.id() as u64, a) };
    match sud_engine::errno_of(ret) {
        Some(errno) => Err(errno),
        None => Ok(ret as u64),
    }
}

/// Maps an errno to a [`BenchError`] naming the operation.
pub fn os(op: &'static str) -> impl Fn(Errno) -> BenchError {
    move |errno| BenchError::Os { op, errno }
}

/// The kernel's `struct sigaction` (not glibc's).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelSigaction {
    /// The handler address (or SIG_DFL/SIG_IGN).
    pub handler: usize,
    /// SA_* flags.
    pub flags: u64,
    /// Where the handler returns to: must issue rt_sigreturn.
    pub restorer: usize,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}

const _: () = assert!(
    std::mem::size_of::<KernelSigaction>()
        == std::mem::size_of::<linux_raw_sys::general::kernel_sigaction>()
);

/// `SA_RESTORER`, which the libc crate does not export for every target.
pub const SA_RESTORER: u64 = linux_raw_sys::general::SA_RESTORER as u64;

/// Sets the action of `signal` with the raw syscall (so the restorer is the
/// one given, not glibc's) and returns the previous action.
pub fn sigaction(signal: i32, act: &KernelSigaction) -> Result<KernelSigaction> {
    let mut old = KernelSigaction::default();
    // SAFETY of the arguments: `act` and `old` are live, correctly laid out
    // kernel_sigaction structs; the sigset size is the kernel's (8 bytes).
    call(
        Sysno::rt_sigaction,
        [
            signal as u64,
            act as *const KernelSigaction as u64,
            &mut old as *mut KernelSigaction as u64,
            8,
            0,
            0,
        ],
    )
    .map_err(os("rt_sigaction"))?;
    Ok(old)
}

/// Arms Syscall User Dispatch (exclusive mode) for the calling thread.
///
/// # Safety
/// `selector` must stay valid and hold only 0 or 1 while the thread is armed,
/// and a SIGSYS handler able to handle dispatch must be installed before the
/// selector is set to BLOCK.
pub unsafe fn arm(start: usize, len: usize, selector: *const u8) -> Result<()> {
    call(
        Sysno::prctl,
        [
            PR_SET_SYSCALL_USER_DISPATCH as u64,
            PR_SYS_DISPATCH_EXCLUSIVE_ON as u64,
            start as u64,
            len as u64,
            selector as u64,
            0,
        ],
    )
    .map(drop)
    .map_err(os("prctl(PR_SYS_DISPATCH_EXCLUSIVE_ON)"))
}

/// Switches Syscall User Dispatch off for the calling thread.
pub fn disarm() -> Result<()> {
    call(
        Sysno::prctl,
        [
            PR_SET_SYSCALL_USER_DISPATCH as u64,
            PR_SYS_DISPATCH_OFF as u64,
            0,
            0,
            0,
            0,
        ],
    )
    .map(drop)
    .map_err(os("prctl(PR_SYS_DISPATCH_OFF)"))
}

/// Size of the excluded page.
pub const PAGE: usize = 4096;

/// The bare-kernel excluded page, mapped once: it holds the floor's
/// restorer at offset 0, and its range is the region the floor and the
/// prctl probe arm with.
pub fn excluded_page() -> Result<usize> {
    static PAGE_AT: OnceLock<std::result::Result<usize, Errno>> = OnceLock::new();
    let mapped = PAGE_AT.get_or_init(|| {
        let prot_rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let page = call(Sysno::mmap, [0, PAGE as u64, prot_rw, flags, u64::MAX, 0])?;
        // SAFETY: `page` is a fresh private read-write mapping of PAGE bytes,
        // larger than the restorer.
        unsafe {
            std::ptr::copy_nonoverlapping(RESTORER.as_ptr(), page as *mut u8, RESTORER.len())
        };
        let prot_rx = (libc::PROT_READ | libc::PROT_EXEC) as u64;
        call(Sysno::mprotect, [page, PAGE as u64, prot_rx, 0, 0, 0])?;
        Ok(page as usize)
    });
    mapped.map_err(os("mmap/mprotect(excluded page)"))
}
