//! The program's signal actions as the engine keeps them: SIGSYS's action
//! is virtual (the real one is always the engine's), and the handlers of
//! a program whose handlers are foreign code are wrapped (the real action
//! points at the engine's wrapper, the program's is kept here).

use crate::engine::Engine;
use crate::sys::{self, raw6};
use crate::usermem::{read_user, write_user};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use syscalls::{Errno, Sysno};

pub(crate) const SIGSYS: u64 = libc::SIGSYS as u64;
pub(crate) const SIGSYS_BIT: u64 = 1 << (SIGSYS - 1);
pub(crate) const UNBLOCKABLE: u64 = (1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1));
pub(crate) const SIGSET_SIZE: u64 = 8;
/// `SA_RESTORER`, which the libc crate does not export for every target.
pub(crate) const SA_RESTORER: u64 = linux_raw_sys::general::SA_RESTORER as u64;

/// The kernel's `struct sigaction` (not glibc's): handler, flags, restorer, mask.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KernelSigaction {
    pub(crate) handler: usize,
    pub(crate) flags: u64,
    pub(crate) restorer: usize,
    pub(crate) mask: u64,
}

const _: () = assert!(
    std::mem::size_of::<KernelSigaction>()
        == std::mem::size_of::<linux_raw_sys::general::kernel_sigaction>()
);

impl KernelSigaction {
    fn words(&self) -> [u64; 4] {
        [
            self.handler as u64,
            self.flags,
            self.restorer as u64,
            self.mask,
        ]
    }

    fn from_words(w: [u64; 4]) -> Self {
        KernelSigaction {
            handler: w[0] as usize,
            flags: w[1],
            restorer: w[2] as usize,
            mask: w[3],
        }
    }

    pub(crate) fn is_handler(&self) -> bool {
        self.handler != libc::SIG_DFL && self.handler != libc::SIG_IGN
    }
}

/// Installs `handler` for SIGSYS with the raw syscall, so the restorer is
/// ours (in the excluded region) rather than glibc's `__restore_rt`, whose
/// `rt_sigreturn` would itself trap. Returns the previous action.
pub(crate) fn install_sigsys_handler(
    handler: usize,
    restorer: usize,
) -> Result<KernelSigaction, Errno> {
    let act = KernelSigaction {
        handler,
        // SA_ONSTACK: the frame and the hooks go on the engine's per-thread
        // stack (see `thread`), never on the interrupted code's, which may
        // be a goroutine's few KiB. SA_NODEFER: a seccomp SIGSYS raised by a
        // hook's own syscall must reach the program, not find SIGSYS blocked
        // (forced and blocked means death).
        flags: (libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_ONSTACK) as u64 | SA_RESTORER,
        restorer,
        mask: 0,
    };
    let mut old = KernelSigaction::default();
    sys::call(
        Sysno::rt_sigaction,
        [
            SIGSYS,
            &act as *const _ as u64,
            &mut old as *mut _ as u64,
            SIGSET_SIZE,
            0,
            0,
        ],
    )?;
    Ok(old)
}

/// One signal's action kept by the engine, readable from a signal handler
/// at any moment, including one that interrupted a store on its own
/// thread. Two copies: a writer fills the one readers are not directed to,
/// then flips `current`; a reader that interrupted the writer reads the
/// other copy, which nobody is writing, so it never waits for the writer.
/// Each copy has its own sequence number for readers on other threads
/// racing with two back-to-back stores.
pub(crate) struct VirtualSigaction {
    current: AtomicU32,
    /// Serializes writers (a flag, not a lock a reader could wait on).
    writing: AtomicU32,
    copies: [Copy; 2],
}

struct Copy {
    seq: AtomicU32,
    fields: [AtomicU64; 4],
}

impl VirtualSigaction {
    pub(crate) const fn new() -> Self {
        VirtualSigaction {
            current: AtomicU32::new(0),
            writing: AtomicU32::new(0),
            copies: [const {
                Copy {
                    seq: AtomicU32::new(0),
                    fields: [const { AtomicU64::new(0) }; 4],
                }
            }; 2],
        }
    }

