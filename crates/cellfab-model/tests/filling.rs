//! Electrolyte filling (MODELS.md §9): §15 reference numbers, lot timeline, rejects,
//! validation, wetting invariants.

mod common_cell;

use cellfab_model::cell::{AssembledCell, FilledCell};
use cellfab_model::legacy::LegacyRecord;
use cellfab_model::stage::{Line, ResultRecord, SampleRecord, Stage, StageParams, StageRun, VecSink};
use cellfab_model::stages::assembly::{Assembly, AssemblyInput, AssemblyParams};
use cellfab_model::stages::filling::{
    gas_saturation_limit, CellWetting, FillVerdict, Filling, FillingParams, FillingResult, FillingSample, WettingEnv,
};
use common_cell::{assert_close, nominal_reels, Streams, TimelineSink};
use proptest::prelude::*;
use std::sync::OnceLock;

const A: f64 = 0.005;
const B: f64 = 0.01;

/// Cells of the default batch (deterministic assembly), built once.
fn assembled(max_cells: u32) -> Vec<AssembledCell> {
    static ALL: OnceLock<Vec<AssembledCell>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        let input = AssemblyInput { anode: nominal_reels(Line::Anode), cathode: nominal_reels(Line::Cathode) };
        let mut streams = Streams::new(3);
        let mut ctx = streams.ctx(false, false);
        Assembly::run(&AssemblyParams::default(), input, &mut (), &mut ctx, &mut VecSink::default()).output
    });
    let n = if max_cells == 0 { all.len() } else { (max_cells as usize).min(all.len()) };
    all[..n].to_vec()
}

fn fill(
    params: &FillingParams,
    cells: Vec<AssembledCell>,
    variability: bool,
    noise: bool,
) -> (StageRun<Vec<FilledCell>, FillingResult>, VecSink<FillingSample>) {
    params.validate().expect("valid params");
    let mut streams = Streams::new(11);
    let mut ctx = streams.ctx(variability, noise);
    let mut sink = VecSink::default();
    let run = Filling::run(params, cells, &mut (), &mut ctx, &mut sink);
    (run, sink)
}

#[test]
fn default_lot_reproduces_section_15() {
    let (run, sink) = fill(&FillingParams::default(), assembled(0), false, false);
    // X: lot duration ⌈14 672/64⌉·60 s + 8 h and 711 samples.
    assert_eq!(run.output.len(), 14_672);
    assert_eq!(run.duration_s, 42_600.0);
    assert_eq!(sink.samples.len(), 711);
    assert!(sink.alarms.is_empty() && run.result.alarms.is_empty());
    assert!(run.result.accepted());

    let r = run.result.reference.as_ref().expect("reference cell");
    assert_eq!(r.cell_id, "B1-L0-0");
    assert_close("V_pore", r.pore_volume_m3, 5.739e-6, A);
    assert_close("V_fill", r.fill_volume_m3, 6.498e-6, A);
    assert_close("electrolyte kg", r.electrolyte_mass_kg, 7.80e-3, A);
    assert_close("r_c", r.wetting.cathode.hydraulic_radius_m, 0.716e-6, A);
    assert_close("r_a", r.wetting.anode.hydraulic_radius_m, 1.171e-6, A);
    assert_close("t_c", r.wetting.cathode.full_wetting_time_s, 500.0, B);
    assert_close("t_a", r.wetting.anode.full_wetting_time_s, 231.0, B);
    assert_close("t_sep", r.wetting.separator.full_wetting_time_s, 13_599.0, B);
    assert_close("w at release", r.wetting_frac, 0.99901, A);

    for c in &run.output {
        assert_close("V_fill", c.electrolyte_volume_m3, 6.498e-6, A);
        assert_close("m_el", c.electrolyte_mass_kg, 7.80e-3, A);
        assert_close("wetting", c.wetting_frac, 0.99901, A);
        assert_close("cell mass", c.mass_kg, 60.44e-3, A);
        assert_close("water", c.water_mass_kg, 3.22e-6, A);
        assert_close("fill ratio", c.fill_ratio_frac, 6.498 / 5.739, A);
        assert_eq!(c.soak_time_s, 28_800.0);
        assert!(c.assembled.reject_reason.is_none() && !c.assembled.plating_risk);
    }
    assert_close("mean wetting", run.result.mean_wetting_frac, 0.99901, A);
    assert_eq!(run.result.cells_filled, 14_672);
    assert_eq!(run.result.underfill_count + run.result.overfill_count + run.result.incomplete_wetting_count, 0);

    let last = sink.samples.last().unwrap();
    assert_eq!(last.stage_time_s, 42_600.0);
    assert_eq!((last.cells_filled, last.cells_soaking), (14_672, 0));
    assert_close("lot wetting", last.mean_wetting_frac, 0.99901, A);
    assert_eq!(last.traced.len(), 4);
    assert_eq!(last.traced[1].cell_id, "B1-L2-0");
    assert_eq!(last.last_fill_verdict, Some(FillVerdict::Pass));

    let mut rec = LegacyRecord::new();
    last.legacy(&mut rec);
    let keys: Vec<&str> = rec.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "Vacuum Level",
            "Vacuum Filling",
            "Soaking Time",
            "Volume Electrolyte_cm3",
            "Electrolyte Density",
            "Total Volume",
            "Wetness",
            "Filling Volume",
            "Defect Risk"
        ]
    );
    assert_eq!(rec["Vacuum Level"], 100.0);
    assert_eq!(rec["Vacuum Filling"], 60.0);
    assert_eq!(rec["Soaking Time"], 28_800.0);
    assert_close("cm3", rec["Volume Electrolyte_cm3"].as_f64().unwrap(), 6.498, A);
    assert_eq!(rec["Electrolyte Density"], 1200.0);
    assert_close("total cm3", rec["Total Volume"].as_f64().unwrap(), 6.498, A);
    assert_close("wetness", rec["Wetness"].as_f64().unwrap(), 0.99901, A);
    assert_close("filling cm3", rec["Filling Volume"].as_f64().unwrap(), 0.99901 * 5.739, A);
    assert_eq!(rec["Defect Risk"], "Pass");
    let mut fin = LegacyRecord::new();
    run.result.legacy(&mut fin);
    assert_eq!(fin["Final Properties"], serde_json::Value::Object(rec));
    let s = run.result.summary();
    assert!(s.iter().any(|(k, v)| *k == "separator wetting s" && (v - 13_599.0).abs() < 136.0));
}

