//! Lazy rewriting of `mov eax, imm32; syscall` sites: a site traps once,
//! is patched, and then enters the dispatch core through its trampoline
//! with the syscall ABI kept exactly.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use sud_engine::{selector, CounterSnapshot, Engine, Selector, SyscallSet, Sysno, Verdict};

/// The register-check block: inputs, then what the site left.
#[repr(C, align(64))]
struct Block([u64; 64]);

static mut BLOCK_PTR: u64 = 0;

// Sites are 8-byte aligned (`.p2align 3` before the `mov`), so the `mov`
// fits one aligned word and is rewritable.
std::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl rw_getppid",
    "rw_getppid:",
    "mov eax, 110",
    ".globl rw_getppid_syscall",
    "rw_getppid_syscall:",
    "syscall",
    "ret",
    // getpid through the getppid site's syscall, jumped to directly.
    ".p2align 4",
    ".globl rw_jump_to_syscall",
    "rw_jump_to_syscall:",
    "mov eax, 39",
    "jmp rw_getppid_syscall",
    ".p2align 4",
    ".globl rw_gettid",
    "rw_gettid:",
    "mov eax, 186",
    "syscall",
    "ret",
    // rt_sigprocmask(how, set, oldset, size): on the deny list.
    ".p2align 4",
    ".globl rw_sigprocmask",
    "rw_sigprocmask:",
    "mov r10, rcx",
    ".p2align 3",
    "mov eax, 14",
    "syscall",
    "ret",
    // rw_regs(block): loads the inputs, fills the red zone, calls getpid
    // at an aligned site, stores every register and the red zone.
    ".p2align 4",
    ".globl rw_regs",
    "rw_regs:",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov [rip + {ptr}], rdi",
    "mov rax, rdi",
    "push qword ptr [rax + 112]",
    "popfq",
    "mov rbx, [rax]",
    "mov rbp, [rax + 8]",
    "mov r12, [rax + 16]",
    "mov r13, [rax + 24]",
    "mov r14, [rax + 32]",
    "mov r15, [rax + 40]",
    "mov rsi, [rax + 56]",
    "mov rdx, [rax + 64]",
    "mov r10, [rax + 72]",
    "mov r8, [rax + 80]",
    "mov r9, [rax + 88]",
    "movdqu xmm7, [rax + 96]",
    "vmovdqu ymm6, [rax + 120]",
    "mov rcx, 0x0101010101010101",
    "mov rdi, rcx",
    "mov [rsp - 8], rdi",
    "add rdi, rcx",
    "mov [rsp - 16], rdi",
    "add rdi, rcx",
    "mov [rsp - 24], rdi",
    "add rdi, rcx",
    "mov [rsp - 32], rdi",
    "add rdi, rcx",
    "mov [rsp - 40], rdi",
    "add rdi, rcx",
    "mov [rsp - 48], rdi",
    "add rdi, rcx",
    "mov [rsp - 56], rdi",
    "add rdi, rcx",
    "mov [rsp - 64], rdi",
    "add rdi, rcx",
    "mov [rsp - 72], rdi",
    "add rdi, rcx",
    "mov [rsp - 80], rdi",
    "add rdi, rcx",
    "mov [rsp - 88], rdi",
    "add rdi, rcx",
    "mov [rsp - 96], rdi",
    "add rdi, rcx",
    "mov [rsp - 104], rdi",
    "add rdi, rcx",
    "mov [rsp - 112], rdi",
    "add rdi, rcx",
    "mov [rsp - 120], rdi",
    "add rdi, rcx",
    "mov [rsp - 128], rdi",
    // The flags again (the adds changed them); popfq writes only below
    // the red zone's top, where rsp - 8 is then refilled.
    "mov rdi, [rax + 112]",
    "lea rsp, [rsp - 256]",
    "push rdi",
    "popfq",
    "lea rsp, [rsp + 256]",
    "mov rdi, [rax + 48]",
    ".p2align 3",
    ".globl rw_regs_site",
    "rw_regs_site:",
    "mov eax, 39",
    "syscall",
    "lea rsp, [rsp - 256]",
    "pushfq",
    "push rax",
    "mov rax, [rip + {ptr}]",
    "pop qword ptr [rax + 160]",
    "pop qword ptr [rax + 168]",
    "lea rsp, [rsp + 256]",
    "cld",
    "mov [rax + 176], rcx",
    "mov [rax + 184], r11",
    "mov [rax + 192], rbx",
    "mov [rax + 200], rbp",
    "mov [rax + 208], r12",
    "mov [rax + 216], r13",
    "mov [rax + 224], r14",
    "mov [rax + 232], r15",
    "mov [rax + 240], rdi",
    "mov [rax + 248], rsi",
    "mov [rax + 256], rdx",
    "mov [rax + 264], r10",
    "mov [rax + 272], r8",
    "mov [rax + 280], r9",
    "movdqu [rax + 288], xmm7",
    "vmovdqu [rax + 304], ymm6",
    "vzeroupper",
    "mov rcx, 0",
    "2:",
    "mov rdx, [rsp + rcx * 8 - 128]",
    "mov [rax + rcx * 8 + 336], rdx",
    "inc rcx",
    "cmp rcx, 16",
    "jne 2b",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "ret",
    // rw_many(): 256 getpid sites in a row; returns the sum of results.
    ".p2align 4",
    ".globl rw_many",
    "rw_many:",
    "push rbx",
    "xor ebx, ebx",
    ".rept 256",
    ".p2align 3",
    "mov eax, 39",
    "syscall",
    "add rbx, rax",
    ".endr",
    "mov rax, rbx",
    "pop rbx",
    "ret",
    // Sites whose `mov` crosses an aligned word: at 4, 5 and 6 mod 8,
    // each followed by a `ret` and padding (int3, one-byte and multi-byte
    // nops); at 7 mod 8 (not rewritable); at 4 mod 8 with too little
    // padding within reach (not rewritable).
    ".p2align 5",
    ".globl rw_unaligned4",
    "rw_unaligned4:",
    ".byte 0x0f, 0x1f, 0x40, 0x00",
    "mov eax, 110",
    "syscall",
    "ret",
    // getpid through rw_unaligned4's syscall, jumped to directly.
    ".globl rw_jump_to_unaligned_syscall",
    "rw_jump_to_unaligned_syscall:",
    "mov eax, 39",
    "jmp rw_unaligned4 + 9",
    ".p2align 5, 0xcc",
    ".globl rw_unaligned5",
    "rw_unaligned5:",
    ".byte 0x0f, 0x1f, 0x44, 0x00, 0x00",
    "mov eax, 110",
    "syscall",
    "ret",
    ".p2align 5, 0x90",
    ".globl rw_unaligned6",
    "rw_unaligned6:",
    ".byte 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00",
    "mov eax, 110",
    "syscall",
    "cmp rax, -4096",
    "ja 2f",
    "ret",
    ".p2align 5",
    "2:",
    "ret",
    ".p2align 5",
    ".globl rw_unaligned7",
    "rw_unaligned7:",
    ".byte 0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00",
    "mov eax, 110",
    "syscall",
    "ret",
    ".p2align 5, 0xcc",
    ".globl rw_unaligned_unpadded",
    "rw_unaligned_unpadded:",
    ".byte 0x0f, 0x1f, 0x40, 0x00",
    "mov eax, 110",
    "syscall",
    "ret",
    // Code, not padding, for more than a jmp rel8's reach.
    ".rept 70",
    "xor eax, eax",
    ".endr",
    "ud2",
    // rw_many_unaligned(): 64 getpid sites at 4 mod 8, each followed by a
    // jmp to the next over int3 padding; returns the sum of results.
    ".p2align 5",
    ".globl rw_many_unaligned",
    "rw_many_unaligned:",
    "push rbx",
    "xor ebx, ebx",
    ".rept 64",
    "jmp 2f",
    ".p2align 5, 0xcc",
    "2:",
    ".byte 0x0f, 0x1f, 0x40, 0x00",
    "mov eax, 39",
    "syscall",
    "add rbx, rax",
    ".endr",
    "mov rax, rbx",
    "pop rbx",
    "ret",
    // rw_generic(nr, a, b, c, d, e, f): glibc's syscall(2), byte for byte
    // up to its syscall (the `mov r9, [rsp+8]` at 2 mod 8).
    ".p2align 4",
    ".globl rw_generic",
    "rw_generic:",
    "mov rax, rdi",
    "mov rdi, rsi",
    "mov rsi, rdx",
    "mov rdx, rcx",
    "mov r10, r8",
    "mov r8, r9",
    ".byte 0x4c, 0x8b, 0x4c, 0x24, 0x08",
    ".globl rw_generic_syscall",
    "rw_generic_syscall:",
    "syscall",
    "ret",
    // rw_with_fs(fs, old_fs): points fs at `fs` with arch_prctl, calls
    // the getppid site, puts `old_fs` back; returns the site's result.
    // Nothing between the two arch_prctl calls uses the program's TLS.
    ".p2align 4",
    ".globl rw_with_fs",
    "rw_with_fs:",
    "push r12",
    "push r13",
    "mov r12, rsi",
    "mov rsi, rdi",
    "mov edi, 0x1002",
    "mov eax, 158",
    "syscall",
    "call rw_getppid",
    "mov r13, rax",
    "mov edi, 0x1002",
    "mov rsi, r12",
    "mov eax, 158",
    "syscall",
    "mov rax, r13",
    "pop r13",
    "pop r12",
    "ret",
    // rw_on_stack(top): calls the getppid site with rsp at `top`.
    ".p2align 4",
    ".globl rw_on_stack",
    "rw_on_stack:",
    "push rbp",
    "mov rbp, rsp",
    "mov rsp, rdi",
    "call rw_getppid",
    "mov rsp, rbp",
    "pop rbp",
    "ret",
    ptr = sym BLOCK_PTR,
);

