//! Write transactions: build a [`Batch`] against the current state without changing it.
//!
//! A `WriteTx` keeps an overlay: the objects it wrote (with their own indexes) and the set of
//! ids whose stored rows they shadow. Reads merge the stored state with the overlay, so a
//! transaction sees its own writes, in the same deterministic order as a [`ReadTx`](crate::ReadTx).
//! Each write is checked by the same rules `apply` uses.

use std::collections::HashSet;
use std::iter::Peekable;
use std::sync::Arc;

use swarm_types::{Cluster, Config, Node, Plugin, Secret, Service, Task, TaskState};

use crate::check::{CheckView, Existing, check_create, check_delete, check_update};
use crate::error::StoreError;
use crate::object::{Action, Batch, Object, ObjectKind};
use crate::read::{StoreRead, slot_range};
use crate::table::{Id, SortedId, Stored, Tables};

/// A write transaction, alive inside [`MemoryStore::build`](crate::MemoryStore::build).
///
/// `create`, `update` and `delete` check the same rules as
/// [`MemoryStore::apply`](crate::MemoryStore::apply) and record an action; a refused write
/// records nothing. Within one transaction an object keeps the version its write carried (the
/// store stamps the raft index only when the batch is applied), so an object created or updated
/// earlier in the transaction is updated again by carrying the version read back from the
/// transaction.
#[derive(Debug)]
pub struct WriteTx<'a> {
    base: &'a Tables,
    /// Objects this transaction wrote, as they now are.
    live: Tables,
    /// Per kind, the ids this transaction wrote; their stored rows are hidden.
    shadows: Shadows,
    pending: Vec<Pending>,
}

#[derive(Debug, Default)]
struct Shadow {
    ids: HashSet<Id>,
    /// How many of `ids` exist in the stored state (for counts).
    in_base: usize,
}

#[derive(Debug, Default)]
struct Shadows {
    nodes: Shadow,
    services: Shadow,
    tasks: Shadow,
    clusters: Shadow,
    plugins: Shadow,
    secrets: Shadow,
    configs: Shadow,
}

impl Shadows {
    fn of(&self, kind: ObjectKind) -> &Shadow {
        match kind {
            ObjectKind::Node => &self.nodes,
            ObjectKind::Service => &self.services,
            ObjectKind::Task => &self.tasks,
            ObjectKind::Cluster => &self.clusters,
            ObjectKind::Plugin => &self.plugins,
            ObjectKind::Secret => &self.secrets,
            ObjectKind::Config => &self.configs,
        }
    }

    fn of_mut(&mut self, kind: ObjectKind) -> &mut Shadow {
        match kind {
            ObjectKind::Node => &mut self.nodes,
            ObjectKind::Service => &mut self.services,
            ObjectKind::Task => &mut self.tasks,
            ObjectKind::Cluster => &mut self.clusters,
            ObjectKind::Plugin => &mut self.plugins,
            ObjectKind::Secret => &mut self.secrets,
            ObjectKind::Config => &mut self.configs,
        }
    }
}

/// A recorded object, still shared with the overlay until the batch is taken.
#[derive(Debug)]
enum Written {
    Node(Arc<Node>),
    Service(Arc<Service>),
    Task(Arc<Task>),
    Cluster(Arc<Cluster>),
    Plugin(Arc<Plugin>),
    Secret(Arc<Secret>),
    Config(Arc<Config>),
}

impl Written {
    fn into_object(self) -> Object {
        match self {
            Written::Node(o) => Object::Node(Arc::unwrap_or_clone(o)),
            Written::Service(o) => Object::Service(Arc::unwrap_or_clone(o)),
            Written::Task(o) => Object::Task(Arc::unwrap_or_clone(o)),
            Written::Cluster(o) => Object::Cluster(Arc::unwrap_or_clone(o)),
            Written::Plugin(o) => Object::Plugin(Arc::unwrap_or_clone(o)),
            Written::Secret(o) => Object::Secret(Arc::unwrap_or_clone(o)),
            Written::Config(o) => Object::Config(Arc::unwrap_or_clone(o)),
        }
    }
}

