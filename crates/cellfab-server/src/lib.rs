//! cellfab-server: the plant over HTTP (axum + tokio).
//!
//! * The prototype's routes, working end to end: `POST /start-both`, `POST /reset`,
//!   `GET /files/{Anode|Cathode|all}`, `WS /ws/status` ([`legacy`]).
//! * The versioned API under `/api/v1`: configuration, queued runs, samples, zip downloads,
//!   live events, health, metrics, OpenAPI ([`api`], [`openapi`]).
//!
//! Runs go to `DATA-DIR/runs/<run id>/` in the seed layout ([`runs`]) and into the run
//! registry ([`cellfab_registry`]: SQLite or PostgreSQL), which the run history, samples and
//! downloads read. Every error is JSON
//! `{"error": {"code", "message", "field"?}}` ([`error`]). Build the router with [`router`]
//! (tests call it directly) or bind and serve with [`serve`].
//!
//! Every request passes, outermost first: CORS (an allow-list of origins), the access token
//! ([`auth`], when one is configured), the body size limit and the request time limit
//! ([`limits`]).

pub mod api;
pub mod auth;
pub mod body;
pub mod error;
pub mod legacy;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod runs;
pub mod status;
pub mod ui;
pub mod zipstream;

use axum::http::{HeaderValue, Method, StatusCode};
use axum::Router;
use cellfab_plant::PlantConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Origins allowed by CORS unless configured: the prototype UI and the Vite dev UI.
pub const DEFAULT_ORIGINS: [&str; 4] =
    ["http://localhost:3000", "http://127.0.0.1:3000", "http://localhost:5173", "http://127.0.0.1:5173"];

/// Runs that may wait in the queue behind the running one.
pub const DEFAULT_QUEUE_CAPACITY: usize = 16;

/// How the server is set up.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Folder that receives `runs/<run id>/`.
    pub data_dir: PathBuf,
    /// Configuration every run starts from (`/start-both` and `POST /api/v1/runs`).
    pub base_config: PlantConfig,
    /// Origins allowed to call the API from a browser.
    pub allowed_origins: Vec<String>,
    /// Runs that may wait in the queue; one more is refused with 429.
    pub queue_capacity: usize,
    /// Called with every plant before it runs, to subscribe further sinks to its event bus
    /// (the MQTT / IoT Hub publisher of `cellfab serve --mqtt`).
    pub plant_hook: Option<PlantHook>,
    /// The run registry's database: `sqlite://FILE`, `sqlite::memory:` (this default: a
    /// registry that lives as long as the server) or `postgres://…`. `cellfab serve`
    /// defaults to `sqlite://DATA-DIR/cellfab.sqlite`.
    pub database: String,
    /// Time series kept in the registry (the run folders keep every sample).
    pub series: cellfab_registry::Series,
    /// Batching of registry writes (and an artificial delay, for tests).
    pub writer: cellfab_registry::WriterOptions,
    /// Access token the API and the prototype's routes require (`None` = open; see
    /// [`auth`]). Its `Debug` shows `Secret(***)`.
    pub token: Option<auth::Secret>,
    /// Time a request may take to send its body and get its response head ([`limits`]).
    pub request_timeout: std::time::Duration,
}

/// The registry of a server that keeps no history across restarts.
pub const MEMORY_DATABASE: &str = "sqlite::memory:";

/// A function that attaches something to each plant before it runs.
#[derive(Clone)]
pub struct PlantHook(pub Arc<dyn Fn(&cellfab_plant::Plant) + Send + Sync>);

impl std::fmt::Debug for PlantHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlantHook")
    }
}

impl ServerConfig {
    /// Defaults: the default plant, the default origins and queue, runs under `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            base_config: PlantConfig::default(),
            allowed_origins: DEFAULT_ORIGINS.iter().map(|s| s.to_string()).collect(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            plant_hook: None,
            database: MEMORY_DATABASE.into(),
            series: cellfab_registry::Series::Full,
            writer: cellfab_registry::WriterOptions::default(),
            token: None,
            request_timeout: limits::DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// Configuration runs start from.
    pub base_config: Arc<PlantConfig>,
    /// The run registry and queue.
    pub runs: Arc<runs::Runs>,
    /// The `/ws/status` feed.
    pub feed: Arc<status::StatusFeed>,
    /// Counters for `/api/v1/metrics`.
    pub metrics: Arc<metrics::Metrics>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The base configuration is invalid.
    #[error("invalid base configuration: {0}")]
    Config(#[from] cellfab_plant::PlantError),
    /// A CORS origin is not a valid header value.
    #[error("invalid CORS origin \"{0}\"")]
    Origin(String),
    /// The data folder or the socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The run registry could not be opened or read.
    #[error("run registry: {0}")]
    Registry(#[from] cellfab_registry::RegistryError),
}

/// Builds the application: opens the registry, reads the earlier runs and starts the run
/// worker on the current tokio runtime.
pub async fn router(config: ServerConfig) -> Result<Router, ServerError> {
    app(config).await.map(|(router, _)| router)
}

async fn app(config: ServerConfig) -> Result<(Router, AppState), ServerError> {
    let mut check = config.base_config.clone();
    check.plant.start = String::new();
    cellfab_plant::Plant::new(check, jiff::Timestamp::now())?;
    let runs_dir = config.data_dir.join("runs");
    std::fs::create_dir_all(&runs_dir)?;
    let feed = Arc::new(status::StatusFeed::default());
    let metrics = Arc::new(metrics::Metrics::default());
    let recording = runs::Recording {
        registry: cellfab_registry::Registry::open(&config.database).await?,
        series: config.series,
        writer: config.writer.clone(),
    };
    let state = AppState {
        base_config: Arc::new(config.base_config),
        runs: runs::Runs::start(
            runs_dir,
            config.queue_capacity,
            feed.clone(),
            metrics.clone(),
            config.plant_hook.clone(),
            recording,
        )
        .await?,
        feed,
        metrics,
    };
    let origins = config
        .allowed_origins
        .iter()
        .map(|o| HeaderValue::from_str(o).map_err(|_| ServerError::Origin(o.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([axum::http::header::CONTENT_TYPE, axum::http::header::AUTHORIZATION]);
    let router = Router::new()
        // the web UI (web/dist, embedded in the binary) at / and every client-side path
        .route("/", axum::routing::get(ui::index))
        .merge(legacy::routes())
        .nest("/api/v1", api::routes())
        .fallback(ui::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        .layer(axum::middleware::from_fn_with_state(config.request_timeout, limits::timeout))
        .layer(axum::extract::DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(auth::Guard::new(config.token.as_ref()), auth::require))
        .layer(cors);
    Ok((router, state))
}

/// Cancels every run when the server stops (or its future is dropped), so no paced run
/// outlives the server.
struct CancelRunsOnDrop(Arc<runs::Runs>);

impl Drop for CancelRunsOnDrop {
    fn drop(&mut self) {
        for run in self.0.list() {
            run.cancel();
        }
    }
}

pub(crate) async fn not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::not_found(format!("no route {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Binds `addr` (port 0 = any free port) and returns the bound address and the server's
/// future, which runs until `shutdown` completes.
pub async fn bind(
    config: ServerConfig,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl std::future::Future<Output = std::io::Result<()>>), ServerError> {
    let (router, state) = app(config).await?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let guard = CancelRunsOnDrop(state.runs.clone());
    Ok((local, async move {
        let _guard = guard;
        axum::serve(listener, router).with_graceful_shutdown(shutdown).await
    }))
}
