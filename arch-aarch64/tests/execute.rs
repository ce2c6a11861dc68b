//! Runs the emitted snippets for real (on aarch64, or under qemu-aarch64):
//! selector flips and the direct-hook stub leave the selector and every
//! register as documented; the signal-context accessors read and write the
//! registers of a real signal frame.
#![cfg(target_arch = "aarch64")]

use dynasmrt::aarch64::Aarch64Relocation;
use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi, VecAssembler};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use sud_arch_aarch64::*;

/// `ret`, appended to snippets that fall through so they can be called.
const RET: [u8; 4] = 0xd65f_03c0u32.to_le_bytes();

/// Code copied into its own page, mapped read+execute (never writable and
/// executable at once), unmapped on drop.
struct CodePage {
    base: *mut u8,
    len: usize,
}

impl CodePage {
    fn new(code: &[u8]) -> CodePage {
        let len = code.len().next_multiple_of(4096);
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap failed");
        let page = CodePage {
            base: base.cast(),
            len,
        };
        page.write(code);
        page
    }

    /// Makes the page writable, copies `code` to its start, makes it
    /// executable again and flushes the instruction cache.
    fn write(&self, code: &[u8]) {
        assert!(code.len() <= self.len);
        self.protect(libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: the page is ours, writable, and large enough.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), self.base, code.len()) };
        self.protect(libc::PROT_READ | libc::PROT_EXEC);
        flush_icache(self.base as usize, code.len());
    }

    fn protect(&self, prot: libc::c_int) {
        // SAFETY: changes the protection of our own mapping only.
        let r = unsafe { libc::mprotect(self.base.cast(), self.len, prot) };
        assert_eq!(r, 0, "mprotect failed");
    }

    fn addr(&self) -> u64 {
        self.base as u64
    }
}