extern "C" {
    fn rw_getppid() -> i64;
    fn rw_jump_to_syscall() -> i64;
    fn rw_gettid() -> i64;
    fn rw_sigprocmask(how: u64, set: u64, oldset: u64, size: u64) -> i64;
    fn rw_regs(block: *mut Block);
    fn rw_regs_site();
    fn rw_many() -> i64;
    fn rw_with_fs(fs: u64, old_fs: u64) -> i64;
    fn rw_unaligned4() -> i64;
    fn rw_jump_to_unaligned_syscall() -> i64;
    fn rw_unaligned5() -> i64;
    fn rw_unaligned6() -> i64;
    fn rw_unaligned7() -> i64;
    fn rw_unaligned_unpadded() -> i64;
    fn rw_many_unaligned() -> i64;
    fn rw_generic(nr: u64, a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> i64;
    fn rw_generic_syscall();
    fn rw_on_stack(top: u64) -> i64;
}

fn foreign<R>(f: impl FnOnce() -> R) -> R {
    let _foreign = selector::enter(Selector::Block);
    f()
}

/// Two armed threads run `sites` (each of its `count` sites a plain
/// getpid) 200 times each while the engine patches them; a thread that
/// ever sees a wrong result (a torn instruction) exits the child with 3.
/// All sites end patched and every call is counted once. The counters.
fn hammer_sites(sites: unsafe extern "C" fn() -> i64, count: u64) -> CounterSnapshot {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as i64;
    let engine = installed(&[]);
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                engine.arm_current_thread(Selector::Allow).unwrap();
                barrier.wait();
                let _foreign = selector::enter(Selector::Block);
                for _ in 0..200 {
                    // SAFETY: `count` plain getpid calls.
                    if unsafe { sites() } != count as i64 * pid {
                        // SAFETY: leaving at once; the parent sees the status.
                        unsafe { libc::_exit(3) };
                    }
                }
            });
        }
    });
    let c = engine.counters();
    assert_eq!(c.patched_sites, count, "{c:?}");
    assert_eq!(engine.count(Sysno::getpid), 2 * 200 * count);
    c
}

