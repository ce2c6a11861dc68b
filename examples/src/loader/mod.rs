//! `sud-loader`: the tools' way to see a program from its first
//! instruction (`--from-start`, and statically linked programs, which
//! never load the preload library).
//!
//! The tool starts the loader (a static PIE built from this package, next
//! to the tools) with the program's argv, and in its environment the
//! tools' configuration (`SUD_TOOL`) and the program's file name
//! (`SUD_LOADER_EXEC`). The loader then does what the kernel's execve
//! would have done for the program, after installing the engine:
//!
//! 1. takes its two variables out of the environment it passes on (the
//!    rest keeps its order) and follows `#!` lines as the kernel does;
//! 2. maps the program's `PT_LOAD` segments (a fixed-address executable
//!    where it asks, a PIE near `ELF_ET_DYN_BASE` with a random offset,
//!    a static PIE likewise) and, for a dynamic program, its `PT_INTERP`
//!    wherever mmap puts it;
//! 3. installs the engine with exactly the preload's hooks
//!    (`preload::install`): the tool's output is the same line for line;
//! 4. builds the initial stack as the kernel does (see `stack`), below
//!    its own frames on the real process stack, with the full auxiliary
//!    vector copied from its own and rewritten where it names the image
//!    (`AT_PHDR`, `AT_PHNUM`, `AT_BASE`, `AT_ENTRY`, `AT_EXECFN`, fresh
//!    `AT_RANDOM` bytes, `AT_PLATFORM`);
//! 5. tells the kernel what describes the program (`PR_SET_MM_MAP`,
//!    unprivileged): its `brk` starts after its own bss (randomized as
//!    the kernel does), so `brk` behaves as for a program the kernel
//!    loaded and the heap is `[heap]`; `/proc/self/cmdline`,
//!    `/proc/self/environ` and `/proc/self/auxv` show the program's, and
//!    where allowed `/proc/self/exe` is its file (`describe_to_kernel`);
//! 6. puts the thread's selector on BLOCK as its last store and jumps to
//!    the entry point with the kernel's registers (rsp at argc, rdx 0).
//!
//! From then on every syscall of the program traps, from its first
//! instruction. An `execve` of the program starts the loader again on the
//! new file (`preload::keep_loader_in_exec`); forks, vforks and threads
//! are followed by the engine as under the preload.
//!
//! **The program owns `fs` and its libc.** The loader's glibc (static)
//! and Rust's std serve only the loader before the jump. After it, the
//! engine runs with `Builder::program_owns_tls`: its per-thread state is
//! the thread block (the SIGSYS stack, found from the signal frame), each
//! thread's selector is a byte in that block, errno is not touched, and
//! sites are not rewritten. The hooks' state is the engine's hook words
//! (per thread, in the block) and statics set before the jump; they
//! allocate nothing (all allocation happens in the loader before the
//! program runs), format into stack buffers and write with raw syscalls.
//! What remains of libc on the hooks' path is `clock_gettime` for `-t`/`-T`
//! (glibc's vDSO call, which reads no TLS on success).
//!
//! What a program can still tell:
//! - `/proc/self/maps` lists the loader's mappings (text, data, its small
//!   heap) and the engine's blocks, and the stack holds the loader's dead
//!   frames and strings above the program's (the stack top is lower by
//!   those);
//! - `/proc/self/exe`: with `CAP_CHECKPOINT_RESTORE` (root) it is the
//!   program's file, as natively: the loader replaces its own file's
//!   mappings with anonymous copies (so maps names no `sud-loader`, only
//!   anonymous code) and gives the kernel the program's file. Without it
//!   the exe stays the loader: the hooks answer its `readlink` with the
//!   program's file and turn an `execve` of it into one of the program,
//!   but opening it opens the loader;
//! - a static PIE's heap starts after the loader's own small heap near
//!   `ELF_ET_DYN_BASE` (natively at it), and its `start_data`/`end_data`
//!   in `/proc/self/stat` read as empty (the kernel's `PR_SET_MM_MAP`
//!   wants the data below the break, which natively it is not);
//! - without `PR_SET_MM_MAP` (a kernel without CONFIG_CHECKPOINT_RESTORE)
//!   the program's `brk` continues the loader's heap;
//! - set-uid and file capabilities are not applied (the loader is not
//!   set-uid; `AT_SECURE` is the loader's);
//! - an `execveat` relative to a descriptor, and an execve of a file the
//!   loader cannot read (executable but not readable, as a non-root user
//!   may meet), are run as asked and the new image is not followed;
//! - the stack starts lower than natively (below the loader's frames), so
//!   `RLIMIT_STACK` leaves the program a few hundred KiB less.

