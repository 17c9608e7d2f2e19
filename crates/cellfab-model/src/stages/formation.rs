//! Formation cycling: the first charge of every cell under a controlled protocol builds the
//! SEI; the first discharge measures capacity, first-cycle efficiency, energy and
//! resistance; a partial recharge leaves the cell at its storage state of charge for aging
//! (MODELS.md §10, cell model §12). `Vec<FilledCell>` in, `Vec<FormedCell>` out; lot
//! samples every `sample_interval_s`.
//!
//! A formation rack is a set of `channels`; each channel holds one cell, runs the protocol on
//! it and measures its voltage and current. Cells take channels in id order; a lot larger
//! than the rack runs in waves, and a wave lasts as long as its slowest cell. Cells rejected
//! upstream pass through unformed and keep their reason.
//!
//! ```text
//!   FilledCell ─► channel k: CcCharge 0.05 C → 0.1 C → 0.2 C → Cv 4.2 V → Rest → CcDischarge
//!                            → Rest → ChargeToSoc 0.3 → Rest ─► FormedCell (state at storage SOC)
//! ```
//!
//! Structure (for speed): every cell is simulated on its own by a pure per-cell function
//! over the protocol; what the lot samples need (sums, minima, maxima, counts per protocol
//! step) is accumulated per sample index while the cell runs, and the samples are emitted in
//! time order once a wave is done. The cells of a wave run in fixed-size chunks
//! ([`CELLS_PER_JOB`]) as jobs of `ctx.parallel`; each chunk has its own accumulators, merged
//! in chunk order, so the result is bit-identical on any number of threads. Integration
//! follows §10.2 exactly: the current is fixed at
//! the start of each integration step, the voltage is evaluated after it with the updated
//! state, and a protocol step ends at the end of the first integration step at which its
//! criterion holds — so step durations are multiples of `integration_step_s`.
//!
//! Randomness: no process variability. Sensor noise per cell from its own stream
//! `stream(ctx.stream_seed, [Purpose::Sensor, cell index])`: at the cell start and after
//! every integration (sub-)step, one draw for the voltage, then one for the current. Lot
//! samples draw the rack temperature from `ctx.sensor_rng`, one draw per sample.

use crate::alarm::{Alarm, AlarmScope, AlarmTracker, Severity};
use crate::cell::{FilledCell, Genealogy};
use crate::consts::SECONDS_PER_HOUR;
use crate::electrochem::{step_cells, CellConstants, CellOutputs, CellState, ThermalFactors, STEP_LANES};
use crate::error::{check_non_negative, check_open_min, check_positive, check_range, ParamError};
use crate::fault::{At, FaultCode};
use crate::legacy::{put, put_object, LegacyRecord};
use crate::random::{stream, Purpose, StreamRng};
use crate::reading::{Reading, Sensor};
use crate::stage::{ResultRecord, SampleRecord, Stage, StageCtx, StageKind, StageParams, StageRun, StageSink};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Noise of the rack temperature sensor [°C] (a Pt100 class-A probe) [E].
pub const RACK_TEMPERATURE_SIGMA_DEGC: f64 = 0.1;

/// Plated charge, as a fraction of Q_design, above which a cell is rejected (§10.3) [E].
pub const PLATING_REJECT_FRAC_OF_DESIGN: f64 = 1e-4;

/// Anode stoichiometry at end of charge above which a cell with a plating-risk flag from
/// assembly or filling is rejected (§10.3) [E].
pub const PLATING_RISK_STOICH: f64 = 0.95;

// =======================================================================================
// Parameters
// =======================================================================================

/// One typed step of a formation protocol (MODELS.md §10.1). Currents are C-rates of the
/// [`CRateReference`]; charge is positive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "step", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProtocolStep {
    /// Constant-current charge until the measured voltage reaches `until_voltage_v`.
    CcCharge {
        /// Charge current in C; (0, 10].
        c_rate: f64,
        /// End voltage; [2.0, 4.6] V and ≤ `charge_voltage_limit_v`.
        until_voltage_v: f64,
    },
    /// Constant-voltage hold: `I = min(I_prev,cc, (V_set − OCV − V₁)/R₀)` (explicit, from
    /// the state at the start of each integration step; I_prev,cc = the current of the last
    /// `CcCharge` before it, 1 C if none) until the current falls to `until_c_rate` or
    /// `max_s` has passed.
    Cv {
        /// Held voltage; [3.0, 4.6] V and ≤ `charge_voltage_limit_v`.
        voltage_v: f64,
        /// End current in C; (0, 10].
        until_c_rate: f64,
        /// Time limit of the hold; (0, `max_step_duration_s`] s.
        max_s: f64,
    },
    /// Open circuit for `duration_s`.
    Rest {
        /// Rest time; (0, `max_step_duration_s`] s.
        duration_s: f64,
    },
    /// Constant-current discharge until the measured voltage falls to `until_voltage_v`.
    CcDischarge {
        /// Discharge current in C; (0, 10].
        c_rate: f64,
        /// End voltage; [2.0, 4.6] V and ≥ `discharge_voltage_limit_v`.
        until_voltage_v: f64,
    },
    /// Constant-current charge of `soc_frac` × the measured discharge capacity (storage
    /// state of charge); stops early at `charge_voltage_limit_v`. Needs a `CcDischarge`
    /// before it.
    ChargeToSoc {
        /// Charge current in C; (0, 10].
        c_rate: f64,
        /// Charge to put in, as a fraction of the measured discharge capacity; (0, 1].
        soc_frac: f64,
    },
}

impl ProtocolStep {
    /// snake_case name of the step kind.
    pub fn name(&self) -> &'static str {
        match self {
            ProtocolStep::CcCharge { .. } => "cc_charge",
            ProtocolStep::Cv { .. } => "cv",
            ProtocolStep::Rest { .. } => "rest",
            ProtocolStep::CcDischarge { .. } => "cc_discharge",
            ProtocolStep::ChargeToSoc { .. } => "charge_to_soc",
        }
    }
}

/// What 1 C means.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CRateReference {
    /// 1 C = the cell's design capacity per hour.
    DesignCapacity,
    /// 1 C = a fixed capacity per hour.
    Fixed {
        /// Reference capacity; (0, 1000] Ah.
        capacity_ah: f64,
    },
}

/// Formation rack settings (MODELS.md §10.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FormationParams {
    /// The protocol: 1–50 typed steps. Default: the NMC/graphite protocol of §10.1. [L]
    pub protocol: Vec<ProtocolStep>,
    /// Upper cut-off of the charge steps and the CV step (prototype "Voltage"); [3.0, 4.6]. [L]
    pub charge_voltage_limit_v: f64,
    /// Lower cut-off of the discharge steps; [2.0, 3.5], below the charge limit. [L]
    pub discharge_voltage_limit_v: f64,
    /// What 1 C means: `design_capacity` (Q_design per hour) or a fixed capacity. [E]
    pub c_rate_reference: CRateReference,
    /// Isothermal rack temperature; [−10, 60] °C. [L]
    pub temperature_degc: f64,
    /// Cells formed in parallel; more cells run in waves; [1, 1e7]. [C]
    pub channels: u32,
    /// Safety timeout of every protocol step; > 0 s. [E]
    pub max_step_duration_s: f64,
    /// A channel trips when the measured voltage exceeds the charge limit by this; > 0 V. [E]
    pub overvoltage_margin_v: f64,
    /// Charger efficiency η_ch; (0, 1]. [C]
    pub charger_efficiency_frac: f64,
    /// Share of the discharge energy fed back to the grid η_regen; [0, 1]. [C]
    pub regen_efficiency_frac: f64,
    /// Standby power of a channel while it runs a protocol; ≥ 0 W. [C]
    pub channel_standby_power_w: f64,
    /// Channel voltage noise σ_a; ≥ 0 V. [C]
    pub voltage_sigma_v: f64,
    /// Channel current noise σ_r (fraction of the current); ≥ 0. [C]
    pub current_sigma_frac: f64,
    /// Acceptance: minimum first-cycle efficiency; [0, 1]. [C]
    pub min_first_cycle_efficiency_frac: f64,
    /// Acceptance: minimum discharge capacity as a fraction of Q_design; [0, 2]. [C]
    pub min_capacity_frac_of_design: f64,
    /// Acceptance: maximum DCR_10s at 25 °C; > 0 Ω. [C]
    pub max_dcr_10s_ohm: f64,
    /// Explicit Euler step; (0, 60] s. [E]
    pub integration_step_s: f64,
    /// Lot sample interval; (0, 86400] s. [E]
    pub sample_interval_s: f64,
    /// Cells traced in full in every sample (first cell of lanes 0, 2, 4, 6, …); [0, 1000]. [E]
    pub traced_cells: u32,
}

impl FormationParams {
    /// The default protocol of §10.1 (Heimes et al. 2018 process window): 0.05 C to 3.0 V,
    /// 0.1 C to 3.6 V, 0.2 C to 4.2 V, CV to 0.05 C or 4 h, rest, 0.2 C discharge to 2.5 V,
    /// rest, 0.2 C recharge of 30 % of the measured capacity, rest.
    pub fn default_protocol() -> Vec<ProtocolStep> {
        vec![
            ProtocolStep::CcCharge { c_rate: 0.05, until_voltage_v: 3.0 },
            ProtocolStep::CcCharge { c_rate: 0.1, until_voltage_v: 3.6 },
            ProtocolStep::CcCharge { c_rate: 0.2, until_voltage_v: 4.2 },
            ProtocolStep::Cv { voltage_v: 4.2, until_c_rate: 0.05, max_s: 14400.0 },
            ProtocolStep::Rest { duration_s: 1800.0 },
            ProtocolStep::CcDischarge { c_rate: 0.2, until_voltage_v: 2.5 },
            ProtocolStep::Rest { duration_s: 1800.0 },
            ProtocolStep::ChargeToSoc { c_rate: 0.2, soc_frac: 0.30 },
            ProtocolStep::Rest { duration_s: 1800.0 },
        ]
    }
}

