//! The DBI corpus (tests/corpus/dbi_corpus.c, compiled here into a shared
//! library): every function gives the same result translated as native,
//! every syscall it makes from translated code reaches the engine as a
//! direct call with no trap, and the executed block and instruction counts
//! (inline counters put by a transformer) are the same in two processes.
#![cfg(target_arch = "x86_64")]

mod common;
#[path = "corpus/compile.rs"]
mod corpus;

use common::*;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use sud_codegen::dbi::{BlockIterator, Dbi, DbiError};
use sud_codegen::CodeCache;
use sud_engine::{selector, Engine, Entrance, Selector, Verdict};

/// (function, syscalls its translated run must make at least, whether its
/// executed-block count is fixed across processes). Thread creation is not:
/// whether `pthread_join` waits depends on which thread gets there first;
/// nor is the vDSO clock: its seqlock loop runs again when the kernel
/// updates the time while it reads.
const CORPUS: &[(&str, u64, bool)] = &[
    ("leaf_arith", 0, true),
    ("recursion", 0, true),
    ("switch_table", 0, true),
    ("function_pointers", 0, true),
    ("qsort_callback", 0, true),
    ("rip_relative", 0, true),
    ("sse_avx", 0, true),
    ("varargs", 0, true),
    ("setjmp_longjmp", 0, true),
    ("stack_hungry", 0, true),
    ("native_return_address", 0, true),
    ("syscall_getpid", 2, true),
    ("syscall_pipe_write", 5, true),
    ("vdso_clock", 0, false),
    ("thread_create", 3, false),
    ("fork_child", 1, true),
];

/// Compiles the corpus once per test process.
pub fn corpus_library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("dbi-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lib = dir.join("libdbi_corpus.so");
        corpus::compile_shared_library(&corpus::corpus_source(env!("CARGO_MANIFEST_DIR")), &lib);
        lib
    })
}

/// `dlopen`s the corpus (RTLD_NOW: no lazy binding through the loader),
/// once per test process and before any fork: a child must not take the
/// loader's lock, which another test thread may have held at the fork.
fn open_corpus() -> *mut libc::c_void {
    struct Handle(usize);
    static HANDLE: OnceLock<Handle> = OnceLock::new();
    let handle = HANDLE.get_or_init(|| {
        let path = CString::new(corpus_library().to_str().unwrap()).unwrap();
        // SAFETY: dlopen with a valid path; the library has no constructors.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
        if handle.is_null() {
            // SAFETY: dlerror returns a NUL-terminated message after a failure.
            let why = unsafe { std::ffi::CStr::from_ptr(libc::dlerror()) };
            panic!("dlopen failed: {why:?}");
        }
        Handle(handle as usize)
    });
    handle.0 as *mut libc::c_void
}

fn symbol(handle: *mut libc::c_void, name: &str) -> usize {
    let cname = CString::new(name).unwrap();
    // SAFETY: dlsym on a live handle with a valid name.
    let addr = unsafe { libc::dlsym(handle, cname.as_ptr()) } as usize;
    assert_ne!(addr, 0, "{name} not found");
    addr
}

fn call_native(addr: usize) -> i64 {
    // SAFETY: corpus functions are `long f(void)`.
    let f: extern "C" fn() -> i64 = unsafe { std::mem::transmute(addr) };
    f()
}

static BLOCKS_RUN: AtomicU64 = AtomicU64::new(0);
static INSNS_RUN: AtomicU64 = AtomicU64::new(0);

fn count_everything(block: &mut BlockIterator<'_>) {
    block.put_counter(&BLOCKS_RUN, 1);
    block.put_counter(&INSNS_RUN, block.instructions().len() as u32);
}

fn install(transformer: Option<fn(&mut BlockIterator<'_>)>) -> (&'static Engine, &'static Dbi) {
    let cache: &'static CodeCache = Box::leak(Box::new(
        CodeCache::new(sud_codegen::DEFAULT_CAPACITY).unwrap(),
    ));
    let engine = Engine::builder()
        .placement(cache.placement())
        .install()
        .unwrap();
    let mut builder = Dbi::builder();
    if let Some(t) = transformer {
        builder = builder.transformer(t);
    }
    (engine, builder.install(cache).unwrap())
}

