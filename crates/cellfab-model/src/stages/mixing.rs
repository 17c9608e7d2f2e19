//! Mixing: a recipe becomes a slurry of known composition, rheology and dispersion in a
//! jacketed dissolver tank (MODELS.md §1). No upstream product; `Recipe` in, `Slurry` out.
//!
//! The tank runs a fixed phase schedule (solvent charge, binder addition and dissolution,
//! carbon-black and active-material addition, high-speed dispersion, vacuum degassing).
//! Each integration step follows the eleven steps of §1.2 in order: dosing, binder
//! dissolution, binder-solution viscosity, effective particle fraction, Krieger–Dougherty,
//! Cross shear thinning, dissolver power (Metzner–Otto), carbon-black dispersion by specific
//! energy (Kwade), the jacket energy balance, entrained air and the YODEL yield stress.
//! Samples every `sample_interval_s`; end-of-batch checks of §1.4 on the final state.
//!
//! Process draws: none (mixing has no process variability). Sensor draws per sample, in
//! field order: the four load cells, density, viscosity, yield stress, temperature, power.

use crate::alarm::{AlarmScope, AlarmTracker, Severity};
use crate::consts::{kelvin, GAS_CONSTANT_J_MOL_K, REFERENCE_TEMPERATURE_K};
use crate::error::{check_non_negative, check_open_min, check_range, ParamError};
use crate::fault::{At, FaultCode, FaultSet};
use crate::legacy::{put, put_object, LegacyRecord};
use crate::reading::{Reading, Sensor};
use crate::recipe::Recipe;
use crate::stage::{
    sample_times, Line, ResultRecord, SampleRecord, Stage, StageCtx, StageKind, StageParams, StageRun, StageSink,
};
use crate::Alarm;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Parameters (§1.1)
// ---------------------------------------------------------------------------------------------

/// Dissolver settings and dry recipe of one electrode line. Defaults: MODELS.md §1.1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MixingParams {
    /// Dry mass fraction of active material; [0, 1], at least 0.5; am + ca + binder = 1 (±1e-6). [L]
    pub am_mass_frac_dry: f64,
    /// Dry mass fraction of conductive additive (carbon black); [0, 1]. [L]
    pub ca_mass_frac_dry: f64,
    /// Dry mass fraction of binder; [0, 1]. [L]
    pub binder_mass_frac_dry: f64,
    /// Solids mass fraction of the slurry; [0.20, 0.90] (anode 45–55 %, cathode 65–75 %). [L]
    pub solids_mass_frac: f64,
    /// Air-free slurry volume made; [0.001, 2.0]. [E]
    pub slurry_volume_m3: f64,
    /// Dissolver disc diameter; [0.02, 1.0]. [E]
    pub impeller_diameter_m: f64,
    /// Impeller speed during additions and degassing; [0.1, 60]. [E]
    pub low_speed_rev_s: f64,
    /// Impeller speed during binder dissolution and dispersion; [0.1, 60], at least the low speed. [E]
    pub high_speed_rev_s: f64,
    /// Solvent charge phase; (0, 36000]. [E]
    pub solvent_charge_s: f64,
    /// Binder addition phase; (0, 36000]. [E]
    pub binder_addition_s: f64,
    /// Binder dissolution phase (high speed, nothing added); [0, 36000]. [E]
    pub binder_dissolution_s: f64,
    /// Conductive-additive addition phase; (0, 36000]. [E]
    pub ca_addition_s: f64,
    /// Active-material addition phase; (0, 36000]. [E]
    pub am_addition_s: f64,
    /// Dispersion phase (high speed, nothing added); [0, 36000]. [E]
    pub dispersion_s: f64,
    /// Vacuum degassing phase (low speed); [0, 36000]. [E]
    pub degassing_s: f64,
    /// Tank temperature at the start; [0, 80]. [E]
    pub initial_temperature_degc: f64,
    /// Jacket (cooling water) temperature; [0, 80]. [E]
    pub jacket_temperature_degc: f64,
    /// Jacket heat-transfer conductance UA; [0, 1e5]. [C]
    pub jacket_ua_w_k: f64,
    /// Temperature above which `MIX_OVERTEMPERATURE` is raised; [10, 90]. [E]
    pub max_temperature_degc: f64,
    /// Acceptance window [min, max] of the viscosity at 10 1/s and 25 °C; min ≥ 0, min < max. [C]
    pub viscosity_window_pa_s: [f64; 2],
    /// Largest accepted agglomerate fraction A at the end; [0, 1]. [C]
    pub max_agglomerate_frac: f64,
    /// Sample interval; (0, 3600]. [E]
    pub sample_interval_s: f64,
    /// Integration step (explicit Euler); (0, 3600], at most the sample interval. [E]
    pub integration_step_s: f64,
}

impl MixingParams {
    /// Anode defaults: graphite 0.955 / carbon black 0.010 / CMC-SBR 0.035, 50 wt % solids in
    /// water, 0.32 m³ (§0.7, §1.1).
    pub fn anode() -> Self {
        Self {
            am_mass_frac_dry: 0.955,
            ca_mass_frac_dry: 0.010,
            binder_mass_frac_dry: 0.035,
            solids_mass_frac: 0.50,
            slurry_volume_m3: 0.32,
            ..Self::cathode()
        }
    }

    /// Cathode defaults: NMC811 0.96 / carbon black 0.02 / PVDF 0.02, 70 wt % solids in NMP,
    /// 0.20 m³ (§0.7, §1.1).
    pub fn cathode() -> Self {
        Self {
            am_mass_frac_dry: 0.96,
            ca_mass_frac_dry: 0.02,
            binder_mass_frac_dry: 0.02,
            solids_mass_frac: 0.70,
            slurry_volume_m3: 0.20,
            impeller_diameter_m: 0.20,
            low_speed_rev_s: 4.0,
            high_speed_rev_s: 20.0,
            solvent_charge_s: 300.0,
            binder_addition_s: 900.0,
            binder_dissolution_s: 900.0,
            ca_addition_s: 600.0,
            am_addition_s: 1200.0,
            dispersion_s: 1800.0,
            degassing_s: 600.0,
            initial_temperature_degc: 20.0,
            jacket_temperature_degc: 20.0,
            jacket_ua_w_k: 250.0,
            max_temperature_degc: 40.0,
            viscosity_window_pa_s: [2.0, 8.0],
            max_agglomerate_frac: 0.07,
            sample_interval_s: 5.0,
            integration_step_s: 1.0,
        }
    }

    /// Defaults of a line (`Anode` or `Cathode`; the cell line has no mixer and gets the cathode's).
    pub fn for_line(line: Line) -> Self {
        match line {
            Line::Anode => Self::anode(),
            _ => Self::cathode(),
        }
    }

    /// Duration of one phase [s].
    pub fn phase_duration_s(&self, phase: MixingPhase) -> f64 {
        match phase {
            MixingPhase::SolventCharge => self.solvent_charge_s,
            MixingPhase::BinderAddition => self.binder_addition_s,
            MixingPhase::BinderDissolution => self.binder_dissolution_s,
            MixingPhase::CaAddition => self.ca_addition_s,
            MixingPhase::AmAddition => self.am_addition_s,
            MixingPhase::Dispersion => self.dispersion_s,
            MixingPhase::Degassing => self.degassing_s,
        }
    }

    /// Total batch duration, the sum of the phases in schedule order [s] (6 300 s by default).
    pub fn duration_s(&self) -> f64 {
        MixingPhase::ALL.iter().fold(0.0, |t, &p| t + self.phase_duration_s(p))
    }

    /// Impeller speed of a phase [rev/s].
    pub fn speed_rev_s(&self, phase: MixingPhase) -> f64 {
        if phase.high_speed() {
            self.high_speed_rev_s
        } else {
            self.low_speed_rev_s
        }
    }

