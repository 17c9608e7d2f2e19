//! The recipe of one electrode line (MODELS.md §1.1 recipe-level constants, §0.7 default
//! recipes, §4.1 Meyer compaction constants): which materials, and the constants fitted to
//! them. The slurry carries its recipe downstream, so every stage reads the same values.

use crate::error::{check_non_negative, check_positive, check_range, ParamError};
use crate::material::{Foil, Material};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Materials and recipe constants of one electrode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Active material (graphite for the anode, nmc811 for the cathode).
    pub active_material: Material,
    /// Conductive additive.
    pub conductive_additive: Material,
    /// Binder (cmc_sbr in water, pvdf in NMP).
    pub binder: Material,
    /// Solvent (water or nmp).
    pub solvent: Material,
    /// Current-collector foil: `cu` (8 µm) or `al` (15 µm).
    pub foil: FoilKind,
    /// Binder-solution viscosity exponent α_b; [0, 1000]. [C]
    pub binder_viscosity_coeff: f64,
    /// Cap of the binder-solution viscosity; (0, 1000] Pa·s. [C]
    pub max_medium_viscosity_pa_s: f64,
    /// Maximum packing fraction φ_m; [0.3, 0.74]. [C] (0.55–0.64 [L])
    pub max_packing_frac: f64,
    /// Intrinsic viscosity [η]; [1, 10] (2.5 for hard spheres). [C]
    pub intrinsic_viscosity: f64,
    /// Effective-volume factor of dispersed carbon black k_∞; [1, 50]. [C]
    pub cb_volume_factor_dispersed: f64,
    /// Effective-volume factor of agglomerated carbon black k₀; [1, 50]. [C]
    pub cb_volume_factor_agglomerated: f64,
    /// Cross time constant λ; (0, 10] s. [L form]
    pub cross_time_constant_s: f64,
    /// Cross exponent m; (0, 1.5]. [L form]
    pub cross_exponent: f64,
    /// Cross infinite-shear ratio r_∞; [0, 1]. [C]
    pub cross_inf_ratio: f64,
    /// Viscosity activation energy; [0, 1e5] J/mol. [L form]
    pub viscosity_activation_energy_j_mol: f64,
    /// Yield-stress prefactor m₁ (YODEL); [0, 1e5] Pa. [C]
    pub yield_prefactor_pa: f64,
    /// Percolation threshold φ₀ of the yield stress; [0, 0.5]. [C]
    pub percolation_frac: f64,
    /// Specific energy that reduces agglomerates by 1/e; (0, 1e9] J/m³. [C]
    pub dispersion_energy_j_m3: f64,
    /// Binder dissolution time at high speed; (0, 1e5] s. [C]
    pub dissolution_time_s: f64,
    /// Porosity of the dried, uncalendered film; (0.1, 0.8). [C]
    pub dry_film_porosity_frac: f64,
    /// Dissolver turbulent power number N_t; (0, 10]. [L]
    pub power_number: f64,
    /// Laminar power constant K_p; (0, 1000]. [L]
    pub laminar_power_constant: f64,
    /// Metzner–Otto constant k_s; (0, 100]. [L]
    pub metzner_otto_constant: f64,
    /// Entrained-air level during powder addition a_mix; [0, 0.5]. [C]
    pub air_mix_frac: f64,
    /// Air entrainment time constant τ_air; (0, 1e4] s. [C]
    pub air_entrainment_time_s: f64,
    /// Residual air under vacuum a_vac; [0, 0.5]. [C]
    pub air_vacuum_frac: f64,
    /// Degassing time constant τ_deg; (0, 1e4] s. [C]
    pub degassing_time_s: f64,
    /// Minimum porosity reachable by calendering ε_min; [0.05, 0.5]. [C]
    pub min_porosity_frac: f64,
    /// Compaction resistance γ_c at the reference temperature; (0, 1e8] N/m. [C]
    pub compaction_resistance_n_m: f64,
    /// Temperature coefficient β_T of the compaction resistance; [0, 0.1] 1/K. [C]
    pub compaction_temp_coeff_per_k: f64,
    /// Reference temperature of the compaction resistance; [0, 200] °C. [C]
    pub compaction_ref_temperature_degc: f64,
    /// Elastic springback after the nip s_b; [0, 0.3]. [L]
    pub springback_frac: f64,
}

/// Foil choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FoilKind {
    /// Copper, 8 µm.
    Cu,
    /// Aluminium, 15 µm.
    Al,
}

impl FoilKind {
    /// Properties of the foil.
    pub fn foil(self) -> Foil {
        match self {
            FoilKind::Cu => Foil::CU,
            FoilKind::Al => Foil::AL,
        }
    }
}

impl Recipe {
    /// Graphite / carbon black / CMC-SBR in water on Cu (§0.7, §1.1, §4.1).
    pub fn anode() -> Self {
        Self {
            active_material: Material::Graphite,
            conductive_additive: Material::CarbonBlack,
            binder: Material::CmcSbr,
            solvent: Material::Water,
            foil: FoilKind::Cu,
            binder_viscosity_coeff: 220.0,
            max_medium_viscosity_pa_s: 50.0,
            max_packing_frac: 0.55,
            intrinsic_viscosity: 3.0,
            cb_volume_factor_dispersed: 4.0,
            cb_volume_factor_agglomerated: 12.0,
            cross_time_constant_s: 0.05,
            cross_exponent: 0.75,
            cross_inf_ratio: 0.05,
            viscosity_activation_energy_j_mol: 16e3,
            yield_prefactor_pa: 400.0,
            percolation_frac: 0.15,
            dispersion_energy_j_m3: 2.3e6,
            dissolution_time_s: 300.0,
            dry_film_porosity_frac: 0.50,
            power_number: 0.35,
            laminar_power_constant: 60.0,
            metzner_otto_constant: 11.0,
            air_mix_frac: 0.03,
            air_entrainment_time_s: 120.0,
            air_vacuum_frac: 0.002,
            degassing_time_s: 150.0,
            min_porosity_frac: 0.22,
            compaction_resistance_n_m: 2.5e5,
            compaction_temp_coeff_per_k: 0.005,
            compaction_ref_temperature_degc: 80.0,
            springback_frac: 0.04,
        }
    }

