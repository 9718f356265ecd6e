//! Mutual TLS for tonic: rustls configurations, a listener that completes handshakes
//! concurrently and tags each connection with its peer's identity, and client channels.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tracing::debug;

use crate::cert::{CertInfo, NodeIdentity, RootCa, parse_cert};
use crate::{CaError, MANAGER_SERVER_NAME};

/// How long a client has to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections accepted but not yet taken by the server.
const ACCEPT_QUEUE: usize = 128;
/// Handshakes in progress at once; past this, accepting waits (the kernel's backlog holds new
/// connections), so a flood of silent clients costs bounded memory.
const MAX_HANDSHAKES: usize = 1024;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(e: impl std::fmt::Display) -> CaError {
    CaError::Tls(e.to_string())
}

fn roots(root: &RootCa) -> Result<Arc<RootCertStore>, CaError> {
    let mut store = RootCertStore::empty();
    store.add(root.cert_der().clone()).map_err(tls_err)?;
    Ok(Arc::new(store))
}

pub(crate) fn server_config(identity: &NodeIdentity) -> Result<Arc<ServerConfig>, CaError> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots(identity.root())?, provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(tls_err)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert_der().clone()], identity.key_der()?)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

pub(crate) fn client_config(
    identity: Option<&NodeIdentity>,
    root: &RootCa,
) -> Result<Arc<ClientConfig>, CaError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_root_certificates(roots(root)?);
    let mut config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(vec![identity.cert_der().clone()], identity.key_der()?)
            .map_err(tls_err)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration without a certificate that trusts `root`: a joining node asks for
/// its certificate with it.
pub fn anonymous_client_config(root: &RootCa) -> Result<Arc<ClientConfig>, CaError> {
    client_config(None, root)
}

/// A client configuration that accepts **any** server certificate. Only for fetching the root
/// CA before it is pinned: the caller must check the fetched root's digest against the join
/// token and trust nothing else it received over this connection.
pub fn unverified_client_config() -> Arc<ClientConfig> {
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
                .with_no_client_auth()
        })
        // The ring provider supports the default versions; this cannot fail. Should it ever,
        // a config trusting nothing is the safe answer.
        .unwrap_or_else(|error| {
            tracing::error!(%error, "building the unverified client configuration");
            ClientConfig::builder()
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth()
        });
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Accepts any server certificate, but still checks the handshake signatures (so the peer holds
/// the key of the certificate it sent).
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What the server knows of a connection's peer: its address and, when it presented a valid
/// certificate, what that certificate says. Tonic puts it in every request's extensions
/// (read it with [`peer_identity`]).
#[derive(Clone, Debug)]
pub struct PeerIdentity {
    /// The peer's TCP address.
    pub remote_addr: Option<SocketAddr>,
    /// The peer's certificate, when it presented one (verified against the root during the
    /// handshake).
    pub cert: Option<CertInfo>,
}

/// The peer identity of a request served by [`tls_incoming`] (`None` on other transports).
pub fn peer_identity<T>(request: &tonic::Request<T>) -> Option<&PeerIdentity> {
    request.extensions().get::<PeerIdentity>()
}

/// A TLS connection accepted by [`tls_incoming`], with its peer's identity (tonic's
/// `ConnectInfo`).
pub struct TlsConnection {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: PeerIdentity,
}

impl TlsConnection {
    /// The peer's identity.
    pub fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    /// The application protocol agreed in the handshake (ALPN), if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.stream.get_ref().1.alpn_protocol()
    }

    /// The TLS stream itself, for a protocol other than gRPC.
    pub fn into_stream(self) -> tokio_rustls::server::TlsStream<TcpStream> {
        self.stream
    }
}

