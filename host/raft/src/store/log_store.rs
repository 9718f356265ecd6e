//! Durable raft log, vote and committed pointer in one redb file (`raft.redb`).
//!
//! Every write that openraft needs durable (appended entries, vote, truncation) is committed with
//! `Durability::Immediate` (fsync) before openraft hears about it. The committed pointer and purges
//! are committed without fsync: the next durable commit persists them, and losing them in a crash
//! is harmless (the committed pointer is an optimisation of startup; a lost purge only leaves
//! entries that a snapshot already covers).

use std::fmt::Debug;
use std::ops::Bound;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::LogState;
use openraft::OptionalSend;
use openraft::RaftLogReader;
use openraft::StorageIOError;
use openraft::storage::LogFlushed;
use openraft::storage::RaftLogStorage;
use redb::Database;
use redb::Durability;
use redb::ReadableDatabase;
use redb::ReadableTable;
use redb::TableDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::cipher::Sealer;
use crate::store::codec;
use crate::types::Entry;
use crate::types::LogId;
use crate::types::StorageError;
use crate::types::TypeConfig;
use crate::types::Vote;

/// Log entries by index, encoded by [`codec`].
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Small JSON values: the vote, the committed log id, the last purged log id.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

/// The name of the redb file inside the state directory.
/// The raft log database inside the raft directory.
pub const LOG_FILE_NAME: &str = "raft.redb";

/// Opens (or creates) the raft database and makes sure its tables exist.
pub(crate) fn open_database(path: &Path) -> Result<Arc<Database>, redb::Error> {
    let db = Database::create(path)?;
    let txn = db.begin_write()?;
    {
        txn.open_table(LOG)?;
        txn.open_table(META)?;
    }
    txn.commit()?;
    Ok(Arc::new(db))
}

/// Makes every earlier non-durable commit durable (used on shutdown).
pub(crate) fn sync_database(db: &Database) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.commit()?;
    Ok(())
}

/// openraft's log storage over redb. Cheap to clone: readers share the database.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<Database>,
    /// Seals entries at rest when the node has a key.
    sealer: Option<Sealer>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<Database>, sealer: Option<Sealer>) -> Self {
        Self { db, sealer }
    }

    /// Checks that the newest entry can be read with this store's key (or lack of one), so a
    /// wrong key fails the start with a clear message instead of later inside openraft.
    pub(crate) fn check_readable(&self) -> Result<(), String> {
        let read = || -> Result<(), WriteError> {
            let txn = self.db.begin_read().map_err(redb::Error::from)?;
            let table = txn.open_table(LOG).map_err(redb::Error::from)?;
            if let Some((_, value)) = table.last().map_err(redb::Error::from)? {
                codec::decode_stored(value.value(), self.sealer.as_ref())?;
            }
            Ok(())
        };
        read().map_err(|e| e.to_string())
    }

    /// The vote and every entry after `after` (blocking; used by force-new-cluster before
    /// openraft starts).
    pub(crate) fn read_for_recovery(
        &self,
        after: Option<u64>,
    ) -> Result<(Option<Vote>, Vec<Entry>), String> {
        let read = || -> Result<(Option<Vote>, Vec<Entry>), WriteError> {
            let vote: Option<Vote> = self.read_meta(KEY_VOTE)?;
            let txn = self.db.begin_read().map_err(redb::Error::from)?;
            let table = txn.open_table(LOG).map_err(redb::Error::from)?;
            let start = match after {
                Some(index) => Bound::Excluded(index),
                None => Bound::Unbounded,
            };
            let mut entries = Vec::new();
            for item in table
                .range::<u64>((start, Bound::Unbounded))
                .map_err(redb::Error::from)?
            {
                let (_, value) = item.map_err(redb::Error::from)?;
                entries.push(codec::decode_stored(value.value(), self.sealer.as_ref())?);
            }
            Ok((vote, entries))
        };
        read().map_err(|e| e.to_string())
    }

    /// Empties the log as if purged up to `purged` (which a snapshot covers), records it as
    /// committed and saves `vote`, in one durable transaction (blocking; force-new-cluster).
    pub(crate) fn reset_after_snapshot(&self, purged: LogId, vote: Vote) -> Result<(), String> {
        let write = || -> Result<(), WriteError> {
            let mut txn = self.db.begin_write().map_err(redb::Error::from)?;
            txn.set_durability(Durability::Immediate)
                .map_err(redb::Error::from)?;
            {
                let mut table = txn.open_table(LOG).map_err(redb::Error::from)?;
                table
                    .retain_in::<u64, _>(.., |_, _| false)
                    .map_err(redb::Error::from)?;
            }
            put_meta(&txn, KEY_LAST_PURGED, &purged)?;
            put_meta(&txn, KEY_COMMITTED, &Some(purged))?;
            put_meta(&txn, KEY_VOTE, &vote)?;
            txn.commit().map_err(redb::Error::from)?;
            Ok(())
        };
        write().map_err(|e| e.to_string())
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        let Some(value) = table.get(key)? else {
            return Ok(None);
        };
        let parsed = serde_json::from_slice(value.value())
            .map_err(|e| redb::Error::Corrupted(format!("raft meta {key}: {e}")))?;
        Ok(Some(parsed))
    }

    /// Runs one write transaction on the blocking pool and commits it with `durability`.
    async fn write<F>(&self, durability: Durability, write: F) -> Result<(), WriteError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), WriteError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(redb::Error::from)?;
            txn.set_durability(durability).map_err(redb::Error::from)?;
            write(&txn)?;
            txn.commit().map_err(redb::Error::from)?;
            Ok(())
        })
        .await
        .map_err(|e| WriteError::Blocking(e.to_string()))?
    }
}

