//! The plant's event stream: one typed [`PlantEvent`] for everything that happens, and the
//! [`EventBus`] that fans it out to subscribers over bounded channels.
//!
//! Full-policy of each subscriber's buffer (STYLE.md §5):
//! * [`Delivery::Reliable`] (files, databases, brokers): the publisher waits while the buffer
//!   is full — back-pressure; nothing is dropped.
//! * [`Delivery::Live`] (dashboards, web sockets): when the buffer is full the event is
//!   dropped for that subscriber only and counted; the simulation never waits for a viewer.

use cellfab_model::legacy::LegacyRecord;
use cellfab_model::stage::{ResultRecord, SampleRecord};
use cellfab_model::{Alarm, Line, StageKind};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// A stage sample with its type erased, so one event type carries every stage's samples.
pub trait DynSample: Send + Sync {
    /// Stage time [s].
    fn stage_time_s(&self) -> f64;
    /// Legacy (seed-layout) keys of the sample.
    fn legacy(&self, out: &mut LegacyRecord);
    /// The full typed sample as JSON (unit-suffixed names).
    fn to_json(&self) -> serde_json::Value;
    /// The sample's table columns, straight into `sink`: the same names and values as
    /// flattening [`DynSample::to_json`] (see [`crate::flat`]).
    fn flatten(&self, sink: &mut dyn crate::flat::FlatSink) -> Result<(), serde_json::Error>;
}

impl<T: SampleRecord> DynSample for T {
    fn stage_time_s(&self) -> f64 {
        SampleRecord::stage_time_s(self)
    }
    fn legacy(&self, out: &mut LegacyRecord) {
        SampleRecord::legacy(self, out)
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
    fn flatten(&self, sink: &mut dyn crate::flat::FlatSink) -> Result<(), serde_json::Error> {
        crate::flat::flatten(self, sink)
    }
}

/// A stage result with its type erased.
pub trait DynResult: Send + Sync {
    /// Legacy keys of the final record.
    fn legacy(&self, out: &mut LegacyRecord);
    /// The full typed result as JSON.
    fn to_json(&self) -> serde_json::Value;
    /// Passed the stage's acceptance.
    fn accepted(&self) -> bool;
    /// Key values for summaries.
    fn summary(&self) -> Vec<(&'static str, f64)>;
}

impl<T: ResultRecord> DynResult for T {
    fn legacy(&self, out: &mut LegacyRecord) {
        ResultRecord::legacy(self, out)
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
    fn accepted(&self) -> bool {
        ResultRecord::accepted(self)
    }
    fn summary(&self) -> Vec<(&'static str, f64)> {
        ResultRecord::summary(self)
    }
}

/// Identity of a machine working on a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MachineRef {
    /// Line of the machine.
    pub line: Line,
    /// Stage it performs.
    pub stage: StageKind,
    /// Machine id (`MC_Coat_Anode`).
    pub machine_id: String,
    /// Batch it works on.
    pub batch: u32,
}

/// Everything that happens in the plant.
#[derive(Clone)]
pub enum PlantEvent {
    /// A run begins.
    RunStarted {
        /// Master seed.
        seed: u64,
        /// Batches in the run.
        batches: u32,
        /// Plant epoch (plant time 0), RFC 3339.
        start: String,
    },
    /// A batch entered the queue.
    BatchQueued {
        /// Batch number.
        batch: u32,
    },
    /// A machine started a batch.
    MachineOn {
        /// Plant time [s].
        t_s: f64,
        /// Machine and batch.
        machine: MachineRef,
    },
    /// One sample of a running machine.
    Sample {
        /// Plant time [s].
        t_s: f64,
        /// Machine and batch.
        machine: MachineRef,
        /// Running sample number of this machine and batch (0-based).
        index: u64,
        /// The sample.
        sample: Arc<dyn DynSample>,
    },
    /// An alarm was raised or cleared.
    Alarm {
        /// Batch.
        batch: u32,
        /// The alarm.
        alarm: Arc<Alarm>,
    },
    /// A machine finished a batch.
    StageFinished {
        /// Plant time at the end [s].
        t_s: f64,
        /// Machine and batch.
        machine: MachineRef,
        /// Plant time at the start [s].
        start_t_s: f64,
        /// Stage duration [s].
        duration_s: f64,
        /// Samples emitted.
        samples: u64,
        /// Wall time spent computing the stage [s].
        wall_s: f64,
        /// The final result.
        result: Arc<dyn DynResult>,
    },
    /// A machine stopped after a batch.
    MachineOff {
        /// Plant time [s].
        t_s: f64,
        /// Machine and batch.
        machine: MachineRef,
    },
    /// Per-cell results of a finished batch (one JSON object per cell).
    CellResults {
        /// Batch.
        batch: u32,
        /// Rows, in cell order.
        rows: Arc<Vec<serde_json::Value>>,
    },
    /// A fault became active (MODELS.md §13): its ground-truth label. Published before the
    /// samples that carry its id.
    FaultLabel {
        /// The label (onset and end in plant time).
        label: Arc<cellfab_model::fault::FaultLabel>,
    },
    /// A batch left the last machine.
    BatchFinished {
        /// Batch.
        batch: u32,
        /// Plant time [s].
        t_s: f64,
    },
    /// Plant KPIs of a run that ran to its end (published just before `RunFinished`).
    Kpis {
        /// The KPIs (MODELS.md §14).
        kpis: Arc<crate::kpi::PlantKpis>,
    },
    /// The run finished (or was cancelled).
    RunFinished {
        /// Plant time of the last event [s].
        t_s: f64,
        /// True if cancelled before the end.
        cancelled: bool,
    },
}

impl PlantEvent {
    /// Plant time of the event, where it has one.
    pub fn t_s(&self) -> Option<f64> {
        match self {
            PlantEvent::MachineOn { t_s, .. }
            | PlantEvent::Sample { t_s, .. }
            | PlantEvent::StageFinished { t_s, .. }
            | PlantEvent::MachineOff { t_s, .. }
            | PlantEvent::BatchFinished { t_s, .. }
            | PlantEvent::RunFinished { t_s, .. } => Some(*t_s),
            PlantEvent::Alarm { alarm, .. } => Some(alarm.t_s),
            PlantEvent::FaultLabel { label } => Some(label.onset_t_s),
            _ => None,
        }
    }

