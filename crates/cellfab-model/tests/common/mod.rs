//! Hand-built nominal products for the drying and calendaring tests: uniform grids at the
//! deterministic set-point values of MODELS.md §2.2 / §15, computed from the recipes.
#![allow(dead_code)]

use cellfab_model::material::Foil;
use cellfab_model::random::{stream, StreamRng};
use cellfab_model::recipe::Recipe;
use cellfab_model::stages::coating::WetFilm;
use cellfab_model::stages::drying::DryElectrode;
use cellfab_model::stages::mixing::Slurry;
use cellfab_model::web::{SegmentFlags, WebGrid};
use cellfab_model::{Line, StageCtx};

/// Segment length of the web grid [m].
pub const SEGMENT_M: f64 = 0.5;
/// CD cells across the coated width.
pub const CD_CELLS: usize = 32;

/// Random streams for a test context (process, sensor).
pub fn streams(seed: u64) -> (StreamRng, StreamRng) {
    (stream(seed, &[1]), stream(seed, &[2]))
}

/// A context on `line`, deterministic unless `noise` (sensor noise only; no stage here draws
/// process variability).
pub fn ctx<'a>(line: Line, p: &'a mut StreamRng, s: &'a mut StreamRng, noise: bool) -> StageCtx<'a> {
    StageCtx {
        batch_id: 1,
        line,
        start_t_s: 0.0,
        process_rng: p,
        sensor_rng: s,
        stream_seed: 42,
        process_variability: false,
        sensor_noise: noise,
        parallel: &cellfab_model::Sequential,
        faults: &cellfab_model::fault::NO_FAULTS,
    }
}

/// Dry mass fractions (am, ca, binder) of the default recipes.
pub fn dry_fractions(line: Line) -> (f64, f64, f64) {
    match line {
        Line::Anode => (0.955, 0.010, 0.035),
        _ => (0.96, 0.02, 0.02),
    }
}

/// The default slurry of `line` (MODELS.md §0.7, §15), air-free, at 25 °C.
pub fn nominal_slurry(line: Line) -> Slurry {
    let recipe = if line == Line::Anode { Recipe::anode() } else { Recipe::cathode() };
    let (am, ca, b) = dry_fractions(line);
    let w_s = if line == Line::Anode { 0.50 } else { 0.70 };
    let rho_solid = recipe.solid_density_kg_m3(am, ca, b);
    let rho_solvent = recipe.solvent.density_kg_m3();
    let density = 1.0 / (w_s / rho_solid + (1.0 - w_s) / rho_solvent);
    let volume = if line == Line::Anode { 0.32 } else { 0.20 };
    let mass = density * volume;
    let solids = mass * w_s;
    Slurry {
        batch_id: 1,
        line,
        am_mass_frac_dry: am,
        ca_mass_frac_dry: ca,
        binder_mass_frac_dry: b,
        am_mass_kg: solids * am,
        ca_mass_kg: solids * ca,
        binder_mass_kg: solids * b,
        solvent_mass_kg: mass - solids,
        volume_m3: volume,
        usable_volume_m3: 0.95 * volume,
        density_kg_m3: density,
        solid_density_kg_m3: rho_solid,
        solids_mass_frac: w_s,
        solids_volume_frac: w_s / rho_solid * density,
        zero_shear_viscosity_pa_s: 10.0,
        viscosity_ref_pa_s: if line == Line::Anode { 3.72 } else { 4.09 },
        cross_time_constant_s: recipe.cross_time_constant_s,
        cross_exponent: recipe.cross_exponent,
        cross_inf_ratio: recipe.cross_inf_ratio,
        viscosity_activation_energy_j_mol: recipe.viscosity_activation_energy_j_mol,
        yield_stress_pa: if line == Line::Anode { 21.9 } else { 10.5 },
        agglomerate_frac: 0.03,
        binder_dissolved_frac: 1.0,
        air_volume_frac: 0.002,
        temperature_degc: 25.0,
        not_flowable: false,
        fault_labels: Vec::new(),
        recipe,
    }
}

/// Flow per side, coated width and speed of the default coater (MODELS.md §2.1).
pub fn coater(line: Line) -> (f64, f64, f64) {
    match line {
        Line::Anode => (3.83e-5, 0.52, 0.4),
        _ => (3.2e-5, 0.50, 0.5),
    }
}

