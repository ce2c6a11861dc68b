//! The in-process half of the tools: when `libsud_examples.so` is loaded
//! with `LD_PRELOAD` into a program started by a tool, its constructor
//! installs the engine with every thread on BLOCK, so each syscall of the
//! program traps into the hooks below. The engine arms threads made by
//! clone/clone3 before their first instruction and re-arms fork and vfork
//! children; the hooks here keep the preload in every `execve`, keep the
//! tool's file descriptors out of the program's way, and do the tool's job
//! (trace, count, inject faults).
//!
//! The program does not see the tools' environment variables: the
//! constructor removes `SUD_TOOL` and its own `LD_PRELOAD` entry from
//! `environ` (the order of the rest is unchanged), and each `execve` puts
//! them back for the next image only. A tool run under another tool (say
//! syscount under `sudtrace -f`) adds its configuration to the outer one's
//! in `SUD_TOOL` (separated by `|`): the one engine in the program serves
//! both tools, each with its own output and counters. (Two different
//! builds of this library: the first loaded serves both, the second finds
//! no `SUD_TOOL` and stays inert.) `/proc/self/environ` still shows the
//! initial environment, ours included.
//!
//! Everything reachable from `pre` and `post` runs in the SIGSYS handler,
//! often while the program holds malloc's lock: no allocation, no lock,
//! output through a stack buffer and one raw `write` per line.
//!
//! What the tools cannot see, by construction:
//! - syscalls made before this constructor runs: the first `execve` and
//!   the dynamic loader's own calls (each new image's `execve` line is
//!   printed by the new image, from `AT_EXECFN` and its argv), unless the
//!   tool started the program through `sud-loader` (`--from-start`,
//!   `crate::loader`), which installs the same hooks before the program's
//!   first instruction; an execve of a static program (which never loads
//!   this library) starts the loader on it;
//! - set-uid programs, which ignore `LD_PRELOAD`;
//! - the `rt_sigreturn` of the program's signal handlers (the engine runs
//!   them through its wrapper and returns through its own restorer, and
//!   does not pass that return to the hooks);
//! - a child made with `CLONE_VM` but neither `CLONE_SETTLS` nor
//!   `CLONE_VFORK` shares its parent's selector byte (its TLS): while one
//!   of the two is inside a hook or a call the engine runs for it, the
//!   other's syscalls pass unseen. glibc's threads (own TLS) and
//!   posix_spawn (the parent waits) are not affected.
//!
//! The tool's two descriptors (its output and its counters) are placed by
//! the launcher where the program cannot ask for them (above its soft
//! descriptor limit when the hard limit allows, else the highest free
//! number). When the program names one (`dup2`/`dup3` onto it, or a
//! `dup`/`F_DUPFD` whose native answer is its number), the hooks move the
//! tool's descriptor away first and the program gets the native result;
//! `close`, `close_range`, `fcntl` and `dup` of it answer EBADF as natively.
//! Still visible: the descriptors are listed in `/proc/self/fd`, other
//! calls on their numbers (`fstat`, `write`) find them open, descriptor
//! allocation by `open`/`socket`/... can skip them when every lower number
//! is in use, and the two count against `RLIMIT_NOFILE` when the launcher
//! had to place them below it. A closed output pipe ends tracing without a
//! SIGPIPE to the program.

use crate::config::{Mode, SharedArea, ToolConfig, CONFIG_ENV, CONFIG_SEPARATOR, PRELOAD_FILE};
use crate::text::{read_memory, Line};
use crate::tracer::{self, Prefix};
use std::ffi::{c_char, c_int, CStr, CString};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering::*};
use std::sync::OnceLock;
use sud_engine::{Engine, Errno, Selector, Syscall, SyscallSet, Sysno, Verdict};

