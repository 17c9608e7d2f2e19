//! The lumped-stoichiometry cell model that links the process to cell performance
//! (MODELS.md §12): open-circuit potentials (Chen 2020), electrode capacities, SEI
//! passivation and growth, lithium plating, internal shorts, one RC element and the
//! resistance model of §12.3.
//!
//! Formation (§10) and aging (§11) drive it. A cell is two flat values: the constants
//! ([`CellConstants`], built once per cell from its [`FilledCell`]) and the state
//! ([`CellState`] `{ y, x, q1_ah, q2_ah, q_pl_ah, v1_v }`), advanced by explicit Euler with
//! [`CellState::step`]. Temperature enters through [`ThermalFactors`], computed once per
//! temperature. Nothing here allocates, so the stepping loops of formation and aging stay
//! tight.
//!
//! ```text
//!   FilledCell ──► CellConstants ─┐
//!   temperature ─► ThermalFactors ┼─► CellState::step(I, U_n, OCV, dt) ─► y, x, Q₁, Q₂, Q_pl, V₁
//!   CellState::pristine ──────────┘        V = OCV(y, x) + I·R₀(T) + V₁
//! ```

use crate::cell::{AssembledCell, FilledCell};
use crate::consts::WATER_MOLAR_MASS_KG_MOL;
use crate::consts::{arrhenius, FARADAY_C_MOL, GAS_CONSTANT_J_MOL_K, REFERENCE_TEMPERATURE_K, SECONDS_PER_HOUR};
use crate::material::{ActiveMaterial, Electrolyte, Separator};
use crate::vexp::{self, exp_n};
use serde::{Deserialize, Serialize};

/// Centre of the SEI gate σ(U_n): SEI forms below ≈ 0.8 V vs Li [L] (§12.2).
pub const SEI_GATE_POTENTIAL_V: f64 = 0.8;
/// Width of the SEI gate σ(U_n) [C].
pub const SEI_GATE_WIDTH_V: f64 = 0.03;
/// Reference potential of the SOC factor θ(U_n) [C].
pub const SOC_FACTOR_POTENTIAL_V: f64 = 0.13;
/// Width of the SOC factor θ(U_n) [C].
pub const SOC_FACTOR_WIDTH_V: f64 = 0.10;
/// Passivation charge per graphite surface q₁ (67 C/m²) [C].
pub const PASSIVATION_CHARGE_AH_M2: f64 = 0.0185;
/// Passivation time constant τ₁ [C].
pub const PASSIVATION_TIME_S: f64 = 3600.0;
/// Activation energy of SEI passivation [C].
pub const PASSIVATION_ACTIVATION_J_MOL: f64 = 30e3;
/// Solvent-diffusion growth constant K₂ [(Ah/m²)²/s] [C].
pub const GROWTH_RATE_AH2_M4_S: f64 = 1e-12;
/// Growth offset q₂₀ [Ah/m²] [C].
pub const GROWTH_OFFSET_AH_M2: f64 = 1e-4;
/// Activation energy of SEI growth (50–70 kJ/mol [L]) [C].
pub const GROWTH_ACTIVATION_J_MOL: f64 = 55e3;
/// Anode stoichiometry where plating starts [C].
pub const PLATING_ONSET_STOICH: f64 = 0.97;
/// Stoichiometry range over which plating takes all of the excess current [C].
pub const PLATING_RAMP_STOICH: f64 = 0.03;
/// Time constant of the RC element τ_RC [C].
pub const RC_TIME_CONSTANT_S: f64 = 60.0;
/// Bruggeman exponent b (as in Chen 2020) [L].
pub const BRUGGEMAN_EXPONENT: f64 = 1.5;
/// Exchange current density of the cathode i₀,c [C].
pub const CATHODE_EXCHANGE_CURRENT_A_M2: f64 = 2.0;
/// Exchange current density of the anode i₀,a [C].
pub const ANODE_EXCHANGE_CURRENT_A_M2: f64 = 1.5;
/// Diffusion/polarisation lump r_d [C].
pub const DIFFUSION_ASR_OHM_M2: f64 = 5.9e-4;
/// Activation energy of the charge-transfer and diffusion resistances [C].
pub const CHARGE_TRANSFER_ACTIVATION_J_MOL: f64 = 50e3;
/// SEI partial molar volume V̄ (PyBaMM default) [L].
pub const SEI_MOLAR_VOLUME_M3_MOL: f64 = 9.585e-5;
/// SEI resistivity ρ_SEI (PyBaMM default) [L].
pub const SEI_RESISTIVITY_OHM_M: f64 = 2e5;
/// Current-collector geometry factor k for a tab at one end [L].
pub const TAB_FACTOR_END: f64 = 3.0;
/// Current-collector geometry factor k for a centre tab or tabs at both ends [L].
pub const TAB_FACTOR_DISTRIBUTED: f64 = 12.0;
/// Pulse length of the end-of-line resistance proxy DCR_10s [s].
pub const DCR_PULSE_S: f64 = 10.0;
/// Pristine cathode stoichiometry y₀ (NMC811) [L].
pub const PRISTINE_CATHODE_STOICH: f64 = 1.0;
/// Pristine anode stoichiometry x₀ (graphite) [L].
pub const PRISTINE_ANODE_STOICH: f64 = 0.0;
/// Smallest wetting fraction the model accepts; a dry cell would have no active area and
/// divide by zero [E].
pub const MIN_WETTING_FRAC: f64 = 1e-3;
/// Smallest short resistance the model accepts (a dead short) [E].
pub const MIN_SHORT_RESISTANCE_OHM: f64 = 1e-3;

// ---------------------------------------------------------------------------------------
// Open-circuit potentials
// ---------------------------------------------------------------------------------------

/// `tanh(z) = 1 − 2/(exp(2z) + 1)` from `exp(2z)`: one `exp` instead of libm's `tanh`
/// (about twice as fast; absolute error below 1e-15, exact limits ±1 without overflow to
/// NaN). The OCP fits are evaluated once or twice per integration step of every cell, so
/// this is the hot path; the fits take their `exp`s as arguments so that several can be
/// evaluated side by side ([`exp_n`]).
#[inline(always)]
fn tanh_from_exp(exp_2z: f64) -> f64 {
    1.0 - 2.0 / (exp_2z + 1.0)
}

/// [`tanh_from_exp`] of every element, as one loop so that the divisions are packed.
#[inline(always)]
fn tanhs_from_exps<const N: usize>(exp_2z: [f64; N]) -> [f64; N] {
    let mut t = [0.0; N];
    for (t, e) in t.iter_mut().zip(exp_2z) {
        *t = tanh_from_exp(e);
    }
    t
}

/// NMC811 open-circuit potential vs Li/Li⁺ (Chen et al. 2020, LG M50 fit; MODELS.md §12.2)
/// [V]; `y` is clamped to [0, 1].
#[inline]
pub fn cathode_ocp_chen2020_v(y: f64) -> f64 {
    let y = y.clamp(0.0, 1.0);
    cathode_ocp_from_exps(y, exp_n(cathode_ocp_exponents(y)))
}

/// The exponents `2z` of the three `tanh(z)` terms of the NMC811 fit at the clamped `y`.
#[inline(always)]
fn cathode_ocp_exponents(y: f64) -> [f64; 3] {
    [2.0 * (18.5138 * (y - 0.5542)), 2.0 * (15.7890 * (y - 0.3117)), 2.0 * (15.9308 * (y - 0.3120))]
}

/// The NMC811 fit at the clamped `y` from the `exp`s of [`cathode_ocp_exponents`] [V].
#[inline(always)]
fn cathode_ocp_from_exps(y: f64, e: [f64; 3]) -> f64 {
    cathode_ocp_from_tanhs(y, tanhs_from_exps(e))
}

