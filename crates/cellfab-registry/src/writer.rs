//! Batched writes on their own task, with back-pressure.
//!
//! The plant's `Delivery::Reliable` subscriber (a plain thread) turns events into rows and
//! pushes them into a [`BatchSink`]. A full batch (or one older than
//! [`WriterOptions::max_age`]) goes over a bounded channel to the writer task, which writes
//! it in one transaction. While the task is behind, the channel is full and
//! [`BatchSink::push`] blocks; the subscriber stops reading the event bus, its buffer fills
//! and the plant waits. No row is dropped anywhere on the way.

use crate::{Registry, RegistryError, Result, Row};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How the writer batches.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Rows per batch.
    pub max_rows: usize,
    /// Longest a row waits in a partial batch (checked when rows arrive, and at the end).
    pub max_age: Duration,
    /// Batches waiting for the writer before the sender blocks.
    pub queue: usize,
    /// Extra time per batch, to test back-pressure with a slow database (zero otherwise).
    pub delay: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self { max_rows: 5000, max_age: Duration::from_millis(250), queue: 2, delay: Duration::ZERO }
    }
}

/// What a writer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Batches written.
    pub batches: u64,
    /// Rows written.
    pub rows: u64,
    /// Times the sender had to wait for the writer (back-pressure engaged).
    pub waits: u64,
}

/// The sending side (blocking; use it from a plain thread, not from async code).
pub struct BatchSink {
    tx: Option<mpsc::Sender<Vec<Row>>>,
    rows: Vec<Row>,
    since: Instant,
    options: WriterOptions,
    stats: Arc<Mutex<WriterStats>>,
    task: Option<tokio::task::JoinHandle<Result<()>>>,
    handle: tokio::runtime::Handle,
}

/// Starts a writer task on `handle`'s runtime and returns its sending side.
pub fn spawn(registry: Registry, options: WriterOptions, handle: tokio::runtime::Handle) -> BatchSink {
    let (tx, mut rx) = mpsc::channel::<Vec<Row>>(options.queue.max(1));
    let stats = Arc::new(Mutex::new(WriterStats::default()));
    let delay = options.delay;
    let task_stats = stats.clone();
    let task = handle.spawn(async move {
        while let Some(batch) = rx.recv().await {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            registry.write(&batch).await?;
            let mut s = task_stats.lock().expect("writer stats");
            s.batches += 1;
            s.rows += batch.len() as u64;
        }
        Ok(())
    });
    BatchSink { tx: Some(tx), rows: Vec::new(), since: Instant::now(), options, stats, task: Some(task), handle }
}

impl BatchSink {
    /// The buffer rows are pushed into; call [`BatchSink::flush_if_due`] after pushing.
    pub fn buffer(&mut self) -> &mut Vec<Row> {
        if self.rows.is_empty() {
            self.since = Instant::now();
        }
        &mut self.rows
    }

    /// Sends the batch if it is full or old enough. Blocks while the writer is behind.
    pub fn flush_if_due(&mut self) -> Result<()> {
        if self.is_due() {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends what is buffered. Blocks while the writer is behind.
    /// True when the buffered rows are due to be sent ([`BatchSink::flush_if_due`] would
    /// send them).
    pub fn is_due(&self) -> bool {
        self.rows.len() >= self.options.max_rows
            || (!self.rows.is_empty() && self.since.elapsed() >= self.options.max_age)
    }

    pub fn flush(&mut self) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.rows);
        let tx = self.tx.as_ref().ok_or_else(|| RegistryError::WriterStopped("already finished".into()))?;
        let batch = match tx.try_send(batch) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(batch)) => batch,
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(self.stopped()),
        };
        self.stats.lock().expect("writer stats").waits += 1;
        if tx.blocking_send(batch).is_err() {
            return Err(self.stopped());
        }
        Ok(())
    }

    /// The writer's error, once it has stopped.
    fn stopped(&mut self) -> RegistryError {
        self.tx = None;
        match self.task.take().map(|t| self.handle.block_on(t)) {
            Some(Ok(Err(e))) => e,
            Some(Err(e)) => RegistryError::WriterStopped(e.to_string()),
            _ => RegistryError::WriterStopped("it ended without an error".into()),
        }
    }

    /// Sends the rest and waits until every row is written.
    pub fn finish(mut self) -> Result<WriterStats> {
        self.flush()?;
        self.tx = None;
        if let Some(task) = self.task.take() {
            match self.handle.block_on(task) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(RegistryError::WriterStopped(e.to_string())),
            }
        }
        let stats = *self.stats.lock().expect("writer stats");
        Ok(stats)
    }
}
