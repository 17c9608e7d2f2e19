//! The publisher: producers append messages to the durable outbox; one sender thread keeps a
//! connection to the broker and sends the outbox in order, at most [`WINDOW`] messages
//! unacknowledged at a time.
//!
//! ```text
//!  plant bus ──(reliable subscription)──► attach thread ──push──► Outbox (disk)
//!  watcher ───────────────────────────────────────────────push──►   │
//!                                                                    ▼ next_unsent / ack
//!                                      sender thread (tokio) ◄──► broker (QoS 1, PUBACK)
//! ```
//!
//! Each connection is a fresh MQTT session: after a drop the sender rewinds the outbox to the
//! oldest unacknowledged message and sends from there, so nothing is lost and order per topic
//! is kept; a message whose PUBACK was lost arrives twice with the same `message_id`.
//! For IoT Hub the SAS token is renewed by reconnecting [`crate::target::RENEW_MARGIN_S`]
//! before it expires.

use crate::message::{from_event, Message};
use crate::outbox::Outbox;
use crate::target::Target;
use crate::IotError;
use cellfab_plant::events::DEFAULT_SUBSCRIBER_CAPACITY;
use cellfab_plant::{Delivery, EventBus};
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Outgoing, Packet, QoS, Transport};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Messages sent and not yet acknowledged, at most.
pub const WINDOW: usize = 64;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How to start a [`Publisher`].
#[derive(Clone)]
pub struct PublisherOptions {
    /// Broker or IoT Hub.
    pub target: Target,
    /// Folder of the durable outbox (created if missing; resumed if it holds messages).
    pub outbox_dir: PathBuf,
    /// Bound of messages waiting in the outbox.
    pub outbox_capacity: u64,
    /// How long [`Publisher::start`] waits for the first connection before going on offline.
    pub connect_timeout: Duration,
}

impl PublisherOptions {
    /// Options with the default outbox bound and a 10 s first-connection wait.
    pub fn new(target: Target, outbox_dir: impl Into<PathBuf>) -> Self {
        Self {
            target,
            outbox_dir: outbox_dir.into(),
            outbox_capacity: crate::outbox::DEFAULT_CAPACITY,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

struct Shared {
    target: Target,
    outbox_dir: PathBuf,
    outbox: Mutex<Outbox>,
    /// Signalled on every acknowledgement (space for producers, progress for `finish`).
    changed: Condvar,
    /// Wakes the sender: new messages or stop.
    wake: tokio::sync::Notify,
    stop: AtomicBool,
    dead: AtomicBool,
    full_warned: AtomicBool,
    acked: AtomicU64,
}

impl Shared {
    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn io(&self, source: std::io::Error) -> IotError {
        IotError::Outbox { dir: self.outbox_dir.clone(), source }
    }

    fn push(&self, mut message: Message) -> Result<u64, IotError> {
        let mut outbox = self.outbox();
        while outbox.is_full() {
            if self.dead.load(Ordering::Relaxed) || self.stop.load(Ordering::Relaxed) {
                return Err(IotError::Stopped);
            }
            if !self.full_warned.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "warning: mqtt: the outbox {} is full ({} messages waiting for {}); new messages wait until the broker takes some",
                    self.outbox_dir.display(),
                    outbox.capacity(),
                    self.target
                );
            }
            outbox = self.changed.wait_timeout(outbox, Duration::from_millis(200)).unwrap_or_else(|e| e.into_inner()).0;
        }
        let seq = outbox.next_seq();
        message.payload.insert("message_id".into(), outbox.message_id(seq).into());
        let payload = serde_json::to_string(&message.payload).map_err(|e| self.io(std::io::Error::other(e)))?;
        let limit = self.target.max_payload_bytes();
        if payload.len() > limit {
            return Err(IotError::TooLarge { topic: message.topic, bytes: payload.len(), limit });
        }
        let seq = outbox.push(&message.topic, &payload).map_err(|e| self.io(e))?;
        drop(outbox);
        self.wake.notify_one();
        Ok(seq)
    }

    fn ack(&self, seq: u64) -> Result<(), IotError> {
        let mut outbox = self.outbox();
        outbox.ack(seq).map_err(|e| self.io(e))?;
        if outbox.pending() == 0 {
            outbox.save().map_err(|e| self.io(e))?;
        }
        if !outbox.is_full() {
            self.full_warned.store(false, Ordering::Relaxed);
        }
        drop(outbox);
        self.acked.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_all();
        Ok(())
    }
}

/// What [`Publisher::finish`] leaves behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishReport {
    /// Messages acknowledged by the broker during this publisher's life.
    pub acked: u64,
    /// Messages still in the outbox (sent on the next start with the same outbox).
    pub remaining: u64,
    /// The outbox folder.
    pub outbox_dir: PathBuf,
}

