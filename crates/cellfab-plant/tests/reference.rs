//! The default scenario of MODELS.md §15, run through the whole plant in deterministic mode:
//! every stage's final values against the reference numbers and their tolerances
//! (A ±0.5 %, B ±1 %, C ±3 %, X exact). The stage tests check each model on nominal
//! hand-built inputs; this test checks that the chain hands the right products on.

use cellfab_plant::events::PlantEvent;
use cellfab_plant::{Delivery, Plant, PlantConfig};
use serde_json::Value;
use std::collections::BTreeMap;

const A: f64 = 0.005;
const B: f64 = 0.01;
const C: f64 = 0.03;

struct Run {
    results: BTreeMap<String, Value>,
    cells: Vec<Value>,
}

fn run() -> &'static Run {
    static RUN: std::sync::OnceLock<Run> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let mut c = PlantConfig::deterministic();
        c.plant.start = "2025-01-01T00:00:00Z".into();
        let plant = Plant::new(c, jiff::Timestamp::now()).unwrap();
        let sub = plant.bus().subscribe(1 << 16, Delivery::Reliable);
        let h = std::thread::spawn(move || {
            let mut results = BTreeMap::new();
            let mut cells = Vec::new();
            for e in sub.rx {
                match &*e {
                    PlantEvent::StageFinished { machine, result, .. } => {
                        results.insert(machine.machine_id.clone(), result.to_json());
                    }
                    PlantEvent::CellResults { rows, .. } => cells.extend(rows.iter().cloned()),
                    _ => {}
                }
            }
            Run { results, cells }
        });
        plant.run().unwrap();
        h.join().unwrap()
    })
}

fn get(machine: &str, path: &str) -> f64 {
    let mut v = &run().results[machine];
    for key in path.split('.') {
        v = v.get(key).unwrap_or_else(|| panic!("{machine}: no {path}"));
    }
    v.as_f64().unwrap_or_else(|| panic!("{machine}.{path} is not a number: {v}"))
}

#[track_caller]
fn close(machine: &str, path: &str, reference: f64, tol: f64) {
    let got = get(machine, path);
    assert!(
        ((got - reference) / reference).abs() <= tol,
        "{machine}.{path} = {got}, reference {reference} ± {:.1} %",
        tol * 100.0
    );
}

#[test]
fn mixing_and_coating_match_section_15() {
    for (line, mass, rho, visc, yield_, t_end) in
        [("Anode", 438.04, 1368.9, 3.72, 21.9, 22.0), ("Cathode", 445.49, 2227.4, 4.09, 10.5, 24.2)]
    {
        let m = format!("TK_Mix_{line}");
        close(&m, "slurry_mass_kg", mass, A);
        close(&m, "density_kg_m3", rho, A);
        close(&m, "viscosity_ref_pa_s", visc, B);
        close(&m, "yield_stress_pa", yield_, B);
        close(&m, "temperature_end_degc", t_end, B);
        assert_eq!(get(&m, "duration_s"), 6300.0);
    }
    close("MC_Coat_Anode", "nominal_wet_thickness_m", 184.13e-6, A);
    close("MC_Coat_Cathode", "nominal_wet_thickness_m", 128.00e-6, A);
    close("MC_Coat_Anode", "nominal_areal_mass_kg_m2", 0.12603, A);
    close("MC_Coat_Cathode", "nominal_areal_mass_kg_m2", 0.19958, A);
    close("MC_Coat_Anode", "roll_length_m", 1587.5, A);
    close("MC_Coat_Cathode", "roll_length_m", 1484.4, A);
    close("MC_Coat_Anode", "min_window_margin", 1.84, B);
    close("MC_Coat_Cathode", "min_window_margin", 1.54, B);
}

#[test]
fn drying_and_calendering_match_section_15() {
    close("MC_Dry_Anode", "dry_point_m", 31.3, B);
    close("MC_Dry_Cathode", "dry_point_m", 22.2, B);
    close("MC_Dry_Anode", "binder_migration_index", 0.884, B);
    close("MC_Dry_Cathode", "binder_migration_index", 0.855, B);
    close("MC_Dry_Anode", "heater_power_w", 320.9e3, B);
    close("MC_Dry_Cathode", "heater_power_w", 255.8e3, B);
    close("MC_Dry_Anode", "energy_j", 362.6 * 3.6e6, B);
    close("MC_Cal_Anode", "mean_porosity_frac", 0.3190, A);
    close("MC_Cal_Cathode", "mean_porosity_frac", 0.3006, A);
    close("MC_Cal_Anode", "mean_electrode_thickness_m", 177.53e-6, A);
    close("MC_Cal_Cathode", "mean_electrode_thickness_m", 141.82e-6, A);
    close("MC_Cal_Cathode", "mean_areal_mass_kg_m2", 0.19760, A);
    close("MC_Cal_Cathode", "length_m", 1499.2, A);
    close("MC_Cal_Anode", "mean_nip_pressure_pa", 89e6, B);
    close("MC_Cal_Cathode", "mean_nip_pressure_pa", 250e6, B);
}

#[test]
fn slitting_inspection_rewinding_match_section_15() {
    close("MC_Slit_Anode", "first_burr_height_m", 3.007e-6, A);
    close("MC_Slit_Cathode", "first_burr_height_m", 3.014e-6, A);
    close("MC_Slit_Anode", "max_burr_height_m", 3.054e-6, A);
    close("MC_Slit_Cathode", "max_burr_height_m", 3.059e-6, A);
    close("MC_Slit_Cathode", "foil_stress_pa", 8.0e6, A);
    // only the start-up scrap is rejected: 10 m of coating on each of 8 lanes
    close("MC_Inspect_Anode", "rejected_length_m", 80.0, A);
    close("MC_Inspect_Cathode", "rejected_length_m", 80.8, A);
    close("MC_Rewind_Anode", "final_lane.wound_length_m", 1577.5, A);
    close("MC_Rewind_Cathode", "final_lane.wound_length_m", 1489.1, A);
    close("MC_Rewind_Cathode", "final_lane.core_pressure_pa", 1.913e6, A);
}

