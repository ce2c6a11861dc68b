//! The engine: configuration, the once-per-process install, arming threads,
//! and the state the dispatch core reads on every trap.

use crate::arch;
use crate::clone;
use crate::counters::{CounterSnapshot, Counters, Entrance};
use crate::dispatch::{dispatch, Core, Execution, Executor};
use crate::error::{Error, RegionProblem, Result};
use crate::filter::SyscallSet;
use crate::hooks::{DeliveredSignal, PostHook, PreHook, SignalHook, Syscall, Verdict};
use crate::kernel::{self, Region, Support};
use crate::selector::{self, Selector};
use crate::sigaction::{self, VirtualSigaction, SIGSET_SIZE, SIGSYS_BIT};
use crate::sys;
use crate::thread::{self, ThreadState};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use syscalls::Sysno;

/// Size of the engine's own gadget page and of the gadget image.
pub const GADGET_IMAGE_LEN: usize = 128;
const CLONE_GADGET_OFFSET: usize = 64;
/// Where `syscall; ret` sits in the gadget image (x86-64).
const SYSCALL_RET_OFFSET: usize = 96;
const PAGE: usize = 4096;

/// Where the engine's gadgets are, once placed in executable memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gadgets {
    pub(crate) syscall6: usize,
    pub(crate) restorer: usize,
    pub(crate) clone: usize,
    /// `syscall; ret` (x86-64), for rewritten sites' stub.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) syscall_ret: usize,
    /// The restorer of frames the engine builds for the program's handlers:
    /// outside the excluded region, so their `rt_sigreturn` traps (see
    /// `deliver`). None where no such place exists (inclusive mode).
    pub(crate) app_restorer: Option<usize>,
    /// The vfork gadget, and the address just after its trap-back
    /// `syscall` (see `trap`), where the engine owns both pages.
    pub(crate) vfork: Option<usize>,
    pub(crate) vfork_return: Option<usize>,
}

impl Gadgets {
    fn at(base: usize, app_restorer: Option<usize>) -> Self {
        Gadgets {
            syscall6: base + arch::GADGET_SYSCALL6,
            restorer: base + arch::GADGET_RESTORER,
            clone: base + CLONE_GADGET_OFFSET,
            syscall_ret: base + SYSCALL_RET_OFFSET,
            app_restorer,
            vfork: None,
            vfork_return: None,
        }
    }
}

/// Where the trap-back `syscall` sits in the engine's second page.
const TRAPBACK_OFFSET: usize = 64;
/// Where the vfork gadget sits in the engine's gadget page (x86-64).
const VFORK_GADGET_OFFSET: usize = GADGET_IMAGE_LEN;

/// The engine's own two pages for the default placement: the gadget page
/// (the excluded region) and, right after it, a page outside the region
/// whose `rt_sigreturn` and `syscall` trap: the restorer of frames built
/// for the program's handlers and the vfork gadget's trap-back site.
fn engine_pages() -> [u8; 2 * PAGE] {
    let mut pages = [0xcc; 2 * PAGE];
    pages[..GADGET_IMAGE_LEN].copy_from_slice(&gadget_bytes());
    let restorer = &arch::GADGETS[arch::GADGET_RESTORER..];
    pages[PAGE..PAGE + restorer.len()].copy_from_slice(restorer);
    pages[PAGE + TRAPBACK_OFFSET..PAGE + TRAPBACK_OFFSET + 2].copy_from_slice(&arch::SYSCALL_INSN);
    #[cfg(target_arch = "x86_64")]
    {
        let jmp_end = VFORK_GADGET_OFFSET + 12;
        let vfork = arch::vfork_gadget((PAGE + TRAPBACK_OFFSET - jmp_end) as i32);
        pages[VFORK_GADGET_OFFSET..VFORK_GADGET_OFFSET + vfork.len()].copy_from_slice(&vfork);
    }
    pages
}

/// The bytes of the engine's gadgets, ready to be copied into executable
/// memory that will be (part of) the excluded region: a code cache that is
/// the excluded region must hold them (see [`Placement::Excluded`]).
pub fn gadget_bytes() -> [u8; GADGET_IMAGE_LEN] {
    // int3 padding: a stray jump into the image stops at once.
    let mut image = [0xcc; GADGET_IMAGE_LEN];
    image[..arch::GADGETS.len()].copy_from_slice(&arch::GADGETS);
    let clone = arch::clone_gadget();
    image[CLONE_GADGET_OFFSET..CLONE_GADGET_OFFSET + clone.len()].copy_from_slice(&clone);
    #[cfg(target_arch = "x86_64")]
    image[SYSCALL_RET_OFFSET..SYSCALL_RET_OFFSET + 3].copy_from_slice(&arch::SYSCALL_RET_GADGET);
    image
}

