//! The joining side: fetch and pin the root CA, request a certificate with a join token, join
//! the raft group; and, for a manager that restarted with a new address, update it.

use std::time::Duration;

use swarm_ca::{NodeIdentity, NodeKey, RootCa};
use swarm_proto::pb;
use swarm_raft::RaftNode;
use swarm_types::{JoinToken, NodeRole};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::ManagerError;

/// Connect timeout to the manager a node joins through.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of one certificate request.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a raft join may take: the leader adds the manager as a learner and waits until it
/// has caught up (a snapshot of a large store) before promoting it.
const RAFT_JOIN_TIMEOUT: Duration = Duration::from_secs(600);
/// Pause between attempts while the managers elect a leader.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// A certificate the CA issued to this node.
#[derive(Clone, Debug)]
pub struct Issued {
    pub node_id: String,
    pub role: NodeRole,
    pub certificate_pem: String,
    pub root_ca_pem: String,
    pub cluster_id: String,
}

fn status_error(what: &str, addr: &str, status: tonic::Status) -> ManagerError {
    let message = format!("{what} at {addr}: {}", status.message());
    match status.code() {
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
            ManagerError::PermissionDenied(message)
        }
        tonic::Code::InvalidArgument => ManagerError::InvalidArgument(message),
        tonic::Code::AlreadyExists => ManagerError::AlreadyExists(message),
        tonic::Code::FailedPrecondition => ManagerError::FailedPrecondition(message),
        tonic::Code::NotFound => ManagerError::NotFound(message),
        _ => ManagerError::Unavailable(message),
    }
}

fn channel(
    addr: &str,
    config: std::sync::Arc<swarm_ca::rustls::ClientConfig>,
) -> Result<tonic::transport::Channel, ManagerError> {
    swarm_ca::tls_channel(addr, config, CONNECT_TIMEOUT)
        .map_err(|e| ManagerError::Unavailable(format!("connecting to {addr}: {e}")))
}

fn role_of(value: i32) -> Result<NodeRole, ManagerError> {
    match pb::NodeRole::try_from(value) {
        Ok(pb::NodeRole::Manager) => Ok(NodeRole::Manager),
        Ok(pb::NodeRole::Worker) => Ok(NodeRole::Worker),
        Err(_) => Err(ManagerError::Internal(format!(
            "the CA answered with an unknown role {value}"
        ))),
    }
}

/// Fetches the root CA from the manager at `addr` and checks it is the one `token` pins.
pub async fn fetch_root_ca(addr: &str, token: &JoinToken) -> Result<RootCa, ManagerError> {
    // Unverified on purpose: nothing is trusted until the digest matches the token.
    let mut client =
        pb::ca_client::CaClient::new(channel(addr, swarm_ca::unverified_client_config())?);
    let response = tokio::time::timeout(
        ISSUE_TIMEOUT,
        client.get_root_ca_certificate(pb::GetRootCaCertificateRequest {}),
    )
    .await
    .map_err(|_| ManagerError::Unavailable(format!("fetching the root CA from {addr}: timed out")))?
    .map_err(|s| status_error("fetching the root CA", addr, s))?
    .into_inner();
    let root = RootCa::from_pem(&response.cert_pem, None).map_err(|e| {
        ManagerError::PermissionDenied(format!("the root CA sent by {addr} is not valid: {e}"))
    })?;
    let digest = root.digest();
    if !token.pins(&digest) {
        return Err(ManagerError::PermissionDenied(format!(
            "the manager at {addr} presented root CA sha256:{} but the join token pins \
             sha256:{}: this token is for another cluster (or someone is in the way)",
            swarm_types::digest_hex(&digest),
            swarm_types::digest_hex(&token.ca_digest())
        )));
    }
    Ok(root)
}

/// Calls `call` until it answers, while the managers answer `Unavailable` (no leader yet, or
/// one catching up), for at most `timeout`; `what` names the call in errors.
async fn while_unavailable<T, Fut>(
    what: &str,
    addr: &str,
    timeout: Duration,
    mut call: impl FnMut() -> Fut,
) -> Result<T, ManagerError>
where
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let attempt = tokio::time::timeout_at(deadline, call())
            .await
            .map_err(|_| ManagerError::Unavailable(format!("{what} at {addr}: timed out")))?;
        match attempt {
            Ok(response) => return Ok(response.into_inner()),
            Err(s)
                if s.code() == tonic::Code::Unavailable
                    && tokio::time::Instant::now() + RETRY_PAUSE < deadline =>
            {
                warn!(%addr, error = %s.message(), "{what}: not possible yet; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(s) => return Err(status_error(what, addr, s)),
        }
    }
}