/// The NMC811 fit at the clamped `y` from its three `tanh` values [V].
#[inline(always)]
fn cathode_ocp_from_tanhs(y: f64, t: [f64; 3]) -> f64 {
    -0.8090 * y + 4.4875 - 0.0428 * t[0] - 17.7326 * t[1] + 17.5842 * t[2]
}

/// Both electrode potentials `(U_p(y), U_n(x))` [V], bit-identical to
/// [`cathode_ocp_chen2020_v`] and [`anode_ocp_chen2020_v`] but with their seven `exp`s
/// evaluated side by side in one [`exp_n`] (the per-step hot path of formation).
#[inline(always)]
pub fn electrode_potentials_v(y: f64, x: f64) -> (f64, f64) {
    let y = y.clamp(0.0, 1.0);
    let [c0, c1, c2] = cathode_ocp_exponents(y);
    let [a0, a1, a2, a3] = anode_ocp_exponents(x);
    // eight lanes (the last a copy) and all tanh divisions at once: two packed operations each
    let e = exp_n([c0, c1, c2, a0, a1, a2, a3, a3]);
    let t = tanhs_from_exps(e);
    (cathode_ocp_from_tanhs(y, [t[0], t[1], t[2]]), anode_ocp_from_tanhs(e[3], [t[4], t[5], t[6]]))
}

/// Graphite open-circuit potential vs Li/Li⁺ (Chen et al. 2020, LG M50 fit; MODELS.md §12.2)
/// [V]; `x` is clamped to [0, 1].
#[inline]
pub fn anode_ocp_chen2020_v(x: f64) -> f64 {
    anode_ocp_from_exps(exp_n(anode_ocp_exponents(x)))
}

/// The four exponents of the graphite fit at `x` (clamped to [0, 1]): `−39.3631·x` and
/// `2z` of its three `tanh(z)` terms. [`anode_ocp_chen2020_v`] is
/// `anode_ocp_from_exps(exp_n(exponents))`; the split lets the `exp`s of several terms or
/// cells be evaluated side by side, and aging carry them forward from step to step.
#[inline(always)]
fn anode_ocp_exponents(x: f64) -> [f64; 4] {
    let x = x.clamp(0.0, 1.0);
    [-39.3631 * x, 2.0 * (29.8538 * (x - 0.1234)), 2.0 * (14.9159 * (x - 0.2769)), 2.0 * (30.4444 * (x - 0.6103))]
}

/// The graphite fit from the `exp`s of [`anode_ocp_exponents`] [V].
#[inline(always)]
fn anode_ocp_from_exps(e: [f64; 4]) -> f64 {
    anode_ocp_from_tanhs(e[0], tanhs_from_exps([e[1], e[2], e[3]]))
}

/// The graphite fit from `exp(−39.3631·x)` and its three `tanh` values [V].
#[inline(always)]
fn anode_ocp_from_tanhs(e0: f64, t: [f64; 3]) -> f64 {
    1.9793 * e0 + 0.2482 - 0.0909 * t[0] - 0.04478 * t[1] - 0.0205 * t[2]
}

/// Cell open-circuit voltage `U_p(y) − U_n(x)` (§12.2) [V].
#[inline]
pub fn open_circuit_voltage_v(y: f64, x: f64) -> f64 {
    cathode_ocp_chen2020_v(y) - anode_ocp_chen2020_v(x)
}

/// SEI gate `σ(U_n) = 1/(1 + exp((U_n − 0.8)/0.03))` (§12.2): SEI forms only at anode
/// potentials below ≈ 0.8 V vs Li.
#[inline]
pub fn sei_gate(anode_potential_v: f64) -> f64 {
    sei_gate_from_exp(vexp::exp(sei_gate_exponent(anode_potential_v)))
}

/// The exponent `(U_n − 0.8)/0.03` of [`sei_gate`].
#[inline(always)]
fn sei_gate_exponent(anode_potential_v: f64) -> f64 {
    (anode_potential_v - SEI_GATE_POTENTIAL_V) / SEI_GATE_WIDTH_V
}

/// The exponents of [`sei_gate`] and [`sei_soc_factor`] at one anode potential, the two
/// divisions packed.
#[inline(always)]
fn sei_exponents(anode_potential_v: f64) -> [f64; 2] {
    let numerators = [anode_potential_v - SEI_GATE_POTENTIAL_V, SOC_FACTOR_POTENTIAL_V - anode_potential_v];
    let widths = [SEI_GATE_WIDTH_V, SOC_FACTOR_WIDTH_V];
    let mut out = [0.0; 2];
    for ((o, n), w) in out.iter_mut().zip(numerators).zip(widths) {
        *o = n / w;
    }
    out
}

/// [`sei_gate`] from the `exp` of its exponent.
#[inline(always)]
fn sei_gate_from_exp(e: f64) -> f64 {
    1.0 / (1.0 + e)
}

/// SOC factor of SEI growth `θ(U_n) = exp((0.13 − U_n)/0.10)` (§12.2): faster at high SOC.
#[inline]
pub fn sei_soc_factor(anode_potential_v: f64) -> f64 {
    vexp::exp(sei_soc_exponent(anode_potential_v))
}

/// The exponent `(0.13 − U_n)/0.10` of [`sei_soc_factor`].
#[inline(always)]
fn sei_soc_exponent(anode_potential_v: f64) -> f64 {
    (SOC_FACTOR_POTENTIAL_V - anode_potential_v) / SOC_FACTOR_WIDTH_V
}

// ---------------------------------------------------------------------------------------
// Design metrics (§12.1) and resistance parts (§12.3)
// ---------------------------------------------------------------------------------------

/// Areal design capacity per side `c = m_A·w_AM·q_design` (§12.1) [Ah/m²].
#[inline]
pub fn areal_capacity_ah_m2(areal_mass_kg_m2: f64, am_mass_frac: f64, design_capacity_ah_kg: f64) -> f64 {
    areal_mass_kg_m2 * am_mass_frac * design_capacity_ah_kg
}

/// Active-material volume fraction of a coating `ε_AM = (1 − ε)·(w_AM/ρ_AM)·ρ_solid` (§12.1).
#[inline]
pub fn active_volume_frac(
    porosity_frac: f64,
    am_mass_frac: f64,
    am_density_kg_m3: f64,
    solid_density_kg_m3: f64,
) -> f64 {
    (1.0 - porosity_frac) * (am_mass_frac / am_density_kg_m3) * solid_density_kg_m3
}

/// Ionic resistance of a porous electrode with uniform reaction (transmission-line limit,
/// Ogihara et al. 2012; Bruggeman b = 1.5): `r_ion = h/(3·κ·ε^b)` (§12.3) [Ω·m²].
#[inline]
pub fn electrode_ionic_asr_ohm_m2(coating_thickness_m: f64, porosity_frac: f64, conductivity_s_m: f64) -> f64 {
    coating_thickness_m / (3.0 * conductivity_s_m * porosity_frac.powf(BRUGGEMAN_EXPONENT))
}

/// Ionic resistance of the separator `r_sep = t_sep/(κ·ε_sep^b)` (§12.3) [Ω·m²].
#[inline]
pub fn separator_ionic_asr_ohm_m2(thickness_m: f64, porosity_frac: f64, conductivity_s_m: f64) -> f64 {
    thickness_m / (conductivity_s_m * porosity_frac.powf(BRUGGEMAN_EXPONENT))
}

