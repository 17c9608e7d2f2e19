//! Calendaring: compress the dry coating between heated rolls to the target porosity and
//! thickness (MODELS.md §4). `DryElectrode` in, `CalenderedElectrode` out; samples every
//! `sample_interval_s`.
//!
//! Every grid cell goes through the nip once, when its segment reaches the rolls: force
//! (line-load) control sets the porosity by the Meyer et al. (2017) compaction law, gap control
//! sets the thickness and the porosity follows from the volume balance. Al foil elongates, so
//! the calendered web is `length_scale = 1 + e_f` times longer and its areal mass per m² is
//! `m_A/(1 + e_f)`. At stage time t the nip is at calendered position `x = v·t`, i.e. coating
//! position `x/length_scale`.
//!
//! A segment is calendered, written to the grids and judged (worst coated CD cell) when its
//! leading edge reaches the nip; uncoated streak cells are passed through and not judged.
//!
//! Process variability: none in this stage (no draws on the process stream). Sensor draws per
//! sample, in field order: line load, post-nip thickness gauge, roll temperature, speed.

use crate::alarm::{AlarmScope, AlarmTracker, Severity, HYSTERESIS_FRAC};
use crate::error::{check_non_negative, check_open_min, check_positive, check_range, ParamError};
use crate::fault::{At, FaultCode};
use crate::legacy::{put, put_object, put_value, LegacyRecord};
use crate::reading::{Reading, Sensor};
use crate::stage::{
    sample_times, ResultRecord, SampleRecord, Stage, StageCtx, StageKind, StageParams, StageRun, StageSink,
};
use crate::stages::drying::DryElectrode;
use crate::web::{SegmentFlags, WebGrid};
use crate::Alarm;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The calendered roll (MODELS.md §0.9). Areal masses here are per m² of the calendered,
/// elongated electrode (m_A' = m_A/(1 + e_f)); every downstream areal mass is this one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalenderedElectrode {
    /// The dried roll (its grids keep the uncalendered state).
    pub dry: DryElectrode,
    /// Local length per coating length (1 + foil elongation).
    pub length_scale: f64,
    /// Calendered areal mass per side [kg/m²].
    pub areal_mass_kg_m2: WebGrid,
    /// Calendered set-point areal mass per side [kg/m²].
    pub nominal_areal_mass_kg_m2: f64,
    /// Porosity after the nip and springback.
    pub porosity_frac: WebGrid,
    /// Coating thickness per side [m].
    pub coating_thickness_m: WebGrid,
    /// Electrode thickness (both coatings + foil) [m].
    pub electrode_thickness_m: WebGrid,
    /// Set-point porosity.
    pub nominal_porosity_frac: f64,
    /// Set-point coating thickness per side [m].
    pub nominal_coating_thickness_m: f64,
    /// Set-point electrode thickness [m].
    pub nominal_electrode_thickness_m: f64,
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

/// How the calender is controlled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CalenderMode {
    /// Force control (hydraulic): the line load is set, the thickness follows the loading.
    LineLoad,
    /// Gap control: the loaded gap is set, the porosity follows the loading.
    Gap,
}

/// Calender settings for one line. Defaults: MODELS.md §4.1. The compaction constants (ε_min,
/// γ_c, β_T, T_ref, s_b) belong to the recipe, the elongation to the foil.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendaringParams {
    /// Force (`line_load`) or gap (`gap`) control. [E]
    pub control_mode: CalenderMode,
    /// Roll force per coated width (260 / 570 N/mm), used in line-load mode; [0, 5e6]. [C]
    pub line_load_n_m: f64,
    /// Loaded roll gap, used in gap mode; (0, 2e-3]. [C]
    pub roll_gap_m: f64,
    /// Roll diameter; [0.05, 2]. [C]
    pub roll_diameter_m: f64,
    /// Roll surface temperature; [15, 160]. [C]
    pub roll_temperature_degc: f64,
    /// Web speed in the nip (no effect on porosity up to 5 m/min, Meyer et al. 2017); [0.01, 3]. [L]
    pub calender_speed_m_s: f64,
    /// Machine limit of the line load; > 0. [C]
    pub max_line_load_n_m: f64,
    /// Absolute porosity band around the nominal; (0, 0.2]. [C]
    pub porosity_tolerance_frac: f64,
    /// Drive base power while running; ≥ 0. [C]
    pub drive_base_power_w: f64,
    /// Roll heating power while running; ≥ 0. [C]
    pub roll_heating_power_w: f64,
    /// Sample interval; (0, 600]. [E]
    pub sample_interval_s: f64,
}

impl CalendaringParams {
    /// Graphite anode: 260 N/mm (gap 171 µm in gap mode).
    pub fn anode() -> Self {
        Self {
            control_mode: CalenderMode::LineLoad,
            line_load_n_m: 2.6e5,
            roll_gap_m: 1.71e-4,
            roll_diameter_m: 0.5,
            roll_temperature_degc: 80.0,
            calender_speed_m_s: 0.7,
            max_line_load_n_m: 2.0e6,
            porosity_tolerance_frac: 0.02,
            drive_base_power_w: 15000.0,
            roll_heating_power_w: 10000.0,
            sample_interval_s: 2.0,
        }
    }

