//! The agent's error type.

use std::path::PathBuf;

use crate::db::DbError;
use crate::executor::ExecutorError;

/// Why the agent could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A field of [`crate::AgentConfig`] is unusable.
    #[error("invalid agent config: {field}: {message}")]
    InvalidConfig {
        field: &'static str,
        message: String,
    },
    /// The state directory could not be created.
    #[error("creating the state directory {}: {source}", path.display())]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the task database failed.
    #[error("task database: {0}")]
    Database(#[from] DbError),
    /// The executor refused a call the agent could not do without (e.g. `describe`).
    #[error("executor: {0}")]
    Executor(#[from] ExecutorError),
}
