//! One machine's lifecycle: the state directory and the node's identity in it, the plugin host
//! with the embedded default plugins, and the manager and agent the node runs.
//!
//! *Architecture invariant*: the node wires the manager and the agent together only through an
//! address: the agent reaches the manager's dispatcher over real gRPC even in one process.
//!
//! Layout of the state directory:
//! `node-id` (this node's id), `swarmd.lock` (held while swarmd runs), `swarmd.sock` (control
//! socket, by default), `certificates/` (root CA, node certificate and key, known managers),
//! `raft/` (raft log and snapshots, `raft-id`), `agent/` (the agent's task database),
//! `plugins/cache/` (compiled components by digest), `tasks/<task-id>/` (task logs and pids).

mod certs;
mod config;
mod state_dir;

use std::sync::Arc;
use std::time::Duration;

use swarm_agent::{Agent, AgentConfig, ChannelMaker};
use swarm_ca::NodeIdentity;
use swarm_manager::{Manager, ManagerConfig, SchedulerFactory, StartMode};
use swarm_plugin_host::{HostConfig, PluginHost};
use swarm_types::{EngineDescription, NodeDescription, Platform, Resources};
use swarm_types::{JoinToken, NodeRole};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use certs::Certificates;
pub use config::{ExecutorChoice, NodeConfig};
pub use state_dir::StateDir;

/// Guest time one plugin call may take.
const PLUGIN_CALL_DEADLINE: Duration = Duration::from_secs(10);
/// Linear memory one plugin instance may use.
const PLUGIN_MEMORY_LIMIT: usize = 512 << 20;
/// Pause between certificate renewals while a role change waits for the managers.
const ROLE_RETRY: Duration = Duration::from_millis(500);
/// Connect timeout of the agent's channels to managers.
const MANAGER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
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

/// Run the node until `cancel` fires: a manager (first of a new cluster, or joined with a
/// manager token) with an agent in the same process, or a worker (joined with a worker token)
/// running only the agent.
pub async fn run(config: NodeConfig, cancel: CancellationToken) -> Result<(), NodeError> {
    let mut config = config.validate()?;
    let state = StateDir::open(&config.state_dir)?;
    let node_id = state.node_id()?;
    let certs = Certificates::new(state.path());
    let (mut identity, mut start) = obtain_identity(&config, &certs, &node_id).await?;
    // A promotion or demotion restarts the node's parts in the new role; tasks keep running
    // and the new agent adopts them.
    loop {
        match run_role(&config, &state, &certs, &node_id, identity, start, &cancel).await? {
            RoleEnd::Stopped => break,
            RoleEnd::Changed(new_identity, new_start) => {
                identity = *new_identity;
                start = new_start;
                // The recovery was for this start only.
                config.force_new_cluster = false;
            }
        }
    }
    drop(state);
    Ok(())
}

/// How one run in a role ended.
enum RoleEnd {
    Stopped,
    /// The cluster changed this node's role: a new certificate, and how to start again.
    Changed(Box<NodeIdentity>, StartMode),
}