mod elf;
mod stack;

use std::ffi::{c_char, c_int, CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use elf::{ElfError, Role};

/// The loader's file name next to the tools.
pub const LOADER_FILE: &str = "sud-loader";
/// The environment variable naming the file the loader is to run.
pub const TARGET_ENV: &str = "SUD_LOADER_EXEC";
/// `SUD_LOADER_EXEC=`.
pub(crate) const TARGET_ENV_HEAD: &str = "SUD_LOADER_EXEC=";
/// `SUD_LOADER_FILE=`: the file to map when it is not the one the name
/// finds (an execve of `/proc/self/exe`, which would find the loader).
pub(crate) const FILE_ENV_HEAD: &str = "SUD_LOADER_FILE=";

/// Whether `path` is an ELF executable without `PT_INTERP` (statically
/// linked, or a static PIE): the preload cannot reach it.
pub fn is_static_elf(path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut eh = [0u8; 64];
    if file.read_exact_at(&mut eh, 0).is_err() || eh[..4] != *b"\x7fELF" || eh[4] != 2 {
        return false;
    }
    let word = |o: usize| u64::from_le_bytes(eh[o..o + 8].try_into().unwrap_or([0; 8]));
    let half = |o: usize| u16::from_le_bytes([eh[o], eh[o + 1]]);
    let (phoff, phentsize, phnum) = (word(32), half(54) as u64, half(56) as u64);
    if phentsize < 4 {
        return false;
    }
    (0..phnum).all(|i| {
        let mut kind = [0u8; 4];
        file.read_exact_at(&mut kind, phoff + i * phentsize).is_ok()
            && u32::from_le_bytes(kind) != 3
    })
}

/// Reads a NULL-terminated array of C strings.
///
/// # Safety
/// `list` is null or a NULL-terminated array of NUL-terminated strings.
unsafe fn strings(list: *const *const c_char) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if list.is_null() {
        return out;
    }
    let mut i = 0;
    loop {
        // SAFETY: the caller's contract: entries up to the NULL exist.
        let p = unsafe { *list.add(i) };
        if p.is_null() {
            return out;
        }
        // SAFETY: as above, a NUL-terminated string.
        out.push(unsafe { CStr::from_ptr(p) }.to_bytes().to_vec());
        i += 1;
    }
}

fn fail(what: &dyn std::fmt::Display) -> c_int {
    eprintln!("sud-loader: {what}");
    127
}

/// `#!` as the kernel's `binfmt_script` reads it: the interpreter, its
/// one optional argument (the rest of the line, trimmed), then the
/// script's name as execve was given it, then the old argv after argv[0].
fn follow_scripts(
    mut path: Vec<u8>,
    mut argv: Vec<Vec<u8>>,
) -> Result<(Vec<u8>, Vec<Vec<u8>>), String> {
    use std::io::Read;
    let shown = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    for _ in 0..5 {
        let mut head = [0u8; 256];
        let n = std::fs::File::open(OsStr::from_bytes(&path))
            .and_then(|mut f| f.read(&mut head))
            .map_err(|e| format!("{}: {e}", shown(&path)))?;
        let head = &head[..n];
        if !head.starts_with(b"#!") {
            return Ok((path, argv));
        }
        let line = head[2..].split(|&b| b == b'\n').next().unwrap_or(&[]);
        let is_space = |b: &u8| *b == b' ' || *b == b'\t';
        let line: &[u8] = {
            let start = line.iter().position(|b| !is_space(b)).unwrap_or(line.len());
            let end = line
                .iter()
                .rposition(|b| !is_space(b))
                .map_or(start, |e| e + 1);
            &line[start..end]
        };
        let name_end = line.iter().position(is_space).unwrap_or(line.len());
        let (interp, rest) = line.split_at(name_end);
        if interp.is_empty() {
            return Err(format!("{}: bad #! line", shown(&path)));
        }
        let arg = rest.iter().position(|b| !is_space(b)).map(|s| &rest[s..]);
        let mut next = vec![interp.to_vec()];
        next.extend(arg.map(<[u8]>::to_vec));
        next.push(path);
        next.extend(argv.into_iter().skip(1));
        argv = next;
        path = interp.to_vec();
    }
    Err("too many levels of #!".into())
}

