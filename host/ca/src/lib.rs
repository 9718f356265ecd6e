//! swarm-ca: the cluster's certificate authority and the mutual-TLS glue for tonic.
//!
//! The first manager creates a root CA ([`RootCa::generate`], ECDSA P-256, 20 years). Every node
//! holds a certificate the CA issued against its CSR ([`RootCa::issue`]): the subject's CN is the
//! node id, its OU the role (`swarm-manager` or `swarm-worker`), its O the cluster id; manager
//! certificates also name [`MANAGER_SERVER_NAME`], which clients verify. [`NodeIdentity`] turns a
//! certificate, its key and the root into rustls configurations; [`tls_incoming`] serves tonic
//! over TLS and tells every request who its peer is ([`PeerIdentity`]); [`tls_channel`] is the
//! client side; [`require_role`] and [`role_interceptor`] refuse calls by role.
//!
//! *Invariant*: nothing here panics on input: PEM, CSRs and certificates come from the network.
//! One crypto provider (ring) for certificates and TLS.

mod auth;
mod cert;
mod tls;

pub use auth::{require_peer_role, require_role, role_interceptor, role_name};
pub use cert::{CertInfo, NodeIdentity, NodeKey, RootCa, parse_cert};
/// The rustls this crate builds its configurations with (ring provider only).
pub use rustls;
pub use tls::{
    PeerIdentity, TlsConnection, anonymous_client_config, client_config_with_alpn, peer_identity,
    server_config_with_alpn, tls_channel, tls_connect, tls_incoming, unverified_client_config,
};

use std::time::Duration;

/// The OU of manager certificates.
pub const MANAGER_OU: &str = "swarm-manager";
/// The OU of worker certificates.
pub const WORKER_OU: &str = "swarm-worker";
/// The DNS name every manager certificate carries; clients verify managers against it.
pub const MANAGER_SERVER_NAME: &str = "swarm-manager";
/// Lifetime of the root CA (SwarmKit: 20 years).
pub const ROOT_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Lifetime of node certificates (SwarmKit: 90 days).
pub const NODE_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);

/// Why a CA or TLS operation failed. The message names what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Input that does not parse or verify: PEM, a CSR, a certificate, a key.
    #[error("{0}")]
    Invalid(String),
    /// The root CA cannot sign (it was loaded without its key).
    #[error("this root CA has no key: only managers can issue certificates")]
    NoKey,
    /// A rustls configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(String),
}