impl Default for FormationParams {
    fn default() -> Self {
        Self {
            protocol: Self::default_protocol(),
            charge_voltage_limit_v: 4.2,
            discharge_voltage_limit_v: 2.5,
            c_rate_reference: CRateReference::DesignCapacity,
            temperature_degc: 25.0,
            channels: 16384,
            max_step_duration_s: 72000.0,
            overvoltage_margin_v: 0.05,
            charger_efficiency_frac: 0.90,
            regen_efficiency_frac: 0.85,
            channel_standby_power_w: 0.5,
            voltage_sigma_v: 5e-4,
            current_sigma_frac: 5e-4,
            min_first_cycle_efficiency_frac: 0.85,
            min_capacity_frac_of_design: 0.95,
            max_dcr_10s_ohm: 0.035,
            integration_step_s: 20.0,
            sample_interval_s: 60.0,
            traced_cells: 4,
        }
    }
}

impl StageParams for FormationParams {
    fn validate(&self) -> Result<(), ParamError> {
        let n = self.protocol.len();
        if !(1..=50).contains(&n) {
            let mut e = ParamError::range("protocol", n as f64, 1.0, 50.0, "steps");
            e.rule = "must have 1 to 50 steps".into();
            return Err(e);
        }
        check_range("charge_voltage_limit_v", self.charge_voltage_limit_v, 3.0, 4.6, "V")?;
        check_range("discharge_voltage_limit_v", self.discharge_voltage_limit_v, 2.0, 3.5, "V")?;
        if self.discharge_voltage_limit_v >= self.charge_voltage_limit_v {
            return Err(ParamError::rule(
                "discharge_voltage_limit_v",
                self.discharge_voltage_limit_v,
                "V",
                format!("must be below charge_voltage_limit_v ({})", self.charge_voltage_limit_v),
            ));
        }
        if let CRateReference::Fixed { capacity_ah } = self.c_rate_reference {
            check_open_min("c_rate_reference.capacity_ah", capacity_ah, 0.0, 1000.0, "Ah")?;
        }
        check_range("temperature_degc", self.temperature_degc, -10.0, 60.0, "°C")?;
        check_range("channels", self.channels as f64, 1.0, 1e7, "")?;
        check_positive("max_step_duration_s", self.max_step_duration_s, "s")?;
        check_positive("overvoltage_margin_v", self.overvoltage_margin_v, "V")?;
        check_open_min("charger_efficiency_frac", self.charger_efficiency_frac, 0.0, 1.0, "")?;
        check_range("regen_efficiency_frac", self.regen_efficiency_frac, 0.0, 1.0, "")?;
        check_non_negative("channel_standby_power_w", self.channel_standby_power_w, "W")?;
        check_non_negative("voltage_sigma_v", self.voltage_sigma_v, "V")?;
        check_non_negative("current_sigma_frac", self.current_sigma_frac, "")?;
        check_range("min_first_cycle_efficiency_frac", self.min_first_cycle_efficiency_frac, 0.0, 1.0, "")?;
        check_range("min_capacity_frac_of_design", self.min_capacity_frac_of_design, 0.0, 2.0, "")?;
        check_positive("max_dcr_10s_ohm", self.max_dcr_10s_ohm, "Ω")?;
        check_open_min("integration_step_s", self.integration_step_s, 0.0, 60.0, "s")?;
        check_open_min("sample_interval_s", self.sample_interval_s, 0.0, 86400.0, "s")?;
        check_range("traced_cells", self.traced_cells as f64, 0.0, 1000.0, "")?;
        let mut discharge_seen = false;
        for (i, step) in self.protocol.iter().enumerate() {
            self.validate_step(step, discharge_seen).map_err(|e| e.at(&format!("protocol[{i}].")))?;
            discharge_seen |= matches!(step, ProtocolStep::CcDischarge { .. });
        }
        Ok(())
    }
}

impl FormationParams {
    fn validate_step(&self, step: &ProtocolStep, discharge_seen: bool) -> Result<(), ParamError> {
        let max_s = self.max_step_duration_s;
        match *step {
            ProtocolStep::CcCharge { c_rate, until_voltage_v } => {
                check_open_min("c_rate", c_rate, 0.0, 10.0, "C")?;
                check_range("until_voltage_v", until_voltage_v, 2.0, 4.6, "V")?;
                if until_voltage_v > self.charge_voltage_limit_v {
                    return Err(ParamError::rule(
                        "until_voltage_v",
                        until_voltage_v,
                        "V",
                        format!("must not exceed charge_voltage_limit_v ({})", self.charge_voltage_limit_v),
                    ));
                }
            }
            ProtocolStep::Cv { voltage_v, until_c_rate, max_s: hold_s } => {
                check_range("voltage_v", voltage_v, 3.0, 4.6, "V")?;
                if voltage_v > self.charge_voltage_limit_v {
                    return Err(ParamError::rule(
                        "voltage_v",
                        voltage_v,
                        "V",
                        format!("must not exceed charge_voltage_limit_v ({})", self.charge_voltage_limit_v),
                    ));
                }
                check_open_min("until_c_rate", until_c_rate, 0.0, 10.0, "C")?;
                check_open_min("max_s", hold_s, 0.0, max_s, "s")?;
            }
            ProtocolStep::Rest { duration_s } => {
                check_open_min("duration_s", duration_s, 0.0, max_s, "s")?;
            }
            ProtocolStep::CcDischarge { c_rate, until_voltage_v } => {
                check_open_min("c_rate", c_rate, 0.0, 10.0, "C")?;
                check_range("until_voltage_v", until_voltage_v, 2.0, 4.6, "V")?;
                if until_voltage_v < self.discharge_voltage_limit_v {
                    return Err(ParamError::rule(
                        "until_voltage_v",
                        until_voltage_v,
                        "V",
                        format!("must not be below discharge_voltage_limit_v ({})", self.discharge_voltage_limit_v),
                    ));
                }
            }
            ProtocolStep::ChargeToSoc { c_rate, soc_frac } => {
                check_open_min("c_rate", c_rate, 0.0, 10.0, "C")?;
                check_open_min("soc_frac", soc_frac, 0.0, 1.0, "")?;
                if !discharge_seen {
                    return Err(ParamError::rule(
                        "soc_frac",
                        soc_frac,
                        "",
                        "charge_to_soc needs a cc_discharge step before it (it charges a fraction of the measured discharge capacity)",
                    ));
                }
            }
        }
        Ok(())
    }
}

// =======================================================================================
// Product
// =======================================================================================

/// A formed cell (MODELS.md §0.9 `FormedCell`): the filled cell, its electrochemical state
/// at the end of formation (at storage SOC), and what formation measured. Quantities the
/// channel measures are [`Reading`]s (true value and measured value); model quantities are
/// true values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FormedCell {
    /// The filled cell.
    pub filled: FilledCell,
    /// The protocol ran on this cell (false: rejected upstream, not formed).
    pub formed: bool,
    /// Cathode stoichiometry y at the end of formation.
    pub cathode_stoich: f64,
    /// Anode stoichiometry x at the end of formation.
    pub anode_stoich: f64,
    /// SEI charge Q₁ + Q₂ [Ah].
    pub sei_charge_ah: f64,
    /// SEI passivation charge Q₁ [Ah].
    pub sei_passivation_charge_ah: f64,
    /// SEI growth charge Q₂ [Ah].
    pub sei_growth_charge_ah: f64,
    /// Plated (lost) lithium, local plating included [Ah].
    pub plated_charge_ah: f64,
    /// RC-element voltage V₁ [V].
    pub rc_voltage_v: f64,
    /// Highest anode stoichiometry reached.
    pub peak_anode_stoich: f64,
    /// First-charge capacity Q_ch1: charge put in before the first discharge [Ah].
    pub first_charge_capacity_ah: Reading,
    /// Discharge capacity Q_dis of the first `CcDischarge` [Ah].
    pub discharge_capacity_ah: Reading,
    /// First-cycle efficiency FCE = Q_dis/Q_ch1.
    pub first_cycle_efficiency_frac: Reading,
    /// Discharge energy E_dis of the first `CcDischarge` [Wh].
    pub discharge_energy_wh: Reading,
    /// Mean discharge voltage E_dis/Q_dis [V].
    pub mean_discharge_voltage_v: Reading,
    /// Open-circuit voltage at the end of formation [V].
    pub ocv_v: f64,
    /// Storage state of charge: net charge after the first discharge / Q_dis.
    pub soc_frac: Reading,
    /// R₀ at 25 °C at the end of formation [Ω].
    pub r0_ohm: f64,
    /// DCR_10s at 25 °C at the end of formation [Ω].
    pub dcr_10s_ohm: f64,
    /// Plating detected (plated charge, local plating, or plating risk at high stoichiometry).
    pub plating_detected: bool,
    /// Charge energy drawn by the cell, `∫V·I` over all charge steps [Wh].
    pub charge_energy_wh: f64,
    /// Grid energy of the cell's channel `E_charge/η_ch − η_regen·E_dis + P_standby·t_cell` [J].
    pub formation_energy_grid_j: f64,
    /// Protocol time of the cell [s].
    pub formation_time_s: f64,
    /// Duration of every protocol step that ran [s].
    pub step_durations_s: Vec<f64>,
    /// Channel the cell was formed on.
    pub channel: Option<u32>,
    /// Wave the cell was formed in.
    pub wave: Option<u32>,
    /// Mass, specific energy and energy density (MODELS.md §12.4).
    pub outputs: CellOutputs,
    /// First reject reason (alarm code), upstream or from formation.
    pub reject_reason: Option<String>,
}

impl FormedCell {
    /// The cell's id.
    pub fn cell_id(&self) -> &str {
        &self.filled.assembled.genealogy.cell_id
    }

