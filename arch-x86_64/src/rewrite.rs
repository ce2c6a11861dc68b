//! Code for lazily rewritten syscall sites: a `mov eax, imm32; syscall`
//! site whose `mov` became `jmp rel32` to a per-site trampoline, and the
//! common stub every trampoline of a chunk calls into.
//!
//! The trampolines live outside the excluded region. They keep the syscall
//! ABI exactly: rax gets the result, rcx the address after the site's
//! `syscall`, r11 the flags as the program had them (what the kernel puts
//! there), and every other register, the flags, the red zone and the
//! vector state are kept.

use crate::emit::{self, selector_flip, EmitError, SelectorAccess, VectorSave};
use dynasmrt::x64::X64Relocation;
use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi, VecAssembler};

/// The site pattern: `mov eax, imm32` (5 bytes) right before `syscall`.
pub const MOV_EAX_OPCODE: u8 = 0xb8;

/// glibc's `syscall(2)`: `mov r9, [rsp+8]` (its sixth argument, from the
/// stack) right before `syscall`, the number in rax from a register. The
/// `mov` moves into the trampoline unchanged (rsp is the site's there).
pub const GENERIC_SITE_HEAD: [u8; PATCH_LEN] = [0x4c, 0x8b, 0x4c, 0x24, 0x08];

/// The first instruction of a trampoline for a `mov eax, nr` site.
pub fn mov_eax(nr: u32) -> [u8; PATCH_LEN] {
    let nr = nr.to_le_bytes();
    [MOV_EAX_OPCODE, nr[0], nr[1], nr[2], nr[3]]
}
/// Length of the `mov eax, imm32` that becomes a `jmp rel32`.
pub const PATCH_LEN: usize = 5;

/// Length of the `jmp rel8` that replaces the start of a site's `mov` when
/// the `mov` crosses an aligned 8-byte word (see [`find_padding`]).
pub const SHORT_JUMP_LEN: usize = 2;

/// Bytes one trampoline takes (a multiple of 16, for alignment).
pub const TRAMPOLINE_LEN: usize = 96;

/// What the entry answers when the site must execute the call itself, as
/// a trap (the engine's `EXECUTE_IN_STUB` plus one): the stub resumes at
/// the site's own `syscall` with every register as it was there.
pub const FALLBACK_TO_TRAP: i64 = i64::MIN + 1;

/// Bytes the common stub pushes after its return address: flags, rbp,
/// six argument registers.
const SAVED_GPRS: i32 = 6;
/// Where the DirectFrame (nr, six args, call_addr) starts below rbp.
const FRAME_BELOW_RBP: i32 = (SAVED_GPRS + 8) * 8;
/// Where the trampoline keeps its site's `call_addr`: 5 bytes after the
/// return address of its `call` (after the `jmp rel32` back).
const CALL_ADDR_AFTER_RETURN: i32 = 5;

/// The `jmp rel32` that replaces the site's `mov eax, imm32` at `site`,
/// towards `trampoline`. None if out of reach.
pub fn site_jump(site: u64, trampoline: u64) -> Option<[u8; PATCH_LEN]> {
    let rel = rel32(site + PATCH_LEN as u64, trampoline)?;
    Some([0xe9, rel[0], rel[1], rel[2], rel[3]])
}

/// The `jmp rel8` at `site` towards `to`. None if out of reach.
pub fn short_jump(site: u64, to: u64) -> Option<[u8; SHORT_JUMP_LEN]> {
    let rel = i8::try_from(to.wrapping_sub(site + SHORT_JUMP_LEN as u64) as i64).ok()?;
    Some([0xeb, rel as u8])
}

