//! The plant engine: machines as resources, batches as the entities that flow.
//!
//! Each machine processes one batch at a time, in batch order. A batch starts on a machine
//! at `max(ready time of its input, time the machine is free)` — the flow-shop recurrence —
//! so plant times depend only on stage durations, never on scheduling. Every stage run gets
//! random streams derived from (seed, batch, line, stage, purpose); together this makes
//! every output bit-identical whatever the thread count.
//!
//! Two executors run the same chain declaration ([`crate::chain`]):
//! * threaded (default): one thread per machine, connected by bounded channels (two batches
//!   in flight between neighbours), so batch 2 mixes while batch 1 coats and the anode and
//!   cathode lines run in parallel;
//! * inline (`threads = 1`): every machine on the calling thread, stage by stage.
//!
//! A stage computes first (its events are buffered) and is then replayed to the event bus
//! through the pacer, so compute time is measured apart from pacing, and a coater and its
//! dryer — one physical line — can interleave their events in plant-time order.

use crate::events::{DynResult, DynSample, EventBus, MachineRef, PlantEvent};
use crate::pacing::Pacer;
use cellfab_model::fault::{ActiveFault, FaultLabel, FaultSet};
use cellfab_model::random::{derive_seed, stream, Purpose};
use cellfab_model::stage::{Stage, StageCtx, StageSink};
use cellfab_model::{Alarm, Line};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::Scope;
use std::time::Instant;

/// A batch's product on its way between machines.
pub struct Token<T> {
    /// Batch number.
    pub batch: u32,
    /// Plant time at which the product is ready for the next machine [s].
    pub ready_t_s: f64,
    /// The product.
    pub product: T,
}

/// Settings shared by every machine of a run.
pub struct RunEnv {
    /// Master seed.
    pub seed: u64,
    /// Process variability on.
    pub process_variability: bool,
    /// Sensor noise on.
    pub sensor_noise: bool,
    /// The event stream.
    pub bus: Arc<EventBus>,
    /// Wall-clock pacing and cancellation.
    pub pacer: Pacer,
    /// First failure of a machine thread.
    pub failure: Mutex<Option<(String, String)>>,
    /// Statistics per finished stage run.
    pub stats: Mutex<Vec<StageStat>>,
    /// Runs the chunks of cells of formation and aging: [`crate::Threads`] on every core, or
    /// [`cellfab_model::Sequential`] when `threads = 1`.
    pub parallel: Box<dyn cellfab_model::Parallel>,
    /// Every fault of the run with its label id ([`crate::faults::expand`]).
    pub faults: Vec<ActiveFault>,
    /// Labels of the faults that became active, as the stage runs finish.
    pub labels: Mutex<Vec<FaultLabel>>,
}

/// What the engine records of each stage run (for the run summary and the manifest).
#[derive(Clone, Debug, serde::Serialize)]
pub struct StageStat {
    /// Machine and batch.
    pub machine: MachineRef,
    /// Plant time at which the batch's input was ready for this machine [s].
    pub ready_t_s: f64,
    /// Plant time at start [s].
    pub start_t_s: f64,
    /// Stage duration [s].
    pub duration_s: f64,
    /// Part of the duration under an active Critical alarm (machine down) [s].
    pub down_s: f64,
    /// The machine is a rack with room for every batch (aging shelves).
    pub unlimited_capacity: bool,
    /// Quantities, ideal time and energy of the run, for the KPIs.
    pub measures: crate::kpi::StageMeasures,
    /// Samples emitted.
    pub samples: u64,
    /// Alarm events emitted.
    pub alarms: u64,
    /// Wall time of the computation [s].
    pub compute_wall_s: f64,
    /// Key values of the result.
    pub summary: Vec<(String, f64)>,
    /// The result passed its acceptance.
    pub accepted: bool,
}

/// Buffers one stage run's events until it is replayed.
struct BufferSink<'a> {
    machine: &'a MachineRef,
    start_t_s: f64,
    events: Vec<PlantEvent>,
    samples: u64,
    alarms: u64,
    /// Critical alarms active now (code, lane, cell) and since when the machine is down.
    critical: Vec<(String, Option<u32>, Option<String>)>,
    down_since_t_s: f64,
    down_s: f64,
}

