//! The code cache: one reserved address range that holds the engine's
//! gadgets and all generated code, and that the engine excludes from
//! dispatch (syscalls issued from it always run).
//!
//! W^X by dual mapping: a memfd is mapped twice, read-write at an address
//! the kernel picks (where code is written) and read-execute inside the
//! reservation (where code runs). Protection flips (`mprotect` RW, write,
//! `mprotect` RX) would cost two syscalls per emission and, worse, make
//! every page being written non-executable for that moment, so another
//! thread running code in the same page would fault. With two views no
//! page is ever writable and executable in one mapping, and code keeps
//! running while new code is written next to it.
//!
//! Fork: both views are shared mappings, so a forked child shares the
//! cache's pages with its parent. A child that generates code must make a
//! cache of its own rather than emit into the inherited one.

use crate::Error;
use memmap2::{MmapMut, MmapOptions};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Mutex;
use sud_engine::{gadget_bytes, Placement, GADGET_IMAGE_LEN};

/// Default reservation: plenty for a JIT's code, and address space only
/// (pages are committed as code arrives).
pub const DEFAULT_CAPACITY: usize = 64 << 20;

/// Executable memory is committed in chunks of this size.
const COMMIT_CHUNK: usize = 64 << 10;

/// Every emission starts 16-byte aligned (a fetch-block boundary).
const CODE_ALIGN: usize = 16;

/// rel32 reach, in either direction.
const REL32_REACH: u64 = i32::MAX as u64;

/// The code cache. See the module documentation.
pub struct CodeCache {
    /// First byte of the reservation; the read-execute view lives here.
    start: usize,
    /// Length of the reservation and of the memfd.
    capacity: usize,
    memfd: File,
    gadgets: usize,
    cursor: Mutex<Cursor>,
}

struct Cursor {
    /// Bytes handed out, from `start`.
    used: usize,
    /// Bytes mapped read-execute, from `start`.
    committed: usize,
    /// The read-write view of the same memfd, where code is written.
    rw: MmapMut,
}

impl CodeCache {
    /// Reserves a cache of `capacity` bytes wherever the kernel likes.
    pub fn new(capacity: usize) -> Result<CodeCache, Error> {
        let capacity = round_up(capacity.max(COMMIT_CHUNK), COMMIT_CHUNK);
        let start = reserve(0, capacity, false)?;
        Self::build(start, capacity)
    }

    /// Reserves a cache whose every byte is within rel32 reach of `near`
    /// (so code in it can `call`/`jmp` rel32 to `near` and back): for a
    /// translator whose foreign code, or host functions it calls, live at
    /// `near`. Fails with [`Error::NoRangeNear`] if the address space there
    /// is full.
    pub fn near(near: usize, capacity: usize) -> Result<CodeCache, Error> {
        let capacity = round_up(capacity.max(COMMIT_CHUNK), COMMIT_CHUNK);
        let start = reserve_near(near, capacity)?;
        Self::build(start, capacity)
    }

    fn build(start: usize, capacity: usize) -> Result<CodeCache, Error> {
        let built = (|| {
            // SAFETY: memfd_create with a NUL-terminated name and valid flags.
            let fd = unsafe { libc::memfd_create(c"sud-code-cache".as_ptr(), libc::MFD_CLOEXEC) };
            if fd < 0 {
                return Err(os_error("memfd_create"));
            }
            // SAFETY: `fd` is a fresh descriptor nobody else owns.
            let memfd = unsafe { File::from_raw_fd(fd) };
            memfd.set_len(capacity as u64).map_err(|e| Error::Os {
                op: "ftruncate(memfd)",
                errno: e.raw_os_error().unwrap_or(0),
            })?;
            // SAFETY: the memfd is private to this cache and never truncated
            // after this point, so the mapping stays backed for its life.
            let rw = unsafe { MmapOptions::new().len(capacity).map_mut(&memfd) }.map_err(|e| {
                Error::Os {
                    op: "mmap(code cache, rw view)",
                    errno: e.raw_os_error().unwrap_or(0),
                }
            })?;
            Ok((memfd, rw))
        })();
        let (memfd, rw) = match built {
            Ok(views) => views,
            Err(e) => {
                unmap(start, capacity);
                return Err(e);
            }
        };
        let cache = CodeCache {
            start,
            capacity,
            memfd,
            gadgets: start,
            cursor: Mutex::new(Cursor {
                used: 0,
                committed: 0,
                rw,
            }),
        };
        let gadgets = cache.emit(&gadget_bytes())?;
        debug_assert_eq!(gadgets, cache.gadgets);
        Ok(cache)
    }

