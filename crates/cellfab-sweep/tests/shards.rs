//! A sweep run whole and as three shards writes the same rows, and one point re-run alone
//! reproduces its rows bit for bit.

use cellfab_sweep::dataset::{parquet_files, read_rows};
use cellfab_sweep::{rerun_point, run_shard, RunOptions, Shard, Sweep, SweepSpec};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

const SPEC: &str = r#"
seed = 11
method = "lhs"
points = 6
cells_per_point = 8
points_per_part = 2

[[param]]
path = "cathode.calendaring.line_load_n_m"
min = 4.5e5
max = 6.5e5

[[param]]
path = "cell.aging.temperature_degc"
min = 20
max = 35
"#;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cellfab-sweep-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn sweep() -> Sweep {
    Sweep::resolve(SweepSpec::from_toml(SPEC).unwrap(), Path::new(".")).unwrap()
}

fn rows(root: &Path, table: &str) -> Vec<Map<String, Value>> {
    let mut rows: Vec<Map<String, Value>> =
        parquet_files(&root.join(table)).iter().flat_map(|f| read_rows(f).unwrap()).collect();
    let key = |r: &Map<String, Value>| (r["point"].as_u64().unwrap(), r.get("cell_id").map(|c| c.to_string()));
    rows.sort_by_key(key);
    rows
}

#[test]
fn three_shards_union_equals_the_whole_sweep_row_for_row_and_one_point_reruns_exactly() {
    let s = sweep();
    let whole = dir("whole");
    let summary = run_shard(&s, &RunOptions { out: whole.clone(), shard: Shard::WHOLE, threads: 2 }, &|_| {}).unwrap();
    assert_eq!(summary.points_run, 6);
    assert_eq!(summary.rows, 6 * 8);

    let sharded = dir("sharded");
    for k in 1..=3 {
        let opts = RunOptions { out: sharded.clone(), shard: Shard { k, n: 3 }, threads: 1 };
        let r = run_shard(&s, &opts, &|_| {}).unwrap();
        assert_eq!(r.points, 2);
    }
    assert_eq!(parquet_files(&sharded.join("cells")).len(), 3);
    let (a, b) = (rows(&whole, "cells"), rows(&sharded, "cells"));
    assert_eq!(a.len(), 48);
    assert_eq!(a, b, "cells differ between whole and sharded runs");
    assert_eq!(rows(&whole, "points"), rows(&sharded, "points"));
    assert_eq!(std::fs::read(whole.join("sweep.json")).unwrap(), std::fs::read(sharded.join("sweep.json")).unwrap());

    // Every key of cell_results.jsonl has a column; the swept values are in every row.
    let columns: Vec<String> = s.cell_columns().into_iter().map(|c| c.name).collect();
    for key in a[0].keys() {
        assert!(columns.contains(key), "column {key} missing");
    }
    let p4 = s.point(4);
    let row4 = a.iter().find(|r| r["point"] == 4).unwrap();
    assert_eq!(row4["cathode__calendaring__line_load_n_m"].as_f64().unwrap(), p4.values[0]);
    assert_eq!(row4["point_seed"].as_u64().unwrap(), p4.seed);

    // Different points give different cells (the swept fields and seeds matter).
    let cap = |p: u64| a.iter().find(|r| r["point"] == p).unwrap()["discharge_capacity_ah"].clone();
    assert_ne!(cap(0), cap(1));

    let (_, rerun_dir) = rerun_point(&s, 4, &whole).unwrap();
    let alone = read_rows(&rerun_dir.join("cells.parquet")).unwrap();
    let in_sweep: Vec<_> = a.iter().filter(|r| r["point"] == 4).cloned().collect();
    assert_eq!(alone.len(), 8);
    let mut alone_sorted = alone.clone();
    alone_sorted.sort_by_key(|r| r["cell_id"].to_string());
    assert_eq!(alone_sorted, in_sweep, "point 4 alone differs from its rows in the sweep");

    std::fs::remove_dir_all(&whole).unwrap();
    std::fs::remove_dir_all(&sharded).unwrap();
}

#[test]
fn a_killed_shard_resumes_keeping_finished_parts_and_another_sweep_is_refused() {
    let s = sweep();
    let out = dir("resume");
    let opts = RunOptions { out: out.clone(), shard: Shard { k: 2, n: 2 }, threads: 1 };
    run_shard(&s, &opts, &|_| {}).unwrap();
    let again = run_shard(&s, &opts, &|_| {}).unwrap();
    assert_eq!(again.points_run, 0, "finished parts are kept");

    let other =
        Sweep::resolve(SweepSpec::from_toml(&SPEC.replace("seed = 11", "seed = 12")).unwrap(), Path::new(".")).unwrap();
    let e = run_shard(&other, &opts, &|_| {}).unwrap_err().to_string();
    assert!(e.contains("different sweep"), "{e}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn an_invalid_point_stops_the_sweep_before_anything_is_written() {
    let spec = SPEC.replace("min = 20\nmax = 35", "min = 20\nmax = 95");
    let s = Sweep::resolve(SweepSpec::from_toml(&spec).unwrap(), Path::new(".")).unwrap();
    let out = dir("invalid");
    let e = run_shard(&s, &RunOptions { out: out.clone(), shard: Shard::WHOLE, threads: 1 }, &|_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("cell.aging.temperature_degc") && e.contains("allowed"), "{e}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn shard_selection_is_checked() {
    assert!(Shard::parse("0/3").is_err());
    assert!(Shard::parse("4/3").is_err());
    assert!(Shard::parse("x").is_err());
    assert_eq!(Shard::parse("2/3").unwrap(), Shard { k: 2, n: 3 });
    let e = rerun_point(&sweep(), 6, Path::new("/nonexistent")).unwrap_err().to_string();
    assert!(e.contains("allowed 0 to 5"), "{e}");
}
