//! x86-64 specifics for the sud crates: where a trapped syscall's number,
//! arguments and result live in a signal context, how the `syscall`
//! instruction is encoded, and the position-independent gadget bytes the
//! engine copies into its excluded region.
//!
//! `sud-arch-aarch64` exports the same names with the same meaning; the engine
//! picks one of the two by `target_arch` and never touches a register itself.

mod clone_child;
pub mod emit;
pub mod rewrite;
pub use clone_child::{clone_child_entry, CLONE_CHILD_WORDS};

/// `AUDIT_ARCH_X86_64`: the value the kernel puts in `si_arch` of a dispatch SIGSYS.
pub const AUDIT_ARCH: u32 = 0xC000_003E;

/// `syscall` (0F 05).
pub const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];

/// Length of the syscall instruction; the kernel reports the address just after it.
pub const SYSCALL_INSN_LEN: usize = SYSCALL_INSN.len();

/// `rt_sigreturn` on this ISA, needed to build the restorer.
pub const NR_RT_SIGRETURN: u32 = 15;

/// The engine's fixed gadgets, position independent, to be copied into the
/// excluded region. Offsets index into this array.
///
/// `syscall6` is an `extern "C" fn(nr, a0, a1, a2, a3, a4, a5) -> i64`: it
/// moves the System V argument registers into the syscall registers and
/// executes the call. `restorer` is the `SA_RESTORER` target: `rt_sigreturn`
/// (also where the engine re-issues a trapped `rt_sigreturn`), spelled
/// exactly as glibc's `__restore_rt` (`mov rax, 15; syscall`): unwinders
/// (libgcc's `x86_64_fallback_frame_state`, libunwind) recognise a signal
/// frame by these bytes at the return address.
pub const GADGETS: [u8; 37] = [
    // syscall6 (offset 0)
    0x48, 0x89, 0xf8, // mov rax, rdi
    0x48, 0x89, 0xf7, // mov rdi, rsi
    0x48, 0x89, 0xd6, // mov rsi, rdx
    0x48, 0x89, 0xca, // mov rdx, rcx
    0x4d, 0x89, 0xc2, // mov r10, r8
    0x4d, 0x89, 0xc8, // mov r8, r9
    0x4c, 0x8b, 0x4c, 0x24, 0x08, // mov r9, [rsp+8]
    0x0f, 0x05, // syscall
    0xc3, // ret
    // restorer (offset 26)
    0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, // mov rax, 15 (rt_sigreturn)
    0x0f, 0x05, // syscall
    0x0f, 0x0b, // ud2: rt_sigreturn does not return
];

/// `syscall; ret`: executes a call with the syscall registers as they
/// are, from the excluded region (rewritten sites' stub calls it).
pub const SYSCALL_RET_GADGET: [u8; 3] = [0x0f, 0x05, 0xc3];

/// Offset of the syscall function gadget in [`GADGETS`].
pub const GADGET_SYSCALL6: usize = 0;
/// Offset of the `rt_sigreturn` restorer in [`GADGETS`].
pub const GADGET_RESTORER: usize = 26;

/// The bytes of a signal restorer that unwinders recognise (see [`GADGETS`]).
pub const RESTORER_BYTES: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];

/// Length of [`clone_gadget`]'s code.
pub const CLONE_GADGET_LEN: usize = 14;

/// How far below the interrupted stack pointer the engine stores the
/// parent's resume address for [`clone_gadget`]: past the 128-byte red
/// zone, which the interrupted code may be using.
pub const CLONE_RESUME_BELOW_SP: u64 = 136;

/// The gadget that re-issues a trapped thread-creating `clone`/`clone3` (or
/// a `vfork`-like call) from the excluded region, with the interrupted
/// registers intact, so parent and child both continue where the foreign
/// code issued it.
///
/// The engine enters it with the stack pointer lowered by
/// [`CLONE_RESUME_BELOW_SP`] and the resume address stored there: the
/// parent (and a failed call) returns through it with `ret 128`, which
/// also puts the stack pointer back, so no thread-local slot (and no `fs`)
/// is involved. The child, which runs on the new stack the call named,
/// jumps to the address the engine stored just below that stack's top
/// (`[rsp-8]`). Only rcx, which a syscall clobbers anyway, is used; flags
/// are untouched.
pub fn clone_gadget() -> [u8; CLONE_GADGET_LEN] {
    [
        0x0f, 0x05, // syscall
        0x48, 0x89, 0xc1, // mov rcx, rax
        0xe3, 0x03, // jrcxz child (+3)
        0xc2, 0x80, 0x00, // ret 128
        0xff, 0x64, 0x24, 0xf8, // child: jmp qword ptr [rsp-8]
    ]
}

