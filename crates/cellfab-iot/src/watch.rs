//! The folder watcher (the prototype's `mqtt_watcher`): publishes every seed-layout JSON file
//! already in a folder and each new one as it appears.
//!
//! A file counts when it ends in `.json`, is not hidden (the store writes `.name.tmp` and
//! renames, so a half-written file is never seen) and sits in a `*_output` folder at any depth
//! (so `DIR` may be one run folder or a folder of run folders). The ledger
//! `DIR/.cellfab-iot-ledger` lists, one per line, every file handed to the durable outbox, so a
//! restarted watcher neither resends nor skips a file.

use crate::message::from_seed_file_bytes;
use crate::publisher::Publisher;
use crate::IotError;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Name of the ledger file inside the watched folder.
pub const LEDGER: &str = ".cellfab-iot-ledger";

/// What a watcher did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchReport {
    /// Files published in this session.
    pub published: u64,
    /// Files skipped because they were already in the ledger.
    pub already_sent: u64,
}

/// The seed-layout JSON files under `dir`, as sorted paths relative to `dir`.
pub fn seed_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let in_output = d.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("_output"));
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if in_output && name.ends_with(".json") {
                if let Ok(rel) = path.strip_prefix(dir) {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Publishes the seed files of `dir` through `publisher` until `stop` is set (or after the
/// first pass if `once`), looking for new files every `poll`.
pub fn watch(
    dir: &Path,
    publisher: &Publisher,
    once: bool,
    poll: Duration,
    stop: &AtomicBool,
) -> Result<WatchReport, IotError> {
    let err = |source: std::io::Error| IotError::Watch { dir: dir.to_path_buf(), source };
    if !dir.is_dir() {
        return Err(err(std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder")));
    }
    let ledger_path = dir.join(LEDGER);
    let mut sent: HashSet<String> = match std::fs::read_to_string(&ledger_path) {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
        Err(e) => return Err(err(e)),
    };
    let mut ledger = std::fs::OpenOptions::new().create(true).append(true).open(&ledger_path).map_err(err)?;
    let mut report = WatchReport::default();
    let mut unreadable: HashSet<String> = HashSet::new();
    let prefix = publisher.target().prefix().to_string();
    let mut first = true;
    loop {
        for rel in seed_files(dir).map_err(err)? {
            if sent.contains(&rel) {
                if first {
                    report.already_sent += 1;
                }
                continue;
            }
            let path: PathBuf = dir.join(&rel);
            let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let message = std::fs::read(&path).ok().and_then(|b| from_seed_file_bytes(&prefix, file_name, &b));
            let Some(message) = message else {
                if unreadable.insert(rel.clone()) {
                    eprintln!(
                        "warning: watch: {rel} is not a seed record (no JSON object with \"Machine ID\"); skipped"
                    );
                }
                continue;
            };
            match publisher.push(message) {
                Ok(_) => {}
                Err(e @ IotError::TooLarge { .. }) => {
                    if unreadable.insert(rel.clone()) {
                        eprintln!("warning: watch: {rel}: {e}; skipped");
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
            ledger.write_all(format!("{rel}\n").as_bytes()).map_err(err)?;
            sent.insert(rel);
            report.published += 1;
        }
        first = false;
        if once || stop.load(Ordering::Relaxed) {
            break;
        }
        let mut slept = Duration::ZERO;
        while slept < poll && !stop.load(Ordering::Relaxed) {
            let step = Duration::from_millis(50).min(poll - slept);
            std::thread::sleep(step);
            slept += step;
        }
    }
    ledger.sync_data().map_err(err)?;
    Ok(report)
}
