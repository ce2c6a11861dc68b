//! sudtrace's command line, parsed the way strace parses its own (getopt
//! with option clustering, `-s64` and `-s 64`, stop at the program), with
//! strace's wording for errors, so that strace users can type what they
//! know.

use crate::config::{StatusFilter, TraceOptions};
use std::ffi::OsString;
use std::path::PathBuf;
use sud_engine::Sysno;

/// A parsed sudtrace command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceCli {
    /// `-f` given once (1) or twice (2, `-ff`).
    pub follow: u8,
    /// `-o FILE`.
    pub output: Option<PathBuf>,
    /// `-c`: count instead of tracing.
    pub count: bool,
    /// `-e trace=`: the syscall numbers to show; `None` shows all.
    pub trace: Option<Vec<u64>>,
    /// `-e signal=` as given (accepted; see the README for what it does).
    pub signals: Option<String>,
    /// `--json`, `-s`, `-y`, `-T`, `-t`, `-r`, `-e status=`.
    pub options: TraceOptions,
    /// `--no-rewrite`: keep every syscall site trapping.
    pub no_rewrite: bool,
    /// `-h`/`--help`.
    pub help: bool,
    /// `-V`/`--version`.
    pub version: bool,
    /// `--from-start`: through `sud-loader`, from the first instruction.
    pub from_start: bool,
    /// The program and its arguments.
    pub program: Vec<OsString>,
}

/// A command line sudtrace refuses, with strace's message for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// The message after `sudtrace: `.
    pub message: String,
    /// Whether strace adds `Try 'strace -h' for more information.`
    pub usage_hint: bool,
}

impl CliError {
    fn usage(message: String) -> Self {
        CliError {
            message,
            usage_hint: true,
        }
    }

    fn plain(message: String) -> Self {
        CliError {
            message,
            usage_hint: false,
        }
    }

    /// The full text for standard error, for tool `name`.
    pub fn render(&self, name: &str) -> String {
        let mut text = format!("{name}: {}\n", self.message);
        if self.usage_hint {
            text += &format!("Try '{name} -h' for more information.\n");
        }
        text
    }
}

/// sudtrace's help text.
pub const USAGE: &str = "\
Usage: sudtrace [-cfhqrTtVxy] [-e EXPR]... [-o FILE] [-s STRSIZE] [--json] [--no-rewrite] PROG [ARGS]

Traces the system calls of PROG with Syscall User Dispatch inside the
program (no ptrace), printing strace's lines.

  -c             count calls, print a table at the end (as syscount)
  -e EXPR        trace=NAME[,NAME...] | trace=%file|%process|%network|
                 %signal|%memory|%desc | status=successful|failed |
                 signal=SET (accepted; delivered signals are not shown)
  -f             follow threads and child processes
  -ff            with -o FILE: one file FILE.TID per task
  -h, --help     this text
  -q             accepted (there are no attach messages to quieten)
  -o FILE        write the trace to FILE instead of standard error
  -r             print the time since the previous call
  -s STRSIZE     most string bytes shown (default 32; paths are whole)
  -t, -tt, -ttt  print the time of day (seconds, microseconds, epoch)
  -T             print the time spent in each call
  -V, --version  print the version
  -x, -xx        non-ASCII strings in hex; every string in hex
  -y             print the paths of file descriptors
  --json         one JSON object per line (see examples/JSON.md)
  --no-rewrite   keep every syscall site trapping (by default a site is
                 rewritten into a direct call of the hooks after its
                 first trap)
  --from-start   trace from the first instruction (the dynamic loader's
                 calls too), through sud-loader; static programs always are
";

