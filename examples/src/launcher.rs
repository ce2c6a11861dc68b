//! The tool side shared by sudtrace, syscount and sudfault: check the
//! kernel, find the preload library next to the running tool, set up the
//! output descriptor and the shared counters, start the program with the
//! library preloaded (or through `sud-loader` for `--from-start` and
//! static programs, see `crate::loader`), wait for it, and exit the way
//! it exited.

use crate::config::{
    FaultRule, Mode, SharedArea, ToolConfig, TraceOptions, CONFIG_ENV, PRELOAD_FILE,
};
use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use sud_engine::kernel::{self, Support};
use sud_engine::{Errno, Sysno};

/// Which of descriptors 0-2 were closed when the tool started (bit n for
/// fd n), recorded before Rust's runtime puts /dev/null on them: the
/// program must find them closed, as it would natively.
static CLOSED_AT_START: AtomicU8 = AtomicU8::new(0);

// Runs from the tool's .init_array, before Rust's runtime initialisation
// (which happens in `main`). The preload shares this code: there it does
// nothing, without a syscall (the program's view must not change).
#[used]
#[link_section = ".init_array"]
static RECORD_CLOSED_STD_FDS: extern "C" fn() = record_closed_std_fds;

extern "C" fn record_closed_std_fds() {
    if !crate::preload::in_main_program(record_closed_std_fds as *const () as usize) {
        return;
    }
    let mut closed = 0;
    for fd in 0..3 {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            closed |= 1 << fd;
        }
    }
    CLOSED_AT_START.store(closed, Relaxed);
}

/// Why a tool could not run the program.
#[derive(Debug)]
pub enum ToolError {
    /// The kernel cannot do Syscall User Dispatch.
    Unsupported(String),
    /// The preload library is not where the tool expects it.
    NoPreload {
        /// The running tool.
        exe: PathBuf,
        /// Where it looked.
        looked: Vec<PathBuf>,
    },
    /// The output file could not be created.
    Output(PathBuf, io::Error),
    /// The program could not be started.
    Spawn(OsString, io::Error),
    /// A system call the tool needs failed.
    Os(&'static str, io::Error),
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::Unsupported(why) => write!(f, "{why}"),
            ToolError::NoPreload { exe, looked } => {
                write!(
                    f,
                    "cannot find the preload library {PRELOAD_FILE} for {}; looked at",
                    exe.display()
                )?;
                for path in looked {
                    write!(f, " {}", path.display())?;
                }
                write!(f, " (build it with `cargo build -p sud-examples`)")
            }
            ToolError::Output(path, e) => write!(f, "cannot write {}: {e}", path.display()),
            ToolError::Spawn(program, e) => {
                write!(f, "cannot run {}: {e}", Path::new(program).display())
            }
            ToolError::Os(op, e) => write!(f, "{op} failed: {e}"),
        }
    }
}

impl std::error::Error for ToolError {}

impl ToolError {
    /// The exit status a tool uses for this error: 127 for a program that
    /// cannot be started (as shells do), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ToolError::Spawn(..) => 127,
            _ => 1,
        }
    }
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Which tool.
    pub mode: Mode,
    /// Follow child processes.
    pub follow: bool,
    /// Rewrite trapped syscall sites (off with `--no-rewrite`).
    pub rewrite: bool,
    /// sudtrace's `-e trace=` list.
    pub trace: Option<Vec<u64>>,
    /// sudfault's rules.
    pub faults: Vec<FaultRule>,
    /// `-o FILE`; standard error otherwise.
    pub output: Option<PathBuf>,
    /// The program and its arguments.
    pub program: Vec<OsString>,
    /// How lines look (sudtrace's flags, `--json`).
    pub options: TraceOptions,
    /// `--from-start`: start the program through `sud-loader`, so its
    /// first instruction and its dynamic loader are seen (statically
    /// linked programs always are: the preload cannot reach them).
    pub from_start: bool,
}

/// A finished run.
pub struct Finished {
    /// How the program ended.
    pub status: ExitStatus,
    /// The counters every traced process updated.
    pub shared: &'static SharedArea,
    /// Where the tool's own report goes (the `-o` file or standard error).
    pub report: File,
}

