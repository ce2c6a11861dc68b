//! Making freshly written code visible to instruction fetch.

/// Makes the instructions just written to `[start, start + len)` visible to
/// this and every other core's instruction fetch: cleans the data cache to
/// the point of unification (`dc cvau`), invalidates the instruction cache
/// (`ic ivau`), each by line size read from `CTR_EL0` and followed by
/// `dsb ish`, then `isb` so this core refetches. Call it after writing code
/// and before running it (other cores that already ran older code at these
/// addresses also need a context synchronisation, which a syscall or the
/// interrupt that reschedules them provides).
///
/// The range must be mapped (any permission): cache maintenance on an
/// unmapped address faults like a load and the thread gets SIGSEGV.
///
/// On hosts other than aarch64 (x86-64 keeps its caches coherent with
/// stores, and this crate is built there for code generation) this is a
/// no-op.
pub fn flush_icache(start: usize, len: usize) {
    #[cfg(target_arch = "aarch64")]
    aarch64::flush(start, len);
    #[cfg(not(target_arch = "aarch64"))]
    let _ = (start, len);
}

#[cfg(target_arch = "aarch64")]
mod aarch64 {
    use core::arch::asm;

    /// CTR_EL0.IDC: cleaning to the point of unification is not required.
    const IDC: u64 = 1 << 28;
    /// CTR_EL0.DIC: invalidating the instruction cache is not required.
    const DIC: u64 = 1 << 29;

    fn line_sizes(ctr: u64) -> (usize, usize) {
        // DminLine (bits 16-19) and IminLine (bits 0-3) are log2 of words.
        (4 << ((ctr >> 16) & 0xf), 4 << (ctr & 0xf))
    }

    pub(super) fn flush(start: usize, len: usize) {
        let ctr: u64;
        // SAFETY: Linux lets EL0 read CTR_EL0 (it traps and emulates it
        // where needed); reading it has no side effect.
        unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
        let (dline, iline) = line_sizes(ctr);
        let end = start.saturating_add(len);
        if len > 0 && ctr & IDC == 0 {
            let mut line = start & !(dline - 1);
            while line < end {
                // SAFETY: a clean by virtual address changes no memory
                // contents; the caller names mapped memory (an unmapped
                // line faults, it does not corrupt anything).
                unsafe { asm!("dc cvau, {}", in(reg) line, options(nostack, preserves_flags)) };
                line += dline;
            }
        }
        // SAFETY: a barrier; orders the cleans before the invalidations.
        unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
        if len > 0 && ctr & DIC == 0 {
            let mut line = start & !(iline - 1);
            while line < end {
                // SAFETY: invalidating instruction-cache lines only forces a
                // refetch; same mapping argument as for `dc cvau`.
                unsafe { asm!("ic ivau, {}", in(reg) line, options(nostack, preserves_flags)) };
                line += iline;
            }
        }
        // SAFETY: barriers only: wait for the invalidations, then discard
        // instructions this core already fetched.
        unsafe { asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
    }
}