#[test]
fn cell_line_matches_section_15() {
    assert_eq!(get("MC_Assembly_Cell", "cells_total"), 14672.0);
    assert_eq!(get("MC_Assembly_Cell", "cells_rejected"), 0.0);
    close("MC_Assembly_Cell", "mean_np_ratio", 1.110, A);
    close("MC_Assembly_Cell", "mean_design_capacity_ah", 3.749, A);
    close("MC_Assembly_Cell", "mean_jelly_roll_diameter_m", 19.99e-3, A);
    close("MC_Assembly_Cell", "mean_pore_volume_m3", 5.739e-6, A);
    close("MC_Assembly_Cell", "mean_mass_kg", 52.64e-3, A);
    close("MC_ElecFill_Cell", "mean_wetting_frac", 0.99901, A);
    close("MC_ElecFill_Cell", "mean_electrolyte_mass_kg", 7.80e-3, A);
    assert_eq!(get("MC_ElecFill_Cell", "duration_s"), 42600.0);
    close("MC_Formation_Cell", "duration_s", 63280.0, B);
    close("MC_Formation_Cell", "discharge_capacity_ah.mean", 3.687, B);
    close("MC_Formation_Cell", "first_charge_capacity_ah.mean", 4.195, B);
    let fce = get("MC_Formation_Cell", "first_cycle_efficiency_frac.mean");
    assert!((fce - 0.879).abs() <= 0.005, "FCE {fce}");
    close("MC_Formation_Cell", "dcr_10s_ohm.mean", 25.14e-3, B);
    close("MC_Formation_Cell", "soc_frac.mean", 0.3006, B);
    let ocv = get("MC_Formation_Cell", "voltage_mean_v");
    assert!((ocv - 3.5257).abs() <= 0.002, "storage OCV {ocv}");
    close("MC_Aging_Cell", "k_value_mv_per_day.p50", 0.101, 0.02 / 0.101);
    close("MC_Aging_Cell", "soc_mean_frac", 0.2954, B);
    close("MC_Aging_Cell", "capacity_loss_ah.mean", 0.0189, C);
    let ocv2 = get("MC_Aging_Cell", "ocv_mean_v");
    assert!((ocv2 - 3.5233).abs() <= 0.002, "OCV2 {ocv2}");
    assert_eq!(get("MC_Aging_Cell", "grade_counts.a"), 14672.0, "all cells grade A");
    assert_eq!(get("MC_Aging_Cell", "grade_counts.reject"), 0.0);
}

#[test]
fn every_cell_result_carries_its_genealogy() {
    let cells = &run().cells;
    assert_eq!(cells.len(), 14672);
    let first = &cells[0];
    for key in ["cell_id", "batch_id", "lane", "anode_reel_id", "cathode_reel_id", "grade"] {
        assert!(first.get(key).is_some(), "cell result lacks {key}: {first}");
    }
    assert_eq!(first["cell_id"], "B1-L0-0");
    assert_eq!(first["grade"], "A");
    let energy = first["discharge_energy_wh"].as_f64().unwrap();
    assert!((energy / 13.48 - 1.0).abs() <= B, "E_dis {energy}");
    let wh_kg = first["specific_energy_wh_kg"].as_f64().unwrap();
    assert!((wh_kg / 223.0 - 1.0).abs() <= B, "specific energy {wh_kg}");
}

/// MODELS.md §15, last paragraph: with process variability and sensor noise on (seeded), lot
/// means stay within the B tolerances, the coefficient of variation of Q_dis stays below
/// 1.5 % and at least 99 % of cells grade A or B.
#[test]
fn a_noisy_seeded_lot_stays_near_the_reference() {
    let mut c = PlantConfig::default();
    c.plant.start = "2025-01-01T00:00:00Z".into();
    c.plant.seed = 2024;
    assert!(c.plant.process_variability && c.plant.sensor_noise);
    let plant = Plant::new(c, jiff::Timestamp::now()).unwrap();
    let sub = plant.bus().subscribe(1 << 16, Delivery::Reliable);
    let h = std::thread::spawn(move || {
        let mut cells = Vec::new();
        for e in sub.rx {
            if let PlantEvent::CellResults { rows, .. } = &*e {
                cells.extend(rows.iter().cloned());
            }
        }
        cells
    });
    plant.run().unwrap();
    let cells = h.join().unwrap();
    let q: Vec<f64> = cells.iter().filter_map(|c| c["discharge_capacity_ah"].as_f64()).collect();
    assert!(q.len() > 14_000, "{} cells formed", q.len());
    let mean = q.iter().sum::<f64>() / q.len() as f64;
    let sd = (q.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / q.len() as f64).sqrt();
    assert!((mean / 3.687 - 1.0).abs() <= B, "mean Q_dis {mean}");
    assert!(sd / mean < 0.015, "CV of Q_dis {}", sd / mean);
    let fce: Vec<f64> = cells.iter().filter_map(|c| c["first_cycle_efficiency_frac"].as_f64()).collect();
    let fce_mean = fce.iter().sum::<f64>() / fce.len() as f64;
    assert!((fce_mean - 0.879).abs() <= 0.005, "mean FCE {fce_mean}");
    let good = cells.iter().filter(|c| c["grade"] == "A" || c["grade"] == "B").count();
    assert!(good as f64 >= 0.99 * cells.len() as f64, "{good} of {} cells grade A or B", cells.len());
}
