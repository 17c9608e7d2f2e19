//! The seed-compatible JSON layout (MODELS.md §0.10; the prototype's README §8).
//!
//! Sample files: `<Machine ID>_<TimeStamp with ':' and '.' → '-'>_result_at_<X>s.json` with X
//! the stage time rounded half to even; final files:
//! `<Machine ID>_<TimeStamp of the end>_final_results_<Machine ID>.json`. A record starts with
//! the base keys `TimeStamp`, `Duration` (aging: `Duration (days)`), `Machine ID`, `Process`,
//! (`Electrode Type` for mixing), `Batch`, then the stage's legacy keys with measured values
//! in legacy units, then `"cellfab"`: the full typed sample with unit-suffixed names.
//! Timestamps are plant epoch + plant time, UTC, with microseconds.

use crate::atomic::{write_atomic, AtomicAppender, WriterPool};
use crate::sorter::TimeSorter;
use cellfab_model::legacy::LegacyRecord;
use cellfab_model::{Line, StageKind};
use cellfab_plant::events::{MachineRef, PlantEvent};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Writes one run folder from the event stream.
pub struct SeedLayoutWriter {
    run_dir: PathBuf,
    epoch_us: i64,
    pool: WriterPool,
    sample_counts: BTreeMap<String, u64>,
    files: Vec<String>,
    /// Alarm lines keyed by (plant time, machine id); sorted at the end because machines on
    /// different threads interleave their events in any order.
    alarms: TimeSorter<String>,
    cells: AtomicAppender,
    alarm_count: u64,
    cell_count: u64,
    kpis: Option<Value>,
    /// Fault labels (MODELS.md §13) by id: code, and the line of `fault_labels.jsonl`.
    fault_labels: BTreeMap<u32, (&'static str, String)>,
    sample_files: bool,
    tables: Vec<crate::tables::TableEntry>,
}

/// Threads that write sample files (the per-file cost of a file system is mostly system
/// time, which parallelises across cores).
pub const WRITER_THREADS: usize = 1;

/// Alarms held in memory before a sorted run of them goes to disk (`alarms.jsonl` is sorted
/// by plant time; a worn slitter blade can raise tens of thousands per batch).
pub const ALARM_RUN_RECORDS: usize = 8_192;

/// The run's `manifest.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    /// Always "cellfab".
    pub tool: &'static str,
    /// Version of cellfab.
    pub version: &'static str,
    /// Name of the run folder.
    pub run_id: String,
    /// Master seed.
    pub seed: u64,
    /// Plant epoch, RFC 3339.
    pub start: String,
    /// Random generator and normal sampler.
    pub generator: &'static str,
    /// Plant time at which the last batch finished [s].
    pub plant_end_t_s: f64,
    /// Samples written per machine id.
    pub sample_counts: BTreeMap<String, u64>,
    /// Alarm events written to alarms.jsonl.
    pub alarm_events: u64,
    /// Cells written to cell_results.jsonl.
    pub cells: u64,
    /// Every file of the run folder but the manifest, sorted.
    pub files: Vec<String>,
    /// The tables (`--format jsonl,csv,parquet`): format, path, rows, SHA-256; absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<crate::tables::TableEntry>,
    /// The full configuration of the run.
    pub config: Value,
    /// Wall-clock instant the run finished (differs between runs).
    pub created_at: String,
    /// Wall time of the run [s] (differs between runs).
    pub wall_time_s: f64,
    /// Plant KPIs (MODELS.md §14) of a run that ran to its end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kpis: Option<Value>,
}

/// The stage-output folders of the seed layout.
pub fn stage_folders() -> Vec<String> {
    StageKind::ALL.iter().map(|s| s.folder()).collect()
}

