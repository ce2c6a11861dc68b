//! The program's alternate signal stack, kept virtually: the real one of
//! every armed thread is the engine's (SIGSYS runs there), so a trapped
//! `sigaltstack` is answered from and stored in the thread's state, with
//! the kernel's checks and flags. The wrapper for the program's handlers
//! (`deliver`) puts `SA_ONSTACK` handlers on this stack.

use crate::thread::{AltStack, ThreadState};
use crate::usermem::{read_user, write_user};

/// `SS_AUTODISARM` (Linux 4.7): the stack is disabled while a handler runs on it.
pub(crate) const SS_AUTODISARM: i32 = 1 << 31;

/// The kernel's `MINSIGSTKSZ` check for a new stack.
const MINSIGSTKSZ: u64 = libc::MINSIGSTKSZ as u64;

/// `stack_t` as `sigaltstack` reports `stack` to code running at `sp`:
/// flags as the kernel's `sas_ss_flags` computes them.
pub(crate) fn as_seen_from(stack: AltStack, sp: u64) -> [u64; 3] {
    let flags = if !stack.is_enabled() {
        libc::SS_DISABLE
    } else if stack.contains(sp) {
        libc::SS_ONSTACK
    } else {
        0
    } | (stack.flags & SS_AUTODISARM);
    // stack_t: ss_sp, ss_flags (int, padded), ss_size.
    [stack.sp, flags as u32 as u64, stack.size]
}

/// `stack_t` as a signal frame's `uc_stack` holds it: the task's raw
/// settings (the kernel's `__save_altstack`).
#[cfg(target_arch = "x86_64")]
pub(crate) fn in_frame(stack: AltStack) -> [u64; 3] {
    [stack.sp, stack.flags as u32 as u64, stack.size]
}

/// The program's `sigaltstack(ss, old_ss)` from code running at `sp`, in
/// the kernel's order: EPERM while on the stack, then the new stack's
/// checks; the old one is written only on success.
pub(crate) fn emulate(thread: &ThreadState, a: [u64; 6], sp: u64) -> i64 {
    let [new, old, ..] = a;
    let current = thread.app_stack.get();
    let mut next = current;
    if new != 0 {
        let mut requested = [0u64; 3];
        if !read_user(new, &mut requested) {
            return -(libc::EFAULT as i64);
        }
        if current.contains(sp) {
            return -(libc::EPERM as i64);
        }
        next = match validated(requested) {
            Ok(stack) => stack,
            Err(errno) => return -(errno as i64),
        };
    }
    if old != 0 && !write_user(old, &as_seen_from(current, sp)) {
        return -(libc::EFAULT as i64);
    }
    thread.app_stack.set(next);
    0
}

/// A `stack_t` the kernel would accept, as the state keeps it.
pub(crate) fn validated([sp, flags, size]: [u64; 3]) -> Result<AltStack, i32> {
    let flags = flags as u32 as i32;
    let mode = flags & !SS_AUTODISARM;
    if mode != libc::SS_DISABLE && mode != libc::SS_ONSTACK && mode != 0 {
        return Err(libc::EINVAL);
    }
    if mode == libc::SS_DISABLE {
        return Ok(AltStack {
            sp: 0,
            flags,
            size: 0,
        });
    }
    if size < MINSIGSTKSZ {
        return Err(libc::ENOMEM);
    }
    Ok(AltStack { sp, flags, size })
}
