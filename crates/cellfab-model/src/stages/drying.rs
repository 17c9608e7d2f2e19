//! Drying: evaporate the solvent in a multi-zone impingement dryer (MODELS.md §3).
//! `WetFilm` in, `DryElectrode` out; samples every `sample_interval_s`.
//!
//! Coater and dryer are one line: drying starts with the first coated metre and ends when the
//! last one leaves, so the stage lasts `T_coat + L_d/v`. Every exiting film element is followed
//! through the dryer as a Lagrangian element (§3.2): constant-rate then falling-rate drying,
//! energy balance of film and foil, binder-migration index at pore emptying, dry point, exit
//! residual and thickness. At stage time t the segment leaving the dryer is at coating position
//! `x = v·t − L_d` (none while the dryer fills).
//!
//! Speed: the trajectory (2 000 Euler steps for the default 100 s residence) is not integrated
//! per grid cell. Results are cached per (areal mass, solvent ratio) bin of 0.1 % width and
//! recomputed only when the zone air temperatures move by more than 0.1 % (allowed by §3.2); a
//! CD cell reuses the result of its bin with the solvent masses scaled by its own areal mass
//! (residual fraction, BMI, dry point and temperatures are taken as they are). A uniform roll
//! therefore costs one trajectory.
//!
//! A segment is dried, written to the grids and judged (not dry, residual, binder migration,
//! film temperature; worst CD cell) when its leading edge reaches the exit, at its own exit
//! time; zone deviation is judged at every sample. Heater power uses the full-load evaporation
//! of the segment at the exit for the whole stage (§3.2), so the energy is `P·(T_coat + L_d/v)`
//! in deterministic mode.
//!
//! Process variability: none in this stage (no random draws on the process stream). Sensor
//! draws per sample, in field order: zone thermocouples (zone order), NIR residual gauge, exit
//! pyrometer.

use crate::alarm::{AlarmScope, AlarmTracker, Severity, HYSTERESIS_FRAC};
use crate::consts::{kelvin, AIR_HEAT_CAPACITY_J_KG_K, AIR_MOLAR_MASS_KG_MOL, ATMOSPHERE_PA, GAS_CONSTANT_J_MOL_K};
use crate::error::{check_open_min, check_range, ParamError};
use crate::fault::{At, FaultCode, FaultSpec};
use crate::legacy::{put, put_object, put_value, LegacyRecord};
use crate::material::Solvent;
use crate::reading::{Reading, Sensor};
use crate::stage::{
    sample_times, ResultRecord, SampleRecord, Stage, StageCtx, StageKind, StageParams, StageRun, StageSink,
};
use crate::stages::coating::WetFilm;
use crate::web::{SegmentFlags, WebGrid};
use crate::Alarm;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

/// One dryer zone (MODELS.md §3.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DryerZone {
    /// Zone length along the web; (0, 100]. [E]
    pub length_m: f64,
    /// Air set-point temperature; [20, 250]. [C]
    pub air_temperature_degc: f64,
    /// Impingement air velocity at the nozzles; [0.5, 60]. [C]
    pub air_velocity_m_s: f64,
    /// Exhaust (fresh-air) mass flow heated from ambient; [0, 20]. [C]
    pub exhaust_mass_flow_kg_s: f64,
}

impl DryerZone {
    /// A zone with the default length (10 m), velocity (15 m/s) and exhaust (0.5 kg/s).
    pub fn standard(air_temperature_degc: f64) -> Self {
        Self { length_m: 10.0, air_temperature_degc, air_velocity_m_s: 15.0, exhaust_mass_flow_kg_s: 0.5 }
    }
}

/// Dryer settings for one line. Defaults: MODELS.md §3.1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DryingParams {
    /// Zones in web order; 1–12 zones. Default 4 × 10 m, hot middle zones, cooler last zone
    /// (two-stage profile, Jaiser et al. 2016). [E]
    pub zones: Vec<DryerZone>,
    /// Solvent vapour in the supply air (humidity for water); [0, 5e4]. [C]
    pub air_solvent_partial_pressure_pa: f64,
    /// Impingement heat-transfer coefficient at the reference velocity; (0, 1000]. [L form, C value]
    pub heat_transfer_coeff_ref_w_m2_k: f64,
    /// Reference air velocity of `heat_transfer_coeff_ref_w_m2_k`; (0, 60]. [C]
    pub ref_air_velocity_m_s: f64,
    /// Exponent n_u of h ∝ u^n_u (Martin 1977: 2/3); [0.3, 1]. [L]
    pub velocity_exponent: f64,
    /// Share x_cr of the pore volume below which the drying rate falls; (0, 1]. [C]
    pub falling_rate_onset_frac: f64,
    /// Sorption equilibrium w_eq, kg solvent per kg solids; [0, 0.05]. [C]
    pub residual_equilibrium_frac: f64,
    /// Drying rate at pore emptying above which binder migrates (Jaiser et al. 2016; Font et
    /// al. 2018); (0, 0.1]. [C]
    pub migration_rate_limit_kg_m2_s: f64,
    /// Exit specification of the residual solvent, kg per kg solids; (0, 0.1]. [C]
    pub residual_solvent_max_frac: f64,
    /// Binder temperature limit of the film; [40, 300]. [C]
    pub max_film_temperature_degc: f64,
    /// Ambient (fresh-air) temperature of the energy model; [-40, 60]. [C]
    pub ambient_temperature_degc: f64,
    /// Fan power per zone; [0, 1e6]. [C]
    pub fan_power_w: f64,
    /// Wall heat-loss conductance per zone; [0, 1e5]. [C]
    pub wall_ua_w_k: f64,
    /// Heater efficiency η_heater; (0, 1]. [C]
    pub heater_efficiency_frac: f64,
    /// Solvent condensation/recovery energy e_rec (NMP 0.3 kWh/kg); [0, 1e7]. [C]
    pub solvent_recovery_energy_j_kg: f64,
    /// Euler step of the film element; (0, 1], at most `sample_interval_s`. [E]
    pub integration_step_s: f64,
    /// Sample interval; (0, 600]. [E]
    pub sample_interval_s: f64,
}

impl DryingParams {
    /// Water-based graphite anode: 90, 110, 110, 100 °C.
    pub fn anode() -> Self {
        Self {
            zones: [90.0, 110.0, 110.0, 100.0].into_iter().map(DryerZone::standard).collect(),
            air_solvent_partial_pressure_pa: 1000.0,
            heat_transfer_coeff_ref_w_m2_k: 40.0,
            ref_air_velocity_m_s: 10.0,
            velocity_exponent: 2.0 / 3.0,
            falling_rate_onset_frac: 0.15,
            residual_equilibrium_frac: 5e-4,
            migration_rate_limit_kg_m2_s: 2.0e-3,
            residual_solvent_max_frac: 2e-3,
            max_film_temperature_degc: 130.0,
            ambient_temperature_degc: 25.0,
            fan_power_w: 7500.0,
            wall_ua_w_k: 30.0,
            heater_efficiency_frac: 1.0,
            solvent_recovery_energy_j_kg: 0.0,
            integration_step_s: 0.05,
            sample_interval_s: 2.0,
        }
    }

    /// NMP-based NMC811 cathode: 100, 130, 130, 110 °C, with NMP recovery.
    pub fn cathode() -> Self {
        Self {
            zones: [100.0, 130.0, 130.0, 110.0].into_iter().map(DryerZone::standard).collect(),
            air_solvent_partial_pressure_pa: 20.0,
            residual_equilibrium_frac: 2e-4,
            migration_rate_limit_kg_m2_s: 3.5e-3,
            max_film_temperature_degc: 150.0,
            solvent_recovery_energy_j_kg: 1.08e6,
            ..Self::anode()
        }
    }

    /// Dryer length L_d = Σ zone lengths [m].
    pub fn dryer_length_m(&self) -> f64 {
        self.zones.iter().map(|z| z.length_m).sum()
    }
}

impl Default for DryingParams {
    fn default() -> Self {
        Self::cathode()
    }
}

/// Most zones a dryer may have.
pub const MAX_ZONES: usize = 12;

