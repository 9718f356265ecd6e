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

/// The executor's name, the runtimes it runs and the engine behind it, if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecutorInfo {
    pub name: String,
    pub runtimes: Vec<String>,
    pub engine: Option<EngineInfo>,
}

/// A container engine as an executor describes it; the node reports it as its own when that
/// executor is the node's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineInfo {
    pub hostname: String,
    /// The engine's name and version, e.g. `docker 20.10.24`.
    pub version: String,
    /// Go names: `linux`, `amd64`.
    pub os: String,
    pub arch: String,
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    pub labels: Vec<(String, String)>,
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

/// A plugin executor's failure budget, as the node reports it to the managers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecutorHealth {
    pub quarantined: bool,
    pub failures: u32,
    pub last_error: String,
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
    /// The executor's failure budget, when it is a plugin that has one.
    fn health(&self) -> Option<ExecutorHealth> {
        None
    }
}

/// Which output of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// Reads the tail of a task's logs (from files or from the container engine).
pub trait LogReader: Send + Sync + 'static {
    fn read_logs<'a>(
        &'a self,
        task_id: &'a str,
        stream: LogStream,
        tail_bytes: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, ExecutorError>>;
}

/// An executor loaded by an [`ExecutorLoader`], with what it said of itself.
pub type LoadedExecutor = (ExecutorInfo, std::sync::Arc<dyn Executor>);

/// Loads installed executor plugins delivered with assignments (the plugin host in production).
pub trait ExecutorLoader: Send + Sync + 'static {
    /// Loads `component` as the executor `name` with the granted `capabilities`, and asks it to
    /// describe itself.
    fn load<'a>(
        &'a self,
        name: &'a str,
        capabilities: &'a [String],
        component: &'a [u8],
    ) -> BoxFuture<'a, Result<LoadedExecutor, ExecutorError>>;
}
