//! What `dbi-cov` and `dbi-bbcount` collect in each followed process, and
//! the per-process report written when it exits (or execs).
//!
//! The transformer records every block the translator makes (its native
//! start, size and instruction count) in a table reserved at the
//! constructor, and for `dbi-bbcount` puts an inline counter in front of
//! it. A block is translated when control first reaches it, so the table
//! is the set of blocks that ran (a block translated again after an
//! invalidation appears twice).
//!
//! The report is written from the pre-hook of `exit_group`, `execve` and
//! `execveat`, which may run while another thread holds malloc's lock:
//! nothing there allocates. Modules are read from `/proc/self/maps` into
//! a buffer reserved at the constructor: a module is every file-backed
//! mapping of one path, from its lowest start to its highest end. Blocks
//! outside every module (JIT code, the vDSO) are counted but not listed.
//!
//! Coverage (`dbi-cov`) is DynamoRIO's drcov format, version 2: a text
//! header, a module table (`id, base, end, entry, checksum, timestamp,
//! path`), then `BB Table: N bbs` and N binary entries `{u32 start
//! (offset in the module), u16 size, u16 module id}`. One file per process:
//! `DIR/drcov.NAME.PID.proc.log` (NAME from `AT_EXECFN`).
//!
//! Not collected: a forked child stops translating (see sud-codegen's
//! `dbi/follow.rs`) and writes no file of its own; its exec'd image does.
//! A process killed by a signal (SIGPIPE in a pipeline, SIGKILL) never
//! reaches `exit_group` and writes no report.

use crate::config::Translate;
use std::cell::UnsafeCell;
use std::ffi::CString;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;
use sud_codegen::dbi::BlockIterator;

/// Blocks recorded per process; later ones are counted in `dropped`.
const BLOCKS: usize = 1 << 20;
/// Bytes of `/proc/self/maps` read at exit.
const MAPS_BYTES: usize = 4 << 20;
/// Modules told apart.
const MODULES: usize = 2048;
/// Most hottest blocks listed.
const MAX_TOP: usize = 256;

struct Block {
    start: AtomicU64,
    size: AtomicU32,
    instructions: AtomicU32,
    executions: AtomicU64,
}

#[derive(Clone, Copy)]
struct Module {
    base: u64,
    end: u64,
    /// The path: bytes `[path, path + path_len)` of the maps buffer.
    path: usize,
    path_len: usize,
    blocks: u64,
    executions: u64,
    instructions: u64,
}

const NO_MODULE: Module = Module {
    base: 0,
    end: 0,
    path: 0,
    path_len: 0,
    blocks: 0,
    executions: 0,
    instructions: 0,
};

/// What the exit writer works in, reserved at the constructor and used by
/// one thread (the one that claimed `writing`).
struct Scratch {
    maps: Vec<u8>,
    modules: Vec<Module>,
    out: Vec<u8>,
    top: Vec<usize>,
}

pub(crate) struct Collector {
    what: Translate,
    /// The directory of drcov files, NUL-terminated.
    dir: CString,
    blocks: Box<[Block]>,
    next: AtomicUsize,
    pid: i32,
    writing: AtomicBool,
    scratch: UnsafeCell<Scratch>,
}

// SAFETY: `scratch` is only touched by the one thread that set `writing`
// (see `write_report`); everything else is atomics or read-only.
unsafe impl Sync for Collector {}

static COLLECTOR: OnceLock<Collector> = OnceLock::new();

