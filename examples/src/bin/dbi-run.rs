//! dbi-run: runs functions of a shared library natively and then
//! translated by sud-codegen's dynamic binary translator, and compares.
//!
//! `dbi-run [--json] LIB.so FUNC [FUNC...]`
//!
//! Each FUNC must be an exported `long FUNC(void)`. For each one line:
//! `FUNC native=V translated=V blocks=N instructions=N direct_syscalls=N
//! traps=N`, or with `--json` one object per line with those keys (and
//! "func"). `blocks` and `instructions` are what the translated run
//! executed (counted inline by a transformer); `direct_syscalls` are the
//! syscalls that reached the engine as direct calls from translated code,
//! `traps` those that came by SIGSYS (native code the translator left
//! alone). Exit status 1 if any translated result differs from native.

#[cfg(target_arch = "x86_64")]
fn main() {
    x86::main();
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("dbi-run: the translator is x86-64 only");
    std::process::exit(2);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use clap::Parser;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use sud_codegen::dbi::{BlockIterator, Dbi, Library};
    use sud_engine::Engine;

    #[derive(Parser, Debug)]
    #[command(
        name = "dbi-run",
        about = "Run library functions natively and translated by the DBI, and compare"
    )]
    struct Cli {
        /// One JSON object per function and line.
        #[arg(long)]
        json: bool,
        /// The shared library to dlopen.
        #[arg(value_name = "LIB.so")]
        library: String,
        /// Exported `long FUNC(void)` functions to run.
        #[arg(required = true, value_name = "FUNC")]
        functions: Vec<String>,
    }

    static BLOCKS: AtomicU64 = AtomicU64::new(0);
    static INSTRUCTIONS: AtomicU64 = AtomicU64::new(0);

    fn count_blocks_and_instructions(block: &mut BlockIterator<'_>) {
        block.put_counter(&BLOCKS, 1);
        block.put_counter(&INSTRUCTIONS, block.instructions().len() as u32);
    }

    struct Outcome {
        native: i64,
        translated: i64,
        blocks: u64,
        instructions: u64,
        direct: u64,
        traps: u64,
    }

    fn run(engine: &Engine, dbi: &Dbi, function: usize) -> Outcome {
        // SAFETY: the user names functions of the form `long f(void)`.
        let native_fn: extern "C" fn() -> i64 = unsafe { std::mem::transmute(function) };
        let native = native_fn();
        let before = engine.counters();
        let (blocks, instructions) = (BLOCKS.load(Relaxed), INSTRUCTIONS.load(Relaxed));
        // SAFETY: as above; `call` runs it exactly as natively, translated.
        let translated = unsafe { dbi.call(function, &[]) }.map_or(i64::MIN, |v| v as i64);
        let after = engine.counters();
        Outcome {
            native,
            translated,
            blocks: BLOCKS.load(Relaxed) - blocks,
            instructions: INSTRUCTIONS.load(Relaxed) - instructions,
            direct: after.direct - before.direct,
            traps: after.traps - before.traps,
        }
    }

    fn line(name: &str, o: &Outcome, json: bool) -> String {
        if json {
            format!(
                "{{\"func\": \"{}\", \"native\": {}, \"translated\": {}, \"blocks\": {}, \"instructions\": {}, \"direct_syscalls\": {}, \"traps\": {}}}",
                name.escape_default(),
                o.native,
                o.translated,
                o.blocks,
                o.instructions,
                o.direct,
                o.traps
            )
        } else {
            format!(
                "{name} native={} translated={} blocks={} instructions={} direct_syscalls={} traps={}",
                o.native, o.translated, o.blocks, o.instructions, o.direct, o.traps
            )
        }
    }

    pub fn main() {
        let cli = Cli::parse();
        let fail = |msg: String| -> ! {
            eprintln!("dbi-run: {msg}");
            std::process::exit(2)
        };
        let library = Library::open(&cli.library).unwrap_or_else(|e| fail(e.to_string()));
        let functions: Vec<(String, usize)> = cli
            .functions
            .iter()
            .map(|name| {
                let addr = library.symbol(name).unwrap_or_else(|e| fail(e.to_string()));
                (name.clone(), addr)
            })
            .collect();
        let (engine, dbi) = Dbi::builder()
            .transformer(count_blocks_and_instructions)
            .install_with_engine(Engine::builder())
            .unwrap_or_else(|e| fail(e.to_string()));
        let mut differs = false;
        for (name, addr) in &functions {
            let outcome = run(engine, dbi, *addr);
            differs |= outcome.native != outcome.translated;
            println!("{}", line(name, &outcome, cli.json));
        }
        std::process::exit(i32::from(differs));
    }
}