    /// Target masses [AM, CA, binder, solvent] of the batch (§1.2 "Target masses") [kg].
    pub fn target_masses_kg(&self, recipe: &Recipe) -> [f64; 4] {
        let rho = densities_kg_m3(recipe);
        let v_spec = slurry_specific_volume_m3_kg(
            self.solids_mass_frac,
            [self.am_mass_frac_dry, self.ca_mass_frac_dry, self.binder_mass_frac_dry],
            rho,
        );
        let total = self.slurry_volume_m3 / v_spec;
        let solids = total * self.solids_mass_frac;
        [
            solids * self.am_mass_frac_dry,
            solids * self.ca_mass_frac_dry,
            solids * self.binder_mass_frac_dry,
            total * (1.0 - self.solids_mass_frac),
        ]
    }
}

impl Default for MixingParams {
    /// The cathode defaults.
    fn default() -> Self {
        Self::cathode()
    }
}

impl StageParams for MixingParams {
    fn validate(&self) -> Result<(), ParamError> {
        check_range("am_mass_frac_dry", self.am_mass_frac_dry, 0.0, 1.0, "")?;
        check_range("ca_mass_frac_dry", self.ca_mass_frac_dry, 0.0, 1.0, "")?;
        check_range("binder_mass_frac_dry", self.binder_mass_frac_dry, 0.0, 1.0, "")?;
        if self.am_mass_frac_dry < 0.5 {
            let mut e = ParamError::range("am_mass_frac_dry", self.am_mass_frac_dry, 0.5, 1.0, "");
            e.rule = "active material must be at least 0.5 of the dry mass".into();
            return Err(e);
        }
        let sum = self.am_mass_frac_dry + self.ca_mass_frac_dry + self.binder_mass_frac_dry;
        if (sum - 1.0).abs() > 1e-6 {
            return Err(ParamError::rule(
                "ca_mass_frac_dry",
                sum,
                "",
                format!("dry mass fractions am + ca + binder must sum to 1 (±1e-6), got {sum}"),
            ));
        }
        check_range("solids_mass_frac", self.solids_mass_frac, 0.20, 0.90, "")?;
        check_range("slurry_volume_m3", self.slurry_volume_m3, 0.001, 2.0, "m³")?;
        check_range("impeller_diameter_m", self.impeller_diameter_m, 0.02, 1.0, "m")?;
        check_range("low_speed_rev_s", self.low_speed_rev_s, 0.1, 60.0, "rev/s")?;
        check_range("high_speed_rev_s", self.high_speed_rev_s, 0.1, 60.0, "rev/s")?;
        if self.high_speed_rev_s < self.low_speed_rev_s {
            let mut e =
                ParamError::range("high_speed_rev_s", self.high_speed_rev_s, self.low_speed_rev_s, 60.0, "rev/s");
            e.rule = format!("must be at least low_speed_rev_s ({})", self.low_speed_rev_s);
            return Err(e);
        }
        check_open_min("solvent_charge_s", self.solvent_charge_s, 0.0, 36000.0, "s")?;
        check_open_min("binder_addition_s", self.binder_addition_s, 0.0, 36000.0, "s")?;
        check_range("binder_dissolution_s", self.binder_dissolution_s, 0.0, 36000.0, "s")?;
        check_open_min("ca_addition_s", self.ca_addition_s, 0.0, 36000.0, "s")?;
        check_open_min("am_addition_s", self.am_addition_s, 0.0, 36000.0, "s")?;
        check_range("dispersion_s", self.dispersion_s, 0.0, 36000.0, "s")?;
        check_range("degassing_s", self.degassing_s, 0.0, 36000.0, "s")?;
        check_range("initial_temperature_degc", self.initial_temperature_degc, 0.0, 80.0, "°C")?;
        check_range("jacket_temperature_degc", self.jacket_temperature_degc, 0.0, 80.0, "°C")?;
        check_range("jacket_ua_w_k", self.jacket_ua_w_k, 0.0, 1e5, "W/K")?;
        check_range("max_temperature_degc", self.max_temperature_degc, 10.0, 90.0, "°C")?;
        let [lo, hi] = self.viscosity_window_pa_s;
        check_non_negative("viscosity_window_pa_s", lo, "Pa·s")?;
        if !(hi.is_finite() && lo < hi) {
            return Err(ParamError::rule(
                "viscosity_window_pa_s",
                hi,
                "Pa·s",
                format!(
                    "window minimum must be below its maximum, got [{}, {}]",
                    crate::error::fmt_num(lo),
                    crate::error::fmt_num(hi)
                ),
            ));
        }
        check_range("max_agglomerate_frac", self.max_agglomerate_frac, 0.0, 1.0, "")?;
        check_open_min("sample_interval_s", self.sample_interval_s, 0.0, 3600.0, "s")?;
        check_open_min("integration_step_s", self.integration_step_s, 0.0, 3600.0, "s")?;
        if self.integration_step_s > self.sample_interval_s {
            let mut e =
                ParamError::range("integration_step_s", self.integration_step_s, 0.0, self.sample_interval_s, "s");
            e.rule = format!("must not exceed sample_interval_s ({})", self.sample_interval_s);
            return Err(e);
        }
        Ok(())
    }
}

/// Converts a legacy `POST /start-both` recipe (volume fractions `AM`, `CA`, `PVDF`,
/// `Solvent` of a 200 L tank) into mixing parameters and the line's recipe (MODELS.md §1.6):
/// `m_i = 0.2·r_i·ρ_i`, solids mass fraction and dry fractions from those masses,
/// `slurry_volume_m3 = 0.2`, every other setting the line's default.
///
/// Each fraction must lie in [0, 1] and the four must sum to 1 ± 1e-4; the converted
/// parameters are then validated (the prototype's defaults, 75–89 wt % solids pastes, pass
/// and make the mixer report `MIX_NOT_FLOWABLE`).
pub fn params_from_volume_fractions(
    line: Line,
    am: f64,
    ca: f64,
    binder: f64,
    solvent: f64,
) -> Result<(MixingParams, Recipe), ParamError> {
    let (params, recipe) = match line {
        Line::Anode => (MixingParams::anode(), Recipe::anode()),
        Line::Cathode => (MixingParams::cathode(), Recipe::cathode()),
        Line::Cell => {
            return Err(ParamError::rule("electrode_type", f64::NAN, "", "must be Anode or Cathode"));
        }
    };
    for (field, r) in [("AM", am), ("CA", ca), ("PVDF", binder), ("Solvent", solvent)] {
        check_range(field, r, 0.0, 1.0, "")?;
    }
    let sum = am + ca + binder + solvent;
    if (sum - 1.0).abs() > 1e-4 {
        return Err(ParamError::rule(
            "Solvent",
            sum,
            "",
            format!("volume fractions AM + CA + PVDF + Solvent must sum to 1 (±1e-4), got {sum}"),
        ));
    }
    const TANK_M3: f64 = 0.2;
    let rho = densities_kg_m3(&recipe);
    let fractions = [am, ca, binder, solvent];
    let m: [f64; 4] = std::array::from_fn(|i| TANK_M3 * fractions[i] * rho[i]);
    let solids = m[AM] + m[CA] + m[BINDER];
    let total = solids + m[SOLVENT];
    if solids <= 0.0 {
        return Err(ParamError::range("solids_mass_frac", 0.0, 0.20, 0.90, ""));
    }
    let params = MixingParams {
        am_mass_frac_dry: m[AM] / solids,
        ca_mass_frac_dry: m[CA] / solids,
        binder_mass_frac_dry: m[BINDER] / solids,
        solids_mass_frac: solids / total,
        slurry_volume_m3: TANK_M3,
        ..params
    };
    params.validate()?;
    Ok((params, recipe))
}

// ---------------------------------------------------------------------------------------------
// Physics (§1.2), pure functions
// ---------------------------------------------------------------------------------------------

/// Index of active material in the component arrays [AM, CA, binder, solvent].
const AM: usize = 0;
/// Index of the conductive additive.
const CA: usize = 1;
/// Index of the binder.
const BINDER: usize = 2;
/// Index of the solvent.
const SOLVENT: usize = 3;

/// Density of the four recipe materials [AM, CA, binder, solvent] (§0.7) [kg/m³].
fn densities_kg_m3(recipe: &Recipe) -> [f64; 4] {
    [recipe.active_material, recipe.conductive_additive, recipe.binder, recipe.solvent].map(|m| m.density_kg_m3())
}

