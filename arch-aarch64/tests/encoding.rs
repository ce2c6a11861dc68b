//! The emitted snippets decode (with capstone, arm64 mode) to the intended
//! instructions, and `find_syscalls` reports exactly the `svc #0` words.
//! Pure byte checks: they run on any host.

use capstone::arch::arm64::ArchMode;
use capstone::arch::BuildsCapstone;
use capstone::Capstone;
use sud_arch_aarch64::*;

fn disassemble(code: &[u8], base: u64) -> Vec<String> {
    let cs = Capstone::new().arm64().mode(ArchMode::Arm).build().unwrap();
    let insns = cs.disasm_all(code, base).unwrap();
    assert_eq!(insns.len() * 4, code.len(), "every word decodes");
    insns
        .iter()
        .map(|i| {
            format!("{} {}", i.mnemonic().unwrap(), i.op_str().unwrap())
                .trim()
                .to_string()
        })
        .collect()
}

#[test]
fn syscall_and_gadget_words_decode_as_documented() {
    assert_eq!(disassemble(&SYSCALL_INSN, 0), ["svc #0"]);
    assert_eq!(
        disassemble(&GADGETS[GADGET_RESTORER..], 0),
        ["mov x8, #0x8b", "svc #0", "brk #0"]
    );
    assert_eq!(NR_RT_SIGRETURN, 0x8b);
    let clone = disassemble(&clone_gadget(), 0);
    assert_eq!(
        clone,
        [
            "svc #0",
            "cbz x0, #0xc",
            "br x16",
            "ldur x16, [sp, #-8]",
            "br x16"
        ]
    );
}

#[test]
fn thread_pointer_flips_decode_to_mrs_and_strb() {
    let flip = |offset, value| {
        disassemble(
            &selector_flip(SelectorAccess::ThreadPointer { offset }, value),
            0,
        )
    };
    assert_eq!(
        flip(0x10, 1),
        [
            "mrs x16, tpidr_el0",
            "mov w17, #1",
            "strb w17, [x16, #0x10]"
        ]
    );
    // ALLOW stores the zero register: no value register needed.
    assert_eq!(
        flip(0xfff, 0),
        ["mrs x16, tpidr_el0", "strb wzr, [x16, #0xfff]"]
    );
    // Out of strb's 12-bit range (or negative): offset built in w17 and
    // sign-extended into the address.
    assert_eq!(
        flip(-0x1_2345, 1),
        [
            "mrs x16, tpidr_el0",
            "mov w17, #0xdcbb",
            "movk w17, #0xfffe, lsl #16",
            "add x16, x16, w17, sxtw",
            "mov w17, #1",
            "strb w17, [x16]"
        ]
    );
}

#[test]
fn register_and_absolute_flips_use_the_documented_scratch() {
    let flip = |access, value| disassemble(&selector_flip(access, value), 0);
    assert_eq!(
        flip(SelectorAccess::Register { reg: 28 }, 1),
        ["mov w17, #1", "strb w17, [x28]"]
    );
    assert_eq!(
        flip(SelectorAccess::Register { reg: 17 }, 1),
        ["mov w16, #1", "strb w16, [x17]"]
    );
    assert_eq!(
        flip(SelectorAccess::Register { reg: 3 }, 0),
        ["strb wzr, [x3]"]
    );
    assert_eq!(
        flip(
            SelectorAccess::Absolute {
                address: 0xffff_0000_1234_0000
            },
            1
        ),
        [
            "mov x16, #0x12340000",
            "movk x16, #0xffff, lsl #48",
            "mov w17, #1",
            "strb w17, [x16]"
        ]
    );
}

#[test]
#[should_panic(expected = "not a general-purpose register")]
fn a_flip_through_register_31_is_refused() {
    selector_flip(SelectorAccess::Register { reg: 31 }, 1);
}

fn stub(selector: SelectorAccess, call_addr: CallAddr) -> Vec<String> {
    disassemble(
        &direct_stub(selector, 0x0000_7fab_cdef_1230, call_addr).unwrap(),
        0,
    )
}

