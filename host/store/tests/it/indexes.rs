//! Secondary indexes follow every create, update, delete and rollback.

use swarm_store::{Batch, MemoryStore, ObjectKind, StoreRead};
use swarm_types::TaskState;

use crate::support::*;

fn by_node(store: &MemoryStore, node_id: &str) -> Vec<String> {
    store.view(|tx| ids(tx.tasks_by_node(node_id)))
}

#[test]
fn a_task_moving_from_node_a_to_node_b_leaves_a() {
    let store = MemoryStore::new();
    let v = must_apply(
        &store,
        vec![
            create(task_on("t1", "s1", 1, "a")),
            create(task_on("t2", "s1", 2, "a")),
        ],
    );
    assert_eq!(by_node(&store, "a"), ["t1", "t2"]);

    must_apply(&store, vec![update(at(task_on("t1", "s1", 1, "b"), v))]);
    assert_eq!(by_node(&store, "a"), ["t2"]);
    assert_eq!(by_node(&store, "b"), ["t1"]);

    // Unassigning takes it out of every node's listing.
    let v = store.last_index();
    must_apply(&store, vec![update(at(task("t1", "s1", 1), v))]);
    assert!(by_node(&store, "b").is_empty());
    store.view(|tx| must_be_consistent(tx));
}

#[test]
fn a_refused_batch_leaves_the_indexes_as_they_were() {
    let store = MemoryStore::new();
    let v = must_apply(
        &store,
        vec![
            create(task_on("t1", "s1", 1, "a")),
            create(service("s1", "web")),
        ],
    );
    let refused = store.apply(
        v + 1,
        Batch::new(vec![
            update(at(task_on("t1", "s2", 4, "b"), v)),
            update(at(service("s1", "api"), v)),
            create(task_on("t2", "s1", 2, "b")),
            delete(ObjectKind::Task, "missing"),
        ]),
    );
    assert!(refused.is_err());
    assert_eq!(by_node(&store, "a"), ["t1"]);
    assert!(by_node(&store, "b").is_empty());
    store.view(|tx| {
        assert_eq!(ids(tx.tasks_by_service("s1")), ["t1"]);
        assert_eq!(tx.tasks_by_service("s2").count(), 0);
        assert_eq!(tx.service_by_name("web").map(|s| s.id.as_str()), Some("s1"));
        assert!(tx.service_by_name("api").is_none());
        must_be_consistent(tx);
    });
}

#[test]
fn service_listings_go_slot_by_slot_and_slots_keep_old_tasks() {
    let store = MemoryStore::new();
    let v = must_apply(
        &store,
        vec![
            create(task("z", "s1", 1)),
            create(task("a", "s1", 3)),
            create(task("m", "s1", 2)),
            create(task("b", "s1", 1)),
            create(task("q", "s2", 1)),
        ],
    );
    store.view(|tx| {
        assert_eq!(ids(tx.tasks_by_service("s1")), ["b", "z", "m", "a"]);
        assert_eq!(ids(tx.tasks_by_slot("s1", 1)), ["b", "z"]);
        assert_eq!(ids(tx.tasks_by_slot("s1", 4)), Vec::<String>::new());
        assert_eq!(ids(tx.tasks_by_slot("s9", 1)), Vec::<String>::new());
        assert_eq!(ids(tx.tasks()), ["a", "b", "m", "q", "z"]);
    });
    // A task changing slot and service moves in both indexes.
    must_apply(&store, vec![update(at(task("z", "s2", 5), v))]);
    store.view(|tx| {
        assert_eq!(ids(tx.tasks_by_slot("s1", 1)), ["b"]);
        assert_eq!(ids(tx.tasks_by_service("s2")), ["q", "z"]);
        must_be_consistent(tx);
    });
}

#[test]
fn desired_state_index_follows_updates_and_deletes() {
    let store = MemoryStore::new();
    let v = must_apply(
        &store,
        vec![create(task("t1", "s1", 1)), create(task("t2", "s1", 2))],
    );
    let mut t1 = task("t1", "s1", 1);
    t1.desired_state = TaskState::Shutdown;
    must_apply(
        &store,
        vec![update(at(t1, v)), delete(ObjectKind::Task, "t2")],
    );
    store.view(|tx| {
        assert!(
            tx.tasks_by_desired_state(TaskState::Running)
                .next()
                .is_none()
        );
        assert_eq!(ids(tx.tasks_by_desired_state(TaskState::Shutdown)), ["t1"]);
        assert_eq!(tx.task_count(), 1);
        must_be_consistent(tx);
    });
}

#[test]
fn deleting_removes_from_every_index_and_frees_the_name() {
    let store = MemoryStore::new();
    must_apply(
        &store,
        vec![
            create(service("s1", "web")),
            create(task_on("t1", "s1", 1, "a")),
            create(cluster("c1", "default")),
        ],
    );
    must_apply(
        &store,
        vec![
            delete(ObjectKind::Task, "t1"),
            delete(ObjectKind::Service, "s1"),
            delete(ObjectKind::Cluster, "c1"),
        ],
    );
    store.view(|tx| {
        assert!(tx.task("t1").is_none());
        assert_eq!(
            tx.tasks_by_node("a").count()
                + tx.tasks_by_service("s1").count()
                + tx.tasks_by_slot("s1", 1).count(),
            0
        );
        assert_eq!(tx.tasks_by_desired_state(TaskState::Running).count(), 0);
        assert!(tx.service_by_name("web").is_none());
        assert!(tx.cluster().is_none());
    });
    must_apply(&store, vec![create(service("s2", "web"))]);
    assert_eq!(
        store.view(|tx| tx.service_by_name("Web").map(|s| s.id.clone())),
        Some("s2".into())
    );
}

#[test]
fn renaming_a_service_moves_its_name() {
    let store = MemoryStore::new();
    let v = must_apply(&store, vec![create(service("s1", "web"))]);
    must_apply(&store, vec![update(at(service("s1", "frontend"), v))]);
    store.view(|tx| {
        assert!(tx.service_by_name("web").is_none());
        assert_eq!(
            tx.service_by_name("FRONTEND").map(|s| s.id.as_str()),
            Some("s1")
        );
    });
}

#[test]
fn cluster_prefers_the_default_name() {
    let store = MemoryStore::new();
    must_apply(&store, vec![create(cluster("c9", "other"))]);
    assert_eq!(
        store.view(|tx| tx.cluster().map(|c| c.id.clone())),
        Some("c9".into())
    );
    must_apply(&store, vec![create(cluster("c5", "default"))]);
    assert_eq!(
        store.view(|tx| tx.cluster().map(|c| c.id.clone())),
        Some("c5".into())
    );
    assert_eq!(store.view(|tx| ids(tx.clusters())), ["c5", "c9"]);
}
