//! Code snippets a code generator emits on x86-64: the one-instruction
//! selector flip, the direct-call stub that stands in for a `syscall`
//! instruction in translated code, and the site sequence that calls it.
//!
//! Everything here returns bytes; where they go (a code cache that is the
//! engine's excluded region) is the caller's business. The stub is entered
//! from foreign code, which may be anywhere (inside `malloc`, holding its
//! lock): the stub itself allocates nothing and takes no lock, and it keeps
//! every register the `syscall` instruction keeps.

use dynasmrt::x64::X64Relocation;
use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi, VecAssembler};

pub use dynasmrt::x64::Rq;

/// How emitted code reaches the running thread's selector byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorAccess {
    /// `fs:[offset]`. The engine keeps its selector in static TLS, so its
    /// offset from the thread pointer is the same in every thread: one
    /// emitted instruction serves all threads and needs no register. The
    /// default choice.
    ThreadPointer {
        /// Selector address minus the `fs` base.
        offset: i32,
    },
    /// `[reg + disp]`, for a JIT that keeps a per-thread context pointer
    /// in a register its generated code never reuses.
    Register {
        /// The context register.
        reg: Rq,
        /// The selector's offset from what `reg` holds.
        disp: i32,
    },
    /// `[address]` (sign-extended 32-bit absolute). Single-threaded use
    /// only, and only for a selector the low 2 GiB (or top 2 GiB) can
    /// address; everything else uses `ThreadPointer`.
    Absolute {
        /// The selector's address.
        address: u64,
    },
}

/// Why a snippet cannot be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitError {
    /// The kernel only accepts 0 (ALLOW) and 1 (BLOCK) in a selector; any
    /// other value kills the thread at its next syscall.
    BadSelectorValue(u8),
    /// An absolute selector address that a 32-bit displacement cannot hold:
    /// use [`SelectorAccess::ThreadPointer`] (the engine's selector is in
    /// static TLS) or a context register.
    AbsoluteOutOfReach {
        /// The address asked for.
        address: u64,
    },
    /// A rel32 call cannot reach from the site to the stub: put both in one
    /// code cache (its whole reservation is within rel32 reach).
    OutOfRel32Reach {
        /// Where the call instruction would be.
        site: u64,
        /// Where it should go.
        target: u64,
    },
    /// `rsp` cannot serve as the context register of a flip (it moves).
    StackPointerAsContext,
}

impl std::fmt::Display for EmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            EmitError::BadSelectorValue(v) => write!(
                f,
                "selector value {v} is neither 0 (ALLOW) nor 1 (BLOCK); the kernel would kill the thread"
            ),
            EmitError::AbsoluteOutOfReach { address } => write!(
                f,
                "selector address {address:#x} does not fit a sign-extended 32-bit displacement; \
                 use the thread-pointer offset or a context register"
            ),
            EmitError::OutOfRel32Reach { site, target } => write!(
                f,
                "a call at {site:#x} cannot reach {target:#x} with rel32; place both in one code cache"
            ),
            EmitError::StackPointerAsContext => {
                write!(f, "rsp cannot be the context register of a selector flip")
            }
        }
    }
}

impl std::error::Error for EmitError {}

/// Length of an emitted `fs:[offset]` flip: `64 C6 04 25 disp32 imm8`.
pub const THREAD_POINTER_FLIP_LEN: usize = 9;

/// One instruction that stores `value` (0 = ALLOW, 1 = BLOCK) into the
/// selector: `mov byte [fs:offset], value`, `mov byte [reg+disp], value`
/// or `mov byte [address], value`. A byte store touches no flags and no
/// register.
pub fn selector_flip(access: SelectorAccess, value: u8) -> Result<Vec<u8>, EmitError> {
    if value > 1 {
        return Err(EmitError::BadSelectorValue(value));
    }
    let imm = value as i8;
    let mut a = VecAssembler::<X64Relocation>::new(0);
    match access {
        SelectorAccess::ThreadPointer { offset } => {
            dynasm!(a ; .arch x64 ; fs mov BYTE [offset], imm);
        }
        SelectorAccess::Register { reg, disp } => {
            if reg == Rq::RSP {
                return Err(EmitError::StackPointerAsContext);
            }
            dynasm!(a ; .arch x64 ; mov BYTE [Rq(reg) + disp], imm);
        }
        SelectorAccess::Absolute { address } => {
            let disp = i32::try_from(address as i64)
                .map_err(|_| EmitError::AbsoluteOutOfReach { address })?;
            dynasm!(a ; .arch x64 ; mov BYTE [disp], imm);
        }
    }
    Ok(finish(a))
}

