//! Per-thread engine state, reached without the program's TLS.
//!
//! Every armed thread gets a *thread block*: one mapping of [`BLOCK_SIZE`]
//! bytes, aligned to its size, that is both the thread's SIGSYS stack and
//! the home of its [`ThreadState`]:
//!
//! ```text
//! base                 base+PAGE                      base+BLOCK_SIZE-PAGE   base+BLOCK_SIZE
//! | guard (PROT_NONE)  | signal stack (sigaltstack)   | ThreadState page     |
//! ```
//!
//! SIGSYS is installed with `SA_ONSTACK`, so the kernel writes a trap's
//! frame on this stack, not on the interrupted code's, and the handler
//! finds its state from the stack it runs on: the kernel reports the
//! thread's alternate stack in the frame (`uc_stack`), and the state sits
//! at a fixed place after it. No `fs`, no `__tls_get_addr` (which in a
//! `cdylib` may run glibc's DTV catch-up and call `free()` while the
//! trapped thread holds malloc's lock), nothing the program could hold.
//!
//! Host code (arming, the direct entrance, the selector API) reaches the
//! same state through a thread-local pointer: it never runs in a signal
//! handler on the trap path. Threads that were never armed use a
//! thread-local fallback state.

use crate::counters::CounterBlock;
use crate::sys;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering};
use syscalls::Sysno;

/// Size and alignment of a thread block. Hooks run on its stack, so it is
/// generous; untouched pages cost no memory.
pub(crate) const BLOCK_SIZE: usize = 256 * 1024;
const PAGE: usize = 4096;
/// The signal stack: everything between the guard page and the state page.
pub(crate) const STACK_LEN: usize = BLOCK_SIZE - 2 * PAGE;

/// The program's view of its alternate signal stack (the real one is the
/// engine's), kept as the kernel keeps a task's: `flags` as last set
/// (`SS_DISABLE`, `SS_AUTODISARM`, or 0), which is what a signal frame's
/// `uc_stack` reports; a stack of size 0 is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AltStack {
    pub(crate) sp: u64,
    pub(crate) flags: i32,
    pub(crate) size: u64,
}

impl AltStack {
    /// What the kernel's `sas_ss_reset` leaves (a new thread, a disarm).
    pub(crate) const DISABLED: AltStack = AltStack {
        sp: 0,
        flags: libc::SS_DISABLE,
        size: 0,
    };

    /// A process image's main thread that never set one.
    pub(crate) const NEVER_SET: AltStack = AltStack {
        sp: 0,
        flags: 0,
        size: 0,
    };

    pub(crate) fn is_enabled(&self) -> bool {
        self.size != 0
    }

    /// Whether `sp` is on this stack, as the kernel's `on_sig_stack` decides.
    pub(crate) fn contains(&self, sp: u64) -> bool {
        self.is_enabled() && sp > self.sp && sp - self.sp <= self.size
    }
}

