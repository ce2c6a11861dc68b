//! What the translator remembers about its blocks so that it can take
//! them back: per block, the native bytes it came from, where its code is,
//! its exits and the exits of other blocks linked into it; which native
//! ranges hold translated code (a coarse filter, so that the many
//! `munmap`s of a program's heap cost one probe each); which ranges are
//! writable and executable at once (blocks from there verify their bytes
//! on entry); and the reclamation of dead blocks' code.
//!
//! # Reclaiming code no thread is inside
//! An invalidated block is unreachable at once (its map entries are gone,
//! every branch linked into it and out of it points back at an exit stub),
//! but a thread may still be inside it: between two of its instructions,
//! or in a call out of it (a syscall that blocks, the translator, a
//! callout), to which it returns. Its code is put in limbo with the epoch
//! after the invalidation. Each thread publishes, in a table of its own
//! slot, the epoch it last saw at a point where it was in none of the
//! blocks (a lookup miss, which runs in the shared lookup stub; entering
//! [`super::Dbi::call`]) or that it is outside translated code (returned
//! from `Dbi::call`). Limbo code whose epoch every live thread has passed
//! is free for new blocks. No lock is involved on the threads' side (one
//! store each), so a thread holding any of the program's locks never
//! stops reclamation by another, only a thread that stays inside
//! translated code without a lookup miss delays it. Threads that exited
//! are found with `tgkill(pid, tid, 0)` and their slots dropped.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::SeqCst};

/// No block / no exit.
pub(crate) const NONE: u32 = u32::MAX;

/// One translated block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockRecord {
    /// Native bytes it was made from: `[native, native_end)`.
    pub(crate) native: u64,
    pub(crate) native_end: u64,
    /// Its code in the cache.
    pub(crate) code: u64,
    pub(crate) code_len: u32,
    /// Its exits: `[first_exit, first_exit + exit_count)` of the exit pool.
    pub(crate) first_exit: u32,
    pub(crate) exit_count: u32,
    /// Its code-offset -> native-offset pairs in the pc pool.
    pub(crate) first_pc: u32,
    pub(crate) pc_count: u32,
    /// Head of the list of exits (of any block) linked into this one.
    pub(crate) incoming: u32,
    /// What the transformer attached to it.
    pub(crate) user_data: u64,
    pub(crate) alive: bool,
}

/// One exit of a block: a patchable rel32 and the stub it points to when
/// not linked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExitRecord {
    pub(crate) field: u64,
    pub(crate) stub: u64,
    pub(crate) block: u32,
    /// The block it is linked to, or NONE.
    pub(crate) target: u32,
    /// Next exit linked into the same target.
    pub(crate) next_in: u32,
    /// An entry of a target cache (see `block.rs`): `field` is its jump's
    /// rel32 and `stub` its 8-aligned native-address immediate, which
    /// unlinking zeroes (the jump is then never taken).
    pub(crate) cache_entry: bool,
}

/// A set of address ranges with a fixed capacity (no allocation after
/// construction). Past the capacity it says "maybe" for everything.
pub(crate) struct RangeSet {
    ranges: Vec<(u64, u64)>,
    overflowed: bool,
}

const RANGES: usize = 512;

impl RangeSet {
    pub(crate) fn new() -> Self {
        RangeSet {
            ranges: Vec::with_capacity(RANGES),
            overflowed: false,
        }
    }

    pub(crate) fn overlaps(&self, start: u64, end: u64) -> bool {
        self.overflowed || self.ranges.iter().any(|&(s, e)| s < end && start < e)
    }

    pub(crate) fn remove(&mut self, start: u64, end: u64) {
        let mut i = 0;
        while i < self.ranges.len() {
            let (s, e) = self.ranges[i];
            if s < end && start < e {
                self.ranges.swap_remove(i);
                if s < start {
                    self.push(s, start);
                }
                if end < e {
                    self.push(end, e);
                }
            } else {
                i += 1;
            }
        }
    }

    pub(crate) fn add(&mut self, start: u64, end: u64) {
        self.remove(start, end);
        self.push(start, end);
    }

    fn push(&mut self, start: u64, end: u64) {
        if self.ranges.len() < self.ranges.capacity() {
            self.ranges.push((start, end));
        } else {
            self.overflowed = true;
        }
    }
}

/// 64 KiB chunks of the address space that hold (or held) the start of a
/// translated or native-left block: an open-addressing set of fixed size,
/// never emptied (it only gets more cautious). Full, it answers "maybe".
pub(crate) struct Chunks {
    keys: Vec<u64>,
    len: usize,
}

