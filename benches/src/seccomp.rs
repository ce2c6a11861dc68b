//! A seccomp `SECCOMP_RET_TRAP` round trip, the other kernel way of
//! catching one syscall in-process: a forked child installs a filter that
//! traps [`UNWATCHED_NR`] and a SIGSYS handler that writes the result (a
//! seccomp handler cannot execute the call, the filter would trap it
//! again), then measures. In a child because a filter is forever.

use crate::child::{self, Amount};
use crate::error::Result;
use crate::isa::{TrappedCall, AUDIT_ARCH};
use crate::sys::{self, os, UNWATCHED_NR};
use std::time::{Duration, Instant};
use syscalls::Sysno;

/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

fn insn(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Traps `nr` of this architecture, allows everything else.
fn filter(nr: u32) -> [libc::sock_filter; 6] {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    [
        insn(BPF_LD | BPF_W | BPF_ABS, ARCH_OFFSET, 0, 0),
        insn(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 0, 3),
        insn(BPF_LD | BPF_W | BPF_ABS, NR_OFFSET, 0, 0),
        insn(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
        insn(BPF_RET | BPF_K, libc::SECCOMP_RET_TRAP, 0, 0),
        insn(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0),
    ]
}

/// What the handler makes the trapped call return: not `-ENOSYS`, so the
/// child can tell that the filter is live.
const TRAPPED_RESULT: i64 = 0x5ecc;

/// The handler: the trapped call returns [`TRAPPED_RESULT`].
///
/// # Safety
/// Called by the kernel only, as an `SA_SIGINFO` handler.
unsafe extern "C" fn on_sigsys(
    _sig: libc::c_int,
    _info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    // SAFETY: `ctx` is the ucontext the kernel passed to this handler.
    unsafe { TrappedCall::from_context(ctx) }.set_result(TRAPPED_RESULT);
}

/// Installs the handler (glibc's `sigaction`, whose restorer is fine here:
/// seccomp does not trap rt_sigreturn) and the filter, for good.
fn install() -> Result<()> {
    // SAFETY: sigaction is plain data; all-zero is a valid empty action.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = on_sigsys as *const () as usize;
    act.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `act` is a live, initialised sigaction; no old action wanted.
    if unsafe { libc::sigaction(libc::SIGSYS, &act, std::ptr::null_mut()) } != 0 {
        return Err(os("sigaction(SIGSYS)")(child::last_errno()));
    }
    sys::call(
        Sysno::prctl,
        [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
    )
    .map_err(os("prctl(PR_SET_NO_NEW_PRIVS)"))?;
    let program = filter(UNWATCHED_NR as u32);
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // The arguments: `prog` points to `program`, both live across the call.
    sys::call(
        Sysno::prctl,
        [
            libc::PR_SET_SECCOMP as u64,
            libc::SECCOMP_MODE_FILTER as u64,
            &prog as *const libc::sock_fprog as u64,
            0,
            0,
            0,
        ],
    )
    .map(drop)
    .map_err(os("prctl(PR_SET_SECCOMP)"))
}

/// `n` trapped calls of [`UNWATCHED_NR`] in a child that installed the filter.
fn trap_batch(n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(sys::raw0(std::hint::black_box(UNWATCHED_NR)));
    }
    start.elapsed()
}

/// Measures the seccomp round trip in a forked child.
pub fn measure(amount: Amount) -> Result<Vec<f64>> {
    child::run(
        "seccomp_trap",
        amount,
        |out| {
            install()?;
            // The filter must be live: a call that is not trapped fails the probe.
            if sys::raw0(UNWATCHED_NR) != TRAPPED_RESULT {
                return Err(os("seccomp check")(syscalls::Errno::EINVAL));
            }
            amount.take(out, trap_batch);
            Ok(())
        },
        child::wait_exit,
    )
}