/// Where the excluded region is and where the gadgets live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The engine maps one page, writes its gadgets there and excludes just
    /// that page: every other syscall obeys the selector. The default.
    GadgetPage,
    /// Exclusive mode over a range the caller owns (a JIT's code cache) that
    /// already holds [`gadget_bytes`] at `gadgets`.
    Excluded {
        /// First excluded byte.
        start: usize,
        /// Length of the excluded range.
        len: usize,
        /// Where the caller placed [`gadget_bytes`] (executable, inside the range).
        gadgets: usize,
    },
    /// Inclusive mode: only syscalls issued from `[start, start + len)` obey
    /// the selector; everything else, the engine's gadget page included,
    /// always runs. Needs a kernel with `PR_SYS_DISPATCH_INCLUSIVE_ON`.
    Inclusive {
        /// First included byte.
        start: usize,
        /// Length of the included range.
        len: usize,
    },
}

/// Configures and installs the engine. See [`Engine::builder`].
pub struct Builder {
    pre_hooks: Vec<PreHook>,
    post_hooks: Vec<PostHook>,
    signal_hooks: Vec<SignalHook>,
    filter: SyscallSet,
    placement: Placement,
    initial: Selector,
    follow_fork: bool,
    foreign_signal_handlers: bool,
    reuse_thread_blocks: bool,
    // Sites are rewritten on x86-64 only.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    rewrite_sites: bool,
    program_owns_tls: bool,
}

impl Builder {
    /// Adds a pre-hook; pre-hooks run in the order they were added.
    pub fn pre_hook(mut self, hook: impl Fn(&Syscall) -> Verdict + Send + Sync + 'static) -> Self {
        self.pre_hooks.push(Box::new(hook));
        self
    }

    /// Adds a post-hook; post-hooks run in the order they were added.
    pub fn post_hook(mut self, hook: impl Fn(&Syscall, &mut i64) + Send + Sync + 'static) -> Self {
        self.post_hooks.push(Box::new(hook));
        self
    }

    /// Adds a signal hook: it sees each signal the engine delivers to one
    /// of the program's handlers (see [`DeliveredSignal`]), in the order
    /// hooks were added, before the handler runs.
    pub fn signal_hook(mut self, hook: impl Fn(&DeliveredSignal) + Send + Sync + 'static) -> Self {
        self.signal_hooks.push(Box::new(hook));
        self
    }

    /// Only these numbers run the hooks; other trapped syscalls execute at
    /// once (they are still counted). Default: every number.
    pub fn watch(mut self, set: SyscallSet) -> Self {
        self.filter = set;
        self
    }

    /// Where the excluded (or included) region is. Default: [`Placement::GadgetPage`].
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// The selector value the installing thread gets once armed. Default:
    /// [`Selector::Allow`] (host personality until a guard says otherwise).
    pub fn initial_selector(mut self, value: Selector) -> Self {
        self.initial = value;
        self
    }

    /// Whether a child made by a trapped fork is armed again (the kernel
    /// disarms every child). Default: true.
    pub fn follow_fork(mut self, follow: bool) -> Self {
        self.follow_fork = follow;
        self
    }

    /// Whether the per-thread block (signal stack and state) of a thread
    /// that exited may serve a later thread. Default: true; without reuse
    /// a program that makes many threads over its life keeps one mapping
    /// per thread it ever had. Turn it off under ThreadSanitizer: it cannot
    /// see that the old thread is gone, and reports the new thread's use
    /// of the same stack memory as a race.
    pub fn reuse_thread_blocks(mut self, reuse: bool) -> Self {
        self.reuse_thread_blocks = reuse;
        self
    }

    /// Whether signal handlers the application installs (through trapped
    /// `rt_sigaction` calls) are foreign code: the engine then runs them
    /// through a wrapper that puts the selector on BLOCK for the handler's
    /// duration, even when the signal interrupted a hook or a blocking call
    /// the engine was executing with the selector on ALLOW. Meant for
    /// programs that are foreign as a whole (a preloaded tool). Default:
    /// false (handlers run with the interrupted thread's selector).
    pub fn foreign_signal_handlers(mut self, foreign: bool) -> Self {
        self.foreign_signal_handlers = foreign;
        self
    }

