//! strace-style text for one syscall, built in a fixed buffer: this runs on
//! the trap path, where the traced program may hold malloc's lock, so
//! nothing here allocates. Strings are read from the program with
//! `process_vm_readv`, so a bad pointer prints as an address instead of
//! faulting inside the signal handler.

use std::fmt::Write as _;
use sud_engine::{errno_of, Sysno};

/// Longest string argument shown before `...`, as strace does by default.
const MAX_STRING: usize = 32;
/// Most argv elements shown for execve before `...`.
const MAX_ARGV: usize = 16;

/// A line of tool output in a fixed buffer; text past the end is cut.
pub struct Line {
    buf: [u8; 1024],
    len: usize,
}

impl Line {
    /// An empty line.
    pub const fn new() -> Self {
        Line {
            buf: [0; 1024],
            len: 0,
        }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends raw bytes (cut at the end of the buffer).
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    /// Ends the line with a newline, replacing the last byte if it is full.
    pub fn finish(&mut self) {
        if self.len == self.buf.len() {
            self.len -= 1;
        }
        self.buf[self.len] = b'\n';
        self.len += 1;
    }
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push_bytes(s.as_bytes());
        Ok(())
    }
}

/// How one argument is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    /// Signed decimal.
    Int,
    /// A file descriptor.
    Fd,
    /// A directory fd of the *at calls: `AT_FDCWD` by name.
    DirFd,
    /// Hexadecimal (pointers, opaque values).
    Hex,
    /// `AT_*` flags of the *at calls.
    AtFlags,
    /// A NUL-terminated path.
    Path,
    /// A buffer the call reads, whose length is argument `n`.
    InBuf(usize),
    /// A buffer the call fills; its first `result` bytes are shown afterwards.
    OutBuf,
    /// Octal file mode.
    Mode,
    /// open/openat flags.
    OpenFlags,
    /// mmap/mprotect protection.
    Prot,
    /// mmap flags.
    MapFlags,
    /// clone flags.
    CloneFlags,
    /// A signal number.
    Signal,
    /// execve's argv.
    Argv,
    /// execve's envp (shown as a count).
    Envp,
}

use Arg::*;