    /// A one-line human message for status feeds (`None` for samples).
    pub fn message(&self) -> Option<String> {
        Some(match self {
            PlantEvent::RunStarted { seed, batches, .. } => format!("Run started: {batches} batch(es), seed {seed}"),
            PlantEvent::BatchQueued { batch } => format!("Batch {batch} queued"),
            PlantEvent::MachineOn { machine, .. } => {
                format!("Machine {} is on (batch {})", machine.machine_id, machine.batch)
            }
            PlantEvent::StageFinished { machine, .. } => {
                format!("Machine {} completed {} of batch {}", machine.machine_id, machine.stage.name(), machine.batch)
            }
            PlantEvent::MachineOff { machine, .. } => format!("Machine {} is off", machine.machine_id),
            PlantEvent::Alarm { alarm, .. } => {
                format!("{} {:?} {} {:?}: {}", alarm.machine_id, alarm.state, alarm.code, alarm.severity, alarm.message)
            }
            PlantEvent::CellResults { batch, rows } => format!("Batch {batch}: {} cell results", rows.len()),
            PlantEvent::FaultLabel { label } => format!(
                "Fault {} #{} on {} (batch {})",
                label.code.as_str(),
                label.label_id,
                label.machine_id,
                label.batch_id
            ),
            PlantEvent::BatchFinished { batch, .. } => format!("Batch {batch} finished"),
            PlantEvent::RunFinished { cancelled: false, .. } => "Run finished".into(),
            PlantEvent::RunFinished { cancelled: true, .. } => "Run cancelled".into(),
            PlantEvent::Sample { .. } | PlantEvent::Kpis { .. } => return None,
        })
    }
}

/// How a subscriber wants events delivered when its buffer is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The publisher waits (back-pressure). For anything that persists.
    Reliable,
    /// The event is dropped for this subscriber and counted. For live views only.
    Live,
}

/// Default buffer of a subscriber, in events.
pub const DEFAULT_SUBSCRIBER_CAPACITY: usize = 4096;

struct Subscriber {
    tx: SyncSender<Arc<PlantEvent>>,
    delivery: Delivery,
    dropped: Arc<AtomicU64>,
}

/// Fans every published event out to the subscribers.
#[derive(Default)]
pub struct EventBus {
    subscribers: Mutex<Vec<Subscriber>>,
}

/// A subscription: the receiving end and the count of events dropped for it (Live only).
pub struct Subscription {
    /// Events in publication order (per publishing machine).
    pub rx: Receiver<Arc<PlantEvent>>,
    /// Events dropped because the buffer was full.
    pub dropped: Arc<AtomicU64>,
}

impl EventBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscriber with a buffer of `capacity` events.
    pub fn subscribe(&self, capacity: usize, delivery: Delivery) -> Subscription {
        let (tx, rx) = sync_channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        self.subscribers.lock().expect("bus lock").push(Subscriber { tx, delivery, dropped: dropped.clone() });
        Subscription { rx, dropped }
    }

    /// Publishes one event to every subscriber; disconnected subscribers are removed.
    pub fn publish(&self, event: PlantEvent) {
        let event = Arc::new(event);
        // Clone the senders so a blocked reliable subscriber does not hold the lock.
        let targets: Vec<(SyncSender<Arc<PlantEvent>>, Delivery, Arc<AtomicU64>)> = self
            .subscribers
            .lock()
            .expect("bus lock")
            .iter()
            .map(|s| (s.tx.clone(), s.delivery, s.dropped.clone()))
            .collect();
        let mut gone: Vec<Arc<AtomicU64>> = Vec::new();
        for (tx, delivery, dropped) in targets {
            let disconnected = match delivery {
                Delivery::Reliable => tx.send(event.clone()).is_err(),
                Delivery::Live => match tx.try_send(event.clone()) {
                    Ok(()) => false,
                    Err(TrySendError::Full(_)) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                    Err(TrySendError::Disconnected(_)) => true,
                },
            };
            if disconnected {
                gone.push(dropped);
            }
        }
        if !gone.is_empty() {
            self.subscribers.lock().expect("bus lock").retain(|s| !gone.iter().any(|g| Arc::ptr_eq(g, &s.dropped)));
        }
    }

    /// Closes every subscription (their receivers end after draining).
    pub fn close(&self) {
        self.subscribers.lock().expect("bus lock").clear();
    }
}