    /// Whether trapped `mov eax, imm32; syscall` sites are rewritten into a
    /// jump to a trampoline that calls the dispatch core without a signal
    /// (x86-64, exclusive placements; see the crate documentation and
    /// [`Entrance::Rewritten`]). The engine's TLS must be static (an
    /// executable, or a library loaded at startup such as a preload), as
    /// for a code generator's `fs`-relative selector flip. Hooks of
    /// rewritten calls find every vector register (SSE, AVX, AVX-512)
    /// saved, but not the x87 state or PKRU: a hook that changes those
    /// must restore them. Default: false.
    pub fn rewrite_sites(mut self, rewrite: bool) -> Self {
        self.rewrite_sites = rewrite;
        self
    }

    /// Whether the program owns the thread pointer (`fs` on x86-64) and its
    /// TLS: for a loader that installs the engine and then hands the whole
    /// process to a program with a libc of its own, which sets `fs` for
    /// each of its threads. The engine then reaches nothing through its
    /// own thread-locals once installed: each thread's selector is the
    /// byte in its thread block ([`Engine::current_thread_selector`]),
    /// threads and forks are armed on their block, errno is left alone
    /// (the hooks must not call libc: its errno and its allocator are
    /// `fs`-relative), and sites are not rewritten (their stubs read the
    /// selector `fs`-relative). [`selector::set`] and the direct entrance
    /// do not serve such a process. A program that points `fs` at a
    /// thread block of its own making while it runs (its own TLS scheme)
    /// needs this mode as well: without it the trap path keeps errno
    /// through `fs`. Default: false.
    pub fn program_owns_tls(mut self, owns: bool) -> Self {
        self.program_owns_tls = owns;
        self
    }

    /// Installs the engine in this process, once: maps the gadgets,
    /// installs the SIGSYS handler and arms the calling thread.
    pub fn install(self) -> Result<&'static Engine> {
        if INSTALLING.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyInstalled);
        }
        let result = self.install_claimed();
        if result.is_err() {
            INSTALLING.store(false, Ordering::Release);
        }
        result
    }

    fn install_claimed(self) -> Result<&'static Engine> {
        let support = kernel::probe();
        match support {
            Support::Unsupported => return Err(Error::Unsupported),
            Support::Refused(errno) => return Err(Error::RefusedByPolicy(errno)),
            Support::Available { inclusive } => {
                if !inclusive && matches!(self.placement, Placement::Inclusive { .. }) {
                    return Err(Error::InclusiveUnsupported);
                }
            }
        }
        let (region, gadget_base) = match self.placement {
            Placement::GadgetPage => {
                let page = map_code_page(&engine_pages(), "mmap(gadget pages)")?;
                (
                    Region::Exclusive {
                        start: page,
                        len: PAGE,
                    },
                    page,
                )
            }
            Placement::Excluded {
                start,
                len,
                gadgets,
            } => {
                let region = Region::Exclusive { start, len };
                region.validate()?;
                let inside = gadgets >= start
                    && gadgets
                        .checked_add(GADGET_IMAGE_LEN)
                        .is_some_and(|e| e <= start + len);
                if !inside {
                    return Err(Error::BadRegion {
                        start,
                        len,
                        problem: RegionProblem::GadgetsOutside,
                    });
                }
                (region, gadgets)
            }
            Placement::Inclusive { start, len } => {
                let region = Region::Inclusive { start, len };
                region.validate()?;
                let page = map_code_page(&gadget_bytes(), "mmap(gadget page)")?;
                if page < start + len && start < page + PAGE {
                    unmap(page);
                    return Err(Error::BadRegion {
                        start,
                        len,
                        problem: RegionProblem::GadgetsInside,
                    });
                }
                (region, page)
            }
        };
        // Frames built for the program's handlers return through a copy of
        // the restorer outside the excluded region, so that their
        // rt_sigreturn traps. In inclusive mode every place outside the
        // range runs syscalls unchecked: the handlers are called instead.
        let own_pages = self.placement == Placement::GadgetPage;
        let app_restorer = match region {
            Region::Exclusive { .. } if own_pages => Some(gadget_base + PAGE),
            Region::Exclusive { .. } => Some(map_code_page(
                &arch::GADGETS[arch::GADGET_RESTORER..],
                "mmap(restorer page)",
            )?),
            Region::Inclusive { .. } => None,
        };
        let mut gadgets = Gadgets::at(gadget_base, app_restorer);
        if own_pages && cfg!(target_arch = "x86_64") {
            gadgets.vfork = Some(gadget_base + VFORK_GADGET_OFFSET);
            gadgets.vfork_return =
                Some(gadget_base + PAGE + TRAPBACK_OFFSET + arch::SYSCALL_INSN_LEN);
        }
        #[cfg(target_arch = "x86_64")]
        let rewriter = match region {
            Region::Exclusive { .. } if self.rewrite_sites && !self.program_owns_tls => {
                crate::rewrite::Rewriter::new(gadgets.syscall_ret)
            }
            _ => None,
        };
        let engine: &'static Engine = Box::leak(Box::new(Engine {
            core: Core {
                pre_hooks: self.pre_hooks,
                post_hooks: self.post_hooks,
                filter: self.filter,
                counters: Counters::new(),
                signal_hooks: self.signal_hooks,
            },
            region,
            gadgets,
            follow_fork: self.follow_fork,
            foreign_signal_handlers: self.foreign_signal_handlers,
            app_sigsys: VirtualSigaction::new(),
            sa_mask_sigsys: AtomicU64::new(0),
            support,
            #[cfg(target_arch = "x86_64")]
            rewriter,
        }));
        thread::set_block_reuse(self.reuse_thread_blocks);
        thread::set_program_owns_tls(self.program_owns_tls);
        let previous = engine.reinstall_sigsys_handler()?;
        engine.app_sigsys.store(previous);
        engine.adopt_inherited_sigsys_mask();
        crate::dispatch::abort_on_hook_panic();
        ENGINE.store(engine as *const Engine as *mut Engine, Ordering::Release);
        engine.arm_current_thread(self.initial)?;
        Ok(engine)
    }
}

