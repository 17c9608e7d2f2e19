//! Hand-built electrode reels at the §15 deterministic values, for the cell-line tests
//! (the electrode stages are implemented elsewhere; these stand in for their output).

#![allow(dead_code)]

use cellfab_model::material::{water_vapour_pressure_pa, Foil};
use cellfab_model::random::{stream, StreamRng};
use cellfab_model::recipe::Recipe;
use cellfab_model::stage::{Line, StageCtx};
use cellfab_model::stages::calendaring::CalenderedElectrode;
use cellfab_model::stages::coating::WetFilm;
use cellfab_model::stages::drying::DryElectrode;
use cellfab_model::stages::inspection::{InspectedLanes, LaneVerdicts, SegmentVerdict};
use cellfab_model::stages::mixing::Slurry;
use cellfab_model::stages::rewinding::{ElectrodeReels, Reel, ReelPiece};
use cellfab_model::stages::slitting::{BladeState, Lane, SlitLanes};
use cellfab_model::web::{SegmentFlags, WebGrid};
use std::sync::OnceLock;

/// Segment length of the web grid [m].
pub const SEGMENT_M: f64 = 0.5;
/// CD cells across the coated width.
pub const N_CD: usize = 32;
/// Start-up scrap at the roll start [m].
pub const STARTUP_M: f64 = 10.0;

/// The §15 values of one line.
#[derive(Clone, Copy, Debug)]
pub struct Nominal {
    pub coating_width_m: f64,
    pub roll_length_m: f64,
    pub line_speed_m_s: f64,
    pub coated_areal_mass_kg_m2: f64,
    pub areal_mass_kg_m2: f64,
    pub porosity_frac: f64,
    pub coating_thickness_m: f64,
    pub electrode_thickness_m: f64,
    pub length_scale: f64,
    pub lane_width_m: f64,
    pub reel_length_m: f64,
    pub moisture_coeff_per_pa: f64,
}

pub fn nominal(line: Line) -> Nominal {
    match line {
        Line::Anode => Nominal {
            coating_width_m: 0.52,
            roll_length_m: 1587.5,
            line_speed_m_s: 0.4,
            coated_areal_mass_kg_m2: 0.12603,
            areal_mass_kg_m2: 0.12603,
            porosity_frac: 0.3190,
            coating_thickness_m: 84.76e-6,
            electrode_thickness_m: 177.53e-6,
            length_scale: 1.0,
            lane_width_m: 0.063,
            reel_length_m: 1577.5,
            moisture_coeff_per_pa: 6e-6,
        },
        _ => Nominal {
            coating_width_m: 0.50,
            roll_length_m: 1484.4,
            line_speed_m_s: 0.5,
            coated_areal_mass_kg_m2: 0.19958,
            areal_mass_kg_m2: 0.19760,
            porosity_frac: 0.3006,
            coating_thickness_m: 63.41e-6,
            electrode_thickness_m: 141.82e-6,
            length_scale: 1.01,
            lane_width_m: 0.061,
            reel_length_m: 1489.1,
            moisture_coeff_per_pa: 8e-6,
        },
    }
}

fn slurry(line: Line) -> Slurry {
    let anode = line == Line::Anode;
    let recipe = if anode { Recipe::anode() } else { Recipe::cathode() };
    let (am, ca, binder) = if anode { (0.955, 0.010, 0.035) } else { (0.96, 0.02, 0.02) };
    let (mass, solids, density) = if anode { (438.04, 0.50, 1368.9) } else { (445.49, 0.70, 2227.4) };
    let dry = mass * solids;
    Slurry {
        batch_id: 1,
        line,
        am_mass_frac_dry: am,
        ca_mass_frac_dry: ca,
        binder_mass_frac_dry: binder,
        am_mass_kg: dry * am,
        ca_mass_kg: dry * ca,
        binder_mass_kg: dry * binder,
        solvent_mass_kg: mass - dry,
        volume_m3: mass / density,
        usable_volume_m3: 0.95 * mass / density,
        density_kg_m3: density,
        solid_density_kg_m3: if anode { 2183.2 } else { 4455.3 },
        solids_mass_frac: solids,
        solids_volume_frac: if anode { 0.3135 } else { 0.3500 },
        zero_shear_viscosity_pa_s: if anode { 20.0 } else { 15.0 },
        viscosity_ref_pa_s: if anode { 3.72 } else { 4.09 },
        cross_time_constant_s: recipe.cross_time_constant_s,
        cross_exponent: recipe.cross_exponent,
        cross_inf_ratio: recipe.cross_inf_ratio,
        viscosity_activation_energy_j_mol: recipe.viscosity_activation_energy_j_mol,
        yield_stress_pa: if anode { 21.9 } else { 10.5 },
        agglomerate_frac: if anode { 0.029 } else { 0.031 },
        binder_dissolved_frac: 1.0,
        air_volume_frac: 0.002,
        temperature_degc: if anode { 22.0 } else { 24.2 },
        not_flowable: false,
        fault_labels: Vec::new(),
        recipe,
    }
}

