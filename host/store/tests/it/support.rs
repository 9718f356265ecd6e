//! Fixtures and checks shared by the store tests: object builders, `must_*` helpers and an
//! index consistency check that recomputes every index from the tables.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use swarm_store::{Action, Batch, MemoryStore, Object, ObjectKind, StoreRead, StoreSnapshot};
use swarm_types::{
    Annotations, Cluster, ClusterSpec, ComponentBytes, Meta, Node, Plugin, PluginKind, PluginSpec,
    ProcessSpec, Runtime, Service, ServiceMode, ServiceSpec, Task, TaskSpec, TaskState, Timestamp,
};

pub fn task_spec() -> TaskSpec {
    TaskSpec {
        runtime: Runtime::Process(ProcessSpec {
            command: "sleep".into(),
            args: vec!["1000".into()],
            ..Default::default()
        }),
        resources: Default::default(),
        restart: Default::default(),
        placement: Default::default(),
        force_update: 0,
        secrets: vec![],
        configs: vec![],
    }
}

pub fn task(id: &str, service_id: &str, slot: u64) -> Task {
    Task {
        id: id.into(),
        meta: Meta::default(),
        annotations: Annotations {
            name: format!("{service_id}.{slot}"),
            labels: Default::default(),
        },
        service_id: service_id.into(),
        slot,
        node_id: String::new(),
        spec: task_spec(),
        spec_version: 1,
        executor: String::new(),
        desired_state: TaskState::Running,
        status: Default::default(),
    }
}

pub fn task_on(id: &str, service_id: &str, slot: u64, node_id: &str) -> Task {
    Task {
        node_id: node_id.into(),
        ..task(id, service_id, slot)
    }
}

pub fn service(id: &str, name: &str) -> Service {
    Service {
        id: id.into(),
        meta: Meta::default(),
        spec: ServiceSpec {
            annotations: Annotations {
                name: name.into(),
                labels: Default::default(),
            },
            task: task_spec(),
            mode: ServiceMode::Replicated { replicas: 1 },
            executor: String::new(),
        },
        spec_version: 1,
    }
}

pub fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        ..Default::default()
    }
}

pub fn cluster(id: &str, name: &str) -> Cluster {
    let mut spec = ClusterSpec::with_defaults();
    spec.annotations.name = name.into();
    Cluster {
        id: id.into(),
        meta: Meta::default(),
        spec,
        root_ca: Default::default(),
    }
}

/// An executor plugin whose component is `bytes` (the digest is made up from the first byte).
pub fn plugin(id: &str, name: &str, bytes: &[u8]) -> Plugin {
    Plugin {
        id: id.into(),
        meta: Meta::default(),
        spec: PluginSpec {
            annotations: Annotations {
                name: name.into(),
                labels: Default::default(),
            },
            kind: PluginKind::Executor,
            capabilities: vec!["process".into()],
        },
        digest: format!("sha256:{:064x}", bytes.first().copied().unwrap_or(0)),
        size_bytes: bytes.len() as u64,
        component: ComponentBytes::new(bytes),
        ..Default::default()
    }
}

/// `object` as read back at `version` (what an update built from a read carries).
pub fn at<T: Versioned>(mut object: T, version: u64) -> T {
    object.meta_mut().version = version;
    object
}

pub trait Versioned {
    fn meta_mut(&mut self) -> &mut Meta;
}

macro_rules! versioned {
    ($($t:ty),*) => {$(
        impl Versioned for $t {
            fn meta_mut(&mut self) -> &mut Meta {
                &mut self.meta
            }
        }
    )*};
}
versioned!(Node, Service, Task, Cluster, Plugin);

pub fn stamp(nanos: i64) -> Timestamp {
    Timestamp::from_unix_nanos(nanos)
}

pub fn create(o: impl Into<Object>) -> Action {
    Action::Create(o.into())
}

pub fn update(o: impl Into<Object>) -> Action {
    Action::Update(o.into())
}

pub fn delete(kind: ObjectKind, id: &str) -> Action {
    Action::Delete {
        kind,
        id: id.into(),
    }
}

/// Apply `actions` at the next index; panics on refusal. Returns the index used.
pub fn must_apply(store: &MemoryStore, actions: Vec<Action>) -> u64 {
    let index = store.last_index() + 1;
    store
        .apply(index, Batch::new(actions))
        .unwrap_or_else(|e| panic!("apply at {index}: {e}"));
    index
}

pub fn must_task(store: &MemoryStore, id: &str) -> Arc<Task> {
    store
        .view(|tx| tx.task(id).cloned())
        .unwrap_or_else(|| panic!("task {id} not found"))
}

