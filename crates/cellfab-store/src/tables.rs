//! Columnar tables: the same rows written as JSON Lines, CSV and Parquet (docs/DATA.md,
//! "Tables").
//!
//! A [`TableWriter`] takes rows of any `Serialize` type (or JSON values), flattens them into
//! typed columns and streams them to one file per [`Format`]:
//!
//! * nested objects become `<parent>_<key>` columns, so a measured signal
//!   `{"true": …, "meas": …}` becomes `<name>_true` and `<name>_meas`;
//! * arrays (lanes, zones, labels, reject reasons) become one `<name>_json` text column that
//!   holds the array as JSON;
//! * column types are inferred from every row (integers `Int64`, numbers `Float64`,
//!   booleans, text; a column mixing integers and numbers is `Float64`, a column mixing
//!   anything else is text; a column with only nulls is `Float64` unless hinted) unless a
//!   fixed schema is given; an optional object that is null in some rows gives only its
//!   fields' columns.
//!
//! Rows go to a temporary spill file first and are streamed into the final files in row
//! groups of [`ROW_GROUP_ROWS`], so a table never sits in memory whole. Files are written under a
//! hidden temporary name and renamed by [`TableWriter::finish`], which returns one
//! [`TableEntry`] per file with its row count and SHA-256. Parquet files use Snappy and carry
//! no time-dependent metadata: the same rows give the same bytes.

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 16_384;

/// Errors of the table writers.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Reading or writing a file failed.
    #[error("table {table}: {source}")]
    Io {
        /// Table name.
        table: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The Parquet or Arrow writer refused the data.
    #[error("table {table}: parquet: {message}")]
    Parquet {
        /// Table name.
        table: String,
        /// What the writer said.
        message: String,
    },
    /// A row could not be serialised.
    #[error("table {table}: row: {message}")]
    Row {
        /// Table name.
        table: String,
        /// What serde said.
        message: String,
    },
}

/// A file format of the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header line.
    Csv,
    /// Apache Parquet, Snappy-compressed.
    Parquet,
}

impl Format {
    /// Every table format.
    pub const ALL: [Format; 3] = [Format::Jsonl, Format::Csv, Format::Parquet];

    /// Name as the command line spells it, also the folder under `tables/` and the extension.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

/// What `--format` asks for: the seed JSON layout and/or table formats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutputFormats {
    /// Write the seed layout's per-sample JSON files (`json`).
    pub seed_json: bool,
    /// Table formats, sorted, without duplicates.
    pub tables: Vec<Format>,
}

impl Default for OutputFormats {
    fn default() -> Self {
        Self { seed_json: true, tables: Vec::new() }
    }
}

/// The names `--format` accepts.
pub const FORMAT_NAMES: &str = "json, jsonl, csv, parquet";

impl OutputFormats {
    /// Parses a comma-separated list such as `json,parquet`. An empty list or an unknown name
    /// is an error naming the value and the allowed names.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut out = Self { seed_json: false, tables: Vec::new() };
        for name in list.split(',').map(str::trim) {
            match name {
                "json" => out.seed_json = true,
                other => match Format::ALL.into_iter().find(|f| f.name() == other) {
                    Some(f) => out.tables.push(f),
                    None => return Err(format!("unknown format {other:?} in {list:?} (allowed: {FORMAT_NAMES})")),
                },
            }
        }
        out.tables.sort_unstable();
        out.tables.dedup();
        Ok(out)
    }

    /// Parses a list of names (the API's `formats` array).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let list: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
        Self::parse(&list.join(","))
    }
}

/// One table file, as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableEntry {
    /// Table name (`coating_anode`, `cells`, …).
    pub table: String,
    /// File format.
    pub format: Format,
    /// Path relative to the run folder.
    pub path: String,
    /// Data rows (CSV: without the header).
    pub rows: u64,
    /// File size [bytes].
    pub bytes: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
}

