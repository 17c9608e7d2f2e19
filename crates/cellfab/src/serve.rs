//! `cellfab serve`: the web API on http://127.0.0.1:8000 (also what `cellfab` does with no
//! subcommand). Runs go to `DATA-DIR/runs/<run id>/`.
//!
//! Access: on loopback the server may be open; on any other address it needs an access
//! token (`--token` or `CELLFAB_TOKEN`) unless `--insecure-no-auth` says otherwise. The
//! check comes before anything is created or bound, and the token is never printed.

use anyhow::{bail, Context, Result};
use cellfab_plant::PlantConfig;
use cellfab_server::auth::Secret;
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
    /// Access token every API and prototype route then requires (Authorization: Bearer
    /// TOKEN, or ?token=TOKEN on GET and WebSocket); needed to serve on a non-loopback
    /// address. Prefer the environment variable: it keeps the token out of process lists.
    #[arg(long, env = TOKEN_ENV, hide_env_values = true, value_name = "TOKEN")]
    token: Option<Secret>,
    /// Serve on a non-loopback address without a token: anyone who reaches the port can
    /// start, cancel and delete runs.
    #[arg(long)]
    insecure_no_auth: bool,
    /// Publish every run's samples, status changes, final results and alarms (MQTT / IoT Hub).
    #[command(flatten)]
    iot: crate::iot::PublishArgs,
}

/// Environment variable holding the access token.
pub const TOKEN_ENV: &str = "CELLFAB_TOKEN";

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
            // `cellfab` without a subcommand honours the token variable too
            token: std::env::var(TOKEN_ENV).ok().map(Secret::new),
            insecure_no_auth: false,
        }
    }
}

/// The token to require, or the reason not to serve: a non-loopback address needs a token
/// unless `insecure` says otherwise; an empty token is refused.
fn access(host: IpAddr, token: Option<&Secret>, insecure: bool) -> Result<Option<Secret>> {
    match token {
        Some(t) if t.expose().trim().is_empty() => {
            bail!("--token (or {TOKEN_ENV}) is empty: give a non-empty access token")
        }
        Some(t) => Ok(Some(t.clone())),
        None if host.to_canonical().is_loopback() || insecure => Ok(None),
        None => bail!(
            "refusing to serve on {host} without an access token: anyone who can reach it could start, cancel and \
             delete runs. Give --token TOKEN (or set {TOKEN_ENV}), serve on 127.0.0.1, or pass --insecure-no-auth"
        ),
    }
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let token = access(args.host, args.token.as_ref(), args.insecure_no_auth)?;
    let access_note = match (&token, args.host.to_canonical().is_loopback()) {
        (Some(_), _) => "token required",
        (None, true) => "no token: open to this machine",
        (None, false) => "no token: open to anyone who can reach it (--insecure-no-auth)",
    };
    let mut config = ServerConfig::new(args.data_dir.clone());
    config.token = token;
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
            "cellfab serving on http://{local} (data in {}, registry {}; {access_note})\nAPI docs: http://{local}/api/v1/docs",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_a_token_or_the_insecure_flag() {
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let err = access(any, None, false).unwrap_err().to_string();
        assert!(err.contains("--token") && err.contains("--insecure-no-auth") && err.contains("0.0.0.0"), "{err}");
        assert!(access(any, None, true).unwrap().is_none());
        assert!(access(any, Some(&Secret::new("t")), false).unwrap().is_some());
        for local in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(access(local.parse().unwrap(), None, false).unwrap().is_none(), "{local}");
        }
        assert!(access("::".parse().unwrap(), None, false).is_err());
        assert!(access("192.168.1.5".parse().unwrap(), None, false).is_err());
        assert!(access(any, Some(&Secret::new(" ")), true).is_err(), "an empty token is refused");
    }
}
