//! A test guest whose every call traps (an `unreachable` instruction), as a scheduler and as an
//! executor.

wit_bindgen::generate!({
    path: "../../wit",
    inline: "
        package swarm-test:trap;
        world trap {
            include swarm:plugin/scheduler-plugin@0.1.0;
            include swarm:plugin/executor-plugin@0.1.0;
        }
    ",
    world: "swarm-test:trap/trap",
    generate_all,
});

use exports::swarm::plugin::{executor, scheduler};
use swarm::plugin::types::{
    ExecutorError, ExecutorInfo, ExitStatus, GroupResult, NodeInfo, Task, TaskGroup, TaskState,
};

fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

struct Plugin;

impl scheduler::Guest for Plugin {
    fn update_nodes(_upserts: Vec<NodeInfo>, _removals: Vec<String>) {
        trap()
    }
    fn schedule(_groups: Vec<TaskGroup>) -> Vec<GroupResult> {
        trap()
    }
}

impl executor::Guest for Plugin {
    fn describe() -> ExecutorInfo {
        trap()
    }
    fn prepare(_task: Task) -> Result<(), ExecutorError> {
        trap()
    }
    fn start(_task_id: String) -> Result<(), ExecutorError> {
        trap()
    }
    fn wait(_task_id: String) -> Result<ExitStatus, ExecutorError> {
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

export!(Plugin);
