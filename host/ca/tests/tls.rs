//! Mutual TLS end to end: a real tonic server on a loopback socket behind `tls_incoming`, real
//! clients with manager, worker, foreign, expired or no certificates, and the role checks.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use swarm_ca::rustls::ClientConfig;
use swarm_ca::{
    NodeIdentity, NodeKey, RootCa, require_role, role_interceptor, tls_channel, tls_incoming,
};
use swarm_proto::pb;
use swarm_types::NodeRole;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

const TIMEOUT: Duration = Duration::from_secs(5);
const MANAGERS: &[NodeRole] = &[NodeRole::Manager];

/// Open to all: answers with who the peer is, "<role> <node id>" or "anonymous".
struct WhoAmI;

#[tonic::async_trait]
impl pb::ca_server::Ca for WhoAmI {
    async fn get_root_ca_certificate(
        &self,
        request: Request<pb::GetRootCaCertificateRequest>,
    ) -> Result<Response<pb::GetRootCaCertificateResponse>, Status> {
        let peer = swarm_ca::peer_identity(&request)
            .ok_or_else(|| Status::internal("no peer identity on a TLS connection"))?;
        let cert_pem = match &peer.cert {
            Some(cert) => format!("{:?} {}", cert.role, cert.node_id),
            None => "anonymous".into(),
        };
        Ok(Response::new(pb::GetRootCaCertificateResponse { cert_pem }))
    }
}

/// Managers only, checked in the handler with `require_role`.
struct ManagersInHandler;

#[tonic::async_trait]
impl pb::node_ca_server::NodeCa for ManagersInHandler {
    async fn issue_node_certificate(
        &self,
        request: Request<pb::IssueNodeCertificateRequest>,
    ) -> Result<Response<pb::IssueNodeCertificateResponse>, Status> {
        let cert = require_role(&request, MANAGERS, "the test API")?;
        Ok(Response::new(pb::IssueNodeCertificateResponse {
            node_id: cert.node_id,
            ..Default::default()
        }))
    }
}

/// Managers only, checked by `role_interceptor`; the handler still sees the peer.
struct ManagersByInterceptor;

#[tonic::async_trait]
impl pb::raft_membership_server::RaftMembership for ManagersByInterceptor {
    async fn join(
        &self,
        request: Request<pb::RaftJoinRequest>,
    ) -> Result<Response<pb::RaftJoinResponse>, Status> {
        let cert = swarm_ca::peer_identity(&request)
            .and_then(|peer| peer.cert.as_ref())
            .ok_or_else(|| Status::internal("the interceptor let an anonymous peer through"))?;
        Ok(Response::new(pb::RaftJoinResponse {
            members: vec![pb::RaftMember {
                addr: cert.node_id.clone(),
                ..Default::default()
            }],
            leader_raft_id: 0,
        }))
    }
}

fn must_issue(root: &RootCa, node_id: &str, role: NodeRole) -> NodeIdentity {
    let key = NodeKey::generate().expect("key");
    let csr = NodeKey::csr(&key, node_id).expect("csr");
    let cert = root
        .issue(&csr, node_id, role, "c1", swarm_ca::NODE_VALIDITY)
        .expect("issue");
    NodeIdentity::new(&cert, &key, root.cert_pem()).expect("identity")
}

/// Serves the three test services over TLS with `server`'s identity; returns the address.
async fn serve(server: &NodeIdentity, cancel: CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let incoming = tls_incoming(listener, server.server_config().expect("server config"));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(pb::ca_server::CaServer::new(WhoAmI))
            .add_service(pb::node_ca_server::NodeCaServer::new(ManagersInHandler))
            .add_service(
                pb::raft_membership_server::RaftMembershipServer::with_interceptor(
                    ManagersByInterceptor,
                    role_interceptor(MANAGERS, "raft membership"),
                ),
            )
            .serve_with_incoming_shutdown(incoming, cancel.cancelled())
            .await
            .expect("serve");
    });
    addr
}

fn channel(addr: &str, config: Arc<ClientConfig>) -> Channel {
    tls_channel(addr, config, TIMEOUT).expect("channel")
}

async fn within<T>(call: impl Future<Output = Result<Response<T>, Status>>) -> Result<T, Status> {
    tokio::time::timeout(TIMEOUT, call)
        .await
        .map_err(|_| Status::deadline_exceeded("test timeout"))?
        .map(Response::into_inner)
}

/// Who the open service says the client is.
async fn who_am_i(addr: &str, config: Arc<ClientConfig>) -> Result<String, Status> {
    let mut client = pb::ca_client::CaClient::new(channel(addr, config));
    within(client.get_root_ca_certificate(pb::GetRootCaCertificateRequest {}))
        .await
        .map(|r| r.cert_pem)
}

