//! Fast rows: the direct flattening gives the same columns as flattening a JSON value, the
//! binary spill keeps every value, and wide text columns close Parquet row groups early.

use cellfab_model::{Line, StageKind};
use cellfab_plant::events::PlantEvent;
use cellfab_plant::flat::{flatten as flat, FlatOwned};
use cellfab_plant::{Delivery, Plant, PlantConfig};
use cellfab_store::tables::{flatten_into, Cell, Format, Row, TableWriter, ROW_GROUP_ROWS};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The columns of the direct path, as table cells.
fn direct<T: Serialize + ?Sized>(value: &T) -> Row {
    let mut out: Vec<(String, FlatOwned)> = Vec::new();
    flat(value, &mut out).unwrap();
    as_cells(out)
}

/// Flattened values as table cells.
fn as_cells(values: Vec<(String, FlatOwned)>) -> Row {
    values
        .into_iter()
        .map(|(n, v)| {
            let cell = match v {
                FlatOwned::Null => Cell::Null,
                FlatOwned::Bool(b) => Cell::Bool(b),
                FlatOwned::Int(i) => Cell::Int(i),
                FlatOwned::Float(x) => Cell::Float(x),
                FlatOwned::Str(s) => Cell::Str(s),
            };
            (n, cell)
        })
        .collect()
}

/// The columns of the JSON path the tables used before.
fn via_json(value: &Value) -> Row {
    let mut row = Row::new();
    flatten_into("", value, &mut row);
    row
}

fn assert_same<T: Serialize>(value: &T) {
    let expected = via_json(&serde_json::to_value(value).unwrap());
    assert_eq!(direct(value), expected, "for {}", serde_json::to_string(value).unwrap_or_default());
}

#[test]
fn samples_of_every_stage_flatten_directly_to_the_same_columns_as_through_json() {
    let mut c = PlantConfig::default();
    c.plant.start = "2025-01-01T00:00:00Z".into();
    c.plant.batches = 1;
    c.cell.assembly.max_cells = 64;
    let plant = Plant::new(c, jiff::Timestamp::now()).unwrap();
    let sub = plant.bus().subscribe(1 << 16, Delivery::Reliable);
    let h = std::thread::spawn(move || {
        let mut samples: BTreeMap<String, usize> = BTreeMap::new();
        let mut cells = 0;
        for e in sub.rx {
            match &*e {
                PlantEvent::Sample { machine, sample, .. } => {
                    let mut got: Vec<(String, FlatOwned)> = Vec::new();
                    sample.flatten(&mut got).unwrap();
                    let got = as_cells(got);
                    let key = format!("{:?}/{:?}", machine.line, machine.stage);
                    assert_eq!(got, via_json(&sample.to_json()), "{key}");
                    *samples.entry(key).or_default() += 1;
                }
                PlantEvent::CellResults { rows, .. } => {
                    for r in rows.iter() {
                        assert_eq!(direct(r), via_json(r));
                        cells += 1;
                    }
                }
                _ => {}
            }
        }
        (samples, cells)
    });
    plant.run().unwrap();
    let (samples, cells) = h.join().unwrap();
    let mut expected = BTreeSet::new();
    for line in [Line::Anode, Line::Cathode] {
        expected.extend(StageKind::ELECTRODE.iter().map(|s| format!("{line:?}/{s:?}")));
    }
    expected.extend(StageKind::CELL.iter().map(|s| format!("{:?}/{s:?}", Line::Cell)));
    let seen: BTreeSet<String> = samples.keys().cloned().collect();
    assert_eq!(seen, expected, "every stage's samples were compared");
    assert!(cells > 0, "cell result rows were compared");
}

#[derive(Serialize)]
struct Reading {
    #[serde(rename = "true")]
    truth: f64,
    meas: Option<f64>,
}

#[derive(Serialize)]
enum Mode {
    Idle,
    Speed(f64),
    Pair(i32, i32),
    Zone { id: u8, hot: bool },
}

#[derive(Serialize)]
struct Totals {
    count: u64,
    label: String,
}

#[derive(Serialize)]
struct Unit;

#[derive(Serialize)]
struct Wrapper(u16);

