//! The in-process half of the tools: when `libsud_examples.so` is loaded
//! with `LD_PRELOAD` into a program started by a tool, its constructor
//! installs the engine with every thread on BLOCK, so each syscall of the
//! program traps into the hooks below. The engine arms threads made by
//! clone/clone3 before their first instruction and re-arms fork and vfork
//! children; the hooks here keep the preload in every `execve`, keep the
//! tool's two file descriptors open, and do the tool's job (trace, count,
//! inject faults).
//!
//! Everything reachable from `pre` and `post` runs in the SIGSYS handler,
//! often while the program holds malloc's lock: no allocation, no lock,
//! output through a stack buffer and one raw `write` per line.
//!
//! What the tools cannot see, by construction:
//! - syscalls made before this constructor runs: the first `execve` and
//!   the dynamic loader's own calls (each new image's `execve` line is
//!   printed by the new image, from `AT_EXECFN` and its argv);
//! - programs that do not load `LD_PRELOAD` (static or set-uid binaries);
//! - the `rt_sigreturn` of the program's signal handlers (the engine runs
//!   them through its wrapper and returns through its own restorer);
//! - a child made with `CLONE_VM` but neither `CLONE_SETTLS` nor
//!   `CLONE_VFORK` shares its parent's selector byte (its TLS): while one
//!   of the two is inside a hook or a call the engine runs for it, the
//!   other's syscalls pass unseen. glibc's threads (own TLS) and
//!   posix_spawn (the parent waits) are not affected.
//!
//! The tool's two descriptors (`launcher::OUT_FD`, `launcher::SHARED_FD`)
//! are visible to the program, e.g. in `/proc/self/fd`.

use crate::config::{Mode, SharedArea, ToolConfig, CONFIG_ENV};
use crate::text::{read_memory, Line};
use crate::tracer::{self, Prefix};
use std::cell::Cell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::OnceLock;
use sud_engine::{Engine, Errno, Selector, Syscall, SyscallSet, Sysno, Verdict};

/// Everything the hooks need, set once by the constructor.
struct Preload {
    config: ToolConfig,
    shared: &'static SharedArea,
    /// sudtrace: the syscalls to print.
    print: SyscallSet,
    /// This library's path, as `LD_PRELOAD` must name it.
    so_path: CString,
    /// `LD_PRELOAD=<so_path>`.
    preload_entry: CString,
    /// `SUD_TOOL=<config>`.
    config_entry: CString,
}

static PRELOAD: OnceLock<Preload> = OnceLock::new();

