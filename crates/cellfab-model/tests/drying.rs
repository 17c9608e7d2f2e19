//! Drying (MODELS.md §3): §15 reference numbers, the §3.3 sensitivity checks, sample counts,
//! alarms and flags, the legacy layout, parameter ranges and physical invariants.

mod common;

use cellfab_model::alarm::AlarmState;
use cellfab_model::legacy::LegacyRecord;
use cellfab_model::stage::{ResultRecord, SampleRecord, StageParams, StageRun, VecSink};
use cellfab_model::stages::coating::WetFilm;
use cellfab_model::stages::drying::{DryElectrode, DryerZone, Drying, DryingParams, DryingResult, DryingSample};
use cellfab_model::web::SegmentFlags;
use cellfab_model::{Line, Severity, Stage};
use common::*;
use proptest::prelude::*;

fn run(
    params: &DryingParams,
    film: WetFilm,
    noise: bool,
) -> (StageRun<DryElectrode, DryingResult>, VecSink<DryingSample>) {
    let line = film.slurry.line;
    let (mut p, mut s) = streams(1);
    let mut ctx = ctx(line, &mut p, &mut s, noise);
    let mut sink = VecSink::default();
    let run = Drying::run(params, film, &mut (), &mut ctx, &mut sink);
    (run, sink)
}

fn params(line: Line) -> DryingParams {
    if line == Line::Anode {
        DryingParams::anode()
    } else {
        DryingParams::cathode()
    }
}

struct Reference {
    dry_point_m: f64,
    residence_s: f64,
    residual: f64,
    bmi: f64,
    exit_degc: f64,
    h_dry_um: f64,
    heater_kw: f64,
    energy_kwh: f64,
    samples: usize,
}

fn check_reference(line: Line, r: Reference) {
    let (run, sink) = run(&params(line), nominal_wet_film(line), false);
    let res = &run.result;
    assert_rel("dry point", res.dry_point_m.expect("dry"), r.dry_point_m, TOL_B);
    assert_rel("residence", res.residence_time_s, r.residence_s, TOL_A);
    assert_rel("exit residual", res.residual_solvent_frac, r.residual, TOL_B);
    assert_rel("BMI", res.binder_migration_index, r.bmi, TOL_B);
    assert_rel("exit web temperature", res.exit_temperature_degc, r.exit_degc, TOL_B);
    assert_rel("dry-film thickness", res.dry_thickness_m * 1e6, r.h_dry_um, TOL_A);
    assert_rel("heater power", res.heater_power_w / 1e3, r.heater_kw, TOL_B);
    assert_rel("energy per batch", res.energy_j / 3.6e6, r.energy_kwh, TOL_B);
    assert_eq!(sink.samples.len(), r.samples, "sample count (MODELS.md §0.2)");
    assert!(res.accepted && res.alarms.is_empty(), "nominal run raises no alarm: {:?}", res.alarms);
    assert_eq!(run.duration_s, res.duration_s);

    // every grid cell left dry, at ε_dry and h_dry, without flags
    let out = &run.output;
    let eps = out.film.slurry.recipe.dry_film_porosity_frac;
    for (i, (&w, &h)) in out.residual_solvent_frac.values().iter().zip(out.dry_thickness_m.values()).enumerate() {
        assert_rel(&format!("cell {i} residual"), w, r.residual, TOL_B);
        assert_rel(&format!("cell {i} h_dry"), h * 1e6, r.h_dry_um, TOL_A);
    }
    assert!(out.dry_porosity_frac.values().iter().all(|&e| e == eps));
    assert!(out.binder_migration_index.values().iter().all(|&b| (b / r.bmi - 1.0).abs() < TOL_B));
    assert!(out.film.segment_flags.iter().all(|f| !f.has(SegmentFlags::WET) && !f.has(SegmentFlags::BLISTER_RISK)));

    // samples: exit position absent while the dryer fills, then v·t − L_d up to the roll length
    let fill = sink.samples.iter().filter(|s| s.exit_position_m.is_none()).count();
    let fill_expected = (0..).map(|k| k as f64 * 2.0).take_while(|&t| t < r.residence_s).count();
    assert_eq!(fill, fill_expected);
    let last = sink.samples.last().unwrap();
    assert_eq!(last.stage_time_s, run.duration_s);
    assert_rel("last exit position", last.exit_position_m.unwrap(), out.film.roll_length_m, 1e-12);
    assert_eq!(sink.samples[0].evaporation_rate_kg_s, 0.0);
    let mid = &sink.samples[sink.samples.len() / 2];
    assert_rel("steady evaporation", mid.evaporation_rate_kg_s, res.evaporation_rate_kg_s, 1e-9);
    assert_rel("steady heater power", mid.heater_power_w, res.heater_power_w, 1e-9);
    assert_eq!(last.evaporation_rate_kg_s, 0.0, "the dryer is empty at the end");
    assert!(sink.samples.iter().all(|s| !s.defect_risk));
}

