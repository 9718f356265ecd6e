//! swarm-store: the managers' in-memory store of cluster objects (nodes, services, tasks, the
//! cluster, installed plugins, secrets, configs), with secondary indexes, read and write
//! transactions, a watch queue of change events, and snapshot and restore for raft.
//!
//! Every state change is a [`Batch`] of [`Action`]s: a proposer builds one with
//! [`MemoryStore::build`] (a dry run that sees its own writes and checks them), raft commits
//! it, and every manager's state machine applies it with [`MemoryStore::apply`]. Readers use
//! [`MemoryStore::view`]; consumers (orchestrators, scheduler, dispatcher) follow
//! [`MemoryStore::watch`]. Queries live on the [`StoreRead`] trait, shared by both kinds of
//! transaction:
//!
//! ```
//! use swarm_store::{MemoryStore, StoreError, StoreRead as _};
//! use swarm_types::Node;
//!
//! let store = MemoryStore::new();
//! let ((), batch) = store.build(|tx| {
//!     tx.create(Node { id: "n1".into(), ..Default::default() })?;
//!     Ok::<_, StoreError>(())
//! })?;
//! // The leader proposes `batch`; once raft commits it at index 1, every manager applies it.
//! store.apply(1, batch)?;
//! assert_eq!(store.view(|tx| tx.node("n1").map(|n| n.meta.version)), Some(1));
//! # Ok::<(), StoreError>(())
//! ```
//!
//! *Architecture invariant*: this crate is pure. It does no IO, reads no clock, spawns nothing
//! and needs no async runtime (`Watcher::recv` is a plain future). It depends only on
//! `swarm-types`.
//!
//! *Invariants of `apply`*, which runs on every manager and must reach the same state on each:
//! - It is deterministic: the result depends only on the state, the raft index and the batch.
//!   Timestamps are the proposer's; listings are ordered by id, never by hash order.
//! - A batch is atomic: if any action is refused, the state, the index and the watchers see
//!   nothing of it.
//! - Indexes are applied in increasing order; every object a batch writes gets
//!   `meta.version = index`. An update must carry the version it read
//!   ([`StoreError::VersionConflict`] otherwise), and keeps the stored `created_at`.
//! - Ids are unique per kind; service, cluster, plugin, secret and config names are unique per
//!   kind, compared ignoring ASCII case (`Web` and `web` conflict: names become hostnames and DNS names).
//! - Secondary indexes always agree with the tables; each write costs O(log n) per index whose
//!   field changed, never a scan.
//! - Every applied batch that changed something is published once, as one [`ChangeSet`], in
//!   index order; a restore publishes [`WatchItem::Reset`].
//!
//! *API boundary*: [`Batch`] and [`StoreSnapshot`] derive serde: they are what the raft log and
//! raft snapshots carry. Events are in-process only.

mod check;
mod error;
mod event;
mod object;
mod read;
mod store;
mod table;
mod watch;
mod write;

pub use error::StoreError;
pub use event::{Change, ChangeSet, Event};
pub use object::{Action, Batch, Object, ObjectKind};
pub use read::{ReadTx, StoreRead};
pub use store::{DEFAULT_WATCH_CAPACITY, MemoryStore, StoreSnapshot};
pub use watch::{WatchError, WatchItem, Watcher};
pub use write::WriteTx;