/// The arguments strace shows for the common calls; others show their
/// first three arguments in hex.
fn schema(nr: Sysno) -> &'static [Arg] {
    match nr {
        Sysno::read | Sysno::pread64 => {
            &[Fd, OutBuf, Int, Int][..if nr == Sysno::read { 3 } else { 4 }]
        }
        Sysno::write | Sysno::pwrite64 => {
            &[Fd, InBuf(2), Int, Int][..if nr == Sysno::write { 3 } else { 4 }]
        }
        #[cfg(target_arch = "x86_64")]
        Sysno::open => &[Path, OpenFlags, Mode],
        Sysno::openat => &[DirFd, Path, OpenFlags, Mode],
        Sysno::close | Sysno::fsync | Sysno::fdatasync | Sysno::fchdir => &[Fd],
        Sysno::dup => &[Fd],
        #[cfg(target_arch = "x86_64")]
        Sysno::dup2 => &[Fd, Fd],
        Sysno::dup3 => &[Fd, Fd, Hex],
        #[cfg(target_arch = "x86_64")]
        Sysno::stat | Sysno::lstat => &[Path, Hex],
        Sysno::fstat => &[Fd, Hex],
        Sysno::newfstatat => &[DirFd, Path, Hex, AtFlags],
        Sysno::statx => &[DirFd, Path, AtFlags, Hex, Hex],
        #[cfg(target_arch = "x86_64")]
        Sysno::access => &[Path, Int],
        Sysno::faccessat | Sysno::faccessat2 => &[DirFd, Path, Int, AtFlags],
        #[cfg(target_arch = "x86_64")]
        Sysno::readlink => &[Path, Hex, Int],
        Sysno::readlinkat => &[DirFd, Path, Hex, Int],
        #[cfg(target_arch = "x86_64")]
        Sysno::unlink | Sysno::rmdir => &[Path],
        Sysno::chdir | Sysno::chroot => &[Path],
        Sysno::unlinkat => &[DirFd, Path, AtFlags],
        #[cfg(target_arch = "x86_64")]
        Sysno::mkdir => &[Path, Mode],
        Sysno::mkdirat => &[DirFd, Path, Mode],
        #[cfg(target_arch = "x86_64")]
        Sysno::rename => &[Path, Path],
        Sysno::renameat | Sysno::renameat2 => &[DirFd, Path, DirFd, Path],
        #[cfg(target_arch = "x86_64")]
        Sysno::chmod => &[Path, Mode],
        Sysno::fchmod => &[Fd, Mode],
        Sysno::fchmodat => &[DirFd, Path, Mode],
        Sysno::truncate => &[Path, Int],
        Sysno::getdents64 => &[Fd, Hex, Int],
        Sysno::lseek => &[Fd, Int, Int],
        Sysno::mmap => &[Hex, Int, Prot, MapFlags, Fd, Hex],
        Sysno::mprotect => &[Hex, Int, Prot],
        Sysno::munmap => &[Hex, Int],
        Sysno::brk => &[Hex],
        Sysno::ioctl | Sysno::fcntl => &[Fd, Hex, Hex],
        #[cfg(target_arch = "x86_64")]
        Sysno::pipe => &[Hex],
        Sysno::pipe2 => &[Hex, Hex],
        Sysno::clone => &[CloneFlags, Hex, Hex, Hex, Hex],
        Sysno::clone3 => &[Hex, Int],
        #[cfg(target_arch = "x86_64")]
        Sysno::fork | Sysno::vfork => &[],
        Sysno::getpid | Sysno::getppid | Sysno::gettid => &[],
        Sysno::getuid | Sysno::geteuid | Sysno::getgid | Sysno::getegid | Sysno::sched_yield => &[],
        Sysno::execve => &[Path, Argv, Envp],
        Sysno::execveat => &[DirFd, Path, Argv, Envp, AtFlags],
        Sysno::exit | Sysno::exit_group => &[Int],
        Sysno::wait4 => &[Int, Hex, Hex, Hex],
        Sysno::kill => &[Int, Signal],
        Sysno::tgkill => &[Int, Int, Signal],
        Sysno::rt_sigaction => &[Signal, Hex, Hex, Int],
        Sysno::rt_sigprocmask => &[Int, Hex, Hex, Int],
        Sysno::rt_sigreturn => &[],
        Sysno::set_tid_address => &[Hex],
        Sysno::set_robust_list => &[Hex, Int],
        Sysno::rseq => &[Hex, Int, Hex, Hex],
        Sysno::futex => &[Hex, Int, Int, Hex, Hex, Int],
        #[cfg(target_arch = "x86_64")]
        Sysno::arch_prctl => &[Hex, Hex],
        Sysno::prlimit64 => &[Int, Int, Hex, Hex],
        Sysno::getrandom => &[Hex, Int, Hex],
        Sysno::uname | Sysno::sysinfo => &[Hex],
        Sysno::getcwd => &[Hex, Int],
        Sysno::umask => &[Mode],
        Sysno::socket => &[Int, Int, Int],
        Sysno::connect | Sysno::bind => &[Fd, Hex, Int],
        #[cfg(target_arch = "x86_64")]
        Sysno::poll => &[Hex, Int, Int],
        #[cfg(target_arch = "x86_64")]
        Sysno::select => &[Int, Hex, Hex, Hex, Hex],
        Sysno::pselect6 => &[Int, Hex, Hex, Hex, Hex],
        Sysno::nanosleep => &[Hex, Hex],
        Sysno::clock_nanosleep => &[Int, Int, Hex, Hex],
        Sysno::sendfile => &[Fd, Fd, Hex, Int],
        Sysno::copy_file_range => &[Fd, Hex, Fd, Hex, Int, Hex],
        Sysno::fadvise64 => &[Fd, Int, Int, Int],
        Sysno::close_range => &[Fd, Fd, Hex],
        Sysno::utimensat => &[DirFd, Path, Hex, AtFlags],
        Sysno::fchown => &[Fd, Int, Int],
        Sysno::fchownat => &[DirFd, Path, Int, Int, AtFlags],
        #[cfg(target_arch = "x86_64")]
        Sysno::symlink => &[Path, Path],
        Sysno::symlinkat => &[Path, DirFd, Path],
        #[cfg(target_arch = "x86_64")]
        Sysno::link => &[Path, Path],
        Sysno::linkat => &[DirFd, Path, DirFd, Path, AtFlags],
        Sysno::statfs => &[Path, Hex],
        Sysno::fstatfs => &[Fd, Hex],
        Sysno::getxattr | Sysno::lgetxattr => &[Path, Path, Hex, Int],
        Sysno::fgetxattr => &[Fd, Path, Hex, Int],
        _ => &[Hex, Hex, Hex],
    }
}

