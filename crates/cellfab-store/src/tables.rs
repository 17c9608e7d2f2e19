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
//! Rows are flattened straight from the typed values ([`cellfab_plant::flat`], no
//! `serde_json::Value` in between) into a compact binary spill file first, and are streamed
//! into the final files in row groups of at most [`ROW_GROUP_ROWS`] rows and about
//! [`ROW_GROUP_BYTES`] bytes, so a table never sits in memory whole. Files are written under a
//! hidden temporary name and renamed by [`TableWriter::finish`], which returns one
//! [`TableEntry`] per file with its row count and SHA-256. Parquet files use Snappy and carry
//! no time-dependent metadata: the same rows give the same bytes.

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use cellfab_plant::flat::{FlatSink, FlatValue};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Most rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 16_384;

/// Estimated in-memory size [bytes] at which a Parquet row group is written before it has
/// [`ROW_GROUP_ROWS`] rows: 8 bytes per value plus the length of every text value, so wide
/// `*_json` columns give smaller groups and the memory of [`TableWriter::finish`] stays
/// bounded.
pub const ROW_GROUP_BYTES: usize = 8 << 20;

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

/// A value on its way into the spill: a [`Cell`] that borrows its text.
#[derive(Clone, Copy)]
enum Leaf<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Timestamp(i64),
}

impl<'a> Leaf<'a> {
    fn of(cell: &'a Cell) -> Self {
        match cell {
            Cell::Null => Leaf::Null,
            Cell::Bool(b) => Leaf::Bool(*b),
            Cell::Int(i) => Leaf::Int(*i),
            Cell::Float(x) => Leaf::Float(*x),
            Cell::Str(s) => Leaf::Str(s),
            Cell::Timestamp(us) => Leaf::Timestamp(*us),
        }
    }

    fn ty(self) -> Option<ColumnType> {
        match self {
            Leaf::Null => None,
            Leaf::Bool(_) => Some(ColumnType::Bool),
            Leaf::Int(_) => Some(ColumnType::Int64),
            Leaf::Float(_) => Some(ColumnType::Float64),
            Leaf::Str(_) => Some(ColumnType::Utf8),
            Leaf::Timestamp(_) => Some(ColumnType::Timestamp),
        }
    }
}

// The spill file, row by row: u32 cell count, then per cell u32 column number (in the
// registry), a tag byte and the payload: 8 little-endian bytes for numbers and instants,
// 1 byte for booleans, u32 length + UTF-8 bytes for text, nothing for null.
const TAG_NULL: u8 = 0;
const TAG_BOOL: u8 = 1;
const TAG_INT: u8 = 2;
const TAG_FLOAT: u8 = 3;
const TAG_STR: u8 = 4;
const TAG_TIMESTAMP: u8 = 5;

/// Appends one cell of a spill row to `buf`.
fn encode_cell(buf: &mut Vec<u8>, column: u32, leaf: Leaf<'_>) {
    buf.extend_from_slice(&column.to_le_bytes());
    match leaf {
        Leaf::Null => buf.push(TAG_NULL),
        Leaf::Bool(b) => buf.extend_from_slice(&[TAG_BOOL, u8::from(b)]),
        Leaf::Int(i) => {
            buf.push(TAG_INT);
            buf.extend_from_slice(&i.to_le_bytes());
        }
        Leaf::Float(x) => {
            buf.push(TAG_FLOAT);
            buf.extend_from_slice(&x.to_le_bytes());
        }
        Leaf::Str(s) => {
            buf.push(TAG_STR);
            // text longer than 4 GiB cannot be a table value; the length saturates and the
            // spill reader reports the row as corrupt rather than misreading it
            buf.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
            buf.extend_from_slice(s.as_bytes());
        }
        Leaf::Timestamp(us) => {
            buf.push(TAG_TIMESTAMP);
            buf.extend_from_slice(&us.to_le_bytes());
        }
    }
}

fn corrupt(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("corrupt spill file: {what}"))
}

fn read_array<const N: usize>(r: &mut impl Read) -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => corrupt("truncated row"),
        _ => e,
    })?;
    Ok(b)
}