const CHUNK_SHIFT: u32 = 16;
const CHUNK_SLOTS: usize = 1 << 14;

impl Chunks {
    pub(crate) fn new() -> Self {
        Chunks {
            keys: vec![0; CHUNK_SLOTS],
            len: 0,
        }
    }

    fn slot(&self, chunk: u64) -> (usize, bool) {
        let key = chunk + 1;
        let mut i = (chunk as usize).wrapping_mul(0x9e37_79b9) % CHUNK_SLOTS;
        loop {
            match self.keys[i] {
                0 => return (i, false),
                k if k == key => return (i, true),
                _ => i = (i + 1) % CHUNK_SLOTS,
            }
        }
    }

    pub(crate) fn insert(&mut self, start: u64, end: u64) {
        for chunk in start >> CHUNK_SHIFT..=(end.max(start + 1) - 1) >> CHUNK_SHIFT {
            if self.len * 2 >= CHUNK_SLOTS {
                return;
            }
            let (i, present) = self.slot(chunk);
            if !present {
                self.keys[i] = chunk + 1;
                self.len += 1;
            }
        }
    }

    /// Whether `[start, end)` may hold translated code.
    pub(crate) fn may_hold(&self, start: u64, end: u64) -> bool {
        if self.len * 2 >= CHUNK_SLOTS || end <= start {
            return self.len * 2 >= CHUNK_SLOTS;
        }
        let (first, last) = (start >> CHUNK_SHIFT, (end - 1) >> CHUNK_SHIFT);
        if last - first > CHUNK_SLOTS as u64 {
            return true;
        }
        (first..=last).any(|chunk| self.slot(chunk).1)
    }
}

/// Dead code waiting for every thread to leave it, and freed code space.
pub(crate) struct Reclaimer {
    limbo: Vec<(u64, u32, u64)>,
    free: Vec<(u64, u32)>,
    /// Bytes of dead code dropped because the lists were full (leaked
    /// until the next full flush).
    pub(crate) leaked: u64,
}

const RECLAIM_ENTRIES: usize = 1 << 16;

impl Reclaimer {
    pub(crate) fn new() -> Self {
        Reclaimer {
            limbo: Vec::with_capacity(RECLAIM_ENTRIES),
            free: Vec::with_capacity(RECLAIM_ENTRIES),
            leaked: 0,
        }
    }

    pub(crate) fn retire(&mut self, code: u64, len: u32, epoch: u64) {
        if self.limbo.len() < self.limbo.capacity() {
            self.limbo.push((code, len, epoch));
        } else {
            self.leaked += u64::from(len);
        }
    }

    pub(crate) fn limbo_is_empty(&self) -> bool {
        self.limbo.is_empty()
    }

    /// Moves limbo code whose epoch every thread has passed to the free
    /// list; returns the bytes freed.
    pub(crate) fn reclaim(&mut self, safe: u64) -> u64 {
        let mut freed = 0;
        let mut i = 0;
        while i < self.limbo.len() {
            let (code, len, epoch) = self.limbo[i];
            if epoch <= safe {
                self.limbo.swap_remove(i);
                freed += u64::from(len);
                if self.free.len() < self.free.capacity() {
                    self.free.push((code, len));
                } else {
                    self.leaked += u64::from(len);
                }
            } else {
                i += 1;
            }
        }
        freed
    }

    /// A free piece of at least `len` bytes, 16-aligned; the rest of the
    /// piece stays free.
    pub(crate) fn take(&mut self, len: u32) -> Option<(u64, u32)> {
        let i = self.free.iter().position(|&(_, l)| l >= len)?;
        let (code, have) = self.free.swap_remove(i);
        let used = (len + 15) & !15;
        if have > used + 64 {
            self.free.push((code + u64::from(used), have - used));
            return Some((code, used));
        }
        Some((code, have))
    }

    /// Gives back a piece `take` handed out and that was not used.
    pub(crate) fn untake(&mut self, code: u64, len: u32) {
        if self.free.len() < self.free.capacity() {
            self.free.push((code, len));
        }
    }

    /// Forgets everything (after a full flush whose code is all free).
    pub(crate) fn clear(&mut self) {
        self.limbo.clear();
        self.free.clear();
        self.leaked = 0;
    }
}

/// Threads that run translated code: their tid and the epoch they last
/// saw outside every block (see the module documentation).
struct ThreadSlot {
    tid: AtomicI32,
    seen: AtomicU64,
}

const THREAD_SLOTS: usize = 1024;
/// A thread in host code, outside translated code.
const OUTSIDE: u64 = u64::MAX;

