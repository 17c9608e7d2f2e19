//! One batch end to end per output format, and N batches in child processes (time and
//! peak RSS per N).

use super::summary as stats;
use anyhow::{Context, Result};
use cellfab_plant::{Delivery, Plant, PlantConfig};
use cellfab_store::run_tables::RunTables;
use cellfab_store::tables::OutputFormats;
use cellfab_store::SeedLayoutWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Figures of one run written the way `cellfab run --format …` writes it.
struct RunFigures {
    /// Wall time from `plant.run()` to the finished manifest [s].
    wall_s: f64,
    /// Time the writer thread spent inside the table writers (handle + finish) [s].
    table_busy_s: f64,
    /// Bytes of the whole run folder.
    bytes: u64,
    /// Bytes under `tables/`.
    table_bytes: u64,
    /// Files of the run folder.
    files: u64,
}

/// Sum of sizes and count of the files under `dir`.
fn du(dir: &Path) -> (u64, u64) {
    let mut stack = vec![dir.to_path_buf()];
    let (mut bytes, mut files) = (0, 0);
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => {
                    bytes += m.len();
                    files += 1;
                }
                Err(_) => {}
            }
        }
    }
    (bytes, files)
}

/// Runs `config` once into `out`, writing `formats` exactly as `cellfab run` does.
fn one_run(config: PlantConfig, formats: &OutputFormats, out: &Path) -> Result<RunFigures> {
    let _ = std::fs::remove_dir_all(out);
    let plant = Plant::new(config, jiff::Timestamp::now())?;
    let t0 = Instant::now();
    let mut writer = SeedLayoutWriter::create(out, "run", plant.epoch())?;
    if !formats.seed_json {
        writer = writer.without_sample_files()?;
    }
    let mut tables = match formats.tables.as_slice() {
        [] => None,
        f => Some(RunTables::create(writer.run_dir(), f, plant.epoch())?),
    };
    let events = plant.bus().subscribe(cellfab_plant::events::DEFAULT_SUBSCRIBER_CAPACITY, Delivery::Reliable);
    let h = std::thread::spawn(move || -> Result<(SeedLayoutWriter, Option<RunTables>, Duration)> {
        let mut busy = Duration::ZERO;
        for event in events.rx {
            writer.handle(&event)?;
            if let Some(t) = &mut tables {
                let t0 = Instant::now();
                t.handle(&event)?;
                busy += t0.elapsed();
            }
        }
        Ok((writer, tables, busy))
    });
    let report = plant.run();
    let (mut writer, tables, mut busy) = h.join().map_err(|_| anyhow::anyhow!("the writer crashed"))??;
    let report = report?;
    if let Some(t) = tables {
        let t1 = Instant::now();
        writer.add_tables(t.finish(&cellfab_store::run_tables::machine_kpi_rows(&report))?);
        busy += t1.elapsed();
    }
    let run_dir = writer.run_dir().to_path_buf();
    writer.finish(report.seed, &report.start, report.end_t_s, serde_json::Value::Null, 0.0)?;
    let wall_s = t0.elapsed().as_secs_f64();
    let (bytes, files) = du(&run_dir);
    let (table_bytes, _) = du(&run_dir.join("tables"));
    Ok(RunFigures { wall_s, table_busy_s: busy.as_secs_f64(), bytes, table_bytes, files })
}

/// The plant of every figure: seed 1, plant time 0 fixed, `max_cells` cells per lot if given.
pub fn config(max_cells: Option<u32>) -> PlantConfig {
    let mut c = PlantConfig::default();
    c.plant.start = "2025-01-01T00:00:00Z".into();
    c.plant.seed = 1;
    if let Some(n) = max_cells {
        c.cell.assembly.max_cells = n;
    }
    c
}

/// Part 1: one batch per output format, full cell lot (unless `trimmed_only`) and trimmed.
pub fn per_format(repeat: u32, trimmed_only: bool, scratch: &Path) -> Result<()> {
    println!("\n== one batch end to end per output format (median of {repeat}) ==");
    println!(
        "{:<10} {:<10} {:>9} {:>9} {:>8} {:>10} {:>10} {:>12} {:>12}",
        "cells", "format", "best s", "median s", "files", "run MB", "table MB", "MB/s (wall)", "MB/s (write)"
    );
    let lots: &[Option<u32>] = if trimmed_only { &[Some(64)] } else { &[None, Some(64)] };
    for &lot in lots {
        for name in ["json", "jsonl", "parquet", "csv"] {
            let formats = OutputFormats::parse(name).map_err(anyhow::Error::msg)?;
            let mut walls = Vec::new();
            let mut busy = Vec::new();
            let mut last = None;
            for _ in 0..repeat {
                let f = one_run(config(lot), &formats, &scratch.join("formats"))
                    .with_context(|| format!("format {name}"))?;
                walls.push(f.wall_s);
                busy.push(f.table_busy_s);
                last = Some(f);
            }
            let _ = std::fs::remove_dir_all(scratch.join("formats"));
            let f = last.context("no repetition")?;
            let wall = stats(walls);
            let busy = stats(busy);
            let mb = f.table_bytes as f64 / 1e6;
            let rates = if f.table_bytes > 0 {
                (format!("{:.1}", mb / wall.median), format!("{:.1}", mb / busy.median))
            } else {
                ("-".into(), "-".into())
            };
            println!(
                "{:<10} {:<10} {:>9.3} {:>9.3} {:>8} {:>10.1} {:>10.1} {:>12} {:>12}",
                lot.map_or("all".to_string(), |n| n.to_string()),
                name,
                wall.best,
                wall.median,
                f.files,
                f.bytes as f64 / 1e6,
                mb,
                rates.0,
                rates.1
            );
        }
    }
    println!("(MB/s (write): table bytes / time inside the table writer; MB/s (wall): / the whole run)");
    Ok(())
}

