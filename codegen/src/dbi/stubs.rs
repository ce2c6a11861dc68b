//! The translator's shared stubs, emitted once into the code cache:
//!
//! - the *host stub*, through which translated code calls into Rust (block
//!   lookup misses, exits to be linked, user callouts, arming a child
//!   thread): it saves every register, the flags and the whole vector
//!   state, flips the selector to ALLOW, calls [`super::host_entry`] with a
//!   writable register frame, flips back to BLOCK and restores everything;
//! - the *indirect-branch lookup* (`ibl`): native target in rax, foreign
//!   rax parked in the scratch slot; a flag-free walk of the block map's
//!   probe chain (see `table.rs`), else a miss through the host stub;
//! - the *entry trampoline*: host Rust calls it to run a translated
//!   function, and translated code returns into it (its return address is
//!   in the block map, mapped to itself), where it flips back to ALLOW.
//!
//! Calling convention of the host stub, as every site uses it:
//! `lea rsp, [rsp-128]` (steps over the foreign red zone), `push imm32`
//! (the request), `call host`; it returns with `ret 136`, so the site's
//! stack pointer is back where it was. Nothing in these stubs allocates or
//! locks; what the Rust side may do is documented at `host_entry`.

use super::{scratch, table};
use crate::direct::{selector_flip, SelectorAccess};
use crate::{CodeCache, Error, Selector};
use dynasmrt::x64::X64Relocation;
use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi, VecAssembler};

/// Bytes between the register frame the host stub builds and the foreign
/// stack pointer: return address, request, red zone.
pub(crate) const FRAME_TO_FOREIGN_RSP: u64 = 8 + 8 + 128;

/// How the host stub saves the vector state around Rust.
#[derive(Debug, Clone, Copy)]
pub(crate) enum VectorSave {
    /// `xsavec`/`xrstor` of everything XCR0 enables; bytes of the area.
    Xsavec(i32),
    /// `fxsave64`/`fxrstor64`: x87 and SSE only (CPUs without xsavec).
    Fxsave,
}

impl VectorSave {
    pub(crate) fn detect() -> VectorSave {
        if std::arch::is_x86_feature_detected!("xsavec") {
            // CPUID.(EAX=0Dh, ECX=1).EBX: compacted size of every enabled
            // component, an upper bound for what xsavec writes here.
            let leaf = std::arch::x86_64::__cpuid_count(0xd, 1);
            VectorSave::Xsavec(((leaf.ebx as i32) + 63) & !63)
        } else {
            VectorSave::Fxsave
        }
    }
}

/// Where the shared stubs are.
#[derive(Debug, Clone)]
pub(crate) struct SharedStubs {
    pub(crate) host: usize,
    /// `extern "C" fn(translated: u64, args: *mut CallArgs) -> u64`.
    pub(crate) enter: usize,
    /// The trampoline's return address (in the block map, mapped to itself).
    pub(crate) enter_return: usize,
    /// Where a lookup's miss goes (registers as `lookup` leaves them).
    pub(crate) ibl_miss: usize,
    /// The lookup, for a copy at each translated indirect branch and
    /// return: each copy's final indirect jump is a branch of its own to
    /// the CPU's predictor, which learns that site's targets (one shared
    /// jump predicts all of them badly). Its last 4 bytes are the rel32
    /// of the jump to `ibl_miss`, at `lookup_miss_field`.
    pub(crate) lookup_template: Vec<u8>,
    pub(crate) lookup_miss_field: usize,
    /// Per byte of the template: at an instruction boundary, which foreign
    /// registers are parked in their scratch slots there (the `PARKED_*`
    /// bits of `signals`); `signals::UNMAPPED` elsewhere, and where the
    /// stack pointer is moved (the flags save without BMI2).
    pub(crate) lookup_states: Vec<u8>,
}

/// Everything the stubs bake in.
pub(crate) struct StubParams {
    pub(crate) access: SelectorAccess,
    pub(crate) scratch: i32,
    pub(crate) table: u64,
    pub(crate) host_entry: u64,
    pub(crate) resolve_request: i32,
    pub(crate) vectors: VectorSave,
    /// BMI2's flag-free shifts are there.
    pub(crate) bmi2: bool,
}

