//! What running translated costs: compute-heavy corpus functions
//! (`bench_checksum`: an Adler-style checksum over 64 KiB, 16 rounds;
//! `bench_sort`: a recursive quicksort of 32768 longs; and, for the worst
//! case, `recursion`: fib(22), nearly all calls and returns) natively and
//! translated with an empty transformer, warm (median of 15 runs each, and
//! the ratio of the best runs);
//! and what translating costs per block: the translator's own clock
//! (decode, transform, encode, publish) over every block this run made.
//! The empty-transformer runs are made twice: with indirect branches
//! going through the block-map lookup only, then (after a flush) with
//! their target caches (the default). Then the same functions again after a flush, with a
//! transformer that counts every block and instruction (inline counters).
//!
//! `cargo bench -p sud-codegen --bench dbi`

#[cfg(target_arch = "x86_64")]
fn main() {
    x86::main();
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("dbi bench: the translator is x86-64 only");
    std::process::exit(2);
}

#[cfg(target_arch = "x86_64")]
#[path = "../tests/corpus/compile.rs"]
mod corpus;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::corpus;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    use std::time::{Duration, Instant};
    use sud_codegen::dbi::{BlockIterator, Dbi, Library};
    use sud_engine::Engine;

    const RUNS: usize = 15;

    static COUNTING: AtomicBool = AtomicBool::new(false);
    static BLOCKS: AtomicU64 = AtomicU64::new(0);
    static INSNS: AtomicU64 = AtomicU64::new(0);

    fn transformer(block: &mut BlockIterator<'_>) {
        if COUNTING.load(Relaxed) {
            block.put_counter(&BLOCKS, 1);
            block.put_counter(&INSNS, block.instructions().len() as u32);
        }
    }

    fn compile_corpus() -> String {
        let lib = std::env::temp_dir().join(format!("sud-dbi-bench-{}.so", std::process::id()));
        corpus::compile_shared_library(&corpus::corpus_source(env!("CARGO_MANIFEST_DIR")), &lib);
        lib.to_string_lossy().into_owned()
    }

    fn median(mut samples: Vec<Duration>) -> Duration {
        samples.sort();
        samples[samples.len() / 2]
    }

    fn time(f: impl Fn() -> i64) -> (Duration, i64) {
        let start = Instant::now();
        let value = f();
        (start.elapsed(), value)
    }

    pub fn main() {
        let path = compile_corpus();
        let library = Library::open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let (_engine, dbi) = Dbi::builder()
            .transformer(transformer)
            .install_with_engine(Engine::builder())
            .unwrap();
        let real = real_libraries();
        // Before and after the target caches, in one run.
        println!("empty transformer, indirect branches through the lookup only:");
        dbi.set_target_cache(false);
        run_compute(&library, dbi);
        run_real(&real, dbi);
        dbi.flush();
        dbi.set_target_cache(true);
        println!("empty transformer (target caches, the default):");
        run_compute(&library, dbi);
        run_real(&real, dbi);
        run_translation_cost(&library, dbi);
        COUNTING.store(true, Relaxed);
        dbi.flush();
        println!("block-counting transformer (after a flush):");
        run_compute(&library, dbi);
        run_real(&real, dbi);
        let c = dbi.counters();
        println!(
            "translator, all runs: {} lookup misses, {} target cache fills, {} blocks left native, {} bytes reclaimed",
            c.lookup_misses, c.target_fills, c.native_blocks, c.reclaimed_bytes
        );
    }

    /// The real-library corpus of tests/dbi_libraries.rs, if it builds.
    fn real_libraries() -> Vec<(&'static str, usize)> {
        let dir = std::env::temp_dir();
        let mut found = Vec::new();
        let sets: [(&str, bool, &[&str], &[&'static str]); 2] = [
            (
                "dbi_libraries.c",
                false,
                &["-lz", "-lsqlite3", "-lcrypto"],
                &["zlib_roundtrip", "sha256_digest", "sqlite_inserts"],
            ),
            (
                "dbi_cxx.cpp",
                true,
                &[],
                &["cxx_exceptions", "cxx_virtual_sort_map"],
            ),
        ];
        for (source, cxx, libs, names) in sets {
            let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/corpus")
                .join(source);
            let lib = dir.join(format!("sud-dbi-bench-{}-{source}.so", std::process::id()));
            let compiler = cc::Build::new()
                .cargo_metadata(false)
                .cpp(cxx)
                .target("x86_64-unknown-linux-gnu")
                .host("x86_64-unknown-linux-gnu")
                .opt_level(2)
                .get_compiler();
            let mut cmd = compiler.to_command();
            cmd.args(["-shared", "-fPIC", "-w"]);
            if cxx {
                cmd.arg("-std=gnu++17");
            }
            let ok = cmd
                .arg("-o")
                .arg(&lib)
                .arg(&src)
                .args(libs)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                println!("(skipped {source}: it does not build here)");
                continue;
            }
            let library = Library::open(&lib.to_string_lossy()).unwrap();
            let _ = std::fs::remove_file(&lib);
            for name in names {
                found.push((*name, library.symbol(name).unwrap()));
            }
        }
        found
    }

    fn measure(name: &str, addr: usize, dbi: &Dbi) {
        // SAFETY: corpus functions are `long f(void)`.
        let native_fn: extern "C" fn() -> i64 = unsafe { std::mem::transmute(addr) };
        // SAFETY: as above.
        let translated = || unsafe { dbi.call(addr, &[]) }.unwrap() as i64;
        let expected = native_fn();
        let blocks_before = dbi.counters().blocks;
        let (cold, value) = time(translated);
        assert_eq!(value, expected);
        let blocks = dbi.counters().blocks - blocks_before;
        let mut native = Vec::new();
        let mut warm = Vec::new();
        for _ in 0..RUNS {
            native.push(time(|| native_fn()).0);
            let (t, value) = time(translated);
            assert_eq!(value, expected);
            warm.push(t);
        }
        // The best runs too: on a shared machine the medians move with
        // other load, the minima much less.
        let best =
            warm.iter().min().unwrap().as_secs_f64() / native.iter().min().unwrap().as_secs_f64();
        let (native, warm) = (median(native), median(warm));
        println!(
            "{name:<18} {:>10.3}ms {:>10.3}ms {:>6.2}x {:>6.2}x {:>10.3}ms {blocks:>16}",
            native.as_secs_f64() * 1e3,
            warm.as_secs_f64() * 1e3,
            warm.as_secs_f64() / native.as_secs_f64(),
            best,
            cold.as_secs_f64() * 1e3,
        );
    }

    fn run_real(functions: &[(&'static str, usize)], dbi: &Dbi) {
        for &(name, addr) in functions {
            measure(name, addr, dbi);
        }
    }

    fn run_compute(library: &Library, dbi: &Dbi) {
        println!(
            "{:<18} {:>12} {:>12} {:>7} {:>7} {:>12} {:>16}",
            "function", "native", "translated", "ratio", "best", "first run", "blocks made then"
        );
        for name in [
            "bench_checksum",
            "bench_sort",
            "qsort_callback",
            "function_pointers",
            "recursion",
        ] {
            measure(name, library.symbol(name).unwrap(), dbi);
        }
    }

    fn run_translation_cost(library: &Library, dbi: &Dbi) {
        // More code to translate for the per-block cost: libc's qsort,
        // stdio-free syscall wrappers, pthread_create and the new thread.
        for name in [
            "qsort_callback",
            "syscall_pipe_write",
            "vdso_clock",
            "thread_create",
        ] {
            let addr = library.symbol(name).unwrap();
            // SAFETY: corpus functions are `long f(void)`.
            unsafe { dbi.call(addr, &[]) }.unwrap();
        }
        let c = dbi.counters();
        println!(
            "translator: {} blocks ({} instructions) in {:.1}us: {:.2}us per block; {} exits, {} links, {} lookup misses, {} target cache fills",
            c.blocks,
            c.instructions,
            c.translate_nanos as f64 / 1e3,
            c.translate_nanos as f64 / 1e3 / c.blocks.max(1) as f64,
            c.exits,
            c.links,
            c.lookup_misses,
            c.target_fills
        );
    }
}
