//! The samples endpoint's downsampling in the database picks exactly the points the
//! reference formula picks (first and last kept, positions round(j (n-1)/(max-1))), on
//! SQLite and PostgreSQL, with and without a stage-time window.

mod common;

use cellfab_registry::Registry;
use common::*;

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
/// fields {"pos": position in the series}.
async fn store(registry: &Registry, run: &str, machine: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let mut sql = String::from(
            "INSERT INTO samples (run_id, machine_id, line, stage, batch, idx, t_s, stage_time_s, ts_ms, fields) VALUES ",
        );
        for (k, i) in chunk.iter().enumerate() {
            if k > 0 {
                sql.push(',');
            }
            let (batch, idx) = (i / 1000 + 1, i % 1000);
            sql.push_str(&format!(
                "('{run}', '{machine}', 'Anode', 'coating', {batch}, {idx}, {idx}.0, {idx}.0, 0, '{{\"pos\": {i}}}')"
            ));
        }
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(registry.pool()).await.expect("insert");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downsampled_samples_are_the_points_the_reference_rule_picks() {
    for (backend, url) in backends("downsample").await {
        let registry = Registry::open(&url).await.unwrap_or_else(|e| panic!("{backend}: {e}"));
        for n in [0usize, 1, 2, 5, 1999, 2000, 2001, 4321] {
            let run = format!("run-{n}");
            store(&registry, &run, "MC_Coat_Anode", n).await;
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
        }
        registry.close().await;
    }
}
