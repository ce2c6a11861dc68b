//! The order of a run. Every in-process probe is calibrated once, then
//! measured in rounds: each round visits every probe in turn (entering its
//! stage, taking its samples, leaving), starting one probe later each
//! round, so a change of the machine's speed during the run lands on all
//! probes alike and the ratios hold. The floor is installed and removed
//! around each of its turns (the engine's handler and arming are put back),
//! which is what lets floor and engine rounds interleave in one process.
//! Child probes (seccomp, ptrace) run once, in their own processes.

use crate::child::Amount;
use crate::error::Result;
use crate::host;
use crate::probe::{Probe, Setting};
use crate::results::{Measured, Results};
use crate::rig::Stage;
use crate::sample::{calibrate, collect_into, Plan, Summary};

/// Measures `probes` by `plan` on the calling thread, reporting progress
/// through `log`. A probe that cannot be measured is listed as absent; an
/// error that leaves the thread in an unknown state ends the run.
pub fn measure(plan: &Plan, probes: &[Probe], mut log: impl FnMut(&str)) -> Result<Results> {
    let mut results = Results {
        machine: host::machine(),
        date: host::today(),
        plan: plan.describe(),
        ..Results::default()
    };
    let mut series_list: Vec<Series> = Vec::new();
    for &probe in probes {
        match probe.setting() {
            Setting::Pending => results.absent.push((
                probe,
                "pending: sud-codegen has direct-hook stubs for x86-64 only".into(),
            )),
            Setting::Child => {}
            setting => match calibrated(probe, setting, plan)? {
                Ok(batch) => series_list.push(Series {
                    probe,
                    batch,
                    samples: Vec::with_capacity(plan.total_samples()),
                    failed: None,
                }),
                Err(why) => results.absent.push((probe, why)),
            },
        }
    }
    for round in 0..plan.rounds {
        if round % (plan.rounds / 10).max(1) == 0 {
            log(&format!("round {}/{}", round + 1, plan.rounds));
        }
        let count = series_list.len();
        for i in 0..count {
            let series = &mut series_list[(i + round) % count];
            if series.failed.is_some() {
                continue;
            }
            let probe = series.probe;
            let stage = Stage::enter(probe.setting())?;
            let mut failed = None;
            collect_into(
                &mut series.samples,
                series.batch,
                plan.samples_per_round,
                |n| {
                    probe.batch(n).unwrap_or_else(|e| {
                        failed.get_or_insert(e);
                        plan.sample_time
                    })
                },
            );
            stage.leave()?;
            if let Some(e) = failed {
                log(&format!("{}: {e}", probe.key()));
                series.failed = Some(e.to_string());
            }
        }
    }
    for &probe in probes.iter().filter(|p| p.setting() == Setting::Child) {
        log(&format!("{} (forked child)", probe.key()));
        match probe.in_child(Amount::Plan(*plan)) {
            Ok(samples) => series_list.push(Series {
                probe,
                batch: 0,
                samples,
                failed: None,
            }),
            Err(e) => results.absent.push((probe, e.to_string())),
        }
    }
    for series in series_list {
        let probe = series.probe;
        match (series.failed, Summary::of(&series.samples)) {
            (Some(why), _) => results.absent.push((probe, why)),
            (None, Some(summary)) => results.measured.push(Measured { probe, summary }),
            (None, None) => results.absent.push((probe, "no samples".into())),
        }
    }
    let order = |p: &Probe| Probe::ALL.iter().position(|q| q == p);
    results.measured.sort_by_key(|m| order(&m.probe));
    results.absent.sort_by_key(|(p, _)| order(p));
    Ok(results)
}

/// One probe's samples as the rounds collect them.
struct Series {
    probe: Probe,
    /// Operations per sample.
    batch: u64,
    samples: Vec<f64>,
    /// Why the probe stopped, if it failed.
    failed: Option<String>,
}

/// The batch size that makes one sample last `plan.sample_time`, or why the
/// probe cannot run. The outer error means the stage could not be left.
fn calibrated(
    probe: Probe,
    setting: Setting,
    plan: &Plan,
) -> Result<std::result::Result<u64, String>> {
    let stage = match Stage::enter(setting) {
        Ok(stage) => stage,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let n = match probe.batch(1) {
        Ok(_) => Ok(calibrate(plan.sample_time, |n| {
            probe.batch(n).unwrap_or(plan.sample_time)
        })),
        Err(e) => Err(e.to_string()),
    };
    stage.leave()?;
    Ok(n)
}
