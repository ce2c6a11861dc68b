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
