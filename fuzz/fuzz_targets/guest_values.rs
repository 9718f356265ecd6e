//! Fuzzes what the plugin host does with values a guest returns: a scheduler's placements
//! applied to the host's mirror of the node set, and task ids a guest hands to the capabilities.
//! Properties checked besides "no panic, no overflow": the mirror keeps exactly its nodes, each
//! node counts exactly the tasks placed on it (saturating), resources never grow, untouched nodes
//! stay as they were; an accepted task id is one plain path component.

#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use swarm_plugin_host::fuzzing::{apply_placements, check_task_id};
use swarm_plugin_host::{
    GroupResult, NodeAvailability, NodeInfo, NodeRole, NodeStatus, Placement, Resources, TaskGroup,
};

/// Node ids come from a small pool so that placements hit known nodes as well as unknown ones.
const NODE_IDS: [&str; 4] = ["a", "b", "c", "ghost"];
const SERVICES: [&str; 3] = ["web", "db", ""];

#[derive(Arbitrary, Debug)]
struct FuzzNode {
    id: u8,
    tasks_total: u32,
    nano_cpus: i64,
    memory_bytes: i64,
    service_tasks: Vec<(u8, u32)>,
}

#[derive(Arbitrary, Debug)]
struct FuzzGroup {
    service: u8,
    nano_cpus: i64,
    memory_bytes: i64,
}

#[derive(Arbitrary, Debug)]
struct FuzzResult {
    /// (task id, node): a pool index, or any text the guest may send.
    assignments: Vec<(String, Result<u8, String>)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    nodes: Vec<FuzzNode>,
    groups: Vec<FuzzGroup>,
    results: Vec<FuzzResult>,
    task_ids: Vec<String>,
}

fn pick<'a>(pool: &[&'a str], index: u8) -> &'a str {
    pool[usize::from(index) % pool.len()]
}

fn node(input: &FuzzNode) -> NodeInfo {
    let resources = Resources {
        nano_cpus: input.nano_cpus,
        memory_bytes: input.memory_bytes,
    };
    NodeInfo {
        id: pick(&NODE_IDS[..3], input.id).to_owned(),
        hostname: String::new(),
        role: NodeRole::Worker,
        os: String::new(),
        arch: String::new(),
        labels: vec![],
        engine_labels: vec![],
        addr: String::new(),
        status: NodeStatus::Ready,
        availability: NodeAvailability::Active,
        total_resources: resources,
        available_resources: resources,
        runtimes: vec![],
        plugins: vec![],
        tasks_total: input.tasks_total,
        service_tasks: input
            .service_tasks
            .iter()
            .map(|(service, count)| (pick(&SERVICES, *service).to_owned(), *count))
            .collect(),
        recent_failures: vec![],
    }
}

fn group(input: &FuzzGroup) -> TaskGroup {
    TaskGroup {
        service_id: pick(&SERVICES, input.service).to_owned(),
        task_ids: vec![],
        placement: Placement {
            runtime: String::new(),
            reservations: Resources {
                nano_cpus: input.nano_cpus,
                memory_bytes: input.memory_bytes,
            },
            constraints: vec![],
            platforms: vec![],
            max_replicas: 0,
            required_plugins: vec![],
        },
    }
}

fn result(input: &FuzzResult) -> GroupResult {
    GroupResult {
        service_id: String::new(),
        assignments: input
            .assignments
            .iter()
            .map(|(task, node)| {
                let node = match node {
                    Ok(index) => pick(&NODE_IDS, *index).to_owned(),
                    Err(text) => text.clone(),
                };
                (task.clone(), node)
            })
            .collect(),
        unplaced: vec![],
    }
}

fn check_placements(input: &Input) {
    let mut mirror: BTreeMap<String, NodeInfo> = BTreeMap::new();
    for fuzz_node in &input.nodes {
        let node = node(fuzz_node);
        mirror.insert(node.id.clone(), node);
    }
    let groups: Vec<TaskGroup> = input.groups.iter().map(group).collect();
    let results: Vec<GroupResult> = input.results.iter().map(result).collect();
    let before = mirror.clone();
    apply_placements(&mut mirror, &groups, &results);

    assert_eq!(
        mirror.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    let mut placed: HashMap<&str, u64> = HashMap::new();
    for result in results.iter().take(groups.len()) {
        for (_, node_id) in &result.assignments {
            *placed.entry(node_id.as_str()).or_default() += 1;
        }
    }
    for (id, after) in &mirror {
        let old = &before[id];
        let count = placed.get(id.as_str()).copied().unwrap_or(0);
        let expected = (u64::from(old.tasks_total) + count).min(u64::from(u32::MAX));
        assert_eq!(u64::from(after.tasks_total), expected, "tasks on {id}");
        assert!(after.available_resources.nano_cpus <= old.available_resources.nano_cpus);
        assert!(after.available_resources.memory_bytes <= old.available_resources.memory_bytes);
        assert_eq!(after.total_resources, old.total_resources);
        if count == 0 {
            assert_eq!(after, old, "node {id} had no placement");
        }
    }
}

fn check_task_ids(input: &Input) {
    let tasks = Path::new("/tasks");
    for id in &input.task_ids {
        if check_task_id(id).is_ok() {
            let path = tasks.join(id);
            assert_eq!(
                path.parent(),
                Some(tasks),
                "{id:?} escapes the tasks directory"
            );
            let last = path.components().next_back();
            assert!(
                matches!(last, Some(Component::Normal(name)) if name == id.as_str()),
                "{id:?} is not one plain path component"
            );
        }
    }
}

fuzz_target!(|input: Input| {
    check_placements(&input);
    check_task_ids(&input);
});
