//! Cell assembly (MODELS.md §8): §15 reference numbers, genealogy, rejects, validation.

mod common_cell;

use cellfab_model::alarm::AlarmState;
use cellfab_model::cell::AssembledCell;
use cellfab_model::defect::{Defect, DefectKind, DefectSeverity};
use cellfab_model::legacy::LegacyRecord;
use cellfab_model::stage::{Line, ResultRecord, SampleRecord, Stage, StageParams, StageRun, VecSink};
use cellfab_model::stages::assembly::{
    Assembly, AssemblyInput, AssemblyParams, AssemblyResult, AssemblySample, CellFormat, StackedPouchParams, TabLayout,
};
use cellfab_model::stages::rewinding::ElectrodeReels;
use common_cell::{assert_close, cut_out, nominal_reels, scale_areal_mass, Streams, TimelineSink};
use proptest::prelude::*;

const A: f64 = 0.005;

fn input() -> AssemblyInput {
    AssemblyInput { anode: nominal_reels(Line::Anode), cathode: nominal_reels(Line::Cathode) }
}

fn run_with(
    params: &AssemblyParams,
    input: AssemblyInput,
    variability: bool,
    noise: bool,
) -> (StageRun<Vec<AssembledCell>, AssemblyResult>, VecSink<AssemblySample>) {
    params.validate().expect("valid params");
    let mut streams = Streams::new(7);
    let mut ctx = streams.ctx(variability, noise);
    let mut sink = VecSink::default();
    let run = Assembly::run(params, input, &mut (), &mut ctx, &mut sink);
    (run, sink)
}

fn small(max_cells: u32) -> AssemblyParams {
    AssemblyParams { max_cells, ..AssemblyParams::default() }
}

#[test]
fn default_batch_reproduces_section_15() {
    let (run, sink) = run_with(&AssemblyParams::default(), input(), false, false);
    let cells = &run.output;
    // X: 8 lanes × 1 834 cells (anode-limited), duration and sample count.
    assert_eq!(cells.len(), 14_672);
    assert_eq!(run.result.lanes.len(), 8);
    assert!(run.result.lanes.iter().all(|l| l.cells == 1834));
    assert_eq!(run.duration_s, 14_672.0);
    assert_eq!(sink.samples.len(), 1469);
    assert_eq!(run.result.cells_rejected, 0);
    assert!(run.result.alarms.is_empty());
    assert!(run.result.accepted());

    for cell in [&cells[0], &cells[cells.len() / 2], &cells[cells.len() - 1]] {
        assert_close("A_c m²", cell.cathode.area_m2, 0.09882, A);
        assert_close("A_a m²", cell.anode.area_m2, 0.10836, A);
        assert_close("NMC mass kg", cell.cathode.am_mass_kg, 18.75e-3, A);
        assert_close("graphite mass kg", cell.anode.am_mass_kg, 13.04e-3, A);
        assert_close("Q_design Ah", cell.design_capacity_ah, 3.749, A);
        assert_close("N/P", cell.np_ratio, 1.110, A);
        assert_close("local N/P", cell.np_ratio_local_min, 1.110, A);
        assert_close("t_stack m", cell.stack_thickness_m, 351.3e-6, A);
        assert_close("D_jr m", cell.jelly_roll_diameter_m, 19.99e-3, A);
        assert_close("overhang m", cell.overhang_margin_m, 1.0e-3, A);
        assert_close("V_pore m³", cell.pore_volume_m3, 5.739e-6, A);
        assert_close("water kg", cell.water_mass_kg, 3.06e-6, A);
        assert_close("dry mass kg", cell.mass_kg, 52.64e-3, A);
        assert_close("R_cc Ω", cell.current_collector_resistance_ohm, 4.53e-3, A);
        assert_close("can volume m³", cell.can_volume_m3, 24.24e-6, A);
        assert_eq!(cell.tab_resistance_ohm, 2e-3);
        assert_eq!(cell.local_plating_charge_ah, 0.0);
        assert!(cell.latent_short_resistance_ohm.is_infinite());
        assert_eq!(cell.insulation_resistance_ohm, 1e10);
        assert!(!cell.plating_risk && cell.reject_reason.is_none() && cell.defects.is_empty());
        // D_jr fits with a 0.21 mm margin.
        assert!((20.2e-3 - cell.jelly_roll_diameter_m - 0.21e-3).abs() < 0.01e-3);
    }
    // Areal capacities of §12.1 and moisture equilibria of §8.2.
    let c = &cells[0];
    assert_close("c_c", c.cathode.areal_mass_kg_m2 * 0.96 * 200.0, 37.94, A);
    assert_close("c_a", c.anode.areal_mass_kg_m2 * 0.955 * 350.0, 42.13, A);
    assert!((c.cathode.moisture_mass_frac * 1e6 - 103.0).abs() < 0.5);
    assert!((c.anode.moisture_mass_frac * 1e6 - 77.0).abs() < 0.5);
    // Unused reel lengths: cathode would allow 1 838 cells per lane.
    let lane = &run.result.lanes[0];
    assert!((lane.anode_unused_m - (1577.5 - 1834.0 * 0.86)).abs() < 1e-9);
    assert!((lane.cathode_unused_m - (1489.1 - 1834.0 * 0.81)).abs() < 1e-9);
    assert!(lane.cathode_unused_m / 0.81 >= 4.0);
}

