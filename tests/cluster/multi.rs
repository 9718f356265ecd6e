//! Clusters of several swarmd processes on loopback: managers joined over mutual TLS with the
//! manager token, workers with the worker token; followers forward to the leader; `kill -9` of
//! the leader elects another and loses no acknowledged write; a dead node's tasks move.

use serde_json::Value;
use swarm_tests::{TestCluster, TestNode, poll};

fn hostname(node: &Value) -> String {
    node["description"]["hostname"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The names of the cluster's services, asked of any running manager.
fn service_names(cluster: &TestCluster) -> Vec<String> {
    let services = cluster
        .any_manager()
        .ctl(&["--format", "json", "service", "ls"])
        .ok()
        .json();
    services
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|s| s["spec"]["annotations"]["name"].as_str())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Running tasks of `service` as (task id, node id).
fn running_on(cluster: &TestCluster, service: &str) -> Vec<(String, String)> {
    let out = cluster
        .any_manager()
        .ctl(&["--format", "json", "task", "ls", "--service", service]);
    if out.code != 0 {
        return Vec::new();
    }
    out.json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["status"]["state"] == "running" && t["desired_state"] == "running")
        .map(|t| {
            (
                t["id"].as_str().unwrap_or_default().to_string(),
                t["node_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Creates `web` (6 sleeping processes) through `manager` and waits until all run.
fn create_web(cluster: &TestCluster, manager: &TestNode) {
    manager
        .ctl(&[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "6",
            "--process",
            "--",
            "sleep",
            "1000",
        ])
        .ok();
    poll("6 web tasks running", || {
        (running_on(cluster, "web").len() == 6).then_some(())
    });
}

#[test]
fn three_managers_and_a_worker_survive_the_leader_being_killed() {
    let mut cluster = TestCluster::start(3, 1);

    // Every manager answers, followers by forwarding to the leader; the table and JSON show
    // which manager leads and that all are reachable.
    let leader = cluster.leader();
    for manager in &cluster.managers {
        let nodes = manager.ctl(&["--format", "json", "node", "ls"]).ok().json();
        let nodes = nodes.as_array().cloned().unwrap_or_default();
        assert_eq!(nodes.len(), 4, "{nodes:?}");
        let managers: Vec<&Value> = nodes.iter().filter(|n| n["role"] == "manager").collect();
        assert_eq!(managers.len(), 3, "{nodes:?}");
        let leaders: Vec<String> = managers
            .iter()
            .filter(|n| n["manager_status"]["leader"] == true)
            .map(|n| hostname(n))
            .collect();
        assert_eq!(
            leaders,
            vec![cluster.managers[leader].hostname().to_string()]
        );
        assert!(
            managers
                .iter()
                .all(|n| n["manager_status"]["reachability"] == "reachable"),
            "{managers:?}"
        );
        let worker = nodes
            .iter()
            .find(|n| hostname(n) == "worker-1")
            .expect("the worker is listed");
        assert_eq!(worker["role"], "worker");
    }
    let table = cluster.managers[(leader + 1) % 3]
        .ctl(&["node", "ls"])
        .ok()
        .stdout;
    assert!(
        table.contains("leader") && table.contains("reachable"),
        "{table}"
    );

    // A write through a follower's socket is forwarded and acknowledged.
    let follower = (leader + 1) % 3;
    create_web(&cluster, &cluster.managers[follower]);
    let leader_node_id = cluster
        .node(cluster.managers[leader].hostname())
        .and_then(|n| n["id"].as_str().map(str::to_string))
        .expect("leader's node id");

    // Kill the leader: the others elect a new one and take writes.
    cluster.managers[leader].kill9();
    let new_leader = cluster.leader();
    assert_ne!(new_leader, leader);
    poll("a write acknowledged by the new leader", || {
        let out = cluster.any_manager().ctl(&[
            "service",
            "create",
            "--name",
            "after",
            "--replicas",
            "1",
            "--process",
            "--",
            "sleep",
            "1001",
        ]);
        (out.code == 0).then_some(())
    });
    // The acknowledged write before the failover survived it.
    let names = service_names(&cluster);
    assert!(
        names.iter().any(|n| n == "web") && names.iter().any(|n| n == "after"),
        "{names:?}"
    );

    // The dead leader's node goes DOWN and its tasks run elsewhere.
    cluster.wait_state(cluster.managers[leader].hostname(), "down");
    poll("6 web tasks running on live nodes", || {
        let running = running_on(&cluster, "web");
        (running.len() == 6 && running.iter().all(|(_, node)| *node != leader_node_id))
            .then_some(())
    });

    // The old leader comes back as a follower and is READY again.
    cluster.managers[leader].respawn();
    let hostname = cluster.managers[leader].hostname().to_string();
    cluster.wait_ready(&hostname);
    let nodes = cluster.managers[leader]
        .ctl(&["--format", "json", "node", "ls"])
        .ok()
        .json();
    assert_eq!(nodes.as_array().map(Vec::len), Some(4), "{nodes}");
}

/// The managers as `node ls` shows them: hostnames with a raft membership.
fn manager_hostnames(cluster: &TestCluster) -> Vec<String> {
    let mut names: Vec<String> = cluster
        .nodes()
        .iter()
        .filter(|n| n["role"] == "manager" && n["manager_status"].is_object())
        .map(hostname)
        .collect();
    names.sort();
    names
}

#[test]
fn a_worker_is_promoted_and_a_manager_demoted() {
    let cluster = TestCluster::start(3, 1);
    let ctl = |args: &[&str]| cluster.any_manager().ctl(args);

    // A manager cannot be removed before it is demoted.
    let refused = ctl(&["node", "rm", "--force", "manager-3"]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("demote it"), "{}", refused.stderr);

    // Promote the worker: it renews its certificate as a manager and joins raft.
    ctl(&["node", "promote", "worker-1"]).ok();
    poll("worker-1 to be a reachable manager", || {
        let node = cluster.node("worker-1")?;
        (node["role"] == "manager"
            && node["manager_status"]["reachability"] == "reachable"
            && node["status"]["state"] == "ready")
            .then_some(())
    });
    assert_eq!(manager_hostnames(&cluster).len(), 4);
    let cert = std::fs::read_to_string(
        cluster.workers[0]
            .state_dir()
            .join("certificates")
            .join("swarm-node.crt"),
    )
    .expect("certificate");
    let info = swarm_ca::parse_cert(cert.as_bytes()).expect("parse");
    assert_eq!(info.role, swarm_types::NodeRole::Manager);

    // Demote a manager that does not lead: it leaves raft and runs as a worker.
    let leader = cluster.leader();
    let victim = (0..3).find(|i| *i != leader).expect("a follower");
    let victim_name = cluster.managers[victim].hostname().to_string();
    ctl(&["node", "demote", &victim_name]).ok();
    poll("the demoted manager to be a ready worker", || {
        let node = cluster.node(&victim_name)?;
        (node["role"] == "worker"
            && node["manager_status"].is_null()
            && node["status"]["state"] == "ready")
            .then_some(())
    });
    assert_eq!(manager_hostnames(&cluster).len(), 3);
    // The cluster still takes writes.
    ctl(&[
        "service",
        "create",
        "--name",
        "after-demote",
        "--replicas",
        "0",
        "--process",
        "--",
        "sleep",
        "1",
    ])
    .ok();
    // Now it can be removed.
    ctl(&["node", "rm", "--force", &victim_name]).ok();
    poll("the removed node to be gone", || {
        cluster.node(&victim_name).is_none().then_some(())
    });
}

#[test]
fn five_managers_survive_two_losses_and_stop_at_three() {
    let mut cluster = TestCluster::start(5, 1);
    let write = |cluster: &TestCluster, name: &str| {
        cluster.any_manager().ctl(&[
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
            "1",
        ])
    };
    write(&cluster, "before").ok();

    // Two managers down, one of them the leader: three of five are a quorum.
    let leader = cluster.leader();
    cluster.managers[leader].kill9();
    let follower = (0..5).find(|i| *i != leader).expect("a follower");
    cluster.managers[follower].kill9();
    poll(
        "a write acknowledged with two of five managers down",
        || (write(&cluster, "two-down").code == 0).then_some(()),
    );

    // A third down: no quorum, writes fail (within the client's timeout) naming the cause.
    let third = (0..5)
        .find(|i| *i != leader && *i != follower)
        .expect("a third manager");
    cluster.managers[third].kill9();
    let refused = poll("writes refused without a quorum", || {
        let out = write(&cluster, "no-quorum");
        (out.code != 0).then_some(out)
    });
    assert!(
        refused.stderr.contains("leader") || refused.stderr.contains("quorum"),
        "{}",
        refused.stderr
    );

    // One back: a quorum again; everything acknowledged before is there.
    cluster.managers[third].respawn();
    poll("writes taken again once three managers run", || {
        (write(&cluster, "back").code == 0).then_some(())
    });
    let names = service_names(&cluster);
    // ("no-quorum" may or may not be there: a write that timed out has an unknown outcome.)
    for name in ["before", "two-down", "back"] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
}

#[test]
fn a_killed_worker_goes_down_its_tasks_move_and_its_leftovers_stop_when_it_returns() {
    let mut cluster = TestCluster::start(1, 2);
    create_web(&cluster, cluster.any_manager());
    let worker_id = cluster
        .node("worker-1")
        .and_then(|n| n["id"].as_str().map(str::to_string))
        .expect("worker-1's node id");
    let leftovers = cluster.workers[0].live_task_pids();
    assert!(
        !leftovers.is_empty(),
        "the spread put nothing on worker-1: {:?}",
        running_on(&cluster, "web")
    );

    // kill -9: no goodbye. The node is DOWN after the grace (1 s x 3) and its tasks run
    // elsewhere; its processes, out of reach, keep running meanwhile.
    cluster.workers[0].kill9();
    cluster.wait_state("worker-1", "down");
    poll("6 web tasks running on live nodes", || {
        let running = running_on(&cluster, "web");
        (running.len() == 6 && running.iter().all(|(_, node)| *node != worker_id)).then_some(())
    });
    assert!(
        leftovers.iter().all(|pid| swarm_tests::process_alive(*pid)),
        "tasks outlive their agent"
    );

    // Back: READY again, and the tasks that were replaced are stopped, not run twice.
    cluster.workers[0].respawn();
    cluster.wait_ready("worker-1");
    poll("worker-1's replaced tasks stopped", || {
        leftovers
            .iter()
            .all(|pid| !swarm_tests::process_alive(*pid))
            .then_some(())
    });
    let running = running_on(&cluster, "web");
    assert_eq!(running.len(), 6, "{running:?}");
}
