//! Drying: evaporate the solvent in a multi-zone impingement dryer (MODELS.md §3).
//! `WetFilm` in, `DryElectrode` out.

use crate::stages::coating::WetFilm;
use crate::web::WebGrid;
use serde::{Deserialize, Serialize};

/// The dried roll (MODELS.md §0.9).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DryElectrode {
    /// The wet film it was dried from (grids, defects, flags, slurry).
    pub film: WetFilm,
    /// Residual solvent per segment cell [kg solvent / kg solids].
    pub residual_solvent_frac: WebGrid,
    /// Porosity of the dried film.
    pub dry_porosity_frac: WebGrid,
    /// Dried coating thickness per side [m].
    pub dry_thickness_m: WebGrid,
    /// Binder-migration index (drying rate at pore emptying / limit).
    pub binder_migration_index: WebGrid,
}
