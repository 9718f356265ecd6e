//! An executor plugin: every call runs in a fresh instance from its `InstancePre`, so calls are
//! concurrent and independent (a trap affects only its own call). Waiting for a task is the
//! host's job: it holds no instance while the task runs, and calls `inspect` when the capability
//! running the task reports its end (or every [`INSPECT_INTERVAL`]).

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;
use wasmtime::Store;

use crate::HostInner;
use crate::bindings::executor_world::{ExecutorPlugin as Bindings, ExecutorPluginPre};
use crate::bindings::types::{ExecutorError, ExecutorInfo, ExitStatus};

/// How often a waited-for task is inspected when no capability reports its end (a task run by
/// something other than the host capabilities).
pub const INSPECT_INTERVAL: Duration = Duration::from_secs(2);

/// Wall-clock time a call may spend awaiting the host beyond its guest deadline (stopping a
/// task waits for its stop timeout).
pub const HOST_TIME_ALLOWANCE: Duration = Duration::from_secs(300);
use crate::error::PluginError;
use crate::health::{Health, PluginHealth};
use crate::scheduler::instantiate_error;
use crate::state::{StoreState, begin_call, classify, new_store};
use crate::{ExecTask, TaskRuntimeState};

/// A loaded executor plugin. Cheap to clone; calls take `&self` and may run concurrently.
#[derive(Clone)]
pub struct ExecutorPlugin {
    inner: Arc<Inner>,
}

struct Inner {
    host: Arc<HostInner>,
    name: Arc<str>,
    pre: ExecutorPluginPre<StoreState>,
    health: Health,
}

