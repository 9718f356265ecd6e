//! The manager: the control API, the orchestrators, the scheduler driver, the dispatcher and the
//! task reaper, over the in-memory store that raft replicates.
//!
//! *Architecture invariant*: every state change is a store batch committed through a
//! [`commit::Committer`] (raft in `swarmd`); nothing mutates the store directly. The manager
//! never depends on the agent: agents reach it only over gRPC (the dispatcher service).
//!
//! *API boundary*: the gRPC services here (`Control` on the local socket, `Dispatcher` on the
//! remote listener) convert to and from `swarm-proto` messages at their edge.

pub mod ca;
pub mod commit;
mod control;
mod dek;
mod dispatcher;
mod error;
pub mod join;
pub mod leader;
mod orchestrator;
pub mod plugins;
pub mod scheduler;
mod secrets;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use swarm_proto::pb;
use swarm_raft::{ChannelMaker, RaftConfig, RaftNode};
use swarm_store::{MemoryStore, StoreRead as _};
use swarm_types::{Cluster, ClusterSpec, Meta, RootCaState, Timestamp, new_id};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use ca::{CaService, MembershipService, NodeCaService};
pub use commit::{Committer, DirectCommitter, RaftCommitter, StoreApp};
pub use control::ControlService;
pub use dispatcher::{Dispatcher, DispatcherConfig, DispatcherService};
pub use error::ManagerError;
pub use leader::{Caller, LeaderRouted, LeaderTerm, Leadership};
pub use orchestrator::{Orchestrator, replica_task};
pub use scheduler::{Placer, SchedulerDriver};

/// How long a starting manager waits for its raft group to have a leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect timeout of the channels to other managers.
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// File in the raft directory holding this manager's raft id.
const RAFT_ID_FILE: &str = "raft-id";

/// Largest control request the manager decodes: well above a plugin's limit
/// ([`swarm_types::MAX_PLUGIN_BYTES`]), so an oversize `InstallPlugin` reaches the handler and
/// is refused with its size and the limit named, rather than by the transport.
pub const MAX_CONTROL_MESSAGE_BYTES: usize = 64 << 20;

/// Builds the scheduler for each term this manager leads (the embedded default).
pub type SchedulerFactory =
    Arc<dyn Fn() -> Result<Box<dyn Placer>, String> + Send + Sync + 'static>;

/// How a manager with no raft state yet enters a cluster. Ignored once raft state exists.
#[derive(Clone, Debug)]
pub enum StartMode {
    /// The first manager of a new cluster, with the cluster's id and CA (empty in plaintext
    /// tests).
    Bootstrap {
        cluster_id: String,
        root_ca: RootCaState,
    },
    /// Join the raft group through the manager at `addr` (this node's certificate, already
    /// issued, says it is a manager).
    Join { addr: String },
    /// A manager that has been started before: its raft state must be there.
    Restart,
}

/// How a manager runs. Built and validated by the node.
pub struct ManagerConfig {
    /// This node's id (its node object gets the manager role).
    pub node_id: String,
    /// Directory of the manager's raft files.
    pub raft_dir: PathBuf,
    /// Path of the local control socket (created with mode 0600).
    pub control_socket: PathBuf,
    /// The bound remote listener (raft, CA, dispatcher, control for other managers).
    pub remote_listener: TcpListener,
    /// The address agents and other managers use to reach this manager.
    pub advertise_addr: String,
    pub raft_tick: Duration,
    pub heartbeat_tick: u64,
    pub election_tick: u64,
    /// Validates plugins before they are installed and loads the installed scheduler the
    /// cluster names.
    pub plugin_host: swarm_plugin_host::PluginHost,
    /// This node's certificate: mutual TLS on the remote listener and to other managers.
    /// `None` serves plaintext and trusts every caller (tests of one manager only).
    pub identity: Option<swarm_ca::NodeIdentity>,
    pub start: StartMode,
    /// Quorum-loss recovery (`--force-new-cluster`): keep this manager's raft state and make it
    /// the only member of the raft group, at `advertise_addr`. Needs existing raft state.
    pub force_new_cluster: bool,
    /// Turn autolock on in a new cluster (`StartMode::Bootstrap`): the cluster gets an unlock
    /// key, shown once by [`Manager::new_unlock_key`], that every manager's raft data key is
    /// wrapped with. Ignored (with a warning) otherwise: `swarmctl cluster update --autolock`.
    pub autolock: bool,
    /// The unlock key (`SWMKEY-1-...`) of a locked manager.
    pub unlock_key: Option<String>,
}

