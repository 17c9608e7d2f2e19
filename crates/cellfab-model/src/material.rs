//! Material presets (MODELS.md §0.7): densities, heat capacities, solvent vapour pressure,
//! electrolyte, separator and foil properties. A recipe names its materials; stage models
//! read the properties from the product state.

use crate::consts::{kelvin, ATMOSPHERE_PA, GAS_CONSTANT_J_MOL_K};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A named material preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Material {
    /// Graphite anode active material.
    Graphite,
    /// LiNi0.8Mn0.1Co0.1O2 cathode active material.
    Nmc811,
    /// Conductive carbon black.
    CarbonBlack,
    /// Polyvinylidene fluoride binder (dissolves in NMP).
    Pvdf,
    /// CMC/SBR 40:60 water-based binder blend.
    CmcSbr,
    /// N-methyl-2-pyrrolidone solvent.
    Nmp,
    /// Water solvent.
    Water,
}

impl Material {
    /// Density [kg/m³].
    pub fn density_kg_m3(self) -> f64 {
        match self {
            Material::Graphite => 2260.0,
            Material::Nmc811 => 4750.0,
            Material::CarbonBlack => 1800.0,
            Material::Pvdf => 1780.0,
            Material::CmcSbr => 1170.0,
            Material::Nmp => 1028.0,
            Material::Water => 997.0,
        }
    }

    /// Specific heat [J/(kg·K)].
    pub fn heat_capacity_j_kg_k(self) -> f64 {
        match self {
            Material::Graphite => 710.0,
            Material::Nmc811 => 700.0,
            Material::CarbonBlack => 700.0,
            Material::Pvdf | Material::CmcSbr => 1300.0,
            Material::Nmp => 1700.0,
            Material::Water => 4180.0,
        }
    }

    /// Solvent properties, for the two solvents.
    pub fn solvent(self) -> Option<Solvent> {
        match self {
            Material::Nmp => Some(Solvent::NMP),
            Material::Water => Some(Solvent::WATER),
            _ => None,
        }
    }

    /// Active-material properties, for the two active materials.
    pub fn active(self) -> Option<ActiveMaterial> {
        match self {
            Material::Graphite => Some(ActiveMaterial::GRAPHITE),
            Material::Nmc811 => Some(ActiveMaterial::NMC811),
            _ => None,
        }
    }

    /// Legacy key of a solvent (`H2O` / `NMP`).
    pub fn legacy_solvent_key(self) -> &'static str {
        match self {
            Material::Water => "H2O",
            _ => "NMP",
        }
    }
}

/// Properties of a solvent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Solvent {
    /// Viscosity at 25 °C [Pa·s].
    pub viscosity_pa_s: f64,
    /// Molar mass [kg/mol].
    pub molar_mass_kg_mol: f64,
    /// Fitted enthalpy of vaporisation [J/mol].
    pub vaporisation_enthalpy_j_mol: f64,
    /// Normal boiling point [°C].
    pub boiling_point_degc: f64,
    /// Lewis number in air.
    pub lewis_number: f64,
    /// Surface tension of the slurry [N/m].
    pub slurry_surface_tension_n_m: f64,
}

impl Solvent {
    /// NMP [L]/[C] (§0.7).
    pub const NMP: Solvent = Solvent {
        viscosity_pa_s: 1.65e-3,
        molar_mass_kg_mol: 0.09913,
        vaporisation_enthalpy_j_mol: 50.0e3,
        boiling_point_degc: 202.0,
        lewis_number: 3.0,
        slurry_surface_tension_n_m: 0.041,
    };
    /// Water [L]/[C] (§0.7).
    pub const WATER: Solvent = Solvent {
        viscosity_pa_s: 0.89e-3,
        molar_mass_kg_mol: 0.018015,
        vaporisation_enthalpy_j_mol: 42.0e3,
        boiling_point_degc: 100.0,
        lewis_number: 0.87,
        slurry_surface_tension_n_m: 0.050,
    };

    /// Vapour pressure by Clausius–Clapeyron anchored at the boiling point [Pa].
    #[inline]
    pub fn vapour_pressure_pa(&self, temperature_degc: f64) -> f64 {
        ATMOSPHERE_PA
            * (-(self.vaporisation_enthalpy_j_mol / GAS_CONSTANT_J_MOL_K)
                * (1.0 / kelvin(temperature_degc) - 1.0 / kelvin(self.boiling_point_degc)))
            .exp()
    }

    /// Latent heat per mass [J/kg].
    #[inline]
    pub fn latent_heat_j_kg(&self) -> f64 {
        self.vaporisation_enthalpy_j_mol / self.molar_mass_kg_mol
    }
}

/// Properties of an active material.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActiveMaterial {
    /// Design specific capacity [Ah/kg].
    pub design_capacity_ah_kg: f64,
    /// Capacity per unit of the OCP stoichiometry axis [Ah/kg] (§12.2).
    pub stoich_capacity_ah_kg: f64,
    /// Median particle diameter [m].
    pub d50_m: f64,
    /// BET specific surface [m²/kg].
    pub bet_area_m2_kg: f64,
}

