//! Coating (MODELS.md §2): §15 reference numbers, sampling, the web grid, defects, coating
//! window, alarms, legacy layout, parameter validation and physical invariants.

use cellfab_model::alarm::{AlarmState, Severity};
use cellfab_model::defect::{DefectKind, DefectSeverity};
use cellfab_model::legacy::LegacyRecord;
use cellfab_model::random::{stream, StreamRng};
use cellfab_model::recipe::Recipe;
use cellfab_model::stage::{
    sample_times, Line, ResultRecord, SampleRecord, Stage, StageCtx, StageParams, StageRun, VecSink,
};
use cellfab_model::stages::coating::*;
use cellfab_model::stages::mixing::{Mixing, MixingParams, Slurry};
use cellfab_model::web::{SegmentFlags, WebGrid};
use proptest::prelude::*;

/// The default slurry of a line (deterministic mixing).
fn slurry(line: Line) -> Slurry {
    let (params, recipe) = match line {
        Line::Anode => (MixingParams::anode(), Recipe::anode()),
        _ => (MixingParams::cathode(), Recipe::cathode()),
    };
    let mut p = stream(1, &[1]);
    let mut s = stream(1, &[2]);
    let mut ctx = StageCtx {
        batch_id: 1,
        line,
        start_t_s: 0.0,
        process_rng: &mut p,
        sensor_rng: &mut s,
        stream_seed: 42,
        process_variability: false,
        sensor_noise: false,
        parallel: &cellfab_model::Sequential,
        faults: &cellfab_model::fault::NO_FAULTS,
    };
    Mixing::run(&params, recipe, &mut (), &mut ctx, &mut VecSink::default()).output
}

fn coat(
    params: &CoatingParams,
    slurry: Slurry,
    variability: bool,
    noise: bool,
    seed: u64,
) -> (StageRun<WetFilm, CoatingResult>, VecSink<CoatingSample>) {
    let line = slurry.line;
    let mut p: StreamRng = stream(seed, &[1]);
    let mut s: StreamRng = stream(seed, &[2]);
    let mut ctx = StageCtx {
        batch_id: 1,
        line,
        start_t_s: 100.0,
        process_rng: &mut p,
        sensor_rng: &mut s,
        stream_seed: 42,
        process_variability: variability,
        sensor_noise: noise,
        parallel: &cellfab_model::Sequential,
        faults: &cellfab_model::fault::NO_FAULTS,
    };
    let mut sink = VecSink::default();
    let run = Coating::run(params, slurry, &mut (), &mut ctx, &mut sink);
    (run, sink)
}

fn coat_default(line: Line) -> (StageRun<WetFilm, CoatingResult>, VecSink<CoatingSample>) {
    coat(&CoatingParams::for_line(line), slurry(line), false, false, 1)
}

/// `value` matches a §15 `reference` within the relative tolerance, or rounds to the
/// reference at the precision it is quoted with.
fn assert_ref(what: &str, value: f64, reference: f64, tol: f64, quoted_step: f64) {
    let rel = (value / reference - 1.0).abs();
    let rounds_to = (value - reference).abs() <= 0.5 * quoted_step + 1e-15;
    assert!(rel <= tol || rounds_to, "{what}: {value} vs reference {reference} (rel {rel:.4}, tol {tol})");
}

const A: f64 = 0.005;
const B: f64 = 0.01;

#[test]
fn anode_reproduces_models_15() {
    let (run, sink) = coat_default(Line::Anode);
    let r = &run.result;
    assert_ref("wet thickness", r.nominal_wet_thickness_m * 1e6, 184.13, A, 0.01);
    assert_ref("areal mass", r.nominal_areal_mass_kg_m2, 0.12603, A, 1e-5);
    assert_ref("shear rate", r.shear_rate_per_s, 1333.0, A, 1.0);
    assert_ref("die viscosity", r.die_viscosity_pa_s, 0.513, B, 0.001);
    assert_ref("capillary number", r.capillary_number, 4.1, B, 0.1);
    assert_ref("min wet thickness", r.min_wet_thickness_m * 1e6, 100.0, A, 0.1);
    assert_ref("window margin", r.min_window_margin, 1.84, B, 0.01);
    assert_ref("roll length", r.roll_length_m, 1587.5, A, 0.1);
    assert_ref("coating duration", r.duration_s, 3968.7, A, 0.1);
    assert_ref("dry-film thickness", r.nominal_dry_thickness_m * 1e6, 115.45, A, 0.01);
    assert_eq!(run.duration_s, r.duration_s);
    assert_eq!(sink.samples.len(), 1986);
    assert_eq!(run.output.areal_mass_kg_m2.n_md, 3175);
}

