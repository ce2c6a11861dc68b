//! A foreign-ABI emulator in the spirit of Wine, in miniature.
//!
//! The "foreign program" is x86-64 machine code (assembled at run time)
//! written for a made-up OS, ToyOS, whose system calls have their own
//! numbers and argument order:
//!
//! | call | number | arguments | result |
//! | --- | --- | --- | --- |
//! | PUTS  | 0x1000 | rdi = length, rsi = text | bytes written |
//! | CLOCK | 0x1001 | - | monotonic nanoseconds |
//! | ALLOC | 0x1002 | rdi = size | 16-aligned address, 0 when out of memory |
//! | EXIT  | 0x1003 | rdi = status | - (the program's entry then returns) |
//!
//! Linux would reject every one of them; here a pre-hook emulates them.
//! Two ways to run the same program:
//! - `--native`: in place (read-execute memory outside the code cache) with
//!   the selector on BLOCK: every foreign syscall traps (SIGSYS) into the hook;
//! - `--translated`: copied into the code cache with a selector flip at
//!   entry and exit and each `syscall` turned into a direct call of the same
//!   hook: no signal at all.
//!
//! Both print the program's output and then one `summary:` line with the
//! engine's counters and the wall time per foreign syscall.
//!
//! Syscall User Dispatch is not a security boundary: this emulates, it
//! confines nothing.

use clap::Parser;
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;
use sud_codegen::direct::thread_selector;
use sud_codegen::{CodeCache, DirectStub, Translator, VectorState};
use sud_engine::{selector, Engine, Errno, Selector, Syscall, SyscallSet, Verdict};

const PUTS: u64 = 0x1000;
const CLOCK: u64 = 0x1001;
const ALLOC: u64 = 0x1002;
const EXIT: u64 = 0x1003;

/// Runs a ToyOS program natively (trapping) or translated (direct calls).
#[derive(Parser)]
#[command(name = "foreign-abi")]
struct Args {
    /// Run the program in place; every foreign syscall traps.
    #[arg(
        long,
        conflicts_with = "translated",
        required_unless_present = "translated"
    )]
    native: bool,
    /// Run a translation in the code cache; foreign syscalls are direct calls.
    #[arg(long)]
    translated: bool,
    /// How many times the program reads the clock.
    #[arg(long, default_value_t = 100_000)]
    iterations: u64,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("foreign-abi: {e}");
        std::process::exit(1);
    }
}

/// The program's entry: `extern "C" fn(iterations) -> iterations`.
type Entry = extern "C" fn(u64) -> u64;

/// The program's machine code and where its code (not its data) ends.
struct Program {
    image: Vec<u8>,
    code_len: usize,
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let program = assemble_program()?;
    // The program lives in place, outside the cache, read-execute: its
    // data (strings, read rip-relative) stays there in both modes.
    let native = {
        let mut map = memmap2_anon(program.image.len())?;
        map.copy_from_slice(&program.image);
        map.make_exec()?
    };
    HEAP.init()?;

    // Near the program: translated rip-relative operands still reach its data.
    let cache: &'static CodeCache = Box::leak(Box::new(CodeCache::near(
        native.as_ptr() as usize,
        sud_codegen::DEFAULT_CAPACITY,
    )?));
    let engine = Engine::builder()
        .placement(cache.placement())
        .watch(SyscallSet::all())
        .pre_hook(toy_os)
        .install()?;

    let entry: Entry = if args.native {
        // SAFETY: the mapping holds the program assembled above, whose
        // entry follows the System V ABI; it outlives the call.
        unsafe { std::mem::transmute::<*const u8, Entry>(native.as_ptr()) }
    } else {
        let access = thread_selector()?;
        let stub = DirectStub::new(cache, access, VectorState::Sse)?;
        let translation = Translator::new(cache, stub, access)
            .translate_function(&program.image[..program.code_len], native.as_ptr() as u64)?;
        eprintln!(
            "foreign-abi: translated {} bytes of foreign code into {} bytes at {:#x}, {} syscall sites",
            program.code_len,
            translation.len(),
            translation.entry(),
            translation.syscall_sites()
        );
        // SAFETY: the translation keeps the program's signature and lives
        // in the leaked cache.
        unsafe { std::mem::transmute::<usize, Entry>(translation.entry()) }
    };

    let before = engine.counters();
    let started = Instant::now();
    let returned = if args.native {
        let _foreign = selector::enter(Selector::Block);
        entry(args.iterations)
    } else {
        // The translation flips to BLOCK itself and back to ALLOW on return.
        entry(args.iterations)
    };
    let wall = started.elapsed();
    let after = engine.counters();

    let calls = FOREIGN_CALLS.load(Relaxed);
    println!(
        "summary: mode={} foreign_syscalls={calls} traps={} direct={} exit_status={} returned={returned} \
         wall_ms={:.3} ns_per_foreign_syscall={:.1}",
        if args.native { "native" } else { "translated" },
        after.traps - before.traps,
        after.direct - before.direct,
        EXIT_STATUS.load(Relaxed),
        wall.as_secs_f64() * 1e3,
        wall.as_nanos() as f64 / calls.max(1) as f64,
    );
    Ok(())
}

