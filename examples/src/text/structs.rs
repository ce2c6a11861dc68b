//! Structures the program passes or gets back, read from its memory and
//! printed in strace's abbreviated style (`{st_mode=S_IFREG|0644,
//! st_size=2996, ...}`). An unreadable structure prints as its address.

use super::escape::{c_string, counted, read_memory, read_value, Quote};
use super::flags::{self, Unknown};
use super::{hex, Line};
use std::fmt::Write as _;

/// How many elements of an array strace shows before `...`.
const MAX_ELEMENTS: usize = 1024;

pub(crate) fn stat(line: &mut Line, addr: u64) {
    let Some(st) = read_value::<libc::stat>(addr) else {
        return hex(line, addr);
    };
    line.push_bytes(b"{st_mode=");
    flags::file_mode(line, u64::from(st.st_mode));
    match st.st_mode & libc::S_IFMT {
        libc::S_IFCHR | libc::S_IFBLK => {
            line.push_bytes(b", st_rdev=");
            makedev(line, st.st_rdev);
        }
        _ => {
            let _ = write!(line, ", st_size={}", st.st_size);
        }
    }
    line.push_bytes(b", ...}");
}

fn makedev(line: &mut Line, dev: u64) {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    line.push_bytes(b"makedev(");
    hex0(line, u64::from(major));
    line.push_bytes(b", ");
    hex0(line, u64::from(minor));
    line.push_bytes(b")");
}

/// `%#x`: `0` for zero, `0x1f` otherwise.
fn hex0(line: &mut Line, value: u64) {
    if value == 0 {
        line.push_bytes(b"0");
    } else {
        let _ = write!(line, "{value:#x}");
    }
}

pub(crate) fn statx(line: &mut Line, addr: u64) {
    let Some(st) = read_value::<libc::statx>(addr) else {
        return hex(line, addr);
    };
    line.push_bytes(b"{stx_mask=");
    flags::flags(line, u64::from(st.stx_mask), flags::STATX_MASK, "0");
    line.push_bytes(b", stx_attributes=");
    flags::flags(line, st.stx_attributes, flags::STATX_ATTRS, "0");
    line.push_bytes(b", stx_mode=");
    flags::file_mode(line, u64::from(st.stx_mode));
    let _ = write!(line, ", stx_size={}", st.stx_size);
    line.push_bytes(b", ...}");
}

pub(crate) fn timespec(line: &mut Line, addr: u64) {
    let Some(ts) = read_value::<libc::timespec>(addr) else {
        return hex(line, addr);
    };
    let _ = write!(line, "{{tv_sec={}, tv_nsec={}}}", ts.tv_sec, ts.tv_nsec);
}

fn rlim_value(line: &mut Line, value: u64) {
    if value == u64::MAX {
        line.push_bytes(b"RLIM64_INFINITY");
    } else if value > 0 && value % 1024 == 0 {
        let _ = write!(line, "{}*1024", value / 1024);
    } else {
        let _ = write!(line, "{value}");
    }
}

pub(crate) fn rlimit(line: &mut Line, addr: u64) {
    let Some(r) = read_value::<[u64; 2]>(addr) else {
        return hex(line, addr);
    };
    line.push_bytes(b"{rlim_cur=");
    rlim_value(line, r[0]);
    line.push_bytes(b", rlim_max=");
    rlim_value(line, r[1]);
    line.push_bytes(b"}");
}

/// The kernel's `struct sigaction` (handler, flags, restorer, mask).
pub(crate) fn sigaction(line: &mut Line, addr: u64, setsize: usize) {
    let Some([handler, sa_flags, restorer, mask]) = read_value::<[u64; 4]>(addr) else {
        return hex(line, addr);
    };
    line.push_bytes(b"{sa_handler=");
    match handler {
        0 => line.push_bytes(b"SIG_DFL"),
        1 => line.push_bytes(b"SIG_IGN"),
        h => {
            let _ = write!(line, "{h:#x}");
        }
    }
    line.push_bytes(b", sa_mask=");
    flags::sigset(line, mask, setsize);
    line.push_bytes(b", sa_flags=");
    // The C type is int: glibc's sign extension of SA_RESETHAND is not a
    // flag, and strace does not show it.
    let sa_flags = sa_flags & 0xffff_ffff;
    flags::flags(line, sa_flags, flags::SA_FLAGS, "0");
    if sa_flags & 0x0400_0000 != 0 {
        line.push_bytes(b", sa_restorer=");
        hex(line, restorer);
    }
    line.push_bytes(b"}");
}