#[test]
fn cathode_reproduces_models_15() {
    let (run, sink) = coat_default(Line::Cathode);
    let r = &run.result;
    assert_ref("wet thickness", r.nominal_wet_thickness_m * 1e6, 128.00, A, 0.01);
    assert_ref("areal mass", r.nominal_areal_mass_kg_m2, 0.19958, A, 1e-5);
    assert_ref("shear rate", r.shear_rate_per_s, 2000.0, A, 1.0);
    assert_ref("die viscosity", r.die_viscosity_pa_s, 0.502, B, 0.001);
    assert_ref("capillary number", r.capillary_number, 6.1, B, 0.1);
    assert_ref("min wet thickness", r.min_wet_thickness_m * 1e6, 83.3, A, 0.1);
    assert_ref("window margin", r.min_window_margin, 1.54, B, 0.01);
    assert_ref("roll length", r.roll_length_m, 1484.4, A, 0.1);
    assert_ref("coating duration", r.duration_s, 2968.8, A, 0.1);
    assert_ref("dry-film thickness", r.nominal_dry_thickness_m * 1e6, 82.96, A, 0.01);
    assert_eq!(run.duration_s, 2968.75);
    assert_eq!(sink.samples.len(), 1486);
    assert_eq!(run.output.areal_mass_kg_m2.n_md, 2969);
}

#[test]
fn samples_follow_the_web_at_line_speed() {
    let (run, sink) = coat_default(Line::Cathode);
    let times: Vec<f64> = sample_times(2968.75, 2.0).collect();
    assert_eq!(sink.samples.iter().map(|s| s.stage_time_s).collect::<Vec<_>>(), times);
    for s in &sink.samples {
        assert_eq!(s.t_s, 100.0 + s.stage_time_s);
        assert_eq!(s.position_m, 0.5 * s.stage_time_s);
        assert!(!s.defect_risk);
        assert!(s.slurry_remaining_m3 >= 0.0);
    }
    let last = sink.samples.last().unwrap();
    assert_eq!(last.position_m, run.result.roll_length_m);
    assert!(last.slurry_remaining_m3 < 1e-12);
    assert_eq!(sink.samples[0].slurry_remaining_m3, run.output.slurry.usable_volume_m3);
}

#[test]
fn deterministic_grid_holds_only_the_edge_profile() {
    for line in [Line::Anode, Line::Cathode] {
        let (run, sink) = coat_default(line);
        let film = &run.output;
        let g = &film.areal_mass_kg_m2;
        assert_eq!((g.n_cd, g.segment_length_m, g.width_m), (32, 0.5, film.coating_width_m));
        let first = g.row(0).to_vec();
        for k in 0..g.n_md {
            assert_eq!(g.row(k), &first[..], "segment {k}");
            assert!((g.row_mean(k) / film.nominal_areal_mass_kg_m2 - 1.0).abs() < 1e-12);
        }
        // heavy edges, symmetric, within the elevation a_e
        assert!(first[0] > first[16] && (first[0] - first[31]).abs() < 1e-15);
        assert!(first[0] / film.nominal_areal_mass_kg_m2 < 1.04);
        assert!(film.defects.is_empty());
        assert_eq!(run.result.agglomerate_defects + run.result.bubble_defects + run.result.streak_defects, 0);
        // the centre gauge sees the centre of the profile, slightly below nominal
        let s = &sink.samples[10];
        assert!(s.wet_thickness_m.true_value < film.nominal_wet_thickness_m);
        assert!((s.wet_thickness_m.true_value / film.nominal_wet_thickness_m - 1.0).abs() < 1e-3);
        assert!(s.uniformity_cv_frac > 0.0 && s.uniformity_cv_frac < 0.01);
        assert!(run.result.accepted && run.result.alarms.is_empty());
    }
}

