//! A dynamic binary translator for x86-64, in the style of Frida Stalker
//! and DynamoRIO: any code in the process (a library function, a thread's
//! entry point) runs translated from the code cache one basic block at a
//! time, optionally instrumented by a per-block transformer, with its
//! syscalls reaching the engine's hooks by direct calls.
//!
//! ```
//! use sud_codegen::dbi::Dbi;
//! use sud_codegen::CodeCache;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! static BLOCKS: AtomicU64 = AtomicU64::new(0);
//! let cache: &'static CodeCache = Box::leak(Box::new(CodeCache::new(sud_codegen::DEFAULT_CAPACITY)?));
//! let _engine = sud_engine::Engine::builder().placement(cache.placement()).install()?;
//! let dbi = Dbi::builder()
//!     .transformer(|block| block.put_counter(&BLOCKS, 1))
//!     .install(cache)?;
//! extern "C" fn answer() -> i64 { 42 }
//! // SAFETY: `answer` is a C-ABI function that takes no arguments.
//! let value = unsafe { dbi.call(answer as usize, &[]) }?;
//! assert_eq!(value, 42);
//! assert!(BLOCKS.load(Ordering::Relaxed) >= 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How control flows
//! - [`Dbi::call`] enters a translated function through a trampoline in
//!   the cache that flips the selector to BLOCK; the function's final
//!   `ret` finds the trampoline's return address in the block map and
//!   flips back to ALLOW. Inside translated code the selector is BLOCK.
//! - Blocks are translated when control first reaches them (see
//!   the `block` module for what becomes of each instruction). Direct branches are
//!   chained block to block once both ends exist; indirect jumps, calls
//!   and returns go through a lookup of translated blocks; calls push the
//!   native return address, so code that inspects it sees the native one.
//! - Syscalls in translated code are direct calls of the engine's dispatch
//!   core (counted as `Entrance::Direct`), no signal involved.
//! - Code the translator cannot handle, and code at a
//!   [`DbiBuilder::stop_at`] address, runs native with the selector still
//!   on BLOCK: the engine's trap path catches its syscalls. Once native, it
//!   stays native until it returns into translated code's caller; the
//!   `native_*` counters say how often that happened.
//! - Threads: a `clone`/`clone3`/`vfork` in translated code runs as a
//!   real `syscall` from the cache, so the child continues in translated
//!   code on its own stack (a thread made by `pthread_create` from
//!   translated code runs its start routine translated), and the child
//!   arms itself (selector BLOCK) before its next instruction. The engine's
//!   hooks do not see those three syscalls; [`DbiCounters::direct_sites`]
//!   counts their sites with the others.
//!
//! # When translation runs, and the malloc risk
//! A lookup miss or an unlinked exit calls into Rust through the host stub
//! (selector ALLOW, every register and the vector state saved), which
//! translates the block then and there, on the thread that reached it.
//! That thread's foreign code may be inside `malloc` holding its lock, so
//! translation allocates nothing: decoding reads into, and encoding writes
//! from, buffers reserved at install; blocks go into an arena carved out of
//! the cache at install; the block map, exit and callout tables are fixed
//! arrays. Its one lock is the translator's own, which foreign code never
//! holds. The user's transformer runs there too and must follow the same
//! rules; callouts likewise (they run wherever the foreign code is).
//! Nothing unwinds out of the host entry: a panic there aborts.
//!
//! # Code that changes
//! Translations are dropped ([`Dbi::invalidate`], [`Dbi::flush`]) when the
//! native bytes they came from may have changed:
//! - memory syscalls (`munmap`, `mremap`, `mprotect` that removes
//!   execution or adds writing, `mmap` over a range; `dlclose` unmaps
//!   through them) invalidate their range after they ran. Translated
//!   code's reach the translator by themselves (its direct entrance runs
//!   them and then looks); for native code an embedder's hooks call
//!   [`Dbi::note_memory_change`].
//! - Writes to code that stays executable: blocks translated from memory
//!   that is writable and executable at once (such mappings are read from
//!   `/proc/self/maps` at install and followed through the same syscalls)
//!   compare their native bytes with the bytes they were made from on every
//!   entry, and a block whose bytes changed is dropped and translated
//!   again. This is Stalker's trust threshold at "never trust", applied
//!   only to writable code: a JIT that reuses a page without a syscall is
//!   followed exactly, at a few cycles per entry for those blocks only,
//!   while code in read-only pages (nearly all code) pays nothing and
//!   changes only through an `mprotect` the translator sees.
//!   Write-protecting translated pages (DynamoRIO's way) would need a
//!   SIGSEGV handler of the translator's own, the engine's business.
//! - A thread running in a dropped block finishes its pass through it and
//!   leaves at its next exit (every branch out of and into a dropped block
//!   is pointed back at its exit stub); dead code is reused once every
//!   thread has been seen outside it (an epoch scheme, no lock on the
//!   threads' side: see the `records` module).
//!
//! # Limits
//! - Signals (see the `signals` module): one that lands in a block's code
//!   at a point where the native state is known (a copied instruction,
//!   branch and lookup glue, an exit stub) reaches the program's handler
//!   with the native pc, stack pointer and registers in its context, the
//!   handler runs translated, and the frame resumes at the translation of
//!   whatever native pc the context holds at `rt_sigreturn`. This needs
//!   the engine to wrap the program's handlers
//!   (`Builder::foreign_signal_handlers`). A blocking syscall run by the
//!   direct stub shows the program's `syscall` instruction (or the one
//!   after). Inside the glue of a syscall site, a callout, a counter,
//!   transformer inline code or a shared stub the state is not known, nor
//!   during a syscall the engine runs in Rust: such a signal is delivered
//!   as the engine delivers it elsewhere (the cache pc in the context, the
//!   handler native) and resumes where it landed
//!   ([`DbiCounters::cache_frames`]).
//!   `rt_sigaction` and `sigaltstack` from translated code go through the
//!   trap path (the engine keeps signal actions and the alternate stack
//!   virtual there), and count as traps.
//! - `int 0x80` in translated code is called on a page outside the cache,
//!   so it traps and the engine runs it with the i386 table (counted in
//!   `CounterSnapshot::compat`).
//! - The glue reaches its per-thread slots and the selector through `fs`,
//!   so translated code's `arch_prctl(ARCH_SET_FS)` is emulated: the fs
//!   base it sees is virtual (kept per thread as a delta from the real
//!   one; `fs:` operands add it once a thread moved it). These calls are
//!   not shown to syscall hooks (nor are `int 0x80` ones, which the engine
//!   runs with the i386 table without hooks). `rdfsbase`/`wrfsbase` run
//!   native; string instructions with an `fs:` override see the real base.
//! - Calls are emulated (push, jump) and returns looked up, so user-mode
//!   CET shadow stacks cannot be enabled for translated code.
//! - Each indirect branch and return carries a copy of the lookup, which
//!   follows the block map's probe chain (see the `table` module); the
//!   map grows, so lookups stay in translated code however many blocks
//!   there are. Each checks a cache of its last two targets first (an
//!   immediate compare and a direct jump each), which keeps returns to one
//!   or two callers, and calls through a pointer that rarely changes, off
//!   the lookup and its indirect jump. Returns are still not `ret`
//!   instructions, so the CPU's return stack does not
//!   predict them (an attempt at real `call`/`ret` pairs measured slower
//!   here and was reverted).
//! - A transformer must not call [`Dbi::call`] (the translator lock is
//!   held while it runs).
//!
//! SUD is not a security boundary and neither is this: translated code can
//! write the selector, or jump anywhere.

