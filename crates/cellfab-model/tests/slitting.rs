//! Slitting (MODELS.md §5): §15 reference numbers, blade state across batches, lanes and
//! their defects, legacy keys, parameter ranges and a burr property.

mod common_web;

use cellfab_model::defect::{Defect, DefectKind, DefectSeverity};
use cellfab_model::legacy::LegacyRecord;
use cellfab_model::stage::{Line, ResultRecord, SampleRecord, Stage, StageParams, VecSink};
use cellfab_model::stages::slitting::SlitLanes;
use cellfab_model::stages::slitting::{BladeState, Slitting, SlittingParams, SlittingResult, SlittingSample};
use common_web::{assert_close, calendered, calendered_with_length, slitting_params, Rngs};
use proptest::prelude::*;

fn run(
    line: Line,
    params: &SlittingParams,
    electrode: cellfab_model::stages::calendaring::CalenderedElectrode,
    blade: &mut BladeState,
) -> (SlitLanes, SlittingResult, VecSink<SlittingSample>, f64) {
    let mut rngs = Rngs::new(7);
    let mut sink = VecSink::default();
    let r = Slitting::run(params, electrode, blade, &mut rngs.ctx(line), &mut sink);
    (r.output, r.result, sink, r.duration_s)
}

/// §15 reference values of one line.
struct Reference {
    line: Line,
    first_burr_m: f64,
    first_factor: f64,
    max_burr_m: f64,
    max_factor: f64,
    lane_width_m: f64,
    trim_m: f64,
    foil_stress_pa: f64,
    duration_s: f64,
    samples: usize,
    radius_after_m: f64,
}

const REFERENCE: [Reference; 2] = [
    Reference {
        line: Line::Anode,
        first_burr_m: 3.007e-6,
        first_factor: 0.376,
        max_burr_m: 3.054e-6,
        max_factor: 0.382,
        lane_width_m: 0.063,
        trim_m: 0.008,
        foil_stress_pa: 14.4e6,
        duration_s: 1587.5,
        samples: 795,
        radius_after_m: 1.016e-6,
    },
    Reference {
        line: Line::Cathode,
        first_burr_m: 3.014e-6,
        first_factor: 0.377,
        max_burr_m: 3.059e-6,
        max_factor: 0.382,
        lane_width_m: 0.061,
        trim_m: 0.006,
        foil_stress_pa: 8.0e6,
        duration_s: 1499.244,
        samples: 751,
        radius_after_m: 1.015e-6,
    },
];

