//! `cellfab serve`: the web API on http://127.0.0.1:8000 (also what `cellfab` does with no
//! subcommand). Runs go to `DATA-DIR/runs/<run id>/`.

use anyhow::{Context, Result};
use cellfab_plant::PlantConfig;
use cellfab_server::ServerConfig;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Arguments of `cellfab serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to bind; 127.0.0.1 keeps the server local to this machine.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (0 = any free port).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Folder that receives runs/<run id>/.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Plant configuration every run starts from (TOML or JSON, any subset of the keys).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Browser origin allowed by CORS (repeatable; default: the prototype UI on
    /// http://localhost:3000 and the dev UI on http://localhost:5173).
    #[arg(long = "allow-origin")]
    allow_origins: Vec<String>,
    /// Runs that may wait in the queue.
    #[arg(long, default_value_t = cellfab_server::DEFAULT_QUEUE_CAPACITY)]
    queue: usize,
    /// Run registry: sqlite://FILE or postgres://USER:PASSWORD@HOST:PORT/DB (default: the
    /// SQLite file DATA-DIR/cellfab.sqlite).
    #[arg(long)]
    database: Option<String>,
    /// Time series kept in the registry: "full" or a resolution in seconds of stage time
    /// (e.g. 10); the run folders always keep every sample.
    #[arg(long, default_value = "full")]
    series: cellfab_registry::Series,
    /// Publish every run's samples, status changes, final results and alarms (MQTT / IoT Hub).
    #[command(flatten)]
    iot: crate::iot::PublishArgs,
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8000,
            data_dir: PathBuf::from("data"),
            config: None,
            allow_origins: Vec::new(),
            queue: cellfab_server::DEFAULT_QUEUE_CAPACITY,
            database: None,
            series: cellfab_registry::Series::Full,
            iot: crate::iot::PublishArgs::default(),
        }
    }
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let mut config = ServerConfig::new(args.data_dir.clone());
    if let Some(path) = &args.config {
        config.base_config = crate::run::load_config(path)?;
    } else {
        config.base_config = PlantConfig::default();
    }
    if !args.allow_origins.is_empty() {
        config.allowed_origins = args.allow_origins.clone();
    }
    config.queue_capacity = args.queue;
    config.database = match &args.database {
        Some(url) => url.clone(),
        None => {
            std::fs::create_dir_all(&args.data_dir)
                .with_context(|| format!("cannot create the data folder {}", args.data_dir.display()))?;
            format!("sqlite://{}", args.data_dir.join("cellfab.sqlite").display())
        }
    };
    config.series = args.series;
    // one publisher (and one durable outbox) for the server's lifetime, attached to every run
    let publisher = crate::iot::start(&args.iot, &args.data_dir.join(".cellfab-outbox"))?.map(std::sync::Arc::new);
    if let Some(p) = &publisher {
        let p = p.clone();
        config.plant_hook = Some(cellfab_server::PlantHook(std::sync::Arc::new(move |plant| {
            // the forwarder ends by itself when the run's event bus closes
            drop(p.attach(plant.bus(), plant.epoch()));
        })));
    }
    let database = config.database.clone();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let addr = SocketAddr::new(args.host, args.port);
        let (local, server) =
            cellfab_server::bind(config, addr, shutdown).await.with_context(|| format!("cannot serve on {addr}"))?;
        // A closed stdout (a supervisor that stopped reading) must not stop the server.
        let _ = writeln!(
            std::io::stdout(),
            "cellfab serving on http://{local} (data in {}, registry {})\nAPI docs: http://{local}/api/v1/docs",
            args.data_dir.display(),
            redact(&database)
        );
        server.await.context("server stopped")
    })
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme && url[scheme + 3..at].contains(':') => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}