impl StageParams for DryingParams {
    fn validate(&self) -> Result<(), ParamError> {
        let n = self.zones.len();
        if !(1..=MAX_ZONES).contains(&n) {
            return Err(ParamError::range("zones", n as f64, 1.0, MAX_ZONES as f64, ""));
        }
        for (i, z) in self.zones.iter().enumerate() {
            let at = format!("zones[{i}].");
            check_open_min("length_m", z.length_m, 0.0, 100.0, "m").map_err(|e| e.at(&at))?;
            check_range("air_temperature_degc", z.air_temperature_degc, 20.0, 250.0, "°C").map_err(|e| e.at(&at))?;
            check_range("air_velocity_m_s", z.air_velocity_m_s, 0.5, 60.0, "m/s").map_err(|e| e.at(&at))?;
            check_range("exhaust_mass_flow_kg_s", z.exhaust_mass_flow_kg_s, 0.0, 20.0, "kg/s")
                .map_err(|e| e.at(&at))?;
        }
        check_range("air_solvent_partial_pressure_pa", self.air_solvent_partial_pressure_pa, 0.0, 5e4, "Pa")?;
        check_open_min("heat_transfer_coeff_ref_w_m2_k", self.heat_transfer_coeff_ref_w_m2_k, 0.0, 1000.0, "W/(m²·K)")?;
        check_open_min("ref_air_velocity_m_s", self.ref_air_velocity_m_s, 0.0, 60.0, "m/s")?;
        check_range("velocity_exponent", self.velocity_exponent, 0.3, 1.0, "")?;
        check_open_min("falling_rate_onset_frac", self.falling_rate_onset_frac, 0.0, 1.0, "")?;
        check_range("residual_equilibrium_frac", self.residual_equilibrium_frac, 0.0, 0.05, "")?;
        check_open_min("migration_rate_limit_kg_m2_s", self.migration_rate_limit_kg_m2_s, 0.0, 0.1, "kg/(m²·s)")?;
        check_open_min("residual_solvent_max_frac", self.residual_solvent_max_frac, 0.0, 0.1, "")?;
        check_range("max_film_temperature_degc", self.max_film_temperature_degc, 40.0, 300.0, "°C")?;
        check_range("ambient_temperature_degc", self.ambient_temperature_degc, -40.0, 60.0, "°C")?;
        check_range("fan_power_w", self.fan_power_w, 0.0, 1e6, "W")?;
        check_range("wall_ua_w_k", self.wall_ua_w_k, 0.0, 1e5, "W/K")?;
        check_open_min("heater_efficiency_frac", self.heater_efficiency_frac, 0.0, 1.0, "")?;
        check_range("solvent_recovery_energy_j_kg", self.solvent_recovery_energy_j_kg, 0.0, 1e7, "J/kg")?;
        check_open_min("integration_step_s", self.integration_step_s, 0.0, 1.0, "s")?;
        check_open_min("sample_interval_s", self.sample_interval_s, 0.0, 600.0, "s")?;
        if self.integration_step_s > self.sample_interval_s {
            return Err(ParamError::rule(
                "integration_step_s",
                self.integration_step_s,
                "s",
                format!("must not exceed sample_interval_s ({} s)", self.sample_interval_s),
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Physics (MODELS.md §3.2)
// ---------------------------------------------------------------------------------------------

/// Impingement heat-transfer coefficient `h = h_ref·(u/u_ref)^n_u` (Martin 1977; MODELS.md
/// §3.2) [W/(m²·K)].
pub fn heat_transfer_coeff_w_m2_k(h_ref: f64, air_velocity_m_s: f64, ref_velocity_m_s: f64, exponent: f64) -> f64 {
    h_ref * (air_velocity_m_s / ref_velocity_m_s).powf(exponent)
}

/// Air density at atmospheric pressure `ρ_air = p_atm·M_air/(R·T_a)` [kg/m³].
pub fn air_density_kg_m3(air_temperature_degc: f64) -> f64 {
    ATMOSPHERE_PA * AIR_MOLAR_MASS_KG_MOL / (GAS_CONSTANT_J_MOL_K * kelvin(air_temperature_degc))
}

/// Mass-transfer coefficient by the Chilton–Colburn (Lewis) analogy
/// `β = h/(ρ_air·c_p,air·Le^(2/3))` (MODELS.md §3.2) [m/s].
pub fn mass_transfer_coeff_m_s(heat_transfer_coeff_w_m2_k: f64, air_temperature_degc: f64, lewis_number: f64) -> f64 {
    heat_transfer_coeff_w_m2_k
        / (air_density_kg_m3(air_temperature_degc) * AIR_HEAT_CAPACITY_J_KG_K * lewis_number.powf(2.0 / 3.0))
}

/// Vapour mass concentration of an ideal gas `c = M·p/(R·T)` [kg/m³].
pub fn vapour_concentration_kg_m3(partial_pressure_pa: f64, temperature_degc: f64, molar_mass_kg_mol: f64) -> f64 {
    molar_mass_kg_mol * partial_pressure_pa / (GAS_CONSTANT_J_MOL_K * kelvin(temperature_degc))
}

/// Drying-rate factor f (MODELS.md §3.2; drying periods after Kumberg/Jaiser): 1 in the
/// constant-rate period (X ≥ X_cr), `(X − X_eq)/(X_cr − X_eq)` while the rate falls, 0 at or
/// below sorption equilibrium.
pub fn drying_rate_factor(solvent_kg_m2: f64, critical_kg_m2: f64, equilibrium_kg_m2: f64) -> f64 {
    if solvent_kg_m2 >= critical_kg_m2 {
        1.0
    } else if solvent_kg_m2 > equilibrium_kg_m2 {
        (solvent_kg_m2 - equilibrium_kg_m2) / (critical_kg_m2 - equilibrium_kg_m2)
    } else {
        0.0
    }
}

/// Evaporation flux `ṁ = max(0, β·f·(c_sat(T_f) − c_∞))` (MODELS.md §3.2) [kg/(m²·s)].
pub fn evaporation_flux_kg_m2_s(
    mass_transfer_coeff_m_s: f64,
    rate_factor: f64,
    surface_concentration_kg_m3: f64,
    air_concentration_kg_m3: f64,
) -> f64 {
    (mass_transfer_coeff_m_s * rate_factor * (surface_concentration_kg_m3 - air_concentration_kg_m3)).max(0.0)
}

/// Heater load of the dryer at an instant (MODELS.md §3.2 energy model, [E]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeaterLoad {
    /// Solvent evaporated by the whole web [kg/s].
    pub evaporation_kg_s: f64,
    /// Latent heat of the solvent [J/kg].
    pub latent_heat_j_kg: f64,
    /// Dry web mass flow (coatings + foil) [kg/s].
    pub web_mass_flow_kg_s: f64,
    /// Specific heat of the dry web [J/(kg·K)].
    pub web_heat_capacity_j_kg_k: f64,
    /// Film temperature at the dryer exit [°C].
    pub exit_temperature_degc: f64,
    /// Slurry temperature at the die [°C].
    pub inlet_temperature_degc: f64,
}

/// Heater power `P = [Σ ṁ_exh·c_p,air·(T_z − T_amb) + ṁ_evap·Δh_v + ṁ_web·c_web·(T_exit − T_in)
/// + Σ UA·(T_z − T_amb)]/η_heater + Σ fan power` (MODELS.md §3.2) [W], with the zone air
/// temperatures `zone_air_temperature_degc` (zone order).
pub fn heater_power_w(params: &DryingParams, zone_air_temperature_degc: &[f64], load: &HeaterLoad) -> f64 {
    let t_amb = params.ambient_temperature_degc;
    let air: f64 = params
        .zones
        .iter()
        .zip(zone_air_temperature_degc)
        .map(|(z, &t)| (z.exhaust_mass_flow_kg_s * AIR_HEAT_CAPACITY_J_KG_K + params.wall_ua_w_k) * (t - t_amb))
        .sum();
    let web = load.web_mass_flow_kg_s
        * load.web_heat_capacity_j_kg_k
        * (load.exit_temperature_degc - load.inlet_temperature_degc);
    // a heater only heats: zones set below ambient get no heating power (and no cooling)
    (air + load.evaporation_kg_s * load.latent_heat_j_kg + web).max(0.0) / params.heater_efficiency_frac
        + params.fan_power_w * params.zones.len() as f64
}

/// Points of the drying curve along the dryer (every L_d/40).
pub const CURVE_POINTS: usize = 41;

/// Largest `dt·λ` of one Euler step (λ the film's thermal stiffness) before the step is split:
/// keeps explicit Euler stable for any valid parameter set. The defaults stay below it (0.02),
/// so they integrate with the plain `integration_step_s`. [E]
const MAX_STEP_STIFFNESS: f64 = 0.5;

/// Constants of one film element and the dryer, fixed for a run (MODELS.md §3.2 symbols).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FilmElementModel {
    /// Solvent preset (M, Δh_v, vapour pressure).
    pub solvent: Solvent,
    /// Solvent density ρ_solv [kg/m³].
    pub solvent_density_kg_m3: f64,
    /// Solvent specific heat [J/(kg·K)].
    pub solvent_heat_capacity_j_kg_k: f64,
    /// Mass-weighted specific heat of the dry solids [J/(kg·K)].
    pub solids_heat_capacity_j_kg_k: f64,
    /// Dry composite density ρ_solid [kg/m³].
    pub solid_density_kg_m3: f64,
    /// Porosity of the dried film ε_dry.
    pub dry_porosity_frac: f64,
    /// Heat capacity of half the foil per coated side `ρ_foil·t_foil·c_p,foil/2` [J/(m²·K)].
    pub foil_heat_capacity_j_m2_k: f64,
    /// Falling-rate onset x_cr (share of the pore volume).
    pub falling_rate_onset_frac: f64,
    /// Sorption equilibrium w_eq [kg/kg solids].
    pub residual_equilibrium_frac: f64,
    /// Migration rate limit [kg/(m²·s)].
    pub migration_rate_limit_kg_m2_s: f64,
    /// Web speed v [m/s].
    pub speed_m_s: f64,
    /// Euler step [s].
    pub integration_step_s: f64,
    /// Film temperature entering the dryer (slurry at the die) [°C].
    pub inlet_temperature_degc: f64,
}

/// Air conditions of one zone at an instant and the transfer coefficients they give.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ZoneConditions {
    /// Residence time at which the element leaves the zone [s].
    pub end_time_s: f64,
    /// Air temperature T_a [°C].
    pub air_temperature_degc: f64,
    /// Heat-transfer coefficient h [W/(m²·K)].
    pub heat_transfer_coeff_w_m2_k: f64,
    /// Mass-transfer coefficient β [m/s].
    pub mass_transfer_coeff_m_s: f64,
    /// Solvent vapour concentration of the supply air `M·p_∞/(R·T_a)` [kg/m³].
    pub air_vapour_concentration_kg_m3: f64,
}

/// Conditions of every zone for the given air temperatures (zone order).
pub fn zone_conditions(
    params: &DryingParams,
    solvent: &Solvent,
    speed_m_s: f64,
    air_temperature_degc: &[f64],
) -> Vec<ZoneConditions> {
    let mut end_m = 0.0;
    params
        .zones
        .iter()
        .zip(air_temperature_degc)
        .map(|(z, &t_a)| {
            end_m += z.length_m;
            let h = heat_transfer_coeff_w_m2_k(
                params.heat_transfer_coeff_ref_w_m2_k,
                z.air_velocity_m_s,
                params.ref_air_velocity_m_s,
                params.velocity_exponent,
            );
            ZoneConditions {
                end_time_s: end_m / speed_m_s,
                air_temperature_degc: t_a,
                heat_transfer_coeff_w_m2_k: h,
                mass_transfer_coeff_m_s: mass_transfer_coeff_m_s(h, t_a, solvent.lewis_number),
                air_vapour_concentration_kg_m3: vapour_concentration_kg_m3(
                    params.air_solvent_partial_pressure_pa,
                    t_a,
                    solvent.molar_mass_kg_mol,
                ),
            }
        })
        .collect()
}

/// What a film element looks like when it leaves the dryer (per side).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FilmExit {
    /// Dry solids the element was integrated with [kg/m²].
    pub areal_mass_kg_m2: f64,
    /// Solvent entering [kg/m²].
    pub solvent_in_kg_m2: f64,
    /// Solvent leaving X_exit [kg/m²].
    pub solvent_exit_kg_m2: f64,
    /// Exit residual `w_res = X_exit/m_A` (0 for an uncoated element).
    pub residual_solvent_frac: f64,
    /// Drying rate at pore emptying / migration limit.
    pub binder_migration_index: f64,
    /// First position where `X − X_eq ≤ 0.01·(X₀ − X_eq)`; `None` = not dry.
    pub dry_point_m: Option<f64>,
    /// Film temperature at the exit [°C].
    pub exit_temperature_degc: f64,
    /// Highest film temperature in the dryer [°C].
    pub peak_temperature_degc: f64,
    /// Solvent X at the 41 curve points (every L_d/40) [kg/m²].
    pub solvent_curve_kg_m2: [f64; CURVE_POINTS],
    /// Film temperature at the 41 curve points [°C].
    pub temperature_curve_degc: [f64; CURVE_POINTS],
}

impl FilmElementModel {
    /// Follows one film element of dry solids `areal_mass_kg_m2` carrying `solvent_kg_m2` through
    /// the zones (MODELS.md §3.2): explicit Euler on X and T_f with `integration_step_s`, steps
    /// cut at zone boundaries and at the exit, a step split further only when the film's thermal
    /// stiffness would make Euler unstable (see `MAX_STEP_STIFFNESS`).
    pub fn integrate(&self, zones: &[ZoneConditions], areal_mass_kg_m2: f64, solvent_kg_m2: f64) -> FilmExit {
        let m_a = areal_mass_kg_m2.max(0.0);
        let x0 = solvent_kg_m2.max(0.0);
        let sol = &self.solvent;
        let latent = sol.latent_heat_j_kg();
        let h_dry = m_a / (self.solid_density_kg_m3 * (1.0 - self.dry_porosity_frac));
        let x_pore = self.solvent_density_kg_m3 * self.dry_porosity_frac * h_dry;
        let x_eq = self.residual_equilibrium_frac * m_a;
        let x_cr = (self.falling_rate_onset_frac * x_pore).max(x_eq);
        let dry_target = x_eq + 0.01 * (x0 - x_eq).max(0.0);
        let heat_solids = m_a * self.solids_heat_capacity_j_kg_k + self.foil_heat_capacity_j_m2_k;
        let dh_over_r = sol.vaporisation_enthalpy_j_mol / GAS_CONSTANT_J_MOL_K;

        let v = self.speed_m_s;
        let dt = self.integration_step_s;
        let t_end = zones.last().map_or(0.0, |z| z.end_time_s);
        let eps = 1e-9 * dt;

        let mut x = x0;
        let mut temp = self.inlet_temperature_degc;
        let mut peak = temp;
        // A film that enters below its pore volume is emptying its pores from the start: the
        // index then takes the first step's rate. [E]
        let starts_below_pore = x0 < x_pore;
        let mut bmi: Option<f64> = None;
        let mut dry_point = if x0 <= dry_target { Some(0.0) } else { None };
        let mut solvent_curve = [0.0; CURVE_POINTS];
        let mut temperature_curve = [0.0; CURVE_POINTS];
        solvent_curve[0] = x;
        temperature_curve[0] = temp;
        let mut next_curve = 1usize;
        let curve_dt = t_end / (CURVE_POINTS - 1) as f64;

        let mut zone = 0usize;
        let mut k = 0u64;
        let mut tau = 0.0;
        while tau < t_end - eps && !zones.is_empty() {
            while zone + 1 < zones.len() && tau >= zones[zone].end_time_s - eps {
                zone += 1;
            }
            let z = &zones[zone];
            let regular = (k + 1) as f64 * dt;
            let mut next = regular.min(z.end_time_s).min(t_end);
            if regular - next <= eps {
                next = regular.min(t_end);
                k += 1;
            }
            let h_step = next - tau;

            // Rates at the start of the step decide how finely it is split.
            let mut n_sub = 1u32;
            let mut sub = 0u32;
            let mut hs = h_step;
            while sub < n_sub {
                let t_k = kelvin(temp);
                let c_sat = sol.molar_mass_kg_mol * sol.vapour_pressure_pa(temp) / (GAS_CONSTANT_J_MOL_K * t_k);
                let f = drying_rate_factor(x, x_cr, x_eq);
                let beta = z.mass_transfer_coeff_m_s;
                let heat_cap = heat_solids + x * self.solvent_heat_capacity_j_kg_k;
                if sub == 0 && n_sub == 1 {
                    let dc_dt = c_sat * (dh_over_r / (t_k * t_k) - 1.0 / t_k);
                    let stiffness = (z.heat_transfer_coeff_w_m2_k + beta * f * latent * dc_dt.abs()) / heat_cap;
                    if h_step * stiffness > MAX_STEP_STIFFNESS {
                        n_sub = ((h_step * stiffness / MAX_STEP_STIFFNESS).ceil() as u32).min(100_000);
                        hs = h_step / n_sub as f64;
                    }
                }
                let flux = evaporation_flux_kg_m2_s(beta, f, c_sat, z.air_vapour_concentration_kg_m3);
                // X never goes below X_eq: the last step evaporates only what is left.
                let flux = flux.min((x - x_eq).max(0.0) / hs);
                let dtemp = (z.heat_transfer_coeff_w_m2_k * (z.air_temperature_degc - temp) - flux * latent) / heat_cap;
                let x_new = x - flux * hs;
                let temp_new = temp + dtemp * hs;
                let tau0 = tau + sub as f64 * hs;
                let tau1 = if sub + 1 == n_sub { next } else { tau + (sub + 1) as f64 * hs };

                if bmi.is_none() && (starts_below_pore || x_new < x_pore) {
                    bmi = Some(flux / self.migration_rate_limit_kg_m2_s);
                }
                if dry_point.is_none() && x_new <= dry_target {
                    let frac = if x > x_new { ((x - dry_target) / (x - x_new)).clamp(0.0, 1.0) } else { 1.0 };
                    dry_point = Some(v * (tau0 + frac * (tau1 - tau0)));
                }
                while next_curve < CURVE_POINTS && next_curve as f64 * curve_dt <= tau1 + eps {
                    let tc = next_curve as f64 * curve_dt;
                    let frac = ((tc - tau0) / (tau1 - tau0)).clamp(0.0, 1.0);
                    solvent_curve[next_curve] = x + frac * (x_new - x);
                    temperature_curve[next_curve] = temp + frac * (temp_new - temp);
                    next_curve += 1;
                }
                x = x_new;
                temp = temp_new;
                peak = peak.max(temp);
                sub += 1;
            }
            tau = next;
        }
        for i in next_curve..CURVE_POINTS {
            solvent_curve[i] = x;
            temperature_curve[i] = temp;
        }
        let bmi = bmi.unwrap_or(0.0);
        FilmExit {
            areal_mass_kg_m2: m_a,
            solvent_in_kg_m2: x0,
            solvent_exit_kg_m2: x,
            residual_solvent_frac: if m_a > 0.0 { x / m_a } else { 0.0 },
            binder_migration_index: bmi,
            dry_point_m: dry_point,
            exit_temperature_degc: temp,
            peak_temperature_degc: peak,
            solvent_curve_kg_m2: solvent_curve,
            temperature_curve_degc: temperature_curve,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Trajectory cache
// ---------------------------------------------------------------------------------------------

/// Relative width of a cache bin and of the zone-temperature change that clears the cache
/// (0.1 %, MODELS.md §3.2).
const CACHE_TOLERANCE_FRAC: f64 = 1e-3;

/// Film-element results under one set of zone air temperatures, keyed by the bin of the
/// element's areal mass and solvent-to-solids ratio. An entry holds the result of the first
/// element that fell in its bin; any element of the bin is within 0.1 % of it.
#[derive(Debug, Default)]
struct TrajectoryCache {
    air_temperature_degc: Vec<f64>,
    zones: Vec<ZoneConditions>,
    entries: HashMap<(i64, i64), FilmExit>,
}

fn cache_bin(value: f64) -> i64 {
    if value > 0.0 {
        (value.ln() / CACHE_TOLERANCE_FRAC.ln_1p()).round() as i64
    } else {
        i64::MIN
    }
}

impl TrajectoryCache {
    /// Makes the cache valid for the zone air temperatures `air`: kept if none moved by more
    /// than 0.1 % (of its value in °C, at least 0.01 K), else cleared and rebuilt.
    fn update_zones(&mut self, params: &DryingParams, model: &FilmElementModel, air: &[f64]) {
        let same = self.air_temperature_degc.len() == air.len()
            && self
                .air_temperature_degc
                .iter()
                .zip(air)
                .all(|(a, b)| (a - b).abs() <= CACHE_TOLERANCE_FRAC * a.abs().max(10.0));
        if !same {
            self.air_temperature_degc.clear();
            self.air_temperature_degc.extend_from_slice(air);
            self.zones = zone_conditions(params, &model.solvent, model.speed_m_s, air);
            self.entries.clear();
        }
    }

    fn get(&mut self, model: &FilmElementModel, areal_mass_kg_m2: f64, solvent_kg_m2: f64) -> &FilmExit {
        let ratio = if areal_mass_kg_m2 > 0.0 { solvent_kg_m2 / areal_mass_kg_m2 } else { solvent_kg_m2 };
        let key = (cache_bin(areal_mass_kg_m2), cache_bin(ratio));
        let zones = &self.zones;
        self.entries.entry(key).or_insert_with(|| model.integrate(zones, areal_mass_kg_m2, solvent_kg_m2))
    }
}

// ---------------------------------------------------------------------------------------------
// Segments leaving the dryer
// ---------------------------------------------------------------------------------------------

/// One MD segment at the dryer exit, aggregated over its CD cells.
#[derive(Clone, Copy, Debug)]
struct SegmentExit {
    /// Mean dry solids per side [kg/m²].
    areal_mass_kg_m2: f64,
    /// Mean solvent entering [kg/m²].
    solvent_in_kg_m2: f64,
    /// Mean wet thickness [m].
    wet_thickness_m: f64,
    /// Mean dried-film thickness h_dry [m].
    dry_thickness_m: f64,
    /// Mean exit thickness h_exit [m].
    exit_thickness_m: f64,
    /// Mean solvent leaving [kg/m²].
    solvent_exit_kg_m2: f64,
    /// Position where the whole width is dry; `None` if a cell is not dry.
    dry_point_m: Option<f64>,
    /// Mean exit film temperature [°C].
    exit_temperature_degc: f64,
    /// Highest film temperature of any cell [°C].
    peak_temperature_degc: f64,
    /// Highest BMI of any cell.
    bmi_max: f64,
    /// Highest residual of any cell.
    residual_max: f64,
    /// Mean solvent along the dryer (41 points) [kg/m²].
    solvent_curve_kg_m2: [f64; CURVE_POINTS],
}

impl SegmentExit {
    /// Mass-weighted residual of the segment, `X_exit/m_A` (0 when uncoated).
    fn residual_solvent_frac(&self) -> f64 {
        if self.areal_mass_kg_m2 > 0.0 {
            self.solvent_exit_kg_m2 / self.areal_mass_kg_m2
        } else {
            0.0
        }
    }

    /// Mean solvent at dryer position `s_m`, linear between the curve points [kg/m²].
    fn solvent_at(&self, s_m: f64, dryer_length_m: f64) -> f64 {
        let u = (s_m / dryer_length_m).clamp(0.0, 1.0) * (CURVE_POINTS - 1) as f64;
        let i = (u.floor() as usize).min(CURVE_POINTS - 2);
        let frac = u - i as f64;
        self.solvent_curve_kg_m2[i] + frac * (self.solvent_curve_kg_m2[i + 1] - self.solvent_curve_kg_m2[i])
    }
}

/// Exit state of one CD cell (per side).
#[derive(Clone, Copy, Debug)]
struct CellExit {
    residual_solvent_frac: f64,
    binder_migration_index: f64,
    dry_thickness_m: f64,
    dry: bool,
}

/// Everything the run keeps while segments leave the dryer.
struct Dryer<'a> {
    params: &'a DryingParams,
    model: FilmElementModel,
    cache: TrajectoryCache,
    cells: Vec<CellExit>,
}

impl Dryer<'_> {
    /// Dries segment `md` of `film` under the current cache conditions and aggregates it over
    /// the width; the per-cell results are left in `self.cells`.
    fn segment(&mut self, film: &WetFilm, md: usize) -> SegmentExit {
        let n_cd = film.areal_mass_kg_m2.n_cd;
        let model = self.model;
        let inv = 1.0 / n_cd as f64;
        let mut s = SegmentExit {
            areal_mass_kg_m2: 0.0,
            solvent_in_kg_m2: 0.0,
            wet_thickness_m: film.wet_thickness_m.row_mean(md),
            dry_thickness_m: 0.0,
            exit_thickness_m: 0.0,
            solvent_exit_kg_m2: 0.0,
            dry_point_m: Some(0.0),
            exit_temperature_degc: 0.0,
            peak_temperature_degc: f64::NEG_INFINITY,
            bmi_max: 0.0,
            residual_max: 0.0,
            solvent_curve_kg_m2: [0.0; CURVE_POINTS],
        };
        self.cells.clear();
        for cd in 0..n_cd {
            let m_a = film.areal_mass_kg_m2.get(md, cd).max(0.0);
            let x0 = film.solvent_mass_kg_m2.get(md, cd).max(0.0);
            let e = self.cache.get(&model, m_a, x0);
            // Solvent masses scale with the cell's own solids; fractions and temperatures are
            // those of its bin.
            let scale = if e.areal_mass_kg_m2 > 0.0 { m_a / e.areal_mass_kg_m2 } else { 1.0 };
            let residual = if m_a > 0.0 { e.residual_solvent_frac } else { 0.0 };
            let x_exit = if m_a > 0.0 { residual * m_a } else { e.solvent_exit_kg_m2 };
            let h_dry = m_a / (model.solid_density_kg_m3 * (1.0 - model.dry_porosity_frac));
            let x_pore = model.solvent_density_kg_m3 * model.dry_porosity_frac * h_dry;
            let h_exit = h_dry + (x_exit - x_pore).max(0.0) / model.solvent_density_kg_m3;
            s.areal_mass_kg_m2 += m_a * inv;
            s.solvent_in_kg_m2 += x0 * inv;
            s.dry_thickness_m += h_dry * inv;
            s.exit_thickness_m += h_exit * inv;
            s.solvent_exit_kg_m2 += x_exit * inv;
            s.dry_point_m = match (s.dry_point_m, e.dry_point_m) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            s.exit_temperature_degc += e.exit_temperature_degc * inv;
            s.peak_temperature_degc = s.peak_temperature_degc.max(e.peak_temperature_degc);
            s.bmi_max = s.bmi_max.max(e.binder_migration_index);
            s.residual_max = s.residual_max.max(residual);
            for (acc, x) in s.solvent_curve_kg_m2.iter_mut().zip(&e.solvent_curve_kg_m2) {
                *acc += x * scale * inv;
            }
            self.cells.push(CellExit {
                residual_solvent_frac: residual,
                binder_migration_index: e.binder_migration_index,
                dry_thickness_m: h_dry,
                dry: e.dry_point_m.is_some(),
            });
        }
        s
    }

    /// Heater load and power while `seg` is the segment at the exit (full-load evaporation,
    /// MODELS.md §3.2), with the zone air at `air`.
    fn heater_power_w(&self, film: &WetFilm, seg: &SegmentExit, air: &[f64]) -> f64 {
        let sides = film.sides as f64;
        let wv = film.coating_width_m * film.line_speed_m_s;
        let foil = film.foil.areal_mass_kg_m2();
        let web_solids = sides * seg.areal_mass_kg_m2;
        let web_mass = web_solids + foil;
        let web_heat = web_solids * self.model.solids_heat_capacity_j_kg_k + foil * film.foil.heat_capacity_j_kg_k;
        let load = HeaterLoad {
            evaporation_kg_s: sides * wv * (seg.solvent_in_kg_m2 - seg.solvent_exit_kg_m2),
            latent_heat_j_kg: self.model.solvent.latent_heat_j_kg(),
            web_mass_flow_kg_s: wv * web_mass,
            web_heat_capacity_j_kg_k: if web_mass > 0.0 { web_heat / web_mass } else { 0.0 },
            exit_temperature_degc: seg.exit_temperature_degc,
            inlet_temperature_degc: self.model.inlet_temperature_degc,
        };
        heater_power_w(self.params, air, &load)
    }
}

/// The film-element constants of `film` dried with `params`.
pub fn film_element_model(params: &DryingParams, film: &WetFilm) -> FilmElementModel {
    let slurry = &film.slurry;
    let recipe = &slurry.recipe;
    // A validated recipe always names a solvent; NMP only keeps this total.
    let solvent = recipe.solvent.solvent().unwrap_or(Solvent::NMP);
    FilmElementModel {
        solvent,
        solvent_density_kg_m3: recipe.solvent.density_kg_m3(),
        solvent_heat_capacity_j_kg_k: recipe.solvent.heat_capacity_j_kg_k(),
        solids_heat_capacity_j_kg_k: slurry.am_mass_frac_dry * recipe.active_material.heat_capacity_j_kg_k()
            + slurry.ca_mass_frac_dry * recipe.conductive_additive.heat_capacity_j_kg_k()
            + slurry.binder_mass_frac_dry * recipe.binder.heat_capacity_j_kg_k(),
        solid_density_kg_m3: slurry.solid_density_kg_m3,
        dry_porosity_frac: recipe.dry_film_porosity_frac,
        foil_heat_capacity_j_m2_k: film.foil.areal_mass_kg_m2() * film.foil.heat_capacity_j_kg_k / 2.0,
        falling_rate_onset_frac: params.falling_rate_onset_frac,
        residual_equilibrium_frac: params.residual_equilibrium_frac,
        migration_rate_limit_kg_m2_s: params.migration_rate_limit_kg_m2_s,
        speed_m_s: film.line_speed_m_s,
        integration_step_s: params.integration_step_s,
        inlet_temperature_degc: film.slurry_temperature_degc,
    }
}

// ---------------------------------------------------------------------------------------------
// Samples and result
// ---------------------------------------------------------------------------------------------

/// One drying sample (MODELS.md §3.3): the dryer and the segment leaving it. While the dryer
/// fills (`exit_position_m` is `None`) the exit fields show the first segment as it will leave
/// under the conditions of that instant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DryingSample {
    /// Plant time [s].
    pub t_s: f64,
    /// Stage time [s].
    pub stage_time_s: f64,
    /// Coating position of the segment at the exit `v·t − L_d` [m]; `None` while filling.
    pub exit_position_m: Option<f64>,
    /// Zone air temperatures, zone order (thermocouples σ 0.5 K) [°C].
    pub zone_air_temperature_degc: Vec<Reading>,
    /// Wet thickness of the exiting segment (CD mean) [m].
    pub wet_thickness_m: f64,
    /// Dried-film thickness h_dry per side (CD mean) [m].
    pub dry_thickness_m: f64,
    /// Film thickness per side at the exit h_exit (CD mean) [m].
    pub exit_coating_thickness_m: f64,
    /// Solvent per side at the exit (CD mean); measured = NIR residual × areal mass [kg/m²].
    pub solvent_mass_exit_kg_m2: Reading,
    /// Exit residual X_exit/m_A (NIR gauge σ 1e-4) [kg/kg].
    pub residual_solvent_frac: Reading,
    /// Where the whole width of the segment was dry; `None` = not dry [m].
    pub dry_point_m: Option<f64>,
    /// Solvent evaporated by the whole web at this instant (ramps while filling/emptying) [kg/s].
    pub evaporation_rate_kg_s: f64,
    /// Web temperature at the exit (pyrometer σ 1 K) [°C].
    pub web_temperature_exit_degc: Reading,
    /// Highest film temperature of the segment in the dryer [°C].
    pub max_film_temperature_degc: f64,
    /// Highest binder-migration index across the segment.
    pub binder_migration_index: f64,
    /// Heater power (fans included) [W].
    pub heater_power_w: f64,
    /// Any Warning-or-worse drying alarm active.
    pub defect_risk: bool,
    /// Fault labels active (empty for now).
    pub fault_labels: Vec<u32>,
}

impl SampleRecord for DryingSample {
    fn stage_time_s(&self) -> f64 {
        self.stage_time_s
    }

