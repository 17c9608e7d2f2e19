//! Rewinding (reel preparation): unwind the inspected lanes, cut out rejected segments and
//! splice, and wind each lane onto a winder-ready reel with taper tension; log the dry-room
//! dew point and the electrodes' moisture (MODELS.md §7). `InspectedLanes` in,
//! `ElectrodeReels` out.
//!
//! The cut-out plan of every lane is made first from the inspection verdicts ([`plan_cuts`]):
//! a run of failed segments in the middle of the roll is widened by `splice_margin_m` on
//! each side, removed, and the pieces on either side are spliced; a run touching the roll
//! start or end is removed exactly (no splice, no margin); pieces shorter than
//! `min_piece_length_m` are discarded. All lanes unwind together at `rewinding_speed_m_s`;
//! the machine stops `splice_time_s` wherever at least one lane splices. The model steps
//! one web segment at a time (shortened to land on every sample time, splice stop and
//! segment boundary) and integrates, per lane, the reel build-up
//! `D² = D_c² + (4/π)·∫t_e dL` and the core pressure `dp = T·dL/(2π·W·R²)` exactly over each
//! stretch of constant electrode thickness, with the hyperbolic taper tension
//! `T = T_0·(1 − k_t·(1 − D_c/D))·(1 + z)`. The coating moisture follows
//! `dw/dt = (k_iso·p_w(T_d) − w)/τ_m` from equilibrium with the dry room.
//!
//! Random draws (process stream, skipped in deterministic mode): per lane the first tension
//! drift z and edge offset; from the second segment on, per segment and lane, one tension
//! step and one edge step. Sensor stream, per sample: dew point, then per lane diameter,
//! tension and edge offset.

use crate::alarm::{Alarm, AlarmScope, AlarmTracker, Check, Severity, HYSTERESIS_FRAC};
use crate::defect::{Defect, DefectKind, DefectSeverity};
use crate::error::{check_non_negative, check_open_min, check_range, ParamError};
use crate::legacy::{put, put_object, LegacyRecord};
use crate::material::water_vapour_pressure_pa;
use crate::random::Ar1;
use crate::reading::{Reading, Sensor};
use crate::stage::{
    sample_times, Line, ResultRecord, SampleRecord, Stage, StageCtx, StageKind, StageParams, StageRun, StageSink,
};
use crate::stages::inspection::InspectedLanes;
use crate::stages::slitting::{SlitLanes, WRINKLE_SIZE_M};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// Correlation time of the winder tension drift z [s]. [E] (as the slitter's load cell, §5.2)
pub const TENSION_TIME_CONSTANT_S: f64 = 2.0;
/// Correlation length of the lateral edge position [m]. [E] (as the slitter's web wander, §5.2)
pub const EDGE_CORRELATION_M: f64 = 5.0;
/// An out-of-band tension lasting longer than this wound length wrinkles the reel [m] (§7.3).
pub const WRINKLE_RUN_LENGTH_M: f64 = 10.0;
/// A reel whose edge wanders beyond this multiple of `telescoping_limit_m` is scrapped (§7.3).
pub const SCRAP_TELESCOPING_FACTOR: f64 = 3.0;
/// Length of a splice tape along the web [m]. [E]
pub const SPLICE_LENGTH_M: f64 = 0.03;
/// Dew-point sensor: σ_a 0.5 K. [E]
pub const DEW_POINT_SENSOR: Sensor = Sensor::absolute(0.5);
/// Reel-diameter gauge: σ_a 0.1 mm. [E]
pub const DIAMETER_SENSOR: Sensor = Sensor::absolute(1e-4);
/// Winder tension load cell: σ_r 1 %. [E] (as the slitter's, §5.2)
pub const TENSION_SENSOR: Sensor = Sensor::relative(0.01);
/// Edge-position sensor: σ_a 10 µm. [E]
pub const EDGE_SENSOR: Sensor = Sensor::absolute(1e-5);

/// A kept piece of a lane on its reel: reel positions `[reel_start_m, reel_start_m +
/// length_m)` hold coating positions `[coating_start_m, coating_start_m +
/// length_m/length_scale)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReelPiece {
    /// Start on the reel [m].
    pub reel_start_m: f64,
    /// Start in coating coordinates [m].
    pub coating_start_m: f64,
    /// Length on the reel [m].
    pub length_m: f64,
}

/// One wound reel (one lane).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reel {
    /// Lane index.
    pub lane: u32,
    /// Reel id, e.g. `B1-A-L3` (batch, line initial, lane).
    pub reel_id: String,
    /// Wound length [m].
    pub length_m: f64,
    /// Map reel position → coating position, in reel order.
    pub pieces: Vec<ReelPiece>,
    /// Splice positions on the reel [m].
    pub splices_m: Vec<f64>,
    /// Discarded length (cut-outs, short pieces) [m].
    pub discarded_length_m: f64,
    /// Outer diameter [m].
    pub reel_diameter_m: f64,
    /// Core pressure [Pa].
    pub core_pressure_pa: f64,
    /// Water content of the wound electrode coating [kg water / kg coating].
    pub moisture_mass_frac: f64,
    /// Scrapped (telescoped beyond 3 × limit).
    pub scrapped: bool,
    /// Winding tension at the end of the reel [N].
    pub end_tension_n: f64,
}