/// Linearised Butler–Volmer charge-transfer resistance `r_ct = (R·T_ref/F)/(i₀·a·h)` with
/// specific surface `a = 3·ε_AM/r_p`, `r_p = d₅₀/2` (§12.3) [Ω·m²].
#[inline]
pub fn charge_transfer_asr_ohm_m2(
    exchange_current_a_m2: f64,
    am_volume_frac: f64,
    d50_m: f64,
    coating_thickness_m: f64,
) -> f64 {
    let specific_surface_per_m = 3.0 * am_volume_frac / (0.5 * d50_m);
    (GAS_CONSTANT_J_MOL_K * REFERENCE_TEMPERATURE_K / FARADAY_C_MOL)
        / (exchange_current_a_m2 * specific_surface_per_m * coating_thickness_m)
}

/// Resistance of one current-collector foil `ρ·L/(k·W·t)` (§12.3) [Ω]; `tab_factor` k is
/// [`TAB_FACTOR_END`] or [`TAB_FACTOR_DISTRIBUTED`].
#[inline]
pub fn collector_resistance_ohm(
    resistivity_ohm_m: f64,
    length_m: f64,
    width_m: f64,
    thickness_m: f64,
    tab_factor: f64,
) -> f64 {
    resistivity_ohm_m * length_m / (tab_factor * width_m * thickness_m)
}

/// SEI film resistance (§12.3): thickness `δ = (Q_SEI·3600/F)·V̄/A_s`, `R_SEI = ρ_SEI·δ/A_s` [Ω].
#[inline]
pub fn sei_resistance_ohm(sei_charge_ah: f64, sei_surface_m2: f64) -> f64 {
    SEI_RESISTIVITY_OHM_M * sei_thickness_m(sei_charge_ah, sei_surface_m2) / sei_surface_m2
}

/// SEI film thickness `δ = (Q_SEI·3600/F)·V̄/A_s` (§12.3) [m].
#[inline]
pub fn sei_thickness_m(sei_charge_ah: f64, sei_surface_m2: f64) -> f64 {
    (sei_charge_ah * SECONDS_PER_HOUR / FARADAY_C_MOL) * SEI_MOLAR_VOLUME_M3_MOL / sei_surface_m2
}

/// Charge consumed by the cell's water, one electron per molecule:
/// `Q_w = m_w·F/(3600·M_H2O)` (§12.2) [Ah].
#[inline]
pub fn water_sei_charge_ah(water_mass_kg: f64) -> f64 {
    water_mass_kg * FARADAY_C_MOL / (SECONDS_PER_HOUR * WATER_MOLAR_MASS_KG_MOL)
}

/// Resistance proxy after a pulse of `pulse_s`: `R₀ + R₁·(1 − exp(−t/τ_RC))` (§12.3, §11.2) [Ω].
#[inline]
pub fn pulse_resistance_ohm(r0_ohm: f64, r1_ohm: f64, pulse_s: f64) -> f64 {
    r0_ohm + r1_ohm * (1.0 - (-pulse_s / RC_TIME_CONSTANT_S).exp())
}

/// Design metrics of an assembled cell (MODELS.md §12.1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DesignMetrics {
    /// Cathode areal design capacity per side c_c [Ah/m²].
    pub cathode_areal_capacity_ah_m2: f64,
    /// Anode areal design capacity per side c_a [Ah/m²].
    pub anode_areal_capacity_ah_m2: f64,
    /// N/P = c_a/c_c.
    pub np_ratio: f64,
    /// Q_design = A_c·c_c [Ah].
    pub design_capacity_ah: f64,
    /// Cathode active-material volume fraction ε_AM,c.
    pub cathode_am_volume_frac: f64,
    /// Anode active-material volume fraction ε_AM,a.
    pub anode_am_volume_frac: f64,
}

