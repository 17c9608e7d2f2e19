//! Cell assembly (winding / stacking), the merge point of the two electrode lines
//! (MODELS.md §8). Anode and cathode `ElectrodeReels` in, one `AssembledCell` per cell out.
//!
//! The winder pairs anode lane j with cathode lane j and consumes consecutive reel intervals
//! (`cathode_length_m` of cathode, `anode_extra_length_m` more of anode) until either reel
//! ends. Each interval is mapped back to coating coordinates through the reel's piece map,
//! so the local areal mass, porosity, thickness, burrs and defects of the web become the
//! cell's properties (§0.8). Per cell: areas, active masses, design capacity, N/P (mean and
//! local minimum over 0.5 m sub-segments), jelly-roll diameter and fit, alignment and
//! overhang, pore volume, moisture, latent shorts and insulation, current-collector
//! resistance (§12.3), dry mass; reject reasons of §8.3.
//!
//! Cells are numbered in winding order: the lane pairs advance together (cell k of every
//! lane pair before cell k + 1), and cell i goes to winder `i mod winder_count`, done at
//! `(⌊i/winders⌋ + 1)·cycle`. Randomness is per cell: the process stream
//! `stream(stream_seed, [1, i])` draws, in this order, the alignment offset, then for each
//! cathode lane-segment of the cell a pierce uniform (and, on a pierce, a hard/soft uniform
//! and a lognormal normal for a soft short), then for each undetected agglomerate a uniform
//! (and a normal on a short). The sensor stream `stream(stream_seed, [2, i])` draws the
//! insulation, alignment and roll-diameter readings, in that order. The lot sample draws the
//! winding tension and the dew point from `ctx.sensor_rng`, in that order. Deterministic mode
//! draws nothing and takes the most likely outcome of every random event (§0.3).

use crate::alarm::{Alarm, AlarmScope, AlarmTracker, Severity};
use crate::cell::{AssembledCell, CellElectrode, Genealogy};
use crate::defect::{Defect, DefectKind};
use crate::error::{check_non_negative, check_open_min, check_positive, check_range, ParamError};
use crate::fault::{At, FaultCode, FaultRegion};
use crate::legacy::{put_object, put_value, LegacyRecord};
use crate::material::{water_vapour_pressure_pa, ActiveMaterial, Foil, Separator};
use crate::random::{normal, stream, uniform, Purpose, StreamRng};
use crate::reading::{Reading, Sensor};
use crate::stage::{
    sample_times, ResultRecord, SampleRecord, Stage, StageCtx, StageKind, StageParams, StageRun, StageSink,
};
use crate::stages::rewinding::{ElectrodeReels, Reel};
use crate::stages::slitting::Lane;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Separator of every cell: the PE + ceramic preset (§0.7).
pub const SEPARATOR: Separator = Separator::PE_CERAMIC;

/// Length of the aligned sub-segments of the local N/P check [m] (§8.2).
pub const NP_SUB_SEGMENT_M: f64 = 0.5;

/// Share of the local cathode excess that plates on the first charge (§12.2).
pub const LOCAL_PLATING_FRAC: f64 = 0.9;

/// Dew point at which the moisture alarm's reference equilibrium is taken [°C] (§8.3).
pub const MOISTURE_REFERENCE_DEW_POINT_DEGC: f64 = -40.0;

/// Insulation resistance of a good cell [Ω] (§8.2). [C]
pub const INSULATION_GOOD_OHM: f64 = 1e10;

/// Insulation (and short) resistance of a hard short [Ω] (§8.2). [C]
pub const HARD_SHORT_OHM: f64 = 10.0;

/// Floor of a soft-short resistance (a zero median would otherwise divide by zero) [Ω]. [E]
pub const MIN_SHORT_OHM: f64 = 1e-3;

/// Log-normal spread of the hi-pot insulation reading (§8.2). [C]
pub const INSULATION_SIGMA_LN: f64 = 0.3;

/// Winding-tension load cell: σ_r 1 %. [E] (like the other load cells of the line)
pub const TENSION_SENSOR: Sensor = Sensor::relative(0.01);

/// Dry-room dew-point sensor: σ_a 0.5 °C. [E]
pub const DEW_POINT_SENSOR: Sensor = Sensor::absolute(0.5);

/// Alignment camera / X-ray: σ_a 10 µm. [E] (the edge cameras of §5)
pub const ALIGNMENT_SENSOR: Sensor = Sensor::absolute(1e-5);

/// Jelly-roll diameter gauge: σ_a 20 µm. [E]
pub const DIAMETER_SENSOR: Sensor = Sensor::absolute(2e-5);

// ---------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------

/// Where the tabs sit on an electrode; sets the current-collector factor k of §12.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TabLayout {
    /// One tab at one end: the current runs the whole length (k = 3).
    End,
    /// One tab in the middle of the electrode (k = 12).
    Center,
    /// Tabs at both ends (k = 12).
    BothEnds,
}

impl TabLayout {
    /// Current-collector factor k of `R = ρ·L/(k·W·t)` (§12.3) [L].
    pub fn collector_factor(self) -> f64 {
        match self {
            TabLayout::End => 3.0,
            TabLayout::Center | TabLayout::BothEnds => 12.0,
        }
    }
}

/// Settings of the stacked-pouch option (§8.1). Sheets are punched from the lanes: a cell
/// takes n cathode sheets and n + 1 anode sheets (the two outer anodes coated on their inner
/// side only); the lanes must be at least as wide as the sheets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StackedPouchParams {
    /// Cathode sheet length along the reel; [0.01, 2]. [E]
    pub sheet_length_m: f64,
    /// Cathode sheet width across the lane; [0.005, 2]. [E]
    pub sheet_width_m: f64,
    /// Cathode sheets per cell n (anodes n + 1); [1, 500]. [E]
    pub cathode_sheet_count: u32,
    /// Anode sheet margin beyond the cathode on every edge; [0, 0.01]. [C]
    pub anode_sheet_margin_m: f64,
    /// Stacking time per sheet (separator z-fold included); (0, 60]. [L] (0.125 s with parallel stackers, SVOLT)
    pub stacking_time_per_sheet_s: f64,
    /// Pouch foil, tabs and tape; [0, 1]. [C]
    pub pouch_hardware_mass_kg: f64,
}

impl Default for StackedPouchParams {
    fn default() -> Self {
        Self {
            sheet_length_m: 0.10,
            sheet_width_m: 0.058,
            cathode_sheet_count: 20,
            anode_sheet_margin_m: 0.001,
            stacking_time_per_sheet_s: 0.45,
            pouch_hardware_mass_kg: 0.005,
        }
    }
}

impl StackedPouchParams {
    fn validate(&self) -> Result<(), ParamError> {
        check_range("sheet_length_m", self.sheet_length_m, 0.01, 2.0, "m")?;
        check_range("sheet_width_m", self.sheet_width_m, 0.005, 2.0, "m")?;
        check_range("cathode_sheet_count", self.cathode_sheet_count as f64, 1.0, 500.0, "")?;
        check_range("anode_sheet_margin_m", self.anode_sheet_margin_m, 0.0, 0.01, "m")?;
        check_open_min("stacking_time_per_sheet_s", self.stacking_time_per_sheet_s, 0.0, 60.0, "s")?;
        check_range("pouch_hardware_mass_kg", self.pouch_hardware_mass_kg, 0.0, 1.0, "kg")
    }
}

/// Cell format (§8.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CellFormat {
    /// Wound jelly roll in a cylindrical can (21700 by default).
    Cylindrical,
    /// Z-folded stack of sheets in a pouch.
    StackedPouch(StackedPouchParams),
}

