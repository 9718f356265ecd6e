//! Shared helpers: a key-value test application and node start-up helpers.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;
use swarm_raft::BoxedStream;
use swarm_raft::RaftConfig;
use swarm_raft::RaftNode;
use swarm_raft::RaftStatus;
use swarm_raft::StateMachineApp;
use swarm_raft::StreamMaker;

pub const TIMEOUT: Duration = Duration::from_secs(20);
pub const ADDR: &str = "127.0.0.1:4242";

/// The state of [`KvApp`]; `commands` counts applied commands, so a command applied twice or
/// lost shows up even when it would not change the map.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvState {
    pub entries: BTreeMap<String, String>,
    pub commands: u64,
    pub last_index: u64,
}

/// A key-value application. Commands are text:
/// `set KEY VALUE` answers the previous value (empty if none), `add KEY N` answers the new sum.
#[derive(Debug, Default)]
pub struct KvApp {
    state: Mutex<KvState>,
}

impl KvApp {
    pub fn state(&self) -> KvState {
        self.state.lock().expect("lock").clone()
    }
}

impl StateMachineApp for KvApp {
    fn apply(&self, index: u64, command: &[u8]) -> Vec<u8> {
        let mut state = self.state.lock().expect("lock");
        assert!(
            index >= state.last_index,
            "index went backwards: {index} < {}",
            state.last_index
        );
        state.last_index = index;
        state.commands += 1;
        let text = String::from_utf8_lossy(command).into_owned();
        let parts: Vec<&str> = text.splitn(3, ' ').collect();
        match parts.as_slice() {
            ["set", key, value] => state
                .entries
                .insert((*key).to_owned(), (*value).to_owned())
                .unwrap_or_default()
                .into_bytes(),
            ["add", key, amount] => {
                let Ok(amount) = amount.parse::<i64>() else {
                    return b"error: amount is not a number".to_vec();
                };
                let entry = state
                    .entries
                    .entry((*key).to_owned())
                    .or_insert_with(|| "0".to_owned());
                let sum = entry.parse::<i64>().unwrap_or(0) + amount;
                *entry = sum.to_string();
                entry.clone().into_bytes()
            }
            _ => format!("error: unknown command {text:?}").into_bytes(),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&*self.state.lock().expect("lock")).expect("encode state")
    }

    fn restore(&self, snapshot: &[u8]) -> Result<(), String> {
        let restored: KvState = serde_json::from_slice(snapshot).map_err(|e| e.to_string())?;
        *self.state.lock().expect("lock") = restored;
        Ok(())
    }
}

/// A configuration with fast ticks for tests.
pub fn test_config(dir: &Path) -> RaftConfig {
    let mut config = RaftConfig::new(1, dir);
    config.tick = Duration::from_millis(20);
    config
}

/// Starts a node on `config` with a fresh application, bootstraps it and waits until it leads.
pub async fn must_start_leader(config: RaftConfig) -> (RaftNode, Arc<KvApp>) {
    let app = Arc::new(KvApp::default());
    let node = RaftNode::start(config, app.clone())
        .await
        .expect("start raft node");
    node.bootstrap_single(ADDR.to_owned())
        .await
        .expect("bootstrap");
    node.wait_for_leader(TIMEOUT).await.expect("leader");
    (node, app)
}

pub async fn must_propose(node: &RaftNode, command: &str) -> (u64, String) {
    let (index, response) = node
        .propose(command.as_bytes().to_vec())
        .await
        .expect("propose");
    (index, String::from_utf8(response).expect("utf-8 response"))
}

/// Polls the node's status until `done` holds, failing after [`TIMEOUT`].
pub async fn must_reach(
    node: &RaftNode,
    what: &str,
    done: impl Fn(&RaftStatus) -> bool,
) -> RaftStatus {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let status = node.metrics();
        if done(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The snapshot files and leftover temporary files in a state directory.
pub fn snapshot_files(state_dir: &Path) -> (Vec<String>, Vec<String>) {
    let mut snapshots = Vec::new();
    let mut temporaries = Vec::new();
    for entry in std::fs::read_dir(state_dir.join("snapshots")).expect("list snapshots") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".snap") {
            snapshots.push(name);
        } else if name.ends_with(".tmp") {
            temporaries.push(name);
        }
    }
    snapshots.sort();
    (snapshots, temporaries)
}

