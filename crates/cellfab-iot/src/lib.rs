//! MQTT publishing of the plant: every sample, machine status change, final result and alarm
//! as JSON on `<prefix>/<line>/<machine-id>/{telemetry,status,final,alarm}`, to any MQTT 3.1.1
//! broker (`mqtt://`, `mqtts://`, user and password) or to an Azure IoT Hub device (SAS token
//! from the connection string, renewed before it expires). Messages pass through a durable
//! on-disk outbox, so a broker that is down or a restart of cellfab loses nothing.
//!
//! * [`sas`] — connection string and SAS token.
//! * [`target`] — the destination: broker URL or IoT Hub, TLS, topics; secrets redacted.
//! * [`message`] — plant events and seed files → topic + JSON payload.
//! * [`outbox`] — the on-disk log of unacknowledged messages.
//! * [`publisher`] — the sender: [`Publisher::start`], [`Publisher::attach`] (to a plant's
//!   bus), [`Publisher::finish`].
//! * [`watch`] — publish the JSON files of a seed-layout folder, with a ledger.

pub mod message;
pub mod outbox;
pub mod publisher;
pub mod sas;
pub mod target;
pub mod watch;

pub use message::{Kind, Message};
pub use publisher::{FinishReport, Publisher, PublisherOptions};
pub use sas::ConnectionString;
pub use target::{IotHub, MqttUrl, Target};

use std::path::PathBuf;

/// Everything that can go wrong while publishing. No variant ever holds a password, key or
/// token.
#[derive(Debug, thiserror::Error)]
pub enum IotError {
    /// The broker URL cannot be used (the URL is shown with its password redacted).
    #[error("invalid MQTT URL {url}: {reason}")]
    Url {
        /// The URL, password replaced by `***`.
        url: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The IoT Hub connection string cannot be used.
    #[error("invalid IoT Hub connection string: {reason}")]
    ConnectionString {
        /// What is wrong.
        reason: String,
    },
    /// TLS set-up failed (CA file).
    #[error("TLS: {reason}")]
    Tls {
        /// What is wrong.
        reason: String,
    },
    /// The broker refused the connection or the handshake failed.
    #[error("{0}")]
    Connect(String),
    /// The outbox folder cannot be read or written.
    #[error("outbox {dir}: {source}")]
    Outbox {
        /// The outbox folder.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A message is larger than the destination accepts.
    #[error("message on {topic} is {bytes} bytes, more than the {limit} bytes allowed")]
    TooLarge {
        /// Its topic.
        topic: String,
        /// Its size [bytes].
        bytes: usize,
        /// The limit [bytes].
        limit: usize,
    },
    /// The publisher stopped.
    #[error("the MQTT publisher has stopped")]
    Stopped,
    /// The watched folder cannot be read.
    #[error("watch folder {dir}: {source}")]
    Watch {
        /// The folder.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}