/// One tool this process is traced by (more than one when tools nest).
struct Tool {
    config: ToolConfig,
    shared: &'static SharedArea,
    /// sudtrace: the syscalls to print.
    print: SyscallSet,
    /// This process is this tool's child (its first traced process).
    is_root: bool,
    /// Where the output descriptor is now (moved when the program names it).
    out_fd: AtomicI32,
    /// Where the counters' descriptor is now.
    shared_fd: AtomicI32,
    /// What kind of file the output is: decides how a write avoids SIGPIPE.
    out_kind: OutKind,
    /// The output's reader has gone: stop writing.
    out_closed: AtomicBool,
    /// How much of this process's engine's patched-site and 32-bit call
    /// counts this tool has added to its shared area.
    sites_added: AtomicU64,
    compat_added: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OutKind {
    /// A pipe or FIFO: a write to a closed one raises SIGPIPE.
    Pipe,
    /// A socket: send(MSG_NOSIGNAL) never raises SIGPIPE.
    Socket,
    /// Anything else cannot raise SIGPIPE.
    Other,
}

/// Everything the hooks need, set once by the constructor.
struct Preload {
    /// The active tools, innermost first.
    tools: Vec<Tool>,
    /// This library's path, as `LD_PRELOAD` must name it.
    so_path: CString,
    /// `sud-loader`, next to the tools: an `execve` of a static program
    /// (which would never load this library), and in an image the loader
    /// started every `execve`, starts the loader on the new file (see
    /// `crate::loader`).
    loader: Option<CString>,
    /// In an image the loader started, the program's file (canonical),
    /// which `/proc/self/exe` names for it.
    self_exe: Option<CString>,
}

/// The execve that started this image, for its trace line (the old image
/// cannot print it: a successful execve does not return).
pub(crate) struct StartedAs {
    /// `AT_EXECFN`: the file name execve was given.
    pub(crate) execfn: u64,
    pub(crate) argc: c_int,
    pub(crate) argv: *const *const c_char,
    pub(crate) envp: *const *const c_char,
}

static PRELOAD: OnceLock<Preload> = OnceLock::new();

// Runs when the dynamic loader maps the library, before the program's own
// constructors and main. glibc passes argc, argv and envp.
#[used]
#[link_section = ".init_array"]
static PRELOAD_INIT: extern "C" fn(c_int, *const *const c_char, *const *const c_char) =
    preload_init;

extern "C" fn preload_init(argc: c_int, argv: *const *const c_char, envp: *const *const c_char) {
    // The program's main must find errno as natively (0): looking for the
    // loader with std's stat probes statx with null pointers (EFAULT).
    // SAFETY: this thread's errno slot, valid for its life.
    let errno = unsafe { *libc::__errno_location() };
    init(argc, argv, envp);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

fn init(argc: c_int, argv: *const *const c_char, envp: *const *const c_char) {
    // SAFETY: getenv with a NUL-terminated name; no other thread exists yet.
    let raw = unsafe { libc::getenv(c"SUD_TOOL".as_ptr()) };
    if raw.is_null() {
        return;
    }
    // The library is also linked (as an rlib) into the tools themselves:
    // only the preloaded shared object acts.
    let Some(so_path) = own_shared_object() else {
        return;
    };
    // SAFETY: getenv returned a NUL-terminated string in the environment.
    let text = unsafe { CStr::from_ptr(raw) }
        .to_string_lossy()
        .into_owned();
    hide_tool_environment(&so_path);
    // SAFETY: AT_EXECFN is the file name the kernel was given, a
    // NUL-terminated string on the initial stack (or 0 when absent).
    let execfn = unsafe { libc::getauxval(libc::AT_EXECFN) };
    let started = StartedAs {
        execfn,
        argc,
        argv,
        envp,
    };
    let loader = loader_beside(&so_path);
    if let Err(e) = install(&text, so_path, loader, None, &started) {
        complain(2, &format!("sud preload: {e}; not tracing"));
    }
}

/// `sud-loader` next to this library (`target/<profile>/`, or its parent
/// when the library is the copy in `deps/`).
fn loader_beside(so_path: &CStr) -> Option<CString> {
    use std::os::unix::ffi::OsStrExt;
    let so = std::path::Path::new(std::ffi::OsStr::from_bytes(so_path.to_bytes()));
    let dir = so.parent()?;
    [
        dir.join(crate::loader::LOADER_FILE),
        dir.parent()?.join(crate::loader::LOADER_FILE),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .and_then(|p| CString::new(p.as_os_str().as_bytes()).ok())
}

/// Installs the engine with the hooks of the tools `text` configures (the
/// preload's constructor, or `sud-loader` with `self_exe` set, before the
/// program's first instruction). Nothing to install (no tool follows
/// this process) is not an error; failing to install ends the process
/// with status 125 after telling each tool why.
pub(crate) fn install(
    text: &str,
    so_path: CString,
    loader: Option<CString>,
    self_exe: Option<CString>,
    started: &StartedAs,
) -> Result<(), crate::config::BadConfig> {
    let configs = ToolConfig::decode_all(text)?;
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() } as u32;
    let mut tools = Vec::new();
    for config in configs {
        let is_root = parent == config.tool_pid;
        if !config.follow && !is_root {
            continue;
        }
        let Some(shared) = map_shared(config.shared_fd) else {
            complain(
                config.out_fd,
                "sud preload: cannot map the tool's counters; not tracing",
            );
            continue;
        };
        let print = match &config.trace {
            Some(list) => list.iter().fold(SyscallSet::empty(), |mut set, &nr| {
                set.insert(nr);
                set
            }),
            None => SyscallSet::all(),
        };
        tools.push(Tool {
            out_kind: out_kind(config.out_fd),
            out_fd: AtomicI32::new(config.out_fd),
            shared_fd: AtomicI32::new(config.shared_fd),
            out_closed: AtomicBool::new(false),
            sites_added: AtomicU64::new(0),
            compat_added: AtomicU64::new(0),
            config,
            shared,
            print,
            is_root,
        });
    }
    if tools.is_empty() {
        return Ok(());
    }
    let mut watch = SyscallSet::empty();
    for tool in &tools {
        let wanted = match tool.config.mode {
            Mode::Trace => tool.print.clone(),
            Mode::Count => SyscallSet::all(),
            Mode::Fault => tool
                .config
                .faults
                .iter()
                .fold(SyscallSet::empty(), |mut set, r| {
                    set.insert(r.nr);
                    set
                }),
        };
        // `..=`: the numbers past the table share one member.
        for nr in 0..=sud_engine::TRACKED_NUMBERS as u64 {
            if wanted.contains(nr) {
                watch.insert(nr);
            }
        }
    }
    for always in [
        Sysno::execve,
        Sysno::execveat,
        // strace reports every exit, whatever -e trace= selects.
        Sysno::exit,
        Sysno::exit_group,
        Sysno::close,
        Sysno::close_range,
        Sysno::dup,
        #[cfg(target_arch = "x86_64")]
        Sysno::dup2,
        Sysno::dup3,
        Sysno::fcntl,
        Sysno::clone,
        Sysno::clone3,
        #[cfg(target_arch = "x86_64")]
        Sysno::fork,
        #[cfg(target_arch = "x86_64")]
        Sysno::vfork,
    ] {
        watch.insert(always.id() as u64);
    }
    let from_loader = self_exe.is_some();
    if from_loader {
        // `/proc/self/exe` names the loader: see `readlink_self_exe`.
        #[cfg(target_arch = "x86_64")]
        watch.insert(Sysno::readlink.id() as u64);
        watch.insert(Sysno::readlinkat.id() as u64);
    }
    let preload = PRELOAD.get_or_init(|| Preload {
        tools,
        so_path,
        loader,
        self_exe,
    });
    for tool in preload
        .tools
        .iter()
        .filter(|t| t.config.mode == Mode::Trace)
    {
        tool.trace_exec_success(started);
    }
    let follow = preload.tools.iter().any(|t| t.config.follow);
    // One engine serves every nested tool: a `--no-rewrite` of any keeps
    // all sites trapping.
    let rewrite = preload.tools.iter().all(|t| t.config.rewrite);
    // The innermost tool that translates says what the translator does.
    let translate = preload
        .tools
        .iter()
        .map(|t| &t.config.options.dbi)
        .find(|d| **d != crate::config::Translate::Off)
        .filter(|_| cfg!(target_arch = "x86_64"));
    // The loader's own code must not be followed, and following a program
    // from its first instruction is not done yet: such a program is
    // counted by trap, and says so.
    let translate = match translate {
        Some(_) if from_loader => {
            complain_all(
                preload,
                "sud preload: programs started by sud-loader (--from-start, static \
                 programs) are not translated yet; their calls are caught by trap",
            );
            None
        }
        other => other,
    };
    let mut builder = Engine::builder();
    #[cfg(target_arch = "x86_64")]
    if translate.is_some() {
        match crate::dbi_follow::placement() {
            Ok(placement) => builder = builder.placement(placement),
            Err(e) => complain_all(preload, &format!("sud preload: {e}; not translating")),
        }
    }
    // Translated code reaches the hooks by direct calls; a patched site
    // would send the translator into a trampoline.
    let rewrite = rewrite && translate.is_none();
    // From the loader, the program owns `fs` once it runs and the loader
    // puts the selector on BLOCK itself, as its last store before the jump.
    let installed = builder
        .watch(watch)
        .pre_hook(pre)
        .post_hook(post)
        .signal_hook(on_signal)
        .follow_fork(follow)
        .foreign_signal_handlers(true)
        .reuse_thread_blocks(from_loader || !under_thread_sanitizer())
        .program_owns_tls(from_loader)
        .initial_selector(if from_loader {
            Selector::Allow
        } else {
            Selector::Block
        })
        // Ignored by the engine when the program owns `fs`.
        .rewrite_sites(rewrite)
        .install();
    if let Err(e) = installed {
        complain_all(
            preload,
            &format!("sud preload: cannot intercept this program's syscalls: {e}"),
        );
        // SAFETY: _exit ends the process at once; nothing is left to run.
        unsafe { libc::_exit(125) };
    }
    // Last: from its return on, this constructor's caller runs translated.
    #[cfg(target_arch = "x86_64")]
    if let Some(what) = translate {
        if let Err(e) = crate::dbi_follow::follow(what) {
            complain_all(preload, &format!("sud preload: {e}; not translating"));
        }
    }
    Ok(())
}

fn complain_all(preload: &Preload, message: &str) {
    for tool in &preload.tools {
        complain(tool.out_fd.load(Relaxed), message);
    }
}

/// Whether the program is a ThreadSanitizer build (its runtime defines
/// `__tsan_init`): see `Builder::reuse_thread_blocks`.
fn under_thread_sanitizer() -> bool {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name, in the
    // constructor (not in a signal handler).
    !unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__tsan_init".as_ptr()) }.is_null()
}

fn complain(fd: i32, message: &str) {
    write_all(fd, format!("{message}\n").as_bytes());
}

/// Takes `SUD_TOOL` and the tools' `LD_PRELOAD` entries out of the
/// program's `environ` (the loader has read them), so that the program
/// sees the environment it would natively; `LD_PRELOAD` keeps the
/// program's own libraries, in its place. Runs in the constructor, before
/// any thread: setenv and unsetenv are safe there.
fn hide_tool_environment(so_path: &CStr) {
    let ours = |part: &[u8]| {
        part == so_path.to_bytes()
            || part == PRELOAD_FILE.as_bytes()
            || part.ends_with(format!("/{PRELOAD_FILE}").as_bytes())
    };
    // SAFETY: NUL-terminated names and values; single-threaded.
    unsafe {
        libc::unsetenv(c"SUD_TOOL".as_ptr());
        let value = libc::getenv(c"LD_PRELOAD".as_ptr());
        if value.is_null() {
            return;
        }
        let theirs: Vec<&[u8]> = CStr::from_ptr(value)
            .to_bytes()
            .split(|&b| b == b':' || b == b' ')
            .filter(|part| !part.is_empty() && !ours(part))
            .collect();
        if theirs.is_empty() {
            libc::unsetenv(c"LD_PRELOAD".as_ptr());
        } else if let Ok(kept) = CString::new(theirs.join(&b':')) {
            // An existing variable is replaced in its slot: the order of
            // the environment stays the native one.
            libc::setenv(c"LD_PRELOAD".as_ptr(), kept.as_ptr(), 1);
        }
    }
}

fn out_kind(fd: i32) -> OutKind {
    // SAFETY: fstat fills a plain struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return OutKind::Other;
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => OutKind::Pipe,
        libc::S_IFSOCK => OutKind::Socket,
        _ => OutKind::Other,
    }
}

/// Whether `addr` lies in the main program (not in a shared object).
pub(crate) fn in_main_program(addr: usize) -> bool {
    // SAFETY: Dl_info is plain data; dladdr fills it for an address inside
    // a loaded object and returns 0 otherwise. getauxval(AT_PHDR) is the
    // main program's program headers, mapped inside the main program.
    unsafe {
        let mut here: libc::Dl_info = std::mem::zeroed();
        let mut main: libc::Dl_info = std::mem::zeroed();
        let main_phdr = libc::getauxval(libc::AT_PHDR) as *const libc::c_void;
        libc::dladdr(addr as *const libc::c_void, &mut here) != 0
            && libc::dladdr(main_phdr, &mut main) != 0
            && main.dli_fbase == here.dli_fbase
    }
}

/// This library's path when it runs from a shared object other than the
/// main program, else `None`.
fn own_shared_object() -> Option<CString> {
    if in_main_program(preload_init as *const () as usize) {
        return None;
    }
    // SAFETY: as in in_main_program.
    unsafe {
        let mut here: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(preload_init as *const libc::c_void, &mut here) == 0
            || here.dli_fname.is_null()
        {
            return None;
        }
        Some(CStr::from_ptr(here.dli_fname).to_owned())
    }
}

fn map_shared(fd: i32) -> Option<&'static SharedArea> {
    // SAFETY: a fresh shared mapping of the tool's memfd, which the tool
    // sized to SharedArea::SIZE; never unmapped, so 'static is sound.
    // SharedArea is all atomics, valid for any bytes.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            SharedArea::SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        (addr != libc::MAP_FAILED).then(|| &*(addr as *const SharedArea))
    }
}

