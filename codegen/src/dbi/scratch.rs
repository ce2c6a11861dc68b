//! Per-thread scratch slots that translated code reaches through `fs`.
//!
//! Translated glue (indirect-branch lookup, exits) needs a few registers
//! and a place to leave a jump target. It cannot use the stack: the
//! foreign code may keep live data in its red zone, and a signal may land
//! below `rsp` at any moment. So the glue parks registers in this
//! thread's slots, which live in static TLS: like the engine's selector,
//! their offset from the thread pointer is one constant for every thread,
//! so one `mov fs:[offset], rax` serves them all and needs no register.

use std::cell::Cell;

/// The slots. No destructor and a const initializer: no lazy
/// initialisation, nothing registered at thread exit, plain static TLS.
#[repr(C)]
pub(crate) struct Scratch {
    /// Foreign rax, rcx, rdx while the lookup glue uses them.
    pub(crate) rax: Cell<u64>,
    pub(crate) rcx: Cell<u64>,
    pub(crate) rdx: Cell<u64>,
    /// The native address a lookup miss asks the translator for.
    pub(crate) native: Cell<u64>,
    /// Where the glue jumps next (`jmp fs:[target]`).
    pub(crate) target: Cell<u64>,
    /// Foreign r11 while the lookup uses it.
    pub(crate) r11: Cell<u64>,
    /// This thread's slot in the translator's thread table, plus one (0:
    /// none yet), and how many [`super::Dbi::call`]s it is inside.
    pub(crate) thread: Cell<u32>,
    pub(crate) depth: Cell<u32>,
    /// The fs base translated code sees minus the real one (see
    /// `Dbi::virtual_fs`).
    pub(crate) fs_delta: Cell<u64>,
    /// 0: not followed; else one plus the selector to restore when the
    /// thread stops being followed (see the `follow` module).
    pub(crate) follow: Cell<u8>,
}

thread_local! {
    static SCRATCH: Scratch = const {
        Scratch {
            rax: Cell::new(0),
            rcx: Cell::new(0),
            rdx: Cell::new(0),
            native: Cell::new(0),
            target: Cell::new(0),
            r11: Cell::new(0),
            thread: Cell::new(0),
            depth: Cell::new(0),
            fs_delta: Cell::new(0),
            follow: Cell::new(0),
        }
    };
}

/// Slot offsets inside [`Scratch`], in bytes.
pub(crate) const RAX: i32 = 0;
pub(crate) const RCX: i32 = 8;
pub(crate) const RDX: i32 = 16;
pub(crate) const NATIVE: i32 = 24;
pub(crate) const TARGET: i32 = 32;
pub(crate) const R11: i32 = 40;
pub(crate) const FS_DELTA: i32 = 56;

/// Runs `f` on the calling thread's slots.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&Scratch) -> R) -> R {
    SCRATCH.with(f)
}

/// The calling thread's thread pointer (`fs` base).
pub(crate) fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: glibc keeps the TCB's self pointer at fs:0 on x86-64; reading
    // it has no side effects.
    unsafe {
        std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    tp
}

/// The slots' offset from the thread pointer, if a 32-bit displacement
/// reaches it (it does when this crate is linked into the executable;
/// a dlopen'ed copy may get dynamic TLS, far away).
pub(crate) fn tp_offset() -> Option<i32> {
    let base = with_scratch(|s| s as *const Scratch as usize);
    i32::try_from(base.wrapping_sub(thread_pointer()) as isize).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn slot_offsets_are_the_fields() {
        assert_eq!(offset_of!(Scratch, rax) as i32, RAX);
        assert_eq!(offset_of!(Scratch, rcx) as i32, RCX);
        assert_eq!(offset_of!(Scratch, rdx) as i32, RDX);
        assert_eq!(offset_of!(Scratch, native) as i32, NATIVE);
        assert_eq!(offset_of!(Scratch, target) as i32, TARGET);
        assert_eq!(offset_of!(Scratch, r11) as i32, R11);
        assert_eq!(offset_of!(Scratch, fs_delta) as i32, FS_DELTA);
    }
}