/// One thread's engine state. Only its own thread reads or writes it (a
/// forked child gets a copy with the memory).
#[repr(C)]
pub(crate) struct ThreadState {
    /// The selector byte the kernel reads for this thread: the thread-local
    /// byte of [`crate::selector`] for threads armed by host code (so code
    /// generators can flip it `fs`-relative), or `own_selector`.
    selector: Cell<*const AtomicU8>,
    own_selector: AtomicU8,
    /// Whether this thread is armed, and the tid it was armed under (a forked
    /// child inherits the memory but not the arming).
    pub(crate) armed_tid: Cell<i32>,
    /// The program's view of whether SIGSYS is blocked in this thread (the
    /// real mask never blocks it: a blocked SIGSYS kills on dispatch).
    pub(crate) app_blocks_sigsys: Cell<bool>,
    /// A SIGSYS sent by kill/tgkill while the program blocked it: raised
    /// again when it unblocks, reported by sigpending, taken by
    /// sigtimedwait (with its siginfo).
    pub(crate) app_sigsys_pending: Cell<bool>,
    pub(crate) app_sigsys_info: Cell<[u64; 16]>,
    /// The program's alternate signal stack.
    pub(crate) app_stack: Cell<AltStack>,
    /// This thread's counter block (see `counters`), null until its first count.
    pub(crate) counter_block: Cell<*const CounterBlock>,
    /// The syscall the hooks are handling, for the panic message; `u64::MAX`
    /// when no hook runs.
    pub(crate) in_hook: Cell<u64>,
    /// The thread entered seccomp strict mode: any call but read, write,
    /// exit and rt_sigreturn kills it, so helpers must make none.
    pub(crate) strict: Cell<bool>,
    /// Words the hooks keep per thread (see [`crate::hook_words`]).
    pub(crate) hook_words: crate::hooks::HookWords,
    /// The program's own Syscall User Dispatch configuration (see `nested`).
    pub(crate) program_dispatch: Cell<crate::nested::ProgramDispatch>,
    /// Where the parent of a re-issued vfork resumes (see `trap`), and
    /// the call, for its post-hooks.
    pub(crate) vfork_resume: Cell<u64>,
    pub(crate) vfork_call: Cell<(u64, [u64; 6])>,
    /// A vfork child runs on this state while its parent waits.
    pub(crate) lent_to_vfork_child: Cell<bool>,
    /// The block this state lives in (null for the thread-local fallback).
    block: Cell<usize>,
    /// Where a rewritten site's stub may start its frames on this block's
    /// stack when the thread is not on it already: the top of the stack the
    /// kernel would use for a trap now (`deliver` lowers it, as it shrinks
    /// the kernel's, while a handler runs off the stack above live engine
    /// frames). 0: stay on the program's stack.
    pub(crate) stub_stack_top: Cell<u64>,
}

impl ThreadState {
    const fn new() -> Self {
        ThreadState {
            selector: Cell::new(std::ptr::null()),
            own_selector: AtomicU8::new(0),
            armed_tid: Cell::new(0),
            app_blocks_sigsys: Cell::new(false),
            app_sigsys_pending: Cell::new(false),
            app_sigsys_info: Cell::new([0; 16]),
            app_stack: Cell::new(AltStack::DISABLED),
            counter_block: Cell::new(std::ptr::null()),
            in_hook: Cell::new(u64::MAX),
            strict: Cell::new(false),
            hook_words: [const { Cell::new(0) }; crate::hooks::HOOK_WORDS],
            program_dispatch: Cell::new(crate::nested::ProgramDispatch::OFF),
            vfork_resume: Cell::new(0),
            vfork_call: Cell::new((0, [0; 6])),
            lent_to_vfork_child: Cell::new(false),
            block: Cell::new(0),
            stub_stack_top: Cell::new(0),
        }
    }

    /// The byte the kernel reads at every syscall of this thread.
    #[inline]
    pub(crate) fn selector(&self) -> &AtomicU8 {
        let p = self.selector.get();
        if p.is_null() {
            &self.own_selector
        } else {
            // SAFETY: a non-null pointer is set by `use_selector` to the
            // calling thread's thread-local selector, which lives as long
            // as the thread, the only user of this state.
            unsafe { &*p }
        }
    }

    /// Makes `byte` the selector of this thread (before arming it).
    pub(crate) fn use_selector(&self, byte: *const AtomicU8) {
        self.selector.set(byte);
    }

    /// Gives this thread a selector byte of its own, in its block: for a
    /// child that shares its parent's TLS (CLONE_VM without CLONE_SETTLS),
    /// where the thread-local byte is the parent's.
    pub(crate) fn use_own_selector(&self) {
        self.own_selector
            .store(self.selector().load(Ordering::Relaxed), Ordering::Relaxed);
        self.selector.set(std::ptr::null());
    }