/// The type of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// true / false.
    Bool,
    /// 64-bit signed integer.
    Int64,
    /// 64-bit float.
    Float64,
    /// UTF-8 text (also JSON text of arrays).
    Utf8,
    /// Instant, microseconds since 1970-01-01 UTC (Parquet `TIMESTAMP(MICROS, UTC)`; CSV and
    /// JSON Lines write RFC 3339 text).
    Timestamp,
}

impl ColumnType {
    /// Name used in docs/DATA.md.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Bool => "bool",
            ColumnType::Int64 => "int64",
            ColumnType::Float64 => "float64",
            ColumnType::Utf8 => "string",
            ColumnType::Timestamp => "timestamp[us, UTC]",
        }
    }

    fn arrow(self) -> DataType {
        match self {
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Utf8 => DataType::Utf8,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    fn merge(self, other: ColumnType) -> ColumnType {
        use ColumnType::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Int64, Float64) | (Float64, Int64) => Float64,
            _ => Utf8,
        }
    }
}

/// A column: name and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Column type.
    pub ty: ColumnType,
}

impl Column {
    /// A column.
    pub fn new(name: &str, ty: ColumnType) -> Self {
        Self { name: name.to_string(), ty }
    }
}

/// One value of a row.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub enum Cell {
    /// Missing.
    #[serde(rename = "n")]
    Null,
    /// Boolean.
    #[serde(rename = "b")]
    Bool(bool),
    /// Integer.
    #[serde(rename = "i")]
    Int(i64),
    /// Number (non-finite values are stored as null).
    #[serde(rename = "f")]
    Float(f64),
    /// Text.
    #[serde(rename = "s")]
    Str(String),
    /// Instant [µs since the Unix epoch, UTC].
    #[serde(rename = "t")]
    Timestamp(i64),
}

impl Cell {
    fn ty(&self) -> Option<ColumnType> {
        match self {
            Cell::Null => None,
            Cell::Bool(_) => Some(ColumnType::Bool),
            Cell::Int(_) => Some(ColumnType::Int64),
            Cell::Float(_) => Some(ColumnType::Float64),
            Cell::Str(_) => Some(ColumnType::Utf8),
            Cell::Timestamp(_) => Some(ColumnType::Timestamp),
        }
    }

    /// The value as text in a column of type `ty` (`None` for null): CSV fields.
    fn text(&self, ty: ColumnType) -> Option<String> {
        Some(match (self, ty) {
            (Cell::Null, _) => return None,
            (Cell::Int(i), ColumnType::Float64) => float_text(*i as f64),
            (Cell::Float(x), _) => float_text(*x),
            (Cell::Int(i), _) => i.to_string(),
            (Cell::Bool(b), _) => b.to_string(),
            (Cell::Str(s), _) => s.clone(),
            (Cell::Timestamp(us), _) => timestamp_text(*us),
        })
    }

    /// The value as JSON in a column of type `ty`: JSON Lines.
    fn json(&self, ty: ColumnType) -> Value {
        match (self, ty) {
            (Cell::Null, _) => Value::Null,
            (Cell::Bool(b), ColumnType::Bool) => Value::Bool(*b),
            (Cell::Int(i), ColumnType::Int64) => Value::from(*i),
            (Cell::Int(i), ColumnType::Float64) => Value::from(*i as f64),
            (Cell::Float(x), ColumnType::Float64) => Value::from(*x),
            (c, _) => c.text(ty).map(Value::String).unwrap_or(Value::Null),
        }
    }
}

/// Shortest round-trip text of a float (`1e-5`, `0.25`, `3.0`), as JSON writes it.
fn float_text(x: f64) -> String {
    serde_json::to_string(&x).unwrap_or_default()
}

