//! The versioned API under `/api/v1`: configuration, runs, samples, downloads, live events,
//! health and metrics. Described by `GET /api/v1/openapi.json` (see `openapi.rs`).

use crate::body::{self, JsonBody};
use crate::error::ApiError;
use crate::legacy::zip_response;
use crate::runs::{Run, RunStatus};
use crate::zipstream::Scope;
use crate::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cellfab_model::stage::StageParams;
use cellfab_model::{Line, ParamError, StageKind};
use cellfab_plant::{Plant, PlantConfig, PlantError, Speed};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The `/api/v1` routes (nest under `/api/v1`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/docs", get(docs))
        .route("/config/default", get(config_default))
        .route("/config/schema", get(config_schema))
        .route("/config/validate", post(config_validate))
        .route("/runs", post(create_run).get(list_runs))
        .route("/runs/{id}", get(get_run))
        .route("/runs/{id}/cancel", post(cancel_run))
        .route("/runs/{id}/kpis", get(run_kpis))
        .route("/runs/{id}/samples", get(samples))
        .route("/runs/{id}/download", get(download))
        .route("/runs/{id}/events", get(events))
}

async fn health(State(app): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "runs": app.runs.list().len(),
        "queued": app.runs.queued(),
    }))
}

async fn metrics(State(app): State<AppState>) -> Response {
    let text = app.metrics.render(app.runs.queued());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

async fn docs() -> Html<&'static str> {
    Html(crate::openapi::DOCS_PAGE)
}

async fn config_default(State(app): State<AppState>) -> Json<PlantConfig> {
    Json(app.base_config.as_ref().clone())
}

async fn config_schema() -> Json<Value> {
    Json(PlantConfig::json_schema())
}

/// Merges `overrides` onto `base` (objects key by key) and parses it, naming the field of a
/// wrong type or an unknown key.
pub fn merged_config(base: &PlantConfig, overrides: Value) -> Result<PlantConfig, ApiError> {
    if !overrides.is_object() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            "the configuration must be a JSON object holding any subset of the keys of GET /api/v1/config/default",
        ));
    }
    let mut value = serde_json::to_value(base).map_err(|e| ApiError::internal(e.to_string()))?;
    merge(&mut value, overrides);
    body::from_value(value)
}