    /// Stores a new selector byte and returns the old one. Only the owning
    /// thread writes its selector (the kernel only reads it), so a plain
    /// load and store suffice.
    #[inline]
    pub(crate) fn replace_selector(&self, value: u8) -> u8 {
        let selector = self.selector();
        let previous = selector.load(Ordering::Relaxed);
        selector.store(value, Ordering::Relaxed);
        previous
    }

    /// The engine's alternate stack for this thread, as `sigaltstack` takes it.
    pub(crate) fn signal_stack(&self) -> Option<AltStack> {
        let block = self.block.get();
        (block != 0).then_some(AltStack {
            sp: (block + PAGE) as u64,
            flags: 0,
            size: STACK_LEN as u64,
        })
    }
}

/// Whether the program owns the thread pointer (`fs`) and its TLS: the
/// engine runs inside a loader that hands the whole process to a program
/// with a libc of its own (see [`crate::Builder::program_owns_tls`]).
/// Then nothing after install reaches the engine's thread-locals: every
/// thread's selector is its block's own byte, and new threads get their
/// block without a thread-local pointer to it.
static PROGRAM_OWNS_TLS: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_program_owns_tls(owns: bool) {
    PROGRAM_OWNS_TLS.store(owns, Ordering::Relaxed);
}

pub(crate) fn program_owns_tls() -> bool {
    PROGRAM_OWNS_TLS.load(Ordering::Relaxed)
}

thread_local! {
    /// The state of a thread that has no block (never armed).
    static FALLBACK: ThreadState = const { ThreadState::new() };
    /// The calling thread's block state, for host code.
    static CURRENT: Cell<*const ThreadState> = const { Cell::new(std::ptr::null()) };
}

/// The address of the calling thread's pointer to its block state (a
/// `*const ThreadState`, null for a thread without a block): static TLS,
/// so its offset from the thread pointer is the same in every thread and
/// a rewritten site's stub reads it `fs`-relative, without a TLS call.
#[cfg(target_arch = "x86_64")]
pub(crate) fn current_slot() -> usize {
    CURRENT.with(|c| c as *const Cell<*const ThreadState> as usize)
}

/// The calling thread's state, for code that does not run in a signal
/// handler on the trap path (it goes through the program's TLS).
pub(crate) fn current() -> &'static ThreadState {
    let p = CURRENT.with(Cell::get);
    if p.is_null() {
        // SAFETY: a thread-local lives as long as its thread, and this
        // reference never leaves the thread (ThreadState is not Sync).
        FALLBACK.with(|f| unsafe { &*(f as *const ThreadState) })
    } else {
        // SAFETY: blocks are never unmapped while their thread lives.
        unsafe { &*p }
    }
}

/// The state of the thread a signal handler runs on, found from the signal
/// frame: `uc_stack` is the thread's real alternate stack at delivery, and
/// when the handler runs on it and it is a thread block, the state is in
/// the block's last page. Otherwise (a thread without a block) the
/// thread-local state.
///
/// # Safety
/// `uc` must be the context the kernel passed to the running handler.
pub(crate) unsafe fn in_handler(uc: *const libc::ucontext_t) -> &'static ThreadState {
    // SAFETY: the caller passes the live frame's context.
    let ss = unsafe { std::ptr::addr_of!((*uc).uc_stack).read() };
    let here = &ss as *const _ as usize;
    match block_of(&ss) {
        Some(state) if here >= ss.ss_sp as usize && here < ss.ss_sp as usize + STACK_LEN => state,
        // `fs` is the program's: only the kernel can say (an unarmed
        // thread without a block still reaches the thread-local state).
        _ if program_owns_tls() => kernel_signal_stack_state().unwrap_or_else(current),
        _ => current(),
    }
}

