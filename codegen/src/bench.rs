//! Generated loops that measure the crossings this crate emits, for
//! `cargo bench -p sud-codegen` and the benches crate: a loop of direct-call
//! sites, the same loop with a raw `syscall` outside the cache, and a loop
//! of flip pairs. Each is one `extern "C" fn(iterations, nr) -> i64`, so a
//! timer around one call divides by `iterations` without call overhead.

use crate::direct::{selector_flip, DirectStub, SelectorAccess};
use crate::{CodeCache, Error};
use dynasmrt::x64::X64Relocation;
use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi, VecAssembler};
use memmap2::{Mmap, MmapMut};
use std::marker::PhantomData;
use sud_engine::Selector;

type LoopFn = extern "C" fn(u64, u64) -> i64;

/// Issues syscall `nr` (all arguments but the first zero; the first is the
/// remaining count) `iterations` times through direct-call sites in the
/// cache, as translated foreign code does: flip to BLOCK, the sites, flip
/// to ALLOW.
#[derive(Debug)]
pub struct DirectSiteLoop<'c> {
    entry: usize,
    _cache: PhantomData<&'c CodeCache>,
}

impl<'c> DirectSiteLoop<'c> {
    /// Emits the loop into `cache`, calling `stub`.
    pub fn new(
        cache: &'c CodeCache,
        stub: DirectStub,
        access: SelectorAccess,
    ) -> Result<Self, Error> {
        let block = selector_flip(access, Selector::Block)?;
        let allow = selector_flip(access, Selector::Allow)?;
        let entry = cache.emit_with(|rip| {
            let mut a = VecAssembler::<X64Relocation>::new(rip);
            a.extend(block.iter());
            dynasm!(a
                ; .arch x64
                ; test rdi, rdi
                ; jz >done
                ; top:
                ; mov rax, rsi
            );
            let site = stub.site(rip + a.offset().0)?;
            a.extend(site.iter());
            dynasm!(a
                ; .arch x64
                ; dec rdi
                ; jnz <top
                ; done:
            );
            a.extend(allow.iter());
            dynasm!(a ; .arch x64 ; ret);
            a.finalize().map_err(|e| Error::Encode(e.to_string()))
        })?;
        Ok(DirectSiteLoop {
            entry,
            _cache: PhantomData,
        })
    }

    /// Runs the loop and returns the last result.
    ///
    /// # Safety
    /// Syscall `nr` with those arguments, `iterations` times, must be sound
    /// for this process (e.g. `getppid`); the engine's hooks decide what
    /// actually runs.
    pub unsafe fn run(&self, iterations: u64, nr: u64) -> i64 {
        // SAFETY: `entry` is the loop emitted above, which follows the
        // System V ABI and lives as long as its cache, which `self`
        // borrows. What the syscalls do is the caller's
        // contract.
        let f: LoopFn = unsafe { std::mem::transmute::<usize, LoopFn>(self.entry) };
        f(iterations, nr)
    }
}

/// The same loop with a raw `syscall` instead of a site, in an executable
/// mapping outside any cache and without flips: with the selector on ALLOW
/// it measures the armed-ALLOW syscall, the direct path's floor.
#[derive(Debug)]
pub struct RawSyscallLoop {
    code: Mmap,
}

impl RawSyscallLoop {
    /// Maps the loop (read-write while written, then read-execute).
    pub fn new() -> Result<Self, Error> {
        let mut a = VecAssembler::<X64Relocation>::new(0);
        dynasm!(a
            ; .arch x64
            ; test rdi, rdi
            ; jz >done
            ; top:
            ; mov rax, rsi
            ; syscall
            ; dec rdi
            ; jnz <top
            ; done:
            ; ret
        );
        let bytes = a.finalize().map_err(|e| Error::Encode(e.to_string()))?;
        Ok(RawSyscallLoop {
            code: executable(&bytes)?,
        })
    }

    /// Runs the loop and returns the last result.
    ///
    /// # Safety
    /// As [`DirectSiteLoop::run`]; with the selector on BLOCK every
    /// iteration traps.
    pub unsafe fn run(&self, iterations: u64, nr: u64) -> i64 {
        // SAFETY: the mapping holds the System V loop above and lives as long as `self`.
        let f: LoopFn = unsafe { std::mem::transmute::<*const u8, LoopFn>(self.code.as_ptr()) };
        f(iterations, nr)
    }
}

/// A loop of flip pairs (BLOCK then ALLOW): the cost of crossing into a
/// translated block and back. Leaves the selector on ALLOW.
#[derive(Debug)]
pub struct FlipPairLoop<'c> {
    entry: usize,
    _cache: PhantomData<&'c CodeCache>,
}

impl<'c> FlipPairLoop<'c> {
    /// Emits the loop into `cache`.
    pub fn new(cache: &'c CodeCache, access: SelectorAccess) -> Result<Self, Error> {
        let block = selector_flip(access, Selector::Block)?;
        let allow = selector_flip(access, Selector::Allow)?;
        let entry = cache.emit_with(|rip| {
            let mut a = VecAssembler::<X64Relocation>::new(rip);
            dynasm!(a ; .arch x64 ; test rdi, rdi ; jz >done ; top:);
            a.extend(block.iter());
            a.extend(allow.iter());
            dynasm!(a ; .arch x64 ; dec rdi ; jnz <top ; done: ; xor eax, eax ; ret);
            a.finalize().map_err(|e| Error::Encode(e.to_string()))
        })?;
        Ok(FlipPairLoop {
            entry,
            _cache: PhantomData,
        })
    }

    /// Runs `iterations` flip pairs.
    pub fn run(&self, iterations: u64) {
        // SAFETY: the loop only stores 1 then 0 into this thread's selector
        // (values the kernel accepts), follows the System V ABI and lives
        // in the cache `self` borrows.
        let f: LoopFn = unsafe { std::mem::transmute::<usize, LoopFn>(self.entry) };
        f(iterations, 0);
    }
}

/// Copies `bytes` into a fresh mapping outside any cache and makes it
/// read-execute (never writable and executable at once).
pub(crate) fn executable(bytes: &[u8]) -> Result<Mmap, Error> {
    let os = |op| {
        move |e: std::io::Error| Error::Os {
            op,
            errno: e.raw_os_error().unwrap_or(0),
        }
    };
    let mut map =
        MmapMut::map_anon(bytes.len().max(1)).map_err(os("mmap(code outside the cache)"))?;
    map[..bytes.len()].copy_from_slice(bytes);
    map.make_exec()
        .map_err(os("mprotect(code outside the cache)"))
}
