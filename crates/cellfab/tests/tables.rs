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

/// SHA-256 of every JSON Lines and CSV table of a small run (64 cells, 3 batches, seed 1),
/// recorded with the JSON-lines spill before rows were flattened directly and spilled in
/// binary: the faster path must give the same bytes. A deliberate change to the model or the
/// table layout changes these; regenerate them with the command in the test.
const GOLDEN_TABLES: &[(&str, &str)] = &[
    ("csv/aging.csv", "42c0c34b0fdeeb5cdbde921eb9458c1559cb5df809b17c6dc13496c479c0dd12"),
    ("csv/calendaring_anode.csv", "d44b639af652348a853a05322ef7cc04370332c5f6f2b81c3f25b9ff505ea5bc"),
    ("csv/calendaring_cathode.csv", "44d5ba2913a666010d72921ae5243779cdebb9e25a5599d3eea287a5a8e4a255"),
    ("csv/cell_assembly.csv", "45cc5930fce5dbcfe5c51a9c72dac8ebf7257c7827ab06467789e619da759b94"),
    ("csv/cells.csv", "34fa5ec401f23d52977f40a44c677e8346431fdda004af2307ba5f3499fe75eb"),
    ("csv/coating_anode.csv", "5fce43e93d8f0030cbf1d7d5fe14929fc4368c239d1ef4878eb179d86d8d4f5d"),
    ("csv/coating_cathode.csv", "11149563a6c3b02e848e3c59c2da80ebc9f858eedea8e56e0740ff3336cb2720"),
    ("csv/drying_anode.csv", "9d2d890d208dabe88ecc1d3c0c2e38d5449c7ad0e146f42324a62cfec086fece"),
    ("csv/drying_cathode.csv", "a31dd73bcd0b4aa8ae01dcd0d0863de072ae9ebb4de63e68e2fc28e040e7c0b5"),
    ("csv/electrolyte_filling.csv", "f1a56ffc772277c36f68e8e8f7e22bb3ca14acc7f359e3f08b7b935e835f4a78"),
    ("csv/events.csv", "cd43c456ed9f67d8ec27b47920095d69a3270a9a75894683ee19626ca1ccc335"),
    ("csv/formation_cycling.csv", "89cbf07de4bea15c7cb64e0362b66d307e2e71b16f4f0d228958768590cc701d"),
    ("csv/inspection_anode.csv", "ba936318556aa8aca8ce7cdd3b27f3726191bf2c538875814ee4ee14280b6325"),
    ("csv/inspection_cathode.csv", "ec4d97d27a880dfa8696762d691b7347fc0547b45ffd65d86a075833e8fac7d1"),
    ("csv/kpis.csv", "b695e1855dc504f75d9e483ff6033f54656d624d6fdf19a22690b1ef979b10c4"),
    ("csv/mixing_anode.csv", "6d1490293ffe3290bb001f02eff6a73d695ced65c8e3daec12fc3d16cfea6fca"),
    ("csv/mixing_cathode.csv", "5be1d86f0aea213d22f8347660dc29ec3355e3dbc5eb965b3b44ac92ec5e2d7d"),
    ("csv/rewinding_anode.csv", "8442592292a149c5cc2cc319ae6baf9fee7824dfabd0cad91c8e391982de0256"),
    ("csv/rewinding_cathode.csv", "f6d9ad4949a5d68ce0bc1b8a168abc767bf3262535a63d841702c9eee92871bf"),
    ("csv/slitting_anode.csv", "60c21b2dd2fc5ab7001d0513507ccd57e86028f424e33b50c40f734365d086bd"),
    ("csv/slitting_cathode.csv", "9f9629a5a452b637abd1a5e0c70d455af743f7621fcf9af353a21714e4afaf0c"),
    ("jsonl/aging.jsonl", "662c7d048def8181a858716a33ccbcbd4d93eaff7adb3a15555235506388f207"),
    ("jsonl/calendaring_anode.jsonl", "d8091f78332c8c7ab9c1cb0fb6b052df99142cb51e0a360bf4dcf5eab905180b"),
    ("jsonl/calendaring_cathode.jsonl", "87ea9707faff4829156ae5871c3ebcada05a20604e74dd9b69e720e2b5c49c5f"),
    ("jsonl/cell_assembly.jsonl", "35be4c2c809ce03cbac8df8de33bbf059dbc23cc52d5a2d931e6f3ec1bc9ee42"),
    ("jsonl/cells.jsonl", "271a0ce1f1b2ad67424eed1a22c43ac4522ed4cac3cb2091b8dfe1e94927bf9d"),
    ("jsonl/coating_anode.jsonl", "363cb472e3ea637b2d35dc60880f8ceb446d0a65e83357ed3f52700def73a31d"),
    ("jsonl/coating_cathode.jsonl", "cb2d223523fe0f0fe962c5cb580778a2add222c0725f592b83770c9c1162fdd0"),
    ("jsonl/drying_anode.jsonl", "9a59b433d7fbaf9c2f5f5721d27f1ad0b97cc4a9d5754bc3808e76bf4c11e173"),
    ("jsonl/drying_cathode.jsonl", "53fd255e6163d0f9f8eac2e59810615da2131a9e0dbc842b74e45af979326a4a"),
    ("jsonl/electrolyte_filling.jsonl", "87ceecbd571a60e28cf34495eafeb0b48be8163e32b0f0c76282b2d3b8ad9a0b"),
    ("jsonl/events.jsonl", "7c5637c4e19b0fc6c93fc7cd89f351395e2ba1bfae296ab15b4a9c160a521206"),
    ("jsonl/formation_cycling.jsonl", "c0353fab0d236bcd0499c4ad08e6c31a3f1bed27819d0eadbb7f41663f586eb8"),
    ("jsonl/inspection_anode.jsonl", "936cc78e18af5bfb53630e31643a3f5ecc550c74707d7302ed818bfb1499011d"),
    ("jsonl/inspection_cathode.jsonl", "5e848b597d3aa334f0dafc1666c6f6745f490022db61744a40fa3605ff58f5df"),
    ("jsonl/kpis.jsonl", "63baffb26e8be29081c07b8fe285ace5dc101810011f852e5716a026c04b01d6"),
    ("jsonl/mixing_anode.jsonl", "9fb918197d4ad238baffe1ab792280372d7e83bf89166982fe7f35a5a87259fb"),
    ("jsonl/mixing_cathode.jsonl", "bb9f682f45d684c80dd7cfd308dd8b0bd80944eb365d1101c63cad51e2277e18"),
    ("jsonl/rewinding_anode.jsonl", "2bbc022d379ee41d5b945e674edf59322fd3340df639d10f137a4092af6dfdd5"),
    ("jsonl/rewinding_cathode.jsonl", "e5acd03681ac179033a6a6122e6ed60363801efc5352336f6e75960cbfe5a277"),
    ("jsonl/slitting_anode.jsonl", "78d077b0444de6e17fcad5398acd4fe9f5bac819939ccd4f40238fe28b9822fe"),
    ("jsonl/slitting_cathode.jsonl", "801dd811f2473ee323ec9b75c826de50a519eeda6dc73eb0d17d3f6efd84944b"),
];