impl Reel {
    /// Coating position of reel position `reel_m` (None beyond the wound length).
    pub fn coating_position_m(&self, reel_m: f64, length_scale: f64) -> Option<f64> {
        let i = self.pieces.partition_point(|p| p.reel_start_m <= reel_m);
        let p = self.pieces.get(i.checked_sub(1)?)?;
        let off = reel_m - p.reel_start_m;
        (off <= p.length_m + 1e-9).then(|| p.coating_start_m + off / length_scale)
    }
}

/// The reels of one line and batch (MODELS.md §0.9), with the inspected web they came
/// from so that cells can look up local electrode properties.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ElectrodeReels {
    /// The inspected lanes (properties per lane-segment, defects; rewinding adds its
    /// `Splice` and `Wrinkle` defects to the web's list and to the lanes' ids).
    pub inspected: InspectedLanes,
    /// One reel per lane, same order as the lanes.
    pub reels: Vec<Reel>,
}

/// Rewinder settings and the dry-room inputs of the moisture model. Defaults: MODELS.md
/// §7.1 (moisture constants from §8.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RewindingParams {
    /// Web speed; [0.05, 5]. [U]
    pub rewinding_speed_m_s: f64,
    /// Reel core diameter D_c (6-inch core); [0.02, 1]. [L]
    pub core_diameter_m: f64,
    /// Tension per lane at the core T_0; (0, 500]. [U]
    pub initial_tension_n: f64,
    /// Hyperbolic taper k_t; [0, 0.9]. [L]
    pub taper_frac: f64,
    /// Relative tension noise σ of z; ≥ 0. [C]
    pub tension_sigma_frac: f64,
    /// Allowed band of T/T_taper − 1; ≥ 0. [C]
    pub tension_window_frac: f64,
    /// Machine stop per splice; ≥ 0. [C]
    pub splice_time_s: f64,
    /// Extra length removed on each side of a spliced cut-out; ≥ 0. [C]
    pub splice_margin_m: f64,
    /// Pieces shorter than this between cuts are discarded; ≥ 0. [C]
    pub min_piece_length_m: f64,
    /// Lateral edge position σ (AR(1), ℓ = 5 m); ≥ 0. [C]
    pub edge_guide_sigma_m: f64,
    /// Edge offset beyond which the reel telescopes; ≥ 0. [C]
    pub telescoping_limit_m: f64,
    /// Longest reel (0 = no limit; material beyond it is discarded); ≥ 0. [E]
    pub max_reel_length_m: f64,
    /// Sample interval; (0, 600]. [E]
    pub sample_interval_s: f64,
    /// Dry-room dew point T_d; [−80, 20]. [L]
    pub dew_point_degc: f64,
    /// Moisture isotherm k_iso of the coating (anode 6e-6, cathode 8e-6); ≥ 0. [C]
    pub moisture_coeff_per_pa: f64,
    /// Moisture uptake time constant τ_m; ≥ 0 (0 = always at equilibrium). [C]
    pub moisture_time_constant_s: f64,
}

impl RewindingParams {
    /// Anode defaults (§7.1; k_iso 6e-6 1/Pa from §8.1).
    pub fn anode() -> Self {
        Self { moisture_coeff_per_pa: 6e-6, ..Self::cathode() }
    }

    /// Cathode defaults (§7.1; k_iso 8e-6 1/Pa from §8.1).
    pub fn cathode() -> Self {
        Self {
            rewinding_speed_m_s: 1.0,
            core_diameter_m: 0.152,
            initial_tension_n: 15.0,
            taper_frac: 0.3,
            tension_sigma_frac: 0.01,
            tension_window_frac: 0.2,
            splice_time_s: 30.0,
            splice_margin_m: 0.5,
            min_piece_length_m: 5.0,
            edge_guide_sigma_m: 5e-5,
            telescoping_limit_m: 5e-4,
            max_reel_length_m: 0.0,
            sample_interval_s: 2.0,
            dew_point_degc: -40.0,
            moisture_coeff_per_pa: 8e-6,
            moisture_time_constant_s: 7200.0,
        }
    }
}

impl Default for RewindingParams {
    fn default() -> Self {
        Self::cathode()
    }
}

impl StageParams for RewindingParams {
    fn validate(&self) -> Result<(), ParamError> {
        check_range("rewinding_speed_m_s", self.rewinding_speed_m_s, 0.05, 5.0, "m/s")?;
        check_range("core_diameter_m", self.core_diameter_m, 0.02, 1.0, "m")?;
        check_open_min("initial_tension_n", self.initial_tension_n, 0.0, 500.0, "N")?;
        check_range("taper_frac", self.taper_frac, 0.0, 0.9, "")?;
        check_non_negative("tension_sigma_frac", self.tension_sigma_frac, "")?;
        check_non_negative("tension_window_frac", self.tension_window_frac, "")?;
        check_non_negative("splice_time_s", self.splice_time_s, "s")?;
        check_non_negative("splice_margin_m", self.splice_margin_m, "m")?;
        check_non_negative("min_piece_length_m", self.min_piece_length_m, "m")?;
        check_non_negative("edge_guide_sigma_m", self.edge_guide_sigma_m, "m")?;
        check_non_negative("telescoping_limit_m", self.telescoping_limit_m, "m")?;
        check_non_negative("max_reel_length_m", self.max_reel_length_m, "m")?;
        check_open_min("sample_interval_s", self.sample_interval_s, 0.0, 600.0, "s")?;
        check_range("dew_point_degc", self.dew_point_degc, -80.0, 20.0, "°C")?;
        check_non_negative("moisture_coeff_per_pa", self.moisture_coeff_per_pa, "1/Pa")?;
        check_non_negative("moisture_time_constant_s", self.moisture_time_constant_s, "s")
    }
}

