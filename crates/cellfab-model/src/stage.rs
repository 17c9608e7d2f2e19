//! The shape every stage shares: identity ([`StageKind`], [`Line`]), the context the plant
//! hands in ([`StageCtx`]), the sink samples and alarms go to ([`StageSink`]) and the
//! [`Stage`] trait that ties a `Params`, an input product, an output product, a sample type
//! and a result type together.

use crate::alarm::Alarm;
use crate::error::ParamError;
use crate::legacy::LegacyRecord;
use crate::random::StreamRng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A production line: the two electrode lines meet at cell assembly and become the cell line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Line {
    /// Graphite on copper.
    Anode,
    /// NMC811 on aluminium.
    Cathode,
    /// Assembly, filling, formation and aging of whole cells.
    Cell,
}

impl Line {
    /// `Anode`, `Cathode` or `Cell`, as machine ids and the legacy `Electrode Type` spell it.
    pub fn title(self) -> &'static str {
        match self {
            Line::Anode => "Anode",
            Line::Cathode => "Cathode",
            Line::Cell => "Cell",
        }
    }

    /// Stable number used in random-stream paths.
    pub fn id(self) -> u64 {
        match self {
            Line::Anode => 1,
            Line::Cathode => 2,
            Line::Cell => 3,
        }
    }
}

/// Every stage of the chain, in process order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// Slurry mixing (MODELS.md §1).
    Mixing,
    /// Slot-die coating (§2).
    Coating,
    /// Convective drying (§3).
    Drying,
    /// Calendering (§4).
    Calendaring,
    /// Slitting into lanes (§5).
    Slitting,
    /// In-line electrode inspection (§6).
    Inspection,
    /// Rewinding onto reels (§7).
    Rewinding,
    /// Winding jelly rolls (§8).
    CellAssembly,
    /// Electrolyte filling (§9).
    ElectrolyteFilling,
    /// Formation cycling (§10).
    FormationCycling,
    /// Aging (§11).
    Aging,
}

impl StageKind {
    /// All stages in process order.
    pub const ALL: [StageKind; 11] = [
        StageKind::Mixing,
        StageKind::Coating,
        StageKind::Drying,
        StageKind::Calendaring,
        StageKind::Slitting,
        StageKind::Inspection,
        StageKind::Rewinding,
        StageKind::CellAssembly,
        StageKind::ElectrolyteFilling,
        StageKind::FormationCycling,
        StageKind::Aging,
    ];

    /// The stages of each electrode line.
    pub const ELECTRODE: [StageKind; 7] = [
        StageKind::Mixing,
        StageKind::Coating,
        StageKind::Drying,
        StageKind::Calendaring,
        StageKind::Slitting,
        StageKind::Inspection,
        StageKind::Rewinding,
    ];

    /// The stages of the cell line.
    pub const CELL: [StageKind; 4] =
        [StageKind::CellAssembly, StageKind::ElectrolyteFilling, StageKind::FormationCycling, StageKind::Aging];

    /// snake_case name (`cell_assembly`).
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Mixing => "mixing",
            StageKind::Coating => "coating",
            StageKind::Drying => "drying",
            StageKind::Calendaring => "calendaring",
            StageKind::Slitting => "slitting",
            StageKind::Inspection => "inspection",
            StageKind::Rewinding => "rewinding",
            StageKind::CellAssembly => "cell_assembly",
            StageKind::ElectrolyteFilling => "electrolyte_filling",
            StageKind::FormationCycling => "formation_cycling",
            StageKind::Aging => "aging",
        }
    }

    /// Parses a snake_case name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Output folder of the seed layout (`mixing_output`).
    pub fn folder(self) -> String {
        format!("{}_output", self.name())
    }

    /// The legacy `Process` string.
    pub fn process(self) -> &'static str {
        match self {
            StageKind::Mixing => "Mixing",
            StageKind::Coating => "Coating",
            StageKind::Drying => "Drying",
            StageKind::Calendaring => "Calendaring",
            StageKind::Slitting => "Slitting",
            StageKind::Inspection => "ElectrodeInspection",
            StageKind::Rewinding => "Rewinding",
            StageKind::CellAssembly => "CellAssembly",
            StageKind::ElectrolyteFilling => "Electrolyte Filling",
            StageKind::FormationCycling => "FormationCycling",
            StageKind::Aging => "AgingMachine",
        }
    }

    /// Machine id as the prototype named it (`TK_Mix_Anode`, `MC_Aging_Cell`).
    pub fn machine_id(self, line: Line) -> String {
        let prefix = match self {
            StageKind::Mixing => "TK_Mix",
            StageKind::Coating => "MC_Coat",
            StageKind::Drying => "MC_Dry",
            StageKind::Calendaring => "MC_Cal",
            StageKind::Slitting => "MC_Slit",
            StageKind::Inspection => "MC_Inspect",
            StageKind::Rewinding => "MC_Rewind",
            StageKind::CellAssembly => "MC_Assembly",
            StageKind::ElectrolyteFilling => "MC_ElecFill",
            StageKind::FormationCycling => "MC_Formation",
            StageKind::Aging => "MC_Aging",
        };
        format!("{prefix}_{}", line.title())
    }

    /// True for the stages of the cell line.
    pub fn is_cell_stage(self) -> bool {
        Self::CELL.contains(&self)
    }

    /// Stable number used in random-stream paths.
    pub fn id(self) -> u64 {
        self as u64 + 1
    }
}

