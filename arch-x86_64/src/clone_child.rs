//! The first code a thread (or vfork child) made by a re-issued `clone` /
//! `clone3` runs: it calls the engine's arming function with every register
//! the foreign code could rely on preserved, then continues where the
//! foreign code issued the call. The kernel disarms every clone child, so
//! this is what keeps a new thread from running foreign code unarmed.
//!
//! Protocol, set up by the engine on the child's new stack before the clone
//! is re-issued (`sp` is the stack top the call named; the words lie below
//! it, where a fresh stack holds nothing the child could need):
//! - `[sp-8]`: the address of [`clone_child_entry`] (the clone gadget's
//!   child path jumps through it),
//! - `[sp-16]`: where the foreign code resumes (just after its syscall),
//! - `[sp-24]`: an `extern "C" fn()` to call first (the engine's arming).
//!
//! The general registers and flags are saved on the new stack, the x87/SSE
//! state with `fxsave64`; the callee must not touch AVX state (the engine's
//! arming function is plain integer code).

/// Number of words the engine writes below the child's stack top.
pub const CLONE_CHILD_WORDS: usize = 3;

core::arch::global_asm!(
    ".pushsection .text.sud_x86_64_clone_child_entry,\"ax\",@progbits",
    ".p2align 4",
    ".hidden sud_x86_64_clone_child_entry",
    ".globl sud_x86_64_clone_child_entry",
    "sud_x86_64_clone_child_entry:",
    // Step below the three words; lea leaves the flags alone.
    "lea rsp, [rsp - 24]",
    "pushfq",
    "push rax",
    "push rcx",
    "push rdx",
    "push rbx",
    "push rsi",
    "push rdi",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    // rbx (callee-saved) anchors the save area: 11 pushes = 88 bytes, so
    // the stack top is rbx + 112 and the function word is at rbx + 88.
    "mov rbx, rsp",
    "cld",
    "and rsp, -64",
    "sub rsp, 512",
    "fxsave64 [rsp]",
    "call qword ptr [rbx + 88]",
    "fxrstor64 [rsp]",
    "mov rsp, rbx",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rdi",
    "pop rsi",
    "pop rbx",
    "pop rdx",
    "pop rcx",
    "pop rax",
    "popfq",
    "lea rsp, [rsp + 24]",
    "jmp qword ptr [rsp - 16]",
    ".popsection",
);

extern "C" {
    fn sud_x86_64_clone_child_entry();
}

/// Address of the child-side entry described in the module documentation.
pub fn clone_child_entry() -> usize {
    sud_x86_64_clone_child_entry as *const () as usize
}