    /// The cell's genealogy.
    pub fn genealogy(&self) -> &Genealogy {
        &self.filled.assembled.genealogy
    }

    /// The electrochemical state at the end of formation, for aging to continue from.
    pub fn state(&self) -> CellState {
        CellState {
            y: self.cathode_stoich,
            x: self.anode_stoich,
            q1_ah: self.sei_passivation_charge_ah,
            q2_ah: self.sei_growth_charge_ah,
            q_pl_ah: self.plated_charge_ah,
            v1_v: self.rc_voltage_v,
        }
    }

    /// True when the cell is rejected (upstream or by formation).
    pub fn is_rejected(&self) -> bool {
        self.reject_reason.is_some()
    }

    /// A cell that did not enter formation (rejected upstream): no state change, no data.
    fn unformed(filled: FilledCell) -> Self {
        let reject_reason = filled.assembled.reject_reason.clone();
        let zero = Reading::exact(0.0);
        Self {
            formed: false,
            cathode_stoich: crate::electrochem::PRISTINE_CATHODE_STOICH,
            anode_stoich: crate::electrochem::PRISTINE_ANODE_STOICH,
            sei_charge_ah: 0.0,
            sei_passivation_charge_ah: 0.0,
            sei_growth_charge_ah: 0.0,
            plated_charge_ah: 0.0,
            rc_voltage_v: 0.0,
            peak_anode_stoich: 0.0,
            first_charge_capacity_ah: zero,
            discharge_capacity_ah: zero,
            first_cycle_efficiency_frac: zero,
            discharge_energy_wh: zero,
            mean_discharge_voltage_v: zero,
            ocv_v: 0.0,
            soc_frac: zero,
            r0_ohm: 0.0,
            dcr_10s_ohm: 0.0,
            plating_detected: false,
            charge_energy_wh: 0.0,
            formation_energy_grid_j: 0.0,
            formation_time_s: 0.0,
            step_durations_s: Vec::new(),
            channel: None,
            wave: None,
            outputs: CellOutputs::of(&filled, 0.0),
            reject_reason,
            filled,
        }
    }
}

// =======================================================================================
// Per-cell simulation
// =======================================================================================

/// What a channel reports about its cell at one instant (a sample point).
#[derive(Clone, Copy, Debug, PartialEq)]
struct ChannelPoint {
    /// Index of the protocol step that produced the point; `None` once the cell is done.
    pub step: Option<u32>,
    /// Terminal voltage [V].
    pub voltage_v: Reading,
    /// Cell current, > 0 charge [A].
    pub current_a: Reading,
    /// Net charge since the start of the protocol (measured) [Ah].
    pub charge_throughput_ah: f64,
    /// Cathode stoichiometry y.
    pub cathode_stoich: f64,
    /// Anode stoichiometry x.
    pub anode_stoich: f64,
    /// Anode potential U_n(x) vs Li [V].
    pub anode_potential_v: f64,
    /// SEI charge Q₁ + Q₂ [Ah].
    pub sei_charge_ah: f64,
    /// SEI progress Q₁/Q₁,max.
    pub sei_progress_frac: f64,
    /// Power the channel draws from the grid (negative when feeding back) [W].
    pub grid_power_w: f64,
}

/// Why a channel stopped a cell before the end of its protocol.
#[derive(Clone, Debug, PartialEq)]
struct ChannelStop {
    code: &'static str,
    signal: &'static str,
    value: f64,
    threshold: f64,
}

/// The outcome of running the protocol on one cell.
#[derive(Clone, Debug)]
struct CellFormation {
    state: CellState,
    constants: CellConstants,
    duration_s: f64,
    step_durations_s: Vec<f64>,
    stop: Option<ChannelStop>,
    q_ch1: (f64, f64),
    q_dis: (f64, f64),
    e_dis: (f64, f64),
    storage_charge: (f64, f64),
    e_charge_wh: f64,
    e_discharge_wh: f64,
    peak_x: f64,
    last: ChannelPoint,
    samples_recorded: usize,
}

/// Sample offsets of one wave in the cell's own clock: sample j is at plant-stage time
/// `(k0 + j)·Δ`, i.e. at `(k0 + j)·Δ − t_wave` after the cell started.
#[derive(Clone, Copy, Debug)]
struct SampleClock {
    first_index: u64,
    interval_s: f64,
    wave_start_s: f64,
}

impl SampleClock {
    #[inline]
    fn offset(&self, j: usize) -> f64 {
        (self.first_index + j as u64) as f64 * self.interval_s - self.wave_start_s
    }
}

/// The channel's running view of one cell: model state, cached OCV/U_n/R₀ of the state, and
/// the integrals of true and measured charge and energy (pairs are (true, measured)).
struct Channel<'a> {
    c: CellConstants,
    tf: ThermalFactors,
    p: &'a FormationParams,
    state: CellState,
    ocv_v: f64,
    anode_potential_v: f64,
    r0_ohm: f64,
    voltage: Reading,
    current: Reading,
    throughput_ah: f64,
    step_charge: (f64, f64),
    q_ch1: (f64, f64),
    q_dis: (f64, f64),
    e_dis: (f64, f64),
    after_discharge: (f64, f64),
    e_charge_wh: f64,
    e_discharge_wh: f64,
    peak_x: f64,
    discharge_started: bool,
    in_first_discharge: bool,
    first_discharge_done: bool,
    voltage_sensor: Sensor,
    current_sensor: Sensor,
    noise: bool,
    fault: ChannelFault,
}

/// A faulty formation channel (F11, MODELS.md §13): the true current is the set current ×
/// (1 + gain), and the voltage sense sees `V + I·R_s`. Zero for a healthy channel.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ChannelFault {
    /// Current gain error g.
    pub gain_error_frac: f64,
    /// Series sense resistance R_s [Ω].
    pub sense_resistance_ohm: f64,
}

impl<'a> Channel<'a> {
    /// Connects a fresh cell: pristine state, one voltage and one current reading.
    fn new(
        p: &'a FormationParams,
        cell: &FilledCell,
        tf: ThermalFactors,
        noise: bool,
        fault: ChannelFault,
        rng: &mut StreamRng,
    ) -> Self {
        let c = CellConstants::from_filled(cell);
        let state = CellState::pristine(&c);
        let ocv_v = state.ocv_v();
        let voltage_sensor = Sensor::absolute(p.voltage_sigma_v);
        let current_sensor = Sensor::relative(p.current_sigma_frac);
        let voltage = voltage_sensor.measure(ocv_v + state.v1_v, noise, rng);
        let current = current_sensor.measure(0.0, noise, rng);
        Self {
            r0_ohm: c.r0_ohm(&state, &tf),
            anode_potential_v: state.anode_potential_v(),
            c,
            tf,
            p,
            state,
            ocv_v,
            voltage,
            current,
            throughput_ah: 0.0,
            step_charge: (0.0, 0.0),
            q_ch1: (0.0, 0.0),
            q_dis: (0.0, 0.0),
            e_dis: (0.0, 0.0),
            after_discharge: (0.0, 0.0),
            e_charge_wh: 0.0,
            e_discharge_wh: 0.0,
            peak_x: state.x,
            discharge_started: false,
            in_first_discharge: false,
            first_discharge_done: false,
            voltage_sensor,
            current_sensor,
            noise,
            fault,
        }
    }

    /// After the cell model advanced by `dt_s` at the driven current `current_a` (fixed over
    /// the step; rates from the start state; [`step_group`]) and gave `V = OCV + I·R₀ + V₁`
    /// of the updated state: measures V and I (in that order) and integrates charge and
    /// energy (measured: from the readings at the end of the (sub-)step).
    #[inline(always)]
    fn after_step(&mut self, set_current_a: f64, current_a: f64, v: f64, dt_s: f64, rng: &mut StreamRng) {
        self.voltage = self.voltage_sensor.measure(v, self.noise, rng);
        self.current = self.current_sensor.measure(set_current_a, self.noise, rng);
        if self.fault != ChannelFault::default() {
            // the channel reports the set current and senses V + I·R_s
            self.current.true_value = current_a;
            let sensed = current_a * self.fault.sense_resistance_ohm;
            self.voltage.measured = self.voltage.measured.map(|m| m + sensed);
        }
        let h = dt_s / SECONDS_PER_HOUR;
        let (vm, im) = (self.voltage.value(), self.current.value());
        self.throughput_ah += im * h;
        if current_a > 0.0 {
            self.e_charge_wh += v * current_a * h;
            add(&mut self.step_charge, current_a * h, im * h);
            if !self.discharge_started {
                add(&mut self.q_ch1, current_a * h, im * h);
            }
        } else if current_a < 0.0 {
            self.e_discharge_wh -= v * current_a * h;
        }
        if self.in_first_discharge {
            add(&mut self.q_dis, -current_a * h, -im * h);
            add(&mut self.e_dis, -v * current_a * h, -vm * im * h);
        }
        if self.first_discharge_done {
            add(&mut self.after_discharge, current_a * h, im * h);
        }
        self.peak_x = self.peak_x.max(self.state.x);
    }

    /// The current the channel really drives for a set current (a gain error scales it).
    #[inline(always)]
    fn driven_current_a(&self, set_current_a: f64) -> f64 {
        if self.fault.gain_error_frac != 0.0 {
            set_current_a * (1.0 + self.fault.gain_error_frac)
        } else {
            set_current_a
        }
    }