/// Specific heat of the four recipe materials (§0.7) [J/(kg·K)].
fn heat_capacities_j_kg_k(recipe: &Recipe) -> [f64; 4] {
    [recipe.active_material, recipe.conductive_additive, recipe.binder, recipe.solvent]
        .map(|m| m.heat_capacity_j_kg_k())
}

/// Slurry specific volume `v_spec = w_s·Σ w_i/ρ_i + (1 − w_s)/ρ_solv` (MODELS.md §1.2) [m³/kg].
pub fn slurry_specific_volume_m3_kg(solids_mass_frac: f64, dry_fracs: [f64; 3], densities_kg_m3: [f64; 4]) -> f64 {
    let dry: f64 = dry_fracs.iter().zip(densities_kg_m3).map(|(w, rho)| w / rho).sum();
    solids_mass_frac * dry + (1.0 - solids_mass_frac) / densities_kg_m3[SOLVENT]
}

/// Arrhenius factor of viscosity `exp((E_a/R)·(1/T_K − 1/298.15))`: 1 at 25 °C, above 1
/// when colder (MODELS.md §1.2 step 3).
pub fn viscosity_temperature_factor(activation_energy_j_mol: f64, temperature_degc: f64) -> f64 {
    ((activation_energy_j_mol / GAS_CONSTANT_J_MOL_K)
        * (1.0 / kelvin(temperature_degc) - 1.0 / REFERENCE_TEMPERATURE_K))
        .exp()
}

/// Binder-solution (medium) viscosity at 25 °C `min(η_solv·exp(α_b·w_bl), η_m,max)`
/// (MODELS.md §1.2 step 3) [Pa·s]; multiply by [`viscosity_temperature_factor`].
pub fn medium_viscosity_pa_s(
    solvent_viscosity_pa_s: f64,
    binder_viscosity_coeff: f64,
    max_medium_viscosity_pa_s: f64,
    binder_solution_frac: f64,
) -> f64 {
    (solvent_viscosity_pa_s * (binder_viscosity_coeff * binder_solution_frac).exp()).min(max_medium_viscosity_pa_s)
}

/// Krieger–Dougherty zero-shear viscosity `η₀ = η_m·(1 − min(φ/φ_m, 0.98))^(−[η]·φ_m)`
/// (Krieger & Dougherty 1959; MODELS.md §1.2 step 5) [Pa·s].
pub fn krieger_dougherty_pa_s(
    medium_viscosity_pa_s: f64,
    effective_particle_frac: f64,
    max_packing_frac: f64,
    intrinsic_viscosity: f64,
) -> f64 {
    let packing = (effective_particle_frac / max_packing_frac).min(NOT_FLOWABLE_PACKING_RATIO);
    medium_viscosity_pa_s * (1.0 - packing).powf(-intrinsic_viscosity * max_packing_frac)
}

/// Cross shear thinning `η(γ̇) = η₀·(r_∞ + (1 − r_∞)/(1 + (λ·γ̇)^m))` (Cross 1965;
/// MODELS.md §1.2 step 6) [Pa·s].
pub fn cross_viscosity_pa_s(
    zero_shear_viscosity_pa_s: f64,
    shear_rate_per_s: f64,
    time_constant_s: f64,
    exponent: f64,
    inf_ratio: f64,
) -> f64 {
    zero_shear_viscosity_pa_s
        * (inf_ratio + (1.0 - inf_ratio) / (1.0 + (time_constant_s * shear_rate_per_s).powf(exponent)))
}

/// Dissolver shaft power `P = N_p·ρ·n³·d⁵` with `N_p = N_t + K_p/Re`, `Re = ρ·n·d²/η`
/// (MODELS.md §1.2 step 7), written as `N_t·ρ·n³·d⁵ + K_p·η·n²·d³` (the same expression
/// without dividing by Re, so an empty tank gives 0) [W]. `η` is taken at the
/// Metzner–Otto shear rate `k_s·n` (Metzner & Otto 1957).
pub fn dissolver_power_w(
    density_kg_m3: f64,
    speed_rev_s: f64,
    diameter_m: f64,
    viscosity_pa_s: f64,
    power_number: f64,
    laminar_power_constant: f64,
) -> f64 {
    let (n, d) = (speed_rev_s, diameter_m);
    power_number * density_kg_m3 * n.powi(3) * d.powi(5) + laminar_power_constant * viscosity_pa_s * n * n * d.powi(3)
}

/// YODEL yield stress `τ_y = m₁·φ·(φ − φ₀)²/(φ_m·(φ_m − φ_c))`, `φ_c = min(φ, 0.98·φ_m)`,
/// zero below the percolation threshold φ₀ (Flatt & Bowen 2006; MODELS.md §1.2 step 11) [Pa].
pub fn yodel_yield_stress_pa(
    yield_prefactor_pa: f64,
    effective_particle_frac: f64,
    percolation_frac: f64,
    max_packing_frac: f64,
) -> f64 {
    let phi = effective_particle_frac;
    if phi <= percolation_frac {
        return 0.0;
    }
    let phi_c = phi.min(NOT_FLOWABLE_PACKING_RATIO * max_packing_frac);
    yield_prefactor_pa * phi * (phi - percolation_frac).powi(2) / (max_packing_frac * (max_packing_frac - phi_c))
}

/// φ_eff/φ_m at which the slurry stops flowing (Krieger–Dougherty cap, `MIX_NOT_FLOWABLE`).
pub const NOT_FLOWABLE_PACKING_RATIO: f64 = 0.98;
/// Shear rate at which viscosity is reported and accepted [1/s].
pub const REFERENCE_SHEAR_RATE_PER_S: f64 = 10.0;
/// Share of the slurry left in the tank heel and lines (§1.5). [E]
pub const HOLDUP_FRAC: f64 = 0.05;
/// Dissolved-binder fraction below which `MIX_BINDER_UNDISSOLVED` is raised.
pub const MIN_BINDER_DISSOLVED_FRAC: f64 = 0.98;
/// Solids mass-fraction deviation above which `MIX_SOLIDS_DEVIATION` is raised.
pub const MAX_SOLIDS_DEVIATION_FRAC: f64 = 0.005;
/// Air fraction above which `MIX_AIR_HIGH` is raised.
pub const MAX_AIR_VOLUME_FRAC: f64 = 0.01;

/// Coriolis density loop (§1.2).
const DENSITY_SENSOR: Sensor = Sensor::relative(0.002);
/// In-line viscometer.
const VISCOSITY_SENSOR: Sensor = Sensor::relative(0.03);
/// Tank thermometer.
const TEMPERATURE_SENSOR: Sensor = Sensor::absolute(0.2);
/// Shaft-power meter.
const POWER_SENSOR: Sensor = Sensor::relative(0.01);
/// Yield stress is a lab value.
const YIELD_STRESS_SENSOR: Sensor = Sensor::relative(0.10);
/// Load cells of the dosing units.
const MASS_SENSOR: Sensor = Sensor::absolute(0.05);

// ---------------------------------------------------------------------------------------------
// Phase schedule
// ---------------------------------------------------------------------------------------------

/// A phase of the dissolver schedule (§1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MixingPhase {
    /// Solvent charged at low speed.
    SolventCharge,
    /// Binder powder added at low speed.
    BinderAddition,
    /// Binder dissolves at high speed.
    BinderDissolution,
    /// Conductive additive added at low speed.
    CaAddition,
    /// Active material added at low speed.
    AmAddition,
    /// High-speed dispersion.
    Dispersion,
    /// Vacuum degassing at low speed.
    Degassing,
}

impl MixingPhase {
    /// The schedule, in order.
    pub const ALL: [MixingPhase; 7] = [
        MixingPhase::SolventCharge,
        MixingPhase::BinderAddition,
        MixingPhase::BinderDissolution,
        MixingPhase::CaAddition,
        MixingPhase::AmAddition,
        MixingPhase::Dispersion,
        MixingPhase::Degassing,
    ];

