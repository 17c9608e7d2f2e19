//! Hand-built web products for the slitting, inspection and rewinding tests: a calendered
//! roll with uniform grids at the MODELS.md §15 nominal deterministic values, so these stages
//! can be tested without the upstream stages.
#![allow(dead_code)]

use cellfab_model::random::{stream, StreamRng};
use cellfab_model::recipe::Recipe;
use cellfab_model::stage::{Line, Stage, StageCtx, VecSink};
use cellfab_model::stages::calendaring::CalenderedElectrode;
use cellfab_model::stages::coating::WetFilm;
use cellfab_model::stages::drying::DryElectrode;
use cellfab_model::stages::inspection::{InspectedLanes, Inspection, InspectionParams};
use cellfab_model::stages::mixing::Slurry;
use cellfab_model::stages::slitting::{BladeState, SlitLanes, Slitting, SlittingParams};
use cellfab_model::web::{SegmentFlags, WebGrid};

/// Segment length of the web grid [m].
pub const SEGMENT_M: f64 = 0.5;
/// CD cells of the web grid.
pub const CD_CELLS: usize = 32;

/// The two random streams a stage run needs, and a context over them.
pub struct Rngs {
    pub process: StreamRng,
    pub sensor: StreamRng,
}

impl Rngs {
    pub fn new(seed: u64) -> Self {
        Self { process: stream(seed, &[1]), sensor: stream(seed, &[2]) }
    }

    /// A context in deterministic mode (no process variability, no sensor noise).
    pub fn ctx(&mut self, line: Line) -> StageCtx<'_> {
        self.ctx_with(line, false, false)
    }

    pub fn ctx_with(&mut self, line: Line, variability: bool, noise: bool) -> StageCtx<'_> {
        StageCtx {
            batch_id: 1,
            line,
            start_t_s: 0.0,
            process_rng: &mut self.process,
            sensor_rng: &mut self.sensor,
            stream_seed: 42,
            process_variability: variability,
            sensor_noise: noise,
            parallel: &cellfab_model::Sequential,
            faults: &cellfab_model::fault::NO_FAULTS,
        }
    }
}

fn slurry(line: Line) -> Slurry {
    let anode = line == Line::Anode;
    let recipe = if anode { Recipe::anode() } else { Recipe::cathode() };
    let (am, ca, binder) = if anode { (0.955, 0.010, 0.035) } else { (0.96, 0.02, 0.02) };
    let (mass, solids, density, volume) =
        if anode { (438.04, 0.50, 1368.9, 0.32) } else { (445.49, 0.70, 2227.4, 0.20) };
    let dry = mass * solids;
    Slurry {
        batch_id: 1,
        line,
        recipe,
        am_mass_frac_dry: am,
        ca_mass_frac_dry: ca,
        binder_mass_frac_dry: binder,
        am_mass_kg: dry * am,
        ca_mass_kg: dry * ca,
        binder_mass_kg: dry * binder,
        solvent_mass_kg: mass - dry,
        volume_m3: volume,
        usable_volume_m3: 0.95 * volume,
        density_kg_m3: density,
        solid_density_kg_m3: if anode { 2183.2 } else { 4455.3 },
        solids_mass_frac: solids,
        solids_volume_frac: if anode { 0.3135 } else { 0.3500 },
        zero_shear_viscosity_pa_s: if anode { 4.5 } else { 5.0 },
        viscosity_ref_pa_s: if anode { 3.72 } else { 4.09 },
        cross_time_constant_s: 0.05,
        cross_exponent: 0.75,
        cross_inf_ratio: 0.05,
        viscosity_activation_energy_j_mol: 16e3,
        yield_stress_pa: if anode { 21.9 } else { 10.5 },
        agglomerate_frac: if anode { 0.029 } else { 0.031 },
        binder_dissolved_frac: 1.0,
        air_volume_frac: 0.002,
        temperature_degc: if anode { 22.0 } else { 24.2 },
        not_flowable: false,
        fault_labels: Vec::new(),
    }
}

/// The default calendered roll of `line` (§15 nominal values, uniform grids).
pub fn calendered(line: Line) -> CalenderedElectrode {
    let length = if line == Line::Anode { 1587.5 } else { 1484.4 };
    calendered_with_length(line, length)
}