/// Each member's append-lane address, by its gRPC address (a plaintext listener cannot tell
/// the two protocols apart, as swarmd's TLS listener does by ALPN).
static LANES: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(Mutex::default);

/// Plaintext append lanes to the members started here (on by default in [`Member::start`]).
pub fn plain_lanes() -> StreamMaker {
    Arc::new(|addr: &str| {
        let lane = LANES.lock().expect("lanes").get(addr).cloned();
        Box::pin(async move {
            let lane = lane.ok_or("no append lane at that address")?;
            let stream = tokio::net::TcpStream::connect(&lane)
                .await
                .map_err(|e| format!("connecting to {lane}: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            Ok(Box::new(stream) as BoxedStream)
        })
    })
}

/// One raft node serving real gRPC on a loopback port, and append lanes on another (the
/// multi-node suites).
pub struct Member {
    pub node: RaftNode,
    pub app: Arc<KvApp>,
    pub addr: String,
    pub id: u64,
    /// Where this member takes append lanes, and how many it accepted.
    pub lane_addr: String,
    pub lane_connections: Arc<std::sync::atomic::AtomicUsize>,
    server: tokio_util::sync::CancellationToken,
}

impl Member {
    /// Starts node `id` in `dir`, serving raft on `addr` (a fresh port when `None`), with 50 ms
    /// ticks (fast elections, yet a loaded machine keeps its leader) and AppendEntries over
    /// [`plain_lanes`]; `config_of` adjusts the configuration and sees the bound address.
    pub async fn start(
        id: u64,
        dir: &Path,
        addr: Option<&str>,
        config_of: impl FnOnce(RaftConfig, &str) -> RaftConfig,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind(addr.unwrap_or("127.0.0.1:0"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let mut config = RaftConfig::new(id, dir);
        config.tick = Duration::from_millis(50);
        config.election_tick = 10;
        config.append_lanes = Some(plain_lanes());
        let lanes = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a lane listener");
        let lane_addr = lanes.local_addr().expect("lane addr").to_string();
        LANES
            .lock()
            .expect("lanes")
            .insert(addr.clone(), lane_addr.clone());
        let lane_connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted_lanes = lane_connections.clone();
        let app = Arc::new(KvApp::default());
        let node = RaftNode::start(config_of(config, &addr), app.clone())
            .await
            .expect("start");
        let server = tokio_util::sync::CancellationToken::new();
        let lane_service = node.append_lane_service();
        let shutdown = server.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => return,
                    accepted = lanes.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else { return };
                let _ = stream.set_nodelay(true);
                accepted_lanes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (service, shutdown) = (lane_service.clone(), shutdown.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = service.serve_append_lane(stream) => {}
                    }
                });
            }
        });
        let service = node.grpc_service();
        let shutdown = server.clone();
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    shutdown.cancelled(),
                )
                .await;
        });
        Self {
            node,
            app,
            addr,
            id,
            lane_addr,
            lane_connections,
            server,
        }
    }

    /// Stops the server and the raft node.
    pub async fn stop(self) {
        self.server.cancel();
        self.node.shutdown().await.expect("shutdown");
    }
}

/// A group of `dirs.len()` nodes: node 1 bootstraps, the others join as learners and are
/// promoted; `config_of(id, config, addr)` adjusts each node's configuration.
pub async fn group(
    dirs: &[tempfile::TempDir],
    config_of: impl Fn(u64, RaftConfig, &str) -> RaftConfig,
) -> Vec<Member> {
    let first = Member::start(1, dirs[0].path(), None, |c, a| config_of(1, c, a)).await;
    first
        .node
        .bootstrap_single(first.addr.clone())
        .await
        .expect("bootstrap");
    first.node.wait_for_leader(TIMEOUT).await.expect("leader");
    let mut members = vec![first];
    for (index, dir) in dirs.iter().enumerate().skip(1) {
        let id = index as u64 + 1;
        let member = Member::start(id, dir.path(), None, |c, a| config_of(id, c, a)).await;
        members[0]
            .node
            .add_learner(id, member.addr.clone())
            .await
            .expect("add learner");
        members[0].node.promote(id).await.expect("promote");
        members.push(member);
    }
    members
}

/// Polls `done` until it holds, failing the test after [`TIMEOUT`].
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
