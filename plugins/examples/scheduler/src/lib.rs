//! Example scheduler: puts each task on the ready, active node with the fewest tasks that runs
//! the task's runtime and has the resources it reserves. It evaluates no constraints: a group
//! that has some stays unplaced, with the reason.

use std::cell::RefCell;
use std::collections::BTreeMap;

use swarm_plugin_sdk::Scheduler;
use swarm_plugin_sdk::types::{
    GroupResult, NodeAvailability, NodeInfo, NodeStatus, Placement, TaskGroup,
};

thread_local! {
    /// The resident node set, by id. If the instance is replaced (after a trap, say), the host
    /// sends the whole set again to the new one.
    static NODES: RefCell<BTreeMap<String, NodeInfo>> = const { RefCell::new(BTreeMap::new()) };
}

struct FewestTasks;

impl Scheduler for FewestTasks {
    fn update_nodes(upserts: Vec<NodeInfo>, removals: Vec<String>) {
        NODES.with(|nodes| {
            let mut nodes = nodes.borrow_mut();
            for id in &removals {
                nodes.remove(id);
            }
            for node in upserts {
                nodes.insert(node.id.clone(), node);
            }
        });
    }

    fn schedule(groups: Vec<TaskGroup>) -> Vec<GroupResult> {
        NODES.with(|nodes| {
            let mut nodes = nodes.borrow_mut();
            groups
                .into_iter()
                .map(|group| place(&mut nodes, group))
                .collect()
        })
    }
}

fn place(nodes: &mut BTreeMap<String, NodeInfo>, group: TaskGroup) -> GroupResult {
    let mut result = GroupResult {
        service_id: group.service_id,
        assignments: Vec::new(),
        unplaced: Vec::new(),
    };
    let placement = &group.placement;
    for task_id in group.task_ids {
        if !placement.constraints.is_empty() {
            let reason = "the example scheduler does not evaluate constraints".to_owned();
            result.unplaced.push((task_id, reason));
            continue;
        }
        let best = nodes
            .values_mut()
            .filter(|node| fits(node, placement))
            .min_by_key(|node| node.tasks_total);
        match best {
            Some(node) => {
                // Keep the resident copy current, so later tasks see this one.
                node.tasks_total += 1;
                node.available_resources.nano_cpus -= placement.reservations.nano_cpus;
                node.available_resources.memory_bytes -= placement.reservations.memory_bytes;
                result.assignments.push((task_id, node.id.clone()));
            }
            None => {
                let reason = format!("no suitable node (of {})", nodes.len());
                result.unplaced.push((task_id, reason));
            }
        }
    }
    result
}

fn fits(node: &NodeInfo, placement: &Placement) -> bool {
    node.status == NodeStatus::Ready
        && node.availability == NodeAvailability::Active
        && node.runtimes.contains(&placement.runtime)
        && node.available_resources.nano_cpus >= placement.reservations.nano_cpus
        && node.available_resources.memory_bytes >= placement.reservations.memory_bytes
}

swarm_plugin_sdk::export_scheduler!(FewestTasks);
