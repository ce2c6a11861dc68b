//! Mapping an ELF file as the kernel's `load_elf_binary` does: its
//! `PT_LOAD` segments with their protections, the bss zeroed, a load bias
//! for position-independent files, and the addresses the initial stack
//! and `mm` need (program headers, entry, end of data for `brk`).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;

const PAGE: usize = 4096;
const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
/// The kernel's `ELF_ET_DYN_BASE` on x86-64: two thirds of the 47-bit
/// user address space.
const ET_DYN_BASE: usize = (0x7fff_ffff_f000 / 3) * 2;
/// `arch_mmap_rnd` on x86-64: 28 bits of pages.
const MMAP_RND_PAGES: u64 = (1 << 28) - 1;
/// `arch_randomize_brk` on x86-64: within 32 MiB.
const BRK_RND: u64 = 0x0200_0000;

/// Why a file could not be loaded.
#[derive(Debug)]
pub enum ElfError {
    /// The file could not be read or mapped.
    Io(io::Error),
    /// Not an ELF file this loader can run.
    Format(&'static str),
}

impl std::fmt::Display for ElfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ElfError::Io(e) => write!(f, "{e}"),
            ElfError::Format(why) => write!(f, "{why}"),
        }
    }
}

impl From<io::Error> for ElfError {
    fn from(e: io::Error) -> Self {
        ElfError::Io(e)
    }
}

/// Where a file should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The program: a PIE goes near `ELF_ET_DYN_BASE` (randomized), as the
    /// kernel places it; fixed addresses stay fixed.
    Program,
    /// The dynamic loader named by `PT_INTERP`: wherever mmap puts it.
    Interpreter,
}

/// A mapped file.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// Load bias (0 for `ET_EXEC`).
    pub bias: usize,
    /// Entry point, biased.
    pub entry: usize,
    /// Program headers in memory.
    pub phdr: usize,
    /// Number of program headers.
    pub phnum: usize,
    /// `PT_INTERP`, if any.
    pub interp: Option<PathBuf>,
    /// First and last address of the executable segments.
    pub code: (usize, usize),
    /// First and last address of the writable file-backed segments.
    pub data: (usize, usize),
    /// End of the highest segment (the bss end): where `brk` starts.
    pub end: usize,
    /// Position-independent without `PT_INTERP`: the kernel maps it where
    /// mmap would and starts its `brk` at `ELF_ET_DYN_BASE` instead.
    pub static_pie: bool,
}

fn read_struct<T: Copy>(file: &File, offset: u64) -> Result<T, ElfError> {
    let mut buf = vec![0u8; std::mem::size_of::<T>()];
    file.read_exact_at(&mut buf, offset)?;
    // SAFETY: T is a plain-data ELF structure (any bytes are a value) and
    // `buf` holds exactly size_of::<T>() bytes; read_unaligned copes with
    // the Vec's alignment.
    Ok(unsafe { (buf.as_ptr() as *const T).read_unaligned() })
}

/// A random word from the kernel (for placement, as its own ASLR).
pub fn random_u64() -> u64 {
    let mut word = 0u64;
    // SAFETY: getrandom writes 8 bytes into `word`.
    unsafe { libc::getrandom(&mut word as *mut u64 as *mut libc::c_void, 8, 0) };
    word
}

/// mmap through libc (the loader's own, before the program runs).
fn mmap(addr: usize, len: usize, prot: i32, flags: i32, fd: i32, off: u64) -> io::Result<usize> {
    // SAFETY: every mapping the loader makes is either fresh (no address
    // or MAP_FIXED_NOREPLACE) or MAP_FIXED inside a reservation it made
    // itself for this file.
    let p = unsafe { libc::mmap(addr as *mut _, len, prot, flags, fd, off as libc::off_t) };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p as usize)
    }
}

fn munmap(addr: usize, len: usize) {
    if len > 0 {
        // SAFETY: only parts of a reservation this module made are unmapped.
        unsafe { libc::munmap(addr as *mut _, len) };
    }
}