/// Reel diameter after winding `thickness_integral_m2 = ∫ t_e dL` onto a core of
/// `core_diameter_m`: `D² = D_c² + (4/π)·∫ t_e dL` (§7.2) [L] [m].
pub fn reel_diameter_m(core_diameter_m: f64, thickness_integral_m2: f64) -> f64 {
    (core_diameter_m * core_diameter_m + 4.0 / PI * thickness_integral_m2).sqrt()
}

/// Hyperbolic taper tension `T = T_0·(1 − k_t·(1 − D_c/D))` (§7.2; Roisum 1994) [L] [N].
pub fn taper_tension_n(initial_tension_n: f64, taper_frac: f64, core_diameter_m: f64, diameter_m: f64) -> f64 {
    initial_tension_n * (1.0 - taper_frac * (1.0 - core_diameter_m / diameter_m))
}

/// Core-pressure gained while the reel grows from `d0_m` to `d1_m` with constant electrode
/// thickness, lane width and taper: the exact integral of `dp = T·dL/(2π·W·R²)` (§7.2) [E],
/// `(T_0/(W·t_e))·[(1 − k_t)·ln(D_1/D_0) + k_t·D_c·(1/D_0 − 1/D_1)]` [Pa].
pub fn core_pressure_increment_pa(
    initial_tension_n: f64,
    taper_frac: f64,
    lane_width_m: f64,
    electrode_thickness_m: f64,
    core_diameter_m: f64,
    d0_m: f64,
    d1_m: f64,
) -> f64 {
    let stiffness = lane_width_m * electrode_thickness_m;
    if stiffness <= 0.0 || d0_m <= 0.0 || d1_m <= 0.0 {
        return 0.0;
    }
    initial_tension_n / stiffness
        * ((1.0 - taper_frac) * (d1_m / d0_m).ln() + taper_frac * core_diameter_m * (1.0 / d0_m - 1.0 / d1_m))
}

/// Core pressure of a reel of constant thickness wound from the core to `diameter_m`
/// (§7.2 closed form): `p_core = (T_0/(W·t_e))·[(1 − k_t)·ln(D/D_c) + k_t·(1 − D_c/D)]` [Pa].
pub fn core_pressure_pa(
    initial_tension_n: f64,
    taper_frac: f64,
    lane_width_m: f64,
    electrode_thickness_m: f64,
    core_diameter_m: f64,
    diameter_m: f64,
) -> f64 {
    core_pressure_increment_pa(
        initial_tension_n,
        taper_frac,
        lane_width_m,
        electrode_thickness_m,
        core_diameter_m,
        core_diameter_m,
        diameter_m,
    )
}

/// Moisture of a coating in equilibrium with the dry room, `w_eq = k_iso·p_w(T_d)` (§7.2,
/// §8.2) [kg water / kg coating].
pub fn equilibrium_moisture_frac(moisture_coeff_per_pa: f64, dew_point_degc: f64) -> f64 {
    moisture_coeff_per_pa * water_vapour_pressure_pa(dew_point_degc)
}

/// The cut-out plan of one lane, in lane (calendered) metres along the unwound input.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CutPlan {
    /// Kept pieces `[start, end)`, in order; consecutive pieces are spliced.
    pub pieces: Vec<(f64, f64)>,
    /// Unwind positions of the splices (the start of every piece after the first).
    pub splices_m: Vec<f64>,
    /// Input length not wound (cut-outs, margins, short pieces, beyond the reel limit) [m].
    pub discarded_length_m: f64,
}

/// Plans the cut-outs of one lane (§7.2). `segment_ok[k]` is the inspection verdict of
/// segment k, which covers `[k·segment_m, min((k + 1)·segment_m, length_m))`. A run of
/// failed segments with kept material on both sides is widened by `margin_m` on each side
/// and spliced across; a run touching the roll start or end is removed exactly. Pieces
/// shorter than `min_piece_m` are discarded (and the plan is redone, so a cut that now
/// reaches the roll start or end loses its margins). With `max_length_m > 0` the reel ends
/// there and the rest is discarded.
pub fn plan_cuts(
    segment_ok: &[bool],
    segment_m: f64,
    length_m: f64,
    margin_m: f64,
    min_piece_m: f64,
    max_length_m: f64,
) -> CutPlan {
    const EPS: f64 = 1e-9;
    let seg_end = |k: usize| ((k + 1) as f64 * segment_m).min(length_m);
    // Raw failed runs.
    let mut failed: Vec<(f64, f64)> = Vec::new();
    for (k, &ok) in segment_ok.iter().enumerate() {
        let a = k as f64 * segment_m;
        if ok || a >= length_m {
            continue;
        }
        match failed.last_mut() {
            Some(last) if (last.1 - a).abs() <= EPS => last.1 = seg_end(k),
            _ => failed.push((a, seg_end(k))),
        }
    }
    let pieces = loop {
        // Gaps between failed runs, shrunk by the margins of the middle cuts beside them.
        let mut pieces = Vec::with_capacity(failed.len() + 1);
        let mut discard = Vec::new();
        let mut start = 0.0;
        let middle = |(a, b): (f64, f64)| a > EPS && b < length_m - EPS;
        for i in 0..=failed.len() {
            let end = failed.get(i).map_or(length_m, |f| f.0);
            if end - start > EPS {
                let left = if i > 0 && middle(failed[i - 1]) { margin_m } else { 0.0 };
                let right = if i < failed.len() && middle(failed[i]) { margin_m } else { 0.0 };
                let (a, b) = (start + left, end - right);
                if b - a < min_piece_m.max(EPS) {
                    discard.push((start, end));
                } else {
                    pieces.push((a, b));
                }
            }
            if let Some(f) = failed.get(i) {
                start = f.1;
            }
        }
        if discard.is_empty() {
            break pieces;
        }
        failed.extend(discard);
        failed.sort_by(|x, y| x.0.total_cmp(&y.0));
        let mut merged: Vec<(f64, f64)> = Vec::with_capacity(failed.len());
        for f in failed {
            match merged.last_mut() {
                Some(last) if f.0 <= last.1 + EPS => last.1 = last.1.max(f.1),
                _ => merged.push(f),
            }
        }
        failed = merged;
    };
    // Reel length limit.
    let mut kept = Vec::with_capacity(pieces.len());
    let mut wound = 0.0;
    for (a, b) in pieces {
        let room = if max_length_m > 0.0 { max_length_m - wound } else { f64::INFINITY };
        if room <= EPS {
            break;
        }
        let b = b.min(a + room);
        wound += b - a;
        kept.push((a, b));
    }
    CutPlan {
        splices_m: kept.iter().skip(1).map(|p| p.0).collect(),
        discarded_length_m: (length_m - wound).max(0.0),
        pieces: kept,
    }
}

