//! cellfab-sweep: parameter studies over any configuration fields, run in parallel (rayon),
//! split into shards for a cluster, written as a partitioned Parquet dataset.
//!
//! ```text
//!   SWEEP.toml ─► Sweep (design) ─► shard K/N: points i with i mod N = K − 1
//!                                      │  parts of `points_per_part` points, each part:
//!                                      │  points on the rayon pool ─► one Plant per point (threads = 1)
//!                                      ▼
//!   OUT/sweep.json                          the resolved spec, identical for every shard
//!   OUT/cells/shard=K-of-N/part-NNNNN.parquet   one row per cell
//!   OUT/points/shard=K-of-N/part-NNNNN.parquet  one row per point (lot statistics)
//!   OUT/_shards/shard=K-of-N.json           rows, wall time, points/s, rows/s of that shard
//! ```
//!
//! A point is a value: its configuration is the base with the swept fields set and the plant
//! seed `derive_seed(sweep seed, [POINT_STREAM, i])`, so it gives the same rows on any shard,
//! thread or machine, and alone (`run_point`). A part file that already exists is kept, so a
//! shard that was killed resumes where it stopped.

pub mod dataset;
pub mod error;
pub mod spec;

pub use error::SweepError;
pub use spec::{Method, Point, Sweep, SweepSpec};

use cellfab_plant::{Delivery, Plant, PlantEvent};
use dataset::{Column, Kind, CELL_COLUMNS, POINT_STAT_COLUMNS};
use rayon::prelude::*;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Format tag written to `sweep.json`.
pub const FORMAT: &str = "cellfab-sweep/1";

/// Shard K of N (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard, 1..=n.
    pub k: u32,
    /// Number of shards.
    pub n: u32,
}

impl Shard {
    /// The whole sweep as one shard.
    pub const WHOLE: Shard = Shard { k: 1, n: 1 };

    /// Parses `K/N` (1 ≤ K ≤ N).
    pub fn parse(text: &str) -> Result<Self, SweepError> {
        let bad = || SweepError::Selection(format!("--shard {text}: expected K/N with 1 ≤ K ≤ N, e.g. 2/8"));
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let (k, n): (u32, u32) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Self { k, n })
    }

    /// Partition name `shard=K-of-N`.
    pub fn partition(&self) -> String {
        format!("shard={}-of-{}", self.k, self.n)
    }

    /// Whether point `i` belongs to this shard (round robin: `i mod N = K − 1`).
    pub fn owns(&self, i: u64) -> bool {
        i % self.n as u64 == (self.k - 1) as u64
    }
}

/// The rows of one point.
#[derive(Clone, Debug)]
pub struct PointResult {
    /// The point.
    pub point: Point,
    /// One row per cell: point, point seed, swept values, then the `cell_results.jsonl` keys.
    pub cells: Vec<Map<String, Value>>,
    /// One row for the `points` table.
    pub summary: Map<String, Value>,
}

/// What one shard did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ShardSummary {
    /// `shard=K-of-N`.
    pub shard: String,
    /// Points of this shard.
    pub points: u64,
    /// Points run now (the rest were already on disk).
    pub points_run: u64,
    /// Cell rows written now.
    pub rows: u64,
    /// Wall time [s].
    pub wall_s: f64,
    /// Points run per wall second.
    pub points_per_s: f64,
    /// Cell rows per wall second.
    pub rows_per_s: f64,
    /// Worker threads.
    pub threads: usize,
    /// Part files of this shard (relative to the output folder).
    pub files: Vec<String>,
}

impl Sweep {
    /// Columns of the `cells` table.
    pub fn cell_columns(&self) -> Vec<Column> {
        self.lead_columns().into_iter().chain(CELL_COLUMNS.iter().map(|(n, k)| Column::new(*n, *k))).collect()
    }

    /// Columns of the `points` table.
    pub fn point_columns(&self) -> Vec<Column> {
        self.lead_columns().into_iter().chain(POINT_STAT_COLUMNS.iter().map(|(n, k)| Column::new(*n, *k))).collect()
    }

    fn lead_columns(&self) -> Vec<Column> {
        let mut c = vec![Column::new("point", Kind::U64), Column::new("point_seed", Kind::U64)];
        c.extend(self.params.iter().map(|p| Column::new(&p.column, Kind::F64)));
        c
    }

