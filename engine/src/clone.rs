//! Which syscalls create a process or thread, and where each kind can run:
//! one classification for every entrance (trap and direct).

use crate::usermem::read_user;
use syscalls::Sysno;

#[cfg(target_arch = "x86_64")]
const SIGCHLD: u64 = libc::SIGCHLD as u64;
pub(crate) const CLONE_VM: u64 = libc::CLONE_VM as u64;
pub(crate) const CLONE_VFORK: u64 = libc::CLONE_VFORK as u64;
pub(crate) const CLONE_THREAD: u64 = libc::CLONE_THREAD as u64;
pub(crate) const CLONE_SETTLS: u64 = libc::CLONE_SETTLS as u64;
/// `CLONE_CLEAR_SIGHAND` (clone3 only): the child's handlers are reset.
pub(crate) const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;

/// Words of `struct clone_args` the engine copies (up to `cgroup`, VER2).
pub(crate) const CLONE_ARGS_WORDS: usize = 11;

/// Whether `sysno` creates a process or thread.
pub(crate) fn is_clone_family(sysno: Sysno) -> bool {
    #[cfg(target_arch = "x86_64")]
    if matches!(sysno, Sysno::fork | Sysno::vfork) {
        return true;
    }
    matches!(sysno, Sysno::clone | Sysno::clone3)
}

/// Where a process- or thread-creating call may run.
pub(crate) enum CloneRequest {
    /// The child gets a stack of its own (a thread, posix_spawn's child):
    /// it must start at the call site with the caller's registers, so the
    /// call cannot run inside the engine's frames.
    NewStack { flags: u64, stack_top: u64 },
    /// The call can run right here: a fork, or a call whose child would
    /// share the caller's stack (vfork), rewritten with fork semantics,
    /// because that child would return through the engine's frames and
    /// wreck them for the parent. `vfork`: the program's own call, when it
    /// asked for vfork semantics (`CLONE_VM | CLONE_VFORK`), for an
    /// entrance that can re-issue it at the site instead. `flags`: the
    /// flags the program asked for.
    ForkLike {
        nr: u64,
        args: [u64; 6],
        flags: u64,
        vfork: Option<(u64, [u64; 6])>,
    },
    /// clone3's argument block could not be read.
    Fault,
}

/// Classifies a clone-family call. A clone3 rewritten with fork semantics
/// points at `clone3_copy`, which must outlive the call.
pub(crate) fn classify_clone(
    sysno: Sysno,
    args: [u64; 6],
    clone3_copy: &mut [u64; CLONE_ARGS_WORDS],
) -> CloneRequest {
    let nr = sysno.id() as u64;
    let shares_stack = |flags: u64| flags & (CLONE_VM | CLONE_VFORK) != 0;
    let fork_flags = |flags: u64| flags & !(CLONE_VM | CLONE_VFORK);
    let is_vfork = |flags: u64| flags & (CLONE_VM | CLONE_VFORK) == CLONE_VM | CLONE_VFORK;
    let plain = |flags| CloneRequest::ForkLike {
        nr,
        args,
        flags,
        vfork: None,
    };
    match sysno {
        Sysno::clone => {
            let (flags, stack) = (args[0], args[1]);
            if stack != 0 {
                CloneRequest::NewStack {
                    flags,
                    stack_top: stack,
                }
            } else if shares_stack(flags) {
                let mut forked = args;
                forked[0] = fork_flags(flags);
                CloneRequest::ForkLike {
                    nr,
                    args: forked,
                    flags,
                    vfork: is_vfork(flags).then_some((nr, args)),
                }
            } else {
                plain(flags)
            }
        }
        Sysno::clone3 => {
            // struct clone_args: flags, pidfd, child_tid, parent_tid,
            // exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup.
            let size = (args[1] as usize).min(8 * CLONE_ARGS_WORDS);
            if size < 56 {
                // Too small for the kernel as well: let it answer.
                return plain(0);
            }
            if !read_user(args[0], &mut clone3_copy[..size / 8]) {
                return CloneRequest::Fault;
            }
            let (flags, stack, stack_size) = (clone3_copy[0], clone3_copy[5], clone3_copy[6]);
            if stack != 0 {
                CloneRequest::NewStack {
                    flags,
                    stack_top: stack.wrapping_add(stack_size),
                }
            } else if shares_stack(flags) {
                clone3_copy[0] = fork_flags(flags);
                CloneRequest::ForkLike {
                    nr,
                    args: [clone3_copy.as_ptr() as u64, size as u64, 0, 0, 0, 0],
                    flags,
                    vfork: is_vfork(flags).then_some((nr, args)),
                }
            } else {
                plain(flags)
            }
        }
        #[cfg(target_arch = "x86_64")]
        Sysno::vfork => CloneRequest::ForkLike {
            nr: Sysno::clone.id() as u64,
            args: [SIGCHLD, 0, 0, 0, 0, 0],
            flags: CLONE_VM | CLONE_VFORK,
            vfork: Some((nr, args)),
        },
        _ => plain(0),
    }
}
