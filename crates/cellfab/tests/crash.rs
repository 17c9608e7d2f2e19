//! Crash safety: the real `cellfab serve` and `cellfab run` killed with SIGKILL at moments drawn
//! from a fixed seed, spread over a run (the electrode lines, the cell line, the end of the run
//! where the tables and `manifest.json` are written). After each kill:
//!
//! * every non-hidden file under the data folder loads (JSON, JSON Lines line by line, CSV);
//! * the restarted server marks the run `interrupted` (or keeps it `finished` when the kill
//!   came after its end), removes the hidden temporary files the killed process was writing,
//!   refuses the download of an interrupted run (409) and serves a finished one;
//! * the run's rows in the registry match its files: every stored final result has its file,
//!   and per machine the stored samples are a gap-free prefix of the sample files;
//! * an interrupted run has no `manifest.json`.
//!
//! Trials: 2 per phase of `cellfab serve` (6 in all) and 3 of `cellfab run`
//! (docs/RELIABILITY.md).

mod common;

use cellfab_registry::Registry;
use common::{assert_every_file_parses, files, is_hidden, small_config, temp_dir, Moments, Server};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The seed every kill moment is drawn from.
const SEED: u64 = 20261125;
/// Trials per phase of a served run.
const TRIALS_PER_PHASE: u64 = 2;

/// Where in a run a trial kills the server: once the phase has begun, after a random delay
/// below `max_delay`.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// The anode and cathode lines (mixing … rewinding).
    ElectrodeLines,
    /// The cell line (assembly … aging).
    CellLine,
    /// Aging has begun: the kill falls near the end, around the tables and the manifest.
    End,
}

impl Phase {
    fn begun(self, run: &Value) -> bool {
        let machines = run["machines"].as_array().cloned().unwrap_or_default();
        let on = |line: &str| machines.iter().any(|m| m["line"] == line && m["state"] == "on");
        let ended = run["status"] != "running" && run["status"] != "queued";
        match self {
            Phase::ElectrodeLines => on("Anode") || on("Cathode") || ended,
            Phase::CellLine => on("Cell") || ended,
            Phase::End => machines.iter().any(|m| m["machine_id"] == "MC_Aging_Cell" && m["state"] != "idle") || ended,
        }
    }

    fn max_delay_ms(self) -> u64 {
        match self {
            Phase::ElectrodeLines => 400,
            Phase::CellLine => 150,
            Phase::End => 120,
        }
    }

    fn index(self) -> u64 {
        self as u64
    }
}

/// Sample files per machine id in a run folder.
fn sample_files(run_dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for rel in files(run_dir) {
        let name = rel.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') || !name.contains("_result_at_") {
            continue;
        }
        if let Some((machine, _)) = name.split_once("_20") {
            *out.entry(machine.to_string()).or_default() += 1;
        }
    }
    out
}

/// The registry's rows of `run` against its folder.
fn assert_rows_match_files(data: &Path, run: &str, finished: bool) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}", data.join("cellfab.sqlite").display());
        let registry = Registry::open(&url).await.unwrap();
        let record = registry.run(run).await.unwrap().expect("the run is in the registry");
        let folder = PathBuf::from(record.folder.expect("a started run has a folder"));
        for r in registry.stage_results(run).await.unwrap() {
            let stage = cellfab_model::StageKind::from_name(&r.stage).unwrap();
            let ts = r.timestamp.replace([':', '.'], "-");
            let file = folder.join(stage.folder()).join(format!("{0}_{ts}_final_results_{0}.json", r.machine_id));
            assert!(file.exists(), "{run}: a stored final result has no file {}", file.display());
        }
        let on_disk = sample_files(&folder);
        let rows = sqlx::query(
            "SELECT machine_id, COUNT(*), MIN(idx), MAX(idx) FROM samples WHERE run_id = $1 GROUP BY machine_id, batch",
        )
        .bind(run.to_string())
        .fetch_all(registry.pool())
        .await
        .unwrap();
        let mut stored: BTreeMap<String, u64> = BTreeMap::new();
        for row in rows {
            use sqlx::Row as _;
            let (machine, n, min, max): (String, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
            assert_eq!((min, max), (0, n - 1), "{run} {machine}: stored samples have no gaps");
            *stored.entry(machine).or_default() += n as u64;
        }
        for (machine, n) in &stored {
            let files = on_disk.get(machine).copied().unwrap_or(0);
            assert!(*n <= files, "{run} {machine}: {n} rows but {files} sample files");
            if finished {
                assert_eq!(*n, files, "{run} {machine}: a finished run stores every sample");
            }
        }
        registry.close().await;
    });
}