#[test]
fn wet_film_and_solvent_grids_match_the_local_loading() {
    let (run, _) = coat(&CoatingParams::anode(), slurry(Line::Anode), true, false, 9);
    let f = &run.output;
    let (rho, w_s) = (f.slurry.density_kg_m3, f.slurry.solids_mass_frac);
    for ((m, h), x) in
        f.areal_mass_kg_m2.values().iter().zip(f.wet_thickness_m.values()).zip(f.solvent_mass_kg_m2.values())
    {
        assert!((h * rho * w_s - m).abs() <= 1e-12 * m);
        assert!((x - m * (1.0 - w_s) / w_s).abs() <= 1e-12 * m);
        assert!(*m > 0.0);
    }
    assert_eq!(f.segment_flags.len(), f.areal_mass_kg_m2.n_md);
    assert_eq!(f.nominal_wet_thickness_m, run.result.nominal_wet_thickness_m);
    assert_eq!(f.foil, Recipe::anode().foil.foil());
    assert_eq!((f.sides, f.line_speed_m_s, f.coating_width_m), (2, 0.4, 0.52));
}

#[test]
fn startup_scrap_flags_the_first_segments() {
    let (run, _) = coat_default(Line::Cathode);
    let flags = &run.output.segment_flags;
    let scrap: Vec<bool> = flags.iter().map(|f| f.has(SegmentFlags::STARTUP_SCRAP)).collect();
    assert!(scrap[..20].iter().all(|&s| s));
    assert!(scrap[20..].iter().all(|&s| !s));
    assert_eq!(run.result.scrap_length_m, 10.0);
    // a scrap length between segment boundaries flags the segment it starts in
    let p = CoatingParams { startup_scrap_length_m: 10.2, ..CoatingParams::cathode() };
    let (run, _) = coat(&p, slurry(Line::Cathode), false, false, 1);
    assert_eq!(run.output.segment_flags.iter().filter(|f| f.has(SegmentFlags::STARTUP_SCRAP)).count(), 21);
    let p = CoatingParams { startup_scrap_length_m: 0.0, ..CoatingParams::cathode() };
    let (run, _) = coat(&p, slurry(Line::Cathode), false, false, 1);
    assert!(run.output.segment_flags.iter().all(|f| !f.scrap()));
}

#[test]
fn process_variability_adds_drift_profile_and_defects_reproducibly() {
    let p = CoatingParams::cathode();
    let (a, a_sink) = coat(&p, slurry(Line::Cathode), true, false, 5);
    let (b, b_sink) = coat(&p, slurry(Line::Cathode), true, false, 5);
    let (c, _) = coat(&p, slurry(Line::Cathode), true, false, 6);
    assert_eq!(a.output, b.output);
    assert_eq!(a_sink.samples, b_sink.samples);
    assert_ne!(a.output.areal_mass_kg_m2, c.output.areal_mass_kg_m2);
    // sensor noise never changes the true product
    let (noisy, noisy_sink) = coat(&p, slurry(Line::Cathode), true, true, 5);
    assert_eq!(noisy.output, a.output);
    for (q, n) in a_sink.samples.iter().zip(&noisy_sink.samples) {
        assert_eq!(q.wet_thickness_m.true_value, n.wet_thickness_m.true_value);
    }

    let film = &a.output;
    let g = &film.areal_mass_kg_m2;
    let nominal = film.nominal_areal_mass_kg_m2;
    let spread = a.result.areal_mass_std_kg_m2 / nominal;
    assert!(spread > 0.003 && spread < 0.02, "relative spread {spread}");
    assert!((g.mean() / nominal - 1.0).abs() < 0.01);
    // defects: unique ids, inside their segment and the coated width, plausible count
    let mut ids: Vec<u32> = film.defects.iter().map(|d| d.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), film.defects.len());
    let expected = 0.005 * (film.slurry.agglomerate_frac / 0.03).powi(2) * a.result.coated_area_m2;
    let agg = a.result.agglomerate_defects as f64;
    assert!((agg - expected).abs() < 5.0 * expected.sqrt() + 1.0, "{agg} agglomerates, expected {expected}");
    for d in &film.defects {
        assert!(d.md_position_m >= 0.0 && d.md_position_m <= film.roll_length_m);
        assert!(d.cd_position_m >= 0.0 && d.cd_position_m <= film.coating_width_m);
        assert_eq!(d.origin_stage, "coating");
        let major = match d.kind {
            DefectKind::Agglomerate => d.size_m >= 100e-6,
            DefectKind::Bubble => d.size_m >= 200e-6,
            _ => unreachable!("no streaks inside the window"),
        };
        assert_eq!(d.severity == DefectSeverity::Major, major);
    }
    let in_segments: u32 = a_sink.samples.iter().map(|s| s.defects_in_segment).max().unwrap_or(0);
    assert!(in_segments <= film.defects.len() as u32);
}