    pub(crate) fn load(&self) -> KernelSigaction {
        loop {
            let copy = &self.copies[self.current.load(Ordering::Acquire) as usize & 1];
            let before = copy.seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                // Only a writer on another thread can be inside this copy
                // (ours would be writing the other one): it finishes.
                std::hint::spin_loop();
                continue;
            }
            let f: [u64; 4] = std::array::from_fn(|i| copy.fields[i].load(Ordering::Relaxed));
            std::sync::atomic::fence(Ordering::Acquire);
            if copy.seq.load(Ordering::Relaxed) == before {
                return KernelSigaction::from_words(f);
            }
        }
    }

    pub(crate) fn store(&self, act: KernelSigaction) {
        // A handler on this thread that stores while this thread is
        // storing (a signal handler calling sigaction) must not wait for
        // itself: after a bounded wait it goes ahead, and the last store
        // wins, as with two racing sigaction calls in the kernel.
        let mut spins = 0u32;
        while self
            .writing
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
            && spins < 1 << 16
        {
            spins += 1;
            std::hint::spin_loop();
        }
        let next = (self.current.load(Ordering::Relaxed) as usize + 1) & 1;
        let copy = &self.copies[next];
        copy.seq.fetch_add(1, Ordering::Acquire);
        for (slot, value) in copy.fields.iter().zip(act.words()) {
            slot.store(value, Ordering::Relaxed);
        }
        copy.seq.fetch_add(1, Ordering::Release);
        self.current.store(next as u32, Ordering::Release);
        self.writing.store(0, Ordering::Release);
    }
}

/// The program's actions for the signals whose handlers the engine
/// wraps (`Builder::foreign_signal_handlers`), by signal number.
pub(crate) static APP_ACTIONS: [VirtualSigaction; 65] = [const { VirtualSigaction::new() }; 65];

impl Engine {
    /// rt_sigaction: SIGSYS's action is kept virtually; for other signals,
    /// SIGSYS is taken out of `sa_mask` (a handler that blocks everything,
    /// like dash's SIGCHLD handler, would otherwise die on its first trapped
    /// syscall) and the program is shown the mask it asked for.
    pub(crate) fn sigaction(&self, a: [u64; 6]) -> i64 {
        let [sig, act, oldact, size, ..] = a;
        let efault = -(libc::EFAULT as i64);
        if size != SIGSET_SIZE || sig == 0 || sig > 64 {
            return raw6(Sysno::rt_sigaction.id() as u64, a);
        }
        let mut new_words = [0u64; 4];
        if act != 0 && !read_user(act, &mut new_words) {
            return efault;
        }
        let mut new = KernelSigaction::from_words(new_words);
        // The kernel never keeps SIGKILL or SIGSTOP in an action's mask.
        new.mask &= !UNBLOCKABLE;
        let bit = 1u64 << (sig - 1);
        if sig == SIGSYS {
            let old = self.app_sigsys.load();
            if oldact != 0 && !write_user(oldact, &old.words()) {
                return efault;
            }
            if act != 0 {
                self.app_sigsys.store(new);
            }
            return 0;
        }
        let asked_now = new.mask & SIGSYS_BIT != 0;
        let app_new = new;
        let mut real = a;
        if act != 0 {
            new.mask &= !SIGSYS_BIT;
            real[1] = &new as *const _ as u64;
        }
        // Wrapped handlers: the program's action is kept in APP_ACTIONS
        // (before the kernel can deliver to the wrapper) and the wrapper is
        // installed with the same flags and mask, on the engine's stack
        // (the wrapper moves the frame to where the kernel would have put
        // it for the program's flags), and our restorer.
        let app_old = APP_ACTIONS[sig as usize].load();
        let wrapped;
        if act != 0 && self.foreign_signal_handlers && new.is_handler() {
            APP_ACTIONS[sig as usize].store(app_new);
            wrapped = KernelSigaction {
                handler: crate::deliver::on_app_signal as *const () as usize,
                flags: new.flags
                    | libc::SA_SIGINFO as u64
                    | crate::deliver::WRAPPER_STACK_FLAG
                    | SA_RESTORER,
                restorer: self.gadgets.restorer,
                mask: new.mask,
            };
            real[1] = &wrapped as *const _ as u64;
        }
        let r = raw6(Sysno::rt_sigaction.id() as u64, real);
        if r != 0 {
            return r;
        }
        if oldact != 0 {
            let mut old = [0u64; 4];
            if read_user(oldact, &mut old)
                && old[0] == crate::deliver::on_app_signal as *const () as u64
            {
                // The kernel reported our wrapper: show what the program installed.
                write_user(oldact, &app_old.words());
            }
        }
        let asked_before = self.sa_mask_sigsys.load(Ordering::Relaxed) & bit != 0;
        if oldact != 0 && asked_before {
            let mut old = [0u64; 4];
            if read_user(oldact, &mut old) {
                old[3] |= SIGSYS_BIT;
                write_user(oldact, &old);
            }
        }
        if act != 0 {
            if asked_now {
                self.sa_mask_sigsys.fetch_or(bit, Ordering::Relaxed);
            } else {
                self.sa_mask_sigsys.fetch_and(!bit, Ordering::Relaxed);
            }
        }
        0
    }
}
