//! The versioned API over real sockets: runs, events, samples, downloads, cancel, the queue,
//! health, metrics and the OpenAPI document.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

async fn post_run(s: &Server, body: &str) -> String {
    let r = s.post("/api/v1/runs", body).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_events_samples_download_and_cancel_round_trip() {
    let s = start(small_config("roundtrip")).await;
    // A paced run (real time, days long) holds the plant so the next run waits queued.
    let blocker = post_run(&s, r#"{"speed": 1, "seed": 1}"#).await;
    s.wait_status(&blocker, "running").await;
    let id = post_run(&s, r#"{"seed": 7, "batches": 1, "speed": "max"}"#).await;
    assert_eq!(s.get_json(&format!("/api/v1/runs/{id}")).await["status"], "queued");

    // two viewers of the same run
    let mut a = connect(&format!("{}/api/v1/runs/{id}/events", s.ws)).await;
    let mut b = connect(&format!("{}/api/v1/runs/{id}/events", s.ws)).await;
    let cancel = s.post(&format!("/api/v1/runs/{blocker}/cancel"), "").await;
    assert_eq!(cancel.status(), 200);
    s.wait_status(&blocker, "cancelled").await;

    let mut events = Vec::new();
    while let Some(text) = next_text(&mut a, Duration::from_secs(60)).await {
        events.push(serde_json::from_str::<Value>(&text).unwrap());
    }
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types[0], "snapshot");
    assert_eq!(events[0]["run"]["status"], "queued");
    for t in [
        "run_state",
        "run_started",
        "machine_on",
        "sample",
        "stage_finished",
        "machine_off",
        "cell_results",
        "run_finished",
    ] {
        assert!(types.contains(&t), "no {t} event in {types:?}");
    }
    let last = events.last().unwrap();
    assert_eq!((last["type"].as_str(), last["status"].as_str()), (Some("run_state"), Some("finished")));
    assert!(events.iter().filter(|e| e["type"] == "stage_finished").count() == 18);
    let mut count_b = 0;
    while next_text(&mut b, Duration::from_secs(10)).await.is_some() {
        count_b += 1;
    }
    assert!(count_b > 20, "the second viewer saw the run too ({count_b} events)");

    // the run record
    let run = s.get_json(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["status"], "finished");
    assert_eq!(run["seed"], 7);
    assert_eq!(run["progress"], 1.0);
    assert_eq!(run["cells"]["count"], 64);
    let machines = run["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 18);
    assert!(machines.iter().all(|m| m["batches_done"] == 1 && m["samples"].as_u64().unwrap() > 0));
    assert_eq!(run["results"].as_array().unwrap().len(), 18);

    // history, newest first
    let list = s.get_json("/api/v1/runs").await;
    let ids: Vec<&str> = list["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![id.as_str(), blocker.as_str()]);
    assert_eq!(list["runs"][1]["status"], "cancelled");

    // samples, downsampled
    let all = s.get_json(&format!("/api/v1/runs/{id}/samples?machine=MC_Coat_Anode&max_points=100000")).await;
    let total = all["total_points"].as_u64().unwrap();
    assert!(total > 20, "{total} coating samples");
    assert_eq!(all["returned_points"], total);
    let field =
        all["fields"].as_array().unwrap().iter().find(|f| f.as_str().unwrap().contains("wet_thickness")).cloned();
    let field = field.unwrap_or_else(|| all["fields"][0].clone());
    let field = field.as_str().unwrap();
    let few =
        s.get_json(&format!("/api/v1/runs/{id}/samples?machine=MC_Coat_Anode&fields={field}&max_points=10")).await;
    let points = few["points"].as_array().unwrap();
    assert_eq!(points.len(), 10);
    assert!(points.iter().all(|p| p.as_object().unwrap().len() == 3 && p[field].is_number()), "{points:?}");
    assert_eq!(points[0]["time_s"], all["points"][0]["time_s"], "first point kept");
    assert_eq!(points[9]["time_s"], all["points"][total as usize - 1]["time_s"], "last point kept");
    let t_mid = all["points"][total as usize / 2]["time_s"].as_f64().unwrap();
    let late = s.get_json(&format!("/api/v1/runs/{id}/samples?machine=MC_Coat_Anode&from={t_mid}")).await;
    assert!(late["points"].as_array().unwrap().iter().all(|p| p["time_s"].as_f64().unwrap() >= t_mid));
    for (query, field) in [
        ("machine=MC_Nope", "machine"),
        ("machine=MC_Coat_Anode&max_points=1", "max_points"),
        ("machine=MC_Coat_Anode&fields=nope", "fields"),
        ("machine=MC_Coat_Anode&from=abc", "from"),
        ("machine=MC_Coat_Anode&bogus=1", "bogus"),
        ("", "machine"),
    ] {
        let r = s.get(&format!("/api/v1/runs/{id}/samples?{query}")).await;
        assert_eq!(r.status(), 400, "{query}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["field"], field, "{query}");
    }

    // downloads
    let r = s.get(&format!("/api/v1/runs/{id}/download?scope=anode")).await;
    assert_eq!(r.status(), 200);
    let anode = unzip(&r.bytes().await.unwrap());
    assert!(!anode.is_empty());
    assert!(anode.iter().all(|(n, _)| n.contains("_Anode_")), "anode scope holds only anode files");
    let cell = unzip(&s.get(&format!("/api/v1/runs/{id}/download?scope=cell")).await.bytes().await.unwrap());
    assert!(cell.iter().any(|(n, _)| n == "cell_results.jsonl"));
    assert!(cell.iter().filter(|(n, _)| n != "cell_results.jsonl").all(|(n, _)| n.contains("_Cell_")));
    let lines = cell
        .iter()
        .find(|(n, _)| n == "cell_results.jsonl")
        .unwrap()
        .1
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(lines, 64);
    let everything = unzip(&s.get(&format!("/api/v1/runs/{id}/download")).await.bytes().await.unwrap());
    assert!(everything.len() > anode.len() + cell.len());
    assert_eq!(
        s.get(&format!("/api/v1/runs/{blocker}/download")).await.status(),
        409,
        "a cancelled run has no download"
    );

    // cancelling an ended run changes nothing
    let r = s.post(&format!("/api/v1/runs/{id}/cancel"), "").await;
    assert_eq!(r.status(), 409);
    assert_eq!(s.get_json(&format!("/api/v1/runs/{id}")).await["status"], "finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_429_and_changes_nothing() {
    let mut config = small_config("queue");
    config.queue_capacity = 1;
    let s = start(config).await;
    let running = post_run(&s, r#"{"speed": 1}"#).await;
    s.wait_status(&running, "running").await;
    let queued = post_run(&s, r#"{"speed": 1}"#).await;
    // The running run's live counters move; the refusal must not add, drop or re-state a run.
    let run_states = |list: Value| -> Vec<(String, String)> {
        let runs = list["runs"].as_array().cloned().unwrap_or_default();
        runs.iter().map(|r| (r["id"].as_str().unwrap().to_owned(), r["status"].as_str().unwrap().to_owned())).collect()
    };
    let before = run_states(s.get_json("/api/v1/runs").await);
    let r = s.post("/api/v1/runs", "{}").await;
    assert_eq!(r.status(), 429);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "queue_full");
    assert!(e["error"]["message"].as_str().unwrap().contains("queue is full"));
    assert_eq!(s.post("/start-both", START_BOTH).await.status(), 429);
    assert_eq!(run_states(s.get_json("/api/v1/runs").await), before);
    let metrics = s.get("/api/v1/metrics").await.text().await.unwrap();
    assert!(metrics.contains("cellfab_run_queue_length 1"), "{metrics}");
    for id in [&queued, &running] {
        assert_eq!(s.post(&format!("/api/v1/runs/{id}/cancel"), "").await.status(), 200);
    }
    s.wait_status(&queued, "cancelled").await;
    s.wait_status(&running, "cancelled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_routes_give_defaults_schema_and_every_error() {
    let s = start(small_config("config")).await;
    let default = s.get_json("/api/v1/config/default").await;
    assert_eq!(default["cell"]["assembly"]["max_cells"], 64);
    let schema = s.get_json("/api/v1/config/schema").await;
    assert!(schema["properties"]["anode"].is_object());
    let r = s
        .post(
            "/api/v1/config/validate",
            r#"{"plant": {"queue_capacity": 0}, "anode": {"coating": {"coating_speed_m_s": 9}}, "cell": {"aging": {"temperature_degc": 500}}}"#,
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["valid"], false);
    let fields: Vec<&str> = v["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert!(fields.contains(&"plant.queue_capacity"), "{fields:?}");
    assert!(fields.contains(&"anode.coating.coating_speed_m_s"), "{fields:?}");
    assert!(fields.contains(&"cell.aging.temperature_degc"), "{fields:?}");
    let coating =
        v["errors"].as_array().unwrap().iter().find(|e| e["field"] == "anode.coating.coating_speed_m_s").unwrap();
    assert_eq!(coating["value"], 9.0);
    assert!(coating["max"].is_number() && coating["min"].is_number());
    let ok: Value = s.post("/api/v1/config/validate", "{}").await.json().await.unwrap();
    assert_eq!(ok, serde_json::json!({"valid": true, "errors": []}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_openapi_3_and_lists_every_route() {
    let s = start(small_config("openapi")).await;
    let doc = s.get_json("/api/v1/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().unwrap();
    let routes = [
        ("get", "/"),
        ("post", "/start-both"),
        ("post", "/reset"),
        ("get", "/files/{electrode_type}"),
        ("get", "/ws/status"),
        ("get", "/api/v1/health"),
        ("get", "/api/v1/metrics"),
        ("get", "/api/v1/openapi.json"),
        ("get", "/api/v1/docs"),
        ("get", "/api/v1/config/default"),
        ("get", "/api/v1/config/schema"),
        ("post", "/api/v1/config/validate"),
        ("post", "/api/v1/runs"),
        ("get", "/api/v1/runs"),
        ("get", "/api/v1/runs/{id}"),
        ("post", "/api/v1/runs/{id}/cancel"),
        ("get", "/api/v1/runs/{id}/kpis"),
        ("get", "/api/v1/runs/{id}/samples"),
        ("get", "/api/v1/runs/{id}/download"),
        ("get", "/api/v1/runs/{id}/events"),
    ];
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, routes.len(), "no undocumented and no extra operations");
    assert_eq!(doc["components"]["securitySchemes"]["bearerAuth"]["scheme"], "bearer");
    for (method, path, protected) in [
        ("post", "/api/v1/runs", true),
        ("get", "/ws/status", true),
        ("get", "/api/v1/health", false),
        ("get", "/", false),
    ] {
        let op = &paths[path][method];
        assert_eq!(op["responses"]["401"].is_object(), protected, "401 documented on {method} {path}");
        assert_eq!(op["security"].is_array(), protected, "security on {method} {path}");
    }
    assert!(paths["/api/v1/config/validate"]["post"]["responses"]["408"].is_object());
    for (method, path) in routes {
        let op = &paths[path][method];
        assert!(op["summary"].is_string() && op["responses"].is_object(), "{method} {path}");
        for p in path.split('/').filter(|p| p.starts_with('{')) {
            let name = p.trim_matches(['{', '}']);
            assert!(op["parameters"].as_array().unwrap().iter().any(|q| q["name"] == name && q["in"] == "path"));
        }
        // every documented route is served (not the router's 404 fallback)
        let url = format!("{}{}", s.base, path.replace("{electrode_type}", "Anode").replace("{id}", "x"));
        let r = s.http.request(method.parse().unwrap(), url).send().await.unwrap();
        let text = r.text().await.unwrap();
        assert!(!text.contains("no route"), "{method} {path} is not served: {text}");
    }
    for r in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(["Error", "StartBoth", "ConfigOverrides", "RunRequest"].contains(&r.as_str()));
    }
    let docs = s.get("/api/v1/docs").await.text().await.unwrap();
    assert!(docs.contains("openapi.json") && !docs.contains("https://"), "the docs page works offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_report_runs_and_samples() {
    let s = start(small_config("metrics")).await;
    let h = s.get_json("/api/v1/health").await;
    assert_eq!(h["status"], "ok");
    assert_eq!(s.post("/start-both", START_BOTH).await.status(), 200);
    let r = s.get("/api/v1/metrics").await;
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("cellfab_runs_submitted_total"), 1.0);
    assert_eq!(value("cellfab_runs_finished_total"), 1.0);
    assert!(value("cellfab_samples_total") > 100.0);
    assert_eq!(value("cellfab_run_queue_length"), 0.0);
    assert!(text.contains("# TYPE cellfab_samples_total counter"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_do_not_stall_the_plant() {
    let s = start(small_config("slowclients")).await;
    let blocker = post_run(&s, r#"{"speed": 1}"#).await;
    s.wait_status(&blocker, "running").await;
    let id = post_run(&s, "{}").await;
    // connected, subscribed, and never read from again
    let _status = connect(&format!("{}/ws/status", s.ws)).await;
    let _events = connect(&format!("{}/api/v1/runs/{id}/events", s.ws)).await;
    assert_eq!(s.post(&format!("/api/v1/runs/{blocker}/cancel"), "").await.status(), 200);
    let run = s.wait_status(&id, "finished").await;
    assert_eq!(run["cells"]["count"], 64);
    assert!(run["samples"].as_u64().unwrap() > 1000);
}