    /// Index of the component this phase doses, if any.
    fn adds(self) -> Option<usize> {
        match self {
            MixingPhase::SolventCharge => Some(SOLVENT),
            MixingPhase::BinderAddition => Some(BINDER),
            MixingPhase::CaAddition => Some(CA),
            MixingPhase::AmAddition => Some(AM),
            _ => None,
        }
    }

    /// True for the high-speed phases (binder dissolution, dispersion).
    pub fn high_speed(self) -> bool {
        matches!(self, MixingPhase::BinderDissolution | MixingPhase::Dispersion)
    }

    /// True for the powder additions, which entrain air.
    fn entrains_air(self) -> bool {
        matches!(self, MixingPhase::BinderAddition | MixingPhase::CaAddition | MixingPhase::AmAddition)
    }
}

/// One phase placed on the stage clock.
#[derive(Clone, Copy, Debug)]
struct PhaseSpan {
    phase: MixingPhase,
    start_s: f64,
    end_s: f64,
    speed_rev_s: f64,
}

/// The schedule with start and end times (prefix sums in schedule order, so the last end
/// equals [`MixingParams::duration_s`] bit for bit).
fn schedule(params: &MixingParams) -> [PhaseSpan; 7] {
    let mut t = 0.0;
    MixingPhase::ALL.map(|phase| {
        let start_s = t;
        t += params.phase_duration_s(phase);
        PhaseSpan { phase, start_s, end_s: t, speed_rev_s: params.speed_rev_s(phase) }
    })
}

// ---------------------------------------------------------------------------------------------
// Tank state and the step of §1.2
// ---------------------------------------------------------------------------------------------

/// The integrated state of the tank.
#[derive(Clone, Copy, Debug)]
struct TankState {
    /// Masses [AM, CA, binder, solvent] [kg].
    mass_kg: [f64; 4],
    /// Dissolved binder fraction f.
    dissolved_frac: f64,
    /// Agglomerate fraction A (1 until carbon black is present).
    agglomerate_frac: f64,
    /// Specific energy since carbon black entered E_CB [J/m³].
    specific_energy_j_m3: f64,
    /// Temperature T [°C].
    temperature_degc: f64,
    /// Entrained-air volume fraction a.
    air_frac: f64,
}

/// Quantities derived from the state at one temperature (§1.2 steps 1, 3–5).
#[derive(Clone, Copy, Debug, Default)]
struct TankProps {
    /// Component volumes [m³].
    volume_m3: [f64; 4],
    /// Air-free volume [m³].
    total_volume_m3: f64,
    /// Total mass [kg].
    total_mass_kg: f64,
    /// Air-free density [kg/m³] (0 for an empty tank).
    density_kg_m3: f64,
    /// Effective particle fraction φ_eff.
    effective_particle_frac: f64,
    /// Zero-shear viscosity η₀ [Pa·s] (0 for an empty tank).
    zero_shear_viscosity_pa_s: f64,
}

/// The dissolver of one batch: parameters, recipe and precomputed constants.
struct Dissolver<'a> {
    params: &'a MixingParams,
    recipe: &'a Recipe,
    density_kg_m3: [f64; 4],
    heat_capacity_j_kg_k: [f64; 4],
    target_kg: [f64; 4],
    solvent_viscosity_pa_s: f64,
    faults: &'a FaultSet,
    /// Per component: the F02 dose factor and whether its load cell sees it.
    dose: [(f64, bool); 4],
}