#[test]
fn samples_follow_the_station_timeline() {
    let (run, sink) = fill(&FillingParams::default(), assembled(200), false, false);
    // 200 cells on 64 stations: 4 cycles, the last ends at 240 s; lot ends 240 s + 8 h.
    assert_eq!(run.duration_s, 240.0 + 28_800.0);
    let at = |t: f64| sink.samples.iter().find(|s| s.stage_time_s == t).unwrap();
    let s0 = at(0.0);
    assert_eq!((s0.cells_filled, s0.mean_wetting_frac), (0, 0.0));
    assert!(s0.last_fill_volume_m3.is_none() && s0.last_fill_verdict.is_none());
    let mut first = LegacyRecord::new();
    s0.legacy(&mut first);
    assert!(first["Volume Electrolyte_cm3"].is_null() && first["Defect Risk"].is_null());
    assert_eq!(at(60.0).cells_filled, 64);
    assert_eq!(at(60.0).mean_wetting_frac, 0.0, "the first group just left its stations");
    assert_eq!(at(240.0).cells_filled, 200);
    assert_eq!(at(240.0).cells_soaking, 200);
    assert_eq!(at(28_860.0).cells_soaking, 200 - 64);
    assert_eq!(at(29_040.0).cells_soaking, 0);
    // Separator-limited: w = √(t/13 599 s) for the first group at 120 s.
    let w = at(120.0).traced[0].wetting_frac;
    assert!((w - (60.0_f64 / 13_599.0).sqrt()).abs() < 0.01 * w, "{w}");
    // Lot wetting never decreases and ends at s_gas.
    for pair in sink.samples.windows(2) {
        assert!(
            pair[1].mean_wetting_frac >= pair[0].mean_wetting_frac - 1e-12
                || pair[1].cells_filled > pair[0].cells_filled
        );
        assert!(pair[1].stage_time_s > pair[0].stage_time_s);
    }
}