/// Runs the program under the preload library and waits for it.
pub fn run(launch: &Launch) -> Result<Finished, ToolError> {
    match kernel::probe() {
        Support::Available { .. } => {}
        Support::Unsupported => {
            return Err(ToolError::Unsupported(
                sud_engine::Error::Unsupported.to_string(),
            ))
        }
        Support::Refused(errno) => {
            return Err(ToolError::Unsupported(
                sud_engine::Error::RefusedByPolicy(errno).to_string(),
            ))
        }
    }
    let preload = find_preload()?;
    let (program, args) = launch
        .program
        .split_first()
        .expect("clap requires a program");
    let resolved = resolve_program(program);
    let loader = match &resolved {
        Some(path) if launch.from_start || crate::loader::is_static_elf(path) => {
            match crate::loader::find_loader() {
                Some(loader) => Some((loader, path.clone())),
                None if launch.from_start => {
                    return Err(ToolError::Spawn(program.clone(), no_loader()));
                }
                None => {
                    // Runs as it would without the loader: unseen.
                    eprintln!(
                        "{}: {} is statically linked and will not be seen: {}",
                        tool_name(),
                        path.display(),
                        no_loader()
                    );
                    None
                }
            }
        }
        _ => None,
    };
    let report = match &launch.output {
        Some(path) => {
            File::create(path).map_err(|e| ToolError::Output(path.clone(), e))?;
            OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|e| ToolError::Output(path.clone(), e))?
        }
        None => {
            use std::os::fd::AsFd;
            let stderr = io::stderr().as_fd().try_clone_to_owned();
            File::from(stderr.map_err(|e| ToolError::Os("dup(stderr)", e))?)
        }
    };
    let out_fd = place_fd(report.as_raw_fd())?;
    let (shared, shared_fd) = make_shared_area()?;
    let config = ToolConfig {
        mode: launch.mode,
        out_fd,
        shared_fd,
        follow: launch.follow,
        rewrite: launch.rewrite,
        tool_pid: std::process::id(),
        trace: launch.trace.clone(),
        faults: launch.faults.clone(),
        options: launch.options.clone(),
    };
    // Set in our own environment rather than with Command::env, which
    // would rebuild the program's environment in sorted order: this way
    // its order is the native one, and the preload (or the loader)
    // removes them again before the program's code runs. The tool is
    // single-threaded.
    std::env::set_var(CONFIG_ENV, config.encode());
    let mut command = match &loader {
        Some((loader, target)) => {
            std::env::set_var(crate::loader::TARGET_ENV, target);
            let mut command = Command::new(loader);
            command.arg0(program);
            command
        }
        None => {
            let mut ld_preload = preload.into_os_string();
            if let Some(theirs) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
                ld_preload.push(":");
                ld_preload.push(theirs);
            }
            std::env::set_var("LD_PRELOAD", ld_preload);
            Command::new(program)
        }
    };
    let closed = CLOSED_AT_START.load(Relaxed);
    command.args(args);
    if closed != 0 {
        // SAFETY: the closure only calls close(), which is
        // async-signal-safe, in the child between fork and exec.
        unsafe {
            command.pre_exec(move || {
                for fd in (0..3).filter(|fd| closed & (1 << fd) != 0) {
                    libc::close(fd);
                }
                Ok(())
            });
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| ToolError::Spawn(program.clone(), e))?;
    // Like a shell waiting for a job: ^C and ^\ are for the program.
    // SAFETY: setting SIG_IGN for two signals has no memory effects.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    let status = child.wait().map_err(|e| ToolError::Os("wait", e))?;
    // SAFETY: closing the two descriptors the tool placed for the child.
    unsafe {
        libc::close(out_fd);
        libc::close(shared_fd);
    }
    Ok(Finished {
        status,
        shared,
        report,
    })
}

fn no_loader() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        "sud-loader is not next to the tool (build it with `cargo build -p sud-examples`)",
    )
}

/// The running tool's name, for messages.
fn tool_name() -> String {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "sud".into())
}

