//! Data-driven tests of the filter pipeline, the spread order and the failure reasons.

use super::*;

const GIB: i64 = 1 << 30;
const CPU: i64 = 1_000_000_000;

fn node(id: &str) -> Node {
    let mut node = Node::new(id);
    node.total = Resources {
        nano_cpus: 4 * CPU,
        memory_bytes: 8 * GIB,
    };
    node.available = node.total;
    node
}

fn with(id: &str, change: impl FnOnce(&mut Node)) -> Node {
    let mut node = node(id);
    change(&mut node);
    node
}

fn group(service: &str, tasks: usize, change: impl FnOnce(&mut Placement)) -> TaskGroup {
    let mut placement = Placement::default();
    change(&mut placement);
    TaskGroup {
        service_id: service.to_owned(),
        task_ids: (0..tasks).map(|i| format!("{service}-t{i}")).collect(),
        placement,
    }
}

/// Summarizes a result as `node:count ...` (sorted by node id) and the distinct reasons with
/// their task counts.
fn summary(result: &GroupResult) -> String {
    let mut per_node: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, node) in &result.assignments {
        *per_node.entry(node).or_default() += 1;
    }
    let mut reasons: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, reason) in &result.unplaced {
        *reasons.entry(reason).or_default() += 1;
    }
    let mut parts: Vec<String> = per_node.iter().map(|(n, c)| format!("{n}:{c}")).collect();
    parts.extend(reasons.iter().map(|(r, c)| format!("{c}x {r}")));
    parts.join(" ")
}

fn check(nodes: Vec<Node>, groups: Vec<TaskGroup>, expected: &[&str]) {
    let mut scheduler = Scheduler::new();
    scheduler.update_nodes(nodes, &[]);
    let results = scheduler.schedule(groups);
    let actual: Vec<String> = results.iter().map(summary).collect();
    assert_eq!(actual, expected);
}

#[test]
fn spreads_evenly() {
    check(
        vec![node("a"), node("b"), node("c")],
        vec![group("s", 7, |_| {})],
        &["a:3 b:2 c:2"],
    );
}

#[test]
fn prefers_fewest_service_tasks_then_fewest_total() {
    let busy = with("a", |n| {
        n.tasks_total = 10;
        n.service_tasks.insert("other".into(), 10);
    });
    let has_service = with("b", |n| {
        n.tasks_total = 1;
        n.service_tasks.insert("s".into(), 1);
    });
    // c has nothing; a has no task of s but many overall; b has one of s.
    check(
        vec![busy, has_service, node("c")],
        vec![group("s", 3, |_| {})],
        &["a:1 b:1 c:1"],
    );
    let busy = with("a", |n| n.tasks_total = 10);
    check(vec![busy, node("c")], vec![group("s", 1, |_| {})], &["c:1"]);
}

#[test]
fn nodes_with_recent_failures_go_last() {
    let failing = with("a", |n| {
        n.recent_failures.insert("s".into(), MAX_RECENT_FAILURES);
    });
    let few_failures = with("b", |n| {
        n.recent_failures
            .insert("s".into(), MAX_RECENT_FAILURES - 1);
        n.tasks_total = 3;
    });
    check(
        vec![failing.clone(), few_failures],
        vec![group("s", 2, |_| {})],
        &["b:2"],
    );
    check(vec![failing], vec![group("s", 1, |_| {})], &["a:1"]);
}