fn installed(watch: &[Sysno]) -> &'static Engine {
    Engine::builder()
        .watch(SyscallSet::from_sysnos(watch))
        .rewrite_sites(true)
        .install()
        .unwrap()
}

#[test]
fn a_site_is_patched_on_its_first_trap_then_enters_without_a_signal() {
    child_passes(|| {
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as i64;
        let engine = installed(&[]);
        let before = engine.counters();
        // SAFETY: the site is a plain getppid.
        assert_eq!(foreign(|| unsafe { rw_getppid() }), ppid);
        let once = engine.counters();
        assert_eq!(once.traps - before.traps, 1);
        assert!(once.patched_sites > before.patched_sites);
        let site = rw_getppid as *const () as usize as *const u8;
        // SAFETY: reading the function's first byte, mapped executable and readable.
        assert_eq!(
            unsafe { site.read_volatile() },
            0xe9,
            "the mov became a jmp"
        );
        for _ in 0..100 {
            // SAFETY: as above.
            assert_eq!(foreign(|| unsafe { rw_getppid() }), ppid);
        }
        let after = engine.counters();
        assert_eq!(after.rewritten - once.rewritten, 100);
        assert_eq!(engine.count(Sysno::getppid), 101);
        // Host code running the patched site takes the native path.
        // SAFETY: as above.
        assert_eq!(unsafe { rw_getppid() }, ppid);
        assert_eq!(engine.count(Sysno::getppid), 101);
    });
}

#[test]
fn rewritten_calls_run_the_hooks_and_keep_errno() {
    child_passes(|| {
        static SEEN: AtomicU64 = AtomicU64::new(0);
        let engine = Engine::builder()
            .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
            .pre_hook(|call| {
                SEEN.fetch_add(1, Relaxed);
                // A hook that calls libc writes errno.
                // SAFETY: closing an invalid fd fails harmlessly.
                unsafe { libc::close(-1) };
                Verdict::Return(call.call_addr as i64)
            })
            .rewrite_sites(true)
            .install()
            .unwrap();
        let call_addr = rw_getppid_syscall as *const () as usize as i64 + 2;
        for _ in 0..3 {
            // SAFETY: writing this thread's errno.
            unsafe { *libc::__errno_location() = 1234 };
            // SAFETY: the site is a plain getppid.
            assert_eq!(foreign(|| unsafe { rw_getppid() }), call_addr);
            // SAFETY: reading this thread's errno.
            assert_eq!(unsafe { *libc::__errno_location() }, 1234);
        }
        assert_eq!(SEEN.load(Relaxed), 3);
        let c = engine.counters();
        assert_eq!(c.rewritten, 2, "{c:?}");
    });
}

extern "C" {
    fn rw_getppid_syscall();
}

