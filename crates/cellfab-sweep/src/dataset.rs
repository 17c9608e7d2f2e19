//! The tables of a sweep as Parquet files: a typed column list, rows as JSON maps, and the
//! conversion both ways (arrow-rs `parquet`, Snappy, written to a hidden name and renamed).
//!
//! ```text
//!   rows (JSON maps) ──► columns(&[Column]) ──► RecordBatch ──► part-NNNNN.parquet
//!   part-NNNNN.parquet ──► read_rows ──► rows (JSON maps, floats bit-exact)
//! ```

use crate::error::SweepError;
use arrow_array::builder::{BooleanBuilder, Float64Builder, ListBuilder, StringBuilder, UInt32Builder, UInt64Builder};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, ListArray, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Arc;

/// The type of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 string.
    Str,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// 64-bit float, never null.
    F64,
    /// 64-bit float, null when the value does not exist (e.g. a cell rejected before formation).
    OptF64,
    /// Boolean.
    Bool,
    /// List of unsigned 32-bit integers.
    ListU32,
    /// List of strings.
    ListStr,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Str => DataType::Utf8,
            Kind::U32 => DataType::UInt32,
            Kind::U64 => DataType::UInt64,
            Kind::F64 | Kind::OptF64 => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::ListU32 => DataType::List(Arc::new(Field::new("item", DataType::UInt32, true))),
            Kind::ListStr => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        }
    }
}

/// One column: name and type.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// Column name (SI unit in the name where there is one).
    pub name: String,
    /// Type.
    pub kind: Kind,
}

impl Column {
    /// A column.
    pub fn new(name: impl Into<String>, kind: Kind) -> Self {
        Self { name: name.into(), kind }
    }
}

/// The per-cell columns, in the order of `cellfab_model::stages::aging::CellResultRow` (the
/// lines of `cell_results.jsonl`).
pub const CELL_COLUMNS: &[(&str, Kind)] = &[
    ("cell_id", Kind::Str),
    ("batch_id", Kind::U32),
    ("lane", Kind::U32),
    ("index_in_lane", Kind::U32),
    ("anode_reel_id", Kind::Str),
    ("cathode_reel_id", Kind::Str),
    ("anode_coating_start_m", Kind::F64),
    ("anode_coating_end_m", Kind::F64),
    ("cathode_coating_start_m", Kind::F64),
    ("cathode_coating_end_m", Kind::F64),
    ("splice", Kind::Bool),
    ("defect_ids", Kind::ListU32),
    ("fault_labels", Kind::ListU32),
    ("design_capacity_ah", Kind::F64),
    ("np_ratio", Kind::F64),
    ("wetting_frac", Kind::F64),
    ("first_charge_capacity_ah", Kind::OptF64),
    ("discharge_capacity_ah", Kind::OptF64),
    ("first_cycle_efficiency_frac", Kind::OptF64),
    ("discharge_energy_wh", Kind::OptF64),
    ("mean_discharge_voltage_v", Kind::OptF64),
    ("r0_ohm", Kind::OptF64),
    ("dcr_10s_ohm", Kind::OptF64),
    ("ocv_start_v", Kind::OptF64),
    ("ocv_1_v", Kind::OptF64),
    ("ocv_2_v", Kind::OptF64),
    ("k_value_v_per_s", Kind::OptF64),
    ("k_value_mv_per_day", Kind::OptF64),
    ("k_value_true_v_per_s", Kind::OptF64),
    ("soc_end_frac", Kind::OptF64),
    ("capacity_loss_ah", Kind::OptF64),
    ("dcr_eol_ohm", Kind::OptF64),
    ("mass_kg", Kind::F64),
    ("specific_energy_wh_kg", Kind::OptF64),
    ("energy_density_wh_l", Kind::OptF64),
    ("grade", Kind::Str),
    ("reject_reasons", Kind::ListStr),
];

/// Lot statistics per point (the `points` table), after the point and parameter columns.
pub const POINT_STAT_COLUMNS: &[(&str, Kind)] = &[
    ("cells", Kind::U64),
    ("cells_good", Kind::U64),
    ("grade_a", Kind::U64),
    ("grade_b", Kind::U64),
    ("grade_c", Kind::U64),
    ("grade_reject", Kind::U64),
    ("yield_frac", Kind::OptF64),
    ("mean_discharge_capacity_ah", Kind::OptF64),
    ("sd_discharge_capacity_ah", Kind::OptF64),
    ("mean_first_cycle_efficiency_frac", Kind::OptF64),
    ("mean_dcr_10s_ohm", Kind::OptF64),
    ("mean_k_value_mv_per_day", Kind::OptF64),
    ("mean_specific_energy_wh_kg", Kind::OptF64),
    ("plant_time_s", Kind::F64),
];

/// The Arrow schema of a column list.
pub fn schema(columns: &[Column]) -> Schema {
    Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.kind.data_type(), !matches!(c.kind, Kind::F64 | Kind::U32 | Kind::U64)))
            .collect::<Vec<_>>(),
    )
}