/// The loader's own auxiliary vector (the kernel's order).
fn own_auxv() -> Vec<(u64, u64)> {
    let bytes = std::fs::read("/proc/self/auxv").unwrap_or_default();
    bytes
        .chunks_exact(16)
        .map(|c| {
            let w = |o: usize| u64::from_ne_bytes(c[o..o + 8].try_into().unwrap_or([0; 8]));
            (w(0), w(8))
        })
        .take_while(|&(kind, _)| kind != stack::AT_NULL)
        .collect()
}

/// The kernel's `struct prctl_mm_map`.
#[repr(C)]
struct MmMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: *const u64,
    auxv_size: u32,
    exe_fd: u32,
}

/// The loader's `main`: runs the program named by `SUD_LOADER_EXEC` with
/// this argv, traced by the tools `SUD_TOOL` configures. Returns only on
/// failure (status 127, as a shell for a program it cannot run).
///
/// # Safety
/// `argv` and `envp` are the process's own, as `main` receives them.
pub unsafe fn main(argc: c_int, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
    let _ = argc;
    // SAFETY: the caller's contract.
    let args = unsafe { strings(argv) };
    // SAFETY: as above.
    let all_env = unsafe { strings(envp) };
    let mut target = None;
    let mut file = None;
    let mut config = None;
    let config_head = format!("{}=", crate::config::CONFIG_ENV);
    let env: Vec<Vec<u8>> = all_env
        .into_iter()
        .filter(|var| {
            if let Some(v) = var.strip_prefix(TARGET_ENV_HEAD.as_bytes()) {
                target = Some(v.to_vec());
                false
            } else if let Some(v) = var.strip_prefix(FILE_ENV_HEAD.as_bytes()) {
                file = Some(v.to_vec());
                false
            } else if let Some(v) = var.strip_prefix(config_head.as_bytes()) {
                config = Some(String::from_utf8_lossy(v).into_owned());
                false
            } else {
                true
            }
        })
        .collect();
    let Some(execfn) = target else {
        return fail(&"started without SUD_LOADER_EXEC: the tools start it (--from-start)");
    };
    let given_argv = args.clone();
    let (file, argv) = match follow_scripts(file.unwrap_or_else(|| execfn.clone()), args) {
        Ok(found) => found,
        Err(e) => return fail(&e),
    };
    let file = PathBuf::from(OsStr::from_bytes(&file));
    let program = match elf::map(&file, Role::Program) {
        Ok(m) => m,
        Err(e) => return fail(&format!("{}: {e}", file.display())),
    };
    let interp = match &program.interp {
        Some(path) => match elf::map(path, Role::Interpreter) {
            Ok(m) => Some(m),
            Err(e) => return fail(&format!("{}: {e}", path.display())),
        },
        None => None,
    };
    let loader = std::fs::read_link("/proc/self/exe")
        .map(|p| elf::c_path(&p))
        .unwrap_or_default();
    let built = build_stack(&program, interp.as_ref(), &argv, &env, &execfn);
    // Written now, so that the first trace line can show the program's
    // envp where the program will find it; far enough below this frame
    // that installing the engine does not reach it.
    // SAFETY: [sp, sp + len) is process stack below every live frame
    // (see `build_stack`); the kernel grows the stack mapping down to it.
    unsafe {
        std::ptr::copy_nonoverlapping(built.image.as_ptr(), built.sp as *mut u8, built.image.len())
    };
    // The trace line of the execve that started this image shows the
    // argv execve was given (before any `#!` expansion).
    let c_argv: Vec<CString> = given_argv
        .iter()
        .map(|s| CString::new(s.clone()).unwrap_or_default())
        .collect();
    let argv_ptrs: Vec<*const c_char> = c_argv
        .iter()
        .map(|s| s.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let c_execfn = CString::new(execfn.clone()).unwrap_or_default();
    if let Some(text) = &config {
        let started = crate::preload::StartedAs {
            execfn: c_execfn.as_ptr() as u64,
            argc: given_argv.len() as c_int,
            argv: argv_ptrs.as_ptr(),
            envp: built.envp as *const *const c_char,
        };
        let exe = elf::c_path(&std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone()));
        let installed =
            crate::preload::install(text, CString::default(), Some(loader), Some(exe), &started);
        if let Err(e) = installed {
            return fail(&e);
        }
    }
    // No tool follows this process (a child of a tool run without -f
    // that got here anyway): it runs untraced, as the preload stays inert.
    static UNARMED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    let selector = match sud_engine::Engine::installed() {
        Some(engine) => engine.current_thread_selector(),
        None => &UNARMED,
    };
    start(&program, interp.as_ref(), &built, &execfn, &file, selector)
}

