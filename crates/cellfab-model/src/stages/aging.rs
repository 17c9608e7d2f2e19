//! Aging: formed cells rest at open circuit (a high-temperature phase, then room
//! temperature); OCV is read twice to get the self-discharge K-value, soft shorts show up as
//! K-value outliers, end-of-line resistance is measured and every cell is graded against the
//! lot (MODELS.md §11, cell model §12). `Vec<FormedCell>` in, `Vec<AgedCell>` out; hourly lot
//! samples. [`CellResultRow`] flattens an aged cell into one row of the per-cell table.
//!
//! ```text
//!   FormedCell (storage SOC) ─► shelf: 45 °C for 2 d ─► 25 °C ─► OCV₁ at t₁ = 3 d ─► OCV₂ at 10 d
//!                               K = (OCV₁ − OCV₂)/(t₂ − t₁), DCR pulse, grade ─► AgedCell
//! ```
//!
//! The cell state (y, x, Q₁, Q₂, V₁) continues from the end of formation; at I = 0 only
//! the SEI (I₁ + I₂, irreversible) and a latent short (I_sh = OCV/R_sh, reversible) move
//! charge. Each cell is simulated on its own, in fixed-size chunks ([`CELLS_PER_JOB`]) run
//! as jobs of `ctx.parallel` and merged in chunk order (bit-identical on any number of
//! threads); the anode potential is evaluated once per
//! step and feeds both SEI factors, and the OCV is evaluated only at samples and
//! measurements (every step only when the cell has a short).
//!
//! Randomness: no process variability. Sensor noise per cell from its own stream
//! `stream(ctx.stream_seed, [Purpose::Sensor, cell index])`, in time order: the OCV of every
//! sample, then OCV₁ at t₁, then OCV₂ at t₂, then the DCR pulse. Lot samples draw the shelf
//! temperature from `ctx.sensor_rng`, one draw per sample.

use crate::alarm::{Alarm, AlarmScope, AlarmTracker, Severity};
use crate::consts::SECONDS_PER_HOUR;
use crate::electrochem::{pulse_resistance_ohm, CellConstants, CellState, RestLanes, ThermalFactors, REST_LANES};
use crate::error::{check_non_negative, check_open_min, check_positive, check_range, ParamError};
use crate::legacy::{put, put_object, put_value, LegacyRecord};
use crate::random::{stream, Purpose, StreamRng};
use crate::reading::{Reading, Sensor};
use crate::stage::{
    sample_times, ResultRecord, SampleRecord, Stage, StageCtx, StageKind, StageParams, StageRun, StageSink,
};
use crate::stages::formation::{traced_cell_indices, FormedCell, LotStats};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Noise of the shelf temperature sensor [°C] [E].
pub const SHELF_TEMPERATURE_SIGMA_DEGC: f64 = 0.1;

/// Seconds per day, for the display unit of the K-value.
const SECONDS_PER_DAY: f64 = 86400.0;

// =======================================================================================
// Parameters
// =======================================================================================

/// Aging shelf settings (MODELS.md §11.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgingParams {
    /// Total aging time (prototype `aging_time_days` × 86400); [3600, 5.2e6] s (10 d default;
    /// 7–14 d EV practice). [L]
    pub duration_s: f64,
    /// Length of the high-temperature phase at the start; [0, duration) s. [L]
    pub high_temp_phase_s: f64,
    /// Shelf temperature of the high-temperature phase; [20, 70] °C. [L]
    pub high_temp_degc: f64,
    /// Room-temperature phase temperature (prototype `temperature`); [−20, 60] °C. [L]
    pub temperature_degc: f64,
    /// OCV₁ is read this long after the high-temperature phase; ≥ 0 s, HT + settle < duration. [L]
    pub ocv_settle_s: f64,
    /// K-value rejection limit (0.5 mV/day); > 0 V/s. [L]
    pub k_value_max_v_per_s: f64,
    /// OCV meter noise; ≥ 0 V. [C]
    pub ocv_sigma_v: f64,
    /// OCV meter resolution; ≥ 0 V. [C]
    pub ocv_resolution_v: f64,
    /// End-of-line pulse current (recorded; the linear model's DCR does not depend on it);
    /// (0, 10] C. [C]
    pub dcr_pulse_c_rate: f64,
    /// End-of-line pulse length; (0, 3600] s. [C]
    pub dcr_pulse_s: f64,
    /// DCR measurement noise; ≥ 0 Ω. [C]
    pub dcr_sigma_ohm: f64,
    /// Grade A: |Q_dis − median|/median within this; [0, 1]. [C]
    pub grade_a_capacity_band_frac: f64,
    /// Grade B: |Q_dis − median|/median within this; [0, 1], ≥ the grade-A band. [C]
    pub grade_b_capacity_band_frac: f64,
    /// Grade A: DCR at most this × the lot median; [1, 10]. [C]
    pub grade_a_dcr_ratio: f64,
    /// Grade B: DCR at most this × the lot median; [1, 10], ≥ the grade-A ratio. [C]
    pub grade_b_dcr_ratio: f64,
    /// Legacy SOC-loss flag: soc_end < (1 − this)·soc₀; (0, 1). [U]
    pub soc_loss_max_frac: f64,
    /// Shelf power per cell in the high-temperature phase; ≥ 0 W. [C]
    pub shelf_power_ht_w: f64,
    /// Shelf power per cell in the room-temperature phase; ≥ 0 W. [C]
    pub shelf_power_rt_w: f64,
    /// Reject limit of the end-of-line DCR (formation's `max_dcr_10s_ohm`); > 0 Ω. [C]
    pub max_dcr_ohm: f64,
    /// Reject limit of the capacity as a fraction of Q_design (formation's
    /// `min_capacity_frac_of_design`); [0, 2]. [C]
    pub min_capacity_frac_of_design: f64,
    /// Explicit Euler step; (0, 3600] s. [E]
    pub integration_step_s: f64,
    /// Lot sample interval; (0, 5.2e6] s. [E]
    pub sample_interval_s: f64,
    /// Cells traced in full in every sample (first cell of lanes 0, 2, 4, 6, …); [0, 1000]. [E]
    pub traced_cells: u32,
}

