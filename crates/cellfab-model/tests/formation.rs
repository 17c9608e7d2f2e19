//! Formation cycling (MODELS.md §10) against the §15 reference numbers (deterministic),
//! its termination semantics, waves, rejects, samples, legacy keys and parameter ranges.

mod common_formed;

use cellfab_model::alarm::Alarm;
use cellfab_model::cell::FilledCell;
use cellfab_model::legacy::LegacyRecord;
use cellfab_model::stage::{sample_times, ResultRecord, SampleRecord, Stage, StageParams, StageSink, VecSink};
use cellfab_model::stages::formation::*;
use common_formed::{assert_rel, nominal_filled_cell, nominal_lot, with_ctx, with_ctx_mode};
use proptest::prelude::*;

const A: f64 = 0.005;
const B: f64 = 0.01;

fn form(p: &FormationParams, cells: Vec<FilledCell>) -> (Vec<FormedCell>, FormationResult, VecSink<FormationSample>) {
    let mut sink = VecSink::default();
    let run = with_ctx(|ctx| Formation::run(p, cells, &mut (), ctx, &mut sink));
    (run.output, run.result, sink)
}

fn form_one(p: &FormationParams, cell: FilledCell) -> FormedCell {
    form(p, vec![cell]).0.remove(0)
}

#[test]
fn default_cell_reproduces_the_section_15_formation_numbers() {
    let (cells, result, sink) = form(&FormationParams::default(), vec![nominal_filled_cell()]);
    let c = &cells[0];
    assert!(c.formed && c.reject_reason.is_none(), "{:?}", c.reject_reason);
    assert_eq!(result.duration_s, 63280.0, "3 164 steps of 20 s");
    assert_eq!(c.formation_time_s, 63280.0);
    let hours = [3.19, 3.32, 3.10, 0.08, 0.5, 4.92, 0.5, 1.48, 0.5];
    assert_eq!(c.step_durations_s.len(), hours.len());
    for (i, (&d, &h)) in c.step_durations_s.iter().zip(&hours).enumerate() {
        assert_eq!(d % 20.0, 0.0, "step {i} is a multiple of the integration step");
        assert!((d / 3600.0 - h).abs() <= 0.005 + B * h, "step {i}: {} h vs {h} h", d / 3600.0);
    }
    assert_rel("Q_ch1", c.first_charge_capacity_ah.value(), 4.195, B);
    assert_rel("Q_dis", c.discharge_capacity_ah.value(), 3.687, B);
    let fce = c.first_cycle_efficiency_frac.value();
    assert!((fce - 0.879).abs() <= 0.005, "FCE {fce}");
    assert_rel("E_dis", c.discharge_energy_wh.value(), 13.48, B);
    assert_rel("mean V", c.mean_discharge_voltage_v.value(), 3.657, B);
    assert_rel("SEI", c.sei_charge_ah, 0.370, B);
    assert_rel("peak x", c.peak_anode_stoich, 0.790, B);
    assert_rel("storage SOC", c.soc_frac.value(), 0.3006, B);
    assert!((c.ocv_v - 3.5257).abs() <= 2e-3, "OCV {}", c.ocv_v);
    assert_rel("R0", c.r0_ohm, 24.22e-3, B);
    assert_rel("DCR_10s", c.dcr_10s_ohm, 25.14e-3, B);
    assert_rel("grid energy", c.formation_energy_grid_j / 3600.0, 18.02, B);
    assert_rel("cell mass", c.outputs.mass_kg, 60.44e-3, A);
    assert_rel("specific energy", c.outputs.specific_energy_wh_kg, 223.0, B);
    assert_rel("energy density", c.outputs.energy_density_wh_l, 556.0, B);
    assert!(!c.plating_detected && c.plated_charge_ah == 0.0);
    assert_eq!(c.channel, Some(0));
    assert_eq!(c.wave, Some(0));
    assert!(result.accepted && result.alarms.is_empty());
    assert_eq!(sink.samples.len(), 1056, "§0.2: 1 056 lot samples");
}