#[test]
fn a_broken_coating_window_makes_streaks_but_keeps_the_mass() {
    // a wide gap: h_min = H/3 = 667 µm ≫ h_w = 128 µm, margin ≈ 0.19
    let p = CoatingParams { gap_height_m: 2e-3, ..CoatingParams::cathode() };
    for variability in [false, true] {
        let (run, sink) = coat(&p, slurry(Line::Cathode), variability, false, 3);
        let r = &run.result;
        assert!(r.min_window_margin < 1.0);
        let low = r.alarms.iter().find(|a| a.code == "COAT_LOW_FLOW_LIMIT").unwrap();
        assert_eq!((low.severity, low.state, low.stage_time_s), (Severity::Alarm, AlarmState::Raised, 0.0));
        assert!(!r.accepted);
        assert!(sink.samples.iter().all(|s| s.defect_risk));
        let film = &run.output;
        let g = &film.areal_mass_kg_m2;
        let zero_cells = ((1.0 - r.min_window_margin) * 32.0).round() as usize;
        for k in 0..g.n_md {
            assert_eq!(g.row(k).iter().filter(|&&m| m == 0.0).count(), zero_cells);
            assert!(film.segment_flags[k].has(SegmentFlags::STREAK));
        }
        assert_eq!(r.streak_defects as usize, g.n_md);
        if !variability {
            assert!((g.mean() / film.nominal_areal_mass_kg_m2 - 1.0).abs() < 1e-9, "mass conserved");
        }
    }
}

#[test]
fn window_warning_bead_overflow_and_unflowable_slurry_raise_their_alarms() {
    // margin just above 1: H/3 = 128/1.05 µm
    let p = CoatingParams { gap_height_m: 3.0 * 128e-6 / 1.05, ..CoatingParams::cathode() };
    let (run, sink) = coat(&p, slurry(Line::Cathode), false, false, 1);
    let w = run.result.alarms.iter().find(|a| a.code == "COAT_WINDOW_MARGIN_LOW").unwrap();
    assert_eq!(w.severity, Severity::Warning);
    assert!(run.result.accepted && run.result.defect_risk);
    assert!(sink.samples.iter().all(|s| s.defect_risk));

    // gap below the wet film
    let p = CoatingParams { gap_height_m: 1e-4, ..CoatingParams::cathode() };
    let (run, _) = coat(&p, slurry(Line::Cathode), false, false, 1);
    let a = run.result.alarms.iter().find(|a| a.code == "COAT_BEAD_OVERFLOW").unwrap();
    assert_eq!((a.severity, a.threshold), (Severity::Alarm, 1e-4));
    assert!(!run.result.accepted);

    let mut s = slurry(Line::Anode);
    s.not_flowable = true;
    let (run, sink) = coat(&CoatingParams::anode(), s, false, false, 1);
    let c = run.result.alarms.iter().find(|a| a.code == "COAT_SLURRY_NOT_FLOWABLE").unwrap();
    assert_eq!((c.severity, c.t_s), (Severity::Critical, 100.0));
    assert_eq!(sink.alarms[0].code, "COAT_SLURRY_NOT_FLOWABLE");
    assert!(!run.result.accepted);
}

