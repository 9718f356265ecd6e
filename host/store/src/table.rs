//! Tables of `Arc`ed objects with their secondary indexes, kept consistent by `put` and `remove`.
//!
//! A table is a hash map for O(1) lookups by id plus an ordered id set, so that every listing
//! comes out in id order (the same on every manager). Secondary indexes hold ids only, and a
//! write touches an index only when the indexed field changed: an update that moves a task to
//! another node costs two set operations, whatever the size of the table.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use swarm_types::{Cluster, Config, Meta, Node, Plugin, Secret, Service, Task, TaskState};

use crate::event::{Change, Event};
use crate::object::ObjectKind;

/// An object id as stored: shared between the table and its indexes.
pub(crate) type Id = Arc<str>;

/// An id as kept in ordered sets: its first 16 bytes inline (big-endian, zero-padded) so that
/// most comparisons settle without following the pointer. Orders exactly as the id string.
#[derive(Clone, Debug)]
pub(crate) struct SortedId {
    prefix: u128,
    id: Id,
}

impl SortedId {
    pub(crate) fn new(id: Id) -> Self {
        let mut head = [0u8; 16];
        let n = id.len().min(16);
        head[..n].copy_from_slice(&id.as_bytes()[..n]);
        Self {
            prefix: u128::from_be_bytes(head),
            id,
        }
    }

    /// The smallest possible key, to start a range.
    pub(crate) fn min() -> Self {
        Self {
            prefix: 0,
            id: Id::from(""),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.id
    }
}

impl PartialEq for SortedId {
    fn eq(&self, other: &Self) -> bool {
        self.prefix == other.prefix && self.id == other.id
    }
}

impl Eq for SortedId {}

impl PartialOrd for SortedId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SortedId {
    /// Zero-padding keeps prefix order consistent with string order: when two prefixes differ,
    /// the first difference is a byte both ids have, or one id ends there (and is the smaller).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.prefix
            .cmp(&other.prefix)
            .then_with(|| self.id.cmp(&other.id))
    }
}

/// What the store needs to know about each kind of object.
pub(crate) trait Stored: Clone + fmt::Debug + Send + Sync + 'static {
    const KIND: ObjectKind;
    type Indexes: Default + fmt::Debug;

    fn id(&self) -> &str;
    fn meta(&self) -> &Meta;
    fn meta_mut(&mut self) -> &mut Meta;

    /// The name that must be unique among objects of this kind, for kinds that have one.
    fn unique_name(&self) -> Option<&str> {
        None
    }

    /// The unique-name index, for kinds that have one.
    fn names(_indexes: &Self::Indexes) -> Option<&NameIndex> {
        None
    }

    /// Whether an update takes something from the stored object ([`Stored::inherit`]).
    const INHERITS: bool = false;

    /// Fill what an update leaves out from the object it replaces (only called when
    /// [`Stored::INHERITS`]).
    fn inherit(&mut self, _stored: &Self) {}

    /// The object as a service, for the reference checks (services only).
    fn as_service(&self) -> Option<&Service> {
        None
    }

    /// Move `id` in the indexes from `old`'s values to `new`'s (either may be absent).
    fn reindex(indexes: &mut Self::Indexes, id: &Id, old: Option<&Self>, new: Option<&Self>);

    fn table(tables: &Tables) -> &Table<Self>;
    fn table_mut(tables: &mut Tables) -> &mut Table<Self>;
    fn event(change: Change<Self>) -> Event;
}

/// One kind's objects.
#[derive(Debug)]
pub(crate) struct Table<T: Stored> {
    rows: HashMap<Id, Arc<T>>,
    order: BTreeSet<SortedId>,
    pub(crate) indexes: T::Indexes,
}

impl<T: Stored> Default for Table<T> {
    fn default() -> Self {
        Self {
            rows: HashMap::new(),
            order: BTreeSet::new(),
            indexes: T::Indexes::default(),
        }
    }
}