pub(crate) fn sigset_at(line: &mut Line, addr: u64, setsize: usize) {
    let mut bytes = [0u8; 8];
    let size = setsize.min(8);
    if addr == 0 {
        return line.push_bytes(b"NULL");
    }
    if size == 0 || read_memory(addr, &mut bytes[..size]) != size {
        return hex(line, addr);
    }
    flags::sigset(line, u64::from_ne_bytes(bytes), size);
}

/// An iovec array; with `data` bytes in total shown from the buffers
/// (the call's result for reads, everything for writes).
pub(crate) fn iovec(
    line: &mut Line,
    addr: u64,
    count: u64,
    data: Option<u64>,
    limit: usize,
    quote: Quote,
) {
    if addr == 0 {
        return line.push_bytes(b"NULL");
    }
    let mut left = data;
    line.push_bytes(b"[");
    for i in 0..count.min(MAX_ELEMENTS as u64) {
        let Some([base, len]) = read_value::<[u64; 2]>(addr.wrapping_add(16 * i)) else {
            if i == 0 {
                line.truncate_last(1);
                return hex(line, addr);
            }
            break;
        };
        if i > 0 {
            line.push_bytes(b", ");
        }
        if i >= 32 {
            line.push_bytes(b"...");
            break;
        }
        line.push_bytes(b"{iov_base=");
        match left {
            Some(n) => {
                let shown = n.min(len);
                counted(line, base, shown as usize, limit, quote);
                left = Some(n - shown);
            }
            None => hex(line, base),
        }
        let _ = write!(line, ", iov_len={len}}}");
    }
    line.push_bytes(b"]");
}

/// A pollfd array: `[{fd=3, events=POLLIN}]`, or after the call the
/// entries with events as ` ([{fd=3, revents=POLLIN}])`.
pub(crate) fn pollfds(line: &mut Line, addr: u64, count: u64, revents: bool) {
    if addr == 0 {
        return line.push_bytes(b"NULL");
    }
    line.push_bytes(b"[");
    let mut first = true;
    for i in 0..count.min(MAX_ELEMENTS as u64) {
        let Some(p) = read_value::<libc::pollfd>(addr.wrapping_add(8 * i)) else {
            break;
        };
        if revents && p.revents == 0 {
            continue;
        }
        if !first {
            line.push_bytes(b", ");
        }
        first = false;
        let _ = write!(line, "{{fd={}, ", p.fd);
        if revents {
            line.push_bytes(b"revents=");
            flags::flags(line, p.revents as u16 as u64, flags::POLL_EVENTS, "0");
        } else {
            line.push_bytes(b"events=");
            flags::flags(line, p.events as u16 as u64, flags::POLL_EVENTS, "0");
        }
        line.push_bytes(b"}");
    }
    line.push_bytes(b"]");
}

pub(crate) fn epoll_events(line: &mut Line, addr: u64, count: u64) {
    if addr == 0 {
        return line.push_bytes(b"NULL");
    }
    line.push_bytes(b"[");
    for i in 0..count.min(MAX_ELEMENTS as u64) {
        if i > 0 {
            line.push_bytes(b", ");
        }
        epoll_event(line, addr.wrapping_add(12 * i));
    }
    line.push_bytes(b"]");
}

pub(crate) fn epoll_event(line: &mut Line, addr: u64) {
    let mut raw = [0u8; 12];
    if read_memory(addr, &mut raw) != 12 {
        return hex(line, addr);
    }
    let events = u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let data = u64::from_ne_bytes([
        raw[4], raw[5], raw[6], raw[7], raw[8], raw[9], raw[10], raw[11],
    ]);
    line.push_bytes(b"{events=");
    flags::flags(line, u64::from(events), flags::EPOLL_EVENTS, "0");
    let _ = write!(line, ", data={{u32={}, u64={}}}}}", data as u32, data);
}

pub(crate) fn winsize(line: &mut Line, addr: u64) {
    let Some(w) = read_value::<libc::winsize>(addr) else {
        return hex(line, addr);
    };
    let _ = write!(
        line,
        "{{ws_row={}, ws_col={}, ws_xpixel={}, ws_ypixel={}}}",
        w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel
    );
}

