//! aarch64 specifics for the sud crates: where a trapped syscall's number,
//! arguments and result live in a signal context, how `svc #0` is encoded,
//! the position-independent gadget words the engine copies into its
//! excluded region, and what a JIT on arm64 needs: selector flips and the
//! direct-hook stub (`emit`, assembled with dynasmrt), finding `svc #0` in
//! code (`decode`, with capstone) and instruction-cache maintenance; and the
//! entry that arms a thread made by a re-issued `clone` (`clone_child`).
//!
//! `sud-arch-x86_64` exports the same names with the same meaning; the engine
//! picks one of the two by `target_arch` and never touches a register itself.
//! The encoders and the decoder also work on other hosts (a cross JIT, tests).

#[cfg(target_arch = "aarch64")]
mod clone_child;
mod decode;
mod emit;
mod icache;

#[cfg(target_arch = "aarch64")]
pub use clone_child::{clone_child_entry, CLONE_CHILD_WORDS};

pub use decode::find_syscalls;
pub use emit::{
    direct_call_site, direct_stub, selector_flip, CallAddr, EmitError, SelectorAccess,
    DIRECT_CALL_SITE_LEN, DIRECT_STUB_STACK,
};
pub use icache::flush_icache;

/// `AUDIT_ARCH_AARCH64`: the value the kernel puts in `si_arch` of a dispatch SIGSYS.
pub const AUDIT_ARCH: u32 = 0xC000_00B7;

/// `svc #0` (D4000001), little endian.
pub const SYSCALL_INSN: [u8; 4] = 0xd400_0001u32.to_le_bytes();

/// Length of the syscall instruction; the kernel reports the address just after it.
pub const SYSCALL_INSN_LEN: usize = SYSCALL_INSN.len();

/// `rt_sigreturn` on this ISA, needed to build the restorer.
pub const NR_RT_SIGRETURN: u32 = 139;

const fn words_to_bytes<const W: usize, const B: usize>(words: [u32; W]) -> [u8; B] {
    let mut out = [0u8; B];
    let mut i = 0;
    while i < W {
        let b = words[i].to_le_bytes();
        out[4 * i] = b[0];
        out[4 * i + 1] = b[1];
        out[4 * i + 2] = b[2];
        out[4 * i + 3] = b[3];
        i += 1;
    }
    out
}

const GADGET_WORDS: [u32; 12] = [
    // syscall6 (offset 0): extern "C" fn(nr, a0..a5) -> i64
    0xaa00_03e8, // mov x8, x0
    0xaa01_03e0, // mov x0, x1
    0xaa02_03e1, // mov x1, x2
    0xaa03_03e2, // mov x2, x3
    0xaa04_03e3, // mov x3, x4
    0xaa05_03e4, // mov x4, x5
    0xaa06_03e5, // mov x5, x6
    0xd400_0001, // svc #0
    0xd65f_03c0, // ret
    // restorer (offset 36)
    0xd280_1168, // mov x8, #139 (rt_sigreturn)
    0xd400_0001, // svc #0
    0xd420_0000, // brk #0: rt_sigreturn does not return
];

/// The engine's fixed gadgets (see the x86-64 crate for their contracts).
pub const GADGETS: [u8; 48] = words_to_bytes(GADGET_WORDS);
/// Offset of the syscall function gadget in [`GADGETS`].
pub const GADGET_SYSCALL6: usize = 0;
/// Offset of the `rt_sigreturn` restorer in [`GADGETS`].
pub const GADGET_RESTORER: usize = 36;

/// Length of [`clone_gadget`]'s code.
pub const CLONE_GADGET_LEN: usize = 20;

/// The gadget that re-issues a trapped thread-creating `clone`/`clone3` from
/// the excluded region (contract as on x86-64). The engine enters it with
/// the parent's resume address in x16 (IP0, which the AAPCS64 leaves to
/// veneers and which no syscall site can expect to survive a call; `svc`
/// keeps it), so no thread-local slot is involved; the child resumes at
/// the address stored at `[sp-8]` of its new stack.
pub fn clone_gadget() -> [u8; CLONE_GADGET_LEN] {
    words_to_bytes([
        0xd400_0001, // svc #0
        0xb400_0040, // cbz x0, child (+8)
        0xd61f_0200, // br x16
        0xf85f_83f0, // child: ldur x16, [sp, #-8]
        0xd61f_0200, // br x16
    ])
}

/// The register that carries the parent's resume address into [`clone_gadget`].
pub const CLONE_RESUME_REG: usize = 16;

