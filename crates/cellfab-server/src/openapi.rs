//! The OpenAPI 3.1 document of the server, built from [`ROUTES`], the one table of every
//! route with its parameters, body and answers (a test checks that every route the router
//! serves is in it), and a self-contained docs page that renders it (no CDN, works offline).

use serde_json::{json, Map, Value};

/// Where a parameter goes.
#[derive(Clone, Copy)]
pub enum In {
    /// In the path.
    Path,
    /// In the query string.
    Query,
}

/// One route of the API.
pub struct Route {
    /// HTTP method (lower case), `ws` for a websocket upgrade (documented as `get`).
    pub method: &'static str,
    /// Path with `{param}` placeholders.
    pub path: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// Parameters: (name, where, required, description).
    pub params: &'static [(&'static str, In, bool, &'static str)],
    /// Request body schema name in `components.schemas`, if any.
    pub body: Option<&'static str>,
    /// (status, description, content type) of each answer.
    pub responses: &'static [(u16, &'static str, &'static str)],
}

const JSON: &str = "application/json";
const ERR: (u16, &str, &str) = (400, "bad input: malformed JSON, unknown field, bad name", JSON);
const UNPROCESSABLE: (u16, &str, &str) = (422, "a value of the wrong type or out of range", JSON);
const NOT_FOUND: (u16, &str, &str) = (404, "unknown run id", JSON);
const ID: (&str, In, bool, &str) = ("id", In::Path, true, "run id");