impl Drop for CodePage {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping this value owns; nothing refers to it any more.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// The register file the harness loads before calling code and the one it
/// finds afterwards.
#[repr(C, align(16))]
struct Ctx {
    /// x0-x30 to load; x30 is the address of the code to call.
    x_in: [u64; 31],
    nzcv_in: u64,
    fpsr_in: u64,
    _pad_in: u64,
    q_in: [u128; 32],
    /// x0-x29 after the call returned (x30 is the harness's return address).
    x_out: [u64; 31],
    nzcv_out: u64,
    fpsr_out: u64,
    _pad_out: u64,
    q_out: [u128; 32],
    sp_before: u64,
    sp_after: u64,
}

// `run_code(ctx)`: saves the AAPCS64 callee-saved state, loads every
// general register, NZCV, FPSR and q0-q31 from `ctx`, calls `ctx.x_in[30]`
// with `blr x30` (the only register whose value the call itself decides),
// and stores everything it finds afterwards back into `ctx`.
core::arch::global_asm!(
    ".text",
    ".p2align 2",
    ".global sud_test_run_code",
    "sud_test_run_code:",
    "stp x29, x30, [sp, #-176]!",
    "mov x29, sp",
    "stp x19, x20, [sp, #16]",
    "stp x21, x22, [sp, #32]",
    "stp x23, x24, [sp, #48]",
    "stp x25, x26, [sp, #64]",
    "stp x27, x28, [sp, #80]",
    "stp d8, d9, [sp, #96]",
    "stp d10, d11, [sp, #112]",
    "stp d12, d13, [sp, #128]",
    "stp d14, d15, [sp, #144]",
    "str x0, [sp, #160]",
    "mov x1, sp",
    "str x1, [x0, #{sp_before}]",
    "ldr x1, [x0, #{nzcv_in}]",
    "msr nzcv, x1",
    "ldr x1, [x0, #{fpsr_in}]",
    "msr fpsr, x1",
    "add x1, x0, #{q_in}",
    "ldp q0, q1, [x1, #0]",
    "ldp q2, q3, [x1, #32]",
    "ldp q4, q5, [x1, #64]",
    "ldp q6, q7, [x1, #96]",
    "ldp q8, q9, [x1, #128]",
    "ldp q10, q11, [x1, #160]",
    "ldp q12, q13, [x1, #192]",
    "ldp q14, q15, [x1, #224]",
    "ldp q16, q17, [x1, #256]",
    "ldp q18, q19, [x1, #288]",
    "ldp q20, q21, [x1, #320]",
    "ldp q22, q23, [x1, #352]",
    "ldp q24, q25, [x1, #384]",
    "ldp q26, q27, [x1, #416]",
    "ldp q28, q29, [x1, #448]",
    "ldp q30, q31, [x1, #480]",
    "ldp x1, x2, [x0, #8]",
    "ldp x3, x4, [x0, #24]",
    "ldp x5, x6, [x0, #40]",
    "ldp x7, x8, [x0, #56]",
    "ldp x9, x10, [x0, #72]",
    "ldp x11, x12, [x0, #88]",
    "ldp x13, x14, [x0, #104]",
    "ldp x15, x16, [x0, #120]",
    "ldp x17, x18, [x0, #136]",
    "ldp x19, x20, [x0, #152]",
    "ldp x21, x22, [x0, #168]",
    "ldp x23, x24, [x0, #184]",
    "ldp x25, x26, [x0, #200]",
    "ldp x27, x28, [x0, #216]",
    "ldp x29, x30, [x0, #232]",
    "ldr x0, [x0]",
    "blr x30",
    // x30 holds only our own return address now: use it as the scratch.
    "mov x30, sp",
    "str x0, [x30, #168]",
    "ldr x0, [x30, #160]",
    "str x30, [x0, #{sp_after}]",
    "mrs x30, nzcv",
    "str x30, [x0, #{nzcv_out}]",
    "mrs x30, fpsr",
    "str x30, [x0, #{fpsr_out}]",
    "add x30, x0, #{q_out}",
    "stp q0, q1, [x30, #0]",
    "stp q2, q3, [x30, #32]",
    "stp q4, q5, [x30, #64]",
    "stp q6, q7, [x30, #96]",
    "stp q8, q9, [x30, #128]",
    "stp q10, q11, [x30, #160]",
    "stp q12, q13, [x30, #192]",
    "stp q14, q15, [x30, #224]",
    "stp q16, q17, [x30, #256]",
    "stp q18, q19, [x30, #288]",
    "stp q20, q21, [x30, #320]",
    "stp q22, q23, [x30, #352]",
    "stp q24, q25, [x30, #384]",
    "stp q26, q27, [x30, #416]",
    "stp q28, q29, [x30, #448]",
    "stp q30, q31, [x30, #480]",
    "add x30, x0, #{x_out}",
    "stp x1, x2, [x30, #8]",
    "stp x3, x4, [x30, #24]",
    "stp x5, x6, [x30, #40]",
    "stp x7, x8, [x30, #56]",
    "stp x9, x10, [x30, #72]",
    "stp x11, x12, [x30, #88]",
    "stp x13, x14, [x30, #104]",
    "stp x15, x16, [x30, #120]",
    "stp x17, x18, [x30, #136]",
    "stp x19, x20, [x30, #152]",
    "stp x21, x22, [x30, #168]",
    "stp x23, x24, [x30, #184]",
    "stp x25, x26, [x30, #200]",
    "stp x27, x28, [x30, #216]",
    "str x29, [x30, #232]",
    "ldr x1, [sp, #168]",
    "str x1, [x30]",
    "ldp x19, x20, [sp, #16]",
    "ldp x21, x22, [sp, #32]",
    "ldp x23, x24, [sp, #48]",
    "ldp x25, x26, [sp, #64]",
    "ldp x27, x28, [sp, #80]",
    "ldp d8, d9, [sp, #96]",
    "ldp d10, d11, [sp, #112]",
    "ldp d12, d13, [sp, #128]",
    "ldp d14, d15, [sp, #144]",
    "ldp x29, x30, [sp], #176",
    "ret",
    sp_before = const core::mem::offset_of!(Ctx, sp_before),
    sp_after = const core::mem::offset_of!(Ctx, sp_after),
    nzcv_in = const core::mem::offset_of!(Ctx, nzcv_in),
    fpsr_in = const core::mem::offset_of!(Ctx, fpsr_in),
    q_in = const core::mem::offset_of!(Ctx, q_in),
    nzcv_out = const core::mem::offset_of!(Ctx, nzcv_out),
    fpsr_out = const core::mem::offset_of!(Ctx, fpsr_out),
    q_out = const core::mem::offset_of!(Ctx, q_out),
    x_out = const core::mem::offset_of!(Ctx, x_out),
);

extern "C" {
    fn sud_test_run_code(ctx: *mut Ctx);
}

/// The flags and FPSR bits the harness loads: N and C; IOC..IXC and QC.
const NZCV_IN: u64 = 0xa000_0000;
const FPSR_IN: u64 = 0x0800_001f;

/// Distinct, recognisable register values; x30 is replaced by the code address.
fn pattern() -> Ctx {
    Ctx {
        x_in: std::array::from_fn(|i| 0x5eed_0000_0000_0000 | (i as u64) << 8 | i as u64),
        nzcv_in: NZCV_IN,
        fpsr_in: FPSR_IN,
        _pad_in: 0,
        q_in: std::array::from_fn(|i| {
            0x0123_4567_89ab_cdef_0000_0000_0000_0000 | i as u128 * 0x1_0001
        }),
        x_out: [0; 31],
        nzcv_out: 0,
        fpsr_out: 0,
        _pad_out: 0,
        q_out: [0; 32],
        sp_before: 0,
        sp_after: 1,
    }
}

/// Calls the code at `addr` with the registers in `ctx`.
fn run(addr: u64, mut ctx: Ctx) -> Ctx {
    ctx.x_in[30] = addr;
    // SAFETY: `addr` is executable code that returns with `ret` and keeps the
    // stack balanced (what the tests check); the harness preserves the
    // callee-saved state for Rust; `ctx` is a valid, exclusive pointer.
    unsafe { sud_test_run_code(&mut ctx) };
    ctx
}

/// Asserts that the call preserved everything but x0 and `clobbered`.
fn assert_preserved(ctx: &Ctx, clobbered: &[usize]) {
    for r in 1..30 {
        if !clobbered.contains(&r) {
            assert_eq!(ctx.x_out[r], ctx.x_in[r], "x{r} changed");
        }
    }
    for (q, (out, inp)) in ctx.q_out.iter().zip(&ctx.q_in).enumerate() {
        assert_eq!(out, inp, "q{q} changed");
    }
    assert_eq!(ctx.nzcv_out, ctx.nzcv_in, "NZCV changed");
    assert_eq!(ctx.fpsr_out, ctx.fpsr_in, "FPSR changed");
    assert_eq!(ctx.sp_after, ctx.sp_before, "sp not restored");
}

thread_local! {
    /// A static-TLS selector, reachable from `tpidr_el0` at a fixed offset.
    static SELECTOR: AtomicU8 = const { AtomicU8::new(0x55) };
}

fn selector_addr() -> u64 {
    SELECTOR.with(|s| s.as_ptr() as u64)
}

fn selector_tp_offset() -> i32 {
    (selector_addr() as i64 - thread_pointer() as i64) as i32
}

fn selector_value() -> u8 {
    SELECTOR.with(|s| s.load(Ordering::SeqCst))
}

fn set_selector(value: u8) {
    SELECTOR.with(|s| s.store(value, Ordering::SeqCst))
}

#[test]
fn static_tls_sits_at_the_same_offset_from_the_thread_pointer_in_every_thread() {
    let here = selector_tp_offset();
    let (there, tp_there) = std::thread::spawn(|| (selector_tp_offset(), thread_pointer()))
        .join()
        .unwrap();
    assert_eq!(here, there);
    assert_ne!(
        tp_there,
        thread_pointer(),
        "each thread has its own tpidr_el0"
    );
}

#[test]
fn flips_store_the_value_and_clobber_only_their_scratch_registers() {
    let forms: [(SelectorAccess, &[usize]); 5] = [
        (
            SelectorAccess::ThreadPointer {
                offset: selector_tp_offset(),
            },
            &[16, 17],
        ),
        (
            SelectorAccess::Absolute {
                address: selector_addr(),
            },
            &[16, 17],
        ),
        (SelectorAccess::Register { reg: 9 }, &[17]),
        (SelectorAccess::Register { reg: 17 }, &[16]),
        (SelectorAccess::Register { reg: 28 }, &[17]),
    ];
    for (access, scratch) in forms {
        for value in [0u8, 1] {
            let code = [selector_flip(access, value), RET.to_vec()].concat();
            let page = CodePage::new(&code);
            let mut ctx = pattern();
            if let SelectorAccess::Register { reg } = access {
                ctx.x_in[reg as usize] = selector_addr();
            }
            set_selector(0x55);
            let ctx = run(page.addr(), ctx);
            assert_eq!(selector_value(), value, "{access:?} storing {value}");
            assert_eq!(ctx.x_out[0], ctx.x_in[0], "{access:?} changed x0");
            assert_preserved(&ctx, scratch);
        }
    }
}

/// `mrs x9, tpidr_el0`, `msr tpidr_el0, x10`, `msr tpidr_el0, x9`.
const SAVE_TP_IN_X9: u32 = 0xd53b_d049;
const SET_TP_FROM_X10: u32 = 0xd51b_d04a;
const RESTORE_TP_FROM_X9: u32 = 0xd51b_d049;

#[test]
fn a_thread_pointer_flip_reaches_any_offset() {
    // Points tpidr_el0 into a buffer for the length of one flip, so offsets
    // in both directions can be tried without touching the real TCB.
    let mut bytes = vec![0x55u8; 0x40000];
    let centre = 0x2_0000usize;
    let fake_tp = bytes.as_mut_ptr() as u64 + centre as u64;
    for offset in [0x10, 0xfff, 0x1000, 0x1_2345, -1, -0x100, -0x1_2345] {
        let code = [
            SAVE_TP_IN_X9.to_le_bytes().to_vec(),
            SET_TP_FROM_X10.to_le_bytes().to_vec(),
            selector_flip(SelectorAccess::ThreadPointer { offset }, 1),
            RESTORE_TP_FROM_X9.to_le_bytes().to_vec(),
            RET.to_vec(),
        ]
        .concat();
        let page = CodePage::new(&code);
        let mut ctx = pattern();
        ctx.x_in[10] = fake_tp;
        bytes.fill(0x55);
        // The thread pointer is wrong for three instructions: nothing in
        // this test thread reads TLS (or takes a signal) meanwhile.
        let ctx = run(page.addr(), ctx);
        let target = centre.checked_add_signed(offset as isize).unwrap();
        let changed: Vec<usize> = (0..bytes.len())
            // SAFETY: in-bounds reads of the buffer the emitted code wrote.
            .filter(|&i| unsafe { std::ptr::read_volatile(bytes.as_ptr().add(i)) } != 0x55)
            .collect();
        assert_eq!(changed, [target], "offset {offset:#x}");
        assert_eq!(bytes[target], 1);
        assert_eq!(ctx.x_out[0], ctx.x_in[0]);
        assert_preserved(&ctx, &[9, 16, 17]);
    }
}

/// `sud_engine::DirectFrame`, mirrored (the arch crate does not depend on the engine).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirectFrame {
    nr: u64,
    args: [u64; 6],
    call_addr: u64,
}

