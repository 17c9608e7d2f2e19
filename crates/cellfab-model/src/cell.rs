//! The cell-line products (MODELS.md §0.9): one [`AssembledCell`] per jelly roll out of
//! assembly, one [`FilledCell`] out of filling. Cells live in flat `Vec`s of plain structs;
//! the formation and aging loops keep their state in flat arrays (see `electrochem`).

use crate::defect::Defect;
use serde::{Deserialize, Serialize};

/// Where a cell came from (MODELS.md §0.8): batch, reels, lanes and coating positions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Genealogy {
    /// Cell id `B<batch>-L<lane>-<k>`.
    pub cell_id: String,
    /// Batch number.
    pub batch_id: u32,
    /// Lane j (anode lane j pairs with cathode lane j).
    pub lane: u32,
    /// Index k of the cell along the lane pair.
    pub index_in_lane: u32,
    /// Anode reel id.
    pub anode_reel_id: String,
    /// Cathode reel id.
    pub cathode_reel_id: String,
    /// Anode interval on its reel [m].
    pub anode_reel_start_m: f64,
    /// Cathode interval on its reel [m].
    pub cathode_reel_start_m: f64,
    /// Anode interval start in anode coating coordinates [m].
    pub anode_coating_start_m: f64,
    /// Anode interval end in anode coating coordinates [m].
    pub anode_coating_end_m: f64,
    /// Cathode interval start in cathode coating coordinates [m].
    pub cathode_coating_start_m: f64,
    /// Cathode interval end in cathode coating coordinates [m].
    pub cathode_coating_end_m: f64,
    /// A splice lies inside either interval.
    pub splice: bool,
    /// Ids of the web defects inside the cell (anode and cathode ids, see `defects`).
    pub defect_ids: Vec<u32>,
    /// Fault labels that touched the cell.
    pub fault_labels: Vec<u32>,
}

/// The electrode of one polarity inside a cell: length/width-weighted means over the web
/// grid cells the cell was cut from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CellElectrode {
    /// Electrode length in the cell (reel metres) [m].
    pub length_m: f64,
    /// Lane width [m].
    pub width_m: f64,
    /// Coated area, both sides [m²].
    pub area_m2: f64,
    /// Calendered areal mass per side [kg/m²].
    pub areal_mass_kg_m2: f64,
    /// Porosity.
    pub porosity_frac: f64,
    /// Coating thickness per side [m].
    pub coating_thickness_m: f64,
    /// Electrode thickness [m].
    pub electrode_thickness_m: f64,
    /// Active-material mass [kg].
    pub am_mass_kg: f64,
    /// Dry mass fraction of active material.
    pub am_mass_frac: f64,
    /// Dry composite density [kg/m³].
    pub solid_density_kg_m3: f64,
    /// Active-material density [kg/m³].
    pub am_density_kg_m3: f64,
    /// Design specific capacity of the active material [Ah/kg].
    pub design_capacity_ah_kg: f64,
    /// Stoichiometric capacity of the active material [Ah/kg].
    pub stoich_capacity_ah_kg: f64,
    /// Median particle diameter [m].
    pub d50_m: f64,
    /// Foil thickness [m].
    pub foil_thickness_m: f64,
    /// Foil resistivity [Ω·m].
    pub foil_resistivity_ohm_m: f64,
    /// Coating water content at winding [kg water / kg coating].
    pub moisture_mass_frac: f64,
    /// Largest burr along the cell's edges [m] (cathode: drives separator pierce).
    pub max_burr_height_m: f64,
}

/// One wound jelly roll (MODELS.md §0.9 `AssembledCell`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssembledCell {
    /// Genealogy.
    pub genealogy: Genealogy,
    /// Cathode in the cell.
    pub cathode: CellElectrode,
    /// Anode in the cell.
    pub anode: CellElectrode,
    /// Design capacity Q_design [Ah].
    pub design_capacity_ah: f64,
    /// N/P ratio (per unit facing area).
    pub np_ratio: f64,
    /// Lowest N/P over aligned 0.5 m sub-segments.
    pub np_ratio_local_min: f64,
    /// Lithium lost to local plating on the first charge (§12.2) [Ah].
    pub local_plating_charge_ah: f64,
    /// Separator strip length [m].
    pub separator_length_m: f64,
    /// Separator strip width [m].
    pub separator_width_m: f64,
    /// Stack thickness t_stack [m].
    pub stack_thickness_m: f64,
    /// Jelly-roll diameter [m].
    pub jelly_roll_diameter_m: f64,
    /// Cathode-to-anode lateral offset [m].
    pub alignment_offset_m: f64,
    /// Anode overhang beyond the cathode edge after alignment [m].
    pub overhang_margin_m: f64,
    /// Pore volume of electrodes and separators [m³].
    pub pore_volume_m3: f64,
    /// Water in the cell [kg].
    pub water_mass_kg: f64,
    /// Latent (soft) short resistance [Ω]; infinite for a good cell.
    pub latent_short_resistance_ohm: f64,
    /// True insulation resistance [Ω].
    pub insulation_resistance_ohm: f64,
    /// Measured insulation resistance [Ω].
    pub insulation_resistance_measured_ohm: f64,
    /// Tab and weld resistance [Ω].
    pub tab_resistance_ohm: f64,
    /// Current-collector resistance R_cc [Ω].
    pub current_collector_resistance_ohm: f64,
    /// Dry cell mass [kg].
    pub mass_kg: f64,
    /// Outer can volume [m³].
    pub can_volume_m3: f64,
    /// Plating risk from low overhang or low local N/P.
    pub plating_risk: bool,
    /// Defects inside the cell.
    pub defects: Vec<Defect>,
    /// First reject reason (alarm code), if rejected.
    pub reject_reason: Option<String>,
}

/// A filled and soaked cell (MODELS.md §0.9 `FilledCell`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilledCell {
    /// The jelly roll (its `reject_reason` may now carry a filling code).
    pub assembled: AssembledCell,
    /// Electrolyte mass [kg].
    pub electrolyte_mass_kg: f64,
    /// Electrolyte volume [m³].
    pub electrolyte_volume_m3: f64,
    /// V_fill / V_pore.
    pub fill_ratio_frac: f64,
    /// Wetted fraction at release to formation.
    pub wetting_frac: f64,
    /// Soak time [s].
    pub soak_time_s: f64,
    /// Cell mass with electrolyte [kg].
    pub mass_kg: f64,
    /// Cell water after filling (electrodes + electrolyte) [kg].
    pub water_mass_kg: f64,
}