/// Every route the server serves.
pub const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/",
        summary: "The web UI (single page, embedded in the binary)",
        params: &[],
        body: None,
        responses: &[(200, "the web UI's index.html", "text/html")],
    },
    Route {
        method: "post",
        path: "/start-both",
        summary: "Run one batch of both electrodes through the whole plant (prototype route); answers when done",
        params: &[],
        body: Some("StartBoth"),
        responses: &[(200, "every machine completed", JSON), ERR, UNPROCESSABLE, (429, "run queue full", JSON)],
    },
    Route {
        method: "post",
        path: "/reset",
        summary: "Cancel every run and delete every result (prototype route)",
        params: &[],
        body: None,
        responses: &[(200, "reset done", JSON)],
    },
    Route {
        method: "get",
        path: "/files/{electrode_type}",
        summary: "Zip of the latest run's files: Anode or Cathode (each with the cell line's files) or all",
        params: &[("electrode_type", In::Path, true, "Anode, Cathode or all")],
        body: None,
        responses: &[(200, "zip archive (streamed)", "application/zip"), ERR, (404, "no results yet", JSON)],
    },
    Route {
        method: "ws",
        path: "/ws/status",
        summary: "WebSocket: text frames `[YYYY-MM-DD HH:MM:SS] <message>`; the last 100 first",
        params: &[],
        body: None,
        responses: &[(101, "switching to the WebSocket protocol", JSON)],
    },
    Route {
        method: "get",
        path: "/api/v1/health",
        summary: "Liveness and queue length",
        params: &[],
        body: None,
        responses: &[(200, "ok", JSON)],
    },
    Route {
        method: "get",
        path: "/api/v1/metrics",
        summary: "Prometheus metrics (runs, samples, queue, clients)",
        params: &[],
        body: None,
        responses: &[(200, "Prometheus text format 0.0.4", "text/plain")],
    },
    Route {
        method: "get",
        path: "/api/v1/openapi.json",
        summary: "This document",
        params: &[],
        body: None,
        responses: &[(200, "OpenAPI 3.1 document", JSON)],
    },
    Route {
        method: "get",
        path: "/api/v1/docs",
        summary: "Human-readable page of this document",
        params: &[],
        body: None,
        responses: &[(200, "HTML page", "text/html")],
    },
    Route {
        method: "get",
        path: "/api/v1/config/default",
        summary: "The configuration runs start from",
        params: &[],
        body: None,
        responses: &[(200, "plant configuration", JSON)],
    },
    Route {
        method: "get",
        path: "/api/v1/config/schema",
        summary: "JSON Schema of the plant configuration",
        params: &[],
        body: None,
        responses: &[(200, "JSON Schema", JSON)],
    },
    Route {
        method: "post",
        path: "/api/v1/config/validate",
        summary: "Check a (partial) configuration: every error with field path, value and allowed range",
        params: &[],
        body: Some("ConfigOverrides"),
        responses: &[(200, "{valid, errors[]}", JSON), ERR, (413, "body too large", JSON)],
    },
    Route {
        method: "post",
        path: "/api/v1/runs",
        summary: "Queue a run",
        params: &[],
        body: Some("RunRequest"),
        responses: &[(202, "{id, status}", JSON), ERR, UNPROCESSABLE, (429, "run queue full", JSON)],
    },
    Route {
        method: "get",
        path: "/api/v1/runs",
        summary: "Run history, newest first",
        params: &[],
        body: None,
        responses: &[(200, "{runs[]}", JSON)],
    },
    Route {
        method: "get",
        path: "/api/v1/runs/{id}",
        summary: "A run: status, progress per machine, final results, cell results",
        params: &[ID],
        body: None,
        responses: &[(200, "the run", JSON), NOT_FOUND],
    },
    Route {
        method: "get",
        path: "/api/v1/runs/{id}/kpis",
        summary: "Plant KPIs of a finished run: throughput, lead time, takt, bottleneck, per machine states, OEE, yield, energy",
        params: &[ID],
        body: None,
        responses: &[(200, "the KPIs (also the run's `kpis` field)", JSON), NOT_FOUND, (409, "run not finished", JSON)],
    },
    Route {
        method: "post",
        path: "/api/v1/runs/{id}/cancel",
        summary: "Cancel a queued or running run",
        params: &[ID],
        body: None,
        responses: &[(200, "cancel requested", JSON), NOT_FOUND, (409, "run already ended", JSON)],
    },
    Route {
        method: "get",
        path: "/api/v1/runs/{id}/samples",
        summary: "A machine's time series, downsampled to at most max_points",
        params: &[
            ID,
            ("machine", In::Query, true, "machine id, e.g. MC_Coat_Anode"),
            ("fields", In::Query, false, "comma-separated field names (default: all numeric fields)"),
            ("from", In::Query, false, "first stage time [s]"),
            ("to", In::Query, false, "last stage time [s]"),
            ("max_points", In::Query, false, "at most this many points, 2 to 100000 (default 1000)"),
        ],
        body: None,
        responses: &[(200, "{points[]}", JSON), ERR, NOT_FOUND],
    },
    Route {
        method: "get",
        path: "/api/v1/runs/{id}/download",
        summary: "The run's files as a streamed zip",
        params: &[ID, ("scope", In::Query, false, "anode, cathode, cell or all (default)")],
        body: None,
        responses: &[
            (200, "zip archive (streamed)", "application/zip"),
            ERR,
            NOT_FOUND,
            (409, "run not finished", JSON),
        ],
    },
    Route {
        method: "ws",
        path: "/api/v1/runs/{id}/events",
        summary:
            "WebSocket: a snapshot, then JSON events (run/machine state, progress, alarms, messages, decimated samples)",
        params: &[ID],
        body: None,
        responses: &[(101, "switching to the WebSocket protocol", JSON), NOT_FOUND],
    },
];

fn schemas() -> Value {
    let fraction = json!({"oneOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "string"}],
                          "description": "volume fraction of the 200 L tank, a number or a numeric string"});
    let slurry = json!({
        "type": "object", "additionalProperties": false,
        "required": ["PVDF", "CA", "AM", "Solvent", "electrode_type"],
        "properties": {"PVDF": fraction, "CA": fraction, "AM": fraction, "Solvent": fraction,
                       "electrode_type": {"type": "string", "enum": ["Anode", "Cathode"]}}
    });
    json!({
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}}
        },
        "StartBoth": {"type": "object", "additionalProperties": false, "required": ["anode", "cathode"],
                      "properties": {"anode": slurry, "cathode": slurry}},
        "ConfigOverrides": {"type": "object",
            "description": "Any subset of the keys of GET /api/v1/config/default (JSON Schema: GET /api/v1/config/schema)"},
        "RunRequest": {"type": "object", "additionalProperties": false, "properties": {
            "config": {"$ref": "#/components/schemas/ConfigOverrides"},
            "batches": {"type": "integer", "minimum": 1},
            "seed": {"type": "integer", "minimum": 0},
            "start": {"type": "string", "format": "date-time"},
            "speed": {"oneOf": [{"type": "string", "enum": ["max"]}, {"type": "number", "exclusiveMinimum": 0}]},
            "formats": {"type": "array", "items": {"type": "string", "enum": ["json", "jsonl", "csv", "parquet"]},
                        "description": "json = the seed layout (default); jsonl, csv, parquet = tables under tables/<format>/ (docs/DATA.md)"}
        }}
    })
}