/// Where the `ret 128` of [`clone_gadget`] is: a `vfork` child, which
/// shares its parent's stack, returns to the call site through it.
pub const CLONE_GADGET_RET_OFFSET: usize = 7;

/// Length of [`vfork_gadget`]'s code.
pub const VFORK_GADGET_LEN: usize = 16;

/// The gadget that re-issues a trapped `vfork` (or a `clone` with
/// `CLONE_VM | CLONE_VFORK` and no stack of its own) from the excluded
/// region, so the child runs on its parent's stack with vfork semantics.
/// The engine enters it as [`clone_gadget`], with the child's words below
/// the lowered stack pointer. The parent cannot return through memory on
/// that stack (the child has written over it meanwhile), so its path jumps
/// to a `syscall` at `trapback_rel` bytes from the end of the `jmp` (a page
/// outside the excluded region): that syscall traps with the call's result
/// in rax, and the engine resumes the parent from its own records.
pub fn vfork_gadget(trapback_rel: i32) -> [u8; VFORK_GADGET_LEN] {
    let d = trapback_rel.to_le_bytes();
    [
        0x0f, 0x05, // syscall
        0x48, 0x89, 0xc1, // mov rcx, rax
        0xe3, 0x05, // jrcxz child (+5)
        0xe9, d[0], d[1], d[2], d[3], // jmp trapback
        0xff, 0x64, 0x24, 0xf8, // child: jmp qword ptr [rsp-8]
    ]
}

/// Adds one to a counter that only the calling thread writes, with a single
/// non-locked `add` instruction: other threads may read it at any time (an
/// aligned 8-byte store is never torn), and a signal arriving on this thread
/// cannot split the increment, since an instruction is never interrupted
/// halfway. A locked add costs ~6 ns; this costs ~1.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn bump_owned_counter(counter: &core::sync::atomic::AtomicU64) {
    // SAFETY: the pointer comes from a live reference to an aligned u64;
    // the instruction reads and writes only those 8 bytes and the flags,
    // which are declared clobbered by leaving out preserves_flags.
    unsafe {
        core::arch::asm!("add qword ptr [{}], 1", in(reg) counter.as_ptr(), options(nostack))
    };
}

/// The registers of a trapped syscall, read from and written to a signal
/// context (`ucontext_t`). Registers are named by their role in the syscall
/// ABI so the engine stays ISA-neutral.
#[cfg(target_arch = "x86_64")]
pub struct SyscallRegs<'a> {
    gregs: &'a mut [libc::greg_t; 23],
}

#[cfg(target_arch = "x86_64")]
impl<'a> SyscallRegs<'a> {
    /// Wraps the register file of a signal context.
    pub fn new(uc: &'a mut libc::ucontext_t) -> Self {
        SyscallRegs {
            gregs: &mut uc.uc_mcontext.gregs,
        }
    }

    /// Wraps the register file of the context a signal handler was given.
    /// Only the registers are borrowed: the kernel's `ucontext` is shorter
    /// than glibc's `ucontext_t` (its siginfo follows at `uc_sigmask + 8`),
    /// so a reference to the whole `ucontext_t` would overlap the siginfo.
    ///
    /// # Safety
    /// `uc` points to a signal frame's context that outlives `'a`, and
    /// nothing else accesses its registers meanwhile.
    pub unsafe fn from_raw(uc: *mut libc::ucontext_t) -> Self {
        SyscallRegs {
            // SAFETY: the caller's contract; the register array lies inside
            // the kernel's ucontext.
            gregs: unsafe { &mut *core::ptr::addr_of_mut!((*uc).uc_mcontext.gregs) },
        }
    }

    fn get(&self, reg: libc::c_int) -> u64 {
        self.gregs[reg as usize] as u64
    }

    fn set(&mut self, reg: libc::c_int, value: u64) {
        self.gregs[reg as usize] = value as libc::greg_t;
    }

    /// The syscall number (rax).
    pub fn nr(&self) -> u64 {
        self.get(libc::REG_RAX)
    }

    /// Sets the syscall number register.
    pub fn set_nr(&mut self, nr: u64) {
        self.set(libc::REG_RAX, nr)
    }

    /// The six arguments: rdi, rsi, rdx, r10, r8, r9.
    pub fn args(&self) -> [u64; 6] {
        ARG_REGS.map(|r| self.get(r))
    }