/// The state of the block whose signal stack `ss` is (the block's whole
/// stack, or its lower part: see `deliver`, below handler frames that are
/// still live), if the engine mapped such a block.
fn block_of(ss: &libc::stack_t) -> Option<&'static ThreadState> {
    let base = (ss.ss_sp as usize).wrapping_sub(PAGE);
    if ss.ss_flags & libc::SS_DISABLE != 0
        || ss.ss_size > STACK_LEN
        || base % BLOCK_SIZE != 0
        || !registered(base)
    {
        return None;
    }
    // SAFETY: `base` is a block the engine mapped (it is registered), and
    // blocks are never unmapped; its last page holds a ThreadState, written
    // before the block was registered.
    Some(unsafe { &*((base + BLOCK_SIZE - PAGE) as *const ThreadState) })
}

/// The state of the thread whose engine stack holds `addr`, if any: a
/// hook's `&Syscall` on the trap path lives on it.
pub(crate) fn on_engine_stack(addr: usize) -> Option<&'static ThreadState> {
    let base = addr & !(BLOCK_SIZE - 1);
    if !registered(base) || addr < base + PAGE || addr >= base + PAGE + STACK_LEN {
        return None;
    }
    // SAFETY: as in `block_of`: a registered block, never unmapped.
    Some(unsafe { &*((base + BLOCK_SIZE - PAGE) as *const ThreadState) })
}

/// Every block the engine mapped, by base address: an open-addressed set
/// that only grows (blocks are reused, never unmapped), so a signal handler
/// can tell a block from someone else's alternate stack without touching
/// memory that may not be mapped. A process with more blocks than slots
/// still works: their threads' handlers fall back to the thread-local path.
static REGISTRY: [AtomicUsize; REGISTRY_SLOTS] = [const { AtomicUsize::new(0) }; REGISTRY_SLOTS];
const REGISTRY_SLOTS: usize = 8192;

fn registry_slots(base: usize) -> impl Iterator<Item = &'static AtomicUsize> {
    let start = (base / BLOCK_SIZE).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 51;
    (0..REGISTRY_SLOTS).map(move |i| &REGISTRY[(start + i) % REGISTRY_SLOTS])
}

fn register(base: usize) {
    for slot in registry_slots(base) {
        match slot.compare_exchange(0, base, Ordering::Release, Ordering::Acquire) {
            Ok(_) => return,
            Err(there) if there == base => return,
            Err(_) => {}
        }
    }
}

fn registered(base: usize) -> bool {
    for slot in registry_slots(base) {
        match slot.load(Ordering::Acquire) {
            0 => return false,
            there if there == base => return true,
            _ => {}
        }
    }
    false
}

/// Blocks that threads gave back at a trapped `exit`: reusable once the
/// kernel says their thread is gone.
static RETIRED: AtomicPtr<Retired> = AtomicPtr::new(std::ptr::null_mut());

/// A retired block's link, at the bottom of its signal stack, which the
/// exiting thread's handler (at the top) does not reach.
#[repr(C)]
struct Retired {
    next: *mut Retired,
    tid: i32,
}

/// Gives the calling thread a block, makes it the thread's real alternate
/// signal stack and returns its state, with its selector on `selector`
/// (null: the block's own byte). An existing block is kept.
pub(crate) fn ensure_block(
    selector: *const AtomicU8,
) -> Result<&'static ThreadState, syscalls::Errno> {
    let existing = CURRENT.with(Cell::get);
    let state = if existing.is_null() {
        let state = new_block()?;
        state.app_stack.set(kernel_view_before_arming());
        let fallback = current();
        // What the thread-local fallback knew before arming carries over.
        state
            .app_blocks_sigsys
            .set(fallback.app_blocks_sigsys.get());
        state.counter_block.set(fallback.counter_block.get());
        fallback.counter_block.set(std::ptr::null());
        CURRENT.with(|c| c.set(state));
        #[cfg(target_arch = "x86_64")]
        crate::rewrite::note_thread_pointer();
        state
    } else {
        // SAFETY: blocks are never unmapped while their thread lives.
        unsafe { &*existing }
    };
    state.use_selector(selector);
    install_signal_stack(state)?;
    Ok(state)
}