/// Runs the whole corpus in this (child) process; returns one line per
/// function with its executed counts.
fn run_corpus(handle: *mut libc::c_void) -> String {
    let (engine, dbi) = install(Some(count_everything));
    let mut report = String::new();
    for &(name, min_syscalls, fixed_counts) in CORPUS {
        let f = symbol(handle, name);
        let native = call_native(f);
        let engine_before = engine.counters();
        let (blocks_before, insns_before) = (BLOCKS_RUN.load(Relaxed), INSNS_RUN.load(Relaxed));
        // SAFETY: corpus functions are `long f(void)`.
        let translated = unsafe { dbi.call(f, &[]) }.unwrap() as i64;
        let engine_after = engine.counters();
        assert_eq!(
            selector::current(),
            Selector::Allow,
            "{name}: selector after the call"
        );
        assert_eq!(
            translated, native,
            "{name}: translated result differs from native"
        );
        assert_eq!(
            engine_after.traps, engine_before.traps,
            "{name}: translated code trapped"
        );
        let direct = engine_after.direct - engine_before.direct;
        assert!(
            direct >= min_syscalls,
            "{name}: {direct} direct syscalls, expected at least {min_syscalls}"
        );
        let blocks = BLOCKS_RUN.load(Relaxed) - blocks_before;
        let insns = INSNS_RUN.load(Relaxed) - insns_before;
        assert!(
            blocks > 0 && insns >= blocks,
            "{name}: {blocks} blocks, {insns} instructions"
        );
        if fixed_counts {
            report.push_str(&format!("{name} {blocks} {insns}\n"));
        }
    }
    let c = dbi.counters();
    assert_eq!(c.native_blocks, 0, "blocks left native: {c:?}");
    assert_eq!(c.native_entries, 0, "transfers into native code: {c:?}");
    // libc's own code ran translated too (qsort calling back, getpid, ...).
    // SAFETY: dlsym with RTLD_DEFAULT and a valid name.
    let qsort = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"qsort".as_ptr()) } as usize;
    assert!(
        dbi.translation_of(qsort).is_some(),
        "qsort was not translated"
    );
    assert!(c.direct_sites > 0 && c.links > 0, "{c:?}");
    report
}

#[test]
fn corpus_runs_translated_with_native_results_direct_syscalls_and_stable_counts() {
    let dir = corpus_library().parent().unwrap().to_path_buf();
    let handle = open_corpus() as usize;
    // Both children are forked from the same heap state: nothing is read
    // back (allocated) in between, as malloc's paths depend on its state.
    let outs = [dir.join("report-0"), dir.join("report-1")];
    for out in &outs {
        child_passes(|| std::fs::write(out, run_corpus(handle as *mut libc::c_void)).unwrap());
    }
    let reports = outs.map(|out| std::fs::read_to_string(out).unwrap());
    assert_eq!(
        reports[0].lines().count(),
        CORPUS.iter().filter(|c| c.2).count()
    );
    assert_eq!(
        reports[0], reports[1],
        "executed block counts differ between processes"
    );
}

