//! SwarmKit's scheduling pipeline and spread strategy over a resident node set.
//!
//! Pure Rust with no binding layer: the wasm scheduler guest wraps it, and the host's native
//! benchmark builds it directly.
//!
//! Invariants:
//! - Filters run in SwarmKit's order: ready, resources, runtime, plugin, constraints, platform,
//!   max replicas per node. A node that fails is counted under the first filter it fails, and a
//!   task that cannot be placed gets one reason naming every filter with its node count.
//! - Static filters (everything but resources and max replicas) are evaluated once per node per
//!   group; tasks are then placed from a heap keyed by (recent failures, service tasks, total
//!   tasks, node id), so a group costs O(nodes + tasks x log nodes).
//! - Every placement updates the resident node (available resources, task counts) before the next
//!   task is placed.

mod constraint;
mod model;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

pub use constraint::Constraint;
pub use model::{
    Availability, GroupResult, Node, NodeRole, NodeStatus, Placement, Platform, Resources,
    TaskGroup,
};

/// A node with this many failures of a service in the last five minutes goes last for it.
pub const MAX_RECENT_FAILURES: u32 = 5;

/// The resident node set and the placement logic.
#[derive(Clone, Debug, Default)]
pub struct Scheduler {
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
}

/// The first filter a node fails, in pipeline order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rejection {
    NotReady,
    InsufficientCpu,
    InsufficientMemory,
    Runtime,
    Plugin,
    Constraints,
    Platform,
    MaxReplicas,
}

const REJECTION_COUNT: usize = 8;

impl Scheduler {
    pub fn new() -> Scheduler {
        Scheduler::default()
    }

    /// Adds or replaces `upserts` (by id), then removes the nodes named in `removals`.
    pub fn update_nodes(&mut self, upserts: Vec<Node>, removals: &[String]) {
        for node in upserts {
            match self.index.get(&node.id) {
                Some(&position) => self.nodes[position] = node,
                None => {
                    self.index.insert(node.id.clone(), self.nodes.len());
                    self.nodes.push(node);
                }
            }
        }
        for id in removals {
            if let Some(position) = self.index.remove(id) {
                self.nodes.swap_remove(position);
                if let Some(moved) = self.nodes.get(position) {
                    self.index.insert(moved.id.clone(), position);
                }
            }
        }
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.index.get(id).map(|&position| &self.nodes[position])
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Places every group in order; later groups see the placements of earlier ones.
    pub fn schedule(&mut self, groups: Vec<TaskGroup>) -> Vec<GroupResult> {
        groups
            .into_iter()
            .map(|group| self.schedule_group(group))
            .collect()
    }

    fn schedule_group(&mut self, group: TaskGroup) -> GroupResult {
        let TaskGroup {
            service_id,
            task_ids,
            placement,
        } = group;
        let mut result = GroupResult {
            service_id,
            assignments: Vec::with_capacity(task_ids.len()),
            unplaced: Vec::new(),
        };
        if task_ids.is_empty() {
            return result;
        }
        let constraints = match constraint::parse_all(&placement.constraints) {
            Ok(constraints) => constraints,
            Err(reason) => {
                result.unplaced = task_ids
                    .into_iter()
                    .map(|id| (id, reason.clone()))
                    .collect();
                return result;
            }
        };
        let service_id = result.service_id.as_str();

        // Static filters once per node; the heap holds the candidates. Ties go to the smallest
        // node id, through a rank computed once so the heap compares integers only.
        let mut candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&position| {
                static_rejection(&self.nodes[position], &placement, &constraints).is_none()
            })
            .collect();
        candidates.sort_unstable_by(|&a, &b| self.nodes[a].id.cmp(&self.nodes[b].id));
        let mut heap = BinaryHeap::with_capacity(candidates.len());
        for (rank, &position) in candidates.iter().enumerate() {
            let node = &self.nodes[position];
            let penalty = node
                .recent_failures
                .get(service_id)
                .is_some_and(|&failures| failures >= MAX_RECENT_FAILURES);
            heap.push(Reverse((
                penalty,
                node.service_count(service_id),
                node.tasks_total,
                rank,
                position,
            )));
        }

        // Counts and resources change as tasks are placed; keep them aside and write them back.
        let mut placed: Vec<Option<(u32, u32, Resources)>> = vec![None; self.nodes.len()];
        let reservations = placement.reservations;
        let mut tasks = task_ids.into_iter();
        while let Some(task_id) = tasks.next() {
            let mut chosen = None;
            while let Some(Reverse((penalty, service_count, total, rank, position))) = heap.pop() {
                let available = placed[position]
                    .map_or(self.nodes[position].available, |(_, _, available)| {
                        available
                    });
                let fits = resource_rejection(&available, &reservations).is_none()
                    && (placement.max_replicas == 0
                        || u64::from(service_count) < placement.max_replicas);
                if fits {
                    chosen = Some((penalty, service_count, total, rank, position, available));
                    break;
                }
                // Resources only shrink and counts only grow within a group: drop the node.
            }
            let Some((penalty, service_count, total, rank, position, available)) = chosen else {
                let reason = explain(&self.nodes, &placed, service_id, &placement, &constraints);
                result.unplaced.push((task_id, reason.clone()));
                result
                    .unplaced
                    .extend(tasks.by_ref().map(|id| (id, reason.clone())));
                break;
            };
            let available = Resources {
                nano_cpus: available.nano_cpus - reservations.nano_cpus.max(0),
                memory_bytes: available.memory_bytes - reservations.memory_bytes.max(0),
            };
            placed[position] = Some((service_count + 1, total + 1, available));
            result
                .assignments
                .push((task_id, self.nodes[position].id.clone()));
            heap.push(Reverse((
                penalty,
                service_count + 1,
                total + 1,
                rank,
                position,
            )));
        }
        drop(heap);

        for (position, placed) in placed.into_iter().enumerate() {
            let Some((service_count, total, available)) = placed else {
                continue;
            };
            let node = &mut self.nodes[position];
            node.tasks_total = total;
            node.available = available;
            node.service_tasks
                .insert(result.service_id.clone(), service_count);
        }
        result
    }
}

