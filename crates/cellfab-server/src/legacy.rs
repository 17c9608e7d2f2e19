//! The prototype's routes, working as its README describes (seed README §7):
//! `POST /start-both`, `POST /reset`, `GET /files/{Anode|Cathode|all}` and `WS /ws/status`.

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::runs::RunStatus;
use crate::zipstream::{self, Scope};
use crate::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cellfab_model::stages::mixing::params_from_volume_fractions;
use cellfab_model::Line;
use cellfab_plant::{Plant, Speed};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;

/// The prototype's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/start-both", post(start_both))
        .route("/reset", post(reset))
        .route("/files/{electrode_type}", get(files))
        .route("/ws/status", get(ws_status))
}

/// A volume fraction: a JSON number or a numeric string (the prototype's UI sent strings).
#[derive(Clone, Copy, Debug)]
pub struct Fraction(f64);

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Fraction;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number or a numeric string")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Fraction, E> {
                Ok(Fraction(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Fraction, E> {
                Ok(Fraction(v as f64))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Fraction, E> {
                Ok(Fraction(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Fraction, E> {
                match v.trim().parse::<f64>() {
                    Ok(x) if x.is_finite() => Ok(Fraction(x)),
                    Ok(_) => Err(E::custom(format!("\"{v}\" is not a finite number"))),
                    Err(_) => Err(E::custom(format!("\"{v}\" is not a number"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// One electrode's slurry: volume fractions of the 200 L mixing tank.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slurry {
    #[serde(rename = "PVDF")]
    pvdf: Fraction,
    #[serde(rename = "CA")]
    ca: Fraction,
    #[serde(rename = "AM")]
    am: Fraction,
    #[serde(rename = "Solvent")]
    solvent: Fraction,
    electrode_type: String,
}

/// Body of `POST /start-both`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBoth {
    anode: Slurry,
    cathode: Slurry,
}

/// The plant a `/start-both` request asks for: the base configuration with both recipes
/// from their volume fractions, one batch, full speed. Bad input is a 4xx naming the field.
pub fn start_both_plant(base: &cellfab_plant::PlantConfig, req: &StartBoth) -> Result<Plant, ApiError> {
    let mut config = base.clone();
    for (key, line, slurry) in [("anode", Line::Anode, &req.anode), ("cathode", Line::Cathode, &req.cathode)] {
        if slurry.electrode_type != line.title() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_value",
                format!(
                    "{key}.electrode_type = \"{}\": must be \"{}\" for the {key} slurry",
                    slurry.electrode_type,
                    line.title()
                ),
            )
            .field(format!("{key}.electrode_type")));
        }
        let (mixing, recipe) =
            params_from_volume_fractions(line, slurry.am.0, slurry.ca.0, slurry.pvdf.0, slurry.solvent.0)
                .map_err(|e| ApiError::param(&e.at(&format!("{key}."))))?;
        let side = if line == Line::Anode { &mut config.anode } else { &mut config.cathode };
        side.mixing = mixing;
        side.recipe = recipe;
    }
    config.plant.batches = 1;
    config.plant.speed = Speed::Max;
    Plant::new(config, jiff::Timestamp::now()).map_err(ApiError::plant)
}

/// Runs one batch through the whole plant with the given recipes, at full speed, and
/// answers once every machine is done.
async fn start_both(State(app): State<AppState>, JsonBody(req): JsonBody<StartBoth>) -> Result<Response, ApiError> {
    let plant = start_both_plant(&app.base_config, &req)?;
    let run = app.runs.submit(plant, "start-both").await?;
    run.wait().await;
    match run.status() {
        RunStatus::Finished => {}
        RunStatus::Cancelled => {
            return Err(ApiError::new(StatusCode::CONFLICT, "cancelled", "the simulation was cancelled by a reset"))
        }
        _ => {
            return Err(ApiError::internal(format!(
                "the simulation failed: {}",
                run.error().unwrap_or_else(|| "unknown error".into())
            )))
        }
    }
    let mut status = Map::new();
    for m in run.machines() {
        status.insert(
            m.machine_id.clone(),
            json!({"completed": m.completed_at.is_some(), "timestamp": m.completed_at.unwrap_or_default()}),
        );
    }
    Ok(Json(json!({
        "message": "All processes completed successfully.",
        "run_id": run.id,
        "completion_status": Value::Object(status),
    }))
    .into_response())
}

/// Cancels every run, deletes every result and forgets the runs.
async fn reset(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let cleared = app.runs.reset().await?;
    app.feed.push("Factory and data reset.");
    Ok(Json(json!({"message": "Factory and data reset.", "runs_cleared": cleared})))
}

/// A zip of the latest finished run's files of one electrode (with the cell line's) or all.
async fn files(State(app): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let scope = match name.as_str() {
        "Anode" | "anode" => Scope::LegacyElectrode(Line::Anode),
        "Cathode" | "cathode" => Scope::LegacyElectrode(Line::Cathode),
        "all" | "All" => Scope::All,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_value",
                format!("electrode_type = \"{other}\": must be Anode, Cathode or all"),
            )
            .field("electrode_type"))
        }
    };
    let folder = app
        .runs
        .latest_finished()
        .and_then(|r| r.folder())
        .ok_or_else(|| ApiError::not_found("no results yet: run a simulation first (POST /start-both)"))?;
    zip_response(folder, scope, &name).await
}

/// Streams the files of `folder` that `scope` selects as `<name>.zip`.
pub async fn zip_response(folder: std::path::PathBuf, scope: Scope, name: &str) -> Result<Response, ApiError> {
    let files = tokio::task::spawn_blocking(move || zipstream::select(&folder, scope))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("cannot list the run folder: {e}")))?;
    let disposition = format!("attachment; filename=\"{name}.zip\"");
    Ok((
        [(header::CONTENT_TYPE, "application/zip".to_string()), (header::CONTENT_DISPOSITION, disposition)],
        zipstream::stream(files),
    )
        .into_response())
}

async fn ws_status(
    State(app): State<AppState>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    Ok(upgrade(ws)?.on_upgrade(move |socket| status_client(app, socket)))
}

/// A plain HTTP request to a WebSocket route is a JSON 400, like every other client error.
pub fn upgrade(ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>) -> Result<WebSocketUpgrade, ApiError> {
    ws.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "websocket_required",
            format!("this route speaks WebSocket; connect with ws:// ({})", e.body_text()),
        )
    })
}

async fn status_client(app: AppState, mut socket: WebSocket) {
    let (history, mut rx) = app.feed.subscribe();
    app.metrics.status_clients.fetch_add(1, Ordering::Relaxed);
    'outer: {
        for frame in history {
            if socket.send(Message::text(frame)).await.is_err() {
                break 'outer;
            }
        }
        loop {
            tokio::select! {
                frame = rx.recv() => match frame {
                    Ok(frame) => {
                        if socket.send(Message::text(frame)).await.is_err() {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        app.metrics.live_skipped.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                incoming = socket.recv() => match incoming {
                    // The prototype ignored what clients send.
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    app.metrics.status_clients.fetch_sub(1, Ordering::Relaxed);
}
