//! The real `cellfab` binary as a server on 127.0.0.1:0, plain HTTP/1.1 over `std::net`, and
//! checks of a data folder's files.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Plant time 0 of every test run.
pub const START: &str = "2025-01-01T00:00:00Z";

/// A fresh, empty folder under the system's temporary folder.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cellfab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small plant (64 cells per batch, fixed start) as a configuration file in `dir`.
pub fn small_config(dir: &Path) -> PathBuf {
    let path = dir.join("plant.json");
    std::fs::write(
        &path,
        format!(r#"{{"plant": {{"start": "{START}"}}, "cell": {{"assembly": {{"max_cells": 64}}}}}}"#),
    )
    .unwrap();
    path
}

/// A running `cellfab serve`.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    /// `cellfab serve --port 0 --data-dir DATA --config CONFIG ARGS…`.
    pub fn start(data: &Path, config: &Path, args: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cellfab"));
        cmd.args(["serve", "--port", "0", "--data-dir"]).arg(data).arg("--config").arg(config).args(args);
        Self::spawn(cmd)
    }

    /// Starts a command that runs `cellfab serve` and waits for the line with its address.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("cellfab serve starts");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        // keep reading what the server prints, so it never writes into a closed pipe
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        let addr = first.split("http://").nth(1).and_then(|r| r.split_whitespace().next()).map(str::to_string);
        let addr = addr.unwrap_or_else(|| panic!("no address in {first:?}"));
        Self { child, addr }
    }

    /// A handle that only talks to the server at `addr` (for another thread); it does not
    /// own the process.
    pub fn probe(addr: &str) -> Probe {
        Probe { addr: addr.to_string() }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (status code, body) of one request on a fresh connection.
    pub fn call(&self, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
        call(&self.addr, method, path, body)
    }

    /// The JSON body of a request that must succeed.
    pub fn json(&self, method: &str, path: &str, body: &str) -> Value {
        let (code, bytes) = self.call(method, path, body);
        assert!((200..300).contains(&code), "{method} {path}: {code} {}", String::from_utf8_lossy(&bytes));
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Submits a run; returns its id.
    pub fn submit(&self, body: &str) -> String {
        self.json("POST", "/api/v1/runs", body)["id"].as_str().unwrap().to_string()
    }

    /// Polls a run (every 20 ms, at most `limit`) until `done` holds.
    pub fn wait_for(&self, id: &str, what: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let run = self.json("GET", &format!("/api/v1/runs/{id}"), "");
            if done(&run) {
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} never got {what} within {limit:?}: {run}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of one metric of `GET /api/v1/metrics`.
    pub fn metric(&self, name: &str) -> i64 {
        Self::probe(&self.addr).metric(name)
    }

    /// SIGKILL (`Child::kill` on Unix): no shutdown code runs.
    pub fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The resident set size of the process [bytes], from /proc/PID/status.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).expect("VmRSS in /proc/PID/status");
        kb.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
    }
}

/// Requests to a server without owning its process.
pub struct Probe {
    addr: String,
}

impl Probe {
    /// The value of one metric of `GET /api/v1/metrics`.
    pub fn metric(&self, name: &str) -> i64 {
        let (code, body) = call(&self.addr, "GET", "/api/v1/metrics", "");
        assert_eq!(code, 200);

        let text = String::from_utf8(body).unwrap();
        let line = text.lines().find(|l| l.split_whitespace().next() == Some(name));
        let line = line.unwrap_or_else(|| panic!("no metric {name} in {text}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (status code, body) of one request to `addr` on a fresh connection.
pub fn call(addr: &str, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
        addr,
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, raw[split + 4..].to_vec())
}

/// Every file under `dir`, recursively (relative paths, sorted).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// True for a hidden name (a temporary file still being written).
pub fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// Checks that every non-hidden file under `dir` loads: `.json` as one JSON value, `.jsonl`
/// line by line, `.csv` as a table with as many fields on each row as in its header,
/// `.parquet` by its magic bytes; the registry's SQLite files are skipped. Returns the number
/// of files checked.
pub fn assert_every_file_parses(dir: &Path) -> usize {
    let mut checked = 0;
    for rel in files(dir) {
        if is_hidden(&rel) {
            continue;
        }
        let path = dir.join(&rel);
        let name = rel.to_string_lossy().to_string();
        let ext = rel.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "json" => {
                let bytes = std::fs::read(&path).unwrap();
                serde_json::from_slice::<Value>(&bytes).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            }
            "jsonl" => {
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
                for (i, line) in text.lines().enumerate() {
                    serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{name} line {}: {e}", i + 1));
                }
            }
            "csv" => {
                let mut reader = csv::Reader::from_path(&path).unwrap();
                let width = reader.headers().unwrap_or_else(|e| panic!("{name}: {e}")).len();
                for row in reader.records() {
                    let row = row.unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(row.len(), width, "{name}: a row of another width than its header");
                }
            }
            "parquet" => {
                let bytes = std::fs::read(&path).unwrap();
                assert!(bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"), "{name} is not a whole Parquet file");
            }
            _ if name.contains("cellfab.sqlite") || name.ends_with("plant.json") => continue,
            _ => panic!("unexpected file {name}"),
        }
        checked += 1;
    }
    checked
}

/// A small, seeded generator (SplitMix64) for the random moments and actions of the trials.
pub struct Moments(u64);

impl Moments {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
