//! End-to-end tests of the `cellfab` binary: reproducible run folders, the seed layout, and
//! errors that name the field and write nothing.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const START: &str = "2025-01-01T00:00:00Z";

fn cellfab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cellfab"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cellfab-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs `cellfab run` and returns the run folder.
fn run(out: &Path, extra: &[&str]) -> PathBuf {
    let mut cmd = cellfab();
    cmd.args(["run", "--quiet", "--start", START, "--out"]).arg(out).args(extra);
    let o = cmd.output().expect("cellfab runs");
    assert!(o.status.success(), "cellfab run failed: {}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    PathBuf::from(stdout.lines().last().expect("run folder printed").trim())
}

/// Every file of a run folder, relative path → bytes (manifest without its wall-time fields).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().to_string();
            let mut bytes = std::fs::read(&p).unwrap();
            if rel == "manifest.json" {
                let mut m: Value = serde_json::from_slice(&bytes).unwrap();
                let o = m.as_object_mut().unwrap();
                for k in ["run_id", "created_at", "wall_time_s"] {
                    assert!(o.remove(k).is_some(), "manifest has {k}");
                }
                // the engine's thread count is recorded but changes nothing else
                o["config"]["plant"].as_object_mut().unwrap().remove("threads");
                bytes = serde_json::to_vec(&m).unwrap();
            }
            out.insert(rel, bytes);
        }
    }
    out
}

#[test]
fn same_seed_same_bytes_whatever_the_thread_count() {
    let base = tmp("det");
    let a = run(&base.join("A"), &["--seed", "7"]);
    let b = run(&base.join("B"), &["--seed", "7", "--threads", "1"]);
    let (ta, tb) = (tree(&a), tree(&b));
    assert!(ta.len() > 10_000, "only {} files", ta.len());
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (k, v) in &ta {
        assert!(v == &tb[k], "{k} differs between runs");
    }
    let c = run(&base.join("C"), &["--seed", "8"]);
    let tc = tree(&c);
    let differing = ta.iter().filter(|(k, v)| tc.get(*k) != Some(v)).count();
    assert!(differing > ta.len() / 2, "a different seed changed only {differing} files");
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn run_folder_has_every_stage_folder_with_samples_and_final_results() {
    let base = tmp("layout");
    let dir = run(&base, &["--seed", "3"]);
    let machines: &[(&str, &[&str])] = &[
        ("mixing_output", &["TK_Mix_Anode", "TK_Mix_Cathode"]),
        ("coating_output", &["MC_Coat_Anode", "MC_Coat_Cathode"]),
        ("drying_output", &["MC_Dry_Anode", "MC_Dry_Cathode"]),
        ("calendaring_output", &["MC_Cal_Anode", "MC_Cal_Cathode"]),
        ("slitting_output", &["MC_Slit_Anode", "MC_Slit_Cathode"]),
        ("inspection_output", &["MC_Inspect_Anode", "MC_Inspect_Cathode"]),
        ("rewinding_output", &["MC_Rewind_Anode", "MC_Rewind_Cathode"]),
        ("cell_assembly_output", &["MC_Assembly_Cell"]),
        ("electrolyte_filling_output", &["MC_ElecFill_Cell"]),
        ("formation_cycling_output", &["MC_Formation_Cell"]),
        ("aging_output", &["MC_Aging_Cell"]),
    ];
    for (folder, ids) in machines {
        let names: Vec<String> = std::fs::read_dir(dir.join(folder))
            .unwrap_or_else(|e| panic!("{folder}: {e}"))
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        for id in *ids {
            let samples =
                names.iter().filter(|n| n.starts_with(&format!("{id}_")) && n.contains("_result_at_")).count();
            assert!(samples > 100, "{folder}: {samples} samples of {id}");
            let finals: Vec<&String> =
                names.iter().filter(|n| n.ends_with(&format!("_final_results_{id}.json"))).collect();
            assert_eq!(finals.len(), 1, "{folder}: final results of {id}");
            let v: Value = serde_json::from_slice(&std::fs::read(dir.join(folder).join(finals[0])).unwrap()).unwrap();
            assert_eq!(v["Machine ID"], *id);
            assert!(v.get("Final Properties").is_some(), "{folder}/{}: no Final Properties", finals[0]);
        }
        // every file is valid JSON with the base keys
        for n in &names {
            assert!(!n.starts_with('.'), "temporary file left: {folder}/{n}");
            let v: Value = serde_json::from_slice(&std::fs::read(dir.join(folder).join(n)).unwrap())
                .unwrap_or_else(|e| panic!("{folder}/{n}: {e}"));
            for key in ["TimeStamp", "Machine ID", "Process", "Batch", "cellfab"] {
                assert!(v.get(key).is_some(), "{folder}/{n} lacks {key}");
            }
            let dur = if *folder == "aging_output" { "Duration (days)" } else { "Duration" };
            assert!(v.get(dur).is_some(), "{folder}/{n} lacks {dur}");
        }
    }
    // mixing: sample count of MODELS.md §0.2 and the legacy keys
    let mix: Vec<_> = std::fs::read_dir(dir.join("mixing_output"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("TK_Mix_Anode_") && n.contains("_result_at_"))
        .collect();
    assert_eq!(mix.len(), 1261);
    let first = dir.join("mixing_output").join("TK_Mix_Anode_2025-01-01T00-00-05-000000_result_at_5s.json");
    let v: Value = serde_json::from_slice(&std::fs::read(first).unwrap()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        &keys[..12],
        &[
            "TimeStamp",
            "Duration",
            "Machine ID",
            "Process",
            "Electrode Type",
            "Batch",
            "AM",
            "CA",
            "PVDF",
            "H2O",
            "Density",
            "Viscosity"
        ]
    );
    assert_eq!(v["TimeStamp"], "2025-01-01T00:00:05.000000");
    // the manifest lists every file and the cell results have one line per cell
    let m: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["seed"], 3);
    let files = m["files"].as_array().unwrap();
    for f in files {
        assert!(dir.join(f.as_str().unwrap()).is_file(), "manifest lists a missing file {f}");
    }
    let cells = std::fs::read_to_string(dir.join("cell_results.jsonl")).unwrap();
    assert_eq!(cells.lines().count() as u64, m["cells"].as_u64().unwrap());
    assert!(cells.lines().count() > 10_000);
    let _ = std::fs::remove_dir_all(&base);
}

fn run_err(out: &Path, extra: &[&str]) -> String {
    let o = cellfab().args(["run", "--quiet", "--out"]).arg(out).args(extra).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "expected exit 2");
    assert!(!out.exists() || std::fs::read_dir(out).unwrap().next().is_none(), "something was written");
    String::from_utf8(o.stderr).unwrap()
}