    /// What the channel reports now: the readings of the last (sub-)step, run at
    /// `current_a` in protocol step `step` (`None`: the channel is done with the cell).
    fn point(&self, step: Option<u32>, current_a: f64) -> ChannelPoint {
        let v = self.voltage.true_value;
        let p = self.p;
        let grid_power_w = match step {
            None => 0.0,
            Some(_) if current_a > 0.0 => v * current_a / p.charger_efficiency_frac + p.channel_standby_power_w,
            Some(_) => p.regen_efficiency_frac * v * current_a + p.channel_standby_power_w,
        };
        ChannelPoint {
            step,
            voltage_v: self.voltage,
            current_a: self.current,
            charge_throughput_ah: self.throughput_ah,
            cathode_stoich: self.state.y,
            anode_stoich: self.state.x,
            anode_potential_v: self.anode_potential_v,
            sei_charge_ah: self.state.sei_charge_ah(),
            sei_progress_frac: if self.c.passivation_max_ah > 0.0 {
                self.state.q1_ah / self.c.passivation_max_ah
            } else {
                1.0
            },
            grid_power_w,
        }
    }
}

#[inline]
fn add(pair: &mut (f64, f64), true_value: f64, measured: f64) {
    pair.0 += true_value;
    pair.1 += measured;
}

/// The protocol on one cell (MODELS.md §10.2) as a state machine, so that up to
/// [`STEP_LANES`] cells run it side by side ([`WaveChunk::form_cells`]): every cell on its
/// channel does one integration step per round (cut at the sample offsets inside it), so the
/// cells still running share the step count, the sample offsets and the time grid. Sample
/// points are recorded at every sample offset j while the cell is on its channel (offsets
/// strictly before the end of its protocol). Protocol criteria are checked only at the ends
/// of whole integration steps, on the measured voltage and current. A channel trips when the
/// measured voltage exceeds `charge_voltage_limit_v + overvoltage_margin_v`, and stops a
/// step that reaches `max_step_duration_s` without meeting its criterion.
struct CellRun<'a> {
    ch: Channel<'a>,
    p: &'a FormationParams,
    clock: SampleClock,
    /// Current of 1 C [A].
    i_ref: f64,
    trip_v: f64,
    /// Next sample index and its offset in the cell's clock [s].
    j: usize,
    next_offset: f64,
    /// Integration steps done.
    n: u64,
    /// Protocol step and the integration step it started at.
    pi: usize,
    start_n: u64,
    step_durations_s: Vec<f64>,
    stop: Option<ChannelStop>,
    last_cc_current: f64,
    finished: bool,
    /// Set current of the integration step under way [A].
    set_current_a: f64,
    /// Sample points recorded so far, `(j, point)`.
    points: Vec<(usize, ChannelPoint)>,
}

impl<'a> CellRun<'a> {
    /// Connects the cell (recording the sample at offset 0 if there is one) and enters the
    /// first protocol step.
    fn new(
        p: &'a FormationParams,
        cell: &FilledCell,
        tf: ThermalFactors,
        clock: SampleClock,
        (noise, fault): (bool, ChannelFault),
        rng: &mut StreamRng,
        points: Vec<(usize, ChannelPoint)>,
    ) -> Self {
        let ch = Channel::new(p, cell, tf, noise, fault, rng);
        let i_ref = match p.c_rate_reference {
            CRateReference::DesignCapacity => cell.assembled.design_capacity_ah,
            CRateReference::Fixed { capacity_ah } => capacity_ah,
        };
        let mut run = Self {
            ch,
            p,
            clock,
            i_ref,
            trip_v: p.charge_voltage_limit_v + p.overvoltage_margin_v,
            j: 0,
            next_offset: clock.offset(0),
            n: 0,
            pi: 0,
            start_n: 0,
            step_durations_s: Vec::with_capacity(p.protocol.len()),
            stop: None,
            last_cc_current: i_ref,
            finished: false,
            set_current_a: 0.0,
            points,
        };
        if run.next_offset.abs() <= 1e-9 * p.integration_step_s {
            run.record(Some(0), 0.0);
        }
        run.enter_step();
        run
    }

    /// Records the sample point j and moves to the next sample offset.
    #[inline(always)]
    fn record(&mut self, step: Option<u32>, current_a: f64) {
        self.points.push((self.j, self.ch.point(step, current_a)));
        self.j += 1;
        self.next_offset = self.clock.offset(self.j);
    }

    /// Enters protocol step `self.pi` at the current integration step.
    fn enter_step(&mut self) {
        self.start_n = self.n;
        let is_discharge = matches!(self.p.protocol[self.pi], ProtocolStep::CcDischarge { .. });
        self.ch.discharge_started |= is_discharge;
        self.ch.in_first_discharge = is_discharge && !self.ch.first_discharge_done;
        self.ch.step_charge = (0.0, 0.0);
    }

    /// Sets the current of the next integration step from the protocol step (CV: from the
    /// state at its start).
    #[inline(always)]
    fn begin_step(&mut self) {
        let ch = &self.ch;
        self.set_current_a = match self.p.protocol[self.pi] {
            ProtocolStep::CcCharge { c_rate, .. } | ProtocolStep::ChargeToSoc { c_rate, .. } => c_rate * self.i_ref,
            ProtocolStep::CcDischarge { c_rate, .. } => -c_rate * self.i_ref,
            ProtocolStep::Rest { .. } => 0.0,
            ProtocolStep::Cv { voltage_v, .. } => {
                self.last_cc_current.min((voltage_v - ch.ocv_v - ch.state.v1_v) / ch.r0_ohm)
            }
        };
    }

    /// The checks at the end of an integration step: trip, the protocol step's criterion,
    /// time-out, the sample at the step's end, the next protocol step.
    #[inline(always)]
    fn end_step(&mut self) {
        let p = self.p;
        let (dt, i_ref, pi) = (p.integration_step_s, self.i_ref, self.pi);
        let eps = 1e-9 * dt;
        let step = &p.protocol[pi];
        self.n += 1;
        let t1 = self.n as f64 * dt;
        let step_time = (self.n - self.start_n) as f64 * dt;
        let (vm, im) = (self.ch.voltage.value(), self.ch.current.value());
        if vm > self.trip_v {
            self.stop =
                Some(ChannelStop { code: "FORM_OVERVOLTAGE", signal: "voltage_v", value: vm, threshold: self.trip_v });
            self.step_durations_s.push(step_time);
            self.finished = true;
            return;
        }
        let done = match *step {
            ProtocolStep::CcCharge { until_voltage_v, .. } => vm >= until_voltage_v,
            ProtocolStep::Cv { until_c_rate, max_s, .. } => im <= until_c_rate * i_ref || step_time >= max_s - eps,
            ProtocolStep::Rest { duration_s } => step_time >= duration_s - eps,
            ProtocolStep::CcDischarge { until_voltage_v, .. } => vm <= until_voltage_v,
            ProtocolStep::ChargeToSoc { soc_frac, .. } => {
                self.ch.step_charge.1 >= soc_frac * self.ch.q_dis.1 || vm >= p.charge_voltage_limit_v
            }
        };
        if !done && step_time >= p.max_step_duration_s - eps {
            self.stop = Some(ChannelStop {
                code: "FORM_STEP_TIMEOUT",
                signal: "step_time_s",
                value: step_time,
                threshold: p.max_step_duration_s,
            });
            self.step_durations_s.push(step_time);
            self.finished = true;
            return;
        }
        let last_step = pi == p.protocol.len() - 1;
        if !(done && last_step) && self.next_offset <= t1 + eps {
            self.record(Some(pi as u32), self.set_current_a);
        }
        if !done {
            return;
        }
        self.step_durations_s.push(step_time);
        match *step {
            ProtocolStep::CcCharge { c_rate, .. } => self.last_cc_current = c_rate * i_ref,
            ProtocolStep::CcDischarge { .. } if self.ch.in_first_discharge => {
                self.ch.in_first_discharge = false;
                self.ch.first_discharge_done = true;
            }
            _ => {}
        }
        if last_step {
            self.finished = true;
        } else {
            self.pi += 1;
            self.enter_step();
        }
    }

    /// The outcome, once the run is finished, and its buffer of sample points.
    fn finish(self) -> (CellFormation, Vec<(usize, ChannelPoint)>) {
        let ch = self.ch;
        let out = CellFormation {
            state: ch.state,
            constants: ch.c,
            duration_s: self.n as f64 * self.p.integration_step_s,
            step_durations_s: self.step_durations_s,
            stop: self.stop,
            q_ch1: ch.q_ch1,
            q_dis: ch.q_dis,
            e_dis: ch.e_dis,
            storage_charge: ch.after_discharge,
            e_charge_wh: ch.e_charge_wh,
            e_discharge_wh: ch.e_discharge_wh,
            peak_x: ch.peak_x,
            last: ch.point(None, 0.0),
            samples_recorded: self.j,
        };
        (out, self.points)
    }
}

