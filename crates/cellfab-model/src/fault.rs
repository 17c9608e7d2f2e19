//! The fault catalogue (MODELS.md §13): what a configured fault is ([`FaultSpec`]), what a
//! stage run sees of it ([`FaultSet`] in its `StageCtx`) and the ground-truth record the plant
//! emits when it became active ([`FaultLabel`]).
//!
//! A fault's onset and duration are measured in the unit of its code ([`OnsetUnit`]): stage
//! time, web position in coating coordinates, or cell index. The stage applies the effect the
//! table of §13 gives to the true state (and, unless `sensor_visible` is false, lets the
//! sensor see it); every sample during the fault carries the label id, and every web region
//! or cell the fault touched carries it downstream (§0.8 genealogy).

use crate::alarm::Severity;
use crate::error::{check_non_negative, check_range, ParamError};
use crate::reading::Reading;
use crate::stage::{Line, StageKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// A fault kind of the catalogue (MODELS.md §13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum FaultCode {
    /// Under-dispersion of carbon black (worn disc or a hard-to-disperse lot).
    #[serde(rename = "F01_MIX_UNDER_DISPERSION")]
    F01MixUnderDispersion,
    /// One component dosed short or long.
    #[serde(rename = "F02_MIX_DOSING_ERROR")]
    F02MixDosingError,
    /// A clogged slot-die nozzle band.
    #[serde(rename = "F03_COAT_NOZZLE_CLOG")]
    F03CoatNozzleClog,
    /// Pump flow drifting away from its set point.
    #[serde(rename = "F04_COAT_WEIGHT_DRIFT")]
    F04CoatWeightDrift,
    /// A dryer zone's air temperature away from its set point.
    #[serde(rename = "F05_DRY_ZONE_TEMP_EXCURSION")]
    F05DryZoneTempExcursion,
    /// Eccentric calender roll.
    #[serde(rename = "F06_CAL_ROLL_ECCENTRICITY")]
    F06CalRollEccentricity,
    /// A chipped or fast-wearing slitter knife.
    #[serde(rename = "F07_SLIT_BLADE_WEAR")]
    F07SlitBladeWear,
    /// Oscillating web tension.
    #[serde(rename = "F08_WEB_TENSION_OSCILLATION")]
    F08WebTensionOscillation,
    /// Electrode misalignment in winding.
    #[serde(rename = "F09_ASM_MISALIGNMENT")]
    F09AsmMisalignment,
    /// Electrolyte underfill (dosing or vacuum leak).
    #[serde(rename = "F10_FILL_UNDERFILL")]
    F10FillUnderfill,
    /// A faulty formation channel (current gain or sense resistance).
    #[serde(rename = "F11_FORM_CHANNEL_FAULT")]
    F11FormChannelFault,
    /// Dry-room humidity excursion.
    #[serde(rename = "F12_DRYROOM_HUMIDITY_EXCURSION")]
    F12DryroomHumidityExcursion,
    /// A sensor fault: the process is unaffected, one measured field is corrupted.
    #[serde(rename = "S01_SENSOR_FAULT")]
    S01SensorFault,
}

/// The unit of a fault's `onset` and `duration`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnsetUnit {
    /// Stage time [s] (0 when the stage starts on the batch).
    StageTime,
    /// Web position in coating coordinates [m].
    WebPosition,
    /// Index of the cell in the lot (0-based) and a count of cells.
    CellIndex,
}

impl FaultCode {
    /// Every code, in catalogue order.
    pub const ALL: [FaultCode; 13] = [
        FaultCode::F01MixUnderDispersion,
        FaultCode::F02MixDosingError,
        FaultCode::F03CoatNozzleClog,
        FaultCode::F04CoatWeightDrift,
        FaultCode::F05DryZoneTempExcursion,
        FaultCode::F06CalRollEccentricity,
        FaultCode::F07SlitBladeWear,
        FaultCode::F08WebTensionOscillation,
        FaultCode::F09AsmMisalignment,
        FaultCode::F10FillUnderfill,
        FaultCode::F11FormChannelFault,
        FaultCode::F12DryroomHumidityExcursion,
        FaultCode::S01SensorFault,
    ];

