//! `cellfab iot …` and the publishing options of `cellfab run`: MQTT broker or Azure IoT Hub,
//! through the durable outbox of `cellfab-iot`.
//!
//! * `cellfab run --mqtt URL | --iothub [CS]` — publish the run as it happens.
//! * `cellfab iot sas-token [--connection-string CS] [--expiry UNIX]` — print a SAS token.
//! * `cellfab iot watch DIR --mqtt URL | --iothub [CS]` — publish a seed-layout folder.

use anyhow::{bail, Context, Result};
use cellfab_iot::{ConnectionString, IotHub, MqttUrl, Publisher, PublisherOptions, Target};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Environment variable holding the IoT Hub device connection string.
pub const IOTHUB_ENV: &str = "CELLFAB_IOTHUB_CONNECTION_STRING";
/// Environment variable holding the broker password (instead of putting it in the URL).
pub const PASSWORD_ENV: &str = "CELLFAB_MQTT_PASSWORD";
/// Outbox folder name inside the output (or watched) folder.
pub const OUTBOX_DIR: &str = ".cellfab-outbox";

/// Where and how to publish (shared by `run` and `iot watch`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PublishArgs {
    /// Publish to an MQTT broker:
    /// mqtt[s]://[user[:password]@]host[:port][/prefix][?client_id=ID&qos=0|1&ca=FILE&keep_alive_s=N].
    /// The password may come from CELLFAB_MQTT_PASSWORD instead.
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,
    /// Publish to Azure IoT Hub with a device connection string
    /// (HostName=…;DeviceId=…;SharedAccessKey=…); without a value it is read from
    /// CELLFAB_IOTHUB_CONNECTION_STRING (preferred: keeps the key out of process lists).
    #[arg(long, value_name = "CONNECTION_STRING", num_args = 0..=1, default_missing_value = "")]
    pub iothub: Option<String>,
    /// IoT Hub: PEM file of the CA to trust instead of the system roots.
    #[arg(long, value_name = "FILE")]
    pub iothub_ca: Option<PathBuf>,
    /// IoT Hub: port (8883; another only to test against a local broker).
    #[arg(long, default_value_t = 8883)]
    pub iothub_port: u16,
    /// IoT Hub: fixed SAS expiry (Unix seconds) instead of 1-hour tokens renewed before they
    /// expire; for tests against a broker with a password file.
    #[arg(long, hide = true)]
    pub iothub_expiry: Option<u64>,
    /// IoT Hub: telemetry records per message (1 to 1000; messages stay under 256 KB), to
    /// save the hub's message quota.
    #[arg(long, default_value_t = 1)]
    pub iothub_batch: usize,
    /// Outbox folder (default: <out>/.cellfab-outbox for run, DIR/.cellfab-outbox for watch).
    #[arg(long, value_name = "DIR")]
    pub outbox: Option<PathBuf>,
    /// Most messages the outbox holds; when full the producer waits, after a warning.
    #[arg(long, default_value_t = cellfab_iot::outbox::DEFAULT_CAPACITY)]
    pub outbox_max: u64,
    /// How long to wait at the end for the broker to acknowledge the outbox [s]; what is
    /// left is sent by the next cellfab started with the same outbox.
    #[arg(long, default_value_t = 60.0)]
    pub mqtt_drain_timeout_s: f64,
}

impl PublishArgs {
    /// The destination, if publishing was asked for.
    pub fn target(&self) -> Result<Option<Target>> {
        match (&self.mqtt, &self.iothub) {
            (Some(_), Some(_)) => bail!("--mqtt and --iothub exclude each other: choose one destination"),
            (Some(url), None) => Ok(Some(Target::Mqtt(MqttUrl::parse(url, std::env::var(PASSWORD_ENV).ok())?))),
            (None, Some(cs)) => {
                let mut hub = IotHub::new(connection_string(Some(cs))?);
                hub.port = self.iothub_port;
                hub.ca = self.iothub_ca.clone();
                hub.fixed_expiry = self.iothub_expiry;
                if !(1..=1000).contains(&self.iothub_batch) {
                    bail!("--iothub-batch = {}: must be within 1 to 1000 records", self.iothub_batch);
                }
                hub.batch = self.iothub_batch;
                Ok(Some(Target::IotHub(hub)))
            }
            (None, None) => Ok(None),
        }
    }
}

