//! Counters the engine keeps on every entrance: relaxed atomics, so they are
//! readable at any time from any thread without a lock and cost a few
//! nanoseconds on a path that costs microseconds.

use crate::filter::TRACKED_NUMBERS;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// How a syscall reached the dispatch core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entrance {
    /// The kernel raised SIGSYS (Syscall User Dispatch).
    Trap,
    /// Generated code called the dispatch core directly (no signal).
    Direct,
}

/// The per-number counters count both entrances; the trap total is derived
/// from them (`sum - direct`) so a trap pays for one locked increment, not two.
pub(crate) struct Counters {
    direct: AtomicU64,
    hooked: AtomicU64,
    forwarded: AtomicU64,
    per_number: [AtomicU64; TRACKED_NUMBERS + 1],
}

impl Counters {
    pub(crate) const fn new() -> Self {
        Counters {
            direct: AtomicU64::new(0),
            hooked: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            per_number: [const { AtomicU64::new(0) }; TRACKED_NUMBERS + 1],
        }
    }

    #[inline]
    pub(crate) fn entered(&self, entrance: Entrance, nr: u64) {
        if entrance == Entrance::Direct {
            self.direct.fetch_add(1, Relaxed);
        }
        self.per_number[slot(nr)].fetch_add(1, Relaxed);
    }

    #[inline]
    pub(crate) fn hooked(&self) {
        self.hooked.fetch_add(1, Relaxed);
    }

    #[inline]
    pub(crate) fn forwarded(&self) {
        self.forwarded.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CounterSnapshot {
        // Read the direct total first: a direct call counted in between is
        // then in the sum but not yet subtracted, never the other way round.
        let direct = self.direct.load(Relaxed);
        let all: u64 = self.per_number.iter().map(|c| c.load(Relaxed)).sum();
        CounterSnapshot {
            traps: all.saturating_sub(direct),
            direct,
            hooked: self.hooked.load(Relaxed),
            forwarded_sigsys: self.forwarded.load(Relaxed),
        }
    }

    pub(crate) fn count(&self, nr: u64) -> u64 {
        self.per_number[slot(nr)].load(Relaxed)
    }
}

#[inline]
fn slot(nr: u64) -> usize {
    (nr as usize).min(TRACKED_NUMBERS)
}

/// The engine's totals at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterSnapshot {
    /// Syscalls that arrived by SIGSYS.
    pub traps: u64,
    /// Syscalls that arrived by a direct call from generated code.
    pub direct: u64,
    /// Of both, those the filter watched (hooks ran).
    pub hooked: u64,
    /// SIGSYS signals that did not come from dispatch (seccomp) and were
    /// handed to the application's handler or default action.
    pub forwarded_sigsys: u64,
}
