//! The server's figures over real loopback HTTP: the samples endpoint on a machine with many
//! stored samples, and live-event fan-out of a paced run to many websocket viewers.

use super::formats::config;
use super::summary;
use anyhow::{Context, Result};
use cellfab_plant::events::PlantEvent;
use cellfab_plant::{Delivery, Plant};
use cellfab_registry::{EventRows, Registry, RunRecord, Series};
use cellfab_server::{PlantHook, ServerConfig};
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request on a fresh loopback connection; returns the status and the body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).context("no HTTP status line")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Every event of one trimmed batch (64 cells), in arrival order.
fn one_batch_events() -> Result<(Plant, Vec<Arc<PlantEvent>>)> {
    let plant = Plant::new(config(Some(64)), jiff::Timestamp::now())?;
    let sub = plant.bus().subscribe(1 << 16, Delivery::Reliable);
    let h = std::thread::spawn(move || sub.rx.into_iter().collect::<Vec<_>>());
    plant.run()?;
    let events = h.join().map_err(|_| anyhow::anyhow!("collector crashed"))?;
    Ok((plant, events))
}

/// Fills the registry at `url` with one finished run whose busiest machine holds `target`
/// samples (one trimmed batch's samples of that machine, repeated under new batch numbers).
async fn fill(url: &str, folder: &Path, target: u64) -> Result<(String, String)> {
    let (plant, events) = tokio::task::spawn_blocking(one_batch_events).await??;
    let mut per_machine = std::collections::BTreeMap::<String, Vec<Arc<PlantEvent>>>::new();
    for e in &events {
        if let PlantEvent::Sample { machine, .. } = &**e {
            per_machine.entry(machine.machine_id.clone()).or_default().push(e.clone());
        }
    }
    let (machine, samples) = per_machine.into_iter().max_by_key(|(_, v)| v.len()).context("no samples")?;
    let registry = Registry::open(url).await?;
    let id = "run-bench-samples".to_string();
    let now = jiff::Timestamp::now().to_string();
    registry
        .insert_run(&RunRecord {
            id: id.clone(),
            source: "cli".into(),
            status: "finished".into(),
            seed: 1,
            batches: 1,
            speed: "max".into(),
            plant_start: plant.config().plant.start.clone(),
            created_at: now.clone(),
            started_at: Some(now.clone()),
            finished_at: Some(now),
            error: None,
            plant_end_t_s: None,
            folder: Some(folder.display().to_string()),
            config: serde_json::to_value(plant.config())?,
            kpis: None,
        })
        .await?;
    // one batch's samples through the registry's writer, then copies of them under new batch
    // numbers, doubled inside the database (writing 10^6 rows one by one takes minutes); a
    // copy continues the series, so its position (seq) is the original's plus the rows before
    let mut rows = EventRows::new(&id, plant.epoch(), Series::Full);
    let mut buf = Vec::new();
    for e in samples.iter().take(target as usize) {
        rows.rows(e, &mut buf);
    }
    registry.write(&buf).await?;
    let mut have = buf.len() as u64;
    while have < target {
        let sql =
            "INSERT INTO samples (run_id, machine_id, line, stage, batch, idx, t_s, stage_time_s, ts_ms, fields, seq) \
                   SELECT run_id, machine_id, line, stage, batch + $3, idx, t_s, stage_time_s, ts_ms, fields, seq + $5 \
                   FROM samples WHERE run_id = $1 AND machine_id = $2 ORDER BY seq LIMIT $4";
        let shift: i64 = sqlx_max_batch(&registry, &id, &machine).await?;
        sqlx::query(sql)
            .bind(id.clone())
            .bind(machine.clone())
            .bind(shift)
            .bind((target - have).min(have) as i64)
            .bind(have as i64)
            .execute(registry.pool())
            .await?;
        have += (target - have).min(have);
    }
    registry.close().await;
    Ok((id, machine))
}

/// The largest batch number stored for the machine.
async fn sqlx_max_batch(registry: &Registry, id: &str, machine: &str) -> Result<i64> {
    use sqlx::Row;
    let row = sqlx::query("SELECT MAX(batch) FROM samples WHERE run_id = $1 AND machine_id = $2")
        .bind(id.to_string())
        .bind(machine.to_string())
        .fetch_one(registry.pool())
        .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

/// Part 3: `GET /api/v1/runs/{id}/samples?machine=…&max_points=2000` over `target` samples.
pub fn samples_endpoint(target: u64, calls: u32, scratch: &Path) -> Result<()> {
    println!("\n== samples endpoint: max_points=2000 over {target} samples of one machine (SQLite) ==");
    let dir = scratch.join("samples");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("cellfab.sqlite").display());
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let t0 = Instant::now();
        let (id, machine) = fill(&url, &dir, target).await?;
        println!("filled {target} samples of {machine} in {:.1} s", t0.elapsed().as_secs_f64());
        let mut cfg = ServerConfig::new(dir.clone());
        cfg.database = url.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr, server) = cellfab_server::bind(cfg, ([127, 0, 0, 1], 0).into(), async {
            let _ = rx.await;
        })
        .await?;
        let server = tokio::spawn(server);
        let path = format!("/api/v1/runs/{id}/samples?machine={machine}&max_points=2000");
        let mut times = Vec::new();
        for _ in 0..calls {
            let t0 = Instant::now();
            let (status, body) = http(addr, "GET", &path, "").await?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(status == 200, "GET {path}: {status} {body}");
            let v: serde_json::Value = serde_json::from_str(&body).context("samples body")?;
            anyhow::ensure!(
                v["total_points"].as_u64() == Some(target),
                "total_points {} != {target}",
                v["total_points"]
            );
        }
        let _ = tx.send(());
        let _ = server.await;
        let s = summary(times);
        println!("GET {path}: {calls} calls, best {:.1} ms, median {:.1} ms, p99 {:.1} ms", s.best, s.median, s.p99);
        anyhow::Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// What the plant itself did during a paced run: its start, and for every event with a plant