impl Default for AgingParams {
    fn default() -> Self {
        Self {
            duration_s: 864000.0,
            high_temp_phase_s: 172800.0,
            high_temp_degc: 45.0,
            temperature_degc: 25.0,
            ocv_settle_s: 86400.0,
            k_value_max_v_per_s: 5.787e-9,
            ocv_sigma_v: 5e-5,
            ocv_resolution_v: 1e-5,
            dcr_pulse_c_rate: 1.0,
            dcr_pulse_s: 10.0,
            dcr_sigma_ohm: 2e-4,
            grade_a_capacity_band_frac: 0.02,
            grade_b_capacity_band_frac: 0.04,
            grade_a_dcr_ratio: 1.10,
            grade_b_dcr_ratio: 1.25,
            soc_loss_max_frac: 0.05,
            shelf_power_ht_w: 0.1,
            shelf_power_rt_w: 0.01,
            max_dcr_ohm: 0.035,
            min_capacity_frac_of_design: 0.95,
            integration_step_s: 60.0,
            sample_interval_s: 3600.0,
            traced_cells: 4,
        }
    }
}

impl StageParams for AgingParams {
    fn validate(&self) -> Result<(), ParamError> {
        check_range("duration_s", self.duration_s, 3600.0, 5.2e6, "s")?;
        check_range("high_temp_phase_s", self.high_temp_phase_s, 0.0, 5.2e6, "s")?;
        check_range("high_temp_degc", self.high_temp_degc, 20.0, 70.0, "°C")?;
        check_range("temperature_degc", self.temperature_degc, -20.0, 60.0, "°C")?;
        check_non_negative("ocv_settle_s", self.ocv_settle_s, "s")?;
        if self.high_temp_phase_s + self.ocv_settle_s >= self.duration_s {
            return Err(ParamError::rule(
                "ocv_settle_s",
                self.ocv_settle_s,
                "s",
                format!(
                    "high_temp_phase_s + ocv_settle_s must be below duration_s ({}), got {}",
                    self.duration_s,
                    self.high_temp_phase_s + self.ocv_settle_s
                ),
            ));
        }
        check_positive("k_value_max_v_per_s", self.k_value_max_v_per_s, "V/s")?;
        check_non_negative("ocv_sigma_v", self.ocv_sigma_v, "V")?;
        check_non_negative("ocv_resolution_v", self.ocv_resolution_v, "V")?;
        check_open_min("dcr_pulse_c_rate", self.dcr_pulse_c_rate, 0.0, 10.0, "C")?;
        check_open_min("dcr_pulse_s", self.dcr_pulse_s, 0.0, 3600.0, "s")?;
        check_non_negative("dcr_sigma_ohm", self.dcr_sigma_ohm, "Ω")?;
        check_range("grade_a_capacity_band_frac", self.grade_a_capacity_band_frac, 0.0, 1.0, "")?;
        check_range("grade_b_capacity_band_frac", self.grade_b_capacity_band_frac, 0.0, 1.0, "")?;
        if self.grade_b_capacity_band_frac < self.grade_a_capacity_band_frac {
            return Err(ParamError::rule(
                "grade_b_capacity_band_frac",
                self.grade_b_capacity_band_frac,
                "",
                format!("must be at least grade_a_capacity_band_frac ({})", self.grade_a_capacity_band_frac),
            ));
        }
        check_range("grade_a_dcr_ratio", self.grade_a_dcr_ratio, 1.0, 10.0, "")?;
        check_range("grade_b_dcr_ratio", self.grade_b_dcr_ratio, 1.0, 10.0, "")?;
        if self.grade_b_dcr_ratio < self.grade_a_dcr_ratio {
            return Err(ParamError::rule(
                "grade_b_dcr_ratio",
                self.grade_b_dcr_ratio,
                "",
                format!("must be at least grade_a_dcr_ratio ({})", self.grade_a_dcr_ratio),
            ));
        }
        if !(self.soc_loss_max_frac > 0.0 && self.soc_loss_max_frac < 1.0) {
            let mut e = ParamError::range("soc_loss_max_frac", self.soc_loss_max_frac, 0.0, 1.0, "");
            e.rule = "must be within range (both bounds excluded)".into();
            return Err(e);
        }
        check_non_negative("shelf_power_ht_w", self.shelf_power_ht_w, "W")?;
        check_non_negative("shelf_power_rt_w", self.shelf_power_rt_w, "W")?;
        check_positive("max_dcr_ohm", self.max_dcr_ohm, "Ω")?;
        check_range("min_capacity_frac_of_design", self.min_capacity_frac_of_design, 0.0, 2.0, "")?;
        check_open_min("integration_step_s", self.integration_step_s, 0.0, 3600.0, "s")?;
        check_open_min("sample_interval_s", self.sample_interval_s, 0.0, 5.2e6, "s")?;
        check_range("traced_cells", self.traced_cells as f64, 0.0, 1000.0, "")?;
        Ok(())
    }
}

// =======================================================================================
// Product
// =======================================================================================

/// End-of-line grade of a cell (MODELS.md §11.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum Grade {
    /// Capacity within the A band of the lot median and DCR ≤ A ratio × median.
    A,
    /// Within the B band and ratio.
    B,
    /// Good cell outside the B band or ratio.
    C,
    /// Rejected here or upstream.
    Reject,
}

/// An aged, measured and graded cell (MODELS.md §0.9 `AgedCell`). OCV, K-value and DCR are
/// [`Reading`]s: decisions use the measured values, labels keep the true ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgedCell {
    /// The formed cell as it entered aging.
    pub formed: FormedCell,
    /// The cell was aged (false: rejected upstream, passed through).
    pub aged: bool,
    /// OCV at the start of aging [V].
    pub ocv_start_v: f64,
    /// OCV₁ at t₁ = high-temperature phase + settle time [V].
    pub ocv_1_v: Reading,
    /// OCV₂ at t₂ = the end of aging [V].
    pub ocv_2_v: Reading,
    /// K-value (OCV₁ − OCV₂)/(t₂ − t₁) [V/s].
    pub k_value_v_per_s: Reading,
    /// Measured K-value in the display unit [mV/day].
    pub k_value_mv_per_day: f64,
    /// State of charge at the end of aging.
    pub soc_end_frac: f64,
    /// True self-discharge current I₁ + I₂ + I_sh at the end [A].
    pub self_discharge_current_a: f64,
    /// Leakage estimate from the measured K-value, Î = K·3600·Q_dis/(∂OCV/∂SOC) [A].
    pub leakage_estimate_a: f64,
    /// ∂OCV/∂SOC at the end (backward difference, §11.2) [V per unit SOC].
    pub ocv_soc_slope_v: f64,
    /// Irreversible capacity loss ΔQ_SEI during aging [Ah].
    pub capacity_loss_ah: f64,
    /// End-of-line DCR at 25 °C [Ω].
    pub dcr_eol_ohm: Reading,
    /// Electrochemical state at the end of aging.
    pub state: CellState,
    /// Shelf energy of the cell [J].
    pub shelf_energy_j: f64,
    /// Grade.
    pub grade: Grade,
    /// Every reject reason, upstream first.
    pub reject_reasons: Vec<String>,
}

