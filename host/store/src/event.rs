//! Change events: what one applied batch did, object by object, with the old and new values.

use std::sync::Arc;

use swarm_types::{Cluster, Config, Node, Plugin, Secret, Service, Task};

use crate::object::ObjectKind;

/// One object's change. Objects are the stored `Arc`s, so events cost no copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change<T> {
    Created(Arc<T>),
    Updated { old: Arc<T>, new: Arc<T> },
    Deleted(Arc<T>),
}

impl<T> Change<T> {
    /// The value before the change (`None` for a creation).
    pub fn before(&self) -> Option<&Arc<T>> {
        match self {
            Change::Created(_) => None,
            Change::Updated { old, .. } | Change::Deleted(old) => Some(old),
        }
    }

    /// The value after the change (`None` for a deletion).
    pub fn after(&self) -> Option<&Arc<T>> {
        match self {
            Change::Created(new) | Change::Updated { new, .. } => Some(new),
            Change::Deleted(_) => None,
        }
    }

    /// The newest value: the new one, or the deleted one for a deletion.
    pub fn latest(&self) -> &Arc<T> {
        match self {
            Change::Created(new) | Change::Updated { new, .. } => new,
            Change::Deleted(old) => old,
        }
    }
}

/// One change in a [`ChangeSet`], typed by kind so consumers can match on what they care
/// about: `Event::Task(Change::Updated { old, new })`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Node(Change<Node>),
    Service(Change<Service>),
    Task(Change<Task>),
    Cluster(Change<Cluster>),
    Plugin(Change<Plugin>),
    Secret(Change<Secret>),
    Config(Change<Config>),
}

impl Event {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Event::Node(_) => ObjectKind::Node,
            Event::Service(_) => ObjectKind::Service,
            Event::Task(_) => ObjectKind::Task,
            Event::Cluster(_) => ObjectKind::Cluster,
            Event::Plugin(_) => ObjectKind::Plugin,
            Event::Secret(_) => ObjectKind::Secret,
            Event::Config(_) => ObjectKind::Config,
        }
    }

    /// The id of the changed object.
    pub fn id(&self) -> &str {
        match self {
            Event::Node(c) => &c.latest().id,
            Event::Service(c) => &c.latest().id,
            Event::Task(c) => &c.latest().id,
            Event::Cluster(c) => &c.latest().id,
            Event::Plugin(c) => &c.latest().id,
            Event::Secret(c) => &c.latest().id,
            Event::Config(c) => &c.latest().id,
        }
    }
}

/// Everything one batch changed, in the order of its actions. Published once per applied batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeSet {
    /// The raft index the batch was applied at (the new version of every object it wrote).
    pub index: u64,
    pub events: Vec<Event>,
}

impl ChangeSet {
    pub fn nodes(&self) -> impl Iterator<Item = &Change<Node>> {
        self.events.iter().filter_map(|e| match e {
            Event::Node(c) => Some(c),
            _ => None,
        })
    }

    pub fn services(&self) -> impl Iterator<Item = &Change<Service>> {
        self.events.iter().filter_map(|e| match e {
            Event::Service(c) => Some(c),
            _ => None,
        })
    }

    pub fn tasks(&self) -> impl Iterator<Item = &Change<Task>> {
        self.events.iter().filter_map(|e| match e {
            Event::Task(c) => Some(c),
            _ => None,
        })
    }

    pub fn clusters(&self) -> impl Iterator<Item = &Change<Cluster>> {
        self.events.iter().filter_map(|e| match e {
            Event::Cluster(c) => Some(c),
            _ => None,
        })
    }

    pub fn plugins(&self) -> impl Iterator<Item = &Change<Plugin>> {
        self.events.iter().filter_map(|e| match e {
            Event::Plugin(c) => Some(c),
            _ => None,
        })
    }

    pub fn secrets(&self) -> impl Iterator<Item = &Change<Secret>> {
        self.events.iter().filter_map(|e| match e {
            Event::Secret(c) => Some(c),
            _ => None,
        })
    }

    pub fn configs(&self) -> impl Iterator<Item = &Change<Config>> {
        self.events.iter().filter_map(|e| match e {
            Event::Config(c) => Some(c),
            _ => None,
        })
    }
}
