//! Following a thread (Frida Stalker's `follow_me`, DynamoRIO's
//! `dr_app_start`): from a call of [`Dbi::follow_me`] on, the calling
//! thread runs translated until it calls [`Dbi::unfollow_me`] or exits;
//! the threads it makes are followed from their first instruction. The
//! tools' preload mode (`syscount --dbi`) calls it from the preload
//! library's constructor, so the dynamic loader's remaining work, `_start`,
//! `main` and `exit` run translated.
//!
//! # Entering translation at the caller's return address
//! `follow_me` calls the *follow stub* in the code cache. The stub reads
//! its own return address (the native address in `follow_me` after the
//! call), flips the selector to ALLOW, asks the translator for that
//! address's translation (translating it now if needed), pops the return
//! address as a native `ret` would, flips the selector to BLOCK and jumps
//! there. The rest of `follow_me` then runs translated and its `ret` is a
//! translated return: a lookup of the native return address in its
//! caller, and so on up the stack. Nothing else is needed to carry "the
//! caller's registers" over: the stub is an `extern "C"` call, so the
//! callee-saved registers, the stack and the flags' direction bit are
//! preserved exactly, and the caller-saved ones are dead at a call by the
//! ABI. Every frame above holds a native return address, which is what
//! translated code keeps on the stack too (translated calls push native
//! return addresses), so frames made natively before the switch and
//! translated after it mix freely.
//!
//! `unfollow_me` leaves the other way: translated, it calls an *unfollow
//! stub* (mapped to itself in the block map, so the translated call's
//! lookup jumps straight into it) that sets the selector the thread had
//! when it started following and returns natively into `unfollow_me`.
//!
//! # Where per-thread state lives
//! In the scratch slots (static TLS, see the `scratch` module): `follow`
//! is 0 for a thread that is not followed, else one plus the selector to
//! restore when it stops (ALLOW for a host thread, BLOCK for a thread of a
//! program under the tools, whose native code must stay under the trap
//! net). A thread made by a clone in translated code starts with a fresh
//! TLS, so `adopt_child` marks it followed (restoring BLOCK: its code is
//! the program's). The thread's epoch slot (the `records` module) is
//! claimed at `follow_me` and released at `unfollow_me`.
//!
//! # Threads, fork, exec, signals
//! - Threads: a `clone`/`clone3` in translated code is issued at its site
//!   (see the module documentation of `dbi`): the child returns from the
//!   syscall inside the translated block, on its own stack, so it is
//!   followed from its first instruction, and arms itself before its next
//!   one (`adopt_child`).
//! - fork: the code cache is a shared mapping, so a forked child would
//!   see its parent's later translations being written into the arena it
//!   shares; today such a child stops translating (it runs what was
//!   translated before the fork, everything else native under the trap
//!   net). Making fork children keep translating needs a private copy of
//!   the cache (remap the arena copy-on-write in the child, or a fresh
//!   arena and a flush), which is open.
//! - exec: the new image loads the preload again (the tools keep it in
//!   `LD_PRELOAD` across `execve`), whose constructor follows again.
//! - Signals: a handler entered while the thread is in translated code
//!   runs translated with the native state in its frame (the `signals`
//!   module and the engine's frame hooks); one entered while it runs native
//!   (code left native) runs native under the trap net.
//!
//! # Exclusions
//! [`super::DbiBuilder::stop_at`] addresses run native with the selector on
//! BLOCK until they return to a translated caller. Exclusion of whole
//! modules or address ranges (`--exclude libcrypto.so`), with following
//! resuming at the return, is not implemented yet: it needs the call into
//! the range to push a return address that re-enters translation (a
//! per-call-site trampoline), as `Dbi::call`'s trampoline does.
//!
//! # Limits
//! - `follow_me` must be called from host code that is fine to run
//!   translated afterwards (any ordinary compiled code is). A thread that
//!   exits while followed just exits.
//! - `rt_sigaction` and `sigaltstack` from translated code still go
//!   through the trap path (see the `signals` module), so a followed
//!   program that sets many handlers (perl, Python) traps that often;
//!   `rt_sigprocmask` is a direct call that keeps SIGSYS deliverable (the
//!   mask read back then shows SIGSYS unblocked even if the program asked
//!   to block it).
//! - The translator allocates in the process it follows (at install, in
//!   the host's heap), so the program's own allocator may need a `brk` or
//!   an `mmap` more or less than natively.
//! - What is open: fork children that keep translating, exclusion of
//!   modules with following resumed at their return, module load/unload
//!   events, a listing of what ran native (only counted today).

