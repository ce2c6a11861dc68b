//! What a tool tells the preload library in the traced program, carried in
//! one environment variable so it survives fork and execve (the preload
//! puts it back into an execve whose environment lost it), and the shared
//! counter area all the traced processes update.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64};
use sud_engine::{Entrance, TRACKED_NUMBERS};

/// The environment variable holding the encoded [`ToolConfig`]s.
pub const CONFIG_ENV: &str = "SUD_TOOL";

/// Separates the configurations of nested tools in [`CONFIG_ENV`] (a tool
/// run under another tool: the program is traced by both).
pub const CONFIG_SEPARATOR: char = '|';

/// The file name of the preload library next to the tools.
pub const PRELOAD_FILE: &str = "libsud_examples.so";

/// Most `--fail` rules one sudfault run may have.
pub const MAX_FAULT_RULES: usize = 32;

/// Which tool is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// sudtrace: one line per syscall.
    Trace,
    /// syscount: counts in the shared area.
    Count,
    /// sudfault: inject failures.
    Fault,
}

/// "Make call number `nth` (or every call when `nth` is 0) of `nr` fail with `errno`."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRule {
    /// The syscall number.
    pub nr: u64,
    /// The errno to return.
    pub errno: i32,
    /// Which call, counted from 1 over all traced processes; 0 means every call.
    pub nth: u64,
}

/// The configuration of one tool run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolConfig {
    /// Which tool.
    pub mode: Mode,
    /// Where trace lines and fault reports go (inherited by every process).
    pub out_fd: i32,
    /// The memfd holding the [`SharedArea`].
    pub shared_fd: i32,
    /// Follow child processes (threads are always armed).
    pub follow: bool,
    /// Rewrite trapped syscall sites into direct calls (the engine's
    /// `rewrite_sites`); `--no-rewrite` turns it off. An encoding without
    /// the field (an older tool) means off.
    pub rewrite: bool,
    /// The tool's pid: the first traced process is the tool's child.
    pub tool_pid: u32,
    /// Syscall numbers to print (sudtrace `-e trace=`); `None` prints all.
    pub trace: Option<Vec<u64>>,
    /// sudfault's rules.
    pub faults: Vec<FaultRule>,
    /// How sudtrace prints (and sudfault reports) calls.
    pub options: TraceOptions,
}

/// sudtrace's output choices, the strace flags that shape each line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceOptions {
    /// `-s N`: most bytes of a string shown.
    pub string_limit: usize,
    /// `-y`: descriptor paths.
    pub fd_paths: bool,
    /// `-x` (1) and `-xx` (2): strings in hex.
    pub hex_strings: u8,
    /// `-T`: time spent in each call.
    pub durations: bool,
    /// `-t` (1), `-tt` (2), `-ttt` (3): wall-clock time of each call.
    pub timestamps: u8,
    /// `-r`: time since the previous call.
    pub relative: bool,
    /// `-e status=`: which results are shown.
    pub status: StatusFilter,
    /// `--json`: one JSON object per line.
    pub json: bool,
    /// `-o FILE` with `-f`: every line starts with the pid (`1234  `),
    /// as strace does when it writes to a file.
    pub pid_column: bool,
    /// `-ff -o FILE`: each task writes to `FILE.<tid>` (absolute path).
    pub per_task: Option<String>,
    /// The local time zone's offset from UTC in seconds, for `-t`/`-tt`
    /// (the traced program cannot call localtime from a signal handler).
    pub utc_offset: i64,
    /// Whether the program runs translated by the DBI from the preload's
    /// constructor on, and what the translator collects.
    pub dbi: Translate,
}

/// What the DBI does in the program (see the preload's `dbi_follow`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Translate {
    /// Nothing: the program runs native, every syscall trapped.
    #[default]
    Off,
    /// `syscount --dbi`: translated, syscalls by direct call.
    Follow,
    /// `dbi-cov -o DIR`: one drcov file per process in DIR (absolute).
    Coverage(String),
    /// `dbi-bbcount --top N [--json]`: block counts per process, written
    /// to the tool's output at exit.
    BlockCount { top: u32, json: bool },
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            string_limit: 32,
            fd_paths: false,
            hex_strings: 0,
            durations: false,
            timestamps: 0,
            relative: false,
            status: StatusFilter::All,
            json: false,
            pid_column: false,
            per_task: None,
            utc_offset: 0,
            dbi: Translate::Off,
        }
    }
}

/// `-e status=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Every call.
    All,
    /// `status=successful`: calls that did not fail.
    Successful,
    /// `status=failed`: calls that returned an error.
    Failed,
}

/// Hex of bytes, so a path survives the `;`/`=` syntax of the encoding.
fn hex_decode(text: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// A malformed [`CONFIG_ENV`] value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadConfig(pub String);

impl fmt::Display for BadConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed {CONFIG_ENV} value: {}", self.0)
    }
}

impl std::error::Error for BadConfig {}

