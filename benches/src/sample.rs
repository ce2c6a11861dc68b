//! From batches of operations to per-operation statistics: calibrate a
//! batch size so one sample lasts long enough for the clock to be precise,
//! warm up, take samples, and summarise them as median and p90.

use std::time::{Duration, Instant};

/// How long and how often to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Rounds: the runner measures every probe once per round, in turn, so
    /// a drift of the machine's speed hits all probes alike. Many short
    /// rounds mix the probes finely in time: on a busy machine the load
    /// changes within seconds.
    pub rounds: usize,
    /// Samples each probe takes per round.
    pub samples_per_round: usize,
    /// How long one sample (one batch of operations) should last: long
    /// next to the two clock reads around it, short next to a scheduler
    /// time slice, so a preemption spoils few samples and the median
    /// ignores them on a busy machine.
    pub sample_time: Duration,
}

impl Plan {
    /// Finishes the whole runner within 30 s on the project's 2-core machine.
    pub const fn quick() -> Plan {
        Plan {
            rounds: 400,
            samples_per_round: 4,
            sample_time: Duration::from_micros(300),
        }
    }

    /// The default run: more rounds and longer samples for stable medians.
    pub const fn full() -> Plan {
        Plan {
            rounds: 1200,
            samples_per_round: 5,
            sample_time: Duration::from_micros(400),
        }
    }

    /// The plan in words, for the report.
    pub fn describe(&self) -> String {
        format!(
            "{} rounds × {} samples of about {} µs per crossing",
            self.rounds,
            self.samples_per_round,
            self.sample_time.as_micros()
        )
    }

    /// Samples a probe takes over the whole plan.
    pub const fn total_samples(&self) -> usize {
        self.rounds * self.samples_per_round
    }
}

/// Runs `op` `n` times and returns how long that took. The workhorse of
/// every in-process probe: the clock is read twice per batch, never per op.
#[inline(always)]
pub fn timed(n: u64, mut op: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        op();
    }
    start.elapsed()
}

/// Finds how many operations make a batch of about `target` duration.
/// `batch(n)` runs `n` operations and returns their total duration.
pub fn calibrate(target: Duration, mut batch: impl FnMut(u64) -> Duration) -> u64 {
    let mut n: u64 = 1;
    loop {
        let took = batch(n);
        // Grow geometrically until the batch is long enough to scale from.
        if took >= target / 8 || n >= 1 << 40 {
            let scaled = n as u128 * target.as_nanos() / took.as_nanos().max(1);
            return u64::try_from(scaled).unwrap_or(u64::MAX).max(1);
        }
        n *= 4;
    }
}

/// Takes `count` samples of batches of `n` operations after one discarded
/// warm-up batch, appending nanoseconds per operation to `out`. Stops early
/// when `out` is full: the forked children of the rig must not allocate.
pub fn collect_into(
    out: &mut Vec<f64>,
    n: u64,
    count: usize,
    mut batch: impl FnMut(u64) -> Duration,
) {
    let count = count.min(out.capacity() - out.len());
    if count == 0 {
        return;
    }
    batch(n);
    for _ in 0..count {
        let took = batch(n);
        out.push(took.as_nanos() as f64 / n as f64);
    }
}

/// Median and p90 of per-operation samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Median nanoseconds per operation.
    pub median: f64,
    /// 90th percentile of nanoseconds per operation (nearest rank).
    pub p90: f64,
    /// How many samples the figures summarise.
    pub samples: usize,
}

impl Summary {
    /// Summarises samples; `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank =
            |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        let median = if sorted.len() % 2 == 1 {
            sorted[sorted.len() / 2]
        } else {
            (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
        };
        Some(Summary {
            median,
            p90: rank(0.9),
            samples: sorted.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90_of_known_samples() {
        let samples: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let s = Summary::of(&samples).unwrap();
        assert_eq!(s.median, 5.5);
        assert_eq!(s.p90, 9.0);
        assert_eq!(s.samples, 10);
        let odd = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(odd.median, 2.0);
        assert_eq!(odd.p90, 3.0);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn collection_warms_up_and_stops_when_full() {
        let mut out = Vec::with_capacity(3);
        let mut batches = 0;
        collect_into(&mut out, 4, 10, |n| {
            batches += 1;
            Duration::from_nanos(8 * n)
        });
        assert_eq!(out, [8.0, 8.0, 8.0]);
        assert_eq!(batches, 4, "one warm-up batch and three samples");
    }

    #[test]
    fn calibration_scales_to_the_target() {
        // A fake batch that "takes" 10 ns per operation.
        let n = calibrate(Duration::from_micros(100), |n| Duration::from_nanos(10 * n));
        assert_eq!(n, 10_000);
    }
}
