//! `cellfab serve` starts the server, says where, and answers on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

#[test]
fn serve_binds_loopback_and_answers_health() {
    let data = std::env::temp_dir().join(format!("cellfab-serve-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_cellfab"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .spawn()
        .expect("cellfab serve starts");
    let mut first = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut first).unwrap();
    let addr = first.split("http://").nth(1).and_then(|r| r.split_whitespace().next()).map(str::to_string);
    let answer = addr.as_deref().map(|addr| {
        assert!(addr.starts_with("127.0.0.1:"), "binds to loopback by default: {first}");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        write!(stream, "GET /api/v1/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    });
    let _ = child.kill();
    drop(out);
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data);
    let answer = answer.unwrap_or_else(|| panic!("no address in {first:?}"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""status":"ok""#), "{answer}");
    assert!(data.to_string_lossy().contains("cellfab-serve"));
}

fn cellfab() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cellfab"));
    c.env_remove("CELLFAB_TOKEN");
    c
}

/// Waits at most 20 s for `child` to exit; kills it and fails otherwise.
fn exit_of(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return (status, err);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("cellfab serve did not refuse: it kept running");
}

#[test]
fn serve_refuses_a_non_loopback_address_without_a_token_before_binding() {
    let data = std::env::temp_dir().join(format!("cellfab-serve-open-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    for host in ["0.0.0.0", "::", "192.0.2.1"] {
        let child = cellfab()
            .args(["serve", "--host", host, "--port", "0", "--data-dir"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (status, err) = exit_of(child);
        assert_eq!(status.code(), Some(2), "{host}: {err}");
        assert!(err.contains("without an access token"), "{err}");
        assert!(
            err.contains("--token") && err.contains("CELLFAB_TOKEN") && err.contains("--insecure-no-auth"),
            "{err}"
        );
        assert!(!data.exists(), "nothing is created before the refusal");
    }
    // an empty token (flag or variable) is no token
    let child = cellfab()
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--data-dir"])
        .arg(&data)
        .env("CELLFAB_TOKEN", " ")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, err) = exit_of(child);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("empty"), "{err}");
    assert!(!data.exists());
}

/// One HTTP/1.1 request over loopback; the whole answer.
fn http(addr: &str, request_line: &str, headers: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    write!(
        stream,
        "{request_line} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

#[test]
fn serve_with_a_token_from_the_flag_or_the_environment_requires_it_and_never_prints_it() {
    for (flag, env) in [(true, false), (false, true)] {
        let token = format!("cli-token-{}-{flag}", std::process::id());
        let data = std::env::temp_dir().join(format!("cellfab-serve-token-{}-{flag}", std::process::id()));
        let mut cmd = cellfab();
        cmd.args(["serve", "--port", "0", "--data-dir"]).arg(&data);
        if flag {
            cmd.args(["--token", &token]);
        }
        if env {
            cmd.env("CELLFAB_TOKEN", &token);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut first = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut first).unwrap();
        let addr = first.split("http://").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_string();
        let refused = http(&addr, "GET /api/v1/runs", "");
        let wrong = http(&addr, "GET /api/v1/runs", "Authorization: Bearer nope\r\n");
        let header = http(&addr, "GET /api/v1/runs", &format!("Authorization: Bearer {token}\r\n"));
        let query = http(&addr, &format!("GET /api/v1/runs?token={token}"), "");
        let health = http(&addr, "GET /api/v1/health", "");
        let _ = child.kill();
        let _ = child.wait();
        let mut rest = String::new();
        let _ = out.read_to_string(&mut rest);
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        let _ = std::fs::remove_dir_all(&data);
        assert!(first.contains("token required"), "{first}");
        for printed in [&first, &rest, &err, &refused, &wrong] {
            assert!(!printed.contains(&token), "the token is never printed: {printed}");
        }
        assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
        assert!(refused.to_ascii_lowercase().contains("www-authenticate: bearer"), "{refused}");
        assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
        assert!(header.starts_with("HTTP/1.1 200"), "{header}");
        assert!(query.starts_with("HTTP/1.1 200"), "{query}");
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    }
}
