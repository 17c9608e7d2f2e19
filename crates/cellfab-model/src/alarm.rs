//! Alarms (MODELS.md §0.5): raised on the rising edge of a condition, cleared on its falling
//! edge with a 2 % hysteresis of the threshold so that a signal hovering at the limit does
//! not chatter.

use crate::stage::{Line, StageKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How bad an alarm is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Severity {
    /// Logged only.
    Info,
    /// Out of a warning band; product still good.
    Warning,
    /// Out of spec: the affected product is non-conforming.
    Alarm,
    /// Machine stop or lot hold.
    Critical,
}

/// Whether an alarm event raises or clears the condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AlarmState {
    /// The condition became true.
    Raised,
    /// The condition became false again.
    Cleared,
}

/// One alarm event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Alarm {
    /// Plant time of the event [s].
    pub t_s: f64,
    /// Stage time of the event [s].
    pub stage_time_s: f64,
    /// Stage that raised it.
    pub stage: StageKind,
    /// Line of the machine.
    pub line: Line,
    /// Machine id (`MC_Coat_Anode`, …).
    pub machine_id: String,
    /// `STAGE_CONDITION` code, e.g. `COAT_LOW_FLOW_LIMIT`.
    pub code: String,
    /// Severity.
    pub severity: Severity,
    /// Raised or cleared.
    pub state: AlarmState,
    /// Name of the signal that crossed its threshold.
    pub signal: String,
    /// Value of the signal at the event.
    pub value: f64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// Web position in coating coordinates [m], if the alarm concerns a web position.
    pub position_m: Option<f64>,
    /// Lane index, if the alarm concerns one lane.
    pub lane: Option<u32>,
    /// Cell id, if the alarm concerns one cell.
    pub cell_id: Option<String>,
    /// Human-readable message.
    pub message: String,
}

#[derive(Clone, Debug)]
struct Active {
    key: String,
    severity: Severity,
}

/// Tracks the active alarms of one stage run and turns conditions into edge events.
#[derive(Clone, Debug)]
pub struct AlarmTracker {
    stage: StageKind,
    line: Line,
    machine_id: String,
    start_t_s: f64,
    active: Vec<Active>,
    /// Every event raised or cleared during the run, in order.
    pub events: Vec<Alarm>,
}

/// Where an alarm applies, beyond its stage.
#[derive(Clone, Debug, Default)]
pub struct AlarmScope {
    /// Web position in coating coordinates [m].
    pub position_m: Option<f64>,
    /// Lane index.
    pub lane: Option<u32>,
    /// Cell id.
    pub cell_id: Option<String>,
}

/// Relative hysteresis of clearing (MODELS.md §0.5).
pub const HYSTERESIS_FRAC: f64 = 0.02;

impl AlarmTracker {
    /// A tracker for one stage run that started at plant time `start_t_s`.
    pub fn new(stage: StageKind, line: Line, start_t_s: f64) -> Self {
        Self { stage, line, machine_id: stage.machine_id(line), start_t_s, active: Vec::new(), events: Vec::new() }
    }

    fn key(code: &str, scope: &AlarmScope) -> String {
        match (scope.lane, &scope.cell_id) {
            (Some(l), _) => format!("{code}#L{l}"),
            (None, Some(c)) => format!("{code}#{c}"),
            _ => code.to_string(),
        }
    }

    /// True while an alarm with this code (any scope) is active.
    pub fn is_active(&self, code: &str) -> bool {
        self.active.iter().any(|a| a.key == code || a.key.starts_with(&format!("{code}#")))
    }

    /// True while any alarm of at least `severity` is active (the legacy `defect_risk`).
    pub fn any_active(&self, severity: Severity) -> bool {
        self.active.iter().any(|a| a.severity >= severity)
    }

    /// True if any event of at least `severity` was raised during the run.
    pub fn any_raised(&self, severity: Severity) -> bool {
        self.events.iter().any(|a| a.state == AlarmState::Raised && a.severity >= severity)
    }

    /// Raises or clears `code` from a boolean condition (no hysteresis). Returns the event
    /// produced, if any.
    #[allow(clippy::too_many_arguments)]
    pub fn set(
        &mut self,
        stage_time_s: f64,
        code: &str,
        severity: Severity,
        condition: bool,
        signal: &str,
        value: f64,
        threshold: f64,
        scope: AlarmScope,
        message: impl FnOnce() -> String,
    ) -> Option<&Alarm> {
        let key = Self::key(code, &scope);
        let idx = self.active.iter().position(|a| a.key == key);
        let state = match (condition, idx) {
            (true, None) => {
                self.active.push(Active { key, severity });
                AlarmState::Raised
            }
            (false, Some(i)) => {
                self.active.remove(i);
                AlarmState::Cleared
            }
            _ => return None,
        };
        let message = match state {
            AlarmState::Raised => message(),
            AlarmState::Cleared => format!("{code} cleared"),
        };
        self.events.push(Alarm {
            t_s: self.start_t_s + stage_time_s,
            stage_time_s,
            stage: self.stage,
            line: self.line,
            machine_id: self.machine_id.clone(),
            code: code.to_string(),
            severity,
            state,
            signal: signal.to_string(),
            value,
            threshold,
            position_m: scope.position_m,
            lane: scope.lane,
            cell_id: scope.cell_id,
            message,
        });
        self.events.last()
    }

