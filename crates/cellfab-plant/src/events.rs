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
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};

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

/// Most events in one block of [`EventBus::publish_all`]: one channel message (and at most one
/// wake-up of the receiver) carries up to this many events.
pub const BLOCK_EVENTS: usize = 256;

/// Events that travel together through a subscriber's channel.
type Block = Arc<[Arc<PlantEvent>]>;

/// Counts the events waiting in one subscriber's channel, so the buffer is bounded in events
/// whether they come one by one (paced runs) or in blocks (unpaced).
struct Gate {
    state: Mutex<GateState>,
    room: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct GateState {
    queued: usize,
    closed: bool,
}

impl Gate {
    fn new(capacity: usize) -> Self {
        Self { state: Mutex::default(), room: Condvar::new(), capacity: capacity.max(1) }
    }

    /// Reserves room for `n` events, waiting while the buffer is full unless `wait` is false.
    /// An empty buffer always takes a block, however large. `Err(true)`: the receiver is gone;
    /// `Err(false)`: full and not waiting.
    fn enter(&self, n: usize, wait: bool) -> Result<(), bool> {
        let mut state = self.state.lock().expect("gate lock");
        loop {
            if state.closed {
                return Err(true);
            }
            if state.queued == 0 || state.queued + n <= self.capacity {
                state.queued += n;
                return Ok(());
            }
            if !wait {
                return Err(false);
            }
            state = self.room.wait(state).expect("gate lock");
        }
    }

    /// Gives back the room of `n` events taken by the receiver.
    fn leave(&self, n: usize) {
        let mut state = self.state.lock().expect("gate lock");
        state.queued = state.queued.saturating_sub(n);
        drop(state);
        self.room.notify_all();
    }

    fn close(&self) {
        self.state.lock().expect("gate lock").closed = true;
        self.room.notify_all();
    }
}

struct Subscriber {
    tx: Sender<Block>,
    gate: Arc<Gate>,
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
    pub rx: Events,
    /// Events dropped because the buffer was full.
    pub dropped: Arc<AtomicU64>,
}

/// The receiving end of a subscription: iterate it to get every event until the bus closes.
pub struct Events {
    end: ReceiverEnd,
}

/// A channel's receiver with its gate; dropping it releases publishers waiting for room.
struct ReceiverEnd {
    rx: Receiver<Block>,
    gate: Arc<Gate>,
}

impl ReceiverEnd {
    fn take(&self, block: Block) -> Block {
        self.gate.leave(block.len());
        block
    }
}

impl Drop for ReceiverEnd {
    fn drop(&mut self) {
        self.gate.close();
    }
}

impl Events {
    /// The events already delivered, without waiting.
    pub fn try_iter(&self) -> impl Iterator<Item = Arc<PlantEvent>> + '_ {
        self.end.rx.try_iter().flat_map(|block| {
            let block = self.end.take(block);
            (0..block.len()).map(move |i| block[i].clone())
        })
    }
}

impl IntoIterator for Events {
    type Item = Arc<PlantEvent>;
    type IntoIter = EventsIter;
    fn into_iter(self) -> EventsIter {
        EventsIter { end: self.end, block: None, next: 0 }
    }
}

/// Iterator over a subscription's events (blocks until the next one or the end of the run).
pub struct EventsIter {
    end: ReceiverEnd,
    block: Option<Block>,
    next: usize,
}

impl Iterator for EventsIter {
    type Item = Arc<PlantEvent>;
    fn next(&mut self) -> Option<Arc<PlantEvent>> {
        loop {
            if let Some(block) = &self.block {
                if let Some(event) = block.get(self.next) {
                    self.next += 1;
                    return Some(event.clone());
                }
            }
            self.block = Some(self.end.take(self.end.rx.recv().ok()?));
            self.next = 0;
        }
    }
}

