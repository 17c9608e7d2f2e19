//! The samples endpoint's downsampling in the database picks exactly the points the
//! reference formula picks (first and last kept, positions round(j (n-1)/(max-1))), on
//! SQLite and PostgreSQL, with and without a stage-time window, both from the stored series
//! positions (`samples.seq`, index probes) and for rows without them (ranked in SQL), and
//! after migrating a database written before positions existed.

mod common;

use cellfab_registry::{Registry, Series, WriterOptions};
use common::*;
use sqlx::Row as _;

/// Positions of at most `max` points spread evenly over `n` (the endpoint's documented rule).
fn reference(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    let mut out: Vec<usize> =
        (0..max).map(|k| ((k as f64) * (n - 1) as f64 / (max - 1) as f64).round() as usize).collect();
    out.dedup();
    out
}

/// Stores `n` samples of machine `m` in run `r`: 1 000 per batch, stage time = index,
/// fields {"pos": position in the series}; with `seq`, the position in the series as the
/// writer stores it, else no position (NULL: rows written by other means).
async fn store(registry: &Registry, run: &str, machine: &str, n: usize, seq: bool) {
    // inserted in reverse order: the answer must not depend on the physical order
    let all: Vec<usize> = (0..n).rev().collect();
    for chunk in all.chunks(2000) {
        let mut sql = String::from(
            "INSERT INTO samples (run_id, machine_id, line, stage, batch, idx, t_s, stage_time_s, ts_ms, fields, seq) \
             VALUES ",
        );
        for (k, i) in chunk.iter().enumerate() {
            if k > 0 {
                sql.push(',');
            }
            let (batch, idx) = (i / 1000 + 1, i % 1000);
            sql.push_str(&format!(
                "('{run}', '{machine}', 'Anode', 'coating', {batch}, {idx}, {idx}.0, {idx}.0, 0, '{{\"pos\": {i}}}', {})",
                if seq { i.to_string() } else { "NULL".to_string() }
            ));
        }
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(registry.pool()).await.expect("insert");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downsampled_samples_are_the_points_the_reference_rule_picks() {
    for (backend, url) in backends("downsample").await {
        let registry = Registry::open(&url).await.unwrap_or_else(|e| panic!("{backend}: {e}"));
        for seq in [true, false] {
            check_reference_rule(&registry, &format!("{backend} seq={seq}"), seq).await;
        }
        registry.close().await;
    }
}

/// Every case of the reference test on series stored with or without positions.
async fn check_reference_rule(registry: &Registry, backend: &str, seq: bool) {
    for n in [0usize, 1, 2, 5, 1999, 2000, 2001, 4321] {
        {
            let run = format!("run-{n}-{seq}");
            store(registry, &run, "MC_Coat_Anode", n, seq).await;
            for max in [2usize, 3, 7, 2000] {
                let (total, rows) =
                    registry.samples_downsampled(&run, "MC_Coat_Anode", None, None, max).await.expect("query");
                assert_eq!(total, n as u64, "{backend} n={n} max={max}");
                let got: Vec<usize> = rows.iter().map(|r| r.fields["pos"].as_u64().expect("pos") as usize).collect();
                assert_eq!(got, reference(n, max), "{backend} n={n} max={max}");
            }
            // a window on stage time: positions within the filtered series
            let (total, rows) =
                registry.samples_downsampled(&run, "MC_Coat_Anode", Some(100.0), Some(199.0), 7).await.expect("query");
            let kept: Vec<usize> = (0..n).filter(|i| (100..=199).contains(&(i % 1000))).collect();
            assert_eq!(total, kept.len() as u64, "{backend} n={n} window");
            let got: Vec<usize> = rows.iter().map(|r| r.fields["pos"].as_u64().expect("pos") as usize).collect();
            let want: Vec<usize> = reference(kept.len(), 7).into_iter().map(|k| kept[k]).collect();
            assert_eq!(got, want, "{backend} n={n} window");
            // another machine of the same run is not mixed in
            assert_eq!(registry.samples_downsampled(&run, "MC_Dry_Anode", None, None, 7).await.expect("q").0, 0);
            // a window that holds nothing, and windows open on one side
            let (total, rows) =
                registry.samples_downsampled(&run, "MC_Coat_Anode", Some(5000.0), None, 7).await.expect("query");
            assert_eq!((total, rows.len()), (0, 0), "{backend} n={n} empty window");
            for (from, to) in [(Some(990.0), None), (None, Some(3.0))] {
                let (total, rows) =
                    registry.samples_downsampled(&run, "MC_Coat_Anode", from, to, 5).await.expect("query");
                let kept: Vec<usize> = (0..n)
                    .filter(|i| {
                        from.is_none_or(|f| (i % 1000) as f64 >= f) && to.is_none_or(|t| (i % 1000) as f64 <= t)
                    })
                    .collect();
                assert_eq!(total, kept.len() as u64, "{backend} n={n} {from:?}..{to:?}");
                let got: Vec<usize> = rows.iter().map(|r| r.fields["pos"].as_u64().expect("pos") as usize).collect();
                let want: Vec<usize> = reference(kept.len(), 5).into_iter().map(|k| kept[k]).collect();
                assert_eq!(got, want, "{backend} n={n} {from:?}..{to:?}");
            }
        }
    }
}

/// The positions the writer stores (`samples.seq`) are 0, 1, 2, … in series order (batch,
/// stage time, index) for every machine of a real run, and the endpoint's picks on them are
/// the reference rule's picks of the full series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_stores_each_machines_series_position() {
    for (backend, url) in backends("series-position").await {
        let registry = Registry::open(&url).await.unwrap_or_else(|e| panic!("{backend}: {e}"));
        let out = tmp(&format!("series-position-{backend}"));
        record_run(&registry, small_plant(2, 8, 7), &out, "r", Series::Full, WriterOptions::default()).await;
        let unranked: i64 = sqlx::query("SELECT COUNT(*) FROM samples WHERE seq IS NULL")
            .fetch_one(registry.pool())
            .await
            .unwrap()
            .get(0);
        assert_eq!(unranked, 0, "{backend}: every row has its position");
        let wrong: i64 = sqlx::query(
            "SELECT COUNT(*) FROM (SELECT seq, ROW_NUMBER() OVER (PARTITION BY machine_id \
             ORDER BY batch, stage_time_s, idx) - 1 AS k FROM samples WHERE run_id = 'r') x WHERE seq <> k",
        )
        .fetch_one(registry.pool())
        .await
        .unwrap()
        .get(0);
        assert_eq!(wrong, 0, "{backend}: positions follow the series order");
        let machines: Vec<String> = sqlx::query("SELECT DISTINCT machine_id FROM samples ORDER BY machine_id")
            .fetch_all(registry.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(machines.len() >= 10, "{backend}: {machines:?}");
        for m in &machines {
            let all = registry.samples("r", m, None, None).await.unwrap();
            let (total, got) = registry.samples_downsampled("r", m, None, None, 7).await.unwrap();
            assert_eq!(total, all.len() as u64, "{backend} {m}");
            let want: Vec<_> = reference(all.len(), 7).into_iter().map(|k| all[k].clone()).collect();
            assert_eq!(got, want, "{backend} {m}");
            let window = registry.samples("r", m, Some(10.0), Some(400.0)).await.unwrap();
            let (total, got) = registry.samples_downsampled("r", m, Some(10.0), Some(400.0), 5).await.unwrap();
            assert_eq!(total, window.len() as u64, "{backend} {m} window");
            let want: Vec<_> = reference(window.len(), 5).into_iter().map(|k| window[k].clone()).collect();
            assert_eq!(got, want, "{backend} {m} window");
        }
        registry.close().await;
    }
}

/// A database written by schema version 1 (no positions) migrates: its rows get their
/// positions in series order, and the downsampling answers as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_gets_series_positions_by_migration() {
    for (backend, url) in backends("migrate-seq").await {
        sqlx::any::install_default_drivers();
        let url = if backend == "sqlite" { format!("{url}?mode=rwc") } else { url };
        let pool = sqlx::AnyPool::connect(&url).await.unwrap_or_else(|e| panic!("{backend}: {e}"));
        sqlx::query(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        for statement in cellfab_registry::schema::MIGRATIONS[0].statements {
            sqlx::query(*statement).execute(&pool).await.unwrap();
        }
        sqlx::query("INSERT INTO schema_migrations VALUES (1, 'v1', '2026-01-01T00:00:00Z')")
            .execute(&pool)
            .await
            .unwrap();
        // two machines, 2 500 rows each, inserted newest first, stage times not in index order
        for m in ["MC_A", "MC_B"] {
            let mut sql = String::from(
                "INSERT INTO samples (run_id, machine_id, line, stage, batch, idx, t_s, stage_time_s, ts_ms, fields) VALUES ",
            );
            for i in (0..2500usize).rev() {
                let (batch, idx) = (i / 1000 + 1, i % 1000);
                let st = (999 - idx) as f64; // the series order runs against the index
                if i < 2499 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "('r', '{m}', 'Anode', 'coating', {batch}, {idx}, 0.0, {st}, 0, '{{\"i\": {i}}}')"
                ));
            }
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
        }
        pool.close().await;

        let registry = Registry::open(&url).await.unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert_eq!(cellfab_registry::schema::version(&registry).await.unwrap(), cellfab_registry::schema::VERSION);
        for m in ["MC_A", "MC_B"] {
            let seqs: Vec<i64> = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT seq FROM samples WHERE machine_id = '{m}' ORDER BY batch, stage_time_s, idx"
            )))
            .fetch_all(registry.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
            assert_eq!(seqs, (0..2500).collect::<Vec<i64>>(), "{backend} {m}: backfilled in series order");
            let all = registry.samples("r", m, None, None).await.unwrap();
            for (from, to, max) in [(None, None, 7), (Some(100.0), Some(899.0), 11)] {
                let window = registry.samples("r", m, from, to).await.unwrap();
                let (total, got) = registry.samples_downsampled("r", m, from, to, max).await.unwrap();
                assert_eq!(total, window.len() as u64, "{backend} {m}");
                let want: Vec<_> = reference(window.len(), max).into_iter().map(|k| window[k].clone()).collect();
                assert_eq!(got, want, "{backend} {m} {from:?}");
            }
            assert_eq!(all.len(), 2500);
        }
        registry.close().await;
    }
}
