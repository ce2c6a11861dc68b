//! Lazy rewriting of syscall sites (x86-64, see
//! [`crate::Builder::rewrite_sites`]).
//!
//! On a trap whose site is `mov eax, imm32; syscall` (glibc's and musl's
//! wrappers), the 5-byte `mov` becomes a `jmp rel32` to a per-site
//! trampoline in a chunk the engine maps within rel32 reach; the `syscall`
//! bytes stay, so a jump straight to them still traps. The trampoline
//! (see the arch crate's `rewrite`) runs the call natively when the
//! thread's selector is ALLOW and otherwise calls the dispatch core
//! through [`rewritten_entry`], counted as [`Entrance::Rewritten`].
//!
//! What is rewritten, and how:
//! - A site whose `mov` fits in one aligned 8-byte word (the site address
//!   mod 8 is at most 3) gets the `jmp rel32` in place of the `mov`: the
//!   word is written in one piece, the bytes around the `mov` rewritten to
//!   themselves. A site whose `mov` crosses a word (mod 8 from 4 to 6)
//!   gets a 2-byte `jmp rel8` in its first word instead, to a `jmp rel32`
//!   written beforehand into unreachable padding after the site (`nop`s
//!   or `int3`s that follow a `ret` or `jmp` and end at a 16-byte
//!   boundary, within 127 bytes); the rest of the `mov` becomes dead
//!   bytes no path reaches. Sites at mod 8 = 7, or without such padding,
//!   keep trapping.
//! - The other shape rewritten is glibc's `syscall(2)`: `mov r9, [rsp+8];
//!   syscall`, the number in rax from a register. Its trampoline starts
//!   with that `mov`; numbers the trap path must emulate (below) are sent
//!   back to the site's `syscall` at run time, where they trap. Other
//!   shapes keep trapping: `syscall` after a `mov eax, reg` or with rax
//!   set further up (glibc's futex and cancellable paths), and musl's
//!   `__syscall_cp_asm`, whose cancellation point is recognised by the
//!   program counter being between its own labels (a trampoline would
//!   move the `syscall` out of that range).
//! - Only sites whose number the trap path does not emulate against its
//!   signal frame ([`rewritable`]): clone family, signal mask, actions,
//!   alternate stack, sigreturn, exec, exit and the like keep trapping.
//! - The program's code is written through `/proc/self/mem`, which writes
//!   through read-only private mappings (the kernel's `FOLL_FORCE`; the
//!   write breaks copy-on-write as a debugger's breakpoint does), so the
//!   protection the program sees never changes and no mprotect window
//!   exists. `process_vm_writev` does not force, and fails on code.
//!   The kernel copies the 8 bytes with its `memcpy` (one 8-byte store
//!   without FSRM; `rep movsb` with it, which is not architecturally one
//!   store): a thread fetching the word at that instant could in principle
//!   see it half written.
//! - Only code the program loaded from a file, mapped executable and not
//!   writable ([`loaded_code`], from `/proc/self/maps` at each patch):
//!   code in anonymous or writable memory (a JIT's) is code the program
//!   writes itself, and may rewrite it over the engine's jump; it keeps
//!   trapping.
//! - Code read as data shows the `jmp`; code unmapped and replaced gets
//!   its own original bytes, which trap and are rewritten again (the old
//!   trampoline is simply never reached again).
//! - Once the program may have a seccomp filter (one at install, or a
//!   trapped `seccomp` / `prctl(PR_SET_SECCOMP)`), nothing more is
//!   rewritten: patching makes calls a filter could answer by killing.
//! - The trampoline finds the thread's selector and engine state at fixed
//!   offsets from `fs` (the engine's static TLS, as a code generator's
//!   selector flip does), after checking that `fs` is still the thread
//!   block the engine saw (`fs:0`, the TLS ABI's self pointer, against a
//!   slot of the engine's TLS, [`note_thread_pointer`]). A program that
//!   points `fs` at a block of its own gets the site's `syscall` executed
//!   as it is, which traps as without rewriting. The check reads `fs:0`
//!   and a word a few hundred bytes below it: a block of the program's
//!   with nothing mapped there faults at a patched site (the trap path
//!   itself reads `errno` through `fs` too). A `CLONE_VM` child without
//!   TLS of its own (and without `CLONE_VFORK`) clears the check for
//!   itself and its parent, which then trap at patched sites.
//! - Hooks of rewritten calls run on the thread's engine stack (the one
//!   the trap path's signal frames use), not the program's, so a small
//!   program stack (a coroutine, `sigaltstack`) holds only the stub's
//!   frame (about 200 bytes beyond the red zone).
//! - A patched page of a file mapping becomes the process's private copy
//!   (4 KiB of memory each), as a debugger's breakpoint makes it.
//! - Matching looks backwards from the `syscall` and checks that rax holds
//!   the `mov`'s immediate; bytes that merely look like that `mov` (the
//!   tail of a longer instruction) before a `syscall` reached by a jump
//!   would be misread. glibc and musl do not emit such code.

