//! dbi-bbcount: a counting transformer on a whole program. Runs the
//! program translated by sud-codegen's DBI from the preload's constructor
//! to its exit, with an inline counter in front of every basic block, and
//! each process reports at its exit the blocks and instructions executed
//! per module and its hottest blocks (module+offset).
//!
//! `dbi-bbcount [--top N] [--json] [-o FILE] -- PROG [ARGS...]`
//!
//! `dbi-bbcount [--top N] --call LIB.so FUNC` runs one exported
//! `long FUNC(void)` of a shared library translated in this process
//! instead, and prints its blocks with symbols.

#[cfg(target_arch = "x86_64")]
fn main() {
    x86::main();
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("dbi-bbcount: the translator is x86-64 only");
    std::process::exit(2);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use clap::Parser;
    use std::ffi::{CStr, OsString};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use sud_codegen::dbi::{BlockIterator, Dbi, Library};
    use sud_engine::Engine;
    use sud_examples::config::{Mode, TraceOptions, Translate};
    use sud_examples::launcher::{self, Launch};

    #[derive(Parser, Debug)]
    #[command(
        name = "dbi-bbcount",
        about = "Count the basic blocks a program executes, translated by the DBI"
    )]
    struct Cli {
        /// How many of the hottest blocks to list.
        #[arg(long, default_value_t = 10)]
        top: u32,
        /// One JSON object per process: {"pid", "blocks", "executed_blocks",
        /// "instructions", "blocks_outside_modules", "native_blocks",
        /// "native_entries", "modules": [{"path",
        /// "blocks", "executed_blocks", "instructions"}], "hottest":
        /// [{"module", "offset", "executions", "instructions"}]}.
        #[arg(long)]
        json: bool,
        /// Write the reports to FILE instead of standard error.
        #[arg(short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        /// Run one exported `long FUNC(void)` of LIB.so in this process
        /// instead of a program.
        #[arg(long, num_args = 2, value_names = ["LIB.so", "FUNC"], conflicts_with = "program")]
        call: Option<Vec<String>>,
        /// The program to run and its arguments.
        #[arg(
            required_unless_present = "call",
            trailing_var_arg = true,
            value_name = "PROG [ARGS...]"
        )]
        program: Vec<OsString>,
    }

    fn whole_program(cli: Cli) -> ! {
        let launch = Launch {
            mode: Mode::Count,
            follow: true,
            // The preload does not rewrite sites under the translator.
            rewrite: false,
            from_start: false,
            trace: None,
            faults: Vec::new(),
            output: cli.output,
            program: cli.program,
            options: TraceOptions {
                dbi: Translate::BlockCount {
                    top: cli.top,
                    json: cli.json,
                },
                ..TraceOptions::default()
            },
        };
        match launcher::run(&launch) {
            Ok(finished) => launcher::exit_like(finished.status),
            Err(e) => {
                eprintln!("dbi-bbcount: {e}");
                std::process::exit(e.exit_code());
            }
        }
    }

    /// Blocks with a counter of their own; later blocks share the last one.
    const TRACKED: usize = 1 << 16;

    /// Per block, in translation order: executions, native address, length.
    /// Fixed arrays: the transformer runs where foreign code may hold malloc's
    /// lock, so it must not allocate.
    static EXECUTIONS: [AtomicU64; TRACKED] = [const { AtomicU64::new(0) }; TRACKED];
    static ADDRESSES: [AtomicU64; TRACKED] = [const { AtomicU64::new(0) }; TRACKED];
    static LENGTHS: [AtomicU64; TRACKED] = [const { AtomicU64::new(0) }; TRACKED];
    static NEXT_BLOCK: AtomicU64 = AtomicU64::new(0);

    fn count_block(block: &mut BlockIterator<'_>) {
        let index = (NEXT_BLOCK.fetch_add(1, Relaxed) as usize).min(TRACKED - 1);
        ADDRESSES[index].store(block.address(), Relaxed);
        LENGTHS[index].store(block.instructions().len() as u64, Relaxed);
        block.put_counter(&EXECUTIONS[index], 1);
    }

    /// `symbol+offset` for a native address from the dynamic symbol tables,
    /// else `file+offset` (static functions have no dynamic symbol).
    fn describe(addr: u64) -> String {
        // SAFETY: dladdr only reads the loader's tables; the struct is plain data.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: as above, with a valid out pointer.
        if unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) } == 0 {
            return "?".into();
        }
        let (name, base) = if !info.dli_sname.is_null() {
            (info.dli_sname, info.dli_saddr as u64)
        } else if !info.dli_fname.is_null() {
            (info.dli_fname, info.dli_fbase as u64)
        } else {
            return "?".into();
        };
        // SAFETY: dladdr's names are NUL-terminated strings of the loader.
        let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
        let short = name.rsplit('/').next().unwrap_or(&name).to_string();
        format!("{short}+{:#x}", addr - base)
    }

    pub fn main() {
        let cli = Cli::parse();
        let Some([library, function]) = cli.call.as_deref() else {
            whole_program(cli)
        };
        let fail = |msg: String| -> ! {
            eprintln!("dbi-bbcount: {msg}");
            std::process::exit(2)
        };
        let name = function.clone();
        let library = Library::open(library).unwrap_or_else(|e| fail(e.to_string()));
        let function = library
            .symbol(function)
            .unwrap_or_else(|e| fail(e.to_string()));
        let (engine, dbi) = Dbi::builder()
            .transformer(count_block)
            .install_with_engine(Engine::builder())
            .unwrap_or_else(|e| fail(e.to_string()));
        // SAFETY: the user names a `long f(void)`.
        let value =
            unsafe { dbi.call(function, &[]) }.unwrap_or_else(|e| fail(e.to_string())) as i64;

        let blocks = (NEXT_BLOCK.load(Relaxed) as usize).min(TRACKED);
        let mut rows: Vec<(u64, u64, u64)> = (0..blocks)
            .map(|i| {
                (
                    EXECUTIONS[i].load(Relaxed),
                    ADDRESSES[i].load(Relaxed),
                    LENGTHS[i].load(Relaxed),
                )
            })
            .collect();
        let executed: u64 = rows.iter().map(|r| r.0).sum();
        let instructions: u64 = rows.iter().map(|r| r.0 * r.2).sum();
        println!("{name}() = {value}");
        println!(
            "blocks translated: {blocks}, blocks executed: {executed}, instructions executed: {instructions}, \
             direct syscalls: {}, traps: {}",
            engine.counters().direct,
            engine.counters().traps
        );
        rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        println!(
            "{:>12} {:>6}  {:<18} symbol",
            "executions", "insns", "address"
        );
        for (count, addr, len) in rows.iter().take(cli.top as usize) {
            println!("{count:>12} {len:>6}  {addr:#018x} {}", describe(*addr));
        }
    }
}