#[test]
fn a_thread_created_by_translated_code_runs_translated() {
    let handle = open_corpus();
    child_passes(move || {
        // Which threads made a gettid, and how it reached the engine.
        static DIRECT_GETTID_TID: AtomicU64 = AtomicU64::new(0);
        static TRAPPED_GETTIDS: AtomicU64 = AtomicU64::new(0);
        static DIRECT_CLONES: AtomicU64 = AtomicU64::new(0);
        let cache: &'static CodeCache = Box::leak(Box::new(
            CodeCache::new(sud_codegen::DEFAULT_CAPACITY).unwrap(),
        ));
        let engine = Engine::builder()
            .placement(cache.placement())
            .pre_hook(|call| {
                let clones = [libc::SYS_clone as u64, libc::SYS_clone3 as u64];
                if clones.contains(&call.nr) && call.entrance == Entrance::Direct {
                    DIRECT_CLONES.fetch_add(1, Relaxed);
                }
                if call.nr == libc::SYS_gettid as u64 {
                    match call.entrance {
                        Entrance::Direct => DIRECT_GETTID_TID.store(call.tid as u64, Relaxed),
                        Entrance::Trap => _ = TRAPPED_GETTIDS.fetch_add(1, Relaxed),
                        // This engine does not rewrite sites.
                        Entrance::Rewritten => {}
                    }
                }
                Verdict::Run
            })
            .install()
            .unwrap();
        let dbi = Dbi::builder().install(cache).unwrap();
        let f = symbol(handle, "thread_create");
        let native = call_native(f);
        let before = engine.counters();
        // SAFETY: `long f(void)`.
        let translated = unsafe { dbi.call(f, &[]) }.unwrap() as i64;
        let after = engine.counters();
        assert_eq!(translated, native);
        assert_eq!(
            after.traps, before.traps,
            "the thread or its creator trapped"
        );
        // The thread's gettid came as a direct call from its translation,
        // from a thread armed under its own tid (it armed itself).
        // SAFETY: gettid has no preconditions.
        let main_tid = unsafe { libc::gettid() } as u64;
        let thread_tid = DIRECT_GETTID_TID.load(Relaxed);
        assert!(
            thread_tid != 0 && thread_tid != main_tid,
            "thread tid {thread_tid}, main {main_tid}"
        );
        assert_eq!(TRAPPED_GETTIDS.load(Relaxed), 0);
        // The thread-creating call itself reached the hooks as a direct call
        // (then ran at the site, so the thread started on its own stack).
        assert_eq!(DIRECT_CLONES.load(Relaxed), 1);
        assert!(after.direct - before.direct >= 3);
        assert_eq!(dbi.counters().native_entries, 0, "{:?}", dbi.counters());
    });
}

#[test]
fn transformer_keeps_drops_and_inserts_and_callouts_write_registers() {
    let handle = open_corpus();
    child_passes(move || {
        let five = symbol(handle, "returns_five") as u64;
        let mut builder = Dbi::builder();
        let set_rax = builder.callout(|ctx, value| ctx.rax = value);
        static SEEN_PC: AtomicU64 = AtomicU64::new(0);
        let note_pc = builder.callout(|ctx, _| SEEN_PC.store(ctx.pc(), Relaxed));
        let cache: &'static CodeCache = Box::leak(Box::new(
            CodeCache::new(sud_codegen::DEFAULT_CAPACITY).unwrap(),
        ));
        Engine::builder()
            .placement(cache.placement())
            .install()
            .unwrap();
        let dbi = builder
            .transformer(move |block| {
                if block.address() != five {
                    return;
                }
                while let Some(insn) = block.next() {
                    if insn.mnemonic() == iced_x86::Mnemonic::Mov {
                        // Drop `mov eax, 5`, put `mov eax, 9` instead.
                        block.put_inline(&[0xb8, 9, 0, 0, 0]);
                        block.put_callout(note_pc, 0);
                    } else {
                        // Before the ret: rax += 100 through the context.
                        block.put_callout(set_rax, 109);
                        block.keep();
                    }
                }
            })
            .install(cache)
            .unwrap();
        assert_eq!(call_native(five as usize), 5);
        // SAFETY: `long f(void)`.
        assert_eq!(unsafe { dbi.call(five as usize, &[]) }.unwrap(), 109);
        assert_eq!(dbi.counters().callouts, 2);
        // The first callout sat before the ret (the mov was dropped).
        assert!(SEEN_PC.load(Relaxed) > five);
    });
}

