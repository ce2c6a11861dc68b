//! Finding syscall sites in aarch64 machine code with capstone.

use crate::SYSCALL_INSN;
use capstone::arch::arm64::ArchMode;
use capstone::arch::BuildsCapstone;
use capstone::Capstone;

/// The addresses of every `svc #0` in `code`, which starts at `base`.
///
/// aarch64 instructions are 4-byte words at 4-byte aligned addresses, so
/// `code` is read as consecutive words from its first byte; words that do
/// not decode (literal pools, padding) are skipped, and a trailing partial
/// word is ignored. Other `svc` immediates, `hvc`, `smc` and data words are
/// not reported: on Linux only `svc #0` is a system call.
pub fn find_syscalls(code: &[u8], base: u64) -> Vec<u64> {
    let mut cs = Capstone::new()
        .arm64()
        .mode(ArchMode::Arm)
        .build()
        .expect("capstone is built with arm64 support");
    // Skip undecodable words instead of stopping at the first one.
    cs.set_skipdata(true).expect("capstone supports skipdata");
    let words = &code[..code.len() / 4 * 4];
    let insns = cs
        .disasm_all(words, base)
        .expect("disassembly with skipdata does not fail on data");
    insns
        .iter()
        .filter(|insn| insn.mnemonic() == Some("svc") && insn.bytes() == SYSCALL_INSN)
        .map(|insn| insn.address())
        .collect()
}
