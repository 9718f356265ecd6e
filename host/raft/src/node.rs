//! `RaftNode`: starts openraft over the durable store, batches proposals, reports status.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use openraft::BasicNode;
use openraft::ChangeMembers;
use openraft::CommittedLeaderId;
use openraft::ServerState;
use openraft::error::ClientWriteError;
use openraft::error::InitializeError;
use redb::Database;
use tokio::sync::Semaphore;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::RaftConfig;
use crate::RaftError;
use crate::StateMachineApp;
use crate::network::{
    MAX_COMMAND_BYTES, NetworkFactory, PeerContacts, RaftService, SnapshotReception,
};
use crate::store;
use crate::store::DurableWatch;
use crate::store::LogStore;
use crate::store::StateMachineStore;
use crate::store::cipher::Sealer;
use crate::types::CommandBatch;
use crate::types::LogId;
use crate::types::Raft;
use crate::types::Vote;

/// Batches handed to openraft before the previous one is applied.
///
/// openraft 0.9 appends and fsyncs each client write separately, one after the other, so group
/// commit has to happen here: proposals queue while a batch is being committed and all go into
/// the next entry. Measured on 2 cores: with 2 in flight the second batch leaves while the first
/// is being flushed and holds only a few commands (64 clients: ~25k proposals/s, 21 per entry);
/// with 1 it waits and collects everyone (~90k proposals/s, 64 per entry).
const MAX_BATCHES_IN_FLIGHT: usize = 1;

/// A handle to a running raft node. Cheap to clone; all clones drive the same node.
#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("node_id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

struct Inner {
    id: u64,
    raft: Raft,
    contacts: PeerContacts,
    /// A peer that answered within this window counts as reachable.
    reachable_window: Duration,
    /// `add_learner` gives up on a learner silent for this long.
    learner_stall: Duration,
    /// The snapshot being received through `grpc_service` (shared by its clones).
    reception: SnapshotReception,
    proposals: mpsc::Sender<Proposal>,
    /// Held by the batch being committed (the batcher's, or a direct proposal's).
    in_flight: Arc<Semaphore>,
    cancel: CancellationToken,
    batcher: Mutex<Option<JoinHandle<()>>>,
    /// Kept to make the last non-durable writes durable at shutdown; released after it.
    storage: Mutex<Option<(Arc<Database>, LogStore)>>,
    /// How far the local log is on disk (the raft service answers no further).
    durable: DurableWatch,
}

struct Proposal {
    command: Vec<u8>,
    reply: oneshot::Sender<Result<(u64, Vec<u8>), RaftError>>,
}

/// Where a node stands, from openraft's metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStatus {
    pub node_id: u64,
    pub role: RaftRole,
    pub term: u64,
    pub leader_id: Option<u64>,
    /// The last entry in the log (appended, not necessarily committed).
    pub last_log_index: Option<u64>,
    /// The last entry applied to the application.
    pub last_applied_index: Option<u64>,
    /// The last entry covered by the current snapshot.
    pub snapshot_index: Option<u64>,
    /// The last entry removed from the log by compaction: the log starts right after it.
    pub purged_index: Option<u64>,
    /// The members of the effective membership, by id.
    pub members: Vec<RaftMember>,
    /// On the leader, each member it replicates to (itself included) with the index of the
    /// last entry known to match its log (`None`: nothing matched yet). Empty elsewhere.
    pub replication: BTreeMap<u64, Option<u64>>,
}

/// The role of a node in its raft group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftRole {
    Leader,
    Candidate,
    Follower,
    Learner,
    ShuttingDown,
}

/// One member of the raft group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftMember {
    pub id: u64,
    pub addr: String,
    pub voter: bool,
}

#[derive(Debug, Clone, Copy)]
struct BatchLimits {
    max_commands: usize,
    max_bytes: usize,
}