/// Rust code of this test binary: collections, formatting (malloc, free),
/// a pipe. The executable usually lies beyond rel32 reach of the cache, so
/// its rip-relative operands take the scratch-register rewrite.
extern "C" fn rust_workload() -> i64 {
    let mut values: Vec<u64> = (0..2000).map(|i| (i * 7919) % 1009).collect();
    values.sort_unstable();
    let mut buckets = std::collections::BTreeMap::new();
    for v in &values {
        *buckets.entry(v % 17).or_insert(0u64) += v;
    }
    let text = format!("{buckets:?}");
    let mut fds = [0; 2];
    // SAFETY: pipe, write, read and close on descriptors made here, with
    // buffers that outlive the calls.
    let echoed = unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let written = libc::write(fds[1], text.as_ptr().cast(), text.len());
        let mut back = vec![0u8; text.len()];
        let read = libc::read(fds[0], back.as_mut_ptr().cast(), back.len());
        libc::close(fds[0]);
        libc::close(fds[1]);
        (written == read && back == text.as_bytes()) as i64
    };
    text.len() as i64 * 10 + echoed + buckets.values().sum::<u64>() as i64
}

#[test]
fn rust_std_code_runs_translated() {
    child_passes(|| {
        let (engine, dbi) = install(None);
        let native = rust_workload();
        let before = engine.counters();
        // SAFETY: `extern "C" fn() -> i64`.
        let translated = unsafe { dbi.call(rust_workload as extern "C" fn() -> i64 as usize, &[]) }
            .unwrap() as i64;
        let after = engine.counters();
        assert_eq!(translated, native);
        assert_eq!(after.traps, before.traps);
        assert!(
            after.direct - before.direct >= 5,
            "pipe, write, read, 2 x close"
        );
        let c = dbi.counters();
        assert_eq!((c.native_blocks, c.native_entries), (0, 0), "{c:?}");
        // A PIE executable sits far below the mmap area the cache is in.
        assert!(
            c.far_operands > 0,
            "no far rip-relative operand rewritten: {c:?}"
        );
    });
}

#[test]
fn stop_at_leaves_code_native_under_the_trap_net() {
    let handle = open_corpus();
    child_passes(move || {
        let f = symbol(handle, "syscall_getpid");
        // SAFETY: dlsym with RTLD_DEFAULT and a valid name.
        let getpid = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"getpid".as_ptr()) } as usize;
        let cache: &'static CodeCache = Box::leak(Box::new(
            CodeCache::new(sud_codegen::DEFAULT_CAPACITY).unwrap(),
        ));
        let engine = Engine::builder()
            .placement(cache.placement())
            .install()
            .unwrap();
        let dbi = Dbi::builder().stop_at(getpid).install(cache).unwrap();
        let native = call_native(f);
        let before = engine.counters();
        // SAFETY: `long f(void)`.
        let translated = unsafe { dbi.call(f, &[]) }.unwrap() as i64;
        let after = engine.counters();
        assert_eq!(translated, native);
        // getpid ran native and trapped. It returned to its native caller,
        // which stayed native: getppid trapped too if the compiler put it
        // after getpid, else it ran translated, as a direct call.
        let traps = after.traps - before.traps;
        let direct = after.direct - before.direct;
        assert!(
            traps >= 1 && traps + direct == 2,
            "{traps} traps, {direct} direct"
        );
        let c = dbi.counters();
        assert_eq!((c.native_blocks, c.native_entries), (1, 1), "{c:?}");
        assert_eq!(dbi.translation_of(getpid), None);
        assert!(dbi.translation_of(f).is_some());
        assert_eq!(selector::current(), Selector::Allow);
    });
}