impl<'a> Dissolver<'a> {
    /// The dissolver with the mixing faults of §13: F02 scales the dosed mass of one
    /// component when its addition phase overlaps the fault; F01 scales the shaft power or
    /// the dispersion energy while active.
    fn with_faults(params: &'a MixingParams, recipe: &'a Recipe, faults: &'a FaultSet) -> Self {
        let solvent_viscosity_pa_s = recipe.solvent.solvent().map_or(1e-3, |s| s.viscosity_pa_s);
        let mut target_kg = params.target_masses_kg(recipe);
        let mut dose = [(1.0, true); 4];
        for f in faults.of(FaultCode::F02MixDosingError) {
            let m = &f.spec.magnitude;
            let i = match m.component.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("ca") => CA,
                Some("binder") => BINDER,
                Some("solvent") => SOLVENT,
                _ => AM,
            };
            let phase = schedule(params).into_iter().find(|s| s.phase.adds() == Some(i));
            if let Some(span) = phase {
                if f.spec.onset < span.end_s && f.spec.end() > span.start_s {
                    let factor = m.dose_factor.unwrap_or(0.97);
                    target_kg[i] *= factor;
                    dose[i] = (dose[i].0 * factor, dose[i].1 && f.spec.sensor_visible);
                    faults.touch(f.label_id, At { stage_time_s: span.start_s.max(f.spec.onset), ..At::default() });
                }
            }
        }
        Self {
            params,
            recipe,
            density_kg_m3: densities_kg_m3(recipe),
            heat_capacity_j_kg_k: heat_capacities_j_kg_k(recipe),
            target_kg,
            solvent_viscosity_pa_s,
            faults,
            dose,
        }
    }

    /// F01 factors at stage time `t_s`: (shaft power, dispersion energy).
    fn dispersion_factors(&self, t_s: f64) -> (f64, f64) {
        let (mut power, mut energy) = (1.0, 1.0);
        for f in self.faults.of(FaultCode::F01MixUnderDispersion) {
            let level = f.spec.level(t_s);
            if level > 0.0 {
                let m = &f.spec.magnitude;
                if let Some(e) = m.dispersion_energy_factor {
                    energy *= 1.0 + level * (e - 1.0);
                }
                if m.power_factor.is_some() || m.dispersion_energy_factor.is_none() {
                    power *= 1.0 - level * (1.0 - m.power_factor.unwrap_or(0.3));
                }
            }
        }
        (power, energy)
    }

    fn initial_state(&self) -> TankState {
        TankState {
            mass_kg: [0.0; 4],
            dissolved_frac: 0.0,
            agglomerate_frac: 1.0,
            specific_energy_j_m3: 0.0,
            temperature_degc: self.params.initial_temperature_degc,
            air_frac: 0.0,
        }
    }

    /// Volumes, density, φ_eff and η₀ of the state at `temperature_degc` (steps 1, 3–5).
    fn props(&self, s: &TankState, temperature_degc: f64) -> TankProps {
        let r = self.recipe;
        let mut volume_m3 = [0.0; 4];
        for (i, v) in volume_m3.iter_mut().enumerate() {
            *v = s.mass_kg[i] / self.density_kg_m3[i];
        }
        let total_volume_m3: f64 = volume_m3.iter().sum();
        let total_mass_kg: f64 = s.mass_kg.iter().sum();
        if total_volume_m3 <= 0.0 {
            return TankProps { volume_m3, ..TankProps::default() };
        }
        // step 3: binder solution
        let dissolved_binder = s.dissolved_frac * s.mass_kg[BINDER];
        let solution = dissolved_binder + s.mass_kg[SOLVENT];
        let binder_solution_frac = if solution > 0.0 { dissolved_binder / solution } else { 0.0 };
        let medium = medium_viscosity_pa_s(
            self.solvent_viscosity_pa_s,
            r.binder_viscosity_coeff,
            r.max_medium_viscosity_pa_s,
            binder_solution_frac,
        ) * viscosity_temperature_factor(r.viscosity_activation_energy_j_mol, temperature_degc);
        // step 4: effective particle fraction (carbon black occludes liquid)
        let k_cb = r.cb_volume_factor_dispersed
            + (r.cb_volume_factor_agglomerated - r.cb_volume_factor_dispersed) * s.agglomerate_frac;
        let effective_particle_frac =
            (volume_m3[AM] + k_cb * volume_m3[CA] + (1.0 - s.dissolved_frac) * volume_m3[BINDER]) / total_volume_m3;
        // step 5: Krieger–Dougherty
        let zero_shear_viscosity_pa_s =
            krieger_dougherty_pa_s(medium, effective_particle_frac, r.max_packing_frac, r.intrinsic_viscosity);
        TankProps {
            volume_m3,
            total_volume_m3,
            total_mass_kg,
            density_kg_m3: total_mass_kg / total_volume_m3,
            effective_particle_frac,
            zero_shear_viscosity_pa_s,
        }
    }

    /// Cross viscosity of the state at a shear rate (step 6) [Pa·s].
    fn viscosity_pa_s(&self, props: &TankProps, shear_rate_per_s: f64) -> f64 {
        let r = self.recipe;
        cross_viscosity_pa_s(
            props.zero_shear_viscosity_pa_s,
            shear_rate_per_s,
            r.cross_time_constant_s,
            r.cross_exponent,
            r.cross_inf_ratio,
        )
    }

    /// Shaft power at speed n (step 7) [W].
    fn power_w(&self, s: &TankState, props: &TankProps, speed_rev_s: f64) -> f64 {
        let r = self.recipe;
        let eta = self.viscosity_pa_s(props, r.metzner_otto_constant * speed_rev_s);
        let apparent_density = props.density_kg_m3 * (1.0 - s.air_frac);
        dissolver_power_w(
            apparent_density,
            speed_rev_s,
            self.params.impeller_diameter_m,
            eta,
            r.power_number,
            r.laminar_power_constant,
        )
    }

    /// One integration step of §1.2 ending at stage time `t_end_s`, of length `dt_s`, inside
    /// `span`. Returns the shaft power of the step [W].
    ///
    /// The explicit first-order relaxations (binder dissolution, jacket cooling, air) move at
    /// most the whole distance to their target in one step; with the default 1 s step the
    /// limit never acts, it only keeps long steps stable. [E]
    fn step(&self, s: &mut TankState, span: &PhaseSpan, t_end_s: f64, dt_s: f64) -> f64 {
        let (p, r) = (self.params, self.recipe);
        let n = span.speed_rev_s;
        // 1. dosing at a constant rate m*/duration (computed from the phase clock, not summed)
        if let Some(i) = span.phase.adds() {
            let progress =
                if t_end_s >= span.end_s { 1.0 } else { (t_end_s - span.start_s) / (span.end_s - span.start_s) };
            s.mass_kg[i] = self.target_kg[i] * progress.clamp(0.0, 1.0);
        }
        // 2. binder dissolution
        if s.mass_kg[BINDER] > 0.0 {
            let k = (dt_s * (n / p.high_speed_rev_s) / r.dissolution_time_s).min(1.0);
            s.dissolved_frac += k * (1.0 - s.dissolved_frac);
        }
        // 3.–5. rheology at the current temperature, 6.–7. power
        let props = self.props(s, s.temperature_degc);
        let (power_factor, energy_factor) = self.dispersion_factors(t_end_s);
        let power_w = self.power_w(s, &props, n) * power_factor;
        // 8. dispersion of carbon black by specific energy
        if s.mass_kg[CA] > 0.0 && props.total_volume_m3 > 0.0 {
            s.specific_energy_j_m3 += power_w * dt_s / props.total_volume_m3;
            s.agglomerate_frac = (-s.specific_energy_j_m3 / (r.dispersion_energy_j_m3 * energy_factor)).exp();
        }
        // 9. energy balance with the jacket
        let heat_capacity_j_k: f64 = s.mass_kg.iter().zip(self.heat_capacity_j_kg_k).map(|(m, c)| m * c).sum();
        if heat_capacity_j_k > 0.0 {
            let cooling = (dt_s * p.jacket_ua_w_k / heat_capacity_j_k).min(1.0);
            s.temperature_degc +=
                dt_s * power_w / heat_capacity_j_k - cooling * (s.temperature_degc - p.jacket_temperature_degc);
        }
        // 10. entrained air: powder additions entrain, vacuum degassing removes
        if span.phase.entrains_air() {
            let k = (dt_s / r.air_entrainment_time_s).min(1.0);
            s.air_frac += k * (r.air_mix_frac - s.air_frac);
        } else if span.phase == MixingPhase::Degassing {
            let k = (dt_s / r.degassing_time_s).min(1.0);
            s.air_frac += k * (r.air_vacuum_frac - s.air_frac);
        }
        // 11. the yield stress feeds nothing back; it is evaluated from the state when reported.
        power_w
    }

    /// The sample of the state after the step that ended at `stage_time_s`.
    fn sample(
        &self,
        s: &TankState,
        span: &PhaseSpan,
        stage_time_s: f64,
        defect_risk: bool,
        ctx: &mut StageCtx<'_>,
    ) -> MixingSample {
        let r = self.recipe;
        let props = self.props(s, s.temperature_degc);
        let viscosity = self.viscosity_pa_s(&props, REFERENCE_SHEAR_RATE_PER_S);
        let yield_stress = yodel_yield_stress_pa(
            r.yield_prefactor_pa,
            props.effective_particle_frac,
            r.percolation_frac,
            r.max_packing_frac,
        );
        let power = self.power_w(s, &props, span.speed_rev_s) * self.dispersion_factors(stage_time_s).0;
        let solids_kg = s.mass_kg[AM] + s.mass_kg[CA] + s.mass_kg[BINDER];
        let solids_m3 = props.volume_m3[AM] + props.volume_m3[CA] + props.volume_m3[BINDER];
        let (noise, rng) = (ctx.sensor_noise, &mut *ctx.sensor_rng);
        let mut masses = s.mass_kg;
        for (m, (factor, visible)) in masses.iter_mut().zip(self.dose) {
            // a silent dosing error: the load cell reports the recipe amount
            if !visible && factor > 0.0 {
                *m /= factor;
            }
        }
        let [am_mass, ca_mass, binder_mass, solvent_mass] = masses.map(|m| MASS_SENSOR.measure(m, noise, rng));
        let apparent_density = DENSITY_SENSOR.measure(props.density_kg_m3 * (1.0 - s.air_frac), noise, rng);
        let viscosity = VISCOSITY_SENSOR.measure(viscosity, noise, rng);
        let yield_stress = YIELD_STRESS_SENSOR.measure(yield_stress, noise, rng);
        let temperature = TEMPERATURE_SENSOR.measure(s.temperature_degc, noise, rng);
        let power = POWER_SENSOR.measure(power, noise, rng);
        let faults = ctx.faults;
        let [am_mass, ca_mass, binder_mass, solvent_mass] = [
            faults.corrupt("am_mass_kg", stage_time_s, am_mass),
            faults.corrupt("ca_mass_kg", stage_time_s, ca_mass),
            faults.corrupt("binder_mass_kg", stage_time_s, binder_mass),
            faults.corrupt("solvent_mass_kg", stage_time_s, solvent_mass),
        ];
        let apparent_density = faults.corrupt("apparent_density_kg_m3", stage_time_s, apparent_density);
        let viscosity = faults.corrupt("viscosity_pa_s", stage_time_s, viscosity);
        let yield_stress = faults.corrupt("yield_stress_pa", stage_time_s, yield_stress);
        let temperature = faults.corrupt("temperature_degc", stage_time_s, temperature);
        let power = faults.corrupt("shaft_power_w", stage_time_s, power);
        MixingSample {
            t_s: ctx.start_t_s + stage_time_s,
            stage_time_s,
            phase: span.phase,
            impeller_speed_rev_s: span.speed_rev_s,
            am_volume_m3: props.volume_m3[AM],
            ca_volume_m3: props.volume_m3[CA],
            binder_volume_m3: props.volume_m3[BINDER],
            solvent_volume_m3: props.volume_m3[SOLVENT],
            am_mass_kg: am_mass,
            ca_mass_kg: ca_mass,
            binder_mass_kg: binder_mass,
            solvent_mass_kg: solvent_mass,
            solids_mass_frac: ratio(solids_kg, props.total_mass_kg),
            solids_volume_frac: ratio(solids_m3, props.total_volume_m3),
            apparent_density_kg_m3: apparent_density,
            viscosity_pa_s: viscosity,
            yield_stress_pa: yield_stress,
            temperature_degc: temperature,
            shaft_power_w: power,
            specific_energy_j_m3: s.specific_energy_j_m3,
            agglomerate_frac: s.agglomerate_frac,
            dispersion_index_frac: 1.0 - s.agglomerate_frac,
            binder_dissolved_frac: s.dissolved_frac,
            air_volume_frac: s.air_frac,
            defect_risk,
            fault_labels: faults.labels_at(stage_time_s, None),
            legacy_solvent_key: r.solvent.legacy_solvent_key(),
        }
    }
}