fn run_regs() -> Block {
    let mut b = Block([0; 64]);
    for (i, w) in b.0[..16].iter_mut().enumerate() {
        *w = 0x1111_0000_0000_0000 * (i as u64 % 15 + 1) + i as u64;
    }
    // CF PF AF ZF SF DF OF and the reserved bit 1.
    b.0[14] = 0x0cd7;
    // SAFETY: rw_regs reads and writes only the block and its own stack.
    unsafe { rw_regs(&mut b) };
    b
}

#[test]
fn a_rewritten_site_keeps_the_syscall_abi_registers_flags_red_zone_and_vectors() {
    if !std::arch::is_x86_feature_detected!("avx") {
        eprintln!("skipped: the CPU has no AVX (the test checks ymm6)");
        return;
    }
    child_passes(|| {
        let native = run_regs();
        let engine = installed(&[Sysno::getpid]);
        let trapped = foreign(run_regs);
        let patched = engine.counters().patched_sites;
        assert!(patched >= 1);
        let rewritten = foreign(run_regs);
        assert_eq!(engine.counters().rewritten, 1);
        let call_addr = rw_regs_site as *const () as usize as u64 + 7;
        assert_eq!(native.0[22], call_addr, "rcx natively");
        for (name, run) in [("trap", &trapped), ("rewritten", &rewritten)] {
            for i in 20..58 {
                assert_eq!(
                    run.0[i], native.0[i],
                    "{name}: word {i} differs: {:#x} natively, {:#x}",
                    native.0[i], run.0[i]
                );
            }
        }
    });
}

#[test]
fn a_jump_straight_to_the_syscall_of_a_patched_site_still_traps() {
    child_passes(|| {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() } as i64;
        let engine = installed(&[]);
        // SAFETY: the site is a plain getppid.
        foreign(|| unsafe { rw_getppid() });
        assert!(engine.counters().patched_sites >= 1);
        let before = engine.counters();
        // SAFETY: getpid through the patched site's syscall.
        assert_eq!(foreign(|| unsafe { rw_jump_to_syscall() }), pid);
        let after = engine.counters();
        assert_eq!(after.traps - before.traps, 1);
        assert_eq!(engine.count(Sysno::getpid), 1);
    });
}

#[test]
fn a_site_on_the_deny_list_keeps_trapping() {
    child_passes(|| {
        let engine = installed(&[]);
        let mut old = [0u64; 2];
        for _ in 0..3 {
            // SAFETY: a query of the mask into a valid buffer.
            let r = foreign(|| unsafe { rw_sigprocmask(0, 0, old.as_mut_ptr() as u64, 8) });
            assert_eq!(r, 0);
        }
        assert_eq!(engine.count(Sysno::rt_sigprocmask), 3);
        let site = rw_sigprocmask as *const () as usize as *const u8;
        // SAFETY: reading the function's own code: `mov r10, rcx`,
        // padding to 8, the `mov eax, 14`.
        let code = unsafe { std::slice::from_raw_parts(site, 16) };
        assert_eq!(code[8], 0xb8, "the mov is still there: {code:02x?}");
        assert_eq!(engine.counters().rewritten, 0);
    });
}

#[test]
fn two_threads_hammer_a_site_while_it_is_patched() {
    child_passes(|| {
        const CALLS: u64 = 50_000;
        let engine = installed(&[Sysno::gettid]);
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    engine.arm_current_thread(Selector::Allow).unwrap();
                    // SAFETY: gettid has no preconditions.
                    let tid = unsafe { libc::gettid() } as i64;
                    barrier.wait();
                    let _foreign = selector::enter(Selector::Block);
                    for _ in 0..CALLS {
                        // SAFETY: the site is a plain gettid.
                        let r = unsafe { rw_gettid() };
                        if r != tid {
                            // SAFETY: leaving at once; the parent sees the status.
                            unsafe { libc::_exit(3) };
                        }
                    }
                });
            }
        });
        let c = engine.counters();
        // Arming and the threads' own gettid ran with the selector on ALLOW.
        assert_eq!(engine.count(Sysno::gettid), 2 * CALLS);
        assert!(c.rewritten >= 2 * CALLS - 100, "{c:?}");
        assert!(c.patched_sites >= 1);
    });
}

