//! Every API request body, through the same parsing and validation as the server's handlers
//! (`POST /start-both`, `POST /api/v1/runs`, `POST /api/v1/config/validate`): the first byte
//! picks the route, the rest is the body. Whatever the bytes, the answer is a plant to run or
//! a 4xx that names what is wrong — never a panic, never a 5xx.
#![no_main]
use cellfab_plant::PlantConfig;
use cellfab_server::api::{run_request_plant, validation_report, RunRequest};
use cellfab_server::body::parse;
use cellfab_server::error::ApiError;
use cellfab_server::legacy::{start_both_plant, StartBoth};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn base() -> &'static PlantConfig {
    static BASE: OnceLock<PlantConfig> = OnceLock::new();
    BASE.get_or_init(PlantConfig::default)
}

fn check(result: Result<(), ApiError>) {
    if let Err(e) = result {
        assert!(e.status.is_client_error(), "{} {}: {}", e.status, e.code, e.message);
        assert!(!e.message.is_empty(), "{} {} without a message", e.status, e.code);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else { return };
    match route % 3 {
        0 => check(parse::<StartBoth>(body).and_then(|r| start_both_plant(base(), &r)).map(drop)),
        1 => check(parse::<RunRequest>(body).and_then(|r| run_request_plant(base(), r)).map(drop)),
        _ => check(parse::<serde_json::Value>(body).and_then(|v| validation_report(base(), v)).map(|report| {
            assert!(report["valid"].is_boolean() && report["errors"].is_array(), "{report}");
        })),
    }
});
