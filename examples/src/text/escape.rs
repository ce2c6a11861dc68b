//! Reading the program's memory without faulting, and quoting what was read
//! the way strace does (or as JSON strings).

use super::Line;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use sud_engine::Sysno;

/// This process's pid for process_vm_readv, cached: one getpid less per
/// read. A forked child must call [`forget_pid`] before its first read.
static OWN_PID: AtomicI64 = AtomicI64::new(0);

/// Drops the cached pid (in a fork child, whose pid differs).
pub fn forget_pid() {
    OWN_PID.store(0, Relaxed);
}

/// This process's pid (cached; see [`forget_pid`]).
pub fn own_pid() -> i64 {
    let cached = OWN_PID.load(Relaxed);
    if cached > 0 {
        return cached;
    }
    // SAFETY: getpid takes no arguments and touches no memory.
    let pid = unsafe { syscalls::raw::syscall0(Sysno::getpid as usize) } as i64;
    OWN_PID.store(pid, Relaxed);
    pid
}

/// Reads up to `buf.len()` bytes of this process at `addr`; how many it got.
/// Set once a traced thread is in seccomp strict mode: memory is then read
/// directly (see [`read_directly`]).
static DIRECT_READS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on the decoder reads the program's memory directly instead of
/// with `process_vm_readv`, which seccomp strict mode forbids: what a
/// strict-mode program passes (`read`/`write` buffers) is its own valid
/// memory; a bad pointer would fault in the decoder instead of showing as
/// an address.
pub(crate) fn read_directly() {
    DIRECT_READS.store(true, std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn read_memory(addr: u64, buf: &mut [u8]) -> usize {
    if addr == 0 || buf.is_empty() {
        return 0;
    }
    if DIRECT_READS.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: seccomp strict mode forbids process_vm_readv (the call
        // would kill the program); the program handed this address to a
        // call that reads or writes it, so in a program that works it is
        // mapped for `buf.len()` bytes (a bad one faults here, where the
        // kernel would have answered EFAULT: see `read_directly`).
        unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
        return buf.len();
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
            own_pid() as usize,
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

/// Reads a plain-data value of the program; `None` when unreadable.
pub(crate) fn read_value<T: Copy>(addr: u64) -> Option<T> {
    let mut value = std::mem::MaybeUninit::<T>::zeroed();
    // SAFETY: the slice covers exactly the bytes of `value`, which is
    // zero-initialised; callers use T = plain C structs and integers, for
    // which any bytes are a valid value.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(value.as_mut_ptr().cast::<u8>(), std::mem::size_of::<T>())
    };
    if read_memory(addr, bytes) != bytes.len() {
        return None;
    }
    // SAFETY: fully written above; any bytes are valid for T (see above).
    Some(unsafe { value.assume_init() })
}

/// How bytes are quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quote {
    /// strace's C-like escapes, octal for unprintable bytes.
    Strace,
    /// Every byte as `\xNN` (strace does this for getrandom's buffer).
    Hex,
    /// A JSON string: bytes from 0x80 up become U+0080..U+00FF.
    Json,
    /// `-x`: every byte in hex when the string has a byte that is neither
    /// printable ASCII nor whitespace, else as `Strace`.
    HexIfBinary,
}

/// strace's `-x` test: a byte that forces the whole string into hex.
fn is_binary(b: u8) -> bool {
    b > 0x7e || (b < b' ' && !(9..=13).contains(&b))
}

/// Whether the `len` bytes at `addr` (or those before a NUL when
/// `stop_at_nul`) hold a byte that makes `-x` print the string in hex.
fn has_binary(addr: u64, len: usize, stop_at_nul: bool) -> bool {
    let mut chunk = [0u8; 256];
    let mut done = 0usize;
    while done < len {
        let want = chunk.len().min(len - done);
        let got = read_memory(addr.wrapping_add(done as u64), &mut chunk[..want]);
        for &b in &chunk[..got] {
            if stop_at_nul && b == 0 {
                return false;
            }
            if is_binary(b) {
                return true;
            }
        }
        if got < want {
            return false;
        }
        done += got;
    }
    false
}

/// Writes `bytes` escaped (without the quotes).
pub(crate) fn escape(line: &mut Line, bytes: &[u8], quote: Quote, next: Option<u8>) {
    for (i, &b) in bytes.iter().enumerate() {
        match quote {
            Quote::Hex | Quote::HexIfBinary => {
                let _ = write!(line, "\\x{b:02x}");
            }
            Quote::Json => match b {
                b'"' => line.push_bytes(b"\\\""),
                b'\\' => line.push_bytes(b"\\\\"),
                b'\n' => line.push_bytes(b"\\n"),
                b'\t' => line.push_bytes(b"\\t"),
                b'\r' => line.push_bytes(b"\\r"),
                0x20..=0x7e => line.push_bytes(&[b]),
                _ => {
                    let _ = write!(line, "\\u{:04x}", b);
                }
            },
            Quote::Strace => match b {
                b'"' => line.push_bytes(b"\\\""),
                b'\\' => line.push_bytes(b"\\\\"),
                b'\n' => line.push_bytes(b"\\n"),
                b'\t' => line.push_bytes(b"\\t"),
                b'\r' => line.push_bytes(b"\\r"),
                0x0b => line.push_bytes(b"\\v"),
                0x0c => line.push_bytes(b"\\f"),
                0x20..=0x7e => line.push_bytes(&[b]),
                _ => {
                    // An octal digit after the escape would join it, so
                    // strace then writes all three digits.
                    let following = bytes.get(i + 1).copied().or(next);
                    if following.is_some_and(|c| (b'0'..=b'7').contains(&c)) {
                        let _ = write!(line, "\\{b:03o}");
                    } else {
                        let _ = write!(line, "\\{b:o}");
                    }
                }
            },
        }
    }
}

/// A NUL-terminated string of the program, quoted. `limit` caps the bytes
/// shown (strace's `-s`; `None` for paths, shown whole up to PATH_MAX),
/// with `...` after a cut string. Unreadable memory prints as an address.
pub(crate) fn c_string(line: &mut Line, addr: u64, limit: Option<usize>, quote: Quote) {
    if addr == 0 {
        line.push_bytes(b"NULL");
        return;
    }
    let max = limit.unwrap_or(4096);
    if quote == Quote::HexIfBinary {
        let quote = if has_binary(addr, max, true) {
            Quote::Hex
        } else {
            Quote::Strace
        };
        return c_string(line, addr, limit, quote);
    }
    let mut chunk = [0u8; 256];
    let mut shown = 0usize;
    let mut first = true;
    loop {
        let want = chunk.len().min(max + 1 - shown);
        let got = read_memory(addr.wrapping_add(shown as u64), &mut chunk[..want]);
        if got == 0 {
            if first {
                super::hex(line, addr);
                return;
            }
            // Unreadable past this point: show what was read.
            line.push_bytes(b"\"");
            return;
        }
        if first {
            line.push_bytes(b"\"");
            first = false;
        }
        let end = chunk[..got].iter().position(|&b| b == 0);
        let take = end.unwrap_or(got).min(max - shown);
        // strace looks at the next byte only inside what it shows.
        let next = if take < max - shown {
            chunk.get(take).copied()
        } else {
            None
        };
        escape(line, &chunk[..take], quote, next);
        shown += take;
        if end.is_some_and(|e| e <= take) {
            line.push_bytes(b"\"");
            return;
        }
        if shown >= max {
            line.push_bytes(b"\"");
            if quote != Quote::Json {
                line.push_bytes(b"...");
            }
            return;
        }
        if got < want {
            line.push_bytes(b"\"");
            return;
        }
    }
}

/// `len` bytes of the program at `addr`, quoted, at most `limit` shown
/// (then `...`). Unreadable memory prints as an address.
pub(crate) fn counted(line: &mut Line, addr: u64, len: usize, limit: usize, quote: Quote) {
    if addr == 0 && len > 0 {
        line.push_bytes(b"NULL");
        return;
    }
    let show = len.min(limit);
    if quote == Quote::HexIfBinary {
        let quote = if has_binary(addr, show, false) {
            Quote::Hex
        } else {
            Quote::Strace
        };
        return counted(line, addr, len, limit, quote);
    }
    let mut chunk = [0u8; 256];
    let mut done = 0usize;
    let mut opened = false;
    while done < show {
        // One byte more than shown when possible, for the octal rule.
        let want = chunk.len().min(show - done + 1).min(len - done);
        let got = read_memory(addr.wrapping_add(done as u64), &mut chunk[..want]);
        if got == 0 {
            if !opened {
                super::hex(line, addr);
                return;
            }
            break;
        }
        if !opened {
            line.push_bytes(b"\"");
            opened = true;
        }
        let take = got.min(show - done);
        let next = if done + take < show {
            chunk[..got].get(take).copied()
        } else {
            None
        };
        escape(line, &chunk[..take], quote, next);
        done += take;
        if got < want && take == got {
            break;
        }
    }
    if !opened {
        line.push_bytes(b"\"");
    }
    line.push_bytes(b"\"");
    if len > limit && quote != Quote::Json {
        line.push_bytes(b"...");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(bytes: &[u8], limit: usize) -> String {
        let mut line = Line::new();
        counted(
            &mut line,
            bytes.as_ptr() as u64,
            bytes.len(),
            limit,
            Quote::Strace,
        );
        String::from_utf8(line.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn octal_escapes_follow_strace() {
        assert_eq!(
            quoted(b"\x7fELF\x02\x01\x00\x00", 32),
            r#""\177ELF\2\1\0\0""#
        );
        assert_eq!(quoted(b"abc\x00\x01\xff123", 32), r#""abc\0\1\377123""#);
        assert_eq!(quoted(b"\x001", 32), r#""\0001""#);
        assert_eq!(quoted(b"a\tb\"c\\\x0b", 32), r#""a\tb\"c\\\v""#);
        assert_eq!(quoted(b"abcdef", 3), r#""abc"..."#);
        // The byte after the cut does not decide the escape's width.
        assert_eq!(quoted(b"\x01\x32", 1), r#""\1"..."#);
        assert_eq!(quoted(b"\x012\x013", 3), r#""\0012\1"..."#);
        assert_eq!(quoted(b"", 32), r#""""#);
    }

    #[test]
    fn x_prints_binary_strings_in_hex() {
        let text = b"ab\tc\n";
        let binary = b"ab\x01";
        let mut line = Line::new();
        counted(&mut line, text.as_ptr() as u64, 5, 32, Quote::HexIfBinary);
        assert_eq!(line.as_bytes(), b"\"ab\\tc\\n\"");
        let mut line = Line::new();
        counted(&mut line, binary.as_ptr() as u64, 3, 32, Quote::HexIfBinary);
        assert_eq!(line.as_bytes(), b"\"\\x61\\x62\\x01\"");
    }

    #[test]
    fn c_strings_stop_at_nul_and_at_the_limit() {
        let text = c"hello world";
        let mut line = Line::new();
        c_string(&mut line, text.as_ptr() as u64, Some(5), Quote::Strace);
        assert_eq!(line.as_bytes(), br#""hello"..."#);
        let mut line = Line::new();
        c_string(&mut line, text.as_ptr() as u64, Some(11), Quote::Strace);
        assert_eq!(line.as_bytes(), br#""hello world""#);
        let long = [b'a'; 600];
        let mut path = long.to_vec();
        path.push(0);
        let mut line = Line::new();
        c_string(&mut line, path.as_ptr() as u64, None, Quote::Strace);
        assert_eq!(line.as_bytes().len(), 602, "paths are whole");
    }
}