impl ActiveMaterial {
    /// Graphite (§0.7).
    pub const GRAPHITE: ActiveMaterial = ActiveMaterial {
        design_capacity_ah_kg: 350.0,
        stoich_capacity_ah_kg: 372.0,
        d50_m: 15e-6,
        bet_area_m2_kg: 1500.0,
    };
    /// NMC811 (§0.7).
    pub const NMC811: ActiveMaterial = ActiveMaterial {
        design_capacity_ah_kg: 200.0,
        stoich_capacity_ah_kg: 305.0,
        d50_m: 10e-6,
        bet_area_m2_kg: 0.0,
    };
}

/// Current-collector foil.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Foil {
    /// Density [kg/m³].
    pub density_kg_m3: f64,
    /// Specific heat [J/(kg·K)].
    pub heat_capacity_j_kg_k: f64,
    /// Thickness [m].
    pub thickness_m: f64,
    /// Electrical resistivity [Ω·m].
    pub resistivity_ohm_m: f64,
    /// Yield stress [Pa].
    pub yield_stress_pa: f64,
    /// Elongation in the calender nip (fraction; Al ≈ 1 %, Cu 0).
    pub calender_elongation_frac: f64,
}

impl Foil {
    /// Aluminium 15 µm (cathode).
    pub const AL: Foil = Foil {
        density_kg_m3: 2700.0,
        heat_capacity_j_kg_k: 900.0,
        thickness_m: 15e-6,
        resistivity_ohm_m: 2.82e-8,
        yield_stress_pa: 150e6,
        calender_elongation_frac: 0.01,
    };
    /// Copper 8 µm (anode).
    pub const CU: Foil = Foil {
        density_kg_m3: 8960.0,
        heat_capacity_j_kg_k: 385.0,
        thickness_m: 8e-6,
        resistivity_ohm_m: 1.72e-8,
        yield_stress_pa: 200e6,
        calender_elongation_frac: 0.0,
    };

    /// Areal mass of the foil [kg/m²].
    pub fn areal_mass_kg_m2(&self) -> f64 {
        self.density_kg_m3 * self.thickness_m
    }
}

/// Electrolyte LP57 (1 M LiPF6 in EC:EMC 3:7) (§0.7).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Electrolyte {
    /// Density [kg/m³].
    pub density_kg_m3: f64,
    /// Viscosity at 25 °C [Pa·s].
    pub viscosity_pa_s: f64,
    /// Activation energy of viscosity [J/mol].
    pub viscosity_activation_j_mol: f64,
    /// Surface tension [N/m].
    pub surface_tension_n_m: f64,
    /// Ionic conductivity at 25 °C [S/m].
    pub conductivity_s_m: f64,
    /// Activation energy of conductivity [J/mol].
    pub conductivity_activation_j_mol: f64,
    /// Water content (mass fraction).
    pub water_mass_frac: f64,
}

impl Electrolyte {
    /// LP57.
    pub const LP57: Electrolyte = Electrolyte {
        density_kg_m3: 1200.0,
        viscosity_pa_s: 4.0e-3,
        viscosity_activation_j_mol: 15e3,
        surface_tension_n_m: 0.035,
        conductivity_s_m: 1.0,
        conductivity_activation_j_mol: 12e3,
        water_mass_frac: 20e-6,
    };
}

/// Separator PE with ceramic coating (§0.7).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Separator {
    /// Solid density [kg/m³].
    pub density_kg_m3: f64,
    /// Thickness [m].
    pub thickness_m: f64,
    /// Porosity (fraction).
    pub porosity_frac: f64,
    /// Pore radius [m].
    pub pore_radius_m: f64,
    /// Contact angle with the electrolyte [deg].
    pub contact_angle_deg: f64,
}

impl Separator {
    /// PE + ceramic, 16 µm.
    pub const PE_CERAMIC: Separator = Separator {
        density_kg_m3: 950.0,
        thickness_m: 16e-6,
        porosity_frac: 0.45,
        pore_radius_m: 50e-9,
        contact_angle_deg: 40.0,
    };
}

/// Water vapour pressure from the dew point (Magnus form, WMO; over ice below 0 °C) [Pa].
pub fn water_vapour_pressure_pa(dew_point_degc: f64) -> f64 {
    if dew_point_degc < 0.0 {
        611.2 * (22.46 * dew_point_degc / (272.62 + dew_point_degc)).exp()
    } else {
        611.2 * (17.62 * dew_point_degc / (243.12 + dew_point_degc)).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_models_0_7() {
        assert!((Solvent::NMP.latent_heat_j_kg() - 5.04e5).abs() < 1e3);
        assert!((Solvent::WATER.latent_heat_j_kg() - 2.33e6).abs() < 1e4);
        assert!((Solvent::NMP.vapour_pressure_pa(20.0) - 39.0).abs() < 2.0);
        assert!((water_vapour_pressure_pa(-40.0) - 12.8).abs() < 0.1);
        // water within 8 % of 2339 Pa at 20 °C
        assert!((Solvent::WATER.vapour_pressure_pa(20.0) / 2339.0 - 1.0).abs() < 0.08);
    }
}
