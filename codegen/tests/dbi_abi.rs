//! ABI corners (tests/corpus/dbi_abi.c): `int 0x80` in translated code
//! reaches the engine's 32-bit path (the i386 table), and translated code
//! that moves its fs base with arch_prctl keeps working (the translator
//! keeps that base virtual). Each function runs
//! natively (before the engine is installed) and then translated.
#![cfg(target_arch = "x86_64")]

mod common;
#[path = "corpus/compile.rs"]
mod corpus;

use common::*;
use std::sync::OnceLock;
use sud_codegen::dbi::Dbi;
use sud_engine::Engine;

fn abi_library() -> usize {
    static HANDLE: OnceLock<usize> = OnceLock::new();
    *HANDLE.get_or_init(|| {
        corpus::load_library(
            env!("CARGO_MANIFEST_DIR"),
            env!("CARGO_TARGET_TMPDIR"),
            "dbi_abi",
        )
    })
}

fn symbol(name: &str) -> usize {
    corpus::symbol_in(abi_library(), name)
}

fn call_native(name: &str) -> i64 {
    // SAFETY: the library's test functions are `long f(void)`.
    let f: extern "C" fn() -> i64 = unsafe { std::mem::transmute(symbol(name)) };
    f()
}

fn call_translated(dbi: &Dbi, name: &str) -> i64 {
    // SAFETY: `long f(void)`.
    unsafe { dbi.call(symbol(name), &[]) }.unwrap() as i64
}

/// Whether this kernel runs 32-bit syscalls from 64-bit code at all
/// (CONFIG_IA32_EMULATION, not disabled at boot): asked in a child, which
/// a kernel without it kills.
fn has_int80() -> bool {
    in_child(|| {
        let mut r: i64 = 20;
        // SAFETY: i386 getpid: no memory touched, r8-r11 may be cleared.
        unsafe {
            std::arch::asm!("int 0x80", inout("rax") r, out("r8") _, out("r9") _,
                out("r10") _, out("r11") _)
        };
        // SAFETY: getpid has no preconditions.
        assert_eq!(r, i64::from(unsafe { libc::getpid() }));
    }) == Ended::Exited(0)
}

#[test]
fn int_0x80_in_translated_code_runs_with_the_i386_table() {
    abi_library();
    if !has_int80() {
        eprintln!("skipped: this kernel does not run int 0x80 from 64-bit code");
        return;
    }
    child_passes(|| {
        let native = call_native("int80_pids");
        assert_eq!(native, 11);
        let (engine, dbi) = Dbi::builder()
            .install_with_engine(Engine::builder())
            .unwrap();
        let before = engine.counters();
        let translated = call_translated(dbi, "int80_pids");
        let after = engine.counters();
        assert_eq!(translated, native);
        // Both reached the engine's 32-bit path (from translated code).
        assert_eq!(after.compat - before.compat, 2);
        let c = dbi.counters();
        assert_eq!(c.native_blocks, 0, "{c:?}");
        assert_eq!(c.native_entries, 0, "{c:?}");
    });
}

#[test]
fn arch_prctl_set_fs_in_translated_code_keeps_working() {
    abi_library();
    child_passes(|| {
        let native = call_native("fs_switch");
        assert_eq!(native, 1111);
        let (engine, dbi) = Dbi::builder()
            .install_with_engine(Engine::builder())
            .unwrap();
        let before = engine.counters();
        let translated = call_translated(dbi, "fs_switch");
        let after = engine.counters();
        assert_eq!(translated, native);
        // It stayed translated under the moved fs: nothing trapped (its
        // getpid was a direct call), nothing ran native.
        assert_eq!(after.traps, before.traps, "{before:?} {after:?}");
        assert!(after.direct > before.direct);
        let c = dbi.counters();
        assert_eq!(c.native_entries, 0, "{c:?}");
        // The first move dropped every translation (fs operands are
        // rewritten since); a second run is the same.
        assert!(c.flushes >= 1, "{c:?}");
        assert_eq!(call_translated(dbi, "fs_switch"), native);
    });
}