/// Writes `name(args`, without the closing parenthesis.
pub fn format_call(line: &mut Line, nr: u64, args: &[u64; 6], result: Option<i64>) {
    let Some(sysno) = usize::try_from(nr).ok().and_then(Sysno::new) else {
        let _ = write!(
            line,
            "syscall_{nr:#x}({:#x}, {:#x}, {:#x}",
            args[0], args[1], args[2]
        );
        return;
    };
    line.push_bytes(sysno.name().as_bytes());
    line.push_bytes(b"(");
    let mut kinds = schema(sysno);
    if let [.., OpenFlags, Mode] = kinds {
        // open and openat take a mode only when they may create a file.
        let flags = args[kinds.len() - 2] as i32;
        if flags & (libc::O_CREAT | libc::O_TMPFILE) == 0 {
            kinds = &kinds[..kinds.len() - 1];
        }
    }
    for (i, kind) in kinds.iter().enumerate() {
        if i > 0 {
            line.push_bytes(b", ");
        }
        format_arg(line, *kind, args[i], args, result);
    }
}

/// Writes `) = result`, with errno name and text for failures.
pub fn format_result(line: &mut Line, nr: u64, result: Option<i64>) {
    match result {
        None => line.push_bytes(b") = ?"),
        Some(r) => match errno_of(r) {
            Some(errno) => {
                let _ = write!(line, ") = -1 {}", errno.name().unwrap_or("E?"));
                if let Some(text) = errno.description() {
                    let _ = write!(line, " ({text})");
                }
            }
            None if hex_result(nr) => {
                let _ = write!(line, ") = {r:#x}");
            }
            None => {
                let _ = write!(line, ") = {r}");
            }
        },
    }
}

fn hex_result(nr: u64) -> bool {
    nr == Sysno::mmap.id() as u64 || nr == Sysno::brk.id() as u64 || nr == Sysno::mremap.id() as u64
}

fn format_arg(line: &mut Line, kind: Arg, value: u64, args: &[u64; 6], result: Option<i64>) {
    match kind {
        Int | Fd => {
            let _ = write!(line, "{}", value as i64 as i32 as i64);
        }
        DirFd => {
            if value as i32 == libc::AT_FDCWD {
                line.push_bytes(b"AT_FDCWD");
            } else {
                let _ = write!(line, "{}", value as i32);
            }
        }
        Hex => hex(line, value),
        AtFlags => flag_names(line, value, AT_NAMES, "0"),
        Path => quoted_string(line, value, None),
        InBuf(len_index) => quoted_string(line, value, Some(args[len_index] as usize)),
        OutBuf => match result {
            Some(n) if n > 0 => quoted_string(line, value, Some(n as usize)),
            _ => hex(line, value),
        },
        Mode => {
            let _ = write!(line, "0{value:o}");
        }
        OpenFlags => open_flags(line, value),
        Prot => flag_names(line, value, PROT_NAMES, "PROT_NONE"),
        MapFlags => {
            let kind = match value & 0x3 {
                0x1 => "MAP_SHARED",
                0x2 => "MAP_PRIVATE",
                0x3 => "MAP_SHARED_VALIDATE",
                _ => "0",
            };
            line.push_bytes(kind.as_bytes());
            if value & !0x3 != 0 {
                line.push_bytes(b"|");
                flag_names(line, value & !0x3, MAP_NAMES, "");
            }
        }
        CloneFlags => {
            let signal = value & 0xff;
            let rest = value & !0xff;
            if rest != 0 {
                let _ = write!(line, "flags=");
                flag_names(line, rest, CLONE_NAMES, "");
                if signal != 0 {
                    line.push_bytes(b"|");
                    signal_name(line, signal);
                }
            } else {
                let _ = write!(line, "flags=");
                signal_name(line, signal);
            }
        }
        Signal => signal_name(line, value),
        Argv => argv(line, value),
        Envp => {
            let count = count_pointers(value);
            let _ = write!(line, "{value:#x} /* {count} vars */");
        }
    }
}