/// How the engine writes code (see `rewrite.rs`): `process_vm_writev` on
/// self does not force its way through a read-only mapping, while
/// `/proc/self/mem` does, without changing the mapping's protection.
#[test]
fn code_is_writable_through_proc_self_mem_but_not_process_vm_writev() {
    child_passes(|| {
        let site = rw_gettid as *const () as usize;
        // SAFETY: reading the function's first bytes.
        let original = unsafe { (site as *const [u8; 8]).read() };
        let local = libc::iovec {
            iov_base: original.as_ptr() as *mut libc::c_void,
            iov_len: 8,
        };
        let remote = libc::iovec {
            iov_base: site as *mut libc::c_void,
            iov_len: 8,
        };
        // SAFETY: valid iovecs; the write, if it happened, would write the
        // same bytes.
        let r = unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) };
        assert_eq!(r, -1, "process_vm_writev wrote to code");
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EFAULT)
        );
        let mem = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/self/mem")
            .unwrap();
        use std::os::unix::fs::FileExt;
        assert_eq!(mem.write_at(&original, site as u64).unwrap(), 8);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let line = maps
            .lines()
            .find(|l| {
                let (range, _) = l.split_once(' ').unwrap();
                let (a, b) = range.split_once('-').unwrap();
                let (a, b) = (
                    usize::from_str_radix(a, 16).unwrap(),
                    usize::from_str_radix(b, 16).unwrap(),
                );
                (a..b).contains(&site)
            })
            .unwrap();
        assert!(line.contains(" r-xp "), "protection unchanged: {line}");
    });
}

/// Patching makes calls of its own (openat, pwrite64, mmap) that a seccomp
/// filter could answer by killing: a program that installs one gets no
/// more rewriting.
#[test]
fn no_site_is_rewritten_once_the_program_installs_a_seccomp_filter() {
    child_passes(|| {
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as i64;
        let engine = installed(&[]);
        let mut allow_all = [libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: allow_all.as_mut_ptr(),
        };
        let r = foreign(|| {
            // SAFETY: no_new_privs, then a filter that allows everything.
            unsafe {
                assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0,
                    &prog as *const libc::sock_fprog,
                )
            }
        });
        assert_eq!(r, 0);
        let before = engine.counters();
        for _ in 0..3 {
            // SAFETY: the site is a plain getppid.
            assert_eq!(foreign(|| unsafe { rw_getppid() }), ppid);
        }
        let after = engine.counters();
        assert_eq!(after.patched_sites, before.patched_sites);
        assert_eq!(after.traps - before.traps, 3);
    });
}

static TICKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_alarm(_: i32) {
    TICKS.fetch_add(1, Relaxed);
    // A handler that makes a call through the same rewritten site, with
    // whatever selector the interrupted code had.
    // SAFETY: the site is a plain getppid.
    unsafe { rw_getppid() };
}

#[test]
fn signals_arriving_anywhere_in_a_trampoline_leave_the_calls_intact() {
    child_passes(|| {
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as i64;
        let engine = installed(&[Sysno::getppid]);
        // SAFETY: installing a handler for SIGALRM, then a 100 us timer.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_alarm as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            assert_eq!(libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut()), 0);
            let every = libc::timeval {
                tv_sec: 0,
                tv_usec: 100,
            };
            let timer = libc::itimerval {
                it_interval: every,
                it_value: every,
            };
            assert_eq!(
                libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()),
                0
            );
        }
        let bad = foreign(|| {
            let mut bad = 0u64;
            for _ in 0..50_000 {
                // SAFETY: the site is a plain getppid.
                if unsafe { rw_getppid() } != ppid {
                    bad += 1;
                }
            }
            bad
        });
        // SAFETY: stopping the timer.
        unsafe {
            let off: libc::itimerval = std::mem::zeroed();
            libc::setitimer(libc::ITIMER_REAL, &off, std::ptr::null_mut());
        }
        assert_eq!(bad, 0);
        assert!(TICKS.load(Relaxed) > 10, "the timer fired");
        assert!(engine.counters().rewritten >= 49_000);
    });
}

#[test]
fn threads_running_many_sites_while_each_is_patched_never_see_a_torn_instruction() {
    child_passes(|| {
        hammer_sites(rw_many, 256);
    });
}

#[test]
fn forked_and_spawned_children_run_through_patched_sites() {
    child_passes(|| {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() } as i64;
        let engine = installed(&[]);
        // SAFETY: the site is a plain getppid; closing an invalid fd fails
        // harmlessly (it patches libc's close site if it is rewritable).
        foreign(|| unsafe {
            rw_getppid();
            libc::close(-1);
            libc::close(-1);
        });
        assert!(engine.counters().patched_sites >= 1);
        // SAFETY: the child only calls the site, reads counters and _exits.
        let pid = foreign(|| unsafe { libc::fork() });
        if pid == 0 {
            let before = engine.counters().rewritten;
            // SAFETY: the site is a plain getppid.
            let parent = foreign(|| unsafe { rw_getppid() });
            let ok = parent == me && engine.counters().rewritten == before + 1;
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        assert!(pid > 0);
        assert_eq!(wait_for(pid), Ended::Exited(0), "the forked child");
        let mut child = 0;
        let path = c"/bin/true";
        let argv = [path.as_ptr() as *mut libc::c_char, std::ptr::null_mut()];
        let envp = [std::ptr::null_mut()];
        // SAFETY: a valid path, argv and envp, all NULL-terminated.
        let r = foreign(|| unsafe {
            libc::posix_spawn(
                &mut child,
                path.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                argv.as_ptr(),
                envp.as_ptr(),
            )
        });
        assert_eq!(r, 0);
        assert_eq!(wait_for(child), Ended::Exited(0), "the spawned child");
    });
}