#[test]
fn bad_values_name_the_field_the_value_and_the_range_and_write_nothing() {
    let base = tmp("bad");
    std::fs::create_dir_all(&base).unwrap();
    let cfg = base.join("bad.toml");
    std::fs::write(&cfg, "[cathode.coating]\ncoating_speed_m_s = 9.0\n").unwrap();
    let err = run_err(&base.join("out"), &["--config", cfg.to_str().unwrap()]);
    assert_eq!(
        err.trim(),
        "error: invalid parameter cathode.coating.coating_speed_m_s = 9 m/s: must be within range (allowed 0.01 to 3 m/s)"
    );
    std::fs::write(&cfg, "[anode.mixing]\nno_such_key = 1\n").unwrap();
    let err = run_err(&base.join("out"), &["--config", cfg.to_str().unwrap()]);
    assert!(err.contains("unknown field `no_such_key`"), "{err}");
    let err = run_err(&base.join("out"), &["--batches", "65"]);
    assert!(err.contains("batch queue full: 65 batches requested, the queue holds 64"), "{err}");
    let err = run_err(&base.join("out"), &["--start", "yesterday"]);
    assert!(err.contains("plant.start"), "{err}");
    // an unwritable output folder (a file where the folder should be)
    let file = base.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let o = cellfab().args(["run", "--quiet", "--out"]).arg(&file).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot create the run folder"));
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn params_prints_the_defaults_as_commented_toml_that_reads_back() {
    let o = cellfab().arg("params").output().unwrap();
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("[cathode.coating]"));
    assert!(text.contains("coating_speed_m_s = 0.5"));
    assert!(text.contains("Unit: m/s."));
    let parsed: toml::Value = toml::from_str(&text).expect("valid TOML");
    assert_eq!(parsed["cathode"]["coating"]["coating_speed_m_s"].as_float(), Some(0.5));
    // every key has a comment line above it
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.contains(" = ") && !l.starts_with('#') {
            assert!(lines[i - 1].starts_with("# ") && lines[i - 1].len() > 4, "no comment above {l}");
        }
    }
    let o = cellfab().args(["params", "--stage", "nonsense"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = cellfab().args(["params", "--format", "schema"]).output().unwrap();
    let schema: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(schema["properties"]["cathode"].is_object());
}
