//! A test guest whose every call allocates memory without bound, as a scheduler, an executor
//! and a discovery backend.

use swarm_plugin_sdk::types::{
    DiscoveryError, ExecutorError, ExecutorInfo, GroupResult, NodeInfo, Task, TaskGroup, TaskState,
};

fn bomb() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

struct Plugin;

impl swarm_plugin_sdk::Scheduler for Plugin {
    fn update_nodes(_upserts: Vec<NodeInfo>, _removals: Vec<String>) {
        bomb()
    }
    fn schedule(_groups: Vec<TaskGroup>) -> Vec<GroupResult> {
        bomb()
    }
}

impl swarm_plugin_sdk::Executor for Plugin {
    fn describe() -> ExecutorInfo {
        bomb()
    }
    fn prepare(_task: Task) -> Result<(), ExecutorError> {
        bomb()
    }
    fn start(_task_id: String) -> Result<(), ExecutorError> {
        bomb()
    }
    fn shutdown(_task_id: String, _timeout_ms: u64) -> Result<(), ExecutorError> {
        bomb()
    }
    fn remove(_task_id: String) -> Result<(), ExecutorError> {
        bomb()
    }
    fn inspect(_task_id: String) -> Result<TaskState, ExecutorError> {
        bomb()
    }
}

impl swarm_plugin_sdk::Discovery for Plugin {
    fn schemes() -> Vec<String> {
        bomb()
    }
    fn initialize(_uri: String, _heartbeat_ms: u64, _ttl_ms: u64) -> Result<(), DiscoveryError> {
        bomb()
    }
    fn watch() -> Result<Vec<String>, DiscoveryError> {
        bomb()
    }
    fn register(_addr: String) -> Result<(), DiscoveryError> {
        bomb()
    }
}

swarm_plugin_sdk::export_scheduler!(Plugin);
swarm_plugin_sdk::export_executor!(Plugin);
swarm_plugin_sdk::export_discovery!(Plugin);