#[test]
fn loading_drift_raises_segment_alarms_at_their_position() {
    let p = CoatingParams { loading_md_sigma_frac: 0.03, loading_md_correlation_m: 5.0, ..CoatingParams::cathode() };
    let (run, sink) = coat(&p, slurry(Line::Cathode), true, false, 11);
    let events: Vec<_> = run.result.alarms.iter().filter(|a| a.code == "COAT_LOADING_DEVIATION").collect();
    assert!(events.iter().any(|a| a.severity == Severity::Warning && a.state == AlarmState::Raised));
    assert!(events.iter().any(|a| a.severity == Severity::Alarm && a.state == AlarmState::Raised));
    for (i, a) in events.iter().enumerate() {
        let x = a.position_m.unwrap();
        assert!((x - 0.5 * (a.stage_time_s)).abs() < 1e-9, "event at the segment start");
        match a.state {
            // a raise crosses its threshold, or steps down from Alarm inside the warning's 2 % band
            AlarmState::Raised => assert!(
                a.value > a.threshold
                    || (a.value >= 0.98 * a.threshold
                        && i > 0
                        && events[i - 1].t_s == a.t_s
                        && events[i - 1].severity > a.severity),
                "{a:?}"
            ),
            // a clear either falls below the band or hands over to the Alarm level (escalation)
            AlarmState::Cleared => assert!(
                a.value < a.threshold || events.get(i + 1).is_some_and(|n| n.t_s == a.t_s && n.severity > a.severity),
                "{a:?}"
            ),
        }
    }
    assert_eq!(sink.alarms, run.result.alarms, "every event reached the sink");
    // events and samples interleave in time order
    assert!(sink.alarms.windows(2).all(|w| w[0].t_s <= w[1].t_s));
    assert!(!run.result.accepted);
}