/// A thread made by a re-issued clone: it has no block of its own yet
/// (the kernel cleared a CLONE_VM child's alternate stack) unless it is a
/// new process or a vfork child, which keep the parent's (a copy, or
/// memory the suspended parent does not use meanwhile). `shared_tls`:
/// its TLS is its parent's, so its selector must be its own (as it is
/// for every thread when the program owns the TLS).
pub(crate) fn adopt_clone_child(shared_tls: bool) -> Result<&'static ThreadState, syscalls::Errno> {
    if let Some(state) = kernel_signal_stack_state() {
        // A new process (its own copy of the block) or a vfork child (the
        // parent's block, which the suspended parent does not use): the
        // selector stays the one the block names.
        return Ok(state);
    }
    let state = new_block()?;
    if program_owns_tls() {
        // `fs` is the program's: nothing of ours may be written through it
        // (and no site is rewritten in this mode).
        state.use_own_selector();
    } else if shared_tls {
        state.use_own_selector();
        // The TLS (and so what a trampoline finds through fs) is the
        // parent's: both must take the trap path at rewritten sites.
        #[cfg(target_arch = "x86_64")]
        crate::rewrite::forget_thread_pointer();
    } else {
        state.use_selector(crate::selector::thread_byte());
        CURRENT.with(|c| c.set(state));
        #[cfg(target_arch = "x86_64")]
        crate::rewrite::note_thread_pointer();
    }
    install_signal_stack(state)?;
    Ok(state)
}

/// The alternate stack the calling thread had before the engine put its
/// own in place, as the program would have seen it. The kernel reports
/// no stack as `SS_DISABLE` whether or not one was ever set; a main thread
/// that never set one has flags 0 in its frames, other threads (reset at
/// clone) `SS_DISABLE`.
fn kernel_view_before_arming() -> AltStack {
    let mut ss = libc::stack_t {
        ss_sp: std::ptr::null_mut(),
        ss_flags: 0,
        ss_size: 0,
    };
    let _ = sys::call(
        Sysno::sigaltstack,
        [0, &mut ss as *mut _ as u64, 0, 0, 0, 0],
    );
    if ss.ss_size != 0 && ss.ss_flags & libc::SS_DISABLE == 0 {
        return AltStack {
            sp: ss.ss_sp as u64,
            flags: ss.ss_flags & crate::altstack::SS_AUTODISARM,
            size: ss.ss_size as u64,
        };
    }
    let pid = sys::raw6(Sysno::getpid.id() as u64, [0; 6]) as i32;
    if sys::gettid() == pid {
        AltStack::NEVER_SET
    } else {
        AltStack::DISABLED
    }
}

/// The calling thread's block state if `addr` (on the calling thread's
/// current stack) lies on the block's signal stack: the thread runs a
/// handler there. Asks the kernel, so it serves cold paths only.
pub(crate) fn containing(addr: usize) -> Option<&'static ThreadState> {
    let state = kernel_signal_stack_state()?;
    let stack = state.signal_stack()?;
    stack.contains(addr as u64).then_some(state)
}

/// The block state of the kernel's current alternate stack for this
/// thread, if it is a thread block.
fn kernel_signal_stack_state() -> Option<&'static ThreadState> {
    let mut ss = libc::stack_t {
        ss_sp: std::ptr::null_mut(),
        ss_flags: 0,
        ss_size: 0,
    };
    sys::call(
        Sysno::sigaltstack,
        [0, &mut ss as *mut _ as u64, 0, 0, 0, 0],
    )
    .ok()?;
    block_of(&ss)
}