thread_local! {
    /// What the fake entry saw: the frame and the selector during the call.
    static SEEN: RefCell<Vec<(DirectFrame, u8)>> = const { RefCell::new(Vec::new()) };
    static FRAME_ALIGNED: Cell<bool> = const { Cell::new(false) };
}

const ENTRY_RESULT: i64 = -38;

/// Stands in for `sud_engine::direct_entry`: records what it was given and
/// clobbers what a callee may.
extern "C" fn fake_direct_entry(frame: &DirectFrame) -> i64 {
    FRAME_ALIGNED.with(|a| a.set(frame as *const DirectFrame as usize % 16 == 0));
    SEEN.with(|s| s.borrow_mut().push((*frame, selector_value())));
    clobber_caller_saved();
    ENTRY_RESULT
}

/// Overwrites everything the AAPCS64 lets a callee clobber, so tests prove
/// the code under test restores it.
fn clobber_caller_saved() {
    // SAFETY: writes only registers declared as clobbered; v8-v15 lose just
    // their upper halves, which the AAPCS64 does not preserve; FPSR holds
    // sticky flags nothing here depends on.
    unsafe {
        core::arch::asm!(
            "movn x1, #0", "movn x2, #1", "movn x3, #2", "movn x4, #3", "movn x5, #4",
            "movn x6, #5", "movn x7, #6", "movn x8, #7", "movn x9, #8", "movn x10, #9",
            "movn x11, #10", "movn x12, #11", "movn x13, #12", "movn x14, #13",
            "movn x15, #14", "movn x16, #15", "movn x17, #16",
            "movi v0.16b, #0xee", "movi v1.16b, #0xee", "movi v2.16b, #0xee",
            "movi v3.16b, #0xee", "movi v4.16b, #0xee", "movi v5.16b, #0xee",
            "movi v6.16b, #0xee", "movi v7.16b, #0xee",
            "mov v8.d[1], x1", "mov v9.d[1], x1", "mov v10.d[1], x1", "mov v11.d[1], x1",
            "mov v12.d[1], x1", "mov v13.d[1], x1", "mov v14.d[1], x1", "mov v15.d[1], x1",
            "movi v16.16b, #0xee", "movi v17.16b, #0xee", "movi v18.16b, #0xee",
            "movi v19.16b, #0xee", "movi v20.16b, #0xee", "movi v21.16b, #0xee",
            "movi v22.16b, #0xee", "movi v23.16b, #0xee", "movi v24.16b, #0xee",
            "movi v25.16b, #0xee", "movi v26.16b, #0xee", "movi v27.16b, #0xee",
            "movi v28.16b, #0xee", "movi v29.16b, #0xee", "movi v30.16b, #0xee",
            "movi v31.16b, #0xee",
            "movz x1, #0x5000, lsl #16", "msr nzcv, x1",
            "msr fpsr, xzr",
            out("x1") _, out("x2") _, out("x3") _, out("x4") _, out("x5") _, out("x6") _,
            out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
            out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
            out("v6") _, out("v7") _, out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _, out("v16") _,
            out("v17") _, out("v18") _, out("v19") _, out("v20") _, out("v21") _,
            out("v22") _, out("v23") _, out("v24") _, out("v25") _, out("v26") _,
            out("v27") _, out("v28") _, out("v29") _, out("v30") _, out("v31") _,
            options(nostack, nomem),
        )
    };
}