/// Publishes messages to one broker through a durable outbox.
///
/// `cellfab run` and the watcher use it directly; a server calls [`Publisher::attach`] for
/// every plant it starts, and [`Publisher::finish`] when it shuts down.
pub struct Publisher {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

enum Outcome {
    Connected,
    Offline(String),
    Fatal(IotError),
}

impl Publisher {
    /// Opens the outbox, starts the sender and waits (up to `connect_timeout`) for the first
    /// connection. A refused password or an untrusted certificate is an error here; an
    /// unreachable broker is only a warning: messages wait in the outbox.
    pub fn start(options: PublisherOptions) -> Result<Self, IotError> {
        let transport = options.target.transport()?;
        let outbox = Outbox::open(&options.outbox_dir, options.outbox_capacity)
            .map_err(|source| IotError::Outbox { dir: options.outbox_dir.clone(), source })?;
        let waiting = outbox.pending();
        let shared = Arc::new(Shared {
            target: options.target.clone(),
            outbox_dir: options.outbox_dir.clone(),
            outbox: Mutex::new(outbox),
            changed: Condvar::new(),
            wake: tokio::sync::Notify::new(),
            stop: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            full_warned: AtomicBool::new(false),
            acked: AtomicU64::new(0),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cellfab-mqtt".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
                match rt {
                    Ok(rt) => rt.block_on(sender(s.clone(), transport, tx)),
                    Err(e) => {
                        let _ =
                            tx.send(Outcome::Fatal(IotError::Connect(format!("cannot start the MQTT runtime: {e}"))));
                    }
                }
                s.dead.store(true, Ordering::Relaxed);
                s.changed.notify_all();
            })
            .map_err(|e| IotError::Connect(format!("cannot start the MQTT thread: {e}")))?;
        let mut publisher = Self { shared, thread: Some(thread) };
        match rx.recv_timeout(options.connect_timeout) {
            Ok(Outcome::Connected) => {}
            Ok(Outcome::Fatal(e)) => {
                publisher.stop_sender();
                return Err(e);
            }
            Ok(Outcome::Offline(why)) => eprintln!(
                "warning: mqtt: {why}; messages wait in the outbox {} and are sent once the broker is reachable",
                options.outbox_dir.display()
            ),
            Err(_) => eprintln!(
                "warning: mqtt: no connection to {} after {:?}; messages wait in the outbox {}",
                options.target,
                options.connect_timeout,
                options.outbox_dir.display()
            ),
        }
        if waiting > 0 {
            eprintln!("mqtt: resuming {waiting} message(s) left in the outbox {}", options.outbox_dir.display());
        }
        Ok(publisher)
    }

    /// The destination (prints without secrets).
    pub fn target(&self) -> &Target {
        &self.shared.target
    }

    /// The outbox folder.
    pub fn outbox_dir(&self) -> &Path {
        &self.shared.outbox_dir
    }

    /// Messages waiting in the outbox.
    pub fn pending(&self) -> u64 {
        self.shared.outbox().pending()
    }

    /// Appends one message to the outbox (waits while the outbox is full); returns its sequence
    /// number.
    pub fn push(&self, message: Message) -> Result<u64, IotError> {
        self.shared.push(message)
    }

    /// Subscribes reliably to `bus` and publishes every sample, status change, final result and
    /// alarm of the plant whose time 0 is `epoch`. Call before the plant runs; the returned
    /// thread ends when the bus closes (the end of the run), with the count of messages queued.
    pub fn attach(&self, bus: &EventBus, epoch: jiff::Timestamp) -> std::thread::JoinHandle<Result<u64, IotError>> {
        let sub = bus.subscribe(DEFAULT_SUBSCRIBER_CAPACITY, Delivery::Reliable);
        let shared = self.shared.clone();
        std::thread::spawn(move || {
            let prefix = shared.target.prefix().to_string();
            let mut batcher = Batcher::new(shared.target.batch(), shared.target.max_payload_bytes());
            let (mut queued, mut first_error) = (0u64, None);
            let mut send = |message: Message, queued: &mut u64| match shared.push(message) {
                Ok(_) => *queued += 1,
                // keep consuming so the plant is never blocked by a broken sink
                Err(e) if first_error.is_none() => {
                    eprintln!("error: mqtt: {e}");
                    first_error = Some(e);
                }
                Err(_) => {}
            };
            let mut fault_codes = std::collections::BTreeMap::new();
            for event in sub.rx {
                if let cellfab_plant::PlantEvent::FaultLabel { label } = event.as_ref() {
                    fault_codes.insert(label.label_id, label.code.as_str());
                }
                let Some(message) = from_event(&prefix, epoch, &event, &fault_codes) else { continue };
                for m in batcher.add(message) {
                    send(m, &mut queued);
                }
            }
            for m in batcher.flush_all() {
                send(m, &mut queued);
            }
            first_error.map_or(Ok(queued), Err)
        })
    }

