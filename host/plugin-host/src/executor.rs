//! An executor plugin: every call runs in a fresh instance from its `InstancePre`, so calls are
//! concurrent and independent (a trap or a long `wait` affects only its own call).

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;
use wasmtime::Store;

use crate::HostInner;
use crate::bindings::executor_world::{ExecutorPlugin as Bindings, ExecutorPluginPre};
use crate::bindings::types::{ExecutorError, ExecutorInfo, ExitStatus};
use crate::error::PluginError;
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
}

impl ExecutorPlugin {
    pub(crate) fn new(
        host: Arc<HostInner>,
        name: &str,
        pre: ExecutorPluginPre<StoreState>,
    ) -> Self {
        ExecutorPlugin {
            inner: Arc::new(Inner {
                host,
                name: name.into(),
                pre,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub async fn describe(&self) -> Result<ExecutorInfo, PluginError> {
        let span = self.span("describe", "");
        async {
            let (mut store, bindings) = self.instantiate().await?;
            let result = bindings
                .swarm_plugin_executor()
                .call_describe(&mut store)
                .await;
            result.map_err(|error| self.failed(&store, &error))
        }
        .instrument(span)
        .await
    }

    pub async fn prepare(&self, task: &ExecTask) -> Result<(), PluginError> {
        let span = self.span("prepare", &task.id);
        async {
            let (mut store, bindings) = self.instantiate().await?;
            let result = bindings
                .swarm_plugin_executor()
                .call_prepare(&mut store, task)
                .await;
            self.finish(&store, result)
        }
        .instrument(span)
        .await
    }

    pub async fn start(&self, task_id: &str) -> Result<(), PluginError> {
        let span = self.span("start", task_id);
        async {
            let (mut store, bindings) = self.instantiate().await?;
            let result = bindings
                .swarm_plugin_executor()
                .call_start(&mut store, task_id)
                .await;
            self.finish(&store, result)
        }
        .instrument(span)
        .await
    }

    /// Returns when the task ends. Time awaiting the task does not count toward the deadline.
    pub async fn wait(&self, task_id: &str) -> Result<ExitStatus, PluginError> {
        let span = self.span("wait", task_id);
        async {
            let (mut store, bindings) = self.instantiate().await?;
            let result = bindings
                .swarm_plugin_executor()
                .call_wait(&mut store, task_id)
                .await;
            self.finish(&store, result)
        }
        .instrument(span)
        .await
    }

    /// Asks the task to stop and kills it after `timeout`.
    pub async fn shutdown(&self, task_id: &str, timeout: Duration) -> Result<(), PluginError> {
        let span = self.span("shutdown", task_id);
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        async {
            let (mut store, bindings) = self.instantiate().await?;
            let result = bindings
                .swarm_plugin_executor()
                .call_shutdown(&mut store, task_id, timeout_ms)
                .await;
            self.finish(&store, result)
        }
        .instrument(span)
        .await
    }

    pub async fn remove(&self, task_id: &str) -> Result<(), PluginError> {
        let span = self.span("remove", task_id);
        async {
            let (mut store, bindings) = self.instantiate().await?;
            let result = bindings
                .swarm_plugin_executor()
                .call_remove(&mut store, task_id)
                .await;
            self.finish(&store, result)
        }
        .instrument(span)
        .await
    }

    pub async fn inspect(&self, task_id: &str) -> Result<TaskRuntimeState, PluginError> {
        let span = self.span("inspect", task_id);
        async {
            let (mut store, bindings) = self.instantiate().await?;
            let result = bindings
                .swarm_plugin_executor()
                .call_inspect(&mut store, task_id)
                .await;
            self.finish(&store, result)
        }
        .instrument(span)
        .await
    }

    fn span(&self, call: &'static str, task_id: &str) -> tracing::Span {
        tracing::info_span!("plugin_call", plugin = %self.inner.name, call, task_id)
    }

    async fn instantiate(&self) -> Result<(Store<StoreState>, Bindings), PluginError> {
        let host = &self.inner.host;
        let mut store = new_store(
            host.plugins.engine(),
            &self.inner.name,
            host.config.memory_limit_bytes,
            host.config.call_deadline,
            &host.capabilities,
        );
        begin_call(&mut store);
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
