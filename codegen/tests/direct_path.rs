//! The direct path (a call site in the cache calling a stub) and the trap
//! path (a `syscall` outside the cache under BLOCK) reach the same hooks and
//! give the same results; the counters tell them apart; the stub keeps what
//! the `syscall` instruction keeps.
#![cfg(target_arch = "x86_64")]
// dynasm's dynamic registers (`Rx(i)`) expand to `i.into()`, which clippy flags for a u8.
#![allow(clippy::useless_conversion)]

mod common;

use common::*;
use dynasmrt::{dynasm, DynasmApi};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use sud_codegen::direct::{selector_flip, thread_selector, SelectorAccess};
use sud_codegen::{CodeCache, DirectStub, VectorState};
use sud_engine::{selector, Engine, Entrance, Errno, Selector, SyscallSet, Sysno, Verdict};

type Issue = extern "C" fn(*const [u64; 7]) -> i64;

/// `issue(&[nr, a0..a5])`: flip BLOCK, load the syscall registers, then
/// the `syscall` instruction or a direct-call site, flip ALLOW, return rax.
fn emit_issue(rip: usize, access: SelectorAccess, stub: Option<DirectStub>) -> Vec<u8> {
    let block = selector_flip(access, Selector::Block).unwrap();
    let allow = selector_flip(access, Selector::Allow).unwrap();
    assemble(rip, |a| {
        a.extend(block.iter());
        dynasm!(a
            ; .arch x64
            ; mov r11, rdi
            ; mov rax, [r11]
            ; mov rdi, [r11 + 8]
            ; mov rsi, [r11 + 16]
            ; mov rdx, [r11 + 24]
            ; mov r10, [r11 + 32]
            ; mov r8, [r11 + 40]
            ; mov r9, [r11 + 48]
        );
        match stub {
            Some(stub) => {
                let site = stub.site(rip + a.offset().0).unwrap();
                a.extend(site.iter());
            }
            None => dynasm!(a ; .arch x64 ; syscall),
        }
        a.extend(allow.iter());
        dynasm!(a ; .arch x64 ; ret);
    })
}

struct Paths {
    trap: Issue,
    direct: Issue,
    _outside: memmap2::Mmap,
}

fn paths(cache: &CodeCache, stub: DirectStub) -> Paths {
    let access = thread_selector().unwrap();
    let outside = outside_cache(&emit_issue(0, access, None));
    let direct = cache
        .emit_with(|rip| Ok(emit_issue(rip, access, Some(stub))))
        .unwrap();
    // SAFETY: both are the Issue routine above, in memory that outlives
    // the calls (the mapping is kept in Paths, the cache is leaked).
    unsafe {
        Paths {
            trap: function(outside.as_ptr() as usize),
            direct: function(direct),
            _outside: outside,
        }
    }
}

const FOREIGN_NR: u64 = 0x1234;

static REDIRECT_TO: AtomicU64 = AtomicU64::new(0);
static ORIG_FD: AtomicU64 = AtomicU64::new(0);
static LAST_ENTRANCE: AtomicU8 = AtomicU8::new(0);
static SELECTOR_IN_HOOK: AtomicU8 = AtomicU8::new(0xff);
static LAST_CALL_ADDR: AtomicU64 = AtomicU64::new(0);

