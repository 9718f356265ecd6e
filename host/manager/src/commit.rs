//! Committing store batches: through raft (every state change is a proposal applied by the state
//! machine on every manager), or straight into the store for benchmarks that measure without raft.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use swarm_raft::{RaftNode, StateMachineApp};
use swarm_store::{Batch, MemoryStore, StoreError, WriteTx};

use crate::error::{ManagerError, Result};

/// Commits a batch and resolves once it is applied to the local store, returning the store
/// index it was applied at (the `meta.version` of every object it wrote).
pub trait Committer: Send + Sync + 'static {
    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<u64>>;
}

/// Build a batch against the current store and commit it. The closure sees its own writes.
/// Empty batches are not proposed (returns `None`).
pub async fn commit_with<T>(
    store: &MemoryStore,
    committer: &dyn Committer,
    f: impl FnOnce(&mut WriteTx<'_>) -> Result<T>,
) -> Result<(T, Option<u64>)> {
    let (value, batch) = store.build(f)?;
    if batch.is_empty() {
        return Ok((value, None));
    }
    let index = committer.commit(batch).await?;
    Ok((value, Some(index)))
}

/// What the state machine answers for one applied batch (carried back through raft).
#[derive(Debug, Serialize, Deserialize)]
enum ApplyOutcome {
    /// Applied at this store index (which can be ahead of the raft index: proposals that share
    /// a raft entry get consecutive store indexes).
    Applied(u64),
    NotFound(String),
    AlreadyExists(String),
    Conflict(String),
    Refused(String),
}

impl ApplyOutcome {
    fn from_result(version: u64, r: std::result::Result<(), StoreError>) -> Self {
        match r {
            Ok(()) => ApplyOutcome::Applied(version),
            Err(e) => {
                let text = e.to_string();
                match e {
                    StoreError::NotFound { .. } => ApplyOutcome::NotFound(text),
                    StoreError::AlreadyExists { .. } | StoreError::NameConflict { .. } => {
                        ApplyOutcome::AlreadyExists(text)
                    }
                    StoreError::VersionConflict { .. } => ApplyOutcome::Conflict(text),
                    _ => ApplyOutcome::Refused(text),
                }
            }
        }
    }

    fn into_result(self) -> Result<u64> {
        match self {
            ApplyOutcome::Applied(version) => Ok(version),
            ApplyOutcome::NotFound(m) => Err(ManagerError::NotFound(m)),
            ApplyOutcome::AlreadyExists(m) => Err(ManagerError::AlreadyExists(m)),
            ApplyOutcome::Conflict(m) => Err(ManagerError::Conflict(m)),
            ApplyOutcome::Refused(m) => Err(ManagerError::FailedPrecondition(m)),
        }
    }
}

/// The replicated application: raft log entries are store batches.
pub struct StoreApp {
    store: Arc<MemoryStore>,
}

impl StoreApp {
    pub fn new(store: Arc<MemoryStore>) -> Self {
        Self { store }
    }
}

impl StateMachineApp for StoreApp {
    fn apply(&self, index: u64, command: &[u8]) -> Vec<u8> {
        // Concurrent proposals may share a raft entry (and so an index); the store needs a
        // strictly increasing version per batch. This stays deterministic on every replica and
        // on replay, since it depends only on the applied sequence.
        let version = index.max(self.store.last_index() + 1);
        let outcome = match serde_json::from_slice::<Batch>(command) {
            Ok(batch) => ApplyOutcome::from_result(version, self.store.apply(version, batch)),
            Err(e) => ApplyOutcome::Refused(format!("undecodable batch at index {index}: {e}")),
        };
        serde_json::to_vec(&outcome).unwrap_or_default()
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.store.snapshot()).unwrap_or_default()
    }

    fn restore(&self, snapshot: &[u8]) -> std::result::Result<(), String> {
        let snap = serde_json::from_slice(snapshot)
            .map_err(|e| format!("undecodable store snapshot: {e}"))?;
        self.store.restore(snap);
        Ok(())
    }
}

/// Commits through raft: the batch is proposed, and the call returns once it is applied.
pub struct RaftCommitter {
    raft: RaftNode,
}

impl RaftCommitter {
    pub fn new(raft: RaftNode) -> Self {
        Self { raft }
    }
}

impl Committer for RaftCommitter {
    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let bytes = serde_json::to_vec(&batch)
                .map_err(|e| ManagerError::Internal(format!("encoding batch: {e}")))?;
            let (_raft_index, response) = self.raft.propose(bytes).await?;
            let outcome: ApplyOutcome = serde_json::from_slice(&response)
                .map_err(|e| ManagerError::Internal(format!("decoding apply outcome: {e}")))?;
            // The store index, which every object the batch wrote carries as its version.
            outcome.into_result()
        })
    }
}

/// Applies batches straight to the store with a local counter as the index. For benchmarks and
/// tests that measure the manager's logic without raft (as SwarmKit's scheduler benchmark does).
pub struct DirectCommitter {
    store: Arc<MemoryStore>,
    index: AtomicU64,
    lock: tokio::sync::Mutex<()>,
}

impl DirectCommitter {
    pub fn new(store: Arc<MemoryStore>) -> Self {
        let start = store.last_index();
        Self {
            store,
            index: AtomicU64::new(start),
            lock: tokio::sync::Mutex::new(()),
        }
    }
}

impl Committer for DirectCommitter {
    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let _order = self.lock.lock().await;
            let index = self.index.fetch_add(1, Ordering::SeqCst) + 1;
            self.store.apply(index, batch)?;
            Ok(index)
        })
    }
}