#[test]
fn filters_and_reasons() {
    let down = with("down", |n| n.status = NodeStatus::Down);
    let drained = with("drained", |n| n.availability = Availability::Drain);
    let small = with("small", |n| n.available.memory_bytes = GIB / 2);
    let no_wasi = with("nowasi", |n| n.runtimes = vec!["process".into()]);
    let arm = with("arm", |n| n.arch = "aarch64".into());
    let east = with("east", |n| n.labels.push(("zone".into(), "east".into())));
    struct Case {
        name: &'static str,
        placement: fn(&mut Placement),
        expected: &'static str,
    }
    let cases = [
        Case {
            name: "no requirements",
            placement: |_| {},
            expected: "arm:1 east:1 nowasi:1 small:1",
        },
        Case {
            name: "memory",
            placement: |p| p.reservations.memory_bytes = GIB,
            expected: "arm:2 east:1 nowasi:1",
        },
        Case {
            name: "memory everywhere",
            placement: |p| p.reservations.memory_bytes = 9 * GIB,
            expected: "4x no suitable node (2 nodes not available for new tasks; 4 nodes have insufficient memory)",
        },
        Case {
            name: "cpu",
            placement: |p| p.reservations.nano_cpus = 5 * CPU,
            expected: "4x no suitable node (2 nodes not available for new tasks; 4 nodes have insufficient CPU)",
        },
        Case {
            name: "runtime",
            placement: |p| p.runtime = "wasi".into(),
            expected: "arm:2 east:1 small:1",
        },
        Case {
            name: "constraint",
            placement: |p| p.constraints = vec!["node.labels.zone==east".into()],
            expected: "east:4",
        },
        Case {
            name: "constraint with upper-case key",
            placement: |p| p.constraints = vec!["NODE.LABELS.ZONE == east".into()],
            expected: "east:4",
        },
        Case {
            name: "constraint values are exact",
            placement: |p| p.constraints = vec!["node.labels.zone==East".into()],
            expected: "4x no suitable node (2 nodes not available for new tasks; scheduling constraints not satisfied on 4 nodes)",
        },
        Case {
            name: "missing label satisfies !=",
            placement: |p| p.constraints = vec!["node.labels.zone!=east".into()],
            expected: "arm:2 nowasi:1 small:1",
        },
        Case {
            name: "platform with arch alias",
            placement: |p| {
                p.platforms = vec![Platform {
                    os: "linux".into(),
                    arch: "arm64".into(),
                }]
            },
            expected: "arm:4",
        },
        Case {
            name: "plugin",
            placement: |p| p.required_plugins = vec!["overlay".into()],
            expected: "4x no suitable node (2 nodes not available for new tasks; missing plugin on 4 nodes)",
        },
        Case {
            name: "max replicas",
            placement: |p| p.max_replicas = 1,
            expected: "arm:1 east:1 nowasi:1 small:1",
        },
        Case {
            name: "malformed constraint",
            placement: |p| p.constraints = vec!["node.labels.zone=east".into()],
            expected: "4x invalid constraint \"node.labels.zone=east\": expected an == or != operator",
        },
        Case {
            name: "unknown key",
            placement: |p| p.constraints = vec!["node.color==red".into()],
            expected: "4x invalid constraint \"node.color==red\": unknown key \"node.color\" (expected node.id, node.hostname, node.role, node.ip, node.platform.os, node.platform.arch, node.labels.<name> or engine.labels.<name>)",
        },
    ];
    for case in cases {
        let nodes = vec![
            down.clone(),
            drained.clone(),
            small.clone(),
            no_wasi.clone(),
            arm.clone(),
            east.clone(),
        ];
        let mut scheduler = Scheduler::new();
        scheduler.update_nodes(nodes, &[]);
        let results = scheduler.schedule(vec![group("s", 4, case.placement)]);
        assert_eq!(summary(&results[0]), case.expected, "case {:?}", case.name);
    }
}

#[test]
fn reasons_count_nodes_filled_during_the_group() {
    // Two nodes fit two tasks each; the fifth task sees both nodes full.
    let nodes = vec![
        with("a", |n| n.available.memory_bytes = 2 * GIB),
        with("b", |n| n.available.memory_bytes = 2 * GIB),
    ];
    check(
        nodes,
        vec![group("s", 5, |p| p.reservations.memory_bytes = GIB)],
        &["a:2 b:2 1x no suitable node (2 nodes have insufficient memory)"],
    );
    check(
        vec![node("a"), node("b")],
        vec![group("s", 3, |p| p.max_replicas = 1)],
        &["a:1 b:1 1x no suitable node (max replicas per node reached on 2 nodes)"],
    );
    check(
        vec![node("a"), node("b")],
        vec![group("s", 1, |p| p.runtime = "docker".into())],
        &["1x no suitable node (runtime \"docker\" not supported on 2 nodes)"],
    );
    check(
        vec![],
        vec![group("s", 1, |_| {})],
        &["1x no suitable node"],
    );
}