#![cfg(target_arch = "x86_64")]

mod block;
mod follow;
mod glue;
mod library;
mod records;
mod scratch;
mod signals;
mod stubs;
mod table;
mod transform;

pub use follow::FollowError;
pub use iced_x86::{Instruction, Mnemonic};
pub use library::{Library, LoadError};
pub use transform::BlockIterator;

use crate::direct::{thread_selector, DirectStub, VectorState};
use crate::{CodeCache, Error};
use block::{LeftNative, Translator};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, Ordering};
use std::sync::Mutex;
use stubs::{SharedStubs, StubParams, VectorSave};
use table::{BlockMap, NO_OWNER};

/// Host-stub requests: kind in the top nibble, an index below.
const REQ_RESOLVE: u32 = 1 << 28;
const REQ_LINK: u32 = 2 << 28;
const REQ_CALLOUT: u32 = 3 << 28;
const REQ_CHILD: u32 = 4 << 28;
const REQ_STALE: u32 = 5 << 28;
const REQ_FILL: u32 = 6 << 28;
const REQ_INDEX: u32 = (1 << 28) - 1;

/// Default size of the translator's arena in the code cache.
pub const DEFAULT_ARENA: usize = 16 << 20;
/// Where an exit stub's data (native target, then the address of the
/// rel32 to patch) starts, from the return address of its host call: after
/// its `jmp fs:[target]`.
const EXIT_DATA_OFFSET: u64 = 8;
/// Callout sites the translator can make.
const MAX_CALLOUT_SITES: usize = 1 << 18;

/// Why the translator could not be installed or used.
#[derive(Debug)]
pub enum DbiError {
    /// Code generation failed (cache, stub, encoding).
    Codegen(Error),
    /// The engine could not be installed.
    Engine(sud_engine::Error),
    /// A translator is already installed in this process (one per process,
    /// like the engine).
    AlreadyInstalled,
    /// The engine is installed with an excluded region other than this
    /// cache: the clone-family syscalls that translated code issues for
    /// real would trap. Install the engine with `cache.placement()`.
    NotTheExcludedRegion,
    /// This crate's thread-local scratch slots are beyond a 32-bit offset
    /// from the thread pointer (dynamic TLS): link the crate into the
    /// executable.
    ScratchOutOfReach,
    /// More than six integer (or eight floating-point) arguments for
    /// [`Dbi::call`].
    TooManyArguments(usize),
}

impl std::fmt::Display for DbiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbiError::Codegen(e) => write!(f, "code generation for the translator failed: {e}"),
            DbiError::Engine(e) => write!(f, "installing the engine failed: {e}"),
            DbiError::AlreadyInstalled => write!(f, "a translator is already installed in this process"),
            DbiError::NotTheExcludedRegion => write!(
                f,
                "the engine's excluded region is not this code cache; install the engine with cache.placement()"
            ),
            DbiError::ScratchOutOfReach => write!(
                f,
                "the translator's thread-local slots are not in static TLS; link sud-codegen into the executable"
            ),
            DbiError::TooManyArguments(n) => write!(f, "{n} arguments given; at most 6 integer and 8 floating-point arguments are passed"),
        }
    }
}

impl std::error::Error for DbiError {}

impl From<Error> for DbiError {
    fn from(e: Error) -> Self {
        DbiError::Codegen(e)
    }
}

/// What the entry trampoline reads and writes (offsets baked into it).
#[repr(C)]
struct CallArgs {
    ints: [u64; 6],
    floats: [f64; 8],
    vector_count: u64,
    xmm0: f64,
}

/// What a function run by [`Dbi::call_with_floats`] returned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallResult {
    /// The integer (or pointer) result.
    pub rax: u64,
    /// The `double` result (low half of xmm0).
    pub xmm0: f64,
}

/// A callout registered with [`DbiBuilder::callout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalloutId(u32);

/// The foreign CPU state a callout sees and may change: general registers
/// and flags are written back when the callout returns. The stack pointer
/// and the program counter are for reading.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct CpuContext {
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rbx: u64,
    pub rbp: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rflags: u64,
    rsp: u64,
    pc: u64,
}

/// One memory operand of an instruction as it runs: where and how many
/// bytes (see [`CpuContext::memory_access`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryAccess {
    /// The effective address (segment base included).
    pub address: u64,
    /// Bytes accessed.
    pub size: usize,
}

/// The registers exactly as the host stub pushed them.
const SAVED_WORDS: usize = 16;

impl CpuContext {
    /// The foreign stack pointer.
    pub fn rsp(&self) -> u64 {
        self.rsp
    }

    /// The native address of the instruction the callout was put before
    /// (or of the block's end).
    pub fn pc(&self) -> u64 {
        self.pc
    }

    /// The instruction at [`pc`](Self::pc), decoded (no allocation).
    pub fn instruction(&self) -> Option<Instruction> {
        let mut bytes = [0u8; 15];
        let got = block::read_native(self.pc, &mut bytes);
        let mut decoder =
            iced_x86::Decoder::with_ip(64, &bytes[..got], self.pc, iced_x86::DecoderOptions::NONE);
        let insn = decoder.decode();
        (!insn.is_invalid()).then_some(insn)
    }

