//! The `log` capability: a plugin's messages go to `tracing`, tagged with the plugin's name.

use crate::bindings::scheduler_world::swarm::plugin::log::Host;
use crate::bindings::types::LogLevel;
use crate::state::StoreState;

/// Longest message kept; the rest is cut (the guest chooses the length).
const MAX_MESSAGE_BYTES: usize = 8 * 1024;

impl Host for StoreState {
    async fn log(&mut self, level: LogLevel, message: String) {
        let mut message = message;
        if message.len() > MAX_MESSAGE_BYTES {
            let mut end = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("...");
        }
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl crate::bindings::types::Host for StoreState {}