#[test]
fn anode_reproduces_reference_numbers() {
    check_reference(
        Line::Anode,
        Reference {
            dry_point_m: 31.3,
            residence_s: 100.0,
            residual: 5.0e-4,
            bmi: 0.884,
            exit_degc: 100.0,
            h_dry_um: 115.45,
            heater_kw: 320.9,
            energy_kwh: 362.6,
            samples: 2036,
        },
    );
}

#[test]
fn cathode_reproduces_reference_numbers() {
    check_reference(
        Line::Cathode,
        Reference {
            dry_point_m: 22.2,
            residence_s: 80.0,
            residual: 2.0e-4,
            bmi: 0.855,
            exit_degc: 110.0,
            h_dry_um: 82.96,
            heater_kw: 255.8,
            energy_kwh: 216.6,
            samples: 1526,
        },
    );
}

#[test]
fn cathode_peak_film_temperature_and_recovery_energy() {
    let (run, _) = run(&DryingParams::cathode(), nominal_wet_film(Line::Cathode), false);
    let res = &run.result;
    assert_rel("peak film temperature", res.peak_film_temperature_degc, 129.9, TOL_B);
    // MODELS.md §14: NMP recovery 38.1 kWh per batch; solvent = sides·W·L·(X₀ − X_exit)
    assert_rel("recovery energy", res.recovery_energy_j / 3.6e6, 38.1, TOL_B);
    let film = &run.output.film;
    let x0 = film.solvent_mass_kg_m2.get(0, 0);
    let expected = 2.0 * film.coating_width_m * film.roll_length_m * (x0 - res.solvent_mass_exit_kg_m2);
    assert_rel("solvent evaporated", res.solvent_evaporated_kg, expected, 1e-9);
    // drying curve: 41 points from X₀ at the inlet to X_exit at the outlet, never rising
    let c = &res.drying_curve;
    assert_eq!(c.position_m.len(), 41);
    assert_eq!(c.solvent_mass_kg_m2[0], x0);
    assert_eq!(c.film_temperature_degc[0], 25.0);
    assert_eq!(*c.position_m.last().unwrap(), 40.0);
    assert_rel("curve end", *c.solvent_mass_kg_m2.last().unwrap(), res.solvent_mass_exit_kg_m2, 1e-12);
    assert!(c.solvent_mass_kg_m2.windows(2).all(|w| w[1] <= w[0]));
}

#[test]
fn anode_needs_no_recovery_energy() {
    let (run, _) = run(&DryingParams::anode(), wet_film_of_length(Line::Anode, 20.0), false);
    assert_eq!(run.result.recovery_energy_j, 0.0);
    assert!(run.result.solvent_evaporated_kg > 0.0);
}