thread_local! {
    /// The environment copy made for this thread's pending execve, unmapped
    /// if the execve fails.
    static EXEC_ENV_COPY: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

// Runs when the dynamic loader maps the library, before the program's own
// constructors and main. glibc passes argc, argv and envp.
#[used]
#[link_section = ".init_array"]
static PRELOAD_INIT: extern "C" fn(c_int, *const *const c_char, *const *const c_char) =
    preload_init;

extern "C" fn preload_init(argc: c_int, argv: *const *const c_char, envp: *const *const c_char) {
    // SAFETY: getenv with a NUL-terminated name; no other thread exists yet.
    let raw = unsafe { libc::getenv(c"SUD_TOOL".as_ptr()) };
    if raw.is_null() {
        return;
    }
    // The library is also linked (as an rlib) into the tools themselves:
    // only the preloaded shared object acts.
    let Some(so_path) = own_shared_object() else {
        return;
    };
    // SAFETY: getenv returned a NUL-terminated string in the environment.
    let text = unsafe { CStr::from_ptr(raw) }
        .to_string_lossy()
        .into_owned();
    let config = match ToolConfig::decode(&text) {
        Ok(config) => config,
        Err(e) => return complain(2, &format!("sud preload: {e}; not tracing")),
    };
    // SAFETY: getppid has no preconditions.
    let is_root = unsafe { libc::getppid() } as u32 == config.tool_pid;
    if !config.follow && !is_root {
        return;
    }
    let Some(shared) = map_shared(config.shared_fd) else {
        return complain(
            config.out_fd,
            "sud preload: cannot map the tool's counters; not tracing",
        );
    };
    let print = match &config.trace {
        Some(list) => list.iter().fold(SyscallSet::empty(), |mut set, &nr| {
            set.insert(nr);
            set
        }),
        None => SyscallSet::all(),
    };
    let mut watch = match config.mode {
        Mode::Trace => print.clone(),
        Mode::Count => SyscallSet::all(),
        Mode::Fault => config
            .faults
            .iter()
            .fold(SyscallSet::empty(), |mut set, r| {
                set.insert(r.nr);
                set
            }),
    };
    for always in [
        Sysno::execve,
        Sysno::execveat,
        Sysno::exit,
        Sysno::exit_group,
        Sysno::close,
        Sysno::close_range,
        Sysno::clone,
        Sysno::clone3,
        #[cfg(target_arch = "x86_64")]
        Sysno::fork,
        #[cfg(target_arch = "x86_64")]
        Sysno::vfork,
    ] {
        watch.insert(always.id() as u64);
    }
    let mut preload_entry = b"LD_PRELOAD=".to_vec();
    preload_entry.extend_from_slice(so_path.as_bytes());
    let config_entry = format!("{CONFIG_ENV}={text}");
    let preload = Preload {
        config,
        shared,
        print,
        so_path,
        preload_entry: CString::new(preload_entry).unwrap_or_default(),
        config_entry: CString::new(config_entry).unwrap_or_default(),
    };
    let preload = PRELOAD.get_or_init(|| preload);
    if preload.config.mode == Mode::Trace {
        preload.trace_exec_success(argc, argv, envp);
    }
    let installed = Engine::builder()
        .watch(watch)
        .pre_hook(pre)
        .post_hook(post)
        .follow_fork(preload.config.follow)
        .foreign_signal_handlers(true)
        .initial_selector(Selector::Block)
        .install();
    if let Err(e) = installed {
        complain(
            preload.config.out_fd,
            &format!("sud preload: cannot intercept this program's syscalls: {e}"),
        );
        // SAFETY: _exit ends the process at once; nothing is left to run.
        unsafe { libc::_exit(125) };
    }
}

fn complain(fd: i32, message: &str) {
    write_all(fd, format!("{message}\n").as_bytes());
}

/// This library's path when it runs from a shared object other than the
/// main program, else `None`.
fn own_shared_object() -> Option<CString> {
    // SAFETY: Dl_info is plain data; dladdr fills it for an address inside
    // a loaded object and returns 0 otherwise. getauxval(AT_PHDR) is the
    // main program's program headers, mapped inside the main program.
    unsafe {
        let mut here: libc::Dl_info = std::mem::zeroed();
        let mut main: libc::Dl_info = std::mem::zeroed();
        let main_phdr = libc::getauxval(libc::AT_PHDR) as *const libc::c_void;
        if libc::dladdr(preload_init as *const libc::c_void, &mut here) == 0
            || here.dli_fname.is_null()
        {
            return None;
        }
        if libc::dladdr(main_phdr, &mut main) != 0 && main.dli_fbase == here.dli_fbase {
            return None;
        }
        Some(CStr::from_ptr(here.dli_fname).to_owned())
    }
}

fn map_shared(fd: i32) -> Option<&'static SharedArea> {
    // SAFETY: a fresh shared mapping of the tool's memfd, which the tool
    // sized to SharedArea::SIZE; never unmapped, so 'static is sound.
    // SharedArea is all atomics, valid for any bytes.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            SharedArea::SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        (addr != libc::MAP_FAILED).then(|| &*(addr as *const SharedArea))
    }
}

/// [`sud_engine::raw_syscall`] with a typed number, for hooks (the selector
/// is ALLOW while hooks run) and for the constructor.
///
/// # Safety
/// As for `raw_syscall`: the arguments must be valid for `nr`.
unsafe fn raw(nr: Sysno, a: [u64; 6]) -> i64 {
    // SAFETY: the caller vouches for the arguments.
    unsafe { sud_engine::raw_syscall(nr.id() as u64, a) }
}