/// Winder settings and cell design (MODELS.md §8.1; cylindrical 21700 defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssemblyParams {
    /// Cylindrical (21700) or stacked pouch. [E]
    pub cell_format: CellFormat,
    /// Can inner diameter; > 0, below the outer diameter. [L] (21700)
    pub can_inner_diameter_m: f64,
    /// Can outer diameter; > 0. [L] (21700)
    pub can_outer_diameter_m: f64,
    /// Can height; > 0. [L] (21700)
    pub can_height_m: f64,
    /// Winding mandrel (core hole) diameter; (0, 0.02]. [C]
    pub mandrel_diameter_m: f64,
    /// Required clearance between jelly roll and can; [0, 2e-3]. [C]
    pub min_clearance_m: f64,
    /// Can, cap, tabs and insulators; [0, 1]. [C]
    pub hardware_mass_kg: f64,
    /// Cathode length per cell in reel (calendered) metres; [0.05, 10]. [C] (sized for a 20.0 mm roll)
    pub cathode_length_m: f64,
    /// Anode length beyond the cathode (wraps beyond both ends); [0, 0.5]. [C]
    pub anode_extra_length_m: f64,
    /// Separator strip length beyond the anode; ≥ 0. [C]
    pub separator_extra_length_m: f64,
    /// Separator strip width beyond the anode; ≥ 0. [C]
    pub separator_extra_width_m: f64,
    /// Separator wraps around the finished roll; ≥ 0. [C]
    pub separator_outer_wraps: u32,
    /// Winders working in parallel; [1, 1000]. [C]
    pub winder_count: u32,
    /// Winding cycle per cell and winder; (0, 600]. [C] (4 winders × 4 s = 1 cell/s)
    pub winding_cycle_s: f64,
    /// Electrode tension while winding (recorded); (0, 200]. [C]
    pub winding_tension_n: f64,
    /// Cathode-to-anode lateral offset σ (edge position control); ≥ 0. [C]
    pub alignment_sigma_m: f64,
    /// Required anode margin beyond the cathode edge; ≥ 0. [L] (alignment < 0.5 mm, sztaipu)
    pub min_overhang_m: f64,
    /// Cathode tab layout (§12.3). [C]
    pub cathode_tab: TabLayout,
    /// Anode tab layout (§12.3). [C]
    pub anode_tab: TabLayout,
    /// Welds and tabs; ≥ 0. [C]
    pub tab_resistance_ohm: f64,
    /// Hi-pot acceptance: measured insulation resistance at least this; > 0. [C]
    pub hipot_min_resistance_ohm: f64,
    /// Dry-room dew point during assembly (plant environment); [−80, 20]. [L] (−40 °C, greenengguide)
    pub dew_point_degc: f64,
    /// Cathode moisture isotherm k_iso (water mass fraction per Pa); ≥ 0. [C]
    pub cathode_moisture_coeff_per_pa: f64,
    /// Anode moisture isotherm k_iso (water mass fraction per Pa); ≥ 0. [C]
    pub anode_moisture_coeff_per_pa: f64,
    /// Moisture uptake time constant τ_m; ≥ 0. [C]
    pub moisture_time_constant_s: f64,
    /// Logistic width s_b of the burr pierce probability; ≥ 0. [C]
    pub burr_pierce_scale_m: f64,
    /// Share of pierces that are hard shorts; ≥ 0. [C]
    pub hard_short_frac: f64,
    /// Median resistance of a latent soft short; ≥ 0. [C]
    pub soft_short_median_ohm: f64,
    /// Log-normal σ of the soft-short resistance; ≥ 0. [C]
    pub soft_short_sigma_ln: f64,
    /// Short probability of an undetected agglomerate per 100 µm of size; ≥ 0. [C]
    pub agglomerate_short_prob_per_100um: f64,
    /// Cap on cells per batch (0 = all the reels allow); ≥ 0. [E] (fast runs)
    pub max_cells: u32,
    /// Lot sample interval; > 0. [E]
    pub sample_interval_s: f64,
}

impl Default for AssemblyParams {
    fn default() -> Self {
        Self {
            cell_format: CellFormat::Cylindrical,
            can_inner_diameter_m: 0.0204,
            can_outer_diameter_m: 0.021,
            can_height_m: 0.070,
            mandrel_diameter_m: 0.0035,
            min_clearance_m: 2e-4,
            hardware_mass_kg: 0.0125,
            cathode_length_m: 0.81,
            anode_extra_length_m: 0.05,
            separator_extra_length_m: 0.10,
            separator_extra_width_m: 0.004,
            separator_outer_wraps: 2,
            winder_count: 4,
            winding_cycle_s: 4.0,
            winding_tension_n: 8.0,
            alignment_sigma_m: 1e-4,
            min_overhang_m: 3e-4,
            cathode_tab: TabLayout::Center,
            anode_tab: TabLayout::BothEnds,
            tab_resistance_ohm: 2e-3,
            hipot_min_resistance_ohm: 1e7,
            dew_point_degc: -40.0,
            cathode_moisture_coeff_per_pa: 8e-6,
            anode_moisture_coeff_per_pa: 6e-6,
            moisture_time_constant_s: 7200.0,
            burr_pierce_scale_m: 5e-7,
            hard_short_frac: 0.5,
            soft_short_median_ohm: 3e4,
            soft_short_sigma_ln: 1.0,
            agglomerate_short_prob_per_100um: 0.05,
            max_cells: 0,
            sample_interval_s: 10.0,
        }
    }
}

impl StageParams for AssemblyParams {
    fn validate(&self) -> Result<(), ParamError> {
        if let CellFormat::StackedPouch(p) = &self.cell_format {
            p.validate().map_err(|e| e.at("cell_format.stacked_pouch."))?;
        }
        check_positive("can_inner_diameter_m", self.can_inner_diameter_m, "m")?;
        check_positive("can_outer_diameter_m", self.can_outer_diameter_m, "m")?;
        if self.can_inner_diameter_m >= self.can_outer_diameter_m {
            return Err(ParamError {
                max: Some(self.can_outer_diameter_m),
                ..ParamError::rule(
                    "can_inner_diameter_m",
                    self.can_inner_diameter_m,
                    "m",
                    format!("must be below can_outer_diameter_m ({} m)", self.can_outer_diameter_m),
                )
            });
        }
        check_positive("can_height_m", self.can_height_m, "m")?;
        check_open_min("mandrel_diameter_m", self.mandrel_diameter_m, 0.0, 0.02, "m")?;
        check_range("min_clearance_m", self.min_clearance_m, 0.0, 2e-3, "m")?;
        check_range("hardware_mass_kg", self.hardware_mass_kg, 0.0, 1.0, "kg")?;
        check_range("cathode_length_m", self.cathode_length_m, 0.05, 10.0, "m")?;
        check_range("anode_extra_length_m", self.anode_extra_length_m, 0.0, 0.5, "m")?;
        check_non_negative("separator_extra_length_m", self.separator_extra_length_m, "m")?;
        check_non_negative("separator_extra_width_m", self.separator_extra_width_m, "m")?;
        check_range("winder_count", self.winder_count as f64, 1.0, 1000.0, "")?;
        check_open_min("winding_cycle_s", self.winding_cycle_s, 0.0, 600.0, "s")?;
        check_open_min("winding_tension_n", self.winding_tension_n, 0.0, 200.0, "N")?;
        check_non_negative("alignment_sigma_m", self.alignment_sigma_m, "m")?;
        check_non_negative("min_overhang_m", self.min_overhang_m, "m")?;
        check_non_negative("tab_resistance_ohm", self.tab_resistance_ohm, "Ω")?;
        check_positive("hipot_min_resistance_ohm", self.hipot_min_resistance_ohm, "Ω")?;
        check_range("dew_point_degc", self.dew_point_degc, -80.0, 20.0, "°C")?;
        check_non_negative("cathode_moisture_coeff_per_pa", self.cathode_moisture_coeff_per_pa, "1/Pa")?;
        check_non_negative("anode_moisture_coeff_per_pa", self.anode_moisture_coeff_per_pa, "1/Pa")?;
        check_non_negative("moisture_time_constant_s", self.moisture_time_constant_s, "s")?;
        check_non_negative("burr_pierce_scale_m", self.burr_pierce_scale_m, "m")?;
        check_non_negative("hard_short_frac", self.hard_short_frac, "")?;
        check_non_negative("soft_short_median_ohm", self.soft_short_median_ohm, "Ω")?;
        check_non_negative("soft_short_sigma_ln", self.soft_short_sigma_ln, "")?;
        check_non_negative("agglomerate_short_prob_per_100um", self.agglomerate_short_prob_per_100um, "")?;
        check_positive("sample_interval_s", self.sample_interval_s, "s")
    }
}

// ---------------------------------------------------------------------------------------
// Physics (pure functions)
// ---------------------------------------------------------------------------------------

/// Areal design capacity per side `c = m_A·w_AM·q_design` [Ah/m²] (§12.1).
#[inline]
pub fn areal_capacity_ah_m2(areal_mass_kg_m2: f64, am_mass_frac: f64, design_capacity_ah_kg: f64) -> f64 {
    areal_mass_kg_m2 * am_mass_frac * design_capacity_ah_kg
}

/// N/P ratio per unit facing area `c_a/c_c` (§8.2, §12.1); 0 when the cathode holds nothing.
#[inline]
pub fn np_ratio(anode_areal_capacity_ah_m2: f64, cathode_areal_capacity_ah_m2: f64) -> f64 {
    if cathode_areal_capacity_ah_m2 > 0.0 {
        anode_areal_capacity_ah_m2 / cathode_areal_capacity_ah_m2
    } else {
        0.0
    }
}

/// Stack thickness of one winding layer `t_stack = t_e,c + t_e,a + 2·t_sep` (§8.2).
#[inline]
pub fn stack_thickness_m(cathode_thickness_m: f64, anode_thickness_m: f64, separator_thickness_m: f64) -> f64 {
    cathode_thickness_m + anode_thickness_m + 2.0 * separator_thickness_m
}

/// Thickness of a pouch stack of n cathodes and n + 1 anodes:
/// `n·t_e,c + (n + 1)·t_e,a + (2n + 2)·t_sep` (§8.2).
#[inline]
pub fn pouch_stack_thickness_m(n: u32, cathode_thickness_m: f64, anode_thickness_m: f64, sep_m: f64) -> f64 {
    let n = n as f64;
    n * cathode_thickness_m + (n + 1.0) * anode_thickness_m + (2.0 * n + 2.0) * sep_m
}

/// Jelly-roll diameter by the winding build-up law `D² = D_m² + (4/π)·L_a·t_stack`, plus the
/// outer separator wraps `2·n_wraps·t_sep` (§8.2, same law as §7) [L].
#[inline]
pub fn jelly_roll_diameter_m(
    mandrel_diameter_m: f64,
    anode_length_m: f64,
    stack_thickness_m: f64,
    separator_thickness_m: f64,
    outer_wraps: u32,
) -> f64 {
    (mandrel_diameter_m.powi(2) + 4.0 / std::f64::consts::PI * anode_length_m * stack_thickness_m).sqrt()
        + 2.0 * outer_wraps as f64 * separator_thickness_m
}