#[test]
fn cells_carry_their_genealogy() {
    let (run, _) = run_with(&small(40), input(), false, false);
    let cells = &run.output;
    // Winding order: the lane pairs advance together.
    assert_eq!(cells[0].genealogy.cell_id, "B1-L0-0");
    assert_eq!(cells[1].genealogy.cell_id, "B1-L1-0");
    assert_eq!(cells[8].genealogy.cell_id, "B1-L0-1");
    let g = &cells[9].genealogy;
    assert_eq!((g.lane, g.index_in_lane, g.batch_id), (1, 1, 1));
    assert_eq!(g.cathode_reel_id, "B1-C-L1");
    assert_eq!(g.anode_reel_id, "B1-A-L1");
    assert!((g.cathode_reel_start_m - 0.81).abs() < 1e-12);
    assert!((g.anode_reel_start_m - 0.86).abs() < 1e-12);
    // Cathode reel metres are calendered metres: 0.81 m is 0.81/1.01 m of coating.
    assert!((g.cathode_coating_start_m - (10.0 + 0.81 / 1.01)).abs() < 1e-9);
    assert!((g.cathode_coating_end_m - (10.0 + 1.62 / 1.01)).abs() < 1e-9);
    assert!((g.anode_coating_start_m - 10.86).abs() < 1e-9);
    assert!((g.anode_coating_end_m - 11.72).abs() < 1e-9);
    assert!(!g.splice);
}

#[test]
fn samples_follow_the_winder_timeline() {
    let (run, sink) = run_with(&small(103), input(), false, false);
    // ⌈103/4⌉·4 s = 104 s: samples at 0, 10, …, 100 and 104.
    assert_eq!(run.duration_s, 104.0);
    let t: Vec<f64> = sink.samples.iter().map(|s| s.stage_time_s).collect();
    assert_eq!(t.len(), 12);
    assert_eq!(t[11], 104.0);
    assert_eq!(t[3], 30.0);
    let s0 = &sink.samples[0];
    assert_eq!(s0.cells_completed, 0);
    assert!(s0.last_cell_id.is_none() && s0.alignment_offset_m.is_none());
    // At 10 s two full cycles are done: 8 cells.
    assert_eq!(sink.samples[1].cells_completed, 8);
    assert_eq!(sink.samples[1].last_cell_id.as_deref(), Some("B1-L7-0"));
    let last = sink.samples.last().unwrap();
    assert_eq!(last.cells_completed, 103);
    assert_eq!(last.last_cell_id.as_deref(), Some(run.output[102].genealogy.cell_id.as_str()));
    assert_eq!(last.winding_tension_n.value(), 8.0);
    assert_eq!(last.dew_point_degc.value(), -40.0);
    assert!(!last.defect_risk);

    let mut rec = LegacyRecord::new();
    last.legacy(&mut rec);
    let keys: Vec<&str> = rec.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "cells_completed",
            "cells_rejected",
            "last_cell_id",
            "final_thickness",
            "porosity",
            "final_width",
            "epsilon_width",
            "wound_length",
            "roll_diameter"
        ]
    );
    assert_eq!(rec["cells_completed"], 103);
    assert!((rec["final_thickness"].as_f64().unwrap() - 351.35e-6).abs() < 1e-9);
    assert!((rec["porosity"].as_f64().unwrap() - (0.3190 + 0.3006) / 2.0).abs() < 1e-12);
    assert!((rec["final_width"].as_f64().unwrap() - 0.061).abs() < 1e-12);
    assert!((rec["wound_length"].as_f64().unwrap() - 0.86).abs() < 1e-12);
    let mut first = LegacyRecord::new();
    s0.legacy(&mut first);
    assert!(first["final_thickness"].is_null() && first["last_cell_id"].is_null());

    let mut fin = LegacyRecord::new();
    run.result.legacy(&mut fin);
    assert_eq!(fin["Final Properties"]["cells_completed"], 103);
    assert!(run.result.summary().iter().any(|(k, v)| *k == "N/P" && (v - 1.110).abs() < 0.005));
}