#[test]
fn a_thread_that_points_fs_at_its_own_block_traps_at_a_patched_site() {
    child_passes(|| {
        static SEEN: AtomicU64 = AtomicU64::new(0);
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as i64;
        // The hook touches no TLS: it runs while fs is the program's block.
        let engine = Engine::builder()
            .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
            .pre_hook(|_| {
                SEEN.fetch_add(1, Relaxed);
                Verdict::Run
            })
            .rewrite_sites(true)
            .install()
            .unwrap();
        // SAFETY: the site is a plain getppid; the first call patches it.
        assert_eq!(foreign(|| unsafe { rw_getppid() }), ppid);
        assert!(engine.counters().patched_sites >= 1);
        let mut old_fs = 0u64;
        // SAFETY: ARCH_GET_FS writes the fs base into `old_fs`.
        let r = unsafe { libc::syscall(libc::SYS_arch_prctl, 0x1003, &mut old_fs) };
        assert_eq!(r, 0);
        // The program's own thread block: mapped memory around it (glibc
        // and the engine read their TLS below fs while it is in place),
        // its first word pointing at itself as the TLS ABI wants.
        let mut block = vec![0u64; 16 * 1024];
        let fs = block.as_mut_ptr() as u64 + 64 * 1024;
        block[8 * 1024] = fs;
        let before = engine.counters();
        let seen = SEEN.load(Relaxed);
        for _ in 0..3 {
            // SAFETY: fs points at `block`, alive and mapped, while the site
            // runs, and is put back before anything else runs.
            assert_eq!(foreign(|| unsafe { rw_with_fs(fs, old_fs) }), ppid);
        }
        let after = engine.counters();
        assert_eq!(after.rewritten, before.rewritten, "{after:?}");
        assert_eq!(engine.count(Sysno::getppid), 4);
        assert_eq!(SEEN.load(Relaxed), seen + 3, "every call reached the hooks");
        // fs back in place: the trampoline is used again.
        // SAFETY: as above.
        assert_eq!(foreign(|| unsafe { rw_getppid() }), ppid);
        assert_eq!(engine.counters().rewritten, after.rewritten + 1);
    });
}

#[test]
fn hooks_of_a_rewritten_site_called_on_a_small_stack_run_on_the_engine_stack() {
    child_passes(|| {
        static HOOK_SP: AtomicU64 = AtomicU64::new(0);
        let engine = Engine::builder()
            .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
            .pre_hook(|_| {
                // Far more stack than the program's stack below has.
                let mut room = [0u8; 32 * 1024];
                std::hint::black_box(&mut room);
                HOOK_SP.store(room.as_ptr() as u64, Relaxed);
                Verdict::Run
            })
            .rewrite_sites(true)
            .install()
            .unwrap();
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as i64;
        // SAFETY: the site is a plain getppid; the first call patches it.
        assert_eq!(foreign(|| unsafe { rw_getppid() }), ppid);
        // A 4 KiB stack above a guard page.
        // SAFETY: a fresh anonymous mapping, then its first page made
        // inaccessible; both are ours.
        let base = unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(base, libc::MAP_FAILED);
            assert_eq!(libc::mprotect(base, 4096, libc::PROT_NONE), 0);
            base as u64
        };
        let top = base + 8192;
        let before = engine.counters();
        // SAFETY: the stack is mapped and only the site runs on it.
        assert_eq!(foreign(|| unsafe { rw_on_stack(top) }), ppid);
        assert_eq!(engine.counters().rewritten, before.rewritten + 1);
        let sp = HOOK_SP.load(Relaxed);
        assert!(
            !(base..top).contains(&sp),
            "the hook ran on the small stack ({sp:#x})"
        );
    });
}

#[test]
fn sites_whose_mov_crosses_a_word_jump_through_padding_or_keep_trapping() {
    child_passes(|| {
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as i64;
        let engine = installed(&[]);
        let sites: [(unsafe extern "C" fn() -> i64, usize, bool); 5] = [
            (rw_unaligned4, 4, true),
            (rw_unaligned5, 5, true),
            (rw_unaligned6, 6, true),
            (rw_unaligned7, 7, false),
            (rw_unaligned_unpadded, 4, false),
        ];
        for (f, offset, rewritable) in sites {
            let site = f as usize + offset;
            assert!(site % 8 >= 4, "the mov crosses a word");
            let before = engine.counters();
            for _ in 0..10 {
                // SAFETY: each function is a plain getppid site.
                assert_eq!(foreign(|| unsafe { f() }), ppid);
            }
            let after = engine.counters();
            // SAFETY: reading the site's first byte, mapped executable and readable.
            let first = unsafe { (site as *const u8).read_volatile() };
            if rewritable {
                assert_eq!(first, 0xeb, "site at {offset} mod 8: a jmp rel8");
                assert_eq!(after.traps - before.traps, 1, "{after:?}");
                assert_eq!(after.rewritten - before.rewritten, 9, "{after:?}");
            } else {
                assert_eq!(first, 0xb8, "site at {offset} mod 8 left alone");
                assert_eq!(after.traps - before.traps, 10, "{after:?}");
                assert_eq!(after.rewritten, before.rewritten);
            }
        }
        assert_eq!(engine.count(Sysno::getppid), 50);
        assert_eq!(engine.counters().patched_sites, 3);
        // The syscall of the patched rw_unaligned4, reached by a jump,
        // still traps.
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() } as i64;
        let before = engine.counters();
        // SAFETY: a plain getpid through that syscall instruction.
        assert_eq!(foreign(|| unsafe { rw_jump_to_unaligned_syscall() }), pid);
        assert_eq!(engine.counters().traps - before.traps, 1);
    });
}

