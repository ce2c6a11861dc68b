//! The code snippets a JIT emits on aarch64: selector flips, the direct-hook
//! stub that stands in for `svc #0`, and the call site that reaches it.
//! Everything is assembled with dynasmrt's aarch64 backend; immediates are
//! range-checked here first because dynasmrt panics on one that does not fit.

// dynasm! turns each dynamic register operand into `let r: u8 = operand.into()`,
// the identity for the plain register numbers used here.
#![allow(clippy::useless_conversion)]

use dynasmrt::aarch64::Aarch64Relocation;
use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi, VecAssembler};
use std::fmt;

type Asm = VecAssembler<Aarch64Relocation>;

/// `IP0`/`IP1`: the AAPCS64 lets any call clobber them (veneers do), so they
/// are the snippets' scratch registers.
const IP0: u8 = 16;
const IP1: u8 = 17;
/// The link register, overwritten by the `bl` that enters the stub.
const LR: u8 = 30;

/// The 15-bit system-register operand of `mrs`/`msr`: op0 (2 or 3, stored
/// as one bit), op1, CRn, CRm, op2.
const fn sysreg(op0: u32, op1: u32, crn: u32, crm: u32, op2: u32) -> u32 {
    (op0 - 2) << 14 | op1 << 11 | crn << 7 | crm << 3 | op2
}
const TPIDR_EL0: u32 = sysreg(3, 3, 13, 0, 2);
const NZCV: u32 = sysreg(3, 3, 4, 2, 0);
const FPSR: u32 = sysreg(3, 3, 4, 4, 1);

/// How emitted code reaches the running thread's selector byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorAccess {
    /// At `offset` bytes from `tpidr_el0` (static TLS: the same offset in
    /// every thread, see `sud_engine::SelectorLocation::tp_offset`).
    /// Clobbers x16 and x17.
    ThreadPointer {
        /// The selector's address minus the thread pointer.
        offset: i32,
    },
    /// Register `x{reg}` holds the selector's address (a translator can
    /// reserve one for the whole block). Clobbers x17, or x16 when `reg` is 17.
    Register {
        /// The register number, 0 to 30.
        reg: u8,
    },
    /// At a fixed address (one thread only, or a shared byte). Clobbers x16
    /// and x17.
    Absolute {
        /// The selector's address.
        address: u64,
    },
}

/// What the emitters refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitError {
    /// The stub cannot reach the selector through this register: x0 carries
    /// the result, x16/x17 are the stub's scratch registers and x30 is
    /// overwritten by the `bl` that enters the stub.
    SelectorRegisterUnusable(u8),
    /// A `bl` at `site` cannot reach `target` (±128 MiB, 4-byte aligned).
    BranchOutOfRange {
        /// Address of the branch instruction.
        site: u64,
        /// Where it should go.
        target: u64,
    },
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmitError::SelectorRegisterUnusable(reg) => write!(
                f,
                "x{reg} cannot hold the selector address for a direct stub: x0 carries the \
                 result, x16/x17 are scratch and x30 is the link register; reserve another \
                 register or use SelectorAccess::ThreadPointer"
            ),
            EmitError::BranchOutOfRange { site, target } => write!(
                f,
                "a bl at {site:#x} cannot reach {target:#x} (range is ±128 MiB, 4-byte \
                 aligned): place the stub closer to the call site"
            ),
        }
    }
}

impl std::error::Error for EmitError {}

/// Finishes an assembler whose only label reference (a call site's `bl`)
/// was range-checked before emission, so it cannot fail.
fn finish(ops: Asm) -> Vec<u8> {
    ops.finalize()
        .expect("no labels, or a branch target checked to be in range")
}

/// `mov x{reg}, #value` in as few `movz`/`movk` as the nonzero halfwords need.
fn load_u64(ops: &mut Asm, reg: u8, value: u64) {
    let half = |shift: u32| ((value >> shift) & 0xffff) as u32;
    let mut shifts = [0, 16, 32, 48].into_iter().filter(|&s| half(s) != 0);
    let first = shifts.next().unwrap_or(0);
    dynasm!(ops ; .arch aarch64 ; movz X(reg), half(first), lsl first);
    for shift in shifts {
        dynasm!(ops ; .arch aarch64 ; movk X(reg), half(shift), lsl shift);
    }
}

/// The byte store of a flip; `scratch` receives the value unless it is 0.
fn store_byte(ops: &mut Asm, value: u8, scratch: u8, base: u8, offset: u32) {
    if value == 0 {
        dynasm!(ops ; .arch aarch64 ; strb wzr, [X(base), offset]);
    } else {
        dynasm!(ops
            ; .arch aarch64
            ; movz W(scratch), value as u32
            ; strb W(scratch), [X(base), offset]
        );
    }
}

