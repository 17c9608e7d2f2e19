//! Electrode inspection: measure every lane in line (width, thickness, areal mass, edge
//! burr, surface defects), decide pass/fail per lane-segment, and count what was found
//! against what was there (MODELS.md §6). `SlitLanes` in, `InspectedLanes` out.
//!
//! The lanes pass the gauges at `inspection_speed_m_s`; the model steps one web segment at a
//! time. Per lane-segment it measures the four values through the §0.4 sensor model, decides
//! for each true defect whether the camera finds it (log-logistic POD of its size), adds
//! false calls, and sets the §6.2 verdicts from measured values only. Segments flagged
//! upstream (start-up scrap, blister or crack risk, wet, streak, wrinkle) fail `surface_ok`.
//! Samples every `sample_interval_s` report the lane-segments at the gauges.
//!
//! Detection is a sensor outcome, so its random draws come from the sensor stream. With
//! sensor noise off (deterministic mode, measured = true) a defect is found exactly when its
//! POD is at least ½ (size ≥ a50) and there are no false calls [E]. Loading defects
//! (`LowLoading`, `HighLoading`) are found when the areal-mass verdict of their lane-segment
//! fails, `EdgeBurr` when the burr verdict fails [E]. Sensor draws, per segment and lane in
//! order: width, thickness, areal mass, burr; one uniform per true defect of the
//! lane-segment (defect order); the false-call count, then two uniforms (MD, CD) per call.

use crate::alarm::{Alarm, AlarmScope, AlarmTracker, Check, Severity, HYSTERESIS_FRAC};
use crate::defect::{Defect, DefectKind, DefectSeverity};
use crate::error::{check_non_negative, check_open_min, check_range, ParamError};
use crate::legacy::{put, put_object, put_value, LegacyRecord};
use crate::random::{poisson, uniform};
use crate::reading::{Reading, Sensor};
use crate::stage::{
    sample_times, ResultRecord, SampleRecord, Stage, StageCtx, StageKind, StageParams, StageRun, StageSink,
};
use crate::stages::slitting::SlitLanes;
use crate::web::SegmentFlags;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Length of the reject-rate window of `INSP_REJECT_RATE_HIGH` [m] (§6.3).
pub const REJECT_RATE_WINDOW_M: f64 = 50.0;
/// Rejected share of the window above which `INSP_REJECT_RATE_HIGH` is raised (§6.3).
pub const REJECT_RATE_LIMIT_FRAC: f64 = 0.10;
/// Length of the moving mean of `INSP_LOADING_TREND` [m] (§6.3).
pub const LOADING_TREND_WINDOW_M: f64 = 20.0;
/// Relative deviation of the moving-mean areal mass that raises `INSP_LOADING_TREND` (§6.3).
pub const LOADING_TREND_LIMIT_FRAC: f64 = 0.015;
/// Size of a false call [m] (§6.2).
pub const FALSE_CALL_SIZE_M: f64 = 50e-6;

/// Verdicts of one lane-segment (§6.2). The decision uses measured values only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentVerdict {
    /// `|w_meas − w| ≤ width_tolerance_m`.
    pub width_ok: bool,
    /// `|t_meas − t_nom| ≤ thickness_tolerance_m`.
    pub thickness_ok: bool,
    /// `|m_meas/m_nom − 1| ≤ areal_mass_tolerance_frac`.
    pub areal_mass_ok: bool,
    /// `h_b,meas ≤ burr_max_m`.
    pub burr_ok: bool,
    /// Detected `Major` defects ≤ the allowed count, and no upstream scrap flag or wrinkle.
    pub surface_ok: bool,
    /// All of the above.
    pub overall_ok: bool,
}

/// Verdicts of one lane, per segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaneVerdicts {
    /// Lane index.
    pub lane: u32,
    /// `overall_ok` per segment: false segments are cut out at rewinding.
    pub segment_ok: Vec<bool>,
    /// Measured areal mass per segment [kg/m²] (what the gauge reported).
    pub measured_areal_mass_kg_m2: Vec<f64>,
    /// Measured electrode thickness per segment [m].
    pub measured_thickness_m: Vec<f64>,
    /// Measured lane width per segment [m].
    pub measured_width_m: Vec<f64>,
    /// Measured burr height per segment [m].
    pub measured_burr_height_m: Vec<f64>,
    /// Detected defects (false calls included) per segment.
    pub defects_detected: Vec<u32>,
    /// All verdicts per segment.
    pub verdicts: Vec<SegmentVerdict>,
    /// Accepted lane length (calendered metres) [m].
    pub accepted_length_m: f64,
    /// Rejected lane length (calendered metres) [m].
    pub rejected_length_m: f64,
}

/// The inspected lanes (MODELS.md §0.9). Detected defects have `detected = true` in the
/// web's defect list; false calls are appended there with `false_call = true`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InspectedLanes {
    /// The slit lanes.
    pub slit: SlitLanes,
    /// Verdicts per lane, same order as `slit.lanes`.
    pub verdicts: Vec<LaneVerdicts>,
}

