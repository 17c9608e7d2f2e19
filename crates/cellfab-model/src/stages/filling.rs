//! Electrolyte filling: evacuate, dose, vent and soak (MODELS.md §9).
//! `AssembledCell`s in, `FilledCell`s out.
//!
//! A filling station evacuates a cell to `vacuum_pressure_pa`, doses the target volume
//! (pore volume plus excess plus dead volume) and vents it; the electrolyte then soaks into
//! the pores by capillary imbibition driven by the capillary pressure plus the venting
//! pressure (Lucas–Washburn, per component: cathode, anode, separator). Rejected cells stay
//! in the lot unchanged and are not filled.
//!
//! Timeline: filled cell f (f = 0, 1, … over the cells not rejected upstream) leaves its
//! station at `⌈(f + 1)/stations⌉·cycle`; its wetting clock starts there, and it is released
//! after `soak_time_s`; the lot ends when the last soak ends. The wetting is a closed form in
//! t (`w = min(s_vol, s_gas, 1, k·√t)`), so nothing is stepped: lot means at each sample are
//! sums over station groups with the cells of a group sorted by saturation time.
//!
//! Randomness per cell i (its index in the lot): the process stream `stream(stream_seed,
//! [1, i])` draws the dosing error; the sensor stream `stream(stream_seed, [2, i])` draws
//! the check-weigher reading. The lot sample draws the vacuum gauge from `ctx.sensor_rng`.
//! Deterministic mode draws nothing.

use crate::alarm::{Alarm, AlarmScope, AlarmTracker, Severity};
use crate::cell::{AssembledCell, FilledCell, Genealogy};
use crate::consts::arrhenius;
use crate::error::{check_non_negative, check_open_min, check_positive, check_range, ParamError};
use crate::fault::{At, FaultCode};
use crate::legacy::{put, put_object, put_value, LegacyRecord};
use crate::material::{Electrolyte, Separator};
use crate::random::{normal, stream, Purpose};
use crate::reading::{Reading, Sensor};
use crate::stage::{
    sample_times, ResultRecord, SampleRecord, Stage, StageCtx, StageKind, StageParams, StageRun, StageSink,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Electrolyte of every cell: LP57 (§0.7).
pub const ELECTROLYTE: Electrolyte = Electrolyte::LP57;

/// Separator of every cell: the PE + ceramic preset (§0.7).
pub const SEPARATOR: Separator = Separator::PE_CERAMIC;

/// Vacuum gauge: σ_r 2 % (§9.2).
pub const VACUUM_SENSOR: Sensor = Sensor::relative(0.02);

/// Check-weigher: σ_a 5 mg (§9.2).
pub const CHECK_WEIGHER: Sensor = Sensor::absolute(5e-6);

/// Measured vacuum above this multiple of the set point raises `FILL_VACUUM_POOR` (§9.3).
pub const VACUUM_POOR_FACTOR: f64 = 5.0;

/// Lanes whose first cell is traced in the lot samples (§0.2).
pub const TRACED_LANES: [u32; 4] = [0, 2, 4, 6];

// ---------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------

/// Filling-station settings (MODELS.md §9.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FillingParams {
    /// Evacuation pressure before dosing; [1, 9e4]. [L] (0.1–10 mbar vendor practice)
    pub vacuum_pressure_pa: f64,
    /// Pressure after venting; above the vacuum. [L]
    pub ambient_pressure_pa: f64,
    /// Electrolyte above the pore volume; [−0.5, 1]. [L] (anchors A8)
    pub fill_excess_frac: f64,
    /// Mandrel hole and headspace wetting; ≥ 0. [C]
    pub dead_volume_m3: f64,
    /// Coriolis dosing error σ (fraction of the target); ≥ 0. [L] (±0.1–0.3 %)
    pub dosing_sigma_frac: f64,
    /// Check-weigher acceptance around the target (fraction); ≥ 0. [C]
    pub fill_tolerance_frac: f64,
    /// Filling stations in parallel; ≥ 1. [C]
    pub stations: u32,
    /// Evacuate–dose–vent cycle per station; > 0. [C]
    pub station_cycle_s: f64,
    /// Rest before formation; [0, 1.2e6]. [L] (8 h)
    pub soak_time_s: f64,
    /// Cell and electrolyte temperature; [0, 60]. [C]
    pub temperature_degc: f64,
    /// Contact angle of the electrolyte on the electrodes; [0, 89]. [L] (< 30° for fast wetting)
    pub electrode_contact_angle_deg: f64,
    /// Wetting needed for release to formation; (0, 1]. [C]
    pub min_wetting_frac: f64,
    /// Lot sample interval; > 0. [E]
    pub sample_interval_s: f64,
    /// Integration step; > 0. The wetting is a closed form in t (exact at every sample), so
    /// nothing is stepped with it. [E]
    pub integration_step_s: f64,
}

impl Default for FillingParams {
    fn default() -> Self {
        Self {
            vacuum_pressure_pa: 100.0,
            ambient_pressure_pa: 101_325.0,
            fill_excess_frac: 0.08,
            dead_volume_m3: 3e-7,
            dosing_sigma_frac: 0.003,
            fill_tolerance_frac: 0.015,
            stations: 64,
            station_cycle_s: 60.0,
            soak_time_s: 28_800.0,
            temperature_degc: 25.0,
            electrode_contact_angle_deg: 20.0,
            min_wetting_frac: 0.98,
            sample_interval_s: 60.0,
            integration_step_s: 10.0,
        }
    }
}