#[test]
fn lot_wetting_equals_the_per_cell_mean() {
    // Dosing noise spreads the volume caps; compare the grouped aggregate with brute force.
    let params = FillingParams {
        dosing_sigma_frac: 0.15,
        fill_excess_frac: -0.1,
        fill_tolerance_frac: 1.0,
        ..FillingParams::default()
    };
    let cells = assembled(300);
    let (run, sink) = fill(&params, cells, true, false);
    let env = WettingEnv::new(&params);
    let laws: Vec<(f64, CellWetting)> = run
        .output
        .iter()
        .enumerate()
        .map(|(f, c)| {
            let done = (f / 64 + 1) as f64 * 60.0;
            (done, CellWetting::new(&c.assembled, c.electrolyte_volume_m3, params.dead_volume_m3, &env))
        })
        .collect();
    assert!(laws.iter().any(|l| l.1.cap < 0.95) && laws.iter().any(|l| l.1.cap > 0.99));
    for s in sink.samples.iter().step_by(7) {
        let t = s.stage_time_s;
        let filled: Vec<f64> = laws.iter().filter(|l| l.0 <= t).map(|l| l.1.at((t - l.0).min(28_800.0))).collect();
        assert_eq!(filled.len() as u32, s.cells_filled);
        let brute = if filled.is_empty() { 0.0 } else { filled.iter().sum::<f64>() / filled.len() as f64 };
        assert!((s.mean_wetting_frac - brute).abs() < 1e-9, "t {t}: {} vs {brute}", s.mean_wetting_frac);
    }
    for (c, l) in run.output.iter().zip(&laws) {
        assert!((c.wetting_frac - l.1.at(28_800.0)).abs() < 1e-12);
    }
}

#[test]
fn rejected_cells_pass_through_unfilled() {
    let mut cells = assembled(130);
    cells[0].reject_reason = Some("ASM_HIPOT_FAIL".into());
    cells[5].reject_reason = Some("ASM_SPLICE_IN_CELL".into());
    let before = cells[5].clone();
    let (run, sink) = fill(&FillingParams::default(), cells, false, false);
    let c = &run.output[5];
    assert_eq!(c.assembled, before);
    assert_eq!((c.electrolyte_mass_kg, c.electrolyte_volume_m3, c.wetting_frac, c.soak_time_s), (0.0, 0.0, 0.0, 0.0));
    assert_eq!(c.mass_kg, before.mass_kg);
    assert_eq!(c.water_mass_kg, before.water_mass_kg);
    assert_eq!(run.result.cells_filled, 128);
    assert_eq!(run.result.cells_skipped, 2);
    // 128 filled cells take exactly two station cycles.
    assert_eq!(run.duration_s, 120.0 + 28_800.0);
    // Lane 0's first cell is traced even though it was not filled.
    assert_eq!(sink.samples.last().unwrap().traced[0].wetting_frac, 0.0);
    assert_eq!(run.result.reference.as_ref().unwrap().cell_id, run.output[1].assembled.genealogy.cell_id);
}

#[test]
fn dosing_errors_are_caught_by_the_check_weigher() {
    let params = FillingParams { dosing_sigma_frac: 0.02, ..FillingParams::default() };
    let (run, sink) = fill(&params, assembled(1000), true, true);
    let r = &run.result;
    // σ 2 % against a ±1.5 % window: about 45 % of the cells fall outside.
    assert!(r.underfill_count > 150 && r.overfill_count > 150, "{} {}", r.underfill_count, r.overfill_count);
    let rejected = run.output.iter().filter(|c| c.assembled.reject_reason.is_some()).count() as u32;
    assert_eq!(rejected, r.underfill_count + r.overfill_count);
    for c in &run.output {
        match c.assembled.reject_reason.as_deref() {
            Some("FILL_UNDERFILL") => assert!(c.electrolyte_volume_m3 < 6.498e-6),
            Some("FILL_OVERFILL") => assert!(c.electrolyte_volume_m3 > 6.498e-6),
            _ => {}
        }
    }
    let alarms = sink.alarms.iter().filter(|a| a.code == "FILL_UNDERFILL").count() as u32;
    assert_eq!(alarms, r.underfill_count);
    let last = sink.samples.last().unwrap();
    assert_eq!(last.underfill_count, r.underfill_count);
    assert!(r.accepted());
    assert_ne!(last.vacuum_pressure_pa.value(), 100.0);
}