/// Reads the next spill row into `row` (cleared first); `false` at the end of the file. A
/// truncated or malformed row is an `InvalidData` error.
fn decode_row(r: &mut impl BufRead, row: &mut Vec<(u32, Cell)>) -> std::io::Result<bool> {
    row.clear();
    if r.fill_buf()?.is_empty() {
        return Ok(false);
    }
    let count = u32::from_le_bytes(read_array(r)?);
    for _ in 0..count {
        let column = u32::from_le_bytes(read_array(r)?);
        let [tag] = read_array(r)?;
        let cell = match tag {
            TAG_NULL => Cell::Null,
            TAG_BOOL => match read_array(r)? {
                [0] => Cell::Bool(false),
                [1] => Cell::Bool(true),
                _ => return Err(corrupt("boolean byte")),
            },
            TAG_INT => Cell::Int(i64::from_le_bytes(read_array(r)?)),
            TAG_FLOAT => Cell::Float(f64::from_le_bytes(read_array(r)?)),
            TAG_TIMESTAMP => Cell::Timestamp(i64::from_le_bytes(read_array(r)?)),
            TAG_STR => {
                let len = u32::from_le_bytes(read_array(r)?) as usize;
                let mut bytes = Vec::new();
                // grows as bytes arrive: a corrupt length cannot allocate gigabytes up front
                r.by_ref().take(len as u64).read_to_end(&mut bytes)?;
                if bytes.len() != len {
                    return Err(corrupt("truncated text"));
                }
                Cell::Str(String::from_utf8(bytes).map_err(|_| corrupt("text is not UTF-8"))?)
            }
            other => return Err(corrupt(&format!("unknown tag {other}"))),
        };
        row.push((column, cell));
    }
    Ok(true)
}

/// Appends `cells` to `buf` in the spill encoding (column numbers are positions), for
/// records that keep their cells in a fixed column order (the sorted `events` rows).
pub(crate) fn encode_cells(buf: &mut Vec<u8>, cells: &[Cell]) {
    buf.extend_from_slice(&u32::try_from(cells.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (i, cell) in cells.iter().enumerate() {
        encode_cell(buf, i as u32, Leaf::of(cell));
    }
}

/// The cells [`encode_cells`] wrote, in order; malformed bytes are an `InvalidData` error.
pub(crate) fn decode_cells(mut bytes: &[u8]) -> std::io::Result<Vec<Cell>> {
    let mut row = Vec::new();
    if !decode_row(&mut bytes, &mut row)? || !bytes.is_empty() {
        return Err(corrupt("not one row"));
    }
    row.into_iter()
        .enumerate()
        .map(|(i, (column, cell))| if column as usize == i { Ok(cell) } else { Err(corrupt("cells out of order")) })
        .collect()
}

/// Builds one row of a [`TableWriter`]: each column is looked up by name (the name is
/// allocated only the first time the table sees it), its type merged, and the value encoded
/// straight into the row's spill bytes. Flattened values come in through [`FlatSink`].
pub struct RowBuilder<'w> {
    w: &'w mut TableWriter,
}

impl RowBuilder<'_> {
    /// One column of the row.
    pub fn cell(&mut self, name: &str, cell: &Cell) {
        self.w.put(name, Leaf::of(cell));
    }

    /// A text column.
    pub fn text(&mut self, name: &str, value: &str) {
        self.w.put(name, Leaf::Str(value));
    }

    /// An instant column [µs since the Unix epoch, UTC].
    pub fn timestamp(&mut self, name: &str, us: i64) {
        self.w.put(name, Leaf::Timestamp(us));
    }
}