    /// NMC811 cathode: 570 N/mm (gap 139.3 µm in gap mode).
    pub fn cathode() -> Self {
        Self { line_load_n_m: 5.7e5, roll_gap_m: 1.393e-4, ..Self::anode() }
    }
}

impl Default for CalendaringParams {
    fn default() -> Self {
        Self::cathode()
    }
}

impl StageParams for CalendaringParams {
    fn validate(&self) -> Result<(), ParamError> {
        check_range("line_load_n_m", self.line_load_n_m, 0.0, 5e6, "N/m")?;
        check_open_min("roll_gap_m", self.roll_gap_m, 0.0, 2e-3, "m")?;
        check_range("roll_diameter_m", self.roll_diameter_m, 0.05, 2.0, "m")?;
        check_range("roll_temperature_degc", self.roll_temperature_degc, 15.0, 160.0, "°C")?;
        check_range("calender_speed_m_s", self.calender_speed_m_s, 0.01, 3.0, "m/s")?;
        check_positive("max_line_load_n_m", self.max_line_load_n_m, "N/m")?;
        check_open_min("porosity_tolerance_frac", self.porosity_tolerance_frac, 0.0, 0.2, "")?;
        check_non_negative("drive_base_power_w", self.drive_base_power_w, "W")?;
        check_non_negative("roll_heating_power_w", self.roll_heating_power_w, "W")?;
        check_open_min("sample_interval_s", self.sample_interval_s, 0.0, 600.0, "s")?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Physics (MODELS.md §4.2)
// ---------------------------------------------------------------------------------------------

/// Compaction resistance at the roll temperature `γ_c(T) = γ_c,ref·exp(−β_T·(T_roll − T_ref))`
/// (MODELS.md §4.2) [N/m]: warmer rolls soften the binder.
pub fn compaction_resistance_n_m(
    resistance_ref_n_m: f64,
    temp_coeff_per_k: f64,
    roll_temperature_degc: f64,
    ref_temperature_degc: f64,
) -> f64 {
    resistance_ref_n_m * (-temp_coeff_per_k * (roll_temperature_degc - ref_temperature_degc)).exp()
}

/// Line load with roll eccentricity `q_L(t) = q_set·(1 + e·sin(2π·v·t/(π·D) + φ))` (MODELS.md
/// §4.2; e = 0 unless fault F06) [N/m].
pub fn line_load_n_m(
    set_point_n_m: f64,
    eccentricity_frac: f64,
    speed_m_s: f64,
    time_s: f64,
    roll_diameter_m: f64,
    phase: f64,
) -> f64 {
    if eccentricity_frac == 0.0 {
        return set_point_n_m;
    }
    let angle = 2.0 * std::f64::consts::PI * speed_m_s * time_s / (std::f64::consts::PI * roll_diameter_m) + phase;
    set_point_n_m * (1.0 + eccentricity_frac * angle.sin())
}

/// Porosity after the nip and springback (Meyer et al. 2017, J. Mater. Process. Technol.
/// 249:172; MODELS.md §4.2): `ε = ε_min + (ε_dry − ε_min)·exp(−q_L/γ_c)`, never above ε_dry.
pub fn porosity_after_nip(
    dry_porosity_frac: f64,
    min_porosity_frac: f64,
    line_load_n_m: f64,
    resistance_n_m: f64,
) -> f64 {
    let eps = min_porosity_frac + (dry_porosity_frac - min_porosity_frac) * (-line_load_n_m / resistance_n_m).exp();
    eps.min(dry_porosity_frac)
}

/// Line load needed to reach porosity ε (inverse Meyer law) `q_L = γ_c·ln((ε_dry − ε_min)/(ε − ε_min))` [N/m].
pub fn line_load_for_porosity(
    dry_porosity_frac: f64,
    min_porosity_frac: f64,
    porosity_frac: f64,
    resistance_n_m: f64,
) -> f64 {
    resistance_n_m * ((dry_porosity_frac - min_porosity_frac) / (porosity_frac - min_porosity_frac)).ln()
}

/// Coating thickness per side from the volume balance `h_c = m_A'/(ρ_solid·(1 − ε))` [m].
pub fn coating_thickness_m(areal_mass_kg_m2: f64, solid_density_kg_m3: f64, porosity_frac: f64) -> f64 {
    areal_mass_kg_m2 / (solid_density_kg_m3 * (1.0 - porosity_frac))
}

/// Nip contact (arc) length `l_c = √(R_roll·(h_dry − h_nip))` (0 without compression) [m].
pub fn nip_contact_length_m(roll_radius_m: f64, dry_thickness_m: f64, nip_thickness_m: f64) -> f64 {
    (roll_radius_m * (dry_thickness_m - nip_thickness_m).max(0.0)).sqrt()
}

/// Porosity reachable in gap mode at most this far above ε_min (`CAL_LINE_LOAD_LIMIT`).
pub const GAP_POROSITY_MARGIN_FRAC: f64 = 0.001;

/// Everything about the nip that is the same for every grid cell of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Nip {
    /// Control mode.
    pub mode: CalenderMode,
    /// Line load of the instant in line-load mode [N/m].
    pub line_load_n_m: f64,
    /// Loaded gap set point in gap mode [m].
    pub roll_gap_m: f64,
    /// Roll radius R_roll [m].
    pub roll_radius_m: f64,
    /// Compaction resistance γ_c at the roll temperature [N/m].
    pub resistance_n_m: f64,
    /// Minimum porosity ε_min.
    pub min_porosity_frac: f64,
    /// Elastic springback s_b.
    pub springback_frac: f64,
    /// Foil elongation e_f.
    pub elongation_frac: f64,
    /// Dry composite density ρ_solid [kg/m³].
    pub solid_density_kg_m3: f64,
    /// Foil thickness [m].
    pub foil_thickness_m: f64,
    /// Coated sides.
    pub sides: f64,
}

/// One grid cell after the nip (per side unless stated).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NipCell {
    /// Calendered areal mass m_A' [kg/m²].
    pub areal_mass_kg_m2: f64,
    /// Porosity after springback.
    pub porosity_frac: f64,
    /// Coating thickness after springback h_c [m].
    pub coating_thickness_m: f64,
    /// Coating thickness in the nip h_nip [m].
    pub nip_thickness_m: f64,
    /// Electrode thickness `sides·h_c + t_foil` [m].
    pub electrode_thickness_m: f64,
    /// Loaded gap [m].
    pub roll_gap_m: f64,
    /// Line load acting on the cell [N/m].
    pub line_load_n_m: f64,
    /// Nip contact length [m].
    pub contact_length_m: f64,
    /// Mean nip pressure `q_L/l_c` [Pa].
    pub mean_pressure_pa: f64,
    /// Compression strain `(h_dry − h_c)/h_dry`.
    pub strain_frac: f64,
    /// `p̄·(h_dry − h_nip)`: compression power per side, per metre of width and per m/s of web
    /// speed [N/m].
    pub compression_work_n_m: f64,
    /// Gap mode: the rolls do not touch the coating (ε ≥ ε_dry).
    pub no_contact: bool,
    /// Gap mode: the gap is below what ε_min + 0.001 allows.
    pub gap_unreachable: bool,
}