use crate::arch;
use crate::arch::emit::VectorSave;
use crate::arch::rewrite as emit;
use crate::engine::{DirectFrame, Engine, EXECUTE_IN_STUB};
use crate::sys::raw6;
use crate::thread::ThreadState;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use syscalls::Sysno;

/// Bytes of one trampoline chunk: the common stub, then trampolines.
const CHUNK_LEN: u64 = 64 * 1024;
/// Where the chunk's two common stubs are: one that saves xmm0-15 and
/// MXCSR, for calls no hook sees (the engine's own code is compiled for
/// SSE only, which leaves the upper vector halves alone), and one that
/// saves every vector register with `xsavec` (SSE, AVX, AVX-512), for calls
/// hooks see (Rust hooks, and the libc string functions they call, may
/// use any of them; none touches the x87 state or PKRU, which are left
/// out: a hook that does must put them back). Trampolines follow.
const LIGHT_STUB: u64 = 0;
const FULL_STUB: u64 = 1024;
const FIRST_SLOT: u64 = 2048;
const MAX_CHUNKS: usize = 64;
/// How far from a site a chunk may start, leaving room for its length.
const REACH: u64 = (1 << 31) - 2 * CHUNK_LEN;

/// What the engine knows to rewrite sites, fixed at install.
pub(crate) struct Rewriter {
    selector_tp_offset: i32,
    tp_check_offset: i32,
    /// The two common stubs of every chunk, built here at install: code
    /// generation allocates, and a trap that maps a chunk may come from
    /// inside `malloc` (its `brk`), where allocating corrupts the heap.
    light_stub: Vec<u8>,
    full_stub: Vec<u8>,
}

/// Set while one thread patches: another trap meanwhile leaves its site
/// for a later trap rather than wait (a handler must not block).
static PATCHING: AtomicBool = AtomicBool::new(false);

/// Sites found unpatchable, so that their later traps skip the checks
/// (reading the code, `/proc/self/maps`, opening `/proc/self/mem`: about
/// 2 µs, which every trap at such a site paid before). Direct-mapped by
/// address: a collision only costs the checks again; code mapped anew at a
/// remembered address stays trapping (a lost speed-up, never a wrong
/// patch).
const UNPATCHABLE_SLOTS: usize = 1024;
static UNPATCHABLE: [AtomicU64; UNPATCHABLE_SLOTS] =
    [const { AtomicU64::new(0) }; UNPATCHABLE_SLOTS];

fn unpatchable_slot(site: u64) -> &'static AtomicU64 {
    // Fibonacci hashing: the top 10 bits of the product.
    let index =
        site.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - UNPATCHABLE_SLOTS.trailing_zeros());
    &UNPATCHABLE[index as usize]
}
/// Set once the program may have a seccomp filter: patching makes calls
/// of its own (openat, pwrite64, mmap) that a filter could answer by
/// killing the process, so no site is rewritten from then on.
static SECCOMP_SEEN: AtomicBool = AtomicBool::new(false);
/// Chunk bases (0: unused), written only under `PATCHING`.
static CHUNKS: [AtomicU64; MAX_CHUNKS] = [const { AtomicU64::new(0) }; MAX_CHUNKS];
/// Bytes used in each chunk.
static USED: [AtomicU64; MAX_CHUNKS] = [const { AtomicU64::new(0) }; MAX_CHUNKS];

