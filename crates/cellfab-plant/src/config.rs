//! One configuration type for the whole plant (DESIGN.md §2): plant settings, the recipe and
//! the stage parameters of each electrode line, and the cell line. It reads from TOML and
//! JSON (a file may give only the keys it changes: they are merged onto the defaults, then
//! every key is checked and unknown keys are refused), and its JSON Schema feeds the UI.

use crate::error::PlantError;
use crate::faults::FaultRate;
use crate::pacing::Speed;
use cellfab_model::fault::FaultSpec;
use cellfab_model::recipe::Recipe;
use cellfab_model::stage::StageParams;
use cellfab_model::stages::{
    aging::AgingParams, assembly::AssemblyParams, calendaring::CalendaringParams, coating::CoatingParams,
    drying::DryingParams, filling::FillingParams, formation::FormationParams, inspection::InspectionParams,
    mixing::MixingParams, rewinding::RewindingParams, slitting::SlittingParams,
};
use cellfab_model::ParamError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Everything a run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlantConfig {
    /// Run settings: batches, seed, start, speed, randomness.
    pub plant: PlantSettings,
    /// The anode line (graphite on copper).
    pub anode: ElectrodeLineConfig,
    /// The cathode line (NMC811 on aluminium).
    pub cathode: ElectrodeLineConfig,
    /// The cell line: assembly, filling, formation, aging.
    pub cell: CellLineConfig,
    /// Faults to inject (MODELS.md §13), as `[[faults]]` tables; empty = none.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// Random faults drawn from the run's seed, per line and stage (`[[fault_rates]]`).
    #[serde(default)]
    pub fault_rates: Vec<FaultRate>,
}

/// Run settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlantSettings {
    /// Batches to run (one slurry tank per electrode each); [1, queue_capacity].
    pub batches: u32,
    /// Master seed; every random stream is derived from it.
    pub seed: u64,
    /// Plant time 0 as an RFC 3339 instant (e.g. "2025-01-01T00:00:00Z"); empty = now.
    pub start: String,
    /// "max" (as fast as possible) or simulated seconds per wall second, e.g. 600.
    pub speed: Speed,
    /// Process variability (drifts, profiles, random defects); off = deterministic mode.
    pub process_variability: bool,
    /// Sensor noise on measured values; off = measured equals true.
    pub sensor_noise: bool,
    /// Batches the queue in front of the mixers holds; [1, 10000].
    pub queue_capacity: u32,
    /// Engine threads: 1 runs every machine on one thread, 0 = one thread per machine.
    pub threads: u32,
}

impl Default for PlantSettings {
    fn default() -> Self {
        Self {
            batches: 1,
            seed: 42,
            start: String::new(),
            speed: Speed::Max,
            process_variability: true,
            sensor_noise: true,
            queue_capacity: 64,
            threads: 0,
        }
    }
}

/// Recipe and machine settings of one electrode line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ElectrodeLineConfig {
    /// Materials and recipe constants.
    pub recipe: Recipe,
    /// Slurry mixing (MODELS.md §1).
    pub mixing: MixingParams,
    /// Slot-die coating (§2).
    pub coating: CoatingParams,
    /// Drying (§3).
    pub drying: DryingParams,
    /// Calendering (§4).
    pub calendaring: CalendaringParams,
    /// Slitting (§5).
    pub slitting: SlittingParams,
    /// Electrode inspection (§6).
    pub inspection: InspectionParams,
    /// Rewinding (§7).
    pub rewinding: RewindingParams,
}

impl ElectrodeLineConfig {
    /// Default anode line.
    pub fn anode() -> Self {
        Self {
            recipe: Recipe::anode(),
            mixing: MixingParams::anode(),
            coating: CoatingParams::anode(),
            drying: DryingParams::anode(),
            calendaring: CalendaringParams::anode(),
            slitting: SlittingParams::anode(),
            inspection: InspectionParams::default(),
            rewinding: RewindingParams::anode(),
        }
    }

    /// Default cathode line.
    pub fn cathode() -> Self {
        Self {
            recipe: Recipe::cathode(),
            mixing: MixingParams::cathode(),
            coating: CoatingParams::cathode(),
            drying: DryingParams::cathode(),
            calendaring: CalendaringParams::cathode(),
            slitting: SlittingParams::cathode(),
            inspection: InspectionParams::default(),
            rewinding: RewindingParams::cathode(),
        }
    }

    fn validate(&self, prefix: &str) -> Result<(), ParamError> {
        let at = |stage: &str| format!("{prefix}.{stage}.");
        self.recipe.validate().map_err(|e| e.at(&at("recipe")))?;
        self.mixing.validate().map_err(|e| e.at(&at("mixing")))?;
        self.coating.validate().map_err(|e| e.at(&at("coating")))?;
        self.drying.validate().map_err(|e| e.at(&at("drying")))?;
        self.calendaring.validate().map_err(|e| e.at(&at("calendaring")))?;
        self.slitting.validate().map_err(|e| e.at(&at("slitting")))?;
        self.inspection.validate().map_err(|e| e.at(&at("inspection")))?;
        self.rewinding.validate().map_err(|e| e.at(&at("rewinding")))
    }
}

