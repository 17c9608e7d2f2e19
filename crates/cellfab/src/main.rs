//! The `cellfab` binary: glue that parses arguments, builds a plant and wires sinks.
//!
//! * `cellfab run` — simulate batches and write the seed-layout run folder (the prototype's
//!   "local script"), with progress bars and a summary table.
//! * `cellfab params` — print the default configuration as commented TOML (or its JSON
//!   Schema).
//! * `cellfab bench` — timings of a default batch and of each stage's model stepping.
//! * `cellfab serve` — the HTTP API and live events (the default without a subcommand).
//! * `cellfab iot` — SAS tokens and the folder watcher (MQTT / Azure IoT Hub).
//! * `cellfab sweep` — parameter sweeps, sharded, into a partitioned Parquet dataset.
//! * `cellfab export pybamm` — one cell of a run as a PyBaMM parameter set.

mod bench;
mod export;
mod iot;
mod params;
mod run;
mod serve;
mod sweep;

use clap::{Parser, Subcommand};

/// cellfab: a digital twin of a lithium-ion cell factory.
#[derive(Parser, Debug)]
#[command(name = "cellfab", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Simulate batches through the whole plant and write the run folder.
    Run(run::RunArgs),
    /// Print the default parameters (TOML, each field commented with unit, range and meaning).
    Params(params::ParamsArgs),
    /// Measure a default batch end to end and each stage's model stepping (use --release).
    Bench(bench::BenchArgs),
    /// Serve the HTTP API and live events on http://127.0.0.1:8000 (the default).
    Serve(serve::ServeArgs),
    /// MQTT / Azure IoT Hub tools: print a SAS token, publish a seed-layout folder.
    Iot(iot::IotArgs),
    /// Run a parameter sweep (grid, Latin hypercube, Monte Carlo), whole, one shard or one point.
    Sweep(sweep::SweepArgs),
    /// Export a run's data in other tools' formats (PyBaMM parameter sets).
    Export(export::ExportArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Run(args)) => run::run(args),
        Some(Command::Params(args)) => params::params(args),
        Some(Command::Bench(args)) => bench::bench(args),
        Some(Command::Serve(args)) => serve::serve(args),
        Some(Command::Iot(args)) => iot::iot(args),
        Some(Command::Sweep(args)) => sweep::sweep(args),
        Some(Command::Export(args)) => export::export(args),
        None => serve::serve(serve::ServeArgs::default()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