/// [`sud_engine::raw_syscall`] with a typed number, for hooks (the selector
/// is ALLOW while hooks run) and for the constructor.
///
/// # Safety
/// As for `raw_syscall`: the arguments must be valid for `nr`.
unsafe fn raw(nr: Sysno, a: [u64; 6]) -> i64 {
    // SAFETY: the caller vouches for the arguments.
    unsafe { sud_engine::raw_syscall(nr.id() as u64, a) }
}

/// getpid, without libc.
fn getpid() -> i64 {
    // SAFETY: getpid takes no arguments and touches no memory.
    unsafe { raw(Sysno::getpid, [0; 6]) }
}

fn gettid() -> i64 {
    // SAFETY: gettid takes no arguments and touches no memory.
    unsafe { raw(Sysno::gettid, [0; 6]) }
}

/// Writes all of `bytes` (write, or send with `flags` on a socket);
/// returns the first error.
fn write_all_with(fd: i32, mut bytes: &[u8], socket: bool) -> i64 {
    while !bytes.is_empty() {
        let (ptr, len) = (bytes.as_ptr() as u64, bytes.len() as u64);
        // SAFETY: write and sendto only read `len` bytes at `ptr`.
        let n = unsafe {
            if socket {
                let flags = libc::MSG_NOSIGNAL as u64;
                raw(Sysno::sendto, [fd as u64, ptr, len, flags, 0, 0])
            } else {
                raw(Sysno::write, [fd as u64, ptr, len, 0, 0, 0])
            }
        };
        if n == -(libc::EINTR as i64) {
            continue;
        }
        if n <= 0 {
            return n.min(-(libc::EIO as i64));
        }
        bytes = &bytes[n as usize..];
    }
    0
}

fn write_all(fd: i32, bytes: &[u8]) {
    write_all_with(fd, bytes, false);
}

const SIGPIPE_BIT: u64 = 1 << (libc::SIGPIPE - 1);