/// `a/b`, 0 when b is 0 (empty tank).
#[inline]
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// Edge detector of a "value above threshold" alarm with the 2 % clearing hysteresis of
/// §0.5, kept locally so that the tracker (which formats keys) is only called on an edge.
#[derive(Clone, Copy, Debug, Default)]
struct HighEdge {
    active: bool,
}

impl HighEdge {
    /// True when `value` against `threshold` changes the alarm state.
    #[inline]
    fn changes(&mut self, value: f64, threshold: f64) -> bool {
        let now = if self.active {
            value >= threshold - crate::alarm::HYSTERESIS_FRAC * threshold.abs()
        } else {
            value > threshold
        };
        let changed = now != self.active;
        self.active = now;
        changed
    }
}

// ---------------------------------------------------------------------------------------------
// Samples and result (§1.3)
// ---------------------------------------------------------------------------------------------

/// One mixing sample: the tank after the step that ended at `stage_time_s` (§1.3).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MixingSample {
    /// Plant time [s].
    pub t_s: f64,
    /// Stage time [s].
    pub stage_time_s: f64,
    /// Phase of the step that ended at this time.
    pub phase: MixingPhase,
    /// Impeller speed [rev/s].
    pub impeller_speed_rev_s: f64,
    /// Active-material volume [m³].
    pub am_volume_m3: f64,
    /// Conductive-additive volume [m³].
    pub ca_volume_m3: f64,
    /// Binder volume [m³].
    pub binder_volume_m3: f64,
    /// Solvent volume [m³].
    pub solvent_volume_m3: f64,
    /// Active-material mass (load cell) [kg].
    pub am_mass_kg: Reading,
    /// Conductive-additive mass (load cell) [kg].
    pub ca_mass_kg: Reading,
    /// Binder mass (load cell) [kg].
    pub binder_mass_kg: Reading,
    /// Solvent mass (load cell) [kg].
    pub solvent_mass_kg: Reading,
    /// Solids mass fraction.
    pub solids_mass_frac: f64,
    /// Solids volume fraction (air-free).
    pub solids_volume_frac: f64,
    /// Density with entrained air ρ·(1 − a) (Coriolis loop) [kg/m³].
    pub apparent_density_kg_m3: Reading,
    /// Viscosity at 10 1/s and the tank temperature (in-line viscometer) [Pa·s].
    pub viscosity_pa_s: Reading,
    /// YODEL yield stress (lab) [Pa].
    pub yield_stress_pa: Reading,
    /// Tank temperature [°C].
    pub temperature_degc: Reading,
    /// Shaft power [W].
    pub shaft_power_w: Reading,
    /// Specific energy since carbon black entered E_CB [J/m³].
    pub specific_energy_j_m3: f64,
    /// Agglomerate fraction A.
    pub agglomerate_frac: f64,
    /// Dispersion index 1 − A.
    pub dispersion_index_frac: f64,
    /// Dissolved binder fraction f.
    pub binder_dissolved_frac: f64,
    /// Entrained-air volume fraction a.
    pub air_volume_frac: f64,
    /// Any Warning+ alarm of this stage active at this instant (legacy `defect_risk`).
    pub defect_risk: bool,
    /// Fault labels active on this sample.
    pub fault_labels: Vec<u32>,
    /// Legacy key of the solvent volume (`H2O` / `NMP`).
    #[serde(skip)]
    pub legacy_solvent_key: &'static str,
}

impl SampleRecord for MixingSample {
    fn stage_time_s(&self) -> f64 {
        self.stage_time_s
    }

    /// `AM`, `CA`, `PVDF`, `H2O`|`NMP` (litres), `Density` (g/cm³), `Viscosity` (Pa·s),
    /// `YieldStress` (Pa) (MODELS.md §1.6).
    fn legacy(&self, out: &mut LegacyRecord) {
        put(out, "AM", self.am_volume_m3 * 1000.0);
        put(out, "CA", self.ca_volume_m3 * 1000.0);
        put(out, "PVDF", self.binder_volume_m3 * 1000.0);
        put(out, self.legacy_solvent_key, self.solvent_volume_m3 * 1000.0);
        put(out, "Density", self.apparent_density_kg_m3.value() / 1000.0);
        put(out, "Viscosity", self.viscosity_pa_s.value());
        put(out, "YieldStress", self.yield_stress_pa.value());
    }
}

/// The final result of one mixing batch (§1.3): the state after the last step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MixingResult {
    /// Active-material mass [kg].
    pub am_mass_kg: f64,
    /// Conductive-additive mass [kg].
    pub ca_mass_kg: f64,
    /// Binder mass [kg].
    pub binder_mass_kg: f64,
    /// Solvent mass [kg].
    pub solvent_mass_kg: f64,
    /// Slurry mass [kg].
    pub slurry_mass_kg: f64,
    /// Active-material volume [m³].
    pub am_volume_m3: f64,
    /// Conductive-additive volume [m³].
    pub ca_volume_m3: f64,
    /// Binder volume [m³].
    pub binder_volume_m3: f64,
    /// Solvent volume [m³].
    pub solvent_volume_m3: f64,
    /// Air-free slurry volume [m³].
    pub volume_m3: f64,
    /// Air-free density [kg/m³].
    pub density_kg_m3: f64,
    /// Density with the remaining air ρ·(1 − a) [kg/m³].
    pub apparent_density_kg_m3: f64,
    /// Dry composite density [kg/m³].
    pub solid_density_kg_m3: f64,
    /// Solids mass fraction.
    pub solids_mass_frac: f64,
    /// Solids volume fraction.
    pub solids_volume_frac: f64,
    /// Effective particle fraction φ_eff (carbon black counted with its occluded liquid).
    pub effective_particle_frac: f64,
    /// Zero-shear viscosity at 25 °C [Pa·s].
    pub zero_shear_viscosity_pa_s: f64,
    /// Viscosity at 10 1/s and 25 °C (acceptance) [Pa·s].
    pub viscosity_ref_pa_s: f64,
    /// Viscosity at 10 1/s and the end temperature [Pa·s].
    pub viscosity_end_pa_s: f64,
    /// Yield stress [Pa].
    pub yield_stress_pa: f64,
    /// Agglomerate fraction A.
    pub agglomerate_frac: f64,
    /// Dissolved binder fraction f.
    pub binder_dissolved_frac: f64,
    /// Entrained-air volume fraction a.
    pub air_volume_frac: f64,
    /// Temperature at the end [°C].
    pub temperature_end_degc: f64,
    /// Highest temperature of the batch [°C].
    pub temperature_max_degc: f64,
    /// Shaft energy ∫P dt [J].
    pub shaft_energy_j: f64,
    /// Batch duration [s].
    pub duration_s: f64,
    /// No alarm of severity ≥ Alarm was raised (§1.4).
    pub accepted: bool,
    /// Every alarm event of the run.
    pub alarms: Vec<Alarm>,
    /// Legacy key of the solvent volume (`H2O` / `NMP`).
    #[serde(skip)]
    pub legacy_solvent_key: &'static str,
}

impl ResultRecord for MixingResult {
    /// `"Final Composition"` (volumes in litres) and `"Final Properties"` (`Density` g/cm³ of
    /// the apparent density, `Viscosity` at the end temperature, `YieldStress`) (§1.6).
    fn legacy(&self, out: &mut LegacyRecord) {
        put_object(out, "Final Composition", |c| {
            put(c, "AM", self.am_volume_m3 * 1000.0);
            put(c, "CA", self.ca_volume_m3 * 1000.0);
            put(c, "PVDF", self.binder_volume_m3 * 1000.0);
            put(c, self.legacy_solvent_key, self.solvent_volume_m3 * 1000.0);
        });
        put_object(out, "Final Properties", |p| {
            put(p, "Density", self.apparent_density_kg_m3 / 1000.0);
            put(p, "Viscosity", self.viscosity_end_pa_s);
            put(p, "YieldStress", self.yield_stress_pa);
        });
    }

