//! The schema and its versioned migrations.
//!
//! `schema_migrations` records every applied version. At start-up [`migrate`] applies, in
//! order and each in its own transaction, every migration newer than the recorded version.
//! A database newer than this build is refused rather than guessed at. Migrations are never
//! edited once released: a change is a new entry at the end of [`MIGRATIONS`].

use crate::{bind, Registry, RegistryError, Result, Val};
use sqlx::Row as _;

/// Tables holding rows of a run (each has a `run_id` column), in [`crate::Counts`] order.
pub const RUN_TABLES: [&str; 5] = ["machine_states", "stage_results", "cells", "alarms", "samples"];

/// One migration: its version, a name and its statements (the same text on both backends).
pub struct Migration {
    /// Version, from 1, without gaps.
    pub version: i64,
    /// What it does.
    pub name: &'static str,
    /// Statements, run in order.
    pub statements: &'static [&'static str],
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "runs, machine states, stage results, cells, alarms, samples",
        statements: &[
            "CREATE TABLE runs (
                id TEXT PRIMARY KEY,
                source TEXT NOT NULL,
                status TEXT NOT NULL,
                seed TEXT NOT NULL,
                batches BIGINT NOT NULL,
                speed TEXT NOT NULL,
                plant_start TEXT NOT NULL,
                created_at TEXT NOT NULL,
                started_at TEXT,
                finished_at TEXT,
                error TEXT,
                plant_end_t_s DOUBLE PRECISION,
                folder TEXT,
                config TEXT NOT NULL,
                kpis TEXT
            )",
            "CREATE TABLE machine_states (
                run_id TEXT NOT NULL,
                seq BIGINT NOT NULL,
                machine_id TEXT NOT NULL,
                line TEXT NOT NULL,
                stage TEXT NOT NULL,
                batch BIGINT NOT NULL,
                state TEXT NOT NULL,
                t_s DOUBLE PRECISION NOT NULL,
                ts_ms BIGINT NOT NULL,
                PRIMARY KEY (run_id, seq)
            )",
            "CREATE TABLE stage_results (
                run_id TEXT NOT NULL,
                seq BIGINT NOT NULL,
                machine_id TEXT NOT NULL,
                line TEXT NOT NULL,
                stage TEXT NOT NULL,
                batch BIGINT NOT NULL,
                t_s DOUBLE PRECISION NOT NULL,
                ts TEXT NOT NULL,
                ts_ms BIGINT NOT NULL,
                start_t_s DOUBLE PRECISION NOT NULL,
                duration_s DOUBLE PRECISION NOT NULL,
                wall_s DOUBLE PRECISION,
                samples BIGINT NOT NULL,
                accepted BIGINT NOT NULL,
                summary TEXT NOT NULL,
                result TEXT NOT NULL,
                PRIMARY KEY (run_id, seq)
            )",
            "CREATE TABLE cells (
                run_id TEXT NOT NULL,
                seq BIGINT NOT NULL,
                cell_id TEXT NOT NULL,
                batch BIGINT NOT NULL,
                lane BIGINT NOT NULL,
                index_in_lane BIGINT NOT NULL,
                anode_reel_id TEXT NOT NULL,
                cathode_reel_id TEXT NOT NULL,
                anode_coating_start_m DOUBLE PRECISION,
                anode_coating_end_m DOUBLE PRECISION,
                cathode_coating_start_m DOUBLE PRECISION,
                cathode_coating_end_m DOUBLE PRECISION,
                splice BIGINT NOT NULL,
                defect_ids TEXT NOT NULL,
                fault_labels TEXT NOT NULL,
                grade TEXT NOT NULL,
                design_capacity_ah DOUBLE PRECISION,
                discharge_capacity_ah DOUBLE PRECISION,
                first_cycle_efficiency_frac DOUBLE PRECISION,
                dcr_10s_ohm DOUBLE PRECISION,
                k_value_mv_per_day DOUBLE PRECISION,
                specific_energy_wh_kg DOUBLE PRECISION,
                data TEXT NOT NULL,
                PRIMARY KEY (run_id, seq)
            )",
            "CREATE TABLE alarms (
                run_id TEXT NOT NULL,
                seq BIGINT NOT NULL,
                batch BIGINT NOT NULL,
                machine_id TEXT NOT NULL,
                line TEXT NOT NULL,
                stage TEXT NOT NULL,
                code TEXT NOT NULL,
                severity TEXT NOT NULL,
                state TEXT NOT NULL,
                signal TEXT NOT NULL,
                value DOUBLE PRECISION,
                threshold DOUBLE PRECISION,
                t_s DOUBLE PRECISION NOT NULL,
                ts_ms BIGINT NOT NULL,
                message TEXT NOT NULL,
                data TEXT NOT NULL,
                PRIMARY KEY (run_id, seq)
            )",
            "CREATE TABLE samples (
                run_id TEXT NOT NULL,
                machine_id TEXT NOT NULL,
                line TEXT NOT NULL,
                stage TEXT NOT NULL,
                batch BIGINT NOT NULL,
                idx BIGINT NOT NULL,
                t_s DOUBLE PRECISION NOT NULL,
                stage_time_s DOUBLE PRECISION NOT NULL,
                ts_ms BIGINT NOT NULL,
                fields TEXT NOT NULL,
                PRIMARY KEY (run_id, machine_id, batch, idx)
            )",
            "CREATE INDEX samples_time ON samples (machine_id, ts_ms)",
            "CREATE INDEX stage_results_machine ON stage_results (machine_id, batch)",
            "CREATE INDEX alarms_time ON alarms (ts_ms)",
            "CREATE INDEX runs_created ON runs (created_at)",
        ],
    },
    Migration {
        version: 2,
        name: "samples: per-machine sequence number in series order, indexes for downsampling",
        statements: &[
            // position of the row in its machine's series (order batch, stage_time_s, idx), from 0;
            // NULL where the writer could not vouch for the order (see rows::EventRows)
            "ALTER TABLE samples ADD COLUMN seq BIGINT",
            "UPDATE samples SET seq = r.k FROM (SELECT run_id, machine_id, batch, idx, \
         ROW_NUMBER() OVER (PARTITION BY run_id, machine_id ORDER BY batch, stage_time_s, idx) - 1 AS k \
         FROM samples) AS r \
         WHERE samples.run_id = r.run_id AND samples.machine_id = r.machine_id \
         AND samples.batch = r.batch AND samples.idx = r.idx",
            "CREATE INDEX samples_seq ON samples (run_id, machine_id, seq)",
            "CREATE INDEX samples_order ON samples (run_id, machine_id, batch, stage_time_s, idx, seq)",
        ],
    },
];

/// The schema version this build writes.
pub const VERSION: i64 = 2;

/// Brings the database to [`VERSION`].
pub async fn migrate(registry: &Registry) -> Result<()> {
    let pool = registry.pool();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
         applied_at TEXT NOT NULL)",
    )
    .execute(pool)
    .await?;
    let current = version(registry).await?;
    if current > VERSION {
        return Err(RegistryError::Sql(sqlx::Error::Protocol(format!(
            "the database has schema version {current}, newer than this build's {VERSION}: upgrade cellfab"
        ))));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let mut tx = pool.begin().await?;
        for statement in m.statements {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        let vals = [Val::I(m.version), Val::text(m.name), Val::text(jiff::Timestamp::now().to_string())];
        bind(sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)"), &vals)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// The highest applied migration (0 for an empty database).
pub async fn version(registry: &Registry) -> Result<i64> {
    let row = sqlx::query("SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_migrations")
        .fetch_one(registry.pool())
        .await?;
    Ok(row.try_get::<i64, _>(0)?)
}