/// Advances the cells of `runs` still on their channels by `dt_s` at their set currents
/// ([`step_cells`], the cell model of up to four cells at once), then measures each.
#[inline(always)]
fn step_group(runs: &mut [CellRun<'_>], rngs: &mut [StreamRng], dt_s: f64) {
    let Some(lead) = runs.iter().position(|r| !r.finished) else { return };
    let lane = |i: usize| if i < runs.len() && !runs[i].finished { i } else { lead };
    let mut states: [CellState; STEP_LANES] = std::array::from_fn(|i| runs[lane(i)].ch.state);
    let current_a: [f64; STEP_LANES] =
        std::array::from_fn(|i| runs[lane(i)].ch.driven_current_a(runs[lane(i)].set_current_a));
    let after = {
        let constants: [&CellConstants; STEP_LANES] = std::array::from_fn(|i| &runs[lane(i)].ch.c);
        let u_n: [f64; STEP_LANES] = std::array::from_fn(|i| runs[lane(i)].ch.anode_potential_v);
        let ocv: [f64; STEP_LANES] = std::array::from_fn(|i| runs[lane(i)].ch.ocv_v);
        step_cells(&mut states, constants, &runs[lead].ch.tf, current_a, u_n, ocv, dt_s)
    };
    for (i, (run, rng)) in runs.iter_mut().zip(rngs.iter_mut()).enumerate() {
        if run.finished {
            continue;
        }
        let ch = &mut run.ch;
        ch.state = states[i];
        (ch.anode_potential_v, ch.ocv_v, ch.r0_ohm) = after[i];
        let v = ch.state.terminal_voltage_v(ch.ocv_v, current_a[i], ch.r0_ohm);
        ch.after_step(run.set_current_a, current_a[i], v, dt_s, rng);
    }
}

/// Runs the protocol on up to [`STEP_LANES`] cells side by side until every one is done.
#[inline(always)]
fn form_group(runs: &mut [CellRun<'_>], rngs: &mut [StreamRng]) {
    while let Some(lead) = runs.iter().position(|r| !r.finished) {
        for run in runs.iter_mut().filter(|r| !r.finished) {
            run.begin_step();
        }
        let dt = runs[lead].p.integration_step_s;
        let eps = 1e-9 * dt;
        let n = runs[lead].n;
        let t1 = (n + 1) as f64 * dt;
        let mut t_sub = n as f64 * dt;
        // the cells still running share n, j and the sample offsets
        debug_assert!(runs.iter().filter(|r| !r.finished).all(|r| r.n == n && r.j == runs[lead].j));
        while runs[lead].next_offset < t1 - eps {
            let offset = runs[lead].next_offset;
            step_group(runs, rngs, offset - t_sub);
            for run in runs.iter_mut().filter(|r| !r.finished) {
                run.record(Some(run.pi as u32), run.set_current_a);
            }
            t_sub = offset;
        }
        step_group(runs, rngs, t1 - t_sub);
        for run in runs.iter_mut().filter(|r| !r.finished) {
            run.end_step();
        }
    }
}

// =======================================================================================
// Samples
// =======================================================================================

/// One traced cell in a formation sample (MODELS.md §10.3).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FormationTrace {
    /// Cell id.
    pub cell_id: String,
    /// Index of the protocol step the cell is in; `None` once its protocol is done.
    pub step: Option<u32>,
    /// Terminal voltage [V].
    pub voltage_v: Reading,
    /// Cell current, > 0 charge [A].
    pub current_a: Reading,
    /// Net charge since the start of the protocol (measured) [Ah].
    pub charge_throughput_ah: f64,
    /// Cathode stoichiometry y.
    pub cathode_stoich: f64,
    /// Anode stoichiometry x.
    pub anode_stoich: f64,
    /// Anode potential vs Li [V].
    pub anode_potential_v: f64,
    /// SEI charge [Ah].
    pub sei_charge_ah: f64,
}

/// A formation lot sample (MODELS.md §10.3). Lot statistics are over the cells of the
/// current wave (on their channels or done); cells of later waves are not yet on the rack.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FormationSample {
    /// Plant time [s].
    pub t_s: f64,
    /// Stage time [s].
    pub stage_time_s: f64,
    /// Cells in each protocol step (index = protocol step).
    pub cells_in_step: Vec<u32>,
    /// Mean measured voltage [V].
    pub voltage_mean_v: f64,
    /// Lowest measured voltage [V].
    pub voltage_min_v: f64,
    /// Highest measured voltage [V].
    pub voltage_max_v: f64,
    /// Mean measured current [A].
    pub current_mean_a: f64,
    /// Mean net charge since the start of each cell's protocol [Ah].
    pub charge_throughput_mean_ah: f64,
    /// Mean SEI progress Q₁/Q₁,max.
    pub sei_progress_mean_frac: f64,
    /// Rack temperature [°C].
    pub rack_temperature_degc: Reading,
    /// Power drawn from the grid by the rack (negative when feeding back) [W].
    pub grid_power_w: f64,
    /// Traced cells.
    pub traced: Vec<FormationTrace>,
    /// Mean wetting fraction of the lot (legacy `"Eta wetting"`).
    pub wetting_mean_frac: f64,
    /// Mean electrolyte volume of the lot (legacy `Volume_electrolyte`) [m³].
    pub electrolyte_volume_mean_m3: f64,
    /// A cell alarm of severity ≥ Warning was raised since the previous sample (cell alarms
    /// are one-off events, so "active" means "raised in this sample interval").
    pub defect_risk: bool,
    /// Fault labels active on the lot.
    pub fault_labels: Vec<u32>,
}

/// Writes the legacy keys of §10.4 (HEAD's `battery_model`).
fn formation_legacy(
    out: &mut LegacyRecord,
    voltage_v: f64,
    throughput_ah: f64,
    sei_progress: f64,
    wetting: f64,
    electrolyte_m3: f64,
) {
    put(out, "Voltage_V", voltage_v);
    put(out, "Capacity_Ah", throughput_ah);
    put(out, "sei_efficiency", sei_progress);
    put(out, "Eta wetting", wetting);
    put(out, "Volume_electrolyte", electrolyte_m3 * 1e6);
}

impl SampleRecord for FormationSample {
    fn stage_time_s(&self) -> f64 {
        self.stage_time_s
    }

    fn legacy(&self, out: &mut LegacyRecord) {
        formation_legacy(
            out,
            self.voltage_mean_v,
            self.charge_throughput_mean_ah,
            self.sei_progress_mean_frac,
            self.wetting_mean_frac,
            self.electrolyte_volume_mean_m3,
        );
    }
}

// =======================================================================================
// Result
// =======================================================================================

/// Mean, population standard deviation, minimum and maximum of a lot quantity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LotStats {
    /// Number of values.
    pub n: u32,
    /// Mean (0 when empty).
    pub mean: f64,
    /// Population standard deviation (0 when empty).
    pub std: f64,
    /// Minimum (0 when empty).
    pub min: f64,
    /// Maximum (0 when empty).
    pub max: f64,
}

impl LotStats {
    /// Statistics of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let (mut n, mut sum, mut sum2) = (0u32, 0.0, 0.0);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            n += 1;
            sum += v;
            sum2 += v * v;
            min = min.min(v);
            max = max.max(v);
        }
        if n == 0 {
            return Self::default();
        }
        let mean = sum / n as f64;
        Self { n, mean, std: (sum2 / n as f64 - mean * mean).max(0.0).sqrt(), min, max }
    }
}

/// The formation result of one lot (MODELS.md §10.3).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FormationResult {
    /// Cells received.
    pub cells_in: u32,
    /// Cells that ran the protocol.
    pub cells_cycled: u32,
    /// Cells formed and accepted.
    pub cells_formed: u32,
    /// Cells rejected by formation.
    pub cells_rejected: u32,
    /// Cells rejected upstream (passed through unformed).
    pub cells_skipped: u32,
    /// Formation rejects per code.
    pub reject_counts: BTreeMap<String, u32>,
    /// Number of waves.
    pub waves: u32,
    /// Lot duration (sum of the waves) [s].
    pub duration_s: f64,
    /// Duration of each wave [s].
    pub wave_durations_s: Vec<f64>,
    /// Measured discharge capacity of the cycled cells [Ah].
    pub discharge_capacity_ah: LotStats,
    /// Measured first-charge capacity of the cycled cells [Ah].
    pub first_charge_capacity_ah: LotStats,
    /// Measured first-cycle efficiency of the cycled cells.
    pub first_cycle_efficiency_frac: LotStats,
    /// DCR_10s at 25 °C of the cycled cells [Ω].
    pub dcr_10s_ohm: LotStats,
    /// Storage SOC of the cycled cells.
    pub soc_frac: LotStats,
    /// Grid energy of the whole lot [J].
    pub formation_energy_grid_j: f64,
    /// Mean voltage at the end (legacy `Voltage_V`) [V].
    pub voltage_mean_v: f64,
    /// Mean net charge at the end (legacy `Capacity_Ah`) [Ah].
    pub charge_throughput_mean_ah: f64,
    /// Mean SEI progress at the end (legacy `sei_efficiency`).
    pub sei_progress_mean_frac: f64,
    /// Mean wetting fraction of the lot.
    pub wetting_mean_frac: f64,
    /// Mean electrolyte volume of the lot [m³].
    pub electrolyte_volume_mean_m3: f64,
    /// Every alarm event of the run.
    pub alarms: Vec<Alarm>,
    /// No alarm ≥ Alarm was raised (no cell rejected by formation).
    pub accepted: bool,
}

impl ResultRecord for FormationResult {
    fn legacy(&self, out: &mut LegacyRecord) {
        put_object(out, "Final Properties", |o| {
            formation_legacy(
                o,
                self.voltage_mean_v,
                self.charge_throughput_mean_ah,
                self.sei_progress_mean_frac,
                self.wetting_mean_frac,
                self.electrolyte_volume_mean_m3,
            )
        });
    }

    fn accepted(&self) -> bool {
        self.accepted
    }

    fn summary(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("cells formed", self.cells_formed as f64),
            ("cells rejected", self.cells_rejected as f64),
            ("duration h", self.duration_s / 3600.0),
            ("Q_dis mean Ah", self.discharge_capacity_ah.mean),
            ("FCE mean", self.first_cycle_efficiency_frac.mean),
            ("DCR_10s mean mΩ", self.dcr_10s_ohm.mean * 1e3),
            ("grid energy kWh", self.formation_energy_grid_j / 3.6e6),
        ]
    }
}

// =======================================================================================
// Lot accumulation
// =======================================================================================

/// Per-sample-index sums, extremes and step counts of the cells of one wave.
#[derive(Clone, Debug, Default)]
struct LotSeries {
    n_steps: usize,
    count: Vec<u32>,
    v_sum: Vec<f64>,
    v_min: Vec<f64>,
    v_max: Vec<f64>,
    i_sum: Vec<f64>,
    q_sum: Vec<f64>,
    sei_sum: Vec<f64>,
    p_sum: Vec<f64>,
    in_step: Vec<u32>,
}

impl LotSeries {
    fn new(n_steps: usize) -> Self {
        Self { n_steps, ..Self::default() }
    }

    fn len(&self) -> usize {
        self.count.len()
    }

