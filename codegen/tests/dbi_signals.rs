//! Signals landing in translated code (tests/corpus/dbi_signals.c): the
//! handler sees the native pc and registers, runs translated, and what it
//! writes into the context takes effect in native terms. Each function
//! runs natively (before the engine is installed) and then translated, in
//! one child process, with the same result.
#![cfg(target_arch = "x86_64")]

mod common;
#[path = "corpus/compile.rs"]
mod corpus;

use common::*;
use std::ffi::CString;
use std::path::Path;
use std::sync::OnceLock;
use sud_codegen::dbi::Dbi;
use sud_engine::Engine;

/// The library, compiled and opened once per test process (before any
/// fork).
fn signals_library() -> usize {
    static HANDLE: OnceLock<usize> = OnceLock::new();
    *HANDLE.get_or_init(|| {
        corpus::load_library(
            env!("CARGO_MANIFEST_DIR"),
            env!("CARGO_TARGET_TMPDIR"),
            "dbi_signals",
        )
    })
}

fn symbol(name: &str) -> usize {
    corpus::symbol_in(signals_library(), name)
}

fn call_native(name: &str) -> i64 {
    // SAFETY: the library's test functions are `long f(void)`.
    let f: extern "C" fn() -> i64 = unsafe { std::mem::transmute(symbol(name)) };
    f()
}

fn install() -> &'static Dbi {
    install_with(Dbi::builder())
}

fn install_with(builder: sud_codegen::dbi::DbiBuilder) -> &'static Dbi {
    let engine = Engine::builder().foreign_signal_handlers(true);
    builder.install_with_engine(engine).unwrap().1
}

fn call_translated(dbi: &Dbi, name: &str) -> i64 {
    // SAFETY: `long f(void)`.
    unsafe { dbi.call(symbol(name), &[]) }.unwrap() as i64
}

#[test]
fn a_sigsegv_probe_handler_sees_the_probe_pc_and_its_new_pc_takes_effect() {
    signals_library();
    child_passes(|| {
        let native = call_native("probe_segv");
        // 42, fault, 42, fault; two faults, both at the probe's pc and
        // stack pointer.
        assert_eq!(native, 4_214_210_222, "native run");
        let dbi = install();
        let translated = call_translated(dbi, "probe_segv");
        assert_eq!(translated, native);
        // SAFETY: `void *segv_handler(void)`.
        let handler: extern "C" fn() -> usize =
            unsafe { std::mem::transmute(symbol("segv_handler")) };
        assert!(
            dbi.translation_of(handler()).is_some(),
            "the handler ran translated"
        );
        let c = dbi.counters();
        assert_eq!(c.native_frames, 2, "{c:?}");
        // The frames' restorer runs native (its rt_sigreturn must trap).
        assert_eq!(c.native_blocks, 1, "{c:?}");
    });
}

#[test]
fn a_sigsegv_handler_that_siglongjmps_out_resumes_translated_code() {
    signals_library();
    child_passes(|| {
        let native = call_native("probe_longjmp");
        assert_eq!(native, 797_921, "native run");
        let dbi = install();
        let translated = call_translated(dbi, "probe_longjmp");
        assert_eq!(translated, native);
        let c = dbi.counters();
        assert_eq!(c.native_frames, 2, "{c:?}");
    });
}

#[test]
fn a_signal_during_a_blocking_syscall_shows_the_syscall_instruction_or_the_one_after() {
    signals_library();
    child_passes(|| {
        let restarted = call_native("blocked_read_restarted");
        let interrupted = call_native("blocked_read_interrupted");
        // The byte read after the restart; EINTR without SA_RESTART; the
        // stack pointer plausible in both.
        assert_eq!(restarted / 1000, 101, "native: {restarted}");
        assert_eq!(interrupted / 1000, 11, "native: {interrupted}");
        let dbi = install();
        assert_eq!(call_translated(dbi, "blocked_read_restarted"), restarted);
        assert_eq!(
            call_translated(dbi, "blocked_read_interrupted"),
            interrupted
        );
        let c = dbi.counters();
        assert_eq!(c.native_frames, 2, "{c:?}");
    });
}

