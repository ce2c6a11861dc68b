//! Names of flag sets and enumerations, spelled and ordered as strace
//! prints them.

use super::Line;
use std::fmt::Write as _;

macro_rules! named {
    ($($name:ident),* $(,)?) => { &[$((libc::$name as u64, stringify!($name))),*] };
}

/// `A|B|0x40` for the bits of `value` (names in table order), `zero` for 0.
pub(crate) fn flags(line: &mut Line, value: u64, names: &[(u64, &str)], zero: &str) {
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

/// The name of `value` in `names`, or `fallback` applied to it.
pub(crate) fn enumeration(line: &mut Line, value: u64, names: &[(u64, &str)], unknown: Unknown) {
    match names.iter().find(|(v, _)| *v == value) {
        Some((_, name)) => line.push_bytes(name.as_bytes()),
        None => match unknown {
            Unknown::Hex(what) => {
                let _ = write!(line, "{value:#x} /* {what}_??? */");
            }
            Unknown::Int => {
                let _ = write!(line, "{}", value as i64 as i32);
            }
        },
    }
}

/// How an unnamed enumeration value prints.
#[derive(Clone, Copy)]
pub(crate) enum Unknown {
    /// `0x9 /* PREFIX_??? */`, as strace does.
    Hex(&'static str),
    /// Decimal.
    Int,
}

pub(crate) fn open_flags(line: &mut Line, value: u64) {
    let access = match value & 0x3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    };
    line.push_bytes(access.as_bytes());
    // O_TMPFILE contains O_DIRECTORY's bit; strace names it alone.
    let rest = value & !0x3;
    if rest != 0 {
        line.push_bytes(b"|");
        flags(line, rest, OPEN_NAMES, "");
    }
}

pub(crate) fn signal_name(line: &mut Line, signal: u64) {
    match SIGNAL_NAMES.iter().find(|(n, _)| *n == signal) {
        Some((_, name)) => line.push_bytes(name.as_bytes()),
        None if (32..=64).contains(&signal) => {
            if signal == 32 {
                line.push_bytes(b"SIGRTMIN");
            } else {
                let _ = write!(line, "SIGRT_{}", signal - 32);
            }
        }
        None => {
            let _ = write!(line, "{}", signal as i64 as i32);
        }
    }
}

/// A signal set of `bytes` bytes: `[INT CHLD]`, or `~[...]` listing the
/// missing ones when more than half are present, as strace does.
pub(crate) fn sigset(line: &mut Line, set: u64, bytes: usize) {
    let nsig = (bytes.min(8) * 8) as u32;
    let mask = if nsig >= 64 {
        u64::MAX
    } else {
        (1u64 << nsig) - 1
    };
    let set = set & mask;
    let (set, inverted) = if set.count_ones() * 2 > nsig {
        (!set & mask, true)
    } else {
        (set, false)
    };
    line.push_bytes(if inverted { b"~[" } else { b"[" });
    let mut first = true;
    for bit in 0..nsig {
        if set & (1 << bit) == 0 {
            continue;
        }
        if !first {
            line.push_bytes(b" ");
        }
        first = false;
        let signal = u64::from(bit) + 1;
        match SIGNAL_NAMES.iter().find(|(n, _)| *n == signal) {
            Some((_, name)) => line.push_bytes(&name.as_bytes()[3..]),
            None if signal == 32 => line.push_bytes(b"RTMIN"),
            None if signal > 32 => {
                let _ = write!(line, "RT_{}", signal - 32);
            }
            None => {
                let _ = write!(line, "{signal}");
            }
        }
    }
    line.push_bytes(b"]");
}

/// `S_IFREG|0644`, with the set-id and sticky bits by name.
pub(crate) fn file_mode(line: &mut Line, mode: u64) {
    let kind = match mode as u32 & libc::S_IFMT {
        libc::S_IFREG => "S_IFREG",
        libc::S_IFDIR => "S_IFDIR",
        libc::S_IFCHR => "S_IFCHR",
        libc::S_IFBLK => "S_IFBLK",
        libc::S_IFIFO => "S_IFIFO",
        libc::S_IFLNK => "S_IFLNK",
        libc::S_IFSOCK => "S_IFSOCK",
        0 => "",
        _ => "S_IF???",
    };
    line.push_bytes(kind.as_bytes());
    if !kind.is_empty() {
        line.push_bytes(b"|");
    }
    for (bit, name) in [
        (0o4000, "S_ISUID"),
        (0o2000, "S_ISGID"),
        (0o1000, "S_ISVTX"),
    ] {
        if mode & bit != 0 {
            line.push_bytes(name.as_bytes());
            line.push_bytes(b"|");
        }
    }
    octal(line, mode & 0o777);
}

/// strace's `%#03o`: `0644`, `022`, `000`.
pub(crate) fn octal(line: &mut Line, value: u64) {
    if value == 0 {
        line.push_bytes(b"000");
    } else {
        let _ = write!(line, "0{value:02o}");
    }
}

pub(crate) fn access_mode(line: &mut Line, mode: u64) {
    if mode == 0 {
        line.push_bytes(b"F_OK");
    } else {
        flags(line, mode, &[(4, "R_OK"), (2, "W_OK"), (1, "X_OK")], "F_OK");
    }
}

pub(crate) fn map_flags(line: &mut Line, value: u64) {
    let kind = match value & 0x3 {
        0x1 => "MAP_SHARED",
        0x2 => "MAP_PRIVATE",
        0x3 => "MAP_SHARED_VALIDATE",
        _ => "0",
    };
    line.push_bytes(kind.as_bytes());
    if value & !0x3 != 0 {
        line.push_bytes(b"|");
        flags(line, value & !0x3, MAP_NAMES, "");
    }
}

/// clone's flags word: the flags, then the exit signal by name.
pub(crate) fn clone_flags(line: &mut Line, value: u64) {
    let signal = value & 0xff;
    let rest = value & !0xff;
    if rest != 0 {
        flags(line, rest, CLONE_NAMES, "");
        if signal != 0 {
            line.push_bytes(b"|");
        }
    }
    if signal != 0 || rest == 0 {
        signal_name(line, signal);
    }
}

pub(crate) fn futex_op(line: &mut Line, op: u64) {
    let cmd = op & 0x7f;
    match FUTEX_CMDS.iter().find(|(v, _)| *v == cmd) {
        Some((_, name)) => line.push_bytes(name.as_bytes()),
        None => {
            let _ = write!(line, "{cmd:#x} /* FUTEX_??? */");
        }
    }
    if op & 128 != 0 {
        line.push_bytes(b"_PRIVATE");
    }
    if op & 256 != 0 {
        line.push_bytes(b"|FUTEX_CLOCK_REALTIME");
    }
}

pub(crate) fn socket_type(line: &mut Line, value: u64) {
    enumeration(line, value & 0xf, SOCK_TYPES, Unknown::Hex("SOCK"));
    let rest = value & !0xf;
    if rest != 0 {
        line.push_bytes(b"|");
        flags(line, rest, named![SOCK_CLOEXEC, SOCK_NONBLOCK], "");
    }
}

/// A wait status as strace spells it: `[{WIFEXITED(s) && WEXITSTATUS(s) == 0}]`.
pub(crate) fn wait_status(line: &mut Line, status: i32) {
    line.push_bytes(b"[{");
    if libc::WIFEXITED(status) {
        let _ = write!(
            line,
            "WIFEXITED(s) && WEXITSTATUS(s) == {}",
            libc::WEXITSTATUS(status)
        );
    } else if libc::WIFSIGNALED(status) {
        line.push_bytes(b"WIFSIGNALED(s) && WTERMSIG(s) == ");
        signal_name(line, libc::WTERMSIG(status) as u64);
        if libc::WCOREDUMP(status) {
            line.push_bytes(b" && WCOREDUMP(s)");
        }
    } else if libc::WIFSTOPPED(status) {
        line.push_bytes(b"WIFSTOPPED(s) && WSTOPSIG(s) == ");
        signal_name(line, libc::WSTOPSIG(status) as u64);
    } else if libc::WIFCONTINUED(status) {
        line.push_bytes(b"WIFCONTINUED(s)");
    } else {
        let _ = write!(line, "{status:#x}");
    }
    line.push_bytes(b"}]");
}

// In strace's order. O_SYNC includes O_DSYNC's bit, and O_TMPFILE
// O_DIRECTORY's: the wider ones come first.
pub(crate) const OPEN_NAMES: &[(u64, &str)] = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"),
    (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    // libc's O_LARGEFILE is 0 on 64-bit targets; the kernel's bit is not.
    (0o100000, "O_LARGEFILE"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
    (0o20200000, "O_TMPFILE"),
    (0o200000, "O_DIRECTORY"),
];
pub(crate) const AT_NAMES: &[(u64, &str)] = named![
    AT_SYMLINK_NOFOLLOW,
    AT_REMOVEDIR,
    AT_SYMLINK_FOLLOW,
    AT_NO_AUTOMOUNT,
    AT_EMPTY_PATH,
];
/// faccessat2's flags: 0x200 is AT_EACCESS there, not AT_REMOVEDIR.
pub(crate) const ACCESS_AT_NAMES: &[(u64, &str)] = &[
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x200, "AT_EACCESS"),
    (0x1000, "AT_EMPTY_PATH"),
];
pub(crate) const STATX_AT_NAMES: &[(u64, &str)] = &[
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"),
];
pub(crate) const STATX_MASK: &[(u64, &str)] = &[
    (0xfff, "STATX_ALL"),
    (0x7ff, "STATX_BASIC_STATS"),
    (0x1, "STATX_TYPE"),
    (0x2, "STATX_MODE"),
    (0x4, "STATX_NLINK"),
    (0x8, "STATX_UID"),
    (0x10, "STATX_GID"),
    (0x20, "STATX_ATIME"),
    (0x40, "STATX_MTIME"),
    (0x80, "STATX_CTIME"),
    (0x100, "STATX_INO"),
    (0x200, "STATX_SIZE"),
    (0x400, "STATX_BLOCKS"),
    (0x800, "STATX_BTIME"),
    (0x1000, "STATX_MNT_ID"),
    (0x2000, "STATX_DIOALIGN"),
    (0x4000, "STATX_MNT_ID_UNIQUE"),
];
pub(crate) const STATX_ATTRS: &[(u64, &str)] = &[
    (0x4, "STATX_ATTR_COMPRESSED"),
    (0x10, "STATX_ATTR_IMMUTABLE"),
    (0x20, "STATX_ATTR_APPEND"),
    (0x40, "STATX_ATTR_NODUMP"),
    (0x800, "STATX_ATTR_ENCRYPTED"),
    (0x1000, "STATX_ATTR_AUTOMOUNT"),
    (0x2000, "STATX_ATTR_MOUNT_ROOT"),
    (0x100000, "STATX_ATTR_VERITY"),
    (0x200000, "STATX_ATTR_DAX"),
];
pub(crate) const PROT_NAMES: &[(u64, &str)] = named![
    PROT_READ,
    PROT_WRITE,
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_GROWSUP
];
pub(crate) const MAP_NAMES: &[(u64, &str)] = named![
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
    MAP_SYNC,
    MAP_FIXED_NOREPLACE,
];
pub(crate) const MREMAP_NAMES: &[(u64, &str)] = &[
    (1, "MREMAP_MAYMOVE"),
    (2, "MREMAP_FIXED"),
    (4, "MREMAP_DONTUNMAP"),
];
pub(crate) const CLONE_NAMES: &[(u64, &str)] = named![
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
pub(crate) const SIGNAL_NAMES: &[(u64, &str)] = named![
    SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGKILL, SIGUSR1, SIGSEGV,
    SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGSTKFLT, SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN,
    SIGTTOU, SIGURG, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR, SIGSYS,
];
pub(crate) const SA_FLAGS: &[(u64, &str)] = &[
    (0x0400_0000, "SA_RESTORER"),
    (0x0800_0000, "SA_ONSTACK"),
    (0x1000_0000, "SA_RESTART"),
    (0x4000_0000, "SA_NODEFER"),
    (0x8000_0000, "SA_RESETHAND"),
    (0x4, "SA_SIGINFO"),
    (0x1, "SA_NOCLDSTOP"),
    (0x2, "SA_NOCLDWAIT"),
];
pub(crate) const SIGPROCMASK_HOW: &[(u64, &str)] = named![SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK];
pub(crate) const FUTEX_CMDS: &[(u64, &str)] = &[
    (0, "FUTEX_WAIT"),
    (1, "FUTEX_WAKE"),
    (2, "FUTEX_FD"),
    (3, "FUTEX_REQUEUE"),
    (4, "FUTEX_CMP_REQUEUE"),
    (5, "FUTEX_WAKE_OP"),
    (6, "FUTEX_LOCK_PI"),
    (7, "FUTEX_UNLOCK_PI"),
    (8, "FUTEX_TRYLOCK_PI"),
    (9, "FUTEX_WAIT_BITSET"),
    (10, "FUTEX_WAKE_BITSET"),
    (11, "FUTEX_WAIT_REQUEUE_PI"),
    (12, "FUTEX_CMP_REQUEUE_PI"),
    (13, "FUTEX_LOCK_PI2"),
];
pub(crate) const FCNTL_CMDS: &[(u64, &str)] = named![
    F_DUPFD,
    F_GETFD,
    F_SETFD,
    F_GETFL,
    F_SETFL,
    F_GETLK,
    F_SETLK,
    F_SETLKW,
    F_SETOWN,
    F_GETOWN,
    F_OFD_GETLK,
    F_OFD_SETLK,
    F_OFD_SETLKW,
    F_SETLEASE,
    F_GETLEASE,
    F_NOTIFY,
    F_DUPFD_CLOEXEC,
    F_SETPIPE_SZ,
    F_GETPIPE_SZ,
    F_ADD_SEALS,
    F_GET_SEALS,
];
pub(crate) const WHENCE: &[(u64, &str)] =
    named![SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE];
pub(crate) const RLIMITS: &[(u64, &str)] = &[
    (0, "RLIMIT_CPU"),
    (1, "RLIMIT_FSIZE"),
    (2, "RLIMIT_DATA"),
    (3, "RLIMIT_STACK"),
    (4, "RLIMIT_CORE"),
    (5, "RLIMIT_RSS"),
    (6, "RLIMIT_NPROC"),
    (7, "RLIMIT_NOFILE"),
    (8, "RLIMIT_MEMLOCK"),
    (9, "RLIMIT_AS"),
    (10, "RLIMIT_LOCKS"),
    (11, "RLIMIT_SIGPENDING"),
    (12, "RLIMIT_MSGQUEUE"),
    (13, "RLIMIT_NICE"),
    (14, "RLIMIT_RTPRIO"),
    (15, "RLIMIT_RTTIME"),
];
pub(crate) const WAIT_OPTIONS: &[(u64, &str)] = &[
    (1, "WNOHANG"),
    (2, "WUNTRACED"),
    (4, "WEXITED"),
    (8, "WCONTINUED"),
    (0x0100_0000, "WNOWAIT"),
    (0x2000_0000, "__WNOTHREAD"),
    (0x4000_0000, "__WALL"),
    (0x8000_0000, "__WCLONE"),
];
pub(crate) const GRND_FLAGS: &[(u64, &str)] = &[
    (1, "GRND_NONBLOCK"),
    (2, "GRND_RANDOM"),
    (4, "GRND_INSECURE"),
];
pub(crate) const ARCH_PRCTL: &[(u64, &str)] = &[
    (0x1001, "ARCH_SET_GS"),
    (0x1002, "ARCH_SET_FS"),
    (0x1003, "ARCH_GET_FS"),
    (0x1004, "ARCH_GET_GS"),
    (0x1011, "ARCH_GET_CPUID"),
    (0x1012, "ARCH_SET_CPUID"),
    (0x1021, "ARCH_GET_XCOMP_SUPP"),
    (0x1022, "ARCH_GET_XCOMP_PERM"),
    (0x1023, "ARCH_REQ_XCOMP_PERM"),
    (0x2001, "ARCH_MAP_VDSO_X32"),
    (0x2002, "ARCH_MAP_VDSO_32"),
    (0x2003, "ARCH_MAP_VDSO_64"),
    (0x4001, "ARCH_GET_UNTAG_MASK"),
    (0x4002, "ARCH_ENABLE_TAGGED_ADDR"),
    (0x4003, "ARCH_GET_MAX_TAG_BITS"),
    (0x4004, "ARCH_FORCE_TAGGED_SVA"),
    (0x5001, "ARCH_SHSTK_ENABLE"),
    (0x5002, "ARCH_SHSTK_DISABLE"),
    (0x5003, "ARCH_SHSTK_LOCK"),
    (0x5004, "ARCH_SHSTK_UNLOCK"),
    (0x5005, "ARCH_SHSTK_STATUS"),
];
pub(crate) const ADDRESS_FAMILIES: &[(u64, &str)] = named![
    AF_UNSPEC,
    AF_UNIX,
    AF_INET,
    AF_AX25,
    AF_IPX,
    AF_APPLETALK,
    AF_NETROM,
    AF_BRIDGE,
    AF_ATMPVC,
    AF_X25,
    AF_INET6,
    AF_ROSE,
    AF_DECnet,
    AF_NETBEUI,
    AF_SECURITY,
    AF_KEY,
    AF_NETLINK,
    AF_PACKET,
    AF_ASH,
    AF_ECONET,
    AF_ATMSVC,
    AF_RDS,
    AF_SNA,
    AF_IRDA,
    AF_PPPOX,
    AF_WANPIPE,
    AF_LLC,
    AF_CAN,
    AF_TIPC,
    AF_BLUETOOTH,
    AF_IUCV,
    AF_RXRPC,
    AF_ISDN,
    AF_PHONET,
    AF_IEEE802154,
    AF_CAIF,
    AF_ALG,
    AF_NFC,
    AF_VSOCK,
    AF_XDP,
];
pub(crate) const SOCK_TYPES: &[(u64, &str)] = &[
    (1, "SOCK_STREAM"),
    (2, "SOCK_DGRAM"),
    (3, "SOCK_RAW"),
    (4, "SOCK_RDM"),
    (5, "SOCK_SEQPACKET"),
    (6, "SOCK_DCCP"),
    (10, "SOCK_PACKET"),
];
pub(crate) const IP_PROTOCOLS: &[(u64, &str)] = named![
    IPPROTO_IP,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPPROTO_IPV6,
    IPPROTO_ICMPV6,
    IPPROTO_RAW
];
pub(crate) const MADVISE: &[(u64, &str)] = named![
    MADV_NORMAL,
    MADV_RANDOM,
    MADV_SEQUENTIAL,
    MADV_WILLNEED,
    MADV_DONTNEED,
    MADV_FREE,
    MADV_REMOVE,
    MADV_DONTFORK,
    MADV_DOFORK,
    MADV_MERGEABLE,
    MADV_UNMERGEABLE,
    MADV_HUGEPAGE,
    MADV_NOHUGEPAGE,
    MADV_DONTDUMP,
    MADV_DODUMP,
    MADV_WIPEONFORK,
    MADV_KEEPONFORK,
    MADV_COLD,
    MADV_PAGEOUT,
    MADV_POPULATE_READ,
    MADV_POPULATE_WRITE,
    MADV_HWPOISON,
];
pub(crate) const FADVISE: &[(u64, &str)] = named![
    POSIX_FADV_NORMAL,
    POSIX_FADV_RANDOM,
    POSIX_FADV_SEQUENTIAL,
    POSIX_FADV_WILLNEED,
    POSIX_FADV_DONTNEED,
    POSIX_FADV_NOREUSE,
];
pub(crate) const CLOCKS: &[(u64, &str)] = named![
    CLOCK_REALTIME,
    CLOCK_MONOTONIC,
    CLOCK_PROCESS_CPUTIME_ID,
    CLOCK_THREAD_CPUTIME_ID,
    CLOCK_MONOTONIC_RAW,
    CLOCK_REALTIME_COARSE,
    CLOCK_MONOTONIC_COARSE,
    CLOCK_BOOTTIME,
    CLOCK_REALTIME_ALARM,
    CLOCK_BOOTTIME_ALARM,
    CLOCK_TAI,
];
pub(crate) const POLL_EVENTS: &[(u64, &str)] = &[
    (0x1, "POLLIN"),
    (0x2, "POLLPRI"),
    (0x4, "POLLOUT"),
    (0x8, "POLLERR"),
    (0x10, "POLLHUP"),
    (0x20, "POLLNVAL"),
    (0x40, "POLLRDNORM"),
    (0x80, "POLLRDBAND"),
    (0x100, "POLLWRNORM"),
    (0x200, "POLLWRBAND"),
    (0x400, "POLLMSG"),
    (0x2000, "POLLRDHUP"),
];
pub(crate) const EPOLL_EVENTS: &[(u64, &str)] = &[
    (0x1, "EPOLLIN"),
    (0x2, "EPOLLPRI"),
    (0x4, "EPOLLOUT"),
    (0x8, "EPOLLERR"),
    (0x10, "EPOLLHUP"),
    (0x20, "EPOLLNVAL"),
    (0x40, "EPOLLRDNORM"),
    (0x80, "EPOLLRDBAND"),
    (0x100, "EPOLLWRNORM"),
    (0x200, "EPOLLWRBAND"),
    (0x400, "EPOLLMSG"),
    (0x2000, "EPOLLRDHUP"),
    (0x1000_0000, "EPOLLEXCLUSIVE"),
    (0x2000_0000, "EPOLLWAKEUP"),
    (0x4000_0000, "EPOLLONESHOT"),
    (0x8000_0000, "EPOLLET"),
];
pub(crate) const EPOLL_CTL: &[(u64, &str)] = &[
    (1, "EPOLL_CTL_ADD"),
    (2, "EPOLL_CTL_DEL"),
    (3, "EPOLL_CTL_MOD"),
];
pub(crate) const IOCTLS: &[(u64, &str)] = &[
    (0x5401, "TCGETS"),
    (0x5402, "TCSETS"),
    (0x5403, "TCSETSW"),
    (0x5404, "TCSETSF"),
    (0x5409, "TCSBRK"),
    (0x540b, "TCFLSH"),
    (0x540e, "TIOCSCTTY"),
    (0x540f, "TIOCGPGRP"),
    (0x5410, "TIOCSPGRP"),
    (0x5413, "TIOCGWINSZ"),
    (0x5414, "TIOCSWINSZ"),
    (0x541b, "FIONREAD"),
    (0x5421, "FIONBIO"),
    (0x5422, "TIOCNOTTY"),
    (0x5429, "TIOCGSID"),
    (0x5450, "FIONCLEX"),
    (0x5451, "FIOCLEX"),
    (0x5452, "FIOASYNC"),
    (0x802c542a, "TCGETS2"),
    (0x5460, "FIOQSIZE"),
    (0x40049409, "BTRFS_IOC_CLONE or FICLONE"),
    (0x4020940d, "BTRFS_IOC_CLONE_RANGE or FICLONERANGE"),
    (0x80045430, "TIOCGPTN"),
    (0x40045431, "TIOCSPTLCK"),
];
pub(crate) const PRCTL: &[(u64, &str)] = named![
    PR_SET_PDEATHSIG,
    PR_GET_PDEATHSIG,
    PR_GET_DUMPABLE,
    PR_SET_DUMPABLE,
    PR_GET_KEEPCAPS,
    PR_SET_KEEPCAPS,
    PR_SET_NAME,
    PR_GET_NAME,
    PR_GET_SECCOMP,
    PR_SET_SECCOMP,
    PR_CAPBSET_READ,
    PR_CAPBSET_DROP,
    PR_GET_TIMERSLACK,
    PR_SET_TIMERSLACK,
    PR_SET_CHILD_SUBREAPER,
    PR_GET_CHILD_SUBREAPER,
    PR_SET_NO_NEW_PRIVS,
    PR_GET_NO_NEW_PRIVS,
    PR_SET_VMA,
    PR_SET_MM,
];
pub(crate) const PIPE_FLAGS: &[(u64, &str)] = named![O_NONBLOCK, O_DIRECT, O_CLOEXEC];
pub(crate) const FD_FLAGS: &[(u64, &str)] = &[(1, "FD_CLOEXEC")];
pub(crate) const EFD_FLAGS: &[(u64, &str)] = &[
    (1, "EFD_SEMAPHORE"),
    (0o2000000, "EFD_CLOEXEC"),
    (0o4000, "EFD_NONBLOCK"),
];
pub(crate) const MFD_FLAGS: &[(u64, &str)] = &[
    (1, "MFD_CLOEXEC"),
    (2, "MFD_ALLOW_SEALING"),
    (4, "MFD_HUGETLB"),
    (8, "MFD_NOEXEC_SEAL"),
    (0x10, "MFD_EXEC"),
];
pub(crate) const MSG_FLAGS: &[(u64, &str)] = named![
    MSG_OOB,
    MSG_PEEK,
    MSG_DONTROUTE,
    MSG_CTRUNC,
    MSG_TRUNC,
    MSG_DONTWAIT,
    MSG_EOR,
    MSG_WAITALL,
    MSG_FIN,
    MSG_SYN,
    MSG_CONFIRM,
    MSG_RST,
    MSG_ERRQUEUE,
    MSG_NOSIGNAL,
    MSG_MORE,
    MSG_WAITFORONE,
    MSG_FASTOPEN,
    MSG_CMSG_CLOEXEC,
];
pub(crate) const SOL_LEVELS: &[(u64, &str)] =
    named![SOL_SOCKET, SOL_IP, SOL_TCP, SOL_UDP, SOL_IPV6];
pub(crate) const SOCKET_OPTIONS: &[(u64, &str)] = named![
    SO_DEBUG,
    SO_REUSEADDR,
    SO_TYPE,
    SO_ERROR,
    SO_DONTROUTE,
    SO_BROADCAST,
    SO_SNDBUF,
    SO_RCVBUF,
    SO_KEEPALIVE,
    SO_OOBINLINE,
    SO_NO_CHECK,
    SO_PRIORITY,
    SO_LINGER,
    SO_BSDCOMPAT,
    SO_REUSEPORT,
    SO_PASSCRED,
    SO_PEERCRED,
    SO_RCVLOWAT,
    SO_SNDLOWAT,
    SO_RCVTIMEO,
    SO_SNDTIMEO,
];
pub(crate) const TERM_IFLAGS: &[(u64, &str)] = &[
    (0o1, "IGNBRK"),
    (0o2, "BRKINT"),
    (0o4, "IGNPAR"),
    (0o10, "PARMRK"),
    (0o20, "INPCK"),
    (0o40, "ISTRIP"),
    (0o100, "INLCR"),
    (0o200, "IGNCR"),
    (0o400, "ICRNL"),
    (0o1000, "IUCLC"),
    (0o2000, "IXON"),
    (0o4000, "IXANY"),
    (0o10000, "IXOFF"),
    (0o20000, "IMAXBEL"),
    (0o40000, "IUTF8"),
];
pub(crate) const TERM_OFLAGS: &[(u64, &str)] = &[
    (0o1, "OPOST"),
    (0o2, "OLCUC"),
    (0o4, "ONLCR"),
    (0o10, "OCRNL"),
    (0o20, "ONOCR"),
    (0o40, "ONLRET"),
    (0o100, "OFILL"),
    (0o200, "OFDEL"),
];
/// c_oflag's delay fields: (mask, values).
pub(crate) const TERM_ODELAYS: &[(u64, &[(u64, &str)])] = &[
    (0o400, &[(0, "NL0"), (0o400, "NL1")]),
    (
        0o3000,
        &[
            (0, "CR0"),
            (0o1000, "CR1"),
            (0o2000, "CR2"),
            (0o3000, "CR3"),
        ],
    ),
    (
        0o14000,
        &[
            (0, "TAB0"),
            (0o4000, "TAB1"),
            (0o10000, "TAB2"),
            (0o14000, "TAB3"),
        ],
    ),
    (0o20000, &[(0, "BS0"), (0o20000, "BS1")]),
    (0o40000, &[(0, "VT0"), (0o40000, "VT1")]),
    (0o100000, &[(0, "FF0"), (0o100000, "FF1")]),
];
pub(crate) const BAUDS: &[(u64, &str)] = &[
    (0, "B0"),
    (1, "B50"),
    (2, "B75"),
    (3, "B110"),
    (4, "B134"),
    (5, "B150"),
    (6, "B200"),
    (7, "B300"),
    (0o10, "B600"),
    (0o11, "B1200"),
    (0o12, "B1800"),
    (0o13, "B2400"),
    (0o14, "B4800"),
    (0o15, "B9600"),
    (0o16, "B19200"),
    (0o17, "B38400"),
    (0o10001, "B57600"),
    (0o10002, "B115200"),
    (0o10003, "B230400"),
    (0o10004, "B460800"),
    (0o10005, "B500000"),
    (0o10006, "B576000"),
    (0o10007, "B921600"),
    (0o10010, "B1000000"),
];
pub(crate) const CSIZES: &[(u64, &str)] =
    &[(0, "CS5"), (0o20, "CS6"), (0o40, "CS7"), (0o60, "CS8")];
pub(crate) const TERM_CFLAGS: &[(u64, &str)] = &[
    (0o100, "CSTOPB"),
    (0o200, "CREAD"),
    (0o400, "PARENB"),
    (0o1000, "PARODD"),
    (0o2000, "HUPCL"),
    (0o4000, "CLOCAL"),
    (0o20000000000, "CRTSCTS"),
];
pub(crate) const TERM_LFLAGS: &[(u64, &str)] = &[
    (0o1, "ISIG"),
    (0o2, "ICANON"),
    (0o4, "XCASE"),
    (0o10, "ECHO"),
    (0o20, "ECHOE"),
    (0o40, "ECHOK"),
    (0o100, "ECHONL"),
    (0o200, "NOFLSH"),
    (0o400, "TOSTOP"),
    (0o100000, "IEXTEN"),
    (0o1000, "ECHOCTL"),
    (0o2000, "ECHOPRT"),
    (0o4000, "ECHOKE"),
    (0o10000, "FLUSHO"),
    (0o40000, "PENDIN"),
    (0o200000, "EXTPROC"),
];
/// Capability names by bit number.
pub(crate) const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];