    /// The memory operand of `insn` evaluated with these registers: what
    /// a memory tracer wants from a callout put before the instruction
    /// (`ctx.memory_access(&ctx.instruction()?)`). None for instructions
    /// without one, and for vector-indexed (gather/scatter) operands.
    /// `fs`/`gs` operands include the thread's segment base.
    pub fn memory_access(&self, insn: &Instruction) -> Option<MemoryAccess> {
        use iced_x86::{OpKind, Register};
        let has_memory = (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Memory);
        if !has_memory || insn.memory_index().is_vector_register() {
            return None;
        }
        let size = insn.memory_size().size();
        if insn.is_ip_rel_memory_operand() {
            return Some(MemoryAccess {
                address: insn.ip_rel_memory_address(),
                size,
            });
        }
        let value = |r: Register| -> Option<u64> {
            let full = r.full_register();
            let v = match full {
                Register::None => 0,
                Register::RAX => self.rax,
                Register::RCX => self.rcx,
                Register::RDX => self.rdx,
                Register::RBX => self.rbx,
                Register::RSP => self.rsp,
                Register::RBP => self.rbp,
                Register::RSI => self.rsi,
                Register::RDI => self.rdi,
                Register::R8 => self.r8,
                Register::R9 => self.r9,
                Register::R10 => self.r10,
                Register::R11 => self.r11,
                Register::R12 => self.r12,
                Register::R13 => self.r13,
                Register::R14 => self.r14,
                Register::R15 => self.r15,
                _ => return None,
            };
            Some(if r.is_gpr32() { v & 0xffff_ffff } else { v })
        };
        let base = value(insn.memory_base())?;
        let index = value(insn.memory_index())?;
        let mut address = base
            .wrapping_add(index.wrapping_mul(u64::from(insn.memory_index_scale())))
            .wrapping_add(insn.memory_displacement64());
        if insn.memory_base().is_gpr32() || insn.memory_index().is_gpr32() {
            address &= 0xffff_ffff;
        }
        let segment = match insn.memory_segment() {
            Register::FS => Some(0x1003), // ARCH_GET_FS
            Register::GS => Some(0x1004), // ARCH_GET_GS
            _ => None,
        };
        if let Some(code) = segment {
            let mut segment_base = 0u64;
            // SAFETY: arch_prctl GET writes one u64 to the pointer given.
            let got = unsafe { libc::syscall(libc::SYS_arch_prctl, code, &mut segment_base) };
            if got != 0 {
                return None;
            }
            address = address.wrapping_add(segment_base);
        }
        Some(MemoryAccess { address, size })
    }
}

type Transformer = Box<dyn Fn(&mut BlockIterator<'_>) + Send + Sync>;
type OnBlock = Box<dyn Fn(&BlockEvent) + Send + Sync>;

/// A block was just translated (see [`DbiBuilder::on_block`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEvent {
    /// The native bytes it was made from: `[native, native_end)`.
    pub native: u64,
    pub native_end: u64,
    /// Its code in the cache.
    pub translated: u64,
    pub translated_len: u64,
    /// What the transformer attached ([`BlockIterator::set_user_data`]).
    pub user_data: u64,
}

/// Bytes of the transformers' scratch arena by default.
pub const DEFAULT_SCRATCH: usize = 1 << 20;
type Callout = Box<dyn Fn(&mut CpuContext, u64) + Send + Sync>;

/// Configures the translator. See [`Dbi::builder`].
pub struct DbiBuilder {
    transformer: Option<Transformer>,
    on_block: Option<OnBlock>,
    scratch_bytes: usize,
    callouts: Vec<Callout>,
    stops: Vec<u64>,
    arena: usize,
}