    /// The manifest: the same bytes for every shard of the same sweep.
    pub fn manifest(&self) -> Value {
        let names = |cols: Vec<Column>| cols.into_iter().map(|c| c.name).collect::<Vec<_>>();
        serde_json::json!({
            "format": FORMAT,
            "tool": "cellfab",
            "version": env!("CARGO_PKG_VERSION"),
            "generator": cellfab_model::random::GENERATOR_NAME,
            "spec": self.spec,
            "points": self.points,
            "params": self.params.iter().map(|p| serde_json::json!({
                "path": p.path, "column": p.column, "integer": p.integer,
            })).collect::<Vec<_>>(),
            "point_seed": "derive_seed(sweep seed, [0x504F494E54, point index]) (cellfab_model::random)",
            "shard_rule": "point i belongs to shard K of N when i mod N = K - 1",
            "layout": {
                "cells": "cells/shard=K-of-N/part-NNNNN.parquet",
                "points": "points/shard=K-of-N/part-NNNNN.parquet",
                "shard_summaries": "_shards/shard=K-of-N.json",
            },
            "cells_columns": names(self.cell_columns()),
            "points_columns": names(self.point_columns()),
            "base_config": self.base,
        })
    }

    fn lead(&self, point: &Point) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("point".into(), Value::from(point.index));
        m.insert("point_seed".into(), Value::from(point.seed));
        for (p, &v) in self.params.iter().zip(&point.values) {
            m.insert(p.column.clone(), serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null));
        }
        m
    }

    /// Runs one point through the whole plant (no files) and returns its rows.
    pub fn run_point(&self, point: &Point) -> Result<PointResult, SweepError> {
        let config = self.config(point)?;
        let run_err = |e: cellfab_plant::PlantError| SweepError::Run { index: point.index, message: e.to_string() };
        let plant = Plant::new(config, jiff::Timestamp::UNIX_EPOCH).map_err(run_err)?;
        let events = plant.bus().subscribe(1024, Delivery::Reliable);
        let (report, rows) = std::thread::scope(|s| {
            let drain = s.spawn(move || {
                let mut rows: Vec<Value> = Vec::new();
                for event in events.rx {
                    if let PlantEvent::CellResults { rows: r, .. } = &*event {
                        rows.extend(r.iter().cloned());
                    }
                }
                rows
            });
            let report = plant.run();
            (report, drain.join().unwrap_or_default())
        });
        let report = report.map_err(run_err)?;
        let lead = self.lead(point);
        let cells: Vec<Map<String, Value>> = rows
            .into_iter()
            .map(|row| {
                let mut m = lead.clone();
                if let Value::Object(o) = row {
                    m.extend(o);
                }
                m
            })
            .collect();
        let mut summary = lead;
        summary.extend(lot_stats(&cells, report.end_t_s));
        Ok(PointResult { point: point.clone(), cells, summary })
    }
}

fn mean_sd(values: impl Iterator<Item = f64>) -> (Option<f64>, Option<f64>) {
    let v: Vec<f64> = values.collect();
    if v.is_empty() {
        return (None, None);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd =
        if v.len() > 1 { Some((v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()) } else { None };
    (Some(mean), sd)
}

fn lot_stats(cells: &[Map<String, Value>], plant_time_s: f64) -> Map<String, Value> {
    let grade = |g: &str| cells.iter().filter(|c| c.get("grade").and_then(Value::as_str) == Some(g)).count() as u64;
    let n = cells.len() as u64;
    let rejects = grade("Reject");
    let field = |k: &'static str| cells.iter().filter_map(move |c| c.get(k).and_then(Value::as_f64));
    let (cap_mean, cap_sd) = mean_sd(field("discharge_capacity_ah"));
    let opt = |v: Option<f64>| v.and_then(serde_json::Number::from_f64).map(Value::Number).unwrap_or(Value::Null);
    let mut m = Map::new();
    m.insert("cells".into(), n.into());
    m.insert("cells_good".into(), (n - rejects).into());
    m.insert("grade_a".into(), grade("A").into());
    m.insert("grade_b".into(), grade("B").into());
    m.insert("grade_c".into(), grade("C").into());
    m.insert("grade_reject".into(), rejects.into());
    m.insert("yield_frac".into(), opt((n > 0).then(|| (n - rejects) as f64 / n as f64)));
    m.insert("mean_discharge_capacity_ah".into(), opt(cap_mean));
    m.insert("sd_discharge_capacity_ah".into(), opt(cap_sd));
    m.insert("mean_first_cycle_efficiency_frac".into(), opt(mean_sd(field("first_cycle_efficiency_frac")).0));
    m.insert("mean_dcr_10s_ohm".into(), opt(mean_sd(field("dcr_10s_ohm")).0));
    m.insert("mean_k_value_mv_per_day".into(), opt(mean_sd(field("k_value_mv_per_day")).0));
    m.insert("mean_specific_energy_wh_kg".into(), opt(mean_sd(field("specific_energy_wh_kg")).0));
    m.insert("plant_time_s".into(), opt(Some(plant_time_s)));
    m
}

/// Options of a sweep run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Output folder (the dataset root).
    pub out: PathBuf,
    /// Which shard to run.
    pub shard: Shard,
    /// Worker threads (0 = one per core).
    pub threads: usize,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SweepError + '_ {
    move |e| SweepError::Io(format!("{}: {e}", path.display()))
}

fn pool(threads: usize) -> Result<rayon::ThreadPool, SweepError> {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| SweepError::Io(e.to_string()))
}