pub fn must_service(store: &MemoryStore, id: &str) -> Arc<Service> {
    store
        .view(|tx| tx.service(id).cloned())
        .unwrap_or_else(|| panic!("service {id} not found"))
}

pub fn ids<'a, T: 'a + HasId>(items: impl Iterator<Item = &'a Arc<T>>) -> Vec<String> {
    items.map(|o| o.id().to_string()).collect()
}

pub trait HasId {
    fn id(&self) -> &str;
}

macro_rules! has_id {
    ($($t:ty),*) => {$(
        impl HasId for $t {
            fn id(&self) -> &str {
                &self.id
            }
        }
    )*};
}
has_id!(Node, Service, Task, Cluster, Plugin);

/// Every index query agrees with a brute-force scan of the tables, and counts agree with
/// listings. Works on read and write transactions alike.
pub fn must_be_consistent(tx: &impl StoreRead) {
    let tasks: Vec<Arc<Task>> = tx.tasks().cloned().collect();
    assert_eq!(tasks.len(), tx.task_count(), "task_count");
    assert_eq!(tx.nodes().count(), tx.node_count(), "node_count");
    assert_eq!(tx.services().count(), tx.service_count(), "service_count");
    assert_eq!(tx.clusters().count(), tx.cluster_count(), "cluster_count");
    assert_eq!(tx.plugins().count(), tx.plugin_count(), "plugin_count");
    let sorted = |v: Vec<String>| {
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, v, "listing not in id order");
        v
    };
    sorted(ids(tx.tasks()));
    sorted(ids(tx.nodes()));
    sorted(ids(tx.services()));
    sorted(ids(tx.plugins()));

    let mut by_service: BTreeMap<&str, Vec<(u64, &str)>> = BTreeMap::new();
    let mut by_node: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut by_desired: BTreeMap<TaskState, Vec<&str>> = BTreeMap::new();
    for t in &tasks {
        by_service
            .entry(&t.service_id)
            .or_default()
            .push((t.slot, &t.id));
        if !t.node_id.is_empty() {
            by_node.entry(&t.node_id).or_default().push(&t.id);
        }
        by_desired.entry(t.desired_state).or_default().push(&t.id);
        assert_eq!(tx.task(&t.id).map(|x| &x.id), Some(&t.id));
    }
    for (service_id, mut want) in by_service {
        want.sort();
        let got: Vec<(u64, String)> = tx
            .tasks_by_service(service_id)
            .map(|t| (t.slot, t.id.clone()))
            .collect();
        let want_owned: Vec<(u64, String)> =
            want.iter().map(|(s, i)| (*s, i.to_string())).collect();
        assert_eq!(got, want_owned, "tasks_by_service({service_id})");
        let slots: BTreeSet<u64> = want.iter().map(|(s, _)| *s).collect();
        for slot in slots {
            let want_slot: Vec<String> = want
                .iter()
                .filter(|(s, _)| *s == slot)
                .map(|(_, i)| i.to_string())
                .collect();
            assert_eq!(
                ids(tx.tasks_by_slot(service_id, slot)),
                want_slot,
                "tasks_by_slot({service_id}, {slot})"
            );
        }
    }
    for (node_id, want) in by_node {
        assert_eq!(
            ids(tx.tasks_by_node(node_id)),
            want,
            "tasks_by_node({node_id})"
        );
    }
    for state in TaskState::ALL {
        let want: Vec<&str> = by_desired.get(&state).cloned().unwrap_or_default();
        assert_eq!(
            ids(tx.tasks_by_desired_state(state)),
            want,
            "tasks_by_desired_state({state})"
        );
    }
    assert_eq!(
        tx.tasks_by_node("").count(),
        0,
        "unassigned tasks are in no node's listing"
    );
    for s in tx.services() {
        assert_eq!(
            tx.service_by_name(&s.spec.annotations.name).map(|x| &x.id),
            Some(&s.id)
        );
        assert_eq!(
            tx.service_by_name(&s.spec.annotations.name.to_ascii_uppercase())
                .map(|x| &x.id),
            Some(&s.id)
        );
    }
    for c in tx.clusters() {
        assert_eq!(
            tx.cluster_by_name(&c.spec.annotations.name).map(|x| &x.id),
            Some(&c.id)
        );
    }
    for p in tx.plugins() {
        assert_eq!(tx.plugin(&p.id).map(|x| &x.id), Some(&p.id));
        assert_eq!(
            tx.plugin_by_name(&p.spec.annotations.name.to_ascii_uppercase())
                .map(|x| &x.id),
            Some(&p.id)
        );
    }
}

pub fn must_snapshot_json(snapshot: &StoreSnapshot) -> String {
    serde_json::to_string(snapshot).expect("serialize snapshot")
}
