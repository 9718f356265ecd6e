//! The default executor plugin: runs `process` tasks through the host's `process` capability and
//! `wasi` tasks through `wasi-runner`. It keeps no state: the capabilities hold it, keyed by task
//! id, so the host may run each call in a fresh instance.

use swarm_plugin_sdk::log::log;
use swarm_plugin_sdk::types::{
    ExecutorError, ExecutorInfo, LogLevel, Task, TaskRuntime, TaskState,
};
use swarm_plugin_sdk::{Executor, process, wasi_runner};

struct Plugin;

/// Which capability holds a task.
enum Runner {
    Process,
    Wasi,
}

fn error(message: impl Into<String>) -> ExecutorError {
    ExecutorError {
        message: message.into(),
    }
}

/// Finds the capability that knows `task_id`, with its state.
fn locate(task_id: &str) -> Option<(Runner, TaskState)> {
    match process::status(task_id) {
        TaskState::Missing => {}
        state => return Some((Runner::Process, state)),
    }
    match wasi_runner::status(task_id) {
        TaskState::Missing => None,
        state => Some((Runner::Wasi, state)),
    }
}

fn must_locate(task_id: &str) -> Result<(Runner, TaskState), ExecutorError> {
    locate(task_id).ok_or_else(|| error(format!("task {task_id} is not known to this executor")))
}

impl Executor for Plugin {
    fn describe() -> ExecutorInfo {
        ExecutorInfo {
            name: "default".to_owned(),
            runtimes: vec!["process".to_owned(), "wasi".to_owned()],
            engine: None,
        }
    }

    fn prepare(task: Task) -> Result<(), ExecutorError> {
        log(
            LogLevel::Debug,
            &format!(
                "preparing task {} of service {}",
                task.id, task.service_name
            ),
        );
        match task.runtime {
            TaskRuntime::Process(spec) => {
                if spec.command.is_empty() {
                    return Err(error("process task has an empty command"));
                }
                process::prepare(&task.id, &spec).map_err(error)
            }
            TaskRuntime::Wasi(spec) => {
                wasi_runner::prepare(&task.id, &spec, task.limits).map_err(error)
            }
            TaskRuntime::Container(_) => Err(error(
                "the default executor does not run containers: use the docker executor",
            )),
        }
    }

    fn start(task_id: String) -> Result<(), ExecutorError> {
        match must_locate(&task_id)? {
            (runner, TaskState::Prepared) => match runner {
                Runner::Process => process::start(&task_id).map(|_pid| ()).map_err(error),
                Runner::Wasi => wasi_runner::start(&task_id).map_err(error),
            },
            (_, TaskState::Running) => Err(error(format!("task {task_id} is already running"))),
            (_, _) => Err(error(format!("task {task_id} has already run"))),
        }
    }

    fn shutdown(task_id: String, timeout_ms: u64) -> Result<(), ExecutorError> {
        match must_locate(&task_id)? {
            (Runner::Process, TaskState::Running) => {
                process::stop(&task_id, timeout_ms).map_err(error)
            }
            (Runner::Wasi, TaskState::Running) => wasi_runner::kill(&task_id).map_err(error),
            _ => Ok(()),
        }
    }

    fn remove(task_id: String) -> Result<(), ExecutorError> {
        match locate(&task_id) {
            Some((Runner::Process, _)) => process::remove(&task_id).map_err(error),
            Some((Runner::Wasi, _)) => wasi_runner::remove(&task_id).map_err(error),
            None => Ok(()),
        }
    }

    fn inspect(task_id: String) -> Result<TaskState, ExecutorError> {
        Ok(locate(&task_id).map_or(TaskState::Missing, |(_, state)| state))
    }
}

swarm_plugin_sdk::export_executor!(Plugin);
