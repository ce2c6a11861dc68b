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
    report_child_panics_without_locks();
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

/// What every test that forks calls first: a child must not inherit a
/// lock or a `Once` that another harness thread was holding at the fork
/// (see [`report_child_panics_without_locks`]).
pub fn before_fork() {
    report_child_panics_without_locks();
}

/// Installs, once and before any fork, a panic hook that reports a child's
/// panic with one raw write. The default hook takes the backtrace and
/// stderr locks, and setting a hook in the child takes the hook lock: any
/// of them may have been held by another harness thread at the fork, and
/// the child would hang. The parent's panics still go to the harness's hook.
fn report_child_panics_without_locks() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    static PARENT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
    INSTALL.call_once(|| {
        // SAFETY: getpid has no preconditions.
        PARENT.store(
            unsafe { libc::getpid() },
            std::sync::atomic::Ordering::Relaxed,
        );
        let harness = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // SAFETY: getpid has no preconditions.
            if unsafe { libc::getpid() } == PARENT.load(std::sync::atomic::Ordering::Relaxed) {
                return harness(info);
            }
            let msg = format!("child process: {info}\n");
            // SAFETY: writing a valid buffer to stderr.
            unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
        }));
        // The engine's panic hook goes in now too, before any fork: set in
        // a child, it would wait for a lock a panicking thread of the
        // parent held at the fork.
        sud_engine::abort_on_hook_panic();
    });
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

/// One classic-BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
pub const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
pub const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
pub const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

/// Installs a seccomp filter that answers syscall `nr` (optionally only when
/// its first argument equals `arg0`) with `action`, and allows the rest.
/// Irreversible: call it in a child process.
pub fn seccomp_on(nr: u32, arg0: Option<u32>, action: u32) {
    let ld = |k| BpfInsn {
        code: BPF_LD_W_ABS,
        jt: 0,
        jf: 0,
        k,
    };
    let ret = |k| BpfInsn {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k,
    };
    let prog: Vec<BpfInsn> = match arg0 {
        None => vec![
            ld(0),
            BpfInsn {
                code: BPF_JEQ_K,
                jt: 0,
                jf: 1,
                k: nr,
            },
            ret(action),
            ret(SECCOMP_RET_ALLOW),
        ],
        Some(a) => vec![
            ld(0),
            BpfInsn {
                code: BPF_JEQ_K,
                jt: 0,
                jf: 3,
                k: nr,
            },
            ld(16), // low half of args[0] (little endian)
            BpfInsn {
                code: BPF_JEQ_K,
                jt: 0,
                jf: 1,
                k: a,
            },
            ret(action),
            ret(SECCOMP_RET_ALLOW),
        ],
    };
    #[repr(C)]
    struct Fprog {
        len: u16,
        filter: *const BpfInsn,
    }
    let fprog = Fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    // SAFETY: prctl/seccomp with a valid program that outlives the call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::syscall(
                libc::SYS_seccomp,
                1, /* SET_MODE_FILTER */
                0,
                &fprog as *const Fprog
            ),
            0
        );
    }
}

/// Sets a signal handler with libc's sigaction (through whatever
/// personality the thread is in) and returns the previous action.
pub fn set_handler(sig: i32, handler: usize, flags: i32, block_all: bool) -> libc::sigaction {
    // SAFETY: sigaction with zeroed (valid) structs and a handler address
    // supplied by the test.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler;
        act.sa_flags = flags;
        if block_all {
            libc::sigfillset(&mut act.sa_mask);
        } else {
            libc::sigemptyset(&mut act.sa_mask);
        }
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(sig, &act, &mut old), 0);
        old
    }
}

/// Reads a hex mask line ("SigBlk:", "SigCgt:") of /proc/thread-self/status.
pub fn proc_status_mask(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    u64::from_str_radix(line[field.len()..].trim(), 16).unwrap()
}

pub fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// A pipe: (read end, write end).
pub fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into a valid array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

/// One read of what `fd` has (up to 256 bytes; empty at end of file).
pub fn read_available(fd: i32) -> Vec<u8> {
    let mut buf = [0u8; 256];
    // SAFETY: reading into a local buffer of its size.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    buf[..n.max(0) as usize].to_vec()
}

/// What [`engine_answering_getppid`]'s hook makes getppid return.
pub const GETPPID_MARKER: i64 = -77;

/// Installs an engine whose only watched syscall, getppid, is answered with
/// [`GETPPID_MARKER`]: a trapped (or direct) getppid is then recognisable.
pub fn engine_answering_getppid() -> &'static sud_engine::Engine {
    use sud_engine::{Engine, SyscallSet, Sysno, Verdict};
    Engine::builder()
        .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
        .pre_hook(|_| Verdict::Return(GETPPID_MARKER))
        .install()
        .unwrap()
}