/// Parses sudtrace's arguments (without the program name).
pub fn parse(args: &[OsString]) -> Result<TraceCli, CliError> {
    let mut cli = TraceCli::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].to_string_lossy().into_owned();
        i += 1;
        if arg == "--" {
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            match long {
                "json" => cli.options.json = true,
                "no-rewrite" => cli.no_rewrite = true,
                "help" => cli.help = true,
                "version" => cli.version = true,
                "from-start" => cli.from_start = true,
                _ => {
                    let name = long.split('=').next().unwrap_or(long);
                    return Err(CliError::usage(format!("unrecognized option '--{name}'")));
                }
            }
            continue;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            // The program: strace stops at the first non-option.
            i -= 1;
            break;
        };
        let chars: Vec<char> = cluster.chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            j += 1;
            match c {
                'f' => cli.follow = cli.follow.saturating_add(1).min(2),
                'c' => cli.count = true,
                'h' => cli.help = true,
                'r' => cli.options.relative = true,
                'T' => cli.options.durations = true,
                't' => cli.options.timestamps = cli.options.timestamps.saturating_add(1).min(3),
                'y' => cli.options.fd_paths = true,
                'x' => cli.options.hex_strings = (cli.options.hex_strings + 1).min(2),
                'V' => cli.version = true,
                // sudtrace prints no attach/detach messages to quieten.
                'q' => {}
                'p' => {
                    return Err(CliError::plain(
                        "-p is not supported: sudtrace traces from inside the program it \
                         starts and cannot attach to a running process"
                            .into(),
                    ))
                }
                'o' | 's' | 'e' => {
                    let value = if j < chars.len() {
                        let rest: String = chars[j..].iter().collect();
                        j = chars.len();
                        rest
                    } else if i < args.len() {
                        i += 1;
                        args[i - 1].to_string_lossy().into_owned()
                    } else {
                        return Err(CliError::usage(format!(
                            "option requires an argument -- '{c}'"
                        )));
                    };
                    match c {
                        'o' => cli.output = Some(PathBuf::from(value)),
                        's' => {
                            cli.options.string_limit = value
                                .parse::<usize>()
                                .ok()
                                .filter(|&n| n <= 1 << 20)
                                .ok_or_else(|| {
                                    CliError::plain(format!("invalid -s argument: '{value}'"))
                                })?
                        }
                        _ => expression(&mut cli, &value)?,
                    }
                }
                _ => return Err(CliError::usage(format!("invalid option -- '{c}'"))),
            }
        }
    }
    cli.program = args[i..].to_vec();
    if cli.program.is_empty() && !cli.help && !cli.version {
        return Err(CliError::usage("must have PROG [ARGS]".into()));
    }
    Ok(cli)
}

/// One `-e` expression.
fn expression(cli: &mut TraceCli, text: &str) -> Result<(), CliError> {
    let (key, value) = match text.split_once('=') {
        Some((key, value)) if KEYS.contains(&key) => (key, value),
        // strace reads anything else as a list of calls.
        _ => ("trace", text),
    };
    match key {
        "trace" | "t" => {
            let (negate, list) = match value.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, value),
            };
            let mut numbers = Vec::new();
            for name in list.split(',').filter(|n| !n.is_empty()) {
                match name {
                    "all" => numbers.extend(every_syscall()),
                    "none" => {}
                    _ => match name.strip_prefix('%') {
                        Some(class) => numbers.extend(class_members(class).ok_or_else(|| {
                            CliError::plain(format!("invalid system call '{name}'"))
                        })?),
                        None => numbers.push(
                            name.parse::<Sysno>()
                                .map_err(|()| {
                                    CliError::plain(format!("invalid system call '{name}'"))
                                })?
                                .id() as u64,
                        ),
                    },
                }
            }
            if negate {
                numbers = every_syscall().filter(|n| !numbers.contains(n)).collect();
            }
            numbers.sort_unstable();
            numbers.dedup();
            cli.trace = Some(numbers);
        }
        "status" => {
            cli.options.status = match value {
                "all" => StatusFilter::All,
                "successful" | "!failed" => StatusFilter::Successful,
                "failed" | "!successful" => StatusFilter::Failed,
                _ => return Err(CliError::plain(format!("invalid status '{value}'"))),
            }
        }
        _ => {
            let list = value.strip_prefix('!').unwrap_or(value);
            for name in list.split(',').filter(|n| !n.is_empty()) {
                if !is_signal(name) {
                    return Err(CliError::plain(format!("invalid signal '{name}'")));
                }
            }
            cli.signals = Some(value.to_string());
        }
    }
    Ok(())
}

/// The `-e` keys sudtrace knows.
const KEYS: &[&str] = &["trace", "t", "status", "signal", "signals", "s"];

/// A signal as strace accepts it: `all`, `none`, a number, or a name with
/// or without `SIG`, in any case.
fn is_signal(name: &str) -> bool {
    if matches!(name, "all" | "none") {
        return true;
    }
    if let Ok(n) = name.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    (1..=64).any(|n| crate::text::signal_name(n).strip_prefix("SIG") == Some(bare))
        || bare == "RTMIN"
        || bare
            .strip_prefix("RT_")
            .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n <= 32))
}

