//! Autolock across managers: one cluster unlock key wraps every manager's raft key; a restarted
//! manager waits for it (a wrong key is refused and changes nothing); rotation re-wraps every
//! manager's key; turning autolock off stores them plain again.

use std::path::PathBuf;

use swarm_tests::{TestCluster, TestNode, poll};

/// The DEK file of a manager: `SWARM-DEK-1 plain|locked <base64>`.
fn dek(node: &TestNode) -> String {
    let path: PathBuf = node.state_dir().join("raft").join("dek");
    std::fs::read_to_string(&path).unwrap_or_default()
}

fn unlock_key(node: &TestNode) -> String {
    node.ctl(&["cluster", "unlock-key"])
        .ok()
        .stdout
        .trim()
        .to_string()
}

/// Restarts `index` and unlocks it with `key` after a wrong key is refused.
fn restart_and_unlock(cluster: &mut TestCluster, index: usize, wrong: &str, key: &str) {
    let node = &mut cluster.managers[index];
    node.respawn();
    poll("the restarted manager to wait for its unlock key", || {
        node.log()
            .contains("waiting for `swarmctl node unlock`")
            .then_some(())
    });
    let refused = node.ctl(&["node", "unlock", "--key", wrong]);
    assert_ne!(refused.code, 0, "a wrong key unlocks nothing");
    assert!(
        refused.stderr.contains("wrong unlock key"),
        "{}",
        refused.stderr
    );
    let malformed = node.ctl(&["node", "unlock", "--key", "SWMKEY-1-AAAA"]);
    assert!(
        malformed.stderr.contains("holds 3 bytes, not 32"),
        "{}",
        malformed.stderr
    );
    node.ctl(&["node", "unlock", "--key", key]).ok();
    let hostname = node.hostname().to_string();
    cluster.wait_ready(&hostname);
    poll("the unlocked manager to answer", || {
        (cluster.managers[index].ctl(&["node", "ls"]).code == 0).then_some(())
    });
}

#[test]
fn one_unlock_key_locks_every_manager_and_rotates() {
    let mut cluster = TestCluster::start(3, 0);
    let off = cluster.any_manager().ctl(&["cluster", "unlock-key"]).ok();
    assert!(off.stdout.contains("autolock is off"), "{}", off.stdout);
    for m in &cluster.managers {
        assert!(dek(m).contains(" plain "), "plain before autolock");
    }

    cluster
        .any_manager()
        .ctl(&["cluster", "update", "--autolock", "true"])
        .ok();
    let first = unlock_key(cluster.any_manager());
    assert!(first.starts_with("SWMKEY-1-"), "{first}");
    // The same key, asked of any manager (followers forward to the leader).
    for m in &cluster.managers {
        assert_eq!(unlock_key(m), first);
    }
    poll("every manager's raft key locked", || {
        cluster
            .managers
            .iter()
            .all(|m| dek(m).contains(" locked "))
            .then_some(())
    });
    let inspected = cluster.any_manager().ctl(&["cluster", "inspect"]).ok();
    let autolock_line = inspected
        .stdout
        .lines()
        .find(|l| l.starts_with("Autolock"))
        .unwrap_or_default();
    assert!(autolock_line.ends_with("on"), "{}", inspected.stdout);
    assert!(
        !inspected.stdout.contains(&first),
        "inspect never shows the key"
    );

    // A follower restarts locked; the cluster's one key opens it (the leader follows below).
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let zeros = format!("SWMKEY-1-{}", "A".repeat(43));
    restart_and_unlock(&mut cluster, follower, &zeros, &first);

    // Rotation: every manager's key is wrapped again with the new one.
    let before: Vec<String> = cluster.managers.iter().map(dek).collect();
    let second = cluster
        .any_manager()
        .ctl(&["cluster", "unlock-key", "--rotate"])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert!(
        second.starts_with("SWMKEY-1-") && second != first,
        "{second}"
    );
    poll("every manager's raft key wrapped again", || {
        cluster
            .managers
            .iter()
            .zip(&before)
            .all(|(m, old)| dek(m) != *old && dek(m).contains(" locked "))
            .then_some(())
    });
    restart_and_unlock(&mut cluster, leader, &first, &second);

    // Off again: stored plain, nothing to unlock after a restart.
    cluster
        .any_manager()
        .ctl(&["cluster", "update", "--autolock", "false"])
        .ok();
    poll("every manager's raft key stored plain", || {
        cluster
            .managers
            .iter()
            .all(|m| dek(m).contains(" plain "))
            .then_some(())
    });
    let off = cluster.any_manager().ctl(&["cluster", "unlock-key"]).ok();
    assert!(off.stdout.contains("autolock is off"), "{}", off.stdout);
}