    fn accepted(&self) -> bool {
        self.accepted
    }

    fn summary(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("slurry mass kg", self.slurry_mass_kg),
            ("density kg/m3", self.density_kg_m3),
            ("viscosity 10/s 25 °C Pa·s", self.viscosity_ref_pa_s),
            ("yield stress Pa", self.yield_stress_pa),
            ("agglomerate frac", self.agglomerate_frac),
            ("end temperature °C", self.temperature_end_degc),
            ("shaft energy MJ", self.shaft_energy_j / 1e6),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// The stage
// ---------------------------------------------------------------------------------------------

/// The mixing stage (MODELS.md §1): `Recipe` in, `Slurry` out.
pub struct Mixing;

impl Stage for Mixing {
    const KIND: StageKind = StageKind::Mixing;
    type Params = MixingParams;
    type Input = Recipe;
    type Output = Slurry;
    type Sample = MixingSample;
    type Result = MixingResult;
    type MachineState = ();

    fn run(
        params: &MixingParams,
        recipe: Recipe,
        _machine: &mut (),
        ctx: &mut StageCtx<'_>,
        sink: &mut dyn StageSink<MixingSample>,
    ) -> StageRun<Slurry, MixingResult> {
        let tank = Dissolver::with_faults(params, &recipe, ctx.faults);
        let spans = schedule(params);
        let duration_s = params.duration_s();
        let dt = params.integration_step_s;
        let mut tracker = AlarmTracker::new(Self::KIND, ctx.line, ctx.start_t_s);
        let mut forwarded = 0;
        let (mut overtemperature, mut air_high) = (HighEdge::default(), HighEdge::default());

        let mut s = tank.initial_state();
        let mut span_idx = 0;
        let mut t_s = 0.0;
        let mut shaft_energy_j = 0.0;
        let mut temperature_max_degc = s.temperature_degc;

        for ts in sample_times(duration_s, params.sample_interval_s) {
            // integrate up to the sample time; steps sit on the grid k·dt and are cut at
            // phase ends and sample times
            while t_s < ts {
                while span_idx + 1 < spans.len() && t_s >= spans[span_idx].end_s {
                    span_idx += 1;
                }
                let span = &spans[span_idx];
                let mut k = (t_s / dt).floor() + 1.0;
                if k * dt <= t_s {
                    k += 1.0;
                }
                let t_next = (k * dt).min(ts).min(if span.end_s > t_s { span.end_s } else { ts });
                let step_s = t_next - t_s;
                let power_w = tank.step(&mut s, span, t_next, step_s);
                shaft_energy_j += power_w * step_s;
                temperature_max_degc = temperature_max_degc.max(s.temperature_degc);
                t_s = t_next;

                if overtemperature.changes(s.temperature_degc, params.max_temperature_degc) {
                    tracker.high(
                        t_s,
                        "MIX_OVERTEMPERATURE",
                        Severity::Warning,
                        "temperature_degc",
                        s.temperature_degc,
                        params.max_temperature_degc,
                        AlarmScope::default(),
                        || {
                            format!(
                                "slurry temperature {:.1} °C above {} °C",
                                s.temperature_degc, params.max_temperature_degc
                            )
                        },
                    );
                }
                if air_high.changes(s.air_frac, MAX_AIR_VOLUME_FRAC) {
                    tracker.high(
                        t_s,
                        "MIX_AIR_HIGH",
                        Severity::Warning,
                        "air_volume_frac",
                        s.air_frac,
                        MAX_AIR_VOLUME_FRAC,
                        AlarmScope::default(),
                        || format!("entrained air {:.4} above {MAX_AIR_VOLUME_FRAC}", s.air_frac),
                    );
                }
                forward(&tracker, &mut forwarded, sink);
            }

            let mut defect_risk = tracker.any_active(Severity::Warning);
            if ts >= duration_s {
                let before = tracker.len();
                end_of_batch_checks(&tank, &s, duration_s, &mut tracker);
                defect_risk |= tracker.events[before..].iter().any(|a| a.severity >= Severity::Warning);
                forward(&tracker, &mut forwarded, sink);
            }
            // the phase of the step that ended at ts (the first phase at t = 0)
            let span = spans.iter().rev().find(|p| p.start_s < ts).unwrap_or(&spans[0]);
            sink.sample(tank.sample(&s, span, ts, defect_risk, ctx));
        }

        let accepted = !tracker.any_raised(Severity::Alarm);
        let (slurry, result) =
            finish(&tank, &s, ctx, duration_s, shaft_energy_j, temperature_max_degc, accepted, tracker.events);
        StageRun { output: slurry, result, duration_s }
    }
}

/// Sends the tracker's new events to the sink.
fn forward(tracker: &AlarmTracker, forwarded: &mut usize, sink: &mut dyn StageSink<MixingSample>) {
    for a in &tracker.events[*forwarded..] {
        sink.alarm(a);
    }
    *forwarded = tracker.len();
}

/// The end-of-batch checks of §1.4 on the final state.
fn end_of_batch_checks(tank: &Dissolver<'_>, s: &TankState, t_s: f64, tracker: &mut AlarmTracker) {
    let (p, r) = (tank.params, tank.recipe);
    let props = tank.props(s, s.temperature_degc);
    let scope = AlarmScope::default;
    let packing = props.effective_particle_frac / r.max_packing_frac;
    if packing >= NOT_FLOWABLE_PACKING_RATIO {
        tracker.once(
            t_s,
            "MIX_NOT_FLOWABLE",
            Severity::Critical,
            "packing_ratio",
            packing,
            NOT_FLOWABLE_PACKING_RATIO,
            scope(),
            format!("effective particle fraction at {packing:.3} of maximum packing: the slurry does not flow"),
        );
    }
    let viscosity_ref = tank.viscosity_pa_s(&tank.props(s, 25.0), REFERENCE_SHEAR_RATE_PER_S);
    let [lo, hi] = p.viscosity_window_pa_s;
    if !(lo..=hi).contains(&viscosity_ref) {
        tracker.once(
            t_s,
            "MIX_VISCOSITY_OUT_OF_RANGE",
            Severity::Alarm,
            "viscosity_ref_pa_s",
            viscosity_ref,
            if viscosity_ref < lo { lo } else { hi },
            scope(),
            format!("viscosity {viscosity_ref:.3} Pa·s at 10 1/s, 25 °C outside [{lo}, {hi}] Pa·s"),
        );
    }
    let a = s.agglomerate_frac;
    let max_a = p.max_agglomerate_frac;
    if a > max_a || a > 0.7 * max_a {
        let (severity, threshold) = if a > max_a { (Severity::Alarm, max_a) } else { (Severity::Warning, 0.7 * max_a) };
        tracker.once(
            t_s,
            "MIX_UNDER_DISPERSED",
            severity,
            "agglomerate_frac",
            a,
            threshold,
            scope(),
            format!("agglomerate fraction {a:.4} above {threshold:.4}"),
        );
    }
    if s.dissolved_frac < MIN_BINDER_DISSOLVED_FRAC {
        tracker.once(
            t_s,
            "MIX_BINDER_UNDISSOLVED",
            Severity::Alarm,
            "binder_dissolved_frac",
            s.dissolved_frac,
            MIN_BINDER_DISSOLVED_FRAC,
            scope(),
            format!("only {:.3} of the binder dissolved", s.dissolved_frac),
        );
    }
    let solids = ratio(s.mass_kg[AM] + s.mass_kg[CA] + s.mass_kg[BINDER], props.total_mass_kg);
    let deviation = (solids - p.solids_mass_frac).abs();
    if deviation > MAX_SOLIDS_DEVIATION_FRAC {
        tracker.once(
            t_s,
            "MIX_SOLIDS_DEVIATION",
            Severity::Alarm,
            "solids_mass_frac",
            solids,
            p.solids_mass_frac,
            scope(),
            format!(
                "solids mass fraction {solids:.4} differs from the recipe {} by {deviation:.4}",
                p.solids_mass_frac
            ),
        );
    }
}

/// The slurry handed on (§1.5) and the final result (§1.3) from the end state.
#[allow(clippy::too_many_arguments)]
fn finish(
    tank: &Dissolver<'_>,
    s: &TankState,
    ctx: &StageCtx<'_>,
    duration_s: f64,
    shaft_energy_j: f64,
    temperature_max_degc: f64,
    accepted: bool,
    alarms: Vec<Alarm>,
) -> (Slurry, MixingResult) {
    let (p, r) = (tank.params, tank.recipe);
    let end = tank.props(s, s.temperature_degc);
    let at_25 = tank.props(s, 25.0);
    let viscosity_ref_pa_s = tank.viscosity_pa_s(&at_25, REFERENCE_SHEAR_RATE_PER_S);
    let yield_stress_pa = yodel_yield_stress_pa(
        r.yield_prefactor_pa,
        end.effective_particle_frac,
        r.percolation_frac,
        r.max_packing_frac,
    );
    let solids_kg = s.mass_kg[AM] + s.mass_kg[CA] + s.mass_kg[BINDER];
    let solids_m3 = end.volume_m3[AM] + end.volume_m3[CA] + end.volume_m3[BINDER];
    // a dosing error (F02) changes the dry composition the slurry carries downstream
    let (am_frac, ca_frac, binder_frac) = if tank.dose.iter().any(|d| d.0 != 1.0) && solids_kg > 0.0 {
        (s.mass_kg[AM] / solids_kg, s.mass_kg[CA] / solids_kg, s.mass_kg[BINDER] / solids_kg)
    } else {
        (p.am_mass_frac_dry, p.ca_mass_frac_dry, p.binder_mass_frac_dry)
    };
    let solid_density_kg_m3 = r.solid_density_kg_m3(am_frac, ca_frac, binder_frac);
    let solids_mass_frac = ratio(solids_kg, end.total_mass_kg);
    let solids_volume_frac = ratio(solids_m3, end.total_volume_m3);
    let not_flowable = end.effective_particle_frac / r.max_packing_frac >= NOT_FLOWABLE_PACKING_RATIO;
    let slurry = Slurry {
        batch_id: ctx.batch_id,
        line: ctx.line,
        recipe: r.clone(),
        am_mass_frac_dry: am_frac,
        ca_mass_frac_dry: ca_frac,
        binder_mass_frac_dry: binder_frac,
        am_mass_kg: s.mass_kg[AM],
        ca_mass_kg: s.mass_kg[CA],
        binder_mass_kg: s.mass_kg[BINDER],
        solvent_mass_kg: s.mass_kg[SOLVENT],
        volume_m3: end.total_volume_m3,
        usable_volume_m3: end.total_volume_m3 * (1.0 - HOLDUP_FRAC),
        density_kg_m3: end.density_kg_m3,
        solid_density_kg_m3,
        solids_mass_frac,
        solids_volume_frac,
        zero_shear_viscosity_pa_s: at_25.zero_shear_viscosity_pa_s,
        viscosity_ref_pa_s,
        cross_time_constant_s: r.cross_time_constant_s,
        cross_exponent: r.cross_exponent,
        cross_inf_ratio: r.cross_inf_ratio,
        viscosity_activation_energy_j_mol: r.viscosity_activation_energy_j_mol,
        yield_stress_pa,
        agglomerate_frac: s.agglomerate_frac,
        binder_dissolved_frac: s.dissolved_frac,
        air_volume_frac: s.air_frac,
        temperature_degc: s.temperature_degc,
        not_flowable,
        // the process faults that touched the batch (sensor faults leave the product alone)
        fault_labels: ctx
            .faults
            .all()
            .iter()
            .filter(|f| f.spec.code != FaultCode::S01SensorFault && ctx.faults.touched(f.label_id))
            .map(|f| f.label_id)
            .collect(),
    };
    let result = MixingResult {
        am_mass_kg: s.mass_kg[AM],
        ca_mass_kg: s.mass_kg[CA],
        binder_mass_kg: s.mass_kg[BINDER],
        solvent_mass_kg: s.mass_kg[SOLVENT],
        slurry_mass_kg: end.total_mass_kg,
        am_volume_m3: end.volume_m3[AM],
        ca_volume_m3: end.volume_m3[CA],
        binder_volume_m3: end.volume_m3[BINDER],
        solvent_volume_m3: end.volume_m3[SOLVENT],
        volume_m3: end.total_volume_m3,
        density_kg_m3: end.density_kg_m3,
        apparent_density_kg_m3: end.density_kg_m3 * (1.0 - s.air_frac),
        solid_density_kg_m3,
        solids_mass_frac,
        solids_volume_frac,
        effective_particle_frac: end.effective_particle_frac,
        zero_shear_viscosity_pa_s: at_25.zero_shear_viscosity_pa_s,
        viscosity_ref_pa_s,
        viscosity_end_pa_s: tank.viscosity_pa_s(&end, REFERENCE_SHEAR_RATE_PER_S),
        yield_stress_pa,
        agglomerate_frac: s.agglomerate_frac,
        binder_dissolved_frac: s.dissolved_frac,
        air_volume_frac: s.air_frac,
        temperature_end_degc: s.temperature_degc,
        temperature_max_degc,
        shaft_energy_j,
        duration_s,
        accepted,
        alarms,
        legacy_solvent_key: r.solvent.legacy_solvent_key(),
    };
    (slurry, result)
}

// ---------------------------------------------------------------------------------------------
// Product (§0.9, §1.5)
// ---------------------------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specific_volume_gives_the_default_slurry_masses() {
        let p = MixingParams::anode();
        let m: f64 = p.target_masses_kg(&Recipe::anode()).iter().sum();
        assert!((m / 438.04 - 1.0).abs() < 0.005, "{m}");
        let p = MixingParams::cathode();
        let m: f64 = p.target_masses_kg(&Recipe::cathode()).iter().sum();
        assert!((m / 445.49 - 1.0).abs() < 0.005, "{m}");
    }

