//! Electrode inspection (MODELS.md §6): the §15 default (only the start-up scrap fails),
//! detection and false calls, verdicts, alarms, legacy keys and parameter ranges.

mod common_web;

use cellfab_model::alarm::AlarmState;
use cellfab_model::defect::{Defect, DefectKind, DefectSeverity};
use cellfab_model::legacy::LegacyRecord;
use cellfab_model::stage::{Line, ResultRecord, SampleRecord, Stage, StageParams, VecSink};
use cellfab_model::stages::inspection::{
    InspectedLanes, Inspection, InspectionParams, InspectionResult, InspectionSample, PodCurve,
};
use cellfab_model::stages::slitting::SlitLanes;
use cellfab_model::web::SegmentFlags;
use cellfab_model::Severity;
use common_web::{calendered, calendered_with_length, slit, Rngs};
use proptest::prelude::*;

fn run(
    line: Line,
    params: &InspectionParams,
    lanes: SlitLanes,
    noise: bool,
) -> (InspectedLanes, InspectionResult, VecSink<InspectionSample>) {
    let mut rngs = Rngs::new(5);
    let mut sink = VecSink::default();
    let r = Inspection::run(params, lanes, &mut (), &mut rngs.ctx_with(line, false, noise), &mut sink);
    assert_eq!(r.duration_s, r.result.duration_s);
    (r.output, r.result, sink)
}

fn defect(id: u32, kind: DefectKind, md: f64, cd: f64, size: f64, severity: DefectSeverity) -> Defect {
    Defect {
        id,
        kind,
        origin_stage: "coating".into(),
        md_position_m: md,
        cd_position_m: cd,
        length_m: size,
        width_m: size,
        size_m: size,
        severity,
        detected: false,
        false_call: false,
        fault_label: None,
    }
}