impl<T: Stored> Table<T> {
    pub(crate) fn get(&self, id: &str) -> Option<&Arc<T>> {
        self.rows.get(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// All rows in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Id, &Arc<T>)> {
        self.order
            .iter()
            .filter_map(|k| self.rows.get_key_value(k.as_str()))
    }

    /// The stored id equal to `id`, to share it instead of allocating a new one.
    pub(crate) fn stored_id(&self, id: &str) -> Option<&Id> {
        self.rows.get_key_value(id).map(|(k, _)| k)
    }

    /// The stored id and the object, by id.
    pub(crate) fn get_entry(&self, id: &str) -> Option<(&Id, &Arc<T>)> {
        self.rows.get_key_value(id)
    }

    /// Insert or replace by id, keeping the indexes in step. Returns the stored id and the
    /// replaced object.
    pub(crate) fn put(&mut self, object: Arc<T>) -> (Id, Option<Arc<T>>) {
        let id = match self.rows.get_key_value(object.id()) {
            Some((k, _)) => k.clone(),
            None => Id::from(object.id()),
        };
        let old = self.rows.insert(id.clone(), object.clone());
        if old.is_none() {
            self.order.insert(SortedId::new(id.clone()));
        }
        T::reindex(&mut self.indexes, &id, old.as_deref(), Some(&object));
        (id, old)
    }

    /// Remove by id, keeping the indexes in step. Returns the removed object.
    pub(crate) fn remove(&mut self, id: &str) -> Option<Arc<T>> {
        let (id, old) = self.rows.remove_entry(id)?;
        self.order.remove(&SortedId::new(id.clone()));
        T::reindex(&mut self.indexes, &id, Some(&old), None);
        Some(old)
    }
}

/// All tables, and the raft index of the last batch applied to them.
#[derive(Debug, Default)]
pub(crate) struct Tables {
    pub(crate) index: u64,
    pub(crate) nodes: Table<Node>,
    pub(crate) services: Table<Service>,
    pub(crate) tasks: Table<Task>,
    pub(crate) clusters: Table<Cluster>,
    pub(crate) plugins: Table<Plugin>,
    pub(crate) secrets: Table<Secret>,
    pub(crate) configs: Table<Config>,
}

/// Unique names, compared ignoring ASCII case (names end up in hostnames and DNS, where
/// `Web` and `web` are the same). Maps the lower-cased name to the owner's id.
#[derive(Debug, Default)]
pub(crate) struct NameIndex {
    owners: HashMap<String, Id>,
}

impl NameIndex {
    pub(crate) fn owner(&self, name: &str) -> Option<&Id> {
        self.owners.get(&name.to_ascii_lowercase())
    }