    #[test]
    fn krieger_dougherty_caps_at_the_packing_limit() {
        let eta = krieger_dougherty_pa_s(1.0, 0.0, 0.6, 2.5);
        assert_eq!(eta, 1.0);
        let capped = krieger_dougherty_pa_s(1.0, 0.6, 0.6, 2.5);
        assert_eq!(capped, krieger_dougherty_pa_s(1.0, 5.0, 0.6, 2.5));
        assert!((capped - 0.02f64.powf(-1.5)).abs() < 1e-9);
    }

    #[test]
    fn cross_law_thins_from_eta0_towards_r_inf() {
        assert_eq!(cross_viscosity_pa_s(2.0, 0.0, 0.05, 0.75, 0.05), 2.0);
        let high = cross_viscosity_pa_s(2.0, 1e9, 0.05, 0.75, 0.05);
        assert!((high - 0.1).abs() < 1e-3);
    }

    #[test]
    fn yield_stress_is_zero_below_percolation_and_never_negative() {
        assert_eq!(yodel_yield_stress_pa(400.0, 0.1, 0.15, 0.55), 0.0);
        for phi in [0.16, 0.3, 0.539, 0.6, 2.0] {
            assert!(yodel_yield_stress_pa(400.0, phi, 0.15, 0.55) > 0.0);
        }
    }

    #[test]
    fn viscosity_factor_is_one_at_25_degc_and_higher_when_colder() {
        assert_eq!(viscosity_temperature_factor(16e3, 25.0), 1.0);
        assert!(viscosity_temperature_factor(16e3, 20.0) > 1.0);
    }

    #[test]
    fn power_is_zero_in_an_empty_tank() {
        assert_eq!(dissolver_power_w(0.0, 20.0, 0.2, 0.0, 0.35, 60.0), 0.0);
    }

    #[test]
    fn schedule_ends_at_the_duration() {
        let p = MixingParams::cathode();
        let s = schedule(&p);
        assert_eq!(s[6].end_s, p.duration_s());
        assert_eq!(p.duration_s(), 6300.0);
    }
}