/// A log-logistic probability-of-detection curve `POD(a) = 1/(1 + exp(−(ln a − ln a50)/slope))`
/// (MIL-HDBK-1823A form) [L].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodCurve {
    /// Size found half of the time; > 0. [C]
    pub a50_m: f64,
    /// Spread of the curve in ln(size); > 0. [C]
    pub slope: f64,
}

impl PodCurve {
    /// Probability of detecting a defect of size `size_m` (0 for a non-positive size).
    pub fn probability(&self, size_m: f64) -> f64 {
        probability_of_detection(size_m, self.a50_m, self.slope)
    }
}

/// POD curves of the camera per defect kind (§6.1; a = size, streak width or crack length).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodTable {
    /// Agglomerates (a50 150 µm, slope 0.25). [C]
    pub agglomerate: PodCurve,
    /// Bubbles and craters (300 µm, 0.25). [C]
    pub bubble: PodCurve,
    /// Streaks, by width (0.5 mm, 0.3). [C]
    pub streak: PodCurve,
    /// Cracks, by length (1 mm, 0.3). [C]
    pub crack: PodCurve,
    /// Blisters (2 mm, 0.3). [C]
    pub blister: PodCurve,
    /// Foreign particles (100 µm, 0.25). [C]
    pub contamination: PodCurve,
    /// Wrinkles (0.1 mm, 0.2). [C]
    pub wrinkle: PodCurve,
}

impl Default for PodTable {
    fn default() -> Self {
        let c = |a50_m, slope| PodCurve { a50_m, slope };
        Self {
            agglomerate: c(150e-6, 0.25),
            bubble: c(300e-6, 0.25),
            streak: c(0.5e-3, 0.3),
            crack: c(1e-3, 0.3),
            blister: c(2e-3, 0.3),
            contamination: c(100e-6, 0.25),
            wrinkle: c(0.1e-3, 0.2),
        }
    }
}

impl PodTable {
    /// The camera's curve for `kind`; `None` for kinds the camera does not judge (loading
    /// defects and burrs are judged by their gauges, splices do not exist yet).
    pub fn curve(&self, kind: DefectKind) -> Option<&PodCurve> {
        match kind {
            DefectKind::Agglomerate => Some(&self.agglomerate),
            DefectKind::Bubble => Some(&self.bubble),
            DefectKind::Streak => Some(&self.streak),
            DefectKind::Crack => Some(&self.crack),
            DefectKind::Blister => Some(&self.blister),
            DefectKind::Contamination => Some(&self.contamination),
            DefectKind::Wrinkle => Some(&self.wrinkle),
            DefectKind::LowLoading | DefectKind::HighLoading | DefectKind::EdgeBurr | DefectKind::Splice => None,
        }
    }

    fn validate(&self) -> Result<(), ParamError> {
        let curves = [
            ("agglomerate", &self.agglomerate),
            ("bubble", &self.bubble),
            ("streak", &self.streak),
            ("crack", &self.crack),
            ("blister", &self.blister),
            ("contamination", &self.contamination),
            ("wrinkle", &self.wrinkle),
        ];
        for (name, c) in curves {
            check_open_min("a50_m", c.a50_m, 0.0, 1.0, "m").map_err(|e| e.at(&format!("pod.{name}.")))?;
            check_open_min("slope", c.slope, 0.0, 10.0, "").map_err(|e| e.at(&format!("pod.{name}.")))?;
        }
        Ok(())
    }
}

/// Inspection settings (both lines). Defaults: MODELS.md §6.1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InspectionParams {
    /// Web speed through the gauges; [0.05, 5]. [C]
    pub inspection_speed_m_s: f64,
    /// Laser triangulation thickness noise σ_a (both sides); ≥ 0. [C]
    pub thickness_sigma_m: f64,
    /// X-ray / β gauge areal-mass noise σ_r; ≥ 0. [C]
    pub areal_mass_sigma_frac: f64,
    /// Edge camera width noise σ_a; ≥ 0. [C]
    pub width_sigma_m: f64,
    /// Edge camera burr noise σ_a; ≥ 0. [C]
    pub burr_sigma_m: f64,
    /// POD curves per defect kind; a50 in (0, 1] m, slope in (0, 10]. [L form, C values]
    pub pod: PodTable,
    /// False calls per metre of lane (Poisson); ≥ 0. [C]
    pub false_call_rate_per_m: f64,
    /// Lane width tolerance ±; (0, 1e-2]. [U]
    pub width_tolerance_m: f64,
    /// Electrode thickness tolerance around nominal ±; (0, 1e-3]. [C]
    pub thickness_tolerance_m: f64,
    /// Areal-mass tolerance around nominal ±; (0, 0.5]. [C]
    pub areal_mass_tolerance_frac: f64,
    /// Largest acceptable burr; (0, 1e-4]. [L]
    pub burr_max_m: f64,
    /// Detected `Major` defects allowed per 0.5 m lane-segment; [0, 100]. [C]
    pub surface_defects_max_per_segment: u32,
    /// Sample interval; (0, 600]. [E]
    pub sample_interval_s: f64,
}