#[test]
fn splice_inside_a_cell_rejects_it() {
    let mut inp = input();
    // 3 m of anode cut out of lane 2 at reel position 100 m: the cell whose anode interval
    // holds 100 m is rejected; the lane loses 3 m and so 3 cells.
    cut_out(&mut inp.anode, 2, 100.0, 3.0);
    let (run, sink) = run_with(&AssemblyParams::default(), inp, false, false);
    let lane2: Vec<&AssembledCell> = run.output.iter().filter(|c| c.genealogy.lane == 2).collect();
    assert_eq!(lane2.len(), (1574.5_f64 / 0.86).floor() as usize);
    let rejected: Vec<&&AssembledCell> = lane2.iter().filter(|c| c.reject_reason.is_some()).collect();
    assert_eq!(rejected.len(), 1);
    let bad = rejected[0];
    assert_eq!(bad.reject_reason.as_deref(), Some("ASM_SPLICE_IN_CELL"));
    assert_eq!(bad.genealogy.index_in_lane, (100.0_f64 / 0.86).floor() as u32);
    assert!(bad.genealogy.splice);
    // Its anode coating interval jumps over the cut-out.
    let g = &bad.genealogy;
    assert!((g.anode_coating_end_m - g.anode_coating_start_m - (0.86 + 3.0)).abs() < 1e-9);
    assert_eq!(run.result.reject_counts.get("ASM_SPLICE_IN_CELL"), Some(&1));
    assert_eq!(run.result.cells_rejected, 1);
    assert!(run.result.accepted(), "a rejected cell does not reject the lot");
    // The alarm reached the sink, scoped to the cell, and the sample after it counts it.
    let alarm = sink.alarms.iter().find(|a| a.code == "ASM_SPLICE_IN_CELL").expect("alarm forwarded");
    assert_eq!(alarm.cell_id.as_deref(), Some(g.cell_id.as_str()));
    let after = sink.samples.iter().find(|s| s.stage_time_s >= alarm.stage_time_s).unwrap();
    assert_eq!(after.cells_rejected, 1);
    assert!(sink.alarms.iter().all(|a| a.state == AlarmState::Raised));
}

#[test]
fn alarms_and_samples_reach_the_sink_in_time_order() {
    let mut inp = input();
    cut_out(&mut inp.anode, 2, 100.0, 3.0);
    cut_out(&mut inp.cathode, 6, 40.0, 1.0);
    let params = AssemblyParams { alignment_sigma_m: 5e-4, max_cells: 2000, ..AssemblyParams::default() };
    let mut streams = Streams::new(5);
    let mut ctx = streams.ctx(true, true);
    let mut sink = TimelineSink::default();
    Assembly::run(&params, inp, &mut (), &mut ctx, &mut sink);
    sink.assert_time_ordered();
}