/// The first code of a thread (or process) made by a re-issued clone that
/// has TLS of its own: with CLONE_SETTLS a fresh static-TLS block built from
/// the TLS image (selector ALLOW, not armed), without CLONE_VM a copy of the
/// parent's. Arms it with its own selector on BLOCK: the clone trapped, so
/// its caller was foreign, and so is the child. Called by the arch crate's
/// `clone_child_entry` before the child's first foreign instruction; the
/// child is not armed yet, so its syscalls here simply run.
pub(crate) extern "C" fn arm_clone_child_own_tls() {
    if let Some(engine) = Engine::installed() {
        // Nothing to report to: a child that cannot be armed runs unarmed,
        // as it would without the engine.
        let _ = engine.arm_clone_child(false);
    }
}

/// As [`arm_clone_child_own_tls`] for a new process made with
/// `CLONE_CLEAR_SIGHAND` (see [`Engine::after_handlers_cleared`]).
pub(crate) extern "C" fn arm_clone_child_cleared_handlers() {
    if let Some(engine) = Engine::installed() {
        engine.after_handlers_cleared();
        let _ = engine.arm_clone_child(false);
    }
}

/// As [`arm_clone_child_own_tls`] for a child that shares its parent's TLS
/// (CLONE_VM without CLONE_SETTLS, e.g. posix_spawn's vfork child): it is
/// armed on the parent's selector byte, which is already BLOCK (the handler
/// restored it before re-issuing the clone), and the parent's per-thread
/// state (`armed_tid`) is left alone because the parent still owns it.
pub(crate) extern "C" fn arm_clone_child_shared_tls() {
    if let Some(engine) = Engine::installed() {
        let _ = engine.arm_clone_child(true);
    }
}

/// Maps `code` into fresh pages, read and execute only.
fn map_code_page(code: &[u8], op: &'static str) -> Result<usize> {
    let os = |op| move |errno| Error::Os { op, errno };
    let len = code.len().div_ceil(PAGE) * PAGE;
    let page = sys::call(
        Sysno::mmap,
        [
            0,
            len as u64,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
            u64::MAX,
            0,
        ],
    )
    .map_err(os(op))? as usize;
    // SAFETY: `page` is a fresh private RW mapping of `len` bytes, at least the code's length.
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), page as *mut u8, code.len()) };
    // W^X: the page is never writable and executable at once.
    sys::call(
        Sysno::mprotect,
        [
            page as u64,
            len as u64,
            (libc::PROT_READ | libc::PROT_EXEC) as u64,
            0,
            0,
            0,
        ],
    )
    .map_err(os("mprotect(gadget page)"))?;
    Ok(page)
}

