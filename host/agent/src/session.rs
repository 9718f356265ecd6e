//! One session with the dispatcher: register, then heartbeat, receive assignments, listen for
//! session messages (log requests) and flush task statuses, until any of them fails.
//!
//! Any stream end or RPC error ends the whole session; the agent loop then opens a new one,
//! with another manager when there is one. Each part runs as its own tokio task under the session's cancellation token
//! and is joined (not aborted) when the session ends, so an assignment is never half-applied
//! and a status batch in flight is put back for the next session.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use swarm_proto::pb;
use swarm_proto::pb::dispatcher_client::DispatcherClient;
use swarm_types::{Task, TaskState, TaskStatus, Timestamp};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::agent::{AgentStatus, ManagerPeer};
use crate::config::ChannelMaker;
use crate::error::AgentError;
use crate::executor::{ExecutorLoader, LogReader, LogStream};
use crate::executors::{Executors, NamedExecutor};
use crate::managers::Managers;
use crate::reporter::Reporter;
use crate::worker::Worker;

/// Deadline of a unary call, and of registration (the call plus the first message).
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message accepted from the dispatcher (a node's complete assignment set can be big).
const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// Deadline to open the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Used when the dispatcher answers a heartbeat with no period.
const DEFAULT_HEARTBEAT_PERIOD: Duration = Duration::from_secs(5);
/// Statuses are sent at most this long after they are queued...
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// ...or as soon as this many are queued, never more in one call.
pub(crate) const MAX_BATCH: usize = 1_000;

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("invalid manager address {addr:?}: {source}")]
    Address {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("connecting: {source}")]
    Connect {
        #[source]
        source: tonic::transport::Error,
    },
    #[error("making the channel: {0}")]
    Channel(String),
    #[error("{call}: {status}")]
    Rpc {
        call: &'static str,
        status: tonic::Status,
    },
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("the dispatcher ended the {0} stream")]
    StreamEnded(&'static str),
    #[error(
        "assignments gap: a change applies to {applies_to:?} but the last state was {last:?}; \
         registering again"
    )]
    Gap { applies_to: String, last: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("session task failed: {0}")]
    Join(String),
}

/// How a session ended.
#[derive(Debug)]
pub(crate) enum SessionEnd {
    /// The agent is stopping.
    Cancelled,
    /// The session failed; `registered` says whether registration had succeeded.
    Failed {
        registered: bool,
        error: SessionError,
    },
}

/// What every session shares with the agent.
pub(crate) struct Shared {
    pub(crate) node_id: String,
    pub(crate) description: pb::NodeDescription,
    pub(crate) worker: Arc<Mutex<Worker>>,
    pub(crate) reporter: Reporter,
    pub(crate) logs: Arc<dyn LogReader>,
    pub(crate) status: watch::Sender<AgentStatus>,
    pub(crate) executors: Executors,
    pub(crate) loader: Option<Arc<dyn ExecutorLoader>>,
    /// Installed executors loaded so far: name -> digest.
    pub(crate) installed: Arc<Mutex<HashMap<String, String>>>,
    /// Where delivered executors are kept for the next start.
    pub(crate) executors_dir: Option<std::path::PathBuf>,
    /// The managers to open sessions with; announcements replace them.
    pub(crate) managers: Arc<parking_lot::Mutex<Managers>>,
    /// Makes the channel to a manager; `None`: plain HTTP/2.
    pub(crate) channels: Option<ChannelMaker>,
}