#[test]
fn threads_translating_and_linking_at_once_get_native_results() {
    let handle = open_corpus();
    child_passes(move || {
        let (engine, dbi) = install(None);
        let names = [
            "recursion",
            "switch_table",
            "qsort_callback",
            "sse_avx",
            "syscall_pipe_write",
        ];
        let mut functions: Vec<(usize, i64)> = names
            .iter()
            .map(|name| {
                let f = symbol(handle, name);
                (f, call_native(f))
            })
            .collect();
        // With several threads, malloc takes its arena locks, and blocks
        // inside the locked regions are translated on first use: a
        // translator that allocated would deadlock here.
        let workload = rust_workload as extern "C" fn() -> i64 as usize;
        functions.push((workload, rust_workload()));
        let traps = engine.counters().traps;
        std::thread::scope(|scope| {
            for offset in 0..4 {
                let functions = &functions;
                scope.spawn(move || {
                    // Each thread starts at another function, so blocks are
                    // translated and exits linked by several threads at once.
                    for round in 0..20 {
                        let (f, native) = functions[(offset + round) % functions.len()];
                        // SAFETY: corpus functions are `long f(void)`.
                        let translated = unsafe { dbi.call(f, &[]) }.unwrap() as i64;
                        assert_eq!(translated, native);
                    }
                });
            }
        });
        assert_eq!(engine.counters().traps, traps);
        let c = dbi.counters();
        assert_eq!((c.native_blocks, c.native_entries), (0, 0), "{c:?}");
    });
}

#[test]
fn install_and_call_refuse_what_cannot_work() {
    // The engine excludes only its own gadget page: translated code's real
    // clone syscalls would trap.
    child_passes(|| {
        let cache: &'static CodeCache = Box::leak(Box::new(
            CodeCache::new(sud_codegen::DEFAULT_CAPACITY).unwrap(),
        ));
        Engine::builder().install().unwrap();
        let refused = Dbi::builder().install(cache);
        assert!(
            matches!(refused, Err(DbiError::NotTheExcludedRegion)),
            "{refused:?}"
        );
    });
    child_passes(|| {
        let (_engine, dbi) = install(None);
        let cache: &'static CodeCache = Box::leak(Box::new(
            CodeCache::new(sud_codegen::DEFAULT_CAPACITY).unwrap(),
        ));
        let again = Dbi::builder().install(cache);
        assert!(
            matches!(again, Err(DbiError::AlreadyInstalled)),
            "{again:?}"
        );
        let f = rust_workload as extern "C" fn() -> i64 as usize;
        // SAFETY: refused before anything runs.
        let seven = unsafe { dbi.call(f, &[0; 7]) };
        assert!(matches!(seven, Err(DbiError::TooManyArguments(7))));
    });
}

/// `CodeCache::write_emitted`, which the translator links blocks with.
#[test]
fn write_emitted_patches_emitted_code_and_nothing_else() {
    let cache = CodeCache::new(sud_codegen::DEFAULT_CAPACITY).unwrap();
    // mov eax, imm32; ret; padding so the imm can also be patched aligned
    let code = [0x90, 0x90, 0x90, 0xb8, 1, 0, 0, 0, 0xc3];
    let at = cache.emit(&code).unwrap();
    // SAFETY: the emitted bytes are a complete `extern "C" fn() -> i32`.
    let f: extern "C" fn() -> i32 = unsafe { std::mem::transmute(at) };
    assert_eq!(f(), 1);
    // The imm32 field is at a 4-aligned address (emissions are 16-aligned).
    cache.write_emitted(at + 4, &7u32.to_le_bytes()).unwrap();
    assert_eq!(f(), 7);
    cache.write_emitted(at + 3, &[0xb8, 9, 0]).unwrap();
    assert_eq!(f(), 9);
    let refused = |addr: usize, len: usize| cache.write_emitted(addr, &vec![0; len]).is_err();
    assert!(
        refused(cache.gadgets(), 1),
        "the engine's gadgets are not writable"
    );
    assert!(refused(at + code.len() - 1, 2), "past what was handed out");
    assert!(refused(cache.start() + cache.capacity() + 16, 1));
}

