//! The translator's frame hooks (`set_frame_hooks`): they see the frame
//! built for a program handler before the handler runs and choose where it
//! is entered, and see (and may rewrite) the context its rt_sigreturn
//! restores.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use sud_engine::{selector, set_frame_hooks, Engine, FrameHooks, Selector};

static UD2_AT: AtomicU64 = AtomicU64::new(0);
static SEEN_PC: AtomicU64 = AtomicU64::new(0);
static SEEN_RESTORER: AtomicU64 = AtomicU64::new(0);
static REGISTERED_RAN: AtomicU64 = AtomicU64::new(0);
static CHOSEN_RAN: AtomicU64 = AtomicU64::new(0);
static SIGRETURNS: AtomicU64 = AtomicU64::new(0);

const RIP: usize = libc::REG_RIP as usize;
const R12: usize = libc::REG_R12 as usize;

extern "C" fn registered(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    REGISTERED_RAN.fetch_add(1, SeqCst);
}

extern "C" fn chosen(_: i32, _: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    CHOSEN_RAN.fetch_add(1, SeqCst);
    // SAFETY: an SA_SIGINFO handler's third argument is its ucontext.
    unsafe { (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs[R12] = 7 };
}

unsafe fn on_deliver(uc: *mut libc::ucontext_t, handler: u64, restorer: u64) -> u64 {
    // SAFETY: the engine passes the built frame's context.
    let pc = unsafe { (*uc).uc_mcontext.gregs[RIP] } as u64;
    SEEN_PC.store(pc, SeqCst);
    // SAFETY: the frame's return address sits just below its context.
    let return_address = unsafe { (uc as *const u64).sub(1).read() };
    if return_address == restorer {
        SEEN_RESTORER.store(restorer, SeqCst);
    }
    if handler == registered as *const () as usize as u64 {
        chosen as *const () as usize as u64
    } else {
        handler
    }
}

unsafe fn on_sigreturn(uc: *mut libc::ucontext_t) {
    SIGRETURNS.fetch_add(1, SeqCst);
    // SAFETY: the context about to be restored; step over the ud2.
    unsafe { (*uc).uc_mcontext.gregs[RIP] += 2 };
}

static HOOKS: FrameHooks = FrameHooks {
    on_deliver,
    on_sigreturn,
};

#[test]
fn frame_hooks_choose_the_handler_and_rewrite_the_context_at_sigreturn() {
    child_passes(|| {
        Engine::builder()
            .foreign_signal_handlers(true)
            .install()
            .unwrap();
        set_frame_hooks(&HOOKS);
        let r12: u64;
        {
            let _foreign = selector::enter(Selector::Block);
            set_handler(
                libc::SIGILL,
                registered as *const () as usize,
                libc::SA_SIGINFO,
                false,
            );
            let at: u64;
            // SAFETY: ud2 raises SIGILL, whose handler writes r12 in the
            // context; the sigreturn hook steps the pc over the ud2.
            unsafe {
                std::arch::asm!(
                    "lea {at}, [rip + 2f]",
                    "xor r12d, r12d",
                    "2: ud2",
                    "mov {out}, r12",
                    at = out(reg) at,
                    out = out(reg) r12,
                    out("r12") _,
                )
            };
            UD2_AT.store(at, SeqCst);
        }
        assert_eq!(REGISTERED_RAN.load(SeqCst), 0);
        assert_eq!(CHOSEN_RAN.load(SeqCst), 1);
        assert_eq!(r12, 7, "the handler's context write was restored");
        assert_eq!(SEEN_PC.load(SeqCst), UD2_AT.load(SeqCst));
        assert_ne!(SEEN_RESTORER.load(SeqCst), 0);
        assert_eq!(SIGRETURNS.load(SeqCst), 1);
    });
}