#[test]
fn constraint_keys() {
    let n = with("id1", |n| {
        n.hostname = "host1".into();
        n.role = NodeRole::Manager;
        n.addr = "10.0.0.1".into();
        n.engine_labels.push(("storage".into(), "ssd".into()));
    });
    for (expression, expected) in [
        ("node.id==id1", true),
        ("node.id!=id1", false),
        ("node.hostname==host1", true),
        ("node.role==manager", true),
        ("node.role==worker", false),
        ("node.ip==10.0.0.1", true),
        ("node.platform.os==linux", true),
        ("node.platform.arch==amd64", true),
        ("engine.labels.storage==ssd", true),
        ("Engine.Labels.STORAGE==ssd", true),
        ("engine.labels.storage==SSD", false),
        ("engine.labels.missing==x", false),
    ] {
        let constraint = Constraint::parse(expression).expect("valid constraint");
        assert_eq!(constraint.matches(&n), expected, "{expression}");
    }
    for bad in ["node.id", "node.id==", "==x", "node.labels.==x", "a==b==c"] {
        assert!(Constraint::parse(bad).is_err(), "{bad} should be refused");
    }
}

#[test]
fn resident_state_carries_over_batches() {
    let mut scheduler = Scheduler::new();
    scheduler.update_nodes(
        vec![with("a", |n| n.available.memory_bytes = 3 * GIB), node("b")],
        &[],
    );
    let first = scheduler.schedule(vec![group("s", 2, |p| p.reservations.memory_bytes = GIB)]);
    assert_eq!(summary(&first[0]), "a:1 b:1");
    let a = scheduler.node("a").expect("node a");
    assert_eq!(a.available.memory_bytes, 2 * GIB);
    assert_eq!((a.tasks_total, a.service_count("s")), (1, 1));
    // The next batch sees the counts: another service spreads onto both, s goes on evenly.
    let second = scheduler.schedule(vec![
        group("s", 2, |p| p.reservations.memory_bytes = GIB),
        group("u", 2, |_| {}),
    ]);
    assert_eq!(summary(&second[0]), "a:1 b:1");
    assert_eq!(summary(&second[1]), "a:1 b:1");
    assert_eq!(scheduler.node("a").map(|n| n.tasks_total), Some(3));
    scheduler.update_nodes(vec![], &["a".to_owned()]);
    let third = scheduler.schedule(vec![group("s", 1, |_| {})]);
    assert_eq!(summary(&third[0]), "b:1");
    assert_eq!(scheduler.nodes().len(), 1);
}

#[test]
fn updates_replace_and_remove() {
    let mut scheduler = Scheduler::new();
    scheduler.update_nodes(vec![node("a"), node("b"), node("c")], &[]);
    scheduler.update_nodes(
        vec![with("b", |n| n.status = NodeStatus::Down)],
        &["a".to_owned(), "zz".to_owned()],
    );
    let ids: Vec<&str> = scheduler.nodes().iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["c", "b"]);
    assert_eq!(
        scheduler.node("b").map(|n| n.status),
        Some(NodeStatus::Down)
    );
    assert!(scheduler.node("a").is_none());
}

#[test]
fn large_group_spreads_over_all_nodes() {
    let nodes: Vec<Node> = (0..1_000).map(|i| node(&format!("n{i:04}"))).collect();
    let mut scheduler = Scheduler::new();
    scheduler.update_nodes(nodes, &[]);
    let results = scheduler.schedule(vec![group("s", 100_000, |_| {})]);
    assert_eq!(results[0].assignments.len(), 100_000);
    assert!(
        scheduler
            .nodes()
            .iter()
            .all(|n| n.service_count("s") == 100)
    );
}