fn install_signal_stack(state: &ThreadState) -> Result<(), syscalls::Errno> {
    let ss = state.signal_stack().expect("a block state has a block");
    let stack = libc::stack_t {
        ss_sp: ss.sp as *mut libc::c_void,
        ss_flags: 0,
        ss_size: ss.size as usize,
    };
    sys::call(
        Sysno::sigaltstack,
        [&stack as *const _ as u64, 0, 0, 0, 0, 0],
    )
    .map(drop)
}

/// The calling thread is about to exit: its block may serve a later
/// thread once this one is gone (see [`new_block`]).
pub(crate) fn retire(state: &ThreadState) {
    let block = state.block.get();
    if block == 0 {
        return;
    }
    let link = (block + PAGE) as *mut Retired;
    let tid = state.armed_tid.get();
    let mut head = RETIRED.load(Ordering::Relaxed);
    loop {
        // SAFETY: the bottom of this thread's own signal stack, mapped
        // read-write; the handler running now is near its top.
        unsafe { link.write(Retired { next: head, tid }) };
        match RETIRED.compare_exchange_weak(head, link, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => head = now,
        }
    }
}

/// A block for the calling thread: a retired one whose thread is gone, or
/// a new mapping.
fn new_block() -> Result<&'static ThreadState, syscalls::Errno> {
    let base = reuse_retired().map_or_else(map_block, Ok)?;
    let state = (base + BLOCK_SIZE - PAGE) as *mut ThreadState;
    // SAFETY: the state page is mapped read-write and owned by the calling
    // thread (a fresh mapping, or a retired block whose thread has exited).
    unsafe {
        state.write(ThreadState::new());
        (*state).block.set(base);
        (*state).stub_stack_top.set(state as u64);
    }
    register(base);
    // SAFETY: as above; initialised just now.
    Ok(unsafe { &*state })
}

/// Whether retired blocks serve new threads (see
/// [`crate::Builder::reuse_thread_blocks`]).
static REUSE: AtomicBool = AtomicBool::new(true);

pub(crate) fn set_block_reuse(reuse: bool) {
    REUSE.store(reuse, Ordering::Relaxed);
}

/// Takes a retired block off the list if its thread no longer exists.
/// Only the head is tried: threads come and go in order often enough, and
/// a list walk would race with other claimers.
fn reuse_retired() -> Option<usize> {
    if !REUSE.load(Ordering::Relaxed) {
        return None;
    }
    let head = RETIRED.load(Ordering::Acquire);
    if head.is_null() {
        return None;
    }
    // SAFETY: listed links are in mapped blocks that are never unmapped.
    let (next, tid) = unsafe { ((*head).next, (*head).tid) };
    let pid = sys::raw6(Sysno::getpid.id() as u64, [0; 6]) as u64;
    let gone = sys::raw6(Sysno::tgkill.id() as u64, [pid, tid as u64, 0, 0, 0, 0])
        == -(libc::ESRCH as i64);
    if !gone {
        return None;
    }
    RETIRED
        .compare_exchange(head, next, Ordering::Acquire, Ordering::Relaxed)
        .ok()
        .map(|link| link as usize - PAGE)
}

/// Maps a new block aligned to its size, with its guard page.
fn map_block() -> Result<usize, syscalls::Errno> {
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE) as u64;
    let span = 2 * BLOCK_SIZE;
    let raw = sys::call(Sysno::mmap, [0, span as u64, rw, flags, u64::MAX, 0])? as usize;
    let base = (raw + BLOCK_SIZE - 1) & !(BLOCK_SIZE - 1);
    let unmap = |start: usize, len: usize| {
        if len > 0 {
            let _ = sys::call(Sysno::munmap, [start as u64, len as u64, 0, 0, 0, 0]);
        }
    };
    unmap(raw, base - raw);
    unmap(base + BLOCK_SIZE, raw + span - base - BLOCK_SIZE);
    sys::call(Sysno::mprotect, [base as u64, PAGE as u64, 0, 0, 0, 0])?;
    Ok(base)
}
