//! Every SQL query of the Grafana dashboards (deploy/grafana) runs on a populated PostgreSQL.

mod common;

use cellfab_registry::{Registry, Series, WriterOptions};
use common::*;
use serde_json::Value;
use std::path::PathBuf;

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana")
}

/// (dashboard file, panel or variable, SQL) of every query: panel targets' `rawSql` and
/// query variables' `query`.
fn queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let dir = deploy().join("dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let d: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(d["panels"].as_array().is_some_and(|p| !p.is_empty()), "{name} has panels");
        for p in d["panels"].as_array().unwrap() {
            assert_eq!(p["datasource"]["uid"], "cellfab-postgres", "{name}: {}", p["title"]);
            for t in p["targets"].as_array().unwrap() {
                out.push((
                    name.clone(),
                    p["title"].as_str().unwrap().to_string(),
                    t["rawSql"].as_str().unwrap().to_string(),
                ));
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] == "query" {
                out.push((name.clone(), format!("variable {}", v["name"]), v["query"].as_str().unwrap().to_string()));
            }
        }
    }
    out
}

#[test]
fn the_dashboards_use_the_provisioned_data_source() {
    let ds = std::fs::read_to_string(deploy().join("provisioning/datasources/cellfab.yaml")).unwrap();
    assert!(ds.contains("uid: cellfab-postgres") && ds.contains("type: postgres"));
    let names: Vec<String> = queries().into_iter().map(|q| q.0).collect();
    for d in ["alarms.json", "cell-quality.json", "machine-telemetry.json", "plant-kpis.json"] {
        assert!(names.iter().any(|n| n == d), "{d} has queries");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_runs_on_a_populated_postgres() {
    let Some(base) = postgres_url() else { return };
    let url = fresh_postgres(&base, "grafana").await;
    let r = Registry::open(&url).await.unwrap();
    let out = tmp("grafana");
    let run_id = "run-grafana";
    record_run(&r, small_plant(2, 8, 42), &out, run_id, Series::Full, WriterOptions::default()).await;
    r.set_kpis(run_id, &serde_json::json!({"first_pass_yield": 0.93, "cells_per_hour": 120.5})).await.unwrap();
    let all = queries();
    assert!(all.len() >= 20, "{} queries", all.len());
    let mut empty = Vec::new();
    for (file, panel, sql) in &all {
        let sql = sql.replace("$run", run_id).replace("$machine", "MC_Coat_Anode");
        assert!(!sql.contains('$'), "{file} / {panel}: an unknown Grafana variable in {sql}");
        // PostgreSQL runs the whole query; only its row count comes back (the test client
        // cannot decode every type Grafana can, e.g. timestamptz)
        let counted = format!("SELECT COUNT(*) FROM ({sql}) AS panel");
        let rows: i64 = sqlx::query(sqlx::AssertSqlSafe(counted))
            .fetch_one(r.pool())
            .await
            .map(|row| sqlx::Row::get(&row, 0))
            .unwrap_or_else(|e| panic!("{file} / {panel}: {e}\n{sql}"));
        if rows == 0 {
            empty.push(format!("{file} / {panel}"));
        }
    }
    // a populated run fills the panels (only alarm and fault panels may be empty for a short run)
    assert!(
        empty.iter().all(|p| p.contains("alarm") || p.contains("Fault") || p.contains("Raised")),
        "panels without data: {empty:?}"
    );
}
