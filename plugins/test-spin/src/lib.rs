//! A test guest whose every call loops forever, as a scheduler and as an
//! executor.

wit_bindgen::generate!({
    path: "../../wit",
    inline: "
        package swarm-test:spin;
        world spin {
            include swarm:plugin/scheduler-plugin@0.1.0;
            include swarm:plugin/executor-plugin@0.1.0;
        }
    ",
    world: "swarm-test:spin/spin",
    generate_all,
});

use exports::swarm::plugin::{executor, scheduler};
use swarm::plugin::types::{
    ExecutorError, ExecutorInfo, ExitStatus, GroupResult, NodeInfo, Task, TaskGroup, TaskState,
};

fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

struct Plugin;

impl scheduler::Guest for Plugin {
    fn update_nodes(_upserts: Vec<NodeInfo>, _removals: Vec<String>) {
        spin()
    }
    fn schedule(_groups: Vec<TaskGroup>) -> Vec<GroupResult> {
        spin()
    }
}

impl executor::Guest for Plugin {
    fn describe() -> ExecutorInfo {
        spin()
    }
    fn prepare(_task: Task) -> Result<(), ExecutorError> {
        spin()
    }
    fn start(_task_id: String) -> Result<(), ExecutorError> {
        spin()
    }
    fn wait(_task_id: String) -> Result<ExitStatus, ExecutorError> {
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

export!(Plugin);