impl DesignMetrics {
    /// The metrics of one jelly roll.
    pub fn of(cell: &AssembledCell) -> Self {
        let (c, a) = (&cell.cathode, &cell.anode);
        let cc = areal_capacity_ah_m2(c.areal_mass_kg_m2, c.am_mass_frac, c.design_capacity_ah_kg);
        let ca = areal_capacity_ah_m2(a.areal_mass_kg_m2, a.am_mass_frac, a.design_capacity_ah_kg);
        Self {
            cathode_areal_capacity_ah_m2: cc,
            anode_areal_capacity_ah_m2: ca,
            np_ratio: if cc > 0.0 { ca / cc } else { 0.0 },
            design_capacity_ah: c.area_m2 * cc,
            cathode_am_volume_frac: active_volume_frac(
                c.porosity_frac,
                c.am_mass_frac,
                c.am_density_kg_m3,
                c.solid_density_kg_m3,
            ),
            anode_am_volume_frac: active_volume_frac(
                a.porosity_frac,
                a.am_mass_frac,
                a.am_density_kg_m3,
                a.solid_density_kg_m3,
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Temperature
// ---------------------------------------------------------------------------------------

/// Temperature factors of the model at one (isothermal) temperature, computed once per
/// temperature, never per step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThermalFactors {
    /// Cell temperature [°C] -- constant.
    pub temperature_degc: f64,
    /// Passivation rate factor k(30 kJ/mol, T).
    pub passivation_rate: f64,
    /// Growth rate factor k(55 kJ/mol, T).
    pub growth_rate: f64,
    /// Ionic resistance factor f_κ(T) = exp((12 kJ/mol/R)·(1/T_K − 1/298.15)).
    pub conductivity_factor: f64,
    /// Charge-transfer and diffusion resistance factor f_ct(T) (50 kJ/mol).
    pub charge_transfer_factor: f64,
}

impl ThermalFactors {
    /// Factors at `temperature_degc` (§12.2, §12.3).
    pub fn at(temperature_degc: f64) -> Self {
        Self {
            temperature_degc,
            passivation_rate: arrhenius(PASSIVATION_ACTIVATION_J_MOL, temperature_degc),
            growth_rate: arrhenius(GROWTH_ACTIVATION_J_MOL, temperature_degc),
            conductivity_factor: 1.0 / arrhenius(Electrolyte::LP57.conductivity_activation_j_mol, temperature_degc),
            charge_transfer_factor: 1.0 / arrhenius(CHARGE_TRANSFER_ACTIVATION_J_MOL, temperature_degc),
        }
    }

    /// Factors at the reference temperature, 25 °C (all 1).
    pub fn reference() -> Self {
        Self::at(REFERENCE_TEMPERATURE_K - crate::consts::ZERO_CELSIUS_K)
    }
}

// ---------------------------------------------------------------------------------------
// Per-cell constants
// ---------------------------------------------------------------------------------------

/// Everything about one cell that does not change while it is cycled, precomputed from its
/// [`FilledCell`] (MODELS.md §12.1–§12.3). Resistances are at 25 °C.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellConstants {
    /// Design capacity Q_design [Ah] -- constant.
    pub design_capacity_ah: f64,
    /// Wetting fraction w used by the model (≥ [`MIN_WETTING_FRAC`]) -- constant.
    pub wetting_frac: f64,
    /// Cathode capacity on the OCP axis `Q_p = w·m_AM,c·q_stoich,c` [Ah] -- constant.
    pub cathode_capacity_ah: f64,
    /// Anode capacity `Q_n = w·m_AM,a·q_stoich,a` [Ah] -- constant.
    pub anode_capacity_ah: f64,
    /// Wetted graphite surface `A_s = a_BET·m_AM,a·w` [m²] -- constant.
    pub sei_surface_m2: f64,
    /// Charge of the cell's water Q_w [Ah] -- constant.
    pub water_charge_ah: f64,
    /// Lithium lost to local plating on the first charge Q_pl,loc [Ah] -- constant.
    pub local_plating_charge_ah: f64,
    /// Passivation capacity `Q₁,max = q₁·A_s + Q_w (+ Q_pl,loc)` [Ah] -- constant.
    pub passivation_max_ah: f64,
    /// Tab and weld resistance R_tab [Ω] -- constant.
    pub tab_resistance_ohm: f64,
    /// Current-collector resistance R_cc [Ω] -- constant.
    pub collector_resistance_ohm: f64,
    /// Ionic part `(r_ion,c + r_ion,a + r_sep)/(A_c·w)` at 25 °C [Ω] -- constant.
    pub ionic_resistance_ohm: f64,
    /// Charge-transfer part `(r_ct,c + r_ct,a)/(A_c·w)` at 25 °C [Ω] -- constant.
    pub charge_transfer_resistance_ohm: f64,
    /// RC resistance `R₁ = r_d/(A_c·w)` at 25 °C [Ω] -- constant.
    pub rc_resistance_ohm: f64,
    /// SEI resistance per SEI charge `dR_SEI/dQ_SEI` [Ω/Ah] -- constant.
    pub sei_resistance_ohm_per_ah: f64,
    /// Internal short resistance R_sh (∞ for a good cell) [Ω] -- constant.
    pub short_resistance_ohm: f64,
    /// Cathode active-material volume fraction ε_AM,c -- constant.
    pub cathode_am_volume_frac: f64,
    /// Anode active-material volume fraction ε_AM,a -- constant.
    pub anode_am_volume_frac: f64,
}

impl CellConstants {
    /// The constants of one filled cell (MODELS.md §12): capacities scale with its wetting
    /// fraction, the electrochemical resistances with 1/(A_c·w). The graphite BET area is the
    /// material preset's (the cell record does not carry it); κ and the separator come from
    /// the electrolyte and separator presets (§0.7).
    pub fn from_filled(cell: &FilledCell) -> Self {
        let asm = &cell.assembled;
        let (c, a) = (&asm.cathode, &asm.anode);
        let w = cell.wetting_frac.clamp(MIN_WETTING_FRAC, 1.0);
        let kappa = Electrolyte::LP57.conductivity_s_m;
        let sep = Separator::PE_CERAMIC;

        let eam_c = active_volume_frac(c.porosity_frac, c.am_mass_frac, c.am_density_kg_m3, c.solid_density_kg_m3);
        let eam_a = active_volume_frac(a.porosity_frac, a.am_mass_frac, a.am_density_kg_m3, a.solid_density_kg_m3);
        let ionic_asr = electrode_ionic_asr_ohm_m2(c.coating_thickness_m, c.porosity_frac, kappa)
            + electrode_ionic_asr_ohm_m2(a.coating_thickness_m, a.porosity_frac, kappa)
            + separator_ionic_asr_ohm_m2(sep.thickness_m, sep.porosity_frac, kappa);
        let ct_asr = charge_transfer_asr_ohm_m2(CATHODE_EXCHANGE_CURRENT_A_M2, eam_c, c.d50_m, c.coating_thickness_m)
            + charge_transfer_asr_ohm_m2(ANODE_EXCHANGE_CURRENT_A_M2, eam_a, a.d50_m, a.coating_thickness_m);
        let active_area_m2 = (c.area_m2 * w).max(f64::MIN_POSITIVE);

        let sei_surface_m2 = (ActiveMaterial::GRAPHITE.bet_area_m2_kg * a.am_mass_kg * w).max(f64::MIN_POSITIVE);
        let water_charge_ah = water_sei_charge_ah(cell.water_mass_kg);
        let local_plating_charge_ah = asm.local_plating_charge_ah.max(0.0);
        Self {
            design_capacity_ah: asm.design_capacity_ah,
            wetting_frac: w,
            cathode_capacity_ah: (w * c.am_mass_kg * c.stoich_capacity_ah_kg).max(f64::MIN_POSITIVE),
            anode_capacity_ah: (w * a.am_mass_kg * a.stoich_capacity_ah_kg).max(f64::MIN_POSITIVE),
            sei_surface_m2,
            water_charge_ah,
            local_plating_charge_ah,
            passivation_max_ah: PASSIVATION_CHARGE_AH_M2 * sei_surface_m2 + water_charge_ah + local_plating_charge_ah,
            tab_resistance_ohm: asm.tab_resistance_ohm,
            collector_resistance_ohm: asm.current_collector_resistance_ohm,
            ionic_resistance_ohm: ionic_asr / active_area_m2,
            charge_transfer_resistance_ohm: ct_asr / active_area_m2,
            rc_resistance_ohm: DIFFUSION_ASR_OHM_M2 / active_area_m2,
            sei_resistance_ohm_per_ah: sei_resistance_ohm(1.0, sei_surface_m2),
            short_resistance_ohm: asm.latent_short_resistance_ohm.max(MIN_SHORT_RESISTANCE_OHM),
            cathode_am_volume_frac: eam_c,
            anode_am_volume_frac: eam_a,
        }
    }

    /// True when the cell has an internal short (finite R_sh).
    #[inline]
    pub fn has_short(&self) -> bool {
        self.short_resistance_ohm.is_finite()
    }

    /// R₀ of the state at temperature factors `tf` (§12.3):
    /// `R_tab + R_cc + f_κ·R_ion + f_ct·R_ct + R_SEI(Q₁ + Q₂)` [Ω].
    #[inline]
    pub fn r0_ohm(&self, state: &CellState, tf: &ThermalFactors) -> f64 {
        self.tab_resistance_ohm
            + self.collector_resistance_ohm
            + tf.conductivity_factor * self.ionic_resistance_ohm
            + tf.charge_transfer_factor * self.charge_transfer_resistance_ohm
            + self.sei_resistance_ohm_per_ah * state.sei_charge_ah()
    }

    /// R₁ at temperature factors `tf`: `f_ct·r_d/(A_c·w)` (§12.3) [Ω].
    #[inline]
    pub fn r1_ohm(&self, tf: &ThermalFactors) -> f64 {
        tf.charge_transfer_factor * self.rc_resistance_ohm
    }

    /// `DCR_10s = R₀ + R₁·(1 − exp(−10 s/τ_RC))` (§12.3) [Ω].
    #[inline]
    pub fn dcr_10s_ohm(&self, state: &CellState, tf: &ThermalFactors) -> f64 {
        pulse_resistance_ohm(self.r0_ohm(state, tf), self.r1_ohm(tf), DCR_PULSE_S)
    }

    /// The parts of R₀ and R₁ at the state and temperature (§12.3).
    pub fn resistance(&self, state: &CellState, tf: &ThermalFactors) -> ResistanceBreakdown {
        ResistanceBreakdown {
            tab_ohm: self.tab_resistance_ohm,
            collector_ohm: self.collector_resistance_ohm,
            ionic_ohm: tf.conductivity_factor * self.ionic_resistance_ohm,
            charge_transfer_ohm: tf.charge_transfer_factor * self.charge_transfer_resistance_ohm,
            sei_ohm: self.sei_resistance_ohm_per_ah * state.sei_charge_ah(),
            r0_ohm: self.r0_ohm(state, tf),
            r1_ohm: self.r1_ohm(tf),
        }
    }

    /// Slope of the OCV against SOC at the state, by a backward finite difference of
    /// ΔSOC = 0.001 toward discharge, δ = 0.001·Q (§11.2) [V per unit SOC].
    pub fn ocv_soc_slope_v(&self, state: &CellState, capacity_ah: f64) -> f64 {
        const DELTA_SOC: f64 = 0.001;
        let delta_ah = DELTA_SOC * capacity_ah;
        let discharged = open_circuit_voltage_v(
            state.y + delta_ah / self.cathode_capacity_ah,
            state.x - delta_ah / self.anode_capacity_ah,
        );
        (state.ocv_v() - discharged) / DELTA_SOC
    }
}

/// The parts of the cell resistance (MODELS.md §12.3) [Ω].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResistanceBreakdown {
    /// Tabs and welds.
    pub tab_ohm: f64,
    /// Current collectors.
    pub collector_ohm: f64,
    /// Electrolyte in both electrodes and the separator.
    pub ionic_ohm: f64,
    /// Charge transfer at both electrodes.
    pub charge_transfer_ohm: f64,
    /// SEI film.
    pub sei_ohm: f64,
    /// Total series resistance R₀.
    pub r0_ohm: f64,
    /// RC resistance R₁.
    pub r1_ohm: f64,
}

// ---------------------------------------------------------------------------------------
// State and stepping
// ---------------------------------------------------------------------------------------

/// The electrochemical state of one cell (MODELS.md §12.2).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellState {
    /// Cathode stoichiometry y (on the OCP axis) -- state.
    pub y: f64,
    /// Anode stoichiometry x -- state.
    pub x: f64,
    /// SEI passivation charge Q₁ [Ah] -- state.
    pub q1_ah: f64,
    /// SEI growth charge Q₂ [Ah] -- state.
    pub q2_ah: f64,
    /// Plated (lost) lithium Q_pl [Ah] -- state.
    pub q_pl_ah: f64,
    /// RC-element voltage V₁ [V] -- state.
    pub v1_v: f64,
}

