//! Translating one basic block: read the native bytes, decode up to the
//! first control transfer, let the transformer edit the block, emit the
//! copy into the translator's arena in the code cache.
//!
//! What becomes of each instruction:
//! - ordinary instructions are re-encoded at their new address by
//!   iced-x86's encoder, which relocates rip-relative operands; one whose
//!   target is beyond rel32 reach of the cache gets its address in a
//!   scratch register the instruction does not use (saved and restored
//!   around it through the thread's scratch slot);
//! - direct jumps, conditional branches and calls end the block in
//!   patchable rel32 jumps, linked straight to the target's translation
//!   when it exists, else to an exit stub that asks the translator and
//!   then patches the jump (so a block is chained once both ends exist);
//! - a call pushes the *native* return address (one `push` from a constant
//!   after the block), then jumps;
//! - indirect jumps and calls and returns load the native target into rax
//!   (foreign rax parked in the scratch slot) and go to a copy of the
//!   lookup, after a two-entry cache of the site's last targets;
//! - `syscall` becomes a direct-hook call site. The numbers that create a
//!   task (`clone`, `vfork`, `clone3`) reach the hooks that way too, but
//!   their child must continue right after the instruction on its own
//!   stack, which a call into Rust cannot give it: when the hooks let them
//!   run, the engine answers `EXECUTE_AT_SITE` and they run as a real
//!   `syscall` from the cache (the excluded region: it runs), and the
//!   child, still in translated code, is armed through the host stub;
//! - `int 0x80` becomes a call of an `int 0x80` outside the cache, which
//!   traps: the engine runs it with the i386 table;
//! - `fs:` operands, once a thread's fs base is virtual, add its delta;
//! - what cannot be translated (`sysenter`, `rdfsbase`/`wrfsbase`, far transfers,
//!   transactional memory, undecodable bytes) ends the block before it,
//!   and a block that starts with it is left native (the selector stays
//!   BLOCK, so its syscalls still trap).
//!
//! Everything here runs under the translator's lock with buffers reserved
//! at install time: translation allocates nothing of its own.

use super::glue;
use super::records::{self, BlockRecord, Chunks, ExitRecord, RangeSet, Reclaimer, NONE};
use super::scratch;
use super::signals::{
    NativeState, PcPoint, HELD_SHIFT, LOOKUP, PARKED_RAX_SLOT, PARKED_RCX, UNMAPPED,
};
use super::table::NO_OWNER;
use super::transform::{BlockIterator, Item, INLINE_CAPACITY};
use super::{Shared, EXIT_DATA_OFFSET, REQ_CALLOUT, REQ_CHILD, REQ_FILL, REQ_LINK, REQ_STALE};
use iced_x86::{
    Code, ConditionCode, Decoder, DecoderOptions, Encoder, FlowControl, Instruction,
    InstructionInfoFactory, MemoryOperand, Mnemonic, OpKind, Register,
};
use std::sync::atomic::Ordering::Relaxed;

/// Instructions per block at most.
pub(crate) const MAX_BLOCK_INSNS: usize = 128;
/// Native bytes read per block: the longest block of the longest
/// instructions.
const FOREIGN_WINDOW: usize = MAX_BLOCK_INSNS * 15;
/// Bytes of translated code one block may take.
const MAX_BLOCK_CODE: usize = 64 << 10;
/// Items the transformer may produce per block.
const MAX_ITEMS: usize = MAX_BLOCK_INSNS * 8;
/// Block and exit records kept at once (a full flush empties them).
const MAX_BLOCKS: usize = 1 << 18;
const MAX_EXITS: usize = 1 << 19;
/// Pc points kept at once (see `signals`: a few per emitted item).
const MAX_PCS: usize = 1 << 21;
/// Pc points of one block at most.
const MAX_BLOCK_PCS: usize = MAX_ITEMS * 4;

/// `arch_prctl`, whose ARCH_SET_FS moves the fs base the glue relies on.
const ARCH_PRCTL: i32 = 158;

/// Syscall numbers that create a task continuing on a new stack.
const CLONE_LIKE: [i32; 3] = [
    56,  /* clone */
    58,  /* vfork */
    435, /* clone3 */
];

/// Why a block is left native.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeftNative {
    StopAddress,
    Unreadable,
    Untranslatable,
    ArenaFull,
    TooManySites,
    /// The block or exit records are full (until a flush is reclaimed).
    RecordsFull,
    /// In a forked child: the code cache is shared with the parent, whose
    /// arena this process must not write.
    Forked,
}

/// A target cache's entries (offsets of each immediate and jump field) and
/// where its fill stub's data is, in the block's code.
struct PendingReturn {
    entries: [(usize, usize); 2],
    data: usize,
}

struct PendingExit {
    /// Offset of the rel32 field in the block's code.
    field: usize,
    native: u64,
}

/// The translator's working state; one, behind the translator lock.
pub(crate) struct Translator {
    foreign: Vec<u8>,
    insns: Vec<Instruction>,
    items: Vec<Item>,
    inline: Vec<u8>,
    code: Vec<u8>,
    exits: Vec<PendingExit>,
    returns: Vec<PendingReturn>,
    /// rel32 fields of the body and the constants they read.
    constants: Vec<(usize, u64)>,
    encoder: Encoder,
    info: InstructionInfoFactory,
    arena_start: u64,
    arena_next: u64,
    arena_end: u64,
    /// Offsets in `code` of the `jne` fields of the byte check, if any.
    checks: Vec<usize>,
    /// What the transformer attached to the block being made.
    user_data: u64,
    pub(crate) blocks: Vec<BlockRecord>,
    pub(crate) exit_pool: Vec<ExitRecord>,
    /// Every block's pc points (see `signals`).
    pub(crate) pc_pool: Vec<PcPoint>,
    /// The block being made's points.
    pcs: Vec<PcPoint>,
    pub(crate) alive: usize,
    /// Blocks were made in increasing code addresses (no freed code
    /// reused since the records were last emptied).
    in_code_order: bool,
    /// Writable and executable ranges: blocks from there check their bytes.
    pub(crate) writable: RangeSet,
    pub(crate) chunks: Chunks,
    pub(crate) reclaimer: Reclaimer,
}

impl Translator {
    pub(crate) fn new(arena: u64, arena_len: u64) -> Result<Self, crate::Error> {
        let encoder =
            Encoder::try_with_capacity(64, 64).map_err(|e| crate::Error::Encode(e.to_string()))?;
        Ok(Translator {
            foreign: vec![0; FOREIGN_WINDOW],
            insns: Vec::with_capacity(MAX_BLOCK_INSNS),
            items: Vec::with_capacity(MAX_ITEMS),
            inline: Vec::with_capacity(INLINE_CAPACITY),
            // MAX_BLOCK_CODE is checked before each item; one item adds at
            // most INLINE_CAPACITY bytes and the exit stubs a few KiB more,
            // so the buffer never grows (growing would allocate).
            code: Vec::with_capacity(2 * MAX_BLOCK_CODE),
            exits: Vec::with_capacity(MAX_BLOCK_INSNS * 2 + 2),
            returns: Vec::with_capacity(1),
            constants: Vec::with_capacity(MAX_BLOCK_INSNS),
            encoder,
            info: InstructionInfoFactory::new(),
            arena_start: arena,
            arena_next: arena,
            arena_end: arena + arena_len,
            checks: Vec::with_capacity(FOREIGN_WINDOW),
            user_data: 0,
            blocks: Vec::with_capacity(MAX_BLOCKS),
            exit_pool: Vec::with_capacity(MAX_EXITS),
            pc_pool: Vec::with_capacity(MAX_PCS),
            pcs: Vec::with_capacity(MAX_BLOCK_PCS),
            alive: 0,
            in_code_order: true,
            writable: RangeSet::new(),
            chunks: Chunks::new(),
            reclaimer: Reclaimer::new(),
        })
    }

