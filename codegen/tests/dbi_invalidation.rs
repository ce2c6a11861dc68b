//! Code that changes under the translator (tests/corpus/dbi_changing.c):
//! JIT pages rewritten and reused, W^X flips, a library's text rewritten
//! in place, an inline hook installed and removed at run time, a library
//! unloaded and another loaded at its base. Each runs natively and then
//! translated, with the same result; and the translator's own view of it
//! (blocks invalidated, writes caught by the entry check, dead code
//! reclaimed) is checked too.
#![cfg(target_arch = "x86_64")]

mod common;
#[path = "corpus/compile.rs"]
mod corpus;

use common::*;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use sud_codegen::dbi::Dbi;
use sud_codegen::CodeCache;
use sud_engine::Engine;

fn build_dir() -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dbi-changing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name)
}

/// The changing-code library, compiled and opened once per test process
/// (before any fork).
fn changing() -> usize {
    static HANDLE: OnceLock<usize> = OnceLock::new();
    *HANDLE.get_or_init(|| {
        let lib = build_dir().join("libdbi_changing.so");
        corpus::compile_shared_library(&source("dbi_changing.c"), &lib);
        open(&lib)
    })
}

/// Two builds of the same source differing in one constant.
fn swap_libraries() -> &'static [PathBuf; 2] {
    static LIBS: OnceLock<[PathBuf; 2]> = OnceLock::new();
    LIBS.get_or_init(|| {
        [1, 2].map(|value| {
            let lib = build_dir().join(format!("libdbi_swap{value}.so"));
            let define = format!("-DVALUE={value}");
            corpus::compile_shared_library_with(&source("dbi_swap.c"), &lib, &[&define]);
            lib
        })
    })
}

fn open(lib: &Path) -> usize {
    let path = CString::new(lib.to_str().unwrap()).unwrap();
    // SAFETY: dlopen with a valid path; these libraries have no constructors.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
    assert!(!handle.is_null(), "dlopen {}", lib.display());
    handle as usize
}

fn symbol(handle: usize, name: &str) -> usize {
    let cname = CString::new(name).unwrap();
    // SAFETY: dlsym on a live handle with a valid name.
    let addr = unsafe { libc::dlsym(handle as *mut libc::c_void, cname.as_ptr()) } as usize;
    assert_ne!(addr, 0, "{name} not found");
    addr
}

fn call_native(addr: usize) -> i64 {
    // SAFETY: the functions under test are `long f(void)`.
    let f: extern "C" fn() -> i64 = unsafe { std::mem::transmute(addr) };
    f()
}

fn install() -> (&'static Engine, &'static Dbi) {
    let cache: &'static CodeCache = Box::leak(Box::new(
        CodeCache::new(sud_codegen::DEFAULT_CAPACITY).unwrap(),
    ));
    let engine = Engine::builder()
        .placement(cache.placement())
        .install()
        .unwrap();
    (engine, Dbi::builder().install(cache).unwrap())
}

/// Runs `name` natively, then translated twice (the second time over
/// translations the first run left), and returns the native result.
fn same_translated(dbi: &Dbi, name: &str) -> i64 {
    let f = symbol(changing(), name);
    let native = call_native(f);
    for run in 0..2 {
        // SAFETY: `long f(void)`.
        let translated = unsafe { dbi.call(f, &[]) }.unwrap() as i64;
        assert_eq!(translated, native, "{name}, translated run {run}");
    }
    native
}

#[test]
fn a_jit_page_rewritten_and_reused_runs_its_new_code() {
    let handle = changing();
    child_passes(move || {
        let _ = handle;
        let (engine, dbi) = install();
        let traps = engine.counters().traps;
        assert_eq!(same_translated(dbi, "jit_reuse"), 1_107_003_307_042);
        let c = dbi.counters();
        // The RWX page's blocks check their bytes; rewriting it is caught.
        assert!(c.checked_blocks > 0 && c.stale > 0, "{c:?}");
        assert!(c.invalidated > 0, "{c:?}");
        assert_eq!((c.native_blocks, c.native_entries), (0, 0), "{c:?}");
        assert_eq!(engine.counters().traps, traps);
    });
}

#[test]
fn a_wx_flip_retranslates_on_each_protection_change() {
    let handle = changing();
    child_passes(move || {
        let _ = handle;
        let (_engine, dbi) = install();
        assert_eq!(same_translated(dbi, "wx_flip"), 12_024);
        let c = dbi.counters();
        // Read-execute pages are trusted: no entry check, mprotect did it.
        assert!(c.invalidated >= 2 && c.stale == 0, "{c:?}");
    });
}

