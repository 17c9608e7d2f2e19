//! Slitting: cut the calendered web into lanes of the electrode width with rotary shear
//! knives (MODELS.md §5). `CalenderedElectrode` in, `SlitLanes` out; the blade wear is
//! machine state ([`BladeState`]) the plant keeps from batch to batch.
//!
//! The web passes the knives at `slitting_speed_m_s`; the model steps one web segment
//! (`segment_length_m · length_scale` of calendered web) at a time. Per segment it draws the
//! knife vibration, the web wander, the burr scatter and the tension drift (process stream,
//! only with process variability on), computes each lane's width, burr height (larger of its
//! two cut edges) and lane-mean electrode properties (width-weighted over the CD cells of the
//! lane's window, §0.8), and raises the §5.3 alarms. Samples every `sample_interval_s`
//! describe the segment at the knives.
//!
//! Random draws, in this order (process stream, all skipped in deterministic mode):
//! once per batch the knife offsets δ_0 … δ_n, the first web-wander value and the first
//! tension value; then per segment the vibration ν_j of every lane, the web-wander step
//! (from the second segment on), per lane the left edge (lognormal ξ, spike count) and the
//! right edge (ξ, spike count), and the tension step (from the second segment on). Sensor
//! stream, per sample: speed, tension, then the width of every lane.

use crate::alarm::{AlarmScope, AlarmTracker, Check, Severity, HYSTERESIS_FRAC};
use crate::defect::{Defect, DefectKind, DefectSeverity};
use crate::error::{check_non_negative, check_open_min, check_range, ParamError};
use crate::fault::{At, FaultCode};
use crate::legacy::{put, put_object, put_value, LegacyRecord};
use crate::random::{normal, poisson, Ar1};
use crate::reading::{Reading, Sensor};
use crate::stage::{
    sample_times, ResultRecord, SampleRecord, Stage, StageCtx, StageKind, StageParams, StageRun, StageSink,
};
use crate::stages::calendaring::CalenderedElectrode;
use crate::web::SegmentFlags;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Correlation length of the web wander u(x) [m] (§5.2). [C]
pub const WEB_WANDER_CORRELATION_M: f64 = 5.0;
/// Standard deviation of the relative tension drift z_T (§5.2). [C]
pub const TENSION_SIGMA_FRAC: f64 = 0.01;
/// Correlation time of the tension drift z_T [s] (§5.2). [C]
pub const TENSION_TIME_CONSTANT_S: f64 = 2.0;
/// Below this share of the set tension the web wrinkles (§5.2, `SLIT_TENSION_LOW`).
pub const WRINKLE_TENSION_FRAC: f64 = 0.7;
/// Foil stress limit as a share of the foil's yield stress (`SLIT_TENSION_HIGH`).
pub const FOIL_STRESS_LIMIT_FRAC: f64 = 0.3;
/// Burr warning level as a share of `burr_max_m` (`SLIT_BURR_HIGH` Warning).
pub const BURR_WARNING_FRAC: f64 = 0.75;
/// Widest coated web any coating parameter set allows (§2.1 `coating_width_m` ≤ 2 m) [m].
pub const MAX_COATING_WIDTH_M: f64 = 2.0;
/// Characteristic size of a slitting wrinkle, for its detection at inspection [m]. [E]
pub const WRINKLE_SIZE_M: f64 = 5e-4;
/// Edge camera for the lane widths: σ_a 10 µm (§5.2).
pub const WIDTH_SENSOR: Sensor = Sensor::absolute(1e-5);
/// Tension load cell: σ_r 1 % (§5.2).
pub const TENSION_SENSOR: Sensor = Sensor::relative(0.01);
/// Line speed encoder: σ_r 0.1 % (§5.2).
pub const SPEED_SENSOR: Sensor = Sensor::relative(0.001);

/// The slitter's knife state, kept by the machine from batch to batch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BladeState {
    /// Edge radius at the start of the next batch [m]; 0 = not yet set (a fresh blade).
    pub edge_radius_m: f64,
    /// Web length cut since the last blade change [m].
    pub cut_length_m: f64,
    /// Blade changes made so far.
    pub blade_changes: u32,
}

/// One slit lane. Per-segment vectors are indexed like the web grid's segments (coating
/// coordinates; a segment is `segment_length_m · length_scale` long on the lane).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lane {
    /// Lane index j (0 at the operator side).
    pub index: u32,
    /// Nominal CD start of the lane on the coated width [m].
    pub cd_start_m: f64,
    /// Target lane width [m].
    pub nominal_width_m: f64,
    /// True width per segment [m].
    pub width_m: Vec<f64>,
    /// Larger burr of the two edges per segment [m].
    pub burr_height_m: Vec<f64>,
    /// Lane-mean calendered areal mass per side per segment [kg/m²].
    pub areal_mass_kg_m2: Vec<f64>,
    /// Lane-mean porosity per segment.
    pub porosity_frac: Vec<f64>,
    /// Lane-mean coating thickness per side per segment [m].
    pub coating_thickness_m: Vec<f64>,
    /// Lane-mean electrode thickness per segment [m].
    pub electrode_thickness_m: Vec<f64>,
    /// Wrinkled at slitting, per segment.
    pub wrinkle: Vec<bool>,
    /// Ids of the web defects inside this lane.
    pub defect_ids: Vec<u32>,
}

