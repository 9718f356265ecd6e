//! What a batch carries: stored objects, their kinds, and the actions of one transaction.

use std::fmt;

use serde::{Deserialize, Serialize};
use swarm_types::{Cluster, Config, Meta, Node, Plugin, Secret, Service, Task};

/// The kind of a stored object; each kind is one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Node,
    Service,
    Task,
    Cluster,
    Plugin,
    Secret,
    Config,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 7] = [
        ObjectKind::Node,
        ObjectKind::Service,
        ObjectKind::Task,
        ObjectKind::Cluster,
        ObjectKind::Plugin,
        ObjectKind::Secret,
        ObjectKind::Config,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Node => "node",
            ObjectKind::Service => "service",
            ObjectKind::Task => "task",
            ObjectKind::Cluster => "cluster",
            ObjectKind::Plugin => "plugin",
            ObjectKind::Secret => "secret",
            ObjectKind::Config => "config",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stored object of any kind, as it travels in a [`Batch`] (and so in the raft log).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Object {
    Node(Node),
    Service(Service),
    Task(Task),
    Cluster(Cluster),
    Plugin(Plugin),
    Secret(Secret),
    Config(Config),
}

impl Object {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::Node(_) => ObjectKind::Node,
            Object::Service(_) => ObjectKind::Service,
            Object::Task(_) => ObjectKind::Task,
            Object::Cluster(_) => ObjectKind::Cluster,
            Object::Plugin(_) => ObjectKind::Plugin,
            Object::Secret(_) => ObjectKind::Secret,
            Object::Config(_) => ObjectKind::Config,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Object::Node(o) => &o.id,
            Object::Service(o) => &o.id,
            Object::Task(o) => &o.id,
            Object::Cluster(o) => &o.id,
            Object::Plugin(o) => &o.id,
            Object::Secret(o) => &o.id,
            Object::Config(o) => &o.id,
        }
    }

    pub fn meta(&self) -> &Meta {
        match self {
            Object::Node(o) => &o.meta,
            Object::Service(o) => &o.meta,
            Object::Task(o) => &o.meta,
            Object::Cluster(o) => &o.meta,
            Object::Plugin(o) => &o.meta,
            Object::Secret(o) => &o.meta,
            Object::Config(o) => &o.meta,
        }
    }
}

impl From<Node> for Object {
    fn from(o: Node) -> Self {
        Object::Node(o)
    }
}

impl From<Service> for Object {
    fn from(o: Service) -> Self {
        Object::Service(o)
    }
}

impl From<Task> for Object {
    fn from(o: Task) -> Self {
        Object::Task(o)
    }
}

impl From<Cluster> for Object {
    fn from(o: Cluster) -> Self {
        Object::Cluster(o)
    }
}

impl From<Plugin> for Object {
    fn from(o: Plugin) -> Self {
        Object::Plugin(o)
    }
}

impl From<Secret> for Object {
    fn from(o: Secret) -> Self {
        Object::Secret(o)
    }
}

impl From<Config> for Object {
    fn from(o: Config) -> Self {
        Object::Config(o)
    }
}

/// One write of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Insert a new object; its id (and, for services, clusters and plugins, its name) must be
    /// free.
    Create(Object),
    /// Replace an object; it must exist and the object must carry the version it was read at.
    /// A plugin carrying no component keeps the stored one (same digest).
    Update(Object),
    /// Remove an object; it must exist.
    Delete { kind: ObjectKind, id: String },
}

impl Action {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Action::Create(o) | Action::Update(o) => o.kind(),
            Action::Delete { kind, .. } => *kind,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Action::Create(o) | Action::Update(o) => o.id(),
            Action::Delete { id, .. } => id,
        }
    }
}

/// The actions of one transaction: one raft proposal, applied all or nothing, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub actions: Vec<Action>,
}

impl Batch {
    pub fn new(actions: Vec<Action>) -> Self {
        Self { actions }
    }

    pub fn len(&self) -> usize {
        self.actions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}
