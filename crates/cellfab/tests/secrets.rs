//! No secret leaks: the access token, an IoT Hub device key and an MQTT password, given to
//! `cellfab serve` and `cellfab run`, appear in none of their outputs — stdout, stderr, the
//! API's answers (errors included) and every file written under the data and output folders
//! (manifests, registry, outbox, zips). The brokers are absent (a refused port): only the
//! outputs matter here.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The secrets, distinctive enough that a hit cannot be a coincidence.
const TOKEN: &str = "tok-SECRET-7c1e0f3b9d";
/// base64 of "0123456789abcdef0123456789abcdef", a valid device key.
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const PASSWORD: &str = "pw-SECRET-44aa91";

fn cellfab() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cellfab"));
    c.env_remove("CELLFAB_TOKEN").env_remove("CELLFAB_IOTHUB_CONNECTION_STRING").env_remove("CELLFAB_MQTT_PASSWORD");
    c
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cellfab-secrets-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A loopback port nothing listens on: the broker that refuses.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn connection_string() -> String {
    format!("HostName=localhost;DeviceId=line-7;SharedAccessKey={KEY}")
}

/// One HTTP/1.1 request over loopback; the whole answer.
fn http(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every file under `dir`, as (path, bytes).
fn every_file(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Fails naming every output that holds a secret.
fn assert_no_secret(outputs: &[(String, Vec<u8>)]) {
    let secrets = [TOKEN, KEY, &KEY[..24], PASSWORD];
    let leaks: Vec<String> = outputs
        .iter()
        .flat_map(|(name, bytes)| secrets.iter().filter(|s| contains(bytes, s)).map(move |s| format!("{s} in {name}")))
        .collect();
    assert!(leaks.is_empty(), "secrets leaked: {leaks:?}");
    assert!(outputs.len() > 10, "the check saw the outputs ({} of them)", outputs.len());
}

#[test]
fn no_token_key_or_password_appears_in_any_output_of_serve_or_run() {
    let dir = tmp("all");
    let config = dir.join("small.toml");
    std::fs::write(&config, "[cell.assembly]\nmax_cells = 16\n").unwrap();
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();

    // cellfab serve: token from the flag, device key from the environment, hub refusing
    let data = dir.join("data");
    let mut server = cellfab()
        .args(["serve", "--port", "0", "--token", TOKEN, "--iothub", "--iothub-port"])
        .arg(closed_port().to_string())
        .args(["--mqtt-drain-timeout-s", "1", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env("CELLFAB_IOTHUB_CONNECTION_STRING", connection_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first.split("http://").nth(1).and_then(|s| s.split_whitespace().next()).unwrap().to_string();
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let mut answers = vec![
        http(&addr, "GET", "/api/v1/runs", "", ""),
        http(&addr, "GET", "/api/v1/runs", "Authorization: Bearer tok-SECRET-7c1e0f3b9e\r\n", ""),
        http(&addr, "GET", &format!("/api/v1/runs?token={TOKEN}x"), "", ""),
        http(&addr, "POST", &format!("/api/v1/runs?token={TOKEN}"), "", "{}"),
        http(&addr, "POST", "/api/v1/runs", &auth, r#"{"seed": "x"}"#),
        http(&addr, "POST", "/api/v1/runs", &auth, r#"{"config": {"anode": {"coating": {"coating_speed_m_s": 9}}}}"#),
        http(&addr, "GET", "/api/v1/runs/nope", &auth, ""),
        http(&addr, "GET", &format!("/api/v1/runs/nope/samples?token={TOKEN}&bogus=1"), "", ""),
    ];
    let created = http(&addr, "POST", "/api/v1/runs", &auth, r#"{"seed": 5, "start": "2025-01-01T00:00:00Z"}"#);
    assert!(created.starts_with("HTTP/1.1 202"), "{created}");
    let id = created.split(r#""id":""#).nth(1).and_then(|s| s.split('"').next()).unwrap().to_string();
    let mut finished = false;
    for _ in 0..600 {
        let run = http(&addr, "GET", &format!("/api/v1/runs/{id}"), &auth, "");
        if run.contains(r#""status":"finished""#) {
            answers.push(run);
            finished = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(finished, "the run finished");
    answers.push(http(&addr, "GET", &format!("/api/v1/runs/{id}/download?token={TOKEN}"), "", ""));
    answers.push(http(&addr, "GET", "/api/v1/metrics", &auth, ""));
    answers.push(http(&addr, "GET", "/api/v1/config/default", &auth, ""));
    let _ = server.kill();
    let _ = server.wait();
    let mut rest = Vec::new();
    let _ = stdout.read_to_end(&mut rest);
    let mut err = Vec::new();
    let _ = server.stderr.take().unwrap().read_to_end(&mut err);
    assert!(first.contains("token required"), "{first}");
    outputs.push(("serve stdout".into(), [first.as_bytes(), &rest].concat()));
    outputs.push(("serve stderr".into(), err));
    for (i, a) in answers.into_iter().enumerate() {
        outputs.push((format!("answer {i}"), a.into_bytes()));
    }

    // cellfab run publishing to the hub (key from the environment, then on the command line)
    // and to an MQTT broker with a password in the URL; every broker refuses
    let out = dir.join("out");
    let runs: Vec<Vec<String>> = vec![
        vec!["--iothub".into()],
        vec!["--iothub".into(), connection_string()],
        vec!["--mqtt".into(), format!("mqtt://plant:{PASSWORD}@127.0.0.1:{}/x", closed_port())],
        // a malformed connection string and a malformed URL: the error must not echo the secret
        vec!["--iothub".into(), format!("HostName=localhost;SharedAccessKey={KEY};Bogus=1")],
        vec!["--mqtt".into(), format!("mqtt://plant:{PASSWORD}@127.0.0.1:notaport/x")],
    ];
    for (i, extra) in runs.iter().enumerate() {
        let result = cellfab()
            .args(["run", "--seed", "3", "--start", "2025-01-01T00:00:00Z", "--mqtt-drain-timeout-s", "1"])
            .args(["--iothub-port", &closed_port().to_string(), "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .env("CELLFAB_IOTHUB_CONNECTION_STRING", connection_string())
            .output()
            .unwrap();
        outputs.push((format!("run {i} stdout"), result.stdout));
        outputs.push((format!("run {i} stderr"), result.stderr));
    }
    for root in [&data, &out] {
        for (path, bytes) in every_file(root) {
            outputs.push((path.display().to_string(), bytes));
        }
    }
    assert!(outputs.iter().any(|(n, _)| n.ends_with("manifest.json")), "the run folders were read");
    assert_no_secret(&outputs);
    let _ = std::fs::remove_dir_all(&dir);
}
