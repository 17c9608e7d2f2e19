//! Plant events as registry rows.

use crate::Val;
use cellfab_plant::events::{MachineRef, PlantEvent};
use serde_json::Value;
use std::collections::HashMap;

/// How much of the time series the registry keeps (the run folder always keeps all of it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Series {
    /// Every sample.
    Full,
    /// Per machine and batch, the first sample and then one whenever at least this much stage
    /// time [s] has passed since the last one kept.
    Decimated {
        /// Resolution [s], > 0.
        every_s: f64,
    },
}

impl std::str::FromStr for Series {
    type Err = String;
    /// `full` or a resolution in seconds (`10`, `2.5`).
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "full" {
            return Ok(Series::Full);
        }
        match s.trim_end_matches('s').parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(Series::Decimated { every_s: v }),
            _ => Err(format!("series = \"{s}\": must be \"full\" or a resolution in seconds greater than 0 (e.g. 10)")),
        }
    }
}

/// Tables a [`Row`] goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// `machine_states`
    MachineStates,
    /// `stage_results`
    StageResults,
    /// `cells`
    Cells,
    /// `alarms`
    Alarms,
    /// `samples`
    Samples,
}

impl Table {
    /// Every table, in insert order.
    pub const ALL: [Table; 5] =
        [Table::MachineStates, Table::StageResults, Table::Cells, Table::Alarms, Table::Samples];

    /// SQL name.
    pub fn name(self) -> &'static str {
        crate::schema::RUN_TABLES[self as usize]
    }

    /// Columns, in the order [`Row::values`] writes them.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Table::MachineStates => &["run_id", "seq", "machine_id", "line", "stage", "batch", "state", "t_s", "ts_ms"],
            Table::StageResults => &[
                "run_id",
                "seq",
                "machine_id",
                "line",
                "stage",
                "batch",
                "t_s",
                "ts",
                "ts_ms",
                "start_t_s",
                "duration_s",
                "wall_s",
                "samples",
                "accepted",
                "summary",
                "result",
            ],
            Table::Cells => &[
                "run_id",
                "seq",
                "cell_id",
                "batch",
                "lane",
                "index_in_lane",
                "anode_reel_id",
                "cathode_reel_id",
                "anode_coating_start_m",
                "anode_coating_end_m",
                "cathode_coating_start_m",
                "cathode_coating_end_m",
                "splice",
                "defect_ids",
                "fault_labels",
                "grade",
                "design_capacity_ah",
                "discharge_capacity_ah",
                "first_cycle_efficiency_frac",
                "dcr_10s_ohm",
                "k_value_mv_per_day",
                "specific_energy_wh_kg",
                "data",
            ],
            Table::Alarms => &[
                "run_id",
                "seq",
                "batch",
                "machine_id",
                "line",
                "stage",
                "code",
                "severity",
                "state",
                "signal",
                "value",
                "threshold",
                "t_s",
                "ts_ms",
                "message",
                "data",
            ],
            Table::Samples => &[
                "run_id",
                "machine_id",
                "line",
                "stage",
                "batch",
                "idx",
                "t_s",
                "stage_time_s",
                "ts_ms",
                "fields",
                "seq",
            ],
        }
    }
}

/// One row for one table: the values of [`Table::columns`].
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    table: Table,
    values: Vec<Val>,
}

impl Row {
    /// Its table.
    pub fn table(&self) -> Table {
        self.table
    }

    /// Appends its values.
    pub fn values(&self, out: &mut Vec<Val>) {
        out.extend(self.values.iter().cloned());
    }
}

/// Turns one run's plant events into rows.
pub struct EventRows {
    run_id: String,
    epoch_us: i64,
    series: Series,
    last_kept: HashMap<(String, u32), f64>,
    seq: [i64; 4],
    series_pos: HashMap<String, SeriesPos>,
}

/// Where a machine's stored series stands: the `samples.seq` of its next row and the order
/// key (batch, stage time, index) of its last one.
struct SeriesPos {
    next: i64,
    last: Option<(u32, f64, u64)>,
    /// A row arrived out of series order: this and every later row of the machine get no
    /// `seq` (NULL), and readers rank the machine's rows in SQL instead.
    broken: bool,
}