/// The program's initial stack, laid out below the loader's frames.
fn build_stack(
    program: &elf::Mapped,
    interp: Option<&elf::Mapped>,
    argv: &[Vec<u8>],
    env: &[Vec<u8>],
    execfn: &[u8],
) -> stack::Stack {
    let mut auxv = own_auxv();
    let platform = auxv
        .iter()
        .find(|&&(kind, _)| kind == stack::AT_PLATFORM)
        .map(|&(_, p)| {
            // SAFETY: the kernel's AT_PLATFORM is a NUL-terminated string
            // on the loader's initial stack, still mapped.
            unsafe { CStr::from_ptr(p as *const c_char) }
                .to_bytes()
                .to_vec()
        })
        .unwrap_or_default();
    for (kind, value) in auxv.iter_mut() {
        *value = match *kind {
            stack::AT_PHDR => program.phdr as u64,
            stack::AT_PHENT => std::mem::size_of::<libc::Elf64_Phdr>() as u64,
            stack::AT_PHNUM => program.phnum as u64,
            stack::AT_BASE => interp.map_or(0, |i| i.bias as u64),
            stack::AT_FLAGS => 0,
            stack::AT_ENTRY => program.entry as u64,
            _ => *value,
        };
    }
    let mut random = [0u8; 16];
    random[..8].copy_from_slice(&elf::random_u64().to_ne_bytes());
    random[8..].copy_from_slice(&elf::random_u64().to_ne_bytes());
    // Far below the loader's frames: the loader still installs the engine
    // and makes a few calls before it jumps.
    let here = 0u8;
    let top = ((&here as *const u8 as usize) - STACK_BELOW_LOADER) & !0xfff;
    stack::build(
        top,
        &stack::Contents {
            argv,
            envp: env,
            execfn,
            platform: &platform,
            random,
            auxv: &auxv,
            gap: (elf::random_u64() % 8192) as usize,
        },
    )
}

/// The kernel's `stack_expand` in `setup_arg_pages`.
const STACK_EXPAND: usize = 128 * 1024;

/// How far below the loader's `main` the program's stack starts.
const STACK_BELOW_LOADER: usize = 256 * 1024;

