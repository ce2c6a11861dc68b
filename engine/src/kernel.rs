//! The kernel interface of Syscall User Dispatch, typed: probing what the
//! running kernel supports and switching dispatch on and off for the calling
//! thread. The engine arms threads through this module; it is public for
//! callers that want the bare mechanism (the kernel selftests' behaviours).

use crate::error::{Error, RegionProblem, Result};
use crate::selector::Selector;
use crate::sys;
use linux_raw_sys::prctl::{
    PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_EXCLUSIVE_ON, PR_SYS_DISPATCH_INCLUSIVE_ON,
    PR_SYS_DISPATCH_OFF,
};
use syscalls::{Errno, Sysno};

/// `si_code` of a SIGSYS raised by Syscall User Dispatch.
pub(crate) const SYS_USER_DISPATCH: i32 = 2;

/// What the running kernel offers, found without arming anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// No Syscall User Dispatch at all (the prctl option is unknown).
    Unsupported,
    /// The prctl exists but something refuses it (seccomp, LSM).
    Refused(Errno),
    /// Dispatch can be armed; `inclusive` says whether the inclusive mode is known.
    Available {
        /// The kernel accepts `PR_SYS_DISPATCH_INCLUSIVE_ON`.
        inclusive: bool,
    },
}

/// The part of the address space whose syscalls the selector governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// Syscalls issued from `[start, start + len)` always run; all others obey
    /// the selector. `len == 0` excludes nothing.
    Exclusive {
        /// First excluded byte.
        start: usize,
        /// Number of excluded bytes.
        len: usize,
    },
    /// Only syscalls issued from `[start, start + len)` obey the selector;
    /// all others always run.
    Inclusive {
        /// First included byte.
        start: usize,
        /// Number of included bytes (at least one).
        len: usize,
    },
}

impl Region {
    /// Checks the range arithmetic the kernel would reject with EINVAL, so the
    /// caller gets a named problem instead.
    pub fn validate(&self) -> Result<()> {
        let (start, len, inclusive) = match *self {
            Region::Exclusive { start, len } => (start, len, false),
            Region::Inclusive { start, len } => (start, len, true),
        };
        if inclusive && len == 0 {
            return Err(Error::BadRegion {
                start,
                len,
                problem: RegionProblem::Empty,
            });
        }
        if start.checked_add(len).is_none() {
            return Err(Error::BadRegion {
                start,
                len,
                problem: RegionProblem::Overflow,
            });
        }
        Ok(())
    }

    /// Whether a syscall whose instruction *ends* at `after` (the address the
    /// kernel checks: the instruction pointer after the syscall instruction)
    /// is subject to the selector.
    ///
    /// ```
    /// use sud_engine::Region;
    /// let excluded = Region::Exclusive { start: 0x1000, len: 0x1000 };
    /// assert!(excluded.governs(0xfff) && !excluded.governs(0x1000));
    /// assert!(!excluded.governs(0x1fff) && excluded.governs(0x2000));
    /// let included = Region::Inclusive { start: 0x1000, len: 0x1000 };
    /// assert!(!included.governs(0xfff) && included.governs(0x1000));
    /// ```
    pub fn governs(&self, after: usize) -> bool {
        match *self {
            Region::Exclusive { start, len } => after.wrapping_sub(start) >= len,
            Region::Inclusive { start, len } => after.wrapping_sub(start) < len,
        }
    }
}

fn prctl_dispatch(
    mode: u32,
    offset: usize,
    len: usize,
    selector: usize,
) -> std::result::Result<(), Errno> {
    sys::call(
        Sysno::prctl,
        [
            PR_SET_SYSCALL_USER_DISPATCH as u64,
            mode as u64,
            offset as u64,
            len as u64,
            selector as u64,
            0,
        ],
    )
    .map(drop)
}

/// An address no user pointer can have: `access_ok` fails on it, so a mode
/// the kernel knows answers EFAULT while an unknown mode answers EINVAL, and
/// nothing is armed either way.
const KERNEL_ADDRESS: usize = usize::MAX - 4095;

