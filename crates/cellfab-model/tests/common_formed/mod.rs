//! Shared helpers of the cell-model, formation and aging tests: the nominal filled cell of
//! the default scenario (MODELS.md §8, §9, §15, deterministic), lots of them, and a stage
//! context.
#![allow(dead_code)]

use cellfab_model::cell::{AssembledCell, CellElectrode, FilledCell, Genealogy};
use cellfab_model::electrochem::{collector_resistance_ohm, TAB_FACTOR_DISTRIBUTED};
use cellfab_model::random::stream;
use cellfab_model::stage::{Line, StageCtx};

/// Relative closeness: |a/b − 1| ≤ tol.
pub fn close(a: f64, b: f64, tol: f64) -> bool {
    (a / b - 1.0).abs() <= tol
}

/// Asserts |a/b − 1| ≤ tol with a readable message.
#[track_caller]
pub fn assert_rel(what: &str, a: f64, b: f64, tol: f64) {
    assert!(close(a, b, tol), "{what}: got {a}, reference {b} (tolerance {tol})");
}

/// The deterministic default cell just before formation (§8.3, §9.3, §15): NMC811 cathode
/// 0.81 m × 0.061 m, graphite anode 0.86 m × 0.063 m, wetting 0.99901, no short.
pub fn nominal_filled_cell() -> FilledCell {
    let cathode =
        electrode(0.81, 0.061, 0.19760, 0.3006, 63.41e-6, 141.82e-6, 0.96, 4455.3, 4750.0, 200.0, 305.0, 10e-6);
    let cathode = CellElectrode {
        foil_thickness_m: 15e-6,
        foil_resistivity_ohm_m: 2.82e-8,
        moisture_mass_frac: 103e-6,
        max_burr_height_m: 3.0e-6,
        ..cathode
    };
    let anode =
        electrode(0.86, 0.063, 0.12603, 0.3190, 84.76e-6, 177.53e-6, 0.955, 2183.2, 2260.0, 350.0, 372.0, 15e-6);
    let anode =
        CellElectrode { foil_thickness_m: 8e-6, foil_resistivity_ohm_m: 1.72e-8, moisture_mass_frac: 77e-6, ..anode };
    let c_c = cathode.areal_mass_kg_m2 * cathode.am_mass_frac * cathode.design_capacity_ah_kg;
    let c_a = anode.areal_mass_kg_m2 * anode.am_mass_frac * anode.design_capacity_ah_kg;
    let r_cc = collector_resistance_ohm(2.82e-8, 0.81, 0.061, 15e-6, TAB_FACTOR_DISTRIBUTED)
        + collector_resistance_ohm(1.72e-8, 0.86, 0.063, 8e-6, TAB_FACTOR_DISTRIBUTED);
    let assembled = AssembledCell {
        genealogy: Genealogy {
            cell_id: "B1-L0-0".into(),
            batch_id: 1,
            lane: 0,
            index_in_lane: 0,
            anode_reel_id: "B1-A-L0".into(),
            cathode_reel_id: "B1-C-L0".into(),
            anode_reel_start_m: 0.0,
            cathode_reel_start_m: 0.0,
            anode_coating_start_m: 10.0,
            anode_coating_end_m: 10.86,
            cathode_coating_start_m: 10.0,
            cathode_coating_end_m: 10.81,
            splice: false,
            defect_ids: Vec::new(),
            fault_labels: Vec::new(),
        },
        design_capacity_ah: cathode.area_m2 * c_c,
        np_ratio: c_a / c_c,
        np_ratio_local_min: c_a / c_c,
        local_plating_charge_ah: 0.0,
        separator_length_m: 0.96,
        separator_width_m: 0.067,
        stack_thickness_m: 351.3e-6,
        jelly_roll_diameter_m: 19.99e-3,
        alignment_offset_m: 0.0,
        overhang_margin_m: 1.0e-3,
        pore_volume_m3: 5.739e-6,
        water_mass_kg: 3.06e-6,
        latent_short_resistance_ohm: f64::INFINITY,
        insulation_resistance_ohm: 1e10,
        insulation_resistance_measured_ohm: 1e10,
        tab_resistance_ohm: 2e-3,
        current_collector_resistance_ohm: r_cc,
        mass_kg: 52.64e-3,
        can_volume_m3: std::f64::consts::PI * 0.021 * 0.021 / 4.0 * 0.070,
        plating_risk: false,
        defects: Vec::new(),
        reject_reason: None,
        cathode,
        anode,
    };
    FilledCell {
        assembled,
        electrolyte_mass_kg: 7.80e-3,
        electrolyte_volume_m3: 6.498e-6,
        fill_ratio_frac: 6.498 / 5.739,
        wetting_frac: 0.99901,
        soak_time_s: 28800.0,
        mass_kg: 60.44e-3,
        water_mass_kg: 3.22e-6,
    }
}

#[allow(clippy::too_many_arguments)]
fn electrode(
    length_m: f64,
    width_m: f64,
    areal_mass_kg_m2: f64,
    porosity_frac: f64,
    coating_thickness_m: f64,
    electrode_thickness_m: f64,
    am_mass_frac: f64,
    solid_density_kg_m3: f64,
    am_density_kg_m3: f64,
    design_capacity_ah_kg: f64,
    stoich_capacity_ah_kg: f64,
    d50_m: f64,
) -> CellElectrode {
    let area_m2 = 2.0 * length_m * width_m;
    CellElectrode {
        length_m,
        width_m,
        area_m2,
        areal_mass_kg_m2,
        porosity_frac,
        coating_thickness_m,
        electrode_thickness_m,
        am_mass_kg: area_m2 * areal_mass_kg_m2 * am_mass_frac,
        am_mass_frac,
        solid_density_kg_m3,
        am_density_kg_m3,
        design_capacity_ah_kg,
        stoich_capacity_ah_kg,
        d50_m,
        ..CellElectrode::default()
    }
}

/// `n` nominal cells, `per_lane` per lane, with ids `B1-L<lane>-<k>` in id order.
pub fn nominal_lot(n: usize, per_lane: usize) -> Vec<FilledCell> {
    (0..n)
        .map(|i| {
            let mut c = nominal_filled_cell();
            let g = &mut c.assembled.genealogy;
            g.lane = (i / per_lane) as u32;
            g.index_in_lane = (i % per_lane) as u32;
            g.cell_id = format!("B1-L{}-{}", g.lane, g.index_in_lane);
            c
        })
        .collect()
}

/// Runs `f` with a deterministic stage context (process variability and sensor noise off)
/// on the cell line.
pub fn with_ctx<R>(f: impl FnOnce(&mut StageCtx<'_>) -> R) -> R {
    with_ctx_mode(false, 42, f)
}

/// Runs `f` with a stage context; `noise` turns sensor noise on.
pub fn with_ctx_mode<R>(noise: bool, seed: u64, f: impl FnOnce(&mut StageCtx<'_>) -> R) -> R {
    let mut p = stream(seed, &[1]);
    let mut s = stream(seed, &[2]);
    let mut ctx = StageCtx {
        batch_id: 1,
        line: Line::Cell,
        start_t_s: 0.0,
        process_rng: &mut p,
        sensor_rng: &mut s,
        stream_seed: seed,
        process_variability: false,
        sensor_noise: noise,
        parallel: &cellfab_model::Sequential,
        faults: &cellfab_model::fault::NO_FAULTS,
    };
    f(&mut ctx)
}
