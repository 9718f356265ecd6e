//! The manager: the control API, the orchestrators, the scheduler driver, the dispatcher and the
//! task reaper, over the in-memory store that raft replicates.
//!
//! *Architecture invariant*: every state change is a store batch committed through a
//! [`commit::Committer`] (raft in `swarmd`); nothing mutates the store directly. The manager
//! never depends on the agent: agents reach it only over gRPC (the dispatcher service).
//!
//! *API boundary*: the gRPC services here (`Control` on the local socket, `Dispatcher` on the
//! remote listener) convert to and from `swarm-proto` messages at their edge.

pub mod commit;
mod control;
mod dispatcher;
mod error;
mod orchestrator;
pub mod plugins;
pub mod scheduler;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swarm_proto::pb;
use swarm_raft::{RaftConfig, RaftNode};
use swarm_store::{MemoryStore, StoreRead as _};
use swarm_types::{Cluster, ClusterSpec, Meta, Timestamp, new_id};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use commit::{Committer, DirectCommitter, RaftCommitter, StoreApp};
pub use control::ControlService;
pub use dispatcher::{Dispatcher, DispatcherConfig, DispatcherService};
pub use error::ManagerError;
pub use orchestrator::{Orchestrator, replica_task};
pub use scheduler::{Placer, SchedulerDriver};

/// How long a starting manager waits for its raft node to lead.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest control request the manager decodes: well above a plugin's limit
/// ([`swarm_types::MAX_PLUGIN_BYTES`]), so an oversize `InstallPlugin` reaches the handler and
/// is refused with its size and the limit named, rather than by the transport.
pub const MAX_CONTROL_MESSAGE_BYTES: usize = 64 << 20;

/// How a manager runs. Built and validated by the node.
pub struct ManagerConfig {
    /// This node's id (its node object gets the manager role).
    pub node_id: String,
    /// Directory of the manager's raft files.
    pub raft_dir: PathBuf,
    /// Path of the local control socket (created with mode 0600).
    pub control_socket: PathBuf,
    /// The bound remote listener (dispatcher).
    pub remote_listener: TcpListener,
    /// The address agents use to reach this manager.
    pub advertise_addr: String,
    pub raft_tick: Duration,
    pub heartbeat_tick: u64,
    pub election_tick: u64,
    /// Validates plugins before they are installed and loads the installed scheduler the
    /// cluster names.
    pub plugin_host: swarm_plugin_host::PluginHost,
}

/// A running manager.
pub struct Manager {
    store: Arc<MemoryStore>,
    active_scheduler: tokio::sync::watch::Receiver<String>,
    raft: RaftNode,
    tasks: JoinSet<()>,
    cancel: CancellationToken,
}

