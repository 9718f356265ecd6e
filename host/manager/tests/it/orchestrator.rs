//! The orchestrator and task reaper, run as a task against a store that the test drives with
//! batches, the way the control API, the scheduler and the dispatcher write them.

use std::collections::BTreeSet;
use std::time::Duration;

use swarm_store::StoreRead as _;
use swarm_types::{Availability, NodeState, RestartCondition, TaskState};

use crate::support::{Harness, current, global_spec, in_slot, service_spec, summary};

fn slots(tasks: &[&swarm_types::Task]) -> BTreeSet<u64> {
    tasks.iter().map(|t| t.slot).collect()
}

#[tokio::test]
async fn a_replicated_service_fills_slots_one_to_n() {
    let mut h = Harness::new(1).await;
    h.start_orchestrator();
    let service = h.must_create_service(service_spec("web", 3)).await;

    let tasks = h
        .must_tasks(&service.id, "three tasks", |tasks| {
            (tasks.len() == 3).then(|| tasks.to_vec())
        })
        .await;
    assert_eq!(slots(&current(&tasks)), BTreeSet::from([1, 2, 3]));
    for t in &tasks {
        assert_eq!(t.desired_state, TaskState::Running, "{}", summary(t));
        assert_eq!(t.status.state, TaskState::Pending, "{}", summary(t));
        assert_eq!(t.annotations.name, format!("web.{}", t.slot));
        assert_eq!(t.spec_version, service.spec_version);
        assert_eq!(t.spec, service.spec.task);
        assert!(t.node_id.is_empty(), "replicated tasks start unassigned");
    }
    // A later pass does not add to full slots.
    h.must_settle_orchestrator().await;
    assert_eq!(h.tasks_of(&service.id).len(), 3);

    // Scaling up fills the next slots.
    h.must_update_service(&service.id, |s| {
        s.mode = swarm_types::ServiceMode::Replicated { replicas: 5 }
    })
    .await;
    let tasks = h
        .must_tasks(&service.id, "five tasks", |tasks| {
            (tasks.len() == 5).then(|| tasks.to_vec())
        })
        .await;
    assert_eq!(slots(&current(&tasks)), BTreeSet::from([1, 2, 3, 4, 5]));
    h.shutdown().await;
}

