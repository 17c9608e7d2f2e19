//! Parameter validation errors (MODELS.md §0.6).
//!
//! `validate()` of every `Params` returns the first failure as a [`ParamError`] that names
//! the field, the value, the allowed range, the unit and a short rule sentence. The plant
//! adds line, stage and batch around it without rewording it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One failed parameter check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub struct ParamError {
    /// Field name as written in the configuration (e.g. `coating_speed_m_s`).
    pub field: String,
    /// The offending value (NaN when the rule concerns several fields).
    pub value: f64,
    /// Lower bound of the allowed range, if any.
    pub min: Option<f64>,
    /// Upper bound of the allowed range, if any.
    pub max: Option<f64>,
    /// Unit of the value, e.g. `m/s` (empty for dimensionless).
    pub unit: String,
    /// Short sentence stating the rule that failed.
    pub rule: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.unit.is_empty() { String::new() } else { format!(" {}", self.unit) };
        write!(f, "{} = {}{}: {}", self.field, fmt_num(self.value), unit, self.rule)?;
        match (self.min, self.max) {
            (Some(lo), Some(hi)) => write!(f, " (allowed {} to {}{})", fmt_num(lo), fmt_num(hi), unit),
            (Some(lo), None) => write!(f, " (allowed at least {}{})", fmt_num(lo), unit),
            (None, Some(hi)) => write!(f, " (allowed at most {}{})", fmt_num(hi), unit),
            (None, None) => Ok(()),
        }
    }
}

/// A number as messages show it: plain decimals, but extreme magnitudes (a fuzzed 1e300)
/// in exponent form instead of hundreds of digits.
pub(crate) fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v != 0.0 && !(1e-12..1e15).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

impl ParamError {
    /// A value outside an inclusive range `[min, max]`.
    pub fn range(field: &str, value: f64, min: f64, max: f64, unit: &str) -> Self {
        Self {
            field: field.into(),
            value,
            min: Some(min),
            max: Some(max),
            unit: unit.into(),
            rule: "must be within range".into(),
        }
    }

    /// A cross-field rule that failed.
    pub fn rule(field: &str, value: f64, unit: &str, rule: impl Into<String>) -> Self {
        Self { field: field.into(), value, min: None, max: None, unit: unit.into(), rule: rule.into() }
    }

    /// Prefixes the field with a path (`anode.coating.` …) so the message names the full key.
    pub fn at(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}{}", self.field);
        self
    }
}

/// Checks `min <= value <= max` (and that value is finite).
pub fn check_range(field: &str, value: f64, min: f64, max: f64, unit: &str) -> Result<(), ParamError> {
    if value.is_finite() && value >= min && value <= max {
        Ok(())
    } else {
        Err(ParamError::range(field, value, min, max, unit))
    }
}

/// Checks `min < value <= max` (an interval open at the bottom, written `(min, max]`).
pub fn check_open_min(field: &str, value: f64, min: f64, max: f64, unit: &str) -> Result<(), ParamError> {
    if value.is_finite() && value > min && value <= max {
        Ok(())
    } else {
        let mut e = ParamError::range(field, value, min, max, unit);
        e.rule = "must be within range (lower bound excluded)".into();
        Err(e)
    }
}

/// Checks `value > 0` (and finite).
pub fn check_positive(field: &str, value: f64, unit: &str) -> Result<(), ParamError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ParamError {
            field: field.into(),
            value,
            min: Some(0.0),
            max: None,
            unit: unit.into(),
            rule: "must be greater than 0".into(),
        })
    }
}

/// Checks `value >= 0` (and finite).
pub fn check_non_negative(field: &str, value: f64, unit: &str) -> Result<(), ParamError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ParamError {
            field: field.into(),
            value,
            min: Some(0.0),
            max: None,
            unit: unit.into(),
            rule: "must be at least 0".into(),
        })
    }
}