    fn legacy(&self, out: &mut LegacyRecord) {
        put(out, "Wet Thickness (m)", self.wet_thickness_m);
        put(out, "Dry Thickness (m)", self.dry_thickness_m);
        put(out, "Remaining Solvent (kg/m²)", self.solvent_mass_exit_kg_m2.value());
        put(out, "Evaporation Rate (kg/s)", self.evaporation_rate_kg_s);
        put(out, "Current Coating Thickness (m)", self.exit_coating_thickness_m);
        put_value(out, "Defect Risk", self.defect_risk);
    }
}

/// Solvent and film temperature along the dryer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DryingCurve {
    /// Position in the dryer [m].
    pub position_m: Vec<f64>,
    /// Solvent per side X [kg/m²].
    pub solvent_mass_kg_m2: Vec<f64>,
    /// Film temperature T_f [°C].
    pub film_temperature_degc: Vec<f64>,
}

/// Final result of one dryer run (MODELS.md §3.3). "Nominal" values follow the set-point
/// element (nominal areal mass, set-point air) through the dryer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DryingResult {
    /// Stage duration `T_coat + L_d/v` [s].
    pub duration_s: f64,
    /// Dryer length L_d [m].
    pub dryer_length_m: f64,
    /// Residence time `L_d/v` [s].
    pub residence_time_s: f64,
    /// Nominal drying curve at 41 points.
    pub drying_curve: DryingCurve,
    /// Nominal dry point; `None` = not dry [m].
    pub dry_point_m: Option<f64>,
    /// Nominal exit residual [kg/kg].
    pub residual_solvent_frac: f64,
    /// Nominal binder-migration index.
    pub binder_migration_index: f64,
    /// Nominal exit film temperature [°C].
    pub exit_temperature_degc: f64,
    /// Nominal peak film temperature [°C].
    pub peak_film_temperature_degc: f64,
    /// Nominal wet thickness [m].
    pub wet_thickness_m: f64,
    /// Nominal dried-film thickness per side h_dry [m].
    pub dry_thickness_m: f64,
    /// Nominal exit thickness per side [m].
    pub exit_coating_thickness_m: f64,
    /// Nominal exit solvent per side [kg/m²].
    pub solvent_mass_exit_kg_m2: f64,
    /// Nominal evaporation of the whole web at full load [kg/s].
    pub evaporation_rate_kg_s: f64,
    /// Mean exit residual over the roll [kg/kg].
    pub mean_residual_solvent_frac: f64,
    /// Highest residual of any grid cell [kg/kg].
    pub worst_residual_solvent_frac: f64,
    /// MD position (segment start, coating coordinates) of the highest residual [m].
    pub worst_residual_position_m: f64,
    /// CD position (cell centre) of the highest residual [m].
    pub worst_residual_cd_position_m: f64,
    /// Highest BMI of any grid cell.
    pub worst_binder_migration_index: f64,
    /// MD position (segment start) of the highest BMI [m].
    pub worst_bmi_position_m: f64,
    /// CD position (cell centre) of the highest BMI [m].
    pub worst_bmi_cd_position_m: f64,
    /// Segments flagged wet (residual above spec or not dry).
    pub wet_segments: u32,
    /// Segments flagged with blister risk (BMI > 1).
    pub blister_segments: u32,
    /// Mean heater power over the stage [W].
    pub heater_power_w: f64,
    /// Heater and fan energy ∫P dt [J].
    pub energy_j: f64,
    /// Solvent evaporated from the roll [kg].
    pub solvent_evaporated_kg: f64,
    /// Solvent recovery energy (evaporated × e_rec) [J].
    pub recovery_energy_j: f64,
    /// Any Warning-or-worse alarm raised during the run.
    pub defect_risk: bool,
    /// Every alarm event of the run.
    pub alarms: Vec<Alarm>,
    /// No alarm of severity Alarm or worse was raised.
    pub accepted: bool,
}

