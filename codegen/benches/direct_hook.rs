//! What the crossings emitted by sud-codegen cost: a flip pair, a syscall
//! through a direct-call site (empty pre-hook, then the real call), the
//! same site with the call emulated (the direct path's own overhead), and
//! the armed-ALLOW raw syscall the direct path is measured against.
//!
//! `cargo bench -p sud-codegen --bench direct_hook` (x86-64, a kernel with
//! Syscall User Dispatch). Prints the median of several runs per case.

#[cfg(target_arch = "x86_64")]
fn main() {
    if let Err(e) = x86::run() {
        eprintln!("direct_hook: {e}");
        std::process::exit(1);
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("direct_hook: x86-64 only");
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::hint::black_box;
    use std::time::Instant;
    use sud_codegen::bench::{DirectSiteLoop, FlipPairLoop, RawSyscallLoop};
    use sud_codegen::direct::thread_selector;
    use sud_codegen::{CodeCache, DirectStub, VectorState};
    use sud_engine::{DirectFrame, Engine, SyscallSet, Sysno, Verdict};

    /// A number no kernel knows: the hook answers it (pure direct-path cost).
    const EMULATED: u64 = 0x1000;
    const ROUNDS: usize = 15;

    /// One measured case: a name and one timed batch of `ops` operations.
    struct Case<'a> {
        name: &'static str,
        ops: u64,
        batch: Box<dyn FnMut() + 'a>,
        samples: Vec<f64>,
    }

    impl<'a> Case<'a> {
        fn new(name: &'static str, ops: u64, batch: impl FnMut() + 'a) -> Self {
            Case {
                name,
                ops,
                batch: Box::new(batch),
                samples: Vec::new(),
            }
        }

        fn sample(&mut self) {
            let t = Instant::now();
            (self.batch)();
            self.samples
                .push(t.elapsed().as_nanos() as f64 / self.ops as f64);
        }

        fn min_and_median(&self) -> (f64, f64) {
            let mut s = self.samples.clone();
            s.sort_by(f64::total_cmp);
            (s[0], s[s.len() / 2])
        }
    }

    /// Stands in for the engine's entrance: the stub's own cost.
    extern "C" fn answer_at_once(frame: &mut DirectFrame) -> i64 {
        black_box(frame.nr as i64)
    }

    pub fn run() -> Result<(), Box<dyn std::error::Error>> {
        let cache: &'static CodeCache =
            Box::leak(Box::new(CodeCache::new(sud_codegen::DEFAULT_CAPACITY)?));
        let mut watched = SyscallSet::from_sysnos(&[Sysno::getppid]);
        watched.insert(EMULATED);
        let engine = Engine::builder()
            .placement(cache.placement())
            .watch(watched)
            .pre_hook(|call| {
                if call.nr == EMULATED {
                    Verdict::Return(0)
                } else {
                    Verdict::Run
                }
            })
            .install()?;
        let access = thread_selector()?;
        let getppid = Sysno::getppid.id() as u64;
        let n = 100_000;
        let flip_n = 20_000_000;

        let flips = FlipPairLoop::new(cache, access)?;
        let raw = RawSyscallLoop::new()?;
        let sse = DirectSiteLoop::new(
            cache,
            DirectStub::new(cache, access, VectorState::Sse)?,
            access,
        )?;
        let bare = DirectSiteLoop::new(
            cache,
            DirectStub::with_entry(cache, access, VectorState::Sse, answer_at_once)?,
            access,
        )?;
        let full = match DirectStub::new(cache, access, VectorState::Full) {
            Ok(stub) => Some(DirectSiteLoop::new(cache, stub, access)?),
            Err(e) => {
                eprintln!("direct_hook: no full stub: {e}");
                None
            }
        };

        // SAFETY (every batch below): getppid has no preconditions or
        // effects; EMULATED is answered by the hook and never reaches the kernel.
        let mut cases = vec![
            Case::new("selector flip pair (BLOCK then ALLOW)", flip_n, || {
                flips.run(black_box(flip_n))
            }),
            Case::new("raw getppid, armed, selector ALLOW", n, || unsafe {
                black_box(raw.run(n, getppid));
            }),
            Case::new("direct getppid, empty pre-hook (sse stub)", n, || unsafe {
                black_box(sse.run(n, getppid));
            }),
            Case::new(
                "direct call emulated by the hook (sse stub)",
                n,
                || unsafe {
                    black_box(sse.run(n, EMULATED));
                },
            ),
            Case::new("sse stub alone (entry returns at once)", n, || unsafe {
                black_box(bare.run(n, EMULATED));
            }),
        ];
        if let Some(full) = &full {
            cases.push(Case::new(
                "direct getppid, empty pre-hook (full stub)",
                n,
                move || unsafe {
                    black_box(full.run(n, getppid));
                },
            ));
            cases.push(Case::new(
                "direct call emulated by the hook (full stub)",
                n,
                move || unsafe {
                    black_box(full.run(n, EMULATED));
                },
            ));
        }
        // Rounds interleave the cases, so drift on a shared machine hits all alike.
        for round in 0..=ROUNDS {
            for case in &mut cases {
                if round == 0 {
                    (case.batch)(); // warm-up
                } else {
                    case.sample();
                }
            }
        }
        println!("{:<48} {:>9} {:>9}", "case", "min ns", "median ns");
        for case in &cases {
            let (min, median) = case.min_and_median();
            println!("{:<48} {min:>9.2} {median:>9.2}", case.name);
        }
        let by_name = |name: &str| {
            cases
                .iter()
                .find(|c| c.name == name)
                .map(Case::min_and_median)
        };
        if let (Some(raw), Some(direct)) = (
            by_name("raw getppid, armed, selector ALLOW"),
            by_name("direct getppid, empty pre-hook (sse stub)"),
        ) {
            println!(
                "direct path minus armed-ALLOW raw syscall (sse stub): {:+.2} ns min, {:+.2} ns median (target: at most +15 ns)",
                direct.0 - raw.0,
                direct.1 - raw.1
            );
        }
        println!("counters: {:?}", engine.counters());
        Ok(())
    }
}
