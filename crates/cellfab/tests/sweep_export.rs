//! End-to-end tests of `cellfab sweep` and `cellfab export pybamm` through the binary.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn cellfab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cellfab"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cellfab-sweepcli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ok(cmd: &mut Command) -> String {
    let o = cmd.output().expect("cellfab runs");
    assert!(o.status.success(), "cellfab failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn fails(cmd: &mut Command) -> String {
    let o = cmd.output().expect("cellfab runs");
    assert_eq!(o.status.code(), Some(2), "expected exit 2: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8(o.stderr).unwrap()
}

#[test]
fn sweep_cli_writes_the_partitioned_dataset_and_names_bad_fields() {
    let d = tmp("sweep");
    std::fs::write(d.join("base.toml"), "[cell.assembly]\nmax_cells = 4\n").unwrap();
    let spec = d.join("sweep.toml");
    std::fs::write(
        &spec,
        "seed = 5\nmethod = \"grid\"\nbase_config = \"base.toml\"\n[[param]]\npath = \"cathode.coating.coating_speed_m_s\"\nvalues = [0.3, 0.5]\n",
    )
    .unwrap();
    let out = d.join("ds");
    let stdout = ok(cellfab().args(["sweep", "--spec"]).arg(&spec).arg("--out").arg(&out).args(["--shard", "2/2"]));
    assert!(stdout.contains("points/s") && stdout.contains("rows/s"), "{stdout}");
    assert!(out.join("cells/shard=2-of-2/part-00000.parquet").is_file());
    assert!(out.join("points/shard=2-of-2/part-00000.parquet").is_file());
    let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(manifest["points"], 2);
    assert_eq!(manifest["base_config"]["cell"]["assembly"]["max_cells"], 4, "cells per point from the base");
    let shard: Value = serde_json::from_slice(&std::fs::read(out.join("_shards/shard=2-of-2.json")).unwrap()).unwrap();
    assert_eq!(shard["rows"], 4);

    std::fs::write(&spec, "seed = 5\nmethod = \"grid\"\n[[param]]\npath = \"cathode.coating.speed\"\nvalues = [1]\n")
        .unwrap();
    let e = fails(cellfab().args(["sweep", "--spec"]).arg(&spec).arg("--out").arg(d.join("bad")));
    assert!(e.contains("cathode.coating.speed") && e.contains("coating_speed_m_s"), "{e}");
    std::fs::write(
        &spec,
        "seed = 5\nmethod = \"grid\"\n[[param]]\npath = \"cathode.coating.coating_speed_m_s\"\nvalues = [9]\n",
    )
    .unwrap();
    let e = fails(cellfab().args(["sweep", "--spec"]).arg(&spec).arg("--out").arg(d.join("bad")));
    assert!(e.contains("point 0") && e.contains("coating_speed_m_s = 9 m/s") && e.contains("allowed 0.01 to 3"), "{e}");
    assert!(!d.join("bad").exists(), "nothing written");
    std::fs::remove_dir_all(&d).unwrap();
}

fn run_folder(out: &Path) -> PathBuf {
    let cfg = out.join("small.toml");
    std::fs::create_dir_all(out).unwrap();
    std::fs::write(&cfg, "[cell.assembly]\nmax_cells = 16\n").unwrap();
    let stdout = ok(cellfab()
        .args(["run", "--quiet", "--threads", "1", "--seed", "3", "--start", "2025-01-01T00:00:00Z", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(out));
    PathBuf::from(stdout.lines().last().unwrap().trim())
}

#[test]
fn pybamm_export_holds_chen2020_keys_with_the_cells_own_electrodes() {
    let d = tmp("pybamm");
    let run = run_folder(&d);
    let file = d.join("cell.json");
    ok(cellfab().args(["export", "pybamm", "--run"]).arg(&run).args(["--cell", "B1-L2-1", "--out"]).arg(&file));
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(doc["based_on"], "Chen2020");
    let p = &doc["parameters"];
    let num = |k: &str| p[k].as_f64().unwrap_or_else(|| panic!("missing key {k}"));
    // Geometry of a 21700 cell from the twin (MODELS.md §8, §12.5).
    let pos_t = num("Positive electrode thickness [m]");
    let neg_t = num("Negative electrode thickness [m]");
    assert!((50e-6..80e-6).contains(&pos_t), "{pos_t}");
    assert!((50e-6..120e-6).contains(&neg_t), "{neg_t}");
    let eps = num("Negative electrode porosity");
    assert!((0.2..0.45).contains(&eps), "{eps}");
    let pos_eps = num("Positive electrode porosity");
    assert!((0.25..0.35).contains(&pos_eps), "{pos_eps}");
    for side in ["Negative", "Positive"] {
        let e = num(&format!("{side} electrode porosity"));
        let am = num(&format!("{side} electrode active material volume fraction"));
        assert!(am > 0.5 && e + am < 1.0, "{side}: ε {e} + ε_AM {am} must leave room for binder and carbon");
    }
    assert!((num("Electrode height [m]") - 0.061).abs() < 1e-3);
    assert!((num("Electrode width [m]") - 2.0 * 0.81).abs() < 1e-12);
    assert!((num("Maximum concentration in negative electrode [mol.m-3]") - 31_370.0).abs() < 300.0);
    assert_eq!(num("Negative particle radius [m]"), 7.5e-6);
    assert_eq!(num("Positive particle radius [m]"), 5e-6);
    // From Chen2020: what the twin does not model.
    assert_eq!(num("Cation transference number"), 0.2594);
    assert_eq!(num("Upper voltage cut-off [V]"), 4.2);
    // The nominal capacity is the cell's measured discharge capacity.
    let results = std::fs::read_to_string(run.join("cell_results.jsonl")).unwrap();
    let row: Value =
        results.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|r| r["cell_id"] == "B1-L2-1").unwrap();
    assert_eq!(num("Nominal cell capacity [A.h]"), row["discharge_capacity_ah"].as_f64().unwrap());

    let e = fails(cellfab().args(["export", "pybamm", "--run"]).arg(&run).args(["--cell", "B9-L0-0"]));
    assert!(e.contains("unknown cell B9-L0-0"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}