/// Writes to a pipe without ever raising SIGPIPE in the program: SIGPIPE
/// is blocked on this thread around the write, and one raised by it (the
/// reader has gone) is taken back before the mask is restored, unless the
/// program already had one pending. A socket would avoid this with
/// MSG_NOSIGNAL, but the output is the user's stderr or file, and its
/// lines must stay in order with the program's own output.
fn write_to_pipe(fd: i32, bytes: &[u8]) -> i64 {
    let block = SIGPIPE_BIT;
    let mut old = 0u64;
    let mut pending = 0u64;
    // SAFETY: rt_sigprocmask and rt_sigpending read and write one 8-byte
    // set each, on this thread only.
    unsafe {
        raw(
            Sysno::rt_sigprocmask,
            [
                libc::SIG_BLOCK as u64,
                &block as *const u64 as u64,
                &mut old as *mut u64 as u64,
                8,
                0,
                0,
            ],
        );
        raw(
            Sysno::rt_sigpending,
            [&mut pending as *mut u64 as u64, 8, 0, 0, 0, 0],
        );
    }
    let result = write_all_with(fd, bytes, false);
    if result == -(libc::EPIPE as i64) && pending & SIGPIPE_BIT == 0 {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: takes the SIGPIPE our write raised on this thread (the
        // kernel sends it to the writing thread), without waiting.
        unsafe {
            raw(
                Sysno::rt_sigtimedwait,
                [
                    &block as *const u64 as u64,
                    0,
                    &zero as *const libc::timespec as u64,
                    8,
                    0,
                    0,
                ],
            );
        }
    }
    // SAFETY: restores this thread's mask as it was.
    unsafe {
        raw(
            Sysno::rt_sigprocmask,
            [
                libc::SIG_SETMASK as u64,
                &old as *const u64 as u64,
                0,
                8,
                0,
                0,
            ],
        );
    }
    result
}

/// What a clone-family call will create, read from its arguments.
struct Creation {
    thread: bool,
    /// CLONE_VM (vfork, posix_spawn): the child runs in our memory.
    shares_memory: bool,
    /// A new stack: the engine re-issues the call, the hooks never see the
    /// result (the parent resumes in the program with the child's tid).
    reissued: bool,
}

fn creation(call: &Syscall) -> Option<Creation> {
    let (flags, stack) = match call.sysno()? {
        Sysno::clone => (call.args[0], call.args[1]),
        Sysno::clone3 => {
            // struct clone_args: flags, pidfd, child_tid, parent_tid,
            // exit_signal, stack, stack_size.
            let mut head = [0u8; 56];
            if call.args[1] < 56 || read_memory(call.args[0], &mut head) != 56 {
                return None;
            }
            let word =
                |i: usize| u64::from_ne_bytes(head[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
            (word(0), word(5))
        }
        #[cfg(target_arch = "x86_64")]
        Sysno::fork => (0, 0),
        #[cfg(target_arch = "x86_64")]
        Sysno::vfork => (libc::CLONE_VM as u64, 0),
        _ => return None,
    };
    Some(Creation {
        thread: flags & libc::CLONE_THREAD as u64 != 0,
        shares_memory: flags & libc::CLONE_VM as u64 != 0,
        reissued: stack != 0,
    })
}

/// Calls whose result no post-hook sees.
fn returns_unseen(call: &Syscall) -> bool {
    match call.sysno() {
        Some(Sysno::exit | Sysno::exit_group | Sysno::rt_sigreturn) => true,
        Some(Sysno::clone | Sysno::clone3) => creation(call).is_some_and(|c| c.reissued),
        _ => false,
    }
}

fn pre(call: &Syscall) -> Verdict {
    let Some(p) = PRELOAD.get() else {
        return Verdict::Run;
    };
    sweep_exec_copies();
    if let Some(created) = creation(call) {
        tracer::task_starting(p.tools.iter().map(|t| t.shared), created.thread);
        // Translated code issues clones at their site (no post-hook sees
        // the result): counted as attempted, like re-issued ones.
        if created.reissued || call.entrance == sud_engine::Entrance::Direct {
            for tool in &p.tools {
                tool.count_creation(created.thread);
            }
        }
    }
    let mut injected = None;
    for tool in &p.tools {
        match tool.config.mode {
            Mode::Count => {
                tool.shared.per_number[SharedArea::slot(call.nr)].fetch_add(1, Relaxed);
                tool.shared.entrances[SharedArea::entrance(call.entrance)].fetch_add(1, Relaxed);
                tool.add_engine_counts();
            }
            Mode::Fault if injected.is_none() => injected = tool.inject(call),
            _ => {}
        }
    }
    if let Some(verdict) = injected {
        return verdict;
    }
    if let Some(verdict) = p.protect_tool_fds(call) {
        return verdict;
    }
    if let Some(tool) = p.tools.iter().find(|t| t.config.mode == Mode::Trace) {
        tracer::on_entry(&tool.config.options, sud_engine::hook_words(call));
        if sud_engine::in_strict_mode(call) {
            crate::text::read_directly();
        }
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(Sysno::exit_group | Sysno::execve | Sysno::execveat) = call.sysno() {
        if let Some(tool) = p.tools.first() {
            crate::dbi_collect::at_exit(tool.out_fd.load(Relaxed));
        }
    }
    if let Some(Sysno::execve | Sysno::execveat) = call.sysno() {
        let through_loader = p.loader.as_ref().and_then(|loader| {
            let from_loader = p.self_exe.is_some();
            p.keep_loader_in_exec(call, loader, p.self_exe.as_deref(), !from_loader)
        });
        return match through_loader {
            Some(verdict) => verdict,
            None if p.self_exe.is_some() => Verdict::Run,
            None => p.keep_preload_in_exec(call),
        };
    }
    if returns_unseen(call) {
        p.trace(call, None);
    }
    if let Some(exe) = &p.self_exe {
        if let Some(verdict) = readlink_self_exe(call, exe) {
            return verdict;
        }
    }
    Verdict::Run
}

/// Whether the program's NUL-terminated path at `ptr` names its own
/// `/proc/.../exe` (self, thread-self, or its pid).
fn names_self_exe(ptr: u64) -> bool {
    let mut path = [0u8; 32];
    let n = read_memory(ptr, &mut path);
    let Some(len) = path[..n].iter().position(|&b| b == 0) else {
        return false;
    };
    let Some(who) = path[..len]
        .strip_prefix(b"/proc/")
        .and_then(|rest| rest.strip_suffix(b"/exe"))
    else {
        return false;
    };
    who == b"self" || who == b"thread-self" || who == pid_text(getpid() as u32).as_bytes()
}

/// In an image the loader started, `/proc/self/exe` is the loader: its
/// `readlink` answers with the program's file, as natively (programs
/// such as busybox find and re-run themselves through it).
fn readlink_self_exe(call: &Syscall, exe: &CStr) -> Option<Verdict> {
    let (path, buf, size) = match call.sysno()? {
        #[cfg(target_arch = "x86_64")]
        Sysno::readlink => (call.args[0], call.args[1], call.args[2]),
        Sysno::readlinkat => (call.args[1], call.args[2], call.args[3]),
        _ => return None,
    };
    if !names_self_exe(path) {
        return None;
    }
    if (size as i64) <= 0 {
        return Some(Verdict::Fail(Errno::EINVAL));
    }
    let bytes = exe.to_bytes();
    let n = bytes.len().min(size as usize);
    let local = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: n,
    };
    let remote = libc::iovec {
        iov_base: buf as *mut libc::c_void,
        iov_len: n,
    };
    // SAFETY: process_vm_writev on this process writes `n` bytes at the
    // program's buffer, as readlink would, and answers EFAULT for a bad one.
    let write = || unsafe {
        raw(
            Sysno::process_vm_writev,
            [
                getpid() as u64,
                &local as *const _ as u64,
                1,
                &remote as *const _ as u64,
                1,
                0,
            ],
        )
    };
    let mut r = write();
    if r == -(libc::EFAULT as i64) {
        // A buffer on stack pages the program has not touched yet: the
        // kernel grows the stack for a fault of the program's own call,
        // not for process_vm_writev. The real call faults it in (and
        // answers EFAULT itself for a buffer that is bad).
        // SAFETY: the program's own readlink, as it asked for it.
        unsafe { raw(call.sysno()?, call.args) };
        r = write();
    }
    Some(Verdict::Return(if r < 0 { r } else { n as i64 }))
}

/// sudtrace: `--- SIGNAME {...} ---` for each signal delivered to one of
/// the program's handlers.
fn on_signal(signal: &sud_engine::DeliveredSignal) {
    let Some(p) = PRELOAD.get() else {
        return;
    };
    for tool in p.tools.iter().filter(|t| t.config.mode == Mode::Trace) {
        let (pid, tid) = tool.who();
        if let Some(who) = tool.prefix(pid, tid) {
            let mut line = Line::new();
            tracer::signal_line(&mut line, &tool.config.options, who, pid, tid, signal);
            tool.emit(tid, line.as_bytes());
        }
    }
}

fn post(call: &Syscall, result: &mut i64) {
    let Some(p) = PRELOAD.get() else {
        return;
    };
    sweep_exec_copies();
    #[cfg(target_arch = "x86_64")]
    crate::dbi_follow::after_trap(call, *result);
    match call.sysno() {
        Some(Sysno::execve | Sysno::execveat) => release_exec_copies(gettid()),
        Some(Sysno::dup) if *result >= 0 => *result = p.native_lowest_free(0, *result, false),
        Some(Sysno::fcntl) if *result >= 0 => {
            let cmd = call.args[1] as i32;
            if cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC {
                let min = (call.args[2] & 0xffff_ffff) as i64;
                let cloexec = cmd == libc::F_DUPFD_CLOEXEC;
                *result = p.native_lowest_free(min, *result, cloexec);
            }
        }
        _ => {}
    }
    if let Some(created) = creation(call) {
        if *result == 0 {
            // The forked child: the parent reports the call.
            crate::text::forget_pid();
            if !created.shares_memory {
                tracer::in_forked_child();
            }
            return;
        }
        if *result < 0 {
            tracer::task_not_started(p.tools.iter().map(|t| t.shared), created.thread);
        }
        if *result > 0 {
            // A vfork child may have cached its own pid in our memory.
            crate::text::forget_pid();
            // A vfork-like child that shared our memory has exec'd or
            // exited: the environment copy it made for its execve is ours
            // to free.
            release_exec_copies(*result);
            for tool in &p.tools {
                tool.count_creation(false);
            }
        }
    }
    p.trace(call, Some(*result));
}

impl Tool {
    /// Whether an execve here keeps this tool: it follows children, or
    /// this is its first process, which stays its child across execve (a
    /// vfork child sharing our memory also passes it on, and its new image
    /// then finds that it is not the tool's child).
    fn passed_on(&self) -> bool {
        self.config.follow || self.is_root
    }

    /// Adds what this process's engine counted since the last call here
    /// and the hooks do not see (patched sites, 32-bit calls) to the shared
    /// area. The engine's counters only grow (a forked child starts from
    /// its parent's, as do these marks), so `fetch_max` hands each increase
    /// to exactly one caller.
    fn add_engine_counts(&self) {
        let Some(engine) = Engine::installed() else {
            return;
        };
        let (sites, compat) = engine.sites_and_compat();
        for (now, mark, total) in [
            (sites, &self.sites_added, &self.shared.patched_sites),
            (compat, &self.compat_added, &self.shared.compat),
        ] {
            if now != mark.load(Relaxed) {
                let before = mark.fetch_max(now, Relaxed);
                total.fetch_add(now.saturating_sub(before), Relaxed);
            }
        }
    }

    fn count_creation(&self, thread: bool) {
        if !thread {
            self.shared.processes.fetch_add(1, Relaxed);
        }
        self.shared.threads.fetch_add(1, Relaxed);
    }

    /// Writes one line of output; never raises SIGPIPE in the program.
    fn output(&self, bytes: &[u8]) {
        if self.out_closed.load(Relaxed) {
            return;
        }
        let fd = self.out_fd.load(Relaxed);
        let result = match self.out_kind {
            OutKind::Pipe => write_to_pipe(fd, bytes),
            OutKind::Socket => write_all_with(fd, bytes, true),
            OutKind::Other => write_all_with(fd, bytes, false),
        };
        if result == -(libc::EPIPE as i64) {
            self.out_closed.store(true, Relaxed);
        }
    }

    /// How this thread's lines start; `None` when its lines are not shown
    /// (no `-f`, and not the first process's first thread).
    fn prefix(&self, pid: i64, tid: i64) -> Option<Prefix> {
        if !self.config.follow {
            return (self.is_root && tid == pid).then_some(Prefix::Nothing);
        }
        let options = &self.config.options;
        if options.per_task.is_some() {
            Some(Prefix::Nothing)
        } else if options.pid_column {
            Some(Prefix::Column(tid))
        } else if tracer::many_tasks(self.shared) {
            Some(Prefix::Bracket(tid))
        } else {
            Some(Prefix::Nothing)
        }
    }

    /// This thread's pid and tid, without a syscall while the tool's first
    /// process is single-threaded (a seccomp strict-mode program may make
    /// none but read, write and exit).
    fn who(&self) -> (i64, i64) {
        if self.is_root && !tracer::many_tasks(self.shared) {
            let pid = crate::text::own_pid();
            return (pid, pid);
        }
        (crate::text::own_pid(), gettid())
    }

    fn trace(&self, call: &Syscall, result: Option<i64>) {
        if self.config.mode != Mode::Trace {
            return;
        }
        let exits = matches!(call.sysno(), Some(Sysno::exit | Sysno::exit_group));
        let printed = self.print.contains(call.nr);
        if !printed && !exits {
            return;
        }
        let (pid, tid) = self.who();
        let Some(who) = self.prefix(pid, tid) else {
            return;
        };
        let options = &self.config.options;
        if printed && tracer::shown(options, result) {
            let mut line = Line::new();
            let entered = tracer::entered(sud_engine::hook_words(call));
            tracer::syscall_line(
                &mut line, options, who, pid, tid, call.nr, &call.args, result, entered,
            );
            self.emit(tid, line.as_bytes());
        }
        // strace reports every exit, whatever -e trace= shows.
        if exits {
            let mut line = Line::new();
            let code = call.args[0] as i32 & 0xff;
            tracer::exit_line(&mut line, options, who, pid, tid, code);
            self.emit(tid, line.as_bytes());
        }
    }

    /// Writes one finished line where this task's output goes (`-ff`: its
    /// own file).
    fn emit(&self, tid: i64, bytes: &[u8]) {
        match &self.config.options.per_task {
            Some(base) => {
                if let Some(fd) = open_task_output(base, tid) {
                    write_all(fd, bytes);
                    // SAFETY: closing the descriptor opened just above.
                    unsafe { raw(Sysno::close, [fd as u64, 0, 0, 0, 0, 0]) };
                }
            }
            None => self.output(bytes),
        }
    }

    /// The line for the execve that started this image (the old image
    /// could not print it: a successful execve does not return). Runs in
    /// the constructor, where allocating is fine.
    fn trace_exec_success(&self, started: &StartedAs) {
        if !self.print.contains(Sysno::execve.id() as u64) {
            return;
        }
        let (pid, tid) = (getpid(), gettid());
        let Some(who) = self.prefix(pid, tid) else {
            return;
        };
        let mut args = [
            started.execfn,
            started.argv as u64,
            started.envp as u64,
            0,
            0,
            0,
        ];
        if started.argc < 0 {
            args[1] = 0;
        }
        let options = &self.config.options;
        if tracer::shown(options, Some(0)) {
            let mut line = Line::new();
            let nr = Sysno::execve.id() as u64;
            let entered = tracer::entry_time(options).unwrap_or_default();
            tracer::syscall_line(
                &mut line,
                options,
                who,
                pid,
                tid,
                nr,
                &args,
                Some(0),
                entered,
            );
            self.emit(tid, line.as_bytes());
        }
    }

    /// sudfault: fails the call if a rule says so, and reports it.
    fn inject(&self, call: &Syscall) -> Option<Verdict> {
        for (i, rule) in self.config.faults.iter().enumerate() {
            if rule.nr != call.nr {
                continue;
            }
            let n = self.shared.rule_calls[i].fetch_add(1, Relaxed) + 1;
            if rule.nth != 0 && rule.nth != n {
                continue;
            }
            self.shared.rule_injected[i].fetch_add(1, Relaxed);
            let result = -(rule.errno as i64);
            let mut line = Line::new();
            tracer::fault_line(
                &mut line,
                &self.config.options,
                getpid(),
                gettid(),
                call.nr,
                &call.args,
                result,
                n,
            );
            self.output(line.as_bytes());
            return Some(Verdict::Fail(Errno::new(rule.errno)));
        }
        None
    }
}

/// `-ff`: opens `BASE.<tid>` for appending one line (opened per line and
/// closed at once, so the program never holds or closes it). The one
/// place a per-task output is opened.
fn open_task_output(base: &str, tid: i64) -> Option<i32> {
    let mut path = [0u8; 4200];
    tracer::task_file_name(base, tid, &mut path)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC;
    // SAFETY: openat with a NUL-terminated path in `path`.
    let fd = unsafe {
        raw(
            Sysno::openat,
            [
                libc::AT_FDCWD as u64,
                path.as_ptr() as u64,
                flags as u64,
                0o644,
                0,
                0,
            ],
        )
    };
    (fd >= 0).then_some(fd as i32)
}

/// Most tool descriptors in one process (two per nested tool).
const MAX_TOOL_FDS: usize = 8;

const EBADF: i64 = -(libc::EBADF as i64);

impl Preload {
    fn trace(&self, call: &Syscall, result: Option<i64>) {
        for tool in &self.tools {
            tool.trace(call, result);
        }
        if let Some(sysno @ (Sysno::exit | Sysno::exit_group)) = call.sysno() {
            let traced = self.tools.iter().filter(|t| t.config.mode == Mode::Trace);
            tracer::task_ending(traced.map(|t| t.shared), sysno == Sysno::exit_group);
        }
    }

    /// The tools' descriptor slots.
    fn fd_slots(&self) -> impl Iterator<Item = &AtomicI32> {
        self.tools
            .iter()
            .flat_map(|t| [&t.out_fd, &t.shared_fd])
            .take(MAX_TOOL_FDS)
    }

    /// The slot holding descriptor `fd`, if it is a tool's.
    fn tool_fd(&self, fd: u64) -> Option<&AtomicI32> {
        let fd = fd as u32 as i32;
        self.fd_slots().find(|slot| slot.load(Relaxed) == fd)
    }

    /// The program names a tool descriptor: it gets what it would get
    /// natively, where that number is not open (or is about to become its
    /// own). Shells and subprocess launchers close every descriptor they do
    /// not know; `dup2` onto a tool descriptor moves the tool's away first.
    fn protect_tool_fds(&self, call: &Syscall) -> Option<Verdict> {
        let a = call.args;
        match call.sysno()? {
            Sysno::close | Sysno::dup | Sysno::fcntl => {
                self.tool_fd(a[0]).map(|_| Verdict::Return(EBADF))
            }
            #[cfg(target_arch = "x86_64")]
            Sysno::dup2 => self.dup_onto(a[0], a[1]),
            Sysno::dup3 if a[0] as u32 == a[1] as u32 => None, // EINVAL, as natively.
            Sysno::dup3 => self.dup_onto(a[0], a[1]),
            Sysno::close_range => self.close_range_around(a[0] as u32, a[1] as u32, a[2]),
            _ => None,
        }
    }

    /// dup2/dup3 of `old` onto `new`: a tool descriptor as `old` is not
    /// open natively; one as `new` moves out of the way first.
    fn dup_onto(&self, old: u64, new: u64) -> Option<Verdict> {
        if self.tool_fd(old).is_some() {
            return Some(Verdict::Return(EBADF));
        }
        // At or above the program's limit the kernel answers EBADF, as
        // natively: nothing to move.
        let below_limit = (new as u32 as u64) < fd_limit();
        if let Some(slot) = self.tool_fd(new).filter(|_| below_limit) {
            move_away(slot);
        }
        None
    }

    /// close_range over everything but the tool descriptors (which it would
    /// close, or mark close-on-exec).
    fn close_range_around(&self, first: u32, last: u32, flags: u64) -> Option<Verdict> {
        let known = (libc::CLOSE_RANGE_UNSHARE | libc::CLOSE_RANGE_CLOEXEC) as u64;
        if first > last || flags & !known != 0 {
            return None; // EINVAL from the kernel, as natively.
        }
        let mut ours = [u32::MAX; MAX_TOOL_FDS];
        let mut n = 0;
        for slot in self.fd_slots() {
            let fd = slot.load(Relaxed) as u32;
            if (first..=last).contains(&fd) {
                ours[n] = fd;
                n += 1;
            }
        }
        if n == 0 {
            return None;
        }
        ours[..n].sort_unstable();
        let mut from = first as u64;
        let mut result = 0;
        for &fd in &ours[..n] {
            if result == 0 && from < fd as u64 {
                // SAFETY: close_range takes integers only; closing the
                // program's descriptors is what the program asked for.
                result = unsafe { raw(Sysno::close_range, [from, fd as u64 - 1, flags, 0, 0, 0]) };
            }
            from = fd as u64 + 1;
        }
        if result == 0 && from <= last as u64 {
            // SAFETY: as above.
            result = unsafe { raw(Sysno::close_range, [from, last as u64, flags, 0, 0, 0]) };
        }
        Some(Verdict::Return(result))
    }

    /// `dup`/`F_DUPFD` got `got`, the lowest free number >= `min` with the
    /// tools' descriptors in place; natively the lowest tool descriptor in
    /// `[min, got)` would have been free and the answer. Moves that one
    /// away and puts the program's new descriptor there.
    fn native_lowest_free(&self, min: i64, got: i64, cloexec: bool) -> i64 {
        let Some(slot) = self
            .fd_slots()
            .filter(|s| (min..got).contains(&(s.load(Relaxed) as i64)))
            .min_by_key(|s| s.load(Relaxed))
        else {
            return got;
        };
        let native = slot.load(Relaxed) as i64;
        if !move_away(slot) {
            return got;
        }
        let flags = if cloexec { libc::O_CLOEXEC as u64 } else { 0 };
        // SAFETY: dup3 onto the number just freed, then close of the
        // program's descriptor at `got`, whose copy it gets instead.
        unsafe {
            if raw(Sysno::dup3, [got as u64, native as u64, flags, 0, 0, 0]) < 0 {
                return got;
            }
            raw(Sysno::close, [got as u64, 0, 0, 0, 0, 0]);
        }
        native
    }

    /// An execve keeps this library and the tools' configurations in the
    /// new image's environment (the program's own environ no longer has
    /// them): the environment is copied, into a private mapping (no malloc
    /// here), with `LD_PRELOAD` naming this library first and `SUD_TOOL`
    /// holding the configurations of the followed tools, with their
    /// descriptors where they are now, after any inner tool's.
    fn keep_preload_in_exec(&self, call: &Syscall) -> Verdict {
        if !self.tools.iter().any(Tool::passed_on) {
            return Verdict::Run; // Nothing follows children.
        }
        let envp_index = if call.sysno() == Some(Sysno::execve) {
            2
        } else {
            3
        };
        let envp = call.args[envp_index];
        let mut count = 0u64;
        // The program's LD_PRELOAD and SUD_TOOL values (address, length).
        let mut their_preload: Option<(u64, usize)> = None;
        let mut their_config: Option<(u64, usize)> = None;
        let mut head = [0u8; 16];
        while let Some(ptr) = read_word(envp, count).filter(|&ptr| ptr != 0) {
            count += 1;
            let n = read_memory(ptr, &mut head);
            let value = |name: &[u8]| {
                head[..n].starts_with(name).then(|| {
                    (
                        ptr + name.len() as u64,
                        user_strlen(ptr + name.len() as u64),
                    )
                })
            };
            if let Some(v) = value(b"LD_PRELOAD=") {
                their_preload = Some(v);
            } else if let Some(v) = value(&config_head()) {
                their_config = Some(v);
            }
        }
        let mut text = [0u8; 4096];
        let ours = self.so_path.to_bytes();
        let their_preload = their_preload.map(|(ptr, len)| {
            let len = read_memory(ptr, &mut text[..len.min(4096)]);
            let has_ours = text[..len]
                .split(|&b| b == b':' || b == b' ')
                .any(|part| part == ours);
            (len, has_ours)
        });
        let mut config_text = [0u8; 4096];
        let config_len = their_config.map_or(0, |(ptr, len)| {
            read_memory(ptr, &mut config_text[..len.min(4096)])
        });
        let their_config = &config_text[..config_len];
        let mut encoded = Counter(0);
        self.encode_passed(&mut encoded, &[]);
        // Room for the kept pointers, our two, the terminator, then
        // "LD_PRELOAD=ours:theirs\0" and "SUD_TOOL=theirs|ours\0".
        let pointers = (count + 3) * 8;
        let strings = 11
            + ours.len()
            + 1
            + their_preload.map_or(0, |(len, _)| len)
            + 1
            + config_head().len()
            + their_config.len()
            + 1
            + encoded.0
            + 1;
        let Some((base, area)) = exec_copy_area(pointers + strings as u64) else {
            return Verdict::Run;
        };
        let (pointer_area, string_area) = area.split_at_mut(pointers as usize);
        let mut strings = Cursor {
            buf: string_area,
            len: 0,
        };
        let preload_at = base + pointers;
        strings.push(b"LD_PRELOAD=");
        match their_preload {
            // Already names us (an inner tool's launcher set it): as is.
            Some((len, true)) => strings.push(&text[..len]),
            Some((len, false)) if len > 0 => {
                strings.push(ours);
                strings.push(b":");
                strings.push(&text[..len]);
            }
            _ => strings.push(ours),
        }
        strings.push(b"\0");
        let config_at = base + pointers + strings.len as u64;
        strings.push(&config_head());
        self.encode_passed(&mut strings, their_config);
        strings.push(b"\0");
        let mut kept = 0usize;
        let mut put = |ptr: u64| {
            pointer_area[kept * 8..kept * 8 + 8].copy_from_slice(&ptr.to_ne_bytes());
            kept += 1;
        };
        for i in 0..count {
            let Some(ptr) = read_word(envp, i) else { break };
            let n = read_memory(ptr, &mut head);
            let entry = &head[..n];
            if !entry.starts_with(b"LD_PRELOAD=") && !entry.starts_with(&config_head()) {
                put(ptr);
            }
        }
        put(preload_at);
        put(config_at);
        put(0);
        let mut args = call.args;
        args[envp_index] = base;
        Verdict::RunWith(args)
    }

    /// In an image the loader started, an execve starts the loader again
    /// on the new program (`crate::loader`), so that it too is seen from
    /// its first instruction: the call becomes an execve of the loader with
    /// the same argv, and an environment copy (a private mapping: no malloc
    /// here) where `SUD_TOOL` holds the configurations and
    /// `SUD_LOADER_EXEC` the file name the program gave; the loader takes
    /// both out again. A name the kernel would refuse (missing, not
    /// executable, not ELF or `#!`) and an `execveat` on a descriptor run as
    /// asked: the kernel gives its own answer (or runs an image this tool
    /// does not follow).
    fn keep_loader_in_exec(
        &self,
        call: &Syscall,
        loader: &CStr,
        self_exe: Option<&CStr>,
        static_only: bool,
    ) -> Option<Verdict> {
        if !self.tools.iter().any(Tool::passed_on) {
            return None;
        }
        let mut args = call.args;
        let (path_index, envp_index) = match call.sysno() {
            Some(Sysno::execve) => (0, 2),
            _ => {
                let relative_to_fd = args[0] as i32 != libc::AT_FDCWD;
                if args[4] & libc::AT_EMPTY_PATH as u64 != 0 || relative_to_fd {
                    return None;
                }
                (1, 3)
            }
        };
        let mut target = [0u8; 4096];
        let target_len = user_strlen(args[path_index]);
        if target_len == 0
            || target_len >= target.len()
            || read_memory(args[path_index], &mut target[..target_len]) != target_len
        {
            return None;
        }
        // `/proc/self/exe` would be the loader itself: the loader maps the
        // program's file and keeps the name for AT_EXECFN and comm.
        let file = self_exe
            .filter(|_| names_self_exe(args[path_index]))
            .map(CStr::to_bytes_with_nul);
        match exec_kind(file.unwrap_or(&target[..=target_len])) {
            Some(ExecKind::StaticElf) => {}
            Some(_) if !static_only => {}
            _ => return None,
        }
        let target = &target[..target_len];
        let file_head = crate::loader::FILE_ENV_HEAD.as_bytes();
        let envp = args[envp_index];
        let mut count = 0u64;
        let mut their_config: Option<(u64, usize)> = None;
        let mut head = [0u8; 24];
        while let Some(ptr) = read_word(envp, count).filter(|&ptr| ptr != 0) {
            count += 1;
            let n = read_memory(ptr, &mut head);
            if head[..n].starts_with(&config_head()) {
                let at = ptr + config_head().len() as u64;
                their_config = Some((at, user_strlen(at)));
            }
        }
        let mut config_text = [0u8; 4096];
        let config_len = their_config.map_or(0, |(ptr, len)| {
            read_memory(ptr, &mut config_text[..len.min(4096)])
        });
        let their_config = &config_text[..config_len];
        let exec_head = crate::loader::TARGET_ENV_HEAD.as_bytes();
        let mut encoded = Counter(0);
        self.encode_passed(&mut encoded, their_config);
        let pointers = (count + 4) * 8;
        let strings = config_head().len()
            + encoded.0
            + 1
            + exec_head.len()
            + target.len()
            + 1
            + file_head.len()
            + file.map_or(0, <[u8]>::len)
            + 16;
        let (base, area) = exec_copy_area(pointers + strings as u64)?;
        let (pointer_area, string_area) = area.split_at_mut(pointers as usize);
        let mut strings = Cursor {
            buf: string_area,
            len: 0,
        };
        let config_at = base + pointers;
        strings.push(&config_head());
        self.encode_passed(&mut strings, their_config);
        strings.push(b"\0");
        let exec_at = base + pointers + strings.len as u64;
        strings.push(exec_head);
        strings.push(target);
        strings.push(b"\0");
        let file_at = base + pointers + strings.len as u64;
        if let Some(file) = file {
            strings.push(file_head);
            strings.push(file);
        }
        let mut kept = 0usize;
        let mut put = |ptr: u64| {
            pointer_area[kept * 8..kept * 8 + 8].copy_from_slice(&ptr.to_ne_bytes());
            kept += 1;
        };
        for i in 0..count {
            let Some(ptr) = read_word(envp, i) else { break };
            let n = read_memory(ptr, &mut head);
            let entry = &head[..n];
            let ours = [&config_head()[..], exec_head, file_head];
            if !ours.iter().any(|head| entry.starts_with(head)) {
                put(ptr);
            }
        }
        put(config_at);
        put(exec_at);
        if file.is_some() {
            put(file_at);
        }
        put(0);
        args[path_index] = loader.as_ptr() as u64;
        args[envp_index] = base;
        if call.sysno() == Some(Sysno::execveat) {
            args[4] &= !(libc::AT_SYMLINK_NOFOLLOW as u64);
        }
        Some(Verdict::RunWith(args))
    }

    /// `SUD_TOOL`'s value for a child: the configurations in `theirs` that
    /// are not ours (an inner tool's), then ours, with the descriptors
    /// where they are now.
    fn encode_passed(&self, w: &mut impl std::fmt::Write, theirs: &[u8]) {
        let mut first = true;
        let mut sep = |w: &mut dyn std::fmt::Write| {
            if !std::mem::take(&mut first) {
                let _ = w.write_char(CONFIG_SEPARATOR);
            }
        };
        let sep_byte = CONFIG_SEPARATOR as u8;
        for element in theirs.split(|&b| b == sep_byte).filter(|e| !e.is_empty()) {
            let from_us = self.tools.iter().any(|t| {
                element.split(|&b| b == b';').any(|field| {
                    field.strip_prefix(b"tool=") == Some(pid_text(t.config.tool_pid).as_bytes())
                })
            });
            if !from_us {
                if let Ok(s) = std::str::from_utf8(element) {
                    sep(w);
                    let _ = w.write_str(s);
                }
            }
        }
        for tool in self.tools.iter().filter(|t| t.passed_on()) {
            sep(w);
            let _ =
                tool.config
                    .write_to(w, tool.out_fd.load(Relaxed), tool.shared_fd.load(Relaxed));
        }
    }
}

/// A pid as decimal text, without allocating.
fn pid_text(pid: u32) -> PidText {
    let mut text = PidText([0; 10], 0);
    let _ = write!(text, "{pid}");
    text
}

struct PidText([u8; 10], usize);

impl PidText {
    fn as_bytes(&self) -> &[u8] {
        &self.0[..self.1]
    }
}

impl std::fmt::Write for PidText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.1 + s.len();
        self.0
            .get_mut(self.1..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.1 = end;
        Ok(())
    }
}

/// Counts the bytes written through it.
struct Counter(usize);

impl std::fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// Appends into a fixed buffer (sized beforehand with a [`Counter`]).
struct Cursor<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Cursor<'_> {
    fn push(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(self.buf.len());
        let n = end - self.len;
        self.buf[self.len..end].copy_from_slice(&bytes[..n]);
        self.len = end;
    }
}

impl std::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Moves the tool descriptor in `slot` to the highest free number below
/// the descriptor limit (capped, as the launcher does), inheritable, and
/// closes the old number, which the program is about to use. Returns
/// false (and leaves it) when no number is free.
fn move_away(slot: &AtomicI32) -> bool {
    let old = slot.load(Relaxed);
    let top = fd_limit().min(4096);
    for min in (3..top).rev() {
        // SAFETY: F_DUPFD makes a copy of a descriptor the tool owns.
        let new = unsafe {
            raw(
                Sysno::fcntl,
                [old as u64, libc::F_DUPFD as u64, min, 0, 0, 0],
            )
        };
        if new >= 0 {
            slot.store(new as i32, Relaxed);
            // SAFETY: the old number is the tool's own copy, now moved.
            unsafe { raw(Sysno::close, [old as u64, 0, 0, 0, 0, 0]) };
            return true;
        }
        if new != -(libc::EMFILE as i64) {
            break;
        }
    }
    false
}

/// This process's soft descriptor limit (1024 if it cannot be read).
fn fd_limit() -> u64 {
    let mut limit = [0u64; 2];
    let at = limit.as_mut_ptr() as u64;
    // SAFETY: prlimit64 on this process writes one struct rlimit64.
    let got = unsafe {
        raw(
            Sysno::prlimit64,
            [0, libc::RLIMIT_NOFILE as u64, 0, at, 0, 0],
        )
    };
    if got == 0 {
        limit[0]
    } else {
        1024
    }
}

#[cfg(target_arch = "x86_64")]
const ELF_MACHINE: u16 = 62;
#[cfg(target_arch = "aarch64")]
const ELF_MACHINE: u16 = 183;

/// What an execve of a file would run, as far as the loader cares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ExecKind {
    Script,
    DynamicElf,
    /// No `PT_INTERP`: never loads this library.
    StaticElf,
}