    /// Waits up to `timeout` until every message is acknowledged, then stops the sender.
    /// Messages not sent by then stay in the outbox for the next start.
    pub fn finish(mut self, timeout: Duration) -> FinishReport {
        let deadline = Instant::now() + timeout;
        {
            let mut outbox = self.shared.outbox();
            while outbox.pending() > 0 && !self.shared.dead.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                outbox = self
                    .shared
                    .changed
                    .wait_timeout(outbox, (deadline - now).min(Duration::from_millis(200)))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        self.stop_sender();
        let mut outbox = self.shared.outbox();
        let _ = outbox.save();
        FinishReport {
            acked: self.shared.acked.load(Ordering::Relaxed),
            remaining: outbox.pending(),
            outbox_dir: self.shared.outbox_dir.clone(),
        }
    }

    fn stop_sender(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop_sender();
        let _ = self.shared.outbox().save();
    }
}

/// Groups telemetry records per machine into messages of up to `size` records (and under the
/// payload limit); any other message of a machine first flushes that machine's records, so the
/// order per machine is kept.
struct Batcher {
    size: usize,
    limit: usize,
    open: HashMap<String, (Vec<serde_json::Map<String, serde_json::Value>>, usize)>,
}

impl Batcher {
    fn new(size: usize, limit: usize) -> Self {
        Self { size: size.max(1), limit, open: HashMap::new() }
    }

    fn add(&mut self, message: Message) -> Vec<Message> {
        if self.size == 1 {
            return vec![message];
        }
        let mut out = Vec::new();
        if message.kind == crate::Kind::Telemetry {
            let bytes = serde_json::to_string(&message.payload).map_or(0, |s| s.len()) + 1;
            let (records, size) = self.open.entry(message.topic.clone()).or_default();
            // room for the wrapper and the message id
            if !records.is_empty() && *size + bytes + 512 > self.limit {
                out.push(crate::message::batch(message.topic.clone(), std::mem::take(records)));
                *size = 0;
            }
            records.push(message.payload);
            *size += bytes;
            if records.len() >= self.size {
                out.push(crate::message::batch(message.topic.clone(), std::mem::take(records)));
                *size = 0;
            }
            return out;
        }
        let machine = message.topic.rsplit_once('/').map_or("", |(m, _)| m);
        let telemetry = format!("{machine}/{}", crate::Kind::Telemetry.as_str());
        if let Some((records, _)) = self.open.remove(&telemetry) {
            if !records.is_empty() {
                out.push(crate::message::batch(telemetry, records));
            }
        }
        out.push(message);
        out
    }