fn hex(line: &mut Line, value: u64) {
    if value == 0 {
        line.push_bytes(b"NULL");
    } else {
        let _ = write!(line, "{value:#x}");
    }
}

/// Reads up to `buf.len()` bytes of this process at `addr`; how many it got.
pub(crate) fn read_memory(addr: u64, buf: &mut [u8]) -> usize {
    if addr == 0 || buf.is_empty() {
        return 0;
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: process_vm_readv on our own pid writes at most buf.len()
    // bytes into `buf` and reports a bad remote address as an error
    // instead of faulting. The raw syscall avoids libc's errno and wrapper.
    let n = unsafe {
        syscalls::raw::syscall6(
            Sysno::process_vm_readv as usize,
            syscalls::raw::syscall0(Sysno::getpid as usize),
            &local as *const _ as usize,
            1,
            &remote as *const _ as usize,
            1,
            0,
        )
    } as isize;
    if n > 0 {
        n as usize
    } else {
        // A string that ends just before an unmapped page makes the whole
        // read fail: retry up to the page end.
        let to_page_end = 4096 - (addr as usize & 4095);
        if to_page_end < buf.len() {
            read_memory(addr, &mut buf[..to_page_end])
        } else {
            0
        }
    }
}

/// A C string (`len == None`) or a counted buffer, quoted and escaped.
fn quoted_string(line: &mut Line, addr: u64, len: Option<usize>) {
    if addr == 0 {
        line.push_bytes(b"NULL");
        return;
    }
    let mut bytes = [0u8; MAX_STRING + 1];
    let wanted = len.map_or(MAX_STRING + 1, |l| l.min(MAX_STRING + 1));
    let got = read_memory(addr, &mut bytes[..wanted]);
    if got == 0 && wanted > 0 {
        hex(line, addr);
        return;
    }
    let (shown, cut) = match len {
        None => match bytes[..got].iter().position(|&b| b == 0) {
            Some(end) => (end, false),
            None => (got.min(MAX_STRING), true),
        },
        Some(l) => (got.min(MAX_STRING), l > MAX_STRING),
    };
    line.push_bytes(b"\"");
    for &b in &bytes[..shown] {
        match b {
            b'"' => line.push_bytes(b"\\\""),
            b'\\' => line.push_bytes(b"\\\\"),
            b'\n' => line.push_bytes(b"\\n"),
            b'\t' => line.push_bytes(b"\\t"),
            b'\r' => line.push_bytes(b"\\r"),
            0x20..=0x7e => line.push_bytes(&[b]),
            _ => {
                let _ = write!(line, "\\{b:o}");
            }
        }
    }
    line.push_bytes(b"\"");
    if cut {
        line.push_bytes(b"...");
    }
}

fn count_pointers(addr: u64) -> usize {
    let mut count = 0;
    let mut at = addr;
    while addr != 0 && count < 100_000 {
        let mut word = [0u8; 8];
        if read_memory(at, &mut word) != 8 || u64::from_ne_bytes(word) == 0 {
            break;
        }
        count += 1;
        at += 8;
    }
    count
}

fn argv(line: &mut Line, addr: u64) {
    if addr == 0 {
        line.push_bytes(b"NULL");
        return;
    }
    line.push_bytes(b"[");
    for i in 0..=MAX_ARGV {
        let mut word = [0u8; 8];
        if read_memory(addr + 8 * i as u64, &mut word) != 8 {
            break;
        }
        let ptr = u64::from_ne_bytes(word);
        if ptr == 0 {
            break;
        }
        if i > 0 {
            line.push_bytes(b", ");
        }
        if i == MAX_ARGV {
            line.push_bytes(b"...");
            break;
        }
        quoted_string(line, ptr, None);
    }
    line.push_bytes(b"]");
}

fn flag_names(line: &mut Line, value: u64, names: &[(u64, &str)], zero: &str) {
    if value == 0 {
        line.push_bytes(zero.as_bytes());
        return;
    }
    let mut rest = value;
    let mut first = true;
    for &(bit, name) in names {
        if bit != 0 && rest & bit == bit {
            if !first {
                line.push_bytes(b"|");
            }
            line.push_bytes(name.as_bytes());
            rest &= !bit;
            first = false;
        }
    }
    if rest != 0 {
        if !first {
            line.push_bytes(b"|");
        }
        let _ = write!(line, "{rest:#x}");
    }
}

fn open_flags(line: &mut Line, value: u64) {
    let access = match value & 0x3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    };
    line.push_bytes(access.as_bytes());
    if value & !0x3 != 0 {
        line.push_bytes(b"|");
        flag_names(line, value & !0x3, OPEN_NAMES, "");
    }
}