/// The slit web (MODELS.md §0.9).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlitLanes {
    /// The calendered roll (grids, defects, flags). Slitting adds its `Wrinkle` defects to
    /// the web's defect list and sets `SegmentFlags::WRINKLE` on wrinkled segments.
    pub electrode: CalenderedElectrode,
    /// The lanes, operator side first.
    pub lanes: Vec<Lane>,
    /// Edge trim on each side [m].
    pub edge_trim_m: f64,
    /// True CD positions of the knives y_0 … y_n (set-up offsets included) [m]: lane j lies
    /// between knives j and j + 1.
    pub knife_positions_m: Vec<f64>,
    /// Blade state after this batch.
    pub blade: BladeState,
}

/// Slitter settings for one line. Defaults: MODELS.md §5.1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlittingParams {
    /// Number of lanes n; [1, 64].
    pub lane_count: u32,
    /// Lane (electrode) width w; [0.005, 2.0]; rule `lane_count·lane_width_m + 2·min_edge_trim_m ≤
    /// coating width`. [C]
    pub lane_width_m: f64,
    /// Minimum edge trim on each side (removes the heavy edges); [0, 0.1]. [C]
    pub min_edge_trim_m: f64,
    /// Web speed through the knives; [0.05, 5]. [C]
    pub slitting_speed_m_s: f64,
    /// Set tension of the whole web T_set; [1, 5000]. [C]
    pub web_tension_n: f64,
    /// Knife clearance (≈ 7.5 % of the electrode thickness, 5–10 % [L]); [0, 1e-4].
    pub blade_clearance_m: f64,
    /// Edge radius of a fresh blade (< 2–3 µm [L]); (0, 1e-5].
    pub blade_edge_radius_new_m: f64,
    /// Edge-radius growth per metre of web cut k_w (0.01 µm/km); [0, 1e-6]. [C]
    pub blade_wear_rate_m_per_m: f64,
    /// Edge radius above which the blade is changed before the next batch; > `blade_edge_radius_new_m`,
    /// at most 1e-4. [C]
    pub blade_change_edge_radius_m: f64,
    /// Burr height h_ref of a 1 µm edge at the optimal clearance and 1 m/s; (0, 1e-4]. [C]
    pub burr_height_ref_m: f64,
    /// Optimal clearance per electrode thickness c_opt; (0, 1]. [C]
    pub clearance_opt_frac: f64,
    /// Burr growth k_c with the squared relative clearance error; [0, 100]. [C]
    pub clearance_sensitivity: f64,
    /// Speed exponent b of the burr height; [0, 3]. [C]
    pub speed_exponent: f64,
    /// Lognormal scatter σ_ln of the burr height per edge and segment; [0, 2]. [C]
    pub burr_sigma_ln: f64,
    /// Chipped-edge spikes per metre of each lane edge; [0, 10]. [C]
    pub burr_spike_rate_per_m: f64,
    /// Burr multiplier of a spike; [1, 100]. [C]
    pub burr_spike_factor: f64,
    /// Knife set-up position scatter σ_kp, drawn once per batch; ≥ 0. [C]
    pub knife_position_sigma_m: f64,
    /// Knife vibration σ_vib per lane and segment; ≥ 0. [C]
    pub knife_vibration_sigma_m: f64,
    /// Web wander σ (AR(1), ℓ = 5 m); ≥ 0. [C]
    pub web_wander_sigma_m: f64,
    /// Largest acceptable burr (½ of the 16 µm separator [L]); (0, 1e-4].
    pub burr_max_m: f64,
    /// Lane width tolerance ±; (0, 1e-2]. [U]
    pub width_tolerance_m: f64,
    /// Sample interval; (0, 600]. [E]
    pub sample_interval_s: f64,
}

impl SlittingParams {
    /// Anode defaults: 8 lanes of 63 mm, clearance 13 µm (§5.1).
    pub fn anode() -> Self {
        Self { lane_width_m: 0.063, blade_clearance_m: 1.3e-5, ..Self::cathode() }
    }

    /// Cathode defaults: 8 lanes of 61 mm, clearance 11 µm (§5.1).
    pub fn cathode() -> Self {
        Self {
            lane_count: 8,
            lane_width_m: 0.061,
            min_edge_trim_m: 0.005,
            slitting_speed_m_s: 1.0,
            web_tension_n: 60.0,
            blade_clearance_m: 1.1e-5,
            blade_edge_radius_new_m: 1.0e-6,
            blade_wear_rate_m_per_m: 1e-11,
            blade_change_edge_radius_m: 2.5e-6,
            burr_height_ref_m: 3e-6,
            clearance_opt_frac: 0.075,
            clearance_sensitivity: 4.0,
            speed_exponent: 0.3,
            burr_sigma_ln: 0.2,
            burr_spike_rate_per_m: 2e-4,
            burr_spike_factor: 3.0,
            knife_position_sigma_m: 1.5e-5,
            knife_vibration_sigma_m: 5e-6,
            web_wander_sigma_m: 2e-5,
            burr_max_m: 8e-6,
            width_tolerance_m: 1e-4,
            sample_interval_s: 2.0,
        }
    }

    /// Total width the lanes and the minimum trims need [m].
    pub fn required_width_m(&self) -> f64 {
        self.lane_count as f64 * self.lane_width_m + 2.0 * self.min_edge_trim_m
    }

    /// The width rule of §5.1 against the coated width of the web to be slit:
    /// `lane_count·lane_width_m + 2·min_edge_trim_m ≤ coating_width_m`.
    pub fn check_width(&self, coating_width_m: f64) -> Result<(), ParamError> {
        let required = self.required_width_m();
        if required <= coating_width_m * (1.0 + 1e-12) {
            return Ok(());
        }
        let widest = (coating_width_m - 2.0 * self.min_edge_trim_m) / self.lane_count as f64;
        Err(ParamError {
            field: "lane_width_m".into(),
            value: self.lane_width_m,
            min: Some(0.005),
            max: Some(widest),
            unit: "m".into(),
            rule: format!(
                "lane_count·lane_width_m + 2·min_edge_trim_m = {required} m must not exceed the coated width \
                 {coating_width_m} m"
            ),
        })
    }