/// getpid, without libc.
fn getpid() -> i64 {
    // SAFETY: getpid takes no arguments and touches no memory.
    unsafe { raw(Sysno::getpid, [0; 6]) }
}

fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: write only reads `bytes.len()` bytes at `bytes`.
        let n = unsafe {
            raw(
                Sysno::write,
                [
                    fd as u64,
                    bytes.as_ptr() as u64,
                    bytes.len() as u64,
                    0,
                    0,
                    0,
                ],
            )
        };
        if n == -(libc::EINTR as i64) {
            continue;
        }
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

fn gettid() -> i64 {
    // SAFETY: gettid takes no arguments and touches no memory.
    unsafe { raw(Sysno::gettid, [0; 6]) }
}

/// What a clone-family call will create, read from its arguments.
struct Creation {
    thread: bool,
    /// CLONE_VM (vfork, posix_spawn): the child runs in our memory.
    shares_memory: bool,
    /// A new stack: the engine re-issues the call, the hooks never see the
    /// result (the parent resumes in the program with the child's tid).
    reissued: bool,
}

fn creation(call: &Syscall) -> Option<Creation> {
    let (flags, stack) = match call.sysno()? {
        Sysno::clone => (call.args[0], call.args[1]),
        Sysno::clone3 => {
            // struct clone_args: flags, pidfd, child_tid, parent_tid,
            // exit_signal, stack, stack_size.
            let mut head = [0u8; 56];
            if call.args[1] < 56 || read_memory(call.args[0], &mut head) != 56 {
                return None;
            }
            let word =
                |i: usize| u64::from_ne_bytes(head[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
            (word(0), word(5))
        }
        #[cfg(target_arch = "x86_64")]
        Sysno::fork => (0, 0),
        #[cfg(target_arch = "x86_64")]
        Sysno::vfork => (libc::CLONE_VM as u64, 0),
        _ => return None,
    };
    Some(Creation {
        thread: flags & libc::CLONE_THREAD as u64 != 0,
        shares_memory: flags & libc::CLONE_VM as u64 != 0,
        reissued: stack != 0,
    })
}

/// Calls whose result no post-hook sees.
fn returns_unseen(call: &Syscall) -> bool {
    match call.sysno() {
        Some(Sysno::exit | Sysno::exit_group | Sysno::rt_sigreturn) => true,
        Some(Sysno::clone | Sysno::clone3) => creation(call).is_some_and(|c| c.reissued),
        _ => false,
    }
}

fn pre(call: &Syscall) -> Verdict {
    let Some(p) = PRELOAD.get() else {
        return Verdict::Run;
    };
    let sysno = call.sysno();
    if let Some(created) = creation(call) {
        tracer::task_starting(p.shared, created.thread);
        if created.reissued {
            p.count_creation(created.thread);
        }
    }
    match p.config.mode {
        Mode::Count => {
            p.shared.per_number[SharedArea::slot(call.nr)].fetch_add(1, Relaxed);
        }
        Mode::Fault => {
            if let Some(verdict) = p.inject(call) {
                return verdict;
            }
        }
        Mode::Trace => {}
    }
    if let Some(verdict) = p.protect_tool_fds(call) {
        return verdict;
    }
    if p.config.mode == Mode::Trace {
        tracer::on_entry(&p.config.options);
    }
    if let Some(Sysno::execve | Sysno::execveat) = sysno {
        return p.keep_preload_in_exec(call);
    }
    if p.config.mode == Mode::Trace && returns_unseen(call) {
        p.trace(call, None);
    }
    Verdict::Run
}

fn post(call: &Syscall, result: &mut i64) {
    let Some(p) = PRELOAD.get() else {
        return;
    };
    if let Some(Sysno::execve | Sysno::execveat) = call.sysno() {
        release_exec_env_copy();
    }
    if let Some(created) = creation(call) {
        if *result == 0 {
            // The forked child: the parent reports the call.
            crate::text::forget_pid();
            if !created.shares_memory {
                tracer::in_forked_child();
            }
            return;
        }
        if *result < 0 {
            tracer::task_not_started(p.shared, created.thread);
        }
        if *result > 0 {
            p.count_creation(false);
            // A vfork child may have cached its own pid in our memory.
            crate::text::forget_pid();
        }
    }
    if p.config.mode == Mode::Trace {
        p.trace(call, Some(*result));
    }
}

impl Preload {
    fn count_creation(&self, thread: bool) {
        if !thread {
            self.shared.processes.fetch_add(1, Relaxed);
        }
        self.shared.threads.fetch_add(1, Relaxed);
    }

    /// How this thread's lines start; `None` when its lines are not
    /// shown (no `-f`, and not the first process's first thread).
    fn prefix(&self, pid: i64, tid: i64) -> Option<Prefix> {
        if !self.config.follow {
            return (tid == pid).then_some(Prefix::Nothing);
        }
        let options = &self.config.options;
        if options.per_task.is_some() {
            Some(Prefix::Nothing)
        } else if options.pid_column {
            Some(Prefix::Column(tid))
        } else if tracer::many_tasks(self.shared) {
            Some(Prefix::Bracket(tid))
        } else {
            Some(Prefix::Nothing)
        }
    }

    fn trace(&self, call: &Syscall, result: Option<i64>) {
        let exits = matches!(call.sysno(), Some(Sysno::exit | Sysno::exit_group));
        let printed = self.print.contains(call.nr);
        if !printed && !exits {
            return;
        }
        let (pid, tid) = (crate::text::own_pid(), gettid());
        let Some(who) = self.prefix(pid, tid) else {
            return;
        };
        let options = &self.config.options;
        if printed && tracer::shown(options, result) {
            let mut line = Line::new();
            tracer::syscall_line(
                &mut line, options, who, pid, tid, call.nr, &call.args, result,
            );
            self.emit(line.as_bytes());
        }
        // strace reports every exit, whatever -e trace= shows.
        if exits {
            let mut line = Line::new();
            tracer::exit_line(
                &mut line,
                options,
                who,
                pid,
                tid,
                call.args[0] as i32 & 0xff,
            );
            self.emit(line.as_bytes());
            tracer::task_ending(self.shared, call.sysno() == Some(Sysno::exit_group));
        }
    }

    /// Writes one finished line where this task's output goes.
    fn emit(&self, bytes: &[u8]) {
        match &self.config.options.per_task {
            Some(base) => {
                if let Some(fd) = open_task_output(base, gettid()) {
                    write_all(fd, bytes);
                    // SAFETY: closing the descriptor opened just above.
                    unsafe { raw(Sysno::close, [fd as u64, 0, 0, 0, 0, 0]) };
                }
            }
            None => write_all(self.config.out_fd, bytes),
        }
    }

    /// The line for the execve that started this image (the old image
    /// could not print it: a successful execve does not return). Runs in
    /// the constructor, where allocating is fine.
    fn trace_exec_success(
        &self,
        argc: c_int,
        argv: *const *const c_char,
        envp: *const *const c_char,
    ) {
        if !self.print.contains(Sysno::execve.id() as u64) {
            return;
        }
        let Some(who) = self.prefix(getpid(), gettid()) else {
            return;
        };
        // SAFETY: AT_EXECFN is the file name the kernel was given, a
        // NUL-terminated string on the initial stack (or 0 when absent).
        let execfn = unsafe { libc::getauxval(libc::AT_EXECFN) };
        let mut args = [execfn, argv as u64, envp as u64, 0, 0, 0];
        if argc < 0 {
            args[1] = 0;
        }
        let options = &self.config.options;
        tracer::on_entry(options);
        if tracer::shown(options, Some(0)) {
            let mut line = Line::new();
            let nr = Sysno::execve.id() as u64;
            tracer::syscall_line(
                &mut line,
                options,
                who,
                getpid(),
                gettid(),
                nr,
                &args,
                Some(0),
            );
            self.emit(line.as_bytes());
        }
    }

    /// sudfault: fails the call if a rule says so, and reports it.
    fn inject(&self, call: &Syscall) -> Option<Verdict> {
        for (i, rule) in self.config.faults.iter().enumerate() {
            if rule.nr != call.nr {
                continue;
            }
            let n = self.shared.rule_calls[i].fetch_add(1, Relaxed) + 1;
            if rule.nth != 0 && rule.nth != n {
                continue;
            }
            self.shared.rule_injected[i].fetch_add(1, Relaxed);
            let result = -(rule.errno as i64);
            let mut line = Line::new();
            tracer::fault_line(
                &mut line,
                &self.config.options,
                getpid(),
                gettid(),
                call.nr,
                &call.args,
                result,
                n,
            );
            write_all(self.config.out_fd, line.as_bytes());
            return Some(Verdict::Fail(Errno::new(rule.errno)));
        }
        None
    }

    /// Keeps the program from closing the tool's descriptors (shells and
    /// subprocess launchers close every fd they do not know): `close` of
    /// one is reported done without doing it, `close_range` skips them.
    fn protect_tool_fds(&self, call: &Syscall) -> Option<Verdict> {
        let (out, shm) = (self.config.out_fd as u64, self.config.shared_fd as u64);
        match call.sysno()? {
            Sysno::close if call.args[0] == out || call.args[0] == shm => Some(Verdict::Return(0)),
            Sysno::close_range => {
                let [first, last, flags, ..] = call.args;
                let (first, last) = (first & 0xffff_ffff, last & 0xffff_ffff);
                let (low, high) = (out.min(shm), out.max(shm));
                if last < low || first > high || high - low != 1 {
                    return None;
                }
                let mut result = 0;
                if first < low {
                    // SAFETY: close_range takes integers only; closing the
                    // program's descriptors is what the program asked for.
                    result = unsafe { raw(Sysno::close_range, [first, low - 1, flags, 0, 0, 0]) };
                }
                if result == 0 && last > high {
                    // SAFETY: as above.
                    result = unsafe { raw(Sysno::close_range, [high + 1, last, flags, 0, 0, 0]) };
                }
                Some(Verdict::Return(result))
            }
            _ => None,
        }
    }

    /// An execve keeps this library and the tool's configuration in the
    /// new image's environment, even when the program rewrote it: the
    /// environment is copied (into a private mapping: no malloc here) with
    /// our two entries put back.
    fn keep_preload_in_exec(&self, call: &Syscall) -> Verdict {
        let envp_index = if call.sysno() == Some(Sysno::execve) {
            2
        } else {
            3
        };
        let envp = call.args[envp_index];
        let mut count = 0u64;
        let mut preload_value: Option<(u64, usize)> = None;
        let mut has_config = false;
        let mut has_preload = false;
        let mut text = [0u8; 4096];
        while let Some(ptr) = read_word(envp, count).filter(|&ptr| ptr != 0) {
            count += 1;
            let n = read_memory(ptr, &mut text);
            let entry = &text[..n];
            let entry = &entry[..entry.iter().position(|&b| b == 0).unwrap_or(n)];
            if entry == self.config_entry.as_bytes() {
                has_config = true;
            } else if let Some(value) = entry.strip_prefix(b"LD_PRELOAD=") {
                let ours = self.so_path.as_bytes();
                has_preload |= value
                    .split(|&b| b == b':' || b == b' ')
                    .any(|part| part == ours);
                preload_value = Some((ptr + 11, value.len()));
            }
        }
        if has_config && has_preload {
            return Verdict::Run;
        }
        // Room for the kept pointers, our two, the terminator, and a new
        // LD_PRELOAD value: ours, ':', theirs.
        let pointers = (count + 3) * 8;
        let their_len = preload_value.map_or(0, |(_, len)| len as u64);
        let strings = self.preload_entry.as_bytes().len() as u64 + 1 + their_len + 1;
        let size = (pointers + strings + 4095) & !4095;
        // SAFETY: a fresh anonymous private mapping (no address hint): it
        // replaces nothing. Filled below, unmapped if the execve fails.
        let map = unsafe {
            raw(
                Sysno::mmap,
                [
                    0,
                    size,
                    (libc::PROT_READ | libc::PROT_WRITE) as u64,
                    (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                    u64::MAX,
                    0,
                ],
            )
        };
        if map < 0 {
            return Verdict::Run;
        }
        let base = map as u64;
        // SAFETY: [base, base + size) is the fresh mapping made above, large
        // enough for `count + 3` pointers followed by the new LD_PRELOAD
        // entry; nothing else refers to it.
        let area = unsafe { std::slice::from_raw_parts_mut(base as *mut u8, size as usize) };
        let (pointer_area, string_area) = area.split_at_mut(pointers as usize);
        let mut entry_len = 0;
        let mut push = |bytes: &[u8]| {
            string_area[entry_len..entry_len + bytes.len()].copy_from_slice(bytes);
            entry_len += bytes.len();
        };
        push(self.preload_entry.as_bytes());
        if let Some((value_ptr, len)) = preload_value.filter(|_| !has_preload) {
            if len > 0 {
                push(b":");
                let got = read_memory(value_ptr, &mut text[..len.min(4096)]);
                push(&text[..got]);
            }
        }
        push(b"\0");
        let new_preload = base + pointers;
        let mut kept = 0usize;
        let mut put = |ptr: u64| {
            pointer_area[kept * 8..kept * 8 + 8].copy_from_slice(&ptr.to_ne_bytes());
            kept += 1;
        };
        for i in 0..count {
            let Some(ptr) = read_word(envp, i) else { break };
            let n = read_memory(ptr, &mut text[..16]);
            let head = &text[..n];
            let ours = head.starts_with(b"LD_PRELOAD=") || head.starts_with(&config_head());
            if !ours {
                put(ptr);
            }
        }
        put(new_preload);
        put(self.config_entry.as_ptr() as u64);
        put(0);
        EXEC_ENV_COPY.with(|c| c.set((base, size)));
        let mut args = call.args;
        args[envp_index] = base;
        Verdict::RunWith(args)
    }
}

/// `-ff`: opens `BASE.<tid>` for appending one line (opened per line and
/// closed at once, so the program never holds or closes it). The one
/// place a per-task output is opened.
fn open_task_output(base: &str, tid: i64) -> Option<i32> {
    let mut path = [0u8; 4200];
    tracer::task_file_name(base, tid, &mut path)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC;
    // SAFETY: openat with a NUL-terminated path in `path`.
    let fd = unsafe {
        raw(
            Sysno::openat,
            [
                libc::AT_FDCWD as u64,
                path.as_ptr() as u64,
                flags as u64,
                0o644,
                0,
                0,
            ],
        )
    };
    (fd >= 0).then_some(fd as i32)
}

/// `SUD_TOOL=` as bytes, without allocating.
fn config_head() -> [u8; CONFIG_ENV.len() + 1] {
    let mut head = [b'='; CONFIG_ENV.len() + 1];
    head[..CONFIG_ENV.len()].copy_from_slice(CONFIG_ENV.as_bytes());
    head
}

fn read_word(array: u64, index: u64) -> Option<u64> {
    let mut word = [0u8; 8];
    (array != 0 && read_memory(array + index * 8, &mut word) == 8).then(|| u64::from_ne_bytes(word))
}

fn release_exec_env_copy() {
    let (base, size) = EXEC_ENV_COPY.with(|c| c.replace((0, 0)));
    if base != 0 {
        // SAFETY: [base, base + size) is the mapping this thread made for
        // its execve, which failed: nothing refers to it any more.
        unsafe { raw(Sysno::munmap, [base, size, 0, 0, 0, 0]) };
    }
}
