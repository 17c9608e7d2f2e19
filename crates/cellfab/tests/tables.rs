//! End-to-end tests of `cellfab run --format`: the JSON Lines, CSV and Parquet tables hold the
//! same rows as the seed layout's JSON files, read back with the Parquet reader, carry their
//! row counts and SHA-256 in the manifest, are byte-identical for the same seed, and every
//! column is documented in docs/DATA.md.

use arrow_array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

const START: &str = "2025-01-01T00:00:00Z";

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cellfab-tables-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small plant (64 cells) so a run takes a few seconds.
fn small_config(dir: &Path) -> PathBuf {
    let p = dir.join("small.toml");
    std::fs::write(&p, "[cell.assembly]\nmax_cells = 64\n").unwrap();
    p
}

fn run(out: &Path, config: &Path, extra: &[&str]) -> PathBuf {
    let o = Command::new(env!("CARGO_BIN_EXE_cellfab"))
        .args(["run", "--quiet", "--start", START, "--seed", "7", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("cellfab runs");
    assert!(o.status.success(), "cellfab run failed: {}", String::from_utf8_lossy(&o.stderr));
    PathBuf::from(String::from_utf8(o.stdout).unwrap().lines().last().unwrap().trim())
}

fn parquet(path: &Path) -> (Vec<String>, Vec<RecordBatch>) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let names = builder.schema().fields().iter().map(|f| f.name().clone()).collect();
    let batches = builder.build().unwrap().map(|b| b.unwrap()).collect();
    (names, batches)
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn f64s(batches: &[RecordBatch], column: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for b in batches {
        let a = b.column_by_name(column).unwrap_or_else(|| panic!("no column {column}"));
        let a = a.as_any().downcast_ref::<Float64Array>().unwrap_or_else(|| panic!("{column} is not float64"));
        out.extend((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i))));
    }
    out
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let a = b.column_by_name(column).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        out.extend((0..a.len()).map(|i| a.value(i).to_string()));
    }
    out
}

fn csv_rows(path: &Path) -> (Vec<String>, usize) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    (header, r.records().inspect(|r| assert!(r.is_ok())).count())
}

/// Sample JSON files per machine id in the seed layout.
fn json_samples(dir: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for stage in std::fs::read_dir(dir).unwrap() {
        let stage = stage.unwrap().path();
        if !stage.is_dir() || !stage.file_name().unwrap().to_string_lossy().ends_with("_output") {
            continue;
        }
        for f in std::fs::read_dir(&stage).unwrap() {
            let p = f.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if let Some(at) = name.find("_20") {
                if name.contains("_result_at_") {
                    out.entry(name[..at].to_string()).or_default().push(p);
                }
            }
        }
    }
    out
}

