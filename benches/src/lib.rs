//! `sud-benches`: the project's measuring instrument for what every boundary
//! crossing costs, side by side with the kernel's own floor, all measured in
//! one process so the ratios hold on a noisy machine.
//!
//! It owns the probes (one per crossing: [`Probe`]), the stages each probe
//! needs ([`rig`]: dispatch off, the bare-kernel trap [`floor`], the engine
//! with a sud-codegen code cache as its excluded region), the [`sample`]r
//! that turns batches of operations into per-operation medians and p90s,
//! the order of a [`run`] (rounds that interleave every probe), the
//! fork-and-collect [`child`] helper for crossings that need their own
//! process ([`seccomp`], [`ptrace`]), and the writers of the JSON object
//! ([`results`]) and of `BENCHMARKS.md` with its chart ([`report`]). The
//! `crossings` runner and the criterion benches both drive these modules.

pub mod child;
pub mod error;
pub mod floor;
pub mod host;
pub mod isa;
pub mod probe;
pub mod ptrace;
pub mod report;
pub mod results;
pub mod rig;
pub mod run;
pub mod sample;
pub mod seccomp;
pub mod sys;

pub use error::{BenchError, Result};
pub use probe::{Probe, Role, Setting};
pub use results::{Measured, Results};
pub use sample::{Plan, Summary};
