//! A small x86-64 translator: copies a foreign function into the code
//! cache so that it runs in the foreign personality without a single trap.
//!
//! The copy begins with a selector flip to BLOCK, every `ret` is preceded
//! by a flip to ALLOW (the function returns to host code), and every
//! `syscall` becomes a direct-call site of a [`DirectStub`]. Direct branches
//! inside the function and rip-relative operands are relocated by iced-x86's
//! block encoder. It translates one function at a time and follows only
//! direct control flow: indirect jumps, calls into the function itself
//! (their `ret` would flip to ALLOW mid-function), jumps out of it and the
//! legacy syscall entries (`int 0x80`, `sysenter`, which would run
//! unhooked from the excluded cache) are refused with
//! [`Error::Untranslatable`]. Calls out of the function are kept: the
//! callee runs in place with the selector on BLOCK, so its syscalls trap.

use crate::direct::{selector_flip, DirectStub, SelectorAccess, DIRECT_CALL_SITE_LEN};
use crate::{CodeCache, Error};
use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, Decoder, DecoderOptions, FlowControl, Formatter,
    Instruction, InstructionBlock, NasmFormatter,
};
use sud_engine::Selector;

/// Filler of a site placeholder until the real sequence is patched in.
const PLACEHOLDER: [u8; DIRECT_CALL_SITE_LEN] = [0xcc; DIRECT_CALL_SITE_LEN];

/// Translates foreign functions into one code cache.
#[derive(Debug, Clone, Copy)]
pub struct Translator<'c> {
    cache: &'c CodeCache,
    stub: DirectStub,
    access: SelectorAccess,
}

/// A translated function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    entry: usize,
    len: usize,
    /// (the `call_addr` hooks see: the site's end in the cache, the foreign
    /// address just after the original `syscall`)
    sites: Vec<(u64, u64)>,
}

impl Translation {
    /// Where to call the translated function (same ABI as the original).
    pub fn entry(&self) -> usize {
        self.entry
    }

    /// Bytes of translated code.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no code was emitted (never true for a successful translation).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many `syscall` instructions became direct-call sites.
    pub fn syscall_sites(&self) -> usize {
        self.sites.len()
    }

    /// The foreign address a hook's `call_addr` stands for: hooks entered
    /// from a site see the site's end in the cache, this gives back the
    /// address just after the original `syscall`.
    pub fn foreign_call_addr(&self, call_addr: u64) -> Option<u64> {
        self.sites.iter().find(|s| s.0 == call_addr).map(|s| s.1)
    }
}

impl<'c> Translator<'c> {
    /// A translator emitting into `cache`, with `stub` (in the same cache)
    /// for syscall sites and `access` for the flips.
    pub fn new(cache: &'c CodeCache, stub: DirectStub, access: SelectorAccess) -> Self {
        Translator {
            cache,
            stub,
            access,
        }
    }

    /// Translates the function whose machine code is `code`, found at
    /// `foreign_addr` (rip-relative operands and branch targets are read
    /// relative to it).
    pub fn translate_function(&self, code: &[u8], foreign_addr: u64) -> Result<Translation, Error> {
        let block = selector_flip(self.access, Selector::Block)?;
        let allow = selector_flip(self.access, Selector::Allow)?;
        let end = foreign_addr + code.len() as u64;
        let inside = |target: u64| (foreign_addr..end).contains(&target);

        let mut out = vec![declare_bytes(&block, 0)?];
        let mut site_indices = Vec::new();
        let mut decoder = Decoder::with_ip(64, code, foreign_addr, DecoderOptions::NONE);
        for insn in &mut decoder {
            let at = insn.ip();
            let refuse = |why: &str| Error::Untranslatable {
                at,
                why: format!("{} ({why})", text(&insn)),
            };
            if insn.is_invalid() {
                return Err(refuse("not a valid instruction"));
            }
            if insn.code() == Code::Syscall {
                site_indices.push((out.len(), insn.next_ip()));
                out.push(declare_bytes(&PLACEHOLDER, at)?);
                continue;
            }
            let int80 = insn.code() == Code::Int_imm8 && insn.immediate8() == 0x80;
            if int80 || insn.code() == Code::Sysenter {
                return Err(refuse(
                    "a legacy syscall entry would run unhooked from the cache",
                ));
            }
            match insn.flow_control() {
                FlowControl::Return => {
                    out.push(declare_bytes(&allow, at)?);
                    let mut ret = insn;
                    ret.set_ip(0);
                    out.push(ret);
                }
                FlowControl::IndirectBranch => {
                    return Err(refuse("indirect jumps are not followed"))
                }
                FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch
                    if !inside(insn.near_branch_target()) =>
                {
                    return Err(refuse("jumps out of the function are not followed"));
                }
                FlowControl::Call if inside(insn.near_branch_target()) => {
                    return Err(refuse(
                        "a call into the function would return through an exit flip",
                    ));
                }
                _ => out.push(insn),
            }
        }

        let mut sites = Vec::with_capacity(site_indices.len());
        let mut len = 0;
        let entry = self.cache.emit_with(|rip| {
            let encoded = BlockEncoder::encode(
                64,
                InstructionBlock::new(&out, rip as u64),
                BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
            )
            .map_err(|e| Error::Encode(e.to_string()))?;
            let mut bytes = encoded.code_buffer;
            for &(index, foreign_next) in &site_indices {
                let offset = encoded.new_instruction_offsets[index] as usize;
                let site = self.stub.site(rip + offset)?;
                bytes[offset..offset + site.len()].copy_from_slice(&site);
                sites.push(((rip + offset + site.len()) as u64, foreign_next));
            }
            len = bytes.len();
            Ok(bytes)
        })?;
        Ok(Translation { entry, len, sites })
    }
}

/// Raw bytes as one pseudo-instruction carrying `ip` (0: a new instruction
/// no branch targets; otherwise the foreign address branches to it use).
fn declare_bytes(bytes: &[u8], ip: u64) -> Result<Instruction, Error> {
    let mut insn =
        Instruction::with_declare_byte(bytes).map_err(|e| Error::Encode(e.to_string()))?;
    insn.set_ip(ip);
    Ok(insn)
}

fn text(insn: &Instruction) -> String {
    let mut s = String::new();
    NasmFormatter::new().format(insn, &mut s);
    s
}