    fn grow(&mut self, len: usize) {
        if len > self.len() {
            self.count.resize(len, 0);
            self.v_sum.resize(len, 0.0);
            self.v_min.resize(len, f64::INFINITY);
            self.v_max.resize(len, f64::NEG_INFINITY);
            self.i_sum.resize(len, 0.0);
            self.q_sum.resize(len, 0.0);
            self.sei_sum.resize(len, 0.0);
            self.p_sum.resize(len, 0.0);
            self.in_step.resize(len * self.n_steps, 0);
        }
    }

    #[inline]
    fn add(&mut self, j: usize, pt: &ChannelPoint) {
        self.grow(j + 1);
        let v = pt.voltage_v.value();
        self.count[j] += 1;
        self.v_sum[j] += v;
        self.v_min[j] = self.v_min[j].min(v);
        self.v_max[j] = self.v_max[j].max(v);
        self.i_sum[j] += pt.current_a.value();
        self.q_sum[j] += pt.charge_throughput_ah;
        self.sei_sum[j] += pt.sei_progress_frac;
        self.p_sum[j] += pt.grid_power_w;
        if let Some(s) = pt.step {
            self.in_step[j * self.n_steps + s as usize] += 1;
        }
    }

    /// Adds another series (a later chunk of the same wave) index by index.
    fn merge(&mut self, other: &LotSeries) {
        self.grow(other.len());
        for j in 0..other.len() {
            self.count[j] += other.count[j];
            self.v_sum[j] += other.v_sum[j];
            self.v_min[j] = self.v_min[j].min(other.v_min[j]);
            self.v_max[j] = self.v_max[j].max(other.v_max[j]);
            self.i_sum[j] += other.i_sum[j];
            self.q_sum[j] += other.q_sum[j];
            self.sei_sum[j] += other.sei_sum[j];
            self.p_sum[j] += other.p_sum[j];
        }
        for (a, b) in self.in_step.iter_mut().zip(&other.in_step) {
            *a += b;
        }
    }

    /// Adds to every index j < `len` the cells whose protocol ended at or before j: `tails`
    /// holds each finished cell's last point at the index of its first unrecorded sample.
    fn add_finished(&mut self, tails: &LotSeries, len: usize) {
        self.grow(len);
        let (mut n, mut vs, mut vmin, mut vmax, mut is, mut qs, mut ss, mut ps) =
            (0u32, 0.0, f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0, 0.0, 0.0);
        for j in 0..len {
            if j < tails.len() {
                n += tails.count[j];
                vs += tails.v_sum[j];
                vmin = vmin.min(tails.v_min[j]);
                vmax = vmax.max(tails.v_max[j]);
                is += tails.i_sum[j];
                qs += tails.q_sum[j];
                ss += tails.sei_sum[j];
                ps += tails.p_sum[j];
            }
            self.count[j] += n;
            self.v_sum[j] += vs;
            self.v_min[j] = self.v_min[j].min(vmin);
            self.v_max[j] = self.v_max[j].max(vmax);
            self.i_sum[j] += is;
            self.q_sum[j] += qs;
            self.sei_sum[j] += ss;
            self.p_sum[j] += ps;
        }
    }
}

/// Mean of a sum over `n` values (0 when empty).
#[inline]
fn mean(sum: f64, n: u32) -> f64 {
    if n > 0 {
        sum / n as f64
    } else {
        0.0
    }
}

/// Ratio that is 0 when the denominator is not positive.
#[inline]
fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

/// The full trace of one traced cell over a wave.
#[derive(Clone, Debug)]
struct TraceSeries {
    cell_index: usize,
    cell_id: String,
    points: Vec<ChannelPoint>,
    last: Option<ChannelPoint>,
}

impl TraceSeries {
    fn at(&self, j: usize) -> Option<FormationTrace> {
        let pt = self.points.get(j).or(self.last.as_ref())?;
        Some(FormationTrace {
            cell_id: self.cell_id.clone(),
            step: pt.step,
            voltage_v: pt.voltage_v,
            current_a: pt.current_a,
            charge_throughput_ah: pt.charge_throughput_ah,
            cathode_stoich: pt.cathode_stoich,
            anode_stoich: pt.anode_stoich,
            anode_potential_v: pt.anode_potential_v,
            sei_charge_ah: pt.sei_charge_ah,
        })
    }
}

/// A per-cell alarm waiting to be emitted in time order.
#[derive(Clone, Debug)]
struct PendingAlarm {
    stage_time_s: f64,
    code: &'static str,
    severity: Severity,
    signal: &'static str,
    value: f64,
    threshold: f64,
    cell_id: String,
    message: String,
}

/// Cells per parallel job of a formation wave. Fixed, never derived from the thread count:
/// lot sums are added cell by cell within a chunk and then chunk by chunk, in the same
/// order whatever the number of threads.
pub const CELLS_PER_JOB: usize = 256;

/// One chunk of a wave: its cells (channel slot, input index, cell) before it runs, its
/// accumulators after.
enum ChunkJob {
    Todo(Vec<(u32, usize, FilledCell)>),
    Taken,
    Done(Box<ChunkDone>),
}

/// What one chunk of a wave produced: its lot accumulators, traces, alarms, slowest cell and
/// formed cells (by input index).
struct ChunkDone {
    live: LotSeries,
    tails: LotSeries,
    traces: Vec<TraceSeries>,
    pending: Vec<PendingAlarm>,
    duration_s: f64,
    cells: Vec<(usize, FormedCell)>,
}

/// What every chunk of one wave shares.
struct WaveChunk<'a> {
    p: &'a FormationParams,
    tf: ThermalFactors,
    clock: SampleClock,
    traced: &'a [usize],
    stream_seed: u64,
    noise: bool,
    wave: u32,
    faults: &'a crate::fault::FaultSet,
}

impl WaveChunk<'_> {
    /// Runs the protocol on every cell of the chunk, in order, each with its own sensor
    /// stream, and accumulates the chunk's share of the lot samples.
    fn form(&self, cells: Vec<(u32, usize, FilledCell)>) -> ChunkDone {
        #[cfg(target_arch = "x86_64")]
        if crate::vexp::avx2_fma() {
            // SAFETY: the processor has AVX2 and FMA, checked just above.
            return unsafe { self.form_avx2(cells) };
        }
        self.form_cells(cells)
    }

    /// [`WaveChunk::form_cells`] compiled for AVX2 and FMA: the cell model's `exp`s inline as
    /// packed code (same bits, see [`crate::vexp::avx2_fma`]).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn form_avx2(&self, cells: Vec<(u32, usize, FilledCell)>) -> ChunkDone {
        self.form_cells(cells)
    }

    #[inline(always)]
    fn form_cells(&self, cells: Vec<(u32, usize, FilledCell)>) -> ChunkDone {
        let n_steps = self.p.protocol.len();
        let mut done = ChunkDone {
            live: LotSeries::new(n_steps),
            tails: LotSeries::new(n_steps),
            traces: Vec::new(),
            pending: Vec::new(),
            duration_s: 0.0,
            cells: Vec::with_capacity(cells.len()),
        };
        // Up to STEP_LANES cells run side by side; their sample points are buffered and added
        // to the lot series cell by cell afterwards, so every sum is the same as with one
        // cell after the other.
        let mut buffers: Vec<Vec<(usize, ChannelPoint)>> = Vec::new();
        let mut cells = cells.into_iter().peekable();
        while cells.peek().is_some() {
            let group: Vec<(u32, usize, FilledCell)> = cells.by_ref().take(STEP_LANES).collect();
            let mut rngs: Vec<StreamRng> = group
                .iter()
                .map(|&(_, idx, _)| stream(self.stream_seed, &[Purpose::Sensor as u64, idx as u64]))
                .collect();
            let faults: Vec<(ChannelFault, Vec<u32>)> =
                group.iter().map(|&(slot, idx, _)| channel_fault(self.faults, slot, idx)).collect();
            let mut runs: Vec<CellRun<'_>> = group
                .iter()
                .zip(&mut rngs)
                .zip(&faults)
                .map(|(((_, _, filled), rng), (fault, _))| {
                    let mut points = buffers.pop().unwrap_or_default();
                    points.clear();
                    CellRun::new(self.p, filled, self.tf, self.clock, (self.noise, *fault), rng, points)
                })
                .collect();
            form_group(&mut runs, &mut rngs);
            for (((slot, idx, filled), run), (_, labels)) in group.into_iter().zip(runs).zip(faults) {
                let (out, points) = run.finish();
                let trace_slot = if self.traced.contains(&idx) {
                    done.traces.push(TraceSeries {
                        cell_index: idx,
                        cell_id: filled.assembled.genealogy.cell_id.clone(),
                        points: Vec::new(),
                        last: None,
                    });
                    Some(done.traces.len() - 1)
                } else {
                    None
                };
                for (j, pt) in &points {
                    done.live.add(*j, pt);
                    if let Some(ts) = trace_slot {
                        done.traces[ts].points.push(*pt);
                    }
                }
                buffers.push(points);
                done.tails.add(out.samples_recorded, &out.last);
                if let Some(ts) = trace_slot {
                    done.traces[ts].last = Some(out.last);
                }
                done.duration_s = done.duration_s.max(out.duration_s);
                let end = self.clock.wave_start_s + out.duration_s;
                let (mut cell, alarms) = finish_cell(self.p, filled, out, slot, self.wave, end);
                for &label_id in &labels {
                    let g = &mut cell.filled.assembled.genealogy;
                    self.faults.touch(
                        label_id,
                        At { stage_time_s: end, lane: Some(g.lane), cell_id: Some(&g.cell_id), ..At::default() },
                    );
                    g.fault_labels.push(label_id);
                    g.fault_labels.sort_unstable();
                    g.fault_labels.dedup();
                }
                done.pending.extend(alarms);
                done.cells.push((idx, cell));
            }
        }
        done
    }
}

