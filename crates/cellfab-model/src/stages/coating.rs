//! Coating (slot die): meter the slurry onto both sides of the foil and set the areal
//! loading that fixes the electrode's capacity (MODELS.md §2). `Slurry` in, `WetFilm` out.
//!
//! Pre-metered coating: everything the pump delivers ends on the web, so the wet thickness
//! is `Q/(W·v)` and the roll length follows from the usable slurry volume. The stage builds
//! the web grid once (0.5 m segments × 32 CD cells): AR(1) loading drift along the web, a
//! static zero-mean die-lip profile across it, the heavy-edge profile (Spiegel et al. 2022)
//! averaged analytically over each CD cell, rivulets when the viscocapillary coating window
//! (Ruschak 1976; Higgins & Scriven 1980; Carvalho & Kheshgi 2000) is broken, Poisson
//! agglomerate and bubble defects, and the start-up scrap flags. It then walks the web at
//! the line speed (one integration step per segment) and samples every `sample_interval_s`
//! at the die position `x = v·t`.
//!
//! Process draws (only with process variability on), in this order: the CD profile δ (one
//! normal per CD cell); then per segment: the AR(1) loading drift (z₀ at segment 0, one
//! innovation per later segment), the rivulet position (one uniform, only when μ_w < 1),
//! the agglomerate count (Poisson) and per agglomerate its MD position, CD position and size
//! (uniform, uniform, normal), then the same for bubbles. Sensor draws per sample, in field
//! order: line speed, flow rate, wet thickness.

use crate::alarm::{AlarmScope, AlarmTracker, Severity, HYSTERESIS_FRAC};
use crate::defect::{Defect, DefectKind, DefectSeverity};
use crate::error::{check_open_min, check_range, ParamError};
use crate::fault::{At, FaultCode, FaultRegion, FaultSet, FaultSpec};
use crate::legacy::{put, put_value, LegacyRecord};
use crate::material::Foil;
use crate::random::{normal, uniform, Ar1, StreamRng};
use crate::reading::{Reading, Sensor};
use crate::stage::{
    sample_times, ResultRecord, SampleRecord, Stage, StageCtx, StageKind, StageParams, StageRun, StageSink,
};
use crate::stages::mixing::Slurry;
use crate::web::{SegmentFlags, WebGrid};
use crate::Alarm;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Parameters (§2.1)
// ---------------------------------------------------------------------------------------------

/// Slot-die coater settings of one line. Defaults: MODELS.md §2.1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CoatingParams {
    /// Line (web) speed, also the dryer speed; [0.01, 3.0]. [E]
    pub coating_speed_m_s: f64,
    /// Slurry flow per die (side); (0, 1e-2]. [E]
    pub flow_rate_m3_s: f64,
    /// Die lip to web gap H; [2e-5, 2e-3]. [E]
    pub gap_height_m: f64,
    /// Coated width W; [0.05, 2.0]. [E]
    pub coating_width_m: f64,
    /// Coated sides (tandem double-sided coating); 1 or 2. [E]
    pub sides: u32,
    /// Slurry temperature at the die; [5, 60]. [E]
    pub slurry_temperature_degc: f64,
    /// First coated metres flagged as start-up scrap; [0, 500]. [E]
    pub startup_scrap_length_m: f64,
    /// Standard deviation of the AR(1) loading drift along the web; [0, 0.2]. [C]
    pub loading_md_sigma_frac: f64,
    /// Correlation length of the loading drift; (0, 1e4]. [C]
    pub loading_md_correlation_m: f64,
    /// Standard deviation of the static die-lip (CD) profile, drawn per batch; [0, 0.2]. [C]
    pub loading_cd_sigma_frac: f64,
    /// Edge elevation a_e (heavy edges, Spiegel et al. 2022); [0, 0.5]. [L form, C value]
    pub edge_elevation_frac: f64,
    /// Decay length ℓ_e of the edge elevation; (0, 0.05]. [L form, C value]
    pub edge_elevation_length_m: f64,
    /// Agglomerate defects per m² of coated area at agglomerate fraction 0.03, scaling with
    /// (A/0.03)²; [0, 100]. [C]
    pub agglomerate_defect_rate_per_m2: f64,
    /// Bubble defects per m² of coated area per unit slurry air fraction; [0, 1e4]. [C]
    pub bubble_defect_rate_per_m2: f64,
    /// Web-grid segment length (§0.8); [0.05, 10]. [E]
    pub segment_length_m: f64,
    /// Web-grid cells across the coated width (§0.8); [1, 256]. [E]
    pub cd_cells: u32,
    /// Sample interval; (0, 600]. [E]
    pub sample_interval_s: f64,
}

impl CoatingParams {
    /// Anode defaults: 0.4 m/s (24 m/min), 3.83e-5 m³/s per side, gap 300 µm, 0.52 m wide.
    pub fn anode() -> Self {
        Self {
            coating_speed_m_s: 0.4,
            flow_rate_m3_s: 3.83e-5,
            gap_height_m: 3.0e-4,
            coating_width_m: 0.52,
            ..Self::cathode()
        }
    }

    /// Cathode defaults: 0.5 m/s (30 m/min), 3.2e-5 m³/s per side, gap 250 µm, 0.50 m wide.
    pub fn cathode() -> Self {
        Self {
            coating_speed_m_s: 0.5,
            flow_rate_m3_s: 3.2e-5,
            gap_height_m: 2.5e-4,
            coating_width_m: 0.50,
            sides: 2,
            slurry_temperature_degc: 25.0,
            startup_scrap_length_m: 10.0,
            loading_md_sigma_frac: 0.005,
            loading_md_correlation_m: 20.0,
            loading_cd_sigma_frac: 0.004,
            edge_elevation_frac: 0.04,
            edge_elevation_length_m: 0.003,
            agglomerate_defect_rate_per_m2: 0.005,
            bubble_defect_rate_per_m2: 0.5,
            segment_length_m: 0.5,
            cd_cells: 32,
            sample_interval_s: 2.0,
        }
    }

    /// Defaults of an electrode line (the cathode's for anything but the anode).
    pub fn for_line(line: crate::stage::Line) -> Self {
        match line {
            crate::stage::Line::Anode => Self::anode(),
            _ => Self::cathode(),
        }
    }
}

impl Default for CoatingParams {
    /// The cathode defaults.
    fn default() -> Self {
        Self::cathode()
    }
}

/// Range of the wet thickness implied by flow, width and speed (§2.1 cross-field rule) [m].
pub const WET_THICKNESS_RANGE_M: [f64; 2] = [1e-5, 2e-3];