/// Anode overhang beyond the cathode edge after alignment `m_oh = (W_a − W_c)/2 − |δ|` (§8.2).
#[inline]
pub fn overhang_margin_m(anode_width_m: f64, cathode_width_m: f64, offset_m: f64) -> f64 {
    (anode_width_m - cathode_width_m) / 2.0 - offset_m.abs()
}

/// Current-collector resistance of one foil `ρ·L/(k·W·t)` (§12.3) [L]; 0 for a zero section.
#[inline]
pub fn foil_resistance_ohm(foil: &Foil, length_m: f64, width_m: f64, tab: TabLayout) -> f64 {
    let section = tab.collector_factor() * width_m * foil.thickness_m;
    if section > 0.0 {
        foil.resistivity_ohm_m * length_m / section
    } else {
        0.0
    }
}

/// Probability that a burr of height `burr_m` pierces a separator of thickness `sep_m`:
/// `p = 1/(1 + exp(−(h_b − t_sep/2)/s_b))` (§8.2) [C]; a step at t_sep/2 when s_b = 0.
#[inline]
pub fn pierce_probability(burr_m: f64, separator_thickness_m: f64, scale_m: f64) -> f64 {
    let excess = burr_m - separator_thickness_m / 2.0;
    if scale_m > 0.0 {
        1.0 / (1.0 + (-excess / scale_m).exp())
    } else if excess > 0.0 {
        1.0
    } else if excess < 0.0 {
        0.0
    } else {
        0.5
    }
}

/// Equilibrium water fraction of a coating at a dew point `w_eq = k_iso·p_w(T_d)` (§7.2, §8.2).
#[inline]
pub fn equilibrium_moisture_frac(coeff_per_pa: f64, dew_point_degc: f64) -> f64 {
    coeff_per_pa * water_vapour_pressure_pa(dew_point_degc)
}

/// Water fraction after `t_s` in the dry room, from `w0` towards `w_eq` with time constant
/// τ_m: the closed form of `dw/dt = (w_eq − w)/τ_m` (§7.2) [E]; τ_m = 0 means instant.
#[inline]
pub fn moisture_after(w0: f64, w_eq: f64, t_s: f64, time_constant_s: f64) -> f64 {
    if time_constant_s > 0.0 {
        w_eq + (w0 - w_eq) * (-t_s / time_constant_s).exp()
    } else {
        w_eq
    }
}

/// Outer can volume `π·D_out²/4·H` (§12.4).
#[inline]
pub fn can_volume_m3(outer_diameter_m: f64, height_m: f64) -> f64 {
    std::f64::consts::PI * outer_diameter_m.powi(2) / 4.0 * height_m
}

// ---------------------------------------------------------------------------------------
// Web look-ups (coating coordinates, §0.8)
// ---------------------------------------------------------------------------------------

/// Calls `f(c0, c1)` for each coating-coordinate span covered by reel positions
/// `[start, start + len)`, in reel order (more than one span when a splice lies inside).
fn for_each_span(reel: &Reel, start_m: f64, len_m: f64, length_scale: f64, mut f: impl FnMut(f64, f64)) {
    let end = start_m + len_m;
    let first = reel.pieces.partition_point(|p| p.reel_start_m + p.length_m <= start_m);
    for p in &reel.pieces[first..] {
        if p.reel_start_m >= end {
            break;
        }
        let a = start_m.max(p.reel_start_m);
        let b = end.min(p.reel_start_m + p.length_m);
        if b > a {
            let c0 = p.coating_start_m + (a - p.reel_start_m) / length_scale;
            let c1 = p.coating_start_m + (b - p.reel_start_m) / length_scale;
            f(c0, c1);
        }
    }
}

/// Calls `f(segment, overlap)` for every lane segment overlapping coating span `[c0, c1]`
/// (overlap in coating metres). Positions beyond the last segment count to the last one.
fn for_each_segment(n_seg: usize, seg_len_m: f64, c0: f64, c1: f64, mut f: impl FnMut(usize, f64)) {
    if n_seg == 0 || c1 <= c0 {
        return;
    }
    let last = n_seg - 1;
    let mut i = ((c0 / seg_len_m).floor().max(0.0) as usize).min(last);
    loop {
        let lo = if i == 0 { f64::NEG_INFINITY } else { i as f64 * seg_len_m };
        let hi = if i == last { f64::INFINITY } else { (i + 1) as f64 * seg_len_m };
        let overlap = c1.min(hi) - c0.max(lo);
        if overlap > 0.0 {
            f(i, overlap);
        }
        if hi >= c1 || i == last {
            break;
        }
        i += 1;
    }
}

/// Length- and width-weighted means of one lane over a set of spans.
#[derive(Clone, Copy, Debug, Default)]
struct LaneMeans {
    /// Σ overlap (coating metres).
    length: f64,
    /// Σ overlap·width.
    area: f64,
    areal_mass: f64,
    porosity: f64,
    coating_thickness: f64,
    electrode_thickness: f64,
    max_burr: f64,
}

impl LaneMeans {
    fn add(&mut self, lane: &Lane, seg: usize, overlap: f64) {
        let w = lane.width_m[seg];
        let a = overlap * w;
        self.length += overlap;
        self.area += a;
        self.areal_mass += a * lane.areal_mass_kg_m2[seg];
        self.porosity += a * lane.porosity_frac[seg];
        self.coating_thickness += a * lane.coating_thickness_m[seg];
        self.electrode_thickness += a * lane.electrode_thickness_m[seg];
        self.max_burr = self.max_burr.max(lane.burr_height_m[seg]);
    }

    fn width(&self) -> f64 {
        if self.length > 0.0 {
            self.area / self.length
        } else {
            0.0
        }
    }

    fn mean(&self, sum: f64) -> f64 {
        if self.area > 0.0 {
            sum / self.area
        } else {
            0.0
        }
    }
}

/// One electrode line as assembly sees it: reels, lanes, recipe constants and defects.
struct LineSource<'a> {
    reels: &'a ElectrodeReels,
    length_scale: f64,
    segment_length_m: f64,
    sides: f64,
    am_mass_frac: f64,
    solid_density_kg_m3: f64,
    am_density_kg_m3: f64,
    active: ActiveMaterial,
    foil: Foil,
    /// Per lane position: true defects in that lane, sorted by MD position.
    lane_defects: Vec<Vec<&'a Defect>>,
    /// Per lane position: longest defect of the lane [m].
    lane_max_defect_len: Vec<f64>,
    fault_labels: &'a [u32],
    /// Web regions touched by faults upstream (coating coordinates).
    fault_regions: &'a [FaultRegion],
}

impl<'a> LineSource<'a> {
    fn new(reels: &'a ElectrodeReels) -> Self {
        let cal = &reels.inspected.slit.electrode;
        let film = &cal.dry.film;
        let slurry = &film.slurry;
        let active = slurry.recipe.active_material.active().unwrap_or(ActiveMaterial::GRAPHITE);
        let lanes = &reels.inspected.slit.lanes;
        let mut lane_defects = Vec::with_capacity(lanes.len());
        let mut lane_max_defect_len = Vec::with_capacity(lanes.len());
        for lane in lanes {
            let mut list: Vec<&Defect> =
                film.defects.iter().filter(|d| !d.false_call && lane.defect_ids.contains(&d.id)).collect();
            list.sort_by(|a, b| a.md_position_m.total_cmp(&b.md_position_m));
            lane_max_defect_len.push(list.iter().map(|d| d.length_m).fold(0.0, f64::max));
            lane_defects.push(list);
        }
        Self {
            reels,
            length_scale: if cal.length_scale > 0.0 { cal.length_scale } else { 1.0 },
            segment_length_m: cal.areal_mass_kg_m2.segment_length_m,
            sides: film.sides as f64,
            am_mass_frac: slurry.am_mass_frac_dry,
            solid_density_kg_m3: slurry.solid_density_kg_m3,
            am_density_kg_m3: slurry.recipe.active_material.density_kg_m3(),
            active,
            foil: film.foil,
            lane_defects,
            lane_max_defect_len,
            fault_labels: &slurry.fault_labels,
            fault_regions: &film.fault_regions,
        }
    }

    /// The lane a reel was wound from.
    fn lane_of(&self, reel: &Reel) -> Option<(usize, &'a Lane)> {
        let lanes = &self.reels.inspected.slit.lanes;
        let idx = reel.lane as usize;
        match lanes.get(idx) {
            Some(l) if l.index == reel.lane => Some((idx, l)),
            _ => lanes.iter().enumerate().find(|(_, l)| l.index == reel.lane),
        }
    }

    /// Weighted lane means over reel interval `[start, start + len)`.
    fn means(&self, reel: &Reel, lane: &Lane, start_m: f64, len_m: f64) -> LaneMeans {
        let mut m = LaneMeans::default();
        let n_seg = lane.areal_mass_kg_m2.len();
        for_each_span(reel, start_m, len_m, self.length_scale, |c0, c1| {
            for_each_segment(n_seg, self.segment_length_m, c0, c1, |seg, ov| m.add(lane, seg, ov));
        });
        m
    }

