//! The secret and config tables: names unique per kind (a secret and a config may share one),
//! deletes free the name, and both survive a snapshot round trip with their data.

use swarm_store::{MemoryStore, ObjectKind, StoreError, StoreRead, StoreSnapshot};
use swarm_types::{Blob, Config, DataSpec, Secret};

use crate::support::*;

fn spec(name: &str, data: &[u8]) -> DataSpec {
    DataSpec {
        annotations: swarm_types::Annotations {
            name: name.into(),
            labels: Default::default(),
        },
        data: Blob::from(data.to_vec()),
    }
}

fn secret(id: &str, name: &str, data: &[u8]) -> Secret {
    Secret {
        id: id.into(),
        meta: Default::default(),
        spec: spec(name, data),
    }
}

fn config(id: &str, name: &str, data: &[u8]) -> Config {
    Config {
        id: id.into(),
        meta: Default::default(),
        spec: spec(name, data),
    }
}

#[test]
fn names_are_unique_per_kind_and_freed_by_deletes() {
    let store = MemoryStore::new();
    must_apply(
        &store,
        vec![
            create(secret("s1", "tls-key", b"k")),
            create(config("c1", "tls-key", b"c")),
        ],
    );
    let refused = store.apply(
        2,
        swarm_store::Batch::new(vec![create(secret("s2", "TLS-KEY", b"k2"))]),
    );
    assert!(
        matches!(refused, Err(StoreError::NameConflict { .. })),
        "{refused:?}"
    );
    assert!(store.view(|tx| tx.secret("s2").is_none()), "all or nothing");
    must_apply(
        &store,
        vec![
            delete(ObjectKind::Secret, "s1"),
            create(secret("s2", "TLS-KEY", b"k2")),
        ],
    );
    let found = store.view(|tx| tx.secret_by_name("tls-key").map(|s| s.id.clone()));
    assert_eq!(found.as_deref(), Some("s2"));
    let config_data = store.view(|tx| tx.config("c1").map(|c| c.spec.data.to_vec()));
    assert_eq!(config_data.as_deref(), Some(&b"c"[..]));
}

#[test]
fn secrets_and_configs_survive_a_snapshot_round_trip() {
    let store = MemoryStore::new();
    must_apply(
        &store,
        vec![
            create(secret("s1", "pw", b"hunter2")),
            create(config("c1", "conf", b"x=1")),
        ],
    );
    let snapshot = store.snapshot();
    let json = must_snapshot_json(&snapshot);
    let decoded: StoreSnapshot = serde_json::from_str(&json).expect("decode");
    let target = MemoryStore::new();
    target.restore(decoded);
    assert_eq!(target.snapshot(), snapshot);
    let names: Vec<String> = target.view(|tx| {
        tx.secrets()
            .map(|s| s.spec.annotations.name.clone())
            .chain(tx.configs().map(|c| c.spec.annotations.name.clone()))
            .collect()
    });
    assert_eq!(names, ["pw", "conf"]);
    // Snapshots written before secrets existed still restore.
    let old: StoreSnapshot = serde_json::from_str(r#"{"index":3}"#).expect("old snapshot");
    assert!(old.secrets.is_empty() && old.configs.is_empty());
}