impl Default for InspectionParams {
    fn default() -> Self {
        Self {
            inspection_speed_m_s: 1.0,
            thickness_sigma_m: 1e-6,
            areal_mass_sigma_frac: 0.003,
            width_sigma_m: 1e-5,
            burr_sigma_m: 1e-6,
            pod: PodTable::default(),
            false_call_rate_per_m: 1e-3,
            width_tolerance_m: 1e-4,
            thickness_tolerance_m: 5e-6,
            areal_mass_tolerance_frac: 0.03,
            burr_max_m: 8e-6,
            surface_defects_max_per_segment: 0,
            sample_interval_s: 2.0,
        }
    }
}

impl InspectionParams {
    /// Anode defaults (the same as the cathode's, §6.1).
    pub fn anode() -> Self {
        Self::default()
    }

    /// Cathode defaults (§6.1).
    pub fn cathode() -> Self {
        Self::default()
    }
}

impl StageParams for InspectionParams {
    fn validate(&self) -> Result<(), ParamError> {
        check_range("inspection_speed_m_s", self.inspection_speed_m_s, 0.05, 5.0, "m/s")?;
        check_non_negative("thickness_sigma_m", self.thickness_sigma_m, "m")?;
        check_non_negative("areal_mass_sigma_frac", self.areal_mass_sigma_frac, "")?;
        check_non_negative("width_sigma_m", self.width_sigma_m, "m")?;
        check_non_negative("burr_sigma_m", self.burr_sigma_m, "m")?;
        self.pod.validate()?;
        check_non_negative("false_call_rate_per_m", self.false_call_rate_per_m, "1/m")?;
        check_open_min("width_tolerance_m", self.width_tolerance_m, 0.0, 1e-2, "m")?;
        check_open_min("thickness_tolerance_m", self.thickness_tolerance_m, 0.0, 1e-3, "m")?;
        check_open_min("areal_mass_tolerance_frac", self.areal_mass_tolerance_frac, 0.0, 0.5, "")?;
        check_open_min("burr_max_m", self.burr_max_m, 0.0, 1e-4, "m")?;
        check_range("surface_defects_max_per_segment", self.surface_defects_max_per_segment as f64, 0.0, 100.0, "")?;
        check_open_min("sample_interval_s", self.sample_interval_s, 0.0, 600.0, "s")
    }
}

/// Log-logistic probability of detection `POD(a) = 1/(1 + exp(−(ln a − ln a50)/slope))`
/// (§6.2; MIL-HDBK-1823A) [L]. 0 for a non-positive size.
pub fn probability_of_detection(size_m: f64, a50_m: f64, slope: f64) -> f64 {
    if size_m <= 0.0 || a50_m <= 0.0 || slope <= 0.0 {
        return 0.0;
    }
    1.0 / (1.0 + (-(size_m.ln() - a50_m.ln()) / slope).exp())
}

/// Process capability `Cpk = min(USL − μ, μ − LSL)/(3σ)` (§6.3); `None` when σ = 0.
pub fn cpk(mean: f64, sigma: f64, lower: f64, upper: f64) -> Option<f64> {
    (sigma > 0.0).then(|| (upper - mean).min(mean - lower) / (3.0 * sigma))
}

/// One lane in an inspection sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InspectionLaneSample {
    /// Lane index.
    pub lane: u32,
    /// Lane width [m].
    pub width_m: Reading,
    /// Electrode thickness [m].
    pub electrode_thickness_m: Reading,
    /// Areal mass per side [kg/m²].
    pub areal_mass_kg_m2: Reading,
    /// Edge burr [m].
    pub burr_height_m: Reading,
    /// Detected defects in the current lane-segment (false calls included).
    pub defects_detected: u32,
    /// Width verdict.
    pub width_ok: bool,
    /// Thickness verdict.
    pub thickness_ok: bool,
    /// Areal-mass verdict.
    pub areal_mass_ok: bool,
    /// Burr verdict.
    pub burr_ok: bool,
    /// Surface verdict.
    pub surface_ok: bool,
    /// All verdicts.
    pub overall_ok: bool,
}

/// One inspection sample (§6.3): the lane-segments at the gauges.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InspectionSample {
    /// Plant time [s].
    pub t_s: f64,
    /// Stage time [s].
    pub stage_time_s: f64,
    /// Web position at the gauges in coating coordinates [m].
    pub position_m: f64,
    /// Every lane, operator side first.
    pub lanes: Vec<InspectionLaneSample>,
    /// Target lane width (carried for the legacy `epsilon_width_mm`) [m].
    pub target_width_m: f64,
    /// Nominal electrode thickness (carried for the legacy `epsilon_thickness_m`) [m].
    pub nominal_electrode_thickness_m: f64,
    /// Burr limit (carried for the legacy `burr_factor`) [m].
    pub burr_max_m: f64,
    /// Any Warning+ alarm of this stage active at this instant.
    pub defect_risk: bool,
    /// Fault labels active on this sample.
    pub fault_labels: Vec<u32>,
}