/// Formats plant epoch + `t_us` as `2025-01-01T00:00:05.000000` (UTC, microseconds).
pub fn timestamp(epoch_us: i64, t_s: f64) -> String {
    let us = epoch_us + (t_s * 1e6).round() as i64;
    let ts = jiff::Timestamp::from_microsecond(us).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.strftime("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// Rounds half to even to an integer (Python's `round`), for `result_at_<X>s`.
pub fn round_half_even(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        (r - x.signum()) as i64
    } else {
        r as i64
    }
}

impl SeedLayoutWriter {
    /// Creates `out_dir/run_id/` with its stage folders. Fails if the folder exists.
    pub fn create(out_dir: &Path, run_id: &str, epoch: jiff::Timestamp) -> std::io::Result<Self> {
        let run_dir = out_dir.join(run_id);
        std::fs::create_dir_all(out_dir)?;
        std::fs::create_dir(&run_dir)?;
        for folder in stage_folders() {
            std::fs::create_dir(run_dir.join(folder))?;
        }
        let cells = AtomicAppender::create(&run_dir.join("cell_results.jsonl"))?;
        let alarms = TimeSorter::new(run_dir.clone(), "alarms", ALARM_RUN_RECORDS);
        Ok(Self {
            run_dir,
            epoch_us: epoch.as_microsecond(),
            pool: WriterPool::new(WRITER_THREADS),
            sample_counts: BTreeMap::new(),
            files: Vec::new(),
            alarms,
            cells,
            alarm_count: 0,
            cell_count: 0,
            kpis: None,
            fault_labels: BTreeMap::new(),
            sample_files: true,
            tables: Vec::new(),
        })
    }

    /// Without the per-sample and final-result JSON files (`--format` without `json`); the
    /// manifest, `alarms.jsonl` and `cell_results.jsonl` are still written.
    pub fn without_sample_files(mut self) -> std::io::Result<Self> {
        self.sample_files = false;
        for folder in stage_folders() {
            std::fs::remove_dir(self.run_dir.join(folder))?;
        }
        Ok(self)
    }

    /// Lists table files in the manifest (and its file list).
    pub fn add_tables(&mut self, entries: Vec<crate::tables::TableEntry>) {
        self.files.extend(entries.iter().map(|e| e.path.clone()));
        self.tables.extend(entries);
    }

    /// Waits until every file asked for so far is on disk (see [`WriterPool::sync`]).
    pub fn sync(&self) -> std::io::Result<()> {
        self.pool.sync()
    }

    /// The run folder.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    fn base(&self, machine: &MachineRef, t_s: f64, stage_time_s: f64) -> (LegacyRecord, String) {
        record_base(self.epoch_us, machine, t_s, stage_time_s)
    }

    fn write_record(&mut self, machine: &MachineRef, file_name: String, record: &LegacyRecord) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(4096);
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        record.serialize(&mut ser).map_err(std::io::Error::other)?;
        let rel = format!("{}/{}", machine.stage.folder(), file_name);
        self.pool.submit(machine.stage as usize, self.run_dir.join(&rel), buf)?;
        self.files.push(rel);
        Ok(())
    }

    /// Writes what one event asks for.
    pub fn handle(&mut self, event: &PlantEvent) -> std::io::Result<()> {
        match event {
            PlantEvent::Sample { machine, .. } if !self.sample_files => {
                *self.sample_counts.entry(machine.machine_id.clone()).or_default() += 1;
            }
            PlantEvent::StageFinished { .. } if !self.sample_files => {}
            PlantEvent::Sample { t_s, machine, sample, .. } => {
                let st = sample.stage_time_s();
                let (mut rec, ts) = self.base(machine, *t_s, st);
                sample.legacy(&mut rec);
                let json = sample.to_json();
                rec.insert("fault".into(), Value::String(self.fault_key(&json)));
                rec.insert("cellfab".into(), json);
                let name = format!("{}_{}_result_at_{}s.json", machine.machine_id, ts, round_half_even(st));
                self.write_record(machine, name, &rec)?;
                *self.sample_counts.entry(machine.machine_id.clone()).or_default() += 1;
            }
            PlantEvent::StageFinished { t_s, machine, duration_s, result, .. } => {
                let (mut rec, ts) = self.base(machine, *t_s, *duration_s);
                result.legacy(&mut rec);
                rec.insert("cellfab".into(), result.to_json());
                let name = format!("{}_{}_final_results_{}.json", machine.machine_id, ts, machine.machine_id);
                self.write_record(machine, name, &rec)?;
            }
            PlantEvent::Alarm { batch, alarm } => {
                let line = AlarmLine { alarm, batch: *batch, timestamp: timestamp(self.epoch_us, alarm.t_s) };
                let line = serde_json::to_string(&line).map_err(std::io::Error::other)?;
                self.alarms.push(alarm.t_s, &alarm.machine_id, line)?;
                self.alarm_count += 1;
            }
            PlantEvent::FaultLabel { label } => {
                let mut v = serde_json::to_value(label.as_ref()).map_err(std::io::Error::other)?;
                if let Value::Object(m) = &mut v {
                    m.insert("onset_timestamp".into(), Value::String(timestamp(self.epoch_us, label.onset_t_s)));
                }
                self.fault_labels.insert(label.label_id, (label.code.as_str(), v.to_string()));
            }
            PlantEvent::CellResults { rows, .. } => {
                for row in rows.iter() {
                    self.cells.line(&row.to_string())?;
                }
                self.cell_count += rows.len() as u64;
            }
            PlantEvent::Kpis { kpis } => {
                self.kpis = Some(serde_json::to_value(kpis.as_ref()).map_err(std::io::Error::other)?);
            }
            _ => {}
        }
        Ok(())
    }

    /// The `"fault"` key of a sample record (see [`fault_key`]).
    fn fault_key(&self, sample: &Value) -> String {
        fault_key(sample, |id| self.fault_labels.get(&id).map(|(code, _)| *code))
    }

    /// Closes the JSON Lines files and writes `manifest.json` last.
    pub fn finish(
        mut self,
        seed: u64,
        start: &str,
        plant_end_t_s: f64,
        config: Value,
        wall_time_s: f64,
    ) -> std::io::Result<Manifest> {
        self.pool.finish()?;
        // stable: events of one machine keep their order
        let mut alarms = AtomicAppender::create(&self.run_dir.join("alarms.jsonl"))?;
        self.alarms.drain_sorted(|e| e, |line| alarms.line(&line))?;
        alarms.finish()?;
        self.cells.finish()?;
        // fault labels in id order (one line per activated fault; empty without faults)
        let mut labels = AtomicAppender::create(&self.run_dir.join("fault_labels.jsonl"))?;
        for (_, line) in self.fault_labels.values() {
            labels.line(line)?;
        }
        labels.finish()?;
        self.files.push("fault_labels.jsonl".into());
        self.files.push("alarms.jsonl".into());
        self.files.push("cell_results.jsonl".into());
        self.files.sort_unstable();
        let run_id = self.run_dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let manifest = Manifest {
            tool: "cellfab",
            version: env!("CARGO_PKG_VERSION"),
            run_id,
            seed,
            start: start.to_string(),
            generator: cellfab_model::random::GENERATOR_NAME,
            plant_end_t_s,
            sample_counts: self.sample_counts,
            alarm_events: self.alarm_count,
            cells: self.cell_count,
            files: self.files,
            tables: self.tables,
            config,
            created_at: jiff::Timestamp::now().to_string(),
            wall_time_s,
            kpis: self.kpis,
        };
        let bytes = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
        write_atomic(&self.run_dir.join("manifest.json"), &bytes)?;
        Ok(manifest)
    }
}

