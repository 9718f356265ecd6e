//! Leadership: who leads, forwarding calls to the leader, and who called.
//!
//! Only the leader runs the dispatcher, the orchestrators and the scheduler (a *term*, started
//! when this manager becomes leader and has applied its whole log, stopped when it steps down).
//! Every other manager forwards the calls that need the leader (control, dispatcher, node CA,
//! raft membership) with [`LeaderRouted`]: the HTTP/2 request is passed on unchanged over a
//! mutual-TLS channel to the leader, and its response streamed back.
//!
//! A forwarded call is marked, and carries who the original caller was (node id and role from
//! its certificate, or that it had none). The leader believes those headers only from a peer
//! that presented a manager certificate; they are stripped from anything else, so a worker
//! cannot claim another identity. A forwarded call that reaches a manager that does not lead
//! (leadership moved in between) fails with `Unavailable` rather than bouncing again.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use swarm_ca::PeerIdentity;
use swarm_raft::{ChannelMaker, RaftNode};
use swarm_types::NodeRole;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::Channel;
use tower::{Service, ServiceExt as _};

use crate::dispatcher::Dispatcher;

/// Header marking a call a manager forwarded to the leader.
pub const FORWARDED: &str = "x-swarm-forwarded";
/// Header naming the original caller's node id (with [`FORWARDED_ROLE`]).
pub const FORWARDED_NODE: &str = "x-swarm-forwarded-node";
/// Header naming the original caller's role: `manager`, `worker`, `anonymous` (no
/// certificate) or `local` (the forwarding manager's control socket).
pub const FORWARDED_ROLE: &str = "x-swarm-forwarded-role";

/// What the leader runs while it leads.
pub struct LeaderTerm {
    pub dispatcher: Arc<Dispatcher>,
}

/// Shared view of who leads, and the current term when this manager does.
#[derive(Clone)]
pub struct Leadership {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Option<RaftNode>,
    channels: Option<ChannelMaker>,
    cache: Mutex<HashMap<String, Channel>>,
    term: RwLock<Option<Arc<LeaderTerm>>>,
}

impl Leadership {
    /// Leadership over `raft`; `channels` reaches other managers (mutual TLS in swarmd).
    pub fn new(raft: RaftNode, channels: ChannelMaker) -> Self {
        Self {
            inner: Arc::new(Inner {
                raft: Some(raft),
                channels: Some(channels),
                cache: Mutex::new(HashMap::new()),
                term: RwLock::new(None),
            }),
        }
    }

    /// A manager that always leads with `term` (tests of one component, no raft).
    pub fn fixed(term: LeaderTerm) -> Self {
        Self {
            inner: Arc::new(Inner {
                raft: None,
                channels: None,
                cache: Mutex::new(HashMap::new()),
                term: RwLock::new(Some(Arc::new(term))),
            }),
        }
    }

    /// The current term, when this manager leads and has caught up.
    pub fn term(&self) -> Option<Arc<LeaderTerm>> {
        self.inner.term.read().clone()
    }

    pub(crate) fn set_term(&self, term: Option<Arc<LeaderTerm>>) {
        *self.inner.term.write() = term;
    }

    /// The dispatcher of the current term, or why there is none here.
    pub fn dispatcher(&self) -> Result<Arc<Dispatcher>, tonic::Status> {
        match self.term() {
            Some(term) => Ok(term.dispatcher.clone()),
            None => Err(self.not_here()),
        }
    }

    /// Where a call for the leader goes now.
    fn route(&self) -> Route {
        if self.term().is_some() {
            return Route::Local;
        }
        let Some(raft) = &self.inner.raft else {
            return Route::Refuse(tonic::Status::unavailable("this manager does not lead"));
        };
        let status = raft.metrics();
        match status.leader_id {
            Some(leader) if leader == status.node_id => Route::Refuse(self.not_here()),
            Some(leader) => match status.members.iter().find(|m| m.id == leader) {
                Some(member) => Route::Forward(member.addr.clone()),
                None => Route::Refuse(tonic::Status::unavailable(format!(
                    "the leader (raft id {leader}) is not in this manager's membership yet; retry"
                ))),
            },
            None => Route::Refuse(self.not_here()),
        }
    }