impl ResultRecord for DryingResult {
    fn legacy(&self, out: &mut LegacyRecord) {
        put_object(out, "Final Properties", |p| {
            put(p, "Wet Thickness (m)", self.wet_thickness_m);
            put(p, "Dry Thickness (m)", self.dry_thickness_m);
            put(p, "Remaining Solvent (kg/m²)", self.solvent_mass_exit_kg_m2);
            put(p, "Evaporation Rate (kg/s)", self.evaporation_rate_kg_s);
            put(p, "Current Coating Thickness (m)", self.exit_coating_thickness_m);
            put_value(p, "Defect Risk", self.defect_risk);
        });
    }

    fn accepted(&self) -> bool {
        self.accepted
    }

    fn summary(&self) -> Vec<(&'static str, f64)> {
        let mut v = Vec::with_capacity(6);
        if let Some(d) = self.dry_point_m {
            v.push(("dry point m", d));
        }
        v.push(("residual solvent kg/kg", self.residual_solvent_frac));
        v.push(("BMI", self.binder_migration_index));
        v.push(("exit temperature °C", self.exit_temperature_degc));
        v.push(("heater power kW", self.heater_power_w / 1e3));
        v.push(("energy kWh", self.energy_j / 3.6e6));
        v
    }
}

// ---------------------------------------------------------------------------------------------
// The stage
// ---------------------------------------------------------------------------------------------