impl Rewriter {
    /// Called on the installing thread: the engine's TLS offsets are the
    /// same in every thread (static TLS). None if they do not fit the
    /// stub's 32-bit displacement.
    pub(crate) fn new(syscall_gadget: usize) -> Option<Rewriter> {
        let seccomp_mode = raw6(
            Sysno::prctl.id() as u64,
            [libc::PR_GET_SECCOMP as u64, 0, 0, 0, 0, 0],
        );
        if seccomp_mode != 0 {
            return None;
        }
        let offset = |addr: usize| i32::try_from(crate::selector::tp_offset_of(addr)).ok();
        let vectors = if std::arch::is_x86_feature_detected!("xsavec") {
            // The compacted area of every enabled component (CPUID 0Dh.1:EBX).
            let leaf = std::arch::x86_64::__cpuid_count(0xd, 1);
            VectorSave::XsavecVectors { area_len: leaf.ebx }
        } else {
            VectorSave::Sse
        };
        emit::prepare_decoder();
        let selector_tp_offset = offset(crate::selector::thread_byte() as usize)?;
        let state_tp_offset = offset(crate::thread::current_slot())?;
        let stub = |vectors| {
            emit::common_stub(
                selector_tp_offset,
                state_tp_offset,
                rewritten_entry as *const () as u64,
                syscall_gadget as u64,
                vectors,
                emit::EngineStack {
                    top_in_state: std::mem::offset_of!(ThreadState, stub_stack_top) as i32,
                    len: crate::thread::STACK_LEN as u32,
                },
            )
            .ok()
            .filter(|code| code.len() as u64 <= FULL_STUB - LIGHT_STUB)
        };
        Some(Rewriter {
            selector_tp_offset,
            tp_check_offset: offset(TP_CHECK.with(|c| c as *const Cell<u64> as usize))?,
            light_stub: stub(VectorSave::Sse)?,
            full_stub: stub(vectors)?,
        })
    }

    /// After a trap at `call_addr` with number `nr` in rax: rewrites the
    /// site if it is one this module handles. Runs on the trap path: raw
    /// syscalls only, nothing that blocks.
    pub(crate) fn on_trap(&self, engine: &Engine, call_addr: u64, nr: u64, arg0: u64) {
        let seccomp = nr == Sysno::seccomp.id() as u64
            || (nr == Sysno::prctl.id() as u64 && arg0 == libc::PR_SET_SECCOMP as u64);
        if seccomp {
            SECCOMP_SEEN.store(true, Relaxed);
        }
        if SECCOMP_SEEN.load(Relaxed) {
            return;
        }
        let core = &engine.core;
        let hooks = !(core.pre_hooks.is_empty() && core.post_hooks.is_empty());
        if call_addr < 7 {
            return;
        }
        let site = call_addr - 7;
        if in_chunk(site) {
            return;
        }
        let known = unpatchable_slot(site);
        if known.load(Relaxed) == site {
            return;
        }
        if PATCHING
            .compare_exchange(false, true, Acquire, Relaxed)
            .is_err()
        {
            return;
        }
        if self.patch(site, call_addr, nr, |nr| hooks && core.filter.contains(nr)) {
            engine.core.counters.patched_site();
        } else {
            known.store(site, Relaxed);
        }
        PATCHING.store(false, Release);
    }