fn finish(a: VecAssembler<X64Relocation>) -> Vec<u8> {
    // Only label-free snippets are assembled here, so finalizing cannot fail.
    a.finalize().unwrap_or_default()
}

/// What the direct-call stub saves of the vector and floating-point state
/// around the compiled Rust it calls (which may clobber any caller-saved
/// register the System V ABI names, and glibc's string functions use AVX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorSave {
    /// xmm0-15 (full 128 bits) and MXCSR, by explicit aligned stores: the
    /// state compiled SSE code touches. Not saved: the upper halves of
    /// ymm/zmm, zmm16-31, k0-7 and the x87 register stack. Right for
    /// foreign code that keeps no AVX or x87 value live across a syscall.
    Sse,
    /// Everything XCR0 enables (x87, SSE, AVX, AVX-512, ...) with `xsavec`
    /// / `xrstor`: what the `syscall` instruction itself keeps. The caller
    /// checks that the CPU has `xsavec` and gives the compacted area size
    /// (CPUID leaf 0xD, sub-leaf 1, EBX).
    Xsavec {
        /// Bytes of the compacted save area.
        area_len: u32,
    },
    /// The vector registers only (SSE with MXCSR, AVX, AVX-512's opmask
    /// and upper ZMM state) with `xsavec` / `xrstor`, not the x87 state
    /// or PKRU: for hooks written in Rust, whose code (and the libc string
    /// functions it calls) uses vector registers but never x87 or PKRU.
    /// About a quarter cheaper than [`VectorSave::Xsavec`] here (x87's
    /// share of an `xsavec`/`xrstor` pair is large). `area_len` as there.
    XsavecVectors {
        /// Bytes of the compacted save area (the full one is enough).
        area_len: u32,
    },
}

/// The XSAVE components of [`VectorSave::XsavecVectors`]: SSE (1), AVX
/// (2), opmask (5), ZMM_Hi256 (6), Hi16_ZMM (7); `xsavec` and `xrstor`
/// leave out those XCR0 does not enable.
const VECTOR_COMPONENTS: i32 = 0b1110_0110;

/// Bytes the stub pushes before its 64-byte aligned save area, after the
/// return address: flags, rbp, six saved argument registers, the frame.
const SAVED_GPRS: i32 = 6;
/// Where the stub's DirectFrame (8 words, pushed after the saved registers)
/// starts below rbp.
const DIRECT_FRAME_BELOW_RBP: i32 = (SAVED_GPRS + 8) * 8;