    /// `validate()` plus the width rule against the actual coated width of the web.
    pub fn validate_for_web(&self, coating_width_m: f64) -> Result<(), ParamError> {
        self.validate()?;
        self.check_width(coating_width_m)
    }
}

impl Default for SlittingParams {
    fn default() -> Self {
        Self::cathode()
    }
}

impl StageParams for SlittingParams {
    /// Ranges of §5.1 in table order, then the width rule against the widest web coating can
    /// make (2 m); the plant checks the actual web with [`SlittingParams::validate_for_web`].
    fn validate(&self) -> Result<(), ParamError> {
        check_range("lane_count", self.lane_count as f64, 1.0, 64.0, "")?;
        check_range("lane_width_m", self.lane_width_m, 0.005, 2.0, "m")?;
        check_range("min_edge_trim_m", self.min_edge_trim_m, 0.0, 0.1, "m")?;
        check_range("slitting_speed_m_s", self.slitting_speed_m_s, 0.05, 5.0, "m/s")?;
        check_range("web_tension_n", self.web_tension_n, 1.0, 5000.0, "N")?;
        check_range("blade_clearance_m", self.blade_clearance_m, 0.0, 1e-4, "m")?;
        check_open_min("blade_edge_radius_new_m", self.blade_edge_radius_new_m, 0.0, 1e-5, "m")?;
        check_range("blade_wear_rate_m_per_m", self.blade_wear_rate_m_per_m, 0.0, 1e-6, "m/m")?;
        check_open_min(
            "blade_change_edge_radius_m",
            self.blade_change_edge_radius_m,
            self.blade_edge_radius_new_m,
            1e-4,
            "m",
        )?;
        check_open_min("burr_height_ref_m", self.burr_height_ref_m, 0.0, 1e-4, "m")?;
        check_open_min("clearance_opt_frac", self.clearance_opt_frac, 0.0, 1.0, "")?;
        check_range("clearance_sensitivity", self.clearance_sensitivity, 0.0, 100.0, "")?;
        check_range("speed_exponent", self.speed_exponent, 0.0, 3.0, "")?;
        check_range("burr_sigma_ln", self.burr_sigma_ln, 0.0, 2.0, "")?;
        check_range("burr_spike_rate_per_m", self.burr_spike_rate_per_m, 0.0, 10.0, "1/m")?;
        check_range("burr_spike_factor", self.burr_spike_factor, 1.0, 100.0, "")?;
        check_non_negative("knife_position_sigma_m", self.knife_position_sigma_m, "m")?;
        check_non_negative("knife_vibration_sigma_m", self.knife_vibration_sigma_m, "m")?;
        check_non_negative("web_wander_sigma_m", self.web_wander_sigma_m, "m")?;
        check_open_min("burr_max_m", self.burr_max_m, 0.0, 1e-4, "m")?;
        check_open_min("width_tolerance_m", self.width_tolerance_m, 0.0, 1e-2, "m")?;
        check_open_min("sample_interval_s", self.sample_interval_s, 0.0, 600.0, "s")?;
        self.check_width(MAX_COATING_WIDTH_M)
    }
}

/// Edge trim on each side `e = (W − n·w)/2` (§5.2) [m].
pub fn edge_trim_m(coating_width_m: f64, lane_count: u32, lane_width_m: f64) -> f64 {
    (coating_width_m - lane_count as f64 * lane_width_m) / 2.0
}

/// Blade edge radius after `cut_length_m` of web since the batch started,
/// `r_e = r_e,prev + k_w·L_cut` (§5.2) [m].
pub fn edge_radius_m(start_edge_radius_m: f64, wear_rate_m_per_m: f64, cut_length_m: f64) -> f64 {
    start_edge_radius_m + wear_rate_m_per_m * cut_length_m
}

/// Burr height of one cut edge without scatter or spikes (§5.2, [E] form after the A5 model):
/// `h_b = h_ref·(r_e/1 µm)·[1 + k_c·(c_rel/c_opt − 1)²]·(v/1 m·s⁻¹)^b`, `c_rel = clearance/t_e` [m].
pub fn burr_height_m(p: &SlittingParams, edge_radius_m: f64, electrode_thickness_m: f64) -> f64 {
    let c_rel = if electrode_thickness_m > 0.0 { p.blade_clearance_m / electrode_thickness_m } else { 0.0 };
    let clearance_error = c_rel / p.clearance_opt_frac - 1.0;
    p.burr_height_ref_m
        * (edge_radius_m / 1e-6)
        * (1.0 + p.clearance_sensitivity * clearance_error * clearance_error)
        * p.slitting_speed_m_s.powf(p.speed_exponent)
}

/// Foil stress under the web tension `σ_f = T/(W·t_foil)` (§5.2) [Pa].
pub fn foil_stress_pa(tension_n: f64, coating_width_m: f64, foil_thickness_m: f64) -> f64 {
    let area = coating_width_m * foil_thickness_m;
    if area > 0.0 {
        tension_n / area
    } else {
        0.0
    }
}

/// One lane in a slitting sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SlittingLaneSample {
    /// Lane index.
    pub lane: u32,
    /// Lane width at the edge camera [m].
    pub width_m: Reading,
    /// Measured width − target width [m].
    pub width_error_m: f64,
    /// Larger burr of the lane's two edges [m].
    pub burr_height_m: f64,
}

