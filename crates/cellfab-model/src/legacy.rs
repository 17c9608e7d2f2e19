//! Helpers for the seed-compatible JSON records (MODELS.md §0.10). A stage writes its legacy
//! keys into a [`LegacyRecord`] (an insertion-ordered JSON object); the store adds the base
//! keys and writes the file.

use serde_json::{Map, Value};

/// An insertion-ordered JSON object.
pub type LegacyRecord = Map<String, Value>;

/// Inserts a number; non-finite values become `null` (JSON has no NaN or infinity).
#[inline]
pub fn put(out: &mut LegacyRecord, key: &str, value: f64) {
    let v = serde_json::Number::from_f64(value).map(Value::Number).unwrap_or(Value::Null);
    out.insert(key.to_string(), v);
}

/// Inserts any JSON value.
#[inline]
pub fn put_value(out: &mut LegacyRecord, key: &str, value: impl Into<Value>) {
    out.insert(key.to_string(), value.into());
}

/// Builds a nested object from a closure and inserts it under `key`.
pub fn put_object(out: &mut LegacyRecord, key: &str, fill: impl FnOnce(&mut LegacyRecord)) {
    let mut inner = LegacyRecord::new();
    fill(&mut inner);
    out.insert(key.to_string(), Value::Object(inner));
}