impl DbiBuilder {
    /// Sets the per-block transformer (see [`BlockIterator`]). Without one,
    /// every instruction is kept as it is.
    pub fn transformer(
        mut self,
        f: impl Fn(&mut BlockIterator<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.transformer = Some(Box::new(f));
        self
    }

    /// Registers a callout: `f(context, data)` runs wherever a transformer
    /// put it, with the selector on ALLOW. It runs where the foreign code
    /// may hold libc's locks: no allocation, no lock foreign code could
    /// hold, no panic (a panic aborts).
    pub fn callout(
        &mut self,
        f: impl Fn(&mut CpuContext, u64) + Send + Sync + 'static,
    ) -> CalloutId {
        self.callouts.push(Box::new(f));
        CalloutId(self.callouts.len() as u32 - 1)
    }

    /// Stops following at `native`: control that reaches it runs native
    /// from there on (selector BLOCK, syscalls trap) until it returns to a
    /// translated caller's trampoline.
    pub fn stop_at(mut self, native: usize) -> Self {
        self.stops.push(native as u64);
        self
    }

    /// Calls `f` after every block translation (a compile event), under
    /// the same rules as the transformer (no allocation, no lock foreign
    /// code could hold, no panic).
    pub fn on_block(mut self, f: impl Fn(&BlockEvent) + Send + Sync + 'static) -> Self {
        self.on_block = Some(Box::new(f));
        self
    }

    /// Bytes to reserve for [`BlockIterator::scratch`].
    pub fn scratch_bytes(mut self, bytes: usize) -> Self {
        self.scratch_bytes = bytes;
        self
    }

    /// Bytes of the code cache to reserve for translated blocks.
    pub fn arena(mut self, bytes: usize) -> Self {
        self.arena = bytes;
        self
    }

    /// Makes a code cache, installs the engine configured by `engine` with
    /// that cache as its excluded region, then the translator over it.
    pub fn install_with_engine(
        self,
        engine: sud_engine::Builder,
    ) -> Result<(&'static sud_engine::Engine, &'static Dbi), DbiError> {
        let cache: &'static CodeCache =
            Box::leak(Box::new(CodeCache::new(crate::DEFAULT_CAPACITY)?));
        let engine = engine
            .placement(cache.placement())
            .install()
            .map_err(DbiError::Engine)?;
        Ok((engine, self.install(cache)?))
    }

    /// Installs the translator over `cache`, which should be the engine's
    /// excluded region (`Engine::builder().placement(cache.placement())`).
    /// Once per process.
    pub fn install(self, cache: &'static CodeCache) -> Result<&'static Dbi, DbiError> {
        if INSTALLING.swap(true, Ordering::AcqRel) {
            return Err(DbiError::AlreadyInstalled);
        }
        let installed = self.install_claimed(cache);
        if installed.is_err() {
            // Nothing was published: a later attempt may succeed.
            INSTALLING.store(false, Ordering::Release);
        }
        installed
    }

    fn install_claimed(self, cache: &'static CodeCache) -> Result<&'static Dbi, DbiError> {
        if let Some(engine) = sud_engine::Engine::installed() {
            let ours = sud_engine::Region::Exclusive {
                start: cache.start(),
                len: cache.capacity(),
            };
            if engine.region() != ours {
                return Err(DbiError::NotTheExcludedRegion);
            }
        }
        let scratch = scratch::tp_offset().ok_or(DbiError::ScratchOutOfReach)?;
        let access = thread_selector()?;
        let vectors = if std::arch::is_x86_feature_detected!("xsavec") {
            VectorState::Full
        } else {
            VectorState::Sse
        };
        // Clone-family calls are issued at the site itself (see block.rs),
        // after the hooks have seen them through this entrance.
        let stub = DirectStub::with_entry(cache, access, vectors, direct_entry)?;
        let stub_syscall = signals::syscall_in_stub(stub.addr() as u64);
        let map = BlockMap::new().ok_or(DbiError::Codegen(Error::Os {
            op: "mmap(block map)",
            errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        }))?;
        let stubs = stubs::emit(
            cache,
            &StubParams {
                access,
                scratch,
                table: map.current_address(),
                host_entry: host_entry as extern "C" fn(*mut u64, u64) as usize as u64,
                resolve_request: REQ_RESOLVE as i32,
                vectors: VectorSave::detect(),
                bmi2: std::arch::is_x86_feature_detected!("bmi2"),
            },
        )?;
        map.insert(
            stubs.enter_return as u64,
            stubs.enter_return as u64,
            NO_OWNER,
        );
        // Reserved, not filled: filling it cost ~40 ms per process (16 MiB
        // written twice), paid at every exec of a followed program.
        let arena = cache.reserve(self.arena)?;
        let trap_gadget = signals::TrapGadget::new().ok_or(DbiError::Codegen(Error::Os {
            op: "mmap(trap gadget)",
            errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        }))?;
        let mut translator = Translator::new(arena as u64, self.arena as u64)?;
        translator.warm_up();
        for (start, end) in writable_code_now() {
            translator.writable.add(start, end);
        }
        let dbi = Box::leak(Box::new(Dbi {
            shared: Shared {
                cache,
                stub,
                stubs,
                scratch,
                map,
                sites: Registry::new(MAX_CALLOUT_SITES, 3),
                transformer: self.transformer,
                on_block: self.on_block,
                scratch_arena: transform::ScratchArena::new(self.scratch_bytes),
                callouts: self.callouts,
                stops: self.stops,
                counters: Counters::default(),
                forked: AtomicBool::new(false),
                // SAFETY: getpid has no preconditions.
                pid: std::sync::atomic::AtomicI32::new(unsafe { libc::getpid() }),
                restorer: AtomicU64::new(0),
                trap_gadget,
                virtual_fs: AtomicBool::new(false),
                target_cache: AtomicBool::new(true),
                stub_syscall,
            },
            translator: Mutex::new(translator),
            lock_owner: AtomicI32::new(0),
            pending_flush: AtomicBool::new(false),
        }));
        DBI.store(dbi, Ordering::Release);
        sud_engine::set_frame_hooks(&signals::HOOKS);
        Ok(dbi)
    }
}

static INSTALLING: AtomicBool = AtomicBool::new(false);
static DBI: AtomicPtr<Dbi> = AtomicPtr::new(std::ptr::null_mut());

/// The installed translator.
pub struct Dbi {
    shared: Shared,
    translator: Mutex<Translator>,
    /// The thread holding `translator`, or 0.
    lock_owner: AtomicI32,
    /// A memory change arrived on the thread holding the translator
    /// (a signal handler's hook): everything is flushed before the lock
    /// is given up.
    pending_flush: AtomicBool,
}

impl std::fmt::Debug for Dbi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dbi")
            .field("cache", &self.shared.cache)
            .field("counters", &self.counters())
            .finish()
    }
}

/// What the translator's parts share (read without the lock).
pub(crate) struct Shared {
    pub(crate) cache: &'static CodeCache,
    pub(crate) stub: DirectStub,
    pub(crate) stubs: SharedStubs,
    pub(crate) scratch: i32,
    pub(crate) map: BlockMap,
    /// Callout sites: callout, data, pc.
    pub(crate) sites: Registry,
    pub(crate) transformer: Option<Transformer>,
    pub(crate) on_block: Option<OnBlock>,
    pub(crate) scratch_arena: transform::ScratchArena,
    callouts: Vec<Callout>,
    stops: Vec<u64>,
    pub(crate) counters: Counters,
    /// Set in a forked child (see `adopt_child`): no more translation.
    pub(crate) forked: AtomicBool,
    /// The process this copy of the translator belongs to.
    pid: std::sync::atomic::AtomicI32,
    /// The restorer of the engine's signal frames, once a handler ran
    /// translated: left native, so that its `rt_sigreturn` traps.
    pub(crate) restorer: AtomicU64,
    pub(crate) trap_gadget: signals::TrapGadget,
    /// Some thread's fs base became virtual (see [`Dbi::virtual_fs`]):
    /// blocks translated since rewrite their `fs:` operands.
    pub(crate) virtual_fs: AtomicBool,
    /// Indirect branches get a cache of their last targets (`block.rs`).
    pub(crate) target_cache: AtomicBool,
    /// The direct stub's `syscall` instruction (see
    /// `signals::in_stub_syscall`), or 0.
    pub(crate) stub_syscall: u64,
}

impl Shared {
    pub(crate) fn is_stop(&self, native: u64) -> bool {
        self.stops.contains(&native) || native == self.restorer.load(Ordering::Relaxed)
    }
}

/// A fixed table of records of `width` words, appended under the
/// translator lock and read without a lock (a record is complete before
/// the code that names its index is written).
pub(crate) struct Registry {
    words: Box<[AtomicU64]>,
    width: usize,
    len: AtomicU64,
}

impl Registry {
    fn new(capacity: usize, width: usize) -> Self {
        Registry {
            words: (0..capacity * width).map(|_| AtomicU64::new(0)).collect(),
            width,
            len: AtomicU64::new(0),
        }
    }

    fn record(&self, index: u32) -> Option<&[AtomicU64]> {
        // A forked child may reach a site its parent made after the fork
        // (their caches are shared): not in this copy of the table.
        if u64::from(index) >= self.len.load(Ordering::Acquire) {
            return None;
        }
        let start = index as usize * self.width;
        self.words.get(start..start + self.width)
    }

    pub(crate) fn push(&self, values: &[u64]) -> Option<u32> {
        let index = self.len.load(Ordering::Relaxed);
        let index32 = u32::try_from(index).ok().filter(|&i| i <= REQ_INDEX)?;
        let start = index32 as usize * self.width;
        let record = self.words.get(start..start + self.width)?;
        for (word, value) in record.iter().zip(values) {
            word.store(*value, Ordering::Relaxed);
        }
        self.len.store(index + 1, Ordering::Release);
        Some(index as u32)
    }
}

/// Counters, relaxed atomics.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) blocks: AtomicU64,
    pub(crate) instructions: AtomicU64,
    pub(crate) direct_sites: AtomicU64,
    pub(crate) exits: AtomicU64,
    pub(crate) links: AtomicU64,
    pub(crate) lookup_misses: AtomicU64,
    pub(crate) native_blocks: AtomicU64,
    pub(crate) native_entries: AtomicU64,
    pub(crate) far_operands: AtomicU64,
    pub(crate) dropped_puts: AtomicU64,
    pub(crate) callouts: AtomicU64,
    pub(crate) translate_nanos: AtomicU64,
    pub(crate) invalidated: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) checked_blocks: AtomicU64,
    pub(crate) reclaimed_bytes: AtomicU64,
    pub(crate) native_frames: AtomicU64,
    pub(crate) cache_frames: AtomicU64,
    pub(crate) target_fills: AtomicU64,
}

