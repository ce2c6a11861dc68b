//! The block map: native address -> where to run it (a translation in the
//! cache, a return point, or the native address itself for code left
//! native), plus, for the translator only, which block record owns the
//! entry.
//!
//! Open addressing with linear probing over a power-of-two table that
//! grows: translated code (the lookup in the indirect-branch stub) reads
//! it without a lock, following the probe chain until it finds the key or
//! an empty slot, so collisions cost a few loads, not a trip to the
//! translator. The table never wraps: `SPILL` slots after the last home
//! slot take the chains that run past it, and an insert that would reach
//! the last of them grows the table instead.
//!
//! Writers hold the translator's lock. An entry is written value before
//! key; removal writes a tombstone key that matches nothing but does not
//! end a probe chain; a slot's value may be replaced (8-byte stores: a
//! reader sees the old or the new one, and both are valid places to go).
//! Growing builds a new table and publishes it with one store of
//! [`BlockMap::current`]; the generated lookup reads the header through
//! that pointer once per lookup, so it always probes one consistent table.
//! Old tables stay mapped (a thread may still be probing one; they total
//! less than the current one).
//!
//! Keys are stored negated, so the generated code compares with
//! `lea rcx, [rcx + rax]; jrcxz`, which leaves the foreign code's flags
//! alone. Tables are mapped with `mmap` (no malloc: growing happens in the
//! translator, which may run while foreign code holds malloc's lock).

use std::sync::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};

/// Slots a first table has.
const INITIAL_BITS: u32 = 16;
/// Slots after the last home slot for chains that run past it.
const SPILL: usize = 64;
/// Bytes of the header before the slots: the two shift counts the
/// generated code uses (see `stubs.rs`).
pub(crate) const HEADER: usize = 64;
/// A removed entry's key: the negation of an address no block starts at.
const TOMBSTONE: u64 = 1;

/// One slot as the generated code reads it: 16 bytes, key then value.
#[repr(C)]
pub(crate) struct Slot {
    /// The native address, negated; 0 = empty, [`TOMBSTONE`] = removed.
    neg_key: AtomicU64,
    /// Where to jump for it.
    value: AtomicU64,
}

/// One table: header, slots, then the owner of each slot's entry.
struct Table {
    base: *mut u8,
    bits: u32,
    bytes: usize,
}

impl Table {
    fn map(bits: u32) -> Option<Table> {
        let slots = (1usize << bits) + SPILL;
        let bytes = HEADER + slots * (16 + 4);
        // SAFETY: an anonymous private mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let table = Table {
            base: base.cast(),
            bits,
            bytes,
        };
        let shift = 64 - u64::from(bits);
        table.header(0).store(shift, Relaxed);
        table.header(1).store(shift - 4, Relaxed);
        Some(table)
    }

    fn header(&self, word: usize) -> &AtomicU64 {
        // SAFETY: the header's words lie in the mapping, 8-aligned, and are
        // only ever accessed atomically.
        unsafe { &*self.base.add(word * 8).cast::<AtomicU64>() }
    }

    fn slots(&self) -> usize {
        (1usize << self.bits) + SPILL
    }

    fn slot(&self, index: usize) -> &Slot {
        debug_assert!(index < self.slots());
        // SAFETY: `index` is inside the slot array of this live mapping;
        // slots are 16-aligned and accessed only atomically.
        unsafe { &*self.base.add(HEADER + index * 16).cast::<Slot>() }
    }

    fn owner(&self, index: usize) -> &AtomicU32 {
        // SAFETY: as for `slot`; the owners follow the slots, 4-aligned.
        unsafe {
            &*self
                .base
                .add(HEADER + self.slots() * 16 + index * 4)
                .cast::<AtomicU32>()
        }
    }

    fn home(&self, native: u64) -> usize {
        (native & ((1u64 << self.bits) - 1)) as usize
    }
}

/// An entry's owner: a block record's index, or none (code left native,
/// the entry trampoline).
pub(crate) const NO_OWNER: u32 = u32::MAX;