#[test]
fn threads_running_unaligned_sites_while_each_is_patched_never_see_a_torn_instruction() {
    child_passes(|| {
        let c = hammer_sites(rw_many_unaligned, 64);
        // A site whose trap finds another thread patching traps again.
        assert!(c.rewritten >= 2 * 200 * 64 * 9 / 10, "{c:?}");
    });
}

#[test]
fn a_syscall_2_site_is_rewritten_for_every_number_but_those_the_trap_path_emulates() {
    child_passes(|| {
        static SEEN: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
        // SAFETY: getpid and getppid have no preconditions.
        let (pid, ppid) = unsafe { (libc::getpid() as i64, libc::getppid() as i64) };
        let engine = Engine::builder()
            .watch(SyscallSet::from_sysnos(&[
                Sysno::getpid,
                Sysno::getppid,
                Sysno::rt_sigprocmask,
            ]))
            .pre_hook(|call| {
                let i = match call.sysno() {
                    Some(Sysno::getpid) => 0,
                    Some(Sysno::getppid) => 1,
                    _ => 2,
                };
                SEEN[i].fetch_add(1, Relaxed);
                Verdict::Run
            })
            .rewrite_sites(true)
            .install()
            .unwrap();
        let call = |nr: Sysno, a: [u64; 6]| {
            // SAFETY: the calls below are plain getpid, getppid, and a
            // sigprocmask that only reads the mask into `old`.
            foreign(|| unsafe { rw_generic(nr.id() as u64, a[0], a[1], a[2], a[3], a[4], a[5]) })
        };
        assert_eq!(call(Sysno::getppid, [0; 6]), ppid);
        let site = rw_generic_syscall as *const () as usize - 5;
        // SAFETY: reading the site's first byte, mapped executable and readable.
        assert_eq!(unsafe { (site as *const u8).read_volatile() }, 0xe9);
        let before = engine.counters();
        for _ in 0..10 {
            assert_eq!(call(Sysno::getpid, [0; 6]), pid);
            assert_eq!(call(Sysno::getppid, [0; 6]), ppid);
        }
        let after = engine.counters();
        assert_eq!(after.rewritten - before.rewritten, 20, "{after:?}");
        assert_eq!(after.traps, before.traps);
        // rt_sigprocmask: the trap path keeps the program's view of the
        // mask in its frame, so this number goes back to the site's
        // syscall and traps.
        let mut old = [0u64; 1];
        let how = libc::SIG_BLOCK as u64;
        let r = call(
            Sysno::rt_sigprocmask,
            [how, 0, old.as_mut_ptr() as u64, 8, 0, 0],
        );
        assert_eq!(r, 0);
        let last = engine.counters();
        assert_eq!(last.traps - after.traps, 1, "{last:?}");
        assert_eq!(last.rewritten, after.rewritten);
        let seen: Vec<u64> = SEEN.iter().map(|c| c.load(Relaxed)).collect();
        assert_eq!(seen, [10, 11, 1]);
    });
}

#[test]
fn a_hook_that_clobbers_vector_registers_leaves_the_sites_registers_intact() {
    if !std::arch::is_x86_feature_detected!("avx") {
        eprintln!("skipped: the CPU has no AVX (the test checks ymm6)");
        return;
    }
    child_passes(|| {
        let native = run_regs();
        Engine::builder()
            .watch(SyscallSet::from_sysnos(&[Sysno::getpid]))
            .pre_hook(|_| {
                // SAFETY: overwrites ymm6 and xmm7, which the stub saved;
                // nothing of this hook's own lives in them.
                unsafe {
                    std::arch::asm!(
                        "vpcmpeqd ymm6, ymm6, ymm6",
                        "pcmpeqd xmm7, xmm7",
                        out("ymm6") _,
                        out("xmm7") _,
                    )
                };
                Verdict::Run
            })
            .rewrite_sites(true)
            .install()
            .unwrap();
        let trapped = foreign(run_regs);
        let rewritten = foreign(run_regs);
        let engine = Engine::installed().unwrap();
        assert_eq!(engine.counters().rewritten, 1);
        for (name, run) in [("trap", &trapped), ("rewritten", &rewritten)] {
            for i in 20..58 {
                assert_eq!(
                    run.0[i], native.0[i],
                    "{name}: word {i} differs: {:#x} natively, {:#x}",
                    native.0[i], run.0[i]
                );
            }
        }
    });
}

