//! strace's text for one syscall (and a JSON form of the same decoding),
//! built in a fixed buffer: this runs on the trap path, where the traced
//! program may hold malloc's lock, so nothing here allocates. The
//! program's memory is read with `process_vm_readv`, so a bad pointer
//! prints as an address instead of faulting inside the signal handler.
//!
//! Each syscall has a list of argument kinds (`Arg`) chosen to print
//! what strace prints for it: the same number of arguments, flags and
//! enums by name, structures the call reads before it and those it fills
//! after it (the whole line is written when the call has returned).

mod errno;
mod escape;
mod flags;
mod signals;
mod structs;

pub use escape::{forget_pid, own_pid};
pub(crate) use escape::{read_directly, read_memory};
pub(crate) use signals::siginfo;

use escape::{c_string, counted, Quote};
use flags::Unknown;
use std::fmt::Write as _;
use sud_engine::{errno_of, Sysno};

/// Most argv elements shown for execve before `...`.
const MAX_ARGV: usize = 32;

/// The bytes one line may hold; text past the end is cut.
pub const LINE_CAPACITY: usize = 4096;

/// A line of tool output in a fixed buffer; text past the end is cut.
pub struct Line {
    buf: [u8; LINE_CAPACITY],
    len: usize,
}

impl Line {
    /// An empty line.
    pub const fn new() -> Self {
        Line {
            buf: [0; LINE_CAPACITY],
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

    /// Drops the last `n` bytes.
    pub(crate) fn truncate_last(&mut self, n: usize) {
        self.len = self.len.saturating_sub(n);
    }

    /// Pads with spaces up to `column`, as strace aligns ` = result`.
    fn pad_to(&mut self, column: usize) {
        while self.len < column && self.len < self.buf.len() {
            self.buf[self.len] = b' ';
            self.len += 1;
        }
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

/// What the user asked about the decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// `-s N`: most bytes of a string or buffer shown (paths are whole).
    pub string_limit: usize,
    /// `-y`: descriptors followed by their path, `3</etc/passwd>`.
    pub fd_paths: bool,
    /// `-x` (1): non-ASCII strings in hex; `-xx` (2): every string in hex.
    pub hex_strings: u8,
}

impl Style {
    fn quote(&self) -> Quote {
        match self.hex_strings {
            0 => Quote::Strace,
            1 => Quote::HexIfBinary,
            _ => Quote::Hex,
        }
    }
}

impl Default for Style {
    fn default() -> Self {
        Style {
            string_limit: 32,
            fd_paths: false,
            hex_strings: 0,
        }
    }
}

/// How one argument is shown; indices name other arguments of the call.
#[derive(Clone, Copy)]
enum Arg {
    /// Signed 32-bit decimal.
    Int,
    /// Signed 64-bit decimal.
    Long,
    /// Unsigned decimal.
    Ulong,
    /// A file descriptor (`-y` adds its path).
    Fd,
    /// A directory fd of the *at calls: `AT_FDCWD` by name.
    DirFd,
    /// A pointer: `NULL` or hex.
    Ptr,
    /// strace's `%#x`: `0` or hex.
    Hex,
    /// Octal mode, `0644`.
    Mode,
    /// A path, shown whole.
    Path,
    /// A NUL-terminated string, capped by `-s`.
    Str,
    /// A buffer the call reads; its length is the argument at the index.
    InBuf(usize),
    /// A buffer the call fills; the result says how much.
    OutBuf,
    /// Like `OutBuf`, every byte in hex (getrandom).
    OutBufHex,
    /// A path the call fills (getcwd), shown whole.
    OutPath,
    /// statx's flags: the sync type, then the AT_ flags.
    StatxFlags,
    /// socket's protocol, named for the family at the index.
    SockProto(usize),
    /// utimensat's two times.
    Utimes,
    /// fcntl's struct flock.
    Flock,
    /// capget/capset's header.
    CapHeader,
    /// Capability sets the call fills.
    CapDataOut,
    /// Capability sets the call reads.
    CapDataIn,
    /// A flag set.
    Flags(&'static [(u64, &'static str)], &'static str),
    /// An enumeration.
    Enum(&'static [(u64, &'static str)], Unknown),
    OpenFlags,
    AccessMode,
    MapFlags,
    Signal,
    /// A sigset the call reads, of the size at the index.
    SigsetIn(usize),
    /// A sigset the call fills.
    SigsetOut(usize),
    SigactionIn(usize),
    SigactionOut(usize),
    RlimitIn,
    RlimitOut,
    StatOut,
    StatxOut,
    TimespecIn,
    TimespecOut,
    WaitStatusOut,
    /// iovecs the call reads; count at the index.
    IovIn(usize),
    /// iovecs the call fills; count at the index.
    IovOut(usize),
    /// pollfds; count at the index.
    PollFds(usize),
    EpollEventIn,
    /// epoll_wait's events: the result says how many.
    EpollEventsOut,
    /// A socket address the call reads; length at the index.
    SockaddrIn(usize),
    /// A socket address the call fills; length pointer at the index.
    SockaddrOut(usize),
    /// An in-out length, `[16]`.
    LenPtr,
    SockType,
    PipeFds,
    Uname,
    /// getdents64's buffer.
    Dirents,
    /// sched_getaffinity's mask.
    CpuSet,
    Argv,
    Envp,
    CloneFlags,
    /// `name=` and a pointer (clone's labelled arguments).
    Named(&'static str),
    Clone3Args,
    FutexOp,
    IoctlRequest,
    /// ioctl's third argument, by request.
    IoctlData,
    FcntlCmd,
}

use Arg::*;

/// Up to six (kind, value) pairs.
struct Decoded {
    kinds: [Arg; 6],
    values: [u64; 6],
    count: usize,
}

impl Decoded {
    fn new() -> Self {
        Decoded {
            kinds: [Hex; 6],
            values: [0; 6],
            count: 0,
        }
    }

