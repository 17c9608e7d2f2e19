//! Electrode inspection: measure every lane in line and decide pass/fail per lane-segment
//! (MODELS.md §6). `SlitLanes` in, `InspectedLanes` out.

use crate::stages::slitting::SlitLanes;
use serde::{Deserialize, Serialize};

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