/// The base keys of a seed record (`TimeStamp`, `Duration`, `Machine ID`, `Process`,
/// `Electrode Type`, `Batch`) and the file-name form of its timestamp.
fn record_base(epoch_us: i64, machine: &MachineRef, t_s: f64, stage_time_s: f64) -> (LegacyRecord, String) {
    let ts = timestamp(epoch_us, t_s);
    let mut r = LegacyRecord::new();
    r.insert("TimeStamp".into(), Value::String(ts.clone()));
    if machine.stage == StageKind::Aging {
        cellfab_model::legacy::put(&mut r, "Duration (days)", stage_time_s / 86400.0);
    } else {
        cellfab_model::legacy::put(&mut r, "Duration", stage_time_s);
    }
    r.insert("Machine ID".into(), Value::String(machine.machine_id.clone()));
    r.insert("Process".into(), Value::String(machine.stage.process().into()));
    if machine.stage == StageKind::Mixing || machine.line != Line::Cell {
        r.insert("Electrode Type".into(), Value::String(machine.line.title().into()));
    }
    r.insert("Batch".into(), Value::from(machine.batch));
    (r, ts.replace([':', '.'], "-"))
}

/// The record a sample or final-result event writes to its seed-layout file (same keys, same
/// values), for sinks other than files (MQTT); `None` for every other event.
/// `fault_codes` maps the fault labels seen so far (their `FaultLabel` events come before the
/// samples that carry them) to their codes, for the sample's `"fault"` key.
pub fn seed_record(
    epoch: jiff::Timestamp,
    event: &PlantEvent,
    fault_codes: &BTreeMap<u32, &'static str>,
) -> Option<LegacyRecord> {
    let epoch_us = epoch.as_microsecond();
    match event {
        PlantEvent::Sample { t_s, machine, sample, .. } => {
            let (mut rec, _) = record_base(epoch_us, machine, *t_s, sample.stage_time_s());
            sample.legacy(&mut rec);
            let json = sample.to_json();
            rec.insert("fault".into(), Value::String(fault_key(&json, |id| fault_codes.get(&id).copied())));
            rec.insert("cellfab".into(), json);
            Some(rec)
        }
        PlantEvent::StageFinished { t_s, machine, duration_s, result, .. } => {
            let (mut rec, _) = record_base(epoch_us, machine, *t_s, *duration_s);
            result.legacy(&mut rec);
            rec.insert("cellfab".into(), result.to_json());
            Some(rec)
        }
        _ => None,
    }
}