pub(crate) fn emit(cache: &CodeCache, p: &StubParams) -> Result<SharedStubs, Error> {
    let allow = selector_flip(p.access, Selector::Allow)?;
    let block = selector_flip(p.access, Selector::Block)?;
    let mut offsets = (0, 0, 0, 0, 0);
    let (template, lookup_miss_field) = {
        let mut t = VecAssembler::<X64Relocation>::new(0);
        let miss = lookup(&mut t, p);
        dynasm!(t ; .arch x64 ; =>miss ; .bytes [0xe9u8, 0, 0, 0, 0].iter());
        let code = t
            .finalize()
            .map_err(|e| Error::Encode(format!("DBI lookup template: {e:?}")))?;
        let field = code.len() - 4;
        (code, field)
    };
    let lookup_states = super::signals::parked_states(&template, p.scratch);
    let base = cache.emit_with(|rip| {
        let mut a = VecAssembler::<X64Relocation>::new(rip);
        let s = p.scratch;
        let (s_rax, s_rcx, s_rdx) = (s + scratch::RAX, s + scratch::RCX, s + scratch::RDX);
        let (s_native, s_target) = (s + scratch::NATIVE, s + scratch::TARGET);

        // ---- host stub ----
        let host = a.offset().0;
        dynasm!(a
            ; .arch x64
            ; ->host:
            ; pushfq
            ; push r15 ; push r14 ; push r13 ; push r12
            ; push r11 ; push r10 ; push r9 ; push r8
            ; push rdi ; push rsi ; push rbp ; push rbx
            ; push rdx ; push rcx ; push rax
            // rbx: the register frame (callee-saved, survives the call).
            ; mov rbx, rsp
            ; and rsp, -64
        );
        match p.vectors {
            VectorSave::Xsavec(len) => {
                // xrstor of a compacted area faults unless header bytes
                // 16-63 are zero; xsavec writes only bytes 0-15.
                dynasm!(a
                    ; .arch x64
                    ; sub rsp, len
                    ; xor eax, eax
                    ; mov [rsp + 528], rax ; mov [rsp + 536], rax
                    ; mov [rsp + 544], rax ; mov [rsp + 552], rax
                    ; mov [rsp + 560], rax ; mov [rsp + 568], rax
                    ; mov eax, -1 ; mov edx, -1
                    ; xsavec64 [rsp]
                );
            }
            VectorSave::Fxsave => {
                dynasm!(a ; .arch x64 ; sub rsp, 512 ; fxsave64 [rsp]);
            }
        }
        a.extend(allow.iter());
        dynasm!(a
            ; .arch x64
            ; cld
            ; mov rdi, rbx
            ; mov rsi, [rbx + 136]
            ; mov rax, QWORD p.host_entry as i64
            ; call rax
        );
        a.extend(block.iter());
        match p.vectors {
            VectorSave::Xsavec(_) => {
                dynasm!(a ; .arch x64 ; mov eax, -1 ; mov edx, -1 ; xrstor64 [rsp]);
            }
            VectorSave::Fxsave => {
                dynasm!(a ; .arch x64 ; fxrstor64 [rsp]);
            }
        }
        dynasm!(a
            ; .arch x64
            ; mov rsp, rbx
            ; pop rax ; pop rcx ; pop rdx
            ; pop rbx ; pop rbp ; pop rsi ; pop rdi
            ; pop r8 ; pop r9 ; pop r10 ; pop r11
            ; pop r12 ; pop r13 ; pop r14 ; pop r15
            ; popfq
            ; ret 136
        );

        // ---- indirect-branch lookup ----
        // The shared one, for code that jumps here; translated sites carry
        // a copy of the same lookup (see `SharedStubs::lookup_template`)
        // whose miss jumps to `ibl_miss`.
        let miss = lookup(&mut a, p);
        dynasm!(a ; .arch x64 ; =>miss);
        let ibl_miss = a.offset().0;
        let s_r11 = s + scratch::R11;
        dynasm!(a
            ; .arch x64
            ; fs mov [s_native], rax
            ; fs mov rax, [s_rax]
            ; fs mov rcx, [s_rcx]
            ; fs mov rdx, [s_rdx]
            ; fs mov r11, [s_r11]
            ; lea rsp, [rsp - 128]
            ; push p.resolve_request
            ; call ->host
            ; fs jmp QWORD [s_target]
        );

        // ---- entry trampoline ----
        let enter = a.offset().0;
        dynasm!(a
            ; .arch x64
            ; push rbx ; push rbp ; push r12 ; push r13 ; push r14 ; push r15
            // rbx: the CallArgs (callee-saved: still there after the call).
            ; mov rbx, rsi
            ; sub rsp, 8
            ; mov r11, rdi
            ; mov rdi, [rbx] ; mov rsi, [rbx + 8] ; mov rdx, [rbx + 16]
            ; mov rcx, [rbx + 24] ; mov r8, [rbx + 32] ; mov r9, [rbx + 40]
            ; movsd xmm0, [rbx + 48] ; movsd xmm1, [rbx + 56]
            ; movsd xmm2, [rbx + 64] ; movsd xmm3, [rbx + 72]
            ; movsd xmm4, [rbx + 80] ; movsd xmm5, [rbx + 88]
            ; movsd xmm6, [rbx + 96] ; movsd xmm7, [rbx + 104]
            // al: vector registers used, as a varargs callee expects.
            ; mov rax, [rbx + 112]
        );
        a.extend(block.iter());
        dynasm!(a ; .arch x64 ; call r11);
        let enter_return = a.offset().0;
        a.extend(allow.iter());
        dynasm!(a
            ; .arch x64
            ; movsd [rbx + 120], xmm0
            ; add rsp, 8
            ; pop r15 ; pop r14 ; pop r13 ; pop r12 ; pop rbp ; pop rbx
            ; ret
        );
        offsets = (host, 0, enter, enter_return, ibl_miss);
        a.finalize()
            .map_err(|e| Error::Encode(format!("shared DBI stubs: {e:?}")))
    })?;
    Ok(SharedStubs {
        host: base + offsets.0,
        enter: base + offsets.2,
        enter_return: base + offsets.3,
        ibl_miss: base + offsets.4,
        lookup_template: template,
        lookup_miss_field,
        lookup_states,
    })
}