/// What `path` (NUL-terminated) is, if the loader can start it as the
/// kernel would: executable for us, and an ELF file or a `#!` script.
/// Raw calls from the hook into stack buffers, unseen by the program.
fn exec_kind(path: &[u8]) -> Option<ExecKind> {
    let at = path.as_ptr() as u64;
    let cwd = libc::AT_FDCWD as u64;
    // SAFETY: faccessat and openat read the NUL-terminated path.
    let fd = unsafe {
        if raw(Sysno::faccessat, [cwd, at, libc::X_OK as u64, 0, 0, 0]) != 0 {
            return None;
        }
        let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
        raw(Sysno::openat, [cwd, at, flags, 0, 0, 0])
    };
    if fd < 0 {
        return None;
    }
    let pread = |buf: &mut [u8], offset: u64| -> bool {
        let (ptr, len) = (buf.as_mut_ptr() as u64, buf.len() as u64);
        // SAFETY: pread64 writes at most `len` bytes into `buf`.
        unsafe { raw(Sysno::pread64, [fd as u64, ptr, len, offset, 0, 0]) == len as i64 }
    };
    let mut head = [0u8; 64];
    let kind = if !pread(&mut head[..4], 0) {
        None
    } else if head.starts_with(b"#!") {
        Some(ExecKind::Script)
    } else if head.starts_with(b"\x7fELF")
        && pread(&mut head, 0)
        // 64-bit, little-endian, this machine: what the loader maps.
        && head[4] == 2
        && head[5] == 1
        && u16::from_le_bytes([head[18], head[19]]) == ELF_MACHINE
    {
        let word = |o: usize| u64::from_le_bytes(head[o..o + 8].try_into().unwrap_or([0; 8]));
        let half = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as u64;
        let (phoff, phentsize, phnum) = (word(32), half(54), half(56));
        let mut kind = [0u8; 4];
        let interp = (0..phnum.min(256))
            .any(|i| pread(&mut kind, phoff + i * phentsize) && u32::from_le_bytes(kind) == 3);
        Some(if interp {
            ExecKind::DynamicElf
        } else {
            ExecKind::StaticElf
        })
    } else {
        None
    };
    // SAFETY: closes the descriptor opened above.
    unsafe { raw(Sysno::close, [fd as u64, 0, 0, 0, 0, 0]) };
    kind
}

