//! Rewinding (MODELS.md §7): §15 reel numbers, the reel → coating map, cut-outs and splices,
//! legacy keys, parameter ranges and conservation of length.

mod common_web;

use cellfab_model::defect::DefectKind;
use cellfab_model::legacy::LegacyRecord;
use cellfab_model::stage::{Line, ResultRecord, SampleRecord, Stage, StageParams, VecSink};
use cellfab_model::stages::inspection::InspectedLanes;
use cellfab_model::stages::rewinding::{
    core_pressure_pa, plan_cuts, ElectrodeReels, Rewinding, RewindingParams, RewindingResult, RewindingSample,
};
use cellfab_model::Severity;
use common_web::{assert_close, calendered, calendered_with_length, inspect, Rngs};
use proptest::prelude::*;

fn params(line: Line) -> RewindingParams {
    if line == Line::Anode {
        RewindingParams::anode()
    } else {
        RewindingParams::cathode()
    }
}

fn run(
    line: Line,
    p: &RewindingParams,
    input: InspectedLanes,
) -> (ElectrodeReels, RewindingResult, VecSink<RewindingSample>, f64) {
    let mut rngs = Rngs::new(9);
    let mut sink = VecSink::default();
    let r = Rewinding::run(p, input, &mut (), &mut rngs.ctx(line), &mut sink);
    (r.output, r.result, sink, r.duration_s)
}

/// Fails segments `from..to` of `lane`.
fn reject(input: &mut InspectedLanes, lane: usize, from: usize, to: usize) {
    input.verdicts[lane].segment_ok[from..to].iter_mut().for_each(|ok| *ok = false);
}

#[test]
fn default_reels_reproduce_models_15() {
    // (line, reel length, diameter, core pressure, end tension, duration, samples, moisture)
    for (line, length, diameter, pressure, tension, duration, samples, moisture) in [
        (Line::Anode, 1577.5, 0.6162, 1.617e6, 11.61, 1587.5, 795, 77e-6),
        (Line::Cathode, 1489.1, 0.5404, 1.913e6, 11.77, 1499.244, 751, 103e-6),
    ] {
        let (out, res, sink, d) = run(line, &params(line), inspect(line, calendered(line)));
        let what = |s: &str| format!("{line:?} {s}");
        assert_eq!(out.reels.len(), 8);
        for reel in &out.reels {
            assert_close(reel.length_m, length, 0.005, &what("reel length"));
            assert_close(reel.reel_diameter_m, diameter, 0.005, &what("reel diameter"));
            assert_close(reel.core_pressure_pa, pressure, 0.005, &what("core pressure"));
            assert_close(reel.end_tension_n, tension, 0.005, &what("end tension"));
            assert_close(reel.moisture_mass_frac, moisture, 0.01, &what("moisture"));
            assert!(reel.splices_m.is_empty(), "no splices");
            assert_eq!(reel.pieces.len(), 1);
            assert!(!reel.scrapped);
        }
        // the start-up scrap goes exactly, no margin: 10 m anode, 10.1 m cathode
        let scrap = if line == Line::Anode { 10.0 } else { 10.1 };
        assert!((out.reels[0].discarded_length_m - scrap).abs() < 1e-9);
        assert!((out.reels[0].length_m - (duration - scrap)).abs() < 1e-9, "{}", out.reels[0].length_m);
        assert!((out.reels[0].pieces[0].coating_start_m - 10.0).abs() < 1e-9);
        let initial = if line == Line::Anode { "A" } else { "C" };
        assert_eq!(out.reels[3].reel_id, format!("B1-{initial}-L3"));
        assert!((d - duration).abs() < 1e-6);
        assert_eq!(sink.samples.len(), samples);
        let last = sink.samples.last().unwrap();
        assert_eq!(last.stage_time_s, d);
        assert!((last.lanes[0].wound_length_m - out.reels[0].length_m).abs() < 1e-12);
        assert!((last.lanes[0].core_pressure_pa - out.reels[0].core_pressure_pa).abs() < 1e-6);
        assert_eq!(res.splice_stops, 0);
        assert!(res.alarms.is_empty(), "{:?}", res.alarms);
        assert!(res.accepted());
        // the integrated core pressure equals the closed form for a constant thickness
        let t_e = if line == Line::Anode { 177.53e-6 } else { 141.82e-6 };
        let w = if line == Line::Anode { 0.063 } else { 0.061 };
        let closed = core_pressure_pa(15.0, 0.3, w, t_e, 0.152, out.reels[0].reel_diameter_m);
        assert!((out.reels[0].core_pressure_pa / closed - 1.0).abs() < 1e-9);
    }
}

