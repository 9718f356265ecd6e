//! The rules of `apply`, case by case; every case also runs through `build`, whose checks must
//! agree with `apply`'s, and every refused batch must leave no trace.

use swarm_store::{Action, Batch, MemoryStore, ObjectKind, StoreError, StoreRead, WatchItem};
use swarm_types::TaskState;

use crate::support::*;

struct Case {
    name: &'static str,
    batch: Vec<Action>,
    /// `Err` holds the exact error text.
    want: Result<(), &'static str>,
}

/// Index 1: node n1, services s1 "web" and s2 "api", task t1 (s1, slot 1), cluster c1.
/// Index 2: t1 updated (so t1 is at version 2, everything else at 1).
fn setup() -> MemoryStore {
    let store = MemoryStore::new();
    must_apply(
        &store,
        vec![
            create(node("n1")),
            create(service("s1", "web")),
            create(service("s2", "api")),
            create(task("t1", "s1", 1)),
            create(cluster("c1", "default")),
        ],
    );
    must_apply(&store, vec![update(at(task("t1", "s1", 1), 1))]);
    store
}

fn cases() -> Vec<Case> {
    use ObjectKind::*;
    vec![
        Case {
            name: "create a task",
            batch: vec![create(task("t2", "s1", 2))],
            want: Ok(()),
        },
        Case {
            name: "create an existing id",
            batch: vec![create(task("t1", "s1", 1))],
            want: Err("task t1 already exists"),
        },
        Case {
            name: "create one id twice in a batch",
            batch: vec![create(task("t2", "s1", 2)), create(task("t2", "s1", 3))],
            want: Err("task t2 already exists"),
        },
        Case {
            name: "create with an empty id",
            batch: vec![create(task("", "s1", 2))],
            want: Err("task id must not be empty"),
        },
        Case {
            name: "node ids are unique",
            batch: vec![create(node("n1"))],
            want: Err("node n1 already exists"),
        },
        Case {
            name: "service names are unique ignoring case",
            batch: vec![create(service("s3", "WEB"))],
            want: Err("service name \"WEB\" is already used by service s1; choose another name"),
        },
        Case {
            name: "two services with one name in a batch",
            batch: vec![create(service("s3", "db")), create(service("s4", "db"))],
            want: Err("service name \"db\" is already used by service s3; choose another name"),
        },
        Case {
            name: "cluster names are unique",
            batch: vec![create(cluster("c2", "default"))],
            want: Err(
                "cluster name \"default\" is already used by cluster c1; choose another name",
            ),
        },
        Case {
            name: "rename to a taken name",
            batch: vec![update(at(service("s2", "Web"), 1))],
            want: Err("service name \"Web\" is already used by service s1; choose another name"),
        },
        Case {
            name: "rename changing only case",
            batch: vec![update(at(service("s1", "WEB"), 1))],
            want: Ok(()),
        },
        Case {
            name: "a name freed earlier in the batch can be taken",
            batch: vec![
                update(at(service("s1", "frontend"), 1)),
                create(service("s3", "web")),
            ],
            want: Ok(()),
        },
        Case {
            name: "a deleted service's name can be taken",
            batch: vec![delete(Service, "s1"), create(service("s3", "web"))],
            want: Ok(()),
        },
        Case {
            name: "update a missing object",
            batch: vec![update(at(task("t9", "s1", 1), 1))],
            want: Err("task t9 not found"),
        },
        Case {
            name: "update with a stale version",
            batch: vec![update(at(task("t1", "s1", 1), 1))],
            want: Err(
                "update out of sequence: task t1 has version 2, update carried 1; re-read and retry",
            ),
        },
        Case {
            name: "update with a version from the future",
            batch: vec![update(at(node("n1"), 7))],
            want: Err(
                "update out of sequence: node n1 has version 1, update carried 7; re-read and retry",
            ),
        },
        Case {
            name: "create then update in one batch",
            batch: vec![
                create(task("t2", "s1", 2)),
                update(task_on("t2", "s1", 2, "n1")),
            ],
            want: Ok(()),
        },
        Case {
            name: "update twice in a batch carrying the version read",
            batch: vec![
                update(at(task_on("t1", "s1", 1, "n1"), 2)),
                update(at(task_on("t1", "s1", 1, "n2"), 2)),
            ],
            want: Ok(()),
        },
        Case {
            name: "a second update in a batch cannot carry the batch's index",
            batch: vec![
                update(at(task_on("t1", "s1", 1, "n1"), 2)),
                update(at(task_on("t1", "s1", 1, "n2"), 3)),
            ],
            want: Err(
                "update out of sequence: task t1 has version 2, update carried 3; re-read and retry",
            ),
        },
        Case {
            name: "delete a missing object",
            batch: vec![delete(Task, "t9")],
            want: Err("task t9 not found"),
        },
        Case {
            name: "update after delete in a batch",
            batch: vec![delete(Task, "t1"), update(at(task("t1", "s1", 1), 2))],
            want: Err("task t1 not found"),
        },
        Case {
            name: "delete then create again",
            batch: vec![delete(Task, "t1"), create(task("t1", "s1", 1))],
            want: Ok(()),
        },
        Case {
            name: "a late failure undoes the whole batch",
            batch: vec![
                create(task("t2", "s1", 2)),
                update(at(task_on("t1", "s1", 1, "n1"), 2)),
                delete(Service, "s1"),
                update(at(service("s2", "web"), 1)),
                create(node("n1")),
            ],
            want: Err("node n1 already exists"),
        },
    ]
}