trait Wrap: Stored {
    fn wrap(object: Arc<Self>) -> Written;
}

impl Wrap for Node {
    fn wrap(object: Arc<Self>) -> Written {
        Written::Node(object)
    }
}
impl Wrap for Service {
    fn wrap(object: Arc<Self>) -> Written {
        Written::Service(object)
    }
}
impl Wrap for Task {
    fn wrap(object: Arc<Self>) -> Written {
        Written::Task(object)
    }
}
impl Wrap for Cluster {
    fn wrap(object: Arc<Self>) -> Written {
        Written::Cluster(object)
    }
}
impl Wrap for Plugin {
    fn wrap(object: Arc<Self>) -> Written {
        Written::Plugin(object)
    }
}
impl Wrap for Secret {
    fn wrap(object: Arc<Self>) -> Written {
        Written::Secret(object)
    }
}
impl Wrap for Config {
    fn wrap(object: Arc<Self>) -> Written {
        Written::Config(object)
    }
}

#[derive(Debug)]
enum Pending {
    Create(Written),
    Update(Written),
    Delete { kind: ObjectKind, id: String },
}

/// Yields the values of two iterators sorted by disjoint keys, in key order.
struct Merge<A: Iterator, B: Iterator> {
    a: Peekable<A>,
    b: Peekable<B>,
}

fn merge<K: Ord, V, A, B>(a: A, b: B) -> Merge<A, B>
where
    A: Iterator<Item = (K, V)>,
    B: Iterator<Item = (K, V)>,
{
    Merge {
        a: a.peekable(),
        b: b.peekable(),
    }
}