fn array(column: &Column, rows: &[Map<String, Value>]) -> ArrayRef {
    fn get<'a>(column: &Column, r: &'a Map<String, Value>) -> Option<&'a Value> {
        r.get(&column.name).filter(|v| !v.is_null())
    }
    let get = |r| get(column, r);
    match column.kind {
        Kind::Str => {
            let mut b = StringBuilder::new();
            rows.iter().for_each(|r| b.append_option(get(r).and_then(Value::as_str)));
            Arc::new(b.finish())
        }
        Kind::U32 => {
            let mut b = UInt32Builder::new();
            rows.iter().for_each(|r| b.append_value(get(r).and_then(Value::as_u64).unwrap_or(0) as u32));
            Arc::new(b.finish())
        }
        Kind::U64 => {
            let mut b = UInt64Builder::new();
            rows.iter().for_each(|r| b.append_value(get(r).and_then(Value::as_u64).unwrap_or(0)));
            Arc::new(b.finish())
        }
        Kind::F64 => {
            let mut b = Float64Builder::new();
            rows.iter().for_each(|r| b.append_value(get(r).and_then(Value::as_f64).unwrap_or(f64::NAN)));
            Arc::new(b.finish())
        }
        Kind::OptF64 => {
            let mut b = Float64Builder::new();
            rows.iter().for_each(|r| b.append_option(get(r).and_then(Value::as_f64)));
            Arc::new(b.finish())
        }
        Kind::Bool => {
            let mut b = BooleanBuilder::new();
            rows.iter().for_each(|r| b.append_option(get(r).and_then(Value::as_bool)));
            Arc::new(b.finish())
        }
        Kind::ListU32 => {
            let mut b = ListBuilder::new(UInt32Builder::new());
            for r in rows {
                for v in get(r).and_then(Value::as_array).into_iter().flatten() {
                    b.values().append_option(v.as_u64().map(|x| x as u32));
                }
                b.append(true);
            }
            Arc::new(b.finish())
        }
        Kind::ListStr => {
            let mut b = ListBuilder::new(StringBuilder::new());
            for r in rows {
                for v in get(r).and_then(Value::as_array).into_iter().flatten() {
                    b.values().append_option(v.as_str());
                }
                b.append(true);
            }
            Arc::new(b.finish())
        }
    }
}

/// Writes `rows` as one Parquet file (Snappy) with the given columns; keys a row lacks are
/// null (or NaN / 0 in non-null columns). Written to a hidden name first, then renamed.
pub fn write_parquet(path: &Path, columns: &[Column], rows: &[Map<String, Value>]) -> Result<(), SweepError> {
    let schema = Arc::new(schema(columns));
    let arrays: Vec<ArrayRef> = columns.iter().map(|c| array(c, rows)).collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| SweepError::Io(format!("cannot create {}: {e}", dir.display())))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("part.parquet");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let file =
        std::fs::File::create(&tmp).map_err(|e| SweepError::Io(format!("cannot create {}: {e}", tmp.display())))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))?;
    writer.write(&batch)?;
    writer.close()?;
    std::fs::rename(&tmp, path).map_err(|e| SweepError::Io(format!("cannot write {}: {e}", path.display())))
}

fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null)
}

fn value(array: &dyn Array, i: usize) -> Value {
    if array.is_null(i) {
        return Value::Null;
    }
    let any = array.as_any();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        Value::from(a.value(i))
    } else if let Some(a) = any.downcast_ref::<UInt32Array>() {
        Value::from(a.value(i))
    } else if let Some(a) = any.downcast_ref::<UInt64Array>() {
        Value::from(a.value(i))
    } else if let Some(a) = any.downcast_ref::<Float64Array>() {
        float(a.value(i))
    } else if let Some(a) = any.downcast_ref::<BooleanArray>() {
        Value::from(a.value(i))
    } else if let Some(a) = any.downcast_ref::<ListArray>() {
        let inner = a.value(i);
        Value::Array((0..inner.len()).map(|k| value(inner.as_ref(), k)).collect())
    } else {
        Value::Null
    }
}

/// Reads every row of a Parquet file back as JSON maps (column name → value).
pub fn read_rows(path: &Path) -> Result<Vec<Map<String, Value>>, SweepError> {
    let file = std::fs::File::open(path).map_err(|e| SweepError::Io(format!("cannot open {}: {e}", path.display())))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch?;
        let schema = batch.schema();
        for i in 0..batch.num_rows() {
            let row: Map<String, Value> = schema
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(f, col)| (f.name().clone(), value(col.as_ref(), i)))
                .collect();
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Every `*.parquet` file under `dir` (recursively), sorted by path.
pub fn parquet_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_type_reads_back_equal_including_nulls_and_lists() {
        let columns = vec![
            Column::new("s", Kind::Str),
            Column::new("u", Kind::U32),
            Column::new("w", Kind::U64),
            Column::new("f", Kind::F64),
            Column::new("o", Kind::OptF64),
            Column::new("b", Kind::Bool),
            Column::new("lu", Kind::ListU32),
            Column::new("ls", Kind::ListStr),
        ];
        let rows: Vec<Map<String, Value>> = vec![
            serde_json::json!({"s": "a", "u": 1, "w": u64::MAX, "f": 0.1 + 0.2, "o": null, "b": true, "lu": [], "ls": ["x", "y"]}),
            serde_json::json!({"s": "b", "u": 2, "w": 3, "f": -1e-300, "o": 2.5, "b": false, "lu": [4, 5], "ls": []}),
        ]
        .into_iter()
        .map(|v| v.as_object().cloned().unwrap())
        .collect();
        let dir = std::env::temp_dir().join(format!("cellfab-sweep-dataset-{}", std::process::id()));
        let path = dir.join("t.parquet");
        write_parquet(&path, &columns, &rows).unwrap();
        assert_eq!(read_rows(&path).unwrap(), rows);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