/// Writes the §6.4 legacy keys for one lane.
fn write_legacy(out: &mut LegacyRecord, l: &InspectionLaneSample, target_m: f64, nominal_m: f64, burr_max_m: f64) {
    put(out, "epsilon_width_mm", (l.width_m.value() - target_m) * 1000.0);
    put(out, "burr_factor", l.burr_height_m.value() / burr_max_m);
    put(out, "delta_sl_m", l.electrode_thickness_m.true_value);
    put(out, "delta_measured_m", l.electrode_thickness_m.value());
    put(out, "epsilon_thickness_m", l.electrode_thickness_m.value() - nominal_m);
    put_value(out, "defects_detected", l.defects_detected);
    put_value(out, "Pass_width", l.width_ok);
    put_value(out, "Pass_thickness", l.thickness_ok);
    put_value(out, "Pass_burr", l.burr_ok);
    put_value(out, "Pass_surface", l.surface_ok);
    put_value(out, "Overall", if l.overall_ok { "Pass" } else { "Fail" });
}

impl SampleRecord for InspectionSample {
    fn stage_time_s(&self) -> f64 {
        self.stage_time_s
    }

    fn legacy(&self, out: &mut LegacyRecord) {
        if let Some(l) = self.lanes.first() {
            write_legacy(out, l, self.target_width_m, self.nominal_electrode_thickness_m, self.burr_max_m);
        }
    }
}

/// Per-lane summary of an inspection run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LaneInspection {
    /// Lane index.
    pub lane: u32,
    /// Accepted length (calendered metres) [m].
    pub accepted_length_m: f64,
    /// Rejected length (calendered metres) [m].
    pub rejected_length_m: f64,
    /// Rejected segments.
    pub rejected_segments: u32,
    /// Mean measured electrode thickness [m].
    pub mean_thickness_m: f64,
    /// Mean measured areal mass [kg/m²].
    pub mean_areal_mass_kg_m2: f64,
    /// Thickness Cpk against nominal ± tolerance (`None` when the spread is 0).
    pub cpk_thickness: Option<f64>,
    /// Areal-mass Cpk against nominal·(1 ± tolerance) (`None` when the spread is 0).
    pub cpk_areal_mass: Option<f64>,
}

/// Confusion counts of one defect kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DefectConfusion {
    /// Defect kind.
    pub kind: DefectKind,
    /// True defects found.
    pub true_positives: u32,
    /// True defects missed.
    pub false_negatives: u32,
    /// False calls.
    pub false_positives: u32,
}

/// Final result of inspecting one roll (§6.3).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InspectionResult {
    /// Stage duration [s].
    pub duration_s: f64,
    /// Inspected lane length (calendered metres) [m].
    pub inspected_length_m: f64,
    /// Accepted length summed over the lanes [m].
    pub accepted_length_m: f64,
    /// Rejected length summed over the lanes [m].
    pub rejected_length_m: f64,
    /// Per-lane summaries.
    pub lanes: Vec<LaneInspection>,
    /// Confusion counts per defect kind (kinds that occurred).
    pub defects: Vec<DefectConfusion>,
    /// Lane 0 at the end of the roll (for the legacy final keys).
    pub final_lane: Option<InspectionLaneSample>,
    /// Detected defects in lane 0 over the whole roll.
    pub lane0_defects_detected: u32,
    /// Target lane width [m].
    pub target_width_m: f64,
    /// Nominal electrode thickness [m].
    pub nominal_electrode_thickness_m: f64,
    /// Burr limit [m].
    pub burr_max_m: f64,
    /// Every alarm event of the run.
    pub alarms: Vec<Alarm>,
    /// No alarm of severity Alarm or above was raised.
    pub accepted: bool,
}

impl ResultRecord for InspectionResult {
    fn legacy(&self, out: &mut LegacyRecord) {
        put_object(out, "Final Properties", |o| {
            if let Some(l) = &self.final_lane {
                write_legacy(o, l, self.target_width_m, self.nominal_electrode_thickness_m, self.burr_max_m);
                put_value(o, "defects_detected", self.lane0_defects_detected);
            }
        });
    }

    fn accepted(&self) -> bool {
        self.accepted
    }

    fn summary(&self) -> Vec<(&'static str, f64)> {
        let lanes = self.lanes.len().max(1) as f64;
        let detected: u32 = self.defects.iter().map(|d| d.true_positives).sum();
        let missed: u32 = self.defects.iter().map(|d| d.false_negatives).sum();
        vec![
            ("accepted m per lane", self.accepted_length_m / lanes),
            ("rejected m per lane", self.rejected_length_m / lanes),
            ("defects detected", detected as f64),
            ("defects missed", missed as f64),
        ]
    }
}

/// The in-line inspection station.
pub struct Inspection;