/// What the plant hands a stage run: identity, start time, random streams and mode flags.
pub struct StageCtx<'a> {
    /// Batch number (1-based).
    pub batch_id: u32,
    /// Line the machine belongs to.
    pub line: Line,
    /// Plant time at which the stage starts on this batch [s]; sample `t_s` = this + stage time.
    pub start_t_s: f64,
    /// Process-variability stream (changes the true product).
    pub process_rng: &'a mut StreamRng,
    /// Sensor-noise stream (changes only measured values).
    pub sensor_rng: &'a mut StreamRng,
    /// Seed for further sub-streams (per cell), derived by the plant for this stage run.
    pub stream_seed: u64,
    /// Process variability on (AR(1) drifts, profiles, random defects). Off = deterministic.
    pub process_variability: bool,
    /// Sensor noise on. Off = measured equals true.
    pub sensor_noise: bool,
    /// Runs independent jobs of one stage run (chunks of cells), possibly on several
    /// threads; the plant provides it, tests pass [`Sequential`].
    pub parallel: &'a dyn Parallel,
    /// Faults acting on this stage run (MODELS.md §13); [`crate::fault::NO_FAULTS`] for none.
    pub faults: &'a crate::fault::FaultSet,
}

/// Data-parallel work inside one stage run, provided by the plant (the model crate spawns
/// nothing). A stage splits its work into `jobs` independent jobs whose results it merges
/// in job order, so the outcome never depends on how many threads ran them.
pub trait Parallel: Sync {
    /// Calls `job(i)` once for every `i` in `0..jobs`, in any order and on any thread, and
    /// returns when all calls have returned. A panic in a job propagates to the caller.
    fn for_each(&self, jobs: usize, job: &(dyn Fn(usize) + Sync));
}

/// Runs every job on the calling thread, in index order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sequential;

impl Parallel for Sequential {
    fn for_each(&self, jobs: usize, job: &(dyn Fn(usize) + Sync)) {
        (0..jobs).for_each(job);
    }
}

/// Receives what a stage produces while it runs. Samples come in time order; alarms come
/// when they are raised or cleared, interleaved with samples in time order.
pub trait StageSink<S> {
    /// One sample at stage time `sample.stage_time_s`.
    fn sample(&mut self, sample: S);
    /// One alarm event.
    fn alarm(&mut self, alarm: &Alarm);
}

/// A sink that keeps everything in memory (tests, small runs).
#[derive(Debug)]
pub struct VecSink<S> {
    /// Samples in emission order.
    pub samples: Vec<S>,
    /// Alarm events in emission order.
    pub alarms: Vec<Alarm>,
}

impl<S> Default for VecSink<S> {
    fn default() -> Self {
        Self { samples: Vec::new(), alarms: Vec::new() }
    }
}

impl<S> StageSink<S> for VecSink<S> {
    fn sample(&mut self, sample: S) {
        self.samples.push(sample);
    }
    fn alarm(&mut self, alarm: &Alarm) {
        self.alarms.push(alarm.clone());
    }
}

/// A sink that counts samples and drops them (benchmarks of the stepping alone).
#[derive(Debug, Default)]
pub struct CountSink {
    /// Samples received.
    pub samples: u64,
    /// Alarm events received.
    pub alarms: u64,
}

