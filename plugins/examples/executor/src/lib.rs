//! Example executor: runs `process` tasks through the host's `process` capability (install it
//! with `--allow process`). It keeps no state: the capability holds each task, by task id.

use swarm_plugin_sdk::types::{ExecutorError, ExecutorInfo, Task, TaskRuntime, TaskState};
use swarm_plugin_sdk::{Executor, log, process};

struct ProcessExecutor;

impl Executor for ProcessExecutor {
    fn describe() -> ExecutorInfo {
        ExecutorInfo {
            name: "example-executor".to_owned(),
            runtimes: vec!["process".to_owned()],
            engine: None,
        }
    }

    fn prepare(task: Task) -> Result<(), ExecutorError> {
        let TaskRuntime::Process(spec) = task.runtime else {
            return Err("this executor runs only `process` tasks".into());
        };
        if spec.command.is_empty() {
            return Err(format!("task {}: the command is empty", task.id).into());
        }
        log::info(&format!("task {}: preparing `{}`", task.id, spec.command));
        // The capability's errors are strings; `?` turns them into an `ExecutorError`.
        process::prepare(&task.id, &spec)?;
        Ok(())
    }

    fn start(task_id: String) -> Result<(), ExecutorError> {
        let pid = process::start(&task_id)?;
        log::debug(&format!("task {task_id}: running as pid {pid}"));
        Ok(())
    }

    fn shutdown(task_id: String, timeout_ms: u64) -> Result<(), ExecutorError> {
        process::stop(&task_id, timeout_ms)?;
        Ok(())
    }

    fn remove(task_id: String) -> Result<(), ExecutorError> {
        process::remove(&task_id)?;
        Ok(())
    }

    fn inspect(task_id: String) -> Result<TaskState, ExecutorError> {
        // The host calls this when the process changes and every few seconds; `exited` carries
        // the exit status it recorded.
        Ok(process::status(&task_id))
    }
}

swarm_plugin_sdk::export_executor!(ProcessExecutor);