    fn push(&mut self, kind: Arg, value: u64) {
        if self.count < 6 {
            self.kinds[self.count] = kind;
            self.values[self.count] = value;
            self.count += 1;
        }
    }
}

const RES: Arg = Enum(flags::RLIMITS, Unknown::Hex("RLIMIT"));
const WHENCE: Arg = Enum(flags::WHENCE, Unknown::Hex("SEEK"));
const AT: Arg = Flags(flags::AT_NAMES, "0");

/// The argument kinds strace shows for a call with fixed arguments;
/// `None` for the calls decoded case by case in [`decode`].
fn schema(nr: Sysno) -> Option<&'static [Arg]> {
    Some(match nr {
        Sysno::read => &[Fd, OutBuf, Ulong],
        Sysno::pread64 => &[Fd, OutBuf, Ulong, Long],
        Sysno::write => &[Fd, InBuf(2), Ulong],
        Sysno::pwrite64 => &[Fd, InBuf(2), Ulong, Long],
        Sysno::readv => &[Fd, IovOut(2), Int],
        Sysno::writev => &[Fd, IovIn(2), Int],
        Sysno::close | Sysno::fsync | Sysno::fdatasync | Sysno::fchdir | Sysno::dup => &[Fd],
        Sysno::syncfs => &[Fd],
        #[cfg(target_arch = "x86_64")]
        Sysno::dup2 => &[Fd, Fd],
        Sysno::dup3 => &[Fd, Fd, Flags(&[(0o2000000, "O_CLOEXEC")], "0")],
        #[cfg(target_arch = "x86_64")]
        Sysno::stat | Sysno::lstat => &[Path, StatOut],
        Sysno::fstat => &[Fd, StatOut],
        Sysno::newfstatat => &[DirFd, Path, StatOut, AT],
        Sysno::statx => &[
            DirFd,
            Path,
            StatxFlags,
            Flags(flags::STATX_MASK, "0"),
            StatxOut,
        ],
        #[cfg(target_arch = "x86_64")]
        Sysno::access => &[Path, AccessMode],
        Sysno::faccessat => &[DirFd, Path, AccessMode],
        Sysno::faccessat2 => &[DirFd, Path, AccessMode, Flags(flags::ACCESS_AT_NAMES, "0")],
        #[cfg(target_arch = "x86_64")]
        Sysno::readlink => &[Path, OutBuf, Ulong],
        Sysno::readlinkat => &[DirFd, Path, OutBuf, Ulong],
        #[cfg(target_arch = "x86_64")]
        Sysno::unlink | Sysno::rmdir => &[Path],
        Sysno::chdir | Sysno::chroot | Sysno::acct => &[Path],
        Sysno::unlinkat => &[DirFd, Path, AT],
        #[cfg(target_arch = "x86_64")]
        Sysno::mkdir => &[Path, Mode],
        Sysno::mkdirat => &[DirFd, Path, Mode],
        #[cfg(target_arch = "x86_64")]
        Sysno::rename => &[Path, Path],
        Sysno::renameat => &[DirFd, Path, DirFd, Path],
        Sysno::renameat2 => &[
            DirFd,
            Path,
            DirFd,
            Path,
            Flags(
                &[
                    (1, "RENAME_NOREPLACE"),
                    (2, "RENAME_EXCHANGE"),
                    (4, "RENAME_WHITEOUT"),
                ],
                "0",
            ),
        ],
        #[cfg(target_arch = "x86_64")]
        Sysno::chmod => &[Path, Mode],
        #[cfg(target_arch = "x86_64")]
        Sysno::creat => &[Path, Mode],
        Sysno::fchmod => &[Fd, Mode],
        Sysno::fchmodat => &[DirFd, Path, Mode],
        Sysno::truncate => &[Path, Long],
        Sysno::ftruncate => &[Fd, Long],
        Sysno::getdents64 => &[Fd, Dirents, Ulong],
        Sysno::lseek => &[Fd, Long, WHENCE],
        Sysno::mmap => &[
            Ptr,
            Ulong,
            Flags(flags::PROT_NAMES, "PROT_NONE"),
            MapFlags,
            Fd,
            Hex,
        ],
        Sysno::mprotect | Sysno::pkey_mprotect => {
            &[Ptr, Ulong, Flags(flags::PROT_NAMES, "PROT_NONE")]
        }
        Sysno::munmap => &[Ptr, Ulong],
        Sysno::mremap => &[Ptr, Ulong, Ulong, Flags(flags::MREMAP_NAMES, "0"), Ptr],
        Sysno::madvise => &[Ptr, Ulong, Enum(flags::MADVISE, Unknown::Hex("MADV"))],
        Sysno::brk => &[Ptr],
        #[cfg(target_arch = "x86_64")]
        Sysno::pipe => &[PipeFds],
        Sysno::pipe2 => &[PipeFds, Flags(flags::PIPE_FLAGS, "0")],
        Sysno::clone3 => &[Clone3Args, Ulong],
        #[cfg(target_arch = "x86_64")]
        Sysno::fork | Sysno::vfork => &[],
        Sysno::getpid
        | Sysno::getppid
        | Sysno::gettid
        | Sysno::getuid
        | Sysno::geteuid
        | Sysno::getgid
        | Sysno::getegid
        | Sysno::sched_yield
        | Sysno::setsid
        | Sysno::sync
        | Sysno::rt_sigreturn
        | Sysno::munlockall => &[],
        #[cfg(target_arch = "x86_64")]
        Sysno::getpgrp | Sysno::pause => &[],
        Sysno::getpgid | Sysno::getsid => &[Int],
        Sysno::setpgid => &[Int, Int],
        Sysno::setuid | Sysno::setgid => &[Int],
        Sysno::execve => &[Path, Argv, Envp],
        Sysno::execveat => &[DirFd, Path, Argv, Envp, AT],
        Sysno::exit | Sysno::exit_group => &[Int],
        Sysno::wait4 => &[Int, WaitStatusOut, Flags(flags::WAIT_OPTIONS, "0"), Ptr],
        Sysno::kill => &[Int, Signal],
        Sysno::tkill => &[Int, Signal],
        Sysno::tgkill => &[Int, Int, Signal],
        Sysno::rt_sigaction => &[Signal, SigactionIn(3), SigactionOut(3), Ulong],
        Sysno::rt_sigprocmask => &[
            Enum(flags::SIGPROCMASK_HOW, Unknown::Hex("SIG")),
            SigsetIn(3),
            SigsetOut(3),
            Ulong,
        ],
        Sysno::rt_sigsuspend => &[SigsetIn(1), Ulong],
        Sysno::sigaltstack => &[Ptr, Ptr],
        Sysno::set_tid_address => &[Ptr],
        Sysno::set_robust_list => &[Ptr, Ulong],
        Sysno::rseq => &[Ptr, Hex, Int, Hex],
        #[cfg(target_arch = "x86_64")]
        Sysno::arch_prctl => &[Enum(flags::ARCH_PRCTL, Unknown::Hex("ARCH")), Hex],
        Sysno::prlimit64 => &[Int, RES, RlimitIn, RlimitOut],
        Sysno::getrlimit => &[RES, RlimitOut],
        Sysno::setrlimit => &[RES, RlimitIn],
        Sysno::getrandom => &[OutBufHex, Ulong, Flags(flags::GRND_FLAGS, "0")],
        Sysno::uname => &[Uname],
        Sysno::getcwd => &[OutPath, Ulong],
        Sysno::umask => &[Mode],
        Sysno::socket => &[
            Enum(flags::ADDRESS_FAMILIES, Unknown::Int),
            SockType,
            SockProto(0),
        ],
        Sysno::socketpair => &[
            Enum(flags::ADDRESS_FAMILIES, Unknown::Int),
            SockType,
            Int,
            PipeFds,
        ],
        Sysno::connect | Sysno::bind => &[Fd, SockaddrIn(2), Ulong],
        Sysno::getsockname | Sysno::getpeername => &[Fd, SockaddrOut(2), LenPtr],
        Sysno::accept => &[Fd, SockaddrOut(2), LenPtr],
        Sysno::accept4 => &[
            Fd,
            SockaddrOut(2),
            LenPtr,
            Flags(
                &[(0o4000, "SOCK_NONBLOCK"), (0o2000000, "SOCK_CLOEXEC")],
                "0",
            ),
        ],
        Sysno::listen => &[Fd, Int],
        Sysno::shutdown => &[
            Fd,
            Enum(
                &[(0, "SHUT_RD"), (1, "SHUT_WR"), (2, "SHUT_RDWR")],
                Unknown::Int,
            ),
        ],
        Sysno::sendto => &[
            Fd,
            InBuf(2),
            Ulong,
            Flags(flags::MSG_FLAGS, "0"),
            SockaddrIn(5),
            Ulong,
        ],
        Sysno::recvfrom => &[
            Fd,
            OutBuf,
            Ulong,
            Flags(flags::MSG_FLAGS, "0"),
            SockaddrOut(5),
            LenPtr,
        ],
        Sysno::setsockopt => &[
            Fd,
            Enum(flags::SOL_LEVELS, Unknown::Int),
            Enum(flags::SOCKET_OPTIONS, Unknown::Int),
            Ptr,
            Ulong,
        ],
        #[cfg(target_arch = "x86_64")]
        Sysno::poll => &[PollFds(1), Ulong, Int],
        Sysno::ppoll => &[PollFds(1), Ulong, TimespecIn, SigsetIn(4), Ulong],
        #[cfg(target_arch = "x86_64")]
        Sysno::select => &[Int, Ptr, Ptr, Ptr, Ptr],
        Sysno::pselect6 => &[Int, Ptr, Ptr, Ptr, TimespecIn, Ptr],
        #[cfg(target_arch = "x86_64")]
        Sysno::epoll_create => &[Int],
        Sysno::epoll_create1 => &[Flags(&[(0o2000000, "EPOLL_CLOEXEC")], "0")],
        Sysno::epoll_ctl => &[
            Fd,
            Enum(flags::EPOLL_CTL, Unknown::Hex("EPOLL_CTL")),
            Fd,
            EpollEventIn,
        ],
        #[cfg(target_arch = "x86_64")]
        Sysno::epoll_wait => &[Fd, EpollEventsOut, Int, Int],
        Sysno::epoll_pwait => &[Fd, EpollEventsOut, Int, Int, SigsetIn(5), Ulong],
        Sysno::eventfd2 => &[Ulong, Flags(flags::EFD_FLAGS, "0")],
        Sysno::memfd_create => &[Str, Flags(flags::MFD_FLAGS, "0")],
        Sysno::nanosleep => &[TimespecIn, Ptr],
        Sysno::clock_nanosleep => &[
            Enum(flags::CLOCKS, Unknown::Int),
            Flags(&[(1, "TIMER_ABSTIME")], "0"),
            TimespecIn,
            Ptr,
        ],
        Sysno::clock_gettime | Sysno::clock_getres => {
            &[Enum(flags::CLOCKS, Unknown::Int), TimespecOut]
        }
        Sysno::sendfile => &[Fd, Fd, Ptr, Ulong],
        Sysno::copy_file_range => &[Fd, Ptr, Fd, Ptr, Ulong, Int],
        Sysno::fadvise64 => &[Fd, Long, Long, Enum(flags::FADVISE, Unknown::Int)],
        Sysno::fallocate => &[Fd, Int, Long, Long],
        Sysno::close_range => &[Fd, Fd, Int],
        Sysno::utimensat => &[DirFd, Path, Utimes, AT],
        Sysno::fchown => &[Fd, Int, Int],
        #[cfg(target_arch = "x86_64")]
        Sysno::chown | Sysno::lchown => &[Path, Int, Int],
        Sysno::fchownat => &[DirFd, Path, Int, Int, AT],
        #[cfg(target_arch = "x86_64")]
        Sysno::symlink => &[Path, Path],
        Sysno::symlinkat => &[Path, DirFd, Path],
        #[cfg(target_arch = "x86_64")]
        Sysno::link => &[Path, Path],
        Sysno::linkat => &[DirFd, Path, DirFd, Path, AT],
        Sysno::statfs => &[Path, Ptr],
        Sysno::fstatfs => &[Fd, Ptr],
        Sysno::getxattr | Sysno::lgetxattr => &[Path, Str, OutBuf, Ulong],
        Sysno::fgetxattr => &[Fd, Str, OutBuf, Ulong],
        Sysno::setxattr | Sysno::lsetxattr => &[Path, Str, InBuf(3), Ulong, Int],
        Sysno::listxattr | Sysno::llistxattr => &[Path, Ptr, Ulong],
        Sysno::flistxattr => &[Fd, Ptr, Ulong],
        Sysno::sched_getaffinity => &[Int, Ulong, CpuSet],
        Sysno::sched_setaffinity => &[Int, Ulong, Ptr],
        Sysno::sysinfo => &[Ptr],
        Sysno::getrusage => &[Int, Ptr],
        Sysno::times => &[Ptr],
        Sysno::flock => &[
            Fd,
            Flags(
                &[
                    (1, "LOCK_SH"),
                    (2, "LOCK_EX"),
                    (4, "LOCK_NB"),
                    (8, "LOCK_UN"),
                ],
                "0",
            ),
        ],
        Sysno::getgroups | Sysno::setgroups => &[Int, Ptr],
        Sysno::getresuid | Sysno::getresgid => &[Ptr, Ptr, Ptr],
        Sysno::membarrier => &[Int, Int, Int],
        Sysno::capget => &[CapHeader, CapDataOut],
        Sysno::capset => &[CapHeader, CapDataIn],
        Sysno::pkey_alloc => &[
            Hex,
            Flags(
                &[(1, "PKEY_DISABLE_ACCESS"), (2, "PKEY_DISABLE_WRITE")],
                "0",
            ),
        ],
        Sysno::pkey_free => &[Int],
        Sysno::pidfd_open => &[Int, Int],
        Sysno::inotify_init1 => &[Flags(
            &[(0o4000, "IN_NONBLOCK"), (0o2000000, "IN_CLOEXEC")],
            "0",
        )],
        Sysno::timerfd_create => &[
            Enum(flags::CLOCKS, Unknown::Int),
            Flags(&[(0o4000, "TFD_NONBLOCK"), (0o2000000, "TFD_CLOEXEC")], "0"),
        ],
        _ => return None,
    })
}

