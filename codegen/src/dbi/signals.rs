//! Signals that land in translated code, shown to the program as native
//! code would have them.
//!
//! Every instruction boundary of a block's code where the native state
//! can be told is recorded as a point ([`PcPoint`]): the native
//! instruction not yet run there, how far the stack pointer is from the
//! native one (a call's pushed return address, a return's popped one) and
//! which foreign registers the glue has parked in the thread's scratch
//! slots. A copied instruction is such a point (the native state, exactly);
//! so are the boundaries of the branch glue, the lookup copies and the
//! target caches. A blocking syscall the direct stub executes itself is
//! mapped from the stub's frame (see `in_stub_syscall`): the program's
//! `syscall` instruction when the kernel will restart it, the one after
//! otherwise. The boundaries inside a syscall site's glue, a counter, a
//! callout's call, a transformer's inline code and the shared stubs are
//! not, nor a syscall the engine runs itself (when post-hooks need its
//! result, or a memory syscall the translator must see): a signal landing
//! there is delivered as before (the cache pc, or the engine's, in the
//! context, the handler run native, resumed where it landed).
//!
//! At a point the engine's frame hooks ([`sud_engine::FrameHooks`]) make
//! the built frame native: registers from their slots, the native stack
//! pointer and pc. The handler is entered at its translation (its frame's
//! restorer is left native, so that its `rt_sigreturn` traps). At that
//! `rt_sigreturn` the context's pc, whatever the handler left there, is
//! native: it becomes the translation of that address (made then if
//! needed), and the native registers in the context are all translated
//! code needs there. So a handler that moves the pc to a recovery label
//! resumes, translated, at that label; `backtrace()` in the handler sees
//! native return addresses down to the frame and the native pc in it.
//!
//! Handlers installed by translated code must be the engine's to wrap:
//! `rt_sigaction` and `sigaltstack` from translated code take the trap path
//! (see [`TrapGadget`]), where the engine keeps the program's actions and
//! alternate stack virtual.

use super::{scratch, Dbi};
use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Mnemonic, OpKind, Register};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

/// The rax slot holds a parked foreign register (rax, or for a far operand
/// the scratch register in `HELD_SHIFT`'s bits).
pub(crate) const PARKED_RAX_SLOT: u16 = 1;
pub(crate) const PARKED_RCX: u16 = 2;
pub(crate) const PARKED_RDX: u16 = 4;
pub(crate) const PARKED_R11: u16 = 8;
/// A copy of the lookup starts at this point; the template's states say
/// what is parked at each boundary inside it.
pub(crate) const LOOKUP: u16 = 16;
/// Bits 8-11: the register (iced's number, rax = 0) the rax slot holds.
pub(crate) const HELD_SHIFT: u16 = 8;
/// Not an instruction boundary, or one without a native equivalent.
pub(crate) const UNMAPPED: u8 = 0xff;

/// A point of a block's code where the native state is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PcPoint {
    /// Offset in the block's code.
    pub(crate) code: u32,
    /// The native pc there, from the block's native start.
    pub(crate) native: i32,
    /// The native stack pointer minus the one there.
    pub(crate) rsp: i32,
    pub(crate) parked: u16,
}

/// The native state at a cache pc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NativeState {
    pub(crate) pc: u64,
    pub(crate) rsp: i32,
    pub(crate) parked: u16,
}