fn merge(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn param_json(e: &ParamError) -> Value {
    let finite = |v: f64| if v.is_finite() { Value::from(v) } else { Value::Null };
    json!({"field": e.field, "value": finite(e.value), "min": e.min, "max": e.max, "unit": e.unit,
           "message": e.to_string()})
}

/// Every parameter error of `c`: the plant settings, then each stage's parameters (one error
/// per parameter set, the first it finds).
fn all_errors(c: &PlantConfig) -> Vec<ParamError> {
    let mut errors = Vec::new();
    let plant_only = PlantConfig { plant: c.plant.clone(), ..PlantConfig::default() };
    match plant_only.validate() {
        Ok(()) => {}
        Err(PlantError::Param(e)) => errors.push(e),
        Err(e @ PlantError::QueueFull { .. }) => {
            errors.push(ParamError::rule("plant.batches", c.plant.batches as f64, "", e.to_string()))
        }
        Err(e) => errors.push(ParamError::rule("plant", f64::NAN, "", e.to_string())),
    }
    let mut check = |prefix: String, r: Result<(), ParamError>| {
        if let Err(e) = r {
            errors.push(e.at(&prefix));
        }
    };
    for (name, line) in [("anode", &c.anode), ("cathode", &c.cathode)] {
        check(format!("{name}.recipe."), line.recipe.validate());
        check(format!("{name}.mixing."), line.mixing.validate());
        check(format!("{name}.coating."), line.coating.validate());
        check(format!("{name}.drying."), line.drying.validate());
        check(format!("{name}.calendaring."), line.calendaring.validate());
        check(format!("{name}.slitting."), line.slitting.validate());
        check(format!("{name}.inspection."), line.inspection.validate());
        check(format!("{name}.rewinding."), line.rewinding.validate());
    }
    check("cell.assembly.".into(), c.cell.assembly.validate());
    check("cell.filling.".into(), c.cell.filling.validate());
    check("cell.formation.".into(), c.cell.formation.validate());
    check("cell.aging.".into(), c.cell.aging.validate());
    errors
}

/// The answer of `POST /api/v1/config/validate` for a body: `{"valid", "errors"}` with every
/// parameter error, or a 4xx when the body is not a configuration at all.
pub fn validation_report(base: &PlantConfig, overrides: Value) -> Result<Value, ApiError> {
    if !overrides.is_object() {
        // not a configuration at all: the request is wrong, not the configuration
        return merged_config(base, overrides).map(|_| Value::Null);
    }
    let errors: Vec<Value> = match merged_config(base, overrides) {
        Ok(config) => all_errors(&config).iter().map(param_json).collect(),
        Err(e) => vec![json!({"field": e.field, "code": e.code, "message": e.message})],
    };
    Ok(json!({"valid": errors.is_empty(), "errors": errors}))
}

/// Checks a (partial) configuration without running anything: 200 with every error.
async fn config_validate(
    State(app): State<AppState>,
    JsonBody(overrides): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    validation_report(&app.base_config, overrides).map(Json)
}

/// Body of `POST /api/v1/runs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Any subset of the configuration's keys; the rest keep the server's defaults.
    config: Option<Value>,
    /// Batches (overrides `plant.batches`).
    batches: Option<u32>,
    /// Master seed (overrides `plant.seed`).
    seed: Option<u64>,
    /// Plant time 0, RFC 3339 (overrides `plant.start`).
    start: Option<String>,
    /// "max" or simulated seconds per wall second (overrides `plant.speed`).
    speed: Option<Speed>,
    /// Outputs: any of "json" (the seed layout), "jsonl", "csv", "parquet"; default ["json"].
    formats: Option<Vec<String>>,
}

/// The plant a `POST /api/v1/runs` request asks for (the base configuration with the
/// request's overrides) and its output formats. Bad input is a 4xx naming the field
/// (`config.…` inside `config`).
pub fn run_request_plant(
    base: &PlantConfig,
    req: RunRequest,
) -> Result<(Plant, cellfab_store::tables::OutputFormats), ApiError> {
    let prefixed = |mut e: ApiError| {
        e.field = Some(format!("config.{}", e.field.as_deref().unwrap_or_default()).trim_end_matches('.').to_string());
        e
    };
    let formats = match &req.formats {
        None => cellfab_store::tables::OutputFormats::default(),
        Some(names) => cellfab_store::tables::OutputFormats::from_names(names)
            .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", m).field("formats"))?,
    };
    let mut config = match req.config {
        Some(overrides) => merged_config(base, overrides).map_err(prefixed)?,
        None => base.clone(),
    };
    let p = &mut config.plant;
    let mut top = Vec::new();
    if let Some(b) = req.batches {
        p.batches = b;
        top.push("batches");
    }
    if let Some(s) = req.seed {
        p.seed = s;
        top.push("seed");
    }
    if let Some(s) = req.start {
        p.start = s;
        top.push("start");
    }
    if let Some(s) = req.speed {
        p.speed = s;
        top.push("speed");
    }
    let plant = Plant::new(config, jiff::Timestamp::now()).map_err(|e| {
        let mut err = ApiError::plant(e);
        if let Some(f) = err.field.clone() {
            err.field = Some(match f.strip_prefix("plant.") {
                Some(key) if top.contains(&key) => key.to_string(),
                _ => format!("config.{f}"),
            });
        }
        err
    })?;
    Ok((plant, formats))
}