/// The first static filter `node` fails, or `None`. Resources and max replicas are checked
/// separately because placements change them.
fn static_rejection(
    node: &Node,
    placement: &Placement,
    constraints: &[Constraint],
) -> Option<Rejection> {
    if node.status != NodeStatus::Ready || node.availability != Availability::Active {
        return Some(Rejection::NotReady);
    }
    if !placement.runtime.is_empty() && !node.runtimes.contains(&placement.runtime) {
        return Some(Rejection::Runtime);
    }
    if !placement
        .required_plugins
        .iter()
        .all(|plugin| node.plugins.contains(plugin))
    {
        return Some(Rejection::Plugin);
    }
    if !constraints.iter().all(|c| c.matches(node)) {
        return Some(Rejection::Constraints);
    }
    if !placement.platforms.is_empty()
        && !placement
            .platforms
            .iter()
            .any(|platform| platform_matches(platform, node))
    {
        return Some(Rejection::Platform);
    }
    None
}

fn resource_rejection(available: &Resources, reservations: &Resources) -> Option<Rejection> {
    if reservations.nano_cpus > 0 && available.nano_cpus < reservations.nano_cpus {
        return Some(Rejection::InsufficientCpu);
    }
    if reservations.memory_bytes > 0 && available.memory_bytes < reservations.memory_bytes {
        return Some(Rejection::InsufficientMemory);
    }
    None
}

fn platform_matches(wanted: &Platform, node: &Node) -> bool {
    let os_ok = wanted.os.is_empty() || wanted.os.eq_ignore_ascii_case(&node.os);
    let arch_ok = wanted.arch.is_empty()
        || normalize_arch(&wanted.arch).eq_ignore_ascii_case(normalize_arch(&node.arch));
    os_ok && arch_ok
}

/// Docker's aliases for the same architecture.
fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "i386" | "i686" => "386",
        other => other,
    }
}

/// SwarmKit's reason for a task that no node accepts: each filter with the count of nodes it
/// rejected first, in pipeline order.
fn explain(
    nodes: &[Node],
    placed: &[Option<(u32, u32, Resources)>],
    service_id: &str,
    placement: &Placement,
    constraints: &[Constraint],
) -> String {
    let mut counts = [0usize; REJECTION_COUNT];
    for (position, node) in nodes.iter().enumerate() {
        let (service_count, available) = match placed[position] {
            Some((service_count, _, available)) => (service_count, available),
            None => (node.service_count(service_id), node.available),
        };
        let rejection = if node.status != NodeStatus::Ready
            || node.availability != Availability::Active
        {
            Some(Rejection::NotReady)
        } else if let Some(rejection) = resource_rejection(&available, &placement.reservations) {
            Some(rejection)
        } else if let Some(rejection) = static_rejection(node, placement, constraints) {
            Some(rejection)
        } else if placement.max_replicas > 0 && u64::from(service_count) >= placement.max_replicas {
            Some(Rejection::MaxReplicas)
        } else {
            None
        };
        if let Some(rejection) = rejection {
            counts[rejection as usize] += 1;
        }
    }
    let mut parts = Vec::new();
    for (index, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let nodes = if count == 1 {
            "1 node".to_owned()
        } else {
            format!("{count} nodes")
        };
        let has = if count == 1 { "has" } else { "have" };
        let part = match index {
            i if i == Rejection::NotReady as usize => {
                format!("{nodes} not available for new tasks")
            }
            i if i == Rejection::InsufficientCpu as usize => {
                format!("{nodes} {has} insufficient CPU")
            }
            i if i == Rejection::InsufficientMemory as usize => {
                format!("{nodes} {has} insufficient memory")
            }
            i if i == Rejection::Runtime as usize => {
                format!("runtime {:?} not supported on {nodes}", placement.runtime)
            }
            i if i == Rejection::Plugin as usize => format!("missing plugin on {nodes}"),
            i if i == Rejection::Constraints as usize => {
                format!("scheduling constraints not satisfied on {nodes}")
            }
            i if i == Rejection::Platform as usize => format!("unsupported platform on {nodes}"),
            _ => format!("max replicas per node reached on {nodes}"),
        };
        parts.push(part);
    }
    if parts.is_empty() {
        "no suitable node".to_owned()
    } else {
        format!("no suitable node ({})", parts.join("; "))
    }
}

#[cfg(test)]
mod tests;
