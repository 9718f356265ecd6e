//! Pure functions over values that come back from guests, kept apart so they can be tested and
//! fuzzed without an engine (the `fuzzing` feature exposes them as [`crate::fuzzing`]).
//!
//! Nothing a guest returns is trusted: every function here takes any value without panicking,
//! whatever its size, and without arithmetic overflow.

use std::collections::{BTreeMap, HashMap};

use crate::bindings::types::{GroupResult, NodeInfo, TaskGroup};

/// Applies a scheduler's placements to the host's mirror of its node set, the way the guest is
/// expected to apply them to its resident nodes: for each assignment, one more task on the node
/// (in total and for the group's service) and the group's reservations taken from its available
/// resources. Results are matched to groups by position; assignments to nodes the mirror does
/// not hold are ignored, and counts and resources saturate instead of overflowing.
pub fn apply_placements(
    mirror: &mut BTreeMap<String, NodeInfo>,
    groups: &[TaskGroup],
    results: &[GroupResult],
) {
    for (group, result) in groups.iter().zip(results) {
        let mut per_node: HashMap<&str, u32> = HashMap::new();
        for (_, node_id) in &result.assignments {
            let count = per_node.entry(node_id.as_str()).or_default();
            *count = count.saturating_add(1);
        }
        let reservations = &group.placement.reservations;
        for (node_id, count) in per_node {
            let Some(node) = mirror.get_mut(node_id) else {
                continue;
            };
            let count64 = i64::from(count);
            let available = &mut node.available_resources;
            available.nano_cpus = available
                .nano_cpus
                .saturating_sub(reservations.nano_cpus.max(0).saturating_mul(count64));
            available.memory_bytes = available
                .memory_bytes
                .saturating_sub(reservations.memory_bytes.max(0).saturating_mul(count64));
            node.tasks_total = node.tasks_total.saturating_add(count);
            match node
                .service_tasks
                .iter_mut()
                .find(|(service, _)| *service == group.service_id)
            {
                Some((_, tasks)) => *tasks = tasks.saturating_add(count),
                None => node.service_tasks.push((group.service_id.clone(), count)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::{NodeAvailability, NodeRole, NodeStatus, Placement, Resources};

    fn node(id: &str, memory_bytes: i64) -> NodeInfo {
        let resources = Resources {
            nano_cpus: 1_000,
            memory_bytes,
        };
        NodeInfo {
            id: id.to_owned(),
            hostname: id.to_owned(),
            role: NodeRole::Worker,
            os: "linux".to_owned(),
            arch: "amd64".to_owned(),
            labels: vec![],
            engine_labels: vec![],
            addr: String::new(),
            status: NodeStatus::Ready,
            availability: NodeAvailability::Active,
            total_resources: resources,
            available_resources: resources,
            runtimes: vec![],
            plugins: vec![],
            tasks_total: 0,
            service_tasks: vec![],
            recent_failures: vec![],
        }
    }

    fn group(service: &str, nano_cpus: i64, memory_bytes: i64) -> TaskGroup {
        TaskGroup {
            service_id: service.to_owned(),
            task_ids: vec![],
            placement: Placement {
                runtime: String::new(),
                reservations: Resources {
                    nano_cpus,
                    memory_bytes,
                },
                constraints: vec![],
                platforms: vec![],
                max_replicas: 0,
                required_plugins: vec![],
            },
        }
    }

    fn result(assignments: &[(&str, &str)]) -> GroupResult {
        GroupResult {
            service_id: String::new(),
            assignments: assignments
                .iter()
                .map(|(task, node)| ((*task).to_owned(), (*node).to_owned()))
                .collect(),
            unplaced: vec![],
        }
    }

    #[test]
    fn placements_count_tasks_and_take_resources() {
        let mut mirror: BTreeMap<String, NodeInfo> = [node("a", 100), node("b", 100)]
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        apply_placements(
            &mut mirror,
            &[group("web", 10, 30), group("db", -5, 1)],
            &[
                result(&[("t1", "a"), ("t2", "a"), ("t3", "ghost")]),
                result(&[("t4", "a")]),
            ],
        );
        let a = &mirror["a"];
        assert_eq!(a.tasks_total, 3);
        assert_eq!(a.available_resources.memory_bytes, 100 - 60 - 1);
        // A negative reservation takes nothing (and gives nothing back).
        assert_eq!(a.available_resources.nano_cpus, 1_000 - 20);
        assert_eq!(
            a.service_tasks,
            [("web".to_owned(), 2), ("db".to_owned(), 1)]
        );
        assert_eq!(mirror["b"], node("b", 100));
        assert_eq!(mirror.len(), 2, "unknown nodes are not added");
    }

    #[test]
    fn huge_values_saturate() {
        let mut full = node("a", i64::MIN + 1);
        full.tasks_total = u32::MAX - 1;
        full.service_tasks = vec![("web".to_owned(), u32::MAX)];
        let mut mirror = BTreeMap::from([("a".to_owned(), full)]);
        let many: Vec<(String, String)> =
            (0..3).map(|i| (format!("t{i}"), "a".to_owned())).collect();
        apply_placements(
            &mut mirror,
            &[group("web", i64::MAX, i64::MAX)],
            &[GroupResult {
                service_id: "web".to_owned(),
                assignments: many,
                unplaced: vec![],
            }],
        );
        let a = &mirror["a"];
        assert_eq!(a.tasks_total, u32::MAX);
        assert_eq!(a.service_tasks, [("web".to_owned(), u32::MAX)]);
        assert_eq!(a.available_resources.memory_bytes, i64::MIN);
        assert_eq!(a.available_resources.nano_cpus, 1_000 - i64::MAX);
    }

    #[test]
    fn results_without_a_group_are_ignored() {
        let mut mirror = BTreeMap::from([("a".to_owned(), node("a", 100))]);
        apply_placements(&mut mirror, &[], &[result(&[("t1", "a")])]);
        assert_eq!(mirror["a"], node("a", 100));
    }
}