#[test]
fn direct_and_trap_paths_agree_on_every_hook_decision() {
    child_passes(|| {
        let (redirect_r, redirect_w) = pipe();
        let (orig_r, orig_w) = pipe();
        REDIRECT_TO.store(redirect_w as u64, Relaxed);
        ORIG_FD.store(orig_w as u64, Relaxed);
        let mut watched =
            SyscallSet::from_sysnos(&[Sysno::getpid, Sysno::write, Sysno::chdir, Sysno::getppid]);
        watched.insert(FOREIGN_NR);
        let cache = leaked_cache();
        let engine = Engine::builder()
            .placement(cache.placement())
            .watch(watched)
            .pre_hook(|call| {
                LAST_ENTRANCE.store(call.entrance as u8 + 1, Relaxed);
                SELECTOR_IN_HOOK.store(selector::current() as u8, Relaxed);
                LAST_CALL_ADDR.store(call.call_addr, Relaxed);
                // Hooks may call libc, which writes errno; the site must not see it.
                // SAFETY: this thread's errno slot.
                unsafe { *libc::__errno_location() = libc::EDOM };
                match call.sysno() {
                    Some(Sysno::getpid) => Verdict::Return(4242),
                    Some(Sysno::write) if call.args[0] == ORIG_FD.load(Relaxed) => {
                        let mut args = call.args;
                        args[0] = REDIRECT_TO.load(Relaxed);
                        Verdict::RunWith(args)
                    }
                    Some(Sysno::chdir) => Verdict::Fail(Errno::EACCES),
                    _ if call.nr == FOREIGN_NR => Verdict::Return(call.args[0] as i64 * 2),
                    _ => Verdict::Run,
                }
            })
            .post_hook(|call, result| {
                if call.sysno() == Some(Sysno::getppid) {
                    *result += 1_000_000;
                }
            })
            .install()
            .unwrap();
        let stub = DirectStub::new(cache, thread_selector().unwrap(), VectorState::Sse).unwrap();
        let paths = paths(cache, stub);

        let msg = b"through a hook";
        let root = c"/";
        // SAFETY: plain libc calls.
        let (real_ppid, real_uid) = unsafe { (libc::getppid() as i64, libc::getuid() as i64) };
        let nr = |s: Sysno| s.id() as u64;
        let cases: [(&str, [u64; 7], i64, bool); 6] = [
            ("emulate", [nr(Sysno::getpid), 0, 0, 0, 0, 0, 0], 4242, true),
            (
                "run with changed arguments",
                [
                    nr(Sysno::write),
                    orig_w as u64,
                    msg.as_ptr() as u64,
                    msg.len() as u64,
                    0,
                    0,
                    0,
                ],
                msg.len() as i64,
                true,
            ),
            (
                "fail with an errno",
                [nr(Sysno::chdir), root.as_ptr() as u64, 0, 0, 0, 0, 0],
                -(libc::EACCES as i64),
                true,
            ),
            (
                "post-hook change",
                [nr(Sysno::getppid), 0, 0, 0, 0, 0, 0],
                real_ppid + 1_000_000,
                true,
            ),
            (
                "unwatched: runs",
                [nr(Sysno::getuid), 0, 0, 0, 0, 0, 0],
                real_uid,
                false,
            ),
            ("foreign number", [FOREIGN_NR, 21, 0, 0, 0, 0, 0], 42, true),
        ];
        for (what, frame, expected, watched) in cases {
            for (entrance, issue) in [
                (Entrance::Trap, paths.trap),
                (Entrance::Direct, paths.direct),
            ] {
                let before = engine.counters();
                let count_before = engine.count_raw(frame[0]);
                LAST_ENTRANCE.store(0, Relaxed);
                // SAFETY: this thread's errno slot.
                unsafe { *libc::__errno_location() = 12345 };
                let result = issue(&frame);
                // SAFETY: as above.
                let errno_after = unsafe { *libc::__errno_location() };
                assert_eq!(errno_after, 12345, "{what} via {entrance:?}: errno changed");
                let after = engine.counters();
                assert_eq!(result, expected, "{what} via {entrance:?}");
                assert_eq!(selector::current(), Selector::Allow);
                let (traps, direct) = match entrance {
                    Entrance::Trap => (1, 0),
                    Entrance::Direct => (0, 1),
                    Entrance::Rewritten => unreachable!("this test issues no rewritten call"),
                };
                assert_eq!(
                    after.traps - before.traps,
                    traps,
                    "{what} via {entrance:?}: traps"
                );
                assert_eq!(
                    after.direct - before.direct,
                    direct,
                    "{what} via {entrance:?}: direct"
                );
                assert_eq!(
                    after.hooked - before.hooked,
                    watched as u64,
                    "{what} via {entrance:?}: hooked"
                );
                assert_eq!(
                    engine.count_raw(frame[0]) - count_before,
                    1,
                    "{what} via {entrance:?}: count"
                );
                if watched {
                    assert_eq!(
                        LAST_ENTRANCE.load(Relaxed),
                        entrance as u8 + 1,
                        "{what}: entrance seen by the hook"
                    );
                    assert_eq!(
                        SELECTOR_IN_HOOK.load(Relaxed),
                        Selector::Allow as u8,
                        "{what}: hooks run as host"
                    );
                    let call_addr = LAST_CALL_ADDR.load(Relaxed) as usize;
                    assert_eq!(
                        cache.contains(call_addr),
                        entrance == Entrance::Direct,
                        "{what}: call_addr {call_addr:#x}"
                    );
                }
                if frame[0] == nr(Sysno::write) {
                    assert_eq!(
                        read_available(redirect_r),
                        msg,
                        "{what} via {entrance:?}: the write went to the new fd"
                    );
                }
            }
        }
        // SAFETY: closing our own fds; nothing was ever written to orig_w.
        unsafe {
            libc::close(orig_w);
            assert!(read_available(orig_r).is_empty());
        }
    });
}