/// The direct-call stub: called by a site ([`direct_call_site`]) that
/// stands in for a `syscall` instruction, it hands the syscall registers
/// to `entry` (an `extern "C" fn(&mut DirectFrame) -> i64`, the engine's
/// `direct_entry_deferring`) and returns with the result in rax. When
/// `entry` answers `i64::MIN` (the engine's `EXECUTE_IN_STUB`), the stub
/// executes the syscall the frame then describes itself, from the cache.
///
/// It keeps what `syscall` keeps: every general register but rax (the
/// result), rcx and r11 (which `syscall` also clobbers); the status flags
/// (OF SF ZF AF PF CF) and DF, which is cleared for the callee (`cld`) as
/// the System V ABI wants; the vector state `vectors` names. The flags are
/// saved with `pushfq` but restored with `add`/`sahf`/`std`, not `popfq`:
/// `popfq` is microcoded and cost ~25 ns per call here, a third of the
/// stub. AC, TF and ID are not restored: compiled Rust never changes them.
/// `sahf` needs the LAHF/SAHF extension, which every x86-64 CPU since 2005
/// has. It sets the selector to ALLOW (0) before
/// the call, because the callee is host code that makes real syscalls, and
/// to BLOCK (1) after, because the site is in foreign code. It ends with
/// `ret 128`, giving back the red zone the site stepped over.
///
/// The frame passed to `entry` is the engine's `DirectFrame` layout:
/// `nr, args[6] (rdi rsi rdx r10 r8 r9), call_addr`, where `call_addr` is
/// the site's return address (just after its call instruction).
pub fn direct_call_stub(
    access: SelectorAccess,
    entry: u64,
    vectors: VectorSave,
) -> Result<Vec<u8>, EmitError> {
    let allow = selector_flip(access, 0)?;
    let block = selector_flip(access, 1)?;
    let save_len = vector_save_len(vectors);
    let mut a = VecAssembler::<X64Relocation>::new(0);
    // Entered with [rsp] = return address into the site, rsp 128 bytes
    // below the foreign code's stack pointer (its red zone is skipped).
    dynasm!(a
        ; .arch x64
        ; pushfq
        ; push rbp
        ; mov rbp, rsp
        // Caller-saved argument registers the callee may clobber.
        ; push rdi
        ; push rsi
        ; push rdx
        ; push r8
        ; push r9
        ; push r10
        // The DirectFrame, built downwards: call_addr, args 5..0, nr.
        ; push QWORD [rbp + 16]
        ; push r9
        ; push r8
        ; push r10
        ; push rdx
        ; push rsi
        ; push rdi
        ; push rax
        ; mov rdi, rsp
        ; and rsp, -64
        ; sub rsp, save_len
    );
    save_vectors(&mut a, vectors);
    a.extend(allow.iter());
    dynasm!(a
        ; .arch x64
        // The System V ABI wants DF clear at a call; it is restored below.
        ; cld
        ; mov rax, QWORD entry as i64
        ; call rax
    );
    a.extend(block.iter());
    restore_vectors(&mut a, vectors);
    // An entry that answers EXECUTE_IN_STUB (i64::MIN, which no syscall
    // returns) leaves the call to us: run it here, from the code cache (the
    // excluded region, so it does not trap), with the number and arguments
    // the hooks settled on, read back from the DirectFrame. One `ret` away
    // from the site instead of deep in the entry's frames, whose returns
    // all mispredict after a kernel entry. rcx and r11 are the syscall's
    // own clobbers; the argument registers are restored below.
    dynasm!(a
        ; .arch x64
        ; mov rcx, QWORD i64::MIN
        ; cmp rax, rcx
        ; jne >executed
        ; lea rcx, [rbp - DIRECT_FRAME_BELOW_RBP]
        ; mov rax, [rcx]
        ; mov rdi, [rcx + 8]
        ; mov rsi, [rcx + 16]
        ; mov rdx, [rcx + 24]
        ; mov r10, [rcx + 32]
        ; mov r8, [rcx + 40]
        ; mov r9, [rcx + 48]
        ; syscall
        ; executed:
    );
    // The flags pushed at entry are at [rbp + 8]. rdx is scratch until it
    // is popped; the result waits in rcx. Nothing after `sahf` touches the
    // flags (mov, lea, pop and ret do not).
    dynasm!(a
        ; .arch x64
        ; mov rcx, rax
        ; mov rdx, [rbp + 8]
        ; test edx, 0x400 // DF
        ; jz >df_clear
        ; std
        ; df_clear:
        ; mov eax, edx
        ; shr eax, 11
        ; and al, 1
        ; add al, 0x7f // OF = the saved OF (0x80 overflows, 0x7f does not)
        ; mov ah, dl
        ; sahf // SF ZF AF PF CF from the saved low byte
        ; mov rax, rcx
        ; lea rsp, [rbp - SAVED_GPRS * 8]
        ; pop r10
        ; pop r9
        ; pop r8
        ; pop rdx
        ; pop rsi
        ; pop rdi
        ; pop rbp
        ; lea rsp, [rsp + 8] // the saved flags
        ; ret 128
    );
    Ok(finish(a))
}

fn round_up_64(n: i32) -> i32 {
    (n + 63) & !63
}

/// Length of [`direct_call_site`]: `lea rsp, [rsp-128]` (5) + `call rel32` (5).
pub const DIRECT_CALL_SITE_LEN: usize = 10;

/// The sequence that replaces a `syscall` instruction at `site` in
/// translated code: step over the red zone (the foreign code may keep live
/// data in the 128 bytes below rsp, where `call` would push; `lea` keeps
/// the flags), then call the stub at `stub`, which returns with `ret 128`.
pub fn direct_call_site(site: u64, stub: u64) -> Result<[u8; DIRECT_CALL_SITE_LEN], EmitError> {
    let after = site.wrapping_add(DIRECT_CALL_SITE_LEN as u64);
    let rel = i32::try_from(stub.wrapping_sub(after) as i64)
        .map_err(|_| EmitError::OutOfRel32Reach { site, target: stub })?
        .to_le_bytes();
    Ok([
        0x48, 0x8d, 0x64, 0x24, 0x80, // lea rsp, [rsp-128]
        0xe8, rel[0], rel[1], rel[2], rel[3], // call stub
    ])
}