impl AgedCell {
    /// The cell's id.
    pub fn cell_id(&self) -> &str {
        self.formed.cell_id()
    }

    fn unaged(formed: FormedCell) -> Self {
        let zero = Reading::exact(0.0);
        Self {
            aged: false,
            ocv_start_v: formed.ocv_v,
            ocv_1_v: zero,
            ocv_2_v: zero,
            k_value_v_per_s: zero,
            k_value_mv_per_day: 0.0,
            soc_end_frac: formed.soc_frac.true_value,
            self_discharge_current_a: 0.0,
            leakage_estimate_a: 0.0,
            ocv_soc_slope_v: 0.0,
            capacity_loss_ah: 0.0,
            dcr_eol_ohm: zero,
            state: formed.state(),
            shelf_energy_j: 0.0,
            grade: Grade::Reject,
            reject_reasons: formed.reject_reason.iter().cloned().collect(),
            formed,
        }
    }
}

/// One row of the per-cell table (JSON Lines): genealogy, design, formation and aging
/// results, grade. Measured values where the plant measures; `None` where the cell never got
/// that far (rejected upstream).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellResultRow {
    /// Cell id `B<batch>-L<lane>-<k>`.
    pub cell_id: String,
    /// Batch number.
    pub batch_id: u32,
    /// Lane.
    pub lane: u32,
    /// Index along the lane.
    pub index_in_lane: u32,
    /// Anode reel id.
    pub anode_reel_id: String,
    /// Cathode reel id.
    pub cathode_reel_id: String,
    /// Anode interval start in coating coordinates [m].
    pub anode_coating_start_m: f64,
    /// Anode interval end in coating coordinates [m].
    pub anode_coating_end_m: f64,
    /// Cathode interval start in coating coordinates [m].
    pub cathode_coating_start_m: f64,
    /// Cathode interval end in coating coordinates [m].
    pub cathode_coating_end_m: f64,
    /// A splice lies inside the cell.
    pub splice: bool,
    /// Ids of the web defects in the cell.
    pub defect_ids: Vec<u32>,
    /// Fault labels that touched the cell.
    pub fault_labels: Vec<u32>,
    /// Design capacity [Ah].
    pub design_capacity_ah: f64,
    /// N/P ratio.
    pub np_ratio: f64,
    /// Wetting fraction at release to formation.
    pub wetting_frac: f64,
    /// First-charge capacity Q_ch1 (measured) [Ah].
    pub first_charge_capacity_ah: Option<f64>,
    /// Discharge capacity Q_dis (measured) [Ah].
    pub discharge_capacity_ah: Option<f64>,
    /// First-cycle efficiency (measured).
    pub first_cycle_efficiency_frac: Option<f64>,
    /// Discharge energy (measured) [Wh].
    pub discharge_energy_wh: Option<f64>,
    /// Mean discharge voltage (measured) [V].
    pub mean_discharge_voltage_v: Option<f64>,
    /// R₀ at 25 °C after formation [Ω].
    pub r0_ohm: Option<f64>,
    /// DCR_10s at 25 °C after formation [Ω].
    pub dcr_10s_ohm: Option<f64>,
    /// OCV at the start of aging [V].
    pub ocv_start_v: Option<f64>,
    /// OCV₁ (measured) [V].
    pub ocv_1_v: Option<f64>,
    /// OCV₂ (measured) [V].
    pub ocv_2_v: Option<f64>,
    /// K-value (measured) [V/s].
    pub k_value_v_per_s: Option<f64>,
    /// K-value (measured) [mV/day].
    pub k_value_mv_per_day: Option<f64>,
    /// K-value (true, for labels) [V/s].
    pub k_value_true_v_per_s: Option<f64>,
    /// SOC at the end of aging.
    pub soc_end_frac: Option<f64>,
    /// Capacity loss during aging [Ah].
    pub capacity_loss_ah: Option<f64>,
    /// End-of-line DCR (measured) [Ω].
    pub dcr_eol_ohm: Option<f64>,
    /// Cell mass with electrolyte [kg].
    pub mass_kg: f64,
    /// Specific energy [Wh/kg].
    pub specific_energy_wh_kg: Option<f64>,
    /// Energy density [Wh/L].
    pub energy_density_wh_l: Option<f64>,
    /// Grade.
    pub grade: Grade,
    /// Every reject reason, upstream first.
    pub reject_reasons: Vec<String>,
}

impl From<&AgedCell> for CellResultRow {
    fn from(c: &AgedCell) -> Self {
        let f = &c.formed;
        let asm = &f.filled.assembled;
        let g = &asm.genealogy;
        let formed = |v: f64| f.formed.then_some(v);
        let aged = |v: f64| c.aged.then_some(v);
        Self {
            cell_id: g.cell_id.clone(),
            batch_id: g.batch_id,
            lane: g.lane,
            index_in_lane: g.index_in_lane,
            anode_reel_id: g.anode_reel_id.clone(),
            cathode_reel_id: g.cathode_reel_id.clone(),
            anode_coating_start_m: g.anode_coating_start_m,
            anode_coating_end_m: g.anode_coating_end_m,
            cathode_coating_start_m: g.cathode_coating_start_m,
            cathode_coating_end_m: g.cathode_coating_end_m,
            splice: g.splice,
            defect_ids: g.defect_ids.clone(),
            fault_labels: g.fault_labels.clone(),
            design_capacity_ah: asm.design_capacity_ah,
            np_ratio: asm.np_ratio,
            wetting_frac: f.filled.wetting_frac,
            first_charge_capacity_ah: formed(f.first_charge_capacity_ah.value()),
            discharge_capacity_ah: formed(f.discharge_capacity_ah.value()),
            first_cycle_efficiency_frac: formed(f.first_cycle_efficiency_frac.value()),
            discharge_energy_wh: formed(f.discharge_energy_wh.value()),
            mean_discharge_voltage_v: formed(f.mean_discharge_voltage_v.value()),
            r0_ohm: formed(f.r0_ohm),
            dcr_10s_ohm: formed(f.dcr_10s_ohm),
            ocv_start_v: aged(c.ocv_start_v),
            ocv_1_v: aged(c.ocv_1_v.value()),
            ocv_2_v: aged(c.ocv_2_v.value()),
            k_value_v_per_s: aged(c.k_value_v_per_s.value()),
            k_value_mv_per_day: aged(c.k_value_mv_per_day),
            k_value_true_v_per_s: aged(c.k_value_v_per_s.true_value),
            soc_end_frac: aged(c.soc_end_frac),
            capacity_loss_ah: aged(c.capacity_loss_ah),
            dcr_eol_ohm: aged(c.dcr_eol_ohm.value()),
            mass_kg: f.outputs.mass_kg,
            specific_energy_wh_kg: formed(f.outputs.specific_energy_wh_kg),
            energy_density_wh_l: formed(f.outputs.energy_density_wh_l),
            grade: c.grade,
            reject_reasons: c.reject_reasons.clone(),
        }
    }
}

