//! cellfab-registry: the run registry. Runs (id, configuration, seed, status, timings, KPIs),
//! machine state changes, final results, cell results with genealogy and labels, alarms and
//! the time series, in **SQLite** (the embedded default) or **PostgreSQL**.
//!
//! * [`Registry::open`] connects (`sqlite://path`, `sqlite::memory:`, `postgres://…`) and runs
//!   the versioned migrations of [`schema`].
//! * [`rows::EventRows`] turns plant events into rows; [`writer::spawn`] writes them in
//!   batches on their own task. The sending side blocks while the database is behind, so
//!   the plant waits (back-pressure) and no row is ever dropped.
//!
//! Both backends run the same SQL text through sqlx's `Any` driver: integers are `BIGINT`,
//! reals `DOUBLE PRECISION`, JSON documents and timestamps `TEXT`, placeholders `$n`.

pub mod rows;
pub mod schema;
pub mod writer;

pub use rows::{EventRows, Row, Series};
pub use writer::{BatchSink, WriterOptions, WriterStats};

use serde_json::Value;
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Row as _};
use std::time::Duration;

/// What can go wrong with the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The database URL is not one the registry understands.
    #[error("database = \"{0}\": must start with sqlite: or postgres:// (e.g. sqlite://data/cellfab.sqlite)")]
    Url(String),
    /// The database refused a statement or the connection failed.
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// A stored document is not valid JSON.
    #[error("stored JSON in {what} is invalid: {source}")]
    Json {
        /// Column it came from.
        what: &'static str,
        /// Parser error.
        source: serde_json::Error,
    },
    /// The writer task stopped (after an error it already reported, or at shutdown).
    #[error("the registry writer has stopped: {0}")]
    WriterStopped(String),
}

/// Result of registry operations.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Which database is behind the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file or memory database.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// One value bound to a `$n` placeholder.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    /// A `BIGINT`.
    I(i64),
    /// A `BIGINT` that may be NULL.
    OptI(Option<i64>),
    /// A `DOUBLE PRECISION` (non-finite values are stored as NULL).
    F(Option<f64>),
    /// A `TEXT`.
    T(Option<String>),
}

impl Val {
    fn text(s: impl Into<String>) -> Self {
        Val::T(Some(s.into()))
    }
    fn real(x: f64) -> Self {
        Val::F(x.is_finite().then_some(x))
    }
}

/// The bound values `$1..$4` of a machine's stage-time window: run, machine, and the window
/// `from..=to` (open sides as the widest finite bounds).
fn window_vals(run_id: &str, machine_id: &str, from: Option<f64>, to: Option<f64>) -> [Val; 4] {
    [Val::text(run_id), Val::text(machine_id), Val::real(from.unwrap_or(f64::MIN)), Val::real(to.unwrap_or(f64::MAX))]
}

/// A statement built at run time from this crate's own constant parts (table and column
/// names, placeholders): never from user input, which is always bound.
pub(crate) fn dynamic(sql: &str) -> Query<'static, Any, AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
}

pub(crate) fn bind<'q>(mut q: Query<'q, Any, AnyArguments>, vals: &'q [Val]) -> Query<'q, Any, AnyArguments> {
    for v in vals {
        q = match v {
            Val::I(i) => q.bind(*i),
            Val::OptI(i) => q.bind(*i),
            Val::F(f) => q.bind(*f),
            Val::T(t) => q.bind(t.clone()),
        };
    }
    q
}

/// A run as the registry holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// Run id (also its folder name).
    pub id: String,
    /// `api`, `start-both` or `cli`.
    pub source: String,
    /// `queued`, `running`, `finished`, `failed`, `cancelled` or `interrupted`.
    pub status: String,
    /// Master seed.
    pub seed: u64,
    /// Batches.
    pub batches: u32,
    /// Speed (`max` or a factor).
    pub speed: String,
    /// Plant epoch (plant time 0), RFC 3339.
    pub plant_start: String,
    /// Wall time the run was submitted, RFC 3339.
    pub created_at: String,
    /// Wall time it started running.
    pub started_at: Option<String>,
    /// Wall time it ended.
    pub finished_at: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Plant time of its end [s].
    pub plant_end_t_s: Option<f64>,
    /// Its run folder (the full record in files).
    pub folder: Option<String>,
    /// The full plant configuration.
    pub config: Value,
    /// Plant KPIs, when something computed them.
    pub kpis: Option<Value>,
}