    /// The code as the catalogue writes it (`F02_MIX_DOSING_ERROR`).
    pub fn as_str(self) -> &'static str {
        match self {
            FaultCode::F01MixUnderDispersion => "F01_MIX_UNDER_DISPERSION",
            FaultCode::F02MixDosingError => "F02_MIX_DOSING_ERROR",
            FaultCode::F03CoatNozzleClog => "F03_COAT_NOZZLE_CLOG",
            FaultCode::F04CoatWeightDrift => "F04_COAT_WEIGHT_DRIFT",
            FaultCode::F05DryZoneTempExcursion => "F05_DRY_ZONE_TEMP_EXCURSION",
            FaultCode::F06CalRollEccentricity => "F06_CAL_ROLL_ECCENTRICITY",
            FaultCode::F07SlitBladeWear => "F07_SLIT_BLADE_WEAR",
            FaultCode::F08WebTensionOscillation => "F08_WEB_TENSION_OSCILLATION",
            FaultCode::F09AsmMisalignment => "F09_ASM_MISALIGNMENT",
            FaultCode::F10FillUnderfill => "F10_FILL_UNDERFILL",
            FaultCode::F11FormChannelFault => "F11_FORM_CHANNEL_FAULT",
            FaultCode::F12DryroomHumidityExcursion => "F12_DRYROOM_HUMIDITY_EXCURSION",
            FaultCode::S01SensorFault => "S01_SENSOR_FAULT",
        }
    }

    /// The stages a fault of this code may be configured on.
    pub fn stages(self) -> &'static [StageKind] {
        match self {
            FaultCode::F01MixUnderDispersion | FaultCode::F02MixDosingError => &[StageKind::Mixing],
            FaultCode::F03CoatNozzleClog | FaultCode::F04CoatWeightDrift => &[StageKind::Coating],
            FaultCode::F05DryZoneTempExcursion => &[StageKind::Drying],
            FaultCode::F06CalRollEccentricity => &[StageKind::Calendaring],
            FaultCode::F07SlitBladeWear => &[StageKind::Slitting],
            FaultCode::F08WebTensionOscillation => &[StageKind::Slitting],
            FaultCode::F09AsmMisalignment | FaultCode::F12DryroomHumidityExcursion => &[StageKind::CellAssembly],
            FaultCode::F10FillUnderfill => &[StageKind::ElectrolyteFilling],
            FaultCode::F11FormChannelFault => &[StageKind::FormationCycling],
            FaultCode::S01SensorFault => &StageKind::ALL,
        }
    }

    /// What `onset` and `duration` count for this code.
    pub fn onset_unit(self) -> OnsetUnit {
        match self {
            FaultCode::F03CoatNozzleClog => OnsetUnit::WebPosition,
            FaultCode::F09AsmMisalignment | FaultCode::F10FillUnderfill | FaultCode::F11FormChannelFault => {
                OnsetUnit::CellIndex
            }
            _ => OnsetUnit::StageTime,
        }
    }

    /// Severity recorded on the label: how bad the product consequence typically is.
    pub fn severity(self) -> Severity {
        match self {
            FaultCode::S01SensorFault => Severity::Info,
            FaultCode::F06CalRollEccentricity
            | FaultCode::F08WebTensionOscillation
            | FaultCode::F11FormChannelFault => Severity::Warning,
            _ => Severity::Alarm,
        }
    }

    /// The demo duration of §13 used for randomly drawn faults (`None` = to the end).
    pub fn demo_duration(self) -> Option<f64> {
        match self {
            FaultCode::F03CoatNozzleClog => Some(200.0),
            FaultCode::F05DryZoneTempExcursion => Some(600.0),
            FaultCode::F08WebTensionOscillation => Some(120.0),
            FaultCode::F09AsmMisalignment => Some(500.0),
            FaultCode::F10FillUnderfill => Some(1000.0),
            FaultCode::F12DryroomHumidityExcursion => Some(4.0 * 3600.0),
            _ => None,
        }
    }

    /// The fault a random draw places on `stage` (`None` for stages without one).
    pub fn primary_for(stage: StageKind) -> Option<FaultCode> {
        Some(match stage {
            StageKind::Mixing => FaultCode::F02MixDosingError,
            StageKind::Coating => FaultCode::F04CoatWeightDrift,
            StageKind::Drying => FaultCode::F05DryZoneTempExcursion,
            StageKind::Slitting => FaultCode::F07SlitBladeWear,
            StageKind::CellAssembly => FaultCode::F12DryroomHumidityExcursion,
            StageKind::ElectrolyteFilling => FaultCode::F10FillUnderfill,
            StageKind::FormationCycling => FaultCode::F11FormChannelFault,
            _ => return None,
        })
    }
}