// =======================================================================================
// Per-cell simulation
// =======================================================================================

const EVENT_SAMPLE: u8 = 1;
const EVENT_OCV_1: u8 = 2;
const EVENT_END: u8 = 4;

/// The event times of a run (samples, OCV₁, end) and the temperature schedule, shared by
/// every cell.
#[derive(Clone, Debug)]
struct AgingPlan {
    times_s: Vec<f64>,
    kinds: Vec<u8>,
    n_samples: usize,
    high_temp_end_s: f64,
    hot: ThermalFactors,
    room: ThermalFactors,
    dt_s: f64,
    eps_s: f64,
}

impl AgingPlan {
    fn new(p: &AgingParams) -> Self {
        let eps_s = 1e-9 * p.duration_s.max(1.0);
        let t1 = p.high_temp_phase_s + p.ocv_settle_s;
        let mut events: Vec<(f64, u8)> =
            sample_times(p.duration_s, p.sample_interval_s).map(|t| (t, EVENT_SAMPLE)).collect();
        let n_samples = events.len();
        events.push((t1, EVENT_OCV_1));
        events.push((p.duration_s, EVENT_END));
        events.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (mut times_s, mut kinds): (Vec<f64>, Vec<u8>) = (Vec::new(), Vec::new());
        for (t, k) in events {
            match times_s.last() {
                Some(&last) if (t - last).abs() <= eps_s => *kinds.last_mut().expect("same length") |= k,
                _ => {
                    times_s.push(t);
                    kinds.push(k);
                }
            }
        }
        Self {
            times_s,
            kinds,
            n_samples,
            high_temp_end_s: p.high_temp_phase_s,
            hot: ThermalFactors::at(p.high_temp_degc),
            room: ThermalFactors::at(p.temperature_degc),
            dt_s: p.integration_step_s,
            eps_s,
        }
    }

    /// Temperature factors of a step that starts at `t_s`.
    #[inline]
    fn factors(&self, t_s: f64) -> &ThermalFactors {
        if t_s < self.high_temp_end_s - self.eps_s {
            &self.hot
        } else {
            &self.room
        }
    }
}

/// A per-cell alarm decided at the end of aging, emitted before the last sample.
#[derive(Clone, Debug)]
struct CellAlarm {
    code: &'static str,
    severity: Severity,
    signal: &'static str,
    value: f64,
    threshold: f64,
    cell_id: String,
    message: String,
}

/// What the shelf reports about one cell at a sample time.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ShelfPoint {
    ocv_v: Reading,
    soc_frac: f64,
    self_discharge_current_a: f64,
}

/// The outcome of aging one cell.
#[derive(Clone, Debug)]
struct CellAging {
    state: CellState,
    constants: CellConstants,
    ocv_start_v: f64,
    ocv_1: Reading,
    ocv_2: Reading,
    soc_end_frac: f64,
    self_discharge_current_a: f64,
    capacity_loss_ah: f64,
    dcr: Reading,
}

/// One cell on the shelf while [`age_cells`] runs (its state lives in the [`RestLanes`]).
struct ShelfCell<'a> {
    c: CellConstants,
    soc_per_ah: f64,
    soc: f64,
    sei_start_ah: f64,
    ocv_start_v: f64,
    ocv_1: Reading,
    ocv_2: Reading,
    self_discharge_current_a: f64,
    rng: &'a mut StreamRng,
}

/// Rests formed cells at open circuit over the plan (MODELS.md §11.2): I = 0, the SEI and a
/// latent short discharge the cell, `soc −= (I₁ + I₂ + I_sh)·dt/(3600·Q_dis)`. The cells
/// (at most [`REST_LANES`]) share the time grid (integration steps shortened to land on
/// every event) and are stepped side by side in [`RestLanes`]; each reads its sensors from
/// its own stream in time order. Calls `record(slot, j, point)` at every sample j of every
/// cell.
fn age_cells(
    p: &AgingParams,
    plan: &AgingPlan,
    cells: &[&FormedCell],
    noise: bool,
    rngs: &mut [StreamRng],
    mut record: impl FnMut(usize, usize, &ShelfPoint),
) -> Vec<CellAging> {
    let ocv_sensor = Sensor { resolution: p.ocv_resolution_v, ..Sensor::absolute(p.ocv_sigma_v) };
    let start: Vec<(CellConstants, CellState)> =
        cells.iter().map(|cell| (CellConstants::from_filled(&cell.filled), cell.state())).collect();
    let mut lanes = RestLanes::new(&start);
    let mut shelf: Vec<ShelfCell<'_>> = cells
        .iter()
        .zip(&start)
        .zip(rngs.iter_mut())
        .map(|((cell, &(c, s)), rng)| {
            let q_dis = cell.discharge_capacity_ah.true_value;
            let ocv_start_v = s.ocv_v();
            ShelfCell {
                soc_per_ah: if q_dis > 0.0 { 1.0 / q_dis } else { 0.0 },
                soc: cell.soc_frac.true_value,
                sei_start_ah: s.sei_charge_ah(),
                ocv_start_v,
                ocv_1: Reading::exact(ocv_start_v),
                ocv_2: Reading::exact(ocv_start_v),
                self_discharge_current_a: 0.0,
                c,
                rng,
            }
        })
        .collect();
    let (mut k, mut t, mut j) = (0u64, 0.0f64, 0usize);
    let dt = plan.dt_s;
    let eps = plan.eps_s;

    for (&ev_t, &kind) in plan.times_s.iter().zip(&plan.kinds) {
        // Integrate up to the event, landing exactly on it.
        while t < ev_t - eps {
            let grid = (k + 1) as f64 * dt;
            let (t_next, on_grid) = if ev_t < grid - eps { (ev_t, false) } else { (grid, true) };
            let h = t_next - t;
            let self_discharge_a = lanes.step(plan.factors(t), h);
            for (sc, i_sd) in shelf.iter_mut().zip(self_discharge_a) {
                sc.soc -= i_sd * h / SECONDS_PER_HOUR * sc.soc_per_ah;
            }
            t = t_next;
            if on_grid {
                k += 1;
            }
        }
        t = ev_t;
        let tf = plan.factors(t);
        for (slot, sc) in shelf.iter_mut().enumerate() {
            let (s, u_n) = (lanes.state(slot), lanes.anode_potential_v(slot));
            let ocv_v = s.cathode_potential_v() - u_n;
            sc.self_discharge_current_a = s.side_currents(&sc.c, tf, 0.0, u_n, ocv_v).self_discharge_a();
            if kind & EVENT_SAMPLE != 0 {
                let reading = ocv_sensor.measure(ocv_v, noise, sc.rng);
                let point = ShelfPoint {
                    ocv_v: reading,
                    soc_frac: sc.soc,
                    self_discharge_current_a: sc.self_discharge_current_a,
                };
                record(slot, j, &point);
            }
            if kind & EVENT_OCV_1 != 0 {
                sc.ocv_1 = ocv_sensor.measure(ocv_v, noise, sc.rng);
            }
            if kind & EVENT_END != 0 {
                sc.ocv_2 = ocv_sensor.measure(ocv_v, noise, sc.rng);
            }
        }
        if kind & EVENT_SAMPLE != 0 {
            j += 1;
        }
    }
    let ref25 = ThermalFactors::reference();
    let dcr_sensor = Sensor::absolute(p.dcr_sigma_ohm);
    shelf
        .into_iter()
        .enumerate()
        .map(|(slot, sc)| {
            let s = lanes.state(slot);
            let dcr_true = pulse_resistance_ohm(sc.c.r0_ohm(&s, &ref25), sc.c.r1_ohm(&ref25), p.dcr_pulse_s);
            CellAging {
                capacity_loss_ah: s.sei_charge_ah() - sc.sei_start_ah,
                dcr: dcr_sensor.measure(dcr_true, noise, sc.rng),
                state: s,
                constants: sc.c,
                ocv_start_v: sc.ocv_start_v,
                ocv_1: sc.ocv_1,
                ocv_2: sc.ocv_2,
                soc_end_frac: sc.soc,
                self_discharge_current_a: sc.self_discharge_current_a,
            }
        })
        .collect()
}