/// One lane in a rewinding sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RewindingLaneSample {
    /// Lane index.
    pub lane: u32,
    /// Wound length so far [m].
    pub wound_length_m: f64,
    /// Reel diameter [m].
    pub reel_diameter_m: Reading,
    /// Winding tension [N].
    pub web_tension_n: Reading,
    /// Core pressure ("roll hardness") [Pa].
    pub core_pressure_pa: f64,
    /// Lateral edge offset [m].
    pub edge_offset_m: Reading,
    /// Splices made so far.
    pub splices: u32,
}

/// One rewinding sample (§7.3).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RewindingSample {
    /// Plant time [s].
    pub t_s: f64,
    /// Stage time [s].
    pub stage_time_s: f64,
    /// Dry-room dew point [°C].
    pub dew_point_degc: Reading,
    /// Every lane, operator side first.
    pub lanes: Vec<RewindingLaneSample>,
    /// Any Warning+ alarm of this stage active at this instant.
    pub defect_risk: bool,
    /// Fault labels active on this sample.
    pub fault_labels: Vec<u32>,
}

/// Writes the §7.4 legacy keys for one lane.
fn write_legacy(out: &mut LegacyRecord, dew_point: &Reading, l: &RewindingLaneSample) {
    put(out, "Enviromental Control", dew_point.value());
    put(out, "Wound length", l.wound_length_m);
    put(out, "Roll diameter", l.reel_diameter_m.value());
    put(out, "Roll hardness", l.core_pressure_pa);
    put(out, "Web tension", l.web_tension_n.value());
}

impl SampleRecord for RewindingSample {
    fn stage_time_s(&self) -> f64 {
        self.stage_time_s
    }

    fn legacy(&self, out: &mut LegacyRecord) {
        if let Some(l) = self.lanes.first() {
            write_legacy(out, &self.dew_point_degc, l);
        }
    }
}

/// Per-reel summary of a rewinding run (§7.3).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReelSummary {
    /// Lane index.
    pub lane: u32,
    /// Reel id.
    pub reel_id: String,
    /// Wound length [m].
    pub length_m: f64,
    /// Outer diameter [m].
    pub reel_diameter_m: f64,
    /// Splices.
    pub splices: u32,
    /// Discarded length [m].
    pub discarded_length_m: f64,
    /// Core pressure [Pa].
    pub core_pressure_pa: f64,
    /// Winding tension at the end [N].
    pub end_tension_n: f64,
    /// Coating water content [kg/kg].
    pub moisture_mass_frac: f64,
    /// Scrapped by telescoping.
    pub scrapped: bool,
}

/// Final result of rewinding one roll (§7.3).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RewindingResult {
    /// Stage duration [s].
    pub duration_s: f64,
    /// Input length per lane (calendered metres) [m].
    pub unwound_length_m: f64,
    /// Machine stops for splicing.
    pub splice_stops: u32,
    /// One summary per reel.
    pub reels: Vec<ReelSummary>,
    /// Dew point at the end [°C].
    pub final_dew_point_degc: Option<Reading>,
    /// Lane 0 at the end (for the legacy final keys).
    pub final_lane: Option<RewindingLaneSample>,
    /// Every alarm event of the run.
    pub alarms: Vec<Alarm>,
    /// No alarm of severity Alarm or above was raised.
    pub accepted: bool,
}

impl ResultRecord for RewindingResult {
    fn legacy(&self, out: &mut LegacyRecord) {
        put_object(out, "Final Properties", |o| {
            if let (Some(d), Some(l)) = (&self.final_dew_point_degc, &self.final_lane) {
                write_legacy(o, d, l);
            }
        });
    }

    fn accepted(&self) -> bool {
        self.accepted
    }