/// Code-specific magnitude fields (MODELS.md §13); a field left out takes the catalogue's
/// demo value. SI units; fractions as `_frac`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FaultMagnitude {
    /// F01: shaft power × factor (0.3 = worn disc); [0.01, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_factor: Option<f64>,
    /// F01: dispersion energy E_d × factor (3 = hard-to-disperse lot); [1, 100].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispersion_energy_factor: Option<f64>,
    /// F02: dosed component: `am`, `ca`, `binder` or `solvent` (default `am`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// F02: added mass × factor (default 0.97); [0.5, 1.5].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dose_factor: Option<f64>,
    /// F03: centre of the clogged band from the operator edge [m] (default 0.25); [0, 2].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cd_position_m: Option<f64>,
    /// F03: width of the clogged band [m] (default 0.003); (0, 0.5].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width_m: Option<f64>,
    /// F03: loading left in the band (0 = full clog, the default); [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loading_factor: Option<f64>,
    /// F04: relative flow drift per second (default −1e-5); [−1e-3, 1e-3].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift_rate_per_s: Option<f64>,
    /// F05: dryer zone, 1-based (default 2); [1, 20].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<u32>,
    /// F05: zone air temperature change [K] (default −50); [−200, 200].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_k: Option<f64>,
    /// F06, F08: amplitude as a fraction of the set point (defaults 0.10 / 0.4); [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amplitude_frac: Option<f64>,
    /// F08: oscillation frequency [Hz] (default 0.5); (0, 50].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_hz: Option<f64>,
    /// F07: knife index, 0-based (default 3); [0, 64].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knife: Option<u32>,
    /// F07: edge-radius step of a chip [m] (default 3e-6); [0, 5e-5].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge_radius_step_m: Option<f64>,
    /// F07: wear rate × factor instead of a chip; [1, 1000].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wear_rate_factor: Option<f64>,
    /// F09: alignment offset bias [m] (default 8e-4); [−5e-3, 5e-3].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset_bias_m: Option<f64>,
    /// F09: alignment noise × factor (default 3); [0, 20].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma_factor: Option<f64>,
    /// F10: `dosing` or `vacuum_leak`; F11: `current_gain` or `sense_resistance`; S01:
    /// `bias`, `drift`, `stuck`, `dropout` or `noise_burst`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// F10 dosing: electrolyte volume × factor (default 0.85); [0.3, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fill_factor: Option<f64>,
    /// F10 vacuum_leak: chamber pressure reached [Pa] (default 2e4); [0, 101325].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vacuum_pressure_pa: Option<f64>,
    /// F11: fraction of the channels that are faulty (default 0.01); (0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels_frac: Option<f64>,
    /// F11 current_gain: true current = set × (1 + g) (default +0.02); [−0.2, 0.2].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gain_error_frac: Option<f64>,
    /// F11 sense_resistance: series sense resistance [Ω] (default 0.05); [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sense_resistance_ohm: Option<f64>,
    /// F12: dry-room dew point during the excursion [°C] (default −10); [−80, 20].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dew_point_degc: Option<f64>,
    /// S01: the measured field of the stage's sample (`viscosity_pa_s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// S01 bias: added to the reading (unit of the signal); finite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bias: Option<f64>,
    /// S01 drift: bias growth per second of stage time (unit of the signal per s); finite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
    /// S01 dropout: probability a reading is missing; [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// S01 noise_burst: noise × factor (default 10); [1, 1000].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
}

