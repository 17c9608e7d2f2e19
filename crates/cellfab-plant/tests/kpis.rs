//! Plant KPIs (MODELS.md §14) of real runs: a two-batch deterministic scenario checked
//! against a hand calculation from its stage durations, the same KPIs on one thread and
//! many, and the default batch against §14's OEE and energy figures.

use cellfab_model::{Line, StageKind};
use cellfab_plant::events::PlantEvent;
use cellfab_plant::{Delivery, Plant, PlantConfig, PlantKpis, RunReport};
use std::collections::BTreeMap;

/// Two batches, deterministic, 62 cells per batch (not a multiple of the 4 winders).
fn two_batch_config(threads: u32) -> PlantConfig {
    let mut c = PlantConfig::deterministic();
    c.plant.batches = 2;
    c.plant.threads = threads;
    c.plant.start = "2025-01-01T00:00:00Z".into();
    c.cell.assembly.max_cells = 62;
    c
}

fn run(config: PlantConfig) -> (RunReport, Vec<PlantKpis>) {
    let plant = Plant::new(config, jiff::Timestamp::now()).unwrap();
    let sub = plant.bus().subscribe(1 << 16, Delivery::Reliable);
    let h = std::thread::spawn(move || {
        sub.rx
            .into_iter()
            .filter_map(|e| match &*e {
                PlantEvent::Kpis { kpis } => Some((**kpis).clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    });
    let report = plant.run().unwrap();
    (report, h.join().unwrap())
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-12)
}

/// One machine's runs by batch: (ready, start, duration).
type Runs = BTreeMap<u32, (f64, f64, f64)>;

#[test]
fn kpis_of_two_batches_equal_the_hand_calculation_from_the_stage_durations() {
    let (report, events) = run(two_batch_config(0));
    let k = &report.kpis;
    assert_eq!(events.len(), 1, "one Kpis event before RunFinished");
    assert_eq!(&events[0], k, "the event carries the report's KPIs");
    let id = |line: Line, stage: StageKind| stage.machine_id(line);
    let mut runs: BTreeMap<String, Runs> = BTreeMap::new();
    for s in &report.stages {
        runs.entry(s.machine.machine_id.clone())
            .or_default()
            .insert(s.machine.batch, (s.ready_t_s, s.start_t_s, s.duration_s));
    }
    let d = |m: &str, b: u32| runs[m][&b].2;
    let start = |m: &str, b: u32| runs[m][&b].1;
    let end = |m: &str, b: u32| start(m, b) + d(m, b);
    let t_end = report.end_t_s;

    // Flow-shop recurrence by hand: a batch starts when its input is ready and the machine is free.
    for line in [Line::Anode, Line::Cathode] {
        let mix = id(line, StageKind::Mixing);
        assert_eq!((start(&mix, 1), start(&mix, 2)), (0.0, d(&mix, 1)));
        let coat = id(line, StageKind::Coating);
        let dry = id(line, StageKind::Drying);
        assert_eq!(start(&coat, 1), end(&mix, 1));
        assert_eq!(start(&coat, 2), end(&mix, 2).max(end(&dry, 1)));
    }
    let asm = id(Line::Cell, StageKind::CellAssembly);
    let rewind =
        |b| end(&id(Line::Anode, StageKind::Rewinding), b).max(end(&id(Line::Cathode, StageKind::Rewinding), b));
    assert_eq!(start(&asm, 1), rewind(1));
    assert_eq!(start(&asm, 2), rewind(2).max(end(&asm, 1)));

    // State times of every single-capacity machine but the coater, by hand: busy = d1 + d2;
    // before batch 1 and between the batches the machine is starved except while its
    // finished batch waits for the next machine (blocked); after batch 2 it is blocked until
    // the next machine takes it, then idle.
    let chain: Vec<(String, Option<String>)> = {
        let mut v = Vec::new();
        for line in [Line::Anode, Line::Cathode] {
            let st = StageKind::ELECTRODE;
            for w in st.windows(2).skip(2) {
                v.push((id(line, w[0]), Some(id(line, w[1]))));
            }
            v.push((id(line, StageKind::Mixing), Some(id(line, StageKind::Coating))));
            v.push((id(line, StageKind::Rewinding), Some(asm.clone())));
        }
        let cell = StageKind::CELL;
        for w in cell.windows(2).take(2) {
            v.push((id(Line::Cell, w[0]), Some(id(Line::Cell, w[1]))));
        }
        v
    };
    for (m, next) in &chain {
        let taken = |b: u32| next.as_ref().map_or(end(m, b), |n| start(n, b).max(end(m, b)));
        let busy = d(m, 1) + d(m, 2);
        let gap = start(m, 2) - end(m, 1);
        let blocked_between = (taken(1) - end(m, 1)).clamp(0.0, gap);
        let blocked_after = (taken(2) - end(m, 2)).clamp(0.0, t_end - end(m, 2));
        let starved = start(m, 1) + gap - blocked_between;
        let idle = t_end - end(m, 2) - blocked_after;
        let mk = k.machines.iter().find(|x| &x.machine_id == m).unwrap();
        let tol = 1e-9 * t_end;
        assert!((mk.busy_s - busy).abs() < tol, "{m} busy {} vs {busy}", mk.busy_s);
        assert!((mk.starved_s - starved).abs() < tol, "{m} starved {} vs {starved}", mk.starved_s);
        assert!((mk.blocked_s - (blocked_between + blocked_after)).abs() < tol, "{m} blocked {}", mk.blocked_s);
        assert!((mk.idle_s - idle).abs() < tol, "{m} idle {} vs {idle}", mk.idle_s);
        assert!((mk.utilisation - busy / t_end).abs() < 1e-12, "{m} utilisation");
        assert_eq!(mk.down_s, 0.0, "{m}: no Critical alarm in the default scenario");
    }
    // The coater holds its line until the dryer has emptied: blocked for the dryer's tail.
    for line in [Line::Anode, Line::Cathode] {
        let (coat, dry) = (id(line, StageKind::Coating), id(line, StageKind::Drying));
        let mk = k.machines.iter().find(|x| x.machine_id == coat).unwrap();
        let tail = (end(&dry, 1) - end(&coat, 1)) + (end(&dry, 2) - end(&coat, 2));
        assert!((mk.blocked_s - tail).abs() < 1e-9 * t_end, "{coat} blocked {} vs {tail}", mk.blocked_s);
        assert!((mk.busy_s - d(&coat, 1) - d(&coat, 2)).abs() < 1e-9 * t_end);
    }
    // Formation (17.6 h per batch) holds batch 2 at filling: filling is blocked.
    let fill = k.machines.iter().find(|x| x.machine_id == "MC_ElecFill_Cell").unwrap();
    let form = id(Line::Cell, StageKind::FormationCycling);
    assert!(start(&form, 2) > end("MC_ElecFill_Cell", 2));
    assert!(fill.blocked_s >= start(&form, 2) - end("MC_ElecFill_Cell", 2) - 1e-6);

    // Takt: the longest mean occupancy of a single-capacity resource; here formation.
    let takt = ["MC_Formation_Cell", "MC_Assembly_Cell", "MC_ElecFill_Cell", "TK_Mix_Anode", "MC_Dry_Anode"]
        .iter()
        .map(|m| (d(m, 1) + d(m, 2)) / 2.0)
        .fold(0.0, f64::max);
    assert_eq!(k.takt_s, (d(&form, 1) + d(&form, 2)) / 2.0);
    assert_eq!(k.takt_s, takt);
    assert_eq!(k.bottleneck, "MC_Formation_Cell");
    // Lead time per batch: first mixing start to aging end.
    let aging = id(Line::Cell, StageKind::Aging);
    assert_eq!(k.batch_lead_times_s, vec![end(&aging, 1), end(&aging, 2) - d("TK_Mix_Anode", 1)]);
    assert_eq!(k.observed_batch_interval_s, end(&aging, 2) - end(&aging, 1));
    // Throughput: 2 × 62 good cells over the elapsed plant time.
    assert_eq!((k.cells, k.good_cells), (124, 124));
    assert_eq!(k.elapsed_s, t_end);
    assert!(close(k.throughput_cells_per_h, 124.0 * 3600.0 / t_end, 1e-12));

    // OEE by hand. Assembly: 62 cells on 4 winders take ⌈62/4⌉ = 16 cycles for 15.5 cycles of
    // work: A = 1, P = 62/64, Q = 1.
    let a = k.machines.iter().find(|x| x.machine_id == asm).unwrap();
    assert_eq!(a.oee.availability, 1.0);
    assert!(close(a.oee.performance, 62.0 / 64.0, 1e-12), "assembly P {}", a.oee.performance);
    assert_eq!(a.oee.quality, 1.0);
    assert!(close(a.oee.oee, 62.0 / 64.0, 1e-12));
    // Filling: ⌈62/stations⌉·cycle + soak against 62·cycle/stations + soak.
    let fp = PlantConfig::default().cell.filling;
    let (n, st, cy, soak) = (62.0, fp.stations as f64, fp.station_cycle_s, fp.soak_time_s);
    let fill_p = (n * cy / st + soak) / ((n / st).ceil() * cy + soak);
    assert!(close(fill.oee.performance, fill_p, 1e-12), "filling P {} vs {fill_p}", fill.oee.performance);
    // Inspection: Q = accepted / inspected lane metres; yield the same.
    for line in [Line::Anode, Line::Cathode] {
        let m = k.machines.iter().find(|x| x.machine_id == id(line, StageKind::Inspection)).unwrap();
        let rejected = m.scrap.values().sum::<f64>();
        assert!(rejected > 0.0, "start-up scrap is rejected at inspection");
        assert!(close(m.oee.quality, (m.output - rejected) / m.output, 1e-12));
        assert!(close(m.yield_frac, m.oee.quality, 1e-12));
        assert!(close(m.oee.oee, m.oee.quality, 1e-9), "A = P = 1 in deterministic mode");
    }
    // Yields: no cell rejected; rolled throughput yield of the cell line 1, of a web line the
    // product of its stage yields (inspection's only).
    assert_eq!(k.rolled_throughput_yield["Cell"], 1.0);
    assert!(k.scrap_cells_by_reason.is_empty());
    // Energy adds up per stage.
    let by_stage: f64 = k.energy_by_stage_kwh.values().sum();
    assert!(close(by_stage, k.energy_kwh, 1e-12));
}

#[test]
fn kpis_are_the_same_on_one_thread_and_many() {
    let (a, _) = run(two_batch_config(1));
    let (b, _) = run(two_batch_config(0));
    assert_eq!(serde_json::to_string(&a.kpis).unwrap(), serde_json::to_string(&b.kpis).unwrap());
}

#[test]
fn default_batch_kpis_match_the_figures_of_models_14() {
    let mut c = PlantConfig::deterministic();
    c.plant.start = "2025-01-01T00:00:00Z".into();
    let (report, _) = run(c);
    let k = &report.kpis;
    let m = |id: &str| k.machines.iter().find(|x| x.machine_id == id).unwrap();
    // OEE of cathode inspection: 1 489.1 / 1 499.2 (start-up scrap), A = P = 1.
    let insp = m("MC_Inspect_Cathode");
    assert!((insp.oee.oee - 0.9933).abs() < 0.0005, "cathode inspection OEE {}", insp.oee.oee);
    assert!((insp.oee.availability - 1.0).abs() < 1e-12 && (insp.oee.performance - 1.0).abs() < 1e-9);
    // Energy per stage against §14's table (B ±1 % for integrated energies; the table's
    // one-decimal roundings for the small ones).
    let e = |stage: &str| k.energy_by_stage_kwh[stage];
    let check = |what: &str, got: f64, want: f64, tol: f64| {
        assert!(close(got, want, tol), "{what}: {got:.2} kWh, §14 says {want}");
    };
    check("mixing", e("mixing"), 2.6, 0.02);
    check("coating + drying", e("coating") + e("drying"), 216.6 + 362.6 + 38.1, 0.01);
    check("calendering", e("calendaring"), 17.0 + 17.1, 0.01);
    check("slitting, inspection, rewinding", e("slitting") + e("inspection") + e("rewinding"), 12.9, 0.01);
    check("assembly", e("cell_assembly"), 69.3, 0.01);
    check("filling", e("electrolyte_filling"), 115.0, 0.01);
    check("formation", e("formation_cycling"), 264.3, 0.01);
    check("aging", e("aging"), 98.6, 0.01);
    check("total", k.energy_kwh, 1214.0, 0.01);
    check("cells", k.cell_energy_kwh, 197.8, 0.01);
    assert!(close(k.energy_per_cell_energy, 6.1, 0.03), "kWh per kWh {}", k.energy_per_cell_energy);
    // Formation is the bottleneck; throughput over the single batch's elapsed time.
    assert_eq!(k.bottleneck, "MC_Formation_Cell");
    assert!(close(k.takt_s, 63_280.0, 0.01), "takt {}", k.takt_s);
    assert!(close(k.lead_time_s / 3600.0, 278.0, 0.01), "lead time {} h", k.lead_time_s / 3600.0);
    assert_eq!(k.good_cells, 14_672);
    // Steady state, one batch per takt: 14 672 / 17.58 h ≈ 834 cells/h ≈ 0.10 GWh/yr.
    assert!(close(k.steady_state_cells_per_h, 834.0, 0.01), "{} cells/h", k.steady_state_cells_per_h);
    assert!(close(k.steady_state_gwh_per_yr, 0.10, 0.03), "{} GWh/yr", k.steady_state_gwh_per_yr);
}
