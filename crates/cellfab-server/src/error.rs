//! The one error type of the server. Every failure becomes `{"error": {"code", "message",
//! "field"?}}`: 4xx for anything the client got wrong, 5xx only for real faults.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cellfab_model::ParamError;
use cellfab_plant::PlantError;
use serde::Serialize;

/// A failed request.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (`out_of_range`, `not_found`, …).
    pub code: &'static str,
    /// Human sentence naming the value and what is allowed.
    pub message: String,
    /// Path of the offending field (`anode.coating.coating_speed_m_s`), if any.
    pub field: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// An error without a field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None }
    }

    /// Attaches the offending field's path.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 404 for an unknown resource.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// 500: a real fault of the server (logged, never caused by input).
    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        eprintln!("cellfab-server: internal error: {message}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// 422 for a parameter outside its range (`out_of_range`) or breaking a rule
    /// (`invalid_value`).
    pub fn param(e: &ParamError) -> Self {
        let code = if e.min.is_some() || e.max.is_some() { "out_of_range" } else { "invalid_value" };
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string()).field(e.field.clone())
    }

    /// Maps a plant construction error (bad configuration) to a 4xx.
    pub fn plant(e: PlantError) -> Self {
        match e {
            PlantError::Param(p) => Self::param(&p),
            PlantError::QueueFull { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "out_of_range", e.to_string()).field("plant.batches")
            }
            PlantError::Config(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", m),
            other => Self::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body { error: Inner { code: self.code, message: &self.message, field: self.field.as_deref() } };
        (self.status, axum::Json(body)).into_response()
    }
}
