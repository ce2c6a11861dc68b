//! Test support: the engine installs once per process, so every test that
//! installs it runs its body in a forked child and checks how it ended.
#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Killed(i32),
}

/// Runs `body` in a forked child and returns how the child ended. A panic in
/// the child (a failed assertion) ends it with exit code 101.
pub fn in_child(body: impl FnOnce()) -> Ended {
    // SAFETY: the child only runs `body` and then _exit()s; glibc's fork
    // resets malloc's locks in the child, so the test harness's other threads
    // cannot leave it holding one.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = match catch_unwind(AssertUnwindSafe(body)) {
            Ok(()) => 0,
            Err(_) => 101,
        };
        // SAFETY: _exit ends the child without running the parent's atexit
        // handlers or flushing buffers it shares with the parent.
        unsafe { libc::_exit(code) };
    }
    wait_for(pid)
}

/// Waits for child `pid` and says how it ended.
pub fn wait_for(pid: libc::pid_t) -> Ended {
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid failed");
    if libc::WIFEXITED(status) {
        Ended::Exited(libc::WEXITSTATUS(status))
    } else {
        Ended::Killed(libc::WTERMSIG(status))
    }
}

/// Runs `body` in a child and fails the test unless it exits 0.
pub fn child_passes(body: impl FnOnce()) {
    assert_eq!(
        in_child(body),
        Ended::Exited(0),
        "the child's assertions failed (see its output above)"
    );
}

/// An anonymous mapping for test code, written while RW and executed while
/// RX (never both).
pub struct CodePages {
    pub base: usize,
    pub len: usize,
}

impl CodePages {
    pub fn new(pages: usize) -> Self {
        let len = pages * 4096;
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        CodePages {
            base: base as usize,
            len,
        }
    }

    /// Writes `bytes` at `addr` (inside the mapping), keeping W^X.
    pub fn write(&self, addr: usize, bytes: &[u8]) {
        assert!(addr >= self.base && addr + bytes.len() <= self.base + self.len);
        // SAFETY: the range lies inside our own mapping; no code in it runs
        // while it is writable (the test thread is the only user).
        unsafe {
            assert_eq!(
                libc::mprotect(
                    self.base as *mut _,
                    self.len,
                    libc::PROT_READ | libc::PROT_WRITE
                ),
                0
            );
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len());
            assert_eq!(
                libc::mprotect(
                    self.base as *mut _,
                    self.len,
                    libc::PROT_READ | libc::PROT_EXEC
                ),
                0
            );
        }
    }
}

/// x86-64 machine code `mov eax, nr; syscall; ret`: a foreign syscall site
/// whose syscall instruction ends 7 bytes after the start.
#[cfg(target_arch = "x86_64")]
pub fn syscall_stub(nr: u32) -> Vec<u8> {
    let mut code = vec![0xb8];
    code.extend_from_slice(&nr.to_le_bytes());
    code.extend_from_slice(&[0x0f, 0x05, 0xc3]);
    code
}

/// Offset of the first byte after the syscall instruction in [`syscall_stub`].
#[cfg(target_arch = "x86_64")]
pub const STUB_AFTER_SYSCALL: usize = 7;

/// Calls code at `addr` as `extern "C" fn() -> i64`.
pub fn call_code(addr: usize) -> i64 {
    // SAFETY: callers pass the address of a complete stub written with
    // CodePages::write that ends in `ret` and follows the C ABI.
    let f: extern "C" fn() -> i64 = unsafe { std::mem::transmute(addr) };
    f()
}

/// Disables core dumps for this (child) process, so death by signal is quick.
pub fn no_core_dumps() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit with a valid struct.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
}

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
