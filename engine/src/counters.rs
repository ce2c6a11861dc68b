//! Counters the engine keeps on every entrance, per thread: each thread
//! counts into its own block with single-instruction increments (no locked
//! operation, no cache line shared with other threads), and readers sum the
//! blocks, so the totals are readable at any time from any thread without a
//! lock.
//!
//! Blocks are mmapped (never malloc: the first count of a thread happens on
//! the trap path) and linked into a push-only list, so a reader never sees
//! one disappear. A thread that exits through a trapped `exit` hands its
//! block back for the next new thread; its counts stay in the totals.

use crate::filter::TRACKED_NUMBERS;
use crate::sys;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, Ordering::*};
use syscalls::Sysno;

/// Where a thread keeps its counter block (in its engine state), null
/// until its first count.
pub(crate) type ThreadCounters = std::cell::Cell<*const CounterBlock>;

/// How a syscall reached the dispatch core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entrance {
    /// The kernel raised SIGSYS (Syscall User Dispatch).
    Trap,
    /// Generated code called the dispatch core directly (no signal).
    Direct,
    /// A syscall site the engine rewrote after its first trap called the
    /// dispatch core through its trampoline (no signal).
    Rewritten,
}

/// One thread's counts. Only the owning thread writes them.
#[repr(C, align(64))]
pub(crate) struct CounterBlock {
    /// The next block in the list; set before the block is published.
    next: *const CounterBlock,
    /// The tid counting into this block, 0 when free for reuse.
    owner: AtomicI32,
    direct: AtomicU64,
    rewritten: AtomicU64,
    hooked: AtomicU64,
    per_number: [AtomicU64; TRACKED_NUMBERS + 1],
}

pub(crate) struct Counters {
    blocks: AtomicPtr<CounterBlock>,
    /// Counts of threads that could not get a block of their own (mmap
    /// failed): shared, so incremented with locked operations.
    overflow: CounterBlock,
    forwarded: AtomicU64,
    compat: AtomicU64,
    patched_sites: AtomicU64,
}

// SAFETY: `next` pointers are written once before publication and only
// read afterwards; every other field is atomic.
unsafe impl Sync for CounterBlock {}
// SAFETY: as above.
unsafe impl Send for CounterBlock {}

impl CounterBlock {
    const fn new() -> Self {
        CounterBlock {
            next: std::ptr::null(),
            owner: AtomicI32::new(0),
            direct: AtomicU64::new(0),
            rewritten: AtomicU64::new(0),
            hooked: AtomicU64::new(0),
            per_number: [const { AtomicU64::new(0) }; TRACKED_NUMBERS + 1],
        }
    }
}

impl Counters {
    pub(crate) const fn new() -> Self {
        Counters {
            blocks: AtomicPtr::new(std::ptr::null_mut()),
            overflow: CounterBlock::new(),
            forwarded: AtomicU64::new(0),
            compat: AtomicU64::new(0),
            patched_sites: AtomicU64::new(0),
        }
    }

    /// Counts one entrance of syscall `nr` on the calling thread.
    #[inline]
    pub(crate) fn entered(&self, thread: &ThreadCounters, entrance: Entrance, nr: u64) {
        self.with_block(thread, |block, bump| {
            match entrance {
                Entrance::Trap => {}
                Entrance::Direct => bump(&block.direct),
                Entrance::Rewritten => bump(&block.rewritten),
            }
            bump(&block.per_number[slot(nr)]);
        })
    }

    /// Counts one call that ran the hooks.
    #[inline]
    pub(crate) fn hooked(&self, thread: &ThreadCounters) {
        self.with_block(thread, |block, bump| bump(&block.hooked))
    }

    /// Counts one 32-bit (`int 0x80`) syscall, run without hooks.
    #[inline]
    pub(crate) fn compat(&self) {
        self.compat.fetch_add(1, Relaxed);
    }

