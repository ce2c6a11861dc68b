//! The program's own Syscall User Dispatch, kept virtually (Wine 11 and
//! other emulators arm SUD themselves). The real configuration of every
//! armed thread is the engine's; the program's `prctl` is recorded per
//! thread with the kernel's checks, and every trapped syscall that the
//! program's configuration would dispatch reaches the program's SIGSYS
//! handler with the siginfo the kernel gives (`SYS_USER_DISPATCH`, the call
//! address, number and arch), after the engine's hooks have seen it.

use crate::arch;
use crate::thread::ThreadState;
use crate::usermem::read_user;

/// `PR_SET_SYSCALL_USER_DISPATCH`.
pub(crate) const PR_SET_SYSCALL_USER_DISPATCH: u64 = 59;
const OFF: u64 = 0;
const EXCLUSIVE_ON: u64 = 1;
const INCLUSIVE_ON: u64 = 2;

/// One thread's SUD configuration as the program set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProgramDispatch {
    mode: u64,
    offset: u64,
    len: u64,
    selector: u64,
}

impl ProgramDispatch {
    pub(crate) const OFF: ProgramDispatch = ProgramDispatch {
        mode: OFF,
        offset: 0,
        len: 0,
        selector: 0,
    };
}

/// What the program's configuration does with a syscall.
pub(crate) enum Decision {
    /// It runs (the engine carries on as for any call).
    Runs,
    /// The kernel would raise SIGSYS for the program's handler.
    Dispatch,
    /// The selector holds neither ALLOW nor BLOCK: the kernel kills the
    /// thread with SIGSYS (SIGSEGV for an unreadable selector).
    Kill(i32),
}

/// The program's `prctl(PR_SET_SYSCALL_USER_DISPATCH, mode, offset, len,
/// selector)`, with the kernel's checks.
pub(crate) fn prctl(thread: &ThreadState, a: [u64; 6]) -> i64 {
    let [_, mode, offset, len, selector, _] = a;
    let einval = -(libc::EINVAL as i64);
    match mode {
        OFF if offset != 0 || len != 0 || selector != 0 => return einval,
        OFF => {}
        EXCLUSIVE_ON if offset != 0 && offset.checked_add(len).is_none_or(|e| e <= offset) => {
            return einval
        }
        INCLUSIVE_ON if len == 0 || offset.checked_add(len).is_none_or(|e| e <= offset) => {
            return einval
        }
        EXCLUSIVE_ON | INCLUSIVE_ON => {}
        _ => return einval,
    }
    // The kernel's access_ok: a user address, not its mapping.
    if selector >= 1 << 47 {
        return -(libc::EFAULT as i64);
    }
    thread.program_dispatch.set(ProgramDispatch {
        mode,
        offset,
        len,
        selector,
    });
    0
}

/// What the program's configuration does with a syscall whose instruction
/// ends at `call_addr`, as the kernel's `syscall_user_dispatch` decides.
pub(crate) fn decide(thread: &ThreadState, call_addr: u64) -> Decision {
    let config = thread.program_dispatch.get();
    if config.mode == OFF {
        return Decision::Runs;
    }
    let inside = call_addr.wrapping_sub(config.offset) < config.len;
    let exempt = if config.mode == INCLUSIVE_ON {
        !inside
    } else {
        inside
    };
    if exempt {
        return Decision::Runs;
    }
    if config.selector != 0 {
        // The selector is one byte; read the aligned word holding it.
        let word_addr = config.selector & !7;
        let mut word = [0u64];
        if !read_user(word_addr, &mut word) {
            return Decision::Kill(libc::SIGSEGV);
        }
        let state = (word[0] >> (8 * (config.selector & 7))) as u8;
        match state {
            0 => return Decision::Runs,
            1 => {}
            _ => return Decision::Kill(libc::SIGSYS),
        }
    }
    Decision::Dispatch
}

/// The siginfo the kernel gives a dispatched syscall: `SIGSYS`,
/// `si_code = SYS_USER_DISPATCH`, the address after the instruction, the
/// number and the arch.
pub(crate) fn siginfo(call_addr: u64, nr: u64) -> [u64; 16] {
    // si_signo, si_errno; si_code; then the _sigsys member.
    let mut info = [0u64; 16];
    info[0] = libc::SIGSYS as u64;
    info[1] = crate::kernel::SYS_USER_DISPATCH as u64;
    info[2] = call_addr;
    info[3] = (nr as u32 as u64) | u64::from(arch::AUDIT_ARCH) << 32;
    info
}
