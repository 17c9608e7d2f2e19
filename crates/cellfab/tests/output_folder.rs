//! An output folder the server cannot write: a `runs` folder replaced by a file while the
//! server runs, a data folder under a regular file, and a full disk (a file-size limit set with
//! `prlimit --fsize`, SIGXFSZ ignored, so a write past the limit fails with EFBIG). We run as
//! root, so permissions would not stop a write; these do.
//!
//! Expected each time: the run ends `failed` with an error naming the file or folder and why,
//! no `manifest.json`, the download answers 409, no temporary file is left, the server stays
//! up and runs the next run once the condition clears.

mod common;

use common::{assert_every_file_parses, files, is_hidden, small_config, temp_dir, Server};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MEMORY: &str = "sqlite::memory:";

#[test]
fn a_runs_folder_replaced_by_a_file_fails_the_run_by_name_and_the_next_run_works_once_it_is_back() {
    let dir = temp_dir("out-not-a-folder");
    let config = small_config(&dir);
    let data = dir.join("data");
    let server = Server::start(&data, &config, &["--database", MEMORY]);
    let runs = data.join("runs");
    std::fs::remove_dir_all(&runs).unwrap();
    std::fs::write(&runs, "not a folder").unwrap();

    let id = server.submit(r#"{"batches": 1}"#);
    let run = server.wait_for(&id, "failed", Duration::from_secs(30), |r| r["status"] == "failed");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains(&runs.display().to_string()), "the error names the folder: {error}");
    assert!(error.contains("not a folder"), "the error says why: {error}");
    let (code, body) = server.call("GET", &format!("/api/v1/runs/{id}/download"), "");
    assert_eq!(code, 409, "{}", String::from_utf8_lossy(&body));
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "not a folder", "nothing was written over the file");
    assert_eq!(server.json("GET", "/api/v1/health", "")["status"], "ok");

    std::fs::remove_file(&runs).unwrap();
    std::fs::create_dir(&runs).unwrap();
    let next = server.submit(r#"{"batches": 1}"#);
    server.wait_for(&next, "finished", Duration::from_secs(90), |r| r["status"] == "finished");
    assert!(runs.join(&next).join("manifest.json").exists());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_data_folder_under_a_regular_file_stops_serve_with_the_path_in_the_error() {
    let dir = temp_dir("out-under-file");
    let config = small_config(&dir);
    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let data = file.join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cellfab"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cellfab serve kept running on a data folder under a file");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains(&data.display().to_string()), "the error names the folder: {stderr}");
    assert!(stderr.contains("Not a directory"), "the error says why: {stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_disk_fails_the_run_without_a_manifest_and_the_server_runs_the_next_once_space_is_back() {
    let dir = temp_dir("out-full");
    let config = small_config(&dir);
    let data = dir.join("data");
    // 256 KiB per file: every sample file, the cells and the alarms fit, the manifest (about
    // 1.6 MB for this run) does not
    let limit = 256 * 1024;
    let script = format!(
        "trap '' XFSZ; exec prlimit --fsize={limit}:unlimited \"$0\" serve --port 0 --data-dir \"$1\" --config \"$2\" \
         --database {MEMORY}"
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).arg(env!("CARGO_BIN_EXE_cellfab")).arg(&data).arg(&config);
    let server = Server::spawn(cmd);

    let id = server.submit(r#"{"batches": 1, "seed": 4}"#);
    let run = server
        .wait_for(&id, "failed", Duration::from_secs(90), |r| r["status"] != "running" && r["status"] != "queued");
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    let run_dir = data.join("runs").join(&id);
    assert!(error.contains(&run_dir.join("manifest.json").display().to_string()), "the error names the file: {error}");
    assert!(error.contains("File too large"), "the error says why: {error}");
    assert!(!run_dir.join("manifest.json").exists(), "no manifest: the run is not presented as complete");
    let left: Vec<_> = files(&run_dir).into_iter().filter(|f| is_hidden(f)).collect();
    assert!(left.is_empty(), "the failed run leaves no temporary file: {left:?}");
    assert_every_file_parses(&data);
    let (code, body) = server.call("GET", &format!("/api/v1/runs/{id}/download"), "");
    assert_eq!(code, 409, "{}", String::from_utf8_lossy(&body));
    let (code, _) = server.call("GET", "/files/Anode", "");
    assert!(code >= 400, "the prototype's download has no finished run to offer either: {code}");
    assert_eq!(server.json("GET", "/api/v1/health", "")["status"], "ok");

    // space is back: lift the limit of the running process
    let lifted = Command::new("prlimit").arg(format!("--pid={}", server.pid())).arg("--fsize=unlimited").status();
    assert!(lifted.unwrap().success());
    let next = server.submit(r#"{"batches": 1, "seed": 4}"#);
    server.wait_for(&next, "finished", Duration::from_secs(90), |r| r["status"] == "finished");
    let (code, _) = server.call("GET", &format!("/api/v1/runs/{next}/download"), "");
    assert_eq!(code, 200);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