/// The translator's totals at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbiCounters {
    /// Blocks translated.
    pub blocks: u64,
    /// Native instructions in them.
    pub instructions: u64,
    /// `syscall` instructions turned into direct-hook call sites.
    pub direct_sites: u64,
    /// Branch ends that got an exit stub (not yet translated targets).
    pub exits: u64,
    /// Exits later patched into direct jumps (block chaining).
    pub links: u64,
    /// Indirect transfers whose target was not in the inline lookup.
    pub lookup_misses: u64,
    /// Blocks left native (untranslatable, unreadable, stop addresses,
    /// arena or table full): their syscalls go to the trap path.
    pub native_blocks: u64,
    /// Transfers from translated code into native code.
    pub native_entries: u64,
    /// Rip-relative operands beyond rel32 reach, rewritten through a
    /// scratch register.
    pub far_operands: u64,
    /// Transformer puts dropped because a block's buffers were full.
    pub dropped_puts: u64,
    /// Callout invocations.
    pub callouts: u64,
    /// Wall-clock nanoseconds spent translating blocks (decode, transform,
    /// encode, publish), for the per-block translation cost.
    pub translate_nanos: u64,
    /// Blocks invalidated (by [`Dbi::invalidate`], [`Dbi::flush`], memory
    /// changes, or their own byte check).
    pub invalidated: u64,
    /// Calls of [`Dbi::flush`] (and flushes the translator made itself).
    pub flushes: u64,
    /// Blocks whose entry check found their native bytes changed.
    pub stale: u64,
    /// Blocks translated from writable executable memory, which check
    /// their bytes on every entry.
    pub checked_blocks: u64,
    /// Bytes of dead translations freed for reuse.
    pub reclaimed_bytes: u64,
    /// Signals that landed in translated code and were delivered with the
    /// native state in their context (the handler run translated).
    pub native_frames: u64,
    /// Signals that landed in translated code where the native state is
    /// not known (inside the glue of a syscall site, a callout, a counter,
    /// inline code or a shared stub): delivered with the cache pc, the
    /// handler run native.
    pub cache_frames: u64,
    /// Indirect transfers that found their site's target cache without
    /// their target while it had room: the translator was asked (and
    /// translated the target if needed), as for a lookup miss.
    pub target_fills: u64,
}

impl Dbi {
    /// Starts configuring the translator.
    pub fn builder() -> DbiBuilder {
        DbiBuilder {
            transformer: None,
            on_block: None,
            scratch_bytes: DEFAULT_SCRATCH,
            callouts: Vec::new(),
            stops: Vec::new(),
            arena: DEFAULT_ARENA,
        }
    }

