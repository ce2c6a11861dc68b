//! The syscall filter: a fixed bitmap of numbers whose traps run the hooks.
//! Unwatched numbers go straight to execution. Raw numbers are accepted
//! because foreign ABIs use numbers Linux does not know.

use syscalls::Sysno;

/// How many syscall numbers the bitmap and the per-number counters cover.
/// Numbers at or above this share one bit and one counter ("other").
pub const TRACKED_NUMBERS: usize = 1024;

const WORDS: usize = TRACKED_NUMBERS / 64;

/// A set of syscall numbers.
///
/// ```
/// use sud_engine::{SyscallSet, Sysno};
/// let set = SyscallSet::from_sysnos(&[Sysno::openat, Sysno::write]);
/// assert!(set.contains(Sysno::write.id() as u64));
/// assert!(!set.contains(Sysno::read.id() as u64));
/// assert!(SyscallSet::all().contains(0xdead_beef));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SyscallSet {
    words: [u64; WORDS],
    other: bool,
}

impl std::fmt::Debug for SyscallSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let members = (0..TRACKED_NUMBERS as u64).filter(|&n| self.contains(n));
        f.debug_struct("SyscallSet")
            .field("numbers", &members.collect::<Vec<_>>())
            .field("other", &self.other)
            .finish()
    }
}

impl SyscallSet {
    /// The empty set: every trap goes straight to execution.
    pub const fn empty() -> Self {
        SyscallSet {
            words: [0; WORDS],
            other: false,
        }
    }

    /// Every number, known or not.
    pub const fn all() -> Self {
        SyscallSet {
            words: [u64::MAX; WORDS],
            other: true,
        }
    }

    /// The set of the given syscalls.
    pub fn from_sysnos(sysnos: &[Sysno]) -> Self {
        let mut set = Self::empty();
        for &s in sysnos {
            set.insert(s.id() as u64);
        }
        set
    }

    /// Adds a raw number (numbers at or above [`TRACKED_NUMBERS`] all share one bit).
    pub fn insert(&mut self, nr: u64) -> &mut Self {
        match usize::try_from(nr).ok().filter(|&n| n < TRACKED_NUMBERS) {
            Some(n) => self.words[n / 64] |= 1 << (n % 64),
            None => self.other = true,
        }
        self
    }

    /// Removes a raw number.
    pub fn remove(&mut self, nr: u64) -> &mut Self {
        match usize::try_from(nr).ok().filter(|&n| n < TRACKED_NUMBERS) {
            Some(n) => self.words[n / 64] &= !(1 << (n % 64)),
            None => self.other = false,
        }
        self
    }

    /// Whether `nr` is in the set. Branch-light: it runs on every trap.
    #[inline]
    pub fn contains(&self, nr: u64) -> bool {
        if nr < TRACKED_NUMBERS as u64 {
            self.words[(nr / 64) as usize] & (1 << (nr % 64)) != 0
        } else {
            self.other
        }
    }
}

impl Default for SyscallSet {
    fn default() -> Self {
        Self::all()
    }
}

impl FromIterator<Sysno> for SyscallSet {
    fn from_iter<I: IntoIterator<Item = Sysno>>(iter: I) -> Self {
        let mut set = Self::empty();
        for s in iter {
            set.insert(s.id() as u64);
        }
        set
    }
}