use super::{records, scratch, Dbi};
use crate::direct::{selector_flip, thread_selector};
use crate::Error;
use dynasmrt::x64::X64Relocation;
use dynasmrt::{dynasm, DynasmApi, VecAssembler};
use std::sync::OnceLock;
use sud_engine::Selector;

/// Why a thread could not be followed.
#[derive(Debug)]
pub enum FollowError {
    /// The follow stubs could not be emitted (cache full, encoding).
    Codegen(Error),
    /// This process is a fork child of the process that installed the
    /// translator: it no longer translates (see the `follow` module).
    Forked,
}

impl std::fmt::Display for FollowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FollowError::Codegen(e) => write!(f, "emitting the follow stubs failed: {e}"),
            FollowError::Forked => write!(
                f,
                "this process was forked from the one that installed the translator; it does not translate"
            ),
        }
    }
}

impl std::error::Error for FollowError {}

/// The stubs, emitted on first use.
struct FollowStubs {
    /// `extern "C" fn()`: returns translated (see the module documentation).
    follow: usize,
    /// Returns natively with the selector ALLOW or BLOCK.
    unfollow_allow: usize,
    unfollow_block: usize,
}

static STUBS: OnceLock<Result<FollowStubs, String>> = OnceLock::new();

/// The follow stub's Rust half: the translation of `native` (its own
/// return address), made now if needed. Runs with the selector on ALLOW.
extern "C" fn follow_target(native: u64) -> u64 {
    let outcome = std::panic::catch_unwind(|| match Dbi::installed() {
        Some(dbi) => dbi.resolve(native),
        None => native,
    });
    outcome.unwrap_or_else(|_| std::process::abort())
}

fn emit(dbi: &Dbi) -> Result<FollowStubs, Error> {
    let access = thread_selector()?;
    let allow = selector_flip(access, Selector::Allow)?;
    let block = selector_flip(access, Selector::Block)?;
    let mut offsets = (0, 0, 0);
    let base = dbi.shared.cache.emit_with(|rip| {
        let mut a = VecAssembler::<X64Relocation>::new(rip);
        let follow = a.offset().0;
        a.extend(allow.iter());
        dynasm!(a
            ; .arch x64
            ; mov rdi, [rsp]
            // Entered by a call: rsp is 8 off 16-byte alignment.
            ; sub rsp, 8
            ; mov rax, QWORD follow_target as extern "C" fn(u64) -> u64 as usize as i64
            ; call rax
            // The padding and the native return address, as `ret` would.
            ; add rsp, 16
        );
        a.extend(block.iter());
        dynasm!(a ; .arch x64 ; jmp rax);
        let unfollow_allow = a.offset().0;
        a.extend(allow.iter());
        dynasm!(a ; .arch x64 ; ret);
        let unfollow_block = a.offset().0;
        a.extend(block.iter());
        dynasm!(a ; .arch x64 ; ret);
        offsets = (follow, unfollow_allow, unfollow_block);
        a.finalize()
            .map_err(|e| Error::Encode(format!("DBI follow stubs: {e:?}")))
    })?;
    let stubs = FollowStubs {
        follow: base + offsets.0,
        unfollow_allow: base + offsets.1,
        unfollow_block: base + offsets.2,
    };
    // Translated calls into the unfollow stubs find them in the map and
    // jump there as they are.
    for at in [stubs.unfollow_allow, stubs.unfollow_block] {
        dbi.shared
            .map
            .insert(at as u64, at as u64, super::table::NO_OWNER);
    }
    Ok(stubs)
}