#[test]
fn samples_follow_the_time_grid_and_end_at_the_lot_end() {
    let (_, result, sink) = form(&FormationParams::default(), nominal_lot(16, 2));
    let expected: Vec<f64> = sample_times(result.duration_s, 60.0).collect();
    let got: Vec<f64> = sink.samples.iter().map(|s| s.stage_time_s).collect();
    assert_eq!(got, expected);
    let first = &sink.samples[0];
    assert_eq!(first.cells_in_step[0], 16);
    assert!((first.voltage_mean_v - 1.104).abs() < 0.005);
    let last = sink.samples.last().unwrap();
    assert_eq!(last.cells_in_step.iter().sum::<u32>(), 0, "every cell is done at the end");
    assert!((last.voltage_mean_v - 3.5257).abs() < 2e-3);
    assert!((last.charge_throughput_mean_ah - (4.195 - 3.687 + 0.3006 * 3.687)).abs() < 0.02);
    assert!((last.sei_progress_mean_frac - 1.0).abs() < 1e-3);
    // During the discharge the rack feeds energy back; at rest it draws standby power only.
    let at = |t: f64| sink.samples.iter().find(|s| s.stage_time_s == t).unwrap();
    assert!(at(39960.0).grid_power_w < 0.0);
    assert_eq!(at(39960.0).cells_in_step[5], 16);
    assert!(at(39960.0).current_mean_a < 0.0);
    for s in &sink.samples {
        assert!(s.voltage_min_v <= s.voltage_mean_v + 1e-12 && s.voltage_mean_v <= s.voltage_max_v + 1e-12);
        assert!(s.voltage_max_v <= 4.2 + 0.05, "no channel above the trip voltage");
    }
}

#[test]
fn traced_cells_are_the_first_cells_of_lanes_0_2_4_6() {
    let (_, _, sink) = form(&FormationParams::default(), nominal_lot(16, 2));
    let ids: Vec<&str> = sink.samples[10].traced.iter().map(|t| t.cell_id.as_str()).collect();
    assert_eq!(ids, ["B1-L0-0", "B1-L2-0", "B1-L4-0", "B1-L6-0"]);
    let t = &sink.samples[100].traced[0];
    assert_eq!(t.step, Some(0));
    assert!(t.current_a.value() > 0.0 && t.anode_stoich > 0.0 && t.sei_charge_ah > 0.0);
    assert_eq!(sink.samples.last().unwrap().traced[0].step, None);
}

#[test]
fn waves_run_one_after_another_when_channels_are_short() {
    let p = FormationParams { channels: 3, ..FormationParams::default() };
    let (cells, result, sink) = form(&p, nominal_lot(8, 8));
    assert_eq!(result.waves, 3);
    assert_eq!(result.duration_s, 3.0 * 63280.0);
    assert_eq!(cells[7].wave, Some(2));
    assert_eq!(cells[7].channel, Some(1));
    let expected: Vec<f64> = sample_times(result.duration_s, 60.0).collect();
    let got: Vec<f64> = sink.samples.iter().map(|s| s.stage_time_s).collect();
    assert_eq!(got, expected);
    // A sample just after the first wave sees the second wave's three cells at the start.
    let s = sink.samples.iter().find(|s| s.stage_time_s > 63280.0).unwrap();
    assert_eq!(s.cells_in_step[0], 3);
    assert!(s.voltage_mean_v < 1.2);
    for c in &cells {
        assert_rel(
            "same cell, same result",
            c.discharge_capacity_ah.value(),
            cells[0].discharge_capacity_ah.value(),
            1e-12,
        );
    }
}

#[test]
fn integration_steps_that_straddle_a_sample_are_split_without_changing_durations() {
    let p = FormationParams { integration_step_s: 25.0, ..FormationParams::default() };
    let (cells, result, sink) = form(&p, vec![nominal_filled_cell()]);
    let c = &cells[0];
    assert!(c.step_durations_s.iter().all(|d| d % 25.0 == 0.0));
    assert_rel("Q_dis at 25 s steps", c.discharge_capacity_ah.value(), 3.687, B);
    let expected: Vec<f64> = sample_times(result.duration_s, 60.0).collect();
    assert_eq!(sink.samples.iter().map(|s| s.stage_time_s).collect::<Vec<_>>(), expected);
}

#[test]
fn upstream_rejects_pass_through_unformed() {
    let mut bad = nominal_filled_cell();
    bad.assembled.reject_reason = Some("ASM_HIPOT_FAIL".into());
    bad.assembled.genealogy.cell_id = "B1-L0-1".into();
    let (cells, result, _) = form(&FormationParams::default(), vec![nominal_filled_cell(), bad]);
    assert!(!cells[1].formed);
    assert_eq!(cells[1].reject_reason.as_deref(), Some("ASM_HIPOT_FAIL"));
    assert_eq!(cells[1].channel, None);
    assert_eq!((result.cells_cycled, result.cells_skipped, result.cells_rejected), (1, 1, 0));
    assert!(result.accepted);
}