static FOREIGN_CALLS: AtomicU64 = AtomicU64::new(0);
static EXIT_STATUS: AtomicI64 = AtomicI64::new(-1);

/// The ToyOS personality. Runs as a hook: in signal context (native) or
/// called from a stub (translated), possibly while foreign code is in the
/// middle of anything. So it allocates nothing, takes no lock and makes
/// only raw syscalls; its memory comes from a bump arena mapped up front.
fn toy_os(call: &Syscall) -> Verdict {
    FOREIGN_CALLS.fetch_add(1, Relaxed);
    match call.nr {
        PUTS => {
            let [len, text, ..] = call.args;
            // SAFETY: fd 1 and the foreign program's buffer; write(2)
            // reports a bad buffer as EFAULT rather than faulting.
            let n = unsafe { libc::syscall(libc::SYS_write, 1, text, len) };
            Verdict::Return(n)
        }
        CLOCK => {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: a valid timespec to fill; the vDSO answers without a syscall.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
            Verdict::Return(ts.tv_sec * 1_000_000_000 + ts.tv_nsec)
        }
        ALLOC => Verdict::Return(HEAP.alloc(call.args[0]) as i64),
        EXIT => {
            EXIT_STATUS.store(call.args[0] as i64, Relaxed);
            Verdict::Return(0)
        }
        // ToyOS has no other calls, and Linux's mean nothing to it.
        _ => Verdict::Fail(Errno::ENOSYS),
    }
}

/// The foreign program's heap: one mapping made before the program runs,
/// handed out by an atomic bump pointer (no lock, no allocation in the hook).
struct Heap {
    base: AtomicUsize,
    next: AtomicUsize,
}

const HEAP_LEN: usize = 1 << 20;

static HEAP: Heap = Heap {
    base: AtomicUsize::new(0),
    next: AtomicUsize::new(0),
};

impl Heap {
    fn init(&self) -> std::io::Result<()> {
        // Leaked on purpose: the foreign program may use its memory until exit.
        let map = Box::leak(Box::new(memmap2_anon(HEAP_LEN)?));
        self.base.store(map.as_mut_ptr() as usize, Relaxed);
        Ok(())
    }

    fn alloc(&self, size: u64) -> usize {
        let size = (size as usize).saturating_add(15) & !15;
        let offset = self.next.fetch_add(size, Relaxed);
        if offset.saturating_add(size) > HEAP_LEN {
            return 0;
        }
        self.base.load(Relaxed) + offset
    }
}

fn memmap2_anon(len: usize) -> std::io::Result<memmap2::MmapMut> {
    memmap2::MmapMut::map_anon(len)
}