fn unmap(page: usize) {
    let _ = sys::call(Sysno::munmap, [page as u64, PAGE as u64, 0, 0, 0, 0]);
}

static INSTALLING: AtomicBool = AtomicBool::new(false);
static ENGINE: AtomicPtr<Engine> = AtomicPtr::new(std::ptr::null_mut());

/// The installed engine: hooks, filter, counters, region and gadgets.
pub struct Engine {
    /// Hooks, filter and counters: what the dispatch core works with.
    pub(crate) core: Core,
    region: Region,
    pub(crate) gadgets: Gadgets,
    follow_fork: bool,
    /// Application signal handlers run with the selector on BLOCK.
    pub(crate) foreign_signal_handlers: bool,
    /// The application's SIGSYS action (the real one is always ours).
    pub(crate) app_sigsys: VirtualSigaction,
    /// Signals whose `sa_mask` the application asked to contain SIGSYS.
    pub(crate) sa_mask_sigsys: AtomicU64,
    support: Support,
    /// Rewrites trapped sites, when the builder asked for it.
    #[cfg(target_arch = "x86_64")]
    pub(crate) rewriter: Option<crate::rewrite::Rewriter>,
}

impl Engine {
    /// Starts configuring the engine.
    ///
    /// ```
    /// use sud_engine::{selector, Engine, Selector, SyscallSet, Sysno, Verdict};
    /// let engine = Engine::builder()
    ///     .watch(SyscallSet::from_sysnos(&[Sysno::getpid]))
    ///     .pre_hook(|call| Verdict::Return(4242))
    ///     .install()?;
    /// let pid = {
    ///     let _foreign = selector::enter(Selector::Block);
    ///     // SAFETY: getpid has no preconditions.
    ///     unsafe { libc::getpid() }
    /// };
    /// assert_eq!(pid, 4242);
    /// assert_eq!(engine.counters().traps, 1);
    /// # Ok::<(), sud_engine::Error>(())
    /// ```
    pub fn builder() -> Builder {
        Builder {
            pre_hooks: Vec::new(),
            post_hooks: Vec::new(),
            signal_hooks: Vec::new(),
            filter: SyscallSet::all(),
            placement: Placement::GadgetPage,
            initial: Selector::Allow,
            follow_fork: true,
            foreign_signal_handlers: false,
            reuse_thread_blocks: true,
            rewrite_sites: false,
            program_owns_tls: false,
        }
    }