#[test]
fn a_hard_short_times_out_and_is_rejected() {
    let mut shorted = nominal_filled_cell();
    shorted.assembled.latent_short_resistance_ohm = 10.0;
    let p = FormationParams::default();
    let (cells, result, sink) = form(&p, vec![shorted]);
    let c = &cells[0];
    assert_eq!(c.reject_reason.as_deref(), Some("FORM_STEP_TIMEOUT"));
    assert_eq!(c.step_durations_s, vec![p.max_step_duration_s]);
    assert_eq!(result.duration_s, p.max_step_duration_s);
    assert_eq!(result.reject_counts.get("FORM_STEP_TIMEOUT"), Some(&1));
    assert!(!result.accepted);
    assert_eq!(sink.alarms.len(), 1);
    assert_eq!(sink.alarms[0].cell_id.as_deref(), Some("B1-L0-0"));
    assert_eq!(sink.alarms[0].stage_time_s, p.max_step_duration_s);
    assert!(sink.samples.last().unwrap().defect_risk);
}

#[test]
fn low_capacity_and_high_resistance_are_rejected() {
    let mut dry = nominal_filled_cell();
    dry.wetting_frac = 0.8;
    let c = form_one(&FormationParams::default(), dry);
    assert_eq!(c.reject_reason.as_deref(), Some("FORM_LOW_CAPACITY"));
    let strict = FormationParams { max_dcr_10s_ohm: 0.02, ..FormationParams::default() };
    assert_eq!(form_one(&strict, nominal_filled_cell()).reject_reason.as_deref(), Some("FORM_HIGH_DCR"));
    let fussy = FormationParams { min_first_cycle_efficiency_frac: 0.9, ..FormationParams::default() };
    assert_eq!(form_one(&fussy, nominal_filled_cell()).reject_reason.as_deref(), Some("FORM_LOW_FCE"));
}

#[test]
fn local_plating_is_recorded_and_rejected() {
    let mut cell = nominal_filled_cell();
    cell.assembled.local_plating_charge_ah = 0.01;
    cell.assembled.plating_risk = true;
    let c = form_one(&FormationParams::default(), cell);
    assert!(c.plating_detected);
    assert!(c.plated_charge_ah >= 0.01);
    assert_eq!(c.reject_reason.as_deref(), Some("FORM_PLATING"));
    assert!(c.discharge_capacity_ah.value() < 3.687 - 0.005, "the lithium never comes back");
}

#[test]
fn an_overcharging_channel_trips() {
    // A tiny margin and a fast CC step overshoot the trip voltage at the end of step 3.
    let p = FormationParams { overvoltage_margin_v: 1e-4, ..FormationParams::default() };
    let c = form_one(&p, nominal_filled_cell());
    assert_eq!(c.reject_reason.as_deref(), Some("FORM_OVERVOLTAGE"));
    assert_eq!(c.step_durations_s.len(), 3);
}

#[test]
fn sensitivities_of_section_12_4() {
    let p = FormationParams::default();
    let mut wet = nominal_filled_cell();
    wet.wetting_frac = 0.9;
    let mut lenient = p.clone();
    lenient.min_capacity_frac_of_design = 0.5;
    let c = form_one(&lenient, wet);
    assert_rel("Q_dis at w = 0.9", c.discharge_capacity_ah.value(), 3.320, B);
    assert_rel("DCR_10s at w = 0.9", c.dcr_10s_ohm, 27.2e-3, B);
    let cold = FormationParams { temperature_degc: 10.0, ..p.clone() };
    assert_rel("Q_dis at 10 °C", form_one(&cold, nominal_filled_cell()).discharge_capacity_ah.value(), 3.670, B);
    let hot = FormationParams { temperature_degc: 45.0, ..p.clone() };
    let fce_hot = form_one(&hot, nominal_filled_cell()).first_cycle_efficiency_frac.value();
    let fce = form_one(&p, nominal_filled_cell()).first_cycle_efficiency_frac.value();
    assert!((fce_hot - fce).abs() < 0.002);
    let mut humid = nominal_filled_cell();
    humid.water_mass_kg = 62e-6;
    let h = form_one(&p, humid);
    assert_rel("Q_dis with 62 mg water", h.discharge_capacity_ah.value(), 3.603, B);
    assert!((h.first_cycle_efficiency_frac.value() - 0.859).abs() <= 0.005);
}