    /// The material constants and local means of a cell electrode; length, width, area,
    /// active mass and moisture are filled in by the caller.
    fn cell_electrode(&self, m: &LaneMeans) -> CellElectrode {
        CellElectrode {
            areal_mass_kg_m2: m.mean(m.areal_mass),
            porosity_frac: m.mean(m.porosity),
            coating_thickness_m: m.mean(m.coating_thickness),
            electrode_thickness_m: m.mean(m.electrode_thickness),
            am_mass_frac: self.am_mass_frac,
            solid_density_kg_m3: self.solid_density_kg_m3,
            am_density_kg_m3: self.am_density_kg_m3,
            design_capacity_ah_kg: self.active.design_capacity_ah_kg,
            stoich_capacity_ah_kg: self.active.stoich_capacity_ah_kg,
            d50_m: self.active.d50_m,
            foil_thickness_m: self.foil.thickness_m,
            foil_resistivity_ohm_m: self.foil.resistivity_ohm_m,
            max_burr_height_m: m.max_burr,
            ..CellElectrode::default()
        }
    }

    /// Areal design capacity per side [Ah/m²].
    fn areal_capacity(&self, areal_mass_kg_m2: f64) -> f64 {
        areal_capacity_ah_m2(areal_mass_kg_m2, self.am_mass_frac, self.active.design_capacity_ah_kg)
    }
}

/// Sheet geometry of a pouch stack.
#[derive(Clone, Copy, Debug)]
struct PouchGeometry {
    /// Cathode sheets n.
    n: u32,
    /// Cathode sheet width [m].
    sheet_width_m: f64,
    /// Anode margin on every edge [m].
    margin_m: f64,
}

/// Cell geometry of the chosen format.
#[derive(Clone, Copy, Debug)]
struct Format {
    pouch: Option<PouchGeometry>,
    /// Reel length a cell consumes (cathode, anode) [m].
    cathode_reel_m: f64,
    anode_reel_m: f64,
    /// Length of one electrode piece (wound strip or sheet) [m].
    cathode_piece_m: f64,
    anode_piece_m: f64,
    /// Sub-segment pitch on the cathode and anode, anode offset [m] (local N/P).
    sub_len_m: f64,
    anode_sub_pitch_m: f64,
    anode_sub_offset_m: f64,
    /// Pieces per cell (1 for a jelly roll; n and n + 1 sheets for a pouch).
    cathode_pieces: f64,
    anode_pieces: f64,
    /// Separator strips or sheets per cell (2; 2n + 2 for a pouch).
    separator_layers: f64,
    cycle_s: f64,
    hardware_mass_kg: f64,
}

impl Format {
    fn new(p: &AssemblyParams) -> Self {
        match &p.cell_format {
            CellFormat::Cylindrical => {
                let la = p.cathode_length_m + p.anode_extra_length_m;
                Self {
                    pouch: None,
                    cathode_reel_m: p.cathode_length_m,
                    anode_reel_m: la,
                    cathode_piece_m: p.cathode_length_m,
                    anode_piece_m: la,
                    sub_len_m: NP_SUB_SEGMENT_M,
                    anode_sub_pitch_m: NP_SUB_SEGMENT_M,
                    anode_sub_offset_m: p.anode_extra_length_m / 2.0,
                    cathode_pieces: 1.0,
                    anode_pieces: 1.0,
                    separator_layers: 2.0,
                    cycle_s: p.winding_cycle_s,
                    hardware_mass_kg: p.hardware_mass_kg,
                }
            }
            CellFormat::StackedPouch(s) => {
                let n = s.cathode_sheet_count as f64;
                let la = s.sheet_length_m + 2.0 * s.anode_sheet_margin_m;
                Self {
                    pouch: Some(PouchGeometry {
                        n: s.cathode_sheet_count,
                        sheet_width_m: s.sheet_width_m,
                        margin_m: s.anode_sheet_margin_m,
                    }),
                    cathode_reel_m: n * s.sheet_length_m,
                    anode_reel_m: (n + 1.0) * la,
                    cathode_piece_m: s.sheet_length_m,
                    anode_piece_m: la,
                    sub_len_m: s.sheet_length_m,
                    anode_sub_pitch_m: la,
                    anode_sub_offset_m: s.anode_sheet_margin_m,
                    cathode_pieces: n,
                    anode_pieces: n + 1.0,
                    separator_layers: 2.0 * n + 2.0,
                    cycle_s: (2.0 * n + 1.0) * s.stacking_time_per_sheet_s,
                    hardware_mass_kg: s.pouch_hardware_mass_kg,
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Samples and result
// ---------------------------------------------------------------------------------------

/// Geometry of the last wound cell that the HEAD-style legacy keys report (§8.4).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LastCellGeometry {
    /// Stack thickness t_stack [m] (`final_thickness`).
    pub stack_thickness_m: f64,
    /// Mean of cathode and anode porosity (`porosity`).
    pub porosity_frac: f64,
    /// Cathode width W_c [m] (`final_width`).
    pub cathode_width_m: f64,
    /// Anode length L_a [m] (`wound_length`).
    pub anode_length_m: f64,
}

/// One lot sample of the winders (§8.3), every `sample_interval_s`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AssemblySample {
    /// Plant time [s].
    pub t_s: f64,
    /// Stage time [s].
    pub stage_time_s: f64,
    /// Cells wound so far.
    pub cells_completed: u32,
    /// Cells rejected so far.
    pub cells_rejected: u32,
    /// Id of the last wound cell.
    pub last_cell_id: Option<String>,
    /// Winding tension [N].
    pub winding_tension_n: Reading,
    /// Alignment offset of the last cell [m].
    pub alignment_offset_m: Option<Reading>,
    /// Jelly-roll diameter of the last cell [m] (stack thickness for a pouch).
    pub jelly_roll_diameter_m: Option<Reading>,
    /// Hi-pot insulation resistance of the last cell [Ω].
    pub insulation_resistance_ohm: Option<Reading>,
    /// N/P ratio of the last cell.
    pub np_ratio: Option<f64>,
    /// Dry-room dew point [°C].
    pub dew_point_degc: Reading,
    /// Geometry of the last cell, for the HEAD-style legacy keys.
    pub last_cell: Option<LastCellGeometry>,
    /// The last cell raised a Warning-or-worse alarm.
    pub defect_risk: bool,
    /// Fault labels active on the sample.
    pub fault_labels: Vec<u32>,
}

impl SampleRecord for AssemblySample {
    fn stage_time_s(&self) -> f64 {
        self.stage_time_s
    }

    /// No seed directory existed: `cells_completed`, `cells_rejected`, `last_cell_id`, then
    /// HEAD's merged "rewinding_cell" keys of §8.4 for the last cell, in metres, measured
    /// values; `null` before the first cell.
    fn legacy(&self, out: &mut LegacyRecord) {
        let opt = |v: Option<f64>| v.and_then(serde_json::Number::from_f64).map_or(serde_json::Value::Null, Into::into);
        let geometry = self.last_cell.as_ref();
        put_value(out, "cells_completed", self.cells_completed);
        put_value(out, "cells_rejected", self.cells_rejected);
        put_value(out, "last_cell_id", self.last_cell_id.as_deref().map_or(serde_json::Value::Null, Into::into));
        put_value(out, "final_thickness", opt(geometry.map(|g| g.stack_thickness_m)));
        put_value(out, "porosity", opt(geometry.map(|g| g.porosity_frac)));
        put_value(out, "final_width", opt(geometry.map(|g| g.cathode_width_m)));
        put_value(out, "epsilon_width", opt(self.alignment_offset_m.map(|r| r.value())));
        put_value(out, "wound_length", opt(geometry.map(|g| g.anode_length_m)));
        put_value(out, "roll_diameter", opt(self.jelly_roll_diameter_m.map(|r| r.value())));
    }
}

/// Reel use of one lane pair.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LaneUsage {
    /// Lane pair j.
    pub lane: u32,
    /// Cathode reel id.
    pub cathode_reel_id: String,
    /// Anode reel id.
    pub anode_reel_id: String,
    /// Cells wound from the pair.
    pub cells: u32,
    /// Cathode reel length left over [m].
    pub cathode_unused_m: f64,
    /// Anode reel length left over [m].
    pub anode_unused_m: f64,
}

/// Final result of assembly for one batch (§8.3). The cells themselves are the stage output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AssemblyResult {
    /// Cells wound.
    pub cells_total: u32,
    /// Cells without a reject reason.
    pub cells_good: u32,
    /// Cells rejected.
    pub cells_rejected: u32,
    /// Rejected cells per reject reason (alarm code).
    pub reject_counts: BTreeMap<String, u32>,
    /// Cells with the plating-risk flag.
    pub plating_risk_count: u32,
    /// Reel use per lane pair (unused length per lane).
    pub lanes: Vec<LaneUsage>,
    /// Cycle per cell and winder [s].
    pub cycle_s: f64,
    /// Lot duration ⌈N/winders⌉·cycle [s].
    pub duration_s: f64,
    /// Mean design capacity of the good cells [Ah].
    pub mean_design_capacity_ah: f64,
    /// Mean N/P of the good cells.
    pub mean_np_ratio: f64,
    /// Lowest local N/P of any cell.
    pub min_np_ratio_local: f64,
    /// Mean jelly-roll diameter of the good cells [m].
    pub mean_jelly_roll_diameter_m: f64,
    /// Mean pore volume of the good cells [m³].
    pub mean_pore_volume_m3: f64,
    /// Mean cell water of the good cells [kg].
    pub mean_water_mass_kg: f64,
    /// Mean dry mass of the good cells [kg].
    pub mean_mass_kg: f64,
    /// Mean current-collector resistance of the good cells [Ω].
    pub mean_current_collector_resistance_ohm: f64,
    /// The last lot sample (its values are the `"Final Properties"`).
    pub final_sample: AssemblySample,
    /// Every alarm event of the run.
    pub alarms: Vec<Alarm>,
    /// At least one good cell and no Critical alarm (per-cell rejects reject the cell, not
    /// the lot).
    pub accepted: bool,
}

impl ResultRecord for AssemblyResult {
    fn legacy(&self, out: &mut LegacyRecord) {
        put_object(out, "Final Properties", |o| self.final_sample.legacy(o));
    }