/// Time constant of the zone air temperature following its set point [s] (MODELS.md §3.2).
pub const ZONE_LAG_S: f64 = 60.0;

/// Zone thermocouple (σ_a 0.5 K).
const ZONE_THERMOCOUPLE: Sensor = Sensor::absolute(0.5);
/// Exit web pyrometer (σ_a 1 K).
const EXIT_PYROMETER: Sensor = Sensor::absolute(1.0);
/// NIR residual-solvent gauge (σ_a 1e-4).
const NIR_GAUGE: Sensor = Sensor::absolute(1e-4);

/// The convective dryer (MODELS.md §3).
pub struct Drying;

/// Raises `code` at Warning above `warning` and at Alarm above `alarm` (one code, two levels).
/// A change of level clears the old event and raises the new one; each threshold clears with
/// the 2 % hysteresis of MODELS.md §0.5.
#[allow(clippy::too_many_arguments)]
pub(crate) fn graded_high(
    tracker: &mut AlarmTracker,
    level: &mut Option<Severity>,
    stage_time_s: f64,
    code: &str,
    signal: &str,
    value: f64,
    warning: f64,
    alarm: f64,
    position_m: Option<f64>,
    message: impl Fn(Severity) -> String,
) {
    let above = |threshold: f64, active: bool| {
        if active {
            value >= threshold - HYSTERESIS_FRAC * threshold.abs()
        } else {
            value > threshold
        }
    };
    let new = if above(alarm, *level == Some(Severity::Alarm)) {
        Some(Severity::Alarm)
    } else if above(warning, level.is_some()) {
        Some(Severity::Warning)
    } else {
        None
    };
    if new == *level {
        return;
    }
    if let Some(old) = *level {
        let threshold = if old == Severity::Alarm { alarm } else { warning };
        let scope = AlarmScope { position_m, ..AlarmScope::default() };
        tracker.set(stage_time_s, code, old, false, signal, value, threshold, scope, String::new);
    }
    if let Some(sev) = new {
        let threshold = if sev == Severity::Alarm { alarm } else { warning };
        let scope = AlarmScope { position_m, ..AlarmScope::default() };
        tracker.set(stage_time_s, code, sev, true, signal, value, threshold, scope, || message(sev));
    }
    *level = new;
}