/// Where a 5-byte `jmp rel32` can go in `code` (the bytes at `ip`, which
/// starts an instruction: the end of a site's `syscall`) such that a
/// `jmp rel8` at `site` reaches it: the first [`PATCH_LEN`] bytes of a run
/// of `nop`/`int3` padding that follows an unconditional `ret` or `jmp`
/// and goes on to a 16-byte boundary past those bytes (alignment padding
/// before a label or function: no path executes it, and no jump lands
/// inside it).
/// Bytes already given to another site decode as a `jmp` and are skipped.
pub fn find_padding(code: &[u8], ip: u64, site: u64) -> Option<u64> {
    use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic};
    let reach_end = site + SHORT_JUMP_LEN as u64 + 127;
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    let mut after_transfer = false;
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if insn.is_invalid() || insn.ip() > reach_end {
            return None;
        }
        if after_transfer && matches!(insn.mnemonic(), Mnemonic::Nop | Mnemonic::Int3) {
            let start = insn.ip();
            let boundary = (start + PATCH_LEN as u64 + 15) & !15;
            let mut end = insn.next_ip();
            while end < boundary && decoder.can_decode() {
                decoder.decode_out(&mut insn);
                if !matches!(insn.mnemonic(), Mnemonic::Nop | Mnemonic::Int3) {
                    break;
                }
                end = insn.next_ip();
            }
            if end == boundary && boundary - start >= PATCH_LEN as u64 && start <= reach_end {
                return Some(start);
            }
            after_transfer = false;
            continue;
        }
        after_transfer = matches!(insn.mnemonic(), Mnemonic::Ret | Mnemonic::Jmp);
    }
    None
}

/// Runs the decoder once, so that its tables (built on first use, with
/// allocations) exist before [`find_padding`] is called where allocating
/// is not allowed (a signal handler).
pub fn prepare_decoder() {
    let _ = find_padding(&[0xc3, 0x90, 0x90, 0x90, 0x90, 0x90], 0, 0);
}

fn rel32(from_end: u64, to: u64) -> Option<[u8; 4]> {
    i32::try_from(to.wrapping_sub(from_end) as i64)
        .ok()
        .map(i32::to_le_bytes)
}

/// The trampoline of the site whose `syscall` ends at `call_addr`, placed
/// at `at`, calling the common stub at `common`. It starts with `head`,
/// the instruction the site's jump replaced ([`mov_eax`] of the site's
/// number, or [`GENERIC_SITE_HEAD`]), which leaves every register as it
/// is right before the site's `syscall`.
///
/// It first checks that `fs` is still the thread's own thread block: the
/// engine keeps the negated thread pointer at `fs:[tp_check_offset]`, and
/// the x86-64 TLS ABI keeps the thread pointer at `fs:0`, so their sum is
/// 0 only there. A program that pointed `fs` at a block of its own gets
/// its site's `syscall` executed as it is (a trap, or a plain call on an
/// unarmed thread). The selector is then read at `fs:[selector_tp_offset]`:
/// on ALLOW (host code, or an unarmed thread, runs the same code) the call
/// runs right here, as it would natively; on BLOCK it goes through the
/// stub. Only rax, rcx and r11 change before the call, which sets or
/// clobbers all three; the flags are never touched (`lea`, `jrcxz`).
pub fn trampoline(
    at: u64,
    call_addr: u64,
    head: [u8; PATCH_LEN],
    common: u64,
    selector_tp_offset: i32,
    tp_check_offset: i32,
) -> Option<[u8; TRAMPOLINE_LEN]> {
    // Layout: the `call`'s return address is CALL_END, where the `jmp`
    // back is, followed by call_addr as data; the fast path at FAST.
    const CHECKED: u64 = 34;
    const CALL_END: u64 = 55;
    const FAST: u64 = 68;
    let off = selector_tp_offset.to_le_bytes();
    let check = tp_check_offset.to_le_bytes();
    let to_site_syscall = rel32(at + CHECKED, call_addr.wrapping_sub(2))?;
    let back = rel32(at + CALL_END + 5, call_addr)?;
    let fast_back = rel32(at + FAST + 17, call_addr)?;
    let to_common = rel32(at + CALL_END, common)?;
    let a = call_addr.to_le_bytes();
    let s = to_site_syscall;
    let code: [&[u8]; 16] = [
        &head,                                       // the instruction the site's jump replaced
        &[0x64, 0x48, 0x8b, 0x0c, 0x25, 0, 0, 0, 0], // mov rcx, fs:[0]
        // mov r11, fs:[check]
        &[
            0x64, 0x4c, 0x8b, 0x1c, 0x25, check[0], check[1], check[2], check[3],
        ],
        &[0x4a, 0x8d, 0x0c, 0x19],       // lea rcx, [rcx + r11]
        &[0xe3, 5],                      // jrcxz checked
        &[0xe9, s[0], s[1], s[2], s[3]], // jmp call_addr - 2 (the site's syscall)
        // checked: movzx ecx, byte fs:[off]: rcx is the syscall's
        // clobber, and jrcxz tests it without touching the flags.
        &[0x64, 0x0f, 0xb6, 0x0c, 0x25, off[0], off[1], off[2], off[3]],
        &[0xe3, (FAST - (CHECKED + 11)) as u8], // jrcxz fast
        &[0x48, 0x8d, 0x64, 0x24, 0x80],        // lea rsp, [rsp-128]: the red zone
        &[0xe8, to_common[0], to_common[1], to_common[2], to_common[3]], // call common
        &[0xe9, back[0], back[1], back[2], back[3]], // jmp call_addr
        &a,                                     // data: call_addr
        // fast: the selector is ALLOW, so this syscall does not trap.
        &[0x0f, 0x05],
        &[0x48, 0xb9], // mov rcx, call_addr (what the site's syscall leaves)
        &a,
        &[0xe9, fast_back[0], fast_back[1], fast_back[2], fast_back[3]], // jmp call_addr
    ];
    let mut t = [0xcc; TRAMPOLINE_LEN];
    let mut n = 0;
    for piece in code {
        t[n..n + piece.len()].copy_from_slice(piece);
        n += piece.len();
    }
    debug_assert_eq!(n, FAST as usize + 17);
    Some(t)
}

