//! `MemoryStore`: the tables behind a read-write lock, `apply` (the raft state machine's step),
//! `build` (the proposer's dry run), the watch queue, snapshot and restore.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use swarm_types::{Cluster, Config, Node, Plugin, Secret, Service, Task};
use tokio::sync::broadcast;

use crate::check::{CheckView, Existing, check_create, check_delete, check_update};
use crate::error::StoreError;
use crate::event::{Change, ChangeSet, Event};
use crate::object::{Action, Batch, Object, ObjectKind};
use crate::read::ReadTx;
use crate::table::{Id, Stored, Table, Tables};
use crate::watch::{WatchItem, Watcher};
use crate::write::WriteTx;

/// Change sets a watcher may fall behind by before it gets [`WatchError::Lagged`](crate::WatchError::Lagged).
pub const DEFAULT_WATCH_CAPACITY: usize = 1024;

/// The whole state of a store at one raft index. Objects are the stored `Arc`s: taking a
/// snapshot copies pointers, and serializing it happens outside the store's lock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSnapshot {
    /// The raft index of the last batch the state includes.
    pub index: u64,
    #[serde(default)]
    pub nodes: Vec<Arc<Node>>,
    #[serde(default)]
    pub services: Vec<Arc<Service>>,
    #[serde(default)]
    pub tasks: Vec<Arc<Task>>,
    #[serde(default)]
    pub clusters: Vec<Arc<Cluster>>,
    #[serde(default)]
    pub plugins: Vec<Arc<Plugin>>,
    #[serde(default)]
    pub secrets: Vec<Arc<Secret>>,
    #[serde(default)]
    pub configs: Vec<Arc<Config>>,
}

/// The in-memory store, shared as `Arc<MemoryStore>`. See the crate docs for the rules.
pub struct MemoryStore {
    tables: RwLock<Tables>,
    /// Mirror of `tables.index`, readable without waiting for the lock.
    last_index: AtomicU64,
    changes: broadcast::Sender<WatchItem>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("last_index", &self.last_index())
            .field("watchers", &self.changes.receiver_count())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store at index 0, whose watchers may lag [`DEFAULT_WATCH_CAPACITY`] change sets.
    pub fn new() -> Self {
        Self::with_watch_capacity(DEFAULT_WATCH_CAPACITY)
    }

    /// An empty store whose watchers may fall behind by `capacity` change sets (at least 1)
    /// before they get [`WatchError::Lagged`](crate::WatchError::Lagged).
    pub fn with_watch_capacity(capacity: usize) -> Self {
        let (changes, _) = broadcast::channel(capacity.max(1));
        Self {
            tables: RwLock::new(Tables::default()),
            last_index: AtomicU64::new(0),
            changes,
        }
    }