/// Describes the program to the kernel and jumps.
fn start(
    program: &elf::Mapped,
    interp: Option<&elf::Mapped>,
    built: &stack::Stack,
    execfn: &[u8],
    file: &Path,
    selector: *const std::sync::atomic::AtomicU8,
) -> ! {
    unregister_rseq();
    // The kernel's setup_arg_pages leaves 128 KiB of stack mapped below
    // the arguments; the program may hand such pages to a call before it
    // touches them (and process_vm_writev, unlike a fault, does not grow
    // the stack).
    for page in (1..=STACK_EXPAND / 4096).map(|i| (built.sp & !0xfff) - i * 4096) {
        // SAFETY: a read of process stack below every live frame: the
        // fault grows the stack mapping down to it, as a native start.
        unsafe { std::ptr::read_volatile(page as *const u8) };
    }
    let brk = elf::brk_start(program) as u64;
    // The kernel wants the data below the break; a static PIE's is above
    // it (as natively): it is reported empty, just below the break.
    let data = if (program.data.1 as u64) < brk {
        (program.data.0 as u64, program.data.1 as u64)
    } else {
        (brk - 1, brk - 1)
    };
    let mut map = MmMap {
        start_code: program.code.0 as u64,
        end_code: program.code.1 as u64,
        start_data: data.0,
        end_data: data.1,
        start_brk: brk,
        brk,
        start_stack: built.sp as u64,
        arg_start: built.arg.0 as u64,
        arg_end: built.arg.1 as u64,
        env_start: built.env.0 as u64,
        env_end: built.env.1 as u64,
        auxv: built.auxv.as_ptr(),
        auxv_size: (built.auxv.len() * 8) as u32,
        exe_fd: u32::MAX,
    };
    describe_to_kernel(&mut map, file);
    // The kernel names the task after the file execve was given.
    let name = execfn.rsplit(|&b| b == b'/').next().unwrap_or(execfn);
    let name = CString::new(&name[..name.len().min(15)]).unwrap_or_default();
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    let entry = interp.map_or(program.entry, |i| i.entry);
    // SAFETY: the image is the program's initial stack for [sp, top),
    // below every live frame of the loader; the selector is this thread's
    // armed byte; the entry point is the mapped program's or its
    // interpreter's.
    unsafe { jump(&built.image, built.sp, entry, selector) }
}

/// glibc registered this thread's rseq area for the loader; the kernel
/// takes one registration per thread, and the program's libc registers
/// its own: the loader's goes.
fn unregister_rseq() {
    extern "C" {
        static __rseq_offset: isize;
        static __rseq_size: u32;
    }
    const RSEQ_SIG: u64 = 0x5305_3053;
    const RSEQ_FLAG_UNREGISTER: u64 = 1;
    // SAFETY: glibc's exported rseq ABI variables, constant after startup.
    let (offset, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size == 0 {
        return;
    }
    let tp: usize;
    // SAFETY: reads the thread pointer (still the loader's glibc TCB,
    // whose first word points to itself on x86-64).
    unsafe { std::arch::asm!("mov {}, fs:0", out(reg) tp) };
    let area = tp.wrapping_add_signed(offset);
    // The registered length: glibc registers at least the original 32 bytes.
    for len in [32u64, size as u64] {
        // SAFETY: unregistering names the area glibc registered; the kernel
        // only compares it.
        let r = unsafe { libc::syscall(libc::SYS_rseq, area, len, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) };
        if r == 0 {
            return;
        }
    }
}

/// `PR_SET_MM_MAP`: what `/proc/self/{stat,cmdline,environ,auxv}` show and
/// where `brk` starts, and with `CAP_CHECKPOINT_RESTORE` (root) the exe
/// file too, so that `/proc/self/exe` is the program's. The kernel
/// refuses a new exe file while the old one is mapped: the loader's own
/// mappings of its file are first replaced by anonymous copies (same
/// bytes, same addresses and protections), which also takes its name out
/// of `/proc/self/maps`. Unprivileged, the exe stays the loader (the
/// hooks answer `readlink` of it; see `preload::readlink_self_exe`).
fn describe_to_kernel(map: &mut MmMap, file: &Path) {
    let set = |map: &MmMap| {
        // SAFETY: PR_SET_MM_MAP reads one prctl_mm_map; it changes what
        // the kernel reports for this process (and where brk starts),
        // nothing the loader still uses. On failure nothing changes.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_MM,
                libc::PR_SET_MM_MAP,
                map as *const MmMap,
                std::mem::size_of::<MmMap>(),
                0,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error())
        }
    };
    let program = std::fs::File::open(file);
    if let Ok(program) = &program {
        use std::os::unix::io::AsRawFd;
        map.exe_fd = program.as_raw_fd() as u32;
        // EPERM: not allowed to change the exe (checked first); EBUSY:
        // allowed, but the loader's file is still mapped.
        if set(map) == Err(Some(libc::EBUSY)) && disown_own_file() && set(map).is_ok() {
            return;
        }
    }
    map.exe_fd = u32::MAX;
    let _ = set(map);
}