/// time, how late the pacer emitted it.
#[derive(Default)]
struct PlantSide {
    start: Option<Instant>,
    /// (wall time of emission, plant time) of every timed event the plant published.
    emitted: Vec<(Instant, f64)>,
}

/// Figures of one paced run.
struct PacedRun {
    /// Plant seconds per wall second actually reached (last emitted plant time / its wall time).
    achieved_speed: f64,
    /// Pacer lateness of every emitted event [ms] (0 when the plant keeps pace).
    plant_late_ms: Vec<f64>,
    /// Receive lag of every event at every viewer [ms].
    viewer_lag_ms: Vec<f64>,
}

fn late_ms(at: Instant, start: Instant, t_s: f64, speed: f64) -> f64 {
    let due = start + Duration::from_secs_f64(t_s / speed);
    at.checked_duration_since(due).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// One paced 64-cell run on an in-process server with `viewers` websocket clients, cancelled
/// after `seconds` of wall time.
async fn paced_run(viewers: usize, speed: f64, seconds: f64, scratch: &Path) -> Result<PacedRun> {
    let dir = scratch.join(format!("fanout-{viewers}"));
    let _ = std::fs::remove_dir_all(&dir);
    let side = Arc::new(Mutex::new(PlantSide::default()));
    let mut cfg = ServerConfig::new(dir.clone());
    cfg.base_config = config(Some(64));
    let hook_side = side.clone();
    cfg.plant_hook = Some(PlantHook(Arc::new(move |plant: &Plant| {
        // the pacer starts when `run()` starts, right after this hook
        hook_side.lock().expect("plant side").start = Some(Instant::now());
        let sub = plant.bus().subscribe(1 << 14, Delivery::Live);
        let side = hook_side.clone();
        std::thread::spawn(move || {
            for e in sub.rx {
                if let Some(t_s) = e.t_s() {
                    side.lock().expect("plant side").emitted.push((Instant::now(), t_s));
                }
            }
        });
    })));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = cellfab_server::bind(cfg, ([127, 0, 0, 1], 0).into(), async {
        let _ = rx.await;
    })
    .await?;
    let server = tokio::spawn(server);
    let body = format!(r#"{{"seed": 1, "start": "2025-01-01T00:00:00Z", "speed": {speed}}}"#);
    let (status, answer) = http(addr, "POST", "/api/v1/runs", &body).await?;
    anyhow::ensure!(status == 202, "POST /api/v1/runs: {status} {answer}");
    let id = serde_json::from_str::<serde_json::Value>(&answer)?["id"].as_str().context("run id")?.to_string();
    let url = format!("ws://{addr}/api/v1/runs/{id}/events");
    let limit = Duration::from_secs_f64(seconds + 30.0);
    let mut clients = Vec::new();
    for _ in 0..viewers {
        let url = url.clone();
        clients.push(tokio::spawn(async move {
            let mut got: Vec<(Instant, f64)> = Vec::new();
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
            let read = async {
                while let Some(msg) = ws.next().await {
                    let now = Instant::now();
                    if let tokio_tungstenite::tungstenite::Message::Text(text) = msg? {
                        let v: serde_json::Value = serde_json::from_str(text.as_str())?;
                        let t_s = v.get("t_s").and_then(serde_json::Value::as_f64);
                        // the closing event of a cancelled run is not paced
                        if let (Some(t_s), false) = (t_s, v["type"] == "run_finished") {
                            got.push((now, t_s));
                        }
                    }
                }
                anyhow::Ok(())
            };
            tokio::time::timeout(limit, read).await.map_err(|_| anyhow::anyhow!("viewer timed out"))??;
            anyhow::Ok(got)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let (status, answer) = http(addr, "POST", &format!("/api/v1/runs/{id}/cancel"), "").await?;
    anyhow::ensure!(status == 200, "cancel: {status} {answer}");
    let mut received = Vec::new();
    for c in clients {
        received.push(c.await??);
    }
    let _ = tx.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
    let side = std::mem::take(&mut *side.lock().expect("plant side"));
    let start = side.start.context("the run never started")?;
    let (last_at, last_t) = side.emitted.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)).context("no events")?;
    Ok(PacedRun {
        achieved_speed: last_t / (last_at - start).as_secs_f64(),
        plant_late_ms: side.emitted.iter().map(|&(at, t)| late_ms(at, start, t, speed)).collect(),
        viewer_lag_ms: received.into_iter().flatten().map(|(at, t)| late_ms(at, start, t, speed)).collect(),
    })
}

/// Part 4: a 64-cell batch paced at `speed` for `seconds`, without viewers and with `viewers`.
pub fn fanout(viewers: usize, speed: f64, seconds: f64, scratch: &Path) -> Result<()> {
    println!("\n== websocket fan-out: 64-cell batch paced at {speed} plant s per wall s, {seconds} s ==");
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        for n in [0, viewers] {
            let r = paced_run(n, speed, seconds, scratch).await?;
            let late = summary(r.plant_late_ms);
            let lag = summary(r.viewer_lag_ms.clone());
            println!(
                "{n:>4} viewers: speed reached {:.1} (asked {speed}), pacer late p50 {:.1} ms p99 {:.1} ms; \
                 {} events received, lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                r.achieved_speed,
                late.median,
                late.p99,
                r.viewer_lag_ms.len(),
                lag.median,
                lag.p99,
                lag.max
            );
        }
        anyhow::Ok(())
    })
}
