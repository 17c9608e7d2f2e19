//! cellfab-plant: the factory around the models. It reads the configuration, runs the anode
//! and cathode lines in parallel and the cell line after them, pipelines batches through the
//! machines, derives every random stream from one master seed, paces plant time against the
//! wall clock, and publishes everything that happens as one stream of typed events.
//!
//! ```text
//!   PlantConfig ──► Plant::new (validate) ──► Plant::run ──► chain (lines, machines)
//!                                                  │
//!                                                  └──► EventBus ──► files, live views, brokers …
//! ```
//!
//! The plant knows nothing of files or HTTP: sinks subscribe to the [`events::EventBus`].

pub mod chain;
pub mod config;
pub mod engine;
pub mod error;
pub mod events;
pub mod faults;
pub mod flat;
pub mod kpi;
pub mod pacing;
pub mod parallel;
pub mod skip_fields;

pub use config::PlantConfig;
pub use error::PlantError;
pub use events::{Delivery, EventBus, PlantEvent, Subscription};
pub use kpi::{MachineKpis, PlantKpis};
pub use pacing::{CancelToken, Speed};
pub use parallel::Threads;

use engine::{Exec, Flow, RunEnv, StageStat, Token};
use pacing::Pacer;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Adds `root_cause` to a cell row: `"none"`, or the codes of the fault labels that touched
/// the cell (its `fault_labels`), in label order, joined by `+`.
fn with_root_cause(
    mut row: serde_json::Value,
    labels: &Mutex<Vec<cellfab_model::fault::FaultLabel>>,
) -> serde_json::Value {
    let ids: Vec<u64> = row
        .get("fault_labels")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
        .unwrap_or_default();
    let labels = labels.lock().expect("labels lock");
    let mut codes: Vec<&str> = Vec::new();
    for id in ids {
        if let Some(l) = labels.iter().find(|l| l.label_id as u64 == id) {
            if !codes.contains(&l.code.as_str()) {
                codes.push(l.code.as_str());
            }
        }
    }
    let cause = if codes.is_empty() { "none".to_string() } else { codes.join("+") };
    if let serde_json::Value::Object(m) = &mut row {
        m.insert("root_cause".into(), serde_json::Value::String(cause));
    }
    row
}

/// A validated plant, ready to run once.
pub struct Plant {
    config: PlantConfig,
    epoch: jiff::Timestamp,
    bus: Arc<EventBus>,
    cancel: CancelToken,
}

/// What a finished run reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunReport {
    /// Master seed.
    pub seed: u64,
    /// Plant epoch (plant time 0).
    pub start: String,
    /// Batches run.
    pub batches: u32,
    /// Plant time at which the last batch left the last machine [s].
    pub end_t_s: f64,
    /// Wall time of the whole run [s].
    pub wall_s: f64,
    /// One entry per machine and batch, in chain order.
    pub stages: Vec<StageStat>,
    /// Plant KPIs (MODELS.md §14), from plant times only.
    pub kpis: PlantKpis,
}

impl Plant {
    /// Validates the configuration; nothing runs and nothing is written on error.
    /// `now` is used when the configuration gives no start instant.
    pub fn new(config: PlantConfig, now: jiff::Timestamp) -> Result<Self, PlantError> {
        config.validate()?;
        let epoch = if config.plant.start.is_empty() { now } else { config::parse_start(&config.plant.start)? };
        Ok(Self { config, epoch, bus: Arc::new(EventBus::new()), cancel: CancelToken::new() })
    }

    /// The configuration.
    pub fn config(&self) -> &PlantConfig {
        &self.config
    }

    /// Plant time 0.
    pub fn epoch(&self) -> jiff::Timestamp {
        self.epoch
    }

    /// The event stream; subscribe before [`Plant::run`].
    pub fn bus(&self) -> &Arc<EventBus> {
        &self.bus
    }

