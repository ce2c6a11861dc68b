//! `sud-loader` must be a static PIE: no dynamic loader or shared libc of
//! its own in the program's address space, and placed by the kernel away
//! from the fixed addresses a non-PIE program needs.
//!
//! Cargo has no per-binary `crt-static`, and rustc links the libc crate's
//! libraries with `-Bdynamic`, so `-static-pie` alone still finds the
//! shared objects. For that one binary the search path gets a directory
//! that holds only static archives under the names rustc asks for (ld
//! searches `-L` directories before its defaults, whatever their place on
//! the command line): `-lgcc_s` becomes libgcc_eh and libgcc.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
        || std::env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("gnu")
    {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dir = out.join("loader-static");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("OUT_DIR is writable");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let archive = |name: &str| -> Option<PathBuf> {
        let out = Command::new(&cc)
            .arg(format!("-print-file-name={name}"))
            .output()
            .ok()?;
        let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
        path.is_absolute().then_some(path)
    };
    for lib in ["c", "m", "rt", "pthread", "dl", "util"] {
        let name = format!("lib{lib}.a");
        if let Some(path) = archive(&name) {
            link(&path, &dir.join(&name));
        }
    }
    if let (Some(eh), Some(gcc)) = (archive("libgcc_eh.a"), archive("libgcc.a")) {
        let script = format!("GROUP({} {})\n", eh.display(), gcc.display());
        std::fs::write(dir.join("libgcc_s.a"), script).expect("OUT_DIR is writable");
    }
    println!("cargo:rustc-link-arg-bin=sud-loader=-L{}", dir.display());
    println!("cargo:rustc-link-arg-bin=sud-loader=-static-pie");
}

fn link(target: &Path, at: &Path) {
    std::os::unix::fs::symlink(target, at).expect("OUT_DIR is writable");
}