/// Runs one session to its end.
pub(crate) async fn run(shared: &Shared, addr: &str, cancel: &CancellationToken) -> SessionEnd {
    let registered = tokio::select! {
        registered = register(shared, addr) => registered,
        () = cancel.cancelled() => return SessionEnd::Cancelled,
    };
    let (client, session_id, stream, log_requests) = match registered {
        Ok(registered) => registered,
        Err(error) => {
            return SessionEnd::Failed {
                registered: false,
                error,
            };
        }
    };
    info!(session_id = %session_id, manager = %addr, "registered with the dispatcher");
    let session = cancel.child_token();
    let mut parts: JoinSet<Result<(), SessionError>> = JoinSet::new();
    let span = info_span!("session", session_id = %session_id);
    parts.spawn(
        heartbeat(client.clone(), session_id.clone(), session.clone()).instrument(span.clone()),
    );
    parts.spawn(
        assignments(
            client.clone(),
            session_id.clone(),
            Arc::clone(&shared.worker),
            shared.reporter.clone(),
            Plugins {
                executors: shared.executors.clone(),
                loader: shared.loader.clone(),
                installed: Arc::clone(&shared.installed),
                dir: shared.executors_dir.clone(),
            },
            session.clone(),
        )
        .instrument(span.clone()),
    );
    parts.spawn(
        listen(
            stream,
            log_requests,
            client.clone(),
            session_id.clone(),
            Arc::clone(&shared.logs),
            Announced {
                status: shared.status.clone(),
                managers: Arc::clone(&shared.managers),
            },
            session.clone(),
        )
        .instrument(span.clone()),
    );
    parts.spawn(
        flush(
            client,
            session_id,
            shared.reporter.clone(),
            shared.executors.clone(),
            session.clone(),
        )
        .instrument(span),
    );

    // The first part to end ends the session; the others are cancelled and joined.
    let mut first: Option<SessionError> = None;
    while let Some(joined) = parts.join_next().await {
        let error = match joined {
            Ok(Ok(())) if session.is_cancelled() => None,
            Ok(Ok(())) => Some(SessionError::Protocol("a session part ended early".into())),
            Ok(Err(error)) => Some(error),
            Err(error) => Some(SessionError::Join(error.to_string())),
        };
        session.cancel();
        if first.is_none() {
            first = error;
        }
    }
    shared.status.send_modify(|status| {
        status.registered = false;
        status.session_id = None;
        status.manager_addr = None;
    });
    match first {
        Some(error) if !cancel.is_cancelled() => SessionEnd::Failed {
            registered: true,
            error,
        },
        _ => SessionEnd::Cancelled,
    }
}

type Registered = (
    DispatcherClient<Channel>,
    String,
    tonic::Streaming<pb::SessionMessage>,
    Vec<pb::LogRequest>,
);

/// Connects, opens the session stream and reads its first message.
async fn register(shared: &Shared, addr: &str) -> Result<Registered, SessionError> {
    let channel = match &shared.channels {
        // The channel may connect lazily: the registration deadline below covers it.
        Some(make) => make(addr).map_err(SessionError::Channel)?,
        None => connect(addr).await?,
    };
    // A node's complete assignment set can be large (thousands of tasks): allow big messages.
    let mut client = DispatcherClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let request = pb::SessionRequest {
        node_id: shared.node_id.clone(),
        description: Some(shared.description.clone()),
    };
    let (stream, first) = timeout(RPC_TIMEOUT, async {
        let mut stream = client
            .session(request)
            .await
            .map_err(rpc("Session"))?
            .into_inner();
        let first = stream
            .message()
            .await
            .map_err(rpc("Session"))?
            .ok_or(SessionError::StreamEnded("session"))?;
        Ok::<_, SessionError>((stream, first))
    })
    .await
    .map_err(|_| SessionError::Timeout("registration"))??;
    if first.session_id.is_empty() {
        return Err(SessionError::Protocol(
            "the first session message carries no session id".into(),
        ));
    }
    let session_id = first.session_id.clone();
    shared.managers.lock().observe_success(addr);
    shared.status.send_modify(|status| {
        status.registered = true;
        status.session_id = Some(session_id.clone());
        status.manager_addr = Some(addr.to_string());
        status.registrations += 1;
    });
    // Log requests in the first message are answered by `listen`, with the later ones.
    let mut first = first;
    Announced {
        status: shared.status.clone(),
        managers: Arc::clone(&shared.managers),
    }
    .apply(&mut first);
    Ok((client, session_id, stream, first.log_requests))
}

