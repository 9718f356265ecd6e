//! The managers' CA services: the root certificate for anyone (`CA`), node certificates against
//! a join token or a current certificate (`NodeCA`), and raft membership for managers
//! (`RaftMembership`).
//!
//! Issuing a certificate to a new node also creates its node object (with the role its token
//! grants), so the role in the certificate and the role in the store agree from the start.

use std::sync::Arc;

use swarm_ca::{NODE_VALIDITY, RootCa};
use swarm_proto::pb;
use swarm_raft::RaftNode;
use swarm_store::{MemoryStore, StoreRead as _};
use swarm_types::{
    Cluster, JoinToken, ManagerStatus, Node, NodeDescription, NodeRole, NodeState, NodeStatus,
    Reachability, Timestamp,
};
use tonic::{Request, Response, Status};
use tracing::{info, instrument};

use crate::commit::{Committer, commit_with};
use crate::error::ManagerError;
use crate::leader::Caller;

type RpcResult<T> = std::result::Result<Response<T>, Status>;

/// Longest node id a joining node may bring.
const MAX_NODE_ID_LEN: usize = 64;

fn cluster(store: &MemoryStore) -> Result<Arc<Cluster>, Status> {
    store
        .view(|tx| tx.cluster().cloned())
        .filter(|c| !c.root_ca.cert_pem.is_empty())
        .ok_or_else(|| Status::unavailable("this manager has no cluster CA yet; retry"))
}

/// `swarm.v1.CA`: the root certificate, to anyone.
#[derive(Clone)]
pub struct CaService {
    store: Arc<MemoryStore>,
}

impl CaService {
    pub fn new(store: Arc<MemoryStore>) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl pb::ca_server::Ca for CaService {
    async fn get_root_ca_certificate(
        &self,
        _request: Request<pb::GetRootCaCertificateRequest>,
    ) -> RpcResult<pb::GetRootCaCertificateResponse> {
        let cluster = cluster(&self.store)?;
        Ok(Response::new(pb::GetRootCaCertificateResponse {
            cert_pem: cluster.root_ca.cert_pem.clone(),
        }))
    }
}

/// `swarm.v1.NodeCA`: certificates for joining and renewing nodes (on the leader).
#[derive(Clone)]
pub struct NodeCaService {
    store: Arc<MemoryStore>,
    committer: Arc<dyn Committer>,
}

impl NodeCaService {
    pub fn new(store: Arc<MemoryStore>, committer: Arc<dyn Committer>) -> Self {
        Self { store, committer }
    }
}

fn check_node_id(node_id: &str) -> Result<(), Status> {
    let ok = !node_id.is_empty()
        && node_id.len() <= MAX_NODE_ID_LEN
        && node_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "node_id: {node_id:?} must be 1-{MAX_NODE_ID_LEN} characters of a-z, 0-9 and '-'"
        )))
    }
}

#[tonic::async_trait]
impl pb::node_ca_server::NodeCa for NodeCaService {
    #[instrument(skip_all, fields(node_id = %request.get_ref().node_id), err)]
    async fn issue_node_certificate(
        &self,
        request: Request<pb::IssueNodeCertificateRequest>,
    ) -> RpcResult<pb::IssueNodeCertificateResponse> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        check_node_id(&r.node_id)?;
        let cluster = cluster(&self.store)?;
        let root = RootCa::from_pem(&cluster.root_ca.cert_pem, Some(&cluster.root_ca.key_pem))
            .map_err(|e| Status::internal(format!("the cluster's root CA: {e}")))?;
        let existing = self
            .store
            .view(|tx| tx.node(&r.node_id).map(|n| (**n).clone()));
        let (role, new_node) = if r.token.is_empty() {
            // Renewal: the caller proves who it is with its current certificate.
            match &caller {
                Caller::Node { node_id, .. } if *node_id == r.node_id => {}
                Caller::Node { node_id, .. } => {
                    return Err(Status::permission_denied(format!(
                        "node {node_id} may renew only its own certificate, not {}'s",
                        r.node_id
                    )));
                }
                Caller::Anonymous | Caller::Local => {
                    return Err(Status::unauthenticated(
                        "a join token or the node's current certificate is required",
                    ));
                }
            }
            let node = existing.ok_or_else(|| {
                Status::permission_denied(format!(
                    "node {} was removed from the cluster; join again with a new state directory",
                    r.node_id
                ))
            })?;
            // A demoted manager gets its worker certificate once the leader has taken it out of
            // raft: stopping its manager earlier could cost the others their quorum.
            if node.spec.desired_role == NodeRole::Worker && node.manager_status.is_some() {
                return Err(Status::unavailable(format!(
                    "node {} is being demoted: it is still a raft member; retry",
                    r.node_id
                )));
            }
            (node.spec.desired_role, false)
        } else {
            let token: JoinToken = r
                .token
                .parse()
                .map_err(|e| Status::invalid_argument(format!("token: {e}")))?;
            let tokens = cluster.root_ca.join_tokens().ok_or_else(|| {
                Status::internal("the cluster's join tokens are missing or corrupt")
            })?;
            let role = tokens.role_of(&token).ok_or_else(|| {
                Status::permission_denied(
                    "the join token is not valid for this cluster (wrong, or rotated)",
                )
            })?;
            match existing {
                None => (role, true),
                // A member whose certificate expired while it was off rejoins with the token of
                // the role it has: same node, new certificate.
                Some(node) if node.spec.desired_role == role => {
                    info!(node_id = %r.node_id, ?role, "member rejoins with a join token");
                    (role, false)
                }
                Some(node) => {
                    return Err(Status::already_exists(format!(
                        "node id {} is already a {:?} of the cluster; this token is for {:?}s \
                         (use `node promote`/`node demote`, or join with a new state directory)",
                        r.node_id, node.spec.desired_role, role
                    )));
                }
            }
        };
        let certificate_pem = root
            .issue(&r.csr_pem, &r.node_id, role, &cluster.id, NODE_VALIDITY)
            .map_err(|e| Status::invalid_argument(format!("csr_pem: {e}")))?;
        if new_node {
            let now = Timestamp::now();
            let node = Node::new(
                r.node_id.clone(),
                role,
                NodeDescription {
                    hostname: r.hostname.clone(),
                    ..Default::default()
                },
                NodeStatus {
                    state: NodeState::Unknown,
                    message: "joined; waiting for its first session".into(),
                    addr: String::new(),
                    last_seen: now,
                },
                now,
            );
            commit_with(&self.store, self.committer.as_ref(), |tx| {
                Ok(tx.create(node)?)
            })
            .await
            .map_err(Status::from)?;
            info!(node_id = %r.node_id, ?role, hostname = %r.hostname, "node joined the cluster");
        }
        Ok(Response::new(pb::IssueNodeCertificateResponse {
            node_id: r.node_id,
            role: pb::NodeRole::from(role) as i32,
            certificate_pem,
            root_ca_pem: cluster.root_ca.cert_pem.clone(),
            cluster_id: cluster.id.clone(),
        }))
    }
}

