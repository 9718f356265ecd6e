//! The dispatcher (`swarm.v1.Dispatcher`): agents' sessions, heartbeats, incremental task
//! assignments, batched task status reports, and log requests relayed to agents.
//!
//! Heartbeats live in memory, not in raft (as in SwarmKit); only a node's transitions (READY on
//! registration, DOWN after `heartbeat_period * grace_multiplier` of silence) are committed.
//!
//! Agents are not trusted with more than their own node: a session may report the status of
//! tasks assigned to its node only, only moving them forward through the states the agent owns
//! (ACCEPTED to REJECTED), and may answer only the log requests sent to its node. A session
//! lives until its heartbeats stop (a broken stream alone does not end it, so a short blip
//! does not mark the node down), it is replaced by a new registration, or the dispatcher stops.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use parking_lot::Mutex;
use swarm_proto::{duration_to_pb, pb};
use swarm_store::{Action, Batch, Change, MemoryStore, Object, StoreRead};
use swarm_types::{
    BUILTIN_EXECUTORS, ClusterSpec, ManagerStatus, Node, NodeDescription, NodeRole, NodeState,
    NodeStatus, Reachability, Task, TaskState, TaskStatus, Timestamp, new_id,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{debug, info, instrument, warn};

use crate::commit::{Committer, commit_with};
use crate::error::{ManagerError, Result};
use crate::leader::{Caller, LeaderTerm, Leadership};
use crate::secrets::SentData;
use crate::watch::{self, Update};

/// How long a log request waits for the agent's answer.
const LOG_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a session checks whether its node's desired role or the managers changed.
const SESSION_REFRESH: Duration = Duration::from_secs(1);
/// The weight every manager is announced with (SwarmKit's default).
const MANAGER_WEIGHT: i64 = 10;
/// How many times a write that lost a version race is rebuilt and retried.
const CONFLICT_RETRIES: usize = 8;
/// The liveness loop never checks more often than this, whatever the cluster object says.
const MIN_LIVENESS_INTERVAL: Duration = Duration::from_millis(10);

/// Settings of the dispatcher that come from the node, not the cluster object.
#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// This manager's node id (its node object is created with the manager role).
    pub manager_node_id: String,
    /// Address agents reach this manager at.
    pub advertise_addr: String,
    /// This manager's raft id (recorded on its node object).
    pub raft_id: u64,
}

struct Session {
    node_id: String,
    last_heartbeat: Instant,
    log_requests: mpsc::Sender<pb::LogRequest>,
    cancel: CancellationToken,
}

type LogReply = std::result::Result<(Vec<u8>, Vec<u8>), String>;

/// A log request waiting for the agent of `node_id`.
struct PendingLogs {
    node_id: String,
    reply: oneshot::Sender<LogReply>,
}

/// Removes a log request from the pending set when its caller stops waiting.
struct PendingLogsGuard<'a> {
    state: &'a Mutex<State>,
    request_id: String,
}

impl Drop for PendingLogsGuard<'_> {
    fn drop(&mut self) {
        self.state.lock().pending_logs.remove(&self.request_id);
    }
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Session>,
    pending_logs: HashMap<String, PendingLogs>,
}

/// The dispatcher's state, shared by its gRPC service and the manager's control service.
pub struct Dispatcher {
    store: Arc<MemoryStore>,
    committer: Arc<dyn Committer>,
    config: DispatcherConfig,
    state: Mutex<State>,
    /// When this dispatcher started: nodes READY in the store get a grace period from here.
    started: Instant,
    /// Cancelled when the liveness loop stops (the manager shuts down): every session, and the
    /// streams that belong to it, end with it, so servers can drain.
    closing: CancellationToken,
}

impl Dispatcher {
    pub fn new(
        store: Arc<MemoryStore>,
        committer: Arc<dyn Committer>,
        config: DispatcherConfig,
    ) -> Self {
        Self {
            store,
            committer,
            config,
            state: Mutex::new(State::default()),
            started: Instant::now(),
            closing: CancellationToken::new(),
        }
    }

