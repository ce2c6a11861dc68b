//! The probes: one per boundary crossing, each with its JSON key, the
//! stage it needs, how it is measured (the text the report prints), and the
//! batch of operations it times. Adding a crossing is adding a variant here.

use crate::child::Amount;
use crate::error::Result;
use crate::floor::{self, Flags};
use crate::rig;
use crate::sample::timed;
use crate::sys::{self, EMPTY_HOOK_NR, PASS_HOOK_NR, UNWATCHED_NR};
use crate::{ptrace, seccomp};
use std::hint::black_box;
use std::time::Duration;
use sud_engine::{selector, DirectFrame, Selector};

/// Whether a probe's figure belongs to the contract (the JSON object) or
/// only explains where time goes (the report's diagnostics table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A key of the JSON object.
    Contract,
    /// Evidence for the report, not in the JSON object.
    Diagnostic,
}

/// What the measuring thread must look like while a probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// Syscall User Dispatch off for the thread.
    DispatchOff,
    /// The bare-kernel floor's handler and arming ([`floor::Session`]).
    Floor(Flags),
    /// The benches' engine installed and the thread armed ([`rig::engine`]).
    Engine,
    /// Measured in a forked child; nothing to prepare here.
    Child,
    /// Not measurable on this architecture (sud-codegen's direct stubs are
    /// x86-64 only).
    Pending,
}

/// One measured crossing. [`Probe::key`] names it, [`Probe::method`]
/// says how it is measured.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Probe {
    RawSyscall,
    RawGetpid,
    ArmedAllowSyscall,
    ExcludedRegionSyscall,
    TrapFloor,
    TrapEngineEmptyHook,
    TrapEnginePassHook,
    TrapEngineUnwatched,
    DirectHook,
    SelectorFlipPair,
    GuardEnterExit,
    PrctlOnOffPair,
    SeccompTrap,
    PtraceSyscall,
    SelectorStorePair,
    FloorDeferring,
    FloorEngineFlags,
    EngineDirectEntrance,
    DirectHookFullVectors,
    RewrittenSite,
    RewrittenSiteUnwatched,
}

impl Probe {
    /// Every probe, in report order.
    pub const ALL: [Probe; 21] = [
        Probe::RawSyscall,
        Probe::RawGetpid,
        Probe::ArmedAllowSyscall,
        Probe::ExcludedRegionSyscall,
        Probe::TrapFloor,
        Probe::TrapEngineEmptyHook,
        Probe::TrapEnginePassHook,
        Probe::TrapEngineUnwatched,
        Probe::DirectHook,
        Probe::SelectorFlipPair,
        Probe::GuardEnterExit,
        Probe::PrctlOnOffPair,
        Probe::SeccompTrap,
        Probe::PtraceSyscall,
        Probe::SelectorStorePair,
        Probe::FloorDeferring,
        Probe::FloorEngineFlags,
        Probe::EngineDirectEntrance,
        Probe::DirectHookFullVectors,
        Probe::RewrittenSite,
        Probe::RewrittenSiteUnwatched,
    ];