/// The F11 faults on channel `slot` for the cell of lot index `idx`: the faulty channels are
/// every ⌈1/channels_frac⌉-th channel (0, k, 2k, …) while the cell index is inside the fault.
fn channel_fault(faults: &crate::fault::FaultSet, slot: u32, idx: usize) -> (ChannelFault, Vec<u32>) {
    let mut fault = ChannelFault::default();
    let mut labels = Vec::new();
    for f in faults.of(FaultCode::F11FormChannelFault) {
        let m = &f.spec.magnitude;
        let stride = (1.0 / m.channels_frac.unwrap_or(0.01)).round().max(1.0) as u32;
        if !f.spec.contains(idx as f64) || !slot.is_multiple_of(stride) {
            continue;
        }
        if m.mode.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("sense_resistance")) {
            fault.sense_resistance_ohm += m.sense_resistance_ohm.unwrap_or(0.05);
        } else {
            fault.gain_error_frac += m.gain_error_frac.unwrap_or(0.02);
        }
        labels.push(f.label_id);
    }
    (fault, labels)
}

/// Indices of the cells to trace (MODELS.md §0.2): the first eligible cell of lanes 0, 2,
/// 4, … (ascending), then of the odd lanes, then further eligible cells in input order,
/// `n` in all. "First" = lowest index along the lane.
pub fn traced_cell_indices<'a>(cells: impl IntoIterator<Item = (&'a Genealogy, bool)>, n: usize) -> Vec<usize> {
    let mut first_of_lane: BTreeMap<u32, (u32, usize)> = BTreeMap::new();
    let mut eligible = Vec::new();
    for (i, (g, ok)) in cells.into_iter().enumerate() {
        if !ok {
            continue;
        }
        eligible.push(i);
        let e = first_of_lane.entry(g.lane).or_insert((g.index_in_lane, i));
        if g.index_in_lane < e.0 {
            *e = (g.index_in_lane, i);
        }
    }
    let mut picks: Vec<usize> = first_of_lane.iter().filter(|(l, _)| *l % 2 == 0).map(|(_, v)| v.1).collect();
    picks.extend(first_of_lane.iter().filter(|(l, _)| *l % 2 == 1).map(|(_, v)| v.1));
    for i in eligible {
        if picks.len() >= n {
            break;
        }
        if !picks.contains(&i) {
            picks.push(i);
        }
    }
    picks.truncate(n);
    picks
}

/// Builds the formed cell and its alarms from the outcome of its protocol.
fn finish_cell(
    p: &FormationParams,
    filled: FilledCell,
    out: CellFormation,
    channel: u32,
    wave: u32,
    end_stage_time_s: f64,
) -> (FormedCell, Vec<PendingAlarm>) {
    let c = &out.constants;
    let st = out.state;
    let ref25 = ThermalFactors::reference();
    let r0_ohm = c.r0_ohm(&st, &ref25);
    let dcr_10s_ohm = c.dcr_10s_ohm(&st, &ref25);
    let reading = |t: f64, m: f64| Reading { true_value: t, measured: Some(m) };
    let q_ch1 = reading(out.q_ch1.0, out.q_ch1.1);
    let q_dis = reading(out.q_dis.0, out.q_dis.1);
    let fce = reading(ratio(out.q_dis.0, out.q_ch1.0), ratio(out.q_dis.1, out.q_ch1.1));
    let e_dis = reading(out.e_dis.0, out.e_dis.1);
    let mean_v = reading(ratio(out.e_dis.0, out.q_dis.0), ratio(out.e_dis.1, out.q_dis.1));
    let soc = reading(ratio(out.storage_charge.0, out.q_dis.0), ratio(out.storage_charge.1, out.q_dis.1));
    let grid_j = (out.e_charge_wh / p.charger_efficiency_frac - p.regen_efficiency_frac * out.e_discharge_wh)
        * SECONDS_PER_HOUR
        + p.channel_standby_power_w * out.duration_s;
    let asm = &filled.assembled;
    let q_design = asm.design_capacity_ah;
    let plating_reject =
        st.q_pl_ah > PLATING_REJECT_FRAC_OF_DESIGN * q_design || (asm.plating_risk && out.peak_x > PLATING_RISK_STOICH);
    let plating_detected = plating_reject || c.local_plating_charge_ah > 0.0;
    let cell_id = asm.genealogy.cell_id.clone();

    let mut alarms = Vec::new();
    let mut raise = |code: &'static str, signal: &'static str, value: f64, threshold: f64, message: String| {
        alarms.push(PendingAlarm {
            stage_time_s: end_stage_time_s,
            code,
            severity: Severity::Alarm,
            signal,
            value,
            threshold,
            cell_id: cell_id.clone(),
            message,
        });
    };
    if let Some(stop) = &out.stop {
        let message = match stop.code {
            "FORM_OVERVOLTAGE" => format!("cell {cell_id}: channel tripped at {:.4} V", stop.value),
            _ => format!("cell {cell_id}: protocol step timed out after {} s", stop.value),
        };
        raise(stop.code, stop.signal, stop.value, stop.threshold, message);
    } else {
        let min_fce = p.min_first_cycle_efficiency_frac;
        if fce.value() < min_fce {
            raise(
                "FORM_LOW_FCE",
                "first_cycle_efficiency_frac",
                fce.value(),
                min_fce,
                format!("cell {cell_id}: first-cycle efficiency {:.4} < {min_fce}", fce.value()),
            );
        }
        let min_q = p.min_capacity_frac_of_design * q_design;
        if q_dis.value() < min_q {
            raise(
                "FORM_LOW_CAPACITY",
                "discharge_capacity_ah",
                q_dis.value(),
                min_q,
                format!("cell {cell_id}: discharge capacity {:.4} Ah < {min_q:.4} Ah", q_dis.value()),
            );
        }
        if dcr_10s_ohm > p.max_dcr_10s_ohm {
            raise(
                "FORM_HIGH_DCR",
                "dcr_10s_ohm",
                dcr_10s_ohm,
                p.max_dcr_10s_ohm,
                format!("cell {cell_id}: DCR_10s {:.2} mΩ > {:.2} mΩ", dcr_10s_ohm * 1e3, p.max_dcr_10s_ohm * 1e3),
            );
        }
        if plating_reject {
            raise(
                "FORM_PLATING",
                "plated_charge_ah",
                st.q_pl_ah,
                PLATING_REJECT_FRAC_OF_DESIGN * q_design,
                format!(
                    "cell {cell_id}: lithium plating (plated {:.2} mAh, peak anode stoichiometry {:.3})",
                    st.q_pl_ah * 1e3,
                    out.peak_x
                ),
            );
        }
    }
    let reject_reason = alarms.first().map(|a| a.code.to_string());
    let outputs = CellOutputs::of(&filled, e_dis.true_value);
    let cell = FormedCell {
        formed: true,
        cathode_stoich: st.y,
        anode_stoich: st.x,
        sei_charge_ah: st.sei_charge_ah(),
        sei_passivation_charge_ah: st.q1_ah,
        sei_growth_charge_ah: st.q2_ah,
        plated_charge_ah: st.q_pl_ah,
        rc_voltage_v: st.v1_v,
        peak_anode_stoich: out.peak_x,
        first_charge_capacity_ah: q_ch1,
        discharge_capacity_ah: q_dis,
        first_cycle_efficiency_frac: fce,
        discharge_energy_wh: e_dis,
        mean_discharge_voltage_v: mean_v,
        ocv_v: st.ocv_v(),
        soc_frac: soc,
        r0_ohm,
        dcr_10s_ohm,
        plating_detected,
        charge_energy_wh: out.e_charge_wh,
        formation_energy_grid_j: grid_j,
        formation_time_s: out.duration_s,
        step_durations_s: out.step_durations_s,
        channel: Some(channel),
        wave: Some(wave),
        outputs,
        reject_reason,
        filled,
    };
    (cell, alarms)
}

// =======================================================================================
// Stage
// =======================================================================================

/// The formation rack (MODELS.md §10).
pub struct Formation;

impl Stage for Formation {
    const KIND: StageKind = StageKind::FormationCycling;
    type Params = FormationParams;
    type Input = Vec<FilledCell>;
    type Output = Vec<FormedCell>;
    type Sample = FormationSample;
    type Result = FormationResult;
    type MachineState = ();