/// Reserves `len` bytes aligned to `align` for a position-independent
/// file: for the program near `ELF_ET_DYN_BASE` plus a random offset (as
/// the kernel's `load_elf_binary`), else wherever mmap chooses.
fn reserve(role: Role, len: usize, align: usize) -> Result<usize, ElfError> {
    let none = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    if role == Role::Program {
        for _ in 0..16 {
            let rnd = ((random_u64() & MMAP_RND_PAGES) as usize) * PAGE;
            let at = (ET_DYN_BASE + rnd) & !(align - 1);
            match mmap(
                at,
                len,
                libc::PROT_NONE,
                none | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            ) {
                Ok(got) if got == at => return Ok(got),
                Ok(got) => munmap(got, len),
                Err(_) => {}
            }
        }
    }
    let raw = mmap(0, len + align, libc::PROT_NONE, none, -1, 0)?;
    let start = (raw + align - 1) & !(align - 1);
    munmap(raw, start - raw);
    munmap(start + len, raw + align - start);
    Ok(start)
}

/// Maps `path` for `role`.
pub fn map(path: &std::path::Path, role: Role) -> Result<Mapped, ElfError> {
    let file = File::open(path)?;
    let eh: libc::Elf64_Ehdr = read_struct(&file, 0)?;
    if eh.e_ident[..4] != *b"\x7fELF" {
        return Err(ElfError::Format("not an ELF file"));
    }
    if eh.e_ident[4] != 2 || eh.e_ident[5] != 1 || eh.e_machine != EM_X86_64 {
        return Err(ElfError::Format(
            "not a 64-bit little-endian x86-64 ELF file",
        ));
    }
    if eh.e_type != ET_EXEC && eh.e_type != ET_DYN {
        return Err(ElfError::Format("not an executable or shared object"));
    }
    if eh.e_phentsize as usize != std::mem::size_of::<libc::Elf64_Phdr>() || eh.e_phnum == 0 {
        return Err(ElfError::Format("bad program headers"));
    }
    let phdrs: Vec<libc::Elf64_Phdr> = (0..eh.e_phnum as u64)
        .map(|i| read_struct(&file, eh.e_phoff + i * eh.e_phentsize as u64))
        .collect::<Result<_, _>>()?;
    let loads: Vec<&libc::Elf64_Phdr> = phdrs.iter().filter(|p| p.p_type == PT_LOAD).collect();
    if loads.is_empty() {
        return Err(ElfError::Format("no loadable segment"));
    }
    let interp = match phdrs.iter().find(|p| p.p_type == PT_INTERP) {
        Some(p) if role == Role::Program => {
            let mut name = vec![0u8; p.p_filesz as usize];
            file.read_exact_at(&mut name, p.p_offset)?;
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            name.truncate(end);
            Some(PathBuf::from(
                <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(name),
            ))
        }
        _ => None,
    };
    let low = loads.iter().map(|p| p.p_vaddr as usize).min().unwrap_or(0) & !(PAGE - 1);
    let high = loads
        .iter()
        .map(|p| (p.p_vaddr + p.p_memsz) as usize)
        .max()
        .unwrap_or(0);
    let span = (high - low).next_multiple_of(PAGE);
    let align = loads
        .iter()
        .map(|p| p.p_align as usize)
        .filter(|a| a.is_power_of_two())
        .max()
        .unwrap_or(PAGE)
        .max(PAGE);
    let static_pie = eh.e_type == ET_DYN && interp.is_none();
    let bias = if eh.e_type == ET_DYN {
        // `load_elf_binary`: only a PIE with an interpreter goes to
        // ELF_ET_DYN_BASE; a static PIE (and the interpreter) where mmap
        // puts a library.
        let place = if static_pie { Role::Interpreter } else { role };
        reserve(place, span, align)? - low
    } else {
        let fixed = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;
        mmap(low, span, libc::PROT_NONE, fixed, -1, 0)?;
        0
    };
    let fd = file.as_raw_fd();
    let mut code = (usize::MAX, 0);
    let mut data = (usize::MAX, 0);
    let mut covered = bias + low;
    for p in &loads {
        let prot = prot_of(p.p_flags);
        let start = bias + p.p_vaddr as usize;
        let page = start & !(PAGE - 1);
        let file_end = start + p.p_filesz as usize;
        let mem_end = start + p.p_memsz as usize;
        // The kernel leaves no mapping between segments.
        munmap(covered, page.saturating_sub(covered));
        let file_pages = (file_end - page).next_multiple_of(PAGE);
        let fixed = libc::MAP_PRIVATE | libc::MAP_FIXED;
        if p.p_filesz > 0 {
            let offset = p.p_offset & !(PAGE as u64 - 1);
            let writable = prot | libc::PROT_WRITE;
            // Writable while its bss tail is zeroed.
            let first = if mem_end > file_end { writable } else { prot };
            mmap(page, file_pages, first, fixed, fd, offset)?;
            if mem_end > file_end {
                let tail = file_pages.min((mem_end - page).next_multiple_of(PAGE)) + page;
                // SAFETY: [file_end, tail) lies in the private writable
                // mapping just made: the rest of its last file page.
                unsafe { std::ptr::write_bytes(file_end as *mut u8, 0, tail - file_end) };
                // SAFETY: the pages just mapped by this function.
                unsafe { libc::mprotect(page as *mut _, file_pages, prot) };
            }
        }
        let anon_start = page + if p.p_filesz > 0 { file_pages } else { 0 };
        let anon_end = mem_end.next_multiple_of(PAGE);
        if anon_end > anon_start {
            let anon = fixed | libc::MAP_ANONYMOUS;
            mmap(anon_start, anon_end - anon_start, prot, anon, -1, 0)?;
        }
        covered = covered.max(anon_end.max(page + file_pages));
        if p.p_flags & 1 != 0 {
            code = (code.0.min(start), code.1.max(file_end));
        }
        if p.p_flags & 2 != 0 {
            data = (data.0.min(start), data.1.max(file_end));
        }
    }
    munmap(covered, (bias + low + span).saturating_sub(covered));
    let phdr = match phdrs.iter().find(|p| p.p_type == PT_PHDR) {
        Some(p) => bias + p.p_vaddr as usize,
        None => loads
            .iter()
            .find(|p| p.p_offset <= eh.e_phoff && eh.e_phoff < p.p_offset + p.p_filesz)
            .map(|p| bias + (p.p_vaddr + eh.e_phoff - p.p_offset) as usize)
            .ok_or(ElfError::Format("program headers are not loaded"))?,
    };
    if data.0 == usize::MAX {
        data = (high + bias, high + bias);
    }
    if code.0 == usize::MAX {
        code = (bias + low, bias + low);
    }
    Ok(Mapped {
        bias,
        entry: bias + eh.e_entry as usize,
        phdr,
        phnum: eh.e_phnum as usize,
        interp,
        code,
        data,
        end: bias + high,
        static_pie: static_pie && role == Role::Program,
    })
}