#[test]
fn default_rolls_reproduce_models_15() {
    for Reference {
        line,
        first_burr_m: burr0,
        first_factor: factor0,
        max_burr_m: burr_max,
        max_factor: factor_max,
        lane_width_m: width,
        trim_m: trim,
        foil_stress_pa: stress,
        duration_s: duration,
        samples,
        radius_after_m: radius,
    } in REFERENCE
    {
        let mut blade = BladeState::default();
        let (out, res, sink, d) = run(line, &slitting_params(line), calendered(line), &mut blade);
        let what = |s: &str| format!("{line:?} {s}");
        // A: burr at the first segment (fresh blade, r_e = 1 µm) and its factor
        assert_close(res.first_burr_height_m, burr0, 0.005, &what("first burr"));
        assert_close(res.first_burr_factor, factor0, 0.005, &what("burr factor"));
        assert_close(out.lanes[0].burr_height_m[0], burr0, 0.005, &what("lane 0 segment 0 burr"));
        // A: worn blade at the last segment, and the per-lane max
        assert_close(res.max_burr_height_m, burr_max, 0.005, &what("max burr"));
        assert_close(res.max_burr_factor, factor_max, 0.005, &what("max burr factor"));
        for (lane, lr) in out.lanes.iter().zip(&res.lanes) {
            assert_close(*lane.burr_height_m.last().unwrap(), burr_max, 0.005, &what("last segment burr"));
            assert_close(lr.max_burr_height_m, burr_max, 0.005, &what("lane max burr"));
            // X: lanes exactly 63 / 61 mm
            assert!(lane.width_m.iter().all(|&w| w == width), "{line:?} lane {} width", lane.index);
            assert_eq!(lr.width_sigma_m, 0.0);
        }
        assert_eq!(out.lanes.len(), 8);
        assert!((res.edge_trim_m - trim).abs() < 1e-12, "{line:?} trim {}", res.edge_trim_m);
        assert!((out.edge_trim_m - trim).abs() < 1e-12);
        assert_close(res.foil_stress_pa, stress, 0.005, &what("foil stress"));
        // duration = web length / speed; sample count of §0.2 (X)
        assert!((d - duration).abs() < 1e-6, "{line:?} duration {d}");
        assert_eq!(sink.samples.len(), samples, "{line:?} samples");
        assert_eq!(sink.samples.last().unwrap().stage_time_s, d);
        // blade state after the batch
        assert_close(blade.edge_radius_m, radius, 0.0005, &what("edge radius after"));
        assert!((blade.cut_length_m - duration).abs() < 1e-6);
        assert_eq!(blade.blade_changes, 1);
        assert_eq!(out.blade, blade);
        // deterministic default: no alarm, accepted, no defect risk
        assert!(res.alarms.is_empty(), "{line:?} alarms {:?}", res.alarms);
        assert!(sink.alarms.is_empty());
        assert!(res.accepted());
        assert!(sink.samples.iter().all(|s| !s.defect_risk));
    }
}

#[test]
fn lanes_carry_the_calendered_properties() {
    let (out, _, _, _) =
        run(Line::Cathode, &SlittingParams::cathode(), calendered(Line::Cathode), &mut BladeState::default());
    let lane = &out.lanes[3];
    assert_eq!(lane.width_m.len(), 2969);
    assert!((lane.cd_start_m - (0.006 + 3.0 * 0.061)).abs() < 1e-12);
    assert!(lane.areal_mass_kg_m2.iter().all(|&m| (m - 0.19760).abs() < 1e-12));
    assert!(lane.porosity_frac.iter().all(|&e| (e - 0.3006).abs() < 1e-12));
    assert!(lane.coating_thickness_m.iter().all(|&h| (h - 63.41e-6).abs() < 1e-15));
    assert!(lane.electrode_thickness_m.iter().all(|&t| (t - 141.82e-6).abs() < 1e-15));
    assert!(lane.wrinkle.iter().all(|&w| !w));
    assert_eq!(out.knife_positions_m.len(), 9);
}

#[test]
fn lane_means_weight_the_cd_cells_by_overlap() {
    // a CD profile: cell j carries thickness 100 µm + j µm
    let mut e = calendered_with_length(Line::Cathode, 20.0);
    for k in 0..e.electrode_thickness_m.n_md {
        for (j, v) in e.electrode_thickness_m.row_mut(k).iter_mut().enumerate() {
            *v = 100e-6 + j as f64 * 1e-6;
        }
    }
    let expected = {
        let cell = 0.5 / 32.0;
        let (y0, y1) = (0.006, 0.067);
        let mut sum = 0.0;
        for j in 0..32 {
            let (a, b) = ((j as f64 * cell).max(y0), ((j + 1) as f64 * cell).min(y1));
            if b > a {
                sum += (100e-6 + j as f64 * 1e-6) * (b - a);
            }
        }
        sum / 0.061
    };
    let (out, _, _, _) = run(Line::Cathode, &SlittingParams::cathode(), e, &mut BladeState::default());
    assert!((out.lanes[0].electrode_thickness_m[5] - expected).abs() < 1e-15);
    assert!(out.lanes[7].electrode_thickness_m[5] > out.lanes[0].electrode_thickness_m[5]);
}