impl Manager {
    /// Start raft (recovering any committed state), make sure the cluster object exists, start
    /// the servers and the leader loops. Returns once the control socket accepts calls.
    pub async fn start(
        config: ManagerConfig,
        scheduler: swarm_plugin_host::SchedulerPlugin,
        cancel: CancellationToken,
    ) -> Result<Self, ManagerError> {
        let store = Arc::new(MemoryStore::new());
        let app = Arc::new(StoreApp::new(store.clone()));
        let mut raft_config = RaftConfig::new(1, &config.raft_dir);
        raft_config.tick = config.raft_tick;
        raft_config.heartbeat_tick = config.heartbeat_tick;
        raft_config.election_tick = config.election_tick;
        let raft = RaftNode::start(raft_config, app).await?;
        raft.bootstrap_single(config.advertise_addr.clone()).await?;
        raft.wait_for_leader(LEADER_TIMEOUT).await?;
        let committer: Arc<dyn Committer> = Arc::new(RaftCommitter::new(raft.clone()));
        ensure_cluster(&store, committer.as_ref()).await?;
        info!(
            tasks = store.view(|tx| tx.task_count()),
            services = store.view(|tx| tx.service_count()),
            "manager state recovered"
        );

        let dispatcher = Arc::new(Dispatcher::new(
            store.clone(),
            committer.clone(),
            DispatcherConfig {
                manager_node_id: config.node_id.clone(),
                advertise_addr: config.advertise_addr.clone(),
            },
        ));
        let control = ControlService::new(store.clone(), committer.clone(), dispatcher.clone())
            .with_plugin_host(config.plugin_host.clone());

        let mut tasks = JoinSet::new();
        let socket = bind_control_socket(&config.control_socket)?;
        let shutdown = cancel.clone();
        tasks.spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(
                    pb::control_server::ControlServer::new(control)
                        .max_decoding_message_size(MAX_CONTROL_MESSAGE_BYTES),
                )
                .serve_with_incoming_shutdown(UnixListenerStream::new(socket), shutdown.cancelled())
                .await;
            if let Err(e) = result {
                warn!(error = %e, "control API server stopped");
            }
        });
        let shutdown = cancel.clone();
        let remote = config.remote_listener;
        let dispatcher_service = DispatcherService::new(dispatcher.clone());
        tasks.spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(pb::dispatcher_server::DispatcherServer::new(
                    dispatcher_service,
                ))
                .serve_with_incoming_shutdown(TcpListenerStream::new(remote), shutdown.cancelled())
                .await;
            if let Err(e) = result {
                warn!(error = %e, "remote API server stopped");
            }
        });
        tasks.spawn(dispatcher.run_liveness(cancel.clone()));
        tasks.spawn(Orchestrator::new(store.clone(), committer.clone()).run(cancel.clone()));
        let driver = SchedulerDriver::new(store.clone(), committer.clone(), Box::new(scheduler))
            .with_plugin_host(config.plugin_host.clone());
        let active_scheduler = driver.active_scheduler();
        tasks.spawn(driver.run(cancel.clone()));
        info!(socket = %config.control_socket.display(), remote = %config.advertise_addr, "manager ready");
        Ok(Self {
            store,
            active_scheduler,
            raft,
            tasks,
            cancel,
        })
    }

    /// The manager's store (read-only use: every change goes through raft).
    pub fn store(&self) -> &Arc<MemoryStore> {
        &self.store
    }

    /// The scheduler placing tasks: an installed plugin's name, or empty for the embedded
    /// default. Follows `cluster update --scheduler`.
    pub fn active_scheduler(&self) -> String {
        self.active_scheduler.borrow().clone()
    }

    /// Stop the servers and loops, then raft.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
        if let Err(e) = self.raft.shutdown().await {
            warn!(error = %e, "raft shutdown");
        }
    }
}

fn bind_control_socket(path: &std::path::Path) -> Result<UnixListener, ManagerError> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        // A stale socket from a previous run (the state dir lock guarantees no live owner).
        std::fs::remove_file(path).map_err(|e| {
            ManagerError::Unavailable(format!("removing stale socket {}: {e}", path.display()))
        })?;
    }
    let listener = UnixListener::bind(path).map_err(|e| {
        ManagerError::Unavailable(format!("binding control socket {}: {e}", path.display()))
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
        ManagerError::Unavailable(format!("setting mode 0600 on {}: {e}", path.display()))
    })?;
    Ok(listener)
}

/// Create the cluster object with SwarmKit's defaults on first start.
async fn ensure_cluster(
    store: &MemoryStore,
    committer: &dyn Committer,
) -> Result<(), ManagerError> {
    if store.view(|tx| tx.cluster().is_some()) {
        return Ok(());
    }
    let now = Timestamp::now();
    let cluster = Cluster {
        id: new_id(),
        meta: Meta {
            version: 0,
            created_at: now,
            updated_at: now,
        },
        spec: ClusterSpec::with_defaults(),
    };
    commit::commit_with(store, committer, |tx| Ok(tx.create(cluster)?)).await?;
    Ok(())
}
