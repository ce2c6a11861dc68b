//! Another task's dispatch configuration, read and written through ptrace
//! (`PTRACE_GET/SET_SYSCALL_USER_DISPATCH_CONFIG`), for checkpoint/restore
//! and debuggers. The caller must already be the task's tracer and the task
//! must be stopped.

use crate::error::{Error, Result};
use crate::kernel::Region;
use linux_raw_sys::prctl::{
    PR_SYS_DISPATCH_EXCLUSIVE_ON, PR_SYS_DISPATCH_INCLUSIVE_ON, PR_SYS_DISPATCH_OFF,
};
use linux_raw_sys::ptrace::{
    ptrace_sud_config, PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG,
    PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG,
};
use syscalls::{Errno, Sysno};

/// A task's dispatch configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskDispatch {
    /// Dispatch is off.
    Off,
    /// Dispatch is on.
    On {
        /// The region, with an inclusive range reported as such (the kernel
        /// stores it inverted; this type undoes that).
        region: Region,
        /// The selector's address in the task (0: always dispatch).
        selector: usize,
    },
}

fn ptrace_config(
    request: u32,
    pid: i32,
    cfg: &mut ptrace_sud_config,
) -> std::result::Result<(), Errno> {
    crate::sys::call(
        Sysno::ptrace,
        [
            request as u64,
            pid as u64,
            std::mem::size_of::<ptrace_sud_config>() as u64,
            cfg as *mut _ as u64,
            0,
            0,
        ],
    )
    .map(drop)
}

fn map_ptrace_error(op: &'static str) -> impl Fn(Errno) -> Error {
    move |errno| match errno {
        Errno::EINVAL => Error::Unsupported,
        errno => Error::Os { op, errno },
    }
}

/// Reads the dispatch configuration of `pid`, a stopped tracee of the caller.
pub fn get_task_config(pid: i32) -> Result<TaskDispatch> {
    let mut cfg = ptrace_sud_config {
        mode: 0,
        selector: 0,
        offset: 0,
        len: 0,
    };
    ptrace_config(PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG, pid, &mut cfg).map_err(
        map_ptrace_error("ptrace(PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG)"),
    )?;
    Ok(decode(cfg))
}

/// Writes the dispatch configuration of `pid`, a stopped tracee of the caller.
pub fn set_task_config(pid: i32, config: TaskDispatch) -> Result<()> {
    let mut cfg = encode(config)?;
    ptrace_config(PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG, pid, &mut cfg).map_err(map_ptrace_error(
        "ptrace(PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG)",
    ))
}

/// Turns the kernel's record into a [`TaskDispatch`]. An inclusive range is
/// stored as its complement (`offset` = end, `len` = -len, a range that wraps
/// around the address space); exclusive ranges never wrap, so a wrapping
/// range means inclusive whatever the mode field says.
pub(crate) fn decode(cfg: ptrace_sud_config) -> TaskDispatch {
    if cfg.mode == PR_SYS_DISPATCH_OFF as u64 {
        return TaskDispatch::Off;
    }
    let (offset, len) = (cfg.offset as usize, cfg.len as usize);
    let inverted = offset.checked_add(len).is_none();
    let region = if inverted {
        Region::Inclusive {
            start: offset.wrapping_add(len),
            len: len.wrapping_neg(),
        }
    } else if cfg.mode == PR_SYS_DISPATCH_INCLUSIVE_ON as u64 {
        Region::Inclusive { start: offset, len }
    } else {
        Region::Exclusive { start: offset, len }
    };
    TaskDispatch::On {
        region,
        selector: cfg.selector as usize,
    }
}

pub(crate) fn encode(config: TaskDispatch) -> Result<ptrace_sud_config> {
    Ok(match config {
        TaskDispatch::Off => ptrace_sud_config {
            mode: PR_SYS_DISPATCH_OFF as u64,
            selector: 0,
            offset: 0,
            len: 0,
        },
        TaskDispatch::On { region, selector } => {
            region.validate()?;
            let (mode, start, len) = match region {
                Region::Exclusive { start, len } => (PR_SYS_DISPATCH_EXCLUSIVE_ON, start, len),
                Region::Inclusive { start, len } => (PR_SYS_DISPATCH_INCLUSIVE_ON, start, len),
            };
            ptrace_sud_config {
                mode: mode as u64,
                selector: selector as u64,
                offset: start as u64,
                len: len as u64,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverted_inclusive_range_decodes_and_encodes_back() {
        let (start, len) = (0x40_0000usize, 0x2000usize);
        let stored = ptrace_sud_config {
            mode: PR_SYS_DISPATCH_EXCLUSIVE_ON as u64,
            selector: 0x1234,
            offset: (start + len) as u64,
            len: len.wrapping_neg() as u64,
        };
        let decoded = decode(stored);
        assert_eq!(
            decoded,
            TaskDispatch::On {
                region: Region::Inclusive { start, len },
                selector: 0x1234
            }
        );
        let encoded = encode(decoded).unwrap();
        assert_eq!(encoded.mode, PR_SYS_DISPATCH_INCLUSIVE_ON as u64);
        assert_eq!((encoded.offset, encoded.len), (start as u64, len as u64));
    }
}
