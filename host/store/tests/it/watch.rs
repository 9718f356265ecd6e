//! The watch queue: change sets in order with the right old and new values, lag and reset.

use std::sync::Arc;

use swarm_store::{
    Change, Event, MemoryStore, ObjectKind, StoreRead, WatchError, WatchItem, Watcher,
};
use swarm_types::Task;

use crate::support::*;

fn must_changes(watcher: &mut Watcher) -> Arc<swarm_store::ChangeSet> {
    match watcher.try_recv() {
        Ok(Some(WatchItem::Changes(set))) => set,
        other => panic!("want a change set, got {other:?}"),
    }
}

#[test]
fn events_arrive_in_order_with_old_and_new() {
    let store = MemoryStore::new();
    let mut watcher = store.watch();
    let i1 = must_apply(
        &store,
        vec![create(task_on("t1", "s1", 1, "a")), create(node("n1"))],
    );
    let i2 = must_apply(&store, vec![update(at(task_on("t1", "s1", 1, "b"), i1))]);
    let i3 = must_apply(
        &store,
        vec![
            delete(ObjectKind::Task, "t1"),
            delete(ObjectKind::Node, "n1"),
        ],
    );

    let set = must_changes(&mut watcher);
    assert_eq!(set.index, i1);
    match &set.events[..] {
        [
            Event::Task(Change::Created(t)),
            Event::Node(Change::Created(n)),
        ] => {
            assert_eq!(
                (t.id.as_str(), t.meta.version, n.id.as_str()),
                ("t1", i1, "n1")
            );
        }
        other => panic!("{other:?}"),
    }

    let set = must_changes(&mut watcher);
    assert_eq!(set.index, i2);
    let changes: Vec<&Change<Task>> = set.tasks().collect();
    let updated = match changes[..] {
        [Change::Updated { old, new }] => {
            assert_eq!((old.node_id.as_str(), old.meta.version), ("a", i1));
            assert_eq!((new.node_id.as_str(), new.meta.version), ("b", i2));
            Arc::clone(new)
        }
        ref other => panic!("{other:?}"),
    };

    let set = must_changes(&mut watcher);
    assert_eq!(set.index, i3);
    assert_eq!(
        set.events
            .iter()
            .map(|e| (e.kind(), e.id()))
            .collect::<Vec<_>>(),
        [(ObjectKind::Task, "t1"), (ObjectKind::Node, "n1")]
    );
    match &set.events[0] {
        Event::Task(Change::Deleted(old)) => {
            assert_eq!((old.node_id.as_str(), old.meta.version), ("b", i2));
            // Events hold the stored objects themselves, not copies.
            assert!(Arc::ptr_eq(old, &updated));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(watcher.try_recv(), Ok(None));
}

#[test]
fn two_writes_of_one_object_in_a_batch_give_two_events() {
    let store = MemoryStore::new();
    let mut watcher = store.watch();
    let i = must_apply(
        &store,
        vec![
            create(task("t1", "s1", 1)),
            update(task_on("t1", "s1", 1, "a")),
        ],
    );
    let set = must_changes(&mut watcher);
    match &set.events[..] {
        [
            Event::Task(Change::Created(c)),
            Event::Task(Change::Updated { old, new }),
        ] => {
            assert!(Arc::ptr_eq(c, old));
            assert_eq!((new.node_id.as_str(), new.meta.version), ("a", i));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lagging_watcher_is_told_and_can_catch_up() {
    let store = MemoryStore::with_watch_capacity(2);
    let mut slow = store.watch();
    for n in 0..5 {
        must_apply(&store, vec![create(node(&format!("n{n}")))]);
    }
    assert_eq!(slow.try_recv(), Err(WatchError::Lagged { missed: 3 }));
    // It then continues from the oldest change set still queued; one that re-read the store
    // ignores change sets at or below the index it read.
    let read_at = store.view(|tx| tx.index());
    assert_eq!(must_changes(&mut slow).index, 4);
    assert_eq!(must_changes(&mut slow).index, 5);
    assert_eq!(read_at, 5);
    assert_eq!(slow.try_recv(), Ok(None));
}

#[test]
fn restore_resets_watchers() {
    let store = MemoryStore::new();
    must_apply(&store, vec![create(node("n1"))]);
    let snapshot = store.snapshot();
    let mut watcher = store.watch();
    must_apply(&store, vec![create(node("n2"))]);
    store.restore(snapshot);
    assert_eq!(must_changes(&mut watcher).index, 2);
    assert_eq!(watcher.try_recv(), Ok(Some(WatchItem::Reset { index: 1 })));
    assert_eq!(store.last_index(), 1);
}

#[test]
fn view_and_watch_cuts_exactly_between_read_and_changes() {
    let store = MemoryStore::new();
    must_apply(&store, vec![create(node("n1"))]);
    let (seen, mut watcher) = store.view_and_watch(|tx| (tx.index(), ids(tx.nodes())));
    assert_eq!(seen, (1, vec!["n1".to_string()]));
    must_apply(&store, vec![create(node("n2"))]);
    assert_eq!(must_changes(&mut watcher).index, 2);
    assert_eq!(watcher.try_recv(), Ok(None));
}

#[test]
fn a_dropped_store_closes_its_watchers() {
    let store = MemoryStore::new();
    let mut watcher = store.watch();
    drop(store);
    assert_eq!(watcher.try_recv(), Err(WatchError::Closed));
}

#[tokio::test]
async fn recv_waits_for_the_next_change_set() {
    let store = Arc::new(MemoryStore::new());
    let mut watcher = store.watch();
    let writer = {
        let store = Arc::clone(&store);
        tokio::task::spawn_blocking(move || must_apply(&store, vec![create(node("n1"))]))
    };
    match watcher.recv().await {
        Ok(WatchItem::Changes(set)) => assert_eq!(set.index, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(writer.await.expect("writer"), 1);
}

#[test]
fn the_store_is_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<MemoryStore>();
    send_sync::<swarm_store::ChangeSet>();
    send::<Watcher>();
}