    fn summary(&self) -> Vec<(&'static str, f64)> {
        let first = self.reels.first();
        vec![
            ("reel length m", first.map_or(0.0, |r| r.length_m)),
            ("reel diameter m", first.map_or(0.0, |r| r.reel_diameter_m)),
            ("core pressure MPa", first.map_or(0.0, |r| r.core_pressure_pa * 1e-6)),
            ("end tension N", first.map_or(0.0, |r| r.end_tension_n)),
            ("splices", self.reels.iter().map(|r| r.splices as f64).sum()),
            ("moisture ppm", first.map_or(0.0, |r| r.moisture_mass_frac * 1e6)),
        ]
    }
}

/// The rewinder.
pub struct Rewinding;

/// `value > threshold` starts the condition; it holds until `value < threshold·(1 − 2 %)` (§0.5).
#[inline]
fn above(active: bool, value: f64, threshold: f64) -> bool {
    if active {
        value >= threshold - HYSTERESIS_FRAC * threshold.abs()
    } else {
        value > threshold
    }
}

/// Winding state of one lane.
struct LaneWinder {
    plan: CutPlan,
    piece: usize,
    wound_m: f64,
    thickness_integral_m2: f64,
    diameter_m: f64,
    core_pressure_pa: f64,
    splices: u32,
    tension: Ar1,
    edge: Ar1,
    band_level: u8,
    band_start_wound_m: f64,
    telescoping: bool,
    scrapped: bool,
}

impl LaneWinder {
    fn new(p: &RewindingParams, plan: CutPlan, ctx: &mut StageCtx<'_>, seg_time_s: f64, seg_m: f64) -> Self {
        let var = ctx.process_variability;
        let tension_sigma = if var { p.tension_sigma_frac } else { 0.0 };
        let edge_sigma = if var { p.edge_guide_sigma_m } else { 0.0 };
        Self {
            plan,
            piece: 0,
            wound_m: 0.0,
            thickness_integral_m2: 0.0,
            diameter_m: p.core_diameter_m,
            core_pressure_pa: 0.0,
            splices: 0,
            tension: Ar1::new(tension_sigma, TENSION_TIME_CONSTANT_S, seg_time_s, ctx.process_rng),
            edge: Ar1::new(edge_sigma, EDGE_CORRELATION_M, seg_m, ctx.process_rng),
            band_level: 0,
            band_start_wound_m: 0.0,
            telescoping: false,
            scrapped: false,
        }
    }

    /// Winds the kept part of `[u0, u1)` (one stretch of constant thickness and width).
    fn wind(&mut self, p: &RewindingParams, u0: f64, u1: f64, thickness_m: f64, width_m: f64) {
        let z = self.tension.value();
        while let Some(&(a, b)) = self.plan.pieces.get(self.piece) {
            if b <= u0 {
                self.piece += 1;
                continue;
            }
            if a >= u1 {
                break;
            }
            let dl = b.min(u1) - a.max(u0);
            if dl > 0.0 {
                let d0 = self.diameter_m;
                self.thickness_integral_m2 += thickness_m * dl;
                self.wound_m += dl;
                self.diameter_m = reel_diameter_m(p.core_diameter_m, self.thickness_integral_m2);
                let (t0, k_t, d_c) = (p.initial_tension_n, p.taper_frac, p.core_diameter_m);
                self.core_pressure_pa +=
                    (1.0 + z) * core_pressure_increment_pa(t0, k_t, width_m, thickness_m, d_c, d0, self.diameter_m);
            }
            if b <= u1 {
                self.piece += 1;
            } else {
                break;
            }
        }
    }

    /// Taper tension at the current diameter, without the drift [N].
    fn taper_tension_n(&self, p: &RewindingParams) -> f64 {
        taper_tension_n(p.initial_tension_n, p.taper_frac, p.core_diameter_m, self.diameter_m)
    }

    /// Winding tension with the drift [N].
    fn tension_n(&self, p: &RewindingParams) -> f64 {
        self.taper_tension_n(p) * (1.0 + self.tension.value())
    }

    /// Tension level: 0 in band, 1 out of band (Warning), 2 out of band for more than
    /// 10 m of wound length (Alarm, wrinkles).
    fn band_level(&mut self, window_frac: f64) -> u8 {
        let out = above(self.band_level > 0, self.tension.value().abs(), window_frac);
        match (out, self.band_level) {
            (false, _) => 0,
            (true, 0) => {
                self.band_start_wound_m = self.wound_m;
                1
            }
            (true, 1) if self.wound_m - self.band_start_wound_m > WRINKLE_RUN_LENGTH_M => 2,
            (true, level) => level,
        }
    }
}

/// The alarms and defects of one rewinding run.
struct Log {
    alarms: AlarmTracker,
    next_defect_id: u32,
    /// `REW_TENSION_OUT_OF_BAND` per tension level 1 (Warning) and 2 (Alarm).
    band: [Check; 2],
    telescoping: Check,
}

impl Log {
    /// A defect of lane `j` at coating position `md_position_m`, added to the web's list
    /// and to the lane's ids.
    fn add_defect(&mut self, slit: &mut SlitLanes, j: usize, kind: DefectKind, md_position_m: f64, length_m: f64) {
        let lane = &mut slit.lanes[j];
        let splice = kind == DefectKind::Splice;
        slit.electrode.dry.film.defects.push(Defect {
            id: self.next_defect_id,
            kind,
            origin_stage: StageKind::Rewinding.name().into(),
            md_position_m,
            cd_position_m: lane.cd_start_m + 0.5 * lane.nominal_width_m,
            length_m,
            width_m: lane.nominal_width_m,
            size_m: if splice { SPLICE_LENGTH_M } else { WRINKLE_SIZE_M },
            severity: DefectSeverity::Major,
            detected: splice,
            false_call: false,
            fault_label: None,
        });
        lane.defect_ids.push(self.next_defect_id);
        self.next_defect_id += 1;
    }

