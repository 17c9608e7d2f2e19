//! `JsonBody<T>`: the request-body extractor of every route that takes input. It bounds the
//! body size, and turns every way a body can be wrong into an [`ApiError`] naming the field:
//! malformed JSON (400 `malformed_json`), an unknown field (422 `unknown_field`), a wrong type
//! (422 `invalid_type`), a missing field (422 `missing_field`), anything else (422
//! `invalid_value`), a body that is not an object (422 `invalid_type`), a body over [`MAX_BODY_BYTES`] (413 `payload_too_large`), a body
//! still arriving at the request's deadline (408 `request_timeout`, [`crate::limits`]). An
//! empty body reads as `{}`.

use crate::error::ApiError;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// Largest request body accepted [bytes].
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// A JSON body parsed into `T`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req).await?;
        parse(&bytes).map(JsonBody)
    }
}

/// Bytes of an oversized body read and discarded before answering 413, so the client gets
/// the answer instead of a reset connection; a larger body is cut off.
const DRAIN_LIMIT_BYTES: usize = 64 << 20;

/// Reads a whole body of at most [`MAX_BODY_BYTES`], by the request's
/// [`Deadline`](crate::limits::Deadline) if it has one (408 `request_timeout` after it).
pub async fn read_body(req: Request) -> Result<axum::body::Bytes, ApiError> {
    use tokio_stream::StreamExt;
    let deadline = req.extensions().get::<crate::limits::Deadline>().copied();
    let mut stream = req.into_body().into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    loop {
        let next = match deadline {
            Some(d) => {
                tokio::time::timeout_at(d.at, stream.next()).await.map_err(|_| d.error("sending the request body"))?
            }
            None => stream.next().await,
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "body_read_failed", format!("cannot read the request body: {e}"))
        })?;
        seen += chunk.len();
        if seen <= MAX_BODY_BYTES {
            buf.extend_from_slice(&chunk);
        } else if seen > DRAIN_LIMIT_BYTES {
            break;
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds the limit of {MAX_BODY_BYTES} bytes"),
        ));
    }
    Ok(buf.into())
}

/// Parses JSON bytes (empty = `{}`) into `T`, mapping errors to a field path.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    // Syntax first, so a malformed document is never reported as a type error.
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not valid JSON: {e}"))
    })?;
    if !value.is_object() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            "the body must be a JSON object".to_string(),
        ));
    }
    from_value(value)
}

/// Deserializes a JSON value into `T`, naming the field that failed.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let code = if message.starts_with("unknown field") {
            "unknown_field"
        } else if message.starts_with("invalid type") {
            "invalid_type"
        } else if message.starts_with("missing field") {
            "missing_field"
        } else {
            "invalid_value"
        };
        let field = unknown_field_path(&path, &message);
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, format!("{field}: {message}")).field(field)
    })
}

/// serde_path_to_error gives the path of the object holding an unknown or missing field;
/// append the field's own name so the error points at it.
fn unknown_field_path(path: &str, message: &str) -> String {
    let name = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next());
    match (path, name) {
        (".", Some(n)) => n.to_string(),
        (p, Some(n)) if !p.ends_with(n) => format!("{p}.{n}"),
        (p, _) => p.to_string(),
    }
}