    /// The installed engine, if any.
    pub fn installed() -> Option<&'static Engine> {
        let ptr = ENGINE.load(Ordering::Acquire);
        // SAFETY: ENGINE only ever holds null or a leaked, never-freed Engine.
        unsafe { ptr.as_ref() }
    }

    /// Arms Syscall User Dispatch for the calling thread, with its selector
    /// set to `initial` afterwards. Arming an armed thread re-arms it.
    ///
    /// The thread gets the engine's per-thread block (see the crate
    /// documentation): its real alternate signal stack becomes the
    /// engine's.
    pub fn arm_current_thread(&self, initial: Selector) -> Result<()> {
        let own_tls = !thread::program_owns_tls();
        let byte = if own_tls {
            selector::set(Selector::Allow);
            selector::thread_byte()
        } else {
            std::ptr::null()
        };
        let state = thread::ensure_block(byte).map_err(|errno| Error::Os {
            op: "mmap/sigaltstack(thread block)",
            errno,
        })?;
        state.replace_selector(Selector::Allow as u8);
        self.arm_on(state)?;
        state.armed_tid.set(sys::gettid());
        state.replace_selector(initial as u8);
        Ok(())
    }

    /// The byte the kernel reads as the calling thread's selector: its
    /// thread-local byte, or with [`Builder::program_owns_tls`] the byte in
    /// its thread block, which a loader sets to BLOCK as its last store
    /// before it jumps to the program. Host code only (it reaches the
    /// thread's state through the engine's TLS).
    pub fn current_thread_selector(&self) -> *const std::sync::atomic::AtomicU8 {
        thread::current().selector()
    }

    /// Arms the calling thread on `state`'s selector.
    fn arm_on(&self, state: &ThreadState) -> Result<()> {
        let selector = state.selector() as *const _ as *mut Selector;
        // SAFETY: the selector is the thread-local byte of this thread or
        // its block's own byte: valid for the thread's whole life, written
        // only with Selector values.
        unsafe { kernel::arm(self.region, selector) }
    }

    /// Arms a child made by a re-issued clone, before its first
    /// instruction, on BLOCK: the clone trapped, so its caller was foreign,
    /// and so is the child. `shared_tls`: its TLS is its parent's.
    fn arm_clone_child(&self, shared_tls: bool) -> Result<()> {
        let state = thread::adopt_clone_child(shared_tls).map_err(|errno| Error::Os {
            op: "mmap/sigaltstack(thread block)",
            errno,
        })?;
        // A vfork child shares its parent's block and selector (the parent
        // waits, with the selector on BLOCK); its state, armed_tid
        // included, stays the parent's.
        let vfork_child = state.armed_tid.get() != 0 && shared_tls;
        // Asked before arming: once armed on BLOCK, the engine's own call
        // would trap and reach the hooks as if the program had made it.
        let tid = sys::gettid();
        state.replace_selector(Selector::Block as u8);
        self.arm_on(state)?;
        if !vfork_child {
            state.armed_tid.set(tid);
        }
        Ok(())
    }

    /// In a new process made with `CLONE_CLEAR_SIGHAND`: the kernel reset
    /// every handler, the engine's SIGSYS handler included, so it comes
    /// back, and the program's virtual actions are reset as the kernel
    /// reset the real ones (the child's memory is its own copy).
    pub(crate) fn after_handlers_cleared(&self) {
        let _ = self.reinstall_sigsys_handler();
        if self.app_sigsys.load().is_handler() {
            self.app_sigsys.store(sigaction::KernelSigaction::default());
        }
        for action in &sigaction::APP_ACTIONS {
            if action.load().is_handler() {
                action.store(sigaction::KernelSigaction::default());
            }
        }
    }

    /// Installs the engine's SIGSYS handler; returns the action it replaced.
    pub(crate) fn reinstall_sigsys_handler(&self) -> Result<sigaction::KernelSigaction> {
        sigaction::install_sigsys_handler(
            crate::trap::on_sigsys as *const () as usize,
            self.gadgets.restorer,
        )
        .map_err(|errno| Error::Os {
            op: "rt_sigaction(SIGSYS)",
            errno,
        })
    }

    /// A SIGSYS the installing thread finds blocked was blocked by the
    /// program (inherited over execve): the program keeps that view, and
    /// the real mask lets dispatch through.
    fn adopt_inherited_sigsys_mask(&self) {
        let mut mask = 0u64;
        let unblock = SIGSYS_BIT;
        let r = sys::raw6(
            Sysno::rt_sigprocmask.id() as u64,
            [
                libc::SIG_UNBLOCK as u64,
                &unblock as *const _ as u64,
                &mut mask as *mut _ as u64,
                SIGSET_SIZE,
                0,
                0,
            ],
        );
        if r == 0 && mask & SIGSYS_BIT != 0 {
            thread::current().app_blocks_sigsys.set(true);
        }
    }

    /// Switches dispatch off for the calling thread.
    pub fn disarm_current_thread(&self) -> Result<()> {
        let _host = selector::enter(Selector::Allow);
        kernel::disarm()?;
        thread::current().armed_tid.set(0);
        Ok(())
    }

    /// Whether the calling thread is armed.
    pub fn is_current_thread_armed(&self) -> bool {
        thread::current().armed_tid.get() == sys::gettid()
    }

    /// Whether children made by trapped forks and clones are armed.
    pub(crate) fn follows_fork(&self) -> bool {
        self.follow_fork
    }

    pub(crate) fn rearm_forked_child(&self, thread: &ThreadState) {
        #[cfg(target_arch = "x86_64")]
        crate::rewrite::forked();
        if !self.follow_fork {
            thread.armed_tid.set(0);
            return;
        }
        // The child's copy of the parent's block and selector is its own
        // memory, at the same addresses.
        let armed = self.arm_on(thread);
        thread
            .armed_tid
            .set(if armed.is_ok() { sys::gettid() } else { 0 });
    }

    /// The counters, read without a lock.
    pub fn counters(&self) -> CounterSnapshot {
        self.core.counters.snapshot()
    }

    /// [`CounterSnapshot::patched_sites`] and [`CounterSnapshot::compat`]
    /// alone: two loads, cheap enough for a hook to poll (a snapshot sums
    /// every thread's block).
    pub fn sites_and_compat(&self) -> (u64, u64) {
        self.core.counters.sites_and_compat()
    }

    /// How many times syscall `nr` entered the engine (trap or direct).
    pub fn count(&self, nr: Sysno) -> u64 {
        self.core.counters.count(nr.id() as u64)
    }

    /// [`Engine::count`] for a raw number.
    pub fn count_raw(&self, nr: u64) -> u64 {
        self.core.counters.count(nr)
    }

    /// The region every armed thread uses.
    pub fn region(&self) -> Region {
        self.region
    }

    /// What the kernel reported at install.
    pub fn support(&self) -> Support {
        self.support
    }

    /// Address of the `extern "C" fn(nr, a0..a5) -> i64` syscall gadget in
    /// the excluded region: a syscall through it never traps.
    pub fn syscall_gadget(&self) -> usize {
        self.gadgets.syscall6
    }

    /// The direct entrance of the dispatch core, for generated code that
    /// replaced a syscall instruction with a call: same filter, hooks and
    /// counters as a trap, counted as [`Entrance::Direct`]. Returns the raw
    /// result. Call it with the selector on ALLOW (host personality).
    pub fn dispatch_direct(&self, nr: u64, args: [u64; 6], call_addr: u64) -> i64 {
        let mut frame = DirectFrame {
            nr,
            args,
            call_addr,
        };
        self.dispatch_frame(&mut frame, DirectMode::Execute)
    }

    /// The direct entrance on a stub's frame, executing or leaving calls to
    /// the stub or the site as `mode` says.
    fn dispatch_frame(&self, frame: &mut DirectFrame, mode: DirectMode) -> i64 {
        // Not a signal handler: the thread-local pointer to the block is
        // fine here (generated code calls this from a host-linked stub).
        let thread = thread::current();
        let mut call = Syscall {
            nr: frame.nr,
            args: frame.args,
            call_addr: frame.call_addr,
            tid: thread.armed_tid.get(),
            entrance: Entrance::Direct,
        };
        let defer = mode != DirectMode::Execute && self.core.post_hooks.is_empty();
        let mut exec = DirectExecutor {
            engine: self,
            defer_into: defer.then_some(frame),
            clones_at_site: mode == DirectMode::ClonesAtSite,
        };
        match dispatch(&self.core, thread, &mut call, &mut exec) {
            Execution::Returned(value) => value,
            Execution::Resumes => unreachable!("the direct executor never redirects"),
        }
    }
}