#[test]
fn sharp_burrs_pierce_the_separator_and_fail_the_hipot() {
    // A chipped knife (F07): 12 µm burrs on cathode lane 5, in deterministic mode the most
    // likely outcome (pierce, hard short) is taken.
    let mut inp = input();
    inp.cathode.inspected.slit.lanes[5].burr_height_m.iter_mut().for_each(|b| *b = 12e-6);
    let (run, _) = run_with(&small(80), inp, false, false);
    for c in &run.output {
        if c.genealogy.lane == 5 {
            assert_eq!(c.reject_reason.as_deref(), Some("ASM_HIPOT_FAIL"));
            assert_eq!(c.insulation_resistance_ohm, 10.0);
            assert!(c.latent_short_resistance_ohm <= 10.0);
            assert!((c.cathode.max_burr_height_m - 12e-6).abs() < 1e-15);
        } else {
            assert!(c.reject_reason.is_none());
        }
    }
    assert_eq!(run.result.reject_counts.get("ASM_HIPOT_FAIL"), Some(&10));
}

#[test]
fn soft_shorts_pass_the_hipot() {
    let mut inp = input();
    inp.cathode.inspected.slit.lanes[0].burr_height_m.iter_mut().for_each(|b| *b = 12e-6);
    let params = AssemblyParams { hard_short_frac: 0.0, max_cells: 16, ..AssemblyParams::default() };
    let (run, _) = run_with(&params, inp, false, false);
    let c = &run.output[0];
    assert!(c.reject_reason.is_none());
    assert_eq!(c.insulation_resistance_ohm, 1e10);
    // Two or three pierced segments in parallel, each at the 30 kΩ median.
    assert!(c.latent_short_resistance_ohm > 9e3 && c.latent_short_resistance_ohm < 16e3);
}

#[test]
fn undetected_agglomerates_make_soft_shorts() {
    let mut inp = input();
    let defect = Defect {
        id: 77,
        kind: DefectKind::Agglomerate,
        origin_stage: "coating".into(),
        md_position_m: 10.3,
        cd_position_m: 0.01,
        length_m: 1e-3,
        width_m: 1e-3,
        size_m: 1.2e-3,
        severity: DefectSeverity::Major,
        detected: false,
        false_call: false,
        fault_label: Some(3),
    };
    inp.anode.inspected.slit.electrode.dry.film.defects.push(defect);
    inp.anode.inspected.slit.lanes[0].defect_ids.push(77);
    let (run, _) = run_with(&small(16), inp, false, false);
    let c = &run.output[0];
    assert_eq!(c.genealogy.defect_ids, vec![77]);
    assert_eq!(c.genealogy.fault_labels, vec![3]);
    // p = 0.05 · 12 = 0.6 > ½: a soft short at the median.
    assert!((c.latent_short_resistance_ohm - 3e4).abs() < 1e-6);
    assert!(run.output[8].defects.is_empty(), "the next cell of lane 0 starts at 10.86 m");
}

#[test]
fn a_thin_anode_region_lowers_local_np_and_flags_plating() {
    let mut inp = input();
    // Halve the anode loading on segments 21..23 (coating 10.5–11.5 m) of lane 3.
    for seg in 21..23 {
        inp.anode.inspected.slit.lanes[3].areal_mass_kg_m2[seg] *= 0.5;
    }
    let (run, sink) = run_with(&small(40), inp, false, false);
    let c = run.output.iter().find(|c| c.genealogy.cell_id == "B1-L3-0").unwrap();
    assert!(c.np_ratio_local_min < 1.0);
    assert!(c.np_ratio < 1.110);
    assert!(c.plating_risk && c.reject_reason.is_none());
    assert!(c.local_plating_charge_ah > 0.0);
    assert!(sink.alarms.iter().any(|a| a.code == "ASM_LOW_NP" && a.cell_id.as_deref() == Some("B1-L3-0")));
    let other = run.output.iter().find(|c| c.genealogy.cell_id == "B1-L2-0").unwrap();
    assert!(!other.plating_risk);
}