/// Reserves the collector for `what` (dbi-cov, dbi-bbcount); None for the
/// other modes. Runs in the constructor, where allocating is fine.
pub(crate) fn prepare(what: &Translate) -> Option<&'static Collector> {
    let dir = match what {
        Translate::Coverage(dir) => CString::new(dir.as_str()).ok()?,
        Translate::BlockCount { .. } => CString::default(),
        _ => return None,
    };
    Some(COLLECTOR.get_or_init(|| {
        Collector {
            what: what.clone(),
            dir,
            blocks: (0..BLOCKS)
                .map(|_| Block {
                    start: AtomicU64::new(0),
                    size: AtomicU32::new(0),
                    instructions: AtomicU32::new(0),
                    executions: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
            // SAFETY: getpid has no preconditions.
            pid: unsafe { libc::getpid() },
            writing: AtomicBool::new(false),
            scratch: UnsafeCell::new(Scratch {
                maps: vec![0; MAPS_BYTES],
                modules: vec![NO_MODULE; MODULES],
                out: vec![0; 64 << 10],
                top: vec![0; MAX_TOP],
            }),
        }
    }))
}

/// The transformer: records the block, and counts its executions for
/// dbi-bbcount. Runs in the translator (no allocation).
pub(crate) fn transform(block: &mut BlockIterator<'_>) {
    let Some(c) = COLLECTOR.get() else { return };
    let insns = block.instructions();
    let (Some(first), Some(last)) = (insns.first(), insns.last()) else {
        return;
    };
    let index = c.next.fetch_add(1, Relaxed);
    let Some(slot) = c.blocks.get(index) else {
        return;
    };
    slot.start.store(first.ip(), Relaxed);
    slot.size
        .store((last.next_ip() - first.ip()) as u32, Relaxed);
    slot.instructions.store(insns.len() as u32, Relaxed);
    if matches!(c.what, Translate::BlockCount { .. }) {
        // SAFETY of the reference: `COLLECTOR` is a static, never dropped.
        block.put_counter(&slot.executions, 1);
    }
}

/// The pre-hook of exit_group/execve/execveat: writes this process's
/// report (once; a failed execve leaves the first one written).
pub(crate) fn at_exit(out_fd: i32) {
    let Some(c) = COLLECTOR.get() else { return };
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != c.pid || c.writing.swap(true, Relaxed) {
        return;
    }
    // SAFETY: `writing` was false and is now ours: no other thread touches
    // the scratch (they return above).
    let scratch = unsafe { &mut *c.scratch.get() };
    c.write_report(scratch, out_fd);
}

/// A `fmt::Write` over a fixed buffer, flushed to a descriptor with raw
/// writes when full.
struct FdWriter<'a> {
    fd: i32,
    buf: &'a mut [u8],
    len: usize,
}

impl FdWriter<'_> {
    fn bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.len == self.buf.len() {
                self.flush();
            }
            let n = bytes.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
    }

    fn flush(&mut self) {
        let mut done = 0;
        while done < self.len {
            // SAFETY: writes initialized bytes of our buffer.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_write,
                    self.fd,
                    self.buf[done..].as_ptr(),
                    self.len - done,
                )
            };
            if n <= 0 {
                break;
            }
            done += n as usize;
        }
        self.len = 0;
    }
}

impl std::fmt::Write for FdWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

/// Reads `/proc/self/maps` into `buf` with raw syscalls; returns its length.
fn read_maps(buf: &mut [u8]) -> usize {
    // SAFETY: a NUL-terminated path; raw open/read/close on our own buffer.
    unsafe {
        let fd = libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return 0;
        }
        let mut len = 0;
        while len < buf.len() {
            let n = libc::syscall(libc::SYS_read, fd, buf[len..].as_mut_ptr(), buf.len() - len);
            if n <= 0 {
                break;
            }
            len += n as usize;
        }
        libc::syscall(libc::SYS_close, fd);
        len
    }
}

fn hex(text: &[u8]) -> u64 {
    text.iter().fold(0, |v, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => 0,
        };
        v << 4 | u64::from(d)
    })
}

/// The file-backed modules of `maps` into `modules`; returns their count.
fn parse_modules(maps: &[u8], modules: &mut [Module]) -> usize {
    let mut count = 0;
    let mut at = 0;
    let capacity = modules.len();
    for line in maps.split(|&b| b == b'\n') {
        let line_start = at;
        at += line.len() + 1;
        // "start-end perms offset dev inode   path"
        let mut fields = line.splitn(6, |&b| b == b' ');
        let (Some(range), Some(_), Some(_), Some(_), Some(_), Some(rest)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let pad = rest.iter().take_while(|&&b| b == b' ').count();
        let path = &rest[pad..];
        if path.first() != Some(&b'/') || path.ends_with(b" (deleted)") {
            continue;
        }
        let path_at = line_start + (line.len() - path.len());
        let Some(dash) = range.iter().position(|&b| b == b'-') else {
            continue;
        };
        let (start, end) = (hex(&range[..dash]), hex(&range[dash + 1..]));
        let known = modules[..count]
            .iter_mut()
            .find(|m| &maps[m.path..m.path + m.path_len] == path);
        match known {
            Some(m) => {
                m.base = m.base.min(start);
                m.end = m.end.max(end);
            }
            None if count < capacity => {
                modules[count] = Module {
                    base: start,
                    end,
                    path: path_at,
                    path_len: path.len(),
                    ..NO_MODULE
                };
                count += 1;
            }
            None => {}
        }
    }
    count
}

fn module_of(modules: &[Module], start: u64, size: u64) -> Option<usize> {
    modules
        .iter()
        .position(|m| m.base <= start && start + size <= m.end)
}

/// The basename of this image's path (`AT_EXECFN`), for file names.
fn program_name() -> &'static [u8] {
    // SAFETY: getauxval only reads the auxiliary vector.
    let execfn = unsafe { libc::getauxval(libc::AT_EXECFN) } as *const libc::c_char;
    if execfn.is_null() {
        return b"program";
    }
    // SAFETY: AT_EXECFN is a NUL-terminated string on the initial stack,
    // alive for the process's life.
    let path = unsafe { std::ffi::CStr::from_ptr(execfn) }.to_bytes();
    path.rsplit(|&b| b == b'/').next().unwrap_or(b"program")
}