/// The `"fault"` key of a sample record: `"none"`, or the codes of the labels the sample
/// carries (its `fault_labels`), in label order, joined by `+`; `code_of` looks a label up.
pub fn fault_key(sample: &Value, code_of: impl Fn(u32) -> Option<&'static str>) -> String {
    let mut codes: Vec<&str> = Vec::new();
    let ids = sample.get("fault_labels").and_then(Value::as_array).into_iter().flatten();
    for id in ids.filter_map(Value::as_u64) {
        if let Some(code) = code_of(id as u32) {
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
    }
    if codes.is_empty() {
        "none".into()
    } else {
        codes.join("+")
    }
}

/// An alarm event as one line of `alarms.jsonl` writes it: the alarm's fields, then `batch`
/// and `timestamp`.
#[derive(Serialize)]
struct AlarmLine<'a> {
    #[serde(flatten)]
    alarm: &'a cellfab_model::Alarm,
    batch: u32,
    timestamp: String,
}

/// An alarm event as one line of `alarms.jsonl` writes it (with `batch` and `timestamp`).
pub fn alarm_record(epoch: jiff::Timestamp, batch: u32, alarm: &cellfab_model::Alarm) -> Value {
    let line = AlarmLine { alarm, batch, timestamp: timestamp(epoch.as_microsecond(), alarm.t_s) };
    serde_json::to_value(line).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_even_rounding_as_python() {
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(3.5), 4);
        assert_eq!(round_half_even(2968.75), 2969);
        assert_eq!(round_half_even(2.4), 2);
        assert_eq!(round_half_even(0.0), 0);
    }

    #[test]
    fn timestamps_are_plant_epoch_plus_time() {
        let epoch: jiff::Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(timestamp(epoch.as_microsecond(), 5.0), "2025-01-01T00:00:05.000000");
        assert_eq!(timestamp(epoch.as_microsecond(), 3600.25), "2025-01-01T01:00:00.250000");
    }
}
