//! `sud-engine` catches the system calls of foreign code running in your
//! process with Linux Syscall User Dispatch (SUD) and hands each one to Rust
//! hooks. It owns SIGSYS, arms threads, keeps the per-thread selector (the
//! one-byte switch between host and foreign personality) and runs the
//! dispatch core: filter, pre-hooks, execution or emulation, post-hooks.
//!
//! **The one rule for hook authors: hooks run inside a SIGSYS handler**,
//! often while the interrupted code holds libc's locks (it may be inside
//! `malloc`, which traps on `mmap` and `brk`). A hook must not allocate, lock
//! anything the interrupted code could hold, or rely on unwinding (a panic
//! aborts the process with a message naming the syscall). Syscalls from a
//! hook run directly (the selector is ALLOW while hooks run).
//!
//! ```
//! use sud_engine::{selector, Engine, Selector, SyscallSet, Sysno, Verdict};
//! use syscalls::Errno;
//! let engine = Engine::builder()
//!     .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
//!     .pre_hook(|_call| Verdict::Fail(Errno::EPERM))
//!     .install()?;
//! {
//!     let _foreign = selector::enter(Selector::Block); // syscalls now trap
//!     // SAFETY: getppid has no preconditions.
//!     assert_eq!(unsafe { libc::getppid() }, -1);
//! }
//! assert_eq!(engine.count(Sysno::getppid), 1);
//! # Ok::<(), sud_engine::Error>(())
//! ```
//!
//! SUD is not a security boundary: code in the process can flip the
//! selector or jump into the excluded region. Use seccomp to enforce.

mod arch;
mod counters;
mod dispatch;
mod engine;
mod error;
mod filter;
mod hooks;
pub mod kernel;
pub mod ptrace;
pub mod selector;
mod signal;
mod sys;

pub use counters::{CounterSnapshot, Entrance};
pub use engine::{
    direct_entry, direct_entry_clones_at_site, direct_entry_deferring, gadget_bytes, Builder,
    DirectFrame, Engine, Placement, EXECUTE_AT_SITE, EXECUTE_IN_STUB, GADGET_IMAGE_LEN,
};
pub use error::{Error, RegionProblem, Result};
pub use filter::{SyscallSet, TRACKED_NUMBERS};
pub use hooks::{errno_of, PostHook, PreHook, Syscall, Verdict};
pub use kernel::{Region, Support};
pub use selector::{selector_location, Selector, SelectorLocation};
pub use sys::raw_syscall;
pub use syscalls::{Errno, Sysno};