impl Nip {
    /// Calenders one cell of dry solids `areal_mass_kg_m2` (uncalendered, per side), dried
    /// porosity `dry_porosity_frac` and dried thickness `dry_thickness_m` (MODELS.md §4.2).
    pub fn cell(&self, areal_mass_kg_m2: f64, dry_porosity_frac: f64, dry_thickness_m: f64) -> NipCell {
        let m = areal_mass_kg_m2.max(0.0) / (1.0 + self.elongation_frac);
        let eps_dry = dry_porosity_frac;
        let eps_min = self.min_porosity_frac;
        let rho = self.solid_density_kg_m3;
        let t_foil = self.foil_thickness_m;
        let (mut no_contact, mut unreachable) = (false, false);
        let (eps, h_c, h_nip, q, gap) = match self.mode {
            CalenderMode::LineLoad => {
                let q = self.line_load_n_m;
                let eps = porosity_after_nip(eps_dry, eps_min, q, self.resistance_n_m);
                let h_c = coating_thickness_m(m, rho, eps);
                let h_nip = h_c / (1.0 + self.springback_frac);
                (eps, h_c, h_nip, q, self.sides * h_nip + t_foil)
            }
            CalenderMode::Gap => {
                let g = self.roll_gap_m;
                let h_nip = (g - t_foil) / self.sides;
                let h_c = (1.0 + self.springback_frac) * h_nip;
                let eps = if h_c > 0.0 { 1.0 - m / (rho * h_c) } else { f64::NEG_INFINITY };
                if eps >= eps_dry {
                    // the rolls do not touch: uncompressed film, no force
                    no_contact = true;
                    let h_c = coating_thickness_m(m, rho, eps_dry);
                    (eps_dry, h_c, h_c, 0.0, g)
                } else if eps <= eps_min + GAP_POROSITY_MARGIN_FRAC {
                    unreachable = true;
                    let eps = eps_min + GAP_POROSITY_MARGIN_FRAC;
                    let h_c = coating_thickness_m(m, rho, eps);
                    let h_nip = h_c / (1.0 + self.springback_frac);
                    let q = line_load_for_porosity(eps_dry, eps_min, eps, self.resistance_n_m);
                    (eps, h_c, h_nip, q, self.sides * h_nip + t_foil)
                } else {
                    (eps, h_c, h_nip, line_load_for_porosity(eps_dry, eps_min, eps, self.resistance_n_m), g)
                }
            }
        };
        let contact = nip_contact_length_m(self.roll_radius_m, dry_thickness_m, h_nip);
        let pressure = if contact > 0.0 { q / contact } else { 0.0 };
        NipCell {
            areal_mass_kg_m2: m,
            porosity_frac: eps,
            coating_thickness_m: h_c,
            nip_thickness_m: h_nip,
            electrode_thickness_m: self.sides * h_c + t_foil,
            roll_gap_m: gap,
            line_load_n_m: q,
            contact_length_m: contact,
            mean_pressure_pa: pressure,
            strain_frac: if dry_thickness_m > 0.0 { (dry_thickness_m - h_c) / dry_thickness_m } else { 0.0 },
            compression_work_n_m: pressure * (dry_thickness_m - h_nip).max(0.0),
            no_contact,
            gap_unreachable: unreachable,
        }
    }
}