/// The node id the managers-only services see, through the handler check and the interceptor.
async fn managers_only(addr: &str, config: Arc<ClientConfig>) -> [Result<String, Status>; 2] {
    let channel = channel(addr, config);
    let mut node_ca = pb::node_ca_client::NodeCaClient::new(channel.clone());
    let mut raft = pb::raft_membership_client::RaftMembershipClient::new(channel);
    [
        within(node_ca.issue_node_certificate(pb::IssueNodeCertificateRequest::default()))
            .await
            .map(|r| r.node_id),
        within(raft.join(pb::RaftJoinRequest::default()))
            .await
            .map(|r| r.members.into_iter().map(|m| m.addr).collect()),
    ]
}

#[tokio::test]
async fn the_server_learns_who_each_client_is_and_checks_roles() {
    let root = RootCa::generate("c1").expect("root");
    let server = must_issue(&root, "m1", NodeRole::Manager);
    let cancel = CancellationToken::new();
    let addr = serve(&server, cancel.clone()).await;

    // A manager reaches every service, and the handlers see its certificate.
    let manager = must_issue(&root, "m2", NodeRole::Manager)
        .client_config()
        .expect("cfg");
    assert_eq!(
        who_am_i(&addr, manager.clone()).await.expect("manager"),
        "Manager m2"
    );
    for answer in managers_only(&addr, manager).await {
        assert_eq!(answer.expect("a manager is allowed"), "m2");
    }

    // A worker connects, is known as a worker, and is refused by the managers-only services.
    let worker = must_issue(&root, "w1", NodeRole::Worker)
        .client_config()
        .expect("cfg");
    assert_eq!(
        who_am_i(&addr, worker.clone()).await.expect("worker"),
        "Worker w1"
    );
    let [handler, interceptor] = managers_only(&addr, worker).await;
    for (refused, what) in [(handler, "the test API"), (interceptor, "raft membership")] {
        let status = refused.expect_err("a worker is refused");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(
            status.message(),
            format!("worker certificates are refused by {what} (it takes manager certificates)")
        );
    }

    // Without a certificate: TLS completes (the open service answers), the rest refuses.
    let anonymous = swarm_ca::anonymous_client_config(&root).expect("cfg");
    assert_eq!(
        who_am_i(&addr, anonymous.clone()).await.expect("anonymous"),
        "anonymous"
    );
    for refused in managers_only(&addr, anonymous).await {
        let status = refused.expect_err("anonymous is refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(
            status
                .message()
                .starts_with("a client certificate is required"),
            "{status:?}"
        );
    }
    cancel.cancel();
}

#[tokio::test]
async fn the_unverified_config_reaches_a_server_of_any_cluster() {
    // Before it has pinned the root, a joining node talks to anyone: here, a server whose
    // root this client has never seen.
    let root = RootCa::generate("c1").expect("root");
    let cancel = CancellationToken::new();
    let addr = serve(&must_issue(&root, "m1", NodeRole::Manager), cancel.clone()).await;
    assert_eq!(
        who_am_i(&addr, swarm_ca::unverified_client_config())
            .await
            .expect("unverified"),
        "anonymous"
    );
    cancel.cancel();
}

#[tokio::test]
async fn foreign_expired_and_non_manager_certificates_fail_the_handshake() {
    let root = RootCa::generate("c1").expect("root");
    let cancel = CancellationToken::new();
    let addr = serve(&must_issue(&root, "m1", NodeRole::Manager), cancel.clone()).await;
    let other = RootCa::generate("c2").expect("other root");

    // A client trusting another root does not trust this server (the same client config
    // trusting the right root connects: see the test above).
    let status = who_am_i(
        &addr,
        swarm_ca::anonymous_client_config(&other).expect("cfg"),
    )
    .await
    .expect_err("server of another cluster");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_refused_because(&status, "UnknownIssuer");

    // A client presenting a certificate of another cluster, trusting this root: the server
    // refuses its certificate.
    let stranger = must_issue(&other, "x1", NodeRole::Manager);
    let status = who_am_i(&addr, stranger_config(&stranger, &root))
        .await
        .expect_err("client of another cluster");
    assert_refused_because(&status, "UnknownCA");

    // An expired client certificate is refused by the server.
    let key = NodeKey::generate().expect("key");
    let csr = NodeKey::csr(&key, "w9").expect("csr");
    let now = SystemTime::now();
    let cert = root
        .issue_with_validity_window(
            &csr,
            "w9",
            NodeRole::Worker,
            "c1",
            now - Duration::from_secs(7200),
            now - Duration::from_secs(3600),
        )
        .expect("issue expired");
    let expired = NodeIdentity::new(&cert, &key, root.cert_pem()).expect("identity");
    assert!(expired.is_expired(now));
    let status = who_am_i(&addr, expired.client_config().expect("cfg"))
        .await
        .expect_err("expired certificate");
    assert_refused_because(&status, "CertificateExpired");

    // A worker's certificate does not name the managers' server name: a worker cannot pose as
    // a manager.
    let worker_addr = serve(&must_issue(&root, "w1", NodeRole::Worker), cancel.clone()).await;
    let client = must_issue(&root, "m2", NodeRole::Manager);
    let status = who_am_i(&worker_addr, client.client_config().expect("cfg"))
        .await
        .expect_err("worker posing as a manager");
    assert_refused_because(&status, r#"not valid for name \"swarm-manager\""#);
    cancel.cancel();
}

/// Asserts that the call failed in the TLS handshake for `reason` (found in the error chain),
/// not in a handler.
fn assert_refused_because(status: &Status, reason: &str) {
    let chain = format!("{status:?}");
    assert!(
        matches!(status.code(), Code::Unavailable | Code::Unknown) && chain.contains(reason),
        "expected a handshake failure for {reason}, got {chain}"
    );
}

/// A client config presenting `identity`'s certificate but trusting `root`: a stranger's
/// certificate on a connection to a server it otherwise trusts.
fn stranger_config(identity: &NodeIdentity, root: &RootCa) -> Arc<ClientConfig> {
    use swarm_ca::rustls;
    use swarm_ca::rustls::pki_types::pem::PemObject as _;
    use swarm_ca::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root.cert_pem().as_bytes()).expect("root der"))
        .expect("add root");
    let cert = CertificateDer::from_pem_slice(identity.cert_pem().as_bytes()).expect("cert der");
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem().as_bytes()).expect("key der");
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert], key)
        .expect("client auth");
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

