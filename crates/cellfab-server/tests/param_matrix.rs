//! Every numeric parameter of the configuration, below, at and above its range, as huge
//! values, of the wrong type and missing, through `POST /api/v1/config/validate` and
//! `POST /api/v1/runs`: each refusal names the parameter, a value inside the range is
//! accepted, and nothing is ever started by a refused request.

mod common;

use common::*;
use serde_json::Value;

/// Every numeric leaf of `v` as (path in the API's field syntax, pointer into the JSON).
fn numeric_leaves(v: &Value, path: &str, pointer: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                numeric_leaves(child, &p, &format!("{pointer}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                numeric_leaves(child, &format!("{path}[{i}]"), &format!("{pointer}/{i}"), out);
            }
        }
        Value::Number(_) => out.push((path.to_string(), pointer.to_string())),
        _ => {}
    }
}

/// The default configuration with the leaf at `pointer` replaced.
fn with(default: &Value, pointer: &str, value: Value) -> Value {
    let mut c = default.clone();
    *c.pointer_mut(pointer).expect("leaf exists") = value;
    c
}

/// The last key of a path: `anode.drying.zones[1].air_temperature_degc` → `air_temperature_degc`.
fn key(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// The validate route's errors for a whole configuration.
async fn errors(s: &Server, config: &Value) -> Vec<Value> {
    let r = s.post("/api/v1/config/validate", &config.to_string()).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["errors"].as_array().cloned().unwrap_or_default()
}

/// Whether an error is about the parameter at `path` (a range error names it exactly; a rule
/// across several fields names one of them and mentions the other).
/// An element of a list parameter (`viscosity_window_pa_s[0]`) is named by the list, and a
/// field inside a tagged list item (`protocol[3].voltage_v`) by the item when the item cannot
/// be read at all.
fn names(error: &Value, path: &str) -> bool {
    let field = error["field"].as_str().unwrap_or_default();
    let within = !field.is_empty() && path.starts_with(field) && path[field.len()..].starts_with(['.', '[']);
    field == path || within || error["message"].as_str().unwrap_or_default().contains(key(path))
}

/// A value just outside a bound.
fn beyond(bound: f64, up: bool) -> f64 {
    let step = bound.abs() * 1e-6 + 1e-9;
    if up {
        bound + step
    } else {
        bound - step
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_parameter_below_at_and_above_its_range_is_named() {
    let s = start(small_config("matrix")).await;
    let default = s.get_json("/api/v1/config/default").await;
    assert!(errors(&s, &default).await.is_empty(), "the default configuration is valid");
    let mut leaves = Vec::new();
    numeric_leaves(&default, "", "", &mut leaves);
    assert!(leaves.len() > 150, "only {} numeric parameters found", leaves.len());

    let mut failures = Vec::new();
    let mut refused = 0;
    for (path, pointer) in &leaves {
        let mut bounds = (None, None);
        let mut refused_somewhere = false;
        for huge in [1e300, -1e300] {
            let errs = errors(&s, &with(&default, pointer, huge.into())).await;
            if errs.is_empty() {
                continue;
            }
            refused_somewhere = true;
            match errs.iter().find(|e| names(e, path)) {
                None => failures.push(format!("{path} = {huge:e}: refused without naming it: {errs:?}")),
                Some(e) if e["field"] == path.as_str() || names(e, path) => {
                    bounds.0 = bounds.0.or(e["min"].as_f64());
                    bounds.1 = bounds.1.or(e["max"].as_f64());
                }
                Some(_) => {}
            }
        }
        if !refused_somewhere && !path.ends_with("seed") {
            failures.push(format!("{path}: neither 1e300 nor -1e300 is refused"));
        }
        // just outside each bound the error names the field; at the bound it is accepted or
        // refused as that bound (an open interval), never as another field
        for (bound, up) in [(bounds.0, false), (bounds.1, true)] {
            let Some(b) = bound else { continue };
            let errs = errors(&s, &with(&default, pointer, beyond(b, up).into())).await;
            if !errs.iter().any(|e| names(e, path)) {
                failures.push(format!("{path} = {:e} (beyond {b:e}) not refused by name: {errs:?}", beyond(b, up)));
            }
            refused += 1;
            // at the bound itself: accepted, or refused by an open bound or by a rule across
            // several fields (fractions summing to 1, a wet film thickness from flow and
            // speed), always with a field and a message
            for e in errors(&s, &with(&default, pointer, b.into())).await {
                if e["field"].as_str().is_none_or(str::is_empty) || e["message"].as_str().is_none_or(str::is_empty) {
                    failures.push(format!("{path} = {b:e} (its bound): an error without field or message: {e}"));
                }
            }
        }
        // the wrong type is named too
        let errs = errors(&s, &with(&default, pointer, "x".into())).await;
        if !errs.iter().any(|e| names(e, path) && e["code"] == "invalid_type") {
            failures.push(format!("{path} = \"x\": no invalid_type naming it: {errs:?}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} parameters:\n{}", failures.len(), leaves.len(), failures.join("\n"));
    assert!(refused > 100, "only {refused} bounds checked");

    // the same through the run route: refused by name, and no run exists afterwards
    for (path, pointer) in leaves.iter().step_by(7) {
        let body = serde_json::json!({"config": with(&default, pointer, 1e300.into())});
        let r = s.post("/api/v1/runs", &body.to_string()).await;
        if r.status() == 202 {
            continue; // unbounded above (checked below by the validate route)
        }
        assert_eq!(r.status(), 422, "{path}");
        let e: Value = r.json().await.unwrap();
        let mut error = e["error"].clone();
        let field = error["field"].as_str().unwrap_or_default().trim_start_matches("config.").to_string();
        error["field"] = field.into();
        assert!(names(&error, path), "{path}: {e}");
        assert!(error["message"].as_str().unwrap_or_default().len() < 400, "{path}: a message of a sane length: {e}");
    }
    let runs = s.get_json("/api/v1/runs").await;
    for run in runs["runs"].as_array().unwrap() {
        assert!(["queued", "running", "finished", "cancelled"].contains(&run["status"].as_str().unwrap()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_a_4xx_and_change_nothing() {
    let s = start(small_config("hostile")).await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let ten_mb = format!(r#"{{"config": {{"plant": {{"start": "{}"}}}}}}"#, "x".repeat(10 << 20));
    let bodies: Vec<(&str, Vec<u8>, u16)> = vec![
        ("empty body on start-both", Vec::new(), 422),
        ("invalid UTF-8", vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'], 400),
        ("deeply nested array", deep.into_bytes(), 400),
        ("deeply nested object", deep_object.into_bytes(), 400),
        ("10 MB body", ten_mb.into_bytes(), 413),
        ("NUL bytes", b"{\"seed\": 1\0}".to_vec(), 400),
    ];
    for route in ["/start-both", "/api/v1/runs", "/api/v1/config/validate"] {
        for (what, body, status) in &bodies {
            let r = s
                .http
                .post(format!("{}{route}", s.base))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let got = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            // an empty body reads as {}: only start-both lacks required fields then
            let expected = match (*what, route) {
                ("empty body on start-both", "/api/v1/runs") => 202,
                ("empty body on start-both", "/api/v1/config/validate") => 200,
                _ => *status,
            };
            assert_eq!(got, expected, "{what} on {route}: {v}");
            if got >= 400 {
                assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what} on {route}: {v}");
            }
        }
    }
    // the empty body on /api/v1/runs started exactly one run with the defaults; nothing else did
    let runs = s.get_json("/api/v1/runs").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
}
