//! What a tool tells the preload library in the traced program, carried in
//! one environment variable so it survives fork and execve (the preload
//! puts it back into an execve whose environment lost it), and the shared
//! counter area all the traced processes update.

use std::fmt;
use std::sync::atomic::AtomicU64;
use sud_engine::TRACKED_NUMBERS;

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
    /// The tool's pid: the first traced process is the tool's child.
    pub tool_pid: u32,
    /// Syscall numbers to print (sudtrace `-e trace=`); `None` prints all.
    pub trace: Option<Vec<u64>>,
    /// sudfault's rules.
    pub faults: Vec<FaultRule>,
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
            "mode={mode};out={out_fd};shm={shared_fd};follow={};tool={}",
            self.follow as u8, self.tool_pid
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
        let (mut trace, mut faults) = (None, Vec::new());
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
                _ => return Err(bad("unknown field")),
            }
        }
        Ok(ToolConfig {
            mode: mode.ok_or_else(|| bad("no mode"))?,
            out_fd: out_fd.ok_or_else(|| bad("no out fd"))?,
            shared_fd: shared_fd.ok_or_else(|| bad("no shm fd"))?,
            follow,
            tool_pid: tool_pid.ok_or_else(|| bad("no tool pid"))?,
            trace,
            faults,
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
    /// Calls per syscall number (numbers past the table share the last slot).
    pub per_number: [AtomicU64; TRACKED_NUMBERS + 1],
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
            tool_pid: 42,
            trace: Some(vec![1, 257]),
            faults: vec![FaultRule {
                nr: 257,
                errno: 2,
                nth: 3,
            }],
        };
        assert_eq!(ToolConfig::decode(&config.encode()), Ok(config.clone()));
        let inner = ToolConfig {
            mode: Mode::Count,
            trace: None,
            faults: Vec::new(),
            ..config.clone()
        };
        let nested = format!("{}{CONFIG_SEPARATOR}{}", inner.encode(), config.encode());
        assert_eq!(ToolConfig::decode_all(&nested), Ok(vec![inner, config]));
        assert!(ToolConfig::decode("mode=count;out=1").is_err());
        assert!(ToolConfig::decode("mode=bogus;out=1;shm=2;tool=3").is_err());
    }
}