#[test]
fn default_rolls_pass_except_the_start_up_scrap() {
    // (line, calendered length, start-up scrap in calendered metres, samples)
    for (line, length, scrap, samples) in [(Line::Anode, 1587.5, 10.0, 795), (Line::Cathode, 1499.244, 10.1, 751)] {
        let (out, res, sink) = run(line, &InspectionParams::default(), slit(line, calendered(line)), false);
        assert_eq!(sink.samples.len(), samples, "{line:?}");
        assert!((res.duration_s - length).abs() < 1e-6);
        for (lv, li) in out.verdicts.iter().zip(&res.lanes) {
            let failed: Vec<usize> = (0..lv.segment_ok.len()).filter(|&k| !lv.segment_ok[k]).collect();
            assert_eq!(failed, (0..20).collect::<Vec<_>>(), "{line:?} lane {}", lv.lane);
            assert!(lv.verdicts[..20].iter().all(|v| !v.surface_ok && v.width_ok && v.thickness_ok && v.burr_ok));
            assert!((lv.rejected_length_m - scrap).abs() < 1e-9, "{line:?} rejected {}", lv.rejected_length_m);
            assert!(
                (lv.accepted_length_m - (length - scrap)).abs() < 1e-6,
                "{line:?} accepted {}",
                lv.accepted_length_m
            );
            assert_eq!(li.rejected_segments, 20);
            assert_eq!(li.cpk_thickness, None, "no spread in deterministic mode");
        }
        // one Info alarm per lane for the scrap run, raised at the start and cleared after 20 segments
        assert_eq!(res.alarms.len(), 16, "{line:?}: {:?}", res.alarms);
        assert!(res.alarms.iter().all(|a| a.code == "INSP_SEGMENT_REJECTED" && a.severity == Severity::Info));
        let cleared = res.alarms.iter().find(|a| a.state == AlarmState::Cleared).unwrap();
        assert!((cleared.position_m.unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(sink.alarms, res.alarms);
        assert!(sink.samples.iter().all(|s| !s.defect_risk), "Info alarms are no defect risk");
        assert!(res.accepted());
        assert!(res.defects.is_empty());
        // OEE quality of §14: cathode 1 489.1 / 1 499.2
        if line == Line::Cathode {
            let q = res.accepted_length_m / (res.accepted_length_m + res.rejected_length_m);
            assert!((q - 0.9933).abs() < 5e-5, "{q}");
        }
    }
}

#[test]
fn large_defects_are_found_and_reject_their_lane_segment() {
    let mut e = calendered_with_length(Line::Cathode, 100.0);
    // lane 2 spans 0.128–0.189 m; lane 5 spans 0.311–0.372 m
    e.dry.film.defects = vec![
        defect(1, DefectKind::Agglomerate, 50.2, 0.150, 300e-6, DefectSeverity::Major), // found
        defect(2, DefectKind::Agglomerate, 60.2, 0.150, 50e-6, DefectSeverity::Minor),  // missed
        defect(3, DefectKind::Bubble, 70.1, 0.330, 400e-6, DefectSeverity::Minor),      // found, minor
        defect(4, DefectKind::LowLoading, 80.0, 0.330, 0.01, DefectSeverity::Major),    // gauge judges
    ];
    let (out, res, sink) = run(Line::Cathode, &InspectionParams::default(), slit(Line::Cathode, e), false);
    let defects = &out.slit.electrode.dry.film.defects;
    assert!(defects[0].detected);
    assert!(!defects[1].detected);
    assert!(defects[2].detected);
    assert!(!defects[3].detected, "loading within tolerance: the gauge sees nothing");
    let lane2 = &out.verdicts[2];
    assert!(!lane2.segment_ok[100], "segment 100 holds the major agglomerate");
    assert!(!lane2.verdicts[100].surface_ok && lane2.verdicts[100].width_ok);
    assert_eq!(lane2.defects_detected[100], 1);
    assert!(lane2.segment_ok[120], "a missed defect does not reject");
    assert!(out.verdicts[5].segment_ok[140], "a detected minor defect does not reject");
    assert!(out.verdicts[1].segment_ok[100]);
    let count = |k: DefectKind| res.defects.iter().find(|d| d.kind == k).cloned().unwrap();
    let a = count(DefectKind::Agglomerate);
    assert_eq!((a.true_positives, a.false_negatives, a.false_positives), (1, 1, 0));
    let b = count(DefectKind::Bubble);
    assert_eq!((b.true_positives, b.false_negatives), (1, 0));
    let l = count(DefectKind::LowLoading);
    assert_eq!((l.true_positives, l.false_negatives), (0, 1));
    assert!(sink.samples.iter().all(|s| s.lanes.len() == 8));
    // the allowed count lets one major defect pass
    let p = InspectionParams { surface_defects_max_per_segment: 1, ..InspectionParams::default() };
    let mut e = calendered_with_length(Line::Cathode, 100.0);
    e.dry.film.defects = vec![defect(1, DefectKind::Agglomerate, 50.2, 0.150, 300e-6, DefectSeverity::Major)];
    let (out, _, _) = run(Line::Cathode, &p, slit(Line::Cathode, e), false);
    assert!(out.verdicts[2].segment_ok[100]);
}

#[test]
fn off_nominal_loading_fails_areal_mass_and_trends() {
    let mut e = calendered_with_length(Line::Anode, 200.0);
    // 4 % low loading between 100 m and 140 m on the whole width
    for k in 200..280 {
        e.areal_mass_kg_m2.row_mut(k).iter_mut().for_each(|m| *m *= 0.96);
    }
    e.dry.film.defects = vec![defect(1, DefectKind::LowLoading, 120.0, 0.2, 0.04, DefectSeverity::Major)];
    let (out, res, sink) = run(Line::Anode, &InspectionParams::default(), slit(Line::Anode, e), false);
    for lv in &out.verdicts {
        assert!((200..280).all(|k| !lv.verdicts[k].areal_mass_ok && !lv.segment_ok[k]));
        assert!(lv.segment_ok[199] && lv.segment_ok[280]);
        assert!((lv.rejected_length_m - 10.0 - 40.0).abs() < 1e-9);
    }
    assert!(out.slit.electrode.dry.film.defects[0].detected, "the areal-mass gauge finds the low loading");
    for code in ["INSP_LOADING_TREND", "INSP_REJECT_RATE_HIGH"] {
        let raised: Vec<_> = res.alarms.iter().filter(|a| a.code == code && a.state == AlarmState::Raised).collect();
        assert_eq!(raised.len(), 8, "{code}: one per lane");
        assert!(raised.iter().all(|a| a.severity == Severity::Warning));
    }
    // the trend needs 1.5 % of 4 %: 3/8 of the 20 m window, i.e. 7.5 m after 100 m
    let trend = res.alarms.iter().find(|a| a.code == "INSP_LOADING_TREND").unwrap();
    assert!((trend.position_m.unwrap() - 107.5).abs() < 0.6, "{:?}", trend.position_m);
    assert!(sink.samples.iter().any(|s| s.defect_risk));
    assert!(res.accepted(), "warnings do not fail the stage");
}

#[test]
fn upstream_flags_and_wrinkles_fail_the_surface() {
    let mut e = calendered_with_length(Line::Cathode, 100.0);
    e.dry.film.segment_flags[60].set(SegmentFlags::BLISTER_RISK);
    e.dry.film.segment_flags[61].set(SegmentFlags::CRACK_RISK);
    let mut lanes = slit(Line::Cathode, e);
    lanes.lanes[4].wrinkle[90] = true;
    let (out, _, _) = run(Line::Cathode, &InspectionParams::default(), lanes, false);
    for (j, lv) in out.verdicts.iter().enumerate() {
        assert!(!lv.verdicts[60].surface_ok && !lv.verdicts[61].surface_ok);
        assert_eq!(lv.segment_ok[90], j != 4);
    }
}

#[test]
fn noise_gives_false_calls_and_random_detection() {
    let p = InspectionParams { false_call_rate_per_m: 0.05, ..InspectionParams::default() };
    let mut e = calendered_with_length(Line::Cathode, 400.0);
    // 40 agglomerates at a50 in lane 0: about half are found
    e.dry.film.defects = (0..40)
        .map(|i| defect(i + 1, DefectKind::Agglomerate, 20.0 + 9.0 * i as f64, 0.030, 150e-6, DefectSeverity::Major))
        .collect();
    let lanes = slit(Line::Cathode, e);
    let truth = lanes.lanes.clone();
    let (out, res, _) = run(Line::Cathode, &p, lanes, true);
    let found = out.slit.electrode.dry.film.defects.iter().filter(|d| !d.false_call && d.detected).count();
    assert!((8..=32).contains(&found), "found {found} of 40 at POD 0.5");
    let calls: Vec<_> = out.slit.electrode.dry.film.defects.iter().filter(|d| d.false_call).collect();
    // expected 0.05/m × 404 m × 8 lanes ≈ 162
    assert!((110..220).contains(&calls.len()), "{} false calls", calls.len());
    assert!(calls.iter().all(|d| d.severity == DefectSeverity::Minor && d.detected && d.size_m == 50e-6));
    let fp: u32 = res.defects.iter().map(|d| d.false_positives).sum();
    assert_eq!(fp as usize, calls.len());
    // false calls are minor: the noise alone rejects little beyond the start-up scrap
    for lv in &out.verdicts {
        assert!(lv.rejected_length_m < 10.1 + 30.0, "lane {} rejected {}", lv.lane, lv.rejected_length_m);
    }
    assert!(res.lanes.iter().all(|l| l.cpk_thickness.is_some_and(|c| c > 1.0)));
    // the true lanes are unchanged; the false calls sit inside their lanes
    for (a, b) in out.slit.lanes.iter().zip(&truth) {
        assert_eq!(a.width_m, b.width_m);
        assert_eq!(a.burr_height_m, b.burr_height_m);
    }
    for d in &calls {
        let lane = out.slit.lanes.iter().find(|l| l.defect_ids.contains(&d.id)).unwrap();
        let (y0, y1) =
            (out.slit.knife_positions_m[lane.index as usize], out.slit.knife_positions_m[lane.index as usize + 1]);
        assert!(d.cd_position_m >= y0 && d.cd_position_m <= y1);
    }
}

#[test]
fn legacy_keys_follow_models_6_4() {
    let (_, res, sink) = run(
        Line::Cathode,
        &InspectionParams::default(),
        slit(Line::Cathode, calendered_with_length(Line::Cathode, 40.0)),
        false,
    );
    let mut rec = LegacyRecord::new();
    sink.samples[0].legacy(&mut rec);
    let keys: Vec<&str> = rec.keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "epsilon_width_mm",
            "burr_factor",
            "delta_sl_m",
            "delta_measured_m",
            "epsilon_thickness_m",
            "defects_detected",
            "Pass_width",
            "Pass_thickness",
            "Pass_burr",
            "Pass_surface",
            "Overall"
        ]
    );
    assert_eq!(rec["epsilon_width_mm"].as_f64().unwrap(), 0.0);
    assert!((rec["delta_sl_m"].as_f64().unwrap() - 141.82e-6).abs() < 1e-15);
    assert!(rec["epsilon_thickness_m"].as_f64().unwrap().abs() < 1e-15);
    assert_eq!(rec["Pass_surface"], serde_json::Value::Bool(false), "start-up scrap");
    assert_eq!(rec["Overall"], "Fail");
    let mut last = LegacyRecord::new();
    sink.samples.last().unwrap().legacy(&mut last);
    assert_eq!(last["Overall"], "Pass");
    let mut fin = LegacyRecord::new();
    res.legacy(&mut fin);
    let props = fin["Final Properties"].as_object().unwrap();
    assert_eq!(props.len(), 11);
    assert_eq!(props["Overall"], "Pass");
    assert!(!res.summary().is_empty());
}