/// A running manager.
pub struct Manager {
    store: Arc<MemoryStore>,
    raft: RaftNode,
    leadership: Leadership,
    tasks: JoinSet<()>,
    cancel: CancellationToken,
    /// The unlock key of a cluster created locked at this start (to show once).
    new_unlock_key: Option<String>,
}

impl Manager {
    /// Start raft (recovering any committed state), join or bootstrap the raft group, start the
    /// servers and the term loop (the leader's loops run while this manager leads). Returns once
    /// the control socket accepts calls and the group has a leader.
    pub async fn start(
        config: ManagerConfig,
        scheduler: SchedulerFactory,
        cancel: CancellationToken,
    ) -> Result<Self, ManagerError> {
        let ManagerConfig {
            node_id,
            raft_dir,
            control_socket,
            remote_listener,
            advertise_addr,
            raft_tick,
            heartbeat_tick,
            election_tick,
            plugin_host,
            identity,
            start,
            force_new_cluster,
            autolock,
            unlock_key,
        } = config;
        let store = Arc::new(MemoryStore::new());
        let app = Arc::new(StoreApp::new(store.clone()));
        let raft_id = raft_id(&raft_dir, &start)?;
        let mut raft_config = RaftConfig::new(raft_id, &raft_dir);
        let channels: ChannelMaker = match &identity {
            Some(identity) => {
                let client = identity
                    .client_config()
                    .map_err(|e| ManagerError::Unavailable(format!("TLS client: {e}")))?;
                // AppendEntries on append lanes: the same certificate, another ALPN protocol.
                let lanes =
                    swarm_ca::client_config_with_alpn(&client, &[swarm_raft::APPEND_STREAM_ALPN]);
                raft_config.append_lanes = Some(Arc::new(move |addr: &str| {
                    let (lanes, addr) = (lanes.clone(), addr.to_owned());
                    Box::pin(async move {
                        let stream = swarm_ca::tls_connect(&addr, lanes, PEER_CONNECT_TIMEOUT)
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(Box::new(stream) as swarm_raft::BoxedStream)
                    })
                }));
                Arc::new(move |addr: &str| {
                    swarm_ca::tls_channel(addr, client.clone(), PEER_CONNECT_TIMEOUT)
                        .map_err(|e| e.to_string())
                })
            }
            None => swarm_raft::plain_channels(),
        };
        raft_config.tick = raft_tick;
        raft_config.heartbeat_tick = heartbeat_tick;
        raft_config.election_tick = election_tick;
        raft_config.channels = channels.clone();
        let mut unlock_key = unlock_key;
        if unlock_key.is_none() && dek::is_locked(&raft_dir) {
            unlock_key = dek::wait_for_unlock(&raft_dir, &control_socket, &cancel).await?;
            if unlock_key.is_none() {
                return Err(ManagerError::Unavailable(
                    "stopped while locked (autolock)".into(),
                ));
            }
        }
        let new_unlock_key = match &start {
            StartMode::Bootstrap { .. } if autolock && !dek::exists(&raft_dir) => {
                Some(dek::new_unlock_key())
            }
            _ if autolock => {
                warn!(
                    "--autolock applies when a cluster is created; turn it on for this cluster \
                     with `swarmctl cluster update --autolock true`"
                );
                None
            }
            _ => None,
        };
        let dek = dek::load_or_create(&raft_dir, new_unlock_key.as_deref(), unlock_key.as_deref())?;
        raft_config.cipher = Some(dek.key);
        let wrapped_with = if dek::is_locked(&raft_dir) {
            new_unlock_key.clone().or(unlock_key.clone())
        } else {
            None
        };
        let unlock_service = dek::UnlockService;
        if force_new_cluster {
            if !raft_dir.join(swarm_raft::LOG_FILE_NAME).exists() {
                return Err(ManagerError::FailedPrecondition(format!(
                    "--force-new-cluster: there is no raft state in {} to recover",
                    raft_dir.display()
                )));
            }
            warn!(raft_id, %advertise_addr, "forcing a new cluster: this manager keeps its state and becomes the only manager; the others must join again");
            raft_config.force_new_cluster = Some(advertise_addr.clone());
        }
        let raft = RaftNode::start(raft_config, app).await?;
        let initialized = raft.is_initialized().await?;
        let committer: Arc<dyn Committer> = Arc::new(RaftCommitter::new(raft.clone()));
        let leadership = Leadership::new(raft.clone(), channels.clone());

        let mut tasks = JoinSet::new();
        let services = Services {
            store: store.clone(),
            committer: committer.clone(),
            raft: raft.clone(),
            leadership: leadership.clone(),
            plugin_host: plugin_host.clone(),
        };
        services.serve(
            &control_socket,
            unlock_service,
            remote_listener,
            identity.as_ref(),
            &mut tasks,
            &cancel,
        )?;

        let bootstrap_ca = match (&start, initialized) {
            // State written before managers had a CA gets the one this manager brings.
            (
                StartMode::Bootstrap {
                    cluster_id,
                    root_ca,
                },
                true,
            ) => {
                // A first start that stopped before the cluster object was written: it gets
                // the key this manager's DEK is wrapped with, if any.
                let mut root_ca = root_ca.clone();
                root_ca.unlock_key = wrapped_with.clone().unwrap_or_default();
                Some((cluster_id.clone(), root_ca))
            }
            (_, true) => None,
            (
                StartMode::Bootstrap {
                    cluster_id,
                    root_ca,
                },
                false,
            ) => {
                raft.bootstrap_single(advertise_addr.clone()).await?;
                let mut root_ca = root_ca.clone();
                root_ca.unlock_key = wrapped_with.clone().unwrap_or_default();
                Some((cluster_id.clone(), root_ca))
            }
            (StartMode::Restart, false) => {
                return Err(ManagerError::FailedPrecondition(format!(
                    "this manager has a certificate but no raft state in {}; start it with \
                     --join-addr <a manager> to join the raft group",
                    raft_dir.display()
                )));
            }
            (StartMode::Join { addr }, false) => {
                let identity = identity.as_ref().ok_or_else(|| {
                    ManagerError::FailedPrecondition(
                        "joining a cluster needs a manager certificate".into(),
                    )
                })?;
                info!(%addr, raft_id, "joining the raft group");
                join::join_raft(identity, addr, raft_id, &advertise_addr).await?;
                None
            }
        };
        let leader = raft.wait_for_leader(LEADER_TIMEOUT).await?;
        info!(raft_id, leader, "raft group has a leader");
        if initialized {
            tasks.spawn(join::refresh_own_address(
                identity.clone(),
                raft.clone(),
                advertise_addr.clone(),
                cancel.clone(),
            ));
        }

        tasks.spawn(dek::keep_wrapped(
            store.clone(),
            raft_dir.clone(),
            dek.key,
            wrapped_with,
            cancel.clone(),
        ));
        let term = TermContext {
            store: store.clone(),
            committer: committer.clone(),
            raft: raft.clone(),
            leadership: leadership.clone(),
            scheduler,
            plugin_host,
            dispatcher: DispatcherConfig {
                manager_node_id: node_id,
                advertise_addr: advertise_addr.clone(),
                raft_id,
            },
            bootstrap_ca,
        };
        tasks.spawn(term.run(cancel.clone()));
        info!(socket = %control_socket.display(), remote = %advertise_addr, raft_id, "manager ready");
        Ok(Self {
            store,
            raft,
            leadership,
            tasks,
            cancel,
            new_unlock_key,
        })
    }