#[test]
fn cold_cathode_dryer_leaves_the_film_wet() {
    // MODELS.md §3.3: cathode zones 2–4 at 70 °C leave w_res ≈ 0.17 (not dry)
    let mut p = DryingParams::cathode();
    for z in &mut p.zones[1..] {
        z.air_temperature_degc = 70.0;
    }
    let (run, sink) = run(&p, wet_film_of_length(Line::Cathode, 60.0), false);
    let res = &run.result;
    assert_rel("residual", res.residual_solvent_frac, 0.17, TOL_C);
    assert!(res.dry_point_m.is_none());
    assert!(!res.accepted);
    let raised = |code: &str| res.alarms.iter().any(|a| a.code == code && a.state == AlarmState::Raised);
    assert!(raised("DRY_NOT_DRY") && raised("DRY_RESIDUAL_SOLVENT_HIGH"));
    assert!(run.output.film.segment_flags.iter().all(|f| f.has(SegmentFlags::WET)));
    assert_eq!(res.wet_segments as usize, run.output.film.segment_flags.len());
    // the alarms go to the sink as they happen, the first one when the first segment exits
    assert_eq!(sink.alarms, res.alarms);
    assert_eq!(sink.alarms[0].stage_time_s, 80.0);
    assert_eq!(sink.alarms[0].position_m, Some(0.0));
    // the 0.033 kg/m² left sit inside the pores (X_pore 0.039 kg/m²): the film already has its
    // dry thickness, and the samples show the risk
    let s = sink.samples.last().unwrap();
    assert_rel("remaining solvent", s.solvent_mass_exit_kg_m2.true_value, 0.17 * 0.19958, TOL_C);
    assert_eq!(s.exit_coating_thickness_m, s.dry_thickness_m);
    assert!(s.defect_risk && s.dry_point_m.is_none());
}

#[test]
fn hot_anode_dryer_migrates_binder() {
    // MODELS.md §3.3: anode zones 2–3 at 140 °C give BMI ≈ 1.18
    let mut p = DryingParams::anode();
    p.zones[1].air_temperature_degc = 140.0;
    p.zones[2].air_temperature_degc = 140.0;
    let (run, _) = run(&p, wet_film_of_length(Line::Anode, 30.0), false);
    let res = &run.result;
    assert_rel("BMI", res.binder_migration_index, 1.18, TOL_B);
    assert_rel("worst BMI", res.worst_binder_migration_index, 1.18, TOL_B);
    let bmi_alarm = res.alarms.iter().find(|a| a.code == "DRY_BINDER_MIGRATION").expect("BMI alarm");
    assert_eq!(bmi_alarm.severity, Severity::Alarm);
    // film reaches ≈ 139 °C, above the 130 °C binder limit of the anode
    assert!(res.alarms.iter().any(|a| a.code == "DRY_FILM_OVERTEMPERATURE" && a.severity == Severity::Warning));
    assert!(run.output.film.segment_flags.iter().all(|f| f.has(SegmentFlags::BLISTER_RISK)));
    assert!(run.output.binder_migration_index.values().iter().all(|&b| b > 1.0));
    assert!(!res.accepted);
    // still dry
    assert!(res.dry_point_m.is_some());
}

#[test]
fn hotter_air_dries_earlier() {
    let film = wet_film_of_length(Line::Cathode, 10.0);
    let (base, _) = run(&DryingParams::cathode(), film.clone(), false);
    let mut hot = DryingParams::cathode();
    hot.zones.iter_mut().for_each(|z| z.air_temperature_degc += 10.0);
    let (hot, _) = run(&hot, film, false);
    assert!(hot.result.dry_point_m.unwrap() < base.result.dry_point_m.unwrap());
    assert!(hot.result.binder_migration_index > base.result.binder_migration_index);
}

#[test]
fn heavier_cells_dry_later_and_keep_their_own_thickness() {
    let mut film = wet_film_of_length(Line::Anode, 5.0);
    let n_md = film.areal_mass_kg_m2.n_md;
    for md in 0..n_md {
        for cd in 0..4 {
            let m = film.areal_mass_kg_m2.get(md, cd) * 1.2;
            film.areal_mass_kg_m2.set(md, cd, m);
            film.solvent_mass_kg_m2.set(md, cd, m);
        }
    }
    let (run, sink) = run(&DryingParams::anode(), film, false);
    let out = &run.output;
    assert_rel("heavy h_dry", out.dry_thickness_m.get(0, 0) / out.dry_thickness_m.get(0, 10), 1.2, 1e-12);
    assert!(out.binder_migration_index.get(0, 0) != out.binder_migration_index.get(0, 10));
    // the segment's dry point is where its heaviest (slowest) cells are dry
    let s = sink.samples.last().unwrap();
    assert!(s.dry_point_m.unwrap() > run.result.dry_point_m.unwrap());
}