impl Engine {
    /// The entrance of rewritten sites (see `rewrite`): as the direct
    /// entrance, on `thread`'s state, leaving plain calls to the stub.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn dispatch_rewritten(&self, frame: &mut DirectFrame, thread: &ThreadState) -> i64 {
        let mut call = Syscall {
            nr: frame.nr,
            args: frame.args,
            call_addr: frame.call_addr,
            tid: thread.armed_tid.get(),
            entrance: Entrance::Rewritten,
        };
        let hooked = self.core.filter.contains(frame.nr);
        let defer = self.core.post_hooks.is_empty();
        let mut exec = DirectExecutor {
            engine: self,
            defer_into: defer.then_some(frame),
            clones_at_site: false,
        };
        let mut run = || match dispatch(&self.core, thread, &mut call, &mut exec) {
            Execution::Returned(value) => value,
            Execution::Resumes => unreachable!("the direct executor never redirects"),
        };
        // Hooks may write errno; without them nothing here does.
        if hooked {
            sys::with_errno_kept(run)
        } else {
            run()
        }
    }
}

/// The registers of a syscall site in generated code, as a direct-hook stub
/// hands them to [`direct_entry`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectFrame {
    /// The syscall number register.
    pub nr: u64,
    /// The six argument registers in syscall-ABI order.
    pub args: [u64; 6],
    /// The address just after the original syscall instruction.
    pub call_addr: u64,
}

/// The direct entrance as a C-ABI function for emitted stubs: dispatches
/// `frame` through the installed engine ([`Engine::dispatch_direct`]) and
/// returns the raw result; without an engine it simply executes the call.
/// The stub must call it with the selector on ALLOW and a 16-byte aligned
/// stack, and restore whatever the syscall instruction preserves.
pub extern "C" fn direct_entry(frame: &DirectFrame) -> i64 {
    let mut frame = *frame;
    sys::with_errno_kept(|| match Engine::installed() {
        Some(engine) => engine.dispatch_frame(&mut frame, DirectMode::Execute),
        None => sys::raw6(frame.nr, frame.args),
    })
}

/// What [`direct_entry_deferring`] answers when the stub itself must now
/// execute the syscall described by the frame. No syscall returns it (it is
/// neither an errno nor a user address), and hooks must not return it.
pub const EXECUTE_IN_STUB: i64 = i64::MIN;