impl Collector {
    fn recorded(&self) -> &[Block] {
        let n = self.next.load(Relaxed).min(self.blocks.len());
        &self.blocks[..n]
    }

    fn write_report(&self, scratch: &mut Scratch, out_fd: i32) {
        let maps_len = read_maps(&mut scratch.maps);
        let maps = &scratch.maps[..maps_len];
        let count = parse_modules(maps, &mut scratch.modules);
        let modules = &mut scratch.modules[..count];
        match self.what {
            Translate::Coverage(_) => self.write_drcov(maps, modules, &mut scratch.out),
            Translate::BlockCount { top, json } => {
                let top = (top as usize).min(MAX_TOP);
                self.write_counts(
                    maps,
                    modules,
                    &mut scratch.top[..top],
                    json,
                    out_fd,
                    &mut scratch.out,
                )
            }
            _ => {}
        }
    }

    fn write_drcov(&self, maps: &[u8], modules: &[Module], out: &mut [u8]) {
        // DIR/drcov.NAME.PID.proc.log, built in the output buffer's tail.
        let mut path = [0u8; 4096];
        let mut len = 0;
        let mut put = |bytes: &[u8]| {
            let n = bytes.len().min(path.len() - 1 - len);
            path[len..len + n].copy_from_slice(&bytes[..n]);
            len += n;
        };
        put(self.dir.as_bytes());
        put(b"/drcov.");
        put(program_name());
        let mut pid = PidText::default();
        let _ = write!(pid, ".{}.proc.log", self.pid);
        put(&pid.buf[..pid.len]);
        // SAFETY: `path` is NUL-terminated (zeroed, written short of its end).
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat,
                libc::AT_FDCWD,
                path.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            )
        } as i32;
        if fd < 0 {
            return;
        }
        let mut w = FdWriter {
            fd,
            buf: out,
            len: 0,
        };
        let _ = write!(
            w,
            "DRCOV VERSION: 2\nDRCOV FLAVOR: drcov\nModule Table: version 2, count {}\n\
             Columns: id, base, end, entry, checksum, timestamp, path\n",
            modules.len()
        );
        for (id, m) in modules.iter().enumerate() {
            let _ = write!(
                w,
                "{id:3}, {:#018x}, {:#018x}, 0x0000000000000000, 0x00000000, 0x00000000, ",
                m.base, m.end
            );
            w.bytes(&maps[m.path..m.path + m.path_len]);
            w.bytes(b"\n");
        }
        let listed = |b: &Block| {
            let (start, size) = (b.start.load(Relaxed), u64::from(b.size.load(Relaxed)));
            module_of(modules, start, size).map(|id| (id, start - modules[id].base, size))
        };
        let count = self.recorded().iter().filter_map(listed).count();
        let _ = writeln!(w, "BB Table: {count} bbs");
        for (id, offset, size) in self.recorded().iter().filter_map(listed) {
            let mut entry = [0u8; 8];
            entry[..4].copy_from_slice(&(offset as u32).to_le_bytes());
            entry[4..6].copy_from_slice(&(size.min(u64::from(u16::MAX)) as u16).to_le_bytes());
            entry[6..].copy_from_slice(&(id as u16).to_le_bytes());
            w.bytes(&entry);
        }
        w.flush();
        // SAFETY: closes the descriptor opened above.
        unsafe { libc::syscall(libc::SYS_close, fd) };
    }

    fn write_counts(
        &self,
        maps: &[u8],
        modules: &mut [Module],
        top: &mut [usize],
        json: bool,
        out_fd: i32,
        out: &mut [u8],
    ) {
        let blocks = self.recorded();
        let (mut executions, mut instructions, mut outside) = (0u64, 0u64, 0u64);
        let mut ranked = 0;
        for (i, b) in blocks.iter().enumerate() {
            let runs = b.executions.load(Relaxed);
            let insns = runs * u64::from(b.instructions.load(Relaxed));
            executions += runs;
            instructions += insns;
            match module_of(
                modules,
                b.start.load(Relaxed),
                u64::from(b.size.load(Relaxed)),
            ) {
                Some(id) => {
                    let m = &mut modules[id];
                    m.blocks += 1;
                    m.executions += runs;
                    m.instructions += insns;
                }
                None => outside += 1,
            }
            // Keep `top` sorted by executions, hottest first (ties: earlier
            // translation first).
            let runs_of = |j: usize| blocks[j].executions.load(Relaxed);
            let mut at = if ranked < top.len() {
                ranked += 1;
                ranked - 1
            } else if ranked > 0 && runs > runs_of(top[ranked - 1]) {
                ranked - 1
            } else {
                continue;
            };
            top[at] = i;
            while at > 0 && runs_of(top[at - 1]) < runs {
                top.swap(at, at - 1);
                at -= 1;
            }
        }
        let mut w = FdWriter {
            fd: out_fd,
            buf: out,
            len: 0,
        };
        let path = |m: &Module| &maps[m.path..m.path + m.path_len];
        let place = |j: usize| {
            let b = &blocks[j];
            let start = b.start.load(Relaxed);
            let id = module_of(modules, start, u64::from(b.size.load(Relaxed)));
            (id, id.map_or(start, |id| start - modules[id].base))
        };
        // What ran native: blocks the translator left native (it cannot
        // handle them, or they are stop addresses such as the engine's
        // signal restorer) and the transfers into them.
        let native = sud_codegen::dbi::Dbi::installed().map(|d| d.counters());
        let (native_blocks, native_entries) =
            native.map_or((0, 0), |c| (c.native_blocks, c.native_entries));
        if json {
            let _ = write!(
                w,
                "{{\"pid\": {}, \"blocks\": {}, \"executed_blocks\": {executions}, \
                 \"instructions\": {instructions}, \"blocks_outside_modules\": {outside}, \
                 \"native_blocks\": {native_blocks}, \"native_entries\": {native_entries}, \"modules\": [",
                self.pid,
                blocks.len()
            );
            let mut first = true;
            for m in modules.iter().filter(|m| m.blocks > 0) {
                w.bytes(if first {
                    b"{\"path\": \""
                } else {
                    b", {\"path\": \""
                });
                first = false;
                json_string(&mut w, path(m));
                let _ = write!(
                    w,
                    "\", \"blocks\": {}, \"executed_blocks\": {}, \"instructions\": {}}}",
                    m.blocks, m.executions, m.instructions
                );
            }
            w.bytes(b"], \"hottest\": [");
            for (k, &j) in top[..ranked].iter().enumerate() {
                let (id, offset) = place(j);
                w.bytes(if k == 0 {
                    b"{\"module\": \""
                } else {
                    b", {\"module\": \""
                });
                if let Some(id) = id {
                    json_string(&mut w, path(&modules[id]));
                }
                let b = &blocks[j];
                let _ = write!(
                    w,
                    "\", \"offset\": {offset}, \"executions\": {}, \"instructions\": {}}}",
                    b.executions.load(Relaxed),
                    b.instructions.load(Relaxed)
                );
            }
            w.bytes(b"]}\n");
        } else {
            let _ = write!(
                w,
                "dbi-bbcount: pid {}: {} blocks, {executions} block executions, {instructions} instructions; \
                 left native: {native_blocks} blocks, entered {native_entries} times\n\
                 {:>14} {:>16} {:>8}  module\n",
                self.pid,
                blocks.len(),
                "instructions",
                "block runs",
                "blocks"
            );
            for m in modules.iter().filter(|m| m.blocks > 0) {
                let _ = write!(
                    w,
                    "{:>14} {:>16} {:>8}  ",
                    m.instructions, m.executions, m.blocks
                );
                w.bytes(path(m));
                w.bytes(b"\n");
            }
            let _ = writeln!(w, "{:>14} {:>6}  module+offset", "executions", "insns");
            for &j in &top[..ranked] {
                let (id, offset) = place(j);
                let b = &blocks[j];
                let _ = write!(
                    w,
                    "{:>14} {:>6}  ",
                    b.executions.load(Relaxed),
                    b.instructions.load(Relaxed)
                );
                match id {
                    Some(id) => {
                        let p = path(&modules[id]);
                        w.bytes(p.rsplit(|&c| c == b'/').next().unwrap_or(p));
                    }
                    None => w.bytes(b"?"),
                }
                let _ = writeln!(w, "+{offset:#x}");
            }
        }
        w.flush();
    }
}

fn json_string(w: &mut FdWriter<'_>, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' | b'\\' => w.bytes(&[b'\\', b]),
            0..=0x1f => {
                let _ = write!(w, "\\u{:04x}", b);
            }
            _ => w.bytes(&[b]),
        }
    }
}

/// A small stack buffer for formatting numbers.
#[derive(Default)]
struct PidText {
    buf: [u8; 32],
    len: usize,
}

impl std::fmt::Write for PidText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}
