//! The plugin table: unique names (ignoring case), the name index through every write and
//! rollback, components kept across updates that leave them out, snapshots and change events.

use swarm_store::{
    Batch, Event, MemoryStore, ObjectKind, StoreError, StoreRead, StoreSnapshot, WatchItem,
};
use swarm_types::ComponentBytes;

use crate::support::*;

fn by_name(store: &MemoryStore, name: &str) -> Option<String> {
    store.view(|tx| tx.plugin_by_name(name).map(|p| p.id.clone()))
}

#[test]
fn plugin_names_are_unique_ignoring_case_and_follow_renames_and_deletes() {
    let store = MemoryStore::new();
    let v = must_apply(
        &store,
        vec![
            create(plugin("p1", "runner", b"a")),
            create(plugin("p2", "binpack", b"b")),
        ],
    );
    assert_eq!(by_name(&store, "RUNNER").as_deref(), Some("p1"));
    let refused = store.apply(
        v + 1,
        Batch::new(vec![create(plugin("p3", "Runner", b"c"))]),
    );
    assert_eq!(
        refused,
        Err(StoreError::NameConflict {
            kind: ObjectKind::Plugin,
            name: "Runner".into(),
            existing_id: "p1".into(),
        })
    );
    // The same name in a write transaction is refused before anything is proposed.
    let built = store.build(|tx| tx.create(plugin("p3", "runner", b"c")));
    assert!(
        matches!(built, Err(StoreError::NameConflict { .. })),
        "{built:?}"
    );

    must_apply(&store, vec![update(at(plugin("p1", "runner-2", b"a"), v))]);
    assert_eq!(by_name(&store, "runner"), None);
    assert_eq!(by_name(&store, "runner-2").as_deref(), Some("p1"));
    must_apply(&store, vec![delete(ObjectKind::Plugin, "p2")]);
    assert_eq!(by_name(&store, "binpack"), None);
    // The freed name can be taken again.
    must_apply(&store, vec![create(plugin("p4", "binpack", b"d"))]);
    store.view(|tx| {
        assert_eq!(ids(tx.plugins()), ["p1", "p4"]);
        assert_eq!(tx.plugin_count(), 2);
        must_be_consistent(tx);
    });
}

#[test]
fn a_refused_batch_leaves_the_plugin_index_as_it_was() {
    let store = MemoryStore::new();
    let v = must_apply(&store, vec![create(plugin("p1", "runner", b"a"))]);
    let refused = store.apply(
        v + 1,
        Batch::new(vec![
            update(at(plugin("p1", "other", b"a"), v)),
            create(plugin("p2", "runner", b"b")),
            delete(ObjectKind::Plugin, "missing"),
        ]),
    );
    assert!(refused.is_err());
    assert_eq!(by_name(&store, "runner").as_deref(), Some("p1"));
    assert_eq!(by_name(&store, "other"), None);
    store.view(|tx| {
        assert_eq!(tx.plugin_count(), 1);
        must_be_consistent(tx);
    });
}

#[test]
fn an_update_without_the_component_keeps_the_stored_bytes() {
    let store = MemoryStore::new();
    let bytes = vec![7u8; 4096];
    let v = must_apply(&store, vec![create(plugin("p1", "runner", &bytes))]);

    // A status change sent without the bytes (as the manager sends it).
    let (_, batch) = store
        .build(|tx| {
            let mut p = (**tx.plugin("p1").expect("plugin")).clone();
            p.component = ComponentBytes::default();
            p.status.failures = 3;
            tx.update(p)?;
            // The transaction already sees the bytes kept.
            assert_eq!(tx.plugin("p1").expect("plugin").component.len(), 4096);
            Ok::<_, StoreError>(())
        })
        .expect("build");
    let json = serde_json::to_string(&batch).expect("encode");
    assert!(
        json.len() < 1024,
        "the batch must not carry the component: {} bytes",
        json.len()
    );
    let v2 = must_apply(&store, batch.actions);
    let stored = store.view(|tx| tx.plugin("p1").cloned()).expect("plugin");
    assert_eq!((stored.meta.version, stored.status.failures), (v2, 3));
    assert_eq!(stored.component.as_bytes(), &bytes[..]);
    assert!(v2 > v);

    // Another digest without bytes is stored as sent: nothing is taken from a different component.
    let mut other = plugin("p1", "runner", b"z");
    other.component = ComponentBytes::default();
    must_apply(&store, vec![update(at(other, v2))]);
    let stored = store.view(|tx| tx.plugin("p1").cloned()).expect("plugin");
    assert!(stored.component.is_empty());
}

#[test]
fn plugins_survive_a_snapshot_round_trip_with_their_bytes() {
    let store = MemoryStore::new();
    must_apply(
        &store,
        vec![
            create(plugin("p1", "runner", &[0, 1, 2, 255])),
            create(cluster("c1", "default")),
        ],
    );
    let snapshot = store.snapshot();
    let json = must_snapshot_json(&snapshot);
    assert!(json.contains("\"component\":\"AAEC/w==\""), "{json}");
    let decoded: StoreSnapshot = serde_json::from_str(&json).expect("decode");
    let target = MemoryStore::new();
    target.restore(decoded);
    assert_eq!(target.snapshot(), snapshot);
    assert_eq!(by_name(&target, "runner").as_deref(), Some("p1"));
    target.view(|tx| must_be_consistent(tx));
    // Snapshots written before plugins existed still restore.
    let old: StoreSnapshot = serde_json::from_str(r#"{"index":3}"#).expect("old snapshot");
    assert!(old.plugins.is_empty());
}

#[test]
fn plugin_changes_are_published() {
    let store = MemoryStore::new();
    let mut watcher = store.watch();
    let v = must_apply(&store, vec![create(plugin("p1", "runner", b"a"))]);
    must_apply(&store, vec![delete(ObjectKind::Plugin, "p1")]);
    let mut seen = Vec::new();
    while let Ok(Some(WatchItem::Changes(set))) = watcher.try_recv() {
        for change in set.plugins() {
            seen.push((
                set.index,
                change.before().is_some(),
                change.after().is_some(),
            ));
        }
        assert!(set.events.iter().all(|e| matches!(e, Event::Plugin(_))));
        assert!(set.events.iter().all(|e| e.kind() == ObjectKind::Plugin));
    }
    assert_eq!(seen, [(v, false, true), (v + 1, true, false)]);
}