impl ExecutorPlugin {
    pub(crate) fn new(
        host: Arc<HostInner>,
        name: &str,
        pre: ExecutorPluginPre<StoreState>,
    ) -> Self {
        ExecutorPlugin {
            inner: Arc::new(Inner {
                health: Health::new(host.failure_budget()),
                host,
                name: name.into(),
                pre,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Failures counted against the plugin's budget, and whether it is quarantined.
    pub fn health(&self) -> PluginHealth {
        self.inner.health.snapshot()
    }

    /// Refuses the call when the plugin is quarantined, and counts its failure if it fails.
    async fn guarded<T>(
        &self,
        call: impl Future<Output = Result<T, PluginError>>,
    ) -> Result<T, PluginError> {
        self.inner.health.admit(&self.inner.name)?;
        // Time awaiting the host is not charged to the guest's deadline, so a guest could keep
        // a call going through host operations: the call as a whole has a wall-clock limit too.
        let limit = self.inner.host.config.call_deadline + HOST_TIME_ALLOWANCE;
        let result = match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => Err(PluginError::DeadlineExceeded {
                plugin: self.inner.name.to_string(),
                deadline: limit,
            }),
        };
        if let Err(error) = &result {
            self.inner.health.record(&self.inner.name, error);
        }
        result
    }

    pub async fn describe(&self) -> Result<ExecutorInfo, PluginError> {
        let span = self.span("describe", "");
        self.guarded(async {
            let (mut store, bindings) = self.instantiate().await?;
            let result = bindings
                .swarm_plugin_executor()
                .call_describe(&mut store)
                .await;
            result.map_err(|error| self.failed(&store, &error))
        })
        .instrument(span)
        .await
    }

    pub async fn prepare(&self, task: &ExecTask) -> Result<(), PluginError> {
        let span = self.span("prepare", &task.id);
        self.guarded(async {
            let (mut store, bindings) = self.instantiate().await?;
            let result = bindings
                .swarm_plugin_executor()
                .call_prepare(&mut store, task)
                .await;
            self.finish(&store, result)
        })
        .instrument(span)
        .await
    }

    pub async fn start(&self, task_id: &str) -> Result<(), PluginError> {
        let span = self.span("start", task_id);
        self.guarded(async {
            let (mut store, bindings) = self.instantiate().await?;
            let result = bindings
                .swarm_plugin_executor()
                .call_start(&mut store, task_id)
                .await;
            self.finish(&store, result)
        })
        .instrument(span)
        .await
    }

    /// Returns when the task ends: inspects it whenever the capability running it reports a
    /// change, and at least every [`INSPECT_INTERVAL`]. No instance is held in between.
    pub async fn wait(&self, task_id: &str) -> Result<ExitStatus, PluginError> {
        let capabilities = self.inner.host.capabilities.clone();
        let mut signalled = false;
        loop {
            let state = match self.inspect(task_id).await {
                Ok(state) => state,
                // A trap, a deadline or a memory bomb in one `inspect` says nothing about the
                // task: try again at the next change or interval. The failure budget ends this
                // (a quarantined plugin answers `Quarantined`, which is final).
                Err(
                    error @ (PluginError::Trap { .. }
                    | PluginError::DeadlineExceeded { .. }
                    | PluginError::MemoryLimit { .. }
                    | PluginError::Instantiate { .. }),
                ) => {
                    tracing::warn!(task_id, %error, "inspect failed while waiting; retrying");
                    tokio::time::sleep(INSPECT_INTERVAL).await;
                    continue;
                }
                Err(error) => return Err(error),
            };
            match state {
                TaskRuntimeState::Exited(status) => return Ok(status),
                TaskRuntimeState::Running => {}
                TaskRuntimeState::Prepared => {
                    return Err(self.guest_error(format!("task {task_id} is not started")));
                }
                TaskRuntimeState::Missing => {
                    return Err(
                        self.guest_error(format!("task {task_id} is not known to the executor"))
                    );
                }
            }
            if signalled {
                // The capability said the task ended, yet the executor says it runs (restarted
                // outside swarm, say): its signal stays set, so only the interval paces us.
                tokio::time::sleep(INSPECT_INTERVAL).await;
                continue;
            }
            tokio::select! {
                () = capabilities.task_ended(task_id) => signalled = true,
                () = tokio::time::sleep(INSPECT_INTERVAL) => {}
            }
        }
    }

    /// Asks the task to stop and kills it after `timeout`.
    pub async fn shutdown(&self, task_id: &str, timeout: Duration) -> Result<(), PluginError> {
        let span = self.span("shutdown", task_id);
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.guarded(async {
            let (mut store, bindings) = self.instantiate().await?;
            let result = bindings
                .swarm_plugin_executor()
                .call_shutdown(&mut store, task_id, timeout_ms)
                .await;
            self.finish(&store, result)
        })
        .instrument(span)
        .await
    }

    pub async fn remove(&self, task_id: &str) -> Result<(), PluginError> {
        let span = self.span("remove", task_id);
        self.guarded(async {
            let (mut store, bindings) = self.instantiate().await?;
            let result = bindings
                .swarm_plugin_executor()
                .call_remove(&mut store, task_id)
                .await;
            self.finish(&store, result)
        })
        .instrument(span)
        .await
    }

    pub async fn inspect(&self, task_id: &str) -> Result<TaskRuntimeState, PluginError> {
        let span = self.span("inspect", task_id);
        self.guarded(async {
            let (mut store, bindings) = self.instantiate().await?;
            let result = bindings
                .swarm_plugin_executor()
                .call_inspect(&mut store, task_id)
                .await;
            self.finish(&store, result)
        })
        .instrument(span)
        .await
    }

    fn guest_error(&self, message: String) -> PluginError {
        PluginError::Guest {
            plugin: self.inner.name.to_string(),
            message,
        }
    }

    fn span(&self, call: &'static str, task_id: &str) -> tracing::Span {
        tracing::info_span!("plugin_call", plugin = %self.inner.name, call, task_id)
    }

    async fn instantiate(&self) -> Result<(Store<StoreState>, Bindings), PluginError> {
        let mut store = new_store(&self.inner.host, &self.inner.name);
        match self.inner.pre.instantiate_async(&mut store).await {
            Ok(bindings) => {
                begin_call(&mut store);
                Ok((store, bindings))
            }
            Err(error) => Err(instantiate_error(store.data(), &error)),
        }
    }

    fn failed(&self, store: &Store<StoreState>, error: &wasmtime::Error) -> PluginError {
        let error = classify(store.data(), error);
        tracing::warn!(%error, "executor call failed");
        error
    }

    fn finish<T>(
        &self,
        store: &Store<StoreState>,
        result: wasmtime::Result<Result<T, ExecutorError>>,
    ) -> Result<T, PluginError> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(PluginError::Guest {
                plugin: self.inner.name.to_string(),
                message: error.message,
            }),
            Err(error) => Err(self.failed(store, &error)),
        }
    }
}
