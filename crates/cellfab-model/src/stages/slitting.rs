//! Slitting: cut the calendered web into lanes with rotary shear knives (MODELS.md §5).
//! `CalenderedElectrode` in, `SlitLanes` out; the blade wear is machine state kept across
//! batches.

use crate::stages::calendaring::CalenderedElectrode;
use serde::{Deserialize, Serialize};

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
    /// The calendered roll (grids, defects, flags).
    pub electrode: CalenderedElectrode,
    /// The lanes, operator side first.
    pub lanes: Vec<Lane>,
    /// Edge trim on each side [m].
    pub edge_trim_m: f64,
}
