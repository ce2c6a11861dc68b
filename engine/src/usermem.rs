//! Copies to and from the program's memory that fail instead of faulting:
//! the trap path reads what the program's pointers point at (sigaction
//! structs, clone3 argument blocks, masks) and must answer EFAULT for a
//! bad pointer, as the kernel would, rather than die of SIGSEGV.

use crate::sys::{self, raw6};
use syscalls::{Errno, Sysno};

/// Copies `out.len()` words from this process's memory at `addr`, or says
/// it could not (bad pointer) instead of faulting.
pub(crate) fn read_user(addr: u64, out: &mut [u64]) -> bool {
    user_copy(
        Sysno::process_vm_readv,
        addr,
        out.as_mut_ptr().cast(),
        std::mem::size_of_val(out),
    )
}

/// Writes `words` into this process's memory at `addr`, or says it could not.
pub(crate) fn write_user(addr: u64, words: &[u64]) -> bool {
    user_copy(
        Sysno::process_vm_writev,
        addr,
        words.as_ptr() as *mut u8,
        std::mem::size_of_val(words),
    )
}

fn user_copy(nr: Sysno, addr: u64, local: *mut u8, len: usize) -> bool {
    let local_iov = libc::iovec {
        iov_base: local.cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    let pid = raw6(Sysno::getpid.id() as u64, [0; 6]) as u64;
    match sys::call(
        nr,
        [
            pid,
            &local_iov as *const _ as u64,
            1,
            &remote as *const _ as u64,
            1,
            0,
        ],
    ) {
        Ok(n) => n == len as u64,
        Err(Errno::EFAULT) => false,
        // The program's own seccomp filter refused the call (man's `col`
        // sandbox, seccomp strict mode answers by killing, which no
        // fallback can help). The pointer came from the program for a
        // call the kernel would dereference: copy directly, as the kernel
        // would have; a bad pointer then faults like in a native run
        // whose call the kernel refused.
        Err(_) if addr != 0 => {
            let (src, dst) = if nr == Sysno::process_vm_readv {
                (addr as *const u8, local)
            } else {
                (local as *const u8, addr as *mut u8)
            };
            // SAFETY: `local` is the engine's own buffer of `len` bytes;
            // `addr` is the program's pointer for this very call, which
            // the kernel could not check for us (see above).
            unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
            true
        }
        Err(_) => false,
    }
}