    /// Runs the decoder, encoder and instruction-info paths once, here at
    /// install time: iced-x86 builds some tables lazily (allocating) on
    /// first use, which must not happen during a translation.
    pub(crate) fn warm_up(&mut self) {
        // mov rax, [rip+0]; vaddpd ymm0, ymm0, ymm1; vzeroall (16 used
        // registers: grows the info factory's lists to their largest); ret
        const SAMPLE: [u8; 15] = [
            0x48, 0x8b, 0x05, 0, 0, 0, 0, 0xc5, 0xfd, 0x58, 0xc1, 0xc5, 0xfc, 0x77, 0xc3,
        ];
        let mut insn = Instruction::default();
        let mut decoder = Decoder::with_ip(64, &SAMPLE, 0x1000, DecoderOptions::NONE);
        while decoder.can_decode() {
            decoder.decode_out(&mut insn);
            let _ = self.encode(&insn, self.arena_next);
            let _ = self.free_register(&insn);
        }
        self.code.clear();
    }

    /// Translates the block at `native` and publishes it in the block
    /// map; returns its address in the cache.
    pub(crate) fn translate(&mut self, dbi: &Shared, native: u64) -> Result<u64, LeftNative> {
        if dbi.is_stop(native) {
            return Err(LeftNative::StopAddress);
        }
        if dbi.forked.load(Relaxed) {
            return Err(LeftNative::Forked);
        }
        let readable = read_native(native, &mut self.foreign);
        if readable == 0 {
            return Err(LeftNative::Unreadable);
        }
        self.decode(dbi, native, readable);
        if self.insns.is_empty() {
            return Err(LeftNative::Untranslatable);
        }
        self.transform(dbi);
        if self.blocks.len() == self.blocks.capacity()
            || self.exit_pool.len() + 2 * MAX_BLOCK_INSNS + 4 > self.exit_pool.capacity()
        {
            return Err(LeftNative::RecordsFull);
        }
        let id = self.blocks.len() as u32;
        let native_end = self.block_end();
        let checked = self.writable.overlaps(native, native_end);
        let first_exit = self.exit_pool.len();
        let mut at = (self.arena_next + 15) & !15;
        let mut piece = None;
        self.emit_block(dbi, at, id, checked)?;
        self.register_exits(dbi, at, id)?;
        if at + self.code.len() as u64 > self.arena_end {
            // The arena is used up: reuse code freed by invalidations. The
            // block's size depends a little on its address (alignment of
            // its patchable fields), hence the margin.
            self.exit_pool.truncate(first_exit);
            let want = self.code.len() as u32 + 64;
            let (to, len) = self.reclaimer.take(want).ok_or(LeftNative::ArenaFull)?;
            let made = self
                .emit_block(dbi, to, id, checked)
                .and_then(|()| self.register_exits(dbi, to, id));
            if made.is_err() || self.code.len() as u32 > len {
                self.exit_pool.truncate(first_exit);
                self.reclaimer.untake(to, len);
                return Err(made.err().unwrap_or(LeftNative::ArenaFull));
            }
            at = to;
            piece = Some(len);
            self.in_code_order = false;
        }
        if dbi.cache.write_emitted(at as usize, &self.code).is_err() {
            self.exit_pool.truncate(first_exit);
            if let Some(len) = piece {
                self.reclaimer.untake(at, len);
            }
            return Err(LeftNative::ArenaFull);
        }
        if piece.is_none() {
            self.arena_next = at + self.code.len() as u64;
        }
        let first_pc = self.pc_pool.len();
        if first_pc + self.pcs.len() <= self.pc_pool.capacity() {
            self.pc_pool.extend_from_slice(&self.pcs);
        }
        self.blocks.push(BlockRecord {
            first_pc: first_pc as u32,
            pc_count: (self.pc_pool.len() - first_pc) as u32,
            native,
            native_end,
            code: at,
            code_len: piece.unwrap_or(self.code.len() as u32),
            first_exit: first_exit as u32,
            exit_count: (self.exit_pool.len() - first_exit) as u32,
            incoming: NONE,
            user_data: self.user_data,
            alive: true,
        });
        self.alive += 1;
        // Exits linked at once (to blocks that existed, or to this one)
        // join their target's list, so that invalidating it unlinks them.
        for e in first_exit..self.exit_pool.len() {
            let target = self.exit_pool[e].target;
            if target != NONE {
                self.exit_pool[e].next_in = self.blocks[target as usize].incoming;
                self.blocks[target as usize].incoming = e as u32;
            }
        }
        self.chunks.insert(native, native_end);
        dbi.map.insert(native, at, id);
        let syscalls = self
            .insns
            .iter()
            .filter(|i| i.code() == Code::Syscall)
            .count();
        let c = &dbi.counters;
        c.blocks.fetch_add(1, Relaxed);
        c.instructions.fetch_add(self.insns.len() as u64, Relaxed);
        c.exits
            .fetch_add((self.exit_pool.len() - first_exit) as u64, Relaxed);
        c.direct_sites.fetch_add(syscalls as u64, Relaxed);
        if checked {
            c.checked_blocks.fetch_add(1, Relaxed);
        }
        if let Some(on_block) = &dbi.on_block {
            on_block(&super::BlockEvent {
                native,
                native_end,
                translated: at,
                translated_len: self.code.len() as u64,
                user_data: self.user_data,
            });
        }
        Ok(at)
    }

    fn decode(&mut self, dbi: &Shared, native: u64, readable: usize) {
        self.insns.clear();
        let bytes = &self.foreign[..readable];
        let mut decoder = Decoder::with_ip(64, bytes, native, DecoderOptions::NONE);
        let mut insn = Instruction::default();
        while decoder.can_decode() && self.insns.len() < MAX_BLOCK_INSNS {
            decoder.decode_out(&mut insn);
            let first = self.insns.is_empty();
            if insn.is_invalid() || untranslatable(&insn) || (!first && dbi.is_stop(insn.ip())) {
                break;
            }
            self.insns.push(insn);
            if ends_block(&insn) {
                break;
            }
        }
    }

    fn transform(&mut self, dbi: &Shared) {
        self.user_data = 0;
        self.items.clear();
        self.inline.clear();
        match &dbi.transformer {
            None => {
                let kept = (0..self.insns.len() as u16).map(Item::Keep);
                self.items.extend(kept);
            }
            Some(transformer) => {
                let mut iterator = BlockIterator {
                    insns: &self.insns,
                    next_index: 0,
                    current: None,
                    items: &mut self.items,
                    inline: &mut self.inline,
                    overflowed: 0,
                    user_data: 0,
                    scratch: &dbi.scratch_arena,
                };
                transformer(&mut iterator);
                self.user_data = iterator.user_data;
                let overflowed = iterator.finish();
                dbi.counters
                    .dropped_puts
                    .fetch_add(overflowed as u64, Relaxed);
            }
        }
    }