    /// NMC811 / carbon black / PVDF in NMP on Al (§0.7, §1.1, §4.1).
    pub fn cathode() -> Self {
        Self {
            active_material: Material::Nmc811,
            conductive_additive: Material::CarbonBlack,
            binder: Material::Pvdf,
            solvent: Material::Nmp,
            foil: FoilKind::Al,
            binder_viscosity_coeff: 150.0,
            max_packing_frac: 0.60,
            intrinsic_viscosity: 2.5,
            yield_prefactor_pa: 60.0,
            dispersion_energy_j_m3: 6.0e6,
            dry_film_porosity_frac: 0.46,
            min_porosity_frac: 0.20,
            compaction_resistance_n_m: 6.0e5,
            springback_frac: 0.02,
            ..Self::anode()
        }
    }

    /// Checks every constant against its range.
    pub fn validate(&self) -> Result<(), ParamError> {
        if self.active_material.active().is_none() {
            return Err(ParamError::rule("active_material", f64::NAN, "", "must be graphite or nmc811"));
        }
        if self.solvent.solvent().is_none() {
            return Err(ParamError::rule("solvent", f64::NAN, "", "must be water or nmp"));
        }
        check_range("binder_viscosity_coeff", self.binder_viscosity_coeff, 0.0, 1000.0, "")?;
        check_range("max_medium_viscosity_pa_s", self.max_medium_viscosity_pa_s, 1e-6, 1000.0, "Pa·s")?;
        check_range("max_packing_frac", self.max_packing_frac, 0.3, 0.74, "")?;
        check_range("intrinsic_viscosity", self.intrinsic_viscosity, 1.0, 10.0, "")?;
        check_range("cb_volume_factor_dispersed", self.cb_volume_factor_dispersed, 1.0, 50.0, "")?;
        check_range("cb_volume_factor_agglomerated", self.cb_volume_factor_agglomerated, 1.0, 50.0, "")?;
        check_range("cross_time_constant_s", self.cross_time_constant_s, 1e-6, 10.0, "s")?;
        check_range("cross_exponent", self.cross_exponent, 1e-3, 1.5, "")?;
        check_range("cross_inf_ratio", self.cross_inf_ratio, 0.0, 1.0, "")?;
        check_range("viscosity_activation_energy_j_mol", self.viscosity_activation_energy_j_mol, 0.0, 1e5, "J/mol")?;
        check_range("yield_prefactor_pa", self.yield_prefactor_pa, 0.0, 1e5, "Pa")?;
        check_range("percolation_frac", self.percolation_frac, 0.0, 0.5, "")?;
        check_range("dispersion_energy_j_m3", self.dispersion_energy_j_m3, 1.0, 1e9, "J/m³")?;
        check_range("dissolution_time_s", self.dissolution_time_s, 1e-3, 1e5, "s")?;
        check_range("dry_film_porosity_frac", self.dry_film_porosity_frac, 0.1, 0.8, "")?;
        check_range("power_number", self.power_number, 1e-6, 10.0, "")?;
        check_range("laminar_power_constant", self.laminar_power_constant, 1e-6, 1000.0, "")?;
        check_range("metzner_otto_constant", self.metzner_otto_constant, 1e-6, 100.0, "")?;
        check_range("air_mix_frac", self.air_mix_frac, 0.0, 0.5, "")?;
        check_positive("air_entrainment_time_s", self.air_entrainment_time_s, "s")?;
        check_range("air_vacuum_frac", self.air_vacuum_frac, 0.0, 0.5, "")?;
        check_positive("degassing_time_s", self.degassing_time_s, "s")?;
        check_range("min_porosity_frac", self.min_porosity_frac, 0.05, 0.5, "")?;
        if self.min_porosity_frac >= self.dry_film_porosity_frac {
            return Err(ParamError::rule(
                "min_porosity_frac",
                self.min_porosity_frac,
                "",
                format!("must be below dry_film_porosity_frac ({})", self.dry_film_porosity_frac),
            ));
        }
        check_range("compaction_resistance_n_m", self.compaction_resistance_n_m, 1.0, 1e8, "N/m")?;
        check_range("compaction_temp_coeff_per_k", self.compaction_temp_coeff_per_k, 0.0, 0.1, "1/K")?;
        check_range("compaction_ref_temperature_degc", self.compaction_ref_temperature_degc, 0.0, 200.0, "°C")?;
        check_range("springback_frac", self.springback_frac, 0.0, 0.3, "")?;
        check_non_negative("binder_viscosity_coeff", self.binder_viscosity_coeff, "")?;
        Ok(())
    }

    /// Dry composite density from dry mass fractions `1/(Σ w_i/ρ_i)` [kg/m³].
    pub fn solid_density_kg_m3(&self, am_frac: f64, ca_frac: f64, binder_frac: f64) -> f64 {
        1.0 / (am_frac / self.active_material.density_kg_m3()
            + ca_frac / self.conductive_additive.density_kg_m3()
            + binder_frac / self.binder.density_kg_m3())
    }
}
