//! Runs: the registry, the bounded queue in front of the plant, the worker that runs one
//! plant at a time, and what each run records while it runs (progress per machine, final
//! results, cell grades) and streams live.
//!
//! Every run writes `DATA-DIR/runs/<run id>/` through [`SeedLayoutWriter`], fed by a
//! `Delivery::Reliable` subscription (persistence never loses an event). The same thread then
//! updates the run's state and sends live JSON events over a broadcast channel whose slow
//! receivers skip events: a viewer never slows the plant. Samples are decimated for the live
//! view to at most one per machine every [`LIVE_SAMPLE_INTERVAL`].
//!
//! The same subscriber feeds the run registry ([`cellfab_registry`]): rows are written in
//! batches on their own task, and the plant waits while the database is behind. Every run is
//! recorded there from its submission on; at start-up the runs of earlier server processes
//! are read back (those that were still queued or running become `interrupted`).

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::status::StatusFeed;
use axum::http::StatusCode;
use cellfab_model::{Line, StageKind};
use cellfab_plant::events::{PlantEvent, DEFAULT_SUBSCRIBER_CAPACITY};
use cellfab_plant::{CancelToken, Delivery, Plant, PlantError};
use cellfab_registry::{BatchSink, EventRows, Registry, RunRecord, Series, WriterOptions};
use cellfab_store::run_tables::{machine_kpi_rows, RunTables};
use cellfab_store::tables::OutputFormats;
use cellfab_store::SeedLayoutWriter;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};

/// Live events buffered per viewer before it starts skipping.
pub const LIVE_BUFFER: usize = 1024;
/// Shortest wall time between two live samples of one machine.
pub const LIVE_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Longest a reset waits for a cancelled run to stop.
const RESET_WAIT: Duration = Duration::from_secs(60);

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting in the queue.
    Queued,
    /// The plant is running it.
    Running,
    /// Every batch went through; the run folder and its manifest are complete.
    Finished,
    /// A machine or the file writer failed.
    Failed,
    /// Cancelled (by `POST /runs/{id}/cancel` or `POST /reset`).
    Cancelled,
    /// Queued or running when its server process stopped (found so at the next start).
    Interrupted,
}

impl RunStatus {
    /// The name the API and the registry use.
    pub fn name(self) -> &'static str {
        status_word(self)
    }

    /// Parses a stored name (an unknown one reads as `interrupted`).
    pub fn from_name(name: &str) -> Self {
        match name {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "finished" => RunStatus::Finished,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            _ => RunStatus::Interrupted,
        }
    }
}

impl RunStatus {
    /// True once the run can change no more.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Finished | RunStatus::Failed | RunStatus::Cancelled | RunStatus::Interrupted)
    }
}

/// Progress of one machine in a run.
#[derive(Clone, Debug, Serialize)]
pub struct MachineProgress {
    /// Machine id (`MC_Coat_Anode`).
    pub machine_id: String,
    /// `Anode`, `Cathode` or `Cell`.
    pub line: &'static str,
    /// Stage name (`coating`).
    pub stage: &'static str,
    /// `idle`, `on` (working on `batch`) or `off`.
    pub state: &'static str,
    /// Batch being worked on or last worked on.
    pub batch: Option<u32>,
    /// Batches this machine has finished.
    pub batches_done: u32,
    /// Samples this machine has produced.
    pub samples: u64,
    /// Plant timestamp at which the machine last finished a batch.
    pub completed_at: Option<String>,
}

/// The final result of one machine and batch.
#[derive(Clone, Debug, Serialize)]
pub struct StageResult {
    /// Machine id.
    pub machine_id: String,
    /// Batch.
    pub batch: u32,
    /// Passed the stage's acceptance.
    pub accepted: bool,
    /// Plant timestamp of the end.
    pub timestamp: String,
    /// Stage duration [s].
    pub duration_s: f64,
    /// Samples produced.
    pub samples: u64,
    /// Key values (unit-suffixed names).
    pub summary: BTreeMap<String, f64>,
}

