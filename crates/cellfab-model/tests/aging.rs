//! Aging (MODELS.md §11) against the §15 reference numbers (deterministic), soft-short
//! sensitivities, grading, samples, legacy keys, the per-cell row and parameter ranges.

mod common_formed;

use cellfab_model::cell::FilledCell;
use cellfab_model::legacy::LegacyRecord;
use cellfab_model::stage::{ResultRecord, SampleRecord, Stage, StageParams, VecSink};
use cellfab_model::stages::aging::*;
use cellfab_model::stages::formation::{Formation, FormationParams, FormedCell};
use common_formed::{assert_rel, nominal_filled_cell, nominal_lot, with_ctx, with_ctx_mode};
use proptest::prelude::*;

const B: f64 = 0.01;
const C: f64 = 0.03;

fn formed(cells: Vec<FilledCell>) -> Vec<FormedCell> {
    let mut sink = VecSink::default();
    with_ctx(|ctx| Formation::run(&FormationParams::default(), cells, &mut (), ctx, &mut sink)).output
}

fn age(p: &AgingParams, cells: Vec<FormedCell>) -> (Vec<AgedCell>, AgingResult, VecSink<AgingSample>) {
    let mut sink = VecSink::default();
    let run = with_ctx(|ctx| Aging::run(p, cells, &mut (), ctx, &mut sink));
    assert_eq!(run.duration_s, p.duration_s);
    (run.output, run.result, sink)
}

fn shorted(r_ohm: f64) -> FilledCell {
    let mut c = nominal_filled_cell();
    c.assembled.latent_short_resistance_ohm = r_ohm;
    c
}

#[test]
fn default_cell_reproduces_the_section_15_aging_numbers() {
    let (cells, result, sink) = age(&AgingParams::default(), formed(vec![nominal_filled_cell()]));
    let c = &cells[0];
    assert!(c.aged);
    assert!((c.ocv_start_v - 3.52572).abs() <= 2e-3);
    assert!((c.ocv_1_v.value() - 3.5241).abs() <= 2e-3, "OCV1 {}", c.ocv_1_v.value());
    assert!((c.ocv_2_v.value() - 3.5233).abs() <= 2e-3, "OCV2 {}", c.ocv_2_v.value());
    assert!((c.k_value_mv_per_day - 0.101).abs() <= 0.02, "K {}", c.k_value_mv_per_day);
    assert_rel("K V/s", c.k_value_v_per_s.value(), 1.17e-9, C);
    assert_rel("SOC end", c.soc_end_frac, 0.2954, B);
    assert_rel("capacity loss", c.capacity_loss_ah, 0.0189, C);
    assert_rel("self-discharge current", c.self_discharge_current_a, 0.030e-3, C);
    assert_rel("OCV slope", c.ocv_soc_slope_v, 0.982, B);
    assert_rel("leakage estimate", c.leakage_estimate_a, c.k_value_v_per_s.value() * 3600.0 * 3.687 / 0.982, B);
    assert_rel("EOL DCR", c.dcr_eol_ohm.value(), 25.17e-3, B);
    assert_eq!(c.grade, Grade::A);
    assert!(c.reject_reasons.is_empty());
    assert_eq!(result.grade_counts, GradeCounts { a: 1, b: 0, c: 0, reject: 0 });
    assert!(result.accepted && result.alarms.is_empty());
    assert_eq!(result.defect_risk, AgingDefectRisk::default());
    assert_eq!(sink.samples.len(), 241, "§0.2: 241 hourly samples");
    assert_rel("shelf energy", result.shelf_energy_j / 3600.0, 6.72, B);
}

#[test]
fn a_lot_of_identical_cells_grades_all_a() {
    let (cells, result, sink) = age(&AgingParams::default(), formed(nominal_lot(16, 2)));
    assert!(cells.iter().all(|c| c.grade == Grade::A));
    assert_eq!(result.grade_counts.a, 16);
    assert_rel("median Q", result.discharge_capacity_median_ah, 3.687, B);
    let first = &sink.samples[0];
    assert_eq!(first.temperature_degc.value(), 45.0);
    assert_rel("initial SOC", first.initial_soc_mean_frac, 0.3006, B);
    let ids: Vec<&str> = first.traced.iter().map(|t| t.cell_id.as_str()).collect();
    assert_eq!(ids, ["B1-L0-0", "B1-L2-0", "B1-L4-0", "B1-L6-0"]);
    let last = sink.samples.last().unwrap();
    assert_eq!(last.stage_time_s, 864000.0);
    assert_eq!(last.temperature_degc.value(), 25.0);
    assert_rel("SOC mean", last.soc_mean_frac, 0.2954, B);
    assert!(sink.samples.windows(2).all(|w| w[1].ocv_mean_v <= w[0].ocv_mean_v + 1e-12), "OCV only falls");
    assert!(sink.samples.iter().all(|s| s.ocv_min_v <= s.ocv_mean_v + 1e-12 && s.ocv_mean_v <= s.ocv_max_v + 1e-12));
}