    /// Writes the six argument registers.
    pub fn set_args(&mut self, args: [u64; 6]) {
        for (reg, value) in ARG_REGS.into_iter().zip(args) {
            self.set(reg, value);
        }
    }

    /// Writes the result register (rax).
    pub fn set_result(&mut self, value: i64) {
        self.set(libc::REG_RAX, value as u64)
    }

    /// The program counter (rip): just after the syscall instruction.
    pub fn pc(&self) -> u64 {
        self.get(libc::REG_RIP)
    }

    /// Sets the program counter.
    pub fn set_pc(&mut self, pc: u64) {
        self.set(libc::REG_RIP, pc)
    }

    /// The stack pointer (rsp).
    pub fn sp(&self) -> u64 {
        self.get(libc::REG_RSP)
    }

    /// Sets the stack pointer.
    pub fn set_sp(&mut self, sp: u64) {
        self.set(libc::REG_RSP, sp)
    }
}

#[cfg(target_arch = "x86_64")]
const ARG_REGS: [libc::c_int; 6] = [
    libc::REG_RDI,
    libc::REG_RSI,
    libc::REG_RDX,
    libc::REG_R10,
    libc::REG_R8,
    libc::REG_R9,
];

/// Reads the thread pointer (the `fs` base, which glibc points at the TCB,
/// whose first word is the TCB's own address).
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: on x86-64 Linux every thread's fs base points at a TCB whose
    // first word is the TCB address (the TLS ABI's self pointer); reading it
    // has no side effect.
    unsafe {
        core::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    tp
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, NasmFormatter};

    fn disassemble(bytes: &[u8]) -> Vec<String> {
        let mut decoder = Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE);
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
    fn gadget_bytes_decode_to_the_documented_instructions() {
        assert_eq!(
            disassemble(&GADGETS[GADGET_SYSCALL6..GADGET_RESTORER]),
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
        assert_eq!(
            disassemble(&GADGETS[GADGET_RESTORER..]),
            ["mov rax,0Fh", "syscall", "ud2"]
        );
        assert_eq!(
            GADGETS[GADGET_RESTORER..GADGET_RESTORER + 9],
            RESTORER_BYTES
        );
        assert_eq!(
            disassemble(&clone_gadget()),
            [
                "syscall",
                "mov rcx,rax",
                "jrcxz 000000000000000Ah",
                "ret 80h",
                "jmp qword [rsp-8]"
            ]
        );
    }

    #[test]
    fn vfork_gadget_decodes_to_its_two_paths() {
        assert_eq!(
            disassemble(&vfork_gadget(0x1000)),
            [
                "syscall",
                "mov rcx,rax",
                "jrcxz 000000000000000Ch",
                "jmp 000000000000100Ch",
                "jmp qword [rsp-8]"
            ]
        );
        assert_eq!(
            disassemble(&clone_gadget()[CLONE_GADGET_RET_OFFSET..CLONE_GADGET_RET_OFFSET + 3]),
            ["ret 80h"]
        );
    }

    #[test]
    fn syscall_insn_is_syscall() {
        assert_eq!(disassemble(&SYSCALL_INSN), ["syscall"]);
    }

    #[test]
    fn regs_roles_map_to_the_syscall_abi() {
        // SAFETY: ucontext_t is plain old data; all-zero is a valid value.
        let mut uc: libc::ucontext_t = unsafe { core::mem::zeroed() };
        let mut regs = SyscallRegs::new(&mut uc);
        regs.set_nr(39);
        regs.set_args([1, 2, 3, 4, 5, 6]);
        regs.set_pc(0x1000);
        regs.set_sp(0x2000);
        assert_eq!(regs.nr(), 39);
        assert_eq!(regs.args(), [1, 2, 3, 4, 5, 6]);
        let g = &uc.uc_mcontext.gregs;
        assert_eq!(g[libc::REG_RAX as usize], 39);
        assert_eq!(g[libc::REG_RDI as usize], 1);
        assert_eq!(g[libc::REG_R10 as usize], 4);
        assert_eq!(g[libc::REG_R9 as usize], 6);
        assert_eq!(g[libc::REG_RIP as usize], 0x1000);
        assert_eq!(g[libc::REG_RSP as usize], 0x2000);
        SyscallRegs::new(&mut uc).set_result(-2);
        assert_eq!(uc.uc_mcontext.gregs[libc::REG_RAX as usize], -2);
    }
}