/// The file `execvp` would run for `program` (searched in `PATH` when it
/// has no `/`), if there is one.
fn resolve_program(program: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let executable = |p: &Path| {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
        // SAFETY: access reads the NUL-terminated path.
        let ok = unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 && p.is_file();
        ok.then(|| p.to_path_buf())
    };
    if program.as_bytes().contains(&b'/') {
        return executable(Path::new(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).find_map(|dir| executable(&dir.join(program)))
}

/// Puts an inheritable copy of `fd` where the program cannot ask for it:
/// at or above the program's descriptor limit when the hard limit leaves
/// room (descriptors above the soft limit stay usable; the program gets
/// EMFILE or EBADF for those numbers, as it would natively), else at the
/// highest free number below it (the preload moves it away when the
/// program names it). Never a fixed number: the program's own descriptors
/// are never replaced, and a low `ulimit -n` works.
fn place_fd(fd: i32) -> Result<i32, ToolError> {
    let os = |op| ToolError::Os(op, io::Error::last_os_error());
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(os("getrlimit"));
    }
    let soft = limit.rlim_cur;
    // Room for both descriptors plus a few, without growing the descriptor
    // table (copied at every fork) more than needed.
    let raised = soft.saturating_add(8).min(limit.rlim_max);
    if raised > soft {
        let wider = libc::rlimit {
            rlim_cur: raised,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: F_DUPFD copies a descriptor we own onto the lowest free
        // number >= soft (without FD_CLOEXEC); the limits are ours and are
        // restored before the program starts.
        let placed = unsafe {
            libc::setrlimit(libc::RLIMIT_NOFILE, &wider);
            let placed = libc::fcntl(fd, libc::F_DUPFD, soft as libc::c_int);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            placed
        };
        if placed >= 0 {
            return Ok(placed);
        }
    }
    // No room above: the highest free number below the limit (capped: a
    // descriptor at 1048575 would make every fork copy an 8 MB table).
    let top = soft.min(4096) as i32;
    for min in (3..top).rev() {
        // SAFETY: as above.
        let placed = unsafe { libc::fcntl(fd, libc::F_DUPFD, min) };
        if placed >= 0 {
            return Ok(placed);
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EMFILE) {
            break;
        }
    }
    Err(os("fcntl(F_DUPFD)"))
}

fn make_shared_area() -> Result<(&'static SharedArea, i32), ToolError> {
    let os = |op| move || ToolError::Os(op, io::Error::last_os_error());
    // SAFETY: memfd_create with a NUL-terminated name; the fd is ours.
    let fd = unsafe { libc::memfd_create(c"sud-tool-counters".as_ptr(), 0) };
    if fd < 0 {
        return Err(os("memfd_create")());
    }
    // SAFETY: fd is the memfd just created.
    if unsafe { libc::ftruncate(fd, SharedArea::SIZE as libc::off_t) } != 0 {
        return Err(os("ftruncate")());
    }
    let placed = place_fd(fd)?;
    // SAFETY: a shared mapping of the whole memfd (zero-filled, so every
    // counter starts at 0), never unmapped: 'static is sound. SharedArea is
    // all atomics, valid for any bytes.
    let shared = unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            SharedArea::SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        libc::close(fd);
        if addr == libc::MAP_FAILED {
            return Err(os("mmap")());
        }
        &*(addr as *const SharedArea)
    };
    // The program's first process and thread.
    shared
        .processes
        .store(1, std::sync::atomic::Ordering::Relaxed);
    shared
        .threads
        .store(1, std::sync::atomic::Ordering::Relaxed);
    Ok((shared, placed))
}

/// The preload library: next to the running tool (`cargo build` puts the
/// cdylib in the profile directory) or in its `deps/` (where `cargo run`
/// of one binary leaves it). Where both exist the newer wins: `cargo test`
/// rebuilds the one in `deps/` without refreshing the other.
pub fn find_preload() -> Result<PathBuf, ToolError> {
    let exe = std::env::current_exe().map_err(|e| ToolError::Os("current_exe", e))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let looked = vec![dir.join(PRELOAD_FILE), dir.join("deps").join(PRELOAD_FILE)];
    let newest = looked
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p)))
        .max_by_key(|(modified, _)| *modified);
    match newest {
        Some((_, found)) => Ok(found.clone()),
        None => Err(ToolError::NoPreload { exe, looked }),
    }
}

/// Ends the tool the way the program ended: the same exit code, or the
/// same signal (without a core dump of the tool).
pub fn exit_like(status: ExitStatus) -> ! {
    if let Some(code) = status.code() {
        std::process::exit(code);
    }
    let signal = status.signal().unwrap_or(libc::SIGKILL);
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on this process: no core file, default
    // action for the signal, then send it to ourselves.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(signal, libc::SIG_DFL);
        let unblock = {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            set
        };
        libc::sigprocmask(libc::SIG_UNBLOCK, &unblock, std::ptr::null_mut());
        libc::raise(signal);
    }
    std::process::exit(128 + signal)
}

/// A syscall name of this architecture, for command lines.
pub fn parse_syscall(name: &str) -> Result<Sysno, String> {
    name.parse::<Sysno>()
        .map_err(|()| format!("unknown syscall name '{name}'"))
}

/// An errno by name (`ENOENT`) or number, for command lines.
pub fn parse_errno(name: &str) -> Result<Errno, String> {
    if let Ok(n) = name.parse::<i32>() {
        if (1..4096).contains(&n) {
            return Ok(Errno::new(n));
        }
    }
    (1..4096)
        .map(Errno::new)
        .find(|e| e.name() == Some(name))
        .ok_or_else(|| format!("unknown errno name '{name}' (expected a name like ENOENT)"))
}

/// The display name of a counter slot.
pub fn slot_name(nr: usize) -> String {
    match Sysno::new(nr) {
        Some(sysno) => sysno.name().to_string(),
        None => format!("syscall_{nr}"),
    }
}