/// See the module documentation.
pub(crate) struct BlockMap {
    /// The header of the current table, for the generated lookup (leaked:
    /// its address is baked into that code).
    current: &'static AtomicU64,
    table: std::sync::atomic::AtomicPtr<Table>,
    len: AtomicU64,
    /// Slots holding tombstones.
    dead: AtomicU64,
}

// SAFETY: the raw table pointers refer to leaked mappings shared by design;
// every access to their contents is atomic.
unsafe impl Send for BlockMap {}
// SAFETY: as above.
unsafe impl Sync for BlockMap {}

impl BlockMap {
    pub(crate) fn new() -> Option<Self> {
        let table = Box::leak(Box::new(Table::map(INITIAL_BITS)?));
        Some(BlockMap {
            current: Box::leak(Box::new(AtomicU64::new(table.base as u64))),
            table: std::sync::atomic::AtomicPtr::new(table),
            len: AtomicU64::new(0),
            dead: AtomicU64::new(0),
        })
    }

    /// Where the generated lookup finds the current table's header.
    pub(crate) fn current_address(&self) -> u64 {
        self.current as *const AtomicU64 as u64
    }

    fn table(&self) -> &Table {
        // SAFETY: `table` always points at a leaked, never-freed Table.
        unsafe { &*self.table.load(Acquire) }
    }

    /// Entries so far.
    pub(crate) fn len(&self) -> u64 {
        self.len.load(Relaxed)
    }