/// One slitting sample (§5.3): the web segment at the knives.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SlittingSample {
    /// Plant time [s].
    pub t_s: f64,
    /// Stage time [s].
    pub stage_time_s: f64,
    /// Web position at the knives in coating coordinates [m].
    pub position_m: f64,
    /// Web speed [m/s].
    pub slitting_speed_m_s: Reading,
    /// Whole-web tension [N].
    pub web_tension_n: Reading,
    /// Foil stress σ_f [Pa].
    pub foil_stress_pa: f64,
    /// Blade edge radius at this instant [m].
    pub blade_edge_radius_m: f64,
    /// Electrode thickness of the segment at the knives (CD mean) [m].
    pub electrode_thickness_m: f64,
    /// Every lane, operator side first.
    pub lanes: Vec<SlittingLaneSample>,
    /// Target lane width (carried for the legacy `target_width_mm`) [m].
    pub lane_width_m: f64,
    /// Burr limit (carried for the legacy `burr_factor`) [m].
    pub burr_max_m: f64,
    /// Any Warning+ alarm of this stage active at this instant.
    pub defect_risk: bool,
    /// Fault labels active on this sample.
    pub fault_labels: Vec<u32>,
}

/// Writes the §5.4 legacy keys for lane 0.
fn write_legacy(
    out: &mut LegacyRecord,
    thickness_m: f64,
    target_m: f64,
    width_m: f64,
    error_m: f64,
    burr_factor: f64,
    risk: bool,
) {
    put(out, "input_thickness_mm", thickness_m * 1000.0);
    put(out, "target_width_mm", target_m * 1000.0);
    put(out, "final_width_mm", width_m * 1000.0);
    put(out, "cut_accuracy_epsilon_mm", error_m * 1000.0);
    put(out, "burr_factor", burr_factor);
    put_value(out, "defect_risk", risk);
}

impl SampleRecord for SlittingSample {
    fn stage_time_s(&self) -> f64 {
        self.stage_time_s
    }

    fn legacy(&self, out: &mut LegacyRecord) {
        let (width, error, burr) = self
            .lanes
            .first()
            .map_or((f64::NAN, f64::NAN, f64::NAN), |l| (l.width_m.value(), l.width_error_m, l.burr_height_m));
        write_legacy(
            out,
            self.electrode_thickness_m,
            self.lane_width_m,
            width,
            error,
            burr / self.burr_max_m,
            self.defect_risk,
        );
    }
}

/// Per-lane summary of a slitting run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SlitLaneResult {
    /// Lane index.
    pub lane: u32,
    /// Mean true width [m].
    pub mean_width_m: f64,
    /// Standard deviation of the true width over the segments [m].
    pub width_sigma_m: f64,
    /// Burr of the first segment [m].
    pub first_burr_height_m: f64,
    /// Largest burr over the segments [m].
    pub max_burr_height_m: f64,
    /// Wrinkled segments.
    pub wrinkled_segments: u32,
    /// Web defects inside the lane.
    pub defect_count: u32,
}

/// Final result of slitting one roll (§5.3).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SlittingResult {
    /// Number of lanes.
    pub lane_count: u32,
    /// Target lane width [m].
    pub lane_width_m: f64,
    /// Edge trim on each side [m].
    pub edge_trim_m: f64,
    /// Web length cut in this batch (calendered metres) [m].
    pub cut_length_m: f64,
    /// Stage duration [s].
    pub duration_s: f64,
    /// Burr of lane 0 at the first segment [m].
    pub first_burr_height_m: f64,
    /// `first_burr_height_m / burr_max_m`.
    pub first_burr_factor: f64,
    /// Largest burr of any lane and segment [m].
    pub max_burr_height_m: f64,
    /// `max_burr_height_m / burr_max_m`.
    pub max_burr_factor: f64,
    /// Mean foil stress [Pa].
    pub foil_stress_pa: f64,
    /// A blade change was made before this batch.
    pub blade_changed: bool,
    /// Edge radius at the start of the batch [m].
    pub start_edge_radius_m: f64,
    /// Blade state after the batch.
    pub blade: BladeState,
    /// Per-lane summaries.
    pub lanes: Vec<SlitLaneResult>,
    /// Electrode thickness at the knives at the end of the roll [m].
    pub final_electrode_thickness_m: f64,
    /// Lane 0 width at the end of the roll, as measured [m].
    pub final_width_m: f64,
    /// Lane 0 measured width − target at the end of the roll [m].
    pub final_width_error_m: f64,
    /// Lane 0 burr factor at the end of the roll.
    pub final_burr_factor: f64,
    /// Any Warning+ alarm was raised during the run.
    pub defect_risk: bool,
    /// Every alarm event of the run.
    pub alarms: Vec<crate::alarm::Alarm>,
    /// No alarm of severity Alarm or above was raised.
    pub accepted: bool,
}

impl ResultRecord for SlittingResult {
    fn legacy(&self, out: &mut LegacyRecord) {
        put_object(out, "Final Properties", |o| {
            write_legacy(
                o,
                self.final_electrode_thickness_m,
                self.lane_width_m,
                self.final_width_m,
                self.final_width_error_m,
                self.final_burr_factor,
                self.defect_risk,
            )
        });
    }

    fn accepted(&self) -> bool {
        self.accepted
    }

    fn summary(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("lanes", self.lane_count as f64),
            ("lane width mm", self.lane_width_m * 1e3),
            ("edge trim mm", self.edge_trim_m * 1e3),
            ("burr first segment um", self.first_burr_height_m * 1e6),
            ("burr factor", self.first_burr_factor),
            ("max burr um", self.max_burr_height_m * 1e6),
            ("foil stress MPa", self.foil_stress_pa * 1e-6),
        ]
    }
}

/// The slitter.
pub struct Slitting;