/// `value > threshold` starts the condition; it holds until `value < threshold·(1 − 2 %)` (§0.5).
#[inline]
fn above(active: bool, value: f64, threshold: f64) -> bool {
    if active {
        value >= threshold - HYSTERESIS_FRAC * threshold.abs()
    } else {
        value > threshold
    }
}

/// A run of rejected segments in a lane (Info; raised when the run starts, cleared when it ends).
const SEGMENT_REJECTED: Check =
    Check { code: "INSP_SEGMENT_REJECTED", severity: Severity::Info, signal: "overall_ok", threshold: 0.0 };
/// Rejected share of the last 50 m of a lane above 10 %.
const REJECT_RATE_HIGH: Check = Check {
    code: "INSP_REJECT_RATE_HIGH",
    severity: Severity::Warning,
    signal: "rejected_share_frac",
    threshold: REJECT_RATE_LIMIT_FRAC,
};
/// 20 m moving mean of the measured areal mass more than 1.5 % off nominal.
const LOADING_TREND: Check = Check {
    code: "INSP_LOADING_TREND",
    severity: Severity::Warning,
    signal: "areal_mass_deviation_frac",
    threshold: LOADING_TREND_LIMIT_FRAC,
};

/// Moving window over the last `len` production segments of a lane (fixed allocation).
struct Window {
    values: Vec<f64>,
    next: usize,
    filled: usize,
    sum: f64,
}

impl Window {
    fn new(len: usize) -> Self {
        Self { values: vec![0.0; len.max(1)], next: 0, filled: 0, sum: 0.0 }
    }

    fn push(&mut self, v: f64) {
        let len = self.values.len();
        if self.filled == len {
            self.sum -= self.values[self.next];
        } else {
            self.filled += 1;
        }
        self.values[self.next] = v;
        self.sum += v;
        self.next = (self.next + 1) % len;
    }

    /// Sum over the whole window length (missing history counts as 0).
    fn share(&self) -> f64 {
        self.sum / self.values.len() as f64
    }

    /// Mean of the values seen (up to the window length).
    fn mean(&self) -> f64 {
        if self.filled > 0 {
            self.sum / self.filled as f64
        } else {
            0.0
        }
    }
}

/// Running mean and spread (Welford).
#[derive(Default)]
struct Stats {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Stats {
    fn push(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }

    fn sigma(&self) -> f64 {
        if self.n > 1.0 {
            (self.m2 / self.n).max(0.0).sqrt()
        } else {
            0.0
        }
    }
}

/// Stable order of the defect kinds in the result.
const KINDS: [DefectKind; 11] = [
    DefectKind::Agglomerate,
    DefectKind::Bubble,
    DefectKind::Streak,
    DefectKind::LowLoading,
    DefectKind::HighLoading,
    DefectKind::Crack,
    DefectKind::Blister,
    DefectKind::EdgeBurr,
    DefectKind::Wrinkle,
    DefectKind::Splice,
    DefectKind::Contamination,
];

fn kind_index(kind: DefectKind) -> usize {
    KINDS.iter().position(|&k| k == kind).unwrap_or(0)
}

impl Stage for Inspection {
    const KIND: StageKind = StageKind::Inspection;
    type Params = InspectionParams;
    type Input = SlitLanes;
    type Output = InspectedLanes;
    type Sample = InspectionSample;
    type Result = InspectionResult;
    type MachineState = ();