    /// The installed translator, if any.
    pub fn installed() -> Option<&'static Dbi> {
        let ptr = DBI.load(Ordering::Acquire);
        // SAFETY: DBI only ever holds null or a leaked, never-freed Dbi.
        unsafe { ptr.as_ref() }
    }

    /// Runs `function` translated: `function(args...)` with up to six
    /// integer arguments, returning rax. Call it from host code (selector
    /// ALLOW); it returns with the selector on ALLOW.
    ///
    /// # Safety
    /// `function` must be the address of code that is safe to call with
    /// the C ABI and these arguments: it runs exactly as it would natively.
    pub unsafe fn call(&self, function: usize, args: &[u64]) -> Result<u64, DbiError> {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.call_with_floats(function, args, &[]) }.map(|r| r.rax)
    }

    /// [`Dbi::call`] with floating-point arguments too: up to six integer
    /// arguments (rdi, rsi, rdx, rcx, r8, r9) and eight `double`s (xmm0-7,
    /// with al = their count, as a varargs callee expects); returns both
    /// rax and xmm0 (a `double` result).
    ///
    /// # Safety
    /// As for [`Dbi::call`].
    pub unsafe fn call_with_floats(
        &self,
        function: usize,
        args: &[u64],
        floats: &[f64],
    ) -> Result<CallResult, DbiError> {
        if args.len() > 6 {
            return Err(DbiError::TooManyArguments(args.len()));
        }
        if floats.len() > 8 {
            return Err(DbiError::TooManyArguments(floats.len()));
        }
        let mut call_args = CallArgs {
            ints: [0; 6],
            floats: [0.0; 8],
            vector_count: floats.len() as u64,
            xmm0: 0.0,
        };
        call_args.ints[..args.len()].copy_from_slice(args);
        call_args.floats[..floats.len()].copy_from_slice(floats);
        let depth = scratch::with_scratch(|s| {
            s.depth.set(s.depth.get() + 1);
            s.depth.get()
        });
        if depth == 1 {
            records::checkpoint();
        }
        let start = self.resolve(function as u64);
        // SAFETY: `enter` is the entry trampoline emitted at install with
        // this exact C signature; what it runs is the caller's promise.
        let enter: extern "C" fn(u64, *mut CallArgs) -> u64 =
            unsafe { std::mem::transmute(self.shared.stubs.enter) };
        let rax = enter(start, &mut call_args);
        scratch::with_scratch(|s| s.depth.set(s.depth.get() - 1));
        if depth == 1 {
            records::leave();
            self.with_translator(|t| t.reclaim(&self.shared));
        }
        Ok(CallResult {
            rax,
            xmm0: call_args.xmm0,
        })
    }

    /// Drops every translation made from native bytes in `range` (code
    /// about to be or just rewritten, unmapped, reloaded): the next
    /// transfer there translates the bytes found then. Returns how many
    /// blocks were dropped. A thread running in one of them finishes its
    /// current pass through it and then leaves to the translator; the
    /// code is reused only once no thread can be inside it.
    pub fn invalidate(&self, range: std::ops::Range<usize>) -> u64 {
        self.with_translator(|t| t.invalidate(&self.shared, range.start as u64, range.end as u64))
    }

    /// What the transformer attached to the live translation of the block
    /// at `native` ([`BlockIterator::set_user_data`]).
    pub fn user_data_of(&self, native: usize) -> Option<u64> {
        self.with_translator(|t| {
            let (_, owner) = self.shared.map.get_owned(native as u64)?;
            t.is_live(owner).then(|| t.blocks[owner as usize].user_data)
        })
    }

    /// The native pc a code-cache address stands for (see the issue of
    /// signals landing in translated code): inside a block's translation,
    /// the native instruction being run or about to run. None outside the
    /// translator's blocks, or when the translator's lock is held by any
    /// thread (it never waits, so a signal handler may call it, even one
    /// that interrupted translation). Signal delivery uses the exact state
    /// (see the module documentation); this is the nearest native
    /// instruction for any cache address, glue included.
    pub fn native_pc_of(&self, cache_pc: usize) -> Option<u64> {
        if self.lock_owner.load(Ordering::Acquire) == current_tid() {
            return None;
        }
        let translator = self.translator.try_lock().ok()?;
        translator.native_pc_of(cache_pc as u64)
    }

    /// Drops every translation (see [`Dbi::invalidate`]).
    pub fn flush(&self) -> u64 {
        self.with_translator(|t| t.flush(&self.shared))
    }

    /// Tells the translator about a memory syscall that ran: `nr` (x86-64
    /// numbering), its six arguments and its raw result (`-errno` on
    /// failure). `munmap`, `mremap`, `mprotect`/`pkey_mprotect` that take
    /// away execution or add writing, and `mmap` over a range invalidate
    /// the translations of that range (`dlclose` unmaps through these);
    /// mappings that become writable and executable at once are noted, and
    /// blocks translated from them check their bytes on every entry.
    /// Syscalls of translated code reach this by themselves; an embedder's
    /// hooks call it for code that runs native (the trap path). Nothing
    /// here allocates.
    pub fn note_memory_change(&self, nr: u64, args: &[u64; 6], result: i64) {
        const PROT_WRITE: u64 = libc::PROT_WRITE as u64;
        const PROT_EXEC: u64 = libc::PROT_EXEC as u64;
        if (-4095..0).contains(&result) {
            return;
        }
        let page_end = |start: u64, len: u64| start.saturating_add((len + 4095) & !4095);
        let wx = |prot: u64| prot & (PROT_WRITE | PROT_EXEC) == PROT_WRITE | PROT_EXEC;
        let change = |start: u64, end: u64, writable_code: Option<bool>, drop: bool| {
            let s = &self.shared;
            let on_me = self.lock_owner.load(Ordering::Acquire) == current_tid();
            if on_me {
                // A hook on this thread's signal, while it translates:
                // flush before the lock is given up.
                self.pending_flush.store(true, Ordering::Release);
                return;
            }
            self.with_translator(|t| {
                match writable_code {
                    Some(true) => t.writable.add(start, end),
                    Some(false) => t.writable.remove(start, end),
                    None => {}
                }
                if drop {
                    t.invalidate(s, start, end);
                }
            });
        };
        let result = result as u64;
        match nr as i64 {
            libc::SYS_munmap => change(args[0], page_end(args[0], args[1]), Some(false), true),
            libc::SYS_mprotect | libc::SYS_pkey_mprotect => {
                let prot = args[2];
                let drop = prot & PROT_EXEC == 0 || prot & PROT_WRITE != 0;
                change(args[0], page_end(args[0], args[1]), Some(wx(prot)), drop);
            }
            libc::SYS_mmap => change(result, page_end(result, args[1]), Some(wx(args[2])), true),
            libc::SYS_mremap => {
                change(args[0], page_end(args[0], args[1]), Some(false), true);
                change(result, page_end(result, args[2]), None, true);
            }
            _ => {}
        }
    }

    /// Translated code's `arch_prctl(ARCH_SET_FS | ARCH_GET_FS, arg)`,
    /// emulated: the real fs base stays the thread's own, because the
    /// glue, the engine's selector flips and the Rust the glue calls all
    /// reach their thread-local state through it. The fs base translated
    /// code sees is kept as a per-thread delta from the real one; the
    /// first move (in any thread) drops every translation, and from then
    /// on translated `fs:` operands add the delta. Code that runs native
    /// (left native, or stop addresses) sees the real base. Returns None
    /// for other codes.
    fn virtual_fs(&self, code: u64, arg: u64) -> Option<i64> {
        const ARCH_SET_FS: u64 = 0x1002;
        const ARCH_GET_FS: u64 = 0x1003;
        // The kernel's limit: TASK_SIZE_MAX with 4-level paging.
        const LIMIT: u64 = (1 << 47) - 4096;
        let real = scratch::thread_pointer() as u64;
        match code {
            ARCH_SET_FS => {
                if arg >= LIMIT {
                    return Some(-(libc::EPERM as i64));
                }
                if !self.shared.virtual_fs.swap(true, Ordering::AcqRel) {
                    self.flush();
                }
                scratch::with_scratch(|s| s.fs_delta.set(arg.wrapping_sub(real)));
                Some(0)
            }
            ARCH_GET_FS => {
                let seen = real.wrapping_add(scratch::with_scratch(|s| s.fs_delta.get()));
                let bytes = seen.to_ne_bytes();
                let local = libc::iovec {
                    iov_base: bytes.as_ptr() as *mut libc::c_void,
                    iov_len: 8,
                };
                let remote = libc::iovec {
                    iov_base: arg as *mut libc::c_void,
                    iov_len: 8,
                };
                // SAFETY: writes 8 bytes to the program's pointer in our own
                // process; a bad pointer is an error here, not a fault.
                let written =
                    unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) };
                Some(if written == 8 {
                    0
                } else {
                    -(libc::EFAULT as i64)
                })
            }
            _ => None,
        }
    }

    /// Whether the calling thread holds the translator's lock (a signal
    /// that interrupted a translation).
    fn holds_lock(&self) -> bool {
        self.lock_owner.load(Ordering::Acquire) == current_tid()
    }

    /// Runs `f` on the translator, holding its lock (and noting who holds
    /// it, for [`Dbi::note_memory_change`]).
    fn with_translator<R>(&self, f: impl FnOnce(&mut Translator) -> R) -> R {
        let mut translator = self.translator.lock().unwrap_or_else(|p| p.into_inner());
        self.lock_owner.store(current_tid(), Ordering::Release);
        let value = f(&mut translator);
        if self.pending_flush.swap(false, Ordering::AcqRel) {
            translator.flush(&self.shared);
        }
        self.lock_owner.store(0, Ordering::Release);
        value
    }

    /// Where `native` runs now: its translation, or `None` if it has not
    /// been reached yet or was left native.
    pub fn translation_of(&self, native: usize) -> Option<usize> {
        let at = self.shared.map.get(native as u64)? as usize;
        self.shared.cache.contains(at).then_some(at)
    }

    /// The counters, read without a lock.
    pub fn counters(&self) -> DbiCounters {
        let c = &self.shared.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DbiCounters {
            blocks: r(&c.blocks),
            instructions: r(&c.instructions),
            direct_sites: r(&c.direct_sites),
            exits: r(&c.exits),
            links: r(&c.links),
            lookup_misses: r(&c.lookup_misses),
            native_blocks: r(&c.native_blocks),
            native_entries: r(&c.native_entries),
            far_operands: r(&c.far_operands),
            dropped_puts: r(&c.dropped_puts),
            callouts: r(&c.callouts),
            translate_nanos: r(&c.translate_nanos),
            invalidated: r(&c.invalidated),
            flushes: r(&c.flushes),
            stale: r(&c.stale),
            checked_blocks: r(&c.checked_blocks),
            reclaimed_bytes: r(&c.reclaimed_bytes),
            native_frames: r(&c.native_frames),
            cache_frames: r(&c.cache_frames),
            target_fills: r(&c.target_fills),
        }
    }

    /// Entries in the block map (translated and native blocks).
    pub fn mapped_blocks(&self) -> u64 {
        self.shared.map.len()
    }

    /// Where control for `native` goes: its translation (made now if
    /// needed), or `native` itself for code left native.
    fn resolve(&self, native: u64) -> u64 {
        let s = &self.shared;
        if s.cache.contains(native as usize) {
            return native;
        }
        let target = match s.map.get(native) {
            Some(target) => target,
            None => self.with_translator(|t| self.resolve_locked(t, native)),
        };
        if target == native {
            s.counters.native_entries.fetch_add(1, Ordering::Relaxed);
        }
        target
    }

    /// [`Dbi::resolve`] with the translator's lock held.
    fn resolve_locked(&self, translator: &mut Translator, native: u64) -> u64 {
        let s = &self.shared;
        if let Some(target) = s.map.get(native) {
            return target;
        }
        // Instant reads the vDSO clock: no allocation, no lock.
        let started = std::time::Instant::now();
        let mut made = translator.translate(s, native);
        if matches!(made, Err(LeftNative::ArenaFull | LeftNative::RecordsFull)) {
            // Reuse what dead code every thread has left, then retry.
            translator.reclaim(s);
            made = translator.translate(s, native);
        }
        let target = made.unwrap_or_else(|_: LeftNative| {
            s.counters.native_blocks.fetch_add(1, Ordering::Relaxed);
            // Remembered (so that the next transfer does not ask again)
            // until the range changes.
            translator.chunks.insert(native, native + 1);
            s.map.insert(native, native, NO_OWNER);
            native
        });
        let spent = started.elapsed().as_nanos() as u64;
        s.counters
            .translate_nanos
            .fetch_add(spent, Ordering::Relaxed);
        target
    }

    /// An exit stub ran (its host call returns to `resume`): resolve its
    /// target and patch the branch that led there into a direct jump (when
    /// the target is translated and the exit's block still alive).
    fn link(&self, resume: u64) -> u64 {
        let s = &self.shared;
        // SAFETY: `resume` is the return address of an exit stub's host
        // call; the stub's 16 data bytes follow its jump there, inside the
        // arena (written before the stub could run; the block is not
        // reclaimed while this thread is in its stub).
        let (native, exit) = unsafe {
            let data = (resume + EXIT_DATA_OFFSET) as *const u64;
            (data.read_unaligned(), data.add(1).read_unaligned())
        };
        self.with_translator(|t| {
            let target = self.resolve_locked(t, native);
            if s.cache.contains(target as usize) && t.link_exit(s, exit as u32, native, target) {
                s.counters.links.fetch_add(1, Ordering::Relaxed);
            }
            if target == native {
                s.counters.native_entries.fetch_add(1, Ordering::Relaxed);
            }
            target
        })
    }

    /// A target cache's fill stub ran (its host call returns to `resume`;
    /// the native target is in the scratch slot): resolve the target and
    /// fill an empty entry with it.
    fn fill(&self, resume: u64) -> u64 {
        let s = &self.shared;
        let native = scratch::with_scratch(|slots| slots.native.get());
        s.counters.target_fills.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `resume` is the return address of a fill stub's host
        // call; its 32 data bytes follow its jump there, in the arena
        // (written before the stub could run; not reclaimed while this
        // thread is in it).
        let data = unsafe {
            let at = (resume + EXIT_DATA_OFFSET) as *const u64;
            [0, 1, 2, 3].map(|i| at.add(i).read_unaligned())
        };
        self.with_translator(|t| {
            let target = self.resolve_locked(t, native);
            if s.cache.contains(target as usize) {
                t.fill_return_entry(s, [data[0], data[1]], (data[2], data[3]), native, target);
            } else if target == native {
                s.counters.native_entries.fetch_add(1, Ordering::Relaxed);
            }
            target
        })
    }

    /// Whether returns and indirect calls and jumps get a cache of their
    /// last two targets in front of the lookup (the default). Takes effect
    /// for blocks translated from now on ([`Dbi::flush`] to apply it
    /// everywhere); for measuring it.
    pub fn set_target_cache(&self, on: bool) {
        self.shared.target_cache.store(on, Ordering::Relaxed);
    }

    /// A block's entry check found its bytes changed: drop it (and what
    /// else came from those bytes) and go to the new translation.
    fn stale(&self, id: u32) -> u64 {
        let s = &self.shared;
        s.counters.stale.fetch_add(1, Ordering::Relaxed);
        self.with_translator(|t| {
            let Some(b) = t.blocks.get(id as usize).copied() else {
                return 0;
            };
            t.invalidate(s, b.native, b.native_end);
            self.resolve_locked(t, b.native)
        })
    }

    /// First thing a task made by a clone-like syscall in translated code
    /// does (it is still in translated code, before its next instruction):
    /// arm itself, and if it has an address space of its own (fork), stop
    /// translating, because the code cache is a shared mapping whose arena
    /// the parent keeps writing. Such a child runs what was translated
    /// before the fork and everything else native, under the trap net.
    ///
    /// `clone` has its flags in a register the child keeps; `clone3` has
    /// them in memory its parent may already have reused, so for `clone3`
    /// the child asks the kernel: same process (a thread), or a process
    /// sharing our address space (`kcmp(KCMP_VM)`, a vfork-like child).
    fn adopt_child(&self, nr: u32, saved: &[u64; SAVED_WORDS]) {
        const RDI: usize = 6;
        const KCMP_VM: i32 = 1;
        let s = &self.shared;
        let flags = match nr {
            56 => Some(saved[RDI]),
            58 => Some((libc::CLONE_VM | libc::CLONE_VFORK) as u64),
            _ => None,
        };
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let parent = s.pid.load(Ordering::Relaxed);
        let same_process = pid == parent;
        let shares_memory = match flags {
            Some(flags) => flags & libc::CLONE_VM as u64 != 0,
            // SAFETY: kcmp only compares two tasks' memory descriptors;
            // failure (no kcmp, no permission) counts as "not shared", the
            // safe answer (it only stops translation).
            None => {
                same_process
                    || unsafe { libc::syscall(libc::SYS_kcmp, pid, parent, KCMP_VM, 0, 0) } == 0
            }
        };
        let own_tls = match flags {
            Some(flags) => flags & libc::CLONE_SETTLS as u64 != 0 || !shares_memory,
            None => same_process || !shares_memory,
        };
        if own_tls && shares_memory {
            records::adopt_current(0);
            follow::adopt_followed_thread();
        }
        if !shares_memory {
            // Our own copy of the translator's state: the parent never sees it.
            s.forked.store(true, Ordering::Relaxed);
            s.pid.store(pid, Ordering::Relaxed);
        }
        let Some(engine) = sud_engine::Engine::installed() else {
            return;
        };
        // A child that cannot be armed runs on; only its native escapes
        // would go uncaught.
        if own_tls {
            // ALLOW: this is host code; the host stub sets BLOCK on return.
            let _ = engine.arm_current_thread(sud_engine::Selector::Allow);
        } else {
            // It shares its parent's TLS (a vfork child): arm it on the
            // parent's selector byte and leave the parent's engine state
            // alone, as the engine does for trapped clones.
            let selector = sud_engine::selector_location().address as *mut sud_engine::Selector;
            // SAFETY: the selector is the parent's static-TLS byte, alive as
            // long as this child shares the parent's memory, and only ever
            // written with Selector values.
            let _ = unsafe { sud_engine::kernel::arm(engine.region(), selector) };
        }
    }

    fn run_callout(&self, site: u32, saved: &mut [u64; SAVED_WORDS]) {
        let s = &self.shared;
        let Some(record) = s.sites.record(site) else {
            return;
        };
        let callout = record[0].load(Ordering::Relaxed) as usize;
        let data = record[1].load(Ordering::Relaxed);
        let pc = record[2].load(Ordering::Relaxed);
        let Some(f) = s.callouts.get(callout) else {
            return;
        };
        let frame_addr = saved.as_ptr() as u64;
        let mut ctx = CpuContext {
            rsp: frame_addr + (SAVED_WORDS * 8) as u64 + stubs::FRAME_TO_FOREIGN_RSP,
            pc,
            ..CpuContext::default()
        };
        // SAFETY: CpuContext starts with SAVED_WORDS u64 fields in the
        // order the host stub pushes them (repr(C), no padding).
        let regs = unsafe { &mut *(&mut ctx as *mut CpuContext).cast::<[u64; SAVED_WORDS]>() };
        *regs = *saved;
        f(&mut ctx, data);
        // SAFETY: as above.
        let regs = unsafe { &*(&ctx as *const CpuContext).cast::<[u64; SAVED_WORDS]>() };
        *saved = *regs;
        s.counters.callouts.fetch_add(1, Ordering::Relaxed);
    }
}

