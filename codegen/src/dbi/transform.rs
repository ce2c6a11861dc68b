//! The per-block transformer's view of a block, shaped like Frida
//! Stalker's iterator: walk the instructions with [`BlockIterator::next`],
//! [`keep`](BlockIterator::keep) those that should run, and put callouts,
//! inline code or counters before any of them.
//!
//! The transformer runs when a block is first reached, on the thread that
//! reached it, with the selector on ALLOW, possibly while that thread's
//! foreign code holds libc's locks (inside `malloc`): it must not
//! allocate or take a lock foreign code could hold. Everything this
//! iterator records goes into buffers reserved in advance.

use super::CalloutId;
use iced_x86::Instruction;
use std::sync::atomic::AtomicU64;

/// What the emitter produces for a block, in order.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Item {
    /// The decoded instruction with this index.
    Keep(u16),
    Callout {
        callout: CalloutId,
        data: u64,
    },
    /// Bytes `[start, start + len)` of the inline buffer.
    Inline {
        start: u32,
        len: u32,
    },
    Counter {
        counter: u64,
        amount: u32,
    },
}

/// Bytes of inline code one block may carry.
pub(crate) const INLINE_CAPACITY: usize = 16 << 10;

/// The instructions of one block, for a transformer. See the module
/// documentation.
pub struct BlockIterator<'a> {
    pub(crate) insns: &'a [Instruction],
    pub(crate) next_index: usize,
    pub(crate) current: Option<u16>,
    pub(crate) items: &'a mut Vec<Item>,
    pub(crate) inline: &'a mut Vec<u8>,
    /// Puts that did not fit the reserved buffers (they are dropped).
    pub(crate) overflowed: u32,
    pub(crate) user_data: u64,
    pub(crate) scratch: &'a ScratchArena,
}

/// Memory for transformers, reserved at install ([`super::DbiBuilder::
/// scratch_bytes`]) and handed out by a bump pointer: data a transformer
/// builds for its callouts (per-block tables, strings) without `malloc`,
/// which it must not call. Never freed (it lives as long as the process).
pub(crate) struct ScratchArena {
    base: *mut u8,
    len: usize,
    used: std::sync::atomic::AtomicUsize,
}

// SAFETY: the arena only hands out disjoint ranges (an atomic bump
// pointer), each to one caller.
unsafe impl Sync for ScratchArena {}
// SAFETY: as above.
unsafe impl Send for ScratchArena {}

impl ScratchArena {
    pub(crate) fn new(len: usize) -> Self {
        let memory: &'static mut [u8] = Box::leak(vec![0u8; len].into_boxed_slice());
        ScratchArena {
            base: memory.as_mut_ptr(),
            len,
            used: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// `len` zeroed bytes, 16-aligned, or None once the arena is used up.
    pub(crate) fn take(&self, len: usize) -> Option<&'static mut [u8]> {
        use std::sync::atomic::Ordering::Relaxed;
        let size = len.checked_add(15)? & !15;
        let mut start = self.used.load(Relaxed);
        loop {
            let end = start.checked_add(size).filter(|&e| e <= self.len)?;
            match self.used.compare_exchange(start, end, Relaxed, Relaxed) {
                // SAFETY: [start, start + len) lies in the leaked arena and
                // no other call gets any byte of it (the bump above).
                Ok(_) => {
                    return Some(unsafe {
                        std::slice::from_raw_parts_mut(self.base.add(start), len)
                    })
                }
                Err(now) => start = now,
            }
        }
    }
}

impl BlockIterator<'_> {
    /// The native address of the block's first instruction.
    pub fn address(&self) -> u64 {
        self.insns.first().map_or(0, Instruction::ip)
    }

    /// Every decoded instruction of the block, kept or not.
    pub fn instructions(&self) -> &[Instruction] {
        self.insns
    }

    /// The next instruction (its `ip()` is its native address). It runs
    /// only if [`keep`](Self::keep) is called before the next `next`;
    /// instructions the transformer never reaches are kept.
    #[allow(clippy::should_implement_trait)] // a lending cursor, not an Iterator
    pub fn next(&mut self) -> Option<Instruction> {
        let insn = *self.insns.get(self.next_index)?;
        self.current = Some(self.next_index as u16);
        self.next_index += 1;
        Some(insn)
    }

    /// Keeps the instruction `next` returned last.
    pub fn keep(&mut self) {
        if let Some(index) = self.current.take() {
            self.push(Item::Keep(index));
        }
    }

    /// Calls `callout` (registered with [`super::DbiBuilder::callout`])
    /// with `data` and a writable CPU context here, before the next kept
    /// instruction.
    pub fn put_callout(&mut self, callout: CalloutId, data: u64) {
        self.push(Item::Callout { callout, data });
    }

    /// Puts position-independent machine code here. It runs with the
    /// foreign registers and stack: it must leave every register and flag
    /// it does not mean to change as it found them, and step over the red
    /// zone (`lea rsp, [rsp-128]`) before pushing anything.
    pub fn put_inline(&mut self, code: &[u8]) {
        if self.inline.len() + code.len() > INLINE_CAPACITY {
            self.overflowed += 1;
            return;
        }
        let start = self.inline.len() as u32;
        self.inline.extend_from_slice(code);
        self.push(Item::Inline {
            start,
            len: code.len() as u32,
        });
    }

    /// Puts an inline `counter += amount` here (keeps registers, flags
    /// and the red zone): the cheap way to count blocks or instructions
    /// without leaving translated code. Not atomic, by choice: threads
    /// incrementing one counter at once may lose increments (a locked add
    /// costs ~20 cycles each); give each thread its own counters (a
    /// transformer can tell blocks apart, not threads) or accept the
    /// undercount. Where the flags are dead it is one `add`.
    pub fn put_counter(&mut self, counter: &'static AtomicU64, amount: u32) {
        self.push(Item::Counter {
            counter: counter.as_ptr() as u64,
            amount,
        });
    }

    /// Attaches `data` to the block (see [`super::Dbi::user_data_of`] and
    /// [`super::BlockEvent`]).
    pub fn set_user_data(&mut self, data: u64) {
        self.user_data = data;
    }

    /// `len` zeroed bytes of the translator's scratch arena, for data the
    /// transformer builds (a transformer must not call `malloc`); None
    /// once the arena is used up.
    pub fn scratch(&mut self, len: usize) -> Option<&'static mut [u8]> {
        self.scratch.take(len)
    }

    fn push(&mut self, item: Item) {
        if self.items.len() < self.items.capacity() {
            self.items.push(item);
        } else {
            self.overflowed += 1;
        }
    }

    /// Keeps what the transformer never reached.
    pub(crate) fn finish(mut self) -> u32 {
        while self.next_index < self.insns.len() {
            self.current = Some(self.next_index as u16);
            self.next_index += 1;
            self.keep();
        }
        self.overflowed
    }
}