/// A plain HTTP/2 channel to `addr`, connected within [`CONNECT_TIMEOUT`].
async fn connect(addr: &str) -> Result<Channel, SessionError> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|source| SessionError::Address {
            addr: addr.to_string(),
            source,
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    timeout(CONNECT_TIMEOUT, endpoint.connect())
        .await
        .map_err(|_| SessionError::Timeout("connecting"))?
        .map_err(|source| SessionError::Connect { source })
}

/// Heartbeats at the period the dispatcher asks for (a little under it).
async fn heartbeat(
    mut client: DispatcherClient<Channel>,
    session_id: String,
    cancel: CancellationToken,
) -> Result<(), SessionError> {
    loop {
        let request = pb::HeartbeatRequest {
            session_id: session_id.clone(),
        };
        let response = tokio::select! {
            response = timeout(RPC_TIMEOUT, client.heartbeat(request)) => response,
            () = cancel.cancelled() => return Ok(()),
        };
        let response = response
            .map_err(|_| SessionError::Timeout("Heartbeat"))?
            .map_err(rpc("Heartbeat"))?
            .into_inner();
        let period = swarm_proto::duration_from_pb("period", response.period)
            .map_err(|e| SessionError::Protocol(format!("heartbeat response: {e}")))?;
        let period = if period.is_zero() {
            DEFAULT_HEARTBEAT_PERIOD
        } else {
            period
        };
        let delay = period.mul_f64(rand::rng().random_range(0.9..1.0));
        debug!(?period, ?delay, "heartbeat sent");
        tokio::select! {
            () = sleep(delay) => {}
            () = cancel.cancelled() => return Ok(()),
        }
    }
}

/// Receives the assignment stream and hands it to the worker.
/// What a session needs to load the installed executors that come with assignments.
pub(crate) struct Plugins {
    pub(crate) executors: Executors,
    pub(crate) loader: Option<Arc<dyn ExecutorLoader>>,
    pub(crate) installed: Arc<Mutex<HashMap<String, String>>>,
    /// Where loaded components are kept for the next start (`None`: not kept).
    pub(crate) dir: Option<std::path::PathBuf>,
}

/// What is kept beside a delivered component.
#[derive(serde::Serialize, serde::Deserialize)]
struct Kept {
    digest: String,
    capabilities: Vec<String>,
}

