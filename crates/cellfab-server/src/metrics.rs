//! Counters for `GET /api/v1/metrics` (Prometheus text format 0.0.4).

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Process-wide counters and gauges.
#[derive(Default)]
pub struct Metrics {
    /// Runs accepted into the queue.
    pub runs_submitted: AtomicU64,
    /// Runs that finished.
    pub runs_finished: AtomicU64,
    /// Runs that failed.
    pub runs_failed: AtomicU64,
    /// Runs cancelled.
    pub runs_cancelled: AtomicU64,
    /// Samples produced by every run.
    pub samples: AtomicU64,
    /// Connected `/ws/status` clients.
    pub status_clients: AtomicI64,
    /// Connected `/api/v1/runs/{id}/events` clients.
    pub event_clients: AtomicI64,
    /// Live events skipped because a client was too slow.
    pub live_skipped: AtomicU64,
}

impl Metrics {
    /// The Prometheus exposition; `queued` is the current queue length.
    pub fn render(&self, queued: usize) -> String {
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        line("cellfab_runs_submitted_total", "counter", "Runs accepted into the queue.", get(&self.runs_submitted));
        line("cellfab_runs_finished_total", "counter", "Runs that finished.", get(&self.runs_finished));
        line("cellfab_runs_failed_total", "counter", "Runs that failed.", get(&self.runs_failed));
        line("cellfab_runs_cancelled_total", "counter", "Runs cancelled.", get(&self.runs_cancelled));
        line("cellfab_samples_total", "counter", "Samples produced by all runs.", get(&self.samples));
        line("cellfab_run_queue_length", "gauge", "Runs waiting in the queue.", queued.to_string());
        line(
            "cellfab_status_clients",
            "gauge",
            "Connected /ws/status clients.",
            self.status_clients.load(Ordering::Relaxed).to_string(),
        );
        line(
            "cellfab_event_clients",
            "gauge",
            "Connected run event stream clients.",
            self.event_clients.load(Ordering::Relaxed).to_string(),
        );
        line(
            "cellfab_live_events_skipped_total",
            "counter",
            "Live events skipped for slow clients.",
            get(&self.live_skipped),
        );
        // tasks of the runtime that serves this request: connections, live streams, run
        // workers; a leak shows as a count that does not return to its baseline
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            line(
                "cellfab_tokio_alive_tasks",
                "gauge",
                "Tasks alive in the server's tokio runtime.",
                runtime.metrics().num_alive_tasks().to_string(),
            );
        }
        out
    }
}