async fn create_run(State(app): State<AppState>, JsonBody(req): JsonBody<RunRequest>) -> Result<Response, ApiError> {
    let (plant, formats) = run_request_plant(&app.base_config, req)?;
    let run = app.runs.submit_with_formats(plant, "api", formats).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"id": run.id, "status": run.status()}))).into_response())
}

async fn list_runs(State(app): State<AppState>) -> Json<Value> {
    Json(json!({"runs": app.runs.list().iter().map(|r| r.view(false)).collect::<Vec<_>>()}))
}

async fn get_run(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(app.runs.get(&id)?.view(true)))
}

async fn run_kpis(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let run = app.runs.get(&id)?;
    match run.kpis() {
        Some(kpis) => Ok(Json(kpis.as_ref().clone())),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "run_not_finished",
            format!("run {id} is {:?}; its KPIs exist once it has run to its end", run.status()),
        )
        .field("id")),
    }
}

async fn cancel_run(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let run = app.runs.get(&id)?;
    let status = run.status();
    if status.is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "run_ended",
            format!("run {id} has already ended ({status:?}); nothing to cancel"),
        )
        .field("id"));
    }
    run.cancel();
    Ok(Json(json!({"id": run.id, "status": run.status(), "cancel_requested": true})))
}

/// Query strings are parsed as flat string maps, then every key is checked, so an unknown
/// or malformed parameter is a JSON error naming it.
fn query(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    allowed: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let Query(map) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_field",
            format!("unknown query parameter \"{k}\"; allowed: {}", allowed.join(", ")),
        )
        .field(k.clone()));
    }
    Ok(map)
}

fn finished_folder(run: &Run) -> Result<std::path::PathBuf, ApiError> {
    match (run.status(), run.folder()) {
        (RunStatus::Finished, Some(f)) => Ok(f),
        (status, _) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "run_not_finished",
            format!("run {} is {status:?}; its files can be downloaded once it has finished", run.id),
        )
        .field("id")),
    }
}

async fn download(
    State(app): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let run = app.runs.get(&id)?;
    let q = query(q, &["scope"])?;
    let scope_name = q.get("scope").map(String::as_str).unwrap_or("all");
    let scope = match scope_name {
        "anode" => Scope::Line(Line::Anode),
        "cathode" => Scope::Line(Line::Cathode),
        "cell" => Scope::Line(Line::Cell),
        "all" => Scope::All,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_value",
                format!("scope = \"{other}\": must be anode, cathode, cell or all"),
            )
            .field("scope"))
        }
    };
    let folder = finished_folder(&run)?;
    zip_response(folder, scope, &format!("{}-{scope_name}", run.id)).await
}

/// Default and largest `max_points` of a samples query.
const DEFAULT_MAX_POINTS: usize = 1000;
const LIMIT_MAX_POINTS: usize = 100_000;

fn number(q: &HashMap<String, String>, key: &str) -> Result<Option<f64>, ApiError> {
    q.get(key)
        .map(|s| match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_value",
                format!("{key} = \"{s}\": must be a finite number of seconds"),
            )
            .field(key)),
        })
        .transpose()
}