    /// The probe's name: its JSON key for contract probes.
    pub const fn key(self) -> &'static str {
        match self {
            Probe::RawSyscall => "raw_syscall",
            Probe::RawGetpid => "raw_getpid",
            Probe::ArmedAllowSyscall => "armed_allow_syscall",
            Probe::ExcludedRegionSyscall => "excluded_region_syscall",
            Probe::TrapFloor => "trap_floor",
            Probe::TrapEngineEmptyHook => "trap_engine_empty_hook",
            Probe::TrapEnginePassHook => "trap_engine_pass_hook",
            Probe::TrapEngineUnwatched => "trap_engine_unwatched",
            Probe::DirectHook => "direct_hook",
            Probe::SelectorFlipPair => "selector_flip_pair",
            Probe::GuardEnterExit => "guard_enter_exit",
            Probe::PrctlOnOffPair => "prctl_on_off_pair",
            Probe::SeccompTrap => "seccomp_trap",
            Probe::PtraceSyscall => "ptrace_syscall",
            Probe::SelectorStorePair => "diag_selector_store_pair",
            Probe::FloorDeferring => "diag_floor_deferring",
            Probe::FloorEngineFlags => "diag_floor_engine_flags",
            Probe::EngineDirectEntrance => "diag_engine_direct_entrance",
            Probe::DirectHookFullVectors => "diag_direct_hook_full_vectors",
            Probe::RewrittenSite => "rewritten_site",
            Probe::RewrittenSiteUnwatched => "diag_rewritten_site_unwatched",
        }
    }

    /// Contract or diagnostic.
    pub const fn role(self) -> Role {
        match self {
            Probe::SelectorStorePair
            | Probe::FloorDeferring
            | Probe::FloorEngineFlags
            | Probe::EngineDirectEntrance
            | Probe::DirectHookFullVectors
            | Probe::RewrittenSiteUnwatched => Role::Diagnostic,
            _ => Role::Contract,
        }
    }

    /// The stage the probe needs.
    pub const fn setting(self) -> Setting {
        match self {
            Probe::RawSyscall | Probe::RawGetpid | Probe::PrctlOnOffPair => Setting::DispatchOff,
            Probe::TrapFloor => Setting::Floor(Flags::Floor),
            Probe::FloorDeferring => Setting::Floor(Flags::Deferring),
            Probe::FloorEngineFlags => Setting::Floor(Flags::LikeEngine),
            Probe::SeccompTrap | Probe::PtraceSyscall => Setting::Child,
            // sud-codegen's direct stubs exist for x86-64 only.
            Probe::DirectHook
            | Probe::DirectHookFullVectors
            | Probe::RewrittenSite
            | Probe::RewrittenSiteUnwatched
                if !cfg!(target_arch = "x86_64") =>
            {
                Setting::Pending
            }
            _ => Setting::Engine,
        }
    }

    /// How the probe is measured, for the report.
    pub const fn method(self) -> &'static str {
        match self {
            Probe::RawSyscall => "A `syscall` instruction with an unknown number (1000), dispatch off: the kernel answers ENOSYS at once. The baseline of every ratio.",
            Probe::RawGetpid => "`getpid` by a raw `syscall` instruction, dispatch off: the cheapest real syscall.",
            Probe::ArmedAllowSyscall => "The unknown number issued by a thread the engine armed, selector ALLOW: the tax dispatch puts on every host syscall.",
            Probe::ExcludedRegionSyscall => "The unknown number issued through `Engine::syscall_gadget()` (an `extern \"C\"` function inside the excluded region) with the selector on BLOCK: the engine's own way to make syscalls from foreign personality, call overhead included.",
            Probe::TrapFloor => "The kernel's floor for a trap, no engine: a SIGSYS handler written against the kernel in this crate (raw `rt_sigaction` with `SA_SIGINFO | SA_RESTORER | SA_NODEFER`, the cheapest flags, see `diag_floor_deferring`; restorer in its own excluded page, its own prctl and selector byte) that sets the selector to ALLOW, executes the trapped call, writes rax and sets BLOCK again. The selector is BLOCK and the unknown number traps. Installed for each round and removed afterwards (the engine's handler and arming are put back), so floor and engine rounds interleave.",
            Probe::TrapEngineEmptyHook => "The engine's trap path for a watched number (1001) with one pre-hook that returns `Verdict::Run`: SIGSYS, filter, hook, execution through the engine, sigreturn through its restorer.",
            Probe::TrapEnginePassHook => "As `trap_engine_empty_hook` for number 1002, whose pre-hook answers `Verdict::RunWith` with the same arguments (the hook passes with changed arguments).",
            Probe::TrapEngineUnwatched => "The engine's trap path for a number its filter does not contain (1000): no hook runs, the call executes at once.",
            Probe::DirectHook => "sud-codegen's direct path, through its own bench loop (`sud_codegen::bench::DirectSiteLoop`) in the code cache the engine excludes: the selector goes to BLOCK, then each iteration is a translated syscall site (`lea rsp,[rsp-128]; call stub`) for the watched number 1001, whose `DirectStub` (`VectorState::Sse`) saves what the `syscall` instruction keeps, flips to ALLOW and enters `sud_engine::direct_entry`: counters, filter, the empty pre-hook, execution. Compare with `trap_engine_empty_hook` (same hook, by signal) and `armed_allow_syscall` (the syscall alone).",
            Probe::SelectorFlipPair => "`selector::set(Block)` then `selector::set(Allow)` on an armed thread: the personality switch as the engine's API performs it, inlined into the loop.",
            Probe::GuardEnterExit => "`selector::enter(Selector::Block)` and dropping the guard: the scoped personality switch.",
            Probe::PrctlOnOffPair => "`prctl(PR_SET_SYSCALL_USER_DISPATCH, ON, ...)` then `prctl(..., OFF)`: the alternative to a selector flip, on a thread otherwise not armed.",
            Probe::SeccompTrap => "A seccomp `SECCOMP_RET_TRAP` round trip in a forked child whose filter traps the unknown number; its SIGSYS handler writes `-ENOSYS` (it cannot execute the call: the filter would trap it again). Samples come back through a pipe.",
            Probe::PtraceSyscall => "A `PTRACE_SYSCALL` stop pair: the parent traces a forked child and resumes it at every stop; the child times its own loop of the unknown number. Per syscall as the traced child sees it: entry and exit stop, with tracer and child sharing the pinned CPU.",
            Probe::SelectorStorePair => "Two volatile byte stores (BLOCK, ALLOW) to the selector's address from `selector_location()`: what generated code emits, for comparison with `selector_flip_pair`.",
            Probe::FloorDeferring => "The floor without `SA_NODEFER`, as a plain `sigaction` would install it: the kernel blocks SIGSYS at delivery and unblocks it at sigreturn, two signal-mask changes under the signal lock.",
            Probe::FloorEngineFlags => "The floor with the engine's `sa_flags` (`SA_ONSTACK` added; the main thread has Rust's alternate signal stack, so the frame goes there): separates the cost of the flags from the cost of the engine's handler code.",
            Probe::DirectHookFullVectors => "`direct_hook` with a stub that saves all vector state (`VectorState::Full`, an `xsavec`/`xrstor` pair): what exact `syscall` semantics cost on this CPU.",
            Probe::RewrittenSite => "A `mov eax, 1001; syscall` site in this crate, rewritten by the engine (`Builder::rewrite_sites`) on its first trap: each iteration jumps to the site's trampoline, whose common stub saves what `syscall` keeps (all vector state with `xsavec` where the CPU has it), flips to ALLOW, runs the dispatch core (counters, filter, the empty pre-hook) and executes the call from the excluded region. Target: at most `armed_allow_syscall` + 20 ns.",
            Probe::RewrittenSiteUnwatched => "`rewritten_site` for the unwatched number 1000 (no hook sees it): the stub saves only xmm0-15 and MXCSR, as `direct_hook` does.",
            Probe::EngineDirectEntrance => "`sud_engine::direct_entry` for the watched number 1001 with the selector on ALLOW: the engine's dispatch core (counters, filter, empty hook, execution) without a signal. Minus `armed_allow_syscall`, it is the dispatch core's own cost.",
        }
    }

    /// Times `n` operations on the calling thread, inside the probe's
    /// stage. Not for [`Setting::Child`] or [`Setting::Pending`] probes
    /// (they answer zero).
    pub fn batch(self, n: u64) -> Result<Duration> {
        Ok(match self {
            Probe::RawSyscall | Probe::ArmedAllowSyscall => syscalls_batch(n, UNWATCHED_NR),
            Probe::RawGetpid => syscalls_batch(n, syscalls::Sysno::getpid.id() as u64),
            Probe::ExcludedRegionSyscall => gadget_batch(n, rig::engine()?.syscall_gadget()),
            Probe::TrapFloor | Probe::FloorDeferring | Probe::FloorEngineFlags => {
                floor::trap_batch(n)
            }
            Probe::TrapEngineEmptyHook => trap_batch(n, EMPTY_HOOK_NR),
            Probe::TrapEnginePassHook => trap_batch(n, PASS_HOOK_NR),
            Probe::TrapEngineUnwatched => trap_batch(n, UNWATCHED_NR),
            Probe::SelectorFlipPair => timed(n, || {
                selector::set(Selector::Block);
                selector::set(Selector::Allow);
            }),
            Probe::GuardEnterExit => timed(n, || drop(selector::enter(Selector::Block))),
            Probe::PrctlOnOffPair => floor::prctl_pair_batch(n)?,
            Probe::SelectorStorePair => store_pair_batch(n),
            Probe::EngineDirectEntrance => direct_entrance_batch(n),
            Probe::DirectHook => direct_batch(n, Vectors::Sse)?,
            Probe::DirectHookFullVectors => direct_batch(n, Vectors::Full)?,
            Probe::RewrittenSite => rewritten_batch(n, RewriteSite::Watched)?,
            Probe::RewrittenSiteUnwatched => rewritten_batch(n, RewriteSite::Unwatched)?,
            Probe::SeccompTrap | Probe::PtraceSyscall => Duration::ZERO,
        })
    }

    /// Measures a [`Setting::Child`] probe in its forked child.
    pub fn in_child(self, amount: Amount) -> Result<Vec<f64>> {
        match self {
            Probe::SeccompTrap => seccomp::measure(amount),
            Probe::PtraceSyscall => ptrace::measure(amount),
            _ => Ok(Vec::new()),
        }
    }
}