    /// The unlock key (`SWMKEY-1-...`) when this start created a cluster with autolock: shown
    /// once (`swarmctl cluster unlock-key` shows it again); every manager's start needs it.
    pub fn new_unlock_key(&self) -> Option<&str> {
        self.new_unlock_key.as_deref()
    }

    /// The manager's store (read-only use: every change goes through raft).
    pub fn store(&self) -> &Arc<MemoryStore> {
        &self.store
    }

    /// This manager's raft node.
    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }

    /// Whether this manager leads and runs the leader's loops.
    pub fn leads(&self) -> bool {
        self.leadership.term().is_some()
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

/// This manager's raft id: the one it started with before, else 1 for the first manager of a
/// cluster (and for state written before raft ids were stored), else a random one.
fn raft_id(raft_dir: &Path, start: &StartMode) -> Result<u64, ManagerError> {
    let path = raft_dir.join(RAFT_ID_FILE);
    let storage = |e: std::io::Error| {
        ManagerError::Unavailable(format!("raft id file {}: {e}", path.display()))
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|id| *id != 0)
                .ok_or_else(|| {
                    ManagerError::Unavailable(format!(
                        "{} holds {:?}, not a raft id",
                        path.display(),
                        text.trim()
                    ))
                });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(storage(e)),
    }
    let existing_state = raft_dir.join(swarm_raft::LOG_FILE_NAME).exists();
    let id = match start {
        _ if existing_state => 1,
        StartMode::Bootstrap { .. } | StartMode::Restart => 1,
        StartMode::Join { .. } => loop {
            let id: u64 = rand::random();
            if id > 1 {
                break id;
            }
        },
    };
    std::fs::create_dir_all(raft_dir).map_err(storage)?;
    let temp = raft_dir.join(format!("{RAFT_ID_FILE}.tmp"));
    std::fs::write(&temp, format!("{id}\n")).map_err(storage)?;
    std::fs::File::open(&temp)
        .and_then(|f| f.sync_all())
        .map_err(storage)?;
    std::fs::rename(&temp, &path).map_err(storage)?;
    Ok(id)
}