/// Bytes a stub reserves below its 64-aligned stack for `vectors`.
pub(crate) fn vector_save_len(vectors: VectorSave) -> i32 {
    match vectors {
        VectorSave::Sse => 16 * 16 + 64,
        VectorSave::Xsavec { area_len } | VectorSave::XsavecVectors { area_len } => {
            round_up_64(area_len as i32)
        }
    }
}

/// Saves the vector state at `[rsp]` (reserved with [`vector_save_len`]);
/// rax and rdx must already be saved and the flags pushed.
pub(crate) fn save_vectors(a: &mut VecAssembler<X64Relocation>, vectors: VectorSave) {
    match vectors {
        VectorSave::Sse => {
            dynasm!(a
                ; .arch x64
                ; movaps [rsp], xmm0
                ; movaps [rsp + 16], xmm1
                ; movaps [rsp + 32], xmm2
                ; movaps [rsp + 48], xmm3
                ; movaps [rsp + 64], xmm4
                ; movaps [rsp + 80], xmm5
                ; movaps [rsp + 96], xmm6
                ; movaps [rsp + 112], xmm7
                ; movaps [rsp + 128], xmm8
                ; movaps [rsp + 144], xmm9
                ; movaps [rsp + 160], xmm10
                ; movaps [rsp + 176], xmm11
                ; movaps [rsp + 192], xmm12
                ; movaps [rsp + 208], xmm13
                ; movaps [rsp + 224], xmm14
                ; movaps [rsp + 240], xmm15
                ; stmxcsr [rsp + 256]
            );
        }
        VectorSave::Xsavec { .. } | VectorSave::XsavecVectors { .. } => {
            // xrstor of a compacted area faults unless header bytes 16-63
            // are zero, and xsavec writes only bytes 0-15 of the header.
            // edx:eax = the components (every one XCR0 enables, or the
            // vector ones). rax and rdx are already saved; the flags were
            // pushed.
            let (lo, hi) = components(vectors);
            dynasm!(a
                ; .arch x64
                ; xor eax, eax
                ; mov [rsp + 512 + 16], rax
                ; mov [rsp + 512 + 24], rax
                ; mov [rsp + 512 + 32], rax
                ; mov [rsp + 512 + 40], rax
                ; mov [rsp + 512 + 48], rax
                ; mov [rsp + 512 + 56], rax
                ; mov eax, lo
                ; mov edx, hi
                ; xsavec64 [rsp]
            );
        }
    }
}

/// The requested-feature bitmap (edx:eax) of an `xsavec`/`xrstor`.
fn components(vectors: VectorSave) -> (i32, i32) {
    match vectors {
        VectorSave::XsavecVectors { .. } => (VECTOR_COMPONENTS, 0),
        _ => (-1, -1),
    }
}

