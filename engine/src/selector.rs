//! The per-thread selector byte: the one-store switch between the host
//! personality (ALLOW: syscalls run) and the foreign one (BLOCK: syscalls
//! trap). Only the two values the kernel accepts can be written through this
//! API; any other value would make the kernel kill the thread.

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

thread_local! {
    /// The selector byte of threads armed by host code. Static TLS in an
    /// executable, so its offset from the thread pointer is the same in
    /// every thread and generated code can flip it `fs`-relative. The trap
    /// path never reaches it through TLS: each thread's block holds a
    /// pointer to it (see `thread`).
    static SELECTOR: AtomicU8 = const { AtomicU8::new(Selector::Allow as u8) };
}

/// The calling thread's selector byte.
pub(crate) fn thread_byte() -> *const AtomicU8 {
    SELECTOR.with(|s| s as *const AtomicU8)
}

/// Reads the calling thread's selector.
#[inline]
pub fn current() -> Selector {
    SELECTOR.with(|s| Selector::from_byte(s.load(Ordering::Relaxed)))
}

/// Sets the calling thread's selector and returns the previous value.
///
/// This is the raw personality switch; prefer [`enter`], whose guard puts
/// the previous value back.
#[inline]
pub fn set(value: Selector) -> Selector {
    // Only the owning thread writes its selector (the kernel only reads
    // it), so a plain load and store suffice; an atomic swap would be a
    // locked `xchg`, ~6 ns on a path that should cost nothing.
    SELECTOR.with(|s| {
        let previous = s.load(Ordering::Relaxed);
        s.store(value as u8, Ordering::Relaxed);
        Selector::from_byte(previous)
    })
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
    let address = thread_byte() as usize;
    SelectorLocation {
        address,
        tp_offset: tp_offset_of(address),
    }
}
