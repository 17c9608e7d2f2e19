//! A real server on 127.0.0.1:0 with its own data folder, and small client helpers.
#![allow(dead_code)]

use cellfab_server::ServerConfig;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub const START: &str = "2025-01-01T00:00:00Z";

pub struct Server {
    pub base: String,
    pub ws: String,
    pub data: PathBuf,
    pub http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A small, reproducible plant: 64 cells per batch, a fixed start.
pub fn small_config(name: &str) -> ServerConfig {
    let data = std::env::temp_dir().join(format!("cellfab-server-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut c = ServerConfig::new(data);
    c.base_config.cell.assembly.max_cells = 64;
    c.base_config.plant.start = START.into();
    c
}

pub async fn start(config: ServerConfig) -> Server {
    let data = config.data_dir.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (local, server) = cellfab_server::bind(config, addr, async {
        let _ = rx.await;
    })
    .await
    .expect("server binds");
    tokio::spawn(server);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    Server { base: format!("http://{local}"), ws: format!("ws://{local}"), data, http, _stop: tx }
}

impl Server {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.base)).send().await.expect("GET answers")
    }

    pub async fn post(&self, path: &str, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST answers")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Polls a run until it reaches `status` (at most 60 s).
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        for _ in 0..600 {
            let run = self.get_json(&format!("/api/v1/runs/{id}")).await;
            if run["status"] == status {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("run {id} never reached {status}");
    }

    /// Files under the data folder (relative paths), sorted.
    pub fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.data.clone()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(&self.data).unwrap().to_string_lossy().to_string());
                }
            }
        }
        out.sort();
        out
    }
}

/// The recipe of the prototype's UI, numbers sent as strings.
pub const START_BOTH: &str = r#"{
  "anode": {"PVDF": "0.05", "CA": "0.045", "AM": "0.495", "Solvent": "0.41", "electrode_type": "Anode"},
  "cathode": {"PVDF": 0.05, "CA": 0.045, "AM": 0.495, "Solvent": 0.41, "electrode_type": "Cathode"}
}"#;

/// Unzips a body into (name, bytes).
pub fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a valid zip");
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).unwrap();
            (f.name().unwrap().to_string(), buf)
        })
        .collect()
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.expect("websocket connects").0
}

/// Next text frame, or None on close / after `wait` without a frame.
pub async fn next_text(ws: &mut Ws, wait: Duration) -> Option<String> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(Message::Ping(p)))) => {
                let _ = ws.send(Message::Pong(p)).await;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
