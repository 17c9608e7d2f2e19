//! The tables of one run (docs/DATA.md, "Tables"), written from the plant's event stream:
//!
//! * one time-series table per machine: `<stage>_<line>` for the electrode lines
//!   (`coating_anode`), `<stage>` for the cell line (`formation_cycling`); one row per sample;
//! * `cells`: one row per cell (the rows of `cell_results.jsonl`);
//! * `events`: machine on / finished / off, alarms raised and cleared, batches finished,
//!   sorted by plant time;
//! * `kpis`: rows given to [`RunTables::finish`] (any `Serialize` rows).
//!
//! Each machine's events come from one thread in order, so per-machine tables are written as
//! they arrive and are byte-identical between runs of the same seed; the `events` table is
//! sorted by an external merge sort ([`TimeSorter`]: sorted runs on disk, merged at the
//! end), so a run of any number of batches holds a bounded number of event rows in memory.

use crate::sorter::{SpillRecord, TimeSorter};
use crate::tables::{Cell, Column, ColumnType, Format, TableEntry, TableError, TableWriter};
use cellfab_model::{Line, StageKind};
use cellfab_plant::events::{MachineRef, PlantEvent};
use cellfab_plant::RunReport;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Name of a machine's time-series table: `coating_anode`, `aging`.
pub fn machine_table(line: Line, stage: StageKind) -> String {
    match line {
        Line::Cell => stage.name().to_string(),
        _ => format!("{}_{}", stage.name(), line.title().to_lowercase()),
    }
}

/// A line's name in the tables (`anode`, `cathode`, `cell`).
fn line_name(line: Line) -> &'static str {
    match line {
        Line::Anode => "anode",
        Line::Cathode => "cathode",
        Line::Cell => "cell",
    }
}

/// Every time-series table name, in process order (anode, cathode, cell).
pub fn machine_tables() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in [Line::Anode, Line::Cathode] {
        out.extend(StageKind::ELECTRODE.iter().map(|s| machine_table(line, *s)));
    }
    out.extend(StageKind::CELL.iter().map(|s| machine_table(Line::Cell, *s)));
    out
}

/// The columns every time-series table starts with.
pub fn sample_key_columns() -> Vec<Column> {
    vec![
        Column::new("line", ColumnType::Utf8),
        Column::new("machine_id", ColumnType::Utf8),
        Column::new("batch", ColumnType::Int64),
        Column::new("sample_index", ColumnType::Int64),
        Column::new("timestamp", ColumnType::Timestamp),
    ]
}

/// The fixed columns of the `events` table, in file order.
const EVENT_COLUMNS: [(&str, ColumnType); 21] = {
    use ColumnType::*;
    [
        ("t_s", Float64),
        ("timestamp", Timestamp),
        ("kind", Utf8),
        ("batch", Int64),
        ("line", Utf8),
        ("stage", Utf8),
        ("machine_id", Utf8),
        ("start_t_s", Float64),
        ("duration_s", Float64),
        ("samples", Int64),
        ("accepted", Bool),
        ("alarm_code", Utf8),
        ("alarm_severity", Utf8),
        ("alarm_state", Utf8),
        ("alarm_signal", Utf8),
        ("alarm_value", Float64),
        ("alarm_threshold", Float64),
        ("alarm_position_m", Float64),
        ("alarm_lane", Int64),
        ("alarm_cell_id", Utf8),
        ("alarm_message", Utf8),
    ]
};

/// The fixed columns of the `events` table.
pub fn event_columns() -> Vec<Column> {
    EVENT_COLUMNS.iter().map(|(n, t)| Column::new(n, *t)).collect()
}

/// One row of the `events` table: its cells in [`EVENT_COLUMNS`] order (no column names, so
/// a sorted run on disk holds only values).
pub struct EventCells(Vec<Cell>);

impl EventCells {
    fn new() -> Self {
        Self(vec![Cell::Null; EVENT_COLUMNS.len()])
    }