/// One configured fault (MODELS.md §13).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Catalogue code.
    pub code: FaultCode,
    /// `anode`, `cathode` or `cell` (cell for the stages from assembly on).
    pub line: Line,
    /// The stage the fault acts in (one the code allows).
    pub stage: StageKind,
    /// Batch the fault hits (1-based; 0 = every batch). Default 1.
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// Start, in the unit of the code: stage time [s], web position [m] (F03) or cell index
    /// (F09, F10, F11); ≥ 0. Default 0.
    #[serde(default)]
    pub onset: f64,
    /// Length in the same unit; absent = to the end of the stage run; > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// Linear ramp from 0 to the full magnitude [s] (stage-time faults only; 0 = step).
    #[serde(default)]
    pub ramp_s: f64,
    /// Code-specific magnitude; fields left out take the catalogue's demo values.
    #[serde(default)]
    pub magnitude: FaultMagnitude,
    /// False: the process changes but the sensor that would show it reports the unfaulted
    /// value (a silent fault). Default true.
    #[serde(default = "default_true")]
    pub sensor_visible: bool,
}

fn default_batch() -> u32 {
    1
}

fn default_true() -> bool {
    true
}

impl FaultSpec {
    /// A fault with the catalogue's demo magnitude, starting at `onset`.
    pub fn demo(code: FaultCode, line: Line, stage: StageKind, onset: f64) -> Self {
        Self {
            code,
            line,
            stage,
            batch: 1,
            onset,
            duration: code.demo_duration(),
            ramp_s: 0.0,
            magnitude: FaultMagnitude::default(),
            sensor_visible: true,
        }
    }

    /// End of the fault in its onset unit (infinite when it lasts to the end).
    pub fn end(&self) -> f64 {
        self.duration.map_or(f64::INFINITY, |d| self.onset + d)
    }

    /// True if `x` (in the onset unit) lies inside `[onset, end)`.
    pub fn contains(&self, x: f64) -> bool {
        x >= self.onset && x < self.end()
    }

    /// Fraction of the full magnitude at `x`: 0 outside the fault, ramping linearly over
    /// `ramp_s` after the onset (stage-time faults), else 1.
    pub fn level(&self, x: f64) -> f64 {
        if !self.contains(x) {
            return 0.0;
        }
        if self.ramp_s > 0.0 && self.code.onset_unit() == OnsetUnit::StageTime {
            ((x - self.onset) / self.ramp_s).clamp(0.0, 1.0)
        } else {
            1.0
        }
    }

