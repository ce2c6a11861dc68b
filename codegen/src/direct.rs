//! Selector flips and direct hook calls for generated x86-64 code.
//!
//! Flips reach the selector through the thread pointer by default
//! ([`thread_selector`]): the engine's selector lives in static TLS, so its
//! `fs`-relative offset is one constant for every thread, the emitted
//! instruction needs no register, and the same code runs in any thread.
//!
//! A direct stub ([`DirectStub`]) stands in for the `syscall` instruction:
//! a translated site is `lea rsp,[rsp-128]; call stub` (10 bytes, in place
//! of the 2-byte `syscall`), and the stub enters the engine's dispatch core
//! through [`sud_engine::direct_entry_deferring`], counted as
//! `Entrance::Direct`; a call the hooks let run is then executed by the stub
//! itself, from the cache, one `ret` away from the site. The
//! stub runs where foreign code may hold libc's locks: it allocates
//! nothing, takes no lock, and keeps every register the `syscall`
//! instruction keeps (see [`VectorState`] for the vector registers);
//! the entrance never unwinds (hook panics abort).

use crate::{CodeCache, Error};
use sud_arch_x86_64::emit;
use sud_engine::{selector_location, DirectFrame, Selector};

pub use sud_arch_x86_64::emit::{Rq, SelectorAccess, DIRECT_CALL_SITE_LEN};

/// The access every thread can use: `fs:[offset]` with the engine's
/// static-TLS offset (see the module documentation for why).
pub fn thread_selector() -> Result<SelectorAccess, Error> {
    let tp_offset = selector_location().tp_offset;
    let offset = i32::try_from(tp_offset).map_err(|_| Error::SelectorOutOfReach { tp_offset })?;
    Ok(SelectorAccess::ThreadPointer { offset })
}

/// The one instruction that sets the selector to `value`: BLOCK at the
/// entry of a translated foreign block, ALLOW at its exit to host code.
pub fn selector_flip(access: SelectorAccess, value: Selector) -> Result<Vec<u8>, Error> {
    Ok(emit::selector_flip(access, value as u8)?)
}

/// What a direct stub saves of the vector and floating-point state around
/// the Rust it calls. Measured here (`cargo bench -p sud-codegen --bench
/// direct_hook`, AVX-512 machine): the whole `Sse` stub with an entry that
/// returns at once costs ~8-15 ns; `Full` adds ~75 ns (an `xsavec`/`xrstor`
/// pair over a ~2.5 KiB area).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorState {
    /// xmm0-15 and MXCSR: the state compiled SSE code clobbers. Enough for
    /// foreign code that keeps no ymm/zmm upper half, zmm16-31, mask
    /// register or x87 value live across a syscall (compilers treat a
    /// syscall wrapper as a call, which kills all of those anyway).
    Sse,
    /// All user state XCR0 enables (x87, SSE, AVX, AVX-512, ...), exactly
    /// what the `syscall` instruction keeps. Needs `xsavec`.
    Full,
}

impl VectorState {
    fn for_emitter(self) -> Result<emit::VectorSave, Error> {
        match self {
            VectorState::Sse => Ok(emit::VectorSave::Sse),
            VectorState::Full => {
                if !std::arch::is_x86_feature_detected!("xsavec") {
                    return Err(Error::CpuLacks("xsavec"));
                }
                // CPUID.(EAX=0Dh, ECX=1).EBX: size of the compacted area for
                // every enabled component (XCR0 | IA32_XSS): an upper bound
                // for what xsavec with XCR0's components writes.
                let leaf = std::arch::x86_64::__cpuid_count(0xd, 1);
                Ok(emit::VectorSave::Xsavec { area_len: leaf.ebx })
            }
        }
    }
}

/// A direct-call stub in a code cache. Sites that call it must be within
/// rel32 reach: in the same cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectStub {
    addr: usize,
}

impl DirectStub {
    /// Emits a stub into `cache` that flips the selector through `access`
    /// and saves `vectors`.
    pub fn new(
        cache: &CodeCache,
        access: SelectorAccess,
        vectors: VectorState,
    ) -> Result<Self, Error> {
        Self::with_entry(cache, access, vectors, sud_engine::direct_entry_deferring)
    }

    /// A stub that calls `entry` instead of the engine's direct entrance:
    /// for an embedder that wraps the entrance (the wrapper keeps the same
    /// rules: no allocation, no lock foreign code could hold, no unwinding,
    /// and answers `sud_engine::EXECUTE_IN_STUB` to have the stub execute
    /// the frame's call), and for measuring the stub alone.
    pub fn with_entry(
        cache: &CodeCache,
        access: SelectorAccess,
        vectors: VectorState,
        entry: extern "C" fn(&mut DirectFrame) -> i64,
    ) -> Result<Self, Error> {
        let code = emit::direct_call_stub(access, entry as usize as u64, vectors.for_emitter()?)?;
        Ok(DirectStub {
            addr: cache.emit(&code)?,
        })
    }

    /// The stub's address.
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// The bytes that replace a `syscall` instruction, for a site at
    /// `site` (the address the sequence will have). The hooks see the
    /// site's end (`site + DIRECT_CALL_SITE_LEN`) as `call_addr`.
    pub fn site(&self, site: usize) -> Result<[u8; DIRECT_CALL_SITE_LEN], Error> {
        Ok(emit::direct_call_site(site as u64, self.addr as u64)?)
    }
}