    fn accepted(&self) -> bool {
        self.accepted
    }

    fn summary(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("cells", self.cells_total as f64),
            ("rejected", self.cells_rejected as f64),
            ("Q_design Ah", self.mean_design_capacity_ah),
            ("N/P", self.mean_np_ratio),
            ("D_jr mm", self.mean_jelly_roll_diameter_m * 1e3),
            ("V_pore mL", self.mean_pore_volume_m3 * 1e6),
            ("dry mass g", self.mean_mass_kg * 1e3),
        ]
    }
}

// ---------------------------------------------------------------------------------------
// The stage
// ---------------------------------------------------------------------------------------

/// The anode and cathode reels of one batch.
#[derive(Clone, Debug)]
pub struct AssemblyInput {
    /// Anode reels (graphite on Cu).
    pub anode: ElectrodeReels,
    /// Cathode reels (NMC on Al).
    pub cathode: ElectrodeReels,
}

/// Cell assembly (MODELS.md §8).
pub struct Assembly;

/// What the lot samples need of each cell.
#[derive(Clone, Copy, Debug)]
struct CellReadings {
    alignment: Reading,
    diameter: Reading,
    insulation: Reading,
    risk: bool,
    rejected: bool,
}

/// Short outcome of one cell.
#[derive(Clone, Copy, Debug)]
struct Shorts {
    hard: bool,
    /// Σ 1/R over all shorts [1/Ω].
    conductance: f64,
}

impl Shorts {
    fn resistance_ohm(&self) -> f64 {
        if self.conductance > 0.0 {
            1.0 / self.conductance
        } else {
            f64::INFINITY
        }
    }
}

/// The latent-short model of §8.2 for one event of probability `p`: `None` (no short),
/// `Some(true)` hard, `Some(false)` soft with resistance added to `shorts`. With variability
/// off the most likely outcome is taken (p > ½; hard if `hard_short_frac` ≥ ½; median R).
fn short_event(
    p: f64,
    hard_frac: Option<f64>,
    params: &AssemblyParams,
    rng: Option<&mut StreamRng>,
    shorts: &mut Shorts,
) {
    let soft_r = |xi: f64| params.soft_short_median_ohm * (params.soft_short_sigma_ln * xi).exp();
    let add_soft = |r: f64, s: &mut Shorts| s.conductance += 1.0 / r.max(MIN_SHORT_OHM);
    match rng {
        Some(rng) => {
            if uniform(rng) >= p {
                return;
            }
            if let Some(h) = hard_frac {
                if uniform(rng) < h {
                    shorts.hard = true;
                    shorts.conductance += 1.0 / HARD_SHORT_OHM;
                    return;
                }
            }
            let r = soft_r(normal(rng));
            add_soft(r, shorts);
        }
        None => {
            if p <= 0.5 {
                return;
            }
            if hard_frac.is_some_and(|h| h >= 0.5) {
                shorts.hard = true;
                shorts.conductance += 1.0 / HARD_SHORT_OHM;
                return;
            }
            add_soft(soft_r(0.0), shorts);
        }
    }
}

/// One electrode's reel interval in a cell, with the lane and line it comes from.
struct Interval<'a> {
    src: &'a LineSource<'a>,
    reel: &'a Reel,
    /// Position of the lane in `SlitLanes::lanes`.
    lane_pos: usize,
    lane: &'a Lane,
    start_m: f64,
    len_m: f64,
}

impl Interval<'_> {
    /// Weighted lane means over `[start, start + len)` of this reel.
    fn means_over(&self, start_m: f64, len_m: f64) -> LaneMeans {
        self.src.means(self.reel, self.lane, start_m, len_m)
    }

    /// Coating coordinate of the interval start ([`Reel::coating_position_m`]).
    fn coating_start_m(&self) -> f64 {
        self.reel.coating_position_m(self.start_m, self.src.length_scale).unwrap_or_else(|| self.coating_end_m())
    }

    /// Coating coordinate of the interval end (end of its last mapped span).
    fn coating_end_m(&self) -> f64 {
        let mut end = f64::NAN;
        for_each_span(self.reel, self.start_m, self.len_m, self.src.length_scale, |_, c1| end = c1);
        end
    }

    /// A splice lies inside `[start, start + len)`.
    fn has_splice(&self) -> bool {
        self.reel.splices_m.iter().any(|&s| s >= self.start_m && s < self.start_m + self.len_m)
    }

    /// Appends the lane's true defects whose MD extent overlaps the interval (§0.8).
    fn collect_defects(&self, out: &mut Vec<Defect>) {
        let list = &self.src.lane_defects[self.lane_pos];
        if list.is_empty() {
            return;
        }
        let max_len = self.src.lane_max_defect_len[self.lane_pos];
        for_each_span(self.reel, self.start_m, self.len_m, self.src.length_scale, |c0, c1| {
            let lo = list.partition_point(|d| d.md_position_m < c0 - max_len);
            for d in list[lo..].iter().take_while(|d| d.md_position_m <= c1) {
                if d.md_position_m + d.length_m >= c0 && !out.iter().any(|x| x.id == d.id) {
                    out.push((*d).clone());
                }
            }
        });
    }
}

/// Lowest N/P over aligned sub-segments of the cell and the lithium that plates where the
/// cathode locally outweighs the anode `Σ A_sub·max(0, c_c − c_a)·0.9` [Ah] (§8.2, §12.2).
/// Cylindrical: 0.5 m sub-segments, the anode offset by half its extra length; pouch: each
/// cathode sheet against its anode sheet.
fn local_np(cathode: &Interval<'_>, anode: &Interval<'_>, f: &Format) -> (f64, f64) {
    let n_sub = ((f.cathode_reel_m / f.sub_len_m) - 1e-9).ceil().max(1.0) as usize;
    let (mut np_min, mut plating_ah) = (f64::INFINITY, 0.0);
    for i in 0..n_sub {
        let offset = i as f64 * f.sub_len_m;
        let len = f.sub_len_m.min(f.cathode_reel_m - offset);
        if len <= 0.0 {
            break;
        }
        let anode_pos = anode.start_m + i as f64 * f.anode_sub_pitch_m + f.anode_sub_offset_m;
        let sc = cathode.means_over(cathode.start_m + offset, len);
        let sa = anode.means_over(anode_pos, len);
        let cc = cathode.src.areal_capacity(sc.mean(sc.areal_mass));
        let ca = anode.src.areal_capacity(sa.mean(sa.areal_mass));
        np_min = np_min.min(np_ratio(ca, cc));
        let width = f.pouch.map_or(sc.width(), |g| g.sheet_width_m);
        plating_ah += cathode.src.sides * width * len * (cc - ca).max(0.0) * LOCAL_PLATING_FRAC;
    }
    (np_min, plating_ah)
}

/// Latent shorts of one cell (§8.2): a pierce trial per cathode lane-segment in the cell
/// (probability weighted by the share of the segment inside the cell), then one trial per
/// undetected agglomerate. `rng` is the cell's process stream, `None` in deterministic mode.
fn latent_shorts(
    cathode: &Interval<'_>,
    defects: &[Defect],
    p: &AssemblyParams,
    mut rng: Option<&mut StreamRng>,
) -> Shorts {
    let mut shorts = Shorts { hard: false, conductance: 0.0 };
    let seg_len = cathode.src.segment_length_m;
    let burrs = &cathode.lane.burr_height_m;
    for_each_span(cathode.reel, cathode.start_m, cathode.len_m, cathode.src.length_scale, |c0, c1| {
        for_each_segment(burrs.len(), seg_len, c0, c1, |seg, overlap| {
            let share = (overlap / seg_len).min(1.0);
            let prob = pierce_probability(burrs[seg], SEPARATOR.thickness_m, p.burr_pierce_scale_m) * share;
            short_event(prob, Some(p.hard_short_frac), p, rng.as_deref_mut(), &mut shorts);
        });
    });
    for d in defects.iter().filter(|d| d.kind == DefectKind::Agglomerate && !d.detected) {
        let prob = (p.agglomerate_short_prob_per_100um * d.size_m / 100e-6).min(1.0);
        short_event(prob, None, p, rng.as_deref_mut(), &mut shorts);
    }
    shorts
}

/// What a §8.3 check does to the cell when it fires.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Effect {
    Reject,
    PlatingRisk,
    Record,
}

