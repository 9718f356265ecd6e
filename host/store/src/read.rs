//! Reads: the [`StoreRead`] queries, shared by read transactions ([`ReadTx`]) and write
//! transactions, and the consistent snapshot read [`ReadTx`].

use std::collections::BTreeSet;
use std::sync::Arc;

use swarm_types::{
    Cluster, Config, DEFAULT_CLUSTER_NAME, Node, Plugin, Secret, Service, Task, TaskState,
};

use crate::table::{SortedId, Stored, Table, Tables};

mod sealed {
    pub trait Sealed {}
}

/// Queries over one consistent state of the store. Listings come out in a deterministic order:
/// by id, except per-service task listings, which are ordered by `(slot, id)`.
///
/// Implemented by [`ReadTx`] and [`WriteTx`](crate::WriteTx) (which sees its own writes);
/// `use swarm_store::StoreRead as _;` to call these methods.
pub trait StoreRead: sealed::Sealed {
    /// The raft index of the last batch applied to the state this reads.
    fn index(&self) -> u64;

    fn node(&self, id: &str) -> Option<&Arc<Node>>;
    fn nodes(&self) -> impl Iterator<Item = &Arc<Node>>;
    fn node_count(&self) -> usize;

    fn service(&self, id: &str) -> Option<&Arc<Service>>;
    /// The service with this name, compared ignoring ASCII case.
    fn service_by_name(&self, name: &str) -> Option<&Arc<Service>>;
    fn services(&self) -> impl Iterator<Item = &Arc<Service>>;
    fn service_count(&self) -> usize;

    fn task(&self, id: &str) -> Option<&Arc<Task>>;
    fn tasks(&self) -> impl Iterator<Item = &Arc<Task>>;
    fn task_count(&self) -> usize;
    /// One service's tasks, ordered by slot then id.
    fn tasks_by_service(&self, service_id: &str) -> impl Iterator<Item = &Arc<Task>>;
    /// Tasks assigned to a node. Unassigned tasks (empty `node_id`) are in no node's listing.
    fn tasks_by_node(&self, node_id: &str) -> impl Iterator<Item = &Arc<Task>>;
    /// The tasks (current and old) of one replica slot of a service.
    fn tasks_by_slot(&self, service_id: &str, slot: u64) -> impl Iterator<Item = &Arc<Task>>;
    fn tasks_by_desired_state(&self, state: TaskState) -> impl Iterator<Item = &Arc<Task>>;

    /// The cluster named with [`DEFAULT_CLUSTER_NAME`], or else the first cluster by id.
    fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster_by_name(DEFAULT_CLUSTER_NAME)
            .or_else(|| self.clusters().next())
    }
    fn cluster_by_name(&self, name: &str) -> Option<&Arc<Cluster>>;
    fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>>;
    fn cluster_count(&self) -> usize;

    fn plugin(&self, id: &str) -> Option<&Arc<Plugin>>;
    /// The plugin with this name, compared ignoring ASCII case.
    fn plugin_by_name(&self, name: &str) -> Option<&Arc<Plugin>>;
    fn plugins(&self) -> impl Iterator<Item = &Arc<Plugin>>;
    fn plugin_count(&self) -> usize;

    fn secret(&self, id: &str) -> Option<&Arc<Secret>>;
    /// The secret with this name, compared ignoring ASCII case.
    fn secret_by_name(&self, name: &str) -> Option<&Arc<Secret>>;
    fn secrets(&self) -> impl Iterator<Item = &Arc<Secret>>;

    fn config(&self, id: &str) -> Option<&Arc<Config>>;
    /// The config with this name, compared ignoring ASCII case.
    fn config_by_name(&self, name: &str) -> Option<&Arc<Config>>;
    fn configs(&self) -> impl Iterator<Item = &Arc<Config>>;
}

/// A read transaction: a consistent view of the store, valid inside
/// [`MemoryStore::view`](crate::MemoryStore::view). No batch is applied while it lives.
#[derive(Debug)]
pub struct ReadTx<'a> {
    pub(crate) tables: &'a Tables,
}

impl sealed::Sealed for ReadTx<'_> {}
impl sealed::Sealed for crate::write::WriteTx<'_> {}

/// The `(slot, id)` entries of one slot in a per-service task set.
pub(crate) fn slot_range(
    set: &BTreeSet<(u64, SortedId)>,
    slot: u64,
) -> impl Iterator<Item = &(u64, SortedId)> {
    set.range((slot, SortedId::min())..)
        .take_while(move |(s, _)| *s == slot)
}

