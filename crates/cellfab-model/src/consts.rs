//! Physical constants shared by all stages (MODELS.md §0.1).

/// Universal gas constant [J/(mol·K)].
pub const GAS_CONSTANT_J_MOL_K: f64 = 8.314462618;
/// Faraday constant [C/mol].
pub const FARADAY_C_MOL: f64 = 96485.33212;
/// Standard atmosphere [Pa].
pub const ATMOSPHERE_PA: f64 = 101325.0;
/// Offset between °C and K.
pub const ZERO_CELSIUS_K: f64 = 273.15;
/// Reference temperature of Arrhenius laws, 25 °C in K.
pub const REFERENCE_TEMPERATURE_K: f64 = 298.15;
/// Seconds per hour, the factor between A·s and A·h.
pub const SECONDS_PER_HOUR: f64 = 3600.0;
/// Molar mass of air [kg/mol].
pub const AIR_MOLAR_MASS_KG_MOL: f64 = 0.028965;
/// Specific heat of air [J/(kg·K)].
pub const AIR_HEAT_CAPACITY_J_KG_K: f64 = 1007.0;
/// Molar mass of water [kg/mol].
pub const WATER_MOLAR_MASS_KG_MOL: f64 = 0.018015;

/// Converts °C to K.
#[inline]
pub fn kelvin(temperature_degc: f64) -> f64 {
    temperature_degc + ZERO_CELSIUS_K
}

/// Arrhenius factor `exp(-(E_a/R)·(1/T − 1/298.15))`: 1 at 25 °C, > 1 above.
#[inline]
pub fn arrhenius(activation_energy_j_mol: f64, temperature_degc: f64) -> f64 {
    (-(activation_energy_j_mol / GAS_CONSTANT_J_MOL_K)
        * (1.0 / kelvin(temperature_degc) - 1.0 / REFERENCE_TEMPERATURE_K))
        .exp()
}