/// Cells per parallel job. Fixed, never derived from the thread count: lot sums are added
/// cell by cell within a chunk and then chunk by chunk, in the same order whatever the
/// number of threads.
pub const CELLS_PER_JOB: usize = 256;

/// Per-sample sums and extremes of the cells of one chunk (or of the lot).
#[derive(Clone, Debug)]
struct ShelfSums {
    ocv_sum: Vec<f64>,
    ocv_min: Vec<f64>,
    ocv_max: Vec<f64>,
    soc_sum: Vec<f64>,
    isd_sum: Vec<f64>,
}

impl ShelfSums {
    fn new(ns: usize) -> Self {
        Self {
            ocv_sum: vec![0.0; ns],
            ocv_min: vec![f64::INFINITY; ns],
            ocv_max: vec![f64::NEG_INFINITY; ns],
            soc_sum: vec![0.0; ns],
            isd_sum: vec![0.0; ns],
        }
    }

    #[inline]
    fn add(&mut self, j: usize, pt: &ShelfPoint) {
        let v = pt.ocv_v.value();
        self.ocv_sum[j] += v;
        self.ocv_min[j] = self.ocv_min[j].min(v);
        self.ocv_max[j] = self.ocv_max[j].max(v);
        self.soc_sum[j] += pt.soc_frac;
        self.isd_sum[j] += pt.self_discharge_current_a;
    }

    /// Adds the sums of a later chunk, sample by sample.
    fn merge(&mut self, other: &ShelfSums) {
        for j in 0..self.ocv_sum.len() {
            self.ocv_sum[j] += other.ocv_sum[j];
            self.ocv_min[j] = self.ocv_min[j].min(other.ocv_min[j]);
            self.ocv_max[j] = self.ocv_max[j].max(other.ocv_max[j]);
            self.soc_sum[j] += other.soc_sum[j];
            self.isd_sum[j] += other.isd_sum[j];
        }
    }
}

/// What one chunk produced: its sums, the points of its traced cells (by position in the
/// trace list) and the outcome of every cell (by input index).
struct ShelfChunk {
    sums: ShelfSums,
    traces: Vec<(usize, Vec<ShelfPoint>)>,
    cells: Vec<(usize, CellAging)>,
}

/// Ages the cells `chunk` (input indices) in lock-step groups, each cell with its own
/// sensor stream.
fn age_chunk(
    p: &AgingParams,
    plan: &AgingPlan,
    input: &[FormedCell],
    chunk: &[usize],
    traced: &[usize],
    stream_seed: u64,
    noise: bool,
) -> ShelfChunk {
    let mut done = ShelfChunk { sums: ShelfSums::new(plan.n_samples), traces: Vec::new(), cells: Vec::new() };
    for group in chunk.chunks(REST_LANES) {
        let cells: Vec<&FormedCell> = group.iter().map(|&i| &input[i]).collect();
        let mut rngs: Vec<StreamRng> =
            group.iter().map(|&i| stream(stream_seed, &[Purpose::Sensor as u64, i as u64])).collect();
        let trace_slots: Vec<Option<usize>> = group
            .iter()
            .map(|&i| {
                traced.iter().position(|&t| t == i).map(|ts| {
                    done.traces.push((ts, Vec::with_capacity(plan.n_samples)));
                    done.traces.len() - 1
                })
            })
            .collect();
        let (sums, traces) = (&mut done.sums, &mut done.traces);
        let outs = age_cells(p, plan, &cells, noise, &mut rngs, |slot, j, pt| {
            sums.add(j, pt);
            if let Some(ts) = trace_slots[slot] {
                traces[ts].1.push(*pt);
            }
        });
        done.cells.extend(group.iter().copied().zip(outs));
    }
    done
}

// =======================================================================================
// Samples
// =======================================================================================

/// One traced cell in an aging sample (MODELS.md §11.3).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgingTrace {
    /// Cell id.
    pub cell_id: String,
    /// Open-circuit voltage [V].
    pub ocv_v: Reading,
    /// State of charge.
    pub soc_frac: f64,
    /// Self-discharge current I₁ + I₂ + I_sh [A].
    pub self_discharge_current_a: f64,
}

/// An hourly aging lot sample (MODELS.md §11.3), over the aged cells.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgingSample {
    /// Plant time [s].
    pub t_s: f64,
    /// Stage time [s].
    pub stage_time_s: f64,
    /// Shelf temperature [°C].
    pub temperature_degc: Reading,
    /// Mean measured OCV [V].
    pub ocv_mean_v: f64,
    /// Lowest measured OCV [V].
    pub ocv_min_v: f64,
    /// Highest measured OCV [V].
    pub ocv_max_v: f64,
    /// Mean state of charge.
    pub soc_mean_frac: f64,
    /// Mean self-discharge current [A].
    pub self_discharge_current_mean_a: f64,
    /// Traced cells.
    pub traced: Vec<AgingTrace>,
    /// Cells flagged so far (K-value, DCR, SOC loss: decided at the end).
    pub cells_flagged: u32,
    /// Mean storage SOC the cells entered with (legacy `"Initial SOC"`).
    pub initial_soc_mean_frac: f64,
    /// A cell alarm of severity ≥ Warning was raised since the previous sample.
    pub defect_risk: bool,
    /// Fault labels active on the lot.
    pub fault_labels: Vec<u32>,
}