#[test]
fn a_humid_dry_room_wets_the_later_cells() {
    let params = AssemblyParams { dew_point_degc: -10.0, max_cells: 4000, ..AssemblyParams::default() };
    let (run, sink) = run_with(&params, input(), false, false);
    let first = &run.output[0];
    let last = run.output.last().unwrap();
    assert!(last.water_mass_kg > first.water_mass_kg);
    assert!(last.cathode.moisture_mass_frac > 3.0 * first.cathode.moisture_mass_frac);
    assert!(sink.alarms.iter().any(|a| a.code == "ASM_HIGH_MOISTURE"));
    assert!(first.reject_reason.is_none() && run.result.cells_rejected == 0);
    assert!(sink.samples.last().unwrap().defect_risk);
}

#[test]
fn misalignment_violates_the_overhang() {
    let params = AssemblyParams { alignment_sigma_m: 8e-4, max_cells: 400, ..AssemblyParams::default() };
    let (run, _) = run_with(&params, input(), true, false);
    let violations = run.result.reject_counts.get("ASM_OVERHANG_VIOLATION").copied().unwrap_or(0);
    let low = run.output.iter().filter(|c| c.overhang_margin_m >= 0.0 && c.overhang_margin_m < 3e-4).count();
    // P(|δ| > 1 mm) for σ = 0.8 mm is 0.21.
    assert!(violations > 40 && violations < 130, "{violations}");
    assert!(low > 0);
    for c in &run.output {
        assert!((c.overhang_margin_m - (1e-3 - c.alignment_offset_m.abs())).abs() < 1e-12);
        assert_eq!(c.reject_reason.is_some(), c.overhang_margin_m < 0.0);
    }
}

#[test]
fn same_seed_same_cells_and_noise_never_changes_the_truth() {
    let params = small(300);
    let (a, sa) = run_with(&params, input(), true, true);
    let (b, sb) = run_with(&params, input(), true, true);
    assert_eq!(serde_json::to_string(&a.output).unwrap(), serde_json::to_string(&b.output).unwrap());
    assert_eq!(serde_json::to_string(&sa.samples).unwrap(), serde_json::to_string(&sb.samples).unwrap());
    let (quiet, _) = run_with(&params, input(), true, false);
    for (x, y) in a.output.iter().zip(&quiet.output) {
        assert_eq!(x.alignment_offset_m, y.alignment_offset_m);
        assert_eq!(x.insulation_resistance_ohm, y.insulation_resistance_ohm);
        assert_eq!(x.jelly_roll_diameter_m, y.jelly_roll_diameter_m);
    }
    // Noise on: readings differ from the truth; deterministic: alignment 0 exactly.
    let s = sa.samples.last().unwrap();
    assert_ne!(s.winding_tension_n.value(), 8.0);
    assert_ne!(s.insulation_resistance_ohm.unwrap().value(), 1e10);
    let (det, _) = run_with(&params, input(), false, false);
    assert!(det.output.iter().all(|c| c.alignment_offset_m == 0.0));
}

#[test]
fn stacked_pouch_builds_sheets() {
    let pouch = StackedPouchParams::default();
    let params = AssemblyParams {
        cell_format: CellFormat::StackedPouch(pouch.clone()),
        max_cells: 20,
        ..AssemblyParams::default()
    };
    let (run, _) = run_with(&params, input(), false, false);
    let n = pouch.cathode_sheet_count as f64;
    let c = &run.output[0];
    assert!((c.cathode.area_m2 - 2.0 * n * 0.058 * 0.10).abs() < 1e-12);
    assert!((c.anode.area_m2 - 2.0 * n * 0.060 * 0.102).abs() < 1e-12);
    let t = n * 141.82e-6 + (n + 1.0) * 177.53e-6 + (2.0 * n + 2.0) * 16e-6;
    assert!((c.stack_thickness_m - t).abs() < 1e-12);
    assert!((c.overhang_margin_m - 1e-3).abs() < 1e-12);
    // (2n + 1)·t_sheet per cell and stacker, 4 stackers: ⌈20/4⌉ cycles.
    assert!((run.duration_s - 5.0 * 41.0 * 0.45).abs() < 1e-9);
    assert!(run.result.cells_rejected == 0);
    // Same N/P: the ratio is per facing area.
    assert!((c.np_ratio - 1.110).abs() < 0.005);
}