fn resolve<'t, T: Stored, K: 't>(
    table: &'t Table<T>,
    id_of: impl Fn(&K) -> &str,
) -> impl Fn(&'t K) -> Option<&'t Arc<T>> {
    move |key| table.get(id_of(key))
}

impl ReadTx<'_> {
    fn get<T: Stored>(&self, id: &str) -> Option<&Arc<T>> {
        T::table(self.tables).get(id)
    }

    fn all<T: Stored>(&self) -> impl Iterator<Item = &Arc<T>> {
        T::table(self.tables).iter().map(|(_, o)| o)
    }

    fn by_name<T: Stored>(&self, name: &str) -> Option<&Arc<T>> {
        let table = T::table(self.tables);
        T::names(&table.indexes)?
            .owner(name)
            .and_then(|id| table.get(id))
    }
}

impl StoreRead for ReadTx<'_> {
    fn index(&self) -> u64 {
        self.tables.index
    }

    fn node(&self, id: &str) -> Option<&Arc<Node>> {
        self.get(id)
    }
    fn nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.all()
    }
    fn node_count(&self) -> usize {
        self.tables.nodes.len()
    }

    fn service(&self, id: &str) -> Option<&Arc<Service>> {
        self.get(id)
    }
    fn service_by_name(&self, name: &str) -> Option<&Arc<Service>> {
        self.by_name(name)
    }
    fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.all()
    }
    fn service_count(&self) -> usize {
        self.tables.services.len()
    }

    fn task(&self, id: &str) -> Option<&Arc<Task>> {
        self.get(id)
    }
    fn tasks(&self) -> impl Iterator<Item = &Arc<Task>> {
        self.all()
    }
    fn task_count(&self) -> usize {
        self.tables.tasks.len()
    }
    fn tasks_by_service(&self, service_id: &str) -> impl Iterator<Item = &Arc<Task>> {
        let tasks = &self.tables.tasks;
        let set = tasks.indexes.by_service.get(service_id);
        set.into_iter()
            .flatten()
            .filter_map(resolve(tasks, |(_, id): &(u64, SortedId)| id.as_str()))
    }
    fn tasks_by_node(&self, node_id: &str) -> impl Iterator<Item = &Arc<Task>> {
        let tasks = &self.tables.tasks;
        let set = tasks.indexes.by_node.get(node_id);
        set.into_iter()
            .flatten()
            .filter_map(resolve(tasks, |id: &SortedId| id.as_str()))
    }
    fn tasks_by_slot(&self, service_id: &str, slot: u64) -> impl Iterator<Item = &Arc<Task>> {
        let tasks = &self.tables.tasks;
        let set = tasks.indexes.by_service.get(service_id);
        set.into_iter()
            .flat_map(move |set| slot_range(set, slot))
            .filter_map(resolve(tasks, |(_, id): &(u64, SortedId)| id.as_str()))
    }
    fn tasks_by_desired_state(&self, state: TaskState) -> impl Iterator<Item = &Arc<Task>> {
        let tasks = &self.tables.tasks;
        let set = tasks.indexes.by_desired_state.get(&state);
        set.into_iter()
            .flatten()
            .filter_map(resolve(tasks, |id: &SortedId| id.as_str()))
    }

    fn cluster_by_name(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.by_name(name)
    }
    fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.all()
    }
    fn cluster_count(&self) -> usize {
        self.tables.clusters.len()
    }

    fn plugin(&self, id: &str) -> Option<&Arc<Plugin>> {
        self.get(id)
    }
    fn plugin_by_name(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.by_name(name)
    }
    fn plugins(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.all()
    }
    fn plugin_count(&self) -> usize {
        self.tables.plugins.len()
    }

    fn secret(&self, id: &str) -> Option<&Arc<Secret>> {
        self.get(id)
    }
    fn secret_by_name(&self, name: &str) -> Option<&Arc<Secret>> {
        self.by_name(name)
    }
    fn secrets(&self) -> impl Iterator<Item = &Arc<Secret>> {
        self.all()
    }

    fn config(&self, id: &str) -> Option<&Arc<Config>> {
        self.get(id)
    }
    fn config_by_name(&self, name: &str) -> Option<&Arc<Config>> {
        self.by_name(name)
    }
    fn configs(&self) -> impl Iterator<Item = &Arc<Config>> {
        self.all()
    }
}