/// Writes the legacy keys of §11.4 (the store writes `"Duration (days)"`).
fn aging_legacy(out: &mut LegacyRecord, initial_soc: f64, temperature_degc: f64, soc: f64, ocv_v: f64, leak_a: f64) {
    put(out, "Initial SOC", initial_soc);
    put(out, "Temperature (C)", temperature_degc);
    put(out, "Final SOC (%)", soc * 100.0);
    put(out, "Final OCV (V)", ocv_v);
    put(out, "Leakage Current (mA)", leak_a * 1e3);
}

impl SampleRecord for AgingSample {
    fn stage_time_s(&self) -> f64 {
        self.stage_time_s
    }

    fn legacy(&self, out: &mut LegacyRecord) {
        aging_legacy(
            out,
            self.initial_soc_mean_frac,
            self.temperature_degc.value(),
            self.soc_mean_frac,
            self.ocv_mean_v,
            self.self_discharge_current_mean_a,
        );
    }
}

// =======================================================================================
// Result
// =======================================================================================

/// Cells per grade.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GradeCounts {
    /// Grade A.
    pub a: u32,
    /// Grade B.
    pub b: u32,
    /// Grade C.
    pub c: u32,
    /// Rejected (here or upstream).
    pub reject: u32,
}

/// Distribution of the measured K-value over the aged cells [mV/day].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KValueDistribution {
    /// Mean, σ, min, max.
    pub stats: LotStats,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// The legacy lot flags of the final record (§11.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgingDefectRisk {
    /// Any cell with `AGE_HIGH_K_VALUE`.
    pub ocv_drop: bool,
    /// Any cell whose leakage estimate exceeds `k_value_max·3600·Q_dis/slope`.
    pub leakage_current_high: bool,
    /// Any cell with `AGE_SOC_LOSS`.
    pub soc_loss: bool,
}

/// The aging result of one lot (MODELS.md §11.3).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgingResult {
    /// Cells received.
    pub cells_in: u32,
    /// Cells aged.
    pub cells_aged: u32,
    /// Cells per grade.
    pub grade_counts: GradeCounts,
    /// Aging rejects per code.
    pub reject_counts: BTreeMap<String, u32>,
    /// Measured K-value distribution [mV/day].
    pub k_value_mv_per_day: KValueDistribution,
    /// Capacity loss of the aged cells [Ah].
    pub capacity_loss_ah: LotStats,
    /// End SOC of the aged cells.
    pub soc_end_frac: LotStats,
    /// End-of-line DCR (measured) of the aged cells [Ω].
    pub dcr_eol_ohm: LotStats,
    /// Lot median of the measured discharge capacity used for grading [Ah].
    pub discharge_capacity_median_ah: f64,
    /// Lot median of the measured DCR used for grading [Ω].
    pub dcr_median_ohm: f64,
    /// Shelf energy of the lot [J].
    pub shelf_energy_j: f64,
    /// Stage duration [s].
    pub duration_s: f64,
    /// Mean storage SOC the cells entered with.
    pub initial_soc_mean_frac: f64,
    /// Shelf temperature at the end [°C].
    pub temperature_degc: f64,
    /// Mean SOC at the end.
    pub soc_mean_frac: f64,
    /// Mean measured OCV at the end [V].
    pub ocv_mean_v: f64,
    /// Mean self-discharge current at the end [A].
    pub self_discharge_current_mean_a: f64,
    /// The legacy lot flags.
    pub defect_risk: AgingDefectRisk,
    /// Every alarm event of the run.
    pub alarms: Vec<Alarm>,
    /// No alarm ≥ Alarm was raised (no cell rejected by aging).
    pub accepted: bool,
}

impl ResultRecord for AgingResult {
    fn legacy(&self, out: &mut LegacyRecord) {
        put_object(out, "Final Properties", |o| {
            aging_legacy(
                o,
                self.initial_soc_mean_frac,
                self.temperature_degc,
                self.soc_mean_frac,
                self.ocv_mean_v,
                self.self_discharge_current_mean_a,
            )
        });
        put_object(out, "defect_risk", |o| {
            put_value(o, "OCV_Drop", self.defect_risk.ocv_drop);
            put_value(o, "Leakage_Current_High", self.defect_risk.leakage_current_high);
            put_value(o, "SOC_Loss", self.defect_risk.soc_loss);
        });
    }

    fn accepted(&self) -> bool {
        self.accepted
    }

    fn summary(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("cells aged", self.cells_aged as f64),
            ("grade A", self.grade_counts.a as f64),
            ("grade B", self.grade_counts.b as f64),
            ("grade C", self.grade_counts.c as f64),
            ("rejected", self.grade_counts.reject as f64),
            ("K mean mV/day", self.k_value_mv_per_day.stats.mean),
            ("capacity loss mean Ah", self.capacity_loss_ah.mean),
        ]
    }
}

/// Median of `values` (sorted in place); 0 when empty.
fn median(values: &mut [f64]) -> f64 {
    quantile(values, 0.5)
}

/// Linear-interpolated quantile of `values` (sorted in place); 0 when empty.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let pos = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
}

/// Mean of a sum over `n` values (0 when empty).
#[inline]
fn mean(sum: f64, n: usize) -> f64 {
    if n > 0 {
        sum / n as f64
    } else {
        0.0
    }
}

// =======================================================================================
// Stage
// =======================================================================================

/// The aging shelves (MODELS.md §11).
pub struct Aging;

impl Stage for Aging {
    const KIND: StageKind = StageKind::Aging;
    type Params = AgingParams;
    type Input = Vec<FormedCell>;
    type Output = Vec<AgedCell>;
    type Sample = AgingSample;
    type Result = AgingResult;
    type MachineState = ();