/// The gRPC services a manager serves.
struct Services {
    store: Arc<MemoryStore>,
    committer: Arc<dyn Committer>,
    raft: RaftNode,
    leadership: Leadership,
    plugin_host: swarm_plugin_host::PluginHost,
}

impl Services {
    fn control(&self) -> pb::control_server::ControlServer<ControlService> {
        let control = ControlService::new_routed(
            self.store.clone(),
            self.committer.clone(),
            self.leadership.clone(),
            self.raft.clone(),
        )
        .with_plugin_host(self.plugin_host.clone());
        pb::control_server::ControlServer::new(control)
            .max_decoding_message_size(MAX_CONTROL_MESSAGE_BYTES)
    }

    /// Starts the control socket server and the remote listener's server.
    fn serve(
        &self,
        control_socket: &Path,
        unlock: dek::UnlockService,
        listener: TcpListener,
        identity: Option<&swarm_ca::NodeIdentity>,
        tasks: &mut JoinSet<()>,
        cancel: &CancellationToken,
    ) -> Result<(), ManagerError> {
        let (store, committer, raft, leadership) =
            (&self.store, &self.committer, &self.raft, &self.leadership);
        let socket = bind_control_socket(control_socket)?;
        let shutdown = cancel.clone();
        let local_control = LeaderRouted::new(self.control(), leadership.clone());
        tasks.spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(local_control)
                // Answered by this manager itself: its own raft key's unlock key.
                .add_service(pb::unlock_server::UnlockServer::new(unlock))
                .serve_with_incoming_shutdown(UnixListenerStream::new(socket), shutdown.cancelled())
                .await;
            if let Err(e) = result {
                warn!(error = %e, "control API server stopped");
            }
        });

        // The remote listener: every manager serves raft and the root CA itself; the rest is
        // answered by the leader (forwarded when this manager does not lead).
        let router = tonic::transport::Server::builder()
            .add_service(tonic::service::interceptor::InterceptedService::new(
                raft.grpc_service(),
                |request: tonic::Request<()>| {
                    Caller::of(&request).require(&[swarm_types::NodeRole::Manager], "raft")?;
                    Ok(request)
                },
            ))
            .add_service(pb::ca_server::CaServer::new(CaService::new(store.clone())))
            .add_service(LeaderRouted::new(
                pb::node_ca_server::NodeCaServer::new(NodeCaService::new(
                    store.clone(),
                    committer.clone(),
                )),
                leadership.clone(),
            ))
            .add_service(LeaderRouted::new(
                pb::raft_membership_server::RaftMembershipServer::new(MembershipService::new(
                    store.clone(),
                    committer.clone(),
                    raft.clone(),
                )),
                leadership.clone(),
            ))
            .add_service(LeaderRouted::new(
                pb::dispatcher_server::DispatcherServer::new(DispatcherService::routed(
                    leadership.clone(),
                )),
                leadership.clone(),
            ))
            .add_service(
                LeaderRouted::new(self.control(), leadership.clone())
                    .admit(&[swarm_types::NodeRole::Manager], "the control API"),
            );
        let shutdown = cancel.clone();
        match identity {
            Some(identity) => {
                let tls = identity
                    .server_config()
                    .map_err(|e| ManagerError::Unavailable(format!("TLS server: {e}")))?;
                // gRPC and raft's append lanes share the port, told apart by ALPN.
                let tls = swarm_ca::server_config_with_alpn(
                    &tls,
                    &[b"h2", swarm_raft::APPEND_STREAM_ALPN],
                );
                let lanes = raft.append_lane_service();
                let lane_shutdown = cancel.clone();
                tasks.spawn(async move {
                    let incoming =
                        swarm_ca::tls_incoming(listener, tls).filter_map(move |conn| match conn {
                            Ok(conn)
                                if conn.alpn_protocol() == Some(swarm_raft::APPEND_STREAM_ALPN) =>
                            {
                                serve_append_lane(conn, lanes.clone(), lane_shutdown.clone());
                                None
                            }
                            other => Some(other),
                        });
                    if let Err(e) = router
                        .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
                        .await
                    {
                        warn!(error = %e, "remote API server stopped");
                    }
                });
            }
            None => {
                tasks.spawn(async move {
                    if let Err(e) = router
                        .serve_with_incoming_shutdown(
                            TcpListenerStream::new(listener),
                            shutdown.cancelled(),
                        )
                        .await
                    {
                        warn!(error = %e, "remote API server stopped");
                    }
                });
            }
        }
        Ok(())
    }
}