/// Machine settings of the cell line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CellLineConfig {
    /// Cell assembly (§8).
    pub assembly: AssemblyParams,
    /// Electrolyte filling (§9).
    pub filling: FillingParams,
    /// Formation cycling (§10).
    pub formation: FormationParams,
    /// Aging (§11).
    pub aging: AgingParams,
}

impl Default for PlantConfig {
    fn default() -> Self {
        Self {
            plant: PlantSettings::default(),
            anode: ElectrodeLineConfig::anode(),
            cathode: ElectrodeLineConfig::cathode(),
            cell: CellLineConfig::default(),
            faults: Vec::new(),
            fault_rates: Vec::new(),
        }
    }
}

/// Largest queue a plant may be given.
pub const MAX_QUEUE_CAPACITY: u32 = 10_000;

impl PlantConfig {
    /// The default plant in deterministic mode (no variability, no noise): the scenario of
    /// MODELS.md §15.
    pub fn deterministic() -> Self {
        let mut c = Self::default();
        c.plant.process_variability = false;
        c.plant.sensor_noise = false;
        c
    }

    /// Checks every parameter; the error's field is the full path of the key.
    pub fn validate(&self) -> Result<(), PlantError> {
        let p = &self.plant;
        cellfab_model::error::check_range(
            "plant.queue_capacity",
            p.queue_capacity as f64,
            1.0,
            MAX_QUEUE_CAPACITY as f64,
            "",
        )?;
        if p.batches == 0 {
            return Err(ParamError::range("plant.batches", 0.0, 1.0, p.queue_capacity as f64, "").into());
        }
        if p.batches > p.queue_capacity {
            return Err(PlantError::QueueFull { requested: p.batches, capacity: p.queue_capacity });
        }
        if !p.start.is_empty() {
            parse_start(&p.start)?;
        }
        self.anode.validate("anode")?;
        self.cathode.validate("cathode")?;
        let c = &self.cell;
        c.assembly.validate().map_err(|e| e.at("cell.assembly."))?;
        c.filling.validate().map_err(|e| e.at("cell.filling."))?;
        c.formation.validate().map_err(|e| e.at("cell.formation."))?;
        c.aging.validate().map_err(|e| e.at("cell.aging."))?;
        for (i, f) in self.faults.iter().enumerate() {
            f.validate().map_err(|e| e.at(&format!("faults[{i}].")))?;
            if f.batch > p.batches {
                return Err(ParamError::range(
                    &format!("faults[{i}].batch"),
                    f.batch as f64,
                    0.0,
                    p.batches as f64,
                    "",
                )
                .into());
            }
        }
        for (i, r) in self.fault_rates.iter().enumerate() {
            r.validate().map_err(|e| e.at(&format!("fault_rates[{i}].")))?;
        }
        Ok(())
    }

    /// Reads a TOML document holding any subset of the keys; the rest keep their defaults.
    pub fn from_toml_str(text: &str) -> Result<Self, PlantError> {
        let value: toml::Value = toml::from_str(text).map_err(|e| PlantError::Config(e.to_string()))?;
        let json = serde_json::to_value(value).map_err(|e| PlantError::Config(e.to_string()))?;
        Self::from_json_value(json)
    }

    /// Reads a JSON document holding any subset of the keys.
    pub fn from_json_str(text: &str) -> Result<Self, PlantError> {
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| PlantError::Config(e.to_string()))?;
        Self::from_json_value(json)
    }

    /// Merges `overrides` onto the defaults and parses the result (unknown keys refused).
    pub fn from_json_value(overrides: serde_json::Value) -> Result<Self, PlantError> {
        Self::default().merged(overrides)
    }

    /// Merges `overrides` onto this configuration (objects key by key, everything else
    /// replaced) and parses the result. Does not validate ranges: call [`Self::validate`].
    pub fn merged(&self, overrides: serde_json::Value) -> Result<Self, PlantError> {
        let mut base = serde_json::to_value(self).map_err(|e| PlantError::Config(e.to_string()))?;
        merge(&mut base, overrides);
        // name the key that failed (`cell.formation.channels: invalid type …`), not just the type
        serde_path_to_error::deserialize(base).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            PlantError::Config(if path == "." { inner.to_string() } else { format!("{path}: {inner}") })
        })
    }

    /// The default configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// JSON Schema of the configuration.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(PlantConfig)).unwrap_or_default()
    }
}

/// Parses an RFC 3339 start instant.
pub fn parse_start(text: &str) -> Result<jiff::Timestamp, PlantError> {
    text.parse::<jiff::Timestamp>().map_err(|e| {
        PlantError::Param(ParamError::rule(
            "plant.start",
            f64::NAN,
            "",
            format!("\"{text}\" is not an RFC 3339 instant such as 2025-01-01T00:00:00Z ({e})"),
        ))
    })
}

fn merge(base: &mut serde_json::Value, overrides: serde_json::Value) {
    match (base, overrides) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}
