//! What can go wrong while reserving the cache, emitting or translating.

#[cfg(target_arch = "x86_64")]
pub use sud_arch_x86_64::emit::EmitError;

/// An error of `sud-codegen`: what went wrong, and in the message what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A system call failed while mapping memory.
    Os {
        /// What was being done.
        op: &'static str,
        /// The errno.
        errno: i32,
    },
    /// No free range of `len` bytes within rel32 reach of `near`.
    NoRangeNear {
        /// The address the cache had to be near.
        near: usize,
        /// The size asked for.
        len: usize,
    },
    /// The cache's reservation is used up.
    CacheFull {
        /// The reservation's size.
        capacity: usize,
        /// The size of the code that did not fit.
        wanted: usize,
    },
    /// A snippet could not be encoded.
    #[cfg(target_arch = "x86_64")]
    Emit(EmitError),
    /// The engine's selector is not where a 32-bit thread-pointer offset
    /// reaches (its TLS is not static in this process).
    SelectorOutOfReach {
        /// Selector address minus thread pointer.
        tp_offset: isize,
    },
    /// The CPU lacks an instruction the requested code needs.
    CpuLacks(&'static str),
    /// The translator met code it cannot translate.
    Untranslatable {
        /// Address of the instruction in the foreign code.
        at: u64,
        /// What it is and why it cannot be translated.
        why: String,
    },
    /// The instruction encoder refused the translated block.
    Encode(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Os { op, errno } => write!(
                f,
                "{op} failed: {}",
                std::io::Error::from_raw_os_error(*errno)
            ),
            Error::NoRangeNear { near, len } => write!(
                f,
                "no free {len}-byte range within rel32 reach of {near:#x}; ask for a smaller cache"
            ),
            Error::CacheFull { capacity, wanted } => write!(
                f,
                "the code cache ({capacity} bytes) has no room for {wanted} more bytes; reserve a larger one"
            ),
            #[cfg(target_arch = "x86_64")]
            Error::Emit(e) => e.fmt(f),
            Error::SelectorOutOfReach { tp_offset } => write!(
                f,
                "the selector is {tp_offset:#x} bytes from the thread pointer, beyond a 32-bit \
                 displacement; use a context register to reach it"
            ),
            Error::CpuLacks(what) => write!(f, "this CPU lacks {what}; use the SSE vector save"),
            Error::Untranslatable { at, why } => write!(f, "cannot translate the instruction at {at:#x}: {why}"),
            Error::Encode(why) => write!(f, "encoding the translated code failed: {why}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(target_arch = "x86_64")]
impl From<EmitError> for Error {
    fn from(e: EmitError) -> Self {
        Error::Emit(e)
    }
}