#[test]
fn nothing_is_wound_during_the_start_up_scrap() {
    let (_, _, sink, _) = run(
        Line::Cathode,
        &RewindingParams::cathode(),
        inspect(Line::Cathode, calendered_with_length(Line::Cathode, 40.0)),
    );
    // 0, 2, … 10 s lie in the first 10.1 m: nothing wound; then 1 m/s
    assert!(sink.samples.iter().take(6).all(|s| s.lanes[0].wound_length_m == 0.0));
    assert!((sink.samples[6].lanes[0].wound_length_m - 1.9).abs() < 1e-9);
    let d = &sink.samples[0].lanes[0].reel_diameter_m;
    assert_eq!(d.true_value, 0.152);
    assert!((sink.samples[0].lanes[0].web_tension_n.value() - 15.0).abs() < 1e-12);
    // the diameter grows monotonically and the tension tapers off
    for w in sink.samples.windows(2) {
        assert!(w[1].lanes[0].reel_diameter_m.true_value >= w[0].lanes[0].reel_diameter_m.true_value);
        assert!(w[1].lanes[0].web_tension_n.true_value <= w[0].lanes[0].web_tension_n.true_value);
        assert!(w[1].lanes[0].core_pressure_pa >= w[0].lanes[0].core_pressure_pa);
    }
}

#[test]
fn reel_positions_map_back_to_coating_positions() {
    let (out, _, _, _) =
        run(Line::Cathode, &RewindingParams::cathode(), inspect(Line::Cathode, calendered(Line::Cathode)));
    let reel = &out.reels[2];
    let ls = out.inspected.slit.electrode.length_scale;
    assert_eq!(ls, 1.01);
    assert!((reel.coating_position_m(0.0, ls).unwrap() - 10.0).abs() < 1e-9);
    assert!((reel.coating_position_m(101.0, ls).unwrap() - 110.0).abs() < 1e-9);
    let end = reel.coating_position_m(reel.length_m, ls).unwrap();
    assert!((end - 1484.4).abs() < 1e-6, "{end}");
    assert_eq!(reel.coating_position_m(reel.length_m + 1.0, ls), None);
}