/// One trial: a run killed in `phase` after a delay drawn from `moments`; returns the status
/// the restarted server gives the run.
fn kill_trial(phase: Phase, trial: u64, moments: &mut Moments) -> String {
    let dir = temp_dir(&format!("crash-{phase:?}-{trial}"));
    let config = small_config(&dir);
    let data = dir.join("data");
    let delay = Duration::from_millis(moments.below(phase.max_delay_ms()));

    let a = Server::start(&data, &config, &[]);
    let id = a.submit(&format!(r#"{{"batches": 1, "seed": {}}}"#, 100 + trial));
    a.wait_for(&id, &format!("{phase:?}"), Duration::from_secs(90), |r| phase.begun(r));
    std::thread::sleep(delay);
    a.kill_9();
    let run_dir = data.join("runs").join(&id);
    let had_manifest = run_dir.join("manifest.json").exists();
    let temp_before = files(&data).iter().filter(|f| is_hidden(f)).count();

    let b = Server::start(&data, &config, &[]);
    let run = b.json("GET", &format!("/api/v1/runs/{id}"), "");
    let status = run["status"].as_str().unwrap().to_string();
    let left: Vec<_> = files(&run_dir).into_iter().filter(|f| is_hidden(f)).collect();
    assert!(left.is_empty(), "trial {phase:?}/{trial}: temporary files left after the restart: {left:?}");
    let checked = assert_every_file_parses(&data);
    let (code, _) = b.call("GET", &format!("/api/v1/runs/{id}/download"), "");
    match status.as_str() {
        "interrupted" => {
            assert!(!had_manifest && !run_dir.join("manifest.json").exists(), "an interrupted run has no manifest");
            assert_eq!(code, 409, "the download of an interrupted run is refused");
        }
        "finished" => {
            assert!(run_dir.join("manifest.json").exists(), "a finished run has its manifest");
            assert_eq!(code, 200, "a finished run downloads");
        }
        other => panic!("trial {phase:?}/{trial}: the killed run is {other} after the restart"),
    }
    if trial == 0 {
        // the restarted server runs the next run (once per phase: a whole run takes a while)
        let next = b.submit(r#"{"batches": 1}"#);
        b.wait_for(&next, "finished", Duration::from_secs(90), |r| r["status"] == "finished");
    }
    b.kill_9();
    assert_rows_match_files(&data, &id, status == "finished");
    eprintln!(
        "kill trial {phase:?}/{trial}: +{delay:?} → {status}; {temp_before} temporary file(s) removed, \
         {checked} files parse"
    );
    let _ = std::fs::remove_dir_all(&dir);
    status
}

fn trials(phase: Phase) -> Vec<String> {
    let mut moments = Moments::new(SEED + phase.index());
    (0..TRIALS_PER_PHASE).map(|trial| kill_trial(phase, trial, &mut moments)).collect()
}

#[test]
fn a_server_killed_during_the_electrode_lines_restarts_with_the_run_interrupted_and_valid_files() {
    let statuses = trials(Phase::ElectrodeLines);
    assert!(statuses.iter().all(|s| s == "interrupted"), "{statuses:?}");
}

#[test]
fn a_server_killed_during_the_cell_line_restarts_with_the_run_interrupted_and_valid_files() {
    let statuses = trials(Phase::CellLine);
    assert!(statuses.iter().any(|s| s == "interrupted"), "{statuses:?}");
}

#[test]
fn a_server_killed_near_the_end_of_a_run_leaves_it_interrupted_or_complete_never_half_written() {
    trials(Phase::End);
}

#[test]
fn a_killed_cellfab_run_leaves_no_manifest_and_only_whole_files() {
    let dir = temp_dir("crash-cli");
    let config = small_config(&dir);
    let mut moments = Moments::new(SEED + 10);
    for trial in 0..3 {
        let out = dir.join(format!("out-{trial}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_cellfab"))
            .args(["run", "--quiet", "--seed", "3", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // a moment once the run folder exists: 0 … 600 ms into the run
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::read_dir(&out).map(|mut d| d.next().is_none()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "cellfab run made no run folder");
            std::thread::sleep(Duration::from_millis(5));
        }
        let delay = Duration::from_millis(moments.below(600));
        std::thread::sleep(delay);
        let ended_first = child.try_wait().unwrap().is_some();
        child.kill().unwrap();
        child.wait().unwrap();
        let run_dir = std::fs::read_dir(&out).unwrap().next().unwrap().unwrap().path();
        let checked = assert_every_file_parses(&run_dir);
        if !ended_first {
            assert!(!run_dir.join("manifest.json").exists(), "trial {trial}: a killed run has no manifest");
        }
        eprintln!("cellfab run trial {trial}: killed +{delay:?} (ended first: {ended_first}); {checked} files parse");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
