//! The raft network (client side). For now every peer is unreachable: multi-manager raft over
//! tonic replaces this module later, behind the same `RaftNetworkFactory` seam.

use openraft::BasicNode;
use openraft::RaftNetwork;
use openraft::RaftNetworkFactory;
use openraft::error::InstallSnapshotError;
use openraft::error::RPCError;
use openraft::error::RaftError;
use openraft::error::Unreachable;
use openraft::network::RPCOption;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::InstallSnapshotRequest;
use openraft::raft::InstallSnapshotResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;

use crate::types::NodeId;
use crate::types::TypeConfig;

/// Creates a client per peer; openraft calls it when it replicates to or asks a vote of a peer.
#[derive(Debug, Clone, Default)]
pub(crate) struct NetworkFactory;

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerClient {
            target,
            addr: node.addr.clone(),
        }
    }
}

/// The error every RPC to a peer fails with until multi-manager raft exists.
#[derive(Debug, thiserror::Error)]
#[error("unreachable: raft peer {target} at {addr}: multi-manager raft is not implemented yet")]
pub(crate) struct PeerNotImplemented {
    target: NodeId,
    addr: String,
}

/// A client to one peer.
#[derive(Debug)]
pub(crate) struct PeerClient {
    target: NodeId,
    addr: String,
}

impl PeerClient {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Unreachable(Unreachable::new(&PeerNotImplemented {
            target: self.target,
            addr: self.addr.clone(),
        }))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_peer_is_unreachable_with_a_clear_message() {
        let mut factory = NetworkFactory;
        let mut client = factory
            .new_client(7, &BasicNode::new("10.0.0.7:4242"))
            .await;
        let request = VoteRequest::new(openraft::Vote::new(1, 1), None);
        let error = client
            .vote(request, RPCOption::new(std::time::Duration::from_secs(1)))
            .await
            .expect_err("no peer is reachable yet");
        let text = error.to_string();
        assert!(
            text.contains("multi-manager raft is not implemented yet"),
            "{text}"
        );
        assert!(text.contains("10.0.0.7:4242"), "{text}");
    }
}