    /// Confirms, before a read is served from this manager's store, that it still leads (a
    /// quorum answers its heartbeat) and has applied everything committed before the read: a
    /// leader cut off from the others must not answer from a store the new leader has moved
    /// past. (Tests that build a fixed term have no raft and nothing to confirm.)
    async fn confirm_read(&self) -> Result<(), tonic::Status> {
        let Some(raft) = &self.inner.raft else {
            return Ok(());
        };
        raft.ensure_linearizable().await.map_err(|error| {
            tonic::Status::unavailable(format!(
                "this manager could not confirm it still leads ({error}); retry"
            ))
        })
    }

    fn not_here(&self) -> tonic::Status {
        let leads = self.inner.raft.as_ref().is_some_and(RaftNode::is_leader);
        if leads {
            tonic::Status::unavailable(
                "this manager was just elected leader and is catching up; retry",
            )
        } else {
            tonic::Status::unavailable(
                "no leader: the managers are electing one (or too few are up for a quorum); retry",
            )
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel, tonic::Status> {
        if let Some(channel) = self.inner.cache.lock().get(addr) {
            return Ok(channel.clone());
        }
        let make = self
            .inner
            .channels
            .as_ref()
            .ok_or_else(|| tonic::Status::unavailable("this manager cannot reach others"))?;
        let channel = make(addr).map_err(|e| {
            tonic::Status::unavailable(format!("reaching the leader at {addr}: {e}"))
        })?;
        self.inner
            .cache
            .lock()
            .insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    fn forget(&self, addr: &str) {
        self.inner.cache.lock().remove(addr);
    }
}

enum Route {
    Local,
    Forward(String),
    Refuse(tonic::Status),
}

/// A gRPC service answered by the leader: served here when this manager leads, forwarded to
/// the leader otherwise.
#[derive(Clone)]
pub struct LeaderRouted<S> {
    local: S,
    leadership: Leadership,
    admit: Option<(&'static [NodeRole], &'static str)>,
}

impl<S> LeaderRouted<S> {
    pub fn new(local: S, leadership: Leadership) -> Self {
        Self {
            local,
            leadership,
            admit: None,
        }
    }

    /// Refuses callers other than local ones and nodes with one of `roles`, here, before the
    /// call is served or forwarded (`what` names the service in the error).
    pub fn admit(mut self, roles: &'static [NodeRole], what: &'static str) -> Self {
        self.admit = Some((roles, what));
        self
    }
}

/// Control calls that only read the store (`Get*`, `List*`): answered by the leader only after
/// it confirmed its leadership ([`Leadership::confirm_read`]). Writes need no such step: a
/// deposed leader cannot commit them.
fn is_read(path: &str) -> bool {
    path.strip_prefix("/swarm.v1.Control/")
        .is_some_and(|method| method.starts_with("Get") || method.starts_with("List"))
}

impl<S: NamedService> NamedService for LeaderRouted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for LeaderRouted<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if let Some((roles, what)) = self.admit {
            let caller = Caller::from_parts(request.extensions().get::<PeerIdentity>(), |name| {
                request.headers().get(name).and_then(|v| v.to_str().ok())
            });
            if let Err(status) = caller.require(roles, what) {
                return Box::pin(async move { Ok(status.into_http()) });
            }
        }
        let forwarded = request.headers().contains_key(FORWARDED);
        match self.leadership.route() {
            Route::Local => {
                let mut local = self.local.clone();
                let leadership = self.leadership.clone();
                let read = is_read(request.uri().path());
                Box::pin(async move {
                    if read && let Err(status) = leadership.confirm_read().await {
                        return Ok(status.into_http());
                    }
                    local.call(request).await
                })
            }
            Route::Refuse(status) => Box::pin(async move { Ok(status.into_http()) }),
            Route::Forward(_) if forwarded => Box::pin(async move {
                Ok(tonic::Status::unavailable(
                    "leadership moved while the call was forwarded; retry",
                )
                .into_http())
            }),
            Route::Forward(addr) => {
                let leadership = self.leadership.clone();
                mark_forwarded(&mut request);
                Box::pin(async move {
                    let channel = match leadership.channel(&addr) {
                        Ok(channel) => channel,
                        Err(status) => return Ok(status.into_http()),
                    };
                    // `oneshot` waits for the channel to be ready before calling it.
                    match channel.oneshot(request).await {
                        Ok(response) => Ok(response),
                        Err(error) => {
                            leadership.forget(&addr);
                            Ok(tonic::Status::unavailable(format!(
                                "forwarding to the leader at {addr}: {}",
                                error_chain(&error)
                            ))
                            .into_http())
                        }
                    }
                })
            }
        }
    }
}

/// An error with its sources (`transport error: ... Connection refused`), so that a caller can
/// tell a call that never reached the leader.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Replaces any caller-supplied forwarding headers with what this manager knows of the caller.
fn mark_forwarded(request: &mut http::Request<Body>) {
    let peer = request.extensions().get::<PeerIdentity>().cloned();
    let headers = request.headers_mut();
    headers.remove(FORWARDED_NODE);
    headers.remove(FORWARDED_ROLE);
    headers.insert(FORWARDED, http::HeaderValue::from_static("1"));
    let (node, role) = match peer {
        None => (None, "local"),
        Some(PeerIdentity { cert: None, .. }) => (None, "anonymous"),
        Some(PeerIdentity {
            cert: Some(cert), ..
        }) => (Some(cert.node_id), role_name(cert.role)),
    };
    headers.insert(FORWARDED_ROLE, http::HeaderValue::from_static(role));
    if let Some(node) = node.and_then(|n| http::HeaderValue::from_str(&n).ok()) {
        headers.insert(FORWARDED_NODE, node);
    }
}

fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => "manager",
        NodeRole::Worker => "worker",
    }
}

