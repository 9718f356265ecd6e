//! The real scheduler plugin placing tasks, keeping its node set, and surviving a failed call.

use swarm_plugin_artifacts as artifacts;
use swarm_plugin_host::{
    GroupResult, NodeAvailability, NodeInfo, NodeRole, NodeStatus, Placement, PluginError,
    Resources, TaskGroup,
};

use crate::common::{config, must_host};

const GIB: i64 = 1 << 30;

fn node(id: &str, zone: &str) -> NodeInfo {
    NodeInfo {
        id: id.to_owned(),
        hostname: format!("host-{id}"),
        role: NodeRole::Worker,
        os: "linux".to_owned(),
        arch: "amd64".to_owned(),
        labels: vec![("zone".to_owned(), zone.to_owned())],
        engine_labels: vec![],
        addr: "127.0.0.1".to_owned(),
        status: NodeStatus::Ready,
        availability: NodeAvailability::Active,
        total_resources: Resources {
            nano_cpus: 4_000_000_000,
            memory_bytes: 4 * GIB,
        },
        available_resources: Resources {
            nano_cpus: 4_000_000_000,
            memory_bytes: 4 * GIB,
        },
        runtimes: vec!["process".to_owned(), "wasi".to_owned()],
        plugins: vec![],
        tasks_total: 0,
        service_tasks: vec![],
        recent_failures: vec![],
    }
}

fn group(service: &str, tasks: usize, memory: i64, constraints: &[&str]) -> TaskGroup {
    TaskGroup {
        service_id: service.to_owned(),
        task_ids: (0..tasks).map(|i| format!("{service}.{i}")).collect(),
        placement: Placement {
            runtime: "process".to_owned(),
            reservations: Resources {
                nano_cpus: 0,
                memory_bytes: memory,
            },
            constraints: constraints.iter().map(|c| (*c).to_owned()).collect(),
            platforms: vec![],
            max_replicas: 0,
            required_plugins: vec![],
        },
    }
}

/// `node:count` per node (sorted) and the reasons of unplaced tasks.
fn summary(result: &GroupResult) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for (_, node) in &result.assignments {
        *counts.entry(node).or_default() += 1;
    }
    let mut parts: Vec<String> = counts.iter().map(|(n, c)| format!("{n}:{c}")).collect();
    let mut reasons: Vec<&str> = result.unplaced.iter().map(|(_, r)| r.as_str()).collect();
    reasons.dedup();
    parts.extend(reasons.iter().map(|r| format!("[{r}]")));
    parts.join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn places_tasks_and_keeps_resident_state() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let host = must_host(config(tasks.path()));
    let mut scheduler = host
        .load_scheduler("default", artifacts::SCHEDULER)
        .expect("load scheduler");
    let mut drained = node("c", "east");
    drained.availability = NodeAvailability::Drain;
    scheduler
        .update_nodes(vec![node("a", "east"), node("b", "west"), drained], vec![])
        .await
        .expect("update nodes");
    let results = scheduler
        .schedule(vec![
            group("web", 6, GIB, &[]),
            group("db", 2, 0, &["node.labels.zone==east"]),
            group("cache", 1, 0, &["node.labels.zone==north"]),
            group("bad", 1, 0, &["node.labels.zone=east"]),
        ])
        .await
        .expect("schedule");
    let summaries: Vec<String> = results.iter().map(summary).collect();
    assert_eq!(
        summaries,
        [
            "a:3 b:3".to_owned(),
            "a:2".to_owned(),
            "[no suitable node (1 node not available for new tasks; scheduling constraints not satisfied on 2 nodes)]".to_owned(),
            "[invalid constraint \"node.labels.zone=east\": expected an == or != operator]".to_owned(),
        ]
    );
    // Each of a and b has 1 GiB left: the next batch sees it.
    let results = scheduler
        .schedule(vec![group("more", 3, GIB, &[])])
        .await
        .expect("schedule");
    assert_eq!(
        summary(&results[0]),
        "a:1 b:1 [no suitable node (1 node not available for new tasks; 2 nodes have insufficient memory)]"
    );
    // Removing a node takes it out of the resident set.
    scheduler
        .update_nodes(vec![node("d", "east")], vec!["a".to_owned()])
        .await
        .expect("update nodes");
    let results = scheduler
        .schedule(vec![group("db", 1, 0, &["node.labels.zone==east"])])
        .await
        .expect("schedule");
    assert_eq!(summary(&results[0]), "d:1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_replaces_the_instance_and_keeps_the_nodes() {
    let tasks = tempfile::tempdir().expect("temp dir");
    let mut config = config(tasks.path());
    config.memory_limit_bytes = 8 << 20;
    let host = must_host(config);
    let mut scheduler = host
        .load_scheduler("default", artifacts::SCHEDULER)
        .expect("load scheduler");
    scheduler
        .update_nodes(vec![node("a", "east"), node("b", "west")], vec![])
        .await
        .expect("update nodes");
    let first = scheduler
        .schedule(vec![group("web", 2, GIB, &[])])
        .await
        .expect("schedule");
    assert_eq!(summary(&first[0]), "a:1 b:1");
    // A batch larger than the instance's memory fails that call only.
    let huge = group("huge", 400_000, 0, &[]);
    let error = scheduler
        .schedule(vec![huge])
        .await
        .expect_err("too large a batch");
    assert!(
        matches!(error, PluginError::MemoryLimit { .. }),
        "unexpected error {error:?}"
    );
    // The next call gets a fresh instance with the node set and the earlier placements.
    let results = scheduler
        .schedule(vec![group("web", 2, 3 * GIB, &[])])
        .await
        .expect("schedule after failure");
    assert_eq!(summary(&results[0]), "a:1 b:1");
    let results = scheduler
        .schedule(vec![group("web", 1, GIB, &[])])
        .await
        .expect("schedule after failure");
    assert_eq!(
        summary(&results[0]),
        "[no suitable node (2 nodes have insufficient memory)]"
    );
}