    /// A token that cancels the run from another thread.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Runs every batch through the whole chain and blocks until done. Events go to the
    /// bus; the bus is closed at the end so subscribers see their channel end.
    pub fn run(&self) -> Result<RunReport, PlantError> {
        let wall = Instant::now();
        let p = &self.config.plant;
        let env = RunEnv {
            seed: p.seed,
            process_variability: p.process_variability,
            sensor_noise: p.sensor_noise,
            bus: self.bus.clone(),
            pacer: Pacer::new(p.speed, self.cancel.clone()),
            failure: Mutex::new(None),
            stats: Mutex::new(Vec::new()),
            parallel: if p.threads == 1 { Box::new(cellfab_model::Sequential) } else { Box::new(Threads::available()) },
            faults: faults::expand(&self.config.faults, &self.config.fault_rates, p.batches, p.seed),
            labels: Mutex::new(Vec::new()),
        };
        self.bus.publish(PlantEvent::RunStarted { seed: p.seed, batches: p.batches, start: self.epoch.to_string() });
        for batch in 1..=p.batches {
            self.bus.publish(PlantEvent::BatchQueued { batch });
        }
        let recipes = |recipe: &cellfab_model::recipe::Recipe| {
            (1..=p.batches).map(|batch| Token { batch, ready_t_s: 0.0, product: recipe.clone() }).collect::<Vec<_>>()
        };
        let (anode_in, cathode_in) = (recipes(&self.config.anode.recipe), recipes(&self.config.cathode.recipe));
        let mut end_t_s = 0.0f64;
        let mut tally = kpi::CellTally::default();
        let mut finish = |token: Token<Vec<cellfab_model::stages::aging::AgedCell>>| {
            for c in &token.product {
                tally.cells += 1;
                if c.grade != cellfab_model::stages::aging::Grade::Reject {
                    tally.good_cells += 1;
                    tally.good_energy_wh += c.formed.discharge_energy_wh.true_value;
                }
            }
            let rows: Vec<serde_json::Value> = token
                .product
                .iter()
                .map(|c| serde_json::to_value(cellfab_model::stages::aging::CellResultRow::from(c)).unwrap_or_default())
                .map(|row| with_root_cause(row, &env.labels))
                .collect();
            self.bus.publish(PlantEvent::CellResults { batch: token.batch, rows: Arc::new(rows) });
            self.bus.publish(PlantEvent::BatchFinished { batch: token.batch, t_s: token.ready_t_s });
            end_t_s = end_t_s.max(token.ready_t_s);
        };
        if p.threads == 1 {
            let x = Exec { scope: None, env: &env };
            let anode =
                chain::electrode_line(&x, cellfab_model::Line::Anode, &self.config.anode, Flow::Inline(anode_in));
            let cathode =
                chain::electrode_line(&x, cellfab_model::Line::Cathode, &self.config.cathode, Flow::Inline(cathode_in));
            if let Flow::Inline(done) = chain::cell_line(&x, &self.config.cell, anode, cathode) {
                done.into_iter().for_each(&mut finish);
            }
        } else {
            std::thread::scope(|scope| {
                let x = Exec { scope: Some(scope), env: &env };
                let feed = |tokens: Vec<Token<cellfab_model::recipe::Recipe>>| {
                    let (tx, rx) = std::sync::mpsc::sync_channel(tokens.len().max(1));
                    for t in tokens {
                        let _ = tx.send(t);
                    }
                    Flow::Threaded(rx)
                };
                let anode = chain::electrode_line(&x, cellfab_model::Line::Anode, &self.config.anode, feed(anode_in));
                let cathode =
                    chain::electrode_line(&x, cellfab_model::Line::Cathode, &self.config.cathode, feed(cathode_in));
                match chain::cell_line(&x, &self.config.cell, anode, cathode) {
                    Flow::Threaded(rx) => rx.into_iter().for_each(&mut finish),
                    Flow::Inline(v) => v.into_iter().for_each(&mut finish),
                }
            });
        }
        let cancelled = self.cancel.is_cancelled();
        let mut stages = env.stats.into_inner().expect("stats lock");
        stages.sort_by(|a, b| {
            (a.machine.batch, a.machine.line, a.machine.stage).cmp(&(b.machine.batch, b.machine.line, b.machine.stage))
        });
        let kpis = kpi::compute(&stages, &tally, end_t_s);
        let failed = env.failure.lock().expect("failure lock").take();
        if !cancelled && failed.is_none() {
            self.bus.publish(PlantEvent::Kpis { kpis: Arc::new(kpis.clone()) });
        }
        self.bus.publish(PlantEvent::RunFinished { t_s: end_t_s, cancelled });
        self.bus.close();
        if let Some((machine_id, message)) = failed {
            return Err(PlantError::MachineFailed { machine_id, message });
        }
        if cancelled {
            return Err(PlantError::Cancelled);
        }
        Ok(RunReport {
            seed: p.seed,
            start: self.epoch.to_string(),
            batches: p.batches,
            end_t_s,
            wall_s: wall.elapsed().as_secs_f64(),
            stages,
            kpis,
        })
    }
}
