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
