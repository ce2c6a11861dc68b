//! Test support: the engine's fork-per-test helpers (the engine installs
//! once per process) plus what the code generation tests add.
#![allow(dead_code)]

#[path = "../../../engine/tests/common/mod.rs"]
mod engine_common;
pub use engine_common::*;

/// A code cache the engine can keep for the rest of the (child) process.
pub fn leaked_cache() -> &'static sud_codegen::CodeCache {
    Box::leak(Box::new(
        sud_codegen::CodeCache::new(sud_codegen::DEFAULT_CAPACITY).expect("reserve code cache"),
    ))
}

/// Assembles x86-64 code at `rip` with dynasm (labels resolved).
pub fn assemble(
    rip: usize,
    body: impl FnOnce(&mut dynasmrt::VecAssembler<dynasmrt::x64::X64Relocation>),
) -> Vec<u8> {
    let mut a = dynasmrt::VecAssembler::new(rip);
    body(&mut a);
    a.finalize().expect("assemble")
}

/// Copies `bytes` into a read-execute mapping outside any code cache.
pub fn outside_cache(bytes: &[u8]) -> memmap2::Mmap {
    let mut map = memmap2::MmapMut::map_anon(bytes.len()).expect("mmap");
    map.copy_from_slice(bytes);
    map.make_exec().expect("mprotect rx")
}

/// The C-ABI function at `addr`.
///
/// # Safety
/// `addr` must hold code with that signature that outlives every call.
pub unsafe fn function<F: Copy>(addr: usize) -> F {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<usize>());
    // SAFETY: F is a function pointer type of pointer size (asserted); the
    // caller vouches for the code at `addr`.
    unsafe { std::mem::transmute_copy::<usize, F>(&addr) }
}
