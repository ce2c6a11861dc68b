//! sudtrace's lines as the preload writes them from the hooks: prefixes
//! (`[pid N]`, timestamps), filters (`-e status=`), durations (`-T`), the
//! text or JSON body, and the `+++ exited with N +++` lines. Runs on the
//! trap path: fixed buffers only, no allocation, no locks.

use crate::config::{SharedArea, StatusFilter, TraceOptions};
use crate::text::{self, Line, Style};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use sud_engine::{errno_of, HookWords, Sysno};

/// When a thread's current call was entered (ns, CLOCK_REALTIME and
/// CLOCK_MONOTONIC), for `-t`, `-r` and `-T`: kept in the engine's hook
/// words for the thread (no thread-local storage: see
/// `sud_engine::hook_words`), words 0 and 1.
pub(crate) type Entered = (u64, u64);

/// The entry time the pre-hook noted for this thread's call.
pub(crate) fn entered(words: &HookWords) -> Entered {
    (words[0].get(), words[1].get())
}

/// The monotonic entry time of the previous call in this process, for `-r`.
static PREVIOUS_ENTRY: AtomicU64 = AtomicU64::new(0);

/// Threads alive in this process, so that exit_group can tell the shared
/// count how many tasks end with it.
static THREADS_HERE: AtomicI64 = AtomicI64::new(1);

/// A task is being created (counted before the call: a vfork child runs
/// before its parent returns).
pub(crate) fn task_starting<'a>(shareds: impl Iterator<Item = &'a SharedArea>, thread: bool) {
    for shared in shareds {
        shared.extra_tasks.fetch_add(1, Relaxed);
    }
    if thread {
        THREADS_HERE.fetch_add(1, Relaxed);
    }
}

/// The creation counted by [`task_starting`] failed.
pub(crate) fn task_not_started<'a>(shareds: impl Iterator<Item = &'a SharedArea>, thread: bool) {
    for shared in shareds {
        shared.extra_tasks.fetch_sub(1, Relaxed);
    }
    if thread {
        THREADS_HERE.fetch_sub(1, Relaxed);
    }
}

/// In a new child process with its own memory: one thread.
pub(crate) fn in_forked_child() {
    THREADS_HERE.store(1, Relaxed);
}

/// A thread (`exit`) or the whole process (`exit_group`) is ending.
pub(crate) fn task_ending<'a>(shareds: impl Iterator<Item = &'a SharedArea>, whole_process: bool) {
    let ending = if whole_process {
        THREADS_HERE.swap(0, Relaxed).max(1)
    } else {
        THREADS_HERE.fetch_sub(1, Relaxed);
        1
    };
    for shared in shareds {
        shared.extra_tasks.fetch_sub(ending, Relaxed);
    }
}

/// Whether more than one task is traced now (strace's `[pid N]` rule).
pub(crate) fn many_tasks(shared: &SharedArea) -> bool {
    shared.extra_tasks.load(Relaxed) > 0
}

/// How a line names its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefix {
    /// One task so far: no prefix.
    Nothing,
    /// `[pid  1234] `, strace's prefix on standard error with `-f`.
    Bracket(i64),
    /// `1234  `, strace's prefix with `-f -o FILE`.
    Column(i64),
}