/// `config` offering `protocols` (ALPN, most preferred first) instead of HTTP/2 alone: a
/// listener can serve gRPC (`h2`) and another protocol on one port, told apart by
/// [`TlsConnection::alpn_protocol`].
pub fn server_config_with_alpn(config: &ServerConfig, protocols: &[&[u8]]) -> Arc<ServerConfig> {
    let mut config = config.clone();
    config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// `config` asking for `protocols` (ALPN) instead of HTTP/2.
pub fn client_config_with_alpn(config: &ClientConfig, protocols: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config = config.clone();
    config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Connects to the manager at `addr` (`host:port`) over TLS with `config`, verifying the server
/// name [`MANAGER_SERVER_NAME`]; TCP connect and handshake together take at most `timeout`.
/// For protocols other than gRPC (see [`client_config_with_alpn`]); the peer must agree to one
/// of the configuration's protocols.
pub async fn tls_connect(
    addr: &str,
    config: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, CaError> {
    let server_name = ServerName::try_from(MANAGER_SERVER_NAME)
        .map_err(tls_err)?
        .to_owned();
    let wanted = !config.alpn_protocols.is_empty();
    let stream = connect(addr, &TlsConnector::from(config), server_name, timeout)
        .await
        .map_err(|e| CaError::Tls(e.to_string()))?;
    if wanted && stream.get_ref().1.alpn_protocol().is_none() {
        return Err(CaError::Tls(format!(
            "{addr} agreed to none of the application protocols asked for"
        )));
    }
    Ok(stream)
}

/// TCP connect to `addr` (no Nagle) and TLS handshake as a client, together within `timeout`;
/// errors name `addr`.
async fn connect(
    addr: &str,
    connector: &TlsConnector,
    server_name: ServerName<'static>,
    timeout: Duration,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connect = async {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        connector.connect(server_name, tcp).await
    };
    let connected = tokio::time::timeout(timeout, connect)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("timed out after {timeout:?}"),
            ))
        });
    connected.map_err(|e| std::io::Error::new(e.kind(), format!("connecting to {addr}: {e}")))
}

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = PeerIdentity;

    fn connect_info(&self) -> PeerIdentity {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Accepts TCP connections on `listener` and completes TLS handshakes concurrently (a slow or
/// silent client holds only its own task, for at most 10 s), yielding connections for
/// `tonic::transport::Server::serve_with_incoming*`. Failed handshakes are logged at debug and
/// dropped. Accepting stops when the stream is dropped.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> impl Stream<Item = Result<TlsConnection, std::io::Error>> + Send + 'static {
    let (sender, receiver) = mpsc::channel(ACCEPT_QUEUE);
    let acceptor = TlsAcceptor::from(config);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                () = sender.closed() => return,
                permit = handshakes.clone().acquire_owned() => permit,
            };
            // The semaphore is never closed.
            let Ok(permit) = permit else { return };
            let accepted = tokio::select! {
                () = sender.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, remote_addr) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    debug!(%error, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let stream =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            debug!(%remote_addr, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            debug!(%remote_addr, "TLS handshake timed out");
                            return;
                        }
                    };
                let cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|der| match parse_cert(der.as_ref()) {
                        Ok(info) => Some(info),
                        Err(error) => {
                            debug!(%remote_addr, %error, "peer certificate carries no identity");
                            None
                        }
                    });
                let peer = PeerIdentity {
                    remote_addr: Some(remote_addr),
                    cert,
                };
                let _ = sender.send(Ok(TlsConnection { stream, peer })).await;
            });
        }
    });
    ReceiverStream::new(receiver)
}

/// A lazily connecting channel to the manager at `addr` (`host:port`) over TLS with `config`,
/// verifying the server name [`MANAGER_SERVER_NAME`]. TCP connect and TLS handshake together
/// take at most `connect_timeout`; HTTP/2 keepalive pings every 10 s (also while idle) detect
/// a dead peer within 20 s.
pub fn tls_channel(
    addr: &str,
    config: Arc<ClientConfig>,
    connect_timeout: Duration,
) -> Result<tonic::transport::Channel, CaError> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| CaError::Invalid(format!("address {addr:?}: {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let connector = TlsConnector::from(config);
    let addr = addr.to_string();
    let server_name = ServerName::try_from(MANAGER_SERVER_NAME)
        .map_err(tls_err)?
        .to_owned();
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
            let connector = connector.clone();
            let addr = addr.clone();
            let server_name = server_name.clone();
            async move {
                let tls = connect(&addr, &connector, server_name, connect_timeout).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        })),
    )
}
