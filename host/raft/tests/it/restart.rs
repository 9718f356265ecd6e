//! Restart recovery: after a clean shutdown, after dropping a running node, after compaction.

use std::sync::Arc;

use swarm_raft::RaftNode;

use crate::common::KvApp;
use crate::common::TIMEOUT;
use crate::common::must_propose;
use crate::common::must_reach;
use crate::common::must_start_leader;
use crate::common::snapshot_files;
use crate::common::test_config;

/// Proposes `count` commands: half one by one, half from concurrent clients.
async fn propose_workload(node: &RaftNode, prefix: &str, count: usize) {
    for i in 0..count / 2 {
        must_propose(node, &format!("set {prefix}-seq-{i} {i}")).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in count / 2..count {
        let node = node.clone();
        let command = format!("add {prefix}-sum {i}");
        tasks.spawn(async move { must_propose(&node, &command).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("client task");
    }
}

/// Restarts on the same directory with a fresh application and waits until it leads.
async fn must_restart(config: swarm_raft::RaftConfig) -> (RaftNode, Arc<KvApp>) {
    let app = Arc::new(KvApp::default());
    let node = RaftNode::start(config, app.clone()).await.expect("restart");
    node.wait_for_leader(TIMEOUT)
        .await
        .expect("leader after restart");
    (node, app)
}

#[tokio::test]
async fn a_clean_restart_recovers_the_committed_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = test_config(dir.path());
    let (node, app) = must_start_leader(config.clone()).await;
    propose_workload(&node, "before", 60).await;
    let before = app.state();
    let last_index = node.metrics().last_log_index;
    node.shutdown().await.expect("shutdown");
    drop(node);

    let (node, app) = must_restart(config).await;
    assert_eq!(app.state(), before);
    assert!(node.metrics().last_applied_index >= last_index);
    let (index, _) = must_propose(&node, "set after restart").await;
    assert!(
        Some(index) > last_index,
        "{index} continues after {last_index:?}"
    );
    node.shutdown().await.expect("shutdown");
}

/// A leader's log may lose its unsynced tail to a power cut (appends are reported before they are
/// synced), so a node that led never resumes leading in its old term: it wins a new one.
#[tokio::test]
async fn a_restarted_leader_leads_again_only_in_a_new_term() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = test_config(dir.path());
    let (node, _app) = must_start_leader(config.clone()).await;
    must_propose(&node, "set before-restart 1").await;
    let led = node.metrics().term;
    node.shutdown().await.expect("shutdown");
    drop(node);

    let (node, app) = must_restart(config).await;
    let status = node.metrics();
    assert!(
        status.term > led,
        "led in term {led}, leads again in term {}",
        status.term
    );
    assert_eq!(
        app.state()
            .entries
            .get("before-restart")
            .map(String::as_str),
        Some("1")
    );
    must_propose(&node, "set after-restart 1").await;
    node.shutdown().await.expect("shutdown");
}

/// Dropping the runtime drops every task at its current await point: no shutdown, no final sync
/// of the log (as close to `kill -9` as one process allows; see `crash` for a real one).
#[test]
fn a_restart_after_dropping_a_running_node_recovers_the_committed_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = test_config(dir.path());

    let first_runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (node, before) = first_runtime.block_on(async {
        let (node, app) = must_start_leader(config.clone()).await;
        propose_workload(&node, "dropped", 60).await;
        (node, app.state())
    });
    // The runtime goes first, so that dropping the node finds no runtime to shut it down in.
    drop(first_runtime);
    drop(node);

    let second_runtime = tokio::runtime::Runtime::new().expect("runtime");
    second_runtime.block_on(async {
        let (node, app) = must_restart(config).await;
        assert_eq!(app.state(), before);
        must_propose(&node, "set after drop").await;
        node.shutdown().await.expect("shutdown");
    });
}

#[tokio::test]
async fn a_restart_after_snapshot_and_compaction_recovers_the_committed_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    config.snapshot_interval = 20;
    config.logs_to_keep = 5;
    let (node, app) = must_start_leader(config.clone()).await;
    // One entry per proposal: sequential proposals are never batched together.
    for i in 0..120 {
        must_propose(&node, &format!("set key-{i} {i}")).await;
    }
    let status = must_reach(&node, "a snapshot and a purge", |s| {
        s.snapshot_index >= Some(100) && s.purged_index.is_some()
    })
    .await;
    let purged = status.purged_index.expect("purged");
    let snapshot = status.snapshot_index.expect("snapshot");
    assert!(
        purged + config.logs_to_keep <= snapshot,
        "purged {purged} keeps {} behind {snapshot}",
        config.logs_to_keep
    );
    let before = app.state();
    node.shutdown().await.expect("shutdown");
    drop(node);

    let (node, app) = must_restart(config).await;
    let status = node.metrics();
    assert!(status.purged_index >= Some(purged), "{status:?}");
    let first_log_index = status.purged_index.expect("purged") + 1;
    assert!(
        first_log_index > 1,
        "the log still starts at {first_log_index}"
    );
    assert!(status.snapshot_index >= Some(snapshot), "{status:?}");
    assert_eq!(app.state(), before);
    let (snapshots, temporaries) = snapshot_files(dir.path());
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    assert!(temporaries.is_empty(), "{temporaries:?}");
    node.shutdown().await.expect("shutdown");
}
