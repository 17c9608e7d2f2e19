//! Plant KPIs over HTTP: the run's `kpis` field, `GET /api/v1/runs/{id}/kpis`, the live
//! `kpis` event and the manifest's `kpis` object all carry the same numbers.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_run_serves_its_kpis_and_an_unfinished_one_answers_409() {
    let s = start(small_config("kpis")).await;
    // A paced run (real time, days long) is running: no KPIs yet.
    let r = s.post("/api/v1/runs", r#"{"speed": 1, "seed": 1}"#).await;
    let blocker = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    s.wait_status(&blocker, "running").await;
    let r = s.get(&format!("/api/v1/runs/{blocker}/kpis")).await;
    assert_eq!(r.status(), 409);
    let err: Value = r.json().await.unwrap();
    assert_eq!((err["error"]["code"].as_str(), err["error"]["field"].as_str()), (Some("run_not_finished"), Some("id")));
    assert_eq!(s.get_json(&format!("/api/v1/runs/{blocker}")).await["kpis"], Value::Null);
    assert_eq!(s.post(&format!("/api/v1/runs/{blocker}/cancel"), "").await.status(), 200);
    s.wait_status(&blocker, "cancelled").await;
    assert_eq!(s.get(&format!("/api/v1/runs/{blocker}/kpis")).await.status(), 409, "a cancelled run has no KPIs");
    assert_eq!(s.get("/api/v1/runs/no-such-run/kpis").await.status(), 404);

    let r = s.post("/api/v1/runs", r#"{"seed": 7, "batches": 2, "speed": "max"}"#).await;
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let mut ws = connect(&format!("{}/api/v1/runs/{id}/events", s.ws)).await;
    let mut live = None;
    while let Some(text) = next_text(&mut ws, Duration::from_secs(60)).await {
        let e: Value = serde_json::from_str(&text).unwrap();
        if e["type"] == "kpis" {
            live = Some(e["kpis"].clone());
        }
    }
    let run = s.wait_status(&id, "finished").await;
    let kpis = s.get_json(&format!("/api/v1/runs/{id}/kpis")).await;
    assert_eq!(run["kpis"], kpis, "the run's field and the route agree");
    assert_eq!(live.as_ref(), Some(&kpis), "the live event carries the same KPIs");
    assert_eq!(kpis["batches"], 2);
    // Seeded variability: good cells are the cells not graded Reject.
    let rejected = run["cells"]["grades"]["Reject"].as_u64().unwrap_or(0);
    assert_eq!(kpis["cells"], 128);
    let good = kpis["good_cells"].as_u64().unwrap();
    assert_eq!(good, 128 - rejected);
    assert_eq!(kpis["machines"].as_array().unwrap().len(), 18);
    assert_eq!(kpis["bottleneck"], "MC_Formation_Cell");
    let end = run["plant_end_t_s"].as_f64().unwrap();
    assert_eq!(kpis["elapsed_s"].as_f64().unwrap(), end);
    let per_h = kpis["throughput_cells_per_h"].as_f64().unwrap();
    assert!((per_h - good as f64 * 3600.0 / end).abs() < 1e-9 * per_h);
    for m in kpis["machines"].as_array().unwrap() {
        let oee = &m["oee"];
        for key in ["availability", "performance", "quality", "oee"] {
            let v = oee[key].as_f64().unwrap();
            assert!(v > 0.0 && v <= 1.0 + 1e-12, "{} {key} {v}", m["machine_id"]);
        }
        if m["unlimited_capacity"] == false {
            let sum: f64 = ["busy_s", "blocked_s", "starved_s", "idle_s"].iter().map(|k| m[k].as_f64().unwrap()).sum();
            assert!((sum - end).abs() < 1e-6 * end, "{}: states add up to the elapsed time", m["machine_id"]);
        }
    }
    // The manifest holds the same object.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(s.data.join("runs").join(&id).join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kpis"], kpis);
}
