//! The `nodes://` discovery plugin: a static list of cluster members, as classic Swarm's `nodes`
//! backend. `initialize` parses the URI (comma-separated `host:port` entries, with a range such
//! as `10.0.0.[1:3]:4242` in the last part of the host), `watch` answers that list, and
//! `register` is refused since nothing can be added to a static list.

mod nodes;

use std::cell::RefCell;

use swarm_plugin_sdk::types::DiscoveryError;
use swarm_plugin_sdk::{Discovery, log};

thread_local! {
    /// The entries of the last successful `initialize`.
    static ENTRIES: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

struct NodesBackend;

impl Discovery for NodesBackend {
    fn schemes() -> Vec<String> {
        vec![nodes::SCHEME.to_owned()]
    }

    fn initialize(uri: String, _heartbeat_ms: u64, _ttl_ms: u64) -> Result<(), DiscoveryError> {
        // A static list never expires, so the heartbeat and TTL do not matter here.
        let entries = nodes::parse_uri(&uri)?;
        log::debug(&format!("nodes backend: {} entries", entries.len()));
        ENTRIES.with(|cell| *cell.borrow_mut() = Some(entries));
        Ok(())
    }

    fn watch() -> Result<Vec<String>, DiscoveryError> {
        ENTRIES.with(|cell| {
            cell.borrow()
                .clone()
                .ok_or_else(|| DiscoveryError::from("the nodes backend is not initialized"))
        })
    }

    fn register(addr: String) -> Result<(), DiscoveryError> {
        Err(nodes::register_refused(&addr).into())
    }
}

swarm_plugin_sdk::export_discovery!(NodesBackend);