fn now(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec; it runs in the vDSO (no
    // lock, async-signal-safe).
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The entry time of a call now, when a time is to be shown.
pub(crate) fn entry_time(options: &TraceOptions) -> Option<Entered> {
    (options.durations || options.timestamps > 0 || options.relative)
        .then(|| (now(libc::CLOCK_REALTIME), now(libc::CLOCK_MONOTONIC)))
}

/// Notes the entry time of a call in the thread's hook words.
pub(crate) fn on_entry(options: &TraceOptions, words: &HookWords) {
    if let Some((wall, mono)) = entry_time(options) {
        words[0].set(wall);
        words[1].set(mono);
    }
}

fn style(options: &TraceOptions) -> Style {
    Style {
        string_limit: options.string_limit,
        fd_paths: options.fd_paths,
        hex_strings: options.hex_strings,
    }
}

/// Whether `-e status=` lets this result through.
pub(crate) fn shown(options: &TraceOptions, result: Option<i64>) -> bool {
    match (options.status, result) {
        (StatusFilter::All, _) => true,
        (_, None) => false,
        (StatusFilter::Failed, Some(r)) => errno_of(r).is_some(),
        (StatusFilter::Successful, Some(r)) => errno_of(r).is_none(),
    }
}

fn prefix(line: &mut Line, prefix: Prefix) {
    match prefix {
        Prefix::Nothing => {}
        Prefix::Bracket(tid) => {
            let _ = write!(line, "[pid {tid:>5}] ");
        }
        Prefix::Column(tid) => {
            let _ = write!(line, "{tid:<5} ");
        }
    }
}

/// `-t`/`-tt`/`-ttt` and `-r`, as strace prints them before the call.
fn times(line: &mut Line, options: &TraceOptions, (wall, mono): Entered) {
    if options.timestamps == 0 && !options.relative {
        return;
    }
    let (secs, micros) = (wall / 1_000_000_000, (wall % 1_000_000_000) / 1000);
    let local = (secs as i64 + options.utc_offset).rem_euclid(86_400);
    let (h, m, s) = (local / 3600, local / 60 % 60, local % 60);
    match options.timestamps {
        1 => {
            let _ = write!(line, "{h:02}:{m:02}:{s:02} ");
        }
        2 => {
            let _ = write!(line, "{h:02}:{m:02}:{s:02}.{micros:06} ");
        }
        3 => {
            let _ = write!(line, "{secs}.{micros:06} ");
        }
        _ => {}
    }
    if options.relative {
        let previous = PREVIOUS_ENTRY.swap(mono, Relaxed);
        let delta = if previous == 0 {
            0
        } else {
            mono.saturating_sub(previous)
        };
        let (ds, dus) = (delta / 1_000_000_000, (delta % 1_000_000_000) / 1000);
        if options.timestamps > 0 {
            let _ = write!(line, "(+{ds:>6}.{dus:06}) ");
        } else {
            let _ = write!(line, "{ds:>6}.{dus:06} ");
        }
    }
}

fn json_string(line: &mut Line, text: &str) {
    line.push_bytes(b"\"");
    line.push_bytes(text.as_bytes());
    line.push_bytes(b"\"");
}

/// One call's line (text or JSON), newline included.
#[allow(clippy::too_many_arguments)]
pub(crate) fn syscall_line(
    line: &mut Line,
    options: &TraceOptions,
    who: Prefix,
    pid: i64,
    tid: i64,
    nr: u64,
    args: &[u64; 6],
    result: Option<i64>,
    entered: Entered,
) {
    let style = style(options);
    let (wall, mono) = entered;
    if options.json {
        let _ = write!(
            line,
            "{{\"type\":\"syscall\",\"pid\":{pid},\"tid\":{tid},\"name\":"
        );
        match usize::try_from(nr).ok().and_then(Sysno::new) {
            Some(s) => json_string(line, s.name()),
            None => {
                let _ = write!(line, "\"syscall_{nr:#x}\"");
            }
        }
        let _ = write!(line, ",\"nr\":{nr},\"args\":");
        text::format_json_args(line, &style, nr, args, result);
        match result {
            None => line.push_bytes(b",\"ret\":null,\"errno\":null"),
            Some(r) => match errno_of(r) {
                Some(e) => {
                    let _ = write!(line, ",\"ret\":-1,\"errno\":");
                    json_string(line, e.name().unwrap_or("E?"));
                }
                None => {
                    let _ = write!(line, ",\"ret\":{r},\"errno\":null");
                }
            },
        }
        if options.timestamps > 0 || options.relative {
            let _ = write!(
                line,
                ",\"time\":{}.{:06}",
                wall / 1_000_000_000,
                (wall % 1_000_000_000) / 1000
            );
        }
        if options.durations && result.is_some() {
            let d = now(libc::CLOCK_MONOTONIC).saturating_sub(mono);
            let _ = write!(
                line,
                ",\"duration\":{}.{:06}",
                d / 1_000_000_000,
                (d % 1_000_000_000) / 1000
            );
        }
        line.push_bytes(b"}");
        line.finish();
        return;
    }
    prefix(line, who);
    times(line, options, entered);
    // strace counts the prefix in the column it aligns results at.
    text::format_syscall(line, &style, nr, args, result, 0);
    if options.durations && result.is_some() {
        let d = now(libc::CLOCK_MONOTONIC).saturating_sub(mono);
        let _ = write!(
            line,
            " <{}.{:06}>",
            d / 1_000_000_000,
            (d % 1_000_000_000) / 1000
        );
    }
    line.finish();
}

/// `--- SIGCHLD {si_signo=SIGCHLD, ...} ---` (or its JSON form) for a
/// signal delivered to one of the program's handlers.
pub(crate) fn signal_line(
    line: &mut Line,
    options: &TraceOptions,
    who: Prefix,
    pid: i64,
    tid: i64,
    signal: &sud_engine::DeliveredSignal,
) {
    if options.json {
        let _ = write!(
            line,
            "{{\"type\":\"signal\",\"pid\":{pid},\"tid\":{tid},\"signo\":{},\"code\":{}}}",
            signal.signo, signal.code
        );
        line.finish();
        return;
    }
    prefix(line, who);
    if options.timestamps > 0 || options.relative {
        let now = entry_time(options).unwrap_or_default();
        times(line, options, now);
    }
    line.push_bytes(b"--- ");
    let mut name = Line::new();
    text::siginfo(&mut name, signal);
    let start = name
        .as_bytes()
        .iter()
        .position(|&b| b == b'=')
        .map_or(0, |i| i + 1);
    let end = name
        .as_bytes()
        .iter()
        .position(|&b| b == b',')
        .unwrap_or(start);
    line.push_bytes(&name.as_bytes()[start..end]);
    line.push_bytes(b" ");
    line.push_bytes(name.as_bytes());
    line.push_bytes(b" ---");
    line.finish();
}

/// `+++ exited with N +++` (or its JSON form) for a task ending.
pub(crate) fn exit_line(
    line: &mut Line,
    options: &TraceOptions,
    who: Prefix,
    pid: i64,
    tid: i64,
    code: i32,
) {
    if options.json {
        let _ = write!(
            line,
            "{{\"type\":\"exit\",\"pid\":{pid},\"tid\":{tid},\"status\":{code}}}"
        );
        line.finish();
        return;
    }
    prefix(line, who);
    if options.timestamps > 0 || options.relative {
        let now = entry_time(options).unwrap_or_default();
        times(line, options, now);
    }
    let _ = write!(line, "+++ exited with {code} +++");
    line.finish();
}

/// sudfault's report of one injected failure: `sudfault: [pid N] call =
/// -1 ERRNO (text) (injected, call K)`, or a JSON object.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fault_line(
    line: &mut Line,
    options: &TraceOptions,
    pid: i64,
    tid: i64,
    nr: u64,
    args: &[u64; 6],
    result: i64,
    nth: u64,
) {
    let style = style(options);
    if options.json {
        let _ = write!(
            line,
            "{{\"type\":\"fault\",\"pid\":{pid},\"tid\":{tid},\"name\":"
        );
        match usize::try_from(nr).ok().and_then(Sysno::new) {
            Some(s) => json_string(line, s.name()),
            None => {
                let _ = write!(line, "\"syscall_{nr:#x}\"");
            }
        }
        let _ = write!(line, ",\"nr\":{nr},\"args\":");
        text::format_json_args(line, &style, nr, args, Some(result));
        let name = errno_of(result).and_then(|e| e.name()).unwrap_or("E?");
        let _ = write!(line, ",\"ret\":-1,\"errno\":\"{name}\",\"call\":{nth}}}");
        line.finish();
        return;
    }
    let _ = write!(line, "sudfault: [pid {tid}] ");
    text::format_syscall(line, &style, nr, args, Some(result), usize::MAX);
    let _ = write!(line, " (injected, call {nth})");
    line.finish();
}

/// `FILE.<tid>` for `-ff`, NUL-terminated, written straight into `buf`
/// (no second buffer on the program's stack); `None` if it does not fit.
pub(crate) fn task_file_name(base: &str, tid: i64, buf: &mut [u8; 4200]) -> Option<usize> {
    let base = base.as_bytes();
    let mut digits = [0u8; 20];
    let mut n = 0;
    let mut v = tid.unsigned_abs();
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let len = base.len() + 1 + n;
    if len + 1 > buf.len() || base.contains(&0) {
        return None;
    }
    buf[..base.len()].copy_from_slice(base);
    buf[base.len()] = b'.';
    for (i, d) in digits[..n].iter().rev().enumerate() {
        buf[base.len() + 1 + i] = *d;
    }
    buf[len] = 0;
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_follow_strace() {
        let options = TraceOptions::default();
        let mut line = Line::new();
        syscall_line(
            &mut line,
            &options,
            Prefix::Bracket(42),
            42,
            42,
            Sysno::close.id() as u64,
            &[3, 0, 0, 0, 0, 0],
            Some(0),
            (0, 0),
        );
        assert_eq!(
            line.as_bytes(),
            b"[pid    42] close(3)                    = 0\n"
        );
        let mut line = Line::new();
        syscall_line(
            &mut line,
            &options,
            Prefix::Column(1234),
            1234,
            1234,
            Sysno::close.id() as u64,
            &[3, 0, 0, 0, 0, 0],
            Some(0),
            (0, 0),
        );
        assert_eq!(
            line.as_bytes(),
            b"1234  close(3)                          = 0\n"
        );
    }

    #[test]
    fn task_file_names() {
        let mut buf = [0u8; 4200];
        assert_eq!(task_file_name("/tmp/out", 4207, &mut buf), Some(13));
        assert_eq!(&buf[..14], b"/tmp/out.4207\0");
        assert_eq!(
            task_file_name(&"x".repeat(4190), 1234567890, &mut buf),
            None
        );
    }

    #[test]
    fn json_lines_have_the_documented_fields() {
        let options = TraceOptions {
            json: true,
            ..TraceOptions::default()
        };
        let mut line = Line::new();
        syscall_line(
            &mut line,
            &options,
            Prefix::Nothing,
            7,
            8,
            Sysno::close.id() as u64,
            &[3, 0, 0, 0, 0, 0],
            Some(-9),
            (0, 0),
        );
        assert_eq!(
            line.as_bytes(),
            b"{\"type\":\"syscall\",\"pid\":7,\"tid\":8,\"name\":\"close\",\"nr\":3,\"args\":[3],\"ret\":-1,\"errno\":\"EBADF\"}\n"
        );
    }
}