#[test]
fn sensor_noise_changes_measurements_not_the_cell() {
    let p = FormationParams::default();
    let run = |noise: bool, seed: u64| {
        let mut sink = VecSink::default();
        with_ctx_mode(noise, seed, |ctx| Formation::run(&p, nominal_lot(4, 1), &mut (), ctx, &mut sink)).output
    };
    let quiet = run(false, 7);
    let noisy = run(true, 7);
    let again = run(true, 7);
    assert_eq!(noisy, again, "same seed, same bits");
    let (q, n) = (&quiet[0], &noisy[0]);
    assert_ne!(n.discharge_capacity_ah.value(), n.discharge_capacity_ah.true_value);
    assert!((n.discharge_capacity_ah.value() / q.discharge_capacity_ah.value() - 1.0).abs() < 0.01);
    assert_ne!(noisy[0].discharge_capacity_ah, noisy[1].discharge_capacity_ah, "cells have their own streams");
    // Termination on measured voltage may shift a step by one integration step at most.
    assert!((n.formation_time_s - q.formation_time_s).abs() <= 20.0 * 9.0);
}

/// Records the order of samples and alarms.
#[derive(Default)]
struct OrderSink {
    events: Vec<(f64, bool)>,
}

impl StageSink<FormationSample> for OrderSink {
    fn sample(&mut self, s: FormationSample) {
        self.events.push((s.stage_time_s, false));
    }
    fn alarm(&mut self, a: &Alarm) {
        self.events.push((a.stage_time_s, true));
    }
}

#[test]
fn alarms_are_interleaved_with_samples_in_time_order() {
    let mut shorted = nominal_filled_cell();
    shorted.assembled.latent_short_resistance_ohm = 10.0;
    shorted.assembled.genealogy.cell_id = "B1-L1-0".into();
    shorted.assembled.genealogy.lane = 1;
    let mut sink = OrderSink::default();
    let p = FormationParams::default();
    with_ctx(|ctx| Formation::run(&p, vec![nominal_filled_cell(), shorted], &mut (), ctx, &mut sink));
    assert!(sink.events.windows(2).all(|w| w[0].0 <= w[1].0), "time order");
    let alarm_at = sink.events.iter().position(|e| e.1).unwrap();
    assert_eq!(sink.events[alarm_at].0, 72000.0, "the short times out after the good cell is done");
    assert_eq!(sink.events[alarm_at + 1..], [(72000.0, false)], "then the final sample");
}

#[test]
fn legacy_keys_follow_section_10_4() {
    let (_, result, sink) = form(&FormationParams::default(), vec![nominal_filled_cell()]);
    let mut rec = LegacyRecord::new();
    sink.samples[0].legacy(&mut rec);
    let keys: Vec<&str> = rec.keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["Voltage_V", "Capacity_Ah", "sei_efficiency", "Eta wetting", "Volume_electrolyte"]);
    assert!((rec["Volume_electrolyte"].as_f64().unwrap() - 6.498).abs() < 1e-9);
    let mut fin = LegacyRecord::new();
    result.legacy(&mut fin);
    let props = fin["Final Properties"].as_object().unwrap();
    assert!((props["Voltage_V"].as_f64().unwrap() - 3.5257).abs() < 2e-3);
    assert!(result.summary().iter().any(|(k, _)| k.contains("Q_dis")));
}