/// RFC 3339 UTC with microseconds: `2025-01-01T00:00:05.000000Z`.
fn timestamp_text(us: i64) -> String {
    let ts = jiff::Timestamp::from_microsecond(us).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A row: column names and values, in column order.
pub type Row = Vec<(String, Cell)>;

/// Flattens a JSON value into `row`: objects give `<prefix>_<key>` columns, arrays one
/// `<prefix>_json` text column, scalars one column named `prefix`.
pub fn flatten_into(prefix: &str, value: &Value, row: &mut Row) {
    let join = |key: &str| if prefix.is_empty() { key.to_string() } else { format!("{prefix}_{key}") };
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| flatten_into(&join(k), v, row)),
        Value::Array(_) => row.push((join("json"), Cell::Str(value.to_string()))),
        Value::Null => row.push((prefix.to_string(), Cell::Null)),
        Value::Bool(b) => row.push((prefix.to_string(), Cell::Bool(*b))),
        Value::Number(n) => {
            let cell = match (n.is_f64(), n.as_i64()) {
                (false, Some(i)) => Cell::Int(i),
                _ => n.as_f64().map_or(Cell::Null, Cell::Float),
            };
            row.push((prefix.to_string(), cell));
        }
        Value::String(s) => row.push((prefix.to_string(), Cell::Str(s.clone()))),
    }
}

/// Flattens any serialisable row (a struct or a JSON object).
pub fn flatten<T: Serialize + ?Sized>(row: &T) -> Result<Row, serde_json::Error> {
    let mut out = Row::new();
    flatten_into("", &serde_json::to_value(row)?, &mut out);
    Ok(out)
}

enum Sink {
    Jsonl(BufWriter<File>),
    Csv(Box<csv::Writer<BufWriter<File>>>),
    Parquet(Box<ArrowWriter<BufWriter<File>>>),
}

struct Target {
    format: Format,
    rel: String,
    tmp: PathBuf,
    path: PathBuf,
}

/// One row of the spill file: (column number in the registry, value).
type SpillRow = Vec<(u32, Cell)>;

/// Streams one table to one file per format.
///
/// Rows go to a temporary spill file as they come while the writer learns the columns and
/// their types from every row; [`TableWriter::finish`] then streams the spill into the
/// final files. So the schema sees every row (a field that is null in the first thousand
/// rows still gets its type) and memory holds one row group at most.
pub struct TableWriter {
    name: String,
    targets: Vec<Target>,
    fixed: Option<Vec<Column>>,
    hints: BTreeMap<String, ColumnType>,
    /// Every column seen, in first-seen order, with its merged type (`None`: only nulls).
    registry: Vec<(String, Option<ColumnType>)>,
    index: HashMap<String, usize>,
    spill_path: PathBuf,
    spill: BufWriter<File>,
    rows: u64,
}

impl TableWriter {
    /// A table `name` written to `root/tables/<format>/<name>.<format>` for every format.
    pub fn create(root: &Path, name: &str, formats: &[Format]) -> Result<Self, TableError> {
        let targets =
            formats.iter().map(|f| (*f, format!("tables/{}/{}.{}", f.name(), name, f.name()))).collect::<Vec<_>>();
        Self::create_at(root, name, &targets)
    }

    /// A table written to the given paths relative to `root` (one per format); folders are
    /// created as needed. The spill file lives next to the first target.
    pub fn create_at(root: &Path, name: &str, targets: &[(Format, String)]) -> Result<Self, TableError> {
        let io = |source| TableError::Io { table: name.to_string(), source };
        let mut out = Vec::new();
        for (format, rel) in targets {
            let path = root.join(rel);
            let dir = path.parent().unwrap_or(root);
            std::fs::create_dir_all(dir).map_err(io)?;
            let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or(name);
            let tmp = dir.join(format!(".{file_name}.partial"));
            out.push(Target { format: *format, rel: rel.clone(), tmp, path });
        }
        let spill_dir = out.first().and_then(|t| t.path.parent()).unwrap_or(root).to_path_buf();
        std::fs::create_dir_all(&spill_dir).map_err(io)?;
        let spill_path = spill_dir.join(format!(".{name}.spill"));
        let spill = BufWriter::with_capacity(1 << 16, File::create(&spill_path).map_err(io)?);
        Ok(Self {
            name: name.to_string(),
            targets: out,
            fixed: None,
            hints: BTreeMap::new(),
            registry: Vec::new(),
            index: HashMap::new(),
            spill_path,
            spill,
            rows: 0,
        })
    }