impl<K: Ord, V, A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = (K, V)>,
    B: Iterator<Item = (K, V)>,
{
    type Item = V;

    fn next(&mut self) -> Option<V> {
        let from_a = match (self.a.peek(), self.b.peek()) {
            (Some((ka, _)), Some((kb, _))) => ka <= kb,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let next = if from_a { self.a.next() } else { self.b.next() };
        next.map(|(_, v)| v)
    }
}

impl<'a> WriteTx<'a> {
    pub(crate) fn new(base: &'a Tables) -> Self {
        Self {
            base,
            live: Tables::default(),
            shadows: Shadows::default(),
            pending: Vec::new(),
        }
    }

    /// Create an object: its id must be new (and not empty); a service's or cluster's name
    /// must be free. `meta` is kept as given; `apply` sets `meta.version` to the raft index.
    pub fn create(&mut self, object: impl Into<Object>) -> Result<(), StoreError> {
        match object.into() {
            Object::Node(o) => self.create_typed(o),
            Object::Service(o) => self.create_typed(o),
            Object::Task(o) => self.create_typed(o),
            Object::Cluster(o) => self.create_typed(o),
            Object::Plugin(o) => self.create_typed(o),
            Object::Secret(o) => self.create_typed(o),
            Object::Config(o) => self.create_typed(o),
        }
    }

    /// Replace an object: it must exist and `object.meta.version` must be the version this
    /// transaction reads for it. `meta.created_at` is kept from the stored object.
    pub fn update(&mut self, object: impl Into<Object>) -> Result<(), StoreError> {
        match object.into() {
            Object::Node(o) => self.update_typed(o),
            Object::Service(o) => self.update_typed(o),
            Object::Task(o) => self.update_typed(o),
            Object::Cluster(o) => self.update_typed(o),
            Object::Plugin(o) => self.update_typed(o),
            Object::Secret(o) => self.update_typed(o),
            Object::Config(o) => self.update_typed(o),
        }
    }

    /// Delete an object: it must exist.
    pub fn delete(&mut self, kind: ObjectKind, id: &str) -> Result<(), StoreError> {
        match kind {
            ObjectKind::Node => self.delete_typed::<Node>(id),
            ObjectKind::Service => self.delete_typed::<Service>(id),
            ObjectKind::Task => self.delete_typed::<Task>(id),
            ObjectKind::Cluster => self.delete_typed::<Cluster>(id),
            ObjectKind::Plugin => self.delete_typed::<Plugin>(id),
            ObjectKind::Secret => self.delete_typed::<Secret>(id),
            ObjectKind::Config => self.delete_typed::<Config>(id),
        }
    }

    /// How many actions the transaction has recorded so far.
    pub fn action_count(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn into_batch(self) -> Batch {
        let WriteTx { live, pending, .. } = self;
        // Dropping the overlay first leaves each recorded object with a single owner, so taking
        // it out of its `Arc` costs no copy.
        drop(live);
        let actions = pending
            .into_iter()
            .map(|p| match p {
                Pending::Create(w) => Action::Create(w.into_object()),
                Pending::Update(w) => Action::Update(w.into_object()),
                Pending::Delete { kind, id } => Action::Delete { kind, id },
            })
            .collect();
        Batch { actions }
    }

    fn create_typed<T: Wrap>(&mut self, object: T) -> Result<(), StoreError> {
        check_create(self, &object)?;
        let object = Arc::new(object);
        self.write(Arc::clone(&object));
        self.pending.push(Pending::Create(T::wrap(object)));
        Ok(())
    }

    fn update_typed<T: Wrap>(&mut self, mut object: T) -> Result<(), StoreError> {
        object.meta_mut().created_at = check_update(self, &object)?;
        if T::INHERITS
            && let Some(stored) = self.get::<T>(object.id())
        {
            // The transaction sees the object as `apply` will store it; the batch carries it
            // as written (without what it inherits).
            let mut seen = object.clone();
            seen.inherit(stored);
            self.write(Arc::new(seen));
            self.pending
                .push(Pending::Update(T::wrap(Arc::new(object))));
            return Ok(());
        }
        let object = Arc::new(object);
        self.write(Arc::clone(&object));
        self.pending.push(Pending::Update(T::wrap(object)));
        Ok(())
    }

    fn delete_typed<T: Stored>(&mut self, id: &str) -> Result<(), StoreError> {
        check_delete::<T>(self, id)?;
        T::table_mut(&mut self.live).remove(id);
        self.shadow::<T>(id);
        self.pending.push(Pending::Delete {
            kind: T::KIND,
            id: id.to_string(),
        });
        Ok(())
    }

    fn write<T: Stored>(&mut self, object: Arc<T>) {
        self.shadow::<T>(object.id());
        T::table_mut(&mut self.live).put(object);
    }

    fn shadow<T: Stored>(&mut self, id: &str) {
        let shadow = self.shadows.of_mut(T::KIND);
        if shadow.ids.contains(id) {
            return;
        }
        match T::table(self.base).stored_id(id) {
            Some(stored) => {
                shadow.ids.insert(stored.clone());
                shadow.in_base += 1;
            }
            None => {
                shadow.ids.insert(Id::from(id));
            }
        }
    }

    fn shadowed(&self, kind: ObjectKind) -> &HashSet<Id> {
        &self.shadows.of(kind).ids
    }

    fn get<T: Stored>(&self, id: &str) -> Option<&Arc<T>> {
        if let Some(o) = T::table(&self.live).get(id) {
            return Some(o);
        }
        if self.shadowed(T::KIND).contains(id) {
            return None;
        }
        T::table(self.base).get(id)
    }

    fn all<T: Stored>(&self) -> impl Iterator<Item = &Arc<T>> {
        let shadowed = self.shadowed(T::KIND);
        let base = T::table(self.base)
            .iter()
            .filter(move |(id, _)| !shadowed.contains(&***id));
        merge(base, T::table(&self.live).iter())
    }

    fn count<T: Stored>(&self) -> usize {
        T::table(self.base).len() - self.shadows.of(T::KIND).in_base + T::table(&self.live).len()
    }

    fn by_name<T: Stored>(&self, name: &str) -> Option<&Arc<T>> {
        self.name_owner::<T>(name).and_then(|id| self.get(id))
    }

    /// Tasks listed under index keys `K`, merging the stored index (minus shadowed ids) with the
    /// overlay's, in key order.
    fn merged_tasks<'s, K: Ord + 's>(
        &'s self,
        base_keys: impl Iterator<Item = &'s K>,
        live_keys: impl Iterator<Item = &'s K>,
        id_of: fn(&K) -> &str,
    ) -> impl Iterator<Item = &'s Arc<Task>> {
        let shadowed = self.shadowed(ObjectKind::Task);
        let (base, live) = (&self.base.tasks, &self.live.tasks);
        let base = base_keys
            .filter(move |k| !shadowed.contains(id_of(k)))
            .filter_map(move |k| base.get(id_of(k)).map(|t| (k, t)));
        let live = live_keys.filter_map(move |k| live.get(id_of(k)).map(|t| (k, t)));
        merge(base, live)
    }
}

impl CheckView for WriteTx<'_> {
    fn existing<T: Stored>(&self, id: &str) -> Option<Existing> {
        self.get::<T>(id).map(|o| Existing {
            version: o.meta().version,
            created_at: o.meta().created_at,
        })
    }

    fn name_owner<T: Stored>(&self, name: &str) -> Option<&str> {
        if let Some(names) = T::names(&T::table(&self.live).indexes)
            && let Some(owner) = names.owner(name)
        {
            return Some(owner);
        }
        let owner = T::names(&T::table(self.base).indexes)?.owner(name)?;
        // A shadowed owner was rewritten (its current name is in the overlay) or deleted.
        (!self.shadowed(T::KIND).contains(owner)).then_some(&**owner)
    }

    fn service_referencing(&self, kind: ObjectKind, id: &str) -> Option<String> {
        StoreRead::services(self)
            .find(|s| crate::check::references(s, kind, id))
            .map(|s| s.spec.annotations.name.clone())
    }
}