/// Drive power `P = P_base + P_heat + sides·W·v·p̄·(h_dry − h_nip)` (MODELS.md §4.2) [W], with
/// `compression_work_n_m` the width-mean of `p̄·(h_dry − h_nip)`.
pub fn drive_power_w(params: &CalendaringParams, sides: f64, width_m: f64, compression_work_n_m: f64) -> f64 {
    params.drive_base_power_w
        + params.roll_heating_power_w
        + sides * width_m * params.calender_speed_m_s * compression_work_n_m
}

// ---------------------------------------------------------------------------------------------
// Samples and result
// ---------------------------------------------------------------------------------------------

/// One calendering sample (MODELS.md §4.3): the segment in the nip, CD means over its width.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CalendaringSample {
    /// Plant time [s].
    pub t_s: f64,
    /// Stage time [s].
    pub stage_time_s: f64,
    /// Position of the nip on the calendered web `v·t` [m].
    pub position_m: f64,
    /// Line load (load cells σ 0.5 %) [N/m].
    pub line_load_n_m: Reading,
    /// Loaded roll gap [m].
    pub roll_gap_m: f64,
    /// Nip contact length [m].
    pub contact_length_m: f64,
    /// Mean nip pressure [Pa].
    pub mean_nip_pressure_pa: f64,
    /// Peak nip pressure `4·p̄/π` [Pa].
    pub peak_nip_pressure_pa: f64,
    /// Porosity after springback.
    pub porosity_frac: f64,
    /// Coating thickness per side [m].
    pub coating_thickness_m: f64,
    /// Electrode thickness, both coatings + foil (post-nip gauge σ 1 µm) [m].
    pub electrode_thickness_m: Reading,
    /// Compression strain.
    pub strain_frac: f64,
    /// Roll temperature (σ 0.5 K) [°C].
    pub roll_temperature_degc: Reading,
    /// Web speed (encoder σ 0.1 %) [m/s].
    pub calender_speed_m_s: Reading,
    /// Drive and roll-heating power [W].
    pub drive_power_w: f64,
    /// Any Warning-or-worse calendering alarm active.
    pub defect_risk: bool,
    /// Fault labels active (empty for now).
    pub fault_labels: Vec<u32>,
}

impl SampleRecord for CalendaringSample {
    fn stage_time_s(&self) -> f64 {
        self.stage_time_s
    }

    fn legacy(&self, out: &mut LegacyRecord) {
        put(out, "roll_gap_m", self.roll_gap_m);
        put(out, "roll_speed_m_per_s", self.calender_speed_m_s.value());
        put(out, "applied_pressure_Pa", self.mean_nip_pressure_pa);
        put(out, "strain_epsilon", self.strain_frac);
        put(out, "calculated_stress_Pa", self.peak_nip_pressure_pa);
        put(out, "final_thickness_m", self.electrode_thickness_m.value());
        put(out, "porosity_after_calendaring", self.porosity_frac);
        put_value(out, "defect_risk", self.defect_risk);
    }
}

/// Final result of one calender run (MODELS.md §4.3). Means and standard deviations are over
/// the coated grid cells.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CalendaringResult {
    /// Calendered (output) length `L_roll·length_scale` [m].
    pub length_m: f64,
    /// Stage duration [s].
    pub duration_s: f64,
    /// Local length per coating length.
    pub length_scale: f64,
    /// Mean porosity.
    pub mean_porosity_frac: f64,
    /// Standard deviation of the porosity.
    pub std_porosity_frac: f64,
    /// Mean coating thickness per side [m].
    pub mean_coating_thickness_m: f64,
    /// Standard deviation of the coating thickness [m].
    pub std_coating_thickness_m: f64,
    /// Mean electrode thickness [m].
    pub mean_electrode_thickness_m: f64,
    /// Standard deviation of the electrode thickness [m].
    pub std_electrode_thickness_m: f64,
    /// Mean calendered areal mass per side [kg/m²].
    pub mean_areal_mass_kg_m2: f64,
    /// Mean coating density `m_A'/h_c` [kg/m³].
    pub coating_density_kg_m3: f64,
    /// Mean loaded gap [m].
    pub mean_roll_gap_m: f64,
    /// Mean line load [N/m].
    pub mean_line_load_n_m: f64,
    /// Mean nip pressure [Pa].
    pub mean_nip_pressure_pa: f64,
    /// Mean peak nip pressure [Pa].
    pub peak_nip_pressure_pa: f64,
    /// Mean compression strain.
    pub mean_strain_frac: f64,
    /// Set-point porosity.
    pub nominal_porosity_frac: f64,
    /// Set-point coating thickness per side [m].
    pub nominal_coating_thickness_m: f64,
    /// Set-point electrode thickness [m].
    pub nominal_electrode_thickness_m: f64,
    /// Set-point calendered areal mass per side [kg/m²].
    pub nominal_areal_mass_kg_m2: f64,
    /// Segments flagged with crack risk (over-compaction).
    pub crack_segments: u32,
    /// Mean drive power [W].
    pub drive_power_w: f64,
    /// Drive and roll-heating energy ∫P dt [J].
    pub energy_j: f64,
    /// Any Warning-or-worse alarm raised during the run.
    pub defect_risk: bool,
    /// Every alarm event of the run.
    pub alarms: Vec<Alarm>,
    /// No alarm of severity Alarm or worse was raised.
    pub accepted: bool,
}

