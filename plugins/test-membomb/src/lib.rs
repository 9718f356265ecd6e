//! A test guest whose every call allocates memory without bound, as a scheduler and as an
//! executor.

wit_bindgen::generate!({
    path: "../../wit",
    inline: "
        package swarm-test:membomb;
        world membomb {
            include swarm:plugin/scheduler-plugin@0.1.0;
            include swarm:plugin/executor-plugin@0.1.0;
        }
    ",
    world: "swarm-test:membomb/membomb",
    generate_all,
});

use exports::swarm::plugin::{executor, scheduler};
use swarm::plugin::types::{
    ExecutorError, ExecutorInfo, ExitStatus, GroupResult, NodeInfo, Task, TaskGroup, TaskState,
};

fn bomb() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

struct Plugin;

impl scheduler::Guest for Plugin {
    fn update_nodes(_upserts: Vec<NodeInfo>, _removals: Vec<String>) {
        bomb()
    }
    fn schedule(_groups: Vec<TaskGroup>) -> Vec<GroupResult> {
        bomb()
    }
}

impl executor::Guest for Plugin {
    fn describe() -> ExecutorInfo {
        bomb()
    }
    fn prepare(_task: Task) -> Result<(), ExecutorError> {
        bomb()
    }
    fn start(_task_id: String) -> Result<(), ExecutorError> {
        bomb()
    }
    fn wait(_task_id: String) -> Result<ExitStatus, ExecutorError> {
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

export!(Plugin);