impl StageParams for CoatingParams {
    fn validate(&self) -> Result<(), ParamError> {
        check_range("coating_speed_m_s", self.coating_speed_m_s, 0.01, 3.0, "m/s")?;
        check_open_min("flow_rate_m3_s", self.flow_rate_m3_s, 0.0, 1e-2, "m³/s")?;
        check_range("gap_height_m", self.gap_height_m, 2e-5, 2e-3, "m")?;
        check_range("coating_width_m", self.coating_width_m, 0.05, 2.0, "m")?;
        check_range("sides", self.sides as f64, 1.0, 2.0, "")?;
        check_range("slurry_temperature_degc", self.slurry_temperature_degc, 5.0, 60.0, "°C")?;
        check_range("startup_scrap_length_m", self.startup_scrap_length_m, 0.0, 500.0, "m")?;
        check_range("loading_md_sigma_frac", self.loading_md_sigma_frac, 0.0, 0.2, "")?;
        check_open_min("loading_md_correlation_m", self.loading_md_correlation_m, 0.0, 1e4, "m")?;
        check_range("loading_cd_sigma_frac", self.loading_cd_sigma_frac, 0.0, 0.2, "")?;
        check_range("edge_elevation_frac", self.edge_elevation_frac, 0.0, 0.5, "")?;
        check_open_min("edge_elevation_length_m", self.edge_elevation_length_m, 0.0, 0.05, "m")?;
        check_range("agglomerate_defect_rate_per_m2", self.agglomerate_defect_rate_per_m2, 0.0, 100.0, "1/m²")?;
        check_range("bubble_defect_rate_per_m2", self.bubble_defect_rate_per_m2, 0.0, 1e4, "1/m²")?;
        check_range("segment_length_m", self.segment_length_m, 0.05, 10.0, "m")?;
        check_range("cd_cells", self.cd_cells as f64, 1.0, 256.0, "")?;
        check_open_min("sample_interval_s", self.sample_interval_s, 0.0, 600.0, "s")?;
        let h_w = wet_thickness_m(self.flow_rate_m3_s, self.coating_width_m, self.coating_speed_m_s);
        let [lo, hi] = WET_THICKNESS_RANGE_M;
        if !(lo..=hi).contains(&h_w) {
            return Err(ParamError {
                field: "flow_rate_m3_s".into(),
                value: h_w,
                min: Some(lo),
                max: Some(hi),
                unit: "m".into(),
                rule: "wet thickness implied by flow, width and speed is outside 10 µm–2 mm".into(),
            });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Physics (§2.2), pure functions
// ---------------------------------------------------------------------------------------------

/// Pre-metered wet thickness `h_w = Q/(W·v)` (MODELS.md §2.2) [m].
pub fn wet_thickness_m(flow_rate_m3_s: f64, width_m: f64, speed_m_s: f64) -> f64 {
    flow_rate_m3_s / (width_m * speed_m_s)
}

/// Dry areal mass per side `m_A = h_w·ρ_slurry·w_s` (§2.2) [kg/m²].
pub fn areal_mass_kg_m2(wet_thickness_m: f64, slurry_density_kg_m3: f64, solids_mass_frac: f64) -> f64 {
    wet_thickness_m * slurry_density_kg_m3 * solids_mass_frac
}

/// Solvent per side `X = m_A·(1 − w_s)/w_s` (§2.2) [kg/m²].
pub fn solvent_areal_mass_kg_m2(areal_mass_kg_m2: f64, solids_mass_frac: f64) -> f64 {
    if solids_mass_frac > 0.0 {
        areal_mass_kg_m2 * (1.0 - solids_mass_frac) / solids_mass_frac
    } else {
        0.0
    }
}

/// Coating duration `T_coat = V_usable/(sides·Q)` (§2.2) [s].
pub fn coating_duration_s(usable_volume_m3: f64, sides: u32, flow_rate_m3_s: f64) -> f64 {
    usable_volume_m3.max(0.0) / (sides as f64 * flow_rate_m3_s)
}

/// Expected dry-film thickness before calendering `h_dry = m_A/(ρ_solid·(1 − ε_dry))`
/// (§2.2; corrects the predecessor's pore-free `h_w·φ_s`, upstream M5) [m].
pub fn dry_film_thickness_m(areal_mass_kg_m2: f64, solid_density_kg_m3: f64, dry_porosity_frac: f64) -> f64 {
    areal_mass_kg_m2 / (solid_density_kg_m3 * (1.0 - dry_porosity_frac))
}

/// Edge-elevation profile `s(y) = 1 + a_e·(exp(−y/ℓ_e) + exp(−(W − y)/ℓ_e))` (Spiegel et
/// al. 2022; §2.2).
pub fn edge_profile(y_m: f64, width_m: f64, elevation_frac: f64, length_m: f64) -> f64 {
    1.0 + elevation_frac * ((-y_m / length_m).exp() + (-(width_m - y_m) / length_m).exp())
}

/// Width-mean of the edge profile `s̄ = 1 + a_e·(2ℓ_e/W)·(1 − exp(−W/ℓ_e))` (§2.2).
pub fn edge_profile_mean(width_m: f64, elevation_frac: f64, length_m: f64) -> f64 {
    1.0 + elevation_frac * (2.0 * length_m / width_m) * (1.0 - (-width_m / length_m).exp())
}

/// `∫ s(y) dy` over `[y0, y1]`, analytic [m].
fn edge_profile_integral_m(y0_m: f64, y1_m: f64, width_m: f64, elevation_frac: f64, length_m: f64) -> f64 {
    let l = length_m;
    let near = (-y0_m / l).exp() - (-y1_m / l).exp();
    let far = (-(width_m - y1_m) / l).exp() - (-(width_m - y0_m) / l).exp();
    (y1_m - y0_m) + elevation_frac * l * (near + far)
}

/// Mean of `s(y)/s̄` over each of `n_cd` equal CD cells (the grid stores cell means). The
/// cell means average to exactly 1: the edge profile moves mass, it does not add any.
pub fn edge_profile_cell_means(width_m: f64, elevation_frac: f64, length_m: f64, n_cd: usize) -> Vec<f64> {
    let dy = width_m / n_cd as f64;
    let mean = edge_profile_mean(width_m, elevation_frac, length_m);
    (0..n_cd)
        .map(|j| {
            let (y0, y1) = (j as f64 * dy, if j + 1 == n_cd { width_m } else { (j + 1) as f64 * dy });
            edge_profile_integral_m(y0, y1, width_m, elevation_frac, length_m) / (y1 - y0) / mean
        })
        .collect()
}

/// Shear rate in the coating gap `γ̇ = v/H` (§2.2) [1/s].
pub fn gap_shear_rate_per_s(speed_m_s: f64, gap_height_m: f64) -> f64 {
    speed_m_s / gap_height_m
}

/// Capillary number `Ca = η·v/σ` (§2.2).
pub fn capillary_number(viscosity_pa_s: f64, speed_m_s: f64, surface_tension_n_m: f64) -> f64 {
    viscosity_pa_s * speed_m_s / surface_tension_n_m
}

/// Minimum wet thickness of the slot-coating window,
/// `h_min = H·min(1/3, 0.67·Ca^(2/3)/(1 + 0.67·Ca^(2/3)))` (viscocapillary model, Ruschak
/// 1976; Higgins & Scriven 1980; high-Ca asymptote H/3 from Carvalho & Kheshgi 2000;
/// MODELS.md §2.2) [m].
pub fn min_wet_thickness_m(gap_height_m: f64, capillary_number: f64) -> f64 {
    let c = 0.67 * capillary_number.max(0.0).powf(2.0 / 3.0);
    gap_height_m * (1.0 / 3.0f64).min(c / (1.0 + c))
}

/// Coefficient of variation (population σ / mean) of a row of values; 0 for a zero mean.
pub fn coefficient_of_variation(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if mean <= 0.0 {
        return 0.0;
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    var.sqrt() / mean
}

/// Agglomerate fraction at which `agglomerate_defect_rate_per_m2` applies.
pub const AGGLOMERATE_RATE_REFERENCE_FRAC: f64 = 0.03;
/// Median agglomerate size, lognormal with σ_ln 0.5 [m]. [C]
pub const AGGLOMERATE_MEDIAN_SIZE_M: f64 = 80e-6;
/// Median bubble/crater size, lognormal with σ_ln 0.5 [m]. [C]
pub const BUBBLE_MEDIAN_SIZE_M: f64 = 200e-6;
/// Log-standard deviation of defect sizes. [C]
pub const DEFECT_SIZE_SIGMA_LN: f64 = 0.5;
/// Agglomerates from this size on are `Major`.
pub const AGGLOMERATE_MAJOR_SIZE_M: f64 = 100e-6;
/// Bubbles from this size on are `Major`.
pub const BUBBLE_MAJOR_SIZE_M: f64 = 200e-6;
/// Window margin below which `COAT_WINDOW_MARGIN_LOW` warns.
pub const WINDOW_MARGIN_WARNING: f64 = 1.1;
/// Loading deviation of a segment's CD mean that warns / alarms.
pub const LOADING_DEVIATION_FRAC: [f64; 2] = [0.02, 0.03];

/// Line-speed encoder (§2.2).
const SPEED_SENSOR: Sensor = Sensor::relative(0.001);
/// Flow meter.
const FLOW_SENSOR: Sensor = Sensor::relative(0.005);
/// Wet-thickness gauge at the web centre.
const WET_THICKNESS_SENSOR: Sensor = Sensor::absolute(1e-6);

// ---------------------------------------------------------------------------------------------
// The coater of one batch: nominal values and the web grid
// ---------------------------------------------------------------------------------------------

/// Set-point quantities of the run (§2.2).
#[derive(Clone, Copy, Debug)]
struct Nominal {
    wet_thickness_m: f64,
    areal_mass_kg_m2: f64,
    dry_thickness_m: f64,
    duration_s: f64,
    roll_length_m: f64,
    shear_rate_per_s: f64,
    die_viscosity_pa_s: f64,
    capillary_number: f64,
    min_wet_thickness_m: f64,
    window_margin: f64,
}

impl Nominal {
    fn new(p: &CoatingParams, slurry: &Slurry) -> Self {
        let wet = wet_thickness_m(p.flow_rate_m3_s, p.coating_width_m, p.coating_speed_m_s);
        let areal = areal_mass_kg_m2(wet, slurry.density_kg_m3, slurry.solids_mass_frac);
        let duration_s = coating_duration_s(slurry.usable_volume_m3, p.sides, p.flow_rate_m3_s);
        let shear = gap_shear_rate_per_s(p.coating_speed_m_s, p.gap_height_m);
        let eta = slurry.viscosity_pa_s(shear, p.slurry_temperature_degc);
        let sigma = slurry.recipe.solvent.solvent().map_or(0.05, |s| s.slurry_surface_tension_n_m);
        let ca = capillary_number(eta, p.coating_speed_m_s, sigma);
        let h_min = min_wet_thickness_m(p.gap_height_m, ca);
        Self {
            wet_thickness_m: wet,
            areal_mass_kg_m2: areal,
            dry_thickness_m: dry_film_thickness_m(
                areal,
                slurry.solid_density_kg_m3,
                slurry.recipe.dry_film_porosity_frac,
            ),
            duration_s,
            roll_length_m: p.coating_speed_m_s * duration_s,
            shear_rate_per_s: shear,
            die_viscosity_pa_s: eta,
            capillary_number: ca,
            min_wet_thickness_m: h_min,
            window_margin: if h_min > 0.0 { wet / h_min } else { f64::INFINITY },
        }
    }
}

/// Flow factor of F04 at stage time `t` (MODELS.md §13): `1 + r·(t − t_on)` inside the fault.
fn weight_drift_factor(f: &FaultSpec, t_s: f64) -> f64 {
    let level = f.level(t_s);
    if level <= 0.0 {
        return 1.0;
    }
    (1.0 + level * f.magnitude.drift_rate_per_s.unwrap_or(-1e-5) * (t_s - f.onset)).max(0.0)
}

/// What the flow meter misses at `t_s`: the F04 factor of silent faults (the meter drifts
/// with the pump), 1 otherwise.
fn silent_flow_factor(faults: &FaultSet, t_s: f64) -> f64 {
    faults
        .of(FaultCode::F04CoatWeightDrift)
        .filter(|f| !f.spec.sensor_visible)
        .map(|f| weight_drift_factor(&f.spec, t_s))
        .product()
}

/// Applies the coating faults of §13 to the built web and returns the regions they touched:
/// F04 scales the whole width of every segment coated during the drift (flow and loading
/// follow the pump); F03 takes `(1 − f)` of the loading out of the clogged band and, with
/// constant pump flow, puts it on the rest of the width, and leaves a `Streak` defect.
fn apply_faults(web: &mut Web, p: &CoatingParams, faults: &FaultSet) -> Vec<FaultRegion> {
    let mut regions = Vec::new();
    if faults.is_empty() {
        return regions;
    }
    let (v, seg, w) = (p.coating_speed_m_s, p.segment_length_m, p.coating_width_m);
    let n_md = web.segment_flags.len();
    let n_cd = web.areal_mass_kg_m2.n_cd;
    let dy = w / n_cd as f64;
    let scale_row = |web: &mut Web, k: usize, factors: &[f64]| {
        for grid in [&mut web.areal_mass_kg_m2, &mut web.wet_thickness_m, &mut web.solvent_mass_kg_m2] {
            for (x, f) in grid.row_mut(k).iter_mut().zip(factors) {
                *x *= f;
            }
        }
    };
    for f in faults.of(FaultCode::F04CoatWeightDrift) {
        let mut touched: Option<(f64, f64)> = None;
        for k in 0..n_md {
            let t = (k as f64 + 0.5) * seg / v;
            let factor = weight_drift_factor(&f.spec, t);
            if f.spec.contains(t) {
                scale_row(web, k, &vec![factor; n_cd]);
                let x0 = k as f64 * seg;
                touched = Some(touched.map_or((x0, x0 + seg), |(a, _)| (a, x0 + seg)));
            }
        }
        if let Some((a, b)) = touched {
            regions.push(FaultRegion {
                label_id: f.label_id,
                md_start_m: a,
                md_end_m: b,
                cd_start_m: 0.0,
                cd_end_m: w,
            });
        }
    }
    for f in faults.of(FaultCode::F03CoatNozzleClog) {
        let m = &f.spec.magnitude;
        let centre = m.cd_position_m.unwrap_or(0.25).min(w);
        let width = m.width_m.unwrap_or(0.003);
        let loading = m.loading_factor.unwrap_or(0.0);
        let (y0, y1) = ((centre - width / 2.0).max(0.0), (centre + width / 2.0).min(w));
        // share of each CD cell covered by the band
        let cover: Vec<f64> = (0..n_cd)
            .map(|j| {
                let (a, b) = (j as f64 * dy, (j + 1) as f64 * dy);
                ((b.min(y1) - a.max(y0)).max(0.0)) / dy
            })
            .collect();
        let mut touched: Option<(f64, f64)> = None;
        for k in 0..n_md {
            let x0 = k as f64 * seg;
            let xm = x0 + seg / 2.0;
            if !f.spec.contains(xm) {
                continue;
            }
            let row = web.areal_mass_kg_m2.row(k);
            let before: f64 = row.iter().sum();
            let band: Vec<f64> = cover.iter().map(|c| 1.0 - c * (1.0 - loading)).collect();
            let after_band: f64 = row.iter().zip(&band).map(|(x, b)| x * b).sum();
            // constant pump flow: what the band lost goes onto the uncovered width
            let free: f64 = row.iter().zip(&cover).map(|(x, c)| x * (1.0 - c)).sum();
            let boost = if free > 0.0 { 1.0 + (before - after_band) / free } else { 1.0 };
            let factors: Vec<f64> =
                band.iter().zip(&cover).map(|(b, c)| b * (1.0 + (boost - 1.0) * (1.0 - c))).collect();
            scale_row(web, k, &factors);
            web.defects.push(Defect {
                id: web.defects.len() as u32 + 1,
                kind: DefectKind::Streak,
                origin_stage: StageKind::Coating.name().into(),
                md_position_m: x0,
                cd_position_m: centre,
                length_m: seg,
                width_m: y1 - y0,
                size_m: y1 - y0,
                severity: DefectSeverity::Major,
                detected: false,
                false_call: false,
                fault_label: Some(f.label_id),
            });
            web.defects_per_segment[k] += 1;
            faults.touch(
                f.label_id,
                At { stage_time_s: x0 / v, position_m: Some(x0), cd_position_m: Some(centre), ..At::default() },
            );
            touched = Some(touched.map_or((x0, x0 + seg), |(a, _)| (a, x0 + seg)));
        }
        if let Some((a, b)) = touched {
            regions.push(FaultRegion {
                label_id: f.label_id,
                md_start_m: a,
                md_end_m: b,
                cd_start_m: y0,
                cd_end_m: y1,
            });
        }
    }
    regions
}

/// The coated web as built by [`build_web`].
struct Web {
    areal_mass_kg_m2: WebGrid,
    wet_thickness_m: WebGrid,
    solvent_mass_kg_m2: WebGrid,
    segment_flags: Vec<SegmentFlags>,
    defects: Vec<Defect>,
    defects_per_segment: Vec<u32>,
}

/// Builds the web grid, flags and defects (§2.2) in O(n_md·n_cd). Draws from `rng` only
/// when `variability` is on, in the order documented at the top of this module.
fn build_web(p: &CoatingParams, slurry: &Slurry, nominal: &Nominal, variability: bool, rng: &mut StreamRng) -> Web {
    let (w, seg) = (p.coating_width_m, p.segment_length_m);
    let length = nominal.roll_length_m;
    let n_md = WebGrid::segments_for(length, seg);
    let n_cd = p.cd_cells as usize;
    let dy = w / n_cd as f64;

    // static CD shape: edge profile (cell means of s/s̄) × die-lip profile (1 + δ)
    let edge = edge_profile_cell_means(w, p.edge_elevation_frac, p.edge_elevation_length_m, n_cd);
    let mut cd_shape = edge.clone();
    if variability && p.loading_cd_sigma_frac > 0.0 {
        let mut delta: Vec<f64> = (0..n_cd).map(|_| p.loading_cd_sigma_frac * normal(rng)).collect();
        // zero mean across the width, weighted by the edge profile so the CD shape moves
        // mass without adding any: Σ (1 + δ_j)·s_j = Σ s_j
        let weighted = delta.iter().zip(&edge).map(|(d, s)| d * s).sum::<f64>() / edge.iter().sum::<f64>();
        for ((c, d), s) in cd_shape.iter_mut().zip(delta.iter_mut()).zip(&edge) {
            *d -= weighted;
            *c = s * (1.0 + *d).max(0.0);
        }
    }

    let md_sigma = if variability { p.loading_md_sigma_frac } else { 0.0 };
    let mut drift = Ar1::new(md_sigma, p.loading_md_correlation_m, seg, rng);
    let agglomerate_rate = if variability {
        p.agglomerate_defect_rate_per_m2 * (slurry.agglomerate_frac / AGGLOMERATE_RATE_REFERENCE_FRAC).powi(2)
    } else {
        0.0
    };
    let bubble_rate = if variability { p.bubble_defect_rate_per_m2 * slurry.air_volume_frac } else { 0.0 };
    let streak_cells = if nominal.window_margin < 1.0 && n_cd > 1 {
        (((1.0 - nominal.window_margin) * n_cd as f64).round() as usize).clamp(1, n_cd - 1)
    } else {
        0
    };

    let mut areal = WebGrid::filled(n_md, n_cd, seg, w, 0.0);
    let mut flags = vec![SegmentFlags::default(); n_md];
    let mut defects = Vec::new();
    let mut per_segment = vec![0u32; n_md];
    let side_area_per_m = p.sides as f64 * w;

    for k in 0..n_md {
        let x0 = k as f64 * seg;
        let seg_len = (length - x0).clamp(0.0, seg);
        let z = if k == 0 { drift.value() } else { drift.step(rng) };
        let level = nominal.areal_mass_kg_m2 * (1.0 + z).max(0.0);
        let row = areal.row_mut(k);
        for (v, c) in row.iter_mut().zip(&cd_shape) {
            *v = level * c;
        }
        if x0 < p.startup_scrap_length_m {
            flags[k].set(SegmentFlags::STARTUP_SCRAP);
        }

        // rivulets: the bead breaks, a block of adjacent cells stays dry and the same flow
        // goes onto the rest (pre-metered: the segment keeps its mass)
        if streak_cells > 0 {
            let free = n_cd - streak_cells;
            let first = if variability { ((uniform(rng) * (free + 1) as f64) as usize).min(free) } else { free / 2 };
            let before: f64 = row.iter().sum();
            row[first..first + streak_cells].fill(0.0);
            let after: f64 = row.iter().sum();
            if after > 0.0 {
                let scale = before / after;
                row.iter_mut().for_each(|v| *v *= scale);
            }
            flags[k].set(SegmentFlags::STREAK);
            let width = streak_cells as f64 * dy;
            defects.push(Defect {
                id: defects.len() as u32 + 1,
                kind: DefectKind::Streak,
                origin_stage: StageKind::Coating.name().into(),
                md_position_m: x0,
                cd_position_m: first as f64 * dy + width / 2.0,
                length_m: seg_len,
                width_m: width,
                size_m: width,
                severity: DefectSeverity::Major,
                detected: false,
                false_call: false,
                fault_label: None,
            });
            per_segment[k] += 1;
        }

        // point defects: Poisson arrivals over the coated area of both sides
        let area = side_area_per_m * seg_len;
        for (kind, rate, median, major) in [
            (DefectKind::Agglomerate, agglomerate_rate, AGGLOMERATE_MEDIAN_SIZE_M, AGGLOMERATE_MAJOR_SIZE_M),
            (DefectKind::Bubble, bubble_rate, BUBBLE_MEDIAN_SIZE_M, BUBBLE_MAJOR_SIZE_M),
        ] {
            if rate <= 0.0 {
                continue;
            }
            let count = crate::random::poisson(rng, rate * area);
            for _ in 0..count {
                let md = x0 + uniform(rng) * seg_len;
                let cd = uniform(rng) * w;
                let size = median * (DEFECT_SIZE_SIGMA_LN * normal(rng)).exp();
                defects.push(Defect {
                    id: defects.len() as u32 + 1,
                    kind,
                    origin_stage: StageKind::Coating.name().into(),
                    md_position_m: md,
                    cd_position_m: cd,
                    length_m: size,
                    width_m: size,
                    size_m: size,
                    severity: if size >= major { DefectSeverity::Major } else { DefectSeverity::Minor },
                    detected: false,
                    false_call: false,
                    fault_label: None,
                });
            }
            per_segment[k] += count;
        }
    }

    // wet film and solvent consistent with the local loading
    let w_s = slurry.solids_mass_frac;
    let wet_per_areal = if slurry.density_kg_m3 * w_s > 0.0 { 1.0 / (slurry.density_kg_m3 * w_s) } else { 0.0 };
    let mut wet = areal.clone();
    wet.map_in_place(|m| m * wet_per_areal);
    let mut solvent = areal.clone();
    solvent.map_in_place(|m| solvent_areal_mass_kg_m2(m, w_s));
    Web {
        areal_mass_kg_m2: areal,
        wet_thickness_m: wet,
        solvent_mass_kg_m2: solvent,
        segment_flags: flags,
        defects,
        defects_per_segment: per_segment,
    }
}

// ---------------------------------------------------------------------------------------------
// Samples and result (§2.3)
// ---------------------------------------------------------------------------------------------

/// One coating sample: the web at the die at stage time `stage_time_s` (§2.3).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CoatingSample {
    /// Plant time [s].
    pub t_s: f64,
    /// Stage time [s].
    pub stage_time_s: f64,
    /// Web position at the die, coating coordinates x = v·t [m].
    pub position_m: f64,
    /// Line speed (encoder) [m/s].
    pub line_speed_m_s: Reading,
    /// Slurry flow per die (flow meter); the true value carries the segment's loading drift
    /// (pump pulsation is what moves the loading along the web) [m³/s].
    pub flow_rate_m3_s: Reading,
    /// Wet thickness at the web centre (gauge) [m].
    pub wet_thickness_m: Reading,
    /// Dry areal mass per side, CD mean of the current segment (true) [kg/m²].
    pub areal_mass_kg_m2: f64,
    /// Set-point dry areal mass per side [kg/m²].
    pub nominal_areal_mass_kg_m2: f64,
    /// Expected dry-film thickness of the current segment, porosity-aware [m].
    pub dry_thickness_m: f64,
    /// Shear rate in the gap v/H [1/s].
    pub shear_rate_per_s: f64,
    /// Slurry viscosity at the die shear rate and temperature [Pa·s].
    pub die_viscosity_pa_s: f64,
    /// Capillary number η·v/σ.
    pub capillary_number: f64,
    /// Minimum wet thickness of the coating window [m].
    pub min_wet_thickness_m: f64,
    /// Coating-window margin h_w/h_min.
    pub window_margin: f64,
    /// Coefficient of variation of the areal mass over the CD cells of the current segment.
    pub uniformity_cv_frac: f64,
    /// Slurry left to coat [m³].
    pub slurry_remaining_m3: f64,
    /// Defects in the current segment.
    pub defects_in_segment: u32,
    /// Any Warning+ alarm of this stage active at this instant (legacy `defect_risk`).
    pub defect_risk: bool,
    /// Fault labels active on this sample.
    pub fault_labels: Vec<u32>,
}

impl SampleRecord for CoatingSample {
    fn stage_time_s(&self) -> f64 {
        self.stage_time_s
    }

    /// `shear_rate_1_per_s`, `viscosity_Pa_s`, `wet_thickness_m` (measured),
    /// `dry_thickness_m`, `defect_risk`, `uniformity_std` (MODELS.md §2.4).
    fn legacy(&self, out: &mut LegacyRecord) {
        put(out, "shear_rate_1_per_s", self.shear_rate_per_s);
        put(out, "viscosity_Pa_s", self.die_viscosity_pa_s);
        put(out, "wet_thickness_m", self.wet_thickness_m.value());
        put(out, "dry_thickness_m", self.dry_thickness_m);
        put_value(out, "defect_risk", self.defect_risk);
        put(out, "uniformity_std", self.uniformity_cv_frac);
    }
}

/// The final result of coating one roll (§2.3).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CoatingResult {
    /// Coated roll length [m].
    pub roll_length_m: f64,
    /// Coating duration [s].
    pub duration_s: f64,
    /// Coated area, both sides [m²].
    pub coated_area_m2: f64,
    /// Set-point wet thickness [m].
    pub nominal_wet_thickness_m: f64,
    /// Set-point dry areal mass per side [kg/m²].
    pub nominal_areal_mass_kg_m2: f64,
    /// Expected dry-film thickness per side before calendering [m].
    pub nominal_dry_thickness_m: f64,
    /// Mean dry areal mass per side over the grid [kg/m²].
    pub areal_mass_mean_kg_m2: f64,
    /// Standard deviation of the dry areal mass over the grid [kg/m²].
    pub areal_mass_std_kg_m2: f64,
    /// Slurry coated [m³].
    pub slurry_used_m3: f64,
    /// Shear rate in the gap [1/s].
    pub shear_rate_per_s: f64,
    /// Viscosity at the die [Pa·s].
    pub die_viscosity_pa_s: f64,
    /// Capillary number.
    pub capillary_number: f64,
    /// Minimum wet thickness of the coating window [m].
    pub min_wet_thickness_m: f64,
    /// Smallest coating-window margin of the run.
    pub min_window_margin: f64,
    /// Agglomerate defects.
    pub agglomerate_defects: u32,
    /// Bubble defects.
    pub bubble_defects: u32,
    /// Streak defects (one per segment with rivulets).
    pub streak_defects: u32,
    /// Length of the segments flagged as start-up scrap [m].
    pub scrap_length_m: f64,
    /// No alarm of severity ≥ Alarm was raised.
    pub accepted: bool,
    /// Any Warning+ alarm was raised during the run (the legacy final `defect_risk`).
    pub defect_risk: bool,
    /// Every alarm event of the run.
    pub alarms: Vec<Alarm>,
}

impl ResultRecord for CoatingResult {
    /// `"Final Properties"` with the sample keys: set-point shear rate, die viscosity, wet
    /// and expected dry thickness, `defect_risk` of the run, and the CV of the areal mass
    /// over the whole grid as `uniformity_std`.
    fn legacy(&self, out: &mut LegacyRecord) {
        crate::legacy::put_object(out, "Final Properties", |p| {
            put(p, "shear_rate_1_per_s", self.shear_rate_per_s);
            put(p, "viscosity_Pa_s", self.die_viscosity_pa_s);
            put(p, "wet_thickness_m", self.nominal_wet_thickness_m);
            put(p, "dry_thickness_m", self.nominal_dry_thickness_m);
            put_value(p, "defect_risk", self.defect_risk);
            let cv = if self.areal_mass_mean_kg_m2 > 0.0 {
                self.areal_mass_std_kg_m2 / self.areal_mass_mean_kg_m2
            } else {
                0.0
            };
            put(p, "uniformity_std", cv);
        });
    }

    fn accepted(&self) -> bool {
        self.accepted
    }

    fn summary(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("wet thickness µm", self.nominal_wet_thickness_m * 1e6),
            ("areal mass kg/m2", self.nominal_areal_mass_kg_m2),
            ("roll length m", self.roll_length_m),
            ("window margin", self.min_window_margin),
            ("die viscosity Pa·s", self.die_viscosity_pa_s),
            ("defects", (self.agglomerate_defects + self.bubble_defects + self.streak_defects) as f64),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// The stage
// ---------------------------------------------------------------------------------------------

/// The coating stage (MODELS.md §2): `Slurry` in, `WetFilm` out.
pub struct Coating;

impl Stage for Coating {
    const KIND: StageKind = StageKind::Coating;
    type Params = CoatingParams;
    type Input = Slurry;
    type Output = WetFilm;
    type Sample = CoatingSample;
    type Result = CoatingResult;
    type MachineState = ();

    fn run(
        params: &CoatingParams,
        slurry: Slurry,
        _machine: &mut (),
        ctx: &mut StageCtx<'_>,
        sink: &mut dyn StageSink<CoatingSample>,
    ) -> StageRun<WetFilm, CoatingResult> {
        let p = params;
        let nominal = Nominal::new(p, &slurry);
        let mut web = build_web(p, &slurry, &nominal, ctx.process_variability, ctx.process_rng);
        let fault_regions = apply_faults(&mut web, p, ctx.faults);
        let n_md = web.segment_flags.len();
        let (v, seg, w) = (p.coating_speed_m_s, p.segment_length_m, p.coating_width_m);
        let duration_s = nominal.duration_s;
        let mut tracker = AlarmTracker::new(Self::KIND, ctx.line, ctx.start_t_s);
        let mut forwarded = 0;
        let at_start = || AlarmScope { position_m: Some(0.0), ..AlarmScope::default() };

        // conditions of the whole run, known at the start
        if slurry.not_flowable {
            tracker.set(
                0.0,
                "COAT_SLURRY_NOT_FLOWABLE",
                Severity::Critical,
                true,
                "slurry_not_flowable",
                1.0,
                1.0,
                at_start(),
                || "slurry flagged MIX_NOT_FLOWABLE: it cannot be coated to spec".into(),
            );
        }
        let (margin, h_w) = (nominal.window_margin, nominal.wet_thickness_m);
        tracker.low(0.0, "COAT_LOW_FLOW_LIMIT", Severity::Alarm, "window_margin", margin, 1.0, at_start(), || {
            format!("window margin {margin:.3} below 1: the bead breaks into rivulets")
        });
        tracker.high(
            0.0,
            "COAT_BEAD_OVERFLOW",
            Severity::Alarm,
            "wet_thickness_m",
            h_w,
            p.gap_height_m,
            at_start(),
            || format!("wet thickness {:.1} µm above the gap {:.1} µm", h_w * 1e6, p.gap_height_m * 1e6),
        );
        tracker.set(
            0.0,
            "COAT_WINDOW_MARGIN_LOW",
            Severity::Warning,
            (1.0..WINDOW_MARGIN_WARNING).contains(&margin),
            "window_margin",
            margin,
            WINDOW_MARGIN_WARNING,
            at_start(),
            || format!("window margin {margin:.3} below {WINDOW_MARGIN_WARNING}"),
        );
        forward(&tracker, &mut forwarded, sink);

        // walk the web one segment per step, sampling at the die position
        let segment_at = |x: f64| (((x / seg) + 1e-9).floor() as usize).min(n_md - 1);
        let gauge = (w / 2.0 - w / (2.0 * p.cd_cells as f64), w / 2.0 + w / (2.0 * p.cd_cells as f64));
        let mut loading = LoadingLevel::None;
        let mut next_segment = 0;
        for ts in sample_times(duration_s, p.sample_interval_s) {
            let x = v * ts;
            let current = segment_at(x);
            while next_segment <= current {
                let k = next_segment;
                let mean = web.areal_mass_kg_m2.row_mean(k);
                let deviation =
                    if nominal.areal_mass_kg_m2 > 0.0 { (mean / nominal.areal_mass_kg_m2 - 1.0).abs() } else { 0.0 };
                loading.update(&mut tracker, deviation, k as f64 * seg / v, k as f64 * seg);
                next_segment += 1;
            }
            forward(&tracker, &mut forwarded, sink);

            let areal_mean = web.areal_mass_kg_m2.row_mean(current);
            let flow = if nominal.areal_mass_kg_m2 > 0.0 {
                p.flow_rate_m3_s * areal_mean / nominal.areal_mass_kg_m2
            } else {
                p.flow_rate_m3_s
            };
            let wet_centre = web.wet_thickness_m.band_mean(current, gauge.0, gauge.1);
            let flow = flow / silent_flow_factor(ctx.faults, ts);
            let (noise, rng) = (ctx.sensor_noise, &mut *ctx.sensor_rng);
            let line_speed = SPEED_SENSOR.measure(v, noise, rng);
            let flow = FLOW_SENSOR.measure(flow, noise, rng);
            let flow = ctx.faults.corrupt("flow_rate_m3_s", ts, flow);
            let line_speed = ctx.faults.corrupt("line_speed_m_s", ts, line_speed);
            let wet_centre = WET_THICKNESS_SENSOR.measure(wet_centre, noise, rng);
            let wet_centre = ctx.faults.corrupt("wet_thickness_m", ts, wet_centre);
            sink.sample(CoatingSample {
                t_s: ctx.start_t_s + ts,
                stage_time_s: ts,
                position_m: x,
                line_speed_m_s: line_speed,
                flow_rate_m3_s: flow,
                wet_thickness_m: wet_centre,
                areal_mass_kg_m2: areal_mean,
                nominal_areal_mass_kg_m2: nominal.areal_mass_kg_m2,
                dry_thickness_m: dry_film_thickness_m(
                    areal_mean,
                    slurry.solid_density_kg_m3,
                    slurry.recipe.dry_film_porosity_frac,
                ),
                shear_rate_per_s: nominal.shear_rate_per_s,
                die_viscosity_pa_s: nominal.die_viscosity_pa_s,
                capillary_number: nominal.capillary_number,
                min_wet_thickness_m: nominal.min_wet_thickness_m,
                window_margin: nominal.window_margin,
                uniformity_cv_frac: coefficient_of_variation(web.areal_mass_kg_m2.row(current)),
                slurry_remaining_m3: (slurry.usable_volume_m3 - p.sides as f64 * p.flow_rate_m3_s * ts).max(0.0),
                defects_in_segment: web.defects_per_segment[current],
                defect_risk: tracker.any_active(Severity::Warning),
                fault_labels: ctx.faults.labels_at(ts, Some(x)),
            });
        }

        let values = web.areal_mass_kg_m2.values();
        let mean = web.areal_mass_kg_m2.mean();
        let std = (values.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
        let count = |kind| web.defects.iter().filter(|d| d.kind == kind).count() as u32;
        let scrap_segments = web.segment_flags.iter().filter(|f| f.has(SegmentFlags::STARTUP_SCRAP)).count();
        let result = CoatingResult {
            roll_length_m: nominal.roll_length_m,
            duration_s,
            coated_area_m2: p.sides as f64 * w * nominal.roll_length_m,
            nominal_wet_thickness_m: nominal.wet_thickness_m,
            nominal_areal_mass_kg_m2: nominal.areal_mass_kg_m2,
            nominal_dry_thickness_m: nominal.dry_thickness_m,
            areal_mass_mean_kg_m2: mean,
            areal_mass_std_kg_m2: std,
            slurry_used_m3: p.sides as f64 * p.flow_rate_m3_s * duration_s,
            shear_rate_per_s: nominal.shear_rate_per_s,
            die_viscosity_pa_s: nominal.die_viscosity_pa_s,
            capillary_number: nominal.capillary_number,
            min_wet_thickness_m: nominal.min_wet_thickness_m,
            min_window_margin: nominal.window_margin,
            agglomerate_defects: count(DefectKind::Agglomerate),
            bubble_defects: count(DefectKind::Bubble),
            streak_defects: count(DefectKind::Streak),
            scrap_length_m: (scrap_segments as f64 * seg).min(nominal.roll_length_m),
            accepted: !tracker.any_raised(Severity::Alarm),
            defect_risk: tracker.any_raised(Severity::Warning),
            alarms: tracker.events,
        };
        let film = WetFilm {
            foil: slurry.recipe.foil.foil(),
            slurry,
            coating_width_m: w,
            line_speed_m_s: v,
            sides: p.sides,
            roll_length_m: nominal.roll_length_m,
            coating_duration_s: duration_s,
            startup_scrap_length_m: p.startup_scrap_length_m,
            slurry_temperature_degc: p.slurry_temperature_degc,
            areal_mass_kg_m2: web.areal_mass_kg_m2,
            wet_thickness_m: web.wet_thickness_m,
            solvent_mass_kg_m2: web.solvent_mass_kg_m2,
            segment_flags: web.segment_flags,
            defects: web.defects,
            nominal_areal_mass_kg_m2: nominal.areal_mass_kg_m2,
            nominal_wet_thickness_m: nominal.wet_thickness_m,
            nominal_dry_thickness_m: nominal.dry_thickness_m,
            fault_regions,
        };
        StageRun { output: film, result, duration_s }
    }
}

/// Sends the tracker's new events to the sink.
fn forward(tracker: &AlarmTracker, forwarded: &mut usize, sink: &mut dyn StageSink<CoatingSample>) {
    for a in &tracker.events[*forwarded..] {
        sink.alarm(a);
    }
    *forwarded = tracker.len();
}

/// State of the banded `COAT_LOADING_DEVIATION` alarm (Warning above 2 %, Alarm above 3 %,
/// each clearing 2 % below its threshold, §0.5).
#[derive(Clone, Copy, Debug, PartialEq)]
enum LoadingLevel {
    None,
    Warning,
    Alarm,
}

impl LoadingLevel {
    /// Moves to the level of `deviation` and emits the clear/raise events of a change.
    fn update(&mut self, tracker: &mut AlarmTracker, deviation: f64, t_s: f64, position_m: f64) {
        let [warn, alarm] = LOADING_DEVIATION_FRAC;
        let above = |threshold: f64, active: bool| {
            if active {
                deviation >= threshold * (1.0 - HYSTERESIS_FRAC)
            } else {
                deviation > threshold
            }
        };
        let next = if above(alarm, *self == LoadingLevel::Alarm) {
            LoadingLevel::Alarm
        } else if above(warn, *self != LoadingLevel::None) {
            LoadingLevel::Warning
        } else {
            LoadingLevel::None
        };
        if next == *self {
            return;
        }
        const CODE: &str = "COAT_LOADING_DEVIATION";
        let scope = || AlarmScope { position_m: Some(position_m), ..AlarmScope::default() };
        if let Some((severity, threshold)) = self.severity() {
            tracker.set(
                t_s,
                CODE,
                severity,
                false,
                "areal_mass_deviation_frac",
                deviation,
                threshold,
                scope(),
                String::new,
            );
        }
        if let Some((severity, threshold)) = next.severity() {
            tracker.set(t_s, CODE, severity, true, "areal_mass_deviation_frac", deviation, threshold, scope(), || {
                format!("segment areal mass {:.2} % off nominal at {position_m:.1} m", deviation * 100.0)
            });
        }
        *self = next;
    }

    fn severity(self) -> Option<(Severity, f64)> {
        match self {
            LoadingLevel::None => None,
            LoadingLevel::Warning => Some((Severity::Warning, LOADING_DEVIATION_FRAC[0])),
            LoadingLevel::Alarm => Some((Severity::Alarm, LOADING_DEVIATION_FRAC[1])),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Product (§0.9, §2.4)
// ---------------------------------------------------------------------------------------------

/// The coated, still wet roll (MODELS.md §0.9). Grids are per side; both sides identical.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WetFilm {
    /// The slurry it was coated from (carries the recipe).
    pub slurry: Slurry,
    /// Current-collector foil.
    pub foil: Foil,
    /// Coated width W [m].
    pub coating_width_m: f64,
    /// Line (web) speed, also the dryer speed [m/s].
    pub line_speed_m_s: f64,
    /// Coated sides (1 or 2).
    pub sides: u32,
    /// Coated roll length [m].
    pub roll_length_m: f64,
    /// Coating duration T_coat [s].
    pub coating_duration_s: f64,
    /// Start-up scrap length [m].
    pub startup_scrap_length_m: f64,
    /// Slurry temperature at the die [°C].
    pub slurry_temperature_degc: f64,
    /// Dry solids per side, per grid cell [kg/m²].
    pub areal_mass_kg_m2: WebGrid,
    /// Wet film thickness per side [m].
    pub wet_thickness_m: WebGrid,
    /// Solvent per side [kg/m²].
    pub solvent_mass_kg_m2: WebGrid,
    /// Per-segment quality flags (start-up scrap, streaks, …) that travel downstream.
    pub segment_flags: Vec<SegmentFlags>,
    /// Defects on the web, in coating coordinates.
    pub defects: Vec<Defect>,
    /// Set-point dry areal mass per side [kg/m²].
    pub nominal_areal_mass_kg_m2: f64,
    /// Set-point wet thickness [m].
    pub nominal_wet_thickness_m: f64,
    /// Expected dry-film thickness per side before calendering [m].
    pub nominal_dry_thickness_m: f64,
    /// Web regions touched by faults (coating coordinates), from coating on; every cell
    /// cut from a region carries its label (MODELS.md §0.8, §13).
    #[serde(default)]
    pub fault_regions: Vec<crate::fault::FaultRegion>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_cell_means_average_to_one_and_raise_the_edges() {
        let s = edge_profile_cell_means(0.5, 0.04, 0.003, 32);
        let mean = s.iter().sum::<f64>() / 32.0;
        assert!((mean - 1.0).abs() < 1e-12, "{mean}");
        assert!(s[0] > 1.0 && s[31] > 1.0 && s[16] < 1.0);
        assert!((s[0] - s[31]).abs() < 1e-12);
    }

    #[test]
    fn edge_integral_matches_the_closed_form_mean() {
        let (w, a, l) = (0.5, 0.04, 0.003);
        let whole = edge_profile_integral_m(0.0, w, w, a, l) / w;
        assert!((whole - edge_profile_mean(w, a, l)).abs() < 1e-14);
        // midpoint rule on a fine grid agrees with the analytic integral
        let n = 200_000;
        let dy = w / n as f64;
        let numeric: f64 = (0..n).map(|i| edge_profile((i as f64 + 0.5) * dy, w, a, l) * dy).sum();
        assert!((numeric / w - whole).abs() < 1e-9);
    }

    #[test]
    fn coating_window_saturates_at_a_third_of_the_gap() {
        assert!((min_wet_thickness_m(3e-4, 100.0) - 1e-4).abs() < 1e-15);
        let low = min_wet_thickness_m(3e-4, 0.01);
        assert!(low < 1e-4 && low > 0.0);
        assert_eq!(min_wet_thickness_m(3e-4, 0.0), 0.0);
    }

    #[test]
    fn coefficient_of_variation_of_a_flat_row_is_zero() {
        assert_eq!(coefficient_of_variation(&[2.0; 8]), 0.0);
        assert_eq!(coefficient_of_variation(&[0.0; 8]), 0.0);
        assert!((coefficient_of_variation(&[1.0, 3.0]) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn loading_deviation_escalates_and_clears_with_hysteresis() {
        let mut t = AlarmTracker::new(StageKind::Coating, crate::stage::Line::Anode, 0.0);
        let mut level = LoadingLevel::None;
        level.update(&mut t, 0.025, 1.0, 0.5);
        assert_eq!(level, LoadingLevel::Warning);
        level.update(&mut t, 0.035, 2.0, 1.0);
        assert_eq!(level, LoadingLevel::Alarm);
        level.update(&mut t, 0.0295, 3.0, 1.5); // inside the 2 % band of 3 %
        assert_eq!(level, LoadingLevel::Alarm);
        level.update(&mut t, 0.01, 4.0, 2.0);
        assert_eq!(level, LoadingLevel::None);
        assert!(!t.any_active(Severity::Info));
        assert_eq!(t.events.len(), 4); // raise W, clear W, raise A, clear A
    }
}
