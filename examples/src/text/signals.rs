//! Delivered signals as strace shows them: `{si_signo=..., si_code=...}`
//! with the fields of each kind of signal.

use super::{flags, Line};
use std::fmt::Write as _;
use sud_engine::Sysno;

/// strace's `{si_signo=..., si_code=..., ...}` for a delivered signal.
pub(crate) fn siginfo(line: &mut Line, signal: &sud_engine::DeliveredSignal) {
    let w = &signal.siginfo;
    let halves = |v: u64| (v as u32 as i32, (v >> 32) as u32);
    let (signo, code) = (signal.signo, signal.code);
    line.push_bytes(b"{si_signo=");
    flags::signal_name(line, signo as u64);
    line.push_bytes(b", si_code=");
    let named = si_code_name(signo, code);
    match named {
        Some(name) => line.push_bytes(name.as_bytes()),
        None => {
            let _ = write!(line, "{code}");
        }
    }
    let pointer = |line: &mut Line, v: u64| {
        if v == 0 {
            line.push_bytes(b"NULL");
        } else {
            let _ = write!(line, "{v:#x}");
        }
    };
    let (pid, uid) = halves(w[2]);
    match (signo, code) {
        (_, libc::SI_USER | libc::SI_TKILL) => {
            let _ = write!(line, ", si_pid={pid}, si_uid={uid}");
        }
        (_, libc::SI_QUEUE | libc::SI_MESGQ) => {
            let _ = write!(
                line,
                ", si_pid={pid}, si_uid={uid}, si_int={}, si_ptr=",
                w[3] as i32
            );
            pointer(line, w[3]);
        }
        (_, libc::SI_TIMER) => {
            let _ = write!(
                line,
                ", si_timerid={:#x}, si_overrun={}, si_int={}, si_ptr=",
                pid, uid, w[3] as i32
            );
            pointer(line, w[3]);
        }
        (libc::SIGCHLD, 1..) => {
            let _ = write!(line, ", si_pid={pid}, si_uid={uid}, si_status=");
            let status = w[3] as i32;
            if code == libc::CLD_EXITED {
                let _ = write!(line, "{status}");
            } else {
                flags::signal_name(line, status as u64);
            }
            let _ = write!(line, ", si_utime={}, si_stime={}", w[4] as i64, w[5] as i64);
        }
        (libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP, _) => {
            line.push_bytes(b", si_addr=");
            pointer(line, w[2]);
        }
        (libc::SIGSYS, 1..) => {
            line.push_bytes(b", si_call_addr=");
            pointer(line, w[2]);
            let nr = w[3] as u32 as usize;
            match Sysno::new(nr) {
                Some(s) => {
                    let _ = write!(line, ", si_syscall=__NR_{}", s.name());
                }
                None => {
                    let _ = write!(line, ", si_syscall={nr}");
                }
            }
            let _ = write!(line, ", si_arch=");
            match (w[3] >> 32) as u32 {
                0xC000_003E => line.push_bytes(b"AUDIT_ARCH_X86_64"),
                0xC000_00B7 => line.push_bytes(b"AUDIT_ARCH_AARCH64"),
                0x4000_0003 => line.push_bytes(b"AUDIT_ARCH_I386"),
                arch => {
                    let _ = write!(line, "{arch:#x}");
                }
            }
        }
        _ => {}
    }
    line.push_bytes(b"}");
}

/// The name strace gives a `si_code` for a signal.
fn si_code_name(signo: i32, code: i32) -> Option<&'static str> {
    let general = match code {
        libc::SI_USER => Some("SI_USER"),
        libc::SI_KERNEL => Some("SI_KERNEL"),
        libc::SI_QUEUE => Some("SI_QUEUE"),
        libc::SI_TIMER => Some("SI_TIMER"),
        libc::SI_MESGQ => Some("SI_MESGQ"),
        libc::SI_ASYNCIO => Some("SI_ASYNCIO"),
        libc::SI_SIGIO => Some("SI_SIGIO"),
        libc::SI_TKILL => Some("SI_TKILL"),
        _ => None,
    };
    if general.is_some() || code <= 0 {
        return general;
    }
    let names: &[&str] = match signo {
        libc::SIGCHLD => &[
            "CLD_EXITED",
            "CLD_KILLED",
            "CLD_DUMPED",
            "CLD_TRAPPED",
            "CLD_STOPPED",
            "CLD_CONTINUED",
        ],
        libc::SIGSEGV => &["SEGV_MAPERR", "SEGV_ACCERR", "SEGV_BNDERR", "SEGV_PKUERR"],
        libc::SIGBUS => &[
            "BUS_ADRALN",
            "BUS_ADRERR",
            "BUS_OBJERR",
            "BUS_MCEERR_AR",
            "BUS_MCEERR_AO",
        ],
        libc::SIGILL => &[
            "ILL_ILLOPC",
            "ILL_ILLOPN",
            "ILL_ILLADR",
            "ILL_ILLTRP",
            "ILL_PRVOPC",
            "ILL_PRVREG",
            "ILL_COPROC",
            "ILL_BADSTK",
        ],
        libc::SIGFPE => &[
            "FPE_INTDIV",
            "FPE_INTOVF",
            "FPE_FLTDIV",
            "FPE_FLTOVF",
            "FPE_FLTUND",
            "FPE_FLTRES",
            "FPE_FLTINV",
            "FPE_FLTSUB",
        ],
        libc::SIGTRAP => &["TRAP_BRKPT", "TRAP_TRACE", "TRAP_BRANCH", "TRAP_HWBKPT"],
        libc::SIGIO => &[
            "POLL_IN", "POLL_OUT", "POLL_MSG", "POLL_ERR", "POLL_PRI", "POLL_HUP",
        ],
        libc::SIGSYS => &["SYS_SECCOMP", "SYS_USER_DISPATCH"],
        _ => &[],
    };
    names.get(code as usize - 1).copied()
}