#[test]
fn tables_hold_the_same_rows_as_the_json_files_in_every_format() {
    let base = tmp("same");
    let dir = run(&base.join("out"), &small_config(&base), &["--format", "json,jsonl,csv,parquet"]);
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let samples = json_samples(&dir);
    assert_eq!(samples.len(), 18, "machines with sample files");
    let counts = manifest["sample_counts"].as_object().unwrap();
    // every machine: one row per JSON sample file in every format
    for (machine, files) in &samples {
        let (line, stage) = machine_table(machine);
        let (_, batches) = parquet(&dir.join(format!("tables/parquet/{stage}{line}.parquet")));
        assert_eq!(rows(&batches), files.len(), "{machine}: parquet rows vs JSON files");
        assert_eq!(counts[machine].as_u64().unwrap() as usize, files.len(), "{machine}: manifest count");
        let (_, csv_n) = csv_rows(&dir.join(format!("tables/csv/{stage}{line}.csv")));
        assert_eq!(csv_n, files.len(), "{machine}: csv rows");
        let jsonl = std::fs::read_to_string(dir.join(format!("tables/jsonl/{stage}{line}.jsonl"))).unwrap();
        assert_eq!(jsonl.lines().count(), files.len(), "{machine}: jsonl rows");
        assert!(strings(&batches, "machine_id").iter().all(|m| m == machine));
    }
    // values: coating samples, matched by plant time, equal the JSON files' typed sample
    let mut by_t: HashMap<u64, Value> = HashMap::new();
    for p in &samples["MC_Coat_Anode"] {
        let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        by_t.insert(v["cellfab"]["t_s"].as_f64().unwrap().to_bits(), v["cellfab"].clone());
    }
    let (_, coat) = parquet(&dir.join("tables/parquet/coating_anode.parquet"));
    let t = f64s(&coat, "t_s");
    let meas = f64s(&coat, "wet_thickness_m_meas");
    let truth = f64s(&coat, "wet_thickness_m_true");
    let areal = f64s(&coat, "areal_mass_kg_m2");
    for i in 0..t.len() {
        let j = &by_t[&t[i].unwrap().to_bits()];
        assert_eq!(meas[i], j["wet_thickness_m"]["meas"].as_f64(), "row {i}");
        assert_eq!(truth[i], j["wet_thickness_m"]["true"].as_f64(), "row {i}");
        assert_eq!(areal[i], j["areal_mass_kg_m2"].as_f64(), "row {i}");
    }
    // cells: the rows of cell_results.jsonl, in order, same values
    let cells: Vec<Value> = std::fs::read_to_string(dir.join("cell_results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(cells.len(), 64);
    let (_, pc) = parquet(&dir.join("tables/parquet/cells.parquet"));
    assert_eq!(rows(&pc), cells.len());
    assert_eq!(csv_rows(&dir.join("tables/csv/cells.csv")).1, cells.len());
    let ids = strings(&pc, "cell_id");
    let grades = strings(&pc, "grade");
    let cap = f64s(&pc, "discharge_capacity_ah");
    let lanes = pc[0].column_by_name("lane").unwrap().as_any().downcast_ref::<Int64Array>().unwrap().clone();
    for (i, c) in cells.iter().enumerate() {
        assert_eq!(ids[i], c["cell_id"].as_str().unwrap());
        assert_eq!(grades[i], c["grade"].as_str().unwrap());
        assert_eq!(cap[i], c["discharge_capacity_ah"].as_f64());
        if i < lanes.len() {
            assert_eq!(lanes.value(i), c["lane"].as_i64().unwrap());
        }
    }
    // events: every alarm of alarms.jsonl, and one machine_on per machine and batch
    let (_, ev) = parquet(&dir.join("tables/parquet/events.parquet"));
    let kinds = strings(&ev, "kind");
    let alarms = std::fs::read_to_string(dir.join("alarms.jsonl")).unwrap().lines().count();
    assert_eq!(kinds.iter().filter(|k| *k == "alarm").count(), alarms);
    assert_eq!(kinds.iter().filter(|k| *k == "machine_on").count(), 18);
    let ev_t = f64s(&ev, "t_s");
    assert!(ev_t.windows(2).all(|w| w[0] <= w[1]), "events sorted by plant time");
    // kpis: one row per machine
    let (_, kp) = parquet(&dir.join("tables/parquet/kpis.parquet"));
    assert_eq!(rows(&kp), 18);
    // the manifest lists every table file with its row count and SHA-256
    let tables = manifest["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 3 * (18 + 3));
    for t in tables {
        let path = dir.join(t["path"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(t["bytes"].as_u64().unwrap() as usize, bytes.len());
        assert_eq!(t["sha256"].as_str().unwrap(), sha256_hex(&path));
        let n = t["rows"].as_u64().unwrap() as usize;
        match t["format"].as_str().unwrap() {
            "parquet" => assert_eq!(rows(&parquet(&path).1), n, "{path:?}"),
            "csv" => assert_eq!(csv_rows(&path).1, n, "{path:?}"),
            "jsonl" => assert_eq!(String::from_utf8(bytes).unwrap().lines().count(), n, "{path:?}"),
            other => panic!("format {other}"),
        }
        assert!(manifest["files"].as_array().unwrap().iter().any(|f| f == &t["path"]));
    }
    // no temporary or spill file is left
    for f in ["csv", "jsonl", "parquet"] {
        for e in std::fs::read_dir(dir.join("tables").join(f)).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().to_string();
            assert!(!n.starts_with('.'), "left over: tables/{f}/{n}");
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// `MC_Coat_Anode` → ("_anode", "coating"); cell-line machines have no line suffix.
fn machine_table(machine: &str) -> (String, String) {
    let stage = match machine.split('_').nth(1).unwrap() {
        "Mix" => "mixing",
        "Coat" => "coating",
        "Dry" => "drying",
        "Cal" => "calendaring",
        "Slit" => "slitting",
        "Inspect" => "inspection",
        "Rewind" => "rewinding",
        "Assembly" => "cell_assembly",
        "ElecFill" => "electrolyte_filling",
        "Formation" => "formation_cycling",
        "Aging" => "aging",
        other => panic!("machine {other}"),
    };
    let line = machine.rsplit('_').next().unwrap().to_lowercase();
    let suffix = if line == "cell" { String::new() } else { format!("_{line}") };
    (suffix, stage.to_string())
}

/// SHA-256 of a file by coreutils' `sha256sum`, independent of the store's hasher.
fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum runs");
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for f in ["csv", "jsonl", "parquet"] {
        for e in std::fs::read_dir(dir.join("tables").join(f)).unwrap() {
            let p = e.unwrap().path();
            out.insert(format!("{f}/{}", p.file_name().unwrap().to_string_lossy()), std::fs::read(&p).unwrap());
        }
    }
    out
}

#[test]
fn tables_are_byte_identical_for_the_same_seed_whatever_the_thread_count() {
    let base = tmp("det");
    let config = small_config(&base);
    let a = run(&base.join("A"), &config, &["--format", "parquet,csv,jsonl"]);
    let b = run(&base.join("B"), &config, &["--format", "jsonl,csv,parquet", "--threads", "1"]);
    let (ta, tb) = (tree(&a), tree(&b));
    assert_eq!(ta.len(), 3 * 21);
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (k, v) in &ta {
        assert!(v == &tb[k], "{k} differs between runs of the same seed");
    }
    // without `json` the per-sample files are not written; the manifest and JSON Lines are
    assert!(!a.join("coating_output").exists());
    assert!(a.join("manifest.json").is_file() && a.join("cell_results.jsonl").is_file());
    let m: Value = serde_json::from_slice(&std::fs::read(a.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["sample_counts"]["MC_Coat_Anode"].as_u64().unwrap() as usize, {
        let (_, b) = parquet(&a.join("tables/parquet/coating_anode.parquet"));
        rows(&b)
    });
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn an_unknown_format_names_the_allowed_ones_and_writes_nothing() {
    let base = tmp("bad");
    let out = base.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_cellfab"))
        .args(["run", "--quiet", "--format", "json,xlsx", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("xlsx") && err.contains("json, jsonl, csv, parquet"), "{err}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&base);
}

/// The generated column list of docs/DATA.md: one section per table with every column and
/// its Parquet type, from the files of a small run.
fn column_docs(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("tables/parquet"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".parquet").to_string())
        .collect();
    names.sort();
    let mut out = String::new();
    for name in names {
        let file = std::fs::File::open(dir.join(format!("tables/parquet/{name}.parquet"))).unwrap();
        let schema = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().schema().clone();
        out.push_str(&format!("\n#### `{name}`\n\n| column | type |\n|---|---|\n"));
        for f in schema.fields() {
            out.push_str(&format!("| `{}` | {} |\n", f.name(), f.data_type()));
        }
    }
    out
}

#[test]
fn docs_data_md_lists_every_column_of_every_table() {
    let base = tmp("docs");
    let dir = run(&base.join("out"), &small_config(&base), &["--format", "parquet"]);
    let generated = column_docs(&dir);
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/DATA.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let (begin, end) = ("<!-- columns:begin (generated by the tables test) -->", "<!-- columns:end -->");
    let (a, b) = (doc.find(begin).expect("begin marker"), doc.find(end).expect("end marker"));
    let current = &doc[a + begin.len()..b];
    if std::env::var("UPDATE_DATA_MD").is_ok() {
        let updated = format!("{}{}{generated}\n{}", &doc[..a], begin, &doc[b..]);
        std::fs::write(&doc_path, updated).unwrap();
    } else {
        assert_eq!(
            current.trim(),
            generated.trim(),
            "docs/DATA.md's column list is out of date: run UPDATE_DATA_MD=1 cargo test --release -p cellfab \
             --test tables docs_data_md"
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}