/// Whether `name` is safe as a file name (plugin names are validated by the managers; an agent
/// does not trust them).
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Plugins {
    /// Loads the executors kept by an earlier run, before the stored tasks are adopted. A kept
    /// component whose bytes no longer match its digest is skipped (the managers send it again).
    pub(crate) async fn restore(&self) {
        let Some(dir) = &self.dir else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut components = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Some(name) = path
                .file_stem()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            let kept: Option<Kept> = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            let component = std::fs::read(dir.join(format!("{name}.wasm")));
            match (kept, component) {
                (Some(kept), Ok(component)) => components.push(pb::PluginComponent {
                    name,
                    digest: kept.digest,
                    capabilities: kept.capabilities,
                    component,
                }),
                _ => {
                    warn!(plugin = %name, dir = %dir.display(), "a kept executor is incomplete; skipped")
                }
            }
        }
        if !components.is_empty() {
            info!(
                executors = components.len(),
                "loading installed executors kept from the last run"
            );
            self.load(components).await;
        }
    }

    /// Keeps a loaded component for the next start; failures are logged, not fatal.
    fn keep(&self, plugin: &pb::PluginComponent) {
        let Some(dir) = &self.dir else {
            return;
        };
        if !safe_name(&plugin.name) {
            warn!(plugin = %plugin.name, "not keeping an executor whose name is not a safe file name");
            return;
        }
        let kept = Kept {
            digest: plugin.digest.clone(),
            capabilities: plugin.capabilities.clone(),
        };
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let wasm = dir.join(format!("{}.wasm", plugin.name));
            let json = dir.join(format!("{}.json", plugin.name));
            let tmp = dir.join(format!(".{}.wasm.tmp", plugin.name));
            std::fs::write(&tmp, &plugin.component)?;
            std::fs::rename(&tmp, &wasm)?;
            let tmp = dir.join(format!(".{}.json.tmp", plugin.name));
            std::fs::write(
                &tmp,
                serde_json::to_vec(&kept).map_err(std::io::Error::other)?,
            )?;
            std::fs::rename(&tmp, &json)
        };
        if let Err(e) = write() {
            warn!(plugin = %plugin.name, error = %e, "cannot keep an installed executor for the next start");
        }
    }

    /// Checks each component's digest and loads it as an executor under its installed name.
    /// A component that fails is logged and skipped: the tasks that need it fail with the
    /// executor missing from this node.
    async fn load(&self, components: Vec<pb::PluginComponent>) {
        for plugin in components {
            let loaded = self.installed.lock().await.get(&plugin.name) == Some(&plugin.digest);
            let quarantined = self
                .executors
                .get(&plugin.name)
                .and_then(|e| e.health())
                .is_some_and(|h| h.quarantined);
            // The same component again: nothing to do, unless its loaded copy was quarantined
            // (a new session after the operator lifted the quarantine gets a fresh one).
            if loaded && !quarantined {
                continue;
            }
            let Some(loader) = &self.loader else {
                warn!(plugin = %plugin.name, "this agent cannot load installed executors");
                continue;
            };
            let actual = swarm_plugin_host::component_digest(&plugin.component);
            if actual != plugin.digest {
                error!(
                    plugin = %plugin.name,
                    expected = %plugin.digest,
                    %actual,
                    "refusing an executor plugin whose bytes do not match its digest"
                );
                continue;
            }
            match loader
                .load(&plugin.name, &plugin.capabilities, &plugin.component)
                .await
            {
                Ok((info, executor)) => {
                    info!(
                        plugin = %plugin.name,
                        digest = %plugin.digest,
                        runtimes = %info.runtimes.join(","),
                        "installed executor loaded"
                    );
                    self.executors.insert(NamedExecutor { info, executor });
                    self.keep(&plugin);
                    self.installed
                        .lock()
                        .await
                        .insert(plugin.name, plugin.digest);
                }
                Err(e) => {
                    error!(plugin = %plugin.name, error = %e, "cannot load an installed executor");
                }
            }
        }
    }
}

