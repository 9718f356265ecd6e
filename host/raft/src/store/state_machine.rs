//! The raft state machine: hands committed commands to the application and manages snapshots.
//!
//! The application state lives in memory; durability comes from snapshot files plus the raft
//! log. `last_applied` and the last membership are kept here and written into every snapshot's
//! metadata, so after a restart openraft knows where the restored snapshot ends and replays the
//! committed entries after it. An entry is applied only once the local log holds it on disk
//! (see `log_store.rs`): applying is what answers clients and what snapshots capture.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use openraft::EntryPayload;
use openraft::OptionalSend;
use openraft::RaftSnapshotBuilder;
use openraft::StorageIOError;
use openraft::storage::RaftStateMachine;

use crate::StateMachineApp;
use crate::store::cipher::Sealer;
use crate::store::snapshot_files::SnapshotFileError;
use crate::store::snapshot_files::SnapshotFiles;
use crate::store::wal::DurableWatch;
use crate::types::BatchResponse;
use crate::types::Entry;
use crate::types::LogId;
use crate::types::Snapshot;
use crate::types::SnapshotMeta;
use crate::types::StorageError;
use crate::types::StoredMembership;
use crate::types::TypeConfig;

/// openraft's state machine over a [`StateMachineApp`].
pub(crate) struct StateMachineStore {
    app: Arc<dyn StateMachineApp>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    files: Arc<SnapshotFiles>,
    /// Makes snapshot ids unique within this process (with the start time, across restarts).
    snapshot_sequence: Arc<AtomicU64>,
    /// The local log's durable mark, waited for before applying.
    durable: DurableWatch,
}

/// Why the state machine could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error(transparent)]
    Files(#[from] SnapshotFileError),
    #[error("restoring the application from snapshot {snapshot_id}: {reason}")]
    Restore { snapshot_id: String, reason: String },
}

impl StateMachineStore {
    /// Opens the snapshot directory and restores the application from the newest snapshot.
    ///
    /// The application must be empty: when there is no snapshot it is used as is.
    pub(crate) fn open(
        snapshot_dir: PathBuf,
        app: Arc<dyn StateMachineApp>,
        sealer: Option<Sealer>,
        durable: DurableWatch,
    ) -> Result<Self, OpenError> {
        let (files, loaded) = SnapshotFiles::open(snapshot_dir, sealer)?;
        let mut store = Self {
            app,
            last_applied: None,
            last_membership: StoredMembership::default(),
            files,
            snapshot_sequence: Arc::new(AtomicU64::new(0)),
            durable,
        };
        if let Some((meta, data)) = loaded {
            store
                .app
                .restore(&data)
                .map_err(|reason| OpenError::Restore {
                    snapshot_id: meta.snapshot_id.clone(),
                    reason,
                })?;
            tracing::info!(snapshot = %meta, "restored state machine from snapshot");
            store.last_applied = meta.last_log_id;
            store.last_membership = meta.last_membership;
        }
        Ok(store)
    }

    /// The last applied log id and membership (from the snapshot, then from applied entries).
    pub(crate) fn applied(&self) -> (Option<LogId>, &StoredMembership) {
        (self.last_applied, &self.last_membership)
    }

    /// Applies `entries` (blocking; force-new-cluster applies the whole log before openraft
    /// starts).
    pub(crate) fn apply_now(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            self.apply_one(entry);
        }
    }

    /// Makes the current state a snapshot at `log_id` with `membership`, durably (blocking;
    /// force-new-cluster).
    pub(crate) fn snapshot_as(
        &mut self,
        log_id: LogId,
        membership: openraft::Membership<u64, openraft::BasicNode>,
    ) -> Result<SnapshotMeta, SnapshotFileError> {
        self.last_applied = Some(log_id);
        self.last_membership = StoredMembership::new(Some(log_id), membership);
        let meta = SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: self.last_membership.clone(),
            snapshot_id: format!(
                "{:020}-{}-{}-force-new-cluster",
                log_id.index, log_id.leader_id.term, log_id.leader_id.node_id
            ),
        };
        self.files.save(&meta, &self.app.snapshot())?;
        Ok(meta)
    }

    fn apply_one(&mut self, entry: Entry) -> BatchResponse {
        self.last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => Vec::new(),
            EntryPayload::Normal(batch) => {
                let index = entry.log_id.index;
                batch
                    .commands
                    .iter()
                    .map(|command| self.app.apply(index, command))
                    .collect()
            }
            EntryPayload::Membership(membership) => {
                self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                Vec::new()
            }
        }
    }
}

/// A consistent copy of the state taken between two applies; written out by `build_snapshot`,
/// which openraft runs concurrently with later applies.
pub(crate) struct SnapshotBuilder {
    data: Vec<u8>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    files: Arc<SnapshotFiles>,
    sequence: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let snapshot_id = match &self.last_applied {
            Some(log_id) => format!(
                "{:020}-{}-{}-{started}-{}",
                log_id.index, log_id.leader_id.term, log_id.leader_id.node_id, self.sequence
            ),
            None => format!("{:020}-{started}-{}", 0, self.sequence),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id,
        };
        let data = std::mem::take(&mut self.data);
        let files = self.files.clone();
        let (meta, data) = tokio::task::spawn_blocking(move || {
            files.save(&meta, &data)?;
            Ok::<_, SnapshotFileError>((meta, data))
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, &e))?
        .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        tracing::info!(snapshot = %meta, bytes = data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let Some(last) = entries.last() {
            self.durable
                .wait(last.log_id.index)
                .await
                .map_err(|e| StorageIOError::write_state_machine(&std::io::Error::other(e)))?;
        }
        let mut responses = Vec::with_capacity(entries.len());
        for entry in entries {
            responses.push(self.apply_one(entry));
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            data: self.app.snapshot(),
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            files: self.files.clone(),
            sequence: self.snapshot_sequence.fetch_add(1, Ordering::Relaxed),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        // Restore first: a snapshot the application refuses is never persisted.
        self.app.restore(&data).map_err(|reason| {
            StorageIOError::read_snapshot(Some(meta.signature()), openraft::AnyError::error(reason))
        })?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        let files = self.files.clone();
        let owned_meta = meta.clone();
        tokio::task::spawn_blocking(move || files.save(&owned_meta, &data))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        tracing::info!(snapshot = %meta, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let files = self.files.clone();
        let current = tokio::task::spawn_blocking(move || files.read_current())
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(current.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