    /// `value > threshold` raises; it clears once `value < threshold·(1 − 2 %)`.
    #[allow(clippy::too_many_arguments)]
    pub fn high(
        &mut self,
        stage_time_s: f64,
        code: &str,
        severity: Severity,
        signal: &str,
        value: f64,
        threshold: f64,
        scope: AlarmScope,
        message: impl FnOnce() -> String,
    ) -> Option<&Alarm> {
        let key = Self::key(code, &scope);
        let active = self.active.iter().any(|a| a.key == key);
        let condition = if active { value >= threshold - HYSTERESIS_FRAC * threshold.abs() } else { value > threshold };
        self.set(stage_time_s, code, severity, condition, signal, value, threshold, scope, message)
    }

    /// `value < threshold` raises; it clears once `value > threshold·(1 + 2 %)`.
    #[allow(clippy::too_many_arguments)]
    pub fn low(
        &mut self,
        stage_time_s: f64,
        code: &str,
        severity: Severity,
        signal: &str,
        value: f64,
        threshold: f64,
        scope: AlarmScope,
        message: impl FnOnce() -> String,
    ) -> Option<&Alarm> {
        let key = Self::key(code, &scope);
        let active = self.active.iter().any(|a| a.key == key);
        let condition = if active { value <= threshold + HYSTERESIS_FRAC * threshold.abs() } else { value < threshold };
        self.set(stage_time_s, code, severity, condition, signal, value, threshold, scope, message)
    }

    /// Records a one-off event (a per-cell reject, an end-of-batch check): raised and kept
    /// in the event list, never active.
    #[allow(clippy::too_many_arguments)]
    pub fn once(
        &mut self,
        stage_time_s: f64,
        code: &str,
        severity: Severity,
        signal: &str,
        value: f64,
        threshold: f64,
        scope: AlarmScope,
        message: String,
    ) -> &Alarm {
        self.events.push(Alarm {
            t_s: self.start_t_s + stage_time_s,
            stage_time_s,
            stage: self.stage,
            line: self.line,
            machine_id: self.machine_id.clone(),
            code: code.to_string(),
            severity,
            state: AlarmState::Raised,
            signal: signal.to_string(),
            value,
            threshold,
            position_m: scope.position_m,
            lane: scope.lane,
            cell_id: scope.cell_id,
            message,
        });
        self.events.last().expect("just pushed")
    }

    /// Number of events emitted so far (use to forward only new ones to a sink).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when no event was emitted.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// One alarm condition of a stage: its code, severity, signal and threshold, declared once
/// (usually as a `const`) and raised or cleared on the edges of the condition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Check {
    /// `STAGE_CONDITION` code.
    pub code: &'static str,
    /// Severity of the alarm.
    pub severity: Severity,
    /// Name of the signal that is checked.
    pub signal: &'static str,
    /// Threshold of the condition.
    pub threshold: f64,
}

impl Check {
    /// Emits the event of an edge of the condition (raised when `raised`, else cleared).
    pub fn edge(
        &self,
        alarms: &mut AlarmTracker,
        t_s: f64,
        raised: bool,
        value: f64,
        scope: AlarmScope,
        message: impl FnOnce() -> String,
    ) {
        alarms.set(t_s, self.code, self.severity, raised, self.signal, value, self.threshold, scope, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_alarm_has_hysteresis() {
        let mut t = AlarmTracker::new(StageKind::Mixing, Line::Anode, 100.0);
        let s = || AlarmScope::default();
        assert!(t.high(0.0, "X", Severity::Warning, "v", 10.1, 10.0, s(), || "hi".into()).is_some());
        assert!(t.any_active(Severity::Warning));
        // 9.9 is inside the 2 % band: still active, no event
        assert!(t.high(1.0, "X", Severity::Warning, "v", 9.9, 10.0, s(), || "hi".into()).is_none());
        let ev = t.high(2.0, "X", Severity::Warning, "v", 9.7, 10.0, s(), || "hi".into()).cloned();
        assert_eq!(ev.unwrap().state, AlarmState::Cleared);
        assert!(!t.any_active(Severity::Info));
        assert_eq!(t.events[0].t_s, 100.0);
        assert_eq!(t.events[0].machine_id, "TK_Mix_Anode");
    }
}