/// The arguments of one call as strace shows them.
fn decode(sysno: Sysno, args: &[u64; 6]) -> Decoded {
    let mut d = Decoded::new();
    if let Some(kinds) = schema(sysno) {
        for (i, kind) in kinds.iter().enumerate() {
            d.push(*kind, args[i]);
        }
        return d;
    }
    match sysno {
        #[cfg(target_arch = "x86_64")]
        Sysno::open => {
            d.push(Path, args[0]);
            d.push(OpenFlags, args[1]);
            if takes_mode(args[1]) {
                d.push(Mode, args[2]);
            }
        }
        Sysno::openat => {
            d.push(DirFd, args[0]);
            d.push(Path, args[1]);
            d.push(OpenFlags, args[2]);
            if takes_mode(args[2]) {
                d.push(Mode, args[3]);
            }
        }
        Sysno::futex => {
            d.push(Ptr, args[0]);
            d.push(FutexOp, args[1]);
            let cmd = args[1] & 0x7f;
            d.push(Int, args[2]);
            match cmd {
                // WAIT: timeout.
                0 => d.push(TimespecIn, args[3]),
                // WAIT_BITSET, WAKE_BITSET: timeout, bitset (no uaddr2).
                9 | 10 => {
                    d.push(if cmd == 9 { TimespecIn } else { Ptr }, args[3]);
                    d.push(
                        Enum(&[(0xffff_ffff, "FUTEX_BITSET_MATCH_ANY")], Unknown::Int),
                        args[5] & 0xffff_ffff,
                    );
                }
                3 => {
                    d.push(Int, args[3]);
                    d.push(Ptr, args[4]);
                }
                4 | 5 | 12 => {
                    d.push(Int, args[3]);
                    d.push(Ptr, args[4]);
                    d.push(Int, args[5]);
                }
                6 | 11 | 13 => d.push(TimespecIn, args[3]),
                _ => {}
            }
        }
        Sysno::clone => {
            // x86-64 order: flags, stack, parent_tid, child_tid, tls.
            d.push(Named("child_stack"), args[1]);
            d.push(CloneFlags, args[0]);
            let flags = args[0];
            if flags & libc::CLONE_PARENT_SETTID as u64 != 0 {
                d.push(Named("parent_tid"), args[2]);
            }
            if flags & (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64 != 0 {
                d.push(Named("child_tidptr"), args[3]);
            }
            if flags & libc::CLONE_SETTLS as u64 != 0 {
                d.push(Named("tls"), args[4]);
            }
        }
        Sysno::fcntl => {
            d.push(Fd, args[0]);
            d.push(FcntlCmd, args[1]);
            match args[1] as i32 {
                libc::F_GETFD
                | libc::F_GETFL
                | libc::F_GETOWN
                | libc::F_GETLEASE
                | libc::F_GETPIPE_SZ
                | libc::F_GET_SEALS => {}
                libc::F_SETFD => d.push(Flags(flags::FD_FLAGS, "0"), args[2]),
                libc::F_SETFL => d.push(OpenFlags, args[2]),
                libc::F_DUPFD | libc::F_DUPFD_CLOEXEC | libc::F_SETOWN | libc::F_SETPIPE_SZ => {
                    d.push(Int, args[2])
                }
                libc::F_SETLK
                | libc::F_SETLKW
                | libc::F_GETLK
                | libc::F_OFD_SETLK
                | libc::F_OFD_SETLKW
                | libc::F_OFD_GETLK => d.push(Flock, args[2]),
                _ => d.push(Ptr, args[2]),
            }
        }
        Sysno::ioctl => {
            d.push(Fd, args[0]);
            d.push(IoctlRequest, args[1]);
            d.push(IoctlData, args[2]);
        }
        Sysno::prctl => {
            d.push(Enum(flags::PRCTL, Unknown::Hex("PR")), args[0]);
            match args[0] as i32 {
                libc::PR_SET_NAME | libc::PR_GET_NAME => d.push(Str, args[1]),
                libc::PR_GET_DUMPABLE
                | libc::PR_GET_KEEPCAPS
                | libc::PR_GET_SECCOMP
                | libc::PR_GET_TIMERSLACK
                | libc::PR_GET_NO_NEW_PRIVS => {}
                _ => {
                    for &a in &args[1..5] {
                        d.push(Hex, a);
                    }
                }
            }
        }
        _ => {
            for &a in &args[..3] {
                d.push(Hex, a);
            }
        }
    }
    d
}

fn takes_mode(flags: u64) -> bool {
    let flags = flags as i32;
    flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE
}

/// Everything [`format_arg`] needs besides the argument itself.
struct Ctx<'a> {
    args: &'a [u64; 6],
    result: Option<i64>,
    style: &'a Style,
}

