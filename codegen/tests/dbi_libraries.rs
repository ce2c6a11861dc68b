//! Real libraries run translated: zlib, libcrypto (SHA-256), sqlite3,
//! iconv (glibc loads a gconv module), and C++ (exceptions unwinding
//! through translated frames, virtual calls, std::sort, std::map), built
//! here from tests/corpus/dbi_libraries.c and dbi_cxx.cpp. Each function
//! gives the same result natively and translated (twice: cold and warm).
//! Skips, saying so, when a library's headers are not installed (CI
//! installs zlib1g-dev libsqlite3-dev libssl-dev g++).
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use sud_codegen::dbi::Dbi;
use sud_codegen::CodeCache;
use sud_engine::Engine;

fn build(source: &str, cxx: bool, libs: &[&str]) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dbi-libraries-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(source);
    let lib = dir.join(format!("lib{source}.so"));
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .cpp(cxx)
        .target("x86_64-unknown-linux-gnu")
        .host("x86_64-unknown-linux-gnu")
        .opt_level(2)
        .get_compiler();
    let out = compiler
        .to_command()
        .args(
            ["-shared", "-fPIC", "-w", "-std=gnu++17"]
                .iter()
                .filter(|a| cxx || !a.contains("++")),
        )
        .arg("-o")
        .arg(&lib)
        .arg(&src)
        .args(libs)
        .output()
        .expect("a C compiler");
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        // CI installs the libraries (.ci/run): there a missing one is a
        // failure, not a skip that would count as a pass.
        assert!(
            std::env::var_os("CI").is_none(),
            "{source} does not build (missing headers or libraries?):\n{why}"
        );
        eprintln!(
            "skipped {source}: it does not build here (missing headers or libraries?):\n{why}"
        );
        return None;
    }
    Some(lib)
}

fn open(lib: &Path) -> usize {
    let path = CString::new(lib.to_str().unwrap()).unwrap();
    // SAFETY: dlopen with a valid path; the libraries' constructors are
    // the system libraries' own.
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

fn same_results(functions: Vec<(&'static str, usize)>) {
    child_passes(move || {
        let cache: &'static CodeCache = Box::leak(Box::new(
            CodeCache::new(sud_codegen::DEFAULT_CAPACITY).unwrap(),
        ));
        Engine::builder()
            .placement(cache.placement())
            .install()
            .unwrap();
        let dbi = Dbi::builder().install(cache).unwrap();
        for (name, f) in functions {
            // SAFETY: these are `long f(void)`.
            let native = unsafe { std::mem::transmute::<usize, extern "C" fn() -> i64>(f) }();
            for run in 0..2 {
                // SAFETY: as above.
                let translated = unsafe { dbi.call(f, &[]) }.unwrap() as i64;
                assert_eq!(translated, native, "{name}, translated run {run}");
            }
            eprintln!(
                "{name}: {native} natively and translated; {:?}",
                dbi.counters()
            );
        }
    });
}

#[test]
fn zlib_libcrypto_sqlite3_and_iconv_give_native_results() {
    let Some(lib) = build("dbi_libraries.c", false, &["-lz", "-lsqlite3", "-lcrypto"]) else {
        return;
    };
    let handle = open(&lib);
    let names = [
        "zlib_roundtrip",
        "sha256_digest",
        "sqlite_inserts",
        "iconv_latin1",
    ];
    same_results(names.iter().map(|&n| (n, symbol(handle, n))).collect());
}

#[test]
fn cxx_exceptions_virtual_calls_and_containers_give_native_results() {
    let Some(lib) = build("dbi_cxx.cpp", true, &[]) else {
        return;
    };
    let handle = open(&lib);
    let names = ["cxx_exceptions", "cxx_virtual_sort_map"];
    same_results(names.iter().map(|&n| (n, symbol(handle, n))).collect());
}