#[test]
fn a_rejected_run_mid_roll_is_cut_out_with_margins_and_spliced() {
    let line = Line::Anode;
    let mut input = inspect(line, calendered(line));
    // lane 3: segments 1000..1010 fail, i.e. coating (= calendered) metres [500, 505)
    reject(&mut input, 3, 1000, 1010);
    let (out, res, sink, d) = run(line, &RewindingParams::anode(), input);
    let reel = &out.reels[3];
    // start-up 10 m exactly + cut-out 5 m + 2 × 0.5 m margins
    assert!((reel.discarded_length_m - 16.0).abs() < 1e-9, "{}", reel.discarded_length_m);
    assert!((reel.length_m - 1571.5).abs() < 1e-9, "{}", reel.length_m);
    assert_eq!(reel.pieces.len(), 2);
    let (a, b) = (reel.pieces[0], reel.pieces[1]);
    assert!((a.coating_start_m - 10.0).abs() < 1e-9 && (a.length_m - 489.5).abs() < 1e-9);
    assert!((b.reel_start_m - 489.5).abs() < 1e-9 && (b.coating_start_m - 505.5).abs() < 1e-9);
    assert_eq!(reel.splices_m.len(), 1);
    assert!((reel.splices_m[0] - 489.5).abs() < 1e-9);
    // the map jumps over the cut-out
    assert!((reel.coating_position_m(489.0, 1.0).unwrap() - 499.0).abs() < 1e-9);
    assert!((reel.coating_position_m(490.0, 1.0).unwrap() - 506.0).abs() < 1e-9);
    // other lanes are untouched, but the machine stopped for the splice
    assert!((out.reels[2].length_m - 1577.5).abs() < 1e-9);
    assert!(out.reels[2].splices_m.is_empty());
    assert_eq!(res.splice_stops, 1);
    assert!((d - (1587.5 + 30.0)).abs() < 1e-9);
    assert_eq!(sink.samples.len(), 810, "floor(1617.5/2) + 1 + 1");
    // a Splice defect at the splice, in lane 3, and an Info alarm
    let splice = out.inspected.slit.electrode.dry.film.defects.iter().find(|d| d.kind == DefectKind::Splice).unwrap();
    assert!((splice.md_position_m - 505.5).abs() < 1e-9);
    assert!(out.inspected.slit.lanes[3].defect_ids.contains(&splice.id));
    let alarm = res.alarms.iter().find(|a| a.code == "REW_SPLICE").unwrap();
    assert_eq!((alarm.severity, alarm.lane), (Severity::Info, Some(3)));
    assert!((alarm.stage_time_s - 505.5).abs() < 1e-9, "{}", alarm.stage_time_s);
    assert_eq!(sink.alarms.len(), 1);
    // during the stop the reel stands still
    let during: Vec<_> = sink.samples.iter().filter(|s| s.stage_time_s > 506.0 && s.stage_time_s < 535.0).collect();
    assert!(during.windows(2).all(|w| w[0].lanes[3].wound_length_m == w[1].lanes[3].wound_length_m));
    assert!(during.iter().all(|s| s.lanes[3].splices == 1));
    // the diameter is that of the wound length
    assert_close(
        reel.reel_diameter_m,
        (0.152f64.powi(2) + 4.0 / std::f64::consts::PI * 1571.5 * 177.53e-6).sqrt(),
        1e-9,
        "diameter",
    );
}

#[test]
fn a_rejected_run_at_the_roll_end_needs_no_splice() {
    let line = Line::Cathode;
    let mut input = inspect(line, calendered_with_length(line, 100.0));
    let n = input.verdicts[0].segment_ok.len();
    reject(&mut input, 0, n - 10, n);
    let (out, res, _, d) = run(line, &RewindingParams::cathode(), input);
    assert!(out.reels[0].splices_m.is_empty());
    assert!((out.reels[0].discarded_length_m - (10.1 + 5.05)).abs() < 1e-9);
    assert_eq!(res.splice_stops, 0);
    assert!((d - 101.0).abs() < 1e-9);
}

#[test]
fn legacy_keys_follow_models_7_4() {
    let (_, res, sink, _) =
        run(Line::Anode, &RewindingParams::anode(), inspect(Line::Anode, calendered_with_length(Line::Anode, 60.0)));
    let mut rec = LegacyRecord::new();
    sink.samples.last().unwrap().legacy(&mut rec);
    let keys: Vec<&str> = rec.keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["Enviromental Control", "Wound length", "Roll diameter", "Roll hardness", "Web tension"]);
    assert_eq!(rec["Enviromental Control"].as_f64().unwrap(), -40.0);
    assert!((rec["Wound length"].as_f64().unwrap() - 50.0).abs() < 1e-9);
    let mut fin = LegacyRecord::new();
    res.legacy(&mut fin);
    let props = fin["Final Properties"].as_object().unwrap();
    assert_eq!(props.len(), 5);
    assert_eq!(props["Roll hardness"], rec["Roll hardness"]);
    assert!(!res.summary().is_empty());
}

#[test]
fn same_seed_same_output_with_noise() {
    let go = |variability: bool, noise: bool| {
        let mut rngs = Rngs::new(4);
        let mut sink = VecSink::default();
        let input = inspect(Line::Cathode, calendered_with_length(Line::Cathode, 120.0));
        let r = Rewinding::run(
            &RewindingParams::cathode(),
            input,
            &mut (),
            &mut rngs.ctx_with(Line::Cathode, variability, noise),
            &mut sink,
        );
        (r.output, serde_json::to_string(&sink.samples).unwrap())
    };
    assert_eq!(go(true, true), go(true, true));
    let (a, _) = go(true, true);
    let (b, _) = go(true, false);
    assert_eq!(a.reels, b.reels, "sensor noise does not change the reels");
    let (c, _) = go(false, false);
    assert_ne!(a.reels[0].core_pressure_pa, c.reels[0].core_pressure_pa, "tension drift changes the hardness");
    assert_eq!(a.reels[0].length_m, c.reels[0].length_m);
}