    /// Checks code, line, stage, onset, duration and every magnitude field of the code
    /// (MODELS.md §0.6); field names are relative (`magnitude.dose_factor`).
    pub fn validate(&self) -> Result<(), ParamError> {
        let code = self.code;
        if !code.stages().contains(&self.stage) {
            let allowed: Vec<&str> = code.stages().iter().map(|s| s.name()).collect();
            return Err(ParamError::rule(
                "stage",
                f64::NAN,
                "",
                format!("{} acts on {}, not on {}", code.as_str(), allowed.join(" or "), self.stage.name()),
            ));
        }
        let cell_stage = self.stage.is_cell_stage();
        if cell_stage != (self.line == Line::Cell) {
            let want = if cell_stage { "cell" } else { "anode or cathode" };
            return Err(ParamError::rule(
                "line",
                f64::NAN,
                "",
                format!("stage {} belongs to line {want}, got {}", self.stage.name(), self.line.title().to_lowercase()),
            ));
        }
        check_non_negative("onset", self.onset, "")?;
        if let Some(d) = self.duration {
            if !(d.is_finite() && d > 0.0) {
                return Err(ParamError {
                    field: "duration".into(),
                    value: d,
                    min: Some(0.0),
                    max: None,
                    unit: String::new(),
                    rule: "must be greater than 0 (leave it out for a fault that lasts to the end)".into(),
                });
            }
        }
        check_non_negative("ramp_s", self.ramp_s, "s")?;
        let m = &self.magnitude;
        let at = |e: ParamError| e.at("magnitude.");
        let range = |field: &str, v: Option<f64>, lo: f64, hi: f64, unit: &str| match v {
            Some(v) => check_range(field, v, lo, hi, unit).map_err(at),
            None => Ok(()),
        };
        let choice = |field: &str, v: &Option<String>, allowed: &[&str]| match v {
            Some(s) if !allowed.contains(&s.to_ascii_lowercase().as_str()) => {
                Err(at(ParamError::rule(field, f64::NAN, "", format!("\"{s}\" is not one of {}", allowed.join(", ")))))
            }
            _ => Ok(()),
        };
        match code {
            FaultCode::F01MixUnderDispersion => {
                range("power_factor", m.power_factor, 0.01, 1.0, "")?;
                range("dispersion_energy_factor", m.dispersion_energy_factor, 1.0, 100.0, "")?;
            }
            FaultCode::F02MixDosingError => {
                choice("component", &m.component, &["am", "ca", "binder", "solvent"])?;
                range("dose_factor", m.dose_factor, 0.5, 1.5, "")?;
            }
            FaultCode::F03CoatNozzleClog => {
                range("cd_position_m", m.cd_position_m, 0.0, 2.0, "m")?;
                range("width_m", m.width_m, 1e-4, 0.5, "m")?;
                range("loading_factor", m.loading_factor, 0.0, 1.0, "")?;
            }
            FaultCode::F04CoatWeightDrift => range("drift_rate_per_s", m.drift_rate_per_s, -1e-3, 1e-3, "1/s")?,
            FaultCode::F05DryZoneTempExcursion => {
                range("zone", m.zone.map(f64::from), 1.0, 20.0, "")?;
                range("delta_k", m.delta_k, -200.0, 200.0, "K")?;
            }
            FaultCode::F06CalRollEccentricity => range("amplitude_frac", m.amplitude_frac, 0.0, 0.5, "")?,
            FaultCode::F07SlitBladeWear => {
                range("knife", m.knife.map(f64::from), 0.0, 64.0, "")?;
                range("edge_radius_step_m", m.edge_radius_step_m, 0.0, 5e-5, "m")?;
                range("wear_rate_factor", m.wear_rate_factor, 1.0, 1000.0, "")?;
            }
            FaultCode::F08WebTensionOscillation => {
                range("amplitude_frac", m.amplitude_frac, 0.0, 1.0, "")?;
                range("frequency_hz", m.frequency_hz, 1e-3, 50.0, "Hz")?;
            }
            FaultCode::F09AsmMisalignment => {
                range("offset_bias_m", m.offset_bias_m, -5e-3, 5e-3, "m")?;
                range("sigma_factor", m.sigma_factor, 0.0, 20.0, "")?;
            }
            FaultCode::F10FillUnderfill => {
                choice("mode", &m.mode, &["dosing", "vacuum_leak"])?;
                range("fill_factor", m.fill_factor, 0.3, 1.0, "")?;
                range("vacuum_pressure_pa", m.vacuum_pressure_pa, 0.0, 101_325.0, "Pa")?;
            }
            FaultCode::F11FormChannelFault => {
                choice("mode", &m.mode, &["current_gain", "sense_resistance"])?;
                range("channels_frac", m.channels_frac, 1e-6, 1.0, "")?;
                range("gain_error_frac", m.gain_error_frac, -0.2, 0.2, "")?;
                range("sense_resistance_ohm", m.sense_resistance_ohm, 0.0, 1.0, "Ω")?;
            }
            FaultCode::F12DryroomHumidityExcursion => range("dew_point_degc", m.dew_point_degc, -80.0, 20.0, "°C")?,
            FaultCode::S01SensorFault => {
                match &m.signal {
                    Some(s) if !s.is_empty() => {}
                    _ => {
                        return Err(at(ParamError::rule(
                            "signal",
                            f64::NAN,
                            "",
                            "S01 needs the measured field it corrupts, e.g. \"viscosity_pa_s\"",
                        )))
                    }
                }
                choice("mode", &m.mode, &["bias", "drift", "stuck", "dropout", "noise_burst"])?;
                range("bias", m.bias, -1e12, 1e12, "")?;
                range("rate_per_s", m.rate_per_s, -1e12, 1e12, "")?;
                range("probability", m.probability, 0.0, 1.0, "")?;
                range("factor", m.factor, 1.0, 1000.0, "")?;
            }
        }
        Ok(())
    }
}