impl StageParams for FillingParams {
    fn validate(&self) -> Result<(), ParamError> {
        check_range("vacuum_pressure_pa", self.vacuum_pressure_pa, 1.0, 9e4, "Pa")?;
        check_positive("ambient_pressure_pa", self.ambient_pressure_pa, "Pa")?;
        if self.ambient_pressure_pa <= self.vacuum_pressure_pa {
            return Err(ParamError {
                min: Some(self.vacuum_pressure_pa),
                ..ParamError::rule(
                    "ambient_pressure_pa",
                    self.ambient_pressure_pa,
                    "Pa",
                    format!("must be above vacuum_pressure_pa ({} Pa)", self.vacuum_pressure_pa),
                )
            });
        }
        check_range("fill_excess_frac", self.fill_excess_frac, -0.5, 1.0, "")?;
        check_non_negative("dead_volume_m3", self.dead_volume_m3, "m³")?;
        check_non_negative("dosing_sigma_frac", self.dosing_sigma_frac, "")?;
        check_non_negative("fill_tolerance_frac", self.fill_tolerance_frac, "")?;
        if self.stations < 1 {
            return Err(ParamError {
                field: "stations".into(),
                value: self.stations as f64,
                min: Some(1.0),
                max: None,
                unit: String::new(),
                rule: "must be at least 1".into(),
            });
        }
        check_positive("station_cycle_s", self.station_cycle_s, "s")?;
        check_range("soak_time_s", self.soak_time_s, 0.0, 1.2e6, "s")?;
        check_range("temperature_degc", self.temperature_degc, 0.0, 60.0, "°C")?;
        check_range("electrode_contact_angle_deg", self.electrode_contact_angle_deg, 0.0, 89.0, "°")?;
        check_open_min("min_wetting_frac", self.min_wetting_frac, 0.0, 1.0, "")?;
        check_positive("sample_interval_s", self.sample_interval_s, "s")?;
        check_positive("integration_step_s", self.integration_step_s, "s")
    }
}

// ---------------------------------------------------------------------------------------
// Physics (pure functions)
// ---------------------------------------------------------------------------------------

/// Target fill volume `V_target = (1 + excess)·V_pore + V_dead` (§9.2) [L].
#[inline]
pub fn target_volume_m3(pore_volume_m3: f64, fill_excess_frac: f64, dead_volume_m3: f64) -> f64 {
    (1.0 + fill_excess_frac) * pore_volume_m3 + dead_volume_m3
}

/// Saturation limit by volume `s_vol = min(1, (V_fill − V_dead)/V_pore)`, at least 0 (§9.2).
#[inline]
pub fn volume_saturation_limit(fill_volume_m3: f64, dead_volume_m3: f64, pore_volume_m3: f64) -> f64 {
    if pore_volume_m3 > 0.0 {
        ((fill_volume_m3 - dead_volume_m3) / pore_volume_m3).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Saturation limit by trapped gas: evacuated to p_vac, compressed by venting to p_atm
/// (Boyle) `s_gas = 1 − p_vac/p_atm` (§9.2).
#[inline]
pub fn gas_saturation_limit(vacuum_pressure_pa: f64, ambient_pressure_pa: f64) -> f64 {
    1.0 - vacuum_pressure_pa / ambient_pressure_pa
}

/// Electrolyte viscosity `μ(T) = μ₂₅·exp((E_a,μ/R)·(1/T_K − 1/298.15))` (§9.2) [C].
#[inline]
pub fn electrolyte_viscosity_pa_s(electrolyte: &Electrolyte, temperature_degc: f64) -> f64 {
    electrolyte.viscosity_pa_s / arrhenius(electrolyte.viscosity_activation_j_mol, temperature_degc)
}

/// Hydraulic pore radius of a packed electrode `r = ε·d₅₀/(6·(1 − ε))` (Kozeny–Carman) [L].
#[inline]
pub fn hydraulic_radius_m(porosity_frac: f64, d50_m: f64) -> f64 {
    if porosity_frac < 1.0 {
        porosity_frac * d50_m / (6.0 * (1.0 - porosity_frac))
    } else {
        f64::INFINITY
    }
}

/// Squared tortuosity `τ² = 1/ε` (Bruggeman) [L].
#[inline]
pub fn tortuosity_squared(porosity_frac: f64) -> f64 {
    if porosity_frac > 0.0 {
        1.0 / porosity_frac
    } else {
        f64::INFINITY
    }
}

/// Capillary pressure `p_c = 2·γ·cos θ/r` [L].
#[inline]
pub fn capillary_pressure_pa(surface_tension_n_m: f64, contact_angle_deg: f64, radius_m: f64) -> f64 {
    2.0 * surface_tension_n_m * contact_angle_deg.to_radians().cos() / radius_m
}

/// Lucas–Washburn coefficient with venting pressure `K = r²·(p_c + p_atm − p_vac)/(4·μ·τ²)`,
/// wetted length `l = √(K·t)` (Lucas 1918; Washburn 1921) [L]; 0 when a term is degenerate.
#[inline]
pub fn imbibition_coefficient_m2_s(radius_m: f64, driving_pressure_pa: f64, viscosity_pa_s: f64, tau_sq: f64) -> f64 {
    let k = radius_m * radius_m * driving_pressure_pa / (4.0 * viscosity_pa_s * tau_sq);
    if k.is_finite() && k > 0.0 {
        k
    } else {
        0.0
    }
}

/// Time to wet a strip of width W from both edges: `(W/2)²/K` (§9.2); ∞ when K = 0.
#[inline]
pub fn full_wetting_time_s(width_m: f64, coefficient_m2_s: f64) -> f64 {
    if coefficient_m2_s > 0.0 {
        (width_m / 2.0).powi(2) / coefficient_m2_s
    } else {
        f64::INFINITY
    }
}

/// Capillary imbibition of one component of the cell (§9.2).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ComponentWetting {
    /// Hydraulic pore radius r [m].
    pub hydraulic_radius_m: f64,
    /// Capillary pressure p_c [Pa].
    pub capillary_pressure_pa: f64,
    /// Lucas–Washburn coefficient K [m²/s].
    pub imbibition_coefficient_m2_s: f64,
    /// Wetted width W (wets from both edges) [m].
    pub width_m: f64,
    /// Full-wetting time (W/2)²/K [s].
    pub full_wetting_time_s: f64,
}

impl ComponentWetting {
    /// Imbibition into a porous strip of radius `r`, porosity `ε`, width `W`, contact angle θ.
    pub fn new(radius_m: f64, porosity_frac: f64, width_m: f64, contact_angle_deg: f64, env: &WettingEnv) -> Self {
        let pc = capillary_pressure_pa(ELECTROLYTE.surface_tension_n_m, contact_angle_deg, radius_m);
        let k = imbibition_coefficient_m2_s(
            radius_m,
            pc + env.venting_pressure_pa,
            env.viscosity_pa_s,
            tortuosity_squared(porosity_frac),
        );
        Self {
            hydraulic_radius_m: radius_m,
            capillary_pressure_pa: pc,
            imbibition_coefficient_m2_s: k,
            width_m,
            full_wetting_time_s: full_wetting_time_s(width_m, k),
        }
    }

    /// Wetted fraction per √s: `w_i = min(1, √(K·t)/(W/2)) = min(1, rate·√t)`.
    fn rate_per_sqrt_s(&self) -> f64 {
        if self.width_m > 0.0 {
            2.0 * self.imbibition_coefficient_m2_s.sqrt() / self.width_m
        } else {
            f64::INFINITY
        }
    }
}

/// Conditions of the filling line shared by all cells.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WettingEnv {
    /// Electrolyte viscosity at the filling temperature [Pa·s].
    pub viscosity_pa_s: f64,
    /// Venting pressure difference p_atm − p_vac [Pa].
    pub venting_pressure_pa: f64,
    /// Electrode contact angle [deg].
    pub electrode_contact_angle_deg: f64,
    /// Trapped-gas saturation limit s_gas.
    pub gas_saturation: f64,
}

