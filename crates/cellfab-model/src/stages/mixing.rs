//! Mixing: a recipe becomes a slurry of known composition, rheology and dispersion in a
//! jacketed dissolver tank (MODELS.md §1). No upstream product; `Slurry` out.

use crate::recipe::Recipe;
use crate::stage::Line;
use serde::{Deserialize, Serialize};

/// The slurry handed to coating (MODELS.md §0.9, §1.5). Rheology is referenced to 25 °C.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slurry {
    /// Batch number.
    pub batch_id: u32,
    /// Anode or cathode.
    pub line: Line,
    /// Materials and recipe constants.
    pub recipe: Recipe,
    /// Dry mass fraction of active material.
    pub am_mass_frac_dry: f64,
    /// Dry mass fraction of conductive additive.
    pub ca_mass_frac_dry: f64,
    /// Dry mass fraction of binder.
    pub binder_mass_frac_dry: f64,
    /// Active material in the tank [kg].
    pub am_mass_kg: f64,
    /// Conductive additive in the tank [kg].
    pub ca_mass_kg: f64,
    /// Binder in the tank [kg].
    pub binder_mass_kg: f64,
    /// Solvent in the tank [kg].
    pub solvent_mass_kg: f64,
    /// Air-free slurry volume [m³].
    pub volume_m3: f64,
    /// Volume that reaches the coater (5 % heel and hold-up removed) [m³].
    pub usable_volume_m3: f64,
    /// Air-free density [kg/m³].
    pub density_kg_m3: f64,
    /// Dry composite density [kg/m³].
    pub solid_density_kg_m3: f64,
    /// Solids mass fraction.
    pub solids_mass_frac: f64,
    /// Solids volume fraction.
    pub solids_volume_frac: f64,
    /// Zero-shear viscosity at 25 °C [Pa·s].
    pub zero_shear_viscosity_pa_s: f64,
    /// Viscosity at 10 1/s and 25 °C [Pa·s].
    pub viscosity_ref_pa_s: f64,
    /// Cross time constant λ [s].
    pub cross_time_constant_s: f64,
    /// Cross exponent m.
    pub cross_exponent: f64,
    /// Cross infinite-shear ratio r_∞.
    pub cross_inf_ratio: f64,
    /// Arrhenius activation energy of viscosity [J/mol].
    pub viscosity_activation_energy_j_mol: f64,
    /// Yield stress [Pa].
    pub yield_stress_pa: f64,
    /// Agglomerate fraction A (1 = fully agglomerated).
    pub agglomerate_frac: f64,
    /// Dissolved binder fraction f.
    pub binder_dissolved_frac: f64,
    /// Entrained-air volume fraction.
    pub air_volume_frac: f64,
    /// Slurry temperature at the end of mixing [°C].
    pub temperature_degc: f64,
    /// φ_eff/φ_m ≥ 0.98 at the end (`MIX_NOT_FLOWABLE`).
    pub not_flowable: bool,
    /// Fault labels active on this slurry.
    pub fault_labels: Vec<u32>,
}

impl Slurry {
    /// Viscosity at shear rate `shear_rate_per_s` and temperature `temperature_degc` from
    /// the Cross law on η₀ with the Arrhenius factor (MODELS.md §1.2 steps 3–6) [Pa·s].
    pub fn viscosity_pa_s(&self, shear_rate_per_s: f64, temperature_degc: f64) -> f64 {
        let arrhenius = ((self.viscosity_activation_energy_j_mol / crate::consts::GAS_CONSTANT_J_MOL_K)
            * (1.0 / crate::consts::kelvin(temperature_degc) - 1.0 / crate::consts::REFERENCE_TEMPERATURE_K))
            .exp();
        self.zero_shear_viscosity_pa_s
            * arrhenius
            * (self.cross_inf_ratio
                + (1.0 - self.cross_inf_ratio)
                    / (1.0 + (self.cross_time_constant_s * shear_rate_per_s).powf(self.cross_exponent)))
    }
}
