//! The first code a thread (or vfork child) made by a re-issued `clone` /
//! `clone3` runs: it calls the engine's arming function with every register
//! the foreign code could rely on preserved, then continues where the
//! foreign code issued the call. The kernel disarms every clone child, so
//! this is what keeps a new thread from running foreign code unarmed.
//!
//! Protocol (as on x86-64), set up by the engine on the child's new stack
//! before the clone is re-issued (`sp` is the stack top the call named,
//! 16-byte aligned as the AAPCS64 and Linux's sp alignment check demand):
//! - `[sp-8]`: the address of [`clone_child_entry`] (the clone gadget's
//!   child path jumps through it),
//! - `[sp-16]`: where the foreign code resumes (just after its `svc`),
//! - `[sp-24]`: an `extern "C" fn()` to call first (the engine's arming).
//!
//! x0-x15, x17, x18, x30, NZCV, FPSR and q0-q31 are saved below the words
//! and restored; x19-x29 are the callee's to preserve. x16 carries the jump
//! to the resume address, like the clone gadget that got here, which already
//! gives x16 and x17 up.

/// Number of words the engine writes below the child's stack top.
pub const CLONE_CHILD_WORDS: usize = 3;

core::arch::global_asm!(
    ".pushsection .text.sud_aarch64_clone_child_entry,\"ax\",%progbits",
    ".p2align 2",
    ".hidden sud_aarch64_clone_child_entry",
    ".globl sud_aarch64_clone_child_entry",
    "sud_aarch64_clone_child_entry:",
    // 32 bytes for the three words (and padding to keep sp aligned), 176 for
    // the general registers and flags, 512 for q0-q31.
    "sub sp, sp, #720",
    "stp x0, x1, [sp]",
    "stp x2, x3, [sp, #16]",
    "stp x4, x5, [sp, #32]",
    "stp x6, x7, [sp, #48]",
    "stp x8, x9, [sp, #64]",
    "stp x10, x11, [sp, #80]",
    "stp x12, x13, [sp, #96]",
    "stp x14, x15, [sp, #112]",
    "stp x17, x18, [sp, #128]",
    "mrs x0, nzcv",
    "mrs x1, fpsr",
    "stp x0, x1, [sp, #144]",
    "str x30, [sp, #160]",
    "stp q0, q1, [sp, #176]",
    "stp q2, q3, [sp, #208]",
    "stp q4, q5, [sp, #240]",
    "stp q6, q7, [sp, #272]",
    "stp q8, q9, [sp, #304]",
    "stp q10, q11, [sp, #336]",
    "stp q12, q13, [sp, #368]",
    "stp q14, q15, [sp, #400]",
    "stp q16, q17, [sp, #432]",
    "stp q18, q19, [sp, #464]",
    "stp q20, q21, [sp, #496]",
    "stp q22, q23, [sp, #528]",
    "stp q24, q25, [sp, #560]",
    "stp q26, q27, [sp, #592]",
    "stp q28, q29, [sp, #624]",
    "stp q30, q31, [sp, #656]",
    // The function word, at top - 24.
    "ldr x16, [sp, #696]",
    "blr x16",
    "ldp q0, q1, [sp, #176]",
    "ldp q2, q3, [sp, #208]",
    "ldp q4, q5, [sp, #240]",
    "ldp q6, q7, [sp, #272]",
    "ldp q8, q9, [sp, #304]",
    "ldp q10, q11, [sp, #336]",
    "ldp q12, q13, [sp, #368]",
    "ldp q14, q15, [sp, #400]",
    "ldp q16, q17, [sp, #432]",
    "ldp q18, q19, [sp, #464]",
    "ldp q20, q21, [sp, #496]",
    "ldp q22, q23, [sp, #528]",
    "ldp q24, q25, [sp, #560]",
    "ldp q26, q27, [sp, #592]",
    "ldp q28, q29, [sp, #624]",
    "ldp q30, q31, [sp, #656]",
    "ldp x0, x1, [sp, #144]",
    "msr nzcv, x0",
    "msr fpsr, x1",
    "ldr x30, [sp, #160]",
    "ldp x17, x18, [sp, #128]",
    "ldp x14, x15, [sp, #112]",
    "ldp x12, x13, [sp, #96]",
    "ldp x10, x11, [sp, #80]",
    "ldp x8, x9, [sp, #64]",
    "ldp x6, x7, [sp, #48]",
    "ldp x4, x5, [sp, #32]",
    "ldp x2, x3, [sp, #16]",
    "ldp x0, x1, [sp]",
    "add sp, sp, #720",
    // The resume word, at top - 16.
    "ldur x16, [sp, #-16]",
    "br x16",
    ".popsection",
);

extern "C" {
    fn sud_aarch64_clone_child_entry();
}

/// Address of the child-side entry described in the module documentation.
pub fn clone_child_entry() -> usize {
    sud_aarch64_clone_child_entry as *const () as usize
}