impl BufferSink<'_> {
    /// Down time including a Critical alarm still active at `end_t_s`.
    fn down_until(&self, end_t_s: f64) -> f64 {
        self.down_s + if self.critical.is_empty() { 0.0 } else { (end_t_s - self.down_since_t_s).max(0.0) }
    }
}

impl<S: cellfab_model::stage::SampleRecord> StageSink<S> for BufferSink<'_> {
    fn sample(&mut self, sample: S) {
        let t_s = self.start_t_s + sample.stage_time_s();
        let sample: Arc<dyn DynSample> = Arc::new(sample);
        self.events.push(PlantEvent::Sample { t_s, machine: self.machine.clone(), index: self.samples, sample });
        self.samples += 1;
    }
    fn alarm(&mut self, alarm: &Alarm) {
        self.alarms += 1;
        if alarm.severity == cellfab_model::alarm::Severity::Critical {
            let key = (alarm.code.clone(), alarm.lane, alarm.cell_id.clone());
            match alarm.state {
                cellfab_model::alarm::AlarmState::Raised => {
                    if self.critical.is_empty() {
                        self.down_since_t_s = alarm.t_s;
                    }
                    self.critical.push(key);
                }
                cellfab_model::alarm::AlarmState::Cleared => {
                    if let Some(i) = self.critical.iter().position(|k| *k == key) {
                        self.critical.swap_remove(i);
                        if self.critical.is_empty() {
                            self.down_s += (alarm.t_s - self.down_since_t_s).max(0.0);
                        }
                    }
                }
            }
        }
        self.events.push(PlantEvent::Alarm { batch: self.machine.batch, alarm: Arc::new(alarm.clone()) });
    }
}

/// One machine: its parameters, the state it keeps across batches and when it is free.
pub struct Machine<S: Stage> {
    params: S::Params,
    line: Line,
    state: S::MachineState,
    free_t_s: f64,
    /// A rack resource with room for every batch (aging shelves): never waits for itself.
    unlimited: bool,
}

impl<S: Stage> Machine<S> {
    /// A single-capacity machine.
    pub fn new(params: S::Params, line: Line) -> Self {
        Self { params, line, state: Default::default(), free_t_s: 0.0, unlimited: false }
    }

    /// A machine with unlimited capacity (every batch starts when its input is ready).
    pub fn unlimited(params: S::Params, line: Line) -> Self {
        Self { unlimited: true, ..Self::new(params, line) }
    }

    /// When the machine can take the next batch [s].
    pub fn free_t_s(&self) -> f64 {
        if self.unlimited {
            0.0
        } else {
            self.free_t_s
        }
    }