/// Maps `code` from a file of its own, private, read and execute: code
/// the program loaded. At `at` (replacing what is there) when non-zero.
fn map_code_file(code: &[u8], at: usize) -> usize {
    use std::os::fd::AsRawFd;
    let path = std::env::temp_dir().join(format!("sud-rewrite-code-{}", std::process::id()));
    let mut page = code.to_vec();
    page.resize(4096, 0xcc);
    std::fs::write(&path, &page).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let fixed = if at == 0 { 0 } else { libc::MAP_FIXED };
    // SAFETY: a private mapping of our own file, at a fresh address or
    // over a mapping of this test's own.
    let addr = unsafe {
        libc::mmap(
            at as *mut libc::c_void,
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE | fixed,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(addr, libc::MAP_FAILED);
    addr as usize
}

#[test]
fn code_mapped_anew_where_a_patched_site_was_traps_again() {
    child_passes(|| {
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as i64;
        let engine = installed(&[]);
        let stub = syscall_stub(Sysno::getppid.id() as u32);
        let base = map_code_file(&stub, 0);
        let counts = || engine.counters();
        let before = counts();
        for _ in 0..3 {
            assert_eq!(foreign(|| call_code(base)), ppid);
        }
        let patched = counts();
        assert_eq!(patched.traps - before.traps, 1, "{patched:?}");
        assert_eq!(patched.rewritten - before.rewritten, 2, "{patched:?}");
        // SAFETY: reading the stub's first byte, mapped readable.
        assert_eq!(unsafe { (base as *const u8).read_volatile() }, 0xe9);
        // The module goes away and another (the same bytes, fresh) is
        // mapped at its address: its site traps and is patched again.
        assert_eq!(map_code_file(&stub, base), base);
        // SAFETY: as above.
        assert_eq!(unsafe { (base as *const u8).read_volatile() }, 0xb8);
        for _ in 0..3 {
            assert_eq!(foreign(|| call_code(base)), ppid);
        }
        let after = counts();
        assert_eq!(after.traps - patched.traps, 1, "{after:?}");
        assert_eq!(after.rewritten - patched.rewritten, 2, "{after:?}");
        assert_eq!(after.patched_sites - patched.patched_sites, 1);
    });
}

#[test]
fn code_the_program_writes_itself_is_never_patched() {
    child_passes(|| {
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as i64;
        let engine = installed(&[]);
        let stub = syscall_stub(Sysno::getppid.id() as u32);
        // A JIT's code: anonymous memory, written by the program.
        let pages = CodePages::new(1);
        pages.write(pages.base, &stub);
        let before = engine.counters();
        for _ in 0..5 {
            assert_eq!(foreign(|| call_code(pages.base)), ppid);
        }
        let after = engine.counters();
        assert_eq!(after.traps - before.traps, 5, "{after:?}");
        assert_eq!(after.patched_sites, before.patched_sites);
        // SAFETY: reading the stub's first byte, mapped readable.
        assert_eq!(unsafe { (pages.base as *const u8).read_volatile() }, 0xb8);
    });
}

#[test]
fn code_in_a_memfd_or_a_shared_file_mapping_is_never_patched() {
    use std::os::fd::AsRawFd;
    child_passes(|| {
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as i64;
        let engine = installed(&[]);
        let mut page = syscall_stub(Sysno::getppid.id() as u32);
        page.resize(4096, 0xcc);
        // A JIT's double mapping: a memfd it writes through another view.
        // SAFETY: memfd_create with a NUL-terminated name.
        let memfd = unsafe { libc::memfd_create(c"jit".as_ptr(), 0) };
        assert!(memfd >= 0);
        // SAFETY: writing our buffer to our descriptor.
        assert_eq!(
            unsafe { libc::write(memfd, page.as_ptr().cast(), 4096) },
            4096
        );
        let path = std::env::temp_dir().join(format!("sud-rewrite-shared-{}", std::process::id()));
        std::fs::write(&path, &page).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        for (fd, flags) in [
            (memfd, libc::MAP_PRIVATE),
            (file.as_raw_fd(), libc::MAP_SHARED),
        ] {
            // SAFETY: a fresh read-execute mapping of our own descriptor.
            let code = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_EXEC,
                    flags,
                    fd,
                    0,
                )
            };
            assert_ne!(code, libc::MAP_FAILED);
            let before = engine.counters();
            for _ in 0..3 {
                assert_eq!(foreign(|| call_code(code as usize)), ppid);
            }
            let after = engine.counters();
            assert_eq!(after.traps - before.traps, 3, "{after:?}");
            assert_eq!(after.patched_sites, before.patched_sites);
        }
    });
}
