//! From plant events to MQTT messages: topic `<prefix>/<line>/<machine-id>/<kind>` and a JSON
//! payload with the seed record's keys.
//!
//! | event | kind | payload |
//! |---|---|---|
//! | `Sample` | `telemetry` | the sample file's record (`TimeStamp`, `Duration`, `Machine ID`, …, `cellfab`) |
//! | `StageFinished` | `final` | the final-results file's record |
//! | `MachineOn` / `MachineOff` | `status` | `TimeStamp`, `Machine ID`, `Process`, `Batch`, `Status` (`on`/`off`), `Message` |
//! | `Alarm` | `alarm` | the `alarms.jsonl` line |
//!
//! Every payload also carries `message_id` (`<outbox stream>:<sequence>`), unique and kept
//! across resends, so a consumer can deduplicate.

use cellfab_model::Line;
use cellfab_plant::events::{MachineRef, PlantEvent};
use serde_json::{Map, Value};

/// What a message reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One sample.
    Telemetry,
    /// Machine on/off.
    Status,
    /// Final result of a machine and batch.
    Final,
    /// Alarm raised or cleared.
    Alarm,
}

impl Kind {
    /// The last topic level.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Telemetry => "telemetry",
            Kind::Status => "status",
            Kind::Final => "final",
            Kind::Alarm => "alarm",
        }
    }
}

/// A message before it enters the outbox.
#[derive(Clone, Debug)]
pub struct Message {
    /// Logical topic `<prefix>/<line>/<machine-id>/<kind>`.
    pub topic: String,
    /// What it reports.
    pub kind: Kind,
    /// JSON object (without `message_id`, added by the outbox).
    pub payload: Map<String, Value>,
}

/// `<prefix>/<line>/<machine-id>/<kind>`, with `line` one of `anode`, `cathode`, `cell`.
pub fn topic(prefix: &str, line: &str, machine_id: &str, kind: Kind) -> String {
    format!("{prefix}/{line}/{machine_id}/{}", kind.as_str())
}

fn line_name(line: Line) -> String {
    line.title().to_lowercase()
}

/// The message for one plant event, if the event is published.
///
/// `fault_codes` holds the codes of the fault labels seen so far, for the samples' `"fault"`
/// key (the payload equals the sample file's record).
pub fn from_event(
    prefix: &str,
    epoch: jiff::Timestamp,
    event: &PlantEvent,
    fault_codes: &std::collections::BTreeMap<u32, &'static str>,
) -> Option<Message> {
    let on_machine = |m: &MachineRef, kind: Kind, payload: Map<String, Value>| Message {
        topic: topic(prefix, &line_name(m.line), &m.machine_id, kind),
        kind,
        payload,
    };
    match event {
        PlantEvent::Sample { machine, .. } => {
            cellfab_store::seed::seed_record(epoch, event, fault_codes).map(|r| on_machine(machine, Kind::Telemetry, r))
        }
        PlantEvent::StageFinished { machine, .. } => {
            cellfab_store::seed::seed_record(epoch, event, fault_codes).map(|r| on_machine(machine, Kind::Final, r))
        }
        PlantEvent::MachineOn { t_s, machine } | PlantEvent::MachineOff { t_s, machine } => {
            let on = matches!(event, PlantEvent::MachineOn { .. });
            let mut p = Map::new();
            p.insert("TimeStamp".into(), cellfab_store::seed::timestamp(epoch.as_microsecond(), *t_s).into());
            p.insert("Machine ID".into(), machine.machine_id.clone().into());
            p.insert("Process".into(), machine.stage.process().into());
            p.insert("Batch".into(), machine.batch.into());
            p.insert("Status".into(), if on { "on" } else { "off" }.into());
            p.insert("Message".into(), event.message().unwrap_or_default().into());
            Some(on_machine(machine, Kind::Status, p))
        }
        PlantEvent::Alarm { batch, alarm } => {
            let Value::Object(p) = cellfab_store::seed::alarm_record(epoch, *batch, alarm) else { return None };
            Some(Message {
                topic: topic(prefix, &line_name(alarm.line), &alarm.machine_id, Kind::Alarm),
                kind: Kind::Alarm,
                payload: p,
            })
        }
        _ => None,
    }
}

/// The message for a seed-layout file (the watcher): `Machine ID` and `Electrode Type` of the
/// record give the topic; `_final_results_` in the name makes it a final result.
/// A record whose machine id or electrode type could not be a topic level (empty, or holding
/// `/`, the wildcards `+` `#`, or a NUL, which MQTT forbids in a topic name) is not a seed
/// record: `None`.
pub fn from_seed_file(prefix: &str, file_name: &str, record: Map<String, Value>) -> Option<Message> {
    let machine = record.get("Machine ID")?.as_str().filter(|m| is_topic_level(m))?.to_string();
    let line = match record.get("Electrode Type").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => Some(t.to_lowercase()).filter(|t| is_topic_level(t))?,
        _ => "cell".to_string(),
    };
    let kind = if file_name.contains("_final_results_") { Kind::Final } else { Kind::Telemetry };
    Some(Message { topic: topic(prefix, &line, &machine, kind), kind, payload: record })
}

/// The message for a seed-layout file's bytes, as the watcher reads them: `None` unless they
/// are a JSON object that [`from_seed_file`] accepts.
pub fn from_seed_file_bytes(prefix: &str, file_name: &str, bytes: &[u8]) -> Option<Message> {
    match serde_json::from_slice::<Value>(bytes).ok()? {
        Value::Object(record) => from_seed_file(prefix, file_name, record),
        _ => None,
    }
}

/// A non-empty topic level without `/`, `+`, `#` or NUL.
fn is_topic_level(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '+', '#', '\0'])
}

/// Several telemetry records of one machine in one message (IoT Hub quota):
/// `{"Machine ID": …, "records": [ … ]}` on the machine's telemetry topic.
pub fn batch(topic: String, records: Vec<Map<String, Value>>) -> Message {
    let machine = records.first().and_then(|r| r.get("Machine ID")).cloned().unwrap_or(Value::Null);
    let mut payload = Map::new();
    payload.insert("Machine ID".into(), machine);
    payload.insert("records".into(), Value::Array(records.into_iter().map(Value::Object).collect()));
    Message { topic, kind: Kind::Telemetry, payload }
}