impl WettingEnv {
    /// From the station settings.
    pub fn new(p: &FillingParams) -> Self {
        Self {
            viscosity_pa_s: electrolyte_viscosity_pa_s(&ELECTROLYTE, p.temperature_degc),
            venting_pressure_pa: p.ambient_pressure_pa - p.vacuum_pressure_pa,
            electrode_contact_angle_deg: p.electrode_contact_angle_deg,
            gas_saturation: gas_saturation_limit(p.vacuum_pressure_pa, p.ambient_pressure_pa),
        }
    }
}

/// Wetting of one cell: `w(t) = min(s_vol, s_gas, w_c, w_a, w_s)` (§9.2) [E], a closed form
/// `min(cap, rate·√t)` with t from the end of the cell's station cycle.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CellWetting {
    /// Cathode coating.
    pub cathode: ComponentWetting,
    /// Anode coating.
    pub anode: ComponentWetting,
    /// Separator.
    pub separator: ComponentWetting,
    /// Saturation limit by volume s_vol.
    pub volume_saturation: f64,
    /// Saturation limit by trapped gas s_gas.
    pub gas_saturation: f64,
    /// min(1, s_vol, s_gas).
    pub cap: f64,
    /// min over the components of 2√K_i/W_i [1/√s].
    pub rate_per_sqrt_s: f64,
}

impl CellWetting {
    /// The wetting law of `cell` filled with `fill_volume_m3` (dead volume `dead_volume_m3`).
    pub fn new(cell: &AssembledCell, fill_volume_m3: f64, dead_volume_m3: f64, env: &WettingEnv) -> Self {
        let electrode = |e: &crate::cell::CellElectrode| {
            ComponentWetting::new(
                hydraulic_radius_m(e.porosity_frac, e.d50_m),
                e.porosity_frac,
                e.width_m,
                env.electrode_contact_angle_deg,
                env,
            )
        };
        let cathode = electrode(&cell.cathode);
        let anode = electrode(&cell.anode);
        let separator = ComponentWetting::new(
            SEPARATOR.pore_radius_m,
            SEPARATOR.porosity_frac,
            cell.separator_width_m,
            SEPARATOR.contact_angle_deg,
            env,
        );
        let volume_saturation = volume_saturation_limit(fill_volume_m3, dead_volume_m3, cell.pore_volume_m3);
        let cap = volume_saturation.min(env.gas_saturation).clamp(0.0, 1.0);
        let rate = cathode.rate_per_sqrt_s().min(anode.rate_per_sqrt_s()).min(separator.rate_per_sqrt_s());
        Self {
            cathode,
            anode,
            separator,
            volume_saturation,
            gas_saturation: env.gas_saturation,
            cap,
            // Finite so that sums of rates stay finite (an instantly wetting cell saturates at t > 0).
            rate_per_sqrt_s: rate.min(1e100),
        }
    }

    /// Wetted fraction `t_s` after the station cycle (0 at t ≤ 0).
    #[inline]
    pub fn at(&self, t_s: f64) -> f64 {
        if t_s <= 0.0 {
            0.0
        } else {
            self.cap.min(self.rate_per_sqrt_s * t_s.sqrt())
        }
    }

    /// Time at which the wetting reaches its cap [s].
    #[inline]
    pub fn saturation_time_s(&self) -> f64 {
        if self.cap <= 0.0 {
            0.0
        } else if self.rate_per_sqrt_s > 0.0 {
            (self.cap / self.rate_per_sqrt_s).powi(2)
        } else {
            f64::INFINITY
        }
    }
}