/// What the register probe loads before the site and finds after it.
#[repr(C, align(64))]
struct Registers {
    /// rax rbx rcx rdx rsi rdi rbp r8..r15 (rsp is checked separately).
    gpr: [u64; 15],
    flags: u64,
    rsp: u64,
    /// 32 bytes per register: ymm0-15 (the upper halves only with `avx`).
    vec: [[u8; 32]; 16],
    red_zone: [u64; 16],
    selector_after_site: u64,
    rsp_after: u64,
    mxcsr: u64,
}

const GPR_NAMES: [&str; 15] = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
    "r15",
];

/// Emits `probe(input, output)`: loads every register, the flags and a
/// red-zone pattern from `input`, runs a direct-call site, and stores what
/// it finds into `output`.
fn emit_register_probe(
    cache: &CodeCache,
    stub: DirectStub,
    avx: bool,
) -> extern "C" fn(&Registers, &mut Registers) {
    let SelectorAccess::ThreadPointer { offset } = thread_selector().unwrap() else {
        unreachable!()
    };
    let block = selector_flip(thread_selector().unwrap(), Selector::Block).unwrap();
    let allow = selector_flip(thread_selector().unwrap(), Selector::Allow).unwrap();
    let addr = cache
        .emit_with(|rip| {
            Ok(assemble(rip, |a| {
                dynasm!(a
                    ; .arch x64
                    ; push rbx ; push rbp ; push r12 ; push r13 ; push r14 ; push r15
                    ; push rsi // output
                    ; mov [rsi + 16 * 8], rsp // rsp as the site sees it
                    // The flags first: `push` writes below rsp, where the red zone goes next.
                    ; push QWORD [rdi + 15 * 8]
                    ; popfq
                    ; ldmxcsr [rdi + 16 * 8 + 8 + 16 * 32 + 18 * 8]
                );
                for i in 0..16 {
                    let d = 16 * 8 + 8 + 16 * 32 + i * 8;
                    dynasm!(a ; .arch x64 ; mov rax, [rdi + d] ; mov [rsp - 8 - i * 8], rax);
                }
                for i in 0..16u8 {
                    let d = 17 * 8 + i as i32 * 32;
                    if avx {
                        dynasm!(a ; .arch x64 ; vmovdqu Ry(i), [rdi + d]);
                    } else {
                        dynasm!(a ; .arch x64 ; movdqu Rx(i), [rdi + d]);
                    }
                }
                a.extend(block.iter());
                dynasm!(a
                    ; .arch x64
                    ; mov rax, [rdi] ; mov rbx, [rdi + 8] ; mov rcx, [rdi + 16] ; mov rdx, [rdi + 24]
                    ; mov rsi, [rdi + 32] ; mov rbp, [rdi + 48]
                    ; mov r8, [rdi + 56] ; mov r9, [rdi + 64] ; mov r10, [rdi + 72] ; mov r11, [rdi + 80]
                    ; mov r12, [rdi + 88] ; mov r13, [rdi + 96] ; mov r14, [rdi + 104] ; mov r15, [rdi + 112]
                    ; mov rdi, [rdi + 40]
                );
                let site = stub.site(rip + a.offset().0).unwrap();
                a.extend(site.iter());
                // Nothing below may touch the flags before they are read.
                dynasm!(a
                    ; .arch x64
                    ; xchg [rsp], rdi // rdi = output, [rsp] = rdi after the site
                    ; mov [rdi], rax ; mov [rdi + 8], rbx ; mov [rdi + 16], rcx ; mov [rdi + 24], rdx
                    ; mov [rdi + 32], rsi ; mov [rdi + 48], rbp
                    ; mov [rdi + 56], r8 ; mov [rdi + 64], r9 ; mov [rdi + 72], r10 ; mov [rdi + 80], r11
                    ; mov [rdi + 88], r12 ; mov [rdi + 96], r13 ; mov [rdi + 104], r14 ; mov [rdi + 112], r15
                    ; mov [rdi + 16 * 8 + 8 + 16 * 32 + 17 * 8], rsp
                    ; stmxcsr [rdi + 16 * 8 + 8 + 16 * 32 + 18 * 8]
                    ; fs movzx eax, BYTE [offset]
                    ; mov [rdi + 16 * 8 + 8 + 16 * 32 + 16 * 8], rax
                );
                // The red zone below the site's rsp (which is rsp now).
                for i in 0..16 {
                    let d = 16 * 8 + 8 + 16 * 32 + i * 8;
                    dynasm!(a ; .arch x64 ; mov rax, [rsp - 8 - i * 8] ; mov [rdi + d], rax);
                }
                dynasm!(a
                    ; .arch x64
                    ; pushfq
                    ; pop rax
                    ; mov [rdi + 15 * 8], rax
                    ; cld
                    ; pop rax
                    ; mov [rdi + 40], rax
                );
                for i in 0..16u8 {
                    let d = 17 * 8 + i as i32 * 32;
                    if avx {
                        dynasm!(a ; .arch x64 ; vmovdqu [rdi + d], Ry(i));
                    } else {
                        dynasm!(a ; .arch x64 ; movdqu [rdi + d], Rx(i));
                    }
                }
                if avx {
                    dynasm!(a ; .arch x64 ; vzeroupper);
                }
                a.extend(allow.iter());
                dynasm!(a ; .arch x64 ; pop r15 ; pop r14 ; pop r13 ; pop r12 ; pop rbp ; pop rbx ; ret);
            }))
        })
        .unwrap();
    // SAFETY: the probe above has this signature and lives in a leaked cache.
    unsafe { function(addr) }
}