    /// `hooked`: whether hooks see calls of a number (they need the stub
    /// that saves all vector state).
    fn patch(&self, site: u64, call_addr: u64, nr: u64, hooked: impl Fn(u64) -> bool) -> bool {
        let base = site & !7;
        let o = (site - base) as usize;
        let mut words = [0u64; 2];
        // The second word only when the syscall reaches into it (then it
        // is on the syscall's page, which is mapped).
        let n = if o >= 2 { 2 } else { 1 };
        if !crate::usermem::read_user(base, &mut words[..n]) {
            return false;
        }
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&words[0].to_le_bytes());
        bytes[8..].copy_from_slice(&words[1].to_le_bytes());
        if bytes[o + 5..o + 7] != arch::SYSCALL_INSN {
            return false;
        }
        let imm = u32::from_le_bytes([bytes[o + 1], bytes[o + 2], bytes[o + 3], bytes[o + 4]]);
        // The instruction the trampoline starts with, and whether hooks
        // may see its calls: one number, or any for `syscall(2)`, whose
        // calls the trap path must emulate are sent back to the site's
        // `syscall` at run time (`rewritten_entry`).
        let (head, hooked) = if bytes[o] == emit::MOV_EAX_OPCODE && u64::from(imm) == nr {
            if !rewritable(nr) {
                return false;
            }
            (emit::mov_eax(imm), hooked(nr))
        } else if bytes[o..o + emit::PATCH_LEN] == emit::GENERIC_SITE_HEAD {
            (
                emit::GENERIC_SITE_HEAD,
                (0..=crate::TRACKED_NUMBERS as u64).any(&hooked),
            )
        } else {
            return false;
        };
        // A `mov` that fits the word becomes the `jmp rel32` itself; one
        // that crosses it gets a `jmp rel8` (in the word when it fits)
        // to a `jmp rel32` written first into padding nearby.
        let short = o + emit::PATCH_LEN > 8;
        if short && o + emit::SHORT_JUMP_LEN > 8 {
            return false;
        }
        let pad = if short {
            padding_near(site, call_addr)
        } else {
            None
        };
        if short && pad.is_none() {
            return false;
        }
        if !loaded_code(site) || pad.is_some_and(|pad| !loaded_code(pad)) {
            return false;
        }
        let Some(mem) = ProcMem::open() else {
            return false;
        };
        let Some(slot) = self.slot_near(&mem, site) else {
            return false;
        };
        let common = chunk_of(slot) + if hooked { FULL_STUB } else { LIGHT_STUB };
        let Some(tramp) = emit::trampoline(
            slot,
            call_addr,
            head,
            common,
            self.selector_tp_offset,
            self.tp_check_offset,
        ) else {
            return false;
        };
        if !mem.write(slot, &tramp) {
            return false;
        }
        let mut word = words[0].to_le_bytes();
        match pad {
            None => {
                let Some(jump) = emit::site_jump(site, slot) else {
                    return false;
                };
                word[o..o + emit::PATCH_LEN].copy_from_slice(&jump);
            }
            Some(pad) => {
                // Padding is never executed: its bytes may be written in
                // any order, before the one word store that makes the
                // site jump there.
                let (Some(far), Some(near)) =
                    (emit::site_jump(pad, slot), emit::short_jump(site, pad))
                else {
                    return false;
                };
                if !mem.write(pad, &far) {
                    return false;
                }
                word[o..o + emit::SHORT_JUMP_LEN].copy_from_slice(&near);
            }
        }
        mem.write(base, &word)
    }

    /// A free trampoline slot within reach of `site`, in an existing chunk
    /// or a new one mapped near it.
    fn slot_near(&self, mem: &ProcMem, site: u64) -> Option<u64> {
        let reachable = |base: u64| base.abs_diff(site) < REACH;
        for (i, chunk) in CHUNKS.iter().enumerate() {
            let base = chunk.load(Relaxed);
            if base == 0 {
                let base = self.map_chunk(mem, site)?;
                chunk.store(base, Relaxed);
                USED[i].store(FIRST_SLOT + emit::TRAMPOLINE_LEN as u64, Relaxed);
                return Some(base + FIRST_SLOT);
            }
            let used = USED[i].load(Relaxed);
            if reachable(base) && used + emit::TRAMPOLINE_LEN as u64 <= CHUNK_LEN {
                USED[i].store(used + emit::TRAMPOLINE_LEN as u64, Relaxed);
                return Some(base + used);
            }
        }
        None
    }

    /// Maps a chunk (read and execute: it is written through `mem`) at one
    /// of a few places within reach of `site`, and writes its common stub.
    fn map_chunk(&self, mem: &ProcMem, site: u64) -> Option<u64> {
        const MIB: u64 = 1 << 20;
        let (light, full) = (&self.light_stub, &self.full_stub);
        let around = site & !(CHUNK_LEN - 1);
        for distance in [64 * MIB, 256 * MIB, 1024 * MIB, 1792 * MIB] {
            for hint in [around.wrapping_sub(distance), around.wrapping_add(distance)] {
                if !(0x10_0000..0x7fff_0000_0000).contains(&hint) {
                    continue;
                }
                let r = raw6(
                    Sysno::mmap.id() as u64,
                    [
                        hint,
                        CHUNK_LEN,
                        (libc::PROT_READ | libc::PROT_EXEC) as u64,
                        (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE)
                            as u64,
                        u64::MAX,
                        0,
                    ],
                );
                if r as u64 != hint {
                    continue;
                }
                if mem.write(hint + LIGHT_STUB, light) && mem.write(hint + FULL_STUB, full) {
                    return Some(hint);
                }
                raw6(Sysno::munmap.id() as u64, [hint, CHUNK_LEN, 0, 0, 0, 0]);
                return None;
            }
        }
        None
    }
}

