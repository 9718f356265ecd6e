//! The cluster's security model from the outside: join tokens (wrong, for another cluster,
//! rotated), and certificates on the remote API (a worker's refused by control and raft, none
//! refused, a manager's admitted).

use std::path::Path;
use std::time::Duration;

use swarm_ca::NodeIdentity;
use swarm_proto::pb;
use swarm_tests::{NodeOptions, TestCluster, TestNode, poll};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a worker with `token` and waits until swarmd exits; returns its log.
fn join_refused(cluster: &TestCluster, token: &str) -> String {
    let mut node = TestNode::spawn_with(NodeOptions {
        hostname: "intruder".into(),
        join: Some((cluster.managers[0].addr(), token.to_string())),
        ..Default::default()
    });
    let status = poll("swarmd to refuse the join and exit", || node.exited());
    assert!(
        !status.success(),
        "swarmd joined with a bad token: {}",
        node.log()
    );
    node.log()
}

/// The same token with another secret (same CA digest).
fn other_secret(token: &str) -> String {
    let (head, secret) = token.rsplit_once('-').expect("token shape");
    let first = if secret.starts_with('0') { '1' } else { '0' };
    format!("{head}-{first}{}", &secret[1..])
}

#[test]
fn join_tokens_are_checked_pinned_and_rotated() {
    let mut cluster = TestCluster::start(1, 0);
    let worker_token = cluster.token("worker");

    let log = join_refused(&cluster, &other_secret(&worker_token));
    assert!(log.contains("not valid for this cluster"), "{log}");

    // A token of another cluster pins another root CA: refused before anything is sent.
    let other = TestNode::start();
    let foreign = other
        .ctl(&["--format", "json", "cluster", "inspect"])
        .ok()
        .json()["root_ca"]["worker_token"]
        .as_str()
        .expect("token")
        .to_string();
    let log = join_refused(&cluster, &foreign);
    assert!(log.contains("pins"), "{log}");

    // After rotation the old token is refused and the new one admits.
    cluster.managers[0]
        .ctl(&["cluster", "update", "--rotate-join-token", "worker"])
        .ok();
    let rotated = cluster.token("worker");
    assert_ne!(rotated, worker_token);
    assert_eq!(cluster.token("manager").len(), rotated.len());
    let log = join_refused(&cluster, &worker_token);
    assert!(log.contains("not valid for this cluster"), "{log}");
    cluster.add_worker("worker-1");
    let worker = cluster.node("worker-1").expect("worker listed");
    assert_eq!(worker["role"], "worker");
}

fn identity(state_dir: &Path) -> NodeIdentity {
    let dir = state_dir.join("certificates");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("certificate file");
    NodeIdentity::new(
        &read("swarm-node.crt"),
        &read("swarm-node.key"),
        &read("swarm-root-ca.crt"),
    )
    .expect("identity")
}

fn channel(
    addr: &str,
    config: std::sync::Arc<swarm_ca::rustls::ClientConfig>,
) -> tonic::transport::Channel {
    swarm_ca::tls_channel(addr, config, TIMEOUT).expect("channel")
}

async fn list_nodes(channel: tonic::transport::Channel) -> Result<usize, tonic::Status> {
    let mut client = pb::control_client::ControlClient::new(channel);
    let response =
        tokio::time::timeout(TIMEOUT, client.list_nodes(pb::ListNodesRequest::default()))
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("test timeout"))??;
    Ok(response.into_inner().nodes.len())
}

async fn vote(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
    let mut client = pb::raft_client::RaftClient::new(channel);
    tokio::time::timeout(
        TIMEOUT,
        client.vote(pb::RaftMessage {
            header: b"{}".to_vec(),
            entries: Vec::new(),
            data: Vec::new(),
        }),
    )
    .await
    .map_err(|_| tonic::Status::deadline_exceeded("test timeout"))??;
    Ok(())
}

#[test]
fn the_remote_api_admits_by_certificate_role() {
    let cluster = TestCluster::start(1, 1);
    let manager = &cluster.managers[0];
    let addr = manager.addr();
    let manager_identity = identity(&manager.state_dir());
    let worker_identity = identity(&cluster.workers[0].state_dir());
    assert_eq!(worker_identity.info().role, swarm_types::NodeRole::Worker);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // A manager's certificate reaches the control API on the remote listener.
        let nodes = list_nodes(channel(
            &addr,
            manager_identity.client_config().expect("cfg"),
        ))
        .await
        .expect("a manager certificate is admitted");
        assert_eq!(nodes, 2);

        // A worker's certificate is refused by the control API and by raft.
        let worker = channel(&addr, worker_identity.client_config().expect("cfg"));
        let refused = list_nodes(worker.clone())
            .await
            .expect_err("worker on control");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
        assert!(refused.message().contains("worker"), "{refused:?}");
        let refused = vote(worker).await.expect_err("worker on raft");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

        // No certificate at all: TLS completes (a joining node has none) but every service
        // except the root CA refuses.
        let anonymous = channel(
            &addr,
            swarm_ca::anonymous_client_config(manager_identity.root()).expect("cfg"),
        );
        let refused = list_nodes(anonymous.clone())
            .await
            .expect_err("anonymous on control");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
        let refused = vote(anonymous.clone())
            .await
            .expect_err("anonymous on raft");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
        let mut ca = pb::ca_client::CaClient::new(anonymous);
        let root = ca
            .get_root_ca_certificate(pb::GetRootCaCertificateRequest {})
            .await
            .expect("the root CA is public")
            .into_inner();
        assert_eq!(root.cert_pem, manager_identity.root().cert_pem());
    });
}