fn emit_flip(ops: &mut Asm, access: SelectorAccess, value: u8) {
    match access {
        SelectorAccess::ThreadPointer { offset } => {
            dynasm!(ops ; .arch aarch64 ; mrs X(IP0), TPIDR_EL0);
            match u32::try_from(offset) {
                // strb's unsigned, unscaled 12-bit offset covers any
                // realistic static-TLS slot in one instruction.
                Ok(off) if off < 4096 => store_byte(ops, value, IP1, IP0, off),
                _ => {
                    let bits = offset as u32;
                    dynasm!(ops
                        ; .arch aarch64
                        ; movz W(IP1), bits & 0xffff
                        ; movk W(IP1), bits >> 16, lsl 16
                        ; add XSP(IP0), XSP(IP0), W(IP1), sxtw
                    );
                    store_byte(ops, value, IP1, IP0, 0);
                }
            }
        }
        SelectorAccess::Register { reg } => {
            assert!(reg <= 30, "x{reg} is not a general-purpose register");
            let scratch = if reg == IP1 { IP0 } else { IP1 };
            store_byte(ops, value, scratch, reg, 0);
        }
        SelectorAccess::Absolute { address } => {
            load_u64(ops, IP0, address);
            store_byte(ops, value, IP1, IP0, 0);
        }
    }
}

/// Code that stores `value` into the selector byte (0 = ALLOW, 1 = BLOCK;
/// the kernel kills a thread whose selector holds anything else). It falls
/// through at its end, touches no flags and clobbers only the scratch
/// registers named on each [`SelectorAccess`] form.
///
/// # Panics
/// If a [`SelectorAccess::Register`] names a register above 30.
pub fn selector_flip(access: SelectorAccess, value: u8) -> Vec<u8> {
    let mut ops = Asm::new(0);
    emit_flip(&mut ops, access, value);
    finish(ops)
}

/// Where the direct stub takes the `call_addr` it reports to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallAddr {
    /// A constant: the address just after the original `svc #0` in the
    /// foreign code, for a stub emitted per site (what a translator wants).
    Fixed(u64),
    /// The stub's return address (x30 at entry), so one stub can serve
    /// every site; the engine then sees the address after the site's `bl`.
    ReturnAddress,
}

/// General registers the stub saves besides x16/x17 (stored first, as the
/// flips need them) and x0 (the result): 28 registers, 14 pairs.
const SAVED_PAIRS: [(u8, u8); 14] = [
    (1, 2),
    (3, 4),
    (5, 6),
    (7, 8),
    (9, 10),
    (11, 12),
    (13, 14),
    (15, 18),
    (19, 20),
    (21, 22),
    (23, 24),
    (25, 26),
    (27, 28),
    (29, 30),
];
/// x16/x17, the 14 pairs, then NZCV and FPSR: 16 pairs.
const GPR_AREA: i32 = 256;
const FLAGS_SLOT: i32 = GPR_AREA - 16;
/// q0-q31, 16 bytes each.
const SIMD_AREA: i32 = 512;
/// `sud_engine::DirectFrame`: nr, args[6], call_addr.
const FRAME_SIZE: i32 = 64;

/// Total stack the direct stub uses below the caller's `sp`.
pub const DIRECT_STUB_STACK: usize = (GPR_AREA + SIMD_AREA + FRAME_SIZE) as usize;