    /// Checks of lane `j` at the start of the segment at `x_coat` (§7.3).
    fn check_lane(
        &mut self,
        wd: &mut LaneWinder,
        slit: &mut SlitLanes,
        j: usize,
        t: f64,
        x_coat: f64,
        p: &RewindingParams,
    ) {
        let at = || AlarmScope { position_m: Some(x_coat), lane: Some(j as u32), cell_id: None };
        let level = wd.band_level(p.tension_window_frac);
        if level != wd.band_level {
            let dev = wd.tension.value().abs();
            if let Some(old) = self.band.get((wd.band_level as usize).wrapping_sub(1)) {
                old.edge(&mut self.alarms, t, false, dev, at(), String::new);
            }
            if let Some(new) = self.band.get((level as usize).wrapping_sub(1)) {
                new.edge(&mut self.alarms, t, true, dev, at(), || {
                    format!("lane {j}: winding tension {:.0} % off the taper", dev * 100.0)
                });
            }
            if level == 2 {
                // a wrinkle over the out-of-band stretch just wound, centred on it
                let length = (wd.wound_m - wd.band_start_wound_m) / slit.electrode.length_scale;
                self.add_defect(slit, j, DefectKind::Wrinkle, (x_coat - 0.5 * length).max(0.0), length);
            }
            wd.band_level = level;
        }
        let offset = wd.edge.value().abs();
        let cond = above(wd.telescoping, offset, p.telescoping_limit_m);
        if cond != wd.telescoping {
            wd.telescoping = cond;
            self.telescoping.edge(&mut self.alarms, t, cond, offset, at(), || {
                format!("lane {j}: edge offset {:.0} µm", offset * 1e6)
            });
        }
        if offset > SCRAP_TELESCOPING_FACTOR * p.telescoping_limit_m {
            wd.scrapped = true;
        }
    }

    /// A splice of lane `j` at unwind position `u` (the start of its next piece).
    fn splice(&mut self, wd: &mut LaneWinder, slit: &mut SlitLanes, j: usize, t: f64, u: f64) {
        wd.splices += 1;
        let x_coat = u / slit.electrode.length_scale;
        self.add_defect(slit, j, DefectKind::Splice, x_coat, SPLICE_LENGTH_M);
        let scope = AlarmScope { position_m: Some(x_coat), lane: Some(j as u32), cell_id: None };
        let message = format!("lane {j}: splice at reel position {:.2} m", wd.wound_m);
        self.alarms.once(t, "REW_SPLICE", Severity::Info, "wound_length_m", wd.wound_m, 0.0, scope, message);
    }
}

impl Stage for Rewinding {
    const KIND: StageKind = StageKind::Rewinding;
    type Params = RewindingParams;
    type Input = InspectedLanes;
    type Output = ElectrodeReels;
    type Sample = RewindingSample;
    type Result = RewindingResult;
    type MachineState = ();

