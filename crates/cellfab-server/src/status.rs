//! The plain-text status feed of `WS /ws/status` (the prototype's shape): frames
//! `[YYYY-MM-DD HH:MM:SS] <message>`, wall-clock UTC. The last [`HISTORY`] messages are kept
//! and replayed to a client that connects; live frames go out over a broadcast channel whose
//! slow receivers skip frames (they never slow the plant).

use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::broadcast;

/// Messages kept for clients that connect later.
pub const HISTORY: usize = 100;

/// Frames buffered per live client before it starts skipping.
pub const CLIENT_BUFFER: usize = 1024;

/// The status feed.
pub struct StatusFeed {
    inner: Mutex<VecDeque<String>>,
    tx: broadcast::Sender<String>,
}

impl Default for StatusFeed {
    fn default() -> Self {
        Self { inner: Mutex::new(VecDeque::with_capacity(HISTORY)), tx: broadcast::channel(CLIENT_BUFFER).0 }
    }
}

impl StatusFeed {
    /// Stamps `message` with the wall clock, keeps it and sends it to every client.
    pub fn push(&self, message: &str) {
        let now = jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S");
        let frame = format!("[{now}] {message}");
        let mut history = self.inner.lock().expect("status lock");
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(frame.clone());
        // No receiver is not an error: the message stays in the history.
        let _ = self.tx.send(frame);
    }

    /// The history and a receiver of every later frame, taken atomically (nothing is lost
    /// or doubled between them).
    pub fn subscribe(&self) -> (Vec<String>, broadcast::Receiver<String>) {
        let history = self.inner.lock().expect("status lock");
        (history.iter().cloned().collect(), self.tx.subscribe())
    }
}
