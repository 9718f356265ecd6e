//! The crate's error type and the mapping of wasmtime failures onto it.

use std::time::Duration;

/// What went wrong with a plugin or its host. Guest failures (trap, deadline, memory) leave the
/// host running; the instance that failed is dropped and replaced on the next call.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("invalid plugin host config: {0}")]
    Config(String),
    #[error("plugin {plugin:?} does not implement `{expected}`: {detail}")]
    WrongWorld {
        plugin: String,
        /// The interface the component must export, e.g. `swarm:plugin/executor@0.2.0`.
        expected: &'static str,
        detail: String,
    },
    #[error("plugin {plugin:?} was built for another version of the plugin API: {detail}")]
    Version { plugin: String, detail: String },
    #[error("plugin {plugin:?} is refused: {detail}")]
    NotGranted { plugin: String, detail: String },
    #[error("plugin {plugin:?} is not a valid component: {detail}")]
    Invalid { plugin: String, detail: String },
    #[error("plugin {plugin:?} trapped: {message}")]
    Trap { plugin: String, message: String },
    #[error("plugin {plugin:?} ran past its deadline of {deadline:?}")]
    DeadlineExceeded { plugin: String, deadline: Duration },
    #[error("plugin {plugin:?} exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { plugin: String, limit_bytes: usize },
    #[error("plugin {plugin:?} could not be instantiated: {message}")]
    Instantiate { plugin: String, message: String },
    #[error(
        "plugin {plugin:?} is quarantined after {failures} recent failures (last: {last_error}); \
         reinstall or reload it"
    )]
    Quarantined {
        plugin: String,
        failures: u32,
        last_error: String,
    },
    /// The plugin returned an error (an `executor-error`).
    #[error("plugin {plugin:?}: {message}")]
    Guest { plugin: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl PluginError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> PluginError {
        PluginError::Io {
            context: context.into(),
            source,
        }
    }
}