    fn emit_block(
        &mut self,
        dbi: &Shared,
        at: u64,
        id: u32,
        checked: bool,
    ) -> Result<(), LeftNative> {
        self.code.clear();
        self.exits.clear();
        self.returns.clear();
        self.constants.clear();
        self.checks.clear();
        self.pcs.clear();
        if checked {
            self.point(self.insns[0].ip(), 0, 0);
            self.emit_check();
        }
        let mut falls_through = true;
        // Items already emitted with the one before them (counters in a row).
        let mut merged = 0;
        for i in 0..self.items.len() {
            if merged > 0 {
                merged -= 1;
                continue;
            }
            if self.code.len() > MAX_BLOCK_CODE {
                return Err(LeftNative::ArenaFull);
            }
            let here = at + self.code.len() as u64;
            // Glue before an instruction stands for that instruction (it
            // has not run yet); past the last one, for the block's end.
            let native_next = self.items[i..]
                .iter()
                .find_map(|item| match item {
                    Item::Keep(k) => Some(self.insns[*k as usize].ip()),
                    _ => None,
                })
                .unwrap_or_else(|| self.block_end());
            self.point(native_next, 0, 0);
            match self.items[i] {
                Item::Keep(index) => {
                    let insn = self.insns[index as usize];
                    self.emit_instruction(dbi, at, &insn)?;
                    falls_through = !transfers_control(&insn);
                }
                Item::Callout { callout, data } => {
                    let pc = self.items[i..]
                        .iter()
                        .find_map(|item| match item {
                            Item::Keep(k) => Some(self.insns[*k as usize].ip()),
                            _ => None,
                        })
                        .unwrap_or_else(|| self.block_end());
                    let site = dbi
                        .sites
                        .push(&[callout.0 as u64, data, pc])
                        .ok_or(LeftNative::TooManySites)?;
                    glue::call_host(
                        &mut self.code,
                        here,
                        dbi.stubs.host as u64,
                        REQ_CALLOUT | site,
                    )
                    .ok_or(LeftNative::Untranslatable)?;
                }
                Item::Inline { start, len } => {
                    let (start, len) = (start as usize, len as usize);
                    self.code
                        .extend_from_slice(&self.inline[start..start + len]);
                }
                Item::Counter { .. } => {
                    // Counters in a row share one save of rax (and rcx).
                    let mut batch = [(0u64, 0u32); 8];
                    let mut n = 0;
                    for item in &self.items[i..] {
                        match *item {
                            Item::Counter { counter, amount } if n < batch.len() => {
                                batch[n] = (counter, amount);
                                n += 1;
                            }
                            _ => break,
                        }
                    }
                    merged = n - 1;
                    let flags_dead = self.flags_dead_after(i + n - 1);
                    glue::add_to_counters(&mut self.code, here, &batch[..n], flags_dead);
                }
            }
        }
        if falls_through {
            let end = self.block_end();
            self.patchable(at, &[0xe9], end, (end, 0));
        }
        self.emit_constants()?;
        if checked {
            // Changed bytes: undo the check's saves, have the translator
            // drop this block and go where its new translation is.
            let stale = self.code.len();
            for i in 0..self.checks.len() {
                self.resolve((self.checks[i], stale))?;
            }
            self.code.extend_from_slice(&[0x58, 0x9d]); // pop rax; popfq
            glue::lea_rsp(&mut self.code, 128);
            let here = at + self.code.len() as u64;
            glue::call_host(&mut self.code, here, dbi.stubs.host as u64, REQ_STALE | id)
                .ok_or(LeftNative::Untranslatable)?;
            glue::jmp_fs(&mut self.code, dbi.scratch + scratch::TARGET);
        }
        Ok(())
    }

    /// The entry check of a block from writable code: compares the native
    /// bytes it was made from with what is there now (rax and the flags
    /// saved below the red zone), four bytes at a time.
    fn emit_check(&mut self) {
        let native = self.insns[0].ip();
        let len = (self.block_end() - native) as usize;
        glue::lea_rsp(&mut self.code, -128);
        self.code.extend_from_slice(&[0x9c, 0x50]); // pushfq; push rax
        glue::mov_imm64(&mut self.code, 0, native);
        let mut offset = 0;
        while offset < len {
            let disp = (offset as i32).to_le_bytes();
            if len - offset >= 4 {
                // cmp dword [rax + disp32], imm32
                self.code.extend_from_slice(&[0x81, 0xb8]);
                self.code.extend_from_slice(&disp);
                self.code
                    .extend_from_slice(&self.foreign[offset..offset + 4]);
                offset += 4;
            } else {
                // cmp byte [rax + disp32], imm8
                self.code.extend_from_slice(&[0x80, 0xb8]);
                self.code.extend_from_slice(&disp);
                self.code.push(self.foreign[offset]);
                offset += 1;
            }
            self.code.extend_from_slice(&[0x0f, 0x85]); // jne stale
            self.checks.push(self.code.len());
            self.code.extend_from_slice(&[0; 4]);
        }
        self.code.extend_from_slice(&[0x58, 0x9d]); // pop rax; popfq
        glue::lea_rsp(&mut self.code, 128);
    }

    /// Whether the arithmetic flags are dead at item `item`: a kept
    /// instruction after it writes all of them before any reads one (the
    /// block's end counts as reading them).
    fn flags_dead_after(&self, item: usize) -> bool {
        use iced_x86::RflagsBits;
        const STATUS: u32 = RflagsBits::OF
            | RflagsBits::SF
            | RflagsBits::ZF
            | RflagsBits::AF
            | RflagsBits::CF
            | RflagsBits::PF;
        let mut live = STATUS;
        for it in &self.items[item + 1..] {
            match it {
                Item::Keep(k) => {
                    let insn = &self.insns[*k as usize];
                    if insn.rflags_read() & live != 0 {
                        return false;
                    }
                    live &= !insn.rflags_modified();
                    if live == 0 {
                        return true;
                    }
                }
                // Inline code and callouts may read the flags.
                Item::Inline { .. } | Item::Callout { .. } => return false,
                Item::Counter { .. } => {}
            }
        }
        false
    }

    /// The native address after the block's last decoded instruction.
    fn block_end(&self) -> u64 {
        self.insns.last().map_or(0, Instruction::next_ip)
    }

    fn emit_instruction(
        &mut self,
        dbi: &Shared,
        at: u64,
        insn: &Instruction,
    ) -> Result<(), LeftNative> {
        if insn.code() == Code::Syscall {
            return self.emit_syscall_site(dbi, at, insn.next_ip());
        }
        if is_int80(insn) {
            // Called on a page outside the cache, so that it traps (the
            // selector is BLOCK): the engine runs it with the i386 table.
            // lea rsp,[rsp-128]; call [rip+2]; jmp +8; dq gadget;
            // lea rsp,[rsp+128]
            glue::lea_rsp(&mut self.code, -128);
            self.code
                .extend_from_slice(&[0xff, 0x15, 0x02, 0, 0, 0, 0xeb, 0x08]);
            self.code
                .extend_from_slice(&dbi.trap_gadget.int80().to_le_bytes());
            glue::lea_rsp(&mut self.code, 128);
            return Ok(());
        }
        let slot_rax = dbi.scratch + scratch::RAX;
        match insn.flow_control() {
            // The points: a branch not taken yet is the native branch
            // (running it again decides the same), a call's pushed return
            // address is taken back, a return's popped one put back.
            FlowControl::UnconditionalBranch => {
                self.patchable(at, &[0xe9], insn.near_branch_target(), (insn.ip(), 0));
            }
            FlowControl::ConditionalBranch => match jcc_nibble(insn) {
                Some(cc) => {
                    let target = insn.near_branch_target();
                    self.patchable(at, &[0x0f, 0x80 | cc], target, (insn.ip(), 0));
                    self.patchable(at, &[0xe9], insn.next_ip(), (insn.next_ip(), 0));
                }
                None => self.emit_counting_branch(at, insn)?,
            },
            FlowControl::Call => {
                self.push_return_address(insn, 0);
                self.patchable(at, &[0xe9], insn.near_branch_target(), (insn.ip(), 8));
            }
            FlowControl::IndirectCall | FlowControl::IndirectBranch => {
                glue::fs_mov(&mut self.code, 0, slot_rax, true);
                self.point(insn.ip(), 0, 0);
                self.load_target_into_rax(at, insn)?;
                self.point(insn.ip(), 0, PARKED_RAX_SLOT);
                let mut rsp = 0;
                if insn.flow_control() == FlowControl::IndirectCall {
                    self.push_return_address(insn, PARKED_RAX_SLOT);
                    rsp = 8;
                }
                if dbi.target_cache.load(Relaxed) {
                    self.target_cache(dbi, at, insn, rsp)?;
                } else {
                    self.point(insn.ip(), rsp, LOOKUP);
                    self.inline_lookup(dbi, at)?;
                }
            }
            FlowControl::Return => {
                glue::fs_mov(&mut self.code, 0, slot_rax, true);
                self.point(insn.ip(), 0, 0);
                glue::load_rax_from_stack_top(&mut self.code);
                self.point(insn.ip(), 0, PARKED_RAX_SLOT);
                let popped = 8 + insn.immediate16() as i32;
                glue::lea_rsp(&mut self.code, popped);
                if dbi.target_cache.load(Relaxed) {
                    self.target_cache(dbi, at, insn, -popped)?;
                } else {
                    self.point(insn.ip(), -popped, LOOKUP);
                    self.inline_lookup(dbi, at)?;
                }
            }
            _ => self.copy(dbi, at, insn)?,
        }
        Ok(())
    }