/// Whether a site with this number may run through a trampoline: not the
/// calls the trap path executes against its signal frame or re-issues at
/// the site.
pub(crate) fn rewritable(nr: u64) -> bool {
    // A number the table does not know runs as it is on the trap path too.
    let Some(sysno) = usize::try_from(nr).ok().and_then(Sysno::new) else {
        return true;
    };
    !matches!(
        sysno,
        Sysno::rt_sigreturn
            | Sysno::rt_sigprocmask
            | Sysno::rt_sigaction
            | Sysno::sigaltstack
            | Sysno::rt_sigpending
            | Sysno::rt_sigtimedwait
            | Sysno::rt_sigsuspend
            | Sysno::ppoll
            | Sysno::pselect6
            | Sysno::epoll_pwait
            | Sysno::epoll_pwait2
            | Sysno::prctl
            | Sysno::seccomp
            | Sysno::clone
            | Sysno::clone3
            | Sysno::fork
            | Sysno::vfork
            | Sysno::execve
            | Sysno::execveat
            | Sysno::exit
            | Sysno::exit_group
    )
}

thread_local! {
    /// The thread pointer this thread had when its engine state was set,
    /// negated: a trampoline adds `fs:0` to it and goes on only on 0, so a
    /// thread whose `fs` now points at a block of the program's own (not
    /// its libc's thread block, where the engine's TLS is) takes its site's
    /// `syscall` as it is. Static TLS, at the same offset in every thread.
    static TP_CHECK: Cell<u64> = const { Cell::new(0) };
}

/// Records the calling thread's thread pointer for its trampolines: called
/// where its engine state becomes reachable through `fs` (host code, its
/// own TLS in place).
pub(crate) fn note_thread_pointer() {
    let tp = crate::arch::thread_pointer() as u64;
    TP_CHECK.with(|c| c.set(tp.wrapping_neg()));
}

/// Makes the calling thread's trampolines take the trap path: for a
/// `CLONE_VM` child that shares its parent's TLS (it has a state of its
/// own that fs does not lead to), called in the child, which clears the
/// slot they share. The parent's rewritten sites trap from then on, as
/// without rewriting. (A vfork child runs on its parent's state anyway,
/// and keeps the slot.)
pub(crate) fn forget_thread_pointer() {
    TP_CHECK.with(|c| c.set(0));
}

/// In a child made by fork: the thread that held the patching flag at the
/// fork does not exist there.
pub(crate) fn forked() {
    PATCHING.store(false, Relaxed);
}

fn chunk_of(slot: u64) -> u64 {
    slot & !(CHUNK_LEN - 1)
}