/// Once warm, translated code stays in the cache: direct branches are
/// chained and indirect ones found by the inline lookup, so a second run
/// makes no block, no exit, no link, and (short of a hash collision with
/// the trampoline's return address) no trip to the translator.
#[test]
fn warm_runs_stay_in_the_cache() {
    let handle = open_corpus();
    child_passes(move || {
        let (_engine, dbi) = install(None);
        for name in ["recursion", "switch_table", "function_pointers"] {
            let f = symbol(handle, name);
            // SAFETY: corpus functions are `long f(void)`.
            let first = unsafe { dbi.call(f, &[]) }.unwrap();
            let cold = dbi.counters();
            // SAFETY: as above.
            let second = unsafe { dbi.call(f, &[]) }.unwrap();
            let warm = dbi.counters();
            assert_eq!(first, second);
            assert!(cold.links > 0, "{name}: {cold:?}");
            assert_eq!(
                (warm.blocks, warm.exits, warm.links),
                (cold.blocks, cold.exits, cold.links),
                "{name}"
            );
            assert!(
                warm.lookup_misses - cold.lookup_misses <= 1,
                "{name}: {warm:?}"
            );
        }
    });
}

/// `Dbi::call_with_floats`: integer and double arguments in, a double out.
#[test]
fn floating_point_arguments_and_results_pass_through() {
    let handle = open_corpus();
    child_passes(move || {
        let f = symbol(handle, "mix_doubles");
        // SAFETY: `double mix_doubles(long, double, double, long)`.
        let native: extern "C" fn(i64, f64, f64, i64) -> f64 = unsafe { std::mem::transmute(f) };
        let expected = native(7, 3.5, -0.125, 9);
        let (_engine, dbi) = install(None);
        // SAFETY: as above.
        let got = unsafe { dbi.call_with_floats(f, &[7, 9], &[3.5, -0.125]) }.unwrap();
        assert_eq!(got.xmm0.to_bits(), expected.to_bits());
        // SAFETY: refused before anything runs.
        let nine = unsafe { dbi.call_with_floats(f, &[], &[0.0; 9]) };
        assert!(matches!(nine, Err(DbiError::TooManyArguments(9))));
    });
}

/// Compile events, per-block user data and the transformers' scratch
/// arena.
#[test]
fn block_events_user_data_and_scratch_memory() {
    let handle = open_corpus();
    child_passes(move || {
        static EVENTS: AtomicU64 = AtomicU64::new(0);
        static SCRATCH_OK: AtomicU64 = AtomicU64::new(0);
        static LAST_SCRATCH: AtomicU64 = AtomicU64::new(0);
        let cache: &'static CodeCache = Box::leak(Box::new(
            CodeCache::new(sud_codegen::DEFAULT_CAPACITY).unwrap(),
        ));
        Engine::builder()
            .placement(cache.placement())
            .install()
            .unwrap();
        let dbi = Dbi::builder()
            .transformer(|block| {
                block.set_user_data(block.address() ^ 0x55);
                if let Some(memory) = block.scratch(24) {
                    // Fresh, zeroed, and not the previous block's.
                    let at = memory.as_ptr() as u64;
                    let fresh = memory.iter().all(|&b| b == 0) && at != LAST_SCRATCH.load(Relaxed);
                    memory.fill(0xab);
                    LAST_SCRATCH.store(at, Relaxed);
                    if fresh && at % 16 == 0 {
                        SCRATCH_OK.fetch_add(1, Relaxed);
                    }
                }
            })
            .on_block(|event| {
                assert!(event.native < event.native_end && event.translated_len > 0);
                assert_eq!(event.user_data, event.native ^ 0x55);
                EVENTS.fetch_add(1, Relaxed);
            })
            .scratch_bytes(1 << 16)
            .install(cache)
            .unwrap();
        let f = symbol(handle, "function_pointers");
        // SAFETY: `long f(void)`.
        assert_eq!(unsafe { dbi.call(f, &[]) }.unwrap() as i64, call_native(f));
        let blocks = dbi.counters().blocks;
        assert_eq!(EVENTS.load(Relaxed), blocks);
        assert_eq!(SCRATCH_OK.load(Relaxed), blocks);
        assert_eq!(dbi.user_data_of(f), Some(f as u64 ^ 0x55));
        dbi.flush();
        assert_eq!(dbi.user_data_of(f), None);
    });
}