/// A hook that scribbles over every vector register (upper halves too)
/// and the MXCSR status flags, as arbitrary Rust (or glibc's AVX string
/// functions) may.
fn clobber_vector_state() {
    // SAFETY: the asm only writes the registers it declares clobbered, and
    // sets MXCSR's precision-exception status bit (not a control bit).
    unsafe {
        std::arch::asm!(
            "vpcmpeqd ymm0, ymm0, ymm0", "vpcmpeqd ymm1, ymm1, ymm1", "vpcmpeqd ymm2, ymm2, ymm2",
            "vpcmpeqd ymm3, ymm3, ymm3", "vpcmpeqd ymm4, ymm4, ymm4", "vpcmpeqd ymm5, ymm5, ymm5",
            "vpcmpeqd ymm6, ymm6, ymm6", "vpcmpeqd ymm7, ymm7, ymm7", "vpcmpeqd ymm8, ymm8, ymm8",
            "vpcmpeqd ymm9, ymm9, ymm9", "vpcmpeqd ymm10, ymm10, ymm10", "vpcmpeqd ymm11, ymm11, ymm11",
            "vpcmpeqd ymm12, ymm12, ymm12", "vpcmpeqd ymm13, ymm13, ymm13", "vpcmpeqd ymm14, ymm14, ymm14",
            "vpcmpeqd ymm15, ymm15, ymm15",
            "sub rsp, 8", "stmxcsr [rsp]", "or dword ptr [rsp], 0x20", "ldmxcsr [rsp]", "add rsp, 8",
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _, out("xmm5") _,
            out("xmm6") _, out("xmm7") _, out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
        )
    }
}

fn registers_survive_a_direct_call(vectors: VectorState, avx: bool) {
    static RESULT: AtomicI64 = AtomicI64::new(0);
    let cache = leaked_cache();
    let engine = Engine::builder()
        .placement(cache.placement())
        .pre_hook(|call| {
            clobber_vector_state();
            Verdict::Return(call.args[0] as i64 ^ RESULT.load(Relaxed))
        })
        .install()
        .unwrap();
    RESULT.store(0x5a5a, Relaxed);
    let stub = DirectStub::new(cache, thread_selector().unwrap(), vectors).unwrap();
    let probe = emit_register_probe(cache, stub, avx);

    let mut input = Registers {
        gpr: std::array::from_fn(|i| 0x1111_1111_1111_1111u64.wrapping_mul(i as u64 + 1) ^ 0x0123),
        // CF PF AF ZF SF DF OF set, plus bit 1 (always 1) and IF.
        flags: 0x202 | 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x400 | 0x800,
        rsp: 0,
        vec: std::array::from_fn(|i| std::array::from_fn(|j| (i * 32 + j) as u8 ^ 0xa5)),
        red_zone: std::array::from_fn(|i| 0xfeed_0000_0000_0000 | i as u64),
        selector_after_site: 0,
        rsp_after: 0,
        // The default control bits, no exception status bit set.
        mxcsr: 0x1f80,
    };
    input.gpr[0] = libc::SYS_getppid as u64; // rax: the syscall number
    let mut output = Registers {
        gpr: [0; 15],
        flags: 0,
        rsp: 0,
        vec: [[0; 32]; 16],
        red_zone: [0; 16],
        selector_after_site: 0xff,
        rsp_after: 0,
        mxcsr: 0,
    };
    probe(&input, &mut output);

    assert_eq!(engine.counters().direct, 1);
    assert_eq!(engine.counters().traps, 0);
    let rdi = input.gpr[5];
    assert_eq!(output.gpr[0], rdi ^ 0x5a5a, "rax holds the hook's result");
    for (i, name) in GPR_NAMES.iter().enumerate() {
        if !matches!(*name, "rax" | "rcx" | "r11") {
            assert_eq!(
                output.gpr[i], input.gpr[i],
                "{name} changed across the site"
            );
        }
    }
    const ARITHMETIC_AND_DF: u64 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x400 | 0x800;
    assert_eq!(
        output.flags & ARITHMETIC_AND_DF,
        input.flags & ARITHMETIC_AND_DF,
        "flags changed"
    );
    assert_eq!(
        output.red_zone, input.red_zone,
        "the red zone was overwritten"
    );
    assert_eq!(output.rsp_after, output.rsp, "rsp moved across the site");
    assert_eq!(
        output.mxcsr, input.mxcsr,
        "MXCSR changed (the hook set a status bit)"
    );
    assert_eq!(
        output.selector_after_site,
        Selector::Block as u64,
        "the site returns in the foreign personality"
    );
    let width = if avx { 32 } else { 16 };
    for i in 0..16 {
        assert_eq!(
            output.vec[i][..width],
            input.vec[i][..width],
            "vector register {i} changed ({width} bytes checked)"
        );
    }
}

