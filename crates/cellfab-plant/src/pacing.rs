//! Pacing: how plant time maps to wall time (MODELS.md §0.2, STYLE.md §2). Models never see
//! it. Each event at plant time `t_s` has the absolute wall deadline `start + t_s / speed`
//! (never an accumulated sleep, so pacing does not drift); `max` skips the wait entirely.
//! Waiting is cancellable: it sleeps in short slices and checks the cancel flag.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Simulated seconds per wall second.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Speed {
    /// As fast as the machine allows.
    #[default]
    Max,
    /// N simulated seconds per wall second (1 = real time).
    Factor(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(Speed::Factor(v)),
            _ => Err(format!("speed = {s}: must be \"max\" or a number of simulated seconds per wall second > 0")),
        }
    }
}

impl std::fmt::Display for Speed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Speed::Max => write!(f, "max"),
            Speed::Factor(v) => write!(f, "{v}"),
        }
    }
}

impl Serialize for Speed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Speed::Max => s.serialize_str("max"),
            Speed::Factor(v) => s.serialize_f64(*v),
        }
    }
}

impl<'de> Deserialize<'de> for Speed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(v) => format!("{v}").parse().map_err(serde::de::Error::custom),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl schemars::JsonSchema for Speed {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Speed".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "\"max\" (as fast as possible) or simulated seconds per wall second (> 0)",
            "anyOf": [ { "type": "string", "enum": ["max"] }, { "type": "number", "exclusiveMinimum": 0 } ]
        })
    }
}

/// A flag that stops a run: pacing waits return early and machines stop taking batches.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, not-cancelled token.
    pub fn new() -> Self {
        Self::default()
    }
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Maps plant time to wall deadlines for one run.
#[derive(Clone, Debug)]
pub struct Pacer {
    start: Instant,
    speed: Speed,
    cancel: CancelToken,
}

/// Longest single sleep, so that cancellation is noticed quickly.
const SLICE: Duration = Duration::from_millis(20);

impl Pacer {
    /// A pacer starting now.
    pub fn new(speed: Speed, cancel: CancelToken) -> Self {
        Self { start: Instant::now(), speed, cancel }
    }

    /// Waits until the wall deadline of plant time `t_s`. Returns false if cancelled.
    pub fn wait_until(&self, t_s: f64) -> bool {
        let Speed::Factor(factor) = self.speed else {
            return !self.cancel.is_cancelled();
        };
        let deadline = self.start + Duration::from_secs_f64((t_s / factor).max(0.0));
        loop {
            if self.cancel.is_cancelled() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            std::thread::sleep((deadline - now).min(SLICE));
        }
    }

    /// True when events wait for wall deadlines (a speed factor), false at `max`.
    pub fn is_paced(&self) -> bool {
        matches!(self.speed, Speed::Factor(_))
    }

    /// The cancel token of this run.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_parses_max_and_factors_and_rejects_nonsense() {
        assert_eq!("max".parse::<Speed>().unwrap(), Speed::Max);
        assert_eq!("600".parse::<Speed>().unwrap(), Speed::Factor(600.0));
        assert!("0".parse::<Speed>().is_err());
        assert!("-3".parse::<Speed>().is_err());
        assert!("fast".parse::<Speed>().is_err());
    }

    #[test]
    fn cancelled_wait_returns_promptly() {
        let cancel = CancelToken::new();
        let p = Pacer::new(Speed::Factor(1.0), cancel.clone());
        cancel.cancel();
        let t0 = Instant::now();
        assert!(!p.wait_until(3600.0));
        assert!(t0.elapsed() < Duration::from_millis(200));
    }

    #[test]
    fn paced_wait_reaches_its_deadline() {
        let p = Pacer::new(Speed::Factor(100.0), CancelToken::new());
        let t0 = Instant::now();
        assert!(p.wait_until(5.0)); // 5 simulated s at 100x = 50 ms
        assert!(t0.elapsed() >= Duration::from_millis(50));
    }
}
