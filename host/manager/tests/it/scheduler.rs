//! The scheduler driver with the real default scheduler plugin (and, for robustness, a placer
//! that answers nonsense), fed by the orchestrator or by pending tasks committed directly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;
use swarm_manager::{ManagerError, Placer, SchedulerDriver};
use swarm_plugin_host as ph;
use swarm_store::StoreRead as _;
use swarm_types::{Availability, NodeState, RestartCondition, Task, TaskState};

use crate::support::{Harness, NODE_CPUS, current, global_spec, service_spec, summary};

/// How many current tasks each node holds.
fn per_node(tasks: &[Task]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for t in current(tasks) {
        if t.status.state >= TaskState::Assigned {
            *counts.entry(t.node_id.clone()).or_default() += 1;
        }
    }
    counts
}

fn all_assigned(tasks: &[Task], n: usize) -> bool {
    let now = current(tasks);
    now.len() == n
        && now
            .iter()
            .all(|t| t.status.state == TaskState::Assigned && !t.node_id.is_empty())
}

#[tokio::test]
async fn pending_tasks_are_assigned_and_spread_over_the_nodes() {
    let mut h = Harness::new(3).await;
    h.start_orchestrator();
    h.start_scheduler();
    let service = h.must_create_service(service_spec("web", 6)).await;
    let tasks = h
        .must_tasks(&service.id, "six tasks assigned", |tasks| {
            all_assigned(tasks, 6).then(|| tasks.to_vec())
        })
        .await;
    let want: BTreeMap<String, usize> = [("node-1", 2), ("node-2", 2), ("node-3", 2)]
        .map(|(n, c)| (n.to_string(), c))
        .into();
    assert_eq!(per_node(&tasks), want);
    for t in &tasks {
        assert!(t.status.err.is_empty(), "{}", summary(t));
        assert_eq!(t.desired_state, TaskState::Running);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn nodes_with_the_fewest_tasks_of_the_service_come_first() {
    let mut h = Harness::new(2).await;
    h.start_orchestrator();
    h.start_scheduler();
    // node-2 runs three tasks of another service; node-1 one task of "web".
    h.must_update_node("node-1", |n| n.spec.availability = Availability::Pause)
        .await;
    let other = h.must_create_service(service_spec("other", 3)).await;
    h.must_tasks(&other.id, "other's tasks on node-2", |tasks| {
        all_assigned(tasks, 3).then_some(())
    })
    .await;
    h.must_update_node("node-1", |n| n.spec.availability = Availability::Active)
        .await;
    h.must_update_node("node-2", |n| n.spec.availability = Availability::Pause)
        .await;
    let service = h.must_create_service(service_spec("web", 1)).await;
    h.must_tasks(&service.id, "web's task on node-1", |tasks| {
        all_assigned(tasks, 1).then_some(())
    })
    .await;
    h.must_update_node("node-2", |n| n.spec.availability = Availability::Active)
        .await;

    // The second web task goes to node-2: fewer web tasks, though more tasks in all.
    h.must_update_service(&service.id, |s| {
        s.mode = swarm_types::ServiceMode::Replicated { replicas: 2 }
    })
    .await;
    let tasks = h
        .must_tasks(&service.id, "two web tasks assigned", |tasks| {
            all_assigned(tasks, 2).then(|| tasks.to_vec())
        })
        .await;
    let want: BTreeMap<String, usize> = [("node-1", 1), ("node-2", 1)]
        .map(|(n, c)| (n.to_string(), c))
        .into();
    assert_eq!(per_node(&tasks), want);

    // With web tied, the node with fewer tasks in all comes first, then they alternate.
    h.must_update_service(&service.id, |s| {
        s.mode = swarm_types::ServiceMode::Replicated { replicas: 5 }
    })
    .await;
    let tasks = h
        .must_tasks(&service.id, "five web tasks assigned", |tasks| {
            all_assigned(tasks, 5).then(|| tasks.to_vec())
        })
        .await;
    let want: BTreeMap<String, usize> = [("node-1", 3), ("node-2", 2)]
        .map(|(n, c)| (n.to_string(), c))
        .into();
    assert_eq!(per_node(&tasks), want);
    h.shutdown().await;
}

#[tokio::test]
async fn an_unplaceable_task_waits_with_the_reason_until_a_label_allows_it() {
    let mut h = Harness::new(3).await;
    h.start_orchestrator();
    h.start_scheduler();
    let mut spec = service_spec("east-only", 1);
    spec.task.placement.constraints = vec!["node.labels.zone==east".into()];
    let service = h.must_create_service(spec).await;
    let waiting = h
        .must_tasks(&service.id, "the task's reason", |tasks| {
            tasks.first().filter(|t| !t.status.err.is_empty()).cloned()
        })
        .await;
    assert_eq!(waiting.status.state, TaskState::Pending);
    assert_eq!(
        waiting.status.err,
        "no suitable node (scheduling constraints not satisfied on 3 nodes)"
    );

    h.must_update_node("node-2", |n| {
        n.spec
            .annotations
            .labels
            .insert("zone".into(), "east".into());
    })
    .await;
    let placed = h
        .must_eventually("the task placed on node-2", |tx| {
            tx.task(&waiting.id)
                .filter(|t| t.status.state == TaskState::Assigned)
                .cloned()
        })
        .await;
    assert_eq!(placed.node_id, "node-2");
    assert!(placed.status.err.is_empty(), "the reason is cleared");
    h.shutdown().await;
}

#[tokio::test]
async fn an_unplaceable_task_is_placed_when_a_node_becomes_available() {
    let mut h = Harness::new(2).await;
    h.must_update_node("node-1", |n| n.spec.availability = Availability::Pause)
        .await;
    h.must_update_node("node-2", |n| n.status.state = NodeState::Down)
        .await;
    h.start_orchestrator();
    h.start_scheduler();
    let service = h.must_create_service(service_spec("web", 1)).await;
    let waiting = h
        .must_tasks(&service.id, "the task's reason", |tasks| {
            tasks.first().filter(|t| !t.status.err.is_empty()).cloned()
        })
        .await;
    assert_eq!(
        waiting.status.err,
        "no suitable node (2 nodes not available for new tasks)"
    );

    h.must_update_node("node-1", |n| n.spec.availability = Availability::Active)
        .await;
    let placed = h
        .must_eventually("the task placed on node-1", |tx| {
            tx.task(&waiting.id)
                .filter(|t| t.status.state == TaskState::Assigned)
                .cloned()
        })
        .await;
    assert_eq!(placed.node_id, "node-1");
    h.shutdown().await;
}

#[tokio::test]
async fn resources_freed_by_a_finished_task_let_a_waiting_task_in() {
    let mut h = Harness::new(1).await;
    h.start_orchestrator();
    h.start_scheduler();
    let mut big = service_spec("big", 1);
    big.task.resources.reservations.nano_cpus = NODE_CPUS;
    big.task.restart.condition = RestartCondition::None;
    let big = h.must_create_service(big).await;
    let first = h
        .must_tasks(&big.id, "big's task assigned", |tasks| {
            all_assigned(tasks, 1).then(|| tasks[0].clone())
        })
        .await;
    h.must_report(&first.id, TaskState::Running).await;

    let mut second = service_spec("second", 1);
    second.task.resources.reservations.nano_cpus = NODE_CPUS / 2;
    let second = h.must_create_service(second).await;
    let waiting = h
        .must_tasks(&second.id, "the second task's reason", |tasks| {
            tasks.first().filter(|t| !t.status.err.is_empty()).cloned()
        })
        .await;
    assert_eq!(
        waiting.status.err,
        "no suitable node (1 node has insufficient CPU)"
    );

    h.must_report(&first.id, TaskState::Complete).await;
    let placed = h
        .must_eventually("the second task placed", |tx| {
            tx.task(&waiting.id)
                .filter(|t| t.status.state == TaskState::Assigned)
                .cloned()
        })
        .await;
    assert_eq!(placed.node_id, "node-1");
    h.shutdown().await;
}

#[tokio::test]
async fn a_global_task_goes_only_to_its_node() {
    let mut h = Harness::new(3).await;
    // node-3 is too small for the service's reservation; the others have room.
    h.must_update_node("node-3", |n| {
        if let Some(d) = n.description.as_mut() {
            d.resources.memory_bytes = 1 << 20;
        }
    })
    .await;
    h.start_orchestrator();
    h.start_scheduler();
    let mut spec = global_spec("agent");
    spec.task.resources.reservations.memory_bytes = 64 << 20;
    let service = h.must_create_service(spec).await;
    let tasks = h
        .must_tasks(
            &service.id,
            "the tasks of node-1 and node-2 assigned",
            |tasks| {
                let assigned = tasks
                    .iter()
                    .filter(|t| t.status.state == TaskState::Assigned)
                    .count();
                (tasks.len() == 3 && assigned == 2).then(|| tasks.to_vec())
            },
        )
        .await;
    for t in &tasks {
        assert_eq!(
            t.annotations.name,
            format!("agent.{}", t.node_id),
            "{}",
            summary(t)
        );
    }
    // The paused node's task does not go anywhere else, though the others have room.
    let paused = tasks
        .iter()
        .find(|t| t.node_id == "node-3")
        .expect("node-3's task");
    let paused = h
        .must_eventually("node-3's task has a reason", |tx| {
            tx.task(&paused.id)
                .filter(|t| !t.status.err.is_empty())
                .cloned()
        })
        .await;
    assert_eq!(paused.status.state, TaskState::Pending);
    assert_eq!(paused.node_id, "node-3");

    h.must_update_node("node-3", |n| {
        if let Some(d) = n.description.as_mut() {
            d.resources.memory_bytes = 1 << 30;
        }
    })
    .await;
    let placed = h
        .must_eventually("node-3's task assigned", |tx| {
            tx.task(&paused.id)
                .filter(|t| t.status.state == TaskState::Assigned)
                .cloned()
        })
        .await;
    assert_eq!(placed.node_id, "node-3");
    h.shutdown().await;
}

/// A placer that answers every group by assigning its tasks to a node that does not exist, to
/// a down node or to node-1 (pinned tasks: always node-1), and adds a task it was not asked about.
struct Rogue {
    calls: Arc<AtomicUsize>,
    stranger: String,
}

impl Placer for Rogue {
    fn update_nodes(
        &mut self,
        _upserts: Vec<ph::NodeInfo>,
        _removals: Vec<String>,
    ) -> BoxFuture<'_, Result<(), ManagerError>> {
        Box::pin(async { Ok(()) })
    }

    fn schedule(
        &mut self,
        groups: Vec<ph::TaskGroup>,
    ) -> BoxFuture<'_, Result<Vec<ph::GroupResult>, ManagerError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let stranger = self.stranger.clone();
        Box::pin(async move {
            Ok(groups
                .into_iter()
                .map(|g| {
                    let pinned = g
                        .placement
                        .constraints
                        .iter()
                        .any(|c| c.starts_with("node.id=="));
                    let mut assignments: Vec<(String, String)> = g
                        .task_ids
                        .iter()
                        .enumerate()
                        .map(|(i, id)| {
                            let node = if pinned {
                                "node-1"
                            } else {
                                ["no-such-node", "node-down", "node-1"][i % 3]
                            };
                            (id.clone(), node.to_string())
                        })
                        .collect();
                    assignments.push((stranger.clone(), "node-1".to_string()));
                    ph::GroupResult {
                        service_id: g.service_id,
                        assignments,
                        unplaced: Vec::new(),
                    }
                })
                .collect())
        })
    }
}