    /// Sets one column; non-finite numbers are nulls in every table.
    fn set(&mut self, column: &str, cell: Cell) {
        let cell = match cell {
            Cell::Float(x) if !x.is_finite() => Cell::Null,
            c => c,
        };
        if let Some(i) = EVENT_COLUMNS.iter().position(|(name, _)| *name == column) {
            self.0[i] = cell;
        }
    }
}

impl SpillRecord for EventCells {
    fn encode(&self, out: &mut Vec<u8>) {
        crate::tables::encode_cells(out, &self.0);
    }
    fn decode(bytes: Vec<u8>) -> std::io::Result<Self> {
        let cells = crate::tables::decode_cells(&bytes)?;
        if cells.len() != EVENT_COLUMNS.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "an events row with the wrong cell count",
            ));
        }
        Ok(Self(cells))
    }
}

/// Writes the tables of one run.
pub struct RunTables {
    run_dir: PathBuf,
    formats: Vec<Format>,
    epoch_us: i64,
    samples: BTreeMap<String, TableWriter>,
    cells: TableWriter,
    /// Event rows (cells in [`event_columns`] order) by (plant time, machine id); machines on
    /// different threads interleave in any order, one machine's events keep theirs (stable).
    events: TimeSorter<EventCells>,
}

impl RunTables {
    /// Prepares `run_dir/tables/<format>/` for the given formats.
    pub fn create(run_dir: &Path, formats: &[Format], epoch: jiff::Timestamp) -> Result<Self, TableError> {
        let cells = TableWriter::create(run_dir, "cells", formats)?;
        Ok(Self {
            run_dir: run_dir.to_path_buf(),
            formats: formats.to_vec(),
            epoch_us: epoch.as_microsecond(),
            samples: BTreeMap::new(),
            cells,
            events: TimeSorter::new(run_dir.join("tables"), "events", EVENT_RUN_ROWS),
        })
    }

    fn us(&self, t_s: f64) -> i64 {
        self.epoch_us + (t_s * 1e6).round() as i64
    }

    fn event_row(&self, t_s: f64, kind: &str, batch: u32, machine: Option<&MachineRef>) -> EventCells {
        let mut row = EventCells::new();
        row.set("t_s", Cell::Float(t_s));
        row.set("timestamp", Cell::Timestamp(self.us(t_s)));
        row.set("kind", Cell::Str(kind.to_string()));
        row.set("batch", Cell::Int(batch.into()));
        if let Some(m) = machine {
            row.set("line", Cell::Str(m.line.title().to_lowercase()));
            row.set("stage", Cell::Str(m.stage.name().to_string()));
            row.set("machine_id", Cell::Str(m.machine_id.clone()));
        }
        row
    }

    fn push_event(&mut self, t_s: f64, machine_id: &str, row: EventCells) -> Result<(), TableError> {
        self.events.push(t_s, machine_id, row).map_err(|source| TableError::Io { table: "events".into(), source })
    }