    fn run(
        p: &RewindingParams,
        mut inspected: InspectedLanes,
        _machine: &mut (),
        ctx: &mut StageCtx<'_>,
        sink: &mut dyn StageSink<RewindingSample>,
    ) -> StageRun<ElectrodeReels, RewindingResult> {
        let electrode = &inspected.slit.electrode;
        let n_md = electrode.electrode_thickness_m.n_md.max(1);
        let length_scale = electrode.length_scale;
        let seg_coat = electrode.electrode_thickness_m.segment_length_m;
        let seg_local = seg_coat * length_scale;
        let web_length = (electrode.dry.film.roll_length_m * length_scale).min(n_md as f64 * seg_local).max(0.0);
        let v = p.rewinding_speed_m_s;
        let n_lanes = inspected.slit.lanes.len();
        let band = |severity| Check {
            code: "REW_TENSION_OUT_OF_BAND",
            severity,
            signal: "tension_deviation_frac",
            threshold: p.tension_window_frac,
        };
        let mut log = Log {
            alarms: AlarmTracker::new(Self::KIND, ctx.line, ctx.start_t_s),
            next_defect_id: electrode.dry.film.defects.iter().map(|d| d.id + 1).max().unwrap_or(1),
            band: [band(Severity::Warning), band(Severity::Alarm)],
            telescoping: Check {
                code: "REW_TELESCOPING",
                severity: Severity::Alarm,
                signal: "edge_offset_m",
                threshold: p.telescoping_limit_m,
            },
        };
        let mut forwarded = 0;

        // Cut-out plans and the machine's splice stops.
        let mut winders: Vec<LaneWinder> = (0..n_lanes)
            .map(|j| {
                let ok = inspected.verdicts.get(j).map_or(&[][..], |v| &v.segment_ok[..]);
                let ok: Vec<bool> = (0..n_md).map(|k| ok.get(k).copied().unwrap_or(true)).collect();
                let (margin, min_piece, max_len) = (p.splice_margin_m, p.min_piece_length_m, p.max_reel_length_m);
                let plan = plan_cuts(&ok, seg_local, web_length, margin, min_piece, max_len);
                LaneWinder::new(p, plan, ctx, seg_local / v, seg_local)
            })
            .collect();
        let mut stops: Vec<f64> = winders.iter().flat_map(|w| w.plan.splices_m.iter().copied()).collect();
        stops.sort_by(f64::total_cmp);
        stops.dedup_by(|a, b| (*a - *b).abs() <= 1e-9);
        let duration = web_length / v + stops.len() as f64 * p.splice_time_s;

        // Moisture of the coating, from equilibrium with the dry room.
        let w_eq = equilibrium_moisture_frac(p.moisture_coeff_per_pa, p.dew_point_degc);
        let mut moisture = w_eq;
        let relax = |w: f64, dt: f64| {
            if p.moisture_time_constant_s > 0.0 {
                w_eq + (w - w_eq) * (-dt / p.moisture_time_constant_s).exp()
            } else {
                w_eq
            }
        };

        // Machine state: time, unwind position, segment at the unwinder, next stop, end of
        // the current splice stop.
        let (mut t, mut u, mut seg, mut stop_idx, mut pause_until) = (0.0f64, 0.0f64, 0usize, 0usize, 0.0f64);
        let mut new_segment = true;
        let mut times = sample_times(duration, p.sample_interval_s).peekable();
        let (mut final_lane, mut final_dew) = (None, None);

        while let Some(ts) = times.next() {
            // Advance to the sample time, stopping at every segment boundary and splice.
            loop {
                if new_segment {
                    // process steps and checks at the instant the segment reaches the winders
                    new_segment = false;
                    for (j, wd) in winders.iter_mut().enumerate() {
                        if seg > 0 {
                            wd.tension.step(ctx.process_rng);
                            wd.edge.step(ctx.process_rng);
                        }
                        log.check_lane(wd, &mut inspected.slit, j, t, seg as f64 * seg_coat, p);
                    }
                }
                if t >= ts {
                    break;
                }
                if t < pause_until {
                    // splicing: time passes, the web stands still
                    let t1 = pause_until.min(ts);
                    moisture = relax(moisture, t1 - t);
                    t = t1;
                    continue;
                }
                let seg_end = if seg + 1 < n_md { (seg + 1) as f64 * seg_local } else { f64::INFINITY };
                let stop = stops.get(stop_idx).copied().unwrap_or(f64::INFINITY);
                let event = seg_end.min(stop);
                let t_event = if event.is_finite() { t + (event - u) / v } else { f64::INFINITY };
                // the end sample lands exactly on the end of the web
                let reach = if ts >= duration { web_length } else { ((ts - t) * v + u).min(web_length) };
                let (u1, t1) = if t_event > ts { (reach, ts) } else { (event, t_event) };
                if u1 > u {
                    for (wd, lane) in winders.iter_mut().zip(&inspected.slit.lanes) {
                        let k = seg.min(lane.electrode_thickness_m.len().saturating_sub(1));
                        let thickness = lane.electrode_thickness_m.get(k).copied().unwrap_or(0.0);
                        let width = lane.width_m.get(k).copied().unwrap_or(lane.nominal_width_m);
                        wd.wind(p, u, u1, thickness, width);
                    }
                }
                moisture = relax(moisture, t1 - t);
                (u, t) = (u1, t1);
                if t_event > ts {
                    continue;
                }
                if event == seg_end {
                    seg += 1;
                    new_segment = true;
                }
                if event == stop {
                    stop_idx += 1;
                    pause_until = t + p.splice_time_s;
                    for (j, wd) in winders.iter_mut().enumerate() {
                        if wd.plan.splices_m.iter().any(|&s| (s - stop).abs() <= 1e-9) {
                            log.splice(wd, &mut inspected.slit, j, t, stop);
                        }
                    }
                }
            }
            for a in &log.alarms.events[forwarded..] {
                sink.alarm(a);
            }
            forwarded = log.alarms.len();

            let dew = DEW_POINT_SENSOR.measure(p.dew_point_degc, ctx.sensor_noise, ctx.sensor_rng);
            let lanes: Vec<RewindingLaneSample> = winders
                .iter()
                .zip(&inspected.slit.lanes)
                .map(|(wd, lane)| RewindingLaneSample {
                    lane: lane.index,
                    wound_length_m: wd.wound_m,
                    reel_diameter_m: DIAMETER_SENSOR.measure(wd.diameter_m, ctx.sensor_noise, ctx.sensor_rng),
                    web_tension_n: TENSION_SENSOR.measure(wd.tension_n(p), ctx.sensor_noise, ctx.sensor_rng),
                    core_pressure_pa: wd.core_pressure_pa,
                    edge_offset_m: EDGE_SENSOR.measure(wd.edge.value(), ctx.sensor_noise, ctx.sensor_rng),
                    splices: wd.splices,
                })
                .collect();
            if times.peek().is_none() {
                final_lane = lanes.first().cloned();
                final_dew = Some(dew);
            }
            sink.sample(RewindingSample {
                t_s: ctx.start_t_s + ts,
                stage_time_s: ts,
                dew_point_degc: dew,
                lanes,
                defect_risk: log.alarms.any_active(Severity::Warning),
                fault_labels: ctx.faults.labels_at(ts, None),
            });
        }

        // The reels.
        let initial = match ctx.line {
            Line::Anode => 'A',
            Line::Cathode => 'C',
            Line::Cell => 'X',
        };
        let reels: Vec<Reel> = winders
            .iter()
            .zip(&inspected.slit.lanes)
            .map(|(wd, lane)| {
                let mut reel_start = 0.0;
                let pieces = wd
                    .plan
                    .pieces
                    .iter()
                    .map(|&(a, b)| {
                        let piece =
                            ReelPiece { reel_start_m: reel_start, coating_start_m: a / length_scale, length_m: b - a };
                        reel_start += b - a;
                        piece
                    })
                    .collect::<Vec<_>>();
                Reel {
                    lane: lane.index,
                    reel_id: format!("B{}-{initial}-L{}", ctx.batch_id, lane.index),
                    length_m: wd.wound_m,
                    splices_m: pieces.iter().skip(1).map(|p| p.reel_start_m).collect(),
                    pieces,
                    discarded_length_m: wd.plan.discarded_length_m,
                    reel_diameter_m: wd.diameter_m,
                    core_pressure_pa: wd.core_pressure_pa,
                    moisture_mass_frac: moisture,
                    scrapped: wd.scrapped,
                    end_tension_n: wd.tension_n(p),
                }
            })
            .collect();
        let result = RewindingResult {
            duration_s: duration,
            unwound_length_m: web_length,
            splice_stops: stops.len() as u32,
            reels: reels
                .iter()
                .map(|r| ReelSummary {
                    lane: r.lane,
                    reel_id: r.reel_id.clone(),
                    length_m: r.length_m,
                    reel_diameter_m: r.reel_diameter_m,
                    splices: r.splices_m.len() as u32,
                    discarded_length_m: r.discarded_length_m,
                    core_pressure_pa: r.core_pressure_pa,
                    end_tension_n: r.end_tension_n,
                    moisture_mass_frac: r.moisture_mass_frac,
                    scrapped: r.scrapped,
                })
                .collect(),
            final_dew_point_degc: final_dew,
            final_lane,
            accepted: !log.alarms.any_raised(Severity::Alarm),
            alarms: log.alarms.events,
        };
        StageRun { output: ElectrodeReels { inspected, reels }, result, duration_s: duration }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_form_matches_the_default_reels() {
        // anode: 1 577.5 m of 177.53 µm on a 63 mm lane
        let d = reel_diameter_m(0.152, 1577.5 * 177.53e-6);
        assert!((d / 0.6162 - 1.0).abs() < 0.005, "{d}");
        let pc = core_pressure_pa(15.0, 0.3, 0.063, 177.53e-6, 0.152, d);
        assert!((pc / 1.617e6 - 1.0).abs() < 0.005, "{pc}");
        assert!((taper_tension_n(15.0, 0.3, 0.152, d) / 11.61 - 1.0).abs() < 0.005);
    }

    #[test]
    fn increments_add_up_to_the_closed_form() {
        let (t0, k, w, te, dc) = (15.0, 0.3, 0.061, 141.82e-6, 0.152);
        let mut p = 0.0;
        let mut d = dc;
        for i in 1..=100 {
            let d1 = reel_diameter_m(dc, i as f64 * 10.0 * te);
            p += core_pressure_increment_pa(t0, k, w, te, dc, d, d1);
            d = d1;
        }
        let closed = core_pressure_pa(t0, k, w, te, dc, d);
        assert!((p / closed - 1.0).abs() < 1e-12);
    }

    #[test]
    fn start_up_scrap_is_removed_without_margin() {
        let mut ok = vec![true; 100];
        ok[..20].iter_mut().for_each(|o| *o = false);
        let plan = plan_cuts(&ok, 0.505, 50.5, 0.5, 5.0, 0.0);
        assert_eq!(plan.pieces.len(), 1);
        assert!((plan.pieces[0].0 - 10.1).abs() < 1e-9);
        assert!(plan.splices_m.is_empty());
        assert!((plan.discarded_length_m - 10.1).abs() < 1e-9);
    }

    #[test]
    fn a_short_piece_between_cuts_is_discarded() {
        let mut ok = vec![true; 200];
        ok[50..52].iter_mut().for_each(|o| *o = false); // [25, 26)
        ok[58..60].iter_mut().for_each(|o| *o = false); // [29, 30): piece [26.5, 28.5) is 2 m
        let plan = plan_cuts(&ok, 0.5, 100.0, 0.5, 5.0, 0.0);
        assert_eq!(plan.pieces, vec![(0.0, 24.5), (30.5, 100.0)]);
        assert_eq!(plan.splices_m, vec![30.5]);
        assert!((plan.discarded_length_m - 6.0).abs() < 1e-9);
    }

    #[test]
    fn a_short_first_piece_makes_the_cut_an_edge_cut() {
        let mut ok = vec![true; 200];
        ok[4..6].iter_mut().for_each(|o| *o = false); // [2, 3): first piece [0, 1.5) too short
        let plan = plan_cuts(&ok, 0.5, 100.0, 0.5, 5.0, 0.0);
        assert_eq!(plan.pieces, vec![(3.0, 100.0)]);
        assert!(plan.splices_m.is_empty());
    }

    #[test]
    fn reel_limit_discards_the_rest() {
        let plan = plan_cuts(&[true; 200], 0.5, 100.0, 0.5, 5.0, 60.0);
        assert_eq!(plan.pieces, vec![(0.0, 60.0)]);
        assert!((plan.discarded_length_m - 40.0).abs() < 1e-9);
    }
}