#[test]
fn legacy_layout_uses_the_seed_keys_in_order() {
    let (run, sink) = coat_default(Line::Anode);
    let s = &sink.samples[3];
    let mut out = LegacyRecord::new();
    s.legacy(&mut out);
    let keys: Vec<&str> = out.keys().map(String::as_str).collect();
    let expected = vec![
        "shear_rate_1_per_s",
        "viscosity_Pa_s",
        "wet_thickness_m",
        "dry_thickness_m",
        "defect_risk",
        "uniformity_std",
    ];
    assert_eq!(keys, expected);
    assert_eq!(out["wet_thickness_m"].as_f64().unwrap(), s.wet_thickness_m.value());
    assert_eq!(out["defect_risk"].as_bool(), Some(false));
    let mut fin = LegacyRecord::new();
    run.result.legacy(&mut fin);
    assert_eq!(fin.keys().collect::<Vec<_>>(), vec!["Final Properties"]);
    let props: Vec<&str> = fin["Final Properties"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(props, expected);
    assert!(run.result.accepted());
    assert!(!run.result.summary().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Parameter validation
// ---------------------------------------------------------------------------------------------

fn with(field: &str, value: serde_json::Value) -> CoatingParams {
    let mut j = serde_json::to_value(CoatingParams::cathode()).unwrap();
    j[field] = value;
    serde_json::from_value(j).unwrap()
}

#[test]
fn defaults_are_valid() {
    CoatingParams::anode().validate().unwrap();
    CoatingParams::cathode().validate().unwrap();
    assert_eq!(CoatingParams::default(), CoatingParams::cathode());
}

#[test]
fn every_field_is_range_checked() {
    let table: &[(&str, &[serde_json::Value], f64, f64)] = &[
        ("coating_speed_m_s", &[0.009.into(), 3.1.into()], 0.01, 3.0),
        ("flow_rate_m3_s", &[0.0.into(), (-1e-5).into(), 0.011.into()], 0.0, 1e-2),
        ("gap_height_m", &[1e-5.into(), 2.1e-3.into()], 2e-5, 2e-3),
        ("coating_width_m", &[0.04.into(), 2.1.into()], 0.05, 2.0),
        ("sides", &[0.into(), 3.into()], 1.0, 2.0),
        ("slurry_temperature_degc", &[4.0.into(), 61.0.into()], 5.0, 60.0),
        ("startup_scrap_length_m", &[(-1.0).into(), 501.0.into()], 0.0, 500.0),
        ("loading_md_sigma_frac", &[(-0.01).into(), 0.21.into()], 0.0, 0.2),
        ("loading_md_correlation_m", &[0.0.into(), 1.1e4.into()], 0.0, 1e4),
        ("loading_cd_sigma_frac", &[(-0.01).into(), 0.21.into()], 0.0, 0.2),
        ("edge_elevation_frac", &[(-0.01).into(), 0.51.into()], 0.0, 0.5),
        ("edge_elevation_length_m", &[0.0.into(), 0.051.into()], 0.0, 0.05),
        ("agglomerate_defect_rate_per_m2", &[(-1.0).into(), 101.0.into()], 0.0, 100.0),
        ("bubble_defect_rate_per_m2", &[(-1.0).into(), 1.1e4.into()], 0.0, 1e4),
        ("segment_length_m", &[0.04.into(), 11.0.into()], 0.05, 10.0),
        ("cd_cells", &[0.into(), 257.into()], 1.0, 256.0),
        ("sample_interval_s", &[0.0.into(), 601.0.into()], 0.0, 600.0),
    ];
    for (field, bad, min, max) in table {
        for v in bad.iter() {
            let e = with(field, v.clone()).validate().expect_err(field);
            assert_eq!(&e.field, field, "{field} = {v}: {e}");
            assert_eq!((e.min, e.max), (Some(*min), Some(*max)), "{field} = {v}: {e}");
        }
    }
}

#[test]
fn wet_thickness_cross_rule_names_the_flow() {
    let p = CoatingParams { flow_rate_m3_s: 1e-2, ..CoatingParams::cathode() }; // 40 mm wet
    let e = p.validate().unwrap_err();
    assert_eq!(e.field, "flow_rate_m3_s");
    assert_eq!(e.rule, "wet thickness implied by flow, width and speed is outside 10 µm–2 mm");
    assert_eq!((e.min, e.max, e.unit.as_str()), (Some(1e-5), Some(2e-3), "m"));
    assert!((e.value - 0.04).abs() < 1e-12);
    let p = CoatingParams { flow_rate_m3_s: 1e-6, coating_speed_m_s: 3.0, ..CoatingParams::cathode() };
    assert_eq!(p.validate().unwrap_err().field, "flow_rate_m3_s");
    let mut j = serde_json::to_value(CoatingParams::cathode()).unwrap();
    j["web_speed"] = 1.0.into();
    assert!(serde_json::from_value::<CoatingParams>(j).is_err());
}

// ---------------------------------------------------------------------------------------------
// Physical invariants over random valid parameters
// ---------------------------------------------------------------------------------------------

prop_compose! {
    /// Valid coater settings with a slurry volume that keeps the run between 50 and 1 000 s.
    fn valid_run()(
        anode in any::<bool>(),
        speed in 0.05f64..3.0,
        wet in 2e-5f64..1e-3,
        width in 0.05f64..2.0,
        gap in 2e-5f64..2e-3,
        sides in 1u32..=2,
        temperature in 5.0f64..60.0,
        scrap in 0.0f64..50.0,
        edge in 0.0f64..0.5,
        edge_len in 1e-4f64..0.05,
        seg in 0.2f64..10.0,
        cd in 1u32..=64,
        duration in 50.0f64..1000.0,
        interval in 0.5f64..60.0,
    ) -> (CoatingParams, Slurry) {
        let line = if anode { Line::Anode } else { Line::Cathode };
        let p = CoatingParams {
            coating_speed_m_s: speed,
            flow_rate_m3_s: wet * width * speed,
            gap_height_m: gap,
            coating_width_m: width,
            sides,
            slurry_temperature_degc: temperature,
            startup_scrap_length_m: scrap,
            edge_elevation_frac: edge,
            edge_elevation_length_m: edge_len,
            segment_length_m: seg,
            cd_cells: cd,
            sample_interval_s: interval,
            ..CoatingParams::for_line(line)
        };
        let mut s = slurry(line);
        s.usable_volume_m3 = duration * sides as f64 * p.flow_rate_m3_s;
        (p, s)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn deterministic_grid_conserves_the_nominal_areal_mass((p, s) in valid_run()) {
        prop_assert!(p.validate().is_ok(), "{:?}", p.validate());
        let (run, sink) = coat(&p, s, false, false, 1);
        let film = &run.output;
        let g = &film.areal_mass_kg_m2;
        prop_assert_eq!(g.n_md, WebGrid::segments_for(film.roll_length_m, p.segment_length_m));
        prop_assert_eq!(g.n_cd, p.cd_cells as usize);
        prop_assert!((g.mean() / film.nominal_areal_mass_kg_m2 - 1.0).abs() < 1e-6, "mean {}", g.mean());
        for k in 0..g.n_md {
            prop_assert!((g.row_mean(k) / film.nominal_areal_mass_kg_m2 - 1.0).abs() < 1e-6);
        }
        prop_assert!(film.wet_thickness_m.values().iter().all(|&h| h >= 0.0));
        prop_assert!(film.wet_thickness_m.mean() > 0.0);
        prop_assert!(film.nominal_wet_thickness_m > 0.0 && film.nominal_dry_thickness_m > 0.0);
        prop_assert_eq!(sink.samples.len(), sample_times(run.duration_s, p.sample_interval_s).count());
        for smp in &sink.samples {
            prop_assert!(smp.dry_thickness_m > 0.0 && smp.wet_thickness_m.true_value >= 0.0);
            prop_assert!(smp.areal_mass_kg_m2 > 0.0);
        }
    }

    #[test]
    fn faster_coating_at_fixed_flow_gives_a_thinner_film(
        (p, s) in valid_run(),
        faster in 1.01f64..3.0,
    ) {
        let fast = CoatingParams { coating_speed_m_s: (p.coating_speed_m_s * faster).min(3.0), ..p.clone() };
        prop_assume!(fast.coating_speed_m_s > p.coating_speed_m_s && fast.validate().is_ok());
        prop_assert!(
            wet_thickness_m(fast.flow_rate_m3_s, fast.coating_width_m, fast.coating_speed_m_s)
                < wet_thickness_m(p.flow_rate_m3_s, p.coating_width_m, p.coating_speed_m_s)
        );
        let (slow_run, _) = coat(&p, s.clone(), false, false, 1);
        let (fast_run, _) = coat(&fast, s, false, false, 1);
        prop_assert!(fast_run.result.nominal_wet_thickness_m < slow_run.result.nominal_wet_thickness_m);
        prop_assert!(fast_run.result.nominal_areal_mass_kg_m2 < slow_run.result.nominal_areal_mass_kg_m2);
        prop_assert!(fast_run.output.wet_thickness_m.mean() < slow_run.output.wet_thickness_m.mean());
        // same slurry, same flow: same duration, longer roll
        prop_assert!((fast_run.duration_s / slow_run.duration_s - 1.0).abs() < 1e-12);
        prop_assert!(fast_run.result.roll_length_m > slow_run.result.roll_length_m);
    }

    #[test]
    fn variability_keeps_every_thickness_positive((p, s) in valid_run(), seed in 0u64..1000) {
        let (run, _) = coat(&p, s, true, true, seed);
        let film = &run.output;
        prop_assert!(film.areal_mass_kg_m2.values().iter().all(|&m| m >= 0.0 && m.is_finite()));
        prop_assert!(film.wet_thickness_m.mean() > 0.0);
        let mut ids: Vec<u32> = film.defects.iter().map(|d| d.id).collect();
        ids.sort_unstable();
        ids.dedup();
        prop_assert_eq!(ids.len(), film.defects.len());
    }
}
