//! A test scheduler that takes the node set but traps on every `schedule`: it loads and is
//! switched to, then fails every placement, so the manager's failure budget quarantines it.

wit_bindgen::generate!({
    path: "../../wit",
    world: "swarm:plugin/scheduler-plugin@0.2.0",
});

use exports::swarm::plugin::scheduler::Guest;
use swarm::plugin::types::{GroupResult, NodeInfo, TaskGroup};

struct Plugin;

impl Guest for Plugin {
    fn update_nodes(_upserts: Vec<NodeInfo>, _removals: Vec<String>) {}

    fn schedule(_groups: Vec<TaskGroup>) -> Vec<GroupResult> {
        core::arch::wasm32::unreachable()
    }
}

export!(Plugin);