/// A calendered roll of `roll_length_m` (coating coordinates) with the default properties;
/// the first 10 m are flagged start-up scrap.
pub fn calendered_with_length(line: Line, roll_length_m: f64) -> CalenderedElectrode {
    let anode = line == Line::Anode;
    let recipe = if anode { Recipe::anode() } else { Recipe::cathode() };
    let foil = recipe.foil.foil();
    let width = if anode { 0.52 } else { 0.50 };
    let n_md = WebGrid::segments_for(roll_length_m, SEGMENT_M);
    let grid = |v: f64| WebGrid::filled(n_md, CD_CELLS, SEGMENT_M, width, v);
    let (speed, areal_coated, wet, dry_thickness) =
        if anode { (0.4, 0.12603, 184.13e-6, 115.45e-6) } else { (0.5, 0.19958, 128.00e-6, 82.96e-6) };
    let solids = if anode { 0.50 } else { 0.70 };
    let mut flags = vec![SegmentFlags::default(); n_md];
    let scrap_segments = (10.0 / SEGMENT_M).round() as usize;
    for f in flags.iter_mut().take(scrap_segments) {
        f.set(SegmentFlags::STARTUP_SCRAP);
    }
    let film = WetFilm {
        slurry: slurry(line),
        foil,
        coating_width_m: width,
        line_speed_m_s: speed,
        sides: 2,
        roll_length_m,
        coating_duration_s: roll_length_m / speed,
        startup_scrap_length_m: 10.0,
        slurry_temperature_degc: 25.0,
        areal_mass_kg_m2: grid(areal_coated),
        wet_thickness_m: grid(wet),
        solvent_mass_kg_m2: grid(areal_coated * (1.0 - solids) / solids),
        segment_flags: flags,
        defects: Vec::new(),
        nominal_areal_mass_kg_m2: areal_coated,
        nominal_wet_thickness_m: wet,
        nominal_dry_thickness_m: dry_thickness,
        fault_regions: Vec::new(),
    };
    let dry = DryElectrode {
        residual_solvent_frac: grid(if anode { 5.0e-4 } else { 2.0e-4 }),
        dry_porosity_frac: grid(recipe.dry_film_porosity_frac),
        dry_thickness_m: grid(dry_thickness),
        binder_migration_index: grid(if anode { 0.884 } else { 0.855 }),
        film,
    };
    let (areal, porosity, coating, electrode) =
        if anode { (0.12603, 0.3190, 84.76e-6, 177.53e-6) } else { (0.19760, 0.3006, 63.41e-6, 141.82e-6) };
    CalenderedElectrode {
        dry,
        length_scale: 1.0 + foil.calender_elongation_frac,
        areal_mass_kg_m2: grid(areal),
        nominal_areal_mass_kg_m2: areal,
        porosity_frac: grid(porosity),
        coating_thickness_m: grid(coating),
        electrode_thickness_m: grid(electrode),
        nominal_porosity_frac: porosity,
        nominal_coating_thickness_m: coating,
        nominal_electrode_thickness_m: electrode,
    }
}

/// Default slitting params of `line`.
pub fn slitting_params(line: Line) -> SlittingParams {
    if line == Line::Anode {
        SlittingParams::anode()
    } else {
        SlittingParams::cathode()
    }
}

/// Slits `electrode` with the default params in deterministic mode, fresh blade.
pub fn slit(line: Line, electrode: CalenderedElectrode) -> SlitLanes {
    let mut rngs = Rngs::new(1);
    let mut sink = VecSink::default();
    Slitting::run(&slitting_params(line), electrode, &mut BladeState::default(), &mut rngs.ctx(line), &mut sink).output
}

/// Slits and inspects `electrode` with the default params in deterministic mode.
pub fn inspect(line: Line, electrode: CalenderedElectrode) -> InspectedLanes {
    let mut rngs = Rngs::new(1);
    let mut sink = VecSink::default();
    let lanes = slit(line, electrode);
    Inspection::run(&InspectionParams::default(), lanes, &mut (), &mut rngs.ctx(line), &mut sink).output
}

/// Relative difference check with a message.
pub fn assert_close(value: f64, reference: f64, tol_frac: f64, what: &str) {
    assert!(
        (value / reference - 1.0).abs() <= tol_frac,
        "{what}: {value} vs reference {reference} (tolerance {:.2} %)",
        tol_frac * 100.0
    );
}