/// Lays out `direct_call_site` at the page start (followed by `ret`) and the
/// stub 64 bytes further, runs the site with the pattern registers and
/// returns what the harness saw plus the page address.
fn run_site_with_stub(
    selector: SelectorAccess,
    call_addr: CallAddr,
) -> (Ctx, u64, Vec<(DirectFrame, u8)>) {
    const STUB_AT: usize = 64;
    // The page address is needed to encode the bl: map first, then write.
    let page = CodePage::new(&[0; 4096]);
    let stub = direct_stub(selector, fake_direct_entry as *const () as u64, call_addr).unwrap();
    let site = direct_call_site(page.addr(), page.addr() + STUB_AT as u64).unwrap();
    let mut code = vec![0u8; STUB_AT + stub.len()];
    code[..site.len()].copy_from_slice(&site);
    code[site.len()..site.len() + 4].copy_from_slice(&RET);
    code[STUB_AT..].copy_from_slice(&stub);
    page.write(&code);

    let mut ctx = pattern();
    if let SelectorAccess::Register { reg } = selector {
        ctx.x_in[reg as usize] = selector_addr();
    }
    SEEN.with(|s| s.borrow_mut().clear());
    set_selector(1);
    let ctx = run(page.addr(), ctx);
    (ctx, page.addr(), SEEN.with(|s| s.take()))
}

