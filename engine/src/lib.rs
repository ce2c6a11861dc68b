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
//!
//! # What the program sees, and what it cannot see
//!
//! Every armed thread gets an engine-owned *thread block*: its SIGSYS stack
//! (the kernel's alternate stack for the thread, `SA_ONSTACK`) with the
//! thread's engine state at a fixed place after it. The trap path finds
//! that state from the stack it runs on, never through the program's TLS or
//! `fs`, and writes nothing on the interrupted stack (a trap's frame and the
//! hooks live on the engine's stack). What the program asks of the kernel
//! objects the engine needs is kept virtually, with the kernel's checks and
//! answers: its SIGSYS action and mask, its alternate stack
//! (`sigaltstack`), its own Syscall User Dispatch (`prctl`; dispatched calls
//! reach its SIGSYS handler after the engine's hooks), and with
//! [`Builder::foreign_signal_handlers`] its signal handlers, which are
//! entered through a frame built where the kernel would have put it (on the
//! program's alternate stack for `SA_ONSTACK`), returning through a
//! restorer that unwinders recognise. `vfork` keeps vfork semantics,
//! `CLONE_CLEAR_SIGHAND` children keep the engine's handler, a `CLONE_VM`
//! child without TLS of its own gets a selector of its own, and SIGSYS
//! ignored or blocked is passed on over `execve`.
//!
//! With [`Builder::rewrite_sites`] (x86-64), a trapped `mov eax, imm32;
//! syscall` site is rewritten on its first trap: the `mov` becomes a jump
//! to a per-site trampoline that calls the dispatch core without a signal
//! ([`Entrance::Rewritten`]) and executes the call from the excluded
//! region, keeping the syscall ABI (rax, rcx, r11, every other register,
//! the flags, the red zone and the vector state). Calls the trap path
//! emulates against its signal frame (signal masks, actions and stacks,
//! sigreturn, the clone family, exec, exit) keep trapping.
//!
//! What cannot be made transparent, and why:
//! - The engine's mappings (two gadget pages, one 256 KiB block per armed
//!   thread, counter pages) appear in `/proc/self/maps`, and the real
//!   alternate stack seen from outside (a debugger, `/proc`) is the engine's.
//! - A signal that arrives while the engine runs a blocking call for the
//!   program (`futex`, `read`, `wait4` execute inside the SIGSYS handler)
//!   interrupts the engine: the handler's context (`uc_mcontext`) holds the
//!   engine's registers, not the program's syscall site with `-EINTR`, and a
//!   handler without `SA_ONSTACK` runs on the engine's stack. Handlers that
//!   only read `si_*`, or that modify the context of faults they caused
//!   themselves, are unaffected.
//! - Which thread takes a process-directed signal: a trap ends with an
//!   `rt_sigreturn`, and the kernel then hands that thread any signal
//!   pending for the process, where natively it would have woken the
//!   thread it chose (often the main thread, asleep in a blocking call).
//!   POSIX allows either; a program whose main thread waits for signals
//!   in a blocking call sees them later (Python's handlers, which run on
//!   the main thread, run fewer times for a burst of signals). Returning
//!   from traps without `rt_sigreturn` would fix it.
//! - A ptracer (gdb, strace) sees the SIGSYS stops of every trap.
//! - A vfork child's calls are reported with its parent's tid (it runs on
//!   its parent's state while the parent waits); with a code cache as the
//!   excluded region ([`Placement::Excluded`]) or in inclusive mode, vfork
//!   runs with fork semantics (the trap-back page it needs is the engine's
//!   own two-page placement). Post-hooks do not see the result of calls
//!   re-issued at their site (thread clones, `rt_sigreturn`); a vfork's
//!   result reaches them when the parent resumes.
//! - `int 0x80` from 64-bit code runs as natively but without hooks (the
//!   hooks speak the 64-bit table); it is counted in
//!   [`CounterSnapshot::compat`].
//! - Signal actions set in a `CLONE_VM` child that does not share its
//!   parent's handler table (a vfork child calling `sigaction`) change the
//!   engine's record of the parent's wrapped handlers, which live in the
//!   shared memory.
//! - Handing an ignored SIGSYS over `execve` sets the real action to
//!   "ignore" for the duration of the call: a dispatch trap in another
//!   thread during that window kills the process.
//! - Without `foreign_signal_handlers`, the program's handlers are not
//!   wrapped: an `SA_ONSTACK` handler runs on the engine's stack.
//! - Rewritten sites: the program reading its own code sees the `jmp`;
//!   the trampoline chunks appear in `/proc/self/maps`; hooks of a
//!   rewritten call run on the program's stack (below its red zone), not
//!   the engine's, and a signal arriving while they run finds the
//!   selector on ALLOW, as for the direct entrance; a `CLONE_VM` child
//!   without TLS of its own reaches its parent's selector through `fs`,
//!   so its rewritten calls follow the parent's personality. See
//!   `rewrite.rs` for how the code is written (`/proc/self/mem`).

// Leaves first: raw syscalls, the ISA, the filter, per-thread state, user
// memory; then the dispatch core; then the entrances (trap, direct) and
// the kernel objects the engine virtualizes (signal actions, alternate
// stacks, clone); `engine` (builder, install) on top.
mod altstack;
mod arch;
mod clone;
mod counters;
mod deliver;
mod dispatch;
mod engine;
mod error;
mod filter;
mod hooks;
pub mod kernel;
mod nested;
pub mod ptrace;
#[cfg(target_arch = "x86_64")]
mod rewrite;
pub mod selector;
mod sigaction;
mod sys;
mod thread;
mod trap;
mod usermem;

pub use counters::{CounterSnapshot, Entrance};
pub use deliver::{set_frame_hooks, FrameHooks};
pub use dispatch::abort_on_hook_panic;
pub use engine::{
    direct_entry, direct_entry_clones_at_site, direct_entry_deferring, gadget_bytes, Builder,
    DirectFrame, Engine, Placement, EXECUTE_AT_SITE, EXECUTE_IN_STUB, GADGET_IMAGE_LEN,
};
pub use error::{Error, RegionProblem, Result};
pub use filter::{SyscallSet, TRACKED_NUMBERS};
pub use hooks::{
    errno_of, hook_words, in_strict_mode, DeliveredSignal, HookWords, PostHook, PreHook,
    SignalHook, Syscall, Verdict, HOOK_WORDS,
};
pub use kernel::{Region, Support};
pub use selector::{selector_location, Selector, SelectorLocation};
pub use sys::raw_syscall;
pub use syscalls::{Errno, Sysno};
