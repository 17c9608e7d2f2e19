//! Fault injection (MODELS.md §13) through the whole plant, in deterministic mode on a small
//! lot: each fault moves its samples and the cells' outcomes in the direction the catalogue
//! gives, labels land on exactly the faulted samples and cells, and a run without faults
//! carries only `none`.

use cellfab_model::fault::{FaultCode, FaultLabel, FaultSpec};
use cellfab_model::{Line, StageKind};
use cellfab_plant::events::PlantEvent;
use cellfab_plant::{Delivery, Plant, PlantConfig, PlantError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// What a run published, by machine id.
#[derive(Default)]
struct Run {
    /// Final result per machine.
    results: BTreeMap<String, Value>,
    /// Samples per machine, in order.
    samples: BTreeMap<String, Vec<Value>>,
    /// Raised alarm codes per machine.
    alarms: BTreeMap<String, Vec<String>>,
    /// Cell rows.
    cells: Vec<Value>,
    /// Fault labels.
    labels: Vec<FaultLabel>,
}

impl Run {
    fn result(&self, machine: &str, path: &str) -> f64 {
        let mut v = &self.results[machine];
        for key in path.split('.') {
            v = v.get(key).unwrap_or_else(|| panic!("{machine}: no {path}"));
        }
        v.as_f64().unwrap_or_else(|| panic!("{machine}.{path} is not a number: {v}"))
    }

    fn raised(&self, machine: &str, code: &str) -> bool {
        self.alarms.get(machine).is_some_and(|a| a.iter().any(|c| c == code))
    }

    /// Samples of `machine` that carry a label.
    fn labelled(&self, machine: &str) -> Vec<&Value> {
        self.samples[machine].iter().filter(|s| !labels_of(s).is_empty()).collect()
    }

    fn cell_mean(&self, field: &str, pick: impl Fn(&Value) -> bool) -> f64 {
        let v: Vec<f64> =
            self.cells.iter().filter(|c| pick(c)).filter_map(|c| c.get(field).and_then(Value::as_f64)).collect();
        assert!(!v.is_empty(), "no cell has {field}");
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn labels_of(sample: &Value) -> Vec<u64> {
    sample["fault_labels"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
}

fn small() -> PlantConfig {
    let mut c = PlantConfig::deterministic();
    c.plant.start = "2025-01-01T00:00:00Z".into();
    c.cell.assembly.max_cells = 64;
    c
}

fn run_with(faults: Vec<FaultSpec>) -> Run {
    let mut c = small();
    c.faults = faults;
    run(c)
}

fn run(c: PlantConfig) -> Run {
    let plant = Plant::new(c, jiff::Timestamp::now()).unwrap();
    let sub = plant.bus().subscribe(1 << 16, Delivery::Reliable);
    let h = std::thread::spawn(move || {
        let mut r = Run::default();
        for e in sub.rx {
            match &*e {
                PlantEvent::StageFinished { machine, result, .. } => {
                    r.results.insert(machine.machine_id.clone(), result.to_json());
                }
                PlantEvent::Sample { machine, sample, .. } => {
                    r.samples.entry(machine.machine_id.clone()).or_default().push(sample.to_json());
                }
                PlantEvent::Alarm { alarm, .. } => {
                    let v = serde_json::to_value(alarm.as_ref()).unwrap();
                    if v["state"] == "raised" || v["state"] == "Raised" {
                        r.alarms.entry(alarm.machine_id.clone()).or_default().push(alarm.code.to_string());
                    }
                }
                PlantEvent::CellResults { rows, .. } => r.cells.extend(rows.iter().cloned()),
                PlantEvent::FaultLabel { label } => r.labels.push(label.as_ref().clone()),
                _ => {}
            }
        }
        // the lines run on their own threads: labels of different lines arrive in any order,
        // their ids are fixed (the run folder's fault_labels.jsonl is sorted by id)
        r.labels.sort_by_key(|l| l.label_id);
        r
    });
    plant.run().unwrap();
    h.join().unwrap()
}

fn baseline() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| run(small()))
}

fn spec(code: FaultCode, line: Line, stage: StageKind, onset: f64) -> FaultSpec {
    FaultSpec::demo(code, line, stage, onset)
}

/// Cells whose root cause is `code`.
fn caused_by(r: &Run, code: FaultCode) -> Vec<&Value> {
    r.cells.iter().filter(|c| c["root_cause"].as_str().is_some_and(|s| s.contains(code.as_str()))).collect()
}

#[test]
fn a_run_without_faults_has_only_none_labels() {
    let r = baseline();
    assert!(r.labels.is_empty());
    for (machine, samples) in &r.samples {
        assert!(samples.iter().all(|s| labels_of(s).is_empty()), "{machine} has a labelled sample");
    }
    assert_eq!(r.cells.len(), 64);
    assert!(r.cells.iter().all(|c| c["root_cause"] == "none" && labels_of(c).is_empty()));
}

#[test]
fn f02_short_active_material_dose_lowers_the_areal_mass_by_two_percent() {
    let r = run_with(vec![spec(FaultCode::F02MixDosingError, Line::Cathode, StageKind::Mixing, 0.0)]);
    let b = baseline();
    let solids = r.result("TK_Mix_Cathode", "solids_mass_frac");
    assert!((solids - 0.694).abs() < 0.001, "cathode solids {solids}");
    assert!(r.raised("TK_Mix_Cathode", "MIX_SOLIDS_DEVIATION"));
    let areal =
        r.result("MC_Coat_Cathode", "areal_mass_mean_kg_m2") / b.result("MC_Coat_Cathode", "areal_mass_mean_kg_m2");
    assert!((areal - 0.980).abs() < 0.004, "areal mass ratio {areal}");
    // the whole batch is affected: every mixing sample and every cell carries the label
    assert_eq!(r.labels.len(), 1);
    assert_eq!(r.labelled("TK_Mix_Cathode").len(), r.samples["TK_Mix_Cathode"].len());
    assert!(r.labelled("TK_Mix_Anode").is_empty());
    assert_eq!(caused_by(&r, FaultCode::F02MixDosingError).len(), r.cells.len());
    let cap = r.cell_mean("design_capacity_ah", |_| true) / b.cell_mean("design_capacity_ah", |_| true);
    assert!(cap < 0.985, "design capacity ratio {cap}");
}

#[test]
fn f04_weight_drift_lowers_the_loading_after_onset_only() {
    let r = run_with(vec![spec(FaultCode::F04CoatWeightDrift, Line::Cathode, StageKind::Coating, 600.0)]);
    let b = baseline();
    let coat = &r.samples["MC_Coat_Cathode"];
    let base = &b.samples["MC_Coat_Cathode"];
    for (s, s0) in coat.iter().zip(base) {
        let t = s["stage_time_s"].as_f64().unwrap();
        let ratio = s["areal_mass_kg_m2"].as_f64().unwrap() / s0["areal_mass_kg_m2"].as_f64().unwrap();
        if t < 600.0 {
            assert!((ratio - 1.0).abs() < 1e-9 && labels_of(s).is_empty(), "t {t}: ratio {ratio}");
        } else {
            assert!(!labels_of(s).is_empty(), "t {t} not labelled");
            let expected = 1.0 - 1e-5 * (t - 600.0);
            assert!((ratio - expected).abs() < 0.003, "t {t}: ratio {ratio}, expected {expected}");
        }
    }
    // beyond 3 % the coater alarms
    assert!(r.raised("MC_Coat_Cathode", "COAT_LOADING_DEVIATION"));
    // the 64 cells come from the first metres of the roll, coated before the onset
    assert!(caused_by(&r, FaultCode::F04CoatWeightDrift).is_empty());
    // a drift from the start reaches every cell, and they lose capacity
    let r = run_with(vec![spec(FaultCode::F04CoatWeightDrift, Line::Cathode, StageKind::Coating, 0.0)]);
    assert_eq!(caused_by(&r, FaultCode::F04CoatWeightDrift).len(), r.cells.len());
    let cap = r.cell_mean("design_capacity_ah", |_| true) / b.cell_mean("design_capacity_ah", |_| true);
    assert!(cap < 1.0, "design capacity ratio {cap}");
}

#[test]
fn f05_cold_dryer_zone_leaves_solvent_and_raises_the_residual_alarm() {
    // −50 K on zone 2: more solvent left, within spec on the default dryer (it has margin)
    let mut f = spec(FaultCode::F05DryZoneTempExcursion, Line::Anode, StageKind::Drying, 600.0);
    f.magnitude.delta_k = Some(-50.0);
    let r = run_with(vec![f.clone()]);
    let b = baseline();
    let worst0 = b.result("MC_Dry_Anode", "worst_residual_solvent_frac");
    let worst = r.result("MC_Dry_Anode", "worst_residual_solvent_frac");
    assert!(worst > worst0, "residual {worst} not above {worst0}");
    assert!(r.raised("MC_Dry_Anode", "DRY_ZONE_DEVIATION"));
    // −80 K: the film leaves wet, the residual alarm trips
    f.magnitude.delta_k = Some(-80.0);
    let r = run_with(vec![f]);
    assert!(r.result("MC_Dry_Anode", "worst_residual_solvent_frac") > 2e-3);
    assert!(r.raised("MC_Dry_Anode", "DRY_RESIDUAL_SOLVENT_HIGH"));
    assert!(!b.raised("MC_Dry_Anode", "DRY_RESIDUAL_SOLVENT_HIGH"));
    // labelled samples are exactly those of the excursion window [600, 1200) s
    for s in &r.samples["MC_Dry_Anode"] {
        let t = s["stage_time_s"].as_f64().unwrap();
        assert_eq!(!labels_of(s).is_empty(), (600.0..1200.0).contains(&t), "t {t}");
    }
    assert_eq!(r.labels.len(), 1);
    let l = &r.labels[0];
    assert_eq!((l.code, l.line, l.stage), (FaultCode::F05DryZoneTempExcursion, Line::Anode, StageKind::Drying));
    assert!(l.onset_position_m.is_some());
}

#[test]
fn f07_chipped_knife_raises_the_burr_of_its_two_lanes_to_about_12_um() {
    let r = run_with(vec![spec(FaultCode::F07SlitBladeWear, Line::Cathode, StageKind::Slitting, 0.0)]);
    let s = &r.samples["MC_Slit_Cathode"][10];
    let burr: Vec<f64> = s["lanes"].as_array().unwrap().iter().map(|l| l["burr_height_m"].as_f64().unwrap()).collect();
    let s0 = &baseline().samples["MC_Slit_Cathode"][10];
    let burr0: Vec<f64> =
        s0["lanes"].as_array().unwrap().iter().map(|l| l["burr_height_m"].as_f64().unwrap()).collect();
    for (j, (b, b0)) in burr.iter().zip(&burr0).enumerate() {
        if j == 2 || j == 3 {
            assert!((b * 1e6 - 12.0).abs() < 1.5, "lane {j} burr {} µm", b * 1e6);
        } else {
            assert_eq!(b, b0, "lane {j} untouched");
        }
    }
    assert!(r.raised("MC_Slit_Cathode", "SLIT_BURR_HIGH"));
    assert_eq!(r.labels[0].lanes.as_deref(), Some(&[2, 3][..]));
    // inspection rejects the two lanes: no cell of them is wound, the others are untouched
    let lane = |r: &Run, j: u64| r.cells.iter().filter(|c| c["lane"] == j).count();
    assert!(lane(baseline(), 2) > 0 && lane(baseline(), 3) > 0);
    assert_eq!((lane(&r, 2), lane(&r, 3)), (0, 0));
    assert!(r.cells.iter().all(|c| c["root_cause"] == "none"));
}

#[test]
fn f03_full_nozzle_clog_leaves_a_streak_and_labels_the_clogged_lane() {
    let mut f = spec(FaultCode::F03CoatNozzleClog, Line::Cathode, StageKind::Coating, 0.0);
    f.magnitude.cd_position_m = Some(0.22); // inside one lane, clear of the knives
    let r = run_with(vec![f]);
    let b = baseline();
    assert!(r.result("MC_Coat_Cathode", "streak_defects") >= 400.0);
    assert_eq!(b.result("MC_Coat_Cathode", "streak_defects"), 0.0);
    // the coater samples while the die is over [0, 200) m
    for s in &r.samples["MC_Coat_Cathode"] {
        let x = s["position_m"].as_f64().unwrap();
        assert_eq!(!labels_of(s).is_empty(), (0.0..200.0).contains(&x), "x {x}");
    }
    // only the lane under the 3 mm band is touched (or rejected as a whole)
    let hit = caused_by(&r, FaultCode::F03CoatNozzleClog);
    let lanes: std::collections::BTreeSet<u64> = hit.iter().map(|c| c["lane"].as_u64().unwrap()).collect();
    assert!(lanes.len() <= 1, "one lane under a 3 mm band: {lanes:?}");
    let lane_count =
        |r: &Run| r.cells.iter().map(|c| c["lane"].as_u64().unwrap()).collect::<std::collections::BTreeSet<_>>().len();
    assert!(!hit.is_empty() || lane_count(&r) == lane_count(b) - 1, "the clogged lane neither labelled nor rejected");
}

#[test]
fn f10_underfill_leaves_cells_unwetted_and_rejected() {
    let mut f = spec(FaultCode::F10FillUnderfill, Line::Cell, StageKind::ElectrolyteFilling, 8.0);
    f.duration = Some(16.0);
    let r = run_with(vec![f]);
    let hit = caused_by(&r, FaultCode::F10FillUnderfill);
    assert_eq!(hit.len(), 16);
    assert!(hit.iter().all(|c| c["wetting_frac"].as_f64().unwrap() < 0.98));
    assert!(r.raised("MC_ElecFill_Cell", "FILL_UNDERFILL"));
    let ok = r.cell_mean("wetting_frac", |c| c["root_cause"] == "none");
    assert!(ok >= 0.98, "unfaulted wetting {ok}");
    assert_eq!(r.labels[0].cell_ids.as_ref().map(Vec::len), Some(16));
}

#[test]
fn f12_humid_dry_room_lowers_the_first_cycle_efficiency() {
    // one winder at 600 s a cell: the lot waits hours in the dry room (τ_m = 2 h)
    let slow = || {
        let mut c = small();
        c.cell.assembly.winder_count = 1;
        c.cell.assembly.winding_cycle_s = 600.0;
        c
    };
    let mut f = spec(FaultCode::F12DryroomHumidityExcursion, Line::Cell, StageKind::CellAssembly, 0.0);
    f.duration = None;
    f.ramp_s = 1800.0;
    let mut c = slow();
    c.faults = vec![f];
    let r = run(c);
    let b = run(slow());
    let late = |c: &Value| c["cell_id"].as_str().is_some_and(|id| id.ends_with("-7"));
    let fce = r.cell_mean("first_cycle_efficiency_frac", late);
    let fce0 = b.cell_mean("first_cycle_efficiency_frac", late);
    assert!(fce < fce0 - 0.01, "FCE {fce} vs {fce0}");
    assert!(r.raised("MC_Assembly_Cell", "ASM_HIGH_MOISTURE"));
    assert_eq!(caused_by(&r, FaultCode::F12DryroomHumidityExcursion).len(), r.cells.len());
    assert!(r.labelled("MC_Assembly_Cell").len() == r.samples["MC_Assembly_Cell"].len());
}

#[test]
fn f11_channel_gain_error_makes_measured_capacity_low() {
    let mut f = spec(FaultCode::F11FormChannelFault, Line::Cell, StageKind::FormationCycling, 0.0);
    f.magnitude.channels_frac = Some(1.0);
    let r = run_with(vec![f]);
    let formed = r.result("MC_Formation_Cell", "discharge_capacity_ah.mean");
    let formed0 = baseline().result("MC_Formation_Cell", "discharge_capacity_ah.mean");
    assert!(formed < formed0 * 0.99, "measured capacity {formed} vs {formed0}");
    assert_eq!(caused_by(&r, FaultCode::F11FormChannelFault).len(), r.cells.len());
}

#[test]
fn s01_bias_corrupts_only_the_measured_value() {
    let mut f = spec(FaultCode::S01SensorFault, Line::Anode, StageKind::Mixing, 1000.0);
    f.duration = Some(500.0);
    f.magnitude.signal = Some("viscosity_pa_s".into());
    f.magnitude.bias = Some(2.0);
    let r = run_with(vec![f]);
    let b = baseline();
    for (s, s0) in r.samples["TK_Mix_Anode"].iter().zip(&b.samples["TK_Mix_Anode"]) {
        let t = s["stage_time_s"].as_f64().unwrap();
        let (v, v0) = (&s["viscosity_pa_s"], &s0["viscosity_pa_s"]);
        assert_eq!(v["true"], v0["true"], "process unaffected at {t}");
        let inside = (1000.0..1500.0).contains(&t);
        let d = v["meas"].as_f64().unwrap() - v0["meas"].as_f64().unwrap();
        assert!((d - if inside { 2.0 } else { 0.0 }).abs() < 1e-9, "t {t}: Δ {d}");
        assert_eq!(!labels_of(s).is_empty(), inside);
    }
    assert_eq!(r.results["MC_Coat_Anode"], b.results["MC_Coat_Anode"]);
    assert!(r.cells.iter().all(|c| c["root_cause"] == "none"));
}

#[test]
fn a_bad_fault_is_refused_with_its_field_value_and_range() {
    let mut c = small();
    let mut f = spec(FaultCode::F02MixDosingError, Line::Cathode, StageKind::Mixing, 0.0);
    f.magnitude.dose_factor = Some(3.0);
    c.faults = vec![f];
    let Err(PlantError::Param(e)) = Plant::new(c, jiff::Timestamp::now()) else { panic!("accepted") };
    assert_eq!(e.field, "faults[0].magnitude.dose_factor");
    assert_eq!((e.value, e.min, e.max), (3.0, Some(0.5), Some(1.5)));

    let mut c = small();
    c.faults = vec![spec(FaultCode::F07SlitBladeWear, Line::Cathode, StageKind::Drying, 0.0)];
    let Err(PlantError::Param(e)) = Plant::new(c, jiff::Timestamp::now()) else { panic!("accepted") };
    assert_eq!(e.field, "faults[0].stage");

    let err = PlantConfig::from_toml_str("[[faults]]\ncode = \"F99_NOPE\"\nline = \"anode\"\nstage = \"mixing\"\n")
        .unwrap_err();
    assert!(err.to_string().contains("F99_NOPE"), "{err}");
}

#[test]
fn faults_read_from_toml_and_the_same_seed_gives_the_same_labels() {
    let toml = r#"
        [plant]
        process_variability = false
        sensor_noise = false
        start = "2025-01-01T00:00:00Z"
        [cell.assembly]
        max_cells = 16
        [[faults]]
        code = "F05_DRY_ZONE_TEMP_EXCURSION"
        line = "anode"
        stage = "drying"
        onset = 300.0
        duration = 600.0
        magnitude = { zone = 2, delta_k = 30.0 }
        [[fault_rates]]
        line = "cathode"
        stage = "coating"
        probability_per_batch = 1.0
    "#;
    let c = PlantConfig::from_toml_str(toml).unwrap();
    assert_eq!(c.faults[0].magnitude.delta_k, Some(30.0));
    let a = run(c.clone());
    let b = run(c);
    assert_eq!(a.labels.len(), 2);
    assert_eq!(a.labels, b.labels);
    assert_eq!(a.cells, b.cells);
    assert!(a.labels.iter().any(|l| l.code == FaultCode::F04CoatWeightDrift && l.line == Line::Cathode));
}

#[test]
fn f01_worn_disc_leaves_agglomerates_and_raises_the_viscosity() {
    let mut f = spec(FaultCode::F01MixUnderDispersion, Line::Cathode, StageKind::Mixing, 0.0);
    f.magnitude.power_factor = Some(0.3);
    let r = run_with(vec![f]);
    let b = baseline();
    let a = r.samples["TK_Mix_Cathode"].last().unwrap()["agglomerate_frac"].as_f64().unwrap();
    let a0 = b.samples["TK_Mix_Cathode"].last().unwrap()["agglomerate_frac"].as_f64().unwrap();
    assert!(a > 5.0 * a0 && (a - 0.32).abs() < 0.1, "agglomerates {a} vs {a0}");
    let p = r.samples["TK_Mix_Cathode"][1000]["shaft_power_w"]["meas"].as_f64().unwrap();
    let p0 = b.samples["TK_Mix_Cathode"][1000]["shaft_power_w"]["meas"].as_f64().unwrap();
    assert!(p < 0.5 * p0, "power {p} vs {p0}");
    assert_eq!(caused_by(&r, FaultCode::F01MixUnderDispersion).len(), r.cells.len());
}

#[test]
fn f06_eccentric_roll_spreads_porosity_along_the_web() {
    let r = run_with(vec![spec(FaultCode::F06CalRollEccentricity, Line::Anode, StageKind::Calendaring, 0.0)]);
    let b = baseline();
    let spread = |r: &Run| {
        let v: Vec<f64> = r.samples["MC_Cal_Anode"].iter().map(|s| s["porosity_frac"].as_f64().unwrap()).collect();
        v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
    };
    assert!(spread(&r) > 0.01 && spread(&r) > 10.0 * spread(b), "spread {} vs {}", spread(&r), spread(b));
    assert_eq!(r.labelled("MC_Cal_Anode").len(), r.samples["MC_Cal_Anode"].len());
}

#[test]
fn f08_tension_oscillation_wrinkles_the_web_during_its_window() {
    let r = run_with(vec![spec(FaultCode::F08WebTensionOscillation, Line::Anode, StageKind::Slitting, 0.0)]);
    assert!(r.raised("MC_Slit_Anode", "SLIT_TENSION_LOW"));
    assert!(!baseline().raised("MC_Slit_Anode", "SLIT_TENSION_LOW"));
    for s in &r.samples["MC_Slit_Anode"] {
        let t = s["stage_time_s"].as_f64().unwrap();
        assert_eq!(!labels_of(s).is_empty(), t < 120.0, "t {t}");
    }
    // the wrinkled head of the roll is scrapped, so the cells come from behind it untouched
    assert!(r.cells.iter().all(|c| c["anode_coating_start_m"].as_f64().unwrap() > 0.0));
}

#[test]
fn f09_misalignment_violates_the_overhang_of_the_faulted_cells() {
    let mut f = spec(FaultCode::F09AsmMisalignment, Line::Cell, StageKind::CellAssembly, 0.0);
    f.duration = Some(10.0);
    let r = run_with(vec![f]);
    let overhang = |r: &Run| {
        r.raised("MC_Assembly_Cell", "ASM_OVERHANG_VIOLATION") || r.raised("MC_Assembly_Cell", "ASM_OVERHANG_LOW")
    };
    assert!(overhang(&r) && !overhang(baseline()));
    assert_eq!(r.labels[0].cell_ids.as_ref().map(Vec::len), Some(10));
    assert_eq!(caused_by(&r, FaultCode::F09AsmMisalignment).len(), 10);
}
