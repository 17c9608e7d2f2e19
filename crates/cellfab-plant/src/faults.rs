//! Fault injection (MODELS.md §13): the configured faults and the random ones drawn from the
//! run's seed, numbered once per run so that every stage run of a batch knows which faults
//! act on it and under which label id.

use cellfab_model::fault::{ActiveFault, FaultCode, FaultSpec};
use cellfab_model::random::{stream, uniform};
use cellfab_model::{Line, ParamError, StageKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A random fault source: on each batch, with probability `probability_per_batch`, the
/// stage's catalogue fault ([`FaultCode::primary_for`]) with its demo magnitude strikes,
/// with an onset drawn uniformly in `[0, onset_max)` (the unit of the code).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultRate {
    /// `anode`, `cathode` or `cell`.
    pub line: Line,
    /// Stage (mixing, coating, drying, slitting, cell_assembly, electrolyte_filling or
    /// formation_cycling: the stages with a catalogue fault to draw).
    pub stage: StageKind,
    /// Probability that a batch gets the fault; [0, 1].
    pub probability_per_batch: f64,
    /// Upper end of the drawn onset (s, m or cell index, the unit of the code); ≥ 0.
    /// Default 1000.
    #[serde(default = "default_onset_max")]
    pub onset_max: f64,
}

fn default_onset_max() -> f64 {
    1000.0
}

impl FaultRate {
    /// Checks the stage has a fault to draw, the line fits it and the probability.
    pub fn validate(&self) -> Result<(), ParamError> {
        let Some(code) = FaultCode::primary_for(self.stage) else {
            return Err(ParamError::rule(
                "stage",
                f64::NAN,
                "",
                format!("no catalogue fault is drawn at random on {}", self.stage.name()),
            ));
        };
        cellfab_model::error::check_range("probability_per_batch", self.probability_per_batch, 0.0, 1.0, "")?;
        cellfab_model::error::check_non_negative("onset_max", self.onset_max, "")?;
        FaultSpec::demo(code, self.line, self.stage, 0.0).validate()
    }
}

/// Stream purpose of the random fault draws (apart from the stage streams 1–3).
const FAULT_STREAM: u64 = 0xFA17;

/// Every fault of the run, with label ids 1, 2, … in order of batch, then configured faults
/// in list order, then random faults in rate order. Deterministic in the seed.
pub fn expand(faults: &[FaultSpec], rates: &[FaultRate], batches: u32, seed: u64) -> Vec<ActiveFault> {
    let mut out = Vec::new();
    let mut next_id = 1u32;
    for batch in 1..=batches {
        for spec in faults.iter().filter(|f| f.batch == 0 || f.batch == batch) {
            out.push(ActiveFault { label_id: next_id, batch, spec: spec.clone() });
            next_id += 1;
        }
        for (i, rate) in rates.iter().enumerate() {
            let Some(code) = FaultCode::primary_for(rate.stage) else { continue };
            let mut rng = stream(seed, &[FAULT_STREAM, batch as u64, i as u64]);
            let (hit, onset) = (uniform(&mut rng), uniform(&mut rng));
            if hit < rate.probability_per_batch {
                let mut spec = FaultSpec::demo(code, rate.line, rate.stage, (onset * rate.onset_max).floor());
                spec.batch = batch;
                out.push(ActiveFault { label_id: next_id, batch, spec });
                next_id += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_faults_repeat_with_the_seed_and_number_from_one() {
        let rates = [FaultRate {
            line: Line::Cathode,
            stage: StageKind::Drying,
            probability_per_batch: 0.5,
            onset_max: 1000.0,
        }];
        let a = expand(&[], &rates, 40, 7);
        assert_eq!(a, expand(&[], &rates, 40, 7));
        assert!(!a.is_empty() && a.len() < 40, "about half the batches: {}", a.len());
        assert!(a.iter().enumerate().all(|(i, f)| f.label_id == i as u32 + 1));
        assert!(a.iter().all(|f| f.spec.code == FaultCode::F05DryZoneTempExcursion && f.spec.onset < 1000.0));
    }
}
