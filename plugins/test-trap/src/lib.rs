//! A test guest whose every call traps (an `unreachable` instruction), as a scheduler, an executor
//! and a discovery backend.

use swarm_plugin_sdk::types::{
    DiscoveryError, ExecutorError, ExecutorInfo, GroupResult, NodeInfo, Task, TaskGroup, TaskState,
};

fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

struct Plugin;

impl swarm_plugin_sdk::Scheduler for Plugin {
    fn update_nodes(_upserts: Vec<NodeInfo>, _removals: Vec<String>) {
        trap()
    }
    fn schedule(_groups: Vec<TaskGroup>) -> Vec<GroupResult> {
        trap()
    }
}

impl swarm_plugin_sdk::Executor for Plugin {
    fn describe() -> ExecutorInfo {
        trap()
    }
    fn prepare(_task: Task) -> Result<(), ExecutorError> {
        trap()
    }
    fn start(_task_id: String) -> Result<(), ExecutorError> {
        trap()
    }
    fn shutdown(_task_id: String, _timeout_ms: u64) -> Result<(), ExecutorError> {
        trap()
    }
    fn remove(_task_id: String) -> Result<(), ExecutorError> {
        trap()
    }
    fn inspect(_task_id: String) -> Result<TaskState, ExecutorError> {
        trap()
    }
}

impl swarm_plugin_sdk::Discovery for Plugin {
    fn schemes() -> Vec<String> {
        trap()
    }
    fn initialize(_uri: String, _heartbeat_ms: u64, _ttl_ms: u64) -> Result<(), DiscoveryError> {
        trap()
    }
    fn watch() -> Result<Vec<String>, DiscoveryError> {
        trap()
    }
    fn register(_addr: String) -> Result<(), DiscoveryError> {
        trap()
    }
}

swarm_plugin_sdk::export_scheduler!(Plugin);
swarm_plugin_sdk::export_executor!(Plugin);
swarm_plugin_sdk::export_discovery!(Plugin);