impl ToolConfig {
    /// The value for [`CONFIG_ENV`].
    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = self.write_to(&mut s, self.out_fd, self.shared_fd);
        s
    }

    /// Writes the encoding with the descriptors given (where they are now:
    /// the preload moves them out of the program's way) without allocating,
    /// so the preload can do it inside a hook.
    pub fn write_to(&self, w: &mut impl fmt::Write, out_fd: i32, shared_fd: i32) -> fmt::Result {
        let mode = match self.mode {
            Mode::Trace => "trace",
            Mode::Count => "count",
            Mode::Fault => "fault",
        };
        write!(
            w,
            "mode={mode};out={out_fd};shm={shared_fd};follow={};rewrite={};tool={}",
            self.follow as u8, self.rewrite as u8, self.tool_pid
        )?;
        if let Some(trace) = &self.trace {
            w.write_str(";trace=")?;
            for (i, nr) in trace.iter().enumerate() {
                write!(w, "{}{nr}", if i == 0 { "" } else { "," })?;
            }
        }
        for (i, r) in self.faults.iter().enumerate() {
            let head = if i == 0 { ";fail=" } else { "," };
            write!(w, "{head}{}:{}:{}", r.nr, r.errno, r.nth)?;
        }
        let o = &self.options;
        let status = match o.status {
            StatusFilter::All => 0,
            StatusFilter::Successful => 1,
            StatusFilter::Failed => 2,
        };
        write!(
            w,
            ";strsize={};fdpaths={};hex={};durations={};timestamps={};relative={};status={status};json={};pidcol={};utc={}",
            o.string_limit,
            o.fd_paths as u8,
            o.hex_strings,
            o.durations as u8,
            o.timestamps,
            o.relative as u8,
            o.json as u8,
            o.pid_column as u8,
            o.utc_offset
        )?;
        match &o.dbi {
            Translate::Off => {}
            Translate::Follow => w.write_str(";dbi=1")?,
            Translate::Coverage(dir) => {
                w.write_str(";dbi=cov")?;
                for byte in dir.as_bytes() {
                    write!(w, "{byte:02x}")?;
                }
            }
            Translate::BlockCount { top, json } => write!(w, ";dbi=bb{top}:{}", *json as u8)?,
        }
        if let Some(path) = &o.per_task {
            w.write_str(";pertask=")?;
            for byte in path.as_bytes() {
                write!(w, "{byte:02x}")?;
            }
        }
        Ok(())
    }

    /// Parses a [`CONFIG_ENV`] value holding one configuration per nested
    /// tool, innermost first.
    pub fn decode_all(text: &str) -> Result<Vec<Self>, BadConfig> {
        text.split(CONFIG_SEPARATOR).map(Self::decode).collect()
    }

    /// Parses a [`CONFIG_ENV`] value.
    pub fn decode(text: &str) -> Result<Self, BadConfig> {
        let bad = |what: &str| BadConfig(format!("{what} in {text:?}"));
        let num = |v: &str| v.parse::<u64>().map_err(|_| bad("bad number"));
        let mut mode = None;
        let (mut out_fd, mut shared_fd, mut tool_pid, mut follow) = (None, None, None, false);
        let mut rewrite = false;
        let (mut trace, mut faults) = (None, Vec::new());
        let mut options = TraceOptions::default();
        let flag = |v: &str| v == "1";
        for field in text.split(';') {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| bad("field without '='"))?;
            match key {
                "mode" => {
                    mode = Some(match value {
                        "trace" => Mode::Trace,
                        "count" => Mode::Count,
                        "fault" => Mode::Fault,
                        _ => return Err(bad("unknown mode")),
                    })
                }
                "out" => out_fd = Some(num(value)? as i32),
                "shm" => shared_fd = Some(num(value)? as i32),
                "follow" => follow = value == "1",
                "rewrite" => rewrite = value == "1",
                "tool" => tool_pid = Some(num(value)? as u32),
                "trace" => {
                    let list: Result<Vec<u64>, _> = value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(num)
                        .collect();
                    trace = Some(list?);
                }
                "fail" => {
                    for rule in value.split(',') {
                        let parts: Vec<&str> = rule.split(':').collect();
                        let [nr, errno, nth] = parts[..] else {
                            return Err(bad("bad fault rule"));
                        };
                        faults.push(FaultRule {
                            nr: num(nr)?,
                            errno: num(errno)? as i32,
                            nth: num(nth)?,
                        });
                    }
                    if faults.len() > MAX_FAULT_RULES {
                        return Err(bad("too many fault rules"));
                    }
                }
                "strsize" => options.string_limit = num(value)? as usize,
                "fdpaths" => options.fd_paths = flag(value),
                "hex" => options.hex_strings = num(value)?.min(2) as u8,
                "durations" => options.durations = flag(value),
                "timestamps" => options.timestamps = num(value)?.min(3) as u8,
                "relative" => options.relative = flag(value),
                "status" => {
                    options.status = match value {
                        "0" => StatusFilter::All,
                        "1" => StatusFilter::Successful,
                        "2" => StatusFilter::Failed,
                        _ => return Err(bad("bad status filter")),
                    }
                }
                "json" => options.json = flag(value),
                "pidcol" => options.pid_column = flag(value),
                "dbi" => {
                    options.dbi = if value == "1" {
                        Translate::Follow
                    } else if let Some(dir) = value.strip_prefix("cov") {
                        Translate::Coverage(hex_decode(dir).ok_or_else(|| bad("bad path"))?)
                    } else if let Some((top, json)) =
                        value.strip_prefix("bb").and_then(|v| v.split_once(':'))
                    {
                        Translate::BlockCount {
                            top: num(top)? as u32,
                            json: flag(json),
                        }
                    } else {
                        return Err(bad("bad dbi mode"));
                    }
                }
                "utc" => options.utc_offset = value.parse().map_err(|_| bad("bad number"))?,
                "pertask" => {
                    options.per_task = Some(hex_decode(value).ok_or_else(|| bad("bad path"))?)
                }
                _ => return Err(bad("unknown field")),
            }
        }
        Ok(ToolConfig {
            mode: mode.ok_or_else(|| bad("no mode"))?,
            out_fd: out_fd.ok_or_else(|| bad("no out fd"))?,
            shared_fd: shared_fd.ok_or_else(|| bad("no shm fd"))?,
            follow,
            rewrite,
            tool_pid: tool_pid.ok_or_else(|| bad("no tool pid"))?,
            trace,
            faults,
            options,
        })
    }
}

