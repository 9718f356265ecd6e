//! The default scheduler plugin: SwarmKit's filters and spread strategy (`swarm-scheduler-core`)
//! behind the `swarm:plugin/scheduler` world, with the node set resident in the instance.

use std::cell::RefCell;

use swarm_scheduler_core as core;

use swarm_plugin_sdk::Scheduler;
use swarm_plugin_sdk::types::{
    GroupResult, NodeAvailability, NodeInfo, NodeRole, NodeStatus, Resources, TaskGroup,
};

thread_local! {
    static SCHEDULER: RefCell<core::Scheduler> = RefCell::new(core::Scheduler::new());
}

struct Plugin;

impl Scheduler for Plugin {
    fn update_nodes(upserts: Vec<NodeInfo>, removals: Vec<String>) {
        let upserts = upserts.into_iter().map(node_from_wit).collect();
        SCHEDULER.with(|scheduler| scheduler.borrow_mut().update_nodes(upserts, &removals));
    }

    fn schedule(groups: Vec<TaskGroup>) -> Vec<GroupResult> {
        let groups = groups.into_iter().map(group_from_wit).collect();
        let results = SCHEDULER.with(|scheduler| scheduler.borrow_mut().schedule(groups));
        results
            .into_iter()
            .map(|result| GroupResult {
                service_id: result.service_id,
                assignments: result.assignments,
                unplaced: result.unplaced,
            })
            .collect()
    }
}

fn resources(r: Resources) -> core::Resources {
    core::Resources {
        nano_cpus: r.nano_cpus,
        memory_bytes: r.memory_bytes,
    }
}

fn node_from_wit(node: NodeInfo) -> core::Node {
    core::Node {
        id: node.id,
        hostname: node.hostname,
        role: match node.role {
            NodeRole::Manager => core::NodeRole::Manager,
            NodeRole::Worker => core::NodeRole::Worker,
        },
        os: node.os,
        arch: node.arch,
        labels: node.labels,
        engine_labels: node.engine_labels,
        addr: node.addr,
        status: match node.status {
            NodeStatus::Unknown => core::NodeStatus::Unknown,
            NodeStatus::Down => core::NodeStatus::Down,
            NodeStatus::Ready => core::NodeStatus::Ready,
            NodeStatus::Disconnected => core::NodeStatus::Disconnected,
        },
        availability: match node.availability {
            NodeAvailability::Active => core::Availability::Active,
            NodeAvailability::Pause => core::Availability::Pause,
            NodeAvailability::Drain => core::Availability::Drain,
        },
        total: resources(node.total_resources),
        available: resources(node.available_resources),
        runtimes: node.runtimes,
        plugins: node.plugins,
        tasks_total: node.tasks_total,
        service_tasks: node.service_tasks.into_iter().collect(),
        recent_failures: node.recent_failures.into_iter().collect(),
    }
}

fn group_from_wit(group: TaskGroup) -> core::TaskGroup {
    let placement = group.placement;
    core::TaskGroup {
        service_id: group.service_id,
        task_ids: group.task_ids,
        placement: core::Placement {
            runtime: placement.runtime,
            reservations: resources(placement.reservations),
            constraints: placement.constraints,
            platforms: placement
                .platforms
                .into_iter()
                .map(|p| core::Platform {
                    os: p.os,
                    arch: p.arch,
                })
                .collect(),
            max_replicas: placement.max_replicas,
            required_plugins: placement.required_plugins,
        },
    }
}

swarm_plugin_sdk::export_scheduler!(Plugin);