    /// `jrcxz`/`jecxz`/`loop*` have only a rel8 form: the original
    /// instruction hops over a short jump into one of two patchable jumps.
    fn emit_counting_branch(&mut self, at: u64, insn: &Instruction) -> Result<(), LeftNative> {
        let len = insn.len();
        let offset = insn.ip().wrapping_sub(self.insns[0].ip()) as usize;
        let opcode = self
            .foreign
            .get(offset..offset + len - 1)
            .ok_or(LeftNative::Untranslatable)?;
        self.code.extend_from_slice(opcode);
        self.code.push(2); // over the short jump below
                           // The branch has run (and counted rcx down) from here on.
        self.point(insn.next_ip(), 0, 0);
        self.code.extend_from_slice(&[0xeb, 0]);
        let short = self.code.len() - 1;
        let target = insn.near_branch_target();
        self.patchable(at, &[0xe9], target, (target, 0));
        let not_taken = self.code.len();
        self.code[short] = (not_taken - short - 1) as u8;
        self.patchable(at, &[0xe9], insn.next_ip(), (insn.next_ip(), 0));
        Ok(())
    }

    /// A syscall site; see the module documentation for the clone family.
    /// Each clone-like number gets its own path: the direct site first (the
    /// hooks see the call and may emulate or fail it; the engine answers
    /// `EXECUTE_AT_SITE` if it should run), then the real `syscall` from the
    /// cache, and the child's request naming the number (its rax is 0 by
    /// then). Only flag-free instructions test and branch (lea, jrcxz, jmp),
    /// and only rcx, which the syscall clobbers anyway, is used.
    fn emit_syscall_site(&mut self, dbi: &Shared, at: u64, next: u64) -> Result<(), LeftNative> {
        // rel32 fields that jump to the end of the site.
        let mut to_done = [0usize; 3 * CLONE_LIKE.len() + 1];
        let mut dones = 0;
        // arch_prctl: lea rcx, [rax - 158]; jrcxz +2; jmp +5; jmp rel32 path
        self.code.extend_from_slice(&[0x48, 0x8d, 0x88]);
        self.code.extend_from_slice(&(-ARCH_PRCTL).to_le_bytes());
        self.code.extend_from_slice(&[0xe3, 0x02, 0xeb, 0x05, 0xe9]);
        let to_fs_path = self.code.len();
        self.code.extend_from_slice(&[0; 4]);
        let mut to_path = [0usize; CLONE_LIKE.len()];
        for (slot, nr) in to_path.iter_mut().zip(CLONE_LIKE) {
            // lea rcx, [rax - nr]; jrcxz +2; jmp +5; jmp rel32 path
            self.code.extend_from_slice(&[0x48, 0x8d, 0x88]);
            self.code.extend_from_slice(&(-nr).to_le_bytes());
            self.code.extend_from_slice(&[0xe3, 0x02, 0xeb, 0x05, 0xe9]);
            *slot = self.code.len();
            self.code.extend_from_slice(&[0; 4]);
        }
        self.direct_site(dbi, at)?;
        for (rel, nr) in to_path.into_iter().zip(CLONE_LIKE) {
            // jmp done (from the direct site or the previous child path)
            self.code.push(0xe9);
            to_done[dones] = self.code.len();
            dones += 1;
            self.code.extend_from_slice(&[0; 4]);
            self.resolve((rel, self.code.len()))?;
            self.direct_site(dbi, at)?;
            // lea rcx, [rax + 0x10000]; jrcxz run (over the jmp); jmp done
            let sentinel = -i32::try_from(sud_engine::EXECUTE_AT_SITE)
                .map_err(|_| LeftNative::Untranslatable)?;
            self.code.extend_from_slice(&[0x48, 0x8d, 0x88]);
            self.code.extend_from_slice(&sentinel.to_le_bytes());
            self.code.extend_from_slice(&[0xe3, 0x05, 0xe9]);
            to_done[dones] = self.code.len();
            dones += 1;
            self.code.extend_from_slice(&[0; 4]);
            // mov eax, nr; syscall; mov rcx, rax; jrcxz child; jmp done
            self.code.push(0xb8);
            self.code.extend_from_slice(&nr.to_le_bytes());
            self.code
                .extend_from_slice(&[0x0f, 0x05, 0x48, 0x89, 0xc1, 0xe3, 0x05, 0xe9]);
            to_done[dones] = self.code.len();
            dones += 1;
            self.code.extend_from_slice(&[0; 4]);
            let child = at + self.code.len() as u64;
            glue::call_host(
                &mut self.code,
                child,
                dbi.stubs.host as u64,
                REQ_CHILD | nr as u32,
            )
            .ok_or(LeftNative::Untranslatable)?;
        }
        // arch_prctl: the translator emulates ARCH_SET_FS and ARCH_GET_FS
        // (see `Dbi::virtual_fs`); the first move switches translation to
        // rewriting fs operands and drops every block, this one included,
        // so the thread goes on through a lookup of the next instruction.
        // (The last child path falls through to here: jmp done.)
        self.code.push(0xe9);
        to_done[dones] = self.code.len();
        dones += 1;
        self.code.extend_from_slice(&[0; 4]);
        self.resolve((to_fs_path, self.code.len()))?;
        self.direct_site(dbi, at)?;
        glue::fs_mov(&mut self.code, 0, dbi.scratch + scratch::RAX, true);
        glue::mov_imm64(&mut self.code, 0, next);
        self.inline_lookup(dbi, at)?;
        let done = self.code.len();
        for &field in &to_done[..dones] {
            self.resolve((field, done))?;
        }
        Ok(())
    }

    /// The direct-call site of the DBI's stub at the current position.
    fn direct_site(&mut self, dbi: &Shared, at: u64) -> Result<(), LeftNative> {
        let site = dbi
            .stub
            .site((at + self.code.len() as u64) as usize)
            .map_err(|_| LeftNative::Untranslatable)?;
        self.code.extend_from_slice(&site);
        Ok(())
    }

    /// Writes the rel32 field at `field` so it jumps to `target` (both
    /// offsets in this block's code).
    fn resolve(&mut self, (field, target): (usize, usize)) -> Result<(), LeftNative> {
        let rel = i32::try_from(target as i64 - (field as i64 + 4))
            .map_err(|_| LeftNative::Untranslatable)?;
        self.code[field..field + 4].copy_from_slice(&rel.to_le_bytes());
        Ok(())
    }

    /// A rel32 jump or jcc whose field is 4-byte aligned (so linking it
    /// later is one atomic store), to be resolved to `native`'s
    /// translation; the native state there is `point` (pc, stack offset).
    fn patchable(&mut self, at: u64, opcode: &[u8], native: u64, point: (u64, i32)) {
        self.point(point.0, point.1, 0);
        // One nop instruction of the padding's length (a signal lands at
        // its start or at the jump).
        const NOPS: [&[u8]; 4] = [&[], &[0x90], &[0x66, 0x90], &[0x0f, 0x1f, 0x00]];
        let pad = (4 - (at as usize + self.code.len() + opcode.len()) % 4) % 4;
        self.code.extend_from_slice(NOPS[pad]);
        self.point(point.0, point.1, 0);
        self.code.extend_from_slice(opcode);
        self.exits.push(PendingExit {
            field: self.code.len(),
            native,
        });
        self.code.extend_from_slice(&[0; 4]);
    }