/// A fault with the label id the plant gave it for one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveFault {
    /// Label id (unique in the run, from 1).
    pub label_id: u32,
    /// Batch it acts on.
    pub batch: u32,
    /// What and how much.
    pub spec: FaultSpec,
}

/// The ground-truth record of one activated fault (MODELS.md §13), one line of
/// `fault_labels.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultLabel {
    /// Id carried by samples, web regions and cells.
    pub label_id: u32,
    /// Catalogue code.
    pub code: FaultCode,
    /// Line.
    pub line: Line,
    /// Batch.
    pub batch_id: u32,
    /// Stage.
    pub stage: StageKind,
    /// Machine id.
    pub machine_id: String,
    /// Plant time of the first sample or product the fault touched [s].
    pub onset_t_s: f64,
    /// Plant time of the last [s].
    pub end_t_s: f64,
    /// First web position touched (coating coordinates) [m].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onset_position_m: Option<f64>,
    /// Last web position touched [m].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_position_m: Option<f64>,
    /// Lanes touched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lanes: Option<Vec<u32>>,
    /// Cross-direction centre of the fault [m].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cd_position_m: Option<f64>,
    /// Cells touched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell_ids: Option<Vec<String>>,
    /// Magnitude as configured (fields left out took the demo values).
    pub magnitude: FaultMagnitude,
    /// True unless the fault was silent to its sensor.
    pub sensor_visible: bool,
    /// Typical severity of the consequence.
    pub severity: Severity,
}

/// A region of the web a fault touched, in coating coordinates; carried by the web products
/// so that every cell cut from it inherits the label (MODELS.md §0.8).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRegion {
    /// Label id.
    pub label_id: u32,
    /// First metre touched (coating coordinates) [m].
    pub md_start_m: f64,
    /// End of the touched interval [m].
    pub md_end_m: f64,
    /// Cross-direction start (from the operator edge) [m].
    pub cd_start_m: f64,
    /// Cross-direction end [m].
    pub cd_end_m: f64,
}

impl FaultRegion {
    /// True if the rectangle overlaps `[x0, x1] × [y0, y1]`.
    pub fn overlaps(&self, x0: f64, x1: f64, y0: f64, y1: f64) -> bool {
        self.md_start_m < x1 && x0 < self.md_end_m && self.cd_start_m < y1 && y0 < self.cd_end_m
    }
}