/// The OpenAPI document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let params: Vec<Value> = r
            .params
            .iter()
            .map(|(name, place, required, description)| {
                let place = match place {
                    In::Path => "path",
                    In::Query => "query",
                };
                json!({"name": name, "in": place, "required": required, "description": description,
                       "schema": {"type": "string"}})
            })
            .collect();
        let mut responses = Map::new();
        for (status, description, content) in r.responses {
            let schema = if *status >= 400 { json!({"$ref": "#/components/schemas/Error"}) } else { json!({}) };
            responses.insert(
                status.to_string(),
                json!({"description": description, "content": {*content: {"schema": schema}}}),
            );
        }
        let mut op = json!({"summary": r.summary, "parameters": params, "responses": responses,
                            "operationId": format!("{}{}", r.method, r.path.replace(['/', '{', '}', '.', '-'], "_"))});
        if r.method == "ws" {
            op["description"] = Value::from("WebSocket endpoint: connect with an HTTP upgrade (ws://).");
        }
        let method = if r.method == "ws" { "get" } else { r.method };
        let http_method = axum::http::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap_or_default();
        if crate::auth::is_protected(&http_method, r.path) {
            // the token is only required when the server was started with one
            op["security"] = json!([{"bearerAuth": []}, {}]);
            op["responses"]["401"] =
                error_response("the server requires an access token and none or a wrong one was sent");
        }
        if r.body.is_some() {
            op["responses"]["408"] = error_response("the request body took longer than the time limit to arrive");
        }
        if let Some(body) = r.body {
            op["requestBody"] = json!({"required": body == "StartBoth", "content": {"application/json": {
                "schema": {"$ref": format!("#/components/schemas/{body}")}}}});
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "cellfab", "version": env!("CARGO_PKG_VERSION"),
                 "description": "A digital twin of a lithium-ion cell factory: the prototype's routes and the versioned API."},
        "paths": paths,
        "components": {"schemas": schemas(), "securitySchemes": {"bearerAuth": {
            "type": "http", "scheme": "bearer",
            "description": "Needed when the server runs with --token (or CELLFAB_TOKEN). GET and WebSocket requests may send ?token= instead."}}}
    })
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// The docs page: fetches `openapi.json` and lists every route.
pub const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cellfab API</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
.op{border:1px solid #ccc;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4rem;font-weight:bold;text-transform:uppercase}
code{background:#f3f3f3;padding:0 .2rem}td{padding:0 .5rem;vertical-align:top}</style></head>
<body><h1>cellfab API</h1><p>Machine-readable: <a href="openapi.json">openapi.json</a>.
Errors are <code>{"error": {"code", "message", "field"}}</code>.</p><div id="ops">loading…</div>
<script>
fetch('openapi.json' + location.search).then(r => r.json()).then(doc => {
  const esc = s => String(s).replace(/[&<>]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;'}[c]));
  let html = '';
  for (const [path, ops] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(ops)) {
    html += `<div class="op"><span class="m">${method}</span> <code>${esc(path)}</code><div>${esc(op.summary)}</div>`;
    if (op.parameters.length) html += '<table>' + op.parameters.map(p =>
      `<tr><td><code>${esc(p.name)}</code></td><td>${p.in}${p.required ? ', required' : ''}</td><td>${esc(p.description)}</td></tr>`).join('') + '</table>';
    html += '<div>' + Object.entries(op.responses).map(([s, r]) => `<b>${s}</b> ${esc(r.description)}`).join(' · ') + '</div></div>';
  }
  document.getElementById('ops').innerHTML = html;
});
</script></body></html>
"#;
