//! The prototype's routes over real sockets: /start-both, /files, /ws/status, /reset.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

fn is_status_frame(frame: &str) -> bool {
    // [YYYY-MM-DD HH:MM:SS] <message>
    let b = frame.as_bytes();
    frame.len() > 22
        && b[0] == b'['
        && b[20] == b']'
        && b[21] == b' '
        && frame[1..20].chars().enumerate().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == ' ',
            13 | 16 => c == ':',
            _ => c.is_ascii_digit(),
        })
}

const MACHINES: usize = 18;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_both_completes_every_machine_and_files_hold_that_runs_json() {
    let s = start(small_config("startboth")).await;
    let r = s.post("/start-both", START_BOTH).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("completed"));
    let status = body["completion_status"].as_object().unwrap();
    assert_eq!(status.len(), MACHINES);
    for id in ["TK_Mix_Anode", "MC_Coat_Cathode", "MC_Rewind_Anode", "MC_Assembly_Cell", "MC_Aging_Cell"] {
        assert_eq!(status[id]["completed"], true, "{id}");
        assert!(status[id]["timestamp"].as_str().unwrap().starts_with("2025-01-"), "{id}");
    }
    assert!(status.values().all(|m| m["completed"] == true));
    let run_id = body["run_id"].as_str().unwrap().to_string();
    let on_disk: Vec<String> =
        s.files().into_iter().filter_map(|f| f.strip_prefix(&format!("runs/{run_id}/")).map(String::from)).collect();

    for (side, other) in [("Anode", "Cathode"), ("Cathode", "Anode")] {
        let r = s.get(&format!("/files/{side}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/zip");
        let entries = unzip(&r.bytes().await.unwrap());
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        let expected: Vec<&str> = on_disk
            .iter()
            .map(String::as_str)
            .filter(|f| {
                f.ends_with(".json") && f.contains('/') && (f.contains(&format!("_{side}_")) || f.contains("_Cell_"))
            })
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        let mut expected_sorted = expected.clone();
        expected_sorted.sort();
        assert_eq!(sorted, expected_sorted, "the {side} zip holds exactly that run's {side} and cell files");
        assert!(names.iter().any(|n| n.starts_with(&format!("mixing_output/TK_Mix_{side}_"))));
        assert!(names.iter().any(|n| n.starts_with("aging_output/MC_Aging_Cell_")));
        assert!(!names.iter().any(|n| n.contains(&format!("_{other}_"))));
        for (name, bytes) in &entries {
            serde_json::from_slice::<Value>(bytes).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        }
    }
    let all = unzip(&s.get("/files/all").await.bytes().await.unwrap());
    assert_eq!(all.len(), on_disk.len(), "all = every file of the run folder");
    assert!(all.iter().any(|(n, _)| n == "manifest.json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_socket_streams_the_run_and_replays_the_last_100_messages() {
    let s = start(small_config("status")).await;
    let mut live = connect(&format!("{}/ws/status", s.ws)).await;
    // two runs give well over 100 messages
    for _ in 0..2 {
        assert_eq!(s.post("/start-both", START_BOTH).await.status(), 200);
    }
    let mut seen = Vec::new();
    while let Some(frame) = next_text(&mut live, Duration::from_millis(500)).await {
        seen.push(frame);
    }
    assert!(seen.len() > 100, "{} messages", seen.len());
    assert!(seen.iter().all(|f| is_status_frame(f)), "{:?}", seen.iter().find(|f| !is_status_frame(f)));
    let text = seen.join("\n");
    for expected in
        ["Machine TK_Mix_Anode is on", "Machine MC_Aging_Cell completed aging", "Batch 1 finished", "Run finished"]
    {
        assert!(text.contains(expected), "missing {expected:?}");
    }

    let mut late = connect(&format!("{}/ws/status", s.ws)).await;
    let mut history = Vec::new();
    while let Some(frame) = next_text(&mut late, Duration::from_millis(500)).await {
        history.push(frame);
    }
    assert_eq!(history.len(), 100);
    assert_eq!(history, seen[seen.len() - 100..].to_vec(), "the history is the last 100 messages, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_empties_the_files() {
    let s = start(small_config("reset")).await;
    let r = s.get("/files/Anode").await;
    assert_eq!(r.status(), 404, "no results yet");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "not_found");

    assert_eq!(s.post("/start-both", START_BOTH).await.status(), 200);
    assert_eq!(s.get("/files/Anode").await.status(), 200);
    assert!(!s.files().is_empty());

    let r = s.post("/reset", "").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["runs_cleared"], 1);
    assert_eq!(s.get("/files/Anode").await.status(), 404);
    assert_eq!(s.get("/files/all").await.status(), 404);
    assert!(s.files().is_empty(), "{:?}", s.files());
    assert_eq!(s.get_json("/api/v1/runs").await["runs"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_cancels_a_running_simulation() {
    let s = start(small_config("reset-running")).await;
    // real time: would take days
    let r = s.post("/api/v1/runs", r#"{"speed": 1}"#).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    s.wait_status(&id, "running").await;
    let t = std::time::Instant::now();
    assert_eq!(s.post("/reset", "").await.status(), 200);
    assert!(t.elapsed() < Duration::from_secs(30));
    assert!(s.files().is_empty());
    assert_eq!(s.get(&format!("/api/v1/runs/{id}")).await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_the_prototype_ui_origin() {
    let s = start(small_config("cors")).await;
    for (origin, allowed) in
        [("http://localhost:3000", true), ("http://localhost:5173", true), ("http://evil.example", false)]
    {
        let r = s
            .http
            .request(reqwest::Method::OPTIONS, format!("{}/start-both", s.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        let got = r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(got.as_deref() == Some(origin), allowed, "{origin}");
    }
}
