//! The run registry across a hard crash: `cellfab serve` is killed with SIGKILL during a paced
//! run and started again on the same data folder (and its SQLite registry).

mod common;

use cellfab_registry::Registry;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(data: &Path, config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cellfab"))
            .args(["serve", "--port", "0", "--data-dir"])
            .arg(data)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::piped())
            .spawn()
            .expect("cellfab serve starts");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let addr = first.split("http://").nth(1).and_then(|r| r.split_whitespace().next()).map(str::to_string);
        let addr = addr.unwrap_or_else(|| panic!("no address in {first:?}"));
        Self { child, addr }
    }

    /// (status code, body) of one request.
    fn call(&self, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
        common::call(&self.addr, method, path, body)
    }

    fn json(&self, method: &str, path: &str, body: &str) -> Value {
        let (code, bytes) = self.call(method, path, body);
        assert!((200..300).contains(&code), "{method} {path}: {code} {}", String::from_utf8_lossy(&bytes));
        serde_json::from_slice(&bytes).unwrap()
    }

    fn wait_for(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let run = self.json("GET", &format!("/api/v1/runs/{id}"), "");
            if done(&run) {
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} never got {what}: {run}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill_9(mut self) {
        // Child::kill is SIGKILL on Unix: no shutdown code runs
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

fn sample_files(run_dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for stage in std::fs::read_dir(run_dir).unwrap().flatten().filter(|e| e.path().is_dir()) {
        for f in std::fs::read_dir(stage.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            if let Some((machine, _)) = name.split_once("_20").filter(|_| name.contains("_result_at_")) {
                *out.entry(machine.to_string()).or_default() += 1;
            }
        }
    }
    out
}

#[test]
fn a_killed_server_restarts_with_its_history_and_marks_the_running_run_interrupted() {
    let data: PathBuf = std::env::temp_dir().join(format!("cellfab-registry-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let config = data.join("plant.json");
    std::fs::write(&config, r#"{"plant": {"start": "2025-01-01T00:00:00Z"}, "cell": {"assembly": {"max_cells": 8}}}"#)
        .unwrap();

    let a = Server::start(&data, &config);
    let done = a.json("POST", "/api/v1/runs", r#"{"batches": 2, "seed": 5}"#)["id"].as_str().unwrap().to_string();
    let before = a.wait_for(&done, "finished", |r| r["status"] == "finished");
    let series_path = format!("/api/v1/runs/{done}/samples?machine=MC_Coat_Anode&max_points=100000");
    let series_before = a.json("GET", &series_path, "");
    // a paced run: killed while it runs
    let paced = a.json("POST", "/api/v1/runs", r#"{"batches": 3, "seed": 6, "speed": 400}"#)["id"]
        .as_str()
        .unwrap()
        .to_string();
    a.wait_for(&paced, "samples", |r| r["samples"].as_u64().unwrap_or(0) > 200);
    std::thread::sleep(Duration::from_millis(700)); // a few registry batches
    a.kill_9();

    let b = Server::start(&data, &config);
    let runs = b.json("GET", "/api/v1/runs", "");
    let status: BTreeMap<String, String> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(status.get(&done).map(String::as_str), Some("finished"), "{status:?}");
    assert_eq!(status.get(&paced).map(String::as_str), Some("interrupted"), "{status:?}");
    // the finished run reads back as it was
    let after = b.json("GET", &format!("/api/v1/runs/{done}"), "");
    for key in
        ["status", "seed", "batches", "start", "results", "cells", "samples", "alarms", "plant_end_t_s", "progress"]
    {
        assert_eq!(after[key], before[key], "{key} of the finished run after the restart");
    }
    assert_eq!(b.json("GET", &series_path, ""), series_before, "its samples");
    let (code, zip) = b.call("GET", &format!("/api/v1/runs/{done}/download"), "");
    assert_eq!(code, 200);
    assert!(zip.len() > 1000);
    let (code, _) = b.call("GET", &format!("/api/v1/runs/{paced}/download"), "");
    assert_eq!(code, 409, "an interrupted run has no complete files to download");
    // a new run works after the restart
    let next = b.json("POST", "/api/v1/runs", r#"{"batches": 1}"#)["id"].as_str().unwrap().to_string();
    b.wait_for(&next, "finished", |r| r["status"] == "finished");
    b.kill_9();

    // the interrupted run's rows against its files
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}", data.join("cellfab.sqlite").display());
        let registry = Registry::open(&url).await.unwrap();
        let record = registry.run(&paced).await.unwrap().unwrap();
        assert_eq!(record.status, "interrupted");
        let folder = PathBuf::from(record.folder.unwrap());
        let counts = registry.counts(&paced).await.unwrap();
        assert!(counts.samples > 0, "rows were stored before the kill: {counts:?}");
        // every final result stored has its file
        for r in registry.stage_results(&paced).await.unwrap() {
            let stage = cellfab_model::StageKind::from_name(&r.stage).unwrap();
            let ts = r.timestamp.replace([':', '.'], "-");
            let file = folder.join(stage.folder()).join(format!("{0}_{ts}_final_results_{0}.json", r.machine_id));
            assert!(file.exists(), "{} has no file", file.display());
        }
        // per machine, the stored samples are a gap-free prefix of what the files hold
        let files = sample_files(&folder);
        let rows = sqlx::query(
            "SELECT machine_id, batch, COUNT(*), MIN(idx), MAX(idx) FROM samples WHERE run_id = $1 \
             GROUP BY machine_id, batch",
        )
        .bind(paced.clone())
        .fetch_all(registry.pool())
        .await
        .unwrap();
        let mut stored: BTreeMap<String, u64> = BTreeMap::new();
        for row in rows {
            use sqlx::Row as _;
            let (machine, n, min, max): (String, i64, i64, i64) = (row.get(0), row.get(2), row.get(3), row.get(4));
            assert_eq!((min, max), (0, n - 1), "{machine}: stored samples have no gaps");
            *stored.entry(machine).or_default() += n as u64;
        }
        for (machine, n) in &stored {
            let on_disk = files.get(machine).copied().unwrap_or(0);
            assert!(*n <= on_disk, "{machine}: {n} rows but {on_disk} files");
        }
        // the finished run: exactly its files
        let done_record = registry.run(&done).await.unwrap().unwrap();
        let done_dir = PathBuf::from(done_record.folder.unwrap());
        let c = registry.counts(&done).await.unwrap();
        assert_eq!(c.samples, sample_files(&done_dir).values().sum::<u64>());
        registry.close().await;
    });
    let _ = std::fs::remove_dir_all(&data);
}
