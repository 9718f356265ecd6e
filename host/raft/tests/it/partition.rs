//! Network partitions with a fault-injecting transport: every raft connection goes through a
//! stream that fails reads and writes while its link is cut, so a cut also breaks connections
//! already open. Three nodes over real gRPC on loopback: a partition that isolates the leader,
//! and one that isolates a follower (a minority), then healing.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use swarm_raft::{ChannelMaker, RaftError, RaftRole};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::common::{Member, TIMEOUT, group, wait_until};

/// The links that are cut, as (from node id, to address).
#[derive(Clone, Default)]
struct Network {
    cut: Arc<Mutex<HashSet<(u64, String)>>>,
}

impl Network {
    fn is_cut(&self, from: u64, to: &str) -> bool {
        self.cut
            .lock()
            .map(|cut| cut.contains(&(from, to.to_string())))
            .unwrap_or(false)
    }

    fn set(&self, from: u64, to: &str, cut: bool) {
        if let Ok(mut links) = self.cut.lock() {
            if cut {
                links.insert((from, to.to_string()));
            } else {
                links.remove(&(from, to.to_string()));
            }
        }
    }

    /// Channels from node `from`, through streams that fail while their link is cut.
    fn channels(&self, from: u64) -> ChannelMaker {
        let network = self.clone();
        Arc::new(move |addr: &str| {
            let network = network.clone();
            let target = addr.to_string();
            let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| e.to_string())?
                .connect_timeout(Duration::from_millis(500));
            Ok(
                endpoint.connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
                    let network = network.clone();
                    let target = target.clone();
                    async move {
                        if network.is_cut(from, &target) {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::ConnectionRefused,
                                "partitioned",
                            ));
                        }
                        let stream = TcpStream::connect(&target).await?;
                        stream.set_nodelay(true)?;
                        Ok::<_, std::io::Error>(TokioIo::new(Cuttable {
                            stream,
                            network,
                            from,
                            target,
                        }))
                    }
                })),
            )
        })
    }
}

/// A TCP stream that fails while its link is cut.
struct Cuttable {
    stream: TcpStream,
    network: Network,
    from: u64,
    target: String,
}

impl Cuttable {
    fn check(&self) -> std::io::Result<()> {
        if self.network.is_cut(self.from, &self.target) {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "partitioned",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for Cuttable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Cuttable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Three nodes whose raft connections all go through `network`.
async fn three(dirs: &[tempfile::TempDir], network: &Network) -> Vec<Member> {
    group(dirs, |id, mut c, _| {
        c.channels = network.channels(id);
        // AppendEntries too go through the faulty network, over gRPC.
        c.append_lanes = None;
        c
    })
    .await
}

/// Cuts (or heals) every link between `node` and the others, both ways.
fn isolate(network: &Network, members: &[Member], node: usize, cut: bool) {
    for (i, other) in members.iter().enumerate() {
        if i != node {
            network.set(members[node].id, &other.addr, cut);
            network.set(other.id, &members[node].addr, cut);
        }
    }
}

fn value(member: &Member, key: &str) -> Option<String> {
    member.app.state().entries.get(key).cloned()
}

async fn stop(members: Vec<Member>) {
    for member in members {
        member.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_replaced_and_its_unacknowledged_write_is_dropped() {
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let network = Network::default();
    let members = three(&dirs, &network).await;
    members[0]
        .node
        .propose(b"set before partition".to_vec())
        .await
        .expect("write before the partition");

    isolate(&network, &members, 0, true);
    // The old leader cannot commit: its write is not acknowledged.
    let stale = tokio::time::timeout(
        Duration::from_secs(2),
        members[0].node.propose(b"set stale yes".to_vec()),
    )
    .await;
    assert!(
        !matches!(stale, Ok(Ok(_))),
        "an isolated leader acknowledged a write: {stale:?}"
    );
    // The majority elects one of its own and takes writes.
    wait_until("a leader among the majority", || {
        members[1..]
            .iter()
            .any(|m| m.node.metrics().role == RaftRole::Leader)
    })
    .await;
    let leader = members[1..]
        .iter()
        .find(|m| m.node.metrics().role == RaftRole::Leader)
        .expect("leader");
    leader
        .node
        .wait_for_leader(TIMEOUT)
        .await
        .expect("caught up");
    leader
        .node
        .propose(b"set during partition majority".to_vec())
        .await
        .expect("the majority takes writes");

    // Healed: the old leader follows, has the majority's write, and its own is gone.
    isolate(&network, &members, 0, false);
    wait_until("the old leader to catch up", || {
        value(&members[0], "during").as_deref() == Some("partition majority")
    })
    .await;
    assert_ne!(members[0].node.metrics().role, RaftRole::Leader);
    for member in &members {
        wait_until("every member to agree", || {
            value(member, "during").as_deref() == Some("partition majority")
        })
        .await;
        assert_eq!(
            value(member, "stale"),
            None,
            "an unacknowledged write survived on {}",
            member.id
        );
        assert_eq!(value(member, "before").as_deref(), Some("partition"));
    }
    stop(members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_follower_does_not_stop_the_majority_and_catches_up() {
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let network = Network::default();
    let members = three(&dirs, &network).await;

    isolate(&network, &members, 2, true);
    for i in 0..20 {
        members[0]
            .node
            .propose(format!("set k{i} v{i}").into_bytes())
            .await
            .expect("the majority keeps committing");
    }
    // The minority cannot take writes.
    match members[2].node.propose(b"set minority yes".to_vec()).await {
        Err(RaftError::NotLeader { .. }) => {}
        other => panic!("an isolated follower took a write: {other:?}"),
    }
    assert_eq!(value(&members[2], "k19"), None);
    // Pacing, not synchronisation: the isolated follower times out and runs elections of its
    // own (a higher term) before the partition heals.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    isolate(&network, &members, 2, false);
    wait_until("the follower to catch up", || {
        value(&members[2], "k19").as_deref() == Some("v19")
    })
    .await;
    // The returning follower's higher term may force an election (openraft 0.9 has no
    // pre-vote): wait for a leader, and retry a write that meets an election.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        wait_until("a leader after healing", || {
            members
                .iter()
                .any(|m| m.node.metrics().role == RaftRole::Leader)
        })
        .await;
        let leader = members
            .iter()
            .find(|m| m.node.metrics().role == RaftRole::Leader);
        if let Some(leader) = leader
            && leader
                .node
                .propose(b"set after heal".to_vec())
                .await
                .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no write succeeded after healing"
        );
    }
    stop(members).await;
}