/// Assembles the ToyOS program: greet, read the clock `rdi` times
/// counting readings that went backwards, format both counts into memory
/// from ALLOC, print them, say goodbye, EXIT(0), return.
fn assemble_program() -> Result<Program, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut greeting = a.create_label();
    let mut reads_text = a.create_label();
    let mut backwards_text = a.create_label();
    let mut times_text = a.create_label();
    let mut bye = a.create_label();
    let mut clock_loop = a.create_label();
    let mut clock_ok = a.create_label();
    let mut clock_done = a.create_label();

    const GREETING: &[u8] = b"hello from a ToyOS program\n";
    const READS: &[u8] = b"clock reads: ";
    const BACKWARDS: &[u8] = b"\nclock went backwards: ";
    const TIMES: &[u8] = b" times\n";
    const BYE: &[u8] = b"bye\n";

    for reg in [rbx, r12, r13, r14, r15] {
        a.push(reg)?;
    }
    a.mov(r12, rdi)?; // iterations
    puts(&mut a, greeting, GREETING.len())?;

    // The clock loop: r13 = previous reading, r14 = backwards count, r15 = left.
    a.mov(eax, CLOCK as u32)?;
    a.syscall()?;
    a.mov(r13, rax)?;
    a.xor(r14d, r14d)?;
    a.mov(r15, r12)?;
    a.test(r15, r15)?;
    a.jz(clock_done)?;
    a.set_label(&mut clock_loop)?;
    a.mov(eax, CLOCK as u32)?;
    a.syscall()?;
    a.cmp(rax, r13)?;
    a.jae(clock_ok)?;
    a.inc(r14)?;
    a.set_label(&mut clock_ok)?;
    a.mov(r13, rax)?;
    a.dec(r15)?;
    a.jnz(clock_loop)?;
    a.set_label(&mut clock_done)?;

    // A 64-byte scratch buffer from the ToyOS heap.
    a.mov(eax, ALLOC as u32)?;
    a.mov(edi, 64)?;
    a.syscall()?;
    a.mov(rbx, rax)?;

    puts(&mut a, reads_text, READS.len())?;
    print_decimal(&mut a, r12)?;
    puts(&mut a, backwards_text, BACKWARDS.len())?;
    print_decimal(&mut a, r14)?;
    puts(&mut a, times_text, TIMES.len())?;
    puts(&mut a, bye, BYE.len())?;

    a.mov(eax, EXIT as u32)?;
    a.xor(edi, edi)?;
    a.syscall()?;
    // ToyOS convention of this emulator: after EXIT the entry returns to
    // the loader, which reports the recorded status.
    a.mov(rax, r12)?;
    for reg in [r15, r14, r13, r12, rbx] {
        a.pop(reg)?;
    }
    a.ret()?;

    for (label, text) in [
        (&mut greeting, GREETING),
        (&mut reads_text, READS),
        (&mut backwards_text, BACKWARDS),
        (&mut times_text, TIMES),
        (&mut bye, BYE),
    ] {
        a.set_label(label)?;
        a.db(text)?;
    }
    let assembled = a.assemble_options(0, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let code_len = assembled.label_ip(&greeting)? as usize;
    Ok(Program {
        image: assembled.inner.code_buffer,
        code_len,
    })
}

/// PUTS(len, text at `label`), ToyOS argument order.
fn puts(a: &mut CodeAssembler, label: CodeLabel, len: usize) -> Result<(), IcedError> {
    a.mov(eax, PUTS as u32)?;
    a.mov(edi, len as u32)?;
    a.lea(rsi, ptr(label))?;
    a.syscall()
}

/// Writes `value` in decimal into the buffer at rbx (digits end at
/// rbx+32) and PUTS it. Clobbers rax, rcx, rdx, rdi, rsi.
fn print_decimal(a: &mut CodeAssembler, value: AsmRegister64) -> Result<(), IcedError> {
    let mut digit = a.create_label();
    a.mov(rax, value)?;
    a.lea(rsi, ptr(rbx + 32))?;
    a.mov(ecx, 10)?;
    a.set_label(&mut digit)?;
    a.xor(edx, edx)?;
    a.div(rcx)?;
    a.add(dl, b'0' as u32)?;
    a.dec(rsi)?;
    a.mov(byte_ptr(rsi), dl)?;
    a.test(rax, rax)?;
    a.jnz(digit)?;
    a.lea(rdi, ptr(rbx + 32))?;
    a.sub(rdi, rsi)?; // length
    a.mov(eax, PUTS as u32)?;
    a.syscall()
}