// ---------------------------------------------------------------------------------------
// Samples and result
// ---------------------------------------------------------------------------------------

/// Check-weigher verdict of one fill (§9.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FillVerdict {
    /// Within tolerance.
    Pass,
    /// Below the target by more than the tolerance.
    Underfill,
    /// Above the target by more than the tolerance.
    Overfill,
}

impl FillVerdict {
    /// `"Pass"`, `"Underfill"` or `"Overfill"` (the legacy `"Defect Risk"` string).
    pub fn as_str(self) -> &'static str {
        match self {
            FillVerdict::Pass => "Pass",
            FillVerdict::Underfill => "Underfill",
            FillVerdict::Overfill => "Overfill",
        }
    }

    /// Verdict of a fill of `volume` against `target` with relative `tolerance`.
    pub fn of(volume_m3: f64, target_m3: f64, tolerance_frac: f64) -> Self {
        let ratio = if target_m3 > 0.0 { volume_m3 / target_m3 } else { 1.0 };
        if ratio - 1.0 < -tolerance_frac {
            FillVerdict::Underfill
        } else if ratio - 1.0 > tolerance_frac {
            FillVerdict::Overfill
        } else {
            FillVerdict::Pass
        }
    }
}

/// A traced cell in a lot sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TracedCell {
    /// Cell id.
    pub cell_id: String,
    /// Wetted fraction now (0 before filling or when not filled).
    pub wetting_frac: f64,
    /// V_fill/V_pore (0 before filling).
    pub fill_ratio_frac: f64,
    /// Wetted pore volume w·V_pore [m³].
    pub wetted_pore_volume_m3: f64,
}

/// One lot sample of the filling line (§9.3), every `sample_interval_s`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FillingSample {
    /// Plant time [s].
    pub t_s: f64,
    /// Stage time [s].
    pub stage_time_s: f64,
    /// Cells that left their station.
    pub cells_filled: u32,
    /// Filled cells still soaking.
    pub cells_soaking: u32,
    /// Station vacuum [Pa].
    pub vacuum_pressure_pa: Reading,
    /// Fill volume of the last filled cell (check-weigher mass / density) [m³].
    pub last_fill_volume_m3: Option<Reading>,
    /// Electrolyte mass of the last filled cell (check-weigher) [kg].
    pub last_fill_mass_kg: Option<Reading>,
    /// Target volume of the last filled cell [m³].
    pub last_target_volume_m3: Option<f64>,
    /// Verdict of the last filled cell.
    pub last_fill_verdict: Option<FillVerdict>,
    /// Mean wetted fraction of the filled cells (0 before the first).
    pub mean_wetting_frac: f64,
    /// The traced cells (first cell of lanes 0, 2, 4, 6).
    pub traced: Vec<TracedCell>,
    /// Underfilled cells so far.
    pub underfill_count: u32,
    /// Overfilled cells so far.
    pub overfill_count: u32,
    /// Station cycle, echoed for the legacy `"Vacuum Filling"` key [s].
    pub station_cycle_s: f64,
    /// Soak time, echoed for the legacy `"Soaking Time"` key [s].
    pub soak_time_s: f64,
    /// Electrolyte density, echoed for the legacy `"Electrolyte Density"` key [kg/m³].
    pub electrolyte_density_kg_m3: f64,
    /// A Warning-or-worse alarm is active, or the last fill failed the check-weigher.
    pub defect_risk: bool,
    /// Fault labels active on the sample.
    pub fault_labels: Vec<u32>,
}

impl SampleRecord for FillingSample {
    fn stage_time_s(&self) -> f64 {
        self.stage_time_s
    }

    /// §9.4 in order; cm³ where the key says so; `null` before the first fill.
    fn legacy(&self, out: &mut LegacyRecord) {
        let opt = |v: Option<f64>| v.and_then(serde_json::Number::from_f64).map_or(serde_json::Value::Null, Into::into);
        put(out, "Vacuum Level", self.vacuum_pressure_pa.value());
        put(out, "Vacuum Filling", self.station_cycle_s);
        put(out, "Soaking Time", self.soak_time_s);
        put_value(out, "Volume Electrolyte_cm3", opt(self.last_fill_volume_m3.map(|r| r.value() * 1e6)));
        put(out, "Electrolyte Density", self.electrolyte_density_kg_m3);
        put_value(out, "Total Volume", opt(self.last_target_volume_m3.map(|v| v * 1e6)));
        put(out, "Wetness", self.mean_wetting_frac);
        put_value(out, "Filling Volume", opt(self.traced.first().map(|c| c.wetted_pore_volume_m3 * 1e6)));
        put_value(out, "Defect Risk", self.last_fill_verdict.map_or(serde_json::Value::Null, |v| v.as_str().into()));
    }
}

/// The wetting of the reference cell (the first filled cell; all cells of the default lot
/// are nominal).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReferenceCell {
    /// Cell id.
    pub cell_id: String,
    /// Pore volume [m³].
    pub pore_volume_m3: f64,
    /// Target volume [m³].
    pub target_volume_m3: f64,
    /// Dosed volume [m³].
    pub fill_volume_m3: f64,
    /// Electrolyte mass [kg].
    pub electrolyte_mass_kg: f64,
    /// Wetting law, with radii, coefficients and full-wetting times per component.
    pub wetting: CellWetting,
    /// Wetting at release.
    pub wetting_frac: f64,
}