/// Cell results of a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CellSummary {
    /// Cells finished.
    pub count: u64,
    /// Cells per grade.
    pub grades: BTreeMap<String, u64>,
}

/// What changes while a run runs.
#[derive(Debug)]
struct RunState {
    status: RunStatus,
    started_at: Option<String>,
    finished_at: Option<String>,
    error: Option<String>,
    machines: Vec<MachineProgress>,
    results: Vec<StageResult>,
    cells: CellSummary,
    samples: u64,
    alarms: u64,
    plant_end_t_s: Option<f64>,
    folder: Option<PathBuf>,
    kpis: Option<Arc<Value>>,
}

/// One live event for viewers of a run.
#[derive(Clone, Debug)]
pub struct LiveEvent {
    /// The JSON text.
    pub json: Arc<str>,
    /// True for the run's last event: viewers may close after it.
    pub last: bool,
}

/// A submitted run.
pub struct Run {
    /// Run id, also the name of its folder.
    pub id: String,
    /// `api` or `start-both`.
    pub source: String,
    seed: u64,
    batches: u32,
    speed: String,
    start: String,
    created_at: String,
    epoch_us: i64,
    cancel: CancelToken,
    state: Mutex<RunState>,
    live: broadcast::Sender<LiveEvent>,
    done: watch::Sender<bool>,
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn all_machines() -> Vec<MachineProgress> {
    let electrode = [Line::Anode, Line::Cathode].into_iter().flat_map(|l| StageKind::ELECTRODE.map(|s| (l, s)));
    let cell = StageKind::CELL.map(|s| (Line::Cell, s));
    electrode
        .chain(cell)
        .map(|(line, stage)| MachineProgress {
            machine_id: stage.machine_id(line),
            line: line.title(),
            stage: stage.name(),
            state: "idle",
            batch: None,
            batches_done: 0,
            samples: 0,
            completed_at: None,
        })
        .collect()
}

impl Run {
    fn new(id: String, source: &'static str, plant: &Plant) -> Self {
        let p = &plant.config().plant;
        Self {
            id,
            source: source.to_string(),
            seed: p.seed,
            batches: p.batches,
            speed: p.speed.to_string(),
            start: plant.epoch().to_string(),
            created_at: now(),
            epoch_us: plant.epoch().as_microsecond(),
            cancel: plant.cancel_token(),
            state: Mutex::new(RunState {
                status: RunStatus::Queued,
                started_at: None,
                finished_at: None,
                error: None,
                machines: all_machines(),
                results: Vec::new(),
                cells: CellSummary::default(),
                samples: 0,
                alarms: 0,
                plant_end_t_s: None,
                folder: None,
                kpis: None,
            }),
            live: broadcast::channel(LIVE_BUFFER).0,
            done: watch::channel(false).0,
        }
    }

    /// A run of an earlier server process, as the registry holds it.
    async fn restored(record: RunRecord, registry: &Registry) -> Result<Self, cellfab_registry::RegistryError> {
        let results = registry.stage_results(&record.id).await?;
        let grades = registry.cell_grades(&record.id).await?;
        let counts = registry.counts(&record.id).await?;
        let mut machines = all_machines();
        let mut stage_results = Vec::with_capacity(results.len());
        for r in results {
            if let Some(m) = machines.iter_mut().find(|m| m.machine_id == r.machine_id) {
                m.state = "off";
                m.batch = Some(r.batch);
                m.batches_done += 1;
                m.samples += r.samples;
                m.completed_at = Some(r.timestamp.clone());
            }
            let summary = match r.summary {
                Value::Object(m) => m.into_iter().filter_map(|(k, v)| Some((k, v.as_f64()?))).collect(),
                _ => BTreeMap::new(),
            };
            stage_results.push(StageResult {
                machine_id: r.machine_id,
                batch: r.batch,
                accepted: r.accepted,
                timestamp: r.timestamp,
                duration_s: r.duration_s,
                samples: r.samples,
                summary,
            });
        }
        let cells = CellSummary { count: grades.iter().map(|g| g.1).sum(), grades: grades.into_iter().collect() };
        let epoch = record.plant_start.parse::<jiff::Timestamp>().unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let samples = machines.iter().map(|m| m.samples).sum();
        let run = Self {
            id: record.id,
            source: record.source,
            seed: record.seed,
            batches: record.batches,
            speed: record.speed,
            start: record.plant_start,
            created_at: record.created_at,
            epoch_us: epoch.as_microsecond(),
            cancel: CancelToken::default(),
            state: Mutex::new(RunState {
                status: RunStatus::from_name(&record.status),
                started_at: record.started_at,
                finished_at: record.finished_at,
                error: record.error,
                machines,
                results: stage_results,
                cells,
                samples,
                alarms: counts.alarms,
                plant_end_t_s: record.plant_end_t_s,
                folder: record.folder.map(PathBuf::from),
                kpis: record.kpis.map(Arc::new),
            }),
            live: broadcast::channel(LIVE_BUFFER).0,
            done: watch::channel(true).0,
        };
        Ok(run)
    }

