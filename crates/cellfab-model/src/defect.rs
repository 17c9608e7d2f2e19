//! Defects (MODELS.md §0.5): they live in the product state, travel with it along the web
//! in coating coordinates, and are either found by inspection or end up in a cell.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What kind of defect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum DefectKind {
    /// Undispersed carbon-black / binder agglomerate.
    Agglomerate,
    /// Bubble or crater from entrained air.
    Bubble,
    /// Uncoated streak (rivulets, clogged nozzle).
    Streak,
    /// Locally low coat weight.
    LowLoading,
    /// Locally high coat weight.
    HighLoading,
    /// Cracked particles from over-compaction.
    Crack,
    /// Binder migration / delamination.
    Blister,
    /// Metal burr at a slit edge.
    EdgeBurr,
    /// Wrinkle from low web tension.
    Wrinkle,
    /// Splice made at rewinding.
    Splice,
    /// Foreign particle.
    Contamination,
}

/// How serious a defect is for inspection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum DefectSeverity {
    /// Cosmetic.
    Minor,
    /// Rejects the segment when detected.
    Major,
}

/// One defect on the web or in a cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Defect {
    /// Unique id within the batch and line.
    pub id: u32,
    /// Kind.
    pub kind: DefectKind,
    /// Stage where it arose (snake_case stage name).
    pub origin_stage: String,
    /// Machine-direction position in coating coordinates [m].
    pub md_position_m: f64,
    /// Cross-direction position from the operator-side coating edge [m].
    pub cd_position_m: f64,
    /// Extent along the web [m].
    pub length_m: f64,
    /// Extent across the web [m].
    pub width_m: f64,
    /// Characteristic size for detection [m] (diameter, streak width or crack length).
    pub size_m: f64,
    /// Severity.
    pub severity: DefectSeverity,
    /// Found by inspection.
    pub detected: bool,
    /// A false call of inspection (no true defect behind it).
    pub false_call: bool,
    /// Fault label that caused it, if any.
    pub fault_label: Option<u32>,
}
