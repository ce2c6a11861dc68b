//! Compiles the DBI corpus (`dbi_corpus.c`, next to this file) into a shared
//! library. Shared by codegen's tests and bench and by the examples' tests
//! of dbi-run, each of which includes this file with `#[path]` (and uses
//! only some of it).
#![allow(dead_code)]

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