#[test]
fn every_parameter_is_range_checked() {
    type Set = fn(&mut FormationParams, f64);
    type Case = (&'static str, Set, f64, Option<f64>, Option<f64>);
    let cases: Vec<Case> = vec![
        ("charge_voltage_limit_v", |p, v| p.charge_voltage_limit_v = v, 4.7, Some(3.0), Some(4.6)),
        ("discharge_voltage_limit_v", |p, v| p.discharge_voltage_limit_v = v, 1.9, Some(2.0), Some(3.5)),
        ("temperature_degc", |p, v| p.temperature_degc = v, 61.0, Some(-10.0), Some(60.0)),
        ("channels", |p, v| p.channels = v as u32, 0.0, Some(1.0), Some(1e7)),
        ("max_step_duration_s", |p, v| p.max_step_duration_s = v, 0.0, Some(0.0), None),
        ("overvoltage_margin_v", |p, v| p.overvoltage_margin_v = v, 0.0, Some(0.0), None),
        ("charger_efficiency_frac", |p, v| p.charger_efficiency_frac = v, 0.0, Some(0.0), Some(1.0)),
        ("regen_efficiency_frac", |p, v| p.regen_efficiency_frac = v, 1.1, Some(0.0), Some(1.0)),
        ("channel_standby_power_w", |p, v| p.channel_standby_power_w = v, -1.0, Some(0.0), None),
        ("voltage_sigma_v", |p, v| p.voltage_sigma_v = v, -1.0, Some(0.0), None),
        ("current_sigma_frac", |p, v| p.current_sigma_frac = v, -1.0, Some(0.0), None),
        ("min_first_cycle_efficiency_frac", |p, v| p.min_first_cycle_efficiency_frac = v, 1.5, Some(0.0), Some(1.0)),
        ("min_capacity_frac_of_design", |p, v| p.min_capacity_frac_of_design = v, -0.1, Some(0.0), Some(2.0)),
        ("max_dcr_10s_ohm", |p, v| p.max_dcr_10s_ohm = v, 0.0, Some(0.0), None),
        ("integration_step_s", |p, v| p.integration_step_s = v, 61.0, Some(0.0), Some(60.0)),
        ("sample_interval_s", |p, v| p.sample_interval_s = v, 0.0, Some(0.0), Some(86400.0)),
        ("traced_cells", |p, v| p.traced_cells = v as u32, 1001.0, Some(0.0), Some(1000.0)),
        (
            "c_rate_reference.capacity_ah",
            |p, v| p.c_rate_reference = CRateReference::Fixed { capacity_ah: v },
            0.0,
            Some(0.0),
            Some(1000.0),
        ),
        (
            "protocol[0].c_rate",
            |p, v| p.protocol[0] = ProtocolStep::CcCharge { c_rate: v, until_voltage_v: 3.0 },
            0.0,
            Some(0.0),
            Some(10.0),
        ),
        (
            "protocol[0].until_voltage_v",
            |p, v| p.protocol[0] = ProtocolStep::CcCharge { c_rate: 0.1, until_voltage_v: v },
            1.0,
            Some(2.0),
            Some(4.6),
        ),
        (
            "protocol[3].voltage_v",
            |p, v| p.protocol[3] = ProtocolStep::Cv { voltage_v: v, until_c_rate: 0.05, max_s: 100.0 },
            2.0,
            Some(3.0),
            Some(4.6),
        ),
        (
            "protocol[3].until_c_rate",
            |p, v| p.protocol[3] = ProtocolStep::Cv { voltage_v: 4.2, until_c_rate: v, max_s: 100.0 },
            11.0,
            Some(0.0),
            Some(10.0),
        ),
        (
            "protocol[3].max_s",
            |p, v| p.protocol[3] = ProtocolStep::Cv { voltage_v: 4.2, until_c_rate: 0.05, max_s: v },
            1e6,
            Some(0.0),
            Some(72000.0),
        ),
        (
            "protocol[4].duration_s",
            |p, v| p.protocol[4] = ProtocolStep::Rest { duration_s: v },
            0.0,
            Some(0.0),
            Some(72000.0),
        ),
        (
            "protocol[5].c_rate",
            |p, v| p.protocol[5] = ProtocolStep::CcDischarge { c_rate: v, until_voltage_v: 2.5 },
            20.0,
            Some(0.0),
            Some(10.0),
        ),
        (
            "protocol[5].until_voltage_v",
            |p, v| p.protocol[5] = ProtocolStep::CcDischarge { c_rate: 0.2, until_voltage_v: v },
            4.7,
            Some(2.0),
            Some(4.6),
        ),
        (
            "protocol[7].soc_frac",
            |p, v| p.protocol[7] = ProtocolStep::ChargeToSoc { c_rate: 0.2, soc_frac: v },
            1.2,
            Some(0.0),
            Some(1.0),
        ),
        (
            "protocol[7].c_rate",
            |p, v| p.protocol[7] = ProtocolStep::ChargeToSoc { c_rate: v, soc_frac: 0.3 },
            -1.0,
            Some(0.0),
            Some(10.0),
        ),
        (
            "protocol",
            |p, v| p.protocol.resize(v as usize, ProtocolStep::Rest { duration_s: 10.0 }),
            51.0,
            Some(1.0),
            Some(50.0),
        ),
        ("protocol", |p, _| p.protocol.clear(), 0.0, Some(1.0), Some(50.0)),
    ];
    for (field, set, bad, min, max) in cases {
        let mut p = FormationParams::default();
        set(&mut p, bad);
        let e = p.validate().expect_err(field);
        assert_eq!(e.field, field, "{e}");
        assert_eq!((e.min, e.max), (min, max), "{field}");
    }
}

#[test]
fn cross_field_rules_are_checked() {
    let mut p = FormationParams { charge_voltage_limit_v: 4.1, ..FormationParams::default() };
    assert_eq!(p.validate().unwrap_err().field, "protocol[2].until_voltage_v");
    p = FormationParams { discharge_voltage_limit_v: 2.8, ..FormationParams::default() };
    assert_eq!(p.validate().unwrap_err().field, "protocol[5].until_voltage_v");
    p = FormationParams { charge_voltage_limit_v: 3.2, discharge_voltage_limit_v: 3.3, ..FormationParams::default() };
    assert_eq!(p.validate().unwrap_err().field, "discharge_voltage_limit_v");
    p = FormationParams::default();
    p.protocol.remove(5);
    assert_eq!(p.validate().unwrap_err().field, "protocol[6].soc_frac", "charge_to_soc needs a discharge first");
    p = FormationParams { max_step_duration_s: 1000.0, ..FormationParams::default() };
    assert_eq!(p.validate().unwrap_err().field, "protocol[3].max_s");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Faster charge and discharge currents make formation shorter.
    #[test]
    fn faster_formation_current_is_shorter(f in 1.3f64..3.0) {
        let base = FormationParams::default();
        let mut fast = base.clone();
        for s in &mut fast.protocol {
            match s {
                ProtocolStep::CcCharge { c_rate, .. } | ProtocolStep::CcDischarge { c_rate, .. }
                | ProtocolStep::ChargeToSoc { c_rate, .. } => *c_rate *= f,
                _ => {}
            }
        }
        let slow = form_one(&base, nominal_filled_cell()).formation_time_s;
        let quick = form_one(&fast, nominal_filled_cell()).formation_time_s;
        prop_assert!(quick < slow, "{quick} vs {slow}");
    }

    /// More water in the cell consumes more lithium in the SEI: lower first-cycle efficiency.
    #[test]
    fn more_water_lowers_fce(w1 in 1e-6f64..50e-6, extra in 5e-6f64..50e-6) {
        let p = FormationParams { min_capacity_frac_of_design: 0.0, min_first_cycle_efficiency_frac: 0.0, ..FormationParams::default() };
        let mut dry = nominal_filled_cell();
        dry.water_mass_kg = w1;
        let mut wet = nominal_filled_cell();
        wet.water_mass_kg = w1 + extra;
        let a = form_one(&p, dry).first_cycle_efficiency_frac.value();
        let b = form_one(&p, wet).first_cycle_efficiency_frac.value();
        prop_assert!(b < a, "{b} vs {a}");
    }

    /// Any valid cell on the default protocol: no NaN, SOC in (0, 1), capacity below Q_p.
    #[test]
    fn formed_cells_are_finite_and_physical(w in 0.85f64..1.0, t in -10.0f64..60.0, eps in 0.25f64..0.40) {
        let mut cell = nominal_filled_cell();
        cell.wetting_frac = w;
        cell.assembled.cathode.porosity_frac = eps;
        let p = FormationParams { temperature_degc: t, ..FormationParams::default() };
        let c = form_one(&p, cell);
        for v in [c.discharge_capacity_ah.value(), c.first_cycle_efficiency_frac.value(), c.ocv_v, c.r0_ohm, c.dcr_10s_ohm, c.formation_energy_grid_j] {
            prop_assert!(v.is_finite());
        }
        prop_assert!(c.first_cycle_efficiency_frac.value() < 1.0);
        prop_assert!(c.soc_frac.value() > 0.0 && c.soc_frac.value() < 1.0);
        prop_assert!(c.cathode_stoich > 0.0 && c.cathode_stoich <= 1.0 && c.anode_stoich >= 0.0);
    }
}