impl EventBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscriber with a buffer of `capacity` events.
    pub fn subscribe(&self, capacity: usize, delivery: Delivery) -> Subscription {
        let (tx, rx) = channel();
        let gate = Arc::new(Gate::new(capacity));
        let dropped = Arc::new(AtomicU64::new(0));
        self.subscribers.lock().expect("bus lock").push(Subscriber {
            tx,
            gate: gate.clone(),
            delivery,
            dropped: dropped.clone(),
        });
        Subscription { rx: Events { end: ReceiverEnd { rx, gate } }, dropped }
    }

    /// Publishes one event to every subscriber; disconnected subscribers are removed.
    pub fn publish(&self, event: PlantEvent) {
        self.publish_all(vec![event]);
    }

    /// Publishes events in order to every subscriber: reliable subscribers get them as one
    /// block (one wake-up), live ones one by one, each dropped on its own when the buffer is
    /// full. Disconnected subscribers are removed.
    pub fn publish_all(&self, events: Vec<PlantEvent>) {
        if events.is_empty() {
            return;
        }
        let block: Block = events.into_iter().map(Arc::new).collect();
        // Clone the senders so a blocked reliable subscriber does not hold the lock.
        type Target = (Sender<Block>, Arc<Gate>, Delivery, Arc<AtomicU64>);
        let targets: Vec<Target> = self
            .subscribers
            .lock()
            .expect("bus lock")
            .iter()
            .map(|s| (s.tx.clone(), s.gate.clone(), s.delivery, s.dropped.clone()))
            .collect();
        let mut gone: Vec<Arc<AtomicU64>> = Vec::new();
        for (tx, gate, delivery, dropped) in targets {
            let disconnected = match delivery {
                Delivery::Reliable => gate.enter(block.len(), true).is_err() || tx.send(block.clone()).is_err(),
                Delivery::Live => block.iter().any(|event| match gate.enter(1, false) {
                    Ok(()) => tx.send(Arc::from([event.clone()])).is_err(),
                    Err(false) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                    Err(true) => true,
                }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn queued(batch: u32) -> PlantEvent {
        PlantEvent::BatchQueued { batch }
    }

    fn batches(events: impl IntoIterator<Item = Arc<PlantEvent>>) -> Vec<u32> {
        events
            .into_iter()
            .map(|e| match *e {
                PlantEvent::BatchQueued { batch } => batch,
                _ => u32::MAX,
            })
            .collect()
    }

    #[test]
    fn a_reliable_subscriber_gets_every_event_in_order_through_a_buffer_smaller_than_a_block() {
        let bus = Arc::new(EventBus::new());
        let sub = bus.subscribe(5, Delivery::Reliable);
        let publisher = {
            let bus = bus.clone();
            std::thread::spawn(move || {
                for start in (0..3_000).step_by(700) {
                    bus.publish_all((start..(start + 700).min(3_000)).map(queued).collect());
                    bus.publish(queued(u32::MAX - 1));
                }
                bus.close();
            })
        };
        let got = batches(sub.rx);
        publisher.join().unwrap();
        let expected: Vec<u32> =
            (0..3_000u32).step_by(700).flat_map(|s| (s..(s + 700).min(3_000)).chain([u32::MAX - 1])).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn a_publisher_waiting_for_room_is_released_when_the_subscriber_goes_away() {
        let bus = Arc::new(EventBus::new());
        let sub = bus.subscribe(2, Delivery::Reliable);
        bus.publish_all((0..2).map(queued).collect());
        let publisher = {
            let bus = bus.clone();
            std::thread::spawn(move || bus.publish(queued(9)))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!publisher.is_finished(), "the buffer is full, so the publisher waits");
        drop(sub);
        publisher.join().unwrap();
        assert!(bus.subscribers.lock().unwrap().is_empty(), "the gone subscriber is removed");
    }

    #[test]
    fn a_live_subscriber_keeps_exactly_its_capacity_of_a_block_and_counts_the_rest() {
        let bus = EventBus::new();
        let live = bus.subscribe(8, Delivery::Live);
        bus.publish_all((0..300).map(queued).collect());
        assert_eq!(batches(live.rx.try_iter()), (0..8).collect::<Vec<_>>());
        assert_eq!(live.dropped.load(Ordering::Relaxed), 292);
        bus.publish(queued(500));
        assert_eq!(batches(live.rx.try_iter()), vec![500], "reading made room again");
    }
}