/// Serves a raft append lane from another manager (refused, and closed, for any other peer),
/// until it closes or the manager stops.
fn serve_append_lane(
    conn: swarm_ca::TlsConnection,
    service: swarm_raft::RaftService,
    shutdown: CancellationToken,
) {
    if let Err(status) =
        swarm_ca::require_peer_role(conn.peer(), &[swarm_types::NodeRole::Manager], "raft")
    {
        debug!(peer = ?conn.peer().remote_addr, reason = status.message(), "append lane refused");
        return;
    }
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = service.serve_append_lane(conn.into_stream()) => {}
        }
    });
}

/// What a leader term needs.
struct TermContext {
    store: Arc<MemoryStore>,
    committer: Arc<dyn Committer>,
    raft: RaftNode,
    leadership: Leadership,
    scheduler: SchedulerFactory,
    plugin_host: swarm_plugin_host::PluginHost,
    dispatcher: DispatcherConfig,
    /// The new cluster's id and CA, written with the cluster object by the first term.
    bootstrap_ca: Option<(String, RootCaState)>,
}

impl TermContext {
    /// Runs a term each time this manager becomes leader, until `cancel`.
    async fn run(self, cancel: CancellationToken) {
        loop {
            // Wait to lead.
            tokio::select! {
                () = cancel.cancelled() => return,
                led = self.raft.wait_leading(true) => if led.is_err() { return },
            }
            // Apply everything the log held at election before acting on the store.
            if let Err(e) = self.raft.wait_for_leader(LEADER_TIMEOUT).await {
                warn!(error = %e, "new leader could not catch up");
                continue;
            }
            if !self.raft.is_leader() {
                continue;
            }
            if let Err(e) = ensure_cluster(
                &self.store,
                self.committer.as_ref(),
                self.bootstrap_ca.clone(),
            )
            .await
            {
                warn!(error = %e, "leader could not write the cluster object; waiting for the next term");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = self.raft.wait_leading(false) => {}
                }
                continue;
            }
            let term_cancel = cancel.child_token();
            let mut term_tasks = JoinSet::new();
            let started = self.start_term(&term_cancel, &mut term_tasks);
            match started {
                Ok(term) => {
                    self.leadership.set_term(Some(Arc::new(term)));
                    info!(term = self.raft.metrics().term, "this manager leads");
                }
                Err(e) => warn!(error = %e, "starting the leader's loops"),
            }
            tokio::select! {
                () = cancel.cancelled() => {}
                _ = self.raft.wait_leading(false) => {}
            }
            self.leadership.set_term(None);
            term_cancel.cancel();
            while term_tasks.join_next().await.is_some() {}
            if cancel.is_cancelled() {
                return;
            }
            info!("this manager stepped down");
        }
    }

    fn start_term(
        &self,
        cancel: &CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> Result<LeaderTerm, ManagerError> {
        let placer = (self.scheduler)().map_err(ManagerError::Internal)?;
        let dispatcher = Arc::new(Dispatcher::new(
            self.store.clone(),
            self.committer.clone(),
            self.dispatcher.clone(),
        ));
        tasks.spawn(dispatcher.clone().run_liveness(cancel.clone()));
        tasks.spawn(
            Orchestrator::new(self.store.clone(), self.committer.clone()).run(cancel.clone()),
        );
        let driver = SchedulerDriver::new(self.store.clone(), self.committer.clone(), placer)
            .with_plugin_host(self.plugin_host.clone());
        tasks.spawn(driver.run(cancel.clone()));
        tasks.spawn(reconcile_demotions(
            self.store.clone(),
            self.committer.clone(),
            self.raft.clone(),
            cancel.clone(),
        ));
        Ok(LeaderTerm { dispatcher })
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

/// How often the leader looks for demoted managers still in raft.
const ROLE_RECONCILE_INTERVAL: Duration = Duration::from_millis(500);

/// Removes demoted managers from raft, then records them as workers (their nodes notice the
/// desired role, renew their certificates as workers and stop their managers).
async fn reconcile_demotions(
    store: Arc<MemoryStore>,
    committer: Arc<dyn Committer>,
    raft: RaftNode,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(ROLE_RECONCILE_INTERVAL) => {}
        }
        let demoted: Vec<(String, u64)> = store.view(|tx| {
            tx.nodes()
                .filter(|n| n.spec.desired_role == swarm_types::NodeRole::Worker)
                .filter_map(|n| n.manager_status.as_ref().map(|m| (n.id.clone(), m.raft_id)))
                .collect()
        });
        for (node_id, raft_id) in demoted {
            if raft.metrics().members.iter().any(|m| m.id == raft_id) {
                info!(%node_id, raft_id, "removing a demoted manager from raft");
                if let Err(e) = raft.remove(raft_id).await {
                    warn!(%node_id, error = %e, "removing a demoted manager from raft");
                    continue;
                }
            }
            let result = commit::commit_with(&store, committer.as_ref(), |tx| {
                if let Some(current) = tx.node(&node_id) {
                    let mut node = (**current).clone();
                    node.role = swarm_types::NodeRole::Worker;
                    node.manager_status = None;
                    node.meta.updated_at = Timestamp::now();
                    tx.update(node)?;
                }
                Ok(())
            })
            .await;
            match result {
                Ok(_) => info!(%node_id, "manager demoted to worker"),
                Err(e) => warn!(%node_id, error = %e, "recording a demotion"),
            }
        }
    }
}