    /// The managers agents may connect to: every manager with a raft address, this one first.
    fn managers(&self) -> Vec<pb::WeightedPeer> {
        let mut peers = vec![pb::WeightedPeer {
            node_id: self.config.manager_node_id.clone(),
            addr: self.config.advertise_addr.clone(),
            weight: MANAGER_WEIGHT,
        }];
        self.store.view(|tx| {
            for node in tx.nodes() {
                if node.id == self.config.manager_node_id
                    || node.spec.desired_role != NodeRole::Manager
                {
                    continue;
                }
                if let Some(status) = node.manager_status.as_ref().filter(|m| !m.addr.is_empty()) {
                    peers.push(pb::WeightedPeer {
                        node_id: node.id.clone(),
                        addr: status.addr.clone(),
                        weight: MANAGER_WEIGHT,
                    });
                }
            }
        });
        peers
    }

    fn cluster_spec(&self) -> ClusterSpec {
        self.store
            .view(|tx| tx.cluster().map(|c| c.spec.clone()))
            .unwrap_or_else(ClusterSpec::with_defaults)
    }

    fn session_node(&self, session_id: &str) -> std::result::Result<String, Status> {
        self.state
            .lock()
            .sessions
            .get(session_id)
            .map(|s| s.node_id.clone())
            .ok_or_else(|| {
                Status::not_found(format!("session {session_id} is not valid; register again"))
            })
    }