/// Why a write failed; converted to openraft's `StorageError` with the right subject.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Redb(#[from] redb::Error),
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
    #[error("encoding raft metadata: {0}")]
    Json(#[from] serde_json::Error),
    #[error("storage task failed: {0}")]
    Blocking(String),
}

fn put_meta<T: Serialize>(
    txn: &redb::WriteTransaction,
    key: &str,
    value: &T,
) -> Result<(), WriteError> {
    let bytes = serde_json::to_vec(value)?;
    let mut table = txn.open_table(META).map_err(redb::Error::from)?;
    table
        .insert(key, bytes.as_slice())
        .map_err(redb::Error::from)?;
    Ok(())
}

fn owned_bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let read = || -> Result<Vec<Entry>, WriteError> {
            let txn = self.db.begin_read().map_err(redb::Error::from)?;
            let table = txn.open_table(LOG).map_err(redb::Error::from)?;
            let mut entries = Vec::new();
            for item in table
                .range::<u64>(owned_bounds(&range))
                .map_err(redb::Error::from)?
            {
                let (_, value) = item.map_err(redb::Error::from)?;
                entries.push(codec::decode_stored(value.value(), self.sealer.as_ref())?);
            }
            Ok(entries)
        };
        read().map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let read = || -> Result<LogState<TypeConfig>, WriteError> {
            let last_purged_log_id: Option<LogId> = self.read_meta(KEY_LAST_PURGED)?;
            let txn = self.db.begin_read().map_err(redb::Error::from)?;
            let table = txn.open_table(LOG).map_err(redb::Error::from)?;
            let last_in_log = match table.last().map_err(redb::Error::from)? {
                Some((_, value)) => Some(codec::decode_log_id(value.value())?),
                None => None,
            };
            Ok(LogState {
                last_log_id: last_in_log.or(last_purged_log_id),
                last_purged_log_id,
            })
        };
        read().map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.write(Durability::Immediate, move |txn| {
            put_meta(txn, KEY_VOTE, &vote)
        })
        .await
        .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(KEY_VOTE)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not fsync'd on purpose: see the module documentation.
        self.write(Durability::None, move |txn| {
            put_meta(txn, KEY_COMMITTED, &committed)
        })
        .await
        .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<Option<LogId>> = self
            .read_meta(KEY_COMMITTED)
            .map_err(|e| StorageIOError::read(&e))?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let sealer = self.sealer.clone();
        let encoded = entries
            .into_iter()
            .map(|entry| {
                Ok((
                    entry.log_id.index,
                    codec::encode_stored(&entry, sealer.as_ref())?,
                ))
            })
            .collect::<Result<Vec<(u64, Vec<u8>)>, codec::CodecError>>();
        let result = match encoded {
            Ok(encoded) => {
                self.write(Durability::Immediate, move |txn| {
                    let mut table = txn.open_table(LOG).map_err(redb::Error::from)?;
                    for (index, bytes) in &encoded {
                        table
                            .insert(*index, bytes.as_slice())
                            .map_err(redb::Error::from)?;
                    }
                    Ok(())
                })
                .await
            }
            Err(e) => Err(WriteError::Codec(e)),
        };
        // The entries are on disk (fsync'd) before openraft is told they are flushed.
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let since = log_id.index;
        self.write(Durability::Immediate, move |txn| {
            let mut table = txn.open_table(LOG).map_err(redb::Error::from)?;
            table
                .retain_in::<u64, _>(since.., |_, _| false)
                .map_err(redb::Error::from)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let upto = log_id.index;
        // Not fsync'd: see the module documentation. The purge pointer and the deletion are in one
        // transaction, so they can only be lost together.
        self.write(Durability::None, move |txn| {
            put_meta(txn, KEY_LAST_PURGED, &log_id)?;
            let mut table = txn.open_table(LOG).map_err(redb::Error::from)?;
            table
                .retain_in::<u64, _>(..=upto, |_, _| false)
                .map_err(redb::Error::from)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