async fn assignments(
    mut client: DispatcherClient<Channel>,
    session_id: String,
    worker: Arc<Mutex<Worker>>,
    reporter: Reporter,
    plugins: Plugins,
    cancel: CancellationToken,
) -> Result<(), SessionError> {
    let request = pb::AssignmentsRequest { session_id };
    let response = tokio::select! {
        response = timeout(RPC_TIMEOUT, client.assignments(request)) => response,
        () = cancel.cancelled() => return Ok(()),
    };
    let mut stream = response
        .map_err(|_| SessionError::Timeout("Assignments"))?
        .map_err(rpc("Assignments"))?
        .into_inner();
    let mut last: Option<String> = None;
    loop {
        let message = tokio::select! {
            message = stream.message() => message.map_err(rpc("Assignments"))?,
            () = cancel.cancelled() => return Ok(()),
        };
        let Some(message) = message else {
            return Err(SessionError::StreamEnded("assignments"));
        };
        let kind = pb::assignments_message::Type::try_from(message.r#type).map_err(|_| {
            SessionError::Protocol(format!("unknown assignments type {}", message.r#type))
        })?;
        // Executors, secrets and configs first, so the tasks that need them find them.
        plugins.load(message.plugins).await;
        worker
            .lock()
            .await
            .receive_files(message.secrets, message.configs);
        let (updates, removals) = decode_changes(message.changes, &reporter)?;
        match kind {
            pb::assignments_message::Type::Complete => {
                debug!(tasks = updates.len(), results_in = %message.results_in, "complete assignment set");
                worker.lock().await.assign_complete(updates).await?;
            }
            pb::assignments_message::Type::Incremental => {
                if last.as_deref() != Some(message.applies_to.as_str()) {
                    return Err(SessionError::Gap {
                        applies_to: message.applies_to,
                        last: last.unwrap_or_default(),
                    });
                }
                debug!(
                    updates = updates.len(),
                    removals = removals.len(),
                    results_in = %message.results_in,
                    "incremental assignments"
                );
                worker.lock().await.apply_changes(updates, removals).await?;
            }
        }
        last = Some(message.results_in);
    }
}

/// Splits changes into updated tasks and removed ids. A task that does not convert is
/// rejected (reported REJECTED with the reason) and left out.
fn decode_changes(
    changes: Vec<pb::AssignmentChange>,
    reporter: &Reporter,
) -> Result<(Vec<Task>, Vec<String>), SessionError> {
    let mut updates = Vec::new();
    let mut removals = Vec::new();
    for change in changes {
        let action = pb::assignment_change::Action::try_from(change.action).map_err(|_| {
            SessionError::Protocol(format!("unknown assignment action {}", change.action))
        })?;
        let Some(task) = change.task else {
            return Err(SessionError::Protocol(
                "an assignment change carries no task".into(),
            ));
        };
        match action {
            pb::assignment_change::Action::Remove => removals.push(task.id),
            pb::assignment_change::Action::Update => {
                let task_id = task.id.clone();
                match Task::try_from(task) {
                    Ok(task) => updates.push(task),
                    Err(error) => {
                        warn!(task_id = %task_id, %error, "rejecting an assignment that does not convert");
                        reporter.push(
                            &task_id,
                            TaskStatus {
                                state: TaskState::Rejected,
                                timestamp: Timestamp::now(),
                                message: "invalid assignment".into(),
                                err: format!("invalid task: {error}"),
                                exit: None,
                            },
                        );
                    }
                }
            }
        }
    }
    Ok((updates, removals))
}

/// Reads the session stream: manager list updates and log requests.
async fn listen(
    mut stream: tonic::Streaming<pb::SessionMessage>,
    first_requests: Vec<pb::LogRequest>,
    client: DispatcherClient<Channel>,
    session_id: String,
    logs: Arc<dyn LogReader>,
    announced: Announced,
    cancel: CancellationToken,
) -> Result<(), SessionError> {
    let mut answers = JoinSet::new();
    for request in first_requests {
        answers.spawn(
            answer_logs(
                client.clone(),
                session_id.clone(),
                Arc::clone(&logs),
                request,
            )
            .in_current_span(),
        );
    }
    let result = loop {
        tokio::select! {
            message = stream.message() => match message {
                Ok(Some(mut message)) => {
                    announced.apply(&mut message);
                    for request in message.log_requests {
                        answers.spawn(answer_logs(client.clone(), session_id.clone(), Arc::clone(&logs), request).in_current_span());
                    }
                }
                Ok(None) => break Err(SessionError::StreamEnded("session")),
                Err(error) => break Err(rpc("Session")(error)),
            },
            Some(_) = answers.join_next(), if !answers.is_empty() => {}
            () = cancel.cancelled() => break Ok(()),
        }
    };
    answers.shutdown().await;
    result
}

/// Where the managers a session message announces go: the agent's list and its status.
struct Announced {
    status: watch::Sender<AgentStatus>,
    managers: Arc<parking_lot::Mutex<Managers>>,
}

impl Announced {
    /// The announced managers, if any, become the list the agent picks from; the node's desired
    /// role is recorded.
    fn apply(&self, message: &mut pb::SessionMessage) {
        let desired = message
            .node
            .as_ref()
            .and_then(|node| node.spec.as_ref())
            .and_then(|spec| pb::NodeRole::try_from(spec.desired_role).ok())
            .map(|role| match role {
                pb::NodeRole::Manager => swarm_types::NodeRole::Manager,
                pb::NodeRole::Worker => swarm_types::NodeRole::Worker,
            });
        if let Some(role) = desired {
            self.status.send_if_modified(|status| {
                let changed = status.desired_role != Some(role);
                status.desired_role = Some(role);
                changed
            });
        }
        if message.managers.is_empty() {
            return;
        }
        let managers: Vec<ManagerPeer> = std::mem::take(&mut message.managers)
            .into_iter()
            .map(|peer| ManagerPeer {
                node_id: peer.node_id,
                addr: peer.addr,
                weight: peer.weight,
            })
            .collect();
        self.managers.lock().replace_from_announcement(&managers);
        self.status.send_modify(|status| status.managers = managers);
    }
}

/// Reads a task's logs and publishes them; failures are logged, never fatal to the session.
async fn answer_logs(
    mut client: DispatcherClient<Channel>,
    session_id: String,
    logs: Arc<dyn LogReader>,
    request: pb::LogRequest,
) {
    let task_id = request.task_id.clone();
    let tail = request.tail_bytes;
    let read = async {
        let stdout = logs.read_logs(&task_id, LogStream::Stdout, tail).await?;
        let stderr = logs.read_logs(&task_id, LogStream::Stderr, tail).await?;
        Ok::<_, crate::executor::ExecutorError>((stdout, stderr))
    }
    .await;
    let (stdout, stderr, error) = match read {
        Ok((stdout, stderr)) => (stdout, stderr, String::new()),
        Err(error) => (Vec::new(), Vec::new(), error.to_string()),
    };
    let publish = pb::PublishLogsRequest {
        session_id,
        request_id: request.request_id.clone(),
        stdout,
        stderr,
        error,
    };
    match timeout(RPC_TIMEOUT, client.publish_logs(publish)).await {
        Ok(Ok(_)) => {
            debug!(request_id = %request.request_id, task_id = %request.task_id, "logs published")
        }
        Ok(Err(status)) => warn!(request_id = %request.request_id, %status, "publishing logs"),
        Err(_) => warn!(request_id = %request.request_id, "publishing logs timed out"),
    }
}

/// Sends queued statuses in batches, one call in flight at a time.
async fn flush(
    mut client: DispatcherClient<Channel>,
    session_id: String,
    reporter: Reporter,
    executors: Executors,
    cancel: CancellationToken,
) -> Result<(), SessionError> {
    // Quarantined executors already reported in this session.
    let mut reported: HashSet<String> = HashSet::new();
    loop {
        while reporter.len() == 0 {
            tokio::select! {
                () = reporter.notified() => {}
                () = cancel.cancelled() => return Ok(()),
            }
        }
        let deadline = Instant::now() + FLUSH_INTERVAL;
        while reporter.len() < MAX_BATCH {
            tokio::select! {
                () = sleep_until(deadline) => break,
                () = reporter.notified() => {}
                () = cancel.cancelled() => return Ok(()),
            }
        }
        let batch = reporter.take_batch(MAX_BATCH);
        // A quarantined executor fails its tasks, so its report rides with their statuses.
        let quarantined = executors.quarantined();
        // An executor replaced since (its quarantine lifted) is reported again if it fails again.
        reported.retain(|name| quarantined.iter().any(|(q, _)| q == name));
        let plugins: Vec<pb::PluginHealthReport> = quarantined
            .into_iter()
            .filter(|(name, _)| !reported.contains(name))
            .map(|(name, health)| pb::PluginHealthReport {
                name,
                quarantined: health.quarantined,
                failures: health.failures,
                message: health.last_error,
            })
            .collect();
        let reporting: Vec<String> = plugins.iter().map(|p| p.name.clone()).collect();
        let request = pb::UpdateTaskStatusRequest {
            session_id: session_id.clone(),
            plugins,
            updates: batch
                .iter()
                .map(|(task_id, status)| pb::TaskStatusUpdate {
                    task_id: task_id.clone(),
                    status: Some(status.clone().into()),
                })
                .collect(),
        };
        let sent = tokio::select! {
            sent = timeout(RPC_TIMEOUT, client.update_task_status(request)) => sent,
            () = cancel.cancelled() => {
                reporter.restore(batch);
                return Ok(());
            }
        };
        match sent {
            Ok(Ok(_)) => {
                debug!(updates = batch.len(), "task statuses sent");
                reported.extend(reporting);
            }
            Ok(Err(status)) => {
                reporter.restore(batch);
                return Err(rpc("UpdateTaskStatus")(status));
            }
            Err(_) => {
                reporter.restore(batch);
                return Err(SessionError::Timeout("UpdateTaskStatus"));
            }
        }
    }
}

fn rpc(call: &'static str) -> impl Fn(tonic::Status) -> SessionError {
    move |status| SessionError::Rpc { call, status }
}

#[cfg(test)]
mod tests {
    //! Loading installed executors from assignments: digests are checked before anything loads.

    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::FutureExt;
    use futures::future::BoxFuture;

    use super::*;
    use crate::controller::tests::Fake;
    use crate::executor::{ExecState, Executor, ExecutorError, ExecutorInfo, LoadedExecutor};

    /// Counts loads and hands out a fake executor that says it runs `echo` tasks.
    #[derive(Default)]
    struct CountingLoader {
        loads: AtomicUsize,
    }

    impl ExecutorLoader for CountingLoader {
        fn load<'a>(
            &'a self,
            name: &'a str,
            _capabilities: &'a [String],
            _component: &'a [u8],
        ) -> BoxFuture<'a, Result<LoadedExecutor, ExecutorError>> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            let info = ExecutorInfo {
                name: name.to_string(),
                runtimes: vec!["echo".into()],
                engine: None,
            };
            let fake: Arc<dyn Executor> = Fake::new(ExecState::Missing, &[]);
            async move { Ok((info, fake)) }.boxed()
        }
    }

    /// What an agent starts with: no installed executor loaded, components kept in `dir`.
    fn fresh(loader: &Arc<CountingLoader>, dir: &std::path::Path) -> Plugins {
        Plugins {
            executors: Executors::default(),
            loader: Some(Arc::clone(loader) as Arc<dyn ExecutorLoader>),
            installed: Arc::default(),
            dir: Some(dir.to_path_buf()),
        }
    }

    fn component(name: &str, bytes: &[u8], digest: Option<&str>) -> pb::PluginComponent {
        pb::PluginComponent {
            name: name.into(),
            digest: digest.map_or_else(
                || swarm_plugin_host::component_digest(bytes),
                str::to_string,
            ),
            capabilities: vec!["process".into()],
            component: bytes.to_vec(),
        }
    }

    #[tokio::test]
    async fn components_load_once_and_only_with_their_digest() {
        let loader = Arc::new(CountingLoader::default());
        let dir = tempfile::tempdir().expect("temp dir");
        let plugins = fresh(&loader, dir.path());
        let forged = "sha256:".to_string() + &"0".repeat(64);
        plugins
            .load(vec![component("evil", b"some bytes", Some(&forged))])
            .await;
        assert_eq!(
            loader.loads.load(Ordering::SeqCst),
            0,
            "a bad digest loads nothing"
        );
        assert!(plugins.executors.get("evil").is_none());

        plugins.load(vec![component("echo", b"v1", None)]).await;
        plugins.load(vec![component("echo", b"v1", None)]).await;
        assert_eq!(
            loader.loads.load(Ordering::SeqCst),
            1,
            "same digest: loaded once"
        );
        assert!(plugins.executors.get("echo").is_some());
        // A new version under the same name replaces it.
        plugins.load(vec![component("echo", b"v2", None)]).await;
        assert_eq!(loader.loads.load(Ordering::SeqCst), 2);
        assert_eq!(plugins.executors.infos().len(), 1);
        assert!(
            !dir.path().join("evil.wasm").exists(),
            "a refused component is not kept"
        );

        // A restarted agent loads what was kept, the latest version, before any session.
        let restarted = fresh(&loader, dir.path());
        restarted.restore().await;
        assert_eq!(loader.loads.load(Ordering::SeqCst), 3);
        assert!(restarted.executors.get("echo").is_some());
        let expected = swarm_plugin_host::component_digest(b"v2");
        assert_eq!(
            restarted.installed.lock().await.get("echo"),
            Some(&expected)
        );
        // Kept bytes that no longer match their digest are not loaded.
        std::fs::write(dir.path().join("echo.wasm"), b"tampered").expect("write");
        let tampered = fresh(&loader, dir.path());
        tampered.restore().await;
        assert_eq!(loader.loads.load(Ordering::SeqCst), 3);
        assert!(tampered.executors.get("echo").is_none());
    }
}