#[tokio::test]
async fn the_driver_commits_only_placements_it_asked_for_on_nodes_that_take_tasks() {
    let mut h = Harness::new(0).await;
    h.must_add_node("node-1", &[]).await;
    h.must_add_node("node-2", &[]).await;
    h.must_add_node("node-down", &[]).await;
    h.must_update_node("node-down", |n| n.status.state = NodeState::Down)
        .await;
    h.start_orchestrator();
    // A task that is not pending (already ASSIGNED elsewhere) which the placer tries to move.
    let parked = h.must_create_service(service_spec("parked", 1)).await;
    let stranger = h
        .must_tasks(&parked.id, "parked's task", |tasks| tasks.first().cloned())
        .await;
    h.must_assign(&stranger.id, "node-2").await;
    // Global tasks pinned to node-2, and replicated ones.
    let global = h.must_create_service(global_spec("agent")).await;
    let replicated = h.must_create_service(service_spec("web", 3)).await;
    h.must_tasks(&global.id, "agent tasks", |tasks| {
        (tasks.len() == 2).then_some(())
    })
    .await;
    h.must_tasks(&replicated.id, "web tasks", |tasks| {
        (tasks.len() == 3).then_some(())
    })
    .await;

    let calls = Arc::new(AtomicUsize::new(0));
    let rogue = Rogue {
        calls: calls.clone(),
        stranger: stranger.id.clone(),
    };
    let driver = SchedulerDriver::new(h.store.clone(), h.committer.clone(), Box::new(rogue));
    h.spawn(driver.run(h.cancel_token()));

    // Only placements on node-1 of tasks that asked for it (or may go anywhere) commit.
    let tasks = h
        .must_eventually("the driver's passes to settle", |tx| {
            let assigned: Vec<Task> = tx
                .tasks()
                .filter(|t| t.status.state == TaskState::Assigned && t.id != stranger.id)
                .map(|t| (**t).clone())
                .collect();
            (calls.load(Ordering::SeqCst) >= 1 && !assigned.is_empty()).then_some(assigned)
        })
        .await;
    for t in &tasks {
        assert_eq!(t.node_id, "node-1", "{}", summary(t));
    }
    for t in h.tasks_of(&global.id) {
        assert_eq!(
            t.annotations.name,
            format!("agent.{}", t.node_id),
            "a pinned task moved"
        );
    }
    assert_eq!(
        h.must_task(&stranger.id).node_id,
        "node-2",
        "a task not asked about moved"
    );
    h.view(|tx| {
        for t in tx.tasks() {
            assert!(
                t.node_id != "no-such-node" && t.node_id != "node-down",
                "{}",
                summary(t)
            );
        }
    });
    // The driver does not spin re-asking a placer that keeps answering nonsense.
    let before = calls.load(Ordering::SeqCst);
    h.must_settle_orchestrator().await;
    h.must_settle_orchestrator().await;
    let after = calls.load(Ordering::SeqCst);
    assert!(
        after <= before + 8,
        "the driver called the placer {} times while nothing changed",
        after - before
    );
    h.shutdown().await;
}
