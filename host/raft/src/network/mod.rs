//! The raft network over tonic: the client openraft uses to reach peers, and the gRPC service
//! (`swarm.v1.Raft`) that hands peers' requests to the local openraft.
//!
//! Messages carry openraft's small fields as JSON and log entries in the log's own binary
//! encoding (`store::codec`), so command bytes are never spelled out as JSON arrays. How peers
//! are reached (plaintext or mutual TLS) is decided by the [`ChannelMaker`] the caller gives.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::BasicNode;
use openraft::RaftNetwork;
use openraft::RaftNetworkFactory;
use openraft::error::InstallSnapshotError;
use openraft::error::NetworkError;
use openraft::error::RPCError;
use openraft::error::RaftError;
use openraft::error::RemoteError;
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

use crate::store::codec;
use crate::types::{LogId, NodeId, Raft, SnapshotMeta, TypeConfig, Vote};

/// Makes a channel to a peer's address (`host:port`). Channels should connect lazily.
pub type ChannelMaker = Arc<dyn Fn(&str) -> Result<Channel, String> + Send + Sync + 'static>;

/// Largest chunk of a snapshot sent in one message.
pub(crate) const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;
/// Largest raft message a node decodes (entries may hold a 16 MiB plugin component each).
pub const MAX_RAFT_MESSAGE_BYTES: usize = 256 << 20;
/// Connect timeout of [`plain_channels`].
const PLAIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Plaintext HTTP/2 channels (tests and benchmarks; swarmd uses mutual TLS).
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
    pub(crate) channels: ChannelMaker,
    pub(crate) contacts: PeerContacts,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerClient {
            target,
            addr: node.addr.clone(),
            channel: (self.channels)(&node.addr),
            contacts: self.contacts.clone(),
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

/// A client to one peer.
pub(crate) struct PeerClient {
    target: NodeId,
    addr: String,
    channel: Result<Channel, String>,
    contacts: PeerContacts,
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

impl PeerClient {
    fn peer_error(&self, message: String) -> PeerError {
        PeerError {
            target: self.target,
            addr: self.addr.clone(),
            message,
        }
    }

    /// Sends one message and decodes the peer's `Result<R, E>`.
    async fn call<R, E>(
        &mut self,
        rpc: &'static str,
        message: pb::RaftMessage,
        option: &RPCOption,
    ) -> Result<R, RPCError<NodeId, BasicNode, E>>
    where
        R: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let channel = match &self.channel {
            Ok(channel) => channel.clone(),
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &self.peer_error(e.clone()),
                )));
            }
        };
        let mut client = pb::raft_client::RaftClient::new(channel)
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES);
        let ttl = option.hard_ttl();
        let call = async {
            match rpc {
                "vote" => client.vote(message).await,
                "install_snapshot" => client.install_snapshot(message).await,
                _ => client.append_entries(message).await,
            }
        };
        let response = match tokio::time::timeout(ttl, call).await {
            Err(_) => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &self.peer_error(format!("{rpc} timed out after {ttl:?}")),
                )));
            }
            Ok(Err(status)) => {
                let error = self.peer_error(format!("{rpc}: {}", status.message()));
                return Err(match status.code() {
                    // Refused by the peer's checks (a bad certificate, an undecodable message):
                    // not a transient failure, but openraft only distinguishes these two.
                    tonic::Code::InvalidArgument
                    | tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated => RPCError::Network(NetworkError::new(&error)),
                    _ => RPCError::Unreachable(Unreachable::new(&error)),
                });
            }
            Ok(Ok(response)) => response.into_inner(),
        };
        self.contacts.record(self.target);
        let result: Result<R, E> = from_json(&response.header, rpc).map_err(|e| {
            RPCError::Network(NetworkError::new(
                &self.peer_error(format!("undecodable answer: {e}")),
            ))
        })?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

fn encode_error<E>(target: NodeId, addr: &str, message: String) -> RPCError<NodeId, BasicNode, E>
where
    E: std::error::Error,
{
    RPCError::Network(NetworkError::new(&PeerError {
        target,
        addr: addr.to_string(),
        message,
    }))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let header = json(&AppendHeader {
            vote: rpc.vote,
            prev_log_id: rpc.prev_log_id,
            leader_commit: rpc.leader_commit,
        })
        .map_err(|e| encode_error(self.target, &self.addr, e))?;
        let entries = rpc
            .entries
            .iter()
            .map(codec::encode_entry)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| encode_error(self.target, &self.addr, e.to_string()))?;
        let message = pb::RaftMessage {
            header,
            entries,
            data: Vec::new(),
        };
        self.call("append_entries", message, &option).await
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
        .map_err(|e| encode_error(self.target, &self.addr, e))?;
        let message = pb::RaftMessage {
            header,
            entries: Vec::new(),
            data: rpc.data,
        };
        self.call("install_snapshot", message, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let header = json(&rpc).map_err(|e| encode_error(self.target, &self.addr, e))?;
        let message = pb::RaftMessage {
            header,
            entries: Vec::new(),
            data: Vec::new(),
        };
        self.call("vote", message, &option).await
    }
}

/// The `swarm.v1.Raft` service: peers' requests, handed to the local openraft.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
}

impl RaftService {
    pub(crate) fn new(raft: Raft) -> Self {
        Self { raft }
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

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: tonic::Request<pb::RaftMessage>,
    ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
        let message = request.into_inner();
        let header: AppendHeader =
            from_json(&message.header, "header").map_err(|e| bad_request("append_entries", e))?;
        let entries = message
            .entries
            .iter()
            .map(|bytes| codec::decode_entry(bytes))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_request("append_entries", e))?;
        let result = self
            .raft
            .append_entries(AppendEntriesRequest {
                vote: header.vote,
                prev_log_id: header.prev_log_id,
                entries,
                leader_commit: header.leader_commit,
            })
            .await;
        answer(&result)
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
        let message = request.into_inner();
        let header: SnapshotHeader =
            from_json(&message.header, "header").map_err(|e| bad_request("install_snapshot", e))?;
        let result = self
            .raft
            .install_snapshot(InstallSnapshotRequest {
                vote: header.vote,
                meta: header.meta,
                offset: header.offset,
                data: message.data,
                done: header.done,
            })
            .await;
        answer(&result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peer_nobody_listens_at_is_unreachable_with_its_address() {
        let mut factory = NetworkFactory {
            channels: plain_channels(),
            contacts: PeerContacts::default(),
        };
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
}