/// Final result of filling for one lot (§9.3). The cells themselves are the stage output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FillingResult {
    /// Cells received.
    pub cells_in: u32,
    /// Cells filled.
    pub cells_filled: u32,
    /// Cells received already rejected (not filled).
    pub cells_skipped: u32,
    /// Underfilled cells (rejected).
    pub underfill_count: u32,
    /// Overfilled cells (rejected).
    pub overfill_count: u32,
    /// Cells released below `min_wetting_frac` (plating risk).
    pub incomplete_wetting_count: u32,
    /// Mean dosed volume of the filled cells [m³].
    pub mean_fill_volume_m3: f64,
    /// Mean electrolyte mass of the filled cells [kg].
    pub mean_electrolyte_mass_kg: f64,
    /// Mean V_fill/V_pore of the filled cells.
    pub mean_fill_ratio_frac: f64,
    /// Mean wetting at release of the filled cells.
    pub mean_wetting_frac: f64,
    /// Lowest wetting at release.
    pub min_wetting_frac: f64,
    /// The reference cell's wetting (full-wetting time per component).
    pub reference: Option<ReferenceCell>,
    /// Lot duration ⌈N/stations⌉·cycle + soak [s].
    pub duration_s: f64,
    /// The last lot sample (its values are the `"Final Properties"`).
    pub final_sample: FillingSample,
    /// Every alarm event of the run.
    pub alarms: Vec<Alarm>,
    /// At least one filled cell passed and no Critical alarm (a rejected cell does not reject
    /// the lot).
    pub accepted: bool,
}

impl ResultRecord for FillingResult {
    fn legacy(&self, out: &mut LegacyRecord) {
        put_object(out, "Final Properties", |o| self.final_sample.legacy(o));
    }

    fn accepted(&self) -> bool {
        self.accepted
    }

    fn summary(&self) -> Vec<(&'static str, f64)> {
        let sep = self.reference.as_ref().map_or(0.0, |r| r.wetting.separator.full_wetting_time_s);
        vec![
            ("cells filled", self.cells_filled as f64),
            ("V_fill mL", self.mean_fill_volume_m3 * 1e6),
            ("electrolyte g", self.mean_electrolyte_mass_kg * 1e3),
            ("wetting", self.mean_wetting_frac),
            ("separator wetting s", sep),
            ("rejected", (self.underfill_count + self.overfill_count) as f64),
        ]
    }
}

// ---------------------------------------------------------------------------------------
// The stage
// ---------------------------------------------------------------------------------------

/// Electrolyte filling (MODELS.md §9).
pub struct Filling;

/// One filled cell: what the samples and alarms need.
#[derive(Clone, Debug)]
struct Fill {
    /// Fault labels of the fill (F10).
    labels: Vec<u32>,
    /// Index in the lot.
    cell: usize,
    /// Stage time at which it left its station [s].
    done_s: f64,
    target_m3: f64,
    volume: Reading,
    mass: Reading,
    verdict: FillVerdict,
    wetting: CellWetting,
    released_wetting: f64,
}

/// Filled cells of one station cycle, sorted by saturation time, for the lot mean.
struct StationGroup {
    done_s: f64,
    saturation_s: Vec<f64>,
    /// Σ cap of the first i cells.
    cap_prefix: Vec<f64>,
    /// Σ rate of the cells from i on.
    rate_suffix: Vec<f64>,
}

impl StationGroup {
    fn new(done_s: f64, fills: &[Fill]) -> Self {
        let mut v: Vec<(f64, f64, f64)> =
            fills.iter().map(|f| (f.wetting.saturation_time_s(), f.wetting.cap, f.wetting.rate_per_sqrt_s)).collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut cap_prefix = Vec::with_capacity(v.len() + 1);
        cap_prefix.push(0.0);
        for x in &v {
            cap_prefix.push(cap_prefix.last().copied().unwrap_or(0.0) + x.1);
        }
        let mut rate_suffix = vec![0.0; v.len() + 1];
        for i in (0..v.len()).rev() {
            rate_suffix[i] = rate_suffix[i + 1] + v[i].2;
        }
        Self { done_s, saturation_s: v.iter().map(|x| x.0).collect(), cap_prefix, rate_suffix }
    }

    /// Σ w over the group `t` after the cycle (clamped to the soak: the value at release is
    /// the one handed on).
    fn wetting_sum(&self, t_s: f64) -> f64 {
        if t_s <= 0.0 {
            return 0.0;
        }
        let n = self.saturation_s.partition_point(|&s| s <= t_s);
        self.cap_prefix[n] + t_s.sqrt() * self.rate_suffix[n]
    }
}

/// A per-cell alarm waiting for its time.
#[derive(Clone, Copy, Debug)]
struct PendingAlarm {
    t_s: f64,
    fill: usize,
    wetting: bool,
}

