//! `POST /api/v1/runs` with `formats`: the run folder holds the tables the request asked
//! for, listed in the manifest; an unknown format is a 422 naming the field and queues nothing.

mod common;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_request_with_formats_writes_the_tables_into_the_run_folder() {
    let s = start(small_config("tables")).await;
    let r = s.post("/api/v1/runs", r#"{"seed": 7, "formats": ["parquet", "csv"]}"#).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    s.wait_status(&id, "finished").await;
    let dir = s.data.join("runs").join(&id);
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let tables = manifest["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2 * 21, "18 machines, cells, events and kpis in two formats");
    for t in tables {
        assert!(dir.join(t["path"].as_str().unwrap()).is_file(), "{t}");
        assert!(["parquet", "csv"].contains(&t["format"].as_str().unwrap()));
    }
    let cells = tables.iter().find(|t| t["path"] == "tables/parquet/cells.parquet").unwrap();
    assert_eq!(cells["rows"], manifest["cells"]);
    // without "json" the per-sample files are not written
    assert!(!dir.join("coating_output").exists());

    let r = s.post("/api/v1/runs", r#"{"formats": ["json", "xlsx"]}"#).await;
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["field"], "formats");
    assert!(e["error"]["message"].as_str().unwrap().contains("xlsx"), "{e}");
    let runs = s.get_json("/api/v1/runs").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "the refused request queued nothing");
}