/// A socket address of `len` bytes.
pub(crate) fn sockaddr(line: &mut Line, addr: u64, len: u64) {
    if addr == 0 {
        return line.push_bytes(b"NULL");
    }
    let mut raw = [0u8; 128];
    let len = (len as usize).min(raw.len());
    let got = read_memory(addr, &mut raw[..len]);
    if got < 2 || got < len {
        return hex(line, addr);
    }
    let family = u16::from_ne_bytes([raw[0], raw[1]]);
    line.push_bytes(b"{sa_family=");
    flags::enumeration(
        line,
        u64::from(family),
        flags::ADDRESS_FAMILIES,
        Unknown::Int,
    );
    match i32::from(family) {
        libc::AF_UNIX if len > 2 => {
            let path = &raw[2..len];
            if path.first() == Some(&0) {
                // Abstract socket: strace marks it with '@'.
                line.push_bytes(b", sun_path=@\"");
                let end = path.len();
                super::escape::escape(line, &path[1..end], Quote::Strace, None);
                line.push_bytes(b"\"");
            } else {
                line.push_bytes(b", sun_path=");
                c_string(line, addr.wrapping_add(2), Some(len - 2), Quote::Strace);
            }
        }
        libc::AF_INET if len >= 8 => {
            let port = u16::from_be_bytes([raw[2], raw[3]]);
            let _ = write!(
                line,
                ", sin_port=htons({port}), sin_addr=inet_addr(\"{}.{}.{}.{}\")",
                raw[4], raw[5], raw[6], raw[7]
            );
        }
        libc::AF_INET6 if len >= 24 => {
            let port = u16::from_be_bytes([raw[2], raw[3]]);
            let flow = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
            let _ = write!(
                line,
                ", sin6_port=htons({port}), sin6_flowinfo=htonl({flow}), inet_pton(AF_INET6, \""
            );
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&raw[8..24]);
            let _ = write!(line, "{}", std::net::Ipv6Addr::from(octets));
            line.push_bytes(b"\", &sin6_addr)");
            if len >= 28 {
                let scope = u32::from_ne_bytes([raw[24], raw[25], raw[26], raw[27]]);
                let _ = write!(line, ", sin6_scope_id={scope}");
            }
        }
        libc::AF_NETLINK if len >= 12 => {
            let pid = u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]);
            let groups = u32::from_ne_bytes([raw[8], raw[9], raw[10], raw[11]]);
            let _ = write!(line, ", nl_pid={pid}, nl_groups={groups:08x}");
        }
        _ if len > 2 => {
            line.push_bytes(b", sa_data=");
            counted(line, addr.wrapping_add(2), len - 2, len, Quote::Strace);
        }
        _ => {}
    }
    line.push_bytes(b"}");
}

/// `[16]`: an in-out length.
pub(crate) fn int_in_brackets(line: &mut Line, addr: u64) {
    match read_value::<i32>(addr) {
        Some(v) => {
            let _ = write!(line, "[{v}]");
        }
        None => hex(line, addr),
    }
}

/// `[3, 4]`: pipe's descriptors.
pub(crate) fn int_pair(line: &mut Line, addr: u64) {
    match read_value::<[i32; 2]>(addr) {
        Some([a, b]) => {
            let _ = write!(line, "[{a}, {b}]");
        }
        None => hex(line, addr),
    }
}

pub(crate) fn uname(line: &mut Line, addr: u64) {
    let Some(u) = read_value::<libc::utsname>(addr) else {
        return hex(line, addr);
    };
    line.push_bytes(b"{sysname=");
    field_string(line, &u.sysname);
    line.push_bytes(b", nodename=");
    field_string(line, &u.nodename);
    line.push_bytes(b", ...}");
}

fn field_string(line: &mut Line, field: &[libc::c_char]) {
    let bytes: &[u8] =
        // SAFETY: c_char and u8 have the same size and alignment.
        unsafe { std::slice::from_raw_parts(field.as_ptr().cast(), field.len()) };
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    line.push_bytes(b"\"");
    super::escape::escape(line, &bytes[..end], Quote::Strace, None);
    line.push_bytes(b"\"");
}