#[test]
fn the_direct_stub_behaves_like_svc_around_the_entry_call() {
    let forms = [
        SelectorAccess::ThreadPointer {
            offset: selector_tp_offset(),
        },
        SelectorAccess::Absolute {
            address: selector_addr(),
        },
        SelectorAccess::Register { reg: 28 },
    ];
    for selector in forms {
        let (ctx, _, seen) = run_site_with_stub(selector, CallAddr::Fixed(0x7777_1234));
        assert_eq!(seen.len(), 1, "{selector:?}: entry called once");
        let (frame, selector_during) = seen[0];
        assert_eq!(
            frame,
            DirectFrame {
                nr: ctx.x_in[8],
                args: std::array::from_fn(|i| ctx.x_in[i]),
                call_addr: 0x7777_1234,
            },
            "{selector:?}: frame built from x8, x0-x5"
        );
        assert!(FRAME_ALIGNED.with(Cell::get), "frame is 16-byte aligned");
        assert_eq!(selector_during, 0, "{selector:?}: entry runs with ALLOW");
        assert_eq!(selector_value(), 1, "{selector:?}: BLOCK again after");
        assert_eq!(
            ctx.x_out[0], ENTRY_RESULT as u64,
            "{selector:?}: result in x0"
        );
        assert_preserved(&ctx, &[]);
    }
}