#[test]
fn legacy_keys_follow_the_seed_layout() {
    let (run, sink) = run(&DryingParams::cathode(), wet_film_of_length(Line::Cathode, 20.0), false);
    let s = &sink.samples[sink.samples.len() - 5];
    let mut rec = LegacyRecord::new();
    s.legacy(&mut rec);
    let keys: Vec<&str> = rec.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "Wet Thickness (m)",
            "Dry Thickness (m)",
            "Remaining Solvent (kg/m²)",
            "Evaporation Rate (kg/s)",
            "Current Coating Thickness (m)",
            "Defect Risk"
        ]
    );
    assert_eq!(rec["Wet Thickness (m)"].as_f64().unwrap(), s.wet_thickness_m);
    assert_eq!(rec["Remaining Solvent (kg/m²)"].as_f64().unwrap(), s.solvent_mass_exit_kg_m2.true_value);
    assert_eq!(rec["Defect Risk"].as_bool(), Some(false));
    // full precision, not the prototype's 4 decimals
    assert!(rec["Dry Thickness (m)"].as_f64().unwrap() > 8.2e-5);

    let mut fin = LegacyRecord::new();
    run.result.legacy(&mut fin);
    let props = fin["Final Properties"].as_object().unwrap();
    let fin_keys: Vec<&str> = props.keys().map(String::as_str).collect();
    assert_eq!(fin_keys, keys);
    assert!(run.result.accepted());
    let summary = run.result.summary();
    assert!(summary.iter().any(|(k, v)| *k == "dry point m" && (v - 22.2).abs() < 0.3));
}

#[test]
fn sensor_noise_changes_only_measured_values() {
    let film = wet_film_of_length(Line::Cathode, 15.0);
    let (quiet, q) = run(&DryingParams::cathode(), film.clone(), false);
    let (noisy, n) = run(&DryingParams::cathode(), film.clone(), true);
    let (_, n2) = run(&DryingParams::cathode(), film, true);
    assert_eq!(quiet.output, noisy.output);
    assert_eq!(q.samples.len(), n.samples.len());
    for (a, b) in q.samples.iter().zip(&n.samples) {
        assert_eq!(a.residual_solvent_frac.true_value, b.residual_solvent_frac.true_value);
        assert_eq!(a.web_temperature_exit_degc.true_value, b.web_temperature_exit_degc.true_value);
        assert_eq!(a.residual_solvent_frac.measured, Some(a.residual_solvent_frac.true_value));
    }
    assert!(n
        .samples
        .iter()
        .any(|s| s.web_temperature_exit_degc.measured != Some(s.web_temperature_exit_degc.true_value)));
    assert_eq!(n.samples, n2.samples, "same seed, same samples");
}