/// Replaces every mapping of the loader's own file with an anonymous copy.
fn disown_own_file() -> bool {
    let Ok(own) = std::fs::read_link("/proc/self/exe") else {
        return false;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return false;
    };
    let mut ok = true;
    for line in maps.lines() {
        let fields: Vec<&str> = line.splitn(6, ' ').collect();
        if fields.len() < 6 || Path::new(fields[5].trim_start()) != own {
            continue;
        }
        let Some((start, end)) = fields[0].split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        let perms = fields[1].as_bytes();
        let mut prot = 0;
        for (i, bit) in [libc::PROT_READ, libc::PROT_WRITE, libc::PROT_EXEC]
            .into_iter()
            .enumerate()
        {
            if perms.get(i).is_some_and(|&c| c != b'-') {
                prot |= bit;
            }
        }
        ok &= replace_with_copy(start, end - start, prot);
    }
    ok
}

/// Copies `[start, start + len)` into a fresh anonymous mapping with
/// `prot` and moves it over the original in one `mremap`: the bytes at
/// every address stay the same, even for the code running this.
fn replace_with_copy(start: usize, len: usize, prot: i32) -> bool {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    // SAFETY: a fresh private mapping, filled from the loader's own
    // readable mapping (unreadable ones stay zero, as PROT_NONE they are
    // never read), then moved over that mapping: the same bytes, at the
    // same addresses, with the same protections. Raw mremap: nothing
    // between the copy and the move writes the loader's data.
    unsafe {
        // Populated in one call each, not one fault per page.
        let copy = libc::mmap(
            std::ptr::null_mut(),
            len,
            rw,
            anon | libc::MAP_POPULATE,
            -1,
            0,
        );
        if copy == libc::MAP_FAILED {
            return false;
        }
        if prot & libc::PROT_READ != 0 {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_POPULATE_READ);
            std::ptr::copy_nonoverlapping(start as *const u8, copy as *mut u8, len);
        }
        libc::mprotect(copy, len, prot);
        let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
        let moved = sud_engine::raw_syscall(
            libc::SYS_mremap as u64,
            [copy as u64, len as u64, len as u64, flags, start as u64, 0],
        );
        if moved != start as i64 {
            libc::munmap(copy, len);
            return false;
        }
    }
    true
}

/// Copies the stack image to `sp`, puts the selector on BLOCK and enters
/// the program with the registers the kernel gives a new image (all zero
/// but rsp; rdx 0 means no atexit function).
///
/// # Safety
/// See [`start`]: `[sp, sp + image.len())` must be free stack below every
/// live frame, `entry` the program's first instruction.
unsafe fn jump(
    image: &[u8],
    sp: usize,
    entry: usize,
    selector: *const std::sync::atomic::AtomicU8,
) -> ! {
    // SAFETY: the caller's contract; after the selector store no syscall
    // is made before the program's own.
    unsafe {
        std::arch::asm!(
            "mov rsp, rdi",
            "cld",
            "rep movsb",
            "mov byte ptr [r8], 1",
            "mov [rsp - 8], r9",
            "xor eax, eax",
            "xor ebx, ebx",
            "xor ecx, ecx",
            "xor edx, edx",
            "xor esi, esi",
            "xor edi, edi",
            "xor ebp, ebp",
            "xor r8d, r8d",
            "xor r9d, r9d",
            "xor r10d, r10d",
            "xor r11d, r11d",
            "xor r12d, r12d",
            "xor r13d, r13d",
            "xor r14d, r14d",
            "xor r15d, r15d",
            "jmp qword ptr [rsp - 8]",
            in("rdi") sp,
            in("rsi") image.as_ptr(),
            in("rcx") image.len(),
            in("r8") selector,
            in("r9") entry,
            options(noreturn),
        )
    }
}

/// The loader next to the running tool, if built.
pub fn find_loader() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.join(LOADER_FILE);
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_followed_as_the_kernel_does() {
        let dir = std::env::temp_dir().join(format!("sud-loader-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("s");
        std::fs::write(&script, "#!  /bin/sh  -e -x \necho\n").unwrap();
        let path = script.as_os_str().as_bytes().to_vec();
        let (file, argv) =
            follow_scripts(path.clone(), vec![b"s".to_vec(), b"a".to_vec()]).unwrap();
        assert_eq!(file, b"/bin/sh");
        assert_eq!(
            argv,
            [b"/bin/sh".to_vec(), b"-e -x".to_vec(), path, b"a".to_vec()]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
