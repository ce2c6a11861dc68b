//! The little the rig's own handlers need to know about the instruction
//! set: where a trapped syscall's number, arguments and result live in a
//! signal context, the restorer's bytes, and the seccomp audit arch. The
//! engine gets the same facts from the arch crates; the floor must not lean
//! on the engine's stack, so it keeps its own few lines here.

/// The registers of a trapped syscall in a signal context.
pub struct TrappedCall<'a> {
    uc: &'a mut libc::ucontext_t,
}

impl<'a> TrappedCall<'a> {
    /// Wraps the context an `SA_SIGINFO` handler received.
    ///
    /// # Safety
    /// `ctx` must be the ucontext the kernel passed to the running handler.
    pub unsafe fn from_context(ctx: *mut libc::c_void) -> Self {
        // SAFETY: the caller passes the kernel's ucontext, valid and
        // unaliased for the handler's run.
        TrappedCall {
            uc: unsafe { &mut *ctx.cast::<libc::ucontext_t>() },
        }
    }

    /// The syscall number and six arguments.
    #[cfg(target_arch = "x86_64")]
    pub fn call(&self) -> (usize, [usize; 6]) {
        use libc::{REG_R10, REG_R8, REG_R9, REG_RAX, REG_RDI, REG_RDX, REG_RSI};
        let g = &self.uc.uc_mcontext.gregs;
        let r = |i: libc::c_int| g[i as usize] as usize;
        (
            r(REG_RAX),
            [
                r(REG_RDI),
                r(REG_RSI),
                r(REG_RDX),
                r(REG_R10),
                r(REG_R8),
                r(REG_R9),
            ],
        )
    }

    /// Writes the syscall's result register.
    #[cfg(target_arch = "x86_64")]
    pub fn set_result(&mut self, value: i64) {
        self.uc.uc_mcontext.gregs[libc::REG_RAX as usize] = value as libc::greg_t;
    }

    /// The syscall number and six arguments.
    #[cfg(target_arch = "aarch64")]
    pub fn call(&self) -> (usize, [usize; 6]) {
        let x = &self.uc.uc_mcontext.regs;
        (
            x[8] as usize,
            [x[0], x[1], x[2], x[3], x[4], x[5]].map(|v| v as usize),
        )
    }

    /// Writes the syscall's result register.
    #[cfg(target_arch = "aarch64")]
    pub fn set_result(&mut self, value: i64) {
        self.uc.uc_mcontext.regs[0] = value as u64;
    }
}

/// `rt_sigreturn`, then a trap if it ever returned.
#[cfg(target_arch = "x86_64")]
pub const RESTORER: [u8; 9] = [
    0xb8, 0x0f, 0x00, 0x00, 0x00, // mov eax, 15
    0x0f, 0x05, // syscall
    0x0f, 0x0b, // ud2
];
/// `rt_sigreturn`, then a trap if it ever returned.
#[cfg(target_arch = "aarch64")]
pub const RESTORER: [u8; 12] = [
    0x68, 0x11, 0x80, 0xd2, // mov x8, #139
    0x01, 0x00, 0x00, 0xd4, // svc #0
    0x00, 0x00, 0x20, 0xd4, // brk #0
];

/// `si_arch` / `seccomp_data.arch` of this architecture.
#[cfg(target_arch = "x86_64")]
pub const AUDIT_ARCH: u32 = 0xC000_003E;
/// `si_arch` / `seccomp_data.arch` of this architecture.
#[cfg(target_arch = "aarch64")]
pub const AUDIT_ARCH: u32 = 0xC000_00B7;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("sud-benches supports x86_64 and aarch64");