impl<S> StageSink<S> for CountSink {
    fn sample(&mut self, _sample: S) {
        self.samples += 1;
    }
    fn alarm(&mut self, _alarm: &Alarm) {
        self.alarms += 1;
    }
}

/// What a finished stage run returns.
#[derive(Debug)]
pub struct StageRun<O, R> {
    /// The product handed to the next stage.
    pub output: O,
    /// The final result of this machine for this batch.
    pub result: R,
    /// Stage duration (machine occupancy) [s].
    pub duration_s: f64,
}

/// A sample type: serialisable, with its legacy (seed-layout) keys.
pub trait SampleRecord: Serialize + Send + Sync + 'static {
    /// Stage time of the sample [s].
    fn stage_time_s(&self) -> f64;
    /// Writes the stage's legacy keys, in the legacy order, with measured values in legacy
    /// units (MODELS.md §0.10 and each stage's mapping table).
    fn legacy(&self, out: &mut LegacyRecord);
}

/// A final-result type: serialisable, with its legacy keys (`"Final Properties"` …).
pub trait ResultRecord: Serialize + Send + Sync + 'static {
    /// Writes the legacy top-level entries that follow the base keys (at least
    /// `"Final Properties"`).
    fn legacy(&self, out: &mut LegacyRecord);
    /// True when the product passed this stage's acceptance (no alarm ≥ Alarm).
    fn accepted(&self) -> bool;
    /// A few key values for the run summary table: (label with unit, value).
    fn summary(&self) -> Vec<(&'static str, f64)>;
}

/// Parameters of a stage.
pub trait StageParams: Clone + std::fmt::Debug + Serialize + serde::de::DeserializeOwned + JsonSchema {
    /// Checks every field against its range and the cross-field rules (MODELS.md §0.6).
    fn validate(&self) -> Result<(), ParamError>;
}

/// One stage of the chain.
pub trait Stage {
    /// Which stage this is.
    const KIND: StageKind;
    /// Machine settings and recipe constants.
    type Params: StageParams;
    /// The product received from upstream.
    type Input;
    /// The product handed downstream.
    type Output;
    /// One time-series sample.
    type Sample: SampleRecord;
    /// The final result for one batch.
    type Result: ResultRecord;
    /// State the machine keeps from one batch to the next (the slitter's blade wear);
    /// `()` for machines that keep none.
    type MachineState: Default + Clone + Send + std::fmt::Debug;

    /// Runs the stage on one batch. Samples are emitted at stage times 0, Δ, 2Δ, … strictly
    /// before the end, plus one at the end (MODELS.md §0.2).
    fn run(
        params: &Self::Params,
        input: Self::Input,
        machine: &mut Self::MachineState,
        ctx: &mut StageCtx<'_>,
        sink: &mut dyn StageSink<Self::Sample>,
    ) -> StageRun<Self::Output, Self::Result>;
}

/// Sample times of a stage of duration `duration_s` sampled every `interval_s`:
/// k·Δ for k·Δ < T, then T itself (MODELS.md §0.2). Computed, never accumulated.
pub fn sample_times(duration_s: f64, interval_s: f64) -> impl Iterator<Item = f64> {
    let n = (duration_s / interval_s).floor() as u64;
    let on_grid = (n as f64 * interval_s - duration_s).abs() <= 1e-9 * duration_s.max(1.0);
    let regular = if on_grid { n } else { n + 1 };
    (0..regular).map(move |k| k as f64 * interval_s).chain(std::iter::once(duration_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_counts_follow_models_0_2() {
        assert_eq!(sample_times(6300.0, 5.0).count(), 1261);
        assert_eq!(sample_times(2968.75, 2.0).count(), 1486);
        let v: Vec<f64> = sample_times(5.0, 2.0).collect();
        assert_eq!(v, vec![0.0, 2.0, 4.0, 5.0]);
    }

    #[test]
    fn machine_ids_match_the_prototype() {
        assert_eq!(StageKind::Mixing.machine_id(Line::Anode), "TK_Mix_Anode");
        assert_eq!(StageKind::Coating.machine_id(Line::Cathode), "MC_Coat_Cathode");
        assert_eq!(StageKind::Aging.machine_id(Line::Cell), "MC_Aging_Cell");
        assert_eq!(StageKind::ElectrolyteFilling.folder(), "electrolyte_filling_output");
    }
}