impl Ctx<'_> {
    /// The result when the call succeeded.
    fn ok(&self) -> Option<i64> {
        self.result.filter(|&r| errno_of(r).is_none())
    }
}

/// Writes `name(args`, without the closing parenthesis.
pub fn format_call(line: &mut Line, style: &Style, nr: u64, args: &[u64; 6], result: Option<i64>) {
    let Some(sysno) = usize::try_from(nr).ok().and_then(Sysno::new) else {
        let _ = write!(
            line,
            "syscall_{nr:#x}({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x}",
            args[0], args[1], args[2], args[3], args[4], args[5]
        );
        return;
    };
    line.push_bytes(sysno.name().as_bytes());
    line.push_bytes(b"(");
    let decoded = decode(sysno, args);
    let ctx = Ctx {
        args,
        result,
        style,
    };
    for i in 0..decoded.count {
        if i > 0 {
            line.push_bytes(b", ");
        }
        format_arg(line, &ctx, decoded.kinds[i], decoded.values[i]);
    }
}

/// The column strace aligns ` = result` at.
const RESULT_COLUMN: usize = 40;

/// Writes `) = result` aligned as strace does, with errno name and text
/// for failures and the decoded value for calls that return flags.
/// `line_start` is where this line began in `line` (`usize::MAX`: no
/// padding).
pub fn format_result(
    line: &mut Line,
    style: &Style,
    nr: u64,
    args: &[u64; 6],
    result: Option<i64>,
    line_start: usize,
) {
    line.push_bytes(b") ");
    if let Some(column) = line_start.checked_add(RESULT_COLUMN) {
        line.pad_to(column);
    }
    line.push_bytes(b"= ");
    let Some(r) = result else {
        line.push_bytes(b"?");
        return;
    };
    if let Some(e) = errno_of(r) {
        let n = e.into_raw();
        match errno::internal_name(n) {
            // Interrupted calls the kernel restarts: strace shows no value.
            Some(name) => {
                line.truncate_last(2);
                let _ = write!(line, "= ? {name}");
            }
            None => {
                let _ = write!(line, "-1 {}", e.name().unwrap_or("E?"));
            }
        }
        if let Some(text) = errno::message(n) {
            let _ = write!(line, " ({text})");
        }
        return;
    }
    let sysno = usize::try_from(nr).ok().and_then(Sysno::new);
    match sysno {
        Some(Sysno::mmap | Sysno::brk | Sysno::mremap) => {
            let _ = write!(line, "{r:#x}");
        }
        Some(Sysno::umask) => flags::octal(line, r as u64),
        Some(Sysno::fcntl) if matches!(args[1] as i32, libc::F_GETFL | libc::F_GETFD) => {
            if r == 0 && args[1] as i32 == libc::F_GETFD {
                line.push_bytes(b"0");
                return;
            }
            if r == 0 {
                line.push_bytes(b"0 (flags ");
            } else {
                let _ = write!(line, "{r:#x} (flags ");
            }
            if args[1] as i32 == libc::F_GETFL {
                flags::open_flags(line, r as u64);
            } else {
                flags::flags(line, r as u64, flags::FD_FLAGS, "0");
            }
            line.push_bytes(b")");
        }
        Some(s) if style.fd_paths && returns_fd(s, args) => {
            fd(line, style, r as u64);
        }
        Some(s) if is_poll(s) => {
            // strace adds the descriptors that have events, or "Timeout".
            let _ = write!(line, "{r}");
            if r == 0 {
                line.push_bytes(b" (Timeout)");
            } else {
                line.push_bytes(b" (");
                structs::pollfds(line, args[0], args[1], true);
                line.push_bytes(b")");
            }
        }
        _ => {
            let _ = write!(line, "{r}");
        }
    }
}

