//! `cellfab sweep`: a parameter study over configuration fields, one shard of it, or one point
//! alone, written as a partitioned Parquet dataset (see `cellfab-sweep` and docs/SCALING.md).

use anyhow::{Context, Result};
use cellfab_sweep::{rerun_point, run_shard, RunOptions, Shard, Sweep, SweepSpec};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

/// Arguments of `cellfab sweep`.
#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// Sweep specification (TOML): seed, method, points, base configuration, [[param]] fields.
    #[arg(long)]
    spec: PathBuf,
    /// Dataset folder (shared by every shard).
    #[arg(long)]
    out: PathBuf,
    /// Run only shard K of N (points i with i mod N = K − 1), e.g. 2/8.
    #[arg(long, default_value = "1/1")]
    shard: String,
    /// Worker threads: 0 = one per core. Each point runs on one thread.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Re-run point I alone into OUT/rerun/point=I/ (bit-identical to its rows in the sweep).
    #[arg(long)]
    point: Option<u64>,
    /// Print no progress bar and no summary, only the output folder.
    #[arg(long, short)]
    quiet: bool,
}

/// Loads and resolves a spec file (its `base_config` is relative to the spec's folder).
pub fn load(spec: &Path) -> Result<Sweep> {
    let parsed = SweepSpec::load(spec)?;
    let dir = spec.parent().unwrap_or(Path::new("."));
    Ok(Sweep::resolve(parsed, dir)?)
}

pub fn sweep(args: SweepArgs) -> Result<()> {
    let sweep = load(&args.spec)?;
    if let Some(index) = args.point {
        let (result, dir) = rerun_point(&sweep, index, &args.out)?;
        if !args.quiet {
            let values: Vec<String> =
                sweep.params.iter().zip(&result.point.values).map(|(p, v)| format!("{} = {v}", p.path)).collect();
            println!("point {index}: seed {}, {}, {} cells", result.point.seed, values.join(", "), result.cells.len());
        }
        println!("{}", dir.display());
        return Ok(());
    }
    let shard = Shard::parse(&args.shard)?;
    let points = (shard.k as u64 - 1..sweep.points).step_by(shard.n as usize).count() as u64;
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(points) };
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} points  {per_sec}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(shard.partition());
    let options = RunOptions { out: args.out.clone(), shard, threads: args.threads };
    let summary = run_shard(&sweep, &options, &|_| bar.inc(1))
        .with_context(|| format!("sweep {} into {}", args.spec.display(), args.out.display()))?;
    bar.finish_and_clear();
    if !args.quiet {
        println!(
            "cellfab sweep: {} of {} points ({}), {} run now, {} cell rows, wall {:.2} s, {:.2} points/s, {:.0} rows/s, {} threads",
            summary.points,
            sweep.points,
            summary.shard,
            summary.points_run,
            summary.rows,
            summary.wall_s,
            summary.points_per_s,
            summary.rows_per_s,
            summary.threads
        );
    }
    println!("{}", args.out.display());
    Ok(())
}
