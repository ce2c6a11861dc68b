//! The per-thread selector byte: the one-store switch between the host
//! personality (ALLOW: syscalls run) and the foreign one (BLOCK: syscalls
//! trap). Only the two values the kernel accepts can be written through this
//! API; any other value would make the kernel kill the thread.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, Ordering};

/// The value of a thread's selector.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Selector {
    /// Host personality: syscalls run (`SYSCALL_DISPATCH_FILTER_ALLOW`).
    Allow = 0,
    /// Foreign personality: syscalls outside the excluded region trap
    /// (`SYSCALL_DISPATCH_FILTER_BLOCK`).
    Block = 1,
}

impl Selector {
    pub(crate) fn from_byte(b: u8) -> Selector {
        if b == Selector::Block as u8 {
            Selector::Block
        } else {
            Selector::Allow
        }
    }
}

/// Per-thread engine state. It lives in static TLS so the signal handler can
/// reach it without a lock or an allocation; it has no destructor, so a
/// thread's exit never touches it.
pub(crate) struct ThreadState {
    /// The byte the kernel reads at every syscall of an armed thread.
    pub(crate) selector: AtomicU8,
    /// Whether this thread is armed, and the tid it was armed under (a forked
    /// child inherits the memory but not the arming).
    pub(crate) armed_tid: Cell<i32>,
    /// The application's view of whether SIGSYS is blocked in this thread
    /// (the real mask never blocks it: a blocked SIGSYS kills on dispatch).
    pub(crate) app_blocks_sigsys: Cell<bool>,
    /// Where a re-issued thread-creating clone resumes in the parent; read by
    /// the clone gadget through a thread-pointer-relative load.
    pub(crate) resume_pc: Cell<u64>,
    /// This thread's counter block (see `counters`), null until its first count.
    pub(crate) counter_block: Cell<*const crate::counters::CounterBlock>,
}

thread_local! {
    pub(crate) static THREAD: ThreadState = const {
        ThreadState {
            selector: AtomicU8::new(Selector::Allow as u8),
            armed_tid: Cell::new(0),
            app_blocks_sigsys: Cell::new(false),
            resume_pc: Cell::new(0),
            counter_block: Cell::new(std::ptr::null()),
        }
    };
}

/// Runs `f` on this thread's state. Cheap: the state needs no lazy
/// initialisation and has no destructor.
#[inline]
pub(crate) fn with_thread<R>(f: impl FnOnce(&ThreadState) -> R) -> R {
    THREAD.with(f)
}

/// Reads the calling thread's selector.
#[inline]
pub fn current() -> Selector {
    with_thread(|t| Selector::from_byte(t.selector.load(Ordering::Relaxed)))
}

/// Sets the calling thread's selector and returns the previous value.
///
/// This is the raw personality switch; prefer [`enter`], whose guard puts
/// the previous value back.
#[inline]
pub fn set(value: Selector) -> Selector {
    with_thread(|t| t.replace_selector(value as u8))
}

impl ThreadState {
    /// Stores a new selector byte and returns the old one. Only the owning
    /// thread ever writes its selector (the kernel only reads it), so a
    /// plain load and store suffice; an atomic swap would be a locked
    /// `xchg`, ~6 ns on a path that should cost nothing.
    #[inline]
    pub(crate) fn replace_selector(&self, value: u8) -> Selector {
        let previous = self.selector.load(Ordering::Relaxed);
        self.selector.store(value, Ordering::Relaxed);
        Selector::from_byte(previous)
    }
}

/// A personality guard: the selector holds a value while the guard lives
/// and goes back to what it was when the guard drops. Guards nest.
///
/// Not `Send`: it restores the selector of the thread that created it.
#[must_use = "the selector goes back as soon as the guard is dropped"]
pub struct Personality {
    previous: Selector,
    _not_send: PhantomData<*const ()>,
}

impl Drop for Personality {
    #[inline]
    fn drop(&mut self) {
        set(self.previous);
    }
}

/// Sets the calling thread's selector to `value` until the returned guard
/// drops.
///
/// ```
/// use sud_engine::{selector, Selector};
/// let outer = selector::enter(Selector::Block);
/// {
///     let _inner = selector::enter(Selector::Allow);
///     assert_eq!(selector::current(), Selector::Allow);
/// }
/// assert_eq!(selector::current(), Selector::Block);
/// drop(outer);
/// assert_eq!(selector::current(), Selector::Allow);
/// ```
/// (The thread is not armed here, so BLOCK traps nothing.)
#[inline]
pub fn enter(value: Selector) -> Personality {
    Personality {
        previous: set(value),
        _not_send: PhantomData,
    }
}

/// Where the calling thread's selector lives, for code generators that emit
/// the flip themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectorLocation {
    /// The selector's address in the calling thread.
    pub address: usize,
    /// `address` minus the thread pointer (`fs` base on x86-64, `tpidr_el0`
    /// on aarch64). The engine's TLS is static, so this offset is the same in
    /// every thread and an emitted `mov byte ptr fs:[offset], 1` reaches the
    /// running thread's selector.
    pub tp_offset: isize,
}

/// `addr` minus the calling thread's thread pointer.
pub(crate) fn tp_offset_of(addr: usize) -> isize {
    addr.wrapping_sub(crate::arch::thread_pointer()) as isize
}

/// The calling thread's [`SelectorLocation`].
pub fn selector_location() -> SelectorLocation {
    let address = with_thread(|t| t.selector.as_ptr() as usize);
    SelectorLocation {
        address,
        tp_offset: tp_offset_of(address),
    }
}