fn is_poll(sysno: Sysno) -> bool {
    #[cfg(target_arch = "x86_64")]
    if sysno == Sysno::poll {
        return true;
    }
    sysno == Sysno::ppoll
}

fn returns_fd(sysno: Sysno, args: &[u64; 6]) -> bool {
    match sysno {
        Sysno::openat
        | Sysno::dup
        | Sysno::dup3
        | Sysno::socket
        | Sysno::accept
        | Sysno::accept4 => true,
        Sysno::epoll_create1 | Sysno::eventfd2 | Sysno::memfd_create | Sysno::pidfd_open => true,
        #[cfg(target_arch = "x86_64")]
        Sysno::open | Sysno::creat | Sysno::dup2 => true,
        Sysno::fcntl => matches!(args[1] as i32, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC),
        _ => false,
    }
}

/// The whole strace line of one call, without prefix or newline.
pub fn format_syscall(
    line: &mut Line,
    style: &Style,
    nr: u64,
    args: &[u64; 6],
    result: Option<i64>,
    line_start: usize,
) {
    format_call(line, style, nr, args, result);
    format_result(line, style, nr, args, result, line_start);
}

fn format_arg(line: &mut Line, ctx: &Ctx, kind: Arg, value: u64) {
    let limit = ctx.style.string_limit;
    match kind {
        Int => {
            let _ = write!(line, "{}", value as i32);
        }
        Long => {
            let _ = write!(line, "{}", value as i64);
        }
        Ulong => {
            let _ = write!(line, "{value}");
        }
        Fd => fd(line, ctx.style, value),
        DirFd => {
            if value as i32 == libc::AT_FDCWD {
                line.push_bytes(b"AT_FDCWD");
            } else {
                fd(line, ctx.style, value);
            }
        }
        Ptr => hex(line, value),
        Hex => {
            if value == 0 {
                line.push_bytes(b"0");
            } else {
                let _ = write!(line, "{value:#x}");
            }
        }
        Mode => flags::octal(line, value),
        Path => c_string(line, value, None, ctx.style.quote()),
        Str => c_string(line, value, Some(limit), ctx.style.quote()),
        InBuf(len_index) => counted(
            line,
            value,
            ctx.args[len_index] as usize,
            limit,
            ctx.style.quote(),
        ),
        OutBuf | OutBufHex => match ctx.ok() {
            Some(n) => {
                let quote = if matches!(kind, OutBufHex) {
                    Quote::Hex
                } else {
                    ctx.style.quote()
                };
                counted(line, value, n as usize, limit, quote)
            }
            None => hex(line, value),
        },
        OutPath => match ctx.ok() {
            Some(_) => c_string(line, value, None, ctx.style.quote()),
            None => hex(line, value),
        },
        StatxFlags => {
            let sync = match value & 0x6000 {
                0 => "AT_STATX_SYNC_AS_STAT",
                0x2000 => "AT_STATX_FORCE_SYNC",
                0x4000 => "AT_STATX_DONT_SYNC",
                _ => "AT_STATX_SYNC_TYPE",
            };
            line.push_bytes(sync.as_bytes());
            if value & !0x6000 != 0 {
                line.push_bytes(b"|");
                flags::flags(line, value & !0x6000, flags::STATX_AT_NAMES, "");
            }
        }
        SockProto(family) => match ctx.args[family] as i32 {
            libc::AF_INET | libc::AF_INET6 => {
                flags::enumeration(line, value, flags::IP_PROTOCOLS, Unknown::Int)
            }
            _ => {
                let _ = write!(line, "{}", value as i32);
            }
        },
        Utimes => structs::utimes(line, value),
        CapHeader => structs::cap_header(line, value),
        CapDataOut => out(line, ctx, value, structs::cap_data),
        CapDataIn => structs::cap_data(line, value),
        Flock => {
            let getlk = matches!(ctx.args[1] as i32, libc::F_GETLK | libc::F_OFD_GETLK);
            structs::flock(line, value, getlk && ctx.ok().is_some())
        }
        Flags(names, zero) => flags::flags(line, value, names, zero),
        Enum(names, unknown) => flags::enumeration(line, value, names, unknown),
        OpenFlags => flags::open_flags(line, value),
        AccessMode => flags::access_mode(line, value),
        MapFlags => flags::map_flags(line, value),
        Signal => flags::signal_name(line, value),
        SigsetIn(size) => structs::sigset_at(line, value, ctx.args[size] as usize),
        SigsetOut(size) => match ctx.ok() {
            Some(_) => structs::sigset_at(line, value, ctx.args[size] as usize),
            None => hex(line, value),
        },
        SigactionIn(size) => {
            if value == 0 {
                line.push_bytes(b"NULL");
            } else {
                structs::sigaction(line, value, ctx.args[size] as usize)
            }
        }
        SigactionOut(size) => match ctx.ok() {
            Some(_) if value != 0 => structs::sigaction(line, value, ctx.args[size] as usize),
            _ => hex(line, value),
        },
        RlimitIn => {
            if value == 0 {
                line.push_bytes(b"NULL");
            } else {
                structs::rlimit(line, value)
            }
        }
        RlimitOut => out(line, ctx, value, structs::rlimit),
        StatOut => out(line, ctx, value, structs::stat),
        StatxOut => out(line, ctx, value, structs::statx),
        TimespecIn => {
            if value == 0 {
                line.push_bytes(b"NULL");
            } else {
                structs::timespec(line, value)
            }
        }
        TimespecOut => out(line, ctx, value, structs::timespec),
        WaitStatusOut => match ctx.ok() {
            Some(r) if r > 0 && value != 0 => structs::wait_status_at(line, value),
            _ => hex(line, value),
        },
        IovIn(count) => structs::iovec(
            line,
            value,
            ctx.args[count],
            Some(u64::MAX),
            limit,
            ctx.style.quote(),
        ),
        IovOut(count) => match ctx.ok() {
            Some(n) => structs::iovec(
                line,
                value,
                ctx.args[count],
                Some(n as u64),
                limit,
                ctx.style.quote(),
            ),
            None => structs::iovec(line, value, ctx.args[count], None, limit, ctx.style.quote()),
        },
        PollFds(count) => {
            structs::pollfds(line, value, ctx.args[count], false);
        }
        EpollEventIn => {
            if value == 0 {
                line.push_bytes(b"NULL");
            } else {
                structs::epoll_event(line, value)
            }
        }
        EpollEventsOut => match ctx.ok() {
            Some(n) => structs::epoll_events(line, value, n as u64),
            None => hex(line, value),
        },
        SockaddrIn(len) => structs::sockaddr(line, value, ctx.args[len]),
        SockaddrOut(len_ptr) => match ctx.ok() {
            Some(_) if value != 0 => {
                let len = escape::read_value::<u32>(ctx.args[len_ptr]).unwrap_or(0);
                structs::sockaddr(line, value, u64::from(len))
            }
            _ => hex(line, value),
        },
        LenPtr => {
            if value == 0 {
                line.push_bytes(b"NULL");
            } else {
                structs::int_in_brackets(line, value)
            }
        }
        SockType => flags::socket_type(line, value),
        PipeFds => out(line, ctx, value, structs::int_pair),
        Uname => out(line, ctx, value, structs::uname),
        Dirents => match ctx.ok() {
            Some(n) => structs::dirents(line, value, n as u64),
            None => hex(line, value),
        },
        CpuSet => match ctx.ok() {
            Some(n) => structs::cpu_set(line, value, n as u64),
            None => hex(line, value),
        },
        Argv => argv(line, value, limit, ctx.style.quote()),
        Envp => {
            hex(line, value);
            if value != 0 {
                let _ = write!(line, " /* {} vars */", count_env(value));
            }
        }
        CloneFlags => {
            line.push_bytes(b"flags=");
            flags::clone_flags(line, value);
        }
        Named(name) => {
            line.push_bytes(name.as_bytes());
            line.push_bytes(b"=");
            hex(line, value);
        }
        Clone3Args => structs::clone_args(line, value, ctx.args[1], ctx.result),
        FutexOp => flags::futex_op(line, value),
        FcntlCmd => flags::enumeration(line, value, flags::FCNTL_CMDS, Unknown::Hex("F")),
        IoctlRequest => match flags::IOCTLS
            .iter()
            .find(|(v, _)| *v == value & 0xffff_ffff)
        {
            Some((_, name)) => line.push_bytes(name.as_bytes()),
            None => {
                let _ = write!(line, "{:#x}", value & 0xffff_ffff);
            }
        },
        IoctlData => ioctl_arg(line, ctx, value),
    }
}

