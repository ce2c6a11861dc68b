//! `sud-loader`: runs a program under the tools from its first
//! instruction (see `sud_examples::loader`). Started by the tools, never
//! by hand. `no_main`: Rust's runtime start would reopen closed standard
//! descriptors and ignore SIGPIPE, which the program would inherit.
// (Under `cargo test` the harness brings its own main.)
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
use std::ffi::{c_char, c_int};

/// glibc's `__libc_start_main` calls this with the process's argv and envp.
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: c_int, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
    // SAFETY: argv and envp are the ones the C runtime received.
    unsafe { sud_examples::loader::main(argc, argv, envp) }
}