    /// Runs the stage on one batch whose input was ready at `ready_t_s`, starting at
    /// `start_t_s`; returns the output, the stage duration and the buffered events
    /// (MachineOn … StageFinished, MachineOff).
    pub fn run(
        &mut self,
        env: &RunEnv,
        batch: u32,
        ready_t_s: f64,
        start_t_s: f64,
        input: S::Input,
    ) -> (S::Output, f64, Vec<PlantEvent>) {
        let machine = MachineRef { line: self.line, stage: S::KIND, machine_id: S::KIND.machine_id(self.line), batch };
        let path = [batch as u64, self.line.id(), S::KIND.id()];
        let mut process_rng = stream(env.seed, &[path[0], path[1], path[2], Purpose::Process as u64]);
        let mut sensor_rng = stream(env.seed, &[path[0], path[1], path[2], Purpose::Sensor as u64]);
        let faults = FaultSet::new(
            env.faults
                .iter()
                .filter(|f| f.batch == batch && f.spec.line == self.line && f.spec.stage == S::KIND)
                .cloned()
                .collect(),
        );
        let mut ctx = StageCtx {
            batch_id: batch,
            line: self.line,
            start_t_s,
            process_rng: &mut process_rng,
            sensor_rng: &mut sensor_rng,
            stream_seed: derive_seed(env.seed, &[path[0], path[1], path[2], 3]),
            process_variability: env.process_variability,
            sensor_noise: env.sensor_noise,
            parallel: &*env.parallel,
            faults: &faults,
        };
        let mut sink = BufferSink {
            machine: &machine,
            start_t_s,
            events: Vec::new(),
            samples: 0,
            alarms: 0,
            critical: Vec::new(),
            down_since_t_s: start_t_s,
            down_s: 0.0,
        };
        sink.events.push(PlantEvent::MachineOn { t_s: start_t_s, machine: machine.clone() });
        let wall = Instant::now();
        let run = S::run(&self.params, input, &mut self.state, &mut ctx, &mut sink);
        let compute_wall_s = wall.elapsed().as_secs_f64();
        let end_t_s = start_t_s + run.duration_s;
        // the KPIs read a few numbers: the alarm list (up to ~10^5 events with worn slitter
        // blades) is left out instead of being converted and dropped
        let fields = crate::skip_fields::to_value_without(&run.result, &["alarms"]).unwrap_or_default();
        let result: Arc<dyn DynResult> = Arc::new(run.result);
        let params = serde_json::to_value(&self.params).unwrap_or_default();
        let measures = crate::kpi::measures(S::KIND, &fields, &params, run.duration_s, result.accepted());
        env.stats.lock().expect("stats lock").push(StageStat {
            machine: machine.clone(),
            ready_t_s,
            start_t_s,
            duration_s: run.duration_s,
            down_s: sink.down_until(end_t_s),
            unlimited_capacity: self.unlimited,
            measures,
            samples: sink.samples,
            alarms: sink.alarms,
            compute_wall_s,
            summary: result.summary().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            accepted: result.accepted(),
        });
        let samples = sink.samples;
        let labels = faults.labels(&machine.machine_id, start_t_s);
        env.labels.lock().expect("labels lock").extend(labels.iter().cloned());
        let mut label_events: Vec<PlantEvent> =
            labels.into_iter().map(|l| PlantEvent::FaultLabel { label: Arc::new(l) }).collect();
        label_events.sort_by(|a, b| a.t_s().unwrap_or(0.0).total_cmp(&b.t_s().unwrap_or(0.0)));
        let mut events = merge_by_time(label_events, sink.events);
        events.push(PlantEvent::StageFinished {
            t_s: end_t_s,
            machine: machine.clone(),
            start_t_s,
            duration_s: run.duration_s,
            samples,
            wall_s: compute_wall_s,
            result,
        });
        events.push(PlantEvent::MachineOff { t_s: end_t_s, machine });
        if !self.unlimited {
            self.free_t_s = end_t_s;
        }
        (run.output, run.duration_s, events)
    }

    /// Takes one batch: starts when both the input and the machine are ready, replays its
    /// events through the pacer, and hands the output on.
    pub fn process(&mut self, env: &RunEnv, token: Token<S::Input>) -> Token<S::Output> {
        let start = token.ready_t_s.max(self.free_t_s());
        let (output, duration_s, events) = self.run(env, token.batch, token.ready_t_s, start, token.product);
        replay(env, events);
        Token { batch: token.batch, ready_t_s: start + duration_s, product: output }
    }
}

/// Publishes buffered events in order, each at its paced wall deadline. After cancellation
/// the rest is dropped. Unpaced (`max`), events go out in blocks of
/// [`crate::events::BLOCK_EVENTS`]: one channel message per block instead of one per event.
pub fn replay(env: &RunEnv, events: Vec<PlantEvent>) {
    if !env.pacer.is_paced() {
        let cancel = env.pacer.cancel_token();
        let mut block = Vec::with_capacity(crate::events::BLOCK_EVENTS.min(events.len()));
        for event in events {
            if event.t_s().is_some() && cancel.is_cancelled() {
                break;
            }
            block.push(event);
            if block.len() == crate::events::BLOCK_EVENTS {
                env.bus.publish_all(std::mem::take(&mut block));
            }
        }
        if !block.is_empty() {
            env.bus.publish_all(block);
        }
        return;
    }
    for event in events {
        if let Some(t) = event.t_s() {
            if !env.pacer.wait_until(t) {
                return;
            }
        }
        env.bus.publish(event);
    }
}

/// Merges two time-ordered event lists into one (stable: ties keep `a` first).
pub fn merge_by_time(a: Vec<PlantEvent>, b: Vec<PlantEvent>) -> Vec<PlantEvent> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.t_s().unwrap_or(f64::NEG_INFINITY) <= y.t_s().unwrap_or(f64::NEG_INFINITY),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        out.push(if take_a { a.next() } else { b.next() }.expect("peeked"));
    }
}

/// Products flowing between machines: a channel (threaded) or a list (inline).
pub enum Flow<T> {
    /// Batches arrive over a bounded channel.
    Threaded(Receiver<Token<T>>),
    /// All batches, in order.
    Inline(Vec<Token<T>>),
}