/// A memory tracer: a callout before every instruction with a memory
/// operand sees the effective address and size it is about to access.
#[test]
fn callouts_see_memory_operands_at_run_time() {
    let handle = open_corpus();
    child_passes(move || {
        static SEEN: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let f = symbol(handle, "read_and_write") as u64;
        let mut builder = Dbi::builder();
        let trace = builder.callout(|ctx, _| {
            let Some(access) = ctx.instruction().and_then(|i| ctx.memory_access(&i)) else {
                return;
            };
            let n = COUNT.fetch_add(1, Relaxed) as usize;
            if let Some(slot) = SEEN.get(n) {
                slot.store(access.address << 8 | access.size as u64, Relaxed);
            }
        });
        let cache: &'static CodeCache = Box::leak(Box::new(
            CodeCache::new(sud_codegen::DEFAULT_CAPACITY).unwrap(),
        ));
        Engine::builder()
            .placement(cache.placement())
            .install()
            .unwrap();
        let dbi = builder
            .transformer(move |block| {
                if block.address() != f {
                    return;
                }
                while let Some(insn) = block.next() {
                    if insn.op_count() > 0
                        && (0..insn.op_count()).any(|i| insn.op_kind(i) == iced_x86::OpKind::Memory)
                    {
                        block.put_callout(trace, 0);
                    }
                    block.keep();
                }
            })
            .install(cache)
            .unwrap();
        let mut values = [0i64; 8];
        values[3] = 41;
        // SAFETY: `long read_and_write(long *)` with 8 longs behind the pointer.
        let got = unsafe { dbi.call(f as usize, &[values.as_mut_ptr() as u64]) }.unwrap();
        assert_eq!((got, values[5]), (41, 42));
        let seen: Vec<u64> = SEEN[..COUNT.load(Relaxed).min(16) as usize]
            .iter()
            .map(|s| s.load(Relaxed))
            .collect();
        let at = |i: usize| (&values[i] as *const i64 as u64) << 8 | 8;
        assert!(seen.contains(&at(3)) && seen.contains(&at(5)), "{seen:x?}");
    });
}

/// The cache-pc -> native-pc map (for signals that land in translated
/// code): each instruction's translation maps back to it.
#[test]
fn cache_addresses_map_back_to_native_instructions() {
    let handle = open_corpus();
    child_passes(move || {
        let (_engine, dbi) = install(None);
        let five = symbol(handle, "returns_five");
        // SAFETY: `long f(void)`.
        assert_eq!(unsafe { dbi.call(five, &[]) }.unwrap(), 5);
        let t = dbi.translation_of(five).unwrap();
        // `mov eax, 5` (5 bytes, copied as is), then the `ret`'s glue.
        assert_eq!(dbi.native_pc_of(t), Some(five as u64));
        assert_eq!(dbi.native_pc_of(t + 4), Some(five as u64));
        assert_eq!(dbi.native_pc_of(t + 5), Some(five as u64 + 5));
        assert_eq!(dbi.native_pc_of(five), None);
    });
}