impl ResultRecord for CalendaringResult {
    fn legacy(&self, out: &mut LegacyRecord) {
        put_object(out, "Final Properties", |p| {
            put(p, "roll_gap_m", self.mean_roll_gap_m);
            put(p, "roll_speed_m_per_s", self.length_m / self.duration_s.max(f64::MIN_POSITIVE));
            put(p, "applied_pressure_Pa", self.mean_nip_pressure_pa);
            put(p, "strain_epsilon", self.mean_strain_frac);
            put(p, "calculated_stress_Pa", self.peak_nip_pressure_pa);
            put(p, "final_thickness_m", self.mean_electrode_thickness_m);
            put(p, "porosity_after_calendaring", self.mean_porosity_frac);
            put_value(p, "defect_risk", self.defect_risk);
        });
    }

    fn accepted(&self) -> bool {
        self.accepted
    }

    fn summary(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("porosity", self.mean_porosity_frac),
            ("coating thickness µm", self.mean_coating_thickness_m * 1e6),
            ("electrode thickness µm", self.mean_electrode_thickness_m * 1e6),
            ("coating density kg/m³", self.coating_density_kg_m3),
            ("length m", self.length_m),
            ("energy kWh", self.energy_j / 3.6e6),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// The stage
// ---------------------------------------------------------------------------------------------

/// Line-load cells (σ_r 0.5 %).
const LOAD_CELL: Sensor = Sensor::relative(0.005);
/// Post-nip thickness gauge (σ_a 1 µm).
const THICKNESS_GAUGE: Sensor = Sensor::absolute(1e-6);
/// Roll thermocouple (σ_a 0.5 K).
const ROLL_THERMOCOUPLE: Sensor = Sensor::absolute(0.5);
/// Speed encoder (σ_r 0.1 %, as the coater's). [E]
const SPEED_ENCODER: Sensor = Sensor::relative(0.001);

/// Allowed deviation of the electrode thickness from nominal (`CAL_THICKNESS_DEVIATION`) [m].
pub const THICKNESS_DEVIATION_LIMIT_M: f64 = 3e-6;
/// Porosity margin above ε_min below which particles crack (`CAL_OVERCOMPACTION`).
pub const OVERCOMPACTION_MARGIN_FRAC: f64 = 0.03;

/// The heated roll calender (MODELS.md §4).
pub struct Calendaring;

/// Running mean and standard deviation (Welford).
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Stats {
    fn push(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }
    fn std(&self) -> f64 {
        if self.n > 0 {
            (self.m2 / self.n as f64).max(0.0).sqrt()
        } else {
            0.0
        }
    }
}

/// One segment in the nip, aggregated over its width.
#[derive(Clone, Copy, Debug, Default)]
struct SegmentNip {
    line_load_n_m: f64,
    roll_gap_m: f64,
    contact_length_m: f64,
    mean_pressure_pa: f64,
    porosity_frac: f64,
    coating_thickness_m: f64,
    electrode_thickness_m: f64,
    strain_frac: f64,
    compression_work_n_m: f64,
}

fn forward<S>(tracker: &AlarmTracker, sent: &mut usize, sink: &mut dyn StageSink<S>) {
    for a in &tracker.events[*sent..] {
        sink.alarm(a);
    }
    *sent = tracker.len();
}

/// The nip of `params` for `dry`, with the recipe's compaction constants and the foil.
pub fn nip_for(params: &CalendaringParams, dry: &DryElectrode) -> Nip {
    let film = &dry.film;
    let recipe = &film.slurry.recipe;
    Nip {
        mode: params.control_mode,
        line_load_n_m: params.line_load_n_m,
        roll_gap_m: params.roll_gap_m,
        roll_radius_m: params.roll_diameter_m / 2.0,
        resistance_n_m: compaction_resistance_n_m(
            recipe.compaction_resistance_n_m,
            recipe.compaction_temp_coeff_per_k,
            params.roll_temperature_degc,
            recipe.compaction_ref_temperature_degc,
        ),
        min_porosity_frac: recipe.min_porosity_frac,
        springback_frac: recipe.springback_frac,
        elongation_frac: film.foil.calender_elongation_frac,
        solid_density_kg_m3: film.slurry.solid_density_kg_m3,
        foil_thickness_m: film.foil.thickness_m,
        sides: film.sides as f64,
    }
}

/// The set-point cell of `dry` calendered with `params`: nominal areal mass, the recipe's ε_dry
/// and `h_dry = m_A/(ρ_solid·(1 − ε_dry))`, the set line load or gap.
pub fn nominal_cell(params: &CalendaringParams, dry: &DryElectrode) -> NipCell {
    let film = &dry.film;
    let eps_dry = film.slurry.recipe.dry_film_porosity_frac;
    let m = film.nominal_areal_mass_kg_m2;
    let h_dry = m / (film.slurry.solid_density_kg_m3 * (1.0 - eps_dry));
    nip_for(params, dry).cell(m, eps_dry, h_dry)
}

impl Stage for Calendaring {
    const KIND: StageKind = StageKind::Calendaring;
    type Params = CalendaringParams;
    type Input = DryElectrode;
    type Output = CalenderedElectrode;
    type Sample = CalendaringSample;
    type Result = CalendaringResult;
    type MachineState = ();

    fn run(
        params: &CalendaringParams,
        mut dry: DryElectrode,
        _machine: &mut (),
        ctx: &mut StageCtx<'_>,
        sink: &mut dyn StageSink<CalendaringSample>,
    ) -> StageRun<CalenderedElectrode, CalendaringResult> {
        let mut flags = std::mem::take(&mut dry.film.segment_flags);
        let film = &dry.film;
        let v = params.calender_speed_m_s;
        let mut nip = nip_for(params, &dry);
        let length_scale = 1.0 + nip.elongation_frac;
        let length = film.roll_length_m * length_scale;
        let duration = length / v;
        let grid = &film.areal_mass_kg_m2;
        let (n_md, n_cd, seg_len) = (grid.n_md, grid.n_cd, grid.segment_length_m);
        let width = film.coating_width_m;
        let sides = nip.sides;
        let inv_cd = 1.0 / n_cd as f64;

        let nominal = nominal_cell(params, &dry);
        let eps_limit = nip.min_porosity_frac + OVERCOMPACTION_MARGIN_FRAC;

        let mut areal = grid.like(0.0);
        let mut porosity = grid.like(0.0);
        let mut coating = grid.like(0.0);
        let mut electrode = grid.like(0.0);
        if flags.len() < n_md {
            flags.resize(n_md, SegmentFlags::default());
        }

        let mut tracker = AlarmTracker::new(Self::KIND, ctx.line, ctx.start_t_s);
        let mut sent = 0usize;
        let (mut s_eps, mut s_hc, mut s_te, mut s_m, mut s_rho) =
            (Stats::default(), Stats::default(), Stats::default(), Stats::default(), Stats::default());
        let (mut s_gap, mut s_q, mut s_p, mut s_strain) =
            (Stats::default(), Stats::default(), Stats::default(), Stats::default());
        let mut crack_segments = 0u32;
        let mut current: Option<SegmentNip> = None;
        let mut next_md = 0usize;
        let mut energy = 0.0;
        let mut prev_power: Option<(f64, f64)> = None;

        let mut eccentric: Vec<crate::fault::FaultRegion> = Vec::new();
        for t in sample_times(duration, params.sample_interval_s) {
            // Segments whose leading edge reaches the nip by t, each at its own time.
            while next_md < n_md {
                let x_md = next_md as f64 * seg_len;
                let t_nip = x_md * length_scale / v;
                if t_nip > t {
                    break;
                }
                // F06 (MODELS.md §13): an eccentric roll makes the line load ripple at π·D
                let mut eccentricity = 0.0;
                for f in ctx.faults.of(FaultCode::F06CalRollEccentricity) {
                    let level = f.spec.level(t_nip);
                    if level > 0.0 {
                        eccentricity += level * f.spec.magnitude.amplitude_frac.unwrap_or(0.10);
                        ctx.faults
                            .touch(f.label_id, At { stage_time_s: t_nip, position_m: Some(x_md), ..At::default() });
                        let width = dry.film.coating_width_m;
                        match eccentric.iter_mut().find(|r| r.label_id == f.label_id) {
                            Some(r) => r.md_end_m = x_md + seg_len,
                            None => eccentric.push(crate::fault::FaultRegion {
                                label_id: f.label_id,
                                md_start_m: x_md,
                                md_end_m: x_md + seg_len,
                                cd_start_m: 0.0,
                                cd_end_m: width,
                            }),
                        }
                    }
                }
                nip.line_load_n_m =
                    line_load_n_m(params.line_load_n_m, eccentricity, v, t_nip, params.roll_diameter_m, 0.0);
                let mut seg = SegmentNip::default();
                let (mut eps_min_seen, mut dev_eps, mut dev_te, mut q_max) = (f64::INFINITY, 0.0f64, 0.0f64, 0.0f64);
                let (mut no_contact, mut unreachable) = (false, false);
                for cd in 0..n_cd {
                    let m_a = grid.get(next_md, cd);
                    let c = nip.cell(m_a, dry.dry_porosity_frac.get(next_md, cd), dry.dry_thickness_m.get(next_md, cd));
                    areal.set(next_md, cd, c.areal_mass_kg_m2);
                    porosity.set(next_md, cd, c.porosity_frac);
                    coating.set(next_md, cd, c.coating_thickness_m);
                    electrode.set(next_md, cd, c.electrode_thickness_m);
                    seg.line_load_n_m += c.line_load_n_m * inv_cd;
                    seg.roll_gap_m += c.roll_gap_m * inv_cd;
                    seg.contact_length_m += c.contact_length_m * inv_cd;
                    seg.mean_pressure_pa += c.mean_pressure_pa * inv_cd;
                    seg.porosity_frac += c.porosity_frac * inv_cd;
                    seg.coating_thickness_m += c.coating_thickness_m * inv_cd;
                    seg.electrode_thickness_m += c.electrode_thickness_m * inv_cd;
                    seg.strain_frac += c.strain_frac * inv_cd;
                    seg.compression_work_n_m += c.compression_work_n_m * inv_cd;
                    if m_a <= 0.0 {
                        continue; // an uncoated streak: nothing to compress or judge
                    }
                    eps_min_seen = eps_min_seen.min(c.porosity_frac);
                    dev_eps = dev_eps.max((c.porosity_frac - nominal.porosity_frac).abs());
                    dev_te = dev_te.max((c.electrode_thickness_m - nominal.electrode_thickness_m).abs());
                    q_max = q_max.max(c.line_load_n_m);
                    no_contact |= c.no_contact;
                    unreachable |= c.gap_unreachable;
                    s_eps.push(c.porosity_frac);
                    s_hc.push(c.coating_thickness_m);
                    s_te.push(c.electrode_thickness_m);
                    s_m.push(c.areal_mass_kg_m2);
                    s_rho.push(c.areal_mass_kg_m2 / c.coating_thickness_m);
                    s_gap.push(c.roll_gap_m);
                    s_q.push(c.line_load_n_m);
                    s_p.push(c.mean_pressure_pa);
                    s_strain.push(c.strain_frac);
                }
                let coated = eps_min_seen.is_finite();
                if coated && eps_min_seen < eps_limit {
                    flags[next_md].set(SegmentFlags::CRACK_RISK);
                    crack_segments += 1;
                }

                let at = AlarmScope { position_m: Some(x_md), ..AlarmScope::default() };
                let tol = params.porosity_tolerance_frac;
                tracker.high(
                    t_nip,
                    "CAL_POROSITY_OUT_OF_SPEC",
                    Severity::Alarm,
                    "porosity_frac",
                    dev_eps,
                    tol,
                    at.clone(),
                    || {
                        format!(
                            "porosity {dev_eps:.4} off nominal {:.4} at {x_md:.1} m (band ±{tol})",
                            nominal.porosity_frac
                        )
                    },
                );
                if coated {
                    tracker.low(
                        t_nip,
                        "CAL_OVERCOMPACTION",
                        Severity::Alarm,
                        "porosity_frac",
                        eps_min_seen,
                        eps_limit,
                        at.clone(),
                        || format!("porosity {eps_min_seen:.4} below {eps_limit:.3} at {x_md:.1} m: particle cracking"),
                    );
                }
                let q_limit = params.max_line_load_n_m;
                let over = unreachable
                    || if tracker.is_active("CAL_LINE_LOAD_LIMIT") {
                        q_max >= q_limit * (1.0 - HYSTERESIS_FRAC)
                    } else {
                        q_max > q_limit
                    };
                tracker.set(
                    t_nip,
                    "CAL_LINE_LOAD_LIMIT",
                    Severity::Critical,
                    over,
                    "line_load_n_m",
                    q_max,
                    q_limit,
                    at.clone(),
                    || {
                        if unreachable {
                            format!(
                                "gap {:.1} µm unreachable at {x_md:.1} m (needs {q_max:.3e} N/m)",
                                params.roll_gap_m * 1e6
                            )
                        } else {
                            format!("line load {q_max:.3e} N/m above the machine limit {q_limit:.3e} N/m")
                        }
                    },
                );
                tracker.set(
                    t_nip,
                    "CAL_NO_CONTACT",
                    Severity::Alarm,
                    no_contact,
                    "porosity_frac",
                    seg.porosity_frac,
                    0.0,
                    at.clone(),
                    || format!("gap {:.1} µm does not touch the coating at {x_md:.1} m", params.roll_gap_m * 1e6),
                );
                tracker.high(
                    t_nip,
                    "CAL_THICKNESS_DEVIATION",
                    Severity::Warning,
                    "electrode_thickness_m",
                    dev_te,
                    THICKNESS_DEVIATION_LIMIT_M,
                    at,
                    || format!("electrode thickness {:.2} µm off nominal at {x_md:.1} m", dev_te * 1e6),
                );
                forward(&tracker, &mut sent, sink);
                current = Some(seg);
                next_md += 1;
            }

            let seg = current.unwrap_or_default();
            let power = drive_power_w(params, sides, width, seg.compression_work_n_m);
            if let Some((t0, p0)) = prev_power {
                energy += 0.5 * (p0 + power) * (t - t0);
            }
            prev_power = Some((t, power));
            let q_reading = LOAD_CELL.measure(seg.line_load_n_m, ctx.sensor_noise, ctx.sensor_rng);
            let te_reading = THICKNESS_GAUGE.measure(seg.electrode_thickness_m, ctx.sensor_noise, ctx.sensor_rng);
            let temp_reading =
                ROLL_THERMOCOUPLE.measure(params.roll_temperature_degc, ctx.sensor_noise, ctx.sensor_rng);
            let speed_reading = SPEED_ENCODER.measure(v, ctx.sensor_noise, ctx.sensor_rng);
            let q_reading = ctx.faults.corrupt("line_load_n_m", t, q_reading);
            let te_reading = ctx.faults.corrupt("electrode_thickness_m", t, te_reading);
            sink.sample(CalendaringSample {
                t_s: ctx.start_t_s + t,
                stage_time_s: t,
                position_m: v * t,
                line_load_n_m: q_reading,
                roll_gap_m: seg.roll_gap_m,
                contact_length_m: seg.contact_length_m,
                mean_nip_pressure_pa: seg.mean_pressure_pa,
                peak_nip_pressure_pa: 4.0 * seg.mean_pressure_pa / std::f64::consts::PI,
                porosity_frac: seg.porosity_frac,
                coating_thickness_m: seg.coating_thickness_m,
                electrode_thickness_m: te_reading,
                strain_frac: seg.strain_frac,
                roll_temperature_degc: temp_reading,
                calender_speed_m_s: speed_reading,
                drive_power_w: power,
                defect_risk: tracker.any_active(Severity::Warning),
                fault_labels: ctx.faults.labels_at(t, Some(v * t)),
            });
        }

        let result = CalendaringResult {
            length_m: length,
            duration_s: duration,
            length_scale,
            mean_porosity_frac: s_eps.mean,
            std_porosity_frac: s_eps.std(),
            mean_coating_thickness_m: s_hc.mean,
            std_coating_thickness_m: s_hc.std(),
            mean_electrode_thickness_m: s_te.mean,
            std_electrode_thickness_m: s_te.std(),
            mean_areal_mass_kg_m2: s_m.mean,
            coating_density_kg_m3: s_rho.mean,
            mean_roll_gap_m: s_gap.mean,
            mean_line_load_n_m: s_q.mean,
            mean_nip_pressure_pa: s_p.mean,
            peak_nip_pressure_pa: 4.0 * s_p.mean / std::f64::consts::PI,
            mean_strain_frac: s_strain.mean,
            nominal_porosity_frac: nominal.porosity_frac,
            nominal_coating_thickness_m: nominal.coating_thickness_m,
            nominal_electrode_thickness_m: nominal.electrode_thickness_m,
            nominal_areal_mass_kg_m2: nominal.areal_mass_kg_m2,
            crack_segments,
            drive_power_w: if duration > 0.0 { energy / duration } else { 0.0 },
            energy_j: energy,
            defect_risk: tracker.any_raised(Severity::Warning),
            accepted: !tracker.any_raised(Severity::Alarm),
            alarms: tracker.events,
        };
        dry.film.segment_flags = flags;
        dry.film.fault_regions.extend(eccentric);
        let output = CalenderedElectrode {
            dry,
            length_scale,
            areal_mass_kg_m2: areal,
            nominal_areal_mass_kg_m2: nominal.areal_mass_kg_m2,
            porosity_frac: porosity,
            coating_thickness_m: coating,
            electrode_thickness_m: electrode,
            nominal_porosity_frac: nominal.porosity_frac,
            nominal_coating_thickness_m: nominal.coating_thickness_m,
            nominal_electrode_thickness_m: nominal.electrode_thickness_m,
        };
        StageRun { output, result, duration_s: duration }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meyer_law_and_its_inverse_agree() {
        let eps = porosity_after_nip(0.46, 0.20, 5.7e5, 6.0e5);
        assert!((eps - (0.20 + 0.26 * (-0.95f64).exp())).abs() < 1e-15);
        let q = line_load_for_porosity(0.46, 0.20, eps, 6.0e5);
        assert!((q - 5.7e5).abs() < 1e-6);
        assert_eq!(porosity_after_nip(0.46, 0.20, 0.0, 6.0e5), 0.46);
        // a film already below ε_min is not decompacted
        assert_eq!(porosity_after_nip(0.15, 0.20, 1e5, 6.0e5), 0.15);
    }

    #[test]
    fn warmer_rolls_compact_more_easily() {
        let ref_t = compaction_resistance_n_m(6e5, 0.005, 80.0, 80.0);
        assert_eq!(ref_t, 6e5);
        assert!(compaction_resistance_n_m(6e5, 0.005, 120.0, 80.0) < ref_t);
    }

    #[test]
    fn eccentricity_ripples_at_the_roll_circumference() {
        assert_eq!(line_load_n_m(5e5, 0.0, 0.7, 3.3, 0.5, 0.0), 5e5);
        // a quarter turn: v·t = π·D/4
        let t = std::f64::consts::PI * 0.5 / 4.0 / 0.7;
        assert!((line_load_n_m(5e5, 0.1, 0.7, t, 0.5, 0.0) - 5.5e5).abs() < 1e-6);
    }

    #[test]
    fn contact_length_is_zero_without_compression() {
        assert_eq!(nip_contact_length_m(0.25, 80e-6, 90e-6), 0.0);
        assert!((nip_contact_length_m(0.25, 80e-6, 60e-6) - (0.25f64 * 20e-6).sqrt()).abs() < 1e-15);
    }

    #[test]
    fn welford_std_of_constant_is_zero() {
        let mut s = Stats::default();
        for _ in 0..1000 {
            s.push(0.30055);
        }
        assert_eq!(s.std(), 0.0);
        assert!((s.mean - 0.30055).abs() < 1e-15);
    }
}