    /// Fixes the columns instead of inferring them; values of other columns are ignored.
    pub fn with_schema(mut self, columns: Vec<Column>) -> Self {
        self.fixed = Some(columns);
        self
    }

    /// The type of a column that holds only nulls (default float64).
    pub fn with_hint(mut self, column: &str, ty: ColumnType) -> Self {
        self.hints.insert(column.to_string(), ty);
        self
    }

    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The columns the file will have if no further row comes.
    pub fn columns(&self) -> Vec<Column> {
        if let Some(fixed) = &self.fixed {
            return fixed.clone();
        }
        let typed = |name: &str| self.registry.iter().any(|(n, t)| t.is_some() && n.starts_with(&format!("{name}_")));
        self.registry
            .iter()
            // an optional object that was null in some rows: its fields are the columns
            .filter(|(name, ty)| ty.is_some() || !typed(name))
            .map(|(name, ty)| Column {
                name: name.clone(),
                ty: ty.or_else(|| self.hints.get(name).copied()).unwrap_or(ColumnType::Float64),
            })
            .collect()
    }

    /// Appends any serialisable row (flattened).
    pub fn push<T: Serialize + ?Sized>(&mut self, row: &T) -> Result<(), TableError> {
        let row = flatten(row).map_err(|e| TableError::Row { table: self.name.clone(), message: e.to_string() })?;
        self.push_row(row)
    }

    /// Appends a flattened row.
    pub fn push_row(&mut self, row: Row) -> Result<(), TableError> {
        self.rows += 1;
        let mut spill: SpillRow = Vec::with_capacity(row.len());
        for (name, cell) in row {
            let cell = match cell {
                Cell::Float(x) if !x.is_finite() => Cell::Null,
                c => c,
            };
            let i = match self.index.get(&name) {
                Some(i) => *i,
                None => {
                    self.registry.push((name.clone(), None));
                    self.index.insert(name, self.registry.len() - 1);
                    self.registry.len() - 1
                }
            };
            if let Some(t) = cell.ty() {
                let slot = &mut self.registry[i].1;
                *slot = Some(slot.map_or(t, |c| c.merge(t)));
            }
            spill.push((i as u32, cell));
        }
        let io = |source| TableError::Io { table: self.name.clone(), source };
        serde_json::to_writer(&mut self.spill, &spill).map_err(|e| io(e.into()))?;
        self.spill.write_all(b"\n").map_err(io)
    }

    fn pq(&self, e: impl std::fmt::Display) -> TableError {
        TableError::Parquet { table: self.name.clone(), message: e.to_string() }
    }

    /// Writes every file from the spill, renames it into place and returns one entry per
    /// file. A table that received no rows and has no fixed schema writes nothing and
    /// returns no entry.
    pub fn finish(mut self) -> Result<Vec<TableEntry>, TableError> {
        let name = self.name.clone();
        let io = |source| TableError::Io { table: name.clone(), source };
        self.spill.flush().map_err(io)?;
        let result = self.write_files();
        let _ = std::fs::remove_file(&self.spill_path);
        for t in &self.targets {
            let _ = std::fs::remove_file(&t.tmp);
        }
        result
    }