#[test]
fn the_direct_stub_saves_flips_calls_and_restores_in_order() {
    let tp = SelectorAccess::ThreadPointer { offset: 0x20 };
    let code = stub(tp, CallAddr::Fixed(0x4000_1008));
    let at = |needle: &str| {
        code.iter()
            .position(|l| l == needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from {code:#?}"))
    };
    // Scratch first, with the stack allocation; everything else after.
    assert_eq!(code[0], "stp x16, x17, [sp, #-0x100]!");
    assert_eq!(code.last().unwrap(), "ret");
    assert_eq!(code[code.len() - 2], "ldp x16, x17, [sp], #0x100");
    let allow = at("strb wzr, [x16, #0x20]");
    let block = at("strb w17, [x16, #0x20]");
    let call = at("blr x16");
    assert!(at("stp x29, x30, [sp, #0xe0]") < allow && allow < call && call < block);
    assert!(at("ldp x29, x30, [sp, #0xe0]") < block);
    // Flags and FPSR survive the call.
    assert!(at("mrs x16, nzcv") < call && call < at("msr nzcv, x16"));
    assert!(at("mrs x17, fpsr") < call && call < at("msr fpsr, x17"));
    // Every general register but x0 saved and restored, every q register too.
    let saved: Vec<&String> = code.iter().filter(|l| l.starts_with("stp x")).collect();
    let restored: Vec<&String> = code.iter().filter(|l| l.starts_with("ldp x")).collect();
    for r in (1..=30).filter(|r| *r != 16 && *r != 17) {
        let named = |lines: &[&String]| {
            lines
                .iter()
                .any(|l| l.contains(&format!("x{r},")) || l.contains(&format!(", x{r},")))
        };
        assert!(named(&saved), "x{r} saved");
        assert!(named(&restored), "x{r} restored");
    }
    for q in (0..32).step_by(2) {
        let pair = format!("q{q}, q{}", q + 1);
        assert!(code
            .iter()
            .any(|l| l.starts_with("stp") && l.contains(&pair)));
        assert!(code
            .iter()
            .any(|l| l.starts_with("ldp") && l.contains(&pair)));
    }
    // The frame: nr, a0..a5, call_addr at 16-byte aligned sp, passed in x0.
    let frame = at("sub sp, sp, #0x40");
    assert_eq!(
        code[frame + 1..frame + 5],
        [
            "stp x8, x0, [sp]",
            "stp x1, x2, [sp, #0x10]",
            "stp x3, x4, [sp, #0x20]",
            "mov x16, #0x1008"
        ]
    );
    assert_eq!(code[frame + 5], "movk x16, #0x4000, lsl #16");
    assert_eq!(code[frame + 6], "stp x5, x16, [sp, #0x30]");
    assert_eq!(code[frame + 7], "mov x0, sp");
    assert_eq!(
        code[frame + 8..call],
        [
            "mov x16, #0x1230",
            "movk x16, #0xcdef, lsl #16",
            "movk x16, #0x7fab, lsl #32"
        ]
    );
    assert!(find_syscalls(
        &direct_stub(tp, 0x1000, CallAddr::ReturnAddress).unwrap(),
        0
    )
    .is_empty());
}

#[test]
fn a_shared_stub_takes_call_addr_from_the_link_register() {
    let code = stub(
        SelectorAccess::Register { reg: 28 },
        CallAddr::ReturnAddress,
    );
    assert!(code.contains(&"mov x16, x30".to_string()));
    assert!(code.contains(&"strb wzr, [x28]".to_string()));
    assert!(code.contains(&"strb w17, [x28]".to_string()));
}

#[test]
fn the_stub_refuses_registers_it_cannot_keep() {
    for reg in [0, 16, 17, 30, 31] {
        let err = direct_stub(
            SelectorAccess::Register { reg },
            0x1000,
            CallAddr::ReturnAddress,
        )
        .unwrap_err();
        assert_eq!(err, EmitError::SelectorRegisterUnusable(reg));
        assert!(err.to_string().contains(&format!("x{reg} cannot hold")));
    }
    assert_eq!(DIRECT_STUB_STACK, 832);
}

#[test]
fn call_sites_branch_to_the_stub_and_keep_x30() {
    let site = direct_call_site(0x10_0000, 0x10_2000).unwrap();
    assert_eq!(
        disassemble(&site, 0x10_0000),
        [
            "str x30, [sp, #-0x10]!",
            "bl #0x102000",
            "ldr x30, [sp], #0x10"
        ]
    );
    let back = direct_call_site(0x800_0000, 0x400_0004).unwrap();
    assert_eq!(disassemble(&back, 0x800_0000)[1], "bl #0x4000004");
    // bl reaches [bl - 128 MiB, bl + 128 MiB - 4]; the bl is at site + 4.
    let bl = 0x1000_0004u64;
    assert!(direct_call_site(bl - 4, bl + (128 << 20) - 4).is_ok());
    assert!(direct_call_site(bl - 4, bl - (128 << 20)).is_ok());
    let far = direct_call_site(bl - 4, bl + (128 << 20));
    assert_eq!(
        far,
        Err(EmitError::BranchOutOfRange {
            site: bl,
            target: bl + (128 << 20)
        })
    );
    assert!(far.unwrap_err().to_string().contains("±128 MiB"));
    assert!(direct_call_site(bl - 4, bl - (128 << 20) - 4).is_err());
    assert!(
        direct_call_site(0x1000, 0x2002).is_err(),
        "misaligned target"
    );
}

#[test]
fn find_syscalls_reports_every_svc_0_and_nothing_else() {
    let words: [u32; 12] = [
        0xd400_0001, // svc #0                     <- 0x1000
        0xd280_1168, // mov x8, #139
        0xd400_0021, // svc #1
        0xd400_0002, // hvc #0
        0xd400_0003, // smc #0
        0xffff_ffff, // data: undefined
        0xd400_0001, // svc #0                     <- 0x1018
        0x0000_0000, // udf #0 / zero padding
        0x0001_d400, // the svc bytes split across two words ...
        0x0000_0000, // ... must not count
        0xd65f_03c0, // ret
        0xd400_0001, // svc #0                     <- 0x102c
    ];
    let mut code: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(find_syscalls(&code, 0x1000), [0x1000, 0x1018, 0x102c]);
    // A trailing partial word is no instruction.
    code.extend_from_slice(&[0x01, 0x00]);
    assert_eq!(find_syscalls(&code, 0x1000), [0x1000, 0x1018, 0x102c]);
    assert!(find_syscalls(&[], 0).is_empty());
    assert!(find_syscalls(&GADGETS[..GADGET_RESTORER], 0).len() == 1);
}

#[test]
fn flush_icache_accepts_any_mapped_range() {
    // Real effect is checked by the execution tests on aarch64; here the
    // call must be harmless on every host, for an empty range too.
    let code = [0u8; 256];
    flush_icache(code.as_ptr() as usize, code.len());
    flush_icache(code.as_ptr() as usize + 3, 0);
}