/// Adds one to a counter that only the calling thread writes (contract as on
/// x86-64). aarch64 has no add-to-memory instruction, and a load/add/store
/// sequence could be split by a signal that counts on the same thread, so
/// this is an atomic add (one `ldadd` with LSE).
#[cfg(target_arch = "aarch64")]
#[inline]
pub fn bump_owned_counter(counter: &core::sync::atomic::AtomicU64) {
    counter.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
}

/// The registers of a trapped syscall, read from and written to a signal
/// context (`ucontext_t`), named by their role in the syscall ABI.
#[cfg(target_arch = "aarch64")]
pub struct SyscallRegs<'a> {
    mc: &'a mut libc::mcontext_t,
}

#[cfg(target_arch = "aarch64")]
impl<'a> SyscallRegs<'a> {
    /// Wraps the register file of a signal context.
    pub fn new(uc: &'a mut libc::ucontext_t) -> Self {
        SyscallRegs {
            mc: &mut uc.uc_mcontext,
        }
    }

    /// Wraps the register file of the context a signal handler was given.
    ///
    /// # Safety
    /// `uc` points to a signal frame's context that outlives `'a`, and
    /// nothing else accesses its registers meanwhile.
    pub unsafe fn from_raw(uc: *mut libc::ucontext_t) -> Self {
        SyscallRegs {
            // SAFETY: the caller's contract; on aarch64 glibc's ucontext_t
            // is the kernel's layout.
            mc: unsafe { &mut *core::ptr::addr_of_mut!((*uc).uc_mcontext) },
        }
    }

    /// The syscall number (x8).
    pub fn nr(&self) -> u64 {
        self.mc.regs[8]
    }

    /// Sets the syscall number register.
    pub fn set_nr(&mut self, nr: u64) {
        self.mc.regs[8] = nr
    }

    /// The six arguments: x0..x5.
    pub fn args(&self) -> [u64; 6] {
        let mut out = [0; 6];
        out.copy_from_slice(&self.mc.regs[..6]);
        out
    }

    /// Writes the six argument registers.
    pub fn set_args(&mut self, args: [u64; 6]) {
        self.mc.regs[..6].copy_from_slice(&args)
    }

    /// Writes the result register (x0).
    pub fn set_result(&mut self, value: i64) {
        self.mc.regs[0] = value as u64
    }

    /// The program counter: just after the `svc`.
    pub fn pc(&self) -> u64 {
        self.mc.pc
    }

    /// Sets the program counter.
    pub fn set_pc(&mut self, pc: u64) {
        self.mc.pc = pc
    }

    /// The stack pointer.
    pub fn sp(&self) -> u64 {
        self.mc.sp
    }

    /// Sets the stack pointer.
    pub fn set_sp(&mut self, sp: u64) {
        self.mc.sp = sp
    }

    /// Sets the register [`clone_gadget`] resumes the parent through.
    pub fn set_clone_resume(&mut self, pc: u64) {
        self.mc.regs[CLONE_RESUME_REG] = pc;
    }
}

/// Reads the thread pointer (`tpidr_el0`).
#[cfg(target_arch = "aarch64")]
#[inline]
pub fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: reading tpidr_el0 has no side effect and is allowed at EL0.
    unsafe {
        core::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nomem, nostack, preserves_flags))
    };
    tp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gadget_offsets_land_on_the_svc_sequences() {
        let word = |off: usize| u32::from_le_bytes(GADGETS[off..off + 4].try_into().unwrap());
        assert_eq!(word(GADGET_SYSCALL6 + 28), 0xd400_0001);
        assert_eq!(word(GADGET_RESTORER), 0xd280_1168);
        assert_eq!(word(GADGET_RESTORER + 4), 0xd400_0001);
        let clone = clone_gadget();
        assert_eq!(&clone[..4], &SYSCALL_INSN);
        let w = |i: usize| u32::from_le_bytes(clone[4 * i..4 * i + 4].try_into().unwrap());
        // The parent branches through the resume register (br x16: Rn in bits 5..10).
        assert_eq!((w(2) >> 5) & 0x1f, CLONE_RESUME_REG as u32);
    }

    #[cfg(target_arch = "aarch64")]
    #[test]
    fn regs_roles_map_to_the_syscall_abi() {
        // SAFETY: ucontext_t is plain old data; all-zero is a valid value.
        let mut uc: libc::ucontext_t = unsafe { core::mem::zeroed() };
        let mut regs = SyscallRegs::new(&mut uc);
        regs.set_nr(172);
        regs.set_args([1, 2, 3, 4, 5, 6]);
        regs.set_result(-2);
        assert_eq!(uc.uc_mcontext.regs[8], 172);
        assert_eq!(uc.uc_mcontext.regs[0], (-2i64) as u64);
        assert_eq!(uc.uc_mcontext.regs[5], 6);
    }
}