/// Finds out what the running kernel supports without arming anything.
pub fn probe() -> Support {
    let probe_mode = |mode| prctl_dispatch(mode, 0x1000, 0x1000, KERNEL_ADDRESS);
    match probe_mode(PR_SYS_DISPATCH_EXCLUSIVE_ON) {
        Err(Errno::EFAULT) => {}
        Err(Errno::EINVAL) => return Support::Unsupported,
        Err(e) => return Support::Refused(e),
        // Unreachable on a kernel that checks the selector; if armed after
        // all, undo it so probing stays side-effect free.
        Ok(()) => {
            let _ = prctl_dispatch(PR_SYS_DISPATCH_OFF, 0, 0, 0);
        }
    }
    let inclusive = matches!(probe_mode(PR_SYS_DISPATCH_INCLUSIVE_ON), Err(Errno::EFAULT));
    Support::Available { inclusive }
}

fn map_arm_error(e: Errno, region: Region, selector: usize) -> Error {
    match e {
        Errno::EINVAL => match region {
            Region::Inclusive { .. } => Error::InclusiveUnsupported,
            Region::Exclusive { .. } => Error::Unsupported,
        },
        Errno::EFAULT => Error::SelectorUnreadable(selector),
        Errno::EPERM | Errno::EACCES => Error::RefusedByPolicy(e),
        errno => Error::Os {
            op: "prctl(PR_SET_SYSCALL_USER_DISPATCH)",
            errno,
        },
    }
}

/// Checks that this thread can read and write the byte at `addr`, using
/// process_vm_readv/writev on ourselves so a bad address is an error, not a
/// SIGSEGV.
pub(crate) fn byte_is_accessible(addr: usize) -> bool {
    let mut byte = 0u8;
    let local = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: 1,
    };
    let pid = sys::call(Sysno::getpid, [0; 6]).unwrap_or(0);
    let io = |nr| {
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
        )
    };
    // The write puts back the byte just read: it proves writability without
    // changing the value.
    io(Sysno::process_vm_readv) == Ok(1) && io(Sysno::process_vm_writev) == Ok(1)
}

/// Arms Syscall User Dispatch for the calling thread.
///
/// # Safety
/// `selector` must stay valid, readable and writable for as long as the
/// thread stays armed (the kernel reads it at every syscall; an unmapped
/// selector kills the thread with SIGSEGV), and it must only ever hold
/// [`Selector::Allow`] or [`Selector::Block`]. Without a SIGSYS handler that
/// can handle dispatch, the first dispatched syscall kills the process.
pub unsafe fn arm(region: Region, selector: *mut Selector) -> Result<()> {
    region.validate()?;
    let sel = selector as usize;
    if !byte_is_accessible(sel) {
        return Err(Error::SelectorUnreadable(sel));
    }
    let (mode, start, len) = match region {
        Region::Exclusive { start, len } => (PR_SYS_DISPATCH_EXCLUSIVE_ON, start, len),
        Region::Inclusive { start, len } => (PR_SYS_DISPATCH_INCLUSIVE_ON, start, len),
    };
    prctl_dispatch(mode, start, len, sel).map_err(|e| map_arm_error(e, region, sel))
}

/// Switches dispatch off for the calling thread. Must be called with the
/// selector on ALLOW (or from an excluded address), like any syscall.
pub fn disarm() -> Result<()> {
    prctl_dispatch(PR_SYS_DISPATCH_OFF, 0, 0, 0).map_err(|errno| match errno {
        Errno::EINVAL => Error::Unsupported,
        Errno::EPERM | Errno::EACCES => Error::RefusedByPolicy(errno),
        errno => Error::Os {
            op: "prctl(PR_SYS_DISPATCH_OFF)",
            errno,
        },
    })
}

/// Issues `prctl(PR_SET_SYSCALL_USER_DISPATCH, ...)` with raw, unchecked
/// arguments and returns the kernel's errno: for tests that show the kernel
/// rejects what [`Region::validate`] rejects.
pub fn raw_prctl(
    mode: u32,
    offset: usize,
    len: usize,
    selector: usize,
) -> std::result::Result<(), Errno> {
    prctl_dispatch(mode, offset, len, selector)
}
