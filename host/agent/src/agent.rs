//! The agent: opens the task database, reconciles stored tasks, then keeps a session with the
//! dispatcher open, re-registering with exponential backoff whenever one ends.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use swarm_proto::pb;
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::config::AgentConfig;
use crate::db::TaskDb;
use crate::error::AgentError;
use crate::executor::{Executor, LogReader};
use crate::reporter::Reporter;
use crate::session::{self, SessionEnd, Shared};
use crate::worker::Worker;

/// First re-registration backoff after a failure.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The backoff doubles up to this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// What the agent's session looks like now; watch it with [`Agent::status`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentStatus {
    /// A session is registered with the dispatcher.
    pub registered: bool,
    /// The current session's id.
    pub session_id: Option<String>,
    /// How many times the agent has registered since it started.
    pub registrations: u64,
    /// How many stored tasks were reconciled with the executor at start.
    pub reconciled_tasks: usize,
    /// The managers the dispatcher last announced.
    pub managers: Vec<ManagerPeer>,
    /// Why the last session ended, if one did.
    pub last_error: Option<String>,
}

/// A manager the dispatcher announced, with its weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagerPeer {
    pub node_id: String,
    pub addr: String,
    pub weight: i64,
}

/// The worker side of a node. Build with [`Agent::new`], observe with [`Agent::status`], drive
/// with [`Agent::run`].
pub struct Agent {
    config: AgentConfig,
    executor: Arc<dyn Executor>,
    logs: Arc<dyn LogReader>,
    db: Arc<TaskDb>,
    description: pb::NodeDescription,
    status: watch::Sender<AgentStatus>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Validates the config, creates the state directory, opens the task database and asks
    /// the executor to describe itself (filling the description's executor and runtimes when
    /// they are empty).
    pub async fn new(
        config: AgentConfig,
        executor: Arc<dyn Executor>,
        logs: Arc<dyn LogReader>,
    ) -> Result<Self, AgentError> {
        config.validate()?;
        tokio::fs::create_dir_all(&config.state_dir)
            .await
            .map_err(|source| AgentError::StateDir {
                path: config.state_dir.clone(),
                source,
            })?;
        let path = config.task_db_path();
        let db = tokio::task::spawn_blocking(move || TaskDb::open(&path))
            .await
            .map_err(|e| crate::db::DbError::Blocking(e.to_string()))??;
        let info = executor.describe().await?;
        let mut description = config.description.clone();
        if description.executor.is_empty() {
            description.executor = info.name;
        }
        if description.runtimes.is_empty() {
            description.runtimes = info.runtimes;
        }
        let (status, _) = watch::channel(AgentStatus::default());
        Ok(Self {
            config,
            executor,
            logs,
            db: Arc::new(db),
            description: description.into(),
            status,
        })
    }

    /// [`Agent::new`] with the executor plugin of `swarm-plugin-host`; `host` serves the
    /// task logs.
    pub async fn with_plugin(
        config: AgentConfig,
        executor: swarm_plugin_host::ExecutorPlugin,
        host: swarm_plugin_host::PluginHost,
    ) -> Result<Self, AgentError> {
        Self::new(config, Arc::new(executor), Arc::new(host)).await
    }

    /// The session state, updated as it changes (e.g. wait for `registered`).
    pub fn status(&self) -> watch::Receiver<AgentStatus> {
        self.status.subscribe()
    }

    /// Reconciles the stored tasks, then keeps a session open until `cancel` fires. Tasks keep
    /// running after the agent stops; the next start adopts them.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), AgentError> {
        let span = info_span!("agent", node_id = %self.config.node_id);
        self.run_inner(cancel).instrument(span).await
    }

    async fn run_inner(self, cancel: CancellationToken) -> Result<(), AgentError> {
        let reporter = Reporter::new();
        let controllers = cancel.child_token();
        let mut worker = Worker::new(
            self.config.node_id.clone(),
            Arc::clone(&self.db),
            Arc::clone(&self.executor),
            reporter.clone(),
            controllers,
        );
        let reconciled = tokio::select! {
            reconciled = worker.start() => reconciled,
            () = cancel.cancelled() => Ok(0),
        };
        let reconciled = match reconciled {
            Ok(count) => count,
            Err(error) => {
                worker.shutdown().await;
                return Err(error);
            }
        };
        info!(tasks = reconciled, "stored tasks reconciled");
        self.status
            .send_modify(|status| status.reconciled_tasks = reconciled);

        let shared = Shared {
            node_id: self.config.node_id.clone(),
            description: self.description.clone(),
            worker: Arc::new(Mutex::new(worker)),
            reporter,
            logs: Arc::clone(&self.logs),
            status: self.status.clone(),
        };
        let mut backoff = Duration::ZERO;
        while !cancel.is_cancelled() {
            if !backoff.is_zero() {
                let delay = backoff.mul_f64(rand::rng().random_range(0.0..1.0));
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = cancel.cancelled() => break,
                }
            }
            match session::run(&shared, &self.config.manager_addr, &cancel).await {
                SessionEnd::Cancelled => break,
                SessionEnd::Failed { registered, error } => {
                    warn!(%error, "session ended");
                    if registered {
                        backoff = Duration::ZERO;
                    }
                    backoff = next_backoff(backoff);
                    let message = error.to_string();
                    self.status
                        .send_modify(|status| status.last_error = Some(message));
                }
            }
        }
        shared.worker.lock().await.shutdown().await;
        info!("agent stopped; tasks keep running");
        Ok(())
    }
}

/// The backoff after one more failure: 100 ms, then doubling up to 8 s.
pub(crate) fn next_backoff(current: Duration) -> Duration {
    if current.is_zero() {
        INITIAL_BACKOFF
    } else {
        (current * 2).min(MAX_BACKOFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let mut backoff = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..10 {
            backoff = next_backoff(backoff);
            seen.push(backoff.as_millis());
        }
        assert_eq!(
            seen,
            vec![100, 200, 400, 800, 1600, 3200, 6400, 8000, 8000, 8000]
        );
    }
}