/// Writes `OUT/sweep.json`, or checks that the one already there is the same sweep.
fn claim(sweep: &Sweep, out: &Path) -> Result<(), SweepError> {
    let text = serde_json::to_string_pretty(&sweep.manifest()).map_err(|e| SweepError::Io(e.to_string()))? + "\n";
    let path = out.join("sweep.json");
    match std::fs::read_to_string(&path) {
        Ok(old) if old == text => Ok(()),
        Ok(_) => Err(SweepError::Mismatch(format!(
            "{} belongs to a different sweep (spec, base configuration or version differ): use another --out",
            path.display()
        ))),
        Err(_) => {
            std::fs::create_dir_all(out).map_err(io(out))?;
            let tmp = out.join(format!(".sweep.json.{}.tmp", std::process::id()));
            std::fs::write(&tmp, &text).map_err(io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))
        }
    }
}

/// Runs the points of one shard and writes their part files. Every point of the shard is
/// validated before anything runs; `on_point` is called after each point (from any thread).
pub fn run_shard(
    sweep: &Sweep,
    options: &RunOptions,
    on_point: &(dyn Fn(&PointResult) + Sync),
) -> Result<ShardSummary, SweepError> {
    let wall = Instant::now();
    let shard = options.shard;
    let pool = pool(options.threads)?;
    let indices: Vec<u64> = (shard.k as u64 - 1..sweep.points).step_by(shard.n as usize).collect();
    let points: Vec<Point> = pool.install(|| {
        indices
            .par_iter()
            .map(|&i| {
                let p = sweep.point(i);
                sweep.config(&p).map(|_| p)
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    claim(sweep, &options.out)?;
    let per_part = sweep.spec.points_per_part.unwrap_or(spec::DEFAULT_POINTS_PER_PART) as usize;
    let (cell_cols, point_cols) = (sweep.cell_columns(), sweep.point_columns());
    let (mut rows, mut run, mut files) = (0u64, 0u64, Vec::new());
    for (part, chunk) in points.chunks(per_part).enumerate() {
        let name = format!("{}/part-{part:05}.parquet", shard.partition());
        let (cells_path, points_path) = (options.out.join("cells").join(&name), options.out.join("points").join(&name));
        files.push(format!("cells/{name}"));
        files.push(format!("points/{name}"));
        if cells_path.exists() && points_path.exists() {
            continue;
        }
        let results: Vec<PointResult> = pool.install(|| {
            chunk
                .par_iter()
                .map(|p| {
                    let r = sweep.run_point(p)?;
                    on_point(&r);
                    Ok(r)
                })
                .collect::<Result<Vec<_>, SweepError>>()
        })?;
        let cells: Vec<Map<String, Value>> = results.iter().flat_map(|r| r.cells.iter().cloned()).collect();
        let summaries: Vec<Map<String, Value>> = results.iter().map(|r| r.summary.clone()).collect();
        dataset::write_parquet(&cells_path, &cell_cols, &cells)?;
        dataset::write_parquet(&points_path, &point_cols, &summaries)?;
        rows += cells.len() as u64;
        run += results.len() as u64;
    }
    let wall_s = wall.elapsed().as_secs_f64();
    let rate = |x: u64| if wall_s > 0.0 { x as f64 / wall_s } else { 0.0 };
    let summary = ShardSummary {
        shard: shard.partition(),
        points: points.len() as u64,
        points_run: run,
        rows,
        wall_s,
        points_per_s: rate(run),
        rows_per_s: rate(rows),
        threads: pool.current_num_threads(),
        files,
    };
    let dir = options.out.join("_shards");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let path = dir.join(format!("{}.json", shard.partition()));
    let text = serde_json::to_string_pretty(&summary).map_err(|e| SweepError::Io(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(io(&path))?;
    Ok(summary)
}

/// Re-runs point `index` alone and writes `OUT/rerun/point=I/{cells,points}.parquet` (outside
/// the `cells/` and `points/` globs of the dataset).
pub fn rerun_point(sweep: &Sweep, index: u64, out: &Path) -> Result<(PointResult, PathBuf), SweepError> {
    if index >= sweep.points {
        return Err(SweepError::Selection(format!(
            "--point {index}: the sweep has {} points (allowed 0 to {})",
            sweep.points,
            sweep.points.saturating_sub(1)
        )));
    }
    let result = sweep.run_point(&sweep.point(index))?;
    let dir = out.join("rerun").join(format!("point={index}"));
    dataset::write_parquet(&dir.join("cells.parquet"), &sweep.cell_columns(), &result.cells)?;
    dataset::write_parquet(&dir.join("points.parquet"), &sweep.point_columns(), std::slice::from_ref(&result.summary))?;
    Ok((result, dir))
}
