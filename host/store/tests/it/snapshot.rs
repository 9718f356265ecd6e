//! Snapshot and restore: the whole state, versions and indexes survive a serde round trip.

use swarm_store::{MemoryStore, ObjectKind, StoreRead, StoreSnapshot};

use crate::support::*;

fn populated() -> MemoryStore {
    let store = MemoryStore::new();
    let v = must_apply(
        &store,
        vec![
            create(node("n1")),
            create(node("n2")),
            create(service("s1", "web")),
            create(service("s2", "api")),
            create(cluster("c1", "default")),
            create(task_on("t1", "s1", 1, "n1")),
            create(task_on("t2", "s1", 2, "n2")),
            create(task("t3", "s2", 1)),
        ],
    );
    must_apply(
        &store,
        vec![
            update(at(task_on("t3", "s2", 1, "n1"), v)),
            delete(ObjectKind::Task, "t2"),
        ],
    );
    store
}

#[test]
fn snapshot_restore_round_trip_is_equal() {
    let source = populated();
    let snapshot = source.snapshot();
    assert_eq!(snapshot.index, 2);
    assert_eq!(
        snapshot
            .tasks
            .iter()
            .map(|t| (t.id.as_str(), t.meta.version))
            .collect::<Vec<_>>(),
        [("t1", 1), ("t3", 2)]
    );

    let json = must_snapshot_json(&snapshot);
    let decoded: StoreSnapshot = serde_json::from_str(&json).expect("deserialize snapshot");
    assert_eq!(decoded, snapshot);

    // Restoring over a store with other contents replaces them entirely.
    let target = MemoryStore::new();
    must_apply(
        &target,
        vec![create(node("stale")), create(service("s9", "web"))],
    );
    target.restore(decoded);
    assert_eq!(target.snapshot(), snapshot);
    assert_eq!(
        must_snapshot_json(&target.snapshot()),
        json,
        "same bytes on every manager"
    );
    assert_eq!(target.last_index(), 2);
    target.view(|tx| {
        assert!(tx.node("stale").is_none());
        assert_eq!(tx.service_by_name("web").map(|s| s.id.as_str()), Some("s1"));
        assert_eq!(ids(tx.tasks_by_node("n1")), ["t1", "t3"]);
        must_be_consistent(tx);
    });

    // The restored store goes on applying from the snapshot's index, with versions intact.
    let t3 = must_task(&target, "t3");
    let v = must_apply(&target, vec![update((*t3).clone())]);
    assert_eq!((v, must_task(&target, "t3").meta.version), (3, 3));
}

#[test]
fn a_snapshot_is_not_affected_by_later_writes() {
    let store = populated();
    let snapshot = store.snapshot();
    must_apply(&store, vec![delete(ObjectKind::Task, "t1")]);
    assert!(snapshot.tasks.iter().any(|t| t.id == "t1"));
    assert_eq!(must_service(&store, "s1").meta.version, 1);
}
