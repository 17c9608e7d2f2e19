//! `cellfab bench`: measures one default batch end to end (with and without writing the
//! run folder) and each stage's model stepping alone; with flags, the suite of
//! docs/PERFORMANCE.md: one batch per output format (`--formats`), N batches in child
//! processes (`--batches`), the samples endpoint (`--samples-endpoint`), websocket fan-out
//! (`--fanout`), sweep throughput (`--sweep`), the file system's floor under the seed layout
//! (`--file-floor`), or every part tiny (`--quick`, for CI).
//! Build with `--release`; a debug build measures the compiler, not the model.

mod files;
mod formats;
mod server;

use anyhow::Result;
use cellfab_model::random::stream;
use cellfab_model::stage::{CountSink, Parallel, Sequential, Stage, StageCtx};
use cellfab_model::stages::{
    aging::Aging,
    assembly::{Assembly, AssemblyInput},
    calendaring::Calendaring,
    coating::Coating,
    drying::Drying,
    filling::Filling,
    formation::Formation,
    inspection::Inspection,
    mixing::Mixing,
    rewinding::Rewinding,
    slitting::Slitting,
};
use cellfab_model::Line;
use cellfab_plant::{Delivery, Plant, PlantConfig, Threads};
use cellfab_store::SeedLayoutWriter;
use std::time::Instant;

/// Arguments of `cellfab bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Repetitions of each measurement (the best and the median are reported).
    #[arg(long, default_value_t = 5)]
    repeat: u32,
    /// Skip the cell line (assembly … aging) in the stage table.
    #[arg(long)]
    electrode_only: bool,
    /// Threads for the cells of formation and aging in the stage table: 0 = one per core,
    /// 1 = sequential.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Measure only sweep throughput: a Latin hypercube of N points (64 cells each) on
    /// `--threads` workers (0 = one per core), reporting points/s and rows/s.
    #[arg(long)]
    sweep: Option<u64>,
    /// One batch end to end per output format (json seed layout, jsonl, parquet, csv), full
    /// and 64-cell lot: wall time, bytes, MB/s.
    #[arg(long)]
    formats: bool,
    /// N batches of the 64-cell lot in one `cellfab run` child per N: wall time and peak RSS.
    /// Comma-separated list of N.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    batches: Vec<u32>,
    /// Output format of the `--batches` series (jsonl, parquet, csv or json).
    #[arg(long, default_value = "parquet")]
    batches_format: String,
    /// In the `--batches` series, change the slitter blades after every batch
    /// (`blade_change_edge_radius_m` = 1.01 µm), so every batch carries the same work: the
    /// software's scaling without the blade-wear cycle (MODELS.md §5.2), whose worn batches
    /// carry up to ~500 times the alarm events and ~5 times the samples of a fresh one.
    #[arg(long)]
    fresh_blades: bool,
    /// The samples endpoint: max_points=2000 over this many stored samples of one machine.
    #[arg(long)]
    samples_endpoint: Option<u64>,
    /// Websocket fan-out: this many viewers of a paced 64-cell batch.
    #[arg(long)]
    fanout: Option<usize>,
    /// Wall time of the paced run of `--fanout` [s].
    #[arg(long, default_value_t = 10.0)]
    fanout_seconds: f64,
    /// Every part, tiny (CI): stage table of the electrode lines, 64-cell lot per format,
    /// N = 1, 2, 4, 10 000 samples, 10 viewers of a run paced at 600x for 2 s, 200 files, a
    /// 2-point sweep. Asserts no timing.
    #[arg(long)]
    quick: bool,
    /// The file system's floor: this many small files written one by one, as the seed layout
    /// writes its per-sample files (temporary file + rename) and as plain creations.
    #[arg(long)]
    file_floor: Option<usize>,
    /// Plant seconds per wall second of the paced run of `--fanout`.
    #[arg(long, default_value_t = 600.0)]
    fanout_speed: f64,
    /// `cellfab bench -- run ARGS`: runs `cellfab run ARGS` and prints this process's peak RSS
    /// (the child of `--batches`).
    #[arg(last = true, hide = true)]
    child_run: Vec<String>,
}