/// Runs the node in the role its certificate names until it stops or the role changes.
async fn run_role(
    config: &NodeConfig,
    state: &StateDir,
    certs: &Certificates,
    node_id: &str,
    identity: NodeIdentity,
    start: StartMode,
    cancel: &CancellationToken,
) -> Result<RoleEnd, NodeError> {
    let node_id = node_id.to_string();
    let role = identity.info().role;
    info!(%node_id, ?role, cluster_id = %identity.info().cluster_id, state_dir = %config.state_dir.display(), "starting node");
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
    let scheduler_host = host.clone();
    let scheduler: SchedulerFactory = Arc::new(move || {
        scheduler_host
            .load_scheduler("default", swarm_plugin_artifacts::SCHEDULER)
            .map(|s| Box::new(s) as Box<dyn swarm_manager::Placer>)
            .map_err(|e| format!("loading the embedded scheduler: {e}"))
    });
    // Load it once now, so that a broken scheduler stops the node at start.
    scheduler().map_err(NodeError::Config)?;
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

    let client_config = identity
        .client_config()
        .map_err(|e| NodeError::Config(format!("TLS client configuration: {e}")))?;
    let channels: ChannelMaker = Arc::new(move |addr: &str| {
        swarm_ca::tls_channel(addr, client_config.clone(), MANAGER_CONNECT_TIMEOUT)
            .map_err(|e| e.to_string())
    });

    let mut manager = None;
    let managers = match role {
        NodeRole::Manager => {
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
            manager = Some(
                Manager::start(
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
                        identity: Some(identity.clone()),
                        start,
                        force_new_cluster: config.force_new_cluster,
                        autolock: config.autolock,
                        unlock_key: config.unlock_key.clone(),
                    },
                    scheduler,
                    cancel.child_token(),
                )
                .await?,
            );
            if let Some(key) = manager.as_ref().and_then(|m| m.new_unlock_key()) {
                // Shown once, on stderr only (never logged, never stored): SwarmKit's autolock.
                eprintln!(
                    "The cluster is locked (autolock). Keep this unlock key: every manager needs \
                     it at each start (--unlock-key, SWARMD_UNLOCK_KEY or `swarmctl node \
                     unlock`); `swarmctl cluster unlock-key` shows it again:\n\n    {key}\n"
                );
            }
            // The agent of a manager talks to its own manager, which forwards to the leader.
            vec![advertise]
        }
        NodeRole::Worker => {
            if config.force_new_cluster {
                return Err(NodeError::Config(
                    "--force-new-cluster: this node is a worker; only a manager can recover \
                     the cluster"
                        .into(),
                ));
            }
            let mut managers: Vec<String> = config.join_addr.iter().cloned().collect();
            managers.extend(certs.managers());
            managers.dedup();
            if managers.is_empty() {
                return Err(NodeError::Config(
                    "this worker knows no manager: start it with --join-addr <manager addr>".into(),
                ));
            }
            info!(?managers, "worker node: running the agent only");
            managers
        }
    };
    certs.save_managers(&managers)?;

    let files_dir = state.files_dir(&node_id);
    let agent = Agent::with_plugins(
        AgentConfig {
            node_id,
            managers,
            channels: Some(channels),
            state_dir: state.path().join("agent"),
            files_dir,
            description: describe(&config.hostname, &default_executor),
        },
        executors,
        host,
    )
    .await?;
    let role_cancel = cancel.child_token();
    // Workers remember the managers the dispatcher announces, to reconnect after a restart.
    if role == NodeRole::Worker {
        tokio::spawn(remember_managers(
            agent.status(),
            certs.clone(),
            role_cancel.clone(),
        ));
    }
    let mut role_change = tokio::spawn(watch_role(
        agent.status(),
        identity.clone(),
        config.hostname.clone(),
        role_cancel.clone(),
    ));
    let mut agent_task = tokio::spawn(agent.run(role_cancel.clone()));

    // Run until asked to stop, until the role changes, or until the agent ends on its own (an
    // error): a node whose agent is gone must not keep pretending to be a healthy member.
    let mut changed = None;
    let agent_result = tokio::select! {
        _ = cancel.cancelled() => {
            info!("stopping node");
            agent_task.await
        }
        renewed = &mut role_change => {
            changed = renewed.ok().flatten();
            role_cancel.cancel();
            agent_task.await
        }
        result = &mut agent_task => {
            tracing::error!("the agent stopped unexpectedly; stopping the node");
            result
        }
    };
    role_cancel.cancel();
    if let Some(manager) = manager {
        manager.shutdown().await;
    }
    match agent_result {
        Ok(r) => r.map_err(NodeError::from)?,
        Err(e) => return Err(NodeError::Config(format!("agent task failed: {e}"))),
    }
    let Some(issued) = changed else {
        return Ok(RoleEnd::Stopped);
    };
    let new_identity = NodeIdentity::new(
        &issued.certificate_pem,
        identity.key_pem(),
        identity.root().cert_pem(),
    )
    .map_err(|e| NodeError::Config(format!("the renewed certificate: {e}")))?;
    certs.save(
        &issued.certificate_pem,
        identity.key_pem(),
        identity.root().cert_pem(),
    )?;
    let start = match (role, issued.role) {
        // A renewal in the same role: start again with the new certificate.
        (old, new) if old == new => {
            info!(not_after = %humantime::format_rfc3339_seconds(new_identity.info().not_after), "certificate renewed");
            StartMode::Restart
        }
        (_, NodeRole::Worker) => {
            // Out of raft for good: a later promotion joins afresh.
            let raft_dir = state.path().join("raft");
            if raft_dir.exists() {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                let aside = state.path().join(format!("raft.demoted-{stamp}"));
                std::fs::rename(&raft_dir, &aside).map_err(|e| NodeError::StateDir {
                    path: raft_dir.display().to_string(),
                    message: format!("moving the raft state aside after demotion: {e}"),
                })?;
            }
            info!("demoted: this node now runs as a worker");
            StartMode::Restart
        }
        (_, NodeRole::Manager) => {
            let addr = certs.managers().into_iter().next().ok_or_else(|| {
                NodeError::Config("promoted, but this node knows no manager to join".into())
            })?;
            info!(%addr, "promoted: this node now joins the managers");
            StartMode::Join { addr }
        }
    };
    Ok(RoleEnd::Changed(Box::new(new_identity), start))
}

