//! The engine: queue limits, cancellation, determinism across thread counts, pipelining.

use cellfab_plant::events::PlantEvent;
use cellfab_plant::{Delivery, Plant, PlantConfig, PlantError, Speed};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn config(threads: u32, seed: u64, batches: u32) -> PlantConfig {
    let mut c = PlantConfig::default();
    c.plant.start = "2025-01-01T00:00:00Z".into();
    c.plant.threads = threads;
    c.plant.seed = seed;
    c.plant.batches = batches;
    c
}

/// Runs a plant and returns a canonical fingerprint of everything it published:
/// machine/batch → (serialized samples, result) in sample order.
fn fingerprint(c: PlantConfig) -> BTreeMap<(String, u32), Vec<String>> {
    let plant = Plant::new(c, jiff::Timestamp::now()).unwrap();
    let sub = plant.bus().subscribe(1 << 16, Delivery::Reliable);
    let h = std::thread::spawn(move || {
        let mut out: BTreeMap<(String, u32), Vec<String>> = BTreeMap::new();
        for e in sub.rx {
            match &*e {
                PlantEvent::Sample { t_s, machine, index, sample } => {
                    let mut legacy = serde_json::Map::new();
                    sample.legacy(&mut legacy);
                    out.entry((machine.machine_id.clone(), machine.batch)).or_default().push(format!(
                        "{index} {t_s} {} {}",
                        serde_json::Value::Object(legacy),
                        sample.to_json()
                    ));
                }
                PlantEvent::StageFinished { machine, result, start_t_s, .. } => {
                    out.entry((machine.machine_id.clone(), machine.batch))
                        .or_default()
                        .push(format!("end {start_t_s} {}", result.to_json()));
                }
                PlantEvent::CellResults { batch, rows } => {
                    out.entry(("cells".into(), *batch)).or_default().push(serde_json::to_string(&**rows).unwrap());
                }
                _ => {}
            }
        }
        out
    });
    plant.run().unwrap();
    h.join().unwrap()
}

#[test]
fn same_seed_same_results_on_one_thread_and_many_with_two_batches() {
    let a = fingerprint(config(1, 11, 2));
    let b = fingerprint(config(0, 11, 2));
    assert_eq!(a.len(), b.len());
    assert!(a.len() >= 2 * 19, "machines × batches: {}", a.len());
    for (k, v) in &a {
        assert!(v == &b[k], "{k:?} differs between 1 thread and many");
    }
    let c = fingerprint(config(0, 12, 1));
    assert_ne!(a[&("MC_Coat_Anode".to_string(), 1)], c[&("MC_Coat_Anode".to_string(), 1)]);
}

#[test]
fn batches_pipeline_through_the_machines() {
    let plant = Plant::new(config(0, 1, 2), jiff::Timestamp::now()).unwrap();
    let report = plant.run().unwrap();
    let start = |id: &str, batch: u32| {
        report.stages.iter().find(|s| s.machine.machine_id == id && s.machine.batch == batch).unwrap().start_t_s
    };
    let end = |id: &str, batch: u32| {
        let s = report.stages.iter().find(|s| s.machine.machine_id == id && s.machine.batch == batch).unwrap();
        s.start_t_s + s.duration_s
    };
    // batch 2 mixes right after batch 1, while batch 1 coats
    assert_eq!(start("TK_Mix_Anode", 2), end("TK_Mix_Anode", 1));
    assert!(start("TK_Mix_Anode", 2) < end("MC_Coat_Anode", 1));
    // coater and dryer start together; the coater waits for its dryer to empty
    assert_eq!(start("MC_Coat_Cathode", 1), start("MC_Dry_Cathode", 1));
    assert!(start("MC_Coat_Anode", 2) >= end("MC_Dry_Anode", 1));
    // assembly starts when both reels are ready
    let ready = end("MC_Rewind_Anode", 1).max(end("MC_Rewind_Cathode", 1));
    assert_eq!(start("MC_Assembly_Cell", 1), ready);
    // one batch per machine at a time
    assert!(start("MC_Formation_Cell", 2) >= end("MC_Formation_Cell", 1));
}

#[test]
fn a_full_queue_is_a_clear_error() {
    let mut c = config(0, 1, 65);
    c.plant.queue_capacity = 64;
    match Plant::new(c, jiff::Timestamp::now()) {
        Err(PlantError::QueueFull { requested: 65, capacity: 64 }) => {}
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("65 batches accepted by a queue of 64"),
    }
}

#[test]
fn out_of_range_parameter_is_refused_with_its_path() {
    let mut c = config(0, 1, 1);
    c.anode.calendaring.line_load_n_m = -5.0;
    let err = Plant::new(c, jiff::Timestamp::now()).err().expect("refused");
    match err {
        PlantError::Param(e) => {
            assert_eq!(e.field, "anode.calendaring.line_load_n_m");
            assert_eq!(e.value, -5.0);
        }
        e => panic!("wrong error {e}"),
    }
}

#[test]
fn a_paced_run_can_be_cancelled() {
    let mut c = config(0, 1, 1);
    c.plant.speed = Speed::Factor(60.0); // an hour of plant time per minute: would take days
    let plant = Plant::new(c, jiff::Timestamp::now()).unwrap();
    let cancel = plant.cancel_token();
    let t0 = Instant::now();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        cancel.cancel();
    });
    match plant.run() {
        Err(PlantError::Cancelled) => {}
        other => panic!("expected Cancelled, got {:?}", other.map(|r| r.end_t_s)),
    }
    assert!(t0.elapsed() < Duration::from_secs(20), "cancellation took {:?}", t0.elapsed());
}

#[test]
fn a_slow_live_subscriber_loses_events_but_does_not_stall_the_plant() {
    let plant = Plant::new(config(0, 1, 1), jiff::Timestamp::now()).unwrap();
    let live = plant.bus().subscribe(8, cellfab_plant::Delivery::Live);
    plant.run().unwrap();
    // nobody read the live channel: it holds its 8 events and counted the rest as dropped
    assert_eq!(live.rx.try_iter().count(), 8);
    assert!(live.dropped.load(std::sync::atomic::Ordering::Relaxed) > 1000);
}

#[test]
fn config_files_merge_onto_defaults_and_refuse_unknown_keys() {
    let c = PlantConfig::from_toml_str("[plant]\nseed = 9\n[cathode.coating]\ncoating_speed_m_s = 0.6\n").unwrap();
    assert_eq!(c.plant.seed, 9);
    assert_eq!(c.cathode.coating.coating_speed_m_s, 0.6);
    assert_eq!(c.anode, PlantConfig::default().anode);
    let j = PlantConfig::from_json_str(r#"{"plant": {"batches": 3}}"#).unwrap();
    assert_eq!(j.plant.batches, 3);
    match PlantConfig::from_toml_str("[plant]\nsed = 9\n") {
        Err(PlantError::Config(m)) => assert!(m.contains("unknown field `sed`"), "{m}"),
        other => panic!("accepted a typo: {:?}", other.map(|c| c.plant.seed)),
    }
    // the default TOML reads back to the default config
    let back = PlantConfig::from_toml_str(&PlantConfig::default().to_toml()).unwrap();
    assert_eq!(back, PlantConfig::default());
}
