//! Access control: one bearer token for the whole server.
//!
//! When [`crate::ServerConfig::token`] is set, every `/api/v1/*` route (except
//! `GET /api/v1/health`, for probes) and the prototype's routes (`/start-both`, `/reset`,
//! `/files/*`, `/ws/status`) need `Authorization: Bearer <token>`. Browsers cannot put a
//! header on a WebSocket or an `<a href>` download, so a GET (WebSocket upgrades included)
//! may carry `?token=<token>` instead. The UI's page and its assets stay open, so a browser
//! can load the page and ask for the token. A missing or wrong token is a 401
//! `{"error": {"code": "unauthorized", …}}` with `WWW-Authenticate: Bearer`, and the request
//! goes no further.
//!
//! Tokens are compared through their SHA-256 digests, in constant time. The `token` query
//! parameter is taken off the URI before the request reaches a handler, so no handler sees
//! (or logs) it, and a route's own query parameters stay strict.

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Query parameter that may carry the token on GET requests.
pub const TOKEN_QUERY: &str = "token";

/// A secret string (the access token) whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself; only for comparing or sending it, never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

/// What the access middleware checks requests against.
#[derive(Clone)]
pub(crate) struct Guard {
    /// SHA-256 of the token; `None` = the server is open.
    digest: Option<[u8; 32]>,
}

impl Guard {
    pub(crate) fn new(token: Option<&Secret>) -> Arc<Self> {
        Arc::new(Self { digest: token.map(|t| digest(t.expose())) })
    }

    fn accepts(&self, presented: &str) -> bool {
        self.digest.is_some_and(|want| constant_time_eq(&want, &digest(presented)))
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Equality of two digests that takes the same time wherever they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Whether `path` needs the token: the API (but its health probe) and the prototype's routes.
pub fn is_protected(method: &Method, path: &str) -> bool {
    if path == "/api/v1/health" && (method == Method::GET || method == Method::HEAD) {
        return false;
    }
    path == "/api/v1"
        || path.starts_with("/api/v1/")
        || path == "/start-both"
        || path == "/reset"
        || path.starts_with("/files/")
        || path == "/ws/status"
}

/// The middleware: takes `?token=` off the URI, then lets the request through if its route
/// is open or it carries the token; otherwise answers 401.
pub(crate) async fn require(State(guard): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let query_token = take_query_token(req.uri_mut());
    if guard.digest.is_none() || !is_protected(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let header_token = req.headers().get(header::AUTHORIZATION).map(bearer);
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    let ok = match (&header_token, &query_token) {
        (Some(Some(t)), _) if guard.accepts(t) => true,
        (_, Some(t)) if get => guard.accepts(t),
        _ => false,
    };
    if ok {
        return next.run(req).await;
    }
    let message = if header_token.is_none() && query_token.is_none() {
        "this route needs the access token: send \"Authorization: Bearer <token>\" (or ?token=<token> on a GET)"
    } else {
        "the access token is wrong or malformed"
    };
    unauthorized(message)
}

/// The 401 answer.
fn unauthorized(message: &str) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// The token of an `Authorization: Bearer <token>` header, `None` for another scheme.
fn bearer(value: &HeaderValue) -> Option<String> {
    let value = value.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

/// Removes every `token=` pair from the URI's query and returns the (last) decoded value.
fn take_query_token(uri: &mut Uri) -> Option<String> {
    let query = uri.query()?;
    let mut token = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let key = pair.split('=').next().unwrap_or_default();
        if key == TOKEN_QUERY {
            let value = pair.split_once('=').map(|(_, v)| v).unwrap_or_default();
            token = form_urlencoded::parse(format!("t={value}").as_bytes()).next().map(|(_, v)| v.into_owned());
        } else {
            kept.push(pair);
        }
    }
    token.as_ref()?;
    let path = uri.path();
    let rebuilt = if kept.is_empty() { path.to_string() } else { format!("{path}?{}", kept.join("&")) };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = rebuilt.parse().ok();
    if let Ok(new) = Uri::from_parts(parts) {
        *uri = new;
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_hides_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(s)), "Some(Secret(***))");
    }

    #[test]
    fn query_token_is_taken_off_and_other_parameters_kept() {
        let mut uri: Uri = "/api/v1/runs/x/download?scope=anode&token=a%2Bb%20c&fields=p,q".parse().unwrap();
        assert_eq!(take_query_token(&mut uri).as_deref(), Some("a+b c"));
        assert_eq!(uri.to_string(), "/api/v1/runs/x/download?scope=anode&fields=p,q");
        let mut only: Uri = "/ws/status?token=t".parse().unwrap();
        assert_eq!(take_query_token(&mut only).as_deref(), Some("t"));
        assert_eq!(only.to_string(), "/ws/status");
        let mut none: Uri = "/api/v1/runs?tokens=1".parse().unwrap();
        assert_eq!(take_query_token(&mut none), None);
        assert_eq!(none.to_string(), "/api/v1/runs?tokens=1");
    }

    #[test]
    fn only_the_api_and_prototype_routes_are_protected() {
        for p in
            ["/api/v1/runs", "/api/v1/metrics", "/api/v1/nope", "/start-both", "/reset", "/files/all", "/ws/status"]
        {
            assert!(is_protected(&Method::GET, p), "{p}");
        }
        for p in ["/", "/index.html", "/assets/app.js", "/favicon.svg", "/api/v1/health", "/api/v1x"] {
            assert!(!is_protected(&Method::GET, p), "{p}");
        }
        assert!(is_protected(&Method::POST, "/api/v1/health"));
    }

    #[test]
    fn bearer_header_is_parsed_case_insensitively() {
        assert_eq!(bearer(&HeaderValue::from_static("Bearer abc")).as_deref(), Some("abc"));
        assert_eq!(bearer(&HeaderValue::from_static("bearer  abc ")).as_deref(), Some("abc"));
        assert_eq!(bearer(&HeaderValue::from_static("Basic abc")), None);
        assert_eq!(bearer(&HeaderValue::from_static("Bearer")), None);
    }

    #[test]
    fn only_the_configured_token_is_accepted() {
        let g = Guard::new(Some(&Secret::new("right")));
        assert!(g.accepts("right"));
        assert!(!g.accepts("wrong"));
        assert!(!g.accepts(""));
        assert!(!Guard::new(None).accepts(""));
    }
}