/// Batches in flight between two neighbouring machines (the bounded queue between them).
pub const QUEUE_BETWEEN_MACHINES: usize = 2;

/// Runs machines on threads of a scope, or inline.
pub struct Exec<'scope, 'env> {
    /// The thread scope; `None` = inline.
    pub scope: Option<&'scope Scope<'scope, 'env>>,
    /// Run settings.
    pub env: &'env RunEnv,
}

impl<'scope, 'env> Exec<'scope, 'env> {
    /// Applies `step` to every batch of `input`, on its own thread when threaded. A panic
    /// inside `step` is recorded as the run's failure and cancels the run.
    pub fn map<I: Send + 'scope, O: Send + 'scope>(
        &self,
        name: String,
        input: Flow<I>,
        mut step: impl FnMut(&RunEnv, Token<I>) -> Token<O> + Send + 'scope,
    ) -> Flow<O> {
        let env = self.env;
        let mut guarded = move |token: Token<I>| -> Option<Token<O>> {
            if env.pacer.cancel_token().is_cancelled() {
                return None;
            }
            match catch_unwind(AssertUnwindSafe(|| step(env, token))) {
                Ok(t) => Some(t),
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panic".into());
                    env.failure.lock().expect("failure lock").get_or_insert((name.clone(), msg));
                    env.pacer.cancel_token().cancel();
                    None
                }
            }
        };
        match (self.scope, input) {
            (Some(scope), Flow::Threaded(rx)) => {
                let (tx, out) = sync_channel(QUEUE_BETWEEN_MACHINES);
                scope.spawn(move || {
                    for token in rx {
                        match guarded(token) {
                            Some(t) => {
                                if tx.send(t).is_err() {
                                    break;
                                }
                            }
                            None => break,
                        }
                    }
                });
                Flow::Threaded(out)
            }
            (_, Flow::Inline(tokens)) => {
                let mut out = Vec::with_capacity(tokens.len());
                for t in tokens {
                    match guarded(t) {
                        Some(t) => out.push(t),
                        None => break,
                    }
                }
                Flow::Inline(out)
            }
            (None, Flow::Threaded(rx)) => Flow::Inline(rx.into_iter().filter_map(guarded).collect()),
        }
    }

    /// One machine performing stage `S`.
    pub fn stage<S>(&self, machine: Machine<S>, input: Flow<S::Input>) -> Flow<S::Output>
    where
        S: Stage + 'scope,
        S::Params: Send,
        S::Input: Send + 'scope,
        S::Output: Send + 'scope,
    {
        let name = S::KIND.machine_id(machine.line);
        let mut machine = machine;
        self.map(name, input, move |env, token| machine.process(env, token))
    }

    /// Pairs two flows batch by batch (both arrive in batch order); the pair is ready when
    /// the later of the two is.
    pub fn join<A: Send + 'scope, B: Send + 'scope, O: Send + 'scope>(
        &self,
        a: Flow<A>,
        b: Flow<B>,
        combine: impl Fn(A, B) -> O + Send + 'scope,
    ) -> Flow<O> {
        match (self.scope, a, b) {
            (Some(scope), a, b) => {
                let (tx, out) = sync_channel(QUEUE_BETWEEN_MACHINES);
                scope.spawn(move || {
                    let (mut a, mut b) = (into_iter(a), into_iter(b));
                    while let (Some(x), Some(y)) = (a.next(), b.next()) {
                        if tx.send(pair(x, y, &combine)).is_err() {
                            break;
                        }
                    }
                });
                Flow::Threaded(out)
            }
            (None, a, b) => Flow::Inline(into_iter(a).zip(into_iter(b)).map(|(x, y)| pair(x, y, &combine)).collect()),
        }
    }
}

fn pair<A, B, O>(x: Token<A>, y: Token<B>, combine: &impl Fn(A, B) -> O) -> Token<O> {
    debug_assert_eq!(x.batch, y.batch);
    Token { batch: x.batch, ready_t_s: x.ready_t_s.max(y.ready_t_s), product: combine(x.product, y.product) }
}

fn into_iter<'a, T: Send + 'a>(f: Flow<T>) -> Box<dyn Iterator<Item = Token<T>> + Send + 'a> {
    match f {
        Flow::Threaded(rx) => Box::new(rx.into_iter()),
        Flow::Inline(v) => Box::new(v.into_iter()),
    }
}