    /// The registry's record of a new run.
    fn record(&self, plant: &Plant) -> RunRecord {
        RunRecord {
            id: self.id.clone(),
            source: self.source.clone(),
            status: RunStatus::Queued.name().into(),
            seed: self.seed,
            batches: self.batches,
            speed: self.speed.clone(),
            plant_start: self.start.clone(),
            created_at: self.created_at.clone(),
            started_at: None,
            finished_at: None,
            error: None,
            plant_end_t_s: None,
            folder: None,
            config: serde_json::to_value(plant.config()).unwrap_or_default(),
            kpis: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunState> {
        self.state.lock().expect("run state lock")
    }

    /// Current status.
    pub fn status(&self) -> RunStatus {
        self.lock().status
    }

    /// The run folder, once created.
    pub fn folder(&self) -> Option<PathBuf> {
        self.lock().folder.clone()
    }

    /// Machine progress (id, completed, timestamp of completion).
    pub fn machines(&self) -> Vec<MachineProgress> {
        self.lock().machines.clone()
    }

    /// Error text of a failed run.
    pub fn error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    /// Plant KPIs (MODELS.md §14), once the run has run to its end.
    pub fn kpis(&self) -> Option<Arc<Value>> {
        self.lock().kpis.clone()
    }

    /// Requests cancellation (a queued run is dropped when its turn comes).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits until the run is finished, failed or cancelled.
    pub async fn wait(&self) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }

    /// A receiver of the run's live events and, taken after subscribing, its state.
    pub fn watch(&self) -> (broadcast::Receiver<LiveEvent>, Value) {
        let rx = self.live.subscribe();
        (rx, self.view(true))
    }

    /// The run as JSON: with `detail`, progress per machine, results and cells.
    pub fn view(&self, detail: bool) -> Value {
        let s = self.lock();
        let total = (s.machines.len() as u64 * self.batches as u64).max(1);
        let done: u64 = s.machines.iter().map(|m| m.batches_done as u64).sum();
        let mut v = json!({
            "id": self.id,
            "source": self.source,
            "status": s.status,
            "seed": self.seed,
            "batches": self.batches,
            "speed": self.speed,
            "start": self.start,
            "created_at": self.created_at,
            "started_at": s.started_at,
            "finished_at": s.finished_at,
            "error": s.error,
            "progress": done as f64 / total as f64,
            "samples": s.samples,
            "alarms": s.alarms,
            "cells": s.cells,
            "plant_end_t_s": s.plant_end_t_s,
        });
        if detail {
            v["machines"] = serde_json::to_value(&s.machines).unwrap_or_default();
            v["results"] = serde_json::to_value(&s.results).unwrap_or_default();
            v["kpis"] = s.kpis.as_deref().cloned().unwrap_or(Value::Null);
        }
        v
    }

    fn send(&self, json: Value, last: bool) {
        // No viewer is not an error.
        let _ = self.live.send(LiveEvent { json: Arc::from(json.to_string()), last });
    }

    fn set_running(&self, folder: PathBuf) {
        {
            let mut s = self.lock();
            s.status = RunStatus::Running;
            s.started_at = Some(now());
            s.folder = Some(folder);
        }
        self.send(json!({"type": "run_state", "run_id": self.id, "status": RunStatus::Running}), false);
    }

    fn end(
        &self,
        status: RunStatus,
        error: Option<String>,
        plant_end_t_s: Option<f64>,
        feed: &StatusFeed,
        m: &Metrics,
    ) {
        {
            let mut s = self.lock();
            s.status = status;
            if s.finished_at.is_none() {
                s.finished_at = Some(now());
            }
            s.error = error.clone();
            s.plant_end_t_s = plant_end_t_s;
        }
        let counter = match status {
            RunStatus::Finished => &m.runs_finished,
            RunStatus::Cancelled => &m.runs_cancelled,
            _ => &m.runs_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match &error {
            Some(e) => feed.push(&format!("Error: run {} {}: {e}", self.id, status_word(status))),
            None => feed.push(&format!("Run {} {}", self.id, status_word(status))),
        }
        self.send(json!({"type": "run_state", "run_id": self.id, "status": status, "error": error}), true);
        self.done.send_replace(true);
    }
}

fn status_word(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Queued => "queued",
        RunStatus::Running => "running",
        RunStatus::Finished => "finished",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
        RunStatus::Interrupted => "interrupted",
    }
}

struct Job {
    run: Arc<Run>,
    plant: Plant,
    formats: OutputFormats,
}

/// Where runs are recorded and how.
#[derive(Clone)]
pub struct Recording {
    /// The registry.
    pub registry: Registry,
    /// Time series kept in the registry.
    pub series: Series,
    /// Batching of the registry writer.
    pub writer: WriterOptions,
}

/// What the worker shares with each run it executes.
#[derive(Clone)]
struct Context {
    runs_dir: PathBuf,
    feed: Arc<StatusFeed>,
    metrics: Arc<Metrics>,
    hook: Option<crate::PlantHook>,
    recording: Recording,
}

/// The registry of runs and the queue in front of the plant.
pub struct Runs {
    runs_dir: PathBuf,
    list: Mutex<Vec<Arc<Run>>>,
    queue: mpsc::Sender<Job>,
    queue_capacity: usize,
    counter: AtomicU64,
    feed: Arc<StatusFeed>,
    metrics: Arc<Metrics>,
    registry: Registry,
}

impl Runs {
    /// Reads the runs of earlier server processes from the registry (marking those that were
    /// queued or running `interrupted`), then starts the worker on the current tokio runtime.
    pub async fn start(
        runs_dir: PathBuf,
        queue_capacity: usize,
        feed: Arc<StatusFeed>,
        metrics: Arc<Metrics>,
        hook: Option<crate::PlantHook>,
        recording: Recording,
    ) -> Result<Arc<Self>, cellfab_registry::RegistryError> {
        let registry = recording.registry.clone();
        let unfinished: Vec<(String, PathBuf)> = registry
            .runs()
            .await?
            .into_iter()
            .filter(|r| matches!(RunStatus::from_name(&r.status), RunStatus::Queued | RunStatus::Running))
            .filter_map(|r| Some((r.id, PathBuf::from(r.folder?))))
            .collect();
        registry.mark_interrupted(&now()).await?;
        // a killed process leaves the hidden temporary files it was writing; only complete
        // files stay in the folders of interrupted runs
        for (id, folder) in unfinished {
            match cellfab_store::atomic::remove_temp_files(&folder) {
                Ok(0) => {}
                Ok(n) => feed.push(&format!("Run {id} interrupted: removed {n} unfinished temporary file(s)")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => feed.push(&format!("Error: run {id}: cannot clean {}: {e}", folder.display())),
            }
        }
        let mut restored = Vec::new();
        for record in registry.runs().await? {
            restored.push(Arc::new(Run::restored(record, &registry).await?));
        }
        let (tx, rx) = mpsc::channel(queue_capacity.max(1));
        let runs = Arc::new(Self {
            runs_dir: runs_dir.clone(),
            list: Mutex::new(restored),
            queue: tx,
            queue_capacity: queue_capacity.max(1),
            counter: AtomicU64::new(0),
            feed: feed.clone(),
            metrics: metrics.clone(),
            registry,
        });
        tokio::spawn(worker(rx, Context { runs_dir, feed, metrics, hook, recording }));
        Ok(runs)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Run>>> {
        self.list.lock().expect("run list lock")
    }

    /// Queues a validated plant with the default outputs (the seed layout) and records it
    /// in the registry. A full queue is 429 and changes nothing.
    pub async fn submit(&self, plant: Plant, source: &'static str) -> Result<Arc<Run>, ApiError> {
        self.submit_with_formats(plant, source, OutputFormats::default()).await
    }

    /// Queues a validated plant that writes the given outputs (seed layout and/or tables) and
    /// records it in the registry. A full queue is 429 and changes nothing.
    pub async fn submit_with_formats(
        &self,
        plant: Plant,
        source: &'static str,
        formats: OutputFormats,
    ) -> Result<Arc<Run>, ApiError> {
        let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
        let seed = plant.config().plant.seed;
        let id = loop {
            let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
            let id = format!("run-{stamp}-s{seed}-{n}");
            if !self.runs_dir.join(&id).exists() && !self.lock().iter().any(|r| r.id == id) {
                break id;
            }
        };
        let run = Arc::new(Run::new(id, source, &plant));
        self.registry
            .insert_run(&run.record(&plant))
            .await
            .map_err(|e| ApiError::internal(format!("cannot record the run: {e}")))?;
        let refused = {
            let mut list = self.lock();
            match self.queue.try_send(Job { run: run.clone(), plant, formats }) {
                Ok(()) => {
                    list.push(run.clone());
                    None
                }
                Err(mpsc::error::TrySendError::Full(_)) => Some(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "queue_full",
                    format!(
                        "the run queue is full ({} runs waiting); retry when a run has finished",
                        self.queue_capacity
                    ),
                )),
                Err(mpsc::error::TrySendError::Closed(_)) => Some(ApiError::internal("the run worker has stopped")),
            }
        };
        if let Some(e) = refused {
            self.registry
                .delete_run(&run.id)
                .await
                .map_err(|e| ApiError::internal(format!("cannot forget a refused run: {e}")))?;
            return Err(e);
        }
        self.metrics.runs_submitted.fetch_add(1, Ordering::Relaxed);
        self.feed.push(&format!("Run {} queued ({} batch(es), seed {seed})", run.id, run.batches));
        Ok(run)
    }

    /// The registry behind the runs.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A run by id.
    pub fn get(&self, id: &str) -> Result<Arc<Run>, ApiError> {
        self.lock()
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no run with id \"{id}\"")).field("id"))
    }

