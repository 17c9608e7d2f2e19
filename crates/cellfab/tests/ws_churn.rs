//! 200 websocket clients connecting and dropping at random (fixed seed) against a paced run's
//! `/api/v1/runs/{id}/events` and `/ws/status` of the real `cellfab serve`: afterwards the
//! connected-client gauges are back to 0, the server's tokio task count is back to its baseline
//! and its resident memory has not grown beyond a tolerance. A first round of the same size
//! warms the allocator up, so its growth is not counted as a leak.
//!
//! The clients speak the websocket handshake over plain `std::net` so that each can stop at any
//! point: half-way through its request, right after the 101, after reading frames for a while,
//! after a close frame, or after closing its sending half.

mod common;

use common::{small_config, temp_dir, Moments, Server};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Clients per round.
const CLIENTS: u64 = 200;
/// Threads that run them (clients at the same time, at most).
const THREADS: u64 = 40;
/// The seed of every client's path, action and timing.
const SEED: u64 = 7_200;
/// Resident memory the server may gain over the measured round.
const RSS_TOLERANCE: u64 = 20 * 1024 * 1024;

/// What one client does before it drops its connection.
#[derive(Clone, Copy, Debug)]
enum Action {
    HalfRequest,
    AfterUpgrade,
    ReadFrames,
    CloseFrame,
    HalfClose,
}

fn client(addr: &str, path: &str, action: Action, hold: Duration) {
    let Ok(mut s) = TcpStream::connect(addr) else { panic!("connect {addr}") };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    if let Action::HalfRequest = action {
        s.write_all(&request.as_bytes()[..request.len() / 2]).unwrap();
        std::thread::sleep(hold);
        return;
    }
    s.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("{path}: the handshake ended early: {other:?} after {:?}", String::from_utf8_lossy(&head)),
        }
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{path}: {}", String::from_utf8_lossy(&head));
    let mut buf = [0u8; 4096];
    match action {
        Action::HalfRequest | Action::AfterUpgrade => {}
        Action::ReadFrames => {
            let until = Instant::now() + hold;
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            while Instant::now() < until {
                if let Ok(0) = s.read(&mut buf) {
                    break;
                }
            }
        }
        Action::CloseFrame => {
            std::thread::sleep(hold);
            // a masked close frame with no payload
            let _ = s.write_all(&[0x88, 0x80, 1, 2, 3, 4]);
            s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline && !matches!(s.read(&mut buf), Ok(0) | Err(_)) {}
        }
        Action::HalfClose => {
            let _ = s.shutdown(Shutdown::Write);
            std::thread::sleep(hold);
        }
    }
}

/// One round: `CLIENTS` clients on `THREADS` threads, each with a random path, action, start
/// delay and hold time.
fn round(addr: &str, run: &str, seed: u64) {
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (addr, run) = (addr.to_string(), run.to_string());
            std::thread::spawn(move || {
                let mut rng = Moments::new(seed * 1000 + t);
                for _ in 0..CLIENTS / THREADS {
                    let path =
                        if rng.below(2) == 0 { format!("/api/v1/runs/{run}/events") } else { "/ws/status".into() };
                    let action = match rng.below(5) {
                        0 => Action::HalfRequest,
                        1 => Action::AfterUpgrade,
                        2 => Action::ReadFrames,
                        3 => Action::CloseFrame,
                        _ => Action::HalfClose,
                    };
                    std::thread::sleep(Duration::from_millis(rng.below(40)));
                    client(&addr, &path, action, Duration::from_millis(rng.below(250)));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    assert!(started.elapsed() < Duration::from_secs(40), "a round took {:?}", started.elapsed());
}

/// Waits (at most 15 s) until no client is connected and at most `tasks` tasks are alive;
/// returns the task count.
fn settle(server: &Server, tasks: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, events) = (server.metric("cellfab_status_clients"), server.metric("cellfab_event_clients"));
        let alive = server.metric("cellfab_tokio_alive_tasks");
        if status == 0 && events == 0 && alive <= tasks {
            return alive;
        }
        assert!(
            Instant::now() < deadline,
            "not back to baseline: {status} status clients, {events} event clients, {alive} tasks (baseline {tasks})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_hundred_websocket_clients_dropping_at_random_leak_no_client_no_task_and_no_memory() {
    let dir = temp_dir("ws-churn");
    let config = small_config(&dir);
    let server = Server::start(&dir.join("data"), &config, &["--database", "sqlite::memory:"]);
    // a paced run that stays running for the whole test (about an hour of plant time per minute)
    let run = server.submit(r#"{"batches": 1, "speed": 60}"#);
    server.wait_for(&run, "running", Duration::from_secs(20), |r| r["status"] == "running");

    round(&server.addr, &run, SEED);
    // the baseline: the highest of a few readings once the warm-up round has settled
    let mut baseline = settle(&server, i64::MAX);
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(100));
        baseline = baseline.max(server.metric("cellfab_tokio_alive_tasks"));
    }
    let rss_before = server.rss_bytes();

    // the gauge sees the clients: its peak during the round is above the baseline
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peak = {
        let (stop, probe) = (stop.clone(), Server::probe(&server.addr));
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(probe.metric("cellfab_tokio_alive_tasks"));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    round(&server.addr, &run, SEED + 1);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = peak.join().unwrap();
    assert!(peak > baseline, "the task gauge never rose above {baseline} while clients were connected");
    let after = settle(&server, baseline);
    let rss_after = server.rss_bytes();
    eprintln!(
        "{CLIENTS} clients: tasks {after} (baseline {baseline}, peak {peak}), VmRSS {} KiB → {} KiB",
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(
        rss_after <= rss_before + RSS_TOLERANCE,
        "resident memory grew from {rss_before} to {rss_after} bytes over {CLIENTS} clients"
    );
    // the run went on all along
    assert_eq!(server.json("GET", &format!("/api/v1/runs/{run}"), "")["status"], "running");
    server.json("POST", &format!("/api/v1/runs/{run}/cancel"), "");
    server.wait_for(&run, "cancelled", Duration::from_secs(20), |r| r["status"] == "cancelled");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