impl Dbi {
    fn follow_stubs(&self) -> Result<&'static FollowStubs, FollowError> {
        STUBS
            .get_or_init(|| emit(self).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| FollowError::Codegen(Error::Encode(e.clone())))
    }

    /// Whether the calling thread is followed.
    pub fn is_following(&self) -> bool {
        scratch::with_scratch(|s| s.follow.get()) != 0
    }

    /// From here on the calling thread runs translated: this call returns
    /// into the translation of its caller, with the caller's registers, and
    /// everything the thread runs after (returns up the stack included)
    /// is translated, until [`Dbi::unfollow_me`]. Threads it creates are
    /// followed from their first instruction. Calling it again while
    /// followed does nothing. See the `follow` module for how.
    #[inline(never)]
    pub fn follow_me(&self) -> Result<(), FollowError> {
        if self.is_following() {
            return Ok(());
        }
        if self
            .shared
            .forked
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(FollowError::Forked);
        }
        // Host work until the stub's jump (which sets BLOCK): a program
        // thread under the trap net would trap its own follow_me here.
        let previous = sud_engine::selector::set(Selector::Allow);
        let stubs = match self.follow_stubs() {
            Ok(stubs) => stubs,
            Err(e) => {
                sud_engine::selector::set(previous);
                return Err(e);
            }
        };
        let restore = previous as u8;
        scratch::with_scratch(|s| {
            s.follow.set(1 + restore);
            s.depth.set(s.depth.get() + 1);
        });
        records::checkpoint();
        // SAFETY: the follow stub is an `extern "C" fn()` emitted above; it
        // returns (into the translation of this very point) with every
        // callee-saved register and the stack as a native return leaves
        // them.
        let follow: extern "C" fn() = unsafe { std::mem::transmute(stubs.follow) };
        follow();
        Ok(())
    }

    /// Stops following the calling thread: this call returns natively, with
    /// the selector the thread had when [`Dbi::follow_me`] was called.
    /// Does nothing for a thread that is not followed.
    #[inline(never)]
    pub fn unfollow_me(&self) {
        let Some(Ok(stubs)) = STUBS.get() else {
            return;
        };
        let restore = scratch::with_scratch(|s| {
            let was = s.follow.replace(0);
            if was != 0 {
                s.depth.set(s.depth.get().saturating_sub(1));
            }
            was
        });
        if restore == 0 {
            return;
        }
        records::leave();
        let stub = if restore - 1 == Selector::Block as u8 {
            stubs.unfollow_block
        } else {
            stubs.unfollow_allow
        };
        // SAFETY: the unfollow stubs are `extern "C" fn()`s that only set
        // the selector and return.
        let leave: extern "C" fn() = unsafe { std::mem::transmute(stub) };
        leave();
    }
}

/// A thread made by a clone in translated code (see the module
/// documentation): followed, restoring BLOCK if it ever stops.
pub(crate) fn adopt_followed_thread() {
    scratch::with_scratch(|s| {
        s.follow.set(1 + Selector::Block as u8);
        s.depth.set(1);
    });
}

/// `rt_sigprocmask` from translated code, through the engine's direct
/// entrance but for SIGSYS, which stays deliverable: the engine's trap
/// path keeps it so (it applies the call to its signal frame), and a
/// thread that really blocked it would be killed by its next trap (a
/// vfork child that blocks every signal before resetting its handlers,
/// whose `rt_sigaction`s trap). The hooks see the set pointer on a copy
/// without SIGSYS. Unlike the trap path, the wish is not remembered: the
/// old mask read back shows SIGSYS unblocked.
pub(crate) fn sigprocmask_keeping_sigsys(frame: &mut sud_engine::DirectFrame) -> i64 {
    const SIGSYS_BIT: u64 = 1 << (libc::SIGSYS - 1);
    let [how, set, _, size, ..] = frame.args;
    // Lives until the syscall has run, here or in the engine.
    let mut mask = 0u64;
    let blocks = how == libc::SIG_BLOCK as u64 || how == libc::SIG_SETMASK as u64;
    if set != 0 && size == 8 && blocks {
        let local = libc::iovec {
            iov_base: (&mut mask as *mut u64).cast(),
            iov_len: 8,
        };
        let remote = libc::iovec {
            iov_base: set as *mut libc::c_void,
            iov_len: 8,
        };
        // SAFETY: reads 8 bytes of our own process into `mask`; a bad
        // pointer is an error (then the call runs as given, and the kernel
        // answers EFAULT).
        let read = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if read == 8 && mask & SIGSYS_BIT != 0 {
            mask &= !SIGSYS_BIT;
            frame.args[1] = &mask as *const u64 as u64;
        }
    }
    let answer = sud_engine::direct_entry_clones_at_site(frame);
    if answer != sud_engine::EXECUTE_IN_STUB {
        return answer;
    }
    // SAFETY: the call as the hooks left it, its set at most replaced by
    // the copy above, alive here.
    unsafe { sud_engine::raw_syscall(frame.nr, frame.args) }
}