    /// Every run, newest first.
    pub fn list(&self) -> Vec<Arc<Run>> {
        self.lock().iter().rev().cloned().collect()
    }

    /// Runs waiting in the queue.
    pub fn queued(&self) -> usize {
        self.lock().iter().filter(|r| r.status() == RunStatus::Queued).count()
    }

    /// The newest run that finished.
    pub fn latest_finished(&self) -> Option<Arc<Run>> {
        self.lock().iter().rev().find(|r| r.status() == RunStatus::Finished).cloned()
    }

    /// Cancels every run, waits for them to stop, forgets them (in the registry too) and
    /// deletes their folders. Returns how many runs were cleared.
    pub async fn reset(&self) -> Result<usize, ApiError> {
        let runs: Vec<Arc<Run>> = std::mem::take(&mut *self.lock());
        for run in &runs {
            run.cancel();
        }
        for run in &runs {
            if tokio::time::timeout(RESET_WAIT, run.wait()).await.is_err() {
                return Err(ApiError::internal(format!("run {} did not stop within {RESET_WAIT:?}", run.id)));
            }
        }
        for run in &runs {
            self.registry
                .delete_run(&run.id)
                .await
                .map_err(|e| ApiError::internal(format!("cannot delete run {} from the registry: {e}", run.id)))?;
            if let Some(folder) = run.folder() {
                match tokio::fs::remove_dir_all(&folder).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(ApiError::internal(format!("cannot delete {}: {e}", folder.display()))),
                }
            }
        }
        Ok(runs.len())
    }
}