/// Create the cluster object with SwarmKit's defaults on first start, with the new cluster's
/// id and CA; give a cluster written before managers had a CA the one this manager brings.
async fn ensure_cluster(
    store: &MemoryStore,
    committer: &dyn Committer,
    bootstrap: Option<(String, RootCaState)>,
) -> Result<(), ManagerError> {
    let existing = store.view(|tx| tx.cluster().map(|c| (**c).clone()));
    match (existing, bootstrap) {
        (Some(cluster), Some((_, root_ca)))
            if cluster.root_ca.cert_pem.is_empty() && !root_ca.cert_pem.is_empty() =>
        {
            let unlock_key = cluster.root_ca.unlock_key.clone();
            let mut updated = cluster;
            updated.root_ca = RootCaState {
                unlock_key,
                ..root_ca
            };
            updated.meta.updated_at = Timestamp::now();
            commit::commit_with(store, committer, |tx| Ok(tx.update(updated)?)).await?;
            Ok(())
        }
        (Some(_), _) => Ok(()),
        (None, bootstrap) => {
            let (id, root_ca) = bootstrap.unwrap_or_else(|| (new_id(), RootCaState::default()));
            let now = Timestamp::now();
            let cluster = Cluster {
                id,
                meta: Meta {
                    version: 0,
                    created_at: now,
                    updated_at: now,
                },
                spec: ClusterSpec {
                    autolock: !root_ca.unlock_key.is_empty(),
                    ..ClusterSpec::with_defaults()
                },
                root_ca,
            };
            commit::commit_with(store, committer, |tx| Ok(tx.create(cluster)?)).await?;
            Ok(())
        }
    }
}
