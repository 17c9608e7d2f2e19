//! `cellfab run`: simulate batches through the whole plant and write the seed-layout run
//! folder, with a progress bar per line on a terminal and a summary table at the end.

use anyhow::{Context, Result};
use cellfab_model::Line;
use cellfab_plant::events::PlantEvent;
use cellfab_plant::{Delivery, Plant, PlantConfig, Speed};
use cellfab_store::SeedLayoutWriter;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `cellfab run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Plant configuration (TOML or JSON); keys not given keep their defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Batches to run.
    #[arg(long)]
    batches: Option<u32>,
    /// Master seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Plant time 0, RFC 3339 (default: now), e.g. 2025-01-01T00:00:00Z.
    #[arg(long)]
    start: Option<String>,
    /// Folder that receives the run folder.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// "max" or simulated seconds per wall second (1 = real time).
    #[arg(long)]
    speed: Option<Speed>,
    /// Engine threads: 1 = all machines on one thread, 0 = one thread per machine.
    #[arg(long)]
    threads: Option<u32>,
    /// Deterministic mode: no process variability, no sensor noise (MODELS.md §0.3).
    #[arg(long)]
    deterministic: bool,
    /// Outputs, comma-separated: json (the seed layout's per-sample files), jsonl, csv,
    /// parquet (tables under tables/<format>/, see docs/DATA.md).
    #[arg(long, default_value = "json", value_parser = cellfab_store::tables::OutputFormats::parse)]
    format: cellfab_store::tables::OutputFormats,
    /// Print no progress and no summary table, only the run folder.
    #[arg(long, short)]
    quiet: bool,
    /// Publishing to an MQTT broker or Azure IoT Hub (see `cellfab-iot`).
    #[command(flatten)]
    iot: crate::iot::PublishArgs,
}

/// Loads a configuration file by extension.
pub fn load_config(path: &Path) -> Result<PlantConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    let config = if path.extension().and_then(|e| e.to_str()) == Some("json") {
        PlantConfig::from_json_str(&text)
    } else {
        PlantConfig::from_toml_str(&text)
    };
    config.with_context(|| format!("config {}", path.display()))
}

fn run_id(out: &Path, seed: u64) -> String {
    let now = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
    let base = format!("run-{now}-s{seed}");
    (1..)
        .map(|k| if k == 1 { base.clone() } else { format!("{base}-{k}") })
        .find(|id| !out.join(id).exists())
        .unwrap_or(base)
}

pub fn run(args: RunArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => load_config(path)?,
        None => PlantConfig::default(),
    };
    if let Some(b) = args.batches {
        config.plant.batches = b;
    }
    if let Some(s) = args.seed {
        config.plant.seed = s;
    }
    if let Some(s) = &args.start {
        config.plant.start = s.clone();
    }
    if let Some(s) = args.speed {
        config.plant.speed = s;
    }
    if let Some(t) = args.threads {
        config.plant.threads = t;
    }
    if args.deterministic {
        config.plant.process_variability = false;
        config.plant.sensor_noise = false;
    }
    let plant = Plant::new(config, jiff::Timestamp::now())?;
    let publisher = crate::iot::start(&args.iot, &args.out.join(crate::iot::OUTBOX_DIR))?;
    let attached = publisher.as_ref().map(|p| p.attach(plant.bus(), plant.epoch()));
    let seed = plant.config().plant.seed;
    let id = run_id(&args.out, seed);
    let mut writer = SeedLayoutWriter::create(&args.out, &id, plant.epoch())
        .with_context(|| format!("cannot create the run folder in {}", args.out.display()))?;
    if !args.format.seed_json {
        writer = writer.without_sample_files()?;
    }
    let mut tables = match args.format.tables.as_slice() {
        [] => None,
        formats => Some(cellfab_store::run_tables::RunTables::create(writer.run_dir(), formats, plant.epoch())?),
    };
    let events = plant.bus().subscribe(cellfab_plant::events::DEFAULT_SUBSCRIBER_CAPACITY, Delivery::Reliable);
    let batches = plant.config().plant.batches as u64;
    let progress = (!args.quiet).then(|| Progress::new(batches));
    let wall = Instant::now();
    type Written = (SeedLayoutWriter, Option<cellfab_store::run_tables::RunTables>, CellSummary);
    let writer_thread = std::thread::spawn(move || -> Result<Written> {
        let mut cells = CellSummary::default();
        for event in events.rx {
            writer.handle(&event)?;
            if let Some(t) = &mut tables {
                t.handle(&event)?;
            }
            if let PlantEvent::CellResults { rows, .. } = &*event {
                rows.iter().for_each(|r| cells.add(r));
            }
            if let Some(p) = &progress {
                p.on(&event);
            }
        }
        if let Some(p) = progress {
            p.finish();
        }
        Ok((writer, tables, cells))
    });
    let report = plant.run();
    let writer = writer_thread.join().map_err(|_| anyhow::anyhow!("the file writer crashed"))?;
    let report = report?;
    let (mut writer, tables, cells) = writer.context("writing the run folder")?;
    if let Some(t) = tables {
        writer.add_tables(t.finish(&cellfab_store::run_tables::machine_kpi_rows(&report))?);
    }
    crate::iot::finish(publisher, attached, &args.iot)?;
    let run_dir = writer.run_dir().to_path_buf();
    let config_json = serde_json::to_value(plant.config())?;
    let manifest = writer.finish(seed, &report.start, report.end_t_s, config_json, wall.elapsed().as_secs_f64())?;
    if !args.quiet {
        print_summary(&report, &manifest, wall.elapsed().as_secs_f64());
        cells.print();
        print_kpis(&report.kpis);
    }
    println!("{}", run_dir.display());
    Ok(())
}

struct Progress {
    _multi: MultiProgress,
    bars: BTreeMap<Line, ProgressBar>,
}

impl Progress {
    fn new(batches: u64) -> Self {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} stages  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let mut bars = BTreeMap::new();
        for (line, stages) in [(Line::Anode, 7u64), (Line::Cathode, 7), (Line::Cell, 4)] {
            let bar = multi.add(ProgressBar::new(stages * batches));
            bar.set_style(style.clone());
            bar.set_prefix(line.title());
            bars.insert(line, bar);
        }
        Self { _multi: multi, bars }
    }

    fn on(&self, event: &PlantEvent) {
        match event {
            PlantEvent::MachineOn { machine, .. } => {
                if let Some(b) = self.bars.get(&machine.line) {
                    b.set_message(format!("batch {} {}", machine.batch, machine.stage.name()));
                }
            }
            PlantEvent::StageFinished { machine, .. } => {
                if let Some(b) = self.bars.get(&machine.line) {
                    b.inc(1);
                }
            }
            _ => {}
        }
    }

    fn finish(self) {
        for b in self.bars.values() {
            b.finish_with_message("done");
        }
    }
}

fn print_summary(report: &cellfab_plant::RunReport, manifest: &cellfab_store::Manifest, wall_s: f64) {
    println!(
        "cellfab run: seed {}, {} batch(es), plant time {:.1} h, {} files, wall {:.3} s",
        report.seed,
        report.batches,
        report.end_t_s / 3600.0,
        manifest.files.len() + 1,
        wall_s
    );
    println!(
        "{:<20} {:>6} {:>5} {:>8} {:>7} {:>10} {:>12}  key results",
        "machine", "batch", "ok", "samples", "alarms", "wall ms", "samples/s"
    );
    for s in &report.stages {
        let rate = if s.compute_wall_s > 0.0 { s.samples as f64 / s.compute_wall_s } else { 0.0 };
        let keys: Vec<String> = s.summary.iter().map(|(k, v)| format!("{k} {}", fmt_value(*v))).collect();
        println!(
            "{:<20} {:>6} {:>5} {:>8} {:>7} {:>10.2} {:>12.0}  {}",
            s.machine.machine_id,
            s.machine.batch,
            if s.accepted { "yes" } else { "NO" },
            s.samples,
            s.alarms,
            s.compute_wall_s * 1e3,
            rate,
            keys.join(", ")
        );
    }
}

fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || (1e-3..1e6).contains(&a) {
        format!("{:.4}", v).trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.4e}")
    }
}

/// Lot statistics of the per-cell results, for the summary.
#[derive(Default)]
struct CellSummary {
    cells: u64,
    sums: BTreeMap<&'static str, (f64, u64)>,
    grades: BTreeMap<String, u64>,
    rejects: BTreeMap<String, u64>,
}

impl CellSummary {
    const FIELDS: [(&'static str, &'static str, f64); 6] = [
        ("discharge_capacity_ah", "capacity Ah", 1.0),
        ("discharge_energy_wh", "energy Wh", 1.0),
        ("first_cycle_efficiency_frac", "first-cycle efficiency", 1.0),
        ("dcr_10s_ohm", "DCR 10 s mΩ", 1e3),
        ("k_value_mv_per_day", "K-value mV/day", 1.0),
        ("specific_energy_wh_kg", "specific energy Wh/kg", 1.0),
    ];

    fn add(&mut self, row: &serde_json::Value) {
        self.cells += 1;
        for (key, _, scale) in Self::FIELDS {
            if let Some(v) = row.get(key).and_then(serde_json::Value::as_f64) {
                let e = self.sums.entry(key).or_default();
                e.0 += v * scale;
                e.1 += 1;
            }
        }
        if let Some(g) = row.get("grade").and_then(serde_json::Value::as_str) {
            *self.grades.entry(g.to_string()).or_default() += 1;
        }
        for reason in row.get("reject_reasons").and_then(serde_json::Value::as_array).into_iter().flatten() {
            if let Some(r) = reason.as_str() {
                *self.rejects.entry(r.to_string()).or_default() += 1;
            }
        }
    }

    fn print(&self) {
        if self.cells == 0 {
            return;
        }
        let means: Vec<String> = Self::FIELDS
            .iter()
            .filter_map(|(key, label, _)| {
                self.sums.get(key).map(|(s, n)| format!("{label} {}", fmt_value(s / *n as f64)))
            })
            .collect();
        println!("cells: {} — mean {}", self.cells, means.join(", "));
        let grades: Vec<String> = self.grades.iter().map(|(g, n)| format!("{g} {n}")).collect();
        println!("grades: {}", grades.join(", "));
        if self.rejects.is_empty() {
            println!("rejects: none");
        } else {
            let rejects: Vec<String> = self.rejects.iter().map(|(r, n)| format!("{r} {n}")).collect();
            println!("rejects by reason: {}", rejects.join(", "));
        }
    }
}

/// The plant KPI table (MODELS.md §14).
fn print_kpis(k: &cellfab_plant::PlantKpis) {
    println!(
        "KPIs: throughput {:.1} good cells/h ({:.4} GWh/yr-eq; steady state {:.1} cells/h, {:.3} GWh/yr), \
         lead time {:.1} h, takt {:.2} h, bottleneck {}",
        k.throughput_cells_per_h,
        k.throughput_gwh_per_yr,
        k.steady_state_cells_per_h,
        k.steady_state_gwh_per_yr,
        k.lead_time_s / 3600.0,
        k.takt_s / 3600.0,
        k.bottleneck
    );
    println!(
        "energy {:.1} kWh for {:.1} kWh of good cells: {:.2} kWh/kWh",
        k.energy_kwh, k.cell_energy_kwh, k.energy_per_cell_energy
    );
    println!(
        "{:<20} {:>8} {:>6} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>6} {:>7} {:>9}",
        "machine", "cycle h", "util", "starv h", "block h", "down h", "A", "P", "Q", "OEE", "yield", "kWh"
    );
    for m in &k.machines {
        println!(
            "{:<20} {:>8.2} {:>6.3} {:>8.2} {:>8.2} {:>8.2} {:>6.3} {:>6.3} {:>6.4} {:>6.4} {:>7.4} {:>9.1}",
            m.machine_id,
            m.cycle_time_s / 3600.0,
            m.utilisation,
            m.starved_s / 3600.0,
            m.blocked_s / 3600.0,
            m.down_s / 3600.0,
            m.oee.availability,
            m.oee.performance,
            m.oee.quality,
            m.oee.oee,
            m.yield_frac,
            m.energy_kwh
        );
    }
}