/// Builds the reels of one line at the §15 values (uniform web, no defects, no splices).
fn build(line: Line) -> ElectrodeReels {
    let n = nominal(line);
    let anode = line == Line::Anode;
    let n_md = WebGrid::segments_for(n.roll_length_m, SEGMENT_M);
    let grid = |v: f64| WebGrid::filled(n_md, N_CD, SEGMENT_M, n.coating_width_m, v);
    let mut flags = vec![SegmentFlags::default(); n_md];
    let scrap_segments = (STARTUP_M / SEGMENT_M).round() as usize;
    for f in flags.iter_mut().take(scrap_segments) {
        f.set(SegmentFlags::STARTUP_SCRAP);
    }
    let slurry = slurry(line);
    let solvent_per_solid = (1.0 - slurry.solids_mass_frac) / slurry.solids_mass_frac;
    let (wet, dry_thickness) = if anode { (184.13e-6, 115.45e-6) } else { (128.00e-6, 82.96e-6) };
    let film = WetFilm {
        slurry,
        foil: if anode { Foil::CU } else { Foil::AL },
        coating_width_m: n.coating_width_m,
        line_speed_m_s: n.line_speed_m_s,
        sides: 2,
        roll_length_m: n.roll_length_m,
        coating_duration_s: n.roll_length_m / n.line_speed_m_s,
        startup_scrap_length_m: STARTUP_M,
        slurry_temperature_degc: if anode { 22.0 } else { 24.2 },
        areal_mass_kg_m2: grid(n.coated_areal_mass_kg_m2),
        wet_thickness_m: grid(wet),
        solvent_mass_kg_m2: grid(n.coated_areal_mass_kg_m2 * solvent_per_solid),
        segment_flags: flags,
        defects: Vec::new(),
        nominal_areal_mass_kg_m2: n.coated_areal_mass_kg_m2,
        nominal_wet_thickness_m: wet,
        nominal_dry_thickness_m: dry_thickness,
        fault_regions: Vec::new(),
    };
    let dry = DryElectrode {
        residual_solvent_frac: grid(if anode { 5.0e-4 } else { 2.0e-4 }),
        dry_porosity_frac: grid(if anode { 0.50 } else { 0.46 }),
        dry_thickness_m: grid(dry_thickness),
        binder_migration_index: grid(if anode { 0.884 } else { 0.855 }),
        film,
    };
    let calendered = CalenderedElectrode {
        dry,
        length_scale: n.length_scale,
        areal_mass_kg_m2: grid(n.areal_mass_kg_m2),
        nominal_areal_mass_kg_m2: n.areal_mass_kg_m2,
        porosity_frac: grid(n.porosity_frac),
        coating_thickness_m: grid(n.coating_thickness_m),
        electrode_thickness_m: grid(n.electrode_thickness_m),
        nominal_porosity_frac: n.porosity_frac,
        nominal_coating_thickness_m: n.coating_thickness_m,
        nominal_electrode_thickness_m: n.electrode_thickness_m,
    };
    let lanes_n = 8;
    let trim = (n.coating_width_m - lanes_n as f64 * n.lane_width_m) / 2.0;
    let lanes: Vec<Lane> = (0..lanes_n)
        .map(|j| Lane {
            index: j,
            cd_start_m: trim + j as f64 * n.lane_width_m,
            nominal_width_m: n.lane_width_m,
            width_m: vec![n.lane_width_m; n_md],
            burr_height_m: vec![3.0e-6; n_md],
            areal_mass_kg_m2: vec![n.areal_mass_kg_m2; n_md],
            porosity_frac: vec![n.porosity_frac; n_md],
            coating_thickness_m: vec![n.coating_thickness_m; n_md],
            electrode_thickness_m: vec![n.electrode_thickness_m; n_md],
            wrinkle: vec![false; n_md],
            defect_ids: Vec::new(),
        })
        .collect();
    let verdicts = lanes
        .iter()
        .map(|l| LaneVerdicts {
            lane: l.index,
            segment_ok: (0..n_md).map(|i| i >= scrap_segments).collect(),
            measured_areal_mass_kg_m2: l.areal_mass_kg_m2.clone(),
            measured_thickness_m: l.electrode_thickness_m.clone(),
            measured_width_m: l.width_m.clone(),
            measured_burr_height_m: l.burr_height_m.clone(),
            defects_detected: vec![0; n_md],
            verdicts: (0..n_md)
                .map(|i| {
                    let ok = i >= scrap_segments;
                    SegmentVerdict {
                        width_ok: true,
                        thickness_ok: true,
                        areal_mass_ok: true,
                        burr_ok: true,
                        surface_ok: ok,
                        overall_ok: ok,
                    }
                })
                .collect(),
            accepted_length_m: (n_md - scrap_segments) as f64 * 0.5 * n.length_scale,
            rejected_length_m: scrap_segments as f64 * 0.5 * n.length_scale,
        })
        .collect();
    let moisture = n.moisture_coeff_per_pa * water_vapour_pressure_pa(-40.0);
    let initial = if anode { 'A' } else { 'C' };
    let reels = (0..lanes_n)
        .map(|j| Reel {
            lane: j,
            reel_id: format!("B1-{initial}-L{j}"),
            length_m: n.reel_length_m,
            pieces: vec![ReelPiece { reel_start_m: 0.0, coating_start_m: STARTUP_M, length_m: n.reel_length_m }],
            splices_m: Vec::new(),
            discarded_length_m: STARTUP_M * n.length_scale,
            reel_diameter_m: if anode { 0.6162 } else { 0.5404 },
            core_pressure_pa: if anode { 1.617e6 } else { 1.913e6 },
            moisture_mass_frac: moisture,
            scrapped: false,
            end_tension_n: if anode { 11.61 } else { 11.77 },
        })
        .collect();
    ElectrodeReels {
        inspected: InspectedLanes {
            slit: SlitLanes {
                electrode: calendered,
                lanes,
                edge_trim_m: trim,
                knife_positions_m: Vec::new(),
                blade: BladeState::default(),
            },
            verdicts,
        },
        reels,
    }
}

