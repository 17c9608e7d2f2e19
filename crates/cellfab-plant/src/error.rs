//! Errors of the plant: bad configuration, a full batch queue, cancellation, a crashed machine.

use cellfab_model::ParamError;

/// Why a plant could not be built or a run did not finish.
#[derive(Debug, thiserror::Error)]
pub enum PlantError {
    /// A parameter is out of range or breaks a rule. `field` carries the full path
    /// (`cathode.coating.coating_speed_m_s`). Nothing was run or written.
    #[error("invalid parameter {0}")]
    Param(ParamError),
    /// The configuration could not be read (syntax, unknown key, wrong type).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// More batches were submitted than the queue holds.
    #[error("batch queue full: {requested} batches requested, the queue holds {capacity} (plant.queue_capacity)")]
    QueueFull {
        /// Batches requested.
        requested: u32,
        /// Queue capacity.
        capacity: u32,
    },
    /// The run was cancelled before it finished.
    #[error("run cancelled")]
    Cancelled,
    /// A machine thread panicked (a bug): the run is incomplete.
    #[error("machine {machine_id} failed: {message}")]
    MachineFailed {
        /// Machine id.
        machine_id: String,
        /// Panic message.
        message: String,
    },
}

impl From<ParamError> for PlantError {
    fn from(e: ParamError) -> Self {
        PlantError::Param(e)
    }
}
