//! Compiles the DBI corpus (`dbi_corpus.c`, next to this file) into a shared
//! library. Shared by codegen's tests and bench and by the examples' tests
//! of dbi-run, each of which includes this file with `#[path]` (and uses
//! only some of it).
#![allow(dead_code)]

use std::ffi::CString;
use std::path::{Path, PathBuf};

/// The corpus source, given the including crate's manifest directory.
pub fn corpus_source(manifest_dir: &str) -> PathBuf {
    let here = Path::new(manifest_dir);
    let in_codegen = here.join("tests/corpus/dbi_corpus.c");
    if in_codegen.exists() {
        in_codegen
    } else {
        here.join("../codegen/tests/corpus/dbi_corpus.c")
    }
}

/// Compiles `source` into the shared library `lib` with the C compiler the
/// `cc` crate finds, optimised as a release build would be.
pub fn compile_shared_library(source: &Path, lib: &Path) {
    compile_shared_library_with(source, lib, &[]);
}

/// [`compile_shared_library`] with extra compiler arguments (`-DNAME=1`).
pub fn compile_shared_library_with(source: &Path, lib: &Path, extra: &[&str]) {
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .target("x86_64-unknown-linux-gnu")
        .host("x86_64-unknown-linux-gnu")
        .opt_level(2)
        .get_compiler();
    let status = compiler
        .to_command()
        .args(["-shared", "-fPIC", "-pthread", "-w"])
        .args(extra)
        .arg("-o")
        .arg(lib)
        .arg(source)
        .arg("-lm")
        .status()
        .expect("a C compiler");
    assert!(status.success(), "compiling {}", source.display());
}

/// Compiles `tests/corpus/NAME.c` of the including crate into a shared
/// library in its test scratch directory and loads it: the `dlopen`
/// handle (a test keeps it for the process's life, in a `OnceLock`).
pub fn load_library(manifest_dir: &str, scratch: &str, name: &str) -> usize {
    let dir = Path::new(scratch).join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lib = dir.join(format!("lib{name}.so"));
    let source = Path::new(manifest_dir).join(format!("tests/corpus/{name}.c"));
    compile_shared_library(&source, &lib);
    let path = CString::new(lib.to_str().unwrap()).unwrap();
    // SAFETY: dlopen with a valid path; the corpus libraries have no
    // constructors.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
    assert!(!handle.is_null(), "dlopen {}", lib.display());
    handle as usize
}

/// The address of `name` in a library [`load_library`] loaded.
pub fn symbol_in(handle: usize, name: &str) -> usize {
    let cname = CString::new(name).unwrap();
    // SAFETY: dlsym on a live handle with a valid name.
    let addr = unsafe { libc::dlsym(handle as *mut libc::c_void, cname.as_ptr()) };
    assert!(!addr.is_null(), "{name} not found");
    addr as usize
}