#[test]
fn defects_go_to_the_lane_they_lie_in() {
    let mut e = calendered_with_length(Line::Anode, 100.0);
    let defect = |id, cd| Defect {
        id,
        kind: DefectKind::Agglomerate,
        origin_stage: "coating".into(),
        md_position_m: 50.0,
        cd_position_m: cd,
        length_m: 1e-4,
        width_m: 1e-4,
        size_m: 1e-4,
        severity: DefectSeverity::Major,
        detected: false,
        false_call: false,
        fault_label: None,
    };
    // trim 8 mm, lanes 63 mm: 0.004 is in the trim, 0.0081 is just inside lane 0, 0.200 is in lane 3
    e.dry.film.defects = vec![defect(1, 0.004), defect(2, 0.0081), defect(3, 0.200), defect(4, 0.515)];
    let (out, res, _, _) = run(Line::Anode, &SlittingParams::anode(), e, &mut BladeState::default());
    assert_eq!(out.lanes[0].defect_ids, vec![2]);
    assert_eq!(out.lanes[3].defect_ids, vec![3]);
    let all: usize = out.lanes.iter().map(|l| l.defect_ids.len()).sum();
    assert_eq!(all, 2, "defects in the trims belong to no lane");
    assert_eq!(res.lanes[3].defect_count, 1);
}

#[test]
fn blade_wears_across_batches_and_is_changed_above_the_limit() {
    let p = SlittingParams { blade_wear_rate_m_per_m: 1e-9, ..SlittingParams::cathode() };
    let mut blade = BladeState::default();
    let e = || calendered_with_length(Line::Cathode, 500.0);
    let (_, r1, _, _) = run(Line::Cathode, &p, e(), &mut blade);
    assert!(r1.blade_changed);
    let after1 = blade.edge_radius_m;
    assert!((after1 - (1e-6 + 1e-9 * 505.0)).abs() < 1e-15);
    // the second batch starts where the first ended
    let (_, r2, _, _) = run(Line::Cathode, &p, e(), &mut blade);
    assert!(!r2.blade_changed);
    assert_eq!(r2.start_edge_radius_m, after1);
    assert!(r2.first_burr_height_m > r1.first_burr_height_m);
    assert!((blade.cut_length_m - 1010.0).abs() < 1e-6);
    // the blade passes the change limit during batch 3: a warning, then a change before batch 4
    let (_, r3, sink3, _) = run(Line::Cathode, &p, e(), &mut blade);
    assert!(r3.alarms.iter().any(|a| a.code == "SLIT_BLADE_WORN"));
    assert!(sink3.alarms.iter().any(|a| a.code == "SLIT_BLADE_WORN"));
    assert!(blade.edge_radius_m > p.blade_change_edge_radius_m);
    assert!(sink3.samples.last().unwrap().defect_risk, "the worn blade warning is active");
    let (_, r4, _, _) = run(Line::Cathode, &p, e(), &mut blade);
    assert!(r4.blade_changed);
    assert_eq!(r4.start_edge_radius_m, p.blade_edge_radius_new_m);
    assert_eq!(blade.blade_changes, 2);
}

#[test]
fn a_blunt_blade_raises_burr_alarms() {
    // an edge radius of 2.3 µm gives ≈ 6.9 µm burrs: above 0.75 of the 8 µm limit (Warning)
    let p = SlittingParams { blade_edge_radius_new_m: 2.3e-6, ..SlittingParams::cathode() };
    let (_, res, sink, _) =
        run(Line::Cathode, &p, calendered_with_length(Line::Cathode, 50.0), &mut BladeState::default());
    let burr: Vec<_> = res.alarms.iter().filter(|a| a.code == "SLIT_BURR_HIGH").collect();
    assert_eq!(burr.len(), 8, "one warning per lane");
    assert!(burr.iter().all(|a| a.severity == cellfab_model::Severity::Warning && a.lane.is_some()));
    assert!(res.accepted, "a warning does not reject");
    assert!(sink.samples.iter().all(|s| s.defect_risk));
    // 2.8 µm: above the limit (Alarm) and the product is not accepted
    let p = SlittingParams { blade_edge_radius_new_m: 2.8e-6, blade_change_edge_radius_m: 3e-6, ..p };
    let (_, res, _, _) =
        run(Line::Cathode, &p, calendered_with_length(Line::Cathode, 50.0), &mut BladeState::default());
    assert!(res.alarms.iter().any(|a| a.code == "SLIT_BURR_HIGH" && a.severity == cellfab_model::Severity::Alarm));
    assert!(!res.accepted);
}

