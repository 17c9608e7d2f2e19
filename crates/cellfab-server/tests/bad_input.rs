//! Every class of bad input, sent to every endpoint that takes input: the status, the error
//! code and the field are as documented, and nothing changed (runs, files, results).

mod common;

use common::*;
use serde_json::Value;

/// (method, path, body, status, code, field). `{run}` is replaced by a finished run's id.
type Case = (&'static str, &'static str, String, u16, &'static str, Option<&'static str>);

fn slurry(anode: &str, cathode: &str) -> String {
    format!(r#"{{"anode": {{{anode}}}, "cathode": {{{cathode}}}}}"#)
}

const A: &str = r#""PVDF": 0.05, "CA": 0.045, "AM": 0.495, "Solvent": 0.41, "electrode_type": "Anode""#;
const C: &str = r#""PVDF": 0.05, "CA": 0.045, "AM": 0.495, "Solvent": 0.41, "electrode_type": "Cathode""#;

fn cases() -> Vec<Case> {
    let huge = format!(r#"{{"config": {{"pad": "{}"}}}}"#, "x".repeat(2 << 20));
    let a = |replace: &str, with: &str| slurry(&A.replace(replace, with), C);
    vec![
        // POST /start-both
        ("POST", "/start-both", r#"{"anode": "#.into(), 400, "malformed_json", None),
        ("POST", "/start-both", a("0.05,", "NaN,"), 400, "malformed_json", None),
        ("POST", "/start-both", a("0.05,", "1e999,"), 400, "malformed_json", None),
        ("POST", "/start-both", a("0.05,", "true,"), 422, "invalid_type", Some("anode.PVDF")),
        ("POST", "/start-both", a("0.05,", "\"NaN\","), 422, "invalid_value", Some("anode.PVDF")),
        ("POST", "/start-both", a("0.05,", "\"-inf\","), 422, "invalid_value", Some("anode.PVDF")),
        ("POST", "/start-both", a("0.05,", "\"abc\","), 422, "invalid_value", Some("anode.PVDF")),
        ("POST", "/start-both", a("0.495", "1.5"), 422, "out_of_range", Some("anode.AM")),
        ("POST", "/start-both", a("0.045", "-0.1"), 422, "out_of_range", Some("anode.CA")),
        ("POST", "/start-both", a("0.41", "0.5"), 422, "invalid_value", Some("anode.Solvent")),
        ("POST", "/start-both", a("\"Anode\"", "\"Cathode\""), 422, "invalid_value", Some("anode.electrode_type")),
        ("POST", "/start-both", a("\"PVDF\"", "\"Foo\": 1, \"PVDF\""), 422, "unknown_field", Some("anode.Foo")),
        ("POST", "/start-both", format!(r#"{{"anode": {{{A}}}}}"#), 422, "missing_field", Some("cathode")),
        ("POST", "/start-both", "[1, 2]".into(), 422, "invalid_type", None),
        ("POST", "/start-both", huge.clone(), 413, "payload_too_large", None),
        // POST /api/v1/runs
        ("POST", "/api/v1/runs", "{".into(), 400, "malformed_json", None),
        ("POST", "/api/v1/runs", r#"{"speed": NaN}"#.into(), 400, "malformed_json", None),
        ("POST", "/api/v1/runs", r#"{"speed": 1e999}"#.into(), 400, "malformed_json", None),
        ("POST", "/api/v1/runs", r#"{"bogus": 1}"#.into(), 422, "unknown_field", Some("bogus")),
        ("POST", "/api/v1/runs", r#"{"seed": "x"}"#.into(), 422, "invalid_type", Some("seed")),
        ("POST", "/api/v1/runs", r#"{"seed": -1}"#.into(), 422, "invalid_value", Some("seed")),
        ("POST", "/api/v1/runs", r#"{"batches": 0}"#.into(), 422, "out_of_range", Some("batches")),
        ("POST", "/api/v1/runs", r#"{"batches": 100000}"#.into(), 422, "out_of_range", Some("batches")),
        ("POST", "/api/v1/runs", r#"{"speed": -1}"#.into(), 422, "invalid_value", Some("speed")),
        ("POST", "/api/v1/runs", r#"{"speed": "NaN"}"#.into(), 422, "invalid_value", Some("speed")),
        ("POST", "/api/v1/runs", r#"{"start": "yesterday"}"#.into(), 422, "invalid_value", Some("start")),
        ("POST", "/api/v1/runs", r#"{"config": 5}"#.into(), 422, "invalid_type", Some("config")),
        (
            "POST",
            "/api/v1/runs",
            r#"{"config": {"anode": {"coating": {"coating_speed_m_s": 9}}}}"#.into(),
            422,
            "out_of_range",
            Some("config.anode.coating.coating_speed_m_s"),
        ),
        (
            "POST",
            "/api/v1/runs",
            r#"{"config": {"anode": {"nope": 1}}}"#.into(),
            422,
            "unknown_field",
            Some("config.anode.nope"),
        ),
        (
            "POST",
            "/api/v1/runs",
            r#"{"config": {"plant": {"seed": "x"}}}"#.into(),
            422,
            "invalid_type",
            Some("config.plant.seed"),
        ),
        ("POST", "/api/v1/runs", huge.clone(), 413, "payload_too_large", None),
        // POST /api/v1/config/validate (a wrong configuration is a 200 answer listing errors,
        // a wrong request is a 4xx)
        ("POST", "/api/v1/config/validate", "{\"plant\":".into(), 400, "malformed_json", None),
        ("POST", "/api/v1/config/validate", r#"{"plant": {"seed": NaN}}"#.into(), 400, "malformed_json", None),
        ("POST", "/api/v1/config/validate", "[1]".into(), 422, "invalid_type", None),
        ("POST", "/api/v1/config/validate", huge, 413, "payload_too_large", None),
        (
            "POST",
            "/api/v1/config/validate",
            r#"{"anode": {"nope": 1}}"#.into(),
            200,
            "unknown_field",
            Some("anode.nope"),
        ),
        (
            "POST",
            "/api/v1/config/validate",
            r#"{"plant": {"seed": true}}"#.into(),
            200,
            "invalid_type",
            Some("plant.seed"),
        ),
        // names, ids and path tricks
        ("GET", "/files/Electrolyte", String::new(), 400, "invalid_value", Some("electrode_type")),
        ("GET", "/files/..%2F..%2Fetc", String::new(), 400, "invalid_value", Some("electrode_type")),
        ("GET", "/files/..%2F..%2Fetc%2Fpasswd", String::new(), 400, "invalid_value", Some("electrode_type")),
        ("GET", "/api/v1/runs/nope", String::new(), 404, "not_found", Some("id")),
        ("GET", "/api/v1/runs/..%2F..%2Fetc", String::new(), 404, "not_found", Some("id")),
        ("POST", "/api/v1/runs/nope/cancel", String::new(), 404, "not_found", Some("id")),
        ("GET", "/api/v1/runs/nope/samples?machine=TK_Mix_Anode", String::new(), 404, "not_found", Some("id")),
        ("GET", "/api/v1/runs/nope/download", String::new(), 404, "not_found", Some("id")),
        ("GET", "/api/v1/runs/nope/events", String::new(), 404, "not_found", Some("id")),
        ("GET", "/api/v1/runs/{run}/download?scope=evil", String::new(), 400, "invalid_value", Some("scope")),
        ("GET", "/api/v1/runs/{run}/download?scope=..%2F..%2Fetc", String::new(), 400, "invalid_value", Some("scope")),
        ("GET", "/api/v1/runs/{run}/download?path=x", String::new(), 400, "unknown_field", Some("path")),
        (
            "GET",
            "/api/v1/runs/{run}/samples?machine=..%2Fmanifest",
            String::new(),
            400,
            "invalid_value",
            Some("machine"),
        ),
        ("POST", "/api/v1/runs/{run}/cancel", String::new(), 409, "run_ended", Some("id")),
        ("GET", "/api/v1/runs/{run}/events", String::new(), 400, "websocket_required", None),
        ("GET", "/ws/status", String::new(), 400, "websocket_required", None),
        ("GET", "/etc/passwd", String::new(), 404, "not_found", None),
        ("DELETE", "/reset", String::new(), 405, "method_not_allowed", None),
    ]
}

async fn snapshot(s: &Server) -> (Value, Vec<String>) {
    let mut runs = s.get_json("/api/v1/runs").await;
    // the listing of every run, without what a finished run never changes anyway
    for r in runs["runs"].as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("progress");
    }
    (runs, s.files())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_a_4xx_naming_the_field_and_changes_nothing() {
    let s = start(small_config("badinput")).await;
    let ok: Value = s.post("/start-both", START_BOTH).await.json().await.unwrap();
    let run = ok["run_id"].as_str().unwrap().to_string();
    let before = snapshot(&s).await;
    let mut failures = Vec::new();
    for (method, path, body, status, code, field) in cases() {
        let path = path.replace("{run}", &run);
        let r = s
            .http
            .request(method.parse().unwrap(), format!("{}{path}", s.base))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let got_status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        let (got_code, got_field) = if got_status == 200 {
            let e = &v["errors"][0];
            assert_eq!(v["valid"], false, "{path}");
            (e["code"].as_str().map(String::from), e["field"].as_str().map(String::from))
        } else {
            (v["error"]["code"].as_str().map(String::from), v["error"]["field"].as_str().map(String::from))
        };
        if got_status != status || got_code.as_deref() != Some(code) || got_field.as_deref() != field {
            failures.push(format!(
                "{method} {path} {}: expected {status} {code} {field:?}, got {got_status} {got_code:?} {got_field:?} ({v})",
                &body.chars().take(80).collect::<String>()
            ));
        }
        if got_status >= 400 {
            let message = v["error"]["message"].as_str().unwrap_or_default();
            if message.is_empty() {
                failures.push(format!("{method} {path}: no error message"));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(snapshot(&s).await, before, "a rejected request changes nothing");
    assert_eq!(s.get(&format!("/api/v1/runs/{run}")).await.json::<Value>().await.unwrap()["status"], "finished");
}