#[test]
fn same_seed_same_output() {
    let go = || {
        let mut rngs = Rngs::new(3);
        let mut sink = VecSink::default();
        let lanes = slit(Line::Anode, calendered_with_length(Line::Anode, 150.0));
        let r = Inspection::run(
            &InspectionParams::default(),
            lanes,
            &mut (),
            &mut rngs.ctx_with(Line::Anode, true, true),
            &mut sink,
        );
        (r.output, serde_json::to_string(&sink.samples).unwrap())
    };
    assert_eq!(go(), go());
}

#[test]
fn every_field_is_range_checked() {
    /// (field, setter, bad value, expected min, expected max)
    type Case = (&'static str, fn(&mut InspectionParams, f64), f64, Option<f64>, Option<f64>);
    let cases: &[Case] = &[
        ("inspection_speed_m_s", |p, v| p.inspection_speed_m_s = v, 0.01, Some(0.05), Some(5.0)),
        ("inspection_speed_m_s", |p, v| p.inspection_speed_m_s = v, 6.0, Some(0.05), Some(5.0)),
        ("thickness_sigma_m", |p, v| p.thickness_sigma_m = v, -1e-6, Some(0.0), None),
        ("areal_mass_sigma_frac", |p, v| p.areal_mass_sigma_frac = v, -0.1, Some(0.0), None),
        ("width_sigma_m", |p, v| p.width_sigma_m = v, -1e-6, Some(0.0), None),
        ("burr_sigma_m", |p, v| p.burr_sigma_m = v, f64::NAN, Some(0.0), None),
        ("pod.agglomerate.a50_m", |p, v| p.pod.agglomerate.a50_m = v, 0.0, Some(0.0), Some(1.0)),
        ("pod.bubble.slope", |p, v| p.pod.bubble.slope = v, 0.0, Some(0.0), Some(10.0)),
        ("pod.streak.a50_m", |p, v| p.pod.streak.a50_m = v, -1.0, Some(0.0), Some(1.0)),
        ("pod.crack.slope", |p, v| p.pod.crack.slope = v, -0.3, Some(0.0), Some(10.0)),
        ("pod.blister.a50_m", |p, v| p.pod.blister.a50_m = v, 0.0, Some(0.0), Some(1.0)),
        ("pod.contamination.slope", |p, v| p.pod.contamination.slope = v, 0.0, Some(0.0), Some(10.0)),
        ("pod.wrinkle.a50_m", |p, v| p.pod.wrinkle.a50_m = v, 0.0, Some(0.0), Some(1.0)),
        ("false_call_rate_per_m", |p, v| p.false_call_rate_per_m = v, -1e-3, Some(0.0), None),
        ("width_tolerance_m", |p, v| p.width_tolerance_m = v, 0.0, Some(0.0), Some(1e-2)),
        ("width_tolerance_m", |p, v| p.width_tolerance_m = v, 0.011, Some(0.0), Some(1e-2)),
        ("thickness_tolerance_m", |p, v| p.thickness_tolerance_m = v, 2e-3, Some(0.0), Some(1e-3)),
        ("areal_mass_tolerance_frac", |p, v| p.areal_mass_tolerance_frac = v, 0.6, Some(0.0), Some(0.5)),
        ("burr_max_m", |p, v| p.burr_max_m = v, 0.0, Some(0.0), Some(1e-4)),
        (
            "surface_defects_max_per_segment",
            |p, v| p.surface_defects_max_per_segment = v as u32,
            101.0,
            Some(0.0),
            Some(100.0),
        ),
        ("sample_interval_s", |p, v| p.sample_interval_s = v, -2.0, Some(0.0), Some(600.0)),
    ];
    for &(field, set, value, min, max) in cases {
        let mut p = InspectionParams::default();
        set(&mut p, value);
        let e = p.validate().expect_err(field);
        assert_eq!(e.field, field, "{field} = {value}");
        assert_eq!((e.min, e.max), (min, max), "{field} = {value}");
    }
    assert!(InspectionParams::default().validate().is_ok());
    assert_eq!(InspectionParams::anode(), InspectionParams::cathode());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// POD rises with size, is ½ at a50, and stays in [0, 1].
    #[test]
    fn pod_is_monotonic(a50 in 1e-5f64..1e-2, slope in 0.05f64..2.0, a in 1e-7f64..1e-1, f in 1.01f64..10.0) {
        let c = PodCurve { a50_m: a50, slope };
        let (p0, p1) = (c.probability(a), c.probability(a * f));
        prop_assert!((0.0..=1.0).contains(&p0) && (0.0..=1.0).contains(&p1));
        prop_assert!(p1 >= p0);
        prop_assert!((c.probability(a50) - 0.5).abs() < 1e-12);
    }

    /// Accepted + rejected length is the lane length whatever the tolerances, and tighter
    /// tolerances never accept more.
    #[test]
    fn lengths_add_up(tol in 1e-6f64..1e-2, mass_tol in 1e-4f64..0.5, seed in 0u64..100) {
        let lanes = slit(Line::Cathode, calendered_with_length(Line::Cathode, 60.0));
        let go = |scale: f64| {
            let p = InspectionParams {
                width_tolerance_m: tol * scale,
                thickness_tolerance_m: (tol * scale).min(1e-3),
                areal_mass_tolerance_frac: mass_tol * scale,
                ..InspectionParams::default()
            };
            let mut rngs = Rngs::new(seed);
            let mut sink = VecSink::default();
            Inspection::run(&p, lanes.clone(), &mut (), &mut rngs.ctx_with(Line::Cathode, false, true), &mut sink).result
        };
        let (tight, loose) = (go(0.5), go(1.0));
        for (a, b) in tight.lanes.iter().zip(&loose.lanes) {
            prop_assert!((a.accepted_length_m + a.rejected_length_m - 60.6).abs() < 1e-9);
            prop_assert!(a.accepted_length_m <= b.accepted_length_m + 1e-9);
        }
    }
}
