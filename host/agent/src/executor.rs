//! What the agent needs from an executor and from the task logs, as object-safe traits.
//!
//! The real implementation is the executor plugin of `swarm-plugin-host` (see `plugin.rs`);
//! tests can drive the agent with a fake. Every method takes `&self` and may run concurrently
//! with any other, for any task: a long `wait` on one task never blocks another.

use std::time::Duration;

use futures::future::BoxFuture;
use swarm_types::Task;

/// An executor call failed; the message is shown to people (it becomes a task's `err`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExecutorError {
    pub message: String,
}

impl ExecutorError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// The executor's name and the runtimes it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorInfo {
    pub name: String,
    pub runtimes: Vec<String>,
}

/// How a task's process ended. `code` is -1 when unknown (then `message` says why).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i32,
    pub signal: Option<i32>,
    pub message: String,
}

/// What the executor knows about a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecState {
    /// Never heard of it (or it was removed).
    Missing,
    /// Prepared, not started.
    Prepared,
    /// Started and still running.
    Running,
    /// Started and ended.
    Exited(ExitStatus),
}

/// Runs tasks. See the module docs for the concurrency contract.
pub trait Executor: Send + Sync + 'static {
    /// The executor's name and runtimes.
    fn describe(&self) -> BoxFuture<'_, Result<ExecutorInfo, ExecutorError>>;
    /// Gets a task ready to start; starts nothing.
    fn prepare<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<(), ExecutorError>>;
    /// Starts a prepared task.
    fn start<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<(), ExecutorError>>;
    /// Returns when the task ends.
    fn wait<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<ExitStatus, ExecutorError>>;
    /// Asks the task to stop and kills it after `timeout`.
    fn shutdown<'a>(
        &'a self,
        task_id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), ExecutorError>>;
    /// Forgets the task and removes its files, killing it if it still runs.
    fn remove<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<(), ExecutorError>>;
    /// What the executor knows of the task (used to adopt tasks after a restart).
    fn inspect<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<ExecState, ExecutorError>>;
}

/// Which output of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// Reads the tail of a task's logs. Blocking (file IO): the agent calls it off the runtime.
pub trait LogReader: Send + Sync + 'static {
    fn read_logs(
        &self,
        task_id: &str,
        stream: LogStream,
        tail_bytes: u64,
    ) -> Result<Vec<u8>, ExecutorError>;
}