/// The reels of one line at the §15 values (built once, cloned).
pub fn nominal_reels(line: Line) -> ElectrodeReels {
    static ANODE: OnceLock<ElectrodeReels> = OnceLock::new();
    static CATHODE: OnceLock<ElectrodeReels> = OnceLock::new();
    match line {
        Line::Anode => ANODE.get_or_init(|| build(Line::Anode)).clone(),
        _ => CATHODE.get_or_init(|| build(Line::Cathode)).clone(),
    }
}

/// Multiplies the calendered areal mass of every lane-segment (and the grid) by `factor`.
pub fn scale_areal_mass(reels: &mut ElectrodeReels, factor: f64) {
    for lane in &mut reels.inspected.slit.lanes {
        lane.areal_mass_kg_m2.iter_mut().for_each(|v| *v *= factor);
    }
    reels.inspected.slit.electrode.areal_mass_kg_m2.map_in_place(|v| v * factor);
}

/// Cuts `gap_coating_m` of web out of reel `lane` at reel position `at_m` and splices the
/// two pieces there (what rewinding does around a rejected run).
pub fn cut_out(reels: &mut ElectrodeReels, lane: usize, at_m: f64, gap_coating_m: f64) {
    let scale = reels.inspected.slit.electrode.length_scale;
    let reel = &mut reels.reels[lane];
    let first = reel.pieces[0];
    let removed = gap_coating_m * scale;
    let second = ReelPiece {
        reel_start_m: at_m,
        coating_start_m: first.coating_start_m + at_m / scale + gap_coating_m,
        length_m: first.length_m - at_m - removed,
    };
    reel.pieces = vec![ReelPiece { length_m: at_m, ..first }, second];
    reel.splices_m = vec![at_m];
    reel.length_m = at_m + second.length_m;
    reel.discarded_length_m += removed;
}

/// Random streams for a stage context.
pub struct Streams {
    pub process: StreamRng,
    pub sensor: StreamRng,
}

impl Streams {
    pub fn new(seed: u64) -> Self {
        Self { process: stream(seed, &[1]), sensor: stream(seed, &[2]) }
    }

    /// A cell-line context; deterministic unless the flags say otherwise.
    pub fn ctx(&mut self, variability: bool, noise: bool) -> StageCtx<'_> {
        StageCtx {
            batch_id: 1,
            line: Line::Cell,
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

/// Relative closeness check.
pub fn close(value: f64, reference: f64, tol_frac: f64) -> bool {
    (value / reference - 1.0).abs() <= tol_frac
}

/// Asserts `value` is within `tol_frac` of `reference`.
#[track_caller]
pub fn assert_close(what: &str, value: f64, reference: f64, tol_frac: f64) {
    assert!(close(value, reference, tol_frac), "{what}: {value} vs reference {reference} (tol {tol_frac})");
}

/// A sink that records the stage time of every sample and alarm in arrival order.
#[derive(Default)]
pub struct TimelineSink {
    /// (is_alarm, stage time) in arrival order.
    pub events: Vec<(bool, f64)>,
}

impl<S: cellfab_model::stage::SampleRecord> cellfab_model::stage::StageSink<S> for TimelineSink {
    fn sample(&mut self, sample: S) {
        self.events.push((false, sample.stage_time_s()));
    }
    fn alarm(&mut self, alarm: &cellfab_model::alarm::Alarm) {
        self.events.push((true, alarm.stage_time_s));
    }
}

impl TimelineSink {
    /// Samples and alarms arrived in time order, and every alarm came before the first
    /// sample at or after its time.
    pub fn assert_time_ordered(&self) {
        assert!(self.events.iter().any(|e| e.0), "no alarm to check");
        for w in self.events.windows(2) {
            assert!(w[0].1 <= w[1].1, "out of order: {:?} then {:?}", w[0], w[1]);
            if !w[0].0 && w[1].0 {
                assert!(w[1].1 > w[0].1, "alarm at {} arrived after the sample at {}", w[1].1, w[0].1);
            }
        }
    }
}