    /// Read a consistent state. No batch is applied while `f` runs; keep it short, and do not
    /// call back into the store from inside it.
    pub fn view<R>(&self, f: impl FnOnce(&ReadTx<'_>) -> R) -> R {
        let tables = self.tables.read();
        f(&ReadTx { tables: &tables })
    }

    /// Read a consistent state and subscribe to the changes made after exactly that state.
    pub fn view_and_watch<R>(&self, f: impl FnOnce(&ReadTx<'_>) -> R) -> (R, Watcher) {
        let tables = self.tables.read();
        // Batches are published under the write lock, so this cut is exact.
        let watcher = Watcher {
            receiver: self.changes.subscribe(),
        };
        (f(&ReadTx { tables: &tables }), watcher)
    }

    /// Subscribe to the change sets of the batches applied from now on.
    pub fn watch(&self) -> Watcher {
        Watcher {
            receiver: self.changes.subscribe(),
        }
    }

    /// The raft index of the last batch applied (or of the restored snapshot).
    pub fn last_index(&self) -> u64 {
        self.last_index.load(Ordering::Acquire)
    }

    /// Build a batch against the current state without changing it. The transaction sees its
    /// own writes and checks each one as `apply` will; the batch is then proposed through raft
    /// and applied with [`apply`](Self::apply) once committed. It may still be refused there if
    /// another batch committed first (for example a [`StoreError::VersionConflict`]).
    ///
    /// Batches are not applied while `f` runs; do not call back into the store from inside it.
    pub fn build<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, E>,
    ) -> Result<(T, Batch), E> {
        let tables = self.tables.read();
        let mut tx = WriteTx::new(&tables);
        let value = f(&mut tx)?;
        Ok((value, tx.into_batch()))
    }

    /// Apply a committed batch at raft `index`, all or nothing, and publish its change set.
    ///
    /// Deterministic: it reads no clock and no randomness, so every manager reaches the same
    /// state. Every object the batch writes gets `meta.version = index`. A refused batch
    /// changes nothing, not even [`last_index`](Self::last_index), and publishes nothing.
    /// An empty batch only advances the index.
    pub fn apply(&self, index: u64, batch: Batch) -> Result<(), StoreError> {
        let mut tables = self.tables.write();
        if index <= tables.index {
            return Err(StoreError::IndexNotIncreasing {
                index,
                last_index: tables.index,
            });
        }
        let mut applier = Applier {
            tables: &mut tables,
            index,
            carried: HashMap::with_capacity(batch.len()),
            events: Vec::with_capacity(batch.len()),
        };
        for (position, action) in batch.actions.into_iter().enumerate() {
            if let Err(error) = applier.apply(action) {
                tracing::debug!(index, position, %error, "batch refused");
                applier.roll_back();
                return Err(error);
            }
        }
        let events = applier.events;
        tables.index = index;
        self.last_index.store(index, Ordering::Release);
        if !events.is_empty() {
            // An error only means nobody is watching.
            let _ = self
                .changes
                .send(WatchItem::Changes(Arc::new(ChangeSet { index, events })));
        }
        Ok(())
    }

    /// The whole state, for a raft snapshot.
    pub fn snapshot(&self) -> StoreSnapshot {
        fn rows<T: Stored>(table: &Table<T>) -> Vec<Arc<T>> {
            table.iter().map(|(_, o)| Arc::clone(o)).collect()
        }
        let tables = self.tables.read();
        StoreSnapshot {
            index: tables.index,
            nodes: rows(&tables.nodes),
            services: rows(&tables.services),
            tasks: rows(&tables.tasks),
            clusters: rows(&tables.clusters),
            plugins: rows(&tables.plugins),
            secrets: rows(&tables.secrets),
            configs: rows(&tables.configs),
        }
    }

    /// Replace the whole state with a snapshot's, and tell every watcher with
    /// [`WatchItem::Reset`]. Objects keep their versions. A snapshot that repeats an id (which
    /// `snapshot` never produces) keeps the last copy.
    pub fn restore(&self, snapshot: StoreSnapshot) {
        fn fill<T: Stored>(table: &mut Table<T>, objects: Vec<Arc<T>>) -> usize {
            objects
                .into_iter()
                .filter(|o| table.put(Arc::clone(o)).1.is_some())
                .count()
        }
        let mut fresh = Tables {
            index: snapshot.index,
            ..Tables::default()
        };
        let repeated = fill(&mut fresh.nodes, snapshot.nodes)
            + fill(&mut fresh.services, snapshot.services)
            + fill(&mut fresh.tasks, snapshot.tasks)
            + fill(&mut fresh.clusters, snapshot.clusters)
            + fill(&mut fresh.plugins, snapshot.plugins)
            + fill(&mut fresh.secrets, snapshot.secrets)
            + fill(&mut fresh.configs, snapshot.configs);
        if repeated > 0 {
            tracing::warn!(
                repeated,
                index = snapshot.index,
                "restored snapshot repeats ids; kept the last copy of each"
            );
        }
        let index = fresh.index;
        let old = {
            let mut tables = self.tables.write();
            let old = std::mem::replace(&mut *tables, fresh);
            self.last_index.store(index, Ordering::Release);
            let _ = self.changes.send(WatchItem::Reset { index });
            old
        };
        // The old state is freed outside the lock.
        drop(old);
    }
}

/// One batch being applied: writes go straight to the tables; the events double as the undo log.
struct Applier<'t> {
    tables: &'t mut Tables,
    index: u64,
    /// The versions carried by this batch's writes, so an object written twice in one batch is
    /// checked exactly as the proposer's `WriteTx` checked it.
    carried: HashMap<(ObjectKind, Id), u64>,
    events: Vec<Event>,
}