/// `value > threshold` starts the condition; it holds until `value < threshold·(1 − 2 %)` (§0.5).
#[inline]
fn above(active: bool, value: f64, threshold: f64) -> bool {
    if active {
        value >= threshold - HYSTERESIS_FRAC * threshold.abs()
    } else {
        value > threshold
    }
}

/// `value < threshold` starts the condition; it holds until `value > threshold·(1 + 2 %)` (§0.5).
#[inline]
fn below(active: bool, value: f64, threshold: f64) -> bool {
    if active {
        value <= threshold + HYSTERESIS_FRAC * threshold.abs()
    } else {
        value < threshold
    }
}

/// Burr level of a lane: 0 fine, 1 above 0.75·max (Warning), 2 above max (Alarm), with the
/// §0.5 hysteresis on each level.
fn burr_level(current: u8, burr_m: f64, burr_max_m: f64) -> u8 {
    if above(current == 2, burr_m, burr_max_m) {
        2
    } else if above(current >= 1, burr_m, BURR_WARNING_FRAC * burr_max_m) {
        1
    } else {
        0
    }
}

/// Lognormal scatter and spike multiplier of one cut edge over one segment.
fn edge_factor(ctx: &mut StageCtx<'_>, sigma_ln: f64, spike_mean: f64, spike_factor: f64) -> f64 {
    let mut f = 1.0;
    if sigma_ln > 0.0 {
        f *= (sigma_ln * normal(ctx.process_rng) - 0.5 * sigma_ln * sigma_ln).exp();
    }
    if spike_mean > 0.0 && poisson(ctx.process_rng, spike_mean) > 0 {
        f *= spike_factor;
    }
    f
}

impl Stage for Slitting {
    const KIND: StageKind = StageKind::Slitting;
    type Params = SlittingParams;
    type Input = CalenderedElectrode;
    type Output = SlitLanes;
    type Sample = SlittingSample;
    type Result = SlittingResult;
    type MachineState = BladeState;

