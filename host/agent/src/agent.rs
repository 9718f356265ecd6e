//! The agent: opens the task database, reconciles stored tasks, then keeps a session with a
//! manager's dispatcher open. When one ends it moves to another manager at once, picked by
//! weight from [`Managers`]; only when every manager failed in a round does it wait, with
//! exponential backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use swarm_proto::pb;
use swarm_types::NodeDescription;
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::config::AgentConfig;
use crate::db::TaskDb;
use crate::error::AgentError;
use crate::executor::{Executor, ExecutorInfo, ExecutorLoader, LogReader};
use crate::executors::{Executors, NamedExecutor};
use crate::files::TaskFiles;
use crate::managers::{Managers, Round};
use crate::reporter::Reporter;
use crate::session::{self, SessionEnd, Shared};
use crate::worker::Worker;

/// First re-registration backoff after a round where every manager failed.
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
    /// The manager the current session is registered with.
    pub manager_addr: Option<String>,
    /// How many times the agent has registered since it started.
    pub registrations: u64,
    /// How many stored tasks were reconciled with the executor at start.
    pub reconciled_tasks: usize,
    /// The managers the dispatcher last announced.
    pub managers: Vec<ManagerPeer>,
    /// The role the cluster wants this node to have (from the node object the dispatcher
    /// sends): when it differs from the node's certificate, the node changes role.
    pub desired_role: Option<swarm_types::NodeRole>,
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
    executors: Executors,
    /// Loads installed executors delivered with assignments; `None`: they are refused.
    loader: Option<Arc<dyn ExecutorLoader>>,
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
    /// each executor to describe itself. The first executor is the node's default; the node's
    /// description gets its name, every executor's runtimes, and its engine's platform,
    /// resources, version and labels (see [`describe_node`]).
    pub async fn new(
        config: AgentConfig,
        executors: Vec<Arc<dyn Executor>>,
        logs: Arc<dyn LogReader>,
    ) -> Result<Self, AgentError> {
        let mut config = config;
        config.validate()?;
        let mut seen = std::collections::HashSet::new();
        config.managers.retain(|addr| seen.insert(addr.clone()));
        if executors.is_empty() {
            return Err(AgentError::InvalidConfig {
                field: "executors",
                message: "the agent needs at least one executor".to_string(),
            });
        }
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
        let mut named: Vec<NamedExecutor> = Vec::with_capacity(executors.len());
        for executor in executors {
            let info = executor.describe().await?;
            if named.iter().any(|n| n.info.name == info.name) {
                return Err(AgentError::InvalidConfig {
                    field: "executors",
                    message: format!("two executors are named {:?}", info.name),
                });
            }
            named.push(NamedExecutor { info, executor });
        }
        let infos: Vec<ExecutorInfo> = named.iter().map(|n| n.info.clone()).collect();
        let description = describe_node(config.description.clone(), &infos);
        info!(
            default = %description.executor,
            executors = %infos.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "),
            runtimes = %description.runtimes.join(", "),
            "executors ready"
        );
        let (status, _) = watch::channel(AgentStatus::default());
        Ok(Self {
            config,
            executors: Executors::new(named),
            loader: None,
            logs,
            db: Arc::new(db),
            description: description.into(),
            status,
        })
    }

    /// [`Agent::new`] with executor plugins of `swarm-plugin-host` (the first is the node's
    /// default); `host` serves the task logs.
    pub async fn with_plugins(
        config: AgentConfig,
        executors: Vec<swarm_plugin_host::ExecutorPlugin>,
        host: swarm_plugin_host::PluginHost,
    ) -> Result<Self, AgentError> {
        let executors = executors
            .into_iter()
            .map(|e| Arc::new(e) as Arc<dyn Executor>)
            .collect();
        let mut agent = Self::new(config, executors, Arc::new(host.clone())).await?;
        agent.loader = Some(Arc::new(host));
        Ok(agent)
    }

    /// [`Agent::with_plugins`] with one executor plugin.
    pub async fn with_plugin(
        config: AgentConfig,
        executor: swarm_plugin_host::ExecutorPlugin,
        host: swarm_plugin_host::PluginHost,
    ) -> Result<Self, AgentError> {
        Self::with_plugins(config, vec![executor], host).await
    }

    /// The node's executors (add one with [`Executors::insert`] while the agent runs).
    pub fn executors(&self) -> Executors {
        self.executors.clone()
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
            self.executors.clone(),
            reporter.clone(),
            Arc::new(TaskFiles::new(self.config.files_dir.clone())),
            controllers,
        );
        let installed: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let executors_dir = Some(self.config.executors_dir());
        // Installed executors from the last run first: the stored tasks may run on them.
        session::Plugins {
            executors: self.executors.clone(),
            loader: self.loader.clone(),
            installed: Arc::clone(&installed),
            dir: executors_dir.clone(),
        }
        .restore()
        .await;
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
            executors: self.executors.clone(),
            loader: self.loader.clone(),
            installed,
            executors_dir,
            managers: Arc::new(parking_lot::Mutex::new(Managers::new(
                &self.config.managers,
            ))),
            channels: self.config.channels.clone(),
        };
        let mut round = Round::default();
        let mut backoff = Duration::ZERO;
        while !cancel.is_cancelled() {
            if !backoff.is_zero() {
                let delay = backoff.mul_f64(rand::rng().random_range(0.0..1.0));
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = cancel.cancelled() => break,
                }
            }
            let picked = round.next(&shared.managers.lock(), &mut rand::rng());
            let Some(addr) = picked else {
                // Unreachable: the list starts with at least one manager and is never emptied.
                shared.worker.lock().await.shutdown().await;
                return Err(AgentError::InvalidConfig {
                    field: "managers",
                    message: "no manager left to connect to".into(),
                });
            };
            match session::run(&shared, &addr, &cancel).await {
                SessionEnd::Cancelled => break,
                SessionEnd::Failed { registered, error } => {
                    let mut managers = shared.managers.lock();
                    managers.observe_failure(&addr);
                    backoff = round.failed(&managers, &addr, registered);
                    drop(managers);
                    warn!(manager = %addr, %error, ?backoff, "session ended");
                    let message = format!("manager {addr}: {error}");
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

/// The node's description with what its executors said: the default's (first's) name, every
/// executor's runtimes, `executor/<name>` plugins, and when the default has an engine, the
/// engine's platform, CPUs, memory, version and labels. Fields the caller set are kept, except the
/// engine's version, which names the engine when there is one.
pub fn describe_node(
    mut description: NodeDescription,
    executors: &[ExecutorInfo],
) -> NodeDescription {
    let Some(default) = executors.first() else {
        return description;
    };
    if description.executor.is_empty() {
        description.executor = default.name.clone();
    }
    if description.runtimes.is_empty() {
        for runtime in executors.iter().flat_map(|e| &e.runtimes) {
            if !description.runtimes.contains(runtime) {
                description.runtimes.push(runtime.clone());
            }
        }
    }
    for executor in executors {
        let plugin = format!("executor/{}", executor.name);
        if !description.engine.plugins.contains(&plugin) {
            description.engine.plugins.push(plugin);
        }
    }
    if let Some(engine) = &default.engine {
        if description.hostname.is_empty() {
            description.hostname = engine.hostname.clone();
        }
        if !engine.os.is_empty() {
            description.platform.os = engine.os.clone();
        }
        if !engine.arch.is_empty() {
            description.platform.arch = engine.arch.clone();
        }
        if engine.nano_cpus > 0 {
            description.resources.nano_cpus = engine.nano_cpus;
        }
        if engine.memory_bytes > 0 {
            description.resources.memory_bytes = engine.memory_bytes;
        }
        description.engine.version = engine.version.clone();
        for (key, value) in &engine.labels {
            description
                .engine
                .labels
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
    }
    description
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
    use crate::executor::EngineInfo;

    #[test]
    fn the_default_executors_engine_describes_the_node() {
        let configured = NodeDescription {
            hostname: "node-1".into(),
            engine: swarm_types::EngineDescription {
                version: "0.1.0".into(),
                labels: [("zone".to_string(), "east".to_string())].into(),
                plugins: Vec::new(),
            },
            ..Default::default()
        };
        let docker = ExecutorInfo {
            name: "docker".into(),
            runtimes: vec!["container".into()],
            engine: Some(EngineInfo {
                hostname: "vm".into(),
                version: "docker 20.10.24".into(),
                os: "linux".into(),
                arch: "amd64".into(),
                nano_cpus: 2_000_000_000,
                memory_bytes: 1 << 30,
                labels: vec![
                    ("zone".into(), "west".into()),
                    ("ssd".into(), "true".into()),
                ],
            }),
        };
        let default = ExecutorInfo {
            name: "default".into(),
            runtimes: vec!["process".into(), "wasi".into()],
            engine: None,
        };
        let described = describe_node(configured.clone(), &[docker, default.clone()]);
        assert_eq!(described.hostname, "node-1");
        assert_eq!(described.executor, "docker");
        assert_eq!(described.runtimes, ["container", "process", "wasi"]);
        assert_eq!(described.engine.version, "docker 20.10.24");
        assert_eq!(
            described.engine.plugins,
            ["executor/docker", "executor/default"]
        );
        assert_eq!(
            described.engine.labels,
            [
                ("ssd".to_string(), "true".to_string()),
                ("zone".to_string(), "east".to_string()),
            ]
            .into()
        );
        assert_eq!(
            (
                described.platform.os.as_str(),
                described.platform.arch.as_str()
            ),
            ("linux", "amd64")
        );
        assert_eq!(described.resources.nano_cpus, 2_000_000_000);
        assert_eq!(described.resources.memory_bytes, 1 << 30);

        // Without an engine the node keeps its own figures.
        let plain = describe_node(configured.clone(), &[default]);
        assert_eq!(plain.executor, "default");
        assert_eq!(plain.engine.version, "0.1.0");
        assert_eq!(plain.resources, configured.resources);
    }

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