#[test]
fn scrapped_reels_make_no_cells() {
    let mut inp = input();
    inp.cathode.reels[4].scrapped = true;
    let (run, _) = run_with(&AssemblyParams::default(), inp, false, false);
    assert_eq!(run.output.len(), 7 * 1834);
    assert_eq!(run.result.lanes[4].cells, 0);
    assert!((run.result.lanes[4].anode_unused_m - 1577.5).abs() < 1e-9);
}

#[test]
fn params_round_trip_and_reject_unknown_fields() {
    let p = AssemblyParams {
        cell_format: CellFormat::StackedPouch(StackedPouchParams::default()),
        cathode_tab: TabLayout::End,
        ..AssemblyParams::default()
    };
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains("\"stacked_pouch\"") && json.contains("\"end\""));
    let back: AssemblyParams = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
    let d = serde_json::to_value(AssemblyParams::default()).unwrap();
    assert_eq!(d["cell_format"], "cylindrical");
    assert_eq!(d["anode_tab"], "both_ends");
    let mut bad = d.clone();
    bad["winding_speed"] = 1.into();
    assert!(serde_json::from_value::<AssemblyParams>(bad).is_err());
    let schema = serde_json::to_string(&schemars::schema_for!(AssemblyParams)).unwrap();
    assert!(schema.contains("hipot_min_resistance_ohm") && schema.contains("stacked_pouch"));
}

type Setter = fn(&mut AssemblyParams);