/// The connection string from the argument, or from the environment if it is missing or empty.
fn connection_string(arg: Option<&String>) -> Result<ConnectionString> {
    let text = match arg.filter(|s| !s.is_empty()) {
        Some(s) => s.clone(),
        None => std::env::var(IOTHUB_ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .with_context(|| format!("no IoT Hub connection string: give --iothub CS or set {IOTHUB_ENV}"))?,
    };
    Ok(ConnectionString::parse(&text)?)
}

/// Starts the publisher if `args` ask for one. A refused password or an untrusted
/// certificate is an error; an unreachable broker only a warning.
pub fn start(args: &PublishArgs, default_outbox: &Path) -> Result<Option<Publisher>> {
    let Some(target) = args.target()? else { return Ok(None) };
    if !(0.0..=86_400.0).contains(&args.mqtt_drain_timeout_s) {
        bail!("--mqtt-drain-timeout-s = {} s: must be within 0 to 86400 s", args.mqtt_drain_timeout_s);
    }
    let mut options =
        PublisherOptions::new(target, args.outbox.clone().unwrap_or_else(|| default_outbox.to_path_buf()));
    options.outbox_capacity = args.outbox_max.max(1);
    let publisher = Publisher::start(options)?;
    Ok(Some(publisher))
}

/// Waits for the outbox to drain (bounded by the drain timeout) and reports on stderr.
pub fn finish(
    publisher: Option<Publisher>,
    attached: Option<std::thread::JoinHandle<Result<u64, cellfab_iot::IotError>>>,
    args: &PublishArgs,
) -> Result<()> {
    let Some(publisher) = publisher else { return Ok(()) };
    let queued = match attached {
        Some(handle) => handle.join().map_err(|_| anyhow::anyhow!("the MQTT forwarder crashed"))??,
        None => 0,
    };
    let target = publisher.target().to_string();
    let report = publisher.finish(Duration::from_secs_f64(args.mqtt_drain_timeout_s));
    eprintln!("mqtt: {queued} message(s) queued, {} acknowledged by {target}", report.acked);
    if report.remaining > 0 {
        eprintln!(
            "warning: mqtt: {} message(s) not yet acknowledged wait in the outbox {}; the next cellfab run or watch with this outbox sends them",
            report.remaining,
            report.outbox_dir.display()
        );
    }
    Ok(())
}

/// Arguments of `cellfab iot`.
#[derive(clap::Args, Debug)]
pub struct IotArgs {
    #[command(subcommand)]
    command: IotCommand,
}

#[derive(clap::Subcommand, Debug)]
enum IotCommand {
    /// Print the SAS token of an IoT Hub device connection string.
    SasToken(SasArgs),
    /// Publish every seed-layout JSON file in DIR and each new one as it appears.
    Watch(WatchArgs),
}

#[derive(clap::Args, Debug)]
struct SasArgs {
    /// Device connection string (default: CELLFAB_IOTHUB_CONNECTION_STRING).
    #[arg(long, value_name = "CS")]
    connection_string: Option<String>,
    /// Expiry, Unix seconds (default: one hour from now).
    #[arg(long, value_name = "UNIX_SECONDS")]
    expiry: Option<u64>,
}

#[derive(clap::Args, Debug)]
struct WatchArgs {
    /// Seed-layout folder (a run folder or a folder of run folders).
    dir: PathBuf,
    #[command(flatten)]
    publish: PublishArgs,
    /// Publish what is there, wait for the broker's acknowledgements, and exit.
    #[arg(long)]
    once: bool,
    /// How often to look for new files [ms].
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
}

pub fn iot(args: IotArgs) -> Result<()> {
    match args.command {
        IotCommand::SasToken(a) => {
            let cs = connection_string(a.connection_string.as_ref())?;
            let expiry = match a.expiry {
                Some(e) => e,
                None => jiff::Timestamp::now().as_second().max(0) as u64 + cellfab_iot::target::DEFAULT_TOKEN_TTL_S,
            };
            println!("{}", cs.sas_token(expiry));
            Ok(())
        }
        IotCommand::Watch(a) => watch(a),
    }
}

fn watch(a: WatchArgs) -> Result<()> {
    if a.publish.mqtt.is_none() && a.publish.iothub.is_none() {
        bail!("iot watch needs a destination: --mqtt URL or --iothub [CS]");
    }
    if !(10..=3_600_000).contains(&a.poll_ms) {
        bail!("--poll-ms = {}: must be within 10 to 3600000 ms", a.poll_ms);
    }
    if !a.dir.is_dir() {
        bail!("{} is not a folder", a.dir.display());
    }
    let publisher = start(&a.publish, &a.dir.join(OUTBOX_DIR))?.context("no destination")?;
    eprintln!("watch: publishing {} to {}", a.dir.display(), publisher.target());
    let stop = AtomicBool::new(false);
    let report = cellfab_iot::watch::watch(&a.dir, &publisher, a.once, Duration::from_millis(a.poll_ms), &stop)?;
    eprintln!("watch: {} file(s) published, {} already sent before", report.published, report.already_sent);
    finish(Some(publisher), None, &a.publish)
}
