//! Load: 50 run submissions at once against a queue of capacity Q while a paced run holds the
//! plant. Exactly Q are accepted (202), the other 50 − Q are refused with 429 and the JSON
//! error, the run list holds exactly the accepted ones, and every answer comes within a bound.

mod common;

use serde_json::Value;
use std::time::{Duration, Instant};

/// Runs that may wait in the queue.
const QUEUE: usize = 4;
/// Submissions sent at once.
const SUBMISSIONS: usize = 50;
/// The longest all of them may take to be answered.
const BOUND: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_submissions_fill_the_queue_and_the_rest_get_429() {
    let mut config = common::small_config("load-submissions");
    config.queue_capacity = QUEUE;
    let server = common::start(config).await;
    // one paced run holds the plant for the whole test
    let r = server.post("/api/v1/runs", r#"{"batches": 1, "speed": 60}"#).await;
    assert_eq!(r.status(), 202);
    let running = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    server.wait_status(&running, "running").await;

    let started = Instant::now();
    let answers = futures_util::future::join_all((0..SUBMISSIONS).map(|k| {
        let (http, base) = (server.http.clone(), server.base.clone());
        async move {
            let r = http
                .post(format!("{base}/api/v1/runs"))
                .header("content-type", "application/json")
                .body(format!(r#"{{"batches": 1, "seed": {k}}}"#))
                .send()
                .await
                .expect("every submission is answered");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.expect("a JSON answer"))
        }
    }))
    .await;
    let elapsed = started.elapsed();
    assert!(elapsed < BOUND, "{SUBMISSIONS} submissions took {elapsed:?}");

    let accepted: Vec<String> =
        answers.iter().filter(|(s, _)| *s == 202).map(|(_, v)| v["id"].as_str().unwrap().to_string()).collect();
    let refused: Vec<&Value> = answers.iter().filter(|(s, _)| *s == 429).map(|(_, v)| v).collect();
    assert_eq!(accepted.len(), QUEUE, "exactly the queue's capacity is accepted: {answers:?}");
    assert_eq!(refused.len(), SUBMISSIONS - QUEUE, "every other submission is refused with 429: {answers:?}");
    for body in refused {
        assert_eq!(body["error"]["code"], "queue_full", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("queue is full"), "{body}");
    }

    let list = server.get_json("/api/v1/runs").await;
    let mut listed: Vec<String> =
        list["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().into()).collect();
    let mut expected = accepted.clone();
    expected.push(running.clone());
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "the run list holds exactly the accepted runs");
    for id in &accepted {
        assert_eq!(server.get_json(&format!("/api/v1/runs/{id}")).await["status"], "queued");
    }
    let metrics = server.get("/api/v1/metrics").await.text().await.unwrap();
    assert!(metrics.contains(&format!("cellfab_run_queue_length {QUEUE}\n")), "{metrics}");
    assert!(metrics.contains(&format!("cellfab_runs_submitted_total {}\n", QUEUE + 1)), "{metrics}");
    eprintln!("{SUBMISSIONS} submissions answered in {elapsed:?}: {} accepted, {} refused", QUEUE, SUBMISSIONS - QUEUE);

    // clean up: cancel everything (the paced run and the queued ones)
    let r = server.post("/reset", "").await;
    assert!(r.status().is_success(), "{}", r.status());
}