#[test]
fn legacy_keys_follow_models_5_4() {
    let (_, res, sink, _) = run(
        Line::Anode,
        &SlittingParams::anode(),
        calendered_with_length(Line::Anode, 40.0),
        &mut BladeState::default(),
    );
    let mut rec = LegacyRecord::new();
    sink.samples[0].legacy(&mut rec);
    let keys: Vec<&str> = rec.keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "input_thickness_mm",
            "target_width_mm",
            "final_width_mm",
            "cut_accuracy_epsilon_mm",
            "burr_factor",
            "defect_risk"
        ]
    );
    assert!((rec["input_thickness_mm"].as_f64().unwrap() - 0.17753).abs() < 1e-12);
    assert!((rec["target_width_mm"].as_f64().unwrap() - 63.0).abs() < 1e-9);
    assert!((rec["final_width_mm"].as_f64().unwrap() - 63.0).abs() < 1e-9);
    assert_eq!(rec["cut_accuracy_epsilon_mm"].as_f64().unwrap(), 0.0);
    assert!((rec["burr_factor"].as_f64().unwrap() - 0.376).abs() < 0.002);
    assert_eq!(rec["defect_risk"], serde_json::Value::Bool(false));
    let mut fin = LegacyRecord::new();
    res.legacy(&mut fin);
    let props = fin["Final Properties"].as_object().unwrap();
    assert_eq!(props.len(), 6);
    assert!((props["target_width_mm"].as_f64().unwrap() - 63.0).abs() < 1e-9);
    assert!(!res.summary().is_empty());
}

#[test]
fn sample_positions_are_in_coating_coordinates() {
    let (_, _, sink, d) = run(
        Line::Cathode,
        &SlittingParams::cathode(),
        calendered_with_length(Line::Cathode, 30.0),
        &mut BladeState::default(),
    );
    assert!((d - 30.3).abs() < 1e-9);
    let last = sink.samples.last().unwrap();
    assert!((last.position_m - 30.0).abs() < 1e-9);
    assert!((sink.samples[1].position_m - 2.0 / 1.01).abs() < 1e-12);
    // 0, 2, … 30, 30.3
    assert_eq!(sink.samples.len(), 17);
}

#[test]
fn same_seed_same_output_and_noise_never_changes_the_product() {
    let go = |noise: bool| {
        let mut rngs = Rngs::new(11);
        let mut sink = VecSink::default();
        let r = Slitting::run(
            &SlittingParams::cathode(),
            calendered_with_length(Line::Cathode, 200.0),
            &mut BladeState::default(),
            &mut rngs.ctx_with(Line::Cathode, true, noise),
            &mut sink,
        );
        (r.output, serde_json::to_string(&sink.samples).unwrap())
    };
    let (a, sa) = go(true);
    let (b, sb) = go(true);
    assert_eq!(a, b);
    assert_eq!(sa, sb);
    let (c, sc) = go(false);
    assert_eq!(a.lanes, c.lanes, "sensor noise must not change the true lanes");
    assert_ne!(sa, sc);
    // with variability the widths scatter around the target
    let w = &a.lanes[2].width_m;
    assert!(w.iter().any(|&x| x != 0.061));
    let mean = w.iter().sum::<f64>() / w.len() as f64;
    assert!((mean - 0.061).abs() < 1e-4);
}