/// The parked registers at each byte of the lookup template (see
/// `SharedStubs::lookup_states`), found by following its slot stores
/// and loads: it starts with foreign rax in its slot.
pub(crate) fn parked_states(template: &[u8], scratch: i32) -> Vec<u8> {
    let mut states = vec![UNMAPPED; template.len()];
    let slot_of = |disp: u64| -> Option<u8> {
        let d = disp as i64;
        [
            (scratch::RAX, PARKED_RAX_SLOT),
            (scratch::RCX, PARKED_RCX),
            (scratch::RDX, PARKED_RDX),
            (scratch::R11, PARKED_R11),
        ]
        .into_iter()
        .find(|&(slot, _)| d == i64::from(scratch + slot))
        .map(|(_, bit)| bit as u8)
    };
    let register_bit = |r: Register| match r {
        Register::RAX => Some(PARKED_RAX_SLOT as u8),
        Register::RCX => Some(PARKED_RCX as u8),
        Register::RDX => Some(PARKED_RDX as u8),
        Register::R11 => Some(PARKED_R11 as u8),
        _ => None,
    };
    let mut parked = PARKED_RAX_SLOT as u8;
    let mut rsp_moved = 0i64;
    // What is parked where a branch inside the template lands (the miss
    // path follows the hit path in the bytes but not in the flow).
    let mut incoming = vec![None; template.len()];
    let mut falls_through = true;
    for insn in Decoder::with_ip(64, template, 0, DecoderOptions::NONE) {
        let at = insn.ip() as usize;
        if !falls_through {
            match incoming[at] {
                Some(state) => parked = state,
                None => break,
            }
        }
        if rsp_moved == 0 {
            states[at] = parked;
        }
        if insn.is_jcc_short_or_near() || insn.is_jmp_short_or_near() || insn.is_jcx_short() {
            let target = insn.near_branch_target() as usize;
            if let Some(slot) = incoming.get_mut(target) {
                *slot = Some(parked);
            }
        }
        falls_through = !matches!(
            insn.flow_control(),
            FlowControl::UnconditionalBranch | FlowControl::IndirectBranch | FlowControl::Return
        );
        let fs_slot = insn.segment_prefix() == Register::FS
            && insn.memory_base() == Register::None
            && insn.memory_index() == Register::None;
        match insn.mnemonic() {
            Mnemonic::Mov if fs_slot && insn.op0_kind() == OpKind::Memory => {
                let slot = slot_of(insn.memory_displacement64());
                if slot.is_some() && slot == register_bit(insn.op1_register()) {
                    parked |= slot.unwrap_or(0);
                }
            }
            Mnemonic::Mov if fs_slot && insn.op1_kind() == OpKind::Memory => {
                let slot = slot_of(insn.memory_displacement64());
                if slot.is_some() && slot == register_bit(insn.op0_register()) {
                    parked &= !slot.unwrap_or(0);
                }
            }
            Mnemonic::Lea if insn.op0_register() == Register::RSP => {
                rsp_moved += insn.memory_displacement64() as i64;
            }
            Mnemonic::Pushfq => rsp_moved -= 8,
            Mnemonic::Popfq => rsp_moved += 8,
            _ => {}
        }
        debug_assert!(insn.code() != Code::INVALID);
    }
    states
}

/// `gregs` index of iced's register number (rax = 0 ... r15 = 15).
const GREG_OF: [usize; 16] = [
    libc::REG_RAX as usize,
    libc::REG_RCX as usize,
    libc::REG_RDX as usize,
    libc::REG_RBX as usize,
    libc::REG_RSP as usize,
    libc::REG_RBP as usize,
    libc::REG_RSI as usize,
    libc::REG_RDI as usize,
    libc::REG_R8 as usize,
    libc::REG_R9 as usize,
    libc::REG_R10 as usize,
    libc::REG_R11 as usize,
    libc::REG_R12 as usize,
    libc::REG_R13 as usize,
    libc::REG_R14 as usize,
    libc::REG_R15 as usize,
];

/// Where the translator marks a frame it made native: the context's
/// second reserved word (the engine keeps its own marker in the first;
/// the kernel neither fills nor reads them).
const MARK_OFFSET: usize = std::mem::offset_of!(libc::ucontext_t, uc_mcontext.fpregs) + 16;
const MARK: u64 = 0x5355_4444_4249_4e41; // "SUDDBINA"

pub(crate) static HOOKS: sud_engine::FrameHooks = sud_engine::FrameHooks {
    on_deliver,
    on_sigreturn,
};

fn abort_on_panic<R>(f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(_) => {
            let msg = b"sud-codegen dbi: a panic in signal delivery; aborting\n";
            // SAFETY: writing a static buffer to stderr.
            unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
            std::process::abort()
        }
    }
}