#[test]
fn every_parameter_range_is_checked() {
    type Set = fn(&mut DryingParams, f64);
    // (field, setter, bad value, expected min, expected max)
    let cases: Vec<(&str, Set, f64, f64, f64)> = vec![
        ("zones[1].length_m", |p, v| p.zones[1].length_m = v, 0.0, 0.0, 100.0),
        ("zones[1].length_m", |p, v| p.zones[1].length_m = v, 100.5, 0.0, 100.0),
        ("zones[0].air_temperature_degc", |p, v| p.zones[0].air_temperature_degc = v, 19.0, 20.0, 250.0),
        ("zones[3].air_temperature_degc", |p, v| p.zones[3].air_temperature_degc = v, 251.0, 20.0, 250.0),
        ("zones[2].air_velocity_m_s", |p, v| p.zones[2].air_velocity_m_s = v, 0.4, 0.5, 60.0),
        ("zones[2].air_velocity_m_s", |p, v| p.zones[2].air_velocity_m_s = v, 61.0, 0.5, 60.0),
        ("zones[0].exhaust_mass_flow_kg_s", |p, v| p.zones[0].exhaust_mass_flow_kg_s = v, -0.1, 0.0, 20.0),
        ("zones[0].exhaust_mass_flow_kg_s", |p, v| p.zones[0].exhaust_mass_flow_kg_s = v, 21.0, 0.0, 20.0),
        ("air_solvent_partial_pressure_pa", |p, v| p.air_solvent_partial_pressure_pa = v, -1.0, 0.0, 5e4),
        ("air_solvent_partial_pressure_pa", |p, v| p.air_solvent_partial_pressure_pa = v, 6e4, 0.0, 5e4),
        ("heat_transfer_coeff_ref_w_m2_k", |p, v| p.heat_transfer_coeff_ref_w_m2_k = v, 0.0, 0.0, 1000.0),
        ("heat_transfer_coeff_ref_w_m2_k", |p, v| p.heat_transfer_coeff_ref_w_m2_k = v, 1001.0, 0.0, 1000.0),
        ("ref_air_velocity_m_s", |p, v| p.ref_air_velocity_m_s = v, 0.0, 0.0, 60.0),
        ("ref_air_velocity_m_s", |p, v| p.ref_air_velocity_m_s = v, 61.0, 0.0, 60.0),
        ("velocity_exponent", |p, v| p.velocity_exponent = v, 0.29, 0.3, 1.0),
        ("velocity_exponent", |p, v| p.velocity_exponent = v, 1.01, 0.3, 1.0),
        ("falling_rate_onset_frac", |p, v| p.falling_rate_onset_frac = v, 0.0, 0.0, 1.0),
        ("falling_rate_onset_frac", |p, v| p.falling_rate_onset_frac = v, 1.1, 0.0, 1.0),
        ("residual_equilibrium_frac", |p, v| p.residual_equilibrium_frac = v, -1e-4, 0.0, 0.05),
        ("residual_equilibrium_frac", |p, v| p.residual_equilibrium_frac = v, 0.06, 0.0, 0.05),
        ("migration_rate_limit_kg_m2_s", |p, v| p.migration_rate_limit_kg_m2_s = v, 0.0, 0.0, 0.1),
        ("migration_rate_limit_kg_m2_s", |p, v| p.migration_rate_limit_kg_m2_s = v, 0.2, 0.0, 0.1),
        ("residual_solvent_max_frac", |p, v| p.residual_solvent_max_frac = v, 0.0, 0.0, 0.1),
        ("residual_solvent_max_frac", |p, v| p.residual_solvent_max_frac = v, 0.11, 0.0, 0.1),
        ("max_film_temperature_degc", |p, v| p.max_film_temperature_degc = v, 39.0, 40.0, 300.0),
        ("max_film_temperature_degc", |p, v| p.max_film_temperature_degc = v, 301.0, 40.0, 300.0),
        ("ambient_temperature_degc", |p, v| p.ambient_temperature_degc = v, -41.0, -40.0, 60.0),
        ("ambient_temperature_degc", |p, v| p.ambient_temperature_degc = v, 61.0, -40.0, 60.0),
        ("fan_power_w", |p, v| p.fan_power_w = v, -1.0, 0.0, 1e6),
        ("fan_power_w", |p, v| p.fan_power_w = v, 2e6, 0.0, 1e6),
        ("wall_ua_w_k", |p, v| p.wall_ua_w_k = v, -1.0, 0.0, 1e5),
        ("wall_ua_w_k", |p, v| p.wall_ua_w_k = v, 2e5, 0.0, 1e5),
        ("heater_efficiency_frac", |p, v| p.heater_efficiency_frac = v, 0.0, 0.0, 1.0),
        ("heater_efficiency_frac", |p, v| p.heater_efficiency_frac = v, 1.1, 0.0, 1.0),
        ("solvent_recovery_energy_j_kg", |p, v| p.solvent_recovery_energy_j_kg = v, -1.0, 0.0, 1e7),
        ("solvent_recovery_energy_j_kg", |p, v| p.solvent_recovery_energy_j_kg = v, 2e7, 0.0, 1e7),
        ("integration_step_s", |p, v| p.integration_step_s = v, 0.0, 0.0, 1.0),
        ("integration_step_s", |p, v| p.integration_step_s = v, 1.5, 0.0, 1.0),
        ("sample_interval_s", |p, v| p.sample_interval_s = v, 0.0, 0.0, 600.0),
        ("sample_interval_s", |p, v| p.sample_interval_s = v, 601.0, 0.0, 600.0),
        ("air_solvent_partial_pressure_pa", |p, v| p.air_solvent_partial_pressure_pa = v, f64::NAN, 0.0, 5e4),
    ];
    for (field, set, bad, min, max) in cases {
        for base in [DryingParams::anode(), DryingParams::cathode()] {
            let mut p = base;
            set(&mut p, bad);
            let e = p.validate().expect_err(field);
            assert_eq!(e.field, field, "{e}");
            assert_eq!((e.min, e.max), (Some(min), Some(max)), "{field}");
            assert!(e.value.to_bits() == bad.to_bits() || (bad.is_nan() && e.value.is_nan()));
        }
    }
    assert!(DryingParams::anode().validate().is_ok());
    assert!(DryingParams::cathode().validate().is_ok());
    assert_eq!(DryingParams::default(), DryingParams::cathode());
}