    fn reindex(&mut self, id: &Id, old: Option<&str>, new: Option<&str>) {
        if let (Some(o), Some(n)) = (old, new)
            && o.eq_ignore_ascii_case(n)
        {
            return;
        }
        if let Some(o) = old {
            let key = o.to_ascii_lowercase();
            // Only the owner's entry goes: a restored snapshot may (wrongly) repeat a name.
            if self.owners.get(&key).is_some_and(|owner| owner == id) {
                self.owners.remove(&key);
            }
        }
        if let Some(n) = new {
            self.owners.insert(n.to_ascii_lowercase(), id.clone());
        }
    }
}

/// Task indexes. Tasks with an empty `node_id` (not yet assigned) are not in `by_node`.
#[derive(Debug, Default)]
pub(crate) struct TaskIndexes {
    /// Service id to `(slot, task id)`, so one service's tasks come out slot by slot.
    pub(crate) by_service: HashMap<Id, BTreeSet<(u64, SortedId)>>,
    pub(crate) by_node: HashMap<Id, BTreeSet<SortedId>>,
    pub(crate) by_desired_state: BTreeMap<TaskState, BTreeSet<SortedId>>,
}

fn set_insert<K: Ord>(map: &mut HashMap<Id, BTreeSet<K>>, key: &str, value: K) {
    match map.get_mut(key) {
        Some(set) => {
            set.insert(value);
        }
        None => {
            map.insert(Id::from(key), BTreeSet::from([value]));
        }
    }
}

fn set_remove<K: Ord>(map: &mut HashMap<Id, BTreeSet<K>>, key: &str, value: &K) {
    if let Some(set) = map.get_mut(key) {
        set.remove(value);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

impl Stored for Task {
    const KIND: ObjectKind = ObjectKind::Task;
    type Indexes = TaskIndexes;

    fn id(&self) -> &str {
        &self.id
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }

    fn reindex(ix: &mut TaskIndexes, id: &Id, old: Option<&Task>, new: Option<&Task>) {
        let key = SortedId::new(id.clone());
        fn slot_of(t: &Task) -> (&str, u64) {
            (&t.service_id, t.slot)
        }
        let (old_slot, new_slot) = (old.map(slot_of), new.map(slot_of));
        if old_slot != new_slot {
            if let Some((service, slot)) = old_slot {
                set_remove(&mut ix.by_service, service, &(slot, key.clone()));
            }
            if let Some((service, slot)) = new_slot {
                set_insert(&mut ix.by_service, service, (slot, key.clone()));
            }
        }

        fn node_of(t: &Task) -> Option<&str> {
            Some(t.node_id.as_str()).filter(|n| !n.is_empty())
        }
        let (old_node, new_node) = (old.and_then(node_of), new.and_then(node_of));
        if old_node != new_node {
            if let Some(node) = old_node {
                set_remove(&mut ix.by_node, node, &key);
            }
            if let Some(node) = new_node {
                set_insert(&mut ix.by_node, node, key.clone());
            }
        }

        let (old_desired, new_desired) =
            (old.map(|t| t.desired_state), new.map(|t| t.desired_state));
        if old_desired != new_desired {
            if let Some(state) = old_desired
                && let Some(set) = ix.by_desired_state.get_mut(&state)
            {
                set.remove(&key);
            }
            if let Some(state) = new_desired {
                ix.by_desired_state.entry(state).or_default().insert(key);
            }
        }
    }

    fn table(t: &Tables) -> &Table<Self> {
        &t.tasks
    }
    fn table_mut(t: &mut Tables) -> &mut Table<Self> {
        &mut t.tasks
    }
    fn event(change: Change<Self>) -> Event {
        Event::Task(change)
    }
}

impl Stored for Service {
    fn as_service(&self) -> Option<&Service> {
        Some(self)
    }
    const KIND: ObjectKind = ObjectKind::Service;
    type Indexes = NameIndex;

    fn id(&self) -> &str {
        &self.id
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
    fn unique_name(&self) -> Option<&str> {
        Some(&self.spec.annotations.name)
    }
    fn names(ix: &NameIndex) -> Option<&NameIndex> {
        Some(ix)
    }
    fn reindex(ix: &mut NameIndex, id: &Id, old: Option<&Self>, new: Option<&Self>) {
        ix.reindex(
            id,
            old.map(|s| s.spec.annotations.name.as_str()),
            new.map(|s| s.spec.annotations.name.as_str()),
        );
    }
    fn table(t: &Tables) -> &Table<Self> {
        &t.services
    }
    fn table_mut(t: &mut Tables) -> &mut Table<Self> {
        &mut t.services
    }
    fn event(change: Change<Self>) -> Event {
        Event::Service(change)
    }
}

impl Stored for Cluster {
    const KIND: ObjectKind = ObjectKind::Cluster;
    type Indexes = NameIndex;

    fn id(&self) -> &str {
        &self.id
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
    fn unique_name(&self) -> Option<&str> {
        Some(&self.spec.annotations.name)
    }
    fn names(ix: &NameIndex) -> Option<&NameIndex> {
        Some(ix)
    }
    fn reindex(ix: &mut NameIndex, id: &Id, old: Option<&Self>, new: Option<&Self>) {
        ix.reindex(
            id,
            old.map(|c| c.spec.annotations.name.as_str()),
            new.map(|c| c.spec.annotations.name.as_str()),
        );
    }
    fn table(t: &Tables) -> &Table<Self> {
        &t.clusters
    }
    fn table_mut(t: &mut Tables) -> &mut Table<Self> {
        &mut t.clusters
    }
    fn event(change: Change<Self>) -> Event {
        Event::Cluster(change)
    }
}

impl Stored for Plugin {
    const KIND: ObjectKind = ObjectKind::Plugin;
    type Indexes = NameIndex;

    fn id(&self) -> &str {
        &self.id
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
    fn unique_name(&self) -> Option<&str> {
        Some(&self.spec.annotations.name)
    }
    fn names(ix: &NameIndex) -> Option<&NameIndex> {
        Some(ix)
    }

    const INHERITS: bool = true;

    /// An update without the component (a status change) keeps the stored bytes, so they are
    /// not sent through raft again.
    fn inherit(&mut self, stored: &Self) {
        if self.component.is_empty() && self.digest == stored.digest {
            self.component = stored.component.clone();
        }
    }

    fn reindex(ix: &mut NameIndex, id: &Id, old: Option<&Self>, new: Option<&Self>) {
        ix.reindex(
            id,
            old.map(|p| p.spec.annotations.name.as_str()),
            new.map(|p| p.spec.annotations.name.as_str()),
        );
    }
    fn table(t: &Tables) -> &Table<Self> {
        &t.plugins
    }
    fn table_mut(t: &mut Tables) -> &mut Table<Self> {
        &mut t.plugins
    }
    fn event(change: Change<Self>) -> Event {
        Event::Plugin(change)
    }
}

/// Secrets and configs are stored alike: by id, with a unique name.
macro_rules! stored_data {
    ($ty:ident, $kind:ident, $table:ident) => {
        impl Stored for $ty {
            const KIND: ObjectKind = ObjectKind::$kind;
            type Indexes = NameIndex;

            fn id(&self) -> &str {
                &self.id
            }
            fn meta(&self) -> &Meta {
                &self.meta
            }
            fn meta_mut(&mut self) -> &mut Meta {
                &mut self.meta
            }
            fn unique_name(&self) -> Option<&str> {
                Some(&self.spec.annotations.name)
            }
            fn names(ix: &NameIndex) -> Option<&NameIndex> {
                Some(ix)
            }
            fn reindex(ix: &mut NameIndex, id: &Id, old: Option<&Self>, new: Option<&Self>) {
                ix.reindex(
                    id,
                    old.map(|o| o.spec.annotations.name.as_str()),
                    new.map(|o| o.spec.annotations.name.as_str()),
                );
            }
            fn table(t: &Tables) -> &Table<Self> {
                &t.$table
            }
            fn table_mut(t: &mut Tables) -> &mut Table<Self> {
                &mut t.$table
            }
            fn event(change: Change<Self>) -> Event {
                Event::$kind(change)
            }
        }
    };
}

stored_data!(Secret, Secret, secrets);
stored_data!(Config, Config, configs);

impl Stored for Node {
    const KIND: ObjectKind = ObjectKind::Node;
    type Indexes = ();

    fn id(&self) -> &str {
        &self.id
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
    fn reindex(_: &mut (), _: &Id, _: Option<&Self>, _: Option<&Self>) {}
    fn table(t: &Tables) -> &Table<Self> {
        &t.nodes
    }
    fn table_mut(t: &mut Tables) -> &mut Table<Self> {
        &mut t.nodes
    }
    fn event(change: Change<Self>) -> Event {
        Event::Node(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_ids_order_exactly_as_strings() {
        let ids = [
            "",
            "\0",
            "a",
            "a\0",
            "a\0b",
            "ab",
            "b",
            "0123456789abcdef",
            "0123456789abcdef0",
            "0123456789abcdef\0",
            "0123456789abcdeg",
            "zzzzzzzzzzzzzzzzzzzzzzzzz",
            "3k2",
            "3k20000000000000000000000",
        ];
        for a in ids {
            for b in ids {
                let (x, y) = (SortedId::new(Id::from(a)), SortedId::new(Id::from(b)));
                assert_eq!(x.cmp(&y), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(x == y, a == b, "{a:?} vs {b:?}");
            }
        }
        assert!(SortedId::min() <= SortedId::new(Id::from("")));
    }

    #[test]
    fn names_compare_ignoring_ascii_case_and_only_the_owner_frees_one() {
        let mut ix = NameIndex::default();
        let (a, b): (Id, Id) = (Id::from("a"), Id::from("b"));
        ix.reindex(&a, None, Some("Web"));
        assert_eq!(ix.owner("wEB"), Some(&a));
        // A rename that only changes case keeps the entry.
        ix.reindex(&a, Some("Web"), Some("web"));
        assert_eq!(ix.owner("WEB"), Some(&a));
        // Removing a name someone else owns leaves the owner's entry alone.
        ix.reindex(&b, Some("web"), None);
        assert_eq!(ix.owner("web"), Some(&a));
        ix.reindex(&a, Some("web"), Some("api"));
        assert_eq!(ix.owner("web"), None);
        assert_eq!(ix.owner("api"), Some(&a));
    }
}