static THREADS: [ThreadSlot; THREAD_SLOTS] = [const {
    ThreadSlot {
        tid: AtomicI32::new(0),
        seen: AtomicU64::new(OUTSIDE),
    }
}; THREAD_SLOTS];
/// Bumped by every invalidation; starts at 1 so that 0 is before all.
static EPOCH: AtomicU64 = AtomicU64::new(1);
/// Set when a thread found no free slot: reclamation then waits for a
/// full flush with every tracked thread outside, which it cannot know;
/// so nothing is reclaimed any more.
static UNTRACKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// The calling thread's slot, claimed on first use.
fn my_slot() -> Option<&'static ThreadSlot> {
    super::scratch::with_scratch(|s| {
        let index = s.thread.get();
        if index != 0 {
            return THREADS.get(index as usize - 1);
        }
        let tid = gettid();
        for (i, slot) in THREADS.iter().enumerate() {
            if slot.tid.compare_exchange(0, tid, SeqCst, SeqCst).is_ok() {
                s.thread.set(i as u32 + 1);
                return Some(slot);
            }
        }
        UNTRACKED.store(true, SeqCst);
        None
    })
}

/// The calling thread is at a point outside every block (about to enter
/// translated code, or in the shared lookup).
pub(crate) fn checkpoint() {
    if let Some(slot) = my_slot() {
        slot.seen.store(EPOCH.load(SeqCst), SeqCst);
    }
}

/// The calling thread returned to host code for good.
pub(crate) fn leave() {
    if let Some(slot) = my_slot() {
        slot.seen.store(OUTSIDE, SeqCst);
    }
}

/// A child thread made in translated code has a fresh TLS: its slot
/// index there is zero; claim one (it is inside translated code, at a
/// point where it is in no block but the one that cloned it, which the
/// epoch it reads now already covers only if that block was alive).
pub(crate) fn adopt_current(epoch_of_parent: u64) {
    if let Some(slot) = my_slot() {
        slot.seen.store(epoch_of_parent, SeqCst);
    }
}

/// The current epoch.
pub(crate) fn epoch() -> u64 {
    EPOCH.load(SeqCst)
}

/// Ends an invalidation: returns the epoch its dead code waits for.
pub(crate) fn bump() -> u64 {
    EPOCH.fetch_add(1, SeqCst) + 1
}

/// The oldest epoch a live thread may still be inside code of.
pub(crate) fn safe_epoch() -> u64 {
    if UNTRACKED.load(SeqCst) {
        return 0;
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut safe = OUTSIDE;
    for slot in &THREADS {
        let tid = slot.tid.load(SeqCst);
        if tid == 0 {
            continue;
        }
        let seen = slot.seen.load(SeqCst);
        if seen == OUTSIDE {
            continue;
        }
        // SAFETY: signal 0 only checks that the thread exists.
        let gone = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            // Another thread of that tid would claim a new slot.
            let _ = slot.tid.compare_exchange(tid, 0, SeqCst, SeqCst);
            continue;
        }
        safe = safe.min(seen);
    }
    safe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_set_splits_and_overlaps() {
        let mut set = RangeSet::new();
        set.add(0x1000, 0x5000);
        assert!(set.overlaps(0x4fff, 0x6000));
        set.remove(0x2000, 0x3000);
        assert!(!set.overlaps(0x2000, 0x3000));
        assert!(set.overlaps(0x1fff, 0x2001));
        assert!(set.overlaps(0x3000, 0x3001));
        assert!(!set.overlaps(0x5000, 0x9000));
    }

    #[test]
    fn chunks_filter_ranges() {
        let mut chunks = Chunks::new();
        chunks.insert(0x7f00_1234_5678, 0x7f00_1234_5690);
        assert!(chunks.may_hold(0x7f00_1230_0000, 0x7f00_1240_0000));
        assert!(!chunks.may_hold(0x7f00_2000_0000, 0x7f00_2000_1000));
        assert!(!chunks.may_hold(0x1000, 0x1000));
    }

    #[test]
    fn reclaimer_frees_only_past_epochs_and_splits() {
        let mut r = Reclaimer::new();
        r.retire(0x1000, 0x400, 5);
        r.retire(0x2000, 0x100, 7);
        assert_eq!(r.reclaim(6), 0x400);
        assert_eq!(r.take(0x100), Some((0x1000, 0x100)));
        assert_eq!(r.take(0x300), Some((0x1100, 0x300)));
        assert_eq!(r.take(0x10), None);
        assert_eq!(r.reclaim(7), 0x100);
        assert!(r.limbo_is_empty());
    }
}