    fn run(
        p: &InspectionParams,
        mut slit: SlitLanes,
        _machine: &mut (),
        ctx: &mut StageCtx<'_>,
        sink: &mut dyn StageSink<InspectionSample>,
    ) -> StageRun<InspectedLanes, InspectionResult> {
        let mut alarms = AlarmTracker::new(Self::KIND, ctx.line, ctx.start_t_s);
        let mut forwarded = 0;

        let electrode = &slit.electrode;
        let n_md = electrode.electrode_thickness_m.n_md.max(1);
        let length_scale = electrode.length_scale;
        let seg_coat = electrode.electrode_thickness_m.segment_length_m;
        let seg_local = seg_coat * length_scale;
        let web_length = (electrode.dry.film.roll_length_m * length_scale).min(n_md as f64 * seg_local).max(0.0);
        let v = p.inspection_speed_m_s;
        let seg_time = seg_local / v;
        let duration = web_length / v;
        let t_nom = electrode.nominal_electrode_thickness_m;
        let m_nom = electrode.nominal_areal_mass_kg_m2;
        let n_lanes = slit.lanes.len();
        let noise = ctx.sensor_noise;
        let width_sensor = Sensor::absolute(p.width_sigma_m);
        let thickness_sensor = Sensor::absolute(p.thickness_sigma_m);
        let mass_sensor = Sensor::relative(p.areal_mass_sigma_frac);
        let burr_sensor = Sensor::absolute(p.burr_sigma_m);
        let false_call_mean = if noise { p.false_call_rate_per_m * seg_local } else { 0.0 };

        // The true defects of every lane, as (segment, index into the web's defect list),
        // in segment order.
        let mut by_id: Vec<(u32, usize)> =
            slit.electrode.dry.film.defects.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
        by_id.sort_unstable();
        let index_of = |id: u32| by_id.binary_search_by_key(&id, |e| e.0).ok().map(|e| by_id[e].1);
        let lane_defects: Vec<Vec<(usize, usize)>> = slit
            .lanes
            .iter()
            .map(|lane| {
                let mut v: Vec<(usize, usize)> = lane
                    .defect_ids
                    .iter()
                    .filter_map(|&id| index_of(id))
                    .filter(|&i| !slit.electrode.dry.film.defects[i].false_call)
                    .map(|i| {
                        let x = slit.electrode.dry.film.defects[i].md_position_m;
                        (((x / seg_coat).floor().max(0.0) as usize).min(n_md - 1), i)
                    })
                    .collect();
                v.sort_unstable();
                v
            })
            .collect();
        let mut cursor = vec![0usize; n_lanes];
        let mut next_defect_id = slit.electrode.dry.film.defects.iter().map(|d| d.id + 1).max().unwrap_or(1);

        let mut verdicts: Vec<LaneVerdicts> = slit
            .lanes
            .iter()
            .map(|lane| LaneVerdicts {
                lane: lane.index,
                segment_ok: Vec::with_capacity(n_md),
                measured_areal_mass_kg_m2: Vec::with_capacity(n_md),
                measured_thickness_m: Vec::with_capacity(n_md),
                measured_width_m: Vec::with_capacity(n_md),
                measured_burr_height_m: Vec::with_capacity(n_md),
                defects_detected: Vec::with_capacity(n_md),
                verdicts: Vec::with_capacity(n_md),
                accepted_length_m: 0.0,
                rejected_length_m: 0.0,
            })
            .collect();

        // Alarm state per lane.
        let window_segments = |len_m: f64| (len_m / seg_local).round().max(1.0) as usize;
        let mut reject_windows: Vec<Window> =
            (0..n_lanes).map(|_| Window::new(window_segments(REJECT_RATE_WINDOW_M))).collect();
        let mut loading_windows: Vec<Window> =
            (0..n_lanes).map(|_| Window::new(window_segments(LOADING_TREND_WINDOW_M))).collect();
        let mut rejected_active = vec![false; n_lanes];
        let mut rate_active = vec![false; n_lanes];
        let mut trend_active = vec![false; n_lanes];
        let mut thickness_stats: Vec<Stats> = (0..n_lanes).map(|_| Stats::default()).collect();
        let mut mass_stats: Vec<Stats> = (0..n_lanes).map(|_| Stats::default()).collect();
        let mut rejected_segments = vec![0u32; n_lanes];
        let mut confusion = [(0u32, 0u32, 0u32); KINDS.len()];
        let mut seen_kind = [false; KINDS.len()];

        let mut times = sample_times(duration, p.sample_interval_s).peekable();
        let mut final_lane = None;

        for k in 0..n_md {
            let t_k = k as f64 * seg_time;
            let x_coat = k as f64 * seg_coat;
            let this_len = (web_length - k as f64 * seg_local).clamp(0.0, seg_local);
            let flags = slit.electrode.dry.film.segment_flags.get(k).copied().unwrap_or_default();
            let startup = flags.has(SegmentFlags::STARTUP_SCRAP);
            for j in 0..n_lanes {
                let lane = &slit.lanes[j];
                let w_nom = lane.nominal_width_m;
                let width = width_sensor.measure(lane.width_m[k], noise, ctx.sensor_rng).value();
                let thickness = thickness_sensor.measure(lane.electrode_thickness_m[k], noise, ctx.sensor_rng).value();
                let mass = mass_sensor.measure(lane.areal_mass_kg_m2[k], noise, ctx.sensor_rng).value();
                let burr = burr_sensor.measure(lane.burr_height_m[k], noise, ctx.sensor_rng).value();
                let wrinkled = lane.wrinkle.get(k).copied().unwrap_or(false);
                let cd_start = slit.knife_positions_m.get(j).copied().unwrap_or(lane.cd_start_m);
                let mut verdict = SegmentVerdict {
                    width_ok: (width - w_nom).abs() <= p.width_tolerance_m,
                    thickness_ok: (thickness - t_nom).abs() <= p.thickness_tolerance_m,
                    areal_mass_ok: m_nom > 0.0 && (mass / m_nom - 1.0).abs() <= p.areal_mass_tolerance_frac,
                    burr_ok: burr <= p.burr_max_m,
                    ..SegmentVerdict::default()
                };

                // True defects of this lane-segment.
                let (mut detected, mut major) = (0u32, 0u32);
                let list = &lane_defects[j];
                while cursor[j] < list.len() && list[cursor[j]].0 == k {
                    let d = &mut slit.electrode.dry.film.defects[list[cursor[j]].1];
                    cursor[j] += 1;
                    let found = match p.pod.curve(d.kind) {
                        Some(c) => {
                            let pod = c.probability(d.size_m);
                            if noise {
                                uniform(ctx.sensor_rng) < pod
                            } else {
                                pod >= 0.5
                            }
                        }
                        None => match d.kind {
                            DefectKind::LowLoading | DefectKind::HighLoading => !verdict.areal_mass_ok,
                            DefectKind::EdgeBurr => !verdict.burr_ok,
                            _ => false,
                        },
                    };
                    d.detected = found;
                    let c = &mut confusion[kind_index(d.kind)];
                    seen_kind[kind_index(d.kind)] = true;
                    if found {
                        c.0 += 1;
                        detected += 1;
                        if d.severity == DefectSeverity::Major {
                            major += 1;
                        }
                    } else {
                        c.1 += 1;
                    }
                }

                // False calls.
                let calls = if false_call_mean > 0.0 { poisson(ctx.sensor_rng, false_call_mean) } else { 0 };
                for _ in 0..calls {
                    let md = x_coat + uniform(ctx.sensor_rng) * this_len / length_scale;
                    let cd = cd_start + uniform(ctx.sensor_rng) * w_nom;
                    slit.electrode.dry.film.defects.push(Defect {
                        id: next_defect_id,
                        kind: DefectKind::Contamination,
                        origin_stage: Self::KIND.name().into(),
                        md_position_m: md,
                        cd_position_m: cd,
                        length_m: FALSE_CALL_SIZE_M,
                        width_m: FALSE_CALL_SIZE_M,
                        size_m: FALSE_CALL_SIZE_M,
                        severity: DefectSeverity::Minor,
                        detected: true,
                        false_call: true,
                        fault_label: None,
                    });
                    slit.lanes[j].defect_ids.push(next_defect_id);
                    next_defect_id += 1;
                    confusion[kind_index(DefectKind::Contamination)].2 += 1;
                    seen_kind[kind_index(DefectKind::Contamination)] = true;
                    detected += 1;
                }

                verdict.surface_ok = major <= p.surface_defects_max_per_segment && !flags.scrap() && !wrinkled;
                verdict.overall_ok = verdict.width_ok
                    && verdict.thickness_ok
                    && verdict.areal_mass_ok
                    && verdict.burr_ok
                    && verdict.surface_ok;

                let lv = &mut verdicts[j];
                lv.segment_ok.push(verdict.overall_ok);
                lv.measured_width_m.push(width);
                lv.measured_thickness_m.push(thickness);
                lv.measured_areal_mass_kg_m2.push(mass);
                lv.measured_burr_height_m.push(burr);
                lv.defects_detected.push(detected);
                lv.verdicts.push(verdict);
                if verdict.overall_ok {
                    lv.accepted_length_m += this_len;
                } else {
                    lv.rejected_length_m += this_len;
                    rejected_segments[j] += 1;
                }
                thickness_stats[j].push(thickness);
                mass_stats[j].push(mass);

                // Alarms of this lane-segment.
                let at = || AlarmScope { position_m: Some(x_coat), lane: Some(j as u32), cell_id: None };
                let rejected = !verdict.overall_ok;
                if rejected != rejected_active[j] {
                    rejected_active[j] = rejected;
                    SEGMENT_REJECTED.edge(&mut alarms, t_k, rejected, 0.0, at(), || {
                        format!("lane {j}: rejected segments start at {x_coat:.1} m")
                    });
                }
                if !startup {
                    reject_windows[j].push(if rejected { 1.0 } else { 0.0 });
                    loading_windows[j].push(mass);
                    let share = reject_windows[j].share();
                    let cond = above(rate_active[j], share, REJECT_RATE_LIMIT_FRAC);
                    if cond != rate_active[j] {
                        rate_active[j] = cond;
                        REJECT_RATE_HIGH.edge(&mut alarms, t_k, cond, share, at(), || {
                            format!("lane {j}: {:.0} % of the last 50 m rejected", share * 100.0)
                        });
                    }
                    let deviation = if m_nom > 0.0 { (loading_windows[j].mean() / m_nom - 1.0).abs() } else { 0.0 };
                    let cond = above(trend_active[j], deviation, LOADING_TREND_LIMIT_FRAC);
                    if cond != trend_active[j] {
                        trend_active[j] = cond;
                        LOADING_TREND.edge(&mut alarms, t_k, cond, deviation, at(), || {
                            format!("lane {j}: 20 m mean areal mass {:.2} % off nominal", deviation * 100.0)
                        });
                    }
                }
            }
            for a in &alarms.events[forwarded..] {
                sink.alarm(a);
            }
            forwarded = alarms.len();

            // Samples while this segment is at the gauges.
            let t_next = if k + 1 == n_md { f64::INFINITY } else { (k + 1) as f64 * seg_time };
            while let Some(&t) = times.peek() {
                if t >= t_next {
                    break;
                }
                times.next();
                let lanes = slit
                    .lanes
                    .iter()
                    .zip(&verdicts)
                    .map(|(lane, lv)| {
                        let r = |true_value: f64, measured: f64| Reading { true_value, measured: Some(measured) };
                        let verdict = lv.verdicts[k];
                        InspectionLaneSample {
                            lane: lane.index,
                            width_m: r(lane.width_m[k], lv.measured_width_m[k]),
                            electrode_thickness_m: r(lane.electrode_thickness_m[k], lv.measured_thickness_m[k]),
                            areal_mass_kg_m2: r(lane.areal_mass_kg_m2[k], lv.measured_areal_mass_kg_m2[k]),
                            burr_height_m: r(lane.burr_height_m[k], lv.measured_burr_height_m[k]),
                            defects_detected: lv.defects_detected[k],
                            width_ok: verdict.width_ok,
                            thickness_ok: verdict.thickness_ok,
                            areal_mass_ok: verdict.areal_mass_ok,
                            burr_ok: verdict.burr_ok,
                            surface_ok: verdict.surface_ok,
                            overall_ok: verdict.overall_ok,
                        }
                    })
                    .collect::<Vec<_>>();
                if times.peek().is_none() {
                    final_lane = lanes.first().cloned();
                }
                sink.sample(InspectionSample {
                    t_s: ctx.start_t_s + t,
                    stage_time_s: t,
                    position_m: (v * t).min(web_length) / length_scale,
                    lanes,
                    target_width_m: slit.lanes.first().map_or(0.0, |l| l.nominal_width_m),
                    nominal_electrode_thickness_m: t_nom,
                    burr_max_m: p.burr_max_m,
                    defect_risk: alarms.any_active(Severity::Warning),
                    fault_labels: ctx.faults.labels_at(t, Some((v * t).min(web_length) / length_scale)),
                });
            }
        }

        let lanes: Vec<LaneInspection> = verdicts
            .iter()
            .enumerate()
            .map(|(j, lv)| {
                let (ts, ms) = (&thickness_stats[j], &mass_stats[j]);
                LaneInspection {
                    lane: lv.lane,
                    accepted_length_m: lv.accepted_length_m,
                    rejected_length_m: lv.rejected_length_m,
                    rejected_segments: rejected_segments[j],
                    mean_thickness_m: ts.mean,
                    mean_areal_mass_kg_m2: ms.mean,
                    cpk_thickness: cpk(
                        ts.mean,
                        ts.sigma(),
                        t_nom - p.thickness_tolerance_m,
                        t_nom + p.thickness_tolerance_m,
                    ),
                    cpk_areal_mass: cpk(
                        ms.mean,
                        ms.sigma(),
                        m_nom * (1.0 - p.areal_mass_tolerance_frac),
                        m_nom * (1.0 + p.areal_mass_tolerance_frac),
                    ),
                }
            })
            .collect();
        let defects = KINDS
            .iter()
            .zip(confusion)
            .zip(seen_kind)
            .filter(|(_, seen)| *seen)
            .map(|((&kind, (tp, fn_, fp)), _)| DefectConfusion {
                kind,
                true_positives: tp,
                false_negatives: fn_,
                false_positives: fp,
            })
            .collect();
        let result = InspectionResult {
            duration_s: duration,
            inspected_length_m: web_length,
            accepted_length_m: lanes.iter().map(|l| l.accepted_length_m).sum(),
            rejected_length_m: lanes.iter().map(|l| l.rejected_length_m).sum(),
            lanes,
            defects,
            final_lane,
            lane0_defects_detected: verdicts.first().map_or(0, |v| v.defects_detected.iter().sum()),
            target_width_m: slit.lanes.first().map_or(0.0, |l| l.nominal_width_m),
            nominal_electrode_thickness_m: t_nom,
            burr_max_m: p.burr_max_m,
            alarms: alarms.events.clone(),
            accepted: !alarms.any_raised(Severity::Alarm),
        };
        StageRun { output: InspectedLanes { slit, verdicts }, result, duration_s: duration }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_is_one_half_at_a50_and_rises_with_size() {
        let c = PodTable::default().agglomerate;
        assert!((c.probability(150e-6) - 0.5).abs() < 1e-12);
        assert!(c.probability(300e-6) > 0.9);
        assert!(c.probability(75e-6) < 0.1);
        assert_eq!(c.probability(0.0), 0.0);
    }

    #[test]
    fn cpk_of_a_centred_process() {
        assert!((cpk(10.0, 1.0, 7.0, 13.0).unwrap() - 1.0).abs() < 1e-12);
        assert!((cpk(11.0, 1.0, 7.0, 13.0).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(cpk(10.0, 0.0, 7.0, 13.0), None);
    }

    #[test]
    fn window_share_counts_missing_history_as_zero() {
        let mut w = Window::new(4);
        w.push(1.0);
        assert!((w.share() - 0.25).abs() < 1e-12);
        assert!((w.mean() - 1.0).abs() < 1e-12);
        for _ in 0..4 {
            w.push(0.0);
        }
        assert_eq!(w.share(), 0.0);
    }
}