#[test]
fn jsonl_and_csv_tables_keep_their_recorded_bytes() {
    // cellfab run --quiet --config small.toml --batches 3 --seed 1 --start 2025-01-01T00:00:00Z
    //   --format jsonl,csv  (small.toml: queue_capacity = 1000, max_cells = 64)
    let base = tmp("golden");
    let config = base.join("golden.toml");
    std::fs::write(&config, "[plant]\nqueue_capacity = 1000\n\n[cell.assembly]\nmax_cells = 64\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_cellfab"))
        .args(["run", "--quiet", "--batches", "3", "--seed", "1", "--start", START, "--format", "jsonl,csv"])
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(base.join("out"))
        .output()
        .expect("cellfab runs");
    assert!(o.status.success(), "cellfab run failed: {}", String::from_utf8_lossy(&o.stderr));
    let dir = PathBuf::from(String::from_utf8(o.stdout).unwrap().lines().last().unwrap().trim());
    let mut files = 0;
    for f in ["csv", "jsonl"] {
        for e in std::fs::read_dir(dir.join("tables").join(f)).unwrap() {
            let p = e.unwrap().path();
            let rel = format!("{f}/{}", p.file_name().unwrap().to_string_lossy());
            let expected = GOLDEN_TABLES.iter().find(|(n, _)| *n == rel).map(|(_, h)| *h);
            assert_eq!(Some(sha256_hex(&p).as_str()), expected, "{rel}");
            files += 1;
        }
    }
    assert_eq!(files, GOLDEN_TABLES.len());
    let _ = std::fs::remove_dir_all(&base);
}
