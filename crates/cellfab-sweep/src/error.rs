//! Why a sweep could not start or finish. Every error names the spec key, field or point.

/// A sweep error; nothing is run when the spec, the base configuration or a point is invalid.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The spec file is malformed or inconsistent (missing or conflicting keys).
    #[error("invalid sweep spec: {0}")]
    Spec(String),
    /// A swept path does not name a numeric configuration field.
    #[error("invalid sweep spec: param {path}: {reason}")]
    UnknownField {
        /// The dotted path as written.
        path: String,
        /// Which key is missing or why the field cannot be swept.
        reason: String,
    },
    /// The base configuration cannot be read or is invalid.
    #[error("invalid base configuration: {0}")]
    Base(String),
    /// A point's configuration breaks a parameter rule (value out of range …).
    #[error("point {index}: invalid parameter {message}")]
    Point {
        /// Point index.
        index: u64,
        /// The parameter error (field, value, allowed range).
        message: String,
    },
    /// `--shard` or `--point` is malformed or out of range.
    #[error("{0}")]
    Selection(String),
    /// The output folder holds a different sweep.
    #[error("{0}")]
    Mismatch(String),
    /// A point's plant run failed.
    #[error("point {index}: run failed: {message}")]
    Run {
        /// Point index.
        index: u64,
        /// The plant error.
        message: String,
    },
    /// Reading or writing files.
    #[error("{0}")]
    Io(String),
    /// Encoding or decoding Parquet.
    #[error("parquet: {0}")]
    Parquet(String),
}

impl From<parquet::errors::ParquetError> for SweepError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        SweepError::Parquet(e.to_string())
    }
}

impl From<arrow_schema::ArrowError> for SweepError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        SweepError::Parquet(e.to_string())
    }
}
