//! Request time limit on every route.
//!
//! Each request gets a deadline [`crate::ServerConfig::request_timeout`] after it arrives
//! ([`DEFAULT_REQUEST_TIMEOUT`]). Reading the body stops at the deadline (the
//! [`crate::body`] extractor reads it), and producing the response head must finish by
//! then too; either way the answer is 408 `{"error": {"code": "request_timeout", …}}`. Only
//! the head is bounded: a WebSocket keeps running after its upgrade, and a zip download
//! streams for as long as it takes. `POST /start-both` answers when its run is done (the
//! prototype's contract), so for it only the body read is bounded.
//!
//! Body size: [`crate::body::MAX_BODY_BYTES`] for the JSON bodies, and the same through
//! `axum::extract::DefaultBodyLimit` for any other extractor (set in [`crate::router`]).

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tokio::time::Instant;

/// Time a request may take to send its body and get its response head.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// When the request's body must have arrived (a request extension, read by [`crate::body`]).
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    /// The instant.
    pub at: Instant,
    /// The limit it was derived from, for the message.
    pub limit: Duration,
}

impl Deadline {
    /// The 408 answer for a request that missed this deadline.
    pub fn error(&self, what: &str) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("{what} took longer than the limit of {} s", self.limit.as_secs_f64()),
        )
    }
}

/// Routes whose answer waits for a whole run, so only their body read is bounded.
fn waits_for_run(path: &str) -> bool {
    path == "/start-both"
}

/// The middleware: stamps the deadline on the request and bounds the response head.
pub(crate) async fn timeout(State(limit): State<Duration>, mut req: Request, next: Next) -> Response {
    let deadline = Deadline { at: Instant::now() + limit, limit };
    req.extensions_mut().insert(deadline);
    if waits_for_run(req.uri().path()) {
        return next.run(req).await;
    }
    match tokio::time::timeout_at(deadline.at, next.run(req)).await {
        Ok(response) => response,
        Err(_) => deadline.error("the request").into_response(),
    }
}