#[derive(Clone, Debug, Default)]
struct Touch {
    t0: f64,
    t1: f64,
    pos: Option<(f64, f64)>,
    lanes: BTreeSet<u32>,
    cd_position_m: Option<f64>,
    cells: Vec<String>,
    stuck: Option<f64>,
}

/// Where a fault acted, as a stage reports it.
#[derive(Clone, Copy, Debug, Default)]
pub struct At<'a> {
    /// Stage time [s].
    pub stage_time_s: f64,
    /// Web position (coating coordinates) [m].
    pub position_m: Option<f64>,
    /// Lane.
    pub lane: Option<u32>,
    /// Cross-direction centre [m].
    pub cd_position_m: Option<f64>,
    /// Cell id.
    pub cell_id: Option<&'a str>,
}

/// The faults of one stage run, and what they touched (filled in by the stage, read by the
/// plant after the run to emit the labels). Thread-safe: formation and aging touch from
/// parallel jobs.
#[derive(Debug, Default)]
pub struct FaultSet {
    faults: Vec<ActiveFault>,
    touches: Mutex<BTreeMap<u32, Touch>>,
}

/// A stage run without faults.
pub static NO_FAULTS: FaultSet = FaultSet { faults: Vec::new(), touches: Mutex::new(BTreeMap::new()) };

impl FaultSet {
    /// The faults of one stage run.
    pub fn new(faults: Vec<ActiveFault>) -> Self {
        Self { faults, touches: Mutex::new(BTreeMap::new()) }
    }

    /// True when no fault acts on this stage run.
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Every fault of this run.
    pub fn all(&self) -> &[ActiveFault] {
        &self.faults
    }

