//! The web UI, served from the binary: `web/dist` (built by `npm run build` in `web/`, and
//! committed, so a fresh clone serves the UI with no Node step) is embedded at compile time.
//! Hashed assets are cached for good; `index.html` is never cached, so a new build shows at
//! once. The UI is a single page without client-side paths: anything that is neither a route
//! nor a file of the bundle gets the JSON 404.

use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../web/dist"]
#[allow_missing = true]
struct Bundle;

const MISSING: &str = "<!doctype html><meta charset=utf-8><title>cellfab</title>\
<p>The web UI is not built into this binary. Run <code>npm ci &amp;&amp; npm run build</code> in \
<code>web/</code> and rebuild, or use the API: <a href=/api/v1/docs>/api/v1/docs</a>.";

fn file(path: &str) -> Option<Response> {
    let f = Bundle::get(path)?;
    let cache = if path.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    Some(
        (
            [(header::CONTENT_TYPE, f.metadata.mimetype().to_string()), (header::CACHE_CONTROL, cache.to_string())],
            f.data.into_owned(),
        )
            .into_response(),
    )
}

/// `GET /`: the UI's page.
pub async fn index() -> Response {
    file("index.html")
        .unwrap_or_else(|| ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], MISSING).into_response())
}

/// Everything no route matched: a file of the UI bundle, or the JSON 404.
pub async fn fallback(method: axum::http::Method, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let api = path.starts_with("api/") || path == "api";
    if method == axum::http::Method::GET && !api && !path.contains("..") {
        if let Some(r) = file(path) {
            return r;
        }
    }
    crate::not_found(uri).await.into_response()
}