    /// An indirect branch's (a return's, an indirect call's or jump's)
    /// cache of its last two targets, in front of the lookup (native target
    /// in rax, foreign rax in its slot, a return's stack already popped and
    /// a call's return address pushed, `rsp` the native stack pointer minus
    /// this one). Each entry
    /// is a flag-free compare with an immediate (`mov rcx, -native; lea
    /// rcx, [rcx + rax]; jrcxz`) and a direct jump to the translation: a
    /// return to one of them costs a few instructions and a predicted
    /// direct jump, where the lookup walks the block map and ends in an
    /// indirect jump that a site with several targets (a function
    /// returning to several callers) mispredicts. The entries start empty (an immediate of 0 never
    /// matches); a miss while one is empty goes to a fill stub that asks
    /// the translator (which fills it, see `fill_return_entry`), and once
    /// both are full, straight to the lookup. An entry whose target dies is
    /// unlinked by zeroing its immediate (8-byte aligned, one store).
    fn target_cache(
        &mut self,
        dbi: &Shared,
        at: u64,
        insn: &Instruction,
        rsp: i32,
    ) -> Result<(), LeftNative> {
        const NOPS: [&[u8]; 8] = [
            &[],
            &[0x90],
            &[0x66, 0x90],
            &[0x0f, 0x1f, 0x00],
            &[0x0f, 0x1f, 0x40, 0x00],
            &[0x0f, 0x1f, 0x44, 0x00, 0x00],
            &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
            &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
        ];
        let ip = insn.ip();
        let (s_rax, s_rcx) = (dbi.scratch + scratch::RAX, dbi.scratch + scratch::RCX);
        let both = PARKED_RAX_SLOT | PARKED_RCX;
        let pad_to = |this: &mut Self, offset: usize, align: u64| {
            let pad = (align - (at + (this.code.len() + offset) as u64) % align) % align;
            this.code.extend_from_slice(NOPS[pad as usize]);
        };
        self.point(ip, rsp, PARKED_RAX_SLOT);
        glue::fs_mov(&mut self.code, 1, s_rcx, true);
        let mut imm = [0usize; 2];
        let mut to_hit = [0usize; 2];
        for k in 0..2 {
            self.point(ip, rsp, both);
            pad_to(self, 2, 8);
            self.point(ip, rsp, both);
            // mov rcx, imm64; lea rcx, [rcx + rax]; jrcxz hit
            self.code.extend_from_slice(&[0x48, 0xb9]);
            imm[k] = self.code.len();
            self.code.extend_from_slice(&[0; 8]);
            self.point(ip, rsp, both);
            self.code.extend_from_slice(&[0x48, 0x8d, 0x0c, 0x01]);
            self.point(ip, rsp, both);
            self.code.extend_from_slice(&[0xe3, 0]);
            to_hit[k] = self.code.len() - 1;
        }
        // Neither: rcx back, then the fill stub or the lookup.
        self.point(ip, rsp, both);
        glue::fs_mov(&mut self.code, 1, s_rcx, false);
        self.point(ip, rsp, PARKED_RAX_SLOT);
        pad_to(self, 1, 4);
        self.point(ip, rsp, PARKED_RAX_SLOT);
        self.code.push(0xe9);
        let miss = self.code.len();
        self.code.extend_from_slice(&[0; 4]);
        let mut jump = [0usize; 2];
        for k in 0..2 {
            let rel8 = self.code.len() - (to_hit[k] + 1);
            self.code[to_hit[k]] = u8::try_from(rel8).map_err(|_| LeftNative::Untranslatable)?;
            self.point(ip, rsp, both);
            glue::fs_mov(&mut self.code, 1, s_rcx, false);
            self.point(ip, rsp, PARKED_RAX_SLOT);
            glue::fs_mov(&mut self.code, 0, s_rax, false);
            self.point(ip, rsp, 0);
            pad_to(self, 1, 4);
            self.point(ip, rsp, 0);
            self.code.push(0xe9);
            jump[k] = self.code.len();
            self.code.extend_from_slice(&[0; 4]);
        }
        let template = self.code.len();
        self.point(ip, rsp, LOOKUP);
        self.inline_lookup(dbi, at)?;
        // The fill stub: native target to its slot, foreign rax back, ask.
        let fill = self.code.len();
        for field in [miss, jump[0], jump[1]] {
            self.resolve((field, fill))?;
        }
        self.point(ip, rsp, PARKED_RAX_SLOT);
        glue::fs_mov(&mut self.code, 0, dbi.scratch + scratch::NATIVE, true);
        self.point(ip, rsp, PARKED_RAX_SLOT);
        glue::fs_mov(&mut self.code, 0, s_rax, false);
        self.point(ip, rsp, 0);
        let here = at + self.code.len() as u64;
        glue::call_host(&mut self.code, here, dbi.stubs.host as u64, REQ_FILL)
            .ok_or(LeftNative::Untranslatable)?;
        glue::jmp_fs(&mut self.code, dbi.scratch + scratch::TARGET);
        // Data (never executed): the entries' exit records (written by
        // `register_exits`), the miss jump's field, the lookup.
        let data = self.code.len();
        self.code.extend_from_slice(&[0; 16]);
        self.code
            .extend_from_slice(&(at + miss as u64).to_le_bytes());
        self.code
            .extend_from_slice(&(at + template as u64).to_le_bytes());
        self.returns.push(PendingReturn {
            entries: [(imm[0], jump[0]), (imm[1], jump[1])],
            data,
        });
        Ok(())
    }

    /// Pushes `insn`'s native return address; until the jump after it,
    /// the native state is the call not yet run (its push taken back).
    fn push_return_address(&mut self, insn: &Instruction, parked: u16) {
        // push qword [rip + rel32]: one instruction, from a constant after
        // the block's body (see `emit_constants`).
        self.code.extend_from_slice(&[0xff, 0x35]);
        self.constants.push((self.code.len(), insn.next_ip()));
        self.code.extend_from_slice(&[0; 4]);
        self.point(insn.ip(), 8, parked);
    }

    /// The 8-byte constants the body reads (rip-relative), after it: past
    /// its last instruction, which never falls through to them.
    fn emit_constants(&mut self) -> Result<(), LeftNative> {
        if self.constants.is_empty() {
            return Ok(());
        }
        while self.code.len() % 8 != 0 {
            self.code.push(0xcc);
        }
        for i in 0..self.constants.len() {
            let (field, value) = self.constants[i];
            let at = self.code.len();
            self.code.extend_from_slice(&value.to_le_bytes());
            self.resolve((field, at))?;
        }
        Ok(())
    }

    /// Records the native state at the current end of the code (replacing
    /// a point already there); dropped past the block's budget.
    fn point(&mut self, native: u64, rsp: i32, parked: u16) {
        self.pcs_point_at(self.code.len(), native, rsp, parked);
    }

    fn pcs_point_at(&mut self, code: usize, native: u64, rsp: i32, parked: u16) {
        let native = native.wrapping_sub(self.insns[0].ip()) as i64;
        let Ok(native) = i32::try_from(native) else {
            return;
        };
        let point = PcPoint {
            code: code as u32,
            native,
            rsp,
            parked,
        };
        // Kept sorted by code offset, one point per offset (a sequence may
        // record its inner points after its end).
        let at = self.pcs.partition_point(|p| p.code < point.code);
        if self.pcs.get(at).is_some_and(|p| p.code == point.code) {
            self.pcs[at] = point;
        } else if self.pcs.len() < self.pcs.capacity() {
            self.pcs.insert(at, point);
        }
    }

