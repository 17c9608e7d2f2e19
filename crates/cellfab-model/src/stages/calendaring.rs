//! Calendaring: compress the dry coating to the target porosity (MODELS.md §4).
//! `DryElectrode` in, `CalenderedElectrode` out.

use crate::stages::drying::DryElectrode;
use crate::web::WebGrid;
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
