//! The host's log (always granted): lines are tagged with the plugin's name on the host side.
//! A plugin's stdout and stderr go nowhere; write here instead.

pub use crate::bindings::shared::swarm::plugin::log::log;
pub use crate::types::LogLevel as Level;

/// Logs `message` at trace level.
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Logs `message` at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Logs `message` at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Logs `message` at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Logs `message` at error level.
pub fn error(message: &str) {
    log(Level::Error, message);
}
