//! Typed errors: each says what went wrong and what to do about it.

use std::fmt;

pub use syscalls::Errno;

/// Why a region handed to the engine was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionProblem {
    /// `start + len` wraps around the address space.
    Overflow,
    /// An inclusive region must cover at least one byte.
    Empty,
    /// The engine's gadgets must lie inside an excluded region, or they would trap.
    GadgetsOutside,
    /// The engine's gadgets must lie outside an inclusive region, or they would trap.
    GadgetsInside,
}

/// Everything the engine can refuse, with the cause spelled out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The running kernel has no Syscall User Dispatch (pre-5.11, built
    /// without it, or an architecture that lacks generic entry, such as most
    /// arm64 kernels in 2026).
    Unsupported,
    /// The kernel has SUD but not the inclusive mode (added in later kernels).
    InclusiveUnsupported,
    /// Something (a seccomp filter, an LSM) refused the prctl.
    RefusedByPolicy(Errno),
    /// The region cannot be used.
    BadRegion {
        /// First byte of the region.
        start: usize,
        /// Its length in bytes.
        len: usize,
        /// What is wrong with it.
        problem: RegionProblem,
    },
    /// The selector byte cannot be read and written by this thread.
    SelectorUnreadable(usize),
    /// `install` ran before in this process; there is one engine per process.
    AlreadyInstalled,
    /// The call needs an installed engine.
    NotInstalled,
    /// A system call the engine needs failed for a reason it cannot name better.
    Os {
        /// What the engine was doing.
        op: &'static str,
        /// The kernel's answer.
        errno: Errno,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unsupported => write!(
                f,
                "this kernel has no Syscall User Dispatch (needs Linux >= 5.11 on x86-64 with \
                 CONFIG_GENERIC_ENTRY; most arm64 kernels lack it): run on such a kernel, or use \
                 seccomp/ptrace instead"
            ),
            Error::InclusiveUnsupported => write!(
                f,
                "this kernel supports exclusive dispatch only (PR_SYS_DISPATCH_INCLUSIVE_ON was \
                 refused): use an exclusive region, or a newer kernel"
            ),
            Error::RefusedByPolicy(e) => write!(
                f,
                "arming Syscall User Dispatch was refused ({}): a seccomp filter or security module \
                 forbids prctl(PR_SET_SYSCALL_USER_DISPATCH); lift that policy for this process",
                errno_name(*e)
            ),
            Error::BadRegion {
                start,
                len,
                problem,
            } => {
                let what = match problem {
                    RegionProblem::Overflow => "start + len wraps around the address space",
                    RegionProblem::Empty => "an inclusive region needs at least one byte",
                    RegionProblem::GadgetsOutside => {
                        "an excluded region must contain the engine's gadgets (write \
                         sud_engine::gadget_bytes() into it and pass their address)"
                    }
                    RegionProblem::GadgetsInside => {
                        "an inclusive region must not contain the engine's gadget page"
                    }
                };
                write!(f, "bad region {start:#x}+{len:#x}: {what}")
            }
            Error::SelectorUnreadable(addr) => write!(
                f,
                "selector byte at {addr:#x} is not readable and writable by this thread: point it \
                 at mapped, writable memory that lives as long as the thread"
            ),
            Error::AlreadyInstalled => write!(
                f,
                "the sud engine is already installed in this process: install once and keep the \
                 returned &'static Engine"
            ),
            Error::NotInstalled => write!(f, "no sud engine is installed: call Engine::builder()...install() first"),
            Error::Os { op, errno } => write!(f, "{op} failed: {}", errno_name(*errno)),
        }
    }
}

impl std::error::Error for Error {}

fn errno_name(e: Errno) -> String {
    match (e.name(), e.description()) {
        (Some(n), Some(d)) => format!("{n}: {d}"),
        _ => format!("errno {}", e.into_raw()),
    }
}

/// Result alias for the engine.
pub type Result<T> = std::result::Result<T, Error>;
