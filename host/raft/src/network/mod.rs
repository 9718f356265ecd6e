//! The raft network over tonic: the client openraft uses to reach peers, and the gRPC service
//! (`swarm.v1.Raft`) that hands peers' requests to the local openraft.
//!
//! Messages carry openraft's small fields as JSON (`header`) and log entries in the log's own
//! binary encoding (`entries`, `store::codec`), so command bytes are never spelled out as JSON
//! arrays; snapshot chunks travel as raw bytes (`data`). Answers are openraft's
//! `Result<response, error>` as JSON; a remote error comes back as `RPCError::RemoteError`.
//!
//! Client: how peers are reached (plaintext or mutual TLS) is decided by the [`ChannelMaker`]
//! the caller gives; one channel is kept per peer address. With a [`StreamMaker`] too,
//! AppendEntries (entries and heartbeats) travel on an append lane instead ([`stream`]: one
//! long-lived framed connection per peer, about a third faster per write than a gRPC call);
//! votes and snapshots stay on gRPC. Transport failures are
//! `Unreachable` (openraft backs off), an answer later than `RPCOption::hard_ttl` is `Timeout`.
//! An AppendEntries larger than [`APPEND_ENTRIES_BUDGET_BYTES`] is not sent: openraft is told
//! `PayloadTooLarge` with how many entries fit, and retries with fewer (a single entry is
//! always sent). Answers that contradict the request (which would trip openraft's assertions)
//! are network errors.
//!
//! Service: undecodable or inconsistent requests (entries not following `prev_log_id`,
//! snapshot chunks that skip ahead of the bytes received) are `InvalidArgument` naming what is
//! wrong; nothing a peer sends can panic the node or make it allocate beyond the message.
//!
//! Sizes: snapshots go in chunks of [`SNAPSHOT_CHUNK_BYTES`]; a message may be up to
//! [`MAX_RAFT_MESSAGE_BYTES`] (one entry may hold a large command, e.g. a plugin component or a
//! scheduler batch), and a proposal larger than [`MAX_COMMAND_BYTES`] is refused so that every
//! entry can be replicated.
//!
//! Slow entries: openraft 0.9 gives every AppendEntries `heartbeat_interval` to complete
//! (transfer plus the follower's fsync). One carrying entries that misses it is not cancelled:
//! it continues in its own task (up to 2 minutes), and openraft's retries of the same entries
//! wait for it instead of sending them again (`PendingAppend`). So a large entry over a slow
//! link still gets through, at the cost of `Timeout`s in the log meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::BasicNode;
use openraft::LogIdOptionExt;
use openraft::RPCTypes;
use openraft::RaftNetwork;
use openraft::RaftNetworkFactory;
use openraft::error::InstallSnapshotError;
use openraft::error::NetworkError;
use openraft::error::PayloadTooLarge;
use openraft::error::RPCError;
use openraft::error::RaftError;
use openraft::error::RemoteError;
use openraft::error::Timeout;
use openraft::error::Unreachable;
use openraft::network::RPCOption;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::InstallSnapshotRequest;
use openraft::raft::InstallSnapshotResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use parking_lot::Mutex;
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use swarm_proto::pb;
use tonic::transport::Channel;

use crate::store::DurableWatch;
use crate::store::codec;

pub(crate) mod stream;

use crate::types::{Entry, LogId, NodeId, Raft, SnapshotMeta, TypeConfig, Vote};
use stream::{Answer, AppendFrame, StreamMaker};

/// Makes a channel to a peer's address (`host:port`). Channels should connect lazily: the
/// network keeps one per address and reuses it across reconnections.
pub type ChannelMaker = Arc<dyn Fn(&str) -> Result<Channel, String> + Send + Sync + 'static>;

/// Largest chunk of a snapshot sent in one message (openraft's `snapshot_max_chunk_size`).
pub(crate) const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;
/// Largest raft message a node encodes or decodes (client and [`RaftNode::grpc_service`]).
///
/// [`RaftNode::grpc_service`]: crate::RaftNode::grpc_service
pub const MAX_RAFT_MESSAGE_BYTES: usize = 256 << 20;
/// Largest command [`RaftNode::propose`](crate::RaftNode::propose) accepts: its log entry, with
/// the message's framing, must fit in one raft message or it could never be replicated.
pub const MAX_COMMAND_BYTES: usize = MAX_RAFT_MESSAGE_BYTES - (1 << 20);
/// An AppendEntries stops growing at this many bytes of entries (one entry is always sent, up
/// to [`MAX_RAFT_MESSAGE_BYTES`]): a lagging follower receives many small requests rather than
/// one that cannot cross the network within openraft's deadline.
pub const APPEND_ENTRIES_BUDGET_BYTES: usize = 8 << 20;
/// Connect timeout of [`plain_channels`].
const PLAIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Channels kept per factory before the cache is emptied (addresses of departed members).
const MAX_CACHED_CHANNELS: usize = 64;

