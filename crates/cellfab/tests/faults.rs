//! Fault labels in the run folder (docs/DATA.md "Fault labels"): `fault_labels.jsonl`, the
//! `"fault"` key of every sample file, `root_cause` of every cell, and the same bytes for the
//! same seed and faults.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const CONFIG: &str = r#"
[plant]
process_variability = false
sensor_noise = false
[cell.assembly]
max_cells = 16

[[faults]]
code = "F05_DRY_ZONE_TEMP_EXCURSION"
line = "anode"
stage = "drying"
onset = 600.0
duration = 600.0
magnitude = { zone = 2, delta_k = -80.0 }

[[faults]]
code = "S01_SENSOR_FAULT"
line = "cathode"
stage = "mixing"
onset = 1000.0
duration = 500.0
magnitude = { signal = "viscosity_pa_s", mode = "bias", bias = 2.0 }
"#;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cellfab-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(out: &Path, config: &str, extra: &[&str]) -> PathBuf {
    let cfg = out.with_extension("toml");
    std::fs::write(&cfg, config).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_cellfab"))
        .args(["run", "--quiet", "--start", "2025-01-01T00:00:00Z", "--out"])
        .arg(out)
        .arg("--config")
        .arg(&cfg)
        .args(extra)
        .output()
        .expect("cellfab runs");
    assert!(o.status.success(), "cellfab run failed: {}", String::from_utf8_lossy(&o.stderr));
    PathBuf::from(String::from_utf8(o.stdout).unwrap().lines().last().unwrap().trim())
}

/// The `"fault"` key of every sample file, by stage folder.
fn fault_keys(run: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for stage in std::fs::read_dir(run).unwrap() {
        let stage = stage.unwrap().path();
        if !stage.is_dir() {
            continue;
        }
        let name = stage.file_name().unwrap().to_string_lossy().to_string();
        for f in std::fs::read_dir(&stage).unwrap() {
            let p = f.unwrap().path();
            let file = p.file_name().unwrap().to_string_lossy().to_string();
            if !file.contains("_result_at_") {
                continue;
            }
            let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            let key = v["fault"].as_str().unwrap_or_else(|| panic!("{file} has no fault key")).to_string();
            out.entry(format!("{name}/{}", &file[..file.find("_20").unwrap()])).or_default().push(key);
        }
    }
    out
}

fn cells(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("cell_results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn faulted_samples_cells_and_labels_are_written_and_repeat_byte_for_byte() {
    let base = tmp("labels");
    let a = run(&base.join("A"), CONFIG, &[]);
    let labels: Vec<Value> = std::fs::read_to_string(a.join("fault_labels.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(labels.len(), 2);
    assert_eq!(labels[0]["code"], "F05_DRY_ZONE_TEMP_EXCURSION");
    assert_eq!(labels[0]["machine_id"], "MC_Dry_Anode");
    assert_eq!(labels[1]["code"], "S01_SENSOR_FAULT");

    let keys = fault_keys(&a);
    let count = |machine: &str, key: &str| keys[machine].iter().filter(|k| *k == key).count();
    // drying samples in [600, 1200) s at 2 s: 300; mixing samples in [1000, 1500) s at 5 s: 100
    assert_eq!(count("drying_output/MC_Dry_Anode", "F05_DRY_ZONE_TEMP_EXCURSION"), 300);
    assert_eq!(count("mixing_output/TK_Mix_Cathode", "S01_SENSOR_FAULT"), 100);
    for (machine, k) in &keys {
        let faulted = machine.ends_with("MC_Dry_Anode") || machine.ends_with("TK_Mix_Cathode");
        if !faulted {
            assert!(k.iter().all(|k| k == "none"), "{machine} has a faulted sample");
        }
    }
    let manifest: Value = serde_json::from_slice(&std::fs::read(a.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["files"].as_array().unwrap().iter().any(|f| f == "fault_labels.jsonl"));

    // the wet anode stretch is scrapped; the cells come from elsewhere and have no cause
    let c = cells(&a);
    assert_eq!(c.len(), 16);
    assert!(c.iter().all(|c| c["root_cause"].is_string() && c["fault_labels"].is_array()));

    // same seed and faults: same bytes, whatever the thread count
    let b = run(&base.join("B"), CONFIG, &["--threads", "1"]);
    for name in ["fault_labels.jsonl", "cell_results.jsonl", "alarms.jsonl"] {
        assert_eq!(std::fs::read(a.join(name)).unwrap(), std::fs::read(b.join(name)).unwrap(), "{name}");
    }
    for dir in ["drying_output", "mixing_output"] {
        let files: Vec<_> = std::fs::read_dir(a.join(dir)).unwrap().map(|e| e.unwrap().file_name()).collect();
        for f in files {
            let (x, y) = (std::fs::read(a.join(dir).join(&f)).unwrap(), std::fs::read(b.join(dir).join(&f)).unwrap());
            assert!(x == y, "{dir}/{f:?} differs");
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn a_run_without_faults_writes_only_none() {
    let base = tmp("none");
    let config = "[plant]\nprocess_variability = false\nsensor_noise = false\n[cell.assembly]\nmax_cells = 16\n";
    let a = run(&base.join("A"), config, &[]);
    assert_eq!(std::fs::read_to_string(a.join("fault_labels.jsonl")).unwrap(), "");
    for (machine, k) in fault_keys(&a) {
        assert!(k.iter().all(|k| k == "none"), "{machine}");
    }
    assert!(cells(&a).iter().all(|c| c["root_cause"] == "none"));
    let _ = std::fs::remove_dir_all(&base);
}