#[test]
fn a_shared_stub_reports_its_return_address() {
    let access = SelectorAccess::ThreadPointer {
        offset: selector_tp_offset(),
    };
    let (ctx, page, seen) = run_site_with_stub(access, CallAddr::ReturnAddress);
    // The site's bl is its second instruction; the stub returns after it.
    assert_eq!(seen[0].0.call_addr, page + 8);
    assert_preserved(&ctx, &[]);
}

#[test]
fn rewritten_code_runs_after_flush_icache() {
    // movz x0, #imm ; ret
    let code = |imm: u32| [(0xd280_0000 | imm << 5).to_le_bytes(), RET].concat();
    let page = CodePage::new(&code(1));
    // SAFETY: the page holds `movz x0, #imm; ret`, a valid extern "C" fn() -> u64.
    let f: extern "C" fn() -> u64 = unsafe { std::mem::transmute(page.addr() as usize) };
    assert_eq!(f(), 1);
    page.write(&code(2));
    assert_eq!(f(), 2);
}

/// What the SIGTRAP handler read through `SyscallRegs`: nr, a0-a5, pc, sp.
static TRAPPED: [AtomicU64; 9] = [const { AtomicU64::new(0) }; 9];

const NEW_ARGS: [u64; 6] = [100, 101, 102, 103, 104, 105];
const NEW_RESULT: i64 = -4095;

extern "C" fn on_sigtrap(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: an SA_SIGINFO handler gets the interrupted thread's ucontext,
    // valid and unshared for the duration of the handler.
    let uc = unsafe { &mut *(ctx as *mut libc::ucontext_t) };
    let mut regs = SyscallRegs::new(uc);
    let args = regs.args();
    let seen = [
        regs.nr(),
        args[0],
        args[1],
        args[2],
        args[3],
        args[4],
        args[5],
        regs.pc(),
        regs.sp(),
    ];
    for (slot, value) in TRAPPED.iter().zip(seen) {
        slot.store(value, Ordering::SeqCst);
    }
    regs.set_args(NEW_ARGS);
    regs.set_result(NEW_RESULT);
    // A brk reports its own address: resume after it.
    let pc = regs.pc();
    regs.set_pc(pc + 4);
}