/// The engine built a frame for a handler: if the signal landed at a
/// point of translated code, make the context native and enter the
/// handler translated.
///
/// # Safety
/// `uc` is the built frame's context (the engine's contract).
unsafe fn on_deliver(uc: *mut libc::ucontext_t, handler: u64, restorer: u64) -> u64 {
    let Some(dbi) = Dbi::installed() else {
        return handler;
    };
    abort_on_panic(|| {
        let mark = (uc as usize + MARK_OFFSET) as *mut u64;
        // SAFETY: the built frame's context is writable; the word is one of
        // its reserved ones.
        unsafe { mark.write(0) };
        // SAFETY: as above.
        let gregs = unsafe { &mut (*uc).uc_mcontext.gregs };
        let pc = gregs[libc::REG_RIP as usize] as u64;
        if !dbi.shared.cache.contains(pc as usize) || dbi.holds_lock() {
            return handler;
        }
        dbi.shared.restorer.store(restorer, Ordering::Relaxed);
        let counters = &dbi.shared.counters;
        if in_stub_syscall(dbi, pc, gregs) {
            counters.native_frames.fetch_add(1, Ordering::Relaxed);
            // SAFETY: as above.
            unsafe { mark.write(MARK) };
            return dbi.resolve(handler);
        }
        let Some(state) = dbi.with_translator(|t| t.native_state_of(&dbi.shared, pc)) else {
            counters.cache_frames.fetch_add(1, Ordering::Relaxed);
            return handler;
        };
        counters.native_frames.fetch_add(1, Ordering::Relaxed);
        scratch::with_scratch(|s| {
            if state.parked & PARKED_RAX_SLOT != 0 {
                let held = usize::from((state.parked >> HELD_SHIFT) & 15);
                gregs[GREG_OF[held]] = s.rax.get() as i64;
            }
            if state.parked & PARKED_RCX != 0 {
                gregs[libc::REG_RCX as usize] = s.rcx.get() as i64;
            }
            if state.parked & PARKED_RDX != 0 {
                gregs[libc::REG_RDX as usize] = s.rdx.get() as i64;
            }
            if state.parked & PARKED_R11 != 0 {
                gregs[libc::REG_R11 as usize] = s.r11.get() as i64;
            }
        });
        let rsp = &mut gregs[libc::REG_RSP as usize];
        *rsp = rsp.wrapping_add(i64::from(state.rsp));
        gregs[libc::REG_RIP as usize] = state.pc as i64;
        // SAFETY: as above.
        unsafe { mark.write(MARK) };
        dbi.resolve(handler)
    })
}

/// A signal that landed on the direct stub's own `syscall` (a blocking call
/// the hooks let run, executed by the stub; the kernel leaves the pc on
/// the instruction to restart it, or after it): made native in `gregs` as
/// the program's `syscall` instruction, or the one after it, would have
/// it. The stub's frame gives the rest (see `direct_call_stub`): its rbp
/// points at the foreign rbp, then the foreign flags and the return
/// address into the site; the foreign stack pointer is above those and
/// the red zone the site stepped over. The argument registers hold the
/// call's arguments; rcx and r11, which the site's glue and the syscall
/// clobber, get what a returning syscall leaves there.
fn in_stub_syscall(dbi: &Dbi, pc: u64, gregs: &mut [i64; 23]) -> bool {
    let syscall = dbi.shared.stub_syscall;
    if syscall == 0 || (pc != syscall && pc != syscall + 2) {
        return false;
    }
    let rbp = gregs[libc::REG_RBP as usize] as u64;
    let mut frame = [0u8; 24];
    if super::block::read_native(rbp, &mut frame) != frame.len() {
        return false;
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&frame[8 * i..8 * i + 8]);
        u64::from_le_bytes(w)
    };
    let (foreign_rbp, flags, site_return) = (word(0), word(1), word(2));
    // The site is in a block; no point is recorded inside it, so the one
    // before it is its `syscall` item.
    let Some(native) = dbi.with_translator(|t| t.native_pc_of(site_return)) else {
        return false;
    };
    let next = native + 2;
    gregs[libc::REG_RIP as usize] = if pc == syscall { native } else { next } as i64;
    gregs[libc::REG_RSP as usize] = (rbp + 16 + 8 + 128) as i64;
    gregs[libc::REG_RBP as usize] = foreign_rbp as i64;
    gregs[libc::REG_EFL as usize] = flags as i64;
    gregs[libc::REG_RCX as usize] = next as i64;
    gregs[libc::REG_R11 as usize] = flags as i64;
    true
}

/// The address of the `syscall` instruction of the direct stub at `stub`
/// (it executes the calls the hooks let run), found by decoding it up to
/// its final `ret`; 0 if there is none.
pub(crate) fn syscall_in_stub(stub: u64) -> u64 {
    let mut bytes = [0u8; 1024];
    let got = super::block::read_native(stub, &mut bytes);
    let mut decoder = Decoder::with_ip(64, &bytes[..got], stub, DecoderOptions::NONE);
    while decoder.can_decode() {
        let insn = decoder.decode();
        match insn.code() {
            Code::Syscall => return insn.ip(),
            Code::INVALID => return 0,
            _ if insn.flow_control() == FlowControl::Return => return 0,
            _ => {}
        }
    }
    0
}