fn prot_of(flags: u32) -> i32 {
    let mut prot = 0;
    if flags & 4 != 0 {
        prot |= libc::PROT_READ;
    }
    if flags & 2 != 0 {
        prot |= libc::PROT_WRITE;
    }
    if flags & 1 != 0 {
        prot |= libc::PROT_EXEC;
    }
    prot
}

/// Where the program's `brk` starts, as the kernel's `load_elf_binary`
/// puts it: after the program's end, or for a static PIE at
/// `ELF_ET_DYN_BASE` (after the loader's own heap, which is there), then
/// randomized as `arch_randomize_brk`, on a page no mapping holds.
pub fn brk_start(program: &Mapped) -> usize {
    let after = if program.static_pie {
        // SAFETY: sbrk(0) only reads the loader's current break.
        let loader_heap = unsafe { libc::sbrk(0) } as usize;
        ET_DYN_BASE.max(loader_heap)
    } else {
        program.end
    };
    let base = after.next_multiple_of(PAGE);
    for _ in 0..16 {
        let at = base + ((random_u64() % BRK_RND) as usize & !(PAGE - 1));
        let probe = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;
        if let Ok(got) = mmap(at, PAGE, libc::PROT_NONE, probe, -1, 0) {
            munmap(got, PAGE);
            if got == at {
                return at;
            }
        }
    }
    base
}

/// The file name as a C string (paths from the environment have no NUL).
pub fn c_path(path: &std::path::Path) -> CString {
    CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())).unwrap_or_default()
}