#[test]
fn short_soak_or_poor_vacuum_leaves_cells_unwetted() {
    // One hour of soak: the separator (13 599 s to wet) is half wet.
    let params = FillingParams { soak_time_s: 3600.0, ..FillingParams::default() };
    let (run, sink) = fill(&params, assembled(100), false, false);
    for c in &run.output {
        assert!((c.wetting_frac - (3600.0_f64 / 13_599.0).sqrt()).abs() < 0.01);
        assert!(c.assembled.plating_risk && c.assembled.reject_reason.is_none());
    }
    assert_eq!(run.result.incomplete_wetting_count, 100);
    let wet_alarms: Vec<_> = sink.alarms.iter().filter(|a| a.code == "FILL_INCOMPLETE_WETTING").collect();
    assert_eq!(wet_alarms.len(), 100);
    assert_eq!(wet_alarms[0].stage_time_s, 60.0 + 3600.0);
    assert!(wet_alarms.windows(2).all(|w| w[0].stage_time_s <= w[1].stage_time_s));

    // Per-cell alarms reach the sink in time order with the samples.
    let short = FillingParams { soak_time_s: 3600.0, dosing_sigma_frac: 0.02, ..FillingParams::default() };
    let mut streams = Streams::new(5);
    let mut ctx = streams.ctx(true, true);
    let mut timeline = TimelineSink::default();
    Filling::run(&short, assembled(700), &mut (), &mut ctx, &mut timeline);
    timeline.assert_time_ordered();

    // A vacuum leak (F10): 20 kPa leaves 20 % gas, s_gas = 0.80.
    let leak = FillingParams { vacuum_pressure_pa: 2e4, ..FillingParams::default() };
    let (run, _) = fill(&leak, assembled(64), false, false);
    let s_gas = gas_saturation_limit(2e4, 101_325.0);
    assert!(run.output.iter().all(|c| (c.wetting_frac - s_gas).abs() < 1e-12));
    assert_eq!(run.result.incomplete_wetting_count, 64);
}

#[test]
fn same_seed_same_fill_and_noise_never_changes_the_truth() {
    let cells = assembled(500);
    let (a, sa) = fill(&FillingParams::default(), cells.clone(), true, true);
    let (b, sb) = fill(&FillingParams::default(), cells.clone(), true, true);
    assert_eq!(serde_json::to_string(&a.output).unwrap(), serde_json::to_string(&b.output).unwrap());
    assert_eq!(serde_json::to_string(&sa.samples).unwrap(), serde_json::to_string(&sb.samples).unwrap());
    let (quiet, _) = fill(&FillingParams::default(), cells, true, false);
    for (x, y) in a.output.iter().zip(&quiet.output) {
        assert_eq!(x.electrolyte_volume_m3, y.electrolyte_volume_m3);
        assert_eq!(x.wetting_frac, y.wetting_frac);
    }
    assert!(a.output.iter().any(|c| c.electrolyte_volume_m3 != 6.498e-6));
}

#[test]
fn empty_lot_runs_and_is_not_accepted() {
    let (run, sink) = fill(&FillingParams::default(), Vec::new(), false, false);
    assert_eq!(run.duration_s, 0.0);
    assert_eq!(sink.samples.len(), 1);
    assert!(!run.result.accepted());
    assert!(run.result.reference.is_none());
}

type Setter = fn(&mut FillingParams);