/// Waits until the cluster wants this node in another role than its certificate says, or until
/// the certificate is due for renewal, then renews it (the CA issues the desired role) and
/// returns it. Retries while the managers are not ready (e.g. a demotion still in progress).
async fn watch_role(
    mut status: tokio::sync::watch::Receiver<swarm_agent::AgentStatus>,
    identity: NodeIdentity,
    hostname: String,
    cancel: CancellationToken,
) -> Option<swarm_manager::join::Issued> {
    let current = identity.info().role;
    // Renew before expiry at a random 50-80% of the lifetime (SwarmKit), in the same role.
    let renew_in = identity
        .renew_at()
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    let renew_at = tokio::time::Instant::now() + renew_in;
    loop {
        let (desired, managers) = {
            let status = status.borrow_and_update();
            let managers: Vec<String> = status
                .manager_addr
                .iter()
                .cloned()
                .chain(status.managers.iter().map(|m| m.addr.clone()))
                .collect();
            (status.desired_role, managers)
        };
        let due = tokio::time::Instant::now() >= renew_at;
        if let Some(desired) = desired.filter(|d| *d != current).or(due.then_some(current)) {
            if desired == current {
                tracing::debug!("renewing the node certificate before it expires");
            } else {
                info!(
                    ?current,
                    ?desired,
                    "the cluster changed this node's role; renewing its certificate"
                );
            }
            for addr in managers {
                match swarm_manager::join::renew_certificate(&addr, &identity, &hostname).await {
                    Ok(issued) if issued.role == desired => return Some(issued),
                    Ok(issued) => {
                        info!(role = ?issued.role, "the role changed back; keeping the current one")
                    }
                    Err(e) => tracing::debug!(%addr, error = %e, "renewing the certificate"),
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return None,
                () = tokio::time::sleep(ROLE_RETRY) => {}
            }
            continue;
        }
        tokio::select! {
            () = cancel.cancelled() => return None,
            changed = status.changed() => if changed.is_err() { return None },
            () = tokio::time::sleep_until(renew_at) => {}
        }
    }
}

/// This node's certificate and how its manager (if it is one) enters the raft group: the saved
/// certificate; or a new one from the managers at `--join-addr` for `--join-token`; or a new
/// cluster's CA when the node neither has one nor joins.
async fn obtain_identity(
    config: &NodeConfig,
    certs: &Certificates,
    node_id: &str,
) -> Result<(NodeIdentity, StartMode), NodeError> {
    let join = match (&config.join_addr, &config.join_token) {
        (Some(addr), Some(token)) => Some((addr.clone(), token.clone())),
        _ => None,
    };
    if let Some(identity) = certs.load()? {
        let start = match &config.join_addr {
            Some(addr) => StartMode::Join { addr: addr.clone() },
            None => StartMode::Restart,
        };
        if !identity.is_expired(std::time::SystemTime::now()) {
            return Ok((identity, start));
        }
        let expired = humantime::format_rfc3339_seconds(identity.info().not_after);
        let Some((addr, token)) = join else {
            return Err(NodeError::Config(format!(
                "this node's certificate expired at {expired} while the node was off. To \
                 rejoin, start swarmd again with --join-addr <a manager> --join-token <the \
                 token of its role, from `swarmctl cluster inspect` on a manager>: it keeps its \
                 node id and its state"
            )));
        };
        info!(%expired, %addr, "the node certificate expired while the node was off; rejoining with the join token");
        let identity = join_cluster(certs, node_id, &config.hostname, &addr, &token).await?;
        return Ok((identity, start));
    }
    match join {
        Some((addr, token)) => {
            let identity = join_cluster(certs, node_id, &config.hostname, &addr, &token).await?;
            Ok((identity, StartMode::Join { addr }))
        }
        None if config.join_addr.is_some() => Err(NodeError::Config(
            "--join-addr: a node that has not joined yet needs --join-token too".into(),
        )),
        None => {
            let cluster = certs::new_cluster(node_id)?;
            certs.save(
                cluster.identity.cert_pem(),
                cluster.identity.key_pem(),
                &cluster.root_ca.cert_pem,
            )?;
            info!(cluster_id = %cluster.cluster_id, "created a new cluster and its root CA");
            Ok((
                cluster.identity,
                StartMode::Bootstrap {
                    cluster_id: cluster.cluster_id,
                    root_ca: cluster.root_ca,
                },
            ))
        }
    }
}

/// Pins the root CA with `token`, gets a certificate for a new key, and saves both.
async fn join_cluster(
    certs: &Certificates,
    node_id: &str,
    hostname: &str,
    addr: &str,
    token: &str,
) -> Result<NodeIdentity, NodeError> {
    let parsed: JoinToken = token
        .parse()
        .map_err(|e| NodeError::Config(format!("--join-token: {e}")))?;
    let root = swarm_manager::join::fetch_root_ca(addr, &parsed).await?;
    let key_pem = swarm_ca::NodeKey::generate()
        .map_err(|e| NodeError::Config(format!("generating the node key: {e}")))?;
    let issued =
        swarm_manager::join::request_certificate(addr, &root, token, node_id, hostname, &key_pem)
            .await?;
    let identity = NodeIdentity::new(&issued.certificate_pem, &key_pem, root.cert_pem())
        .map_err(|e| NodeError::Config(format!("the certificate the managers issued: {e}")))?;
    certs.save(&issued.certificate_pem, &key_pem, root.cert_pem())?;
    info!(role = ?issued.role, cluster_id = %issued.cluster_id, %addr, "joined the cluster");
    Ok(identity)
}

/// Saves the managers the dispatcher announces whenever they change.
async fn remember_managers(
    mut status: tokio::sync::watch::Receiver<swarm_agent::AgentStatus>,
    certs: Certificates,
    cancel: CancellationToken,
) {
    let mut saved: Vec<String> = Vec::new();
    loop {
        let announced: Vec<String> = status
            .borrow_and_update()
            .managers
            .iter()
            .map(|m| m.addr.clone())
            .collect();
        if !announced.is_empty() && announced != saved {
            if let Err(e) = certs.save_managers(&announced) {
                tracing::warn!(error = %e, "saving the known managers");
            }
            saved = announced;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = status.changed() => if changed.is_err() { return },
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(state_dir: &std::path::Path) -> NodeConfig {
        NodeConfig {
            state_dir: state_dir.to_path_buf(),
            hostname: "node-1".into(),
            control_socket: state_dir.join("swarmd.sock"),
            listen_remote_api: "127.0.0.1:0".parse().expect("addr"),
            advertise_remote_api: None,
            raft_tick: Duration::from_millis(100),
            heartbeat_tick: 1,
            election_tick: 10,
            executor: ExecutorChoice::Embedded("default".into()),
            join_addr: None,
            join_token: None,
            engine_addr: DEFAULT_ENGINE_ADDR.into(),
            force_new_cluster: false,
            autolock: false,
            unlock_key: None,
        }
    }

    #[tokio::test]
    async fn an_expired_certificate_names_the_way_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = Certificates::new(dir.path());
        let cluster = certs::new_cluster("node1").expect("cluster");
        let root =
            swarm_ca::RootCa::from_pem(&cluster.root_ca.cert_pem, Some(&cluster.root_ca.key_pem))
                .expect("root");
        let key = swarm_ca::NodeKey::generate().expect("key");
        let csr = swarm_ca::NodeKey::csr(&key, "node1").expect("csr");
        let now = std::time::SystemTime::now();
        let expired = root
            .issue_with_validity_window(
                &csr,
                "node1",
                NodeRole::Worker,
                &cluster.cluster_id,
                now - Duration::from_secs(7200),
                now - Duration::from_secs(60),
            )
            .expect("expired certificate");
        certs.save(&expired, &key, root.cert_pem()).expect("save");

        let error = obtain_identity(&config(dir.path()), &certs, "node1")
            .await
            .expect_err("an expired certificate must not start the node silently")
            .to_string();
        assert!(error.contains("expired"), "{error}");
        assert!(error.contains("--join-token"), "{error}");
        // A valid certificate starts the node as before.
        certs
            .save(
                cluster.identity.cert_pem(),
                cluster.identity.key_pem(),
                root.cert_pem(),
            )
            .expect("save");
        let (identity, start) = obtain_identity(&config(dir.path()), &certs, "node1")
            .await
            .expect("valid certificate");
        assert_eq!(identity.info().role, NodeRole::Manager);
        assert!(matches!(start, StartMode::Restart));
    }
}