/// Doses, weighs and judges every cell that assembly did not reject (§9.2), in lot order.
fn dose_cells(params: &FillingParams, input: &[AssembledCell], env: &WettingEnv, ctx: &StageCtx<'_>) -> Vec<Fill> {
    let rho = ELECTROLYTE.density_kg_m3;
    let stations = params.stations.max(1) as usize;
    let mut fills: Vec<Fill> = Vec::with_capacity(input.len());
    for (i, cell) in input.iter().enumerate().filter(|(_, c)| c.reject_reason.is_none()) {
        let target = target_volume_m3(cell.pore_volume_m3, params.fill_excess_frac, params.dead_volume_m3);
        let xi = if ctx.process_variability {
            normal(&mut stream(ctx.stream_seed, &[Purpose::Process as u64, i as u64]))
        } else {
            0.0
        };
        let volume_ok = (target * (1.0 + params.dosing_sigma_frac * xi)).max(0.0);
        let done_s = (fills.len() / stations + 1) as f64 * params.station_cycle_s;
        // F10 (MODELS.md §13): short dosing or a leaking vacuum on the cells of the fault
        let (mut volume_true, mut shown_volume, mut leak, mut labels) = (volume_ok, volume_ok, None, Vec::new());
        for f in ctx.faults.of(FaultCode::F10FillUnderfill) {
            if !f.spec.contains(i as f64) {
                continue;
            }
            let m = &f.spec.magnitude;
            if m.mode.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("vacuum_leak")) {
                leak = Some(m.vacuum_pressure_pa.unwrap_or(2e4));
            } else {
                volume_true *= m.fill_factor.unwrap_or(0.85);
                if f.spec.sensor_visible {
                    shown_volume = volume_true;
                }
            }
            labels.push(f.label_id);
            ctx.faults.touch(
                f.label_id,
                At {
                    stage_time_s: done_s,
                    lane: Some(cell.genealogy.lane),
                    cell_id: Some(&cell.genealogy.cell_id),
                    ..At::default()
                },
            );
        }
        let mass = if ctx.sensor_noise {
            let mut rng = stream(ctx.stream_seed, &[Purpose::Sensor as u64, i as u64]);
            let r = CHECK_WEIGHER.measure(rho * shown_volume, true, &mut rng);
            Reading { true_value: rho * volume_true, measured: r.measured }
        } else {
            Reading { true_value: rho * volume_true, measured: Some(rho * shown_volume) }
        };
        let volume = Reading { true_value: volume_true, measured: mass.measured.map(|m| m / rho) };
        let leaky_env;
        let env = match leak {
            Some(p_vac) => {
                leaky_env = WettingEnv {
                    venting_pressure_pa: (params.ambient_pressure_pa - p_vac).max(0.0),
                    gas_saturation: gas_saturation_limit(
                        p_vac.min(params.ambient_pressure_pa),
                        params.ambient_pressure_pa,
                    ),
                    ..*env
                };
                &leaky_env
            }
            None => env,
        };
        let wetting = CellWetting::new(cell, volume_true, params.dead_volume_m3, env);
        fills.push(Fill {
            labels,
            cell: i,
            done_s,
            target_m3: target,
            volume,
            mass,
            verdict: FillVerdict::of(volume.value(), target, params.fill_tolerance_frac),
            released_wetting: wetting.at(params.soak_time_s),
            wetting,
        });
    }
    fills
}

/// Records one per-cell alarm of §9.3 at its time.
fn record_cell_alarm(
    tracker: &mut AlarmTracker,
    alarm: &PendingAlarm,
    fill: &Fill,
    id: &Genealogy,
    params: &FillingParams,
) {
    let scope = AlarmScope { position_m: None, lane: Some(id.lane), cell_id: Some(id.cell_id.clone()) };
    if alarm.wetting {
        let message = format!("{}: wetting {:.4} at release", id.cell_id, fill.released_wetting);
        let (value, limit) = (fill.released_wetting, params.min_wetting_frac);
        tracker.once(
            alarm.t_s,
            "FILL_INCOMPLETE_WETTING",
            Severity::Alarm,
            "wetting_frac",
            value,
            limit,
            scope,
            message,
        );
        return;
    }
    let ratio = if fill.target_m3 > 0.0 { fill.volume.value() / fill.target_m3 } else { 1.0 };
    let (code, threshold) = match fill.verdict {
        FillVerdict::Underfill => ("FILL_UNDERFILL", 1.0 - params.fill_tolerance_frac),
        _ => ("FILL_OVERFILL", 1.0 + params.fill_tolerance_frac),
    };
    let message =
        format!("{}: fill {:.3} mL, {:+.2} % off target", id.cell_id, fill.volume.value() * 1e6, (ratio - 1.0) * 100.0);
    tracker.once(alarm.t_s, code, Severity::Alarm, "fill_volume_ratio", ratio, threshold, scope, message);
}

/// The filled cell handed to formation (§9.2): the wetting at the end of its soak; a
/// check-weigher failure rejects it, incomplete wetting flags plating risk. A cell that was
/// not filled passes unchanged with no electrolyte.
fn hand_off(mut cell: AssembledCell, fill: Option<&Fill>, params: &FillingParams) -> FilledCell {
    let Some(fill) = fill else {
        return FilledCell {
            electrolyte_mass_kg: 0.0,
            electrolyte_volume_m3: 0.0,
            fill_ratio_frac: 0.0,
            wetting_frac: 0.0,
            soak_time_s: 0.0,
            mass_kg: cell.mass_kg,
            water_mass_kg: cell.water_mass_kg,
            assembled: cell,
        };
    };
    let volume = fill.volume.true_value;
    let electrolyte_kg = ELECTROLYTE.density_kg_m3 * volume;
    cell.genealogy.fault_labels.extend(&fill.labels);
    cell.genealogy.fault_labels.sort_unstable();
    cell.genealogy.fault_labels.dedup();
    match fill.verdict {
        FillVerdict::Underfill => cell.reject_reason = Some("FILL_UNDERFILL".into()),
        FillVerdict::Overfill => cell.reject_reason = Some("FILL_OVERFILL".into()),
        FillVerdict::Pass => cell.plating_risk |= fill.released_wetting < params.min_wetting_frac,
    }
    FilledCell {
        electrolyte_mass_kg: electrolyte_kg,
        electrolyte_volume_m3: volume,
        fill_ratio_frac: if cell.pore_volume_m3 > 0.0 { volume / cell.pore_volume_m3 } else { 0.0 },
        wetting_frac: fill.released_wetting,
        soak_time_s: params.soak_time_s,
        mass_kg: cell.mass_kg + electrolyte_kg,
        water_mass_kg: cell.water_mass_kg + electrolyte_kg * ELECTROLYTE.water_mass_frac,
        assembled: cell,
    }
}

