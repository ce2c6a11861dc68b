//! Hand-encoded glue the translator puts around copied instructions. Each
//! helper appends to a buffer whose capacity the caller reserved, so
//! nothing here allocates (translation may run while foreign code holds
//! malloc's lock). None of these sequences touches the flags; each one's
//! encoding is checked by decoding it in the tests below.

/// `lea rsp, [rsp + disp]` (flags untouched, unlike add/sub).
pub(crate) fn lea_rsp(out: &mut Vec<u8>, disp: i32) {
    if let Ok(d8) = i8::try_from(disp) {
        out.extend_from_slice(&[0x48, 0x8d, 0x64, 0x24, d8 as u8]);
    } else {
        out.extend_from_slice(&[0x48, 0x8d, 0xa4, 0x24]);
        out.extend_from_slice(&disp.to_le_bytes());
    }
}

/// `mov fs:[disp], reg64` (`store`) or `mov reg64, fs:[disp]`.
pub(crate) fn fs_mov(out: &mut Vec<u8>, reg: u8, disp: i32, store: bool) {
    let rex = 0x48 | ((reg >> 3) << 2);
    let opcode = if store { 0x89 } else { 0x8b };
    out.extend_from_slice(&[0x64, rex, opcode, 0x04 | ((reg & 7) << 3), 0x25]);
    out.extend_from_slice(&disp.to_le_bytes());
}

/// `mov rax, [rsp]`.
pub(crate) fn load_rax_from_stack_top(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x48, 0x8b, 0x04, 0x24]);
}

/// `mov reg64, imm64`.
pub(crate) fn mov_imm64(out: &mut Vec<u8>, reg: u8, value: u64) {
    out.extend_from_slice(&[0x48 | (reg >> 3), 0xb8 + (reg & 7)]);
    out.extend_from_slice(&value.to_le_bytes());
}

/// `jmp qword fs:[disp]`.
pub(crate) fn jmp_fs(out: &mut Vec<u8>, disp: i32) {
    out.extend_from_slice(&[0x64, 0xff, 0x24, 0x25]);
    out.extend_from_slice(&disp.to_le_bytes());
}

/// A rel32 from the end of a 4-byte field at `field` to `target`.
pub(crate) fn rel32(field: u64, target: u64) -> Option<i32> {
    i32::try_from(target.wrapping_sub(field + 4) as i64).ok()
}

/// A call of the host stub with `request`: `lea rsp,[rsp-128]; push
/// imm32; call rel32` (the stub returns with `ret 136`). `at` is the
/// address the sequence will have.
pub(crate) fn call_host(out: &mut Vec<u8>, at: u64, host: u64, request: u32) -> Option<()> {
    lea_rsp(out, -128);
    out.push(0x68);
    out.extend_from_slice(&request.to_le_bytes());
    out.push(0xe8);
    let field = at + 5 + 5 + 1;
    out.extend_from_slice(&rel32(field, host)?.to_le_bytes());
    Some(())
}

/// Length of [`call_host`]'s sequence.
pub(crate) const CALL_HOST_LEN: u64 = 15;