#[test]
fn a_wandering_edge_telescopes_the_reel() {
    // a 200 µm edge wander against a 100 µm limit: telescoping alarms, and beyond 300 µm a scrapped reel
    let p = RewindingParams { edge_guide_sigma_m: 2e-4, telescoping_limit_m: 1e-4, ..RewindingParams::cathode() };
    let mut rngs = Rngs::new(2);
    let mut sink = VecSink::default();
    let input = inspect(Line::Cathode, calendered_with_length(Line::Cathode, 300.0));
    let r = Rewinding::run(&p, input, &mut (), &mut rngs.ctx_with(Line::Cathode, true, false), &mut sink);
    assert!(r.result.alarms.iter().any(|a| a.code == "REW_TELESCOPING" && a.severity == Severity::Alarm));
    assert!(r.output.reels.iter().any(|reel| reel.scrapped));
    assert!(!r.result.accepted());
}

#[test]
fn every_field_is_range_checked() {
    /// (field, setter, bad value, expected min, expected max)
    type Case = (&'static str, fn(&mut RewindingParams, f64), f64, Option<f64>, Option<f64>);
    let cases: &[Case] = &[
        ("rewinding_speed_m_s", |p, v| p.rewinding_speed_m_s = v, 0.01, Some(0.05), Some(5.0)),
        ("rewinding_speed_m_s", |p, v| p.rewinding_speed_m_s = v, 5.5, Some(0.05), Some(5.0)),
        ("core_diameter_m", |p, v| p.core_diameter_m = v, 0.01, Some(0.02), Some(1.0)),
        ("core_diameter_m", |p, v| p.core_diameter_m = v, 1.5, Some(0.02), Some(1.0)),
        ("initial_tension_n", |p, v| p.initial_tension_n = v, 0.0, Some(0.0), Some(500.0)),
        ("initial_tension_n", |p, v| p.initial_tension_n = v, 501.0, Some(0.0), Some(500.0)),
        ("taper_frac", |p, v| p.taper_frac = v, 0.95, Some(0.0), Some(0.9)),
        ("taper_frac", |p, v| p.taper_frac = v, -0.1, Some(0.0), Some(0.9)),
        ("tension_sigma_frac", |p, v| p.tension_sigma_frac = v, -0.01, Some(0.0), None),
        ("tension_window_frac", |p, v| p.tension_window_frac = v, -0.2, Some(0.0), None),
        ("splice_time_s", |p, v| p.splice_time_s = v, -1.0, Some(0.0), None),
        ("splice_margin_m", |p, v| p.splice_margin_m = v, -0.5, Some(0.0), None),
        ("min_piece_length_m", |p, v| p.min_piece_length_m = v, f64::NAN, Some(0.0), None),
        ("edge_guide_sigma_m", |p, v| p.edge_guide_sigma_m = v, -1e-5, Some(0.0), None),
        ("telescoping_limit_m", |p, v| p.telescoping_limit_m = v, -1e-4, Some(0.0), None),
        ("max_reel_length_m", |p, v| p.max_reel_length_m = v, -1.0, Some(0.0), None),
        ("sample_interval_s", |p, v| p.sample_interval_s = v, 0.0, Some(0.0), Some(600.0)),
        ("dew_point_degc", |p, v| p.dew_point_degc = v, -90.0, Some(-80.0), Some(20.0)),
        ("dew_point_degc", |p, v| p.dew_point_degc = v, 25.0, Some(-80.0), Some(20.0)),
        ("moisture_coeff_per_pa", |p, v| p.moisture_coeff_per_pa = v, -1e-6, Some(0.0), None),
        ("moisture_time_constant_s", |p, v| p.moisture_time_constant_s = v, -1.0, Some(0.0), None),
    ];
    for &(field, set, value, min, max) in cases {
        let mut p = RewindingParams::anode();
        set(&mut p, value);
        let e = p.validate().expect_err(field);
        assert_eq!(e.field, field, "{field} = {value}");
        assert_eq!((e.min, e.max), (min, max), "{field} = {value}");
    }
    assert!(RewindingParams::anode().validate().is_ok());
    assert!(RewindingParams::cathode().validate().is_ok());
    assert_eq!(RewindingParams::default(), RewindingParams::cathode());
    assert_eq!(RewindingParams::anode().moisture_coeff_per_pa, 6e-6);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever fails: kept + discarded = input, pieces are ordered, long enough, clear of
    /// every failed segment, and there is one splice between consecutive pieces.
    #[test]
    fn cut_plans_conserve_length(
        runs in prop::collection::vec((0usize..400, 1usize..30), 0..6),
        margin in 0.0f64..2.0,
        min_piece in 0.0f64..20.0,
    ) {
        let (seg, n) = (0.505, 400usize);
        let length = 200.0;
        let mut ok = vec![true; n];
        for (start, len) in runs {
            ok[start..(start + len).min(n)].iter_mut().for_each(|o| *o = false);
        }
        let plan = plan_cuts(&ok, seg, length, margin, min_piece, 0.0);
        let kept: f64 = plan.pieces.iter().map(|(a, b)| b - a).sum();
        prop_assert!((kept + plan.discarded_length_m - length).abs() < 1e-9);
        prop_assert_eq!(plan.splices_m.len(), plan.pieces.len().saturating_sub(1));
        for w in plan.pieces.windows(2) {
            prop_assert!(w[0].1 < w[1].0);
        }
        for &(a, b) in &plan.pieces {
            prop_assert!(b - a >= min_piece - 1e-9 && a >= 0.0 && b <= length + 1e-9);
            for (k, &good) in ok.iter().enumerate() {
                let (s0, s1) = (k as f64 * seg, ((k + 1) as f64 * seg).min(length));
                if !good && s0 < length {
                    prop_assert!(b <= s0 + 1e-9 || a >= s1 - 1e-9, "piece [{a}, {b}) overlaps failed segment {k}");
                }
            }
        }
    }

    /// The reel map sends every reel position to a coating position inside a kept piece,
    /// monotonically.
    #[test]
    fn reel_map_is_monotonic(from in 40usize..150, len in 1usize..20) {
        let line = Line::Cathode;
        let mut input = inspect(line, calendered_with_length(line, 100.0));
        reject(&mut input, 1, from, (from + len).min(200));
        let (out, _, _, _) = run(line, &RewindingParams::cathode(), input);
        let reel = &out.reels[1];
        let mut last = f64::NEG_INFINITY;
        let mut x = 0.0;
        while x < reel.length_m {
            let c = reel.coating_position_m(x, 1.01).unwrap();
            prop_assert!(c > last);
            last = c;
            x += 0.37;
        }
    }
}

#[test]
fn a_long_out_of_band_tension_wrinkles_the_reel() {
    // a tension drift of σ 50 % against a ±20 % band: warnings, and runs longer than 10 m
    // become alarms with a Wrinkle defect on the reel
    let p = RewindingParams { tension_sigma_frac: 0.5, ..RewindingParams::cathode() };
    let mut rngs = Rngs::new(6);
    let mut sink = VecSink::default();
    let input = inspect(Line::Cathode, calendered_with_length(Line::Cathode, 300.0));
    let r = Rewinding::run(&p, input, &mut (), &mut rngs.ctx_with(Line::Cathode, true, false), &mut sink);
    let band: Vec<_> = r.result.alarms.iter().filter(|a| a.code == "REW_TENSION_OUT_OF_BAND").collect();
    assert!(band.iter().any(|a| a.severity == Severity::Warning));
    assert!(band.iter().any(|a| a.severity == Severity::Alarm));
    let wrinkles: Vec<_> =
        r.output.inspected.slit.electrode.dry.film.defects.iter().filter(|d| d.kind == DefectKind::Wrinkle).collect();
    assert!(!wrinkles.is_empty());
    assert!(wrinkles.iter().all(|d| d.length_m > 10.0 / 1.01 && d.origin_stage == "rewinding"));
    assert!(!r.result.accepted());
    assert!(sink.samples.iter().any(|s| s.defect_risk));
}