/// `swarm.v1.RaftMembership`: managers joining the raft group (on the leader).
#[derive(Clone)]
pub struct MembershipService {
    store: Arc<MemoryStore>,
    committer: Arc<dyn Committer>,
    raft: RaftNode,
}

impl MembershipService {
    pub fn new(store: Arc<MemoryStore>, committer: Arc<dyn Committer>, raft: RaftNode) -> Self {
        Self {
            store,
            committer,
            raft,
        }
    }

    async fn join(&self, node_id: &str, raft_id: u64, addr: &str) -> Result<(), ManagerError> {
        let node = self
            .store
            .view(|tx| tx.node(node_id).map(|n| (**n).clone()))
            .ok_or_else(|| ManagerError::NotFound(format!("node {node_id} is not a member")))?;
        if node.spec.desired_role != NodeRole::Manager {
            return Err(ManagerError::FailedPrecondition(format!(
                "node {node_id} is not a manager (its desired role is worker)"
            )));
        }
        let status = self.raft.metrics();
        // A manager that lost its raft state joins again with a new raft id: drop the old one.
        if let Some(old) = node.manager_status.as_ref().map(|m| m.raft_id)
            && old != raft_id
            && status.members.iter().any(|m| m.id == old)
        {
            info!(%node_id, old, raft_id, "manager rejoins with a new raft id; removing the old one");
            self.raft.remove(old).await?;
        }
        match status.members.iter().find(|m| m.id == raft_id) {
            Some(member) if member.addr == addr && member.voter => {}
            Some(member) if member.addr != addr => {
                info!(%node_id, raft_id, old = %member.addr, new = %addr, "manager address changed");
                self.raft.set_addr(raft_id, addr.to_string()).await?;
                if !member.voter {
                    self.raft.promote(raft_id).await?;
                }
            }
            Some(_) => self.raft.promote(raft_id).await?,
            None => {
                info!(%node_id, raft_id, %addr, "adding manager to raft as a learner");
                self.raft.add_learner(raft_id, addr.to_string()).await?;
                info!(%node_id, raft_id, "manager caught up; promoting it to voter");
                self.raft.promote(raft_id).await?;
            }
        }
        let addr = addr.to_string();
        commit_with(&self.store, self.committer.as_ref(), |tx| {
            let Some(current) = tx.node(node_id) else {
                return Ok(());
            };
            let mut node = (**current).clone();
            node.role = NodeRole::Manager;
            node.manager_status = Some(ManagerStatus {
                raft_id,
                addr,
                leader: false,
                reachability: Reachability::Reachable,
            });
            node.meta.updated_at = Timestamp::now();
            Ok(tx.update(node)?)
        })
        .await?;
        Ok(())
    }
}

#[tonic::async_trait]
impl pb::raft_membership_server::RaftMembership for MembershipService {
    #[instrument(skip_all, fields(raft_id = request.get_ref().raft_id, addr = %request.get_ref().addr), err)]
    async fn join(&self, request: Request<pb::RaftJoinRequest>) -> RpcResult<pb::RaftJoinResponse> {
        let node_id = match Caller::of(&request) {
            Caller::Node {
                node_id,
                role: NodeRole::Manager,
            } => node_id,
            other => {
                Caller::require(&other, &[NodeRole::Manager], "raft membership")?;
                return Err(Status::permission_denied(
                    "raft membership requires a manager certificate",
                ));
            }
        };
        let r = request.into_inner();
        if r.raft_id == 0 {
            return Err(Status::invalid_argument("raft_id: must not be 0"));
        }
        if r.addr.is_empty() {
            return Err(Status::invalid_argument("addr: must not be empty"));
        }
        self.join(&node_id, r.raft_id, &r.addr).await?;
        let status = self.raft.metrics();
        Ok(Response::new(pb::RaftJoinResponse {
            members: status
                .members
                .iter()
                .map(|m| pb::RaftMember {
                    raft_id: m.id,
                    addr: m.addr.clone(),
                    voter: m.voter,
                })
                .collect(),
            leader_raft_id: status.leader_id.unwrap_or(0),
        }))
    }
}