/// The side-reaction currents of one step [A] (§12.2).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SideCurrents {
    /// SEI passivation I₁.
    pub passivation_a: f64,
    /// SEI growth I₂.
    pub growth_a: f64,
    /// Lithium plating I_pl.
    pub plating_a: f64,
    /// Internal short I_sh.
    pub short_a: f64,
}

impl SideCurrents {
    /// Self-discharge current `I₁ + I₂ + I_sh` (§11.2) [A].
    #[inline]
    pub fn self_discharge_a(&self) -> f64 {
        self.passivation_a + self.growth_a + self.short_a
    }
}

impl CellState {
    /// The fresh cell at the start of formation: y = y₀, x = x₀, no SEI, V₁ = 0; lithium
    /// lost to local plating is recorded as plated charge from the start (§12.2).
    pub fn pristine(constants: &CellConstants) -> Self {
        Self {
            y: PRISTINE_CATHODE_STOICH,
            x: PRISTINE_ANODE_STOICH,
            q1_ah: 0.0,
            q2_ah: 0.0,
            q_pl_ah: constants.local_plating_charge_ah,
            v1_v: 0.0,
        }
    }

    /// Open-circuit voltage `U_p(y) − U_n(x)` [V].
    #[inline]
    pub fn ocv_v(&self) -> f64 {
        open_circuit_voltage_v(self.y, self.x)
    }

    /// Anode potential U_n(x) vs Li [V].
    #[inline]
    pub fn anode_potential_v(&self) -> f64 {
        anode_ocp_chen2020_v(self.x)
    }

    /// Cathode potential U_p(y) vs Li [V].
    #[inline]
    pub fn cathode_potential_v(&self) -> f64 {
        cathode_ocp_chen2020_v(self.y)
    }

    /// SEI charge `Q₁ + Q₂` [Ah].
    #[inline]
    pub fn sei_charge_ah(&self) -> f64 {
        self.q1_ah + self.q2_ah
    }

    /// Terminal voltage `V = OCV + I·R₀ + V₁` for a known OCV and R₀ [V].
    #[inline]
    pub fn terminal_voltage_v(&self, ocv_v: f64, current_a: f64, r0_ohm: f64) -> f64 {
        ocv_v + current_a * r0_ohm + self.v1_v
    }

    /// Side-reaction currents at this state (§12.2) for cell current `current_a` (> 0
    /// charge), the anode potential `anode_potential_v` = U_n(x) and the open-circuit
    /// voltage `ocv_v` of this state (only read when the cell has a short).
    #[inline(always)]
    pub fn side_currents(
        &self,
        c: &CellConstants,
        tf: &ThermalFactors,
        current_a: f64,
        anode_potential_v: f64,
        ocv_v: f64,
    ) -> SideCurrents {
        self.side_currents_from_exps(c, tf, current_a, exp_n(sei_exponents(anode_potential_v)), ocv_v)
    }