/// Runs the §8.3 checks on a built cell in table order: records each alarm at `t_s`, sets
/// the first reject as the reason and the plating-risk flag. Returns whether any Warning+
/// alarm fired.
fn check_cell(
    cell: &mut AssembledCell,
    insulation: &Reading,
    oversize_limit_m: Option<f64>,
    water_limit_kg: f64,
    p: &AssemblyParams,
    t_s: f64,
    tracker: &mut AlarmTracker,
) -> bool {
    use Severity::{Alarm as Reject, Warning};
    let oh = cell.overhang_margin_m;
    let limit = oversize_limit_m.unwrap_or(f64::INFINITY);
    let splice = cell.genealogy.splice as u8 as f64;
    #[rustfmt::skip]
    let checks = [
        (cell.jelly_roll_diameter_m > limit, "ASM_JR_OVERSIZE", Reject, Effect::Reject,
            "jelly_roll_diameter_m", cell.jelly_roll_diameter_m, limit, "jelly roll does not fit the can"),
        (oh < 0.0, "ASM_OVERHANG_VIOLATION", Reject, Effect::Reject,
            "overhang_margin_m", oh, 0.0, "cathode beyond the anode edge"),
        ((0.0..p.min_overhang_m).contains(&oh), "ASM_OVERHANG_LOW", Warning, Effect::PlatingRisk,
            "overhang_margin_m", oh, p.min_overhang_m, "anode overhang below the minimum"),
        (insulation.value() < p.hipot_min_resistance_ohm, "ASM_HIPOT_FAIL", Reject, Effect::Reject,
            "insulation_resistance_ohm", insulation.value(), p.hipot_min_resistance_ohm, "hi-pot failed"),
        (cell.genealogy.splice, "ASM_SPLICE_IN_CELL", Reject, Effect::Reject,
            "splice", splice, 0.0, "splice inside the cell"),
        (cell.np_ratio_local_min < 1.0, "ASM_LOW_NP", Warning, Effect::PlatingRisk,
            "np_ratio_local_min", cell.np_ratio_local_min, 1.0, "local N/P below 1"),
        (cell.water_mass_kg > water_limit_kg, "ASM_HIGH_MOISTURE", Warning, Effect::Record,
            "water_mass_kg", cell.water_mass_kg, water_limit_kg, "cell water above twice the −40 °C equilibrium"),
    ];
    let mut risk = false;
    for (fires, code, severity, effect, signal, value, threshold, what) in checks {
        if !fires {
            continue;
        }
        let scope = AlarmScope {
            position_m: Some(cell.genealogy.cathode_coating_start_m),
            lane: Some(cell.genealogy.lane),
            cell_id: Some(cell.genealogy.cell_id.clone()),
        };
        let message = format!("{}: {what} ({signal} {value:.4e}, limit {threshold:.4e})", cell.genealogy.cell_id);
        tracker.once(t_s, code, severity, signal, value, threshold, scope, message);
        risk |= severity >= Warning;
        match effect {
            Effect::Reject if cell.reject_reason.is_none() => cell.reject_reason = Some(code.to_string()),
            Effect::PlatingRisk => cell.plating_risk = true,
            _ => {}
        }
    }
    risk
}