#[test]
fn zone_count_and_step_rules() {
    let mut p = DryingParams::anode();
    p.zones.clear();
    let e = p.validate().unwrap_err();
    assert_eq!((e.field.as_str(), e.min, e.max), ("zones", Some(1.0), Some(12.0)));
    p.zones = vec![DryerZone::standard(100.0); 13];
    assert_eq!(p.validate().unwrap_err().field, "zones");
    p.zones.truncate(12);
    assert!(p.validate().is_ok());

    let mut p = DryingParams::cathode();
    p.sample_interval_s = 0.5;
    p.integration_step_s = 0.8;
    let e = p.validate().unwrap_err();
    assert_eq!(e.field, "integration_step_s");
    assert!(e.rule.contains("sample_interval_s"), "{}", e.rule);
}

#[test]
fn params_round_trip_and_reject_unknown_fields() {
    let p = DryingParams::anode();
    let json = serde_json::to_string(&p).unwrap();
    let back: DryingParams = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
    let bad = json.replacen("\"fan_power_w\"", "\"fan_power\"", 1);
    assert!(serde_json::from_str::<DryingParams>(&bad).is_err());
}

fn zone_strategy() -> impl Strategy<Value = DryerZone> {
    (0.5f64..15.0, 20.0f64..250.0, 0.5f64..60.0, 0.0f64..20.0).prop_map(|(l, t, u, e)| DryerZone {
        length_m: l,
        air_temperature_degc: t,
        air_velocity_m_s: u,
        exhaust_mass_flow_kg_s: e,
    })
}