    /// Slots of the current table (home slots only).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> u64 {
        1 << self.table().bits
    }

    fn find(&self, native: u64) -> Option<(&Table, usize)> {
        let table = self.table();
        let want = native.wrapping_neg();
        let mut index = table.home(native);
        while index < table.slots() {
            match table.slot(index).neg_key.load(Acquire) {
                0 => return None,
                k if k == want => return Some((table, index)),
                _ => index += 1,
            }
        }
        None
    }

    /// Where `native` runs, if it has an entry.
    pub(crate) fn get(&self, native: u64) -> Option<u64> {
        self.find(native)
            .map(|(table, i)| table.slot(i).value.load(Relaxed))
    }

    /// Where `native` runs and the entry's owner.
    pub(crate) fn get_owned(&self, native: u64) -> Option<(u64, u32)> {
        self.find(native).map(|(table, i)| {
            (
                table.slot(i).value.load(Relaxed),
                table.owner(i).load(Relaxed),
            )
        })
    }

    /// Adds or replaces `native -> value` owned by `owner`; the caller
    /// holds the translator lock (one writer). Returns false if no table
    /// could be mapped for it.
    pub(crate) fn insert(&self, native: u64, value: u64, owner: u32) -> bool {
        if let Some((table, i)) = self.find(native) {
            table.owner(i).store(owner, Relaxed);
            table.slot(i).value.store(value, Release);
            return true;
        }
        let table = self.table();
        let used = self.len.load(Relaxed) + self.dead.load(Relaxed) + 1;
        if used * 2 > 1 << table.bits && !self.grow() {
            return false;
        }
        loop {
            if let Some(()) = self.insert_new(self.table(), native, value, owner) {
                self.len.fetch_add(1, Relaxed);
                return true;
            }
            if !self.grow() {
                return false;
            }
        }
    }

    /// Puts a key known to be absent into `table`; None if its chain would
    /// reach the last spill slot.
    fn insert_new(&self, table: &Table, native: u64, value: u64, owner: u32) -> Option<()> {
        let mut index = table.home(native);
        while index + 1 < table.slots() {
            let slot = table.slot(index);
            let key = slot.neg_key.load(Relaxed);
            if key == 0 || key == TOMBSTONE {
                if key == TOMBSTONE {
                    self.dead.fetch_sub(1, Relaxed);
                }
                table.owner(index).store(owner, Relaxed);
                slot.value.store(value, Relaxed);
                slot.neg_key.store(native.wrapping_neg(), Release);
                return Some(());
            }
            index += 1;
        }
        None
    }

    /// Rehashes into a table twice the size (or the same size when most
    /// of the load is tombstones) and publishes it.
    fn grow(&self) -> bool {
        let old = self.table();
        let live = self.len.load(Relaxed);
        let bits = if live * 4 > 1 << old.bits {
            old.bits + 1
        } else {
            old.bits
        };
        let mut bits = bits;
        loop {
            let Some(new) = Table::map(bits) else {
                return false;
            };
            let mut fits = true;
            for i in 0..old.slots() {
                let slot = old.slot(i);
                let key = slot.neg_key.load(Relaxed);
                if key == 0 || key == TOMBSTONE {
                    continue;
                }
                let native = key.wrapping_neg();
                let value = slot.value.load(Relaxed);
                if self
                    .insert_new(&new, native, value, old.owner(i).load(Relaxed))
                    .is_none()
                {
                    fits = false;
                    break;
                }
            }
            if fits {
                self.dead.store(0, Relaxed);
                let new = Box::leak(Box::new(new));
                self.current.store(new.base as u64, Release);
                self.table.store(new, Release);
                return true;
            }
            // SAFETY: the new table was never published.
            unsafe { libc::munmap(new.base.cast(), new.bytes) };
            bits += 1;
        }
    }

    /// Removes `native`'s entry if `keep(value, owner)` says so.
    pub(crate) fn remove_if(&self, native: u64, keep: impl Fn(u64, u32) -> bool) {
        if let Some((table, i)) = self.find(native) {
            let slot = table.slot(i);
            if keep(slot.value.load(Relaxed), table.owner(i).load(Relaxed)) {
                return;
            }
            slot.neg_key.store(TOMBSTONE, Release);
            table.owner(i).store(NO_OWNER, Relaxed);
            self.len.fetch_sub(1, Relaxed);
            self.dead.fetch_add(1, Relaxed);
        }
    }

    /// Removes every entry whose native key is in `[start, end)` and that
    /// `keep` does not keep.
    pub(crate) fn remove_range(&self, start: u64, end: u64, keep: impl Fn(u64, u32) -> bool) {
        let table = self.table();
        for i in 0..table.slots() {
            let slot = table.slot(i);
            let key = slot.neg_key.load(Relaxed);
            if key == 0 || key == TOMBSTONE {
                continue;
            }
            let native = key.wrapping_neg();
            if native >= start
                && native < end
                && !keep(slot.value.load(Relaxed), table.owner(i).load(Relaxed))
            {
                slot.neg_key.store(TOMBSTONE, Release);
                table.owner(i).store(NO_OWNER, Relaxed);
                self.len.fetch_sub(1, Relaxed);
                self.dead.fetch_add(1, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_grows_survives_collisions_and_removes() {
        let map = BlockMap::new().unwrap();
        let first_header = map.current.load(Relaxed);
        // Keys that share their low 16 bits: one home slot for all.
        for i in 0..40u64 {
            assert!(map.insert(0x10_0000 * (i + 1) + 0x1234, i, i as u32));
        }
        for i in 0..40u64 {
            assert_eq!(
                map.get_owned(0x10_0000 * (i + 1) + 0x1234),
                Some((i, i as u32))
            );
        }
        // Past half the slots, the table grows and keeps every entry.
        for i in 0..100_000u64 {
            assert!(map.insert(0x7000_0000 + i * 7, i, NO_OWNER));
        }
        assert_ne!(map.current.load(Relaxed), first_header);
        assert!(map.capacity() > 1 << INITIAL_BITS);
        assert_eq!(map.get(0x7000_0000 + 99_999 * 7), Some(99_999));
        assert_eq!(map.get(0x10_0000 * 3 + 0x1234), Some(2));
        // A removed key in the middle of a chain leaves the rest findable.
        map.remove_if(0x10_0000 * 5 + 0x1234, |_, _| false);
        assert_eq!(map.get(0x10_0000 * 5 + 0x1234), None);
        assert_eq!(map.get(0x10_0000 * 6 + 0x1234), Some(5));
        map.remove_range(0x7000_0000, 0x7000_0000 + 70, |_, _| false);
        assert_eq!(map.get(0x7000_0000 + 63), None);
        assert_eq!(map.get(0x7000_0000 + 70), Some(10));
        assert!(map.insert(0x10_0000 * 5 + 0x1234, 77, 1));
        assert_eq!(map.get(0x10_0000 * 5 + 0x1234), Some(77));
    }
}