#[test]
fn every_field_is_range_checked() {
    #[rustfmt::skip]
    let table: Vec<(&str, Setter, Option<f64>, Option<f64>)> = vec![
        ("can_inner_diameter_m", |p| p.can_inner_diameter_m = 0.0, Some(0.0), None),
        ("can_outer_diameter_m", |p| p.can_outer_diameter_m = -1.0, Some(0.0), None),
        ("can_inner_diameter_m", |p| p.can_inner_diameter_m = 0.022, None, Some(0.021)),
        ("can_height_m", |p| p.can_height_m = 0.0, Some(0.0), None),
        ("mandrel_diameter_m", |p| p.mandrel_diameter_m = 0.0, Some(0.0), Some(0.02)),
        ("mandrel_diameter_m", |p| p.mandrel_diameter_m = 0.021, Some(0.0), Some(0.02)),
        ("min_clearance_m", |p| p.min_clearance_m = 3e-3, Some(0.0), Some(2e-3)),
        ("hardware_mass_kg", |p| p.hardware_mass_kg = -0.1, Some(0.0), Some(1.0)),
        ("cathode_length_m", |p| p.cathode_length_m = 0.04, Some(0.05), Some(10.0)),
        ("cathode_length_m", |p| p.cathode_length_m = 11.0, Some(0.05), Some(10.0)),
        ("anode_extra_length_m", |p| p.anode_extra_length_m = 0.6, Some(0.0), Some(0.5)),
        ("separator_extra_length_m", |p| p.separator_extra_length_m = -0.1, Some(0.0), None),
        ("separator_extra_width_m", |p| p.separator_extra_width_m = -0.1, Some(0.0), None),
        ("winder_count", |p| p.winder_count = 0, Some(1.0), Some(1000.0)),
        ("winder_count", |p| p.winder_count = 1001, Some(1.0), Some(1000.0)),
        ("winding_cycle_s", |p| p.winding_cycle_s = 0.0, Some(0.0), Some(600.0)),
        ("winding_cycle_s", |p| p.winding_cycle_s = 601.0, Some(0.0), Some(600.0)),
        ("winding_tension_n", |p| p.winding_tension_n = 201.0, Some(0.0), Some(200.0)),
        ("alignment_sigma_m", |p| p.alignment_sigma_m = -1e-4, Some(0.0), None),
        ("min_overhang_m", |p| p.min_overhang_m = -1e-4, Some(0.0), None),
        ("tab_resistance_ohm", |p| p.tab_resistance_ohm = -1.0, Some(0.0), None),
        ("hipot_min_resistance_ohm", |p| p.hipot_min_resistance_ohm = 0.0, Some(0.0), None),
        ("dew_point_degc", |p| p.dew_point_degc = -81.0, Some(-80.0), Some(20.0)),
        ("dew_point_degc", |p| p.dew_point_degc = 21.0, Some(-80.0), Some(20.0)),
        ("cathode_moisture_coeff_per_pa", |p| p.cathode_moisture_coeff_per_pa = -1.0, Some(0.0), None),
        ("anode_moisture_coeff_per_pa", |p| p.anode_moisture_coeff_per_pa = -1.0, Some(0.0), None),
        ("moisture_time_constant_s", |p| p.moisture_time_constant_s = -1.0, Some(0.0), None),
        ("burr_pierce_scale_m", |p| p.burr_pierce_scale_m = -1.0, Some(0.0), None),
        ("hard_short_frac", |p| p.hard_short_frac = -0.1, Some(0.0), None),
        ("soft_short_median_ohm", |p| p.soft_short_median_ohm = -1.0, Some(0.0), None),
        ("soft_short_sigma_ln", |p| p.soft_short_sigma_ln = -1.0, Some(0.0), None),
        ("agglomerate_short_prob_per_100um", |p| p.agglomerate_short_prob_per_100um = -1.0, Some(0.0), None),
        ("sample_interval_s", |p| p.sample_interval_s = 0.0, Some(0.0), None),
        ("winding_tension_n", |p| p.winding_tension_n = f64::NAN, Some(0.0), Some(200.0)),
        ("cell_format.stacked_pouch.sheet_length_m",
            |p| p.cell_format = CellFormat::StackedPouch(StackedPouchParams { sheet_length_m: 3.0, ..Default::default() }),
            Some(0.01), Some(2.0)),
        ("cell_format.stacked_pouch.sheet_width_m",
            |p| p.cell_format = CellFormat::StackedPouch(StackedPouchParams { sheet_width_m: 0.0, ..Default::default() }),
            Some(0.005), Some(2.0)),
        ("cell_format.stacked_pouch.cathode_sheet_count",
            |p| p.cell_format = CellFormat::StackedPouch(StackedPouchParams { cathode_sheet_count: 0, ..Default::default() }),
            Some(1.0), Some(500.0)),
        ("cell_format.stacked_pouch.anode_sheet_margin_m",
            |p| p.cell_format = CellFormat::StackedPouch(StackedPouchParams { anode_sheet_margin_m: 0.02, ..Default::default() }),
            Some(0.0), Some(0.01)),
        ("cell_format.stacked_pouch.stacking_time_per_sheet_s",
            |p| p.cell_format = CellFormat::StackedPouch(StackedPouchParams { stacking_time_per_sheet_s: 0.0, ..Default::default() }),
            Some(0.0), Some(60.0)),
        ("cell_format.stacked_pouch.pouch_hardware_mass_kg",
            |p| p.cell_format = CellFormat::StackedPouch(StackedPouchParams { pouch_hardware_mass_kg: 2.0, ..Default::default() }),
            Some(0.0), Some(1.0)),
    ];
    assert!(AssemblyParams::default().validate().is_ok());
    for (field, set, min, max) in table {
        let mut p = AssemblyParams::default();
        set(&mut p);
        let before = format!("{p:?}");
        let e = p.validate().expect_err(field);
        assert_eq!(e.field, field);
        assert_eq!((e.min, e.max), (min, max), "{field}");
        assert_eq!(format!("{p:?}"), before, "validation never mutates");
    }
}