#[test]
fn backtrace_from_a_handler_in_translated_code_crosses_the_signal_frame() {
    signals_library();
    child_passes(|| {
        let native = call_native("backtrace_in_handler");
        // SAFETY: `unsigned long backtrace_hash(void)`.
        let hash: extern "C" fn() -> u64 = unsafe { std::mem::transmute(symbol("backtrace_hash")) };
        let native_hash = hash();
        // bt_outer(10) = ((11 + 1) * 3 + 1) * 5 + 2; the leaf and both
        // callers found by name.
        assert_eq!(native / 1000, 187, "native result");
        assert_eq!(native % 10, 7, "native names");
        let dbi = install();
        let translated = call_translated(dbi, "backtrace_in_handler");
        assert_eq!(translated, native);
        assert_eq!(hash(), native_hash, "the same frames at the same offsets");
        assert_eq!(dbi.counters().native_frames, 1, "{:?}", dbi.counters());
    });
}

#[test]
fn a_timer_signal_storm_over_a_translated_loop_leaves_its_result_intact() {
    signals_library();
    child_passes(|| {
        let native = call_native("alarm_storm");
        let dbi = install();
        let translated = call_translated(dbi, "alarm_storm");
        let ticks = call_native("alarm_ticks");
        assert_eq!(translated, native);
        assert!(ticks >= 20, "only {ticks} timer signals arrived");
        let c = dbi.counters();
        assert!(c.native_frames > 0, "{c:?}");
        eprintln!("{ticks} timer signals: {c:?}");
    });
}

#[test]
fn a_timer_signal_storm_over_counted_blocks_leaves_results_and_counts_intact() {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static BLOCKS: AtomicU64 = AtomicU64::new(0);
    signals_library();
    child_passes(|| {
        let native = call_native("alarm_storm");
        // Counters before every instruction: where the flags are live they
        // are several instructions of glue a signal may land in.
        let dbi = install_with(Dbi::builder().transformer(|block| {
            while block.next().is_some() {
                block.put_counter(&BLOCKS, 1);
                block.keep();
            }
        }));
        assert_eq!(
            call_translated(dbi, "storm_loop"),
            native,
            "without signals"
        );
        let translated = call_translated(dbi, "alarm_storm");
        let c = dbi.counters();
        assert_eq!(translated, native, "{c:?}");
        assert!(c.native_frames + c.cache_frames >= 20, "{c:?}");
        assert!(BLOCKS.load(Relaxed) > 6_000_000, "{c:?}");
        eprintln!("{c:?}");
    });
}

/// tests/corpus/dbi_cxx_signals.cpp, built with the C++ compiler; None (a
/// skip) where it does not build, except under CI.
fn cxx_signals_library() -> Option<usize> {
    static HANDLE: OnceLock<Option<usize>> = OnceLock::new();
    *HANDLE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("dbi-signals-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lib = dir.join("libdbi_cxx_signals.so");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/dbi_cxx_signals.cpp");
        let compiler = cc::Build::new()
            .cargo_metadata(false)
            .cpp(true)
            .target("x86_64-unknown-linux-gnu")
            .host("x86_64-unknown-linux-gnu")
            .opt_level(2)
            .get_compiler();
        let out = compiler
            .to_command()
            .args(["-shared", "-fPIC", "-w", "-fnon-call-exceptions", "-o"])
            .arg(&lib)
            .arg(&source)
            .output()
            .expect("a C++ compiler");
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            assert!(std::env::var_os("CI").is_none(), "does not build:\n{why}");
            eprintln!("skipped: dbi_cxx_signals.cpp does not build here:\n{why}");
            return None;
        }
        let path = CString::new(lib.to_str().unwrap()).unwrap();
        // SAFETY: dlopen with a valid path; the library's constructors are
        // libstdc++'s own.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
        assert!(!handle.is_null(), "dlopen {}", lib.display());
        Some(handle as usize)
    })
}

#[test]
fn a_cxx_exception_thrown_from_a_handler_unwinds_through_the_signal_frame() {
    let Some(handle) = cxx_signals_library() else {
        return;
    };
    child_passes(move || {
        let cname = CString::new("throw_from_handler").unwrap();
        // SAFETY: dlsym on a live handle with a valid name.
        let f = unsafe { libc::dlsym(handle as *mut libc::c_void, cname.as_ptr()) } as usize;
        assert_ne!(f, 0);
        // SAFETY: `long f(void)`.
        let native_fn: extern "C" fn() -> i64 = unsafe { std::mem::transmute(f) };
        let native = native_fn();
        // 6 + 6, two faults caught.
        assert_eq!(native, 122, "native run");
        let dbi = install();
        // SAFETY: `long f(void)`.
        let translated = unsafe { dbi.call(f, &[]) }.unwrap() as i64;
        assert_eq!(translated, native);
        let c = dbi.counters();
        assert_eq!(c.native_frames, 2, "{c:?}");
    });
}
