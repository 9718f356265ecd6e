//! A test guest whose every call loops forever, as a scheduler, an executor
//! and a discovery backend.

use swarm_plugin_sdk::types::{
    DiscoveryError, ExecutorError, ExecutorInfo, GroupResult, NodeInfo, Task, TaskGroup, TaskState,
};

fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

struct Plugin;

impl swarm_plugin_sdk::Scheduler for Plugin {
    fn update_nodes(_upserts: Vec<NodeInfo>, _removals: Vec<String>) {
        spin()
    }
    fn schedule(_groups: Vec<TaskGroup>) -> Vec<GroupResult> {
        spin()
    }
}

impl swarm_plugin_sdk::Executor for Plugin {
    fn describe() -> ExecutorInfo {
        spin()
    }
    fn prepare(_task: Task) -> Result<(), ExecutorError> {
        spin()
    }
    fn start(_task_id: String) -> Result<(), ExecutorError> {
        spin()
    }
    fn shutdown(_task_id: String, _timeout_ms: u64) -> Result<(), ExecutorError> {
        spin()
    }
    fn remove(_task_id: String) -> Result<(), ExecutorError> {
        spin()
    }
    fn inspect(_task_id: String) -> Result<TaskState, ExecutorError> {
        spin()
    }
}

impl swarm_plugin_sdk::Discovery for Plugin {
    fn schemes() -> Vec<String> {
        spin()
    }
    fn initialize(_uri: String, _heartbeat_ms: u64, _ttl_ms: u64) -> Result<(), DiscoveryError> {
        spin()
    }
    fn watch() -> Result<Vec<String>, DiscoveryError> {
        spin()
    }
    fn register(_addr: String) -> Result<(), DiscoveryError> {
        spin()
    }
}

swarm_plugin_sdk::export_scheduler!(Plugin);
swarm_plugin_sdk::export_executor!(Plugin);
swarm_plugin_sdk::export_discovery!(Plugin);