/// Sends a certificate request for `key_pem` over `config` and reads the answer.
async fn issue(
    addr: &str,
    config: std::sync::Arc<swarm_ca::rustls::ClientConfig>,
    key_pem: &str,
    node_id: &str,
    token: &str,
    hostname: &str,
) -> Result<Issued, ManagerError> {
    let csr_pem = NodeKey::csr(key_pem, node_id)
        .map_err(|e| ManagerError::Internal(format!("building the certificate request: {e}")))?;
    let client = pb::node_ca_client::NodeCaClient::new(channel(addr, config)?);
    let request = pb::IssueNodeCertificateRequest {
        csr_pem,
        token: token.to_string(),
        node_id: node_id.to_string(),
        hostname: hostname.to_string(),
    };
    let response = while_unavailable("requesting a certificate", addr, ISSUE_TIMEOUT, || {
        let mut client = client.clone();
        let request = request.clone();
        async move { client.issue_node_certificate(request).await }
    })
    .await?;
    Ok(Issued {
        node_id: response.node_id,
        role: role_of(response.role)?,
        certificate_pem: response.certificate_pem,
        root_ca_pem: response.root_ca_pem,
        cluster_id: response.cluster_id,
    })
}

/// Asks the managers at `addr` for a certificate for `node_id`'s key, presenting `token`.
pub async fn request_certificate(
    addr: &str,
    root: &RootCa,
    token: &str,
    node_id: &str,
    hostname: &str,
    key_pem: &str,
) -> Result<Issued, ManagerError> {
    let config = swarm_ca::anonymous_client_config(root)
        .map_err(|e| ManagerError::Internal(format!("TLS client: {e}")))?;
    issue(addr, config, key_pem, node_id, token, hostname).await
}

/// Renews this node's certificate through the managers at `addr` (a new certificate for the
/// same key, with the role the cluster now wants for the node).
pub async fn renew_certificate(
    addr: &str,
    identity: &NodeIdentity,
    hostname: &str,
) -> Result<Issued, ManagerError> {
    let config = identity
        .client_config()
        .map_err(|e| ManagerError::Internal(format!("TLS client: {e}")))?;
    let node_id = &identity.info().node_id;
    issue(addr, config, identity.key_pem(), node_id, "", hostname).await
}

/// Joins the raft group through the manager at `addr` (forwarded to the leader), as `raft_id`
/// reachable at `advertise_addr`. Returns once this manager is a voter.
pub async fn join_raft(
    identity: &NodeIdentity,
    addr: &str,
    raft_id: u64,
    advertise_addr: &str,
) -> Result<(), ManagerError> {
    let config = identity
        .client_config()
        .map_err(|e| ManagerError::Internal(format!("TLS client: {e}")))?;
    let client = pb::raft_membership_client::RaftMembershipClient::new(channel(addr, config)?);
    let request = pb::RaftJoinRequest {
        raft_id,
        addr: advertise_addr.to_string(),
    };
    let response = while_unavailable("joining raft", addr, RAFT_JOIN_TIMEOUT, || {
        let mut client = client.clone();
        let request = request.clone();
        async move { client.join(request).await }
    })
    .await?;
    info!(%addr, raft_id, members = response.members.len(), "joined the raft group");
    Ok(())
}

/// A manager that restarted with a new address tells the leader (through any member it knows)
/// until its membership carries the address it now advertises.
pub async fn refresh_own_address(
    identity: Option<NodeIdentity>,
    raft: RaftNode,
    advertise_addr: String,
    cancel: CancellationToken,
) {
    let Some(identity) = identity else {
        return;
    };
    loop {
        let status = raft.metrics();
        let own = status.members.iter().find(|m| m.id == status.node_id);
        if own.is_none_or(|m| m.addr == advertise_addr) {
            return;
        }
        if status.leader_id == Some(status.node_id) {
            match raft.set_addr(status.node_id, advertise_addr.clone()).await {
                Ok(()) => {
                    info!(%advertise_addr, "recorded this leader's new address");
                    return;
                }
                Err(e) => warn!(error = %e, "recording this leader's new address"),
            }
        }
        let peers: Vec<String> = status
            .members
            .iter()
            .filter(|m| m.id != status.node_id)
            .map(|m| m.addr.clone())
            .collect();
        for peer in peers
            .into_iter()
            .filter(|_| status.leader_id != Some(status.node_id))
        {
            match join_raft(&identity, &peer, status.node_id, &advertise_addr).await {
                Ok(()) => {
                    info!(%advertise_addr, "the raft group now has this manager's new address");
                    return;
                }
                Err(e) => warn!(%peer, error = %e, "updating this manager's address"),
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
