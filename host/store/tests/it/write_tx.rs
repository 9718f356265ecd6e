//! Write transactions: reads see the transaction's own writes, through every query; the store
//! does not change until the batch is applied.

use swarm_store::{Action, MemoryStore, ObjectKind, StoreError, StoreRead};
use swarm_types::TaskState;

use crate::support::*;

fn base() -> MemoryStore {
    let store = MemoryStore::new();
    must_apply(
        &store,
        vec![
            create(service("s1", "web")),
            create(task_on("t1", "s1", 1, "a")),
            create(task_on("t3", "s1", 3, "a")),
            create(node("n1")),
        ],
    );
    store
}

#[test]
fn created_objects_are_read_back_in_the_same_transaction() {
    let store = base();
    let ((), batch) = store
        .build(|tx| {
            tx.create(task_on("t2", "s1", 2, "a"))?;
            tx.create(service("s2", "api"))?;
            assert_eq!(tx.task("t2").map(|t| t.slot), Some(2));
            assert_eq!(ids(tx.tasks()), ["t1", "t2", "t3"], "merged in id order");
            assert_eq!(ids(tx.tasks_by_node("a")), ["t1", "t2", "t3"]);
            assert_eq!(ids(tx.tasks_by_service("s1")), ["t1", "t2", "t3"]);
            assert_eq!(ids(tx.tasks_by_slot("s1", 2)), ["t2"]);
            assert_eq!((tx.task_count(), tx.service_count()), (3, 2));
            assert_eq!(tx.service_by_name("API").map(|s| s.id.as_str()), Some("s2"));
            must_be_consistent(tx);
            Ok::<_, StoreError>(())
        })
        .expect("build");
    assert_eq!(batch.len(), 2);
    // The store did not change.
    store.view(|tx| {
        assert!(tx.task("t2").is_none());
        assert_eq!(tx.task_count(), 2);
    });
    must_apply(&store, batch.actions);
    assert_eq!(must_task(&store, "t2").meta.version, 2);
}

#[test]
fn deleted_objects_are_gone_in_the_same_transaction() {
    let store = base();
    store
        .build(|tx| {
            tx.delete(ObjectKind::Task, "t1")?;
            tx.delete(ObjectKind::Service, "s1")?;
            assert!(tx.task("t1").is_none());
            assert_eq!(ids(tx.tasks()), ["t3"]);
            assert_eq!(ids(tx.tasks_by_node("a")), ["t3"]);
            assert_eq!(ids(tx.tasks_by_slot("s1", 1)), Vec::<String>::new());
            assert_eq!(tx.tasks_by_desired_state(TaskState::Running).count(), 1);
            assert_eq!((tx.task_count(), tx.service_count()), (1, 0));
            assert!(tx.service_by_name("web").is_none());
            // The name is free again within the transaction.
            tx.create(service("s2", "web"))?;
            assert_eq!(tx.service_by_name("web").map(|s| s.id.as_str()), Some("s2"));
            assert_eq!(
                tx.delete(ObjectKind::Task, "t1"),
                Err(StoreError::NotFound {
                    kind: ObjectKind::Task,
                    id: "t1".into()
                })
            );
            must_be_consistent(tx);
            Ok::<_, StoreError>(())
        })
        .expect("build");
}

#[test]
fn updates_are_read_back_and_move_in_the_indexes() {
    let store = base();
    let ((), batch) = store
        .build(|tx| {
            let mut t1 = (**tx.task("t1").expect("t1")).clone();
            t1.node_id = "b".into();
            t1.meta.created_at = stamp(77);
            tx.update(t1)?;
            assert_eq!(ids(tx.tasks_by_node("a")), ["t3"]);
            assert_eq!(ids(tx.tasks_by_node("b")), ["t1"]);
            let again = tx.task("t1").expect("t1");
            assert_eq!(
                again.meta.version, 1,
                "a written object keeps the version its write carried"
            );
            assert_eq!(
                again.meta.created_at,
                stamp(0),
                "created_at is kept from the stored object"
            );
            // Updating again carries the version read back from the transaction.
            let mut t1 = (**again).clone();
            t1.desired_state = TaskState::Shutdown;
            tx.update(t1)?;
            assert_eq!(ids(tx.tasks_by_desired_state(TaskState::Shutdown)), ["t1"]);
            must_be_consistent(tx);
            Ok::<_, StoreError>(())
        })
        .expect("build");
    let index = must_apply(&store, batch.actions);
    let t1 = must_task(&store, "t1");
    assert_eq!(
        (t1.node_id.as_str(), t1.desired_state, t1.meta.version),
        ("b", TaskState::Shutdown, index)
    );
}

#[test]
fn a_refused_write_records_nothing_and_the_caller_decides() {
    let store = base();
    let ((), batch) = store
        .build(|tx| {
            tx.create(node("n2"))?;
            let refused = tx.create(node("n1"));
            assert!(matches!(refused, Err(StoreError::AlreadyExists { .. })));
            let stale = tx.update(at(service("s1", "web"), 0));
            assert!(matches!(
                stale,
                Err(StoreError::VersionConflict {
                    expected: 1,
                    got: 0,
                    ..
                })
            ));
            assert_eq!(tx.action_count(), 1);
            Ok::<_, StoreError>(())
        })
        .expect("build");
    assert_eq!(batch.actions, vec![Action::Create(node("n2").into())]);
}

#[derive(Debug, PartialEq)]
enum ProposeError {
    Store(StoreError),
    NoCapacity,
}

impl From<StoreError> for ProposeError {
    fn from(e: StoreError) -> Self {
        ProposeError::Store(e)
    }
}

#[test]
fn build_returns_the_callers_error() {
    let store = base();
    let got = store.build(|tx| {
        tx.create(task("t1", "s1", 1))?;
        Ok::<(), ProposeError>(())
    });
    assert_eq!(
        got,
        Err(ProposeError::Store(StoreError::AlreadyExists {
            kind: ObjectKind::Task,
            id: "t1".into()
        }))
    );
    let got = store.build(|_| Err::<(), _>(ProposeError::NoCapacity));
    assert_eq!(got, Err(ProposeError::NoCapacity));
}