    fn write_files(&mut self) -> Result<Vec<TableEntry>, TableError> {
        let name = self.name.clone();
        let io = |source| TableError::Io { table: name.clone(), source };
        if self.rows == 0 && self.fixed.is_none() {
            return Ok(Vec::new());
        }
        let columns = self.columns();
        let position: HashMap<&str, usize> = columns.iter().enumerate().map(|(i, c)| (c.name.as_str(), i)).collect();
        // registry number → column number (None: not a column of the file)
        let to_column: Vec<Option<usize>> =
            self.registry.iter().map(|(n, _)| position.get(n.as_str()).copied()).collect();
        let schema =
            Arc::new(Schema::new(columns.iter().map(|c| Field::new(&c.name, c.ty.arrow(), true)).collect::<Vec<_>>()));
        let mut sinks = Vec::new();
        for t in &self.targets {
            let file = BufWriter::with_capacity(1 << 16, File::create(&t.tmp).map_err(io)?);
            sinks.push(match t.format {
                Format::Jsonl => Sink::Jsonl(file),
                Format::Csv => {
                    let mut w = csv::Writer::from_writer(file);
                    w.write_record(columns.iter().map(|c| c.name.as_str()))
                        .map_err(|e| io(std::io::Error::other(e)))?;
                    Sink::Csv(Box::new(w))
                }
                Format::Parquet => {
                    let props = WriterProperties::builder()
                        .set_compression(Compression::SNAPPY)
                        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                        .set_created_by(format!("cellfab {}", env!("CARGO_PKG_VERSION")))
                        .build();
                    let w = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| self.pq(e))?;
                    Sink::Parquet(Box::new(w))
                }
            });
        }
        let has_parquet = sinks.iter().any(|s| matches!(s, Sink::Parquet(_)));
        let mut group: Vec<Vec<Cell>> = Vec::new();
        let spill = std::io::BufReader::with_capacity(1 << 16, File::open(&self.spill_path).map_err(io)?);
        for line in std::io::BufRead::lines(spill) {
            let line = line.map_err(io)?;
            let row: SpillRow = serde_json::from_str(&line).map_err(|e| io(e.into()))?;
            let mut cells = vec![Cell::Null; columns.len()];
            for (i, cell) in row {
                if let Some(Some(at)) = to_column.get(i as usize) {
                    cells[*at] = cell;
                }
            }
            for sink in &mut sinks {
                write_row(sink, &columns, &cells).map_err(io)?;
            }
            if has_parquet {
                group.push(cells);
                if group.len() >= ROW_GROUP_ROWS {
                    self.write_group(&mut sinks, &columns, &schema, std::mem::take(&mut group))?;
                }
            }
        }
        if !group.is_empty() {
            self.write_group(&mut sinks, &columns, &schema, group)?;
        }
        for sink in sinks {
            let file = match sink {
                Sink::Jsonl(w) => w.into_inner().map_err(|e| io(e.into_error()))?,
                Sink::Csv(w) => {
                    let inner = w.into_inner().map_err(|e| io(std::io::Error::other(e.to_string())))?;
                    inner.into_inner().map_err(|e| io(e.into_error()))?
                }
                Sink::Parquet(w) => {
                    let inner = w.into_inner().map_err(|e| self.pq(e))?;
                    inner.into_inner().map_err(|e| io(e.into_error()))?
                }
            };
            file.sync_all().map_err(io)?;
        }
        let mut entries = Vec::new();
        for t in &self.targets {
            std::fs::rename(&t.tmp, &t.path).map_err(io)?;
            let (bytes, sha256) = sha256_file(&t.path).map_err(io)?;
            entries.push(TableEntry {
                table: self.name.clone(),
                format: t.format,
                path: t.rel.clone(),
                rows: self.rows,
                bytes,
                sha256,
            });
        }
        Ok(entries)
    }

    fn write_group(
        &self,
        sinks: &mut [Sink],
        columns: &[Column],
        schema: &Arc<Schema>,
        rows: Vec<Vec<Cell>>,
    ) -> Result<(), TableError> {
        let arrays: Vec<ArrayRef> = columns.iter().enumerate().map(|(i, c)| column_array(c.ty, &rows, i)).collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| self.pq(e))?;
        for sink in sinks {
            if let Sink::Parquet(w) = sink {
                w.write(&batch).map_err(|e| self.pq(e))?;
            }
        }
        Ok(())
    }
}