/// Whether `addr` lies in code the program loaded rather than code it
/// writes: a private mapping of a file (its path in `/proc/self/maps`
/// starts with `/`, and is not a memfd) that is executable and not
/// writable. Code in anonymous, shared, memfd or writable memory (a JIT's)
/// may be rewritten by the program itself, which would then find or tear
/// the engine's jump: it keeps trapping.
/// Reads the maps in pieces with a stack buffer (no allocation).
fn loaded_code(addr: u64) -> bool {
    let path = b"/proc/self/maps\0";
    let fd = raw6(
        Sysno::openat.id() as u64,
        [
            libc::AT_FDCWD as u64,
            path.as_ptr() as u64,
            (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
            0,
            0,
            0,
        ],
    );
    if fd < 0 {
        return false;
    }
    let mut line = MapsLine::default();
    let mut buf = [0u8; 4096];
    let mut answer = None;
    while answer.is_none() {
        let n = raw6(
            Sysno::read.id() as u64,
            [
                fd as u64,
                buf.as_mut_ptr() as u64,
                buf.len() as u64,
                0,
                0,
                0,
            ],
        );
        if n <= 0 {
            break;
        }
        answer = buf[..n as usize].iter().find_map(|&b| line.feed(b, addr));
    }
    raw6(Sysno::close.id() as u64, [fd as u64, 0, 0, 0, 0, 0]);
    answer.unwrap_or(false)
}

/// A `/proc/self/maps` line read byte by byte: `start-end perms offset
/// dev inode   path`.
#[derive(Default)]
struct MapsLine {
    field: u8,
    start: u64,
    end: u64,
    perms: [u8; 4],
    perms_len: usize,
    /// The path's first bytes.
    path: [u8; 7],
    path_len: usize,
}

impl MapsLine {
    /// Takes one byte; at the end of the line holding `addr`, answers
    /// whether it is loaded code.
    fn feed(&mut self, b: u8, addr: u64) -> Option<bool> {
        let hex = |v: u64| (b as char).to_digit(16).map(|d| v << 4 | u64::from(d));
        match (self.field, b) {
            (_, b'\n') => {
                // A private mapping of a real file: not a memfd, whose
                // other (writable) mappings are how JITs write code.
                let done = (self.start..self.end).contains(&addr).then(|| {
                    self.perms[1] != b'w'
                        && self.perms[2] == b'x'
                        && self.perms[3] == b'p'
                        && self.path[0] == b'/'
                        && self.path != *b"/memfd:"
                });
                *self = MapsLine::default();
                return done;
            }
            (0, b'-') | (1..=5, b' ') => self.field += 1,
            (0, _) => self.start = hex(self.start).unwrap_or(self.start),
            (1, _) => self.end = hex(self.end).unwrap_or(self.end),
            (2, _) if self.perms_len < 4 => {
                self.perms[self.perms_len] = b;
                self.perms_len += 1;
            }
            (6, b' ') => {}
            (6..=7, _) => {
                self.field = 7;
                if self.path_len < self.path.len() {
                    self.path[self.path_len] = b;
                    self.path_len += 1;
                }
            }
            _ => {}
        }
        None
    }
}

/// Unreachable padding within a `jmp rel8` of `site`, after the site's
/// `syscall` (see the arch crate's `find_padding`).
fn padding_near(site: u64, call_addr: u64) -> Option<u64> {
    const WORDS: usize = 20;
    let from = call_addr & !7;
    let mut words = [0u64; WORDS];
    // The code may end (with its mapping) before all of it: fewer words.
    let got = [WORDS, 12, 6, 3]
        .into_iter()
        .find(|&n| crate::usermem::read_user(from, &mut words[..n]))?;
    let mut bytes = [0u8; WORDS * 8];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(&words[..got]) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    let skip = (call_addr - from) as usize;
    emit::find_padding(&bytes[skip..got * 8], call_addr, site)
}

/// Whether `addr` is in one of the engine's trampoline chunks.
fn in_chunk(addr: u64) -> bool {
    CHUNKS.iter().any(|c| {
        let base = c.load(Relaxed);
        base != 0 && addr.wrapping_sub(base) < CHUNK_LEN
    })
}

/// `/proc/self/mem`, open for one patch (an fd kept open would be one the
/// program could close or find in `/proc/self/fd`).
struct ProcMem(u64);

impl ProcMem {
    fn open() -> Option<ProcMem> {
        let path = b"/proc/self/mem\0";
        let fd = raw6(
            Sysno::openat.id() as u64,
            [
                libc::AT_FDCWD as u64,
                path.as_ptr() as u64,
                (libc::O_RDWR | libc::O_CLOEXEC) as u64,
                0,
                0,
                0,
            ],
        );
        (fd >= 0).then_some(ProcMem(fd as u64))
    }

    /// Writes `bytes` at `addr` in one `pwrite64`.
    fn write(&self, addr: u64, bytes: &[u8]) -> bool {
        let r = raw6(
            Sysno::pwrite64.id() as u64,
            [
                self.0,
                bytes.as_ptr() as u64,
                bytes.len() as u64,
                addr,
                0,
                0,
            ],
        );
        r == bytes.len() as i64
    }
}

impl Drop for ProcMem {
    fn drop(&mut self) {
        raw6(Sysno::close.id() as u64, [self.0, 0, 0, 0, 0, 0]);
    }
}

/// The entrance of rewritten sites, called by the common stub with the
/// selector on ALLOW and `state` read from the thread's `CURRENT` slot.
/// Answers the result, [`EXECUTE_IN_STUB`] (the stub executes the frame's
/// call from the excluded region), or `FALLBACK_TO_TRAP` when the call
/// must go the way it would natively: the thread is not armed (its
/// syscalls do not trap), or the program runs its own Syscall User
/// Dispatch on it (the trap path delivers that).
extern "C" fn rewritten_entry(frame: &mut DirectFrame, state: *const ThreadState) -> i64 {
    let Some(engine) = Engine::installed() else {
        return EXECUTE_IN_STUB;
    };
    // SAFETY: `state` is this thread's CURRENT pointer: null or its block
    // state, which lives as long as the thread.
    let Some(thread) = (unsafe { state.as_ref() }) else {
        return emit::FALLBACK_TO_TRAP;
    };
    // A `syscall(2)` site carries any number, those the trap path must
    // emulate against its signal frame included.
    if thread.armed_tid.get() == 0
        || thread.program_dispatch.get() != crate::nested::ProgramDispatch::OFF
        || !rewritable(frame.nr)
    {
        return emit::FALLBACK_TO_TRAP;
    }
    engine.dispatch_rewritten(frame, thread)
}