/// Records the end of a run in the registry, then in memory (where waiting clients see it).
/// A registry failure is reported on the status feed: the run folder still holds the full
/// record.
async fn finish(run: &Run, status: RunStatus, error: Option<String>, plant_end_t_s: Option<f64>, cx: &Context) {
    let finished_at = now();
    let registry = &cx.recording.registry;
    if let Err(e) = registry.set_ended(&run.id, status.name(), &finished_at, error.as_deref(), plant_end_t_s).await {
        cx.feed.push(&format!("Error: run {}: cannot record its end in the registry: {e}", run.id));
    }
    if let Some(kpis) = run.kpis() {
        if let Err(e) = registry.set_kpis(&run.id, &kpis).await {
            cx.feed.push(&format!("Error: run {}: cannot record its KPIs in the registry: {e}", run.id));
        }
    }
    run.lock().finished_at = Some(finished_at);
    run.end(status, error, plant_end_t_s, &cx.feed, &cx.metrics);
}

async fn worker(mut rx: mpsc::Receiver<Job>, cx: Context) {
    while let Some(job) = rx.recv().await {
        let run = job.run.clone();
        if run.cancel.is_cancelled() {
            finish(&run, RunStatus::Cancelled, None, None, &cx).await;
            continue;
        }
        let cx2 = cx.clone();
        let handle = tokio::runtime::Handle::current();
        if let Err(e) = tokio::task::spawn_blocking(move || execute(job, &cx2, handle)).await {
            finish(&run, RunStatus::Failed, Some(format!("the run crashed: {e}")), None, &cx).await;
        }
    }
}

