//! The figures of one run and the JSON object the runner prints.

use crate::probe::{Probe, Role};
use crate::sample::Summary;
use serde_json::{Map, Value};

/// One probe's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Which crossing.
    pub probe: Probe,
    /// Its median and p90 in nanoseconds per operation.
    pub summary: Summary,
}

/// Everything one run measured, with the machine it ran on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Results {
    /// CPU model, kernel release, cores.
    pub machine: String,
    /// The date of the run (`YYYY-MM-DD`, UTC).
    pub date: String,
    /// Measured probes, in [`Probe::ALL`] order.
    pub measured: Vec<Measured>,
    /// The plan the figures come from, described.
    pub plan: String,
    /// Probes that were not measured, with the reason.
    pub absent: Vec<(Probe, String)>,
}

impl Results {
    /// The figures of `probe`, if it was measured.
    pub fn get(&self, probe: Probe) -> Option<Summary> {
        self.measured
            .iter()
            .find(|m| m.probe == probe)
            .map(|m| m.summary)
    }

    /// Median of `probe` divided by median of `base`.
    pub fn ratio(&self, probe: Probe, base: Probe) -> Option<f64> {
        let (p, b) = (self.get(probe)?, self.get(base)?);
        (b.median > 0.0).then(|| p.median / b.median)
    }

    /// The contract's JSON object: `<key>` and `<key>_p90` in nanoseconds
    /// per operation for every measured contract probe, and `machine`.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        for m in self
            .measured
            .iter()
            .filter(|m| m.probe.role() == Role::Contract)
        {
            let key = m.probe.key();
            object.insert(key.to_owned(), rounded(m.summary.median));
            object.insert(format!("{key}_p90"), rounded(m.summary.p90));
        }
        object.insert("machine".to_owned(), Value::String(self.machine.clone()));
        Value::Object(object)
    }
}

/// Three decimals are plenty (sub-nanosecond probes need some).
fn rounded(ns: f64) -> Value {
    serde_json::Number::from_f64((ns * 1000.0).round() / 1000.0).map_or(Value::Null, Value::Number)
}