#[test]
fn soft_shorts_raise_the_k_value_as_in_section_11_3() {
    let lot = formed(vec![nominal_filled_cell(), shorted(1e5), shorted(3e4), shorted(1e4)]);
    let (cells, result, sink) = age(&AgingParams::default(), lot);
    assert_rel("K at 100 kΩ", cells[1].k_value_mv_per_day, 0.32, C);
    assert_ne!(cells[1].grade, Grade::Reject, "100 kΩ passes");
    assert_rel("K at 30 kΩ", cells[2].k_value_mv_per_day, 0.84, C);
    assert_eq!(cells[2].reject_reasons, ["AGE_HIGH_K_VALUE"]);
    assert_eq!(cells[2].grade, Grade::Reject);
    assert_rel("K at 10 kΩ", cells[3].k_value_mv_per_day, 2.2, C);
    assert!(cells[3].self_discharge_current_a > cells[0].self_discharge_current_a * 5.0);
    assert_eq!(result.reject_counts.get("AGE_HIGH_K_VALUE"), Some(&2));
    assert!(result.defect_risk.ocv_drop && result.defect_risk.leakage_current_high);
    assert!(!result.accepted);
    // Alarms (at the end) come before the last sample, which flags them.
    let last = sink.samples.last().unwrap();
    assert!(last.defect_risk);
    assert_eq!(
        last.cells_flagged as usize,
        sink.alarms.iter().filter_map(|a| a.cell_id.clone()).collect::<std::collections::BTreeSet<_>>().len()
    );
    assert!(sink.alarms.iter().all(|a| a.stage_time_s == 864000.0));
}

#[test]
fn capacity_outliers_grade_b_or_c() {
    let mut low = nominal_filled_cell();
    low.wetting_frac = 0.975; // ≈ 2.4 % less capacity: outside A, inside B
    low.assembled.genealogy.cell_id = "B1-L0-9".into();
    let mut lot = formed(nominal_lot(4, 4));
    lot.extend(formed(vec![low]));
    let (cells, result, _) = age(&AgingParams::default(), lot);
    assert_eq!(cells[4].grade, Grade::B);
    let tight = AgingParams { grade_b_capacity_band_frac: 0.02, ..AgingParams::default() };
    let mut lot = formed(nominal_lot(4, 4));
    let mut low = nominal_filled_cell();
    low.wetting_frac = 0.975;
    lot.extend(formed(vec![low]));
    let (cells2, _, _) = age(&tight, lot);
    assert_eq!(cells2[4].grade, Grade::C);
    assert_eq!(result.grade_counts, GradeCounts { a: 4, b: 1, c: 0, reject: 0 });
}

#[test]
fn upstream_rejects_pass_through_as_rejects() {
    let mut bad = nominal_filled_cell();
    bad.assembled.reject_reason = Some("FILL_UNDERFILL".into());
    let lot = formed(vec![nominal_filled_cell(), bad]);
    let (cells, result, _) = age(&AgingParams::default(), lot);
    assert!(!cells[1].aged);
    assert_eq!(cells[1].grade, Grade::Reject);
    assert_eq!(cells[1].reject_reasons, ["FILL_UNDERFILL"]);
    assert_eq!(result.grade_counts, GradeCounts { a: 1, b: 0, c: 0, reject: 1 });
    assert_eq!(result.cells_aged, 1);
    assert!(result.accepted, "the upstream reject is not an aging alarm");
    let row = CellResultRow::from(&cells[1]);
    assert_eq!((row.discharge_capacity_ah, row.k_value_v_per_s), (None, None));
}

#[test]
fn cell_result_row_flattens_an_aged_cell() {
    let (cells, _, _) = age(&AgingParams::default(), formed(vec![nominal_filled_cell()]));
    let row = CellResultRow::from(&cells[0]);
    assert_eq!(row.cell_id, "B1-L0-0");
    assert_eq!((row.batch_id, row.lane, row.index_in_lane), (1, 0, 0));
    assert_eq!(row.cathode_coating_end_m, 10.81);
    assert_rel("row Q_dis", row.discharge_capacity_ah.unwrap(), 3.687, B);
    assert_rel("row K", row.k_value_mv_per_day.unwrap(), 0.101, 0.2);
    assert_rel("row mass", row.mass_kg, 60.44e-3, 0.005);
    assert_rel("row Wh/kg", row.specific_energy_wh_kg.unwrap(), 223.0, B);
    assert_eq!(row.grade, Grade::A);
    let line = serde_json::to_string(&row).unwrap();
    assert!(!line.contains('\n'));
    let back: CellResultRow = serde_json::from_str(&line).unwrap();
    assert_eq!(back, row);
}