/// Restores what [`save_vectors`] saved; keeps rax (the call's result).
pub(crate) fn restore_vectors(a: &mut VecAssembler<X64Relocation>, vectors: VectorSave) {
    match vectors {
        VectorSave::Sse => {
            dynasm!(a
                ; .arch x64
                // ldmxcsr costs ~7 ns here; the callee keeps MXCSR's control
                // bits (System V), so reload only if a status bit changed.
                ; stmxcsr [rsp + 260]
                ; mov ecx, [rsp + 260]
                ; cmp ecx, [rsp + 256]
                ; je >mxcsr_kept
                ; ldmxcsr [rsp + 256]
                ; mxcsr_kept:
                ; movaps xmm0, [rsp]
                ; movaps xmm1, [rsp + 16]
                ; movaps xmm2, [rsp + 32]
                ; movaps xmm3, [rsp + 48]
                ; movaps xmm4, [rsp + 64]
                ; movaps xmm5, [rsp + 80]
                ; movaps xmm6, [rsp + 96]
                ; movaps xmm7, [rsp + 112]
                ; movaps xmm8, [rsp + 128]
                ; movaps xmm9, [rsp + 144]
                ; movaps xmm10, [rsp + 160]
                ; movaps xmm11, [rsp + 176]
                ; movaps xmm12, [rsp + 192]
                ; movaps xmm13, [rsp + 208]
                ; movaps xmm14, [rsp + 224]
                ; movaps xmm15, [rsp + 240]
            );
        }
        VectorSave::Xsavec { .. } | VectorSave::XsavecVectors { .. } => {
            // rax holds the result: keep it in rcx, which syscall clobbers.
            let (lo, hi) = components(vectors);
            dynasm!(a
                ; .arch x64
                ; mov rcx, rax
                ; mov eax, lo
                ; mov edx, hi
                ; xrstor64 [rsp]
                ; mov rax, rcx
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, NasmFormatter};

    fn disassemble(bytes: &[u8], ip: u64) -> Vec<String> {
        let mut decoder = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
        let mut formatter = NasmFormatter::new();
        let mut out = Vec::new();
        let mut insn = Instruction::default();
        while decoder.can_decode() {
            decoder.decode_out(&mut insn);
            assert!(!insn.is_invalid(), "invalid instruction in {bytes:02x?}");
            let mut text = String::new();
            formatter.format(&insn, &mut text);
            out.push(text);
        }
        out
    }

    #[test]
    fn flips_are_one_store_instruction_each() {
        let tp = selector_flip(SelectorAccess::ThreadPointer { offset: -0x58 }, 1).unwrap();
        assert_eq!(tp.len(), THREAD_POINTER_FLIP_LEN);
        assert_eq!(disassemble(&tp, 0), ["mov byte [fs:0FFFFFFFFFFFFFFA8h],1"]);
        let reg = SelectorAccess::Register {
            reg: Rq::R13,
            disp: 0x40,
        };
        assert_eq!(
            disassemble(&selector_flip(reg, 0).unwrap(), 0),
            ["mov byte [r13+40h],0"]
        );
        let abs = SelectorAccess::Absolute {
            address: 0x1000_0000,
        };
        assert_eq!(
            disassemble(&selector_flip(abs, 1).unwrap(), 0),
            ["mov byte [10000000h],1"]
        );
    }

    #[test]
    fn flips_refuse_what_the_kernel_or_encoding_cannot_take() {
        let tp = SelectorAccess::ThreadPointer { offset: 0 };
        assert_eq!(selector_flip(tp, 2), Err(EmitError::BadSelectorValue(2)));
        let far = SelectorAccess::Absolute {
            address: 0x7fff_0000_0000,
        };
        assert_eq!(
            selector_flip(far, 1),
            Err(EmitError::AbsoluteOutOfReach {
                address: 0x7fff_0000_0000
            })
        );
        let rsp = SelectorAccess::Register {
            reg: Rq::RSP,
            disp: 0,
        };
        assert_eq!(selector_flip(rsp, 1), Err(EmitError::StackPointerAsContext));
    }

    #[test]
    fn site_steps_over_the_red_zone_and_calls_the_stub() {
        let site = direct_call_site(0x10_0000, 0x10_2000).unwrap();
        assert_eq!(
            disassemble(&site, 0x10_0000),
            ["lea rsp,[rsp-80h]", "call 0000000000102000h"]
        );
        assert_eq!(
            direct_call_site(0x10_0000, 0x1_0000_0000_0000),
            Err(EmitError::OutOfRel32Reach {
                site: 0x10_0000,
                target: 0x1_0000_0000_0000
            })
        );
    }

    #[test]
    fn stub_calls_entry_between_allow_and_block_and_restores_everything() {
        let access = SelectorAccess::ThreadPointer { offset: -0x20 };
        for vectors in [VectorSave::Sse, VectorSave::Xsavec { area_len: 1000 }] {
            let stub = direct_call_stub(access, 0x1234_5678_9abc, vectors).unwrap();
            // 9C is pushfq in 64-bit mode (no operand-size prefix); NASM syntax prints it "pushf".
            assert_eq!(stub[0], 0x9c);
            let text = disassemble(&stub, 0);
            let at = |s: &str| {
                text.iter()
                    .position(|t| t == s)
                    .unwrap_or_else(|| panic!("{s} missing in {text:#?}"))
            };
            let allow = at("mov byte [fs:0FFFFFFFFFFFFFFE0h],0");
            let call = at("call rax");
            let block = at("mov byte [fs:0FFFFFFFFFFFFFFE0h],1");
            assert!(allow < call && call < block);
            assert!(text.contains(&"mov rax,123456789ABCh".to_string()));
            assert_eq!(text.first().map(String::as_str), Some("pushf"));
            assert_eq!(text.last().map(String::as_str), Some("ret 80h"));
            assert_eq!(text[text.len() - 2], "lea rsp,[rsp+8]");
            assert!(text.contains(&"sahf".to_string()) && !text.contains(&"popf".to_string()));
            let pushes = text
                .iter()
                .filter(|t| t.starts_with("push") && *t != "pushf")
                .count();
            let pops = text
                .iter()
                .filter(|t| t.starts_with("pop") && *t != "popf")
                .count();
            // rbp + six argument registers are popped; the frame (8 slots) is dropped.
            assert_eq!((pushes, pops), (1 + 6 + 8, 1 + 6));
        }
    }
}