    /// A copy of the block-map lookup here (native target in rax, foreign
    /// rax in its scratch slot), missing to the shared miss path.
    fn inline_lookup(&mut self, dbi: &Shared, at: u64) -> Result<(), LeftNative> {
        let start = self.code.len();
        self.code.extend_from_slice(&dbi.stubs.lookup_template);
        let field = start + dbi.stubs.lookup_miss_field;
        let rel = glue::rel32(at + field as u64, dbi.stubs.ibl_miss as u64)
            .ok_or(LeftNative::Untranslatable)?;
        self.code[field..field + 4].copy_from_slice(&rel.to_le_bytes());
        Ok(())
    }

    /// `mov rax, <the branch operand>`, evaluated with the foreign
    /// registers (rax is still the foreign rax) and stack pointer.
    fn load_target_into_rax(&mut self, at: u64, insn: &Instruction) -> Result<(), LeftNative> {
        let load = match insn.op0_kind() {
            OpKind::Register if insn.op0_register() == Register::RAX => return Ok(()),
            OpKind::Register => {
                Instruction::with2(Code::Mov_r64_rm64, Register::RAX, insn.op0_register())
            }
            OpKind::Memory => {
                Instruction::with2(Code::Mov_r64_rm64, Register::RAX, memory_operand(insn))
            }
            _ => return Err(LeftNative::Untranslatable),
        }
        .map_err(|_| LeftNative::Untranslatable)?;
        if self.far_operand(insn, at) {
            // Beyond rel32 reach: mov rax, imm64; mov rax, [rax].
            glue::mov_imm64(&mut self.code, 0, insn.ip_rel_memory_address());
            self.point(insn.ip(), 0, PARKED_RAX_SLOT);
            self.code.extend_from_slice(&[0x48, 0x8b, 0x00]);
            return Ok(());
        }
        self.encode(&load, at)
            .map_err(|_| LeftNative::Untranslatable)
    }

    /// Whether `insn` has a rip-relative operand a rel32 from its new
    /// place cannot reach. Asked before encoding, because a failed encode
    /// builds an error message (allocates).
    fn far_operand(&self, insn: &Instruction, at: u64) -> bool {
        if !insn.is_ip_rel_memory_operand() {
            return false;
        }
        // Margin: the instruction's own length and what precedes it.
        let rip = (at + self.code.len() as u64) as i64;
        let distance = (insn.ip_rel_memory_address() as i64).wrapping_sub(rip);
        distance.unsigned_abs() > (i32::MAX as u64) - 64
    }

    /// Copies an ordinary instruction to its new address.
    fn copy(&mut self, dbi: &Shared, at: u64, insn: &Instruction) -> Result<(), LeftNative> {
        if insn.segment_prefix() == Register::FS
            && dbi.virtual_fs.load(Relaxed)
            && (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Memory)
        {
            return self.copy_fs_relative(dbi, at, insn);
        }
        if !self.far_operand(insn, at) {
            // An encoding failure here is rare (and allocates its message).
            return self
                .encode(insn, at)
                .map_err(|_| LeftNative::Untranslatable);
        }
        let scratch = self.free_register(insn).ok_or(LeftNative::Untranslatable)?;
        let number = scratch.number() as u8;
        let slot = dbi.scratch + scratch::RAX;
        let mut moved = *insn;
        moved.set_memory_base(scratch);
        moved.set_memory_index(Register::None);
        moved.set_memory_displacement64(0);
        moved.set_memory_displ_size(0);
        // The scratch register is parked in the rax slot while it holds
        // the address: before the instruction, and after it (then the
        // native pc is the next one) until it is restored.
        let parked = PARKED_RAX_SLOT | (u16::from(number) << HELD_SHIFT);
        glue::fs_mov(&mut self.code, number, slot, true);
        self.point(insn.ip(), 0, 0);
        glue::mov_imm64(&mut self.code, number, insn.ip_rel_memory_address());
        self.point(insn.ip(), 0, parked);
        self.encode(&moved, at)
            .map_err(|_| LeftNative::Untranslatable)?;
        self.point(insn.next_ip(), 0, parked);
        glue::fs_mov(&mut self.code, number, slot, false);
        dbi.counters.far_operands.fetch_add(1, Relaxed);
        Ok(())
    }

    /// An `fs:` operand once some thread's fs base is virtual (see
    /// `Dbi::virtual_fs`): the thread's delta from its real fs base is
    /// added through a scratch register parked in the rax slot:
    /// `fs:[base + index*s + disp]` becomes `fs:[r + index*s + disp]` with
    /// `r = delta + base`.
    fn copy_fs_relative(
        &mut self,
        dbi: &Shared,
        at: u64,
        insn: &Instruction,
    ) -> Result<(), LeftNative> {
        if insn.is_ip_rel_memory_operand() || insn.memory_index().is_vector_register() {
            return Err(LeftNative::Untranslatable);
        }
        let scratch = self.free_register(insn).ok_or(LeftNative::Untranslatable)?;
        let number = scratch.number() as u8;
        let slot = dbi.scratch + scratch::RAX;
        let parked = PARKED_RAX_SLOT | (u16::from(number) << HELD_SHIFT);
        glue::fs_mov(&mut self.code, number, slot, true);
        self.point(insn.ip(), 0, 0);
        glue::fs_mov(
            &mut self.code,
            number,
            dbi.scratch + scratch::FS_DELTA,
            false,
        );
        self.point(insn.ip(), 0, parked);
        let base = insn.memory_base();
        if base != Register::None {
            let add = Instruction::with2(
                Code::Lea_r64_m,
                scratch,
                MemoryOperand::with_base_index(scratch, base),
            )
            .map_err(|_| LeftNative::Untranslatable)?;
            self.encode(&add, at)
                .map_err(|_| LeftNative::Untranslatable)?;
            self.point(insn.ip(), 0, parked);
        }
        let mut moved = *insn;
        moved.set_memory_base(scratch);
        let disp = insn.memory_displacement64() as i64;
        moved.set_memory_displ_size(match disp {
            0 => 0,
            d if i8::try_from(d).is_ok() => 1,
            _ => 4,
        });
        self.encode(&moved, at)
            .map_err(|_| LeftNative::Untranslatable)?;
        self.point(insn.next_ip(), 0, parked);
        glue::fs_mov(&mut self.code, number, slot, false);
        Ok(())
    }

    /// A general register `insn` neither reads nor writes.
    fn free_register(&mut self, insn: &Instruction) -> Option<Register> {
        let used = self.info.info(insn).used_registers();
        [
            Register::R11,
            Register::R10,
            Register::R9,
            Register::R8,
            Register::RSI,
            Register::RDI,
        ]
        .into_iter()
        .find(|r| used.iter().all(|u| u.register().full_register() != *r))
    }

    /// Encodes `insn` at the current position, appending to the block.
    fn encode(&mut self, insn: &Instruction, at: u64) -> Result<(), ()> {
        let rip = at + self.code.len() as u64;
        match self.encoder.encode(insn, rip) {
            Ok(_) => {
                let bytes = self.encoder.take_buffer();
                self.code.extend_from_slice(&bytes);
                let mut bytes = bytes;
                bytes.clear();
                self.encoder.set_buffer(bytes);
                Ok(())
            }
            Err(_) => {
                let mut bytes = self.encoder.take_buffer();
                bytes.clear();
                self.encoder.set_buffer(bytes);
                Err(())
            }
        }
    }