/// The Rust side of the host stub. Runs with the selector on ALLOW, on the
/// foreign thread, wherever its foreign code was (maybe inside `malloc`
/// holding its lock): everything reachable from here allocates nothing
/// and takes only the translator's lock (see the module documentation),
/// and a panic aborts instead of unwinding into foreign frames.
extern "C" fn host_entry(saved: *mut u64, request: u64) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let Some(dbi) = Dbi::installed() else { return };
        let request = request as u32;
        let index = request & REQ_INDEX;
        match request & !REQ_INDEX {
            REQ_RESOLVE => {
                dbi.shared
                    .counters
                    .lookup_misses
                    .fetch_add(1, Ordering::Relaxed);
                // The shared lookup stub is in no block: a checkpoint.
                records::checkpoint();
                let native = scratch::with_scratch(|s| s.native.get());
                let target = dbi.resolve(native);
                scratch::with_scratch(|s| s.target.set(target));
            }
            REQ_FILL => {
                // SAFETY: as for REQ_LINK below.
                let resume = unsafe { *saved.add(SAVED_WORDS) };
                let target = dbi.fill(resume);
                scratch::with_scratch(|s| s.target.set(target));
            }
            REQ_STALE => {
                let target = dbi.stale(index);
                scratch::with_scratch(|s| s.target.set(target));
            }
            REQ_LINK => {
                // SAFETY: as for callouts below; word SAVED_WORDS is the
                // host call's return address, pushed just above the frame.
                let resume = unsafe { *saved.add(SAVED_WORDS) };
                let target = dbi.link(resume);
                scratch::with_scratch(|s| s.target.set(target));
            }
            REQ_CALLOUT => {
                // SAFETY: the host stub passes the SAVED_WORDS registers it
                // pushed; they stay on its stack until this returns.
                let saved = unsafe { &mut *saved.cast::<[u64; SAVED_WORDS]>() };
                dbi.run_callout(index, saved);
            }
            REQ_CHILD => {
                // SAFETY: as above.
                let saved = unsafe { &*saved.cast::<[u64; SAVED_WORDS]>() };
                dbi.adopt_child(index, saved);
            }
            _ => {}
        }
    }));
    if outcome.is_err() {
        let msg = b"sud-codegen dbi: a panic in the translator or a callout; aborting (it cannot unwind through foreign frames)\n";
        // SAFETY: writing a static buffer to stderr.
        unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
        std::process::abort();
    }
}