/// Plaintext HTTP/2 channels (`http://addr`, lazy, 1 s connect timeout): tests and benchmarks;
/// swarmd uses mutual TLS.
pub fn plain_channels() -> ChannelMaker {
    Arc::new(|addr: &str| {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map(|endpoint| {
                endpoint
                    .connect_timeout(PLAIN_CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .connect_lazy()
            })
            .map_err(|e| format!("address {addr:?}: {e}"))
    })
}

/// When each peer last answered an RPC (for reachability).
#[derive(Clone, Default)]
pub(crate) struct PeerContacts {
    last: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

impl PeerContacts {
    fn record(&self, peer: NodeId) {
        self.last.lock().insert(peer, Instant::now());
    }

    /// Whether `peer` answered within `window`.
    pub(crate) fn seen_within(&self, peer: NodeId, window: Duration) -> bool {
        self.last
            .lock()
            .get(&peer)
            .is_some_and(|at| at.elapsed() <= window)
    }
}

/// Creates a client per peer; openraft calls it when it replicates to or asks a vote of a peer.
#[derive(Clone)]
pub(crate) struct NetworkFactory {
    /// This node's id (named in timeouts).
    local: NodeId,
    channels: ChannelMaker,
    contacts: PeerContacts,
    /// One channel per peer address: openraft asks for a new client every election and every
    /// replication stream, and each channel is a connection (and a TLS handshake).
    cache: Arc<Mutex<HashMap<String, Channel>>>,
    /// The local log's durable mark: no commit index is sent ahead of it.
    durable: DurableWatch,
    /// Opens append lanes; none: AppendEntries go over gRPC.
    lanes: Option<StreamMaker>,
}

impl NetworkFactory {
    pub(crate) fn new(
        local: NodeId,
        channels: ChannelMaker,
        lanes: Option<StreamMaker>,
        contacts: PeerContacts,
        durable: DurableWatch,
    ) -> Self {
        Self {
            local,
            channels,
            contacts,
            cache: Arc::default(),
            durable,
            lanes,
        }
    }

    /// The cached channel to `addr`, made on first use (a failure is not cached).
    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut cache = self.cache.lock();
        if let Some(channel) = cache.get(addr) {
            return Ok(channel.clone());
        }
        let channel = (self.channels)(addr)?;
        if cache.len() >= MAX_CACHED_CHANNELS {
            cache.clear();
        }
        cache.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerClient {
            peer: Peer {
                local: self.local,
                target,
                addr: node.addr.clone(),
                contacts: self.contacts.clone(),
            },
            channel: self.channel(&node.addr),
            pending: None,
            durable: self.durable.clone(),
            lane: self
                .lanes
                .clone()
                .map(|maker| Lane::new(maker, node.addr.clone())),
        }
    }
}

/// A transport failure to one peer, for openraft's `Unreachable`/`NetworkError`.
#[derive(Debug, thiserror::Error)]
#[error("raft peer {target} at {addr}: {message}")]
struct PeerError {
    target: NodeId,
    addr: String,
    message: String,
}

/// Who a client talks to, for errors and reachability (cheap to clone into a task).
#[derive(Clone)]
struct Peer {
    local: NodeId,
    target: NodeId,
    addr: String,
    contacts: PeerContacts,
}

/// A client to one peer (one per replication stream or election).
pub(crate) struct PeerClient {
    peer: Peer,
    channel: Result<Channel, String>,
    /// An AppendEntries that outlived openraft's deadline and is still being sent (see
    /// [`PendingAppend`]).
    pending: Option<PendingAppend>,
    durable: DurableWatch,
    /// The append lane to the peer, when the node has a [`StreamMaker`].
    lane: Option<Lane>,
}

/// How long AppendEntries go over gRPC after an append lane could not be opened (a peer that
/// is down, or one running a version without lanes) before a lane is tried again.
const LANE_RETRY_AFTER: Duration = Duration::from_secs(10);

/// One append-lane connection to a peer, opened on first use and reopened after any failure.
#[derive(Clone)]
struct Lane {
    maker: StreamMaker,
    addr: String,
    /// Taken for an exchange and put back only after a complete answer.
    conn: Arc<Mutex<Option<stream::BoxedStream>>>,
    /// When opening the lane last failed.
    failed_at: Arc<Mutex<Option<Instant>>>,
}

impl Lane {
    fn new(maker: StreamMaker, addr: String) -> Self {
        Self {
            maker,
            addr,
            conn: Arc::default(),
            failed_at: Arc::default(),
        }
    }

    /// Whether to use the lane now, or gRPC for a while after it could not be opened.
    fn usable(&self) -> bool {
        self.failed_at
            .lock()
            .is_none_or(|at| at.elapsed() >= LANE_RETRY_AFTER)
    }

    async fn exchange(&self, request: &[u8]) -> Result<Answer, String> {
        let idle = self.conn.lock().take();
        let mut conn = match idle {
            Some(conn) => conn,
            None => match (self.maker)(&self.addr).await {
                Ok(conn) => {
                    *self.failed_at.lock() = None;
                    conn
                }
                Err(e) => {
                    *self.failed_at.lock() = Some(Instant::now());
                    return Err(format!("opening an append lane: {e}"));
                }
            },
        };
        let answer = stream::exchange(&mut conn, request)
            .await
            .map_err(|e| e.to_string())?;
        // The server closes a lane after refusing a request.
        if !matches!(answer, Answer::Refused(_)) {
            *self.conn.lock() = Some(conn);
        }
        Ok(answer)
    }
}

/// How an AppendEntries travels: over gRPC, or over the append lane.
enum Route {
    Grpc(Channel, pb::RaftMessage),
    Lane(Lane, Vec<u8>),
}

type AppendResult =
    Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>>;

/// An AppendEntries carrying entries that did not complete within openraft's deadline (its
/// `heartbeat_interval`, which a large entry over a slow link cannot meet). It keeps going in
/// its own task instead of being cancelled; openraft retries with the same `prev_log_id`, and a
/// retry that covers these entries waits for this request rather than sending them again, then
/// answers with how far it matched. Without this an entry that takes longer than a heartbeat
/// interval to send and store would be retried, from scratch, forever.
struct PendingAppend {
    vote: Vote,
    prev: Option<LogId>,
    last: Option<LogId>,
    task: tokio::task::JoinHandle<AppendResult>,
}

impl Drop for PeerClient {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.task.abort();
        }
    }
}