/// `SUD_TOOL=` as bytes, without allocating.
fn config_head() -> [u8; CONFIG_ENV.len() + 1] {
    let mut head = [b'='; CONFIG_ENV.len() + 1];
    head[..CONFIG_ENV.len()].copy_from_slice(CONFIG_ENV.as_bytes());
    head
}

fn read_word(array: u64, index: u64) -> Option<u64> {
    let mut word = [0u8; 8];
    (array != 0 && read_memory(array + index * 8, &mut word) == 8).then(|| u64::from_ne_bytes(word))
}

/// The length of the program's string at `ptr` (at most 64 KiB).
fn user_strlen(ptr: u64) -> usize {
    let mut chunk = [0u8; 256];
    let mut len = 0;
    while len < 65536 {
        let n = read_memory(ptr + len as u64, &mut chunk);
        if let Some(nul) = chunk[..n].iter().position(|&b| b == 0) {
            return len + nul;
        }
        if n < chunk.len() {
            return len + n;
        }
        len += n;
    }
    len
}

/// The environment copies made for execve calls still in flight, by the
/// thread that made them. Not thread-local: a vfork-like child (posix_spawn)
/// shares our memory, and only the parent can free its copy once it has
/// exec'd (item 13 of issue 10: one page leaked per spawn).
struct ExecCopy {
    owner: AtomicI64,
    base: AtomicU64,
    size: AtomicU64,
}