/// Rows per table of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Machine on/off changes.
    pub machine_states: u64,
    /// Final results (one per machine and batch).
    pub stage_results: u64,
    /// Cells.
    pub cells: u64,
    /// Alarm events (raised and cleared).
    pub alarms: u64,
    /// Time-series samples.
    pub samples: u64,
}

/// A final result row.
#[derive(Clone, Debug, PartialEq)]
pub struct StageResultRow {
    /// Machine id.
    pub machine_id: String,
    /// `Anode`, `Cathode`, `Cell`.
    pub line: String,
    /// Stage name.
    pub stage: String,
    /// Batch.
    pub batch: u32,
    /// Plant time at the end [s].
    pub t_s: f64,
    /// End as an RFC 3339 UTC timestamp (plant epoch + `t_s`).
    pub timestamp: String,
    /// Stage duration [s].
    pub duration_s: f64,
    /// Samples emitted.
    pub samples: u64,
    /// Passed the stage's acceptance.
    pub accepted: bool,
    /// Key values.
    pub summary: Value,
}

/// One stored time-series point.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleRow {
    /// Batch.
    pub batch: u32,
    /// Stage time [s].
    pub stage_time_s: f64,
    /// Numeric fields, flattened (`a.b`), measured value where a signal has one.
    pub fields: serde_json::Map<String, Value>,
}

/// The registry: a connection pool and the schema it migrated.
#[derive(Clone, Debug)]
pub struct Registry {
    pool: AnyPool,
    backend: Backend,
}

const RUN_COLUMNS: &str = "id, source, status, seed, batches, speed, plant_start, created_at, started_at, \
                           finished_at, error, plant_end_t_s, folder, config, kpis";