#[test]
fn syscall_regs_read_and_write_a_real_signal_frame() {
    // SAFETY: installs a handler for SIGTRAP, which only this test raises;
    // the handler touches atomics and its own ucontext only.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_sigtrap as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO;
        assert_eq!(
            libc::sigaction(libc::SIGTRAP, &act, std::ptr::null_mut()),
            0
        );
    }
    let (mut x0, mut x1, mut x2, mut x3, mut x4, mut x5) =
        (10u64, 11u64, 12u64, 13u64, 14u64, 15u64);
    let (pc, sp): (u64, u64);
    // SAFETY: brk raises SIGTRAP, whose handler (above) resumes after it
    // with only x0-x5 changed; x8 is an input the handler merely reads.
    unsafe {
        core::arch::asm!(
            "adr {here}, 2f",
            "mov {stack}, sp",
            "2: brk #0x7",
            here = out(reg) pc,
            stack = out(reg) sp,
            inout("x0") x0, inout("x1") x1, inout("x2") x2,
            inout("x3") x3, inout("x4") x4, inout("x5") x5,
            in("x8") 172u64,
        )
    };
    let seen: Vec<u64> = TRAPPED.iter().map(|v| v.load(Ordering::SeqCst)).collect();
    assert_eq!(seen, [172, 10, 11, 12, 13, 14, 15, pc, sp]);
    assert_eq!(x0, NEW_RESULT as u64, "set_result wrote x0");
    assert_eq!([x1, x2, x3, x4, x5], NEW_ARGS[1..], "set_args wrote x1-x5");
}

thread_local! {
    /// The stack pointer the fake arming function ran on, per call.
    static ARMED_ON: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Stands in for the engine's clone-child arming function.
extern "C" fn fake_arm() {
    let sp: u64;
    // SAFETY: reads the stack pointer only.
    unsafe {
        core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    ARMED_ON.with(|a| a.borrow_mut().push(sp));
    clobber_caller_saved();
}

#[test]
fn the_clone_child_entry_arms_then_resumes_with_registers_intact() {
    // Plays the child: switch to a fresh stack prepared as the engine would,
    // jump through [sp-8] as the clone gadget's child path does, and come
    // back at the resume address, which records sp and returns to the harness.
    // save: the harness's sp and x30, the fake stack top, sp at resume.
    let mut save = [0u64; 4];
    let save_ptr = save.as_mut_ptr() as u64;
    let mut ops = VecAssembler::<Aarch64Relocation>::new(0);
    let resume = ops.new_dynamic_label();
    let literal = ops.new_dynamic_label();
    dynasm!(ops
        ; .arch aarch64
        ; ldr x16, =>literal
        ; mov x17, sp
        ; stp x17, x30, [x16]
        ; ldr x17, [x16, 16]
        ; mov sp, x17
        ; ldur x16, [sp, -8]
        ; br x16
        ; =>resume
        ; ldr x16, =>literal
        ; mov x17, sp
        ; str x17, [x16, 24]
        ; ldp x17, x30, [x16]
        ; mov sp, x17
        ; ret
        ; .align 8
        ; =>literal
        ; .u64 save_ptr
    );
    let resume_offset = ops.labels().resolve_dynamic(resume).unwrap().0 as u64;
    let page = CodePage::new(&ops.finalize().unwrap());

    let mut stack = vec![0u128; 512];
    let top = stack.as_mut_ptr_range().end as u64;
    let words = [
        fake_arm as *const () as u64,
        page.addr() + resume_offset,
        clone_child_entry() as u64,
    ];
    assert_eq!(words.len(), CLONE_CHILD_WORDS);
    // SAFETY: the three words lie inside `stack`, just below its end.
    unsafe { std::ptr::copy_nonoverlapping(words.as_ptr(), (top - 24) as *mut u64, 3) };
    save[2] = top;

    ARMED_ON.with(|a| a.borrow_mut().clear());
    let ctx = run(page.addr(), pattern());
    // SAFETY: the emitted code wrote `save` through a raw pointer; read it back volatile.
    let sp_at_resume = unsafe { std::ptr::read_volatile(&save[3]) };
    let armed_on = ARMED_ON.with(|a| a.take());
    assert_eq!(armed_on.len(), 1, "the arming function ran once");
    let bottom = top - 512 * 16;
    assert!(
        (bottom..top - 24).contains(&armed_on[0]),
        "it ran on the child's stack, below the words"
    );
    assert_eq!(armed_on[0] % 16, 0, "with sp 16-byte aligned");
    assert_eq!(
        sp_at_resume, top,
        "the child resumes with sp at the stack top"
    );
    assert_eq!(
        ctx.x_out[0], ctx.x_in[0],
        "x0 (the child's clone result) kept"
    );
    // x16/x17: the trampoline's and the gadget's scratch; everything else kept.
    assert_preserved(&ctx, &[16, 17]);
}