impl CheckView for Applier<'_> {
    fn existing<T: Stored>(&self, id: &str) -> Option<Existing> {
        let (id, object) = T::table(self.tables).get_entry(id)?;
        let mut version = object.meta().version;
        // Versions below `index` predate this batch; only objects it wrote carry `index`.
        if version == self.index
            && let Some(carried) = self.carried.get(&(T::KIND, id.clone()))
        {
            version = *carried;
        }
        Some(Existing {
            version,
            created_at: object.meta().created_at,
        })
    }

    fn name_owner<T: Stored>(&self, name: &str) -> Option<&str> {
        T::names(&T::table(self.tables).indexes)?
            .owner(name)
            .map(|id| &**id)
    }

    fn service_referencing(&self, kind: ObjectKind, id: &str) -> Option<String> {
        self.tables
            .services
            .iter()
            .find(|(_, s)| crate::check::references(s, kind, id))
            .map(|(_, s)| s.spec.annotations.name.clone())
    }
}

impl Applier<'_> {
    fn apply(&mut self, action: Action) -> Result<(), StoreError> {
        match action {
            Action::Create(object) => match object {
                Object::Node(o) => self.create(o),
                Object::Service(o) => self.create(o),
                Object::Task(o) => self.create(o),
                Object::Cluster(o) => self.create(o),
                Object::Plugin(o) => self.create(o),
                Object::Secret(o) => self.create(o),
                Object::Config(o) => self.create(o),
            },
            Action::Update(object) => match object {
                Object::Node(o) => self.update(o),
                Object::Service(o) => self.update(o),
                Object::Task(o) => self.update(o),
                Object::Cluster(o) => self.update(o),
                Object::Plugin(o) => self.update(o),
                Object::Secret(o) => self.update(o),
                Object::Config(o) => self.update(o),
            },
            Action::Delete { kind, id } => match kind {
                ObjectKind::Node => self.delete::<Node>(&id),
                ObjectKind::Service => self.delete::<Service>(&id),
                ObjectKind::Task => self.delete::<Task>(&id),
                ObjectKind::Cluster => self.delete::<Cluster>(&id),
                ObjectKind::Plugin => self.delete::<Plugin>(&id),
                ObjectKind::Secret => self.delete::<Secret>(&id),
                ObjectKind::Config => self.delete::<Config>(&id),
            },
        }
    }

    fn create<T: Stored>(&mut self, mut object: T) -> Result<(), StoreError> {
        check_create(&*self, &object)?;
        let carried = std::mem::replace(&mut object.meta_mut().version, self.index);
        let object = Arc::new(object);
        let (id, _) = T::table_mut(self.tables).put(Arc::clone(&object));
        self.carried.insert((T::KIND, id), carried);
        self.events.push(T::event(Change::Created(object)));
        Ok(())
    }

    fn update<T: Stored>(&mut self, mut object: T) -> Result<(), StoreError> {
        let created_at = check_update(&*self, &object)?;
        if T::INHERITS
            && let Some(stored) = T::table(self.tables).get(object.id())
        {
            object.inherit(stored);
        }
        let meta = object.meta_mut();
        meta.created_at = created_at;
        let carried = std::mem::replace(&mut meta.version, self.index);
        let new = Arc::new(object);
        let (id, old) = T::table_mut(self.tables).put(Arc::clone(&new));
        self.carried.insert((T::KIND, id), carried);
        let change = match old {
            Some(old) => Change::Updated { old, new },
            // Unreachable after `check_update`; recorded truthfully all the same.
            None => Change::Created(new),
        };
        self.events.push(T::event(change));
        Ok(())
    }

    fn delete<T: Stored>(&mut self, id: &str) -> Result<(), StoreError> {
        check_delete::<T>(&*self, id)?;
        if let Some(old) = T::table_mut(self.tables).remove(id) {
            self.events.push(T::event(Change::Deleted(old)));
        }
        Ok(())
    }

    /// Undo this batch's writes, newest first, leaving the tables as they were.
    fn roll_back(self) {
        fn undo<T: Stored>(table: &mut Table<T>, change: Change<T>) {
            match change {
                Change::Created(new) => {
                    table.remove(new.id());
                }
                Change::Updated { old, .. } | Change::Deleted(old) => {
                    table.put(old);
                }
            }
        }
        for event in self.events.into_iter().rev() {
            match event {
                Event::Node(c) => undo(&mut self.tables.nodes, c),
                Event::Service(c) => undo(&mut self.tables.services, c),
                Event::Task(c) => undo(&mut self.tables.tasks, c),
                Event::Cluster(c) => undo(&mut self.tables.clusters, c),
                Event::Plugin(c) => undo(&mut self.tables.plugins, c),
                Event::Secret(c) => undo(&mut self.tables.secrets, c),
                Event::Config(c) => undo(&mut self.tables.configs, c),
            }
        }
    }
}