impl RaftNode {
    /// Opens (or creates) durable storage under `state_dir`, restores the latest snapshot and
    /// starts openraft. The application must be empty: it is restored from the snapshot, then
    /// the committed log entries after the snapshot are applied to it again.
    ///
    /// A new node is uninitialised until [`bootstrap_single`](Self::bootstrap_single) makes it
    /// a one-member cluster, or a leader adds it ([`add_learner`](Self::add_learner)) and starts
    /// replicating to it through [`grpc_service`](Self::grpc_service).
    pub async fn start(
        config: RaftConfig,
        app: Arc<dyn StateMachineApp>,
    ) -> Result<Self, RaftError> {
        let config = config.validate()?;
        let openraft_config = Arc::new(config.openraft_config()?);
        let state_dir = config.state_dir.clone();
        let node_id = config.node_id;
        let sealer = config.cipher.as_ref().map(Sealer::new);
        let force_new_cluster = config.force_new_cluster.clone();
        let (database, log_store, state_machine) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&state_dir).map_err(|e| {
                RaftError::Storage(format!("creating state dir {}: {e}", state_dir.display()))
            })?;
            let path = state_dir.join(store::LOG_FILE_NAME);
            let database = store::open_database(&path).map_err(|e| match e {
                redb::Error::DatabaseAlreadyOpen => RaftError::Storage(format!(
                    "{} is already open: another raft node uses state dir {}",
                    path.display(),
                    state_dir.display()
                )),
                other => RaftError::Storage(format!("opening {}: {other}", path.display())),
            })?;
            let log_store = LogStore::open(&state_dir, database.clone(), sealer.clone())
                .map_err(RaftError::Storage)?;
            log_store.check_readable().map_err(RaftError::Storage)?;
            if let Some(term) = log_store
                .stand_for_election(node_id)
                .map_err(RaftError::Storage)?
            {
                tracing::info!(
                    node_id,
                    term,
                    "led the cluster in term {term} before stopping; stands for election again on the log on disk"
                );
            }
            let mut state_machine = StateMachineStore::open(
                state_dir.join(store::SNAPSHOT_DIR_NAME),
                app,
                sealer,
                log_store.durable_watch(),
            )
            .map_err(|e| RaftError::Storage(e.to_string()))?;
            if let Some(addr) = force_new_cluster {
                force_new_cluster_state(node_id, addr, &log_store, &mut state_machine)?;
            }
            Ok::<_, RaftError>((database, log_store, state_machine))
        })
        .await
        .map_err(|e| RaftError::Internal(format!("opening raft storage: {e}")))??;

        let contacts = PeerContacts::default();
        let reachable_window =
            Duration::from_millis(openraft_config.election_timeout_max.saturating_mul(2));
        let durable = log_store.durable_watch();
        let network = NetworkFactory::new(
            config.node_id,
            config.channels.clone(),
            config.append_lanes.clone(),
            contacts.clone(),
            durable.clone(),
        );
        let kept = log_store.clone();
        let raft = Raft::new(
            config.node_id,
            openraft_config,
            network,
            log_store,
            state_machine,
        )
        .await?;

        let limits = BatchLimits {
            max_commands: config.max_batch_commands,
            max_bytes: config.max_batch_bytes,
        };
        let (proposals, receiver) = mpsc::channel(config.max_batch_commands.saturating_mul(4));
        let cancel = CancellationToken::new();
        let in_flight = Arc::new(Semaphore::new(MAX_BATCHES_IN_FLIGHT));
        let batcher = tokio::spawn(run_batcher(
            raft.clone(),
            in_flight.clone(),
            receiver,
            cancel.clone(),
            limits,
        ));
        tracing::info!(node_id = config.node_id, state_dir = %config.state_dir.display(), "raft node started");
        Ok(Self {
            inner: Arc::new(Inner {
                id: config.node_id,
                raft,
                contacts,
                reachable_window,
                learner_stall: config.learner_stall_timeout,
                reception: SnapshotReception::default(),
                proposals,
                in_flight,
                cancel,
                batcher: Mutex::new(Some(batcher)),
                storage: Mutex::new(Some((database, kept))),
                durable,
            }),
        })
    }

    /// This node's raft id.
    pub fn node_id(&self) -> u64 {
        self.inner.id
    }

    /// If this node has never been initialised, initialises a one-voter cluster with itself;
    /// `addr` is recorded in the membership for peers to reach it later. Does nothing (and
    /// succeeds) when the node is already initialised.
    pub async fn bootstrap_single(&self, addr: String) -> Result<(), RaftError> {
        if self.inner.raft.is_initialized().await? {
            return Ok(());
        }
        let members = BTreeMap::from([(self.inner.id, BasicNode::new(addr))]);
        match self.inner.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(openraft::error::RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(openraft::error::RaftError::APIError(other)) => {
                Err(RaftError::Internal(other.to_string()))
            }
            Err(openraft::error::RaftError::Fatal(fatal)) => Err(fatal.into()),
        }
    }

    /// Whether this node has a membership (bootstrapped, or added by a leader).
    pub async fn is_initialized(&self) -> Result<bool, RaftError> {
        Ok(self.inner.raft.is_initialized().await?)
    }

    /// The gRPC service (`swarm.v1.Raft`) peers reach this node through. The caller serves it
    /// on its own server (this crate binds no socket) and decides who may call it (e.g. an
    /// interceptor admitting manager certificates only). Messages up to
    /// [`MAX_RAFT_MESSAGE_BYTES`](crate::MAX_RAFT_MESSAGE_BYTES) are accepted; undecodable ones
    /// fail with `InvalidArgument`.
    pub fn grpc_service(&self) -> swarm_proto::pb::raft_server::RaftServer<RaftService> {
        swarm_proto::pb::raft_server::RaftServer::new(self.append_lane_service())
            .max_decoding_message_size(crate::network::MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(crate::network::MAX_RAFT_MESSAGE_BYTES)
    }

    /// The service behind append lanes from peers (see
    /// [`RaftService::serve_append_lane`]; the same one [`grpc_service`](Self::grpc_service)
    /// wraps); the caller authenticates the peer first.
    pub fn append_lane_service(&self) -> RaftService {
        RaftService::new(
            self.inner.raft.clone(),
            self.inner.reception.clone(),
            self.inner.durable.clone(),
        )
    }

    /// Whether `peer` answered this node's raft RPCs recently (only a leader talks to every
    /// peer; a follower knows about the leader only).
    pub fn peer_reachable(&self, peer: u64) -> bool {
        peer == self.inner.id
            || self
                .inner
                .contacts
                .seen_within(peer, self.inner.reachable_window)
    }

    /// Adds `id` at `addr` as a learner (a non-voting member) and waits until it has caught up:
    /// its log holds the membership entry that added it (it may receive a snapshot for that). Adding a member again records its address and waits again. Only on the leader.
    ///
    /// Fails with [`RaftError::NotLeader`] when this node is not (or stops being) the leader,
    /// [`RaftError::Membership`] when the learner is removed meanwhile, and
    /// [`RaftError::Timeout`] when the learner answers nothing for the configured
    /// `learner_stall_timeout`; it then stays a learner (remove it, or add it again).
    pub async fn add_learner(&self, id: u64, addr: String) -> Result<(), RaftError> {
        let response = self
            .inner
            .raft
            .add_learner(id, BasicNode::new(addr), false)
            .await
            .map_err(write_error)?;
        if id == self.inner.id {
            return Ok(());
        }
        let membership_log_id = Some(response.log_id);
        let stall = self.inner.learner_stall;
        let started = tokio::time::Instant::now();
        let mut metrics = self.inner.raft.metrics();
        loop {
            {
                let current = metrics.borrow_and_update();
                if current.membership_config.log_id() >= &membership_log_id {
                    if current
                        .membership_config
                        .membership()
                        .get_node(&id)
                        .is_none()
                    {
                        return Err(RaftError::Membership(format!(
                            "learner {id} was removed before it caught up"
                        )));
                    }
                    let Some(replication) = &current.replication else {
                        return Err(self.not_leader(&current));
                    };
                    // Caught up: its log holds the entry that added it, so everything before.
                    let matched = replication.get(&id).copied().flatten();
                    if matched.map(|log_id| log_id.index) >= membership_log_id.map(|l| l.index) {
                        return Ok(());
                    }
                }
            }
            if started.elapsed() >= stall && !self.inner.contacts.seen_within(id, stall) {
                return Err(RaftError::Timeout {
                    what: "the new learner to answer",
                    after: stall,
                });
            }
            // Metrics change with every replication step; the wake-up catches a silent learner.
            let wake = (stall / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
            if let Ok(Err(_)) = tokio::time::timeout(wake, metrics.changed()).await {
                return Err(RaftError::ShutDown);
            }
        }
    }

    fn not_leader(&self, current: &openraft::RaftMetrics<u64, BasicNode>) -> RaftError {
        let leader_id = current
            .current_leader
            .filter(|leader| *leader != self.inner.id);
        RaftError::NotLeader {
            leader_id,
            leader_addr: leader_id.and_then(|leader| {
                current
                    .membership_config
                    .membership()
                    .get_node(&leader)
                    .map(|node| node.addr.clone())
            }),
        }
    }

    /// Makes the learner `id` a voter. Only on the leader.
    pub async fn promote(&self, id: u64) -> Result<(), RaftError> {
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
            .await
    }

    /// Makes the voter `id` a learner (it keeps receiving the log). Only on the leader.
    pub async fn demote(&self, id: u64) -> Result<(), RaftError> {
        let voter = self.metrics().members.iter().any(|m| m.id == id && m.voter);
        if !voter {
            return Ok(());
        }
        self.inner
            .raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), true)
            .await
            .map(|_| ())
            .map_err(write_error)
    }

    /// Removes `id` from the membership entirely (voter or learner). Only on the leader.
    pub async fn remove(&self, id: u64) -> Result<(), RaftError> {
        let status = self.metrics();
        let Some(member) = status.members.iter().find(|m| m.id == id) else {
            return Ok(());
        };
        let change = if member.voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.inner
            .raft
            .change_membership(change, false)
            .await
            .map(|_| ())
            .map_err(write_error)
    }

    /// Records a member's new address (a manager restarted elsewhere). Only on the leader.
    pub async fn set_addr(&self, id: u64, addr: String) -> Result<(), RaftError> {
        self.change(ChangeMembers::SetNodes(BTreeMap::from([(
            id,
            BasicNode::new(addr),
        )])))
        .await
    }

    async fn change(&self, change: ChangeMembers<u64, BasicNode>) -> Result<(), RaftError> {
        self.inner
            .raft
            .change_membership(change, true)
            .await
            .map(|_| ())
            .map_err(write_error)
    }

    /// Waits until this node may serve a linearizable read: it is still the leader (a quorum
    /// confirmed it) and has applied everything committed before the call. Only on the leader.
    pub async fn ensure_linearizable(&self) -> Result<(), RaftError> {
        match self.inner.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(openraft::error::RaftError::APIError(
                openraft::error::CheckIsLeaderError::ForwardToLeader(forward),
            )) => Err(RaftError::NotLeader {
                leader_id: forward.leader_id,
                leader_addr: forward.leader_node.map(|node| node.addr),
            }),
            Err(openraft::error::RaftError::APIError(other)) => {
                Err(RaftError::Unavailable(other.to_string()))
            }
            Err(openraft::error::RaftError::Fatal(fatal)) => Err(fatal.into()),
        }
    }

    /// Proposes a command; resolves once it is committed and applied, with the index of the
    /// log entry holding it and the application's response.
    ///
    /// Concurrent proposals are committed together in one log entry (so they share one fsync
    /// and one index); the application still applies them one by one, in order.
    ///
    /// On [`RaftError::NotLeader`] the command was not committed. On [`RaftError::ShutDown`] or
    /// a storage error it may or may not have been: as with any raft, the outcome is unknown.
    ///
    /// A command larger than [`MAX_COMMAND_BYTES`](crate::MAX_COMMAND_BYTES) is refused with
    /// [`RaftError::TooLarge`]: it could not be replicated.
    pub async fn propose(&self, command: Vec<u8>) -> Result<(u64, Vec<u8>), RaftError> {
        if command.len() > MAX_COMMAND_BYTES {
            return Err(RaftError::TooLarge {
                bytes: command.len(),
                max: MAX_COMMAND_BYTES,
            });
        }
        let (reply, response) = oneshot::channel();
        let proposal = Proposal { command, reply };
        // Nothing queued and no batch in flight: commit from this task, sparing the hops through
        // the batcher (a lone client's latency); under load everything goes through the batcher.
        let idle = self.inner.proposals.capacity() == self.inner.proposals.max_capacity();
        if idle
            && !self.inner.cancel.is_cancelled()
            && let Ok(permit) = self.inner.in_flight.clone().try_acquire_owned()
        {
            commit_batch(&self.inner.raft, vec![proposal]).await;
            drop(permit);
        } else {
            self.inner
                .proposals
                .send(proposal)
                .await
                .map_err(|_| RaftError::ShutDown)?;
        }
        response.await.map_err(|_| RaftError::ShutDown)?
    }

    /// Waits until some node is leader, and returns its id. When this node is the leader, also
    /// waits until it has applied every entry its log held when it became leader, so that its
    /// application state is complete (e.g. after a restart).
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, RaftError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut metrics = self.inner.raft.metrics();
        let mut caught_up_target: Option<u64> = None;
        loop {
            {
                let current = metrics.borrow_and_update();
                if let Some(leader) = current.current_leader {
                    if leader != self.inner.id {
                        return Ok(leader);
                    }
                    if current.state == ServerState::Leader {
                        let target =
                            *caught_up_target.get_or_insert(current.last_log_index.unwrap_or(0));
                        let applied = current.last_applied.map(|log_id| log_id.index).unwrap_or(0);
                        if applied >= target {
                            return Ok(leader);
                        }
                    }
                }
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(RaftError::ShutDown),
                Err(_) => {
                    return Err(RaftError::Timeout {
                        what: "a raft leader",
                        after: timeout,
                    });
                }
            }
        }
    }

    /// Waits until this node leads (`leading`) or no longer does; fails once the node stops.
    pub async fn wait_leading(&self, leading: bool) -> Result<(), RaftError> {
        let mut metrics = self.inner.raft.metrics();
        loop {
            if (metrics.borrow_and_update().state == ServerState::Leader) == leading {
                return Ok(());
            }
            metrics.changed().await.map_err(|_| RaftError::ShutDown)?;
        }
    }

    /// Whether this node currently believes it is the leader.
    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().state == ServerState::Leader
    }

    /// A snapshot of the node's raft status.
    pub fn metrics(&self) -> RaftStatus {
        let receiver = self.inner.raft.metrics();
        let current = receiver.borrow();
        let membership = current.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        RaftStatus {
            node_id: current.id,
            role: match current.state {
                ServerState::Leader => RaftRole::Leader,
                ServerState::Candidate => RaftRole::Candidate,
                ServerState::Follower => RaftRole::Follower,
                ServerState::Learner => RaftRole::Learner,
                ServerState::Shutdown => RaftRole::ShuttingDown,
            },
            term: current.current_term,
            leader_id: current.current_leader,
            last_log_index: current.last_log_index,
            last_applied_index: current.last_applied.map(|log_id| log_id.index),
            snapshot_index: current.snapshot.map(|log_id| log_id.index),
            purged_index: current.purged.map(|log_id| log_id.index),
            members: membership
                .nodes()
                .map(|(id, node)| RaftMember {
                    id: *id,
                    addr: node.addr.clone(),
                    voter: voters.contains(id),
                })
                .collect(),
            replication: current
                .replication
                .iter()
                .flatten()
                .map(|(id, matched)| (*id, matched.map(|log_id| log_id.index)))
                .collect(),
        }
    }

    /// Asks openraft to build a snapshot now (normally it does so every `snapshot_interval`).
    pub async fn trigger_snapshot(&self) -> Result<(), RaftError> {
        Ok(self.inner.raft.trigger().snapshot().await?)
    }

    /// Stops the node: pending proposals fail with [`RaftError::ShutDown`], openraft stops, and
    /// every write is made durable. Calling it again does nothing.
    pub async fn shutdown(&self) -> Result<(), RaftError> {
        self.inner.cancel.cancel();
        let batcher = lock(&self.inner.batcher).take();
        if let Some(batcher) = batcher {
            batcher
                .await
                .map_err(|e| RaftError::Internal(format!("proposal batcher: {e}")))?;
        }
        let storage = lock(&self.inner.storage).take();
        let Some(storage) = storage else {
            return Ok(());
        };
        self.inner
            .raft
            .shutdown()
            .await
            .map_err(|e| RaftError::Internal(format!("stopping openraft: {e}")))?;
        tokio::task::spawn_blocking(move || sync_storage(storage))
            .await
            .map_err(|e| RaftError::Internal(format!("syncing raft storage: {e}")))?
            .map_err(|e| RaftError::Storage(format!("syncing raft storage: {e}")))?;
        tracing::info!(node_id = self.inner.id, "raft node stopped");
        Ok(())
    }
}