#[tokio::test]
async fn a_silent_client_does_not_block_others() {
    let root = RootCa::generate("c1").expect("root");
    let cancel = CancellationToken::new();
    let addr = serve(&must_issue(&root, "m1", NodeRole::Manager), cancel.clone()).await;
    // Open TCP connections and never speak TLS.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    let client = must_issue(&root, "m2", NodeRole::Manager);
    assert_eq!(
        who_am_i(&addr, client.client_config().expect("cfg"))
            .await
            .expect("answer"),
        "Manager m2"
    );
    cancel.cancel();
}

/// Another protocol beside gRPC on one TLS port, told apart by ALPN (raft's append lanes in
/// swarmd): the connection says which was agreed and who the peer is, so the server can admit
/// managers only; a client asking for a protocol the server does not speak is refused.
#[tokio::test]
async fn a_second_protocol_shares_the_port_by_alpn_and_knows_its_peer() {
    const LANE: &[u8] = b"test-lane/1";
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_stream::StreamExt as _;

    let root = RootCa::generate("c1").expect("root");
    let server = must_issue(&root, "m1", NodeRole::Manager);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let config = swarm_ca::server_config_with_alpn(
        &server.server_config().expect("server config"),
        &[b"h2", LANE],
    );
    let mut incoming = Box::pin(tls_incoming(listener, config));
    // Answers each lane connection with one line: the peer's role check and the protocol.
    tokio::spawn(async move {
        while let Some(Ok(conn)) = incoming.next().await {
            let verdict = match swarm_ca::require_peer_role(conn.peer(), MANAGERS, "the test lane")
            {
                Ok(cert) => format!("admitted {}", cert.node_id),
                Err(status) => format!("refused: {}", status.message()),
            };
            let protocol =
                String::from_utf8_lossy(conn.alpn_protocol().unwrap_or(b"none")).into_owned();
            let mut stream = conn.into_stream();
            let _ = stream
                .write_all(format!("{verdict} over {protocol}\n").as_bytes())
                .await;
            let _ = stream.shutdown().await;
        }
    });

    let line = |identity: NodeIdentity| {
        let addr = addr.clone();
        async move {
            let config = swarm_ca::client_config_with_alpn(
                &identity.client_config().expect("client config"),
                &[LANE],
            );
            let mut stream = swarm_ca::tls_connect(&addr, config, TIMEOUT)
                .await
                .expect("connect");
            let mut text = String::new();
            stream.read_to_string(&mut text).await.expect("read");
            text
        }
    };
    assert_eq!(
        line(must_issue(&root, "m2", NodeRole::Manager)).await,
        "admitted m2 over test-lane/1\n"
    );
    let worker = line(must_issue(&root, "w1", NodeRole::Worker)).await;
    assert!(
        worker.starts_with("refused: worker certificates are refused by the test lane"),
        "{worker}"
    );

    // A protocol the server does not list: the handshake fails, with the address named.
    let manager = must_issue(&root, "m3", NodeRole::Manager);
    let config = swarm_ca::client_config_with_alpn(
        &manager.client_config().expect("client config"),
        &[b"other/1"],
    );
    let error = swarm_ca::tls_connect(&addr, config, TIMEOUT)
        .await
        .expect_err("no common protocol");
    assert!(error.to_string().contains(&addr), "{error}");
}