/// Which vector state a direct stub saves (mirrors
/// `sud_codegen::VectorState`, which exists on x86-64 only).
#[derive(Debug, Clone, Copy)]
enum Vectors {
    Sse,
    Full,
}

/// `n` direct-call sites of [`EMPTY_HOOK_NR`] in sud-codegen's site loop.
#[cfg(target_arch = "x86_64")]
fn direct_batch(n: u64, vectors: Vectors) -> Result<Duration> {
    let site_loop = rig::direct_site_loop(match vectors {
        Vectors::Sse => sud_codegen::VectorState::Sse,
        Vectors::Full => sud_codegen::VectorState::Full,
    })?;
    let start = std::time::Instant::now();
    // SAFETY: the loop issues the unknown number 1001, which the engine's
    // empty hook lets run and the kernel answers with ENOSYS: no effect.
    black_box(unsafe { site_loop.run(n, black_box(EMPTY_HOOK_NR)) });
    Ok(start.elapsed())
}

/// No direct stubs outside x86-64: the probe is pending there.
#[cfg(not(target_arch = "x86_64"))]
fn direct_batch(_n: u64, _vectors: Vectors) -> Result<Duration> {
    Ok(Duration::ZERO)
}

// The site the engine rewrites: its `mov` fits one aligned word.
#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl sud_benches_rewritable_site",
    "sud_benches_rewritable_site:",
    "mov eax, 1001",
    "syscall",
    "ret",
    ".p2align 4",
    ".globl sud_benches_rewritable_site_unwatched",
    "sud_benches_rewritable_site_unwatched:",
    "mov eax, 1000",
    "syscall",
    "ret",
);

