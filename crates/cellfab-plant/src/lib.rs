//! Orchestration.