    /// [`CellState::side_currents`] from `[exp(gate exponent), exp(SOC-factor exponent)]`.
    #[inline(always)]
    fn side_currents_from_exps(
        &self,
        c: &CellConstants,
        tf: &ThermalFactors,
        current_a: f64,
        [gate, theta]: [f64; 2],
        ocv_v: f64,
    ) -> SideCurrents {
        let sigma = sei_gate_from_exp(gate);
        let passivation_a = passivation_current_a(sigma, tf, c.passivation_max_ah, self.q1_ah);
        let growth_a = growth_current_a(sigma, theta, tf, c.sei_surface_m2, self.q2_ah);
        let plating_a = if current_a > 0.0 {
            (current_a - passivation_a - growth_a).max(0.0)
                * ((self.x - PLATING_ONSET_STOICH) / PLATING_RAMP_STOICH).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let short_a = if c.has_short() { ocv_v / c.short_resistance_ohm } else { 0.0 };
        SideCurrents { passivation_a, growth_a, plating_a, short_a }
    }

    /// One explicit Euler step of `dt_s` at cell current `current_a` (> 0 charge), with the
    /// rates evaluated at this (the step's start) state (§12.2):
    ///
    /// `dy/dt = (−I + I_sh)/(3600·Q_p)`, `dx/dt = (I − I₁ − I₂ − I_pl − I_sh)/(3600·Q_n)`,
    /// `dQ₁/dt = I₁/3600`, `dQ₂/dt = I₂/3600`, `dQ_pl/dt = I_pl/3600`,
    /// `dV₁/dt = (I·R₁(T) − V₁)/τ_RC`.
    ///
    /// `anode_potential_v` must be U_n(x) of this state and `ocv_v` its OCV (read only when
    /// the cell has a short): callers evaluate them once and reuse them. Returns the side
    /// currents of the step.
    #[inline(always)]
    pub fn step(
        &mut self,
        c: &CellConstants,
        tf: &ThermalFactors,
        current_a: f64,
        anode_potential_v: f64,
        ocv_v: f64,
        dt_s: f64,
    ) -> SideCurrents {
        let side = self.side_currents(c, tf, current_a, anode_potential_v, ocv_v);
        self.advance_by(c, tf, current_a, &side, dt_s);
        side
    }

    /// The Euler update of [`CellState::step`] with its side currents known.
    #[inline(always)]
    fn advance_by(&mut self, c: &CellConstants, tf: &ThermalFactors, current_a: f64, side: &SideCurrents, dt_s: f64) {
        let h = dt_s / SECONDS_PER_HOUR;
        // dy and dx with their two divisions packed
        let charge_ah = [
            (side.short_a - current_a) * h,
            (current_a - side.passivation_a - side.growth_a - side.plating_a - side.short_a) * h,
        ];
        let capacity_ah = [c.cathode_capacity_ah, c.anode_capacity_ah];
        let mut d_stoich = [0.0; 2];
        for ((d, q), cap) in d_stoich.iter_mut().zip(charge_ah).zip(capacity_ah) {
            *d = q / cap;
        }
        self.y += d_stoich[0];
        self.x += d_stoich[1];
        self.q1_ah += side.passivation_a * h;
        self.q2_ah += side.growth_a * h;
        self.q_pl_ah += side.plating_a * h;
        self.v1_v += dt_s * (current_a * c.r1_ohm(tf) - self.v1_v) / RC_TIME_CONSTANT_S;
    }
}

/// Cells stepped side by side by [`step_cells`].
pub const STEP_LANES: usize = 4;

/// [`STEP_LANES`] cells advanced together, each exactly as [`CellState::step`] followed by
/// [`electrode_potentials_v`] and [`CellConstants::r0_ohm`] (the same bits: every element
/// goes through the same operations), with the `exp`s and divisions of all cells packed
/// side by side and the cells' serial chains interleaved. Returns per cell
/// `(U_n, OCV, R₀)` of the new state. All cells share the temperature `tf` and the step
/// `dt_s`; a cell that is not really stepped can fill a lane and have its result ignored.
#[inline(always)]
pub fn step_cells(
    states: &mut [CellState; STEP_LANES],
    constants: [&CellConstants; STEP_LANES],
    tf: &ThermalFactors,
    current_a: [f64; STEP_LANES],
    anode_potential_v: [f64; STEP_LANES],
    ocv_v: [f64; STEP_LANES],
    dt_s: f64,
) -> [(f64, f64, f64); STEP_LANES] {
    const L: usize = STEP_LANES;
    let mut sei = [0.0; 2 * L];
    for i in 0..L {
        let [g, s] = sei_exponents(anode_potential_v[i]);
        sei[2 * i] = g;
        sei[2 * i + 1] = s;
    }
    let sei = exp_n(sei);
    for i in 0..L {
        let side =
            states[i].side_currents_from_exps(constants[i], tf, current_a[i], [sei[2 * i], sei[2 * i + 1]], ocv_v[i]);
        states[i].advance_by(constants[i], tf, current_a[i], &side, dt_s);
    }
    let mut args = [0.0; 8 * L];
    for i in 0..L {
        let y = states[i].y.clamp(0.0, 1.0);
        let [c0, c1, c2] = cathode_ocp_exponents(y);
        let [a0, a1, a2, a3] = anode_ocp_exponents(states[i].x);
        args[8 * i..8 * i + 8].copy_from_slice(&[c0, c1, c2, a0, a1, a2, a3, a3]);
    }
    let e = exp_n(args);
    let t = tanhs_from_exps(e);
    std::array::from_fn(|i| {
        let y = states[i].y.clamp(0.0, 1.0);
        let u_p = cathode_ocp_from_tanhs(y, [t[8 * i], t[8 * i + 1], t[8 * i + 2]]);
        let u_n = anode_ocp_from_tanhs(e[8 * i + 3], [t[8 * i + 4], t[8 * i + 5], t[8 * i + 6]]);
        (u_n, u_p - u_n, constants[i].r0_ohm(&states[i], tf))
    })
}

/// SEI passivation current `I₁ = 3600·σ·k₁(T)·max(Q₁,max − Q₁, 0)/τ₁` (§12.2) [A].
#[inline(always)]
fn passivation_current_a(sigma: f64, tf: &ThermalFactors, passivation_max_ah: f64, q1_ah: f64) -> f64 {
    SECONDS_PER_HOUR * sigma * tf.passivation_rate * (passivation_max_ah - q1_ah).max(0.0) / PASSIVATION_TIME_S
}

/// SEI growth current `I₂ = 3600·K₂·k₂(T)·θ·σ·A_s/(Q₂/A_s + q₂₀)` (§12.2) [A].
#[inline(always)]
fn growth_current_a(sigma: f64, theta: f64, tf: &ThermalFactors, sei_surface_m2: f64, q2_ah: f64) -> f64 {
    SECONDS_PER_HOUR * GROWTH_RATE_AH2_M4_S * tf.growth_rate * theta * sigma * sei_surface_m2
        / (q2_ah / sei_surface_m2 + GROWTH_OFFSET_AH_M2)
}

/// Cells stepped side by side by [`RestLanes`].
pub const REST_LANES: usize = 8;

/// [`RestLanes`] evaluates its `exp`s in full ([`exp_n`]) every this many steps and carries them
/// forward by [`exp_small`] in between.
pub const REST_EXACT_EXP_EVERY: u32 = 32;

/// Largest exponent change [`RestLanes`] carries forward; a larger one (a hard short, a
/// long step) is evaluated in full.
const REST_MAX_EXPONENT_STEP: f64 = 1.0 / 512.0;

/// `exp(d)` for `|d| ≤ 1/512`: the Taylor polynomial of degree 5 (truncation below
/// `d⁶/720 ≈ 8e-20`, far under one ulp), plain multiplications and additions so that
/// packed and scalar code give the same bits.
#[inline(always)]
fn exp_small(d: f64) -> f64 {
    1.0 + d * (1.0 + d * (0.5 + d * (1.0 / 6.0 + d * (1.0 / 24.0 + d * (1.0 / 120.0)))))
}

/// Up to [`REST_LANES`] cells at open circuit (I = 0), stored lane by lane (one array per
/// quantity), for aging. [`RestLanes::step`] does, for every lane, the explicit Euler step
/// of [`CellState::step`] at zero current followed by [`CellState::anode_potential_v`], as
/// loops over the lanes that compile to packed instructions (4 lanes at a time where the
/// processor has AVX2, 2 otherwise, with the same bits either way: no fused operations).
///
/// The six `exp`s a step needs per cell (four in the graphite fit, the SEI gate and the SOC
/// factor) have exponents that move by ~1e-4 per 60 s step at rest, so they are carried
/// forward as `exp(a') = exp(a)·exp(a' − a)` with [`exp_small`] for the small factor, and
/// re-evaluated in full every [`REST_EXACT_EXP_EVERY`] steps or whenever an exponent moves
/// by more than 1/512 (a hard short). The drift between two exact evaluations is a few
/// dozen ulps (relative 1e-14; unit test `rest_lanes_follow_cell_state`): the same
/// Euler recurrence as `CellState::step`, its rate functions evaluated to 1e-14 instead of
/// 1e-16, at a fraction of the cost. Unused lanes repeat lane 0 and are ignored.
#[derive(Clone, Debug)]
pub struct RestLanes {
    /// Cells in use (the first `len` lanes) -- constant.
    len: usize,
    /// The cell states, lane by lane -- state.
    y: [f64; REST_LANES],
    x: [f64; REST_LANES],
    q1_ah: [f64; REST_LANES],
    q2_ah: [f64; REST_LANES],
    q_pl_ah: [f64; REST_LANES],
    v1_v: [f64; REST_LANES],
    /// Anode potential U_n(x) of the current state [V] -- state.
    anode_potential_v: [f64; REST_LANES],
    /// Exponents of the graphite fit at x and their `exp`s, term by term -- state.
    anode_exponent: [[f64; REST_LANES]; 4],
    anode_exp: [[f64; REST_LANES]; 4],
    /// Exponents of the SEI gate σ and SOC factor θ at U_n and their `exp`s -- state.
    gate_exponent: [f64; REST_LANES],
    gate_exp: [f64; REST_LANES],
    soc_exponent: [f64; REST_LANES],
    soc_exp: [f64; REST_LANES],
    /// Steps since the `exp`s were last evaluated in full -- state.
    steps_since_exact: u32,
    /// The constants the step reads -- constant.
    cathode_capacity_ah: [f64; REST_LANES],
    anode_capacity_ah: [f64; REST_LANES],
    passivation_max_ah: [f64; REST_LANES],
    sei_surface_m2: [f64; REST_LANES],
    rc_resistance_ohm: [f64; REST_LANES],
    short_resistance_ohm: [f64; REST_LANES],
    /// Any lane in use has an internal short -- constant.
    any_short: bool,
}

impl RestLanes {
    /// Loads up to [`REST_LANES`] cells (constants and state; at least one).
    pub fn new(cells: &[(CellConstants, CellState)]) -> Self {
        assert!(!cells.is_empty() && cells.len() <= REST_LANES, "1 to {REST_LANES} cells per lane group");
        let lane = |i: usize| &cells[if i < cells.len() { i } else { 0 }];
        let from = |f: fn(&(CellConstants, CellState)) -> f64| std::array::from_fn(|i| f(lane(i)));
        let mut lanes = Self {
            len: cells.len(),
            y: from(|(_, s)| s.y),
            x: from(|(_, s)| s.x),
            q1_ah: from(|(_, s)| s.q1_ah),
            q2_ah: from(|(_, s)| s.q2_ah),
            q_pl_ah: from(|(_, s)| s.q_pl_ah),
            v1_v: from(|(_, s)| s.v1_v),
            anode_potential_v: [0.0; REST_LANES],
            anode_exponent: [[0.0; REST_LANES]; 4],
            anode_exp: [[0.0; REST_LANES]; 4],
            gate_exponent: [0.0; REST_LANES],
            gate_exp: [0.0; REST_LANES],
            soc_exponent: [0.0; REST_LANES],
            soc_exp: [0.0; REST_LANES],
            steps_since_exact: 0,
            cathode_capacity_ah: from(|(c, _)| c.cathode_capacity_ah),
            anode_capacity_ah: from(|(c, _)| c.anode_capacity_ah),
            passivation_max_ah: from(|(c, _)| c.passivation_max_ah),
            sei_surface_m2: from(|(c, _)| c.sei_surface_m2),
            rc_resistance_ohm: from(|(c, _)| c.rc_resistance_ohm),
            short_resistance_ohm: from(|(c, _)| c.short_resistance_ohm),
            any_short: cells.iter().any(|(c, _)| c.has_short()),
        };
        for i in 0..REST_LANES {
            lanes.exact_exps(i);
        }
        lanes
    }