/// The direct-hook stub: code that stands in for `svc #0` in translated
/// code and hands the call to the engine without a signal.
///
/// **Entry contract.** Reached by `bl`/`blr` with the registers as at the
/// `svc #0` (x8 = number, x0-x5 = arguments) and `sp` 16-byte aligned (Linux
/// faults on an unaligned `sp` base anyway). The `bl` itself overwrites x30,
/// which `svc` would have kept: the *call site* saves and restores x30 —
/// [`direct_call_site`] emits exactly that — so the stub never needs a
/// scratch register before it has saved one. The stub writes
/// [`DIRECT_STUB_STACK`] bytes below `sp`.
///
/// **What it does.** Saves x1-x30, NZCV, FPSR and all of q0-q31 (the callee
/// may clobber v0-v7, v16-v31 and the upper halves of v8-v15, while `svc`
/// preserves all of them; with SVE, `svc` keeps only these low 128 bits too).
/// Sets the selector to ALLOW (0), builds `DirectFrame { nr, args, call_addr }`
/// at the 16-byte aligned `sp`, calls `entry` (an
/// `extern "C" fn(&DirectFrame) -> i64`, normally `sud_engine::direct_entry`)
/// with x0 = the frame, puts the result in x0, restores everything else,
/// sets the selector to BLOCK (1) and returns. Cost: about 110 instructions,
/// mostly the 1 KiB of SIMD stores and loads, next to a trap's signal frame.
///
/// # Errors
/// [`EmitError::SelectorRegisterUnusable`] for a [`SelectorAccess::Register`]
/// naming x0, x16, x17, x30 or a register above 30.
pub fn direct_stub(
    selector: SelectorAccess,
    entry: u64,
    call_addr: CallAddr,
) -> Result<Vec<u8>, EmitError> {
    if let SelectorAccess::Register { reg } = selector {
        if reg == 0 || reg == IP0 || reg == IP1 || reg >= LR {
            return Err(EmitError::SelectorRegisterUnusable(reg));
        }
    }
    let mut ops = Asm::new(0);

    // Free the scratch registers first, then everything else.
    dynasm!(ops ; .arch aarch64 ; stp X(IP0), X(IP1), [sp, -GPR_AREA]!);
    for (i, (a, b)) in (1i32..).zip(SAVED_PAIRS) {
        dynasm!(ops ; .arch aarch64 ; stp X(a), X(b), [sp, 16 * i]);
    }
    dynasm!(ops
        ; .arch aarch64
        ; mrs X(IP0), NZCV
        ; mrs X(IP1), FPSR
        ; stp X(IP0), X(IP1), [sp, FLAGS_SLOT]
    );
    emit_flip(&mut ops, selector, 0);

    dynasm!(ops ; .arch aarch64 ; sub sp, sp, SIMD_AREA as u32);
    for q in (0u8..32).step_by(2) {
        dynasm!(ops ; .arch aarch64 ; stp Q(q), Q(q + 1), [sp, 16 * i32::from(q)]);
    }

    // DirectFrame, in field order: nr, a0..a5, call_addr.
    dynasm!(ops
        ; .arch aarch64
        ; sub sp, sp, FRAME_SIZE as u32
        ; stp x8, x0, [sp]
        ; stp x1, x2, [sp, 16]
        ; stp x3, x4, [sp, 32]
    );
    match call_addr {
        CallAddr::Fixed(addr) => load_u64(&mut ops, IP0, addr),
        CallAddr::ReturnAddress => dynasm!(ops ; .arch aarch64 ; mov X(IP0), X(LR)),
    }
    dynasm!(ops
        ; .arch aarch64
        ; stp x5, X(IP0), [sp, 48]
        ; mov x0, sp
    );
    load_u64(&mut ops, IP0, entry);
    dynasm!(ops
        ; .arch aarch64
        ; blr X(IP0)
        ; add sp, sp, FRAME_SIZE as u32
    );

    for q in (0u8..32).step_by(2) {
        dynasm!(ops ; .arch aarch64 ; ldp Q(q), Q(q + 1), [sp, 16 * i32::from(q)]);
    }
    dynasm!(ops
        ; .arch aarch64
        ; add sp, sp, SIMD_AREA as u32
        ; ldp X(IP0), X(IP1), [sp, FLAGS_SLOT]
        ; msr NZCV, X(IP0)
        ; msr FPSR, X(IP1)
    );
    for (i, (a, b)) in (1i32..).zip(SAVED_PAIRS) {
        dynasm!(ops ; .arch aarch64 ; ldp X(a), X(b), [sp, 16 * i]);
    }
    // The flip needs its register restored and clobbers only x16/x17,
    // which come back last.
    emit_flip(&mut ops, selector, 1);
    dynasm!(ops
        ; .arch aarch64
        ; ldp X(IP0), X(IP1), [sp], GPR_AREA
        ; ret
    );
    Ok(finish(ops))
}

/// Length of [`direct_call_site`]'s code.
pub const DIRECT_CALL_SITE_LEN: usize = 12;

/// What replaces `svc #0` at `site` in translated code: keeps x30 (which
/// `svc` preserves but `bl` overwrites) on the stack around `bl stub`.
/// Uses 16 bytes of stack below `sp`, which must be 16-byte aligned.
///
/// # Errors
/// [`EmitError::BranchOutOfRange`] when `stub` is not within ±128 MiB of the
/// `bl` (at `site + 4`) or not 4-byte aligned.
pub fn direct_call_site(site: u64, stub: u64) -> Result<[u8; DIRECT_CALL_SITE_LEN], EmitError> {
    let bl_at = site.wrapping_add(4);
    let delta = stub.wrapping_sub(bl_at) as i64;
    let reachable = delta % 4 == 0 && (-(1 << 27)..(1 << 27)).contains(&delta);
    if !reachable {
        return Err(EmitError::BranchOutOfRange {
            site: bl_at,
            target: stub,
        });
    }
    let mut ops = Asm::new(site as usize);
    dynasm!(ops
        ; .arch aarch64
        ; str X(LR), [sp, -16]!
        ; bl extern stub as usize
        ; ldr X(LR), [sp], 16
    );
    let code = finish(ops);
    Ok(code.try_into().expect("three instructions"))
}