impl Registry {
    /// Connects to `url` and migrates the schema to [`schema::VERSION`].
    ///
    /// `sqlite://path` creates the file if missing; `sqlite::memory:` is a private memory
    /// database (gone with the registry); `postgres://user@host:port/db` needs the database to
    /// exist.
    pub async fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (backend, memory) = if url.starts_with("sqlite:") {
            (Backend::Sqlite, url.contains(":memory:") || url.contains("mode=memory"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, false)
        } else {
            return Err(RegistryError::Url(url.to_string()));
        };
        let url = match backend {
            Backend::Sqlite if !memory && !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        options = match (backend, memory) {
            // one connection keeps a memory database alive; it must never be closed
            (Backend::Sqlite, true) => {
                options.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
            }
            (Backend::Sqlite, false) => options.max_connections(4),
            (Backend::Postgres, _) => options.max_connections(8),
        };
        if backend == Backend::Sqlite {
            options = options.after_connect(move |conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    if !memory {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                    }
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    // up to 32 MiB of pages per connection (default 2 MiB): a downsampled
                    // series reads ~2 000 scattered pages, which then stay cached
                    conn.execute("PRAGMA cache_size = -32768").await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await?;
        let registry = Self { pool, backend };
        schema::migrate(&registry).await?;
        Ok(registry)
    }

    /// The backend behind the registry.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool (for queries the registry does not offer).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Records a new run.
    pub async fn insert_run(&self, r: &RunRecord) -> Result<()> {
        let vals = vec![
            Val::text(&r.id),
            Val::text(&r.source),
            Val::text(&r.status),
            Val::text(r.seed.to_string()),
            Val::I(r.batches as i64),
            Val::text(&r.speed),
            Val::text(&r.plant_start),
            Val::text(&r.created_at),
            Val::T(r.started_at.clone()),
            Val::T(r.finished_at.clone()),
            Val::T(r.error.clone()),
            Val::F(r.plant_end_t_s),
            Val::T(r.folder.clone()),
            Val::text(r.config.to_string()),
            Val::T(r.kpis.as_ref().map(Value::to_string)),
        ];
        let sql = format!(
            "INSERT INTO runs ({RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        );
        bind(dynamic(&sql), &vals).execute(&self.pool).await?;
        Ok(())
    }

    /// A run started: its status, start time and folder.
    pub async fn set_running(&self, id: &str, started_at: &str, folder: &str) -> Result<()> {
        let vals = [Val::text("running"), Val::text(started_at), Val::text(folder), Val::text(id)];
        bind(sqlx::query("UPDATE runs SET status = $1, started_at = $2, folder = $3 WHERE id = $4"), &vals)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A run ended (`finished`, `failed`, `cancelled`).
    pub async fn set_ended(
        &self,
        id: &str,
        status: &str,
        finished_at: &str,
        error: Option<&str>,
        plant_end_t_s: Option<f64>,
    ) -> Result<()> {
        let vals = [
            Val::text(status),
            Val::text(finished_at),
            Val::T(error.map(String::from)),
            Val::F(plant_end_t_s),
            Val::text(id),
        ];
        bind(
            sqlx::query("UPDATE runs SET status = $1, finished_at = $2, error = $3, plant_end_t_s = $4 WHERE id = $5"),
            &vals,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores the plant KPIs of a run (any JSON object).
    pub async fn set_kpis(&self, id: &str, kpis: &Value) -> Result<()> {
        let vals = [Val::text(kpis.to_string()), Val::text(id)];
        bind(sqlx::query("UPDATE runs SET kpis = $1 WHERE id = $2"), &vals).execute(&self.pool).await?;
        Ok(())
    }

    /// Marks every run still `queued` or `running` as `interrupted` (call once at start-up,
    /// before any run starts). Returns how many it marked.
    pub async fn mark_interrupted(&self, finished_at: &str) -> Result<u64> {
        let vals = [Val::text(finished_at)];
        let done = bind(
            sqlx::query(
                "UPDATE runs SET status = 'interrupted', finished_at = $1 WHERE status IN ('queued', 'running')",
            ),
            &vals,
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Every run, oldest first.
    pub async fn runs(&self) -> Result<Vec<RunRecord>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at, id");
        dynamic(&sql).fetch_all(&self.pool).await?.iter().map(run_record).collect()
    }

    /// One run.
    pub async fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        let vals = [Val::text(id)];
        bind(dynamic(&sql), &vals).fetch_optional(&self.pool).await?.as_ref().map(run_record).transpose()
    }

    /// Deletes a run and all its rows.
    pub async fn delete_run(&self, id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let vals = [Val::text(id)];
        for table in schema::RUN_TABLES {
            let sql = format!("DELETE FROM {table} WHERE run_id = $1");
            bind(dynamic(&sql), &vals).execute(&mut *tx).await?;
        }
        bind(sqlx::query("DELETE FROM runs WHERE id = $1"), &vals).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Rows per table of a run.
    pub async fn counts(&self, run_id: &str) -> Result<Counts> {
        let mut n = [0u64; 5];
        let vals = [Val::text(run_id)];
        for (slot, table) in n.iter_mut().zip(schema::RUN_TABLES) {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE run_id = $1");
            let row = bind(dynamic(&sql), &vals).fetch_one(&self.pool).await?;
            *slot = row.try_get::<i64, _>(0)? as u64;
        }
        Ok(Counts { machine_states: n[0], stage_results: n[1], cells: n[2], alarms: n[3], samples: n[4] })
    }

    /// Final results of a run, in the order they finished.
    pub async fn stage_results(&self, run_id: &str) -> Result<Vec<StageResultRow>> {
        let vals = [Val::text(run_id)];
        let rows = bind(
            sqlx::query(
                "SELECT machine_id, line, stage, batch, t_s, ts, duration_s, samples, accepted, summary \
                 FROM stage_results WHERE run_id = $1 ORDER BY seq",
            ),
            &vals,
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StageResultRow {
                    machine_id: r.try_get(0)?,
                    line: r.try_get(1)?,
                    stage: r.try_get(2)?,
                    batch: r.try_get::<i64, _>(3)? as u32,
                    t_s: r.try_get(4)?,
                    timestamp: r.try_get(5)?,
                    duration_s: r.try_get(6)?,
                    samples: r.try_get::<i64, _>(7)? as u64,
                    accepted: r.try_get::<i64, _>(8)? != 0,
                    summary: json(r.try_get(9)?, "stage_results.summary")?,
                })
            })
            .collect()
    }

    /// Cells per grade.
    pub async fn cell_grades(&self, run_id: &str) -> Result<Vec<(String, u64)>> {
        let vals = [Val::text(run_id)];
        let rows = bind(
            sqlx::query("SELECT grade, COUNT(*) FROM cells WHERE run_id = $1 GROUP BY grade ORDER BY grade"),
            &vals,
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get::<i64, _>(1)? as u64))).collect()
    }

    /// A machine's stored time series, ordered by batch and stage time, optionally limited to
    /// stage times in `from..=to`.
    pub async fn samples(
        &self,
        run_id: &str,
        machine_id: &str,
        from: Option<f64>,
        to: Option<f64>,
    ) -> Result<Vec<SampleRow>> {
        let vals = window_vals(run_id, machine_id, from, to);
        let rows = bind(
            sqlx::query(
                "SELECT batch, stage_time_s, fields FROM samples \
                 WHERE run_id = $1 AND machine_id = $2 AND stage_time_s >= $3 AND stage_time_s <= $4 \
                 ORDER BY batch, stage_time_s, idx",
            ),
            &vals,
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(sample_row).collect()
    }

    /// A machine's series downsampled in the database: the number of stored points in
    /// `from..=to` and at most `max_points` of them, evenly spaced in the order of
    /// [`Registry::samples`], first and last kept (positions `round(j (n-1) / (max-1))`, see
    /// [`downsample_positions`]).
    ///
    /// Every row the writer stored in series order carries its position in the machine's
    /// series (`samples.seq`), so the count and the picks are index probes: `O(max log n)`,
    /// independent of `n`. With a window, two probes per batch find the range of positions
    /// the window covers in that batch. Rows without a position (inserted by other means, or
    /// a machine whose events arrived out of order) are ranked in SQL instead (`O(n log n)`).
    /// Only the picked rows' documents leave the database.
    pub async fn samples_downsampled(
        &self,
        run_id: &str,
        machine_id: &str,
        from: Option<f64>,
        to: Option<f64>,
        max_points: usize,
    ) -> Result<(u64, Vec<SampleRow>)> {
        let key = [Val::text(run_id), Val::text(machine_id)];
        let unranked = bind(
            sqlx::query("SELECT 1 FROM samples WHERE run_id = $1 AND machine_id = $2 AND seq IS NULL LIMIT 1"),
            &key,
        )
        .fetch_optional(&self.pool)
        .await?
        .is_some();
        if unranked {
            return self.samples_ranked_in_sql(run_id, machine_id, from, to, max_points).await;
        }
        // the series as ranges of positions (first seq, rows), in series order
        let segments: Vec<(i64, u64)> = if from.is_none() && to.is_none() {
            let last = bind(
                sqlx::query("SELECT seq FROM samples WHERE run_id = $1 AND machine_id = $2 ORDER BY seq DESC LIMIT 1"),
                &key,
            )
            .fetch_optional(&self.pool)
            .await?;
            match last {
                Some(r) => vec![(0, r.try_get::<i64, _>(0)? as u64 + 1)],
                None => Vec::new(),
            }
        } else {
            self.window_segments(run_id, machine_id, from, to).await?
        };
        let total: u64 = segments.iter().map(|s| s.1).sum();
        let mut seqs = Vec::new();
        let mut segment = segments.iter().copied();
        let (mut current, mut before) = (segment.next(), 0u64);
        for k in downsample_positions(total, max_points) {
            while let Some((first, rows)) = current {
                if k < before + rows {
                    seqs.push(first + (k - before) as i64);
                    break;
                }
                before += rows;
                current = segment.next();
            }
        }
        if seqs.is_empty() {
            return Ok((total, Vec::new()));
        }
        // the positions are integers computed here, written as literals
        let list = seqs.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT batch, stage_time_s, fields FROM samples WHERE run_id = $1 AND machine_id = $2 \
             AND seq IN ({list}) ORDER BY seq"
        );
        let rows = bind(dynamic(&sql), &key).fetch_all(&self.pool).await?;
        Ok((total, rows.iter().map(sample_row).collect::<Result<Vec<_>>>()?))
    }

    /// Per batch of the machine, the range of positions (first seq, rows) whose stage time is
    /// in `from..=to`: the first and the last row of the window, found on the
    /// `samples_order` index (batches are enumerated by skipping along the same index).
    async fn window_segments(
        &self,
        run_id: &str,
        machine_id: &str,
        from: Option<f64>,
        to: Option<f64>,
    ) -> Result<Vec<(i64, u64)>> {
        let vals = window_vals(run_id, machine_id, from, to);
        let rows = bind(
            sqlx::query(
                "WITH RECURSIVE b(batch) AS ( \
                 SELECT MIN(batch) FROM samples WHERE run_id = $1 AND machine_id = $2 \
                 UNION ALL \
                 SELECT (SELECT MIN(s.batch) FROM samples s WHERE s.run_id = $1 AND s.machine_id = $2 \
                 AND s.batch > b.batch) FROM b WHERE b.batch IS NOT NULL) \
                 SELECT (SELECT s.seq FROM samples s WHERE s.run_id = $1 AND s.machine_id = $2 AND s.batch = b.batch \
                 AND s.stage_time_s >= $3 ORDER BY s.stage_time_s, s.idx LIMIT 1), \
                 (SELECT s.seq FROM samples s WHERE s.run_id = $1 AND s.machine_id = $2 AND s.batch = b.batch \
                 AND s.stage_time_s <= $4 ORDER BY s.stage_time_s DESC, s.idx DESC LIMIT 1) \
                 FROM b WHERE b.batch IS NOT NULL ORDER BY b.batch",
            ),
            &vals,
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            if let (Some(lo), Some(hi)) = (r.try_get::<Option<i64>, _>(0)?, r.try_get::<Option<i64>, _>(1)?) {
                if lo <= hi {
                    out.push((lo, (hi - lo + 1) as u64));
                }
            }
        }
        Ok(out)
    }

    /// [`Registry::samples_downsampled`] for rows without a stored position: counts the
    /// window, then ranks every row of it in SQL and keeps the picked ranks.
    async fn samples_ranked_in_sql(
        &self,
        run_id: &str,
        machine_id: &str,
        from: Option<f64>,
        to: Option<f64>,
        max_points: usize,
    ) -> Result<(u64, Vec<SampleRow>)> {
        let vals = window_vals(run_id, machine_id, from, to);
        const WINDOW: &str = "run_id = $1 AND machine_id = $2 AND stage_time_s >= $3 AND stage_time_s <= $4";
        let count =
            bind(dynamic(&format!("SELECT COUNT(*) FROM samples WHERE {WINDOW}")), &vals).fetch_one(&self.pool).await?;
        let total = count.try_get::<i64, _>(0)? as u64;
        let picks = downsample_positions(total, max_points);
        if picks.is_empty() {
            return Ok((total, Vec::new()));
        }
        // the picks are computed here (SQL's ROUND differs between the backends at .5), and
        // written as integer literals
        let list = picks.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "WITH keys AS (SELECT batch, idx, ROW_NUMBER() OVER (ORDER BY batch, stage_time_s, idx) - 1 AS k \
             FROM samples WHERE {WINDOW}) \
             SELECT s.batch, s.stage_time_s, s.fields FROM keys JOIN samples s \
             ON s.run_id = $1 AND s.machine_id = $2 AND s.batch = keys.batch AND s.idx = keys.idx \
             WHERE keys.k IN ({list}) ORDER BY keys.k"
        );
        let rows = bind(dynamic(&sql), &vals).fetch_all(&self.pool).await?;
        Ok((total, rows.iter().map(sample_row).collect::<Result<Vec<_>>>()?))
    }

    /// Writes rows in one transaction, as multi-row inserts.
    pub async fn write(&self, rows: &[Row]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for table in rows::Table::ALL {
            let cols = table.columns();
            let mut vals: Vec<Val> = Vec::new();
            let mut n = 0usize;
            // at most ~30 000 parameters per statement (SQLite's limit is 32 766)
            let per_statement = 30_000 / cols.len();
            let flush = |vals: &mut Vec<Val>, n: &mut usize| {
                let sql = insert_sql(table.name(), cols, *n);
                let vals = std::mem::take(vals);
                *n = 0;
                (sql, vals)
            };
            let mut statements = Vec::new();
            for row in rows.iter().filter(|r| r.table() == table) {
                row.values(&mut vals);
                n += 1;
                if n == per_statement {
                    statements.push(flush(&mut vals, &mut n));
                }
            }
            if n > 0 {
                statements.push(flush(&mut vals, &mut n));
            }
            for (sql, vals) in &statements {
                bind(dynamic(sql), vals).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

fn insert_sql(table: &str, cols: &[&str], rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", cols.join(", "));
    let mut k = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..cols.len() {
            k += 1;
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&k.to_string());
        }
        sql.push(')');
    }
    sql
}

/// Positions of at most `max_points` (at least 2) points spread evenly over a series of `n`:
/// every position when `n <= max_points`, else `round(j (n-1) / (max_points-1))` for
/// `j = 0..max_points` (first and last kept, no repeats).
pub fn downsample_positions(n: u64, max_points: usize) -> Vec<u64> {
    let max = max_points.max(2) as u64;
    if n <= max {
        return (0..n).collect();
    }
    let mut out: Vec<u64> = (0..max).map(|j| ((j as f64) * (n - 1) as f64 / (max - 1) as f64).round() as u64).collect();
    out.dedup();
    out
}

fn sample_row(r: &AnyRow) -> Result<SampleRow> {
    let fields = match json(r.try_get(2)?, "samples.fields")? {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    Ok(SampleRow { batch: r.try_get::<i64, _>(0)? as u32, stage_time_s: r.try_get(1)?, fields })
}

fn json(text: Option<String>, what: &'static str) -> Result<Value> {
    match text {
        None => Ok(Value::Null),
        Some(t) => serde_json::from_str(&t).map_err(|source| RegistryError::Json { what, source }),
    }
}

fn run_record(r: &AnyRow) -> Result<RunRecord> {
    let seed: String = r.try_get(3)?;
    Ok(RunRecord {
        id: r.try_get(0)?,
        source: r.try_get(1)?,
        status: r.try_get(2)?,
        seed: seed.parse().unwrap_or_default(),
        batches: r.try_get::<i64, _>(4)? as u32,
        speed: r.try_get(5)?,
        plant_start: r.try_get(6)?,
        created_at: r.try_get(7)?,
        started_at: r.try_get(8)?,
        finished_at: r.try_get(9)?,
        error: r.try_get(10)?,
        plant_end_t_s: r.try_get(11)?,
        folder: r.try_get(12)?,
        config: json(r.try_get(13)?, "runs.config")?,
        kpis: match json(r.try_get(14)?, "runs.kpis")? {
            Value::Null => None,
            v => Some(v),
        },
    })
}