    /// Cells in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no cell is in use (never: `new` needs one).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The state of cell `i`.
    pub fn state(&self, i: usize) -> CellState {
        CellState {
            y: self.y[i],
            x: self.x[i],
            q1_ah: self.q1_ah[i],
            q2_ah: self.q2_ah[i],
            q_pl_ah: self.q_pl_ah[i],
            v1_v: self.v1_v[i],
        }
    }

    /// U_n(x) of cell `i` [V].
    pub fn anode_potential_v(&self, i: usize) -> f64 {
        self.anode_potential_v[i]
    }

    /// Evaluates lane `i`'s `exp`s, U_n and the SEI factors' `exp`s in full at its x.
    fn exact_exps(&mut self, i: usize) {
        let a = anode_ocp_exponents(self.x[i]);
        let e = exp_n(a);
        for t in 0..4 {
            self.anode_exponent[t][i] = a[t];
            self.anode_exp[t][i] = e[t];
        }
        let u_n = anode_ocp_from_exps(e);
        self.anode_potential_v[i] = u_n;
        self.gate_exponent[i] = sei_gate_exponent(u_n);
        self.soc_exponent[i] = sei_soc_exponent(u_n);
        [self.gate_exp[i], self.soc_exp[i]] = exp_n([self.gate_exponent[i], self.soc_exponent[i]]);
    }

    /// One explicit Euler step of `dt_s` at I = 0 for every lane (as [`CellState::step`]),
    /// then U_n of the new state. Returns each lane's self-discharge current
    /// `I₁ + I₂ + I_sh` of the step [A].
    #[inline]
    pub fn step(&mut self, tf: &ThermalFactors, dt_s: f64) -> [f64; REST_LANES] {
        #[cfg(target_arch = "x86_64")]
        if vexp::avx2_fma() {
            // SAFETY: the processor has AVX2 and FMA, checked just above.
            return unsafe { self.step_avx2(tf, dt_s) };
        }
        self.step_lanes(tf, dt_s)
    }

    /// [`RestLanes::step_lanes`] compiled for AVX2 (4 lanes per instruction instead of 2).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn step_avx2(&mut self, tf: &ThermalFactors, dt_s: f64) -> [f64; REST_LANES] {
        self.step_lanes(tf, dt_s)
    }

    // The lane loops index several per-lane arrays in step, which is what packs them.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn step_lanes(&mut self, tf: &ThermalFactors, dt_s: f64) -> [f64; REST_LANES] {
        const L: usize = REST_LANES;
        // Short current from the OCV of the step's start state (only lanes with a short).
        let mut short_a = [0.0; L];
        if self.any_short {
            for i in 0..L {
                if self.short_resistance_ohm[i].is_finite() {
                    let ocv_v = cathode_ocp_chen2020_v(self.y[i]) - self.anode_potential_v[i];
                    short_a[i] = ocv_v / self.short_resistance_ohm[i];
                }
            }
        }
        let h = dt_s / SECONDS_PER_HOUR;
        let r1_factor = tf.charge_transfer_factor;
        let mut self_discharge_a = [0.0; L];
        for i in 0..L {
            let sigma = sei_gate_from_exp(self.gate_exp[i]);
            let passivation_a = passivation_current_a(sigma, tf, self.passivation_max_ah[i], self.q1_ah[i]);
            let growth_a = growth_current_a(sigma, self.soc_exp[i], tf, self.sei_surface_m2[i], self.q2_ah[i]);
            let plating_a = 0.0;
            let current_a = 0.0;
            self.y[i] += (short_a[i] - current_a) * h / self.cathode_capacity_ah[i];
            self.x[i] +=
                (current_a - passivation_a - growth_a - plating_a - short_a[i]) * h / self.anode_capacity_ah[i];
            self.q1_ah[i] += passivation_a * h;
            self.q2_ah[i] += growth_a * h;
            self.q_pl_ah[i] += plating_a * h;
            self.v1_v[i] +=
                dt_s * (current_a * (r1_factor * self.rc_resistance_ohm[i]) - self.v1_v[i]) / RC_TIME_CONSTANT_S;
            self_discharge_a[i] = passivation_a + growth_a + short_a[i];
        }
        self.steps_since_exact += 1;
        if self.steps_since_exact >= REST_EXACT_EXP_EVERY {
            self.steps_since_exact = 0;
            for i in 0..L {
                self.exact_exps(i);
            }
            return self_discharge_a;
        }
        // Carry the exps forward to the new x, then to the new U_n.
        let mut largest_step = [0.0f64; L];
        for i in 0..L {
            let a = anode_ocp_exponents(self.x[i]);
            for t in 0..4 {
                let d = a[t] - self.anode_exponent[t][i];
                self.anode_exponent[t][i] = a[t];
                self.anode_exp[t][i] *= exp_small(d);
                largest_step[i] = largest_step[i].max(d.abs());
            }
            let u_n = anode_ocp_from_exps(std::array::from_fn(|t| self.anode_exp[t][i]));
            self.anode_potential_v[i] = u_n;
            let (g, s) = (sei_gate_exponent(u_n), sei_soc_exponent(u_n));
            let (dg, ds) = (g - self.gate_exponent[i], s - self.soc_exponent[i]);
            self.gate_exponent[i] = g;
            self.soc_exponent[i] = s;
            self.gate_exp[i] *= exp_small(dg);
            self.soc_exp[i] *= exp_small(ds);
            largest_step[i] = largest_step[i].max(dg.abs()).max(ds.abs());
        }
        for (i, &d) in largest_step.iter().enumerate() {
            if d.is_nan() || d > REST_MAX_EXPONENT_STEP {
                self.exact_exps(i);
            }
        }
        self_discharge_a
    }
}

// ---------------------------------------------------------------------------------------
// Cell outputs (§12.4)
// ---------------------------------------------------------------------------------------

/// Mass and energy figures of a finished cell (MODELS.md §12.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CellOutputs {
    /// Cell mass with electrolyte [kg].
    pub mass_kg: f64,
    /// Outer can volume [m³].
    pub volume_m3: f64,
    /// Specific energy `E_dis/m_cell` [Wh/kg].
    pub specific_energy_wh_kg: f64,
    /// Energy density `E_dis/V_cell` [Wh/L] (display unit: 1 L = 1e-3 m³).
    pub energy_density_wh_l: f64,
}