    /// Takes what one event adds to the tables.
    pub fn handle(&mut self, event: &PlantEvent) -> Result<(), TableError> {
        match event {
            PlantEvent::Sample { t_s, machine, index, sample } => {
                let name = machine_table(machine.line, machine.stage);
                let table = match self.samples.get_mut(&name) {
                    Some(t) => t,
                    None => {
                        let t = TableWriter::create(&self.run_dir, &name, &self.formats)?;
                        self.samples.entry(name).or_insert(t)
                    }
                };
                let us = self.epoch_us + (t_s * 1e6).round() as i64;
                table.push_flat(|row| {
                    row.text("line", line_name(machine.line));
                    row.text("machine_id", &machine.machine_id);
                    row.cell("batch", &Cell::Int(machine.batch.into()));
                    row.cell("sample_index", &Cell::Int(*index as i64));
                    row.timestamp("timestamp", us);
                    sample.flatten(row)
                })?;
            }
            PlantEvent::CellResults { rows, .. } => {
                for r in rows.iter() {
                    // a JSON value flattens through the same serializer as a typed sample
                    self.cells.push(r)?;
                }
            }
            PlantEvent::MachineOn { t_s, machine } => {
                let row = self.event_row(*t_s, "machine_on", machine.batch, Some(machine));
                self.push_event(*t_s, &machine.machine_id, row)?;
            }
            PlantEvent::MachineOff { t_s, machine } => {
                let row = self.event_row(*t_s, "machine_off", machine.batch, Some(machine));
                self.push_event(*t_s, &machine.machine_id, row)?;
            }
            PlantEvent::StageFinished { t_s, machine, start_t_s, duration_s, samples, result, .. } => {
                let mut row = self.event_row(*t_s, "stage_finished", machine.batch, Some(machine));
                row.set("start_t_s", Cell::Float(*start_t_s));
                row.set("duration_s", Cell::Float(*duration_s));
                row.set("samples", Cell::Int(*samples as i64));
                row.set("accepted", Cell::Bool(result.accepted()));
                self.push_event(*t_s, &machine.machine_id, row)?;
            }
            PlantEvent::Alarm { batch, alarm } => {
                let a = alarm.as_ref();
                let machine =
                    MachineRef { line: a.line, stage: a.stage, machine_id: a.machine_id.clone(), batch: *batch };
                let mut row = self.event_row(a.t_s, "alarm", *batch, Some(&machine));
                let enum_text = |v: serde_json::Result<serde_json::Value>| {
                    v.ok().and_then(|v| v.as_str().map(|s| Cell::Str(s.to_string()))).unwrap_or(Cell::Null)
                };
                row.set("alarm_code", Cell::Str(a.code.clone()));
                row.set("alarm_severity", enum_text(serde_json::to_value(a.severity)));
                row.set("alarm_state", enum_text(serde_json::to_value(a.state)));
                row.set("alarm_signal", Cell::Str(a.signal.clone()));
                row.set("alarm_value", Cell::Float(a.value));
                row.set("alarm_threshold", Cell::Float(a.threshold));
                row.set("alarm_position_m", a.position_m.map_or(Cell::Null, Cell::Float));
                row.set("alarm_lane", a.lane.map_or(Cell::Null, |l| Cell::Int(l.into())));
                row.set("alarm_cell_id", a.cell_id.clone().map_or(Cell::Null, Cell::Str));
                row.set("alarm_message", Cell::Str(a.message.clone()));
                self.push_event(a.t_s, &a.machine_id, row)?;
            }
            PlantEvent::BatchFinished { batch, t_s } => {
                let row = self.event_row(*t_s, "batch_finished", *batch, None);
                self.push_event(*t_s, "", row)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Closes every table, writes `events` and `kpis` (from `kpi_rows`), and returns the
    /// manifest entries sorted by path.
    pub fn finish<K: Serialize>(mut self, kpi_rows: &[K]) -> Result<Vec<TableEntry>, TableError> {
        let mut entries = Vec::new();
        for (_, t) in std::mem::take(&mut self.samples) {
            entries.extend(t.finish()?);
        }
        entries.extend(self.cells.finish()?);
        let mut events = TableWriter::create(&self.run_dir, "events", &self.formats)?.with_schema(event_columns());
        self.events.drain_sorted(
            |source| TableError::Io { table: "events".into(), source },
            |row| {
                events.push_flat(|b| {
                    EVENT_COLUMNS.iter().zip(&row.0).for_each(|((name, _), cell)| b.cell(name, cell));
                    Ok(())
                })
            },
        )?;
        entries.extend(events.finish()?);
        let mut kpis = TableWriter::create(&self.run_dir, "kpis", &self.formats)?;
        for row in kpi_rows {
            kpis.push(row)?;
        }
        entries.extend(kpis.finish()?);
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }
}

/// Event rows held in memory before they go to disk as one sorted run.
pub const EVENT_RUN_ROWS: usize = 8_192;

/// A machine's totals over the batches of the run (the first columns of the `kpis` table).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MachineSummaryRow {
    /// Machine id.
    pub machine_id: String,
    /// Line (`anode`, `cathode`, `cell`).
    pub line: String,
    /// Stage (`coating`).
    pub stage: String,
    /// Batches the machine finished.
    pub batches: i64,
    /// Batches that passed the stage's acceptance.
    pub accepted_batches: i64,
    /// Samples emitted.
    pub samples: i64,
    /// Alarm events (raised and cleared).
    pub alarm_events: i64,
    /// Sum of the stage durations (busy time) [s].
    pub busy_s: f64,
    /// Mean stage duration per batch [s].
    pub mean_duration_s: f64,
    /// Plant time the machine first started [s].
    pub first_start_t_s: f64,
    /// Plant time the machine last finished [s].
    pub last_end_t_s: f64,
}

/// One row of the `kpis` table: a machine's totals and its plant KPIs (MODELS.md §14;
/// definitions in docs/DATA.md, "Plant KPIs").
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MachineKpiRow {
    /// Totals over the run's batches.
    #[serde(flatten)]
    pub totals: MachineSummaryRow,
    /// Mean occupancy per batch [s].
    pub cycle_time_s: f64,
    /// Down time (Critical alarms) [s].
    pub down_s: f64,
    /// Finished output waiting for the next machine [s].
    pub blocked_s: f64,
    /// Waiting for input [s].
    pub starved_s: f64,
    /// No batches left [s].
    pub idle_s: f64,
    /// Busy time / elapsed time.
    pub utilisation: f64,
    /// OEE availability.
    pub oee_availability: f64,
    /// OEE performance.
    pub oee_performance: f64,
    /// OEE quality.
    pub oee_quality: f64,
    /// OEE = A·P·Q.
    pub oee: f64,
    /// Unit of input, output and good (`m` or `cells`).
    pub unit: String,
    /// Input in `unit`.
    pub input: f64,
    /// Output in `unit`.
    pub output: f64,
    /// Good output in `unit`.
    pub good: f64,
    /// Good / input.
    pub yield_frac: f64,
    /// Electric energy [kWh].
    pub energy_kwh: f64,
}

/// The `kpis` table of a run: per machine, in chain order.
pub fn machine_kpi_rows(report: &RunReport) -> Vec<MachineKpiRow> {
    machine_summary_rows(report)
        .into_iter()
        .filter_map(|totals| {
            let k = report.kpis.machines.iter().find(|k| k.machine_id == totals.machine_id)?;
            Some(MachineKpiRow {
                totals,
                cycle_time_s: k.cycle_time_s,
                down_s: k.down_s,
                blocked_s: k.blocked_s,
                starved_s: k.starved_s,
                idle_s: k.idle_s,
                utilisation: k.utilisation,
                oee_availability: k.oee.availability,
                oee_performance: k.oee.performance,
                oee_quality: k.oee.quality,
                oee: k.oee.oee,
                unit: k.unit.to_string(),
                input: k.input,
                output: k.output,
                good: k.good,
                yield_frac: k.yield_frac,
                energy_kwh: k.energy_kwh,
            })
        })
        .collect()
}

/// Per-machine totals of a run report, in chain order (anode, cathode, cell; process order).
pub fn machine_summary_rows(report: &RunReport) -> Vec<MachineSummaryRow> {
    let mut by: BTreeMap<(Line, StageKind), MachineSummaryRow> = BTreeMap::new();
    for s in &report.stages {
        let m = &s.machine;
        let row = by.entry((m.line, m.stage)).or_insert_with(|| MachineSummaryRow {
            machine_id: m.machine_id.clone(),
            line: m.line.title().to_lowercase(),
            stage: m.stage.name().to_string(),
            batches: 0,
            accepted_batches: 0,
            samples: 0,
            alarm_events: 0,
            busy_s: 0.0,
            mean_duration_s: 0.0,
            first_start_t_s: f64::INFINITY,
            last_end_t_s: 0.0,
        });
        row.batches += 1;
        row.accepted_batches += i64::from(s.accepted);
        row.samples += s.samples as i64;
        row.alarm_events += s.alarms as i64;
        row.busy_s += s.duration_s;
        row.first_start_t_s = row.first_start_t_s.min(s.start_t_s);
        row.last_end_t_s = row.last_end_t_s.max(s.start_t_s + s.duration_s);
    }
    by.into_values()
        .map(|mut r| {
            r.mean_duration_s = r.busy_s / r.batches.max(1) as f64;
            r
        })
        .collect()
}