fn every_syscall() -> impl Iterator<Item = u64> {
    (0..1024usize).filter_map(Sysno::new).map(|s| s.id() as u64)
}

/// The calls of strace's classes (`%file` and so on), by name.
fn class_members(class: &str) -> Option<Vec<u64>> {
    let names: &[&str] = match class {
        "file" => &[
            "open",
            "openat",
            "openat2",
            "creat",
            "stat",
            "lstat",
            "newfstatat",
            "statx",
            "access",
            "faccessat",
            "faccessat2",
            "readlink",
            "readlinkat",
            "unlink",
            "unlinkat",
            "rmdir",
            "mkdir",
            "mkdirat",
            "rename",
            "renameat",
            "renameat2",
            "chmod",
            "fchmodat",
            "chown",
            "lchown",
            "fchownat",
            "chdir",
            "chroot",
            "truncate",
            "link",
            "linkat",
            "symlink",
            "symlinkat",
            "execve",
            "execveat",
            "statfs",
            "getxattr",
            "lgetxattr",
            "setxattr",
            "lsetxattr",
            "listxattr",
            "llistxattr",
            "removexattr",
            "lremovexattr",
            "utime",
            "utimes",
            "utimensat",
            "futimesat",
            "mknod",
            "mknodat",
            "mount",
            "umount2",
            "swapon",
            "swapoff",
            "acct",
            "name_to_handle_at",
            "inotify_add_watch",
            "fanotify_mark",
            "quotactl",
            "pivot_root",
            "uselib",
            "open_tree",
            "move_mount",
            "mount_setattr",
            "fchmodat2",
        ],
        "process" => &[
            "clone",
            "clone3",
            "fork",
            "vfork",
            "execve",
            "execveat",
            "exit",
            "exit_group",
            "wait4",
            "waitid",
            "kill",
            "tkill",
            "tgkill",
            "rt_sigqueueinfo",
            "rt_tgsigqueueinfo",
            "pidfd_open",
            "pidfd_send_signal",
            "unshare",
        ],
        "network" | "net" => &[
            "socket",
            "socketpair",
            "bind",
            "listen",
            "accept",
            "accept4",
            "connect",
            "getsockname",
            "getpeername",
            "sendto",
            "recvfrom",
            "sendmsg",
            "recvmsg",
            "sendmmsg",
            "recvmmsg",
            "shutdown",
            "setsockopt",
            "getsockopt",
        ],
        "signal" => &[
            "rt_sigaction",
            "rt_sigprocmask",
            "rt_sigreturn",
            "rt_sigsuspend",
            "rt_sigpending",
            "rt_sigtimedwait",
            "rt_sigqueueinfo",
            "rt_tgsigqueueinfo",
            "sigaltstack",
            "kill",
            "tkill",
            "tgkill",
            "pause",
            "signalfd",
            "signalfd4",
            "pidfd_send_signal",
        ],
        "memory" => &[
            "mmap",
            "munmap",
            "mprotect",
            "pkey_mprotect",
            "brk",
            "mremap",
            "madvise",
            "process_madvise",
            "mlock",
            "mlock2",
            "munlock",
            "mlockall",
            "munlockall",
            "mincore",
            "msync",
            "remap_file_pages",
            "mbind",
            "set_mempolicy",
            "get_mempolicy",
            "migrate_pages",
            "move_pages",
            "shmat",
            "shmdt",
        ],
        "desc" => &[
            "read",
            "write",
            "pread64",
            "pwrite64",
            "readv",
            "writev",
            "preadv",
            "pwritev",
            "preadv2",
            "pwritev2",
            "open",
            "openat",
            "openat2",
            "creat",
            "close",
            "close_range",
            "dup",
            "dup2",
            "dup3",
            "fcntl",
            "ioctl",
            "fstat",
            "newfstatat",
            "statx",
            "lseek",
            "pipe",
            "pipe2",
            "poll",
            "ppoll",
            "select",
            "pselect6",
            "epoll_create",
            "epoll_create1",
            "epoll_ctl",
            "epoll_wait",
            "epoll_pwait",
            "epoll_pwait2",
            "eventfd",
            "eventfd2",
            "signalfd",
            "signalfd4",
            "timerfd_create",
            "timerfd_settime",
            "timerfd_gettime",
            "memfd_create",
            "getdents64",
            "fsync",
            "fdatasync",
            "ftruncate",
            "fchdir",
            "fchmod",
            "fchmodat",
            "fchown",
            "fchownat",
            "fstatfs",
            "flock",
            "fadvise64",
            "fallocate",
            "sendfile",
            "splice",
            "tee",
            "copy_file_range",
            "mmap",
            "faccessat",
            "faccessat2",
            "readlinkat",
            "unlinkat",
            "mkdirat",
            "renameat",
            "renameat2",
            "linkat",
            "symlinkat",
            "execveat",
            "fgetxattr",
            "fsetxattr",
            "flistxattr",
            "fremovexattr",
            "inotify_init1",
            "socket",
            "socketpair",
            "bind",
            "listen",
            "accept",
            "accept4",
            "connect",
            "getsockname",
            "getpeername",
            "sendto",
            "recvfrom",
            "sendmsg",
            "recvmsg",
            "shutdown",
            "setsockopt",
            "getsockopt",
            "utimensat",
            "syncfs",
            "pidfd_open",
            "pidfd_getfd",
        ],
        _ => return None,
    };
    Some(
        names
            .iter()
            .filter_map(|n| n.parse::<Sysno>().ok())
            .map(|s| s.id() as u64)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn clusters_attached_values_and_program_stop() {
        let cli = parse(&args(&["-fftty", "-s64", "-o", "out", "ls", "-l"])).unwrap();
        assert_eq!(cli.follow, 2);
        assert_eq!(cli.options.timestamps, 2);
        assert!(cli.options.fd_paths);
        assert_eq!(cli.options.string_limit, 64);
        assert_eq!(cli.output, Some(PathBuf::from("out")));
        assert_eq!(cli.program, args(&["ls", "-l"]));
        let cli = parse(&args(&[
            "-e",
            "trace=%process",
            "-e",
            "status=failed",
            "--",
            "true",
        ]))
        .unwrap();
        assert!(cli.trace.unwrap().contains(&(Sysno::execve.id() as u64)));
        assert_eq!(cli.options.status, StatusFilter::Failed);
        assert!(!cli.no_rewrite);
        let cli = parse(&args(&["-f", "--no-rewrite", "ls", "--no-rewrite"])).unwrap();
        assert!(cli.no_rewrite);
        assert_eq!(cli.program, args(&["ls", "--no-rewrite"]));
    }

    #[test]
    fn errors_use_strace_wording() {
        let e = parse(&args(&["-X", "true"])).unwrap_err();
        assert_eq!(
            e.render("sudtrace"),
            "sudtrace: invalid option -- 'X'\nTry 'sudtrace -h' for more information.\n"
        );
        let e = parse(&args(&["-o"])).unwrap_err();
        assert_eq!(e.message, "option requires an argument -- 'o'");
        let e = parse(&args(&["--bogus", "true"])).unwrap_err();
        assert_eq!(e.message, "unrecognized option '--bogus'");
        let e = parse(&args(&["-e", "trace=nosuchcall", "true"])).unwrap_err();
        assert_eq!(
            e.render("sudtrace"),
            "sudtrace: invalid system call 'nosuchcall'\n"
        );
        assert!(parse(&args(&["-f"])).is_err());
        let e = parse(&args(&["-e", "signal=FOO", "true"])).unwrap_err();
        assert_eq!(e.message, "invalid signal 'FOO'");
        assert!(parse(&args(&["-e", "signal=SIGCHLD,usr1,!9", "true"])).is_err());
        assert!(parse(&args(&["-e", "signal=!SIGCHLD,usr1,9", "true"])).is_ok());
        assert!(parse(&args(&["-p", "1"]))
            .unwrap_err()
            .message
            .starts_with("-p is not supported"));
        assert!(parse(&args(&["-V"])).unwrap().version);
        assert_eq!(
            parse(&args(&["-qq", "true"])).unwrap().program,
            args(&["true"])
        );
        let e = parse(&args(&["-e", "foo=bar", "true"])).unwrap_err();
        assert_eq!(e.message, "invalid system call 'foo=bar'");
        assert!(parse(&args(&["-s", "x", "true"])).is_err());
    }
}
