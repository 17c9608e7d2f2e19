//! cellfab-store: what the plant's events become on disk.
//!
//! [`seed::SeedLayoutWriter`] writes one run folder in the prototype's layout (DESIGN.md §2,
//! MODELS.md §0.10): `manifest.json`, one `<stage>_output/` folder per stage with a JSON
//! file per sample and a final-results file per machine and batch, plus `alarms.jsonl` and
//! `cell_results.jsonl`. Every file is written atomically (temporary file, then rename).
//!
//! [`tables`] streams rows to JSON Lines, CSV and Parquet files ([`tables::TableWriter`]);
//! [`run_tables::RunTables`] writes a run's tables from the event stream.

pub mod atomic;
pub mod run_tables;
pub mod seed;
pub mod sorter;
pub mod tables;

pub use seed::{Manifest, SeedLayoutWriter};