/// The `cellfab run` of a `--batches` child.
#[derive(clap::Parser)]
struct ChildRun {
    #[command(subcommand)]
    run: ChildCommand,
}

#[derive(clap::Subcommand)]
enum ChildCommand {
    Run(crate::run::RunArgs),
}

/// Best, median, 99th percentile and largest of a list of measurements.
pub struct Summary {
    best: f64,
    median: f64,
    p99: f64,
    max: f64,
}

/// Summarises measurements (an empty list gives zeros).
pub fn summary(mut v: Vec<f64>) -> Summary {
    if v.is_empty() {
        return Summary { best: 0.0, median: 0.0, p99: 0.0, max: 0.0 };
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Summary { best: v[0], median: at(0.5), p99: at(0.99), max: v[v.len() - 1] }
}

/// A scratch folder for one bench process, removed at the end.
fn scratch() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("cellfab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The parts selected by flags; false when none was.
fn suite(args: &BenchArgs) -> Result<bool> {
    let any = args.formats
        || !args.batches.is_empty()
        || args.samples_endpoint.is_some()
        || args.fanout.is_some()
        || args.file_floor.is_some();
    if !any {
        return Ok(false);
    }
    let dir = scratch()?;
    let r = args.repeat.max(1);
    let result = (|| {
        if args.formats {
            formats::per_format(r, false, &dir)?;
        }
        if !args.batches.is_empty() {
            formats::batches(&args.batches, &args.batches_format, args.fresh_blades, r, &dir)?;
        }
        if let Some(n) = args.samples_endpoint {
            // a slow endpoint on 10^6 samples takes seconds per call: fewer calls then
            server::samples_endpoint(n, if n > 200_000 { 5 } else { 20 }, &dir)?;
        }
        if let Some(v) = args.fanout {
            server::fanout(v, args.fanout_speed, args.fanout_seconds, &dir)?;
        }
        if let Some(n) = args.file_floor {
            files::floor(n, r, &dir)?;
        }
        anyhow::Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|()| true)
}

/// `--quick`: every part, tiny.
fn quick(threads: usize) -> Result<()> {
    let dir = scratch()?;
    let result = (|| {
        stage_table(1, true, threads)?;
        formats::per_format(1, true, &dir)?;
        formats::batches(&[1, 2, 4], "parquet", false, 1, &dir)?;
        formats::batches(&[2], "parquet", true, 1, &dir)?;
        server::samples_endpoint(10_000, 3, &dir)?;
        server::fanout(10, 600.0, 2.0, &dir)?;
        files::floor(200, 1, &dir)?;
        sweep_throughput(2, threads, 1)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2])
}

fn fixed_config() -> PlantConfig {
    let mut c = PlantConfig::default();
    c.plant.start = "2025-01-01T00:00:00Z".into();
    c
}

fn end_to_end(with_files: bool, repeat: u32) -> Result<(f64, f64, u64)> {
    let mut times = Vec::new();
    let mut files = 0;
    for _ in 0..repeat {
        let dir = std::env::temp_dir().join(format!("cellfab-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let plant = Plant::new(fixed_config(), jiff::Timestamp::now())?;
        let t0 = Instant::now();
        if with_files {
            let mut w = SeedLayoutWriter::create(&dir, "run", plant.epoch())?;
            let sub = plant.bus().subscribe(4096, Delivery::Reliable);
            let h = std::thread::spawn(move || -> std::io::Result<SeedLayoutWriter> {
                for e in sub.rx {
                    w.handle(&e)?;
                }
                Ok(w)
            });
            let report = plant.run()?;
            let w = h.join().map_err(|_| anyhow::anyhow!("writer crashed"))??;
            let m = w.finish(report.seed, &report.start, report.end_t_s, serde_json::Value::Null, 0.0)?;
            files = m.files.len() as u64 + 1;
        } else {
            plant.run()?;
        }
        times.push(t0.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (best, median) = stats(times);
    Ok((best, median, files))
}

struct Row {
    name: String,
    best_s: f64,
    median_s: f64,
    samples: u64,
    sim_s: f64,
}

fn stage<S: Stage>(
    params: &S::Params,
    line: Line,
    input: &S::Input,
    repeat: u32,
    parallel: &dyn Parallel,
    rows: &mut Vec<Row>,
) -> S::Output
where
    S::Input: Clone,
{
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..repeat.max(1) {
        let input = input.clone();
        let (mut p, mut s) = (stream(42, &[1]), stream(42, &[2]));
        let mut ctx = StageCtx {
            batch_id: 1,
            line,
            start_t_s: 0.0,
            process_rng: &mut p,
            sensor_rng: &mut s,
            stream_seed: 7,
            process_variability: true,
            sensor_noise: true,
            parallel,
            faults: &cellfab_model::fault::NO_FAULTS,
        };
        let mut sink = CountSink::default();
        let mut machine = S::MachineState::default();
        let t0 = Instant::now();
        let run = S::run(params, input, &mut machine, &mut ctx, &mut sink);
        times.push(t0.elapsed().as_secs_f64());
        last = Some((run, sink.samples));
    }
    let (run, samples) = last.expect("at least one repetition");
    let (best_s, median_s) = stats(times);
    rows.push(Row { name: S::KIND.machine_id(line), best_s, median_s, samples, sim_s: run.duration_s });
    run.output
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let r = args.repeat.max(1);
    if !args.child_run.is_empty() {
        let child =
            <ChildRun as clap::Parser>::try_parse_from(std::iter::once("cellfab".to_string()).chain(args.child_run))?;
        let ChildCommand::Run(run) = child.run;
        crate::run::run(run)?;
        println!("peak_rss_kb {}", formats::peak_rss_kb().unwrap_or(0));
        return Ok(());
    }
    if args.quick {
        return quick(args.threads);
    }
    if let Some(points) = args.sweep {
        return sweep_throughput(points, args.threads, r);
    }
    if suite(&args)? {
        return Ok(());
    }
    println!("cellfab bench ({} build, {} repetitions)", if cfg!(debug_assertions) { "DEBUG" } else { "release" }, r);
    let (best, median, files) = end_to_end(true, r)?;
    println!("end to end, 1 default batch, all 11 stages, seed-layout files ({files} files): best {best:.3} s, median {median:.3} s");
    let (best, median, _) = end_to_end(false, r)?;
    println!(
        "end to end, 1 default batch, all 11 stages, no sinks:                 best {best:.3} s, median {median:.3} s"
    );
    stage_table(r, args.electrode_only, args.threads)
}

/// Each stage's model stepping alone, samples counted, not stored.
fn stage_table(r: u32, electrode_only: bool, threads: usize) -> Result<()> {
    let c = PlantConfig::default();
    let threads = if threads == 0 { Threads::available() } else { Threads::new(threads) };
    let parallel: &dyn Parallel = if threads.workers() == 1 { &Sequential } else { &threads };
    let mut rows = Vec::new();
    let mut reels = Vec::new();
    for (line, lc) in [(Line::Anode, &c.anode), (Line::Cathode, &c.cathode)] {
        let slurry = stage::<Mixing>(&lc.mixing, line, &lc.recipe, r, parallel, &mut rows);
        let film = stage::<Coating>(&lc.coating, line, &slurry, r, parallel, &mut rows);
        let dry = stage::<Drying>(&lc.drying, line, &film, r, parallel, &mut rows);
        let cal = stage::<Calendaring>(&lc.calendaring, line, &dry, r, parallel, &mut rows);
        let slit = stage::<Slitting>(&lc.slitting, line, &cal, r, parallel, &mut rows);
        let insp = stage::<Inspection>(&lc.inspection, line, &slit, r, parallel, &mut rows);
        reels.push(stage::<Rewinding>(&lc.rewinding, line, &insp, r, parallel, &mut rows));
    }
    if !electrode_only {
        let cathode = reels.pop().expect("cathode reels");
        let anode = reels.pop().expect("anode reels");
        let input = AssemblyInput { anode, cathode };
        let cells = stage::<Assembly>(&c.cell.assembly, Line::Cell, &input, r, parallel, &mut rows);
        let filled = stage::<Filling>(&c.cell.filling, Line::Cell, &cells, r, parallel, &mut rows);
        let formed = stage::<Formation>(&c.cell.formation, Line::Cell, &filled, r, parallel, &mut rows);
        stage::<Aging>(&c.cell.aging, Line::Cell, &formed, r, parallel, &mut rows);
    }
    println!(
        "\nmodel stepping alone (samples counted, not stored; formation and aging on {} threads):",
        threads.workers()
    );
    println!(
        "{:<20} {:>10} {:>10} {:>8} {:>14} {:>16}",
        "machine", "best ms", "median ms", "samples", "samples/s", "sim s per wall s"
    );
    for row in &rows {
        println!(
            "{:<20} {:>10.3} {:>10.3} {:>8} {:>14.0} {:>16.3e}",
            row.name,
            row.best_s * 1e3,
            row.median_s * 1e3,
            row.samples,
            row.samples as f64 / row.best_s,
            row.sim_s / row.best_s
        );
    }
    let electrode: Vec<&Row> = rows.iter().filter(|r| !r.name.ends_with("_Cell")).collect();
    let (t, n) = electrode.iter().fold((0.0, 0u64), |(t, n), r| (t + r.best_s, n + r.samples));
    println!(
        "\nelectrode lines (7 stages × 2 lines): {:.3} ms for {} samples = {:.2e} samples/s",
        t * 1e3,
        n,
        n as f64 / t
    );
    Ok(())
}

/// Sweep throughput: an LHS of `points` points over three fields, whole, best of `repeat`.
fn sweep_throughput(points: u64, threads: usize, repeat: u32) -> Result<()> {
    let spec = cellfab_sweep::SweepSpec::from_toml(&format!(
        "seed = 1\nmethod = \"lhs\"\npoints = {points}\ncells_per_point = 64\n\
         [[param]]\npath = \"cathode.calendaring.line_load_n_m\"\nmin = 4.5e5\nmax = 6.5e5\n\
         [[param]]\npath = \"anode.coating.coating_speed_m_s\"\nmin = 0.3\nmax = 0.7\n\
         [[param]]\npath = \"cell.aging.temperature_degc\"\nmin = 20\nmax = 35\n"
    ))?;
    let sweep = cellfab_sweep::Sweep::resolve(spec, std::path::Path::new("."))?;
    let mut best: Option<cellfab_sweep::ShardSummary> = None;
    for _ in 0..repeat {
        let out = std::env::temp_dir().join(format!("cellfab-bench-sweep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let options = cellfab_sweep::RunOptions { out: out.clone(), shard: cellfab_sweep::Shard::WHOLE, threads };
        let s = cellfab_sweep::run_shard(&sweep, &options, &|_| {})?;
        let _ = std::fs::remove_dir_all(&out);
        if best.as_ref().is_none_or(|b| s.wall_s < b.wall_s) {
            best = Some(s);
        }
    }
    if let Some(s) = best {
        println!(
            "sweep, LHS of {} points x 64 cells, {} threads, Parquet output: best {:.2} s, {:.2} points/s, {:.0} rows/s",
            s.points, s.threads, s.wall_s, s.points_per_s, s.rows_per_s
        );
    }
    Ok(())
}