    /// Create or refresh the node object for a registering agent and mark it READY.
    async fn register(
        &self,
        node_id: &str,
        description: NodeDescription,
        addr: String,
        authenticated: bool,
    ) -> Result<Node> {
        let is_self = node_id == self.config.manager_node_id;
        // A node with a certificate joined through the CA, which created its node object: if
        // the object is gone, the node was removed and its certificate no longer admits it.
        if authenticated && !is_self && self.store.view(|tx| tx.node(node_id).is_none()) {
            return Err(ManagerError::PermissionDenied(format!(
                "node {node_id} was removed from the cluster; join again with a new state directory"
            )));
        }
        for _ in 0..CONFLICT_RETRIES {
            let now = Timestamp::now();
            let desc = description.clone();
            let addr = addr.clone();
            let result = commit_with(&self.store, self.committer.as_ref(), |tx| {
                let status = NodeStatus {
                    state: NodeState::Ready,
                    message: String::new(),
                    addr,
                    last_seen: now,
                };
                // This manager records its own raft membership; other managers' is recorded when
                // they join raft. Leadership and reachability are filled in when nodes are read.
                let own_status = is_self.then(|| ManagerStatus {
                    raft_id: self.config.raft_id,
                    addr: self.config.advertise_addr.clone(),
                    leader: false,
                    reachability: Reachability::Reachable,
                });
                match tx.node(node_id) {
                    Some(existing) => {
                        let mut node = (**existing).clone();
                        node.description = Some(desc);
                        node.status = status;
                        if let Some(own) = own_status {
                            node.role = NodeRole::Manager;
                            node.manager_status = Some(own);
                        }
                        node.meta.updated_at = now;
                        tx.update(node)?;
                    }
                    None => {
                        let manager_status = own_status;
                        let role = if is_self {
                            NodeRole::Manager
                        } else {
                            NodeRole::Worker
                        };
                        tx.create(Node {
                            manager_status,
                            ..Node::new(node_id, role, desc, status, now)
                        })?;
                    }
                }
                Ok(())
            })
            .await;
            match result {
                Ok(_) => {
                    return self
                        .store
                        .view(|tx| tx.node(node_id).map(|n| (**n).clone()))
                        .ok_or_else(|| {
                            ManagerError::Internal(format!(
                                "node {node_id} vanished after registration"
                            ))
                        });
                }
                Err(ManagerError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ManagerError::Unavailable(format!(
            "registering node {node_id}: too many concurrent updates; retry"
        )))
    }

    /// Mark nodes whose heartbeats stopped as DOWN. Runs until cancelled; then ends every
    /// session (and its streams).
    pub async fn run_liveness(self: Arc<Self>, cancel: CancellationToken) {
        let _close = self.closing.clone().drop_guard();
        loop {
            let spec = self.cluster_spec();
            let period = spec.dispatcher.heartbeat_period;
            let grace = period * spec.dispatcher.grace_multiplier;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep((period / 2).max(MIN_LIVENESS_INTERVAL)) => {}
            }
            let now = Instant::now();
            let mut expired: Vec<(String, String)> = Vec::new();
            let connected: std::collections::HashSet<String> = {
                let mut state = self.state.lock();
                state.sessions.retain(|sid, s| {
                    if now.duration_since(s.last_heartbeat) > grace {
                        s.cancel.cancel();
                        expired.push((sid.clone(), s.node_id.clone()));
                        false
                    } else {
                        true
                    }
                });
                state.sessions.values().map(|s| s.node_id.clone()).collect()
            };
            // Nodes READY in the store without a session (e.g. after a manager restart) get one
            // grace period from the dispatcher's start to reconnect.
            let orphaned: Vec<String> = if now.duration_since(self.started) > grace {
                self.store.view(|tx| {
                    tx.nodes()
                        .filter(|n| {
                            n.status.state == NodeState::Ready && !connected.contains(&n.id)
                        })
                        .map(|n| n.id.clone())
                        .collect()
                })
            } else {
                Vec::new()
            };
            for node_id in expired.into_iter().map(|(_, n)| n).chain(orphaned) {
                if connected.contains(&node_id) {
                    continue;
                }
                warn!(%node_id, "node missed its heartbeats; marking it down");
                if let Err(e) = self.mark_down(&node_id, "heartbeat failure").await {
                    warn!(%node_id, error = %e, "marking node down failed");
                }
            }
        }
    }

    async fn mark_down(&self, node_id: &str, message: &str) -> Result<()> {
        for _ in 0..CONFLICT_RETRIES {
            let r = commit_with(&self.store, self.committer.as_ref(), |tx| {
                // The node may have registered again since it expired. (Should it register
                // between this check and the commit, its next heartbeat finds it DOWN and
                // asks it to register again.)
                if self.has_session(node_id) {
                    return Ok(());
                }
                if let Some(n) = tx.node(node_id)
                    && n.status.state == NodeState::Ready
                {
                    let mut node = (**n).clone();
                    node.status.state = NodeState::Down;
                    node.status.message = message.to_string();
                    node.meta.updated_at = Timestamp::now();
                    if let Some(m) = node.manager_status.as_mut() {
                        m.reachability = Reachability::Unreachable;
                    }
                    tx.update(node)?;
                }
                Ok(())
            })
            .await;
            match r {
                Err(ManagerError::Conflict(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
        Ok(())
    }

    fn has_session(&self, node_id: &str) -> bool {
        self.state
            .lock()
            .sessions
            .values()
            .any(|s| s.node_id == node_id)
    }

    /// Ask a node's agent for the tail of a task's logs.
    pub async fn fetch_logs(
        &self,
        node_id: &str,
        task_id: &str,
        tail_bytes: u64,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let request_id = new_id();
        let (tx, rx) = oneshot::channel();
        let sender = {
            let mut state = self.state.lock();
            let Some(session) = state.sessions.values().find(|s| s.node_id == node_id) else {
                return Err(ManagerError::Unavailable(format!(
                    "node {node_id} is not connected, so task {task_id}'s logs can't be read now"
                )));
            };
            let sender = session.log_requests.clone();
            state.pending_logs.insert(
                request_id.clone(),
                PendingLogs {
                    node_id: node_id.to_string(),
                    reply: tx,
                },
            );
            sender
        };
        // However this call ends (answer, timeout, error, or the caller dropping it at an
        // await), the request stops waiting.
        let _waiting = PendingLogsGuard {
            state: &self.state,
            request_id: request_id.clone(),
        };
        let request = pb::LogRequest {
            request_id: request_id.clone(),
            task_id: task_id.to_string(),
            tail_bytes,
        };
        let closed =
            || ManagerError::Unavailable(format!("node {node_id}'s session closed; retry"));
        // The send waits while the agent does not read its stream: it counts against the time.
        let reply = tokio::time::timeout(LOG_REQUEST_TIMEOUT, async {
            sender.send(request).await.map_err(|_| closed())?;
            rx.await.map_err(|_| closed())
        })
        .await;
        match reply {
            Ok(Ok(Ok(logs))) => Ok(logs),
            Ok(Ok(Err(e))) => Err(ManagerError::FailedPrecondition(format!(
                "reading logs of task {task_id}: {e}"
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ManagerError::Unavailable(format!(
                "node {node_id} did not answer the log request within {}s",
                LOG_REQUEST_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The node's assignment set: its tasks from ASSIGNED on, until the task is deleted.
    fn is_assigned(task: &Task, node_id: &str) -> bool {
        task.node_id == node_id && task.status.state >= TaskState::Assigned
    }

    /// The states an agent may report: the ones after ASSIGNED that the agent owns. PENDING
    /// and ASSIGNED are the scheduler's; REMOVE and ORPHANED the manager's.
    fn agent_owns(state: TaskState) -> bool {
        (TaskState::Accepted..=TaskState::Rejected).contains(&state)
    }

    /// Marks installed executors a node quarantined; the scheduler stops placing their tasks.
    /// Reports naming built-in executors or unknown plugins are logged only.
    async fn record_quarantines(
        &self,
        node_id: &str,
        reports: Vec<pb::PluginHealthReport>,
    ) -> Result<()> {
        let now = Timestamp::now();
        let actions: Vec<Action> = self.store.view(|tx| {
            reports
                .iter()
                .filter(|report| report.quarantined)
                .filter_map(|report| {
                    let message = bound_text(format!(
                        "quarantined on node {node_id} after {} failures: {}",
                        report.failures, report.message
                    ));
                    let plugin = tx.plugin_by_name(&report.name)?;
                    // Agents are not trusted: only an executor this node runs tasks on.
                    let runs_it = tx
                        .tasks_by_node(node_id)
                        .any(|t| t.executor.eq_ignore_ascii_case(&report.name));
                    if plugin.status.quarantined
                        || plugin.spec.kind != swarm_types::PluginKind::Executor
                        || !runs_it
                    {
                        return None;
                    }
                    tracing::error!(event = "plugin_quarantined", plugin = %report.name, %node_id, %message, "executor plugin quarantined");
                    let status =
                        swarm_types::PluginStatus::quarantined(report.failures, message, now);
                    let plugin = plugin.with_status(status);
                    Some(Action::Update(Object::Plugin(plugin)))
                })
                .collect()
        });
        if actions.is_empty() {
            return Ok(());
        }
        self.committer.commit(Batch::new(actions)).await.map(|_| ())
    }

    async fn apply_status_updates(
        &self,
        node_id: &str,
        updates: Vec<(String, TaskStatus)>,
    ) -> Result<()> {
        for _ in 0..CONFLICT_RETRIES {
            let r = commit_with(&self.store, self.committer.as_ref(), |tx| {
                for (task_id, status) in &updates {
                    let Some(task) = tx.task(task_id) else {
                        debug!(%task_id, "status for a task that no longer exists");
                        continue;
                    };
                    if !Dispatcher::is_assigned(task, node_id) {
                        warn!(%task_id, %node_id, "status from a node the task is not assigned to; ignored");
                        continue;
                    }
                    if !Dispatcher::agent_owns(status.state) {
                        warn!(%task_id, %node_id, state = %status.state, "an agent may not report this state; ignored");
                        continue;
                    }
                    if !task.status.state.can_transition_to(status.state) {
                        continue;
                    }
                    let mut task = (**task).clone();
                    task.status = status.clone();
                    task.meta.updated_at = Timestamp::now();
                    tx.update(task)?;
                }
                Ok(())
            })
            .await;
            match r {
                Err(ManagerError::Conflict(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
        Err(ManagerError::Unavailable(
            "task status: too many concurrent updates; retry".into(),
        ))
    }
}

/// Longest status message or error kept from an agent; longer text is cut (with a marker).
const MAX_STATUS_TEXT: usize = 4096;

pub(crate) fn bound_text(mut text: String) -> String {
    if text.len() > MAX_STATUS_TEXT {
        let mut cut = MAX_STATUS_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" [truncated]");
    }
    text
}

/// Agents' text goes into the replicated store: keep it bounded.
fn bound_status_text(mut status: TaskStatus) -> TaskStatus {
    status.message = bound_text(std::mem::take(&mut status.message));
    status.err = bound_text(std::mem::take(&mut status.err));
    status
}

/// The gRPC face of the dispatcher: served by the current leader term's dispatcher.
#[derive(Clone)]
pub struct DispatcherService {
    leadership: Leadership,
}

impl DispatcherService {
    /// A service over one dispatcher that always leads (tests, single components).
    pub fn new(inner: Arc<Dispatcher>) -> Self {
        Self::routed(Leadership::fixed(LeaderTerm { dispatcher: inner }))
    }

    /// A service answered by the dispatcher of whichever term this manager leads.
    pub fn routed(leadership: Leadership) -> Self {
        Self { leadership }
    }
}

/// Refuses a call whose certificate names another node than the one it speaks for.
fn check_caller_is(caller: &Caller, node_id: &str) -> std::result::Result<(), Status> {
    match caller {
        Caller::Local => Ok(()),
        Caller::Node { node_id: own, .. } if own == node_id => Ok(()),
        Caller::Node { node_id: own, .. } => Err(Status::permission_denied(format!(
            "node {own} cannot act for node {node_id}"
        ))),
        Caller::Anonymous => Err(Status::unauthenticated(
            "the dispatcher requires a node certificate",
        )),
    }
}

type RpcResult<T> = std::result::Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send + 'static>>;

/// The installed executor plugins `tasks` run on that are not in `sent` yet (which they join).
/// Built-in executors and names no longer installed are skipped: the agent reports the task's
/// failure with the reason.
fn plugins_for<'a>(
    tx: &impl StoreRead,
    tasks: impl Iterator<Item = &'a Task>,
    sent: &mut HashSet<String>,
) -> Vec<pb::PluginComponent> {
    let mut plugins = Vec::new();
    for task in tasks {
        if task.executor.is_empty() || BUILTIN_EXECUTORS.contains(&task.executor.as_str()) {
            continue;
        }
        let Some(plugin) = tx.plugin_by_name(&task.executor) else {
            continue;
        };
        if plugin.component.is_empty() || !sent.insert(plugin.digest.clone()) {
            continue;
        }
        plugins.push(component_message(plugin));
    }
    plugins
}

/// An installed executor as the assignment stream sends it.
fn component_message(plugin: &swarm_types::Plugin) -> pb::PluginComponent {
    pb::PluginComponent {
        name: plugin.name().to_string(),
        digest: plugin.digest.clone(),
        capabilities: plugin.spec.capabilities.clone(),
        component: plugin.component.as_bytes().to_vec(),
    }
}

fn assignment_change(task: &Task, action: pb::assignment_change::Action) -> pb::AssignmentChange {
    pb::AssignmentChange {
        task: Some(task.clone().into()),
        action: action as i32,
    }
}

#[tonic::async_trait]
impl pb::dispatcher_server::Dispatcher for DispatcherService {
    type SessionStream = BoxStream<pb::SessionMessage>;
    type AssignmentsStream = BoxStream<pb::AssignmentsMessage>;

    #[instrument(skip_all, fields(node_id = %request.get_ref().node_id))]
    async fn session(
        &self,
        request: Request<pb::SessionRequest>,
    ) -> RpcResult<Self::SessionStream> {
        let inner = self.leadership.dispatcher()?;
        let caller = Caller::of(&request);
        let addr = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let r = request.into_inner();
        if r.node_id.is_empty() {
            return Err(Status::invalid_argument("node_id: must not be empty"));
        }
        check_caller_is(&caller, &r.node_id)?;
        let description: NodeDescription = r
            .description
            .ok_or_else(|| Status::invalid_argument("description: is required"))?
            .into();
        let authenticated = matches!(caller, Caller::Node { .. });
        let node = inner
            .register(&r.node_id, description, addr, authenticated)
            .await?;
        let session_id = new_id();
        let cancel = inner.closing.child_token();
        let (log_tx, mut log_rx) = mpsc::channel::<pb::LogRequest>(64);
        {
            let mut state = inner.state.lock();
            // A node has one session: a new registration ends the old one.
            state.sessions.retain(|_, s| {
                if s.node_id == r.node_id {
                    s.cancel.cancel();
                    false
                } else {
                    true
                }
            });
            state.sessions.insert(
                session_id.clone(),
                Session {
                    node_id: r.node_id.clone(),
                    last_heartbeat: Instant::now(),
                    log_requests: log_tx,
                    cancel: cancel.clone(),
                },
            );
        }
        info!(node_id = %r.node_id, %session_id, "agent registered");
        let first = pb::SessionMessage {
            session_id: session_id.clone(),
            node: Some(node.into()),
            managers: inner.managers(),
            log_requests: Vec::new(),
        };
        let (tx, rx) = mpsc::channel(16);
        let watched = inner.clone();
        let node_id = r.node_id.clone();
        tokio::spawn(async move {
            let mut announced = (
                first
                    .node
                    .as_ref()
                    .and_then(|n| n.spec.as_ref())
                    .map(|s| s.desired_role),
                first.managers.clone(),
            );
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            let mut refresh = tokio::time::interval(SESSION_REFRESH);
            refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tx.closed() => break,
                    _ = refresh.tick() => {
                        // The node's desired role (promote/demote) and the managers, when they
                        // changed since the last message.
                        let node = watched.store.view(|tx| tx.node(&node_id).map(|n| (**n).clone()));
                        let managers = watched.managers();
                        let role = node.as_ref().map(|n| pb::NodeRole::from(n.spec.desired_role) as i32);
                        if (role, managers.clone()) != announced {
                            announced = (role, managers.clone());
                            let msg = pb::SessionMessage {
                                session_id: session_id.clone(),
                                node: node.map(Into::into),
                                managers,
                                log_requests: Vec::new(),
                            };
                            if tx.send(Ok(msg)).await.is_err() { break; }
                        }
                    }
                    req = log_rx.recv() => match req {
                        Some(req) => {
                            let msg = pb::SessionMessage { session_id: session_id.clone(), log_requests: vec![req], ..Default::default() };
                            if tx.send(Ok(msg)).await.is_err() { break; }
                        }
                        None => break,
                    },
                }
            }
            // The stream is over: the session was replaced or expired, or the client is gone.
            // In the last case the session stays until its heartbeats stop: an agent that
            // lost its stream registers again well within the grace period.
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> RpcResult<pb::HeartbeatResponse> {
        let inner = self.leadership.dispatcher()?;
        let caller = Caller::of(&request);
        let session_id = request.into_inner().session_id;
        let node_id = {
            let mut state = inner.state.lock();
            let Some(session) = state.sessions.get_mut(&session_id) else {
                return Err(Status::not_found(format!(
                    "session {session_id} is not valid; register again"
                )));
            };
            check_caller_is(&caller, &session.node_id)?;
            session.last_heartbeat = Instant::now();
            session.node_id.clone()
        };
        // A node marked DOWN while its session lived (it expired and registered again while
        // the liveness loop was marking it down) must register again to be READY.
        let ready = inner.store.view(|tx| {
            tx.node(&node_id)
                .is_some_and(|n| n.status.state == NodeState::Ready)
        });
        if !ready {
            if let Some(session) = inner.state.lock().sessions.remove(&session_id) {
                session.cancel.cancel();
            }
            return Err(Status::not_found(format!(
                "node {node_id} is not ready in the cluster; register again"
            )));
        }
        let period = inner.cluster_spec().dispatcher.heartbeat_period;
        Ok(Response::new(pb::HeartbeatResponse {
            period: Some(duration_to_pb(period)),
        }))
    }

    #[instrument(skip_all)]
    async fn update_task_status(
        &self,
        request: Request<pb::UpdateTaskStatusRequest>,
    ) -> RpcResult<pb::UpdateTaskStatusResponse> {
        let inner = self.leadership.dispatcher()?;
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let node_id = inner.session_node(&r.session_id)?;
        check_caller_is(&caller, &node_id)?;
        let mut updates = Vec::with_capacity(r.updates.len());
        for (i, u) in r.updates.into_iter().enumerate() {
            // One malformed entry must not block the others (the agent would resend the batch
            // forever): skip it, and say so.
            let status: TaskStatus = match u.status.map(TryInto::try_into) {
                Some(Ok(status)) => status,
                Some(Err(e)) => {
                    warn!(%node_id, index = i, error = %e, "status update refused: updates[{i}].{e}");
                    continue;
                }
                None => {
                    warn!(%node_id, index = i, "status update refused: updates[{i}].status is required");
                    continue;
                }
            };
            let status = bound_status_text(status);
            updates.push((u.task_id, status));
        }
        inner.apply_status_updates(&node_id, updates).await?;
        if !r.plugins.is_empty()
            && let Err(error) = inner.record_quarantines(&node_id, r.plugins).await
        {
            // The statuses are applied; the agent reports again at its next session.
            warn!(%node_id, %error, "cannot record a quarantine report");
        }
        Ok(Response::new(pb::UpdateTaskStatusResponse {}))
    }

    #[instrument(skip_all)]
    async fn assignments(
        &self,
        request: Request<pb::AssignmentsRequest>,
    ) -> RpcResult<Self::AssignmentsStream> {
        let inner = self.leadership.dispatcher()?;
        let caller = Caller::of(&request);
        let session_id = request.into_inner().session_id;
        let node_id = inner.session_node(&session_id)?;
        check_caller_is(&caller, &node_id)?;
        let cancel = inner
            .state
            .lock()
            .sessions
            .get(&session_id)
            .map(|s| s.cancel.clone())
            .ok_or_else(|| Status::not_found("session ended"))?;
        // Subscribe before reading, so no change between the read and the watch is lost.
        let mut watcher = inner.store.watch();
        let (index, initial): (u64, Vec<Task>) = inner.store.view(|tx| {
            (
                tx.index(),
                tx.tasks_by_node(&node_id)
                    .filter(|t| Dispatcher::is_assigned(t, &node_id))
                    .map(|t| (**t).clone())
                    .collect(),
            )
        });
        // Installed executors the agent has been sent on this stream, by digest.
        let mut sent_plugins: HashSet<String> = HashSet::new();
        let initial_plugins = inner
            .store
            .view(|tx| plugins_for(tx, initial.iter(), &mut sent_plugins));
        // Secrets and configs likewise, by id.
        let mut sent_data = SentData::default();
        let (secrets, configs) = inner
            .store
            .view(|tx| sent_data.take_new(tx, initial.iter()));
        // What the agent has been sent: task id -> (desired state, spec version).
        let mut sent: HashMap<String, (TaskState, u64)> = initial
            .iter()
            .map(|t| (t.id.clone(), (t.desired_state, t.spec_version)))
            .collect();
        let complete = pb::AssignmentsMessage {
            r#type: pb::assignments_message::Type::Complete as i32,
            applies_to: String::new(),
            results_in: index.to_string(),
            changes: initial
                .iter()
                .map(|t| assignment_change(t, pb::assignment_change::Action::Update))
                .collect(),
            plugins: initial_plugins,
            secrets,
            configs,
        };
        let store = inner.store.clone();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            if tx.send(Ok(complete)).await.is_err() {
                return;
            }
            let mut last = index;
            loop {
                let update = tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tx.closed() => return,
                    u = watch::next(&mut watcher) => u,
                };
                let changeset = match update {
                    Update::Changes(c) => c,
                    Update::Resync => {
                        // Events were lost: the agent must re-register and get a complete set.
                        let _ = tx
                            .send(Err(Status::aborted(
                                "assignment stream fell behind; register again",
                            )))
                            .await;
                        return;
                    }
                    Update::Closed => return,
                };
                if changeset.index <= last {
                    continue;
                }
                let mut out = Vec::new();
                let mut updated: Vec<&Task> = Vec::new();
                for change in changeset.tasks() {
                    match change {
                        Change::Deleted(old) => {
                            if sent.remove(&old.id).is_some() {
                                out.push(assignment_change(
                                    old,
                                    pb::assignment_change::Action::Remove,
                                ));
                            }
                        }
                        Change::Created(t) | Change::Updated { new: t, .. } => {
                            if Dispatcher::is_assigned(t, &node_id) {
                                let key = (t.desired_state, t.spec_version);
                                if sent.get(&t.id) != Some(&key) {
                                    sent.insert(t.id.clone(), key);
                                    updated.push(t);
                                    out.push(assignment_change(
                                        t,
                                        pb::assignment_change::Action::Update,
                                    ));
                                }
                            } else if sent.remove(&t.id).is_some() {
                                out.push(assignment_change(
                                    t,
                                    pb::assignment_change::Action::Remove,
                                ));
                            }
                        }
                    }
                }
                let (secrets, configs) = if updated
                    .iter()
                    .any(|t| !t.spec.secrets.is_empty() || !t.spec.configs.is_empty())
                {
                    store.view(|tx| sent_data.take_new(tx, updated.iter().copied()))
                } else {
                    (Vec::new(), Vec::new())
                };
                let mut plugins = if updated.iter().any(|t| !t.executor.is_empty()) {
                    store.view(|tx| plugins_for(tx, updated.into_iter(), &mut sent_plugins))
                } else {
                    Vec::new()
                };
                // A quarantine lifted (the same component installed again): send the component
                // again, so the agent replaces the copy it quarantined.
                for change in changeset.plugins() {
                    let (Some(old), Some(new)) = (change.before(), change.after()) else {
                        continue;
                    };
                    if old.status.quarantined
                        && !new.status.quarantined
                        && sent_plugins.contains(&new.digest)
                        && let Some(stored) = store.view(|tx| tx.plugin(&new.id).cloned())
                        && !stored.component.is_empty()
                    {
                        plugins.push(component_message(&stored));
                    }
                }
                if out.is_empty() && plugins.is_empty() {
                    continue;
                }
                let msg = pb::AssignmentsMessage {
                    r#type: pb::assignments_message::Type::Incremental as i32,
                    applies_to: last.to_string(),
                    results_in: changeset.index.to_string(),
                    changes: out,
                    plugins,
                    secrets,
                    configs,
                };
                last = changeset.index;
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn publish_logs(
        &self,
        request: Request<pb::PublishLogsRequest>,
    ) -> RpcResult<pb::PublishLogsResponse> {
        let inner = self.leadership.dispatcher()?;
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let node_id = inner.session_node(&r.session_id)?;
        check_caller_is(&caller, &node_id)?;
        let waiter = {
            let mut state = inner.state.lock();
            // Only the node the request went to may answer it.
            match state.pending_logs.get(&r.request_id) {
                Some(pending) if pending.node_id == node_id => {
                    state.pending_logs.remove(&r.request_id)
                }
                Some(_) => {
                    warn!(%node_id, request_id = %r.request_id, "logs for another node's request; ignored");
                    None
                }
                None => None,
            }
        };
        if let Some(waiter) = waiter {
            let reply = if r.error.is_empty() {
                Ok((r.stdout, r.stderr))
            } else {
                Err(r.error)
            };
            let _ = waiter.reply.send(reply);
        }
        Ok(Response::new(pb::PublishLogsResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::DirectCommitter;

    fn dispatcher() -> Dispatcher {
        let store = Arc::new(MemoryStore::new());
        Dispatcher::new(
            store.clone(),
            Arc::new(DirectCommitter::new(store)),
            DispatcherConfig {
                manager_node_id: "manager".into(),
                advertise_addr: "127.0.0.1:4242".into(),
                raft_id: 1,
            },
        )
    }

    /// A session for `node_id` whose agent never reads its log requests.
    fn stuck_session(d: &Dispatcher, node_id: &str) -> mpsc::Receiver<pb::LogRequest> {
        let (log_requests, receiver) = mpsc::channel(1);
        d.state.lock().sessions.insert(
            new_id(),
            Session {
                node_id: node_id.into(),
                last_heartbeat: Instant::now(),
                log_requests,
                cancel: CancellationToken::new(),
            },
        );
        receiver
    }

    #[tokio::test]
    async fn a_log_request_whose_caller_gives_up_is_forgotten() {
        let d = dispatcher();
        let _receiver = stuck_session(&d, "node-1");
        for _ in 0..3 {
            // The caller (a control API client) goes away while waiting.
            let fetch = d.fetch_logs("node-1", "task-1", 0);
            let gave_up = tokio::time::timeout(Duration::from_millis(50), fetch).await;
            assert!(gave_up.is_err(), "the stuck agent cannot answer");
        }
        assert_eq!(d.state.lock().pending_logs.len(), 0);
    }
}
