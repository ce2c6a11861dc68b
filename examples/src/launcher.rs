//! The tool side shared by sudtrace, syscount and sudfault: check the
//! kernel, find the preload library next to the running tool, set up the
//! output descriptor and the shared counters, start the program with the
//! library preloaded, wait for it, and exit the way it exited.

use crate::config::{
    FaultRule, Mode, SharedArea, ToolConfig, TraceOptions, CONFIG_ENV, PRELOAD_FILE,
};
use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use sud_engine::kernel::{self, Support};
use sud_engine::{Errno, Sysno};

/// The descriptor trace lines and fault reports go to in the program (a
/// high number the program is unlikely to use; the preload keeps it open).
pub const OUT_FD: i32 = 1021;
/// The descriptor of the shared counter memfd in the program.
pub const SHARED_FD: i32 = 1022;

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
    place_fd(report.as_raw_fd(), OUT_FD)?;
    let shared = make_shared_area()?;
    let config = ToolConfig {
        mode: launch.mode,
        out_fd: OUT_FD,
        shared_fd: SHARED_FD,
        follow: launch.follow,
        tool_pid: std::process::id(),
        trace: launch.trace.clone(),
        faults: launch.faults.clone(),
        options: launch.options.clone(),
    };
    let mut ld_preload = preload.into_os_string();
    if let Some(theirs) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        ld_preload.push(":");
        ld_preload.push(theirs);
    }
    let (program, args) = launch
        .program
        .split_first()
        .expect("clap requires a program");
    let mut child = Command::new(program)
        .args(args)
        .env("LD_PRELOAD", ld_preload)
        .env(CONFIG_ENV, config.encode())
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
        libc::close(OUT_FD);
        libc::close(SHARED_FD);
    }
    Ok(Finished {
        status,
        shared,
        report,
    })
}

/// Puts a copy of `fd` at `target`, inheritable across exec.
fn place_fd(fd: i32, target: i32) -> Result<(), ToolError> {
    // SAFETY: dup2 of a descriptor this process owns onto a number it does
    // not otherwise use; dup2 leaves the copy without FD_CLOEXEC.
    if unsafe { libc::dup2(fd, target) } < 0 {
        return Err(ToolError::Os("dup2", io::Error::last_os_error()));
    }
    Ok(())
}

fn make_shared_area() -> Result<&'static SharedArea, ToolError> {
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
    place_fd(fd, SHARED_FD)?;
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
    Ok(shared)
}

/// The preload library: next to the running tool (`cargo build` puts the
/// cdylib in the profile directory) or in its `deps/` (where `cargo run`
/// of one binary leaves it).
pub fn find_preload() -> Result<PathBuf, ToolError> {
    let exe = std::env::current_exe().map_err(|e| ToolError::Os("current_exe", e))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let looked = vec![dir.join(PRELOAD_FILE), dir.join("deps").join(PRELOAD_FILE)];
    match looked.iter().find(|p| p.is_file()) {
        Some(found) => Ok(found.clone()),
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
