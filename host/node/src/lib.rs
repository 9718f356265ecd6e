//! One machine's lifecycle: the state directory and the node's identity in it, the plugin host
//! with the embedded default plugins, and the manager and agent the node runs.
//!
//! *Architecture invariant*: the node wires the manager and the agent together only through an
//! address: the agent reaches the manager's dispatcher over real gRPC even in one process.
//!
//! Layout of the state directory:
//! `node-id` (this node's id), `swarmd.lock` (held while swarmd runs), `swarmd.sock` (control
//! socket, by default), `raft/` (raft log and snapshots), `agent/` (the agent's task database),
//! `plugins/cache/` (compiled components by digest), `tasks/<task-id>/` (task logs and pids).

mod config;
mod state_dir;

use std::time::Duration;

use swarm_agent::{Agent, AgentConfig};
use swarm_manager::{Manager, ManagerConfig};
use swarm_plugin_host::{HostConfig, PluginHost};
use swarm_types::{EngineDescription, NodeDescription, Platform, Resources};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::{ExecutorChoice, NodeConfig};
pub use state_dir::StateDir;

/// Guest time one plugin call may take.
const PLUGIN_CALL_DEADLINE: Duration = Duration::from_secs(10);
/// Linear memory one plugin instance may use.
const PLUGIN_MEMORY_LIMIT: usize = 512 << 20;
/// How long the node waits for the container engine to answer at start.
const ENGINE_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub use swarm_plugin_host::DEFAULT_ENGINE_ADDR;

/// Why a node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Config(String),
    #[error("state directory {path}: {message}")]
    StateDir { path: String, message: String },
    #[error("plugin {name}: {source}")]
    Plugin {
        name: String,
        source: swarm_plugin_host::PluginError,
    },
    #[error("manager: {0}")]
    Manager(#[from] swarm_manager::ManagerError),
    #[error("agent: {0}")]
    Agent(#[from] swarm_agent::AgentError),
    #[error("binding the remote API on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// Run the node until `cancel` fires: a one-manager cluster whose agent runs in the same process.
pub async fn run(config: NodeConfig, cancel: CancellationToken) -> Result<(), NodeError> {
    let config = config.validate()?;
    let state = StateDir::open(&config.state_dir)?;
    let node_id = state.node_id()?;
    info!(%node_id, state_dir = %config.state_dir.display(), "starting node");
    let engine = swarm_plugin_host::probe_engine(&config.engine_addr, ENGINE_PROBE_TIMEOUT).await;

    let host = PluginHost::new(HostConfig {
        cache_dir: state.path().join("plugins").join("cache"),
        tasks_dir: state.path().join("tasks"),
        call_deadline: PLUGIN_CALL_DEADLINE,
        memory_limit_bytes: PLUGIN_MEMORY_LIMIT,
        engine_addr: engine.is_ok().then(|| config.engine_addr.clone()),
    })
    .map_err(|source| NodeError::Plugin {
        name: "host".into(),
        source,
    })?;
    // The embedded plugins are the fallback when installed ones are quarantined: they are never
    // quarantined themselves (their failures still fail the calls, and are logged).
    host.set_failure_budget(swarm_plugin_host::FailureBudget {
        max_failures: 0,
        ..Default::default()
    });
    let scheduler = host
        .load_scheduler("default", swarm_plugin_artifacts::SCHEDULER)
        .map_err(|source| NodeError::Plugin {
            name: "scheduler default".into(),
            source,
        })?;
    let (executor_name, executor_bytes) = config.executor.component()?;
    let executor = host
        .load_executor(
            &executor_name,
            &executor_bytes,
            swarm_plugin_host::DEFAULT_EXECUTOR_GRANTS,
        )
        .map_err(|source| NodeError::Plugin {
            name: format!("executor {executor_name}"),
            source,
        })?;
    // The docker executor is the default when the engine answers; `--executor` runs the rest.
    let mut executors = Vec::new();
    match &engine {
        Ok(version) => {
            let docker = host
                .load_executor(
                    "docker",
                    swarm_plugin_artifacts::EXECUTOR_DOCKER,
                    &[swarm_plugin_host::Capability::Docker],
                )
                .map_err(|source| NodeError::Plugin {
                    name: "executor docker".into(),
                    source,
                })?;
            info!(
                engine_addr = %config.engine_addr,
                engine_version = %version,
                "a container engine answers: executors docker (the default) and {executor_name}"
            );
            executors.push(docker);
        }
        Err(reason) => info!(
            engine_addr = %config.engine_addr,
            %reason,
            "no container engine answers: executor {executor_name} only"
        ),
    }
    executors.push(executor);
    // Plugins installed through the cluster get the default failure budget.
    host.set_failure_budget(swarm_plugin_host::FailureBudget::default());
    let default_executor = executors
        .first()
        .map_or(executor_name.clone(), |e| e.name().to_string());

    let listener = tokio::net::TcpListener::bind(config.listen_remote_api)
        .await
        .map_err(|source| NodeError::Listen {
            addr: config.listen_remote_api.to_string(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| NodeError::Listen {
        addr: config.listen_remote_api.to_string(),
        source,
    })?;
    let advertise = config.advertise_addr(bound);

    let manager = Manager::start(
        ManagerConfig {
            node_id: node_id.clone(),
            raft_dir: state.path().join("raft"),
            control_socket: config.control_socket.clone(),
            remote_listener: listener,
            advertise_addr: advertise.clone(),
            raft_tick: config.raft_tick,
            heartbeat_tick: config.heartbeat_tick,
            election_tick: config.election_tick,
            plugin_host: host.clone(),
        },
        scheduler,
        cancel.child_token(),
    )
    .await?;

    let agent = Agent::with_plugins(
        AgentConfig {
            node_id,
            manager_addr: advertise,
            state_dir: state.path().join("agent"),
            description: describe(&config.hostname, &default_executor),
        },
        executors,
        host,
    )
    .await?;
    let agent_cancel = cancel.child_token();
    let mut agent_task = tokio::spawn(agent.run(agent_cancel));

    // Run until asked to stop, or until the agent ends on its own (an error): a node whose agent
    // is gone must not keep pretending to be a healthy member.
    let agent_result = tokio::select! {
        _ = cancel.cancelled() => {
            info!("stopping node");
            agent_task.await
        }
        result = &mut agent_task => {
            tracing::error!("the agent stopped unexpectedly; stopping the node");
            result
        }
    };
    manager.shutdown().await;
    drop(state);
    match agent_result {
        Ok(r) => r.map_err(NodeError::from),
        Err(e) => Err(NodeError::Config(format!("agent task failed: {e}"))),
    }
}

/// What this machine reports about itself.
fn describe(hostname: &str, executor: &str) -> NodeDescription {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    NodeDescription {
        hostname: hostname.to_string(),
        platform: Platform {
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
        },
        resources: Resources {
            nano_cpus: i64::try_from(cpus)
                .unwrap_or(1)
                .saturating_mul(1_000_000_000),
            memory_bytes: total_memory_bytes(),
        },
        engine: EngineDescription {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        },
        executor: executor.to_string(),
        runtimes: Vec::new(),
    }
}

/// Total memory from /proc/meminfo (0 if unknown).
fn total_memory_bytes() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// Embedded plugins by name, for `--executor`.
pub fn embedded_executors() -> &'static [(&'static str, &'static [u8])] {
    &[("default", swarm_plugin_artifacts::EXECUTOR_DEFAULT)]
}