#[test]
fn legacy_keys_follow_section_11_4() {
    let (_, result, sink) = age(&AgingParams::default(), formed(vec![nominal_filled_cell()]));
    let mut rec = LegacyRecord::new();
    sink.samples.last().unwrap().legacy(&mut rec);
    let keys: Vec<&str> = rec.keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["Initial SOC", "Temperature (C)", "Final SOC (%)", "Final OCV (V)", "Leakage Current (mA)"]);
    assert!((rec["Final SOC (%)"].as_f64().unwrap() - 29.54).abs() < 0.3);
    assert!((rec["Leakage Current (mA)"].as_f64().unwrap() - 0.030).abs() < 0.002);
    let mut fin = LegacyRecord::new();
    result.legacy(&mut fin);
    let keys: Vec<&str> = fin.keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["Final Properties", "defect_risk"]);
    let risk = fin["defect_risk"].as_object().unwrap();
    let flags: Vec<(&str, bool)> = risk.iter().map(|(k, v)| (k.as_str(), v.as_bool().unwrap())).collect();
    assert_eq!(flags, [("OCV_Drop", false), ("Leakage_Current_High", false), ("SOC_Loss", false)]);
}

#[test]
fn sensor_noise_changes_measurements_not_the_cell() {
    let lot = formed(nominal_lot(3, 1));
    let run = |noise: bool| {
        let mut sink = VecSink::default();
        with_ctx_mode(noise, 9, |ctx| Aging::run(&AgingParams::default(), lot.clone(), &mut (), ctx, &mut sink)).output
    };
    let (quiet, noisy, again) = (run(false), run(true), run(true));
    assert_eq!(noisy, again);
    assert_eq!(quiet[0].state, noisy[0].state, "noise never changes the true state");
    assert_eq!(quiet[0].k_value_v_per_s.true_value, noisy[0].k_value_v_per_s.true_value);
    assert_ne!(noisy[0].ocv_2_v.value(), noisy[0].ocv_2_v.true_value);
    let q = noisy[0].ocv_2_v.value();
    assert!(((q / 1e-5).round() * 1e-5 - q).abs() < 1e-12, "meter resolution 10 µV");
}