/// Runs one plant to its end, writing its folder (and its tables) and its registry rows;
/// blocking.
fn execute(job: Job, cx: &Context, handle: tokio::runtime::Handle) {
    let Job { run, plant, formats } = job;
    let (feed, metrics, registry) = (&cx.feed, &cx.metrics, &cx.recording.registry);
    let end = |status, error: Option<String>, plant_end| handle.block_on(finish(&run, status, error, plant_end, cx));
    let wall = Instant::now();
    let created = SeedLayoutWriter::create(&cx.runs_dir, &run.id, plant.epoch())
        .and_then(|w| if formats.seed_json { Ok(w) } else { w.without_sample_files() })
        .map_err(|e| e.to_string())
        .and_then(|w| match formats.tables.as_slice() {
            [] => Ok((w, None)),
            f => RunTables::create(w.run_dir(), f, plant.epoch()).map(|t| (w, Some(t))).map_err(|e| e.to_string()),
        });
    let (mut writer, mut tables) = match created {
        Ok(x) => x,
        Err(e) => {
            let not_a_folder = if cx.runs_dir.exists() && !cx.runs_dir.is_dir() { " (it is not a folder)" } else { "" };
            let msg = format!("cannot create the run folder in {}{not_a_folder}: {e}", cx.runs_dir.display());
            end(RunStatus::Failed, Some(msg), None);
            return;
        }
    };
    let folder = writer.run_dir().to_path_buf();
    if let Err(e) = handle.block_on(registry.set_running(&run.id, &now(), &folder.to_string_lossy())) {
        end(RunStatus::Failed, Some(format!("cannot record the run start in the registry: {e}")), None);
        return;
    }
    run.set_running(folder.clone());
    let events = plant.bus().subscribe(DEFAULT_SUBSCRIBER_CAPACITY, Delivery::Reliable);
    let cancel = plant.cancel_token();
    let mut rows = EventRows::new(&run.id, plant.epoch(), cx.recording.series);
    let mut sink: BatchSink =
        cellfab_registry::writer::spawn(registry.clone(), cx.recording.writer.clone(), handle.clone());
    let handler = {
        let (run, feed, metrics) = (run.clone(), feed.clone(), metrics.clone());
        std::thread::spawn(move || {
            let mut write_error: Option<String> = None;
            let mut store_error: Option<String> = None;
            let mut recorder = Recorder::default();
            for event in events.rx {
                if write_error.is_none() {
                    let written = writer.handle(&event).map_err(|e| e.to_string()).and_then(|()| match &mut tables {
                        Some(t) => t.handle(&event).map_err(|e| e.to_string()),
                        None => Ok(()),
                    });
                    if let Err(e) = written {
                        write_error = Some(format!("writing the run folder: {e}"));
                        cancel.cancel();
                    }
                }
                if store_error.is_none() {
                    rows.rows(&event, sink.buffer());
                    // rows go to the registry only once their files are on disk, so that
                    // after a crash every stored row has its file
                    if sink.is_due() && write_error.is_none() {
                        if let Err(e) = writer.sync() {
                            write_error = Some(format!("writing the run folder: {e}"));
                            cancel.cancel();
                        }
                    }
                    if let Err(e) = sink.flush_if_due() {
                        store_error = Some(format!("writing the registry: {e}"));
                        cancel.cancel();
                    }
                }
                recorder.observe(&run, &event, &feed, &metrics);
            }
            if store_error.is_none() {
                if let Err(e) = sink.finish() {
                    store_error = Some(format!("writing the registry: {e}"));
                }
            }
            (writer, tables, write_error.or(store_error))
        })
    };
    if let Some(hook) = cx.hook.as_ref() {
        (hook.0)(&plant);
    }
    let report = plant.run();
    let (mut writer, tables, write_error) = match handler.join() {
        Ok(x) => x,
        Err(_) => {
            end(RunStatus::Failed, Some("the file writer crashed".into()), None);
            return;
        }
    };
    let (status, error, plant_end) = match (report, write_error) {
        (_, Some(e)) => (RunStatus::Failed, Some(e), None),
        (Ok(report), None) => {
            let config = serde_json::to_value(plant.config()).unwrap_or_default();
            let written = match tables {
                Some(t) => t.finish(&machine_kpi_rows(&report)).map(|entries| writer.add_tables(entries)),
                None => Ok(()),
            };
            match written.map_err(|e| e.to_string()).and_then(|()| {
                writer
                    .finish(report.seed, &report.start, report.end_t_s, config, wall.elapsed().as_secs_f64())
                    .map_err(|e| e.to_string())
            }) {
                Ok(_) => (RunStatus::Finished, None, Some(report.end_t_s)),
                Err(e) => (RunStatus::Failed, Some(format!("writing the tables and the manifest: {e}")), None),
            }
        }
        (Err(PlantError::Cancelled), None) => (RunStatus::Cancelled, None, None),
        (Err(e), None) => (RunStatus::Failed, Some(e.to_string()), None),
    };
    if status != RunStatus::Finished {
        // what a failed write left half-done is not part of the run
        let _ = cellfab_store::atomic::remove_temp_files(&folder);
    }
    end(status, error, plant_end);
}