    fn run(
        p: &SlittingParams,
        mut electrode: CalenderedElectrode,
        blade: &mut BladeState,
        ctx: &mut StageCtx<'_>,
        sink: &mut dyn StageSink<SlittingSample>,
    ) -> StageRun<SlitLanes, SlittingResult> {
        let mut alarms = AlarmTracker::new(Self::KIND, ctx.line, ctx.start_t_s);
        let mut forwarded = 0;

        // Blade change before the batch: a fresh machine (radius 0) or a worn blade.
        let blade_changed = blade.edge_radius_m <= 0.0 || blade.edge_radius_m > p.blade_change_edge_radius_m;
        if blade_changed {
            blade.edge_radius_m = p.blade_edge_radius_new_m;
            blade.cut_length_m = 0.0;
            blade.blade_changes += 1;
        }
        let r_start = blade.edge_radius_m;

        // Geometry of the web and the lanes.
        let film = &electrode.dry.film;
        let coating_width = film.coating_width_m;
        let foil = film.foil;
        let grid = &electrode.electrode_thickness_m;
        let n_md = grid.n_md.max(1);
        let length_scale = electrode.length_scale;
        let seg_coat = grid.segment_length_m;
        let seg_local = seg_coat * length_scale;
        let web_length = (film.roll_length_m * length_scale).min(n_md as f64 * seg_local).max(0.0);
        let v = p.slitting_speed_m_s;
        let seg_time = seg_local / v;
        let duration = web_length / v;
        let n = p.lane_count as usize;
        let w = p.lane_width_m;
        let trim = edge_trim_m(coating_width, p.lane_count, w);
        if trim < p.min_edge_trim_m * (1.0 - 1e-9) {
            let msg = format!("lanes need {:.4} m but the web is {:.4} m wide", p.required_width_m(), coating_width);
            alarms.once(
                0.0,
                "SLIT_WIDTH_RULE",
                Severity::Critical,
                "edge_trim_m",
                trim,
                p.min_edge_trim_m,
                AlarmScope::default(),
                msg,
            );
        }

        // Process variability (σ = 0 in deterministic mode: nothing is drawn).
        let var = ctx.process_variability;
        let sigma = |s: f64| if var { s } else { 0.0 };
        let (s_kp, s_vib, s_ln) =
            (sigma(p.knife_position_sigma_m), sigma(p.knife_vibration_sigma_m), sigma(p.burr_sigma_ln));
        let spike_mean = if var { p.burr_spike_rate_per_m * seg_local } else { 0.0 };
        let offsets: Vec<f64> =
            (0..=n).map(|_| if s_kp > 0.0 { s_kp * normal(ctx.process_rng) } else { 0.0 }).collect();
        let knives: Vec<f64> = offsets.iter().enumerate().map(|(k, d)| trim + k as f64 * w + d).collect();
        let mut wander = Ar1::new(sigma(p.web_wander_sigma_m), WEB_WANDER_CORRELATION_M, seg_local, ctx.process_rng);
        let mut tension_drift = Ar1::new(sigma(TENSION_SIGMA_FRAC), TENSION_TIME_CONSTANT_S, seg_time, ctx.process_rng);

        // Lanes and their defects (a defect belongs to the lane its CD position falls in).
        let mut lanes: Vec<Lane> = (0..n)
            .map(|j| Lane {
                index: j as u32,
                cd_start_m: trim + j as f64 * w,
                nominal_width_m: w,
                width_m: Vec::with_capacity(n_md),
                burr_height_m: Vec::with_capacity(n_md),
                areal_mass_kg_m2: Vec::with_capacity(n_md),
                porosity_frac: Vec::with_capacity(n_md),
                coating_thickness_m: Vec::with_capacity(n_md),
                electrode_thickness_m: Vec::with_capacity(n_md),
                wrinkle: Vec::with_capacity(n_md),
                defect_ids: Vec::new(),
            })
            .collect();
        for d in &film.defects {
            if let Some(j) = (0..n).find(|&j| d.cd_position_m >= knives[j] && d.cd_position_m < knives[j + 1]) {
                lanes[j].defect_ids.push(d.id);
            }
        }
        let mut next_defect_id = film.defects.iter().map(|d| d.id + 1).max().unwrap_or(1);

        // Alarm states, kept here so the tracker is only called on an edge.
        let mut width_active = vec![false; n];
        let mut burr_levels = vec![0u8; n];
        let (mut worn_active, mut low_active, mut high_active) = (false, false, false);
        let set_tension = p.web_tension_n;
        let check = |code, severity, signal, threshold| Check { code, severity, signal, threshold };
        let width_check = check("SLIT_WIDTH_OUT_OF_TOLERANCE", Severity::Alarm, "width_error_m", p.width_tolerance_m);
        let burr_checks = [
            None,
            Some(check("SLIT_BURR_HIGH", Severity::Warning, "burr_height_m", BURR_WARNING_FRAC * p.burr_max_m)),
            Some(check("SLIT_BURR_HIGH", Severity::Alarm, "burr_height_m", p.burr_max_m)),
        ];
        let worn_check =
            check("SLIT_BLADE_WORN", Severity::Warning, "blade_edge_radius_m", p.blade_change_edge_radius_m);
        let low_check =
            check("SLIT_TENSION_LOW", Severity::Warning, "web_tension_n", WRINKLE_TENSION_FRAC * set_tension);
        let high_check = check(
            "SLIT_TENSION_HIGH",
            Severity::Alarm,
            "foil_stress_pa",
            FOIL_STRESS_LIMIT_FRAC * foil.yield_stress_pa,
        );

        // F07 (MODELS.md §13): a chipped or fast-wearing knife raises the burr of the two
        // lanes it cuts (lane k − 1's right edge and lane k's left edge).
        let faults = ctx.faults;
        let blade_faults: Vec<(usize, &crate::fault::ActiveFault)> = faults
            .of(FaultCode::F07SlitBladeWear)
            .map(|f| ((f.spec.magnitude.knife.unwrap_or(3) as usize).min(n), f))
            .collect();
        let mut blade_regions: Vec<crate::fault::FaultRegion> = Vec::new();
        let mut times = sample_times(duration, p.sample_interval_s).peekable();
        let mut last: Option<SlittingSample> = None;
        let (mut stress_sum, mut max_burr) = (0.0, 0.0f64);
        let mut lane_burr_first = vec![0.0; n];

        for k in 0..n_md {
            let t_k = k as f64 * seg_time;
            let x_coat = k as f64 * seg_coat;
            let radius = edge_radius_m(r_start, p.blade_wear_rate_m_per_m, k as f64 * seg_local);
            // edge radius of knife `i` with the active blade faults
            let mut knife_radius = vec![radius; n + 1];
            for (knife, f) in &blade_faults {
                let level = f.spec.level(t_k);
                if level <= 0.0 {
                    continue;
                }
                let m = &f.spec.magnitude;
                let cut_since = (k as f64 * seg_local - v * f.spec.onset).max(0.0);
                let extra = match m.wear_rate_factor {
                    Some(factor) if m.edge_radius_step_m.is_none() => {
                        (factor - 1.0) * p.blade_wear_rate_m_per_m * cut_since
                    }
                    _ => m.edge_radius_step_m.unwrap_or(3e-6),
                };
                knife_radius[*knife] += level * extra;
                let lanes_hit: Vec<usize> =
                    [knife.checked_sub(1), Some(*knife)].into_iter().flatten().filter(|&j| j < n).collect();
                for &j in &lanes_hit {
                    faults.touch(
                        f.label_id,
                        At {
                            stage_time_s: t_k,
                            position_m: Some(x_coat),
                            lane: Some(j as u32),
                            cd_position_m: Some(knives[*knife]),
                            cell_id: None,
                        },
                    );
                }
                let (y0, y1) = (knives[lanes_hit[0]] + 1e-9, knives[lanes_hit[lanes_hit.len() - 1] + 1] - 1e-9);
                match blade_regions.iter_mut().find(|r| r.label_id == f.label_id) {
                    Some(r) => r.md_end_m = x_coat + seg_coat,
                    None => blade_regions.push(crate::fault::FaultRegion {
                        label_id: f.label_id,
                        md_start_m: x_coat,
                        md_end_m: x_coat + seg_coat,
                        cd_start_m: y0,
                        cd_end_m: y1,
                    }),
                }
            }
            // Lane widths: w_j = w + δ_{j+1} − δ_j + ν.
            for (j, lane) in lanes.iter_mut().enumerate() {
                let nu = if s_vib > 0.0 { s_vib * normal(ctx.process_rng) } else { 0.0 };
                lane.width_m.push(w + (offsets[j + 1] - offsets[j]) + nu);
            }
            let u = if k > 0 { wander.step(ctx.process_rng) } else { wander.value() };
            for (j, lane) in lanes.iter_mut().enumerate() {
                let (y0, y1) = (knives[j] + u, knives[j + 1] + u);
                let thickness = electrode.electrode_thickness_m.band_mean(k, y0, y1);
                lane.electrode_thickness_m.push(thickness);
                lane.areal_mass_kg_m2.push(electrode.areal_mass_kg_m2.band_mean(k, y0, y1));
                lane.porosity_frac.push(electrode.porosity_frac.band_mean(k, y0, y1));
                lane.coating_thickness_m.push(electrode.coating_thickness_m.band_mean(k, y0, y1));
                let left = burr_height_m(p, knife_radius[j], thickness)
                    * edge_factor(ctx, s_ln, spike_mean, p.burr_spike_factor);
                let right = burr_height_m(p, knife_radius[j + 1], thickness)
                    * edge_factor(ctx, s_ln, spike_mean, p.burr_spike_factor);
                let burr = left.max(right);
                lane.burr_height_m.push(burr);
                max_burr = max_burr.max(burr);
                if k == 0 {
                    lane_burr_first[j] = burr;
                }
            }
            let mut tension =
                set_tension * (1.0 + if k > 0 { tension_drift.step(ctx.process_rng) } else { tension_drift.value() });
            // F08 (MODELS.md §13): T(t) = T·(1 + a·sin 2πft) while the oscillation lasts
            let mut oscillation_label = None;
            for f in faults.of(FaultCode::F08WebTensionOscillation) {
                let level = f.spec.level(t_k);
                if level > 0.0 {
                    let m = &f.spec.magnitude;
                    let phase = 2.0 * std::f64::consts::PI * m.frequency_hz.unwrap_or(0.5) * (t_k - f.spec.onset);
                    tension *= 1.0 + level * m.amplitude_frac.unwrap_or(0.4) * phase.sin();
                    faults.touch(f.label_id, At { stage_time_s: t_k, position_m: Some(x_coat), ..At::default() });
                    oscillation_label = Some(f.label_id);
                }
            }
            let stress = foil_stress_pa(tension, coating_width, foil.thickness_m);
            stress_sum += stress;

            // Wrinkles: a slack web wrinkles every lane of the segment.
            let wrinkled = tension < WRINKLE_TENSION_FRAC * set_tension;
            for (j, lane) in lanes.iter_mut().enumerate() {
                lane.wrinkle.push(wrinkled);
                if wrinkled {
                    lane.defect_ids.push(next_defect_id);
                    electrode.dry.film.defects.push(Defect {
                        id: next_defect_id,
                        kind: DefectKind::Wrinkle,
                        origin_stage: Self::KIND.name().into(),
                        md_position_m: x_coat + 0.5 * seg_coat,
                        cd_position_m: 0.5 * (knives[j] + knives[j + 1]),
                        length_m: seg_coat,
                        width_m: w,
                        size_m: WRINKLE_SIZE_M,
                        severity: DefectSeverity::Major,
                        detected: false,
                        false_call: false,
                        fault_label: oscillation_label,
                    });
                    next_defect_id += 1;
                }
            }
            if wrinkled {
                if let Some(f) = electrode.dry.film.segment_flags.get_mut(k) {
                    f.set(SegmentFlags::WRINKLE);
                }
            }

            // Alarms of this segment.
            for (j, lane) in lanes.iter().enumerate() {
                let at = || AlarmScope { position_m: Some(x_coat), lane: Some(j as u32), cell_id: None };
                let error = (lane.width_m[k] - w).abs();
                let cond = above(width_active[j], error, p.width_tolerance_m);
                if cond != width_active[j] {
                    width_active[j] = cond;
                    width_check.edge(&mut alarms, t_k, cond, error, at(), || {
                        format!("lane {j} width off target by {:.1} µm", error * 1e6)
                    });
                }
                let burr = lane.burr_height_m[k];
                let level = burr_level(burr_levels[j], burr, p.burr_max_m);
                if level != burr_levels[j] {
                    if let Some(old) = burr_checks.get(burr_levels[j] as usize).and_then(Option::as_ref) {
                        old.edge(&mut alarms, t_k, false, burr, at(), String::new);
                    }
                    if let Some(new) = burr_checks.get(level as usize).and_then(Option::as_ref) {
                        new.edge(&mut alarms, t_k, true, burr, at(), || format!("lane {j} burr {:.2} µm", burr * 1e6));
                    }
                    burr_levels[j] = level;
                }
            }
            let here = || AlarmScope { position_m: Some(x_coat), lane: None, cell_id: None };
            let cond = above(worn_active, radius, p.blade_change_edge_radius_m);
            if cond != worn_active {
                worn_active = cond;
                worn_check.edge(&mut alarms, t_k, cond, radius, here(), || {
                    format!("edge radius {:.2} µm: change the blade before the next batch", radius * 1e6)
                });
            }
            let cond = below(low_active, tension, low_check.threshold);
            if cond != low_active {
                low_active = cond;
                low_check.edge(&mut alarms, t_k, cond, tension, here(), || {
                    format!("web tension {tension:.1} N below {:.1} N: wrinkles", low_check.threshold)
                });
            }
            let cond = above(high_active, stress, high_check.threshold);
            if cond != high_active {
                high_active = cond;
                high_check.edge(&mut alarms, t_k, cond, stress, here(), || {
                    format!("foil stress {:.1} MPa above 30 % of yield", stress * 1e-6)
                });
            }
            for a in &alarms.events[forwarded..] {
                sink.alarm(a);
            }
            forwarded = alarms.len();

            // Samples while this segment is at the knives.
            let t_next = if k + 1 == n_md { f64::INFINITY } else { (k + 1) as f64 * seg_time };
            while let Some(&t) = times.peek() {
                if t >= t_next {
                    break;
                }
                times.next();
                let cut = (v * t).min(web_length);
                let speed = SPEED_SENSOR.measure(v, ctx.sensor_noise, ctx.sensor_rng);
                let tension_r = TENSION_SENSOR.measure(tension, ctx.sensor_noise, ctx.sensor_rng);
                let tension_r = ctx.faults.corrupt("web_tension_n", t, tension_r);
                let lane_samples = lanes
                    .iter()
                    .map(|lane| {
                        let width = WIDTH_SENSOR.measure(lane.width_m[k], ctx.sensor_noise, ctx.sensor_rng);
                        SlittingLaneSample {
                            lane: lane.index,
                            width_m: width,
                            width_error_m: width.value() - w,
                            burr_height_m: lane.burr_height_m[k],
                        }
                    })
                    .collect();
                let sample = SlittingSample {
                    t_s: ctx.start_t_s + t,
                    stage_time_s: t,
                    position_m: cut / length_scale,
                    slitting_speed_m_s: speed,
                    web_tension_n: tension_r,
                    foil_stress_pa: stress,
                    blade_edge_radius_m: edge_radius_m(r_start, p.blade_wear_rate_m_per_m, cut),
                    electrode_thickness_m: electrode.electrode_thickness_m.row_mean(k),
                    lanes: lane_samples,
                    lane_width_m: w,
                    burr_max_m: p.burr_max_m,
                    defect_risk: alarms.any_active(Severity::Warning),
                    fault_labels: ctx.faults.labels_at(t, Some(cut / length_scale)),
                };
                if times.peek().is_none() {
                    last = Some(sample.clone());
                }
                sink.sample(sample);
            }
        }

        // Blade state after the batch.
        blade.edge_radius_m = edge_radius_m(r_start, p.blade_wear_rate_m_per_m, web_length);
        blade.cut_length_m += web_length;

        let lane_results = lanes
            .iter()
            .zip(&lane_burr_first)
            .map(|(lane, &first)| {
                let m = lane.width_m.len().max(1) as f64;
                // deviations from the target keep a perfect lane at exactly σ = 0
                let bias = lane.width_m.iter().map(|x| x - w).sum::<f64>() / m;
                let var = lane.width_m.iter().map(|x| (x - w - bias) * (x - w - bias)).sum::<f64>() / m;
                let mean = w + bias;
                SlitLaneResult {
                    lane: lane.index,
                    mean_width_m: mean,
                    width_sigma_m: var.sqrt(),
                    first_burr_height_m: first,
                    max_burr_height_m: lane.burr_height_m.iter().copied().fold(0.0, f64::max),
                    wrinkled_segments: lane.wrinkle.iter().filter(|&&b| b).count() as u32,
                    defect_count: lane.defect_ids.len() as u32,
                }
            })
            .collect::<Vec<_>>();
        let first_burr = lane_burr_first.first().copied().unwrap_or(0.0);
        let (final_thickness, final_width, final_error, final_burr) = last
            .as_ref()
            .and_then(|s| {
                s.lanes.first().map(|l| (s.electrode_thickness_m, l.width_m.value(), l.width_error_m, l.burr_height_m))
            })
            .unwrap_or((0.0, w, 0.0, 0.0));
        let result = SlittingResult {
            lane_count: p.lane_count,
            lane_width_m: w,
            edge_trim_m: trim,
            cut_length_m: web_length,
            duration_s: duration,
            first_burr_height_m: first_burr,
            first_burr_factor: first_burr / p.burr_max_m,
            max_burr_height_m: max_burr,
            max_burr_factor: max_burr / p.burr_max_m,
            foil_stress_pa: stress_sum / n_md as f64,
            blade_changed,
            start_edge_radius_m: r_start,
            blade: blade.clone(),
            lanes: lane_results,
            final_electrode_thickness_m: final_thickness,
            final_width_m: final_width,
            final_width_error_m: final_error,
            final_burr_factor: final_burr / p.burr_max_m,
            defect_risk: alarms.any_raised(Severity::Warning),
            alarms: alarms.events.clone(),
            accepted: !alarms.any_raised(Severity::Alarm),
        };
        electrode.dry.film.fault_regions.extend(blade_regions);
        let output = SlitLanes { electrode, lanes, edge_trim_m: trim, knife_positions_m: knives, blade: blade.clone() };
        StageRun { output, result, duration_s: duration }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_follow_the_lane_layout() {
        assert!((edge_trim_m(0.50, 8, 0.061) - 0.006).abs() < 1e-12);
        assert!((edge_trim_m(0.52, 8, 0.063) - 0.008).abs() < 1e-12);
    }

    #[test]
    fn burr_grows_with_edge_radius_and_clearance_error() {
        let p = SlittingParams::cathode();
        let fresh = burr_height_m(&p, 1e-6, 141.82e-6);
        assert!((fresh - 3.014e-6).abs() < 0.005 * 3.014e-6, "{fresh}");
        assert!(burr_height_m(&p, 2e-6, 141.82e-6) > fresh);
        // at the optimal clearance the bracket is 1
        let opt = burr_height_m(&p, 1e-6, p.blade_clearance_m / p.clearance_opt_frac);
        assert!((opt - 3e-6).abs() < 1e-15);
    }

    #[test]
    fn burr_level_has_hysteresis() {
        let max = 8e-6;
        assert_eq!(burr_level(0, 6.1e-6, max), 1);
        assert_eq!(burr_level(1, 5.95e-6, max), 1);
        assert_eq!(burr_level(1, 5.8e-6, max), 0);
        assert_eq!(burr_level(1, 8.1e-6, max), 2);
        assert_eq!(burr_level(2, 7.9e-6, max), 2);
        assert_eq!(burr_level(2, 7.7e-6, max), 1);
    }

    #[test]
    fn foil_stress_of_the_default_webs() {
        assert!((foil_stress_pa(60.0, 0.50, 15e-6) - 8.0e6).abs() < 1.0);
        assert!((foil_stress_pa(60.0, 0.52, 8e-6) / 14.4e6 - 1.0).abs() < 0.005);
    }
}