/// Which rewritable site a probe times.
#[derive(Debug, Clone, Copy)]
enum RewriteSite {
    Watched,
    Unwatched,
}

#[cfg(target_arch = "x86_64")]
extern "C" {
    /// Issues number 1001 ([`EMPTY_HOOK_NR`]) from a rewritable site.
    fn sud_benches_rewritable_site() -> i64;
    /// Issues number 1000 ([`UNWATCHED_NR`]) from a rewritable site.
    fn sud_benches_rewritable_site_unwatched() -> i64;
}

/// `n` calls of a site the engine rewrote (its first call traps and
/// rewrites it, outside the timing).
#[cfg(target_arch = "x86_64")]
fn rewritten_batch(n: u64, which: RewriteSite) -> Result<Duration> {
    let engine = rig::engine()?;
    let site = match which {
        RewriteSite::Watched => sud_benches_rewritable_site,
        RewriteSite::Unwatched => sud_benches_rewritable_site_unwatched,
    };
    let _foreign = selector::enter(Selector::Block);
    // SAFETY: the sites issue unknown numbers (1001, 1000), which the
    // engine lets run and the kernel answers with ENOSYS: no effect.
    black_box(unsafe { site() });
    let rewritten = engine.counters().rewritten;
    // SAFETY: as above.
    black_box(unsafe { site() });
    if engine.counters().rewritten == rewritten {
        return Err(crate::error::BenchError::Setup(
            "the engine did not rewrite the bench site".into(),
        ));
    }
    Ok(timed(n, || {
        // SAFETY: as above.
        black_box(unsafe { site() });
    }))
}

#[cfg(not(target_arch = "x86_64"))]
fn rewritten_batch(_n: u64, _which: RewriteSite) -> Result<Duration> {
    Ok(Duration::ZERO)
}

fn syscalls_batch(n: u64, nr: u64) -> Duration {
    timed(n, || {
        black_box(sys::raw0(black_box(nr)));
    })
}

/// The engine's syscall gadget: `extern "C" fn(nr, a0, .., a5) -> i64`.
type Gadget = extern "C" fn(u64, u64, u64, u64, u64, u64, u64) -> i64;

fn gadget_batch(n: u64, gadget: usize) -> Duration {
    // SAFETY: `Engine::syscall_gadget` documents this address as an
    // `extern "C" fn(nr, a0..a5) -> i64` living in the engine's executable
    // gadget page for the life of the process.
    let gadget: Gadget = unsafe { std::mem::transmute::<usize, Gadget>(gadget) };
    let _foreign = selector::enter(Selector::Block);
    timed(n, || {
        black_box(gadget(black_box(UNWATCHED_NR), 0, 0, 0, 0, 0, 0));
    })
}

/// `n` syscalls of `nr` that trap into the engine (selector BLOCK).
fn trap_batch(n: u64, nr: u64) -> Duration {
    let _foreign = selector::enter(Selector::Block);
    syscalls_batch(n, nr)
}

fn store_pair_batch(n: u64) -> Duration {
    let byte = selector::selector_location().address as *mut u8;
    timed(n, || {
        // SAFETY: `byte` is the calling thread's selector (static TLS, alive
        // for the thread's life); BLOCK then ALLOW are the two values the
        // kernel accepts, and no syscall happens between the stores.
        unsafe {
            byte.write_volatile(Selector::Block as u8);
            byte.write_volatile(Selector::Allow as u8);
        }
    })
}

fn direct_entrance_batch(n: u64) -> Duration {
    let frame = DirectFrame {
        nr: EMPTY_HOOK_NR,
        args: [0; 6],
        call_addr: 0,
    };
    timed(n, || {
        black_box(sud_engine::direct_entry(black_box(&frame)));
    })
}
