//! The manager's `Placer` over `swarm-scheduler-core` compiled natively: the same placement code
//! as the default wasm scheduler plugin, without the component boundary. The conversions mirror
//! the guest's (`plugins/scheduler/src/lib.rs`).

use futures::future::BoxFuture;
use swarm_manager::{ManagerError, Placer};
use swarm_plugin_host as ph;
use swarm_scheduler_core as core;

/// The native placer: a resident `swarm_scheduler_core::Scheduler`.
#[derive(Debug, Default)]
pub struct NativePlacer {
    scheduler: core::Scheduler,
}

impl Placer for NativePlacer {
    fn update_nodes(
        &mut self,
        upserts: Vec<ph::NodeInfo>,
        removals: Vec<String>,
    ) -> BoxFuture<'_, Result<(), ManagerError>> {
        let upserts = upserts.into_iter().map(node_from_host).collect();
        self.scheduler.update_nodes(upserts, &removals);
        Box::pin(std::future::ready(Ok(())))
    }

    fn schedule(
        &mut self,
        groups: Vec<ph::TaskGroup>,
    ) -> BoxFuture<'_, Result<Vec<ph::GroupResult>, ManagerError>> {
        let groups = groups.into_iter().map(group_from_host).collect();
        let results = self
            .scheduler
            .schedule(groups)
            .into_iter()
            .map(|result| ph::GroupResult {
                service_id: result.service_id,
                assignments: result.assignments,
                unplaced: result.unplaced,
            })
            .collect();
        Box::pin(std::future::ready(Ok(results)))
    }
}

fn resources(r: ph::Resources) -> core::Resources {
    core::Resources {
        nano_cpus: r.nano_cpus,
        memory_bytes: r.memory_bytes,
    }
}

fn node_from_host(node: ph::NodeInfo) -> core::Node {
    core::Node {
        id: node.id,
        hostname: node.hostname,
        role: match node.role {
            ph::NodeRole::Manager => core::NodeRole::Manager,
            ph::NodeRole::Worker => core::NodeRole::Worker,
        },
        os: node.os,
        arch: node.arch,
        labels: node.labels,
        engine_labels: node.engine_labels,
        addr: node.addr,
        status: match node.status {
            ph::NodeStatus::Unknown => core::NodeStatus::Unknown,
            ph::NodeStatus::Down => core::NodeStatus::Down,
            ph::NodeStatus::Ready => core::NodeStatus::Ready,
            ph::NodeStatus::Disconnected => core::NodeStatus::Disconnected,
        },
        availability: match node.availability {
            ph::NodeAvailability::Active => core::Availability::Active,
            ph::NodeAvailability::Pause => core::Availability::Pause,
            ph::NodeAvailability::Drain => core::Availability::Drain,
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

fn group_from_host(group: ph::TaskGroup) -> core::TaskGroup {
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