fn build_result(store: &MemoryStore, actions: Vec<Action>) -> Result<Batch, StoreError> {
    store
        .build(|tx| {
            for action in actions {
                match action {
                    Action::Create(o) => tx.create(o)?,
                    Action::Update(o) => tx.update(o)?,
                    Action::Delete { kind, id } => tx.delete(kind, &id)?,
                }
            }
            Ok::<_, StoreError>(())
        })
        .map(|((), batch)| batch)
}

#[test]
fn apply_follows_the_rules_and_build_agrees() {
    for case in cases() {
        let store = setup();
        let mut watcher = store.watch();
        let before = store.snapshot();
        let got = store.apply(3, Batch::new(case.batch.clone()));
        let name = case.name;
        match (&got, case.want) {
            (Ok(()), Ok(())) => {
                assert_eq!(store.last_index(), 3, "{name}");
                match watcher.try_recv() {
                    Ok(Some(WatchItem::Changes(set))) => {
                        assert_eq!(set.index, 3, "{name}");
                        assert_eq!(
                            set.events.len(),
                            case.batch.len(),
                            "{name}: one event per action"
                        );
                    }
                    other => panic!("{name}: want a change set, got {other:?}"),
                }
            }
            (Err(e), Err(text)) => {
                assert_eq!(e.to_string(), text, "{name}");
                assert_eq!(
                    store.snapshot(),
                    before,
                    "{name}: a refused batch must change nothing"
                );
                assert_eq!(store.last_index(), 2, "{name}");
                assert_eq!(
                    watcher.try_recv(),
                    Ok(None),
                    "{name}: a refused batch publishes nothing"
                );
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
        store.view(|tx| must_be_consistent(tx));

        // The proposer's checks agree with apply's, and the batch it builds is the one given.
        let built = build_result(&setup(), case.batch.clone());
        match (built, got) {
            (Ok(batch), Ok(())) => assert_eq!(batch.actions.len(), case.batch.len(), "{name}"),
            (Err(b), Err(a)) => assert_eq!(b, a, "{name}: build and apply disagree"),
            (b, a) => panic!("{name}: build gave {b:?}, apply gave {a:?}"),
        }
    }
}

#[test]
fn version_conflict_names_the_object_and_what_to_do() {
    let e = StoreError::VersionConflict {
        kind: ObjectKind::Task,
        id: "3k2abc".into(),
        expected: 12,
        got: 9,
    };
    assert_eq!(
        e.to_string(),
        "update out of sequence: task 3k2abc has version 12, update carried 9; re-read and retry"
    );
    assert!(matches!(
        setup().apply(3, Batch::new(vec![update(at(task("t1", "s1", 1), 1))])),
        Err(StoreError::VersionConflict {
            kind: ObjectKind::Task,
            expected: 2,
            got: 1,
            ..
        })
    ));
}

#[test]
fn writes_stamp_the_index_as_version_and_keep_the_proposers_times() {
    let store = MemoryStore::new();
    let mut t = task("t1", "s1", 1);
    t.meta.version = 99;
    t.meta.created_at = stamp(5);
    t.meta.updated_at = stamp(6);
    let index = must_apply(&store, vec![create(t)]);
    let stored = must_task(&store, "t1");
    assert_eq!(
        (
            stored.meta.version,
            stored.meta.created_at,
            stored.meta.updated_at
        ),
        (index, stamp(5), stamp(6))
    );

    let mut t = (*stored).clone();
    t.meta.created_at = stamp(100);
    t.meta.updated_at = stamp(200);
    t.desired_state = TaskState::Shutdown;
    let index = must_apply(&store, vec![update(t)]);
    let stored = must_task(&store, "t1");
    assert_eq!(
        (
            stored.meta.version,
            stored.meta.created_at,
            stored.meta.updated_at
        ),
        (index, stamp(5), stamp(200)),
        "created_at is kept from the stored object"
    );
    assert_eq!(stored.desired_state, TaskState::Shutdown);
}

#[test]
fn indexes_must_increase_and_a_refused_batch_does_not_consume_one() {
    let store = MemoryStore::new();
    assert_eq!(
        store.apply(0, Batch::default()),
        Err(StoreError::IndexNotIncreasing {
            index: 0,
            last_index: 0
        })
    );
    store
        .apply(5, Batch::new(vec![create(node("n1"))]))
        .expect("apply at 5");
    assert_eq!(
        store.apply(5, Batch::new(vec![create(node("n2"))])).map_err(|e| e.to_string()),
        Err("batch at raft index 5 arrived after index 5 was applied; batches must be applied in log order".into())
    );
    assert!(
        store
            .apply(6, Batch::new(vec![create(node("n1"))]))
            .is_err()
    );
    assert_eq!(store.last_index(), 5);
    // An empty batch advances the index and publishes nothing.
    let mut watcher = store.watch();
    store.apply(7, Batch::default()).expect("empty batch");
    assert_eq!((store.last_index(), store.view(|tx| tx.index())), (7, 7));
    assert_eq!(watcher.try_recv(), Ok(None));
}

#[test]
fn batches_and_actions_round_trip_through_serde() {
    let batch = Batch::new(vec![
        create(task("t1", "s1", 1)),
        update(at(service("s1", "web"), 3)),
        create(node("n1")),
        create(cluster("c1", "default")),
        delete(ObjectKind::Task, "t0"),
    ]);
    let json = serde_json::to_string(&batch).expect("serialize");
    assert!(
        json.contains(r#""delete":{"kind":"task","id":"t0"}"#),
        "{json}"
    );
    let back: Batch = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, batch);
}