impl SeriesPos {
    /// The `seq` of the machine's next row, whose order key is `key`.
    fn seq(&mut self, key: (u32, f64, u64)) -> Val {
        self.broken |= !key.1.is_finite() || self.last.is_some_and(|last| key <= last);
        self.last = Some(key);
        if self.broken {
            return Val::OptI(None);
        }
        self.next += 1;
        Val::I(self.next - 1)
    }
}

fn text(s: impl Into<String>) -> Val {
    Val::T(Some(s.into()))
}

fn real(x: f64) -> Val {
    Val::F(x.is_finite().then_some(x))
}

fn opt_real(v: Option<&Value>) -> Val {
    Val::F(v.and_then(Value::as_f64).filter(|x| x.is_finite()))
}

/// Flattens a typed sample into `{"a.b": number}`; a measured signal `{"true", "meas"}`
/// becomes its measured value (its true value when the sensor dropped out).
pub fn flatten(prefix: &str, v: &Value, out: &mut serde_json::Map<String, Value>) {
    match v {
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.insert(prefix.to_string(), Value::from(x));
            }
        }
        Value::Object(m) if m.contains_key("true") && m.contains_key("meas") => {
            if let Some(x) = m.get("meas").and_then(Value::as_f64).or_else(|| m.get("true").and_then(Value::as_f64)) {
                out.insert(prefix.to_string(), Value::from(x));
            }
        }
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        _ => {}
    }
}

impl EventRows {
    /// Rows of run `run_id` whose plant time 0 is `epoch`.
    pub fn new(run_id: &str, epoch: jiff::Timestamp, series: Series) -> Self {
        Self {
            run_id: run_id.to_string(),
            epoch_us: epoch.as_microsecond(),
            series,
            last_kept: HashMap::new(),
            seq: [0; 4],
            series_pos: HashMap::new(),
        }
    }

    fn ts_ms(&self, t_s: f64) -> i64 {
        (self.epoch_us as f64 / 1000.0 + t_s * 1000.0).round() as i64
    }

    fn next(&mut self, table: Table) -> Val {
        let slot = &mut self.seq[table as usize];
        *slot += 1;
        Val::I(*slot)
    }

    fn machine(&self, m: &MachineRef) -> [Val; 4] {
        [text(m.machine_id.clone()), text(m.line.title()), text(m.stage.name()), Val::I(m.batch as i64)]
    }

    fn row(&self, table: Table, values: Vec<Val>) -> Row {
        let mut all = Vec::with_capacity(values.len() + 1);
        all.push(text(self.run_id.clone()));
        all.extend(values);
        Row { table, values: all }
    }