    /// First byte of the cache (the excluded region starts here).
    pub fn start(&self) -> usize {
        self.start
    }

    /// Length of the reservation (the excluded region's length).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes handed out so far, gadgets included.
    pub fn used(&self) -> usize {
        self.lock().used
    }

    /// Where the engine's gadgets are (the first [`GADGET_IMAGE_LEN`] bytes).
    pub fn gadgets(&self) -> usize {
        self.gadgets
    }

    /// Whether `addr` is inside the reservation.
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.start) < self.capacity
    }

    /// Whether rel32 code anywhere in the cache can reach `addr`.
    pub fn reaches(&self, addr: usize) -> bool {
        let far = |a: usize, b: usize| (a.abs_diff(b) as u64) > REL32_REACH;
        !far(self.start, addr) && !far(self.start + self.capacity, addr)
    }

    /// The engine placement that makes this cache the excluded region:
    /// `Engine::builder().placement(cache.placement())`. The engine keeps
    /// using the region for the rest of the process, hence `'static`
    /// (e.g. `Box::leak(Box::new(CodeCache::new(..)?))`).
    pub fn placement(&'static self) -> Placement {
        Placement::Excluded {
            start: self.start,
            len: self.capacity,
            gadgets: self.gadgets,
        }
    }

    /// Reserves `len` bytes for code written later with
    /// [`CodeCache::write_emitted`] and returns their executable address.
    /// Nothing is written: the bytes read as zero, and their pages cost
    /// nothing until code is written there.
    pub fn reserve(&self, len: usize) -> Result<usize, Error> {
        let mut cursor = self.lock();
        let at = round_up(cursor.used, CODE_ALIGN);
        let end = at
            .checked_add(len)
            .filter(|&end| end <= self.capacity)
            .ok_or(Error::CacheFull {
                capacity: self.capacity,
                wanted: len,
            })?;
        if end > cursor.committed {
            let committed = round_up(end, COMMIT_CHUNK);
            self.commit(cursor.committed, committed)?;
            cursor.committed = committed;
        }
        cursor.used = end;
        Ok(self.start + at)
    }

    /// Copies position-independent `code` into the cache and returns its
    /// executable address.
    pub fn emit(&self, code: &[u8]) -> Result<usize, Error> {
        self.emit_with(|_| Ok(code.to_vec()))
    }

    /// Emits code that depends on where it lands: `build` gets the
    /// executable address the code will have and returns its bytes. The
    /// cache stays locked while `build` runs, so the address is exact.
    pub fn emit_with(
        &self,
        build: impl FnOnce(usize) -> Result<Vec<u8>, Error>,
    ) -> Result<usize, Error> {
        let mut cursor = self.lock();
        let at = round_up(cursor.used, CODE_ALIGN);
        let code = build(self.start + at)?;
        let end = at
            .checked_add(code.len())
            .filter(|&end| end <= self.capacity)
            .ok_or(Error::CacheFull {
                capacity: self.capacity,
                wanted: code.len(),
            })?;
        if end > cursor.committed {
            let committed = round_up(end, COMMIT_CHUNK);
            self.commit(cursor.committed, committed)?;
            cursor.committed = committed;
        }
        // Fresh bytes beyond the cursor: no thread executes them yet, and
        // the lock keeps other emitters out of this range.
        cursor.rw[at..end].copy_from_slice(&code);
        cursor.used = end;
        Ok(self.start + at)
    }

    /// Overwrites code already emitted at executable address `addr`: for a
    /// translator that links branches once their targets exist, or that
    /// carves its own arena out of one emission. A 4-byte write at a 4-byte
    /// aligned address is one store, so a thread executing a rel32 being
    /// patched sees the old or the new target, never a mix. Allocates
    /// nothing (the cache lock is never held by foreign code). Fails with
    /// `Error::Os { errno: EFAULT }` outside the bytes handed out so far.
    pub fn write_emitted(&self, addr: usize, bytes: &[u8]) -> Result<(), Error> {
        let mut cursor = self.lock();
        let at = addr.wrapping_sub(self.start);
        let end = at
            .checked_add(bytes.len())
            .filter(|&end| end <= cursor.used);
        let (Some(end), false) = (end, at < GADGET_IMAGE_LEN) else {
            return Err(Error::Os {
                op: "write_emitted(outside emitted code)",
                errno: libc::EFAULT,
            });
        };
        let target = &mut cursor.rw[at..end];
        if bytes.len() == 4 && addr % 4 == 0 {
            let word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            let cell = target.as_mut_ptr().cast::<std::sync::atomic::AtomicU32>();
            // SAFETY: `cell` is 4 bytes at a 4-aligned address (the views are
            // page aligned) of our own read-write view; one atomic store
            // keeps the patch indivisible.
            unsafe { (*cell).store(word, std::sync::atomic::Ordering::Release) };
        } else if bytes.len() == 8 && addr % 8 == 0 {
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            let cell = target.as_mut_ptr().cast::<std::sync::atomic::AtomicU64>();
            // SAFETY: as above, 8 bytes at an 8-aligned address.
            unsafe {
                (*cell).store(
                    u64::from_le_bytes(word),
                    std::sync::atomic::Ordering::Release,
                )
            };
        } else {
            target.copy_from_slice(bytes);
        }
        Ok(())
    }

    /// Maps `[from, to)` of the memfd read-execute over the reservation.
    fn commit(&self, from: usize, to: usize) -> Result<(), Error> {
        // SAFETY: the target range lies inside our own reservation (which
        // only this cache maps), so MAP_FIXED replaces nothing of anyone
        // else's; the memfd is `capacity` long, covering the offset.
        let got = unsafe {
            libc::mmap(
                (self.start + from) as *mut libc::c_void,
                to - from,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_SHARED | libc::MAP_FIXED,
                self.memfd.as_raw_fd(),
                from as libc::off_t,
            )
        };
        if got == libc::MAP_FAILED {
            return Err(os_error("mmap(code cache, rx view)"));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cursor> {
        // A panic while emitting leaves the cursor consistent (it moves
        // only after a successful copy), so a poisoned lock is still usable.
        self.cursor.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for CodeCache {
    fn drop(&mut self) {
        // A cache given to the engine is 'static and never dropped; any
        // other cache's code is unreachable once the cache is gone.
        unmap(self.start, self.capacity);
    }
}

impl std::fmt::Debug for CodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeCache")
            .field("start", &format_args!("{:#x}", self.start))
            .field("capacity", &self.capacity)
            .field("used", &self.used())
            .finish()
    }
}

const _: () = assert!(GADGET_IMAGE_LEN <= COMMIT_CHUNK);

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

fn os_error(op: &'static str) -> Error {
    Error::Os {
        op,
        errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
    }
}

/// Reserves `len` bytes of address space (no access, no memory), at exactly
/// `hint` if `exact`, else wherever the kernel likes.
fn reserve(hint: usize, len: usize, exact: bool) -> Result<usize, Error> {
    let fixed = if exact { libc::MAP_FIXED_NOREPLACE } else { 0 };
    // SAFETY: an anonymous PROT_NONE mapping; MAP_FIXED_NOREPLACE never
    // replaces an existing mapping.
    let got = unsafe {
        libc::mmap(
            hint as *mut libc::c_void,
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | fixed,
            -1,
            0,
        )
    };
    if got == libc::MAP_FAILED {
        return Err(os_error("mmap(code cache reservation)"));
    }
    if exact && got as usize != hint {
        // Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat it as a hint.
        unmap(got as usize, len);
        return Err(Error::Os {
            op: "mmap(code cache reservation)",
            errno: libc::EEXIST,
        });
    }
    Ok(got as usize)
}

/// Tries candidate starts closest to `near` first, alternating below and
/// above, in steps of `len`, until a free range is found or reach runs out.
fn reserve_near(near: usize, len: usize) -> Result<usize, Error> {
    let page = 4096usize;
    let reach = (REL32_REACH as usize).saturating_sub(len);
    let base = near & !(page - 1);
    let steps = reach / len;
    for step in 0..=steps {
        let delta = step * len;
        let below = base.checked_sub(delta + len);
        let above = base.checked_add(delta + page);
        for start in [below, above].into_iter().flatten() {
            if start < 0x10000 || start.checked_add(len).is_none_or(|e| e > 0x7fff_ffff_f000) {
                continue;
            }
            if let Ok(got) = reserve(start, len, true) {
                return Ok(got);
            }
        }
    }
    Err(Error::NoRangeNear { near, len })
}

fn unmap(start: usize, len: usize) {
    // SAFETY: only ever called on this cache's own reservation.
    unsafe { libc::munmap(start as *mut libc::c_void, len) };
}
