//! cellfab-model: the pure process physics of a lithium-ion cell factory (MODELS.md).
//!
//! Every stage of the chain is one module in [`stages`] of the same shape: a `Params`
//! struct (SI units in the field names, documented defaults, `validate()`), the input and
//! output products, a time-stepped simulation that emits typed samples at a configurable
//! interval of simulated time, and a final result. Nothing here does I/O, reads a clock,
//! spawns a thread or seeds its own random numbers: the plant (`cellfab-plant`) hands
//! every stage its random streams and decides when it runs.

pub mod alarm;
pub mod cell;
pub mod consts;
pub mod defect;
pub mod electrochem;
pub mod error;
pub mod fault;
pub mod legacy;
pub mod material;
pub mod random;
pub mod reading;
pub mod recipe;
pub mod stage;
pub mod stages;
pub mod vexp;
pub mod web;

pub use alarm::{Alarm, AlarmTracker, Severity};
pub use error::ParamError;
pub use reading::{Reading, Sensor};
pub use stage::{Line, Parallel, Sequential, Stage, StageCtx, StageKind, StageRun, StageSink};