impl Drop for Inner {
    /// The last handle is gone without `shutdown`: stop the batcher and, when a runtime is at
    /// hand, stop openraft in the background. Await [`RaftNode::shutdown`] instead before
    /// reopening the same state directory in this process.
    fn drop(&mut self) {
        self.cancel.cancel();
        let storage = self
            .storage
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let (Some(storage), Ok(runtime)) = (storage, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let raft = self.raft.clone();
        let node_id = self.id;
        runtime.spawn(async move {
            if let Err(error) = raft.shutdown().await {
                tracing::warn!(node_id, %error, "stopping openraft of a dropped raft node");
            }
            let synced = tokio::task::spawn_blocking(move || sync_storage(storage)).await;
            if !matches!(synced, Ok(Ok(()))) {
                tracing::warn!(
                    node_id,
                    "syncing the raft log of a dropped raft node failed"
                );
            }
        });
    }
}

/// Makes every written entry and every non-durable redb commit durable, then lets both go.
fn sync_storage((database, log): (Arc<Database>, LogStore)) -> Result<(), String> {
    log.sync()?;
    store::sync_database(&database).map_err(|e| e.to_string())
}

/// Rewrites the durable state for `--force-new-cluster` (blocking, before openraft starts):
/// applies every entry of the log, then stores the result as a snapshot whose membership is
/// this node alone at `addr`, at the last index but in a term above any this node has seen, and
/// empties the log behind it with a vote in that term. openraft then starts from the snapshot,
/// and this node, the only voter, elects itself.
fn force_new_cluster_state(
    node_id: u64,
    addr: String,
    log: &LogStore,
    state_machine: &mut StateMachineStore,
) -> Result<(), RaftError> {
    let applied = state_machine.applied().0;
    let (vote, entries) = log
        .read_for_recovery(applied.map(|log_id| log_id.index))
        .map_err(RaftError::Storage)?;
    state_machine.apply_now(entries);
    let (applied, membership) = state_machine.applied();
    let Some(last) = applied else {
        return Err(RaftError::Config(
            "force_new_cluster: there is no raft state to keep".into(),
        ));
    };
    let dropped: Vec<u64> = membership
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .filter(|id| *id != node_id)
        .collect();
    let term = vote
        .map(|vote| vote.leader_id().term)
        .unwrap_or_default()
        .max(last.leader_id.term)
        .saturating_add(1);
    let log_id = LogId::new(CommittedLeaderId::new(term, node_id), last.index);
    let membership = openraft::Membership::new(
        vec![BTreeSet::from([node_id])],
        BTreeMap::from([(node_id, BasicNode::new(addr.clone()))]),
    );
    let meta = state_machine
        .snapshot_as(log_id, membership)
        .map_err(|e| RaftError::Storage(e.to_string()))?;
    log.reset_after_snapshot(log_id, Vote::new(term, node_id))
        .map_err(RaftError::Storage)?;
    tracing::warn!(
        node_id,
        %addr,
        term,
        index = last.index,
        ?dropped,
        snapshot = %meta,
        "forced a new cluster: this node is the only raft member; the others must join again"
    );
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Collects queued proposals into batches and commits each batch as one log entry.
async fn run_batcher(
    raft: Raft,
    in_flight: Arc<Semaphore>,
    mut receiver: mpsc::Receiver<Proposal>,
    cancel: CancellationToken,
    limits: BatchLimits,
) {
    let mut queued: VecDeque<Proposal> = VecDeque::new();
    let mut received = Vec::new();
    let mut writers = JoinSet::new();
    loop {
        // Wait for work first, then for the batch in flight (the batcher's or a direct one) to
        // finish; whatever queued meanwhile goes into the next entry.
        if queued.is_empty() {
            let count = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                count = receiver.recv_many(&mut received, limits.max_commands) => count,
            };
            if count == 0 {
                break;
            }
            queued.extend(received.drain(..));
        }
        let permit = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            permit = in_flight.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        while queued.len() + received.len() < limits.max_commands {
            match receiver.try_recv() {
                Ok(proposal) => received.push(proposal),
                Err(_) => break,
            }
        }
        queued.extend(received.drain(..));

        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(next) = queued.front() {
            if !batch.is_empty()
                && (batch.len() >= limits.max_commands
                    || bytes + next.command.len() > limits.max_bytes)
            {
                break;
            }
            bytes += next.command.len();
            if let Some(proposal) = queued.pop_front() {
                batch.push(proposal);
            }
        }
        while writers.try_join_next().is_some() {}
        let raft = raft.clone();
        writers.spawn(async move {
            commit_batch(&raft, batch).await;
            drop(permit);
        });
    }
    // Dropping the queued proposals and aborting writers fails their callers with `ShutDown`.
    writers.shutdown().await;
}

async fn commit_batch(raft: &Raft, batch: Vec<Proposal>) {
    let (commands, replies): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|p| (p.command, p.reply)).unzip();
    match raft.client_write(CommandBatch { commands }).await {
        Ok(response) => {
            let index = response.log_id.index;
            let mut data = response.data.into_iter();
            for reply in replies {
                let result = data.next().map(|bytes| (index, bytes)).ok_or_else(|| {
                    RaftError::Internal(format!("entry {index}: missing application response"))
                });
                let _ = reply.send(result);
            }
        }
        Err(error) => {
            let error = write_error(error);
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// A write's (or membership change's) error in this crate's terms: `NotLeader` names the leader.
fn write_error(
    error: openraft::error::RaftError<u64, ClientWriteError<u64, BasicNode>>,
) -> RaftError {
    match error {
        openraft::error::RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            RaftError::NotLeader {
                leader_id: forward.leader_id,
                leader_addr: forward.leader_node.map(|node| node.addr),
            }
        }
        openraft::error::RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            RaftError::Membership(e.to_string())
        }
        openraft::error::RaftError::Fatal(fatal) => fatal.into(),
    }
}