/// Counters shared by every traced process through a `MAP_SHARED` memfd
/// mapping: the tool reads them when the program has finished. Relaxed
/// atomics: no thread ever waits for another to count.
#[repr(C)]
pub struct SharedArea {
    /// Processes traced (the first one included).
    pub processes: AtomicU64,
    /// Threads traced, over all processes (each process's first thread included).
    pub threads: AtomicU64,
    /// Tasks alive besides one, as far as the hooks see creations and
    /// exits: strace prefixes `-f` lines with `[pid N]` while it traces
    /// more than one task.
    pub extra_tasks: AtomicI64,
    /// Calls per syscall number (numbers past the table share the last slot).
    pub per_number: [AtomicU64; TRACKED_NUMBERS + 1],
    /// Calls per entrance, in [`Entrance`] order by [`SharedArea::entrance`]
    /// (trap, rewritten site, direct call): they sum to `per_number`'s.
    pub entrances: [AtomicU64; 3],
    /// 32-bit (`int 0x80`) calls: they run without hooks and are not in
    /// `per_number`; each process adds its engine's count at its next
    /// hooked call (so at its exit or exec at the latest).
    pub compat: AtomicU64,
    /// Syscall sites rewritten, over all processes (added the same way).
    pub patched_sites: AtomicU64,
    /// Calls seen per fault rule.
    pub rule_calls: [AtomicU64; MAX_FAULT_RULES],
    /// Faults injected per fault rule.
    pub rule_injected: [AtomicU64; MAX_FAULT_RULES],
}

impl SharedArea {
    /// Bytes to map.
    pub const SIZE: usize = std::mem::size_of::<SharedArea>();

    /// The counter slot of syscall `nr`.
    pub fn slot(nr: u64) -> usize {
        (nr as usize).min(TRACKED_NUMBERS)
    }

    /// The [`SharedArea::entrances`] slot of an entrance.
    pub fn entrance(entrance: Entrance) -> usize {
        match entrance {
            Entrance::Trap => 0,
            Entrance::Rewritten => 1,
            Entrance::Direct => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips() {
        let config = ToolConfig {
            mode: Mode::Fault,
            out_fd: 1000,
            shared_fd: 1001,
            follow: true,
            rewrite: true,
            tool_pid: 42,
            trace: Some(vec![1, 257]),
            faults: vec![FaultRule {
                nr: 257,
                errno: 2,
                nth: 3,
            }],
            options: TraceOptions {
                string_limit: 100,
                fd_paths: true,
                hex_strings: 2,
                durations: true,
                timestamps: 2,
                relative: true,
                status: StatusFilter::Failed,
                json: true,
                pid_column: true,
                per_task: Some("/tmp/a;b=c".into()),
                utc_offset: -3600,
                dbi: Translate::Coverage("/tmp/x;y".into()),
            },
        };
        assert_eq!(ToolConfig::decode(&config.encode()), Ok(config.clone()));
        let inner = ToolConfig {
            mode: Mode::Count,
            trace: None,
            faults: Vec::new(),
            ..config.clone()
        };
        let nested = format!("{}{CONFIG_SEPARATOR}{}", inner.encode(), config.encode());
        assert_eq!(
            ToolConfig::decode_all(&nested),
            Ok(vec![inner, config.clone()])
        );
        for dbi in [
            Translate::Off,
            Translate::Follow,
            Translate::BlockCount { top: 7, json: true },
        ] {
            let mut config = config.clone();
            config.options.dbi = dbi;
            assert_eq!(ToolConfig::decode(&config.encode()), Ok(config));
        }
        assert!(ToolConfig::decode("mode=count;out=1").is_err());
        assert!(ToolConfig::decode("mode=bogus;out=1;shm=2;tool=3").is_err());
    }
}