fn forward<S>(tracker: &AlarmTracker, sent: &mut usize, sink: &mut dyn StageSink<S>) {
    for a in &tracker.events[*sent..] {
        sink.alarm(a);
    }
    *sent = tracker.len();
}

impl Stage for Drying {
    const KIND: StageKind = StageKind::Drying;
    type Params = DryingParams;
    type Input = WetFilm;
    type Output = DryElectrode;
    type Sample = DryingSample;
    type Result = DryingResult;
    type MachineState = ();

    fn run(
        params: &DryingParams,
        mut film: WetFilm,
        _machine: &mut (),
        ctx: &mut StageCtx<'_>,
        sink: &mut dyn StageSink<DryingSample>,
    ) -> StageRun<DryElectrode, DryingResult> {
        let v = film.line_speed_m_s;
        let dryer_length = params.dryer_length_m();
        let residence = dryer_length / v;
        let t_coat = film.coating_duration_s;
        let duration = t_coat + residence;
        let n_md = film.areal_mass_kg_m2.n_md;
        let n_cd = film.areal_mass_kg_m2.n_cd;
        let seg_len = film.areal_mass_kg_m2.segment_length_m;
        let cd_width = film.areal_mass_kg_m2.cd_cell_width_m();
        let sides = film.sides as f64;

        let mut tracker = AlarmTracker::new(Self::KIND, ctx.line, ctx.start_t_s);
        let mut sent = 0usize;
        let mut bmi_level: Option<Severity> = None;
        let mut zone_level: Option<Severity> = None;

        let set_points: Vec<f64> = params.zones.iter().map(|z| z.air_temperature_degc).collect();
        // Zone air starts at its set point and follows it with a 60 s lag; the set points are
        // constant within a run (fault excursions act through them).
        let mut air = set_points.clone();
        let mut air_time = 0.0;
        // F05 (MODELS.md §13): a zone's air set point moves by delta_k while the fault is
        // active; the air follows with the zone lag.
        let excursions: Vec<(usize, f64, &FaultSpec, u32)> = ctx
            .faults
            .of(FaultCode::F05DryZoneTempExcursion)
            .map(|f| {
                let m = &f.spec.magnitude;
                let zone = (m.zone.unwrap_or(2).max(1) as usize - 1).min(set_points.len() - 1);
                (zone, m.delta_k.unwrap_or(-50.0), &f.spec, f.label_id)
            })
            .collect();
        let target_at = |t: f64| -> Vec<f64> {
            let mut sp = set_points.clone();
            for (zone, delta, f, _) in &excursions {
                sp[*zone] += f.level(t) * delta;
            }
            sp
        };
        let advance_air = |air: &mut Vec<f64>, from: f64, to: f64| {
            let k = (-(to - from).max(0.0) / ZONE_LAG_S).exp();
            let target = target_at(to);
            for (a, sp) in air.iter_mut().zip(&target) {
                *a = sp + (*a - sp) * k;
            }
        };
        // A segment is touched when its time in the dryer overlaps the excursion and the
        // air's settling after it (three lags).
        let excursion_hits = |x_md: f64| -> Vec<u32> {
            let (t_in, t_out) = (x_md / v, (x_md + dryer_length) / v);
            excursions
                .iter()
                .filter(|(_, _, f, _)| t_in < f.end() + 3.0 * ZONE_LAG_S && f.onset < t_out)
                .map(|e| e.3)
                .collect()
        };
        let mut regions: Vec<crate::fault::FaultRegion> = Vec::new();

        let mut dryer = Dryer {
            params,
            model: film_element_model(params, &film),
            cache: TrajectoryCache::default(),
            cells: Vec::with_capacity(n_cd),
        };

        let mut residual = film.areal_mass_kg_m2.like(0.0);
        let mut porosity = film.areal_mass_kg_m2.like(dryer.model.dry_porosity_frac);
        let mut dry_thickness = film.areal_mass_kg_m2.like(0.0);
        let mut bmi_grid = film.areal_mass_kg_m2.like(0.0);
        if film.segment_flags.len() < n_md {
            film.segment_flags.resize(n_md, SegmentFlags::default());
        }

        let mut worst_res = (0.0f64, 0.0f64, 0.0f64);
        let mut worst_bmi = (0.0f64, 0.0f64, 0.0f64);
        let (mut wet_segments, mut blister_segments) = (0u32, 0u32);
        let mut residual_sum = 0.0;
        let mut solvent_evaporated = 0.0;
        let mut last: Option<SegmentExit> = None;
        let mut next_md = 0usize;

        let mut energy = 0.0;
        let mut prev_power: Option<(f64, f64)> = None;

        for t in sample_times(duration, params.sample_interval_s) {
            // Segments whose leading edge reaches the exit by t, each at its own exit time.
            while next_md < n_md {
                let x_md = next_md as f64 * seg_len;
                let t_exit = (x_md + dryer_length) / v;
                if t_exit > t {
                    break;
                }
                advance_air(&mut air, air_time, t_exit);
                air_time = t_exit;
                dryer.cache.update_zones(params, &dryer.model, &air);
                let seg = dryer.segment(&film, next_md);

                let mut wet = false;
                let mut blister = false;
                for (cd, c) in dryer.cells.iter().enumerate() {
                    residual.set(next_md, cd, c.residual_solvent_frac);
                    bmi_grid.set(next_md, cd, c.binder_migration_index);
                    dry_thickness.set(next_md, cd, c.dry_thickness_m);
                    porosity.set(next_md, cd, dryer.model.dry_porosity_frac);
                    wet |= !c.dry || c.residual_solvent_frac > params.residual_solvent_max_frac;
                    blister |= c.binder_migration_index > 1.0;
                    let y = (cd as f64 + 0.5) * cd_width;
                    if c.residual_solvent_frac > worst_res.0 {
                        worst_res = (c.residual_solvent_frac, x_md, y);
                    }
                    if c.binder_migration_index > worst_bmi.0 {
                        worst_bmi = (c.binder_migration_index, x_md, y);
                    }
                }
                for label_id in excursion_hits(x_md) {
                    ctx.faults.touch(label_id, At { stage_time_s: t_exit, position_m: Some(x_md), ..At::default() });
                    match regions.iter_mut().find(|r| r.label_id == label_id) {
                        Some(r) => r.md_end_m = x_md + seg_len,
                        None => regions.push(crate::fault::FaultRegion {
                            label_id,
                            md_start_m: x_md,
                            md_end_m: x_md + seg_len,
                            cd_start_m: 0.0,
                            cd_end_m: film.coating_width_m,
                        }),
                    }
                }
                if wet {
                    film.segment_flags[next_md].set(SegmentFlags::WET);
                    wet_segments += 1;
                }
                if blister {
                    film.segment_flags[next_md].set(SegmentFlags::BLISTER_RISK);
                    blister_segments += 1;
                }
                residual_sum += seg.residual_solvent_frac();
                let seg_length = (film.roll_length_m - x_md).clamp(0.0, seg_len);
                solvent_evaporated +=
                    sides * film.coating_width_m * seg_length * (seg.solvent_in_kg_m2 - seg.solvent_exit_kg_m2);

                let at = Some(x_md);
                let stage_t = t_exit;
                let scope = || AlarmScope { position_m: at, ..AlarmScope::default() };
                let not_dry = seg.dry_point_m.is_none() && seg.areal_mass_kg_m2 > 0.0;
                tracker.set(
                    stage_t,
                    "DRY_NOT_DRY",
                    Severity::Alarm,
                    not_dry,
                    "dry_point_m",
                    dryer_length,
                    dryer_length,
                    scope(),
                    || format!("film at {x_md:.1} m leaves the dryer before reaching its dry point"),
                );
                let limit = params.residual_solvent_max_frac;
                tracker.high(
                    stage_t,
                    "DRY_RESIDUAL_SOLVENT_HIGH",
                    Severity::Alarm,
                    "residual_solvent_frac",
                    seg.residual_max,
                    limit,
                    scope(),
                    || format!("residual solvent {:.2e} above spec {limit:.1e} at {x_md:.1} m", seg.residual_max),
                );
                graded_high(
                    &mut tracker,
                    &mut bmi_level,
                    stage_t,
                    "DRY_BINDER_MIGRATION",
                    "binder_migration_index",
                    seg.bmi_max,
                    0.9,
                    1.0,
                    at,
                    |sev| format!("binder-migration index {:.3} at {x_md:.1} m ({sev:?} band)", seg.bmi_max),
                );
                let t_max = params.max_film_temperature_degc;
                tracker.high(
                    stage_t,
                    "DRY_FILM_OVERTEMPERATURE",
                    Severity::Warning,
                    "max_film_temperature_degc",
                    seg.peak_temperature_degc,
                    t_max,
                    scope(),
                    || {
                        format!(
                            "film reached {:.1} °C, above the binder limit {t_max:.0} °C",
                            seg.peak_temperature_degc
                        )
                    },
                );
                forward(&tracker, &mut sent, sink);

                last = Some(seg);
                next_md += 1;
            }

            advance_air(&mut air, air_time, t);
            air_time = t;
            let deviation = air.iter().zip(&set_points).map(|(a, s)| (a - s).abs()).fold(0.0, f64::max);
            graded_high(
                &mut tracker,
                &mut zone_level,
                t,
                "DRY_ZONE_DEVIATION",
                "zone_air_temperature_degc",
                deviation,
                5.0,
                15.0,
                None,
                |sev| format!("zone air {deviation:.1} K off its set point ({sev:?} band)"),
            );
            forward(&tracker, &mut sent, sink);

            let seg = match last {
                Some(s) => s,
                None => {
                    dryer.cache.update_zones(params, &dryer.model, &air);
                    dryer.segment(&film, 0)
                }
            };
            let power = dryer.heater_power_w(&film, &seg, &air);
            if let Some((t0, p0)) = prev_power {
                energy += 0.5 * (p0 + power) * (t - t0);
            }
            prev_power = Some((t, power));

            let x_exit = v * t - dryer_length;
            let s_lo = (v * (t - t_coat)).clamp(0.0, dryer_length);
            let s_hi = (v * t).clamp(0.0, dryer_length);
            let evaporation = sides
                * film.coating_width_m
                * v
                * (seg.solvent_at(s_lo, dryer_length) - seg.solvent_at(s_hi, dryer_length)).max(0.0);

            // a silent excursion: the thermocouple of the zone keeps reading its set point
            let mut shown = air.clone();
            for (zone, _, f, _) in &excursions {
                if !f.sensor_visible {
                    shown[*zone] = set_points[*zone];
                }
            }
            let zone_readings: Vec<Reading> = shown
                .iter()
                .zip(&air)
                .map(|(&m, &a)| Reading {
                    true_value: a,
                    ..ZONE_THERMOCOUPLE.measure(m, ctx.sensor_noise, ctx.sensor_rng)
                })
                .collect();
            let residual_reading = NIR_GAUGE.measure(seg.residual_solvent_frac(), ctx.sensor_noise, ctx.sensor_rng);
            let exit_reading = EXIT_PYROMETER.measure(seg.exit_temperature_degc, ctx.sensor_noise, ctx.sensor_rng);
            let residual_reading = ctx.faults.corrupt("residual_solvent_frac", t, residual_reading);
            let exit_reading = ctx.faults.corrupt("web_temperature_exit_degc", t, exit_reading);
            sink.sample(DryingSample {
                t_s: ctx.start_t_s + t,
                stage_time_s: t,
                exit_position_m: (x_exit >= -1e-9 * dryer_length).then_some(x_exit.max(0.0)),
                zone_air_temperature_degc: zone_readings,
                wet_thickness_m: seg.wet_thickness_m,
                dry_thickness_m: seg.dry_thickness_m,
                exit_coating_thickness_m: seg.exit_thickness_m,
                solvent_mass_exit_kg_m2: Reading {
                    true_value: seg.solvent_exit_kg_m2,
                    measured: residual_reading.measured.map(|r| r * seg.areal_mass_kg_m2),
                },
                residual_solvent_frac: residual_reading,
                dry_point_m: seg.dry_point_m,
                evaporation_rate_kg_s: evaporation,
                web_temperature_exit_degc: exit_reading,
                max_film_temperature_degc: seg.peak_temperature_degc,
                binder_migration_index: seg.bmi_max,
                heater_power_w: power,
                defect_risk: tracker.any_active(Severity::Warning),
                fault_labels: ctx.faults.labels_at(t, (x_exit >= 0.0).then_some(x_exit)),
            });
        }

        // The nominal element: set-point air, nominal areal mass and solvent ratio.
        let nominal = nominal_film_exit(params, &film);
        let model = &dryer.model;
        let m_nom = film.nominal_areal_mass_kg_m2;
        let h_dry_nom = m_nom / (model.solid_density_kg_m3 * (1.0 - model.dry_porosity_frac));
        let x_pore_nom = model.solvent_density_kg_m3 * model.dry_porosity_frac * h_dry_nom;
        let curve = DryingCurve {
            position_m: (0..CURVE_POINTS).map(|k| dryer_length * k as f64 / (CURVE_POINTS - 1) as f64).collect(),
            solvent_mass_kg_m2: nominal.solvent_curve_kg_m2.to_vec(),
            film_temperature_degc: nominal.temperature_curve_degc.to_vec(),
        };
        let result = DryingResult {
            duration_s: duration,
            dryer_length_m: dryer_length,
            residence_time_s: residence,
            drying_curve: curve,
            dry_point_m: nominal.dry_point_m,
            residual_solvent_frac: nominal.residual_solvent_frac,
            binder_migration_index: nominal.binder_migration_index,
            exit_temperature_degc: nominal.exit_temperature_degc,
            peak_film_temperature_degc: nominal.peak_temperature_degc,
            wet_thickness_m: film.nominal_wet_thickness_m,
            dry_thickness_m: h_dry_nom,
            exit_coating_thickness_m: h_dry_nom
                + (nominal.solvent_exit_kg_m2 - x_pore_nom).max(0.0) / model.solvent_density_kg_m3,
            solvent_mass_exit_kg_m2: nominal.solvent_exit_kg_m2,
            evaporation_rate_kg_s: sides
                * film.coating_width_m
                * v
                * (nominal.solvent_in_kg_m2 - nominal.solvent_exit_kg_m2),
            mean_residual_solvent_frac: if n_md > 0 { residual_sum / n_md as f64 } else { 0.0 },
            worst_residual_solvent_frac: worst_res.0,
            worst_residual_position_m: worst_res.1,
            worst_residual_cd_position_m: worst_res.2,
            worst_binder_migration_index: worst_bmi.0,
            worst_bmi_position_m: worst_bmi.1,
            worst_bmi_cd_position_m: worst_bmi.2,
            wet_segments,
            blister_segments,
            heater_power_w: if duration > 0.0 { energy / duration } else { 0.0 },
            energy_j: energy,
            solvent_evaporated_kg: solvent_evaporated,
            recovery_energy_j: solvent_evaporated * params.solvent_recovery_energy_j_kg,
            defect_risk: tracker.any_raised(Severity::Warning),
            accepted: !tracker.any_raised(Severity::Alarm),
            alarms: tracker.events,
        };
        film.fault_regions.extend(regions);
        let output = DryElectrode {
            film,
            residual_solvent_frac: residual,
            dry_porosity_frac: porosity,
            dry_thickness_m: dry_thickness,
            binder_migration_index: bmi_grid,
        };
        StageRun { output, result, duration_s: duration }
    }
}