/// Inline counters: `[counter] += amount` for each, keeping every
/// register, the flags and the red zone, without a lock (increments from
/// threads racing on one counter may be lost: the price of not serializing
/// them). Where the flags are dead (`flags_dead`), an `add`: one
/// instruction for a counter within rel32 of the code at `at`, the others
/// through rax; where they are live, a flag-free load, `lea`, store,
/// instead of saving the flags (`pushfq`/`popfq` cost ~20 cycles).
/// Consecutive counters share one save of the registers they use.
pub(crate) fn add_to_counters(
    out: &mut Vec<u8>,
    at: u64,
    counters: &[(u64, u32)],
    flags_dead: bool,
) {
    // Within reach of any byte of this sequence (a few hundred bytes).
    let near = |counter: u64| (counter.wrapping_sub(at) as i64).unsigned_abs() < (1 << 31) - 4096;
    let start = out.len();
    if flags_dead {
        for &(counter, amount) in counters.iter().filter(|c| near(c.0)) {
            // add qword [rip + rel32], imm32 (rip: after its 11 bytes)
            let end = at + (out.len() - start) as u64 + 11;
            let rel = counter.wrapping_sub(end) as i64 as i32;
            out.extend_from_slice(&[0x48, 0x81, 0x05]);
            out.extend_from_slice(&rel.to_le_bytes());
            out.extend_from_slice(&amount.to_le_bytes());
        }
        if counters.iter().all(|c| near(c.0)) {
            return;
        }
        lea_rsp(out, -128);
        out.push(0x50); // push rax
        for &(counter, amount) in counters.iter().filter(|c| !near(c.0)) {
            mov_imm64(out, 0, counter);
            out.extend_from_slice(&[0x48, 0x81, 0x00]); // add qword [rax], imm32
            out.extend_from_slice(&amount.to_le_bytes());
        }
        out.push(0x58); // pop rax
        lea_rsp(out, 128);
        return;
    }
    lea_rsp(out, -128);
    out.extend_from_slice(&[0x50, 0x51]); // push rax; push rcx
    for &(counter, amount) in counters {
        mov_imm64(out, 0, counter);
        out.extend_from_slice(&[0x48, 0x8b, 0x08]); // mov rcx, [rax]
        out.extend_from_slice(&[0x48, 0x8d, 0x89]); // lea rcx, [rcx + disp32]
        out.extend_from_slice(&amount.to_le_bytes());
        out.extend_from_slice(&[0x48, 0x89, 0x08]); // mov [rax], rcx
    }
    out.extend_from_slice(&[0x59, 0x58]); // pop rcx; pop rax
    lea_rsp(out, 128);
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, NasmFormatter};

    fn text(bytes: &[u8], ip: u64) -> Vec<String> {
        let mut out = Vec::new();
        let mut f = NasmFormatter::new();
        for insn in Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE) {
            assert!(!insn.is_invalid(), "{bytes:02x?}");
            let mut s = String::new();
            f.format(&insn, &mut s);
            out.push(s);
        }
        out
    }

    #[test]
    fn glue_decodes_to_what_it_claims() {
        let mut b = Vec::new();
        fs_mov(&mut b, 11, -0x40, true);
        fs_mov(&mut b, 0, 0x20, false);
        jmp_fs(&mut b, 0x18);
        load_rax_from_stack_top(&mut b);
        lea_rsp(&mut b, 136);
        mov_imm64(&mut b, 9, 0x1122_3344_5566_7788);
        assert_eq!(
            text(&b, 0),
            [
                "mov [fs:0FFFFFFFFFFFFFFC0h],r11",
                "mov rax,[fs:20h]",
                "jmp qword [fs:18h]",
                "mov rax,[rsp]",
                "lea rsp,[rsp+88h]",
                "mov r9,1122334455667788h"
            ]
        );
        let mut b = Vec::new();
        call_host(&mut b, 0x1000, 0x2000, 0x3000_0005).unwrap();
        assert_eq!(b.len() as u64, CALL_HOST_LEN);
        assert_eq!(
            text(&b, 0x1000),
            [
                "lea rsp,[rsp-80h]",
                "push 30000005h",
                "call 0000000000002000h"
            ]
        );
        let mut b = Vec::new();
        add_to_counters(&mut b, 0x7000_0000_0000, &[(0x5000, 3)], false);
        assert_eq!(
            text(&b, 0x7000_0000_0000),
            [
                "lea rsp,[rsp-80h]",
                "push rax",
                "push rcx",
                "mov rax,5000h",
                "mov rcx,[rax]",
                "lea rcx,[rcx+3]",
                "mov [rax],rcx",
                "pop rcx",
                "pop rax",
                "lea rsp,[rsp+80h]"
            ]
        );
        let mut b = Vec::new();
        add_to_counters(&mut b, 0x1000, &[(0x5000, 3)], true);
        assert_eq!(text(&b, 0x1000), ["add qword [rel 5000h],3"]);
        let mut b = Vec::new();
        add_to_counters(&mut b, 0x7000_0000_0000, &[(0x5000, 3)], true);
        assert_eq!(
            text(&b, 0x7000_0000_0000),
            [
                "lea rsp,[rsp-80h]",
                "push rax",
                "mov rax,5000h",
                "add qword [rax],3",
                "pop rax",
                "lea rsp,[rsp+80h]"
            ]
        );
        // Two far counters share one save; a near one is a single add.
        let mut b = Vec::new();
        let at = 0x7000_0000_0000;
        add_to_counters(
            &mut b,
            at,
            &[(0x5000, 1), (at + 0x100, 2), (0x6000, 3)],
            true,
        );
        assert_eq!(
            text(&b, at),
            [
                "add qword [rel 700000000100h],2",
                "lea rsp,[rsp-80h]",
                "push rax",
                "mov rax,5000h",
                "add qword [rax],1",
                "mov rax,6000h",
                "add qword [rax],3",
                "pop rax",
                "lea rsp,[rsp+80h]"
            ]
        );
    }
}