#[derive(Serialize, Deserialize)]
struct AppendHeader {
    vote: Vote,
    prev_log_id: Option<LogId>,
    leader_commit: Option<LogId>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    vote: Vote,
    meta: SnapshotMeta,
    offset: u64,
    done: bool,
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("encoding: {e}"))
}

fn from_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("{what}: {e}"))
}

/// Bytes an encoded entry adds to a message (protobuf tag and length included).
fn framed_len(entry: &[u8]) -> usize {
    entry.len() + 16
}

/// Longest an AppendEntries continues after openraft's deadline (see [`PendingAppend`]).
const PENDING_APPEND_LIMIT: Duration = Duration::from_secs(120);

impl Peer {
    fn error(&self, message: String) -> PeerError {
        PeerError {
            target: self.target,
            addr: self.addr.clone(),
            message,
        }
    }

    fn network_error<E: std::error::Error>(
        &self,
        message: String,
    ) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&self.error(message)))
    }

    fn timeout<E: std::error::Error>(
        &self,
        action: RPCTypes,
        after: Duration,
    ) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Timeout(Timeout {
            action,
            id: self.local,
            target: self.target,
            timeout: after,
        })
    }

    /// Sends one message and decodes the peer's `Result<R, E>` (no deadline of its own).
    async fn send<R, E>(
        &self,
        channel: Channel,
        rpc: RPCTypes,
        message: pb::RaftMessage,
    ) -> Result<R, RPCError<NodeId, BasicNode, E>>
    where
        R: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut client = pb::raft_client::RaftClient::new(channel)
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES);
        let response = match rpc {
            RPCTypes::Vote => client.vote(message).await,
            RPCTypes::InstallSnapshot => client.install_snapshot(message).await,
            RPCTypes::AppendEntries => client.append_entries(message).await,
        };
        let response = match response {
            Err(status) => {
                let error = self.error(format!("{rpc}: {}", status.message()));
                return Err(match status.code() {
                    // Refused by the peer's checks (a bad certificate, an undecodable message):
                    // not a transient failure, but openraft only distinguishes these two.
                    tonic::Code::InvalidArgument
                    | tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated => RPCError::Network(NetworkError::new(&error)),
                    _ => RPCError::Unreachable(Unreachable::new(&error)),
                });
            }
            Ok(response) => response.into_inner(),
        };
        self.decode(rpc, &response.header)
    }

    /// Decodes a peer's answer, openraft's `Result<R, E>` as JSON.
    #[expect(
        clippy::result_large_err,
        reason = "openraft's own error type, handed back to openraft as is"
    )]
    fn decode<R, E>(
        &self,
        rpc: RPCTypes,
        header: &[u8],
    ) -> Result<R, RPCError<NodeId, BasicNode, E>>
    where
        R: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        self.contacts.record(self.target);
        let result: Result<R, E> = from_json(header, &rpc.to_string())
            .map_err(|e| self.network_error(format!("undecodable answer: {e}")))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    /// Sends an AppendEntries the way `route` says (no deadline of its own).
    async fn send_append(
        &self,
        route: Route,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let (lane, request) = match route {
            Route::Grpc(channel, message) => {
                return self.send(channel, RPCTypes::AppendEntries, message).await;
            }
            Route::Lane(lane, request) => (lane, request),
        };
        match lane.exchange(&request).await {
            Ok(Answer::Ok(header)) => self.decode(RPCTypes::AppendEntries, &header),
            // Refused by the peer's checks: not transient (as for gRPC's InvalidArgument).
            Ok(Answer::Refused(message)) => {
                Err(self.network_error(format!("append_entries: {message}")))
            }
            Ok(Answer::Failed(message)) => Err(RPCError::Unreachable(Unreachable::new(
                &self.error(format!("append_entries: {message}")),
            ))),
            Err(message) => Err(RPCError::Unreachable(Unreachable::new(
                &self.error(message),
            ))),
        }
    }
}

