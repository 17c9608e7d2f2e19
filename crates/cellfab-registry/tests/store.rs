//! The store suite: every test runs against SQLite and against a real PostgreSQL server.

mod common;

use cellfab_registry::{Counts, Registry, RunRecord, Series, WriterOptions};
use common::*;
use serde_json::json;
use sqlx::Row as _;
use std::time::Duration;

fn record(id: &str, status: &str) -> RunRecord {
    RunRecord {
        id: id.into(),
        source: "api".into(),
        status: status.into(),
        seed: u64::MAX,
        batches: 3,
        speed: "max".into(),
        plant_start: START.into(),
        created_at: format!("2026-01-01T00:00:0{}Z", id.len() % 10),
        started_at: None,
        finished_at: None,
        error: None,
        plant_end_t_s: None,
        folder: None,
        config: json!({"plant": {"seed": 1}}),
        kpis: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_and_record_their_version() {
    for (backend, url) in backends("migrations").await {
        let first = Registry::open(&url).await.unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert_eq!(cellfab_registry::schema::version(&first).await.unwrap(), cellfab_registry::schema::VERSION);
        first.insert_run(&record("a", "finished")).await.unwrap();
        first.close().await;
        // a second start migrates nothing and keeps the data
        let again = Registry::open(&url).await.unwrap();
        assert_eq!(cellfab_registry::schema::version(&again).await.unwrap(), cellfab_registry::schema::VERSION);
        let n: i64 =
            sqlx::query("SELECT COUNT(*) FROM schema_migrations").fetch_one(again.pool()).await.unwrap().get(0);
        assert_eq!(n, cellfab_registry::schema::MIGRATIONS.len() as i64, "{backend}");
        assert_eq!(again.runs().await.unwrap().len(), 1, "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_keep_their_fields_and_running_ones_become_interrupted() {
    for (backend, url) in backends("runs").await {
        let r = Registry::open(&url).await.unwrap();
        r.insert_run(&record("done", "queued")).await.unwrap();
        r.insert_run(&record("running", "queued")).await.unwrap();
        r.insert_run(&record("q", "queued")).await.unwrap();
        r.set_running("done", "2026-01-01T00:00:01Z", "/data/runs/done").await.unwrap();
        r.set_ended("done", "finished", "2026-01-01T00:00:09Z", None, Some(1234.5)).await.unwrap();
        r.set_running("running", "2026-01-01T00:00:02Z", "/data/runs/running").await.unwrap();
        r.set_kpis("done", &json!({"yield": 0.97, "oee": 0.81})).await.unwrap();

        assert_eq!(r.mark_interrupted("2026-01-01T00:01:00Z").await.unwrap(), 2, "{backend}");
        let done = r.run("done").await.unwrap().unwrap();
        assert_eq!(done.status, "finished");
        assert_eq!(done.seed, u64::MAX, "{backend}: a u64 seed survives");
        assert_eq!(done.plant_end_t_s, Some(1234.5));
        assert_eq!(done.folder.as_deref(), Some("/data/runs/done"));
        assert_eq!(done.kpis, Some(json!({"yield": 0.97, "oee": 0.81})));
        assert_eq!(done.config, json!({"plant": {"seed": 1}}));
        for id in ["running", "q"] {
            let run = r.run(id).await.unwrap().unwrap();
            assert_eq!(run.status, "interrupted", "{backend}: {id}");
            assert_eq!(run.finished_at.as_deref(), Some("2026-01-01T00:01:00Z"));
        }
        r.delete_run("q").await.unwrap();
        assert!(r.run("q").await.unwrap().is_none());
        assert_eq!(r.runs().await.unwrap().len(), 2, "{backend}");
        assert!(Registry::open("mysql://x").await.is_err());
    }
}

async fn per_machine_samples(r: &Registry, run_id: &str) -> Vec<(String, i64)> {
    sqlx::query("SELECT machine_id, COUNT(*) FROM samples WHERE run_id = $1 GROUP BY machine_id ORDER BY machine_id")
        .bind(run_id.to_string())
        .fetch_all(r.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get::<String, _>(0), row.get::<i64, _>(1)))
        .collect()
}

fn manifest_samples(run_dir: &std::path::Path) -> Vec<(String, i64)> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(run_dir.join("manifest.json")).unwrap()).unwrap();
    m["sample_counts"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_i64().unwrap())).collect()
}