/// Writes one row to a JSON Lines or CSV sink (Parquet sinks take row groups).
fn write_row(sink: &mut Sink, columns: &[Column], cells: &[Cell]) -> std::io::Result<()> {
    match sink {
        Sink::Jsonl(w) => {
            let mut map = serde_json::Map::with_capacity(cells.len());
            for (c, cell) in columns.iter().zip(cells) {
                map.insert(c.name.clone(), cell.json(c.ty));
            }
            serde_json::to_writer(&mut *w, &Value::Object(map))?;
            w.write_all(b"\n")
        }
        Sink::Csv(w) => {
            for (c, cell) in columns.iter().zip(cells) {
                w.write_field(cell.text(c.ty).unwrap_or_default()).map_err(std::io::Error::other)?;
            }
            w.write_record(None::<&[u8]>).map_err(std::io::Error::other)
        }
        Sink::Parquet(_) => Ok(()),
    }
}

fn column_array(ty: ColumnType, rows: &[Vec<Cell>], i: usize) -> ArrayRef {
    let cells = rows.iter().map(|r| &r[i]);
    match ty {
        ColumnType::Bool => Arc::new(BooleanArray::from(
            cells.map(|c| if let Cell::Bool(b) = c { Some(*b) } else { None }).collect::<Vec<_>>(),
        )),
        ColumnType::Int64 => Arc::new(Int64Array::from(
            cells.map(|c| if let Cell::Int(v) = c { Some(*v) } else { None }).collect::<Vec<_>>(),
        )),
        ColumnType::Float64 => Arc::new(Float64Array::from(
            cells
                .map(|c| match c {
                    Cell::Float(x) => Some(*x),
                    Cell::Int(v) => Some(*v as f64),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        )),
        ColumnType::Utf8 => Arc::new(StringArray::from(cells.map(|c| c.text(ty)).collect::<Vec<_>>())),
        ColumnType::Timestamp => Arc::new(
            TimestampMicrosecondArray::from(
                cells.map(|c| if let Cell::Timestamp(v) = c { Some(*v) } else { None }).collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
    }
}

/// Size and SHA-256 (lowercase hex) of a file, read in blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let hex = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((bytes, hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_with_json_as_the_seed_layout() {
        let f = OutputFormats::parse("parquet,json,csv,parquet").unwrap();
        assert!(f.seed_json);
        assert_eq!(f.tables, vec![Format::Csv, Format::Parquet]);
        let err = OutputFormats::parse("json,xlsx").unwrap_err();
        assert!(err.contains("xlsx") && err.contains("parquet"), "{err}");
        assert!(OutputFormats::parse("").is_err());
    }

    #[test]
    fn readings_flatten_to_true_and_meas_columns_and_arrays_to_json_text() {
        let v = serde_json::json!({"t_s": 1.5, "n": 3, "speed_m_s": {"true": 1.0, "meas": null}, "zones": [1, 2]});
        let row = flatten(&v).unwrap();
        let names: Vec<&str> = row.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["t_s", "n", "speed_m_s_true", "speed_m_s_meas", "zones_json"]);
        assert_eq!(row[1].1, Cell::Int(3));
        assert_eq!(row[3].1, Cell::Null);
        assert_eq!(row[4].1, Cell::Str("[1,2]".into()));
    }

    #[test]
    fn mixed_integer_and_float_columns_become_float_and_other_mixes_text() {
        assert_eq!(ColumnType::Int64.merge(ColumnType::Float64), ColumnType::Float64);
        assert_eq!(ColumnType::Bool.merge(ColumnType::Float64), ColumnType::Utf8);
    }
}