    /// Counts one syscall site rewritten (see `rewrite`, x86-64 only).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn patched_site(&self) {
        self.patched_sites.fetch_add(1, Relaxed);
    }

    #[inline]
    pub(crate) fn forwarded(&self) {
        self.forwarded.fetch_add(1, Relaxed);
    }

    /// Runs `f` on the calling thread's block with the increment that suits
    /// it: the owner-only one for a thread's own block, a locked one for the
    /// shared overflow block.
    #[inline]
    fn with_block(&self, thread: &ThreadCounters, f: impl FnOnce(&CounterBlock, fn(&AtomicU64))) {
        let own = thread.get();
        let own = if own.is_null() {
            self.claim_block(thread)
        } else {
            own
        };
        if own.is_null() {
            f(&self.overflow, |c| {
                c.fetch_add(1, Relaxed);
            });
        } else {
            // SAFETY: blocks are never unmapped; this one is owned by the
            // calling thread, the only writer of its counters.
            f(unsafe { &*own }, crate::arch::bump_owned_counter);
        }
    }

    /// Gives the calling thread a block: a free one from the list, or a new
    /// mapping pushed onto it. Null if no memory could be had.
    #[cold]
    fn claim_block(&self, thread: &ThreadCounters) -> *const CounterBlock {
        let tid = sys::gettid();
        let mut cursor = self.blocks.load(Acquire) as *const CounterBlock;
        while !cursor.is_null() {
            // SAFETY: listed blocks are mapped for the process's life.
            let block = unsafe { &*cursor };
            if block
                .owner
                .compare_exchange(0, tid, Acquire, Relaxed)
                .is_ok()
            {
                return adopt(thread, cursor);
            }
            cursor = block.next;
        }
        let size = std::mem::size_of::<CounterBlock>() as u64;
        let Ok(addr) = sys::call(
            Sysno::mmap,
            [
                0,
                size,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        ) else {
            return std::ptr::null();
        };
        let block = addr as *mut CounterBlock;
        // SAFETY: a fresh, zeroed, page-aligned mapping of the block's size;
        // all-zero is a valid CounterBlock (null next, free owner, zero
        // counts). It is not shared until the push below publishes it.
        unsafe { (*block).owner.store(tid, Relaxed) };
        let mut head = self.blocks.load(Relaxed);
        loop {
            // SAFETY: as above, the block is still private to this thread.
            unsafe { (*block).next = head };
            match self
                .blocks
                .compare_exchange_weak(head, block, Release, Relaxed)
            {
                Ok(_) => return adopt(thread, block),
                Err(now) => head = now,
            }
        }
    }

    /// The calling thread is about to exit: its block becomes free for the
    /// next new thread (its counts stay in the totals).
    pub(crate) fn release_thread_block(&self, thread: &ThreadCounters) {
        let own = thread.replace(std::ptr::null());
        if !own.is_null() {
            // SAFETY: blocks are never unmapped.
            unsafe { &*own }.owner.store(0, Release);
        }
    }

    fn sum(&self, field: impl Fn(&CounterBlock) -> u64) -> u64 {
        let mut total = field(&self.overflow);
        let mut cursor = self.blocks.load(Acquire) as *const CounterBlock;
        while !cursor.is_null() {
            // SAFETY: listed blocks are mapped for the process's life.
            let block = unsafe { &*cursor };
            total += field(block);
            cursor = block.next;
        }
        total
    }

    pub(crate) fn snapshot(&self) -> CounterSnapshot {
        let direct = self.sum(|b| b.direct.load(Relaxed));
        let rewritten = self.sum(|b| b.rewritten.load(Relaxed));
        let all = self.sum(|b| b.per_number.iter().map(|c| c.load(Relaxed)).sum());
        CounterSnapshot {
            traps: all.saturating_sub(direct).saturating_sub(rewritten),
            direct,
            rewritten,
            patched_sites: self.patched_sites.load(Relaxed),
            hooked: self.sum(|b| b.hooked.load(Relaxed)),
            forwarded_sigsys: self.forwarded.load(Relaxed),
            compat: self.compat.load(Relaxed),
        }
    }

    pub(crate) fn sites_and_compat(&self) -> (u64, u64) {
        (self.patched_sites.load(Relaxed), self.compat.load(Relaxed))
    }

    pub(crate) fn count(&self, nr: u64) -> u64 {
        self.sum(|b| b.per_number[slot(nr)].load(Relaxed))
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
    /// Syscalls that arrived through a rewritten site's trampoline.
    pub rewritten: u64,
    /// Syscall sites rewritten so far (see [`crate::Builder::rewrite_sites`]).
    pub patched_sites: u64,
    /// Of all three, those the filter watched (hooks ran).
    pub hooked: u64,
    /// SIGSYS signals that did not come from dispatch (seccomp) and were
    /// handed to the application's handler or default action.
    pub forwarded_sigsys: u64,
    /// 32-bit syscalls (`int 0x80` from 64-bit code) that trapped: they
    /// run as natively, without hooks, which speak the 64-bit table.
    pub compat: u64,
}

fn adopt(thread: &ThreadCounters, block: *const CounterBlock) -> *const CounterBlock {
    thread.set(block);
    block
}