/// Who made a call, as far as this manager can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Not over TLS: the control socket (an operator on this machine), or a plaintext listener
    /// in tests. Trusted.
    Local,
    /// Over TLS without a certificate (a node asking to join).
    Anonymous,
    /// A node with a certificate.
    Node { node_id: String, role: NodeRole },
}

impl Caller {
    /// The caller of `request`, following forwarding headers from managers only.
    pub fn of<T>(request: &tonic::Request<T>) -> Caller {
        let metadata = request.metadata();
        Self::from_parts(request.extensions().get::<PeerIdentity>(), |name| {
            metadata.get(name).and_then(|v| v.to_str().ok())
        })
    }

    /// The caller from a connection's peer identity and the request's headers.
    fn from_parts<'a>(
        peer: Option<&PeerIdentity>,
        header: impl Fn(&str) -> Option<&'a str>,
    ) -> Caller {
        let Some(peer) = peer else {
            return Caller::Local;
        };
        let Some(cert) = &peer.cert else {
            return Caller::Anonymous;
        };
        if cert.role == NodeRole::Manager && header(FORWARDED).is_some() {
            let role = header(FORWARDED_ROLE);
            let node = header(FORWARDED_NODE).map(str::to_string);
            return match (role, node) {
                // A call made on the forwarding manager's own control socket.
                (Some("local"), _) => Caller::Local,
                (Some("manager"), Some(node_id)) => Caller::Node {
                    node_id,
                    role: NodeRole::Manager,
                },
                (Some("worker"), Some(node_id)) => Caller::Node {
                    node_id,
                    role: NodeRole::Worker,
                },
                // "anonymous", or headers that make no sense: trust nothing.
                _ => Caller::Anonymous,
            };
        }
        Caller::Node {
            node_id: cert.node_id.clone(),
            role: cert.role,
        }
    }

    /// Refuses callers that are neither local nor a node with one of `roles`.
    pub fn require(&self, roles: &[NodeRole], what: &str) -> Result<(), tonic::Status> {
        match self {
            Caller::Local => Ok(()),
            Caller::Node { role, .. } if roles.contains(role) => Ok(()),
            Caller::Node { role, node_id } => Err(tonic::Status::permission_denied(format!(
                "{what} refuses {} certificates (node {node_id})",
                role_name(*role)
            ))),
            Caller::Anonymous => Err(tonic::Status::unauthenticated(format!(
                "{what} requires a client certificate"
            ))),
        }
    }
}
