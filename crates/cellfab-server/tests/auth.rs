//! Access control, body limits and time limits over real sockets: a server with a token
//! refuses every protected route without it (401, nothing changes), accepts the header and,
//! on GET and WebSocket, `?token=`; the health probe and the UI stay open; a body that
//! arrives too slowly gets 408, but WebSockets live past the time limit.

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::time::Duration;

const TOKEN: &str = "tok-3f9a+/= with space";
const TOKEN_Q: &str = "tok-3f9a%2B%2F%3D%20with%20space";

async fn secured(name: &str) -> Server {
    let mut c = small_config(name);
    c.token = Some(TOKEN.into());
    start(c).await
}

async fn send(s: &Server, method: &str, path: &str, auth: Option<&str>) -> reqwest::Response {
    let url = format!("{}{path}", s.base);
    let mut r = if method == "POST" {
        s.http.post(url).header("content-type", "application/json").body(START_BOTH)
    } else {
        s.http.get(url)
    };
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    r.send().await.expect("answers")
}

async fn assert_401(r: reqwest::Response, what: &str) {
    assert_eq!(r.status(), 401, "{what}");
    assert_eq!(r.headers()["www-authenticate"], "Bearer", "{what}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized", "{what}: {body}");
    assert!(!body.to_string().contains("tok-3f9a"), "{what}: the token never appears in an answer");
}