#[test]
fn every_field_is_range_checked() {
    #[rustfmt::skip]
    let table: Vec<(&str, Setter, Option<f64>, Option<f64>)> = vec![
        ("vacuum_pressure_pa", |p| p.vacuum_pressure_pa = 0.5, Some(1.0), Some(9e4)),
        ("vacuum_pressure_pa", |p| p.vacuum_pressure_pa = 1e5, Some(1.0), Some(9e4)),
        ("ambient_pressure_pa", |p| p.ambient_pressure_pa = 0.0, Some(0.0), None),
        ("ambient_pressure_pa", |p| p.ambient_pressure_pa = 90.0, Some(100.0), None),
        ("fill_excess_frac", |p| p.fill_excess_frac = -0.6, Some(-0.5), Some(1.0)),
        ("fill_excess_frac", |p| p.fill_excess_frac = 1.1, Some(-0.5), Some(1.0)),
        ("dead_volume_m3", |p| p.dead_volume_m3 = -1e-7, Some(0.0), None),
        ("dosing_sigma_frac", |p| p.dosing_sigma_frac = -0.1, Some(0.0), None),
        ("fill_tolerance_frac", |p| p.fill_tolerance_frac = -0.1, Some(0.0), None),
        ("stations", |p| p.stations = 0, Some(1.0), None),
        ("station_cycle_s", |p| p.station_cycle_s = 0.0, Some(0.0), None),
        ("soak_time_s", |p| p.soak_time_s = -1.0, Some(0.0), Some(1.2e6)),
        ("soak_time_s", |p| p.soak_time_s = 1.3e6, Some(0.0), Some(1.2e6)),
        ("temperature_degc", |p| p.temperature_degc = 61.0, Some(0.0), Some(60.0)),
        ("electrode_contact_angle_deg", |p| p.electrode_contact_angle_deg = 90.0, Some(0.0), Some(89.0)),
        ("min_wetting_frac", |p| p.min_wetting_frac = 0.0, Some(0.0), Some(1.0)),
        ("min_wetting_frac", |p| p.min_wetting_frac = 1.01, Some(0.0), Some(1.0)),
        ("sample_interval_s", |p| p.sample_interval_s = 0.0, Some(0.0), None),
        ("integration_step_s", |p| p.integration_step_s = -1.0, Some(0.0), None),
        ("temperature_degc", |p| p.temperature_degc = f64::NAN, Some(0.0), Some(60.0)),
    ];
    assert!(FillingParams::default().validate().is_ok());
    for (field, set, min, max) in table {
        let mut p = FillingParams::default();
        set(&mut p);
        let before = format!("{p:?}");
        let e = p.validate().expect_err(field);
        assert_eq!(e.field, field);
        assert_eq!((e.min, e.max), (min, max), "{field}");
        assert_eq!(format!("{p:?}"), before, "validation never mutates");
    }
    let schema = serde_json::to_string(&schemars::schema_for!(FillingParams)).unwrap();
    assert!(schema.contains("electrode_contact_angle_deg"));
    let mut bad = serde_json::to_value(FillingParams::default()).unwrap();
    bad["vacuum_level"] = 100.into();
    assert!(serde_json::from_value::<FillingParams>(bad).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn wetting_is_monotone_and_bounded(
        t1 in 0.0f64..50_000.0,
        dt in 0.0f64..50_000.0,
        vacuum in 1.0f64..9e4,
        excess in -0.5f64..1.0,
        temperature in 0.0f64..60.0,
        angle in 0.0f64..89.0,
    ) {
        let params = FillingParams {
            vacuum_pressure_pa: vacuum,
            fill_excess_frac: excess,
            temperature_degc: temperature,
            electrode_contact_angle_deg: angle,
            ..FillingParams::default()
        };
        let cell = &assembled(1)[0];
        let env = WettingEnv::new(&params);
        let v = (1.0 + excess) * cell.pore_volume_m3 + params.dead_volume_m3;
        let w = CellWetting::new(cell, v, params.dead_volume_m3, &env);
        let (a, b) = (w.at(t1), w.at(t1 + dt));
        prop_assert!(a <= b + 1e-15);
        prop_assert!(b <= env.gas_saturation.min(w.volume_saturation) + 1e-15);
        prop_assert!((0.0..=1.0).contains(&a));
        // Warmer electrolyte is thinner: every component wets faster.
        let warm = WettingEnv::new(&FillingParams { temperature_degc: (temperature + 5.0).min(60.0), ..params.clone() });
        let ww = CellWetting::new(cell, v, params.dead_volume_m3, &warm);
        prop_assert!(ww.separator.full_wetting_time_s <= w.separator.full_wetting_time_s);
        prop_assert!(ww.cathode.full_wetting_time_s <= w.cathode.full_wetting_time_s);
        // A larger contact angle slows the electrodes, not the separator.
        let steep = WettingEnv::new(&FillingParams { electrode_contact_angle_deg: (angle + 5.0).min(89.0), ..params.clone() });
        let ws = CellWetting::new(cell, v, params.dead_volume_m3, &steep);
        prop_assert!(ws.anode.full_wetting_time_s >= w.anode.full_wetting_time_s);
        prop_assert_eq!(ws.separator.full_wetting_time_s, w.separator.full_wetting_time_s);
    }

    #[test]
    fn more_stations_shorten_the_lot(stations in 1u32..200, n in 1u32..400) {
        let base = FillingParams { stations, ..FillingParams::default() };
        let more = FillingParams { stations: stations + 10, ..FillingParams::default() };
        let (a, sa) = fill(&base, assembled(n), false, false);
        let (b, _) = fill(&more, assembled(n), false, false);
        prop_assert!(b.duration_s <= a.duration_s);
        prop_assert_eq!(a.duration_s, (n as f64 / stations as f64).ceil() * 60.0 + 28_800.0);
        let k = (a.duration_s / 60.0).floor() as usize + 1;
        prop_assert_eq!(sa.samples.len(), k);
        prop_assert!(a.output.iter().all(|c| c.wetting_frac.is_finite() && c.mass_kg > c.assembled.mass_kg));
    }
}
