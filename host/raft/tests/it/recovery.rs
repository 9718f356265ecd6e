//! Recovery and protection of the durable state: `force_new_cluster` (quorum loss) and the log
//! and snapshots encrypted at rest.

use std::sync::Arc;

use swarm_raft::{RaftNode, RaftRole};

use crate::common::{
    KvApp, Member, TIMEOUT, group, must_propose, must_reach, must_start_leader, test_config,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_new_cluster_keeps_the_state_and_leads_alone() {
    let dirs = [(); 3].map(|()| tempfile::tempdir().expect("tempdir"));
    let members = group(&dirs, |_, c, _| c).await;
    must_propose(&members[0].node, "set before snapshot").await;
    members[1].node.trigger_snapshot().await.ok();
    must_reach(&members[1].node, "a snapshot on node 2", |s| {
        s.snapshot_index.is_some()
    })
    .await;
    for i in 0..5 {
        must_propose(&members[0].node, &format!("add counter {i}")).await;
    }
    // The index the write was committed at (the leader's metrics may not show it yet).
    let (committed, _) = must_propose(&members[0].node, "set after snapshot").await;
    must_reach(&members[1].node, "node 2 applies everything", |s| {
        s.last_applied_index >= Some(committed)
    })
    .await;
    let expected = members[1].app.state().entries;
    assert_eq!(expected.get("counter").map(String::as_str), Some("10"));
    let old_term = members[1].node.metrics().term;
    for member in members {
        member.stop().await;
    }

    // Quorum is lost for good: node 2 alone is forced into a new cluster, on a new address.
    let forced = Member::start(2, dirs[1].path(), None, |mut c, addr| {
        c.force_new_cluster = Some(addr.to_owned());
        c
    })
    .await;
    assert_eq!(
        forced.node.wait_for_leader(TIMEOUT).await.expect("leader"),
        2
    );
    let status = forced.node.metrics();
    assert_eq!(status.role, RaftRole::Leader);
    assert!(status.term > old_term, "{status:?}");
    assert_eq!(status.members.len(), 1, "{status:?}");
    assert_eq!(status.members[0].id, 2);
    assert_eq!(status.members[0].addr, forced.addr);
    assert!(status.members[0].voter);
    assert_eq!(forced.app.state().entries, expected);
    must_propose(&forced.node, "set after force").await;
    let addr = forced.addr.clone();
    forced.stop().await;

    // A plain restart keeps the new one-member cluster and everything in it.
    let again = Member::start(2, dirs[1].path(), None, |c, _| c).await;
    again.node.wait_for_leader(TIMEOUT).await.expect("leader");
    let status = again.node.metrics();
    assert_eq!(status.members.len(), 1, "{status:?}");
    assert_eq!(status.members[0].addr, addr);
    let state = again.app.state();
    assert_eq!(
        state.entries.get("after").map(String::as_str),
        Some("force")
    );
    assert_eq!(state.entries.get("counter").map(String::as_str), Some("10"));
    again.stop().await;
}

#[tokio::test]
async fn force_new_cluster_needs_raft_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.force_new_cluster = Some("127.0.0.1:1".into());
    let error = RaftNode::start(config, Arc::new(KvApp::default()))
        .await
        .expect_err("nothing to keep");
    assert!(error.to_string().contains("no raft state"), "{error}");
}

fn on_disk_contains(dir: &std::path::Path, needle: &[u8]) -> bool {
    let mut files = vec![dir.join(swarm_raft::LOG_FILE_NAME)];
    for sub in ["snapshots", "wal"] {
        for entry in std::fs::read_dir(dir.join(sub)).expect(sub) {
            files.push(entry.expect("entry").path());
        }
    }
    files.iter().any(|path| {
        let bytes = std::fs::read(path).expect("read");
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

#[tokio::test]
async fn the_log_and_snapshots_are_encrypted_at_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keyed = |key: [u8; 32]| {
        let mut config = test_config(dir.path());
        config.cipher = Some(key);
        config
    };
    let (node, _) = must_start_leader(keyed([7; 32])).await;
    must_propose(&node, "set in-snapshot topsecret-one").await;
    node.trigger_snapshot().await.expect("snapshot");
    must_reach(&node, "a snapshot", |s| s.snapshot_index.is_some()).await;
    must_propose(&node, "set in-log topsecret-two").await;
    node.shutdown().await.expect("shutdown");
    assert!(!on_disk_contains(dir.path(), b"topsecret"));

    // The same key recovers both.
    let (node, app) = must_start_leader(keyed([7; 32])).await;
    let state = app.state();
    assert_eq!(
        state.entries.get("in-snapshot").map(String::as_str),
        Some("topsecret-one")
    );
    assert_eq!(
        state.entries.get("in-log").map(String::as_str),
        Some("topsecret-two")
    );
    node.shutdown().await.expect("shutdown");

    // Another key, or none, fails the start with a clear error.
    let error = RaftNode::start(keyed([8; 32]), Arc::new(KvApp::default()))
        .await
        .expect_err("wrong key");
    assert!(
        error
            .to_string()
            .contains("cannot decrypt: wrong key or corrupt"),
        "{error}"
    );
    let error = RaftNode::start(test_config(dir.path()), Arc::new(KvApp::default()))
        .await
        .expect_err("no key");
    assert!(error.to_string().contains("no key was given"), "{error}");
}

#[tokio::test]
async fn a_wrong_key_fails_on_the_snapshot_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.cipher = Some([1; 32]);
    config.logs_to_keep = 0;
    let (node, _) = must_start_leader(config.clone()).await;
    must_propose(&node, "set k v").await;
    node.trigger_snapshot().await.expect("snapshot");
    must_reach(&node, "a snapshot", |s| s.snapshot_index.is_some()).await;
    node.shutdown().await.expect("shutdown");
    config.cipher = Some([2; 32]);
    let error = RaftNode::start(config, Arc::new(KvApp::default()))
        .await
        .expect_err("wrong key");
    assert!(error.to_string().contains("cannot decrypt"), "{error}");
}
