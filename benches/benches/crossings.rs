//! Criterion benchmarks of every crossing, with the same probes and stages
//! as the `crossings` runner (`cargo bench -p sud-benches`). Each
//! measurement enters its probe's stage, times the batch criterion asks
//! for, and leaves the stage again, so the floor and the engine take turns
//! in this one process just as in the runner; seccomp and ptrace fork a
//! child per measurement.

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;
use sud_benches::child::Amount;
use sud_benches::rig::Stage;
use sud_benches::{host, Probe, Setting};

/// Times `iters` operations of an in-process probe inside its stage.
fn in_stage(probe: Probe, iters: u64) -> Duration {
    let stage = Stage::enter(probe.setting()).unwrap_or_else(|e| panic!("{}: {e}", probe.key()));
    let took = probe.batch(iters);
    stage
        .leave()
        .unwrap_or_else(|e| panic!("{}: leaving the stage: {e}", probe.key()));
    took.unwrap_or_else(|e| panic!("{}: {e}", probe.key()))
}

/// Times `iters` operations of a child probe in a fresh child.
fn in_child(probe: Probe, iters: u64) -> Duration {
    let samples = probe
        .in_child(Amount::Batch(iters))
        .unwrap_or_else(|e| panic!("{}: {e}", probe.key()));
    let per_op = samples.first().copied().unwrap_or(0.0);
    Duration::from_secs_f64(per_op * iters as f64 / 1e9)
}

fn crossings(c: &mut Criterion) {
    host::pin_to_current_cpu();
    let mut group = c.benchmark_group("crossings");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for probe in Probe::ALL {
        match probe.setting() {
            Setting::Pending => {}
            Setting::Child => {
                group.bench_function(probe.key(), |b| {
                    b.iter_custom(|iters| in_child(probe, iters))
                });
            }
            _ => {
                group.bench_function(probe.key(), |b| {
                    b.iter_custom(|iters| in_stage(probe, iters))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, crossings);
criterion_main!(benches);