/// Wall time and peak RSS of a child process.
struct ChildFigures {
    wall_s: f64,
    peak_rss_kb: u64,
}

/// The peak RSS of this process (VmHWM of /proc/self/status) [kB].
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `cellfab bench -- run ARGS` in a child process: `cellfab run ARGS`, then the child
/// prints its own peak RSS (a child's `ru_maxrss` would include this process's, inherited
/// through exec).
fn child_run(args: &[String]) -> Result<ChildFigures> {
    let exe = std::env::current_exe().context("cannot find the cellfab executable")?;
    let t0 = Instant::now();
    let out = std::process::Command::new(&exe)
        .args(["bench", "--"])
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let wall_s = t0.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "cellfab {} failed ({})", args.join(" "), out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let peak_rss_kb = stdout
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_kb "))
        .and_then(|v| v.trim().parse().ok())
        .context("the child did not report its peak RSS")?;
    Ok(ChildFigures { wall_s, peak_rss_kb })
}

/// Part 2: N batches of the trimmed lot (64 cells) written as `format`, one child per N;
/// with `fresh_blades` the slitters change blades after every batch.
pub fn batches(counts: &[u32], format: &str, fresh_blades: bool, repeat: u32, scratch: &Path) -> Result<()> {
    let blades = if fresh_blades { ", blades changed after every batch" } else { "" };
    println!(
        "\n== N batches, 64-cell lot{blades}, --format {format}, one `cellfab run` child per N (median of {repeat}) =="
    );
    let toml = scratch.join("trimmed.toml");
    // the queue in front of the mixers must hold every batch of the run
    let most = counts.iter().copied().max().unwrap_or(1).max(1);
    let mut config = format!("[plant]\nqueue_capacity = {most}\n\n[cell.assembly]\nmax_cells = 64\n");
    if fresh_blades {
        for line in ["anode", "cathode"] {
            config.push_str(&format!("\n[{line}.slitting]\nblade_change_edge_radius_m = 1.01e-6\n"));
        }
    }
    std::fs::write(&toml, config)?;
    println!(
        "{:>6} {:>10} {:>12} {:>14} {:>12} {:>14} {:>12}",
        "N", "wall s", "s per batch", "vs N x (N=1)", "peak RSS MB", "RSS vs N=10", "output MB"
    );
    let mut one = None;
    let mut ten = None;
    for &n in counts {
        let out: PathBuf = scratch.join(format!("batches-{n}"));
        let mut walls = Vec::new();
        let mut rss = Vec::new();
        let mut output_mb = 0.0;
        for _ in 0..repeat {
            let _ = std::fs::remove_dir_all(&out);
            let args: Vec<String> =
                ["run", "--quiet", "--seed", "1", "--start", "2025-01-01T00:00:00Z", "--format", format]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(["--batches".into(), n.to_string(), "--config".into()])
                    .chain([toml.display().to_string(), "--out".into(), out.display().to_string()])
                    .collect();
            let f = child_run(&args)?;
            walls.push(f.wall_s);
            rss.push(f.peak_rss_kb as f64 / 1024.0);
            output_mb = du(&out).0 as f64 / 1e6;
        }
        let _ = std::fs::remove_dir_all(&out);
        let wall = stats(walls).median;
        let rss = stats(rss).median;
        if n == 1 {
            one = Some(wall);
        }
        if n == 10 {
            ten = Some(rss);
        }
        println!(
            "{:>6} {:>10.2} {:>12.3} {:>14} {:>12.1} {:>14} {:>12.1}",
            n,
            wall,
            wall / n as f64,
            one.map_or("-".into(), |o| format!("{:.3}", wall / (o * n as f64))),
            rss,
            ten.map_or("-".into(), |t| format!("{:.3}", rss / t)),
            output_mb
        );
    }
    Ok(())
}