fn current_tid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Syscalls after which [`Dbi::note_memory_change`] must look.
fn changes_memory(nr: u64) -> bool {
    [
        libc::SYS_munmap,
        libc::SYS_mprotect,
        libc::SYS_pkey_mprotect,
        libc::SYS_mmap,
        libc::SYS_mremap,
    ]
    .contains(&(nr as i64))
}

/// The DBI's direct entrance: the engine's, and for memory syscalls the
/// translator's look at what they changed. Those the hooks let run are
/// executed here (not in the stub), so that the translator sees them
/// after they took effect.
extern "C" fn direct_entry(frame: &mut sud_engine::DirectFrame) -> i64 {
    if frame.nr == libc::SYS_arch_prctl as u64 {
        if let Some(answer) =
            Dbi::installed().and_then(|d| d.virtual_fs(frame.args[0], frame.args[1]))
        {
            return answer;
        }
    }
    if signals::takes_trap_path(frame.nr) {
        if let Some(dbi) = Dbi::installed() {
            return dbi.shared.trap_gadget.syscall(frame.nr, &frame.args);
        }
    }
    if frame.nr == libc::SYS_rt_sigprocmask as u64 {
        return follow::sigprocmask_keeping_sigsys(frame);
    }
    let answer = sud_engine::direct_entry_clones_at_site(frame);
    if !changes_memory(frame.nr) {
        return answer;
    }
    let result = if answer == sud_engine::EXECUTE_IN_STUB {
        // SAFETY: the call foreign code made, as the hooks left it; the
        // stub would have executed exactly this.
        unsafe { sud_engine::raw_syscall(frame.nr, frame.args) }
    } else {
        answer
    };
    if let Some(dbi) = Dbi::installed() {
        let changed = catch_unwind(AssertUnwindSafe(|| {
            dbi.note_memory_change(frame.nr, &frame.args, result)
        }));
        if changed.is_err() {
            std::process::abort();
        }
    }
    result
}

/// Mappings writable and executable at once when the translator starts
/// (read at install, where allocating is fine).
fn writable_code_now() -> Vec<(u64, u64)> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            if !(perms.contains('w') && perms.contains('x')) {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some((
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
            ))
        })
        .collect()
}
