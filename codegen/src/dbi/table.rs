//! The block map: native address -> where to run it (a translation in the
//! cache, or the native address itself for code left native).
//!
//! One fixed table, allocated once, read without a lock by translated code
//! (the inline lookup in the indirect-branch stub checks the home slot
//! only) and by the translator (linear probing). Entries are written once,
//! under the translator's lock, value before key, and never change or go
//! away: a reader that sees a key sees its value (x86 stores are ordered,
//! and the Rust side reads the key with Acquire). Keys are stored negated,
//! so the generated code compares with `lea rcx, [rcx + rax]; jrcxz`, which
//! leaves the foreign code's flags alone. Nothing here allocates after
//! [`BlockMap::new`].

use std::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};

/// Slots; the home slot of an address is its low 16 bits, which the
/// generated code gets with one flag-free `movzx ecx, ax`.
pub(crate) const SLOTS: usize = 1 << 16;

/// One slot as the generated code reads it: 16 bytes, key then value.
#[repr(C)]
pub(crate) struct Slot {
    /// The native address, negated; 0 = empty.
    neg_key: AtomicU64,
    /// Where to jump for it.
    value: AtomicU64,
}

/// See the module documentation.
pub(crate) struct BlockMap {
    slots: Box<[Slot]>,
    len: AtomicU64,
}

impl BlockMap {
    pub(crate) fn new() -> Self {
        let slots = (0..SLOTS)
            .map(|_| Slot {
                neg_key: AtomicU64::new(0),
                value: AtomicU64::new(0),
            })
            .collect();
        BlockMap {
            slots,
            len: AtomicU64::new(0),
        }
    }

    /// Address of slot 0, for the generated lookup.
    pub(crate) fn base(&self) -> u64 {
        self.slots.as_ptr() as u64
    }

    /// Entries so far.
    pub(crate) fn len(&self) -> u64 {
        self.len.load(Relaxed)
    }

    fn home(native: u64) -> usize {
        (native & 0xffff) as usize
    }

    /// Where `native` runs, if it has an entry.
    pub(crate) fn get(&self, native: u64) -> Option<u64> {
        let want = native.wrapping_neg();
        for probe in 0..SLOTS {
            let slot = &self.slots[(Self::home(native) + probe) % SLOTS];
            match slot.neg_key.load(Acquire) {
                0 => return None,
                k if k == want => return Some(slot.value.load(Relaxed)),
                _ => {}
            }
        }
        None
    }

    /// Adds `native -> value`; the caller holds the translator lock (one
    /// writer). Returns false if the table is full.
    pub(crate) fn insert(&self, native: u64, value: u64) -> bool {
        let want = native.wrapping_neg();
        for probe in 0..SLOTS {
            let slot = &self.slots[(Self::home(native) + probe) % SLOTS];
            match slot.neg_key.load(Acquire) {
                0 => {
                    slot.value.store(value, Relaxed);
                    slot.neg_key.store(want, Release);
                    self.len.fetch_add(1, Relaxed);
                    return true;
                }
                k if k == want => return true,
                _ => {}
            }
        }
        false
    }
}