    fn run(
        p: &FormationParams,
        input: Vec<FilledCell>,
        _machine: &mut (),
        ctx: &mut StageCtx<'_>,
        sink: &mut dyn StageSink<FormationSample>,
    ) -> StageRun<Vec<FormedCell>, FormationResult> {
        let mut tracker = AlarmTracker::new(Self::KIND, ctx.line, ctx.start_t_s);
        let tf = ThermalFactors::at(p.temperature_degc);
        let n_steps = p.protocol.len();
        let dt_sample = p.sample_interval_s;
        let rack_sensor = Sensor::absolute(RACK_TEMPERATURE_SIGMA_DEGC);
        let faults = ctx.faults;

        let formable: Vec<usize> = (0..input.len()).filter(|&i| input[i].assembled.reject_reason.is_none()).collect();
        let n_formable = formable.len();
        let wetting_mean_frac = mean(formable.iter().map(|&i| input[i].wetting_frac).sum(), n_formable as u32);
        let electrolyte_volume_mean_m3 =
            mean(formable.iter().map(|&i| input[i].electrolyte_volume_m3).sum(), n_formable as u32);
        let traced = traced_cell_indices(
            input.iter().map(|c| (&c.assembled.genealogy, c.assembled.reject_reason.is_none())),
            p.traced_cells as usize,
        );

        let mut outputs: Vec<Option<FormedCell>> = vec![None; input.len()];
        let mut inputs: Vec<Option<FilledCell>> = input.into_iter().map(Some).collect();
        let channels = p.channels.max(1) as usize;
        let waves: Vec<&[usize]> =
            if formable.is_empty() { vec![&[][..]] } else { formable.chunks(channels).collect() };
        let n_waves = waves.len();

        let mut wave_start = 0.0;
        let mut wave_durations_s = Vec::with_capacity(n_waves);
        let mut raised_since_sample = false;
        let mut last = FormationSample {
            t_s: ctx.start_t_s,
            stage_time_s: 0.0,
            cells_in_step: vec![0; n_steps],
            voltage_mean_v: 0.0,
            voltage_min_v: 0.0,
            voltage_max_v: 0.0,
            current_mean_a: 0.0,
            charge_throughput_mean_ah: 0.0,
            sei_progress_mean_frac: 0.0,
            rack_temperature_degc: Reading::exact(p.temperature_degc),
            grid_power_w: 0.0,
            traced: Vec::new(),
            wetting_mean_frac,
            electrolyte_volume_mean_m3,
            defect_risk: false,
            fault_labels: Vec::new(),
        };

        for (w, cells) in waves.iter().enumerate() {
            let eps = 1e-9 * dt_sample.max(wave_start);
            let first_index = ((wave_start - eps) / dt_sample).ceil().max(0.0) as u64;
            let clock = SampleClock { first_index, interval_s: dt_sample, wave_start_s: wave_start };
            // The wave's cells in fixed-size chunks, one parallel job each; the chunk
            // accumulators are merged in chunk order, so any thread count adds the same way.
            let jobs: Vec<Mutex<ChunkJob>> = cells
                .chunks(CELLS_PER_JOB)
                .enumerate()
                .map(|(k, chunk)| {
                    let cells = chunk
                        .iter()
                        .enumerate()
                        .map(|(i, &idx)| {
                            let slot = (k * CELLS_PER_JOB + i) as u32;
                            (slot, idx, inputs[idx].take().expect("each cell is formed once"))
                        })
                        .collect();
                    Mutex::new(ChunkJob::Todo(cells))
                })
                .collect();
            let (stream_seed, noise) = (ctx.stream_seed, ctx.sensor_noise);
            ctx.parallel.for_each(jobs.len(), &|k| {
                let mut job = jobs[k].lock().unwrap_or_else(|e| e.into_inner());
                if let ChunkJob::Todo(cells) = std::mem::replace(&mut *job, ChunkJob::Taken) {
                    let chunk = WaveChunk { p, tf, clock, traced: &traced, stream_seed, noise, wave: w as u32, faults };
                    *job = ChunkJob::Done(Box::new(chunk.form(cells)));
                }
            });
            let mut live = LotSeries::new(n_steps);
            let mut tails = LotSeries::new(n_steps);
            let mut traces: Vec<TraceSeries> = Vec::new();
            let mut pending: Vec<PendingAlarm> = Vec::new();
            let mut wave_duration = 0.0f64;
            for job in jobs {
                let ChunkJob::Done(done) = job.into_inner().unwrap_or_else(|e| e.into_inner()) else {
                    unreachable!("Parallel::for_each runs every job")
                };
                live.merge(&done.live);
                tails.merge(&done.tails);
                traces.extend(done.traces);
                pending.extend(done.pending);
                wave_duration = wave_duration.max(done.duration_s);
                for (idx, cell) in done.cells {
                    outputs[idx] = Some(cell);
                }
            }
            traces.sort_by_key(|t| traced.iter().position(|&i| i == t.cell_index));

            let wave_end = wave_start + wave_duration;
            let is_last = w + 1 == n_waves;
            let end_eps = 1e-9 * wave_end.max(1.0);
            let mut n_live = 0usize;
            while clock.offset(n_live) + wave_start < wave_end - end_eps {
                n_live += 1;
            }
            let n_total = n_live + usize::from(is_last);
            live.add_finished(&tails, n_total);
            pending.sort_by(|a, b| a.stage_time_s.total_cmp(&b.stage_time_s));
            let mut next_alarm = 0usize;

            for j in 0..n_total {
                let stage_time_s = if j < n_live { (first_index + j as u64) as f64 * dt_sample } else { wave_end };
                while next_alarm < pending.len() && pending[next_alarm].stage_time_s <= stage_time_s + end_eps {
                    let a = &pending[next_alarm];
                    let scope = AlarmScope { cell_id: Some(a.cell_id.clone()), ..AlarmScope::default() };
                    let ev = tracker.once(
                        a.stage_time_s,
                        a.code,
                        a.severity,
                        a.signal,
                        a.value,
                        a.threshold,
                        scope,
                        a.message.clone(),
                    );
                    sink.alarm(ev);
                    raised_since_sample |= a.severity >= Severity::Warning;
                    next_alarm += 1;
                }
                let n = live.count[j];
                let sample = FormationSample {
                    t_s: ctx.start_t_s + stage_time_s,
                    stage_time_s,
                    cells_in_step: live.in_step[j * n_steps..(j + 1) * n_steps].to_vec(),
                    voltage_mean_v: mean(live.v_sum[j], n),
                    voltage_min_v: if n > 0 { live.v_min[j] } else { 0.0 },
                    voltage_max_v: if n > 0 { live.v_max[j] } else { 0.0 },
                    current_mean_a: mean(live.i_sum[j], n),
                    charge_throughput_mean_ah: mean(live.q_sum[j], n),
                    sei_progress_mean_frac: mean(live.sei_sum[j], n),
                    rack_temperature_degc: rack_sensor.measure(p.temperature_degc, ctx.sensor_noise, ctx.sensor_rng),
                    grid_power_w: live.p_sum[j],
                    traced: traces.iter().filter_map(|t| t.at(j)).collect(),
                    wetting_mean_frac,
                    electrolyte_volume_mean_m3,
                    defect_risk: raised_since_sample,
                    fault_labels: {
                        let mut l = faults.labels_at(stage_time_s, None);
                        l.extend(
                            faults
                                .of(FaultCode::F11FormChannelFault)
                                .map(|f| f.label_id)
                                .filter(|&id| faults.touched(id)),
                        );
                        l
                    },
                };
                raised_since_sample = false;
                last = sample.clone();
                sink.sample(sample);
            }
            for a in &pending[next_alarm..] {
                let scope = AlarmScope { cell_id: Some(a.cell_id.clone()), ..AlarmScope::default() };
                let ev = tracker.once(
                    a.stage_time_s,
                    a.code,
                    a.severity,
                    a.signal,
                    a.value,
                    a.threshold,
                    scope,
                    a.message.clone(),
                );
                sink.alarm(ev);
                raised_since_sample |= a.severity >= Severity::Warning;
            }
            wave_durations_s.push(wave_duration);
            wave_start = wave_end;
        }

        let duration_s = wave_start;
        let formed: Vec<FormedCell> = outputs
            .into_iter()
            .zip(inputs)
            .map(|(out, inp)| out.unwrap_or_else(|| FormedCell::unformed(inp.expect("unformed cells stay in input"))))
            .collect();
        let cycled: Vec<&FormedCell> = formed.iter().filter(|c| c.formed).collect();
        let mut reject_counts = BTreeMap::new();
        for c in &cycled {
            if let Some(r) = &c.reject_reason {
                *reject_counts.entry(r.clone()).or_insert(0u32) += 1;
            }
        }
        let cells_rejected = cycled.iter().filter(|c| c.is_rejected()).count() as u32;
        let result = FormationResult {
            cells_in: formed.len() as u32,
            cells_cycled: cycled.len() as u32,
            cells_formed: cycled.len() as u32 - cells_rejected,
            cells_rejected,
            cells_skipped: (formed.len() - cycled.len()) as u32,
            reject_counts,
            waves: if n_formable == 0 { 0 } else { n_waves as u32 },
            duration_s,
            wave_durations_s,
            discharge_capacity_ah: LotStats::of(cycled.iter().map(|c| c.discharge_capacity_ah.value())),
            first_charge_capacity_ah: LotStats::of(cycled.iter().map(|c| c.first_charge_capacity_ah.value())),
            first_cycle_efficiency_frac: LotStats::of(cycled.iter().map(|c| c.first_cycle_efficiency_frac.value())),
            dcr_10s_ohm: LotStats::of(cycled.iter().map(|c| c.dcr_10s_ohm)),
            soc_frac: LotStats::of(cycled.iter().map(|c| c.soc_frac.value())),
            formation_energy_grid_j: cycled.iter().map(|c| c.formation_energy_grid_j).sum(),
            voltage_mean_v: last.voltage_mean_v,
            charge_throughput_mean_ah: last.charge_throughput_mean_ah,
            sei_progress_mean_frac: last.sei_progress_mean_frac,
            wetting_mean_frac,
            electrolyte_volume_mean_m3,
            accepted: !tracker.any_raised(Severity::Alarm),
            alarms: tracker.events,
        };
        StageRun { output: formed, result, duration_s }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_params_are_valid() {
        FormationParams::default().validate().unwrap();
    }

    #[test]
    fn sample_clock_offsets_are_computed_from_the_plant_grid() {
        let c = SampleClock { first_index: 1055, interval_s: 60.0, wave_start_s: 63280.0 };
        assert_eq!(c.offset(0), 20.0);
        assert_eq!(c.offset(2), 140.0);
    }

    #[test]
    fn lot_stats_guard_empty_lots() {
        assert_eq!(LotStats::of(std::iter::empty()), LotStats::default());
        let s = LotStats::of([1.0, 3.0]);
        assert_eq!((s.n, s.mean, s.std, s.min, s.max), (2, 2.0, 1.0, 1.0, 3.0));
    }

    #[test]
    fn protocol_steps_round_trip_through_serde() {
        let p = FormationParams::default();
        let json = serde_json::to_string(&p.protocol).unwrap();
        assert!(json.contains(r#""step":"cc_charge""#), "{json}");
        let back: Vec<ProtocolStep> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p.protocol);
        let bad = r#"[{"step":"rest","duration_s":10,"extra":1}]"#;
        assert!(serde_json::from_str::<Vec<ProtocolStep>>(bad).is_err());
    }
}