fn params_strategy() -> impl Strategy<Value = (bool, DryingParams)> {
    (
        any::<bool>(),
        prop::collection::vec(zone_strategy(), 1..5),
        (0.0f64..5e4, 1.0f64..1000.0, 1.0f64..60.0, 0.3f64..1.0),
        (0.01f64..1.0, 0.0f64..0.05, 1e-4f64..0.1, 40.0f64..300.0),
        (0.01f64..1.0, 0.2f64..1.0),
    )
        .prop_map(|(anode, zones, (p_inf, h, u_ref, n), (x_cr, w_eq, lim, t_max), (step, eta))| {
            let mut p = if anode { DryingParams::anode() } else { DryingParams::cathode() };
            p.zones = zones;
            p.air_solvent_partial_pressure_pa = p_inf;
            p.heat_transfer_coeff_ref_w_m2_k = h;
            p.ref_air_velocity_m_s = u_ref;
            p.velocity_exponent = n;
            p.falling_rate_onset_frac = x_cr;
            p.residual_equilibrium_frac = w_eq;
            p.migration_rate_limit_kg_m2_s = lim;
            p.max_film_temperature_degc = t_max;
            p.integration_step_s = step;
            p.heater_efficiency_frac = eta;
            (anode, p)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn drying_stays_physical((anode, p) in params_strategy(), roll in 1.0f64..8.0) {
        prop_assert!(p.validate().is_ok());
        let line = if anode { Line::Anode } else { Line::Cathode };
        let film = wet_film_of_length(line, roll);
        let m_a = film.nominal_areal_mass_kg_m2;
        let x0 = film.solvent_mass_kg_m2.get(0, 0);
        let t_in = film.slurry_temperature_degc;
        let t_hot = p.zones.iter().map(|z| z.air_temperature_degc).fold(t_in, f64::max);
        let n_expected = {
            let t = film.coating_duration_s + p.dryer_length_m() / film.line_speed_m_s;
            cellfab_model::stage::sample_times(t, p.sample_interval_s).count()
        };
        let (run, sink) = run(&p, film, false);
        let r = &run.result;
        prop_assert_eq!(sink.samples.len(), n_expected);
        // residual between sorption equilibrium and the solvent that came in
        prop_assert!(r.residual_solvent_frac >= p.residual_equilibrium_frac * (1.0 - 1e-9));
        prop_assert!(r.residual_solvent_frac <= x0 / m_a * (1.0 + 1e-9));
        prop_assert!(r.binder_migration_index >= 0.0 && r.binder_migration_index.is_finite());
        // evaporation only cools: the film never gets hotter than the hottest air
        prop_assert!(r.peak_film_temperature_degc <= t_hot + 1e-6);
        prop_assert!(r.exit_temperature_degc.is_finite() && r.exit_temperature_degc > -50.0);
        prop_assert!(r.energy_j > 0.0 && r.energy_j.is_finite());
        prop_assert!(r.solvent_evaporated_kg >= 0.0);
        if let Some(d) = r.dry_point_m {
            prop_assert!(d >= 0.0 && d <= r.dryer_length_m + 1e-9);
        }
        let c = &r.drying_curve.solvent_mass_kg_m2;
        prop_assert!(c.windows(2).all(|w| w[1] <= w[0] + 1e-15));
        for s in &sink.samples {
            prop_assert!(s.evaporation_rate_kg_s >= 0.0 && s.evaporation_rate_kg_s.is_finite());
            prop_assert!(s.heater_power_w.is_finite() && s.exit_coating_thickness_m >= s.dry_thickness_m);
        }
        prop_assert!(run.output.dry_thickness_m.values().iter().all(|&h| h > 0.0));
    }
}

#[test]
fn film_leaving_with_full_pores_is_thicker_than_its_solids() {
    // anode in 20 °C air: X_exit (≈ 0.08 kg/m²) stays above the pore volume (0.058 kg/m²)
    let mut p = DryingParams::anode();
    p.zones.iter_mut().for_each(|z| z.air_temperature_degc = 20.0);
    let (run, sink) = run(&p, wet_film_of_length(Line::Anode, 3.0), false);
    let res = &run.result;
    assert!(res.dry_point_m.is_none());
    assert!(res.exit_coating_thickness_m > res.dry_thickness_m);
    let x_pore = 997.0 * 0.5 * res.dry_thickness_m;
    let expected = res.dry_thickness_m + (res.solvent_mass_exit_kg_m2 - x_pore) / 997.0;
    assert_rel("exit thickness", res.exit_coating_thickness_m, expected, 1e-12);
    let s = sink.samples.last().unwrap();
    assert_rel("sample exit thickness", s.exit_coating_thickness_m, expected, 1e-9);
    // evaporative cooling takes the film below the air and the slurry temperature
    assert!(res.exit_temperature_degc < 20.0);
}

#[test]
fn stiff_settings_stay_stable() {
    // h = 1000·(60/1)¹ W/(m²·K) with 1 s steps: Euler alone would diverge
    let mut p = DryingParams::cathode();
    p.heat_transfer_coeff_ref_w_m2_k = 1000.0;
    p.ref_air_velocity_m_s = 1.0;
    p.velocity_exponent = 1.0;
    p.zones.iter_mut().for_each(|z| z.air_velocity_m_s = 60.0);
    p.integration_step_s = 1.0;
    assert!(p.validate().is_ok());
    let (run, sink) = run(&p, wet_film_of_length(Line::Cathode, 2.0), false);
    let res = &run.result;
    assert!(res.peak_film_temperature_degc <= 130.0 + 1e-9, "{}", res.peak_film_temperature_degc);
    assert!(res.dry_point_m.unwrap() < 5.0);
    assert!(res.residual_solvent_frac >= 2e-4 * (1.0 - 1e-12));
    assert!(sink.samples.iter().all(|s| s.heater_power_w.is_finite() && s.evaporation_rate_kg_s.is_finite()));
}