    /// Gives every exit of the block about to be written at `at` an exit
    /// stub appended to the block (which asks the translator, then links
    /// the exit) and a record, and links it at once to an existing live
    /// translation. Every exit keeps its stub, so that invalidating its
    /// target can point it back there.
    fn register_exits(&mut self, dbi: &Shared, at: u64, id: u32) -> Result<(), LeftNative> {
        let block_native = self.insns[0].ip();
        for i in 0..self.exits.len() {
            let (field, native) = (self.exits[i].field, self.exits[i].native);
            let field_addr = at + field as u64;
            let linked = if native == block_native {
                Some((at, id))
            } else {
                dbi.map
                    .get_owned(native)
                    .filter(|&(t, owner)| self.is_live(owner) && dbi.cache.contains(t as usize))
            };
            // The stub carries its own data after the jump (never
            // executed): the host side reads it from the stub's return
            // address, and a forked child sharing the cache reads the same
            // bytes.
            let exit = self.exit_pool.len() as u64;
            let stub = at + self.code.len() as u64;
            glue::call_host(&mut self.code, stub, dbi.stubs.host as u64, REQ_LINK)
                .ok_or(LeftNative::Untranslatable)?;
            debug_assert_eq!(self.code.len() as u64 - (stub - at), glue::CALL_HOST_LEN);
            glue::jmp_fs(&mut self.code, dbi.scratch + scratch::TARGET);
            debug_assert_eq!(
                self.code.len() as u64 - (stub - at),
                EXIT_DATA_OFFSET + glue::CALL_HOST_LEN
            );
            self.code.extend_from_slice(&native.to_le_bytes());
            self.code.extend_from_slice(&exit.to_le_bytes());
            let target = linked.map_or(stub, |(t, _)| t);
            let rel = glue::rel32(field_addr, target).ok_or(LeftNative::Untranslatable)?;
            self.code[field..field + 4].copy_from_slice(&rel.to_le_bytes());
            self.exit_pool.push(ExitRecord {
                field: field_addr,
                stub,
                block: id,
                target: linked.map_or(NONE, |(_, owner)| owner),
                next_in: NONE,
                cache_entry: false,
            });
        }
        for r in 0..self.returns.len() {
            let PendingReturn { entries, data } = self.returns[r];
            for (k, (imm, jump)) in entries.into_iter().enumerate() {
                let index = self.exit_pool.len() as u64;
                self.code[data + 8 * k..data + 8 * k + 8].copy_from_slice(&index.to_le_bytes());
                self.exit_pool.push(ExitRecord {
                    field: at + jump as u64,
                    stub: at + imm as u64,
                    block: id,
                    target: NONE,
                    next_in: NONE,
                    cache_entry: true,
                });
            }
        }
        Ok(())
    }

    pub(crate) fn is_live(&self, owner: u32) -> bool {
        owner != NO_OWNER && self.blocks.get(owner as usize).is_some_and(|b| b.alive)
    }
}

/// Taking translations back (see `records.rs` for the reclamation).
impl Translator {
    /// Links exit `exit` (whose stub just ran) to `target`, the
    /// translation now found for its native target, unless its own block
    /// was invalidated meanwhile or it is already linked.
    pub(crate) fn link_exit(&mut self, dbi: &Shared, exit: u32, native: u64, target: u64) -> bool {
        let Some(record) = self.exit_pool.get(exit as usize).copied() else {
            return false;
        };
        if record.target != NONE || !self.is_live(record.block) {
            return false;
        }
        let Some((at, owner)) = dbi.map.get_owned(native) else {
            return false;
        };
        if at != target || !self.is_live(owner) {
            return false;
        }
        let Some(rel) = glue::rel32(record.field, target) else {
            return false;
        };
        if dbi
            .cache
            .write_emitted(record.field as usize, &rel.to_le_bytes())
            .is_err()
        {
            return false;
        }
        let e = &mut self.exit_pool[exit as usize];
        e.target = owner;
        e.next_in = self.blocks[owner as usize].incoming;
        self.blocks[owner as usize].incoming = exit;
        true
    }

    /// The native pc that cache address `pc` stands for: in a live block
    /// (or a dead one still in limbo), the native instruction whose
    /// translation or glue it is in, the one not yet run; past the block's
    /// body (its exit stubs), the block's native end.
    pub(crate) fn native_pc_of(&self, pc: u64) -> Option<u64> {
        let block = self.block_at(pc)?;
        let offset = (pc - block.code) as u32;
        let native_offset = self
            .points_of(block)
            .iter()
            .take_while(|p| p.code <= offset)
            .last()
            .map_or(0, |p| p.native);
        Some(block.native.wrapping_add(native_offset as i64 as u64))
    }

    /// The block whose code holds `pc` (a live one over a dead one whose
    /// code was reused). While no freed code was reused, blocks are in
    /// code order and found by bisection (a signal storm over a large
    /// program asks often).
    fn block_at(&self, pc: u64) -> Option<&BlockRecord> {
        let inside = |b: &&BlockRecord| b.code <= pc && pc < b.code + u64::from(b.code_len);
        if self.in_code_order {
            let at = self.blocks.partition_point(|b| b.code <= pc);
            return at.checked_sub(1).map(|i| &self.blocks[i]).filter(inside);
        }
        self.blocks.iter().filter(inside).max_by_key(|b| b.alive)
    }

    fn points_of(&self, block: &BlockRecord) -> &[PcPoint] {
        let first = block.first_pc as usize;
        &self.pc_pool[first..first + block.pc_count as usize]
    }

    /// The native state at cache address `pc` (see `signals`), if `pc` is
    /// at a point of a block's code where it is known: a copied
    /// instruction, the branch and lookup glue, an exit stub's start or
    /// its jump on.
    pub(crate) fn native_state_of(&self, dbi: &Shared, pc: u64) -> Option<NativeState> {
        let block = self.block_at(pc)?;
        let offset = (pc - block.code) as u32;
        let points = self.points_of(block);
        let at = points.partition_point(|p| p.code <= offset);
        let point = at.checked_sub(1).map(|i| points[i]);
        let state = |p: PcPoint, parked: u16| NativeState {
            pc: block.native.wrapping_add(p.native as i64 as u64),
            rsp: p.rsp,
            parked,
        };
        match point {
            // The lookup's states (its start included) are the template's.
            Some(p) if p.parked & LOOKUP != 0 => {
                let inside = (offset - p.code) as usize;
                let parked = *dbi.stubs.lookup_states.get(inside)?;
                return (parked != UNMAPPED).then(|| state(p, u16::from(parked)));
            }
            Some(p) if p.code == offset => return Some(state(p, p.parked)),
            _ => {}
        }
        // An exit stub: at its start (the branch taken, the translator not
        // yet asked) or at its jump (the translator answered): the native
        // state is its target, registers as they are.
        let exits = block.first_exit as usize..(block.first_exit + block.exit_count) as usize;
        let exit = self
            .exit_pool
            .get(exits)?
            .iter()
            .find(|e| !e.cache_entry && (pc == e.stub || pc == e.stub + glue::CALL_HOST_LEN))?;
        let mut native = [0u8; 8];
        let data = exit.stub + glue::CALL_HOST_LEN + EXIT_DATA_OFFSET;
        // SAFETY: the stub's data words follow its jump inside the block's
        // code, which is in the cache (readable) while the block's record
        // says it is there.
        unsafe { std::ptr::copy_nonoverlapping(data as *const u8, native.as_mut_ptr(), 8) };
        Some(NativeState {
            pc: u64::from_le_bytes(native),
            rsp: 0,
            parked: 0,
        })
    }

    /// Fills an empty entry of the target cache whose fill stub asked for
    /// `native` (translated at `target`): its jump first, then its
    /// immediate; once both entries are full, misses go straight to the
    /// lookup (`miss`, a rel32 field, is pointed at `lookup`).
    pub(crate) fn fill_return_entry(
        &mut self,
        dbi: &Shared,
        entries: [u64; 2],
        (miss, lookup): (u64, u64),
        native: u64,
        target: u64,
    ) {
        let Some((at, owner)) = dbi.map.get_owned(native) else {
            return;
        };
        if at != target || !self.is_live(owner) {
            return;
        }
        for (k, &entry) in entries.iter().enumerate() {
            let Some(e) = self.exit_pool.get(entry as usize).copied() else {
                return;
            };
            if !e.cache_entry || !self.is_live(e.block) {
                return;
            }
            if e.target != NONE {
                continue;
            }
            let Some(rel) = glue::rel32(e.field, target) else {
                return;
            };
            let immediate = native.wrapping_neg().to_le_bytes();
            if dbi
                .cache
                .write_emitted(e.field as usize, &rel.to_le_bytes())
                .is_err()
                || dbi
                    .cache
                    .write_emitted(e.stub as usize, &immediate)
                    .is_err()
            {
                return;
            }
            let record = &mut self.exit_pool[entry as usize];
            record.target = owner;
            record.next_in = self.blocks[owner as usize].incoming;
            self.blocks[owner as usize].incoming = entry as u32;
            dbi.counters.links.fetch_add(1, Relaxed);
            if k == entries.len() - 1 {
                if let Some(rel) = glue::rel32(miss, lookup) {
                    let _ = dbi.cache.write_emitted(miss as usize, &rel.to_le_bytes());
                }
            }
            return;
        }
    }