/// The lookup of the native address in rax (foreign rax in its scratch
/// slot): saves rcx, rdx, r11 in theirs, walks the block map's probe
/// chain and on a hit restores everything and jumps to the translation;
/// returns the label its miss goes to (rcx, rdx, r11 still in their slots,
/// rax the native address). The home slot is `header + HEADER + (native &
/// mask) * 16`, got flag-free as `(native << s) >> (s - 4)` with BMI2's
/// shifts (s = 64 - table bits, both counts in the table's header);
/// without BMI2, with `shl`/`shr` between a pushfq/popfq pair below the
/// red zone. Position-independent (absolute addresses only).
fn lookup(a: &mut VecAssembler<X64Relocation>, p: &StubParams) -> dynasmrt::DynamicLabel {
    let s = p.scratch;
    let (s_rax, s_rcx, s_rdx) = (s + scratch::RAX, s + scratch::RCX, s + scratch::RDX);
    let (s_target, s_r11) = (s + scratch::TARGET, s + scratch::R11);
    let (hit, miss, again) = (
        a.new_dynamic_label(),
        a.new_dynamic_label(),
        a.new_dynamic_label(),
    );
    dynasm!(a
        ; .arch x64
        ; fs mov [s_rcx], rcx
        ; fs mov [s_rdx], rdx
        ; fs mov [s_r11], r11
        ; mov rdx, QWORD p.table as i64
        ; mov rdx, [rdx]
    );
    if p.bmi2 {
        dynasm!(a
            ; .arch x64
            ; mov rcx, [rdx]
            ; mov r11, [rdx + 8]
            ; shlx rcx, rax, rcx
            ; shrx rcx, rcx, r11
        );
    } else {
        dynasm!(a
            ; .arch x64
            ; mov rcx, [rdx]
            ; lea rsp, [rsp - 128]
            ; pushfq
            ; mov r11, rax
            ; shl r11, cl
            ; mov rcx, [rdx + 8]
            ; shr r11, cl
            ; popfq
            ; lea rsp, [rsp + 128]
            ; mov rcx, r11
        );
    }
    dynasm!(a
        ; .arch x64
        ; lea rdx, [rdx + rcx + table::HEADER as i32]
        ; =>again
        ; mov rcx, [rdx]
        ; jrcxz =>miss
        ; lea rcx, [rcx + rax]
        ; jrcxz =>hit
        ; lea rdx, [rdx + 16]
        ; jmp =>again
        ; =>hit
        ; mov rax, [rdx + 8]
        ; fs mov [s_target], rax
        ; fs mov rax, [s_rax]
        ; fs mov rcx, [s_rcx]
        ; fs mov rdx, [s_rdx]
        ; fs mov r11, [s_r11]
        ; fs jmp QWORD [s_target]
    );
    miss
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dbi::signals::{
        parked_states, PARKED_R11, PARKED_RAX_SLOT, PARKED_RCX, PARKED_RDX, UNMAPPED,
    };

    #[test]
    fn the_lookup_template_parks_what_its_states_say() {
        for bmi2 in [true, false] {
            let p = StubParams {
                access: SelectorAccess::ThreadPointer { offset: -0x100 },
                scratch: -0x80,
                table: 0x1000,
                host_entry: 0,
                resolve_request: 0,
                vectors: VectorSave::Fxsave,
                bmi2,
            };
            let mut t = VecAssembler::<X64Relocation>::new(0);
            let miss = lookup(&mut t, &p);
            dynasm!(t ; .arch x64 ; =>miss ; .bytes [0xe9u8, 0, 0, 0, 0].iter());
            let code = t.finalize().unwrap();
            let states = parked_states(&code, p.scratch);
            let all = (PARKED_RAX_SLOT | PARKED_RCX | PARKED_RDX | PARKED_R11) as u8;
            assert_eq!(states[0], PARKED_RAX_SLOT as u8);
            // The miss jump: everything still parked (its bytes follow the
            // hit path, which restores them all).
            assert_eq!(states[code.len() - 5], all, "bmi2 {bmi2}");
            // The hit path's final jmp fs:[target] (8 bytes before the
            // miss jump): nothing parked.
            assert_eq!(states[code.len() - 5 - 8], 0, "bmi2 {bmi2}");
            let mapped = states.iter().filter(|&&s| s != UNMAPPED).count();
            let instructions =
                iced_x86::Decoder::with_ip(64, &code, 0, iced_x86::DecoderOptions::NONE)
                    .into_iter()
                    .count();
            // Without BMI2, the flags save moves the stack pointer.
            if bmi2 {
                assert_eq!(mapped, instructions);
            } else {
                assert!(mapped < instructions);
            }
        }
    }
}