/// getdents64's buffer: `0x... /* 5 entries */`.
pub(crate) fn dirents(line: &mut Line, addr: u64, len: u64) {
    // Read in blocks: one process_vm_readv per 1 KiB, not per entry (the
    // handler runs on the program's stack: blocks stay small).
    let mut block = [0u8; 1024];
    let (mut block_start, mut block_len) = (0u64, 0usize);
    let mut at = 0u64;
    let mut entries = 0u64;
    while at + 19 <= len {
        if at + 18 > block_start + block_len as u64 || at < block_start {
            let want = (len - at).min(block.len() as u64) as usize;
            block_len = read_memory(addr.wrapping_add(at), &mut block[..want]);
            block_start = at;
            if block_len < 18 {
                break;
            }
        }
        let off = (at - block_start) as usize;
        let reclen = u16::from_ne_bytes([block[off + 16], block[off + 17]]);
        if reclen == 0 {
            break;
        }
        entries += 1;
        at += u64::from(reclen);
    }
    hex(line, addr);
    let _ = write!(line, " /* {entries} entries */");
}

/// sched_getaffinity's mask: `[0 1]`.
pub(crate) fn cpu_set(line: &mut Line, addr: u64, bytes: u64) {
    line.push_bytes(b"[");
    let mut first = true;
    for word in 0..(bytes / 8).min(128) {
        let Some(bits) = read_value::<u64>(addr.wrapping_add(word * 8)) else {
            break;
        };
        for bit in 0..64 {
            if bits & (1 << bit) != 0 {
                if !first {
                    line.push_bytes(b" ");
                }
                first = false;
                let _ = write!(line, "{}", word * 64 + bit);
            }
        }
    }
    line.push_bytes(b"]");
}

/// wait4's status word.
pub(crate) fn wait_status_at(line: &mut Line, addr: u64) {
    match read_value::<i32>(addr) {
        Some(status) => flags::wait_status(line, status),
        None => hex(line, addr),
    }
}