    /// Points an exit back at its stub (a target cache entry: zeroes its
    /// immediate, so it never matches).
    fn unlink(&mut self, dbi: &Shared, exit: usize) {
        let e = self.exit_pool[exit];
        if e.cache_entry {
            let _ = dbi.cache.write_emitted(e.stub as usize, &[0; 8]);
            self.exit_pool[exit].target = NONE;
            return;
        }
        if let Some(rel) = glue::rel32(e.field, e.stub) {
            // The field was written when the block was: it is in the cache.
            let _ = dbi
                .cache
                .write_emitted(e.field as usize, &rel.to_le_bytes());
        }
        self.exit_pool[exit].target = NONE;
    }

    /// Makes block `id` unreachable: no map entry, no branch into it, its
    /// own exits back on their stubs (a thread inside leaves it at its
    /// next exit, to the translator). Its code waits in limbo.
    fn kill(&mut self, dbi: &Shared, id: u32, epoch: u64) {
        let b = self.blocks[id as usize];
        if !b.alive {
            return;
        }
        self.blocks[id as usize].alive = false;
        self.alive -= 1;
        dbi.map.remove_if(b.native, |_, owner| owner != id);
        for exit in b.first_exit as usize..(b.first_exit + b.exit_count) as usize {
            if self.exit_pool[exit].target != NONE {
                self.unlink(dbi, exit);
            }
        }
        let mut exit = b.incoming;
        while exit != NONE {
            let e = self.exit_pool[exit as usize];
            if e.target == id && self.is_live(e.block) {
                self.unlink(dbi, exit as usize);
            }
            exit = e.next_in;
        }
        self.blocks[id as usize].incoming = NONE;
        self.reclaimer.retire(b.code, b.code_len, epoch);
    }

    /// Invalidates every translation made from bytes in `[start, end)`,
    /// and forgets code left native there; returns how many blocks died.
    pub(crate) fn invalidate(&mut self, dbi: &Shared, start: u64, end: u64) -> u64 {
        if end <= start || !self.chunks.may_hold(start, end) {
            return 0;
        }
        // Dead code waits for the epoch after this one: a thread that
        // has seen it looked blocks up after they were gone.
        let epoch = records::epoch() + 1;
        let mut killed = 0;
        for id in 0..self.blocks.len() {
            let b = self.blocks[id];
            if b.alive && b.native < end && start < b.native_end {
                self.kill(dbi, id as u32, epoch);
                killed += 1;
            }
        }
        dbi.map.remove_range(start, end, |value, owner| {
            owner != NO_OWNER || dbi.cache.contains(value as usize)
        });
        if killed > 0 {
            records::bump();
            dbi.counters.invalidated.fetch_add(killed, Relaxed);
        }
        killed
    }

    /// Invalidates every translation.
    pub(crate) fn flush(&mut self, dbi: &Shared) -> u64 {
        let killed = self.invalidate(dbi, 0, u64::MAX);
        dbi.counters.flushes.fetch_add(1, Relaxed);
        killed
    }

    /// Frees dead code every thread has left; once nothing is alive and
    /// nothing waits, starts the arena and the records afresh.
    pub(crate) fn reclaim(&mut self, dbi: &Shared) {
        if self.reclaimer.limbo_is_empty() {
            return;
        }
        let freed = self.reclaimer.reclaim(records::safe_epoch());
        dbi.counters.reclaimed_bytes.fetch_add(freed, Relaxed);
        if self.alive == 0 && self.reclaimer.limbo_is_empty() {
            self.blocks.clear();
            self.in_code_order = true;
            self.exit_pool.clear();
            self.pc_pool.clear();
            self.reclaimer.clear();
            self.arena_next = self.arena_start;
        }
    }
}

/// The instruction's memory operand, as an encoder operand (a rip-relative
/// one keeps its absolute target, which the encoder re-relativizes).
fn memory_operand(insn: &Instruction) -> MemoryOperand {
    MemoryOperand::new(
        insn.memory_base(),
        insn.memory_index(),
        insn.memory_index_scale(),
        insn.memory_displacement64() as i64,
        insn.memory_displ_size(),
        false,
        insn.segment_prefix(),
    )
}

/// A 32-bit syscall.
fn is_int80(insn: &Instruction) -> bool {
    insn.code() == Code::Int_imm8 && insn.immediate8() == 0x80
}

/// Instructions the translator leaves native.
fn untranslatable(insn: &Instruction) -> bool {
    matches!(
        insn.mnemonic(),
        // Move or read the fs base, which translated code sees through
        // the translator (see `Dbi::virtual_fs`): such code runs native.
        Mnemonic::Wrfsbase
            | Mnemonic::Rdfsbase
            | Mnemonic::Sysenter
            | Mnemonic::Sysexit
            | Mnemonic::Sysret
            | Mnemonic::Retf
            | Mnemonic::Iret
            | Mnemonic::Iretd
            | Mnemonic::Iretq
            | Mnemonic::Xbegin
            | Mnemonic::Xabort
            | Mnemonic::Xend
    ) || insn.is_jmp_far()
        || insn.is_jmp_far_indirect()
        || insn.is_call_far()
        || insn.is_call_far_indirect()
}

/// Whether the block ends after `insn`.
fn ends_block(insn: &Instruction) -> bool {
    insn.code() != Code::Syscall
        && !matches!(
            insn.flow_control(),
            FlowControl::Next | FlowControl::Interrupt
        )
}

/// Whether `insn`, once translated, never falls through to what follows.
fn transfers_control(insn: &Instruction) -> bool {
    insn.code() != Code::Syscall
        && matches!(
            insn.flow_control(),
            FlowControl::UnconditionalBranch
                | FlowControl::ConditionalBranch
                | FlowControl::Call
                | FlowControl::IndirectCall
                | FlowControl::IndirectBranch
                | FlowControl::Return
        )
}

/// The condition nibble of a `jcc` (`0F 80+cc rel32`), or None for the
/// rcx-counting branches that have no such form.
fn jcc_nibble(insn: &Instruction) -> Option<u8> {
    let cc = insn.condition_code();
    if cc == ConditionCode::None || !insn.is_jcc_short_or_near() {
        return None;
    }
    Some(cc as u8 - 1)
}

/// Copies up to `buf.len()` bytes of native code at `addr` into `buf`
/// without faulting on unmapped memory; returns how many were readable.
pub(crate) fn read_native(addr: u64, buf: &mut [u8]) -> usize {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // One remote iovec per page, so a read that stops at an unmapped page
    // still returns the readable pages before it.
    let mut remote = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; FOREIGN_WINDOW / 4096 + 2];
    let mut n = 0;
    let mut cursor = addr;
    let end = addr + buf.len() as u64;
    while cursor < end && n < remote.len() {
        let page_end = (cursor | 0xfff) + 1;
        let len = page_end.min(end) - cursor;
        remote[n] = libc::iovec {
            iov_base: cursor as *mut libc::c_void,
            iov_len: len as usize,
        };
        n += 1;
        cursor += len;
    }
    // SAFETY: process_vm_readv on our own process writes at most
    // `buf.len()` bytes into `buf`, and reports unreadable source memory
    // as a short count or an error instead of faulting.
    let got =
        unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, remote.as_ptr(), n as _, 0) };
    got.max(0) as usize
}