/// A machine's time series, read from the run registry (every sample, or the decimated
/// series when the server keeps one): `batch`, `time_s` (stage time: seconds since the machine
/// started the batch; `from`/`to` filter on it) and every numeric field of the typed sample (measured value where
/// a signal has one), downsampled to at most `max_points` evenly spaced points.
async fn samples(
    State(app): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let run = app.runs.get(&id)?;
    let q = query(q, &["machine", "fields", "from", "to", "max_points"])?;
    let machine = q.get("machine").ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "missing_field", "machine is required, e.g. machine=MC_Coat_Anode")
            .field("machine")
    })?;
    let stage = run
        .machines()
        .iter()
        .find(|m| &m.machine_id == machine)
        .and_then(|m| StageKind::from_name(m.stage))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_value",
                format!("machine = \"{machine}\": not a machine of the plant (see GET /api/v1/runs/{id})"),
            )
            .field("machine")
        })?;
    let (from, to) = (number(&q, "from")?, number(&q, "to")?);
    let max_points = match q.get("max_points") {
        None => DEFAULT_MAX_POINTS,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (2..=LIMIT_MAX_POINTS).contains(&n) => n,
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "out_of_range",
                    format!("max_points = \"{s}\": must be an integer from 2 to {LIMIT_MAX_POINTS}"),
                )
                .field("max_points"))
            }
        },
    };
    let fields: Option<Vec<String>> =
        q.get("fields").map(|f| f.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
    let _ = stage; // the machine is valid
    if run.folder().is_none() {
        return Err(
            ApiError::new(StatusCode::CONFLICT, "run_not_started", format!("run {id} has not started yet")).field("id")
        );
    }
    // the registry downsamples (Registry::samples_downsampled), so only the kept
    // points' documents are read and parsed
    let (total, rows) = app
        .runs
        .registry()
        .samples_downsampled(&id, machine, from, to, max_points)
        .await
        .map_err(|e| ApiError::internal(format!("reading the registry: {e}")))?;
    let points: Vec<Point> = rows
        .into_iter()
        .map(|row| Point {
            batch: row.batch as u64,
            t_s: row.stage_time_s,
            values: row.fields.into_iter().filter_map(|(k, v)| Some((k, v.as_f64()?))).collect(),
        })
        .collect();
    let total = total as usize;
    let available: Vec<String> = {
        let mut names: Vec<String> = points.first().map(|p| p.values.keys().cloned().collect()).unwrap_or_default();
        names.sort();
        names
    };
    if let Some(fields) = &fields {
        if let Some(bad) = fields.iter().find(|f| total > 0 && !available.contains(f)) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_value",
                format!(
                    "fields: \"{bad}\" is not a numeric field of this machine; available: {}",
                    available.join(", ")
                ),
            )
            .field("fields"));
        }
    }
    let rows: Vec<Value> = points
        .iter()
        .map(|p| {
            let mut row = serde_json::Map::new();
            row.insert("batch".into(), Value::from(p.batch));
            row.insert("time_s".into(), Value::from(p.t_s));
            for (k, v) in &p.values {
                if fields.as_ref().is_none_or(|f| f.contains(k)) {
                    row.insert(k.clone(), Value::from(*v));
                }
            }
            Value::Object(row)
        })
        .collect();
    Ok(Json(json!({
        "run_id": id,
        "machine": q.get("machine"),
        "total_points": total,
        "returned_points": rows.len(),
        "fields": fields.unwrap_or(available),
        "points": rows,
    })))
}

struct Point {
    batch: u64,
    t_s: f64,
    values: std::collections::BTreeMap<String, f64>,
}

async fn events(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let run = app.runs.get(&id)?;
    Ok(crate::legacy::upgrade(ws)?.on_upgrade(move |socket| event_client(app, run, socket)))
}

/// Sends a snapshot of the run, then its live events; closes after the run's last event.
async fn event_client(app: AppState, run: Arc<Run>, mut socket: WebSocket) {
    let (mut rx, snapshot) = run.watch();
    app.metrics.event_clients.fetch_add(1, Ordering::Relaxed);
    let ended = run.status().is_terminal();
    let snapshot = json!({"type": "snapshot", "run": snapshot});
    if socket.send(Message::text(snapshot.to_string())).await.is_ok() && !ended {
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Ok(event) => {
                        if socket.send(Message::text(event.json.to_string())).await.is_err() || event.last {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        app.metrics.live_skipped.fetch_add(n, Ordering::Relaxed);
                        let note = json!({"type": "skipped", "run_id": run.id, "events": n});
                        if socket.send(Message::text(note.to_string())).await.is_err() {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
    app.metrics.event_clients.fetch_sub(1, Ordering::Relaxed);
}