#[test]
fn width_rule_against_the_web() {
    let p = SlittingParams::cathode();
    assert!(p.validate_for_web(0.50).is_ok());
    let e = p.validate_for_web(0.45).unwrap_err();
    assert_eq!(e.field, "lane_width_m");
    assert!((e.max.unwrap() - (0.45 - 0.01) / 8.0).abs() < 1e-12);
    // 64 lanes of 40 mm need 2.57 m: wider than any coated web
    let e = SlittingParams { lane_count: 64, lane_width_m: 0.04, ..p.clone() }.validate().unwrap_err();
    assert_eq!(e.field, "lane_width_m");
    // too narrow a web for the lanes: a Critical alarm, no panic
    let (_, res, _, _) = run(
        Line::Cathode,
        &SlittingParams { lane_width_m: 0.0625, ..p },
        calendered_with_length(Line::Cathode, 20.0),
        &mut BladeState::default(),
    );
    assert!(res.alarms.iter().any(|a| a.code == "SLIT_WIDTH_RULE"));
}

#[test]
fn every_field_is_range_checked() {
    /// (field, setter, bad value, expected min, expected max)
    type Case = (&'static str, fn(&mut SlittingParams, f64), f64, Option<f64>, Option<f64>);
    let cases: &[Case] = &[
        ("lane_count", |p, v| p.lane_count = v as u32, 0.0, Some(1.0), Some(64.0)),
        ("lane_count", |p, v| p.lane_count = v as u32, 65.0, Some(1.0), Some(64.0)),
        ("lane_width_m", |p, v| p.lane_width_m = v, 0.004, Some(0.005), Some(2.0)),
        ("min_edge_trim_m", |p, v| p.min_edge_trim_m = v, 0.11, Some(0.0), Some(0.1)),
        ("min_edge_trim_m", |p, v| p.min_edge_trim_m = v, -0.001, Some(0.0), Some(0.1)),
        ("slitting_speed_m_s", |p, v| p.slitting_speed_m_s = v, 0.04, Some(0.05), Some(5.0)),
        ("slitting_speed_m_s", |p, v| p.slitting_speed_m_s = v, 5.1, Some(0.05), Some(5.0)),
        ("web_tension_n", |p, v| p.web_tension_n = v, 0.5, Some(1.0), Some(5000.0)),
        ("web_tension_n", |p, v| p.web_tension_n = v, 5001.0, Some(1.0), Some(5000.0)),
        ("blade_clearance_m", |p, v| p.blade_clearance_m = v, 1.1e-4, Some(0.0), Some(1e-4)),
        ("blade_clearance_m", |p, v| p.blade_clearance_m = v, -1e-6, Some(0.0), Some(1e-4)),
        ("blade_edge_radius_new_m", |p, v| p.blade_edge_radius_new_m = v, 0.0, Some(0.0), Some(1e-5)),
        ("blade_edge_radius_new_m", |p, v| p.blade_edge_radius_new_m = v, 2e-5, Some(0.0), Some(1e-5)),
        ("blade_wear_rate_m_per_m", |p, v| p.blade_wear_rate_m_per_m = v, 2e-6, Some(0.0), Some(1e-6)),
        ("blade_wear_rate_m_per_m", |p, v| p.blade_wear_rate_m_per_m = v, -1e-12, Some(0.0), Some(1e-6)),
        ("blade_change_edge_radius_m", |p, v| p.blade_change_edge_radius_m = v, 1e-6, Some(1e-6), Some(1e-4)),
        ("burr_height_ref_m", |p, v| p.burr_height_ref_m = v, 0.0, Some(0.0), Some(1e-4)),
        ("clearance_opt_frac", |p, v| p.clearance_opt_frac = v, 0.0, Some(0.0), Some(1.0)),
        ("clearance_sensitivity", |p, v| p.clearance_sensitivity = v, -1.0, Some(0.0), Some(100.0)),
        ("speed_exponent", |p, v| p.speed_exponent = v, 3.5, Some(0.0), Some(3.0)),
        ("burr_sigma_ln", |p, v| p.burr_sigma_ln = v, 2.5, Some(0.0), Some(2.0)),
        ("burr_spike_rate_per_m", |p, v| p.burr_spike_rate_per_m = v, -1.0, Some(0.0), Some(10.0)),
        ("burr_spike_factor", |p, v| p.burr_spike_factor = v, 0.5, Some(1.0), Some(100.0)),
        ("knife_position_sigma_m", |p, v| p.knife_position_sigma_m = v, -1e-6, Some(0.0), None),
        ("knife_vibration_sigma_m", |p, v| p.knife_vibration_sigma_m = v, -1e-6, Some(0.0), None),
        ("web_wander_sigma_m", |p, v| p.web_wander_sigma_m = v, f64::NAN, Some(0.0), None),
        ("burr_max_m", |p, v| p.burr_max_m = v, 0.0, Some(0.0), Some(1e-4)),
        ("width_tolerance_m", |p, v| p.width_tolerance_m = v, 0.02, Some(0.0), Some(1e-2)),
        ("sample_interval_s", |p, v| p.sample_interval_s = v, 0.0, Some(0.0), Some(600.0)),
    ];
    for &(field, set, value, min, max) in cases {
        let mut p = SlittingParams::anode();
        set(&mut p, value);
        let e = p.validate().expect_err(field);
        assert_eq!(e.field, field, "{field} = {value}");
        assert_eq!((e.min, e.max), (min, max), "{field} = {value}");
    }
    assert!(SlittingParams::anode().validate().is_ok());
    assert!(SlittingParams::cathode().validate().is_ok());
    assert_eq!(SlittingParams::default(), SlittingParams::cathode());
}

fn valid_params() -> impl Strategy<Value = SlittingParams> {
    (1u32..=10, 0.02f64..0.1, 0.2f64..3.0, 0.0f64..3e-5, 0.0f64..0.5, 0.0f64..3e-4, 0.0f64..1e-8).prop_map(
        |(lanes, width, speed, clearance, sigma_ln, spikes, wear)| SlittingParams {
            lane_count: lanes.min((0.49 / width) as u32).max(1),
            lane_width_m: width,
            slitting_speed_m_s: speed,
            blade_clearance_m: clearance,
            burr_sigma_ln: sigma_ln,
            burr_spike_rate_per_m: spikes,
            blade_wear_rate_m_per_m: wear,
            ..SlittingParams::cathode()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A sharper blade (smaller edge radius) gives smaller burrs, lane-segment by lane-segment,
    /// with the same random draws.
    #[test]
    fn sharper_blade_smaller_burrs(p in valid_params(), r_sharp in 0.3e-6f64..2e-6, extra in 0.05e-6f64..2e-6, seed in 0u64..1000) {
        prop_assume!(p.validate().is_ok());
        let go = |radius: f64| {
            let params = SlittingParams { blade_edge_radius_new_m: radius, blade_change_edge_radius_m: 9e-6, ..p.clone() };
            let mut rngs = Rngs::new(seed);
            let mut sink = VecSink::default();
            let r = Slitting::run(&params, calendered_with_length(Line::Cathode, 30.0), &mut BladeState::default(),
                &mut rngs.ctx_with(Line::Cathode, true, false), &mut sink);
            (r.output, r.result)
        };
        let (sharp, rs) = go(r_sharp);
        let (blunt, rb) = go(r_sharp + extra);
        prop_assert!(rs.max_burr_height_m < rb.max_burr_height_m);
        for (a, b) in sharp.lanes.iter().zip(&blunt.lanes) {
            for (x, y) in a.burr_height_m.iter().zip(&b.burr_height_m) {
                prop_assert!(x < y);
            }
        }
        // physical invariants: positive burrs, finite everything, blade only wears
        prop_assert!(sharp.lanes.iter().all(|l| l.burr_height_m.iter().all(|&h| h > 0.0 && h.is_finite())));
        prop_assert!(rs.blade.edge_radius_m >= r_sharp);
        prop_assert!(rs.foil_stress_pa.is_finite() && rs.foil_stress_pa > 0.0);
    }
}