/// A frame's `rt_sigreturn`: a frame made native resumes at the
/// translation of the native pc its context holds now.
///
/// # Safety
/// `uc` is the context about to be restored (the engine's contract).
unsafe fn on_sigreturn(uc: *mut libc::ucontext_t) {
    let Some(dbi) = Dbi::installed() else {
        return;
    };
    abort_on_panic(|| {
        let mark = (uc as usize + MARK_OFFSET) as *mut u64;
        // SAFETY: the context is readable and writable (the engine just
        // wrote it); the word is one of its reserved ones.
        if unsafe { mark.read() } != MARK {
            return;
        }
        // SAFETY: as above.
        unsafe { mark.write(0) };
        // SAFETY: as above.
        let gregs = unsafe { &mut (*uc).uc_mcontext.gregs };
        let pc = gregs[libc::REG_RIP as usize] as u64;
        let target = if dbi.holds_lock() {
            dbi.translation_of(pc as usize).map_or(pc, |t| t as u64)
        } else {
            dbi.resolve(pc)
        };
        gregs[libc::REG_RIP as usize] = target as i64;
    })
}

/// Syscalls translated code makes through the trap path: the engine keeps
/// the program's signal actions and alternate stack virtual there (its
/// direct entrance runs calls as they are).
pub(crate) fn takes_trap_path(nr: u64) -> bool {
    nr == libc::SYS_rt_sigaction as u64 || nr == libc::SYS_sigaltstack as u64
}

/// A page outside the code cache (the engine's excluded region) holding an
/// `extern "C" fn(nr, a0, ..., a5) -> i64` syscall: issued with the
/// selector on BLOCK, it traps.
pub(crate) struct TrapGadget(usize);

impl TrapGadget {
    const CODE: [u8; 28] = [
        0x48, 0x89, 0xf8, // mov rax, rdi
        0x48, 0x89, 0xf7, // mov rdi, rsi
        0x48, 0x89, 0xd6, // mov rsi, rdx
        0x48, 0x89, 0xca, // mov rdx, rcx
        0x4d, 0x89, 0xc2, // mov r10, r8
        0x4d, 0x89, 0xc8, // mov r8, r9
        0x4c, 0x8b, 0x4c, 0x24, 0x08, // mov r9, [rsp + 8]
        0x0f, 0x05, // syscall
        0xc3, // ret
        0xcc, 0xcc,
    ];
    /// `int 0x80; ret`, at `INT80_OFFSET` in the page: translated code's
    /// 32-bit syscalls trap there, and the engine runs them with the i386
    /// table (its compat path).
    const INT80: [u8; 3] = [0xcd, 0x80, 0xc3];
    const INT80_OFFSET: usize = 32;

    pub(crate) fn new() -> Option<TrapGadget> {
        // SAFETY: a fresh private anonymous page, written then made
        // read+execute; nothing else refers to it.
        unsafe {
            let page = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if page == libc::MAP_FAILED {
                return None;
            }
            std::ptr::copy_nonoverlapping(Self::CODE.as_ptr(), page.cast(), Self::CODE.len());
            std::ptr::copy_nonoverlapping(
                Self::INT80.as_ptr(),
                page.cast::<u8>().add(Self::INT80_OFFSET),
                Self::INT80.len(),
            );
            if libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC) != 0 {
                return None;
            }
            Some(TrapGadget(page as usize))
        }
    }

    /// Where translated `int 0x80` instructions call (see `INT80`).
    pub(crate) fn int80(&self) -> u64 {
        (self.0 + Self::INT80_OFFSET) as u64
    }

    /// Runs `nr(args)` through the trap path (from host code, selector
    /// ALLOW; the call is the foreign code's).
    pub(crate) fn syscall(&self, nr: u64, args: &[u64; 6]) -> i64 {
        // SAFETY: the page holds CODE, a C-ABI function of seven integers.
        let f: extern "C" fn(u64, u64, u64, u64, u64, u64, u64) -> i64 =
            unsafe { std::mem::transmute(self.0) };
        let _foreign = sud_engine::selector::enter(sud_engine::Selector::Block);
        f(nr, args[0], args[1], args[2], args[3], args[4], args[5])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Formatter, NasmFormatter};

    #[test]
    fn the_trap_gadget_decodes_to_a_syscall_of_its_arguments() {
        let mut f = NasmFormatter::new();
        let text: Vec<String> =
            Decoder::with_ip(64, &TrapGadget::CODE[..26], 0, DecoderOptions::NONE)
                .into_iter()
                .map(|i| {
                    let mut s = String::new();
                    f.format(&i, &mut s);
                    s
                })
                .collect();
        assert_eq!(
            text,
            [
                "mov rax,rdi",
                "mov rdi,rsi",
                "mov rsi,rdx",
                "mov rdx,rcx",
                "mov r10,r8",
                "mov r8,r9",
                "mov r9,[rsp+8]",
                "syscall",
                "ret"
            ]
        );
    }
}