impl FlatSink for RowBuilder<'_> {
    fn value(&mut self, name: &str, value: FlatValue<'_>) {
        let leaf = match value {
            FlatValue::Null => Leaf::Null,
            FlatValue::Bool(b) => Leaf::Bool(b),
            FlatValue::Int(i) => Leaf::Int(i),
            FlatValue::Float(x) => Leaf::Float(x),
            FlatValue::Str(s) => Leaf::Str(s),
        };
        self.w.put(name, leaf);
    }
}

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
    /// The spill bytes of the row being built, and its cell count.
    row_buf: Vec<u8>,
    row_cells: u32,
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
            row_buf: Vec::with_capacity(1 << 12),
            row_cells: 0,
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

    /// Appends any serialisable row, flattened as [`flatten`] does.
    pub fn push<T: Serialize + ?Sized>(&mut self, row: &T) -> Result<(), TableError> {
        self.push_flat(|b| cellfab_plant::flat::flatten(row, b))
    }

    /// Appends a flattened row.
    pub fn push_row(&mut self, row: Row) -> Result<(), TableError> {
        self.push_flat(|b| {
            row.iter().for_each(|(name, cell)| b.cell(name, cell));
            Ok(())
        })
    }

    /// Appends the row that `build` gives to a [`RowBuilder`], column by column. If `build`
    /// fails the row is dropped (columns it named stay known to the table) and the error
    /// is returned.
    pub fn push_flat<F>(&mut self, build: F) -> Result<(), TableError>
    where
        F: FnOnce(&mut RowBuilder<'_>) -> Result<(), serde_json::Error>,
    {
        self.row_buf.clear();
        self.row_cells = 0;
        if let Err(e) = build(&mut RowBuilder { w: self }) {
            return Err(TableError::Row { table: self.name.clone(), message: e.to_string() });
        }
        let io = |source| TableError::Io { table: self.name.clone(), source };
        self.spill.write_all(&self.row_cells.to_le_bytes()).map_err(io)?;
        self.spill.write_all(&self.row_buf).map_err(io)?;
        self.rows += 1;
        Ok(())
    }

    /// One cell of the row being built.
    fn put(&mut self, name: &str, leaf: Leaf<'_>) {
        let leaf = match leaf {
            Leaf::Float(x) if !x.is_finite() => Leaf::Null,
            l => l,
        };
        let i = match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.registry.push((name.to_string(), None));
                self.index.insert(name.to_string(), self.registry.len() - 1);
                self.registry.len() - 1
            }
        };
        if let Some(t) = leaf.ty() {
            let slot = &mut self.registry[i].1;
            *slot = Some(slot.map_or(t, |c| c.merge(t)));
        }
        encode_cell(&mut self.row_buf, i as u32, leaf);
        self.row_cells += 1;
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
        let json_keys: Vec<String> =
            columns.iter().map(|c| format!("{}:", serde_json::to_string(&c.name).unwrap_or_default())).collect();
        let mut group: Vec<Vec<Cell>> = Vec::new();
        let mut group_bytes = 0usize;
        let mut spill = BufReader::with_capacity(1 << 16, File::open(&self.spill_path).map_err(io)?);
        let mut row = Vec::new();
        while decode_row(&mut spill, &mut row).map_err(io)? {
            let mut cells = vec![Cell::Null; columns.len()];
            for (i, cell) in row.drain(..) {
                match to_column.get(i as usize) {
                    Some(Some(at)) => cells[*at] = cell,
                    Some(None) => {}
                    None => return Err(io(corrupt("column number out of range"))),
                }
            }
            for sink in &mut sinks {
                write_row(sink, &columns, &json_keys, &cells).map_err(io)?;
            }
            if has_parquet {
                group_bytes += cells.iter().map(|c| if let Cell::Str(s) = c { 8 + s.len() } else { 8 }).sum::<usize>();
                group.push(cells);
                if group.len() >= ROW_GROUP_ROWS || group_bytes >= ROW_GROUP_BYTES {
                    self.write_group(&mut sinks, &columns, &schema, std::mem::take(&mut group))?;
                    group_bytes = 0;
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
                // close the row group here even below ROW_GROUP_ROWS (byte budget)
                w.flush().map_err(|e| self.pq(e))?;
            }
        }
        Ok(())
    }
}

