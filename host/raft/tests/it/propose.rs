//! Proposing commands: responses, concurrency, leadership errors, status.

use std::collections::BTreeSet;
use std::sync::Arc;

use swarm_raft::RaftError;
use swarm_raft::RaftMember;
use swarm_raft::RaftNode;
use swarm_raft::RaftRole;

use crate::common::ADDR;
use crate::common::KvApp;
use crate::common::must_propose;
use crate::common::must_start_leader;
use crate::common::test_config;

#[tokio::test]
async fn proposals_return_application_responses_in_log_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node, app) = must_start_leader(test_config(dir.path())).await;

    let (first, previous) = must_propose(&node, "set color blue").await;
    assert_eq!(previous, "");
    let (second, previous) = must_propose(&node, "set color red").await;
    assert_eq!(previous, "blue");
    assert!(second > first, "{second} > {first}");
    assert_eq!(must_propose(&node, "add hits 5").await.1, "5");
    assert_eq!(must_propose(&node, "add hits -2").await.1, "3");
    assert!(
        must_propose(&node, "frobnicate")
            .await
            .1
            .starts_with("error: unknown command")
    );

    let state = app.state();
    assert_eq!(state.entries.get("color").map(String::as_str), Some("red"));
    assert_eq!(state.commands, 5);
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_are_each_applied_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node, app) = must_start_leader(test_config(dir.path())).await;
    const CLIENTS: usize = 64;
    const PER_CLIENT: usize = 20;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let node = node.clone();
        tasks.spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..PER_CLIENT {
                answers.push(must_propose(&node, "add counter 1").await);
            }
            answers
        });
    }
    let mut sums = BTreeSet::new();
    let mut indexes = BTreeSet::new();
    while let Some(answers) = tasks.join_next().await {
        for (index, sum) in answers.expect("client task") {
            indexes.insert(index);
            assert!(
                sums.insert(sum.parse::<u64>().expect("sum")),
                "sum {sum} answered twice"
            );
        }
    }
    let total = (CLIENTS * PER_CLIENT) as u64;
    // Every add saw a distinct running total: each command was applied exactly once.
    assert_eq!(sums, (1..=total).collect::<BTreeSet<_>>());
    assert_eq!(app.state().commands, total);
    assert!(indexes.len() as u64 <= total);
    node.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_uninitialised_node_refuses_proposals_as_not_leader() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = RaftNode::start(test_config(dir.path()), Arc::new(KvApp::default()))
        .await
        .expect("start");
    let error = node
        .propose(b"set a b".to_vec())
        .await
        .expect_err("no leader");
    assert_eq!(
        error,
        RaftError::NotLeader {
            leader_id: None,
            leader_addr: None
        }
    );
    assert!(!node.is_leader());
    let timeout = node
        .wait_for_leader(std::time::Duration::from_millis(50))
        .await;
    assert!(
        matches!(timeout, Err(RaftError::Timeout { .. })),
        "{timeout:?}"
    );
    node.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn status_reports_the_single_voter_membership() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node, _app) = must_start_leader(test_config(dir.path())).await;
    // Bootstrapping again is a no-op.
    node.bootstrap_single("elsewhere:1".to_owned())
        .await
        .expect("second bootstrap");
    must_propose(&node, "set a b").await;

    assert!(node.is_leader());
    let status = node.metrics();
    assert_eq!(status.node_id, 1);
    assert_eq!(status.role, RaftRole::Leader);
    assert_eq!(status.leader_id, Some(1));
    assert!(status.term >= 1);
    assert_eq!(status.last_applied_index, status.last_log_index);
    assert_eq!(
        status.members,
        vec![RaftMember {
            id: 1,
            addr: ADDR.to_owned(),
            voter: true
        }]
    );
    node.shutdown().await.expect("shutdown");
    // After shutdown, proposals fail cleanly and shutting down again is fine.
    assert_eq!(
        node.propose(b"set a c".to_vec()).await,
        Err(RaftError::ShutDown)
    );
    node.shutdown().await.expect("second shutdown");
}

#[tokio::test]
async fn a_state_dir_serves_one_node_at_a_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node, _app) = must_start_leader(test_config(dir.path())).await;
    let error = RaftNode::start(test_config(dir.path()), Arc::new(KvApp::default()))
        .await
        .expect_err("state dir in use");
    assert!(
        matches!(&error, RaftError::Storage(text) if text.contains("already open")),
        "{error}"
    );
    node.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn invalid_config_is_refused_before_touching_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&dir.path().join("state"));
    config.election_tick = config.heartbeat_tick;
    let error = RaftNode::start(config, Arc::new(KvApp::default()))
        .await
        .expect_err("invalid");
    assert!(matches!(error, RaftError::Config(_)), "{error}");
    assert!(!dir.path().join("state").exists());
}