/// Everything one cell needs from the run.
struct CellJob<'a> {
    params: &'a AssemblyParams,
    format: &'a Format,
    cathode: &'a LineSource<'a>,
    anode: &'a LineSource<'a>,
    cathode_reel: &'a Reel,
    anode_reel: &'a Reel,
    cathode_lane: (usize, &'a Lane),
    anode_lane: (usize, &'a Lane),
    batch_id: u32,
    pair: u32,
    k: u32,
    done_s: f64,
    /// Equilibrium water fractions at −40 °C (cathode, anode), the moisture alarm reference.
    moisture_reference: (f64, f64),
}

/// Builds one cell (§8.2) and records its alarms (§8.3) at its completion time.
fn build_cell(
    job: &CellJob<'_>,
    cell_index: u64,
    ctx: &StageCtx<'_>,
    tracker: &mut AlarmTracker,
) -> (AssembledCell, CellReadings) {
    let (p, f, sep) = (job.params, job.format, SEPARATOR);
    let (c, a) = (job.cathode, job.anode);
    let cathode = Interval {
        src: c,
        reel: job.cathode_reel,
        lane_pos: job.cathode_lane.0,
        lane: job.cathode_lane.1,
        start_m: job.k as f64 * f.cathode_reel_m,
        len_m: f.cathode_reel_m,
    };
    let anode = Interval {
        src: a,
        reel: job.anode_reel,
        lane_pos: job.anode_lane.0,
        lane: job.anode_lane.1,
        start_m: job.k as f64 * f.anode_reel_m,
        len_m: f.anode_reel_m,
    };

    // Local properties: length/width-weighted means over the mapped grid cells (§0.8).
    let cm = cathode.means_over(cathode.start_m, cathode.len_m);
    let am = anode.means_over(anode.start_m, anode.len_m);
    let (w_c, w_a) = match f.pouch {
        None => (cm.width(), am.width()),
        Some(g) => (g.sheet_width_m, g.sheet_width_m + 2.0 * g.margin_m),
    };
    let (m_c, m_a) = (cm.mean(cm.areal_mass), am.mean(am.areal_mass));

    // Areas, masses, capacity, N/P (§8.2). A pouch's outer anodes are coated on their inner
    // side only, so the anode has as many coated faces as the cathode.
    let (l_c, l_a) = (f.cathode_piece_m, f.anode_piece_m);
    let area_c = c.sides * f.cathode_pieces * w_c * l_c;
    let area_a = a.sides * f.cathode_pieces * w_a * l_a;
    let (coat_c, coat_a) = (area_c * m_c, area_a * m_a);
    let (cap_c, cap_a) = (c.areal_capacity(m_c), a.areal_capacity(m_a));
    let np = np_ratio(cap_a, cap_c);
    let (np_local, plating_ah) = local_np(&cathode, &anode, f);

    // Stack, roll and fit (§8.2).
    let (te_c, te_a) = (cm.mean(cm.electrode_thickness), am.mean(am.electrode_thickness));
    let (stack_m, diameter_m, oversize_limit) = match f.pouch {
        None => {
            let t = stack_thickness_m(te_c, te_a, sep.thickness_m);
            let d = jelly_roll_diameter_m(p.mandrel_diameter_m, l_a, t, sep.thickness_m, p.separator_outer_wraps);
            (t, d, Some(p.can_inner_diameter_m - p.min_clearance_m))
        }
        Some(g) => {
            let t = pouch_stack_thickness_m(g.n, te_c, te_a, sep.thickness_m);
            (t, t, None)
        }
    };

    // Separators (two wound strips, or 2n + 2 pouch sheets) and pore volume (§8.2).
    let (sep_len, sep_width) = match f.pouch {
        None => (l_a + p.separator_extra_length_m, w_a + p.separator_extra_width_m),
        Some(_) => (l_a + p.separator_extra_width_m, w_a + p.separator_extra_width_m),
    };
    let sep_area = f.separator_layers * sep_len * sep_width;
    let pore_volume_m3 = area_c * cm.mean(cm.coating_thickness) * cm.mean(cm.porosity)
        + area_a * am.mean(am.coating_thickness) * am.mean(am.porosity)
        + sep_area * sep.thickness_m * sep.porosity_frac;

    // Moisture at winding: §7.2 uptake continued in the assembly room (§8.2).
    let w_eq_c = equilibrium_moisture_frac(p.cathode_moisture_coeff_per_pa, p.dew_point_degc);
    let w_eq_a = equilibrium_moisture_frac(p.anode_moisture_coeff_per_pa, p.dew_point_degc);
    let mut w_c_frac =
        moisture_after(job.cathode_reel.moisture_mass_frac, w_eq_c, job.done_s, p.moisture_time_constant_s);
    let mut w_a_frac =
        moisture_after(job.anode_reel.moisture_mass_frac, w_eq_a, job.done_s, p.moisture_time_constant_s);
    let mut labels: Vec<u32> = Vec::new();
    let cell_id = format!("B{}-L{}-{}", job.batch_id, job.pair, job.k);
    // F12 (MODELS.md §13): the dry room's dew point rises; the electrodes waiting in it take
    // up water towards the new equilibrium from the onset on (time constant τ_m).
    for fault in ctx.faults.of(FaultCode::F12DryroomHumidityExcursion) {
        let level = fault.spec.level(job.done_s);
        if level <= 0.0 {
            continue;
        }
        let dew = p.dew_point_degc + level * (fault.spec.magnitude.dew_point_degc.unwrap_or(-10.0) - p.dew_point_degc);
        let exposed_s = job.done_s - fault.spec.onset;
        let w_c_eq = equilibrium_moisture_frac(p.cathode_moisture_coeff_per_pa, dew);
        let w_a_eq = equilibrium_moisture_frac(p.anode_moisture_coeff_per_pa, dew);
        w_c_frac = moisture_after(w_c_frac, w_c_eq, exposed_s, p.moisture_time_constant_s);
        w_a_frac = moisture_after(w_a_frac, w_a_eq, exposed_s, p.moisture_time_constant_s);
        labels.push(fault.label_id);
        ctx.faults.touch(
            fault.label_id,
            At { stage_time_s: job.done_s, lane: Some(job.pair), cell_id: Some(&cell_id), ..At::default() },
        );
    }
    let water_limit_kg = 2.0 * (coat_c * job.moisture_reference.0 + coat_a * job.moisture_reference.1);

    // Defects inside the cell, then the random events on the cell's process stream:
    // alignment offset first, then latent shorts (§8.2).
    let mut defects = Vec::new();
    cathode.collect_defects(&mut defects);
    anode.collect_defects(&mut defects);
    let mut prng = ctx.process_variability.then(|| stream(ctx.stream_seed, &[Purpose::Process as u64, cell_index]));
    let mut offset_m = prng.as_mut().map_or(0.0, |r| p.alignment_sigma_m * normal(r));
    // F09: offset bias plus a wider scatter on the cells of the fault; a mis-calibrated
    // camera (sensor_visible = false) keeps reporting the unfaulted offset.
    let mut shown_offset_m = offset_m;
    for fault in ctx.faults.of(FaultCode::F09AsmMisalignment) {
        if !fault.spec.contains(cell_index as f64) {
            continue;
        }
        let m = &fault.spec.magnitude;
        let faulted = m.offset_bias_m.unwrap_or(8e-4) + m.sigma_factor.unwrap_or(3.0) * offset_m;
        if fault.spec.sensor_visible {
            shown_offset_m = faulted;
        }
        offset_m = faulted;
        labels.push(fault.label_id);
        ctx.faults.touch(
            fault.label_id,
            At { stage_time_s: job.done_s, lane: Some(job.pair), cell_id: Some(&cell_id), ..At::default() },
        );
    }
    let shorts = latent_shorts(&cathode, &defects, p, prng.as_mut());
    let insulation_ohm = if shorts.hard { HARD_SHORT_OHM } else { INSULATION_GOOD_OHM };

    // Measurements on the cell's sensor stream: insulation (log-normal), alignment, diameter.
    let mut srng = ctx.sensor_noise.then(|| stream(ctx.stream_seed, &[Purpose::Sensor as u64, cell_index]));
    let (insulation, alignment, diameter) = match srng.as_mut() {
        Some(r) => {
            let ins = insulation_ohm * (INSULATION_SIGMA_LN * normal(r)).exp();
            (
                Reading { true_value: insulation_ohm, measured: Some(ins) },
                Reading { true_value: offset_m, ..ALIGNMENT_SENSOR.measure(shown_offset_m, true, r) },
                DIAMETER_SENSOR.measure(diameter_m, true, r),
            )
        }
        None => (
            Reading::exact(insulation_ohm),
            Reading { true_value: offset_m, measured: Some(shown_offset_m) },
            Reading::exact(diameter_m),
        ),
    };

    // Resistances (§12.3) and dry mass (§8.2).
    let r_cc = foil_resistance_ohm(&c.foil, l_c, w_c, p.cathode_tab) / f.cathode_pieces
        + foil_resistance_ohm(&a.foil, l_a, w_a, p.anode_tab) / f.anode_pieces;
    let foil_mass = f.cathode_pieces * w_c * l_c * c.foil.areal_mass_kg_m2()
        + f.anode_pieces * w_a * l_a * a.foil.areal_mass_kg_m2();
    let sep_mass = sep_area * sep.thickness_m * (1.0 - sep.porosity_frac) * sep.density_kg_m3;

    // Genealogy (§0.8).
    let mut fault_labels: Vec<u32> = c.fault_labels.iter().chain(a.fault_labels).copied().collect();
    fault_labels.extend(defects.iter().filter_map(|d| d.fault_label));
    fault_labels.extend(labels);
    // web regions the cell was cut from (§0.8)
    for iv in [&cathode, &anode] {
        let (x0, x1) = (iv.coating_start_m(), iv.coating_end_m());
        let (x0, x1) = (x0.min(x1), x0.max(x1));
        let (y0, y1) = (iv.lane.cd_start_m, iv.lane.cd_start_m + iv.lane.nominal_width_m);
        fault_labels.extend(iv.src.fault_regions.iter().filter(|r| r.overlaps(x0, x1, y0, y1)).map(|r| r.label_id));
    }
    fault_labels.sort_unstable();
    fault_labels.dedup();
    let genealogy = Genealogy {
        cell_id,
        batch_id: job.batch_id,
        lane: job.pair,
        index_in_lane: job.k,
        anode_reel_id: job.anode_reel.reel_id.clone(),
        cathode_reel_id: job.cathode_reel.reel_id.clone(),
        anode_reel_start_m: anode.start_m,
        cathode_reel_start_m: cathode.start_m,
        anode_coating_start_m: anode.coating_start_m(),
        anode_coating_end_m: anode.coating_end_m(),
        cathode_coating_start_m: cathode.coating_start_m(),
        cathode_coating_end_m: cathode.coating_end_m(),
        splice: cathode.has_splice() || anode.has_splice(),
        defect_ids: defects.iter().map(|d| d.id).collect(),
        fault_labels,
    };

    let mut cell = AssembledCell {
        genealogy,
        cathode: CellElectrode {
            length_m: cathode.len_m,
            width_m: w_c,
            area_m2: area_c,
            am_mass_kg: coat_c * c.am_mass_frac,
            moisture_mass_frac: w_c_frac,
            ..c.cell_electrode(&cm)
        },
        anode: CellElectrode {
            length_m: anode.len_m,
            width_m: w_a,
            area_m2: area_a,
            am_mass_kg: coat_a * a.am_mass_frac,
            moisture_mass_frac: w_a_frac,
            ..a.cell_electrode(&am)
        },
        design_capacity_ah: area_c * cap_c,
        np_ratio: np,
        np_ratio_local_min: if np_local.is_finite() { np_local } else { np },
        local_plating_charge_ah: plating_ah,
        separator_length_m: sep_len,
        separator_width_m: sep_width,
        stack_thickness_m: stack_m,
        jelly_roll_diameter_m: diameter_m,
        alignment_offset_m: offset_m,
        overhang_margin_m: overhang_margin_m(w_a, w_c, offset_m),
        pore_volume_m3,
        water_mass_kg: coat_c * w_c_frac + coat_a * w_a_frac,
        latent_short_resistance_ohm: shorts.resistance_ohm(),
        insulation_resistance_ohm: insulation_ohm,
        insulation_resistance_measured_ohm: insulation.value(),
        tab_resistance_ohm: p.tab_resistance_ohm,
        current_collector_resistance_ohm: r_cc,
        mass_kg: coat_c + coat_a + foil_mass + sep_mass + f.hardware_mass_kg,
        can_volume_m3: match f.pouch {
            None => can_volume_m3(p.can_outer_diameter_m, p.can_height_m),
            Some(_) => l_a * w_a * stack_m,
        },
        plating_risk: false,
        defects,
        reject_reason: None,
    };
    let risk = check_cell(&mut cell, &insulation, oversize_limit, water_limit_kg, p, job.done_s, tracker);
    let rejected = cell.reject_reason.is_some();
    (cell, CellReadings { alignment, diameter, insulation, risk, rejected })
}

impl Stage for Assembly {
    const KIND: StageKind = StageKind::CellAssembly;
    type Params = AssemblyParams;
    type Input = AssemblyInput;
    type Output = Vec<AssembledCell>;
    type Sample = AssemblySample;
    type Result = AssemblyResult;
    type MachineState = ();

    fn run(
        params: &AssemblyParams,
        input: AssemblyInput,
        _machine: &mut (),
        ctx: &mut StageCtx<'_>,
        sink: &mut dyn StageSink<AssemblySample>,
    ) -> StageRun<Vec<AssembledCell>, AssemblyResult> {
        let mut tracker = AlarmTracker::new(Self::KIND, ctx.line, ctx.start_t_s);
        let format = Format::new(params);
        let cathode = LineSource::new(&input.cathode);
        let anode = LineSource::new(&input.anode);
        let winders = params.winder_count.max(1) as usize;
        let moisture_reference = (
            equilibrium_moisture_frac(params.cathode_moisture_coeff_per_pa, MOISTURE_REFERENCE_DEW_POINT_DEGC),
            equilibrium_moisture_frac(params.anode_moisture_coeff_per_pa, MOISTURE_REFERENCE_DEW_POINT_DEGC),
        );

        // Pairing: cells per lane pair N_j = min(⌊L_c,reel/L_c⌋, ⌊L_a,reel/L_a⌋) (§8.2).
        let n_pairs = input.cathode.reels.len().min(input.anode.reels.len());
        let mut per_pair = Vec::with_capacity(n_pairs);
        for j in 0..n_pairs {
            let (cr, ar) = (&input.cathode.reels[j], &input.anode.reels[j]);
            let lanes = cathode.lane_of(cr).zip(anode.lane_of(ar));
            let n = if cr.scrapped || ar.scrapped || lanes.is_none() {
                0
            } else {
                let nc = (cr.length_m / format.cathode_reel_m + 1e-9).floor().max(0.0);
                let na = (ar.length_m / format.anode_reel_m + 1e-9).floor().max(0.0);
                nc.min(na) as u32
            };
            per_pair.push((n, lanes));
        }

        // Winding order: the lane pairs advance together; capped by max_cells.
        let cap = if params.max_cells == 0 { usize::MAX } else { params.max_cells as usize };
        let max_k = per_pair.iter().map(|p| p.0).max().unwrap_or(0);
        let mut order: Vec<(u32, u32)> = Vec::new();
        'outer: for k in 0..max_k {
            for (j, (n, _)) in per_pair.iter().enumerate() {
                if k < *n {
                    if order.len() >= cap {
                        break 'outer;
                    }
                    order.push((j as u32, k));
                }
            }
        }

        let n_cells = order.len();
        let mut cells = Vec::with_capacity(n_cells);
        let mut readings = Vec::with_capacity(n_cells);
        let mut wound = vec![0u32; n_pairs];
        for (i, &(j, k)) in order.iter().enumerate() {
            let (_, lanes) = per_pair[j as usize];
            let (cathode_lane, anode_lane) = lanes.expect("pairs with cells have lanes");
            let job = CellJob {
                params,
                format: &format,
                cathode: &cathode,
                anode: &anode,
                cathode_reel: &input.cathode.reels[j as usize],
                anode_reel: &input.anode.reels[j as usize],
                cathode_lane,
                anode_lane,
                batch_id: ctx.batch_id,
                pair: j,
                k,
                done_s: ((i / winders) + 1) as f64 * format.cycle_s,
                moisture_reference,
            };
            let (cell, r) = build_cell(&job, i as u64, ctx, &mut tracker);
            wound[j as usize] += 1;
            cells.push(cell);
            readings.push(r);
        }

        // Lot timeline (§8.2): round-robin to winders, ⌈N/winders⌉·cycle.
        let duration_s = n_cells.div_ceil(winders) as f64 * format.cycle_s;
        let mut rejected_before = Vec::with_capacity(n_cells + 1);
        rejected_before.push(0u32);
        for r in &readings {
            rejected_before.push(rejected_before.last().copied().unwrap_or(0) + r.rejected as u32);
        }
        let completed_at = |t: f64| -> usize {
            if format.cycle_s > 0.0 {
                (((t / format.cycle_s) + 1e-9).floor() as usize).saturating_mul(winders).min(n_cells)
            } else {
                n_cells
            }
        };
        let geometry = |cell: &AssembledCell| LastCellGeometry {
            stack_thickness_m: cell.stack_thickness_m,
            porosity_frac: (cell.cathode.porosity_frac + cell.anode.porosity_frac) / 2.0,
            cathode_width_m: cell.cathode.width_m,
            anode_length_m: cell.anode.length_m,
        };

        let mut forwarded = 0;
        let mut final_sample = None;
        for stage_t in sample_times(duration_s, params.sample_interval_s) {
            while forwarded < tracker.events.len() && tracker.events[forwarded].stage_time_s <= stage_t + 1e-9 {
                sink.alarm(&tracker.events[forwarded]);
                forwarded += 1;
            }
            let done = completed_at(stage_t);
            let last = done.checked_sub(1);
            let tension = TENSION_SENSOR.measure(params.winding_tension_n, ctx.sensor_noise, ctx.sensor_rng);
            let mut dew_true = params.dew_point_degc;
            let mut dew_shown = params.dew_point_degc;
            for fault in ctx.faults.of(FaultCode::F12DryroomHumidityExcursion) {
                let level = fault.spec.level(stage_t);
                let target = fault.spec.magnitude.dew_point_degc.unwrap_or(-10.0);
                dew_true += level * (target - params.dew_point_degc);
                if fault.spec.sensor_visible {
                    dew_shown += level * (target - params.dew_point_degc);
                }
            }
            let dew = DEW_POINT_SENSOR.measure(dew_shown, ctx.sensor_noise, ctx.sensor_rng);
            let dew = ctx.faults.corrupt("dew_point_degc", stage_t, Reading { true_value: dew_true, ..dew });
            let sample = AssemblySample {
                t_s: ctx.start_t_s + stage_t,
                stage_time_s: stage_t,
                cells_completed: done as u32,
                cells_rejected: rejected_before[done],
                last_cell_id: last.map(|i| cells[i].genealogy.cell_id.clone()),
                winding_tension_n: tension,
                alignment_offset_m: last.map(|i| readings[i].alignment),
                jelly_roll_diameter_m: last.map(|i| readings[i].diameter),
                insulation_resistance_ohm: last.map(|i| readings[i].insulation),
                np_ratio: last.map(|i| cells[i].np_ratio),
                dew_point_degc: dew,
                last_cell: last.map(|i| geometry(&cells[i])),
                defect_risk: last.is_some_and(|i| readings[i].risk) || tracker.any_active(Severity::Warning),
                fault_labels: {
                    // stage-time faults, and this machine's cell faults on the last cell
                    let mut l = ctx.faults.labels_at(stage_t, None);
                    for id in last.iter().flat_map(|&i| &cells[i].genealogy.fault_labels) {
                        if ctx.faults.all().iter().any(|f| f.label_id == *id) && !l.contains(id) {
                            l.push(*id);
                        }
                    }
                    l
                },
            };
            sink.sample(sample.clone());
            final_sample = Some(sample);
        }
        for e in &tracker.events[forwarded..] {
            sink.alarm(e);
        }

        // Result (§8.3).
        let mut reject_counts = BTreeMap::new();
        for c in &cells {
            if let Some(r) = &c.reject_reason {
                *reject_counts.entry(r.clone()).or_insert(0u32) += 1;
            }
        }
        let good: Vec<&AssembledCell> = cells.iter().filter(|c| c.reject_reason.is_none()).collect();
        let mean = |f: &dyn Fn(&AssembledCell) -> f64| {
            if good.is_empty() {
                0.0
            } else {
                good.iter().map(|c| f(c)).sum::<f64>() / good.len() as f64
            }
        };
        let lanes = (0..n_pairs)
            .map(|j| {
                let (cr, ar) = (&input.cathode.reels[j], &input.anode.reels[j]);
                let n = wound[j] as f64;
                LaneUsage {
                    lane: j as u32,
                    cathode_reel_id: cr.reel_id.clone(),
                    anode_reel_id: ar.reel_id.clone(),
                    cells: wound[j],
                    cathode_unused_m: (cr.length_m - n * format.cathode_reel_m).max(0.0),
                    anode_unused_m: (ar.length_m - n * format.anode_reel_m).max(0.0),
                }
            })
            .collect();
        let cells_rejected = rejected_before[n_cells];
        let result = AssemblyResult {
            cells_total: n_cells as u32,
            cells_good: good.len() as u32,
            cells_rejected,
            reject_counts,
            plating_risk_count: cells.iter().filter(|c| c.plating_risk).count() as u32,
            lanes,
            cycle_s: format.cycle_s,
            duration_s,
            mean_design_capacity_ah: mean(&|c| c.design_capacity_ah),
            mean_np_ratio: mean(&|c| c.np_ratio),
            min_np_ratio_local: if cells.is_empty() {
                0.0
            } else {
                cells.iter().map(|c| c.np_ratio_local_min).fold(f64::INFINITY, f64::min)
            },
            mean_jelly_roll_diameter_m: mean(&|c| c.jelly_roll_diameter_m),
            mean_pore_volume_m3: mean(&|c| c.pore_volume_m3),
            mean_water_mass_kg: mean(&|c| c.water_mass_kg),
            mean_mass_kg: mean(&|c| c.mass_kg),
            mean_current_collector_resistance_ohm: mean(&|c| c.current_collector_resistance_ohm),
            final_sample: final_sample.expect("sample_times always yields the end sample"),
            accepted: !good.is_empty() && !tracker.any_raised(Severity::Critical),
            alarms: tracker.events,
        };
        StageRun { output: cells, result, duration_s }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jelly_roll_of_the_default_cell_is_19_99_mm() {
        let t = stack_thickness_m(141.82e-6, 177.53e-6, 16e-6);
        assert!((t - 351.35e-6).abs() < 1e-12);
        let d = jelly_roll_diameter_m(0.0035, 0.86, t, 16e-6, 2);
        assert!((d * 1e3 - 19.99).abs() < 0.005, "{d}");
    }

    #[test]
    fn collector_resistance_of_the_default_cell_is_4_53_mohm() {
        let r = foil_resistance_ohm(&Foil::AL, 0.81, 0.061, TabLayout::Center)
            + foil_resistance_ohm(&Foil::CU, 0.86, 0.063, TabLayout::BothEnds);
        assert!((r * 1e3 - 4.53).abs() < 0.01, "{r}");
        assert_eq!(TabLayout::End.collector_factor(), 3.0);
    }

    #[test]
    fn pierce_probability_is_logistic_around_half_the_separator() {
        assert!((pierce_probability(8e-6, 16e-6, 5e-7) - 0.5).abs() < 1e-12);
        assert!(pierce_probability(3e-6, 16e-6, 5e-7) < 1e-4);
        assert!(pierce_probability(12e-6, 16e-6, 5e-7) > 0.999);
        assert_eq!(pierce_probability(9e-6, 16e-6, 0.0), 1.0);
        assert_eq!(pierce_probability(7e-6, 16e-6, 0.0), 0.0);
    }

    #[test]
    fn moisture_relaxes_towards_equilibrium() {
        let eq = equilibrium_moisture_frac(8e-6, -40.0);
        assert!((eq * 1e6 - 103.0).abs() < 0.5, "{eq}");
        assert_eq!(moisture_after(1e-3, eq, 0.0, 7200.0), 1e-3);
        assert!((moisture_after(1e-3, eq, 1e9, 7200.0) - eq).abs() < 1e-15);
        assert_eq!(moisture_after(1e-3, eq, 10.0, 0.0), eq);
    }

    #[test]
    fn segments_cover_a_span_by_overlap() {
        let mut got = Vec::new();
        for_each_segment(10, 0.5, 0.25, 1.3, |i, ov| got.push((i, ov)));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, 0);
        assert!((got[0].1 - 0.25).abs() < 1e-12);
        assert!((got[1].1 - 0.5).abs() < 1e-12);
        assert!((got[2].1 - 0.3).abs() < 1e-12);
        let total: f64 = got.iter().map(|g| g.1).sum();
        assert!((total - 1.05).abs() < 1e-12);
    }

    #[test]
    fn can_volume_of_a_21700_is_24_24_ml() {
        assert!((can_volume_m3(0.021, 0.070) * 1e6 - 24.24).abs() < 0.01);
    }
}