const EXEC_COPIES: usize = 64;

#[allow(clippy::declare_interior_mutable_const)]
const NO_COPY: ExecCopy = ExecCopy {
    owner: AtomicI64::new(0),
    base: AtomicU64::new(0),
    size: AtomicU64::new(0),
};

static IN_FLIGHT: [ExecCopy; EXEC_COPIES] = [NO_COPY; EXEC_COPIES];

/// Some copy may belong to a task that left this memory without freeing it.
static SWEEP: AtomicBool = AtomicBool::new(false);

/// A fresh private mapping of at least `bytes` for an execve's rewritten
/// argument or environment vector (made in the trap path: no malloc),
/// remembered so that it is unmapped if the execve fails. Its address and
/// its bytes.
fn exec_copy_area(bytes: u64) -> Option<(u64, &'static mut [u8])> {
    let size = (bytes + 4095) & !4095;
    // SAFETY: a fresh anonymous private mapping (no address hint): it
    // replaces nothing.
    let map = unsafe {
        raw(
            Sysno::mmap,
            [
                0,
                size,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )
    };
    if map < 0 {
        return None;
    }
    let base = map as u64;
    remember_exec_copy(gettid(), base, size);
    // SAFETY: [base, base + size) is the fresh mapping made above; nothing
    // else refers to it until the caller hands it to the execve.
    let area = unsafe { std::slice::from_raw_parts_mut(base as *mut u8, size as usize) };
    Some((base, area))
}

fn remember_exec_copy(tid: i64, base: u64, size: u64) {
    SWEEP.store(true, Release);
    // With every slot taken (64 concurrent execs) the copy is leaked.
    if let Some(slot) = IN_FLIGHT
        .iter()
        .find(|s| s.owner.compare_exchange(0, -1, Acquire, Relaxed).is_ok())
    {
        slot.base.store(base, Relaxed);
        slot.size.store(size, Relaxed);
        slot.owner.store(tid, Release);
    }
}

/// Frees the copies of tasks that no longer run in this memory: a
/// posix_spawn child that has exec'd (its parent's post-hook never sees
/// the re-issued clone), or, in a forked child, the copies of its parent's
/// threads. Cheap when nothing is in flight (one load).
fn sweep_exec_copies() {
    if !SWEEP.load(Acquire) {
        return;
    }
    let me = gettid();
    let pid = getpid();
    let mut left = false;
    for slot in &IN_FLIGHT {
        let owner = slot.owner.load(Acquire);
        if owner <= 0 || owner == me {
            left |= owner != 0;
            continue;
        }
        // SAFETY: kcmp compares two tasks' memory; it reads nothing of ours.
        let same = unsafe { raw(Sysno::kcmp, [pid as u64, owner as u64, 1, 0, 0, 0]) };
        match same {
            0 => left = true,
            // kcmp is not there or not allowed: stop trying (the copy leaks).
            e if e == -(libc::ENOSYS as i64) || e == -(libc::EPERM as i64) => {}
            _ => release_exec_copies(owner),
        }
    }
    if !left {
        SWEEP.store(false, Release);
    }
}

/// Frees the environment copies of task `tid`: its execve failed (it
/// still runs here), or it was a vfork-like child that has exec'd or
/// exited (the kernel has read the copy).
fn release_exec_copies(tid: i64) {
    for slot in IN_FLIGHT.iter().filter(|s| s.owner.load(Acquire) == tid) {
        let (base, size) = (slot.base.load(Relaxed), slot.size.load(Relaxed));
        if slot.owner.compare_exchange(tid, 0, AcqRel, Relaxed).is_ok() {
            // SAFETY: [base, base + size) is a mapping made for an execve
            // that has failed or whose task no longer runs in this memory:
            // nothing refers to it any more.
            unsafe { raw(Sysno::munmap, [base, size, 0, 0, 0, 0]) };
        }
    }
}