impl PeerClient {
    /// The channel to the peer; when it could not be made, why, as openraft's `Unreachable`.
    fn channel(&self) -> Result<Channel, Unreachable> {
        self.channel
            .clone()
            .map_err(|e| Unreachable::new(&self.peer.error(e)))
    }

    /// Sends one message within `option`'s hard deadline.
    async fn call<R, E>(
        &mut self,
        rpc: RPCTypes,
        message: pb::RaftMessage,
        option: &RPCOption,
    ) -> Result<R, RPCError<NodeId, BasicNode, E>>
    where
        R: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let channel = self.channel()?;
        let ttl = option.hard_ttl();
        match tokio::time::timeout(ttl, self.peer.send(channel, rpc, message)).await {
            Ok(result) => result,
            Err(_) => Err(self.peer.timeout(rpc, ttl)),
        }
    }

    /// Waits (within `ttl`) for the pending AppendEntries when `request` covers its entries:
    /// `None` when there is none to wait for.
    async fn await_pending(
        &mut self,
        request: (&Vote, Option<LogId>, Option<LogId>),
        ttl: Duration,
    ) -> Option<AppendResult> {
        let (vote, prev, last) = request;
        let superseded = self
            .pending
            .as_ref()
            .is_some_and(|p| p.vote != *vote || p.prev != prev);
        if superseded && let Some(pending) = self.pending.take() {
            pending.task.abort();
        }
        let pending = self.pending.as_mut().filter(|p| last >= p.last)?;
        let joined = match tokio::time::timeout(ttl, &mut pending.task).await {
            Err(_) => return Some(Err(self.peer.timeout(RPCTypes::AppendEntries, ttl))),
            Ok(joined) => joined,
        };
        let pending_last = pending.last;
        self.pending = None;
        let answer = match joined {
            Err(e) => Err(self.peer.network_error(format!("append_entries task: {e}"))),
            // The entries sent before all match: say how far, for the entries of this request.
            Ok(Ok(AppendEntriesResponse::Success)) if pending_last < last => {
                Ok(AppendEntriesResponse::PartialSuccess(pending_last))
            }
            Ok(result) => result,
        };
        Some(answer)
    }
}

/// How many of `entries` (encoded) fit in [`APPEND_ENTRIES_BUDGET_BYTES`]; at least one.
fn entries_within_budget(entries: &[Vec<u8>]) -> usize {
    let mut bytes = 0;
    let mut count = 0;
    for entry in entries {
        bytes += framed_len(entry);
        if count > 0 && bytes > APPEND_ENTRIES_BUDGET_BYTES {
            break;
        }
        count += 1;
    }
    count.max(1)
}

