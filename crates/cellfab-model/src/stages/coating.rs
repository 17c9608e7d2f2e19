//! Coating (slot die): meter the slurry onto both sides of the foil and set the areal
//! loading (MODELS.md §2). `Slurry` in, `WetFilm` out.

use crate::defect::Defect;
use crate::material::Foil;
use crate::stages::mixing::Slurry;
use crate::web::{SegmentFlags, WebGrid};
use serde::{Deserialize, Serialize};

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
}