#[test]
fn every_parameter_is_range_checked() {
    type Set = fn(&mut AgingParams, f64);
    type Case = (&'static str, Set, f64, Option<f64>, Option<f64>);
    let cases: Vec<Case> = vec![
        ("duration_s", |p, v| p.duration_s = v, 1000.0, Some(3600.0), Some(5.2e6)),
        ("high_temp_phase_s", |p, v| p.high_temp_phase_s = v, -1.0, Some(0.0), Some(5.2e6)),
        ("high_temp_degc", |p, v| p.high_temp_degc = v, 71.0, Some(20.0), Some(70.0)),
        ("temperature_degc", |p, v| p.temperature_degc = v, -21.0, Some(-20.0), Some(60.0)),
        ("ocv_settle_s", |p, v| p.ocv_settle_s = v, -1.0, Some(0.0), None),
        ("k_value_max_v_per_s", |p, v| p.k_value_max_v_per_s = v, 0.0, Some(0.0), None),
        ("ocv_sigma_v", |p, v| p.ocv_sigma_v = v, -1.0, Some(0.0), None),
        ("ocv_resolution_v", |p, v| p.ocv_resolution_v = v, -1.0, Some(0.0), None),
        ("dcr_pulse_c_rate", |p, v| p.dcr_pulse_c_rate = v, 0.0, Some(0.0), Some(10.0)),
        ("dcr_pulse_s", |p, v| p.dcr_pulse_s = v, 4000.0, Some(0.0), Some(3600.0)),
        ("dcr_sigma_ohm", |p, v| p.dcr_sigma_ohm = v, -1.0, Some(0.0), None),
        ("grade_a_capacity_band_frac", |p, v| p.grade_a_capacity_band_frac = v, 1.5, Some(0.0), Some(1.0)),
        ("grade_b_capacity_band_frac", |p, v| p.grade_b_capacity_band_frac = v, 1.5, Some(0.0), Some(1.0)),
        ("grade_a_dcr_ratio", |p, v| p.grade_a_dcr_ratio = v, 0.9, Some(1.0), Some(10.0)),
        ("grade_b_dcr_ratio", |p, v| p.grade_b_dcr_ratio = v, 11.0, Some(1.0), Some(10.0)),
        ("soc_loss_max_frac", |p, v| p.soc_loss_max_frac = v, 1.0, Some(0.0), Some(1.0)),
        ("shelf_power_ht_w", |p, v| p.shelf_power_ht_w = v, -1.0, Some(0.0), None),
        ("shelf_power_rt_w", |p, v| p.shelf_power_rt_w = v, -1.0, Some(0.0), None),
        ("max_dcr_ohm", |p, v| p.max_dcr_ohm = v, 0.0, Some(0.0), None),
        ("min_capacity_frac_of_design", |p, v| p.min_capacity_frac_of_design = v, 3.0, Some(0.0), Some(2.0)),
        ("integration_step_s", |p, v| p.integration_step_s = v, 0.0, Some(0.0), Some(3600.0)),
        ("sample_interval_s", |p, v| p.sample_interval_s = v, 0.0, Some(0.0), Some(5.2e6)),
        ("traced_cells", |p, v| p.traced_cells = v as u32, 2000.0, Some(0.0), Some(1000.0)),
    ];
    for (field, set, bad, min, max) in cases {
        let mut p = AgingParams::default();
        set(&mut p, bad);
        let e = p.validate().expect_err(field);
        assert_eq!(e.field, field, "{e}");
        assert_eq!((e.min, e.max), (min, max), "{field}");
    }
}

#[test]
fn cross_field_rules_are_checked() {
    let p = AgingParams { high_temp_phase_s: 800000.0, ..AgingParams::default() };
    assert_eq!(p.validate().unwrap_err().field, "ocv_settle_s", "HT + settle < duration");
    let p = AgingParams { grade_b_capacity_band_frac: 0.01, ..AgingParams::default() };
    assert_eq!(p.validate().unwrap_err().field, "grade_b_capacity_band_frac");
    let p = AgingParams { grade_b_dcr_ratio: 1.05, ..AgingParams::default() };
    assert_eq!(p.validate().unwrap_err().field, "grade_b_dcr_ratio");
}

#[test]
fn odd_step_and_phase_lengths_land_on_every_event() {
    let p = AgingParams {
        duration_s: 100_000.0,
        high_temp_phase_s: 10_001.0,
        ocv_settle_s: 5_003.0,
        integration_step_s: 70.0,
        sample_interval_s: 3_333.0,
        ..AgingParams::default()
    };
    let (cells, _, sink) = age(&p, formed(vec![nominal_filled_cell()]));
    assert_eq!(sink.samples.len(), 100_000 / 3_333 + 2);
    assert!(cells[0].k_value_v_per_s.value() > 0.0 && cells[0].soc_end_frac.is_finite());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// A longer rest loses more capacity and ends at a lower SOC.
    #[test]
    fn longer_aging_loses_more(d1 in 300_000.0f64..1_000_000.0, extra in 50_000.0f64..500_000.0) {
        let lot = formed(vec![nominal_filled_cell()]);
        let short = AgingParams { duration_s: d1, sample_interval_s: 86_400.0, ..AgingParams::default() };
        let long = AgingParams { duration_s: d1 + extra, ..short.clone() };
        let (a, _, _) = age(&short, lot.clone());
        let (b, _, _) = age(&long, lot);
        prop_assert!(b[0].capacity_loss_ah > a[0].capacity_loss_ah);
        prop_assert!(b[0].soc_end_frac < a[0].soc_end_frac);
    }

    /// Hotter rooms age faster: more capacity loss.
    #[test]
    fn hotter_shelves_lose_more(t in -20.0f64..50.0, dt in 3.0f64..10.0) {
        let lot = formed(vec![nominal_filled_cell()]);
        let cool = AgingParams { temperature_degc: t, sample_interval_s: 86_400.0, ..AgingParams::default() };
        let warm = AgingParams { temperature_degc: t + dt, ..cool.clone() };
        let (a, _, _) = age(&cool, lot.clone());
        let (b, _, _) = age(&warm, lot);
        prop_assert!(b[0].capacity_loss_ah > a[0].capacity_loss_ah);
        prop_assert!(a[0].k_value_v_per_s.value().is_finite());
    }
}

/// Throughput of formation and aging on a larger lot. Run once in release:
/// `cargo test -p cellfab-model --release --test aging -- --ignored --nocapture`.
#[test]
#[ignore]
fn per_cell_cost_of_formation_and_aging() {
    let n = 2000;
    let lot = nominal_lot(n, 250);
    let t0 = std::time::Instant::now();
    let mut fsink = cellfab_model::stage::CountSink::default();
    let f = with_ctx(|ctx| Formation::run(&FormationParams::default(), lot, &mut (), ctx, &mut fsink));
    let tf = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let mut asink = cellfab_model::stage::CountSink::default();
    let a = with_ctx(|ctx| Aging::run(&AgingParams::default(), f.output, &mut (), ctx, &mut asink));
    let ta = t1.elapsed().as_secs_f64();
    eprintln!(
        "formation {:.1} µs/cell, aging {:.1} µs/cell ({n} cells; {} A grades)",
        tf / n as f64 * 1e6,
        ta / n as f64 * 1e6,
        a.result.grade_counts.a
    );
}