/// Why an AppendEntries answer contradicts its request (openraft asserts on these).
fn check_append_answer(
    request: (&Vote, Option<LogId>, Option<LogId>),
    answer: &AppendEntriesResponse<NodeId>,
) -> Result<(), String> {
    let (vote, prev, last) = request;
    match answer {
        AppendEntriesResponse::Success => Ok(()),
        AppendEntriesResponse::Conflict if prev.is_none() => {
            Err("answered Conflict to entries starting the log".into())
        }
        AppendEntriesResponse::Conflict => Ok(()),
        AppendEntriesResponse::PartialSuccess(matching) => {
            if *matching > last || *matching < prev || matching.index() > last.index() {
                Err(format!(
                    "answered a match at {matching:?} outside the entries sent ({prev:?}, {last:?}]"
                ))
            } else {
                Ok(())
            }
        }
        AppendEntriesResponse::HigherVote(higher) => {
            if higher > vote {
                Ok(())
            } else {
                Err(format!(
                    "answered HigherVote {higher} that is not above {vote}"
                ))
            }
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let ttl = option.hard_ttl();
        let last = rpc
            .entries
            .last()
            .map(|entry| entry.log_id)
            .or(rpc.prev_log_id);
        if let Some(answer) = self
            .await_pending((&rpc.vote, rpc.prev_log_id, last), ttl)
            .await
        {
            return answer;
        }
        // A follower may apply what it is told is committed: only what this log holds on disk.
        if let Some(committed) = rpc.leader_commit {
            self.durable
                .wait(committed.index)
                .await
                .map_err(|e| self.peer.network_error(format!("local raft log: {e}")))?;
        }
        let entries = rpc
            .entries
            .iter()
            .map(codec::encode_entry)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.peer.network_error(format!("encoding entries: {e}")))?;
        let fit = entries_within_budget(&entries);
        if fit < entries.len() {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fit as u64),
            ));
        }
        let header = json(&AppendHeader {
            vote: rpc.vote,
            prev_log_id: rpc.prev_log_id,
            leader_commit: rpc.leader_commit,
        })
        .map_err(|e| self.peer.network_error(e))?;
        let route = match self.lane.as_ref().filter(|lane| lane.usable()) {
            Some(lane) => Route::Lane(
                lane.clone(),
                stream::encode_request(&AppendFrame { header, entries })
                    .map_err(|e| self.peer.network_error(e.to_string()))?,
            ),
            None => Route::Grpc(
                self.channel()?,
                pb::RaftMessage {
                    header,
                    entries,
                    data: Vec::new(),
                },
            ),
        };
        let request = (rpc.vote, rpc.prev_log_id, last);
        if rpc.entries.is_empty() {
            // A heartbeat: nothing worth continuing past the deadline.
            let answer = match tokio::time::timeout(ttl, self.peer.send_append(route)).await {
                Ok(answer) => answer?,
                Err(_) => return Err(self.peer.timeout(RPCTypes::AppendEntries, ttl)),
            };
            check_append_answer((&request.0, request.1, request.2), &answer)
                .map_err(|e| self.peer.network_error(e))?;
            return Ok(answer);
        }
        let peer = self.peer.clone();
        // Sent from this task while it is within openraft's deadline (a spawned task would cost
        // a wake-up on every append); only a request that outlives the deadline moves to its
        // own task and keeps going.
        let mut work: std::pin::Pin<Box<dyn Future<Output = AppendResult> + Send>> =
            Box::pin(async move {
                let sent = peer.send_append(route);
                let answer: AppendEntriesResponse<NodeId> =
                    match tokio::time::timeout(PENDING_APPEND_LIMIT, sent).await {
                        Ok(answer) => answer?,
                        Err(_) => {
                            return Err(peer.timeout(RPCTypes::AppendEntries, PENDING_APPEND_LIMIT));
                        }
                    };
                check_append_answer((&request.0, request.1, request.2), &answer)
                    .map_err(|e| peer.network_error(e))?;
                Ok(answer)
            });
        match tokio::time::timeout(ttl, &mut work).await {
            Ok(answer) => answer,
            Err(_) => {
                // Else a request with more entries is already under way: this one is dropped.
                if self.pending.is_none() {
                    self.pending = Some(PendingAppend {
                        vote: rpc.vote,
                        prev: rpc.prev_log_id,
                        last,
                        task: tokio::spawn(work),
                    });
                }
                Err(self.peer.timeout(RPCTypes::AppendEntries, ttl))
            }
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let header = json(&SnapshotHeader {
            vote: rpc.vote,
            meta: rpc.meta,
            offset: rpc.offset,
            done: rpc.done,
        })
        .map_err(|e| self.peer.network_error(e))?;
        let message = pb::RaftMessage {
            header,
            entries: Vec::new(),
            data: rpc.data,
        };
        self.call(RPCTypes::InstallSnapshot, message, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let header = json(&rpc).map_err(|e| self.peer.network_error(e))?;
        let message = pb::RaftMessage {
            header,
            entries: Vec::new(),
            data: Vec::new(),
        };
        self.call(RPCTypes::Vote, message, &option).await
    }
}

/// Where the snapshot being received stands: the id and how far its bytes reach. openraft
/// seeks its buffer to a chunk's offset, so an offset beyond the bytes received would grow the
/// buffer to that size; such chunks are refused here.
#[derive(Clone, Default)]
pub(crate) struct SnapshotReception {
    current: Arc<tokio::sync::Mutex<Option<(String, u64)>>>,
}

/// The `swarm.v1.Raft` service: peers' requests, handed to the local openraft.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
    reception: SnapshotReception,
    /// The local log's durable mark: entries are acknowledged only once on disk.
    durable: DurableWatch,
}

impl RaftService {
    pub(crate) fn new(raft: Raft, reception: SnapshotReception, durable: DurableWatch) -> Self {
        Self {
            raft,
            reception,
            durable,
        }
    }
}

fn bad_request(rpc: &str, e: impl std::fmt::Display) -> tonic::Status {
    tonic::Status::invalid_argument(format!("{rpc}: {e}"))
}

fn answer<T: Serialize>(result: &T) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
    let header = serde_json::to_vec(result)
        .map_err(|e| tonic::Status::internal(format!("encoding the answer: {e}")))?;
    Ok(tonic::Response::new(pb::RaftMessage {
        header,
        entries: Vec::new(),
        data: Vec::new(),
    }))
}