#[test]
fn the_sse_stub_keeps_gprs_flags_red_zone_and_xmm() {
    child_passes(|| registers_survive_a_direct_call(VectorState::Sse, false));
}

#[test]
fn the_full_stub_keeps_ymm_too() {
    if !std::arch::is_x86_feature_detected!("avx") || !std::arch::is_x86_feature_detected!("xsavec")
    {
        eprintln!("skipped: needs avx and xsavec");
        return;
    }
    child_passes(|| registers_survive_a_direct_call(VectorState::Full, true));
}

/// Without post-hooks the engine leaves calls the hooks let run to the stub
/// (`EXECUTE_IN_STUB`), which executes them from the cache with the
/// arguments the hooks settled on: same results, same counts.
#[test]
fn the_stub_executes_what_the_hooks_let_run() {
    child_passes(|| {
        let (redirect_r, redirect_w) = pipe();
        let (orig_r, orig_w) = pipe();
        REDIRECT_TO.store(redirect_w as u64, Relaxed);
        ORIG_FD.store(orig_w as u64, Relaxed);
        let cache = leaked_cache();
        let engine = Engine::builder()
            .placement(cache.placement())
            .watch(SyscallSet::from_sysnos(&[Sysno::write, Sysno::getppid]))
            .pre_hook(|call| match call.sysno() {
                Some(Sysno::write) if call.args[0] == ORIG_FD.load(Relaxed) => {
                    let mut args = call.args;
                    args[0] = REDIRECT_TO.load(Relaxed);
                    Verdict::RunWith(args)
                }
                _ => Verdict::Run,
            })
            .install()
            .unwrap();
        let stub = DirectStub::new(cache, thread_selector().unwrap(), VectorState::Sse).unwrap();
        let paths = paths(cache, stub);
        let msg = b"deferred";
        // SAFETY: plain libc calls.
        let (ppid, uid) = unsafe { (libc::getppid() as i64, libc::getuid() as i64) };
        let nr = |s: Sysno| s.id() as u64;
        let write = [
            nr(Sysno::write),
            orig_w as u64,
            msg.as_ptr() as u64,
            msg.len() as u64,
            0,
            0,
            0,
        ];
        assert_eq!((paths.direct)(&write), msg.len() as i64);
        assert_eq!(
            read_available(redirect_r),
            msg,
            "the stub ran the call with the hook's arguments"
        );
        // SAFETY: closing our own write end so the drain below sees EOF.
        unsafe { libc::close(orig_w) };
        assert_eq!(
            read_available(orig_r),
            b"",
            "nothing reached the original fd"
        );
        assert_eq!(
            (paths.direct)(&[nr(Sysno::getppid), 0, 0, 0, 0, 0, 0]),
            ppid
        );
        assert_eq!((paths.direct)(&[nr(Sysno::getuid), 0, 0, 0, 0, 0, 0]), uid);
        let bad_fd = [nr(Sysno::write), u64::MAX, 0, 0, 0, 0, 0];
        assert_eq!((paths.direct)(&bad_fd), -(libc::EBADF as i64));
        let c = engine.counters();
        assert_eq!((c.direct, c.traps, c.hooked), (4, 0, 3));
    });
}
