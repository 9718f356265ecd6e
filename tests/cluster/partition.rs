//! Real network partitions between swarmd processes: three managers, each in its own network
//! namespace, and links cut while they run (`swarm_tests::netns::Mesh`). An isolated leader is
//! replaced and no write through it is acknowledged or survives; an isolated follower misses
//! nothing once the partition heals.

use serde_json::Value;
use swarm_tests::netns::Mesh;
use swarm_tests::{TestCluster, TestNode, poll, try_poll};

/// Service names as `hostname`'s manager lists them (`None` when it cannot answer).
fn services(node: &TestNode) -> Option<Vec<String>> {
    let out = node.ctl(&["--timeout", "2s", "--format", "json", "service", "ls"]);
    if out.code != 0 {
        return None;
    }
    let mut names: Vec<String> = out
        .json()
        .as_array()?
        .iter()
        .filter_map(|s| {
            s["spec"]["annotations"]["name"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    names.sort();
    Some(names)
}

fn create(node: &TestNode, name: &str) -> swarm_tests::Ctl {
    node.ctl(&[
        "--timeout",
        "3s",
        "service",
        "create",
        "--name",
        name,
        "--replicas",
        "0",
        "--process",
        "--",
        "sleep",
        "1000",
    ])
}

/// The first node `node` lists that `matches` (`None` when it cannot answer).
fn node_seen_by(node: &TestNode, matches: impl Fn(&Value) -> bool) -> Option<Value> {
    let out = node.ctl(&["--timeout", "2s", "--format", "json", "node", "ls"]);
    if out.code != 0 {
        return None;
    }
    out.json().as_array()?.iter().find(|n| matches(n)).cloned()
}

/// The hostname of the leader, as `node` sees it.
fn leader_seen_by(node: &TestNode) -> Option<String> {
    let leader = node_seen_by(node, |n| n["manager_status"]["leader"] == true)?;
    leader["description"]["hostname"]
        .as_str()
        .map(str::to_string)
}

/// The reachability `node` shows for the manager `hostname`.
fn reachability_seen_by(node: &TestNode, hostname: &str) -> Option<String> {
    let manager = node_seen_by(node, |n| n["description"]["hostname"] == hostname)?;
    manager["manager_status"]["reachability"]
        .as_str()
        .map(str::to_string)
}

/// Every manager's log, for a failure report.
fn logs(cluster: &TestCluster) -> String {
    cluster
        .managers
        .iter()
        .map(|m| format!("--- {} ---\n{}", m.hostname(), m.log()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_isolated_leader_is_replaced_and_nothing_written_through_it_survives() {
    let mesh = Mesh::new(3);
    let cluster = TestCluster::start_in(&mesh);
    let old = cluster.leader();
    let old_name = cluster.managers[old].hostname().to_string();
    create(&cluster.managers[old], "before").ok();
    let majority: Vec<usize> = (0..3).filter(|&i| i != old).collect();

    mesh.isolate(old + 1);
    let new_name = poll("a new leader on the majority side", || {
        leader_seen_by(&cluster.managers[majority[0]]).filter(|name| *name != old_name)
    });
    assert_ne!(new_name, old_name);
    // The majority takes writes; the isolated manager acknowledges none.
    poll("a write through the majority acknowledged", || {
        (create(&cluster.managers[majority[1]], "majority").code == 0).then_some(())
    });
    let refused = create(&cluster.managers[old], "minority");
    assert_ne!(refused.code, 0, "the isolated manager acknowledged a write");

    mesh.rejoin(old + 1);
    poll("the old leader to follow and catch up", || {
        let names = services(&cluster.managers[old])?;
        names.contains(&"majority".to_string()).then_some(names)
    });
    for (i, m) in cluster.managers.iter().enumerate() {
        let names = poll("every manager to answer", || services(m));
        assert_eq!(
            names,
            ["before", "majority"],
            "manager {i}: acknowledged writes only"
        );
    }
    assert_eq!(
        leader_seen_by(&cluster.managers[old]).as_deref(),
        Some(new_name.as_str()),
        "the new leader keeps its place"
    );
}

#[test]
fn an_isolated_follower_catches_up_when_the_partition_heals() {
    let mesh = Mesh::new(3);
    let cluster = TestCluster::start_in(&mesh);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    mesh.isolate(follower + 1);
    // The leader and the other follower are a quorum: writes go on.
    for i in 0..5 {
        create(&cluster.managers[leader], &format!("svc-{i}")).ok();
    }
    // Not acknowledged; its outcome is unknown all the same: the follower forwards the call to
    // the leader, and the bytes may still arrive once the link is back (like a timed-out put to
    // etcd, it may apply later).
    assert!(
        create(&cluster.managers[follower], "cut-off").code != 0,
        "a follower cut off from the leader cannot write"
    );
    // The leader sees it unreachable.
    let hostname = cluster.managers[follower].hostname().to_string();
    poll("the cut-off follower shown unreachable", || {
        (reachability_seen_by(&cluster.managers[leader], &hostname)? == "unreachable").then_some(())
    });

    mesh.rejoin(follower + 1);
    let expected: Vec<String> = (0..5).map(|i| format!("svc-{i}")).collect();
    let caught_up = try_poll(|| {
        let mut names = services(&cluster.managers[follower])?;
        names.retain(|n| n != "cut-off");
        (names == expected).then_some(names)
    });
    assert_eq!(
        caught_up.as_ref(),
        Some(&expected),
        "the follower did not catch up; last answer {:?}\n{}",
        services(&cluster.managers[follower]),
        logs(&cluster)
    );
    poll("the follower reachable again", || {
        (reachability_seen_by(&cluster.managers[leader], &hostname)? == "reachable").then_some(())
    });
}