/// Where the thread's engine stack is, as the common stub finds it from the
/// engine state pointer: that stack ends at the state (the stack's top)
/// and spans `len` bytes below it, and the top the stub may use now is the
/// word at `top_in_state` in the state (0: stay on the program's stack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStack {
    /// Offset of the usable top's word in the state.
    pub top_in_state: i32,
    /// Bytes of the stack below the state.
    pub len: u32,
}

/// The stub every trampoline of a chunk calls, with rax = the number and
/// rsp 128 bytes below the site's (plus the return address). It builds the
/// engine's `DirectFrame` (nr, rdi rsi rdx r10 r8 r9, call_addr), sets the
/// selector to ALLOW and calls `entry(frame, fs:[state_tp_offset])`, an
/// `extern "C" fn(&mut DirectFrame, *const State) -> i64`, then BLOCK.
/// When `entry` answers `i64::MIN` (execute), it executes the frame's call
/// through `syscall_gadget` (`syscall; ret` in the excluded region, so it
/// never traps); on [`FALLBACK_TO_TRAP`] it resumes at the site's
/// `syscall` with the site's registers, which traps. Flags are restored as
/// in `emit::direct_call_stub` (without `popfq`).
///
/// Past the frame, the stub runs on the thread's engine stack (`stack`),
/// not the program's, which may be small (a coroutine's, a signal
/// handler's alternate stack): the hooks then have the room they have on
/// the trap path.
pub fn common_stub(
    selector_tp_offset: i32,
    state_tp_offset: i32,
    entry: u64,
    syscall_gadget: u64,
    vectors: VectorSave,
    stack: EngineStack,
) -> Result<Vec<u8>, EmitError> {
    let access = SelectorAccess::ThreadPointer {
        offset: selector_tp_offset,
    };
    let allow = selector_flip(access, 0)?;
    let block = selector_flip(access, 1)?;
    let save_len = emit::vector_save_len(vectors);
    let mut a = VecAssembler::<X64Relocation>::new(0);
    dynasm!(a
        ; .arch x64
        ; pushfq
        ; push rbp
        ; mov rbp, rsp
        ; push rdi
        ; push rsi
        ; push rdx
        ; push r8
        ; push r9
        ; push r10
        ; mov rcx, [rbp + 16]
        ; push QWORD [rcx + CALL_ADDR_AFTER_RETURN]
        ; push r9
        ; push r8
        ; push r10
        ; push rdx
        ; push rsi
        ; push rdi
        ; push rax
        ; mov rdi, rsp
        ; fs mov rsi, [state_tp_offset]
        // Onto the engine stack, unless already on it (a signal handler
        // or hook that runs there) or the thread has none.
        ; test rsi, rsi
        ; jz >stay
        ; mov rcx, [rsi + stack.top_in_state]
        ; test rcx, rcx
        ; jz >stay
        ; mov rdx, rsi
        ; sub rdx, rsp
        ; cmp rdx, stack.len as i32
        ; jb >stay
        ; mov rsp, rcx
        ; stay:
        ; and rsp, -64
        ; sub rsp, save_len
    );
    emit::save_vectors(&mut a, vectors);
    a.extend(allow.iter());
    dynasm!(a
        ; .arch x64
        ; cld
        ; mov rax, QWORD entry as i64
        ; call rax
    );
    a.extend(block.iter());
    emit::restore_vectors(&mut a, vectors);
    dynasm!(a
        ; .arch x64
        ; mov rcx, QWORD i64::MIN
        ; cmp rax, rcx
        ; jne >not_executed
        ; lea rcx, [rbp - FRAME_BELOW_RBP]
        ; mov rax, [rcx]
        ; mov rdi, [rcx + 8]
        ; mov rsi, [rcx + 16]
        ; mov rdx, [rcx + 24]
        ; mov r10, [rcx + 32]
        ; mov r8, [rcx + 40]
        ; mov r9, [rcx + 48]
        ; mov rcx, QWORD syscall_gadget as i64
        ; call rcx
        ; jmp >done
        ; not_executed:
        ; inc rcx
        ; cmp rax, rcx
        ; jne >done
        // Back to the site's own syscall, which traps: the return slot
        // becomes its address and rax its number again.
        ; mov rcx, [rbp - FRAME_BELOW_RBP + 56]
        ; sub rcx, 2
        ; mov [rbp + 16], rcx
        ; mov rax, [rbp - FRAME_BELOW_RBP]
        ; done:
        ; mov rcx, rax
        ; mov rdx, [rbp + 8]
        ; test edx, 0x400 // DF
        ; jz >df_clear
        ; std
        ; df_clear:
        ; mov eax, edx
        ; shr eax, 11
        ; and al, 1
        ; add al, 0x7f // OF = the saved OF
        ; mov ah, dl
        ; sahf // SF ZF AF PF CF
        ; mov r11, rdx // the flags, as the kernel leaves them in r11
        ; mov rax, rcx
        ; mov rcx, [rbp - FRAME_BELOW_RBP + 56] // call_addr, as the kernel leaves it
        ; lea rsp, [rbp - SAVED_GPRS * 8]
        ; pop r10
        ; pop r9
        ; pop r8
        ; pop rdx
        ; pop rsi
        ; pop rdi
        ; pop rbp
        ; lea rsp, [rsp + 8]
        ; ret 128
    );
    Ok(a.finalize().unwrap_or_default())
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
            let mut text = String::new();
            formatter.format(&insn, &mut text);
            out.push(text);
        }
        out
    }

    #[test]
    fn trampoline_has_a_fast_path_on_allow_and_calls_the_stub_on_block() {
        let t = trampoline(0x10_0000, 0x20_0007, mov_eax(39), 0x10_0800, -0x40, -0x50).unwrap();
        let head = disassemble(&t[..60], 0x10_0000);
        assert_eq!(
            head,
            [
                "mov eax,27h",
                "mov rcx,[fs:0]",
                "mov r11,[fs:0FFFFFFFFFFFFFFB0h]",
                "lea rcx,[rcx+r11]",
                "jrcxz 0000000000100022h",
                "jmp 0000000000200005h",
                "movzx ecx,byte [fs:0FFFFFFFFFFFFFFC0h]",
                "jrcxz 0000000000100044h",
                "lea rsp,[rsp-80h]",
                "call 0000000000100800h",
                "jmp 0000000000200007h",
            ]
        );
        assert_eq!(t[60..68], 0x20_0007u64.to_le_bytes());
        assert_eq!(
            disassemble(&t[68..85], 0x10_0044),
            ["syscall", "mov rcx,200007h", "jmp 0000000000200007h"]
        );
        assert_eq!(
            disassemble(&site_jump(0x20_0000, 0x10_0000).unwrap(), 0x20_0000),
            ["jmp 0000000000100000h"]
        );
        assert!(site_jump(0x20_0000, 0x1_0000_0000_0000).is_none());
        let generic = trampoline(
            0x10_0000,
            0x20_0007,
            GENERIC_SITE_HEAD,
            0x10_0800,
            -0x40,
            -0x50,
        )
        .unwrap();
        assert_eq!(disassemble(&generic[..5], 0x10_0000), ["mov r9,[rsp+8]"]);
        assert_eq!(generic[5..], t[5..]);
    }

    #[test]
    fn padding_is_found_only_after_an_unconditional_transfer_up_to_a_boundary() {
        // From the end of a syscall at 0x1006: cmp rax,-4096; ja +6; ret;
        // 6 bytes of nopw up to 0x1010.
        let mut code = vec![0x48, 0x3d, 0x00, 0xf0, 0xff, 0xff, 0x77, 0x06, 0xc3];
        code.extend([0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00]);
        code.extend([0x48, 0x8b, 0x05, 0, 0, 0, 0]);
        let ip = 0x1010 - 15;
        assert_eq!(find_padding(&code, ip, ip - 7), Some(0x100a));
        // Too short: 3 bytes of padding.
        let mut short = code[..9].to_vec();
        short.extend([0x0f, 0x1f, 0x00]);
        assert_eq!(find_padding(&short, 0x1010 - 12, 0x1010 - 19), None);
        // Nops reachable by falling through (no ret before them).
        let mut reachable = code.clone();
        reachable[8] = 0x90;
        assert_eq!(find_padding(&reachable, ip, ip - 7), None);
        // Out of the jmp rel8's reach.
        assert_eq!(find_padding(&code, ip, ip - 200), None);
        assert_eq!(short_jump(0x1000, 0x100a), Some([0xeb, 0x08]));
        assert_eq!(short_jump(0x1000, 0x1100), None);
    }

    #[test]
    fn common_stub_flips_around_the_entry_and_returns_over_the_red_zone() {
        for vectors in [VectorSave::Sse, VectorSave::Xsavec { area_len: 1000 }] {
            let stack = EngineStack {
                top_in_state: 0x100,
                len: 0x3e000,
            };
            let stub = common_stub(-0x40, -0x48, 0x1234_5678, 0x9999_0000, vectors, stack).unwrap();
            let text = disassemble(&stub, 0);
            let at = |s: &str| text.iter().position(|t| t == s).unwrap();
            assert!(at("mov byte [fs:0FFFFFFFFFFFFFFC0h],0") < at("call rax"));
            assert!(at("call rax") < at("mov byte [fs:0FFFFFFFFFFFFFFC0h],1"));
            assert!(text.contains(&"mov rsi,[fs:0FFFFFFFFFFFFFFB8h]".to_string()));
            assert!(text.contains(&"mov r11,rdx".to_string()));
            assert!(at("mov rcx,[rsi+100h]") < at("mov rsp,rcx"));
            assert!(at("cmp rdx,3E000h") < at("mov rsp,rcx"));
            assert!(at("mov rsp,rcx") < at("call rax"));
            assert_eq!(text.last().map(String::as_str), Some("ret 80h"));
            assert!(!text.iter().any(|t| t == "syscall" || t == "popf"));
        }
    }
}
