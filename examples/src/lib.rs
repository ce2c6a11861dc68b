//! Tools and demos built on sud-engine (see src/bin), and the preload
//! library they share.
//!
//! Building this package builds `libsud_examples.so` next to the tools (the
//! lib is also a cdylib). `sudtrace`, `syscount` and `sudfault` start the
//! program with that library in `LD_PRELOAD`; its constructor installs the
//! engine in the program, so every syscall of every thread (and, when
//! followed, of every child process) traps into the tool's hooks, without
//! ptrace. Syscall User Dispatch is not a security boundary: these tools
//! observe and perturb cooperative programs, they confine nothing.

pub mod config;
#[cfg(target_arch = "x86_64")]
mod dbi_collect;
#[cfg(target_arch = "x86_64")]
mod dbi_follow;
pub mod launcher;
pub mod loader;
pub mod options;
mod preload;
pub mod report;
pub mod text;
mod tracer;