/// A structure the call fills: decoded when it succeeded, else its address.
fn out(line: &mut Line, ctx: &Ctx, value: u64, show: fn(&mut Line, u64)) {
    match ctx.ok() {
        Some(_) if value != 0 => show(line, value),
        _ => hex(line, value),
    }
}

fn ioctl_arg(line: &mut Line, ctx: &Ctx, value: u64) {
    let request = ctx.args[1] & 0xffff_ffff;
    match request {
        0x5413 | 0x5414 => {
            if request == 0x5414 || ctx.ok().is_some() {
                structs::winsize(line, value)
            } else {
                hex(line, value)
            }
        }
        0x540f | 0x5410 | 0x5429 | 0x541b => {
            if request == 0x5410 || ctx.ok().is_some() {
                structs::int_in_brackets(line, value)
            } else {
                hex(line, value)
            }
        }
        0x5421 | 0x5452 => structs::int_in_brackets(line, value),
        // FICLONE: the source descriptor.
        0x40049409 => fd(line, ctx.style, value),
        0x5401 if ctx.ok().is_some() => structs::termios(line, value),
        0x5402..=0x5404 => structs::termios(line, value),
        _ => hex(line, value),
    }
}

/// A signal's name (`SIGTERM`), for the tools' own reports.
pub fn signal_name(signal: i32) -> String {
    let mut line = Line::new();
    flags::signal_name(&mut line, signal as u64);
    String::from_utf8_lossy(line.as_bytes()).into_owned()
}

/// `NULL` or `0x...`.
pub(crate) fn hex(line: &mut Line, value: u64) {
    if value == 0 {
        line.push_bytes(b"NULL");
    } else {
        let _ = write!(line, "{value:#x}");
    }
}