fn slot_id(key: &(u64, SortedId)) -> &str {
    key.1.as_str()
}

fn plain_id(key: &SortedId) -> &str {
    key.as_str()
}

impl StoreRead for WriteTx<'_> {
    fn index(&self) -> u64 {
        self.base.index
    }

    fn node(&self, id: &str) -> Option<&Arc<Node>> {
        self.get(id)
    }
    fn nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.all()
    }
    fn node_count(&self) -> usize {
        self.count::<Node>()
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
        self.count::<Service>()
    }

    fn task(&self, id: &str) -> Option<&Arc<Task>> {
        self.get(id)
    }
    fn tasks(&self) -> impl Iterator<Item = &Arc<Task>> {
        self.all()
    }
    fn task_count(&self) -> usize {
        self.count::<Task>()
    }
    fn tasks_by_service(&self, service_id: &str) -> impl Iterator<Item = &Arc<Task>> {
        let base = self.base.tasks.indexes.by_service.get(service_id);
        let live = self.live.tasks.indexes.by_service.get(service_id);
        self.merged_tasks(
            base.into_iter().flatten(),
            live.into_iter().flatten(),
            slot_id,
        )
    }
    fn tasks_by_node(&self, node_id: &str) -> impl Iterator<Item = &Arc<Task>> {
        let base = self.base.tasks.indexes.by_node.get(node_id);
        let live = self.live.tasks.indexes.by_node.get(node_id);
        self.merged_tasks(
            base.into_iter().flatten(),
            live.into_iter().flatten(),
            plain_id,
        )
    }
    fn tasks_by_slot(&self, service_id: &str, slot: u64) -> impl Iterator<Item = &Arc<Task>> {
        let base = self.base.tasks.indexes.by_service.get(service_id);
        let live = self.live.tasks.indexes.by_service.get(service_id);
        self.merged_tasks(
            base.into_iter().flat_map(move |s| slot_range(s, slot)),
            live.into_iter().flat_map(move |s| slot_range(s, slot)),
            slot_id,
        )
    }
    fn tasks_by_desired_state(&self, state: TaskState) -> impl Iterator<Item = &Arc<Task>> {
        let base = self.base.tasks.indexes.by_desired_state.get(&state);
        let live = self.live.tasks.indexes.by_desired_state.get(&state);
        self.merged_tasks(
            base.into_iter().flatten(),
            live.into_iter().flatten(),
            plain_id,
        )
    }

    fn cluster_by_name(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.by_name(name)
    }
    fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.all()
    }
    fn cluster_count(&self) -> usize {
        self.count::<Cluster>()
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
        self.count::<Plugin>()
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