    /// Appends the rows `event` produces to `out`.
    pub fn rows(&mut self, event: &PlantEvent, out: &mut Vec<Row>) {
        match event {
            PlantEvent::MachineOn { t_s, machine } | PlantEvent::MachineOff { t_s, machine } => {
                let state = if matches!(event, PlantEvent::MachineOn { .. }) { "on" } else { "off" };
                let mut v = vec![self.next(Table::MachineStates)];
                v.extend(self.machine(machine));
                v.extend([text(state), real(*t_s), Val::I(self.ts_ms(*t_s))]);
                out.push(self.row(Table::MachineStates, v));
            }
            PlantEvent::Sample { t_s, machine, index, sample } => {
                let st = sample.stage_time_s();
                if let Series::Decimated { every_s } = self.series {
                    let key = (machine.machine_id.clone(), machine.batch);
                    match self.last_kept.get(&key) {
                        Some(last) if st - last < every_s => return,
                        _ => {
                            self.last_kept.insert(key, st);
                        }
                    }
                }
                let seq = match self.series_pos.get_mut(&machine.machine_id) {
                    Some(pos) => pos.seq((machine.batch, st, *index)),
                    None => {
                        let mut pos = SeriesPos { next: 0, last: None, broken: false };
                        let seq = pos.seq((machine.batch, st, *index));
                        self.series_pos.insert(machine.machine_id.clone(), pos);
                        seq
                    }
                };
                let mut fields = serde_json::Map::new();
                flatten("", &sample.to_json(), &mut fields);
                let mut v = self.machine(machine).to_vec();
                v.extend([
                    Val::I(*index as i64),
                    real(*t_s),
                    real(st),
                    Val::I(self.ts_ms(*t_s)),
                    text(Value::Object(fields).to_string()),
                    seq,
                ]);
                out.push(self.row(Table::Samples, v));
            }
            PlantEvent::StageFinished { t_s, machine, start_t_s, duration_s, samples, wall_s, result } => {
                let summary: serde_json::Map<String, Value> =
                    result.summary().into_iter().map(|(k, v)| (k.to_string(), Value::from(v))).collect();
                let mut v = vec![self.next(Table::StageResults)];
                v.extend(self.machine(machine));
                v.extend([
                    real(*t_s),
                    text(cellfab_store::seed::timestamp(self.epoch_us, *t_s)),
                    Val::I(self.ts_ms(*t_s)),
                    real(*start_t_s),
                    real(*duration_s),
                    real(*wall_s),
                    Val::I(*samples as i64),
                    Val::I(result.accepted() as i64),
                    text(Value::Object(summary).to_string()),
                    text(result.to_json().to_string()),
                ]);
                out.push(self.row(Table::StageResults, v));
            }
            PlantEvent::Alarm { batch, alarm } => {
                let data = cellfab_store::seed::alarm_record(
                    jiff::Timestamp::from_microsecond(self.epoch_us).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                    *batch,
                    alarm,
                );
                let v = vec![
                    self.next(Table::Alarms),
                    Val::I(*batch as i64),
                    text(alarm.machine_id.clone()),
                    text(alarm.line.title()),
                    text(alarm.stage.name()),
                    text(alarm.code.clone()),
                    text(format!("{:?}", alarm.severity)),
                    text(format!("{:?}", alarm.state)),
                    text(alarm.signal.clone()),
                    real(alarm.value),
                    real(alarm.threshold),
                    real(alarm.t_s),
                    Val::I(self.ts_ms(alarm.t_s)),
                    text(alarm.message.clone()),
                    text(data.to_string()),
                ];
                out.push(self.row(Table::Alarms, v));
            }
            PlantEvent::CellResults { batch, rows } => {
                for cell in rows.iter() {
                    let s = |k: &str| text(cell.get(k).and_then(Value::as_str).unwrap_or_default());
                    let i = |k: &str| Val::I(cell.get(k).and_then(Value::as_i64).unwrap_or_default());
                    let f = |k: &str| opt_real(cell.get(k));
                    let list = |k: &str| text(cell.get(k).cloned().unwrap_or(Value::Array(Vec::new())).to_string());
                    let v = vec![
                        self.next(Table::Cells),
                        s("cell_id"),
                        Val::I(cell.get("batch_id").and_then(Value::as_i64).unwrap_or(*batch as i64)),
                        i("lane"),
                        i("index_in_lane"),
                        s("anode_reel_id"),
                        s("cathode_reel_id"),
                        f("anode_coating_start_m"),
                        f("anode_coating_end_m"),
                        f("cathode_coating_start_m"),
                        f("cathode_coating_end_m"),
                        Val::I(cell.get("splice").and_then(Value::as_bool).unwrap_or(false) as i64),
                        list("defect_ids"),
                        list("fault_labels"),
                        text(grade(cell)),
                        f("design_capacity_ah"),
                        f("discharge_capacity_ah"),
                        f("first_cycle_efficiency_frac"),
                        f("dcr_10s_ohm"),
                        f("k_value_mv_per_day"),
                        f("specific_energy_wh_kg"),
                        text(cell.to_string()),
                    ];
                    out.push(self.row(Table::Cells, v));
                }
            }
            _ => {}
        }
    }
}

/// The grade of a cell row (`unknown` without one), as the server's summary counts it.
pub fn grade(cell: &Value) -> String {
    cell.get("grade").and_then(Value::as_str).unwrap_or("unknown").to_string()
}
