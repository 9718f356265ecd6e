//! Authorization at the service edge: which roles' certificates a gRPC service accepts.

use swarm_types::NodeRole;
use tonic::{Request, Status};

use crate::cert::CertInfo;
use crate::tls::peer_identity;

/// The role's name as users read it (`manager`, `worker`).
pub fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => "manager",
        NodeRole::Worker => "worker",
    }
}

/// The certificate of the request's peer, if its role is one of `allowed`.
///
/// Refuses with `Unauthenticated` when the peer presented no certificate (or the connection was
/// not TLS), and with `PermissionDenied` naming the role found and the roles allowed when its
/// role is not allowed, e.g. `worker certificates are refused by the control API (it takes
/// manager certificates)`. `what` names the service in those messages.
pub fn require_role<T>(
    request: &Request<T>,
    allowed: &[NodeRole],
    what: &str,
) -> Result<CertInfo, Status> {
    check(
        peer_identity(request).and_then(|peer| peer.cert.as_ref()),
        allowed,
        what,
    )
}

/// [`require_role`] for a connection outside gRPC (see [`crate::TlsConnection::peer`]).
pub fn require_peer_role(
    peer: &crate::PeerIdentity,
    allowed: &[NodeRole],
    what: &str,
) -> Result<CertInfo, Status> {
    check(peer.cert.as_ref(), allowed, what)
}

fn check(cert: Option<&CertInfo>, allowed: &[NodeRole], what: &str) -> Result<CertInfo, Status> {
    let Some(cert) = cert else {
        return Err(Status::unauthenticated(format!(
            "a client certificate is required by {what}: connect with this cluster's node \
             certificate"
        )));
    };
    if allowed.contains(&cert.role) {
        return Ok(cert.clone());
    }
    let takes = match allowed {
        [] => "it takes no certificates".to_string(),
        roles => {
            let names: Vec<&str> = roles.iter().copied().map(role_name).collect();
            format!("it takes {} certificates", names.join(" or "))
        }
    };
    Err(Status::permission_denied(format!(
        "{} certificates are refused by {what} ({takes})",
        role_name(cert.role)
    )))
}

/// [`require_role`] as an interceptor, for `XServer::with_interceptor(service, ...)`: the
/// request goes on unchanged (its extensions keep the [`crate::PeerIdentity`]) when the peer's
/// role is allowed.
pub fn role_interceptor(
    allowed: &'static [NodeRole],
    what: &'static str,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
    move |request: Request<()>| {
        require_role(&request, allowed, what)?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    //! The refusals' codes and messages, without a network.

    use std::time::SystemTime;

    use tonic::Code;

    use super::*;
    use crate::PeerIdentity;

    fn request(cert: Option<NodeRole>) -> Request<()> {
        let mut request = Request::new(());
        request.extensions_mut().insert(PeerIdentity {
            remote_addr: None,
            cert: cert.map(|role| CertInfo {
                node_id: "n1".into(),
                role,
                cluster_id: "c1".into(),
                not_before: SystemTime::UNIX_EPOCH,
                not_after: SystemTime::UNIX_EPOCH,
            }),
        });
        request
    }

    #[test]
    fn roles_are_checked_and_refusals_say_why() {
        const MANAGERS: &[NodeRole] = &[NodeRole::Manager];
        let info = require_role(
            &request(Some(NodeRole::Manager)),
            MANAGERS,
            "the control API",
        )
        .expect("manager allowed");
        assert_eq!(
            (info.node_id.as_str(), info.role),
            ("n1", NodeRole::Manager)
        );

        let refused = require_role(
            &request(Some(NodeRole::Worker)),
            MANAGERS,
            "the control API",
        )
        .expect_err("worker refused");
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert_eq!(
            refused.message(),
            "worker certificates are refused by the control API (it takes manager certificates)"
        );

        let both = [NodeRole::Worker, NodeRole::Manager];
        assert!(require_role(&request(Some(NodeRole::Worker)), &both, "x").is_ok());

        for anonymous in [request(None), Request::new(())] {
            let refused = require_role(&anonymous, MANAGERS, "the control API")
                .expect_err("anonymous refused");
            assert_eq!(refused.code(), Code::Unauthenticated);
            assert!(
                refused
                    .message()
                    .starts_with("a client certificate is required by the control API"),
                "{}",
                refused.message()
            );
        }
    }

    #[test]
    fn the_interceptor_passes_the_request_on_or_refuses_it() {
        let intercept = role_interceptor(&[NodeRole::Manager], "raft");
        let passed = intercept(request(Some(NodeRole::Manager))).expect("passes");
        assert!(peer_identity(&passed).is_some(), "extensions kept");
        let refused = intercept(request(Some(NodeRole::Worker))).expect_err("refused");
        assert_eq!(refused.code(), Code::PermissionDenied);
        // It is a tonic interceptor.
        fn is_interceptor(_: &impl tonic::service::Interceptor) {}
        is_interceptor(&intercept);
    }
}