fn signal_name(line: &mut Line, signal: u64) {
    let name = SIGNAL_NAMES
        .iter()
        .find(|(n, _)| *n == signal)
        .map(|(_, name)| *name);
    match name {
        Some(name) => line.push_bytes(name.as_bytes()),
        None => {
            let _ = write!(line, "{signal}");
        }
    }
}

macro_rules! named {
    ($($name:ident),* $(,)?) => { &[$((libc::$name as u64, stringify!($name))),*] };
}

// O_SYNC includes O_DSYNC's bit, so it comes first.
const OPEN_NAMES: &[(u64, &str)] = named![
    O_CREAT,
    O_EXCL,
    O_NOCTTY,
    O_TRUNC,
    O_APPEND,
    O_NONBLOCK,
    O_SYNC,
    O_DSYNC,
    O_ASYNC,
    O_DIRECT,
    O_LARGEFILE,
    O_DIRECTORY,
    O_NOFOLLOW,
    O_NOATIME,
    O_CLOEXEC,
    O_PATH,
    O_TMPFILE,
];
const AT_NAMES: &[(u64, &str)] = named![
    AT_SYMLINK_NOFOLLOW,
    AT_REMOVEDIR,
    AT_SYMLINK_FOLLOW,
    AT_NO_AUTOMOUNT,
    AT_EMPTY_PATH,
];
const PROT_NAMES: &[(u64, &str)] = named![PROT_READ, PROT_WRITE, PROT_EXEC];
const MAP_NAMES: &[(u64, &str)] = named![
    MAP_FIXED,
    MAP_ANONYMOUS,
    MAP_32BIT,
    MAP_GROWSDOWN,
    MAP_DENYWRITE,
    MAP_EXECUTABLE,
    MAP_LOCKED,
    MAP_NORESERVE,
    MAP_POPULATE,
    MAP_NONBLOCK,
    MAP_STACK,
    MAP_HUGETLB,
    MAP_FIXED_NOREPLACE,
];
const CLONE_NAMES: &[(u64, &str)] = named![
    CLONE_VM,
    CLONE_FS,
    CLONE_FILES,
    CLONE_SIGHAND,
    CLONE_PIDFD,
    CLONE_PTRACE,
    CLONE_VFORK,
    CLONE_PARENT,
    CLONE_THREAD,
    CLONE_NEWNS,
    CLONE_SYSVSEM,
    CLONE_SETTLS,
    CLONE_PARENT_SETTID,
    CLONE_CHILD_CLEARTID,
    CLONE_DETACHED,
    CLONE_UNTRACED,
    CLONE_CHILD_SETTID,
    CLONE_NEWCGROUP,
    CLONE_NEWUTS,
    CLONE_NEWIPC,
    CLONE_NEWUSER,
    CLONE_NEWPID,
    CLONE_NEWNET,
    CLONE_IO,
];
const SIGNAL_NAMES: &[(u64, &str)] = named![
    SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGKILL, SIGUSR1, SIGSEGV,
    SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGSTKFLT, SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN,
    SIGTTOU, SIGURG, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR, SIGSYS,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn text(nr: Sysno, args: [u64; 6], result: Option<i64>) -> String {
        let mut line = Line::new();
        format_call(&mut line, nr.id() as u64, &args, result);
        format_result(&mut line, nr.id() as u64, result);
        line.finish();
        String::from_utf8(line.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn openat_shows_dirfd_path_and_flags() {
        let path = c"/etc/passwd";
        let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
        let args = [libc::AT_FDCWD as u64, path.as_ptr() as u64, flags, 0, 0, 0];
        assert_eq!(
            text(Sysno::openat, args, Some(3)),
            "openat(AT_FDCWD, \"/etc/passwd\", O_RDONLY|O_CLOEXEC) = 3\n"
        );
    }

    #[test]
    fn failures_show_errno_name_and_text() {
        let path = c"/nonexistent";
        let args = [path.as_ptr() as u64, 0, 0, 0, 0, 0];
        assert_eq!(
            text(Sysno::unlink, args, Some(-2)),
            "unlink(\"/nonexistent\") = -1 ENOENT (No such file or directory)\n"
        );
    }

    #[test]
    fn mmap_flags_and_hex_result() {
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let args = [0, 4096, prot, flags, u64::MAX, 0];
        assert_eq!(
            text(Sysno::mmap, args, Some(0x7f00_0000_0000)),
            "mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, NULL) = 0x7f0000000000\n"
        );
    }

    #[test]
    fn clone_flags_and_unknown_result() {
        let flags = (libc::CLONE_VM | libc::CLONE_THREAD) as u64;
        let line = text(Sysno::clone, [flags, 0x1000, 0, 0, 0, 0], None);
        assert!(
            line.starts_with("clone(flags=CLONE_VM|CLONE_THREAD, 0x1000"),
            "{line}"
        );
        assert!(line.ends_with(") = ?\n"), "{line}");
    }

    #[test]
    fn bad_pointers_and_long_buffers() {
        let data = [b'x'; 40];
        let args = [1, data.as_ptr() as u64, 40, 0, 0, 0];
        assert_eq!(
            text(Sysno::write, args, Some(40)),
            format!("write(1, \"{}\"..., 40) = 40\n", "x".repeat(32))
        );
        let args = [8, 0, 0, 0, 0, 0];
        assert_eq!(
            text(Sysno::chdir, [8, 0, 0, 0, 0, 0], Some(-14))
                .split(')')
                .next(),
            Some("chdir(0x8")
        );
        let _ = args;
    }

    #[test]
    fn execve_argv_is_listed() {
        let a0 = c"ls";
        let a1 = c"-l";
        let argv = [a0.as_ptr() as u64, a1.as_ptr() as u64, 0];
        let envp = [a0.as_ptr() as u64, 0];
        let path = c"/bin/ls";
        let args = [
            path.as_ptr() as u64,
            argv.as_ptr() as u64,
            envp.as_ptr() as u64,
            0,
            0,
            0,
        ];
        let line = text(Sysno::execve, args, Some(-2));
        assert!(
            line.starts_with("execve(\"/bin/ls\", [\"ls\", \"-l\"], 0x"),
            "{line}"
        );
        assert!(line.contains("/* 1 vars */) = -1 ENOENT"), "{line}");
    }
}