/// Writes one row to a JSON Lines or CSV sink (Parquet sinks take row groups). `keys` are
/// the columns' names as JSON strings followed by `:`; a JSON Lines row is written straight
/// from the cells, byte for byte what serialising a JSON object of them would give.
fn write_row(sink: &mut Sink, columns: &[Column], keys: &[String], cells: &[Cell]) -> std::io::Result<()> {
    match sink {
        Sink::Jsonl(w) => {
            w.write_all(b"{")?;
            for (i, ((c, key), cell)) in columns.iter().zip(keys).zip(cells).enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                w.write_all(key.as_bytes())?;
                write_json_cell(&mut *w, cell, c.ty)?;
            }
            w.write_all(b"}\n")
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

/// The JSON of one cell in a column of type `ty`: numbers as numbers where the column is
/// numeric (integers in a float column as floats), anything else as its text.
fn write_json_cell(w: &mut impl Write, cell: &Cell, ty: ColumnType) -> std::io::Result<()> {
    let written = match (cell, ty) {
        (Cell::Null, _) => return w.write_all(b"null"),
        (Cell::Bool(b), ColumnType::Bool) => serde_json::to_writer(w, b),
        (Cell::Int(i), ColumnType::Int64) => serde_json::to_writer(w, i),
        (Cell::Int(i), ColumnType::Float64) => serde_json::to_writer(w, &(*i as f64)),
        (Cell::Float(x), ColumnType::Float64) => serde_json::to_writer(w, x),
        (c, _) => match c.text(ty) {
            Some(text) => serde_json::to_writer(w, &text),
            None => return w.write_all(b"null"),
        },
    };
    written.map_err(std::io::Error::from)
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

    /// The JSON of a cell as a `serde_json::Value` (the reference for [`write_json_cell`]).
    fn json_value(cell: &Cell, ty: ColumnType) -> Value {
        match (cell, ty) {
            (Cell::Null, _) => Value::Null,
            (Cell::Bool(b), ColumnType::Bool) => Value::Bool(*b),
            (Cell::Int(i), ColumnType::Int64) => Value::from(*i),
            (Cell::Int(i), ColumnType::Float64) => Value::from(*i as f64),
            (Cell::Float(x), ColumnType::Float64) => Value::from(*x),
            (c, _) => c.text(ty).map(Value::String).unwrap_or(Value::Null),
        }
    }

    #[test]
    fn json_cells_are_written_as_their_json_values_would_be() {
        let cells = [
            Cell::Null,
            Cell::Bool(true),
            Cell::Int(-42),
            Cell::Int(i64::MAX),
            Cell::Float(0.1),
            Cell::Float(3.0),
            Cell::Float(1e-300),
            Cell::Float(f64::NAN),
            Cell::Str("a \"quoted\"\n\u{1}ü".into()),
            Cell::Timestamp(1_735_689_600_250_000),
        ];
        use ColumnType::*;
        for ty in [Bool, Int64, Float64, Utf8, Timestamp] {
            for cell in &cells {
                let mut out = Vec::new();
                write_json_cell(&mut out, cell, ty).unwrap();
                let expected = serde_json::to_string(&json_value(cell, ty)).unwrap();
                assert_eq!(String::from_utf8(out).unwrap(), expected, "{cell:?} in a {ty:?} column");
            }
        }
    }

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

    fn spill_bytes(rows: &[Vec<(u32, Cell)>]) -> Vec<u8> {
        let mut out = Vec::new();
        for row in rows {
            out.extend_from_slice(&(row.len() as u32).to_le_bytes());
            row.iter().for_each(|(i, c)| encode_cell(&mut out, *i, Leaf::of(c)));
        }
        out
    }

    fn read_all(mut bytes: &[u8]) -> std::io::Result<Vec<Vec<(u32, Cell)>>> {
        let mut out = Vec::new();
        let mut row = Vec::new();
        while decode_row(&mut bytes, &mut row)? {
            out.push(std::mem::take(&mut row));
        }
        Ok(out)
    }

    #[test]
    fn spill_rows_round_trip_every_cell_kind_and_a_truncated_spill_is_an_error() {
        let rows = vec![
            vec![
                (0, Cell::Null),
                (1, Cell::Bool(true)),
                (2, Cell::Bool(false)),
                (3, Cell::Int(i64::MIN)),
                (4, Cell::Float(-0.1)),
                (5, Cell::Str(String::new())),
                (6, Cell::Str("Ω µm 🔋 \"q\"".into())),
                (7, Cell::Timestamp(1_735_689_600_000_001)),
            ],
            vec![],
            (0..1000).map(|i| (i, Cell::Int(i.into()))).collect(),
        ];
        let bytes = spill_bytes(&rows);
        assert_eq!(read_all(&bytes).unwrap(), rows);
        // a cut anywhere inside a row (here: the first, and the last of three)
        let first = spill_bytes(&rows[..1]);
        let before_last = spill_bytes(&rows[..2]).len();
        for cut in (1..first.len()).chain(before_last + 1..bytes.len()) {
            let err = read_all(&bytes[..cut]).expect_err("a truncated spill must not read back");
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "cut at {cut}");
        }
        let mut bad = spill_bytes(&rows[..1]);
        bad[8] = 9; // the first cell's tag
        assert!(read_all(&bad).is_err());
    }

    #[test]
    fn mixed_integer_and_float_columns_become_float_and_other_mixes_text() {
        assert_eq!(ColumnType::Int64.merge(ColumnType::Float64), ColumnType::Float64);
        assert_eq!(ColumnType::Bool.merge(ColumnType::Float64), ColumnType::Utf8);
    }
}