impl Stage for Filling {
    const KIND: StageKind = StageKind::ElectrolyteFilling;
    type Params = FillingParams;
    type Input = Vec<AssembledCell>;
    type Output = Vec<FilledCell>;
    type Sample = FillingSample;
    type Result = FillingResult;
    type MachineState = ();

    fn run(
        params: &FillingParams,
        input: Vec<AssembledCell>,
        _machine: &mut (),
        ctx: &mut StageCtx<'_>,
        sink: &mut dyn StageSink<FillingSample>,
    ) -> StageRun<Vec<FilledCell>, FillingResult> {
        let mut tracker = AlarmTracker::new(Self::KIND, ctx.line, ctx.start_t_s);
        let env = WettingEnv::new(params);
        let rho = ELECTROLYTE.density_kg_m3;
        let stations = params.stations.max(1) as usize;
        let cycle = params.station_cycle_s;
        let soak = params.soak_time_s;

        let fills = dose_cells(params, &input, &env, ctx);
        let n_filled = fills.len();
        let duration_s = if n_filled == 0 { 0.0 } else { n_filled.div_ceil(stations) as f64 * cycle + soak };

        // Lot aggregates: station groups, prefix counts of verdicts.
        let groups: Vec<StationGroup> = fills.chunks(stations).map(|g| StationGroup::new(g[0].done_s, g)).collect();
        let mut under_before = vec![0u32; n_filled + 1];
        let mut over_before = vec![0u32; n_filled + 1];
        for (f, fill) in fills.iter().enumerate() {
            under_before[f + 1] = under_before[f] + (fill.verdict == FillVerdict::Underfill) as u32;
            over_before[f + 1] = over_before[f] + (fill.verdict == FillVerdict::Overfill) as u32;
        }
        let filled_by = |t: f64| -> usize {
            if t < 0.0 {
                0
            } else {
                (((t / cycle) + 1e-9).floor() as usize).saturating_mul(stations).min(n_filled)
            }
        };
        let fill_of_cell: Vec<Option<usize>> = {
            let mut v = vec![None; input.len()];
            for (f, fill) in fills.iter().enumerate() {
                v[fill.cell] = Some(f);
            }
            v
        };
        let traced: Vec<usize> =
            TRACED_LANES.iter().filter_map(|&lane| input.iter().position(|c| c.genealogy.lane == lane)).collect();

        // Per-cell alarms (§9.3), in time order: verdicts when the cell leaves its station,
        // incomplete wetting when it is released.
        let mut pending: Vec<PendingAlarm> = Vec::new();
        for (f, fill) in fills.iter().enumerate() {
            if fill.verdict != FillVerdict::Pass {
                pending.push(PendingAlarm { t_s: fill.done_s, fill: f, wetting: false });
            }
        }
        for (f, fill) in fills.iter().enumerate() {
            if fill.verdict == FillVerdict::Pass && fill.released_wetting < params.min_wetting_frac {
                pending.push(PendingAlarm { t_s: fill.done_s + soak, fill: f, wetting: true });
            }
        }
        pending.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        let mut next_pending = 0;

        let mut last_sample: Option<FillingSample> = None;
        for stage_t in sample_times(duration_s, params.sample_interval_s) {
            let first_new = tracker.len();
            while next_pending < pending.len() && pending[next_pending].t_s <= stage_t + 1e-9 {
                let a = pending[next_pending];
                let fill = &fills[a.fill];
                record_cell_alarm(&mut tracker, &a, fill, &input[fill.cell].genealogy, params);
                next_pending += 1;
            }
            let vacuum = VACUUM_SENSOR.measure(params.vacuum_pressure_pa, ctx.sensor_noise, ctx.sensor_rng);
            let vacuum = ctx.faults.corrupt("vacuum_pressure_pa", stage_t, vacuum);
            tracker.high(
                stage_t,
                "FILL_VACUUM_POOR",
                Severity::Warning,
                "vacuum_pressure_pa",
                vacuum.value(),
                VACUUM_POOR_FACTOR * params.vacuum_pressure_pa,
                AlarmScope::default(),
                || format!("station vacuum {:.0} Pa", vacuum.value()),
            );
            for e in &tracker.events[first_new..] {
                sink.alarm(e);
            }

            let done = filled_by(stage_t);
            let last = done.checked_sub(1).map(|f| &fills[f]);
            let wetting_sum: f64 = groups
                .iter()
                .take_while(|g| g.done_s <= stage_t + 1e-9)
                .map(|g| g.wetting_sum((stage_t - g.done_s).min(soak)))
                .sum();
            let traced_now = traced
                .iter()
                .map(|&i| {
                    let cell = &input[i];
                    let fill = fill_of_cell[i].map(|f| &fills[f]).filter(|f| f.done_s <= stage_t + 1e-9);
                    let (w, ratio) = fill.map_or((0.0, 0.0), |f| {
                        let ratio =
                            if cell.pore_volume_m3 > 0.0 { f.volume.true_value / cell.pore_volume_m3 } else { 0.0 };
                        (f.wetting.at((stage_t - f.done_s).min(soak)), ratio)
                    });
                    TracedCell {
                        cell_id: cell.genealogy.cell_id.clone(),
                        wetting_frac: w,
                        fill_ratio_frac: ratio,
                        wetted_pore_volume_m3: w * cell.pore_volume_m3,
                    }
                })
                .collect();
            let sample = FillingSample {
                t_s: ctx.start_t_s + stage_t,
                stage_time_s: stage_t,
                cells_filled: done as u32,
                cells_soaking: (done - filled_by(stage_t - soak).min(done)) as u32,
                vacuum_pressure_pa: vacuum,
                last_fill_volume_m3: last.map(|f| f.volume),
                last_fill_mass_kg: last.map(|f| f.mass),
                last_target_volume_m3: last.map(|f| f.target_m3),
                last_fill_verdict: last.map(|f| f.verdict),
                mean_wetting_frac: if done > 0 { wetting_sum / done as f64 } else { 0.0 },
                traced: traced_now,
                underfill_count: under_before[done],
                overfill_count: over_before[done],
                station_cycle_s: cycle,
                soak_time_s: soak,
                electrolyte_density_kg_m3: rho,
                defect_risk: tracker.any_active(Severity::Warning)
                    || last.is_some_and(|f| f.verdict != FillVerdict::Pass),
                fault_labels: {
                    let mut l = ctx.faults.labels_at(stage_t, None);
                    l.extend(last.iter().flat_map(|f| f.labels.iter().copied()));
                    l
                },
            };
            sink.sample(sample.clone());
            last_sample = Some(sample);
        }

        // Hand-off (§9.2): the value at the end of the soak.
        let cells_in = input.len() as u32;
        let output: Vec<FilledCell> = input
            .into_iter()
            .enumerate()
            .map(|(i, cell)| hand_off(cell, fill_of_cell[i].map(|f| &fills[f]), params))
            .collect();
        let mean_over = |v: &dyn Fn(&Fill) -> f64| {
            if n_filled == 0 {
                0.0
            } else {
                fills.iter().map(v).sum::<f64>() / n_filled as f64
            }
        };
        let reference = fills.first().map(|fill| {
            let cell = &output[fill.cell];
            ReferenceCell {
                cell_id: cell.assembled.genealogy.cell_id.clone(),
                pore_volume_m3: cell.assembled.pore_volume_m3,
                target_volume_m3: fill.target_m3,
                fill_volume_m3: fill.volume.true_value,
                electrolyte_mass_kg: cell.electrolyte_mass_kg,
                wetting: fill.wetting,
                wetting_frac: fill.released_wetting,
            }
        });
        let underfill = under_before[n_filled];
        let overfill = over_before[n_filled];
        let result = FillingResult {
            cells_in,
            cells_filled: n_filled as u32,
            cells_skipped: cells_in - n_filled as u32,
            underfill_count: underfill,
            overfill_count: overfill,
            incomplete_wetting_count: fills
                .iter()
                .filter(|f| f.verdict == FillVerdict::Pass && f.released_wetting < params.min_wetting_frac)
                .count() as u32,
            mean_fill_volume_m3: mean_over(&|f| f.volume.true_value),
            mean_electrolyte_mass_kg: mean_over(&|f| rho * f.volume.true_value),
            mean_fill_ratio_frac: mean_over(&|f| {
                let v = output[f.cell].assembled.pore_volume_m3;
                if v > 0.0 {
                    f.volume.true_value / v
                } else {
                    0.0
                }
            }),
            mean_wetting_frac: mean_over(&|f| f.released_wetting),
            min_wetting_frac: if n_filled == 0 {
                0.0
            } else {
                fills.iter().map(|f| f.released_wetting).fold(f64::INFINITY, f64::min)
            },
            reference,
            duration_s,
            final_sample: last_sample.expect("sample_times always yields the end sample"),
            accepted: (n_filled as u32) > underfill + overfill && !tracker.any_raised(Severity::Critical),
            alarms: tracker.events,
        };
        StageRun { output, result, duration_s }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hydraulic_radii_follow_kozeny_carman() {
        assert!((hydraulic_radius_m(0.3006, 10e-6) * 1e6 - 0.716).abs() < 0.001);
        assert!((hydraulic_radius_m(0.3190, 15e-6) * 1e6 - 1.171).abs() < 0.001);
        assert!(hydraulic_radius_m(1.0, 10e-6).is_infinite());
    }

    #[test]
    fn viscosity_rises_when_cold() {
        assert!((electrolyte_viscosity_pa_s(&ELECTROLYTE, 25.0) - 4e-3).abs() < 1e-15);
        assert!(electrolyte_viscosity_pa_s(&ELECTROLYTE, 10.0) > 4e-3);
        assert!(electrolyte_viscosity_pa_s(&ELECTROLYTE, 45.0) < 4e-3);
    }

    #[test]
    fn verdicts_use_the_tolerance_band() {
        assert_eq!(FillVerdict::of(0.98, 1.0, 0.015), FillVerdict::Underfill);
        assert_eq!(FillVerdict::of(1.01, 1.0, 0.015), FillVerdict::Pass);
        assert_eq!(FillVerdict::of(1.02, 1.0, 0.015), FillVerdict::Overfill);
        assert_eq!(FillVerdict::Overfill.as_str(), "Overfill");
    }

    #[test]
    fn saturation_limits() {
        assert!((gas_saturation_limit(100.0, 101_325.0) - 0.99901).abs() < 1e-5);
        assert_eq!(volume_saturation_limit(6.5e-6, 3e-7, 5.739e-6), 1.0);
        assert!((volume_saturation_limit(5.0e-6, 3e-7, 5.0e-6) - 0.94).abs() < 1e-12);
        assert_eq!(volume_saturation_limit(1e-7, 3e-7, 5.0e-6), 0.0);
        assert_eq!(volume_saturation_limit(1e-7, 3e-7, 0.0), 0.0);
    }

    #[test]
    fn full_wetting_time_is_infinite_without_flow() {
        assert!(full_wetting_time_s(0.06, 0.0).is_infinite());
        assert!((full_wetting_time_s(0.06, 1e-6) - 900.0).abs() < 1e-9);
        assert_eq!(imbibition_coefficient_m2_s(1e-6, 1e5, 4e-3, f64::INFINITY), 0.0);
    }
}