/// [`direct_entry`] for stubs that can execute the syscall themselves from
/// the excluded region: when the hooks let the call run unchanged or with
/// changed arguments and no post-hook needs its result, the engine writes
/// the final number and arguments into `frame` and answers
/// [`EXECUTE_IN_STUB`]. The syscall then runs one `ret` away from the site
/// instead of deep in Rust frames, whose returns all mispredict after a
/// kernel entry (the return stack buffer is flushed): ~20 ns per call here.
pub extern "C" fn direct_entry_deferring(frame: &mut DirectFrame) -> i64 {
    sys::with_errno_kept(|| match Engine::installed() {
        Some(engine) => engine.dispatch_frame(frame, DirectMode::Defer),
        None => EXECUTE_IN_STUB,
    })
}

/// What [`direct_entry_clones_at_site`] answers for a process- or
/// thread-creating call the hooks let run: the site must now issue it
/// itself. Neither an errno nor a pid, and small enough for a flag-free
/// `lea rcx, [rax + 0x10000]; jrcxz` test.
pub const EXECUTE_AT_SITE: i64 = -0x10000;

/// [`direct_entry_deferring`] for translators that issue clone-family
/// calls themselves, as a real `syscall` at the site, so that a child with
/// its own stack starts there with the site's registers (sud-codegen's
/// DBI). The hooks still see the call first and may emulate or fail it;
/// if they let it run, the answer is [`EXECUTE_AT_SITE`] (post-hooks do not
/// see its result, as for a clone re-issued on the trap path, and
/// arguments changed by a hook are not applied).
pub extern "C" fn direct_entry_clones_at_site(frame: &mut DirectFrame) -> i64 {
    sys::with_errno_kept(|| match Engine::installed() {
        Some(engine) => engine.dispatch_frame(frame, DirectMode::ClonesAtSite),
        None if is_clone_call(frame.nr) => EXECUTE_AT_SITE,
        None => EXECUTE_IN_STUB,
    })
}

fn is_clone_call(nr: u64) -> bool {
    usize::try_from(nr)
        .ok()
        .and_then(Sysno::new)
        .is_some_and(clone::is_clone_family)
}

/// How the direct entrance treats a call the hooks let run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirectMode {
    /// Execute it here.
    Execute,
    /// Leave plain calls to the stub ([`EXECUTE_IN_STUB`]).
    Defer,
    /// As `Defer`, and leave clone-family calls to the site ([`EXECUTE_AT_SITE`]).
    ClonesAtSite,
}

/// Executes direct-entrance calls: no signal frame is involved, so calls
/// run as they are, except those that create a process or thread.
struct DirectExecutor<'a> {
    engine: &'a Engine,
    /// The stub's frame, when the stub executes plain calls itself.
    defer_into: Option<&'a mut DirectFrame>,
    /// Whether the site issues clone-family calls itself.
    clones_at_site: bool,
}

impl Executor for DirectExecutor<'_> {
    fn execute(&mut self, call: &Syscall) -> Execution {
        let Some(sysno) = call.sysno().filter(|&s| clone::is_clone_family(s)) else {
            if let Some(frame) = self.defer_into.as_deref_mut() {
                frame.nr = call.nr;
                frame.args = call.args;
                return Execution::Returned(EXECUTE_IN_STUB);
            }
            return Execution::Returned(sys::raw6(call.nr, call.args));
        };
        if self.clones_at_site {
            return Execution::Returned(EXECUTE_AT_SITE);
        }
        let mut clone3_copy = [0u64; clone::CLONE_ARGS_WORDS];
        Execution::Returned(
            match clone::classify_clone(sysno, call.args, &mut clone3_copy) {
                // The child would start inside the engine's frames, on a stack
                // that holds none of them: refuse (glibc then reports EAGAIN)
                // rather than crash. Generated code issues thread-creating
                // clones as real syscalls from the code cache instead, as
                // sud-codegen's translator does.
                clone::CloneRequest::NewStack { .. } => -(libc::ENOSYS as i64),
                clone::CloneRequest::ForkLike { nr, args, .. } => {
                    let r = sys::raw6(nr, args);
                    if r == 0 {
                        self.engine.rearm_forked_child(thread::current());
                    }
                    r
                }
                clone::CloneRequest::Fault => -(libc::EFAULT as i64),
            },
        )
    }
}
