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

/// Pushes a 64-bit constant without a register or the flags:
/// `lea rsp,[rsp-8]; mov dword [rsp], lo; mov dword [rsp+4], hi`.
pub(crate) fn push_u64(out: &mut Vec<u8>, value: u64) {
    lea_rsp(out, -8);
    out.extend_from_slice(&[0xc7, 0x04, 0x24]);
    out.extend_from_slice(&(value as u32).to_le_bytes());
    out.extend_from_slice(&[0xc7, 0x44, 0x24, 0x04]);
    out.extend_from_slice(&((value >> 32) as u32).to_le_bytes());
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

/// An inline counter: `[counter] += amount`, keeping every register, the
/// flags and the red zone, without a lock (increments from threads racing
/// on one counter may be lost: the price of not serializing them). Where
/// the flags are dead (`flags_dead`) and the counter is within rel32 of
/// the code at `at`, one `add`; otherwise a flag-free load, `lea`, store
/// through rax's absolute-address forms, rax parked in the scratch slot
/// at `spare` (no stack pointer write, no flags save: `pushfq`/`popfq`
/// cost ~20 cycles).
pub(crate) fn add_to_counter(
    out: &mut Vec<u8>,
    at: u64,
    counter: u64,
    amount: u32,
    flags_dead: bool,
    spare: i32,
) {
    if flags_dead {
        // add qword [rip + rel32], imm32 (rip: after its 11 bytes)
        if let Ok(rel) = i32::try_from(counter.wrapping_sub(at + 11) as i64) {
            out.extend_from_slice(&[0x48, 0x81, 0x05]);
            out.extend_from_slice(&rel.to_le_bytes());
            out.extend_from_slice(&amount.to_le_bytes());
            return;
        }
    }
    fs_mov(out, 0, spare, true);
    out.extend_from_slice(&[0x48, 0xa1]); // mov rax, [moffs64]
    out.extend_from_slice(&counter.to_le_bytes());
    out.extend_from_slice(&[0x48, 0x8d, 0x80]); // lea rax, [rax + disp32]
    out.extend_from_slice(&amount.to_le_bytes());
    out.extend_from_slice(&[0x48, 0xa3]); // mov [moffs64], rax
    out.extend_from_slice(&counter.to_le_bytes());
    fs_mov(out, 0, spare, false);
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
        push_u64(&mut b, 0x7f12_3456_789a);
        assert_eq!(
            text(&b, 0),
            [
                "lea rsp,[rsp-8]",
                "mov dword [rsp],3456789Ah",
                "mov dword [rsp+4],7F12h"
            ]
        );
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
        add_to_counter(&mut b, 0x7000_0000_0000, 0x5000, 3, false, 0x40);
        let far = [
            "mov [fs:40h],rax",
            "mov rax,[qword 5000h]",
            "lea rax,[rax+3]",
            "mov [qword 5000h],rax",
            "mov rax,[fs:40h]",
        ];
        assert_eq!(text(&b, 0x7000_0000_0000), far);
        let mut b = Vec::new();
        add_to_counter(&mut b, 0x1000, 0x5000, 3, true, 0x40);
        assert_eq!(text(&b, 0x1000), ["add qword [rel 5000h],3"]);
        let mut b = Vec::new();
        add_to_counter(&mut b, 0x7000_0000_0000, 0x5000, 3, true, 0x40);
        assert_eq!(text(&b, 0x7000_0000_0000), far);
    }
}