#[tokio::test]
async fn scaling_down_removes_the_highest_slots_and_the_reaper_deletes_them_once_stopped() {
    let mut h = Harness::new(1).await;
    h.start_orchestrator();
    let service = h.must_create_service(service_spec("web", 5)).await;
    let tasks = h
        .must_tasks(&service.id, "five tasks", |tasks| {
            (tasks.len() == 5).then(|| tasks.to_vec())
        })
        .await;
    // Slots 1 to 4 run on node-1; slot 5 was never assigned.
    for t in tasks.iter().filter(|t| t.slot <= 4) {
        h.must_run_on(&t.id, "node-1").await;
    }
    let slot4 = in_slot(&tasks, 4).expect("slot 4").id.clone();
    let slot5 = in_slot(&tasks, 5).expect("slot 5").id.clone();

    h.must_update_service(&service.id, |s| {
        s.mode = swarm_types::ServiceMode::Replicated { replicas: 3 }
    })
    .await;
    // Slot 5 never ran: deleted at once. Slot 4 runs: asked to stop, kept until it has.
    h.must_eventually("slot 5's task deleted", |tx| {
        tx.task(&slot5).is_none().then_some(())
    })
    .await;
    let t4 = h
        .must_eventually("slot 4's task desired REMOVE", |tx| {
            tx.task(&slot4)
                .filter(|t| t.desired_state == TaskState::Remove)
                .cloned()
        })
        .await;
    assert_eq!(t4.status.state, TaskState::Running);
    h.must_settle_orchestrator().await;
    assert!(
        h.task(&slot4).is_some(),
        "a running task is kept until it stops"
    );
    let tasks = h.tasks_of(&service.id);
    assert_eq!(slots(&current(&tasks)), BTreeSet::from([1, 2, 3]));
    assert!(
        tasks
            .iter()
            .filter(|t| t.slot <= 3)
            .all(|t| t.desired_state == TaskState::Running && t.status.state == TaskState::Running),
        "the lower slots are untouched: {:#?}",
        tasks.iter().map(summary).collect::<Vec<_>>()
    );

    h.must_report(&slot4, TaskState::Shutdown).await;
    h.must_eventually("slot 4's task deleted once it stopped", |tx| {
        tx.task(&slot4).is_none().then_some(())
    })
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn scaling_down_also_clears_the_history_of_removed_slots() {
    let mut h = Harness::new(1).await;
    h.start_orchestrator();
    let service = h.must_create_service(service_spec("web", 2)).await;
    // Slot 2 fails twice, leaving two dead tasks in its history.
    for round in 0..2 {
        let task = h
            .must_tasks(&service.id, "a current task in slot 2", |tasks| {
                in_slot(tasks, 2)
                    .filter(|t| t.status.state == TaskState::Pending)
                    .cloned()
            })
            .await;
        h.must_run_on(&task.id, "node-1").await;
        h.must_report(&task.id, TaskState::Failed).await;
        h.must_tasks(&service.id, "slot 2 restarted", |tasks| {
            (tasks.iter().filter(|t| t.slot == 2).count() == round + 2).then_some(())
        })
        .await;
    }

    h.must_update_service(&service.id, |s| {
        s.mode = swarm_types::ServiceMode::Replicated { replicas: 1 }
    })
    .await;
    h.must_tasks(&service.id, "every task of slot 2 deleted", |tasks| {
        tasks.iter().all(|t| t.slot == 1).then_some(())
    })
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_failed_task_is_restarted_with_condition_any() {
    let mut h = Harness::new(1).await;
    h.start_orchestrator();
    let service = h.must_create_service(service_spec("web", 1)).await;
    let first = h
        .must_tasks(&service.id, "a task", |tasks| tasks.first().cloned())
        .await;
    h.must_run_on(&first.id, "node-1").await;
    h.must_report(&first.id, TaskState::Failed).await;

    let tasks = h
        .must_tasks(&service.id, "a replacement", |tasks| {
            (tasks.len() == 2).then(|| tasks.to_vec())
        })
        .await;
    let old = tasks.iter().find(|t| t.id == first.id).expect("old task");
    assert_eq!(old.desired_state, TaskState::Shutdown);
    let new = in_slot(&tasks, 1).expect("one current task in slot 1");
    assert_ne!(new.id, first.id);
    assert_eq!(
        new.desired_state,
        TaskState::Running,
        "no delay: RUNNING at once"
    );
    assert_eq!(new.status.state, TaskState::Pending);
    h.shutdown().await;
}

#[tokio::test]
async fn restart_conditions_none_and_on_failure() {
    let mut h = Harness::new(1).await;
    h.start_orchestrator();
    let mut none = service_spec("never", 1);
    none.task.restart.condition = RestartCondition::None;
    let none = h.must_create_service(none).await;
    let mut on_failure = service_spec("on-failure", 2);
    on_failure.task.restart.condition = RestartCondition::OnFailure;
    let on_failure = h.must_create_service(on_failure).await;

    let never_task = h
        .must_tasks(&none.id, "a task", |tasks| tasks.first().cloned())
        .await;
    let tasks = h
        .must_tasks(&on_failure.id, "two tasks", |tasks| {
            (tasks.len() == 2).then(|| tasks.to_vec())
        })
        .await;
    let (completes, fails) = (&tasks[0], &tasks[1]);
    for t in [&never_task, completes, fails] {
        h.must_run_on(&t.id, "node-1").await;
    }
    h.must_report(&never_task.id, TaskState::Failed).await;
    h.must_report(&completes.id, TaskState::Complete).await;
    h.must_report(&fails.id, TaskState::Failed).await;

    h.must_tasks(&on_failure.id, "the failed slot restarted", |tasks| {
        in_slot(tasks, fails.slot)
            .filter(|t| t.id != fails.id)
            .map(|_| ())
    })
    .await;
    h.must_settle_orchestrator().await;
    // Condition none: the dead task keeps its slot; nothing replaces it.
    let never_tasks = h.tasks_of(&none.id);
    assert_eq!(never_tasks.len(), 1, "{never_tasks:#?}");
    assert_eq!(never_tasks[0].desired_state, TaskState::Running);
    // On-failure: a task that completed is not restarted.
    let tasks = h.tasks_of(&on_failure.id);
    assert_eq!(
        tasks.iter().filter(|t| t.slot == completes.slot).count(),
        1,
        "{:#?}",
        tasks.iter().map(summary).collect::<Vec<_>>()
    );
    h.shutdown().await;
}

#[tokio::test]
async fn max_attempts_limits_restarts_within_the_window() {
    let mut h = Harness::new(1).await;
    h.start_orchestrator();
    let mut spec = service_spec("flaky", 1);
    spec.task.restart.max_attempts = 2;
    spec.task.restart.window = Duration::from_secs(3600);
    let service = h.must_create_service(spec).await;

    // The first task and two restarts fail: three tasks, then no more.
    for attempt in 1..=3 {
        let task = h
            .must_tasks(&service.id, "a pending task in slot 1", |tasks| {
                in_slot(tasks, 1)
                    .filter(|t| t.status.state == TaskState::Pending)
                    .cloned()
            })
            .await;
        assert_eq!(h.tasks_of(&service.id).len(), attempt);
        h.must_run_on(&task.id, "node-1").await;
        h.must_report(&task.id, TaskState::Failed).await;
        if attempt < 3 {
            h.must_tasks(&service.id, "a restart", |tasks| {
                (tasks.len() == attempt + 1).then_some(())
            })
            .await;
        }
    }
    h.must_settle_orchestrator().await;
    let tasks = h.tasks_of(&service.id);
    assert_eq!(
        tasks.len(),
        3,
        "max_attempts 2: {:#?}",
        tasks.iter().map(summary).collect::<Vec<_>>()
    );
    let last = in_slot(&tasks, 1).expect("the last failed task keeps the slot");
    assert_eq!(last.status.state, TaskState::Failed);
    h.shutdown().await;
}

#[tokio::test]
async fn a_delayed_restart_is_created_ready_and_promoted_after_the_delay() {
    let mut h = Harness::new(1).await;
    h.start_orchestrator();
    let delay = Duration::from_millis(700);
    let mut spec = service_spec("slow", 1);
    spec.task.restart.delay = delay;
    let service = h.must_create_service(spec).await;
    let first = h
        .must_tasks(&service.id, "a task", |tasks| tasks.first().cloned())
        .await;
    h.must_run_on(&first.id, "node-1").await;
    h.must_report(&first.id, TaskState::Failed).await;

    let replacement = h
        .must_tasks(&service.id, "a replacement", |tasks| {
            tasks.iter().find(|t| t.id != first.id).cloned()
        })
        .await;
    let desired_at_creation = replacement.desired_state;
    let promoted = h
        .must_eventually("the replacement promoted to RUNNING", |tx| {
            tx.task(&replacement.id)
                .filter(|t| t.desired_state == TaskState::Running)
                .cloned()
        })
        .await;
    assert_eq!(
        desired_at_creation,
        TaskState::Ready,
        "a delayed restart starts desired READY"
    );
    assert!(
        promoted.meta.updated_at >= promoted.meta.created_at.plus(delay),
        "promoted at {} before the delay after {}",
        promoted.meta.updated_at,
        promoted.meta.created_at
    );
    assert_eq!(h.must_task(&first.id).desired_state, TaskState::Shutdown);
    h.shutdown().await;
}

#[tokio::test]
async fn tasks_of_a_drained_or_down_node_are_shut_down_and_replaced() {
    for cause in ["drain", "down"] {
        let mut h = Harness::new(2).await;
        h.start_orchestrator();
        let service = h.must_create_service(service_spec("web", 2)).await;
        let tasks = h
            .must_tasks(&service.id, "two tasks", |tasks| {
                (tasks.len() == 2).then(|| tasks.to_vec())
            })
            .await;
        let (lost, kept) = (&tasks[0], &tasks[1]);
        h.must_run_on(&lost.id, "node-1").await;
        h.must_run_on(&kept.id, "node-2").await;

        h.must_update_node("node-1", |n| match cause {
            "drain" => n.spec.availability = Availability::Drain,
            _ => n.status.state = NodeState::Down,
        })
        .await;
        let replacement = h
            .must_tasks(&service.id, "node-1's task replaced", |now| {
                in_slot(now, lost.slot).filter(|t| t.id != lost.id).cloned()
            })
            .await;
        assert_eq!(replacement.desired_state, TaskState::Running, "{cause}");
        assert_eq!(replacement.status.state, TaskState::Pending, "{cause}");
        assert!(
            replacement.node_id.is_empty(),
            "{cause}: the scheduler places it"
        );
        let lost = h.must_task(&lost.id);
        assert_eq!(lost.desired_state, TaskState::Shutdown, "{cause}");
        let kept = h.must_task(&kept.id);
        assert_eq!(kept.desired_state, TaskState::Running, "{cause}");
        h.shutdown().await;
    }
}

#[tokio::test]
async fn a_task_assigned_to_a_node_that_is_already_down_is_replaced() {
    // A scheduler working from a stale view may commit an assignment to a node that went down
    // just before; the orchestrator must still notice and replace the task.
    let mut h = Harness::new(2).await;
    h.start_orchestrator();
    let service = h.must_create_service(service_spec("web", 1)).await;
    let task = h
        .must_tasks(&service.id, "a task", |tasks| tasks.first().cloned())
        .await;
    h.must_update_node("node-1", |n| n.status.state = NodeState::Down)
        .await;
    h.must_settle_orchestrator().await;
    h.must_assign(&task.id, "node-1").await;

    let replacement = h
        .must_tasks(&service.id, "the task on the down node replaced", |tasks| {
            in_slot(tasks, 1).filter(|t| t.id != task.id).cloned()
        })
        .await;
    assert!(replacement.node_id.is_empty());
    assert_eq!(h.must_task(&task.id).desired_state, TaskState::Shutdown);
    h.shutdown().await;
}

#[tokio::test]
async fn a_spec_update_rolls_every_slot_over() {
    let mut h = Harness::new(1).await;
    h.start_orchestrator();
    let service = h.must_create_service(service_spec("web", 2)).await;
    let old = h
        .must_tasks(&service.id, "two tasks", |tasks| {
            (tasks.len() == 2).then(|| tasks.to_vec())
        })
        .await;
    for t in &old {
        h.must_run_on(&t.id, "node-1").await;
    }

    // A change outside the task spec (a label) rolls nothing.
    h.must_update_service(&service.id, |s| {
        s.annotations.labels.insert("team".into(), "a".into());
    })
    .await;
    h.must_settle_orchestrator().await;
    assert_eq!(h.tasks_of(&service.id).len(), 2);

    let updated = h
        .must_update_service(&service.id, |s| {
            if let swarm_types::Runtime::Process(p) = &mut s.task.runtime {
                p.args = vec!["2000".into()];
            }
        })
        .await;
    assert_eq!(updated.spec_version, 2);
    let tasks = h
        .must_tasks(&service.id, "both slots on the new spec", |tasks| {
            let fresh = current(tasks);
            (fresh.len() == 2 && fresh.iter().all(|t| t.spec_version == 2)).then(|| tasks.to_vec())
        })
        .await;
    assert_eq!(slots(&current(&tasks)), BTreeSet::from([1, 2]));
    for t in current(&tasks) {
        assert_eq!(t.spec, updated.spec.task);
    }
    for t in &old {
        assert_eq!(h.must_task(&t.id).desired_state, TaskState::Shutdown);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn deleting_a_service_removes_all_its_tasks() {
    let mut h = Harness::new(1).await;
    h.start_orchestrator();
    let service = h.must_create_service(service_spec("web", 3)).await;
    let tasks = h
        .must_tasks(&service.id, "three tasks", |tasks| {
            (tasks.len() == 3).then(|| tasks.to_vec())
        })
        .await;
    let running = h.must_run_on(&tasks[0].id, "node-1").await;

    h.must_remove_service(&service.id).await;
    // The two that never ran go at once; the running one is asked to stop first.
    h.must_tasks(&service.id, "only the running task left", |tasks| {
        (tasks.len() == 1 && tasks[0].id == running.id).then_some(())
    })
    .await;
    h.must_eventually("the running task desired REMOVE", |tx| {
        tx.task(&running.id)
            .filter(|t| t.desired_state == TaskState::Remove)
            .map(|_| ())
    })
    .await;
    h.must_report(&running.id, TaskState::Shutdown).await;
    h.must_tasks(&service.id, "no task left", |tasks| {
        tasks.is_empty().then_some(())
    })
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn the_task_history_per_slot_is_kept_to_the_cluster_limit() {
    let mut h = Harness::new(1).await;
    h.must_update_cluster(|c| c.orchestration.task_history_retention_limit = 2)
        .await;
    h.start_orchestrator();
    let service = h.must_create_service(service_spec("crashy", 1)).await;
    let mut dead = Vec::new();
    for _ in 0..5 {
        let task = h
            .must_tasks(&service.id, "a pending task in slot 1", |tasks| {
                in_slot(tasks, 1)
                    .filter(|t| t.status.state == TaskState::Pending)
                    .cloned()
            })
            .await;
        h.must_run_on(&task.id, "node-1").await;
        h.must_report(&task.id, TaskState::Failed).await;
        dead.push(task.id);
        h.must_tasks(&service.id, "a restart", |tasks| {
            in_slot(tasks, 1)
                .filter(|t| t.status.state == TaskState::Pending)
                .map(|_| ())
        })
        .await;
    }
    // The current task plus the two newest dead ones.
    let kept: BTreeSet<String> = dead[3..].iter().cloned().collect();
    let tasks = h
        .must_tasks(&service.id, "history trimmed to 2", |tasks| {
            let old: BTreeSet<String> = tasks
                .iter()
                .filter(|t| t.desired_state > TaskState::Running)
                .map(|t| t.id.clone())
                .collect();
            (old == kept).then(|| tasks.to_vec())
        })
        .await;
    assert_eq!(tasks.len(), 3);
    h.shutdown().await;
}

#[tokio::test]
async fn a_global_service_runs_one_task_per_eligible_node() {
    let mut h = Harness::new(0).await;
    h.must_add_node("east-1", &[("zone", "east")]).await;
    h.must_add_node("west-1", &[("zone", "west")]).await;
    h.must_add_node("east-drained", &[("zone", "east")]).await;
    h.must_update_node("east-drained", |n| {
        n.spec.availability = Availability::Drain
    })
    .await;
    h.start_orchestrator();
    let mut spec = global_spec("agent");
    spec.task.placement.constraints = vec!["node.labels.zone==east".into()];
    let service = h.must_create_service(spec).await;

    let on_nodes = |tasks: &[swarm_types::Task]| -> BTreeSet<String> {
        current(tasks).iter().map(|t| t.node_id.clone()).collect()
    };
    let tasks = h
        .must_tasks(&service.id, "a task on east-1", |tasks| {
            (!tasks.is_empty()).then(|| tasks.to_vec())
        })
        .await;
    let task = &tasks[0];
    assert_eq!(task.slot, 0);
    assert_eq!(
        task.node_id, "east-1",
        "global tasks are created on their node"
    );
    assert_eq!(task.annotations.name, "agent.east-1");
    h.must_settle_orchestrator().await;
    assert_eq!(
        on_nodes(&h.tasks_of(&service.id)),
        BTreeSet::from(["east-1".to_string()])
    );

    // A new eligible node gets a task; an ineligible one does not.
    h.must_add_node("east-2", &[("zone", "east")]).await;
    h.must_add_node("west-2", &[("zone", "west")]).await;
    h.must_tasks(&service.id, "a task on east-2", |tasks| {
        on_nodes(tasks).contains("east-2").then_some(())
    })
    .await;
    // Undraining a node gives it a task; draining one shuts its task down.
    h.must_update_node("east-drained", |n| {
        n.spec.availability = Availability::Active
    })
    .await;
    h.must_update_node("east-1", |n| n.spec.availability = Availability::Drain)
        .await;
    let want: BTreeSet<String> = ["east-2", "east-drained"].map(String::from).into();
    h.must_tasks(
        &service.id,
        "tasks on east-2 and east-drained only",
        |tasks| (on_nodes(tasks) == want).then_some(()),
    )
    .await;
    assert_eq!(h.must_task(&task.id).desired_state, TaskState::Shutdown);
    // A node whose labels stop matching loses its task.
    h.must_update_node("east-2", |n| {
        n.spec
            .annotations
            .labels
            .insert("zone".into(), "west".into());
    })
    .await;
    let want: BTreeSet<String> = ["east-drained"].map(String::from).into();
    h.must_tasks(&service.id, "a task on east-drained only", |tasks| {
        (on_nodes(tasks) == want).then_some(())
    })
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_paused_node_keeps_its_global_task_but_gets_no_new_one() {
    let mut h = Harness::new(0).await;
    h.must_add_node("kept", &[]).await;
    h.must_add_node("paused", &[]).await;
    h.must_update_node("paused", |n| n.spec.availability = Availability::Pause)
        .await;
    h.start_orchestrator();
    let service = h.must_create_service(global_spec("agent")).await;
    let on_nodes = |tasks: &[swarm_types::Task]| -> BTreeSet<String> {
        current(tasks).iter().map(|t| t.node_id.clone()).collect()
    };
    h.must_tasks(&service.id, "a task on the active node", |tasks| {
        (!tasks.is_empty()).then_some(())
    })
    .await;
    h.must_settle_orchestrator().await;
    assert_eq!(
        on_nodes(&h.tasks_of(&service.id)),
        BTreeSet::from(["kept".to_string()]),
        "a paused node got a new task"
    );
    // Pausing a node that has a task keeps that task.
    h.must_update_node("kept", |n| n.spec.availability = Availability::Pause)
        .await;
    h.must_settle_orchestrator().await;
    let tasks = h.tasks_of(&service.id);
    assert_eq!(on_nodes(&tasks), BTreeSet::from(["kept".to_string()]));
    assert!(
        current(&tasks)
            .iter()
            .all(|t| t.desired_state == TaskState::Running)
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_removed_node_loses_its_tasks() {
    let mut h = Harness::new(1).await;
    h.start_orchestrator();
    let service = h.must_create_service(service_spec("web", 1)).await;
    let task = h
        .must_tasks(&service.id, "a task", |tasks| tasks.first().cloned())
        .await;
    h.must_run_on(&task.id, "node-1").await;
    h.must_commit(|tx| Ok(tx.delete(swarm_store::ObjectKind::Node, "node-1")?))
        .await;
    h.must_tasks(&service.id, "a replacement", |tasks| {
        in_slot(tasks, 1).filter(|t| t.id != task.id).map(|_| ())
    })
    .await;
    h.shutdown().await;
}
