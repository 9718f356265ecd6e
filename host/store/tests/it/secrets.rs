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

#[test]
fn services_keep_what_they_reference() {
    let store = MemoryStore::new();
    must_apply(
        &store,
        vec![
            create(secret("s1", "pw", b"k")),
            create(config("c1", "conf", b"c")),
        ],
    );
    let mut web = service("svc1", "web");
    web.spec.task.secrets = vec![swarm_types::FileRef {
        id: "s1".into(),
        name: "pw".into(),
        target: String::new(),
    }];
    web.spec.task.configs = vec![swarm_types::FileRef {
        id: "c1".into(),
        name: "conf".into(),
        target: String::new(),
    }];
    // Removing the secret in the same batch that creates its user is refused as a whole.
    let refused = store.apply(
        2,
        swarm_store::Batch::new(vec![delete(ObjectKind::Secret, "s1"), create(web.clone())]),
    );
    assert!(
        matches!(&refused, Err(StoreError::MissingReference { kind: ObjectKind::Secret, id, .. }) if id == "s1"),
        "{refused:?}"
    );
    must_apply(&store, vec![create(web.clone())]);
    for kind in [ObjectKind::Secret, ObjectKind::Config] {
        let id = if kind == ObjectKind::Secret {
            "s1"
        } else {
            "c1"
        };
        let refused = store.apply(
            store.last_index() + 1,
            swarm_store::Batch::new(vec![delete(kind, id)]),
        );
        let message = refused.expect_err("in use").to_string();
        assert!(message.contains("in use by service \"web\""), "{message}");
    }
    // Once the service is gone, so may they be.
    must_apply(
        &store,
        vec![
            delete(ObjectKind::Service, "svc1"),
            delete(ObjectKind::Secret, "s1"),
            delete(ObjectKind::Config, "c1"),
        ],
    );
    assert!(store.view(|tx| tx.secrets().next().is_none() && tx.configs().next().is_none()));
}