#[test]
fn a_cached_return_into_code_that_changed_lands_in_its_new_translation() {
    let handle = changing();
    child_passes(move || {
        let _ = handle;
        let (_engine, dbi) = install();
        // 16 16 16, 26 26 26, 36 36 36.
        assert_eq!(
            same_translated(dbi, "wx_return_target"),
            161_616_262_626_363_636
        );
        let c = dbi.counters();
        assert!(c.invalidated >= 2, "{c:?}");
    });
}

#[test]
fn a_library_rewriting_its_own_text_in_place_runs_the_new_bytes() {
    let handle = changing();
    child_passes(move || {
        let _ = handle;
        let (_engine, dbi) = install();
        assert_eq!(same_translated(dbi, "in_place_rewrite"), 1231);
        let c = dbi.counters();
        assert!(c.invalidated > 0 && c.stale > 0, "{c:?}");
    });
}

#[test]
fn a_hotpatch_installed_at_run_time_is_followed_and_removed() {
    let handle = changing();
    child_passes(move || {
        let _ = handle;
        let (_engine, dbi) = install();
        // before: (2+3)+(3+4); hooked: (1000+2000)+(2000+3000); after: 12
        assert_eq!(
            same_translated(dbi, "hotpatch"),
            12 * 1_000_000 + 8000 * 10 + 12
        );
    });
}

/// A library unloaded by translated code and another loaded at the same
/// base: its translations must not survive the `munmap`s of `dlclose`.
#[test]
fn dlclose_then_dlopen_of_another_library_at_the_same_base() {
    let [first, second] = swap_libraries().clone();
    child_passes(move || {
        let (_engine, dbi) = install();
        // SAFETY: dlsym with RTLD_DEFAULT and a valid name.
        let dlclose = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"dlclose".as_ptr()) } as usize;
        let a = open(&first);
        let fa = symbol(a, "swap_value");
        // SAFETY: `long f(void)`, then `int dlclose(void *)` on a live handle.
        unsafe {
            assert_eq!(dbi.call(fa, &[]).unwrap(), 8);
            assert_eq!(dbi.call(dlclose, &[a as u64]).unwrap(), 0);
        }
        assert!(dbi.counters().invalidated > 0, "{:?}", dbi.counters());
        assert_eq!(dbi.translation_of(fa), None);
        let b = open(&second);
        let fb = symbol(b, "swap_value");
        assert_eq!(
            fb, fa,
            "the second library was not loaded at the first one's base"
        );
        // SAFETY: `long f(void)`.
        assert_eq!(unsafe { dbi.call(fb, &[]) }.unwrap(), 15);
    });
}

/// Host code changes code the translator cannot see change: the embedder
/// says so, through `note_memory_change` (what its hooks would call) or
/// `invalidate`; dead translations are reclaimed once no thread is in them.
#[test]
fn host_side_changes_are_noted_and_dead_code_is_reclaimed() {
    child_passes(|| {
        let (_engine, dbi) = install();
        // SAFETY: a fresh anonymous mapping, written and run only here.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        let at = page as usize;
        let args = [
            0,
            4096,
            (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64,
            0,
            0,
            0,
        ];
        dbi.note_memory_change(libc::SYS_mmap as u64, &args, at as i64);
        let write = |value: u8| {
            // SAFETY: our own RWX page: mov eax, value; ret.
            unsafe {
                std::ptr::copy_nonoverlapping([0xb8, value, 0, 0, 0, 0xc3].as_ptr(), page.cast(), 6)
            }
        };
        write(1);
        // SAFETY: the page holds a complete `long f(void)`.
        assert_eq!(unsafe { dbi.call(at, &[]) }.unwrap(), 1);
        write(2);
        // SAFETY: as above.
        assert_eq!(unsafe { dbi.call(at, &[]) }.unwrap(), 2);
        assert!(dbi.counters().stale >= 1);
        // Explicit invalidation and flush.
        assert_eq!(dbi.invalidate(at..at + 4096), 1);
        assert_eq!(dbi.translation_of(at), None);
        // SAFETY: as above.
        assert_eq!(unsafe { dbi.call(at, &[]) }.unwrap(), 2);
        assert!(dbi.flush() >= 1);
        // SAFETY: as above.
        assert_eq!(unsafe { dbi.call(at, &[]) }.unwrap(), 2);
        // Every call returned to host code: nothing is inside dead code.
        let c = dbi.counters();
        assert!(c.reclaimed_bytes > 0, "{c:?}");
    });
}