impl CellOutputs {
    /// The outputs of a filled cell that delivered `discharge_energy_wh` (§12.4). The cell
    /// mass is the filled cell's (dry mass + electrolyte); the volume the can's outer volume.
    pub fn of(cell: &FilledCell, discharge_energy_wh: f64) -> Self {
        let mass_kg = cell.mass_kg;
        let volume_m3 = cell.assembled.can_volume_m3;
        Self {
            mass_kg,
            volume_m3,
            specific_energy_wh_kg: if mass_kg > 0.0 { discharge_energy_wh / mass_kg } else { 0.0 },
            energy_density_wh_l: if volume_m3 > 0.0 { discharge_energy_wh / (volume_m3 * 1e3) } else { 0.0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pristine_ocv_is_1_104_v() {
        let v = open_circuit_voltage_v(PRISTINE_CATHODE_STOICH, PRISTINE_ANODE_STOICH);
        assert!((v - 1.104).abs() < 0.005 * 1.104, "{v}");
    }

    #[test]
    fn fast_tanh_matches_libm() {
        let fast_tanh = |z: f64| tanh_from_exp((2.0 * z).exp());
        for i in -4000..=4000 {
            let z = i as f64 * 0.01;
            assert!((fast_tanh(z) - z.tanh()).abs() < 2e-15, "{z}");
        }
        assert_eq!(fast_tanh(1e6), 1.0);
        assert_eq!(fast_tanh(-1e6), -1.0);
    }

    #[test]
    fn ocps_clamp_their_stoichiometry() {
        assert_eq!(cathode_ocp_chen2020_v(1.3), cathode_ocp_chen2020_v(1.0));
        assert_eq!(anode_ocp_chen2020_v(-0.2), anode_ocp_chen2020_v(0.0));
        assert!(cathode_ocp_chen2020_v(0.3) > cathode_ocp_chen2020_v(0.9));
        assert!(anode_ocp_chen2020_v(0.05) > anode_ocp_chen2020_v(0.8));
    }

    #[test]
    fn sei_gate_closes_above_0_8_v() {
        assert!((sei_gate(0.8) - 0.5).abs() < 1e-12);
        assert!(sei_gate(1.2) < 1e-5);
        assert!(sei_gate(0.1) > 0.99999);
        assert!(sei_gate(5.0) < 1e-60 && sei_gate(50.0) == 0.0, "no NaN when the exponential overflows");
        assert!((sei_soc_factor(0.13) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn thermal_factors_are_one_at_25_degc() {
        let t = ThermalFactors::reference();
        assert!((t.temperature_degc - 25.0).abs() < 1e-9);
        for f in [t.passivation_rate, t.growth_rate, t.conductivity_factor, t.charge_transfer_factor] {
            assert!((f - 1.0).abs() < 1e-12);
        }
        let hot = ThermalFactors::at(45.0);
        assert!(hot.growth_rate > hot.passivation_rate && hot.passivation_rate > 1.0);
        assert!(hot.charge_transfer_factor < 1.0);
    }

    #[test]
    fn water_charge_is_one_electron_per_molecule() {
        // 18.015 g of water = 1 mol = 26.8 Ah.
        assert!((water_sei_charge_ah(0.018015) - FARADAY_C_MOL / 3600.0).abs() < 1e-9);
    }

    fn constants(short_resistance_ohm: f64, scale: f64) -> CellConstants {
        CellConstants {
            design_capacity_ah: 5.0 * scale,
            wetting_frac: 0.97,
            cathode_capacity_ah: 6.0 * scale,
            anode_capacity_ah: 6.5 * scale,
            sei_surface_m2: 40.0 * scale,
            water_charge_ah: 0.01,
            local_plating_charge_ah: 0.0,
            passivation_max_ah: 0.75 * scale,
            tab_resistance_ohm: 0.002,
            collector_resistance_ohm: 0.003,
            ionic_resistance_ohm: 0.006,
            charge_transfer_resistance_ohm: 0.004,
            rc_resistance_ohm: 0.005,
            sei_resistance_ohm_per_ah: 0.01,
            short_resistance_ohm,
            cathode_am_volume_frac: 0.6,
            anode_am_volume_frac: 0.55,
        }
    }

    #[test]
    fn rest_lanes_follow_cell_state() {
        // Four cells in a group of eight lanes, hot then at 25 °C: two good ones, a soft short
        // (carried forward) and a hard short (exponents jump: evaluated in full).
        let cells: Vec<(CellConstants, CellState)> =
            [(f64::INFINITY, 1.0), (500.0, 0.9), (f64::INFINITY, 1.1), (2.0, 1.0)]
                .iter()
                .enumerate()
                .map(|(i, &(r, k))| {
                    let s = CellState {
                        y: 0.6 + 0.02 * i as f64,
                        x: 0.3 - 0.01 * i as f64,
                        q1_ah: 0.5,
                        q2_ah: 1e-3,
                        q_pl_ah: 0.0,
                        v1_v: 0.01,
                    };
                    (constants(r, k), s)
                })
                .collect();
        let mut lanes = RestLanes::new(&cells);
        let mut scalar: Vec<(CellState, f64)> = cells.iter().map(|(_, s)| (*s, s.anode_potential_v())).collect();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs() + 1e-15;
        for k in 0..15_000 {
            let tf = ThermalFactors::at(if k < 2880 { 45.0 } else { 25.0 });
            let dt_s = if k % 7 == 0 { 17.5 } else { 60.0 };
            let sd = lanes.step(&tf, dt_s);
            for (i, ((c, _), (s, u_n))) in cells.iter().zip(scalar.iter_mut()).enumerate() {
                let ocv = if c.has_short() { s.cathode_potential_v() - *u_n } else { 0.0 };
                let side = s.step(c, &tf, 0.0, *u_n, ocv, dt_s);
                *u_n = s.anode_potential_v();
                let l = lanes.state(i);
                for (name, a, b) in [
                    ("y", l.y, s.y),
                    ("x", l.x, s.x),
                    ("q1", l.q1_ah, s.q1_ah),
                    ("q2", l.q2_ah, s.q2_ah),
                    ("v1", l.v1_v, s.v1_v),
                    ("u_n", lanes.anode_potential_v(i), *u_n),
                    ("self-discharge", sd[i], side.self_discharge_a()),
                ] {
                    assert!(close(a, b), "step {k}, lane {i}, {name}: {a:e} vs {b:e}");
                }
            }
        }
        assert!(lanes.state(1).y > cells[1].1.y, "the short discharged lane 1");
        assert!(lanes.state(3).y > lanes.state(1).y, "the hard short discharged lane 3 further");
    }

    #[test]
    fn exp_small_is_exp_to_an_ulp() {
        for i in -1000..=1000 {
            let d = i as f64 / 1000.0 / 512.0;
            let (a, b) = (exp_small(d), d.exp());
            assert!((a - b).abs() <= 2.0 * f64::EPSILON * b, "{d}: {a:e} vs {b:e}");
        }
    }

    #[test]
    fn electrode_potentials_equal_the_single_fits() {
        for i in -10..=1010 {
            let v = i as f64 * 1e-3 + 1e-7;
            let (u_p, u_n) = electrode_potentials_v(v, 1.0 - v);
            assert_eq!(u_p.to_bits(), cathode_ocp_chen2020_v(v).to_bits(), "{v}");
            assert_eq!(u_n.to_bits(), anode_ocp_chen2020_v(1.0 - v).to_bits(), "{v}");
        }
    }

    #[test]
    fn pulse_resistance_tends_to_r0_plus_r1() {
        assert_eq!(pulse_resistance_ohm(0.02, 0.006, 0.0), 0.02);
        assert!((pulse_resistance_ohm(0.02, 0.006, 1e6) - 0.026).abs() < 1e-12);
    }
}
