//! Example discovery backend for `example://host:port,...` URIs: the URI's entries, plus the
//! addresses registered since, kept in the resident instance. (A real backend would store them
//! in a key-value store through the `http` capability, and expire them after `ttl-ms`.)

use std::cell::RefCell;

use swarm_plugin_sdk::types::DiscoveryError;
use swarm_plugin_sdk::{Discovery, log};

thread_local! {
    static ENTRIES: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

struct ExampleBackend;

impl Discovery for ExampleBackend {
    fn schemes() -> Vec<String> {
        vec!["example".to_owned()]
    }

    fn initialize(uri: String, heartbeat_ms: u64, ttl_ms: u64) -> Result<(), DiscoveryError> {
        let Some(list) = uri.strip_prefix("example://") else {
            return Err(format!("`{uri}` is not an example:// URI").into());
        };
        let mut entries = Vec::new();
        for entry in list.split(',').filter(|entry| !entry.is_empty()) {
            entries.push(checked(entry)?);
        }
        log::info(&format!(
            "{} entries; heartbeat {heartbeat_ms} ms, ttl {ttl_ms} ms",
            entries.len()
        ));
        ENTRIES.with(|cell| *cell.borrow_mut() = Some(entries));
        Ok(())
    }

    fn watch() -> Result<Vec<String>, DiscoveryError> {
        ENTRIES.with(|cell| cell.borrow().clone().ok_or_else(not_initialized))
    }

    fn register(addr: String) -> Result<(), DiscoveryError> {
        let addr = checked(&addr)?;
        ENTRIES.with(|cell| {
            let mut cell = cell.borrow_mut();
            let entries = cell.as_mut().ok_or_else(not_initialized)?;
            if !entries.contains(&addr) {
                entries.push(addr);
            }
            Ok(())
        })
    }
}

/// `entry` if it looks like `host:port`.
fn checked(entry: &str) -> Result<String, DiscoveryError> {
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(entry.to_owned())
        }
        _ => Err(format!("`{entry}` is not host:port").into()),
    }
}

fn not_initialized() -> DiscoveryError {
    "the backend is not initialized".into()
}

swarm_plugin_sdk::export_discovery!(ExampleBackend);