    fn flush_all(&mut self) -> Vec<Message> {
        let mut open: Vec<_> = self.open.drain().filter(|(_, (r, _))| !r.is_empty()).collect();
        open.sort_by(|a, b| a.0.cmp(&b.0));
        open.into_iter().map(|(topic, (records, _))| crate::message::batch(topic, records)).collect()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A connection failure, in words, and whether it needs the user (wrong password or CA)
/// rather than patience.
fn classify(e: &ConnectionError, target: &Target) -> (bool, String) {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            let why = match code {
                ConnectReturnCode::BadUserNamePassword => "bad user name or password",
                ConnectReturnCode::NotAuthorized => "not authorized (wrong user name, password or SAS token?)",
                ConnectReturnCode::BadClientId => "client id rejected",
                ConnectReturnCode::RefusedProtocolVersion => "MQTT 3.1.1 not accepted",
                ConnectReturnCode::ServiceUnavailable => "service unavailable",
                ConnectReturnCode::Success => "success",
            };
            let fatal = !matches!(code, ConnectReturnCode::ServiceUnavailable);
            (fatal, format!("{target} refused the connection: {why}"))
        }
        ConnectionError::Tls(t) => (
            true,
            format!("TLS handshake with {target} failed: {t} (is the broker's certificate signed by the CA given with ca=… / --mqtt-ca, and issued for this host name?)"),
        ),
        ConnectionError::Io(io) => (false, format!("cannot reach {target}: {io}")),
        ConnectionError::NetworkTimeout => (false, format!("cannot reach {target}: timed out")),
        other => (false, format!("{target}: {other}")),
    }
}

async fn sleep_unless_stopped(shared: &Shared, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shared.wake.notified() => {}
    }
}

async fn sender(shared: Arc<Shared>, transport: Transport, first: std::sync::mpsc::Sender<Outcome>) {
    let mut first = Some(first);
    let mut backoff = Duration::from_millis(100);
    let mut warned: Option<String> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let connect = shared.target.connect(&transport, unix_now());
        let (client, mut eventloop) = AsyncClient::new(connect.options, 2 * WINDOW);
        let result = match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => Ok(()),
            Ok(Ok(other)) => Err((false, format!("{}: unexpected first packet {other:?}", shared.target))),
            Ok(Err(e)) => Err(classify(&e, &shared.target)),
            Err(_) => Err((false, format!("cannot reach {}: no CONNACK within 10 s", shared.target))),
        };
        match result {
            Ok(()) => {
                backoff = Duration::from_millis(100);
                if let Some(f) = first.take() {
                    let _ = f.send(Outcome::Connected);
                }
                if warned.take().is_some() {
                    eprintln!("mqtt: connected again to {}", shared.target);
                }
            }
            Err((fatal, why)) => {
                if let Some(f) = first.take() {
                    if fatal {
                        let _ = f.send(Outcome::Fatal(IotError::Connect(why)));
                        return;
                    }
                    let _ = f.send(Outcome::Offline(why.clone()));
                    warned = Some(why);
                } else if warned.as_ref() != Some(&why) {
                    eprintln!("warning: mqtt: {why}; retrying, messages wait in the outbox");
                    warned = Some(why);
                }
                sleep_unless_stopped(&shared, backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        }
        match pump(&shared, &client, &mut eventloop, connect.renew_at).await {
            Ok(()) => {}
            Err(why) => {
                eprintln!(
                    "warning: mqtt: connection to {} lost: {why}; reconnecting, messages wait in the outbox",
                    shared.target
                );
                warned = Some(why);
            }
        }
    }
}

/// Sends the outbox over one connection until it drops, the token needs renewing or the
/// publisher stops.
async fn pump(
    shared: &Shared,
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    renew_at: Option<u64>,
) -> Result<(), String> {
    shared.outbox().rewind();
    let qos = shared.target.qos();
    let mut awaiting_pkid: VecDeque<u64> = VecDeque::new();
    let mut by_pkid: HashMap<u16, u64> = HashMap::new();
    let mut in_flight = 0usize;
    let renew = async {
        match renew_at {
            Some(at) => tokio::time::sleep(Duration::from_secs(at.saturating_sub(unix_now()))).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(renew);
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            let _ = client.try_disconnect();
            let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
            return Ok(());
        }
        while in_flight < WINDOW {
            let next = {
                let mut outbox = shared.outbox();
                outbox.next_unsent().map(|m| m.map(|m| (outbox.message_id(m.seq), m)))
            };
            match next {
                Ok(Some((mid, m))) => {
                    let topic = shared.target.wire_topic(&m.topic, &mid);
                    client.try_publish(topic, qos, false, m.payload.into_bytes()).map_err(|e| e.to_string())?;
                    awaiting_pkid.push_back(m.seq);
                    in_flight += 1;
                }
                Ok(None) => break,
                Err(e) => return Err(format!("reading the outbox: {e}")),
            }
        }
        tokio::select! {
            event = eventloop.poll() => match event.map_err(|e| classify(&e, &shared.target).1)? {
                Event::Outgoing(Outgoing::Publish(pkid)) => {
                    if let Some(seq) = awaiting_pkid.pop_front() {
                        if qos == QoS::AtMostOnce {
                            shared.ack(seq).map_err(|e| e.to_string())?;
                            in_flight -= 1;
                        } else {
                            by_pkid.insert(pkid, seq);
                        }
                    }
                }
                Event::Incoming(Packet::PubAck(ack)) => {
                    if let Some(seq) = by_pkid.remove(&ack.pkid) {
                        shared.ack(seq).map_err(|e| e.to_string())?;
                        in_flight -= 1;
                    }
                }
                _ => {}
            },
            _ = shared.wake.notified() => {}
            _ = &mut renew => {
                let _ = client.try_disconnect();
                let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
                return Ok(());
            }
        }
    }
}

// A server shares one publisher between threads.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Publisher>();
};
