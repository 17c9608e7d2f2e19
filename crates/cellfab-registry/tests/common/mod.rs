//! Backends for the store suite, a small plant run into a registry, and file counts.
#![allow(dead_code)]

use cellfab_plant::events::DEFAULT_SUBSCRIBER_CAPACITY;
use cellfab_plant::{Delivery, Plant, PlantConfig};
use cellfab_registry::{EventRows, Registry, Series, WriterOptions, WriterStats};
use cellfab_store::SeedLayoutWriter;
use std::path::{Path, PathBuf};

pub const START: &str = "2025-01-01T00:00:00Z";

/// A fresh temporary folder.
pub fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cellfab-registry-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The PostgreSQL server given by `CELLFAB_TEST_POSTGRES_URL` (scripts/test.sh starts a
/// throw-away cluster and sets it). Without it the PostgreSQL half of a test fails under
/// CI=true and is skipped, with a printed reason, elsewhere.
pub fn postgres_url() -> Option<String> {
    match std::env::var("CELLFAB_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let reason = "CELLFAB_TEST_POSTGRES_URL is not set: run `bash scripts/test.sh` (it starts a \
                          throw-away PostgreSQL) or point it to a server (postgres://user@127.0.0.1:PORT/postgres)";
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("the PostgreSQL tests cannot run in CI: {reason}");
            }
            eprintln!("SKIPPED the PostgreSQL half of this test: {reason}");
            None
        }
    }
}

/// A new, empty PostgreSQL database on the test server, as a URL.
pub async fn fresh_postgres(base: &str, name: &str) -> String {
    let db = format!("cellfab_test_{}_{}", std::process::id(), name.replace('-', "_"));
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(base).await.expect("the test PostgreSQL answers");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}"))).execute(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&admin).await.unwrap();
    admin.close().await;
    let (head, tail) = match base.split_once('?') {
        Some((h, t)) => (h, format!("?{t}")),
        None => (base, String::new()),
    };
    let scheme_end = head.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    format!("{host_part}/{db}{tail}")
}

/// Every backend of the suite: (name, URL). SQLite always; PostgreSQL when available.
pub async fn backends(name: &str) -> Vec<(&'static str, String)> {
    let dir = tmp(&format!("db-{name}"));
    let mut out = vec![("sqlite", format!("sqlite://{}", dir.join("cellfab.sqlite").display()))];
    if let Some(base) = postgres_url() {
        out.push(("postgres", fresh_postgres(&base, name).await));
    }
    out
}

/// A small plant: `batches` batches of `cells` cells, fixed start and seed, full speed.
pub fn small_plant(batches: u32, cells: u32, seed: u64) -> Plant {
    let mut config = PlantConfig::default();
    config.plant.batches = batches;
    config.plant.seed = seed;
    config.plant.start = START.into();
    config.cell.assembly.max_cells = cells;
    // every stage samples 20 times less often than by default: a 20-batch run stays small
    let mut value = serde_json::to_value(&config).unwrap();
    sparse_samples(&mut value);
    let config: PlantConfig = serde_json::from_value(value).unwrap();
    Plant::new(config, jiff::Timestamp::now()).expect("a valid plant")
}

/// Runs `plant` into a run folder under `out` and into `registry` (the way the server
/// records a run), returning the run folder and the writer's statistics.
pub async fn record_run(
    registry: &Registry,
    plant: Plant,
    out: &Path,
    run_id: &str,
    series: Series,
    options: WriterOptions,
) -> (PathBuf, WriterStats) {
    let record = cellfab_registry::RunRecord {
        id: run_id.into(),
        source: "test".into(),
        status: "running".into(),
        seed: plant.config().plant.seed,
        batches: plant.config().plant.batches,
        speed: plant.config().plant.speed.to_string(),
        plant_start: plant.epoch().to_string(),
        created_at: jiff::Timestamp::now().to_string(),
        started_at: Some(jiff::Timestamp::now().to_string()),
        finished_at: None,
        error: None,
        plant_end_t_s: None,
        folder: Some(out.join(run_id).to_string_lossy().to_string()),
        config: serde_json::to_value(plant.config()).unwrap(),
        kpis: None,
    };
    registry.insert_run(&record).await.unwrap();
    let mut writer = SeedLayoutWriter::create(out, run_id, plant.epoch()).unwrap();
    let events = plant.bus().subscribe(DEFAULT_SUBSCRIBER_CAPACITY, Delivery::Reliable);
    let mut rows = EventRows::new(run_id, plant.epoch(), series);
    let mut sink = cellfab_registry::writer::spawn(registry.clone(), options, tokio::runtime::Handle::current());
    let handler = std::thread::spawn(move || {
        for event in events.rx {
            writer.handle(&event).unwrap();
            rows.rows(&event, sink.buffer());
            sink.flush_if_due().unwrap();
        }
        (writer, sink.finish().unwrap())
    });
    let (plant, report) = tokio::task::spawn_blocking(move || {
        let report = plant.run().expect("the run finishes");
        (plant, report)
    })
    .await
    .unwrap();
    let (writer, stats) = tokio::task::spawn_blocking(move || handler.join().unwrap()).await.unwrap();
    let config = serde_json::to_value(plant.config()).unwrap();
    let dir = writer.run_dir().to_path_buf();
    writer.finish(report.seed, &report.start, report.end_t_s, config, 0.0).unwrap();
    registry
        .set_ended(run_id, "finished", &jiff::Timestamp::now().to_string(), None, Some(report.end_t_s))
        .await
        .unwrap();
    (dir, stats)
}

/// What a run folder holds, counted like the registry's tables.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FileCounts {
    pub samples: u64,
    pub stage_results: u64,
    pub cells: u64,
    pub alarms: u64,
}

pub fn lines(path: &Path) -> u64 {
    std::fs::read_to_string(path).map(|t| t.lines().filter(|l| !l.trim().is_empty()).count() as u64).unwrap_or(0)
}

/// Files per kind in a run folder: sample files, final-result files, lines of
/// cell_results.jsonl and alarms.jsonl.
pub fn file_counts(run_dir: &Path) -> FileCounts {
    let mut c = FileCounts {
        cells: lines(&run_dir.join("cell_results.jsonl")),
        alarms: lines(&run_dir.join("alarms.jsonl")),
        ..Default::default()
    };
    for stage in std::fs::read_dir(run_dir).unwrap().flatten().filter(|e| e.path().is_dir()) {
        for f in std::fs::read_dir(stage.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            if name.contains("_result_at_") {
                c.samples += 1;
            } else if name.contains("_final_results_") {
                c.stage_results += 1;
            }
        }
    }
    c
}

fn sparse_samples(v: &mut serde_json::Value) {
    if let serde_json::Value::Object(m) = v {
        for (k, x) in m.iter_mut() {
            match (k.as_str(), x.as_f64()) {
                ("sample_interval_s", Some(s)) => *x = serde_json::Value::from(s * 20.0),
                _ => sparse_samples(x),
            }
        }
    }
}