    fn run(
        p: &AgingParams,
        input: Vec<FormedCell>,
        _machine: &mut (),
        ctx: &mut StageCtx<'_>,
        sink: &mut dyn StageSink<AgingSample>,
    ) -> StageRun<Vec<AgedCell>, AgingResult> {
        let mut tracker = AlarmTracker::new(Self::KIND, ctx.line, ctx.start_t_s);
        let plan = AgingPlan::new(p);
        let ns = plan.n_samples;
        let t1 = p.high_temp_phase_s + p.ocv_settle_s;
        let t2 = p.duration_s;
        let agable: Vec<bool> = input.iter().map(|c| c.formed && !c.is_rejected()).collect();
        let n_aged = agable.iter().filter(|&&a| a).count();
        let traced =
            traced_cell_indices(input.iter().zip(&agable).map(|(c, &a)| (c.genealogy(), a)), p.traced_cells as usize);
        let initial_soc_mean_frac =
            mean(input.iter().zip(&agable).filter(|(_, &a)| a).map(|(c, _)| c.soc_frac.value()).sum(), n_aged);
        let shelf_energy_per_cell_j =
            p.shelf_power_ht_w * p.high_temp_phase_s + p.shelf_power_rt_w * (p.duration_s - p.high_temp_phase_s);

        // The agable cells in fixed-size chunks, one parallel job each; the chunk sums are
        // merged in chunk order, so any thread count adds the same way.
        let agable_idx: Vec<usize> = (0..input.len()).filter(|&i| agable[i]).collect();
        let chunks: Vec<&[usize]> = agable_idx.chunks(CELLS_PER_JOB).collect();
        let jobs: Vec<Mutex<Option<ShelfChunk>>> = chunks.iter().map(|_| Mutex::new(None)).collect();
        let (stream_seed, noise) = (ctx.stream_seed, ctx.sensor_noise);
        ctx.parallel.for_each(chunks.len(), &|k| {
            let done = age_chunk(p, &plan, &input, chunks[k], &traced, stream_seed, noise);
            *jobs[k].lock().unwrap_or_else(|e| e.into_inner()) = Some(done);
        });
        let mut lot = ShelfSums::new(ns);
        let mut traces: Vec<(usize, Vec<ShelfPoint>)> = traced.iter().map(|&i| (i, Vec::new())).collect();
        let mut outcomes: Vec<Option<CellAging>> = (0..input.len()).map(|_| None).collect();
        for job in jobs {
            let done = job.into_inner().unwrap_or_else(|e| e.into_inner()).expect("Parallel::for_each runs every job");
            lot.merge(&done.sums);
            for (ts, points) in done.traces {
                traces[ts].1 = points;
            }
            for (i, out) in done.cells {
                outcomes[i] = Some(out);
            }
        }
        let ShelfSums { ocv_sum, ocv_min, ocv_max, soc_sum, isd_sum } = lot;

        // Decisions (all at t₂): rejects, flags, then grades against the lot median.
        let mut aged_cells = Vec::with_capacity(input.len());
        let mut pending: Vec<CellAlarm> = Vec::new();
        let mut defect_risk = AgingDefectRisk::default();
        for (cell, out) in input.into_iter().zip(outcomes) {
            let Some(out) = out else {
                aged_cells.push(AgedCell::unaged(cell));
                continue;
            };
            let id = cell.cell_id().to_string();
            let k_true = (out.ocv_1.true_value - out.ocv_2.true_value) / (t2 - t1);
            let k_meas = (out.ocv_1.value() - out.ocv_2.value()) / (t2 - t1);
            let q_dis_meas = cell.discharge_capacity_ah.value();
            let slope = out.constants.ocv_soc_slope_v(&out.state, cell.discharge_capacity_ah.true_value);
            let leak_hat = if slope > 0.0 { k_meas * SECONDS_PER_HOUR * q_dis_meas / slope } else { 0.0 };
            let leak_limit =
                if slope > 0.0 { p.k_value_max_v_per_s * SECONDS_PER_HOUR * q_dis_meas / slope } else { 0.0 };
            let soc0 = cell.soc_frac.true_value;
            let mut reasons: Vec<String> = Vec::new();
            let mut raise = |code: &'static str, sev: Severity, signal: &'static str, v: f64, thr: f64, msg: String| {
                if sev >= Severity::Alarm {
                    reasons.push(code.to_string());
                }
                pending.push(CellAlarm {
                    code,
                    severity: sev,
                    signal,
                    value: v,
                    threshold: thr,
                    cell_id: id.clone(),
                    message: msg,
                });
            };
            if k_meas > p.k_value_max_v_per_s {
                defect_risk.ocv_drop = true;
                raise(
                    "AGE_HIGH_K_VALUE",
                    Severity::Alarm,
                    "k_value_v_per_s",
                    k_meas,
                    p.k_value_max_v_per_s,
                    format!(
                        "cell {id}: K-value {:.3} mV/day > {:.3} mV/day (soft short suspected)",
                        k_meas * 864e5,
                        p.k_value_max_v_per_s * 864e5
                    ),
                );
            }
            if out.dcr.value() > p.max_dcr_ohm {
                raise(
                    "AGE_HIGH_DCR",
                    Severity::Alarm,
                    "dcr_eol_ohm",
                    out.dcr.value(),
                    p.max_dcr_ohm,
                    format!(
                        "cell {id}: end-of-line DCR {:.2} mΩ > {:.2} mΩ",
                        out.dcr.value() * 1e3,
                        p.max_dcr_ohm * 1e3
                    ),
                );
            }
            let min_q = p.min_capacity_frac_of_design * cell.filled.assembled.design_capacity_ah;
            if q_dis_meas < min_q {
                raise(
                    "AGE_LOW_CAPACITY",
                    Severity::Alarm,
                    "discharge_capacity_ah",
                    q_dis_meas,
                    min_q,
                    format!("cell {id}: capacity {q_dis_meas:.4} Ah < {min_q:.4} Ah"),
                );
            }
            let soc_limit = (1.0 - p.soc_loss_max_frac) * soc0;
            if out.soc_end_frac < soc_limit {
                defect_risk.soc_loss = true;
                raise(
                    "AGE_SOC_LOSS",
                    Severity::Warning,
                    "soc_end_frac",
                    out.soc_end_frac,
                    soc_limit,
                    format!("cell {id}: SOC fell from {soc0:.4} to {:.4}", out.soc_end_frac),
                );
            }
            defect_risk.leakage_current_high |= leak_hat > leak_limit;
            let grade = if reasons.is_empty() { Grade::A } else { Grade::Reject };
            aged_cells.push(AgedCell {
                aged: true,
                ocv_start_v: out.ocv_start_v,
                ocv_1_v: out.ocv_1,
                ocv_2_v: out.ocv_2,
                k_value_v_per_s: Reading { true_value: k_true, measured: Some(k_meas) },
                k_value_mv_per_day: k_meas * SECONDS_PER_DAY * 1e3,
                soc_end_frac: out.soc_end_frac,
                self_discharge_current_a: out.self_discharge_current_a,
                leakage_estimate_a: leak_hat,
                ocv_soc_slope_v: slope,
                capacity_loss_ah: out.capacity_loss_ah,
                dcr_eol_ohm: out.dcr,
                state: out.state,
                shelf_energy_j: shelf_energy_per_cell_j,
                grade,
                reject_reasons: reasons,
                formed: cell,
            });
        }
        let mut caps: Vec<f64> = aged_cells
            .iter()
            .filter(|c| c.aged && c.grade != Grade::Reject)
            .map(|c| c.formed.discharge_capacity_ah.value())
            .collect();
        let mut dcrs: Vec<f64> =
            aged_cells.iter().filter(|c| c.aged && c.grade != Grade::Reject).map(|c| c.dcr_eol_ohm.value()).collect();
        let q_med = median(&mut caps);
        let dcr_med = median(&mut dcrs);
        for c in aged_cells.iter_mut().filter(|c| c.aged && c.grade != Grade::Reject) {
            let dq = if q_med > 0.0 { (c.formed.discharge_capacity_ah.value() - q_med).abs() / q_med } else { 0.0 };
            let dcr = c.dcr_eol_ohm.value();
            c.grade = if dq <= p.grade_a_capacity_band_frac && dcr <= p.grade_a_dcr_ratio * dcr_med {
                Grade::A
            } else if dq <= p.grade_b_capacity_band_frac && dcr <= p.grade_b_dcr_ratio * dcr_med {
                Grade::B
            } else {
                Grade::C
            };
        }
        let cells_flagged = pending.iter().map(|a| &a.cell_id).collect::<std::collections::BTreeSet<_>>().len() as u32;

        // Samples in time order; the cell alarms (all at t₂) go out before the last sample.
        let temperature_sensor = Sensor::absolute(SHELF_TEMPERATURE_SIGMA_DEGC);
        let ids: Vec<String> = traces.iter().map(|(i, _)| aged_cells[*i].cell_id().to_string()).collect();
        let mut last: Option<AgingSample> = None;
        for (j, stage_time_s) in sample_times(p.duration_s, p.sample_interval_s).enumerate() {
            let is_last = j + 1 == ns;
            let mut defect = false;
            if is_last {
                for a in pending.drain(..) {
                    let scope = AlarmScope { cell_id: Some(a.cell_id), ..AlarmScope::default() };
                    let ev = tracker.once(t2, a.code, a.severity, a.signal, a.value, a.threshold, scope, a.message);
                    sink.alarm(ev);
                    defect |= a.severity >= Severity::Warning;
                }
            }
            let temp = plan.factors(stage_time_s).temperature_degc;
            let sample = AgingSample {
                t_s: ctx.start_t_s + stage_time_s,
                stage_time_s,
                temperature_degc: temperature_sensor.measure(temp, ctx.sensor_noise, ctx.sensor_rng),
                ocv_mean_v: mean(ocv_sum[j], n_aged),
                ocv_min_v: if n_aged > 0 { ocv_min[j] } else { 0.0 },
                ocv_max_v: if n_aged > 0 { ocv_max[j] } else { 0.0 },
                soc_mean_frac: mean(soc_sum[j], n_aged),
                self_discharge_current_mean_a: mean(isd_sum[j], n_aged),
                traced: traces
                    .iter()
                    .zip(&ids)
                    .filter_map(|((_, pts), id)| {
                        pts.get(j).map(|pt| AgingTrace {
                            cell_id: id.clone(),
                            ocv_v: pt.ocv_v,
                            soc_frac: pt.soc_frac,
                            self_discharge_current_a: pt.self_discharge_current_a,
                        })
                    })
                    .collect(),
                cells_flagged: if is_last { cells_flagged } else { 0 },
                initial_soc_mean_frac,
                defect_risk: defect,
                fault_labels: ctx.faults.labels_at(stage_time_s, None),
            };
            if is_last {
                last = Some(sample.clone());
            }
            sink.sample(sample);
        }
        let last = last.expect("a run has at least one sample");

        let aged: Vec<&AgedCell> = aged_cells.iter().filter(|c| c.aged).collect();
        let mut grade_counts = GradeCounts::default();
        let mut reject_counts = BTreeMap::new();
        for c in &aged_cells {
            match c.grade {
                Grade::A => grade_counts.a += 1,
                Grade::B => grade_counts.b += 1,
                Grade::C => grade_counts.c += 1,
                Grade::Reject => grade_counts.reject += 1,
            }
            if c.aged {
                for r in &c.reject_reasons {
                    *reject_counts.entry(r.clone()).or_insert(0u32) += 1;
                }
            }
        }
        let mut ks: Vec<f64> = aged.iter().map(|c| c.k_value_mv_per_day).collect();
        let k_stats = LotStats::of(ks.iter().copied());
        let result = AgingResult {
            cells_in: aged_cells.len() as u32,
            cells_aged: aged.len() as u32,
            grade_counts,
            reject_counts,
            k_value_mv_per_day: KValueDistribution {
                stats: k_stats,
                p50: quantile(&mut ks, 0.5),
                p95: quantile(&mut ks, 0.95),
                p99: quantile(&mut ks, 0.99),
            },
            capacity_loss_ah: LotStats::of(aged.iter().map(|c| c.capacity_loss_ah)),
            soc_end_frac: LotStats::of(aged.iter().map(|c| c.soc_end_frac)),
            dcr_eol_ohm: LotStats::of(aged.iter().map(|c| c.dcr_eol_ohm.value())),
            discharge_capacity_median_ah: q_med,
            dcr_median_ohm: dcr_med,
            shelf_energy_j: shelf_energy_per_cell_j * aged.len() as f64,
            duration_s: p.duration_s,
            initial_soc_mean_frac,
            temperature_degc: last.temperature_degc.value(),
            soc_mean_frac: last.soc_mean_frac,
            ocv_mean_v: last.ocv_mean_v,
            self_discharge_current_mean_a: last.self_discharge_current_mean_a,
            defect_risk,
            accepted: !tracker.any_raised(Severity::Alarm),
            alarms: tracker.events,
        };
        StageRun { output: aged_cells, result, duration_s: p.duration_s }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_params_are_valid() {
        AgingParams::default().validate().unwrap();
    }

    #[test]
    fn plan_merges_coinciding_events() {
        let plan = AgingPlan::new(&AgingParams::default());
        assert_eq!(plan.n_samples, 241);
        assert_eq!(plan.times_s.len(), 241);
        let i1 = plan.times_s.iter().position(|&t| t == 259200.0).unwrap();
        assert_eq!(plan.kinds[i1], EVENT_SAMPLE | EVENT_OCV_1);
        assert_eq!(*plan.kinds.last().unwrap(), EVENT_SAMPLE | EVENT_END);
        assert_eq!(plan.factors(0.0).temperature_degc, 45.0);
        assert_eq!(plan.factors(172800.0).temperature_degc, 25.0);
    }

    #[test]
    fn quantiles_interpolate_and_guard_empty() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(quantile(&mut [0.0, 10.0], 0.95), 9.5);
    }
}