fn assert_matches_files(backend: &str, counts: Counts, files: &FileCounts) {
    assert_eq!(counts.samples, files.samples, "{backend}: samples");
    assert_eq!(counts.stage_results, files.stage_results, "{backend}: final results");
    assert_eq!(counts.cells, files.cells, "{backend}: cells");
    assert_eq!(counts.alarms, files.alarms, "{backend}: alarms");
    // every machine goes on and off once per batch
    assert_eq!(counts.machine_states, 2 * files.stage_results, "{backend}: machine states");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_speed_run_of_20_batches_stores_exactly_the_rows_its_files_hold() {
    for (backend, url) in backends("full20").await {
        let r = Registry::open(&url).await.unwrap();
        let out = tmp(&format!("full20-{backend}"));
        let (dir, stats) =
            record_run(&r, small_plant(20, 8, 7), &out, "run-full", Series::Full, WriterOptions::default()).await;
        let files = file_counts(&dir);
        assert!(files.samples > 5000 && files.stage_results == 20 * 18, "{files:?}");
        assert!(files.cells > 0, "{files:?}");
        let counts = r.counts("run-full").await.unwrap();
        assert_matches_files(backend, counts, &files);
        assert_eq!(per_machine_samples(&r, "run-full").await, manifest_samples(&dir), "{backend}");
        assert_eq!(
            stats.rows,
            counts.samples + counts.stage_results + counts.cells + counts.alarms + counts.machine_states
        );
        // what the server reads back
        let grades = r.cell_grades("run-full").await.unwrap();
        assert_eq!(grades.iter().map(|g| g.1).sum::<u64>(), files.cells);
        let results = r.stage_results("run-full").await.unwrap();
        assert_eq!(results.len() as u64, files.stage_results);
        assert!(results.iter().all(|x| x.summary.is_object() && x.duration_s > 0.0));
        let coat = r.samples("run-full", "MC_Coat_Anode", None, None).await.unwrap();
        assert!(coat.len() > 20 && coat.iter().all(|p| p.fields.contains_key("stage_time_s") || !p.fields.is_empty()));
        assert!(coat.windows(2).all(|w| (w[0].batch, w[0].stage_time_s) <= (w[1].batch, w[1].stage_time_s)));
        let mid = coat.iter().map(|p| p.stage_time_s).fold(0.0, f64::max) / 2.0;
        let late = r.samples("run-full", "MC_Coat_Anode", Some(mid), None).await.unwrap();
        assert!(late.len() < coat.len() && late.iter().all(|p| p.stage_time_s >= mid), "{backend}: from = {mid}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_store_makes_the_plant_wait_and_still_stores_every_row() {
    for (backend, url) in backends("throttled").await {
        let r = Registry::open(&url).await.unwrap();
        let out = tmp(&format!("throttled-{backend}"));
        let slow =
            WriterOptions { max_rows: 200, queue: 1, delay: Duration::from_millis(30), ..WriterOptions::default() };
        let (dir, stats) = record_run(&r, small_plant(20, 8, 11), &out, "run-slow", Series::Full, slow).await;
        assert!(stats.waits > 0, "{backend}: the plant never had to wait: {stats:?}");
        let files = file_counts(&dir);
        assert_matches_files(backend, r.counts("run-slow").await.unwrap(), &files);
        assert_eq!(per_machine_samples(&r, "run-slow").await, manifest_samples(&dir), "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decimated_series_keeps_fewer_samples_and_every_other_row() {
    for (backend, url) in backends("decimated").await {
        let r = Registry::open(&url).await.unwrap();
        let out = tmp(&format!("decimated-{backend}"));
        let series: Series = "60".parse().unwrap();
        let (dir, _) = record_run(&r, small_plant(2, 8, 3), &out, "run-dec", series, WriterOptions::default()).await;
        let files = file_counts(&dir);
        let counts = r.counts("run-dec").await.unwrap();
        assert!(counts.samples > 0 && counts.samples < files.samples, "{backend}: {counts:?} vs {files:?}");
        assert_eq!(counts.stage_results, files.stage_results);
        assert_eq!(counts.cells, files.cells);
        assert_eq!(counts.alarms, files.alarms);
        // kept points are at least 60 s of stage time apart within a machine and batch
        let coat = r.samples("run-dec", "MC_Coat_Anode", None, None).await.unwrap();
        assert!(coat.windows(2).all(|w| w[0].batch != w[1].batch || w[1].stage_time_s - w[0].stage_time_s >= 60.0));
    }
    assert!("0".parse::<Series>().is_err() && "fast".parse::<Series>().is_err());
    assert_eq!("full".parse::<Series>().unwrap(), Series::Full);
}