/// clone3's `struct clone_args` (before the call), and the parent tid it
/// filled (after).
pub(crate) fn clone_args(line: &mut Line, addr: u64, size: u64, result: Option<i64>) {
    let Some(a) = read_value::<[u64; 11]>(addr).filter(|_| size >= 64) else {
        return hex(line, addr);
    };
    let [flags_word, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, ..] = a;
    line.push_bytes(b"{flags=");
    flags::flags(line, flags_word, flags::CLONE_NAMES, "0");
    if flags_word & libc::CLONE_PIDFD as u64 != 0 {
        let _ = write!(line, ", pidfd={pidfd:#x}");
    }
    if flags_word & (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64 != 0 {
        let _ = write!(line, ", child_tid={child_tid:#x}");
    }
    if flags_word & libc::CLONE_PARENT_SETTID as u64 != 0 {
        let _ = write!(line, ", parent_tid={parent_tid:#x}");
    }
    line.push_bytes(b", exit_signal=");
    if exit_signal == 0 {
        line.push_bytes(b"0");
    } else {
        flags::signal_name(line, exit_signal);
    }
    let _ = write!(line, ", stack={stack:#x}, stack_size={stack_size:#x}");
    if flags_word & libc::CLONE_SETTLS as u64 != 0 {
        let _ = write!(line, ", tls={tls:#x}");
    }
    line.push_bytes(b"}");
    if result.is_some_and(|r| r > 0) && flags_word & libc::CLONE_PARENT_SETTID as u64 != 0 {
        if let Some(tid) = read_value::<i32>(parent_tid) {
            let _ = write!(line, " => {{parent_tid=[{tid}]}}");
        }
    }
}

/// utimensat's times: `[{tv_sec=0, tv_nsec=0}, {...}]`, NULL for "now".
pub(crate) fn utimes(line: &mut Line, addr: u64) {
    if addr == 0 {
        return line.push_bytes(b"NULL");
    }
    let Some(times) = read_value::<[libc::timespec; 2]>(addr) else {
        return hex(line, addr);
    };
    line.push_bytes(b"[");
    for (i, t) in times.iter().enumerate() {
        if i > 0 {
            line.push_bytes(b", ");
        }
        match t.tv_nsec {
            libc::UTIME_NOW => line.push_bytes(b"UTIME_NOW"),
            libc::UTIME_OMIT => line.push_bytes(b"UTIME_OMIT"),
            ns => {
                let _ = write!(line, "{{tv_sec={}, tv_nsec={ns}}}", t.tv_sec);
            }
        }
    }
    line.push_bytes(b"]");
}

/// fcntl's `struct flock`.
/// `with_pid` for what F_GETLK returned.
pub(crate) fn flock(line: &mut Line, addr: u64, with_pid: bool) {
    let Some(l) = read_value::<libc::flock>(addr) else {
        return hex(line, addr);
    };
    line.push_bytes(b"{l_type=");
    let kinds: &[(u64, &str)] = &[(0, "F_RDLCK"), (1, "F_WRLCK"), (2, "F_UNLCK")];
    flags::enumeration(line, l.l_type as u64, kinds, Unknown::Int);
    line.push_bytes(b", l_whence=");
    flags::enumeration(line, l.l_whence as u64, flags::WHENCE, Unknown::Int);
    let _ = write!(line, ", l_start={}, l_len={}", l.l_start, l.l_len);
    if with_pid {
        let _ = write!(line, ", l_pid={}", l.l_pid);
    }
    line.push_bytes(b"}");
}

/// TCGETS's `struct termios`, as strace abbreviates it.
pub(crate) fn termios(line: &mut Line, addr: u64) {
    let Some([iflag, oflag, cflag, lflag]) = read_value::<[u32; 4]>(addr) else {
        return hex(line, addr);
    };
    let (iflag, oflag, cflag, lflag) = (
        u64::from(iflag),
        u64::from(oflag),
        u64::from(cflag),
        u64::from(lflag),
    );
    line.push_bytes(b"{c_iflag=");
    flags::flags(line, iflag, flags::TERM_IFLAGS, "0");
    line.push_bytes(b", c_oflag=");
    // The delay fields are enumerations inside the flag word.
    for &(mask, names) in flags::TERM_ODELAYS {
        flags::enumeration(line, oflag & mask, names, Unknown::Int);
        line.push_bytes(b"|");
    }
    let delays: u64 = flags::TERM_ODELAYS.iter().map(|(m, _)| m).sum();
    flags::flags(line, oflag & !delays, flags::TERM_OFLAGS, "0");
    line.push_bytes(b", c_cflag=");
    flags::enumeration(line, cflag & 0o10017, flags::BAUDS, Unknown::Int);
    line.push_bytes(b"|");
    flags::enumeration(line, cflag & 0o60, flags::CSIZES, Unknown::Int);
    if cflag & !0o10077 != 0 {
        line.push_bytes(b"|");
        flags::flags(line, cflag & !0o10077, flags::TERM_CFLAGS, "0");
    }
    line.push_bytes(b", c_lflag=");
    flags::flags(line, lflag, flags::TERM_LFLAGS, "0");
    line.push_bytes(b", ...}");
}

/// capget/capset's `{version=..., pid=N}`.
pub(crate) fn cap_header(line: &mut Line, addr: u64) {
    let Some([version, pid]) = read_value::<[u32; 2]>(addr) else {
        return hex(line, addr);
    };
    line.push_bytes(b"{version=");
    let versions: &[(u64, &str)] = &[
        (0x1998_0330, "_LINUX_CAPABILITY_VERSION_1"),
        (0x2007_1026, "_LINUX_CAPABILITY_VERSION_2"),
        (0x2008_0522, "_LINUX_CAPABILITY_VERSION_3"),
    ];
    flags::enumeration(
        line,
        u64::from(version),
        versions,
        Unknown::Hex("_LINUX_CAPABILITY_VERSION"),
    );
    let _ = write!(line, ", pid={}}}", pid as i32);
}

/// Version 3 capability sets: `{effective=1<<CAP_CHOWN|..., permitted=..., inheritable=...}`.
pub(crate) fn cap_data(line: &mut Line, addr: u64) {
    let Some(d) = read_value::<[u32; 6]>(addr) else {
        return hex(line, addr);
    };
    let set = |low: u32, high: u32| u64::from(low) | u64::from(high) << 32;
    for (i, (name, value)) in [
        ("effective", set(d[0], d[3])),
        ("permitted", set(d[1], d[4])),
        ("inheritable", set(d[2], d[5])),
    ]
    .into_iter()
    .enumerate()
    {
        line.push_bytes(if i == 0 { b"{" } else { b", " });
        line.push_bytes(name.as_bytes());
        line.push_bytes(b"=");
        if value == 0 {
            line.push_bytes(b"0");
            continue;
        }
        let mut first = true;
        for bit in 0..64 {
            if value & (1 << bit) == 0 {
                continue;
            }
            if !first {
                line.push_bytes(b"|");
            }
            first = false;
            match flags::CAPABILITIES.get(bit) {
                Some(cap) => {
                    line.push_bytes(b"1<<");
                    line.push_bytes(cap.as_bytes());
                }
                None => {
                    let _ = write!(line, "1<<{bit}");
                }
            }
        }
    }
    line.push_bytes(b"}");
}