/// One route of each protected family.
const PROTECTED: [(&str, &str); 11] = [
    ("GET", "/api/v1/runs"),
    ("POST", "/api/v1/runs"),
    ("GET", "/api/v1/config/default"),
    ("POST", "/api/v1/config/validate"),
    ("GET", "/api/v1/metrics"),
    ("GET", "/api/v1/runs/nope/download"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/start-both"),
    ("POST", "/reset"),
    ("GET", "/files/all"),
    ("GET", "/ws/status"),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_protected_route_refuses_a_missing_or_wrong_token_and_nothing_changes() {
    let s = secured("auth-refuse").await;
    let before = s.files();
    for (method, path) in PROTECTED {
        assert_401(send(&s, method, path, None).await, &format!("{method} {path} without a token")).await;
        assert_401(send(&s, method, path, Some("Bearer wrong")).await, &format!("{method} {path} wrong token")).await;
        assert_401(send(&s, method, path, Some(&format!("Basic {TOKEN}"))).await, &format!("{method} {path} Basic"))
            .await;
        let q = if path.contains('?') { "&" } else { "?" };
        assert_401(
            send(&s, method, &format!("{path}{q}token=wrong"), None).await,
            &format!("{method} {path}?token=wrong"),
        )
        .await;
    }
    // a right token in the query is not enough for a POST: only GETs may carry it there
    assert_401(send(&s, "POST", &format!("/api/v1/runs?token={TOKEN_Q}"), None).await, "POST with ?token=").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.files(), before, "no refused request wrote anything");
    let runs = s
        .http
        .get(format!("{}/api/v1/runs", s.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0), "no run was started: {runs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_in_the_header_or_a_get_query_opens_every_route() {
    let s = secured("auth-accept").await;
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(send(&s, "GET", "/api/v1/runs", Some(&bearer)).await.status(), 200);
    assert_eq!(send(&s, "GET", "/api/v1/runs", Some(&format!("bearer {TOKEN}"))).await.status(), 200);
    assert_eq!(send(&s, "GET", &format!("/api/v1/config/default?token={TOKEN_Q}"), None).await.status(), 200);
    let r =
        s.http.post(format!("{}/api/v1/runs", s.base)).bearer_auth(TOKEN).body(r#"{"seed": 3}"#).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    for _ in 0..600 {
        let run: Value =
            send(&s, "GET", &format!("/api/v1/runs/{id}?token={TOKEN_Q}"), None).await.json().await.unwrap();
        if run["status"] == "finished" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // the query token is taken off before the route's own (strict) query parameters are read
    let zip = send(&s, "GET", &format!("/api/v1/runs/{id}/download?token={TOKEN_Q}&scope=anode"), None).await;
    assert_eq!(zip.status(), 200);
    assert!(!unzip(&zip.bytes().await.unwrap()).is_empty());
    let samples = send(
        &s,
        "GET",
        &format!("/api/v1/runs/{id}/samples?machine=MC_Coat_Anode&token={TOKEN_Q}&fields=wet_thickness_m&max_points=5"),
        None,
    )
    .await;
    assert_eq!(samples.status(), 200, "{}", samples.text().await.unwrap());
    assert_eq!(send(&s, "GET", &format!("/files/all?token={TOKEN_Q}"), None).await.status(), 200);
    assert_eq!(send(&s, "POST", "/reset", Some(&bearer)).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_probe_and_the_ui_stay_open() {
    let s = secured("auth-open").await;
    let health = send(&s, "GET", "/api/v1/health", None).await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    let page = send(&s, "GET", "/", None).await;
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    // an unknown non-API path is the UI's 404, open; an unknown API path needs the token
    assert_eq!(send(&s, "GET", "/no-such-file.js", None).await.status(), 404);
    assert_eq!(send(&s, "GET", "/api/v1/no-such-route", None).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn websockets_need_the_query_token() {
    let s = secured("auth-ws").await;
    for path in ["/ws/status", "/api/v1/runs/nope/events"] {
        match tokio_tungstenite::connect_async(format!("{}{path}", s.ws)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401, "{path}"),
            other => panic!("{path} without a token must be refused, got {:?}", other.map(|_| ())),
        }
    }
    let mut ws = connect(&format!("{}/ws/status?token={TOKEN_Q}", s.ws)).await;
    assert_eq!(send(&s, "POST", "/reset", Some(&format!("Bearer {TOKEN}"))).await.status(), 200);
    let text = next_text(&mut ws, Duration::from_secs(10)).await.expect("a status line");
    assert!(text.contains("reset"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_lets_allowed_origins_send_the_authorization_header() {
    let s = secured("auth-cors").await;
    let pre = s
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/api/v1/runs", s.base))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 200);
    let allowed = pre.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    assert_eq!(pre.headers()["access-control-allow-origin"], "http://localhost:5173");
    let refused = s.http.get(format!("{}/api/v1/runs", s.base)).header("origin", "http://localhost:5173").send().await;
    let refused = refused.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["access-control-allow-origin"],
        "http://localhost:5173",
        "the browser may read the 401"
    );
    let stranger = s.http.get(format!("{}/api/v1/health", s.base)).header("origin", "http://evil.example").send().await;
    assert!(stranger.unwrap().headers().get("access-control-allow-origin").is_none());
}

/// Sends a request head announcing a body of 100 bytes, then only part of it, and returns
/// the answer (read for at most 20 s).
fn trickle(base: &str, path: &str, auth: &str) -> (String, Duration) {
    let addr = base.trim_start_matches("http://").to_string();
    let started = std::time::Instant::now();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"seed\""
    )
    .unwrap();
    stream.flush().unwrap();
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&text).contains("}}") {
            break;
        }
    }
    (String::from_utf8_lossy(&text).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_slower_than_the_time_limit_gets_408_but_websockets_outlive_it() {
    let mut c = small_config("auth-timeout");
    c.token = Some(TOKEN.into());
    c.request_timeout = Duration::from_millis(800);
    let s = start(c).await;
    let bearer = format!("Bearer {TOKEN}");
    let mut ws = connect(&format!("{}/ws/status?token={TOKEN_Q}", s.ws)).await;
    for path in ["/api/v1/runs", "/api/v1/config/validate", "/start-both"] {
        let (base, auth) = (s.base.clone(), bearer.clone());
        let (answer, took) = tokio::task::spawn_blocking(move || trickle(&base, path, &auth)).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(answer.contains(r#""code":"request_timeout""#), "{path}: {answer}");
        assert!(took >= Duration::from_millis(700) && took < Duration::from_secs(10), "{path}: {took:?}");
    }
    let runs: Value = send(&s, "GET", "/api/v1/runs", Some(&bearer)).await.json().await.unwrap();
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0), "no timed-out request started a run");
    // the WebSocket opened before all that is still served, well past the time limit
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(send(&s, "POST", "/reset", Some(&bearer)).await.status(), 200);
    let text = next_text(&mut ws, Duration::from_secs(10)).await.expect("the socket outlives the time limit");
    assert!(text.contains("reset"), "{text}");
    // a quick request is unaffected
    assert_eq!(send(&s, "GET", "/api/v1/config/default", Some(&bearer)).await.status(), 200);
}