    /// The faults of one code.
    pub fn of(&self, code: FaultCode) -> impl Iterator<Item = &ActiveFault> + '_ {
        self.faults.iter().filter(move |f| f.spec.code == code)
    }

    /// Records that fault `label_id` acted at `at`.
    pub fn touch(&self, label_id: u32, at: At<'_>) {
        let mut touches = self.touches.lock().expect("fault touches lock");
        let t = touches.entry(label_id).or_insert_with(|| Touch {
            t0: at.stage_time_s,
            t1: at.stage_time_s,
            ..Touch::default()
        });
        t.t0 = t.t0.min(at.stage_time_s);
        t.t1 = t.t1.max(at.stage_time_s);
        if let Some(x) = at.position_m {
            t.pos = Some(t.pos.map_or((x, x), |(a, b)| (a.min(x), b.max(x))));
        }
        if let Some(l) = at.lane {
            t.lanes.insert(l);
        }
        if at.cd_position_m.is_some() {
            t.cd_position_m = at.cd_position_m;
        }
        if let Some(c) = at.cell_id {
            t.cells.push(c.to_string());
        }
    }

    /// Labels of the stage-time faults (including S01) active at `stage_time_s`, and of the
    /// web-position faults active at `position_m`; records the touch. What a sample at that
    /// instant carries (cell-index faults are added by the cell stages).
    pub fn labels_at(&self, stage_time_s: f64, position_m: Option<f64>) -> Vec<u32> {
        if self.faults.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for f in &self.faults {
            let hit = match f.spec.code.onset_unit() {
                OnsetUnit::StageTime => f.spec.contains(stage_time_s),
                OnsetUnit::WebPosition => position_m.is_some_and(|x| f.spec.contains(x)),
                // cell faults: the stage labels the samples of the affected cells itself
                OnsetUnit::CellIndex => false,
            };
            if hit {
                out.push(f.label_id);
                self.touch(f.label_id, At { stage_time_s, position_m, ..At::default() });
            }
        }
        out
    }

    /// True if the fault has touched anything yet.
    pub fn touched(&self, label_id: u32) -> bool {
        self.touches.lock().expect("fault touches lock").contains_key(&label_id)
    }

    /// Applies the S01 sensor faults on `signal` at `stage_time_s` to a reading (§0.4):
    /// `bias` (added, ramped over `ramp_s`), `drift` (bias growing at `rate_per_s` from the
    /// onset), `stuck` (frozen at the first reading of the fault), `dropout` (missing with
    /// `probability`, decided by a hash of label and time so the process streams are
    /// untouched) or `noise_burst` (the sensor's deviation from the true value × `factor`).
    pub fn corrupt(&self, signal: &str, stage_time_s: f64, reading: Reading) -> Reading {
        let mut r = reading;
        for f in self.of(FaultCode::S01SensorFault) {
            let m = &f.spec.magnitude;
            if m.signal.as_deref() != Some(signal) || !f.spec.contains(stage_time_s) {
                continue;
            }
            self.touch(f.label_id, At { stage_time_s, ..At::default() });
            let mode = m.mode.as_deref().unwrap_or("bias").to_ascii_lowercase();
            r.measured = match mode.as_str() {
                "drift" => r.measured.map(|v| v + m.rate_per_s.unwrap_or(0.0) * (stage_time_s - f.spec.onset)),
                "stuck" => {
                    let mut touches = self.touches.lock().expect("fault touches lock");
                    let t = touches.entry(f.label_id).or_default();
                    Some(*t.stuck.get_or_insert(r.value()))
                }
                "dropout" => {
                    let h = crate::random::derive_seed(f.label_id as u64, &[stage_time_s.to_bits()]);
                    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
                    if u < m.probability.unwrap_or(1.0) {
                        None
                    } else {
                        r.measured
                    }
                }
                "noise_burst" => r.measured.map(|v| r.true_value + (v - r.true_value) * m.factor.unwrap_or(10.0)),
                _ => r.measured.map(|v| v + f.spec.level(stage_time_s) * m.bias.unwrap_or(0.0)),
            };
        }
        r
    }

    /// The labels of every fault that touched something, for `machine_id` of `batch`,
    /// stage times shifted to plant time by `start_t_s`.
    pub fn labels(&self, machine_id: &str, start_t_s: f64) -> Vec<FaultLabel> {
        let touches = self.touches.lock().expect("fault touches lock");
        self.faults
            .iter()
            .filter_map(|f| {
                let t = touches.get(&f.label_id)?;
                let lanes: Vec<u32> = t.lanes.iter().copied().collect();
                Some(FaultLabel {
                    label_id: f.label_id,
                    code: f.spec.code,
                    line: f.spec.line,
                    batch_id: f.batch,
                    stage: f.spec.stage,
                    machine_id: machine_id.to_string(),
                    onset_t_s: start_t_s + t.t0,
                    end_t_s: start_t_s + t.t1,
                    onset_position_m: t.pos.map(|p| p.0),
                    end_position_m: t.pos.map(|p| p.1),
                    lanes: (!lanes.is_empty()).then_some(lanes),
                    cd_position_m: t.cd_position_m,
                    cell_ids: (!t.cells.is_empty()).then(|| t.cells.clone()),
                    magnitude: f.spec.magnitude.clone(),
                    sensor_visible: f.spec.sensor_visible,
                    severity: f.spec.code.severity(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_catalogue_names() {
        for c in FaultCode::ALL {
            let s = serde_json::to_string(&c).unwrap();
            assert_eq!(s, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<FaultCode>(&s).unwrap(), c);
        }
    }

    #[test]
    fn a_ramp_reaches_the_full_level_after_ramp_s() {
        let mut f = FaultSpec::demo(FaultCode::F04CoatWeightDrift, Line::Anode, StageKind::Coating, 100.0);
        f.ramp_s = 100.0;
        f.duration = Some(1000.0);
        assert_eq!(f.level(50.0), 0.0);
        assert!((f.level(150.0) - 0.5).abs() < 1e-12);
        assert_eq!(f.level(500.0), 1.0);
        assert_eq!(f.level(1100.0), 0.0);
    }
}