/// Coating duration of the default batch [s] (§15).
pub fn coating_duration_s(line: Line) -> f64 {
    if line == Line::Anode {
        3968.75
    } else {
        2968.75
    }
}

/// A uniform wet film of `line` with the set-point values of §2.2, `roll_length_m` long
/// (the default roll is `v·T_coat`: 1 587.5 / 1 484.375 m).
pub fn wet_film_of_length(line: Line, roll_length_m: f64) -> WetFilm {
    let slurry = nominal_slurry(line);
    let (q, w, v) = coater(line);
    let h_w = q / (w * v);
    let m_a = h_w * slurry.density_kg_m3 * slurry.solids_mass_frac;
    let x0 = m_a * (1.0 - slurry.solids_mass_frac) / slurry.solids_mass_frac;
    let h_dry = m_a / (slurry.solid_density_kg_m3 * (1.0 - slurry.recipe.dry_film_porosity_frac));
    let n_md = WebGrid::segments_for(roll_length_m, SEGMENT_M);
    let grid = |value: f64| WebGrid::filled(n_md, CD_CELLS, SEGMENT_M, w, value);
    let scrap_segments = ((10.0 / SEGMENT_M) as usize).min(n_md);
    let mut flags = vec![SegmentFlags::default(); n_md];
    for f in flags.iter_mut().take(scrap_segments) {
        f.set(SegmentFlags::STARTUP_SCRAP);
    }
    WetFilm {
        foil: if line == Line::Anode { Foil::CU } else { Foil::AL },
        coating_width_m: w,
        line_speed_m_s: v,
        sides: 2,
        roll_length_m,
        coating_duration_s: roll_length_m / v,
        startup_scrap_length_m: 10.0,
        slurry_temperature_degc: 25.0,
        areal_mass_kg_m2: grid(m_a),
        wet_thickness_m: grid(h_w),
        solvent_mass_kg_m2: grid(x0),
        segment_flags: flags,
        defects: Vec::new(),
        nominal_areal_mass_kg_m2: m_a,
        nominal_wet_thickness_m: h_w,
        nominal_dry_thickness_m: h_dry,
        fault_regions: Vec::new(),
        slurry,
    }
}

/// The default-batch wet film of `line` (T_coat 3 968.75 / 2 968.75 s).
pub fn nominal_wet_film(line: Line) -> WetFilm {
    let (_, _, v) = coater(line);
    wet_film_of_length(line, v * coating_duration_s(line))
}

/// A dried electrode made from `film` by hand: dry (residual w_eq), ε_dry of the recipe and
/// `h_dry = m_A/(ρ_solid·(1 − ε_dry))` per cell.
pub fn dry_electrode_from(film: WetFilm) -> DryElectrode {
    let eps = film.slurry.recipe.dry_film_porosity_frac;
    let rho = film.slurry.solid_density_kg_m3;
    let mut thickness = film.areal_mass_kg_m2.clone();
    thickness.map_in_place(|m| m / (rho * (1.0 - eps)));
    DryElectrode {
        residual_solvent_frac: film.areal_mass_kg_m2.like(3e-4),
        dry_porosity_frac: film.areal_mass_kg_m2.like(eps),
        dry_thickness_m: thickness,
        binder_migration_index: film.areal_mass_kg_m2.like(0.87),
        film,
    }
}

/// The default-batch dried electrode of `line`.
pub fn nominal_dry_electrode(line: Line) -> DryElectrode {
    dry_electrode_from(nominal_wet_film(line))
}

/// Asserts `actual` within `tol` (relative) of `expected`.
#[track_caller]
pub fn assert_rel(what: &str, actual: f64, expected: f64, tol: f64) {
    let err = (actual / expected - 1.0).abs();
    assert!(
        err <= tol,
        "{what}: {actual} vs reference {expected} (error {:.3} %, tolerance {} %)",
        err * 100.0,
        tol * 100.0
    );
}

/// Tolerance A (algebraic results).
pub const TOL_A: f64 = 0.005;
/// Tolerance B (results of time integration).
pub const TOL_B: f64 = 0.01;
/// Tolerance C (small differences, integrals of small quantities).
pub const TOL_C: f64 = 0.03;