/// Turns plant events into run state, status messages and live JSON.
#[derive(Default)]
struct Recorder {
    last_live_sample: HashMap<String, Instant>,
}

impl Recorder {
    fn observe(&mut self, run: &Run, event: &PlantEvent, feed: &StatusFeed, metrics: &Metrics) {
        let ts = |t_s: f64| cellfab_store::seed::timestamp(run.epoch_us, t_s);
        if let Some(message) = event.message() {
            feed.push(&message);
        }
        let live = match event {
            PlantEvent::RunStarted { seed, batches, start } => {
                json!({"type": "run_started", "seed": seed, "batches": batches, "start": start})
            }
            PlantEvent::BatchQueued { batch } => json!({"type": "batch_queued", "batch": batch}),
            PlantEvent::MachineOn { t_s, machine } => {
                let mut s = run.lock();
                if let Some(m) = s.machines.iter_mut().find(|m| m.machine_id == machine.machine_id) {
                    m.state = "on";
                    m.batch = Some(machine.batch);
                }
                json!({"type": "machine_on", "machine_id": machine.machine_id, "batch": machine.batch,
                       "t_s": t_s, "timestamp": ts(*t_s)})
            }
            PlantEvent::MachineOff { t_s, machine } => {
                let mut s = run.lock();
                if let Some(m) = s.machines.iter_mut().find(|m| m.machine_id == machine.machine_id) {
                    m.state = "off";
                }
                json!({"type": "machine_off", "machine_id": machine.machine_id, "batch": machine.batch,
                       "t_s": t_s, "timestamp": ts(*t_s)})
            }
            PlantEvent::Sample { t_s, machine, index, sample } => {
                {
                    let mut s = run.lock();
                    s.samples += 1;
                    if let Some(m) = s.machines.iter_mut().find(|m| m.machine_id == machine.machine_id) {
                        m.samples += 1;
                    }
                }
                metrics.samples.fetch_add(1, Ordering::Relaxed);
                let due = self
                    .last_live_sample
                    .get(&machine.machine_id)
                    .is_none_or(|last| last.elapsed() >= LIVE_SAMPLE_INTERVAL);
                if !due {
                    return;
                }
                self.last_live_sample.insert(machine.machine_id.clone(), Instant::now());
                json!({"type": "sample", "machine_id": machine.machine_id, "batch": machine.batch,
                       "index": index, "t_s": t_s, "timestamp": ts(*t_s), "values": sample.to_json()})
            }
            PlantEvent::Alarm { batch, alarm } => {
                run.lock().alarms += 1;
                json!({"type": "alarm", "batch": batch, "alarm": serde_json::to_value(alarm.as_ref()).unwrap_or_default()})
            }
            PlantEvent::StageFinished { t_s, machine, duration_s, samples, result, .. } => {
                let summary: BTreeMap<String, f64> =
                    result.summary().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                let progress = {
                    let mut s = run.lock();
                    if let Some(m) = s.machines.iter_mut().find(|m| m.machine_id == machine.machine_id) {
                        m.batches_done += 1;
                        m.completed_at = Some(ts(*t_s));
                    }
                    s.results.push(StageResult {
                        machine_id: machine.machine_id.clone(),
                        batch: machine.batch,
                        accepted: result.accepted(),
                        timestamp: ts(*t_s),
                        duration_s: *duration_s,
                        samples: *samples,
                        summary: summary.clone(),
                    });
                    let total = (s.machines.len() as u64 * run.batches as u64).max(1);
                    s.machines.iter().map(|m| m.batches_done as u64).sum::<u64>() as f64 / total as f64
                };
                json!({"type": "stage_finished", "machine_id": machine.machine_id, "batch": machine.batch,
                       "t_s": t_s, "timestamp": ts(*t_s), "duration_s": duration_s, "samples": samples,
                       "accepted": result.accepted(), "summary": summary, "progress": progress})
            }
            PlantEvent::CellResults { batch, rows } => {
                let mut s = run.lock();
                s.cells.count += rows.len() as u64;
                for row in rows.iter() {
                    let grade = row.get("grade").and_then(Value::as_str).unwrap_or("unknown").to_string();
                    *s.cells.grades.entry(grade).or_default() += 1;
                }
                json!({"type": "cell_results", "batch": batch, "cells": rows.len()})
            }
            PlantEvent::BatchFinished { batch, t_s } => {
                json!({"type": "batch_finished", "batch": batch, "t_s": t_s, "timestamp": ts(*t_s)})
            }
            PlantEvent::Kpis { kpis } => {
                let kpis = serde_json::to_value(kpis.as_ref()).unwrap_or_default();
                run.lock().kpis = Some(Arc::new(kpis.clone()));
                json!({"type": "kpis", "kpis": kpis})
            }
            PlantEvent::FaultLabel { label } => {
                json!({"type": "fault_label", "label": label.as_ref(), "timestamp": ts(label.onset_t_s)})
            }
            PlantEvent::RunFinished { t_s, cancelled } => {
                json!({"type": "run_finished", "t_s": t_s, "cancelled": cancelled})
            }
        };
        let mut live = live;
        live["run_id"] = Value::from(run.id.as_str());
        if let Some(message) = event.message() {
            live["message"] = Value::from(message);
        }
        run.send(live, false);
    }
}