#[derive(Serialize)]
struct Everything {
    none: Option<Reading>,
    some: Option<Reading>,
    idle: Mode,
    speed: Mode,
    pair: Mode,
    zone: Mode,
    nested: BTreeMap<String, BTreeMap<String, i64>>,
    numbered: BTreeMap<u32, bool>,
    readings: Vec<Reading>,
    tuple: (u8, &'static str),
    nan: f64,
    inf: f64,
    small: f32,
    smalls: Vec<f32>,
    nested_lists: Vec<Vec<Option<f64>>>,
    huge: u64,
    max_i64: u64,
    min: i64,
    letter: char,
    empty: String,
    unicode: String,
    unit: (),
    unit_struct: Unit,
    wrapper: Wrapper,
    bytes: Vec<u8>,
    empty_map: BTreeMap<String, f64>,
    #[serde(flatten)]
    totals: Totals,
    #[serde(flatten)]
    extra: Option<Totals>,
}

#[test]
fn hand_made_values_flatten_directly_like_serde_json_values() {
    let mut nested = BTreeMap::new();
    nested.insert("inner".to_string(), BTreeMap::from([("a".to_string(), 1), ("b".to_string(), -2)]));
    nested.insert("empty".to_string(), BTreeMap::new());
    let v = Everything {
        none: None,
        some: Some(Reading { truth: 1.5, meas: None }),
        idle: Mode::Idle,
        speed: Mode::Speed(0.25),
        pair: Mode::Pair(3, -4),
        zone: Mode::Zone { id: 7, hot: true },
        nested,
        numbered: BTreeMap::from([(1, true), (20, false)]),
        readings: vec![Reading { truth: 1.0, meas: Some(f64::NAN) }, Reading { truth: 0.1, meas: Some(2.0) }],
        tuple: (1, "x"),
        nan: f64::NAN,
        inf: f64::NEG_INFINITY,
        small: 0.1,
        smalls: vec![0.1, f32::NAN, 3.0],
        nested_lists: vec![vec![Some(1.0), None], vec![], vec![Some(f64::INFINITY)]],
        huge: u64::MAX,
        max_i64: i64::MAX as u64,
        min: i64::MIN,
        letter: 'é',
        empty: String::new(),
        unicode: "Ω µm “quoted”\n\t\\".into(),
        unit: (),
        unit_struct: Unit,
        wrapper: Wrapper(9),
        bytes: vec![0, 255],
        empty_map: BTreeMap::new(),
        totals: Totals { count: 3, label: "lot".into() },
        extra: None,
    };
    assert_same(&v);
    let row = direct(&v);
    let get = |name: &str| row.iter().find(|(n, _)| n == name).map(|(_, c)| c.clone());
    assert_eq!(get("none"), Some(Cell::Null));
    assert_eq!(get("some_true"), Some(Cell::Float(1.5)));
    assert_eq!(get("idle"), Some(Cell::Str("Idle".into())));
    assert_eq!(get("speed_Speed"), Some(Cell::Float(0.25)));
    assert_eq!(get("pair_Pair_json"), Some(Cell::Str("[3,-4]".into())));
    assert_eq!(get("zone_Zone_hot"), Some(Cell::Bool(true)));
    assert_eq!(get("nested_inner_b"), Some(Cell::Int(-2)));
    assert_eq!(get("numbered_20"), Some(Cell::Bool(false)));
    assert_eq!(get("readings_json"), Some(Cell::Str(r#"[{"true":1.0,"meas":null},{"true":0.1,"meas":2.0}]"#.into())));
    assert_eq!(get("nan"), Some(Cell::Null));
    assert_eq!(get("smalls_json"), Some(Cell::Str("[0.10000000149011612,null,3.0]".into())));
    assert_eq!(get("nested_lists_json"), Some(Cell::Str("[[1.0,null],[],[null]]".into())));
    assert_eq!(get("huge"), Some(Cell::Float(u64::MAX as f64)));
    assert_eq!(get("max_i64"), Some(Cell::Int(i64::MAX)));
    assert_eq!(get("count"), Some(Cell::Int(3)));
    assert_eq!(get("extra"), None);
    // a top-level array and scalar, and an optional struct with a nested flatten
    assert_same(&vec![1, 2, 3]);
    assert_same(&2.5);
    assert_same(&Mode::Zone { id: 1, hot: false });
    assert_same(&json!({"a": {"b": [1, {"c": null}], "": {"d": "e"}}, "": 1}));
    assert_same(&WithExtra { a: 1, extra: Some(Reading { truth: 2.0, meas: Some(3.0) }) });
    assert_same(&WithExtra { a: 1, extra: None });
}

#[derive(Serialize)]
struct WithExtra {
    a: i32,
    #[serde(flatten)]
    extra: Option<Reading>,
}

fn jsonl_rows(root: &std::path::Path, name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root.join(format!("tables/jsonl/{name}.jsonl"))).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cellfab-flat-rows-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_cell_kind_survives_the_spill_with_empty_and_unicode_text_and_many_columns() {
    let dir = tempdir("spill");
    let mut t = TableWriter::create(&dir, "wide", &[Format::Jsonl]).unwrap();
    let texts = ["", "plain", "Ω µm “quoted” 🔋", "line\nbreak \"q\" \\"];
    for r in 0..50i64 {
        let mut row: Row = vec![
            ("null".into(), Cell::Null),
            ("flag".into(), Cell::Bool(r % 2 == 0)),
            ("int".into(), Cell::Int(r * 1_000_000_007 - i64::from(r == 3) * i64::MAX)),
            ("float".into(), Cell::Float(r as f64 * 0.1 - 1e-300)),
            ("text".into(), Cell::Str(texts[r as usize % texts.len()].into())),
            ("at".into(), Cell::Timestamp(1_735_689_600_000_000 + r)),
        ];
        row.extend((0..300).map(|c| (format!("c{c}"), Cell::Int(r + c))));
        t.push_row(row).unwrap();
    }
    t.finish().unwrap();
    let rows = jsonl_rows(&dir, "wide");
    assert_eq!(rows.len(), 50);
    for (r, row) in rows.iter().enumerate() {
        let r = r as i64;
        assert_eq!(row["null"], Value::Null);
        assert_eq!(row["flag"], json!(r % 2 == 0));
        assert_eq!(row["int"], json!(r * 1_000_000_007 - i64::from(r == 3) * i64::MAX));
        assert_eq!(row["float"], json!(r as f64 * 0.1 - 1e-300));
        assert_eq!(row["text"], json!(texts[r as usize % texts.len()]));
        let at = jiff::Timestamp::from_microsecond(1_735_689_600_000_000 + r).unwrap();
        assert_eq!(row["at"], json!(at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()));
        assert_eq!(row.as_object().unwrap().len(), 306);
        assert_eq!(row["c299"], json!(r + 299));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wide_text_rows_close_parquet_row_groups_before_the_row_limit() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = tempdir("groups");
    let mut t = TableWriter::create(&dir, "wide_json", &[Format::Parquet]).unwrap();
    let big = "x".repeat(32 * 1024);
    for i in 0..600i64 {
        t.push(&json!({"i": i, "lanes": [big.as_str()]})).unwrap();
    }
    t.finish().unwrap();
    let file = std::fs::File::open(dir.join("tables/parquet/wide_json.parquet")).unwrap();
    let meta = SerializedFileReader::new(file).unwrap().metadata().clone();
    let groups: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
    assert!(groups.len() > 1, "row groups: {groups:?}");
    assert!(groups.iter().all(|n| (*n as usize) < ROW_GROUP_ROWS), "{groups:?}");
    assert_eq!(groups.iter().sum::<i64>(), 600);
    // narrow rows still fill whole row groups of ROW_GROUP_ROWS
    let mut t = TableWriter::create(&dir, "narrow", &[Format::Parquet]).unwrap();
    for i in 0..(ROW_GROUP_ROWS as i64 + 10) {
        t.push(&json!({"i": i, "x": 0.5})).unwrap();
    }
    t.finish().unwrap();
    let file = std::fs::File::open(dir.join("tables/parquet/narrow.parquet")).unwrap();
    let meta = SerializedFileReader::new(file).unwrap().metadata().clone();
    let groups: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
    assert_eq!(groups, vec![ROW_GROUP_ROWS as i64, 10]);
    let _ = std::fs::remove_dir_all(&dir);
}
