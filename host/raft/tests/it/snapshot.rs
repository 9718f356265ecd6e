//! Snapshot files: written under `snapshots/`, the newest only, named after their last index.

use crate::common::must_propose;
use crate::common::must_reach;
use crate::common::must_start_leader;
use crate::common::snapshot_files;
use crate::common::test_config;

/// The last log index a snapshot file covers, from its name (`<index:020>-...snap`).
fn file_index(name: &str) -> u64 {
    name.split('-')
        .next()
        .and_then(|index| index.parse().ok())
        .expect("index in snapshot name")
}

#[tokio::test]
async fn snapshots_are_kept_on_disk_and_old_ones_removed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    config.snapshot_interval = 10;
    config.logs_to_keep = 3;
    let (node, _app) = must_start_leader(config).await;

    for i in 0..25 {
        must_propose(&node, &format!("set key-{i} {i}")).await;
    }
    let first = must_reach(&node, "a first snapshot", |s| s.snapshot_index >= Some(10)).await;
    for i in 25..60 {
        must_propose(&node, &format!("set key-{i} {i}")).await;
    }
    let later = must_reach(&node, "later snapshots", |s| s.snapshot_index >= Some(50)).await;
    assert!(later.snapshot_index > first.snapshot_index);

    // A manual snapshot covers everything applied so far and replaces the previous file.
    node.trigger_snapshot().await.expect("trigger snapshot");
    let applied = node.metrics().last_applied_index;
    let status = must_reach(&node, "the triggered snapshot", |s| {
        s.snapshot_index == applied
    })
    .await;
    let expected = status.snapshot_index.expect("snapshot index");
    let deadline = tokio::time::Instant::now() + crate::common::TIMEOUT;
    loop {
        let (snapshots, temporaries) = snapshot_files(dir.path());
        if snapshots.len() == 1 && temporaries.is_empty() {
            assert_eq!(file_index(&snapshots[0]), expected, "{snapshots:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "old snapshots not removed: {snapshots:?} {temporaries:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    node.shutdown().await.expect("shutdown");
}