/// The set-point element of `film` dried with `params` at set-point air: nominal areal mass,
/// solvent `m_A·(1 − w_s)/w_s` (MODELS.md §2.2), slurry temperature at the die.
pub fn nominal_film_exit(params: &DryingParams, film: &WetFilm) -> FilmExit {
    let model = film_element_model(params, film);
    let set_points: Vec<f64> = params.zones.iter().map(|z| z.air_temperature_degc).collect();
    let zones = zone_conditions(params, &model.solvent, model.speed_m_s, &set_points);
    let m_a = film.nominal_areal_mass_kg_m2;
    let w_s = film.slurry.solids_mass_frac;
    let x0 = if w_s > 0.0 { m_a * (1.0 - w_s) / w_s } else { 0.0 };
    model.integrate(&zones, m_a, x0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_factor_has_three_periods() {
        assert_eq!(drying_rate_factor(1.0, 0.5, 0.1), 1.0);
        assert!((drying_rate_factor(0.3, 0.5, 0.1) - 0.5).abs() < 1e-12);
        assert_eq!(drying_rate_factor(0.05, 0.5, 0.1), 0.0);
        // degenerate X_cr = X_eq never divides by zero
        assert_eq!(drying_rate_factor(0.1, 0.1, 0.1), 1.0);
        assert_eq!(drying_rate_factor(0.09, 0.1, 0.1), 0.0);
    }

    #[test]
    fn impingement_coefficients_follow_martin_and_lewis() {
        let h = heat_transfer_coeff_w_m2_k(40.0, 15.0, 10.0, 2.0 / 3.0);
        assert!((h - 40.0 * 1.5f64.powf(2.0 / 3.0)).abs() < 1e-12);
        // air at 25 °C ≈ 1.184 kg/m³
        assert!((air_density_kg_m3(25.0) - 1.184).abs() < 2e-3);
        let beta = mass_transfer_coeff_m_s(h, 130.0, 3.0);
        let expected = h / (air_density_kg_m3(130.0) * 1007.0 * 3.0f64.powf(2.0 / 3.0));
        assert!((beta - expected).abs() < 1e-15);
    }

    #[test]
    fn evaporation_never_condenses() {
        assert_eq!(evaporation_flux_kg_m2_s(0.03, 1.0, 0.01, 0.02), 0.0);
        assert!((evaporation_flux_kg_m2_s(0.03, 0.5, 0.03, 0.01) - 0.03 * 0.5 * 0.02).abs() < 1e-15);
    }

    #[test]
    fn cache_bins_are_a_tenth_of_a_percent_wide() {
        assert_eq!(cache_bin(1.0), 0);
        assert_eq!(cache_bin(1.0004), 0);
        assert_eq!(cache_bin(1.0006), 1);
        assert_eq!(cache_bin(0.0), i64::MIN);
    }

    #[test]
    fn graded_alarm_changes_level_with_one_code() {
        let mut t = AlarmTracker::new(StageKind::Drying, crate::Line::Anode, 0.0);
        let mut level = None;
        let msg = |_s: Severity| String::new();
        graded_high(&mut t, &mut level, 0.0, "C", "v", 0.95, 0.9, 1.0, None, msg);
        assert_eq!(level, Some(Severity::Warning));
        graded_high(&mut t, &mut level, 1.0, "C", "v", 1.05, 0.9, 1.0, None, msg);
        assert_eq!(level, Some(Severity::Alarm));
        // inside the hysteresis band of the alarm threshold: stays
        graded_high(&mut t, &mut level, 2.0, "C", "v", 0.99, 0.9, 1.0, None, msg);
        assert_eq!(level, Some(Severity::Alarm));
        graded_high(&mut t, &mut level, 3.0, "C", "v", 0.5, 0.9, 1.0, None, msg);
        assert_eq!(level, None);
        // raised W, cleared W + raised A, cleared A
        assert_eq!(t.events.len(), 4);
        assert!(!t.any_active(Severity::Info));
    }
}