#[test]
fn counters_in_a_row_each_count_every_block() {
    static A: AtomicU64 = AtomicU64::new(0);
    static B: AtomicU64 = AtomicU64::new(0);
    static C: AtomicU64 = AtomicU64::new(0);
    let handle = open_corpus();
    child_passes(move || {
        let f = symbol(handle, "recursion");
        let native = call_native(f);
        let cache: &'static CodeCache = Box::leak(Box::new(
            CodeCache::new(sud_codegen::DEFAULT_CAPACITY).unwrap(),
        ));
        let _engine = Engine::builder()
            .placement(cache.placement())
            .install()
            .unwrap();
        // Three counters before the first instruction and three before
        // the last: emitted together, sharing their register saves.
        let dbi = Dbi::builder()
            .transformer(|block| {
                let last = block.instructions().len() - 1;
                let mut i = 0;
                while block.next().is_some() {
                    if i == 0 || i == last {
                        block.put_counter(&A, 1);
                        block.put_counter(&B, 1);
                        block.put_counter(&C, 2);
                    }
                    block.keep();
                    i += 1;
                }
            })
            .install(cache)
            .unwrap();
        // SAFETY: `long f(void)`.
        let translated = unsafe { dbi.call(f, &[]) }.unwrap() as i64;
        assert_eq!(translated, native);
        let (a, b, c) = (A.load(Relaxed), B.load(Relaxed), C.load(Relaxed));
        assert!(a > 1000, "{a}");
        assert_eq!(b, a);
        assert_eq!(c, 2 * a);
    });
}

#[test]
fn callouts_that_clobber_vector_registers_and_mxcsr_leave_them_to_the_foreign_code() {
    static CALLOUTS: AtomicU64 = AtomicU64::new(0);
    let handle = open_corpus();
    child_passes(move || {
        let f = symbol(handle, "sse_avx");
        let native = call_native(f);
        let cache: &'static CodeCache = Box::leak(Box::new(
            CodeCache::new(sud_codegen::DEFAULT_CAPACITY).unwrap(),
        ));
        let _engine = Engine::builder()
            .placement(cache.placement())
            .install()
            .unwrap();
        let avx = std::arch::is_x86_feature_detected!("avx");
        let mut builder = Dbi::builder();
        // What Rust and libc may do to the vector state: every xmm
        // register, the ymm upper halves, and MXCSR's rounding mode.
        let clobber = builder.callout(move |_, _| {
            CALLOUTS.fetch_add(1, Relaxed);
            let round_up: u32 = 0x5f80;
            // SAFETY: writes only vector registers (declared clobbered)
            // and MXCSR, which the host stub restores for the foreign code.
            unsafe {
                std::arch::asm!(
                    "pcmpeqd xmm0, xmm0", "pcmpeqd xmm1, xmm1", "pcmpeqd xmm2, xmm2",
                    "pcmpeqd xmm3, xmm3", "pcmpeqd xmm4, xmm4", "pcmpeqd xmm5, xmm5",
                    "pcmpeqd xmm6, xmm6", "pcmpeqd xmm7, xmm7", "pcmpeqd xmm8, xmm8",
                    "pcmpeqd xmm9, xmm9", "pcmpeqd xmm10, xmm10", "pcmpeqd xmm11, xmm11",
                    "pcmpeqd xmm12, xmm12", "pcmpeqd xmm13, xmm13", "pcmpeqd xmm14, xmm14",
                    "pcmpeqd xmm15, xmm15",
                    "ldmxcsr [{m}]",
                    m = in(reg) &round_up,
                    out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                    out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
                    out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
                    out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
                );
                if avx {
                    std::arch::asm!(
                        "vpcmpeqd ymm0, ymm0, ymm0",
                        "vpcmpeqd ymm7, ymm7, ymm7",
                        "vpcmpeqd ymm15, ymm15, ymm15",
                        out("ymm0") _, out("ymm7") _, out("ymm15") _,
                    );
                }
            }
        });
        let dbi = builder
            .transformer(move |block| {
                while block.next().is_some() {
                    block.put_callout(clobber, 0);
                    block.keep();
                }
            })
            .install(cache)
            .unwrap();
        // SAFETY: `long f(void)`.
        let translated = unsafe { dbi.call(f, &[]) }.unwrap() as i64;
        assert_eq!(translated, native);
        assert!(CALLOUTS.load(Relaxed) > 100);
        // Sensitive to the rounding mode, and SSE only (the host stub's
        // hand-saved path).
        let g = symbol(handle, "rounding");
        let native = call_native(g);
        // SAFETY: `long f(void)`.
        let translated = unsafe { dbi.call(g, &[]) }.unwrap() as i64;
        assert_eq!(translated, native);
    });
}
