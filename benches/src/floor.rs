//! The kernel's floor for a trapped syscall: the cheapest SIGSYS round trip
//! Syscall User Dispatch allows, written directly against the kernel with no
//! engine. Its handler executes the syscall and writes the result register,
//! nothing else; it is installed with the raw `rt_sigaction` and a restorer
//! inside its own excluded page, and the thread is armed with its own prctl
//! and its own selector byte. Every engine trap is compared with this.

use crate::error::Result;
use crate::isa::TrappedCall;
use crate::sys::{self, KernelSigaction, PAGE, SA_RESTORER};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::time::{Duration, Instant};

const ALLOW: u8 = 0;
const BLOCK: u8 = 1;

/// The floor's selector. One byte for the process is enough: only the
/// measuring thread is ever armed with it.
static SELECTOR: AtomicU8 = AtomicU8::new(ALLOW);

/// Which `sa_flags` the floor's handler is installed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flags {
    /// `SA_SIGINFO | SA_RESTORER | SA_NODEFER`: the cheapest round trip.
    /// `SA_NODEFER` leaves the signal mask alone, so neither delivery nor
    /// sigreturn has to change it (each change takes the signal lock).
    Floor,
    /// `SA_SIGINFO | SA_RESTORER`, what a plain handler gets: SIGSYS is
    /// blocked during the handler and unblocked by sigreturn.
    Deferring,
    /// The engine's flags, `SA_NODEFER | SA_ONSTACK`: tells what the flags
    /// cost apart from the engine's handler code (Rust's main thread has an
    /// alternate signal stack, so `SA_ONSTACK` moves the frame there).
    LikeEngine,
}

impl Flags {
    fn bits(self) -> u64 {
        let base = libc::SA_SIGINFO as u64 | SA_RESTORER;
        match self {
            Flags::Floor => base | libc::SA_NODEFER as u64,
            Flags::Deferring => base,
            Flags::LikeEngine => base | (libc::SA_NODEFER | libc::SA_ONSTACK) as u64,
        }
    }
}

/// The floor's SIGSYS handler: selector to ALLOW, execute the call with the
/// trapped registers, write the result, selector back to BLOCK.
///
/// # Safety
/// Called by the kernel only, as an `SA_SIGINFO` handler.
unsafe extern "C" fn on_sigsys(
    _sig: libc::c_int,
    _info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    SELECTOR.store(ALLOW, Relaxed);
    // SAFETY: `ctx` is the ucontext the kernel passed to this handler.
    let mut trapped = unsafe { TrappedCall::from_context(ctx) };
    let (nr, a) = trapped.call();
    // SAFETY: the call is the one the interrupted code issued, with its own
    // arguments: executing it is what it asked for. The probes only trap
    // unknown numbers.
    let result = unsafe { syscalls::raw::syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    trapped.set_result(result as i64);
    SELECTOR.store(BLOCK, Relaxed);
}

/// The floor installed on the calling thread: its SIGSYS handler and its
/// arming. Leaving puts the previous SIGSYS action back and disarms; whoever
/// armed the thread before (the engine) must arm it again.
pub struct Session {
    previous: KernelSigaction,
    left: bool,
}

impl Session {
    /// Installs the floor's handler and arms the calling thread with the
    /// floor's selector (ALLOW until [`trap_batch`] flips it).
    pub fn enter(flags: Flags) -> Result<Session> {
        let page = sys::excluded_page()?;
        SELECTOR.store(ALLOW, Relaxed);
        let act = KernelSigaction {
            handler: on_sigsys as *const () as usize,
            flags: flags.bits(),
            restorer: page,
            mask: 0,
        };
        let previous = sys::sigaction(libc::SIGSYS, &act)?;
        // SAFETY: SELECTOR is a static byte that only ever holds ALLOW or
        // BLOCK, and the handler that handles dispatch is installed above.
        if let Err(e) = unsafe { sys::arm(page, PAGE, SELECTOR.as_ptr()) } {
            let _ = sys::sigaction(libc::SIGSYS, &previous);
            return Err(e);
        }
        Ok(Session {
            previous,
            left: false,
        })
    }

    /// Disarms and puts the previous SIGSYS action back.
    pub fn leave(mut self) -> Result<()> {
        self.left = true;
        SELECTOR.store(ALLOW, Relaxed);
        sys::disarm()?;
        sys::sigaction(libc::SIGSYS, &self.previous).map(drop)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.left {
            SELECTOR.store(ALLOW, Relaxed);
            let _ = sys::disarm();
            let _ = sys::sigaction(libc::SIGSYS, &self.previous);
        }
    }
}

/// `n` trapped syscalls (unknown number) under the floor; needs a [`Session`].
pub fn trap_batch(n: u64) -> Duration {
    let start = Instant::now();
    SELECTOR.store(BLOCK, Relaxed);
    for _ in 0..n {
        std::hint::black_box(sys::raw0(std::hint::black_box(sys::UNWATCHED_NR)));
    }
    SELECTOR.store(ALLOW, Relaxed);
    start.elapsed()
}

/// `n` prctl ON + prctl OFF pairs with the floor's selector on ALLOW and
/// the floor's excluded page as the region. Leaves the thread disarmed.
pub fn prctl_pair_batch(n: u64) -> Result<Duration> {
    let page = sys::excluded_page()?;
    SELECTOR.store(ALLOW, Relaxed);
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: SELECTOR is a static byte holding ALLOW, so nothing traps
        // while the thread is armed between the two calls.
        unsafe { sys::arm(page, PAGE, SELECTOR.as_ptr()) }?;
        sys::disarm()?;
    }
    Ok(start.elapsed())
}