/// Checks that `entries` follow `prev_log_id` one index at a time, with terms that never
/// decrease and never exceed the sender's vote (openraft assumes all of this).
fn check_entries(header: &AppendHeader, entries: &[Entry]) -> Result<(), String> {
    let mut expected = match header.prev_log_id {
        None => Some(0),
        Some(prev) => prev.index.checked_add(1),
    };
    let mut term = header.prev_log_id.map_or(0, |id| id.leader_id.term);
    for entry in entries {
        let id = entry.log_id;
        if Some(id.index) != expected {
            return Err(format!(
                "entry {id} does not follow the previous entry {:?}",
                header.prev_log_id
            ));
        }
        if id.leader_id.term < term {
            return Err(format!("entry {id} has a term below the entry before it"));
        }
        if id.leader_id.term > header.vote.leader_id.term {
            return Err(format!(
                "entry {id} has a term above the vote {}",
                header.vote
            ));
        }
        term = id.leader_id.term;
        expected = id.index.checked_add(1);
    }
    Ok(())
}

impl RaftService {
    /// Handles one AppendEntries (header and encoded entries, from gRPC or an append lane):
    /// openraft's answer as JSON once what it matches is on disk.
    async fn append(&self, header: &[u8], entries: &[Vec<u8>]) -> Result<Vec<u8>, tonic::Status> {
        const RPC: &str = "append_entries";
        let header: AppendHeader = from_json(header, "header").map_err(|e| bad_request(RPC, e))?;
        let entries = entries
            .iter()
            .map(|bytes| codec::decode_entry(bytes))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_request(RPC, e))?;
        check_entries(&header, &entries).map_err(|e| bad_request(RPC, e))?;
        let last_index = entries.last().map(|entry| entry.log_id.index);
        let result = self
            .raft
            .append_entries(AppendEntriesRequest {
                vote: header.vote,
                prev_log_id: header.prev_log_id,
                entries,
                leader_commit: header.leader_commit,
            })
            .await;
        // The leader counts what this answer matches toward its quorum: it must be on disk.
        let matched = match &result {
            Ok(AppendEntriesResponse::Success) => last_index,
            Ok(AppendEntriesResponse::PartialSuccess(matching)) => matching.map(|m| m.index),
            _ => None,
        };
        if let Some(index) = matched {
            self.durable
                .wait(index)
                .await
                .map_err(|e| tonic::Status::internal(format!("{RPC}: local raft log: {e}")))?;
        }
        serde_json::to_vec(&result)
            .map_err(|e| tonic::Status::internal(format!("encoding the answer: {e}")))
    }

    /// Serves one append lane (see [`stream`]) until the peer closes it or breaks the framing.
    /// The caller has authenticated the peer as a manager, as for the gRPC service.
    pub async fn serve_append_lane<S>(&self, lane: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let served = stream::serve(
            lane,
            stream::LANE_IDLE_TIMEOUT,
            |frame: AppendFrame| async move {
                match self.append(&frame.header, &frame.entries).await {
                    Ok(json) => Answer::Ok(json),
                    Err(status) if status.code() == tonic::Code::InvalidArgument => {
                        Answer::Refused(status.message().to_owned())
                    }
                    Err(status) => Answer::Failed(status.message().to_owned()),
                }
            },
        )
        .await;
        if let Err(error) = served {
            tracing::debug!(%error, "append lane closed");
        }
    }
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: tonic::Request<pb::RaftMessage>,
    ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
        let message = request.into_inner();
        let header = self.append(&message.header, &message.entries).await?;
        Ok(tonic::Response::new(pb::RaftMessage {
            header,
            entries: Vec::new(),
            data: Vec::new(),
        }))
    }

    async fn vote(
        &self,
        request: tonic::Request<pb::RaftMessage>,
    ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
        let message = request.into_inner();
        let vote: VoteRequest<NodeId> =
            from_json(&message.header, "header").map_err(|e| bad_request("vote", e))?;
        answer(&self.raft.vote(vote).await)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<pb::RaftMessage>,
    ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
        const RPC: &str = "install_snapshot";
        let message = request.into_inner();
        let header: SnapshotHeader =
            from_json(&message.header, "header").map_err(|e| bad_request(RPC, e))?;
        let len = message.data.len() as u64;
        let end = header
            .offset
            .checked_add(len)
            .ok_or_else(|| bad_request(RPC, format!("offset {} overflows", header.offset)))?;
        // Chunks of one snapshot are handled one at a time, in the order they arrive.
        let mut current = self.reception.current.lock().await;
        let id = header.meta.snapshot_id.clone();
        if header.offset > 0
            && let Some((current_id, received)) = current.as_ref()
            && *current_id == id
            && header.offset > *received
        {
            return Err(bad_request(
                RPC,
                format!(
                    "chunk of snapshot {id} at offset {} skips ahead of the {received} bytes \
                     received",
                    header.offset
                ),
            ));
        }
        let (vote, done, offset) = (header.vote, header.done, header.offset);
        let result = self
            .raft
            .install_snapshot(InstallSnapshotRequest {
                vote,
                meta: header.meta,
                offset,
                data: message.data,
                done,
            })
            .await;
        // openraft took the chunk when it answered without a higher vote of its own.
        if let Ok(response) = &result
            && response.vote <= vote
        {
            *current = match current.take() {
                _ if done => None,
                Some((current_id, received)) if current_id == id => {
                    Some((current_id, received.max(end)))
                }
                // A chunk of another snapshot: openraft starts it over when it is at offset 0
                // (and refuses it otherwise, keeping the current one).
                _ if offset == 0 => Some((id, end)),
                other => other,
            };
        }
        answer(&result)
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;
    use openraft::EntryPayload;

    use super::*;
    use crate::types::CommandBatch;

    fn factory() -> NetworkFactory {
        NetworkFactory::new(
            1,
            plain_channels(),
            None,
            PeerContacts::default(),
            DurableWatch::settled(),
        )
    }

    #[tokio::test]
    async fn a_peer_nobody_listens_at_is_unreachable_with_its_address() {
        let mut factory = factory();
        // A port from a listener that is closed again: nobody listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .to_string();
        let mut client = factory.new_client(7, &BasicNode::new(addr.clone())).await;
        let request = VoteRequest::new(openraft::Vote::new(1, 1), None);
        let error = client
            .vote(request, RPCOption::new(Duration::from_secs(1)))
            .await
            .expect_err("nobody listens");
        assert!(matches!(error, RPCError::Unreachable(_)), "{error}");
        let text = error.to_string();
        assert!(text.contains(&addr), "{text}");
        assert!(!factory.contacts.seen_within(7, Duration::from_secs(60)));
    }

    #[tokio::test]
    async fn a_peer_that_does_not_answer_in_time_is_a_timeout() {
        // A listener that accepts connections but never speaks HTTP/2.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let accept = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let mut client = factory().new_client(7, &BasicNode::new(addr)).await;
        let request = VoteRequest::new(openraft::Vote::new(1, 1), None);
        let error = client
            .vote(request, RPCOption::new(Duration::from_millis(200)))
            .await
            .expect_err("no answer");
        assert!(matches!(error, RPCError::Timeout(_)), "{error}");
        accept.abort();
    }

    #[tokio::test]
    async fn channels_are_made_once_per_address() {
        let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = made.clone();
        let plain = plain_channels();
        let channels: ChannelMaker = Arc::new(move |addr: &str| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            plain(addr)
        });
        let mut factory = NetworkFactory::new(
            1,
            channels,
            None,
            PeerContacts::default(),
            DurableWatch::settled(),
        );
        for target in [2, 2, 3] {
            factory
                .new_client(target, &BasicNode::new("127.0.0.1:1"))
                .await;
        }
        factory.new_client(2, &BasicNode::new("127.0.0.1:2")).await;
        assert_eq!(made.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(CommandBatch {
                commands: vec![vec![7; bytes]],
            }),
        }
    }

    #[tokio::test]
    async fn entries_beyond_the_budget_are_sent_in_several_requests() {
        // Nobody listens: a request that were sent would fail as unreachable.
        let mut client = factory()
            .new_client(2, &BasicNode::new("127.0.0.1:1"))
            .await;
        let big = APPEND_ENTRIES_BUDGET_BYTES / 2 + 1;
        let request = AppendEntriesRequest {
            vote: openraft::Vote::new_committed(1, 1),
            prev_log_id: None,
            entries: vec![entry(0, 10), entry(1, big), entry(2, big), entry(3, 10)],
            leader_commit: None,
        };
        let error = client
            .append_entries(request, RPCOption::new(Duration::from_secs(1)))
            .await
            .expect_err("too large");
        match error {
            RPCError::PayloadTooLarge(too_large) => {
                assert_eq!(too_large.entries_hint(), 2);
            }
            other => panic!("expected PayloadTooLarge, got {other}"),
        }
        // One entry alone is always sent, whatever its size.
        let request = AppendEntriesRequest {
            vote: openraft::Vote::new_committed(1, 1),
            prev_log_id: None,
            entries: vec![entry(0, APPEND_ENTRIES_BUDGET_BYTES * 2)],
            leader_commit: None,
        };
        let error = client
            .append_entries(request, RPCOption::new(Duration::from_secs(1)))
            .await
            .expect_err("nobody listens");
        assert!(matches!(error, RPCError::Unreachable(_)), "{error}");
    }

    /// A peer that answers AppendEntries carrying entries only after `delay`.
    #[derive(Clone)]
    struct SlowPeer {
        appends: Arc<std::sync::atomic::AtomicUsize>,
        delay: Duration,
    }

    #[tonic::async_trait]
    impl pb::raft_server::Raft for SlowPeer {
        async fn append_entries(
            &self,
            request: tonic::Request<pb::RaftMessage>,
        ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
            if !request.into_inner().entries.is_empty() {
                self.appends
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(self.delay).await;
            }
            answer(&Ok::<_, RaftError<NodeId>>(
                AppendEntriesResponse::<NodeId>::Success,
            ))
        }

        async fn vote(
            &self,
            _: tonic::Request<pb::RaftMessage>,
        ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
            Err(tonic::Status::unimplemented("vote"))
        }

        async fn install_snapshot(
            &self,
            _: tonic::Request<pb::RaftMessage>,
        ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
            Err(tonic::Status::unimplemented("install_snapshot"))
        }
    }

    #[tokio::test]
    async fn entries_slower_than_the_deadline_are_sent_once_and_acknowledged_later() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let peer = SlowPeer {
            appends: Arc::default(),
            delay: Duration::from_millis(400),
        };
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::raft_server::RaftServer::new(peer.clone()))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let mut client = factory().new_client(2, &BasicNode::new(addr)).await;
        let vote = openraft::Vote::new_committed(1, 1);
        let request = |entries: Vec<Entry>| AppendEntriesRequest {
            vote,
            prev_log_id: None,
            entries,
            leader_commit: None,
        };
        let deadline = RPCOption::new(Duration::from_millis(50));
        // openraft gives up on the first attempt, and on its retry of the same entries.
        for _ in 0..2 {
            let error = client
                .append_entries(request(vec![entry(0, 10), entry(1, 10)]), deadline.clone())
                .await
                .expect_err("slower than the deadline");
            assert!(matches!(error, RPCError::Timeout(_)), "{error}");
        }
        // Heartbeats still go through meanwhile.
        let heartbeat = client
            .append_entries(request(Vec::new()), deadline.clone())
            .await
            .expect("heartbeat");
        assert_eq!(heartbeat, AppendEntriesResponse::Success);
        // A retry covering the entries (and one more) waits for the first request, and answers
        // how far it matched.
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        let answer = loop {
            let entries = vec![entry(0, 10), entry(1, 10), entry(2, 10)];
            match client
                .append_entries(request(entries), deadline.clone())
                .await
            {
                Ok(answer) => break answer,
                Err(RPCError::Timeout(_)) => {
                    assert!(tokio::time::Instant::now() < until, "never acknowledged");
                }
                Err(other) => panic!("{other}"),
            }
        };
        assert_eq!(
            answer,
            AppendEntriesResponse::PartialSuccess(Some(entry(1, 0).log_id))
        );
        assert_eq!(
            peer.appends.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "the slow entries were sent once"
        );
        server.abort();
    }

    #[test]
    fn answers_contradicting_the_request_are_refused() {
        let vote = openraft::Vote::new_committed(3, 1);
        let prev = Some(LogId::new(CommittedLeaderId::new(3, 1), 5));
        let last = Some(LogId::new(CommittedLeaderId::new(3, 1), 8));
        let beyond = Some(LogId::new(CommittedLeaderId::new(3, 1), 9));
        let check = |prev, answer| check_append_answer((&vote, prev, last), &answer);
        assert!(check(prev, AppendEntriesResponse::Success).is_ok());
        assert!(check(prev, AppendEntriesResponse::Conflict).is_ok());
        assert!(check(None, AppendEntriesResponse::Conflict).is_err());
        assert!(check(prev, AppendEntriesResponse::PartialSuccess(last)).is_ok());
        assert!(check(prev, AppendEntriesResponse::PartialSuccess(beyond)).is_err());
        assert!(check(prev, AppendEntriesResponse::PartialSuccess(None)).is_err());
        let higher = openraft::Vote::new(4, 2);
        assert!(check(prev, AppendEntriesResponse::HigherVote(higher)).is_ok());
        assert!(check(prev, AppendEntriesResponse::HigherVote(vote)).is_err());
    }

    #[test]
    fn entries_must_follow_the_previous_one() {
        let header = |prev: Option<u64>, term: u64| AppendHeader {
            vote: openraft::Vote::new_committed(term, 1),
            prev_log_id: prev.map(|i| LogId::new(CommittedLeaderId::new(1, 1), i)),
            leader_commit: None,
        };
        assert!(check_entries(&header(None, 1), &[entry(0, 1), entry(1, 1)]).is_ok());
        assert!(check_entries(&header(Some(4), 1), &[entry(5, 1)]).is_ok());
        assert!(check_entries(&header(Some(4), 1), &[entry(6, 1)]).is_err());
        assert!(check_entries(&header(None, 1), &[entry(0, 1), entry(2, 1)]).is_err());
        // The entries' term (1) is above the vote's (0).
        assert!(check_entries(&header(None, 0), &[entry(0, 1)]).is_err());
    }
}