/// A descriptor; with `-y`, followed by `<path>`.
fn fd(line: &mut Line, style: &Style, value: u64) {
    let fd = value as i32;
    let _ = write!(line, "{fd}");
    if style.fd_paths && fd >= 0 {
        let mut link = [0u8; 64];
        let mut n = 0;
        for &b in b"/proc/self/fd/" {
            link[n] = b;
            n += 1;
        }
        let mut digits = [0u8; 12];
        let mut d = 0;
        let mut v = fd as u32;
        loop {
            digits[d] = b'0' + (v % 10) as u8;
            d += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for i in (0..d).rev() {
            link[n] = digits[i];
            n += 1;
        }
        let mut target = [0u8; 512];
        // SAFETY: readlinkat with a NUL-terminated path (link is zeroed
        // past `n`) writes at most target.len() bytes into `target`.
        let got = unsafe {
            sud_engine::raw_syscall(
                Sysno::readlinkat.id() as u64,
                [
                    libc::AT_FDCWD as u64,
                    link.as_ptr() as u64,
                    target.as_mut_ptr() as u64,
                    target.len() as u64,
                    0,
                    0,
                ],
            )
        };
        if got > 0 {
            line.push_bytes(b"<");
            escape::escape(line, &target[..got as usize], Quote::Strace, None);
            line.push_bytes(b">");
        }
    }
}

/// Counts an environment's entries, leaving out the two the tools add
/// (the preload and its configuration), so counts match a run without
/// the tool.
fn count_env(addr: u64) -> usize {
    let mut count = 0;
    let mut index = 0u64;
    while index < 100_000 {
        let Some(ptr) = escape::read_value::<u64>(addr.wrapping_add(8 * index)) else {
            break;
        };
        if ptr == 0 {
            break;
        }
        index += 1;
        let mut head = [0u8; 512];
        let n = read_memory(ptr, &mut head);
        let entry = &head[..n];
        let entry = &entry[..entry.iter().position(|&b| b == 0).unwrap_or(n)];
        let ours = entry.starts_with(crate::config::CONFIG_ENV.as_bytes())
            && entry.get(crate::config::CONFIG_ENV.len()) == Some(&b'=')
            || entry.starts_with(b"LD_PRELOAD=")
                && entry
                    .windows(crate::config::PRELOAD_FILE.len())
                    .any(|w| w == crate::config::PRELOAD_FILE.as_bytes());
        if !ours {
            count += 1;
        }
    }
    count
}

fn argv(line: &mut Line, addr: u64, limit: usize, quote: Quote) {
    if addr == 0 {
        line.push_bytes(b"NULL");
        return;
    }
    line.push_bytes(b"[");
    for i in 0..=MAX_ARGV {
        let Some(ptr) = escape::read_value::<u64>(addr.wrapping_add(8 * i as u64)) else {
            if i == 0 {
                line.truncate_last(1);
                return hex(line, addr);
            }
            break;
        };
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
        c_string(line, ptr, Some(limit), quote);
    }
    line.push_bytes(b"]");
}

/// execve's argv as a JSON array of strings.
fn json_argv(line: &mut Line, addr: u64, limit: usize) {
    if addr == 0 {
        return line.push_bytes(b"null");
    }
    line.push_bytes(b"[");
    for i in 0..MAX_ARGV {
        let Some(ptr) =
            escape::read_value::<u64>(addr.wrapping_add(8 * i as u64)).filter(|&p| p != 0)
        else {
            break;
        };
        if i > 0 {
            line.push_bytes(b",");
        }
        c_string(line, ptr, Some(limit), Quote::Json);
    }
    line.push_bytes(b"]");
}

/// The same decoding as JSON: `"args":[...]` values. Integers are JSON
/// numbers, NULL is `null`, strings and buffers are JSON strings of their
/// bytes (cut at `-s`; bytes from 0x80 up as U+0080..U+00FF), execve's
/// argv is an array of such strings, and everything else (flags, structures, pointers) is a JSON string holding
/// strace's text for it.
pub fn format_json_args(
    line: &mut Line,
    style: &Style,
    nr: u64,
    args: &[u64; 6],
    result: Option<i64>,
) {
    line.push_bytes(b"[");
    let Some(sysno) = usize::try_from(nr).ok().and_then(Sysno::new) else {
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                line.push_bytes(b",");
            }
            let _ = write!(line, "{a}");
        }
        line.push_bytes(b"]");
        return;
    };
    let decoded = decode(sysno, args);
    let ctx = Ctx {
        args,
        result,
        style,
    };
    let limit = style.string_limit;
    for i in 0..decoded.count {
        if i > 0 {
            line.push_bytes(b",");
        }
        let value = decoded.values[i];
        match decoded.kinds[i] {
            Int | Fd => {
                let _ = write!(line, "{}", value as i32);
            }
            DirFd if value as i32 != libc::AT_FDCWD => {
                let _ = write!(line, "{}", value as i32);
            }
            Long => {
                let _ = write!(line, "{}", value as i64);
            }
            Ulong => {
                let _ = write!(line, "{value}");
            }
            Ptr | Path | Str | InBuf(_) | OutBuf if value == 0 => line.push_bytes(b"null"),
            Path => c_string(line, value, None, Quote::Json),
            Str => c_string(line, value, Some(limit), Quote::Json),
            InBuf(len) => counted(line, value, args[len] as usize, limit, Quote::Json),
            Argv => json_argv(line, value, limit),
            OutBuf if ctx.ok().is_some() => counted(
                line,
                value,
                ctx.ok().unwrap_or(0) as usize,
                limit,
                Quote::Json,
            ),
            kind => {
                let mut text = Line::new();
                format_arg(&mut text, &ctx, kind, value);
                line.push_bytes(b"\"");
                escape::escape(line, text.as_bytes(), Quote::Json, None);
                line.push_bytes(b"\"");
            }
        }
    }
    line.push_bytes(b"]");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(nr: Sysno, args: [u64; 6], result: Option<i64>) -> String {
        let style = Style::default();
        let mut line = Line::new();
        format_syscall(&mut line, &style, nr.id() as u64, &args, result, 0);
        line.finish();
        String::from_utf8(line.as_bytes().to_vec()).unwrap()
    }

    /// The line with strace's padding collapsed, for short assertions.
    fn flat(nr: Sysno, args: [u64; 6], result: Option<i64>) -> String {
        let line = text(nr, args, result);
        let (call, res) = line.rsplit_once(") ").unwrap_or((&line, ""));
        let res = res.trim_start();
        // Only the padding before '=' is collapsed.
        if res.starts_with('=') {
            format!("{call}) {res}")
        } else {
            line
        }
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
        let long = c"/usr/lib/locale/C.utf8/LC_IDENTIFICATION";
        let args = [libc::AT_FDCWD as u64, long.as_ptr() as u64, flags, 0, 0, 0];
        assert!(text(Sysno::openat, args, Some(3)).contains("LC_IDENTIFICATION\""));
    }

    #[test]
    fn short_lines_are_padded_to_column_40() {
        assert_eq!(
            text(Sysno::close, [3, 0, 0, 0, 0, 0], Some(0)),
            "close(3)                                = 0\n"
        );
        assert_eq!(
            text(Sysno::exit_group, [0; 6], None),
            "exit_group(0)                           = ?\n"
        );
    }

    #[test]
    fn failures_show_errno_name_and_text() {
        let path = c"/nonexistent";
        let args = [path.as_ptr() as u64, 0, 0, 0, 0, 0];
        assert_eq!(
            flat(Sysno::unlink, args, Some(-2)),
            "unlink(\"/nonexistent\") = -1 ENOENT (No such file or directory)\n"
        );
    }

    #[test]
    fn mmap_flags_offset_and_hex_result() {
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let args = [0, 4096, prot, flags, u64::MAX, 0];
        assert_eq!(
            flat(Sysno::mmap, args, Some(0x7f00_0000_0000)),
            "mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000\n"
        );
        let args = [0x1000, 8192, 1, 0x812, 3, 0x7000];
        assert_eq!(
            flat(Sysno::mmap, args, Some(0x1000)),
            "mmap(0x1000, 8192, PROT_READ, MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE, 3, 0x7000) = 0x1000\n"
        );
    }

    #[test]
    fn futex_ops_by_name_with_strace_argument_counts() {
        assert_eq!(
            flat(Sysno::futex, [0x1000, 129, 2147483647, 0, 3, 0], Some(0)),
            "futex(0x1000, FUTEX_WAKE_PRIVATE, 2147483647) = 0\n"
        );
        assert_eq!(
            flat(Sysno::futex, [0x1000, 393, 0, 0, 0, 0xffff_ffff], Some(0)),
            "futex(0x1000, FUTEX_WAIT_BITSET_PRIVATE|FUTEX_CLOCK_REALTIME, 0, NULL, FUTEX_BITSET_MATCH_ANY) = 0\n"
        );
    }

    #[test]
    fn stat_structures_after_the_call() {
        // SAFETY: stat is plain data.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_mode = libc::S_IFREG | 0o644;
        st.st_size = 2996;
        let empty = c"";
        let args = [
            3,
            empty.as_ptr() as u64,
            &st as *const _ as u64,
            0x1000,
            0,
            0,
        ];
        assert_eq!(
            flat(Sysno::newfstatat, args, Some(0)),
            "newfstatat(3, \"\", {st_mode=S_IFREG|0644, st_size=2996, ...}, AT_EMPTY_PATH) = 0\n"
        );
        st.st_mode = libc::S_IFCHR | 0o666;
        st.st_rdev = libc::makedev(1, 3);
        let args = [
            3,
            empty.as_ptr() as u64,
            &st as *const _ as u64,
            0x1000,
            0,
            0,
        ];
        assert!(flat(Sysno::newfstatat, args, Some(0))
            .contains("{st_mode=S_IFCHR|0666, st_rdev=makedev(0x1, 0x3), ...}"));
        // Failed: the address.
        assert!(flat(Sysno::newfstatat, args, Some(-2)).contains(", 0x"));
    }

    #[test]
    fn read_shows_the_bytes_read_and_rlimit_shows_units() {
        let data = b"hello\nworld\n";
        let args = [3, data.as_ptr() as u64, 4096, 0, 0, 0];
        assert_eq!(
            flat(Sysno::read, args, Some(12)),
            "read(3, \"hello\\nworld\\n\", 4096) = 12\n"
        );
        assert_eq!(
            flat(Sysno::read, args, Some(0)),
            "read(3, \"\", 4096) = 0\n"
        );
        let limit = [8192u64 * 1024, u64::MAX];
        let args = [0, 3, 0, limit.as_ptr() as u64, 0, 0];
        assert_eq!(
            flat(Sysno::prlimit64, args, Some(0)),
            "prlimit64(0, RLIMIT_STACK, NULL, {rlim_cur=8192*1024, rlim_max=RLIM64_INFINITY}) = 0\n"
        );
    }

    #[test]
    fn signals_sigsets_and_sigactions() {
        let act = [0x5500u64, 0x0400_0000, 0x7f00, !(3u64 << 31)];
        let args = [libc::SIGCHLD as u64, act.as_ptr() as u64, 0, 8, 0, 0];
        assert_eq!(
            flat(Sysno::rt_sigaction, args, Some(0)),
            "rt_sigaction(SIGCHLD, {sa_handler=0x5500, sa_mask=~[RTMIN RT_1], sa_flags=SA_RESTORER, sa_restorer=0x7f00}, NULL, 8) = 0\n"
        );
        let set = 1u64 << (libc::SIGCHLD - 1);
        let old = 0u64;
        let args = [0, &set as *const _ as u64, &old as *const _ as u64, 8, 0, 0];
        assert_eq!(
            flat(Sysno::rt_sigprocmask, args, Some(0)),
            "rt_sigprocmask(SIG_BLOCK, [CHLD], [], 8) = 0\n"
        );
    }

    #[test]
    fn clone_flags_and_unknown_result() {
        let flags = (libc::CLONE_CHILD_CLEARTID | libc::CLONE_CHILD_SETTID | libc::SIGCHLD) as u64;
        assert_eq!(
            flat(Sysno::clone, [flags, 0, 0, 0x7f10, 0, 0], Some(42)),
            "clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f10) = 42\n"
        );
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
        let line = flat(Sysno::execve, args, Some(-2));
        assert!(
            line.starts_with("execve(\"/bin/ls\", [\"ls\", \"-l\"], 0x"),
            "{line}"
        );
        assert!(line.contains("/* 1 vars */) = -1 ENOENT"), "{line}");
    }

    #[test]
    fn tty_ioctls_decode_termios_and_winsize() {
        // c_iflag, c_oflag, c_cflag, c_lflag of a usual terminal.
        let termios: [u32; 9] = [0o2400, 0o5, 0o277, 0o105073, 0, 0, 0, 0, 0];
        let args = [1, 0x5401, termios.as_ptr() as u64, 0, 0, 0];
        assert_eq!(
            flat(Sysno::ioctl, args, Some(0)),
            "ioctl(1, TCGETS, {c_iflag=ICRNL|IXON, c_oflag=NL0|CR0|TAB0|BS0|VT0|FF0|OPOST|ONLCR, c_cflag=B38400|CS8|CREAD, c_lflag=ISIG|ICANON|ECHO|ECHOE|ECHOK|IEXTEN|ECHOCTL|ECHOKE, ...}) = 0\n"
        );
        assert!(flat(Sysno::ioctl, args, Some(-25)).contains("TCGETS, 0x"));
        let size: [u16; 4] = [24, 80, 0, 0];
        let args = [1, 0x5413, size.as_ptr() as u64, 0, 0, 0];
        assert_eq!(
            flat(Sysno::ioctl, args, Some(0)),
            "ioctl(1, TIOCGWINSZ, {ws_row=24, ws_col=80, ws_xpixel=0, ws_ypixel=0}) = 0\n"
        );
    }

    #[test]
    fn sockaddrs_iovecs_polls_and_wait_statuses() {
        // SAFETY: sockaddr_in is plain data.
        let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sin.sin_family = libc::AF_INET as u16;
        sin.sin_port = 53u16.to_be();
        sin.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let args = [5, &sin as *const _ as u64, 16, 0, 0, 0];
        assert_eq!(
            flat(Sysno::connect, args, Some(-111)),
            "connect(5, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr(\"127.0.0.1\")}, 16) = -1 ECONNREFUSED (Connection refused)\n"
        );
        let mut sun = [0u8; 110];
        sun[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        sun[2..22].copy_from_slice(b"/var/run/nscd/socket");
        let args = [3, sun.as_ptr() as u64, 110, 0, 0, 0];
        assert_eq!(
            flat(Sysno::connect, args, Some(-2)),
            "connect(3, {sa_family=AF_UNIX, sun_path=\"/var/run/nscd/socket\"}, 110) = -1 ENOENT (No such file or directory)\n"
        );
        let (a, b) = (b"xy".as_slice(), b"z....".as_slice());
        let iov = [a.as_ptr() as u64, 2, b.as_ptr() as u64, 5];
        let args = [3, iov.as_ptr() as u64, 2, 0, 0, 0];
        assert_eq!(
            flat(Sysno::readv, args, Some(3)),
            "readv(3, [{iov_base=\"xy\", iov_len=2}, {iov_base=\"z\", iov_len=5}], 2) = 3\n"
        );
        let fds = [libc::pollfd {
            fd: 3,
            events: libc::POLLIN,
            revents: libc::POLLIN | libc::POLLHUP,
        }];
        let args = [fds.as_ptr() as u64, 1, u64::MAX, 0, 0, 0];
        assert_eq!(
            flat(Sysno::poll, args, Some(1)),
            "poll([{fd=3, events=POLLIN}], 1, -1) = 1 ([{fd=3, revents=POLLIN|POLLHUP}])\n"
        );
        assert!(flat(Sysno::poll, args, Some(0)).ends_with("= 0 (Timeout)\n"));
        let status: i32 = 3 << 8;
        let args = [u64::MAX, &status as *const _ as u64, 0, 0, 0, 0];
        assert_eq!(
            flat(Sysno::wait4, args, Some(42)),
            "wait4(-1, [{WIFEXITED(s) && WEXITSTATUS(s) == 3}], 0, NULL) = 42\n"
        );
        let killed: i32 = libc::SIGTERM;
        let args = [42, &killed as *const _ as u64, 1, 0, 0, 0];
        assert_eq!(
            flat(Sysno::wait4, args, Some(42)),
            "wait4(42, [{WIFSIGNALED(s) && WTERMSIG(s) == SIGTERM}], WNOHANG, NULL) = 42\n"
        );
    }

    #[test]
    fn fd_paths_with_y() {
        let style = Style {
            fd_paths: true,
            ..Style::default()
        };
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file) as u64;
        let target = std::fs::read_link("/proc/self/exe").unwrap();
        let mut line = Line::new();
        format_syscall(
            &mut line,
            &style,
            Sysno::close.id() as u64,
            &[fd, 0, 0, 0, 0, 0],
            Some(0),
            0,
        );
        let text = String::from_utf8(line.as_bytes().to_vec()).unwrap();
        assert!(
            text.starts_with(&format!("close({fd}<{}>)", target.display())),
            "{text}"
        );
    }

    #[test]
    fn json_arguments_are_typed() {
        let path = c"/etc/pass\"wd";
        let args = [
            libc::AT_FDCWD as u64,
            path.as_ptr() as u64,
            0o2000000,
            0,
            0,
            0,
        ];
        let mut line = Line::new();
        format_json_args(
            &mut line,
            &Style::default(),
            Sysno::openat.id() as u64,
            &args,
            Some(3),
        );
        assert_eq!(
            std::str::from_utf8(line.as_bytes()).unwrap(),
            r#"["AT_FDCWD","/etc/pass\"wd","O_RDONLY|O_CLOEXEC"]"#
        );
    }
}