fn genealogy_is_consistent(cells: &[AssembledCell], anode: &ElectrodeReels, cathode: &ElectrodeReels) {
    let roll = |r: &ElectrodeReels| r.inspected.slit.electrode.dry.film.roll_length_m;
    let mut last_end: std::collections::HashMap<u32, (f64, f64)> = Default::default();
    for c in cells {
        let g = &c.genealogy;
        let j = g.lane as usize;
        let (ar, cr) = (&anode.reels[j], &cathode.reels[j]);
        assert_eq!(g.anode_reel_id, ar.reel_id);
        assert_eq!(g.cathode_reel_id, cr.reel_id);
        assert!(j < anode.inspected.slit.lanes.len());
        assert_eq!(g.cell_id, format!("B1-L{}-{}", g.lane, g.index_in_lane));
        // Reel intervals inside the reels.
        assert!(g.cathode_reel_start_m >= 0.0 && g.cathode_reel_start_m + c.cathode.length_m <= cr.length_m + 1e-9);
        assert!(g.anode_reel_start_m >= 0.0 && g.anode_reel_start_m + c.anode.length_m <= ar.length_m + 1e-9);
        // Coating positions inside the rolls, increasing along the cell.
        for (s, e, r) in [
            (g.cathode_coating_start_m, g.cathode_coating_end_m, roll(cathode)),
            (g.anode_coating_start_m, g.anode_coating_end_m, roll(anode)),
        ] {
            assert!(s >= 0.0 && e <= r + 1e-9 && s < e, "{s} {e} {r}");
        }
        // No overlap with the previous cell of the lane pair.
        if let Some((ce, ae)) = last_end.get(&g.lane) {
            assert!(g.cathode_reel_start_m >= ce - 1e-9 && g.anode_reel_start_m >= ae - 1e-9);
        }
        last_end.insert(g.lane, (g.cathode_reel_start_m + c.cathode.length_m, g.anode_reel_start_m + c.anode.length_m));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn more_cathode_loading_lowers_np(factor in 1.01f64..1.4, anode_factor in 0.8f64..1.2) {
        let mut base = input();
        scale_areal_mass(&mut base.anode, anode_factor);
        let mut heavy = base.clone();
        scale_areal_mass(&mut heavy.cathode, factor);
        let (a, _) = run_with(&small(16), base, false, false);
        let (b, _) = run_with(&small(16), heavy, false, false);
        for (x, y) in a.output.iter().zip(&b.output) {
            prop_assert!(y.np_ratio < x.np_ratio);
            prop_assert!(y.np_ratio_local_min < x.np_ratio_local_min);
            prop_assert!(y.design_capacity_ah > x.design_capacity_ah);
            prop_assert!((x.np_ratio / y.np_ratio - factor).abs() < 1e-9);
        }
    }

    #[test]
    fn genealogy_points_at_real_reels_and_positions(
        cathode_length in 0.4f64..3.0,
        extra in 0.0f64..0.5,
        cut_lane in 0usize..8,
        cut_at in 1.0f64..1400.0,
        gap in 0.5f64..40.0,
        variability in any::<bool>(),
    ) {
        let mut inp = input();
        cut_out(&mut inp.cathode, cut_lane, cut_at, gap);
        cut_out(&mut inp.anode, (cut_lane + 3) % 8, cut_at * 0.7, gap);
        let (anode, cathode) = (inp.anode.clone(), inp.cathode.clone());
        let params = AssemblyParams {
            cathode_length_m: cathode_length,
            anode_extra_length_m: extra,
            ..AssemblyParams::default()
        };
        let (run, sink) = run_with(&params, inp, variability, false);
        genealogy_is_consistent(&run.output, &anode, &cathode);
        // Cells per lane pair follow N_j, and spliced cells are rejected.
        for (j, lane) in run.result.lanes.iter().enumerate() {
            let nc = (cathode.reels[j].length_m / cathode_length + 1e-9).floor();
            let na = (anode.reels[j].length_m / (cathode_length + extra) + 1e-9).floor();
            prop_assert_eq!(lane.cells as f64, nc.min(na));
        }
        prop_assert!(run.output.iter().all(|c| !c.genealogy.splice || c.reject_reason.is_some()));
        prop_assert!(sink.samples.iter().all(|s| s.cells_rejected <= s.cells_completed));
        prop_assert!(run.output.iter().all(|c| c.pore_volume_m3 > 0.0 && c.mass_kg > 0.0 && c.np_ratio.is_finite()));
    }
}
